//! The `splitdns` binary itself: start-up log lines, exit codes, errors a user sees.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{query, temp_file, udp, upstream};
use hickory_proto::rr::RecordType;

fn splitdns() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_splitdns"));
    c.env_remove("RUST_LOG").stdin(Stdio::null());
    c
}

/// Runs the binary expecting it to fail at start; returns (exit code, stderr).
fn fails(args: &[&str]) -> (i32, String) {
    let out = splitdns().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts the binary and waits for its `listening on udp ADDR` line.
fn start(args: &[&str]) -> (Child, std::net::SocketAddr, mpsc::Receiver<String>) {
    let mut child = splitdns()
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no start-up log line");
        };
        if let Some(addr) = line.split("listening on udp ").nth(1) {
            return (child, addr.trim().parse().unwrap(), rx);
        }
    }
}

#[test]
fn binary_logs_its_real_port_answers_and_exits_0_on_sigterm() {
    let up = upstream::start();
    let mapping = temp_file("m.yaml", "hosts:\n  db-0.db.example.com: 10.42.0.12\n");
    let (mut child, addr, rx) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--mapping",
        mapping.to_str().unwrap(),
        "--upstream",
        &up.addr.to_string(),
    ]);
    assert_ne!(addr.port(), 0, "the real port is logged");
    let tcp_line = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        tcp_line.contains(&format!("listening on tcp {addr}")),
        "{tcp_line}"
    );
    let r = udp(addr, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
    let r = udp(addr, &query("www.example.org.", RecordType::A));
    assert_eq!(r.answers.len(), 1);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap();
    assert_eq!(code.code(), Some(0), "clean exit on SIGTERM");
}

#[test]
fn bad_mapping_at_start_exits_non_zero_naming_file_and_line() {
    let bad = temp_file(
        "bad.yaml",
        "hosts:\n  db-0.db.example.com: 10.42.0.12\n  db-1.db.example.com: 10.42.0.999\n",
    );
    let (code, err) = fails(&[
        "--listen",
        "127.0.0.1:0",
        "--mapping",
        bad.to_str().unwrap(),
        "--upstream",
        "127.0.0.1:9",
    ]);
    assert_ne!(code, 0);
    let expected = format!("{}:3:", bad.display());
    assert!(err.contains(&expected), "names file and line: {err}");
    assert!(err.contains("invalid IP address \"10.42.0.999\""), "{err}");
    assert!(!err.contains("listening on"), "nothing half-started: {err}");

    let (code, err) = fails(&[
        "--listen",
        "127.0.0.1:0",
        "--mapping",
        "/nonexistent/m.yaml",
        "--upstream",
        "127.0.0.1:9",
    ]);
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
    let mut child = splitdns()
        .env("SPLITDNS_LISTEN", "127.0.0.1:0")
        .env("SPLITDNS_MAPPING", &mapping)
        .env("SPLITDNS_UPSTREAM", up.addr.to_string())
        .env("SPLITDNS_WORKERS", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut addr = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(a) = line.split("listening on udp ").nth(1) {
            addr = Some(a.trim().parse().unwrap());
            break;
        }
    }
    let r = udp(
        addr.expect("started"),
        &query("env.example.com.", RecordType::A),
    );
    assert_eq!(r.answers.len(), 1);
    child.kill().unwrap();
    let _ = child.wait();
}
