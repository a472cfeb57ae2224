//! Unmapped names are relayed to a real upstream and come back exactly as the upstream sent them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Daemon, closed_port, query, tcp, udp, udp_raw, upstream, with_edns};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, RecordType};

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";

/// Everything but the ID must be identical to what the upstream answers directly.
fn assert_same(via: &Message, direct: &Message) {
    assert_eq!(via.metadata.response_code, direct.metadata.response_code);
    assert_eq!(via.metadata.authoritative, direct.metadata.authoritative);
    assert_eq!(via.metadata.truncation, direct.metadata.truncation);
    assert_eq!(
        via.metadata.recursion_available,
        direct.metadata.recursion_available
    );
    assert_eq!(via.queries, direct.queries);
    assert_eq!(via.answers, direct.answers);
    assert_eq!(via.authorities, direct.authorities);
    assert_eq!(via.additionals, direct.additionals);
    assert_eq!(via.edns, direct.edns);
}

#[test]
fn unmapped_names_are_answered_exactly_as_the_upstream_answers() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    for (name, qtype) in [
        ("www.example.org.", RecordType::A),
        ("WwW.ExAmple.org.", RecordType::AAAA),
        ("multi.example.org.", RecordType::A),
        ("alias.example.org.", RecordType::A), // CNAME chain
        ("www.example.org.", RecordType::MX),  // NODATA with SOA
        ("nope.example.org.", RecordType::A),  // NXDOMAIN with SOA
        ("elsewhere.test.", RecordType::A),    // REFUSED
    ] {
        let q = query(name, qtype);
        let direct = udp(up.addr, &q);
        let via_udp = udp(d.udp, &q);
        let via_tcp = tcp(d.tcp, &q);
        assert_same(&via_udp, &direct);
        assert_same(&via_tcp, &direct);
    }
    let r = udp(d.udp, &query("nope.example.org.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        r.authorities[0].record_type(),
        RecordType::SOA,
        "NXDOMAIN keeps its SOA"
    );
    let r = udp(d.udp, &query("alias.example.org.", RecordType::A));
    assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
    assert!(matches!(r.answers[1].data, RData::A(_)));
}

#[test]
fn upstream_sees_a_fresh_id_and_the_client_gets_its_own_back() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut q = query("www.example.org.", RecordType::A);
    for id in [0u16, 1, 0xBEEF, 0xFFFF] {
        q.metadata.id = id;
        let r = udp(d.udp, &q);
        assert_eq!(r.metadata.id, id);
    }
    let seen: Vec<u16> = common::client_queries(&up).iter().map(|s| s.id).collect();
    assert_eq!(seen.len(), 4);
    assert_ne!(
        seen,
        vec![0, 1, 0xBEEF, 0xFFFF],
        "upstream IDs are our own random ones"
    );
}

#[test]
fn edns_options_pass_through_both_ways_and_no_opt_is_added() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let q = with_edns(
        query("www.example.org.", RecordType::A),
        1232,
        &[(65001, &[1, 2, 3])],
    );
    let r = udp(d.udp, &q);
    let edns = r.edns.as_ref().expect("OPT from upstream passed on");
    assert_eq!(
        edns.option(EdnsCode::from(65001)),
        Some(&EdnsOption::Unknown(65001, vec![1, 2, 3])),
        "the upstream echoes options, so they crossed the relay both ways"
    );
    let r = udp(d.udp, &query("www.example.org.", RecordType::A));
    assert!(r.edns.is_none(), "no OPT added to a non-EDNS reply");
}

#[test]
fn truncated_upstream_reply_reaches_udp_client_and_tcp_gets_it_whole() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let r = udp(d.udp, &query("big.example.org.", RecordType::TXT));
    assert!(r.metadata.truncation, "TC passed through to the UDP client");
    let r = tcp(d.tcp, &query("big.example.org.", RecordType::TXT));
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), upstream::BIG_TXT_COUNT);
    assert!(
        up.queries()
            .iter()
            .any(|s| s.tcp && s.name.eq_ignore_ascii_case("big.example.org.")),
        "a TCP client's query goes upstream over TCP"
    );
}

/// ICMP port unreachable from the only upstream is not the end of a query (the server may be
/// restarting): it is re-sent within the budget, and SERVFAIL comes at the budget's end.
#[test]
fn unreachable_only_upstream_is_retried_until_the_budget_ends() {
    let d = Daemon::start_with(MAPPING, vec![closed_port()], |c| {
        c.upstream_timeout = Duration::from_millis(600)
    });
    let (r, took) = common::timed(|| udp(d.udp, &query("www.example.org.", RecordType::A)));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    common::assert_between(
        took,
        Duration::from_millis(450),
        Duration::from_millis(600),
        "re-sent until the budget's end",
    );
    let m = d.stats();
    assert!(m.upstream_retransmits() >= 1, "{m:?}");
    assert!(m.upstreams[0].errors >= 1, "ICMP errors are counted: {m:?}");
    // Refused, not silent: the SERVFAIL says "Network Error" (RFC 8914 §4.24) to an EDNS client,
    // over UDP and TCP alike.
    let q = with_edns(query("www.example.org.", RecordType::A), 1232, &[])
        .to_vec()
        .unwrap();
    let r = udp_raw(d.udp, &q, Duration::from_secs(2)).expect("a SERVFAIL");
    assert_eq!(r[3] & 0x0f, 2);
    assert_eq!(common::ede(&r), Some(23), "{r:02x?}");
    let r = common::tcp_raw(d.tcp, &q);
    assert_eq!(r[3] & 0x0f, 2);
    assert_eq!(common::ede(&r), Some(23), "{r:02x?}");
}

#[test]
fn own_listen_address_is_refused_as_upstream() {
    let listen: SocketAddr = "127.0.0.1:5399".parse().unwrap();
    let mut config = splitdns::Config::new(splitdns::MappingSource::Embedded, vec![listen]);
    config.listen = vec![listen];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(splitdns::start(config)).err().expect("refused");
    assert!(err.to_string().contains("loop"), "{err}");
}

#[test]
fn tcp_connection_carries_several_queries() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut s = std::net::TcpStream::connect(d.tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for name in [
        "db-0.db.example.com.",
        "www.example.org.",
        "db-0.db.example.com.",
    ] {
        let q = query(name, RecordType::A).to_vec().unwrap();
        common::write_framed(&mut s, &q).unwrap();
        let m = Message::from_vec(&common::read_framed(&mut s).unwrap()).unwrap();
        assert_eq!(m.answers.len(), 1, "{name}");
    }
}
