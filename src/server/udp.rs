//! UDP listener: one `SO_REUSEPORT` socket and one blocking thread per worker.
//!
//! The kernel spreads datagrams over the sockets by flow hash, so workers share nothing on the
//! query path: each has its own socket, buffers, counters and relay; the mapping is read through
//! `ArcSwap` (wait-free). A thread blocked in `recv_from` costs nothing while idle and wakes
//! with no executor in between: on loopback this loop is within a few percent of the bare
//! responder in ../shared/bench (see README, Performance). A worker has no timeout at all while
//! idle; at shutdown its socket is shut down for reading, which wakes it ([`crate::sys`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;
use tracing::info;

use crate::alias::AliasJob;
use crate::dns::answer::{self, Decision, OUR_UDP_PAYLOAD, Outcome, Transport};
use crate::dns::wire::rcode;
use crate::mapping::SharedMapping;
use crate::stats::WorkerStats;
use crate::upstream::failure_reply;
use crate::upstream::probe::LoopGuard;
use crate::upstream::udp::UdpRelay;

/// Kernel receive buffer per socket: absorbs bursts (dnsperf opens with 100+ queries at once)
/// without drops; the kernel caps it at `net.core.rmem_max`.
const RECV_BUFFER: usize = 1 << 20;

/// Binds `workers` UDP sockets to `addr` with `SO_REUSEPORT`. With port 0 the first socket picks
/// the port and the others join it.
pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_port(true)?;
        let _ = s.set_recv_buffer_size(RECV_BUFFER);
        s.bind(&addr.into())?;
        let s: UdpSocket = s.into();
        addr = s.local_addr()?;
        sockets.push(s);
    }
    Ok(sockets)
}

/// Everything one worker's query loop uses.
pub struct UdpWorker {
    pub socket: Arc<UdpSocket>,
    pub mapping: SharedMapping,
    pub relay: Arc<UdpRelay>,
    pub stats: Arc<WorkerStats>,
    pub loop_guard: Arc<LoopGuard>,
    /// `--query-log`: one log line per query. Off by default: the hot path logs nothing.
    pub query_log: bool,
    /// Alias-rule queries go to the resolver task through this bounded queue.
    pub alias: mpsc::Sender<AliasJob>,
}

/// Local-answer latency is sampled on one query in this many: two clock reads per query would
/// cost about 2 % of a local answer.
const LATENCY_SAMPLE: u32 = 64;

impl UdpWorker {
    /// The query loop; returns when the server stops.
    pub fn serve(self) {
        let mut buf = vec![0u8; u16::MAX as usize];
        let mut out = vec![0u8; OUR_UDP_PAYLOAD as usize];
        let mut fail = Vec::new();
        let mut seq: u32 = 0;
        loop {
            let (n, peer) = match crate::sys::recv_from(&self.socket, &mut buf) {
                Ok((n, Some(peer))) => (n, peer),
                // No source address: the socket was shut down for reading (the stop).
                Ok((_, None)) => return,
                // ECONNREFUSED and friends can surface here after we sent to a client that has
                // gone away; they concern that client only.
                Err(_) => continue,
            };
            seq = seq.wrapping_add(1);
            let t0 = seq.is_multiple_of(LATENCY_SAMPLE).then(Instant::now);
            let decision = {
                let snapshot = self.mapping.load();
                answer::decide(&buf[..n], &snapshot, Transport::Udp, &mut out)
            };
            let outcome = match decision {
                Decision::Reply { len, outcome } => {
                    let _ = self.socket.send_to(&out[..len], peer);
                    if let Some(t0) = t0 {
                        self.stats.local_latency.observe(t0.elapsed());
                    }
                    outcome
                }
                Decision::Forward { question_end } => {
                    if self.loop_guard.is_our_probe(&buf[..n], question_end) {
                        // Our own loop-check query came back: do not send it round again.
                        Outcome::Dropped
                    } else {
                        match self.relay.forward(&mut buf[..n], peer, question_end) {
                            Ok(()) => {
                                // Counted when the reply (or the failure reply) goes out.
                                if self.query_log {
                                    log_query(&buf[..n], peer, "forwarding");
                                }
                                continue;
                            }
                            Err(e) => {
                                let outcome =
                                    failure_reply(&buf[..n], e, None, Transport::Udp, &mut fail);
                                if !fail.is_empty() {
                                    let _ = self.socket.send_to(&fail, peer);
                                }
                                outcome
                            }
                        }
                    }
                }
                Decision::Alias { .. } => {
                    let job = AliasJob {
                        query: buf[..n].to_vec(),
                        peer,
                        socket: self.socket.clone(),
                        stats: self.stats.clone(),
                    };
                    match self.alias.try_send(job) {
                        // Counted by the resolver task when it answers.
                        Ok(()) => continue,
                        Err(_) => {
                            if let Some(len) =
                                answer::error_reply(&buf[..n], rcode::SERVFAIL, &mut out)
                            {
                                let _ = self.socket.send_to(&out[..len], peer);
                            }
                            Outcome::ServFail
                        }
                    }
                }
                Decision::Drop => Outcome::Dropped,
            };
            self.stats.count(outcome);
            if self.query_log {
                log_query(&buf[..n], peer, outcome.label());
            }
        }
    }
}

/// One line per query, for `--query-log` only (allocates; never on by default).
pub fn log_query(msg: &[u8], peer: SocketAddr, outcome: &str) {
    let mut lower = [0u8; crate::dns::wire::MAX_NAME_WIRE];
    match crate::dns::wire::read_question(msg, &mut lower) {
        Ok(q) => {
            let name = crate::mapping::name::wire_to_text(&msg[12..12 + q.name_len]);
            info!(client = %peer, name, qtype = q.qtype, outcome, "query");
        }
        Err(_) => info!(client = %peer, len = msg.len(), outcome, "query (unreadable)"),
    }
}
