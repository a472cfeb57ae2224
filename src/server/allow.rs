//! Who may ask: not an open resolver when bound beyond loopback (issue 19).
//!
//! A sidecar serves its own pod. Bound to loopback (the default, and the manifests' choice), only
//! the pod can reach it and nothing is checked. Bound to another address (`--listen 0.0.0.0:53`,
//! the pod IP), an open resolver on the pod network would answer anyone and amplify: measured 78x
//! with EDNS 4096. So then:
//! - **Local clients** (loopback and this network namespace's own addresses: the pod's
//!   containers) are answered as always.
//! - **Clients in `--allow`** networks are answered, but over UDP, whose source address is not
//!   verified, never with more than [`AMPLIFICATION`] times the query's size: a larger reply is
//!   sent as a truncated one (TC, question only), and a real client retries over TCP, whose
//!   handshake proves its address. The factor is QUIC's anti-amplification limit for addresses
//!   it has not validated (RFC 9000 §8.1).
//! - **Everyone else** is ignored: no reply at all (a refusal would still be a reflected packet),
//!   counted as dropped; a TCP connection from them is closed at once.
//!
//! The default `--allow` is empty: only this pod. `--allow any` opens it up (with the UDP size
//! limit still in force for non-local clients).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::dns::wire::{self, HEADER_LEN, flag};

/// A reply to an unverified client is at most this many times the size of its query.
pub(crate) const AMPLIFICATION: usize = 3;
/// Our interface addresses are read again at most this often (when an unknown client asks:
/// a new address of ours is then recognised within a second).
const REFRESH: Duration = Duration::from_secs(1);

/// An address block (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    /// Parses `IP`, `IP/PREFIX`.
    pub fn parse(s: &str) -> Result<Net, String> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?}: expected an address or a network, e.g. 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
        };
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - u32::from(self.prefix));
        bits(self.addr) & mask == bits(ip) & mask
    }
}

/// What a client may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// This pod: answered as always.
    Local,
    /// In `--allow`: answered, UDP replies bounded by [`AMPLIFICATION`].
    Allowed,
    /// Ignored.
    Refused,
}

pub(crate) struct Allow {
    /// False when every listen address is loopback: nobody else can ask, nothing to check.
    check: bool,
    nets: Vec<Net>,
    own: Mutex<(Vec<IpAddr>, Instant)>,
}

impl Allow {
    pub(crate) fn new(listen: &[std::net::SocketAddr], nets: Vec<Net>) -> Allow {
        let check = listen.iter().any(|a| !a.ip().is_loopback());
        let own = if check {
            crate::sys::own_addresses()
        } else {
            Vec::new()
        };
        Allow {
            check,
            nets,
            own: Mutex::new((own, Instant::now())),
        }
    }

    #[inline]
    pub(crate) fn verdict(&self, ip: IpAddr) -> Verdict {
        if !self.check || ip.is_loopback() {
            return Verdict::Local;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        {
            let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
            if own.0.contains(&ip) {
                return Verdict::Local;
            }
            if own.1.elapsed() >= REFRESH {
                *own = (crate::sys::own_addresses(), Instant::now());
                if own.0.contains(&ip) {
                    return Verdict::Local;
                }
            }
        }
        if self.nets.iter().any(|n| n.contains(ip)) {
            Verdict::Allowed
        } else {
            Verdict::Refused
        }
    }
}

/// The largest UDP reply for a query of `query_len` octets from a client with `verdict`
/// (`usize::MAX`: no bound).
#[inline]
pub(crate) fn udp_limit(verdict: Verdict, query_len: usize) -> usize {
    match verdict {
        Verdict::Allowed => query_len.saturating_mul(AMPLIFICATION),
        _ => usize::MAX,
    }
}

/// `reply`, or when it is longer than `limit` its truncated form written into `scratch`: the
/// header with TC set and no records, and the question (RFC 2181 §9, RFC 7766 §5: the client
/// retries over TCP). Never longer than the query it answers.
pub(crate) fn limited<'a>(reply: &'a [u8], limit: usize, scratch: &'a mut [u8; 512]) -> &'a [u8] {
    if reply.len() <= limit {
        return reply;
    }
    let end = wire::Header::read(reply)
        .and_then(|h| wire::skip_questions(reply, h.qdcount.min(1)).ok())
        .filter(|end| *end <= scratch.len())
        .unwrap_or(HEADER_LEN)
        .min(reply.len());
    if end < HEADER_LEN {
        return &[];
    }
    scratch[..end].copy_from_slice(&reply[..end]);
    let flags = u16::from_be_bytes([scratch[2], scratch[3]]) | flag::TC;
    scratch[2..4].copy_from_slice(&flags.to_be_bytes());
    let qd: u16 = if end > HEADER_LEN { 1 } else { 0 };
    scratch[4..6].copy_from_slice(&qd.to_be_bytes());
    scratch[6..12].fill(0);
    &scratch[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_what_they_should() {
        let rows = [
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.2.3", "10.1.2.3", true),
            ("10.1.2.3", "10.1.2.4", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::/0", "2001:db8::1", true),
        ];
        for (net, ip, want) in rows {
            let n = Net::parse(net).unwrap();
            assert_eq!(n.contains(ip.parse().unwrap()), want, "{net} {ip}");
        }
        assert!(Net::parse("10.0.0.0/33").is_err());
        assert!(Net::parse("ten").is_err());
    }

    #[test]
    fn loopback_listeners_check_nobody_others_only_let_the_pod_and_allowed_in() {
        let lo = Allow::new(&["127.0.0.1:53".parse().unwrap()], vec![]);
        assert_eq!(lo.verdict("203.0.113.9".parse().unwrap()), Verdict::Local);
        let any = Allow::new(
            &["0.0.0.0:53".parse().unwrap()],
            vec![Net::parse("10.0.0.0/8").unwrap()],
        );
        assert_eq!(any.verdict("127.0.0.1".parse().unwrap()), Verdict::Local);
        assert_eq!(any.verdict("10.9.9.9".parse().unwrap()), Verdict::Allowed);
        assert_eq!(
            any.verdict("203.0.113.9".parse().unwrap()),
            Verdict::Refused
        );
        for own in crate::sys::own_addresses() {
            assert_eq!(any.verdict(own), Verdict::Local, "{own}");
        }
    }

    #[test]
    fn a_reply_over_the_limit_becomes_a_truncated_one() {
        // www.example.org A, answered with one A record.
        let mut reply = vec![0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        reply.extend_from_slice(b"\x03www\x07example\x03org\x00\x00\x01\x00\x01");
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let mut scratch = [0u8; 512];
        assert_eq!(limited(&reply, usize::MAX, &mut scratch), &reply[..]);
        assert_eq!(limited(&reply, reply.len(), &mut scratch), &reply[..]);
        let t = limited(&reply, 40, &mut scratch).to_vec();
        assert_eq!(t.len(), 33, "header and question");
        assert_eq!(t[..2], [0xab, 0xcd]);
        assert_ne!(u16::from_be_bytes([t[2], t[3]]) & flag::TC, 0);
        assert_eq!(t[4..12], [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(t[12..], reply[12..33]);
        assert_eq!(udp_limit(Verdict::Allowed, 40), 120);
        assert_eq!(udp_limit(Verdict::Local, 40), usize::MAX);
    }
}
