//! Forwarding over TCP: a TCP client's query goes upstream over TCP (RFC 7766 §6.2.1 leaves the
//! transport to us; TCP keeps a large answer whole, which is why the client used it).
//!
//! One connection per query keeps this simple and isolates clients from each other; TCP is the
//! rare path (truncated answers, zone-sized replies), the volume is on UDP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::dns::wire::{self, flag};
use crate::stats::WorkerStats;

pub struct TcpForwarder {
    upstreams: Vec<SocketAddr>,
    attempt_timeout: Duration,
}

impl TcpForwarder {
    pub fn new(upstreams: &[SocketAddr], timeout: Duration) -> TcpForwarder {
        TcpForwarder {
            upstreams: upstreams.to_vec(),
            attempt_timeout: timeout / upstreams.len().max(1) as u32,
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
        for upstream in &self.upstreams {
            let id: u16 = rand::random();
            sent[..2].copy_from_slice(&id.to_be_bytes());
            match tokio::time::timeout(
                self.attempt_timeout,
                exchange(*upstream, &sent, question_end, reply),
            )
            .await
            {
                Ok(Ok(())) => {
                    reply[..2].copy_from_slice(&client_id);
                    return Ok(());
                }
                Ok(Err(_)) => stats.upstream_error(),
                Err(_) => stats.upstream_timeout(),
            }
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
