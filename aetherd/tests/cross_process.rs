//! End-to-end tests across real processes: a private `aetherd`, publishers
//! and subscribers in separate processes (this binary re-executed in a role).

mod common;

use aether::{Client, Policy, Status, SubscriberConfig, TopicParams};
use common::*;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

/// A topic's parameters for these tests: up to 8 subscribers.
fn topic(policy: Policy, ring_size: u64, max_message: u64) -> TopicParams {
    TopicParams {
        policy,
        ring_size,
        max_message,
        max_subscribers: 8,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    }
}

/// Entry point of child processes; a no-op when run as an ordinary test.
#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    let socket = PathBuf::from(env_var("AETHER_TEST_SOCKET"));
    let topic = std::env::var("AETHER_TEST_TOPIC").unwrap_or_default();
    let num = |k: &str| -> u64 { env_var(k).parse().expect("number") };
    match role.as_str() {
        "publisher" => {
            let (count, max) = (num("AETHER_TEST_COUNT"), num("AETHER_TEST_MAX") as usize);
            // Pause now and then, so that subscribers fall asleep between messages.
            let pause_every = std::env::var("AETHER_TEST_PAUSE_EVERY").map_or(0, |v| v.parse().expect("number"));
            let client = Client::connect(Some(&socket)).expect("connect");
            let mut p = client.publisher(&topic).expect("publisher");
            p.set_timeout(Some(Duration::from_secs(30)));
            for i in 0..count {
                p.publish(&message(i, size_of_msg(i, max))).expect("publish");
                if pause_every > 0 && i % pause_every == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            println!("AETHER:done");
        }
        "subscriber" => {
            let (count, max) = (num("AETHER_TEST_COUNT"), num("AETHER_TEST_MAX") as usize);
            let slow = std::env::var("AETHER_TEST_SLOW").is_ok();
            let mut cfg = SubscriberConfig::default();
            if std::env::var("AETHER_TEST_NO_SPIN").is_ok() {
                // Straight to the futex whenever nothing is there.
                cfg.wait.spin = 0;
            }
            let client = Client::connect(Some(&socket)).expect("connect");
            let mut s = client.subscriber(&topic, &cfg).expect("subscriber");
            println!("AETHER:ready");
            if let Ok(go) = std::env::var("AETHER_TEST_GO_FILE") {
                wait_for("go file", Duration::from_secs(30), || {
                    std::path::Path::new(&go).exists()
                });
            }
            let mut buf = vec![0u8; s.max_message()];
            let (mut bad, mut errors, mut last) = (0u64, 0u64, None::<u64>);
            while s.delivered() + s.lost() < count {
                match s.receive_into(&mut buf, Some(Duration::from_secs(5))) {
                    Ok(r) => {
                        let ordered = last.is_none_or(|l| r.seq > l);
                        if !ordered || buf[..r.len] != message(r.seq, size_of_msg(r.seq, max))[..] {
                            bad += 1;
                        }
                        last = Some(r.seq);
                        if slow && r.seq % 64 == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    Err(e) if e.status == Status::Timeout => break,
                    Err(e) if e.status == Status::Corrupt => errors += 1,
                    Err(e) => panic!("receive: {e}"),
                }
            }
            println!(
                "AETHER:result delivered={} lost={} bad={bad} errors={errors}",
                s.delivered(),
                s.lost()
            );
        }
        "poller" => {
            // Waits only in poll(2) on the subscriber's descriptor; counts
            // polls that time out (a lost wake-up) and this process's threads.
            let (count, max) = (num("AETHER_TEST_COUNT"), num("AETHER_TEST_MAX") as usize);
            let mut cfg = SubscriberConfig::default();
            if std::env::var("AETHER_TEST_DELIVERY").as_deref() == Ok("mqueue") {
                cfg.delivery = aether::Delivery::Mqueue;
            }
            let threads_before = threads();
            let client = Client::connect(Some(&socket)).expect("connect");
            let mut s = client.subscriber(&topic, &cfg).expect("subscriber");
            let fd = s.fd().expect("pollable descriptor").as_raw_fd();
            println!("AETHER:ready");
            let mut buf = vec![0u8; s.max_message()];
            let (mut bad, mut stalls, mut polls) = (0u64, 0u64, 0u64);
            while s.delivered() + s.lost() < count && stalls < 3 {
                match s.receive_into(&mut buf, Some(Duration::ZERO)) {
                    Ok(r) => bad += u64::from(buf[..r.len] != message(r.seq, size_of_msg(r.seq, max))[..]),
                    Err(e) if e.status == Status::Timeout => {
                        polls += 1;
                        let mut p = libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one pollfd for a descriptor the subscriber keeps open.
                        if unsafe { libc::poll(&mut p, 1, 5000) } != 1 {
                            stalls += 1;
                        }
                    }
                    Err(e) => panic!("receive: {e}"),
                }
            }
            println!(
                "AETHER:result delivered={} lost={} bad={bad} stalls={stalls} polls={polls} threads_added={}",
                s.delivered(),
                s.lost(),
                threads() - threads_before
            );
        }
        "hello" => {
            let client = Client::connect(Some(&socket)).expect("connect (auto-start)");
            println!("AETHER:pid={}", client.daemon_pid());
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// This process's threads (the `Threads:` line of /proc/self/status).
fn threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .expect("Threads: in /proc/self/status")
}

fn stream_env(d: &Daemon, topic: &str, count: u64, max: u64) -> Vec<(&'static str, String)> {
    vec![
        d.socket_env(),
        ("AETHER_TEST_TOPIC", topic.to_string()),
        ("AETHER_TEST_COUNT", count.to_string()),
        ("AETHER_TEST_MAX", max.to_string()),
    ]
}

/// Subscribers that go to sleep whenever the ring is empty are woken for
/// every message whether each process uses membarrier (the publisher skips
/// its fence) or opted out (`AETHER_MEMBARRIER=off`: it fences), in every
/// mix. A lost wake-up would leave a subscriber asleep past its 5 s receive
/// timeout, and the stream incomplete.
#[test]
fn sleeping_subscribers_are_woken_with_and_without_membarrier() {
    // The children run on this kernel: if it refuses us, "on" fences too.
    if !aether::sys::membarrier::register() {
        eprintln!("membarrier is unavailable here: every case tests the fenced path");
    }
    let d = Daemon::start();
    let params = topic(Policy::Reliable, 1 << 16, 256);
    for (publisher, subscriber) in [("on", "on"), ("off", "on"), ("on", "off"), ("off", "off")] {
        let topic = format!("wake-{publisher}-{subscriber}");
        d.client().create_topic(&topic, &params).unwrap();
        let mut env = stream_env(&d, &topic, 20_000, 256);
        env.push(("AETHER_TEST_NO_SPIN", "1".into()));
        env.push(("AETHER_MEMBARRIER", subscriber.into()));
        let mut sub = Role::spawn("subscriber", &env);
        sub.expect("ready");
        env.retain(|(k, _)| *k != "AETHER_MEMBARRIER" && *k != "AETHER_TEST_NO_SPIN");
        env.push(("AETHER_MEMBARRIER", publisher.into()));
        env.push(("AETHER_TEST_PAUSE_EVERY", "16".into()));
        let mut publ = Role::spawn("publisher", &env);
        publ.expect("done");
        publ.wait_ok();
        let r = sub.line();
        assert_eq!(
            (field(&r, "delivered"), field(&r, "lost"), field(&r, "bad")),
            (20_000, 0, 0),
            "publisher membarrier {publisher}, subscriber {subscriber}: {r}"
        );
        sub.wait_ok();
        let stats = aetherd::admin::call(&d.socket, aetherd::admin::Command::Stats, Duration::from_secs(5)).unwrap();
        let waits = stats["topics"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == topic.as_str()))
            .and_then(|t| t["waits"].as_u64())
            .unwrap_or_else(|| panic!("no waits for {topic} in {stats}"));
        assert!(
            waits >= 100,
            "{topic}: the subscriber slept only {waits} times: the test proves little"
        );
    }
}

/// Issue 16: a subscriber that waits only in poll(2) on `Subscriber::fd`
/// (an eventfd for shared-memory delivery, the queue for mqueue delivery)
/// gets every message from a publisher in another process that pauses now
/// and then, with no poll timing out (no lost wake-up) and no thread added.
#[test]
fn pollable_subscribers_wake_on_their_descriptor_alone() {
    let d = Daemon::start();
    let params = topic(Policy::Reliable, 1 << 16, 256);
    for (delivery, count) in [("shm", 20_000u64), ("mqueue", 2_000)] {
        let topic = format!("poll-{delivery}");
        d.client().create_topic(&topic, &params).unwrap();
        let mut env = stream_env(&d, &topic, count, 256);
        env.push(("AETHER_TEST_DELIVERY", delivery.into()));
        let mut sub = Role::spawn("poller", &env);
        sub.expect("ready");
        env.push(("AETHER_TEST_PAUSE_EVERY", "16".into()));
        let mut publ = Role::spawn("publisher", &env);
        publ.expect("done");
        publ.wait_ok();
        let r = sub.line();
        assert_eq!(
            (
                field(&r, "delivered"),
                field(&r, "lost"),
                field(&r, "bad"),
                field(&r, "stalls")
            ),
            (count, 0, 0, 0),
            "{delivery}: {r}"
        );
        assert_eq!(field(&r, "threads_added"), 0, "{delivery}: {r}");
        assert!(
            field(&r, "polls") >= 50,
            "{delivery}: it hardly ever waited, the test proves little: {r}"
        );
        sub.wait_ok();
    }
}

#[test]
fn reliable_one_publisher_three_subscribers_100k_messages() {
    let d = Daemon::start();
    let params = topic(Policy::Reliable, 1 << 18, 4096);
    d.client().create_topic("stream", &params).unwrap();
    let env = stream_env(&d, "stream", 100_000, 4096);
    let mut subs: Vec<Role> = (0..3).map(|_| Role::spawn("subscriber", &env)).collect();
    for s in &mut subs {
        s.expect("ready");
    }
    let mut publ = Role::spawn("publisher", &env);
    publ.expect("done");
    publ.wait_ok();
    for s in subs {
        got_all(s, 100_000, "");
    }
}

/// A subscriber role's result: every one of `count` messages delivered,
/// intact and in order, none lost, no error; then it exits cleanly.
fn got_all(mut s: Role, count: u64, what: &str) {
    let r = s.line();
    assert_eq!(
        (
            field(&r, "delivered"),
            field(&r, "lost"),
            field(&r, "bad"),
            field(&r, "errors")
        ),
        (count, 0, 0, 0),
        "{what}: {r}"
    );
    s.wait_ok();
}

/// Messages up to 64 KiB, half of them large (32 KiB and up), from a
/// publisher process whose large records keep to short laps, to whole ones,
/// to whichever it measures faster, or to short laps only when both
/// subscribers have read everything (`AETHER_LARGE_LAPS`; the last is the
/// default), reach a subscriber that keeps up and one that falls behind
/// (the publisher waits for it), each intact and in order.
#[test]
fn large_messages_cross_in_short_and_whole_laps() {
    let d = Daemon::start();
    // Ring 0: sized for the messages (1 MiB for 64 KiB).
    let params = topic(Policy::Reliable, 0, 65536);
    for laps in ["short", "whole", "measured", "caught-up"] {
        let topic = format!("large-{laps}");
        d.client().create_topic(&topic, &params).unwrap();
        let mut env = stream_env(&d, &topic, 5_000, 65536);
        let mut fast = Role::spawn("subscriber", &env);
        env.push(("AETHER_TEST_SLOW", "1".into()));
        let mut slow = Role::spawn("subscriber", &env);
        fast.expect("ready");
        slow.expect("ready");
        env.retain(|(k, _)| *k != "AETHER_TEST_SLOW");
        env.push(("AETHER_LARGE_LAPS", laps.into()));
        let mut publ = Role::spawn("publisher", &env);
        publ.expect("done");
        publ.wait_ok();
        for s in [fast, slow] {
            got_all(s, 5_000, laps);
        }
    }
}

/// `Publisher::set_large_laps` through the public API. A subscriber that
/// reads two or all four 64 KiB messages in a reliable 1 MiB ring, then
/// stops. Two behind, the publisher fits 12 or more messages more before
/// it must wait in caught-up laps (the default: no lap is cut short while
/// a subscriber is behind); in short laps, having padded to the next lap
/// while the subscriber was close, only the two whose room that subscriber
/// has freed (the padding counts until it passes it). Caught up, 14 or 15
/// by default (a subscriber at a lap cut short counts as past it), 3 or 4
/// in short laps.
#[test]
fn a_publisher_asks_for_short_laps() {
    let d = Daemon::start();
    let c = d.client();
    let short = Some(aether::LargeLaps::Short);
    for (i, (laps, read, room)) in [(None, 2, 12..16), (short, 2, 1..4), (None, 4, 14..16), (short, 4, 3..5)]
        .into_iter()
        .enumerate()
    {
        let name = format!("laps-{i}");
        c.create_topic(&name, &topic(Policy::Reliable, 1 << 20, 65536)).unwrap();
        let mut sub = c.subscriber(&name, &SubscriberConfig::default()).unwrap();
        let mut p = c.publisher(&name).unwrap();
        if let Some(l) = laps {
            p.set_large_laps(l);
        }
        let (data, mut buf) = (vec![5u8; 65536], vec![0u8; 65536]);
        for _ in 0..4 {
            p.publish(&data).unwrap();
        }
        for _ in 0..read {
            sub.receive_into(&mut buf, Some(Duration::from_secs(5))).unwrap();
        }
        p.set_timeout(Some(Duration::ZERO));
        let mut n = 0;
        while p.publish(&data).is_ok() {
            n += 1;
        }
        assert!(
            room.contains(&n),
            "{laps:?}, {read} read: {n} more fitted, not {room:?}"
        );
        // And every message arrives.
        for _ in 0..4 - read + n {
            sub.receive_into(&mut buf, Some(Duration::from_secs(5))).unwrap();
        }
    }
}

#[test]
fn lossy_topic_reports_every_loss_exactly() {
    let d = Daemon::start();
    let params = topic(Policy::Lossy, 1 << 14, 1024);
    d.client().create_topic("lossy", &params).unwrap();
    let env = stream_env(&d, "lossy", 100_000, 1024);
    let mut slow_env = env.clone();
    slow_env.push(("AETHER_TEST_SLOW", "1".into()));
    let mut subs = vec![
        Role::spawn("subscriber", &env),
        Role::spawn("subscriber", &env),
        Role::spawn("subscriber", &slow_env),
    ];
    for s in &mut subs {
        s.expect("ready");
    }
    let mut publ = Role::spawn("publisher", &env);
    publ.expect("done");
    publ.wait_ok();
    let mut lost = Vec::new();
    for mut s in subs {
        let r = s.line();
        assert_eq!(
            field(&r, "delivered") + field(&r, "lost"),
            100_000,
            "delivered + lost = published: {r}"
        );
        assert_eq!(
            (field(&r, "bad"), field(&r, "errors")),
            (0, 0),
            "every delivered message intact and in order: {r}"
        );
        lost.push(field(&r, "lost"));
        s.wait_ok();
    }
    assert!(lost[2] > 0, "the slow subscriber on a 16 KiB ring was lapped");
}

/// Offset of the ring inside a segment, from its header (Meta.ring_offset).
fn ring_offset(seg: &[u8]) -> usize {
    u32::from_le_bytes(seg[12..16].try_into().unwrap()) as usize
}

#[test]
fn garbage_in_the_segment_gives_subscribers_an_error_not_a_crash() {
    let d = Daemon::start();
    let client = d.client();
    client
        .create_topic(
            "victim",
            &TopicParams {
                ring_size: 1 << 16,
                max_message: 1024,
                ..TopicParams::default()
            },
        )
        .unwrap();
    let go = d.dir.0.join("go");
    let mut env = stream_env(&d, "victim", 50, 1024);
    env.push(("AETHER_TEST_GO_FILE", go.display().to_string()));
    let mut sub = Role::spawn("subscriber", &env);
    sub.expect("ready");
    let mut p = client.publisher("victim").unwrap();
    for i in 0..50 {
        p.publish(&message(i, size_of_msg(i, 1024))).unwrap();
    }
    // Random bytes over the whole ring while the subscriber has 50 unread
    // messages, written through this process's own mapping of the segment,
    // as any hostile publisher could (only publishers map it writable).
    let spy = client.publisher("victim").unwrap();
    let (base, len) = spy.mapping_range();
    // SAFETY: [base, base + len) is `spy`'s live, writable mapping of the
    // segment; the bytes are plain memory other processes only read through
    // atomics and checks.
    let seg = unsafe { std::slice::from_raw_parts_mut(base as *mut u8, len) };
    let off = ring_offset(seg);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in &mut seg[off..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&go, b"").unwrap();
    let r = sub.line();
    assert!(field(&r, "errors") >= 1, "the subscriber reported corruption: {r}");
    assert_eq!(field(&r, "bad"), 0, "nothing garbled was delivered as a message: {r}");
    sub.wait_ok();
    // A corrupt header: new subscribers are refused with a clear error.
    seg[0] ^= 0xff;
    let err = client
        .subscriber("victim", &SubscriberConfig::default())
        .err()
        .expect("open must fail");
    assert_eq!(err.status, Status::Corrupt, "{err}");
    drop(spy);
}

#[test]
fn a_killed_subscriber_stops_holding_back_a_reliable_publisher() {
    let d = Daemon::start();
    let client = d.client();
    client
        .create_topic(
            "gated",
            &TopicParams {
                policy: Policy::Reliable,
                ring_size: 1 << 14,
                max_message: 512,
                max_subscribers: 4,
                wal: None,
                huge_pages: false,
                retain_bytes: None,
                retain_seconds: None,
            },
        )
        .unwrap();
    let mut sub = Role::spawn("subscriber", &stream_env(&d, "gated", 1_000_000, 512));
    sub.expect("ready");
    let mut p = client.publisher("gated").unwrap();
    p.set_timeout(Some(Duration::from_millis(200)));
    // Freeze the subscriber: its cursor stops, so the ring fills up.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sub.child.id() as i32, libc::SIGSTOP) };
    let stat = format!("/proc/{}/stat", sub.child.id());
    wait_for("the subscriber to stop", Duration::from_secs(5), || {
        // The state is the field after the parenthesised command name.
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('T')))
    });
    assert!(
        publish_until_blocked(&mut p, 1000, 500),
        "a stopped subscriber holds a reliable publisher back"
    );
    let _ = sub.child.kill();
    let _ = sub.child.wait();
    // The daemon sees the socket close and frees the slot: publishing resumes.
    p.set_timeout(Some(Duration::from_secs(5)));
    for i in 0..1000 {
        p.publish(&message(i, 500)).expect("publish after the subscriber died");
    }
}

#[test]
fn sigterm_removes_socket_and_segments() {
    let mut d = Daemon::start();
    let client = d.client();
    for t in ["a", "b", "c"] {
        client.create_topic(t, &TopicParams::default()).unwrap();
    }
    // Segments are sealed memfds: nothing in /dev/shm, ever.
    assert!(shm_objects(d.instance_id).is_empty());
    drop(client);
    assert!(d.stop().success());
    assert!(!d.socket.exists(), "socket removed");
    assert!(!aetherd::admin::pipe_path(&d.socket).exists(), "admin pipe removed");
}

#[test]
fn second_daemon_on_the_same_socket_refuses() {
    let d = Daemon::start();
    let out = std::process::Command::new(AETHERD)
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.client(); // the first one still serves
}

#[test]
fn no_daemon_and_autostart_off_is_unavailable() {
    let dir = TempDir::new("none");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--quiet"])
        .env("AETHER_CHILD_ROLE", "hello")
        .env("AETHER_NO_AUTOSTART", "1")
        .env("AETHER_TEST_SOCKET", dir.0.join("nobody.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unavailable") && err.contains("nobody.sock"), "{err}");
}

#[test]
fn racing_clients_autostart_exactly_one_daemon() {
    let dir = TempDir::new("auto");
    let socket = dir.0.join("auto.sock");
    let env = [
        ("AETHER_TEST_SOCKET", socket.display().to_string()),
        ("AETHER_DAEMON", AETHERD.to_string()),
    ];
    let mut kids: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.args(["--exact", "child_main", "--nocapture", "--quiet"])
                .env("AETHER_CHILD_ROLE", "hello");
            for (k, v) in &env {
                cmd.env(k, v);
            }
            cmd.stdout(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let pids: Vec<u64> = kids
        .iter_mut()
        .map(|k| {
            let out = k.wait_with_output_ref();
            field(
                out.lines().find_map(|l| l.strip_prefix("AETHER:")).expect("pid line"),
                "pid",
            )
        })
        .collect();
    assert!(pids.iter().all(|p| *p == pids[0]), "one daemon for all: {pids:?}");
    // Stop the auto-started daemon and wait until it has cleaned up.
    // SAFETY: signalling the daemon these tests started.
    unsafe { libc::kill(pids[0] as i32, libc::SIGTERM) };
    wait_for("auto-started daemon to exit", Duration::from_secs(10), || {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pids[0] as i32, 0) != 0 }
    });
    assert!(!socket.exists());
    // An auto-started daemon logs next to its socket (issue 16), not to /dev/null.
    let log = std::fs::read_to_string(dir.0.join("aetherd.log")).unwrap_or_default();
    assert!(
        log.contains("listening on") && log.contains("auto.sock"),
        "aetherd.log: {log:?}"
    );
}

/// Issue 16: auto-start starts only a private broker. Never on the system
/// broker's path (its service starts it), never in a directory of another
/// user's; the error says which socket it tried, from where, and why.
#[test]
fn autostart_never_starts_the_system_broker_nor_one_in_a_strangers_directory() {
    let hello = |socket: &std::path::Path| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_main", "--nocapture", "--quiet"])
            .env("AETHER_CHILD_ROLE", "hello")
            .env("AETHER_TEST_SOCKET", socket)
            .env("AETHER_DAEMON", AETHERD)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let system = std::path::Path::new(aether::paths::SYSTEM_SOCKET);
    if system.exists() {
        eprintln!("(a system broker's socket exists here: its case is not played)");
    } else {
        let err = hello(system);
        assert!(
            err.contains("never auto-started") && err.contains("systemctl start aetherd"),
            "{err}"
        );
        assert!(!system.exists() && !system.parent().unwrap().join("aetherd.sock.lock").exists());
    }
    // A directory of another user's: root plays it with a chowned directory,
    // anyone else with `/` (root's).
    let dir = TempDir::new("stranger");
    // SAFETY: geteuid has no preconditions.
    let socket = if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&dir.0, Some(64300), Some(64300)).unwrap();
        dir.0.join("aetherd.sock")
    } else {
        std::path::PathBuf::from(format!("/aether-test-{}.sock", std::process::id()))
    };
    let err = hello(&socket);
    assert!(
        err.contains("auto-start only starts a private broker") && err.contains("belongs to uid"),
        "{err}"
    );
    assert!(!socket.exists());
}

trait WaitOutput {
    fn wait_with_output_ref(&mut self) -> String;
}

impl WaitOutput for std::process::Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        self.stdout.take().unwrap().read_to_string(&mut s).unwrap();
        assert!(self.wait().unwrap().success());
        s
    }
}

#[test]
fn malformed_requests_get_protocol_errors_and_the_daemon_keeps_serving() {
    use aether::protocol::{self, Request};
    use aether::sys::uds::SeqPacket;
    let d = Daemon::start();
    let raw = SeqPacket::connect(&d.socket).unwrap();
    raw.set_timeout(Some(Duration::from_secs(5))).unwrap();
    let good = protocol::encode_request(&Request::TopicDelete { topic: "x".into() }, 7);
    // (An empty packet is not among them: on SOCK_SEQPACKET it reads as end of
    // connection, and the daemon treats it so.)
    let mut bad_frames: Vec<Vec<u8>> = vec![
        vec![1, 2, 3],
        vec![0xff; 16],
        good[..good.len() - 1].to_vec(), // body shorter than announced
        vec![0u8; 5000],                 // larger than any frame
    ];
    let mut wrong_version = good.clone();
    wrong_version[4] = 9;
    bad_frames.push(wrong_version);
    let mut unknown_op = good.clone();
    unknown_op[6] = 0x7f;
    bad_frames.push(unknown_op);
    let mut trailing = good.clone();
    trailing.push(0);
    trailing[12] += 1;
    bad_frames.push(trailing);
    let structural = bad_frames.len();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..50 {
        let mut f = good.clone();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = 16 + (x as usize % (f.len() - 16));
        f[i] = (x >> 32) as u8;
        bad_frames.push(f);
    }
    let mut buf = vec![0u8; 8192];
    for (k, f) in bad_frames.iter().enumerate() {
        raw.send(f, None).unwrap();
        let (n, fd) = raw.recv(&mut buf).unwrap();
        assert!(fd.is_none() && n >= 20, "every request gets a reply");
        let status = i32::from_le_bytes(buf[16..20].try_into().unwrap());
        assert!(status < 0, "malformed frame {f:?} was accepted");
        if k < structural {
            // Framing, version, op, length: protocol errors (docs/PROTOCOL.md).
            assert_eq!(status, Status::Protocol as i32, "frame {k}: {f:?}");
        } else {
            // A flipped body byte: a broken string (protocol), a bad topic name
            // (invalid), or another, absent topic (not found); nothing else.
            let ok = [Status::Protocol, Status::Invalid, Status::NotFound].map(|s| s as i32);
            assert!(ok.contains(&status), "body flip {f:?} answered {status}");
        }
    }
    // A descriptor attached to a request is ignored; the daemon still answers.
    let file = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    raw.send(&good, Some(file.as_raw_fd())).unwrap();
    let (n, _) = raw.recv(&mut buf).unwrap();
    assert_eq!(
        i32::from_le_bytes(buf[16..20].try_into().unwrap()),
        Status::NotFound as i32,
        "{:?}",
        &buf[..n]
    );
    // Other clients were never disturbed.
    let c = d.client();
    c.create_topic("still-fine", &TopicParams::default()).unwrap();
    let mut p = c.publisher("still-fine").unwrap();
    let mut s = c.subscriber("still-fine", &SubscriberConfig::default()).unwrap();
    p.publish(b"ok").unwrap();
    assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data, b"ok");
}

#[test]
fn a_client_cannot_shrink_a_segment_under_others() {
    use aether::protocol::{self, Request};
    use aether::sys::uds::SeqPacket;
    use std::os::fd::AsRawFd;
    let d = Daemon::start();
    let client = d.client();
    client.create_topic("sealed", &TopicParams::default()).unwrap();
    let mut s = client.subscriber("sealed", &SubscriberConfig::default()).unwrap();
    // Speak the protocol directly to keep the segment descriptor, as a hostile client would.
    let raw = SeqPacket::connect(&d.socket).unwrap();
    raw.send(
        &protocol::encode_request(&Request::PublisherOpen { topic: "sealed".into() }, 1),
        None,
    )
    .unwrap();
    let mut buf = vec![0u8; 8192];
    let (_, fds) = raw.recv_fds(&mut buf, 4).unwrap();
    let fd = fds.into_iter().next().expect("a segment descriptor");
    // SAFETY: ftruncate on a descriptor we own.
    let rc = unsafe { libc::ftruncate(fd.as_raw_fd(), 0) };
    assert_eq!(
        (rc, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::EPERM)),
        "sealed against shrinking"
    );
    // Everyone still works: the daemon (stats read the segment) and the subscriber.
    let mut p = client.publisher("sealed").unwrap();
    p.publish(b"still here").unwrap();
    assert_eq!(
        s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
        b"still here"
    );
    d.client().create_topic("other", &TopicParams::default()).unwrap();
}
