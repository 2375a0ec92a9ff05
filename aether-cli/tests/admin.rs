//! aether-cli against a live aetherd through the admin pipe: every command,
//! the figures it reports against the traffic the test made, 16 CLIs at
//! once, a CLI killed while waiting, and junk written straight into the pipe.

use aether::{Client, Policy, Status, SubscriberConfig, TopicParams};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_aether-cli");

fn aetherd() -> PathBuf {
    // Built alongside by `cargo test --workspace`: target/<profile>/aetherd.
    let deps = std::env::current_exe().unwrap();
    let p = deps.parent().unwrap().parent().unwrap().join("aetherd");
    assert!(
        p.exists(),
        "{} missing: run the workspace tests (`cargo test --workspace`)",
        p.display()
    );
    p
}

struct Daemon {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// A daemon started with these extra arguments (`{dir}` in one is replaced by its directory).
    fn start_with(args: &[&str]) -> Daemon {
        let dir = std::env::temp_dir().join(format!(
            "aether-cli-it-{}-{:x}",
            std::process::id(),
            aether::sys::random_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("d.sock");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{dir}", &dir.display().to_string()))
            .collect();
        let child = Command::new(aetherd())
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon { child, dir, socket };
        wait_for("aetherd", || Client::connect_with(Some(&d.socket), false).is_ok());
        d
    }
    fn client(&self) -> Client {
        Client::connect_with(Some(&self.socket), false).unwrap()
    }
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(CLI)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env("AETHER_NO_AUTOSTART", "1")
            .output()
            .unwrap()
    }
    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.cli(&a);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
    /// What a file in the daemon's directory holds (empty if absent).
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
    /// Waits until `n` CLIs said "subscribed to" in the file `name` (their stderr).
    fn wait_subscribed(&self, name: &str, n: usize) {
        wait_for("the CLIs to subscribe", || {
            self.read(name).matches("subscribed to").count() >= n
        });
    }
    /// The reply FIFOs in the daemon's reply directory.
    fn reply_dirs(&self) -> Vec<String> {
        std::fs::read_dir(aetherd::admin::replies_dir(&self.socket))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("cli."))
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        // SAFETY: as above.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_command_reports_what_the_traffic_did() {
    let d = Daemon::start();
    let out = d.cli(&[
        "create",
        "orders",
        "--policy",
        "reliable",
        "--ring-size",
        "65536",
        "--max-message",
        "1024",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let client = d.client();
    let mut sub = client.subscriber("orders", &SubscriberConfig::default()).unwrap();
    let mut publ = client.publisher("orders").unwrap();
    for i in 0..100u32 {
        publ.publish(&i.to_le_bytes()).unwrap();
    }
    for _ in 0..60 {
        sub.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
    }
    let topics = d.json(&["topics"]);
    let t = &topics[0];
    assert_eq!(
        (t["name"].as_str(), t["policy"].as_str()),
        (Some("orders"), Some("reliable"))
    );
    assert_eq!(
        (t["ring_size"].as_u64(), t["max_message"].as_u64()),
        (Some(65536), Some(1024))
    );
    assert_eq!(
        (
            t["published"].as_u64(),
            t["publishers"].as_u64(),
            t["subscribers"].as_u64()
        ),
        (Some(100), Some(1), Some(1))
    );
    let subs = d.json(&["subscribers", "orders"]);
    assert_eq!(subs[0]["delivered"].as_u64(), Some(60));
    assert_eq!(subs[0]["lag_messages"].as_u64(), Some(40));
    assert_eq!(subs[0]["pid"].as_u64(), Some(std::process::id() as u64));
    assert_eq!(subs[0]["delivery"].as_str(), Some("shm"));
    let status = d.json(&["status"]);
    assert_eq!(status["topics"].as_u64(), Some(1));
    assert_eq!(status["pid"].as_u64(), Some(d.child.id() as u64));
    assert!(status["clients"].as_u64() >= Some(1));
    assert_eq!(status["segment_bytes"].as_u64().map(|b| b > 65536), Some(true));
    let stats = d.json(&["stats"]);
    assert_eq!(stats["topics"][0]["published"].as_u64(), Some(100));
    // Human tables carry units.
    let human = String::from_utf8(d.cli(&["topics"]).stdout).unwrap();
    assert!(
        human.contains("64 KiB") && human.contains("orders") && human.contains("reliable"),
        "{human}"
    );
    let human = String::from_utf8(d.cli(&["subscribers"]).stdout).unwrap();
    assert!(human.contains("40 msgs"), "{human}");
    // Errors: one line with a hint, non-zero exit.
    let out = d.cli(&["delete", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("aether-cli: no topic named \"nope\"") && err.contains("hint:"),
        "{err}"
    );
    // Kick: the client's connection is closed and its slots freed.
    let id = stats["clients"][0]["id"].as_u64().unwrap();
    assert!(d.cli(&["kick", &id.to_string()]).status.success());
    wait_for("the kicked client's slots to go", || {
        d.json(&["topics"])[0]["subscribers"].as_u64() == Some(0)
    });
    assert_eq!(
        client.create_topic("x", &TopicParams::default()).unwrap_err().status,
        Status::Shutdown
    );
    // Delete: a new client's open handles see it.
    let other = d.client();
    let mut p2 = other.publisher("orders").unwrap();
    assert!(d.cli(&["delete", "orders"]).status.success());
    assert_eq!(p2.publish(b"x").unwrap_err().status, Status::NotFound);
    assert_eq!(d.json(&["topics"]).as_array().map(Vec::len), Some(0));
    // Reload and drain go through the daemon's signal path.
    assert!(d.cli(&["reload"]).status.success());
    assert!(d.cli(&["drain"]).status.success());
    let mut d = d;
    wait_for("aetherd to exit after drain", || d.child.try_wait().unwrap().is_some());
    assert!(
        !d.socket.exists()
            && !aetherd::admin::pipe_path(&d.socket).exists()
            && !aetherd::admin::replies_dir(&d.socket).exists(),
        "socket, pipe and reply directory removed"
    );
}

/// `create --retain-bytes/--retain-seconds`: a durable topic's own log
/// limits, shown in force by `topics` (human and JSON) beside one that
/// follows the daemon's `[log]`; refused by the daemon on a topic that is
/// not durable, which is then not made.
#[test]
fn create_gives_a_durable_topic_its_own_retention() {
    let d = Daemon::start();
    let out = d.cli(&[
        "create",
        "audit",
        "--durability",
        "wal",
        "--retain-bytes",
        "1048576",
        "--retain-seconds",
        "0",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = d.cli(&["create", "plain", "--durability", "wal", "--retain-seconds", "3600"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let topics = d.json(&["topics"]);
    let log = |name: &str| topics.as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()["log"].clone();
    let (audit, plain) = (log("audit"), log("plain"));
    assert_eq!(audit["retain_bytes"].as_u64(), Some(1 << 20), "{audit}");
    assert_eq!(audit["retain_bytes_from"].as_str(), Some("topic"), "{audit}");
    assert_eq!(audit["retain_seconds"].as_u64(), Some(0), "{audit}");
    assert_eq!(audit["retain_seconds_from"].as_str(), Some("topic"), "{audit}");
    assert_eq!(plain["retain_bytes"].as_u64(), Some(0), "{plain}");
    assert_eq!(plain["retain_bytes_from"].as_str(), Some("log"), "{plain}");
    assert_eq!(plain["retain_seconds"].as_u64(), Some(3600), "{plain}");
    let stats = d.json(&["stats"]);
    assert_eq!(stats["topics"][0]["log"]["retain_bytes"].as_u64(), Some(1 << 20));
    let human = String::from_utf8(d.cli(&["topics"]).stdout).unwrap();
    assert!(human.contains("keeps 1 MiB (topic)"), "{human}");
    assert!(human.contains("keeps 1h 0m 0s (topic)"), "{human}");
    for flag in ["--retain-bytes", "--retain-seconds"] {
        let out = d.cli(&["create", "memory", flag, "0"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not durable"), "{err}");
    }
    assert_eq!(d.json(&["topics"]).as_array().map(Vec::len), Some(2));
}

#[test]
fn sixteen_concurrent_clis_get_their_own_replies() {
    let d = Daemon::start();
    let c = d.client();
    for i in 0..5 {
        c.create_topic(
            &format!("t{i}"),
            &TopicParams {
                policy: Policy::Lossy,
                ..TopicParams::default()
            },
        )
        .unwrap();
    }
    for round in 0..3 {
        let kids: Vec<Child> = (0..16)
            .map(|i| {
                let cmd = if i % 2 == 0 { "topics" } else { "status" };
                Command::new(CLI)
                    .args(["--socket", d.socket.to_str().unwrap(), "--json", cmd])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (i, k) in kids.into_iter().enumerate() {
            let out = k.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round} cli {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).expect("one whole JSON document");
            if i % 2 == 0 {
                assert_eq!(v.as_array().map(Vec::len), Some(5), "{v}");
            } else {
                assert_eq!(v["topics"].as_u64(), Some(5), "{v}");
            }
        }
    }
    assert!(d.reply_dirs().is_empty(), "{:?}", d.reply_dirs());
}

#[test]
fn a_cli_killed_while_waiting_leaves_nothing_and_wedges_nothing() {
    let d = Daemon::start();
    // Freeze the daemon so the CLI waits for its reply (and wait until it is stopped).
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGSTOP) };
    let stat = format!("/proc/{}/stat", d.child.id());
    wait_for("the daemon to stop", || {
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('T')))
    });
    let mut cli = Command::new(CLI)
        .args(["--socket", d.socket.to_str().unwrap(), "status", "--timeout", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the CLI's reply FIFO", || {
        if let Some(st) = cli.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(cli.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the CLI exited early ({st}): {err}");
        }
        !d.reply_dirs().is_empty()
    });
    cli.kill().unwrap(); // SIGKILL: no chance to clean up
    cli.wait().unwrap();
    // An interrupted (Ctrl-C) CLI cleans up after itself.
    let mut cli2 = Command::new(CLI)
        .args(["--socket", d.socket.to_str().unwrap(), "status", "--timeout", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the second CLI's reply FIFO", || d.reply_dirs().len() == 2);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(cli2.id() as i32, libc::SIGINT) };
    assert!(!cli2.wait().unwrap().success());
    assert_eq!(d.reply_dirs().len(), 1, "the interrupted CLI removed its FIFO");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGCONT) };
    // The daemon answers the next CLI, and sweeps the killed one's FIFO.
    assert_eq!(d.json(&["status"])["topics"].as_u64(), Some(0));
    wait_for("the dead CLI's FIFO to be swept", || d.reply_dirs().is_empty());
}

#[test]
fn junk_in_the_pipe_is_refused_and_the_daemon_keeps_serving() {
    let d = Daemon::start();
    let pipe = aetherd::admin::pipe_path(&d.socket);
    // A reply FIFO of our own, where the daemon accepts to write.
    let fifo = aetherd::admin::replies_dir(&d.socket).join(format!("cli.{}.{:032x}", std::process::id(), 7));
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let read_reply = |req: &str| -> Value {
        // Open our end first (non-blocking), then write the request.
        use std::os::unix::fs::OpenOptionsExt;
        let mut rd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&pipe).unwrap();
        w.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let mut buf = [0u8; 4096];
            match std::io::Read::read(&mut rd, &mut buf) {
                Ok(0) if !out.is_empty() => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            assert!(Instant::now() < end, "no reply to {req}");
            std::thread::sleep(Duration::from_millis(5));
        }
        serde_json::from_slice(&out).unwrap()
    };
    let f = fifo.to_str().unwrap();
    for (req, status) in [
        (
            format!("{{\"v\":2,\"reply\":\"{f}\",\"cmd\":\"explode\"}}\n"),
            Status::Invalid,
        ),
        (
            format!("{{\"v\":2,\"reply\":\"{f}\",\"cmd\":\"delete\"}}\n"),
            Status::Invalid,
        ),
        (
            format!("{{\"v\":9,\"reply\":\"{f}\",\"cmd\":\"status\"}}\n"),
            Status::Protocol,
        ),
        (
            format!("{{\"v\":2,\"reply\":\"{f}\",\"cmd\":\"status\",\"rogue\":true}}\n"),
            Status::Protocol,
        ),
        (
            format!("{{\"v\":2,\"reply\":\"{f}\",\"cmd\":\"create\",\"topic\":\"../etc\"}}\n"),
            Status::Invalid,
        ),
        (
            format!("{{\"v\":2,\"reply\":\"{f}\",\"cmd\":\"delete\",\"topic\":\"absent\"}}\n"),
            Status::NotFound,
        ),
    ] {
        let v = read_reply(&req);
        assert_eq!(
            (v["ok"].as_bool(), v["status"].as_i64()),
            (Some(false), Some(status as i64)),
            "{req} -> {v}"
        );
    }
    // Junk with no usable reply path: nothing to answer, nothing disturbed.
    let mut w = std::fs::OpenOptions::new().write(true).open(&pipe).unwrap();
    w.write_all(b"not json at all\n{\"v\":2,\"reply\":\"/etc/passwd\",\"cmd\":\"status\"}\n")
        .unwrap();
    w.write_all(&vec![b'x'; 10_000]).unwrap();
    w.write_all(b"\n").unwrap();
    drop(w);
    assert_eq!(
        d.json(&["status"])["topics"].as_u64(),
        Some(0),
        "a normal CLI is still served"
    );
    // A FIFO outside the reply directory, or a symlink in it: the request
    // is not answered and nothing runs (the topic is not made).
    let elsewhere = d.dir.join(format!("cli.{}.{:032x}", std::process::id(), 8));
    let link = aetherd::admin::replies_dir(&d.socket).join(format!("cli.{}.{:032x}", std::process::id(), 9));
    let c = std::ffi::CString::new(elsewhere.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let mut w = std::fs::OpenOptions::new().write(true).open(&pipe).unwrap();
    for (i, reply) in [&elsewhere, &link].into_iter().enumerate() {
        let r = reply.to_str().unwrap();
        writeln!(
            w,
            "{{\"v\":2,\"reply\":\"{r}\",\"cmd\":\"create\",\"topic\":\"made{i}\"}}"
        )
        .unwrap();
    }
    drop(w);
    let topics = d.json(&["topics"]);
    assert_eq!(topics.as_array().map(Vec::len), Some(0), "{topics}");
    for f in [&fifo, &elsewhere, &link] {
        std::fs::remove_file(f).unwrap();
    }
}

#[test]
fn stats_watch_prints_json_lines_until_interrupted() {
    let d = Daemon::start();
    d.client().create_topic("w", &TopicParams::default()).unwrap();
    let cli = Command::new(CLI)
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "--json",
            "stats",
            "--watch",
            "--interval",
            "0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(cli.id() as i32, libc::SIGINT) };
    let out = cli.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() >= 3, "{} lines", lines.len());
    assert!(lines.iter().all(|l| l["topics"][0]["name"] == "w"));
    assert!(d.reply_dirs().is_empty());
}

/// Prometheus: `stats --prometheus` prints the text format; the daemon's
/// optional listener serves the same at /metrics (and 404 elsewhere).
#[test]
fn metrics_for_prometheus_from_the_cli_and_the_listener() {
    use std::io::{Read, Write};
    let d = Daemon::start_with(&["--metrics-listen", "127.0.0.1:0", "--log-file", "{dir}/d.log"]);
    let client = d.client();
    client.create_topic("metered", &TopicParams::default()).unwrap();
    let mut publ = client.publisher("metered").unwrap();
    for _ in 0..7 {
        publ.publish(b"x").unwrap();
    }
    let out = d.cli(&["stats", "--prometheus"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "aether_topic_published_total{topic=\"metered\"} 7"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "# TYPE aether_topic_published_total counter"),
        "{text}"
    );
    let log = std::fs::read_to_string(d.dir.join("d.log")).unwrap();
    let port: u16 = log
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    let r = get("/metrics");
    assert!(r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("text/plain; version=0.0.4"), "{r}");
    assert!(r.contains("aether_topic_published_total{topic=\"metered\"} 7"), "{r}");
    let r = get("/");
    assert!(r.contains(" 404 "), "{r}");
    // A party sending junk, or connecting and saying nothing, gets nothing and
    // stops no one: the next scrape is served, and so is the control socket.
    {
        let mut junk = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = junk.write_all(b"\x00\xffNOT HTTP AT ALL\r\n\r\n");
        let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(get("/metrics").contains("aether_topic_published_total{topic=\"metered\"} 7"));
    }
    publ.publish(b"x").unwrap();
    assert!(get("/metrics").contains("aether_topic_published_total{topic=\"metered\"} 8"));
}

/// `top` in a pseudo-terminal (util-linux's `script`): it draws the topics
/// and subscribers, stops after `--iterations`, and on `q` from the keyboard.
#[test]
fn top_draws_topics_and_subscribers_in_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no script(1) to make a pseudo-terminal");
        return;
    }
    let d = Daemon::start();
    let client = d.client();
    client.create_topic("watched", &TopicParams::default()).unwrap();
    let _sub = client.subscriber("watched", &SubscriberConfig::default()).unwrap();
    let mut publ = client.publisher("watched").unwrap();
    for _ in 0..12 {
        publ.publish(b"x").unwrap();
    }
    let top = |extra: &str, input: &[u8]| {
        let cmd = format!(
            "stty cols 120 rows 30; {CLI} --socket {} top --interval 0.2 {extra}",
            d.socket.display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("AETHER_NO_AUTOSTART", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(500));
            stdin.write_all(input).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        // The screen without its escape sequences, blanks squeezed.
        let raw = String::from_utf8_lossy(&out.stdout).to_string();
        let mut text = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                while let Some(&n) = chars.peek() {
                    chars.next();
                    if n.is_ascii_alphabetic() && n != '[' {
                        break;
                    }
                }
                text.push(' ');
            } else {
                text.push(c);
            }
        }
        (
            out.status.success(),
            text.split_whitespace().collect::<Vec<_>>().join(" "),
        )
    };
    let (ok, screen) = top("--iterations 2", b"");
    assert!(ok, "{screen}");
    for want in [
        "TOPIC POLICY PUBS SUBS PUBLISHED",
        "watched lossy 1 1 12",
        "subscribers",
        "DELIVERED LAG",
    ] {
        assert!(screen.contains(want), "no {want:?} in: {screen}");
    }
    // No --iterations: it runs until q.
    let started = std::time::Instant::now();
    let (ok, screen) = top("", b"q");
    assert!(ok && started.elapsed() < std::time::Duration::from_secs(10), "{screen}");
    assert!(screen.contains("watched"), "{screen}");
}

#[test]
fn no_daemon_is_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("aether-cli-none-{}", std::process::id()));
    let out = Command::new(CLI)
        .args(["--socket", dir.join("x.sock").to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("aether-cli: no aetherd admin pipe at ") && err.contains("hint: no broker answers at "),
        "{err}"
    );
}

#[test]
fn completions_are_generated() {
    let out = Command::new(CLI).args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("aether-cli"));
}

/// `reload` reports the daemon's verdict: a bad file is an error (exit 1,
/// naming the file and key) and changes nothing; a good one is in force
/// when the command returns.
#[test]
fn reload_says_whether_the_file_was_taken() {
    let dir = std::env::temp_dir().join(format!(
        "aether-cli-conf-{}-{:x}",
        std::process::id(),
        aether::sys::random_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("aetherd.toml");
    std::fs::write(&conf, "[limits]\nmax_topics = 5\n").unwrap();
    let d = Daemon::start_with(&["--config", conf.to_str().unwrap()]);
    std::fs::write(&conf, "[limits]\nmax_topic = 1\n").unwrap();
    let out = d.cli(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not reloaded") && err.contains("limits.max_topic"),
        "{err}"
    );
    // Still the old limit (5): a sixth topic is refused.
    let c = d.client();
    for i in 0..5 {
        c.create_topic(&format!("t{i}"), &TopicParams::default()).unwrap();
    }
    assert_eq!(
        c.create_topic("t5", &TopicParams::default()).unwrap_err().status,
        Status::Limit
    );
    std::fs::write(&conf, "[limits]\nmax_topics = 6\n").unwrap();
    let out = d.cli(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded"));
    c.create_topic("t5", &TopicParams::default())
        .expect("in force on return");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sub` in a pipeline: each message reaches `head` as it arrives (no
/// block buffering), and when `head` exits the CLI ends quietly.
#[test]
fn sub_feeds_a_pipe_at_once_and_ends_quietly_when_it_closes() {
    let d = Daemon::start();
    d.client().create_topic("lines", &TopicParams::default()).unwrap();
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{CLI}' --socket '{}' sub lines 2>'{}' | head -n 2",
            d.socket.display(),
            d.dir.join("sub.err").display()
        ))
        .env("AETHER_NO_AUTOSTART", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let c = d.client();
    // (The daemon lists a subscriber before its open returns: wait for the CLI's word.)
    d.wait_subscribed("sub.err", 1);
    let mut p = c.publisher("lines").unwrap();
    p.publish(b"first").unwrap();
    p.publish(b"second").unwrap();
    // `head` has its two lines now; the CLI dies of SIGPIPE at its next write.
    let t0 = Instant::now();
    while sh.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the pipeline did not finish");
        let _ = p.publish(b"more");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = sh.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nsecond\n");
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &d.read("sub.err");
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    // `stats --watch --json | head -c 10`: no panic either.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{CLI}' --socket '{}' --json stats --watch --interval 0.1 | head -c 10",
            d.socket.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.stdout.len(), 10);
}

/// `sub --json` never mangles bytes; `--format hex|base64` print any payload on one line.
#[test]
fn sub_prints_binary_payloads_faithfully() {
    let d = Daemon::start();
    let c = d.client();
    c.create_topic("bin", &TopicParams::default()).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(CLI);
        cmd.arg("--socket")
            .arg(&d.socket)
            .args(args)
            .env("AETHER_NO_AUTOSTART", "1");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.dir.join("subs.err"))
            .unwrap();
        cmd.stdout(Stdio::piped()).stderr(err).spawn().unwrap()
    };
    let payloads: [&[u8]; 2] = [b"plain text", &[0xff, 0x00, b'\n', 0x80]];
    let kids = [
        run(&["--json", "sub", "bin", "--count", "2", "--timeout", "10"]),
        run(&["sub", "bin", "--count", "2", "--format", "hex", "--timeout", "10"]),
        run(&["sub", "bin", "--count", "2", "--format", "base64", "--timeout", "10"]),
    ];
    d.wait_subscribed("subs.err", 3);
    let mut p = c.publisher("bin").unwrap();
    for m in payloads {
        p.publish(m).unwrap();
    }
    let outs: Vec<String> = kids
        .into_iter()
        .map(|k| String::from_utf8(k.wait_with_output().unwrap().stdout).unwrap())
        .collect();
    let json: Vec<Value> = outs[0].lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        (json[0]["encoding"].as_str(), json[0]["data"].as_str()),
        (Some("utf8"), Some("plain text"))
    );
    assert_eq!(
        (json[1]["encoding"].as_str(), json[1]["data"].as_str()),
        (Some("base64"), Some("/wAKgA=="))
    );
    assert_eq!(json[1]["len"], 4);
    assert_eq!(outs[1], "706c61696e2074657874\nff000a80\n");
    assert_eq!(outs[2], "cGxhaW4gdGV4dA==\n/wAKgA==\n");
}

/// Who may administer (issue 16): the reply FIFO's owner is the requester,
/// checked against the `monitor` and `admin` rights. As root: a monitoring
/// user reads but cannot change; a member of the admin group (known only
/// from its process's groups, not from /etc/group) does everything; a user
/// with no right is told why; root does everything; and nobody can list
/// the reply directory to find another requester's FIFO.
#[test]
fn admin_rights_decide_what_each_user_may_run() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: running the CLI as other users needs root");
        return;
    }
    const MONITOR: u32 = 65534; // nobody
    const STRANGER: u32 = 64997;
    const ADMIN: u32 = 64998;
    const ADMINS: u32 = 64999; // a group only ADMIN's process is in
    let conf_dir = std::env::temp_dir().join(format!(
        "aether-cli-rights-{}-{:x}",
        std::process::id(),
        aether::sys::random_u64()
    ));
    std::fs::create_dir_all(&conf_dir).unwrap();
    let conf = conf_dir.join("aetherd.toml");
    std::fs::write(
        &conf,
        format!(
            "[daemon]\nsocket_mode = \"0666\"\nsocket_group = {ADMINS}\n\
             [[access]]\ntopics = [\"*\"]\nuids = [{MONITOR}]\nallow = [\"monitor\"]\n\
             [[access]]\ntopics = [\"*\"]\ngids = [{ADMINS}]\nallow = [\"admin\"]\n"
        ),
    )
    .unwrap();
    let d = Daemon::start_with(&["--config", conf.to_str().unwrap()]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = d.dir.join("aether-cli");
    std::fs::copy(CLI, &exe).unwrap();
    let run_as = |uid: u32, gid: u32, groups: &'static [u32], args: &[&str]| -> (bool, String, String) {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(&exe);
        cmd.arg("--socket")
            .arg(&d.socket)
            .args(args)
            .env("AETHER_NO_AUTOSTART", "1");
        // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid) in the child.
        unsafe {
            cmd.pre_exec(move || {
                let ok = libc::setgroups(groups.len(), groups.as_ptr()) == 0
                    && libc::setgid(gid) == 0
                    && libc::setuid(uid) == 0;
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            })
        };
        let out = cmd.output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, _, err) = run_as(MONITOR, MONITOR, &[], &["--version"]);
    if !ok {
        eprintln!("skipped: {} cannot be run by uid {MONITOR}: {err}", exe.display());
        let _ = std::fs::remove_dir_all(&conf_dir);
        return;
    }
    // A member of the admin group: every command.
    let (ok, out, err) = run_as(ADMIN, ADMIN, &[ADMINS], &["create", "ops"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run_as(ADMIN, ADMIN, &[ADMINS], &["reload"]);
    assert!(ok && out.contains("reloaded"), "{out}{err}");
    // The monitoring user: reads, but may not change anything.
    for cmd in [&["status"][..], &["topics"], &["subscribers"], &["stats"]] {
        let (ok, out, err) = run_as(MONITOR, MONITOR, &[], cmd);
        assert!(ok, "{cmd:?}: {out}{err}");
    }
    let (ok, out, _) = run_as(MONITOR, MONITOR, &[], &["topics"]);
    assert!(ok && out.contains("ops"), "{out}");
    for cmd in [
        &["delete", "ops"][..],
        &["create", "x"],
        &["drain"],
        &["reload"],
        &["kick", "1"],
    ] {
        let (ok, _, err) = run_as(MONITOR, MONITOR, &[], cmd);
        assert!(!ok, "{cmd:?} was allowed to a monitor");
        assert!(
            err.contains(&format!("uid {MONITOR} may not administer")) && err.contains("needs the admin right"),
            "{err}"
        );
    }
    // No right at all: told so, in the CLI.
    let (ok, _, err) = run_as(STRANGER, STRANGER, &[], &["status"]);
    assert!(
        !ok && err.contains(&format!("uid {STRANGER} may not monitor")) && err.contains("needs the monitor right"),
        "{err}"
    );
    // The reply directory cannot be listed by them, and root is served.
    let replies = aetherd::admin::replies_dir(&d.socket);
    let meta = std::fs::metadata(&replies).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o1733);
    let (ok, _, err) = run_as(STRANGER, STRANGER, &[], &["--version"]);
    assert!(ok, "{err}");
    let listed = Command::new("setpriv")
        .args([
            &format!("--reuid={STRANGER}"),
            &format!("--regid={STRANGER}"),
            "--clear-groups",
            "ls",
        ])
        .arg(&replies)
        .output();
    if let Ok(listed) = listed {
        assert!(!listed.status.success(), "uid {STRANGER} listed {}", replies.display());
    }
    assert!(d.cli(&["delete", "ops"]).status.success());
    assert_eq!(d.json(&["topics"]).as_array().map(Vec::len), Some(0));
    let _ = std::fs::remove_dir_all(&conf_dir);
}
