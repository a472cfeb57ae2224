//! Background upstream probes (health and readiness) and the start-up forwarding-loop check.
//!
//! Probe: `. IN NS` with RD, over UDP, to each upstream; any well-formed reply with our ID and
//! question counts as "answering" (even SERVFAIL or REFUSED: the server is there). Healthy
//! upstreams are probed every `--probe-interval`, unhealthy ones twice a second so they come back
//! quickly.
//!
//! Loop check (like CoreDNS's `loop` plugin): at start, a query for a random name is sent to each
//! upstream. If that name then arrives at our own listener, the upstream forwards back to us: we
//! log an error and stay not-ready (kubelet keeps the pod out of service without crash-looping
//! it) instead of amplifying the loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::error;

use crate::dns::wire::{self, HEADER_LEN, flag};
use crate::forward::health::UpstreamHealth;

/// How often unhealthy upstreams are probed.
const UNHEALTHY_PROBE: Duration = Duration::from_millis(500);

/// The `. IN NS` probe query with the given ID.
fn probe_query(id: u16) -> [u8; 17] {
    let i = id.to_be_bytes();
    [
        i[0], i[1], 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1,
    ]
}

/// Sends `query` to `upstream` and waits for a matching reply (same ID, QR, same question).
async fn exchange(upstream: SocketAddr, query: &[u8], timeout: Duration) -> bool {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(sock) = UdpSocket::bind(bind).await else {
        return false;
    };
    if sock.connect(upstream).await.is_err() || sock.send(query).await.is_err() {
        return false;
    }
    let question_end = query.len();
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            match sock.recv(&mut buf).await {
                Ok(n) => {
                    let reply = &buf[..n];
                    let ok = wire::Header::read(reply)
                        .is_some_and(|h| h.flags & flag::QR != 0 && reply[..2] == query[..2])
                        && wire::same_question(query, reply, question_end);
                    if ok {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or(false)
}

/// Probes the upstreams selected by `which` concurrently. A failed probe counts as a failure
/// only when `count_failures` (the full rounds), so that the quick re-probes of an unhealthy
/// upstream do not pile up.
async fn probe(
    health: &Arc<UpstreamHealth>,
    timeout: Duration,
    which: impl Fn(usize) -> bool,
    count_failures: bool,
) {
    let mut set = tokio::task::JoinSet::new();
    for u in (0..health.len()).filter(|u| which(*u)) {
        let health = health.clone();
        set.spawn(async move {
            let q = probe_query(rand::random());
            if exchange(health.addr(u), &q, timeout).await {
                health.probe_ok(u);
            } else if count_failures {
                health.failure(u);
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// Probes every upstream once.
pub async fn probe_all(health: &Arc<UpstreamHealth>, timeout: Duration) {
    probe(health, timeout, |_| true, true).await;
}

/// Runs until `stop` turns true: probes healthy upstreams every `interval`, unhealthy ones more
/// often.
pub async fn run(
    health: Arc<UpstreamHealth>,
    interval: Duration,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // At once: readiness waits for the first answer.
    probe_all(&health, timeout).await;
    let mut since_full = Duration::ZERO;
    loop {
        let all_healthy = (0..health.len()).all(|u| health.is_healthy(u));
        let step = if all_healthy {
            interval.saturating_sub(since_full)
        } else {
            UNHEALTHY_PROBE.min(interval)
        };
        tokio::select! {
            _ = tokio::time::sleep(step) => {}
            _ = stop.changed() => return,
        }
        since_full += step;
        if since_full >= interval {
            since_full = Duration::ZERO;
            probe_all(&health, timeout).await;
        } else {
            // Only the unhealthy ones, so that a recovered upstream is used again quickly.
            let h = health.clone();
            probe(&health, timeout, move |u| !h.is_healthy(u), false).await;
        }
    }
}

/// The random probe name of the loop check, and whether it came back to us.
pub struct LoopGuard {
    /// Wire form of `<random>.<random>.splitdns-loop-check.invalid.`, lower case.
    name: Vec<u8>,
    armed: AtomicBool,
    detected: AtomicBool,
}

impl LoopGuard {
    pub fn new() -> LoopGuard {
        let mut name = Vec::new();
        for label in [
            format!("{:016x}", rand::random::<u64>()),
            format!("{:016x}", rand::random::<u64>()),
            "splitdns-loop-check".to_owned(),
            "invalid".to_owned(),
        ] {
            name.push(label.len() as u8);
            name.extend_from_slice(label.as_bytes());
        }
        name.push(0);
        LoopGuard {
            name,
            armed: AtomicBool::new(false),
            detected: AtomicBool::new(false),
        }
    }

    /// Called by the UDP workers for every query about to be forwarded: a relaxed load while
    /// not armed (always, after the first seconds).
    #[inline]
    pub fn is_our_probe(&self, msg: &[u8], question_end: usize) -> bool {
        if !self.armed.load(Ordering::Relaxed) {
            return false;
        }
        let name = msg.get(HEADER_LEN..question_end.saturating_sub(4));
        if name.is_some_and(|n| n.eq_ignore_ascii_case(&self.name)) {
            self.detected.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub fn detected(&self) -> bool {
        self.detected.load(Ordering::Relaxed)
    }

    /// Sends the probe name to every upstream and listens for it for `timeout`.
    pub async fn check(&self, upstreams: &[SocketAddr], timeout: Duration) {
        self.armed.store(true, Ordering::Relaxed);
        let mut q = vec![0u8; HEADER_LEN];
        q[..2].copy_from_slice(&rand::random::<u16>().to_be_bytes());
        q[2] = 0x01; // RD: ask the upstream to resolve it, which is what would loop
        q[5] = 1;
        q.extend_from_slice(&self.name);
        q.extend_from_slice(&[0, 13, 0, 1]); // HINFO IN, as CoreDNS's loop plugin asks
        let mut set = tokio::task::JoinSet::new();
        for u in upstreams {
            let (u, q) = (*u, q.clone());
            set.spawn(async move { exchange(u, &q, timeout).await });
        }
        while set.join_next().await.is_some() {}
        // A looping upstream may take a moment to hand the query back.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.armed.store(false, Ordering::Relaxed);
        if self.detected() {
            error!(
                "forwarding loop: a query we sent to the upstream came back to us; staying \
                 not-ready (point --upstream at the cluster DNS, not at this pod)"
            );
        }
    }
}

impl Default for LoopGuard {
    fn default() -> Self {
        LoopGuard::new()
    }
}
