//! Resource exhaustion (issue 22): a full disk under the state directory (a
//! 2 MiB tmpfs mounted for the test), the daemon's descriptors
//! (RLIMIT_NOFILE 64), its message-queue bytes (RLIMIT_MSGQUEUE), and every
//! configured limit and quota a root client is held to. Each gives the
//! client a clear error, the daemon keeps serving the others, and it
//! recovers once the resource is back.
//!
//! Segments are unnamed memfds, not /dev/shm files: a full /dev/shm does
//! not concern them (the test checks that the daemon makes nothing there);
//! what bounds their memory is the `max_segment_bytes` and
//! `max_total_segment_bytes` limits, tested here, and the memory cgroup.
//!
//! Mounts and limits need root: without it (or, for the mounts, without
//! CAP_SYS_ADMIN, as in a container) each test says "skipped" and passes.
//! Each mount is removed on drop, whatever happens.

mod common;

use aether::{Client, Fsync, Policy, Start, Status, SubscriberConfig, TopicParams};
use common::*;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn skip_unless_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    println!("skipped: {what} needs root");
    true
}

fn params(policy: Policy, ring_size: u64, wal: Option<Fsync>) -> TopicParams {
    TopicParams {
        policy,
        ring_size,
        max_message: 1024,
        max_subscribers: 8,
        wal,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    }
}

/// A tmpfs of `size` mounted at a fresh directory; unmounted (lazily, so
/// that a daemon still holding a file cannot keep it) and removed on drop.
struct Tmpfs {
    at: PathBuf,
    _dir: TempDir,
}

impl Tmpfs {
    /// `None` (and says why) where this root may not mount (a container
    /// without CAP_SYS_ADMIN).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = TempDir::new("exh-mnt");
        let at = dir.0.join("mnt");
        std::fs::create_dir(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("run mount");
        if !out.status.success() {
            println!(
                "skipped: cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs { at, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        // The TempDir then goes with whatever is left under it.
    }
}

/// Fills the file system of `dir` with `dir/filler` until a write fails
/// with ENOSPC; returns how many bytes went in.
fn fill(dir: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0x55u8; 4096];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    // What is left under a page.
    for b in [1024usize, 64, 8, 1] {
        while f.write(&chunk[..b]).is_ok_and(|k| k > 0) {
            n += b as u64;
        }
    }
    n
}

fn daemon_with(dir: TempDir, state: &Path, config: &str) -> Daemon {
    let socket = dir.0.join("aetherd.sock");
    let file = dir.0.join("aetherd.toml");
    std::fs::write(&file, config).unwrap();
    Daemon::start_with(
        dir,
        socket.clone(),
        &[
            OsStr::new("--socket"),
            socket.as_os_str(),
            OsStr::new("--state-dir"),
            state.as_os_str(),
            OsStr::new("--config"),
            file.as_os_str(),
        ],
        &[],
    )
}

/// The disk under the state directory full: a durable publish under
/// `fsync = always` fails `Timeout` saying it is not known to be on disk
/// (and the daemon's log says why: no space), making a durable topic fails
/// with the I/O error, while an in-memory topic and control requests go on;
/// once space is back the log writer catches up by itself, every message
/// published meanwhile is in the log in order, and publishing goes on.
#[test]
fn a_full_disk_under_the_state_directory() {
    if skip_unless_root("mounting a tmpfs") {
        return;
    }
    let Some(fs) = Tmpfs::mount("2m") else {
        return;
    };
    let state = fs.at.join("state");
    let d = daemon_with(TempDir::new("exh-disk"), &state, "[log]\nsegment_bytes = 65536\n");
    let c = d.client();
    c.create_topic("dur", &params(Policy::Reliable, 1 << 16, Some(Fsync::Always)))
        .unwrap();
    c.create_topic("mem", &params(Policy::Reliable, 1 << 16, None)).unwrap();
    let mut dp = c.publisher("dur").unwrap();
    dp.set_timeout(Some(Duration::from_millis(500)));
    let (mut mp, mut ms) = (
        c.publisher("mem").unwrap(),
        c.subscriber("mem", &SubscriberConfig::default()).unwrap(),
    );
    let mut published = 0u64;
    for _ in 0..10 {
        dp.publish(&message(published, 200)).unwrap();
        published += 1;
    }
    let filled = fill(&fs.at);
    // Durable publishes now wait for a sync that cannot come: each one is in
    // the ring (numbered), and says it is not known to be on disk.
    let mut timeouts = 0;
    for _ in 0..400 {
        match dp.publish(&message(published, 200)) {
            Ok(_) => {}
            Err(e) if e.status == Status::Timeout => {
                assert!(e.message.contains("not known to be on disk"), "{e}");
                timeouts += 1;
            }
            // The ring full behind the stuck writer: also a timeout, waiting for room.
            Err(e) => panic!("durable publish on a full disk: {e}"),
        }
        published += 1;
        if timeouts >= 3 {
            break;
        }
    }
    assert!(
        timeouts >= 3,
        "no publish noticed the full disk ({filled} bytes filled)"
    );
    d.wait_log("No space left on device", 1);
    // A new durable topic cannot be made there; the error says why.
    let e = c
        .create_topic("dur2", &params(Policy::Reliable, 1 << 16, Some(Fsync::Always)))
        .unwrap_err();
    assert!(e.message.contains("No space left"), "{e:?}");
    // Everything else goes on.
    for i in 0..100 {
        mp.publish(&message(i, 100)).unwrap();
        assert_eq!(
            ms.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
            message(i, 100)
        );
    }
    c.topic_stats("dur").unwrap();
    // Space back: the writer catches up, and publishing goes on.
    std::fs::remove_file(fs.at.join("filler")).unwrap();
    dp.set_timeout(Some(Duration::from_secs(10)));
    for _ in 0..10 {
        dp.publish(&message(published, 200)).unwrap();
        published += 1;
    }
    let mut s = c
        .subscriber(
            "dur",
            &SubscriberConfig {
                start: Start::Earliest,
                ..SubscriberConfig::default()
            },
        )
        .unwrap();
    for i in 0..published {
        let m = s.receive(Some(Duration::from_secs(5))).unwrap().expect("logged");
        assert_eq!(
            (m.seq, m.data),
            (i, message(i, 200)),
            "message {i} kept through the full disk"
        );
    }
    c.create_topic("dur2", &params(Policy::Reliable, 1 << 16, Some(Fsync::Always)))
        .unwrap();
    assert_eq!(shm_objects(d.instance_id), Vec::<String>::new());
    println!(
        "exhaustion: full disk: {filled} bytes filled; {timeouts} publishes timed out, \
         {published} published, all logged once space was back"
    );
}

/// Sets resource `res` of process `pid` to `soft`/`hard` (prlimit(2), as `prlimit --pid`).
fn set_limit(pid: u32, res: libc::__rlimit_resource_t, soft: u64, hard: u64) {
    let new = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: a valid rlimit64; no old value asked for.
    let r = unsafe { libc::prlimit64(pid as i32, res, &new, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn get_limit(pid: u32, res: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading into a valid rlimit64.
    let r = unsafe { libc::prlimit64(pid as i32, res, std::ptr::null(), &mut old) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    (old.rlim_cur, old.rlim_max)
}

/// The daemon's descriptors limited to 64 (`prlimit --nofile=64`): clients
/// connect and open subscribers until the daemon runs out; the one beyond
/// gets a clear error within its timeout; the clients already there keep
/// publishing and receiving; once some leave, new ones are served again.
#[test]
fn the_daemon_out_of_descriptors() {
    if skip_unless_root("lowering and raising a daemon's RLIMIT_NOFILE") {
        return;
    }
    let d = Daemon::start();
    let pid = d.child.id();
    let c = d.client();
    let wide = TopicParams {
        max_subscribers: 256,
        ..params(Policy::Lossy, 1 << 14, None)
    };
    c.create_topic("t", &wide).unwrap();
    let mut p = c.publisher("t").unwrap();
    let mut s = c.subscriber("t", &SubscriberConfig::default()).unwrap();
    let before = get_limit(pid, libc::RLIMIT_NOFILE);
    // The soft limit (raising a hard one again would need CAP_SYS_RESOURCE).
    set_limit(pid, libc::RLIMIT_NOFILE, 64, before.1);
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..200 {
        let t = Instant::now();
        let r = Client::connect_with(Some(&d.socket), false)
            .and_then(|c| c.subscriber("t", &SubscriberConfig::default()).map(|s| (c, s)));
        let took = t.elapsed();
        match r {
            Ok(h) => held.push(h),
            Err(e) => {
                assert!(took < Duration::from_secs(10), "the refusal took {took:?}");
                refused = Some((e, took));
                break;
            }
        }
    }
    let (e, took) = refused.expect("the daemon never ran out of descriptors");
    println!(
        "exhaustion: nofile 64: {} clients served, the next refused after {took:?}: {:?}: {}",
        held.len(),
        e.status,
        e.message
    );
    let clear = |e: &aether::Error| {
        matches!(e.status, Status::Limit | Status::Io)
            && (e.message.contains("Too many open files") || e.message.contains("descriptors"))
    };
    assert!(clear(&e), "a clear error: {e:?}");
    // Bare connections (no subscriber) until the daemon cannot accept one.
    let mut bare = Vec::new();
    let mut refused = None;
    for _ in 0..100 {
        let t = Instant::now();
        match Client::connect_with(Some(&d.socket), false) {
            Ok(c) => bare.push(c),
            Err(e) => {
                refused = Some((e, t.elapsed()));
                break;
            }
        }
    }
    let (e, took) = refused.expect("the daemon never refused a connection");
    println!(
        "exhaustion: nofile 64: {} bare connections more, the next refused after {took:?}: {:?}: {}",
        bare.len(),
        e.status,
        e.message
    );
    assert!(took < Duration::from_secs(10), "the refusal took {took:?}");
    assert!(clear(&e), "a clear error: {e:?}");
    drop(bare);
    // Those already there are served.
    for i in 0..20 {
        p.publish(&message(i, 64)).unwrap();
        assert_eq!(
            s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
            message(i, 64)
        );
    }
    c.topic_stats("t").unwrap();
    // Some leave: newcomers are served again.
    held.truncate(held.len().saturating_sub(4));
    let mut again = None;
    wait_for("a client to be served again", Duration::from_secs(10), || {
        again = Client::connect_with(Some(&d.socket), false)
            .and_then(|c| c.subscriber("t", &SubscriberConfig::default()).map(|s| (c, s)))
            .ok();
        again.is_some()
    });
    drop((again, held));
    set_limit(pid, libc::RLIMIT_NOFILE, before.0, before.1);
}

/// The daemon's message-queue bytes used up (`prlimit --msgqueue=0`): a
/// client asking for its control queue, and a `delivery=mqueue` subscriber,
/// get `Limit` naming RLIMIT_MSGQUEUE; everything else goes on; with the
/// limit back, both are served. (The system-wide `queues_max` does not
/// hold a root daemon: CAP_SYS_RESOURCE passes it.)
#[test]
fn the_daemon_out_of_message_queue_bytes() {
    if skip_unless_root("setting a daemon's RLIMIT_MSGQUEUE") {
        return;
    }
    let d = Daemon::start();
    let pid = d.child.id();
    let c = d.client();
    c.create_topic("t", &params(Policy::Lossy, 1 << 14, None)).unwrap();
    let before = get_limit(pid, libc::RLIMIT_MSGQUEUE);
    set_limit(pid, libc::RLIMIT_MSGQUEUE, 0, before.1);
    let mq = SubscriberConfig {
        delivery: aether::Delivery::Mqueue,
        ..SubscriberConfig::default()
    };
    let c2 = d.client();
    let e = c2.notices_fd().expect_err("no room for a control queue");
    assert_eq!(e.status, Status::Limit, "{e}");
    assert!(e.message.contains("RLIMIT_MSGQUEUE"), "{e}");
    let e = c.subscriber("t", &mq).err().expect("no room for a subscriber's queue");
    assert_eq!(e.status, Status::Limit, "{e}");
    assert!(e.message.contains("RLIMIT_MSGQUEUE"), "{e}");
    println!("exhaustion: msgqueue 0: {e}");
    let mut p = c.publisher("t").unwrap();
    let mut s = c.subscriber("t", &SubscriberConfig::default()).unwrap();
    p.publish(b"still").unwrap();
    assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data, b"still");
    set_limit(pid, libc::RLIMIT_MSGQUEUE, before.0, before.1);
    d.client().notices_fd().expect("a control queue again");
    let mut ms = c.subscriber("t", &mq).expect("an mqueue subscriber again");
    p.publish(b"queued").unwrap();
    assert_eq!(
        ms.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
        b"queued"
    );
    assert_eq!(mqueue_objects(d.instance_id), Vec::<String>::new());
}

/// Every configured limit a root client is held to, reached: each refusal
/// is `Limit` (`TooLarge` for a message size) naming the limit, changes
/// nothing, and leaves the daemon serving; freeing what was held lets the
/// next request through. (The per-uid quotas, which root is exempt from,
/// are security.rs's `quotas_hold_every_uid_and_the_daemon_keeps_serving`.)
#[test]
fn every_configured_limit_reached() {
    let state = TempDir::new("exh-limits-state");
    let d = daemon_with(
        TempDir::new("exh-limits"),
        &state.0,
        "[limits]\nmax_topics = 4\nmax_clients = 6\nmax_subscribers_per_topic = 8\n\
         max_segment_bytes = 131072\nmax_message_bytes = 4096\nmax_total_segment_bytes = 450000\n\
         per_client_slots = 6\n",
    );
    let c = d.client();
    let small = |ring| params(Policy::Lossy, ring, None);
    let limit = |r: aether::Result<()>, words: &str| {
        let e = r.expect_err("refused");
        assert_eq!(e.status, Status::Limit, "{e}");
        assert!(e.message.contains(words), "{words:?} in {e}");
    };
    // max_segment_bytes, max_message_bytes, max_subscribers_per_topic.
    limit(c.create_topic("big", &small(1 << 18)), "limit of 131072 bytes");
    let e = c
        .create_topic(
            "wide",
            &TopicParams {
                max_message: 8192,
                ..small(1 << 16)
            },
        )
        .unwrap_err();
    assert_eq!(e.status, Status::TooLarge, "{e}");
    assert!(e.message.contains("limit of 4096 bytes"), "{e}");
    limit(
        c.create_topic(
            "many",
            &TopicParams {
                max_subscribers: 9,
                ..small(1 << 16)
            },
        ),
        "limit of 8",
    );
    // max_total_segment_bytes (450,000): three topics of 128 KiB fit, a fourth not.
    for i in 0..3 {
        c.create_topic(&format!("t{i}"), &small(1 << 17)).unwrap();
    }
    limit(c.create_topic("t3", &small(1 << 17)), "max_total_segment_bytes");
    c.create_topic("t3", &small(4096)).unwrap();
    // max_topics (4), whatever the size.
    limit(c.create_topic("t4", &small(4096)), "maximum of 4 topics");
    // Freed, then granted.
    c.delete_topic("t3").unwrap();
    c.create_topic("t4", &small(4096)).unwrap();
    c.delete_topic("t2").unwrap();
    c.create_topic("t2", &small(1 << 17)).unwrap();
    // per_client_slots: 6 on one connection.
    let mut slots = Vec::new();
    for _ in 0..6 {
        slots.push(c.subscriber("t0", &SubscriberConfig::default()).unwrap());
    }
    limit(
        c.subscriber("t0", &SubscriberConfig::default()).map(|_| ()),
        "per_client_slots",
    );
    // A topic's own max_subscribers (8): two more from another connection.
    let c2 = d.client();
    let mut more = vec![
        c2.subscriber("t0", &SubscriberConfig::default()).unwrap(),
        c2.subscriber("t0", &SubscriberConfig::default()).unwrap(),
    ];
    limit(
        c2.subscriber("t0", &SubscriberConfig::default()).map(|_| ()),
        "maximum of 8 subscribers",
    );
    // max_clients (6): c and c2 and four more.
    let mut clients: Vec<Client> = (0..4).map(|_| d.client()).collect();
    let e = Client::connect_with(Some(&d.socket), false)
        .err()
        .expect("a seventh client");
    assert_eq!(e.status, Status::Limit, "{e}");
    assert!(e.message.contains("maximum of 6 clients"), "{e}");
    // Everyone already there is served.
    more.pop();
    let mut p = c2.publisher("t1").unwrap();
    let mut s = c2.subscriber("t1", &SubscriberConfig::default()).unwrap();
    p.publish(b"served").unwrap();
    assert_eq!(
        s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
        b"served"
    );
    // Freed, then granted.
    clients.pop();
    wait_for("a client to leave", Duration::from_secs(5), || {
        Client::connect_with(Some(&d.socket), false).is_ok()
    });
    slots.pop();
    c.subscriber("t0", &SubscriberConfig::default()).unwrap();
    println!("exhaustion: every configured limit refused with Limit/TooLarge, and freed ones granted again");
}

/// A full /dev/shm does not concern the daemon: segments are unnamed
/// memfds. The daemon runs in a mount namespace of its own (gone with it)
/// whose /dev/shm is a 64 KiB tmpfs filled to the last byte, and serves
/// topics whose rings are each 16 times that.
#[test]
fn a_full_dev_shm_does_not_concern_segments() {
    if skip_unless_root("a mount namespace") {
        return;
    }
    let dir = TempDir::new("exh-shm");
    let socket = dir.0.join("aetherd.sock");
    // Where this root may not make a mount namespace, say so and pass.
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .output()
        .expect("run unshare");
    if !probe.status.success() {
        println!(
            "skipped: cannot make a mount namespace here: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return;
    }
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=64k tmpfs /dev/shm && \
             { dd if=/dev/zero of=/dev/shm/fill bs=4k 2>/dev/null; true; } && exec \"$0\" \"$@\"",
        )
        .arg(AETHERD)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.0.join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("unshare");
    let pid = child.id();
    let d = Daemon::adopt(child, socket, dir);
    // The daemon's /dev/shm, seen through its root: full.
    let shm = format!("/proc/{pid}/root/dev/shm");
    let st = nix::sys::statvfs::statvfs(shm.as_str()).expect("statvfs the daemon's /dev/shm");
    assert_eq!(st.blocks_available(), 0, "the daemon's /dev/shm is full");
    assert!(std::fs::metadata(format!("{shm}/fill")).is_ok());
    let c = d.client();
    let mut subs = Vec::new();
    for i in 0..3 {
        let t = format!("big{i}");
        c.create_topic(&t, &params(Policy::Reliable, 1 << 20, None)).unwrap();
        subs.push((t.clone(), c.subscriber(&t, &SubscriberConfig::default()).unwrap()));
    }
    for (t, s) in &mut subs {
        let mut p = c.publisher(t).unwrap();
        for i in 0..1000 {
            p.publish(&message(i, 1000)).unwrap();
            assert_eq!(
                s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
                message(i, 1000)
            );
        }
    }
    println!("exhaustion: /dev/shm full (64 KiB): 3 topics of 1 MiB made and used");
}
