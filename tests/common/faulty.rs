//! A scripted upstream for fault tests: UDP and TCP on one port, and for every query a test-chosen
//! behaviour (answer, delay, drop, answer wrongly, garbage, truncate, close). Health probes
//! (`. NS`) are answered at once unless the script says otherwise, so the daemon stays "ready".
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do with one query.
#[derive(Clone, Debug)]
pub enum Act {
    /// A NOERROR reply echoing the question, with one A record 192.0.2.<n>.
    Answer(u8),
    /// The same after a delay.
    AnswerAfter(u8, Duration),
    /// Say nothing (over TCP: close the connection unanswered).
    Drop,
    /// Say nothing, and over TCP keep the connection open unanswered: a black hole on both
    /// transports.
    Hold,
    /// (UDP) A reply with another ID, then 50 ms later the genuine answer 192.0.2.7.
    WrongId,
    /// (UDP) A reply with another question, then the genuine answer.
    WrongQuestion,
    /// (UDP) A reply from another source port, then the genuine answer.
    WrongPort,
    /// (UDP) Bytes that are not DNS, then the genuine answer.
    Garbage,
    /// (UDP) The query itself sent back (QR clear: not a response), then the genuine answer.
    NotResponse,
    /// (UDP) The reply cut short (half of it), then the genuine answer.
    Truncated,
    /// A reply with TC set and no answer.
    Tc,
    /// Over TCP: close the connection without answering.
    Close,
    /// The answer 192.0.2.<n> with the question's name in upper case (an upstream that does not
    /// preserve the case it was asked in).
    Upcased(u8),
}

type Script = dyn Fn(&Query) -> Act + Send + Sync;

/// One query as the scripted upstream saw it.
#[derive(Clone, Debug)]
pub struct Query {
    pub bytes: Vec<u8>,
    pub tcp: bool,
    /// Lower-cased dotted name without the trailing dot ("" for the root).
    pub name: String,
}

pub struct Faulty {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Query>>>,
    stop: Arc<AtomicBool>,
    /// Set by `restart_udp`: close the UDP port for this long.
    pause: Arc<Mutex<Option<Duration>>>,
    tcp_accepts: Arc<AtomicUsize>,
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Faulty {
    /// Closes the UDP port (the kernel then answers ICMP port unreachable) for `down`, then
    /// serves on it again: an upstream restarting.
    pub fn restart_udp(&self, down: Duration) {
        *self.pause.lock().unwrap() = Some(down);
    }

    /// Queries seen over UDP whose name is `name`.
    pub fn udp_count(&self, name: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.name == name && !q.tcp)
            .count()
    }

    /// Queries seen for `name` (lower case, no trailing dot).
    pub fn count(&self, name: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.name == name)
            .count()
    }
}

fn qname(msg: &[u8]) -> String {
    let mut at = 12;
    let mut labels = Vec::new();
    while let Some(&len) = msg.get(at) {
        if len == 0 || len & 0xC0 != 0 {
            break;
        }
        let label = msg.get(at + 1..at + 1 + len as usize).unwrap_or_default();
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len as usize;
    }
    labels.join(".")
}

/// The end of the question section of a well-formed query.
fn question_end(msg: &[u8]) -> usize {
    let mut at = 12;
    while let Some(&len) = msg.get(at) {
        at += 1 + len as usize;
        if len == 0 {
            break;
        }
    }
    (at + 4).min(msg.len())
}

/// A response to `q`: header + question, optionally one A record.
pub fn reply(q: &[u8], a: Option<u8>) -> Vec<u8> {
    let end = question_end(q);
    let mut r = q[..end].to_vec();
    r[2] |= 0x80; // QR
    r[3] = 0x80; // RA, NOERROR
    r[6..12].fill(0);
    r[5] = 1;
    if let Some(n) = a {
        r[7] = 1;
        r.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, n]);
    }
    r
}

/// Starts the scripted upstream; `script` decides per query (probes included, see `is_probe`).
pub fn start(script: impl Fn(&Query) -> Act + Send + Sync + 'static) -> Faulty {
    let script: Arc<Script> = Arc::new(script);
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tcp_accepts = Arc::new(AtomicUsize::new(0));
    let pause = Arc::new(Mutex::new(None::<Duration>));
    {
        let (script, seen, stop, pause) =
            (script.clone(), seen.clone(), stop.clone(), pause.clone());
        udp.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let mut udp = udp;
        std::thread::spawn(move || {
            let other = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                let down = pause.lock().unwrap().take();
                if let Some(down) = down {
                    drop(udp);
                    std::thread::sleep(down);
                    udp = UdpSocket::bind(addr).unwrap();
                    udp.set_read_timeout(Some(Duration::from_millis(10)))
                        .unwrap();
                }
                let Ok((n, from)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                let q = Query {
                    bytes: buf[..n].to_vec(),
                    tcp: false,
                    name: qname(&buf[..n]),
                };
                seen.lock().unwrap().push(q.clone());
                let act = script(&q);
                let udp = udp.try_clone().unwrap();
                let other = other.try_clone().unwrap();
                std::thread::spawn(move || respond_udp(&udp, &other, from, &q.bytes, act));
            }
        });
    }
    {
        let (script, seen, stop, accepts) =
            (script, seen.clone(), stop.clone(), tcp_accepts.clone());
        tcp.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((conn, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                accepts.fetch_add(1, Ordering::Relaxed);
                let (script, seen) = (script.clone(), seen.clone());
                std::thread::spawn(move || serve_tcp(conn, &*script, &seen));
            }
        });
    }
    Faulty {
        addr,
        seen,
        stop,
        pause,
        tcp_accepts,
    }
}

/// Whether a query is the daemon's health probe (`. NS`).
pub fn is_probe(q: &Query) -> bool {
    q.name.is_empty()
}

fn respond_udp(udp: &UdpSocket, other: &UdpSocket, to: SocketAddr, q: &[u8], act: Act) {
    let send = |b: &[u8]| {
        let _ = udp.send_to(b, to);
    };
    let bad_first = matches!(
        act,
        Act::WrongId
            | Act::WrongQuestion
            | Act::WrongPort
            | Act::Garbage
            | Act::Truncated
            | Act::NotResponse
    );
    match act {
        Act::Answer(n) => send(&reply(q, Some(n))),
        Act::Upcased(n) => {
            let mut r = reply(q, Some(n));
            let end = question_end(q) - 4;
            r[12..end].make_ascii_uppercase();
            send(&r)
        }
        Act::AnswerAfter(n, d) => {
            std::thread::sleep(d);
            send(&reply(q, Some(n)))
        }
        Act::Drop | Act::Hold | Act::Close => {}
        Act::WrongId => {
            let mut r = reply(q, Some(66));
            r[0] ^= 0xff;
            send(&r)
        }
        Act::WrongQuestion => {
            let mut r = reply(q, Some(66));
            r[13] ^= 0x01; // first letter of the name changes (not only its case)
            send(&r)
        }
        Act::WrongPort => {
            let _ = other.send_to(&reply(q, Some(66)), to);
        }
        Act::Garbage => send(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]),
        Act::NotResponse => send(q),
        Act::Truncated => {
            let r = reply(q, Some(66));
            send(&r[..r.len() / 2])
        }
        Act::Tc => {
            let mut r = reply(q, None);
            r[2] |= 0x02;
            send(&r)
        }
    }
    if bad_first {
        std::thread::sleep(Duration::from_millis(50));
        send(&reply(q, Some(7)));
    }
}

fn serve_tcp(mut conn: TcpStream, script: &Script, seen: &Mutex<Vec<Query>>) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while let Ok(body) = super::read_framed(&mut conn) {
        let q = Query {
            name: qname(&body),
            bytes: body,
            tcp: true,
        };
        seen.lock().unwrap().push(q.clone());
        let r = match script(&q) {
            Act::Answer(n) | Act::Upcased(n) => reply(&q.bytes, Some(n)),
            Act::AnswerAfter(n, d) => {
                std::thread::sleep(d);
                reply(&q.bytes, Some(n))
            }
            Act::Close | Act::Drop => return,
            // Read on (the next query, or the end of the connection): this one is never answered.
            Act::Hold => continue,
            Act::WrongId => {
                let mut r = reply(&q.bytes, Some(66));
                r[0] ^= 0xff;
                r
            }
            Act::WrongQuestion => {
                let mut r = reply(&q.bytes, Some(66));
                r[13] ^= 0x01;
                r
            }
            Act::Garbage | Act::WrongPort | Act::Truncated | Act::Tc | Act::NotResponse => {
                vec![0xde, 0xad, 0xbe]
            }
        };
        if super::write_framed(&mut conn, &r).is_err() {
            return;
        }
    }
}
