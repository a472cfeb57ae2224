//! The attempt model under loss: lost copies are re-sent within the budget, a late reply to an
//! earlier copy counts, random loss never marks an upstream down but silence does, the first
//! reply brings it back, re-sends are bounded, ICMP unreachable and a dying TCP connection are
//! retried, and serve-stale answers only while the upstream fails.

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faulty::{self, Act, is_probe};
use common::{Daemon, query, tcp, udp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use splitdns::dns::answer::Outcome;

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";
/// Copies of one query at most (src/upstream/attempt.rs).
const MAX_COPIES: usize = 8;

use common::first_a as a;

/// A script that drops the first `k` copies of every client query and answers the rest.
fn drop_first(k: usize) -> impl Fn(&faulty::Query) -> Act + Send + Sync {
    let copies = Mutex::new(HashMap::<String, usize>::new());
    move |q| {
        if is_probe(q) {
            return Act::Answer(1);
        }
        let mut c = copies.lock().unwrap();
        let n = c.entry(q.name.clone()).or_default();
        *n += 1;
        if *n <= k { Act::Drop } else { Act::Answer(9) }
    }
}

#[test]
fn lost_copies_are_resent_within_the_budget() {
    for k in [1, 3] {
        let up = faulty::start(drop_first(k));
        let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
            c.upstream_timeout = Duration::from_secs(2);
        });
        let r = common::under(Duration::from_secs(2), "answered within the budget", || {
            udp(d.udp, &query("www.example.org.", RecordType::A))
        });
        assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 9)), "k={k}");
        assert_eq!(
            up.count("www.example.org"),
            k + 1,
            "one copy more than lost"
        );
        let m = d.stats();
        assert_eq!(m.upstream_retransmits(), k as u64);
        assert_eq!(m.get(Outcome::Forwarded), 1);
        assert_eq!(d.running().upstreams_up(), vec![true]);
    }
}

/// An upstream slower for some names than for the rest (a cluster DNS's cache misses): once its
/// slow replies are seen, a slow name goes out once, not once per RTO learnt from the fast ones.
/// Each copy has its own ID and socket, so a reply to a re-sent query is an RTT sample too
/// (src/upstream/attempt.rs): only first-copy samples would keep the RTO at its floor and send
/// every slow name three times (three times the upstream's load and the spoofing exposure).
#[test]
fn slow_names_are_not_resent_once_their_replies_are_seen() {
    let up = faulty::start(|q| {
        if q.name.starts_with("slow") {
            Act::AnswerAfter(7, Duration::from_millis(150))
        } else {
            Act::Answer(1)
        }
    });
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.upstream_timeout = Duration::from_secs(2);
    });
    // Fast answers bring the RTO down to its floor (50 ms).
    for i in 0..20 {
        let r = udp(
            d.udp,
            &query(&format!("fast-{i}.example.org."), RecordType::A),
        );
        assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 1)));
    }
    let copies: Vec<usize> = (0..12)
        .map(|i| {
            let name = format!("slow-{i}.example.org");
            let r = udp(d.udp, &query(&format!("{name}."), RecordType::A));
            assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 7)), "{name}");
            up.count(&name)
        })
        .collect();
    // The first slow names may be re-sent (the RTO was the fast names'); from the third on the
    // RTO has seen 150 ms replies: one copy each (two spare for a stalled CI machine; with
    // first-copy samples only, these ten cost 30).
    let later: usize = copies[2..].iter().sum();
    assert!(later <= 12, "copies per slow name: {copies:?}");
    assert_eq!(d.stats().get(Outcome::Forwarded), 32);
}

#[test]
fn tcp_query_is_retried_when_the_connection_dies() {
    let closes = Mutex::new(0usize);
    let up = faulty::start(move |q| {
        if !q.tcp {
            return Act::Answer(1);
        }
        let mut n = closes.lock().unwrap();
        *n += 1;
        if *n == 1 { Act::Close } else { Act::Answer(5) }
    });
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let r = tcp(d.tcp, &query("www.example.org.", RecordType::A));
    assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 5)));
    assert!(d.stats().upstream_retransmits() >= 1);
}

/// The first copy's reply arrives after the second copy went out: it completes the query.
#[test]
fn late_reply_to_an_earlier_copy_is_accepted() {
    let copies = Mutex::new(0usize);
    let up = faulty::start(move |q| {
        if q.name != "www.example.org" {
            return Act::Answer(1);
        }
        let mut n = copies.lock().unwrap();
        *n += 1;
        if *n == 1 {
            Act::AnswerAfter(4, Duration::from_millis(400))
        } else {
            Act::Drop
        }
    });
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.upstream_timeout = Duration::from_secs(2);
    });
    let r = common::under(Duration::from_millis(700), "the first copy's reply", || {
        udp(d.udp, &query("www.example.org.", RecordType::A))
    });
    assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 4)));
    assert!(up.count("www.example.org") >= 2, "a second copy was sent");
}

/// 30 % of the queries dropped at random (seeded): every client query is answered and the
/// upstream is never marked down.
#[test]
fn random_loss_is_retried_and_never_marks_the_upstream_down() {
    let rng = Mutex::new(0x9E37_79B9_7F4A_7C15u64);
    let up = faulty::start(move |q| {
        if is_probe(q) {
            return Act::Answer(1);
        }
        let mut x = rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        if *x % 10 < 3 {
            Act::Drop
        } else {
            Act::Answer(3)
        }
    });
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.upstream_timeout = Duration::from_secs(2);
        c.unhealthy_after = Duration::from_millis(500);
    });
    let addr = d.udp;
    let clients: Vec<_> = (0..4)
        .map(|c| {
            std::thread::spawn(move || {
                (0..40)
                    .map(|i| {
                        let r = udp(
                            addr,
                            &query(&format!("n{c}-{i}.example.org."), RecordType::A),
                        );
                        a(&r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for c in clients {
        for r in c.join().unwrap() {
            assert_eq!(r, Some(Ipv4Addr::new(192, 0, 2, 3)));
        }
    }
    assert_eq!(
        d.running().upstreams_up(),
        vec![true],
        "loss is not silence"
    );
    let m = d.stats();
    assert_eq!(m.get(Outcome::Forwarded), 160);
    assert_eq!(m.get(Outcome::ServFail), 0);
    assert!(m.upstream_retransmits() >= 20, "{m:?}");
}

/// An upstream that drops everything (probes too) while the flag is set, and otherwise answers
/// 192.0.2.`n`.
fn silent_upstream(n: u8) -> (faulty::Faulty, Arc<AtomicBool>) {
    let silent = Arc::new(AtomicBool::new(true));
    let s = silent.clone();
    let up = faulty::start(move |_| {
        if s.load(Ordering::Relaxed) {
            Act::Drop
        } else {
            Act::Answer(n)
        }
    });
    (up, silent)
}

/// Silence (queries and probes unanswered) marks the upstream down after the window; its
/// first reply brings it back, and the next query is answered at once.
#[test]
fn silence_marks_down_and_the_first_reply_marks_up() {
    let (up, silent) = silent_upstream(8);
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.upstream_timeout = Duration::from_millis(800);
        c.unhealthy_after = Duration::from_millis(400);
    });
    let r = udp(d.udp, &query("www.example.org.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    common::eventually(Duration::from_secs(3), "marked down", || {
        d.running().upstreams_up() == vec![false]
    });
    silent.store(false, Ordering::Relaxed);
    // Probes while down are fast: marked up well before the second the helper allows.
    common::under(Duration::from_millis(300), "marked up", || {
        common::eventually(Duration::from_secs(1), "marked up", || {
            d.running().upstreams_up() == vec![true]
        })
    });
    let r = common::under(Duration::from_millis(100), "answered at once", || {
        udp(d.udp, &query("www.example.org.", RecordType::A))
    });
    assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 8)));
}

/// A query waiting on an upstream that went silent is answered as soon as it is back: the
/// recovery re-sends what waits at once, not at the next back-off step.
#[test]
fn waiting_queries_are_resent_as_soon_as_the_upstream_is_back() {
    let (up, silent) = silent_upstream(6);
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.upstream_timeout = Duration::from_secs(6);
        c.unhealthy_after = Duration::from_millis(300);
    });
    common::eventually(Duration::from_secs(3), "marked down", || {
        d.running().upstreams_up() == vec![false]
    });
    let addr = d.udp;
    let client = std::thread::spawn(move || {
        let r = udp(addr, &query("www.example.org.", RecordType::A));
        (a(&r), Instant::now())
    });
    // Let the query's copies settle into the down upstream's slow schedule.
    std::thread::sleep(Duration::from_millis(1200));
    silent.store(false, Ordering::Relaxed);
    let back = Instant::now();
    let (answer, at) = client.join().unwrap();
    assert_eq!(answer, Some(Ipv4Addr::new(192, 0, 2, 6)));
    common::assert_under(
        at.saturating_duration_since(back),
        Duration::from_millis(200),
        "answered after the upstream came back",
    );
}

/// A black-holed upstream gets a bounded number of copies per query.
#[test]
fn resends_are_bounded_per_query() {
    let up = faulty::start(|_| Act::Drop);
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.upstream_timeout = Duration::from_secs(2);
    });
    let addr = d.udp;
    let clients: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                udp(addr, &query(&format!("h{i}.example.org."), RecordType::A))
                    .metadata
                    .response_code
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), ResponseCode::ServFail);
    }
    for i in 0..20 {
        let n = up.udp_count(&format!("h{i}.example.org"));
        assert!((3..=MAX_COPIES).contains(&n), "h{i}: {n} copies");
    }
}

/// The only upstream restarts (ICMP port unreachable while it is down): a query sent during
/// the restart is answered when it is back, within the budget.
#[test]
fn query_survives_an_upstream_restart() {
    let up = faulty::start(|_| Act::Answer(2));
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.upstream_timeout = Duration::from_secs(2);
    });
    let r = udp(d.udp, &query("warm.example.org.", RecordType::A));
    assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 2)));
    up.restart_udp(Duration::from_millis(700));
    std::thread::sleep(Duration::from_millis(100));
    let r = common::under(Duration::from_millis(1500), "answered once back", || {
        udp(d.udp, &query("www.example.org.", RecordType::A))
    });
    assert_eq!(a(&r), Some(Ipv4Addr::new(192, 0, 2, 2)));
    let m = d.stats();
    assert!(m.upstreams[0].errors >= 1, "ICMP unreachable seen: {m:?}");
}

/// Serve-stale: the last good reply is used only when the upstream fails, with TTL 30, and
/// counted; a name never answered still gets SERVFAIL.
#[test]
fn serve_stale_answers_only_while_the_upstream_fails() {
    let silent = Arc::new(AtomicBool::new(false));
    let s = silent.clone();
    let up = faulty::start(move |q| {
        if s.load(Ordering::Relaxed) && !is_probe(q) {
            Act::Drop
        } else {
            Act::Answer(7)
        }
    });
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.upstream_timeout = Duration::from_millis(500);
        c.serve_stale = Some(Duration::from_secs(3600));
    });
    let ttl = |m: &Message| m.answers.first().map(|r| r.ttl);
    let r = udp(d.udp, &query("www.example.org.", RecordType::A));
    assert_eq!(
        (a(&r), ttl(&r)),
        (Some(Ipv4Addr::new(192, 0, 2, 7)), Some(60))
    );
    // Upstream answers: never stale.
    let r = udp(d.udp, &query("WWW.example.org.", RecordType::A));
    assert_eq!(ttl(&r), Some(60));
    silent.store(true, Ordering::Relaxed);
    let r = common::under(
        Duration::from_millis(500),
        "stale within the budget",
        || udp(d.udp, &query("wWw.example.org.", RecordType::A)),
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        (a(&r), ttl(&r)),
        (Some(Ipv4Addr::new(192, 0, 2, 7)), Some(30))
    );
    assert_eq!(
        r.queries[0].name().to_string(),
        "wWw.example.org.",
        "the client's spelling"
    );
    let r = tcp(d.tcp, &query("www.example.org.", RecordType::A));
    assert_eq!(ttl(&r), Some(30), "over TCP too");
    let r = udp(d.udp, &query("never.example.org.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let m = d.stats();
    assert_eq!(m.get(Outcome::Stale), 2);
    assert_eq!(m.get(Outcome::ServFail), 1);
}

/// Serve-stale after the upstream is gone (its port closed: refused, not silent): an EDNS client
/// gets the last good reply with TTL 30 and EDE 3 "Stale Answer" (RFC 8914 §4.4); a name never
/// answered gets SERVFAIL with EDE 23 "Network Error".
#[test]
fn stale_answers_say_so_and_servfail_says_why_once_the_upstream_is_gone() {
    let up = common::upstream::start();
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.upstream_timeout = Duration::from_millis(500);
        c.serve_stale = Some(Duration::from_secs(3600));
    });
    let q = common::with_edns(query("www.example.org.", RecordType::A), 1232, &[])
        .to_vec()
        .unwrap();
    let fresh = common::udp_raw(d.udp, &q, Duration::from_secs(2)).expect("a reply");
    assert_eq!(common::ede(&fresh), None, "a fresh answer carries no EDE");
    drop(up);
    let stale = common::udp_raw(d.udp, &q, Duration::from_secs(2)).expect("a stale reply");
    let m = Message::from_vec(&stale).expect("parseable");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.first().map(|r| r.ttl), Some(30));
    assert_eq!(common::ede(&stale), Some(3), "{stale:02x?}");
    let never = common::with_edns(query("never.example.org.", RecordType::A), 1232, &[])
        .to_vec()
        .unwrap();
    let r = common::udp_raw(d.udp, &never, Duration::from_secs(2)).expect("a SERVFAIL");
    assert_eq!(r[3] & 0x0f, 2);
    assert_eq!(common::ede(&r), Some(23), "{r:02x?}");
    assert_eq!(d.stats().get(Outcome::Stale), 1);
}
