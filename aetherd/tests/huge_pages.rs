//! Topics on 2 MiB huge pages (`TopicParams::huge_pages`) across processes:
//! the subscriber's mapping really is of huge pages and every message
//! arrives intact; too few free pages is a clear `Limit` that changes
//! nothing, and the daemon goes on serving.
//!
//! Huge pages come from a pool the administrator reserves
//! (`vm.nr_hugepages`). As root the test reserves what it needs and gives
//! it back; otherwise it needs pages already free, and says so when there
//! are none.

mod common;

use aether::{Client, Policy, Status, SubscriberConfig, TopicParams};
use common::*;
use std::path::PathBuf;
use std::time::Duration;

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn free_huge_pages() -> u64 {
    aether::sys::shm::huge_pages_free().expect("HugePages_Free in /proc/meminfo")
}

/// Raises the reserved pool by `more` pages for the test's life (root only).
struct Reservation(Option<u64>);

impl Reservation {
    fn take(more: u64) -> Reservation {
        if free_huge_pages() >= more {
            return Reservation(None);
        }
        let Ok(old) = std::fs::read_to_string(NR_HUGEPAGES) else {
            return Reservation(None);
        };
        let old: u64 = old.trim().parse().expect("nr_hugepages");
        if std::fs::write(NR_HUGEPAGES, (old + more).to_string()).is_err() {
            return Reservation(None);
        }
        Reservation(Some(old))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            let _ = std::fs::write(NR_HUGEPAGES, old.to_string());
        }
    }
}

/// The page size (kB) of this process's mapping of memfd `name`, from smaps.
fn mapping_page_kb(name: &str) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut in_it = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_it = line.contains(name);
        } else if in_it {
            if let Some(v) = line.strip_prefix("KernelPageSize:") {
                return v.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
    }
    None
}

#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    let socket = PathBuf::from(env_var("AETHER_TEST_SOCKET"));
    let topic = env_var("AETHER_TEST_TOPIC");
    let count: u64 = env_var("AETHER_TEST_COUNT").parse().unwrap();
    assert_eq!(role, "subscriber");
    let client = Client::connect(Some(&socket)).expect("connect");
    let mut s = client
        .subscriber(&topic, &SubscriberConfig::default())
        .expect("subscriber");
    let page_kb = mapping_page_kb(&format!("aether:{topic}")).unwrap_or(0);
    println!("AETHER:ready page_kb={page_kb}");
    let mut bad = 0u64;
    for i in 0..count {
        let m = s
            .receive(Some(Duration::from_secs(30)))
            .expect("receive")
            .expect("a message in time");
        if m.data != message(i, size_of_msg(i, 60_000)) {
            bad += 1;
        }
    }
    println!("AETHER:result received={count} bad={bad}");
}

#[test]
fn a_topic_on_huge_pages_carries_messages_between_processes() {
    // A 4 MiB ring after its header page: 3 huge pages.
    let _pool = Reservation::take(3);
    if free_huge_pages() < 3 {
        eprintln!("skipped: no 3 free huge pages and not root to reserve them (sysctl vm.nr_hugepages)");
        return;
    }
    let d = Daemon::start();
    let c = d.client();
    let params = TopicParams {
        policy: Policy::Reliable,
        ring_size: 4 << 20,
        max_message: 64 << 10,
        huge_pages: true,
        ..TopicParams::default()
    };
    let before = free_huge_pages();
    c.create_topic("huge", &params).unwrap();
    // The pool's pages are the topic's from its creation (not on first touch).
    assert!(
        before - free_huge_pages() >= 3,
        "before {before}, now {}",
        free_huge_pages()
    );

    let count = 20_000u64;
    let mut sub = Role::spawn(
        "subscriber",
        &[
            ("AETHER_TEST_SOCKET", d.socket.display().to_string()),
            ("AETHER_TEST_TOPIC", "huge".into()),
            ("AETHER_TEST_COUNT", count.to_string()),
        ],
    );
    let ready = sub.line();
    assert_eq!(field(&ready, "page_kb"), 2048, "the subscriber's mapping: {ready}");
    let mut p = c.publisher("huge").unwrap();
    p.set_timeout(Some(Duration::from_secs(30)));
    for i in 0..count {
        p.publish(&message(i, size_of_msg(i, 60_000))).unwrap();
    }
    let result = sub.line();
    assert_eq!(field(&result, "bad"), 0, "{result}");
    sub.wait_ok();
    let stats = c.topic_stats("huge").unwrap();
    assert_eq!(stats.published, count);
    drop(p);
    c.delete_topic("huge").unwrap();
    wait_for("the pages to return to the pool", Duration::from_secs(5), || {
        free_huge_pages() >= before
    });
}

#[test]
fn too_few_huge_pages_is_a_clear_limit_and_changes_nothing() {
    // A 1 GiB ring needs 513 huge pages; far more than any test machine keeps free.
    let free = free_huge_pages();
    if free >= 513 {
        eprintln!("skipped: {free} huge pages free, enough for the largest ring");
        return;
    }
    let d = Daemon::start();
    let c = d.client();
    let params = TopicParams {
        ring_size: 1 << 30,
        max_message: 64 << 10,
        huge_pages: true,
        ..TopicParams::default()
    };
    let e = c.create_topic("too-big", &params).unwrap_err();
    assert_eq!(e.status, Status::Limit, "{e}");
    assert!(
        e.message.contains("huge pages") && e.message.contains("vm.nr_hugepages"),
        "{}",
        e.message
    );
    // Nothing was made (no topic, no memfd kept), and the daemon serves on.
    assert_eq!(c.topic_stats("too-big").unwrap_err().status, Status::NotFound);
    assert!(daemon_segments(d.child.id()).is_empty());
    c.create_topic("too-big", &TopicParams::default()).unwrap();
    let mut p = c.publisher("too-big").unwrap();
    p.publish(b"still serving").unwrap();
    assert_eq!(daemon_segments(d.child.id()), vec!["too-big".to_string()]);
}
