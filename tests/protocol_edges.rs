//! Protocol edges found by ISC's EDNS compliance tester (the RFC 8906 list) and by a differential
//! comparison with an authoritative server: EDNS in error replies, the synthesized SOA of a mapped
//! name, and TSIG-signed queries. Raw bytes on real sockets, replies read with hickory-proto.

mod common;

use std::time::Duration;

use common::faulty::{self, Act};
use common::{
    Daemon, RawQuery, query, raw_message, raw_query, tcp, tcp_raw, udp, udp_raw, upstream,
    wire_name, wire_question,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{Name, RData, RecordType};
use splitdns::dns::answer::Outcome;

const MAPPING: &str = r#"
ttl: 7
hosts:
  db-0.db.example.com: 10.42.0.12
rules:
  - host: legacy.example.com
    result: 10.1.2.3
  - host: 'www\.alias\.test'
    regex: true
    result: www.example.org
"#;
const SHORT: Duration = Duration::from_millis(300);

/// `Db-0.db.example.com. A IN`, mixed case: the question of the raw queries.
const DB0_NAME: &str = "Db-0.db.example.com";

fn db0_question() -> Vec<u8> {
    wire_question(DB0_NAME, RecordType::A)
}

/// A raw query of [`DB0_NAME`] A.
fn db0() -> RawQuery {
    raw_query(DB0_NAME, RecordType::A)
}

/// The OPT of these queries: UDP size 1232, extended rcode 0, version 0, DO set, no options.
fn opt_do(q: RawQuery) -> RawQuery {
    q.edns(1232, true, &[])
}

fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).expect("a parseable reply")
}

fn arcount(reply: &[u8]) -> u16 {
    u16::from_be_bytes([reply[10], reply[11]])
}

/// A TSIG record as a client signs with it: `key` (wire form, may be compressed), algorithm
/// hmac-sha256, Time Signed 0x0000_6500_0000, Fudge 300, a 32-octet MAC, Original ID `oid`.
fn tsig_record(key: &[u8], oid: u16) -> Vec<u8> {
    let mut rdata = b"\x0bhmac-sha256\x00".to_vec();
    rdata.extend_from_slice(&[0, 0, 0x65, 0, 0, 0]); // Time Signed
    rdata.extend_from_slice(&300u16.to_be_bytes()); // Fudge
    rdata.extend_from_slice(&32u16.to_be_bytes()); // MAC Size
    rdata.extend_from_slice(&[0xAB; 32]); // MAC
    rdata.extend_from_slice(&oid.to_be_bytes()); // Original ID
    rdata.extend_from_slice(&[0, 0, 0, 0]); // Error, Other Len
    let mut r = key.to_vec();
    r.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]); // TSIG, ANY, TTL 0
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(&rdata);
    r
}

/// The TSIG record of a reply (hickory puts it in `signature` when built with TSIG support,
/// among the additional records otherwise).
fn tsig_of(msg: &Message) -> Option<(Name, TSIG)> {
    if let Some(sig) = msg.signature() {
        return Some((sig.name.clone(), sig.data.clone()));
    }
    msg.additionals.iter().find_map(|r| match &r.data {
        RData::TSIG(t) => Some((r.name.clone(), t.clone())),
        _ => None,
    })
}

/// One error case: the query (given its OPT by the test), the same without an OPT if that is a
/// case too, the RCODE, whether the question comes back, and the transport.
struct ErrorCase {
    what: String,
    query: RawQuery,
    without_opt: Option<RawQuery>,
    rcode: ResponseCode,
    question_echoed: bool,
    tcp: bool,
}

/// Error replies (NOTIMP for an opcode we do not serve, FORMERR for a question count other than
/// one) carry an OPT (version 0, DO echoed) exactly when the query had one (RFC 6891 §7), the
/// opcode echoed, and the question echoed byte for byte when there was exactly one; nothing is
/// forwarded.
#[test]
fn error_replies_carry_an_opt_and_the_question_when_the_query_had_them() {
    use ResponseCode::{FormErr, NotImp};
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut cases: Vec<ErrorCase> = [1u16, 2, 4, 5, 15]
        .into_iter()
        .map(|opcode| ErrorCase {
            what: format!("opcode {opcode}"),
            query: db0().id(5).opcode(opcode),
            without_opt: Some(db0().id(6).flags(opcode << 11)),
            rcode: NotImp,
            question_echoed: true,
            tcp: false,
        })
        .collect();
    cases.extend([
        // NOTIFY with no question and an OPT right after the header.
        ErrorCase {
            what: "NOTIFY, no question".into(),
            query: raw_message().id(7).flags(4 << 11),
            without_opt: None,
            rcode: NotImp,
            question_echoed: false,
            tcp: false,
        },
        // QDCOUNT 0: the OPT is right after the header.
        ErrorCase {
            what: "QDCOUNT 0".into(),
            query: raw_message().id(1),
            without_opt: Some(raw_message().id(2)),
            rcode: FormErr,
            question_echoed: false,
            tcp: false,
        },
        // QDCOUNT 2: the OPT after both questions; neither is echoed.
        ErrorCase {
            what: "QDCOUNT 2, TCP".into(),
            query: db0().id(3).question(&db0_question()),
            without_opt: None,
            rcode: FormErr,
            question_echoed: false,
            tcp: true,
        },
        ErrorCase {
            what: "QDCOUNT 0, TCP".into(),
            query: raw_message().id(1),
            without_opt: None,
            rcode: FormErr,
            question_echoed: false,
            tcp: true,
        },
    ]);
    let exchange = |msg: &[u8], via_tcp: bool| {
        if via_tcp {
            tcp_raw(d.tcp, msg)
        } else {
            udp_raw(d.udp, msg, SHORT).expect("a reply")
        }
    };
    for c in cases {
        let what = &c.what;
        let opcode = (c.query.build()[2] >> 3) & 0xF;
        let raw = exchange(&opt_do(c.query).build(), c.tcp);
        let r = parse(&raw);
        assert_eq!(r.metadata.response_code, c.rcode, "{what}");
        assert_eq!(
            u8::from(r.metadata.op_code),
            opcode,
            "{what}: opcode echoed"
        );
        let edns = r.edns.as_ref().unwrap_or_else(|| panic!("{what}: no OPT"));
        assert_eq!(edns.version(), 0, "{what}");
        assert!(edns.flags().dnssec_ok, "{what}: DO echoed");
        if c.question_echoed {
            let question = db0_question();
            assert_eq!(
                &raw[12..12 + question.len()],
                question,
                "{what}: question echoed byte for byte"
            );
        } else {
            assert!(r.queries.is_empty(), "{what}: no question echoed");
        }
        if let Some(without) = c.without_opt {
            let raw = exchange(&without.build(), c.tcp);
            assert_eq!(parse(&raw).metadata.response_code, c.rcode, "{what}");
            assert_eq!(arcount(&raw), 0, "{what}: no OPT to a query without one");
        }
    }
    assert_eq!(d.stats().get(Outcome::NotImp), 11);
    assert_eq!(common::client_queries(&up).len(), 0, "nothing forwarded");
}

/// The NODATA SOA is owned by the asked name, so the name claims to be a zone apex: an SOA query
/// must then find that SOA in the answer section (not a NODATA contradicting it).
#[test]
fn soa_query_for_a_mapped_name_answers_the_soa_its_nodata_carries() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    for name in [
        "Db-0.db.example.com.",
        "legacy.example.com.",
        "12.0.42.10.in-addr.arpa.",
    ] {
        let nodata_type = if name.ends_with(".arpa.") {
            RecordType::A
        } else {
            RecordType::AAAA
        };
        let nodata = udp(d.udp, &query(name, nodata_type));
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty(), "{name}");
        let neg = &nodata.authorities[0];
        assert_eq!(neg.name.to_ascii(), name, "NODATA SOA owned by the name");
        for soa_reply in [
            udp(d.udp, &query(name, RecordType::SOA)),
            tcp(d.tcp, &query(name, RecordType::SOA)),
        ] {
            assert_eq!(soa_reply.metadata.response_code, ResponseCode::NoError);
            assert!(soa_reply.metadata.authoritative);
            assert_eq!(soa_reply.answers.len(), 1, "{name}: the SOA is the answer");
            assert!(soa_reply.authorities.is_empty(), "{name}");
            let soa = &soa_reply.answers[0];
            assert_eq!(soa.name, neg.name, "same owner");
            assert_eq!(soa.data, neg.data, "same SOA as the NODATA's");
            assert_eq!(soa.ttl, 7);
            match &soa.data {
                RData::SOA(s) => assert_eq!(s.minimum, 7, "negative TTL = mapping TTL"),
                other => panic!("not an SOA: {other:?}"),
            }
        }
    }
    assert_eq!(common::client_queries(&up).len(), 0);
    assert_eq!(d.stats().get(Outcome::Answer), 6);
    assert_eq!(d.stats().get(Outcome::NoData), 3);
}

#[test]
fn tsig_signed_query_for_a_mapped_name_gets_notauth_badkey() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    // The key name `key.Db-0.db.example.com.`, compressed against the question: written out in
    // full in the reply (our message has no `key` label to point at).
    let key = b"\x03key\xC0\x0C";
    let alias_q = wire_question("www.alias.test", RecordType::A);
    for (question, with_opt, via_tcp) in [
        (db0_question(), false, false),
        (db0_question(), true, false),
        (db0_question(), true, true),
        // An alias name is ours too: no lookup of the target either.
        (alias_q, true, false),
    ] {
        let ar = 1 + u16::from(with_opt);
        let mut msg = raw_message().id(0x7777).question(&question);
        if with_opt {
            msg = opt_do(msg);
        }
        let msg = msg.additional(&tsig_record(key, 0x7777)).build();
        let raw = if via_tcp {
            tcp_raw(d.tcp, &msg)
        } else {
            udp_raw(d.udp, &msg, SHORT).expect("a reply")
        };
        let r = parse(&raw);
        let what = format!("opt {with_opt}, tcp {via_tcp}, {:?}", r.queries);
        assert_eq!(r.metadata.response_code, ResponseCode::NotAuth, "{what}");
        assert!(r.answers.is_empty() && r.authorities.is_empty(), "{what}");
        assert_eq!(&raw[12..12 + question.len()], question, "question echoed");
        assert_eq!(r.edns.is_some(), with_opt, "{what}");
        assert_eq!(arcount(&raw), ar, "OPT and TSIG, or TSIG alone");
        let (name, tsig) = tsig_of(&r).unwrap_or_else(|| panic!("no TSIG: {what}"));
        let key_name = format!("key.{}", r.queries[0].name().to_ascii());
        assert_eq!(name.to_ascii(), key_name, "same key name, written out");
        assert_eq!(tsig.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(tsig.time, 0x6500_0000, "Time Signed of the query");
        assert_eq!(tsig.fudge, 300);
        assert!(tsig.mac.is_empty(), "unsigned (RFC 8945 §5.3.2)");
        assert_eq!(tsig.oid, 0x7777);
        assert_eq!(tsig.error, Some(TsigError::BadKey));
        assert!(tsig.other.is_empty());
        // The TSIG record is the very last thing: key name, type 250, then 16 + 13 octets of
        // RDATA after the algorithm name, ending with Error 17 and Other Len 0.
        assert_eq!(&raw[raw.len() - 4..], &[0, 17, 0, 0], "{what}");
    }
    assert_eq!(d.stats().get(Outcome::NotAuth), 4);
    assert_eq!(
        common::client_queries(&up).len(),
        0,
        "nothing went upstream"
    );
}

#[test]
fn notauth_that_does_not_fit_512_octets_is_truncated() {
    let up = upstream::start();
    // The longest name (255 octets on the wire) and a 249-octet key name: the question and the
    // TSIG record are 559 octets, over the 512 of a client without EDNS.
    let labels = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ];
    let long = labels.join(".");
    let d = Daemon::start(&format!("hosts:\n  {long}: 10.0.0.1\n"), vec![up.addr]);
    let key = wire_name(&vec!["k".repeat(61); labels.len()].join("."));
    let msg = raw_query(&long, RecordType::A)
        .id(9)
        .additional(&tsig_record(&key, 9))
        .build();
    let r = parse(&udp_raw(d.udp, &msg, SHORT).expect("a reply"));
    assert_eq!(r.metadata.response_code, ResponseCode::NotAuth);
    assert!(r.metadata.truncation, "TC: retry over TCP");
    assert!(tsig_of(&r).is_none());
    let r = parse(&tcp_raw(d.tcp, &msg));
    assert!(!r.metadata.truncation);
    assert_eq!(
        tsig_of(&r).map(|t| t.1.error),
        Some(Some(TsigError::BadKey))
    );
}

#[test]
fn misplaced_or_unreadable_tsig_is_formerr_with_the_opt_kept() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let tsig = tsig_record(&wire_name("key"), 1);
    let mut bad_len = tsig.clone();
    let n = bad_len.len();
    bad_len[n - 1] = 1; // Other Len 1, but no Other Data: overruns the RDATA
    let q = db0().id(1);
    let cases = [
        ("TSIG before the OPT", opt_do(q.clone().additional(&tsig))),
        (
            "two TSIG records",
            opt_do(q.clone()).additional(&tsig).additional(&tsig),
        ),
        (
            "TSIG in the authority section",
            opt_do(q.clone().authority(&tsig)),
        ),
        (
            "TSIG fields overrun the RDATA",
            opt_do(q).additional(&bad_len),
        ),
    ];
    for (what, msg) in cases {
        let r = parse(&udp_raw(d.udp, &msg.build(), SHORT).expect("a reply"));
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr, "{what}");
        assert!(r.edns.is_some(), "{what}: the OPT itself is fine");
        assert!(tsig_of(&r).is_none(), "{what}");
    }
}

/// Only names we answer get NOTAUTH: a forwarded query keeps its TSIG (the upstream may know
/// the key) and goes upstream unchanged but for the ID.
#[test]
fn tsig_signed_query_for_a_forwarded_name_goes_upstream_unchanged() {
    let up = faulty::start(|_| Act::Answer(9));
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let msg = opt_do(raw_query("www.example.org", RecordType::A).id(0x4321))
        .additional(&tsig_record(&wire_name("key"), 0x4321))
        .build();
    let r = parse(&udp_raw(d.udp, &msg, Duration::from_secs(3)).expect("the upstream's reply"));
    assert_eq!(r.metadata.id, 0x4321);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        common::ipv4s(&r),
        vec![std::net::Ipv4Addr::new(192, 0, 2, 9)]
    );
    let seen = up.seen.lock().unwrap();
    let sent = seen
        .iter()
        .find(|q| q.name == "www.example.org")
        .expect("forwarded");
    assert_eq!(
        sent.bytes[2..],
        msg[2..],
        "forwarded unchanged but for the ID"
    );
}
