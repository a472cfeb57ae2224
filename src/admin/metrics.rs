//! `GET /metrics`: the Prometheus text exposition, read at scrape time from the per-worker
//! counters (summed here, never on the hot path) through a custom prometheus-client
//! `Collector`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{AdminState, ConnStats, End, MAX_CONNECTIONS};
use crate::dns::outcome::Outcome;
use crate::stats::{HistogramTotals, LATENCY_BUCKETS};

/// The Prometheus text exposition of every metric.
pub(super) fn metrics_text(state: &Arc<AdminState>, conns: &Arc<ConnStats>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics(state.clone(), conns.clone())));
    let mut out = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
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
