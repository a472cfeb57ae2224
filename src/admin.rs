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

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::dns::answer::Outcome;
use crate::shared::Shared;
use crate::stats::{HistogramTotals, LATENCY_BUCKETS};
use crate::upstream::udp::UdpRelay;

/// Admin connections served at once; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 16;
/// A connection may take this long for everything (slow clients cannot hold a slot).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// The Prometheus text exposition of every metric.
    pub(crate) fn metrics_text(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Metrics(self.clone())));
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

/// Serves the admin endpoint until `stop` turns true.
/// The running admin endpoint. It outlives the data plane's stop (reporting 503 meanwhile) and
/// closes last.
pub(crate) struct AdminHandle {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl AdminHandle {
    pub(crate) fn shutdown(self) {
        self.stop.send_replace(true);
    }
}

/// Serves `/live`, `/ready` and `/metrics` on `listener` (bound by the caller, so that a port
/// conflict fails start-up before anything runs).
pub(crate) fn spawn(listener: TcpListener, state: Arc<AdminState>) -> std::io::Result<AdminHandle> {
    let addr = listener.local_addr()?;
    let (stop, rx) = watch::channel(false);
    tokio::spawn(serve(listener, state, rx));
    tracing::info!("admin listening on http://{addr} (/live /ready /metrics)");
    Ok(AdminHandle { addr, stop })
}

async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&req, &state)) }
            });
            let conn = http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

fn route(req: &Request<Incoming>, state: &Arc<AdminState>) -> Response<Full<Bytes>> {
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
            let mut r = text(StatusCode::OK, state.metrics_text());
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
struct Metrics(Arc<AdminState>);

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
        Ok(())
    }
}
