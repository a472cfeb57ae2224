//! Resistance to off-path spoofing (issue 19, RFC 5452): many source ports, identical questions
//! in flight coalesced into one upstream query (each client still gets its own ID and spelling),
//! a reply accepted only with the question echoed exactly, and bounded query sizes.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::faulty::{self, Act};
use common::{Daemon, udp, udp_raw};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";

/// A raw `name A` query with the given ID (the name as spelled: 0x20 case kept).
fn raw_query(id: u16, name: &str) -> Vec<u8> {
    common::raw_query(name, RecordType::A).id(id).build()
}

#[test]
fn identical_questions_in_flight_are_one_upstream_query_and_each_client_gets_its_own() {
    let f = faulty::start(|q| {
        if q.name == "www.example.org" {
            Act::AnswerAfter(4, Duration::from_millis(150))
        } else {
            Act::Answer(1)
        }
    });
    let d = Daemon::start(MAPPING, vec![f.addr]);
    let addr = d.udp;
    let clients: Vec<_> = (0..32u16)
        .map(|i| {
            std::thread::spawn(move || {
                let name = if i % 2 == 0 {
                    "www.example.org"
                } else {
                    "WWW.Example.ORG"
                };
                let q = raw_query(0x1000 + i, name);
                let r = udp_raw(addr, &q, common::TIMEOUT).expect("answered");
                // Its own ID and its own spelling of the question; the answer.
                assert_eq!(r[..2], q[..2]);
                assert_eq!(r[12..q.len()], q[12..]);
                let m = Message::from_vec(&r).unwrap();
                common::ipv4s(&m)
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), [Ipv4Addr::new(192, 0, 2, 4)]);
    }
    // One query (a retransmission of it, if the machine was slow, is still that query).
    let n = f.udp_count("www.example.org");
    assert!((1..=2).contains(&n), "{n} upstream queries for 32 clients");
    let forwarded = d.stats().get(splitdns::dns::answer::Outcome::Forwarded);
    assert_eq!(forwarded, 32, "each client counted");
}

#[test]
fn queries_leave_from_many_source_ports() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    upstream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let d = Daemon::start(MAPPING, vec![upstream.local_addr().unwrap()]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut ports = HashSet::new();
    let mut ids = HashSet::new();
    let mut buf = [0u8; 512];
    for i in 0..200u16 {
        client
            .send_to(&raw_query(i, &format!("n{i}.example.org")), d.udp)
            .unwrap();
        // Read until this query arrives (probes and re-sends of earlier ones come too).
        let want = raw_query(0, &format!("n{i}.example.org"));
        loop {
            let (n, from) = upstream.recv_from(&mut buf).expect("the query arrives");
            if n == want.len() && buf[12..n] == want[12..] {
                ports.insert(from.port());
                ids.insert(u16::from_be_bytes([buf[0], buf[1]]));
                break;
            }
        }
    }
    assert!(
        ports.len() > 30,
        "only {} source ports for 200 queries",
        ports.len()
    );
    assert!(ids.len() > 190, "IDs repeat: {}", ids.len());
}

/// An upstream that answers with the question in another case: its first such reply is not
/// taken (a forger's would look the same), then it is known not to preserve case and its
/// replies are taken case-insensitively: the client is answered, a re-send later.
#[test]
fn an_upstream_that_changes_the_case_is_still_usable() {
    let f = faulty::start(|q| {
        if faulty::is_probe(q) {
            Act::Answer(1)
        } else {
            Act::Upcased(5)
        }
    });
    let d = Daemon::start(MAPPING, vec![f.addr]);
    let r = udp(d.udp, &common::query("www.Example.org.", RecordType::A));
    assert_eq!(common::ipv4s(&r), [Ipv4Addr::new(192, 0, 2, 5)]);
    assert_eq!(
        r.queries[0].name().to_ascii(),
        "www.Example.org.",
        "the client's spelling"
    );
    assert!(
        f.udp_count("www.example.org") >= 2,
        "the case-changed first reply was not taken"
    );
}

#[test]
fn an_oversized_udp_query_is_formerr_and_holds_nothing() {
    let f = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start(MAPPING, vec![f.addr]);
    // www.example.org A with an OPT carrying an 8,000-octet option.
    let q = common::raw_query("www.example.org", RecordType::A)
        .id(7)
        .edns(4096, false, &[(65001, &[0u8; 8000])])
        .build();
    let r = udp_raw(d.udp, &q, common::TIMEOUT).expect("an answer");
    assert!(
        r.len() < 512,
        "never larger than a header, question and OPT"
    );
    assert_eq!(
        Message::from_vec(&r).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    assert_eq!(f.udp_count("www.example.org"), 0, "not forwarded");
}

/// Bound beyond loopback, this pod's own clients are answered as before (the strangers that are
/// ignored need another network namespace: `benches/security.sh`; the rules are unit tests in
/// `src/server/allow.rs`).
#[test]
fn bound_beyond_loopback_the_pod_itself_is_still_answered() {
    let f = faulty::start(|_| Act::Answer(3));
    let d = Daemon::start_with(MAPPING, vec![f.addr], |c| {
        c.listen = vec!["0.0.0.0:0".parse().unwrap()];
    });
    let port = d.udp.port();
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = udp(local, &common::query("db-0.db.example.com.", RecordType::A));
    assert_eq!(common::ipv4s(&r), [Ipv4Addr::new(10, 42, 0, 12)]);
    let r = udp(local, &common::query("www.example.org.", RecordType::A));
    assert_eq!(common::ipv4s(&r), [Ipv4Addr::new(192, 0, 2, 3)]);
}
