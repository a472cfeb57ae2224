//! Upstream health: which upstream a query goes to first, and whether any is reachable.
//!
//! Health is about silence, not about single losses. An upstream is marked **down** only when it
//! has answered nothing for `--unhealthy-after` (1 s by default) while being asked several times
//! (the UDP relays, TCP forwarding and the probes each watch what they sent); a query whose
//! copies were lost on a lossy link says nothing about the upstream as long as other replies
//! arrive. Any valid reply from it (a client's query or a probe) marks it **up** again at once.
//!
//! What "down" changes: queries go to the upstreams that are up first, so none waits on a down
//! one while another answers; a down upstream still gets a copy of a real query now and then
//! (the best probe there is) and is probed every [`super::probe::DOWN_PROBE`]; its copies are
//! spaced [`super::attempt::DOWN_INTERVAL`] apart. When **every** upstream is down, queries are
//! still forwarded and retried within their budget, like CoreDNS's `forward` does by default: a
//! restarting cluster DNS is back within the client's next retry, and an instant SERVFAIL would
//! turn that restart into failed lookups (glibc gives up on SERVFAIL from its only server). A
//! black hole still ends in SERVFAIL within the budget, never in silence.
//!
//! The query path reads `healthy` (a read-mostly cache line per upstream); it is written only on
//! a state change.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// At most this many upstreams (a bit mask tracks which ones a query has tried).
pub(crate) const MAX_UPSTREAMS: usize = 32;

struct Upstream {
    addr: SocketAddr,
    healthy: AtomicBool,
    /// It once answered with the question in another case than asked: its replies are then
    /// compared case-insensitively (see `UdpRelay::question_matches`).
    ignores_case: AtomicBool,
    /// Milliseconds since `UpstreamHealth::epoch` of the last answered probe (0 = never).
    last_probe_ok_ms: AtomicU64,
}

pub(crate) struct UpstreamHealth {
    upstreams: Box<[Upstream]>,
    /// Silence for this long, while asked, marks an upstream down.
    window: Duration,
    /// Bumped on every down -> up change, so forwarders re-send what waits at once...
    recoveries: AtomicU32,
    /// ... and these wake them to do it (one per UDP relay thread, and the prober, which also
    /// wants to know when one goes down).
    wakers: Mutex<Vec<Arc<mio::Waker>>>,
    epoch: Instant,
}

impl UpstreamHealth {
    pub(crate) fn new(addrs: &[SocketAddr], window: Duration) -> UpstreamHealth {
        UpstreamHealth {
            upstreams: addrs
                .iter()
                .map(|a| Upstream {
                    addr: *a,
                    healthy: AtomicBool::new(true),
                    ignores_case: AtomicBool::new(false),
                    last_probe_ok_ms: AtomicU64::new(0),
                })
                .collect(),
            window,
            recoveries: AtomicU32::new(0),
            wakers: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        }
    }

    /// How many upstreams there are.
    pub(crate) fn count(&self) -> usize {
        self.upstreams.len()
    }

    pub(crate) fn addr(&self, u: usize) -> SocketAddr {
        self.upstreams[u].addr
    }

    #[inline]
    pub(crate) fn is_healthy(&self, u: usize) -> bool {
        self.upstreams[u].healthy.load(Ordering::Relaxed)
    }

    /// Whether every upstream is down (silent while asked): the cluster DNS is unreachable.
    #[inline]
    pub(crate) fn all_down(&self) -> bool {
        !(0..self.upstreams.len()).any(|u| self.is_healthy(u))
    }

    /// Whether `u` was seen to change the case of the question.
    #[inline]
    pub(crate) fn ignores_case(&self, u: usize) -> bool {
        self.upstreams[u].ignores_case.load(Ordering::Relaxed)
    }

    /// `u` answered with the question in another case than asked (0x20 not preserved, or a
    /// forger holding the right ID): from now on its replies are compared case-insensitively.
    /// Said once in the log.
    pub(crate) fn note_case_changed(&self, u: usize) {
        let up = &self.upstreams[u];
        if !up.ignores_case.swap(true, Ordering::Relaxed) {
            warn!(
                upstream = %up.addr,
                "upstream answered with the question in another case than asked (it does not \
                 preserve 0x20 case); its replies are compared case-insensitively from now on"
            );
        }
    }

    /// Where a query goes first: the first upstream that is up, in configured order; when all
    /// are down, the first one all the same (see the module docs).
    #[inline]
    pub(crate) fn first(&self) -> usize {
        (0..self.upstreams.len())
            .find(|u| self.is_healthy(*u))
            .unwrap_or(0)
    }

    /// Where the next copy of a query goes after one went to `last`: the next upstream that is up
    /// (wrapping around), `last` itself when it is the only one up, or simply the next one when
    /// none is up.
    #[inline]
    pub(crate) fn after(&self, last: usize) -> usize {
        let n = self.upstreams.len();
        (1..=n)
            .map(|k| (last + k) % n)
            .find(|u| self.is_healthy(*u))
            .unwrap_or((last + 1) % n)
    }

    /// The generation of recoveries: it changes whenever an upstream comes back.
    #[inline]
    pub(crate) fn recoveries(&self) -> u32 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// A valid reply came from `u`. Returns true if that brought it back up.
    #[inline]
    pub(crate) fn answered(&self, u: usize) -> bool {
        let up = &self.upstreams[u];
        if up.healthy.load(Ordering::Relaxed) || up.healthy.swap(true, Ordering::Relaxed) {
            return false;
        }
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        info!(upstream = %up.addr, "upstream answers again: marked up");
        self.wake_all();
        true
    }

    fn wake_all(&self) {
        for w in self.wakers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = w.wake();
        }
    }

    /// `waker` is woken whenever an upstream goes down or comes back up.
    pub(crate) fn on_change(&self, waker: Arc<mio::Waker>) {
        self.wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(waker);
    }

    /// `u` was asked since `since` and has answered nothing since; `sent` copies went to it.
    /// Marks it down once that silence has lasted the window (and more than one copy was sent).
    pub(crate) fn silent(&self, u: usize, since: Instant, sent: u32, now: Instant) {
        if sent < 2 || now.saturating_duration_since(since) < self.window {
            return;
        }
        let up = &self.upstreams[u];
        if up.healthy.swap(false, Ordering::Relaxed) {
            warn!(
                upstream = %up.addr,
                silent_ms = now.saturating_duration_since(since).as_millis() as u64,
                copies = sent,
                "upstream answered nothing while asked: marked down; still asked now and then and probed"
            );
            self.wake_all();
        }
    }

    /// A probe was answered by `u`.
    pub(crate) fn probe_ok(&self, u: usize) -> bool {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.upstreams[u]
            .last_probe_ok_ms
            .store(ms.max(1), Ordering::Relaxed);
        self.answered(u)
    }

    /// Whether some upstream answered a probe within `window`.
    pub(crate) fn any_answered_within(&self, window: Duration) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let window = window.as_millis() as u64;
        self.upstreams.iter().any(|u| {
            let t = u.last_probe_ok_ms.load(Ordering::Relaxed);
            t != 0 && now.saturating_sub(t) <= window
        })
    }
}

/// What one forwarder has seen of one upstream since its last reply: enough to tell silence
/// from loss. Owned by that forwarder (no sharing on the query path).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Silence {
    /// When the first copy since the last reply went out.
    since: Option<Instant>,
    sent: u32,
}

impl Silence {
    #[inline]
    pub(crate) fn sent(&mut self, now: Instant) {
        if self.since.is_none() {
            self.since = Some(now);
        }
        self.sent = self.sent.saturating_add(1);
    }

    #[inline]
    pub(crate) fn answered(&mut self) {
        self.since = None;
        self.sent = 0;
    }

    /// Reports the silence so far to `health` (which marks the upstream down once it is long).
    pub(crate) fn check(&self, health: &UpstreamHealth, u: usize, now: Instant) {
        if let Some(since) = self.since {
            health.silent(u, since, self.sent, now);
        }
    }
}

/// `n` upstreams on loopback, a 1 s silence window (for unit tests).
#[cfg(test)]
pub(crate) fn test_health(n: usize) -> UpstreamHealth {
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 5300 + i as u16)))
        .collect();
    UpstreamHealth::new(&addrs, Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(n: usize) -> UpstreamHealth {
        test_health(n)
    }

    #[test]
    fn down_only_after_a_window_of_silence_with_several_copies() {
        let h = health(1);
        let t0 = Instant::now();
        let mut s = Silence::default();
        s.sent(t0);
        s.check(&h, 0, t0 + Duration::from_secs(5));
        assert!(h.is_healthy(0), "one copy is no evidence");
        s.sent(t0 + Duration::from_millis(50));
        s.check(&h, 0, t0 + Duration::from_millis(900));
        assert!(h.is_healthy(0), "not silent for the window yet");
        s.answered();
        s.check(&h, 0, t0 + Duration::from_secs(5));
        assert!(h.is_healthy(0), "a reply resets the silence");
        s.sent(t0);
        s.sent(t0);
        s.check(&h, 0, t0 + Duration::from_millis(1000));
        assert!(!h.is_healthy(0));
        let generation = h.recoveries();
        assert!(h.answered(0), "first reply brings it back");
        assert!(!h.answered(0));
        assert_eq!(h.recoveries(), generation + 1);
    }

    #[test]
    fn rotation_prefers_upstreams_that_are_up() {
        let h = health(3);
        assert_eq!((h.first(), h.after(0), h.after(2)), (0, 1, 0));
        let t0 = Instant::now();
        h.silent(0, t0, 3, t0 + Duration::from_secs(2));
        assert_eq!((h.first(), h.after(1), h.after(2)), (1, 2, 1));
        h.silent(1, t0, 3, t0 + Duration::from_secs(2));
        h.silent(2, t0, 3, t0 + Duration::from_secs(2));
        // All down: still forwarded, in order.
        assert_eq!((h.first(), h.after(0), h.after(2)), (0, 1, 0));
    }
}
