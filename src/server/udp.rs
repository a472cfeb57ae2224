//! UDP listener: one `SO_REUSEPORT` socket and two threads per worker: its query thread
//! (`udp-N`, [`UdpWorker::serve`], blocked in `recv_from`) and its relay thread (`relay-N`,
//! [`crate::upstream::udp`], blocked in `epoll` on the worker's upstream sockets).
//!
//! The kernel spreads datagrams over the sockets by flow hash, so workers share nothing on the
//! query path: each has its own socket, buffers, counters and relay; the mapping is read through
//! `ArcSwap` (wait-free). A thread blocked in `recv_from` costs nothing while idle and wakes
//! with no executor in between: on loopback this loop is within a few percent of the bare
//! responder in benches/dnsperf/limit (see README, Performance). A worker has no timeout at all while
//! idle; at shutdown its socket is shut down for reading, which wakes it ([`crate::sys`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::info;

use crate::alias::{AliasClient, Sink};
use crate::config::Config;
use crate::dns::outcome::Outcome;
use crate::dns::outcome::Transport;
use crate::dns::query::Asked;
use crate::lifecycle::Threads;
use crate::server::allow::{Verdict, limited, udp_limit};
use crate::server::dispatch::{Buffers, Client, Handled, handle};
use crate::shared::Shared;
use crate::stats::{Proto, WorkerStats};
use crate::upstream::QueryError;
use crate::upstream::udp::UdpRelay;

/// Kernel receive buffer per socket: absorbs bursts (dnsperf opens with 100+ queries at once)
/// without drops; the kernel caps it at `net.core.rmem_max`.
const RECV_BUFFER: usize = 1 << 20;

/// Binds `workers` UDP sockets to `addr` with `SO_REUSEPORT`. With port 0 the first socket picks
/// the port and the others join it.
pub(crate) fn bind(addr: SocketAddr, workers: usize) -> io::Result<Vec<UdpSocket>> {
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
pub(crate) struct UdpWorker {
    pub socket: Arc<UdpSocket>,
    pub shared: Arc<Shared>,
    pub relay: Arc<UdpRelay>,
    pub stats: Arc<WorkerStats>,
}

/// Local-answer latency is sampled on one query in this many: two clock reads per query would
/// cost about 2 % of a local answer.
const LATENCY_SAMPLE: u32 = 64;

impl UdpWorker {
    /// The query loop; returns when the server stops.
    pub(crate) fn serve(self) {
        let mut buf = vec![0u8; u16::MAX as usize];
        let mut buffers = Buffers::new(Transport::Udp);
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
            // Not an open resolver (server::allow): a stranger gets nothing, not even a refusal.
            let verdict = self.shared.allow.verdict(peer.ip());
            if verdict == Verdict::Refused {
                self.stats.count(Outcome::Dropped);
                continue;
            }
            seq = seq.wrapping_add(1);
            let t0 = seq.is_multiple_of(LATENCY_SAMPLE).then(Instant::now);
            let mut client = UdpClient {
                worker: &self,
                peer,
                limit: udp_limit(verdict, n),
            };
            let handled = handle(
                &self.shared,
                &self.stats,
                &mut buf[..n],
                peer,
                Transport::Udp,
                &mut buffers,
                &mut client,
            );
            if let (Some(t0), Handled::Answered) = (t0, handled) {
                self.stats.local_latency.observe(t0.elapsed());
            }
        }
    }
}

/// A UDP client: replies go straight back with `send_to`, forwards and alias target lookups to
/// the worker's relay; an alias answer that waits for its lookup is sent from the relay thread.
struct UdpClient<'w> {
    worker: &'w UdpWorker,
    peer: SocketAddr,
    /// The largest reply this client may get (a client outside this pod: see server::allow).
    limit: usize,
}

impl Client for UdpClient<'_> {
    #[inline]
    fn reply(&mut self, reply: &[u8]) {
        let mut scratch = [0u8; 512];
        let reply = limited(reply, self.limit, &mut scratch);
        let _ = self.worker.socket.send_to(reply, self.peer);
    }

    #[inline]
    fn forward(&mut self, msg: &mut [u8], asked: &Asked, lower: &[u8]) -> Result<(), QueryError> {
        self.worker
            .relay
            .forward(msg, asked, lower, self.peer, self.limit)
    }
}

impl AliasClient for UdpClient<'_> {
    fn sink(&mut self) -> Sink {
        Sink::Udp {
            socket: self.worker.socket.clone(),
            peer: self.peer,
            stats: self.worker.stats.clone(),
            limit: self.limit,
        }
    }

    fn relay(&self) -> Option<&Arc<UdpRelay>> {
        Some(&self.worker.relay)
    }
}

/// The UDP side of one listen address: each worker's query thread and relay thread.
pub(crate) struct UdpHandle {
    pub addr: SocketAddr,
    threads: Threads,
    relays: Vec<Arc<UdpRelay>>,
}

/// Starts a worker (query thread + relay thread) on each of `sockets`, bound by the caller.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    sockets: Vec<UdpSocket>,
    config: &Config,
) -> io::Result<UdpHandle> {
    let addr = sockets
        .first()
        .ok_or_else(|| io::Error::other("no UDP socket"))?
        .local_addr()?;
    let mut handle = UdpHandle {
        addr,
        threads: Threads::default(),
        relays: Vec::new(),
    };
    for (i, socket) in sockets.into_iter().enumerate() {
        let socket = Arc::new(socket);
        let stats = shared.stats.block(Proto::Udp);
        let (relay, relay_loop) = UdpRelay::new(
            shared.upstreams.clone(),
            config.upstream_timeout,
            config.max_inflight,
            socket.clone(),
            stats.clone(),
            shared.stale.clone(),
            shared.alias.clone(),
        )?;
        let worker = UdpWorker {
            socket: socket.clone(),
            shared: shared.clone(),
            relay: relay.clone(),
            stats,
        };
        handle
            .threads
            .spawn(format!("relay-{i}"), move || relay_loop.run())?;
        handle
            .threads
            .spawn(format!("udp-{i}"), move || worker.serve())?;
        // At the stop: the worker's socket stops receiving (which wakes it: no timeout ticks
        // while idle), and the relay finishes what is in flight until the deadline.
        let r = relay.clone();
        shared.stop.on_stop(move |deadline| {
            crate::sys::stop_receiving(&socket);
            r.stop(deadline);
        });
        handle.relays.push(relay);
    }
    info!("listening on udp {addr}");
    Ok(handle)
}

impl UdpHandle {
    pub(crate) fn relays(&self) -> &[Arc<UdpRelay>] {
        &self.relays
    }

    /// After the stop: awaits the workers and relays (done with what was in flight) until
    /// `deadline`; false if one panicked or was still running.
    pub(crate) async fn shutdown(self, deadline: std::time::Instant) -> bool {
        self.threads.join(deadline).await
    }
}
