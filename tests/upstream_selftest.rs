//! Self-tests for the in-process upstream DNS server used by the integration tests.

mod common;

use common::{read_framed, upstream, write_framed};

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, RecordType};

const TIMEOUT: Duration = Duration::from_secs(2);

fn query(name: &str, qtype: RecordType, edns: Option<Edns>) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(edns) = edns {
        msg.set_edns(edns);
    }
    msg
}

fn edns_with(payload: u16, options: &[(u16, &[u8])]) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    for (code, data) in options {
        edns.options_mut()
            .insert(EdnsOption::Unknown(*code, data.to_vec()));
    }
    edns
}

fn udp_exchange_raw(addr: SocketAddr, msg: &Message) -> Vec<u8> {
    common::udp_raw(addr, &msg.to_vec().unwrap(), TIMEOUT).expect("a UDP reply")
}

fn udp(addr: SocketAddr, msg: &Message) -> Message {
    let reply = Message::from_vec(&udp_exchange_raw(addr, msg)).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    reply
}

fn tcp(addr: SocketAddr, msg: &Message) -> Message {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write_framed(&mut stream, &msg.to_vec().unwrap()).unwrap();
    let reply = Message::from_vec(&read_framed(&mut stream).unwrap()).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

fn assert_zone_soa(reply: &Message) {
    assert_eq!(reply.authorities.len(), 1, "{reply:?}");
    let soa = &reply.authorities[0];
    assert_eq!(soa.name, Name::from_ascii("example.org.").unwrap());
    assert_eq!(soa.ttl, 60);
    let RData::SOA(soa) = &soa.data else {
        panic!("not an SOA: {soa:?}")
    };
    assert_eq!(soa.mname, Name::from_ascii("ns.example.org.").unwrap());
    assert_eq!(
        soa.rname,
        Name::from_ascii("hostmaster.example.org.").unwrap()
    );
    assert_eq!(
        (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
        (1, 3600, 600, 86400, 60)
    );
}

#[test]
fn a_record_authoritative_and_case_echo() {
    let up = upstream::start();
    let reply = udp(up.addr, &query("wWw.ExAmPlE.oRg.", RecordType::A, None));
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert!(!reply.metadata.truncation);
    assert!(reply.metadata.recursion_desired);
    assert_eq!(reply.queries.len(), 1);
    assert_eq!(reply.queries[0].name().to_ascii(), "wWw.ExAmPlE.oRg.");
    assert_eq!(reply.queries[0].query_type(), RecordType::A);
    assert_eq!(reply.answers.len(), 1);
    let ans = &reply.answers[0];
    assert_eq!(ans.name.to_ascii(), "wWw.ExAmPlE.oRg.");
    assert_eq!(ans.ttl, 300);
    assert_eq!(ans.data, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))));
    assert!(reply.authorities.is_empty());
    // no OPT in the query -> no OPT in the reply
    assert!(reply.edns.is_none());
    assert!(reply.additionals.is_empty());
}

#[test]
fn aaaa_and_multi() {
    let up = upstream::start();
    let reply = udp(up.addr, &query("www.example.org.", RecordType::AAAA, None));
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(
        reply.answers[0].data,
        RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)))
    );

    let reply = udp(up.addr, &query("multi.example.org.", RecordType::A, None));
    let mut ips: Vec<_> = reply.answers.iter().map(|r| r.data.clone()).collect();
    ips.sort_by_key(|d| format!("{d}"));
    assert_eq!(
        ips,
        vec![
            RData::A(A(Ipv4Addr::new(192, 0, 2, 10))),
            RData::A(A(Ipv4Addr::new(192, 0, 2, 11))),
        ]
    );
}

#[test]
fn nxdomain_with_soa() {
    let up = upstream::start();
    let reply = udp(up.addr, &query("nope.example.org.", RecordType::A, None));
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.metadata.authoritative);
    assert!(reply.answers.is_empty());
    assert_zone_soa(&reply);
}

#[test]
fn nodata_with_soa() {
    let up = upstream::start();
    let reply = udp(up.addr, &query("www.example.org.", RecordType::MX, None));
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert!(reply.answers.is_empty());
    assert_zone_soa(&reply);
}

#[test]
fn refused_outside_zone() {
    let up = upstream::start();
    let reply = udp(up.addr, &query("www.example.com.", RecordType::A, None));
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
    assert!(reply.authorities.is_empty());
    // "notexample.org" is not under example.org either
    let reply = udp(up.addr, &query("notexample.org.", RecordType::A, None));
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn cname_chain() {
    let up = upstream::start();
    let reply = udp(up.addr, &query("Alias.Example.Org.", RecordType::A, None));
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers.len(), 2, "{reply:?}");
    assert_eq!(reply.answers[0].name.to_ascii(), "Alias.Example.Org.");
    assert_eq!(
        reply.answers[0].data,
        RData::CNAME(CNAME(Name::from_ascii("www.example.org.").unwrap()))
    );
    assert_eq!(reply.answers[1].name.to_ascii(), "www.example.org.");
    assert_eq!(
        reply.answers[1].data,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))
    );
}

#[test]
fn edns_options_echoed() {
    let up = upstream::start();
    // an unknown option plus an ECS option; both must come back byte for byte
    let ecs: &[u8] = &[0, 1, 24, 0, 198, 51, 100];
    let q = query(
        "www.example.org.",
        RecordType::A,
        Some(edns_with(4096, &[(65001, &[1, 2, 3]), (8, ecs)])),
    );
    let reply = udp(up.addr, &q);
    let edns = reply.edns.as_ref().expect("reply must carry OPT");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(edns.version(), 0);
    assert_eq!(
        edns.option(EdnsCode::Unknown(65001)),
        Some(&EdnsOption::Unknown(65001, vec![1, 2, 3]))
    );
    let ecs_back = edns.option(EdnsCode::Subnet).expect("ECS echoed");
    assert_eq!(Vec::<u8>::try_from(ecs_back).unwrap(), ecs);
    assert_eq!(edns.options().as_ref().len(), 2);
    assert_eq!(reply.answers.len(), 1);

    // same over TCP, and an option with empty data
    let q = query(
        "www.example.org.",
        RecordType::A,
        Some(edns_with(1232, &[(65002, &[])])),
    );
    let reply = tcp(up.addr, &q);
    let edns = reply.edns.as_ref().expect("reply must carry OPT");
    assert_eq!(
        edns.options().as_ref(),
        &[(EdnsCode::Unknown(65002), EdnsOption::Unknown(65002, vec![]))]
    );

    // EDNS without options -> OPT without options
    let reply = udp(
        up.addr,
        &query(
            "www.example.org.",
            RecordType::A,
            Some(edns_with(1232, &[])),
        ),
    );
    assert!(reply.edns.as_ref().unwrap().options().as_ref().is_empty());

    // and OPT is also present on negative answers
    let reply = udp(
        up.addr,
        &query(
            "nope.example.org.",
            RecordType::A,
            Some(edns_with(1232, &[(65001, &[9])])),
        ),
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        reply
            .edns
            .as_ref()
            .unwrap()
            .option(EdnsCode::Unknown(65001)),
        Some(&EdnsOption::Unknown(65001, vec![9]))
    );
}

#[test]
fn big_txt_truncated_over_udp_full_over_tcp() {
    let up = upstream::start();

    // no EDNS: 512 limit
    let q = query("big.example.org.", RecordType::TXT, None);
    let raw = udp_exchange_raw(up.addr, &q);
    assert!(raw.len() <= 512);
    let reply = Message::from_vec(&raw).unwrap();
    assert!(reply.metadata.truncation);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert!(reply.authorities.is_empty());
    assert_eq!(reply.queries.len(), 1);
    assert_eq!(reply.queries[0].name().to_ascii(), "big.example.org.");
    assert!(reply.edns.is_none());

    // EDNS 4096: capped at 1232, still too big -> TC with OPT kept
    let q = query(
        "big.example.org.",
        RecordType::TXT,
        Some(edns_with(4096, &[(65001, &[1])])),
    );
    let raw = udp_exchange_raw(up.addr, &q);
    assert!(raw.len() <= 1232);
    let reply = Message::from_vec(&raw).unwrap();
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());
    assert_eq!(
        reply
            .edns
            .as_ref()
            .unwrap()
            .option(EdnsCode::Unknown(65001)),
        Some(&EdnsOption::Unknown(65001, vec![1]))
    );

    // TCP: everything
    let reply = tcp(up.addr, &query("big.example.org.", RecordType::TXT, None));
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), upstream::BIG_TXT_COUNT);
    assert!(
        reply
            .answers
            .iter()
            .all(|r| matches!(&r.data, RData::TXT(t) if t.txt_data.iter().map(|s| s.len()).sum::<usize>() >= 100))
    );

    // a small answer over UDP is not truncated
    let reply = udp(up.addr, &query("multi.example.org.", RecordType::A, None));
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 2);
}

#[test]
fn query_log() {
    let up = upstream::start();
    let q1 = query("WWW.example.org.", RecordType::A, None);
    udp(up.addr, &q1);
    let q2 = query(
        "www.EXAMPLE.org.",
        RecordType::AAAA,
        Some(edns_with(1232, &[])),
    );
    tcp(up.addr, &q2);
    udp(up.addr, &query("other.example.org.", RecordType::A, None));

    assert_eq!(up.count_for("www.example.org"), 2);
    assert_eq!(up.count_for("WWW.EXAMPLE.ORG."), 2);
    assert_eq!(up.count_for("other.example.org."), 1);
    assert_eq!(up.count_for("missing.example.org"), 0);

    let seen = up.queries();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].name, "WWW.example.org.");
    assert_eq!(seen[0].qtype, u16::from(RecordType::A));
    assert!(!seen[0].tcp);
    assert_eq!(seen[0].id, q1.metadata.id);
    assert_eq!(seen[1].name, "www.EXAMPLE.org.");
    assert_eq!(seen[1].qtype, u16::from(RecordType::AAAA));
    assert!(seen[1].tcp);
    assert_eq!(seen[1].id, q2.metadata.id);
}

#[tokio::test]
async fn works_inside_current_thread_runtime() {
    let up = upstream::start();
    let sock = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let q = query("www.example.org.", RecordType::A, None);
    sock.send_to(&q.to_vec().unwrap(), up.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(up.count_for("www.example.org"), 1);
    drop(up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_multi_thread_runtime_and_shuts_down() {
    let up = upstream::start();
    let addr = up.addr;
    let reply = tokio::task::spawn_blocking(move || {
        udp(addr, &query("www.example.org.", RecordType::A, None))
    })
    .await
    .unwrap();
    assert_eq!(reply.answers.len(), 1);
    drop(up);
    // after drop the TCP port is closed
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}
