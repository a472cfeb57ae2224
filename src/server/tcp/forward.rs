//! A TCP connection's queries that are not answered at once: forwarded upstream or waiting for
//! an alias lookup, each on a task of its own so that the answers queued behind it are not held
//! up (RFC 7766 §6.2.1.1), and finished through [`crate::upstream::finish`].

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::budget::{Charge, Conn};
use super::{Frame, Listener};
use crate::alias::{AliasClient, Sink};
use crate::dns::outcome::{Outcome, Transport};
use crate::dns::query::Asked;
use crate::server::dispatch::Client;
use crate::upstream::QueryError;
use crate::upstream::finish::Finish;
use crate::upstream::udp::UdpRelay;

/// A TCP client as [`crate::server::dispatch::handle`] sees it. A reply is kept for the writer task. A forward, or an
/// alias answer that waits for a lookup, needs a pipeline slot and memory, and waiting for them
/// is async (back-pressure on the reader), so it is noted here and started by the connection
/// loop, which owns the message and moves it into the task (no copy).
#[derive(Default)]
pub(super) struct TcpClient {
    pub(super) reply: Option<Vec<u8>>,
    pub(super) pending: Option<Pending>,
}

/// A query to answer off the reader.
pub(super) enum Pending {
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
pub(super) fn spawn_forward(
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
