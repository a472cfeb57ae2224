//! What every server reads: one context in one `Arc`, with the one stop signal
//! ([`crate::lifecycle`]).
//!
//! Per-worker state (socket, buffers, counters, relay) is not here: it stays owned by its worker,
//! so workers still share nothing on the query path but read-mostly data (the mapping through
//! `ArcSwap`, the upstreams' up/down flags).

use std::sync::Arc;

use crate::alias::AliasResolver;
use crate::config::Config;
use crate::lifecycle::{Stop, Tasks};
use crate::mapping::SharedMapping;
use crate::mapping::reload::ReloadStats;
use crate::stats::Stats;
use crate::upstream::health::UpstreamHealth;
use crate::upstream::loop_guard::LoopGuard;
use crate::upstream::stale::StaleCache;

pub(crate) struct Shared {
    pub mapping: SharedMapping,
    pub upstreams: Arc<UpstreamHealth>,
    pub loop_guard: LoopGuard,
    pub alias: Arc<AliasResolver>,
    pub stale: Option<Arc<StaleCache>>,
    pub stats: Stats,
    pub reload: Arc<ReloadStats>,
    /// `--query-log`: one log line per query. Off by default: the hot path logs nothing.
    pub query_log: bool,
    pub stop: Stop,
    /// Runtime tasks outside the listeners' own accounting, drained at shutdown.
    pub tasks: Arc<Tasks>,
    /// Who may ask (when listening beyond loopback).
    pub allow: crate::server::allow::Allow,
}

impl Shared {
    /// Everything around the loaded `mapping`, from the configuration.
    pub(crate) fn new(mapping: SharedMapping, config: &Config) -> Arc<Shared> {
        let upstreams = Arc::new(UpstreamHealth::new(
            &config.upstreams,
            config.unhealthy_after,
        ));
        let alias = AliasResolver::new(crate::alias::cache::Policy {
            cap: config.alias_cache_ttl,
            stale: config.alias_stale,
            max_bytes: config.alias_cache_size,
        });
        let reload = Arc::new(ReloadStats::default());
        crate::mapping::reload::stamp_initial(&reload);
        Arc::new(Shared {
            stats: Stats::new(upstreams.count()),
            mapping,
            upstreams,
            loop_guard: LoopGuard::new(),
            alias,
            stale: config
                .serve_stale
                .map(|d| Arc::new(StaleCache::new(config.stale_cache_size, d))),
            reload,
            query_log: config.query_log,
            stop: Stop::default(),
            tasks: Arc::default(),
            allow: crate::server::allow::Allow::new(&config.listen, config.allow.clone()),
        })
    }
}
