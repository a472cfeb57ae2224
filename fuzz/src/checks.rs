//! The bodies of the fuzz targets and the properties they assert.
//!
//! Shared, file for file, by the fuzz crate (`fuzz/src/lib.rs`) and by `cargo test`
//! (`tests/fuzz_regressions.rs` includes it with `#[path]`), so a crasher kept under
//! `fuzz/regressions/<target>/` fails the ordinary test suite without the fuzzer. Only the
//! library's public API and hickory-proto (to parse our replies independently) are used.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use splitdns::dns::answer::{self, Decision, OUR_UDP_PAYLOAD, Outcome, Transport};
use splitdns::dns::query::Asked;
use splitdns::dns::wire::{self, CLASSIC_UDP_SIZE, HEADER_LEN, Header, MAX_NAME_WIRE, rtype};
use splitdns::mapping::{Found, Snapshot, file, name};

/// The fixed mapping the query path is fuzzed against. Names the seeds and the dictionary use:
/// `db-0.db.example.com` (one IPv4, shared with `db-0-alias.db.example.com`, so its PTR has two
/// owners), `db-1.db.example.com` (IPv4 + IPv6), `v6.db.example.com` (IPv6 only), `a` (shortest
/// name), `ttl30.db.example.com` (own TTL), `many.db.example.com` (40 IPv4 + 20 IPv6: fits 1232
/// per family, not 512, and ANY does not fit 1232), `huge.db.example.com` (120 IPv4 + 60 IPv6:
/// only fits over TCP), a 253-character name (the longest question, 271 octets); rules: an exact
/// name with an address (`legacy.example.com`), regex rules with an address (`v6-N.example.com`)
/// and with aliases (`db-N.db-replica.example.com`, `NAME.pods.example.com`).
pub fn mapping() -> String {
    let mut m = String::from(
        "ttl: 5
hosts:
  db-0.db.example.com: 10.42.0.12
  db-0-alias.db.example.com: 10.42.0.12
  db-1.db.example.com: [10.42.0.13, \"fd00::13\"]
  v6.db.example.com: \"fd00::14\"
  a: 192.0.2.1
  ttl30.db.example.com: { addresses: [10.42.0.30, \"fd00::30\"], ttl: 30 }
",
    );
    let long = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    m.push_str(&format!("  {long}: [192.0.2.2, \"2001:db8::2\"]\n"));
    for (name, v4, v6) in [("many", 40, 20), ("huge", 120, 60)] {
        let addrs: Vec<String> = (0..v4)
            .map(|i| format!("10.1.{}.{}", i / 250, i % 250 + 1))
            .chain((0..v6).map(|i| format!("\"fd00::1:{:x}\"", i + 1)))
            .collect();
        m.push_str(&format!(
            "  {name}.db.example.com: [{}]\n",
            addrs.join(", ")
        ));
    }
    m.push_str(
        r#"rules:
  - host: legacy.example.com
    result: 10.1.2.3
  - host: 'v6-(\d+)\.example\.com'
    regex: true
    result: 'fd00::99'
    ttl: 7
  - host: 'db-(\d+)\.db-replica\.example\.com'
    regex: true
    result: 'db-replica-${1}.db-replica.prod.svc.cluster.local'
    ttl: 30
  - host: '(?P<pod>[a-z0-9-]+)\.pods\.example\.com'
    regex: true
    result: '${pod}.db.example.com'
"#,
    );
    m
}

static SNAPSHOT: LazyLock<Snapshot> =
    LazyLock::new(|| file::parse(&mapping(), "fuzz", 5).expect("the fixed fuzz mapping parses"));

thread_local! {
    static UDP_OUT: RefCell<Vec<u8>> = RefCell::new(vec![0; OUR_UDP_PAYLOAD as usize]);
    static TCP_OUT: RefCell<Vec<u8>> = RefCell::new(vec![0; u16::MAX as usize]);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What our own reader makes of a query: the question (when readable) and the EDNS record
/// (when the questions, QDCOUNT of them, and the OPT are readable; with QDCOUNT 0 the OPT is
/// right after the header).
struct Parsed {
    question: Option<wire::Question>,
    lower: [u8; MAX_NAME_WIRE],
    edns: Option<wire::Edns>,
}

fn parse_query(msg: &[u8]) -> Parsed {
    let mut lower = [0u8; MAX_NAME_WIRE];
    let question = wire::read_question(msg, &mut lower).ok();
    let edns = Header::read(msg).and_then(|h| {
        let records = match (h.qdcount, question) {
            (1, Some(q)) => q.end(),
            (1, None) => return None,
            (n, _) => wire::skip_questions(msg, n).ok()?,
        };
        wire::read_edns(msg, &h, records).ok().flatten()
    });
    Parsed {
        question,
        lower,
        edns,
    }
}

/// Properties of every reply we produce, whatever produced it. Returns the reply as parsed by
/// hickory-proto.
fn check_reply(what: &str, query: &[u8], reply: &[u8], parsed: &Parsed) -> Message {
    let ctx = || format!("{what}\n query {}\n reply {}", hex(query), hex(reply));
    assert!(
        reply.len() >= HEADER_LEN,
        "reply shorter than a header: {}",
        ctx()
    );
    assert_eq!(reply[..2], query[..2], "reply ID differs: {}", ctx());
    assert!(reply[2] & 0x80 != 0, "QR not set: {}", ctx());

    let mut decoder = BinDecoder::new(reply);
    let msg = match Message::read(&mut decoder) {
        Ok(m) => m,
        Err(e) => panic!("hickory-proto cannot parse the reply ({e}): {}", ctx()),
    };
    assert!(
        decoder.is_empty(),
        "{} octets after the last record: {}",
        decoder.len(),
        ctx()
    );
    assert_eq!(
        msg.metadata.message_type,
        MessageType::Response,
        "{}",
        ctx()
    );
    assert!(msg.queries.len() <= 1, "{}", ctx());
    if msg.queries.len() == 1 {
        let q = parsed
            .question
            .unwrap_or_else(|| panic!("question echoed but unreadable: {}", ctx()));
        assert_eq!(
            reply[HEADER_LEN..q.end()],
            query[HEADER_LEN..q.end()],
            "question not echoed byte for byte: {}",
            ctx()
        );
    }
    // RFC 6891 §6.1.1 / §7: an OPT in every reply to a query with a readable one (errors
    // included), and never one in a reply to a query without.
    if msg.edns.is_some() {
        assert!(
            parsed.edns.is_some(),
            "OPT in reply, none in query: {}",
            ctx()
        );
    } else if parsed.edns.is_some() {
        panic!("query had an OPT, the reply has none: {}", ctx());
    }
    if msg.metadata.truncation {
        assert!(
            msg.answers.is_empty() && msg.authorities.is_empty(),
            "TC with records (an RRset must not be split): {}",
            ctx()
        );
    }
    msg
}

fn check_decision(query: &[u8], transport: Transport, out: &mut [u8], parsed: &Parsed) {
    let snapshot = &*SNAPSHOT;
    out.fill(0xA5);
    let decision = answer::decide_bytes(query, snapshot, transport, out);
    let what = format!("decide({transport:?}) -> {decision:?}");
    let ctx = || format!("{what}\n query {}", hex(query));
    let found = parsed
        .question
        .map(|q| snapshot.find(&parsed.lower[..q.name_len]));
    if let Some(q) = parsed.question {
        let wire_name = &parsed.lower[..q.name_len];
        let by_rule = match found {
            Some(Found::Alias(_)) => true,
            Some(Found::Entry(_)) => snapshot.lookup(wire_name).is_none(),
            _ => false,
        };
        // Rules match the name's text form, where a '.' inside a label would read as a label
        // boundary: `\x12legacy.example.com` (one label) is not the name `legacy.example.com`.
        assert!(
            !by_rule || labels(wire_name).all(|l| !l.contains(&b'.')),
            "a name with a '.' inside a label matched a rule: {}",
            ctx()
        );
    }
    match decision {
        Decision::Drop => {
            assert!(
                query.len() < HEADER_LEN || query[2] & 0x80 != 0,
                "a readable query was dropped: {}",
                ctx()
            );
        }
        Decision::Forward { question_end } => {
            assert!(
                HEADER_LEN < question_end && question_end <= query.len(),
                "question_end out of range: {}",
                ctx()
            );
            let q = parsed.question.expect("forwarded, so the question reads");
            assert_eq!(q.end(), question_end, "{}", ctx());
            assert!(
                matches!(found, Some(Found::None)),
                "a mapped name was forwarded: {}",
                ctx()
            );
        }
        Decision::Alias { rule } => {
            assert!(
                matches!(found, Some(Found::Alias(r)) if r == rule),
                "alias decision for a name that does not match alias rule {rule}: {}",
                ctx()
            );
            check_alias(query, transport, rule, parsed, snapshot);
        }
        Decision::Reply { len, outcome } => {
            assert!(len <= out.len(), "len past the buffer: {}", ctx());
            if transport == Transport::Udp {
                // The client's limit: its EDNS size (at least 512, at most ours) or 512.
                let limit = udp_limit(parsed);
                assert!(len <= limit, "UDP reply over {limit} octets: {}", ctx());
            }
            let reply = &out[..len];
            let msg = check_reply(&what, query, reply, parsed);
            check_rcode(&msg, outcome, &ctx);
            if transport == Transport::Tcp {
                assert!(!msg.metadata.truncation, "TC over TCP: {}", ctx());
            }
            if matches!(outcome, Outcome::Answer | Outcome::NoData) {
                check_answer(&msg, outcome, parsed, found, snapshot, &ctx);
            }
            if outcome == Outcome::NotAuth {
                check_notauth(query, &msg, &ctx);
            } else {
                assert!(tsig_of(&msg).is_none(), "TSIG in the reply: {}", ctx());
            }
        }
    }
}

/// The labels of a wire-format name read by `read_question` (so well formed).
fn labels(wire_name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = usize::from(*wire_name.get(at)?);
        if len == 0 {
            return None;
        }
        let label = wire_name.get(at + 1..at + 1 + len)?;
        at += 1 + len;
        Some(label)
    })
}

fn udp_limit(parsed: &Parsed) -> usize {
    parsed.edns.map_or(CLASSIC_UDP_SIZE, |e| {
        usize::from(e.udp_size.clamp(512, OUR_UDP_PAYLOAD))
    })
}

fn check_rcode(msg: &Message, outcome: Outcome, ctx: &dyn Fn() -> String) {
    let expect = match outcome {
        Outcome::Answer | Outcome::NoData => ResponseCode::NoError,
        Outcome::FormErr => ResponseCode::FormErr,
        Outcome::NotImp => ResponseCode::NotImp,
        Outcome::Refused => ResponseCode::Refused,
        Outcome::BadVers => ResponseCode::BADVERS,
        Outcome::ServFail => ResponseCode::ServFail,
        Outcome::NotAuth => ResponseCode::NotAuth,
        other => panic!("no reply is expected with {other:?}: {}", ctx()),
    };
    // Compared as numbers: 16 is both BADVERS and BADSIG, and hickory reads it as BADSIG.
    assert_eq!(
        u16::from(msg.metadata.response_code),
        u16::from(expect),
        "rcode: {}",
        ctx()
    );
}

/// What an alias query leads to that needs no network: the rule's target name (as
/// `forward::alias` computes it) and the replies built from the records a lookup returns
/// (`answer::records_reply`): a few addresses, more than fit 512 or 1232 octets, or none (NODATA).
fn check_alias(
    query: &[u8],
    transport: Transport,
    rule: usize,
    parsed: &Parsed,
    snapshot: &Snapshot,
) {
    let q = parsed.question.expect("alias, so the question reads");
    let rules = snapshot.rules().expect("alias, so there are rules");
    let mut buf = [0u8; 256];
    if let Some(text) = name::wire_to_text_in(&parsed.lower[..q.name_len], &mut buf)
        && let Some(target) = rules.expand(rule, text)
    {
        let _ = name::to_wire_lower(&target);
    }
    let few: Vec<(u16, u32, Vec<u8>)> = vec![
        (rtype::A, 30, vec![192, 0, 2, 7]),
        (rtype::AAAA, 3, Ipv6Addr::LOCALHOST.octets().to_vec()),
    ];
    let lots: Vec<(u16, u32, Vec<u8>)> = (0..100u8)
        .map(|i| (rtype::A, 60, Ipv4Addr::new(10, 9, 0, i).octets().to_vec()))
        .collect();
    let asked = Asked::read(query)
        .unwrap_or_else(|| panic!("no reply to a readable alias query\n query {}", hex(query)));
    for records in [&few[..], &lots[..], &[]] {
        let mut out = Vec::new();
        let outcome = answer::records_reply(query, &asked, transport, records, 5, 42, &mut out);
        let what = format!(
            "records_reply({transport:?}, {} records) -> {outcome:?}",
            records.len()
        );
        let ctx = || format!("{what}\n query {}\n reply {}", hex(query), hex(&out));
        match transport {
            Transport::Udp => assert!(out.len() <= udp_limit(parsed), "{}", ctx()),
            Transport::Tcp => assert!(out.len() <= usize::from(u16::MAX), "{}", ctx()),
        }
        let msg = check_reply(&what, query, &out, parsed);
        check_rcode(&msg, outcome, &ctx);
        if msg.metadata.truncation {
            assert_eq!(transport, Transport::Udp, "TC over TCP: {}", ctx());
            continue;
        }
        if records.is_empty() && q.qtype == rtype::SOA {
            // No SOA at the target: the name's own SOA, as for a mapped name.
            assert_eq!(outcome, Outcome::Answer, "{}", ctx());
            assert_eq!(msg.answers.len(), 1, "{}", ctx());
            assert_eq!(msg.answers[0].record_type(), RecordType::SOA, "{}", ctx());
            continue;
        }
        assert_eq!(msg.answers.len(), records.len(), "{}", ctx());
        assert_eq!(outcome == Outcome::NoData, records.is_empty(), "{}", ctx());
        for (r, (t, ttl, rdata)) in msg.answers.iter().zip(records) {
            assert_eq!(u16::from(r.record_type()), *t, "{}", ctx());
            assert_eq!(r.ttl, *ttl, "{}", ctx());
            assert_eq!(r.name, msg.queries[0].name, "owner name: {}", ctx());
            let ip = r.data.ip_addr().expect("address record");
            let want = match rdata.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(&rdata[..]).expect("4 octets")),
                _ => IpAddr::from(<[u8; 16]>::try_from(&rdata[..]).expect("16 octets")),
            };
            assert_eq!(ip, want, "{}", ctx());
        }
    }
}

/// A local answer holds exactly the mapped records of the asked type (addresses of a name,
/// names of a reverse name) with their TTLs, or is TC, or is NODATA with one SOA whose MINIMUM
/// is the TTL.
fn check_answer(
    msg: &Message,
    outcome: Outcome,
    parsed: &Parsed,
    found: Option<Found<'_>>,
    snapshot: &Snapshot,
    ctx: &dyn Fn() -> String,
) {
    assert!(msg.metadata.authoritative, "AA not set: {}", ctx());
    let q = parsed.question.expect("answered, so the question reads");
    // (record data as text, TTL) of what the answer must hold; the SOA's TTL when there is none.
    let (expected, soa_ttl): (Vec<(String, u32)>, u32) = match found {
        Some(Found::Entry(entry)) => {
            let mut e = Vec::new();
            if matches!(q.qtype, rtype::A | rtype::ANY) {
                e.extend(entry.v4.iter().map(|a| (a.to_string(), entry.ttl)));
            }
            if matches!(q.qtype, rtype::AAAA | rtype::ANY) {
                e.extend(entry.v6.iter().map(|a| (a.to_string(), entry.ttl)));
            }
            (e, entry.ttl)
        }
        Some(Found::Ptr(ip)) => {
            let owners: Vec<(String, u32)> = snapshot
                .owners(ip)
                .map(|(owner, ttl)| (name::wire_to_text(owner), ttl))
                .collect();
            assert!(
                !owners.is_empty(),
                "PTR for an address nobody holds: {}",
                ctx()
            );
            let soa_ttl = owners.iter().map(|o| o.1).min().unwrap_or(0);
            let wanted = matches!(q.qtype, rtype::PTR | rtype::ANY);
            (if wanted { owners } else { Vec::new() }, soa_ttl)
        }
        other => panic!("answered locally, but find() says {other:?}: {}", ctx()),
    };
    if msg.metadata.truncation {
        return;
    }
    if expected.is_empty() && q.qtype == rtype::SOA {
        // The SOA a NODATA would carry, owned by the name, is the answer to an SOA query.
        assert_eq!(outcome, Outcome::Answer, "{}", ctx());
        assert_eq!(msg.answers.len(), 1, "SOA answer: {}", ctx());
        assert!(msg.authorities.is_empty(), "{}", ctx());
        let soa = &msg.answers[0];
        assert_eq!(soa.name, msg.queries[0].name, "SOA owner: {}", ctx());
        match &soa.data {
            RData::SOA(s) => assert_eq!(s.minimum, soa_ttl, "{}", ctx()),
            other => panic!("SOA answer is {:?}: {}", other.record_type(), ctx()),
        }
        return;
    }
    let got: Vec<(String, u32)> = msg
        .answers
        .iter()
        .map(|r| {
            assert_eq!(r.name, msg.queries[0].name, "owner name: {}", ctx());
            let data = match &r.data {
                RData::PTR(p) => p.0.to_ascii().to_ascii_lowercase(),
                other => match other.ip_addr() {
                    Some(ip) => ip.to_string(),
                    None => panic!("unexpected {:?} answer: {}", other.record_type(), ctx()),
                },
            };
            (data, r.ttl)
        })
        .collect();
    assert_eq!(got, expected, "answers: {}", ctx());
    assert_eq!(outcome == Outcome::NoData, expected.is_empty(), "{}", ctx());
    if expected.is_empty() {
        assert_eq!(msg.authorities.len(), 1, "NODATA without SOA: {}", ctx());
        match &msg.authorities[0].data {
            RData::SOA(soa) => assert_eq!(soa.minimum, soa_ttl, "{}", ctx()),
            other => panic!("NODATA authority is {:?}: {}", other.record_type(), ctx()),
        }
    } else {
        assert!(msg.authorities.is_empty(), "{}", ctx());
    }
}

/// The TSIG record of a reply: the parser puts it in `signature` when built with TSIG support,
/// among the additional records otherwise.
fn tsig_of(msg: &Message) -> Option<(Name, TSIG)> {
    if let Some(sig) = msg.signature() {
        return Some((sig.name.clone(), sig.data.clone()));
    }
    msg.additionals.iter().find_map(|r| match &r.data {
        RData::TSIG(t) => Some((r.name.clone(), t.clone())),
        _ => None,
    })
}

/// NOTAUTH to a signed query (RFC 8945 §5.2.1, §5.3.2): an unsigned TSIG error record, last of
/// the additional section, with the query's key name, algorithm, Time Signed, Fudge and
/// Original ID, MAC Size 0, Error BADKEY; or TC without it when it does not fit.
fn check_notauth(query: &[u8], msg: &Message, ctx: &dyn Fn() -> String) {
    assert!(
        msg.answers.is_empty() && msg.authorities.is_empty(),
        "{}",
        ctx()
    );
    let Some((key, tsig)) = tsig_of(msg) else {
        assert!(msg.metadata.truncation, "NOTAUTH without TSIG: {}", ctx());
        return;
    };
    assert!(!msg.metadata.truncation, "{}", ctx());
    let Ok(asked) = Message::from_vec(query) else {
        return; // our reader accepts more than hickory's; the rest was checked above
    };
    if let Some((asked_key, asked_tsig)) = tsig_of(&asked) {
        assert_eq!(key, asked_key, "key name: {}", ctx());
        assert_eq!(tsig.algorithm, asked_tsig.algorithm, "algorithm: {}", ctx());
        assert_eq!(tsig.time, asked_tsig.time, "{}", ctx());
        assert_eq!(tsig.fudge, asked_tsig.fudge, "{}", ctx());
        assert_eq!(tsig.oid, asked_tsig.oid, "{}", ctx());
    }
    assert!(tsig.mac.is_empty(), "signed error: {}", ctx());
    assert_eq!(tsig.error, Some(TsigError::BadKey), "{}", ctx());
    assert!(tsig.other.is_empty(), "{}", ctx());
}

/// Target `query_path`: [`answer::decide`] over UDP and TCP against the fixed mapping, and
/// [`answer::error_reply`] (the SERVFAIL of a failed forward).
pub fn query_path(data: &[u8]) {
    let parsed = parse_query(data);
    UDP_OUT.with_borrow_mut(|out| check_decision(data, Transport::Udp, out, &parsed));
    TCP_OUT.with_borrow_mut(|out| {
        check_decision(data, Transport::Tcp, out, &parsed);
        out.fill(0xA5);
        // Only a query that was forwarded (so its question reads) can fail upstream.
        let asked = Asked::read(data);
        let r = asked.and_then(|asked| answer::error_reply(data, &asked, 2, Some(22), out));
        let ctx = || format!("error_reply -> {r:?}\n query {}", hex(data));
        match r {
            None => assert!(
                data.len() < HEADER_LEN
                    || parsed.question.is_none()
                    || Header::read(data).is_some_and(|h| h.flags & 0x8000 != 0 || h.qdcount != 1),
                "no SERVFAIL: {}",
                ctx()
            ),
            Some(len) => {
                assert!(len <= out.len(), "{}", ctx());
                // Header, question (at most 4 + 255) and OPT: fits any transport.
                assert!(
                    len <= CLASSIC_UDP_SIZE,
                    "SERVFAIL over 512 octets: {}",
                    ctx()
                );
                let msg = check_reply("error_reply", data, &out[..len], &parsed);
                assert_eq!(
                    msg.metadata.response_code,
                    ResponseCode::ServFail,
                    "{}",
                    ctx()
                );
            }
        }
    });
}

/// Not a fuzz target (the fuzzer rarely lands on the few UDP sizes where an answer just fits):
/// every mapped name, asked for A, AAAA, ANY and MX with and without DO, at every EDNS UDP size
/// from 0 to 1300 and a few larger ones, over UDP and TCP, meets the `query_path` properties.
pub fn udp_size_sweep() {
    let long = mapping()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_suffix(": [192.0.2.2, \"2001:db8::2\"]")
                .map(str::to_owned)
        })
        .expect("the long name");
    let every: Vec<u16> = (0..=1300).chain([1400, 4096, 65535]).collect();
    let few: Vec<u16> = vec![0, 511, 512, 513, 1231, 1232, 1233, 4096, 65535];
    let names: [(&str, &[u16]); 7] = [
        ("db-0.db.example.com", &few),
        ("db-1.db.example.com", &few),
        ("v6.db.example.com", &few),
        ("a", &few),
        (&long, &few),
        ("MANY.db.example.com", &every),
        ("huge.DB.example.com", &every),
    ];
    for (name, sizes) in names {
        let mut wire_name = Vec::new();
        for label in name.split('.') {
            wire_name.push(label.len() as u8);
            wire_name.extend_from_slice(label.as_bytes());
        }
        wire_name.push(0);
        for qtype in [rtype::A, rtype::AAAA, rtype::ANY, 15] {
            let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
            q.extend_from_slice(&wire_name);
            q.extend_from_slice(&qtype.to_be_bytes());
            // QCLASS IN, then OPT: root, type 41, size, ext-rcode, version, flags, RDLEN 0.
            q.extend_from_slice(&[0, 1, 0, 0, 41, 0, 0, 0, 0, 0, 0, 0, 0]);
            let at = q.len() - 8;
            for &size in sizes {
                q[at..at + 2].copy_from_slice(&size.to_be_bytes());
                q[at + 4] = if size % 2 == 0 { 0x80 } else { 0 };
                query_path(&q);
            }
        }
    }
}

/// Target `wire`: the readers on the whole input and on both halves of an arbitrary split (the
/// first two octets choose the split, the third an arbitrary offset for `read_edns`).
pub fn wire(data: &[u8]) {
    let [s0, s1, off, rest @ ..] = data else {
        return;
    };
    let split = usize::from(u16::from_be_bytes([*s0, *s1])) % (rest.len() + 1);
    let (query, reply) = rest.split_at(split);
    for msg in [rest, query, reply] {
        wire_one(msg, usize::from(*off));
    }
    // Every address's reverse name reads back as that address.
    if let Some(b) = rest.get(..16) {
        let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 octets"));
        let v4 = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        assert_eq!(
            name::reverse_to_ip(&name::reverse_v6(v6)),
            Some(IpAddr::V6(v6))
        );
        assert_eq!(
            name::reverse_to_ip(&name::reverse_v4(v4)),
            Some(IpAddr::V4(v4))
        );
    }
    let mut lower = [0u8; MAX_NAME_WIRE];
    let end = wire::read_question(query, &mut lower).map_or(usize::from(*off), |q| q.end());
    for end in [end, usize::from(*off)] {
        if wire::same_question(query, reply, end) {
            assert!(end >= HEADER_LEN && end <= query.len() && end <= reply.len());
            assert_eq!(wire::u16_at(reply, 4), Ok(1));
            assert!(query[HEADER_LEN..end].eq_ignore_ascii_case(&reply[HEADER_LEN..end]));
        }
    }
}

fn wire_one(msg: &[u8], off: usize) {
    let header = Header::read(msg);
    assert_eq!(header.is_some(), msg.len() >= HEADER_LEN);
    let mut lower = [0u8; MAX_NAME_WIRE];
    let question = wire::read_question(msg, &mut lower);
    if let Ok(q) = question {
        assert!((1..=MAX_NAME_WIRE).contains(&q.name_len), "{q:?}");
        assert!(q.end() <= msg.len(), "{q:?}");
        let name = &msg[HEADER_LEN..HEADER_LEN + q.name_len];
        assert_eq!(&lower[..q.name_len], &name.to_ascii_lowercase()[..]);
        assert_eq!(name.last(), Some(&0));
        assert_eq!(wire::u16_at(msg, HEADER_LEN + q.name_len), Ok(q.qtype));
        assert_eq!(wire::u16_at(msg, HEADER_LEN + q.name_len + 2), Ok(q.qclass));
        // A question is equal to itself and to any 0x20 spelling of itself.
        let qd_one = wire::u16_at(msg, 4) == Ok(1);
        assert_eq!(wire::same_question(msg, msg, q.end()), qd_one);
        let mut flipped = msg.to_vec();
        for b in &mut flipped[HEADER_LEN..HEADER_LEN + q.name_len] {
            if b.is_ascii_alphabetic() {
                *b ^= 0x20;
            }
        }
        assert_eq!(wire::same_question(msg, &flipped, q.end()), qd_one);
        // A reverse name stands for an address only in its one canonical spelling.
        let lower_name = &lower[..q.name_len];
        if let Some(ip) = name::reverse_to_ip(lower_name) {
            let canonical = match ip {
                IpAddr::V4(a) => name::reverse_v4(a),
                IpAddr::V6(a) => name::reverse_v6(a),
            };
            assert_eq!(canonical, lower_name, "{ip}");
        }
    }
    if let Some(h) = header {
        let mut offsets = vec![off, msg.len(), msg.len() + 1];
        if let Ok(q) = question {
            offsets.push(q.end());
        }
        for at in offsets {
            let edns = wire::read_edns(msg, &h, at);
            if let Ok(Some(e)) = edns {
                assert!(e.udp_size >= 512, "{e:?}");
            }
            // The TSIG record never changes what the OPT walk finds; a TSIG reported as
            // readable has both names readable in full and lies inside the message.
            let extras = wire::read_extras(msg, &h, at);
            assert_eq!(extras.map(|x| x.edns), edns);
            if let Ok(wire::Extras {
                tsig: Some(Ok(t)), ..
            }) = extras
            {
                let mut buf = [0u8; MAX_NAME_WIRE];
                assert!(wire::read_name(msg, t.key, &mut buf).is_ok(), "{t:?}");
                assert!(wire::read_name(msg, t.algorithm, &mut buf).is_ok(), "{t:?}");
                assert!(t.time_signed + 8 <= msg.len(), "{t:?}");
            }
        }
        if let Ok(end) = wire::skip_questions(msg, h.qdcount) {
            assert!((HEADER_LEN..=msg.len()).contains(&end));
        }
    }
}

/// Target `mapping_parse`: any UTF-8 text either parses or is an error that names the file.
pub fn mapping_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match file::parse(text, "fuzz", 5) {
        Ok(snapshot) => {
            let (names, v4, v6) = snapshot.summary();
            assert_eq!(names, snapshot.len());
            // Every name has at least one address.
            assert!(v4 + v6 >= names, "{names} names, {v4} + {v6} addresses");
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.starts_with("fuzz:"),
                "error does not name the file: {shown:?}"
            );
        }
    }
    // The same text as the operator's JSON config: never a panic, and every error names the
    // file, line and column.
    match splitdns::mapping::operator::parse(text, "fuzz.json", 5, 0) {
        Ok(c) => assert_eq!(c.snapshot.len(), 0, "the operator's config has rules only"),
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.starts_with("fuzz.json:"),
                "error does not name the file: {shown:?}"
            );
        }
    }
}
