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

/// Names in /dev/shm that belong to the daemon instance `id`.
pub fn shm_objects(instance_id: u64) -> Vec<String> {
    // Its segments `aether.<id>.<topic>` and its instance lock `aether.<id>`.
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
        let child = Command::new(AETHERD)
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aetherd");
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
