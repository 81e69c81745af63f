//! Sessions by principal: a principal's listing, "log out everywhere", and
//! the cap on sessions per principal (`sessions.max_sessions_per_principal`,
//! `sessions.when_principal_full`), each in one place for every front end.
//!
//! Locally the lookup reads the region's dense principal-hash array, never
//! the slots (`docs/design.md` §4.1). In cluster mode the store's principal
//! index (a PostgreSQL column with an index, a Redis set per principal) is
//! the listing's source, so a listing, a logout everywhere and the cap
//! cover every node: a session this node holds is listed with its id, one
//! another node holds by its owner and times only (a full id goes only to
//! its own client, and the store never has ids). Ending one held elsewhere
//! tombstones it in the store and sends its holder the takeover notice, so
//! the holder drops its copy at once; this node publishes its event.
//!
//! While the store is down, `when_store_down = serve-local` lists and caps
//! by this node's sessions alone (the first page is then the only one);
//! `fail-closed` answers 503.

use std::collections::{HashMap, HashSet};

use super::{EndReason, SessionError, Sessions, WhenPrincipalFull, check_principal};
use crate::region::{EventKind, RegionError, RegionEvent, SessionId, SessionMeta, TOKEN_LEN};
use crate::store::{Listed, MAX_PRINCIPAL_PAGE, SWEPT_SLOT, StoreKey, store_key};

/// One of a principal's sessions, as a listing shows it.
#[derive(Clone, Debug)]
pub enum PrincipalSession {
    /// Held by this node: its metadata, id included.
    Here(SessionMeta),
    /// Held by another node (cluster mode), as the store's index lists it.
    Elsewhere(Listed),
}

impl PrincipalSession {
    /// Its last access, ms (the cap evicts the least recently used first).
    pub fn last_access_ms(&self) -> u64 {
        match self {
            PrincipalSession::Here(m) => m.last_access_ms,
            PrincipalSession::Elsewhere(l) => l.last_access_ms,
        }
    }
}

fn bad_cursor(c: &str) -> SessionError {
    let shown: String = c.chars().take(32).collect();
    SessionError::Invalid {
        code: "bad_cursor",
        message: format!("cursor {shown:?} is not the next_cursor value of a previous page"),
    }
}

impl Sessions {
    /// A page of principal `name`'s live sessions in this context, at most
    /// `limit` from the store (cluster mode) or the region, after
    /// `cursor` (`None`: the first page; else a `next` this returned).
    /// The last page of a cluster listing also carries the sessions held
    /// here that the store has no record of yet (not written through).
    pub async fn principal_page(
        &self,
        name: &str,
        cursor: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<PrincipalSession>, Option<String>), SessionError> {
        check_principal(name)?;
        let Some(c) = &self.cluster else {
            let from = match cursor {
                None => 0,
                Some(s) => s.parse::<u32>().map_err(|_| bad_cursor(s))?,
            };
            let (metas, next) = self.region.principal_sessions(name, from, limit, now_ms)?;
            return Ok((metas.into_iter().map(PrincipalSession::Here).collect(), next.map(|n| n.to_string())));
        };
        if let Some(s) = cursor
            && !c.store().cursor_ok(s)
        {
            return Err(bad_cursor(s));
        }
        let mut here = self.principal_here_by_key(name, now_ms)?;
        let Some((mut out, next)) = self.store_page(c, name, cursor, limit, now_ms, &mut here).await? else {
            return Ok((here.into_values().map(PrincipalSession::Here).collect(), None));
        };
        if next.is_none() && !here.is_empty() {
            // Held here but not in this page: listed on an earlier one, or
            // not in the store at all yet; the latter join the last page.
            let keys: Vec<StoreKey> = here.keys().copied().collect();
            if let Ok(owners) = c.store().owners(&keys).await {
                for (k, o) in keys.iter().zip(owners) {
                    if o.is_none()
                        && let Some(m) = here.remove(k)
                    {
                        out.push(PrincipalSession::Here(m));
                    }
                }
            }
        }
        Ok((out, next))
    }

    /// One page of the store's principal index; each entry held here is
    /// taken out of `here` and listed with its id. `Ok(None)`: the store
    /// is down on a first page under `serve-local`, which then lists
    /// `here` alone; otherwise a store failure is 503.
    async fn store_page(
        &self,
        c: &super::cluster::Cluster,
        name: &str,
        cursor: Option<&str>,
        limit: usize,
        now_ms: u64,
        here: &mut HashMap<StoreKey, SessionMeta>,
    ) -> Result<Option<(Vec<PrincipalSession>, Option<String>)>, SessionError> {
        let limit = (limit as u32).clamp(1, MAX_PRINCIPAL_PAGE);
        let r = c.store().principal_sessions(name, self.tag(), cursor, limit, now_ms).await;
        c.note(&r);
        let (rows, next) = match r {
            Ok(v) => v,
            Err(e) if cursor.is_none() && c.serves_local() => {
                log::warn!(
                    "context {}: principal listing from this node's sessions only: {e} (when_store_down = serve-local)",
                    self.context()
                );
                return Ok(None);
            }
            Err(e) => return Err(c.unavailable(&e)),
        };
        let page = rows
            .into_iter()
            .map(|l| match here.remove(&l.key) {
                Some(m) => PrincipalSession::Here(m),
                None => PrincipalSession::Elsewhere(l),
            })
            .collect();
        Ok(Some((page, next)))
    }

    /// Every live session of principal `name` in this node's region.
    fn principal_here(&self, name: &str, now_ms: u64) -> Result<Vec<SessionMeta>, RegionError> {
        let mut all = Vec::new();
        let mut cursor = 0;
        loop {
            let (page, next) = self.region.principal_sessions(name, cursor, 1000, now_ms)?;
            all.extend(page);
            match next {
                Some(c) => cursor = c,
                None => return Ok(all),
            }
        }
    }

    /// [`Self::principal_here`] by store key (cluster mode).
    fn principal_here_by_key(&self, name: &str, now_ms: u64) -> Result<HashMap<StoreKey, SessionMeta>, RegionError> {
        Ok(self.principal_here(name, now_ms)?.into_iter().map(|m| (store_key(m.id.context, &m.id.token), m)).collect())
    }

    /// Every live session of principal `name` in this context, on every
    /// node (cluster mode) or here, each once (a Redis `SSCAN` may list a
    /// member twice).
    async fn principal_everywhere(&self, name: &str, now_ms: u64) -> Result<Vec<PrincipalSession>, SessionError> {
        let Some(c) = &self.cluster else {
            return Ok(self.principal_here(name, now_ms)?.into_iter().map(PrincipalSession::Here).collect());
        };
        let mut here = self.principal_here_by_key(name, now_ms)?;
        let mut seen = HashSet::new();
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        while let Some((page, next)) =
            self.store_page(c, name, cursor.as_deref(), MAX_PRINCIPAL_PAGE as usize, now_ms, &mut here).await?
        {
            for s in page {
                let key = match &s {
                    PrincipalSession::Here(m) => store_key(m.id.context, &m.id.token),
                    PrincipalSession::Elsewhere(l) => l.key,
                };
                if seen.insert(key) {
                    all.push(s);
                }
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        // Held here and not listed by the store (not written through yet,
        // or the store is down under serve-local).
        all.extend(here.into_values().map(PrincipalSession::Here));
        Ok(all)
    }

    /// Ends `id` with event `kind` and `reason`, and tells the store.
    async fn end_with(
        &self,
        id: &SessionId,
        kind: EventKind,
        reason: EndReason,
        now_ms: u64,
    ) -> Result<bool, SessionError> {
        match self.run_why(None, Some(reason), |r, ev| r.end_ev(id, None, kind, now_ms, ev)) {
            Ok(()) => {}
            Err(RegionError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        if let Some(c) = &self.cluster {
            c.invalidated(self, id, now_ms).await?;
        }
        Ok(true)
    }

    /// Ends one listed session, here or on the node that holds it, with
    /// event `kind` and `reason`; `Ok(false)` if it had ended already.
    async fn end_listed(
        &self,
        s: &PrincipalSession,
        kind: EventKind,
        reason: EndReason,
        now_ms: u64,
    ) -> Result<bool, SessionError> {
        let l = match s {
            PrincipalSession::Here(m) => return self.end_with(&m.id, kind, reason, now_ms).await,
            PrincipalSession::Elsewhere(l) => l,
        };
        let Some(c) = &self.cluster else { return Ok(false) };
        if !c.end_elsewhere(&l.key, now_ms).await? {
            return Ok(false);
        }
        // The holder drops its copy on the notice without an event; this
        // node tells the subscribers. The id is the store-key form the
        // store sweep's events use (the token is not known here).
        let mut token = [0u8; TOKEN_LEN];
        token.copy_from_slice(&l.key[..TOKEN_LEN]);
        let id = SessionId { node: l.owner, context: self.tag(), slot: SWEPT_SLOT, token };
        self.publish_one(RegionEvent { kind, id, old: None, seq: 0, at_ms: now_ms }, Some(reason));
        Ok(true)
    }

    /// "Log out everywhere": ends every live session of principal `name`
    /// in this context, on every node, each with an `invalidated` event
    /// whose reason is [`EndReason::LogoutEverywhere`]; returns how many
    /// ended.
    pub async fn end_principal(&self, name: &str, now_ms: u64) -> Result<usize, SessionError> {
        check_principal(name)?;
        let mut n = 0;
        for s in self.principal_everywhere(name, now_ms).await? {
            n += usize::from(self.end_listed(&s, EventKind::Invalidated, EndReason::LogoutEverywhere, now_ms).await?);
        }
        Ok(n)
    }

    /// Keeps principal `name`'s cap around the session whose token is
    /// `keep`: if its other sessions (on every node) number `cap` or more,
    /// refuse, or end the least recently used ones (`evicted`, reason
    /// [`EndReason::PrincipalCap`]) until `cap - 1` are left. Called before
    /// the session takes the principal, and again after it (two creates
    /// for one principal may have passed the first check at once: the
    /// later one makes room again, or gives way).
    pub(super) async fn make_room(&self, name: &str, keep: &[u8; TOKEN_LEN], now_ms: u64) -> Result<(), SessionError> {
        let cap = self.policy.max_per_principal as usize;
        if cap == 0 {
            return Ok(());
        }
        let keep_key = store_key(self.tag(), keep);
        let mut others = self.principal_everywhere(name, now_ms).await?;
        others.retain(|s| match s {
            PrincipalSession::Here(m) => m.id.token != *keep,
            PrincipalSession::Elsewhere(l) => l.key != keep_key,
        });
        let allowed = cap - 1;
        if others.len() <= allowed {
            return Ok(());
        }
        if self.policy.when_principal_full == WhenPrincipalFull::Refuse {
            return Err(SessionError::TooManySessions { count: others.len(), cap: cap as u32 });
        }
        others.sort_by_key(PrincipalSession::last_access_ms);
        let excess = others.len() - allowed;
        for s in &others[..excess] {
            self.end_listed(s, EventKind::Evicted, EndReason::PrincipalCap, now_ms).await?;
        }
        Ok(())
    }
}
