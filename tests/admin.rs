//! The admin endpoint: /live, /ready (mapping, upstream, loop, shutdown), /metrics.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Daemon, black_hole, query, udp, upstream};
use hickory_proto::rr::RecordType;
use socket2::{Domain, Socket, Type};

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";

use common::http_get as get;

fn admin(d: &Daemon) -> SocketAddr {
    d.running().admin_addr().expect("admin enabled")
}

/// Polls `path` until its status is `want` or `limit` passes; returns the last body.
fn wait_status(addr: SocketAddr, path: &str, want: u16, limit: Duration) -> String {
    common::eventually_ok(limit, &format!("{path} {want}"), || match get(addr, path) {
        (status, body) if status == want => Ok(body),
        (status, body) => Err(format!("still {status}: {body}")),
    })
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
    // A port free for UDP and TCP alike (the daemon binds both): a UDP port alone may be the
    // local port of some TCP client socket of another test running at the same time.
    let port = common::black_hole().addr.port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    *target.lock().unwrap() = Some(listen);
    let d = Daemon::start_with(MAPPING, vec![reflector_addr], |c| {
        c.listen = vec![listen];
        c.upstream_timeout = Duration::from_millis(300);
    });
    wait_status(admin(&d), "/ready", 503, Duration::from_secs(3));
    common::eventually_ok(Duration::from_secs(3), "loop reported", || {
        match get(admin(&d), "/ready").1 {
            body if body.contains("loop") => Ok(()),
            body => Err(body),
        }
    });
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
    // Some(body) once /ready says 503; None if the endpoint is gone first.
    let during =
        common::eventually_ok(
            Duration::from_secs(2),
            "/ready 503",
            || match TcpStream::connect(admin_addr) {
                Ok(_) => match get(admin_addr, "/ready") {
                    (503, body) => Ok(Some(body)),
                    (status, _) => Err(status),
                },
                Err(_) => Ok(None),
            },
        );
    assert!(stopper.join().unwrap(), "clean shutdown");
    let body = during.expect("/ready reported 503 during shutdown");
    assert!(body.contains("shutting down"), "{body}");
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
    common::write_atomic(
        &d.mapping_path,
        "hosts:\n  a.example.com: 10.0.0.1\n  b.example.com: 10.0.0.2\n",
    );
    d.running().reload_now();
    // A scrape is not a transaction: the reload is counted just before the new mapping is
    // published (src/mapping/reload.rs), so wait for both.
    let m = common::eventually_ok(Duration::from_secs(3), "the reload in metrics", || {
        let m = get(admin(&d), "/metrics").1;
        if metric(&m, "splitdns_mapping_reloads_total") == 1.0
            && metric(&m, "splitdns_mapping_entries") == 2.0
        {
            Ok(m)
        } else {
            Err("")
        }
    });
    let hash_after = m
        .lines()
        .find(|l| l.starts_with("splitdns_mapping_info"))
        .unwrap();
    assert_ne!(hash_after, hash_before, "hash info follows the content");
    assert!(metric(&m, "splitdns_mapping_last_reload_timestamp_seconds") > 1.7e9);
    common::write_atomic(&d.mapping_path, "hosts:\n  a..example.com: 10.0.0.1\n");
    d.running().reload_now();
    common::eventually(Duration::from_secs(3), "reload failure counted", || {
        metric(
            &get(admin(&d), "/metrics").1,
            "splitdns_mapping_reload_failures_total",
        ) >= 1.0
    });
    // The gauge stays up while the bad source stays (the counter moved once, and stays)...
    for _ in 0..3 {
        d.running().reload_now();
        std::thread::sleep(Duration::from_millis(50));
        let m = get(admin(&d), "/metrics").1;
        assert_eq!(metric(&m, "splitdns_mapping_source_rejected"), 1.0);
        assert_eq!(metric(&m, "splitdns_mapping_reload_failures_total"), 1.0);
    }
    // ... and goes down when the source is put back to the mapping in service (nothing reloads).
    common::write_atomic(
        &d.mapping_path,
        "hosts:\n  a.example.com: 10.0.0.1\n  b.example.com: 10.0.0.2\n",
    );
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

// --- The endpoint cannot be stalled (issue 19) ---------------------------------------------

/// A counter of the admin endpoint's own connections, by how they ended.
fn ended(addr: SocketAddr, outcome: &str) -> f64 {
    metric(
        &get(addr, "/metrics").1,
        &format!("splitdns_admin_connections_total{{outcome=\"{outcome}\"}}"),
    )
}

/// Connections the endpoint serves at once (from its own metrics, not a copy of the constant).
fn slots(addr: SocketAddr) -> usize {
    metric(&get(addr, "/metrics").1, "splitdns_admin_connection_slots") as usize
}

/// A connection that has sent the start of a request and will never finish its headers. (The
/// server may have evicted it already, the write failing: the caller sees it closed.)
fn slow_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n");
    s
}

/// A connection from `src` (any of 127/8 on Linux), as kubelet's come from the node's address.
fn connect_from(src: [u8; 4], addr: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    s.into()
}

/// `GET path` from `src`: (status, body), within 5 s.
fn get_from(src: [u8; 4], addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect_from(src, addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = outcome(&mut s, Duration::from_secs(5)).expect("answered within 5 s");
    let text = String::from_utf8_lossy(&got).into_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status_of(&got).unwrap_or(0), body)
}

/// What the server did with a connection, waiting up to `within`: the bytes it sent before
/// closing it (empty: closed without an answer), or None if it is still open then.
fn outcome(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            // A reset: closed (hyper closes with unread bytes in the socket, which sends RST).
            Err(_) => return Some(got),
        }
    }
}

/// Whether the server has closed `s` (without waiting).
fn closed(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let gone = match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    gone
}

/// The HTTP status at the start of `resp`, if any.
fn status_of(resp: &[u8]) -> Option<u16> {
    std::str::from_utf8(resp.get(9..12)?).ok()?.parse().ok()
}

#[test]
fn headers_that_never_end_are_cut_off_by_the_header_timeout() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let a = admin(&d);
    // One connection that sends nothing, one that sends a header line every 100 ms forever.
    let mut silent = TcpStream::connect(a).unwrap();
    let mut trickler = slow_client(a);
    let mut i = 0;
    let trickle_end = common::eventually_ok(
        Duration::from_secs(20),
        "the trickling connection closed",
        || {
            i += 1;
            if write!(trickler, "X-{i}: y\r\n").is_err() {
                return Ok(Vec::new()); // closed under our writes (a reset)
            }
            outcome(&mut trickler, Duration::from_millis(100)).ok_or("")
        },
    );
    assert_eq!(trickle_end, Vec::new(), "closed, with no answer");
    assert_eq!(
        outcome(&mut silent, Duration::from_secs(20)),
        Some(Vec::new()),
        "a silent connection is closed too, with no answer"
    );
    // What closed them was the header timeout (not the whole-request bound, not an error).
    common::eventually(
        Duration::from_secs(5),
        "two header timeouts counted",
        || ended(a, "header_timeout") >= 2.0,
    );
    assert_eq!(ended(a, "timeout"), 0.0);
    // A client that takes a moment over its headers (well inside the timeout) is still served.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(b"GET /live HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(b"Host: x\r\n\r\n").unwrap();
    let got = outcome(&mut s, Duration::from_secs(5)).expect("answered and closed");
    assert_eq!(
        status_of(&got),
        Some(200),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn live_is_answered_with_more_slow_connections_than_slots() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let a = admin(&d);
    let n = 100;
    let slots = slots(a);
    assert!(
        n > 2 * slots,
        "the test needs more connections ({n}) than slots ({slots})"
    );
    // An attacker that keeps `n` slow connections open, opening a new one for each the server
    // closes (what slow-loris tools do), so every slot is always taken by a young one.
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..n).map(|_| slow_client(a)).collect();
            let mut opened = n;
            while !stop.load(Ordering::Relaxed) {
                for c in conns.iter_mut() {
                    if closed(c) {
                        *c = slow_client(a);
                        opened += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            opened
        })
    };
    // Metrics are read from a third address (as Prometheus's pod has its own): a connection
    // from the flood's address could itself be evicted by the flood.
    let metrics = || get_from([127, 0, 0, 3], a, "/metrics").1;
    let evicted = r#"splitdns_admin_connections_total{outcome="evicted"}"#;
    common::eventually(
        Duration::from_secs(10),
        "slots filled by the attacker",
        || metric(&metrics(), evicted) >= (n - slots) as f64,
    );
    // The probes come from another address, as kubelet's come from the node's: the flood's
    // address holds the most slots, so only its own connections are evicted, however fast it
    // reconnects. (A client sharing the flood's address and slow to send its request could
    // lose its connection to such a flood; see Live::evict.)
    for _ in 0..10 {
        // get_from gives up after 5 s: "promptly" with a lot of room.
        assert_eq!(get_from([127, 0, 0, 2], a, "/live"), (200, "ok\n".into()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = metrics();
    assert!(
        metric(&m, "splitdns_admin_connections_open") <= slots as f64,
        "open connections stay within the slots:\n{m}"
    );
    stop.store(true, Ordering::Relaxed);
    let opened = attacker.join().unwrap();
    assert!(
        opened > n,
        "the server closed attackers' connections ({opened} opened)"
    );
    // The DNS side never noticed.
    let r = udp(d.udp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn a_new_connection_evicts_the_oldest_when_every_slot_is_taken() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let a = admin(&d);
    let slots = slots(a);
    let extra = 8;
    let before = ended(a, "evicted");
    // Opened one after the other: the kernel hands them to accept() in this order.
    let mut conns: Vec<TcpStream> = (0..slots + extra).map(|_| slow_client(a)).collect();
    // The oldest are closed to make room, without an answer ...
    common::eventually(Duration::from_secs(5), "the oldest closed", || {
        conns[..extra].iter_mut().all(closed)
    });
    // ... and the others were kept: each can still finish its request and get the answer
    // (well inside the header timeout: they were opened a moment ago).
    for c in &mut conns[extra..] {
        c.write_all(b"\r\n").unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate().skip(extra) {
        let got = outcome(c, Duration::from_secs(5)).expect("answered and closed");
        assert_eq!(
            status_of(&got),
            Some(200),
            "connection {i} of {}: {}",
            slots + extra,
            String::from_utf8_lossy(&got)
        );
    }
    for c in &mut conns[..extra] {
        assert_eq!(outcome(c, Duration::from_secs(1)), Some(Vec::new()));
    }
    common::eventually(Duration::from_secs(5), "evictions counted", || {
        ended(a, "evicted") - before >= extra as f64
    });
    assert_eq!(ended(a, "rejected"), 0.0, "every new connection got a slot");
}

#[test]
fn bad_input_is_refused_or_closed_and_the_endpoint_keeps_serving() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let a = admin(&d);
    let mut garbage = vec![0u8; 4096];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    garbage.extend_from_slice(b"\r\n\r\n");
    let long_header = format!(
        "GET /live HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /live HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..500)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect::<String>()
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("binary garbage", garbage),
        (
            "a TLS ClientHello",
            vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
        ),
        (
            "an HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("a 1 MiB header", long_header.into_bytes()),
        ("500 headers", many_headers.into_bytes()),
        ("a 64 KiB URI", long_uri.into_bytes()),
        (
            "a bad header line",
            b"GET /live HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
        ),
        (
            "a bad version",
            b"GET /live HTTP/7.3\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ];
    for (what, bytes) in &cases {
        let mut s = TcpStream::connect(a).unwrap();
        // The server may close while we are still sending: that is an answer too.
        let _ = s.write_all(bytes);
        let got = outcome(&mut s, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{what}: still open after 10 s"));
        if let Some(status) = status_of(&got) {
            assert!(
                (400..500).contains(&status),
                "{what}: {}",
                String::from_utf8_lossy(&got)
            );
        }
        assert_eq!(get(a, "/live").0, 200, "still serving after {what}");
    }
    assert!(ended(a, "bad_request") >= 4.0, "refused as bad requests");

    // A body sent slowly, never read: the answer comes at once, the connection is closed.
    for (method, want) in [("POST", 405), ("GET", 200)] {
        let mut s = TcpStream::connect(a).unwrap();
        write!(
            s,
            "{method} /live HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nsome"
        )
        .unwrap();
        let got = common::eventually_ok(
            Duration::from_secs(10),
            &format!("{method} with a slow body answered or closed"),
            || {
                if s.write_all(b"x").is_err() {
                    return Ok(outcome(&mut s, Duration::from_secs(1)));
                }
                outcome(&mut s, Duration::from_millis(100))
                    .map(Some)
                    .ok_or("")
            },
        );
        let got = got.unwrap_or_else(|| panic!("{method} with a slow body: still open"));
        if !got.is_empty() {
            assert_eq!(
                status_of(&got),
                Some(want),
                "{}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    assert_eq!(get(a, "/live"), (200, "ok\n".into()));
    let r = udp(d.udp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn a_flood_from_one_address_evicts_its_own_connections_first() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let a = admin(&d);
    let slots = slots(a);
    // A "kubelet" on another loopback address (Linux routes all of 127/8 to lo), slow to send
    // its request: it connects first, so it is the oldest connection of all.
    let mut kubelet = connect_from([127, 0, 0, 2], a);
    // Then a flood from 127.0.0.1, more than every slot.
    let mut flood: Vec<TcpStream> = (0..slots + 8).map(|_| slow_client(a)).collect();
    common::eventually(Duration::from_secs(5), "the flood's oldest closed", || {
        flood[..8].iter_mut().all(closed)
    });
    // The oldest connection of all was kept: the flood paid for its own excess.
    kubelet
        .write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = outcome(&mut kubelet, Duration::from_secs(5)).expect("answered and closed");
    assert_eq!(
        status_of(&got),
        Some(200),
        "{}",
        String::from_utf8_lossy(&got)
    );
}
