//! Background upstream probes (health and readiness) and the start-up forwarding-loop check.
//!
//! Probe: `. IN NS` with RD, over UDP, to each upstream; any well-formed reply with the ID of a
//! probe we sent and the probe's question counts as "answering" (even SERVFAIL or REFUSED: the
//! server is there). Each upstream has its own probe task and socket, so probes run
//! concurrently. An upstream that is up is probed every `--probe-interval`, a round being a few
//! copies on the attempt model's back-off until one is answered or the upstream timeout passes;
//! a round that goes unanswered for the silence window marks it down (the same rule as for
//! client queries, [`super::health`]). A down upstream is probed every [`DOWN_PROBE`], each probe
//! with its own ID and all of them awaited at once, so the first reply after it comes back marks
//! it up, and the relays re-send what waits, within [`DOWN_PROBE`] plus a round trip.
//!
//! Loop check (like CoreDNS's `loop` plugin): at start, a query for a random name is sent to each
//! upstream. If that name then arrives at our own listener, the upstream forwards back to us: we
//! log an error and stay not-ready (kubelet keeps the pod out of service without crash-looping
//! it) instead of amplifying the loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::error;

use super::attempt::{RTO_INITIAL, backoff, reply_matches};
use super::health::{Silence, UpstreamHealth};
use crate::dns::wire::HEADER_LEN;

/// How often a down upstream is probed.
pub const DOWN_PROBE: Duration = Duration::from_millis(50);
/// Probe IDs remembered per upstream: a reply to any of the last few probes counts.
const RECENT: usize = 16;

/// The `. IN NS` probe query with the given ID.
fn probe_query(id: u16) -> [u8; 17] {
    let i = id.to_be_bytes();
    [
        i[0], i[1], 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1,
    ]
}

async fn socket_to(upstream: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(upstream).await?;
    Ok(sock)
}

/// Sends `query` to `upstream` and waits for a matching reply (same ID, QR, same question).
async fn exchange(upstream: SocketAddr, query: &[u8], timeout: Duration) -> bool {
    let Ok(sock) = socket_to(upstream).await else {
        return false;
    };
    if sock.send(query).await.is_err() {
        return false;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            match sock.recv(&mut buf).await {
                Ok(n) if reply_matches(&buf[..n], id, query, query.len()) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or(false)
}

/// Runs until `stop` turns true: one probe task per upstream.
pub async fn run(
    health: Arc<UpstreamHealth>,
    interval: Duration,
    timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut set = tokio::task::JoinSet::new();
    for u in 0..health.count() {
        set.spawn(watch_upstream(
            health.clone(),
            u,
            interval,
            timeout,
            stop.clone(),
        ));
    }
    while set.join_next().await.is_some() {}
}

/// Probes upstream `u` for good (see the module docs).
async fn watch_upstream(
    health: Arc<UpstreamHealth>,
    u: usize,
    interval: Duration,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let addr = health.addr(u);
    let mut recent = [None::<u16>; RECENT];
    let mut next_slot = 0;
    let mut silence = Silence::default();
    let mut buf = [0u8; 4096];
    // The first round at once: readiness waits for the first answer.
    let mut first = true;
    loop {
        if !first && health.is_healthy(u) {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
        }
        first = false;
        let sock = match socket_to(addr).await {
            Ok(s) => s,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(DOWN_PROBE.max(interval / 10)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        // One round: copies until a reply, or (while up) until the timeout.
        let started = Instant::now();
        let mut sent = 0;
        let mut next_send = started;
        loop {
            let now = Instant::now();
            let up = health.is_healthy(u);
            if up && now.saturating_duration_since(started) >= timeout {
                break;
            }
            if now >= next_send {
                let id: u16 = rand::random();
                recent[next_slot] = Some(id);
                next_slot = (next_slot + 1) % RECENT;
                let _ = sock.send(&probe_query(id)).await;
                silence.sent(now);
                sent += 1;
                next_send = now
                    + if up {
                        backoff(RTO_INITIAL, sent)
                    } else {
                        DOWN_PROBE
                    };
            }
            let until = if up {
                next_send.min(started + timeout)
            } else {
                next_send
            };
            tokio::select! {
                r = sock.recv(&mut buf) => {
                    if let Ok(n) = r {
                        let reply = &buf[..n];
                        let answered = recent.iter().flatten().any(|id| {
                            reply_matches(reply, *id, &probe_query(*id), 17)
                        });
                        if answered {
                            silence.answered();
                            health.probe_ok(u);
                            break;
                        }
                    }
                    // ICMP unreachable (an error here) is no answer: keep probing.
                }
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = stop.changed() => return,
            }
            silence.check(&health, u, Instant::now());
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
