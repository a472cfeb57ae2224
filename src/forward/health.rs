//! Upstream health: which upstreams to try, and whether any of them is reachable (readiness).
//!
//! Every forwarding path reports outcomes here: a valid reply resets an upstream's failure count,
//! a timeout or network error raises it, and after `threshold` consecutive failures the upstream
//! is marked unhealthy and skipped (CoreDNS `forward` does the same with `max_fails`). The
//! background prober ([`crate::forward::probe`]) brings it back when it answers again. When
//! every upstream is unhealthy, queries get SERVFAIL at once instead of waiting out a timeout
//! each.
//!
//! The query path only reads `healthy` (a shared, read-mostly cache line); the failure count is
//! written only when it changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// At most this many upstreams (a bit mask tracks which ones a query has tried).
pub const MAX_UPSTREAMS: usize = 32;

pub struct Upstream {
    pub addr: SocketAddr,
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `UpstreamHealth::epoch` of the last answered probe (0 = never).
    last_probe_ok_ms: AtomicU64,
}

pub struct UpstreamHealth {
    upstreams: Box<[Upstream]>,
    threshold: u32,
    epoch: Instant,
}

impl UpstreamHealth {
    pub fn new(addrs: &[SocketAddr], threshold: u32) -> UpstreamHealth {
        UpstreamHealth {
            upstreams: addrs
                .iter()
                .map(|a| Upstream {
                    addr: *a,
                    healthy: AtomicBool::new(true),
                    consecutive_failures: AtomicU32::new(0),
                    last_probe_ok_ms: AtomicU64::new(0),
                })
                .collect(),
            threshold: threshold.max(1),
            epoch: Instant::now(),
        }
    }

    pub fn len(&self) -> usize {
        self.upstreams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    pub fn addr(&self, u: usize) -> SocketAddr {
        self.upstreams[u].addr
    }

    #[inline]
    pub fn is_healthy(&self, u: usize) -> bool {
        self.upstreams[u].healthy.load(Ordering::Relaxed)
    }

    /// The first healthy upstream, in configured order, not in `tried` (bit i = upstream i).
    #[inline]
    pub fn next(&self, tried: u32) -> Option<usize> {
        (0..self.upstreams.len()).find(|u| tried & (1 << u) == 0 && self.is_healthy(*u))
    }

    /// A valid reply came from `u`.
    #[inline]
    pub fn success(&self, u: usize) {
        let up = &self.upstreams[u];
        if up.consecutive_failures.load(Ordering::Relaxed) != 0 {
            up.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if !up.healthy.load(Ordering::Relaxed) && !up.healthy.swap(true, Ordering::Relaxed) {
            info!(upstream = %up.addr, "upstream is healthy again");
        }
    }

    /// `u` timed out or failed.
    pub fn failure(&self, u: usize) {
        let up = &self.upstreams[u];
        let n = up.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold && up.healthy.swap(false, Ordering::Relaxed) {
            warn!(upstream = %up.addr, failures = n, "upstream marked unhealthy; probing it in the background");
        }
    }

    /// The background prober got an answer from `u`.
    pub fn probe_ok(&self, u: usize) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.upstreams[u]
            .last_probe_ok_ms
            .store(ms.max(1), Ordering::Relaxed);
        self.success(u);
    }

    /// Whether some upstream answered a probe within `window`.
    pub fn any_answered_within(&self, window: Duration) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let window = window.as_millis() as u64;
        self.upstreams.iter().any(|u| {
            let t = u.last_probe_ok_ms.load(Ordering::Relaxed);
            t != 0 && now.saturating_sub(t) <= window
        })
    }
}
