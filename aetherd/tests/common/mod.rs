//! Test harness: a private daemon per test, and child processes that run a
//! role (publisher, subscriber, ...) by re-executing this test binary.
#![allow(dead_code)]

use aether::Client;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const AETHERD: &str = env!("CARGO_BIN_EXE_aetherd");

/// A directory unique to this test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "aether-it-{tag}-{}-{}-{:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            aether::sys::random_u64() & 0xffff_ffff
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Names in /dev/shm that belong to the daemon instance `id`. Segments are
/// unnamed memfds, so there should never be any: this guards against a
/// return to named objects (after a daemon exits; while it runs, see
/// [`daemon_segments`]).
pub fn shm_objects(instance_id: u64) -> Vec<String> {
    // Named segments would be `aether.<id>.<topic>`, a lock `aether.<id>`.
    let lock = format!("aether.{instance_id:016x}");
    let prefix = format!("{lock}.");
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| *n == lock || n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The topics whose segments the running daemon `pid` holds, sorted: its
/// memfds labelled `aether:<topic>` (not its waiters and cursor pages,
/// `aether:<topic>:...`), seen through /proc/<pid>/fd.
#[allow(dead_code)] // not every test binary uses it
pub fn daemon_segments(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| {
                let target = std::fs::read_link(e.ok()?.path()).ok()?;
                let name = target.to_str()?.strip_prefix("/memfd:aether:")?;
                let name = name.trim_end_matches(" (deleted)");
                // The segment itself (its waiters and cursor pages are `topic:...`).
                (!name.contains(':')).then(|| name.to_string())
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    // The daemon holds a read-write and a read-only descriptor of each.
    v.dedup();
    v
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An `aetherd` on a private socket, stopped (SIGTERM) and cleaned on drop.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub instance_id: u64,
    pub dir: TempDir,
}

impl Daemon {
    pub fn start() -> Daemon {
        let dir = TempDir::new("d");
        let socket = dir.0.join("aetherd.sock");
        Daemon::start_in(dir, socket)
    }

    /// A daemon on `socket`, whose directory belongs to the caller (e.g. the
    /// socket of a killed daemon, to restart it).
    pub fn start_on(socket: PathBuf) -> Daemon {
        Daemon::start_in(TempDir::new("d-on"), socket)
    }

    fn start_in(dir: TempDir, socket: PathBuf) -> Daemon {
        // Durable topics under the test's own directory, never the user's.
        let child = Command::new(AETHERD)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.0.join("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aetherd");
        Daemon::adopt(child, socket, dir)
    }

    /// The daemon `child` started (however the test started it), once it
    /// answers on `socket`.
    pub fn adopt(child: Child, socket: PathBuf, dir: TempDir) -> Daemon {
        let mut d = Daemon {
            child,
            socket,
            instance_id: 0,
            dir,
        };
        let mut client = None;
        // Never auto-start here: a second daemon would take the socket from ours.
        wait_for("aetherd to listen", Duration::from_secs(10), || {
            client = Client::connect_with(Some(&d.socket), false).ok();
            client.is_some()
        });
        d.instance_id = client.unwrap().instance_id();
        d
    }

    pub fn client(&self) -> Client {
        Client::connect_with(Some(&self.socket), false).expect("connect to test daemon")
    }

    pub fn socket_env(&self) -> (&'static str, String) {
        ("AETHER_TEST_SOCKET", self.socket.display().to_string())
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait aetherd") {
                return st;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                return self.child.wait().expect("wait aetherd");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        // Whatever happened, leave no segment of this instance behind.
        for n in shm_objects(self.instance_id) {
            let _ = aether::sys::shm::unlink(&format!("/{n}"));
        }
    }
}

/// A child process running `role` (see `child_main` in the test file).
pub struct Role {
    pub child: Child,
    out: BufReader<ChildStdout>,
}

impl Role {
    pub fn spawn(role: &str, env: &[(&str, String)]) -> Role {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args(["--exact", "child_main", "--nocapture", "--test-threads=1", "--quiet"])
            .env("AETHER_CHILD_ROLE", role)
            .env("AETHER_NO_AUTOSTART", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn role");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        Role { child, out }
    }

    /// The next line the role printed with the `AETHER:` prefix (prefix removed).
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        loop {
            l.clear();
            let n = self.out.read_line(&mut l).expect("read child stdout");
            assert!(n > 0, "child exited before printing the expected line");
            if let Some(rest) = l.trim_end().strip_prefix("AETHER:") {
                return rest.to_string();
            }
        }
    }

    pub fn expect(&mut self, what: &str) {
        assert_eq!(self.line(), what);
    }

    pub fn wait_ok(mut self) {
        let st = self.child.wait().expect("wait child");
        assert!(st.success(), "child failed: {st}");
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses `key=value` pairs of a result line.
pub fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .expect("number")
}

pub fn env_var(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"))
}

/// Message `i` of a test stream: `len` bytes, its index in the first 8.
pub fn message(i: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|k| (i as usize).wrapping_mul(31).wrapping_add(k) as u8)
        .collect();
    if len >= 8 {
        v[..8].copy_from_slice(&i.to_le_bytes());
    }
    v
}

/// Sizes 1..=max, every one of them over `max` consecutive indices.
pub fn size_of_msg(i: u64, max: usize) -> usize {
    1 + (i as usize).wrapping_mul(7919) % max
}

// ---------------------------------------------------------------------------
// Daemons with a configuration, and clients running as another user
// (aetherd/tests/access.rs).

/// The variables through which the environment configures aetherd; removed
/// from daemons started by [`Daemon::start_with`] unless the test sets them.
pub const CONFIG_ENV: &[&str] = &[
    "AETHER_SOCKET",
    "AETHER_LOG",
    "RUST_LOG",
    "AETHER_CONFIG",
    "AETHER_DRAIN_TIMEOUT",
    "AETHER_STATE_DIR",
];

impl Daemon {
    /// Starts `aetherd args...` with `env` (and none of [`CONFIG_ENV`]
    /// otherwise), its stderr in `dir/aetherd.log`, and waits until it answers
    /// on `socket` (which the arguments, environment or file decide).
    pub fn start_with(
        dir: TempDir,
        socket: PathBuf,
        args: &[&std::ffi::OsStr],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Daemon {
        let log = std::fs::File::create(dir.0.join("aetherd.log")).expect("create daemon log");
        let mut cmd = Command::new(AETHERD);
        cmd.args(args).stdout(Stdio::null()).stderr(log);
        for k in CONFIG_ENV {
            cmd.env_remove(k);
        }
        // Durable topics under the test's own directory unless it says otherwise.
        cmd.env("AETHER_STATE_DIR", dir.0.join("state"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start aetherd");
        let mut d = Daemon {
            child,
            socket,
            instance_id: 0,
            dir,
        };
        let mut client = None;
        let end = Instant::now() + Duration::from_secs(10);
        while client.is_none() {
            if let Some(st) = d.child.try_wait().expect("wait aetherd") {
                panic!("aetherd exited ({st}) before listening; its log:\n{}", d.log());
            }
            assert!(
                Instant::now() < end,
                "aetherd did not listen on {}; its log:\n{}",
                d.socket.display(),
                d.log()
            );
            client = Client::connect_with(Some(&d.socket), false).ok();
            std::thread::sleep(Duration::from_millis(5));
        }
        d.instance_id = client.unwrap().instance_id();
        d
    }

    /// What the daemon logged so far (only for daemons from [`Daemon::start_with`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("aetherd.log")).unwrap_or_default()
    }

    /// Waits until the log holds `text` `count` times in all.
    pub fn wait_log(&self, text: &str, count: usize) {
        let end = Instant::now() + Duration::from_secs(10);
        while self.log().matches(text).count() < count {
            assert!(
                Instant::now() < end,
                "no {text:?} (x{count}) in the daemon's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

/// Whether a user who owns none of it and is in none of its groups can
/// search every directory on the way to `path` and read (and, with `exec`,
/// execute) it.
pub fn reachable_by_others(path: &std::path::Path, exec: bool) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    let dirs_ok = path
        .ancestors()
        .skip(1)
        .all(|d| d.as_os_str().is_empty() || mode(d) & 0o001 != 0);
    let want = if exec { 0o005 } else { 0o004 };
    dirs_ok && mode(path) & want == want
}

/// This test binary, or a copy of it in `dir` (mode 0755) when another user
/// could not run it where it is.
pub fn exe_for_others(dir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().expect("test binary");
    if reachable_by_others(&exe, true) {
        return exe;
    }
    let copy = dir.join("test-binary");
    std::fs::copy(&exe, &copy).expect("copy the test binary");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod the copy");
    assert!(
        reachable_by_others(&copy, true),
        "{} is not reachable by other users",
        copy.display()
    );
    copy
}

/// A temp dir that other users can reach (0755 all the way down), under
/// `$TMPDIR` if that is reachable, else under /tmp.
pub fn shared_dir(tag: &str) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = TempDir::new(tag);
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    if reachable_by_others(&d.0, true) {
        return d;
    }
    let name = d.0.file_name().expect("a name").to_owned();
    drop(d);
    let p = std::path::Path::new("/tmp").join(name);
    std::fs::create_dir_all(&p).expect("create dir in /tmp");
    let d = TempDir(p);
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    assert!(
        reachable_by_others(&d.0, true),
        "{} is not reachable by other users",
        d.0.display()
    );
    d
}

/// An `aetherd` whose socket is in `dir` (from [`shared_dir`]), mode 0666 so
/// that other users can connect, with `config` (the file's text) as its
/// configuration; its log in a private temp dir.
pub fn shared_daemon(dir: &TempDir, config: &str) -> Daemon {
    let socket = dir.0.join("aetherd.sock");
    let file = dir.0.join("aetherd.toml");
    std::fs::write(&file, config).expect("write the configuration");
    Daemon::start_with(
        TempDir::new("shared-log"),
        socket.clone(),
        &[
            std::ffi::OsStr::new("--socket-mode"),
            std::ffi::OsStr::new("0666"),
            std::ffi::OsStr::new("--config"),
            file.as_os_str(),
        ],
        &[("AETHER_SOCKET", socket.as_os_str())],
    )
}

/// `path` (a program), or a copy of it in `dir` (mode 0755) when another
/// user could not run it where it is.
pub fn program_for_others(path: &std::path::Path, dir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if reachable_by_others(path, true) {
        return path.to_path_buf();
    }
    let copy = dir.join(path.file_name().expect("a file name"));
    std::fs::copy(path, &copy).expect("copy the program");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod the copy");
    copy
}

/// A child process (this test binary, re-executed as `child_main` in `role`)
/// running as another user, answering one line on stdout per line on stdin.
pub struct UserRole {
    pub child: Child,
    stdin: std::process::ChildStdin,
    out: BufReader<ChildStdout>,
}

impl UserRole {
    /// Runs `exe` as `uid`/`gid` with exactly the supplementary `groups` (needs root).
    pub fn spawn(
        exe: &std::path::Path,
        role: &str,
        env: &[(&str, String)],
        uid: u32,
        gid: u32,
        groups: &[u32],
    ) -> UserRole {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", "child_main", "--nocapture", "--test-threads=1", "--quiet"])
            .env("AETHER_CHILD_ROLE", role)
            .env("AETHER_NO_AUTOSTART", "1")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let groups: Vec<libc::gid_t> = groups.to_vec();
        // SAFETY: between fork and exec the closure only makes async-signal-safe
        // system calls (setgroups, setgid, setuid) on memory allocated before
        // the fork, and builds its error without allocating. Groups first, then
        // the gid, then the uid: each needs the privileges the next one drops.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn a role as another user");
        let stdin = child.stdin.take().expect("piped stdin");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        UserRole { child, stdin, out }
    }

    /// Sends one command line without waiting for an answer (one that ends the role).
    pub fn send(&mut self, command: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{command}").expect("write to the role");
        self.stdin.flush().expect("flush the role's stdin");
    }

    /// Sends one command line and returns the `AETHER:` line it answers (prefix removed).
    pub fn ask(&mut self, command: &str) -> String {
        use std::io::Write;
        writeln!(self.stdin, "{command}").expect("write to the role");
        self.stdin.flush().expect("flush the role's stdin");
        let mut l = String::new();
        loop {
            l.clear();
            let n = self.out.read_line(&mut l).expect("read the role's stdout");
            assert!(n > 0, "the role exited before answering {command:?}");
            if let Some(rest) = l.trim_end().strip_prefix("AETHER:") {
                return rest.to_string();
            }
        }
    }
}

impl Drop for UserRole {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Publishes `len`-byte messages until one times out (a reliable topic whose
/// slowest subscriber is a full ring behind), at most `tries` times. Returns
/// whether one did; any other error fails the test.
pub fn publish_until_blocked(p: &mut aether::Publisher, tries: usize, len: usize) -> bool {
    let msg = vec![0u8; len];
    (0..tries).any(|_| match p.publish(&msg) {
        Ok(_) => false,
        Err(e) if e.status == aether::Status::Timeout => true,
        Err(e) => panic!("publish: {e}"),
    })
}

// ---------------------------------------------------------------------------
// Fault loops, exhaustion and soak (aetherd/tests/faults.rs, exhaustion.rs,
// soak.rs).

/// Rounds of a fault loop: `AETHER_FAULT_ROUNDS` if set (1000 on demand),
/// else `ci` (what the CI run affords for this kind of round).
pub fn fault_rounds(ci: u64) -> u64 {
    match std::env::var("AETHER_FAULT_ROUNDS") {
        Ok(v) => v.parse().expect("AETHER_FAULT_ROUNDS: a number"),
        Err(_) => ci,
    }
}

/// How many descriptors process `pid` holds (/proc/PID/fd).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What process `pid`'s descriptors point at (`socket:[...]`, paths,
/// `anon_inode:...`), sorted: printed when a count is off.
pub fn fd_targets(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| Some(std::fs::read_link(e.ok()?.path()).ok()?.display().to_string()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Process `pid`'s resident set (VmRSS, in KiB).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until daemon `pid` holds at most `bound` descriptors; on a timeout
/// the assertion names what it holds.
pub fn wait_fds_at_most(pid: u32, bound: usize, what: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while fd_count(pid) > bound {
        assert!(
            Instant::now() < end,
            "{what}: pid {pid} holds {} descriptors, more than {bound}: {:?}",
            fd_count(pid),
            fd_targets(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `cli.*` reply FIFOs left in the reply directory of the daemon on `socket`.
pub fn reply_fifos(socket: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(aetherd::admin::replies_dir(socket))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("cli."))
                .collect()
        })
        .unwrap_or_default()
}

/// Message queues of the daemon instance `instance_id` left in /dev/mqueue
/// (`aether.<id>.q<n>`, when /dev/mqueue is mounted; the daemon unlinks each
/// queue as soon as it is open, so there should never be any).
pub fn mqueue_objects(instance_id: u64) -> Vec<String> {
    let prefix = format!("aether.{instance_id:016x}.");
    std::fs::read_dir("/dev/mqueue")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A free TCP port on 127.0.0.1 (free when asked; tests do not race for it
/// long: the daemon binds it at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `topic`'s row of `aether-cli topics` (the admin pipe's `Topics`).
pub fn topic_row(socket: &std::path::Path, topic: &str) -> serde_json::Value {
    let topics = aetherd::admin::call(socket, aetherd::admin::Command::Topics, Duration::from_secs(5)).unwrap();
    topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == topic)
        .unwrap_or_else(|| panic!("no {topic} in {topics}"))
        .clone()
}
