//! Shared test harness: the real daemon on 127.0.0.1:0, a real upstream, real sockets.
#![allow(dead_code)]

pub mod faulty;
pub mod upstream;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RecordType};
use splitdns::{Config, MappingSource, Running};

pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A daemon started through the library's `start()`, with its own runtime.
pub struct Daemon {
    pub running: Option<Running>,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub mapping_path: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Daemon {
    /// Starts the daemon with `yaml` as its mapping file and the given upstreams; `tweak` may
    /// adjust the configuration first.
    pub fn start_with(
        yaml: &str,
        upstreams: Vec<SocketAddr>,
        tweak: impl FnOnce(&mut Config),
    ) -> Daemon {
        Daemon::start_at(temp_file("mapping.yaml", yaml), upstreams, tweak)
    }

    /// Starts the daemon on an existing mapping file or directory.
    pub fn start_at(
        mapping_path: PathBuf,
        upstreams: Vec<SocketAddr>,
        tweak: impl FnOnce(&mut Config),
    ) -> Daemon {
        Daemon::start_source(MappingSource::File(mapping_path), upstreams, tweak)
    }

    /// Starts the daemon on `source` (a YAML mapping or the operator's JSON config).
    pub fn start_source(
        source: MappingSource,
        upstreams: Vec<SocketAddr>,
        tweak: impl FnOnce(&mut Config),
    ) -> Daemon {
        let mapping_path = source.path().map(PathBuf::from).unwrap_or_default();
        let mut config = Config::new(source, upstreams);
        tweak(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let running = runtime
            .block_on(splitdns::start(config))
            .expect("daemon starts");
        Daemon {
            udp: running.udp_addrs()[0],
            tcp: running.tcp_addrs()[0],
            running: Some(running),
            mapping_path,
            runtime,
        }
    }

    pub fn start(yaml: &str, upstreams: Vec<SocketAddr>) -> Daemon {
        Daemon::start_with(yaml, upstreams, |_| {})
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn stats(&self) -> splitdns::stats::Totals {
        self.running.as_ref().unwrap().stats()
    }

    pub fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            assert!(
                self.runtime.block_on(r.shutdown()),
                "no daemon thread panicked"
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let clean = self.runtime.block_on(r.shutdown());
            // Every test checks, on its way out, that no daemon thread panicked.
            if !std::thread::panicking() {
                assert!(clean, "a daemon thread panicked");
            }
        }
        if self.mapping_path.is_file() {
            let _ = std::fs::remove_file(&self.mapping_path);
        }
    }
}

/// A new empty directory under the system temp dir.
pub fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "splitdns-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The queries an upstream saw from clients, leaving out the daemon's own health probes
/// (`. NS`) and its start-up loop check (`*.splitdns-loop-check.invalid.`).
pub fn client_queries(up: &upstream::TestUpstream) -> Vec<upstream::SeenQuery> {
    up.queries()
        .into_iter()
        .filter(|q| q.name != "." && !q.name.ends_with(".splitdns-loop-check.invalid."))
        .collect()
}

/// A unique file under the system temp dir.
pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = temp_dir().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg
}

pub fn with_edns(mut msg: Message, payload: u16, options: &[(u16, &[u8])]) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    for (code, data) in options {
        edns.options_mut()
            .insert(EdnsOption::Unknown(*code, data.to_vec()));
    }
    msg.set_edns(edns);
    msg
}

/// Sends raw bytes over UDP and returns the first datagram back, or None after `wait`.
pub fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    sock.send_to(bytes, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => {
            assert_eq!(from, addr, "reply from the address we asked");
            Some(buf[..n].to_vec())
        }
        Err(_) => None,
    }
}

pub fn udp(addr: SocketAddr, msg: &Message) -> Message {
    let bytes = udp_raw(addr, &msg.to_vec().unwrap(), TIMEOUT).expect("a UDP reply");
    let reply = Message::from_vec(&bytes).expect("a parseable reply");
    assert_eq!(
        reply.metadata.id, msg.metadata.id,
        "reply carries the query's ID"
    );
    reply
}

/// A DNS header from its six 16-bit words (ID, flags, QD/AN/NS/AR counts), for raw queries.
pub fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect()
}

/// The wire form of `name` as spelled (case kept, no check of label lengths or characters,
/// which is what malformed-input tests need); "" or "." is the root.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// A question entry: `name` as spelled, `qtype`, class IN.
pub fn wire_question(name: &str, qtype: impl Into<u16>) -> Vec<u8> {
    let mut q = wire_name(name);
    q.extend_from_slice(&qtype.into().to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// An OPT pseudo-record (RFC 6891 §6.1.2): root owner, UDP payload size in the class, extended
/// RCODE and version 0, the DO bit, then each option as code, length, data.
pub fn opt_record(payload: u16, dnssec_ok: bool, options: &[(u16, &[u8])]) -> Vec<u8> {
    let rdata: Vec<u8> = options
        .iter()
        .flat_map(|(code, data)| {
            let len = u16::try_from(data.len()).expect("an EDNS option fits 65,535 octets");
            [code.to_be_bytes(), len.to_be_bytes()]
                .concat()
                .into_iter()
                .chain(data.iter().copied())
        })
        .collect();
    let mut r = vec![0, 0, 41];
    r.extend_from_slice(&payload.to_be_bytes());
    r.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(&rdata);
    r
}

/// The one query builder for raw queries: the octets a DNS library would not write (counts
/// that lie, names it rejects, records in odd sections, exact case) and exact expectations on
/// the bytes. Starts from ID 0 and flags 0x0100 (a standard query, RD set); sections hold what
/// was added, in order; the header counts follow them unless [`RawQuery::counts`] overrides.
#[derive(Clone, Debug)]
pub struct RawQuery {
    id: u16,
    flags: u16,
    questions: Vec<Vec<u8>>,
    answers: Vec<Vec<u8>>,
    authorities: Vec<Vec<u8>>,
    additionals: Vec<Vec<u8>>,
    counts: Option<[u16; 4]>,
    trailing: Vec<u8>,
}

/// A raw query for `name` (as spelled) of type `qtype`, class IN.
pub fn raw_query(name: &str, qtype: impl Into<u16>) -> RawQuery {
    raw_message().question_for(name, qtype)
}

/// A raw message with no question yet (add sections, or keep it a bare header).
pub fn raw_message() -> RawQuery {
    RawQuery {
        id: 0,
        flags: 0x0100,
        questions: Vec::new(),
        answers: Vec::new(),
        authorities: Vec::new(),
        additionals: Vec::new(),
        counts: None,
        trailing: Vec::new(),
    }
}

impl RawQuery {
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    /// The whole flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE).
    pub fn flags(mut self, flags: u16) -> Self {
        self.flags = flags;
        self
    }

    /// The opcode (RFC 1035 §4.1.1: four bits at 11..15), the other flags kept.
    pub fn opcode(mut self, opcode: u16) -> Self {
        self.flags = (self.flags & !0x7800) | ((opcode & 0xF) << 11);
        self
    }

    /// One more question for `name` (as spelled), type `qtype`, class IN.
    pub fn question_for(self, name: &str, qtype: impl Into<u16>) -> Self {
        self.question(&wire_question(name, qtype))
    }

    /// One more question, its octets as given (cut short, looping pointers, ...).
    pub fn question(mut self, wire: &[u8]) -> Self {
        self.questions.push(wire.to_vec());
        self
    }

    /// One more record in the answer section, its octets as given.
    pub fn answer(mut self, record: &[u8]) -> Self {
        self.answers.push(record.to_vec());
        self
    }

    /// One more record in the authority section, its octets as given.
    pub fn authority(mut self, record: &[u8]) -> Self {
        self.authorities.push(record.to_vec());
        self
    }

    /// One more record in the additional section, its octets as given.
    pub fn additional(mut self, record: &[u8]) -> Self {
        self.additionals.push(record.to_vec());
        self
    }

    /// An OPT record (see [`opt_record`]) appended to the additional section.
    pub fn edns(self, payload: u16, dnssec_ok: bool, options: &[(u16, &[u8])]) -> Self {
        self.additional(&opt_record(payload, dnssec_ok, options))
    }

    /// Header counts (QD, AN, NS, AR) that need not match the sections.
    pub fn counts(mut self, qd: u16, an: u16, ns: u16, ar: u16) -> Self {
        self.counts = Some([qd, an, ns, ar]);
        self
    }

    /// Octets after the last section.
    pub fn trailing(mut self, bytes: &[u8]) -> Self {
        self.trailing.extend_from_slice(bytes);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let n = |v: &Vec<Vec<u8>>| v.len() as u16;
        let [qd, an, ns, ar] = self.counts.unwrap_or([
            n(&self.questions),
            n(&self.answers),
            n(&self.authorities),
            n(&self.additionals),
        ]);
        let mut m = header(self.id, self.flags, qd, an, ns, ar);
        for part in [
            &self.questions,
            &self.answers,
            &self.authorities,
            &self.additionals,
        ] {
            part.iter().for_each(|p| m.extend_from_slice(p));
        }
        m.extend_from_slice(&self.trailing);
        m
    }
}

// DNS over TCP, the one framing helper: every message is preceded by its length in two
// octets (RFC 1035 §4.2.2, RFC 7766 §8). `framed` for raw bytes (pipelines, partial writes),
// `write_framed` / `read_framed` on a stream.

/// A message with its two-octet length prefix, as TCP carries it (RFC 1035 §4.2.2).
pub fn framed(message: &[u8]) -> Vec<u8> {
    let len =
        u16::try_from(message.len()).expect("a DNS message over TCP is at most 65,535 octets");
    let mut f = len.to_be_bytes().to_vec();
    f.extend_from_slice(message);
    f
}

/// Writes one length-prefixed message (in one write, so a reader never sees a lone prefix).
pub fn write_framed(s: &mut impl Write, message: &[u8]) -> std::io::Result<()> {
    s.write_all(&framed(message))
}

/// Reads one length-prefixed message; an error at end of stream, on a read timeout or a cut.
pub fn read_framed(s: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut message)?;
    Ok(message)
}

/// The first IPv4 address of a reply's answer section.
pub fn first_a(m: &Message) -> Option<std::net::Ipv4Addr> {
    ipv4s(m).first().copied()
}

/// One length-prefixed exchange on a fresh TCP connection.
pub fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write_framed(&mut s, bytes).unwrap();
    read_framed(&mut s).expect("a TCP reply")
}

pub fn tcp(addr: SocketAddr, msg: &Message) -> Message {
    let reply = Message::from_vec(&tcp_raw(addr, &msg.to_vec().unwrap())).expect("parseable");
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

/// The IPv4 addresses in a reply's answer section, in order.
pub fn ipv4s(m: &Message) -> Vec<std::net::Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The IPv6 addresses in a reply's answer section, in order.
pub fn ipv6s(m: &Message) -> Vec<std::net::Ipv6Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// An upstream that never answers: a UDP socket that swallows queries and a TCP listener on
/// the same port whose connections are accepted by the kernel and then never read.
pub struct BlackHole {
    pub addr: SocketAddr,
    _udp: UdpSocket,
    _tcp: std::net::TcpListener,
}

pub fn black_hole() -> BlackHole {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = std::net::TcpListener::bind(addr) {
            return BlackHole {
                addr,
                _udp: udp,
                _tcp: tcp,
            };
        }
    }
}

/// An address where nothing listens (bound then closed): sends get ICMP port unreachable.
pub fn closed_port() -> SocketAddr {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    s.local_addr().unwrap()
}

/// The factor every upper time bound of the tests is stretched by: `SPLITDNS_TEST_SLACK`
/// (default 1). A loaded CI machine delays a reply the daemon sent on time (scheduling, not the
/// daemon); `.ci/run` sets it, a developer's quiet machine keeps the bounds tight.
pub fn slack() -> f64 {
    std::env::var("SPLITDNS_TEST_SLACK")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 1.0)
        .unwrap_or(1.0)
}

/// An upper time bound stretched by [`slack`].
pub fn bound(limit: Duration) -> Duration {
    limit.mul_f64(slack())
}

/// Asserts that `took` is under `limit` (stretched by [`slack`]): the one upper-bound check.
#[track_caller]
pub fn assert_under(took: Duration, limit: Duration, what: &str) {
    let limit = bound(limit);
    assert!(took < limit, "{what}: took {took:?}, bound {limit:?}");
}

/// Asserts that `took` is at least `floor`, which is NOT stretched: a lower bound checks a
/// deliberate wait (a timeout waited out, a grace period given), and a loaded machine only ever
/// makes a wait longer, never shorter.
#[track_caller]
pub fn assert_not_before(took: Duration, floor: Duration, what: &str) {
    assert!(took >= floor, "{what}: took {took:?}, not before {floor:?}");
}

/// [`assert_not_before`] `floor` and [`assert_under`] `limit` (only the upper bound stretched).
#[track_caller]
pub fn assert_between(took: Duration, floor: Duration, limit: Duration, what: &str) {
    assert_not_before(took, floor, what);
    assert_under(took, limit, what);
}

/// Runs `f` and returns its value with the time it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t0 = std::time::Instant::now();
    let v = f();
    (v, t0.elapsed())
}

/// Runs `f`, asserts (through [`assert_under`]) that it took under `limit`, returns its value.
#[track_caller]
pub fn under<T>(limit: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let (v, took) = timed(f);
    assert_under(took, limit, what);
    v
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `within` (stretched by
/// [`slack`]).
#[track_caller]
pub fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    eventually_ok(within, what, || if cond() { Ok(()) } else { Err("") });
}

/// Polls `f` every 10 ms until it gives `Ok`, and returns that value; panics after `within`
/// (stretched by [`slack`]) with `what` and the last `Err` (the state it was stuck in). The one
/// polling loop of the tests.
#[track_caller]
pub fn eventually_ok<T, E: std::fmt::Display>(
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, E>,
) -> T {
    let within = bound(within);
    let t0 = std::time::Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                let last = last.to_string();
                let sep = if last.is_empty() { "" } else { ": " };
                assert!(
                    t0.elapsed() < within,
                    "not {what} within {within:?}{sep}{last}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Replaces `path` in one step (write a sibling, then rename), as an editor or a ConfigMap
/// update does: a watcher never reads a half-written file.
pub fn write_atomic(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status line");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// The Extended DNS Error code (RFC 8914) of one of splitdns's own replies, whose OPT record is
/// last and carries at most this one option.
pub fn ede(reply: &[u8]) -> Option<u16> {
    let n = reply.len();
    (n >= 6 && reply[n - 6..n - 2] == [0, 15, 0, 2])
        .then(|| u16::from_be_bytes([reply[n - 2], reply[n - 1]]))
}
