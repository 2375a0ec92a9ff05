//! `[daemon] cpu_affinity` across processes: each kind of daemon thread
//! named there runs on its CPUs (read from /proc), the others where they
//! were; a CPU the machine lacks keeps the daemon from starting, with the key.

mod common;

use aether::{Fsync, Policy, TopicParams};
use common::*;
use std::ffi::OsStr;
use std::process::Command;

/// Each thread of `pid`: its name (comm) and the CPUs it may run on.
fn threads(pid: u32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the daemon's threads")
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?.trim().to_string();
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
                .trim()
                .to_string();
            Some((comm, cpus))
        })
        .collect()
}

#[test]
fn each_kind_of_daemon_thread_runs_on_its_cpus() {
    let all = aether::sys::affinity::current().expect("this thread's CPUs");
    let cpu = *all.last().expect("a CPU");
    let everything = aether::sys::affinity::ranges(&all);
    let dir = TempDir::new("affinity");
    let (socket, config) = (dir.0.join("aetherd.sock"), dir.0.join("aetherd.toml"));
    std::fs::write(
        &config,
        format!(
            "[daemon]\ncpu_affinity = {{ accept = [{cpu}], client = [{cpu}], housekeep = [{cpu}], log = [{cpu}] }}\n"
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        TempDir::new("affinity-log"),
        socket.clone(),
        &[
            OsStr::new("--socket"),
            socket.as_os_str(),
            OsStr::new("--config"),
            config.as_os_str(),
        ],
        &[],
    );
    let c = d.client();
    let durable = TopicParams {
        policy: Policy::Reliable,
        wal: Some(Fsync::Never),
        ..TopicParams::default()
    };
    c.create_topic("pinned", &durable).unwrap();
    let mut seen = std::collections::HashMap::new();
    wait_for("the client and log threads", std::time::Duration::from_secs(5), || {
        seen = threads(d.child.id()).into_iter().collect();
        seen.contains_key("aetherd-client") && seen.keys().any(|k| k.starts_with("aetherd-log"))
    });
    // (comm keeps 15 bytes of a thread's name)
    for (name, cpus) in &seen {
        let pinned = ["aetherd-accept", "aetherd-client", "aetherd-houseke"].contains(&name.as_str())
            || name.starts_with("aetherd-log");
        let want = if pinned { cpu.to_string() } else { everything.clone() };
        assert_eq!(cpus, &want, "thread {name}: {seen:?}");
    }
    assert!(
        seen.contains_key("aetherd-houseke") && seen.contains_key("aetherd-accept"),
        "{seen:?}"
    );

    // A CPU this machine does not have: the daemon does not start, and says which key.
    std::fs::write(&config, "[daemon]\ncpu_affinity = { dispatch = [100000] }\n").unwrap();
    let out = Command::new(AETHERD)
        .args([
            OsStr::new("--socket"),
            dir.0.join("other.sock").as_os_str(),
            OsStr::new("--config"),
            config.as_os_str(),
        ])
        .env("AETHER_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cpu_affinity.dispatch") && stderr.contains("100000"),
        "{stderr}"
    );
}
