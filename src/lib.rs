//! splitdns: a split-horizon DNS sidecar.
//!
//! Answers address queries for the FQDNs in a mapping file with their pod IPs and relays every
//! other query, unchanged, to the upstream DNS. The path of one query:
//!
//! ```text
//! server::udp::UdpWorker::serve / server::tcp   receive
//!   -> server::dispatch::handle           one path for both transports:
//!        dns::query::Query::read          header + question read once, on the stack
//!        dns::decide::decide              look the name up
//!          mapped     -> dns::reply       local answer written into a reused buffer, sent back
//!          alias rule -> alias            the target's records, from memory or after a lookup
//!          not mapped -> upstream::udp/tcp  bytes to the upstream, reply bytes back
//!   -> upstream::finish                   every passed-on query ends here: the reply (ID
//!                                         restored, kept for serve-stale, counted) or, with no
//!                                         reply in time, upstream::failure_reply
//! ```
//!
//! [`start`] wires the pieces and returns a handle that tests drive; [`run`] is the daemon.
// `unsafe` is denied everywhere but in `sys`, one small module with a SAFETY note per call.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub(crate) mod admin;
pub(crate) mod alias;
pub mod cli;
pub mod config;
pub mod dns;
pub(crate) mod lifecycle;
mod load;
pub mod mapping;
pub(crate) mod server;
pub(crate) mod shared;
pub mod stats;
pub(crate) mod sys;
pub(crate) mod upstream;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::{info, warn};

pub use config::{Config, ConfigError, MappingSource};
pub use load::{check_mapping, load_mapping};
pub use mapping::{MappingError, SharedMapping, Snapshot};
pub use server::allow::Net;

use admin::AdminState;
use load::{load_logged, spawn_reloader};
use mapping::reload::{ReloadStats, Reloader};
use shared::Shared;
use stats::Totals;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("cannot listen on {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot open a socket to the upstreams: {0}")]
    UpstreamSocket(#[source] io::Error),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
}

/// A started server. Dropping it without [`Running::shutdown`] leaves its threads running.
pub struct Running {
    shared: Arc<Shared>,
    admin_state: Arc<AdminState>,
    udp: Vec<server::udp::UdpHandle>,
    tcp: Vec<server::tcp::TcpHandle>,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    admin: Option<admin::AdminHandle>,
    prober: upstream::probe::ProberHandle,
    reloader: Option<Reloader>,
    grace: Duration,
}

/// Loads the mapping, binds every socket and starts serving. Nothing is started unless the
/// mapping and every socket are good. Must be called within a tokio runtime (TCP, admin and the
/// alias resolver run on it).
pub async fn start(config: Config) -> Result<Running, Error> {
    if config.listen.is_empty() {
        return Err(ConfigError::NoListen.into());
    }
    config::check_loops(&config.listen, &config.upstreams)?;
    let loaded = load_logged(&config)?;
    let settings = loaded.operator.map(|(s, _)| s);
    let mapping: SharedMapping = Arc::new(ArcSwap::from_pointee(loaded.snapshot));
    // Bind everything first: a port conflict must fail start-up before any thread runs.
    let mut bound = Vec::new();
    for addr in &config.listen {
        bound.push(bind_pair(*addr, config.workers)?);
    }
    let admin_listener = config.admin.map(bind_admin).transpose()?;

    let shared = Shared::new(mapping, &config);
    let (mut udp, mut tcp) = (Vec::new(), Vec::new());
    for (sockets, listener) in bound {
        udp.push(server::udp::spawn(&shared, sockets, &config).map_err(Error::Thread)?);
        tcp.push(server::tcp::spawn(&shared, listener, &config).map_err(Error::Thread)?);
    }
    // Alias target lookups go through the workers' relays (and over TCP when truncated).
    shared.alias.connect(
        udp.iter()
            .flat_map(|h| h.relays().iter().map(Arc::downgrade))
            .collect(),
        tokio::runtime::Handle::current(),
        Arc::new(upstream::tcp::TcpForwarder::new(
            shared.upstreams.clone(),
            config.upstream_timeout,
        )),
        shared.stats.block(stats::Proto::Tcp),
        shared.tasks.clone(),
    );
    let admin_state = Arc::new(AdminState {
        shared: shared.clone(),
        relays: udp
            .iter()
            .flat_map(|h| h.relays().iter().cloned())
            .collect(),
        ready_window: config.probe_interval + config.upstream_timeout,
    });
    let admin = admin_listener
        .map(|l| admin::spawn(l, admin_state.clone()))
        .transpose()
        .map_err(Error::Thread)?;
    let prober = upstream::probe::spawn(
        shared.upstreams.clone(),
        config.probe_interval,
        config.upstream_timeout,
        &shared.stop,
    )
    .map_err(Error::Thread)?;
    // The loop check runs in the background: start-up does not wait on the upstream, readiness
    // does.
    {
        let (s, ups, timeout) = (
            shared.clone(),
            config.upstreams.clone(),
            config.upstream_timeout,
        );
        let mut stop = shared.stop.subscribe();
        shared.tasks.spawn(async move {
            tokio::select! {
                _ = s.loop_guard.check(&ups, timeout) => {}
                _ = stop.changed() => {}
            }
        });
    }
    let reloader = spawn_reloader(&shared, &config, settings)?;
    log_started(&config);
    Ok(Running {
        udp_addrs: udp.iter().map(|h| h.addr).collect(),
        tcp_addrs: tcp.iter().map(|h| h.addr).collect(),
        shared,
        admin_state,
        udp,
        tcp,
        admin,
        prober,
        reloader,
        grace: config.shutdown_grace,
    })
}

fn log_started(config: &Config) {
    let ups: Vec<String> = config.upstreams.iter().map(|u| u.to_string()).collect();
    info!(
        workers = config.workers,
        upstreams = %ups.join(","),
        timeout_ms = config.upstream_timeout.as_millis() as u64,
        "splitdns started"
    );
}

fn bind_admin(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|source| Error::Bind {
            proto: "tcp (admin)",
            addr,
            source,
        })
}

/// Binds the UDP sockets and a TCP listener on the same address; with port 0 the TCP listener
/// takes the port the kernel gave UDP (retrying if TCP already has it elsewhere).
fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> Result<(Vec<UdpSocket>, std::net::TcpListener), Error> {
    let mut attempts = 0;
    loop {
        let udp = server::udp::bind(addr, workers).map_err(|source| Error::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        let port = udp[0].local_addr().map(|a| a.port()).unwrap_or(addr.port());
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match server::tcp::bind(tcp_addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && attempts < 20 => {
                attempts += 1;
                drop(e);
            }
            Err(source) => {
                return Err(Error::Bind {
                    proto: "tcp",
                    addr: tcp_addr,
                    source,
                });
            }
        }
    }
}

impl Running {
    /// The bound UDP addresses, one per `--listen`, with real ports.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// The bound TCP addresses (same ports as UDP).
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The admin endpoint's address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The live mapping (the reloader stores new snapshots here).
    pub fn mapping(&self) -> &SharedMapping {
        &self.shared.mapping
    }

    pub fn stats(&self) -> Totals {
        self.shared.stats.totals()
    }

    pub fn reload_stats(&self) -> &ReloadStats {
        &self.shared.reload
    }

    /// Whether each upstream is up (in `--upstream` order).
    pub fn upstreams_up(&self) -> Vec<bool> {
        let h = &self.shared.upstreams;
        (0..h.count()).map(|u| h.is_healthy(u)).collect()
    }

    /// What `/ready` says.
    pub fn readiness(&self) -> Result<(), String> {
        self.admin_state.readiness()
    }

    /// Re-reads the mapping now (SIGHUP does this). Returns at once; the reload runs on the
    /// reload thread.
    pub fn reload_now(&self) {
        if let Some(r) = &self.reloader {
            r.reload_now();
        }
    }

    /// The one shutdown path, for signals and tests alike: one stop signal (readiness turns 503
    /// at once, the sockets stop taking queries), in-flight forwards (UDP and TCP) get until one
    /// deadline, `--shutdown-grace` from now, to finish, every thread and tracked task is awaited
    /// (never a blocking join on the runtime thread), then the admin endpoint closes. Returns
    /// false if a thread had panicked or was still running (in release builds a panic aborts
    /// the process before that).
    pub async fn shutdown(self) -> bool {
        info!("shutting down");
        let deadline = Instant::now() + self.grace;
        // One signal: every thread is woken by its hook, every task sees the watch.
        self.shared.stop.signal(deadline);
        let udp = async {
            let mut clean = true;
            for h in self.udp {
                clean &= h.shutdown(deadline).await;
            }
            clean
        };
        let tcp = async {
            let mut drained = true;
            for h in self.tcp {
                drained &= h.shutdown(deadline).await;
            }
            if !drained {
                warn!("TCP connections still open after the shutdown grace period");
            }
            true
        };
        let reloader = async {
            match self.reloader {
                Some(r) => r.shutdown(deadline).await,
                None => true,
            }
        };
        let (udp, _, prober, reloader, tasks) = tokio::join!(
            udp,
            tcp,
            self.prober.shutdown(deadline),
            reloader,
            self.shared.tasks.drain(deadline)
        );
        // The admin endpoint last: it reported 503 meanwhile.
        if let Some(a) = self.admin {
            a.shutdown(deadline + Duration::from_secs(1)).await;
        }
        let clean = udp && prober && reloader;
        if !tasks {
            warn!("background tasks still running after the shutdown grace period");
        }
        info!("stopped");
        clean
    }
}

/// The daemon: start, serve until SIGTERM or SIGINT, shut down gracefully.
pub fn run(config: Config) -> Result<(), Error> {
    sys::tune_malloc();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async move {
        // Handlers first: a SIGTERM that arrives while starting must still mean a clean stop,
        // not the default action (death by signal).
        let signals = Signals::install();
        let running = start(config).await?;
        // Start-up is over: its code and its garbage need not stay resident (see `sys`).
        sys::trim_heap();
        sys::release_code_pages();
        // Start-up is not quite over when `start` returns: the loop check, the first probe round
        // and the first reload poll run in the first seconds. Drop their code once more (a
        // one-off timer; the hot path's pages come back on first use).
        let mut stop = running.shared.stop.subscribe();
        running.shared.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(10)) => sys::release_code_pages(),
                _ = stop.changed() => {}
            }
        });
        wait_for_stop(&running, signals).await;
        running.shutdown().await;
        Ok(())
    })
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment they are installed.
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(i), Ok(h)) => Signals(Some((t, i, h))),
            _ => Signals(None),
        }
    }
}

/// Serves until SIGTERM or SIGINT; SIGHUP reloads the mapping.
async fn wait_for_stop(running: &Running, signals: Signals) {
    let Some((mut term, mut int, mut hup)) = signals.0 else {
        // Without signal handlers there is no clean way to stop; serve until killed.
        warn!("cannot install signal handlers; serving until killed");
        return std::future::pending::<()>().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return info!("SIGTERM received"),
            _ = int.recv() => return info!("SIGINT received"),
            _ = hup.recv() => {
                info!("SIGHUP received: reloading the mapping");
                running.reload_now();
            }
        }
    }
}
