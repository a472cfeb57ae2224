//! Malformed and unexpected input: answered with the right error or dropped, and the server
//! keeps answering the next good query.

mod common;

use std::time::Duration;

use common::{
    Daemon, RawQuery, opt_record, query, raw_message, raw_query, tcp_raw, udp, udp_raw, upstream,
    wire_question,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use splitdns::dns::answer::Outcome;

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";
const SHORT: Duration = Duration::from_millis(300);

fn good_query_still_works(d: &Daemon) {
    let r = udp(d.udp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1, "the server still answers");
}

/// A raw `db-0.db.example.com. A` query.
fn db0() -> RawQuery {
    raw_query("db-0.db.example.com", RecordType::A)
}

#[test]
fn garbage_and_truncated_packets_are_dropped_and_do_not_stop_the_server() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0xff; 11],
        // A response (QR=1): never answered, or two servers could reflect forever.
        db0().id(7).flags(0x8000).build(),
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
    let db0_question = wire_question("db-0.db.example.com", RecordType::A);
    for (qd, msg) in [
        (0u16, raw_message().id(0x4242).build()),
        (2, db0().id(0x4242).question(&db0_question).build()),
    ] {
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
    let db0_question = wire_question("db-0.db.example.com", RecordType::A);
    for question in [
        db0_question[..10].to_vec(),                     // name cut short
        db0_question[..db0_question.len() - 2].to_vec(), // class missing
        b"\xC0\x0C\x00\x01\x00\x01".to_vec(),            // pointer loop in the question
        long_label,
        long_name,
    ] {
        let msg = raw_message().id(9).question(&question).build();
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
        let msg = db0().id(5).flags(opcode << 11).build();
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
    let opt = opt_record(1232, false, &[]);
    // Two OPT records (RFC 6891 §6.1.1).
    let two = db0().id(1).additional(&opt).additional(&opt);
    // An option longer than its OPT record.
    let bad_len = db0()
        .id(1)
        .additional(&[0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 9]);
    // OPT in the answer section.
    let misplaced = db0().id(1).answer(&opt);
    for msg in [two, bad_len, misplaced] {
        let r = udp_raw(d.udp, &msg.build(), SHORT).expect("a reply");
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
    let msg = db0().id(3).trailing(&[0xde, 0xad]).build();
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
