//! Query counters and latency histograms: one block per UDP worker (its query thread and its
//! relay thread), one per TCP listener (one per listen address: its connections' tasks), and one
//! for alias lookups retried over TCP; summed only when read (a `/metrics` scrape, a test).
//!
//! A block is written with relaxed atomic adds, on cache lines of its own ([`WorkerStats`] is
//! aligned to 128 bytes), so counting costs a few nanoseconds and workers do not contend. Almost
//! every write comes from the block's own threads; the exception is an alias answer that waited
//! for its lookup, counted in its client's block by whichever thread finished the lookup (a relay
//! thread, or the runtime for a TCP retry).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::dns::outcome::Outcome;

/// Upper bounds of the latency buckets, in seconds (Prometheus `le`).
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.5, 2.5,
];

/// A fixed-bucket latency histogram made of atomics.
#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    #[inline]
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    fn add_into(&self, t: &mut HistogramTotals) {
        for (dst, b) in t.buckets.iter_mut().zip(&self.buckets) {
            *dst += b.load(Ordering::Relaxed);
        }
        t.sum_ns += self.sum_ns.load(Ordering::Relaxed);
    }
}

/// A summed reading of histograms: per-bucket counts (not cumulative) and the sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramTotals {
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum_ns: u64,
}

impl HistogramTotals {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Per-upstream counters of one worker.
#[derive(Default)]
pub(crate) struct UpstreamCounters {
    pub requests: AtomicU64,
    pub retransmits: AtomicU64,
    pub timeouts: AtomicU64,
    pub errors: AtomicU64,
}

/// Counters of one worker.
#[repr(align(128))]
pub(crate) struct WorkerStats {
    outcomes: [AtomicU64; Outcome::COUNT],
    upstreams: Box<[UpstreamCounters]>,
    pub local_latency: Histogram,
    pub forward_latency: Histogram,
}

impl WorkerStats {
    fn new(upstreams: usize) -> WorkerStats {
        WorkerStats {
            outcomes: Default::default(),
            upstreams: (0..upstreams)
                .map(|_| UpstreamCounters::default())
                .collect(),
            local_latency: Histogram::default(),
            forward_latency: Histogram::default(),
        }
    }

    #[inline]
    pub(crate) fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn upstream_request(&self, u: usize) {
        if let Some(c) = self.upstreams.get(u) {
            c.requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A copy of a query sent again (counted in `requests` too).
    pub(crate) fn upstream_retransmit(&self, u: usize) {
        if let Some(c) = self.upstreams.get(u) {
            c.retransmits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A copy sent to `u` was not answered before its retransmission timer fired.
    pub(crate) fn upstream_timeout(&self, u: usize) {
        if let Some(c) = self.upstreams.get(u) {
            c.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn upstream_error(&self, u: usize) {
        if let Some(c) = self.upstreams.get(u) {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether a counter block belongs to UDP or TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Udp,
    Tcp,
}

/// All counter blocks of a server.
pub(crate) struct Stats {
    upstreams: usize,
    blocks: std::sync::Mutex<Vec<(Proto, Arc<WorkerStats>)>>,
}

/// Per-upstream totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamTotals {
    pub requests: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    pub errors: u64,
}

/// A summed reading of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub udp: [u64; Outcome::COUNT],
    pub tcp: [u64; Outcome::COUNT],
    pub upstreams: Vec<UpstreamTotals>,
    pub local_latency: HistogramTotals,
    pub forward_latency: HistogramTotals,
}

impl Totals {
    /// Queries with this outcome over both protocols.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.udp[outcome as usize] + self.tcp[outcome as usize]
    }

    pub fn upstream_timeouts(&self) -> u64 {
        self.upstreams.iter().map(|u| u.timeouts).sum()
    }

    pub fn upstream_retransmits(&self) -> u64 {
        self.upstreams.iter().map(|u| u.retransmits).sum()
    }
}

impl Stats {
    pub(crate) fn new(upstreams: usize) -> Stats {
        Stats {
            upstreams,
            blocks: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A new counter block; called at start-up only, never per query.
    pub(crate) fn block(&self, proto: Proto) -> Arc<WorkerStats> {
        let b = Arc::new(WorkerStats::new(self.upstreams));
        self.blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((proto, b.clone()));
        b
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals {
            upstreams: vec![UpstreamTotals::default(); self.upstreams],
            ..Totals::default()
        };
        for (proto, b) in self.blocks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let dst = match proto {
                Proto::Udp => &mut t.udp,
                Proto::Tcp => &mut t.tcp,
            };
            for (d, s) in dst.iter_mut().zip(&b.outcomes) {
                *d += s.load(Ordering::Relaxed);
            }
            for (d, s) in t.upstreams.iter_mut().zip(b.upstreams.iter()) {
                d.requests += s.requests.load(Ordering::Relaxed);
                d.retransmits += s.retransmits.load(Ordering::Relaxed);
                d.timeouts += s.timeouts.load(Ordering::Relaxed);
                d.errors += s.errors.load(Ordering::Relaxed);
            }
            b.local_latency.add_into(&mut t.local_latency);
            b.forward_latency.add_into(&mut t.forward_latency);
        }
        t
    }
}
