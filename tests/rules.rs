//! Operator rules (`rules:`), alias resolution, PTR and per-name TTLs, over the wire against a
//! real upstream.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::{Daemon, client_queries, query, tcp, udp, upstream};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

const MAPPING: &str = r#"
ttl: 5
hosts:
  db-0.db.example.com: 10.42.0.12
  db-1.db.example.com: { addresses: [10.42.0.13, "fd00::13"], ttl: 30 }
  db-0-alt.db.example.com: 10.42.0.12
rules:
  - host: legacy.example.com
    result: 10.1.2.3
  - host: '(www|multi)\.alias\.test'
    regex: true
    result: '${1}.example.org'
  - host: 'cached\.alias\.test'
    regex: true
    result: www.example.org
    ttl: 600
  - host: 'first\.overlap\.test'
    regex: true
    result: 10.9.9.1
  - host: '.*\.overlap\.test'
    regex: true
    result: 10.9.9.2
  - host: missing.alias.test
    result: nope.example.org
  - host: nodata.alias.test
    result: www.example.org
  - host: refused.alias.test
    result: somewhere.else.test
  - host: to-mapped.alias.test
    result: db-1.db.example.com
  - host: 'loop\.alias\.test'
    regex: true
    result: loop.alias.test
  - host: apex.alias.test
    result: example.org
"#;

use common::ipv4s as a;

fn names(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect()
}

#[test]
fn per_name_ttl_and_rule_with_an_address() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let r = udp(d.udp, &query("db-1.db.example.com.", RecordType::A));
    assert_eq!(r.answers[0].ttl, 30, "per-name TTL");
    let r = udp(d.udp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers[0].ttl, 5, "file TTL");
    let r = udp(d.udp, &query("Legacy.Example.com.", RecordType::A));
    assert_eq!(a(&r), vec![Ipv4Addr::new(10, 1, 2, 3)]);
    assert!(r.metadata.authoritative);
    let r = udp(d.udp, &query("legacy.example.com.", RecordType::AAAA));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(up.count_for("legacy.example.com"), 0, "answered locally");
}

#[test]
fn first_matching_rule_in_file_order_wins() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    for (name, want) in [
        ("first.overlap.test.", [10, 9, 9, 1]),
        ("second.overlap.test.", [10, 9, 9, 2]),
        // Anchored: a longer name does not match `first\.overlap\.test`... but the catch-all does.
        ("x.first.overlap.test.", [10, 9, 9, 2]),
        // Not matching any rule: forwarded.
        ("www.example.org.", [192, 0, 2, 1]),
    ] {
        let r = udp(d.udp, &query(name, RecordType::A));
        assert_eq!(a(&r), vec![Ipv4Addr::from(want)], "{name}");
    }
}

#[test]
fn regex_alias_expands_groups_and_answers_flattened_under_the_asked_name() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    for via_tcp in [false, true] {
        let q = query("Multi.Alias.test.", RecordType::A);
        let r = if via_tcp {
            tcp(d.tcp, &q)
        } else {
            udp(d.udp, &q)
        };
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        let mut got = a(&r);
        got.sort();
        assert_eq!(
            got,
            vec![Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)]
        );
        assert!(
            r.answers
                .iter()
                .all(|x| x.name.to_ascii() == "Multi.Alias.test."),
            "owner is the asked name"
        );
        assert!(
            r.answers.iter().all(|x| x.record_type() == RecordType::A),
            "no CNAME"
        );
        // min(target 300, rule 5), counting down from the first answer's life (the second
        // transport is answered from the target cache).
        assert!(
            r.answers.iter().all(|x| x.ttl <= 5 && x.ttl >= 3),
            "min(target 300, rule 5)"
        );
    }
    let r = udp(d.udp, &query("www.alias.test.", RecordType::AAAA));
    assert_eq!(r.answers.len(), 1);
    assert!(
        matches!(&r.answers[0].data, RData::AAAA(x) if x.0 == "2001:db8::1".parse::<Ipv6Addr>().unwrap())
    );
    assert_eq!(
        up.count_for("multi.alias.test"),
        0,
        "the alias name itself never goes upstream"
    );
}

#[test]
fn alias_ttl_is_the_smaller_of_target_and_rule_and_lookups_are_cached() {
    let up = upstream::start();
    // By default an answer lives at most 5 s (--alias-cache-ttl): CoreDNS's pod-record TTL.
    let d = Daemon::start(MAPPING, vec![up.addr]);
    for _ in 0..3 {
        let r = udp(d.udp, &query("cached.alias.test.", RecordType::A));
        let ttl = r.answers[0].ttl;
        assert!(
            (4..=5).contains(&ttl),
            "the global cap under target 300, rule 600: {ttl}"
        );
    }
    assert_eq!(
        up.count_for("www.example.org"),
        1,
        "the target cache answered the repeats"
    );
    drop(d);
    let up = upstream::start();
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.alias_cache_ttl = Duration::from_secs(3600)
    });
    for _ in 0..3 {
        let r = udp(d.udp, &query("cached.alias.test.", RecordType::A));
        assert_eq!(a(&r), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        let ttl = r.answers[0].ttl;
        assert!(
            ttl <= 300 && ttl > 250,
            "target's TTL (300) under the rule's 600: {ttl}"
        );
    }
    assert_eq!(
        up.count_for("www.example.org"),
        1,
        "the target cache answered the repeats"
    );
}

#[test]
fn alias_target_nxdomain_nodata_and_failure() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    for name in ["missing.alias.test.", "nodata.alias.test."] {
        let qtype = if name.starts_with("nodata") {
            RecordType::MX
        } else {
            RecordType::A
        };
        let r = udp(d.udp, &query(name, qtype));
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::NoError,
            "{name}: NODATA, not NXDOMAIN"
        );
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA, "{name}");
    }
    // The upstream refuses names outside example.org: that is a failure, not a negative answer.
    let r = udp(d.udp, &query("refused.alias.test.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn alias_to_a_mapped_name_and_alias_loops() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let r = udp(d.udp, &query("to-mapped.alias.test.", RecordType::A));
    assert_eq!(a(&r), vec![Ipv4Addr::new(10, 42, 0, 13)]);
    assert_eq!(r.answers[0].ttl, 5, "min(mapped 30, rule 5)");
    assert_eq!(
        up.count_for("db-1.db.example.com"),
        0,
        "resolved from the mapping"
    );
    let r = udp(d.udp, &query("loop.alias.test.", RecordType::A));
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::ServFail,
        "8 levels, then SERVFAIL"
    );
}

/// Names inside the target's RDATA (here an SOA's MNAME and RNAME) are written out in full:
/// hickory's compression pointers would be relative to the upstream's message, not ours.
#[test]
fn alias_answers_with_names_in_rdata_are_well_formed() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let r = udp(d.udp, &query("apex.alias.test.", RecordType::SOA));
    assert_eq!(r.answers.len(), 1);
    match &r.answers[0].data {
        RData::SOA(soa) => {
            assert_eq!(soa.mname.to_ascii(), "ns.example.org.");
            assert_eq!(soa.rname.to_ascii(), "hostmaster.example.org.");
        }
        other => panic!("not an SOA: {other:?}"),
    }
    assert_eq!(r.answers[0].name.to_ascii(), "apex.alias.test.");
}

#[test]
fn ptr_for_mapped_addresses_and_forwarding_for_the_rest() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let r = udp(d.udp, &query("12.0.42.10.in-addr.arpa.", RecordType::PTR));
    let mut got = names(&r);
    got.sort();
    assert_eq!(
        got,
        vec!["db-0-alt.db.example.com.", "db-0.db.example.com."],
        "all names of the address"
    );
    assert!(r.metadata.authoritative);
    let v6: Ipv6Addr = "fd00::13".parse().unwrap();
    let nibbles: Vec<String> = v6
        .octets()
        .iter()
        .rev()
        .flat_map(|o| [format!("{:x}", o & 0xf), format!("{:x}", o >> 4)])
        .collect();
    let rev6 = format!("{}.ip6.arpa.", nibbles.join("."));
    let r = udp(d.udp, &query(&rev6, RecordType::PTR));
    assert_eq!(names(&r), vec!["db-1.db.example.com."]);
    assert_eq!(r.answers[0].ttl, 30);
    let before = client_queries(&up).len();
    let r = udp(d.udp, &query("99.0.42.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::Refused,
        "the test upstream refuses it"
    );
    assert_eq!(
        client_queries(&up).len(),
        before + 1,
        "unmapped reverse names are forwarded"
    );
}

fn load_err(yaml: &str) -> String {
    splitdns::mapping::file::parse(yaml, "m.yaml", 5)
        .unwrap_err()
        .to_string()
}

/// One row per mistake: the file, the prefix the error starts with, and what it must say.
#[test]
fn invalid_rules_are_rejected_with_clear_messages() {
    let rows: [(&str, &str, &[&str]); 6] = [
        (
            "hosts:\nrules:\n  - host: 'db-(\\d+'\n    regex: true\n    result: 10.0.0.1\n",
            "m.yaml:3:",
            &["rule 1", "invalid regular expression"],
        ),
        (
            "hosts:\nrules:\n  - host: a.test\n    result: 10.0.0.1\n  - host: 'db-(\\d+)\\.x'\n    regex: true\n    result: 'db-${2}.y'\n",
            "",
            &["rule 2", "${2}", "1 group"],
        ),
        (
            "hosts:\nrules:\n  - host: a.test\n    result: 'not a name!'\n",
            "",
            &["neither an IP address nor a host name"],
        ),
        (
            "hosts:\nrules:\n  - host: a.test\n    result: b.test\n    regexp: true\n",
            "m.yaml:",
            &["regexp"],
        ),
        (
            "hosts:\nrules:\n  - host: 'a..test'\n    result: b.test\n",
            "",
            &["rule 1", "invalid name"],
        ),
        (
            "hosts:\n  a.test: { addresses: [10.0.0.1], ttl: 30, extra: 1 }\n",
            "",
            &["extra"],
        ),
    ];
    for (yaml, prefix, says) in rows {
        let e = load_err(yaml);
        assert!(e.starts_with(prefix), "{yaml:?}: {e}");
        for part in says {
            assert!(e.contains(part), "{yaml:?}: {part:?} in {e}");
        }
    }
}

#[test]
fn alias_answers_do_not_stall_local_answers() {
    // A slow alias lookup must not delay other queries on the same worker.
    let hole = common::black_hole();
    let d = Daemon::start_with(MAPPING, vec![hole.addr], |c| {
        c.upstream_timeout = Duration::from_millis(800)
    });
    let addr = d.udp;
    let slow = std::thread::spawn(move || udp(addr, &query("www.alias.test.", RecordType::A)));
    std::thread::sleep(Duration::from_millis(50));
    let r = common::under(Duration::from_millis(200), "a local answer beside", || {
        udp(d.udp, &query("db-0.db.example.com.", RecordType::A))
    });
    assert_eq!(r.answers.len(), 1);
    let r = slow.join().unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

/// A file of operator rules needs no `hosts:` (an empty `hosts:` used to be required).
#[test]
fn a_rules_only_mapping_is_served() {
    let up = upstream::start();
    let yaml = "ttl: 9\nrules:\n  - host: legacy.example.com\n    result: 10.1.2.3\n  - host: 'db-(\\d+)\\.replica\\.test'\n    regex: true\n    result: 'www.example.org'\n";
    let d = Daemon::start(yaml, vec![up.addr]);
    let r = udp(d.udp, &query("legacy.example.com.", RecordType::A));
    assert_eq!(a(&r), vec![Ipv4Addr::new(10, 1, 2, 3)]);
    assert_eq!(r.answers[0].ttl, 9, "the file's TTL");
    let r = udp(d.udp, &query("db-3.replica.test.", RecordType::A));
    assert_eq!(a(&r), vec![Ipv4Addr::new(192, 0, 2, 1)], "alias");
    let r = udp(d.udp, &query("www.example.org.", RecordType::A));
    assert_eq!(a(&r), vec![Ipv4Addr::new(192, 0, 2, 1)], "forwarded");
    assert_eq!(up.count_for("legacy.example.com"), 0);
    // A file with neither stays an error that says what is missing.
    let e = load_err("ttl: 5\n");
    assert!(e.contains("missing field `hosts` or `rules`"), "{e}");
}
