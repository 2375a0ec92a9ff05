//! aetherd: the Aether broker daemon. Argument parsing, signals and process
//! set-up only; everything else is `aether::broker`.

use aether::broker::log::{self, Level};
use aether::broker::Broker;
use aether::log_at;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "aetherd",
    version,
    about = "Aether broker daemon: owns topics and hands their shared-memory segments to clients"
)]
struct Args {
    /// Control socket path [default: $AETHER_SOCKET, else $XDG_RUNTIME_DIR/aether/aetherd.sock, else /run/aether/aetherd.sock]
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Go to the background once listening (used by client auto-start). If
    /// another daemon already serves the socket, exit 0 quietly.
    #[arg(long)]
    detach: bool,
    /// On SIGTERM/SIGINT, how long subscribers get to read what is left (seconds)
    #[arg(long, default_value_t = 5.0)]
    drain_timeout: f64,
    /// error, warn, info or debug [default: $AETHER_LOG, else $RUST_LOG, else info]
    #[arg(long)]
    log_level: Option<String>,
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data filled by sigemptyset/sigaddset; the mask
    // is changed before any thread exists, so every thread inherits it and the
    // signals are only ever taken by sigwait in main.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Forks; the parent exits 0 at once (the socket already listens), the child
/// leaves the session and the caller's stdio.
fn detach() {
    // SAFETY: no other thread exists yet, so fork is safe; the child only
    // makes async-signal-safe calls before returning to ordinary code.
    unsafe {
        match libc::fork() {
            -1 => {
                eprintln!("aetherd: fork: {}", std::io::Error::last_os_error());
                std::process::exit(1);
            }
            0 => {
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    libc::dup2(null, 2);
                    if null > 2 {
                        libc::close(null);
                    }
                }
            }
            _ => libc::_exit(0),
        }
    }
}

fn main() {
    let args = Args::parse();
    let level = args
        .log_level
        .clone()
        .or_else(|| std::env::var("AETHER_LOG").ok())
        .or_else(|| std::env::var("RUST_LOG").ok());
    if let Some(l) = level {
        match Level::parse(&l) {
            Some(l) => log::set_level(l),
            None => {
                eprintln!("aetherd: unknown log level {l:?} (error, warn, info, debug)");
                std::process::exit(2);
            }
        }
    }
    if !(args.drain_timeout >= 0.0 && args.drain_timeout.is_finite()) {
        eprintln!("aetherd: --drain-timeout must be a number of seconds >= 0");
        std::process::exit(2);
    }
    let socket = args.socket.unwrap_or_else(aether::paths::default_socket);
    let set = block_signals();
    let broker = match Broker::bind(&socket) {
        Ok(b) => b,
        Err(e) if e.status == aether::Status::Exists && args.detach => std::process::exit(0),
        Err(e) => {
            eprintln!("aetherd: {e}");
            std::process::exit(1);
        }
    };
    if args.detach {
        detach();
    }
    log_at!(
        Info,
        "listening on {} (pid {}, instance {:016x})",
        socket.display(),
        std::process::id(),
        broker.instance_id()
    );
    if let Err(e) = broker.spawn_threads() {
        log_at!(Error, "cannot start the daemon's threads: {e}");
        std::process::exit(1);
    }
    let stats_file = socket.with_file_name("aetherd.stats.json");
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is the initialised mask blocked above; `sig` is writable.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        match sig {
            libc::SIGTERM | libc::SIGINT => break,
            libc::SIGUSR1 => {
                let stats = broker.stats();
                log_at!(Info, "statistics: {}", stats.summary());
                match std::fs::write(&stats_file, stats.to_json()) {
                    Ok(()) => log_at!(Info, "statistics written to {}", stats_file.display()),
                    Err(e) => log_at!(Warn, "cannot write {}: {e}", stats_file.display()),
                }
            }
            libc::SIGHUP => log_at!(Info, "SIGHUP: no configuration file to reload"),
            _ => {}
        }
    }
    log_at!(Info, "draining (up to {} s)", args.drain_timeout);
    if !broker.drain(std::time::Duration::from_secs_f64(args.drain_timeout)) {
        log_at!(Warn, "drain timeout: some subscribers had not read everything");
    }
    let _ = std::fs::remove_file(&stats_file);
    drop(broker);
    log_at!(Info, "shut down");
}
