//! Tests of [`super`].

use super::*;
use crate::dns::test_query::q_wire;

/// A query for the wire name `name` as given, `qtype`.
fn query(name: &[u8], qtype: u16) -> Vec<u8> {
    q_wire(name, qtype).id(0x1234).bytes()
}

#[test]
fn reads_question_and_lowercases() {
    let m = query(b"\x03WwW\x07Example\x03com\x00", rtype::A);
    let mut lower = [0u8; MAX_NAME_WIRE];
    let q = read_question(&m, &mut lower).unwrap();
    assert_eq!(&lower[..q.name_len], b"\x03www\x07example\x03com\x00");
    assert_eq!(q.qtype, rtype::A);
    assert_eq!(q.end(), m.len());
}

#[test]
fn rejects_bad_question_names() {
    let mut lower = [0u8; MAX_NAME_WIRE];
    let ptr = query(b"\xC0\x0C", 1);
    assert_eq!(
        read_question(&ptr, &mut lower),
        Err(WireError::PointerInQuestion)
    );
    let mut long_label = vec![64u8];
    long_label.extend_from_slice(&[b'a'; 64]);
    long_label.push(0);
    assert_eq!(
        read_question(&query(&long_label, 1), &mut lower),
        Err(WireError::BadLabel)
    );
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(63);
        long_name.extend_from_slice(&[b'a'; 63]);
    }
    long_name.push(0);
    assert_eq!(
        read_question(&query(&long_name, 1), &mut lower),
        Err(WireError::NameTooLong)
    );
    let short = &query(b"\x03www\x00", 1)[..17];
    assert_eq!(read_question(short, &mut lower), Err(WireError::Truncated));
}

#[test]
fn reads_edns_and_rejects_two_opts() {
    let mut m = query(b"\x01a\x00", 1);
    m[11] = 1;
    let opt = [0u8, 0, 41, 0x04, 0xD0, 0, 1, 0x80, 0, 0, 4, 0, 10, 0, 0];
    m.extend_from_slice(&opt);
    let h = Header::read(&m).unwrap();
    let e = read_edns(&m, &h, 12 + 3 + 4).unwrap().unwrap();
    assert_eq!(
        e,
        Edns {
            udp_size: 1232,
            version: 1,
            dnssec_ok: true
        }
    );
    m[11] = 2;
    m.extend_from_slice(&opt);
    let h = Header::read(&m).unwrap();
    assert_eq!(read_edns(&m, &h, 19), Err(WireError::DuplicateOpt));
}

#[test]
fn skips_questions_to_where_the_records_start() {
    let mut m = query(b"\x01a\x00", 1);
    assert_eq!(skip_questions(&m, 0), Ok(HEADER_LEN));
    assert_eq!(skip_questions(&m, 1), Ok(19));
    assert_eq!(skip_questions(&m, 2), Err(WireError::Truncated));
    m.extend_from_slice(b"\xC0\x0C\x00\x01\x00\x01");
    assert_eq!(skip_questions(&m, 2), Ok(25));
    assert_eq!(skip_questions(&m[..24], 2), Err(WireError::Truncated));
}

#[test]
fn reads_compressed_names_pointing_back_only() {
    // Question `a.b.`, then `x` + pointer to the question, then a pointer to that.
    let mut m = query(b"\x01a\x01b\x00", 1);
    let x = m.len();
    m.extend_from_slice(b"\x01x\xC0\x0C");
    let y = m.len();
    m.extend_from_slice(&[0xC0, x as u8]);
    let mut out = [0u8; MAX_NAME_WIRE];
    assert_eq!(read_name(&m, 12, &mut out), Ok((5, 17)));
    assert_eq!(read_name(&m, x, &mut out), Ok((7, y)));
    assert_eq!(&out[..7], b"\x01x\x01a\x01b\x00");
    assert_eq!(read_name(&m, y, &mut out), Ok((7, y + 2)));
    // A pointer to itself, forward, or a loop of two.
    let mut bad = query(b"\x00", 1);
    let at = bad.len();
    bad.extend_from_slice(&[0xC0, at as u8, 0xC0, at as u8 + 4]);
    assert_eq!(read_name(&bad, at, &mut out), Err(WireError::BadPointer));
    assert_eq!(
        read_name(&bad, at + 2, &mut out),
        Err(WireError::BadPointer)
    );
    let mut lp = query(b"\x00", 1);
    let at = lp.len();
    lp.extend_from_slice(&[0x01, b'z', 0xC0, at as u8]);
    assert_eq!(read_name(&lp, at + 2, &mut out), Err(WireError::BadPointer));
    assert_eq!(
        read_name(&m[..y + 1], y, &mut out),
        Err(WireError::Truncated)
    );
}

/// `key.` TSIG with `mac` and `other`, class ANY, TTL 0 (RFC 8945 §4.2).
fn tsig(mac: &[u8], other: &[u8]) -> Vec<u8> {
    let mut rd = b"\x0bhmac-sha256\x00".to_vec();
    rd.extend_from_slice(&[0, 0, 0x65, 0, 0, 0, 1, 44]);
    rd.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rd.extend_from_slice(mac);
    rd.extend_from_slice(&[0x12, 0x34, 0, 0]);
    rd.extend_from_slice(&(other.len() as u16).to_be_bytes());
    rd.extend_from_slice(other);
    let mut r = b"\x03key\x00\x00\xFA\x00\xFF\x00\x00\x00\x00".to_vec();
    r.extend_from_slice(&(rd.len() as u16).to_be_bytes());
    r.extend_from_slice(&rd);
    r
}

#[test]
fn finds_the_tsig_record_only_in_last_place() {
    let opt = [0u8, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0];
    let with = |records: &[&[u8]], an: u16| {
        let mut m = query(b"\x01a\x00", 1);
        m[7] = an as u8;
        m[11] = records.len() as u8 - an as u8;
        for r in records {
            m.extend_from_slice(r);
        }
        m
    };
    let t = tsig(&[0xAB; 32], b"");
    let m = with(&[&opt, &t], 0);
    let x = read_extras(&m, &Header::read(&m).unwrap(), 19).unwrap();
    assert!(x.edns.is_some());
    let found = x.tsig.unwrap().unwrap();
    assert_eq!((found.key, found.algorithm), (30, 30 + 15));
    assert_eq!(found.time_signed, 30 + 15 + 13);
    assert_eq!(found.original_id, 0x1234);
    assert_eq!(
        &m[found.time_signed..found.time_signed + 8],
        &[0, 0, 0x65, 0, 0, 0, 1, 44]
    );
    let no_mac = tsig(b"", b"\0\0\0\0\0\0");
    let m = with(&[&no_mac], 0);
    let x = read_extras(&m, &Header::read(&m).unwrap(), 19).unwrap();
    assert!(matches!(x.tsig, Some(Ok(_))));
    for (m, why) in [
        (with(&[&t, &opt], 0), WireError::MisplacedTsig),
        (with(&[&opt, &t, &t], 0), WireError::MisplacedTsig),
        (with(&[&t], 1), WireError::MisplacedTsig),
    ] {
        let x = read_extras(&m, &Header::read(&m).unwrap(), 19).unwrap();
        assert_eq!(x.tsig, Some(Err(why)));
        assert_eq!(read_edns(&m, &Header::read(&m).unwrap(), 19), Ok(x.edns));
    }
    // Fields that do not fill the RDATA exactly, and a class other than ANY.
    let mut long = t.clone();
    let n = long.len();
    long[n - 1] = 1;
    let mut class_in = t.clone();
    class_in[8] = 1;
    for bad in [long, class_in] {
        let m = with(&[&opt, &bad], 0);
        let x = read_extras(&m, &Header::read(&m).unwrap(), 19);
        match x {
            Ok(x) => assert_eq!(x.tsig, Some(Err(WireError::BadTsig))),
            // Other Len past the record: the walk itself reads past the end.
            Err(e) => assert_eq!(e, WireError::Truncated),
        }
    }
}
