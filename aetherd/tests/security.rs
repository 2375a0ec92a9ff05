//! The security suite (issue 15): each attack of docs/SECURITY.md played as
//! it would be, the attacker another uid holding only what the case needs
//! (this test binary re-executed as uid ATTACKER, which needs root). Each test
//! checks that the attack is refused or harmless, and that nothing is left
//! behind. Without root, the cross-uid tests print "skipped: needs root"
//! and pass; `scripts/test.sh` says how many ran.

mod common;

use aether::{Client, Status};
use common::*;
use std::ffi::OsStr;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The attacker's uid and gid (no /etc/passwd entry is needed).
const ATTACKER: u32 = 64231;

/// Entry point of child processes; a no-op when run as an ordinary test.
///
/// Role `attacker`: one command per stdin line, one `AETHER:<answer>` line
/// per command. Commands: `id`; `mkdir P` (mode 0755); `symlink TARGET LINK`;
/// `listen P` (binds a SEQPACKET socket at P and counts what connections
/// send, in the background); `heard` (bytes received by `listen` so far);
/// `open_read P` (open for reading: `Ok` or the errno); `pub T`, `publish T`
/// (a publisher on the first connection, and one message from it); `maps T`
/// (the permissions of the topic's mappings); `raw sub|pub S T` (an open
/// spoken by hand, keeping every descriptor); `upgrade LABEL` (every way to
/// write that memfd); `poke LABEL` (a store into it); `connect S` (one
/// more connection to the aetherd at S, kept); `notices [I]` (the control
/// queue of connection I, by default the last); `sub T` and `create T RING` (on the first
/// connection; subscribers are kept); `quit`.
#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    assert_eq!(role, "attacker", "unknown role");
    let heard = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut keep = Vec::new();
    let (mut clients, mut subs, mut pubs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut kept, mut kept_conns) = (Vec::new(), Vec::new());
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["id"] => format!("Ok: uid={}", nix::unistd::getuid()),
            ["mkdir", p] => io_outcome(
                std::fs::create_dir(p)
                    .and_then(|()| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))),
            ),
            ["symlink", target, link] => io_outcome(std::os::unix::fs::symlink(target, link)),
            ["listen", p] => match aether::sys::uds::SeqPacket::listen(Path::new(p)) {
                Ok(l) => {
                    let heard = std::sync::Arc::clone(&heard);
                    std::thread::spawn(move || {
                        while let Ok(c) = l.accept() {
                            let mut buf = vec![0u8; 1 << 16];
                            while let Ok((n, _)) = c.recv(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                heard.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    });
                    "Ok".into()
                }
                Err(e) => format!("Err: {e}"),
            },
            ["heard"] => format!("Ok: {}", heard.load(std::sync::atomic::Ordering::SeqCst)),
            ["open_read", p] => io_outcome(std::fs::File::open(p).map(|f| keep.push(f))),
            ["connect", s] => outcome(Client::connect_with(Some(Path::new(s)), false).map(|c| clients.push(c))),
            ["notices"] => outcome(clients.last().expect("connect first").notices_fd().map(drop)),
            ["notices", i] => outcome(clients[i.parse::<usize>().expect("an index")].notices_fd().map(drop)),
            ["sub", t] => outcome(
                clients[0]
                    .subscriber(t, &aether::SubscriberConfig::default())
                    .map(|s| subs.push(s)),
            ),
            ["create", t, ring] => outcome(clients[0].create_topic(
                t,
                &aether::TopicParams {
                    ring_size: ring.parse().expect("a ring size"),
                    max_message: 1024,
                    max_subscribers: 4,
                    ..aether::TopicParams::default()
                },
            )),
            ["pub", t] => outcome(clients[0].publisher(t).map(|p| pubs.push(p))),
            ["publish", _] => outcome(pubs.last_mut().expect("pub first").publish(b"from a publisher")),
            ["maps", t] => maps(t),
            ["raw", op, sock, t] => {
                // Speaks the protocol itself, keeping every descriptor sent,
                // as a hostile client would.
                use aether::protocol::{self, Request};
                let req = match *op {
                    "sub" => Request::SubscriberOpen {
                        topic: t.to_string(),
                        start: aether::Start::Latest,
                    },
                    _ => Request::PublisherOpen { topic: t.to_string() },
                };
                let raw = aether::sys::uds::SeqPacket::connect(Path::new(sock)).unwrap();
                raw.send(&protocol::encode_request(&req, 1), None).unwrap();
                let mut buf = vec![0u8; 8192];
                let (_, fds) = raw.recv_fds(&mut buf, 8).unwrap();
                let n = fds.len();
                kept.extend(fds);
                kept_conns.push(raw);
                format!("Ok: {n} descriptors")
            }
            ["upgrade", label] => upgrade(label),
            ["poke", label] => {
                // A store into the mapping labelled `label`: a read-only
                // mapping ends this process here (SIGSEGV).
                let (base, _, _) = mapping(label).expect("mapped");
                // SAFETY: deliberately writes the first word of a mapping of
                // this process; if it is read-only the kernel kills us.
                unsafe { (base as *mut u64).write_volatile(0xdead_beef) };
                "Ok: written".into()
            }
            ["quit"] => break,
            _ => format!("Invalid: unknown command {line:?}"),
        };
        println!("AETHER:{answer}");
    }
    std::process::exit(0);
}

/// Address, length and permissions (`r--s`) of this process's mapping of
/// the memfd labelled `aether:<label>`.
fn mapping(label: &str) -> Option<(usize, usize, String)> {
    let want = format!("/memfd:aether:{label} (deleted)");
    std::fs::read_to_string("/proc/self/maps").ok()?.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[5..].join(" ") != want {
            return None;
        }
        let (a, b) = f[0].split_once('-')?;
        let (a, b) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
        Some((a, b - a, f[1].to_string()))
    })
}

/// The permissions of the topic's mappings here: `segment=r--s control=r--s waiters=rw-s cursor=rw-s`.
fn maps(topic: &str) -> String {
    let perm = |label: String| mapping(&label).map_or("none".to_string(), |m| m.2);
    let cursor = (0..64)
        .map(|i| format!("{topic}:cursor{i}"))
        .find(|l| mapping(l).is_some())
        .map_or("none".to_string(), perm);
    format!(
        "segment={} control={} waiters={} cursor={cursor}",
        perm(topic.to_string()),
        perm(format!("{topic}:control")),
        perm(format!("{topic}:waiters"))
    )
}

/// Every way to write the memfd labelled `aether:<label>` through what this
/// process holds: map its descriptor writable, reopen the descriptor
/// read-write through /proc, make the existing mapping writable. Each
/// outcome: `mmap=..., reopen=..., mprotect=...` (Ok, or the errno).
fn upgrade(label: &str) -> String {
    use std::os::fd::AsRawFd;
    let want = format!("/memfd:aether:{label} (deleted)");
    let fd = std::fs::read_dir("/proc/self/fd").unwrap().flatten().find_map(|e| {
        let target = std::fs::read_link(e.path()).ok()?;
        (target.to_str()? == want).then(|| e.file_name().to_str()?.parse::<i32>().ok())?
    });
    let Some(fd) = fd else { return "no descriptor".into() };
    let errno = |ok: bool| {
        if ok {
            "Ok".to_string()
        } else {
            nix::errno::Errno::last().to_string()
        }
    };
    // SAFETY: a fresh mapping at an address the kernel picks, unmapped at once if made.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    let mmap = errno(m != libc::MAP_FAILED);
    if m != libc::MAP_FAILED {
        // SAFETY: unmapping the mapping just made.
        unsafe { libc::munmap(m, 4096) };
    }
    let reopen = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
    {
        Ok(f) => {
            let _ = f.as_raw_fd();
            "Ok".to_string()
        }
        Err(e) => nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)).to_string(),
    };
    let mprotect = match mapping(label) {
        // SAFETY: changes only the protection of a mapping of this process (it fails if not allowed).
        Some((base, len, _)) => {
            errno(unsafe { libc::mprotect(base as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE) } == 0)
        }
        None => "unmapped".into(),
    };
    format!("mmap={mmap} reopen={reopen} mprotect={mprotect}")
}

fn outcome<T>(r: aether::Result<T>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => format!("{:?}: {}", e.status, e.message),
    }
}

fn io_outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => format!(
            "Err: {}",
            e.raw_os_error()
                .map_or(e.to_string(), |n| nix::errno::Errno::from_raw(n).to_string())
        ),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn attacker(dir: &Path) -> UserRole {
    let exe = exe_for_others(dir);
    let mut a = UserRole::spawn(&exe, "attacker", &[], ATTACKER, ATTACKER, &[ATTACKER]);
    assert_eq!(a.ask("id"), format!("Ok: uid={ATTACKER}"));
    a
}

fn skip(what: &str) -> bool {
    if !is_root() {
        eprintln!("skipped: needs root (another uid plays the attacker): {what}");
        return true;
    }
    false
}

/// Runs `aetherd args` to completion (it must fail to start): exit code and stderr.
fn aetherd_refuses(args: &[&OsStr]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(AETHERD);
    cmd.args(args).stdin(std::process::Stdio::null());
    for k in CONFIG_ENV {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("run aetherd");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Case 5: in a world-writable directory (as /tmp), another user prepares
/// the socket's directory and plants symlinks at the lock and statistics
/// paths. A root daemon refuses the directory (touching nothing through the
/// links); the other user then listens there itself, and a root client
/// refuses to talk to it: not a byte is sent.
#[test]
fn a_socket_directory_prepared_by_another_user_is_refused() {
    if skip("case 5") {
        return;
    }
    let base = shared_dir("sec5");
    let world = base.0.join("world");
    std::fs::create_dir(&world).unwrap();
    std::fs::set_permissions(&world, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = base.0.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let mut a = attacker(&base.0);
    let evil = world.join("evil");
    let sock = evil.join("aetherd.sock");
    assert_eq!(a.ask(&format!("mkdir {}", evil.display())), "Ok");
    for name in ["aetherd.sock.lock", "aetherd.stats.json"] {
        let link = evil.join(name);
        assert_eq!(a.ask(&format!("symlink {} {}", victim.display(), link.display())), "Ok");
    }
    let (code, err) = aetherd_refuses(&[OsStr::new("--socket"), sock.as_os_str()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refusing the socket directory"), "{err}");
    assert!(err.contains(&format!("belongs to uid {ATTACKER}")), "{err}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "nothing written through the links"
    );
    assert_eq!(std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o644);

    // The attacker's own listener: a root client refuses it before sending anything.
    assert_eq!(a.ask(&format!("listen {}", sock.display())), "Ok");
    let e = Client::connect_with(Some(&sock), false).err().expect("refused");
    assert_eq!(e.status, Status::Permission, "{e}");
    assert!(e.message.contains(&format!("uid {ATTACKER}")), "{e}");
    // aether-cli, when the workspace built it next to aetherd: the same check.
    let cli = Path::new(AETHERD).with_file_name("aether-cli");
    let cli = std::process::Command::new(cli)
        .args([
            OsStr::new("--socket"),
            sock.as_os_str(),
            OsStr::new("pub"),
            OsStr::new("secret-topic"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    if let Ok(mut cli) = cli {
        use std::io::Write;
        let _ = cli.stdin.take().unwrap().write_all(b"secret payload\n");
        let out = cli.wait_with_output().unwrap();
        assert!(!out.status.success(), "aether-cli pub must fail");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(a.ask("heard"), "Ok: 0", "nothing reached the stranger's socket");
}

/// Case 6: the lock file is private, so another user cannot hold it (flock
/// needs only a read descriptor) to keep the daemon from restarting.
#[test]
fn another_user_cannot_hold_the_daemon_lock() {
    if skip("case 6") {
        return;
    }
    let dir = shared_dir("sec6");
    let socket = dir.0.join("aetherd.sock");
    let lock = PathBuf::from(format!("{}.lock", socket.display()));
    let mut a = attacker(&dir.0);
    let mut d = Daemon::start_with(
        TempDir::new("sec6-log"),
        socket.clone(),
        &[
            OsStr::new("--socket"),
            socket.as_os_str(),
            OsStr::new("--socket-mode"),
            OsStr::new("0666"),
        ],
        &[],
    );
    assert_eq!(std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        a.ask(&format!("open_read {}", lock.display())),
        "Err: EACCES: Permission denied"
    );
    // A restart takes the lock again.
    d.stop();
    let _d2 = Daemon::start_with(
        TempDir::new("sec6-log2"),
        socket.clone(),
        &[OsStr::new("--socket"), socket.as_os_str()],
        &[],
    );
}

/// `aether-cli` (built next to aetherd) run as the attacker's uid, with no
/// supplementary groups: exit status and stderr.
fn cli_as_attacker(dir: &Path, args: &[&OsStr]) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let cli = program_for_others(&Path::new(AETHERD).with_file_name("aether-cli"), dir);
    let out = std::process::Command::new(cli)
        .args(args)
        .uid(ATTACKER)
        .gid(ATTACKER)
        .env("AETHER_NO_AUTOSTART", "1")
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run aether-cli as the attacker");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Case 8: `aether-cli sub` and `pub` need only the right they use: a user
/// allowed only to subscribe to an existing topic subscribes with the CLI
/// (it used to ask to create the topic, an admin right, and fail), and is
/// still refused publishing.
#[test]
fn cli_pub_and_sub_need_only_the_rights_they_use() {
    if skip("case 8, CLI rights") {
        return;
    }
    let dir = shared_dir("sec8cli");
    let d = shared_daemon(
        &dir,
        &format!("[[access]]\ntopics = [\"t8\"]\nuids = [{ATTACKER}]\nallow = [\"subscribe\"]\n"),
    );
    let socket = d.socket.clone();
    let c = d.client();
    c.create_topic("t8", &aether::TopicParams::default()).unwrap();
    let mut p = c.publisher("t8").unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                p.publish(b"for subscribers").unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let s = socket.as_os_str();
    let (ok, err) = cli_as_attacker(
        &dir.0,
        &[
            OsStr::new("--socket"),
            s,
            OsStr::new("sub"),
            OsStr::new("t8"),
            OsStr::new("--count"),
            OsStr::new("1"),
            OsStr::new("--timeout"),
            OsStr::new("10"),
        ],
    );
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    feeder.join().unwrap();
    assert!(ok, "sub with only the subscribe right: {err}");
    let (ok, err) = cli_as_attacker(
        &dir.0,
        &[
            OsStr::new("--socket"),
            s,
            OsStr::new("pub"),
            OsStr::new("t8"),
            OsStr::new("x"),
        ],
    );
    assert!(!ok && err.contains("may not publish"), "{err}");
    let (ok, err) = cli_as_attacker(
        &dir.0,
        &[
            OsStr::new("--socket"),
            s,
            OsStr::new("sub"),
            OsStr::new("other"),
            OsStr::new("--count"),
            OsStr::new("1"),
        ],
    );
    assert!(!ok && err.contains("may not"), "no right on a missing topic: {err}");
}

/// Case 8: root may administer a daemon that runs as another user (the
/// reply FIFO root's CLI makes is handed to the daemon's user, who could not
/// reach it before: "reply path refused", a timeout for root).
#[test]
fn root_administers_a_daemon_of_another_user() {
    if skip("case 8, root administers") {
        return;
    }
    use std::os::unix::process::CommandExt;
    const DAEMON_UID: u32 = 64232;
    let base = shared_dir("sec8root");
    let run = base.0.join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&run, Some(DAEMON_UID), Some(DAEMON_UID)).unwrap();
    let socket = run.join("aetherd.sock");
    let aetherd = program_for_others(Path::new(AETHERD), &base.0);
    let mut daemon = std::process::Command::new(aetherd)
        .arg("--socket")
        .arg(&socket)
        .uid(DAEMON_UID)
        .gid(DAEMON_UID)
        .current_dir("/")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start aetherd as another user");
    wait_for("the other user's aetherd", Duration::from_secs(10), || socket.exists());
    let cli = Path::new(AETHERD).with_file_name("aether-cli");
    let admin = |args: &[&str]| {
        std::process::Command::new(&cli)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .expect("run aether-cli")
    };
    let out = admin(&["status"]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        out.status.success(),
        "root's status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pid"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The daemon's shared memory, from /proc/PID/status (RssShmem, in KiB).
fn rss_shmem_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("RssShmem:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssShmem in /proc/PID/status")
}

/// Case 4: quotas for everyone. A uid with no right gets no control queue;
/// a uid with rights is held to its connections, control queues, slots and
/// segment bytes, each refusal `Limit` naming the quota and logged once;
/// the daemon's own user keeps being served throughout. And case 8's
/// "committed at creation": a topic nobody uses takes no memory.
#[test]
fn quotas_hold_every_uid_and_the_daemon_keeps_serving() {
    if skip("case 4") {
        return;
    }
    const NO_RIGHTS: u32 = 64233;
    let dir = shared_dir("sec4");
    let d = shared_daemon(
        &dir,
        &format!(
            "[limits]\nper_uid_connections = 4\nper_uid_control_queues = 2\nper_uid_slots = 3\n\
             per_uid_segment_bytes = 300000\nmax_total_segment_bytes = 200000000\n\
             [[access]]\ntopics = [\"q.*\"]\nuids = [{ATTACKER}]\nallow = [\"subscribe\", \"admin\"]\n"
        ),
    );
    let s = d.socket.display().to_string();
    let exe = exe_for_others(&dir.0);
    // No right at all: it may connect (the socket is 0666) but gets no queue.
    let mut stranger = UserRole::spawn(&exe, "attacker", &[], NO_RIGHTS, NO_RIGHTS, &[NO_RIGHTS]);
    assert_eq!(stranger.ask(&format!("connect {s}")), "Ok");
    let a = stranger.ask("notices");
    assert!(a.starts_with("Permission") && a.contains("no right"), "{a}");

    let mut a = attacker(&dir.0);
    for i in 0..4 {
        assert_eq!(a.ask(&format!("connect {s}")), "Ok", "connection {i}");
    }
    for _ in 0..3 {
        let r = a.ask(&format!("connect {s}"));
        assert!(r.starts_with("Limit") && r.contains("per_uid_connections"), "{r}");
    }
    // Control queues: one per connection, two per uid.
    assert_eq!(a.ask("notices 0"), "Ok");
    assert_eq!(a.ask("notices 1"), "Ok");
    let r = a.ask("notices 2");
    assert!(r.starts_with("Limit") && r.contains("per_uid_control_queues"), "{r}");
    let root = d.client();
    root.create_topic("q.t", &aether::TopicParams::default()).unwrap();
    for i in 0..3 {
        assert_eq!(a.ask("sub q.t"), "Ok", "slot {i}");
    }
    let r = a.ask("sub q.t");
    assert!(r.starts_with("Limit") && r.contains("per_uid_slots"), "{r}");
    // Segment bytes: 4 KiB rings of ~12 KiB segments, 300000 bytes allowed.
    let mut made = 0;
    let refusal = loop {
        let r = a.ask(&format!("create q.s{made} 65536"));
        if r != "Ok" {
            break r;
        }
        made += 1;
        assert!(made < 100, "never refused");
    };
    assert!(
        refusal.starts_with("Limit") && refusal.contains("per_uid_segment_bytes"),
        "{refusal}"
    );
    assert!(made >= 2, "{made} topics before the quota");
    // The daemon's own user is still served, queues included.
    let mut sub = root
        .subscriber(
            "q.t",
            &aether::SubscriberConfig {
                delivery: aether::Delivery::Mqueue,
                ..aether::SubscriberConfig::default()
            },
        )
        .unwrap();
    root.notices_fd().unwrap();
    let mut p = root.publisher("q.t").unwrap();
    p.publish(b"served").unwrap();
    assert_eq!(
        sub.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
        b"served"
    );
    // The total: a topic past max_total_segment_bytes is refused for everyone.
    let e = root
        .create_topic(
            "big",
            &aether::TopicParams {
                ring_size: 1 << 28,
                ..aether::TopicParams::default()
            },
        )
        .unwrap_err();
    assert!(
        e.status == Status::Limit && e.message.contains("max_total_segment_bytes"),
        "{e}"
    );
    // Each refusal is logged once, not once per attempt.
    assert_eq!(d.log().matches("per_uid_connections").count(), 1, "{}", d.log());
    // A 64 MiB topic nobody uses takes no memory in the daemon.
    let before = rss_shmem_kib(d.child.id());
    root.create_topic(
        "idle",
        &aether::TopicParams {
            ring_size: 64 << 20,
            ..aether::TopicParams::default()
        },
    )
    .unwrap();
    let grown = rss_shmem_kib(d.child.id()) - before;
    assert!(
        grown < 1024,
        "an idle 64 MiB topic took {grown} KiB of the daemon's shared memory"
    );
}

/// Case 7: `kick` fences. The kicked process's next calls fail clearly, its
/// slot goes to someone else, and closing the kicked handles then writes
/// nothing into that slot: the new holder is not disturbed.
#[test]
fn a_kicked_client_is_fenced_from_its_slots() {
    let d = Daemon::start();
    let c = d.client();
    let one = aether::TopicParams {
        policy: aether::Policy::Reliable,
        ring_size: 8192,
        max_message: 256,
        max_subscribers: 1,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    };
    c.create_topic("k", &one).unwrap();
    let mut p = c.publisher("k").unwrap();
    let mut s = c.subscriber("k", &aether::SubscriberConfig::default()).unwrap();
    p.publish(b"before").unwrap();
    assert_eq!(
        s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
        b"before"
    );
    // Our connection's id, from the daemon's statistics.
    let stats = aetherd::admin::call(&d.socket, aetherd::admin::Command::Stats, Duration::from_secs(5)).unwrap();
    let me = std::process::id() as u64;
    let ids: Vec<u64> = stats["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|cl| cl["pid"].as_u64() == Some(me))
        .map(|cl| cl["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{stats}");
    aetherd::admin::call(
        &d.socket,
        aetherd::admin::Command::Kick { client: ids[0] },
        Duration::from_secs(5),
    )
    .unwrap();
    wait_for("the kick to take the slots back", Duration::from_secs(5), || {
        p.publish(b"x").is_err()
    });
    let e = p.publish(b"after").unwrap_err();
    assert!(
        e.status == Status::Unavailable && e.message.contains("took this handle's slot back"),
        "{e}"
    );
    let e = s.receive(Some(Duration::from_millis(10))).unwrap_err();
    assert!(
        e.status == Status::Unavailable && e.message.contains("took this handle's slot back"),
        "{e}"
    );
    // The one subscriber slot is someone else's now; closing the kicked
    // handles must not clear it (a reliable publisher would stop waiting for it).
    let c2 = d.client();
    let mut s2 = c2.subscriber("k", &aether::SubscriberConfig::default()).unwrap();
    drop((p, s));
    let mut p2 = c2.publisher("k").unwrap();
    p2.set_timeout(Some(Duration::from_millis(100)));
    let mut sent = 0;
    while p2.publish(&[7u8; 200]).is_ok() {
        sent += 1;
        assert!(
            sent < 1000,
            "the new holder's cursor still gates the reliable publisher"
        );
    }
    for _ in 0..sent {
        s2.receive(Some(Duration::from_secs(5)))
            .unwrap()
            .expect("every message");
    }
    assert_eq!(s2.lost(), 0);
}

/// Case 1: least privilege on the data plane. A client of another uid
/// granted only `subscribe` maps the segment read-only and cannot get a
/// writable mapping by any means its descriptors allow (mmap, a /proc reopen,
/// mprotect); a store into it kills the attacker, not the topic. It holds
/// its own cursor page writable, and the waiters page (which can only delay
/// wake-ups). A publish-only client maps the waiters page read-only and
/// never holds a subscriber's cursor page writable. Traffic beside them is
/// exact.
#[test]
fn a_subscribe_only_client_can_write_nothing_others_read() {
    if skip("case 1") {
        return;
    }
    const PUBLISHER: u32 = 64234;
    let dir = shared_dir("sec1");
    let d = shared_daemon(
        &dir,
        &format!(
            "[[access]]\ntopics = [\"lp\"]\nuids = [{ATTACKER}]\nallow = [\"subscribe\"]\n\
             [[access]]\ntopics = [\"lp\"]\nuids = [{PUBLISHER}]\nallow = [\"publish\"]\n"
        ),
    );
    let root = d.client();
    root.create_topic(
        "lp",
        &aether::TopicParams {
            policy: aether::Policy::Reliable,
            ring_size: 1 << 16,
            max_message: 256,
            max_subscribers: 8,
            wal: None,
            huge_pages: false,
            retain_bytes: None,
            retain_seconds: None,
        },
    )
    .unwrap();
    let mut sub = root.subscriber("lp", &aether::SubscriberConfig::default()).unwrap();
    let mut p = root.publisher("lp").unwrap();
    let s = d.socket.display().to_string();
    let exe = exe_for_others(&dir.0);

    let mut a = UserRole::spawn(&exe, "attacker", &[], ATTACKER, ATTACKER, &[ATTACKER]);
    assert_eq!(a.ask(&format!("connect {s}")), "Ok");
    assert_eq!(a.ask("sub lp"), "Ok");
    assert_eq!(a.ask("pub lp").split(':').next(), Some("Permission"));
    assert_eq!(a.ask("maps lp"), "segment=r--s control=r--s waiters=rw-s cursor=rw-s");
    assert_eq!(a.ask(&format!("raw sub {s} lp")), "Ok: 4 descriptors");
    assert_eq!(
        a.ask("upgrade lp"),
        "mmap=EACCES: Permission denied reopen=EACCES: Permission denied mprotect=EACCES: Permission denied"
    );
    assert_eq!(
        a.ask("upgrade lp:control"),
        "mmap=EACCES: Permission denied reopen=EACCES: Permission denied mprotect=EACCES: Permission denied"
    );
    // Traffic beside it is exact.
    for i in 0..100u32 {
        p.publish(&i.to_le_bytes()).unwrap();
        let m = sub.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
        assert_eq!(m.data, i.to_le_bytes());
    }
    // A store into the segment ends the attacker, and nothing else.
    a.send("poke lp");
    let status = a.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "the store faulted: {status:?}");
    for i in 0..100u32 {
        p.publish(&i.to_le_bytes()).unwrap();
        assert_eq!(
            sub.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
            i.to_le_bytes()
        );
    }
    assert_eq!(sub.lost(), 0);

    // A publish-only client: the segment writable (it publishes), the
    // waiters page read-only, no cursor page of its own, nothing writable of
    // anyone else's.
    let mut w = UserRole::spawn(&exe, "attacker", &[], PUBLISHER, PUBLISHER, &[PUBLISHER]);
    assert_eq!(w.ask(&format!("connect {s}")), "Ok");
    assert_eq!(w.ask("pub lp"), "Ok");
    assert_eq!(w.ask("maps lp"), "segment=rw-s control=r--s waiters=r--s cursor=none");
    assert_eq!(w.ask(&format!("raw pub {s} lp")), "Ok: 3 descriptors");
    for label in ["lp:waiters", "lp:control"] {
        assert_eq!(
            w.ask(&format!("upgrade {label}")),
            "mmap=EACCES: Permission denied reopen=EACCES: Permission denied mprotect=EACCES: Permission denied",
            "{label}"
        );
    }
    // Publishing (reliable) maps the gating subscribers' cursor pages: read-only.
    assert_eq!(w.ask("publish lp"), "Ok");
    assert_eq!(w.ask("maps lp"), "segment=rw-s control=r--s waiters=r--s cursor=r--s");
}
