//! Forwarding over TCP: a TCP client's query goes upstream over TCP (RFC 7766 §6.2.1 leaves the
//! transport to us; TCP keeps a large answer whole, which is why the client used it).
//!
//! The same retransmission schedule as UDP ([`super::attempt::Schedule`]): one budget, copies on
//! a back-off schedule rotated across the upstreams that are up, each copy on a fresh connection
//! with its own random ID, the first valid reply wins and the other attempts are dropped. Like
//! the UDP relays, it keeps a silence record per upstream ([`super::health::Silence`]), so an
//! upstream that answers nothing over TCP while asked is marked down too. TCP retransmits segments
//! itself, so the first re-send waits [`TCP_RTO`] (a lost SYN would otherwise cost the kernel's
//! 1 s SYN timer); an attempt that fails outright (connection refused or reset, closed before
//! the reply) is retried after a short back-off instead of failing the query, so an upstream
//! that restarts within the budget still answers. One connection per attempt keeps clients
//! isolated from each other; TCP is the rare path (truncated answers, zone-sized replies).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::QueryError;
use super::attempt::{RTO_MIN, Schedule, Step, backoff, reply_matches};
use super::health::{Silence, UpstreamHealth};
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
    /// What this forwarder has seen of each upstream since its last reply: silence while asked
    /// marks it down, as for the UDP relays and the probes ([`super::health`]).
    silence: Mutex<Vec<Silence>>,
}

impl TcpForwarder {
    pub(crate) fn new(health: Arc<UpstreamHealth>, budget: Duration) -> TcpForwarder {
        let silence = Mutex::new(vec![Silence::default(); health.count()]);
        TcpForwarder {
            health,
            budget,
            silence,
        }
    }

    fn silence(&self) -> MutexGuard<'_, Vec<Silence>> {
        self.silence.lock().unwrap_or_else(|p| p.into_inner())
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
        let mut schedule = Schedule::new(Instant::now(), self.budget, MAX_ATTEMPTS);
        let mut open = JoinSet::new();
        let mut failures = 0usize;
        loop {
            let now = Instant::now();
            {
                let silence = self.silence();
                for (u, s) in silence.iter().enumerate() {
                    s.check(&self.health, u, now);
                }
            }
            match schedule.step(now) {
                Step::GiveUp => {
                    // Every attempt made ended in an error (connection refused, reset, a reply
                    // that did not match) and none is still waiting: the upstreams refused, not
                    // were slow.
                    let sent = schedule.sent();
                    return Err(if failures > 0 && failures == sent {
                        QueryError::Unreachable
                    } else {
                        QueryError::Timeout
                    });
                }
                Step::Copy if open.len() < MAX_OPEN => {
                    let target = schedule.target(&self.health);
                    let id: u16 = rand::random();
                    let mut sent = query.to_vec();
                    sent[..2].copy_from_slice(&id.to_be_bytes());
                    stats.upstream_request(target);
                    if schedule.sent() > 0 {
                        stats.upstream_retransmit(target);
                    }
                    let addr = self.health.addr(target);
                    open.spawn(
                        async move { (target, exchange(addr, &sent, id, question_end).await) },
                    );
                    self.silence()[target].sent(now);
                    schedule.sent_to(target);
                    schedule.next_after(now, backoff(TCP_RTO, schedule.sent()));
                }
                _ => {}
            }
            // A copy that is due while MAX_OPEN attempts are open waits for one of them to end
            // (`join_next`), not for its timer, which has expired already.
            let wake = if schedule.can_copy() && open.len() < MAX_OPEN {
                schedule.due()
            } else {
                schedule.give_up()
            };
            tokio::select! {
                done = open.join_next(), if !open.is_empty() => match done {
                    Some(Ok((u, Ok(r)))) => {
                        self.health.answered(u);
                        self.silence()[u].answered();
                        *reply = r;
                        return Ok(());
                    }
                    Some(Ok((u, Err(_)))) => {
                        stats.upstream_error(u);
                        failures += 1;
                        // Failed outright: try again soon (the next upstream, or the same one
                        // once it is back), not only when the timer says so.
                        schedule.hurry(Instant::now() + backoff(RTO_MIN, failures));
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
