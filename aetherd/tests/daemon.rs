//! The daemon as an operator sees it: graceful drain on SIGTERM, statistics
//! on SIGUSR1, deleted topics, clients that die while their socket lives on,
//! restart after kill -9, named threads.

mod common;

use aether::{Client, Policy, Status, SubscriberConfig, TopicParams};
use common::*;
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    let socket = PathBuf::from(env_var("AETHER_TEST_SOCKET"));
    let topic = env_var("AETHER_TEST_TOPIC");
    let client = Client::connect_with(Some(&socket), false).expect("connect");
    match role.as_str() {
        // Reads until an error, then reports how many it got and which error ended it.
        "reader" => {
            let mut s = client
                .subscriber(&topic, &SubscriberConfig::default())
                .expect("subscriber");
            println!("AETHER:ready");
            let mut n = 0u64;
            let end = loop {
                match s.receive(Some(Duration::from_secs(20))) {
                    Ok(Some(_)) => {
                        n += 1;
                        if n == 1 {
                            // Slow down so that the drain has something left to wait for.
                            std::thread::sleep(Duration::from_millis(300));
                        }
                    }
                    Ok(None) => break "timeout".to_string(),
                    Err(e) => break format!("{:?}", e.status),
                }
            };
            println!("AETHER:result received={n} end={end}");
        }
        // Subscribes, then forks a child that keeps the connection open, and waits to be killed.
        "forker" => {
            let _s = client
                .subscriber(&topic, &SubscriberConfig::default())
                .expect("subscriber");
            // SAFETY: the child only calls async-signal-safe functions (pause) until killed.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                loop {
                    // SAFETY: pause has no preconditions.
                    unsafe { libc::pause() };
                }
            }
            println!("AETHER:forked child={pid}");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn role_env(d: &Daemon, topic: &str) -> Vec<(&'static str, String)> {
    vec![d.socket_env(), ("AETHER_TEST_TOPIC", topic.to_string())]
}

#[test]
fn sigterm_drains_subscribers_then_closes_everything() {
    let mut d = Daemon::start();
    let client = d.client();
    client
        .create_topic(
            "drain",
            &TopicParams {
                policy: Policy::Reliable,
                ..TopicParams::default()
            },
        )
        .unwrap();
    let mut reader = Role::spawn("reader", &role_env(&d, "drain"));
    reader.expect("ready");
    let mut p = client.publisher("drain").unwrap();
    for i in 0..200u32 {
        p.publish(&i.to_le_bytes()).unwrap();
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    // Publishing is refused once the drain begins (the reader is still reading);
    // what got in before that is delivered too.
    let mut accepted = 200;
    wait_for("publishes to be refused", Duration::from_secs(5), || {
        match p.publish(b"late") {
            Ok(_) => {
                accepted += 1;
                false
            }
            Err(e) => e.status == Status::Shutdown,
        }
    });
    let r = reader.line();
    assert_eq!(
        field(&r, "received"),
        accepted,
        "everything published before the drain was delivered: {r}"
    );
    assert!(r.ends_with("end=Shutdown"), "then a clear Shutdown, not a hang: {r}");
    reader.wait_ok();
    assert!(d.stop().success(), "aetherd exits 0 after draining");
    assert!(!d.socket.exists());
    assert!(
        shm_objects(d.instance_id).is_empty(),
        "segments and the instance lock removed"
    );
    // The control connection of a client that stayed is closed; the daemon
    // has exited since, so its next request says the daemon is gone.
    assert_eq!(
        client
            .create_topic("after", &TopicParams::default())
            .unwrap_err()
            .status,
        Status::Unavailable
    );
}

#[test]
fn sigusr1_writes_statistics_that_match_the_traffic() {
    let d = Daemon::start();
    let client = d.client();
    client.create_topic("counted", &TopicParams::default()).unwrap();
    let mut s = client.subscriber("counted", &SubscriberConfig::default()).unwrap();
    let mut p = client.publisher("counted").unwrap();
    for i in 0..1000u32 {
        p.publish(&i.to_le_bytes()).unwrap();
    }
    for _ in 0..600 {
        s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
    }
    let file = d.socket.with_file_name("aetherd.stats.json");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGUSR1) };
    wait_for("the stats file", Duration::from_secs(5), || file.exists());
    let mut text = String::new();
    wait_for("complete JSON", Duration::from_secs(5), || {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&text).is_ok()
    });
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let topic = &v["topics"][0];
    assert_eq!(topic["name"], "counted");
    assert_eq!(topic["published"], 1000);
    // Nobody ever had to sleep, so no publish made a FUTEX_WAKE system call.
    assert_eq!((topic["waits"].as_u64(), topic["wakes"].as_u64()), (Some(0), Some(0)));
    assert_eq!(
        (topic["publishers"].as_u64(), topic["subscribers"].as_u64()),
        (Some(1), Some(1))
    );
    let sub = &v["subscribers"][0];
    assert_eq!(
        (sub["delivered"].as_u64(), sub["lag_messages"].as_u64()),
        (Some(600), Some(400)),
        "{sub}"
    );
    assert_eq!(sub["pid"].as_u64(), Some(std::process::id() as u64));
    assert_eq!(v["daemon"]["clients"].as_u64(), Some(1));
}

#[test]
fn deleting_a_topic_tells_its_open_handles() {
    let d = Daemon::start();
    let client = d.client();
    client.create_topic("doomed", &TopicParams::default()).unwrap();
    let mut s = client.subscriber("doomed", &SubscriberConfig::default()).unwrap();
    let mut p = client.publisher("doomed").unwrap();
    p.publish(b"one").unwrap();
    d.client().delete_topic("doomed").unwrap();
    assert_eq!(
        s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
        b"one",
        "what was published is still read"
    );
    assert_eq!(
        s.receive(Some(Duration::from_secs(5))).unwrap_err().status,
        Status::NotFound
    );
    assert_eq!(p.publish(b"two").unwrap_err().status, Status::NotFound);
    assert!(
        shm_objects(d.instance_id).iter().all(|n| !n.ends_with(".doomed")),
        "the name is gone"
    );
    wait_for("the daemon to drop the deleted segment", Duration::from_secs(5), || {
        !daemon_segments(d.child.id()).iter().any(|t| t == "doomed")
    });
}

#[test]
fn a_dead_client_is_released_even_if_a_child_keeps_its_socket() {
    let d = Daemon::start();
    let client = d.client();
    let params = TopicParams {
        policy: Policy::Reliable,
        ring_size: 1 << 14,
        max_message: 512,
        max_subscribers: 4,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    };
    client.create_topic("held", &params).unwrap();
    let mut forker = Role::spawn("forker", &role_env(&d, "held"));
    let grandchild = field(&forker.line(), "child") as i32;
    let mut p = client.publisher("held").unwrap();
    p.set_timeout(Some(Duration::from_millis(100)));
    // Its subscriber reads nothing: the ring fills.
    assert!(
        publish_until_blocked(&mut p, 200, 500),
        "a subscriber that reads nothing holds a reliable publisher"
    );
    forker.child.kill().unwrap();
    forker.child.wait().unwrap();
    // The socket is still open in the grandchild; the daemon's pidfd notices the death.
    p.set_timeout(Some(Duration::from_secs(5)));
    let resumed = (0..200).all(|_| p.publish(&[0u8; 500]).is_ok());
    // SAFETY: killing the grandchild this test created.
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    assert!(resumed, "the dead client's slot was freed");
}

#[test]
fn restart_after_kill_9_leaves_nothing_and_spares_a_live_daemon() {
    let live = Daemon::start();
    live.client().create_topic("alive", &TopicParams::default()).unwrap();
    let mut dead = Daemon::start();
    let holder = dead.client();
    holder.create_topic("left", &TopicParams::default()).unwrap();
    let mut sub = holder.subscriber("left", &SubscriberConfig::default()).unwrap();
    dead.child.kill().unwrap(); // kill -9: no cleanup
    dead.child.wait().unwrap();
    // Segments are sealed memfds and queues are unlinked at once: nothing to clean up.
    assert!(shm_objects(dead.instance_id).is_empty());
    // A client of the dead daemon gets a clear error, not a hang.
    assert_eq!(
        holder.create_topic("x", &TopicParams::default()).unwrap_err().status,
        Status::Unavailable
    );
    // Its mapping stays valid (no crash), and its next receive says the daemon died.
    assert_eq!(
        sub.receive(Some(Duration::from_millis(50))).unwrap_err().status,
        Status::Unavailable
    );
    // A new daemon on the same socket path starts despite the stale socket and lock file.
    let restarted = std::process::Command::new(AETHERD)
        .arg("--socket")
        .arg(&dead.socket)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut restarted = scopeguard(restarted);
    wait_for("the restarted daemon", Duration::from_secs(10), || {
        Client::connect_with(Some(&dead.socket), false).is_ok()
    });
    live.client()
        .publisher("alive")
        .expect("the live daemon still serves its topic");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(restarted.0.id() as i32, libc::SIGTERM) };
    assert!(restarted.0.wait().unwrap().success());
}

/// Kills the child on drop (test failure included).
struct Guard(std::process::Child);
fn scopeguard(c: std::process::Child) -> Guard {
    Guard(c)
}
impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn daemon_threads_are_named() {
    let d = Daemon::start();
    let _c = d.client();
    let names = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/task", d.child.id()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|s| s.trim().to_string())
            .collect()
    };
    // The daemon answers before every thread has started (and named itself):
    // on a loaded machine housekeeping may come a moment later.
    let wanted = ["aetherd-accept", "aetherd-houseke", "aetherd-client"];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = names();
    while !wanted.iter().all(|w| seen.iter().any(|n| n == w)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = names();
    }
    for want in wanted {
        assert!(seen.iter().any(|n| n == want), "{want} in {seen:?}");
    }
}

#[test]
fn commit_publishes_at_most_what_was_loaned() {
    let d = Daemon::start();
    let client = d.client();
    client.create_topic("loans", &TopicParams::default()).unwrap();
    let mut p = client.publisher("loans").unwrap();
    p.loan(10).unwrap().fill(7);
    assert_eq!(
        p.commit(32).unwrap_err().status,
        Status::TooLarge,
        "the stride's slack is not part of the loan"
    );
    p.commit(10).unwrap();
}

#[test]
fn closing_a_handle_of_a_deleted_topic_does_not_touch_its_successor() {
    let d = Daemon::start();
    let client = d.client();
    let reliable = TopicParams {
        policy: Policy::Reliable,
        ring_size: 4096,
        max_message: 100,
        max_subscribers: 4,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    };
    client.create_topic("again", &reliable).unwrap();
    let old = client.subscriber("again", &SubscriberConfig::default()).unwrap();
    client.delete_topic("again").unwrap();
    client.create_topic("again", &reliable).unwrap();
    let new = client.subscriber("again", &SubscriberConfig::default()).unwrap(); // same slot number as `old`
    drop(old); // its close names the old incarnation: refused, the new slot stays
    let mut p = client.publisher("again").unwrap();
    p.set_timeout(Some(Duration::from_millis(100)));
    assert!(
        publish_until_blocked(&mut p, 100, 100),
        "the new subscriber still holds the reliable publisher back"
    );
    drop(new);
}

/// The ring of `topic` as `aether-cli topics` shows it.
fn ring_of(socket: &std::path::Path, topic: &str) -> u64 {
    topic_row(socket, topic)["ring_size"].as_u64().unwrap()
}

/// A topic that leaves its ring to the library gets one sized for its
/// messages: 1 MiB for 64 B and for 64 KiB, 4 MiB for 1 MiB, 8 MiB for
/// 3 MiB (which the old fixed 4 MiB default refused), through the client
/// library and through `aether-cli create` with no ring given (the
/// daemon's defaults); a ring given stays as given; and a 3 MiB message
/// crosses between processes' handles.
#[test]
fn a_topic_left_to_the_default_ring_gets_one_sized_for_its_messages() {
    let d = Daemon::start();
    let c = d.client();
    for (topic, max_message, ring) in [
        ("s64", 64, 1 << 20),
        ("s64k", 64 << 10, 1 << 20),
        ("s1m", 1 << 20, 4 << 20),
        ("s3m", 3 << 20, 8 << 20),
    ] {
        let params = TopicParams {
            max_message,
            ..TopicParams::default()
        };
        c.create_topic(topic, &params).unwrap();
        assert_eq!(ring_of(&d.socket, topic), ring, "{topic}");
    }
    let create = |topic: &str, ring_size, max_message| aetherd::admin::Command::Create {
        topic: topic.into(),
        policy: None,
        ring_size,
        max_message,
        fsync: None,
        huge_pages: None,
        retain_bytes: None,
        retain_seconds: None,
    };
    let admin = |cmd| aetherd::admin::call(&d.socket, cmd, Duration::from_secs(5)).unwrap();
    admin(create("cli-default", None, None));
    admin(create("cli-2m", None, Some(2 << 20)));
    admin(create("cli-set", Some(1 << 16), Some(1000)));
    assert_eq!(ring_of(&d.socket, "cli-default"), 1 << 20);
    assert_eq!(ring_of(&d.socket, "cli-2m"), 8 << 20);
    assert_eq!(ring_of(&d.socket, "cli-set"), 1 << 16);
    let set = TopicParams {
        ring_size: 1 << 16,
        max_message: 1000,
        ..TopicParams::default()
    };
    c.create_topic("set", &set).unwrap();
    assert_eq!(ring_of(&d.socket, "set"), 1 << 16);
    // The largest message of the biggest one, published and received.
    let mut s = c.subscriber("s3m", &SubscriberConfig::default()).unwrap();
    let mut p = c.publisher("s3m").unwrap();
    let big: Vec<u8> = (0..3u32 << 20).map(|i| i as u8).collect();
    p.publish(&big).unwrap();
    let m = s.receive(Some(Duration::from_secs(10))).unwrap().expect("the message");
    assert_eq!(m.data, big);
}

/// A client that speaks the protocol itself may send `ring_size` 0: the
/// daemon sizes the ring as the library would; with a `max_message` no
/// ring can take (0 or past 2^30), it is refused as `Invalid` and nothing
/// is made.
#[test]
fn a_raw_create_with_ring_zero_is_sized_or_refused() {
    use aether::protocol::{self, Op, Request};
    let d = Daemon::start();
    let c = d.client();
    let raw = aether::sys::uds::SeqPacket::connect(&d.socket).unwrap();
    let create = |id: u32, topic: &str, max_message: u64| {
        let params = TopicParams {
            ring_size: 0,
            max_message,
            ..TopicParams::default()
        };
        let req = Request::TopicCreate {
            topic: topic.into(),
            params,
        };
        raw.send(&protocol::encode_request(&req, id), None).unwrap();
        let mut buf = vec![0u8; 8192];
        let (n, _) = raw.recv_fds(&mut buf, 8).unwrap();
        protocol::decode_reply(Op::TopicCreate, id, &buf[..n])
            .unwrap()
            .map(drop)
            .map_err(|e| e.status)
    };
    assert_eq!(create(1, "raw-sized", 1 << 20), Ok(()));
    assert_eq!(ring_of(&d.socket, "raw-sized"), 4 << 20);
    for (id, max_message) in [(2, 0), (3, 1 << 30), (4, u64::MAX)] {
        assert_eq!(
            create(id, "raw-refused", max_message),
            Err(Status::Invalid),
            "{max_message}"
        );
        assert_eq!(c.topic_stats("raw-refused").unwrap_err().status, Status::NotFound);
    }
}
