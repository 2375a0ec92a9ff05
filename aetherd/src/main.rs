//! aetherd: the Aether broker daemon. Argument parsing, signals and process
//! set-up only; everything else is the
//! `aetherd` library.

mod cli;

use aetherd::config::{Loaded, Settings};
use aetherd::{access, logger, Broker};
use clap::Parser;
use cli::Args;

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
    let flags = Settings::from_flags(
        args.socket.clone(),
        args.socket_mode.as_deref(),
        args.socket_group.as_deref(),
        args.log_level.as_deref(),
        args.drain_timeout,
    );
    let loaded = flags.and_then(|f| Loaded::load(f, args.config.as_deref(), |k| std::env::var(k).ok()));
    let mut loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("aetherd: {e}");
            std::process::exit(2);
        }
    };
    logger::init(loaded.settings.log_level);
    let socket = loaded.settings.socket.clone();
    let set = block_signals();
    if let Err(e) = access::prepare_socket_dir(&socket, loaded.settings.socket_mode) {
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
    let group = loaded.settings.socket_group.as_ref().map(|g| g.gid);
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
    if let Err(e) = broker.spawn_threads() {
        log::error!("cannot start the daemon's threads: {e}");
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
                log::info!("statistics: {}", stats.summary());
                match std::fs::write(&stats_file, stats.to_json()) {
                    Ok(()) => log::info!("statistics written to {}", stats_file.display()),
                    Err(e) => log::warn!("cannot write {}: {e}", stats_file.display()),
                }
            }
            libc::SIGHUP => match loaded.reload() {
                Ok((new, ignored)) => {
                    for note in ignored {
                        log::warn!("SIGHUP: {note}");
                    }
                    logger::set_level(new.settings.log_level);
                    broker.set_config(new.config.clone());
                    if new.file_read {
                        log::info!("SIGHUP: configuration reloaded from {}", new.file.path.display());
                    } else {
                        log::info!("SIGHUP: no configuration file; built-in configuration in force");
                    }
                    loaded = new;
                }
                Err(e) => log::error!("SIGHUP: {e}; keeping the current configuration"),
            },
            _ => {}
        }
    }
    let drain_timeout = loaded.settings.drain_timeout;
    log::info!("draining (up to {} s)", drain_timeout.as_secs_f64());
    if !broker.drain(drain_timeout) {
        log::warn!("drain timeout: some subscribers had not read everything");
    }
    let _ = std::fs::remove_file(&stats_file);
    drop(broker);
    log::info!("shut down");
}
