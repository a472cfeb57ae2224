//! The per-query dispatch both transports share, so that UDP and TCP cannot drift apart: the
//! local decision ([`crate::dns::answer::decide`]), the loop guard, the one outcome count of a
//! query answered at once, and the one `--query-log` line per query.
//!
//! What happens next differs only in how bytes move: a UDP worker hands a forwarded query to its
//! relay, a TCP connection to a forwarding task; both end in the same counters and, on failure,
//! in [`crate::upstream::failure_reply`].

use std::net::SocketAddr;

use tracing::info;

use crate::dns::answer::{self, Decision, Outcome, Transport};
use crate::dns::wire::{self, flag};
use crate::shared::Shared;
use crate::stats::WorkerStats;

/// The next step for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send `out[..len]` back (already counted).
    Reply { len: usize },
    /// Relay it upstream.
    Forward { question_end: usize },
    /// Answer it through an alias rule.
    Alias,
    /// Nothing to send (already counted).
    Drop,
}

/// Decides `msg` from `peer`: a local reply written into `out` (grown for a TCP answer that does
/// not fit), or where it goes next.
pub(crate) fn dispatch(
    shared: &Shared,
    stats: &WorkerStats,
    msg: &[u8],
    peer: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Step {
    let decision = {
        let snapshot = shared.mapping.load();
        let mut d = answer::decide(msg, &snapshot, transport, out);
        // Over TCP the whole answer always fits (RFC 7766 §8): retry a truncated one in a
        // full-size buffer.
        if transport == Transport::Tcp
            && let Decision::Reply { len, .. } = d
            && len >= 4
            && u16::from_be_bytes([out[2], out[3]]) & flag::TC != 0
            && out.len() < u16::MAX as usize
        {
            out.resize(u16::MAX as usize, 0);
            d = answer::decide(msg, &snapshot, transport, out);
        }
        d
    };
    let (step, label) = match decision {
        Decision::Reply { len, outcome } => {
            stats.count(outcome);
            (Step::Reply { len }, outcome.label())
        }
        Decision::Forward { question_end } if shared.loop_guard.is_our_probe(msg, question_end) => {
            // Our own loop-check query came back: do not send it round again.
            stats.count(Outcome::Dropped);
            (Step::Drop, Outcome::Dropped.label())
        }
        Decision::Forward { question_end } => (Step::Forward { question_end }, "forwarding"),
        Decision::Alias { .. } => (Step::Alias, "alias"),
        Decision::Drop => {
            stats.count(Outcome::Dropped);
            (Step::Drop, Outcome::Dropped.label())
        }
    };
    if shared.query_log {
        log_query(msg, peer, transport, label);
    }
    step
}

/// One line per query, for `--query-log` only (allocates; never on by default).
fn log_query(msg: &[u8], peer: SocketAddr, transport: Transport, outcome: &str) {
    let proto = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let mut lower = [0u8; wire::MAX_NAME_WIRE];
    match wire::read_question(msg, &mut lower) {
        Ok(q) => {
            let name = crate::mapping::name::wire_to_text(&msg[12..12 + q.name_len]);
            info!(client = %peer, proto, name, qtype = q.qtype, outcome, "query");
        }
        Err(_) => info!(client = %peer, proto, len = msg.len(), outcome, "query (unreadable)"),
    }
}
