//! The KurrentDB operator's sidecar config (JSON), end to end against the real daemon: the rules
//! the operator writes (its own sidecar's test among them), answered over UDP and TCP, every
//! other query forwarded, reloads, and what the incumbent got wrong.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{
    Daemon, client_queries, eventually, query, raw_message, raw_query, tcp, udp, udp_raw, upstream,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use splitdns::MappingSource;

/// An operator-shaped config: the regex rules it writes per server kind (public FQDN -> the
/// pod's headless-service name), then the user's `splitDNSExtraRules` (host -> IP), and a field
/// of a future operator version. `resolver` is overridden by the test's upstream.
const CONFIG: &str = r#"{
  "listen": "127.0.0.1:53",
  "resolver": "10.96.0.10:53",
  "clusterDomain": "cluster.local",
  "rules": [
    {"host": "kdb-([0-9]+)\\.my-domain\\.com", "result": "kdb-${1}.kdb.ns.svc.cluster.local", "regex": true},
    {"host": "kdb-replica-([0-9]+)\\.my-domain\\.com", "result": "kdb-replica-${1}.kdb-replica.ns.svc.cluster.local", "regex": true},
    {"host": "far-pod0.my-domain.com", "result": "10.1.2.3"},
    {"host": "far-pod6.my-domain.com", "result": "fd00::6"}
  ]
}"#;

fn pod(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 42, 0, n)
}

/// An upstream serving the pods' headless-service names, and the daemon on `config`.
fn start(config: &str) -> (upstream::TestUpstream, Daemon) {
    let up = upstream::start();
    for n in 0..3 {
        up.set_a(
            &format!("kdb-{n}.kdb.ns.svc.cluster.local"),
            &[pod(10 + n)],
            5,
        );
        up.set_a(
            &format!("kdb-replica-{n}.kdb-replica.ns.svc.cluster.local"),
            &[pod(20 + n)],
            5,
        );
    }
    let path = common::temp_file("dns.conf", config);
    let d = Daemon::start_source(MappingSource::Operator(path), vec![up.addr], |_| {});
    (up, d)
}

#[test]
fn operator_rules_are_answered_and_everything_else_forwarded_over_udp_and_tcp() {
    let (up, d) = start(CONFIG);
    type Send = fn(std::net::SocketAddr, &Message) -> Message;
    let transports: [(Send, _); 2] = [(udp, d.udp), (tcp, d.tcp)];
    for (send, addr) in transports {
        // A server name: the pod IP through its headless-service name, under the asked name.
        let r = send(addr, &query("kdb-1.my-domain.com.", RecordType::A));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(common::ipv4s(&r), [pod(11)]);
        assert_eq!(r.answers[0].name.to_ascii(), "kdb-1.my-domain.com.");
        assert!(r.answers[0].ttl <= 5, "at most the target's TTL");
        // Any spelling (DNS names are case-insensitive: RFC 4343).
        let r = send(addr, &query("KDB-2.My-Domain.COM.", RecordType::A));
        assert_eq!(common::ipv4s(&r), [pod(12)]);
        assert_eq!(r.answers[0].name.to_ascii(), "KDB-2.My-Domain.COM.");
        let r = send(addr, &query("kdb-replica-0.my-domain.com.", RecordType::A));
        assert_eq!(common::ipv4s(&r), [pod(20)]);
        // The other family of an A-only pod: NODATA with an SOA (cacheable), not SERVFAIL.
        let r = send(addr, &query("kdb-1.my-domain.com.", RecordType::AAAA));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
        // An extra rule with an address: answered locally, authoritatively.
        let r = send(addr, &query("Far-Pod0.my-domain.com.", RecordType::A));
        assert_eq!(common::ipv4s(&r), [Ipv4Addr::new(10, 1, 2, 3)]);
        assert!(r.metadata.authoritative);
        let r = send(addr, &query("far-pod6.my-domain.com.", RecordType::AAAA));
        assert_eq!(
            common::ipv6s(&r),
            ["fd00::6".parse::<std::net::Ipv6Addr>().unwrap()]
        );
        for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let r = send(addr, &query("far-pod0.my-domain.com.", qtype));
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{qtype}");
            assert!(r.answers.is_empty(), "{qtype}");
            assert_eq!(r.authorities[0].record_type(), RecordType::SOA, "{qtype}");
        }
        // Not ours: forwarded, the upstream's answer unchanged (not SERVFAIL).
        let r = send(addr, &query("www.example.org.", RecordType::A));
        assert_eq!(common::ipv4s(&r), [Ipv4Addr::new(192, 0, 2, 1)]);
        let r = send(addr, &query("nope.example.org.", RecordType::A));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        // Near misses of the regex are not ours either.
        let r = send(addr, &query("kdb-.my-domain.com.", RecordType::A));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "forwarded");
    }
    let asked: Vec<String> = client_queries(&up).into_iter().map(|q| q.name).collect();
    let ours = ["kdb-1.", "kdb-2.", "kdb-replica-0.", "far-pod"];
    assert!(
        !asked
            .iter()
            .any(|n| n.to_ascii_lowercase().ends_with(".my-domain.com.")
                && ours.iter().any(|o| n.to_ascii_lowercase().starts_with(o))),
        "server names never reach the upstream: {asked:?}"
    );
}

/// The rules of the incumbent's own test (its dns/dns_test.go), as the operator writes them for
/// the FQDN template `x\({podName}|y.another-{podName}.{domain}`: the names hold '\', '(' and '|'
/// as plain octets of their first label.
#[test]
fn the_incumbents_own_test_rules_over_the_wire() {
    let config = r#"{"resolver": "10.96.0.10:53", "rules": [
        {"regex": true, "host": "x\\\\\\(kdb-([0-9]+)\\|y\\.another-kdb-([0-9]+)\\.my-domain",
         "result": "kdb-${1}.kdb.ns.svc.cluster.local"},
        {"regex": true, "host": "x\\\\\\(kdb-replica-([0-9]+)\\|y\\.another-kdb-replica-([0-9]+)\\.my-domain",
         "result": "kdb-replica-${1}.kdb-replica.ns.svc.cluster.local"}]}"#;
    let (up, d) = start(config);
    // (name, the pod address it must give, or None: not ours, forwarded)
    let rows = [
        ("x\\(kdb-0|y.another-kdb-0.my-domain", Some(pod(10))),
        ("x\\(kdb-2|y.another-kdb-2.my-domain", Some(pod(12))),
        (
            "x\\(kdb-replica-1|y.another-kdb-replica-1.my-domain",
            Some(pod(21)),
        ),
        ("x\\(kdb-|y.another-kdb-.my-domain", None),
        ("x\\(kdb-replica-|y.another-kdb-replica-.my-domain", None),
    ];
    for (i, (name, want)) in rows.iter().enumerate() {
        let q = raw_query(name, RecordType::A).id(0x4000 + i as u16).build();
        let reply = udp_raw(d.udp, &q, common::TIMEOUT).expect("a reply");
        let r = Message::from_vec(&reply).expect("parseable");
        match want {
            Some(ip) => assert_eq!(common::ipv4s(&r), [*ip], "{name}"),
            // Forwarded: the test upstream refuses names outside its zones.
            None => assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}"),
        }
    }
    assert_eq!(
        client_queries(&up)
            .iter()
            .filter(|q| q.name.contains("another"))
            .count(),
        2,
        "only the two non-matching names were forwarded"
    );
}

/// The file is reloaded like a YAML mapping: a new extra rule is served without a restart, a
/// broken file keeps the last good rules (counted), and a fixed one is served again.
#[test]
fn the_config_is_reloaded_and_a_bad_one_keeps_the_last_good() {
    let (_up, d) = start(CONFIG);
    let path = d.mapping_path.clone();
    let a = |name: &str| common::first_a(&udp(d.udp, &query(name, RecordType::A)));
    assert_eq!(
        a("far-pod0.my-domain.com."),
        Some(Ipv4Addr::new(10, 1, 2, 3))
    );
    let changed = CONFIG.replace(
        r#"{"host": "far-pod0.my-domain.com", "result": "10.1.2.3"}"#,
        r#"{"host": "far-pod0.my-domain.com", "result": "10.1.2.4"},
    {"host": "far-pod1.my-domain.com", "result": "10.1.2.5"}"#,
    );
    common::write_atomic(&path, &changed);
    eventually(Duration::from_secs(5), "the new rules served", || {
        a("far-pod1.my-domain.com.") == Some(Ipv4Addr::new(10, 1, 2, 5))
    });
    assert_eq!(
        a("far-pod0.my-domain.com."),
        Some(Ipv4Addr::new(10, 1, 2, 4))
    );
    let failures = || {
        d.running()
            .reload_stats()
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = failures();
    common::write_atomic(
        &path,
        &changed.replace("\"regex\": true}", "\"regex\": \"yes\"}"),
    );
    eventually(Duration::from_secs(5), "the bad file counted", || {
        failures() > before
    });
    assert_eq!(
        a("far-pod1.my-domain.com."),
        Some(Ipv4Addr::new(10, 1, 2, 5))
    );
    assert_eq!(
        common::first_a(&udp(d.udp, &query("kdb-0.my-domain.com.", RecordType::A))),
        Some(pod(10))
    );
    common::write_atomic(&path, CONFIG);
    eventually(Duration::from_secs(5), "the fixed file served", || {
        a("far-pod0.my-domain.com.") == Some(Ipv4Addr::new(10, 1, 2, 3))
    });
}

/// The packet that kills the incumbent (a name that is a compression pointer to itself), and
/// its relatives: dropped or FORMERR, never a crash, and the next query is answered.
#[test]
fn a_self_pointing_name_is_harmless() {
    let (_up, d) = start(CONFIG);
    let mut loops = Vec::new();
    // The 16-octet one: header, then a QNAME pointing at itself (offset 12), a type.
    let q = raw_message().id(0x1234).question(&[0xc0, 0x0c, 0x00, 0x01]);
    assert_eq!(q.build().len(), 16);
    loops.push(q.build());
    loops.push(q.trailing(&[0x00, 0x01]).build()); // ... and its class
    // A label, then a pointer back to it.
    let q = raw_message()
        .id(0x1235)
        .question(&[3, b'k', b'd', b'b', 0xc0, 0x0c, 0, 1, 0, 1]);
    loops.push(q.build());
    for q in &loops {
        if let Some(reply) = udp_raw(d.udp, q, Duration::from_millis(300)) {
            assert_eq!(reply[3] & 0x0f, 1, "FORMERR if anything");
        }
    }
    let r = udp(d.udp, &query("kdb-0.my-domain.com.", RecordType::A));
    assert_eq!(common::ipv4s(&r), [pod(10)]);
}
