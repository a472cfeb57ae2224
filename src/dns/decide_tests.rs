//! [`decide`]'s tests: regressions the fuzzer found, and every branch as a table.

use super::*;
use crate::dns::reply::OUR_UDP_PAYLOAD;
use crate::dns::test_query::{Q, q, q_wire};
use crate::dns::wire::{HEADER_LEN, Header, class, flag, rcode, rtype};
use crate::mapping::file::parse;

/// A query for the wire name `name`, with an OPT of `edns_size` (DO clear) if given.
fn query(name: &[u8], qtype: u16, edns_size: Option<u16>) -> Vec<u8> {
    let q = q_wire(name, qtype);
    match edns_size {
        Some(size) => q.opt(size, 0, false).bytes(),
        None => q.bytes(),
    }
}

/// Regression (fuzzer): with EDNS, the records must leave room for the OPT record.
#[test]
fn opt_always_fits_after_the_records() {
    let ips: Vec<String> = (1..=40).map(|i| format!("10.1.0.{i}")).collect();
    let snap = parse(
        &format!("hosts:\n  many.db.example.com: [{}]\n", ips.join(",")),
        "t",
        5,
    )
    .unwrap();
    let mut out = vec![0u8; 65535];
    for size in 512..=1232u16 {
        let q = query(
            b"\x04MANY\x02db\x07example\x03com\x00",
            rtype::A,
            Some(size),
        );
        let Decision::Reply { len, .. } = decide_bytes(&q, &snap, Transport::Udp, &mut out) else {
            panic!("a reply");
        };
        assert!(len <= size as usize);
        // The last 11 octets are our OPT record, and ARCOUNT says 1.
        assert_eq!(&out[len - 11..len - 8], &[0, 0, 41], "size {size}");
        assert_eq!(u16::from_be_bytes([out[10], out[11]]), 1);
    }
}

/// Regression (fuzzer): `hostmaster.` + a 253-character name would pass 255 octets.
#[test]
fn soa_rname_stays_within_255_octets() {
    let labels = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ];
    let name = labels.join(".");
    let snap = parse(&format!("hosts:\n  {name}: 10.0.0.1\n"), "t", 5).unwrap();
    let mut wire = Vec::new();
    for l in &labels {
        wire.push(l.len() as u8);
        wire.extend_from_slice(l.as_bytes());
    }
    wire.push(0);
    let q = query(&wire, rtype::AAAA, None);
    let mut out = vec![0u8; 1232];
    let Decision::Reply { len, outcome } = decide_bytes(&q, &snap, Transport::Udp, &mut out) else {
        panic!("a reply");
    };
    assert_eq!(outcome, Outcome::NoData);
    // SOA RDATA: MNAME pointer (2), RNAME "hostmaster.invalid." (20), five u32 (20).
    let rdlen = u16::from_be_bytes([out[len - 44], out[len - 43]]);
    assert_eq!(rdlen, 2 + 20 + 20);
    assert_eq!(&out[len - 40..len - 20], b"\x0ahostmaster\x07invalid\x00");
}

/// [`decide`] as a table: one row per branch, from the query bytes to what comes out.
mod decide_table {
    use super::*;

    const MAPPING: &str = r#"
ttl: 5
hosts:
  db-0.db.example.com: 10.42.0.12
  db-1.db.example.com: [10.42.0.13, "fd00::13"]
  sixty.db.example.com: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9, 10.0.0.10, 10.0.0.11, 10.0.0.12, 10.0.0.13, 10.0.0.14, 10.0.0.15, 10.0.0.16, 10.0.0.17, 10.0.0.18, 10.0.0.19, 10.0.0.20, 10.0.0.21, 10.0.0.22, 10.0.0.23, 10.0.0.24, 10.0.0.25, 10.0.0.26, 10.0.0.27, 10.0.0.28, 10.0.0.29, 10.0.0.30, 10.0.0.31, 10.0.0.32, 10.0.0.33, 10.0.0.34, 10.0.0.35, 10.0.0.36, 10.0.0.37, 10.0.0.38, 10.0.0.39, 10.0.0.40, 10.0.0.41, 10.0.0.42, 10.0.0.43, 10.0.0.44, 10.0.0.45, 10.0.0.46, 10.0.0.47, 10.0.0.48, 10.0.0.49, 10.0.0.50, 10.0.0.51, 10.0.0.52, 10.0.0.53, 10.0.0.54, 10.0.0.55, 10.0.0.56, 10.0.0.57, 10.0.0.58, 10.0.0.59, 10.0.0.60]
rules:
  - host: legacy.example.com
    result: 10.1.2.3
  - host: 'db-(\d+)\.replica\.test'
    regex: true
    result: 'db-${1}.db.example.com'
"#;

    const DB0: &str = "Db-0.db.example.com";

    /// What a row expects.
    #[derive(Debug, PartialEq, Eq)]
    enum Want {
        /// rcode (extended rcodes whole), AA, TC, [QD, AN, NS, AR], outcome.
        Reply(u16, bool, bool, [u16; 4], Outcome),
        Forward,
        Alias(usize),
        Drop,
    }
    use Outcome as O;
    use Transport::{Tcp, Udp};
    use Want::Reply as R;

    const NOERROR: u16 = rcode::NOERROR as u16;
    const FORMERR: u16 = rcode::FORMERR as u16;
    const NOTIMP: u16 = rcode::NOTIMP as u16;
    const REFUSED: u16 = rcode::REFUSED as u16;
    const NOTAUTH: u16 = rcode::NOTAUTH as u16;

    /// What `decide` made of the query, in the terms of [`Want`].
    fn got(msg: &[u8], d: Decision, out: &[u8]) -> Want {
        match d {
            Decision::Drop => Want::Drop,
            Decision::Alias { rule } => Want::Alias(rule),
            Decision::Forward { question_end } => {
                assert!(question_end > HEADER_LEN && question_end <= msg.len());
                Want::Forward
            }
            Decision::Reply { len, outcome } => {
                let r = &out[..len];
                assert_eq!(r[..2], msg[..2], "ID");
                let h = Header::read(r).unwrap();
                assert!(h.is_response());
                assert_eq!(
                    h.opcode(),
                    Header::read(msg).unwrap().opcode(),
                    "opcode echoed"
                );
                assert_eq!(h.flags & flag::RD, flag::RD, "RD copied");
                let mut rc = h.flags & 0x000f;
                if h.arcount > 0 {
                    // When our OPT (11 octets) is the last record, its extended-rcode octet
                    // holds the high bits (a TSIG record, last, needs none: NOTAUTH is 9).
                    let opt = r.len() - 11;
                    if r[opt..opt + 3] == [0, 0, 41] {
                        rc |= u16::from(r[opt + 5]) << 4;
                    }
                }
                R(
                    rc,
                    h.flags & flag::AA != 0,
                    h.flags & flag::TC != 0,
                    [h.qdcount, h.ancount, h.nscount, h.arcount],
                    outcome,
                )
            }
        }
    }

    #[test]
    fn every_branch() {
        let snap = parse(MAPPING, "t", 5).unwrap();
        let ptr = "12.0.42.10.in-addr.arpa";
        #[rustfmt::skip]
        let rows: Vec<(&str, Transport, Vec<u8>, Want)> = vec![
            // Answers.
            ("A", Udp, q(DB0, rtype::A).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("A, EDNS", Udp, q(DB0, rtype::A).edns(1232).bytes(), R(NOERROR, true, false, [1, 1, 0, 1], O::Answer)),
            ("A, TCP", Tcp, q(DB0, rtype::A).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("AAAA", Udp, q("db-1.db.example.com", rtype::AAAA).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("ANY: every address", Udp, q("db-1.db.example.com", rtype::ANY).bytes(), R(NOERROR, true, false, [1, 2, 0, 0], O::Answer)),
            ("class ANY", Udp, q(DB0, rtype::A).class(class::ANY).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("rule with an address", Udp, q("legacy.example.com", rtype::A).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("PTR of a mapped address", Udp, q(ptr, rtype::PTR).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("SOA: the NODATA's SOA, as the answer", Udp, q(DB0, rtype::SOA).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("SOA of a reverse name", Udp, q(ptr, rtype::SOA).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            // NODATA: SOA in authority.
            ("AAAA, no IPv6", Udp, q(DB0, rtype::AAAA).bytes(), R(NOERROR, true, false, [1, 0, 1, 0], O::NoData)),
            ("MX", Udp, q(DB0, 15).bytes(), R(NOERROR, true, false, [1, 0, 1, 0], O::NoData)),
            ("A of a reverse name", Udp, q(ptr, rtype::A).bytes(), R(NOERROR, true, false, [1, 0, 1, 0], O::NoData)),
            ("NODATA, EDNS", Udp, q(DB0, rtype::AAAA).edns(512).bytes(), R(NOERROR, true, false, [1, 0, 1, 1], O::NoData)),
            // Size: 60 A records are 972 octets of answer.
            ("no EDNS: 512, TC", Udp, q("sixty.db.example.com", rtype::A).bytes(), R(NOERROR, true, true, [1, 0, 0, 0], O::Answer)),
            ("EDNS 600: TC, OPT kept", Udp, q("sixty.db.example.com", rtype::A).edns(600).bytes(), R(NOERROR, true, true, [1, 0, 0, 1], O::Answer)),
            ("EDNS 1232: fits", Udp, q("sixty.db.example.com", rtype::A).edns(1232).bytes(), R(NOERROR, true, false, [1, 60, 0, 1], O::Answer)),
            ("EDNS 4096: capped at 1232, fits", Udp, q("sixty.db.example.com", rtype::A).edns(4096).bytes(), R(NOERROR, true, false, [1, 60, 0, 1], O::Answer)),
            ("EDNS below 512 counts as 512", Udp, q("sixty.db.example.com", rtype::A).edns(100).bytes(), R(NOERROR, true, true, [1, 0, 0, 1], O::Answer)),
            ("TCP: whole", Tcp, q("sixty.db.example.com", rtype::A).bytes(), R(NOERROR, true, false, [1, 60, 0, 0], O::Answer)),
            // Refusals and EDNS version.
            ("class CH", Udp, q(DB0, rtype::A).class(3).bytes(), R(REFUSED, false, false, [1, 0, 0, 0], O::Refused)),
            ("class CH, EDNS", Udp, q(DB0, rtype::A).class(3).edns(1232).bytes(), R(REFUSED, false, false, [1, 0, 0, 1], O::Refused)),
            ("AXFR", Tcp, q(DB0, rtype::AXFR).bytes(), R(REFUSED, false, false, [1, 0, 0, 0], O::Refused)),
            ("IXFR", Udp, q(DB0, rtype::IXFR).bytes(), R(REFUSED, false, false, [1, 0, 0, 0], O::Refused)),
            ("EDNS version 1", Udp, q(DB0, rtype::A).edns_v(1232, 1).bytes(), R(rcode::BADVERS, false, false, [1, 0, 0, 1], O::BadVers)),
            // Opcode and question count: OPT exactly when the query had one.
            ("NOTIFY", Udp, q(DB0, rtype::SOA).opcode(4).bytes(), R(NOTIMP, false, false, [1, 0, 0, 0], O::NotImp)),
            ("UPDATE, EDNS", Udp, q(DB0, rtype::SOA).opcode(5).edns(1232).bytes(), R(NOTIMP, false, false, [1, 0, 0, 1], O::NotImp)),
            ("NOTIFY, TSIG: the signature first", Udp, q(DB0, rtype::SOA).opcode(4).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 1], O::NotAuth)),
            ("UPDATE of a zone not ours, EDNS, TSIG", Tcp, q("example.org", rtype::SOA).opcode(5).edns(1232).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 2], O::NotAuth)),
            ("NOTIFY, TSIG misplaced: NOTIMP", Udp, q(DB0, rtype::SOA).opcode(4).tsig(1).bytes(), R(NOTIMP, false, false, [1, 0, 0, 0], O::NotImp)),
            ("opcode 15 without a question, EDNS", Udp, Q::none().opcode(15).edns(1232).bytes(), R(NOTIMP, false, false, [0, 0, 0, 1], O::NotImp)),
            ("QDCOUNT 0", Udp, Q::none().bytes(), R(FORMERR, false, false, [0, 0, 0, 0], O::FormErr)),
            ("QDCOUNT 0, EDNS right after the header", Udp, Q::none().edns(1232).bytes(), R(FORMERR, false, false, [0, 0, 0, 1], O::FormErr)),
            ("QDCOUNT 2", Udp, q(DB0, rtype::A).question(DB0, rtype::A, 1).bytes(), R(FORMERR, false, false, [0, 0, 0, 0], O::FormErr)),
            ("QDCOUNT 2, EDNS", Tcp, q(DB0, rtype::A).question(DB0, rtype::A, 1).edns(1232).bytes(), R(FORMERR, false, false, [0, 0, 0, 1], O::FormErr)),
            ("unreadable question", Udp, q(DB0, rtype::A).bytes()[..20].to_vec(), R(FORMERR, false, false, [0, 0, 0, 0], O::FormErr)),
            ("two OPT records: no OPT back", Udp, q(DB0, rtype::A).edns(1232).edns(1232).bytes(), R(FORMERR, false, false, [1, 0, 0, 0], O::FormErr)),
            ("OPT in the answer section", Udp, q(DB0, rtype::A).record(0, vec![0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]).bytes(), R(FORMERR, false, false, [1, 0, 0, 0], O::FormErr)),
            // TSIG: NOTAUTH / BADKEY for our names, forwarded otherwise.
            ("TSIG", Udp, q(DB0, rtype::A).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 1], O::NotAuth)),
            ("TSIG, EDNS", Tcp, q(DB0, rtype::A).edns(1232).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 2], O::NotAuth)),
            ("TSIG on an alias name", Udp, q("db-1.replica.test", rtype::A).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 1], O::NotAuth)),
            ("TSIG, EDNS version 1: TSIG first", Udp, q(DB0, rtype::A).edns_v(1232, 1).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 2], O::NotAuth)),
            ("TSIG before the OPT", Udp, q(DB0, rtype::A).tsig(2).edns(1232).bytes(), R(FORMERR, false, false, [1, 0, 0, 1], O::FormErr)),
            ("TSIG in the authority section", Udp, q(DB0, rtype::A).tsig(1).bytes(), R(FORMERR, false, false, [1, 0, 0, 0], O::FormErr)),
            ("TSIG for a forwarded name", Udp, q("example.org", rtype::A).tsig(2).bytes(), Want::Forward),
            // Not ours, and not answered at all.
            ("forwarded", Udp, q("example.org", rtype::A).edns(1232).bytes(), Want::Forward),
            ("forwarded, bad OPT: the upstream's business", Udp, q("example.org", rtype::A).edns(1232).edns(1232).bytes(), Want::Forward),
            ("PTR of an unmapped address", Udp, q("13.0.0.99.in-addr.arpa", rtype::PTR).bytes(), Want::Forward),
            ("alias rule", Tcp, q("DB-7.replica.test", rtype::AAAA).bytes(), Want::Alias(1)),
            ("a response", Udp, q(DB0, rtype::A).flags(flag::QR).bytes(), Want::Drop),
            ("shorter than a header", Udp, q(DB0, rtype::A).bytes()[..11].to_vec(), Want::Drop),
        ];
        let mut out = vec![0u8; u16::MAX as usize];
        let mut failed = Vec::new();
        for (what, transport, msg, want) in rows {
            let limit = match transport {
                Udp => OUR_UDP_PAYLOAD as usize,
                Tcp => u16::MAX as usize,
            };
            let d = decide_bytes(&msg, &snap, transport, &mut out[..limit]);
            let got = got(&msg, d, &out);
            if got != want {
                failed.push(format!("{what}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failed.is_empty(), "\n{}", failed.join("\n"));
    }
}
