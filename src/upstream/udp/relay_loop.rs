//! The relay thread's half of the UDP relay: replies (checked, then finished), ICMP refusals,
//! recoveries, and the timer run (re-sends and give-ups), around one `epoll` wait.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Events;

use super::super::QueryError;
use super::super::attempt::{self, Step};
use super::super::finish::{Finish, send_udp};
use super::table::{Dest, Table};
use super::{KEEP_SCRATCH, RelayLoop, UdpRelay, WAKE, send};
use crate::dns::outcome::Transport;
use crate::dns::query::Asked;
use crate::dns::wire;

/// What the relay thread does after a timer run, outside the lock.
enum Action {
    /// Send `scratch[range]` to upstream `u` on `socket`.
    Send {
        u: usize,
        socket: Option<Arc<UdpSocket>>,
        start: usize,
        end: usize,
    },
    /// Nobody answered in time: send the client (and the clients coalesced with it) the failure
    /// reply for `scratch[range]`.
    GiveUp {
        dest: Dest,
        asked: Asked,
        err: QueryError,
        start: usize,
        end: usize,
        extra: Vec<(SocketAddr, Box<[u8]>)>,
        limit: usize,
    },
}

impl UdpRelay {
    /// A datagram arrived on socket `port` (to upstream `u`). `kept` is the relay thread's spare
    /// buffer: with serve-stale on, the answered query's bytes are swapped into it (no copy) so
    /// that the stale cache stores the reply after the table lock is released; `extra` likewise
    /// takes the clients coalesced with it.
    fn on_reply(
        &self,
        port: u16,
        u: usize,
        reply: &mut [u8],
        now: Instant,
        kept: &mut Vec<u8>,
        extra: &mut Vec<(SocketAddr, Box<[u8]>)>,
    ) {
        let Some(h) = wire::Header::read(reply) else {
            return;
        };
        let (dest, asked, first_sent, limit) = {
            let mut t = self.lock();
            let Some(index) = t.ids.get(h.id) else {
                return; // late, duplicate or spoofed
            };
            let s = &t.slots[index];
            // A reply to any copy we sent completes the query, if it arrived on the socket that
            // copy left from (connected: only the upstream's address and port get there).
            let Some(copy) = s.copies[..s.sent()]
                .iter()
                .find(|c| c.id == h.id && c.port == port && c.upstream as usize == u)
                .copied()
            else {
                return;
            };
            if !self.question_matches(u, reply, h.id, &s.query, s.asked.question.end()) {
                return;
            }
            let (dest, asked, first_sent, limit) = (s.dest, s.asked, s.first_sent, s.limit);
            // Every copy has its own ID and socket, so a reply says which copy it answers and
            // its RTT is not ambiguous, re-sent query or not: Karn's rule (RFC 6298 §3) is for
            // retransmissions that cannot be told apart, as TCP's timestamps (RFC 7323 §4) also
            // show. Sampling re-sent queries keeps the RTO true to an upstream that is slower
            // for some names (a cluster DNS's cache misses): fed by fast answers only, it sent
            // every slow name three times (benches/security: three times the spoofing exposure
            // and the upstream's load).
            let sent_at = first_sent + Duration::from_micros(u64::from(copy.after_us));
            t.rtt[u].sample(now.saturating_duration_since(sent_at));
            t.silence[u].answered();
            // The relay thread is awake (it is running this): no query needs to wake it.
            t.sleeping = false;
            if self.stale.is_some() && matches!(dest, Dest::Client(_)) {
                std::mem::swap(&mut t.slots[index].query, kept);
            }
            extra.clear();
            std::mem::swap(&mut t.slots[index].extra, extra);
            t.release(index);
            (dest, asked, first_sent, limit)
        };
        self.health.answered(u);
        let client = match dest {
            Dest::Client(c) => c,
            Dest::Lookup(token) => return self.alias.on_reply(token, reply),
        };
        // With serve-stale on, `kept` holds the query's bytes (swapped out under the lock).
        let finish = self.finish();
        finish.answered(kept, &asked, reply, first_sent, now);
        send_udp(&self.client, client, reply, limit);
        // The clients coalesced with it: the same reply with their own ID and spelling of the
        // question (same length: the names are equal but for case).
        let end = asked.question.end();
        for (client, query) in extra.drain(..) {
            if finish.shared(&query, end, reply) {
                send_udp(&self.client, client, reply, usize::MAX);
            }
        }
    }

    /// Whether `reply` (with ID `id`, from upstream `u`) repeats the question of `query`: byte
    /// for byte, so that a forged reply must also guess the 0x20 spelling of the name (our alias
    /// lookups randomise it; a client may too). An upstream that answers with the name in
    /// another case (it does not preserve case, which RFC 1035 §4.1.1 does not demand) is
    /// noticed once and then compared case-insensitively (RFC 5452 §9.1), as before.
    /// A reply taken from such an upstream gets the question back as it was asked (the client's
    /// spelling, as a server that preserves case would have echoed it: a 0x20 client checks it).
    fn question_matches(
        &self,
        u: usize,
        reply: &mut [u8],
        id: u16,
        query: &[u8],
        end: usize,
    ) -> bool {
        match attempt::reply_match(reply, id, query, end) {
            attempt::Match::Exact => true,
            attempt::Match::CaseOnly if self.health.ignores_case(u) => {
                // Same length (equal but for case), checked by `reply_match`.
                reply[wire::HEADER_LEN..end].copy_from_slice(&query[wire::HEADER_LEN..end]);
                true
            }
            attempt::Match::CaseOnly => {
                self.health.note_case_changed(u);
                false
            }
            attempt::Match::No => false,
        }
    }

    /// ICMP port unreachable on socket `port` to `u` (the upstream's host is up, its DNS server
    /// is not, e.g. restarting). Not the end of any query: with other upstreams, the queries
    /// waiting on `u` move on at once; with `u` alone they keep their re-send schedule within the
    /// budget. The error names the socket, not the copy, so every query whose last copy left
    /// from that socket is marked refused until its next copy.
    fn on_refused(&self, port: u16, u: usize, now: Instant) {
        self.stats.upstream_error(u);
        let move_on = self.health.count() >= 2;
        let mut t = self.lock();
        let mut any = false;
        for s in t.slots.iter_mut().filter(|s| s.live && s.sent() > 0) {
            if s.copies[s.sent() - 1].port == port {
                s.refused = true;
                if move_on && s.schedule.can_copy() {
                    s.schedule.hurry(now);
                    any = true;
                }
            }
        }
        if any {
            t.note_due(now);
        }
    }

    /// Every query in flight gets its next copy now (an upstream came back).
    fn kick(&self, now: Instant) {
        let mut t = self.lock();
        if t.live == 0 {
            return;
        }
        for s in t.slots.iter_mut().filter(|s| s.live) {
            s.schedule.hurry(now);
        }
        t.note_due(now);
    }

    /// The timer scan, under the table lock: due copies into `actions` (bytes in `scratch`),
    /// queries past their budget released into `actions`, `next_due` made exact.
    fn scan(&self, t: &mut Table, now: Instant, actions: &mut Vec<Action>, scratch: &mut Vec<u8>) {
        let mut next_due: Option<Instant> = None;
        for index in 0..t.slots.len() {
            if !t.slots[index].live {
                continue;
            }
            let step = t.slots[index].schedule.step(now);
            if step == Step::GiveUp {
                let s = &mut t.slots[index];
                let start = scratch.len();
                scratch.extend_from_slice(&s.query);
                actions.push(Action::GiveUp {
                    dest: s.dest,
                    asked: s.asked,
                    err: if s.refused {
                        QueryError::Unreachable
                    } else {
                        QueryError::Timeout
                    },
                    start,
                    end: scratch.len(),
                    extra: std::mem::take(&mut s.extra),
                    limit: s.limit,
                });
                t.release(index);
                continue;
            }
            if matches!(step, Step::Copy | Step::Exhausted) {
                let s = &t.slots[index];
                self.stats
                    .upstream_timeout(s.copies[s.sent() - 1].upstream as usize);
            }
            if step == Step::Copy {
                let target = t.slots[index].schedule.target(&self.health);
                let wait = t.interval(&self.health, target, t.slots[index].sent() + 1);
                if t.budget.take(now) {
                    let (mut copy, socket) = t.new_copy(index, target, now);
                    copy.after_us = after_us(t.slots[index].first_sent, now);
                    t.silence[target].sent(now);
                    let s = &mut t.slots[index];
                    s.copies[s.sent()] = copy;
                    s.schedule.sent_to(target);
                    s.refused = false;
                    let start = scratch.len();
                    scratch.extend_from_slice(&s.query);
                    scratch[start..start + 2].copy_from_slice(&copy.id.to_be_bytes());
                    actions.push(Action::Send {
                        u: target,
                        socket,
                        start,
                        end: scratch.len(),
                    });
                }
                t.slots[index].schedule.next_after(now, wait);
            }
            let due = t.slots[index].schedule.due();
            next_due = Some(next_due.map_or(due, |d| d.min(due)));
        }
        t.next_due = next_due;
        t.ports.close_drained(now);
        for u in 0..self.health.count() {
            t.silence[u].check(&self.health, u, now);
        }
    }

    /// Sends the copies that are due and gives up on the queries whose budget is over; then,
    /// in the same lock, notes what the relay thread will sleep towards (the next deadline, or
    /// the stop deadline). `None`: stop now.
    fn run_timers(
        &self,
        now: Instant,
        actions: &mut Vec<Action>,
        scratch: &mut Vec<u8>,
    ) -> Option<Option<Instant>> {
        actions.clear();
        scratch.clear();
        let next = {
            let mut t = self.lock();
            if t.next_due.is_some_and(|d| d <= now) {
                self.scan(&mut t, now, actions, scratch);
            }
            let stop = t
                .stop_by
                .is_some_and(|by| t.next_due.is_none() || now >= by);
            let wake_at = match (t.next_due, t.stop_by) {
                (Some(n), Some(s)) => Some(n.min(s)),
                (n, s) => n.or(s),
            };
            t.sleeping = true;
            t.sleeping_until = wake_at;
            (!stop).then_some(wake_at)
        };
        let mut out = Vec::new();
        for action in actions.drain(..) {
            match action {
                Action::Send {
                    u,
                    socket,
                    start,
                    end,
                } => {
                    self.stats.upstream_request(u);
                    self.stats.upstream_retransmit(u);
                    let sent = socket.as_ref().map(|s| send(s, &scratch[start..end]));
                    if !matches!(sent, Some(Ok(()))) {
                        self.stats.upstream_error(u);
                    }
                }
                Action::GiveUp {
                    dest: Dest::Lookup(token),
                    err,
                    ..
                } => self.alias.on_failure(token, err),
                Action::GiveUp {
                    dest: Dest::Client(client),
                    asked,
                    err,
                    start,
                    end,
                    extra,
                    limit,
                } => {
                    let query = &scratch[start..end];
                    self.fail(query, &asked, err, client, limit, &mut out);
                    for (client, query) in extra {
                        if let Some(asked) = Asked::read(&query) {
                            self.fail(&query, &asked, err, client, usize::MAX, &mut out);
                        }
                    }
                }
            }
        }
        if scratch.capacity() > KEEP_SCRATCH {
            scratch.shrink_to(KEEP_SCRATCH);
            crate::sys::ask_trim();
        }
        next
    }

    /// How this relay's client queries end ([`crate::upstream::finish`]).
    fn finish(&self) -> Finish<'_> {
        Finish {
            stats: &self.stats,
            stale: self.stale.as_deref(),
            transport: Transport::Udp,
        }
    }

    /// The failure reply (stale answer or SERVFAIL) to `client` for `query`, counted.
    fn fail(
        &self,
        query: &[u8],
        asked: &Asked,
        err: QueryError,
        client: SocketAddr,
        limit: usize,
        out: &mut Vec<u8>,
    ) {
        self.finish().failed(query, asked, err, out);
        send_udp(&self.client, client, out, limit);
    }
}

impl RelayLoop {
    /// The relay thread: replies, re-sends and give-ups until the relay is stopped and nothing is
    /// in flight any more (or the stop deadline has passed).
    pub(crate) fn run(mut self) {
        let relay = &*self.relay;
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; u16::MAX as usize];
        let mut actions = Vec::new();
        let mut scratch = Vec::new();
        let mut kept = Vec::new();
        let mut extra = Vec::new();
        let mut recoveries = relay.health.recoveries();
        loop {
            let now = Instant::now();
            let seen = relay.health.recoveries();
            if seen != recoveries {
                recoveries = seen;
                relay.kick(now);
            }
            let Some(wake_at) = relay.run_timers(now, &mut actions, &mut scratch) else {
                return;
            };
            let timeout = wake_at.map(|w| {
                // epoll has millisecond resolution: round up, so that we never wake early
                // and spin.
                let d = w.saturating_duration_since(Instant::now());
                Duration::from_millis(d.as_micros().div_ceil(1000) as u64)
            });
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                // Cannot wait: do not spin either.
                std::thread::sleep(attempt::RTO_MIN);
            }
            // `sleeping` is cleared by the first wake, the next reply or the next timer run
            // (all lock anyway): while we handle replies a query may wake us needlessly, once.
            for event in events.iter() {
                let token = event.token();
                if token == WAKE {
                    continue;
                }
                let Some((u, socket)) = relay.lock().ports.get(token.0) else {
                    continue; // closed after it became readable
                };
                let port = token.0 as u16;
                // Edge-triggered: read until the socket is empty.
                loop {
                    match socket.recv(&mut buf) {
                        Ok(n) => relay.on_reply(
                            port,
                            u,
                            &mut buf[..n],
                            Instant::now(),
                            &mut kept,
                            &mut extra,
                        ),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                            relay.on_refused(port, u, Instant::now());
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

/// `now` as microseconds after `first_sent` (a copy's send time, [`super::table::Copy`]).
fn after_us(first_sent: Instant, now: Instant) -> u32 {
    let us = now.saturating_duration_since(first_sent).as_micros();
    u32::try_from(us).unwrap_or(u32::MAX)
}
