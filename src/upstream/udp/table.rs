//! The relay's table of queries in flight: a slot per query (its copies, schedule, the query's
//! bytes, the clients coalesced with it), the ID map, the coalescing index, and what the relay
//! knows of each upstream (RTT, silence, admission of copies while down, the re-send budget).

use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::super::attempt::{self, MAX_COPIES, ResendBudget, Rtt, Schedule};
use super::super::health::{Silence, UpstreamHealth};
use super::super::ids::IdMap;
use super::super::ports::Ports;
use super::KEEP_QUERY_BUFFER;
use crate::dns::query::Asked;
use crate::dns::wire;

#[derive(Clone, Copy, Default)]
pub(super) struct Copy {
    pub(super) id: u16,
    pub(super) upstream: u8,
    /// The socket it left from (its token in [`Ports`]): its reply must arrive there.
    pub(super) port: u16,
    /// When it left, in microseconds after the slot's first copy: the RTT sample of its reply.
    pub(super) after_us: u32,
}

/// Who gets the reply of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dest {
    /// A client's query, relayed: its reply goes back to the client.
    Client(SocketAddr),
    /// An alias target lookup of ours: its reply goes to the alias resolver ([`crate::alias`]).
    Lookup(u64),
}

pub(super) struct Slot {
    pub(super) live: bool,
    /// What was read of the query (its ID, question, EDNS): the reply check, serve-stale and
    /// the failure reply work from it, reading the query's bytes no more.
    pub(super) asked: Asked,
    pub(super) dest: Dest,
    /// The copies sent, `schedule.sent()` of them.
    pub(super) copies: [Copy; MAX_COPIES],
    pub(super) schedule: Schedule,
    /// The upstream of the last copy refused it (ICMP port unreachable) and no copy went out
    /// since: a give-up now is [`crate::upstream::QueryError::Unreachable`], not a timeout.
    pub(super) refused: bool,
    pub(super) first_sent: Instant,
    /// The client's query, kept to re-send and to build the failure reply. Its buffer is reused
    /// from query to query.
    pub(super) query: Vec<u8>,
    /// Its coalescing key (a client's query), while it is in the coalescing table.
    pub(super) key: Option<u64>,
    /// Clients whose identical query waits on this one: (client, its query).
    pub(super) extra: Vec<(SocketAddr, Box<[u8]>)>,
    /// The largest reply the client may get (server::allow).
    pub(super) limit: usize,
}

impl Slot {
    pub(super) fn sent(&self) -> usize {
        self.schedule.sent()
    }
}

pub(super) struct Table {
    /// ID of each copy in flight -> its slot: O(1) match of a reply to its query.
    pub(super) ids: IdMap,
    pub(super) slots: Vec<Slot>,
    pub(super) free: Vec<u16>,
    pub(super) live: usize,
    pub(super) rng: StdRng,
    pub(super) ports: Ports,
    /// Clients' queries in flight by coalescing key -> slot.
    pub(super) coalesce: HashTable<u16>,
    pub(super) hasher: foldhash::fast::RandomState,
    /// Per upstream: RTT estimate, silence since the last reply, when a down upstream may next
    /// get a copy of a real query.
    pub(super) rtt: Vec<Rtt>,
    pub(super) silence: Vec<Silence>,
    pub(super) admit_at: Vec<Instant>,
    pub(super) budget: ResendBudget,
    /// No slot is due before this (a lower bound, exact after each timer run); `None` when
    /// nothing is in flight.
    pub(super) next_due: Option<Instant>,
    /// What the relay thread sleeps towards (`None`: indefinitely). A query due earlier wakes it.
    pub(super) sleeping_until: Option<Instant>,
    pub(super) sleeping: bool,
    /// Set by [`super::UdpRelay::stop`]: the relay thread ends when nothing is in flight or then.
    pub(super) stop_by: Option<Instant>,
}

impl Table {
    pub(super) fn new(upstreams: usize, capacity: usize, now: Instant, ports: Ports) -> Table {
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
    pub(super) fn take_id(&mut self, index: usize) -> u16 {
        loop {
            let id: u16 = self.rng.random();
            if self.ids.get(id).is_none() {
                self.ids.insert(id, index);
                return id;
            }
        }
    }

    /// A new copy of slot `index` to upstream `u`: its ID, its socket, and the socket to send on.
    pub(super) fn new_copy(
        &mut self,
        index: usize,
        u: usize,
        now: Instant,
    ) -> (Copy, Option<Arc<UdpSocket>>) {
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
            after_us: 0,
        };
        (copy, socket)
    }

    /// The slot of a client's query in flight that `query` (its name lower-cased in `lower`) is
    /// identical to but for the ID and the name's case, with its key.
    pub(super) fn coalesce_key(&self, query: &[u8], asked: &Asked, lower: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(&query[2..wire::HEADER_LEN]);
        h.write(lower);
        h.write(&query[wire::HEADER_LEN + asked.question.name_len..]);
        h.finish()
    }

    pub(super) fn find_same(&self, key: u64, query: &[u8], asked: &Asked) -> Option<usize> {
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

    pub(super) fn release(&mut self, index: usize) {
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
            crate::sys::ask_trim();
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
    pub(super) fn interval(&self, health: &UpstreamHealth, u: usize, sent: usize) -> Duration {
        attempt::interval(self.rtt[u].rto(), health.is_healthy(u), sent)
    }

    pub(super) fn note_due(&mut self, due: Instant) {
        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
    }

    /// Whether the relay thread must be woken to honour a new deadline `due`. One wake is
    /// enough: the woken thread reads every deadline noted until it runs its timers, so the
    /// wake is noted as pending (`sleeping` cleared) and the queries after it do not write
    /// the eventfd again. Without that, every query of a burst that follows an idle moment
    /// (nothing in flight: the relay thread sleeps without a timeout) woke it once more: 0.9
    /// eventfd writes per forwarded query under dnsperf load, now one per ~130.
    pub(super) fn must_wake(&mut self, due: Instant) -> bool {
        let wake = self.sleeping && self.sleeping_until.is_none_or(|t| due < t);
        if wake {
            self.sleeping = false;
        }
        wake
    }
}

#[cfg(test)]
mod tests {
    use mio::Poll;

    use super::*;
    use crate::dns::test_query::q_wire;
    use crate::dns::wire::rtype;
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

    /// A slot not in use for `query` (a client's), first sent at `t0`.
    fn slot(query: &[u8], t0: Instant) -> Slot {
        Slot {
            live: false,
            asked: Asked::read(query).expect("readable"),
            dest: Dest::Client(SocketAddr::from(([127, 0, 0, 1], 1))),
            copies: [Copy::default(); MAX_COPIES],
            schedule: Schedule::new(t0, Duration::from_secs(2), MAX_COPIES),
            refused: false,
            first_sent: t0,
            query: Vec::new(),
            key: None,
            extra: Vec::new(),
            limit: usize::MAX,
        }
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
            let query = q_wire(b"\x00", rtype::A).id(0).bytes();
            t.slots.push(Slot {
                live: true,
                query: query.to_vec(),
                ..slot(&query, t0)
            });
            for k in 0..3 {
                let id = t.take_id(index);
                t.slots[index].copies[k] = Copy {
                    id,
                    upstream: 0,
                    port: 0,
                    after_us: 0,
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

    /// A slot's query buffer that a large query grew is given back when the slot is released (a
    /// flood of large queries must not stay resident); an ordinary one is kept for the next.
    #[test]
    fn a_large_query_buffer_is_given_back_on_release() {
        let t0 = Instant::now();
        let (mut t, _poll) = table(1, 4, t0);
        for (len, kept) in [(64, true), (KEEP_QUERY_BUFFER, true), (4000, false)] {
            let query = q_wire(b"\x00", rtype::A).id(0).bytes();
            let mut buf = query.to_vec();
            buf.resize(len.max(query.len()), 0);
            let index = t.free.pop().expect("a free slot") as usize;
            while t.slots.len() <= index {
                t.slots.push(slot(&query, t0));
            }
            t.slots[index].live = true;
            t.slots[index].query = buf;
            t.live += 1;
            t.release(index);
            assert_eq!(t.slots[index].query.capacity() > 0, kept, "{len} octets");
        }
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
