//! Background upstream probes (health and readiness).
//!
//! Probe: `. IN NS` with RD, over UDP, to each upstream; any well-formed reply with the ID of a
//! probe we sent and the probe's question counts as "answering" (even SERVFAIL or REFUSED: the
//! server is there). Each upstream has its own socket and schedule, all served by one thread,
//! so probes run concurrently. An upstream that is up is probed every `--probe-interval`, a round being a few
//! copies on the attempt model's back-off until one is answered or the upstream timeout passes;
//! a round that goes unanswered for the silence window marks it down (the same rule as for
//! client queries, [`super::health`]). A down upstream is probed every [`DOWN_PROBE`], each probe
//! with its own ID and all of them awaited at once, so the first reply after it comes back marks
//! it up, and the relays re-send what waits, within [`DOWN_PROBE`] plus a round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::attempt::{RTO_INITIAL, backoff, reply_matches};
use super::health::{Silence, UpstreamHealth};
use crate::lifecycle::{Stop, Threads};

/// How often a down upstream is probed.
pub(crate) const DOWN_PROBE: Duration = Duration::from_millis(50);
/// Probe IDs remembered per upstream: a reply to any of the last few probes counts.
const RECENT: usize = 16;

/// The `. IN NS` probe query with the given ID.
fn probe_query(id: u16) -> [u8; 17] {
    let i = id.to_be_bytes();
    [
        i[0], i[1], 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1,
    ]
}

/// Probe state of one upstream.
struct Watch {
    socket: std::net::UdpSocket,
    recent: [Option<u16>; RECENT],
    next_slot: usize,
    silence: Silence,
    /// Current round: when it started and how many copies it sent (`None`: between rounds).
    round: Option<(Instant, usize)>,
    /// When the next copy (or, between rounds, the next round) is due.
    next_at: Instant,
}

/// The prober: one thread for all upstreams, waiting in `epoll` until a reply or the next
/// deadline (a probe is due, a round times out), never on a tick. (On the tokio runtime a
/// 5-second sleep costs three wake-ups, as its timer wheel cascades; an idle sidecar should
/// wake only to probe.)
struct Prober {
    health: Arc<UpstreamHealth>,
    interval: Duration,
    timeout: Duration,
    poll: Poll,
    waker: Arc<Waker>,
    stopping: Arc<AtomicBool>,
}

/// The running prober thread.
pub(crate) struct ProberHandle {
    threads: Threads,
}

impl ProberHandle {
    /// After the stop (which wakes it): awaits the prober thread until `deadline`.
    pub(crate) async fn shutdown(self, deadline: std::time::Instant) -> bool {
        self.threads.join(deadline).await
    }
}

/// Starts the prober thread: each of `health`'s upstreams probed every `interval`, a round
/// unanswered for `timeout` given up.
pub(crate) fn spawn(
    health: Arc<UpstreamHealth>,
    interval: Duration,
    timeout: Duration,
    stop: &Stop,
) -> std::io::Result<ProberHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let stopping = Arc::new(AtomicBool::new(false));
    let prober = Prober {
        health,
        interval,
        timeout,
        poll,
        waker: waker.clone(),
        stopping: stopping.clone(),
    };
    let mut threads = Threads::default();
    threads.spawn("probe", move || prober.run())?;
    stop.on_stop(move |_| {
        stopping.store(true, Ordering::SeqCst);
        let _ = waker.wake();
    });
    Ok(ProberHandle { threads })
}

const WAKE: Token = Token(usize::MAX);

impl Prober {
    /// The prober thread's body; returns when stopped.
    fn run(mut self) {
        self.health.on_change(self.waker.clone());
        let now = Instant::now();
        let mut watches: Vec<Option<Watch>> = (0..self.health.count())
            .map(|u| {
                let socket = super::ports::connect(self.health.addr(u)).ok()?;
                self.poll
                    .registry()
                    .register(
                        &mut SourceFd(&socket.as_raw_fd()),
                        Token(u),
                        Interest::READABLE,
                    )
                    .ok()?;
                // The first round at once: readiness waits for the first answer.
                Some(Watch {
                    socket,
                    recent: [None; RECENT],
                    next_slot: 0,
                    silence: Silence::default(),
                    round: None,
                    next_at: now,
                })
            })
            .collect();
        let mut events = Events::with_capacity(16);
        let mut buf = [0u8; 4096];
        while !self.stopping.load(Ordering::SeqCst) {
            let now = Instant::now();
            for (u, w) in watches.iter_mut().enumerate() {
                if let Some(w) = w {
                    self.step(u, w, now);
                }
            }
            let next = watches.iter().flatten().map(|w| w.next_at).min();
            let timeout = next.map(|t| {
                let d = t.saturating_duration_since(Instant::now());
                Duration::from_millis(d.as_micros().div_ceil(1000) as u64)
            });
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                std::thread::sleep(DOWN_PROBE);
            }
            // A burst's freed buffers go back to the kernel within a probe interval.
            crate::sys::trim_if_asked();
            for event in events.iter() {
                let Some(Some(w)) = watches.get_mut(event.token().0) else {
                    continue;
                };
                let u = event.token().0;
                loop {
                    match w.socket.recv(&mut buf) {
                        Ok(n) => {
                            let reply = &buf[..n];
                            let answered = w
                                .recent
                                .iter()
                                .flatten()
                                .any(|id| reply_matches(reply, *id, &probe_query(*id), 17));
                            if answered && w.round.is_some() {
                                w.silence.answered();
                                w.round = None;
                                w.next_at = Instant::now() + self.interval;
                                self.health.probe_ok(u);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        // ICMP unreachable is no answer: keep probing.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
        }
    }

    /// Timers of upstream `u`: start a round, send the round's next copy, end it unanswered.
    fn step(&self, u: usize, w: &mut Watch, now: Instant) {
        let up = self.health.is_healthy(u);
        if !up && w.round.is_none() {
            // Marked down (by the relays, say) between two rounds: probe it now.
            w.next_at = w.next_at.min(now);
        }
        if let Some((started, _)) = w.round {
            w.silence.check(&self.health, u, now);
            if up && now.saturating_duration_since(started) >= self.timeout {
                // Unanswered while up (the silence rule decides about "down"): next round later.
                w.round = None;
                w.next_at = now + self.interval;
                return;
            }
        }
        if now < w.next_at {
            // A down upstream is probed every DOWN_PROBE whatever the round's back-off said.
            if !up && w.round.is_some() {
                w.next_at = w.next_at.min(now + DOWN_PROBE);
            }
            return;
        }
        let (started, sent) = *w.round.get_or_insert((now, 0));
        let id: u16 = rand::random();
        w.recent[w.next_slot] = Some(id);
        w.next_slot = (w.next_slot + 1) % RECENT;
        let _ = super::udp::send(&w.socket, &probe_query(id));
        w.silence.sent(now);
        let sent = sent + 1;
        w.round = Some((started, sent));
        w.next_at = if up {
            (now + backoff(RTO_INITIAL, sent)).min(started + self.timeout)
        } else {
            now + DOWN_PROBE
        };
    }
}
