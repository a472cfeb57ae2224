//! The daemon's resolved configuration, and the checks made on it before anything starts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The example mapping, compiled in: served when `--mapping` is not given and
/// `config/mapping.yaml` is not there (a binary run outside the repo still answers at once).
pub(crate) const EMBEDDED_MAPPING: &str = include_str!("../config/mapping.yaml");

/// Where the mapping comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingSource {
    /// A YAML mapping file, or a directory of them (`--mapping`).
    File(PathBuf),
    /// The KurrentDB operator's JSON config file (`splitdns PATH`, or `/dns.conf`): its rules are
    /// the mapping; its `listen` and `resolver` were read into the [`Config`] at start.
    Operator(PathBuf),
    /// [`EMBEDDED_MAPPING`].
    Embedded,
}

impl MappingSource {
    /// The file or directory, if the mapping comes from one (the built-in one never changes).
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            MappingSource::File(p) | MappingSource::Operator(p) => Some(p),
            MappingSource::Embedded => None,
        }
    }

    /// The syntax of the source.
    pub fn format(&self) -> crate::mapping::file::Format {
        match self {
            MappingSource::Operator(_) => crate::mapping::file::Format::Operator,
            _ => crate::mapping::file::Format::Yaml,
        }
    }
}

impl std::fmt::Display for MappingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MappingSource::File(p) => write!(f, "{} (YAML mapping)", p.display()),
            MappingSource::Operator(p) => write!(f, "{} (operator JSON config)", p.display()),
            MappingSource::Embedded => f.write_str("<built-in example>"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub mapping: MappingSource,
    pub upstreams: Vec<SocketAddr>,
    /// Budget for one forwarded query over all upstreams; SERVFAIL after it.
    pub upstream_timeout: Duration,
    /// TTL of local answers unless the mapping file sets one (seconds).
    pub ttl: u32,
    pub workers: usize,
    /// Forwarded UDP queries in flight per worker.
    pub max_inflight: usize,
    pub tcp_max_connections: usize,
    pub tcp_idle_timeout: Duration,
    /// Queries answered on one TCP connection before it is closed.
    pub tcp_max_queries: usize,
    /// A TCP peer that takes no reply (or sends no rest of a started message) for this long is
    /// cut off.
    pub tcp_write_timeout: Duration,
    /// Bytes of messages the TCP side of one listen address holds at once (queries read,
    /// replies queued, forwards in flight with room for their reply).
    pub tcp_memory: usize,
    /// How long in-flight forwards may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// How often the mapping source is re-read and hashed, besides the directory watch.
    pub poll_interval: Duration,
    /// The admin HTTP endpoint (`/live`, `/ready`, `/metrics`); `None` turns it off.
    pub admin: Option<SocketAddr>,
    /// How often healthy upstreams are probed (readiness needs an answer within about this).
    pub probe_interval: Duration,
    /// Silence (no valid reply while asked) for this long marks an upstream down.
    pub unhealthy_after: Duration,
    /// Serve-stale (RFC 8767): how long past its TTL a kept reply may still be served when no
    /// upstream answers; `None` (the default) keeps splitdns a pure relay.
    pub serve_stale: Option<Duration>,
    /// Bytes of replies kept for serve-stale.
    pub stale_cache_size: usize,
    /// The longest an alias target's answer is kept and served (it lives the smallest of this,
    /// the target's TTL and the rule's `ttl`).
    pub alias_cache_ttl: Duration,
    /// How long past its life an alias target's last good answer is served while no upstream
    /// answers for it (zero: never).
    pub alias_stale: Duration,
    /// Bytes of alias target answers kept.
    pub alias_cache_size: usize,
    /// Networks whose clients are answered besides this pod's own addresses, when a listen
    /// address is not loopback (see `server::allow`).
    pub allow: Vec<crate::Net>,
    /// One log line per query.
    pub query_log: bool,
}

impl Config {
    /// A configuration for tests and embedding: listen on an ephemeral loopback port.
    pub fn new(mapping: MappingSource, upstreams: Vec<SocketAddr>) -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            mapping,
            upstreams,
            upstream_timeout: Duration::from_secs(2),
            ttl: 5,
            workers: 1,
            max_inflight: 1024,
            tcp_max_connections: 256,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_max_queries: 1000,
            tcp_write_timeout: Duration::from_secs(5),
            tcp_memory: 16 << 20,
            shutdown_grace: Duration::from_secs(5),
            poll_interval: Duration::from_secs(5),
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            probe_interval: Duration::from_secs(5),
            unhealthy_after: Duration::from_secs(1),
            serve_stale: None,
            stale_cache_size: 1 << 20,
            alias_cache_ttl: Duration::from_secs(5),
            alias_stale: Duration::from_secs(600),
            alias_cache_size: 1 << 20,
            allow: Vec::new(),
            query_log: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid upstream {0:?}: expected IP or IP:PORT, e.g. 10.96.0.10 or [fd00::a]:53")]
    BadUpstream(String),
    #[error("no upstream: /etc/resolv.conf has no usable nameserver ({0}); pass --upstream")]
    NoUpstream(String),
    #[error(
        "upstream {upstream} is our own listen address {listen}: queries would loop; \
         pass --upstream with the cluster DNS address"
    )]
    Loop {
        upstream: SocketAddr,
        listen: SocketAddr,
    },
    #[error("--listen needs at least one address")]
    NoListen,
    #[error("at most {max} upstreams are supported, {given} given")]
    TooManyUpstreams { max: usize, given: usize },
    #[error(transparent)]
    Mapping(#[from] crate::mapping::MappingError),
    #[error("give either the operator's config file (positional argument) or --mapping, not both")]
    TwoSources,
}

/// Parses `10.96.0.10`, `10.96.0.10:53`, `fd00::a` or `[fd00::a]:53`; port 53 by default.
pub(crate) fn parse_upstream(s: &str) -> Result<SocketAddr, ConfigError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| ConfigError::BadUpstream(s.to_owned()))
}

/// The nameservers of `/etc/resolv.conf`.
pub(crate) fn system_upstreams() -> Result<Vec<SocketAddr>, ConfigError> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| ConfigError::NoUpstream(format!("/etc/resolv.conf: {e}")))?;
    let ups = resolv_conf_nameservers(&text);
    if ups.is_empty() {
        return Err(ConfigError::NoUpstream("no nameserver lines".into()));
    }
    Ok(ups)
}

/// The `nameserver` lines of a resolv.conf (resolv.conf(5)): one address each, port 53; `#` and
/// `;` start comments; an IPv6 zone (`fe80::1%eth0`) is dropped, and so is any line whose address
/// does not read (glibc ignores those too). At most three count in glibc (MAXNS); we take them all
/// in order, the first is asked first.
pub(crate) fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let addr = words.next()?;
            let addr = addr.split('%').next().unwrap_or(addr);
            addr.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Refuses an upstream that is one of our own listen addresses (a sidecar whose resolv.conf
/// says 127.0.0.1 while it listens on 127.0.0.1:53 would forward to itself forever; CoreDNS's
/// `loop` plugin exists for this).
pub(crate) fn check_loops(
    listen: &[SocketAddr],
    upstreams: &[SocketAddr],
) -> Result<(), ConfigError> {
    if upstreams.is_empty() {
        return Err(ConfigError::NoUpstream("none given".into()));
    }
    let max = crate::upstream::health::MAX_UPSTREAMS;
    if upstreams.len() > max {
        return Err(ConfigError::TooManyUpstreams {
            max,
            given: upstreams.len(),
        });
    }
    for up in upstreams {
        for l in listen {
            if up.port() != l.port() {
                continue;
            }
            let same_host = up.ip() == l.ip()
                || (l.ip().is_unspecified() && (up.ip().is_loopback() || up.ip().is_unspecified()));
            if same_host {
                return Err(ConfigError::Loop {
                    upstream: *up,
                    listen: *l,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstreams() {
        assert_eq!(
            parse_upstream("10.0.0.1").unwrap(),
            "10.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("10.0.0.1:5300").unwrap(),
            "10.0.0.1:5300".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("fd00::a").unwrap(),
            "[fd00::a]:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("[fd00::a]").unwrap(),
            "[fd00::a]:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("[fd00::a]:54").unwrap(),
            "[fd00::a]:54".parse().unwrap()
        );
        assert!(parse_upstream("dns.example").is_err());
    }

    #[test]
    fn reads_resolv_conf_nameservers() {
        let text = "# generated\nsearch ns.svc.cluster.local svc.cluster.local\n\
                    nameserver 10.96.0.10\nnameserver   fe80::1%eth0 # link-local\n\
                    ; nameserver 10.0.0.9\nnameserver not-an-ip\noptions ndots:5\n\
                    nameserver 2001:db8::53\n";
        let want: Vec<SocketAddr> = ["10.96.0.10:53", "[fe80::1]:53", "[2001:db8::53]:53"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(resolv_conf_nameservers(text), want);
        assert!(resolv_conf_nameservers("search x\n").is_empty());
    }

    #[test]
    fn refuses_forwarding_to_ourselves() {
        let l: Vec<SocketAddr> = vec!["127.0.0.1:53".parse().unwrap()];
        assert!(check_loops(&l, &["127.0.0.1:53".parse().unwrap()]).is_err());
        assert!(check_loops(&l, &["127.0.0.1:5353".parse().unwrap()]).is_ok());
        assert!(check_loops(&l, &["10.96.0.10:53".parse().unwrap()]).is_ok());
        let any: Vec<SocketAddr> = vec!["0.0.0.0:53".parse().unwrap()];
        assert!(check_loops(&any, &["127.0.0.53:53".parse().unwrap()]).is_err());
    }
}
