//! Forwarding over TCP: a TCP client's query goes upstream over TCP (RFC 7766 §6.2.1 leaves the
//! transport to us; TCP keeps a large answer whole, which is why the client used it).
//!
//! The same attempt model as UDP ([`super::attempt`]): one budget, copies on a back-off schedule
//! rotated across the upstreams that are up, each copy on a fresh connection with its own random
//! ID, the first valid reply wins and the other attempts are dropped. TCP retransmits segments
//! itself, so the first re-send waits [`TCP_RTO`] (a lost SYN would otherwise cost the kernel's
//! 1 s SYN timer); an attempt that fails outright (connection refused or reset, closed before
//! the reply) is retried after a short back-off instead of failing the query, so an upstream
//! that restarts within the budget still answers. One connection per attempt keeps clients
//! isolated from each other; TCP is the rare path (truncated answers, zone-sized replies).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::QueryError;
use super::attempt::{RTO_MIN, backoff, give_up_at, reply_matches};
use super::health::UpstreamHealth;
use crate::dns::query::Asked;
use crate::stats::WorkerStats;

/// Wait before a parallel second attempt while the first is still open.
const TCP_RTO: Duration = Duration::from_millis(250);
/// Attempts open at once.
const MAX_OPEN: usize = 3;
/// Attempts per query in total (failed-fast ones included).
const MAX_ATTEMPTS: usize = 16;

pub(crate) struct TcpForwarder {
    health: Arc<UpstreamHealth>,
    budget: Duration,
}

impl TcpForwarder {
    pub(crate) fn new(health: Arc<UpstreamHealth>, budget: Duration) -> TcpForwarder {
        TcpForwarder { health, budget }
    }

    /// The health of the upstreams this forwards to.
    pub(crate) fn health(&self) -> &UpstreamHealth {
        &self.health
    }

    /// Relays `query` (read into `asked`) until an upstream answers; the reply (checked, with
    /// the winning attempt's ID: the caller finishes it, [`super::finish`]) is left in `reply`.
    pub(crate) async fn forward(
        &self,
        query: &[u8],
        asked: &Asked,
        reply: &mut Vec<u8>,
        stats: &WorkerStats,
    ) -> Result<(), QueryError> {
        let question_end = asked.question.end();
        let started = Instant::now();
        let give_up = give_up_at(started, self.budget);
        let mut open = JoinSet::new();
        let (mut attempts, mut failures) = (0usize, 0usize);
        let mut next_at = started;
        let mut target = self.health.first();
        loop {
            let now = Instant::now();
            if now >= give_up {
                // Every attempt made ended in an error (connection refused, reset, a reply that
                // did not match) and none is still waiting: the upstreams refused, not were slow.
                return Err(if failures > 0 && failures == attempts {
                    QueryError::Unreachable
                } else {
                    QueryError::Timeout
                });
            }
            if now >= next_at && attempts < MAX_ATTEMPTS && open.len() < MAX_OPEN {
                let id: u16 = rand::random();
                let mut sent = query.to_vec();
                sent[..2].copy_from_slice(&id.to_be_bytes());
                stats.upstream_request(target);
                if attempts > 0 {
                    stats.upstream_retransmit(target);
                }
                let (u, addr) = (target, self.health.addr(target));
                open.spawn(async move { (u, exchange(addr, &sent, id, question_end).await) });
                attempts += 1;
                next_at = now + backoff(TCP_RTO, attempts);
                target = self.health.after(target);
            }
            let wake = if attempts < MAX_ATTEMPTS {
                next_at.min(give_up)
            } else {
                give_up
            };
            tokio::select! {
                done = open.join_next(), if !open.is_empty() => match done {
                    Some(Ok((u, Ok(r)))) => {
                        self.health.answered(u);
                        *reply = r;
                        return Ok(());
                    }
                    Some(Ok((u, Err(_)))) => {
                        stats.upstream_error(u);
                        failures += 1;
                        // Failed outright: try again soon (the next upstream, or the same one
                        // once it is back), not only when the timer says so.
                        next_at = next_at.min(Instant::now() + backoff(RTO_MIN, failures));
                    }
                    _ => {}
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}

/// One query/reply exchange on a fresh connection, with the reply checked like on UDP.
async fn exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question_end: usize,
) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(upstream).await?;
    conn.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    conn.write_all(&framed).await?;
    let len = conn.read_u16().await? as usize;
    let mut reply = vec![0u8; len];
    conn.read_exact(&mut reply).await?;
    if reply_matches(&reply, id, query, question_end) {
        Ok(reply)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "upstream reply does not match the query",
        ))
    }
}
