//! The `splitdns` binary itself: start-up log lines, exit codes, errors a user sees.

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{query, temp_file, udp, upstream};
use hickory_proto::rr::RecordType;

fn splitdns() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_splitdns"));
    // Tests run in parallel: the admin endpoint must not fight over its default port.
    c.env_remove("RUST_LOG")
        .env("SPLITDNS_ADMIN", "127.0.0.1:0")
        .stdin(Stdio::null());
    c
}

/// `--listen 127.0.0.1:0 --mapping MAPPING --upstream UPSTREAM` followed by `extra`.
fn serve_args(
    mapping: impl AsRef<std::path::Path>,
    upstream: impl ToString,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--mapping".to_owned(),
        mapping.as_ref().display().to_string(),
        "--upstream".to_owned(),
        upstream.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Runs the binary expecting it to fail at start; returns (exit code, stderr).
fn fails<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String) {
    let out = splitdns().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running daemon process; killed when dropped, so a failed test leaves nothing behind.
struct Proc {
    child: Child,
    addr: std::net::SocketAddr,
    /// The log lines up to and including `splitdns started`.
    startup: Vec<String>,
    /// Later log lines. Dropping it closes the daemon's stderr at its next line.
    rest: Option<mpsc::Receiver<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// Starts the binary and waits until it has logged `splitdns started` (every socket bound and
/// the reloader running); the UDP address comes from its `listening on udp ADDR` line.
fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Proc {
    let mut cmd = splitdns();
    cmd.args(args);
    start_cmd(cmd)
}

fn start_cmd(mut cmd: Command) -> Proc {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut proc = Proc {
        child,
        addr: "0.0.0.0:0".parse().unwrap(),
        startup: Vec::new(),
        rest: None,
    };
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("start-up log lines");
        if let Some(addr) = line.split("listening on udp ").nth(1) {
            proc.addr = addr.trim().parse().unwrap();
        }
        let done = line.contains("splitdns started");
        proc.startup.push(line);
        if done {
            proc.rest = Some(rx);
            return proc;
        }
    }
}

#[test]
fn binary_logs_its_real_port_answers_and_exits_0_on_sigterm() {
    let up = upstream::start();
    let mapping = temp_file("m.yaml", "hosts:\n  db-0.db.example.com: 10.42.0.12\n");
    let mut p = start(&serve_args(mapping, up.addr, &[]));
    let addr = p.addr;
    assert_ne!(addr.port(), 0, "the real port is logged");
    let tcp_line = format!("listening on tcp {addr}");
    assert!(
        p.startup.iter().any(|l| l.contains(&tcp_line)),
        "{:?}",
        p.startup
    );
    let r = udp(addr, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
    let r = udp(addr, &query("www.example.org.", RecordType::A));
    assert_eq!(r.answers.len(), 1);

    // Nobody reads the daemon's stderr any more, so its shutdown log lines hit a closed pipe:
    // that must not turn into a panic.
    p.rest = None;
    p.signal("-TERM");
    let code = p.child.wait().unwrap();
    assert_eq!(code.code(), Some(0), "clean exit on SIGTERM");
}

#[test]
fn bad_mapping_at_start_exits_non_zero_naming_file_and_line() {
    let bad = temp_file(
        "bad.yaml",
        "hosts:\n  db-0.db.example.com: 10.42.0.12\n  db-1.db.example.com: 10.42.0.999\n",
    );
    let (code, err) = fails(&serve_args(&bad, "127.0.0.1:9", &[]));
    assert_ne!(code, 0);
    let expected = format!("{}:3:", bad.display());
    assert!(err.contains(&expected), "names file and line: {err}");
    assert!(err.contains("invalid IP address \"10.42.0.999\""), "{err}");
    assert!(!err.contains("listening on"), "nothing half-started: {err}");

    let (code, err) = fails(&serve_args("/nonexistent/m.yaml", "127.0.0.1:9", &[]));
    assert_ne!(code, 0);
    assert!(
        err.contains("/nonexistent/m.yaml") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn forwarding_to_our_own_address_is_refused_at_start() {
    let (code, err) = fails(&[
        "--listen",
        "127.0.0.1:5398",
        "--upstream",
        "127.0.0.1:5398",
        "--mapping",
        "config/mapping.yaml",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("loop"), "{err}");
}

#[test]
fn bad_flags_are_rejected_with_a_usage_error() {
    let (code, err) = fails(&["--upstream-timeout", "soon"]);
    assert_eq!(code, 2, "clap usage error");
    assert!(err.contains("500ms"), "{err}");
    let (code, err) = fails(&["--upstream", "not-an-ip"]);
    assert_eq!(code, 2);
    assert!(err.contains("not-an-ip"), "{err}");
}

#[test]
fn env_vars_configure_the_daemon() {
    let up = upstream::start();
    let mapping = temp_file("m.yaml", "hosts:\n  env.example.com: 10.1.1.1\n");
    let mut cmd = splitdns();
    cmd.env("SPLITDNS_LISTEN", "127.0.0.1:0")
        .env("SPLITDNS_MAPPING", &mapping)
        .env("SPLITDNS_UPSTREAM", up.addr.to_string())
        .env("SPLITDNS_WORKERS", "1")
        .env("SPLITDNS_TTL", "42s");
    let p = start_cmd(cmd);
    let r = udp(p.addr, &query("env.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].ttl, 42, "SPLITDNS_TTL applied");
    assert!(
        p.startup.iter().any(|l| l.contains("workers=1")),
        "{:?}",
        p.startup
    );
}

#[test]
fn sighup_reloads_the_mapping_at_once() {
    use std::os::unix::fs::symlink;
    let up = upstream::start();
    let base = common::temp_dir();
    for (sub, ip) in [("a", "10.8.0.1"), ("b", "10.8.0.2")] {
        std::fs::create_dir(base.join(sub)).unwrap();
        std::fs::write(
            base.join(sub).join("m.yaml"),
            format!("hosts:\n  db-0.db.example.com: {ip}\n"),
        )
        .unwrap();
    }
    symlink("a", base.join("current")).unwrap();
    let mapping = base.join("current/m.yaml");
    let p = start(&serve_args(mapping, up.addr, &["--poll-interval", "1h"]));
    let addr = p.addr;
    let ip = |addr| {
        let r = udp(addr, &query("db-0.db.example.com.", RecordType::A));
        r.answers[0].data.clone()
    };
    assert_eq!(ip(addr).ip_addr(), Some("10.8.0.1".parse().unwrap()));
    // Swapping the parent directory's symlink fires no event in the watched directory, and the
    // poll is an hour away: only SIGHUP can make the daemon see it.
    symlink("b", base.join("current.tmp")).unwrap();
    std::fs::rename(base.join("current.tmp"), base.join("current")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ip(addr).ip_addr(), Some("10.8.0.1".parse().unwrap()));
    p.signal("-HUP");
    common::eventually(Duration::from_secs(1), "SIGHUP reloaded", || {
        ip(addr).ip_addr() == Some("10.8.0.2".parse().unwrap())
    });
}

#[test]
fn check_validates_a_mapping_with_exit_codes_and_line_numbers() {
    let out = splitdns()
        .args(["check", "config/mapping.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("OK: 3 names, 3 IPv4 and 1 IPv6"),
        "{stdout}"
    );

    let bad = temp_file(
        "bad.yaml",
        "hosts:\n  ok.example.com: 10.0.0.1\n  bad..example.com: 10.0.0.2\n",
    );
    let out = splitdns()
        .args(["check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3:3: invalid name", bad.display())),
        "{stderr}"
    );

    let out = splitdns()
        .args(["check", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// SIGTERM while a forwarded query waits on a slow upstream: the reply still reaches the
/// client, then the process exits 0.
#[test]
fn sigterm_drains_an_in_flight_forward_then_exits_0() {
    let slow = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let slow_addr = slow.local_addr().unwrap();
    // Answers client queries after 600 ms (probes at once, so the daemon is ready).
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        while let Ok((n, from)) = slow.recv_from(&mut buf) {
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // QR: a (NODATA) response with the question echoed
            if n > 17 {
                std::thread::sleep(Duration::from_millis(600));
            }
            let _ = slow.send_to(&reply, from);
        }
    });
    let mapping = temp_file("m.yaml", "hosts:\n  db-0.db.example.com: 10.42.0.12\n");
    let mut p = start(&serve_args(
        mapping,
        slow_addr,
        &["--upstream-timeout", "3s"],
    ));
    let addr = p.addr;
    let client = std::thread::spawn(move || {
        let q = query("slow.example.org.", RecordType::A).to_vec().unwrap();
        common::udp_raw(addr, &q, Duration::from_secs(3))
    });
    std::thread::sleep(Duration::from_millis(150));
    p.signal("-TERM");
    let reply = client
        .join()
        .unwrap()
        .expect("the in-flight forward is answered");
    assert_eq!(reply[3] & 0x0f, 0, "the upstream's NOERROR, not a SERVFAIL");
    assert_eq!(p.child.wait().unwrap().code(), Some(0));
}

#[test]
fn query_log_prints_one_line_per_query_when_enabled() {
    let up = upstream::start();
    let mapping = temp_file("m.yaml", "hosts:\n  db-0.db.example.com: 10.42.0.12\n");
    let mut p = start(&serve_args(mapping, up.addr, &["--query-log"]));
    udp(p.addr, &query("Db-0.db.example.com.", RecordType::A));
    let rest = p.rest.take().expect("the log after start-up");
    // Bounded wait: a missing line fails the test instead of hanging it.
    let logged = std::iter::from_fn(|| rest.recv_timeout(Duration::from_secs(5)).ok())
        .find(|l| l.contains("query") && l.contains("Db-0.db.example.com."));
    let line = logged.expect("a query log line");
    assert!(
        line.contains("outcome=\"local_answer\"") || line.contains("outcome=local_answer"),
        "{line}"
    );
}

/// One dispatch for both transports: a local answer, an alias-rule answer and a forwarded query
/// each give exactly one query-log line, the same over UDP and TCP but for `proto`.
#[test]
fn query_log_lines_are_the_same_over_udp_and_tcp() {
    let up = upstream::start();
    let mapping = temp_file(
        "m.yaml",
        "hosts:\n  db-0.db.example.com: 10.42.0.12\nrules:\n  - host: alias.example.com\n    result: www.example.org\n",
    );
    let mut p = start(&serve_args(mapping, up.addr, &["--query-log"]));
    let names = [
        ("Db-0.db.example.com.", "local_answer"),
        ("Alias.example.com.", "alias"),
        ("www.Example.org.", "forwarding"),
    ];
    for (name, _) in names {
        let q = query(name, RecordType::A);
        // TCP listens on the same address (checked by binary_logs_its_real_port_answers_and_exits_0_on_sigterm).
        let (u, t) = (udp(p.addr, &q), common::tcp(p.addr, &q));
        assert_eq!(u.answers.len(), 1, "{name} over UDP");
        assert_eq!(u.answers, t.answers, "{name}: the same answer over TCP");
    }
    let rest = p.rest.take().expect("the log after start-up");
    let lines: Vec<String> = std::iter::from_fn(|| rest.recv_timeout(Duration::from_secs(2)).ok())
        .filter(|l| l.contains(" query"))
        .collect();
    for (name, outcome) in names {
        let of = |proto: &str| -> Vec<String> {
            lines
                .iter()
                .filter(|l| l.contains(name) && l.contains(&format!("proto=\"{proto}\"")))
                .map(|l| {
                    // Drop the timestamp and the client's port: the rest must be equal.
                    let from = l.find(" INFO").unwrap_or(0);
                    let l = l[from..].replace(proto, "PROTO");
                    match (l.find("client="), l.find(" proto")) {
                        (Some(a), Some(b)) if a < b => format!("{}{}", &l[..a], &l[b..]),
                        _ => l,
                    }
                })
                .collect()
        };
        let (u, t) = (of("udp"), of("tcp"));
        assert_eq!(u.len(), 1, "one UDP line for {name}: {lines:#?}");
        assert_eq!(t.len(), 1, "one TCP line for {name}: {lines:#?}");
        assert_eq!(u, t, "{name}");
        assert!(
            u[0].contains(&format!("outcome=\"{outcome}\""))
                || u[0].contains(&format!("outcome={outcome}")),
            "{}",
            u[0]
        );
    }
}

/// SIGTERM with a UDP and a TCP forward in flight at once (the upstream never answers): both
/// drains share one deadline, so the process is gone within `--shutdown-grace`, not twice it.
#[test]
fn sigterm_with_udp_and_tcp_in_flight_takes_at_most_the_grace() {
    let hole = common::black_hole();
    let mapping = temp_file("m.yaml", "hosts:\n  db-0.db.example.com: 10.42.0.12\n");
    let mut p = start(&serve_args(
        mapping,
        hole.addr,
        &["--upstream-timeout", "20s", "--shutdown-grace", "1s"],
    ));
    let addr = p.addr;
    let q = query("hole.example.org.", RecordType::A).to_vec().unwrap();
    let udp_q = q.clone();
    let _udp_client =
        std::thread::spawn(move || common::udp_raw(addr, &udp_q, Duration::from_secs(5)));
    let _tcp_client = std::thread::spawn(move || {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        common::write_framed(&mut s, &q).unwrap();
        let mut b = [0u8; 2];
        let _ = s.read(&mut b);
    });
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    p.signal("-TERM");
    let code = p.child.wait().unwrap();
    let took = t0.elapsed();
    assert_eq!(code.code(), Some(0));
    common::assert_between(
        took,
        Duration::from_millis(900),
        Duration::from_millis(1600),
        "the in-flight forwards get the grace period, once",
    );
    let rest: Vec<String> = p.rest.take().unwrap().try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

/// An idle daemon has every thread blocked without a timeout (no tick to notice a stop flag):
/// SIGTERM still wakes them all at once.
#[test]
fn sigterm_stops_an_idle_daemon_at_once() {
    let up = upstream::start();
    let mapping = temp_file("m.yaml", "hosts:\n  db-0.db.example.com: 10.42.0.12\n");
    let mut p = start(&serve_args(mapping, up.addr, &["--workers", "4"]));
    let r = udp(p.addr, &query("www.example.org.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
    std::thread::sleep(Duration::from_millis(500));
    let t0 = std::time::Instant::now();
    p.signal("-TERM");
    assert_eq!(p.child.wait().unwrap().code(), Some(0));
    common::assert_under(t0.elapsed(), Duration::from_millis(300), "prompt");
}

/// The operator's image contract: `splitdns PATH` reads its JSON config (listen, resolver,
/// rules), says which file it serves and which fields it ignores, answers, and stops cleanly;
/// a broken config is an error naming file, line and column; `check` reads it too.
#[test]
fn the_operator_config_as_the_only_argument() {
    let up = upstream::start();
    up.set_a(
        "kdb-1.kdb.ns.svc.cluster.local",
        &[Ipv4Addr::new(10, 42, 0, 11)],
        5,
    );
    let json = format!(
        r#"{{"listen": "127.0.0.1:0", "resolver": "{}", "isOpenshift": false, "rules": [
            {{"host": "kdb-([0-9]+)\\.my-domain\\.com", "result": "kdb-${{1}}.kdb.ns.svc.cluster.local", "regex": true}},
            {{"host": "far-pod0.my-domain.com", "result": "10.1.2.3"}}]}}"#,
        up.addr
    );
    let conf = temp_file("dns.conf", &json);
    let path = conf.display().to_string();
    let mut p = start(&[path.as_str()]);
    let loaded = p
        .startup
        .iter()
        .find(|l| l.contains("mapping loaded"))
        .expect("a load line");
    assert!(
        loaded.contains(&format!("{path} (operator JSON config)")) && loaded.contains("rules=2"),
        "{loaded}"
    );
    assert!(
        p.startup
            .iter()
            .any(|l| l.contains("ignoring fields") && l.contains("isOpenshift")),
        "one warning for the unknown field: {:?}",
        p.startup
    );
    let r = udp(p.addr, &query("KDB-1.my-domain.com.", RecordType::A));
    assert_eq!(common::ipv4s(&r), [Ipv4Addr::new(10, 42, 0, 11)]);
    let r = udp(p.addr, &query("far-pod0.my-domain.com.", RecordType::A));
    assert_eq!(common::ipv4s(&r), [Ipv4Addr::new(10, 1, 2, 3)]);
    let r = udp(p.addr, &query("www.example.org.", RecordType::A));
    assert_eq!(
        common::ipv4s(&r),
        [Ipv4Addr::new(192, 0, 2, 1)],
        "forwarded"
    );
    p.rest = None;
    p.signal("-TERM");
    assert_eq!(p.child.wait().unwrap().code(), Some(0));

    let out = splitdns().args(["check", &path]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("OK: operator config: 2 rules"), "{said}");
    assert!(said.contains("ignored fields: \"isOpenshift\""), "{said}");

    let bad = temp_file(
        "dns.conf",
        "{\"resolver\": \"10.96.0.10\",\n \"rules\": [{\"host\": \"kdb-(\", \"result\": \"x.y\", \"regex\": true}]}",
    );
    let bad_path = bad.display().to_string();
    let (code, err) = fails(&[bad_path.as_str()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{bad_path}:2:21: rule 1 (host \"kdb-(\"): invalid regular expression"
        )),
        "{err}"
    );
    let out = splitdns().args(["check", &bad_path]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (code, err) = fails(&[path.as_str(), "--mapping", "config/mapping.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("not both"), "{err}");
}
