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
//!   small allowance of its own ([`ALLOWANCE`]: ordinary queries and local answers never wait on
//!   anyone), the rest is a shared pool of which one connection may hold at most an eighth.
//!   A connection over that share waits for its own bytes to drain (it is slowed, nobody else);
//!   when the pool is short, the lightest waiter is served first, and a light connection that
//!   still waits ([`RECLAIM_AFTER`]) has the pool holder with no progress for longest closed.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot, watch};
use tracing::debug;

use crate::alias::{AliasClient, Sink};
use crate::config::Config;
use crate::dns::outcome::{Outcome, Transport};
use crate::dns::query::Asked;
use crate::server::dispatch::{Buffers, Client, Handled, handle};
use crate::shared::Shared;
use crate::stats::{Proto, WorkerStats};
use crate::upstream::QueryError;
use crate::upstream::finish::Finish;
use crate::upstream::tcp::TcpForwarder;
use crate::upstream::udp::UdpRelay;

/// Forwarded queries in flight per connection; the reader waits when it is reached.
pub(crate) const PIPELINE_DEPTH: usize = 32;

/// The largest frame: a 65,535-octet message and its two-octet length (RFC 1035 §4.2.2).
const MAX_FRAME: usize = 2 + u16::MAX as usize;

/// Bytes each connection may hold from an allowance of its own, outside the shared pool: an
/// ordinary query and its local answer, a few pipelined ones. Reserved in the budget for every
/// connection slot, so a client that asks ordinary questions never waits for memory.
const ALLOWANCE: usize = 4096;

/// Copies of a forwarded query the upstream forwarder may hold at once besides ours: one per
/// attempt open in parallel (`MAX_OPEN` in `upstream/tcp.rs`). Charged so that the budget holds
/// with today's forwarder; see the module doc of `upstream::tcp`.
const FORWARD_COPIES: usize = 3;

/// A connection holding at most this much (one large message each way) is light: when it has to
/// wait for the shared pool, it may have a stalled holder closed. Heavier ones just wait.
const LIGHT: usize = 2 * MAX_FRAME;

/// How long a light connection waits for the shared pool before a holder is closed for it.
const RECLAIM_AFTER: Duration = Duration::from_millis(100);

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

/// One connection as the others see it.
struct Conn {
    id: u64,
    /// Milliseconds since the listener's epoch of the last message read whole or reply written
    /// whole (or of the accept).
    progress_ms: AtomicU64,
    /// Bytes charged to this connection from its own allowance.
    private: AtomicUsize,
    /// Bytes charged to this connection from the shared pool (changed under the pool's lock).
    pooled: AtomicUsize,
    closed: AtomicBool,
    close: Notify,
    /// Its connection slot: taken over by the acceptor when this connection is evicted.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Conn {
    fn held(&self) -> usize {
        self.private.load(Ordering::Relaxed) + self.pooled.load(Ordering::Relaxed)
    }

    fn pooled(&self) -> usize {
        self.pooled.load(Ordering::Relaxed)
    }

    fn progress_ms(&self) -> u64 {
        self.progress_ms.load(Ordering::Relaxed)
    }

    fn progress(&self, epoch: Instant) {
        self.progress_ms
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Ends the connection: every task of it stops waiting, drops what it holds and returns.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close.notify_waiters();
    }

    /// Completes when [`Conn::close`] has been called (at once if it already was).
    async fn closed(&self) {
        loop {
            let notified = self.close.notified();
            tokio::pin!(notified);
            // Registered before the flag is read: a close in between is not missed.
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    fn take_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The shared pool of the memory budget: free bytes and the connections waiting for some.
struct Pool {
    free: usize,
    seq: u64,
    waiters: Vec<Waiter>,
}

struct Waiter {
    seq: u64,
    conn: Arc<Conn>,
    want: usize,
    grant: oneshot::Sender<Charge>,
}

/// Bytes charged to a connection: given back when dropped (with the message they pay for).
struct Charge {
    listener: Arc<Listener>,
    conn: Arc<Conn>,
    private: usize,
    pooled: usize,
}

impl Charge {
    fn bytes(&self) -> usize {
        self.private + self.pooled
    }

    /// Gives back all but `to` bytes (pool bytes first: others may be waiting for them).
    fn shrink(&mut self, to: usize) {
        let mut excess = self.bytes().saturating_sub(to);
        let pooled = excess.min(self.pooled);
        if pooled > 0 {
            self.pooled -= pooled;
            excess -= pooled;
            self.listener.release(&self.conn, pooled);
        }
        if excess > 0 {
            self.private -= excess;
            self.conn.private.fetch_sub(excess, Ordering::Relaxed);
        }
    }

    /// Takes over `other`'s bytes (both charged to the same connection).
    fn absorb(&mut self, mut other: Charge) {
        self.private += std::mem::take(&mut other.private);
        self.pooled += std::mem::take(&mut other.pooled);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.private > 0 {
            self.conn.private.fetch_sub(self.private, Ordering::Relaxed);
        }
        if self.pooled > 0 {
            self.listener.release(&self.conn, self.pooled);
        }
    }
}

type Grants = Vec<(oneshot::Sender<Charge>, Charge)>;

/// Hands out what [`Listener::grant`] decided, outside the pool's lock: a charge whose waiter
/// has gone is dropped here, which gives its bytes back (and takes the lock again).
fn send_grants(grants: Grants) {
    for (to, charge) in grants {
        let _ = to.send(charge);
    }
}

impl Listener {
    fn lock_pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_live(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charges `bytes` to `conn` before they are allocated: from its own allowance if they fit,
    /// else from the shared pool, waiting for them if need be. `None` only if the grant was
    /// lost (the connection is then ended by its caller).
    async fn charge(self: &Arc<Self>, conn: &Arc<Conn>, bytes: usize) -> Option<Charge> {
        let own = conn
            .private
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                (p + bytes <= ALLOWANCE).then_some(p + bytes)
            });
        if own.is_ok() {
            return Some(Charge {
                listener: self.clone(),
                conn: conn.clone(),
                private: bytes,
                pooled: 0,
            });
        }
        let (grants, mut rx) = {
            let mut pool = self.lock_pool();
            if pool.waiters.is_empty()
                && bytes <= pool.free
                && conn.pooled() + bytes <= self.conn_cap
            {
                pool.free -= bytes;
                conn.pooled.fetch_add(bytes, Ordering::Relaxed);
                return Some(Charge {
                    listener: self.clone(),
                    conn: conn.clone(),
                    private: 0,
                    pooled: bytes,
                });
            }
            let (tx, rx) = oneshot::channel();
            pool.seq += 1;
            let seq = pool.seq;
            pool.waiters.push(Waiter {
                seq,
                conn: conn.clone(),
                want: bytes,
                grant: tx,
            });
            (self.grant(&mut pool), rx)
        };
        send_grants(grants);
        loop {
            tokio::select! {
                granted = &mut rx => return granted.ok(),
                _ = tokio::time::sleep(RECLAIM_AFTER) => self.reclaim(conn, bytes),
            }
        }
    }

    /// Gives `bytes` of `conn` back to the pool and serves the waiters they let through.
    fn release(self: &Arc<Self>, conn: &Conn, bytes: usize) {
        let grants = {
            let mut pool = self.lock_pool();
            pool.free += bytes;
            conn.pooled.fetch_sub(bytes, Ordering::Relaxed);
            self.grant(&mut pool)
        };
        send_grants(grants);
    }

    /// Serves waiters while the pool has room: the one whose connection holds least first (a
    /// newcomer or an ordinary client before one that has much already), then the oldest. One
    /// blocked by its own share waits for its own bytes to come back and is passed over; one
    /// blocked by the pool stops the round, so a large request is not starved by small ones.
    fn grant(self: &Arc<Self>, pool: &mut Pool) -> Grants {
        pool.waiters.retain(|w| !w.grant.is_closed());
        let mut grants = Vec::new();
        loop {
            let next = pool
                .waiters
                .iter()
                .enumerate()
                .filter(|(_, w)| w.conn.pooled() + w.want <= self.conn_cap)
                .min_by_key(|(_, w)| (w.conn.held(), w.seq))
                .map(|(i, w)| (i, w.want));
            let Some((i, want)) = next else { break };
            if want > pool.free {
                break;
            }
            let w = pool.waiters.swap_remove(i);
            pool.free -= want;
            w.conn.pooled.fetch_add(want, Ordering::Relaxed);
            let charge = Charge {
                listener: self.clone(),
                conn: w.conn,
                private: 0,
                pooled: want,
            };
            grants.push((w.grant, charge));
        }
        grants
    }

    /// The pool could not serve light connection `asker` in time: closes the connection holding
    /// pool bytes that has made no progress for longest (a non-reader, a slow sender, a hog at its
    /// share), whose bytes come back as its tasks end. A heavy asker only waits.
    fn reclaim(&self, asker: &Conn, want: usize) {
        if asker.held() + want > LIGHT {
            return;
        }
        let live = self.lock_live();
        let victim = live
            .values()
            .filter(|c| c.id != asker.id && !c.is_closed() && c.pooled() > 0)
            .min_by_key(|c| c.progress_ms());
        if let Some(v) = victim {
            debug!(
                held = v.held(),
                "tcp: closing a stalled connection to free memory"
            );
            v.close();
        }
    }

    fn register(&self, slot: OwnedSemaphorePermit) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            progress_ms: AtomicU64::new(0),
            private: AtomicUsize::new(0),
            pooled: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            close: Notify::new(),
            slot: Mutex::new(Some(slot)),
        });
        conn.progress(self.epoch);
        self.lock_live().insert(id, conn.clone());
        conn
    }

    /// Every slot is taken: closes the connection that has made no progress for longest (one
    /// already closing first: it is going anyway) and hands its slot over. It is removed from the
    /// live set at once, so the next eviction picks another one.
    fn evict(&self) -> Option<OwnedSemaphorePermit> {
        let mut live = self.lock_live();
        loop {
            let victim = live
                .values()
                .min_by_key(|c| (!c.is_closed(), c.progress_ms()))
                .cloned()?;
            live.remove(&victim.id);
            victim.close();
            if let Some(slot) = victim.take_slot() {
                debug!("tcp: all connection slots taken, closed the one idle longest");
                return Some(slot);
            }
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
    let (pool, conn_cap) = budget(config.tcp_memory, config.tcp_max_connections);
    let state = Arc::new(Listener {
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
    });
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

/// The shared pool and one connection's share of it, from `--tcp-memory` (the bound on all
/// message bytes of one listen address) and the connection slots: every slot's [`ALLOWANCE`]
/// comes off the top, a connection may hold an eighth of the pool, and never so little that
/// the largest query could not be forwarded (the query, the forwarder's copies, a full reply).
fn budget(memory: usize, max_connections: usize) -> (usize, usize) {
    let min_share = (1 + FORWARD_COPIES) * MAX_FRAME + MAX_FRAME;
    let pool = memory
        .saturating_sub(max_connections.saturating_mul(ALLOWANCE))
        .max(min_share);
    (pool, (pool / 8).max(min_share))
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

/// A TCP client as [`handle`] sees it. A reply is kept for the writer task. A forward, or an
/// alias answer that waits for a lookup, needs a pipeline slot and memory, and waiting for them
/// is async (back-pressure on the reader), so it is noted here and started by the connection
/// loop, which owns the message and moves it into the task (no copy).
#[derive(Default)]
struct TcpClient {
    reply: Option<Vec<u8>>,
    pending: Option<Pending>,
}

/// A query to answer off the reader.
enum Pending {
    Forward(Asked),
    /// An alias answer waiting for its target's lookup: it arrives here, built (counted by the
    /// task that writes it).
    Alias(oneshot::Receiver<(Vec<u8>, Outcome)>),
}

impl Client for TcpClient {
    fn reply(&mut self, reply: &[u8]) {
        self.reply = Some(reply.to_vec());
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

/// Answers a query off the reader: forwarded upstream or resolved as an alias. Everything it
/// will hold is charged already; it ends (dropping its upstream attempts) when the connection is
/// closed.
fn spawn_forward(
    l: Arc<Listener>,
    conn: Arc<Conn>,
    query: Vec<u8>,
    pending: Pending,
    mut charge: Charge,
    tx: mpsc::Sender<Frame>,
    permit: OwnedSemaphorePermit,
) {
    tokio::spawn(async move {
        let answer = async {
            match pending {
                // The resolver always answers a waiter (at the latest SERVFAIL at the end of the
                // lookup's budget); a dropped sender (shutdown) sends nothing.
                Pending::Alias(rx) => {
                    let (reply, outcome) = rx.await.unwrap_or((Vec::new(), Outcome::Dropped));
                    l.stats.count(outcome);
                    reply
                }
                Pending::Forward(asked) => {
                    let mut reply = Vec::new();
                    let started = Instant::now();
                    let sent = l.forwarder.forward(&query, &asked, &mut reply, &l.stats);
                    let finish = Finish {
                        stats: &l.stats,
                        stale: l.shared.stale.as_deref(),
                        transport: Transport::Tcp,
                    };
                    match sent.await {
                        Ok(()) => {
                            finish.answered(&query, &asked, &mut reply, started, Instant::now())
                        }
                        Err(e) => finish.failed(&query, &asked, e, &mut reply),
                    };
                    reply
                }
            }
        };
        // Counted as it is finished, inside `answer`: a query whose connection closed first is
        // not counted (nobody gets its reply).
        let reply = tokio::select! {
            r = answer => r,
            _ = conn.closed() => return,
        };
        drop(query);
        if reply.is_empty() {
            return;
        }
        // A reply is at most 65,535 octets: the charge covered it; the rest goes back now.
        charge.shrink(reply.len() + 2);
        tokio::select! {
            _ = tx.send(Frame::new(reply, charge)) => {}
            _ = conn.closed() => {}
        }
        drop(permit);
    });
}

/// The budget's rules, on a listener with no sockets: the allowance, the share, who is served
/// first, and that every byte comes back.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MappingSource;

    fn listener(memory: usize, max_connections: usize) -> Arc<Listener> {
        let mut config = Config::new(
            MappingSource::Embedded,
            vec![SocketAddr::from(([127, 0, 0, 1], 53))],
        );
        config.tcp_memory = memory;
        config.tcp_max_connections = max_connections;
        let mapping = Arc::new(arc_swap::ArcSwap::from_pointee(
            crate::load_mapping(&MappingSource::Embedded, 5).expect("mapping"),
        ));
        let shared = Shared::new(mapping, &config);
        let (pool, conn_cap) = budget(config.tcp_memory, config.tcp_max_connections);
        Arc::new(Listener {
            forwarder: TcpForwarder::new(shared.upstreams.clone(), config.upstream_timeout),
            stats: shared.stats.block(Proto::Tcp),
            shared,
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

    fn conn(l: &Listener) -> Arc<Conn> {
        l.register(Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap())
    }

    fn free(l: &Listener) -> usize {
        l.lock_pool().free
    }

    #[test]
    fn the_budget_keeps_the_allowances_and_room_for_the_largest_query() {
        // 16 MiB, 256 slots: 1 MiB of allowances, 15 MiB shared, 1.875 MiB per connection.
        assert_eq!(budget(16 << 20, 256), (15 << 20, (15 << 20) / 8));
        let (pool, share) = budget(0, 256);
        assert_eq!(pool, share, "never below one largest forward");
        assert!(share >= 5 * MAX_FRAME);
    }

    #[tokio::test]
    async fn small_charges_use_the_allowance_large_ones_the_pool_and_all_come_back() {
        let l = listener(4 << 20, 4);
        let c = conn(&l);
        let before = free(&l);
        let small = l.charge(&c, 100).await.unwrap();
        assert_eq!((small.private, small.pooled), (100, 0));
        assert_eq!(free(&l), before, "the pool is not touched");
        let mut big = l.charge(&c, 60_000).await.unwrap();
        assert_eq!((big.private, big.pooled), (0, 60_000));
        assert_eq!(free(&l), before - 60_000);
        assert_eq!(c.held(), 60_100);
        big.shrink(1_000);
        assert_eq!(free(&l), before - 1_000);
        drop(big);
        drop(small);
        assert_eq!((free(&l), c.held()), (before, 0), "every byte given back");
    }

    #[tokio::test]
    async fn a_connection_over_its_share_waits_for_its_own_bytes() {
        let l = listener(4 << 20, 4);
        let c = conn(&l);
        let share = l.conn_cap;
        let first = l.charge(&c, share - 10).await.unwrap();
        let waiting = tokio::spawn({
            let (l, c) = (l.clone(), c.clone());
            async move { l.charge(&c, 20_000).await.map(|ch| ch.bytes()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "over its share: it waits");
        // Another connection is not held up by it.
        let other = conn(&l);
        let o = tokio::time::timeout(Duration::from_secs(1), l.charge(&other, 20_000)).await;
        assert_eq!(o.unwrap().unwrap().bytes(), 20_000);
        drop(first);
        let got = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        assert_eq!(
            got.unwrap().unwrap(),
            Some(20_000),
            "served once its own bytes came back"
        );
    }

    #[tokio::test]
    async fn when_the_pool_is_short_the_lightest_waiter_goes_first() {
        let l = listener(0, 1); // the smallest pool: one largest forward
        let pool = free(&l);
        let hog = conn(&l);
        let mut held = l.charge(&hog, pool).await.unwrap();
        // A heavier connection asks first, then a lighter one.
        let heavy = conn(&l);
        let _heavy_has = l.charge(&heavy, ALLOWANCE).await.unwrap();
        let h = tokio::spawn({
            let (l, c) = (l.clone(), heavy.clone());
            async move { l.charge(&c, 50_000).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let light = conn(&l);
        let g = tokio::spawn({
            let (l, c) = (l.clone(), light.clone());
            async move { l.charge(&c, 50_000).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // 60,000 free: room for one of them, and the lighter one gets it though it came later.
        held.shrink(pool - 60_000);
        let got = tokio::time::timeout(Duration::from_secs(1), g).await;
        let light_has = got.unwrap().unwrap().expect("granted");
        assert_eq!(light_has.bytes(), 50_000);
        tokio::task::yield_now().await;
        assert!(!h.is_finished(), "the heavier one still waits");
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(1), h).await;
        assert_eq!(got.unwrap().unwrap().expect("granted").bytes(), 50_000);
    }

    #[tokio::test]
    async fn a_light_waiter_has_the_stalled_holder_closed() {
        let l = listener(0, 2);
        let pool = free(&l);
        let stalled = conn(&l);
        let held = l.charge(&stalled, pool).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let light = conn(&l);
        light.progress(l.epoch);
        let want = tokio::spawn({
            let (l, c) = (l.clone(), light.clone());
            async move { l.charge(&c, 10_000).await.is_some() }
        });
        tokio::time::timeout(Duration::from_secs(2), stalled.closed())
            .await
            .expect("the stalled holder is closed");
        assert!(!light.is_closed());
        drop(held);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), want)
                .await
                .unwrap()
                .unwrap()
        );
    }

    #[tokio::test]
    async fn eviction_takes_the_connection_idle_longest_and_never_the_same_twice() {
        let l = listener(1 << 20, 3);
        let a = conn(&l);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = conn(&l);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let c = conn(&l);
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.progress(l.epoch); // a made progress since: b is idle longest, then c
        assert!(l.evict().is_some());
        assert!(b.is_closed() && !a.is_closed() && !c.is_closed());
        assert!(l.evict().is_some());
        assert!(c.is_closed(), "then the next one, not b again");
        assert!(l.evict().is_some());
        assert!(a.is_closed());
        assert!(l.evict().is_none(), "nothing left to evict");
    }
}
