//! The budget's rules, on a listener with no sockets: the allowance, the share, who is served
//! first, and that every byte comes back.

use std::net::SocketAddr;

use super::*;
use crate::config::{Config, MappingSource};
use crate::shared::Shared;
use tokio::sync::Semaphore;

fn listener(memory: usize, max_connections: usize) -> Arc<Listener> {
    let mut config = Config::new(
        MappingSource::Embedded,
        vec![SocketAddr::from(([127, 0, 0, 1], 53))],
    );
    config.tcp_memory = memory;
    config.tcp_max_connections = max_connections;
    let mapping = Arc::new(arc_swap::ArcSwap::from_pointee(
        crate::load_mapping(&MappingSource::Embedded, 5).expect("mapping"),
    ));
    let shared = Shared::new(mapping, &config);
    Listener::new(&shared, &config)
}

fn conn(l: &Listener) -> Arc<Conn> {
    l.register(Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap())
}

fn free(l: &Listener) -> usize {
    l.lock_pool().free
}

#[test]
fn the_budget_keeps_the_allowances_and_room_for_the_largest_query() {
    // 16 MiB, 256 slots: 1 MiB of allowances, 15 MiB shared, 1.875 MiB per connection.
    assert_eq!(budget(16 << 20, 256), (15 << 20, (15 << 20) / 8));
    let (pool, share) = budget(0, 256);
    assert_eq!(pool, share, "never below one largest forward");
    assert!(share >= 5 * MAX_FRAME);
}

#[tokio::test]
async fn small_charges_use_the_allowance_large_ones_the_pool_and_all_come_back() {
    let l = listener(4 << 20, 4);
    let c = conn(&l);
    let before = free(&l);
    let small = l.charge(&c, 100).await.unwrap();
    assert_eq!((small.private, small.pooled), (100, 0));
    assert_eq!(free(&l), before, "the pool is not touched");
    let mut big = l.charge(&c, 60_000).await.unwrap();
    assert_eq!((big.private, big.pooled), (0, 60_000));
    assert_eq!(free(&l), before - 60_000);
    assert_eq!(c.held(), 60_100);
    big.shrink(1_000);
    assert_eq!(free(&l), before - 1_000);
    drop(big);
    drop(small);
    assert_eq!((free(&l), c.held()), (before, 0), "every byte given back");
}

#[tokio::test]
async fn a_connection_over_its_share_waits_for_its_own_bytes() {
    let l = listener(4 << 20, 4);
    let c = conn(&l);
    let share = l.conn_cap;
    let first = l.charge(&c, share - 10).await.unwrap();
    let waiting = tokio::spawn({
        let (l, c) = (l.clone(), c.clone());
        async move { l.charge(&c, 20_000).await.map(|ch| ch.bytes()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "over its share: it waits");
    // Another connection is not held up by it.
    let other = conn(&l);
    let o = tokio::time::timeout(Duration::from_secs(1), l.charge(&other, 20_000)).await;
    assert_eq!(o.unwrap().unwrap().bytes(), 20_000);
    drop(first);
    let got = tokio::time::timeout(Duration::from_secs(1), waiting).await;
    assert_eq!(
        got.unwrap().unwrap(),
        Some(20_000),
        "served once its own bytes came back"
    );
}

#[tokio::test]
async fn when_the_pool_is_short_the_lightest_waiter_goes_first() {
    let l = listener(0, 1); // the smallest pool: one largest forward
    let pool = free(&l);
    let hog = conn(&l);
    let mut held = l.charge(&hog, pool).await.unwrap();
    // A heavier connection asks first, then a lighter one.
    let heavy = conn(&l);
    let _heavy_has = l.charge(&heavy, ALLOWANCE).await.unwrap();
    let h = tokio::spawn({
        let (l, c) = (l.clone(), heavy.clone());
        async move { l.charge(&c, 50_000).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let light = conn(&l);
    let g = tokio::spawn({
        let (l, c) = (l.clone(), light.clone());
        async move { l.charge(&c, 50_000).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // 60,000 free: room for one of them, and the lighter one gets it though it came later.
    held.shrink(pool - 60_000);
    let got = tokio::time::timeout(Duration::from_secs(1), g).await;
    let light_has = got.unwrap().unwrap().expect("granted");
    assert_eq!(light_has.bytes(), 50_000);
    tokio::task::yield_now().await;
    assert!(!h.is_finished(), "the heavier one still waits");
    drop(held);
    let got = tokio::time::timeout(Duration::from_secs(1), h).await;
    assert_eq!(got.unwrap().unwrap().expect("granted").bytes(), 50_000);
}

#[tokio::test]
async fn a_light_waiter_has_the_stalled_holder_closed() {
    let l = listener(0, 2);
    let pool = free(&l);
    let stalled = conn(&l);
    let held = l.charge(&stalled, pool).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let light = conn(&l);
    light.progress(l.epoch);
    let want = tokio::spawn({
        let (l, c) = (l.clone(), light.clone());
        async move { l.charge(&c, 10_000).await.is_some() }
    });
    tokio::time::timeout(Duration::from_secs(2), stalled.closed())
        .await
        .expect("the stalled holder is closed");
    assert!(!light.is_closed());
    drop(held);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), want)
            .await
            .unwrap()
            .unwrap()
    );
}

#[tokio::test]
async fn eviction_takes_the_connection_idle_longest_and_never_the_same_twice() {
    let l = listener(1 << 20, 3);
    let a = conn(&l);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = conn(&l);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c = conn(&l);
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.progress(l.epoch); // a made progress since: b is idle longest, then c
    assert!(l.evict().is_some());
    assert!(b.is_closed() && !a.is_closed() && !c.is_closed());
    assert!(l.evict().is_some());
    assert!(c.is_closed(), "then the next one, not b again");
    assert!(l.evict().is_some());
    assert!(a.is_closed());
    assert!(l.evict().is_none(), "nothing left to evict");
}
