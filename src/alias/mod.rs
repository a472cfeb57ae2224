//! Alias rules: a mapped name whose `result` is another host name (the operator's rules map each
//! server's public FQDN to its pod's headless-service name) is answered with that target's
//! records, looked up through the upstream, under the asked name (flattened: no CNAME).
//!
//! The path of an alias query, all on the thread that received it unless it must wait:
//!
//! ```text
//! dispatch -> AliasResolver::answer
//!   chain()          rule -> target (a target that is itself mapped or matches a rule is followed
//!                    here, at most MAX_DEPTH rules deep: no upstream needed)
//!   cache::query()   fresh -> written into the caller's buffer now (and maybe a prefetch)
//!                    stale (upstream failing) -> the last good records now, TTL 30, EDE 3
//!                    miss -> the client waits; one lookup per target goes out
//!   lookup           records::lookup_query -> the worker's UDP relay (upstream::udp): the same
//!                    slots, retransmission, health, budget and reply check as forwarded queries
//! relay thread -> on_reply / on_failure -> cache::complete -> every waiter answered (or SERVFAIL
//!                 just before the budget ends, or stale); a truncated reply is fetched again
//!                 over TCP (upstream::tcp)
//! ```
//!
//! So an alias lookup is exactly as robust as a forwarded query (RTT-adaptive re-sends, honest
//! health, one `--upstream-timeout` budget, SERVFAIL with its Extended DNS Error before it ends),
//! and a name the database asks regularly is answered from memory at about the cost of a local
//! answer. Waiting clients and lookups are bounded before anything is queued ([`cache`]).

pub(crate) mod cache;
pub(crate) mod records;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::warn;

use crate::dns::decide;
use crate::dns::outcome::{Outcome, Transport};
use crate::dns::query::Asked;
use crate::dns::reply::{self, Rdata, Reply};
use crate::dns::wire::{HEADER_LEN, MAX_NAME_WIRE, ede, rtype};
use crate::mapping::{Found, Snapshot, name};
use crate::stats::WorkerStats;
use crate::upstream::QueryError;
use crate::upstream::finish::{Finish, send_udp};
use crate::upstream::tcp::TcpForwarder;
use crate::upstream::udp::UdpRelay;
use cache::{Cache, Footprint, Policy, Served, Step};

/// Rule-to-rule alias chains longer than this are answered SERVFAIL (a loop in the rules).
pub(crate) const MAX_DEPTH: usize = 8;
/// Longest cache key: a wire name and a type.
const MAX_KEY: usize = MAX_NAME_WIRE + 2;

/// Where a waiting client's answer goes when its lookup ends.
pub(crate) enum Sink {
    /// Sent from the worker's socket (counted in its stats).
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        stats: Arc<WorkerStats>,
        /// The largest reply it may get (server::allow).
        limit: usize,
    },
    /// Handed to the connection's task, which frames, counts and writes it.
    Tcp(oneshot::Sender<(Vec<u8>, Outcome)>),
}

/// A client waiting for a lookup: its query and where the answer goes.
pub(crate) struct Waiter {
    query: Box<[u8]>,
    asked: Asked,
    transport: Transport,
    /// The TTL cap of the rules on its chain.
    cap: u32,
    serial: u32,
    sink: Sink,
}

impl Footprint for Waiter {
    fn bytes(&self) -> usize {
        self.query.len() + std::mem::size_of::<Waiter>()
    }
}

/// What [`AliasResolver::answer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasStep {
    /// `out[..len]` is the answer: send it now.
    Reply { len: usize, outcome: Outcome },
    /// The client waits for a lookup; its sink gets the answer.
    Waiting,
    /// SERVFAIL for this reason.
    Failed(QueryError),
}

/// What a transport gives the resolver: where a waiting client's answer goes, and the relay
/// that carries lookups from this thread.
pub(crate) trait AliasClient {
    fn sink(&mut self) -> Sink;
    fn relay(&self) -> Option<&Arc<UdpRelay>>;
}

/// The target a chain of rules leads to, or a local end of it. Returned once per query on the
/// stack: boxing the key would allocate on the hot path, which the size difference does not cost.
#[allow(clippy::large_enum_variant)]
enum Chain<'s> {
    /// Answered from the mapping (the target is itself mapped, `found` there): the records of
    /// `qtype` ([`decide::local_records`], as a local answer), with the TTL cap of the rules.
    Local {
        found: Found<'s>,
        qtype: u16,
        cap: u32,
    },
    /// Ask the upstream for `key` (target wire name + type); `cap` is the rules' TTL cap.
    Target {
        key: [u8; MAX_KEY],
        len: usize,
        cap: u32,
    },
    Fail(QueryError),
}

/// What a retry over TCP of a truncated lookup runs with.
struct TcpRetry {
    runtime: tokio::runtime::Handle,
    forwarder: Arc<TcpForwarder>,
    stats: Arc<WorkerStats>,
    tasks: Arc<crate::lifecycle::Tasks>,
}

/// A lookup in flight: what a TCP retry and the metrics need.
struct Lookup {
    query: Vec<u8>,
}

pub(crate) struct AliasResolver {
    cache: Mutex<Cache<Waiter>>,
    /// The lookups in flight, by token (the query, for a retry over TCP).
    lookups: Mutex<hashbrown::HashMap<u64, Lookup, foldhash::fast::FixedState>>,
    /// The UDP relays lookups go through (weak: the relays hold this resolver).
    relays: OnceLock<Vec<Weak<UdpRelay>>>,
    /// For a truncated reply: TCP to the upstreams, run on the runtime.
    tcp: OnceLock<TcpRetry>,
    /// This resolver, for the TCP retry's task.
    me: Weak<AliasResolver>,
}

/// The relay hands the replies of our lookups back through this (`upstream/` does not know
/// `alias/`).
impl crate::upstream::udp::LookupReplies for AliasResolver {
    fn on_reply(&self, token: u64, reply: &[u8]) {
        AliasResolver::on_reply(self, token, reply);
    }

    fn on_failure(&self, token: u64, err: QueryError) {
        AliasResolver::on_failure(self, token, err);
    }
}

impl AliasResolver {
    pub(crate) fn new(policy: Policy) -> Arc<AliasResolver> {
        Arc::new_cyclic(|me| AliasResolver {
            cache: Mutex::new(Cache::new(policy)),
            lookups: Mutex::default(),
            relays: OnceLock::new(),
            tcp: OnceLock::new(),
            me: me.clone(),
        })
    }

    /// Wires the resolver to the relays and the TCP forwarder, once they exist.
    pub(crate) fn connect(
        &self,
        relays: Vec<Weak<UdpRelay>>,
        runtime: tokio::runtime::Handle,
        tcp: Arc<TcpForwarder>,
        stats: Arc<WorkerStats>,
        tasks: Arc<crate::lifecycle::Tasks>,
    ) {
        let _ = self.relays.set(relays);
        let _ = self.tcp.set(TcpRetry {
            runtime,
            forwarder: tcp,
            stats,
            tasks,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache<Waiter>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (counts, (kept answers, bytes, lookups in flight, waiting clients)) for the metrics.
    pub(crate) fn metrics(&self) -> (cache::Counts, (usize, usize, usize, usize)) {
        let c = self.lock();
        (c.counts, c.sizes())
    }

    /// Answers the query `msg` (read into `asked`; `name_lower` its name lower-cased), which
    /// matched alias rule `rule` of `snapshot`: into `out` now, or later through the client's
    /// sink.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn answer<C: AliasClient>(
        &self,
        snapshot: &Snapshot,
        rule: usize,
        msg: &[u8],
        asked: &Asked,
        name_lower: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
        client: &mut C,
    ) -> AliasStep {
        let qtype = asked.question.qtype;
        let serial = snapshot.content_hash as u32;
        let (key, len, cap) = match chain(snapshot, rule, name_lower, qtype) {
            Chain::Fail(e) => return AliasStep::Failed(e),
            Chain::Local { found, qtype, cap } => {
                let Some((records, ttl)) = decide::local_records(snapshot, found, qtype) else {
                    return AliasStep::Failed(QueryError::AliasFailed);
                };
                // The name's TTL, at most the rules' cap: for every record and the SOA.
                let cap = cap.min(ttl.unwrap_or(cap));
                let iter = records.map(move |(t, _, r)| (t, cap, r));
                let Reply { len, outcome } =
                    write(msg, asked, transport, iter, (cap, serial), None, out);
                return AliasStep::Reply { len, outcome };
            }
            Chain::Target { key, len, cap } => (key, len, cap),
        };
        let key = &key[..len];
        let now = Instant::now();
        let down = self
            .tcp
            .get()
            .is_some_and(|r| r.forwarder.health().all_down());
        let step = self.lock().query(key, cap, now, down, || Waiter {
            query: msg.into(),
            asked: *asked,
            transport,
            cap,
            serial,
            sink: client.sink(),
        });
        let (data, stale, start) = match step {
            Step::Fresh { data, refresh } => (data, false, refresh),
            Step::Stale { data, retry } => (data, true, retry),
            Step::Wait { start } => {
                if let Some(token) = start {
                    self.start(token, key, client.relay());
                }
                return AliasStep::Waiting;
            }
            Step::Shed => return AliasStep::Failed(QueryError::AliasQueueFull),
        };
        if let Some(token) = start {
            self.start(token, key, client.relay());
        }
        let (ttl, ede) = if stale {
            (cache::STALE_TTL, Some(ede::STALE_ANSWER))
        } else {
            (data.ttl_left(now).min(cap), None)
        };
        let iter = data.records.iter().map(|(t, r)| (*t, ttl, Rdata::Bytes(r)));
        let Reply { len, mut outcome } =
            write(msg, asked, transport, iter, (ttl, serial), ede, out);
        if stale {
            outcome = Outcome::Stale;
        }
        AliasStep::Reply { len, outcome }
    }

    /// Sends lookup `token` for `key` through `relay` (or the first relay alive). If it cannot
    /// leave, the lookup fails at once (its waiters get stale records or SERVFAIL).
    fn start(&self, token: u64, key: &[u8], relay: Option<&Arc<UdpRelay>>) {
        let (target, qtype) = key.split_at(key.len() - 2);
        let qtype = u16::from_be_bytes([qtype[0], qtype[1]]);
        let mut query = records::lookup_query(target, qtype, &mut rand::rng());
        let Some(asked) = Asked::read(&query) else {
            return self.on_failure(token, QueryError::AliasFailed);
        };
        self.lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                token,
                Lookup {
                    query: query.clone(),
                },
            );
        let fallback;
        let relay = match relay {
            Some(r) => Some(r),
            None => {
                fallback = self
                    .relays
                    .get()
                    .and_then(|rs| rs.iter().find_map(Weak::upgrade));
                fallback.as_ref()
            }
        };
        let sent = match relay {
            Some(r) => r.lookup(&mut query, &asked, token),
            None => Err(QueryError::AliasFailed),
        };
        if let Err(e) = sent {
            self.on_failure(token, e);
        }
    }

    /// The relay's reply to lookup `token` (already checked: ID, source, question).
    pub(crate) fn on_reply(&self, token: u64, reply: &[u8]) {
        let Some(key) = self.lock().key_of(token) else {
            return;
        };
        let (target, qtype) = key.split_at(key.len() - 2);
        let qtype = u16::from_be_bytes([qtype[0], qtype[1]]);
        let question_end = HEADER_LEN + target.len() + 4;
        let outcome = match records::read_reply(reply, target, qtype, question_end) {
            records::Reply::Records(records, ttl) => cache::Outcome::Answer { records, ttl },
            records::Reply::Negative => cache::Outcome::Answer {
                records: Vec::new(),
                ttl: u32::MAX,
            },
            records::Reply::Truncated => return self.retry_over_tcp(token, key),
            records::Reply::Failed => cache::Outcome::Failed,
        };
        self.finish(token, outcome);
    }

    /// Lookup `token` got no answer within the budget (or could not be sent).
    pub(crate) fn on_failure(&self, token: u64, err: QueryError) {
        self.finish_with(token, cache::Outcome::Failed, err);
    }

    /// RFC 7766 §5 / RFC 1035 §4.2.1: a truncated UDP answer is asked again over TCP.
    fn retry_over_tcp(&self, token: u64, key: Box<[u8]>) {
        let query = self
            .lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&token)
            .map(|l| l.query.clone());
        let (Some(query), Some(retry), Some(me)) = (query, self.tcp.get(), self.me.upgrade())
        else {
            return self.finish(token, cache::Outcome::Failed);
        };
        let (tcp, stats) = (retry.forwarder.clone(), retry.stats.clone());
        retry.tasks.spawn_on(&retry.runtime, async move {
            let Some(asked) = Asked::read(&query) else {
                return me.finish(token, cache::Outcome::Failed);
            };
            let mut reply = Vec::new();
            let started = Instant::now();
            match tcp.forward(&query, &asked, &mut reply, &stats).await {
                Ok(()) => {
                    // Finished like a forward over TCP, but not counted (no client asked it)
                    // and not kept for serve-stale (nor is a lookup answered over UDP).
                    let finish = Finish {
                        stats: &stats,
                        stale: None,
                        transport: Transport::Tcp,
                    };
                    finish.relayed(&query, &asked, &mut reply, started, Instant::now());
                    let (target, qtype) = key.split_at(key.len() - 2);
                    let qtype = u16::from_be_bytes([qtype[0], qtype[1]]);
                    let end = asked.question.end();
                    let outcome = match records::read_reply(&reply, target, qtype, end) {
                        records::Reply::Records(records, ttl) => {
                            cache::Outcome::Answer { records, ttl }
                        }
                        records::Reply::Negative => cache::Outcome::Answer {
                            records: Vec::new(),
                            ttl: u32::MAX,
                        },
                        _ => cache::Outcome::Failed,
                    };
                    me.finish(token, outcome);
                }
                Err(_) => me.finish(token, cache::Outcome::Failed),
            }
        });
    }

    /// Ends lookup `token`: the cache keeps what it says, and every waiter is answered (what
    /// each gets is taken under the cache lock; the replies are built and sent after it).
    fn finish(&self, token: u64, outcome: cache::Outcome) {
        // The upstream answered, but could not answer for the target (SERVFAIL, REFUSED, ...).
        self.finish_with(token, outcome, QueryError::AliasFailed)
    }

    /// [`Self::finish`]; a waiter that gets SERVFAIL learns why from `err` (its Extended DNS
    /// Error, as for a forwarded query: 22 for silence, 23 for refusals).
    fn finish_with(&self, token: u64, outcome: cache::Outcome, err: QueryError) {
        self.lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        let now = Instant::now();
        // Under the cache lock only what each waiter gets (the records are shared, not copied);
        // the replies are built and sent after it.
        let mut done: Vec<(Waiter, Option<(cache::Data, bool)>)> = Vec::new();
        self.lock().complete(token, outcome, now, |w, served| {
            let kept = match served {
                Served::Fresh(d) => Some((d.clone(), false)),
                Served::Stale(d) => Some((d.clone(), true)),
                Served::Fail => None,
            };
            done.push((w, kept));
        });
        for (w, kept) in done {
            let mut out = vec![0u8; reply::reply_limit_for(w.transport)];
            let outcome = match kept {
                Some((d, stale)) => {
                    let (ttl, ede) = if stale {
                        (cache::STALE_TTL, Some(ede::STALE_ANSWER))
                    } else {
                        (d.ttl_left(now).min(w.cap), None)
                    };
                    let iter = d.records.iter().map(|(t, r)| (*t, ttl, Rdata::Bytes(r)));
                    let soa = (ttl, w.serial);
                    let r = write(&w.query, &w.asked, w.transport, iter, soa, ede, &mut out);
                    out.truncate(r.len);
                    if stale { Outcome::Stale } else { r.outcome }
                }
                None => {
                    out.clear();
                    crate::upstream::failure_reply(
                        &w.query,
                        &w.asked,
                        err,
                        None,
                        w.transport,
                        &mut out,
                    )
                }
            };
            match w.sink {
                Sink::Udp {
                    socket,
                    peer,
                    stats,
                    limit,
                } => {
                    // Counted before it leaves, so that whoever got it sees it counted.
                    stats.count(outcome);
                    send_udp(&socket, peer, &out, limit);
                }
                // Counted by the connection's task, which sends it if the client is still there.
                Sink::Tcp(tx) => {
                    let _ = tx.send((out, outcome));
                }
            }
        }
    }
}

/// Writes the answer to `msg` made of `records` into `out`, with `ede` in the OPT when the
/// client has EDNS and there is room; over TCP an answer that does not fit `out` is written
/// again into a buffer grown to a full message.
fn write<'r>(
    msg: &[u8],
    asked: &Asked,
    transport: Transport,
    records: impl Iterator<Item = (u16, u32, Rdata<'r>)> + Clone,
    soa: (u32, u32),
    ede: Option<u16>,
    out: &mut Vec<u8>,
) -> Reply {
    let r = reply::records_answer(msg, asked, transport, records.clone(), soa, ede, out);
    if transport == Transport::Tcp
        && reply::is_truncated(out, r.len)
        && out.len() < u16::MAX as usize
    {
        out.resize(u16::MAX as usize, 0);
        return reply::records_answer(msg, asked, transport, records, soa, ede, out);
    }
    r
}

/// Follows `rule` from `name_lower` (the asked name, lower-cased wire form) through the mapping:
/// to a target for the upstream, or to a mapped name answered here. `qtype` ANY asks for the
/// addresses (RFC 8482 §4.1: a subset is a valid answer to ANY).
fn chain<'s>(snapshot: &'s Snapshot, rule: usize, name_lower: &[u8], qtype: u16) -> Chain<'s> {
    let qtype = if qtype == rtype::ANY { rtype::A } else { qtype };
    let Some(rules) = snapshot.rules() else {
        return Chain::Fail(QueryError::AliasFailed);
    };
    let mut cap = u32::MAX;
    let mut wire = name_lower.to_vec();
    let mut found = Found::Alias(rule);
    for _ in 0..=MAX_DEPTH {
        match found {
            Found::Alias(i) => {
                let Some(r) = rules.rules.get(i) else {
                    return Chain::Fail(QueryError::AliasFailed);
                };
                cap = cap.min(r.ttl);
                let mut buf = [0u8; 256];
                let target = name::wire_to_text_in(&wire, &mut buf)
                    .and_then(|text| rules.expand(i, text))
                    .and_then(|t| name::to_wire_lower(&t).ok());
                match target {
                    Some(t) => wire = t,
                    None => return Chain::Fail(QueryError::AliasFailed),
                }
            }
            Found::Entry(_) | Found::Ptr(_) => return Chain::Local { found, qtype, cap },
            Found::None => {
                let mut key = [0u8; MAX_KEY];
                key[..wire.len()].copy_from_slice(&wire);
                key[wire.len()..wire.len() + 2].copy_from_slice(&qtype.to_be_bytes());
                return Chain::Target {
                    key,
                    len: wire.len() + 2,
                    cap,
                };
            }
        }
        found = snapshot.find(&wire);
    }
    warn!(
        depth = MAX_DEPTH,
        "alias rules chain too deep; answering SERVFAIL"
    );
    Chain::Fail(QueryError::AliasTooDeep)
}
