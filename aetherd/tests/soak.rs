//! Soak (issue 22): 4 publisher processes x 4 subscriber processes on a
//! reliable, a lossy and a durable topic at once, for
//! `AETHER_SOAK_SECONDS` (60 by default; 600 on demand), the resident set
//! (VmRSS) and descriptor count of every process, the daemon's included,
//! sampled every second. After the warm-up ([`WARMUP`]) no process's RSS
//! grows by more than [`RSS_GROWTH_BOUND_KIB`] and none holds more than
//! [`FD_SLACK`] descriptors beyond what it held then; every subscriber
//! receives every message of the reliable and durable topics, in each
//! publisher's order; on the lossy topic, where subscribers pause 300 ms
//! every 10,000 messages (longer than the ring lasts) to lose some, each
//! subscriber's delivered + lost equals what was published, exactly.

mod common;

use aether::{Client, Fsync, Policy, Status, SubscriberConfig, TopicParams};
use common::*;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PUBLISHERS: usize = 4;
const SUBSCRIBERS: usize = 4;
const TOPICS: [&str; 3] = ["rel", "lossy", "dur"];
/// How much a process's RSS may grow after the warm-up.
const RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;
/// Descriptors a process may hold beyond its count after the warm-up (the
/// daemon opens the next log file of the durable topic before closing the
/// one it rolls away from, and retention's directory scan holds one a moment).
const FD_SLACK: usize = 2;
/// Samples before this are the warm-up (rings and buffers being touched).
const WARMUP: Duration = Duration::from_secs(10);
/// A publisher publishes this many messages per topic, then sleeps 10 ms:
/// about 2,000 per second per topic per publisher.
const BURST: u64 = 20;

fn seconds() -> u64 {
    std::env::var("AETHER_SOAK_SECONDS")
        .map(|v| v.parse().expect("AETHER_SOAK_SECONDS: a number"))
        .unwrap_or(60)
}

/// Message `idx` of publisher `id`: 16 to 80 bytes, its id and index first.
fn soak_message(id: u64, idx: u64) -> Vec<u8> {
    let len = 16 + (idx.wrapping_mul(7919) % 65) as usize;
    let mut v: Vec<u8> = (0..len).map(|k| (id * 31 + idx * 7 + k as u64) as u8).collect();
    v[..8].copy_from_slice(&id.to_le_bytes());
    v[8..16].copy_from_slice(&idx.to_le_bytes());
    v
}

/// Entry point of child processes; a no-op when run as an ordinary test.
///
/// - `publisher` (`AETHER_TEST_ID`): a thread per topic publishing
///   [`soak_message`]s for `AETHER_SOAK_SECONDS`; prints `AETHER:ready`,
///   then `AETHER:done rel=N lossy=N dur=N`.
/// - `subscriber`: a thread per topic; prints `AETHER:ready` once all three
///   are open, then reads until the totals (`rel lossy dur`, in the file
///   `AETHER_TOTALS`, written by the test when the publishers are done) are
///   accounted for, and prints `AETHER:result TOPIC delivered=.. lost=..
///   bad=.. gaps=..` for each.
#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    let socket = PathBuf::from(env_var("AETHER_TEST_SOCKET"));
    let client = Client::connect_with(Some(&socket), false).expect("connect");
    match role.as_str() {
        "publisher" => {
            let id: u64 = env_var("AETHER_TEST_ID").parse().unwrap();
            let secs: u64 = env_var("AETHER_SOAK_SECONDS").parse().unwrap();
            let (ready_tx, ready) = std::sync::mpsc::channel();
            let threads: Vec<_> = TOPICS
                .iter()
                .map(|t| {
                    let (c, ready) = (client.clone(), ready_tx.clone());
                    std::thread::spawn(move || {
                        let mut p = c.publisher(t).expect("publisher");
                        p.set_timeout(Some(Duration::from_secs(60)));
                        ready.send(()).unwrap();
                        let end = Instant::now() + Duration::from_secs(secs);
                        let mut n = 0u64;
                        while Instant::now() < end {
                            for _ in 0..BURST {
                                p.publish(&soak_message(id, n)).expect("publish");
                                n += 1;
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        n
                    })
                })
                .collect();
            for _ in 0..TOPICS.len() {
                ready.recv().unwrap();
            }
            println!("AETHER:ready");
            let n: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            println!("AETHER:done rel={} lossy={} dur={}", n[0], n[1], n[2]);
        }
        "subscriber" => {
            let totals = PathBuf::from(env_var("AETHER_TOTALS"));
            let (ready_tx, ready) = std::sync::mpsc::channel();
            let threads: Vec<_> = TOPICS
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    let (c, ready, totals) = (client.clone(), ready_tx.clone(), totals.clone());
                    std::thread::spawn(move || {
                        let mut s = c.subscriber(t, &SubscriberConfig::default()).expect("subscriber");
                        ready.send(()).unwrap();
                        let reliable = *t != "lossy";
                        let mut buf = vec![0u8; s.max_message()];
                        let mut next = [0u64; PUBLISHERS];
                        let (mut bad, mut gaps) = (0u64, 0u64);
                        let mut total = None;
                        loop {
                            if total.is_some_and(|n| s.delivered() + s.lost() >= n) {
                                break;
                            }
                            match s.receive_into(&mut buf, Some(Duration::from_secs(1))) {
                                Ok(r) => {
                                    let m = &buf[..r.len];
                                    let id = u64::from_le_bytes(m[..8].try_into().unwrap());
                                    let idx = u64::from_le_bytes(m[8..16].try_into().unwrap());
                                    if id as usize >= PUBLISHERS || m != soak_message(id, idx) {
                                        bad += 1;
                                        continue;
                                    }
                                    let want = &mut next[id as usize];
                                    if idx < *want || (reliable && idx != *want) {
                                        gaps += 1;
                                    }
                                    *want = idx + 1;
                                    // On the lossy topic, a pause now and then (longer than the
                                    // ring lasts at the publishers' rate): losses to account for.
                                    if !reliable && s.delivered() % 10_000 == 0 {
                                        std::thread::sleep(Duration::from_millis(300));
                                    }
                                }
                                Err(e) if e.status == Status::Timeout => {
                                    if total.is_none() {
                                        total = std::fs::read_to_string(&totals)
                                            .ok()
                                            .map(|l| l.split_whitespace().nth(k).unwrap().parse::<u64>().unwrap());
                                    }
                                }
                                Err(e) => panic!("receive {t}: {e}"),
                            }
                        }
                        format!(
                            "{t} delivered={} lost={} bad={bad} gaps={gaps}",
                            s.delivered(),
                            s.lost()
                        )
                    })
                })
                .collect();
            for _ in 0..TOPICS.len() {
                ready.recv().unwrap();
            }
            println!("AETHER:ready");
            for t in threads {
                println!("AETHER:result {}", t.join().unwrap());
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// One process's samples: (seconds since start, RSS KiB, descriptors).
#[derive(Default, Clone)]
struct Samples {
    name: String,
    pid: u32,
    at: Vec<(f64, u64, usize)>,
}

impl Samples {
    /// RSS and descriptors at the end of the warm-up, then their maxima after it.
    fn after_warmup(&self) -> Option<((u64, usize), (u64, usize))> {
        let w = WARMUP.as_secs_f64();
        let mut after = self.at.iter().filter(|s| s.0 >= w);
        let first = after.next()?;
        let (mut rss, mut fds) = (first.1, first.2);
        for s in after {
            rss = rss.max(s.1);
            fds = fds.max(s.2);
        }
        Some(((first.1, first.2), (rss, fds)))
    }
}

#[test]
fn four_by_four_on_reliable_lossy_and_durable_topics() {
    let secs = seconds();
    let dir = TempDir::new("soak");
    let socket = dir.0.join("aetherd.sock");
    let config = dir.0.join("aetherd.toml");
    // A bounded log: small files, the oldest removed past 8 MiB.
    std::fs::write(&config, "[log]\nsegment_bytes = 1048576\nretain_bytes = 8388608\n").unwrap();
    let d = Daemon::start_with(
        TempDir::new("soak-log"),
        socket.clone(),
        &[
            OsStr::new("--socket"),
            socket.as_os_str(),
            OsStr::new("--state-dir"),
            dir.0.join("state").as_os_str(),
            OsStr::new("--config"),
            config.as_os_str(),
        ],
        &[],
    );
    let c = d.client();
    for (t, policy, wal) in [
        ("rel", Policy::Reliable, None),
        ("lossy", Policy::Lossy, None),
        ("dur", Policy::Reliable, Some(Fsync::Interval(100))),
    ] {
        let p = TopicParams {
            policy,
            ring_size: 1 << 16,
            max_message: 256,
            max_subscribers: 8,
            wal,
            huge_pages: false,
            retain_bytes: None,
            retain_seconds: None,
        };
        c.create_topic(t, &p).unwrap();
    }
    let totals = dir.0.join("totals");
    let base = vec![
        d.socket_env(),
        ("AETHER_SOAK_SECONDS", secs.to_string()),
        ("AETHER_TOTALS", totals.display().to_string()),
    ];
    let mut subs: Vec<Role> = (0..SUBSCRIBERS).map(|_| Role::spawn("subscriber", &base)).collect();
    for s in &mut subs {
        s.expect("ready");
    }
    let mut pubs: Vec<Role> = (0..PUBLISHERS)
        .map(|id| {
            let mut env = base.clone();
            env.push(("AETHER_TEST_ID", id.to_string()));
            Role::spawn("publisher", &env)
        })
        .collect();
    for p in &mut pubs {
        p.expect("ready");
    }
    // Every process sampled each second until the publishers are done.
    let mut procs = vec![Samples {
        name: "aetherd".into(),
        pid: d.child.id(),
        ..Samples::default()
    }];
    procs.extend(pubs.iter().enumerate().map(|(i, p)| Samples {
        name: format!("publisher {i}"),
        pid: p.child.id(),
        ..Samples::default()
    }));
    procs.extend(subs.iter().enumerate().map(|(i, s)| Samples {
        name: format!("subscriber {i}"),
        pid: s.child.id(),
        ..Samples::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, mut procs) = (Arc::clone(&stop), procs.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let at = t0.elapsed().as_secs_f64();
                for p in &mut procs {
                    p.at.push((at, rss_kib(p.pid), fd_count(p.pid)));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            procs
        })
    };
    let t0 = Instant::now();
    let mut sent = [0u64; 3];
    for p in &mut pubs {
        let l = p.line();
        for (k, t) in TOPICS.iter().enumerate() {
            sent[k] += field(&l, t);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let procs = sampler.join().unwrap();
    let ran = t0.elapsed();
    for p in pubs {
        p.wait_ok();
    }
    let tmp = dir.0.join("totals.tmp");
    std::fs::write(&tmp, format!("{} {} {}", sent[0], sent[1], sent[2])).unwrap();
    std::fs::rename(&tmp, &totals).unwrap();
    let mut lossy = (0u64, 0u64);
    for mut s in subs {
        for (k, t) in TOPICS.iter().enumerate() {
            let r = s.line();
            assert!(r.starts_with(&format!("result {t} ")), "{r}");
            let (delivered, lost) = (field(&r, "delivered"), field(&r, "lost"));
            assert_eq!((field(&r, "bad"), field(&r, "gaps")), (0, 0), "intact, in order: {r}");
            assert_eq!(delivered + lost, sent[k], "{t}: delivered + lost = published: {r}");
            if *t == "lossy" {
                lossy = (lossy.0 + delivered, lossy.1 + lost);
            } else {
                assert_eq!(lost, 0, "{t} loses nothing: {r}");
            }
        }
        s.wait_ok();
    }
    println!(
        "soak: {secs} s asked, {:.1} s ran; published rel={} lossy={} dur={} (x{SUBSCRIBERS} subscribers: \
         every reliable and durable one received, lossy {} delivered + {} lost)",
        ran.as_secs_f64(),
        sent[0],
        sent[1],
        sent[2],
        lossy.0,
        lossy.1
    );
    assert!(
        lossy.1 > 0,
        "the lossy subscribers' pauses lost nothing: no loss was accounted"
    );
    let mut worst = 0u64;
    for p in &procs {
        let ((rss0, fds0), (rss, fds)) = p
            .after_warmup()
            .unwrap_or_else(|| panic!("{}: no sample after the warm-up: run longer than {WARMUP:?}", p.name));
        let first = p.at.first().map_or(0, |s| s.1);
        println!(
            "soak: {:>12}: RSS {first} KiB at start, {rss0} KiB after the warm-up, max {rss} KiB \
             (growth {} KiB); fds {fds0} after the warm-up, max {fds}",
            p.name,
            rss - rss0
        );
        worst = worst.max(rss - rss0);
        assert!(
            rss - rss0 <= RSS_GROWTH_BOUND_KIB,
            "{}: RSS grew {} KiB after the warm-up (bound {RSS_GROWTH_BOUND_KIB} KiB)",
            p.name,
            rss - rss0
        );
        assert!(
            fds <= fds0 + FD_SLACK,
            "{}: {fds} descriptors, {fds0} after the warm-up",
            p.name
        );
    }
    println!("soak: largest RSS growth after the warm-up: {worst} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB)");
    assert_eq!(shm_objects(d.instance_id), Vec::<String>::new());
}
