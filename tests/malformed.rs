//! Malformed and unexpected input: answered with the right error or dropped, and the server
//! keeps answering the next good query.

mod common;

use std::time::Duration;

use common::{Daemon, header, query, tcp_raw, udp, udp_raw, upstream};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use splitdns::dns::answer::Outcome;

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";
const SHORT: Duration = Duration::from_millis(300);

fn good_query_still_works(d: &Daemon) {
    let r = udp(d.udp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1, "the server still answers");
}

const DB0: &[u8] = b"\x04db-0\x02db\x07example\x03com\x00\x00\x01\x00\x01";

#[test]
fn garbage_and_truncated_packets_are_dropped_and_do_not_stop_the_server() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0xff; 11],
        // A response (QR=1): never answered, or two servers could reflect forever.
        [header(7, 0x8000, 1, 0, 0, 0), DB0.to_vec()].concat(),
    ];
    // Deterministic pseudo-random noise.
    let mut x: u32 = 0x1234_5678;
    for len in [13usize, 40, 300, 1500] {
        let mut noise: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        noise[2] &= 0x7f; // QR clear: the server has to look further than the header
        junk.push(noise);
    }
    for (i, bytes) in junk.iter().enumerate().take(4) {
        assert_eq!(udp_raw(d.udp, bytes, SHORT), None, "junk #{i} is dropped");
    }
    for bytes in &junk[4..] {
        // Noise with QR=0 may read as a query: any reply is fine, a crash or stall is not.
        let _ = udp_raw(d.udp, bytes, SHORT);
    }
    good_query_still_works(&d);
    assert!(d.stats().get(Outcome::Dropped) >= 4);
}

#[test]
fn question_count_other_than_one_is_formerr() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    for (qd, body) in [(0u16, vec![]), (2, [DB0, DB0].concat())] {
        let msg = [header(0x4242, 0x0100, qd, 0, 0, 0), body].concat();
        let r = Message::from_vec(&udp_raw(d.udp, &msg, SHORT).expect("FORMERR reply")).unwrap();
        assert_eq!(r.metadata.id, 0x4242);
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::FormErr,
            "QDCOUNT {qd}"
        );
    }
    good_query_still_works(&d);
}

#[test]
fn truncated_question_and_bad_names_are_formerr() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut long_label = vec![64u8];
    long_label.extend([b'a'; 64]);
    long_label.extend([0, 0, 1, 0, 1]);
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(60u8);
        long_name.extend([b'b'; 60]);
    }
    long_name.extend([0, 0, 1, 0, 1]);
    for body in [
        DB0[..10].to_vec(),                   // name cut short
        DB0[..DB0.len() - 2].to_vec(),        // class missing
        b"\xC0\x0C\x00\x01\x00\x01".to_vec(), // pointer loop in the question
        long_label,
        long_name,
    ] {
        let msg = [header(9, 0x0100, 1, 0, 0, 0), body].concat();
        let r = Message::from_vec(&udp_raw(d.udp, &msg, SHORT).expect("a reply")).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }
    assert_eq!(
        common::client_queries(&up).len(),
        0,
        "nothing malformed is forwarded"
    );
    good_query_still_works(&d);
}

#[test]
fn opcodes_other_than_query_are_notimp() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    for opcode in [1u16, 2, 4, 5] {
        let msg = [header(5, opcode << 11, 1, 0, 0, 0), DB0.to_vec()].concat();
        let r = Message::from_vec(&udp_raw(d.udp, &msg, SHORT).expect("a reply")).unwrap();
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::NotImp,
            "opcode {opcode}"
        );
    }
}

#[test]
fn bad_edns_on_a_mapped_name_is_formerr() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let opt = [0u8, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0];
    // Two OPT records (RFC 6891 §6.1.1).
    let two = [
        header(1, 0x0100, 1, 0, 0, 2),
        DB0.to_vec(),
        opt.to_vec(),
        opt.to_vec(),
    ]
    .concat();
    // An option longer than its OPT record.
    let bad_len = [
        header(1, 0x0100, 1, 0, 0, 1),
        DB0.to_vec(),
        vec![0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 9],
    ]
    .concat();
    // OPT in the answer section.
    let misplaced = [header(1, 0x0100, 1, 1, 0, 0), DB0.to_vec(), opt.to_vec()].concat();
    for msg in [two, bad_len, misplaced] {
        let r = udp_raw(d.udp, &msg, SHORT).expect("a reply");
        assert_eq!(r[3] & 0x0f, 1, "FORMERR");
        assert_eq!(
            u16::from_be_bytes([r[10], r[11]]),
            0,
            "no OPT in a FORMERR caused by OPT"
        );
    }
    good_query_still_works(&d);
}

#[test]
fn tcp_survives_garbage_and_trailing_bytes() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    // Trailing garbage after a complete query is ignored: the query is answered.
    let msg = [
        header(3, 0x0100, 1, 0, 0, 0),
        DB0.to_vec(),
        vec![0xde, 0xad],
    ]
    .concat();
    let r = Message::from_vec(&tcp_raw(d.tcp, &msg)).unwrap();
    assert_eq!(r.answers.len(), 1);
    // A length prefix with no body, then the peer goes away: nothing breaks.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(d.tcp).unwrap();
        s.write_all(&[0x00, 0x40]).unwrap();
    }
    let r = Message::from_vec(&tcp_raw(
        d.tcp,
        &query("db-0.db.example.com.", RecordType::A)
            .to_vec()
            .unwrap(),
    ))
    .unwrap();
    assert_eq!(r.answers.len(), 1);
    good_query_still_works(&d);
}
