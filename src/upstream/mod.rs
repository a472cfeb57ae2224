//! Everything between us and the upstream DNS servers, with one attempt model for UDP and TCP.
//!
//! ```text
//! attempt.rs  the one retransmission Schedule (copies, rotation, back-off, give-up) of UDP and
//!             TCP, the RTT estimate and RTO, the reply check, the re-send budget
//! health.rs   up/down from silence (never from single losses), where a query goes first
//! udp/        the UDP relay: mod.rs (query-thread side), table.rs (slots, coalescing, copies
//!             with random IDs), relay_loop.rs (one epoll thread per worker)
//! ids.rs      the relay's ID -> slot map, sized to what is in flight
//! ports.rs    the relay's source ports: a pool of sockets per upstream, replaced as used
//! tcp.rs      TCP forwarding: parallel attempts on fresh connections, the same Schedule
//! finish.rs   the one way a passed-on query ends: ID restored, kept for serve-stale, timed,
//!             counted, sent
//! probe.rs    background probes (fast while an upstream is down)
//! loop_guard.rs the start-up forwarding-loop check
//! stale.rs    serve-stale (RFC 8767), opt-in
//! ```
//!
//! A query that cannot be completed becomes a [`QueryError`], and [`failure_reply`] turns that
//! into what the client gets, in one place (called through [`finish::Finish::failed`], and by the
//! alias resolver for its waiters).

pub(crate) mod attempt;
pub(crate) mod finish;
pub(crate) mod health;
mod ids;
pub(crate) mod loop_guard;
mod ports;
pub(crate) mod probe;
pub(crate) mod stale;
pub(crate) mod tcp;
pub(crate) mod udp;

use std::time::Instant;

use crate::dns::outcome::{Outcome, Transport};
use crate::dns::query::Asked;
use crate::dns::reply::{self, Refusal};
use crate::dns::wire::{CLASSIC_UDP_SIZE, ede};
use stale::StaleCache;

/// Why a forwarded query got no upstream reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    /// Every forwarding slot is in flight (`--max-inflight`): shed load rather than queue
    /// without bound.
    #[error("no forwarding slot free")]
    Shed,
    /// No upstream answered within the budget (`--upstream-timeout`).
    #[error("no upstream answered within the budget")]
    Timeout,
    /// The budget ended with the upstreams refusing the query (ICMP port unreachable, TCP
    /// connection refused or reset), not silent: typically an upstream restarting.
    #[error("the upstreams refused the query until the budget ended")]
    Unreachable,
    /// The queue of alias queries for the resolver is full.
    #[error("alias queue full")]
    AliasQueueFull,
    /// An alias target could not be resolved (upstream failure, bad expansion).
    #[error("alias target lookup failed")]
    AliasFailed,
    /// Alias rules lead to alias rules more than `alias::MAX_DEPTH` times.
    #[error("alias chain too deep")]
    AliasTooDeep,
}

impl QueryError {
    /// The Extended DNS Error (RFC 8914 §4) that says why, in the SERVFAIL's OPT: 22 "No
    /// Reachable Authority" for silence (as Cloudflare's and Google's resolvers use it for
    /// timeouts), 23 "Network Error" for refusals; nothing where no code says more than the
    /// rcode (shed, alias lookups).
    fn extended_error(self) -> Option<u16> {
        match self {
            QueryError::Timeout => Some(ede::NO_REACHABLE_AUTHORITY),
            QueryError::Unreachable => Some(ede::NETWORK_ERROR),
            _ => None,
        }
    }

    /// Whether serve-stale may answer instead (RFC 8767 §5: when the upstreams cannot refresh
    /// the answer, not when we declined to ask them).
    fn may_serve_stale(self) -> bool {
        matches!(self, QueryError::Timeout | QueryError::Unreachable)
    }
}

/// Writes into `out` what the client gets for the query `query` (read earlier into `asked`)
/// that failed with `err`: a stale answer after a [`QueryError::Timeout`] or
/// [`QueryError::Unreachable`] when serve-stale has one (RFC 8767), SERVFAIL otherwise (with the
/// question and EDNS echoed, and an Extended DNS Error where one applies). Reads nothing of the
/// query again.
pub(crate) fn failure_reply(
    query: &[u8],
    asked: &Asked,
    err: QueryError,
    stale: Option<&StaleCache>,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    // A forwarded query's records were never read: read them once for all that follows.
    let asked = &asked.with_extras(query);
    if err.may_serve_stale()
        && let Some(stale) = stale
    {
        // The client's own limit, not ours: the kept reply is the upstream's, sized for it.
        let limit = match transport {
            Transport::Udp => asked
                .edns(query)
                .map_or(CLASSIC_UDP_SIZE, |e| e.udp_size as usize),
            Transport::Tcp => u16::MAX as usize,
        };
        if stale.answer(query, asked, limit, out, Instant::now()) {
            return Outcome::Stale;
        }
    }
    // Header, question and OPT: at most 12 + 255 + 4 + 11 octets.
    out.clear();
    out.resize(CLASSIC_UDP_SIZE, 0);
    match reply::failure(query, asked, Refusal::ServFail(err.extended_error()), out) {
        Some(r) => {
            out.truncate(r.len);
            r.outcome
        }
        None => {
            out.clear();
            Outcome::ServFail
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::test_query::q;
    use crate::dns::wire::{rcode, rtype};

    /// `www.example.org A`, with an OPT record (1232, DO) when `edns`.
    fn query(edns: bool) -> Vec<u8> {
        let q = q("www.example.org", rtype::A).id(0xbeef);
        if edns { q.edns(1232) } else { q }.bytes()
    }

    /// What the client gets for each error: SERVFAIL with the question, the OPT when asked with
    /// one, and in it the Extended DNS Error that says why, where one does.
    #[test]
    fn every_error_is_a_servfail_with_the_extended_error_that_says_why() {
        let rows = [
            (QueryError::Timeout, Some(22u16)),
            (QueryError::Unreachable, Some(23)),
            (QueryError::Shed, None),
            (QueryError::AliasQueueFull, None),
            (QueryError::AliasFailed, None),
            (QueryError::AliasTooDeep, None),
        ];
        for (err, ede) in rows {
            for edns in [false, true] {
                let q = query(edns);
                let asked = Asked::read(&q).expect("readable");
                let mut out = Vec::new();
                let outcome = failure_reply(&q, &asked, err, None, Transport::Udp, &mut out);
                let what = format!("{err:?}, EDNS {edns}");
                assert_eq!(outcome, Outcome::ServFail, "{what}");
                assert_eq!(out[..2], [0xbe, 0xef], "{what}");
                assert_eq!(out[3] & 0x0f, rcode::SERVFAIL, "{what}");
                let question_end = q.len() - if edns { 11 } else { 0 };
                assert_eq!(out[12..question_end], q[12..question_end], "{what}");
                let opt = &out[question_end..];
                match (edns, ede) {
                    (false, _) => assert!(opt.is_empty() && out[11] == 0, "{what}: no OPT"),
                    (true, None) => {
                        assert_eq!(opt, [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0], "{what}")
                    }
                    (true, Some(code)) => {
                        let c = code.to_be_bytes();
                        assert_eq!(
                            opt,
                            [
                                0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 6, 0, 15, 0, 2, c[0], c[1]
                            ],
                            "{what}: OPT with one EDE option"
                        );
                    }
                }
            }
        }
    }
}
