//! The UDP relay: forwards query bytes to the upstreams and their reply bytes back.
//!
//! Shape (measured in ../shared/bench as the cheapest correct relay, `limit-relay`): per worker,
//! one long-lived `connect()`ed socket per upstream, a fixed slot table for the queries in flight,
//! and one thread per upstream socket that blocks on its replies. No allocation per query after
//! warm-up, no task spawn, no timer wheel: the reply thread scans its few in-flight slots for
//! expired ones every tick.
//!
//! Anti-spoofing (RFC 5452 §9.1-9.2): each query goes upstream under a fresh random 16-bit ID
//! from a source port the kernel picked at random for the socket; a reply is accepted only if it
//! comes from the upstream's address and port (the connected socket filters everything else),
//! carries an ID we have in flight, has QR set, and repeats the question (case-insensitively).
//! Anything else is dropped and the real answer is still awaited. We deliberately do not open a
//! fresh socket per query (dnsmasq does; it is a large part of its 50 us/query forward cost):
//! the upstream is the cluster DNS on the pod network, not the open Internet.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::dns::answer::{self, Outcome};
use crate::dns::wire::{self, flag, rcode};
use crate::forward::health::UpstreamHealth;
use crate::stats::WorkerStats;

/// How often a reply thread wakes to expire queries when no reply arrives. Bounds how late a
/// SERVFAIL or fail-over can be, relative to the configured timeout.
fn tick(attempt_timeout: Duration) -> Duration {
    (attempt_timeout / 20).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

/// Why a query could not be sent upstream; the caller answers SERVFAIL.
#[derive(Debug, PartialEq, Eq)]
pub enum ForwardError {
    /// Every slot is in flight (`--max-inflight`): shed load rather than queue without bound.
    Full,
    /// No upstream is healthy, or every one refused the send.
    Unreachable,
}

struct Slot {
    live: bool,
    /// The ID we sent upstream; `by_id[upstream_id]` points back here.
    upstream_id: u16,
    client_id: u16,
    client: SocketAddr,
    /// The upstream tried last, and all tried so far (bit i = upstream i).
    upstream: usize,
    tried: u32,
    sent: Instant,
    deadline: Instant,
    question_end: usize,
    /// The client's query, kept to re-send on fail-over and to build a SERVFAIL. Its buffer is
    /// reused from query to query.
    query: Vec<u8>,
}

struct Table {
    /// ID -> slot index + 1 (0 = free): O(1) match of a reply to its query.
    by_id: Box<[u16]>,
    slots: Vec<Slot>,
    free: Vec<u16>,
    live: usize,
    rng: u64,
}

impl Table {
    fn new(capacity: usize) -> Table {
        let capacity = capacity.clamp(1, u16::MAX as usize);
        Table {
            by_id: vec![0u16; 1 << 16].into_boxed_slice(),
            slots: Vec::with_capacity(capacity),
            free: (0..capacity as u16).rev().collect(),
            live: 0,
            rng: rand::random::<u64>() | 1,
        }
    }

    /// xorshift64*: fast, unpredictable enough for IDs once seeded from the OS; the port and the
    /// question check carry the rest of the entropy.
    fn next_id(&mut self) -> u16 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 48) as u16
    }

    fn free_id(&mut self) -> u16 {
        loop {
            let id = self.next_id();
            if self.by_id[id as usize] == 0 {
                return id;
            }
        }
    }

    fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.live = false;
        self.by_id[slot.upstream_id as usize] = 0;
        self.free.push(index as u16);
        self.live -= 1;
    }
}

/// One worker's relay: shared by its query thread (which calls [`UdpRelay::forward`]) and one
/// reply thread per upstream.
pub struct UdpRelay {
    sockets: Vec<UdpSocket>,
    health: Arc<UpstreamHealth>,
    table: Mutex<Table>,
    client: Arc<UdpSocket>,
    attempt_timeout: Duration,
    stats: Arc<WorkerStats>,
    stopping: Arc<AtomicBool>,
}

impl UdpRelay {
    pub fn new(
        health: Arc<UpstreamHealth>,
        timeout: Duration,
        max_inflight: usize,
        client: Arc<UdpSocket>,
        stats: Arc<WorkerStats>,
        stopping: Arc<AtomicBool>,
    ) -> io::Result<UdpRelay> {
        let mut sockets = Vec::with_capacity(health.len());
        for u in 0..health.len() {
            let up = health.addr(u);
            let bind: SocketAddr = if up.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = UdpSocket::bind(bind)?;
            s.connect(up)?;
            s.set_read_timeout(Some(tick(timeout)))?;
            sockets.push(s);
        }
        // The total budget is split over the upstreams so that a client hears SERVFAIL within
        // about `timeout` even when every upstream is silent.
        let attempt_timeout = timeout / health.len().max(1) as u32;
        Ok(UdpRelay {
            sockets,
            health,
            table: Mutex::new(Table::new(max_inflight)),
            client,
            attempt_timeout,
            stats,
            stopping,
        })
    }

    pub fn upstream_count(&self) -> usize {
        self.sockets.len()
    }

    /// Forwarded queries waiting for a reply (for the in-flight gauge).
    pub fn inflight(&self) -> usize {
        self.lock().live
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A poisoned lock means a thread panicked while holding it; the table itself is only
        // ever left consistent between statements, so keep serving.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `query` (its ID is rewritten in place, and restored on error) to the first healthy
    /// upstream that takes it.
    pub fn forward(
        &self,
        query: &mut [u8],
        client: SocketAddr,
        question_end: usize,
    ) -> Result<(), ForwardError> {
        let client_id = u16::from_be_bytes([query[0], query[1]]);
        let Some(mut upstream) = self.health.next(0) else {
            // Every upstream is known to be down: answer now rather than after a timeout.
            return Err(ForwardError::Unreachable);
        };
        let now = Instant::now();
        let (index, id) = {
            let mut t = self.lock();
            let Some(index) = t.free.pop() else {
                return Err(ForwardError::Full);
            };
            let index = index as usize;
            let id = t.free_id();
            t.by_id[id as usize] = index as u16 + 1;
            t.live += 1;
            if index == t.slots.len() {
                t.slots.push(Slot {
                    live: false,
                    upstream_id: 0,
                    client_id: 0,
                    client,
                    upstream: 0,
                    tried: 0,
                    sent: now,
                    deadline: now,
                    question_end: 0,
                    query: Vec::new(),
                });
            }
            let s = &mut t.slots[index];
            s.live = true;
            s.upstream_id = id;
            s.client_id = client_id;
            s.client = client;
            s.upstream = upstream;
            s.tried = 1 << upstream;
            s.sent = now;
            s.deadline = now + self.attempt_timeout;
            s.question_end = question_end;
            s.query.clear();
            s.query.extend_from_slice(query);
            (index, id)
        };
        query[..2].copy_from_slice(&id.to_be_bytes());
        // On a send error (ICMP unreachable reported on the connected socket, no route), try the
        // next upstream at once instead of waiting for the timeout.
        loop {
            self.stats.upstream_request(upstream);
            if self.sockets[upstream].send(query).is_ok() {
                return Ok(());
            }
            self.stats.upstream_error(upstream);
            self.health.failure(upstream);
            let mut t = self.lock();
            let tried = t.slots[index].tried;
            let Some(next) = self.health.next(tried) else {
                t.release(index);
                query[..2].copy_from_slice(&client_id.to_be_bytes());
                return Err(ForwardError::Unreachable);
            };
            upstream = next;
            let s = &mut t.slots[index];
            s.upstream = upstream;
            s.tried |= 1 << upstream;
            s.deadline = Instant::now() + self.attempt_timeout;
        }
    }

    /// Body of the reply thread for upstream `u`; returns when the relay is stopping and nothing
    /// is in flight any more (or the grace period is over).
    pub fn reply_loop(&self, u: usize, grace: Duration) {
        let socket = &self.sockets[u];
        let mut buf = vec![0u8; u16::MAX as usize];
        let mut actions: Vec<Action> = Vec::new();
        let mut next_scan = Instant::now() + tick(self.attempt_timeout);
        let mut stop_by: Option<Instant> = None;
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => self.on_reply(u, &mut buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // The upstream's host said "port unreachable": everything waiting on it
                    // can move on now (connected UDP sockets report ICMP errors; RFC 1122
                    // §4.1.3.3).
                    self.stats.upstream_error(u);
                    self.health.failure(u);
                    self.expire(u, true, &mut actions);
                }
                Err(_) => {} // timeout tick, or a transient error
            }
            let now = Instant::now();
            if now >= next_scan {
                self.expire(u, false, &mut actions);
                next_scan = now + tick(self.attempt_timeout);
            }
            if self.stopping.load(Ordering::Relaxed) {
                let by = *stop_by.get_or_insert(now + grace);
                if self.lock().live == 0 || now >= by {
                    return;
                }
            }
        }
    }

    fn on_reply(&self, u: usize, reply: &mut [u8]) {
        let Some(h) = wire::Header::read(reply) else {
            return;
        };
        if h.flags & flag::QR == 0 {
            return;
        }
        let (client, client_id, sent) = {
            let mut t = self.lock();
            let index = t.by_id[h.id as usize];
            if index == 0 {
                return; // late, duplicate or spoofed
            }
            let index = index as usize - 1;
            let s = &t.slots[index];
            // A late reply from an upstream we already moved away from is as good as any:
            // the connected socket guarantees it came from that upstream.
            if s.tried & (1 << u) == 0 || !wire::same_question(&s.query, reply, s.question_end) {
                return;
            }
            let r = (s.client, s.client_id, s.sent);
            t.release(index);
            r
        };
        self.health.success(u);
        reply[..2].copy_from_slice(&client_id.to_be_bytes());
        // A reply too large for the client's UDP size arrives with TC set from the upstream
        // (which saw the client's own EDNS size) and is passed on as is: the client retries over
        // TCP (RFC 7766 §5).
        let _ = self.client.send_to(reply, client);
        self.stats.count(Outcome::Forwarded);
        self.stats.forward_latency.observe(sent.elapsed());
    }

    /// Moves expired queries of upstream `u` (or all of its queries when `all`) to the next
    /// healthy upstream not tried yet, or answers SERVFAIL when none is left.
    fn expire(&self, u: usize, all: bool, actions: &mut Vec<Action>) {
        let now = Instant::now();
        let mut timed_out = 0;
        {
            let mut t = self.lock();
            if t.live == 0 {
                return;
            }
            for index in 0..t.slots.len() {
                let s = &mut t.slots[index];
                if !s.live || s.upstream != u || (!all && s.deadline > now) {
                    continue;
                }
                if !all {
                    timed_out += 1;
                }
                if let Some(next) = self.health.next(s.tried) {
                    s.upstream = next;
                    s.tried |= 1 << next;
                    s.deadline = now + self.attempt_timeout;
                    let mut q = s.query.clone();
                    q[..2].copy_from_slice(&s.upstream_id.to_be_bytes());
                    actions.push(Action::Resend {
                        upstream: next,
                        query: q,
                    });
                } else {
                    let mut q = std::mem::take(&mut s.query);
                    q[..2].copy_from_slice(&s.client_id.to_be_bytes());
                    actions.push(Action::ServFail {
                        client: s.client,
                        query: q,
                    });
                    t.release(index);
                }
            }
        }
        for _ in 0..timed_out {
            self.stats.upstream_timeout(u);
            self.health.failure(u);
        }
        let mut out = [0u8; 600];
        for action in actions.drain(..) {
            match action {
                Action::Resend { upstream, query } => {
                    self.stats.upstream_request(upstream);
                    if self.sockets[upstream].send(&query).is_err() {
                        self.stats.upstream_error(upstream);
                    }
                }
                Action::ServFail { client, query } => {
                    let reply = answer::error_reply(&query, rcode::SERVFAIL, &mut out);
                    if let Some(len) = reply {
                        let _ = self.client.send_to(&out[..len], client);
                    }
                    self.stats.count(Outcome::ServFail);
                }
            }
        }
    }
}

enum Action {
    Resend { upstream: usize, query: Vec<u8> },
    ServFail { client: SocketAddr, query: Vec<u8> },
}
