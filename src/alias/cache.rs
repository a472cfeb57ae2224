//! The alias target cache: what the upstream last said about each target (name and type), for how
//! long it may be served, which lookup is in flight for it, and who waits for that lookup.
//!
//! Policy (issue 18; unbound's `prefetch` and RFC 8767 serve-stale, sized for pod records):
//! - **Life.** An answer lives min(target TTL, the rule's `ttl`, `--alias-cache-ttl` (5 s:
//!   CoreDNS's pod-record TTL)); a negative one (NXDOMAIN, NODATA: a pod not created yet) at most
//!   [`NEGATIVE_CAP`]. Clients get the remaining life as TTL.
//! - **Prefetch.** A hit in the last quarter of an entry's life starts one background lookup, so
//!   a name asked regularly is always answered from memory, and still re-checked upstream about
//!   once per life.
//! - **Coalescing.** Concurrent misses for one target wait for one lookup.
//! - **Stale.** When a lookup fails (no upstream answered within the budget, or it could not
//!   answer), its waiters get the last good records, TTL [`STALE_TTL`], for up to
//!   `--alias-stale` past their life; later queries get them at once while one lookup at a time
//!   retries. Never while the upstream answers: the first good reply ends it.
//! - **Bounds.** Answers are kept within a byte budget (oldest stored evicted first); lookups in
//!   flight and waiting clients are bounded in number and bytes before anything is queued.
//!
//! This is a data structure with a clock passed in: no I/O, no threads (the resolver in
//! [`super`] does those), so every rule above is a unit test here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

/// RFC 8767 §4: the TTL of a stale answer.
pub(crate) const STALE_TTL: u32 = 30;
/// The longest a negative answer (NXDOMAIN / NODATA) is kept: a pod that does not exist yet is
/// asked about again within a second.
pub(crate) const NEGATIVE_CAP: Duration = Duration::from_secs(1);
/// Lookups in flight at once, over all targets: a flood of unique names cannot take every relay
/// slot from forwarded queries.
pub(crate) const MAX_LOOKUPS: usize = 256;
/// Clients waiting for lookups at once, and the bytes of their queries.
pub(crate) const MAX_WAITERS: usize = 4096;
pub(crate) const MAX_WAITER_BYTES: usize = 2 << 20;
/// Clients waiting for one target's lookup.
const MAX_WAITERS_PER_TARGET: usize = 256;
/// Bookkeeping per kept answer beyond its key and records (entry, map slot, queue slot).
const ENTRY_OVERHEAD: usize = 128;

/// How long answers live and are kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// `--alias-cache-ttl`: the longest an answer lives.
    pub(crate) cap: Duration,
    /// `--alias-stale`: how long past its life an answer may still be served while the upstream
    /// fails (zero: never).
    pub(crate) stale: Duration,
    /// `--alias-cache-size`: bytes of answers kept.
    pub(crate) max_bytes: usize,
}

/// What the upstream said last about a target.
#[derive(Debug, Clone)]
pub(crate) struct Data {
    /// (type, RDATA) of the records; empty for a negative answer.
    /// Shared: a hit clones the handle, not the records (no allocation on the hit path).
    pub(crate) records: std::sync::Arc<[(u16, Box<[u8]>)]>,
    pub(crate) stored: Instant,
    pub(crate) expires: Instant,
}

impl Data {
    fn bytes(&self) -> usize {
        self.records.iter().map(|(_, r)| r.len() + 24).sum()
    }

    /// Seconds left, for the TTL clients see (whole seconds, rounded down: never more than left).
    pub(crate) fn ttl_left(&self, now: Instant) -> u32 {
        u32::try_from(self.expires.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX)
    }
}

struct Entry<W> {
    data: Option<Data>,
    /// The lookup in flight for this target.
    lookup: Option<u64>,
    waiters: Vec<W>,
    /// The last lookup failed: serve stale at once (within the window) while retrying.
    failing: bool,
    /// Sequence number of the last store, for the eviction queue.
    seq: u64,
}

/// What to do with a query for a target.
#[derive(Debug)]
pub(crate) enum Step {
    /// Answer from memory now; `refresh`: also start this lookup in the background.
    Fresh { data: Data, refresh: Option<u64> },
    /// The upstream is failing: answer with the last good records now (TTL 30, EDE 3); `retry`:
    /// start this lookup in the background.
    Stale { data: Data, retry: Option<u64> },
    /// The client waits; `start`: start this lookup for it (else one is in flight).
    Wait { start: Option<u64> },
    /// Nothing can be done now (too many lookups or waiters): SERVFAIL.
    Shed,
}

/// How a lookup ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Records (possibly none: negative), the smallest TTL among them, the rule's cap.
    Answer {
        records: Vec<(u16, Box<[u8]>)>,
        ttl: u32,
    },
    /// No answer: serve stale if allowed.
    Failed,
}

/// What the waiters of a finished lookup get.
#[derive(Debug)]
pub(crate) enum Served<'a> {
    Fresh(&'a Data),
    Stale(&'a Data),
    Fail,
}

/// Counters, read by the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) refreshes: u64,
    pub(crate) stale: u64,
    pub(crate) shed: u64,
}

pub(crate) struct Cache<W> {
    policy: Policy,
    map: HashMap<Box<[u8]>, Entry<W>, foldhash::fast::RandomState>,
    /// Lookup token -> its key and the TTL cap of the rules that asked.
    inflight: HashMap<u64, (Box<[u8]>, u32), foldhash::fast::FixedState>,
    next_token: u64,
    /// Keys in the order their answers were stored (stale queue places are skipped by `seq`).
    order: VecDeque<(Box<[u8]>, u64)>,
    seq: u64,
    bytes: usize,
    waiters: usize,
    waiter_bytes: usize,
    pub(crate) counts: Counts,
}

/// How many bytes a waiter holds (its query), for the waiter budget.
pub(crate) trait Footprint {
    fn bytes(&self) -> usize;
}

impl<W: Footprint> Cache<W> {
    pub(crate) fn new(policy: Policy) -> Cache<W> {
        Cache {
            policy,
            map: HashMap::default(),
            inflight: HashMap::default(),
            next_token: 1,
            order: VecDeque::new(),
            seq: 0,
            bytes: 0,
            waiters: 0,
            waiter_bytes: 0,
            counts: Counts::default(),
        }
    }

    /// (kept answers, their bytes, lookups in flight, waiting clients), for the metrics.
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        let kept = self.map.values().filter(|e| e.data.is_some()).count();
        (kept, self.bytes, self.inflight.len(), self.waiters)
    }

    /// The key of lookup `token`, while it is in flight.
    pub(crate) fn key_of(&self, token: u64) -> Option<Box<[u8]>> {
        self.inflight.get(&token).map(|(k, _)| k.clone())
    }

    fn start_lookup(&mut self, key: &[u8], cap: u32) -> Option<u64> {
        if self.inflight.len() >= MAX_LOOKUPS {
            return None;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.inflight.insert(token, (key.into(), cap));
        if let Some(e) = self.map.get_mut(key) {
            e.lookup = Some(token);
        }
        Some(token)
    }

    /// A query for `key` at `now`, through rules whose TTL cap is `cap`; `waiter` is called
    /// (once) if the client must wait. `down`: no upstream is answering at all (health), so a
    /// failing target's stale records are served at once instead of after the budget.
    pub(crate) fn query(
        &mut self,
        key: &[u8],
        cap: u32,
        now: Instant,
        down: bool,
        waiter: impl FnOnce() -> W,
    ) -> Step {
        let stale_window = self.policy.stale;
        if let Some(e) = self.map.get(key) {
            let in_flight = e.lookup.is_some();
            if let Some(d) = &e.data {
                if now < d.expires {
                    self.counts.hits += 1;
                    let data = d.clone();
                    let life = d.expires.saturating_duration_since(d.stored);
                    let left = d.expires.saturating_duration_since(now);
                    let refresh = if !in_flight && left * 4 <= life {
                        self.counts.refreshes += 1;
                        self.start_lookup(key, cap)
                    } else {
                        None
                    };
                    return Step::Fresh { data, refresh };
                }
                // RFC 8767 §5: while the upstreams are known to be unreachable, answer stale at
                // once (one lookup at a time keeps trying). While any answers, a client waits for
                // the fresh answer: stale then only comes at the end of the lookup's budget.
                if e.failing && down && now < d.expires + stale_window {
                    self.counts.stale += 1;
                    let data = d.clone();
                    let retry = if in_flight {
                        None
                    } else {
                        self.start_lookup(key, cap)
                    };
                    return Step::Stale { data, retry };
                }
            }
        }
        self.counts.misses += 1;
        let w = waiter();
        let bytes = w.bytes();
        let (full, stale) = match self.map.get(key) {
            Some(e) => (
                e.waiters.len() >= MAX_WAITERS_PER_TARGET,
                e.data
                    .as_ref()
                    .filter(|d| now < d.expires + stale_window)
                    .cloned(),
            ),
            None => (false, None),
        };
        let busy = full
            || self.waiters >= MAX_WAITERS
            || self.waiter_bytes + bytes > MAX_WAITER_BYTES
            || (self.map.get(key).is_none_or(|e| e.lookup.is_none())
                && self.inflight.len() >= MAX_LOOKUPS);
        if busy {
            // No room to wait: the last good records if there are any (degraded, but the
            // database's peers keep resolving), else SERVFAIL.
            return match stale {
                Some(data) => {
                    self.counts.stale += 1;
                    Step::Stale { data, retry: None }
                }
                None => {
                    self.counts.shed += 1;
                    Step::Shed
                }
            };
        }
        let seq = self.seq;
        let e = self.map.entry(key.into()).or_insert_with(|| Entry {
            data: None,
            lookup: None,
            waiters: Vec::new(),
            failing: false,
            seq,
        });
        e.waiters.push(w);
        let needs_lookup = e.lookup.is_none();
        self.waiters += 1;
        self.waiter_bytes += bytes;
        let start = if needs_lookup {
            self.start_lookup(key, cap)
        } else {
            None
        };
        Step::Wait { start }
    }

    /// Lookup `token` ended with `outcome` at `now`. Calls `each` for every waiter with what it
    /// gets. Returns false for a token that is not in flight (a late completion: nothing to do).
    pub(crate) fn complete(
        &mut self,
        token: u64,
        outcome: Outcome,
        now: Instant,
        mut each: impl FnMut(W, Served<'_>),
    ) -> bool {
        let Some((key, cap)) = self.inflight.remove(&token) else {
            return false;
        };
        let policy = self.policy;
        let Some(e) = self.map.get_mut(&key) else {
            return true;
        };
        e.lookup = None;
        let waiters = std::mem::take(&mut e.waiters);
        self.waiters -= waiters.len();
        self.waiter_bytes -= waiters.iter().map(Footprint::bytes).sum::<usize>();
        match outcome {
            Outcome::Answer { records, ttl } => {
                let negative = records.is_empty();
                let mut life = policy.cap.min(Duration::from_secs(u64::from(ttl.min(cap))));
                if negative {
                    life = life.min(NEGATIVE_CAP);
                }
                let data = Data {
                    records: records.into(),
                    stored: now,
                    expires: now + life,
                };
                if let Some(old) = &e.data {
                    self.bytes -= old.bytes() + key.len() + ENTRY_OVERHEAD;
                }
                self.bytes += data.bytes() + key.len() + ENTRY_OVERHEAD;
                self.seq += 1;
                e.seq = self.seq;
                e.failing = false;
                e.data = Some(data);
                let data = e.data.as_ref().expect("just stored");
                for w in waiters {
                    each(w, Served::Fresh(data));
                }
                self.order.push_back((key, self.seq));
                self.evict(now);
            }
            Outcome::Failed => {
                e.failing = true;
                let stale = e.data.as_ref().filter(|d| now < d.expires + policy.stale);
                for w in waiters {
                    match stale {
                        Some(d) => {
                            self.counts.stale += 1;
                            each(w, Served::Stale(d));
                        }
                        None => each(w, Served::Fail),
                    }
                }
                if stale.is_none() {
                    // Nothing worth keeping: forget the target (a flood of unique names leaves
                    // nothing behind).
                    if let Some(e) = self.map.remove(&key)
                        && let Some(d) = &e.data
                    {
                        self.bytes -= d.bytes() + key.len() + ENTRY_OVERHEAD;
                    }
                }
            }
        }
        true
    }

    /// Keeps the answers within the byte budget, oldest stored first (never one whose lookup
    /// is in flight), and forgets answers past their stale window.
    fn evict(&mut self, now: Instant) {
        let stale = self.policy.stale;
        while let Some((key, seq)) = self.order.front() {
            let Some(e) = self.map.get(key) else {
                self.order.pop_front();
                continue;
            };
            if e.seq != *seq {
                self.order.pop_front();
                continue;
            }
            let expired = e.data.as_ref().is_none_or(|d| now >= d.expires + stale);
            if self.bytes <= self.policy.max_bytes && !expired {
                break;
            }
            if e.lookup.is_some() || !e.waiters.is_empty() {
                // Busy: keep it; it is stored again when its lookup ends.
                self.order.pop_front();
                continue;
            }
            let (key, _) = self.order.pop_front().expect("front exists");
            if let Some(e) = self.map.remove(&key)
                && let Some(d) = &e.data
            {
                self.bytes -= d.bytes() + key.len() + ENTRY_OVERHEAD;
            }
        }
        // Queue places of keys stored again are skipped when they reach the front; bound the
        // queue all the same.
        if self.order.len() > 4 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
