//! Command line: every flag can also come from an environment variable `SPLITDNS_*`, which is
//! how a Kubernetes manifest usually sets them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config, ConfigError, MappingSource};

/// The default mapping path, relative to the working directory (the repo root under
/// `cargo run`).
pub(crate) const DEFAULT_MAPPING: &str = "config/mapping.yaml";

/// Where the KurrentDB operator's sidecar image finds its config when started without arguments
/// (the incumbent's `main.go` default), and so where splitdns looks first.
pub(crate) const OPERATOR_CONFIG: &str = "/dns.conf";

/// Where DNS is served when neither `--listen` nor an operator config says: an unprivileged port,
/// so that `cargo run` works as any user (the image and the manifests use 53).
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5353);

#[derive(Debug, Parser)]
#[command(
    name = "splitdns",
    version,
    about = "Split-horizon DNS sidecar: answers mapped FQDNs with pod IPs, forwards everything else unchanged",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: Serve,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a mapping file or directory, or the operator's JSON config, and print a summary
    /// (exit 0) or the errors with line numbers (exit 1). Use it in CI and before writing the
    /// ConfigMap.
    Check {
        /// Mapping file or directory, or the operator's config (a JSON object).
        path: PathBuf,
    },
}

/// Serving flags (the default command).
#[derive(Debug, Args)]
pub struct Serve {
    /// The KurrentDB operator's sidecar config (JSON: listen, resolver, rules), as its own DNS
    /// sidecar takes it; reloaded on change and on SIGHUP [default: /dns.conf if it exists].
    /// Which file is served, when none is given: /dns.conf, else config/mapping.yaml, else the
    /// built-in example.
    #[arg(value_name = "CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to serve DNS on, UDP and TCP (repeatable or comma-separated) [default: the
    /// operator config's `listen` (127.0.0.1:53 if it has none), else 127.0.0.1:5353].
    #[arg(long, env = "SPLITDNS_LISTEN", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,

    /// Mapping file (YAML), or a directory whose *.yaml files are merged; reloaded on change
    /// and on SIGHUP (instead of an operator config) [default: config/mapping.yaml if there is no
    /// /dns.conf, or the built-in example if neither exists].
    #[arg(long, env = "SPLITDNS_MAPPING")]
    pub mapping: Option<PathBuf>,

    /// Upstream DNS server, IP[:PORT] (repeatable, tried in order) [default: the operator
    /// config's `resolver`, else the nameservers of /etc/resolv.conf].
    #[arg(long, env = "SPLITDNS_UPSTREAM", value_delimiter = ',', value_parser = upstream)]
    pub upstream: Vec<SocketAddr>,

    /// Time budget for a forwarded query over all upstreams; SERVFAIL after it (e.g. 500ms, 2s).
    #[arg(long, env = "SPLITDNS_UPSTREAM_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub upstream_timeout: Duration,

    /// TTL of local answers when the mapping file sets none (e.g. 5s, 1m).
    #[arg(long, env = "SPLITDNS_TTL", default_value = "5s", value_parser = ttl)]
    pub ttl: u32,

    /// UDP workers, each a query thread and a relay thread on its own SO_REUSEPORT socket
    /// [default: 1, whatever the node: one worker serves over 300k local and 160k forwarded
    /// queries/s here, and more only help above that; see README, Footprint].
    #[arg(long, env = "SPLITDNS_WORKERS")]
    pub workers: Option<usize>,

    /// Forwarded UDP queries in flight per worker; beyond it new queries get SERVFAIL.
    #[arg(long, env = "SPLITDNS_MAX_INFLIGHT", default_value_t = 1024)]
    pub max_inflight: usize,

    /// TCP connections served at once.
    #[arg(long, env = "SPLITDNS_TCP_MAX_CONNECTIONS", default_value_t = 256)]
    pub tcp_max_connections: usize,

    /// Close a TCP connection idle for this long.
    #[arg(long, env = "SPLITDNS_TCP_IDLE_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub tcp_idle_timeout: Duration,

    /// Queries answered on one TCP connection before it is closed.
    #[arg(long, env = "SPLITDNS_TCP_MAX_QUERIES", default_value_t = 1000)]
    pub tcp_max_queries: usize,

    /// Cut off a TCP client that takes no reply, or sends no rest of a started message, for
    /// this long.
    #[arg(long, env = "SPLITDNS_TCP_WRITE_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub tcp_write_timeout: Duration,

    /// Memory for TCP messages per listen address: queries read, replies queued, forwards in
    /// flight (each with room for a 64 KiB reply); beyond it TCP clients wait.
    #[arg(long, env = "SPLITDNS_TCP_MEMORY", default_value = "16MiB", value_parser = bytes)]
    pub tcp_memory: usize,

    /// At SIGTERM, how long in-flight forwards may take to finish.
    #[arg(long, env = "SPLITDNS_SHUTDOWN_GRACE", default_value = "5s", value_parser = duration)]
    pub shutdown_grace: Duration,

    /// Besides watching its directory, check the mapping's metadata this often (catches changes
    /// no filesystem event reports, such as a parent directory's symlink replaced). Every poll
    /// wakes the process; kubelet's ConfigMap updates are seen at once through the watch.
    #[arg(long, env = "SPLITDNS_POLL_INTERVAL", default_value = "5s", value_parser = duration)]
    pub poll_interval: Duration,

    /// Admin HTTP address for /live, /ready and /metrics ("off" disables it).
    #[arg(long, env = "SPLITDNS_ADMIN", default_value = "127.0.0.1:9253", value_parser = admin)]
    pub admin: Admin,

    /// How often upstreams are probed; /ready needs an answer within about this long.
    #[arg(long, env = "SPLITDNS_PROBE_INTERVAL", default_value = "5s", value_parser = duration)]
    pub probe_interval: Duration,

    /// Mark an upstream down when it has answered nothing for this long while being asked
    /// (never because single queries were lost). A down upstream is still asked now and then and
    /// probed every 50 ms; its first reply marks it up.
    #[arg(long, env = "SPLITDNS_UNHEALTHY_AFTER", default_value = "1s", value_parser = duration)]
    pub unhealthy_after: Duration,

    /// Serve-stale (RFC 8767), off by default: keep the last good reply of forwarded names and,
    /// when no upstream answers within the budget, answer with it (TTL 30 s) for up to this long
    /// past its TTL.
    #[arg(long, env = "SPLITDNS_SERVE_STALE", value_parser = duration)]
    pub serve_stale: Option<Duration>,

    /// Memory for serve-stale replies (e.g. 1MiB, 512KiB, 100000).
    #[arg(long, env = "SPLITDNS_STALE_CACHE_SIZE", default_value = "1MiB", value_parser = bytes)]
    pub stale_cache_size: usize,

    /// The longest an alias target's answer is kept (it lives the smallest of this, the
    /// target's TTL and the rule's ttl; negative answers at most 1 s). The default is CoreDNS's
    /// TTL for pod records: a restarted pod's new IP is served within about this long.
    #[arg(long, env = "SPLITDNS_ALIAS_CACHE_TTL", default_value = "5s", value_parser = duration)]
    pub alias_cache_ttl: Duration,

    /// While no upstream answers for an alias target, serve its last good answer (TTL 30 s, EDE
    /// 3) for up to this long past its life ("0s" turns it off): the last known pod IP is the
    /// best answer the database can get during a cluster-DNS outage, and its TLS checks the peer.
    #[arg(long, env = "SPLITDNS_ALIAS_STALE", default_value = "10m", value_parser = duration)]
    pub alias_stale: Duration,

    /// Memory for alias target answers (e.g. 1MiB).
    #[arg(long, env = "SPLITDNS_ALIAS_CACHE_SIZE", default_value = "1MiB", value_parser = bytes)]
    pub alias_cache_size: usize,

    /// When listening beyond loopback, also answer clients in these networks (CIDR, comma-separated;
    /// "any" for everyone), over UDP with replies at most 3x their query (larger: truncated, TC).
    /// Clients of other addresses than this pod's own get no reply at all [default: none].
    #[arg(long, env = "SPLITDNS_ALLOW", value_delimiter = ',', value_parser = allow_net)]
    pub allow: Vec<Vec<crate::Net>>,

    /// Log one line per query (off by default: the hot path logs nothing).
    #[arg(long, env = "SPLITDNS_QUERY_LOG")]
    pub query_log: bool,

    /// Log filter (e.g. info, debug, splitdns=trace) [default: RUST_LOG, else info].
    #[arg(long, env = "SPLITDNS_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Log format.
    #[arg(long, env = "SPLITDNS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--admin`: an address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin(pub Option<SocketAddr>);

fn admin(s: &str) -> Result<Admin, String> {
    match s {
        "off" | "none" | "" => Ok(Admin(None)),
        _ => s
            .parse()
            .map(|a| Admin(Some(a)))
            .map_err(|e| format!("{e}: expected IP:PORT or \"off\"")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn upstream(s: &str) -> Result<SocketAddr, String> {
    config::parse_upstream(s).map_err(|e| e.to_string())
}

fn allow_net(s: &str) -> Result<Vec<crate::Net>, String> {
    match s.trim() {
        "any" => Ok(vec![
            crate::Net::parse("0.0.0.0/0")?,
            crate::Net::parse("::/0")?,
        ]),
        net => crate::Net::parse(net).map(|n| vec![n]),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 2s, 1m)"))
}

/// UDP workers unless `--workers` says otherwise: one, whatever the node. Measured here
/// (benches/footprint.sh): one worker answers over 300,000 local and 160,000 forwarded queries a
/// second, as many as two on this 2-core machine; under a CPU limit below one core two workers
/// only make the tail worse (they spend the period's quota at once: p99 107 ms against 41 ms for a
/// 2,000-query burst at 50m); and every worker costs two threads and its buffers. The old default,
/// one per usable core, gave 64 workers (131 threads, ~1,500 idle wake-ups a second) to a
/// container without a CPU limit on a 64-core node.
pub(crate) const DEFAULT_WORKERS: usize = 1;

fn bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 1MiB, 512KiB or 100000"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too large"))
}

fn ttl(s: &str) -> Result<u32, String> {
    let d = match s.parse::<u32>() {
        Ok(secs) => Duration::from_secs(u64::from(secs)),
        Err(_) => duration(s)?,
    };
    u32::try_from(d.as_secs())
        .ok()
        .filter(|t| *t <= crate::mapping::file::MAX_TTL)
        .ok_or_else(|| "TTL too large (RFC 2181 §8: at most 2^31-1 seconds)".to_owned())
}

impl Serve {
    /// Resolves defaults that depend on the machine (files present, the operator config's
    /// settings, resolv.conf) and checks the result.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mapping = match (self.config, self.mapping) {
            (Some(_), Some(_)) => return Err(ConfigError::TwoSources),
            (Some(c), None) => MappingSource::Operator(c),
            (None, Some(m)) => MappingSource::File(m),
            (None, None) if std::path::Path::new(OPERATOR_CONFIG).is_file() => {
                MappingSource::Operator(OPERATOR_CONFIG.into())
            }
            (None, None) if std::path::Path::new(DEFAULT_MAPPING).exists() => {
                MappingSource::File(DEFAULT_MAPPING.into())
            }
            (None, None) => MappingSource::Embedded,
        };
        // The operator's file names where to listen and the upstream; a flag (or its
        // environment variable) given as well wins, as flags do over files everywhere else.
        let settings = match &mapping {
            MappingSource::Operator(path) => crate::mapping::file::load_as(
                crate::mapping::file::Format::Operator,
                path,
                self.ttl,
            )?
            .operator
            .map(|(settings, _)| settings),
            _ => None,
        };
        let listen = match (self.listen.is_empty(), &settings) {
            (false, _) => self.listen,
            (true, Some(s)) => vec![s.listen],
            (true, None) => vec![DEFAULT_LISTEN],
        };
        let upstreams = match (self.upstream.is_empty(), &settings) {
            (false, _) => self.upstream,
            (true, Some(s)) => vec![s.resolver],
            (true, None) => config::system_upstreams()?,
        };
        config::check_loops(&listen, &upstreams)?;
        let workers = self.workers.unwrap_or(DEFAULT_WORKERS);
        Ok(Config {
            listen,
            mapping,
            upstreams,
            upstream_timeout: self.upstream_timeout,
            ttl: self.ttl,
            workers: workers.max(1),
            max_inflight: self.max_inflight.max(1),
            tcp_max_connections: self.tcp_max_connections.max(1),
            tcp_idle_timeout: self.tcp_idle_timeout,
            tcp_max_queries: self.tcp_max_queries.max(1),
            tcp_write_timeout: self.tcp_write_timeout.max(Duration::from_millis(100)),
            tcp_memory: self.tcp_memory,
            shutdown_grace: self.shutdown_grace,
            poll_interval: self.poll_interval.max(Duration::from_millis(50)),
            admin: self.admin.0,
            probe_interval: self.probe_interval.max(Duration::from_millis(100)),
            unhealthy_after: self.unhealthy_after.max(Duration::from_millis(100)),
            serve_stale: self.serve_stale,
            stale_cache_size: self.stale_cache_size,
            alias_cache_ttl: self.alias_cache_ttl.max(Duration::from_secs(1)),
            alias_stale: self.alias_stale,
            alias_cache_size: self.alias_cache_size,
            allow: self.allow.into_iter().flatten().collect(),
            query_log: self.query_log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec![
            "splitdns",
            "--upstream",
            "127.0.0.1:5399",
            "--mapping",
            "x.yaml",
        ];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .unwrap()
            .serve
            .into_config()
            .unwrap()
    }

    #[test]
    fn default_workers_follow_the_work_not_the_node() {
        // One worker whatever the machine has (this test machine's core count included).
        assert_eq!(config(&[]).workers, DEFAULT_WORKERS);
        assert_eq!(DEFAULT_WORKERS, 1);
        assert_eq!(
            config(&["--workers", "8"]).workers,
            8,
            "an explicit count is kept"
        );
        assert_eq!(config(&["--workers", "64"]).workers, 64);
        assert_eq!(config(&["--workers", "0"]).workers, 1, "at least one");
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["splitdns"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .serve
            .into_config()
            .map_err(|e| e.to_string())
    }

    /// `splitdns PATH` reads the operator's JSON: its listen and resolver are the defaults of
    /// --listen and --upstream, which win when given; --mapping and a path together are refused.
    #[test]
    fn the_operator_config_as_the_positional_argument() {
        let dir = std::env::temp_dir().join(format!("splitdns-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("dns.conf");
        std::fs::write(
            &conf,
            r#"{"listen": "127.0.0.1:1053", "resolver": "10.96.0.10", "rules": []}"#,
        )
        .unwrap();
        let path = conf.to_str().unwrap();
        let c = parse(&[path]).unwrap();
        assert_eq!(c.mapping, MappingSource::Operator(conf.clone()));
        assert_eq!(c.listen, ["127.0.0.1:1053".parse::<SocketAddr>().unwrap()]);
        assert_eq!(
            c.upstreams,
            ["10.96.0.10:53".parse::<SocketAddr>().unwrap()]
        );
        let c = parse(&["--admin", "off", path, "--listen", "127.0.0.1:2053"]).unwrap();
        assert_eq!(c.listen, ["127.0.0.1:2053".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.admin, None);
        let c = parse(&[path, "--upstream", "10.0.0.1:5300"]).unwrap();
        assert_eq!(
            c.upstreams,
            ["10.0.0.1:5300".parse::<SocketAddr>().unwrap()]
        );
        let e = parse(&[path, "--mapping", "x.yaml"]).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        std::fs::write(&conf, "{\"rules\": []}").unwrap();
        let e = parse(&[path]).unwrap_err();
        assert!(e.contains("dns.conf:1:1: `resolver` is required"), "{e}");
        let e = parse(&[dir.join("nope.conf").to_str().unwrap()]).unwrap_err();
        assert!(e.contains("nope.conf: cannot read"), "{e}");
        // `check` is still the subcommand.
        let cli = Cli::try_parse_from(["splitdns", "check", path]).unwrap();
        assert!(matches!(cli.command, Some(Command::Check { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn health_and_stale_flags() {
        let c = config(&[
            "--unhealthy-after",
            "2s",
            "--serve-stale",
            "1h",
            "--stale-cache-size",
            "512KiB",
        ]);
        assert_eq!(c.unhealthy_after, Duration::from_secs(2));
        assert_eq!(c.serve_stale, Some(Duration::from_secs(3600)));
        assert_eq!(c.stale_cache_size, 512 << 10);
        let d = config(&[]);
        assert_eq!(
            (d.serve_stale, d.stale_cache_size),
            (None, 1 << 20),
            "off by default"
        );
        assert!(bytes("3 parsecs").is_err());
    }
}
