//! The one way a passed-on query ends, whoever carried it: the UDP relay (a reply, or the give-up
//! at the end of the budget), a TCP forward, an alias answer that waited for its lookup, or a
//! query no slot would take. Each of them calls [`Finish`] to turn what happened into the bytes
//! the client gets, counted once; a UDP client's reply then leaves through [`send_udp`].
//!
//! Nothing here runs under a lock of the relay or the alias cache: callers collect what they
//! need under their lock and finish after it (the serve-stale cache has its own lock, taken
//! briefly to store or read one reply). Nothing allocates on a relayed reply: the reply is
//! finished in the caller's buffer.

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use super::stale::StaleCache;
use super::{QueryError, failure_reply};
use crate::dns::outcome::{Outcome, Transport};
use crate::dns::query::Asked;
use crate::dns::wire;
use crate::stats::WorkerStats;

/// What finishing a passed-on query needs: where it is counted, the serve-stale cache (if on),
/// and the transport the client asked over (it bounds a stale answer's size).
#[derive(Clone, Copy)]
pub(crate) struct Finish<'a> {
    pub(crate) stats: &'a WorkerStats,
    pub(crate) stale: Option<&'a StaleCache>,
    pub(crate) transport: Transport,
}

impl Finish<'_> {
    /// An upstream's `reply` (already checked against the query: ID, source, question) to the
    /// client's `query` (read into `asked`), first sent at `started`: the client's ID back in
    /// place of the copy's, kept for serve-stale, its latency observed. Not counted: see
    /// [`Self::answered`].
    pub(crate) fn relayed(
        &self,
        query: &[u8],
        asked: &Asked,
        reply: &mut [u8],
        started: Instant,
        now: Instant,
    ) {
        if reply.len() >= 2 {
            reply[..2].copy_from_slice(&asked.header.id.to_be_bytes());
        }
        if let Some(stale) = self.stale {
            stale.store(query, asked, reply, now);
        }
        self.stats
            .forward_latency
            .observe(now.saturating_duration_since(started));
    }

    /// [`Self::relayed`], counted as forwarded (before it leaves, so that whoever got it sees it
    /// counted). A reply too large for the client's UDP size arrives with TC set from the
    /// upstream (which saw the client's own EDNS size) and is passed on as is: the client
    /// retries over TCP (RFC 7766 §5).
    pub(crate) fn answered(
        &self,
        query: &[u8],
        asked: &Asked,
        reply: &mut [u8],
        started: Instant,
        now: Instant,
    ) -> Outcome {
        self.relayed(query, asked, reply, started, now);
        self.stats.count(Outcome::Forwarded);
        Outcome::Forwarded
    }

    /// The same `reply` for a client whose identical query (`query`, but for the ID and the
    /// name's case) was coalesced with the one answered: its own ID and spelling of the question
    /// (`question_end` long), counted. False (not counted) if it cannot be its reply.
    pub(crate) fn shared(&self, query: &[u8], question_end: usize, reply: &mut [u8]) -> bool {
        if query.len() < question_end || reply.len() < question_end {
            return false;
        }
        reply[..2].copy_from_slice(&query[..2]);
        reply[wire::HEADER_LEN..question_end]
            .copy_from_slice(&query[wire::HEADER_LEN..question_end]);
        self.stats.count(Outcome::Forwarded);
        true
    }

    /// No upstream reply (`err`): the failure reply ([`failure_reply`]: stale or SERVFAIL) into
    /// `out`, counted. `out` is empty when there is nothing to send.
    pub(crate) fn failed(
        &self,
        query: &[u8],
        asked: &Asked,
        err: QueryError,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let outcome = failure_reply(query, asked, err, self.stale, self.transport, out);
        self.stats.count(outcome);
        outcome
    }
}

/// Sends a finished `reply` to the UDP client `peer` from `socket`, cut to the client's `limit`
/// (a client outside this pod: see `server::allow`). Nothing is sent for an empty reply.
pub(crate) fn send_udp(socket: &UdpSocket, peer: SocketAddr, reply: &[u8], limit: usize) {
    if reply.is_empty() {
        return;
    }
    let mut scratch = [0u8; 512];
    let reply = crate::server::allow::limited(reply, limit, &mut scratch);
    let _ = socket.send_to(reply, peer);
}
