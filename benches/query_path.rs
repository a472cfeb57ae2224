//! The per-query work without the sockets: deciding on a raw query and writing the local answer,
//! and checking an upstream reply against its query. `cargo bench --bench query_path`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use splitdns::dns::answer::{self, Transport};
use splitdns::dns::wire;
use splitdns::mapping::file;

/// A query as dig sends it: RD, one question, an OPT record (1232, no options).
fn raw_query(name: &str, qtype: u16) -> Vec<u8> {
    let mut m = vec![0xab, 0xcd, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    m
}

/// The bench harness's mapping: 300 names, as `benches/dnsperf/peers.sh gen` writes it.
fn mapping_300() -> String {
    let mut yaml = String::from("hosts:\n");
    for i in 0..300 {
        yaml.push_str(&format!(
            "  kurrentdb-{i}.kurrentdb.example.com: 10.1.{}.{}\n",
            i / 250,
            i % 250
        ));
    }
    yaml
}

fn decide(c: &mut Criterion) {
    let yaml = mapping_300();
    let snap = file::parse(&yaml, "bench", 5).unwrap();
    let mut out = vec![0u8; 1232];
    let a = raw_query("KurrentDB-42.kurrentdb.example.com", wire::rtype::A);
    let aaaa = raw_query("kurrentdb-42.kurrentdb.example.com", wire::rtype::AAAA);
    let fwd = raw_query("u1234-5678.dyn.example.net", wire::rtype::A);
    let mut g = c.benchmark_group("decide");
    g.bench_function("local_a", |b| {
        b.iter(|| answer::decide_bytes(black_box(&a), &snap, Transport::Udp, &mut out))
    });
    g.bench_function("local_nodata_soa", |b| {
        b.iter(|| answer::decide_bytes(black_box(&aaaa), &snap, Transport::Udp, &mut out))
    });
    g.bench_function("forward_decision", |b| {
        b.iter(|| answer::decide_bytes(black_box(&fwd), &snap, Transport::Udp, &mut out))
    });
    g.finish();
}

fn validate_reply(c: &mut Criterion) {
    let query = raw_query("u1234-5678.dyn.example.net", wire::rtype::A);
    let mut lower = [0u8; wire::MAX_NAME_WIRE];
    let q = wire::read_question(&query, &mut lower).unwrap();
    let mut reply = query.clone();
    reply[2] |= 0x80;
    // 0x20: the upstream may change case; the check is case-insensitive.
    reply[13] = reply[13].to_ascii_uppercase();
    c.bench_function("same_question", |b| {
        b.iter(|| wire::same_question(black_box(&query), black_box(&reply), q.end()))
    });
}

/// Issue 7's bound: with 100 regex rules, a name answered by a rule costs at most 2x an exact
/// name. The worst case is the last rule; a forwarded name pays the rule scan too.
fn rules(c: &mut Criterion) {
    let mut yaml = mapping_300();
    yaml.push_str("rules:\n");
    for i in 0..100 {
        yaml.push_str(&format!(
            "  - host: 'db-(\\d+)\\.svc{i}\\.example\\.com'\n    regex: true\n    result: 10.9.{}.{}\n",
            i / 250,
            i % 250
        ));
    }
    let snap = file::parse(&yaml, "bench", 5).unwrap();
    assert_eq!(snap.rule_count(), 100);
    let mut out = vec![0u8; 1232];
    let exact = raw_query("kurrentdb-42.kurrentdb.example.com", wire::rtype::A);
    let first = raw_query("db-7.svc0.example.com", wire::rtype::A);
    let last = raw_query("db-7.svc99.example.com", wire::rtype::A);
    let fwd = raw_query("u1234-5678.dyn.example.net", wire::rtype::A);
    let mut g = c.benchmark_group("rules_100");
    for (name, q) in [
        ("exact_name", &exact),
        ("first_rule", &first),
        ("last_rule", &last),
        ("forward", &fwd),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| answer::decide_bytes(black_box(q), &snap, Transport::Udp, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, decide, validate_reply, rules);
criterion_main!(benches);
