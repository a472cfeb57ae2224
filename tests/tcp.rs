//! TCP per RFC 7766: pipelining answered out of order, idle timeout, queries per connection,
//! and idle or slow-loris connections that cannot lock anyone out.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::faulty::{self, Act, is_probe};
use common::{Daemon, query, tcp, udp};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";

fn send(s: &mut TcpStream, msg: &Message) {
    common::write_framed(s, &msg.to_vec().unwrap()).unwrap();
}

fn recv(s: &mut TcpStream) -> Option<Message> {
    Message::from_vec(&common::read_framed(s).ok()?).ok()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn pipelined_queries_are_answered_out_of_order() {
    let up = faulty::start(|q| {
        if q.name == "slow.example.org" {
            Act::AnswerAfter(5, Duration::from_millis(500))
        } else if is_probe(q) {
            Act::Answer(1)
        } else {
            Act::Answer(2)
        }
    });
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut s = connect(d.tcp);
    let mut slow = query("slow.example.org.", RecordType::A);
    slow.metadata.id = 1;
    let mut fast_fwd = query("fast.example.org.", RecordType::A);
    fast_fwd.metadata.id = 2;
    let mut local = query("db-0.db.example.com.", RecordType::A);
    local.metadata.id = 3;
    for m in [&slow, &fast_fwd, &local] {
        send(&mut s, m);
    }
    let order: Vec<u16> = (0..3)
        .map(|_| recv(&mut s).expect("an answer").metadata.id)
        .collect();
    assert_eq!(order.len(), 3);
    assert_eq!(
        *order.last().unwrap(),
        1,
        "the slow forward comes last: {order:?}"
    );
}

#[test]
fn idle_connections_are_closed() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.tcp_idle_timeout = Duration::from_millis(300)
    });
    let mut s = connect(d.tcp);
    let t0 = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed by the server");
    common::assert_between(
        t0.elapsed(),
        Duration::from_millis(250),
        Duration::from_secs(2),
        "closed by the idle timeout",
    );
}

#[test]
fn connection_closes_after_max_queries_having_answered_them_all() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| c.tcp_max_queries = 3);
    let mut s = connect(d.tcp);
    for _ in 0..3 {
        send(&mut s, &query("db-0.db.example.com.", RecordType::A));
    }
    for _ in 0..3 {
        assert_eq!(recv(&mut s).expect("answered").answers.len(), 1);
    }
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "then closed");
}

#[test]
fn a_thousand_slow_loris_connections_do_not_lock_out_udp_or_other_tcp_clients() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start(MAPPING, vec![up.addr]);
    // 1000 connections that send half a length prefix and then nothing.
    let loris: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(d.tcp).unwrap();
            let _ = s.write_all(&[0x00]);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = common::under(Duration::from_millis(200), "UDP not delayed", || {
        udp(d.udp, &query("db-0.db.example.com.", RecordType::A))
    });
    assert_eq!(r.answers.len(), 1);
    let r = common::under(Duration::from_secs(1), "a new TCP client is served", || {
        tcp(d.tcp, &query("db-0.db.example.com.", RecordType::A))
    });
    assert_eq!(r.answers.len(), 1);
    drop(loris);
}

#[test]
fn a_64k_tcp_message_is_read_whole_and_answered() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let mut q = query("db-0.db.example.com.", RecordType::A)
        .to_vec()
        .unwrap();
    q.resize(u16::MAX as usize, 0xAB); // trailing octets after the question are ignored
    let mut s = connect(d.tcp);
    common::write_framed(&mut s, &q).unwrap();
    let r = recv(&mut s).expect("answered");
    assert_eq!(r.answers.len(), 1);
}

/// One dispatch for both transports: the same queries over UDP and over TCP are counted under
/// the same outcomes (local answer, NODATA, NOTIMP, FORMERR, REFUSED, alias, forwarded, and
/// SERVFAIL from an upstream that never answers).
#[test]
fn udp_and_tcp_count_the_same_outcomes_for_the_same_queries() {
    let up = faulty::start(|q| {
        if q.name == "silent.example.org" {
            Act::Drop
        } else {
            Act::Answer(7)
        }
    });
    let d = Daemon::start_with(
        "hosts:\n  db-0.db.example.com: 10.42.0.12\nrules:\n  - host: alias.example.com\n    result: www.example.org\n",
        vec![up.addr],
        |c| c.upstream_timeout = Duration::from_millis(600),
    );
    let mut notimp = query("db-0.db.example.com.", RecordType::A);
    notimp.metadata.op_code = hickory_proto::op::OpCode::Notify;
    let raw: Vec<Vec<u8>> = vec![
        query("db-0.db.example.com.", RecordType::A)
            .to_vec()
            .unwrap(),
        query("DB-0.db.example.com.", RecordType::AAAA)
            .to_vec()
            .unwrap(),
        notimp.to_vec().unwrap(),
        // QDCOUNT 0: FORMERR.
        common::raw_message().id(0x1234).build(),
        query("db-0.db.example.com.", RecordType::AXFR)
            .to_vec()
            .unwrap(),
        query("alias.example.com.", RecordType::A).to_vec().unwrap(),
        query("www.example.org.", RecordType::A).to_vec().unwrap(),
        query("silent.example.org.", RecordType::A)
            .to_vec()
            .unwrap(),
    ];
    for q in &raw {
        let u = common::udp_raw(d.udp, q, Duration::from_secs(5)).expect("a UDP reply");
        let t = common::tcp_raw(d.tcp, q);
        assert_eq!(u[..2], q[..2], "the query's ID over UDP");
        assert_eq!(
            u[2..4],
            t[2..4],
            "the same flags and rcode over UDP and TCP for {q:02x?}"
        );
    }
    let totals = d.stats();
    assert_eq!(totals.udp, totals.tcp, "{totals:?}");
    use splitdns::dns::answer::Outcome::*;
    for (outcome, n) in [
        (Answer, 2),
        (NoData, 1),
        (NotImp, 1),
        (FormErr, 1),
        (Refused, 1),
        (Forwarded, 1),
        (ServFail, 1),
    ] {
        assert_eq!(totals.udp[outcome as usize], n, "{outcome:?}: {totals:?}");
    }
}

/// A client that pipelines queries and never reads a reply. Small socket buffers on our side
/// (set before connecting), so that the daemon's writes stall after a few KiB.
struct NonReader {
    s: TcpStream,
    frame: Vec<u8>,
    /// Octets of the current frame written (whole frames only, so the framing stays intact and
    /// the daemon never closes it for garbage).
    at: usize,
}

impl NonReader {
    fn connect(addr: SocketAddr, name: &str) -> NonReader {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.set_send_buffer_size(16 << 10).unwrap();
        s.connect(&addr.into()).unwrap();
        let s: TcpStream = s.into();
        s.set_nonblocking(true).unwrap();
        let frame = common::framed(&query(name, RecordType::A).to_vec().unwrap());
        let mut c = NonReader { s, frame, at: 0 };
        let _ = c.top_up();
        c
    }

    /// Writes more queries until the socket would block (64 KiB at most); `Err` once the daemon
    /// has closed the connection.
    fn top_up(&mut self) -> std::io::Result<()> {
        // Frames from where the last write stopped.
        let batch: Vec<u8> = self.frame[self.at..]
            .iter()
            .chain(self.frame.iter().cycle())
            .copied()
            .take(64 << 10)
            .collect();
        let mut written = 0;
        while written < batch.len() {
            match self.s.write(&batch[written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.at = (self.at + written) % self.frame.len();
        Ok(())
    }
}

#[test]
fn a_client_that_does_not_take_its_replies_is_cut_off_after_the_write_timeout() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.tcp_write_timeout = Duration::from_millis(500);
        // Neither the idle timeout nor the query limit: only the write timeout closes these.
        c.tcp_idle_timeout = Duration::from_secs(60);
        c.tcp_max_queries = 1_000_000;
        c.shutdown_grace = Duration::from_secs(1);
    });
    // Local answers (sent by the reader) and forwarded ones (sent by the forward tasks).
    for name in ["db-0.db.example.com.", "www.example.org."] {
        let t0 = Instant::now();
        let mut c = NonReader::connect(d.tcp, name);
        common::eventually(
            Duration::from_secs(15),
            &format!("a client not reading {name} answers closed"),
            || c.top_up().is_err(),
        );
        common::assert_not_before(
            t0.elapsed(),
            Duration::from_millis(500),
            "not before the write timeout",
        );
    }
    // The daemon still serves.
    let r = tcp(d.tcp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn with_every_slot_held_by_clients_that_never_read_a_new_client_is_answered() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        assert_eq!(c.tcp_max_connections, 256, "the default");
        // Only eviction may free a slot here: no write or idle timeout, no query limit.
        c.tcp_write_timeout = Duration::from_secs(120);
        c.tcp_idle_timeout = Duration::from_secs(120);
        c.tcp_max_queries = 1_000_000;
        c.shutdown_grace = Duration::from_secs(1);
    });
    // 256 connections pipelining local and forwarded queries, none reading, and going on
    // pipelining (from another thread) while new clients come.
    let flood: Vec<NonReader> = (0..256)
        .map(|i| {
            let name = if i % 2 == 0 {
                "db-0.db.example.com."
            } else {
                "www.example.org."
            };
            NonReader::connect(d.tcp, name)
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pipelining = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut flood = flood;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for c in &mut flood {
                    let _ = c.top_up();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..8 {
        let t0 = Instant::now();
        let mut s = connect(d.tcp);
        let mut q = query("db-0.db.example.com.", RecordType::A);
        q.metadata.id = 100 + i;
        send(&mut s, &q);
        let r = recv(&mut s).expect("a new client is answered");
        assert_eq!((r.metadata.id, r.answers.len()), (100 + i, 1));
        // Within a second, measured; a generous bound for a loaded CI machine.
        common::assert_under(
            t0.elapsed(),
            Duration::from_secs(3),
            &format!("new client {i}"),
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    pipelining.join().unwrap();
}

/// `--tcp-memory 2MiB`: 1 MiB of it is the 256 connections' own allowances, 1 MiB the shared
/// pool. A forward of a 60,000-octet query is charged the query, the forwarder's three copies
/// and a full reply (305,537 octets): three fit in the pool, never four, however many clients
/// pipeline them. A client asking an ordinary question meanwhile is still answered at once: a
/// connection holding the pool without progress is closed for it.
#[test]
fn the_memory_budget_bounds_the_work_in_flight_and_a_hog_never_blocks_others() {
    let up = faulty::start(|q| {
        if q.name.starts_with("big-") {
            Act::AnswerAfter(1, Duration::from_secs(6))
        } else {
            Act::Answer(2)
        }
    });
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.tcp_memory = 2 << 20;
        c.upstream_timeout = Duration::from_secs(10);
        c.shutdown_grace = Duration::from_secs(1);
    });
    let big_names = || {
        let seen = up.seen.lock().unwrap();
        let mut names: Vec<String> = seen
            .iter()
            .filter(|q| q.name.starts_with("big-"))
            .map(|q| q.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names.len()
    };
    // Five clients, three 60,000-octet queries each, pipelined.
    let mut hogs: Vec<TcpStream> = (0..5)
        .map(|h| {
            let mut s = connect(d.tcp);
            for i in 0..3 {
                let mut q = query(&format!("big-{h}-{i}.example.org."), RecordType::A)
                    .to_vec()
                    .unwrap();
                q.resize(60_000, 0xAB);
                common::write_framed(&mut s, &q).unwrap();
            }
            s
        })
        .collect();
    common::eventually(Duration::from_secs(5), "three forwards started", || {
        big_names() >= 3
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        big_names(),
        3,
        "the budget admits three large forwards, no more"
    );

    // An ordinary client: a local answer and a forwarded one, long before the hogs' answers.
    let t0 = Instant::now();
    let r = tcp(d.tcp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
    let r = tcp(d.tcp, &query("www.example.org.", RecordType::A));
    assert_eq!(common::first_a(&r), Some("192.0.2.2".parse().unwrap()));
    common::assert_under(
        t0.elapsed(),
        Duration::from_secs(4),
        "not held up by the hogs' 6 s upstream",
    );
    // ... which cost a hog its connection: one without progress was closed to make room.
    let closed = hogs
        .iter_mut()
        .map(|s| {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Ok(n) => n == 0,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        })
        .filter(|closed| *closed)
        .count();
    assert!(closed >= 1, "a hog was disconnected");
}

#[test]
fn slow_bodies_and_empty_messages_neither_stall_nor_slow_anyone() {
    let up = faulty::start(|_| Act::Answer(1));
    let d = Daemon::start_with(MAPPING, vec![up.addr], |c| {
        c.tcp_write_timeout = Duration::from_millis(500);
        c.shutdown_grace = Duration::from_secs(1);
    });
    // 50 connections announce 65,535 octets and send 100.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(d.tcp);
            s.write_all(&[0xFF, 0xFF]).unwrap();
            s.write_all(&[0u8; 100]).unwrap();
            s
        })
        .collect();
    // 10 send a zero-length message.
    let mut empty: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = connect(d.tcp);
            s.write_all(&[0, 0]).unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    let r = tcp(d.tcp, &query("db-0.db.example.com.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
    let r = tcp(d.tcp, &query("www.example.org.", RecordType::A));
    assert_eq!(r.answers.len(), 1);
    common::assert_under(t0.elapsed(), Duration::from_secs(2), "answered beside them");
    // Every one of them is closed: the empty ones at once, the slow ones after the write
    // timeout (not the 10 s idle timeout).
    for s in empty.iter_mut().chain(slow.iter_mut()) {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0, "closed by the server");
    }
    common::assert_under(t0.elapsed(), Duration::from_secs(8), "all closed");
}
