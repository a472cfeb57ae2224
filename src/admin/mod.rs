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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::AbortHandle;

use crate::shared::Shared;
use crate::upstream::udp::UdpRelay;

mod metrics;
use metrics::metrics_text;

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
