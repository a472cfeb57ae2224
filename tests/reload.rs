//! Hot reload: every way a mapping file can change is picked up, promptly, atomically; a bad
//! file never replaces a good mapping.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, query, temp_dir, udp, upstream};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

/// The watch path must deliver a change within this bound (the 1 s).
const WATCH_BOUND: Duration = Duration::from_secs(1);
/// Long enough that only the watch (not the poll) can explain a reload within WATCH_BOUND.
const NO_POLL: Duration = Duration::from_secs(3600);

fn mapping(ip: &str) -> String {
    format!("hosts:\n  db-0.db.example.com: {ip}\n")
}

fn answer(addr: SocketAddr) -> Option<Ipv4Addr> {
    common::first_a(&udp(addr, &query("db-0.db.example.com.", RecordType::A)))
}

/// Queries until the answer is `ip`; returns how long that took, or panics after `limit`.
fn wait_for(addr: SocketAddr, ip: &str, limit: Duration) -> Duration {
    let want: Ipv4Addr = ip.parse().unwrap();
    let t0 = Instant::now();
    common::eventually(limit, &format!("{ip} served"), || {
        answer(addr) == Some(want)
    });
    t0.elapsed()
}

/// kubelet's AtomicWriter, step for step: a new hidden timestamped directory with the payload,
/// a `..data_tmp` symlink to it renamed over `..data`, the old directory removed. The visible
/// `mapping.yaml -> ..data/mapping.yaml` symlink never changes.
struct ConfigMapVolume {
    dir: PathBuf,
    generation: usize,
}

impl ConfigMapVolume {
    fn new(contents: &str) -> ConfigMapVolume {
        let mut v = ConfigMapVolume {
            dir: temp_dir(),
            generation: 0,
        };
        v.update(contents);
        symlink("..data/mapping.yaml", v.dir.join("mapping.yaml")).unwrap();
        v
    }

    fn update(&mut self, contents: &str) {
        self.generation += 1;
        let ts = format!("..2026_12_01_10_00_00.{:09}", self.generation);
        let new_dir = self.dir.join(&ts);
        std::fs::create_dir(&new_dir).unwrap();
        std::fs::write(new_dir.join("mapping.yaml"), contents).unwrap();
        let data_tmp = self.dir.join("..data_tmp");
        symlink(&ts, &data_tmp).unwrap();
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        std::fs::rename(&data_tmp, self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

#[test]
fn kubelet_configmap_update_is_served_within_a_second() {
    let up = upstream::start();
    let mut vol = ConfigMapVolume::new(&mapping("10.0.0.1"));
    let d = Daemon::start_at(vol.dir.join("mapping.yaml"), vec![up.addr], |c| {
        c.poll_interval = NO_POLL
    });
    assert_eq!(answer(d.udp), Some("10.0.0.1".parse().unwrap()));
    for (i, ip) in ["10.0.0.2", "10.0.0.3", "10.0.0.4"].iter().enumerate() {
        vol.update(&mapping(ip));
        let took = wait_for(d.udp, ip, WATCH_BOUND);
        eprintln!("configmap update {i}: served after {took:?}");
        assert_eq!(
            answer(d.udp),
            Some(ip.parse().unwrap()),
            "the old answer is gone"
        );
    }
    assert_eq!(
        d.running().reload_stats().reloads.load(Ordering::Relaxed),
        3
    );
}

#[test]
fn configmap_mounted_as_a_directory_is_merged_and_reloaded() {
    let up = upstream::start();
    let mut vol = ConfigMapVolume::new(&mapping("10.0.1.1"));
    let d = Daemon::start_at(vol.dir.clone(), vec![up.addr], |c| {
        c.poll_interval = NO_POLL
    });
    assert_eq!(answer(d.udp), Some("10.0.1.1".parse().unwrap()));
    vol.update(&mapping("10.0.1.2"));
    wait_for(d.udp, "10.0.1.2", WATCH_BOUND);
}

#[test]
fn in_place_rewrite_rename_over_and_recreate_are_all_picked_up() {
    let up = upstream::start();
    let dir = temp_dir();
    let path = dir.join("mapping.yaml");
    std::fs::write(&path, mapping("10.0.2.1")).unwrap();
    let d = Daemon::start_at(path.clone(), vec![up.addr], |c| c.poll_interval = NO_POLL);

    std::fs::write(&path, mapping("10.0.2.2")).unwrap(); // truncate + write in place
    wait_for(d.udp, "10.0.2.2", WATCH_BOUND);

    common::write_atomic(&path, &mapping("10.0.2.3")); // temp file + rename over
    wait_for(d.udp, "10.0.2.3", WATCH_BOUND);

    std::fs::remove_file(&path).unwrap(); // delete ...
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        answer(d.udp),
        Some("10.0.2.3".parse().unwrap()),
        "a missing file keeps the last good mapping"
    );
    std::fs::write(&path, mapping("10.0.2.4")).unwrap(); // ... and recreate
    wait_for(d.udp, "10.0.2.4", WATCH_BOUND);
}

#[test]
fn parent_directory_symlink_swap_is_caught_by_the_poll() {
    let up = upstream::start();
    let base = temp_dir();
    for (sub, ip) in [("a", "10.0.3.1"), ("b", "10.0.3.2")] {
        std::fs::create_dir(base.join(sub)).unwrap();
        std::fs::write(base.join(sub).join("mapping.yaml"), mapping(ip)).unwrap();
    }
    symlink("a", base.join("current")).unwrap();
    let poll = Duration::from_millis(300);
    let d = Daemon::start_at(base.join("current/mapping.yaml"), vec![up.addr], |c| {
        c.poll_interval = poll
    });
    assert_eq!(answer(d.udp), Some("10.0.3.1".parse().unwrap()));
    symlink("b", base.join("current.tmp")).unwrap();
    std::fs::rename(base.join("current.tmp"), base.join("current")).unwrap();
    wait_for(d.udp, "10.0.3.2", poll + WATCH_BOUND);
    // The watch follows the new directory: a change there is now seen without the poll.
    std::fs::write(base.join("b/mapping.yaml"), mapping("10.0.3.3")).unwrap();
    wait_for(d.udp, "10.0.3.3", WATCH_BOUND);
}

#[test]
fn bad_file_keeps_the_last_good_mapping_then_a_fixed_file_is_served() {
    let up = upstream::start();
    let dir = temp_dir();
    let path = dir.join("mapping.yaml");
    std::fs::write(&path, mapping("10.0.4.1")).unwrap();
    let d = Daemon::start_at(path.clone(), vec![up.addr], |c| {
        c.poll_interval = Duration::from_millis(200)
    });
    let stats = || {
        let s = d.running().reload_stats();
        (
            s.reloads.load(Ordering::Relaxed),
            s.failures.load(Ordering::Relaxed),
        )
    };
    let bad_files = [
        "hosts:\n  db-0.db.example.com: 10.0.4.300\n", // invalid address
        "hosts:\n  db-0.db.example.com: [10.0.4.2\n",  // YAML syntax
        "hosts:\n  db-0..example.com: 10.0.4.2\n",     // invalid name
        "hosts:\n  a.example.com: 1.1.1.1\n  A.example.com: 1.1.1.2\n", // duplicate
        "hostz:\n  db-0.db.example.com: 10.0.4.2\n",   // unknown key
    ];
    for (i, bad) in bad_files.iter().enumerate() {
        common::write_atomic(&path, bad);
        common::eventually(
            Duration::from_secs(2),
            &format!("failure {i} counted"),
            || stats().1 > i as u64,
        );
        assert_eq!(
            answer(d.udp),
            Some("10.0.4.1".parse().unwrap()),
            "old answer still served"
        );
    }
    std::fs::remove_file(&path).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stats().1, 6, "a missing file is a failure too");
    assert_eq!(answer(d.udp), Some("10.0.4.1".parse().unwrap()));
    // Repeated polls of the same broken state are not counted again.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stats().1, 6);

    common::write_atomic(&path, &mapping("10.0.4.9"));
    wait_for(d.udp, "10.0.4.9", Duration::from_secs(2));
    assert_eq!(stats(), (1, 6));
}

#[test]
fn unchanged_content_publishes_nothing_and_forced_reload_works() {
    let up = upstream::start();
    let dir = temp_dir();
    let path = dir.join("mapping.yaml");
    std::fs::write(&path, mapping("10.0.5.1")).unwrap();
    let d = Daemon::start_at(path.clone(), vec![up.addr], |c| {
        c.poll_interval = Duration::from_millis(100)
    });
    let before = Arc::as_ptr(&d.running().mapping().load_full());
    std::fs::write(&path, mapping("10.0.5.1")).unwrap(); // same bytes, new mtime
    d.running().reload_now();
    std::thread::sleep(Duration::from_millis(600));
    let after = Arc::as_ptr(&d.running().mapping().load_full());
    assert_eq!(before, after, "the same snapshot is still in service");
    assert_eq!(
        d.running().reload_stats().reloads.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn a_name_in_two_files_of_a_directory_names_both_files() {
    let dir = temp_dir();
    std::fs::write(
        dir.join("a.yaml"),
        "hosts:\n  db-0.db.example.com: 10.0.0.1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        "hosts:\n  other.example.com: 10.0.0.3\n  DB-0.db.example.com: 10.0.0.2\n",
    )
    .unwrap();
    std::fs::write(dir.join(".hidden.yaml"), "not: [valid").unwrap();
    std::fs::write(dir.join("README.txt"), "ignored").unwrap();
    let err = splitdns::mapping::file::load(&dir, 5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("b.yaml:3:3"), "{err}");
    assert!(err.contains("a.yaml:2"), "{err}");
    std::fs::remove_file(dir.join("b.yaml")).unwrap();
    std::fs::write(dir.join("c.yml"), "hosts:\n  other.example.com: 10.0.0.3\n").unwrap();
    let snap = splitdns::mapping::file::load(&dir, 5).unwrap();
    assert_eq!(
        snap.len(),
        2,
        "a.yaml + c.yml, hidden and non-YAML files skipped"
    );
}

/// 200 reloads alternating two mappings while a client queries continuously: every answer is
/// exactly one mapping's (addresses and TTL together), and no query fails or goes unanswered.
#[test]
fn two_hundred_reloads_under_continuous_queries() {
    let up = upstream::start();
    let a = "ttl: 11\nhosts:\n  db-0.db.example.com: [10.0.6.1, 10.0.6.11]\n  db-1.db.example.com: 10.0.7.1\n";
    let b = "ttl: 22\nhosts:\n  db-0.db.example.com: [10.0.6.2, 10.0.6.22]\n  db-1.db.example.com: 10.0.7.2\n";
    let dir = temp_dir();
    let path = dir.join("mapping.yaml");
    std::fs::write(&path, a).unwrap();
    let d = Daemon::start_at(path.clone(), vec![up.addr], |c| c.poll_interval = NO_POLL);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let addr = d.udp;
    let client = {
        let (stop, answered) = (stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let want_a: (Vec<Ipv4Addr>, u32) =
                (vec![[10, 0, 6, 1].into(), [10, 0, 6, 11].into()], 11);
            let want_b: (Vec<Ipv4Addr>, u32) =
                (vec![[10, 0, 6, 2].into(), [10, 0, 6, 22].into()], 22);
            while !stop.load(Ordering::Relaxed) {
                let r = udp(addr, &query("db-0.db.example.com.", RecordType::A));
                assert_eq!(r.metadata.response_code, ResponseCode::NoError);
                let ips: Vec<Ipv4Addr> = r
                    .answers
                    .iter()
                    .filter_map(|x| match &x.data {
                        RData::A(a) => Some(a.0),
                        _ => None,
                    })
                    .collect();
                let got = (ips, r.answers[0].ttl);
                assert!(
                    got == want_a || got == want_b,
                    "answer from neither mapping: {got:?}"
                );
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for i in 0..200 {
        let (text, ip) = if i % 2 == 0 {
            (b, "10.0.6.2")
        } else {
            (a, "10.0.6.1")
        };
        common::write_atomic(&path, text);
        d.running().reload_now();
        wait_for(d.udp, ip, Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    client
        .join()
        .expect("every query answered from exactly one mapping");
    assert!(answered.load(Ordering::Relaxed) > 200);
    assert!(d.running().reload_stats().reloads.load(Ordering::Relaxed) >= 200);
}
