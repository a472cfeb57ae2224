//! The UDP relay: forwards query bytes to the upstreams and their reply bytes back, re-sending
//! lost queries within the budget (the retransmission [`super::attempt::Schedule`]), and
//! finishing each through [`super::finish`].
//!
//! Shape: per worker, a pool of `connect()`ed sockets per upstream ([`super::ports`]), a slot
//! table for the queries in flight ([`table`]), and **one relay thread** ([`relay_loop`]) that waits in `epoll` on all of the worker's upstream sockets at once,
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

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::{Poll, Token, Waker};

use super::QueryError;
use super::attempt::{MAX_COPIES, Schedule};
use super::health::UpstreamHealth;
use super::ports::Ports;
use super::stale::StaleCache;
use crate::dns::query::Asked;
use crate::stats::WorkerStats;

mod relay_loop;
mod table;

pub(crate) use table::Dest;
use table::{Copy, Slot, Table};

/// The eventfd's token; the upstream sockets' tokens are their index in [`Ports`].
const WAKE: Token = Token(usize::MAX);
/// Clients of other queries waiting on one in flight (coalesced); more get their own.
const MAX_COALESCED: usize = 64;
/// A slot's query buffer larger than this after use is given back (a burst of large queries must
/// not stay resident, issue 19), and the heap trimmed ([`crate::sys::ask_trim`]). 512 octets hold
/// any ordinary query, a padded one (RFC 8467's 128-octet blocks) and a cookie (RFC 7873)
/// included; at 4,096 a flood of 4,000-octet queries left 1,024 slots x 4 KB resident for good
/// (benches/security: +4.9 MiB after the flood).
const KEEP_QUERY_BUFFER: usize = 512;
/// The relay thread's scratch buffer is shrunk to this after a burst.
const KEEP_SCRATCH: usize = 64 << 10;
/// While an upstream is down, a copy of a real query goes to it at most this often (besides the
/// probes): real queries are the best probes.
const ADMIT_INTERVAL: Duration = Duration::from_millis(100);

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
    alias: Arc<dyn LookupReplies>,
}

/// Who sent a lookup of its own through the relay ([`UdpRelay::lookup`]) and takes its reply or
/// failure: the alias resolver. A trait, so that `upstream/` does not depend on `alias/` (which
/// depends on the relay to send its lookups).
pub(crate) trait LookupReplies: Send + Sync {
    /// The reply to lookup `token`, already checked (ID, source, question).
    fn on_reply(&self, token: u64, reply: &[u8]);
    /// Lookup `token` got no reply within the budget.
    fn on_failure(&self, token: u64, err: QueryError);
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
        alias: Arc<dyn LookupReplies>,
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
}
