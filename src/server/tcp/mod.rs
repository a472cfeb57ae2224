//! TCP listener (RFC 7766): length-prefixed messages, several per connection, answered
//! concurrently and out of order, bounded in connections, time and memory.
//!
//! Each connection has a reader (its task) and a writer task joined by a bounded channel. Local
//! answers are decided inline; forwarded queries run as their own tasks (at most
//! [`PIPELINE_DEPTH`] per connection), so a slow upstream answer never holds up the local answers
//! queued behind it (RFC 7766 §6.2.1.1).
//!
//! No client can lock the others out (RFC 7766 §10 asks servers to guard against exactly this
//! resource use):
//! - **Time.** A connection with no complete query for `--tcp-idle-timeout` is closed (RFC 7766
//!   §6.2.3). A peer that does not take a reply within `--tcp-write-timeout`, or stops in the
//!   middle of sending a message for as long, is cut off (with a reset, so the kernel drops what
//!   it still holds for it). Every wait of every task (the reader's, the writer's, each forward's)
//!   also ends at once when its connection is closed: nothing blocks forever on a full socket.
//! - **Slots.** When all `--tcp-max-connections` slots are taken, the connection that has made
//!   no progress (no message read whole, no reply written whole) for longest is closed at once and
//!   its slot given to the new client. A writer stuck on a peer that does not read makes no
//!   progress: it is idle, not busy.
//! - **Memory.** Every byte of every message the TCP side holds (queries read, replies queued,
//!   forwards in flight with room for their reply) is charged to one budget of `--tcp-memory`
//!   bytes per listen address before it is allocated or a task is spawned (see [`Charge`]).
//!   Outside it: a few KiB of state per connection, the kernel's socket buffers
//!   ([`SOCKET_BUFFER`]), and per connection at most one local or alias answer between being
//!   built and being charged. Each connection has a
//!   small allowance of its own ([`budget::ALLOWANCE`]: ordinary queries and local answers never wait on
//!   anyone), the rest is a shared pool of which one connection may hold at most an eighth.
//!   A connection over that share waits for its own bytes to drain (it is slowed, nobody else);
//!   when the pool is short, the lightest waiter is served first, and a light connection that
//!   still waits ([`budget::RECLAIM_AFTER`]) has the pool holder with no progress for longest closed.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, TryAcquireError, mpsc, watch};
use tracing::debug;

use crate::config::Config;
use crate::dns::outcome::Transport;
use crate::server::dispatch::{Buffers, Handled, handle};
use crate::shared::Shared;
use crate::stats::{Proto, WorkerStats};
use crate::upstream::tcp::TcpForwarder;

/// Forwarded queries in flight per connection; the reader waits when it is reached.
pub(crate) const PIPELINE_DEPTH: usize = 32;

/// The largest frame: a 65,535-octet message and its two-octet length (RFC 1035 §4.2.2).
const MAX_FRAME: usize = 2 + u16::MAX as usize;

/// Kernel socket buffers of every accepted connection (set on the listener, inherited; Linux
/// doubles the value for its bookkeeping). Fixed, so autotuning cannot grow them to megabytes
/// for a peer that does not read (send side) or while the budget holds the reader back (receive
/// side): at most about 64 KiB of kernel memory per connection, which cgroup v2 charges to the
/// container like the heap. A client in the pod is a loopback hop away: 16 KiB windows cost it
/// nothing, and a 64 KiB message still flows through them.
const SOCKET_BUFFER: usize = 16 << 10;

/// The reply buffers are made anew after an answer larger than this (they grow to 64 KiB for
/// one large answer; the next ordinary one must not keep them that size).
const SMALL_BUFFERS: usize = 4096;

/// Limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    /// A connection with no complete query for this long is closed (RFC 7766 §6.2.3).
    pub idle_timeout: Duration,
    /// A peer that takes no reply (or sends no rest of a started message) for this long is
    /// cut off.
    pub write_timeout: Duration,
    /// Queries served on one connection before it is closed (after answering them all).
    pub max_queries: usize,
}

pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_recv_buffer_size(SOCKET_BUFFER)?;
    s.set_send_buffer_size(SOCKET_BUFFER)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Everything a connection handler needs, shared by all connections of one listen address.
struct Listener {
    shared: Arc<Shared>,
    forwarder: TcpForwarder,
    stats: Arc<WorkerStats>,
    limits: TcpLimits,
    /// Progress stamps are milliseconds since this.
    epoch: Instant,
    next_id: AtomicU64,
    /// The live connections, to find the one to close when a slot or memory is needed.
    live: Mutex<HashMap<u64, Arc<Conn>>>,
    /// The shared part of the memory budget.
    pool: Mutex<Pool>,
    /// Pool bytes one connection may hold at once.
    conn_cap: usize,
}

/// The TCP side of one listen address.
pub(crate) struct TcpHandle {
    pub addr: SocketAddr,
    /// Live connections hold permits: all of them free means drained.
    connections: Arc<Semaphore>,
    max: usize,
}

impl Listener {
    /// The listener's state: its share of the memory budget, limits, counters and forwarder.
    pub(super) fn new(shared: &Arc<Shared>, config: &Config) -> Arc<Listener> {
        let (pool, conn_cap) = budget(config.tcp_memory, config.tcp_max_connections);
        Arc::new(Listener {
            shared: shared.clone(),
            forwarder: TcpForwarder::new(shared.upstreams.clone(), config.upstream_timeout),
            stats: shared.stats.block(Proto::Tcp),
            limits: TcpLimits {
                idle_timeout: config.tcp_idle_timeout,
                write_timeout: config.tcp_write_timeout,
                max_queries: config.tcp_max_queries,
            },
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            pool: Mutex::new(Pool {
                free: pool,
                seq: 0,
                waiters: Vec::new(),
            }),
            conn_cap,
        })
    }
}

/// Serves TCP on `listener` (bound by the caller) until the data plane's stop.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    listener: std::net::TcpListener,
    config: &Config,
) -> io::Result<TcpHandle> {
    let addr = listener.local_addr()?;
    let listener = TcpListener::from_std(listener)?;
    let state = Listener::new(shared, config);
    let connections = Arc::new(Semaphore::new(config.tcp_max_connections));
    // The accept loop ends at the stop; its connections are drained through their permits.
    shared.tasks.spawn(serve(
        listener,
        state,
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

/// Accepts connections until `stop` turns true. Live connections hold permits of `slots`, so the
/// caller can wait for them to drain.
async fn serve(
    listener: TcpListener,
    state: Arc<Listener>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            // EMFILE and the like: back off briefly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Not an open resolver (server::allow): a stranger's connection is closed at once.
        if state.shared.allow.verdict(peer.ip()) == crate::server::allow::Verdict::Refused {
            continue;
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            // All taken: the connection idle longest makes room (RFC 7766 §10).
            Err(TryAcquireError::NoPermits) => match state.evict() {
                Some(p) => p,
                None => continue, // dropping `stream` closes it
            },
            Err(TryAcquireError::Closed) => return,
        };
        let conn = state.register(slot);
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            connection(stream, &state, stop, &conn).await;
            state.lock_live().remove(&conn.id);
            // Anything of it still running (a forward, the writer) stops now.
            conn.close();
            // Its task, buffers and queued replies are freed between longer-lived allocations:
            // the prober trims the heap (a flood of 256 non-reading clients otherwise left
            // 2.8 MiB of heap resident for good; benches/security).
            crate::sys::ask_trim();
        });
    }
}

/// A reply on its way to the writer, with the bytes charged for it.
struct Frame {
    head: [u8; 2],
    body: Vec<u8>,
    _charge: Charge,
}

impl Frame {
    fn new(body: Vec<u8>, charge: Charge) -> Frame {
        Frame {
            head: (body.len() as u16).to_be_bytes(),
            body,
            _charge: charge,
        }
    }
}

/// Why the reader stopped.
#[derive(PartialEq, Eq)]
enum End {
    /// EOF, idle timeout, max queries, an unreadable message, the data plane's stop: what was
    /// read is still answered.
    Graceful,
    /// Closed from outside (evicted, memory reclaimed) or by the writer's timeout.
    Closed,
}

async fn connection(
    stream: TcpStream,
    l: &Arc<Listener>,
    mut stop: watch::Receiver<bool>,
    conn: &Arc<Conn>,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Frame>(PIPELINE_DEPTH);
    let mut writer = tokio::spawn(write_frames(wr, rx, conn.clone(), l.clone()));
    let pipeline = Arc::new(Semaphore::new(PIPELINE_DEPTH));
    let end = read_queries(&mut rd, l, &mut stop, conn, &tx, &pipeline, peer).await;
    drop(tx);
    if end == End::Graceful {
        // Let the forwards in flight finish and their answers be written, then close. Bounded:
        // each forward by the upstream budget, each write by the write timeout.
        tokio::select! {
            _ = async {
                let _ = pipeline.acquire_many(PIPELINE_DEPTH as u32).await;
                let _ = (&mut writer).await;
            } => {}
            _ = conn.closed() => {}
        }
    }
    if conn.is_closed() {
        // Cut off: reset rather than FIN, so the kernel drops what it still holds for a peer
        // that is not reading instead of keeping it for retransmission (RFC 793 §3.5 abort).
        let _ = SockRef::from(rd.as_ref()).set_linger(Some(Duration::ZERO));
        writer.abort();
    }
}

/// Reads and handles queries until the connection ends; says how it ended.
async fn read_queries(
    rd: &mut OwnedReadHalf,
    l: &Arc<Listener>,
    stop: &mut watch::Receiver<bool>,
    conn: &Arc<Conn>,
    tx: &mpsc::Sender<Frame>,
    pipeline: &Arc<Semaphore>,
    peer: SocketAddr,
) -> End {
    let limits = l.limits;
    let mut buffers = Buffers::new(Transport::Tcp);
    for _ in 0..limits.max_queries {
        // The length first, within the idle timeout (RFC 7766 §6.2.3).
        let len = tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, rd.read_u16()) => match r {
                Ok(Ok(len)) => usize::from(len),
                _ => return End::Graceful,
            },
            _ = stop.changed() => return End::Graceful,
            _ = conn.closed() => return End::Closed,
        };
        // Then the memory for the body, before it is allocated: a connection over its share
        // stops reading here until its own replies drain.
        let charge = tokio::select! {
            c = l.charge(conn, len) => match c {
                Some(c) => c,
                None => return End::Closed,
            },
            _ = stop.changed() => return End::Graceful,
            _ = conn.closed() => return End::Closed,
        };
        let mut query = vec![0u8; len];
        // A started message must be finished like a reply must be taken: within the write
        // timeout, so a slow body cannot hold its memory for the whole idle timeout.
        tokio::select! {
            r = tokio::time::timeout(limits.write_timeout, rd.read_exact(&mut query)) => {
                if !matches!(r, Ok(Ok(_))) {
                    return End::Graceful;
                }
            }
            _ = conn.closed() => return End::Closed,
        }
        conn.progress(l.epoch);
        let mut client = TcpClient::default();
        let handled = handle(
            &l.shared,
            &l.stats,
            &mut query,
            peer,
            Transport::Tcp,
            &mut buffers,
            &mut client,
        );
        if let Some(reply) = client.reply {
            if reply.len() > SMALL_BUFFERS {
                buffers = Buffers::new(Transport::Tcp);
            }
            drop(query);
            let Some(charge) = recharge(l, conn, charge, reply.len() + 2).await else {
                return End::Closed;
            };
            let sent = tokio::select! {
                r = tx.send(Frame::new(reply, charge)) => r.is_ok(),
                _ = conn.closed() => false,
            };
            if !sent {
                return End::Closed;
            }
        } else if let Some(pending) = client.pending {
            // The reader waits here when PIPELINE_DEPTH answers are in flight, and for the
            // memory of this one: the forwarder's copies of the query and a reply of any size.
            let permit = tokio::select! {
                p = pipeline.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return End::Closed,
                },
                _ = conn.closed() => return End::Closed,
            };
            let (query, need) = match pending {
                Pending::Forward(_) => {
                    let need = query.len() * (1 + FORWARD_COPIES) + MAX_FRAME;
                    (query, need)
                }
                // The resolver took what it needs of the query: room for the answer only.
                Pending::Alias(_) => (Vec::new(), MAX_FRAME),
            };
            let Some(charge) = recharge(l, conn, charge, need).await else {
                return End::Closed;
            };
            spawn_forward(
                l.clone(),
                conn.clone(),
                query,
                pending,
                charge,
                tx.clone(),
                permit,
            );
        }
        if handled == Handled::Dropped {
            // Over TCP the peer is connected: an unreadable message ends the connection (we
            // cannot trust the framing after it).
            return End::Graceful;
        }
    }
    End::Graceful
}

/// `charge` made exactly `bytes`: shrunk, or grown by a further charge (which may wait). `None`
/// when the connection was closed meanwhile.
async fn recharge(
    l: &Arc<Listener>,
    conn: &Arc<Conn>,
    mut charge: Charge,
    bytes: usize,
) -> Option<Charge> {
    if bytes <= charge.bytes() {
        charge.shrink(bytes);
        return Some(charge);
    }
    let more = tokio::select! {
        c = l.charge(conn, bytes - charge.bytes()) => c?,
        _ = conn.closed() => return None,
    };
    charge.absorb(more);
    Some(charge)
}

/// The writer task: frames to the socket in order, each within the write timeout. A peer that
/// does not take a reply in time is cut off (RFC 7766 §10): the whole connection is closed,
/// which also ends every send waiting for this writer.
async fn write_frames(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Frame>,
    conn: Arc<Conn>,
    l: Arc<Listener>,
) {
    loop {
        let frame = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => return,
            },
            _ = conn.closed() => return,
        };
        let written = tokio::select! {
            r = tokio::time::timeout(l.limits.write_timeout, write_frame(&mut wr, &frame)) => {
                matches!(r, Ok(Ok(())))
            }
            _ = conn.closed() => return,
        };
        if !written {
            debug!("tcp: peer not taking replies, connection closed");
            conn.close();
            return;
        }
        conn.progress(l.epoch);
    }
}

/// Writes the length and the message without first copying them together.
async fn write_frame(wr: &mut OwnedWriteHalf, frame: &Frame) -> io::Result<()> {
    let total = 2 + frame.body.len();
    let mut done = 0;
    while done < total {
        let n = if done < 2 {
            let parts = [IoSlice::new(&frame.head[done..]), IoSlice::new(&frame.body)];
            wr.write_vectored(&parts).await?
        } else {
            wr.write(&frame.body[done - 2..]).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

mod budget;
use budget::{Charge, Conn, FORWARD_COPIES, Pool, budget};
mod forward;
use forward::{Pending, TcpClient, spawn_forward};
