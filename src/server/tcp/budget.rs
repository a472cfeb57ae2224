//! The TCP listener's connection slots and memory budget (see the module doc of
//! [`super`]): every connection as the others see it ([`Conn`]), the bytes charged to it
//! ([`Charge`]), the shared pool and who it serves first, and which connection is closed when a
//! slot or memory is needed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};
use tracing::debug;

use super::{Listener, MAX_FRAME};

/// Bytes each connection may hold from an allowance of its own, outside the shared pool: an
/// ordinary query and its local answer, a few pipelined ones. Reserved in the budget for every
/// connection slot, so a client that asks ordinary questions never waits for memory.
pub(super) const ALLOWANCE: usize = 4096;

/// Copies of a forwarded query the upstream forwarder may hold at once besides ours: one per
/// attempt open in parallel (`MAX_OPEN` in `upstream/tcp.rs`). Charged so that the budget holds
/// with today's forwarder; see the module doc of `upstream::tcp`.
pub(super) const FORWARD_COPIES: usize = 3;

/// A connection holding at most this much (one large message each way) is light: when it has to
/// wait for the shared pool, it may have a stalled holder closed. Heavier ones just wait.
pub(super) const LIGHT: usize = 2 * MAX_FRAME;

/// How long a light connection waits for the shared pool before a holder is closed for it.
pub(super) const RECLAIM_AFTER: Duration = Duration::from_millis(100);

/// One connection as the others see it.
pub(super) struct Conn {
    pub(super) id: u64,
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
    pub(super) fn held(&self) -> usize {
        self.private.load(Ordering::Relaxed) + self.pooled.load(Ordering::Relaxed)
    }

    fn pooled(&self) -> usize {
        self.pooled.load(Ordering::Relaxed)
    }

    fn progress_ms(&self) -> u64 {
        self.progress_ms.load(Ordering::Relaxed)
    }

    pub(super) fn progress(&self, epoch: Instant) {
        self.progress_ms
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Ends the connection: every task of it stops waiting, drops what it holds and returns.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close.notify_waiters();
    }

    /// Completes when [`Conn::close`] has been called (at once if it already was).
    pub(super) async fn closed(&self) {
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
pub(super) struct Pool {
    pub(super) free: usize,
    pub(super) seq: u64,
    pub(super) waiters: Vec<Waiter>,
}

pub(super) struct Waiter {
    seq: u64,
    conn: Arc<Conn>,
    want: usize,
    grant: oneshot::Sender<Charge>,
}

/// Bytes charged to a connection: given back when dropped (with the message they pay for).
pub(super) struct Charge {
    listener: Arc<Listener>,
    conn: Arc<Conn>,
    private: usize,
    pooled: usize,
}

impl Charge {
    pub(super) fn bytes(&self) -> usize {
        self.private + self.pooled
    }

    /// Gives back all but `to` bytes (pool bytes first: others may be waiting for them).
    pub(super) fn shrink(&mut self, to: usize) {
        let mut excess = self.bytes().saturating_sub(to);
        let pooled = excess.min(self.pooled);
        if pooled > 0 {
            self.pooled -= pooled;
            excess -= pooled;
            self.listener.release(&self.conn, pooled);
            crate::sys::ask_trim();
        }
        if excess > 0 {
            self.private -= excess;
            self.conn.private.fetch_sub(excess, Ordering::Relaxed);
        }
    }

    /// Takes over `other`'s bytes (both charged to the same connection).
    pub(super) fn absorb(&mut self, mut other: Charge) {
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
            // Pool bytes paid for a burst (a connection's own share is small): once freed, the
            // heap is trimmed so that the burst does not stay resident.
            crate::sys::ask_trim();
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

    pub(super) fn lock_live(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charges `bytes` to `conn` before they are allocated: from its own allowance if they fit,
    /// else from the shared pool, waiting for them if need be. `None` only if the grant was
    /// lost (the connection is then ended by its caller).
    pub(super) async fn charge(self: &Arc<Self>, conn: &Arc<Conn>, bytes: usize) -> Option<Charge> {
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

    pub(super) fn register(&self, slot: OwnedSemaphorePermit) -> Arc<Conn> {
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
    pub(super) fn evict(&self) -> Option<OwnedSemaphorePermit> {
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

/// The shared pool and one connection's share of it, from `--tcp-memory` (the bound on all
/// message bytes of one listen address) and the connection slots: every slot's [`ALLOWANCE`]
/// comes off the top, a connection may hold an eighth of the pool, and never so little that
/// the largest query could not be forwarded (the query, the forwarder's copies, a full reply).
pub(super) fn budget(memory: usize, max_connections: usize) -> (usize, usize) {
    let min_share = (1 + FORWARD_COPIES) * MAX_FRAME + MAX_FRAME;
    let pool = memory
        .saturating_sub(max_connections.saturating_mul(ALLOWANCE))
        .max(min_share);
    (pool, (pool / 8).max(min_share))
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
