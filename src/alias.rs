//! Alias rules: a mapped name whose `result` is another host name is answered with that name's
//! records, looked up through the upstreams, under the asked name (flattened: no CNAME, the
//! client sees the name it asked for, as the operator's rules promise).
//!
//! Lookups go through hickory-resolver, whose cache honours the upstream TTLs, so a busy alias
//! costs one upstream query per TTL, not one per client query. The answer's TTL is the smaller of
//! the target's (remaining) TTL and the rule's. A target that is itself mapped is answered from
//! the mapping, a target matching another rule follows it, at most [`MAX_DEPTH`] levels deep, then
//! SERVFAIL. Target NXDOMAIN or no data -> NODATA with the synthesized SOA; upstream failure ->
//! SERVFAIL.
//!
//! This is the only query path that allocates and awaits: it runs on the tokio runtime, fed by
//! the UDP workers through a bounded channel (full -> SERVFAIL) and called directly by TCP.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::proto::serialize::binary::{BinEncodable, BinEncoder};
use tokio::sync::{Semaphore, mpsc};
use tracing::warn;

use crate::dns::answer::{self, Outcome, Transport};
use crate::dns::query::Asked;
use crate::dns::wire::rtype;
use crate::mapping::{Found, SharedMapping, Snapshot, name};
use crate::stats::WorkerStats;
use crate::upstream::{QueryError, failure_reply};

/// Rule-to-rule alias chains longer than this are answered SERVFAIL (a loop in the rules).
pub(crate) const MAX_DEPTH: usize = 8;
/// Alias lookups in flight at once; more wait for a slot.
const CONCURRENCY: usize = 256;
/// Re-tries of an alias target lookup after a timeout (hickory's `attempts`).
const ALIAS_RETRIES: u32 = 4;
/// UDP alias queries queued for the resolver; beyond it they get SERVFAIL.
pub(crate) const QUEUE: usize = 1024;

/// A UDP query handed over by a worker: a copy of its bytes and what was read of them.
pub(crate) struct AliasJob {
    pub query: Vec<u8>,
    pub asked: Asked,
    pub peer: SocketAddr,
    pub socket: Arc<UdpSocket>,
    pub stats: Arc<WorkerStats>,
}

pub(crate) struct AliasResolver {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    mapping: SharedMapping,
    /// Built on first use: a mapping without alias rules never pays for it.
    resolver: OnceLock<Option<TokioResolver>>,
    slots: Arc<Semaphore>,
}

/// Records to answer with: (type, TTL, RDATA).
type Records = Vec<(u16, u32, Vec<u8>)>;

enum Resolved {
    Records(Records),
    /// NXDOMAIN or no data at the target.
    NoData,
    Fail(QueryError),
}

impl AliasResolver {
    pub(crate) fn new(upstreams: &[SocketAddr], timeout: Duration, mapping: SharedMapping) -> Self {
        AliasResolver {
            upstreams: upstreams.to_vec(),
            timeout,
            mapping,
            resolver: OnceLock::new(),
            slots: Arc::new(Semaphore::new(CONCURRENCY)),
        }
    }

    fn resolver(&self) -> Option<&TokioResolver> {
        self.resolver
            .get_or_init(|| {
                let servers = self
                    .upstreams
                    .iter()
                    .map(|u| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = u.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = u.port();
                        NameServerConfig::new(u.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                let mut opts = ResolverOpts::default();
                // Lost datagrams are re-sent within the budget here too (hickory re-tries after
                // each timeout): five tries per upstream, the whole within the budget.
                let tries = 1 + ALIAS_RETRIES;
                opts.timeout = (self.timeout / (tries * self.upstreams.len().max(1) as u32))
                    .max(Duration::from_millis(100));
                opts.attempts = ALIAS_RETRIES as usize;
                opts.ndots = 0;
                opts.use_hosts_file = ResolveHosts::Never;
                opts.preserve_intermediates = false;
                let config = ResolverConfig::from_name_servers(servers);
                match TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                    .with_options(opts)
                    .build()
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        warn!("cannot build the alias resolver: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// What the client gets for the alias query `query` (read into `asked`), and its outcome:
    /// the answer, or the failure reply (never stale: serve-stale keeps forwarded replies only).
    /// Both transports send this.
    pub(crate) async fn reply(
        &self,
        query: &[u8],
        asked: &Asked,
        transport: Transport,
    ) -> (Vec<u8>, Outcome) {
        match self.answer(query, asked, transport).await {
            Ok(r) => r,
            Err(e) => {
                let mut out = Vec::new();
                let outcome = failure_reply(query, asked, e, None, transport, &mut out);
                (out, outcome)
            }
        }
    }

    /// The complete reply to an alias query and its outcome, or why there is none.
    async fn answer(
        &self,
        query: &[u8],
        asked: &Asked,
        transport: Transport,
    ) -> Result<(Vec<u8>, Outcome), QueryError> {
        let _slot = self.slots.acquire().await;
        let snapshot = self.mapping.load_full();
        let mut out = Vec::new();
        let lower = asked.name(query).to_ascii_lowercase();
        let (resolved, ttl_cap) = self.resolve(&snapshot, lower, asked.question.qtype).await;
        let serial = snapshot.content_hash as u32;
        let records = match resolved {
            Resolved::Records(records) => records,
            Resolved::NoData => Vec::new(),
            Resolved::Fail(e) => return Err(e),
        };
        let outcome =
            answer::records_reply(query, asked, transport, &records, ttl_cap, serial, &mut out);
        Ok((out, outcome))
    }

    /// Follows the mapping from `wire` (lower-cased wire name) to records; returns them with the
    /// TTL cap collected along the way.
    async fn resolve(&self, snapshot: &Snapshot, mut wire: Vec<u8>, qtype: u16) -> (Resolved, u32) {
        let mut cap = u32::MAX;
        for depth in 0..=MAX_DEPTH {
            match snapshot.find(&wire) {
                Found::Entry(e) => {
                    cap = cap.min(e.ttl);
                    let mut records: Records = Vec::new();
                    if matches!(qtype, rtype::A | rtype::ANY) {
                        records.extend(e.v4.iter().map(|a| (rtype::A, cap, a.octets().to_vec())));
                    }
                    if matches!(qtype, rtype::AAAA | rtype::ANY) {
                        records
                            .extend(e.v6.iter().map(|a| (rtype::AAAA, cap, a.octets().to_vec())));
                    }
                    return (
                        if records.is_empty() {
                            Resolved::NoData
                        } else {
                            Resolved::Records(records)
                        },
                        cap,
                    );
                }
                Found::Ptr(ip) => {
                    cap = cap.min(snapshot.owners(ip).map(|(_, t)| t).min().unwrap_or(cap));
                    if !matches!(qtype, rtype::PTR | rtype::ANY) {
                        return (Resolved::NoData, cap);
                    }
                    let records = snapshot
                        .owners(ip)
                        .map(|(o, _)| (rtype::PTR, cap, o.to_vec()))
                        .collect();
                    return (Resolved::Records(records), cap);
                }
                Found::Alias(i) if depth < MAX_DEPTH => {
                    let Some(rules) = snapshot.rules() else {
                        return (Resolved::Fail(QueryError::AliasFailed), cap);
                    };
                    cap = cap.min(rules.rules[i].ttl);
                    let mut buf = [0u8; 256];
                    let Some(text) = name::wire_to_text_in(&wire, &mut buf) else {
                        return (Resolved::Fail(QueryError::AliasFailed), cap);
                    };
                    let target = rules
                        .expand(i, text)
                        .and_then(|t| name::to_wire_lower(&t).ok());
                    match target {
                        Some(t) => wire = t,
                        None => return (Resolved::Fail(QueryError::AliasFailed), cap),
                    }
                }
                Found::Alias(_) => {
                    warn!(depth, "alias rules chain too deep; answering SERVFAIL");
                    return (Resolved::Fail(QueryError::AliasTooDeep), cap);
                }
                Found::None => {
                    let resolved = self.lookup_upstream(&wire, qtype, &mut cap).await;
                    return (resolved, cap);
                }
            }
        }
        (Resolved::Fail(QueryError::AliasTooDeep), cap)
    }

    async fn lookup_upstream(&self, wire: &[u8], qtype: u16, cap: &mut u32) -> Resolved {
        let Some(resolver) = self.resolver() else {
            return Resolved::Fail(QueryError::AliasFailed);
        };
        let fqdn = name::wire_to_text(wire);
        let types: &[u16] = if qtype == rtype::ANY {
            &[rtype::A, rtype::AAAA]
        } else {
            &[qtype]
        };
        let mut records = Records::new();
        let mut failed = false;
        for t in types {
            let rt = RecordType::from(*t);
            match resolver.lookup(fqdn.as_str(), rt).await {
                Ok(lookup) => {
                    let left = lookup
                        .valid_until()
                        .saturating_duration_since(Instant::now());
                    let left = u32::try_from(left.as_secs()).unwrap_or(u32::MAX);
                    for r in lookup.answers().iter().filter(|r| r.record_type() == rt) {
                        let Some(rdata) = uncompressed(&r.data) else {
                            continue;
                        };
                        let ttl = r.ttl.min(left).min(*cap);
                        records.push((*t, ttl, rdata));
                    }
                }
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => {}
                Err(_) => failed = true,
            }
        }
        if !records.is_empty() {
            Resolved::Records(records)
        } else if failed {
            Resolved::Fail(QueryError::AliasFailed)
        } else {
            Resolved::NoData
        }
    }
}

/// RDATA bytes with every name written out in full: copied into our reply at another offset, a
/// compression pointer (hickory's `to_bytes` compresses names relative to the RDATA itself)
/// would point into our header (found by the fuzzing review, e.g. an alias to a zone apex asked
/// for SOA). Canonical form (RFC 4034 §6.2) never compresses.
fn uncompressed(rdata: &hickory_resolver::proto::rr::RData) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_canonical_form(true);
    rdata.emit(&mut encoder).ok()?;
    Some(buf)
}

/// Serves alias queries handed over by the UDP workers until every sender is gone.
pub(crate) async fn run_udp(resolver: Arc<AliasResolver>, mut jobs: mpsc::Receiver<AliasJob>) {
    while let Some(job) = jobs.recv().await {
        let resolver = resolver.clone();
        tokio::spawn(async move {
            let (reply, outcome) = resolver.reply(&job.query, &job.asked, Transport::Udp).await;
            job.stats.count(outcome);
            if !reply.is_empty() {
                let _ = job.socket.send_to(&reply, job.peer);
            }
        });
    }
}
