//! Alias rules on the hardened upstream path (issue 18): target lookups go through the relay
//! (retransmission, shared health, TCP after TC), and the target cache (life capped by the rule,
//! negative answers, coalescing, prefetch, stale only while the upstream fails, bounded floods).
//! Against real upstreams: the in-process hickory server and the scripted faulty one.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::faulty::{self, Act};
use common::{Daemon, eventually, query, udp, udp_raw, upstream, with_edns};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// `pod-N.db.example.com` -> `host-N.example.net`, for the scripted upstream.
const TO_HOSTS: &str = "hosts: {}\nrules:\n  - host: 'pod-(\\d+)\\.db\\.example\\.com'\n    regex: true\n    result: 'host-${1}.example.net'\n";

/// `pod-N.db.example.com` -> the pod's headless-service name, for the hickory upstream;
/// `short-N` the same through a rule whose ttl is 1.
const TO_PODS: &str = "hosts: {}\nrules:\n  - host: 'pod-(\\d+)\\.db\\.example\\.com'\n    regex: true\n    result: 'kdb-${1}.kdb.ns.svc.cluster.local'\n  - host: 'short-(\\d+)\\.db\\.example\\.com'\n    regex: true\n    result: 'kdb-${1}.kdb.ns.svc.cluster.local'\n    ttl: 1\n";

fn pod(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 42, 0, n)
}

fn a(d: &Daemon, name: &str) -> Message {
    udp(d.udp, &query(name, RecordType::A))
}

/// A value of the daemon's metrics (first series of the family).
fn metric(d: &Daemon, name: &str) -> f64 {
    let admin = d.running().admin_addr().expect("admin on");
    let (_, body) = common::http_get(admin, "/metrics");
    body.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn a_lost_lookup_is_retransmitted_like_a_forwarded_query() {
    let copies = Arc::new(AtomicUsize::new(0));
    let c = copies.clone();
    let f = faulty::start(move |q| {
        if q.name == "host-1.example.net" && c.fetch_add(1, Ordering::Relaxed) == 0 {
            Act::Drop
        } else {
            Act::Answer(1)
        }
    });
    let d = Daemon::start(TO_HOSTS, vec![f.addr]);
    let r = a(&d, "pod-1.db.example.com.");
    assert_eq!(common::ipv4s(&r), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(
        f.count("host-1.example.net"),
        2,
        "the first copy lost, the second answered"
    );
}

/// Alias lookups are copies like any other: their silence marks an upstream down, and the next
/// upstream answers them.
#[test]
fn lookups_share_health_with_the_relay() {
    let silent = faulty::start(|_| Act::Drop);
    let good = faulty::start(|_| Act::Answer(2));
    let d = Daemon::start(TO_HOSTS, vec![silent.addr, good.addr]);
    let mut n = 0;
    eventually(
        Duration::from_secs(10),
        "the silent upstream marked down",
        || {
            n += 1;
            let r = a(&d, &format!("pod-{n}.db.example.com."));
            assert_eq!(
                common::ipv4s(&r),
                [Ipv4Addr::new(192, 0, 2, 2)],
                "answered by the next"
            );
            d.running().upstreams_up() == [false, true]
        },
    );
    assert_eq!(
        d.stats().get(splitdns::dns::answer::Outcome::Forwarded),
        0,
        "no forwarded query did it"
    );
}

#[test]
fn a_truncated_lookup_is_asked_again_over_tcp() {
    let f = faulty::start(|q| if q.tcp { Act::Answer(9) } else { Act::Tc });
    let d = Daemon::start(TO_HOSTS, vec![f.addr]);
    let r = a(&d, "pod-3.db.example.com.");
    assert_eq!(common::ipv4s(&r), [Ipv4Addr::new(192, 0, 2, 9)]);
    let tcp = f
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q.tcp && q.name == "host-3.example.net")
        .count();
    assert_eq!(tcp, 1);
}

#[test]
fn concurrent_misses_for_one_target_are_one_upstream_query() {
    let f = faulty::start(|q| {
        if q.name == "host-5.example.net" {
            Act::AnswerAfter(5, Duration::from_millis(300))
        } else {
            Act::Answer(1)
        }
    });
    let d = Daemon::start(TO_HOSTS, vec![f.addr]);
    let addr = d.udp;
    let clients: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                // Each its own spelling: each gets its own back.
                let name = if i % 2 == 0 {
                    "pod-5.db.example.com."
                } else {
                    "POD-5.Db.Example.com."
                };
                let r = udp(addr, &query(name, RecordType::A));
                assert_eq!(r.answers[0].name.to_ascii(), name);
                common::ipv4s(&r)
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), [Ipv4Addr::new(192, 0, 2, 5)]);
    }
    // One lookup: its copies (re-sent after the RTO while the upstream thinks) share one
    // random 0x20 spelling; another lookup would have its own.
    let spellings: std::collections::HashSet<Vec<u8>> = f
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q.name == "host-5.example.net")
        .map(|q| q.bytes[12..12 + 20].to_vec())
        .collect();
    assert_eq!(spellings.len(), 1, "{spellings:?}");
}

#[test]
fn the_rules_ttl_caps_how_long_a_target_is_kept() {
    let up = upstream::start();
    up.set_a("kdb-1.kdb.ns.svc.cluster.local", &[pod(1)], 300);
    let d = Daemon::start(TO_PODS, vec![up.addr]);
    for _ in 0..3 {
        let r = a(&d, "short-1.db.example.com.");
        assert_eq!(common::ipv4s(&r), [pod(1)]);
        assert!(
            r.answers[0].ttl <= 1,
            "the rule's ttl: {}",
            r.answers[0].ttl
        );
    }
    assert_eq!(up.count_for("kdb-1.kdb.ns.svc.cluster.local"), 1);
    std::thread::sleep(Duration::from_millis(1100));
    a(&d, "short-1.db.example.com.");
    assert_eq!(
        up.count_for("kdb-1.kdb.ns.svc.cluster.local"),
        2,
        "asked again after 1 s"
    );
}

/// A pod that does not exist yet: NODATA (cacheable, with the SOA), kept at most a second, then
/// its address as soon as it exists.
#[test]
fn a_missing_target_is_cached_for_at_most_a_second() {
    let up = upstream::start();
    let d = Daemon::start(TO_PODS, vec![up.addr]);
    for _ in 0..5 {
        let r = a(&d, "pod-9.db.example.com.");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert!(r.authorities[0].ttl <= 1);
    }
    assert_eq!(up.count_for("kdb-9.kdb.ns.svc.cluster.local"), 1);
    up.set_a("kdb-9.kdb.ns.svc.cluster.local", &[pod(9)], 5);
    eventually(Duration::from_secs(3), "the new pod answered", || {
        common::ipv4s(&a(&d, "pod-9.db.example.com.")) == [pod(9)]
    });
    assert!(up.count_for("kdb-9.kdb.ns.svc.cluster.local") <= 3);
}

/// A name asked in the last quarter of its life is refreshed in the background: the client is
/// answered from memory at once and the next one gets the new address without waiting.
#[test]
fn a_hot_name_is_refreshed_before_it_expires() {
    let up = upstream::start();
    let target = "kdb-2.kdb.ns.svc.cluster.local";
    up.set_a(target, &[pod(2)], 300);
    let d = Daemon::start_with(TO_PODS, vec![up.addr], |c| {
        c.alias_cache_ttl = Duration::from_secs(2)
    });
    assert_eq!(common::ipv4s(&a(&d, "pod-2.db.example.com.")), [pod(2)]);
    // The pod restarts with another address.
    up.set_a(target, &[pod(22)], 300);
    std::thread::sleep(Duration::from_millis(1600));
    let r = a(&d, "pod-2.db.example.com.");
    assert_eq!(
        common::ipv4s(&r),
        [pod(2)],
        "still the cached address, at once"
    );
    assert_eq!(r.answers[0].ttl, 0, "with the time it has left");
    eventually(Duration::from_secs(2), "the background refresh", || {
        up.count_for(target) == 2
    });
    // The upstream has seen the refresh; its reply may still be on its way to the cache (the
    // old address is served from memory meanwhile, with no further lookup).
    eventually(
        Duration::from_secs(1),
        "the new address, from memory",
        || common::ipv4s(&a(&d, "pod-2.db.example.com.")) == [pod(22)],
    );
    assert_eq!(
        up.count_for(target),
        2,
        "no lookup for it: refreshed before it expired"
    );
    assert!(metric(&d, "splitdns_alias_cache_refreshes") >= 1.0);
}

/// The last good records while no upstream answers for the target (TTL 30, EDE 3), and never
/// once it answers again.
#[test]
fn stale_records_only_while_the_upstream_fails() {
    let silent = Arc::new(AtomicBool::new(false));
    let s = silent.clone();
    let f = faulty::start(move |q| {
        if !faulty::is_probe(q) && s.load(Ordering::Relaxed) {
            Act::Drop
        } else {
            Act::Answer(7)
        }
    });
    let d = Daemon::start_with(TO_HOSTS, vec![f.addr], |c| {
        c.alias_cache_ttl = Duration::from_secs(1);
        c.upstream_timeout = Duration::from_millis(600);
    });
    let edns_a = |d: &Daemon| {
        let q = with_edns(query("pod-7.db.example.com.", RecordType::A), 1232, &[]);
        let bytes = udp_raw(d.udp, &q.to_vec().unwrap(), common::TIMEOUT).expect("a reply");
        (Message::from_vec(&bytes).unwrap(), common::ede(&bytes))
    };
    let (r, ede) = edns_a(&d);
    assert_eq!(
        (common::ipv4s(&r), ede),
        (vec![Ipv4Addr::new(192, 0, 2, 7)], None)
    );
    assert!(r.answers[0].ttl <= 1);
    silent.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1100));
    let (r, ede) = edns_a(&d);
    assert_eq!(
        common::ipv4s(&r),
        [Ipv4Addr::new(192, 0, 2, 7)],
        "the last good records"
    );
    assert_eq!(
        (r.answers[0].ttl, ede),
        (30, Some(3)),
        "TTL 30, EDE 3 Stale Answer"
    );
    silent.store(false, Ordering::Relaxed);
    for _ in 0..3 {
        let (r, ede) = edns_a(&d);
        assert_eq!(ede, None, "never stale while the upstream answers");
        assert!(r.answers[0].ttl <= 1);
    }
    assert!(metric(&d, "splitdns_alias_cache_stale_answers") >= 1.0);
}

/// A flood of alias queries for unique names whose target never answers stays within the
/// lookup and waiter bounds, sheds the rest with SERVFAIL, and a working alias name is still
/// answered during and right after it.
#[test]
fn a_flood_of_unique_names_is_bounded_and_a_working_name_still_answers() {
    let f = faulty::start(|q| {
        if q.name.starts_with("host-") && q.name != "host-1.example.net" {
            Act::Drop
        } else {
            Act::Answer(1)
        }
    });
    let d = Daemon::start(TO_HOSTS, vec![f.addr]);
    assert_eq!(
        common::ipv4s(&a(&d, "pod-1.db.example.com.")),
        [Ipv4Addr::new(192, 0, 2, 1)]
    );
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..3000u32 {
        let q = query(&format!("pod-{}.db.example.com.", 1000 + i), RecordType::A);
        let _ = flood.send_to(&q.to_vec().unwrap(), d.udp);
        if i % 500 == 0 {
            let r = a(&d, "pod-1.db.example.com.");
            assert_eq!(
                common::ipv4s(&r),
                [Ipv4Addr::new(192, 0, 2, 1)],
                "during the flood"
            );
        }
    }
    assert!(metric(&d, "splitdns_alias_lookups_inflight") <= 256.0);
    assert!(metric(&d, "splitdns_alias_waiting_clients") <= 4096.0);
    eventually(Duration::from_secs(5), "some shed at once", || {
        metric(&d, "splitdns_alias_cache_shed") > 0.0
    });
    eventually(Duration::from_secs(5), "the flood's lookups over", || {
        metric(&d, "splitdns_alias_lookups_inflight") == 0.0
            && metric(&d, "splitdns_alias_waiting_clients") == 0.0
    });
    assert!(
        metric(&d, "splitdns_alias_cache_entries") <= 2.0,
        "nothing of the flood kept"
    );
    let r = a(&d, "pod-1.db.example.com.");
    assert_eq!(
        common::ipv4s(&r),
        [Ipv4Addr::new(192, 0, 2, 1)],
        "right after it"
    );
    let _: SocketAddr = d.udp;
}
