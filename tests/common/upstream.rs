//! A real, in-process upstream DNS server for integration tests.
//!
//! [`start`] binds UDP and TCP on the same `127.0.0.1` port and serves an
//! authoritative `example.org.` zone from a hickory-server [`Server`] running on
//! its own thread and tokio runtime, so it can be used from plain `#[test]`s as
//! well as from `#[tokio::test]`s of either flavor.
//!
//! Zone contents (all answers carry AA):
//! - `www.example.org` A 192.0.2.1 (TTL 300), AAAA 2001:db8::1
//! - `multi.example.org` A 192.0.2.10, 192.0.2.11
//! - `alias.example.org` CNAME `www.example.org.` (A/any query answers the chain
//!   `alias CNAME www` + `www A 192.0.2.1`)
//! - `big.example.org` TXT: 40 records of ~100 bytes (too big for 512 and 1232)
//! - `example.org` SOA (the apex)
//! - other types of existing names: NODATA (NOERROR + SOA in authority)
//! - other names under example.org: NXDOMAIN + SOA in authority
//! - names outside example.org: REFUSED, except the `cluster.local.` zone of pod records that
//!   a test sets and changes while running ([`TestUpstream::set_a`]): A records with the TTL
//!   given, NODATA (with the zone's SOA) for other types, NXDOMAIN for names not set
//!
//! EDNS: a query with OPT gets an OPT back (payload 1232, version 0, DO copied)
//! carrying every option of the query byte-for-byte; a query without OPT gets none.
//! Over UDP a reply that does not fit the client's limit (512 without EDNS,
//! otherwise the advertised size clamped to 512..=1232) is sent with TC=1 and
//! empty answer/authority sections (question and OPT kept). Over TCP the full
//! reply is always sent.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

/// UDP payload size advertised in our OPT record, and the cap for UDP replies.
pub const EDNS_PAYLOAD: u16 = 1232;
/// Number of TXT records at `big.example.org`.
pub const BIG_TXT_COUNT: usize = 40;

const TTL: u32 = 300;
const SOA_TTL: u32 = 60;

/// One query as seen by the upstream, logged before it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenQuery {
    /// The QNAME as received (case preserved), in presentation format with trailing dot.
    pub name: String,
    pub qtype: u16,
    pub tcp: bool,
    pub id: u16,
}

/// A running upstream server. Dropping it shuts the server down and joins its thread.
pub struct TestUpstream {
    /// UDP and TCP are both bound on this address.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<SeenQuery>>>,
    pods: Pods,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The `cluster.local.` records: lower-case name without the trailing dot -> (addresses, TTL).
type Pods = Arc<Mutex<std::collections::HashMap<String, (Vec<Ipv4Addr>, u32)>>>;

impl TestUpstream {
    /// Serves `name` (under `cluster.local`) with these A records and TTL from now on; an empty
    /// list removes it (NXDOMAIN).
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr], ttl: u32) {
        let mut pods = self.pods.lock().unwrap();
        if ips.is_empty() {
            pods.remove(&normalize(name));
        } else {
            pods.insert(normalize(name), (ips.to_vec(), ttl));
        }
    }

    /// Every query received so far, in arrival order.
    pub fn queries(&self) -> Vec<SeenQuery> {
        self.log.lock().unwrap().clone()
    }

    /// Number of queries whose QNAME equals `name`, case-insensitively, ignoring a trailing dot.
    pub fn count_for(&self, name: &str) -> usize {
        let want = normalize(name);
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|q| normalize(&q.name) == want)
            .count()
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Bind UDP on 127.0.0.1:0 and TCP on the same port (retrying with a new port if
/// TCP is taken), spawn the server thread, and return once it is serving.
pub fn start() -> TestUpstream {
    let (udp, tcp) = bind_pair();
    let addr = udp.local_addr().expect("udp local_addr");
    udp.set_nonblocking(true).expect("udp nonblocking");
    tcp.set_nonblocking(true).expect("tcp nonblocking");

    let log = Arc::new(Mutex::new(Vec::new()));
    let pods: Pods = Arc::default();
    let handler = Upstream {
        log: log.clone(),
        pods: pods.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<()>(1);

    let thread = std::thread::Builder::new()
        .name(format!("test-upstream-{}", addr.port()))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("upstream runtime");
            rt.block_on(async move {
                let mut server = Server::new(handler);
                server.register_socket(tokio::net::UdpSocket::from_std(udp).expect("udp"));
                server.register_listener(
                    tokio::net::TcpListener::from_std(tcp).expect("tcp"),
                    Duration::from_secs(10),
                    64,
                );
                let _ = ready_tx.send(());
                // Resolves on an explicit stop or when the TestUpstream is gone.
                let _ = stop_rx.await;
                let _ = tokio::time::timeout(Duration::from_secs(5), server.shutdown_gracefully())
                    .await;
            });
        })
        .expect("spawn upstream thread");

    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("upstream server did not start");

    TestUpstream {
        addr,
        log,
        pods,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

fn bind_pair() -> (std::net::UdpSocket, std::net::TcpListener) {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind udp");
        let addr = udp.local_addr().expect("udp local_addr");
        match std::net::TcpListener::bind(addr) {
            Ok(tcp) => return (udp, tcp),
            Err(e) => last_err = Some(e),
        }
    }
    panic!("could not bind UDP+TCP on the same port: {last_err:?}");
}

#[derive(Clone)]
struct Upstream {
    log: Arc<Mutex<Vec<SeenQuery>>>,
    pods: Pods,
}

/// What the zone says about one question.
struct Lookup {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("valid name")
}

fn zone_soa() -> Record {
    Record::from_rdata(
        name("example.org."),
        SOA_TTL,
        RData::SOA(SOA::new(
            name("ns.example.org."),
            name("hostmaster.example.org."),
            1,
            3600,
            600,
            86400,
            60,
        )),
    )
}

fn big_txt_string(i: usize) -> String {
    let mut s = format!("big-record-{i:02}-");
    while s.len() < 100 {
        s.push(char::from(b'a' + (s.len() % 26) as u8));
    }
    s
}

/// Answer `query` from the `cluster.local.` pod records.
fn lookup_pod(query: &Query, pods: &Pods) -> Lookup {
    let key = normalize(&query.name().to_ascii());
    let soa = Record::from_rdata(
        name("cluster.local."),
        SOA_TTL,
        RData::SOA(SOA::new(
            name("ns.dns.cluster.local."),
            name("hostmaster.cluster.local."),
            1,
            3600,
            600,
            86400,
            5,
        )),
    );
    match pods.lock().unwrap().get(&key) {
        None => Lookup {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![soa],
        },
        Some((ips, ttl)) if query.query_type() == RecordType::A => Lookup {
            rcode: ResponseCode::NoError,
            answers: ips
                .iter()
                .map(|ip| Record::from_rdata(query.name().clone(), *ttl, RData::A(A(*ip))))
                .collect(),
            authorities: vec![],
        },
        Some(_) => Lookup {
            rcode: ResponseCode::NoError,
            answers: vec![],
            authorities: vec![soa],
        },
    }
}

/// Answer `query` from the example.org zone (or the pod records). Owner names of records for
/// the queried name are the name exactly as asked.
fn lookup(query: &Query, pods: &Pods) -> Lookup {
    let qname = query.name();
    let owner = || qname.clone();
    let key = normalize(&qname.to_ascii());
    let qtype = query.query_type();
    if key == "cluster.local" || key.ends_with(".cluster.local") {
        return lookup_pod(query, pods);
    }

    let refused = Lookup {
        rcode: ResponseCode::Refused,
        answers: vec![],
        authorities: vec![],
    };
    if key != "example.org" && !key.ends_with(".example.org") {
        return refused;
    }

    let a = |ip: Ipv4Addr| Record::from_rdata(owner(), TTL, RData::A(A(ip)));
    let answers: Option<Vec<Record>> = match (key.as_str(), qtype) {
        ("example.org", RecordType::SOA) => {
            let mut soa = zone_soa();
            soa.name = owner();
            Some(vec![soa])
        }
        ("example.org", _) => Some(vec![]),
        ("www.example.org", RecordType::A) => Some(vec![a(Ipv4Addr::new(192, 0, 2, 1))]),
        ("www.example.org", RecordType::AAAA) => Some(vec![Record::from_rdata(
            owner(),
            TTL,
            RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
        )]),
        ("www.example.org", _) => Some(vec![]),
        ("multi.example.org", RecordType::A) => Some(vec![
            a(Ipv4Addr::new(192, 0, 2, 10)),
            a(Ipv4Addr::new(192, 0, 2, 11)),
        ]),
        ("multi.example.org", _) => Some(vec![]),
        ("alias.example.org", qt) => {
            let target = name("www.example.org.");
            let cname = Record::from_rdata(owner(), TTL, RData::CNAME(CNAME(target.clone())));
            match qt {
                RecordType::CNAME => Some(vec![cname]),
                RecordType::A => Some(vec![
                    cname,
                    Record::from_rdata(target, TTL, RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))),
                ]),
                // the target has no data of other types: the chain ends in NODATA
                _ => Some(vec![cname]),
            }
        }
        ("big.example.org", RecordType::TXT) => Some(
            (0..BIG_TXT_COUNT)
                .map(|i| {
                    Record::from_rdata(owner(), TTL, RData::TXT(TXT::new(vec![big_txt_string(i)])))
                })
                .collect(),
        ),
        ("big.example.org", _) => Some(vec![]),
        _ => None,
    };

    match answers {
        None => Lookup {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![zone_soa()],
        },
        Some(answers) => {
            let nodata = !answers.iter().any(|r| r.record_type() == qtype);
            Lookup {
                rcode: ResponseCode::NoError,
                answers,
                authorities: if nodata { vec![zone_soa()] } else { vec![] },
            }
        }
    }
}

/// Extract the OPT record's options verbatim from a raw DNS message, so they can
/// be echoed byte-for-byte (hickory would otherwise re-encode known options).
fn raw_edns_options(msg: &[u8]) -> Option<Vec<(u16, Vec<u8>)>> {
    fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
        Some(u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]))
    }
    fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
        loop {
            let len = *msg.get(pos)?;
            if len == 0 {
                return Some(pos + 1);
            }
            if len & 0xC0 == 0xC0 {
                return Some(pos + 2);
            }
            pos += 1 + usize::from(len);
        }
    }

    let qd = u16_at(msg, 4)?;
    let an = u16_at(msg, 6)?;
    let ns = u16_at(msg, 8)?;
    let ar = u16_at(msg, 10)?;
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    for i in 0..(u32::from(an) + u32::from(ns) + u32::from(ar)) {
        pos = skip_name(msg, pos)?;
        let rtype = u16_at(msg, pos)?;
        let rdlen = usize::from(u16_at(msg, pos + 8)?);
        let rdata = msg.get(pos + 10..pos + 10 + rdlen)?;
        pos += 10 + rdlen;
        if rtype == u16::from(RecordType::OPT) && i >= u32::from(an) + u32::from(ns) {
            let mut options = Vec::new();
            let mut p = 0;
            while p < rdata.len() {
                let code = u16_at(rdata, p)?;
                let len = usize::from(u16_at(rdata, p + 2)?);
                options.push((code, rdata.get(p + 4..p + 4 + len)?.to_vec()));
                p += 4 + len;
            }
            return Some(options);
        }
    }
    None
}

impl Upstream {
    async fn handle<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let tcp = request.protocol() == Protocol::Tcp;
        {
            let mut log = self.log.lock().unwrap();
            for q in request.queries.queries() {
                log.push(SeenQuery {
                    name: q.original().name().to_ascii(),
                    qtype: u16::from(q.query_type()),
                    tcp,
                    id: request.metadata.id,
                });
            }
        }

        // Reply OPT: only if the query had one; every option echoed verbatim.
        let edns =
            request.edns.as_ref().map(|req_edns| {
                let mut edns = Edns::new();
                edns.set_max_payload(EDNS_PAYLOAD);
                edns.set_version(0);
                edns.set_dnssec_ok(req_edns.flags().dnssec_ok);
                let options = &mut edns.options_mut().options;
                match raw_edns_options(request.as_slice()) {
                    Some(raw) => options.extend(raw.into_iter().map(|(code, data)| {
                        (EdnsCode::from(code), EdnsOption::Unknown(code, data))
                    })),
                    None => options.extend(req_edns.options().as_ref().iter().cloned()),
                }
                edns
            });

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;

        let lookup = if request.metadata.op_code != OpCode::Query {
            metadata.authoritative = false;
            Lookup {
                rcode: ResponseCode::NotImp,
                answers: vec![],
                authorities: vec![],
            }
        } else if request.queries.len() != 1 {
            metadata.authoritative = false;
            Lookup {
                rcode: ResponseCode::FormErr,
                answers: vec![],
                authorities: vec![],
            }
        } else {
            let lookup = lookup(request.queries.queries()[0].original(), &self.pods);
            if lookup.rcode == ResponseCode::Refused {
                metadata.authoritative = false;
            }
            lookup
        };
        metadata.response_code = lookup.rcode;

        let builder = || {
            let mut b = MessageResponseBuilder::from_message_request(request);
            if let Some(edns) = &edns {
                b.edns(edns);
            }
            b
        };

        // UDP size limit of the client: 512 without EDNS, else advertised size within 512..=1232.
        let truncate = !tcp && {
            let limit = request
                .edns
                .as_ref()
                .map_or(512, |e| e.max_payload().clamp(512, EDNS_PAYLOAD));
            let mut buf = Vec::with_capacity(1024);
            let mut encoder = BinEncoder::new(&mut buf);
            let full = builder().build(
                metadata,
                lookup.answers.iter(),
                lookup.authorities.iter(),
                std::iter::empty(),
                std::iter::empty(),
            );
            match full.destructive_emit(&mut encoder) {
                Ok(_) => buf.len() > usize::from(limit),
                Err(_) => true,
            }
        };

        let result = if truncate {
            let mut metadata = metadata;
            metadata.truncation = true;
            response_handle
                .send_response(builder().build_no_records(metadata))
                .await
        } else {
            let response = builder().build(
                metadata,
                lookup.answers.iter(),
                lookup.authorities.iter(),
                std::iter::empty(),
                std::iter::empty(),
            );
            response_handle.send_response(response).await
        };

        result.unwrap_or_else(|_| {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        })
    }
}

// `RequestHandler` is an `#[async_trait]` trait; this is the signature the macro
// produces, written out to avoid depending on the `async-trait` crate.
impl RequestHandler for Upstream {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.handle(request, response_handle))
    }
}
