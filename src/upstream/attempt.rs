//! The attempt model shared by UDP and TCP forwarding and by the probes: when the next copy of a
//! query goes out, how long the client waits at most, and what counts as the upstream's reply.
//!
//! One forwarded query is one budget (`--upstream-timeout`) and a short list of copies. The first
//! copy goes out at once; the next when the retransmission timer fires. The timer starts at the
//! upstream's RTO, RFC 6298 §2 style: smoothed RTT plus four times its variance, floored at
//! [`RTO_MIN`] (the LAN-scale floor unbound uses; RFC 6298's 1 s floor is for TCP on the open
//! Internet) and capped at [`RTO_MAX`]. It backs off exponentially, doubling every second copy:
//! with a 50 ms RTO copies leave at 0, 50, 100, 200, 300, 500, 700, 1100 ms, which is the
//! schedule unbound was measured to use. Doubling every copy (0, 50, 150, 350 ...) would put the
//! fifth copy at 750 ms, too late for p99 under 20 % loss; never backing off would flood an
//! upstream that is merely slow. Every reply is an RTT sample, re-sent query or not: each copy has
//! its own ID and socket, so a reply says which copy it answers and the sample is not ambiguous
//! (Karn's algorithm, RFC 6298 §3, is for retransmissions that cannot be told apart).
//!
//! Every copy carries its own random ID; a reply to any of them completes the query (the earlier
//! copy may just have been slow), a reply to anything else is ignored (RFC 5452 §9).

use std::time::{Duration, Instant};

use super::health::UpstreamHealth;
use crate::dns::wire::{self, flag};

/// Floor of the retransmission timeout.
pub(crate) const RTO_MIN: Duration = Duration::from_millis(50);
/// Ceiling of the retransmission timeout and of any back-off interval.
pub(crate) const RTO_MAX: Duration = Duration::from_millis(1000);
/// RTO before the first RTT sample. Lower than RFC 6298's 1 s: a sidecar's upstream is the
/// cluster DNS a network hop away, and the estimate converges within a few replies.
pub(crate) const RTO_INITIAL: Duration = Duration::from_millis(200);
/// Copies of one query sent at most (the first included), over all upstreams.
pub(crate) const MAX_COPIES: usize = 8;
/// While an upstream is down, copies to it are at least this far apart: it is asked, but not
/// hammered (recovery is noticed by the probes, which then re-send at once).
pub(crate) const DOWN_INTERVAL: Duration = Duration::from_millis(500);

/// When the client hears SERVFAIL (or a stale answer) if no upstream answered: a little before
/// `budget` runs out, so that a client whose own timeout equals the budget still gets an answer
/// rather than silence (budget/20, at most 100 ms).
pub(crate) fn give_up_at(start: Instant, budget: Duration) -> Instant {
    start + budget - (budget / 20).min(Duration::from_millis(100))
}

/// The wait before copy number `sent + 1`, after `sent` copies (1 = only the first went out).
pub(crate) fn backoff(rto: Duration, sent: usize) -> Duration {
    let doublings = (sent.saturating_sub(1) / 2).min(8) as u32;
    (rto * (1 << doublings)).min(RTO_MAX)
}

/// The wait after copy number `sent` to an upstream whose timer is `rto`: [`backoff`], and at
/// least [`DOWN_INTERVAL`] for an upstream that is down (asked, but not hammered).
pub(crate) fn interval(rto: Duration, healthy: bool, sent: usize) -> Duration {
    let b = backoff(rto, sent);
    if healthy { b } else { b.max(DOWN_INTERVAL) }
}

/// One query's retransmission schedule, the same for a UDP relay slot and a TCP forward: how many
/// copies went out and to which upstream last, when the next is due, and when the client gets
/// the failure reply. The forwarder says how long a copy's timer is ([`interval`] with the
/// upstream's RTO over UDP, a fixed one over TCP) and sends the copies; the rotation, the cap on
/// copies and the give-up are here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    sent: usize,
    max: usize,
    /// The upstream of the last copy.
    last: usize,
    /// When the next copy goes out (`give_up` once no copy is left to send).
    next_at: Instant,
    give_up: Instant,
}

/// What a [`Schedule`] says at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing is due yet.
    Wait,
    /// The next copy is due: to [`Schedule::target`].
    Copy,
    /// A copy was due, but every copy allowed went out: now only the give-up is (the copy's
    /// timer still expired).
    Exhausted,
    /// The budget is over: the failure reply.
    GiveUp,
}

impl Schedule {
    /// The schedule of a query first sent at `now` (to nothing yet), with `budget` and at most
    /// `max` copies.
    pub(crate) fn new(now: Instant, budget: Duration, max: usize) -> Schedule {
        Schedule {
            sent: 0,
            max,
            last: 0,
            next_at: now,
            give_up: give_up_at(now, budget),
        }
    }

    pub(crate) fn sent(&self) -> usize {
        self.sent
    }

    pub(crate) fn give_up(&self) -> Instant {
        self.give_up
    }

    /// When something is next due: a copy or the give-up.
    pub(crate) fn due(&self) -> Instant {
        self.next_at.min(self.give_up)
    }

    /// Whether another copy may still go out.
    pub(crate) fn can_copy(&self) -> bool {
        self.sent < self.max
    }

    /// What is due at `now`; an expired timer with no copy left defers to the give-up.
    pub(crate) fn step(&mut self, now: Instant) -> Step {
        if now >= self.give_up {
            return Step::GiveUp;
        }
        if now < self.next_at {
            return Step::Wait;
        }
        if !self.can_copy() {
            self.next_at = self.give_up;
            return Step::Exhausted;
        }
        Step::Copy
    }

    /// Where the next copy goes: the next upstream that is up after the last one
    /// ([`UpstreamHealth::after`]), or for the first copy the first one up.
    pub(crate) fn target(&self, health: &UpstreamHealth) -> usize {
        if self.sent == 0 {
            health.first()
        } else {
            health.after(self.last)
        }
    }

    /// A copy went to `u`.
    pub(crate) fn sent_to(&mut self, u: usize) {
        self.sent += 1;
        self.last = u;
    }

    /// The next copy is due `wait` after `now`.
    pub(crate) fn next_after(&mut self, now: Instant, wait: Duration) {
        self.next_at = now + wait;
    }

    /// The next copy is due at `at` if that is sooner (a copy that failed outright, an upstream
    /// that refused or came back), unless none is left to send.
    pub(crate) fn hurry(&mut self, at: Instant) {
        if self.can_copy() {
            self.next_at = self.next_at.min(at);
        }
    }
}

/// RFC 6298 §2 estimator, in microseconds (integer arithmetic, gains 1/8 and 1/4).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rtt {
    srtt_us: u32,
    rttvar_us: u32,
    sampled: bool,
}

impl Rtt {
    pub(crate) fn sample(&mut self, rtt: Duration) {
        let r = rtt.as_micros().min(u32::MAX as u128 / 8) as u32;
        if !self.sampled {
            self.srtt_us = r;
            self.rttvar_us = r / 2;
            self.sampled = true;
            return;
        }
        let diff = self.srtt_us.abs_diff(r);
        self.rttvar_us = self.rttvar_us - self.rttvar_us / 4 + diff / 4;
        self.srtt_us = self.srtt_us - self.srtt_us / 8 + r / 8;
    }

    pub(crate) fn rto(&self) -> Duration {
        if !self.sampled {
            return RTO_INITIAL;
        }
        let us = u64::from(self.srtt_us) + 4 * u64::from(self.rttvar_us);
        Duration::from_micros(us).clamp(RTO_MIN, RTO_MAX)
    }
}

/// Whether `reply` answers the copy of `query` that we sent with `id`: a response (QR set) with
/// that ID and the same question, names compared case-insensitively (RFC 5452 §9.1; the upstream
/// may change 0x20 case). The source address is checked by the connected socket.
pub(crate) fn reply_matches(reply: &[u8], id: u16, query: &[u8], question_end: usize) -> bool {
    reply_match(reply, id, query, question_end) != Match::No
}

/// How a reply's question compares with the query's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    /// Byte for byte (0x20 spelling included).
    Exact,
    /// The same name in another case.
    CaseOnly,
    /// Another ID, not a response, or another question.
    No,
}

/// [`reply_matches`], telling an exact echo of the question from one in another case.
pub(crate) fn reply_match(reply: &[u8], id: u16, query: &[u8], question_end: usize) -> Match {
    let header_ok =
        wire::Header::read(reply).is_some_and(|h| h.flags & flag::QR != 0 && h.id == id);
    if !header_ok || !wire::same_question(query, reply, question_end) {
        return Match::No;
    }
    if reply.get(wire::HEADER_LEN..question_end) == query.get(wire::HEADER_LEN..question_end) {
        Match::Exact
    } else {
        Match::CaseOnly
    }
}

/// Bounds re-sends: a token per query sent for the first time (so re-sends never exceed the
/// original traffic) plus a trickle of [`TRICKLE_PER_SEC`] per second for a quiet relay, up to a
/// burst of [`BURST`]. A dead upstream therefore gets at most twice what the clients ask (and the
/// slot table bounds that), never a storm.
#[derive(Debug)]
pub(crate) struct ResendBudget {
    tokens: f64,
    refilled: Instant,
}

const BURST: f64 = 256.0;
const TRICKLE_PER_SEC: f64 = 100.0;

impl ResendBudget {
    pub(crate) fn new(now: Instant) -> ResendBudget {
        ResendBudget {
            tokens: BURST / 4.0,
            refilled: now,
        }
    }

    /// A query went upstream for the first time.
    #[inline]
    pub(crate) fn earn(&mut self) {
        self.tokens = (self.tokens + 1.0).min(BURST);
    }

    /// Takes a token for one re-send; false when none is left.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + dt * TRICKLE_PER_SEC).min(BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_every_second_copy_from_the_floor() {
        let mut t = Duration::ZERO;
        let mut at = vec![0];
        for sent in 1..MAX_COPIES {
            t += backoff(RTO_MIN, sent);
            at.push(t.as_millis());
        }
        assert_eq!(at, [0, 50, 100, 200, 300, 500, 700, 1100]);
        assert_eq!(backoff(Duration::from_millis(600), 5), RTO_MAX);
    }

    #[test]
    fn rto_follows_rfc6298_and_is_clamped() {
        let mut r = Rtt::default();
        assert_eq!(r.rto(), RTO_INITIAL);
        r.sample(Duration::from_millis(1));
        // srtt 1 ms, rttvar 0.5 ms: 3 ms, below the floor.
        assert_eq!(r.rto(), RTO_MIN);
        for _ in 0..50 {
            r.sample(Duration::from_millis(100));
        }
        let rto = r.rto();
        assert!(
            rto >= Duration::from_millis(100) && rto < Duration::from_millis(130),
            "{rto:?}"
        );
        for _ in 0..50 {
            r.sample(Duration::from_secs(5));
        }
        assert_eq!(r.rto(), RTO_MAX);
    }

    #[test]
    fn resend_budget_is_earned_by_queries() {
        let t0 = Instant::now();
        let mut b = ResendBudget::new(t0);
        let mut granted = 0;
        while b.take(t0) {
            granted += 1;
        }
        assert_eq!(granted, (BURST / 4.0) as usize);
        for _ in 0..10 {
            b.earn();
        }
        assert!((0..10).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        // A quiet second earns the trickle.
        let later = t0 + Duration::from_secs(1);
        assert!((0..100).all(|_| b.take(later)));
        assert!(!b.take(later));
    }

    /// The schedule both forwarders follow: copies rotate over the upstreams, at most `max` of
    /// them, an expired timer with none left defers to the give-up, which comes last.
    #[test]
    fn a_schedule_rotates_copies_up_to_its_cap_then_waits_for_the_give_up() {
        let t0 = Instant::now();
        let ms = |n| Duration::from_millis(n);
        let h = crate::upstream::health::test_health(2);
        let mut s = Schedule::new(t0, Duration::from_secs(2), 2);
        assert_eq!((s.step(t0), s.target(&h)), (Step::Copy, 0));
        s.sent_to(0);
        s.next_after(t0, ms(100));
        assert_eq!((s.step(t0 + ms(50)), s.due()), (Step::Wait, t0 + ms(100)));
        s.hurry(t0 + ms(60));
        assert_eq!(s.step(t0 + ms(60)), Step::Copy, "hurried");
        assert_eq!(s.target(&h), 1, "the next upstream");
        s.sent_to(1);
        s.next_after(t0 + ms(60), ms(100));
        s.hurry(t0 + ms(70));
        assert_eq!(s.due(), t0 + ms(160), "no copy left to hurry");
        assert_eq!(s.step(t0 + ms(160)), Step::Exhausted);
        assert_eq!(s.due(), t0 + ms(1900));
        assert_eq!(s.step(t0 + ms(1000)), Step::Wait);
        assert_eq!(s.step(t0 + ms(1900)), Step::GiveUp);
        assert_eq!(interval(ms(50), true, 1), ms(50));
        assert_eq!(
            interval(ms(50), false, 1),
            DOWN_INTERVAL,
            "a down upstream, slowly"
        );
    }

    #[test]
    fn gives_up_just_before_the_budget() {
        let t0 = Instant::now();
        assert_eq!(
            give_up_at(t0, Duration::from_secs(2)),
            t0 + Duration::from_millis(1900)
        );
        assert_eq!(
            give_up_at(t0, Duration::from_millis(400)),
            t0 + Duration::from_millis(380)
        );
    }
}
