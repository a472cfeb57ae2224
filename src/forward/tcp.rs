//! Forwarding over TCP: a TCP client's query goes upstream over TCP (RFC 7766 §6.2.1 leaves the
//! transport to us; TCP keeps a large answer whole, which is why the client used it).
//!
//! One connection per query keeps this simple and isolates clients from each other; TCP is the
//! rare path (truncated answers, zone-sized replies), the volume is on UDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::dns::wire::{self, flag};
use crate::forward::health::UpstreamHealth;
use crate::stats::WorkerStats;

pub struct TcpForwarder {
    health: Arc<UpstreamHealth>,
    attempt_timeout: Duration,
}

impl TcpForwarder {
    pub fn new(health: Arc<UpstreamHealth>, timeout: Duration) -> TcpForwarder {
        TcpForwarder {
            attempt_timeout: timeout / health.len().max(1) as u32,
            health,
        }
    }

    /// Relays `query` to the upstreams in order until one answers; the reply, with the client's
    /// ID restored, is left in `reply`. `Err` means every upstream failed: answer SERVFAIL.
    pub async fn forward(
        &self,
        query: &[u8],
        question_end: usize,
        reply: &mut Vec<u8>,
        stats: &WorkerStats,
    ) -> Result<(), ()> {
        let client_id = [query[0], query[1]];
        let mut sent = query.to_vec();
        let mut tried = 0u32;
        let started = Instant::now();
        while let Some(u) = self.health.next(tried) {
            tried |= 1 << u;
            let id: u16 = rand::random();
            sent[..2].copy_from_slice(&id.to_be_bytes());
            stats.upstream_request(u);
            let attempt = exchange(self.health.addr(u), &sent, question_end, reply);
            match tokio::time::timeout(self.attempt_timeout, attempt).await {
                Ok(Ok(())) => {
                    self.health.success(u);
                    reply[..2].copy_from_slice(&client_id);
                    stats.forward_latency.observe(started.elapsed());
                    return Ok(());
                }
                Ok(Err(_)) => stats.upstream_error(u),
                Err(_) => stats.upstream_timeout(u),
            }
            self.health.failure(u);
        }
        Err(())
    }
}

/// One query/reply exchange on a fresh connection, with the reply checked like on UDP: same ID,
/// QR set, same question (RFC 5452 §9.1).
async fn exchange(
    upstream: SocketAddr,
    query: &[u8],
    question_end: usize,
    reply: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut conn = TcpStream::connect(upstream).await?;
    conn.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    conn.write_all(&framed).await?;
    let len = conn.read_u16().await? as usize;
    reply.clear();
    reply.resize(len, 0);
    conn.read_exact(reply).await?;
    let ok = wire::Header::read(reply)
        .is_some_and(|h| h.flags & flag::QR != 0 && reply[..2] == query[..2])
        && wire::same_question(query, reply, question_end);
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "upstream reply does not match the query",
        ))
    }
}
