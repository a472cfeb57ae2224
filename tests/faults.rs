//! Upstream faults: bad replies never reach the client, dead and silent upstreams are failed
//! over, failing upstreams are skipped and come back, overload is shed and counted.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::faulty::{self, Act, is_probe};
use common::{Daemon, closed_port, query, tcp, udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use splitdns::dns::answer::Outcome;

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";

use common::first_a as a;

/// A hostile upstream: for each query it first sends a reply that must be ignored (wrong ID,
/// wrong question, from another port, not DNS, cut short, not a response), then the genuine one.
#[test]
fn bad_replies_never_reach_the_client() {
    for bad in [
        Act::WrongId,
        Act::WrongQuestion,
        Act::WrongPort,
        Act::Garbage,
        Act::Truncated,
        Act::NotResponse,
    ] {
        let act = bad.clone();
        let up = faulty::start(move |q| {
            if is_probe(q) {
                Act::Answer(1)
            } else {
                act.clone()
            }
        });
        let d = Daemon::start(MAPPING, vec![up.addr]);
        let r = udp(d.udp, &query("www.example.org.", RecordType::A));
        assert_eq!(
            a(&r),
            Some(Ipv4Addr::new(192, 0, 2, 7)),
            "{bad:?}: only the genuine reply"
        );
        assert_eq!(r.answers.len(), 1, "{bad:?}");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    }
}

#[test]
fn dead_upstream_fails_over_at_once() {
    let good = faulty::start(|_| Act::Answer(2));
    let d = Daemon::start_with(MAPPING, vec![closed_port(), good.addr], |c| {
        c.upstream_timeout = Duration::from_secs(4);
    });
    let r = common::under(Duration::from_millis(1000), "no timeout waited", || {
        udp(d.udp, &query("www.example.org.", RecordType::A))
    });
    assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 2)));
}

/// A silent first upstream costs a query one retransmission timeout (the initial RTO, 200 ms,
/// before any RTT sample), not a share of the whole budget; over TCP too (the first upstream
/// holds the connection open unanswered).
#[test]
fn black_holed_upstream_fails_over_after_one_rto() {
    let hole = faulty::start(|q| {
        if is_probe(q) {
            Act::Answer(1)
        } else {
            Act::Hold
        }
    });
    let good = faulty::start(|_| Act::Answer(2));
    let d = Daemon::start_with(MAPPING, vec![hole.addr, good.addr], |c| {
        c.upstream_timeout = Duration::from_millis(1500);
    });
    let (r, took) = common::timed(|| udp(d.udp, &query("www.example.org.", RecordType::A)));
    assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 2)));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    common::assert_between(
        took,
        Duration::from_millis(150),
        Duration::from_millis(600),
        "failed over after one RTO",
    );
    let r = tcp(d.tcp, &query("www.example.org.", RecordType::A));
    assert_eq!(r.answers.len(), 1, "TCP fails over too");
}

#[test]
fn failing_upstream_is_skipped_then_used_again_when_it_recovers() {
    let broken = Arc::new(AtomicBool::new(true));
    let b = broken.clone();
    let first = faulty::start(move |_| {
        if b.load(Ordering::Relaxed) {
            Act::Drop
        } else {
            Act::Answer(1)
        }
    });
    let second = faulty::start(|_| Act::Answer(2));
    let d = Daemon::start_with(MAPPING, vec![first.addr, second.addr], |c| {
        c.upstream_timeout = Duration::from_millis(400);
        c.unhealthy_after = Duration::from_millis(500);
        c.probe_interval = Duration::from_millis(300);
    });
    // Each query waits out the first upstream's share, then the second answers...
    for _ in 0..3 {
        let r = udp(d.udp, &query("www.example.org.", RecordType::A));
        assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 2)));
    }
    // ... until the first is marked unhealthy and skipped: answers come at once.
    common::eventually(Duration::from_secs(3), "first upstream skipped", || {
        let (r, took) = common::timed(|| udp(d.udp, &query("www.example.org.", RecordType::A)));
        assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 2)));
        took < common::bound(Duration::from_millis(100))
    });
    common::eventually(Duration::from_secs(3), "first marked down", || {
        d.running().upstreams_up() == vec![false, true]
    });
    // Once down, no query waits on it; yet it still gets a copy of a real query now and then
    // (at most one per 100 ms, issue 10), alongside the one that goes to the second upstream.
    let seen = first.count("www.example.org");
    let t0 = Instant::now();
    for _ in 0..20 {
        let r = common::under(Duration::from_millis(50), "not waited on", || {
            udp(d.udp, &query("www.example.org.", RecordType::A))
        });
        assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 2)));
        std::thread::sleep(Duration::from_millis(20));
    }
    let admitted = first.count("www.example.org") - seen;
    let allowed = 1 + t0.elapsed().as_millis() as usize / 100;
    assert!(
        (1..=allowed.min(10)).contains(&admitted),
        "a down upstream gets a copy now and then, at most every 100 ms: {admitted} in {:?}",
        t0.elapsed()
    );
    // It recovers; the background probe notices and it is used again (first in order).
    broken.store(false, Ordering::Relaxed);
    common::eventually(
        Duration::from_secs(3),
        "recovered upstream used again",
        || {
            let r = udp(d.udp, &query("www.example.org.", RecordType::A));
            a(&r) == Some(Ipv4Addr::new(192, 0, 2, 1))
        },
    );
}

/// A black hole (silent over UDP and TCP): every query still gets an answer, SERVFAIL echoing
/// the question, just before the budget ends (so a client whose own timeout equals the budget
/// hears it) and not before, over UDP and TCP, also once the upstream is marked down (queries
/// are still forwarded then: see upstream/health.rs). Mapped names do not depend on it at all.
#[test]
fn black_hole_gets_servfail_within_the_budget_never_silence() {
    // Silent on both transports, but TCP connections for `closing.example.org` are closed
    // unanswered (an error, not silence: see the EDE below).
    let hole = faulty::start(|q| {
        if q.tcp && q.name == "closing.example.org" {
            Act::Drop
        } else {
            Act::Hold
        }
    });
    let d = Daemon::start_with(MAPPING, vec![hole.addr], |c| {
        c.upstream_timeout = Duration::from_millis(300);
        c.unhealthy_after = Duration::from_millis(300);
    });
    let q = query("www.example.org.", RecordType::A);
    for via_tcp in [false, false, false, false, true] {
        let (r, took) = common::timed(|| {
            if via_tcp {
                tcp(d.tcp, &q)
            } else {
                udp(d.udp, &q)
            }
        });
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(r.queries, q.queries, "SERVFAIL echoes the question");
        common::assert_between(
            took,
            Duration::from_millis(200),
            Duration::from_millis(300),
            &format!("SERVFAIL by the budget (TCP: {via_tcp})"),
        );
    }
    // Local names are unaffected.
    let r = common::under(Duration::from_millis(10), "a local answer", || {
        udp(d.udp, &query("db-0.db.example.com.", RecordType::A))
    });
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    let m = d.stats();
    assert!(m.upstream_timeouts() >= 1, "timeouts are counted");
    assert_eq!(m.get(Outcome::ServFail), 5);
    // Silence: "No Reachable Authority" (RFC 8914 §4.23) to an EDNS client, none without EDNS.
    let plain = query("www.example.org.", RecordType::A).to_vec().unwrap();
    let with_opt = common::with_edns(query("www.example.org.", RecordType::A), 1232, &[])
        .to_vec()
        .unwrap();
    let r = common::udp_raw(d.udp, &with_opt, Duration::from_secs(2)).expect("a SERVFAIL");
    assert_eq!(common::ede(&r), Some(22), "{r:02x?}");
    // An upstream that closes the TCP connections it does not answer: an error on every
    // attempt, not silence, so "Network Error" (§4.24).
    let closing = common::with_edns(query("closing.example.org.", RecordType::A), 1232, &[]);
    let r = common::tcp_raw(d.tcp, &closing.to_vec().unwrap());
    assert_eq!(common::ede(&r), Some(23), "{r:02x?}");
    let r = common::udp_raw(d.udp, &plain, Duration::from_secs(2)).expect("a SERVFAIL");
    assert_eq!((r[3] & 0x0f, r[11], common::ede(&r)), (2, 0, None));
}

#[test]
fn upstream_refusing_tcp_fails_over_to_the_next() {
    let refuses = faulty::start(|q| if q.tcp { Act::Close } else { Act::Answer(1) });
    let good = faulty::start(|_| Act::Answer(2));
    let d = Daemon::start(MAPPING, vec![refuses.addr, good.addr]);
    let r = tcp(d.tcp, &query("www.example.org.", RecordType::A));
    assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 2)));
}

#[test]
fn in_flight_forwards_are_bounded_and_excess_gets_servfail() {
    let slow = faulty::start(|q| {
        if is_probe(q) {
            Act::Answer(1)
        } else {
            Act::AnswerAfter(3, Duration::from_millis(800))
        }
    });
    let d = Daemon::start_with(MAPPING, vec![slow.addr], |c| {
        c.max_inflight = 4;
        c.upstream_timeout = Duration::from_secs(3);
    });
    let addr = d.udp;
    let clients: Vec<_> = (0..10)
        .map(|i| {
            std::thread::spawn(move || {
                let q = query(&format!("q{i}.example.org."), RecordType::A);
                let (r, took) = common::timed(|| udp(addr, &q));
                (r.metadata.response_code, took)
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let shed: Vec<_> = results
        .iter()
        .filter(|(rc, _)| *rc == ResponseCode::ServFail)
        .collect();
    let answered = results
        .iter()
        .filter(|(rc, _)| *rc == ResponseCode::NoError)
        .count();
    assert_eq!(answered, 4, "as many forwarded as slots: {results:?}");
    assert_eq!(shed.len(), 6, "{results:?}");
    for (_, took) in &shed {
        common::assert_under(*took, Duration::from_millis(400), "shed at once");
    }
    assert_eq!(
        d.stats().get(Outcome::ServFail),
        6,
        "shed queries are counted"
    );
}
