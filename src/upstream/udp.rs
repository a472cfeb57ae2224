//! The UDP relay: forwards query bytes to the upstreams and their reply bytes back, re-sending
//! lost queries within the budget (the attempt model of [`super::attempt`]).
//!
//! Shape: per worker, a pool of `connect()`ed sockets per upstream ([`super::ports`]), a slot
//! table for the queries in flight, and
//! **one relay thread** that waits in `epoll` on all of the worker's upstream sockets at once,
//! with a timeout that is the earliest real deadline (a re-send or a give-up) and none at all
//! when nothing is in flight: an idle relay does not wake. The worker's query thread sends the
//! first copy itself and wakes the relay thread (an eventfd) only when the new deadline is
//! earlier than the one the relay thread sleeps towards, at most once per sleep: under load
//! about once per 130 queries (dnsperf).
//!
//! Anti-spoofing (RFC 5452 §9.1-9.2): each copy goes upstream under a fresh 16-bit ID from a
//! cryptographic RNG (ChaCha12, seeded from the OS), from one of [`super::ports::POOL`] sockets
//! picked by that RNG, whose ports the kernel chose at random and which are replaced as they are
//! used; a reply is accepted only if it comes from the upstream's address and port to the very
//! socket its copy left from, carries that copy's ID, has QR set and repeats the question byte
//! for byte (see `question_matches`). Anything else is dropped and the real answer is still
//! awaited. Identical questions in flight are one upstream query (coalescing): a forger gets one
//! chance per question, not one per client asking it, and every client still gets its own ID
//! and its own spelling of the question back, the rest of the reply byte for byte.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use mio::{Events, Poll, Token, Waker};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::QueryError;
use super::attempt::{self, MAX_COPIES, ResendBudget, Rtt, Schedule, Step};
use super::finish::{Finish, send_udp};
use super::health::{Silence, UpstreamHealth};
use super::ids::IdMap;
use super::ports::Ports;
use super::stale::StaleCache;
use crate::alias::AliasResolver;
use crate::dns::outcome::Transport;
use crate::dns::query::Asked;
use crate::dns::wire;
use crate::stats::WorkerStats;

/// The eventfd's token; the upstream sockets' tokens are their index in [`Ports`].
const WAKE: Token = Token(usize::MAX);
/// Clients of other queries waiting on one in flight (coalesced); more get their own.
const MAX_COALESCED: usize = 64;
/// A slot's query buffer larger than this after use is given back (a burst of large queries must
/// not stay resident, issue 19).
const KEEP_QUERY_BUFFER: usize = 4096;
/// The relay thread's scratch buffer is shrunk to this after a burst.
const KEEP_SCRATCH: usize = 64 << 10;
/// While an upstream is down, a copy of a real query goes to it at most this often (besides the
/// probes): real queries are the best probes.
const ADMIT_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Default)]
struct Copy {
    id: u16,
    upstream: u8,
    /// The socket it left from (its token in [`Ports`]): its reply must arrive there.
    port: u16,
}

/// Who gets the reply of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dest {
    /// A client's query, relayed: its reply goes back to the client.
    Client(SocketAddr),
    /// An alias target lookup of ours: its reply goes to the alias resolver ([`crate::alias`]).
    Lookup(u64),
}

struct Slot {
    live: bool,
    /// What was read of the query (its ID, question, EDNS): the reply check, serve-stale and
    /// the failure reply work from it, reading the query's bytes no more.
    asked: Asked,
    dest: Dest,
    /// The copies sent, `schedule.sent()` of them.
    copies: [Copy; MAX_COPIES],
    schedule: Schedule,
    /// The upstream of the last copy refused it (ICMP port unreachable) and no copy went out
    /// since: a give-up now is [`QueryError::Unreachable`], not a timeout.
    refused: bool,
    first_sent: Instant,
    /// The client's query, kept to re-send and to build the failure reply. Its buffer is reused
    /// from query to query.
    query: Vec<u8>,
    /// Its coalescing key (a client's query), while it is in the coalescing table.
    key: Option<u64>,
    /// Clients whose identical query waits on this one: (client, its query).
    extra: Vec<(SocketAddr, Box<[u8]>)>,
    /// The largest reply the client may get (server::allow).
    limit: usize,
}

impl Slot {
    fn sent(&self) -> usize {
        self.schedule.sent()
    }
}

struct Table {
    /// ID of each copy in flight -> its slot: O(1) match of a reply to its query.
    ids: IdMap,
    slots: Vec<Slot>,
    free: Vec<u16>,
    live: usize,
    rng: StdRng,
    ports: Ports,
    /// Clients' queries in flight by coalescing key -> slot.
    coalesce: HashTable<u16>,
    hasher: foldhash::fast::RandomState,
    /// Per upstream: RTT estimate, silence since the last reply, when a down upstream may next
    /// get a copy of a real query.
    rtt: Vec<Rtt>,
    silence: Vec<Silence>,
    admit_at: Vec<Instant>,
    budget: ResendBudget,
    /// No slot is due before this (a lower bound, exact after each timer run); `None` when
    /// nothing is in flight.
    next_due: Option<Instant>,
    /// What the relay thread sleeps towards (`None`: indefinitely). A query due earlier wakes it.
    sleeping_until: Option<Instant>,
    sleeping: bool,
    /// Set by [`UdpRelay::stop`]: the relay thread ends when nothing is in flight or then.
    stop_by: Option<Instant>,
}

impl Table {
    fn new(upstreams: usize, capacity: usize, now: Instant, ports: Ports) -> Table {
        let capacity = capacity.clamp(1, u16::MAX as usize / MAX_COPIES);
        Table {
            ids: IdMap::new(),
            slots: Vec::new(),
            free: (0..capacity as u16).rev().collect(),
            live: 0,
            rng: StdRng::from_rng(&mut rand::rng()),
            ports,
            coalesce: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            rtt: vec![Rtt::default(); upstreams],
            silence: vec![Silence::default(); upstreams],
            admit_at: vec![now; upstreams],
            budget: ResendBudget::new(now),
            next_due: None,
            sleeping_until: None,
            sleeping: false,
            stop_by: None,
        }
    }

    /// A fresh ID, registered for slot `index`: from the cryptographic RNG (RFC 5452 §9.2: an
    /// ID a forger cannot predict from the ones it saw).
    fn take_id(&mut self, index: usize) -> u16 {
        loop {
            let id: u16 = self.rng.random();
            if self.ids.get(id).is_none() {
                self.ids.insert(id, index);
                return id;
            }
        }
    }

    /// A new copy of slot `index` to upstream `u`: its ID, its socket, and the socket to send on.
    fn new_copy(&mut self, index: usize, u: usize, now: Instant) -> (Copy, Option<Arc<UdpSocket>>) {
        let id = self.take_id(index);
        let Table { ports, rng, .. } = self;
        let (port, socket) = match ports.pick(u, rng, now) {
            Some((port, socket)) => (port, Some(socket)),
            None => (u16::MAX, None),
        };
        let copy = Copy {
            id,
            upstream: u as u8,
            port,
        };
        (copy, socket)
    }

    /// The slot of a client's query in flight that `query` (its name lower-cased in `lower`) is
    /// identical to but for the ID and the name's case, with its key.
    fn coalesce_key(&self, query: &[u8], asked: &Asked, lower: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(&query[2..wire::HEADER_LEN]);
        h.write(lower);
        h.write(&query[wire::HEADER_LEN + asked.question.name_len..]);
        h.finish()
    }

    fn find_same(&self, key: u64, query: &[u8], asked: &Asked) -> Option<usize> {
        let name_end = wire::HEADER_LEN + asked.question.name_len;
        let slots = &self.slots;
        self.coalesce
            .find(key, |&i| {
                let s = &slots[i as usize];
                s.live
                    && s.query.len() == query.len()
                    && s.query[2..wire::HEADER_LEN] == query[2..wire::HEADER_LEN]
                    && s.query[wire::HEADER_LEN..name_end]
                        .eq_ignore_ascii_case(&query[wire::HEADER_LEN..name_end])
                    && s.query[name_end..] == query[name_end..]
            })
            .map(|&i| i as usize)
    }

    fn release(&mut self, index: usize) {
        if let Some(key) = self.slots[index].key.take()
            && let Ok(e) = self.coalesce.find_entry(key, |&i| i as usize == index)
        {
            e.remove();
        }
        let slot = &mut self.slots[index];
        slot.live = false;
        slot.extra.clear();
        if slot.query.capacity() > KEEP_QUERY_BUFFER {
            slot.query = Vec::new();
        }
        for c in &slot.copies[..slot.sent()] {
            self.ids.remove(c.id);
        }
        self.free.push(index as u16);
        self.live -= 1;
        if self.live == 0 {
            self.next_due = None;
        }
    }

    /// When the copy just sent to `u` (the `sent`-th) should be followed by another: the
    /// upstream's RTO, backed off ([`attempt::interval`]).
    fn interval(&self, health: &UpstreamHealth, u: usize, sent: usize) -> Duration {
        attempt::interval(self.rtt[u].rto(), health.is_healthy(u), sent)
    }

    fn note_due(&mut self, due: Instant) {
        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
    }

    /// Whether the relay thread must be woken to honour a new deadline `due`. One wake is
    /// enough: the woken thread reads every deadline noted until it runs its timers, so the
    /// wake is noted as pending (`sleeping` cleared) and the queries after it do not write
    /// the eventfd again. Without that, every query of a burst that follows an idle moment
    /// (nothing in flight: the relay thread sleeps without a timeout) woke it once more: 0.9
    /// eventfd writes per forwarded query under dnsperf load, now one per ~130.
    fn must_wake(&mut self, due: Instant) -> bool {
        let wake = self.sleeping && self.sleeping_until.is_none_or(|t| due < t);
        if wake {
            self.sleeping = false;
        }
        wake
    }
}

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

/// One worker's relay: its query thread calls [`UdpRelay::forward`], its relay thread runs
/// [`RelayLoop::run`].
pub(crate) struct UdpRelay {
    health: Arc<UpstreamHealth>,
    table: Mutex<Table>,
    waker: Arc<Waker>,
    client: Arc<UdpSocket>,
    budget: Duration,
    stats: Arc<WorkerStats>,
    stale: Option<Arc<StaleCache>>,
    /// Where the replies of alias target lookups go.
    alias: Arc<AliasResolver>,
}

/// The relay thread's half: its epoll instance.
pub(crate) struct RelayLoop {
    relay: Arc<UdpRelay>,
    poll: Poll,
}

/// Sends one copy. A connected UDP socket reports an earlier ICMP error on the next `send`,
/// which then sends nothing: try once more so that the copy really leaves.
pub(crate) fn send(socket: &UdpSocket, bytes: &[u8]) -> io::Result<()> {
    match socket.send(bytes) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => socket.send(bytes).map(|_| ()),
        r => r.map(|_| ()),
    }
}

impl UdpRelay {
    pub(crate) fn new(
        health: Arc<UpstreamHealth>,
        budget: Duration,
        max_inflight: usize,
        client: Arc<UdpSocket>,
        stats: Arc<WorkerStats>,
        stale: Option<Arc<StaleCache>>,
        alias: Arc<AliasResolver>,
    ) -> io::Result<(Arc<UdpRelay>, RelayLoop)> {
        let poll = Poll::new()?;
        let addrs: Vec<SocketAddr> = (0..health.count()).map(|u| health.addr(u)).collect();
        // A replaced socket still reads replies for as long as a copy sent from it can count.
        let ports = Ports::open(&addrs, poll.registry().try_clone()?, budget)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        health.on_change(waker.clone());
        let relay = Arc::new(UdpRelay {
            table: Mutex::new(Table::new(
                health.count(),
                max_inflight,
                Instant::now(),
                ports,
            )),
            health,
            waker,
            client,
            budget,
            stats,
            stale,
            alias,
        });
        Ok((relay.clone(), RelayLoop { relay, poll }))
    }

    /// Forwarded queries waiting for a reply (for the in-flight gauge).
    pub(crate) fn inflight(&self) -> usize {
        self.lock().live
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A poisoned lock means a thread panicked while holding it; the table itself is only
        // ever left consistent between statements, so keep serving.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the relay thread once the queries in flight are done, or at `deadline`.
    pub(crate) fn stop(&self, deadline: Instant) {
        self.lock().stop_by = Some(deadline);
        let _ = self.waker.wake();
    }

    /// Sends the client's `query` (read into `asked`, its name lower-cased in `lower`) upstream,
    /// or joins an identical query in flight; its ID is rewritten in place. `Err` means it was
    /// not taken: the caller answers with [`super::failure_reply`].
    pub(crate) fn forward(
        &self,
        query: &mut [u8],
        asked: &Asked,
        lower: &[u8],
        client: SocketAddr,
        limit: usize,
    ) -> Result<(), QueryError> {
        // A client with a reply limit (outside this pod) gets a slot of its own: coalesced
        // clients share one reply as it is.
        let lower = (limit == usize::MAX).then_some(lower);
        self.submit(query, asked, Dest::Client(client), lower, limit)
    }

    /// Sends our alias target lookup `token` (`query`, read into `asked`) upstream, in a slot
    /// like any forwarded query: the same copies, timers, health and reply check. Its reply
    /// (or its failure at the end of the budget) goes to the alias resolver.
    pub(crate) fn lookup(
        &self,
        query: &mut [u8],
        asked: &Asked,
        token: u64,
    ) -> Result<(), QueryError> {
        self.submit(query, asked, Dest::Lookup(token), None, usize::MAX)
    }

    fn submit(
        &self,
        query: &mut [u8],
        asked: &Asked,
        dest: Dest,
        lower: Option<&[u8]>,
        limit: usize,
    ) -> Result<(), QueryError> {
        let now = Instant::now();
        let first = self.health.first();
        let mut copies = [Copy::default(); 2];
        let mut sockets: [Option<Arc<UdpSocket>>; 2] = [None, None];
        let (wake, n) = {
            let mut t = self.lock();
            // Coalescing (RFC 5452 §5: one upstream query per question in flight, so a burst
            // of clients asking one name does not multiply a forger's chances).
            let key = lower.map(|l| t.coalesce_key(query, asked, l));
            if let (Some(key), Dest::Client(client)) = (key, dest)
                && let Some(index) = t.find_same(key, query, asked)
                && t.slots[index].extra.len() < MAX_COALESCED
            {
                t.slots[index].extra.push((client, Box::from(&*query)));
                return Ok(());
            }
            let Some(index) = t.free.pop() else {
                return Err(QueryError::Shed);
            };
            let index = index as usize;
            if index == t.slots.len() {
                t.slots.push(Slot {
                    live: false,
                    asked: *asked,
                    dest,
                    copies: [Copy::default(); MAX_COPIES],
                    schedule: Schedule::new(now, self.budget, MAX_COPIES),
                    refused: false,
                    first_sent: now,
                    query: Vec::new(),
                    key: None,
                    extra: Vec::new(),
                    limit,
                });
            }
            (copies[0], sockets[0]) = t.new_copy(index, first, now);
            let mut n = 1;
            // A down upstream still gets a copy of a real query now and then, alongside the one
            // that goes to an upstream that is up (so no client waits on it).
            if self.health.is_healthy(first) {
                for d in (0..self.health.count()).filter(|d| !self.health.is_healthy(*d)) {
                    if now >= t.admit_at[d] {
                        t.admit_at[d] = now + ADMIT_INTERVAL;
                        (copies[1], sockets[1]) = t.new_copy(index, d, now);
                        n = 2;
                        break;
                    }
                }
            }
            let interval = t.interval(&self.health, first, 1);
            let mut schedule = Schedule::new(now, self.budget, MAX_COPIES);
            for c in &copies[..n] {
                schedule.sent_to(c.upstream as usize);
            }
            schedule.next_after(now, interval);
            let s = &mut t.slots[index];
            s.live = true;
            s.asked = *asked;
            s.dest = dest;
            s.copies[..n].copy_from_slice(&copies[..n]);
            s.schedule = schedule;
            s.refused = false;
            s.first_sent = now;
            s.query.clear();
            s.query.extend_from_slice(query);
            s.key = key.filter(|_| matches!(dest, Dest::Client(_)));
            s.limit = limit;
            let due = s.schedule.due();
            if let Some(key) = s.key {
                let Table {
                    coalesce, slots, ..
                } = &mut *t;
                // Growing re-hashes with the key kept in each slot.
                coalesce.insert_unique(key, index as u16, |&i| {
                    slots[i as usize].key.unwrap_or_default()
                });
            }
            t.live += 1;
            t.budget.earn();
            for c in &copies[..n] {
                t.silence[c.upstream as usize].sent(now);
            }
            t.note_due(due);
            (t.must_wake(due), n)
        };
        if wake {
            let _ = self.waker.wake();
        }
        for (c, socket) in copies[..n].iter().zip(&sockets) {
            let u = c.upstream as usize;
            query[..2].copy_from_slice(&c.id.to_be_bytes());
            self.stats.upstream_request(u);
            let sent = socket.as_ref().map(|s| send(s, query));
            if !matches!(sent, Some(Ok(()))) {
                // The relay thread re-sends on its timer.
                self.stats.upstream_error(u);
            }
        }
        Ok(())
    }

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
            let ours = s.copies[..s.sent()]
                .iter()
                .any(|c| c.id == h.id && c.port == port && c.upstream as usize == u);
            if !ours || !self.question_matches(u, reply, h.id, &s.query, s.asked.question.end()) {
                return;
            }
            let (dest, asked, first_sent, sent, limit) =
                (s.dest, s.asked, s.first_sent, s.sent(), s.limit);
            if sent == 1 {
                // Karn's algorithm: only a query answered on its only copy measures the RTT.
                t.rtt[u].sample(now.saturating_duration_since(first_sent));
            }
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
                    let (copy, socket) = t.new_copy(index, target, now);
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
        }
        next
    }

    /// How this relay's client queries end ([`super::finish`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dns::query::Asked;
    use crate::upstream::attempt::DOWN_INTERVAL;
    use crate::upstream::health::test_health as health;

    /// A table for `upstreams` upstreams (on loopback) and `capacity` slots.
    fn table(upstreams: usize, capacity: usize, now: Instant) -> (Table, Poll) {
        let poll = Poll::new().unwrap();
        let addrs: Vec<SocketAddr> = (0..upstreams)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 5300 + i as u16)))
            .collect();
        let ports = Ports::open(
            &addrs,
            poll.registry().try_clone().unwrap(),
            Duration::from_secs(2),
        )
        .unwrap();
        (Table::new(upstreams, capacity, now, ports), poll)
    }

    #[test]
    fn capacity_is_bounded_by_the_id_space() {
        let t0 = Instant::now();
        for (asked, slots) in [(0, 1), (1, 1), (1024, 1024), (100_000, 65_535 / MAX_COPIES)] {
            assert_eq!(table(1, asked, t0).0.free.len(), slots, "{asked}");
        }
    }

    /// When the relay thread must be woken for a new deadline: only when it sleeps towards a
    /// later one (or none).
    #[test]
    fn wakes_the_relay_thread_only_for_an_earlier_deadline() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let rows = [
            // (asleep, sleeping until, new deadline, wake?)
            (false, None, ms(50), false),
            (true, None, ms(50), true),
            (true, Some(ms(100)), ms(50), true),
            (true, Some(ms(50)), ms(50), false),
            (true, Some(ms(20)), ms(50), false),
        ];
        for (sleeping, until, due, wake) in rows {
            let (mut t, _poll) = table(1, 4, t0);
            t.sleeping = sleeping;
            t.sleeping_until = until;
            assert_eq!(t.must_wake(due), wake, "{sleeping} {until:?} {due:?}");
            // Once woken, it reads every deadline when it runs its timers: no second wake.
            if wake {
                assert!(!t.must_wake(ms(1)), "one wake per sleep");
            }
        }
    }

    /// Every copy's ID maps to its slot until the slot is released, and then none does.
    #[test]
    fn ids_live_exactly_as_long_as_their_slot() {
        let t0 = Instant::now();
        let (mut t, _poll) = table(1, 4, t0);
        for index in 0..2 {
            let query = [0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
            t.slots.push(Slot {
                live: true,
                asked: Asked::read(&query).expect("readable"),
                dest: Dest::Client(SocketAddr::from(([127, 0, 0, 1], 1))),
                copies: [Copy::default(); MAX_COPIES],
                schedule: Schedule::new(t0, Duration::from_secs(2), MAX_COPIES),
                refused: false,
                first_sent: t0,
                query: query.to_vec(),
                key: None,
                extra: Vec::new(),
                limit: usize::MAX,
            });
            for k in 0..3 {
                let id = t.take_id(index);
                t.slots[index].copies[k] = Copy {
                    id,
                    upstream: 0,
                    port: 0,
                };
                t.slots[index].schedule.sent_to(0);
            }
            t.live += 1;
            t.note_due(t0 + Duration::from_millis(10 * (index as u64 + 1)));
        }
        assert_eq!(t.next_due, Some(t0 + Duration::from_millis(10)));
        let ids = |t: &Table, i: usize| -> Vec<u16> {
            t.slots[i].copies[..3].iter().map(|c| c.id).collect()
        };
        let (a, b) = (ids(&t, 0), ids(&t, 1));
        assert!(a.iter().all(|id| t.ids.get(*id) == Some(0)));
        t.release(0);
        assert!(a.iter().all(|id| t.ids.get(*id).is_none()));
        assert!(b.iter().all(|id| t.ids.get(*id) == Some(1)));
        assert_eq!(t.live, 1);
        t.release(1);
        assert_eq!(
            (t.live, t.next_due),
            (0, None),
            "nothing due once nothing is in flight"
        );
    }

    /// Re-send intervals: RTO from the RTT estimate, back-off, and the slow pace for a down
    /// upstream.
    #[test]
    fn intervals_follow_the_rtt_and_health() {
        let t0 = Instant::now();
        let h = health(1);
        let (mut t, _poll) = table(1, 4, t0);
        let ms = Duration::from_millis;
        let rows = [(1, ms(200)), (2, ms(200)), (3, ms(400))];
        for (sent, want) in rows {
            assert_eq!(
                t.interval(&h, 0, sent),
                want,
                "before any RTT sample, copy {sent}"
            );
        }
        t.rtt[0].sample(ms(1));
        for (sent, want) in [(1, ms(50)), (3, ms(100)), (5, ms(200)), (7, ms(400))] {
            assert_eq!(t.interval(&h, 0, sent), want, "fast upstream, copy {sent}");
        }
        h.silent(0, t0, 3, t0 + Duration::from_secs(2));
        assert_eq!(
            t.interval(&h, 0, 1),
            DOWN_INTERVAL,
            "a down upstream is asked slowly"
        );
    }
}
