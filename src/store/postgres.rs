//! The PostgreSQL session store (tokio-postgres).
//!
//! One table holds each session as one row keyed by its store key, with an
//! indexed `expires_ms` column as the expiry map (docs/cluster.md has the
//! schema). Each process holds one pipelined connection, made lazily from
//! its own runtime after `fork` and remade after a failure, plus, in the
//! reaper, a dedicated connection that holds the reaper's advisory lock
//! (a session-level lock must not sit behind a pooler or a shared
//! connection). Statements are prepared once per connection.
//!
//! The principal index is the nullable `principal` column with a partial
//! index on `(principal, ctx, key_hash)`; removals clear it. The column was
//! added without a schema version bump (`ADD COLUMN IF NOT EXISTS`): an
//! older build writes NULL there, so its sessions are missing from a
//! principal's listing until a newer node saves them.
//!
//! Every write is fenced in its `WHERE` clause (owner node and epoch, and
//! `seq` for saves); a write that changes no row is then classified by one
//! read: already newer (success), removed, or owned by another node
//! (`Fenced`). Removal leaves a tombstone row for
//! [`super::record::TOMBSTONE_MS`] so a racing save cannot bring the
//! session back; the sweep deletes both expired sessions and old
//! tombstones in bounded batches (`FOR UPDATE SKIP LOCKED`).
//!
//! TLS follows the URL's libpq `sslmode` and `sslrootcert` through the
//! rustls connector of [`super::pg_tls`]; a certificate it refuses is
//! [`StoreError::TlsRefused`], naming the check that failed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Socket, Statement};

use super::record::{self, TOMBSTONE_MS};
use super::{
    BackingStore, Listed, MAX_PRINCIPAL_PAGE, Moved, MovedFeed, OpenError, Owner, Record, StoreError, StoreFuture,
    StoreKey, Swept, check_schema, cut_page, key_from_hex, pg_tls,
};
use crate::config::store_url::PgUrl;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessiond_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS sessiond_session (
    key_hash    bytea   PRIMARY KEY,
    ctx         integer NOT NULL,
    owner_node  integer NOT NULL,
    owner_slot  integer NOT NULL,
    owner_epoch bigint  NOT NULL,
    seq         bigint  NOT NULL,
    created_ms  bigint  NOT NULL,
    accessed_ms bigint  NOT NULL,
    expires_ms  bigint  NOT NULL,
    is_new      boolean NOT NULL,
    removed     boolean NOT NULL DEFAULT false,
    attrs       bytea   NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX IF NOT EXISTS sessiond_session_expires ON sessiond_session (expires_ms);
ALTER TABLE sessiond_session ADD COLUMN IF NOT EXISTS principal text;
CREATE INDEX IF NOT EXISTS sessiond_session_principal ON sessiond_session (principal, ctx, key_hash)
    WHERE principal IS NOT NULL;
INSERT INTO sessiond_meta (key, value) VALUES ('schema_version', '1') ON CONFLICT (key) DO NOTHING;
";

const COLS: &str =
    "key_hash, ctx, owner_node, owner_slot, owner_epoch, seq, created_ms, accessed_ms, expires_ms, is_new, attrs";

/// Which fenced write changed no row, for [`PgStore::classify`]: a save or
/// touch needs a live row of this owner; a removal also takes a missing row
/// or any tombstone as done; a rotation's retire only its own tombstone
/// (`seq = -1`, `BackingStore::retire`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fenced {
    Write,
    Remove,
    Retire,
}

/// The statements of one connection.
struct Prepared {
    save: Statement,
    probe: Statement,
    retire: Statement,
    tomb: Statement,
    end: Statement,
    touch: Statement,
    load: Statement,
    take: Statement,
    owners: Statement,
    sweep: Statement,
    by_principal: Statement,
    generation: Statement,
}

/// One live connection with its statements.
struct Conn {
    client: Client,
    st: Prepared,
}

/// The PostgreSQL store of one process.
pub struct PgStore {
    cfg: tokio_postgres::Config,
    /// The rustls connector `sslmode` asks for; `None`: plaintext.
    tls: Option<pg_tls::Connector>,
    shown: String,
    timeout: Duration,
    conn: Mutex<Option<Arc<Conn>>>,
    connecting: tokio::sync::Mutex<()>,
    /// The reaper's dedicated connection holding the advisory lock.
    lock_conn: tokio::sync::Mutex<Option<Client>>,
}

fn i64_of(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl PgStore {
    /// A store for `url` (checked by the config), with the password from
    /// `password` when given. Nothing connects until the first call.
    pub fn new(url: &str, shown: String, password: Option<Vec<u8>>, timeout: Duration) -> Result<PgStore, OpenError> {
        let PgUrl { config: mut cfg, tls } =
            PgUrl::parse(url).map_err(|why| OpenError::Client { store: shown.clone(), why })?;
        let tls = pg_tls::connector(&tls).map_err(|source| OpenError::Tls { store: shown.clone(), source })?;
        if let Some(p) = password {
            cfg.password(p);
        }
        cfg.connect_timeout(timeout);
        cfg.application_name("sessiond");
        Ok(PgStore {
            cfg,
            tls,
            shown,
            timeout,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            lock_conn: tokio::sync::Mutex::new(None),
        })
    }

    fn down(&self, why: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable { store: self.shown.clone(), why: why.to_string() }
    }

    fn cached(&self) -> Option<Arc<Conn>> {
        let g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().filter(|c| !c.client.is_closed()).cloned()
    }

    /// A store error for a failed connect: a certificate the connector
    /// refused is [`StoreError::TlsRefused`].
    fn connect_failed(&self, e: tokio_postgres::Error) -> StoreError {
        match pg_tls::refusal_in(&e) {
            Some(why) => StoreError::TlsRefused { store: self.shown.clone(), why },
            None => self.down(e),
        }
    }

    /// A new connection (TLS as the URL says), its connection task handed
    /// to `drive`.
    async fn dial<F>(&self, drive: F) -> Result<Client, StoreError>
    where
        F: Drive,
    {
        let late = || self.down(format!("no connection within {:?} (cluster.store_timeout)", self.timeout));
        match &self.tls {
            None => {
                let (client, conn) = tokio::time::timeout(self.timeout, self.cfg.connect(NoTls))
                    .await
                    .map_err(|_| late())?
                    .map_err(|e| self.connect_failed(e))?;
                drive.drive(conn);
                Ok(client)
            }
            Some(tls) => {
                let (client, conn) = tokio::time::timeout(self.timeout, self.cfg.connect(tls.clone()))
                    .await
                    .map_err(|_| late())?
                    .map_err(|e| self.connect_failed(e))?;
                drive.drive(conn);
                Ok(client)
            }
        }
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        self.dial(Spawn(self.shown.clone())).await
    }

    /// The process's connection, made on first use and after a failure.
    async fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _g = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let client = self.connect().await?;
        let st = self.with_timeout(prepare(&client)).await?;
        let c = Arc::new(Conn { client, st });
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    async fn with_timeout<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Err(_) => {
                // A stalled connection is dropped so the next call reconnects.
                *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Err(self.down(format!("no answer within {:?} (cluster.store_timeout)", self.timeout)))
            }
            Ok(Err(e)) => {
                if e.is_closed() {
                    *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Err(self.down(e))
            }
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// After a fenced write changed no row: success if this owner still
    /// holds it, `Fenced` otherwise (owner 0: removed or gone).
    /// Why a fenced write of `kind` changed no row.
    async fn classify(&self, c: &Conn, key: &StoreKey, owner: Owner, kind: Fenced) -> Result<(), StoreError> {
        let rows = self.with_timeout(c.client.query(&c.st.probe, &[&key.as_slice()])).await?;
        match rows.first() {
            None if kind != Fenced::Write => Ok(()),
            None => Err(StoreError::Fenced { owner: 0 }),
            Some(r) => {
                let (node, epoch, removed, seq): (i32, i64, bool, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
                let ours = node as u32 == owner.node && epoch as u64 == owner.epoch;
                if removed {
                    let ok = match kind {
                        Fenced::Write => false,
                        Fenced::Remove => true,
                        Fenced::Retire => seq == -1 && ours,
                    };
                    if ok { Ok(()) } else { Err(StoreError::Fenced { owner: 0 }) }
                } else if ours {
                    Ok(())
                } else {
                    Err(StoreError::Fenced { owner: node as u32 })
                }
            }
        }
    }

    async fn save_inner(&self, rec: &Record) -> Result<(), StoreError> {
        let c = self.conn().await?;
        let blob = record::encode(&rec.attributes, &rec.settings);
        let rows = self
            .with_timeout(c.client.query(
                &c.st.save,
                &[
                    &rec.key.as_slice(),
                    &i32::from(rec.context),
                    &(rec.owner.node as i32),
                    &(rec.owner.slot as i32),
                    &i64_of(rec.owner.epoch),
                    &i64_of(rec.seq),
                    &i64_of(rec.created_ms),
                    &i64_of(rec.last_access_ms),
                    &i64_of(rec.expires_ms),
                    &rec.is_new,
                    &blob,
                    &rec.settings.principal.as_deref(),
                ],
            ))
            .await?;
        if rows.is_empty() {
            return self.classify(&c, &rec.key, rec.owner, Fenced::Write).await;
        }
        Ok(())
    }

    async fn remove_inner(&self, key: &StoreKey, owner: Owner, kind: Fenced) -> Result<(), StoreError> {
        let c = self.conn().await?;
        let until = i64_of(crate::clock::now_ms() + TOMBSTONE_MS);
        let st = if kind == Fenced::Retire { &c.st.retire } else { &c.st.tomb };
        let rows = self
            .with_timeout(c.client.query(st, &[&key.as_slice(), &(owner.node as i32), &i64_of(owner.epoch), &until]))
            .await?;
        if rows.is_empty() {
            return self.classify(&c, key, owner, kind).await;
        }
        Ok(())
    }
}

async fn prepare(c: &Client) -> Result<Prepared, tokio_postgres::Error> {
    Ok(Prepared {
        save: c
            .prepare(&format!(
                "INSERT INTO sessiond_session AS s ({COLS}, principal) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) \
                 ON CONFLICT (key_hash) DO UPDATE SET owner_node = EXCLUDED.owner_node, \
                 owner_slot = EXCLUDED.owner_slot, owner_epoch = EXCLUDED.owner_epoch, seq = EXCLUDED.seq, \
                 accessed_ms = GREATEST(s.accessed_ms, EXCLUDED.accessed_ms), \
                 expires_ms = GREATEST(s.expires_ms, EXCLUDED.expires_ms), is_new = EXCLUDED.is_new, \
                 attrs = EXCLUDED.attrs, principal = EXCLUDED.principal \
                 WHERE NOT s.removed AND ((s.owner_node = EXCLUDED.owner_node \
                 AND s.owner_epoch = EXCLUDED.owner_epoch AND s.seq < EXCLUDED.seq) \
                 OR s.owner_epoch < EXCLUDED.owner_epoch) RETURNING 1"
            ))
            .await?,
        probe: c
            .prepare("SELECT owner_node, owner_epoch, removed, seq FROM sessiond_session WHERE key_hash = $1")
            .await?,
        retire: c
            .prepare(
                "UPDATE sessiond_session SET removed = true, seq = -1, attrs = '\\x'::bytea, principal = NULL, \
                 expires_ms = $4 WHERE key_hash = $1 AND owner_node = $2 AND owner_epoch = $3 AND NOT removed \
                 RETURNING 1",
            )
            .await?,
        tomb: c
            .prepare(
                "UPDATE sessiond_session SET removed = true, attrs = '\\x'::bytea, principal = NULL, expires_ms = $4 \
                 WHERE key_hash = $1 AND owner_node = $2 AND owner_epoch = $3 AND NOT removed RETURNING 1",
            )
            .await?,
        end: c
            .prepare(
                "UPDATE sessiond_session SET removed = true, attrs = '\\x'::bytea, principal = NULL, \
                 expires_ms = GREATEST(expires_ms, $2) \
                 WHERE key_hash = $1 AND NOT removed RETURNING ctx, owner_node, owner_slot",
            )
            .await?,
        touch: c
            .prepare(
                "UPDATE sessiond_session SET accessed_ms = GREATEST(accessed_ms, $2), \
                 expires_ms = GREATEST(expires_ms, $3), is_new = false \
                 WHERE key_hash = $1 AND owner_node = $4 AND owner_epoch = $5 AND NOT removed RETURNING 1",
            )
            .await?,
        load: c
            .prepare(&format!(
                "SELECT {COLS} FROM sessiond_session WHERE key_hash = $1 AND NOT removed AND expires_ms > $2"
            ))
            .await?,
        take: c
            .prepare(
                "UPDATE sessiond_session SET owner_node = $2, owner_slot = $3, owner_epoch = owner_epoch + 1, \
                 seq = 0 WHERE key_hash = $1 AND owner_epoch = $4 AND seq = $6 AND NOT removed AND expires_ms > $5 \
                 RETURNING owner_epoch",
            )
            .await?,
        owners: c
            .prepare(
                "SELECT key_hash, owner_node, owner_slot, owner_epoch FROM sessiond_session \
                 WHERE key_hash = ANY($1) AND NOT removed",
            )
            .await?,
        sweep: c
            .prepare(
                "DELETE FROM sessiond_session WHERE ctid = ANY(ARRAY(SELECT ctid FROM sessiond_session \
                 WHERE expires_ms < $1 ORDER BY expires_ms LIMIT $2 FOR UPDATE SKIP LOCKED)) \
                 RETURNING ctx, key_hash, owner_node, removed",
            )
            .await?,
        generation: c
            .prepare(
                "WITH ins AS (INSERT INTO sessiond_meta (key, value) VALUES ('generation', $1) \
                 ON CONFLICT (key) DO NOTHING RETURNING value) \
                 SELECT value FROM ins UNION ALL \
                 SELECT value FROM sessiond_meta WHERE key = 'generation' LIMIT 1",
            )
            .await?,
        by_principal: c
            .prepare(
                "SELECT key_hash, owner_node, created_ms, accessed_ms, expires_ms, is_new FROM sessiond_session \
                 WHERE principal = $1 AND ctx = $2 AND key_hash > $3 AND NOT removed AND expires_ms > $4 \
                 ORDER BY key_hash LIMIT $5",
            )
            .await?,
    })
}

fn key_of(b: &[u8]) -> Option<StoreKey> {
    b.try_into().ok()
}

impl BackingStore for PgStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn prepare(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.connect().await?;
            // One node creates the schema at a time; IF NOT EXISTS makes a
            // second run harmless anyway.
            let ddl = format!(
                "SET client_min_messages = warning; BEGIN; SELECT pg_advisory_xact_lock(hashtext('sessiond.schema')); {SCHEMA} COMMIT;"
            );
            self.with_timeout(client.batch_execute(&ddl)).await?;
            let row = self
                .with_timeout(client.query_one("SELECT value FROM sessiond_meta WHERE key = 'schema_version'", &[]))
                .await?;
            let v: String = row.get(0);
            let found: u32 =
                v.trim().parse().map_err(|_| self.down(format!("schema_version {v:?} is not a number")))?;
            check_schema(found, SCHEMA_VERSION)
        })
    }

    fn generation(&self, fresh: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let c = self.conn().await?;
            // One prepared statement, one round trip: asked every heartbeat.
            // No row only when another node's first insert committed after
            // this statement's snapshot: the second run sees it.
            let fresh = fresh.to_string();
            let mut row = None;
            for _ in 0..2 {
                row = self.with_timeout(c.client.query_opt(&c.st.generation, &[&fresh])).await?;
                if row.is_some() {
                    break;
                }
            }
            let Some(row) = row else { return Err(self.down("sessiond_meta holds no generation")) };
            let v: String = row.get(0);
            v.trim().parse().map_err(|_| self.down(format!("generation {v:?} is not a number")))
        })
    }

    fn save<'a>(&'a self, rec: &'a Record) -> StoreFuture<'a, ()> {
        Box::pin(self.save_inner(rec))
    }

    fn touch<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: Owner,
        last_access_ms: u64,
        expires_ms: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let c = self.conn().await?;
            let rows = self
                .with_timeout(c.client.query(
                    &c.st.touch,
                    &[
                        &key.as_slice(),
                        &i64_of(last_access_ms),
                        &i64_of(expires_ms),
                        &(owner.node as i32),
                        &i64_of(owner.epoch),
                    ],
                ))
                .await?;
            if rows.is_empty() {
                // Gone from the store (swept while this node could not reach
                // it): `Ok(false)`, and the caller writes it whole again. A
                // tombstone or another owner: `Fenced`.
                let probe = self.with_timeout(c.client.query(&c.st.probe, &[&key.as_slice()])).await?;
                if probe.is_empty() {
                    return Ok(false);
                }
                self.classify(&c, key, owner, Fenced::Write).await?;
                return Ok(false);
            }
            Ok(true)
        })
    }

    fn remove<'a>(&'a self, key: &'a StoreKey, owner: Owner) -> StoreFuture<'a, ()> {
        Box::pin(self.remove_inner(key, owner, Fenced::Remove))
    }

    fn retire<'a>(&'a self, key: &'a StoreKey, owner: Owner) -> StoreFuture<'a, ()> {
        Box::pin(self.remove_inner(key, owner, Fenced::Retire))
    }

    fn end<'a>(&'a self, key: &'a StoreKey, now_ms: u64) -> StoreFuture<'a, Option<Moved>> {
        Box::pin(async move {
            let c = self.conn().await?;
            let until = i64_of(now_ms + TOMBSTONE_MS);
            let rows = self.with_timeout(c.client.query(&c.st.end, &[&key.as_slice(), &until])).await?;
            Ok(rows.first().map(|r| Moved {
                context: r.get::<_, i32>(0) as u16,
                from: r.get::<_, i32>(1) as u32,
                slot: r.get::<_, i32>(2) as u32,
                key: *key,
            }))
        })
    }

    fn load<'a>(&'a self, key: &'a StoreKey, now_ms: u64) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            let c = self.conn().await?;
            let rows = self.with_timeout(c.client.query(&c.st.load, &[&key.as_slice(), &i64_of(now_ms)])).await?;
            let Some(r) = rows.first() else { return Ok(None) };
            let blob: &[u8] = r.get(10);
            let (attributes, settings) =
                record::decode(blob).map_err(|e| self.down(format!("stored session damaged: {e}")))?;
            let ctx: i32 = r.get(1);
            Ok(Some(Record {
                key: *key,
                context: ctx as u16,
                owner: Owner {
                    node: r.get::<_, i32>(2) as u32,
                    slot: r.get::<_, i32>(3) as u32,
                    epoch: r.get::<_, i64>(4) as u64,
                },
                seq: r.get::<_, i64>(5) as u64,
                created_ms: r.get::<_, i64>(6) as u64,
                last_access_ms: r.get::<_, i64>(7) as u64,
                expires_ms: r.get::<_, i64>(8) as u64,
                is_new: r.get(9),
                attributes,
                settings,
            }))
        })
    }

    fn take_over<'a>(
        &'a self,
        key: &'a StoreKey,
        seen_epoch: u64,
        seen_seq: u64,
        node: u32,
        slot: u32,
        now_ms: u64,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let c = self.conn().await?;
            let rows = self
                .with_timeout(c.client.query(
                    &c.st.take,
                    &[
                        &key.as_slice(),
                        &(node as i32),
                        &(slot as i32),
                        &i64_of(seen_epoch),
                        &i64_of(now_ms),
                        &i64_of(seen_seq),
                    ],
                ))
                .await?;
            match rows.first() {
                Some(r) => Ok(r.get::<_, i64>(0) as u64),
                None => {
                    let probe = self.with_timeout(c.client.query(&c.st.probe, &[&key.as_slice()])).await?;
                    let owner = probe.first().map_or(0, |r| r.get::<_, i32>(0) as u32);
                    Err(StoreError::Fenced { owner })
                }
            }
        })
    }

    fn principal_sessions<'a>(
        &'a self,
        principal: &'a str,
        context: u16,
        cursor: Option<&'a str>,
        limit: u32,
        now_ms: u64,
    ) -> StoreFuture<'a, (Vec<Listed>, Option<String>)> {
        Box::pin(async move {
            // The empty bytea sorts before every key.
            let after: Vec<u8> = cursor.and_then(key_from_hex).map_or(Vec::new(), |k| k.to_vec());
            let limit = limit.clamp(1, MAX_PRINCIPAL_PAGE);
            let c = self.conn().await?;
            // One more than asked, to know whether a next page exists.
            let rows = self
                .with_timeout(c.client.query(
                    &c.st.by_principal,
                    &[&principal, &i32::from(context), &after, &i64_of(now_ms), &(i64::from(limit) + 1)],
                ))
                .await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                let Some(key) = key_of(r.get(0)) else { continue };
                let (owner, created, accessed, expires): (i32, i64, i64, i64) =
                    (r.get(1), r.get(2), r.get(3), r.get(4));
                v.push(Listed {
                    key,
                    owner: owner as u32,
                    created_ms: created.max(0) as u64,
                    last_access_ms: accessed.max(0) as u64,
                    expires_ms: expires.max(0) as u64,
                    is_new: r.get(5),
                });
            }
            let next = cut_page(&mut v, limit as usize);
            Ok((v, next))
        })
    }

    fn cursor_ok(&self, cursor: &str) -> bool {
        key_from_hex(cursor).is_some()
    }

    fn owners<'a>(&'a self, keys: &'a [StoreKey]) -> StoreFuture<'a, Vec<Option<Owner>>> {
        Box::pin(async move {
            let c = self.conn().await?;
            let list: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let rows = self.with_timeout(c.client.query(&c.st.owners, &[&list])).await?;
            let mut found = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                if let Some(k) = key_of(r.get::<_, &[u8]>(0)) {
                    let o = Owner {
                        node: r.get::<_, i32>(1) as u32,
                        slot: r.get::<_, i32>(2) as u32,
                        epoch: r.get::<_, i64>(3) as u64,
                    };
                    found.insert(k, o);
                }
            }
            Ok(keys.iter().map(|k| found.get(k).copied()).collect())
        })
    }

    fn sweep(&self, before_ms: u64, batch: u32) -> StoreFuture<'_, Vec<Swept>> {
        Box::pin(async move {
            let c = self.conn().await?;
            let rows = self.with_timeout(c.client.query(&c.st.sweep, &[&i64_of(before_ms), &i64::from(batch)])).await?;
            Ok(rows
                .iter()
                .filter(|r| !r.get::<_, bool>(3))
                .filter_map(|r| {
                    Some(Swept {
                        context: r.get::<_, i32>(0) as u16,
                        key: key_of(r.get::<_, &[u8]>(1))?,
                        owner: r.get::<_, i32>(2) as u32,
                    })
                })
                .collect())
        })
    }

    fn elect(&self, _node: u32, _lease_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut g = self.lock_conn.lock().await;
            if let Some(c) = g.as_ref() {
                // The lock lives as long as this connection: check it is alive.
                match tokio::time::timeout(self.timeout, c.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => return Ok(true),
                    _ => *g = None,
                }
            }
            let c = self.connect().await?;
            let row =
                self.with_timeout(c.query_one("SELECT pg_try_advisory_lock(hashtext('sessiond.reaper'))", &[])).await?;
            let got: bool = row.get(0);
            if got {
                *g = Some(c);
            }
            Ok(got)
        })
    }

    fn announce<'a>(&'a self, m: &'a Moved) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let c = self.conn().await?;
            let payload = m.encode();
            self.with_timeout(c.client.execute("SELECT pg_notify('sessiond_moved', $1)", &[&payload])).await?;
            Ok(())
        })
    }

    fn subscribe(&self) -> StoreFuture<'_, Box<dyn MovedFeed>> {
        Box::pin(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(FEED_QUEUE);
            let client = self.dial(Listen(tx)).await?;
            self.with_timeout(client.batch_execute("LISTEN sessiond_moved")).await?;
            Ok(Box::new(PgFeed { _client: client, rx }) as Box<dyn MovedFeed>)
        })
    }
}

/// What runs a new connection's I/O: a plain connection is spawned, a
/// `LISTEN` one also forwards its notifications.
trait Drive {
    /// Takes the connection's task (the `tls` type varies with `sslmode`).
    fn drive<T>(self, conn: tokio_postgres::Connection<Socket, T>)
    where
        T: tokio_postgres::tls::TlsStream + Unpin + Send + 'static;
}

/// Spawns the connection; logs how it closed.
struct Spawn(String);

impl Drive for Spawn {
    fn drive<T>(self, conn: tokio_postgres::Connection<Socket, T>)
    where
        T: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
    {
        let shown = self.0;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::warn!("session store {shown}: connection closed: {e}");
            }
        });
    }
}

/// Spawns the connection and sends each notification's payload on.
struct Listen(tokio::sync::mpsc::Sender<String>);

impl Drive for Listen {
    fn drive<T>(self, mut conn: tokio_postgres::Connection<Socket, T>)
    where
        T: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
    {
        let tx = self.0;
        tokio::spawn(async move {
            while let Some(Ok(msg)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                if let tokio_postgres::AsyncMessage::Notification(n) = msg
                    && tx.try_send(n.payload().to_string()).is_err()
                {
                    // Full: end the feed; the subscriber reconciles.
                    break;
                }
            }
        });
    }
}

/// Notices queued per subscription before it is ended (and reconciled).
const FEED_QUEUE: usize = 65_536;

/// A `LISTEN sessiond_moved` subscription on its own connection.
struct PgFeed {
    _client: Client,
    rx: tokio::sync::mpsc::Receiver<String>,
}

impl MovedFeed for PgFeed {
    fn next(&mut self) -> StoreFuture<'_, Option<Moved>> {
        Box::pin(async move {
            loop {
                match self.rx.recv().await {
                    None => return Ok(None),
                    Some(p) => {
                        if let Some(m) = Moved::decode(&p) {
                            return Ok(Some(m));
                        }
                    }
                }
            }
        })
    }
}
