//! Backing stores: the shared store behind the local regions in cluster
//! mode (PostgreSQL or Redis), its contract, and its implementations. The
//! session layer's cluster protocol (`crate::session::cluster`) drives it;
//! nothing else calls a store.
//!
//! | module | concept |
//! | --- | --- |
//! | this file | the contract: [`BackingStore`], store keys, records, owners, notices, errors; [`open_store`] |
//! | [`record`] | the attribute blob a store keeps, tombstone life |
//! | [`postgres`] | the PostgreSQL store |
//! | [`pg_tls`] | TLS to PostgreSQL: the rustls connector and libpq's `sslmode` checks |
//! | [`redis`] | the Redis store |
//! | [`memory`] | an in-memory store for unit tests of the protocol |
//!
//! The rules a store relies on (docs/design.md §11.3, docs/cluster.md):
//! - The store is called only from a process's own runtime (connections
//!   are made after `fork`), never with a stripe lock held.
//! - Every change of a slot bumps the slot's change sequence and sets its
//!   change mark in the region before any data byte is written, so a
//!   process killed after a write and before the store heard of it still
//!   leaves the slot marked. A flusher walks `Sessions::changed_slots`,
//!   saves each slot, and clears the mark with `Sessions::acknowledge(slot,
//!   seq)`, which only clears it if no change came after `seq`.
//! - Keys are [`store_key`]s, derived from the context tag and the token,
//!   never the raw token: a session keeps its key when a node re-issues its
//!   id with another node and slot, and the store never holds a secret.
//! - Every write is fenced by the owner (node and epoch): a store refuses a
//!   write from a node that no longer owns the session with
//!   [`StoreError::Fenced`]. Saves carry the slot's change sequence and a
//!   store keeps the highest, so two writers racing cannot reorder.

pub mod memory;
pub mod pg_tls;
pub mod postgres;
pub mod record;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::store_url::StoreKind;
use crate::config::{ClusterConfig, read_secret_file};
use crate::region::TOKEN_LEN;

/// A store key: SHA-256 over a domain string, the context tag and the token.
pub type StoreKey = [u8; 32];

/// The store key of a session (see the module doc).
pub fn store_key(context_tag: u16, token: &[u8; TOKEN_LEN]) -> StoreKey {
    let mut h = Sha256::new();
    h.update(b"sessiond store key v1\0");
    h.update(context_tag.to_be_bytes());
    h.update(token);
    h.finalize().into()
}

/// A store key as 64 lower-case hex digits (Redis key names, notices).
pub fn key_hex(k: &StoreKey) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in k {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Parses [`key_hex`]'s form; anything else is `None`.
pub fn key_from_hex(s: &str) -> Option<StoreKey> {
    if s.len() != 64 {
        return None;
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(k)
}

/// Refuses a store whose recorded schema (`found`) is newer than the one
/// this build writes (`supported`).
pub fn check_schema(found: u32, supported: u32) -> Result<(), StoreError> {
    if found > supported { Err(StoreError::SchemaTooNew { found, supported }) } else { Ok(()) }
}

/// The slot an event's id carries when the store sweep removed the
/// session: its token field then holds the store key's first bytes, not a
/// token (the store never has tokens), and webhook session keys are
/// derived from the store key so both kinds of events agree.
pub const SWEPT_SLOT: u32 = u32::MAX;

/// Builds the store a config names (no connection yet); `sweep_grace_ms`
/// is how long after expiry the store sweep takes a session (Redis keeps
/// each hash 10 minutes longer, so the sweep finds it to report it).
pub fn open_store(cfg: &ClusterConfig, sweep_grace_ms: u64) -> Result<Arc<dyn BackingStore>, OpenError> {
    let password = match &cfg.store_password_file {
        Some(p) => Some(read_secret_file("cluster.store_password_file", p)?),
        None => None,
    };
    let timeout = cfg.store_timeout;
    let shown = cfg.store.shown();
    Ok(match cfg.store.kind {
        StoreKind::Postgres => Arc::new(postgres::PgStore::new(cfg.store.raw(), shown, password, timeout)?),
        StoreKind::Redis => Arc::new(redis::RedisStore::new(
            cfg.store.raw(),
            shown,
            password,
            timeout,
            sweep_grace_ms + 10 * 60 * 1000,
            // fail-closed promises that a 2xx write survives; through a
            // Sentinel failover that takes one replica holding it.
            u32::from(cfg.when_store_down == crate::config::StoreDown::FailClosed),
        )?),
    })
}

/// Why a store could not be built from its settings. Nothing has
/// connected yet, so each of these is a setting to fix, not an outage.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `cluster.store_password_file` is unreadable or unsafe.
    #[error(transparent)]
    PasswordFile(#[from] crate::config::ConfigError),
    /// The password file of a Redis store is not UTF-8.
    #[error("{store}: the password file is not UTF-8")]
    PasswordNotUtf8 {
        /// The store (URL without credentials).
        store: String,
    },
    /// The store's client refused its URL or settings.
    #[error("{store}: {why}")]
    Client {
        /// The store (URL without credentials).
        store: String,
        /// The client's own message.
        why: String,
    },
    /// The TLS settings of a PostgreSQL store are unusable.
    #[error("{store}: {source}")]
    Tls {
        /// The store (URL without credentials).
        store: String,
        /// What is wrong with them.
        source: pg_tls::TlsSetupError,
    },
}

/// A boxed future, as a store's methods return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Errors a store reports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or failed; the message names the store
    /// (never its password).
    #[error("session store {store} unavailable: {why}")]
    Unavailable {
        /// Which store (URL without credentials).
        store: String,
        /// Why.
        why: String,
    },
    /// The store's TLS certificate was refused by the checks the URL's
    /// `sslmode` asks for (PostgreSQL): a configuration error, which stops
    /// a node at its start. The message names the check and the values.
    #[error("session store {store} refused: {why}")]
    TlsRefused {
        /// Which store (URL without credentials).
        store: String,
        /// Which check failed, with the names involved.
        why: String,
    },
    /// Another node took the session over (its owner epoch is newer).
    #[error("session was taken over by node {owner}; this node's copy is stale")]
    Fenced {
        /// The node that owns it now (0 if the session is gone).
        owner: u32,
    },
    /// The store's schema is newer than this build understands.
    #[error("the store's schema is version {found}; this sessiond understands up to {supported}: upgrade sessiond")]
    SchemaTooNew {
        /// What the store records.
        found: u32,
        /// What this build writes.
        supported: u32,
    },
}

/// Who owns a session in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The owning node.
    pub node: u32,
    /// The slot it holds the session in.
    pub slot: u32,
    /// Bumped by every takeover: a write carrying an older epoch is refused.
    pub epoch: u64,
}

/// A session as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its store key.
    pub key: StoreKey,
    /// The context's id tag.
    pub context: u16,
    /// Who owns it.
    pub owner: Owner,
    /// The owner's change sequence this record holds (highest wins).
    pub seq: u64,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Last access as the store knows it (coalesced by `save_period`).
    pub last_access_ms: u64,
    /// When the store may forget it, ms (the expiry map).
    pub expires_ms: u64,
    /// Whether the client has not come back yet.
    pub is_new: bool,
    /// Attributes, reserved ones (the gateway's) included.
    pub attributes: Vec<(String, Vec<u8>)>,
    /// Its own settings (version, timeout, deadline, principal).
    pub settings: record::Settings,
}

/// One session a store sweep removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swept {
    /// The context's id tag.
    pub context: u16,
    /// Its store key.
    pub key: StoreKey,
    /// Its owner when it was removed.
    pub owner: u32,
}

/// One live session of a principal as the store's principal index lists
/// it (the store never has the id: a session another node holds is listed
/// by its store key and owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its store key.
    pub key: StoreKey,
    /// The node that owns it.
    pub owner: u32,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Last access as the store knows it (coalesced by `save_period`).
    pub last_access_ms: u64,
    /// When it expires in the store, ms.
    pub expires_ms: u64,
    /// Whether the client has not come back yet.
    pub is_new: bool,
}

/// Most sessions one [`BackingStore::principal_sessions`] call returns.
pub const MAX_PRINCIPAL_PAGE: u32 = 1000;

/// Cuts a key-ordered listing fetched with one row more than `limit` to
/// `limit`, and returns the next page's cursor (the last key kept) when
/// that extra row was there.
pub(crate) fn cut_page(v: &mut Vec<Listed>, limit: usize) -> Option<String> {
    let next = (v.len() > limit).then(|| key_hex(&v[limit - 1].key));
    v.truncate(limit);
    next
}

/// A takeover's notice to the node that held the session before: drop
/// your copy (it is stale now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    /// The node that held the session.
    pub from: u32,
    /// The context's id tag.
    pub context: u16,
    /// The slot it held the session in.
    pub slot: u32,
    /// The session's store key (the holder checks its slot still holds it).
    pub key: StoreKey,
}

impl Moved {
    /// The notice as a message: `from slot context keyhex`.
    pub fn encode(&self) -> String {
        format!("{} {} {} {}", self.from, self.slot, self.context, key_hex(&self.key))
    }

    /// Parses [`Self::encode`]'s form; anything else is `None`.
    pub fn decode(s: &str) -> Option<Moved> {
        let mut it = s.split(' ');
        let (from, slot, context, hex) = (it.next()?, it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        let key = key_from_hex(hex)?;
        Some(Moved { from: from.parse().ok()?, slot: slot.parse().ok()?, context: context.parse().ok()?, key })
    }
}

/// The slot a heartbeat names: no region has that many slots, so no
/// holder mistakes a heartbeat for a move.
pub const BEAT_SLOT: u32 = u32::MAX;

impl Moved {
    /// A node's heartbeat through the notice channel (cluster.md §6.11):
    /// `from` is the node that sends it, the key's first 8 bytes the time
    /// it was sent (ms, little-endian), the rest zero.
    pub fn beat(node: u32, sent_ms: u64) -> Moved {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&sent_ms.to_le_bytes());
        Moved { from: node, context: 0, slot: BEAT_SLOT, key }
    }

    /// For a heartbeat, when it was sent; `None` for a move.
    pub fn beat_sent_ms(&self) -> Option<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.key[..8]);
        (self.slot == BEAT_SLOT).then_some(u64::from_le_bytes(b))
    }
}

/// A subscription to takeover notices.
pub trait MovedFeed: Send {
    /// The next notice; `Ok(None)` when the subscription ended (notices
    /// may have been missed: reconcile, then subscribe again).
    fn next(&mut self) -> StoreFuture<'_, Option<Moved>>;
}

/// A shared store behind the local regions.
pub trait BackingStore: Send + Sync {
    /// A short description for logs (URL without credentials).
    fn describe(&self) -> String;

    /// Creates the schema if missing and checks its version (once per
    /// node, at start, from the reaper).
    fn prepare(&self) -> StoreFuture<'_, ()>;

    /// The store's generation: a random id that the first node to ask
    /// writes into a store without one (`fresh`, never 0), returned as
    /// stored. A store that lost its data (a Redis restarted without
    /// persistence, a database re-created) answers a new one, which is how
    /// the nodes learn they must re-seed it (cluster.md §6.12).
    fn generation(&self, fresh: u64) -> StoreFuture<'_, u64>;

    /// Writes the whole session. Inserts it when absent; otherwise writes
    /// only if `rec.owner` still owns it (node and epoch), and keeps the
    /// stored record when it already holds a change at least as new as
    /// `rec.seq` (that is success). A live record under an older epoch
    /// than `rec`'s is replaced whoever owns it: epochs only grow through
    /// [`Self::take_over`], so the store can hold an older one only after
    /// it lost data and a stale copy re-seeded it first. `Fenced` when
    /// another owner holds it.
    fn save<'a>(&'a self, rec: &'a Record) -> StoreFuture<'a, ()>;

    /// A rotation: retires `old` and writes `rec` under its new key, both
    /// fenced by `rec.owner`. The old key goes first: a crash in between
    /// loses the store copy (the slot stays change-marked and is saved
    /// again), never leaves the old id working elsewhere.
    fn rotate<'a>(&'a self, old: &'a StoreKey, rec: &'a Record) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.retire(old, rec.owner).await?;
            self.save(rec).await
        })
    }

    /// Removes the key a rotation of `owner`'s replaces: [`Self::remove`],
    /// but stricter, because a success lets the rotation save its new key.
    /// Only `owner`'s live record, or the tombstone `owner`'s own retire
    /// left (a retry after the new key's save failed), succeeds; a
    /// tombstone anyone else left (a logout, another owner's rotation) is
    /// `Fenced { owner: 0 }`: the rotation lost, and saving its new key
    /// would fork the session or undo the logout. Gone is success: nothing
    /// can take a key over that the store does not hold.
    fn retire<'a>(&'a self, key: &'a StoreKey, owner: Owner) -> StoreFuture<'a, ()>;

    /// Moves the last access forward (never back) and the expiry with it,
    /// if `owner` owns the session; `Ok(false)` if it is gone.
    fn touch<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: Owner,
        last_access_ms: u64,
        expires_ms: u64,
    ) -> StoreFuture<'a, bool>;

    /// Removes a session `owner` owns. Gone already is success; another
    /// owner is `Fenced`.
    fn remove<'a>(&'a self, key: &'a StoreKey, owner: Owner) -> StoreFuture<'a, ()>;

    /// Ends the session for good, whoever owns it (a logout, which its
    /// token authorises on any node): its record becomes a tombstone that
    /// refuses every later save, touch, takeover and load for the rest of
    /// the session's own lifetime, and at least [`record::TOMBSTONE_MS`].
    /// Returns who held it (as a notice to send them, so they drop their
    /// copies at once), or `None` if there was no live record.
    fn end<'a>(&'a self, key: &'a StoreKey, now_ms: u64) -> StoreFuture<'a, Option<Moved>>;

    /// The session under `key`, if it is there and has not expired.
    fn load<'a>(&'a self, key: &'a StoreKey, now_ms: u64) -> StoreFuture<'a, Option<Record>>;

    /// Takes a session over: succeeds only if its epoch is still
    /// `seen_epoch` (so of two nodes taking over at once exactly one
    /// wins) and its change sequence still `seen_seq` (so a write the old
    /// owner made after the load is not overwritten by the older copy),
    /// and it has not expired; sets the owner to `node`/`slot` with the
    /// next epoch and returns that epoch. `Fenced` (naming the current
    /// owner) when either moved.
    #[allow(clippy::too_many_arguments)]
    fn take_over<'a>(
        &'a self,
        key: &'a StoreKey,
        seen_epoch: u64,
        seen_seq: u64,
        node: u32,
        slot: u32,
        now_ms: u64,
    ) -> StoreFuture<'a, u64>;

    /// One page of principal `principal`'s live sessions in context
    /// `context`, from the store's principal index (a PostgreSQL column
    /// with an index, a Redis set per principal), never a scan of every
    /// session. `cursor` is `None` for the first page, else the `next` an
    /// earlier page returned; `limit` is at most [`MAX_PRINCIPAL_PAGE`]. A
    /// page may hold fewer than `limit` sessions and still have a next one.
    fn principal_sessions<'a>(
        &'a self,
        principal: &'a str,
        context: u16,
        cursor: Option<&'a str>,
        limit: u32,
        now_ms: u64,
    ) -> StoreFuture<'a, (Vec<Listed>, Option<String>)>;

    /// Whether `cursor` is a cursor this store's
    /// [`Self::principal_sessions`] could have returned (a client echoes
    /// it back, so it is checked before use).
    fn cursor_ok(&self, cursor: &str) -> bool;

    /// The owners of `keys`, in order (`None`: not in the store).
    fn owners<'a>(&'a self, keys: &'a [StoreKey]) -> StoreFuture<'a, Vec<Option<Owner>>>;

    /// Removes at most `batch` sessions whose expiry passed before
    /// `before_ms`. Safe to run on two nodes at once.
    fn sweep(&self, before_ms: u64, batch: u32) -> StoreFuture<'_, Vec<Swept>>;

    /// Takes or renews the store-wide reaper lease for `node`; `Ok(true)`
    /// while this node holds it.
    fn elect(&self, node: u32, lease_ms: u64) -> StoreFuture<'_, bool>;

    /// Tells every node that a session moved (PostgreSQL `NOTIFY`, Redis
    /// `PUBLISH`); the node it moved from drops its copy.
    fn announce<'a>(&'a self, m: &'a Moved) -> StoreFuture<'a, ()>;

    /// Subscribes to takeover notices (a dedicated connection).
    fn subscribe(&self) -> StoreFuture<'_, Box<dyn MovedFeed>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_depend_on_context_and_token_only() {
        let t = [7u8; TOKEN_LEN];
        let mut u = t;
        u[17] = 8;
        assert_eq!(store_key(1, &t), store_key(1, &t));
        assert_ne!(store_key(1, &t), store_key(2, &t));
        assert_ne!(store_key(1, &t), store_key(1, &u));
        let m = Moved { from: 3, context: 9, slot: 77, key: store_key(1, &t) };
        assert_eq!(Moved::decode(&m.encode()), Some(m));
        let hex = key_hex(&m.key);
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, m.key.iter().map(|b| format!("{b:02x}")).collect::<String>());
        assert_eq!(key_from_hex(&hex), Some(m.key));
        assert_eq!(Moved::decode("3 77 9 zz"), None);
        assert_eq!(Moved::decode(&format!("{} extra", m.encode())), None);
        // A heartbeat travels as a notice and says when it was sent.
        let b = Moved::beat(4, 1_700_000_000_123);
        assert_eq!(Moved::decode(&b.encode()).and_then(|b| b.beat_sent_ms()), Some(1_700_000_000_123));
        assert_eq!(m.beat_sent_ms(), None);
        // The key never contains the token.
        let k = store_key(1, &t);
        assert!(!k.windows(TOKEN_LEN).any(|w| w == t));
    }
}
