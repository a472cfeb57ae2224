//! TCP per RFC 7766: pipelining answered out of order, idle timeout, queries per connection,
//! and idle or slow-loris connections that cannot lock anyone out.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::faulty::{self, Act, is_probe};
use common::{Daemon, query, tcp, udp};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";

fn send(s: &mut TcpStream, msg: &Message) {
    let q = msg.to_vec().unwrap();
    s.write_all(&common::framed(&q)).unwrap();
}

fn recv(s: &mut TcpStream) -> Option<Message> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Message::from_vec(&body).ok()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn pipelined_queries_are_answered_out_of_order() {
    let up = faulty::start(|q| {
        if q.name == "slow.example.org" {
            Act::AnswerAfter(5, Duration::from_millis(500))
        } else if is_probe(q) {
            Act::Answer(1)
        } else {
            Act::Answer(2)
        }
    });
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut s = connect(d.tcp);
    let mut slow = query("slow.example.org.", RecordType::A);
    slow.metadata.id = 1;
    let mut fast_fwd = query("fast.example.org.", RecordType::A);
    fast_fwd.metadata.id = 2;
    let mut local = query("db-0.db.example.com.", RecordType::A);
    local.metadata.id = 3;
    for m in [&slow, &fast_fwd, &local] {
        send(&mut s, m);
    }
    let order: Vec<u16> = (0..3)
        .map(|_| recv(&mut s).expect("an answer").metadata.id)
        .collect();
    assert_eq!(order.len(), 3);
    assert_eq!(
        *order.last().unwrap(),
        1,
        "the slow forward comes last: {order:?}"
    );
}

#[test]
fn idle_connections_are_closed() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.tcp_idle_timeout = Duration::from_millis(300)
    });
    let mut s = connect(d.tcp);
    let t0 = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed by the server");
    let t = t0.elapsed();
    assert!(
        t >= Duration::from_millis(250) && t < Duration::from_secs(2),
        "{t:?}"
    );
}

#[test]
fn connection_closes_after_max_queries_having_answered_them_all() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| c.tcp_max_queries = 3);
    let mut s = connect(d.tcp);
    for _ in 0..3 {
        send(&mut s, &query("db-0.db.example.com.", RecordType::A));
    }
    for _ in 0..3 {
        assert_eq!(recv(&mut s).expect("answered").answers.len(), 1);
    }
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "then closed");
}

#[test]
fn a_thousand_slow_loris_connections_do_not_lock_out_udp_or_other_tcp_clients() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start(MAPPING, vec![up.addr]);
    // 1000 connections that send half a length prefix and then nothing.
    let loris: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(d.tcp).unwrap();
            let _ = s.write_all(&[0x00]);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let r = udp(d.udp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "UDP not delayed: {:?}",
        t0.elapsed()
    );
    let t0 = Instant::now();
    let r = tcp(d.tcp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "a new TCP client is served: {:?}",
        t0.elapsed()
    );
    drop(loris);
}

#[test]
fn a_64k_tcp_message_is_read_whole_and_answered() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut q = query("db-0.db.example.com.", RecordType::A)
        .to_vec()
        .unwrap();
    q.resize(u16::MAX as usize, 0xAB); // trailing octets after the question are ignored
    let mut s = connect(d.tcp);
    s.write_all(&common::framed(&q)).unwrap();
    let r = recv(&mut s).expect("answered");
    assert_eq!(r.answers.len(), 1);
}

/// One dispatch for both transports: the same queries over UDP and over TCP are counted under
/// the same outcomes (local answer, NODATA, NOTIMP, FORMERR, REFUSED, alias, forwarded, and
/// SERVFAIL from an upstream that never answers).
#[test]
fn udp_and_tcp_count_the_same_outcomes_for_the_same_queries() {
    let up = faulty::start(|q| {
        if q.name == "silent.example.org" {
            Act::Drop
        } else {
            Act::Answer(7)
        }
    });
    let d = Daemon::start_with(
        "hosts:\n  db-0.db.example.com: 10.42.0.12\nrules:\n  - host: alias.example.com\n    result: www.example.org\n",
        vec![up.addr],
        |c| c.upstream_timeout = Duration::from_millis(600),
    );
    let mut notimp = query("db-0.db.example.com.", RecordType::A);
    notimp.metadata.op_code = hickory_proto::op::OpCode::Notify;
    let raw: Vec<Vec<u8>> = vec![
        query("db-0.db.example.com.", RecordType::A)
            .to_vec()
            .unwrap(),
        query("DB-0.db.example.com.", RecordType::AAAA)
            .to_vec()
            .unwrap(),
        notimp.to_vec().unwrap(),
        // QDCOUNT 0: FORMERR.
        vec![0x12, 0x34, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        query("db-0.db.example.com.", RecordType::AXFR)
            .to_vec()
            .unwrap(),
        query("alias.example.com.", RecordType::A).to_vec().unwrap(),
        query("www.example.org.", RecordType::A).to_vec().unwrap(),
        query("silent.example.org.", RecordType::A)
            .to_vec()
            .unwrap(),
    ];
    for q in &raw {
        let u = common::udp_raw(d.udp, q, Duration::from_secs(5)).expect("a UDP reply");
        let t = common::tcp_raw(d.tcp, q);
        assert_eq!(u[..2], q[..2], "the query's ID over UDP");
        assert_eq!(
            u[2..4],
            t[2..4],
            "the same flags and rcode over UDP and TCP for {q:02x?}"
        );
    }
    let totals = d.stats();
    assert_eq!(totals.udp, totals.tcp, "{totals:?}");
    use splitdns::dns::answer::Outcome::*;
    for (outcome, n) in [
        (Answer, 2),
        (NoData, 1),
        (NotImp, 1),
        (FormErr, 1),
        (Refused, 1),
        (Forwarded, 1),
        (ServFail, 1),
    ] {
        assert_eq!(totals.udp[outcome as usize], n, "{outcome:?}: {totals:?}");
    }
}
