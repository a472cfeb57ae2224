//! Mapped names are answered by the daemon itself, over real UDP and TCP, and never forwarded.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{Daemon, query, tcp, udp, upstream, with_edns};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const MAPPING: &str = "\
ttl: 7
hosts:
  db-0.db.example.com: [10.42.0.12, 10.42.0.22]
  db-1.db.example.com: [10.42.0.13, \"fd00::13\"]
  db-2.db.example.com.: 10.42.0.14
  v6only.example.com: \"fd00::99\"
";

use common::ipv6s as v6s;

/// Every address of the asked family (both for ANY: RFC 8482 allows a subset, we give all),
/// over UDP and TCP alike: authoritative, RD copied, the mapping's TTL, no OPT unless asked.
#[test]
fn mapped_names_are_answered_with_every_address_of_the_type_over_udp_and_tcp() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let v4 = |s: &[&str]| -> Vec<Ipv4Addr> { s.iter().map(|a| a.parse().unwrap()).collect() };
    let v6 = |s: &[&str]| -> Vec<Ipv6Addr> { s.iter().map(|a| a.parse().unwrap()).collect() };
    let rows = [
        (
            "db-0.db.example.com.",
            RecordType::A,
            v4(&["10.42.0.12", "10.42.0.22"]),
            v6(&[]),
        ),
        (
            "db-1.db.example.com.",
            RecordType::AAAA,
            v4(&[]),
            v6(&["fd00::13"]),
        ),
        (
            "v6only.example.com.",
            RecordType::AAAA,
            v4(&[]),
            v6(&["fd00::99"]),
        ),
        (
            "db-1.db.example.com.",
            RecordType::ANY,
            v4(&["10.42.0.13"]),
            v6(&["fd00::13"]),
        ),
    ];
    for (name, qtype, want4, want6) in &rows {
        for reply in [
            udp(d.udp, &query(name, *qtype)),
            tcp(d.tcp, &query(name, *qtype)),
        ] {
            let what = format!("{name} {qtype}");
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NoError,
                "{what}"
            );
            assert!(reply.metadata.authoritative, "AA set on our own names");
            assert!(reply.metadata.recursion_desired, "RD copied from the query");
            assert_eq!(&common::ipv4s(&reply), want4, "{what}");
            assert_eq!(&v6s(&reply), want6, "{what}");
            assert!(
                reply.answers.iter().all(|r| r.ttl == 7),
                "TTL from the mapping"
            );
            assert!(
                reply.edns.is_none(),
                "no OPT in a reply to a query without one"
            );
        }
    }
    assert_eq!(
        common::client_queries(&up).len(),
        0,
        "mapped names never go upstream"
    );
    assert_eq!(
        d.stats().get(splitdns::dns::answer::Outcome::Answer),
        2 * rows.len() as u64
    );
}

#[test]
fn missing_family_and_other_types_are_nodata_with_soa() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    for (name, qtype) in [
        ("db-0.db.example.com.", RecordType::AAAA),
        ("v6only.example.com.", RecordType::A),
        ("db-0.db.example.com.", RecordType::MX),
        ("db-0.db.example.com.", RecordType::TXT),
    ] {
        let r = udp(d.udp, &query(name, qtype));
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(r.answers.is_empty(), "{name} {qtype}");
        assert_eq!(r.authorities.len(), 1, "SOA in authority (RFC 2308)");
        let soa = &r.authorities[0];
        assert_eq!(soa.record_type(), RecordType::SOA);
        assert_eq!(soa.ttl, 7);
        match &soa.data {
            RData::SOA(s) => assert_eq!(s.minimum, 7, "negative TTL = mapping TTL"),
            other => panic!("not an SOA: {other:?}"),
        }
        assert!(r.metadata.authoritative);
    }
    assert_eq!(
        common::client_queries(&up).len(),
        0,
        "a mapped name is never forwarded, whatever the type"
    );
}

#[test]
fn mixed_case_question_is_echoed_exactly_and_trailing_dot_is_optional() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let asked = "Db-0.DB.eXample.COM.";
    let r = udp(d.udp, &query(asked, RecordType::A));
    assert_eq!(
        r.queries[0].name().to_ascii(),
        asked,
        "question echoed with its case"
    );
    assert_eq!(r.answers[0].name.to_ascii(), asked, "owner name as asked");
    // `db-2.db.example.com.` is written with a trailing dot in the file; asked without case.
    let r = udp(d.udp, &query("DB-2.db.example.com.", RecordType::A));
    assert_eq!(common::ipv4s(&r), vec![Ipv4Addr::new(10, 42, 0, 14)]);
}

#[test]
fn edns_is_answered_only_when_asked_and_payload_size_is_honoured() {
    let up = upstream::start();
    let many: Vec<String> = (1..=100)
        .map(|i| format!("10.9.{}.{}", i / 250, i % 250))
        .collect();
    let yaml = format!(
        "hosts:\n  big.example.com: [{}]\n  db-0.db.example.com: 10.0.0.1\n",
        many.join(", ")
    );
    let d = Daemon::start(&yaml, vec![up.addr]);

    let r = udp(
        d.udp,
        &with_edns(query("db-0.db.example.com.", RecordType::A), 4096, &[]),
    );
    let edns = r.edns.as_ref().expect("OPT in the reply to an EDNS query");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(edns.version(), 0);

    // 100 A records are 1,600 octets: TC over UDP without EDNS (512) and with 1232 ...
    let r = udp(d.udp, &query("big.example.com.", RecordType::A));
    assert!(r.metadata.truncation, "TC when the answer does not fit 512");
    assert!(r.answers.is_empty());
    assert!(r.edns.is_none());
    let r = udp(
        d.udp,
        &with_edns(query("big.example.com.", RecordType::A), 1232, &[]),
    );
    assert!(r.metadata.truncation);
    assert!(r.edns.is_some(), "OPT kept in a truncated reply");
    // ... and whole over TCP.
    let r = tcp(d.tcp, &query("big.example.com.", RecordType::A));
    assert!(!r.metadata.truncation);
    assert_eq!(common::ipv4s(&r).len(), 100);
}

#[test]
fn unknown_edns_version_gets_badvers() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut msg = query("db-0.db.example.com.", RecordType::A);
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_version(1);
    msg.set_edns(edns);
    let r = udp(d.udp, &msg);
    // 16 is both BADVERS and BADSIG (RFC 6891 §9); hickory names it BADSIG.
    assert_eq!(u16::from(r.metadata.response_code), 16, "BADVERS");
    assert_eq!(r.edns.as_ref().map(|e| e.version()), Some(0));
    assert!(r.answers.is_empty());
}

#[test]
fn example_mapping_in_config_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/mapping.yaml");
    let snap =
        splitdns::mapping::file::load(std::path::Path::new(path), 5).expect("example parses");
    assert!(snap.len() >= 2);
    let embedded = splitdns::load_mapping(&splitdns::MappingSource::Embedded, 5).unwrap();
    assert_eq!(embedded.len(), snap.len());
}
