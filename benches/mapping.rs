//! Mapping load and lookup cost. The bound: a 100,000-name mapping reloads (read, parse,
//! validate, publish) in under 300 ms on the 2-core reference machine.
//!
//! `cargo bench --bench mapping`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use splitdns::mapping::{Snapshot, file, name};

/// A mapping like the operator writes, scaled: `n` names, one in ten with an IPv4+IPv6 list.
pub fn big_mapping(n: usize) -> String {
    let mut s = String::with_capacity(n * 48);
    s.push_str("ttl: 5\nhosts:\n");
    for i in 0..n {
        let (a, b, c) = (i >> 16, (i >> 8) & 0xff, i & 0xff);
        if i % 10 == 0 {
            s.push_str(&format!(
                "  kurrentdb-{i}.cluster-{a}.example.com: [10.{a}.{b}.{c}, \"fd00::{a:x}:{:x}\"]\n",
                i & 0xffff
            ));
        } else {
            s.push_str(&format!(
                "  kurrentdb-{i}.cluster-{a}.example.com: 10.{a}.{b}.{c}\n"
            ));
        }
    }
    s
}

fn reload(c: &mut Criterion) {
    let text = big_mapping(100_000);
    let dir = std::env::temp_dir().join(format!("splitdns-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mapping.yaml");
    std::fs::write(&path, &text).unwrap();
    let shared = Arc::new(ArcSwap::from_pointee(Snapshot::empty()));

    let mut g = c.benchmark_group("reload");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("100k_names_read_parse_validate_publish", |b| {
        b.iter(|| {
            let source = file::read_source(&path).unwrap();
            let snap = file::parse_source(&source, 5).unwrap();
            shared.store(Arc::new(snap));
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn lookup(c: &mut Criterion) {
    let snap = file::parse(&big_mapping(100_000), "bench", 5).unwrap();
    let hit = name::to_wire_lower("kurrentdb-4242.cluster-0.example.com").unwrap();
    let miss = name::to_wire_lower("www.example.org").unwrap();
    let shared = ArcSwap::from_pointee(snap);
    let mut g = c.benchmark_group("lookup_100k");
    g.bench_function("hit", |b| {
        b.iter(|| shared.load().lookup(black_box(&hit)).is_some())
    });
    g.bench_function("miss", |b| {
        b.iter(|| shared.load().lookup(black_box(&miss)).is_some())
    });
    g.finish();
}

criterion_group!(benches, reload, lookup);
criterion_main!(benches);
