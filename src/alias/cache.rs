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
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct W(u32);
    impl Footprint for W {
        fn bytes(&self) -> usize {
            100
        }
    }

    fn cache() -> Cache<W> {
        Cache::new(Policy {
            cap: Duration::from_secs(5),
            stale: Duration::from_secs(600),
            max_bytes: 1 << 20,
        })
    }

    const K: &[u8] = b"\x03pod\x00\x00\x01";

    fn answer(ip: u8, ttl: u32) -> Outcome {
        Outcome::Answer {
            records: vec![(1, vec![10, 0, 0, ip].into())],
            ttl,
        }
    }

    /// Completes `token` and returns what each waiter got ("fresh", "stale", "fail").
    fn complete(
        c: &mut Cache<W>,
        token: u64,
        o: Outcome,
        now: Instant,
    ) -> Vec<(u32, &'static str)> {
        let mut got = Vec::new();
        assert!(c.complete(token, o, now, |w, r| got.push((
            w.0,
            match r {
                Served::Fresh(_) => "fresh",
                Served::Stale(_) => "stale",
                Served::Fail => "fail",
            }
        ))));
        got
    }

    fn started(s: Step) -> u64 {
        match s {
            Step::Wait { start: Some(t) } => t,
            other => panic!("expected a new lookup, got {other:?}"),
        }
    }

    #[test]
    fn concurrent_misses_wait_for_one_lookup() {
        let mut c = cache();
        let t0 = Instant::now();
        let token = started(c.query(K, u32::MAX, t0, false, || W(1)));
        for i in 2..=5 {
            assert!(matches!(
                c.query(K, u32::MAX, t0, false, || W(i)),
                Step::Wait { start: None }
            ));
        }
        assert_eq!(c.sizes(), (0, 0, 1, 5));
        let got = complete(&mut c, token, answer(7, 300), t0);
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|(_, r)| *r == "fresh"));
        assert_eq!(c.sizes().2..c.sizes().3, 0..0);
        assert!(
            !c.complete(token, answer(7, 300), t0, |_, _| {}),
            "late: ignored"
        );
    }

    #[test]
    fn life_is_the_smallest_of_target_ttl_rule_cap_and_global_cap() {
        let t0 = Instant::now();
        // (target TTL, rule cap, seconds the answer lives)
        for (ttl, cap, life) in [(300, u32::MAX, 5), (300, 2, 2), (1, 600, 1), (0, 600, 0)] {
            let mut c = cache();
            let token = started(c.query(K, cap, t0, false, || W(1)));
            complete(&mut c, token, answer(7, ttl), t0);
            let at =
                t0 + Duration::from_millis(life * 1000).saturating_sub(Duration::from_millis(1));
            if life > 0 {
                assert!(
                    matches!(c.query(K, u32::MAX, at, false, || W(2)), Step::Fresh { .. }),
                    "{ttl} {cap}"
                );
            }
            let after = t0 + Duration::from_secs(life);
            // (A prefetch may be in flight from the last hit: then this waits for it.)
            assert!(
                matches!(
                    c.query(K, u32::MAX, after, false, || W(3)),
                    Step::Wait { .. }
                ),
                "{ttl} {cap}"
            );
        }
    }

    #[test]
    fn a_negative_answer_lives_at_most_a_second() {
        let mut c = cache();
        let t0 = Instant::now();
        let token = started(c.query(K, u32::MAX, t0, false, || W(1)));
        complete(
            &mut c,
            token,
            Outcome::Answer {
                records: vec![],
                ttl: 3600,
            },
            t0,
        );
        match c.query(K, u32::MAX, t0 + Duration::from_millis(900), false, || W(2)) {
            Step::Fresh { data, .. } => assert!(data.records.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.query(K, u32::MAX, t0 + Duration::from_secs(1), false, || W(3)),
            Step::Wait { .. }
        ));
    }

    #[test]
    fn a_hit_in_the_last_quarter_of_life_prefetches_once() {
        let mut c = cache();
        let t0 = Instant::now();
        let token = started(c.query(K, u32::MAX, t0, false, || W(1)));
        complete(&mut c, token, answer(7, 300), t0);
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(matches!(
            c.query(K, u32::MAX, ms(3000), false, || W(2)),
            Step::Fresh { refresh: None, .. }
        ));
        let refresh = match c.query(K, u32::MAX, ms(3800), false, || W(3)) {
            Step::Fresh {
                refresh: Some(t),
                data,
            } => {
                assert_eq!(data.ttl_left(ms(3800)), 1);
                t
            }
            other => panic!("{other:?}"),
        };
        assert!(
            matches!(
                c.query(K, u32::MAX, ms(3900), false, || W(4)),
                Step::Fresh { refresh: None, .. }
            ),
            "one at a time"
        );
        complete(&mut c, refresh, answer(8, 300), ms(3950));
        // Renewed: fresh for another life from the refresh, no waiting at the old expiry.
        match c.query(K, u32::MAX, ms(6000), false, || W(5)) {
            Step::Fresh {
                data,
                refresh: None,
            } => assert_eq!(&*data.records[0].1, &[10, 0, 0, 8]),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.counts.refreshes, 1);
    }

    #[test]
    fn stale_only_while_the_upstream_fails() {
        let mut c = cache();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let token = started(c.query(K, u32::MAX, t0, false, || W(1)));
        complete(&mut c, token, answer(7, 300), t0);
        // Expired, upstream not known to fail: the client waits for a lookup.
        let token = started(c.query(K, u32::MAX, s(10), false, || W(2)));
        assert_eq!(
            complete(&mut c, token, Outcome::Failed, s(12)),
            [(2, "stale")]
        );
        // Failing while the upstream answers other names: the client waits for a new lookup.
        let retry = started(c.query(K, u32::MAX, s(13), false, || W(3)));
        // Failing with every upstream down: stale at once; the lookup in flight keeps trying.
        assert!(matches!(
            c.query(K, u32::MAX, s(13), true, || W(4)),
            Step::Stale { retry: None, .. }
        ));
        // The upstream answers again: fresh from then on, never stale.
        assert_eq!(
            complete(&mut c, retry, answer(9, 300), s(14)),
            [(3, "fresh")]
        );
        assert!(matches!(
            c.query(K, u32::MAX, s(15), false, || W(5)),
            Step::Fresh { .. }
        ));
        // Past the stale window: SERVFAIL.
        match c.query(K, u32::MAX, s(16), true, || W(8)) {
            Step::Fresh { .. } => {}
            other => panic!("fresh whatever the health says: {other:?}"),
        }
        let token = started(c.query(K, u32::MAX, s(20), false, || W(6)));
        complete(&mut c, token, Outcome::Failed, s(21));
        let late = s(19 + 600);
        let token = started(c.query(K, u32::MAX, late, false, || W(7)));
        assert_eq!(
            complete(&mut c, token, Outcome::Failed, late),
            [(7, "fail")]
        );
        assert_eq!(c.sizes(), (0, 0, 0, 0), "nothing kept past the window");
    }

    #[test]
    fn floods_are_bounded_and_leave_nothing_behind() {
        let mut c = cache();
        let t0 = Instant::now();
        let mut tokens = Vec::new();
        let mut shed = 0;
        for i in 0..(MAX_LOOKUPS as u32 + 100) {
            let key = format!("\x04p{i:03}\x00\x00\x01");
            match c.query(key.as_bytes(), u32::MAX, t0, false, || W(i)) {
                Step::Wait { start: Some(t) } => tokens.push(t),
                Step::Shed => shed += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((tokens.len(), shed), (MAX_LOOKUPS, 100));
        // A waiter budget, too: many clients on one target.
        let token = tokens[0];
        let mut waited = 0;
        for i in 0..1000 {
            if let Step::Wait { .. } =
                c.query(b"\x04p000\x00\x00\x01", u32::MAX, t0, false, || W(i))
            {
                waited += 1;
            }
        }
        assert_eq!(waited, MAX_WAITERS_PER_TARGET - 1);
        for t in tokens {
            complete(&mut c, t, Outcome::Failed, t0);
        }
        assert!(!c.complete(token, Outcome::Failed, t0, |_, _| {}));
        assert_eq!(c.sizes(), (0, 0, 0, 0));
        assert!(c.map.is_empty());
    }

    #[test]
    fn answers_stay_within_the_byte_budget() {
        let mut c: Cache<W> = Cache::new(Policy {
            cap: Duration::from_secs(5),
            stale: Duration::from_secs(600),
            max_bytes: 10_000,
        });
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let key = format!("\x05p{i:04}\x00\x00\x01");
            let token = started(c.query(key.as_bytes(), u32::MAX, t0, false, || W(i)));
            complete(&mut c, token, answer(1, 300), t0);
        }
        let (kept, bytes, _, _) = c.sizes();
        assert!(
            bytes <= 10_000 && kept > 10 && kept < 1000,
            "{kept} {bytes}"
        );
        // The newest are the ones kept.
        assert!(matches!(
            c.query(b"\x05p0999\x00\x00\x01", u32::MAX, t0, false, || W(0)),
            Step::Fresh { .. }
        ));
    }
}
