//! splitdns: a split-horizon DNS sidecar.
//!
//! Answers address queries for the FQDNs in a mapping file with their pod IPs and relays every
//! other query, unchanged, to the upstream DNS. The path of one query:
//!
//! ```text
//! server::udp::serve / server::tcp        receive
//!   -> dns::answer::decide                parse header + question, look the name up
//!        mapped     -> local answer       written into a reused buffer, sent back
//!        not mapped -> upstream::udp/tcp  bytes to the upstream, reply bytes back
//! ```
//!
//! [`start`] wires the pieces and returns a handle that tests drive; [`run`] is the daemon.
// `unsafe` is denied everywhere but in `sys`, one small module with a SAFETY note per call.
#![deny(unsafe_code)]

pub mod admin;
pub mod alias;
pub mod cli;
pub mod config;
pub mod dns;
pub mod mapping;
pub mod server;
pub mod stats;
pub mod sys;
pub mod upstream;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

pub use config::{Config, ConfigError, MappingSource};
pub use mapping::{MappingError, SharedMapping, Snapshot};

use admin::AdminState;
use alias::AliasResolver;
use mapping::reload::{ReloadStats, Reloader};
use server::tcp::{TcpContext, TcpLimits};
use server::udp::UdpWorker;
use stats::{Proto, Stats, Totals};
use upstream::health::UpstreamHealth;
use upstream::probe::LoopGuard;
use upstream::stale::StaleCache;
use upstream::tcp::TcpForwarder;
use upstream::udp::UdpRelay;

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

/// Loads and validates the configured mapping.
pub fn load_mapping(source: &MappingSource, default_ttl: u32) -> Result<Snapshot, MappingError> {
    match source {
        MappingSource::File(path) => mapping::file::load(path, default_ttl),
        MappingSource::Embedded => {
            mapping::file::parse(config::EMBEDDED_MAPPING, "<built-in example>", default_ttl)
        }
    }
}

/// Validates a mapping file or directory and summarises it (for `splitdns check`).
pub fn check_mapping(path: &std::path::Path) -> Result<String, MappingError> {
    let snapshot = mapping::file::load(path, 5)?;
    let (names, v4, v6) = snapshot.summary();
    Ok(format!(
        "{}: OK: {names} names, {v4} IPv4 and {v6} IPv6 addresses, content hash {}",
        path.display(),
        snapshot.short_hash()
    ))
}

/// A started server. Dropping it without [`Running::shutdown`] leaves its threads running.
pub struct Running {
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    admin: Arc<AdminState>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Shut down for reading at stop: wakes the UDP workers blocked on them.
    udp_sockets: Vec<Arc<UdpSocket>>,
    prober: upstream::probe::ProberStop,
    /// Stops the TCP listener and the prober at the start of shutdown.
    stop: watch::Sender<bool>,
    /// Stops the admin endpoint at the very end (it reports 503 meanwhile).
    admin_stop: watch::Sender<bool>,
    tcp_connections: Arc<Semaphore>,
    tcp_max: usize,
    grace: Duration,
    reloader: Option<Reloader>,
}

/// Loads the mapping, binds every socket and starts serving. Nothing is started unless all of
/// it succeeds. Must be called within a tokio runtime (TCP, admin and probes run on it).
pub async fn start(config: Config) -> Result<Running, Error> {
    if config.listen.is_empty() {
        return Err(ConfigError::NoListen.into());
    }
    config::check_loops(&config.listen, &config.upstreams)?;
    let t0 = Instant::now();
    let snapshot = load_mapping(&config.mapping, config.ttl)?;
    let (names, v4, v6) = snapshot.summary();
    info!(
        names,
        v4,
        v6,
        hash = %snapshot.short_hash(),
        source = %describe_source(&config.mapping),
        elapsed_ms = t0.elapsed().as_secs_f64() * 1e3,
        "mapping loaded"
    );
    if config.mapping == MappingSource::Embedded {
        warn!("no --mapping given and config/mapping.yaml not found: serving the built-in example");
    }
    let mapping: SharedMapping = Arc::new(ArcSwap::from_pointee(snapshot));
    let reload_stats = Arc::new(ReloadStats::default());
    mapping::reload::stamp_initial(&reload_stats);

    // Bind everything first: a port conflict must fail start-up before any thread runs.
    let mut bound = Vec::new();
    for addr in &config.listen {
        bound.push(bind_pair(*addr, config.workers)?);
    }
    let admin_listener = match config.admin {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|source| Error::Bind {
                    proto: "tcp (admin)",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    for addr in &config.listen {
        if !addr.ip().is_loopback() {
            // An open resolver on a pod network can be abused for amplification.
            warn!(%addr, "listening on a non-loopback address: make sure only the pod can reach it");
        }
    }

    let stats = Arc::new(Stats::new(config.upstreams.len()));
    let health = Arc::new(UpstreamHealth::new(
        &config.upstreams,
        config.unhealthy_after,
    ));
    let stale = config
        .serve_stale
        .map(|d| Arc::new(StaleCache::new(config.stale_cache_size, d)));
    let loop_guard = Arc::new(LoopGuard::new());
    let stopping = Arc::new(AtomicBool::new(false));
    let (stop, stop_rx) = watch::channel(false);
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    let tcp_connections = Arc::new(Semaphore::new(config.tcp_max_connections));
    let alias = Arc::new(AliasResolver::new(
        &config.upstreams,
        config.upstream_timeout,
        mapping.clone(),
    ));
    let (alias_tx, alias_rx) = tokio::sync::mpsc::channel(alias::QUEUE);
    tokio::spawn(alias::run_udp(alias.clone(), alias_rx));
    let tcp_ctx = Arc::new(TcpContext {
        mapping: mapping.clone(),
        forwarder: TcpForwarder::new(health.clone(), config.upstream_timeout, stale.clone()),
        alias,
        stats: stats.block(Proto::Tcp),
        limits: TcpLimits {
            idle_timeout: config.tcp_idle_timeout,
            max_queries: config.tcp_max_queries,
        },
        query_log: config.query_log,
    });

    let mut threads = Vec::new();
    let mut relays = Vec::new();
    let mut worker_sockets = Vec::new();
    let (mut udp_addrs, mut tcp_addrs) = (Vec::new(), Vec::new());
    for (udp_sockets, tcp_listener) in bound {
        let udp_addr = udp_sockets[0].local_addr().map_err(Error::Thread)?;
        for (i, socket) in udp_sockets.into_iter().enumerate() {
            let socket = Arc::new(socket);
            let block = stats.block(Proto::Udp);
            let (relay, relay_loop) = UdpRelay::new(
                health.clone(),
                config.upstream_timeout,
                config.max_inflight,
                socket.clone(),
                block.clone(),
                stale.clone(),
            )
            .map_err(Error::UpstreamSocket)?;
            threads.push(spawn(format!("relay-{i}"), move || relay_loop.run())?);
            let worker = UdpWorker {
                socket: socket.clone(),
                mapping: mapping.clone(),
                relay: relay.clone(),
                stats: block,
                loop_guard: loop_guard.clone(),
                query_log: config.query_log,
                alias: alias_tx.clone(),
            };
            threads.push(spawn(format!("udp-{i}"), move || worker.serve())?);
            relays.push(relay);
            worker_sockets.push(socket);
        }
        info!("listening on udp {udp_addr}");
        let tcp_addr = tcp_listener.local_addr().map_err(Error::Thread)?;
        let listener =
            tokio::net::TcpListener::from_std(tcp_listener).map_err(|source| Error::Bind {
                proto: "tcp",
                addr: tcp_addr,
                source,
            })?;
        tokio::spawn(server::tcp::serve(
            listener,
            tcp_ctx.clone(),
            tcp_connections.clone(),
            stop_rx.clone(),
        ));
        info!("listening on tcp {tcp_addr}");
        udp_addrs.push(udp_addr);
        tcp_addrs.push(tcp_addr);
    }

    let admin = Arc::new(AdminState {
        stats,
        reload: reload_stats.clone(),
        mapping: mapping.clone(),
        relays,
        health: health.clone(),
        loop_guard: loop_guard.clone(),
        stopping,
        ready_window: config.probe_interval + config.upstream_timeout,
    });
    let admin_addr = match admin_listener {
        Some(l) => {
            let addr = l.local_addr().map_err(Error::Thread)?;
            tokio::spawn(admin::serve(l, admin.clone(), admin_stop_rx));
            info!("admin listening on http://{addr} (/live /ready /metrics)");
            Some(addr)
        }
        None => None,
    };

    // The loop check runs once, the prober for good; both in the background so that start-up
    // does not wait on the upstream (readiness does).
    {
        let (guard, ups, timeout) = (
            loop_guard,
            config.upstreams.clone(),
            config.upstream_timeout,
        );
        tokio::spawn(async move { guard.check(&ups, timeout).await });
    }
    let (prober, prober_stop) =
        upstream::probe::Prober::new(health, config.probe_interval, config.upstream_timeout)
            .map_err(Error::UpstreamSocket)?;
    threads.push(spawn("probe".into(), move || prober.run())?);

    let reloader = match &config.mapping {
        MappingSource::File(path) => Some(
            Reloader::spawn(
                path.clone(),
                config.ttl,
                config.poll_interval,
                mapping,
                reload_stats,
            )
            .map_err(Error::Thread)?,
        ),
        MappingSource::Embedded => None,
    };
    let ups: Vec<String> = config.upstreams.iter().map(|u| u.to_string()).collect();
    info!(
        workers = config.workers,
        upstreams = %ups.join(","),
        timeout_ms = config.upstream_timeout.as_millis() as u64,
        "splitdns started"
    );
    Ok(Running {
        udp_addrs,
        tcp_addrs,
        admin_addr,
        admin,
        threads,
        udp_sockets: worker_sockets,
        prober: prober_stop,
        stop,
        admin_stop,
        tcp_connections,
        tcp_max: config.tcp_max_connections,
        grace: config.shutdown_grace,
        reloader,
    })
}

fn describe_source(source: &MappingSource) -> String {
    match source {
        MappingSource::File(p) => p.display().to_string(),
        MappingSource::Embedded => "<built-in example>".into(),
    }
}

fn spawn(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(Error::Thread)
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
        self.admin_addr
    }

    /// The live mapping (the reloader stores new snapshots here).
    pub fn mapping(&self) -> &SharedMapping {
        &self.admin.mapping
    }

    pub fn stats(&self) -> Totals {
        self.admin.stats.totals()
    }

    pub fn reload_stats(&self) -> &ReloadStats {
        &self.admin.reload
    }

    /// Whether each upstream is up (in `--upstream` order).
    pub fn upstreams_up(&self) -> Vec<bool> {
        let h = &self.admin.health;
        (0..h.count()).map(|u| h.is_healthy(u)).collect()
    }

    /// What `/ready` says.
    pub fn readiness(&self) -> Result<(), String> {
        self.admin.readiness()
    }

    /// Re-reads the mapping now (SIGHUP does this). Returns at once; the reload runs on the
    /// reload thread.
    pub fn reload_now(&self) {
        if let Some(r) = &self.reloader {
            r.reload_now();
        }
    }

    /// The one shutdown path, for signals and tests alike: readiness turns 503 at once, the
    /// sockets stop taking queries, in-flight forwards (UDP and TCP) get up to the grace period
    /// to finish, every thread is joined, then the admin endpoint closes. Returns false if a
    /// thread had panicked (in release builds a panic aborts the process before that).
    pub async fn shutdown(self) -> bool {
        info!("shutting down");
        // One deadline for every drain (UDP relays and TCP connections alike).
        let deadline = Instant::now() + self.grace;
        self.admin.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        for socket in &self.udp_sockets {
            sys::stop_receiving(socket);
        }
        for relay in &self.admin.relays {
            relay.stop(deadline);
        }
        self.prober.stop();
        if let Some(r) = self.reloader {
            r.stop();
        }
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|t| t.join())
                .filter(Result::is_err)
                .count()
        });
        let tcp_drained = tokio::time::timeout_at(
            deadline.into(),
            self.tcp_connections.acquire_many(self.tcp_max as u32),
        );
        let (panicked, drained) = tokio::join!(joined, tcp_drained);
        let panicked = panicked.unwrap_or(1);
        if panicked > 0 {
            tracing::error!(panicked, "threads panicked");
        }
        if drained.is_err() {
            warn!("TCP connections still open after the shutdown grace period");
        }
        let _ = self.admin_stop.send(true);
        info!("stopped");
        panicked == 0
    }
}

/// The daemon: start, serve until SIGTERM or SIGINT, shut down gracefully.
pub fn run(config: Config) -> Result<(), Error> {
    sys::single_malloc_arena();
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
