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
/// leaves the session and the caller's stdio (stderr too, unless it is the
/// log file: `keep_stderr`).
fn detach(keep_stderr: bool) {
    // SAFETY: no other thread exists yet, so the child may run ordinary code.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("aetherd: fork: {e}");
            std::process::exit(1);
        }
        Ok(ForkResult::Child) => {
            let _ = setsid();
            if let Ok(null) = nix::fcntl::open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
                let _ = (dup2_stdin(&null), dup2_stdout(&null));
                if !keep_stderr {
                    let _ = dup2_stderr(&null);
                }
            }
        }
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Writes `bytes` to `path` (mode 0644 when created), never through a symlink.
fn write_nofollow(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?
        .write_all(bytes)
}

/// The listening socket systemd passed (socket activation, sd_listen_fds(3):
/// `$LISTEN_PID` is this process and `$LISTEN_FDS` counts descriptors from
/// 3), if any. The variables are removed, as sd_listen_fds does.
fn socket_from_systemd() -> Option<Result<std::os::fd::OwnedFd, String>> {
    let for_us = std::env::var("LISTEN_PID").ok()?.parse::<u32>().ok()? == std::process::id();
    let count = std::env::var("LISTEN_FDS").ok();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // (No other thread exists yet.)
        std::env::remove_var(v);
    }
    if !for_us {
        return None;
    }
    match count.and_then(|c| c.parse::<u32>().ok()) {
        // (F_GETFD: only an open descriptor may be taken over.)
        // SAFETY: F_GETFD only reads descriptor 3's flags (EBADF if closed).
        Some(1) if unsafe { libc::fcntl(3, libc::F_GETFD) } < 0 => {
            Some(Err("LISTEN_FDS=1, but descriptor 3 is not open".into()))
        }
        Some(1) => {
            use std::os::fd::FromRawFd;
            // SAFETY: by the socket-activation protocol descriptor 3 is
            // open and handed to this process, which takes it over here.
            Some(Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(3) }))
        }
        n => Some(Err(format!(
            "systemd passed {} sockets (LISTEN_FDS); aetherd takes exactly one (ListenSequentialPacket=)",
            n.map_or("an unreadable number of".into(), |n| n.to_string())
        ))),
    }
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

/// The bridge's configuration: the file's `[bridge]` with the flags added,
/// and this broker's name; `None` when nothing asks for a bridge.
fn bridge_config(
    args: &Args,
    file: Option<aetherd::config::BridgeConfig>,
) -> Result<Option<(aetherd::config::BridgeConfig, String)>, String> {
    use aetherd::config::BridgeTopic;
    let flags = !args.bridge_listen.is_empty() || !args.bridge_connect.is_empty() || !args.bridge_topics.is_empty();
    if file.is_none() && !flags && args.bridge_name.is_none() {
        return Ok(None);
    }
    let mut cfg = file.unwrap_or_default();
    cfg.listen.extend(args.bridge_listen.iter().cloned());
    cfg.connect.extend(args.bridge_connect.iter().cloned());
    for t in &args.bridge_topics {
        cfg.topics
            .push(BridgeTopic::parse(t).map_err(|e| format!("--bridge-topics: {e}"))?);
    }
    let name = match args.bridge_name.clone().or_else(|| cfg.name.clone()) {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "aetherd".into()),
    };
    if !aetherd::bridge::envelope::valid_name(&name) {
        return Err(format!(
            "bridge name {name:?}: 1 to 64 letters, digits, '.', '_' and '-' (set it with --bridge-name or bridge.name)"
        ));
    }
    if cfg.listen.is_empty() && cfg.connect.is_empty() && !cfg.multicast {
        return Err(
            "bridge: neither listen nor connect endpoints (--bridge-listen, --bridge-connect), nor multicast".into(),
        );
    }
    Ok(Some((cfg, name)))
}

#[cfg(feature = "bridge")]
fn start_bridge(
    broker: &aetherd::Broker,
    cfg: &aetherd::config::BridgeConfig,
    name: String,
) -> aetherd::bridge::Bridge {
    broker.start_bridge(cfg, name).unwrap_or_else(|e| {
        log::error!("bridge: {e}");
        std::process::exit(1);
    })
}

#[cfg(not(feature = "bridge"))]
fn start_bridge(_: &aetherd::Broker, _: &aetherd::config::BridgeConfig, _: String) {
    log::error!("bridge: this aetherd was built without the bridge (cargo feature `bridge`)");
    std::process::exit(2);
}

fn main() {
    let args = Args::parse();
    let flags = Settings::from_flags(
        args.socket.clone(),
        args.socket_mode.as_deref(),
        args.socket_group.as_deref(),
        args.log_level.as_deref(),
        args.drain_timeout,
    )
    .map(|f| Settings {
        state_dir: args.state_dir.clone().filter(|d| !d.as_os_str().is_empty()),
        metrics_listen: args.metrics_listen.clone().filter(|a| !a.is_empty()),
        ..f
    });
    let loaded = flags.and_then(|f| Loaded::load(f, args.config.as_deref(), |k| std::env::var(k).ok()));
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("aetherd: {e}");
            std::process::exit(2);
        }
    };
    let format = match args.log_format {
        cli::LogFormat::Text => logger::Format::Text,
        cli::LogFormat::Json => logger::Format::Json,
    };
    logger::init(loaded.settings.log_level, format);
    let socket = loaded.settings.socket.clone();
    let set = block_signals();
    raise_descriptor_limit();
    let group = loaded.settings.socket_group.as_ref().map(|g| g.gid);
    if let Err(e) = access::prepare_socket_dir(&socket, loaded.settings.socket_mode, group) {
        eprintln!("aetherd: {e}");
        std::process::exit(1);
    }
    // (After the socket's directory exists: auto-start logs there.)
    if let Some(path) = &args.log_file {
        // stderr becomes the log file: log lines and any panic message land there.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path);
        if let Err(e) = file.and_then(|f| Ok(dup2_stderr(&f)?)) {
            eprintln!("aetherd: log file {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    let activated = socket_from_systemd();
    let bound = match activated {
        None => Broker::bind_with(&socket, loaded.config.clone()),
        Some(Err(e)) => Err(aether::Error::invalid(e)),
        Some(Ok(fd)) => aether::sys::uds::SeqPacket::adopt_listener(fd, &socket)
            .map_err(|e| aether::Error::invalid(format!("the socket systemd passed: {e}")))
            .and_then(|l| Broker::bind_activated(&socket, loaded.config.clone(), l)),
    };
    let broker = match bound {
        Ok(b) => b,
        Err(e) if e.status == aether::Status::Exists && args.detach => std::process::exit(0),
        Err(e) => {
            eprintln!("aetherd: {e}");
            std::process::exit(1);
        }
    };
    let shared = match broker.socket_activated() {
        // systemd set the socket's mode and group (SocketMode=, SocketGroup=): the admin pipe follows them.
        true => std::fs::metadata(&socket)
            .map_err(|e| aether::Error::io("stat the socket", e))
            .and_then(|m| {
                use std::os::unix::fs::MetadataExt;
                access::share_admin(&socket, Some(m.mode() & 0o777), Some(m.gid()))
            }),
        false => access::set_socket_permissions(&socket, loaded.settings.socket_mode, group),
    };
    if let Err(e) = shared {
        eprintln!("aetherd: {e}");
        drop(broker);
        std::process::exit(1);
    }
    if args.detach {
        detach(args.log_file.is_some());
    }
    log::info!(
        "listening on {}{} (pid {}, instance {:016x})",
        socket.display(),
        if broker.socket_activated() {
            ", a socket from systemd"
        } else {
            ""
        },
        std::process::id(),
        broker.instance_id()
    );
    if let Some(f) = &loaded.file {
        log::info!("configuration from {}", f.display());
    }
    let state_dir = loaded
        .settings
        .state_dir
        .clone()
        .or_else(|| aetherd::durable::default_state_dir(|k| std::env::var(k).ok()));
    broker.set_affinity(loaded.settings.cpu_affinity.clone());
    let metrics_listen = loaded.settings.metrics_listen.clone();
    let bridge_file = loaded.bridge.clone();
    broker.set_loaded(loaded);
    // After detaching (the log writers are threads, which a fork leaves behind).
    match state_dir {
        Some(dir) => broker.set_state_dir(dir),
        None => log::warn!("no state directory (no HOME?): durable topics are refused"),
    }
    if let Err(e) = broker.spawn_threads() {
        log::error!("cannot start the daemon's threads: {e}");
        std::process::exit(1);
    }
    let bridge = match bridge_config(&args, bridge_file) {
        Ok(cfg) => cfg.map(|(cfg, name)| start_bridge(&broker, &cfg, name)),
        Err(e) => {
            log::error!("{e}");
            std::process::exit(2);
        }
    };
    if let Some(addr) = metrics_listen {
        match aetherd::metrics::serve(&addr, broker.stats_source()) {
            Ok(at) => log::info!("metrics on http://{at}/metrics (no authentication: anyone reaching it reads them)"),
            Err(e) => {
                log::error!("cannot serve metrics on {addr}: {e}");
                std::process::exit(1);
            }
        }
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
    // After the drain: the bridge's subscribers have read what was left.
    drop(bridge);
    let _ = std::fs::remove_file(&stats_file);
    drop(broker);
    log::info!("shut down");
}
