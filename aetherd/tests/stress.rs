//! Multi-process stress: 4 publisher processes x 4 subscriber processes,
//! random sizes, every message checksummed; and publishers killed between
//! claim and commit, after which a healthy publisher goes on past them.

mod common;

use aether::{Client, Policy, Status, SubscriberConfig, TopicParams};
use common::*;
use std::path::PathBuf;
use std::time::Duration;

const PUBLISHERS: u64 = 4;
const SUBSCRIBERS: usize = 4;
const HEADER: usize = 24; // publisher id, index, checksum

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Message `idx` of publisher `id`: random length and bytes, with a checksum.
fn stress_message(id: u64, idx: u64, max: usize) -> Vec<u8> {
    let mut x = xorshift((id << 40) ^ idx ^ 0x9e37_79b9_7f4a_7c15);
    let len = HEADER + (x as usize % (max - HEADER + 1));
    let mut v = vec![0u8; len];
    for b in &mut v[HEADER..] {
        x = xorshift(x);
        *b = x as u8;
    }
    let sum = fnv1a(&v[HEADER..]);
    v[..8].copy_from_slice(&id.to_le_bytes());
    v[8..16].copy_from_slice(&idx.to_le_bytes());
    v[16..24].copy_from_slice(&sum.to_le_bytes());
    v
}

#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    let socket = PathBuf::from(env_var("AETHER_TEST_SOCKET"));
    let topic = env_var("AETHER_TEST_TOPIC");
    let num = |k: &str| -> u64 { env_var(k).parse().expect("number") };
    let client = Client::connect_with(Some(&socket), false).expect("connect");
    match role.as_str() {
        "publisher" => {
            let (id, count, max) = (
                num("AETHER_TEST_ID"),
                num("AETHER_TEST_COUNT"),
                num("AETHER_TEST_MAX") as usize,
            );
            let mut p = client.publisher(&topic).expect("publisher");
            p.set_timeout(Some(Duration::from_secs(60)));
            println!("AETHER:ready");
            for i in 0..count {
                p.publish(&stress_message(id, i, max)).expect("publish");
            }
            println!("AETHER:done");
        }
        "subscriber" => {
            let (total, reliable) = (num("AETHER_TEST_TOTAL"), num("AETHER_TEST_RELIABLE") == 1);
            let mut s = client
                .subscriber(&topic, &SubscriberConfig::default())
                .expect("subscriber");
            println!("AETHER:ready");
            let mut buf = vec![0u8; s.max_message()];
            // A subscriber that stops now and then (every n-th message, 2 ms):
            // publishers then wait for it, and find it at a lap's padding.
            let stall_every = std::env::var("AETHER_TEST_STALL").map_or(0, |v| v.parse::<u64>().expect("number"));
            let mut next_idx = std::collections::HashMap::<u64, u64>::new();
            let (mut bad, mut gaps, mut last_seq, mut lost_before) = (0u64, 0u64, None::<u64>, 0u64);
            while s.delivered() + s.lost() < total {
                match s.receive_into(&mut buf, Some(Duration::from_secs(10))) {
                    Ok(r) => {
                        if stall_every > 0 && s.delivered().is_multiple_of(stall_every) {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        let m = &buf[..r.len];
                        let id = u64::from_le_bytes(m[..8].try_into().unwrap());
                        let idx = u64::from_le_bytes(m[8..16].try_into().unwrap());
                        let sum = u64::from_le_bytes(m[16..24].try_into().unwrap());
                        if fnv1a(&m[HEADER..]) != sum {
                            bad += 1;
                        }
                        // Each publisher's messages in its own order; gap-free when reliable.
                        let want = next_idx.entry(id).or_insert(0);
                        if idx < *want || (reliable && idx != *want) {
                            gaps += 1;
                        }
                        *want = idx + 1;
                        // Sequence numbers only grow; when reliable, every jump is a counted loss
                        // (an abandoned record), never a silent one.
                        let skipped = s.lost() - lost_before;
                        if last_seq.is_some_and(|l| r.seq <= l || (reliable && r.seq != l + 1 + skipped)) {
                            gaps += 1;
                        }
                        last_seq = Some(r.seq);
                        lost_before = s.lost();
                    }
                    Err(e) if e.status == Status::Timeout => break,
                    Err(e) => panic!("receive: {e}"),
                }
            }
            println!(
                "AETHER:result delivered={} lost={} bad={bad} gaps={gaps}",
                s.delivered(),
                s.lost()
            );
        }
        "crasher" => {
            // Claim, write half, and wait to be killed: a publisher dying mid-write.
            let mut p = client.publisher(&topic).expect("publisher");
            let buf = p.loan(64).expect("loan");
            buf[..32].fill(0xee);
            println!("AETHER:loaned");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn run_4x4(policy: Policy, per_publisher: u64) {
    run_4x4_sized(policy, per_publisher, 512, 1 << 16, &[]);
}

/// Four publishers and four subscribers of messages up to `max` bytes in a
/// ring of `ring` bytes; the subscribers numbered in `stalling` stop for
/// 2 ms every 97 messages.
fn run_4x4_sized(policy: Policy, per_publisher: u64, max: usize, ring: u64, stalling: &[usize]) {
    let d = Daemon::start();
    let params = TopicParams {
        policy,
        ring_size: ring,
        max_message: max as u64,
        max_subscribers: 8,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    };
    d.client().create_topic("stress", &params).unwrap();
    let total = PUBLISHERS * per_publisher;
    let base = vec![
        d.socket_env(),
        ("AETHER_TEST_TOPIC", "stress".to_string()),
        ("AETHER_TEST_TOTAL", total.to_string()),
        ("AETHER_TEST_RELIABLE", ((policy == Policy::Reliable) as u8).to_string()),
        ("AETHER_TEST_COUNT", per_publisher.to_string()),
        ("AETHER_TEST_MAX", max.to_string()),
    ];
    let mut subs: Vec<Role> = (0..SUBSCRIBERS)
        .map(|i| {
            let mut env = base.clone();
            if stalling.contains(&i) {
                env.push(("AETHER_TEST_STALL", "97".to_string()));
            }
            Role::spawn("subscriber", &env)
        })
        .collect();
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
        p.expect("done");
    }
    for p in pubs {
        p.wait_ok();
    }
    for mut s in subs {
        let r = s.line();
        let (delivered, lost) = (field(&r, "delivered"), field(&r, "lost"));
        assert_eq!(
            (field(&r, "bad"), field(&r, "gaps")),
            (0, 0),
            "checksums and order: {r}"
        );
        assert_eq!(delivered + lost, total, "delivered + lost = published: {r}");
        if policy == Policy::Reliable {
            assert_eq!(lost, 0, "reliable loses nothing: {r}");
        }
        s.wait_ok();
    }
}

#[test]
fn reliable_4_publishers_4_subscribers_gap_free() {
    run_4x4(Policy::Reliable, 250_000);
}

/// Large messages (up to 64 KiB, so about half are 32 KiB and up) in a
/// 1 MiB ring, by default in caught-up laps: while all four subscribers
/// keep up, publishers cut laps short and may write over the padding where
/// subscribers sit (the lap line); two subscribers stop now and then, so
/// laps are also whole, and publishers wait. Every subscriber gets every
/// message, intact, each publisher's in order.
#[test]
fn reliable_large_messages_4_publishers_4_subscribers_gap_free() {
    run_4x4_sized(Policy::Reliable, 3_000, 65536, 1 << 20, &[1, 3]);
}

#[test]
fn lossy_4_publishers_4_subscribers_exact_accounting() {
    run_4x4(Policy::Lossy, 250_000);
}

#[test]
fn publishers_killed_mid_write_do_not_wedge_subscribers() {
    const CRASHES: u64 = 5;
    const PER_ROUND: u64 = 2_000;
    let d = Daemon::start();
    let client = d.client();
    let params = TopicParams {
        policy: Policy::Reliable,
        ring_size: 1 << 16,
        max_message: 512,
        max_subscribers: 8,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    };
    client.create_topic("crashy", &params).unwrap();
    let total = CRASHES * (PER_ROUND + 1);
    let base = vec![
        d.socket_env(),
        ("AETHER_TEST_TOPIC", "crashy".to_string()),
        ("AETHER_TEST_TOTAL", total.to_string()),
        ("AETHER_TEST_RELIABLE", "1".to_string()),
    ];
    let mut subs: Vec<Role> = (0..2).map(|_| Role::spawn("subscriber", &base)).collect();
    for s in &mut subs {
        s.expect("ready");
    }
    let mut p = client.publisher("crashy").unwrap();
    let mut idx = 0;
    for _ in 0..CRASHES {
        let mut crasher = Role::spawn("crasher", &base);
        crasher.expect("loaned");
        crasher.child.kill().unwrap();
        crasher.child.wait().unwrap();
        // A healthy publisher keeps going past the abandoned record.
        for _ in 0..PER_ROUND {
            p.publish(&stress_message(0, idx, 512)).unwrap();
            idx += 1;
        }
    }
    for mut s in subs {
        let r = s.line();
        assert_eq!(
            field(&r, "delivered"),
            CRASHES * PER_ROUND,
            "every committed message arrived: {r}"
        );
        assert_eq!(field(&r, "lost"), CRASHES, "each abandoned record counted once: {r}");
        assert_eq!((field(&r, "bad"), field(&r, "gaps")), (0, 0), "{r}");
        s.wait_ok();
    }
}
