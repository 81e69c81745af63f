//! The Redis session store (redis-rs with tokio).
//!
//! Each session is one hash, `sd:{<hex store key>}` (the braces pin it to
//! one Redis Cluster slot), with fields `o` owner node, `s` slot, `e`
//! epoch, `q` change sequence, `c` created, `a` last access, `x` expiry,
//! `n` new, `g` context tag, `d` the attribute blob, `p` the principal
//! (empty: none) and `r` removed. Its
//! native TTL (`PEXPIREAT` expiry + grace) is the expiry map; a sorted set
//! `sd:exp` (score = expiry) lets the elected sweep find expired sessions
//! to report them, 500 at a time, without `KEYS`, `SCAN` of the keyspace,
//! `CONFIG` or keyspace notifications, which managed Redis forbids.
//!
//! The principal index is a set per principal, `sd:p:{<hex SHA-256 of
//! the principal>}`, of store keys. A save of a session with a principal
//! adds it, in the save's pipeline but outside the script; the set's TTL follows its longest-lived
//! session (saves and touches move it later, never earlier), so the set
//! of a principal whose sessions all ended goes by itself (Spring
//! Session's index leak, #478, does not happen). A listing reads each
//! member's hash and drops members that ended or changed principal.
//!
//! Every write is one Lua script on the session's own key, which checks
//! the owner and epoch (and the sequence, for saves) and returns 0 when it
//! changes nothing, so fencing is atomic in Redis itself. Scripts are
//! loaded at connect and called by SHA; a `NOSCRIPT` answer (a restarted
//! Redis) reloads them once. The reaper lease is `SET sd:reaper NX PX`,
//! renewed by a compare-and-extend script.
//!
//! One multiplexed connection per process, made lazily from its own
//! runtime after `fork` and remade after a failure.
//!
//! **Sentinel.** With a `redis+sentinel://` URL the server is the master
//! the sentinels name: every (re)connect asks them again (redis-rs's
//! `Sentinel::async_master_for`, which also checks that the server it
//! names answers `ROLE` as a master), so a node follows a failover without
//! a restart. A `READONLY` answer (a demoted master) drops the connection
//! like a broken one. With `wait_replicas = N` (by default 1 under
//! `when_store_down = "fail-closed"`), every write is followed, on the
//! same connection, by `WAIT N store_timeout`, and a write that fewer than
//! N replicas confirmed is a failure: the answer is 503, never a 2xx for a
//! write the promoted replica may not have (Redis replicates
//! asynchronously; docs/cluster.md §2).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{AsyncConnectionConfig, Client, RedisConnectionInfo, Value};

use super::record::{self, TOMBSTONE_MS};
use super::{
    BackingStore, Listed, MAX_PRINCIPAL_PAGE, Moved, MovedFeed, OpenError, Owner, Record, StoreError, StoreFuture,
    StoreKey, Swept, check_schema, key_from_hex, key_hex,
};
use crate::config::store_url::SentinelUrl;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The expiry index.
const EXP: &str = "sd:exp";
/// The reaper lease.
const LEASE: &str = "sd:reaper";
/// The key layout version.
const SCHEMA: &str = "sd:schema";
/// The store's generation (cluster.md §6.12).
const GENERATION: &str = "sd:gen";
/// The takeover notices' channel.
const MOVED: &str = "sd:moved";
/// A principal's index set: `sd:p:{<hex SHA-256 of the principal>}`.
const PRINCIPAL: &str = "sd:p:";

const SAVE: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'o', 'e', 'q', 'r', 'a', 'x')
local a = tonumber(ARGV[6])
local x = tonumber(ARGV[7])
-- A live record under an older epoch is replaced: only a store that lost
-- its data and was re-seeded by a stale copy holds one (cluster.md §6.12).
local older = o[1] and o[4] ~= '1' and tonumber(o[2]) < tonumber(ARGV[3])
if o[1] and not older then
  if o[4] == '1' then return {-1, 0} end
  if o[1] ~= ARGV[1] or o[2] ~= ARGV[3] then return {-1, tonumber(o[1])} end
  if tonumber(o[3]) >= tonumber(ARGV[4]) then return {0, 0} end
  if tonumber(o[5]) > a then a = tonumber(o[5]) end
  if tonumber(o[6]) > x then x = tonumber(o[6]) end
  -- The owner, creation and context never change under the same epoch.
  redis.call('HSET', KEYS[1], 's', ARGV[2], 'q', ARGV[4], 'a', string.format('%d', a),
    'x', string.format('%d', x), 'n', ARGV[8], 'd', ARGV[9], 'p', ARGV[12])
else
  redis.call('HSET', KEYS[1], 'o', ARGV[1], 's', ARGV[2], 'e', ARGV[3], 'q', ARGV[4], 'c', ARGV[5],
    'a', string.format('%d', a), 'x', string.format('%d', x), 'n', ARGV[8], 'd', ARGV[9], 'g', ARGV[11], 'r', '0',
    'p', ARGV[12])
  redis.call('PEXPIREAT', KEYS[1], x + tonumber(ARGV[10]))
  return {1, 1}
end
redis.call('PEXPIREAT', KEYS[1], x + tonumber(ARGV[10]))
return {1, 0}
"#;

const REMOVE: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'o', 'e', 'r')
if not o[1] or o[3] == '1' then return {1, 0} end
if o[1] ~= ARGV[1] or o[2] ~= ARGV[2] then return {-1, tonumber(o[1])} end
redis.call('HSET', KEYS[1], 'r', '1', 'd', '')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, 0}
"#;

// A rotation's removal of its old key (BackingStore::retire): its tombstone
// carries q = -1, so the same owner's retry succeeds and nothing else does.
const RETIRE: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'o', 'e', 'r', 'q')
if not o[1] then return {1, 0} end
if o[3] == '1' then
  if o[4] == '-1' and o[1] == ARGV[1] and o[2] == ARGV[2] then return {1, 0} end
  return {-1, 0}
end
if o[1] ~= ARGV[1] or o[2] ~= ARGV[2] then return {-1, tonumber(o[1])} end
redis.call('HSET', KEYS[1], 'r', '1', 'd', '', 'q', '-1')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, 0}
"#;

const END: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'o', 's', 'g', 'r', 'x')
if not o[1] or o[4] == '1' then return {0, 0, 0, 0} end
redis.call('HSET', KEYS[1], 'r', '1', 'd', '')
local ttl = tonumber(o[5] or '0') - tonumber(ARGV[1])
if ttl < tonumber(ARGV[2]) then ttl = tonumber(ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, tonumber(o[1]), tonumber(o[2]), tonumber(o[3])}
"#;

const TOUCH: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'o', 'e', 'r', 'a', 'x', 'p')
if not o[1] then return {0, 0, ''} end
if o[3] == '1' then return {-1, 0, ''} end
if o[1] ~= ARGV[1] or o[2] ~= ARGV[2] then return {-1, tonumber(o[1]), ''} end
local a = tonumber(ARGV[3])
if tonumber(o[4]) > a then a = tonumber(o[4]) end
local x = tonumber(ARGV[4])
if tonumber(o[5]) > x then x = tonumber(o[5]) end
redis.call('HSET', KEYS[1], 'a', string.format('%d', a), 'x', string.format('%d', x), 'n', '0')
redis.call('PEXPIREAT', KEYS[1], x + tonumber(ARGV[5]))
return {1, x, o[6] or ''}
"#;

const TAKE: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'o', 'e', 'r', 'x', 'q')
if not o[1] or o[3] == '1' then return {-1, 0} end
if o[2] ~= ARGV[1] or o[5] ~= ARGV[5] or tonumber(o[4]) <= tonumber(ARGV[4]) then return {-1, tonumber(o[1])} end
local e = tonumber(o[2]) + 1
redis.call('HSET', KEYS[1], 'o', ARGV[2], 's', ARGV[3], 'e', string.format('%d', e), 'q', '0')
return {1, e}
"#;

const SWEEP_ONE: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'x', 'r', 'g', 'o')
if not o[1] then return {0, 0, 0} end
if o[2] == '1' then return {0, 0, 0} end
if tonumber(o[1]) >= tonumber(ARGV[1]) then return {2, tonumber(o[1]), 0} end
redis.call('DEL', KEYS[1])
return {1, tonumber(o[3]), tonumber(o[4])}
"#;

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"#;

/// The scripts, loaded per connection.
const SCRIPTS: [&str; 8] = [SAVE, REMOVE, TOUCH, TAKE, SWEEP_ONE, RENEW, END, RETIRE];
#[derive(Clone, Copy)]
enum S {
    Save = 0,
    Remove,
    Touch,
    Take,
    SweepOne,
    Renew,
    End,
    Retire,
}

/// `HMGET o s e r` of one session.
type OwnerFields = (Option<u64>, Option<u64>, Option<u64>, Option<u8>);

struct Conn {
    con: MultiplexedConnection,
    shas: Vec<String>,
}

/// Where the store's server is.
enum Target {
    /// The one server the URL names.
    Direct(Client),
    /// The master the sentinels name, asked at every connect.
    Sentinel {
        /// The sentinels (redis-rs keeps a connection to each).
        sentinel: tokio::sync::Mutex<Sentinel>,
        /// The name they monitor the master under.
        master: String,
        /// How the master is reached (db, user, password).
        node: SentinelNodeConnectionInfo,
    },
}

/// The Redis store of one process.
pub struct RedisStore {
    /// A hash outlives its expiry by this much (more than the sweep's
    /// grace), so the sweep sees it first and reports it.
    ttl_grace_ms: u64,
    target: Target,
    /// Replicas that must confirm each write (`WAIT`); 0: none.
    wait_replicas: u32,
    shown: String,
    timeout: Duration,
    conn: Mutex<Option<Arc<Conn>>>,
    connecting: tokio::sync::Mutex<()>,
}

/// The index set of `principal` (hashed: a principal may hold any UTF-8,
/// and braces in it would move the key's Redis Cluster slot).
fn principal_set(principal: &str) -> String {
    use sha2::{Digest, Sha256};
    let h: StoreKey = Sha256::digest(principal.as_bytes()).into();
    format!("{PRINCIPAL}{{{}}}", key_hex(&h))
}

fn key_name(k: &StoreKey) -> String {
    let mut s = String::with_capacity(69);
    s.push_str("sd:{");
    s.push_str(&key_hex(k));
    s.push('}');
    s
}

impl RedisStore {
    /// A store for `url` (checked by the config), with the password from
    /// `password` when given. Nothing connects until the first call.
    /// `default_wait_replicas` applies to a Sentinel URL without its own
    /// `wait_replicas`.
    pub fn new(
        url: &str,
        shown: String,
        password: Option<Vec<u8>>,
        timeout: Duration,
        ttl_grace_ms: u64,
        default_wait_replicas: u32,
    ) -> Result<RedisStore, OpenError> {
        use redis::IntoConnectionInfo;
        let client = |e: &dyn std::fmt::Display| OpenError::Client { store: shown.clone(), why: e.to_string() };
        let password = match password {
            Some(p) => Some(String::from_utf8(p).map_err(|_| OpenError::PasswordNotUtf8 { store: shown.clone() })?),
            None => None,
        };
        let (target, wait_replicas) = if url.starts_with("redis+sentinel://") {
            let u = SentinelUrl::parse(url).map_err(|e| client(&e))?;
            let sentinels: Vec<redis::ConnectionInfo> = u
                .sentinels
                .iter()
                .map(|(host, port)| redis::ConnectionInfo {
                    addr: redis::ConnectionAddr::Tcp(host.clone(), *port),
                    redis: RedisConnectionInfo::default(),
                })
                .collect();
            let sentinel = Sentinel::build(sentinels).map_err(|e| client(&e))?;
            let node = SentinelNodeConnectionInfo {
                tls_mode: None,
                redis_connection_info: Some(RedisConnectionInfo {
                    db: u.db,
                    username: u.username,
                    password: password.or(u.password),
                    ..Default::default()
                }),
            };
            let target = Target::Sentinel { sentinel: tokio::sync::Mutex::new(sentinel), master: u.master, node };
            (target, u.wait_replicas.unwrap_or(default_wait_replicas))
        } else {
            let mut info = url.into_connection_info().map_err(|e| client(&e))?;
            if let Some(p) = password {
                info.redis.password = Some(p);
            }
            (Target::Direct(Client::open(info).map_err(|e| client(&e))?), 0)
        };
        Ok(RedisStore {
            ttl_grace_ms,
            target,
            wait_replicas,
            shown,
            timeout,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// A client for the server to use now: the URL's, or the master the
    /// sentinels name at this moment.
    async fn client(&self) -> Result<Client, StoreError> {
        match &self.target {
            Target::Direct(c) => Ok(c.clone()),
            Target::Sentinel { sentinel, master, node } => {
                let mut s = sentinel.lock().await;
                tokio::time::timeout(self.timeout, s.async_master_for(master, Some(node)))
                    .await
                    .map_err(|_| {
                        self.down(format!(
                            "the sentinels named no master {master:?} within {:?} (cluster.store_timeout)",
                            self.timeout
                        ))
                    })?
                    .map_err(|e| self.down(format!("asking the sentinels for master {master:?}: {e}")))
            }
        }
    }

    fn down(&self, why: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable { store: self.shown.clone(), why: why.to_string() }
    }

    fn forget(&self) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The process's connection, and whether it was made by this call
    /// (`false`: reused, so it may have died while idle).
    async fn conn(&self) -> Result<(Arc<Conn>, bool), StoreError> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok((c, false));
        }
        let _g = self.connecting.lock().await;
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok((c, false));
        }
        let cfg = AsyncConnectionConfig::new().set_connection_timeout(self.timeout).set_response_timeout(self.timeout);
        let client = self.client().await?;
        let mut con = tokio::time::timeout(self.timeout, client.get_multiplexed_async_connection_with_config(&cfg))
            .await
            .map_err(|_| self.down(format!("no connection within {:?} (cluster.store_timeout)", self.timeout)))?
            .map_err(|e| self.down(e))?;
        let mut shas = Vec::with_capacity(SCRIPTS.len());
        for s in SCRIPTS {
            let sha: String =
                redis::cmd("SCRIPT").arg("LOAD").arg(s).query_async(&mut con).await.map_err(|e| self.down(e))?;
            shas.push(sha);
        }
        let c = Arc::new(Conn { con, shas });
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok((c, true))
    }

    /// Runs `f` on the connection with the timeout; a failure drops the
    /// connection so the next call reconnects. `NOSCRIPT` reloads once.
    ///
    /// A reused connection found dropped (the store restarted, or a
    /// partition cut it while idle: redis-rs answers "broken pipe" without
    /// sending) is remade and the call tried once more on the new one, so
    /// the first call after an outage does not fail for a connection the
    /// store already closed. That retry is safe even when the first try
    /// did reach Redis before the drop: every write is a compare-and-set
    /// script (owner, epoch, sequence), so a second run of a landed write
    /// changes nothing (`Save` answers 0, `End` 0, `Take` fenced), and the
    /// reads are reads.
    async fn run<T: redis::FromRedisValue>(&self, build: impl Fn(&Conn) -> redis::Pipeline) -> Result<T, StoreError> {
        self.run_inner(false, build).await
    }

    /// [`Self::run`] for a pipeline that writes: with `wait_replicas`, the
    /// write counts only once that many replicas confirmed it (see the
    /// module doc).
    async fn write<T: redis::FromRedisValue>(&self, build: impl Fn(&Conn) -> redis::Pipeline) -> Result<T, StoreError> {
        self.run_inner(true, build).await
    }

    async fn run_inner<T: redis::FromRedisValue>(
        &self,
        write: bool,
        build: impl Fn(&Conn) -> redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut redialled = false;
        for attempt in 0..3 {
            let (c, fresh) = self.conn().await?;
            let mut con = c.con.clone();
            let pipe = build(&c);
            match tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut con)).await {
                Err(_) => {
                    self.forget();
                    return Err(self.down(format!("no answer within {:?} (cluster.store_timeout)", self.timeout)));
                }
                Ok(Err(e)) if e.kind() == redis::ErrorKind::NoScriptError && attempt == 0 => self.forget(),
                Ok(Err(e)) if e.is_connection_dropped() && !fresh && !redialled => {
                    redialled = true;
                    self.forget();
                }
                Ok(Err(e)) => {
                    // READONLY: the master this connection reached was
                    // demoted; the next connect asks the sentinels again.
                    if e.is_connection_dropped()
                        || e.is_unrecoverable_error()
                        || e.is_timeout()
                        || e.kind() == redis::ErrorKind::ReadOnly
                    {
                        self.forget();
                    }
                    return Err(self.down(e));
                }
                Ok(Ok(v)) => {
                    if write && self.wait_replicas > 0 {
                        // The same connection: WAIT counts this client's
                        // writes, so a new connection would confirm nothing.
                        self.confirm(&mut con).await?;
                    }
                    return Ok(v);
                }
            }
        }
        Err(self.down("scripts could not be loaded"))
    }

    /// `WAIT wait_replicas`: an error unless that many replicas hold every
    /// write this connection made.
    async fn confirm(&self, con: &mut MultiplexedConnection) -> Result<(), StoreError> {
        let n = self.wait_replicas;
        // Redis answers within its own timeout, before the client's.
        let ms = (self.timeout.as_millis() as u64 * 3 / 4).max(1);
        let got =
            match tokio::time::timeout(self.timeout, redis::cmd("WAIT").arg(n).arg(ms).query_async::<i64>(con)).await {
                Ok(Ok(got)) => got,
                Ok(Err(e)) => {
                    self.forget();
                    return Err(self.down(format!("WAIT {n} {ms}: {e}")));
                }
                Err(_) => {
                    self.forget();
                    return Err(self.down(format!("WAIT {n} {ms}: no answer within {:?}", self.timeout)));
                }
            };
        if got < i64::from(n) {
            // A master that lost its replicas may be the old side of a
            // failover: ask the sentinels again at the next call.
            self.forget();
            return Err(self.down(format!(
                "a write reached {got} of the {n} replica(s) wait_replicas asks for within {ms} ms, so a \
                 failover could lose it; it is not confirmed"
            )));
        }
        Ok(())
    }

    fn script(c: &Conn, s: S, key: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&c.shas[s as usize]).arg(1).arg(key);
        cmd
    }

    /// A script answer `{code, n}`: 1 done, 0 nothing to do, -1 fenced (n: owner).
    fn fenced(&self, (code, n): (i64, i64)) -> Result<i64, StoreError> {
        if code < 0 { Err(StoreError::Fenced { owner: n.max(0) as u32 }) } else { Ok(code) }
    }

    async fn save_inner(&self, rec: &Record) -> Result<(), StoreError> {
        let k = key_name(&rec.key);
        let blob = record::encode(&rec.attributes, &rec.settings);
        let member = key_hex(&rec.key);
        let r: ((i64, i64),) = self
            .write(|c| {
                let mut p = redis::pipe();
                let mut cmd = Self::script(c, S::Save, &k);
                cmd.arg(rec.owner.node)
                    .arg(rec.owner.slot)
                    .arg(rec.owner.epoch)
                    .arg(rec.seq)
                    .arg(rec.created_ms)
                    .arg(rec.last_access_ms)
                    .arg(rec.expires_ms)
                    .arg(u8::from(rec.is_new))
                    .arg(&blob)
                    .arg(self.ttl_grace_ms)
                    .arg(rec.context)
                    .arg(rec.settings.principal.as_deref().unwrap_or(""));
                p.add_command(cmd);
                if let Some(principal) = &rec.settings.principal {
                    // In the same pipeline but outside the script, which
                    // touches only the session's own key (a Redis Cluster
                    // slot of its own). Sent even if the save is fenced: a
                    // listing checks each member's hash, and drops members
                    // that ended or changed principal.
                    self.index_cmds(&mut p, principal, &member, rec.expires_ms);
                }
                p
            })
            .await?;
        self.fenced(r.0)?;
        if (r.0).1 == 1 {
            // A new session: the expiry index learns of it once (outside the
            // script, so the script touches only the session's own key). Its
            // score may fall behind the hash's expiry; the sweep re-reads the
            // hash and corrects it (code 2 of SWEEP_ONE).
            let _: () = self
                .write(|_| {
                    let mut p = redis::pipe();
                    p.cmd("ZADD").arg(EXP).arg(rec.expires_ms).arg(&member).ignore();
                    p
                })
                .await?;
        }
        Ok(())
    }

    /// Appends to `p` (answers ignored): add `member` to `principal`'s
    /// index set, and keep the set alive until `expires_ms` (plus the
    /// hashes' grace) at least.
    fn index_cmds(&self, p: &mut redis::Pipeline, principal: &str, member: &str, expires_ms: u64) {
        let set = principal_set(principal);
        let until = expires_ms.saturating_add(self.ttl_grace_ms);
        p.cmd("SADD").arg(&set).arg(member).ignore();
        // NX sets a first expiry, GT only ever moves it later.
        p.cmd("PEXPIREAT").arg(&set).arg(until).arg("NX").ignore();
        p.cmd("PEXPIREAT").arg(&set).arg(until).arg("GT").ignore();
    }

    async fn remove_inner(&self, key: &StoreKey, owner: Owner, script: S) -> Result<(), StoreError> {
        let k = key_name(key);
        let member = key_hex(key);
        let r: ((i64, i64), i64) = self
            .write(|c| {
                let mut p = redis::pipe();
                let mut cmd = Self::script(c, script, &k);
                cmd.arg(owner.node).arg(owner.epoch).arg(TOMBSTONE_MS);
                p.add_command(cmd);
                p.cmd("ZREM").arg(EXP).arg(&member);
                p
            })
            .await?;
        self.fenced(r.0).map(drop)
    }
}

fn field<'a>(m: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    m.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn num(m: &[(String, Value)], name: &str) -> Option<u64> {
    match field(m, name)? {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

impl BackingStore for RedisStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn prepare(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (v,): (Option<String>,) = self
                .write(|_| {
                    let mut p = redis::pipe();
                    p.cmd("SET").arg(SCHEMA).arg(SCHEMA_VERSION).arg("NX").ignore();
                    p.cmd("GET").arg(SCHEMA);
                    p
                })
                .await?;
            let found: u32 =
                v.as_deref().unwrap_or("1").trim().parse().map_err(|_| self.down("sd:schema is not a number"))?;
            check_schema(found, SCHEMA_VERSION)
        })
    }

    fn generation(&self, fresh: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            // A read on every heartbeat; the write (and its WAIT through a
            // Sentinel) only for a store that has none yet.
            let (mut v,): (Option<String>,) = self.run(|_| redis::pipe().cmd("GET").arg(GENERATION).clone()).await?;
            if v.is_none() {
                (v,) = self
                    .write(|_| {
                        let mut p = redis::pipe();
                        p.cmd("SET").arg(GENERATION).arg(fresh.to_string()).arg("NX").ignore();
                        p.cmd("GET").arg(GENERATION);
                        p
                    })
                    .await?;
            }
            let v = v.unwrap_or_default();
            v.trim().parse().map_err(|_| self.down(format!("{GENERATION} holds {v:?}, not a number")))
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
            let k = key_name(key);
            let member = key_hex(key);
            let r: ((i64, i64, String), i64) = self
                .write(|c| {
                    let mut p = redis::pipe();
                    let mut cmd = Self::script(c, S::Touch, &k);
                    cmd.arg(owner.node).arg(owner.epoch).arg(last_access_ms).arg(expires_ms).arg(self.ttl_grace_ms);
                    p.add_command(cmd);
                    p.cmd("ZADD").arg(EXP).arg("GT").arg(expires_ms).arg(&member);
                    p
                })
                .await?;
            let ((code, x, principal), _) = r;
            let code = self.fenced((code, x))?;
            if code == 1 && !principal.is_empty() {
                // The principal's set lives as long as its longest session.
                let _: () = self
                    .write(|_| {
                        let mut p = redis::pipe();
                        self.index_cmds(&mut p, &principal, &member, x.max(0) as u64);
                        p
                    })
                    .await?;
            }
            Ok(code == 1)
        })
    }

    fn remove<'a>(&'a self, key: &'a StoreKey, owner: Owner) -> StoreFuture<'a, ()> {
        Box::pin(self.remove_inner(key, owner, S::Remove))
    }

    fn retire<'a>(&'a self, key: &'a StoreKey, owner: Owner) -> StoreFuture<'a, ()> {
        Box::pin(self.remove_inner(key, owner, S::Retire))
    }

    fn end<'a>(&'a self, key: &'a StoreKey, now_ms: u64) -> StoreFuture<'a, Option<Moved>> {
        Box::pin(async move {
            let k = key_name(key);
            let member = key_hex(key);
            let r: ((i64, i64, i64, i64), i64) = self
                .write(|c| {
                    let mut p = redis::pipe();
                    let mut cmd = Self::script(c, S::End, &k);
                    cmd.arg(now_ms).arg(TOMBSTONE_MS);
                    p.add_command(cmd);
                    p.cmd("ZREM").arg(EXP).arg(&member);
                    p
                })
                .await?;
            let (done, node, slot, ctx) = r.0;
            Ok((done == 1).then_some(Moved { from: node as u32, context: ctx as u16, slot: slot as u32, key: *key }))
        })
    }

    fn load<'a>(&'a self, key: &'a StoreKey, now_ms: u64) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            let k = key_name(key);
            let (m,): (Vec<(String, Value)>,) = self
                .run(|_| {
                    let mut p = redis::pipe();
                    p.cmd("HGETALL").arg(&k);
                    p
                })
                .await?;
            if m.is_empty() || num(&m, "r") == Some(1) {
                return Ok(None);
            }
            let damaged = || self.down(format!("stored session {}… damaged", &k[..12]));
            let expires_ms = num(&m, "x").ok_or_else(damaged)?;
            if expires_ms <= now_ms {
                return Ok(None);
            }
            let blob = match field(&m, "d") {
                Some(Value::BulkString(b)) => b.as_slice(),
                _ => return Err(damaged()),
            };
            let (attributes, settings) =
                record::decode(blob).map_err(|e| self.down(format!("stored session damaged: {e}")))?;
            Ok(Some(Record {
                key: *key,
                context: num(&m, "g").ok_or_else(damaged)? as u16,
                owner: Owner {
                    node: num(&m, "o").ok_or_else(damaged)? as u32,
                    slot: num(&m, "s").ok_or_else(damaged)? as u32,
                    epoch: num(&m, "e").ok_or_else(damaged)?,
                },
                seq: num(&m, "q").unwrap_or(0),
                created_ms: num(&m, "c").ok_or_else(damaged)?,
                last_access_ms: num(&m, "a").ok_or_else(damaged)?,
                expires_ms,
                is_new: num(&m, "n") == Some(1),
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
            let k = key_name(key);
            let (r,): ((i64, i64),) = self
                .write(|c| {
                    let mut p = redis::pipe();
                    let mut cmd = Self::script(c, S::Take, &k);
                    cmd.arg(seen_epoch).arg(node).arg(slot).arg(now_ms).arg(seen_seq);
                    p.add_command(cmd);
                    p
                })
                .await?;
            self.fenced(r)?;
            Ok(r.1 as u64)
        })
    }

    fn owners<'a>(&'a self, keys: &'a [StoreKey]) -> StoreFuture<'a, Vec<Option<Owner>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let rows: Vec<OwnerFields> = self
                .run(|_| {
                    let mut p = redis::pipe();
                    for k in keys {
                        p.cmd("HMGET").arg(key_name(k)).arg("o").arg("s").arg("e").arg("r");
                    }
                    p
                })
                .await?;
            Ok(rows
                .into_iter()
                .map(|(o, s, e, r)| match (o, s, e, r) {
                    (Some(node), Some(slot), Some(epoch), r) if r != Some(1) => {
                        Some(Owner { node: node as u32, slot: slot as u32, epoch })
                    }
                    _ => None,
                })
                .collect())
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
            let set = principal_set(principal);
            let from: u64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
            let limit = limit.clamp(1, MAX_PRINCIPAL_PAGE);
            let ((next, mut members),): ((u64, Vec<String>),) = self
                .run(|_| {
                    let mut p = redis::pipe();
                    p.cmd("SSCAN").arg(&set).arg(from).arg("COUNT").arg(limit);
                    p
                })
                .await?;
            // SSCAN may return a member more than once.
            members.sort_unstable();
            members.dedup();
            let mut out = Vec::new();
            let mut stale = Vec::new();
            if !members.is_empty() {
                type Fields = (
                    Option<u64>,
                    Option<u16>,
                    Option<u64>,
                    Option<u64>,
                    Option<u64>,
                    Option<u8>,
                    Option<String>,
                    Option<u8>,
                );
                let rows: Vec<Fields> = self
                    .run(|_| {
                        let mut p = redis::pipe();
                        for m in &members {
                            p.cmd("HMGET").arg(format!("sd:{{{m}}}")).arg(&["o", "g", "c", "a", "x", "r", "p", "n"]);
                        }
                        p
                    })
                    .await?;
                for (m, (o, g, c, a, x, r, p, n)) in members.iter().zip(rows) {
                    let Some(key) = key_from_hex(m) else {
                        stale.push(m.clone());
                        continue;
                    };
                    let (Some(owner), Some(x), false, true) = (o, x, r == Some(1), p.as_deref() == Some(principal))
                    else {
                        // Gone, ended, or moved to another principal.
                        stale.push(m.clone());
                        continue;
                    };
                    if g != Some(context) || x <= now_ms {
                        continue;
                    }
                    out.push(Listed {
                        key,
                        owner: owner as u32,
                        created_ms: c.unwrap_or(0),
                        last_access_ms: a.unwrap_or(0),
                        expires_ms: x,
                        is_new: n == Some(1),
                    });
                }
            }
            if !stale.is_empty() {
                let _: () = self
                    .run(|_| {
                        let mut p = redis::pipe();
                        p.cmd("SREM").arg(&set).arg(&stale).ignore();
                        p
                    })
                    .await?;
            }
            Ok((out, (next != 0).then(|| next.to_string())))
        })
    }

    fn cursor_ok(&self, cursor: &str) -> bool {
        cursor.parse::<u64>().is_ok_and(|c| c != 0)
    }

    fn sweep(&self, before_ms: u64, batch: u32) -> StoreFuture<'_, Vec<Swept>> {
        Box::pin(async move {
            let (members,): (Vec<String>,) = self
                .run(|_| {
                    let mut p = redis::pipe();
                    p.cmd("ZRANGE").arg(EXP).arg("-inf").arg(before_ms).arg("BYSCORE").arg("LIMIT").arg(0).arg(batch);
                    p
                })
                .await?;
            if members.is_empty() {
                return Ok(Vec::new());
            }
            let answers: Vec<(i64, i64, i64)> = self
                .write(|c| {
                    let mut p = redis::pipe();
                    for m in &members {
                        let mut cmd = Self::script(c, S::SweepOne, &format!("sd:{{{m}}}"));
                        cmd.arg(before_ms);
                        p.add_command(cmd);
                    }
                    p
                })
                .await?;
            // Drop index entries of sessions deleted, gone or removed; keep
            // those whose hash moved its expiry forward (code 2) but fix
            // their score so the next sweep does not see them again.
            let mut out = Vec::new();
            let mut drop_members = Vec::new();
            for (m, (code, ctx, owner)) in members.iter().zip(&answers) {
                match code {
                    2 => {}
                    1 => {
                        drop_members.push(m.clone());
                        if let Some(key) = key_from_hex(m) {
                            out.push(Swept { context: *ctx as u16, key, owner: *owner as u32 });
                        }
                    }
                    _ => drop_members.push(m.clone()),
                }
            }
            let still: Vec<(&String, i64)> =
                members.iter().zip(&answers).filter(|(_, a)| a.0 == 2).map(|(m, a)| (m, a.1)).collect();
            let _: () = self
                .write(|_| {
                    let mut p = redis::pipe();
                    if !drop_members.is_empty() {
                        p.cmd("ZREM").arg(EXP).arg(&drop_members).ignore();
                    }
                    for (m, x) in &still {
                        // The hash's own expiry is the truth.
                        p.cmd("ZADD").arg(EXP).arg("XX").arg(*x).arg(m.as_str()).ignore();
                    }
                    p
                })
                .await?;
            Ok(out)
        })
    }

    fn elect(&self, node: u32, lease_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let (r,): (i64,) = self
                .write(|c| {
                    let mut p = redis::pipe();
                    let mut cmd = Self::script(c, S::Renew, LEASE);
                    cmd.arg(format!("node {node}")).arg(lease_ms);
                    p.add_command(cmd);
                    p
                })
                .await?;
            Ok(r == 1)
        })
    }

    fn announce<'a>(&'a self, m: &'a Moved) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let payload = m.encode();
            let _: (i64,) = self
                .run(|_| {
                    let mut p = redis::pipe();
                    p.cmd("PUBLISH").arg(MOVED).arg(&payload);
                    p
                })
                .await?;
            Ok(())
        })
    }

    fn subscribe(&self) -> StoreFuture<'_, Box<dyn MovedFeed>> {
        Box::pin(async move {
            let client = self.client().await?;
            let mut ps = tokio::time::timeout(self.timeout, client.get_async_pubsub())
                .await
                .map_err(|_| self.down(format!("no connection within {:?} (cluster.store_timeout)", self.timeout)))?
                .map_err(|e| self.down(e))?;
            tokio::time::timeout(self.timeout, ps.subscribe(MOVED))
                .await
                .map_err(|_| self.down("SUBSCRIBE not answered"))?
                .map_err(|e| self.down(e))?;
            Ok(Box::new(RedisFeed { stream: ps.into_on_message() }) as Box<dyn MovedFeed>)
        })
    }
}

/// A `SUBSCRIBE sd:moved` subscription on its own connection.
struct RedisFeed {
    stream: redis::aio::PubSubStream,
}

impl MovedFeed for RedisFeed {
    fn next(&mut self) -> StoreFuture<'_, Option<Moved>> {
        Box::pin(async move {
            use futures_util::StreamExt;
            while let Some(msg) = self.stream.next().await {
                if let Some(m) = std::str::from_utf8(msg.get_payload_bytes()).ok().and_then(Moved::decode) {
                    return Ok(Some(m));
                }
            }
            Ok(None)
        })
    }
}
