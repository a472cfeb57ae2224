//! UDP listener: one `SO_REUSEPORT` socket and one blocking thread per worker.
//!
//! The kernel spreads datagrams over the sockets by flow hash, so workers share nothing on the
//! query path: each has its own socket, buffers, counters and relay; the mapping is read through
//! `ArcSwap` (wait-free). A thread blocked in `recv_from` costs nothing while idle and wakes
//! with no executor in between: on loopback this loop is within a few percent of the bare
//! responder in ../shared/bench (see README, Performance).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

use crate::dns::answer::{self, Decision, OUR_UDP_PAYLOAD, Outcome, Transport};
use crate::dns::wire::rcode;
use crate::forward::udp::UdpRelay;
use crate::mapping::SharedMapping;
use crate::stats::WorkerStats;

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

/// Wakes a worker blocked in `recv_from` so it can see the stop flag: `shutdown(SHUT_RD)` makes
/// a pending and every later receive return at once on Linux (the call itself reports
/// ENOTCONN on an unconnected UDP socket, which is expected and ignored).
pub fn wake(socket: &UdpSocket) {
    let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Read);
}

/// The query loop of one worker.
pub fn serve(
    socket: Arc<UdpSocket>,
    mapping: SharedMapping,
    relay: Arc<UdpRelay>,
    stats: Arc<WorkerStats>,
    stopping: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; u16::MAX as usize];
    let mut out = vec![0u8; OUR_UDP_PAYLOAD as usize];
    loop {
        let received = socket.recv_from(&mut buf);
        if stopping.load(Ordering::Relaxed) {
            return;
        }
        let (n, peer) = match received {
            Ok(r) => r,
            // ECONNREFUSED and friends can surface here after we sent to a client that has gone
            // away; they concern that client only.
            Err(_) => continue,
        };
        let decision = {
            let snapshot = mapping.load();
            answer::decide(&buf[..n], &snapshot, Transport::Udp, &mut out)
        };
        match decision {
            Decision::Reply { len, outcome } => {
                let _ = socket.send_to(&out[..len], peer);
                stats.count(outcome);
            }
            Decision::Forward { question_end } => {
                if relay.forward(&mut buf[..n], peer, question_end).is_err() {
                    if let Some(len) = answer::error_reply(&buf[..n], rcode::SERVFAIL, &mut out) {
                        let _ = socket.send_to(&out[..len], peer);
                    }
                    stats.count(Outcome::ServFail);
                }
            }
            Decision::Drop => stats.count(Outcome::Dropped),
        }
    }
}
