//! TCP listener (RFC 7766): length-prefixed messages, several per connection, answered
//! concurrently and out of order, bounded in connections, idle time and queries per connection.
//!
//! Each connection has a reader (this task) and a writer task joined by a bounded channel. Local
//! answers are decided inline; forwarded queries run as their own tasks (at most
//! [`PIPELINE_DEPTH`] per connection), so a slow upstream answer never holds up the local answers
//! queued behind it (RFC 7766 §6.2.1.1). When every connection slot is taken, the connection idle
//! for longest is closed to make room (RFC 7766 §6.2.3, §10): idle or slow-loris connections
//! cannot lock other clients out.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::alias::{AliasClient, Sink};
use crate::upstream::udp::UdpRelay;

use crate::config::Config;
use crate::dns::answer::{Outcome, Transport};
use crate::dns::query::Asked;
use crate::server::dispatch::{Buffers, Client, Handled, handle};
use crate::shared::Shared;
use crate::stats::{Proto, WorkerStats};
use crate::upstream::tcp::TcpForwarder;
use crate::upstream::{QueryError, failure_reply};

/// Forwarded queries in flight per connection; the reader waits when it is reached.
pub(crate) const PIPELINE_DEPTH: usize = 32;

/// Limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    /// A connection with no complete query for this long is closed (RFC 7766 §6.2.3).
    pub idle_timeout: Duration,
    /// Queries served on one connection before it is closed (after answering them all).
    pub max_queries: usize,
}

pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
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
pub(crate) struct TcpContext {
    pub shared: Arc<Shared>,
    pub forwarder: TcpForwarder,
    pub stats: Arc<WorkerStats>,
    pub limits: TcpLimits,
}

/// The live connections, to find the one idle longest when a slot is needed.
#[derive(Default)]
struct Connections {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<ConnState>>>,
}

struct ConnState {
    /// Milliseconds since `epoch` of the last complete query.
    last_active_ms: AtomicU64,
    /// Queries being answered right now: a busy connection is not idle.
    busy: AtomicUsize,
    close: Notify,
}

impl Connections {
    fn register(&self, now_ms: u64) -> (u64, Arc<ConnState>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            last_active_ms: AtomicU64::new(now_ms),
            busy: AtomicUsize::new(0),
            close: Notify::new(),
        });
        self.lock().insert(id, state.clone());
        (id, state)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the connection idle for longest to close; false when every one is busy.
    fn evict_idlest(&self) -> bool {
        let live = self.lock();
        let idlest = live
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.last_active_ms.load(Ordering::Relaxed));
        match idlest {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The TCP side of one listen address.
pub(crate) struct TcpHandle {
    pub addr: SocketAddr,
    /// Live connections hold permits: all of them free means drained.
    connections: Arc<Semaphore>,
    max: usize,
}

/// Serves TCP on `listener` (bound by the caller) until the data plane's stop.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    listener: std::net::TcpListener,
    config: &Config,
) -> io::Result<TcpHandle> {
    let addr = listener.local_addr()?;
    let listener = TcpListener::from_std(listener)?;
    let ctx = Arc::new(TcpContext {
        shared: shared.clone(),
        forwarder: TcpForwarder::new(
            shared.upstreams.clone(),
            config.upstream_timeout,
            shared.stale.clone(),
        ),
        stats: shared.stats.block(Proto::Tcp),
        limits: TcpLimits {
            idle_timeout: config.tcp_idle_timeout,
            max_queries: config.tcp_max_queries,
        },
    });
    let connections = Arc::new(Semaphore::new(config.tcp_max_connections));
    tokio::spawn(serve(
        listener,
        ctx,
        connections.clone(),
        shared.stop.subscribe(),
    ));
    tracing::info!("listening on tcp {addr}");
    Ok(TcpHandle {
        addr,
        connections,
        max: config.tcp_max_connections,
    })
}

impl TcpHandle {
    /// Waits until every connection has finished (they stop reading at the data plane's stop
    /// and answer what they have), or `deadline`. False if some were still open then.
    pub(crate) async fn shutdown(self, deadline: Instant) -> bool {
        tokio::time::timeout_at(
            deadline.into(),
            self.connections.acquire_many(self.max as u32),
        )
        .await
        .is_ok()
    }
}

/// Accepts connections until `stop` turns true. Live connections hold permits of
/// `connections`, so the caller can wait for them to drain.
async fn serve(
    listener: TcpListener,
    ctx: Arc<TcpContext>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Connections::default());
    let epoch = Instant::now();
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
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) if conns.evict_idlest() => {
                match tokio::time::timeout(
                    Duration::from_millis(100),
                    slots.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    _ => continue, // dropping `stream` closes it
                }
            }
            Err(_) => continue,
        };
        let (ctx, stop, conns) = (ctx.clone(), stop.clone(), conns.clone());
        tokio::spawn(async move {
            let (id, state) = conns.register(epoch.elapsed().as_millis() as u64);
            let _ = connection(stream, &ctx, stop, &state, epoch).await;
            conns.remove(id);
            drop(permit);
        });
    }
}

async fn connection(
    stream: TcpStream,
    ctx: &Arc<TcpContext>,
    mut stop: watch::Receiver<bool>,
    state: &Arc<ConnState>,
    epoch: Instant,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(PIPELINE_DEPTH);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let pipeline = Arc::new(Semaphore::new(PIPELINE_DEPTH));
    let mut buffers = Buffers::new(Transport::Tcp);
    for _ in 0..ctx.limits.max_queries {
        let mut query = tokio::select! {
            q = read_message(&mut rd, ctx.limits.idle_timeout) => match q {
                Some(q) => q,
                None => break,
            },
            _ = stop.changed() => break,
            _ = state.close.notified() => break,
        };
        state
            .last_active_ms
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let mut client = TcpClient::default();
        let handled = handle(
            &ctx.shared,
            &ctx.stats,
            &mut query,
            peer,
            Transport::Tcp,
            &mut buffers,
            &mut client,
        );
        if let Some(frame) = client.reply
            && tx.send(frame).await.is_err()
        {
            break;
        }
        if let Some(pending) = client.pending {
            // The reader waits here only when PIPELINE_DEPTH answers are in flight.
            let Ok(permit) = pipeline.clone().acquire_owned().await else {
                break;
            };
            spawn_forward(
                ctx.clone(),
                query,
                pending,
                tx.clone(),
                state.clone(),
                permit,
            );
        }
        if handled == Handled::Dropped {
            // Over TCP the peer is connected: an unreadable message ends the connection (we
            // cannot trust the framing after it).
            break;
        }
    }
    // Let the forwards in flight finish and their answers be written, then close.
    drop(tx);
    let _ = pipeline.acquire_many(PIPELINE_DEPTH as u32).await;
    let _ = writer.await;
    Ok(())
}

/// Reads one length-prefixed message; `None` on EOF, error or idle timeout. The body is bounded
/// by the same timeout, so a slow sender cannot hold the slot forever.
async fn read_message(rd: &mut OwnedReadHalf, idle: Duration) -> Option<Vec<u8>> {
    let len = match tokio::time::timeout(idle, rd.read_u16()).await {
        Ok(Ok(len)) => len as usize,
        _ => return None,
    };
    let mut query = vec![0u8; len];
    match tokio::time::timeout(idle, rd.read_exact(&mut query)).await {
        Ok(Ok(_)) => Some(query),
        _ => None,
    }
}

/// A TCP client as [`handle`] sees it. A reply is framed for the writer task. A forward or an
/// alias lookup needs a pipeline slot, and waiting for one is async (back-pressure on the
/// reader), so it is noted here and started by the connection loop, which owns the message and
/// moves it into the task (no copy).
#[derive(Default)]
struct TcpClient {
    reply: Option<Vec<u8>>,
    pending: Option<Pending>,
}

/// A query to answer off the reader.
enum Pending {
    Forward(Asked),
    /// An alias answer waiting for its target's lookup: it arrives here, built and counted.
    Alias(oneshot::Receiver<(Vec<u8>, Outcome)>),
}

impl Client for TcpClient {
    fn reply(&mut self, reply: &[u8]) {
        self.reply = Some(frame(reply));
    }

    fn forward(&mut self, _msg: &mut [u8], asked: &Asked, _lower: &[u8]) -> Result<(), QueryError> {
        self.pending = Some(Pending::Forward(*asked));
        Ok(())
    }
}

impl AliasClient for TcpClient {
    fn sink(&mut self) -> Sink {
        let (tx, rx) = oneshot::channel();
        self.pending = Some(Pending::Alias(rx));
        Sink::Tcp(tx)
    }

    /// Any relay: the resolver picks the first (TCP connections belong to no worker).
    fn relay(&self) -> Option<&Arc<UdpRelay>> {
        None
    }
}

/// Answers a query off the reader: forwarded upstream or resolved as an alias.
fn spawn_forward(
    ctx: Arc<TcpContext>,
    query: Vec<u8>,
    pending: Pending,
    tx: mpsc::Sender<Vec<u8>>,
    state: Arc<ConnState>,
    permit: OwnedSemaphorePermit,
) {
    state.busy.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let (reply, outcome) = match pending {
            // The resolver always answers a waiter (at the latest SERVFAIL at the end of the
            // lookup's budget); a dropped sender (shutdown) sends nothing.
            Pending::Alias(rx) => rx.await.unwrap_or((Vec::new(), Outcome::Dropped)),
            Pending::Forward(asked) => {
                let mut reply = Vec::new();
                let outcome = match ctx
                    .forwarder
                    .forward(&query, &asked, &mut reply, &ctx.stats)
                    .await
                {
                    Ok(()) => Outcome::Forwarded,
                    Err(e) => {
                        let stale = ctx.shared.stale.as_deref();
                        failure_reply(&query, &asked, e, stale, Transport::Tcp, &mut reply)
                    }
                };
                (reply, outcome)
            }
        };
        ctx.stats.count(outcome);
        if !reply.is_empty() {
            let _ = tx.send(frame(&reply)).await;
        }
        state.busy.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    });
}

/// A message with its two-octet length prefix (RFC 1035 §4.2.2).
fn frame(message: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(message.len() + 2);
    f.extend_from_slice(&(message.len() as u16).to_be_bytes());
    f.extend_from_slice(message);
    f
}
