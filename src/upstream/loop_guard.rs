//! The start-up forwarding-loop check (like CoreDNS's `loop` plugin): a query for a random name
//! is sent to each upstream. If that name then arrives at our own listener, the upstream forwards
//! back to us: we log an error and stay not-ready (kubelet keeps the pod out of service without
//! crash-looping it) instead of amplifying the loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tracing::error;

use super::attempt::reply_matches;
use crate::dns::wire::HEADER_LEN;

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

/// The random probe name of the loop check, and whether it came back to us.
pub(crate) struct LoopGuard {
    /// Wire form of `<random>.<random>.splitdns-loop-check.invalid.`, lower case.
    name: Vec<u8>,
    armed: AtomicBool,
    detected: AtomicBool,
}

impl LoopGuard {
    pub(crate) fn new() -> LoopGuard {
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
    pub(crate) fn is_our_probe(&self, name_lower: &[u8]) -> bool {
        if !self.armed.load(Ordering::Relaxed) {
            return false;
        }
        // Both lower-cased: the probe name is written so, the query's name read so.
        if name_lower == &self.name[..] {
            self.detected.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub(crate) fn detected(&self) -> bool {
        self.detected.load(Ordering::Relaxed)
    }

    /// Sends the probe name to every upstream and listens for it for `timeout`.
    pub(crate) async fn check(&self, upstreams: &[SocketAddr], timeout: Duration) {
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
