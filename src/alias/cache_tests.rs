//! Tests of [`super`].

use super::*;

#[derive(Debug, PartialEq)]
struct W(u32);
impl Footprint for W {
    fn bytes(&self) -> usize {
        100
    }
}

fn cache() -> Cache<W> {
    Cache::new(Policy {
        cap: Duration::from_secs(5),
        stale: Duration::from_secs(600),
        max_bytes: 1 << 20,
    })
}

const K: &[u8] = b"\x03pod\x00\x00\x01";

fn answer(ip: u8, ttl: u32) -> Outcome {
    Outcome::Answer {
        records: vec![(1, vec![10, 0, 0, ip].into())],
        ttl,
    }
}

/// Completes `token` and returns what each waiter got ("fresh", "stale", "fail").
fn complete(c: &mut Cache<W>, token: u64, o: Outcome, now: Instant) -> Vec<(u32, &'static str)> {
    let mut got = Vec::new();
    assert!(c.complete(token, o, now, |w, r| got.push((
        w.0,
        match r {
            Served::Fresh(_) => "fresh",
            Served::Stale(_) => "stale",
            Served::Fail => "fail",
        }
    ))));
    got
}

fn started(s: Step) -> u64 {
    match s {
        Step::Wait { start: Some(t) } => t,
        other => panic!("expected a new lookup, got {other:?}"),
    }
}

#[test]
fn concurrent_misses_wait_for_one_lookup() {
    let mut c = cache();
    let t0 = Instant::now();
    let token = started(c.query(K, u32::MAX, t0, false, || W(1)));
    for i in 2..=5 {
        assert!(matches!(
            c.query(K, u32::MAX, t0, false, || W(i)),
            Step::Wait { start: None }
        ));
    }
    assert_eq!(c.sizes(), (0, 0, 1, 5));
    let got = complete(&mut c, token, answer(7, 300), t0);
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|(_, r)| *r == "fresh"));
    assert_eq!(c.sizes().2..c.sizes().3, 0..0);
    assert!(
        !c.complete(token, answer(7, 300), t0, |_, _| {}),
        "late: ignored"
    );
}

#[test]
fn life_is_the_smallest_of_target_ttl_rule_cap_and_global_cap() {
    let t0 = Instant::now();
    // (target TTL, rule cap, seconds the answer lives)
    for (ttl, cap, life) in [(300, u32::MAX, 5), (300, 2, 2), (1, 600, 1), (0, 600, 0)] {
        let mut c = cache();
        let token = started(c.query(K, cap, t0, false, || W(1)));
        complete(&mut c, token, answer(7, ttl), t0);
        let at = t0 + Duration::from_millis(life * 1000).saturating_sub(Duration::from_millis(1));
        if life > 0 {
            assert!(
                matches!(c.query(K, u32::MAX, at, false, || W(2)), Step::Fresh { .. }),
                "{ttl} {cap}"
            );
        }
        let after = t0 + Duration::from_secs(life);
        // (A prefetch may be in flight from the last hit: then this waits for it.)
        assert!(
            matches!(
                c.query(K, u32::MAX, after, false, || W(3)),
                Step::Wait { .. }
            ),
            "{ttl} {cap}"
        );
    }
}

#[test]
fn a_negative_answer_lives_at_most_a_second() {
    let mut c = cache();
    let t0 = Instant::now();
    let token = started(c.query(K, u32::MAX, t0, false, || W(1)));
    complete(
        &mut c,
        token,
        Outcome::Answer {
            records: vec![],
            ttl: 3600,
        },
        t0,
    );
    match c.query(K, u32::MAX, t0 + Duration::from_millis(900), false, || W(2)) {
        Step::Fresh { data, .. } => assert!(data.records.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.query(K, u32::MAX, t0 + Duration::from_secs(1), false, || W(3)),
        Step::Wait { .. }
    ));
}

#[test]
fn a_hit_in_the_last_quarter_of_life_prefetches_once() {
    let mut c = cache();
    let t0 = Instant::now();
    let token = started(c.query(K, u32::MAX, t0, false, || W(1)));
    complete(&mut c, token, answer(7, 300), t0);
    let ms = |n| t0 + Duration::from_millis(n);
    assert!(matches!(
        c.query(K, u32::MAX, ms(3000), false, || W(2)),
        Step::Fresh { refresh: None, .. }
    ));
    let refresh = match c.query(K, u32::MAX, ms(3800), false, || W(3)) {
        Step::Fresh {
            refresh: Some(t),
            data,
        } => {
            assert_eq!(data.ttl_left(ms(3800)), 1);
            t
        }
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(
            c.query(K, u32::MAX, ms(3900), false, || W(4)),
            Step::Fresh { refresh: None, .. }
        ),
        "one at a time"
    );
    complete(&mut c, refresh, answer(8, 300), ms(3950));
    // Renewed: fresh for another life from the refresh, no waiting at the old expiry.
    match c.query(K, u32::MAX, ms(6000), false, || W(5)) {
        Step::Fresh {
            data,
            refresh: None,
        } => assert_eq!(&*data.records[0].1, &[10, 0, 0, 8]),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.counts.refreshes, 1);
}

#[test]
fn stale_only_while_the_upstream_fails() {
    let mut c = cache();
    let t0 = Instant::now();
    let s = |n: u64| t0 + Duration::from_secs(n);
    let token = started(c.query(K, u32::MAX, t0, false, || W(1)));
    complete(&mut c, token, answer(7, 300), t0);
    // Expired, upstream not known to fail: the client waits for a lookup.
    let token = started(c.query(K, u32::MAX, s(10), false, || W(2)));
    assert_eq!(
        complete(&mut c, token, Outcome::Failed, s(12)),
        [(2, "stale")]
    );
    // Failing while the upstream answers other names: the client waits for a new lookup.
    let retry = started(c.query(K, u32::MAX, s(13), false, || W(3)));
    // Failing with every upstream down: stale at once; the lookup in flight keeps trying.
    assert!(matches!(
        c.query(K, u32::MAX, s(13), true, || W(4)),
        Step::Stale { retry: None, .. }
    ));
    // The upstream answers again: fresh from then on, never stale.
    assert_eq!(
        complete(&mut c, retry, answer(9, 300), s(14)),
        [(3, "fresh")]
    );
    assert!(matches!(
        c.query(K, u32::MAX, s(15), false, || W(5)),
        Step::Fresh { .. }
    ));
    // Past the stale window: SERVFAIL.
    match c.query(K, u32::MAX, s(16), true, || W(8)) {
        Step::Fresh { .. } => {}
        other => panic!("fresh whatever the health says: {other:?}"),
    }
    let token = started(c.query(K, u32::MAX, s(20), false, || W(6)));
    complete(&mut c, token, Outcome::Failed, s(21));
    let late = s(19 + 600);
    let token = started(c.query(K, u32::MAX, late, false, || W(7)));
    assert_eq!(
        complete(&mut c, token, Outcome::Failed, late),
        [(7, "fail")]
    );
    assert_eq!(c.sizes(), (0, 0, 0, 0), "nothing kept past the window");
}

#[test]
fn floods_are_bounded_and_leave_nothing_behind() {
    let mut c = cache();
    let t0 = Instant::now();
    let mut tokens = Vec::new();
    let mut shed = 0;
    for i in 0..(MAX_LOOKUPS as u32 + 100) {
        let key = format!("\x04p{i:03}\x00\x00\x01");
        match c.query(key.as_bytes(), u32::MAX, t0, false, || W(i)) {
            Step::Wait { start: Some(t) } => tokens.push(t),
            Step::Shed => shed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((tokens.len(), shed), (MAX_LOOKUPS, 100));
    // A waiter budget, too: many clients on one target.
    let token = tokens[0];
    let mut waited = 0;
    for i in 0..1000 {
        if let Step::Wait { .. } = c.query(b"\x04p000\x00\x00\x01", u32::MAX, t0, false, || W(i)) {
            waited += 1;
        }
    }
    assert_eq!(waited, MAX_WAITERS_PER_TARGET - 1);
    for t in tokens {
        complete(&mut c, t, Outcome::Failed, t0);
    }
    assert!(!c.complete(token, Outcome::Failed, t0, |_, _| {}));
    assert_eq!(c.sizes(), (0, 0, 0, 0));
    assert!(c.map.is_empty());
}

#[test]
fn answers_stay_within_the_byte_budget() {
    let mut c: Cache<W> = Cache::new(Policy {
        cap: Duration::from_secs(5),
        stale: Duration::from_secs(600),
        max_bytes: 10_000,
    });
    let t0 = Instant::now();
    for i in 0..1000u32 {
        let key = format!("\x05p{i:04}\x00\x00\x01");
        let token = started(c.query(key.as_bytes(), u32::MAX, t0, false, || W(i)));
        complete(&mut c, token, answer(1, 300), t0);
    }
    let (kept, bytes, _, _) = c.sizes();
    assert!(
        bytes <= 10_000 && kept > 10 && kept < 1000,
        "{kept} {bytes}"
    );
    // The newest are the ones kept.
    assert!(matches!(
        c.query(b"\x05p0999\x00\x00\x01", u32::MAX, t0, false, || W(0)),
        Step::Fresh { .. }
    ));
}
