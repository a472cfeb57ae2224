//! The per-query path both transports share, so that UDP and TCP cannot drift apart: the query
//! read once ([`Query::read`]), the local decision ([`crate::dns::decide::decide`]), the loop
//! guard, the one outcome count of a query answered at once, the one `--query-log` line per
//! query, and the failure reply of a query the upstream side would not take.
//!
//! What differs between the transports is only where bytes go, the [`Client`]: a UDP worker
//! sends a reply with `send_to` and hands a forwarded query to its relay; a TCP connection frames
//! the reply for its writer task and forwards from a task of its own. Either way the answer that
//! comes later ends the same way, in [`crate::upstream::finish`].

use std::net::SocketAddr;

use tracing::info;

use crate::alias::{AliasClient, AliasStep};
use crate::dns::decide::{self, Decision};
use crate::dns::outcome::{Outcome, Transport};
use crate::dns::query::{Asked, Query};
use crate::dns::reply;
use crate::dns::wire::MAX_NAME_WIRE;
use crate::shared::Shared;
use crate::stats::WorkerStats;
use crate::upstream::QueryError;
use crate::upstream::finish::Finish;

/// Where a query's reply goes and how it leaves for the upstream: what a transport implements
/// (with [`AliasClient`]: where an alias answer that waits for a lookup goes). [`handle`] is
/// generic over it (no `dyn`): each transport's path compiles to straight calls.
pub(crate) trait Client: AliasClient {
    /// Sends a complete reply to the client now.
    fn reply(&mut self, reply: &[u8]);
    /// Takes the query `msg` (read into `asked`, its name lower-cased in `lower`) to the
    /// upstreams; its reply reaches the client later. `Err` when it was not taken: [`handle`]
    /// answers with the failure reply.
    fn forward(&mut self, msg: &mut [u8], asked: &Asked, lower: &[u8]) -> Result<(), QueryError>;
}

/// What [`handle`] did with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Answered locally (reply sent and counted).
    Answered,
    /// Passed on (upstream or alias): counted when its reply goes out.
    Passed,
    /// The upstream side would not take it: failure reply sent and counted.
    Failed,
    /// Nothing sent (counted): an unreadable message or a response, or our own loop probe.
    Dropped,
}

/// A transport's reusable reply buffers, so the per-query path does not allocate.
pub(crate) struct Buffers {
    /// Local answers: the UDP size cap, grown to 64 KiB for a TCP answer that needs it.
    out: Vec<u8>,
    /// Failure replies, kept apart so `out` keeps its size.
    fail: Vec<u8>,
}

impl Buffers {
    pub(crate) fn new(transport: Transport) -> Buffers {
        // Most TCP answers fit; one that does not is decided again in a full-size buffer.
        Buffers {
            out: vec![0; reply::reply_limit_for(transport)],
            fail: Vec::new(),
        }
    }
}

/// What comes next for a decided query.
enum Next {
    /// Answered (and counted): send `out[..len]`.
    Reply(usize),
    Forward(Asked),
    /// An alias answer waits for its target's lookup.
    Waiting,
    /// Not taken (no slot, no room to wait): the failure reply.
    Fail(Asked, QueryError),
    Drop,
}

/// Handles the query `msg` from `peer`: answered into `client` at once, or passed on through it.
pub(crate) fn handle<C: Client>(
    shared: &Shared,
    stats: &WorkerStats,
    msg: &mut [u8],
    peer: SocketAddr,
    transport: Transport,
    buffers: &mut Buffers,
    client: &mut C,
) -> Handled {
    let mut lower = [0u8; MAX_NAME_WIRE];
    let next = {
        let query = Query::read(msg, &mut lower);
        let (next, label) = match &query {
            Some(query) => decide(shared, stats, query, transport, &mut buffers.out, client),
            None => {
                stats.count(Outcome::Dropped);
                (Next::Drop, Outcome::Dropped.label())
            }
        };
        if shared.query_log {
            log_query(query.as_ref(), msg.len(), peer, transport, label);
        }
        next
    };
    let (asked, err) = match next {
        Next::Reply(len) => {
            client.reply(&buffers.out[..len]);
            return Handled::Answered;
        }
        Next::Drop => return Handled::Dropped,
        Next::Waiting => return Handled::Passed,
        Next::Forward(asked) => {
            match client.forward(msg, &asked, &lower[..asked.question.name_len]) {
                Ok(()) => return Handled::Passed,
                Err(e) => (asked, e),
            }
        }
        Next::Fail(asked, e) => (asked, e),
    };
    // Not taken at once (no slot free, no room to wait for a lookup): no stale answer either,
    // the upstreams were not even asked.
    let finish = Finish {
        stats,
        stale: None,
        transport,
    };
    finish.failed(msg, &asked, err, &mut buffers.fail);
    if !buffers.fail.is_empty() {
        client.reply(&buffers.fail);
    }
    Handled::Failed
}

/// The local decision and what it leads to, with the outcome label for the query log. An alias
/// query is answered here from the target cache when it can be (on the snapshot it was decided
/// on: a reload in between must not renumber its rule).
fn decide<C: Client>(
    shared: &Shared,
    stats: &WorkerStats,
    query: &Query<'_>,
    transport: Transport,
    out: &mut Vec<u8>,
    client: &mut C,
) -> (Next, &'static str) {
    let snapshot = shared.mapping.load();
    let decision = {
        let mut d = decide::decide(query, &snapshot, transport, out);
        // Over TCP the whole answer always fits (RFC 7766 §8): retry a truncated one in a
        // full-size buffer.
        if transport == Transport::Tcp
            && let Decision::Reply { len, .. } = d
            && reply::is_truncated(out, len)
            && out.len() < u16::MAX as usize
        {
            out.resize(u16::MAX as usize, 0);
            d = decide::decide(query, &snapshot, transport, out);
        }
        d
    };
    let dropped = || {
        stats.count(Outcome::Dropped);
        (Next::Drop, Outcome::Dropped.label())
    };
    // Forward and Alias come only with a readable question (so `asked()` is `Some`); stay total
    // anyway. A local answer never needs `asked()`.
    match decision {
        Decision::Reply { len, outcome } => {
            stats.count(outcome);
            (Next::Reply(len), outcome.label())
        }
        // Our own loop-check query came back: do not send it round again.
        Decision::Forward { .. } if shared.loop_guard.is_our_probe(query.name_lower()) => dropped(),
        Decision::Forward { .. } => match query.asked() {
            Some(asked) => (Next::Forward(asked), "forwarding"),
            None => dropped(),
        },
        Decision::Alias { rule } => {
            let Some(asked) = query.asked() else {
                return dropped();
            };
            let step = shared.alias.answer(
                &snapshot,
                rule,
                query.bytes(),
                &asked.with_extras(query.bytes()),
                query.name_lower(),
                transport,
                out,
                client,
            );
            match step {
                AliasStep::Reply { len, outcome } => {
                    stats.count(outcome);
                    // One label whether it came from memory or waits: the log says the path.
                    let label = if outcome == Outcome::Stale {
                        "alias-stale"
                    } else {
                        "alias"
                    };
                    (Next::Reply(len), label)
                }
                AliasStep::Waiting => (Next::Waiting, "alias"),
                AliasStep::Failed(e) => (Next::Fail(asked, e), "alias-failed"),
            }
        }
        Decision::Drop => dropped(),
    }
}

/// One line per query, for `--query-log` only (allocates; never on by default).
fn log_query(
    query: Option<&Query<'_>>,
    len: usize,
    peer: SocketAddr,
    transport: Transport,
    outcome: &str,
) {
    let proto = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    match query.and_then(|q| q.asked().map(|a| (q, a))) {
        Some((q, asked)) => {
            let name = crate::mapping::name::wire_to_text(asked.name(q.bytes()));
            let qtype = asked.question.qtype;
            info!(client = %peer, proto, name, qtype, outcome, "query");
        }
        None => info!(client = %peer, proto, len, outcome, "query (unreadable)"),
    }
}

/// [`handle`] with a client that records what it is given: every step of the dispatch, for
/// both transports, and the failure path of a query the client would not take.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, MappingSource};
    use crate::dns::test_query::q_wire;
    use crate::dns::wire::{rcode, rtype};
    use crate::stats::Proto;

    #[derive(Default)]
    struct Recorder {
        replies: Vec<Vec<u8>>,
        forwards: Vec<Asked>,
        /// Alias answers waiting for a lookup: where each arrives.
        aliases: Vec<tokio::sync::oneshot::Receiver<(Vec<u8>, Outcome)>>,
        /// What `forward` and `alias` answer with: `None` takes the query.
        refuse: Option<QueryError>,
    }

    impl Client for Recorder {
        fn reply(&mut self, reply: &[u8]) {
            self.replies.push(reply.to_vec());
        }
        fn forward(
            &mut self,
            _msg: &mut [u8],
            asked: &Asked,
            _lower: &[u8],
        ) -> Result<(), QueryError> {
            self.forwards.push(*asked);
            self.refuse.map_or(Ok(()), Err)
        }
    }

    impl AliasClient for Recorder {
        fn sink(&mut self) -> crate::alias::Sink {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.aliases.push(rx);
            crate::alias::Sink::Tcp(tx)
        }
        fn relay(&self) -> Option<&Arc<crate::upstream::udp::UdpRelay>> {
            None
        }
    }

    fn shared() -> Arc<Shared> {
        let yaml = "hosts:\n  db-0.db.example.com: 10.42.0.12\nrules:\n  - host: alias.example.com\n    result: www.example.org\n";
        let snapshot = crate::mapping::file::parse(yaml, "t", 5).expect("mapping");
        let mapping = Arc::new(arc_swap::ArcSwap::from_pointee(snapshot));
        let config = Config::new(
            MappingSource::Embedded,
            vec![SocketAddr::from(([127, 0, 0, 1], 53))],
        );
        Shared::new(mapping, &config)
    }

    /// A query for the wire name `name`, A, with ID `id`.
    fn query(name: &[u8], id: u16) -> Vec<u8> {
        q_wire(name, rtype::A).id(id).bytes()
    }

    const DB0: &[u8] = b"\x04DB-0\x02db\x07example\x03com\x00";
    const ALIAS: &[u8] = b"\x05alias\x07example\x03com\x00";
    const OTHER: &[u8] = b"\x03www\x07example\x03org\x00";

    #[derive(Debug, PartialEq)]
    enum Want {
        /// One reply with this rcode, counted under this outcome.
        Reply(u8, Outcome),
        Forward,
        Alias,
        Dropped,
    }

    /// (what, query, what the client answers, what `handle` returns, what must come out)
    type Row = (&'static str, Vec<u8>, Option<QueryError>, Handled, Want);

    #[test]
    fn every_step_goes_through_the_client_the_same_for_both_transports() {
        let peer = SocketAddr::from(([127, 0, 0, 1], 4242));
        let mut response = query(DB0, 7);
        response[2] |= 0x80;
        let rows: Vec<Row> = vec![
            (
                "mapped name",
                query(DB0, 1),
                None,
                Handled::Answered,
                Want::Reply(rcode::NOERROR, Outcome::Answer),
            ),
            (
                "not ours",
                query(OTHER, 2),
                None,
                Handled::Passed,
                Want::Forward,
            ),
            (
                "alias rule",
                query(ALIAS, 3),
                None,
                Handled::Passed,
                Want::Alias,
            ),
            (
                "no slot free",
                query(OTHER, 4),
                Some(QueryError::Shed),
                Handled::Failed,
                Want::Reply(rcode::SERVFAIL, Outcome::ServFail),
            ),
            (
                "a response",
                response,
                None,
                Handled::Dropped,
                Want::Dropped,
            ),
            (
                "no header",
                vec![0; 11],
                None,
                Handled::Dropped,
                Want::Dropped,
            ),
        ];
        for transport in [Transport::Udp, Transport::Tcp] {
            let shared = shared();
            let stats = shared.stats.block(match transport {
                Transport::Udp => Proto::Udp,
                Transport::Tcp => Proto::Tcp,
            });
            let mut buffers = Buffers::new(transport);
            for (what, msg, refuse, handled, want) in &rows {
                let mut client = Recorder {
                    refuse: *refuse,
                    ..Recorder::default()
                };
                let mut bytes = msg.clone();
                let before = shared.stats.totals();
                let got = handle(
                    &shared,
                    &stats,
                    &mut bytes,
                    peer,
                    transport,
                    &mut buffers,
                    &mut client,
                );
                assert_eq!(got, *handled, "{what} ({transport:?})");
                let counted: Vec<Outcome> = {
                    let after = shared.stats.totals();
                    Outcome::ALL
                        .into_iter()
                        .filter(|o| after.get(*o) != before.get(*o))
                        .collect()
                };
                match want {
                    Want::Reply(rc, outcome) => {
                        assert_eq!(client.replies.len(), 1, "{what}");
                        let r = &client.replies[0];
                        assert_eq!(r[..2], msg[..2], "{what}: the query's ID");
                        assert_eq!(r[3] & 0x0f, *rc, "{what}");
                        // The question is echoed.
                        assert_eq!(r[4..6], [0, 1], "{what}");
                        assert_eq!(r[12..msg.len()], msg[12..], "{what}");
                        assert_eq!(counted, [*outcome], "{what}: counted once");
                    }
                    Want::Forward => {
                        let taken = &client.forwards;
                        assert_eq!(taken.len(), 1, "{what}");
                        assert_eq!(taken[0].header.id, u16::from_be_bytes([msg[0], msg[1]]));
                        assert_eq!(taken[0].question.end(), msg.len(), "{what}");
                        assert!(client.replies.is_empty(), "{what}");
                        assert!(counted.is_empty(), "{what}: counted when answered, not now");
                    }
                    Want::Alias => {
                        // Waits for its target's lookup; with no relay to carry it here, the
                        // lookup fails at once and the waiter gets SERVFAIL through its sink.
                        assert_eq!(client.aliases.len(), 1, "{what}");
                        assert!(client.replies.is_empty(), "{what}");
                        let (reply, outcome) =
                            client.aliases.remove(0).try_recv().expect("answered");
                        assert_eq!(outcome, Outcome::ServFail, "{what}");
                        assert_eq!(reply[..2], msg[..2], "{what}");
                        assert_eq!(reply[3] & 0x0f, rcode::SERVFAIL, "{what}");
                    }
                    Want::Dropped => {
                        assert!(
                            client.replies.is_empty() && client.forwards.is_empty(),
                            "{what}"
                        );
                        assert_eq!(counted, [Outcome::Dropped], "{what}");
                    }
                }
            }
        }
    }
}
