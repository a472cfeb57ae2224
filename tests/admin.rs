//! The admin endpoint: /live, /ready (mapping, upstream, loop, shutdown), /metrics.

mod common;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{Daemon, black_hole, query, udp, upstream};
use hickory_proto::rr::RecordType;

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";

use common::http_get as get;

fn admin(d: &Daemon) -> SocketAddr {
    d.running().admin_addr().expect("admin enabled")
}

/// Polls `path` until its status is `want` or `limit` passes; returns the last body.
fn wait_status(addr: SocketAddr, path: &str, want: u16, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let (status, body) = get(addr, path);
        if status == want {
            return body;
        }
        assert!(
            t0.elapsed() < limit,
            "{path} still {status} after {limit:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the first metric line starting with `series` (name plus labels).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {series} in:\n{text}"))
}

#[test]
fn live_and_ready_with_a_reachable_upstream() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    assert_eq!(get(admin(&d), "/live"), (200, "ok\n".into()));
    wait_status(admin(&d), "/ready", 200, Duration::from_secs(3));
    assert_eq!(get(admin(&d), "/nope").0, 404);
    assert!(d.running().readiness().is_ok());
}

#[test]
fn ready_turns_503_when_the_upstream_stops_answering() {
    let up = upstream::start();
    let addr = up.addr;
    let d = Daemon::start_with(MAPPING, vec![addr], |c| {
        c.probe_interval = Duration::from_millis(200);
        c.upstream_timeout = Duration::from_millis(200);
    });
    wait_status(admin(&d), "/ready", 200, Duration::from_secs(3));
    drop(up); // the upstream goes away
    let body = wait_status(admin(&d), "/ready", 503, Duration::from_secs(3));
    assert!(body.contains("no upstream answered"), "{body}");
    assert_eq!(
        get(admin(&d), "/live").0,
        200,
        "liveness does not depend on the upstream"
    );
    // The daemon still answers its own names without an upstream.
    let r = udp(d.udp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn never_ready_when_no_upstream_answers() {
    let hole = black_hole();
    let d = Daemon::start_with(MAPPING, vec![hole.addr], |c| {
        c.probe_interval = Duration::from_millis(200);
        c.upstream_timeout = Duration::from_millis(200);
    });
    std::thread::sleep(Duration::from_millis(800));
    let (status, body) = get(admin(&d), "/ready");
    assert_eq!(status, 503);
    assert!(
        body.contains(&hole.addr.to_string()),
        "names the upstream: {body}"
    );
}

#[test]
fn forwarding_loop_is_detected_and_keeps_the_daemon_not_ready() {
    // An "upstream" that sends every query straight back to the daemon: a loop.
    let reflector = UdpSocket::bind("127.0.0.1:0").unwrap();
    let reflector_addr = reflector.local_addr().unwrap();
    let target = std::sync::Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
    {
        let target = target.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            reflector
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            while let Ok((n, _)) = reflector.recv_from(&mut buf) {
                if let Some(t) = *target.lock().unwrap() {
                    let _ = reflector.send_to(&buf[..n], t);
                }
            }
        });
    }
    // The reflector must know where to send before the daemon's loop check runs: bind a port
    // first, tell the reflector, then start the daemon on it.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    *target.lock().unwrap() = Some(listen);
    let d = Daemon::start_with(MAPPING, vec![reflector_addr], |c| {
        c.listen = vec![listen];
        c.upstream_timeout = Duration::from_millis(300);
    });
    let body = wait_status(admin(&d), "/ready", 503, Duration::from_secs(3));
    let t0 = Instant::now();
    while !get(admin(&d), "/ready").1.contains("loop") {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "loop reported: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(admin(&d), "/live").0, 200, "alive: not crash-looping");
}

#[test]
fn ready_turns_503_at_once_when_shutdown_begins() {
    // A forward in flight keeps the shutdown draining for a while (an idle daemon stops in
    // about a millisecond, too fast to watch).
    let up = common::faulty::start(|q| {
        if common::faulty::is_probe(q) {
            common::faulty::Act::Answer(1)
        } else {
            common::faulty::Act::AnswerAfter(2, Duration::from_millis(800))
        }
    });
    let mut d = Daemon::start(MAPPING, vec![up.addr]);
    let admin_addr = admin(&d);
    wait_status(admin_addr, "/ready", 200, Duration::from_secs(3));
    let udp_addr = d.udp;
    let _in_flight = std::thread::spawn(move || {
        let q = query("slow.example.org.", RecordType::A).to_vec().unwrap();
        common::udp_raw(udp_addr, &q, Duration::from_secs(3))
    });
    std::thread::sleep(Duration::from_millis(100));
    let running = d.running.take().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stopper = std::thread::spawn(move || rt.block_on(running.shutdown()));
    // During shutdown the admin endpoint still answers, with 503.
    let t0 = Instant::now();
    let mut saw_503 = false;
    while t0.elapsed() < Duration::from_secs(2) {
        match TcpStream::connect(admin_addr) {
            Ok(_) => {
                let (status, body) = get(admin_addr, "/ready");
                if status == 503 {
                    assert!(body.contains("shutting down"), "{body}");
                    saw_503 = true;
                    break;
                }
            }
            Err(_) => break,
        }
    }
    assert!(stopper.join().unwrap(), "clean shutdown");
    assert!(saw_503, "/ready reported 503 during shutdown");
}

#[test]
fn metrics_move_with_traffic_and_reloads() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let m0 = get(admin(&d), "/metrics").1;
    let local = r#"splitdns_queries_total{proto="udp",outcome="local_answer"}"#;
    let fwd = r#"splitdns_queries_total{proto="udp",outcome="forwarded"}"#;
    let tcp_local = r#"splitdns_queries_total{proto="tcp",outcome="local_answer"}"#;
    assert_eq!(metric(&m0, local), 0.0);
    for _ in 0..3 {
        udp(d.udp, &query("db-0.db.example.com.", RecordType::A));
    }
    udp(d.udp, &query("www.example.org.", RecordType::A));
    common::tcp(d.tcp, &query("db-0.db.example.com.", RecordType::A));
    let m1 = get(admin(&d), "/metrics").1;
    assert_eq!(metric(&m1, local), 3.0);
    assert_eq!(metric(&m1, fwd), 1.0);
    assert_eq!(metric(&m1, tcp_local), 1.0);
    assert!(metric(&m1, "splitdns_forward_seconds_count") >= 1.0);
    let up_label = format!(
        "splitdns_upstream_requests_total{{upstream=\"{}\"}}",
        up.addr
    );
    assert!(metric(&m1, &up_label) >= 1.0);
    assert_eq!(metric(&m1, "splitdns_mapping_entries"), 1.0);
    assert_eq!(metric(&m1, "splitdns_mapping_reloads_total"), 0.0);
    assert_eq!(metric(&m1, "splitdns_mapping_source_rejected"), 0.0);
    assert!(m1.contains("splitdns_build_info{version="));
    assert!(m1.contains("splitdns_local_answer_seconds_bucket{le="));

    let hash_before = m1
        .lines()
        .find(|l| l.starts_with("splitdns_mapping_info"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &d.mapping_path,
        "hosts:\n  a.example.com: 10.0.0.1\n  b.example.com: 10.0.0.2\n",
    )
    .unwrap();
    d.running().reload_now();
    let t0 = Instant::now();
    loop {
        let m = get(admin(&d), "/metrics").1;
        if metric(&m, "splitdns_mapping_reloads_total") == 1.0 {
            assert_eq!(metric(&m, "splitdns_mapping_entries"), 2.0);
            let hash_after = m
                .lines()
                .find(|l| l.starts_with("splitdns_mapping_info"))
                .unwrap();
            assert_ne!(hash_after, hash_before, "hash info follows the content");
            assert!(metric(&m, "splitdns_mapping_last_reload_timestamp_seconds") > 1.7e9);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&d.mapping_path, "hosts:\n  a..example.com: 10.0.0.1\n").unwrap();
    d.running().reload_now();
    let t0 = Instant::now();
    while metric(
        &get(admin(&d), "/metrics").1,
        "splitdns_mapping_reload_failures_total",
    ) < 1.0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "reload failure counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The gauge stays up while the bad source stays (the counter moved once, and stays)...
    for _ in 0..3 {
        d.running().reload_now();
        std::thread::sleep(Duration::from_millis(50));
        let m = get(admin(&d), "/metrics").1;
        assert_eq!(metric(&m, "splitdns_mapping_source_rejected"), 1.0);
        assert_eq!(metric(&m, "splitdns_mapping_reload_failures_total"), 1.0);
    }
    // ... and goes down when the source is put back to the mapping in service (nothing reloads).
    std::fs::write(
        &d.mapping_path,
        "hosts:\n  a.example.com: 10.0.0.1\n  b.example.com: 10.0.0.2\n",
    )
    .unwrap();
    d.running().reload_now();
    common::eventually(Duration::from_secs(3), "the gauge back to 0", || {
        metric(
            &get(admin(&d), "/metrics").1,
            "splitdns_mapping_source_rejected",
        ) == 0.0
    });
    assert_eq!(
        metric(
            &get(admin(&d), "/metrics").1,
            "splitdns_mapping_reloads_total"
        ),
        1.0
    );
}
