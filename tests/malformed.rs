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

/// Malformed or unsupported queries, one table: each gets its error with its ID echoed and no
/// OPT (none was asked for, or the OPT is the fault: RFC 6891 §7), none is forwarded, and the
/// server goes on answering.
#[test]
fn malformed_and_unsupported_queries_get_their_error() {
    use ResponseCode::{FormErr, NotImp};
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let db0_question = wire_question("db-0.db.example.com", RecordType::A);
    let mut long_label = vec![64u8];
    long_label.extend([b'a'; 64]);
    long_label.extend([0, 0, 1, 0, 1]);
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(60u8);
        long_name.extend([b'b'; 60]);
    }
    long_name.extend([0, 0, 1, 0, 1]);
    let opt = opt_record(1232, false, &[]);
    let bad = |question: &[u8]| raw_message().id(9).question(question);
    let mut rows: Vec<(String, RawQuery, ResponseCode)> = vec![
        // QDCOUNT other than one (RFC 9619).
        ("QDCOUNT 0".into(), raw_message().id(0x4242), FormErr),
        (
            "QDCOUNT 2".into(),
            db0().id(0x4242).question(&db0_question),
            FormErr,
        ),
        // A question that cannot be read.
        ("name cut short".into(), bad(&db0_question[..10]), FormErr),
        (
            "class missing".into(),
            bad(&db0_question[..db0_question.len() - 2]),
            FormErr,
        ),
        (
            "pointer loop in the question".into(),
            bad(b"\xC0\x0C\x00\x01\x00\x01"),
            FormErr,
        ),
        ("a 64-octet label".into(), bad(&long_label), FormErr),
        ("a 306-octet name".into(), bad(&long_name), FormErr),
        // Bad EDNS on a mapped name.
        (
            "two OPT records (RFC 6891 §6.1.1)".into(),
            db0().id(1).additional(&opt).additional(&opt),
            FormErr,
        ),
        (
            "an option longer than its OPT record".into(),
            db0()
                .id(1)
                .additional(&[0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 9]),
            FormErr,
        ),
        (
            "OPT in the answer section".into(),
            db0().id(1).answer(&opt),
            FormErr,
        ),
    ];
    // Opcodes other than QUERY.
    for opcode in [1u16, 2, 4, 5] {
        rows.push((
            format!("opcode {opcode}"),
            db0().id(5).flags(opcode << 11),
            NotImp,
        ));
    }
    for (what, q, rcode) in rows {
        let msg = q.build();
        let raw = udp_raw(d.udp, &msg, SHORT).unwrap_or_else(|| panic!("{what}: no reply"));
        let r = Message::from_vec(&raw).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            r.metadata.id,
            u16::from_be_bytes([msg[0], msg[1]]),
            "{what}"
        );
        assert_eq!(r.metadata.response_code, rcode, "{what}");
        assert_eq!(u16::from_be_bytes([raw[10], raw[11]]), 0, "{what}: no OPT");
    }
    assert_eq!(
        common::client_queries(&up).len(),
        0,
        "nothing malformed is forwarded"
    );
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
