//! The admin HTTP endpoint (`--admin`, default 127.0.0.1:9253, CoreDNS's metrics port):
//! `GET /live`, `GET /ready`, `GET /metrics`, on hyper.
//!
//! Readiness is what an operator needs before sending traffic: the mapping is loaded and every
//! DNS socket bound (both hold once `start()` returned), at least one upstream answered a probe
//! recently, no forwarding loop was detected, and we are not shutting down. Liveness only says
//! the process serves HTTP, so that an upstream outage never gets the sidecar restarted.
//!
//! Metrics are read at scrape time from the per-worker counters (summed here, never on the hot
//! path) through a custom prometheus-client `Collector`; label sets are small and fixed
//! (protocol, outcome, upstream address).
//!
//! No client can stall the endpoint (issue 19: 100 slow-header connections from another pod made
//! every `/live` probe fail): each connection carries one request, which must send its headers
//! within [`HEADER_READ_TIMEOUT`] and be done within [`REQUEST_TIMEOUT`]; at most
//! [`MAX_CONNECTIONS`] are served at once, and when all are taken a new connection evicts an old
//! one ([`Live::evict`]) instead of waiting for it. Header size and hyper's buffers are capped.
//! How the connections end is counted in `splitdns_admin_connections_total{outcome}`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::AbortHandle;

use crate::dns::outcome::Outcome;
use crate::shared::Shared;
use crate::stats::{HistogramTotals, LATENCY_BUCKETS};
use crate::upstream::udp::UdpRelay;

/// Admin connections served at once (each is one task holding one permit: tasks stay bounded).
/// When every slot is taken, a new connection evicts an old one instead of waiting. 32 slots
/// at [`MAX_BUF`] bytes of buffer each bound the endpoint's buffers to 0.5 MiB (measured: the
/// process grew by 1.3 MB with every slot holding almost 8 KiB of unfinished headers).
const MAX_CONNECTIONS: usize = 32;
/// The request line and headers must arrive within this long of the connection being taken up.
/// Kubelet and Prometheus send their request in one small segment right after the handshake, and
/// kubelet gives up after `timeoutSeconds` (1 s by default and in the manifests) anyway: 2 s
/// leaves room for a retransmission or two of that segment (Linux's minimum RTO is 200 ms) and
/// frees a slow-loris slot within 2 s even with nobody else connecting.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Everything, headers included, within this long: after the headers only the answer is left
/// to write (a few KB; `/metrics` the most), so this only ends clients that do not read it.
/// Under Prometheus's default `scrape_timeout` (10 s), far over any real scrape of this endpoint.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Request line plus headers, at most (RFC 9110 §5.4: a server may refuse larger ones; hyper
/// answers 431 and closes). Kubelet's probes and Prometheus's scrapes send a few hundred bytes;
/// 8 KiB is the common limit of web servers.
const MAX_HEADER_SIZE: usize = 8 * 1024;
/// hyper's buffer per connection (its default is about 400 KB; 8 KiB is its minimum).
const MAX_BUF: usize = 16 * 1024;
/// How long the accept loop waits for an evicted connection's slot to be handed back. Aborting
/// a task frees its slot the next time the runtime runs it, within microseconds; this only
/// bounds the wait if the runtime is starved, after which the new connection is closed.
const EVICTION_WAIT: Duration = Duration::from_millis(500);

/// What the admin endpoint reads.
pub(crate) struct AdminState {
    pub shared: Arc<Shared>,
    pub relays: Vec<Arc<UdpRelay>>,
    /// An upstream must have answered a probe within this window for `/ready`.
    pub ready_window: Duration,
}

impl AdminState {
    /// `Ok` when ready, else the reason.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if self.shared.stop.is_set() {
            return Err("shutting down".into());
        }
        if self.shared.loop_guard.detected() {
            return Err(
                "forwarding loop detected: the upstream sends our queries back to us".into(),
            );
        }
        if !self.shared.upstreams.any_answered_within(self.ready_window) {
            let ups: Vec<String> = (0..self.shared.upstreams.count())
                .map(|u| self.shared.upstreams.addr(u).to_string())
                .collect();
            return Err(format!(
                "no upstream answered a probe in the last {:?} ({})",
                self.ready_window,
                ups.join(", ")
            ));
        }
        Ok(())
    }
}

/// The Prometheus text exposition of every metric.
fn metrics_text(state: &Arc<AdminState>, conns: &Arc<ConnStats>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics(state.clone(), conns.clone())));
    let mut out = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// How an admin connection ended, for `splitdns_admin_connections_total{outcome}`.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Answered (or closed by the client before asking anything).
    Ok,
    /// Malformed or oversized request head: hyper answered 400, 414 or 431 and closed.
    BadRequest,
    /// The headers did not arrive within [`HEADER_READ_TIMEOUT`].
    HeaderTimeout,
    /// Not done within [`REQUEST_TIMEOUT`] (an answer the client does not read).
    Timeout,
    /// Closed to make room for a newer connection.
    Evicted,
    /// A new connection closed at once: no slot came free within [`EVICTION_WAIT`].
    Rejected,
    /// Reset or cut off by the client.
    Error,
}

impl End {
    const ALL: [End; 7] = [
        End::Ok,
        End::BadRequest,
        End::HeaderTimeout,
        End::Timeout,
        End::Evicted,
        End::Rejected,
        End::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            End::Ok => "ok",
            End::BadRequest => "bad_request",
            End::HeaderTimeout => "header_timeout",
            End::Timeout => "timeout",
            End::Evicted => "evicted",
            End::Rejected => "rejected",
            End::Error => "error",
        }
    }
}

/// Counters of the admin endpoint's own connections (an attack on it shows in its metrics).
#[derive(Default)]
struct ConnStats {
    ended: [AtomicU64; End::ALL.len()],
    open: AtomicU64,
}

impl ConnStats {
    fn count(&self, end: End) {
        self.ended[end as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The live connections in accept order (the key), with their peer's address, so that the
/// one to evict can be found.
#[derive(Default)]
struct Live {
    next: u64,
    tasks: BTreeMap<u64, (IpAddr, AbortHandle)>,
}

impl Live {
    /// Takes out the connection to evict: the oldest of the address that holds the most slots.
    ///
    /// Oldest rather than idle-longest: every connection carries one request (no keep-alive), a
    /// real client's takes milliseconds, and a slow-loris client that trickles a byte now and
    /// then would look busy to an idleness measure but still ages. The busiest address first:
    /// kubelet probes from the node's address and Prometheus from its pod's, one connection at
    /// a time each, so a flood from another address (a pod that reconnects as fast as it is
    /// evicted) only ever evicts its own connections, even a probe whose request is slow to
    /// follow its handshake. Attackers behind many addresses get plain oldest-first.
    fn evict(&mut self) -> Option<AbortHandle> {
        let mut per_ip: HashMap<IpAddr, usize> = HashMap::with_capacity(self.tasks.len());
        for (ip, _) in self.tasks.values() {
            *per_ip.entry(*ip).or_default() += 1;
        }
        let most = per_ip.values().copied().max()?;
        // Keys are in accept order: the first found is that address's oldest.
        let id = self
            .tasks
            .iter()
            .find(|(_, (ip, _))| per_ip.get(ip) == Some(&most))
            .map(|(id, _)| *id)?;
        self.tasks.remove(&id).map(|(_, task)| task)
    }
}

type SharedLive = Arc<Mutex<Live>>;

fn lock(live: &SharedLive) -> std::sync::MutexGuard<'_, Live> {
    live.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes a connection from [`Live`] and hands its slot back however its task ends: finished,
/// timed out or aborted (an aborted task's future is dropped, and this with it).
struct Slot {
    id: u64,
    live: SharedLive,
    conns: Arc<ConnStats>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.live).tasks.remove(&self.id);
        self.conns.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The running admin endpoint. It outlives the data plane's stop (reporting 503 meanwhile) and
/// closes last.
pub(crate) struct AdminHandle {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AdminHandle {
    /// Closes the endpoint (after the data plane has drained: until then it reports 503) and
    /// awaits its task until `deadline`.
    pub(crate) async fn shutdown(self, deadline: std::time::Instant) -> bool {
        self.stop.send_replace(true);
        tokio::time::timeout_at(deadline.into(), self.task)
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Serves `/live`, `/ready` and `/metrics` on `listener` (bound by the caller, so that a port
/// conflict fails start-up before anything runs).
///
/// One listener for all three, on purpose. A second one for `/live` and `/ready` alone (a
/// `--health` address) was considered, so that a NetworkPolicy could admit kubelet to one port
/// and Prometheus to the other. It would buy little: kubelet probes from the node, which
/// NetworkPolicy cannot select and most CNIs always admit, so with one port fenced to Prometheus
/// (config/kubernetes/networkpolicy.yaml) only the node and Prometheus reach any of it, and the
/// eviction below keeps `/live` answered even when they flood it. It would cost a second port to
/// declare, probe and fence in every manifest, and a new way to misconfigure the probes.
pub(crate) fn spawn(listener: TcpListener, state: Arc<AdminState>) -> std::io::Result<AdminHandle> {
    let addr = listener.local_addr()?;
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, state, rx));
    tracing::info!("admin listening on http://{addr} (/live /ready /metrics)");
    Ok(AdminHandle { addr, stop, task })
}

/// The HTTP/1 settings of every admin connection.
fn builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // One request per connection: a client cannot hold a slot between requests, and
        // "oldest connection" means "the request that has taken longest".
        .keep_alive(false)
        .max_header_size(MAX_HEADER_SIZE)
        .max_buf_size(MAX_BUF);
    b
}

async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let live: SharedLive = Arc::default();
    let conns = Arc::new(ConnStats::default());
    let http = Arc::new(builder());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let Ok((stream, peer)) = accepted else {
            // EMFILE and the like: back off briefly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(permit) = take_slot(&slots, &live, &conns).await else {
            conns.count(End::Rejected);
            continue; // dropping `stream` closes it
        };
        conns.open.fetch_add(1, Ordering::Relaxed);
        // Registered under the lock that the task's `Slot` needs to remove it, so that even a
        // task that finishes at once (another worker thread) is removed after it was added.
        {
            let mut l = lock(&live);
            let id = l.next;
            l.next += 1;
            let slot = Slot {
                id,
                live: live.clone(),
                conns: conns.clone(),
                _permit: permit,
            };
            let task = tokio::spawn(connection(
                stream,
                http.clone(),
                state.clone(),
                conns.clone(),
                slot,
            ));
            l.tasks.insert(id, (peer.ip(), task.abort_handle()));
        }
        // Lets the connection just accepted run before the next accept: its request is usually
        // in already, so it is answered before a burst of newer connections could evict it.
        tokio::task::yield_now().await;
    }
    // Stopped: close what is still open.
    let open = std::mem::take(&mut lock(&live).tasks);
    for (_, task) in open.values() {
        task.abort();
    }
}

/// A slot for a new connection: a free one, else one taken from a connection evicted for it
/// ([`Live::evict`]). A new connection never waits behind slow ones (the old blocking accept
/// let 16 of them lock kubelet's probes out: issue 19).
async fn take_slot(
    slots: &Arc<Semaphore>,
    live: &SharedLive,
    conns: &ConnStats,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = slots.clone().try_acquire_owned() {
        return Some(p);
    }
    // Taken out of `live` at once, so that the next eviction picks another even if this one's
    // task has not run yet (issue 19: DNS over TCP kept evicting one stuck connection).
    let evicted = lock(live).evict();
    if let Some(task) = evicted {
        task.abort();
        conns.count(End::Evicted);
    }
    // Every permit belongs to a task in `live` or to one aborted just now (whose slot comes back
    // as soon as the runtime drops it).
    tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// One connection: one request, within [`REQUEST_TIMEOUT`].
async fn connection(
    stream: TcpStream,
    http: Arc<http1::Builder>,
    state: Arc<AdminState>,
    conns: Arc<ConnStats>,
    slot: Slot,
) {
    let routes = conns.clone();
    let service = service_fn(move |req| {
        let (state, routes) = (state.clone(), routes.clone());
        async move { Ok::<_, Infallible>(route(&req, &state, &routes)) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let end = match tokio::time::timeout(REQUEST_TIMEOUT, conn).await {
        Ok(Ok(())) => End::Ok,
        Ok(Err(e)) if e.is_timeout() => End::HeaderTimeout,
        Ok(Err(e)) if e.is_parse() => End::BadRequest,
        Ok(Err(_)) => End::Error,
        Err(_) => End::Timeout,
    };
    conns.count(end);
    drop(slot);
}

fn route(
    req: &Request<Incoming>,
    state: &Arc<AdminState>,
    conns: &Arc<ConnStats>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "ok\n".into()),
        "/ready" => match state.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            let mut r = text(StatusCode::OK, metrics_text(state, conns));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /live, /ready, /metrics\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The collector: reads everything at scrape time.
struct Metrics(Arc<AdminState>, Arc<ConnStats>);

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("splitdns metrics")
    }
}

/// A value written through prometheus-client's encoder.
struct Value {
    kind: MetricType,
    v: f64,
}

impl EncodeMetric for Value {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> fmt::Result {
        match self.kind {
            MetricType::Counter => encoder.encode_counter::<NoLabelSet, _, u64>(&self.v, None),
            _ => encoder.encode_gauge(&self.v),
        }
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: &[(Vec<(&str, String)>, f64)],
) -> fmt::Result {
    let mut m = encoder.encode_descriptor(name, help, None, kind)?;
    if let [(labels, v)] = series
        && labels.is_empty()
    {
        return Value { kind, v: *v }.encode(m);
    }
    for (labels, v) in series {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Value { kind, v: *v }.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramTotals,
) -> fmt::Result {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
        .iter()
        .zip(h.buckets.iter())
        .map(|(le, n)| (*le, *n))
        .collect();
    buckets.push((f64::INFINITY, h.buckets[LATENCY_BUCKETS.len()]));
    m.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count(), &buckets, None)
}

/// The alias target cache: what it answered from memory and how full it is.
fn alias_metrics(e: &mut DescriptorEncoder, alias: &crate::alias::AliasResolver) -> fmt::Result {
    let (c, (kept, bytes, lookups, waiting)) = alias.metrics();
    let counters = [
        (
            "splitdns_alias_cache_hits",
            "Alias queries answered from a fresh cached target.",
            c.hits,
        ),
        (
            "splitdns_alias_cache_misses",
            "Alias queries that waited for a target lookup.",
            c.misses,
        ),
        (
            "splitdns_alias_cache_refreshes",
            "Background lookups of targets asked in the last quarter of their life (prefetch).",
            c.refreshes,
        ),
        (
            "splitdns_alias_cache_stale_answers",
            "Alias queries answered with a target's last good records while no upstream answered for it.",
            c.stale,
        ),
        (
            "splitdns_alias_cache_shed",
            "Alias queries answered SERVFAIL at once: too many lookups or waiting clients.",
            c.shed,
        ),
    ];
    for (name, help, v) in counters {
        family(e, name, help, MetricType::Counter, &[(vec![], v as f64)])?;
    }
    let gauges = [
        (
            "splitdns_alias_cache_entries",
            "Alias targets with an answer kept.",
            kept,
        ),
        (
            "splitdns_alias_cache_bytes",
            "Bytes of alias target answers kept.",
            bytes,
        ),
        (
            "splitdns_alias_lookups_inflight",
            "Alias target lookups waiting for the upstream.",
            lookups,
        ),
        (
            "splitdns_alias_waiting_clients",
            "Alias queries waiting for a target lookup.",
            waiting,
        ),
    ];
    for (name, help, v) in gauges {
        family(e, name, help, MetricType::Gauge, &[(vec![], v as f64)])?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        let t = s.shared.stats.totals();
        let mut queries = Vec::new();
        for (proto, counts) in [("udp", &t.udp), ("tcp", &t.tcp)] {
            for o in Outcome::ALL {
                queries.push((
                    vec![
                        ("proto", proto.to_owned()),
                        ("outcome", o.label().to_owned()),
                    ],
                    counts[o as usize] as f64,
                ));
            }
        }
        family(
            &mut e,
            "splitdns_queries",
            "DNS queries by protocol and outcome.",
            MetricType::Counter,
            &queries,
        )?;
        histogram(
            &mut e,
            "splitdns_local_answer_seconds",
            "Time to decide and send a local answer (UDP, sampled 1 in 64).",
            &t.local_latency,
        )?;
        histogram(
            &mut e,
            "splitdns_forward_seconds",
            "Time from forwarding a query to relaying the upstream's reply.",
            &t.forward_latency,
        )?;
        let per_upstream = |f: &dyn Fn(usize) -> f64| -> Vec<(Vec<(&str, String)>, f64)> {
            (0..s.shared.upstreams.count())
                .map(|u| {
                    (
                        vec![("upstream", s.shared.upstreams.addr(u).to_string())],
                        f(u),
                    )
                })
                .collect()
        };
        let up = |u: usize| t.upstreams.get(u).copied().unwrap_or_default();
        family(
            &mut e,
            "splitdns_upstream_requests",
            "Copies of queries sent to each upstream (re-sends included).",
            MetricType::Counter,
            &per_upstream(&|u| up(u).requests as f64),
        )?;
        family(
            &mut e,
            "splitdns_upstream_retransmits",
            "Copies re-sent to each upstream after a retransmission timeout or a failed attempt.",
            MetricType::Counter,
            &per_upstream(&|u| up(u).retransmits as f64),
        )?;
        family(
            &mut e,
            "splitdns_upstream_timeouts",
            "Copies an upstream did not answer before their retransmission timer fired.",
            MetricType::Counter,
            &per_upstream(&|u| up(u).timeouts as f64),
        )?;
        family(
            &mut e,
            "splitdns_upstream_errors",
            "Network errors talking to an upstream (ICMP unreachable, refused, reset).",
            MetricType::Counter,
            &per_upstream(&|u| up(u).errors as f64),
        )?;
        family(
            &mut e,
            "splitdns_upstream_healthy",
            "1 while the upstream is up, 0 while it is down (silent for the window while asked).",
            MetricType::Gauge,
            &per_upstream(&|u| f64::from(u8::from(s.shared.upstreams.is_healthy(u)))),
        )?;
        let inflight: usize = s.relays.iter().map(|r| r.inflight()).sum();
        family(
            &mut e,
            "splitdns_forwards_inflight",
            "UDP queries forwarded and waiting for a reply.",
            MetricType::Gauge,
            &[(vec![], inflight as f64)],
        )?;
        alias_metrics(&mut e, &s.shared.alias)?;
        let snapshot = s.shared.mapping.load();
        family(
            &mut e,
            "splitdns_mapping_entries",
            "Names in the mapping in service.",
            MetricType::Gauge,
            &[(vec![], snapshot.len() as f64)],
        )?;
        family(
            &mut e,
            "splitdns_mapping_info",
            "Content hash of the mapping in service.",
            MetricType::Gauge,
            &[(vec![("hash", snapshot.short_hash())], 1.0)],
        )?;
        family(
            &mut e,
            "splitdns_mapping_last_reload_timestamp_seconds",
            "Unix time of the last successful mapping load.",
            MetricType::Gauge,
            &[(
                vec![],
                s.shared.reload.last_success_unix.load(Ordering::Relaxed) as f64,
            )],
        )?;
        family(
            &mut e,
            "splitdns_mapping_reloads",
            "Mappings published after start.",
            MetricType::Counter,
            &[(
                vec![],
                s.shared.reload.reloads.load(Ordering::Relaxed) as f64,
            )],
        )?;
        family(
            &mut e,
            "splitdns_mapping_reload_failures",
            "Reloads rejected (the last good mapping stayed in service).",
            MetricType::Counter,
            &[(
                vec![],
                s.shared.reload.failures.load(Ordering::Relaxed) as f64,
            )],
        )?;
        family(
            &mut e,
            "splitdns_mapping_source_rejected",
            "1 while the mapping source on disk is one that was rejected (the mapping in service is older).",
            MetricType::Gauge,
            &[(
                vec![],
                f64::from(u8::from(
                    s.shared.reload.source_rejected.load(Ordering::Relaxed),
                )),
            )],
        )?;
        family(
            &mut e,
            "splitdns_ready",
            "1 when /ready answers 200.",
            MetricType::Gauge,
            &[(vec![], f64::from(u8::from(s.readiness().is_ok())))],
        )?;
        family(
            &mut e,
            "splitdns_build_info",
            "Build information.",
            MetricType::Gauge,
            &[(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1.0)],
        )?;
        let c = &self.1;
        family(
            &mut e,
            "splitdns_admin_connections",
            "Connections to this admin endpoint by how they ended (evicted: closed to make room \
             for a newer one when every slot was taken).",
            MetricType::Counter,
            &End::ALL
                .iter()
                .map(|end| {
                    (
                        vec![("outcome", end.label().to_owned())],
                        c.ended[*end as usize].load(Ordering::Relaxed) as f64,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        family(
            &mut e,
            "splitdns_admin_connections_open",
            "Connections to this admin endpoint open now (this scrape's included).",
            MetricType::Gauge,
            &[(vec![], c.open.load(Ordering::Relaxed) as f64)],
        )?;
        family(
            &mut e,
            "splitdns_admin_connection_slots",
            "Connections this admin endpoint serves at once; a new one beyond evicts an old one.",
            MetricType::Gauge,
            &[(vec![], MAX_CONNECTIONS as f64)],
        )?;
        Ok(())
    }
}
