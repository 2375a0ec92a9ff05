//! POSIX message queues across real processes: `delivery=mqueue`
//! subscribers (a daemon dispatch thread forwards the ring into the
//! subscriber's queue) and each client's control queue of notices.

mod common;

use aether::{Client, Delivery, Notice, Policy, Status, SubscriberConfig, TopicParams};
use common::*;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Entry point of child processes; a no-op when run as an ordinary test.
#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    let socket = PathBuf::from(env_var("AETHER_TEST_SOCKET"));
    let topic = env_var("AETHER_TEST_TOPIC");
    let num = |k: &str| -> u64 { env_var(k).parse().expect("number") };
    let client = Client::connect(Some(&socket)).expect("connect");
    match role.as_str() {
        // Publishes message(i, size_of_msg(i, MAX)) for i in 0..COUNT.
        "publisher" => {
            let (count, max) = (num("AETHER_TEST_COUNT"), num("AETHER_TEST_MAX") as usize);
            let mut p = client.publisher(&topic).expect("publisher");
            p.set_timeout(Some(Duration::from_secs(30)));
            for i in 0..count {
                p.publish(&message(i, size_of_msg(i, max))).expect("publish");
            }
            println!("AETHER:done");
        }
        // Publishes one message of each size in AETHER_TEST_SIZES (comma-separated).
        "sizes" => {
            let mut p = client.publisher(&topic).expect("publisher");
            for (i, n) in env_var("AETHER_TEST_SIZES").split(',').enumerate() {
                p.publish(&message(i as u64, n.parse().expect("size")))
                    .expect("publish");
            }
            println!("AETHER:done");
        }
        // An mqueue subscriber that waits in poll() and checks COUNT messages.
        "mq_subscriber" => {
            let (count, max) = (num("AETHER_TEST_COUNT"), num("AETHER_TEST_MAX") as usize);
            let mut s = client.subscriber(&topic, &mqueue_config()).expect("subscriber");
            println!("AETHER:ready");
            let mut buf = vec![0u8; s.max_message()];
            let (mut bad, mut last) = (0u64, None::<u64>);
            while s.delivered() + s.lost() < count {
                if !poll_in(s.fd().expect("mqueue fd").as_raw_fd(), 10_000) {
                    break;
                }
                let r = s
                    .receive_into(&mut buf, Some(Duration::ZERO))
                    .expect("receive after POLLIN");
                let ordered = last.is_none_or(|l| r.seq == l + 1) && (last.is_some() || r.seq == 0);
                if !ordered || buf[..r.len] != message(r.seq, size_of_msg(r.seq, max))[..] {
                    bad += 1;
                }
                last = Some(r.seq);
            }
            println!("AETHER:result delivered={} lost={} bad={bad}", s.delivered(), s.lost());
        }
        // Holds an mqueue subscriber until killed.
        "mq_holder" => {
            let _s = client.subscriber(&topic, &mqueue_config()).expect("subscriber");
            println!("AETHER:ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Asks for its control queue, subscribes (shm and mqueue), then
        // prints the first notice and how its mqueue subscriber's stream ends.
        "watcher" => {
            client.notices_fd().expect("control queue");
            let _shm = client
                .subscriber(&topic, &SubscriberConfig::default())
                .expect("shm subscriber");
            let mut mq = client.subscriber(&topic, &mqueue_config()).expect("mqueue subscriber");
            println!("AETHER:ready");
            match client.next_notice(Some(Duration::from_secs(20))).expect("next_notice") {
                Some(Notice::TopicDeleted { topic }) => println!("AETHER:notice deleted {topic}"),
                Some(Notice::Draining) => println!("AETHER:notice draining"),
                other => println!("AETHER:notice other {other:?}"),
            }
            match mq.receive(Some(Duration::from_secs(20))) {
                Err(e) => println!("AETHER:end {:?}", e.status),
                Ok(m) => println!("AETHER:end message {m:?}"),
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn mqueue_config() -> SubscriberConfig {
    SubscriberConfig {
        delivery: Delivery::Mqueue,
        ..SubscriberConfig::default()
    }
}

/// Whether `fd` becomes readable within `ms`.
fn poll_in(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}

fn params(policy: Policy, ring_size: u64, max_message: u64) -> TopicParams {
    TopicParams {
        policy,
        ring_size,
        max_message,
        ..TopicParams::default()
    }
}

fn env(d: &Daemon, topic: &str, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut v = vec![d.socket_env(), ("AETHER_TEST_TOPIC", topic.to_string())];
    v.extend_from_slice(extra);
    v
}

/// Threads of process `pid` named like dispatch threads (the kernel keeps
/// 15 bytes of a name: "aetherd-dispatch" shows as "aetherd-dispatc").
fn dispatch_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                .filter(|c| c.trim_end().starts_with("aetherd-dispatc"))
                .count()
        })
        .unwrap_or(0)
}

/// Waits until `pid` has `n` dispatch threads (a new thread names itself
/// once it runs, a moment after the open returns).
fn wait_dispatch_threads(pid: u32, n: usize) {
    wait_for(&format!("{n} dispatch threads"), Duration::from_secs(5), || {
        dispatch_threads(pid) == n
    });
}

/// The queue limits of this machine (defaults 10 and 8192).
fn msgsize_max() -> usize {
    aether::sys::mqueue::system_limits().1
}

#[test]
fn mqueue_subscriber_receives_in_order_from_another_process() {
    let d = Daemon::start();
    d.client()
        .create_topic("mq.order", &params(Policy::Reliable, 1 << 16, 1024))
        .unwrap();
    let count = 3000u64;
    let stream = [
        ("AETHER_TEST_COUNT", count.to_string()),
        ("AETHER_TEST_MAX", "1024".into()),
    ];
    let mut sub = Role::spawn("mq_subscriber", &env(&d, "mq.order", &stream));
    sub.expect("ready");
    wait_dispatch_threads(d.child.id(), 1);
    let mut publ = Role::spawn("publisher", &env(&d, "mq.order", &stream));
    publ.expect("done");
    let line = sub.line();
    assert_eq!(
        (field(&line, "delivered"), field(&line, "lost"), field(&line, "bad")),
        (count, 0, 0),
        "{line}"
    );
    publ.wait_ok();
    sub.wait_ok();
}

#[test]
fn descriptor_becomes_readable_when_a_message_arrives() {
    let d = Daemon::start();
    let c = d.client();
    c.create_topic("mq.poll", &params(Policy::Lossy, 1 << 16, 1024))
        .unwrap();
    let mut shm = c.subscriber("mq.poll", &SubscriberConfig::default()).unwrap();
    assert!(
        !poll_in(shm.fd().unwrap().as_raw_fd(), 0),
        "a shm subscriber's eventfd is quiet"
    );
    assert_eq!(shm.delivery(), Delivery::Shm);
    let mut s = c.subscriber("mq.poll", &mqueue_config()).unwrap();
    assert_eq!(s.delivery(), Delivery::Mqueue);
    let fd = s.fd().unwrap().as_raw_fd();
    assert!(!poll_in(fd, 0), "readable before anything was published");
    assert_eq!(s.receive(Some(Duration::ZERO)).unwrap(), None);
    let e = s
        .receive_view(&aether::ring::Deadline::after(Some(Duration::ZERO)))
        .unwrap_err();
    assert_eq!(e.status, Status::Invalid, "{e}");
    let mut p = Role::spawn("sizes", &env(&d, "mq.poll", &[("AETHER_TEST_SIZES", "100,200".into())]));
    p.expect("done");
    let t0 = Instant::now();
    assert!(poll_in(fd, 5000), "not readable within 5 s of a publish");
    let m = s
        .receive(Some(Duration::ZERO))
        .unwrap()
        .expect("a message once readable");
    assert_eq!((m.seq, m.data), (0, message(0, 100)));
    assert!(m.timestamp_ns > 0);
    // A buffer too small leaves the message queued in the subscriber: TooLarge, then it comes.
    let mut small = [0u8; 10];
    let e = s.receive_into(&mut small, Some(Duration::from_secs(5))).unwrap_err();
    assert_eq!((e.status, s.too_large_len()), (Status::TooLarge, 200));
    let m = s
        .receive(Some(Duration::ZERO))
        .unwrap()
        .expect("the message left unread");
    assert_eq!((m.seq, m.data), (1, message(1, 200)));
    assert!(!poll_in(fd, 0));
    assert_eq!((s.delivered(), s.lost(), s.too_large()), (2, 0, 0));
    assert!(t0.elapsed() < Duration::from_secs(5));
    p.wait_ok();
}

#[test]
fn too_large_messages_are_counted_reported_and_skipped() {
    let d = Daemon::start();
    let c = d.client();
    // The ring takes messages larger than the queue can carry, whatever
    // this machine's queue limit.
    let max = 16384.max(msgsize_max() as u64);
    let ring = ((max + 64) * 4).next_power_of_two().max(1 << 16);
    c.create_topic("mq.big", &params(Policy::Reliable, ring, max)).unwrap();
    let mut s = c.subscriber("mq.big", &mqueue_config()).unwrap();
    let cap = s.max_message();
    assert_eq!(
        cap,
        msgsize_max() - 24,
        "payload capacity: the queue's msgsize less the header"
    );
    let sizes = format!("10,{},20,{cap}", cap + 1);
    let mut p = Role::spawn("sizes", &env(&d, "mq.big", &[("AETHER_TEST_SIZES", sizes)]));
    p.expect("done");
    let m = s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!((m.seq, m.data), (0, message(0, 10)));
    let m = s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!(
        (m.seq, m.data),
        (2, message(2, 20)),
        "the message after the big one still comes"
    );
    let m = s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!(
        (m.seq, m.data.len()),
        (3, cap),
        "a message of exactly the capacity fits"
    );
    assert_eq!((s.delivered(), s.lost(), s.too_large()), (3, 0, 1));
    let n = c.next_notice(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        n,
        Some(Notice::TooLarge {
            topic: "mq.big".into(),
            seq: 1,
            len: cap as u64 + 1
        })
    );
    assert_eq!(c.next_notice(Some(Duration::from_millis(300))).unwrap(), None);
    p.wait_ok();
}

#[test]
fn reliable_topic_with_a_slow_mqueue_subscriber_loses_nothing() {
    let d = Daemon::start();
    let c = d.client();
    // A small ring: the subscriber's queue and the ring fill, and the
    // publisher waits at the gate for the dispatch thread.
    c.create_topic("mq.slow", &params(Policy::Reliable, 8192, 256)).unwrap();
    let mut s = c.subscriber("mq.slow", &mqueue_config()).unwrap();
    let count = 3000u64;
    let stream = [
        ("AETHER_TEST_COUNT", count.to_string()),
        ("AETHER_TEST_MAX", "256".into()),
    ];
    let mut p = Role::spawn("publisher", &env(&d, "mq.slow", &stream));
    let mut buf = vec![0u8; s.max_message()];
    for i in 0..count {
        let r = s.receive_into(&mut buf, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(r.seq, i);
        assert_eq!(buf[..r.len], message(i, size_of_msg(i, 256))[..], "message {i}");
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    p.expect("done");
    assert_eq!((s.delivered(), s.lost()), (count, 0));
    p.wait_ok();
}

#[test]
fn lossy_topic_counts_every_drop() {
    let d = Daemon::start();
    let c = d.client();
    c.create_topic("mq.lossy", &params(Policy::Lossy, 1 << 16, 256))
        .unwrap();
    let mut s = c.subscriber("mq.lossy", &mqueue_config()).unwrap();
    let count = 2000u64;
    let stream = [
        ("AETHER_TEST_COUNT", count.to_string()),
        ("AETHER_TEST_MAX", "256".into()),
    ];
    // Nobody reads while the publisher runs: the queue fills, the rest is lost.
    let mut p = Role::spawn("publisher", &env(&d, "mq.lossy", &stream));
    p.expect("done");
    p.wait_ok();
    let mut last = None::<u64>;
    let end = Instant::now() + Duration::from_secs(10);
    while s.delivered() + s.lost() < count {
        assert!(
            Instant::now() < end,
            "delivered {} + lost {} < {count}",
            s.delivered(),
            s.lost()
        );
        if let Some(m) = s.receive(Some(Duration::from_millis(100))).unwrap() {
            assert!(last.is_none_or(|l| m.seq > l), "out of order");
            assert_eq!(m.data, message(m.seq, size_of_msg(m.seq, 256)));
            last = Some(m.seq);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.receive(Some(Duration::ZERO)).unwrap(), None);
    assert_eq!(
        s.delivered() + s.lost(),
        count,
        "delivered {} lost {}",
        s.delivered(),
        s.lost()
    );
    assert!(s.lost() > 0 && s.delivered() > 0);
    // The losses are reported on the control queue as Lagged notices, in full.
    let mut reported = 0;
    let end = Instant::now() + Duration::from_secs(5);
    while reported < s.lost() && Instant::now() < end {
        match c.next_notice(Some(Duration::from_millis(200))).unwrap() {
            Some(Notice::Lagged { topic, lost, .. }) => {
                assert_eq!(topic, "mq.lossy");
                reported += lost;
            }
            Some(Notice::Dropped { .. }) | None => {}
            Some(other) => panic!("unexpected notice {other:?}"),
        }
    }
    assert_eq!(reported, s.lost());
}

#[test]
fn deleting_a_topic_notifies_its_subscribers_and_ends_their_streams() {
    let d = Daemon::start();
    let c = d.client();
    c.create_topic("mq.gone", &TopicParams::default()).unwrap();
    let mut w = Role::spawn("watcher", &env(&d, "mq.gone", &[]));
    w.expect("ready");
    wait_dispatch_threads(d.child.id(), 1);
    c.delete_topic("mq.gone").unwrap();
    w.expect("notice deleted mq.gone");
    w.expect("end NotFound");
    w.wait_ok();
    wait_dispatch_threads(d.child.id(), 0);
    // The deleting client held nothing on the topic: no notice for it.
    assert_eq!(c.next_notice(Some(Duration::from_millis(200))).unwrap(), None);
}

#[test]
fn sigterm_sends_draining_and_ends_mqueue_streams() {
    let mut d = Daemon::start();
    d.client().create_topic("mq.drain", &TopicParams::default()).unwrap();
    let mut w = Role::spawn("watcher", &env(&d, "mq.drain", &[]));
    w.expect("ready");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    w.expect("notice draining");
    w.expect("end Shutdown");
    w.wait_ok();
    assert!(d.stop().success(), "aetherd exits 0 after draining");
}

#[test]
fn a_killed_daemon_ends_mqueue_streams_as_unavailable() {
    let mut d = Daemon::start();
    let c = d.client();
    c.create_topic("mq.orphan", &TopicParams::default()).unwrap();
    let mut s = c.subscriber("mq.orphan", &mqueue_config()).unwrap();
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let t0 = Instant::now();
    let e = s.receive(None).unwrap_err();
    assert_eq!(e.status, Status::Unavailable, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2), "noticed within a wait slice");
    assert_eq!(s.receive(Some(Duration::ZERO)).unwrap_err().status, Status::Unavailable);
    assert!(
        shm_objects(d.instance_id).is_empty(),
        "kill -9 leaves nothing in /dev/shm"
    );
}

#[test]
fn closing_the_subscriber_or_killing_its_process_stops_the_dispatch_thread() {
    let d = Daemon::start();
    let c = d.client();
    // One subscriber slot: a leaked slot makes the reopen below fail with Limit.
    let one_slot = TopicParams {
        max_subscribers: 1,
        ..TopicParams::default()
    };
    c.create_topic("mq.close", &one_slot).unwrap();
    let pid = d.child.id();
    assert_eq!(dispatch_threads(pid), 0);
    let s = c.subscriber("mq.close", &mqueue_config()).unwrap();
    wait_dispatch_threads(pid, 1);
    drop(s);
    // SubscriberClose joins the thread before it answers (the kernel may list
    // an exited thread a moment longer).
    wait_dispatch_threads(pid, 0);
    // Its slot is free again: as many subscribers as the topic allows can still open.
    let again = c.subscriber("mq.close", &mqueue_config()).unwrap();
    wait_dispatch_threads(pid, 1);
    drop(again);

    let mut h = Role::spawn("mq_holder", &env(&d, "mq.close", &[]));
    h.expect("ready");
    wait_dispatch_threads(pid, 1);
    h.child.kill().unwrap();
    h.child.wait().unwrap();
    wait_dispatch_threads(pid, 0);
    // The dead holder's slot is free too (released when the daemon notices the death).
    wait_for("the dead holder's slot to be free", Duration::from_secs(5), || {
        c.subscriber("mq.close", &mqueue_config()).is_ok()
    });
}
