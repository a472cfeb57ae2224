//! Everything between us and the upstream DNS servers, with one attempt model for UDP and TCP.
//!
//! ```text
//! attempt.rs  timers (RTT estimate, RTO, back-off, give-up), the reply check, the re-send budget
//! health.rs   up/down from silence (never from single losses), where a query goes first
//! udp.rs      the UDP relay: slot table, copies with random IDs, one epoll thread per worker
//! ids.rs      the relay's ID -> slot map, sized to what is in flight
//! tcp.rs      TCP forwarding: parallel attempts on fresh connections, same timers
//! probe.rs    background probes (fast while an upstream is down), the start-up loop check
//! stale.rs    serve-stale (RFC 8767), opt-in
//! ```
//!
//! A query that cannot be completed becomes a [`QueryError`], and [`failure_reply`] turns that
//! into what the client gets, in one place.

pub(crate) mod attempt;
pub(crate) mod health;
mod ids;
pub(crate) mod probe;
pub(crate) mod stale;
pub(crate) mod tcp;
pub(crate) mod udp;

use std::time::Instant;

use crate::dns::answer::{self, Outcome, Transport};
use crate::dns::query::Asked;
use crate::dns::wire::{CLASSIC_UDP_SIZE, rcode};
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

/// Writes into `out` what the client gets for the query `query` (read earlier into `asked`)
/// that failed with `err`: a stale answer after a [`QueryError::Timeout`] when serve-stale has
/// one (RFC 8767), SERVFAIL otherwise (with the question and EDNS echoed). Reads nothing of the
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
    if err == QueryError::Timeout
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
    match answer::error_reply(query, asked, rcode::SERVFAIL, out) {
        Some(len) => out.truncate(len),
        None => out.clear(),
    }
    Outcome::ServFail
}
