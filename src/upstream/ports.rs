//! The relay's source ports: per upstream a pool of connected UDP sockets, each copy sent from
//! one picked at random, each socket replaced after it carried [`ROTATE_COPIES`] copies or lived
//! [`ROTATE_AGE`].
//!
//! Why (RFC 5452 §4, §9.2): an off-path spoofer must guess the source port and the 16-bit ID of
//! a query to poison it. One long-lived socket per upstream left only the ID once its port leaked
//! (the cluster DNS's query log, node conntrack, `/proc/net/udp`, side channels). With [`POOL`]
//! sockets chosen by a cryptographic RNG and replaced as they are used, a port learnt once is
//! worth 1/[`POOL`] of the next queries, and nothing a few seconds of traffic later. A fresh
//! socket per query (dnsmasq) costs several system calls per query and a conntrack entry per
//! query on the node; the pool costs one socket per [`ROTATE_COPIES`] copies (about 0.5 % of a
//! forward's CPU at 160,000 queries a second) and keeps the node's conntrack entries bounded:
//! [`POOL`] per upstream and worker, plus the replaced ones until conntrack forgets them.
//!
//! A replaced socket is not closed at once: it drains (its late replies are still read and
//! matched) until the budget of the copies it carried is over, then it is closed.
//!
//! Tokens: a socket's index in the slab is its epoll token and is recorded in each copy, so a
//! reply is accepted only on the very socket (port) its copy left from.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rand::RngExt;
use rand::rngs::StdRng;

/// Sockets per upstream (per worker).
pub(crate) const POOL: usize = 64;
/// Copies a socket carries before it is replaced.
pub(crate) const ROTATE_COPIES: u32 = 128;
/// The longest a socket is used.
pub(crate) const ROTATE_AGE: Duration = Duration::from_secs(60);

/// Creates a UDP socket connected to `upstream` from a port the kernel picks (at random, Linux's
/// ephemeral port selection), non-blocking.
pub(crate) fn connect(upstream: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(upstream)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

struct Port {
    socket: Arc<UdpSocket>,
    upstream: usize,
    copies: u32,
    opened: Instant,
    /// Replaced: closed at this time (its copies' budget over).
    drain_until: Option<Instant>,
}

pub(crate) struct Ports {
    /// The slab: index = epoll token.
    slab: Vec<Option<Port>>,
    free: Vec<usize>,
    /// Per upstream, the indices of the sockets in use.
    live: Vec<Vec<usize>>,
    /// Replaced sockets still draining, oldest first: each drains for the same time from when it
    /// was replaced, so they end in this order and [`Ports::close_drained`] only looks at the
    /// front. (It runs on every pick; at 50,000 queries a second some 800 sockets drain at once,
    /// and a scan of all of them on every pick cost more than the pool's sockets themselves.)
    draining: VecDeque<usize>,
    registry: Registry,
    /// How long a replaced socket may still get replies.
    drain: Duration,
}

impl Ports {
    /// Opens [`POOL`] sockets to each of `upstreams`, registered for reading in `registry`.
    pub(crate) fn open(
        upstreams: &[SocketAddr],
        registry: Registry,
        drain: Duration,
    ) -> io::Result<Ports> {
        let mut ports = Ports {
            slab: Vec::new(),
            free: Vec::new(),
            live: vec![Vec::with_capacity(POOL); upstreams.len()],
            draining: VecDeque::new(),
            registry,
            drain,
        };
        let now = Instant::now();
        for (u, addr) in upstreams.iter().enumerate() {
            for _ in 0..POOL {
                let i = ports.add(u, *addr, now)?;
                ports.live[u].push(i);
            }
        }
        Ok(ports)
    }

    fn add(&mut self, upstream: usize, addr: SocketAddr, now: Instant) -> io::Result<usize> {
        let socket = connect(addr)?;
        let index = self.free.pop().unwrap_or(self.slab.len());
        self.registry.register(
            &mut SourceFd(&socket.as_raw_fd()),
            Token(index),
            Interest::READABLE,
        )?;
        let port = Port {
            socket: Arc::new(socket),
            upstream,
            copies: 0,
            opened: now,
            drain_until: None,
        };
        if index == self.slab.len() {
            self.slab.push(Some(port));
        } else {
            self.slab[index] = Some(port);
        }
        Ok(index)
    }

    /// A socket to upstream `u` for one copy, picked at random: its index and a handle to send
    /// on after the caller's lock is released. Replaces the socket when it has done its share
    /// (the new one takes its place for the next copies).
    pub(crate) fn pick(
        &mut self,
        u: usize,
        rng: &mut StdRng,
        now: Instant,
    ) -> Option<(u16, Arc<UdpSocket>)> {
        self.close_drained(now);
        let live = self.live.get(u)?;
        if live.is_empty() {
            return None;
        }
        let at = rng.random_range(0..live.len());
        let index = live[at];
        let port = self.slab.get_mut(index)?.as_mut()?;
        port.copies += 1;
        let picked = (index as u16, port.socket.clone());
        if port.copies >= ROTATE_COPIES || now.saturating_duration_since(port.opened) >= ROTATE_AGE
        {
            self.replace(u, at, now);
        }
        Some(picked)
    }

    /// Replaces the `at`-th live socket of `u` by a fresh one; the old one drains. If no socket
    /// can be opened now (fd limit), the old one stays in use.
    fn replace(&mut self, u: usize, at: usize, now: Instant) {
        let Ok(addr) = self.live[u]
            .get(at)
            .and_then(|i| self.slab[*i].as_ref())
            .map(|p| p.socket.peer_addr())
            .unwrap_or_else(|| Err(io::Error::other("no socket")))
        else {
            return;
        };
        let Ok(new) = self.add(u, addr, now) else {
            return;
        };
        let old = std::mem::replace(&mut self.live[u][at], new);
        if let Some(p) = self.slab[old].as_mut() {
            p.drain_until = Some(now + self.drain);
            self.draining.push_back(old);
        }
    }

    /// Closes the replaced sockets whose copies' budget is over.
    pub(crate) fn close_drained(&mut self, now: Instant) {
        while let Some(&index) = self.draining.front() {
            let port = self.slab[index].as_ref();
            if port.and_then(|p| p.drain_until).is_some_and(|t| t > now) {
                break;
            }
            self.draining.pop_front();
            if let Some(p) = self.slab[index].take() {
                let _ = self
                    .registry
                    .deregister(&mut SourceFd(&p.socket.as_raw_fd()));
                self.free.push(index);
            }
        }
    }

    /// The socket with token `index`, and its upstream.
    pub(crate) fn get(&self, index: usize) -> Option<(usize, Arc<UdpSocket>)> {
        self.slab
            .get(index)?
            .as_ref()
            .map(|p| (p.upstream, p.socket.clone()))
    }

    /// Source ports in use for upstream `u` (tests, metrics).
    #[cfg(test)]
    pub(crate) fn live_ports(&self, u: usize) -> Vec<u16> {
        self.live[u]
            .iter()
            .filter_map(|i| self.slab[*i].as_ref()?.socket.local_addr().ok())
            .map(|a| a.port())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn copies_leave_from_many_ports_that_are_replaced_as_they_are_used() {
        let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let poll = mio::Poll::new().unwrap();
        let registry = poll.registry().try_clone().unwrap();
        let mut ports = Ports::open(&[upstream], registry, Duration::from_millis(100)).unwrap();
        let first: std::collections::HashSet<u16> = ports.live_ports(0).into_iter().collect();
        assert_eq!(first.len(), POOL, "distinct ports");
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let t0 = Instant::now();
        let mut used = std::collections::HashSet::new();
        for _ in 0..(3 * POOL as u32 * ROTATE_COPIES) {
            let (index, socket) = ports.pick(0, &mut rng, t0).unwrap();
            used.insert(socket.local_addr().unwrap().port());
            assert!(
                ports.get(index as usize).is_some(),
                "a draining socket still reads"
            );
        }
        assert!(used.len() > POOL, "replaced as used: {} ports", used.len());
        let now: std::collections::HashSet<u16> = ports.live_ports(0).into_iter().collect();
        assert!(now.intersection(&first).count() < POOL / 2, "most replaced");
        assert!(!ports.draining.is_empty());
        // Past the drain time the replaced ones are closed: the slab stays bounded.
        ports.close_drained(t0 + Duration::from_secs(1));
        assert!(ports.draining.is_empty());
        assert!(ports.slab.iter().flatten().count() == POOL);
        // Old sockets are replaced by age as well.
        let later = t0 + ROTATE_AGE + Duration::from_secs(1);
        let before: Vec<u16> = ports.live_ports(0);
        ports.pick(0, &mut rng, later).unwrap();
        assert_ne!(before, ports.live_ports(0), "one replaced by age");
    }
}
