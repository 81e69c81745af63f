//! The set of open contexts: each context's settings and its session
//! service.
//!
//! Owns name and id-tag lookup so HTTP handlers and tools find a context
//! without knowing where regions live. Each context's sessions are reached
//! only through [`crate::session::Sessions`]. Opening goes through
//! [`crate::datadir`]; this module only logs what opening found and did.

use std::sync::Arc;

use crate::config::{Config, ContextConfig};
use crate::datadir::{self, DataDirError, DataDirLock, InitLock};
use crate::session::cluster::Cluster;
use crate::session::{EventHub, Sessions};

/// One context: its settings and its sessions.
pub struct Context {
    /// Effective settings (cookies, URL parameter, reaper period, limits).
    pub cfg: ContextConfig,
    /// The session service over the context's region (the region is shared
    /// with the next generation of settings on a reload that keeps it).
    pub sessions: Sessions,
}

/// Every configured context; the first is `default`.
pub struct Contexts {
    list: Vec<Context>,
}

impl Contexts {
    /// Opens every context's region under the data-dir lock and logs the
    /// outcome of each open (created, rebuilt, migrated, repaired).
    pub fn open(lock: &DataDirLock, config: &Config) -> Result<Contexts, DataDirError> {
        let init = InitLock::acquire(lock.dir(), true, std::time::Duration::from_secs(10))?;
        Self::open_locked(lock, &init, config)
    }

    /// [`Self::open`] with the init lock already held.
    pub fn open_locked(lock: &DataDirLock, init: &InitLock, config: &Config) -> Result<Contexts, DataDirError> {
        let cfgs: Vec<_> = config.contexts.iter().map(|c| c.region_config(config.node_id)).collect();
        let opened = datadir::open_regions_locked(lock, init, &cfgs)?;
        let mut list = Vec::with_capacity(opened.len());
        for ((region, report), cfg) in opened.into_iter().zip(&config.contexts) {
            let g = region.geometry();
            log::info!(
                "context {}: {} ({} bytes, {} slots of {} bytes, {} locks, {} live; max_values_per_session {}, \
                 max_name_size {}, max_value_size {}, timeout {}s, absolute_timeout {}s, reap_interval {}s, when_full {:?}){}{}{}",
                cfg.name,
                region.path().display(),
                g.file_size,
                g.params.max_sessions,
                g.slot_size,
                g.params.max_locks,
                region.live(),
                cfg.max_values_per_session,
                cfg.max_name_size,
                cfg.max_value_size,
                cfg.timeout,
                cfg.absolute_timeout,
                cfg.reap_interval,
                cfg.when_full,
                if report.created { ", created" } else { "" },
                if report.repaired > 0 {
                    format!(", repair dropped {} slot(s)", report.repaired)
                } else {
                    String::new()
                },
                if !report.created && !report.was_clean {
                    ", previous shutdown was not clean; locks re-initialised"
                } else {
                    ""
                },
            );
            if let Some(why) = &report.rebuilt {
                log::warn!("context {}: region rebuilt: {why}", cfg.name);
            }
            if let Some((moved, dropped)) = report.migrated {
                log::warn!(
                    "context {}: migrated {moved} session(s) to the new layout; {dropped} did not fit",
                    cfg.name
                );
            }
            list.push(Context { cfg: cfg.clone(), sessions: Sessions::new(Arc::new(region)).with_policy(policy(cfg)) });
        }
        Ok(Contexts { list })
    }

    /// The same regions with new per-context settings (cookies, reaper
    /// period, URL parameter). Only valid when every context's region
    /// configuration is unchanged, which the caller checks.
    pub fn with_configs(&self, cfgs: &[ContextConfig]) -> Contexts {
        let list = self
            .list
            .iter()
            .zip(cfgs)
            .map(|(c, cfg)| Context {
                cfg: cfg.clone(),
                sessions: c.sessions.with_hub(None).with_cluster(None).with_policy(policy(cfg)),
            })
            .collect();
        Contexts { list }
    }

    /// The same contexts with this process's event hub installed in every
    /// session service. A child calls it once, after `fork`, before it
    /// shares the result.
    pub fn with_hub(&self, hub: Option<Arc<EventHub>>) -> Contexts {
        self.each(|s| s.with_hub(hub.clone()))
    }

    /// The same contexts, each session service replaced by `f` of it.
    fn each(&self, f: impl Fn(&Sessions) -> Sessions) -> Contexts {
        Contexts { list: self.list.iter().map(|c| Context { cfg: c.cfg.clone(), sessions: f(&c.sessions) }).collect() }
    }

    /// This process's cluster view over every context's sessions, or
    /// `None` without `[cluster]`. Each child builds its own after `fork`
    /// (nothing connects until its runtime makes a store call), then
    /// installs it with [`Self::with_cluster`].
    pub fn open_cluster(&self, config: &Config) -> Result<Option<Arc<Cluster>>, crate::session::cluster::OpenError> {
        let all: Vec<&Sessions> = self.list.iter().map(|c| &c.sessions).collect();
        let reap = self.list.iter().map(|c| c.cfg.reap_interval).max().unwrap_or(0);
        Cluster::open(config, &all, reap)
    }

    /// The same contexts with this process's cluster view installed in
    /// every session service (after [`Self::with_hub`]).
    pub fn with_cluster(&self, cluster: Option<Arc<Cluster>>) -> Contexts {
        self.each(|s| s.with_cluster(cluster.clone()))
    }

    /// Every context's session service, for the reaper's store jobs.
    pub fn all_sessions(&self) -> Arc<[Sessions]> {
        self.list.iter().map(|c| c.sessions.clone()).collect()
    }

    /// (tag, name) of every context, for event subscribers.
    pub fn names(&self) -> crate::session::ContextNames {
        crate::session::ContextNames::new(self.list.iter().map(|c| (c.sessions.tag(), c.cfg.name.clone())).collect())
    }

    /// The default context.
    pub fn default_context(&self) -> &Context {
        &self.list[0]
    }

    /// A context by name.
    pub fn by_name(&self, name: &str) -> Option<&Context> {
        self.list.iter().find(|c| c.cfg.name == name)
    }

    /// The context whose id tag is `tag`.
    pub fn by_tag(&self, tag: u16) -> Option<&Context> {
        self.list.iter().find(|c| c.sessions.tag() == tag)
    }

    /// Every context.
    pub fn iter(&self) -> impl Iterator<Item = &Context> {
        self.list.iter()
    }

    /// Flushes every region and sets its clean flag (master, at exit).
    pub fn close_clean(&self) {
        for c in &self.list {
            if let Err(e) = c.sessions.close_clean() {
                log::error!("context {}: {e}", c.cfg.name);
            }
        }
    }
}

/// What a context's settings let a session set for itself.
fn policy(cfg: &ContextConfig) -> crate::session::Policy {
    crate::session::Policy {
        max_timeout_s: cfg.max_timeout,
        max_per_principal: cfg.max_sessions_per_principal,
        when_principal_full: cfg.when_principal_full,
    }
}
