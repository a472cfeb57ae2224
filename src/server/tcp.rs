//! TCP listener (RFC 7766): length-prefixed messages, several per connection, bounded in number
//! of connections and in idle time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::dns::answer::{self, Decision, Outcome, Transport};
use crate::dns::wire::{flag, rcode};
use crate::forward::tcp::TcpForwarder;
use crate::mapping::SharedMapping;
use crate::stats::WorkerStats;

/// Limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections served at once; a connection beyond it is closed at accept (RFC 7766 §6.2.2
    /// lets a server shed connections under load).
    pub max_connections: usize,
    /// A connection with no complete query for this long is closed (RFC 7766 §6.2.3).
    pub idle_timeout: Duration,
}

pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Everything a connection handler needs, shared by all connections.
pub struct TcpContext {
    pub mapping: SharedMapping,
    pub forwarder: TcpForwarder,
    pub stats: Arc<WorkerStats>,
    pub limits: TcpLimits,
    pub query_log: bool,
}

/// Accepts connections until `stop` turns true; returns the semaphore whose permits are held by
/// live connections, so the caller can wait for them to drain.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<TcpContext>,
    connections: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _peer)) = accepted else {
            // EMFILE and the like: back off briefly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = connection(stream, &ctx, stop).await;
            drop(permit);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    ctx: &TcpContext,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut query = Vec::with_capacity(512);
    let mut out = vec![0u8; 4096];
    let mut framed = Vec::with_capacity(512);
    let mut reply = Vec::new();
    loop {
        // Wait for the next length prefix, bounded by the idle timeout and by shutdown; then the
        // body, bounded by the same timeout so a slow sender cannot hold the slot forever.
        let len = tokio::select! {
            r = tokio::time::timeout(ctx.limits.idle_timeout, stream.read_u16()) => match r {
                Ok(Ok(len)) => len as usize,
                _ => return Ok(()),
            },
            _ = stop.changed() => return Ok(()),
        };
        query.clear();
        query.resize(len, 0);
        match tokio::time::timeout(ctx.limits.idle_timeout, stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut decision = {
            let snapshot = ctx.mapping.load();
            answer::decide(&query, &snapshot, Transport::Tcp, &mut out)
        };
        if let Decision::Reply { len, .. } = decision
            && len >= 4
            && u16::from_be_bytes([out[2], out[3]]) & flag::TC != 0
            && out.len() < u16::MAX as usize
        {
            // A local answer larger than the small buffer: redo it in a full-size one.
            out.resize(u16::MAX as usize, 0);
            let snapshot = ctx.mapping.load();
            decision = answer::decide(&query, &snapshot, Transport::Tcp, &mut out);
        }
        if ctx.query_log {
            let outcome = match decision {
                Decision::Reply { outcome, .. } => outcome.label(),
                Decision::Forward { .. } => "forwarding",
                Decision::Drop => "dropped",
            };
            if let Ok(peer) = stream.peer_addr() {
                crate::server::udp::log_query(&query, peer, outcome);
            }
        }
        let message: &[u8] = match decision {
            Decision::Reply { len, outcome } => {
                ctx.stats.count(outcome);
                &out[..len]
            }
            Decision::Forward { question_end } => {
                match ctx
                    .forwarder
                    .forward(&query, question_end, &mut reply, &ctx.stats)
                    .await
                {
                    Ok(()) => {
                        ctx.stats.count(Outcome::Forwarded);
                        &reply
                    }
                    Err(()) => {
                        ctx.stats.count(Outcome::ServFail);
                        match answer::error_reply(&query, rcode::SERVFAIL, &mut out) {
                            Some(len) => &out[..len],
                            None => return Ok(()),
                        }
                    }
                }
            }
            Decision::Drop => {
                // Over TCP the peer is connected: an unreadable message ends the connection
                // (RFC 7766 §8 expects the server to close on framing it cannot follow).
                ctx.stats.count(Outcome::Dropped);
                return Ok(());
            }
        };
        framed.clear();
        framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
        framed.extend_from_slice(message);
        stream.write_all(&framed).await?;
    }
}
