//! aetherd: the Aether broker daemon. Argument parsing, signals and process
//! set-up only; everything else is the
//! `aetherd` library.

mod cli;

use aetherd::config::{Loaded, Settings};
use aetherd::{access, logger, Broker};
use clap::Parser;
use cli::Args;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::Mode;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid, ForkResult};

fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1] {
        set.add(s);
    }
    // Blocked before any thread exists, so every thread inherits the mask and
    // the signals are only ever taken by sigwait in main.
    if let Err(e) = set.thread_block() {
        eprintln!("aetherd: block signals: {e}");
        std::process::exit(1);
    }
    set
}

/// Forks; the parent exits 0 at once (the socket already listens), the child
/// leaves the session and the caller's stdio.
fn detach() {
    // SAFETY: no other thread exists yet, so the child may run ordinary code.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("aetherd: fork: {e}");
            std::process::exit(1);
        }
        Ok(ForkResult::Child) => {
            let _ = setsid();
            if let Ok(null) = nix::fcntl::open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
                let _ = (dup2_stdin(&null), dup2_stdout(&null), dup2_stderr(&null));
            }
        }
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
    }
}

/// Writes `bytes` to `path` (mode 0644 when created), never through a symlink.
fn write_nofollow(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?
        .write_all(bytes)
}

/// Raises the soft limit on open descriptors to the hard one: each
/// connection takes two (socket, pidfd), and running out only shows as
/// refused connections.
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn main() {
    let args = Args::parse();
    let flags = Settings::from_flags(
        args.socket.clone(),
        args.socket_mode.as_deref(),
        args.socket_group.as_deref(),
        args.log_level.as_deref(),
        args.drain_timeout,
    );
    let loaded = flags.and_then(|f| Loaded::load(f, args.config.as_deref(), |k| std::env::var(k).ok()));
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("aetherd: {e}");
            std::process::exit(2);
        }
    };
    logger::init(loaded.settings.log_level);
    let socket = loaded.settings.socket.clone();
    let set = block_signals();
    raise_descriptor_limit();
    let group = loaded.settings.socket_group.as_ref().map(|g| g.gid);
    if let Err(e) = access::prepare_socket_dir(&socket, loaded.settings.socket_mode, group) {
        eprintln!("aetherd: {e}");
        std::process::exit(1);
    }
    let broker = match Broker::bind_with(&socket, loaded.config.clone()) {
        Ok(b) => b,
        Err(e) if e.status == aether::Status::Exists && args.detach => std::process::exit(0),
        Err(e) => {
            eprintln!("aetherd: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = access::set_socket_permissions(&socket, loaded.settings.socket_mode, group) {
        eprintln!("aetherd: {e}");
        drop(broker);
        std::process::exit(1);
    }
    if args.detach {
        detach();
    }
    log::info!(
        "listening on {} (pid {}, instance {:016x})",
        socket.display(),
        std::process::id(),
        broker.instance_id()
    );
    if loaded.file_read {
        log::info!("configuration from {}", loaded.file.path.display());
    }
    broker.set_loaded(loaded);
    if let Err(e) = broker.spawn_threads() {
        log::error!("cannot start the daemon's threads: {e}");
        std::process::exit(1);
    }
    let stats_file = socket.with_file_name("aetherd.stats.json");
    loop {
        let Ok(sig) = set.wait() else {
            continue;
        };
        match sig {
            Signal::SIGTERM | Signal::SIGINT => break,
            Signal::SIGUSR1 => {
                let stats = broker.stats();
                log::info!("statistics: {}", stats.summary());
                match write_nofollow(&stats_file, stats.to_json().as_bytes()) {
                    Ok(()) => log::info!("statistics written to {}", stats_file.display()),
                    Err(e) => log::warn!("cannot write {}: {e}", stats_file.display()),
                }
            }
            // The outcome is logged by the reload itself.
            Signal::SIGHUP => drop(broker.reload()),
            _ => {}
        }
    }
    let drain_timeout = broker.drain_timeout();
    log::info!("draining (up to {} s)", drain_timeout.as_secs_f64());
    if !broker.drain(drain_timeout) {
        log::warn!("drain timeout: some subscribers had not read everything");
    }
    let _ = std::fs::remove_file(&stats_file);
    drop(broker);
    log::info!("shut down");
}
