//! The daemon's core: the control socket, topics and their segments, the
//! clients and the slots they hold. `aetherd` is a thin binary over this.
//!
//! Threads (named, visible in `ps -L`):
//! - `aetherd-accept`: accepts connections, registers each client (its
//!   SO_PEERCRED identity and a pidfd) and starts its thread;
//! - `aetherd-client`: one per connection, answers its requests in order
//!   (`requests.rs`), and on hang-up frees every slot the client held;
//! - `aetherd-admin`: serves the admin named pipe (`<socket>.admin`, see
//!   `crate::admin`) used by `aether-cli`;
//! - `aetherd-housekeep`: every 100 ms, notices clients whose process died
//!   (pidfd) even if their socket lives on in a child, samples rates, and
//!   removes reply FIFOs that dead admin clients left.
//! - the binary's main thread takes signals (sigwait) and calls
//!   [`Broker::drain`], [`Broker::stats`] or reload.
//!
//! All of them share `State` under one mutex; no lock is held across a
//! blocking socket call.

use crate::access::{self, Identity};
use crate::admin;
use crate::config::{Config, ConfigError, Loaded};
use crate::quota::{self, Quota};
use crate::state::{Client, SlotKind, State, Topic};
use crate::{housekeeper, mqueue, requests, stats};
use aether::segment::{TOPIC_CLOSED, TOPIC_DRAINING};
use aether::sys::{self, uds::SeqPacket};
use aether::{Error, Result, Status};
use nix::fcntl::{Flock, FlockArg};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running broker bound to its socket. Dropping it removes the socket
/// (unless systemd made it), the lock files and every segment it created.
pub struct Broker {
    state: Arc<Mutex<State>>,
    listener: Arc<SeqPacket>,
    socket: PathBuf,
    /// Whether this broker made the socket file (not socket activation).
    owns_socket: bool,
    admin_pipe: PathBuf,
    /// The pipe's read end, until the admin thread takes it.
    admin_reader: Mutex<Option<OwnedFd>>,
    lock_path: PathBuf,
    _lock: Flock<File>,
}

/// The lock file that makes one daemon per socket path.
pub fn lock_file(socket: &Path) -> PathBuf {
    let mut s = socket.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Holds the lock file at `path` (made 0600), or fails with `Exists` and
/// `held` when another process holds it.
pub(crate) fn take_lock(path: &Path, held: &str) -> Result<Flock<File>> {
    loop {
        // Private (anyone who can open it could flock it and keep the daemon
        // from starting), and never through a symlink.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(&format!("open lock file {}", path.display()), e))?;
        // A lock file left by an older daemon may be readable by others.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&format!("chmod 0600 {}", path.display()), e))?;
        let f = Flock::lock(f, FlockArg::LockExclusiveNonblock)
            .map_err(|_| Error::new(Status::Exists, format!("{held} (lock {} is held)", path.display())))?;
        // The previous holder may have unlinked the file between our open and
        // flock: the lock only counts if the path still names our file.
        let same = match (f.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            return Ok(f);
        }
    }
}

/// A descriptor that becomes readable when process `pid` exits (`nix` has
/// no pidfd_open, so it is made here).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    use std::os::fd::FromRawFd;
    // SAFETY: a non-negative return is a fresh descriptor we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Broker {
    /// Takes the daemon lock for `socket`, removes a dead daemon's socket,
    /// and listens.
    /// The socket's directory is made (0700) if absent, and must be the
    /// daemon's own (see [`access::check_socket_dir`]).
    pub fn bind(socket: &Path) -> Result<Broker> {
        access::prepare_socket_dir(socket, None, None)?;
        Broker::bind_with(socket, Config::default())
    }

    /// [`bind`](Self::bind) with a configuration, in a socket directory the
    /// caller has prepared and checked (`aetherd` does, with its socket mode
    /// and group).
    pub fn bind_with(socket: &Path, config: Config) -> Result<Broker> {
        Broker::bind_inner(socket, config, None)
    }

    /// [`bind_with`](Self::bind_with) on a socket systemd made and listens on
    /// (`aetherd.socket`): `listener` is adopted, and the socket file is left
    /// in place when the broker stops, so that systemd keeps listening.
    pub fn bind_activated(socket: &Path, config: Config, listener: SeqPacket) -> Result<Broker> {
        Broker::bind_inner(socket, config, Some(listener))
    }

    fn bind_inner(socket: &Path, config: Config, activated: Option<SeqPacket>) -> Result<Broker> {
        let lock_path = lock_file(socket);
        let lock = take_lock(&lock_path, "another aetherd is already running on this socket")?;
        // Segments are sealed memfds and message queues are unlinked at once:
        // a dead daemon leaves nothing in /dev/shm or /dev/mqueue to clean up.
        let instance_id = sys::random_u64();
        let owns_socket = activated.is_none();
        // We hold the lock, so a socket file here is a dead daemon's.
        if owns_socket {
            let _ = std::fs::remove_file(socket);
        }
        // The admin pipe exists (and has its reader) before the socket listens:
        // whoever can connect can also administer at once.
        let admin_pipe = admin::pipe_path(socket);
        let admin_reader = admin::server::create_pipe(&admin_pipe)?;
        let replies = admin::replies_dir(socket);
        if let Err(e) = admin::server::create_replies_dir(&replies) {
            let _ = std::fs::remove_file(&admin_pipe);
            return Err(e);
        }
        let listener = match activated {
            Some(l) => l,
            None => SeqPacket::listen(socket).map_err(|e| {
                let _ = std::fs::remove_file(&admin_pipe);
                let _ = std::fs::remove_dir_all(&replies);
                Error::io(&format!("listen on {}", socket.display()), e)
            })?,
        };
        Ok(Broker {
            state: Arc::new(Mutex::new(State {
                instance_id,
                config,
                config_epoch: Default::default(),
                topics: HashMap::new(),
                clients: HashMap::new(),
                next_client: 1,
                dead_clients: 0,
                draining: false,
                started: Instant::now(),
                mq: Default::default(),
                keeper: Default::default(),
                refusals: Default::default(),
                loaded: None,
                state_dir: None,
                state_lock: None,
                affinity: Default::default(),
                bridge: None,
            })),
            listener: Arc::new(listener),
            socket: socket.to_path_buf(),
            owns_socket,
            admin_pipe,
            admin_reader: Mutex::new(Some(admin_reader)),
            lock_path,
            _lock: lock,
        })
    }

    /// Where durable topics keep their logs (`--state-dir`); until this is
    /// set, the broker refuses to make durable topics. Makes every durable
    /// topic found there again, numbered on from its log (call before
    /// [`spawn_threads`](Self::spawn_threads)).
    pub fn set_state_dir(&self, dir: PathBuf) {
        let mut s = self.state.lock().expect("state lock");
        s.state_dir = Some(dir);
        crate::durable::recover_all(&mut s);
    }

    /// Lets each log writer write what it has read and sync, then stop.
    fn stop_log_writers(&self) {
        let writers: Vec<_> = match self.state.lock() {
            Ok(s) => s.topics.values().filter_map(|t| t.durable.clone()).collect(),
            Err(_) => return,
        };
        for d in writers {
            d.stop(false);
        }
    }

    /// Whether the socket came from systemd ([`bind_activated`](Self::bind_activated)).
    pub fn socket_activated(&self) -> bool {
        !self.owns_socket
    }

    pub fn instance_id(&self) -> u64 {
        self.state.lock().expect("state lock").instance_id
    }

    /// Replaces the configuration (SIGHUP); clients stay connected.
    pub fn set_config(&self, config: Config) {
        self.state.lock().expect("state lock").set_config(config);
    }

    /// Keeps where the configuration came from (flags, environment, file),
    /// for [`reload`](Self::reload), and puts it in force.
    pub fn set_loaded(&self, loaded: Loaded) {
        let mut s = self.state.lock().expect("state lock");
        s.set_config(loaded.config.clone());
        s.loaded = Some(loaded);
    }

    /// Re-reads the configuration file and puts it in force (SIGHUP, and
    /// the admin pipe's `reload`): see [`reload`].
    pub fn reload(&self) -> std::result::Result<Vec<String>, ConfigError> {
        reload(&self.state)
    }

    /// How long a drain lets subscribers catch up, as configured now.
    pub fn drain_timeout(&self) -> Duration {
        let s = self.state.lock().expect("state lock");
        s.loaded
            .as_ref()
            .map_or(crate::config::DEFAULT_DRAIN_TIMEOUT, |l| l.settings.drain_timeout)
    }

    /// Pins each kind of thread to its CPUs from now on (`[daemon]
    /// cpu_affinity`); call before [`spawn_threads`](Self::spawn_threads)
    /// and [`set_state_dir`](Self::set_state_dir).
    pub fn set_affinity(&self, affinity: crate::config::Affinity) {
        self.state.lock().expect("state lock").affinity = affinity;
    }

    /// Starts the acceptor, admin and housekeeper threads. They run until the process exits.
    pub fn spawn_threads(&self) -> std::io::Result<()> {
        let affinity = self.state.lock().expect("state lock").affinity.clone();
        let listener = Arc::clone(&self.listener);
        let state = Arc::clone(&self.state);
        let cpus = affinity.accept.clone();
        std::thread::Builder::new()
            .name("aetherd-accept".into())
            .spawn(move || {
                crate::config::pin(&cpus, "accept");
                accept_loop(&state, &listener)
            })?;
        let (state, pipe, socket) = (Arc::clone(&self.state), self.admin_pipe.clone(), self.socket.clone());
        if let Some(fd) = self.admin_reader.lock().expect("admin reader lock").take() {
            let cpus = affinity.admin.clone();
            std::thread::Builder::new()
                .name("aetherd-admin".into())
                .spawn(move || {
                    crate::config::pin(&cpus, "admin");
                    admin::server::run(&state, fd, &pipe, &socket)
                })?;
        }
        let (state, socket) = (Arc::clone(&self.state), self.socket.clone());
        let cpus = affinity.housekeep;
        std::thread::Builder::new()
            .name("aetherd-housekeep".into())
            .spawn(move || {
                crate::config::pin(&cpus, "housekeep");
                housekeeper::run(&state, &socket)
            })?;
        Ok(())
    }

    /// Starts the bridge to other brokers (after `spawn_threads`: its
    /// threads are clients of this broker's socket). `name`: this broker's
    /// name in the origin tag.
    #[cfg(feature = "bridge")]
    pub fn start_bridge(
        &self,
        cfg: &crate::config::BridgeConfig,
        name: String,
    ) -> std::result::Result<crate::bridge::Bridge, String> {
        let counters = Arc::new(crate::bridge::Counters {
            name,
            relay: cfg.relay,
            ..Default::default()
        });
        let bridge =
            crate::bridge::Bridge::start(Arc::clone(&self.state), self.socket.clone(), cfg, Arc::clone(&counters))?;
        self.state.lock().expect("state lock").bridge = Some(counters);
        Ok(bridge)
    }

    /// What takes a snapshot of every statistic from another thread (the metrics listener).
    pub fn stats_source(&self) -> impl Fn() -> stats::Stats + Send + 'static {
        let (state, socket) = (Arc::clone(&self.state), self.socket.clone());
        move || stats::collect(&state.lock().expect("state lock"), &socket)
    }

    /// A snapshot of every statistic (SIGUSR1, the admin interface).
    pub fn stats(&self) -> stats::Stats {
        stats::collect(&self.state.lock().expect("state lock"), &self.socket)
    }

    /// Graceful shutdown: stop accepting, refuse new publishes, let
    /// subscribers read what is left (at most `timeout`), then close every
    /// topic (waiting calls return `Shutdown`) and every connection.
    /// Returns whether all subscribers caught up in time.
    pub fn drain(&self, timeout: Duration) -> bool {
        {
            let mut s = self.state.lock().expect("state lock");
            s.draining = true;
            for t in s.topics.values() {
                t.set_state(TOPIC_DRAINING);
            }
            mqueue::post_all(&s, &aether::notice::Notice::Draining);
        }
        // Wake the acceptor out of accept(); it sees `draining` and stops. A
        // socket systemd listens on is shared with it and must stay usable
        // (later connections start the next daemon): wake it with a
        // connection of our own instead of shutting it down.
        if self.owns_socket {
            self.listener.shutdown();
        } else {
            let _ = SeqPacket::connect(&self.socket);
        }
        let deadline = Instant::now() + timeout;
        let caught_up = loop {
            let done = self
                .state
                .lock()
                .expect("state lock")
                .topics
                .values()
                .all(Topic::caught_up);
            if done || Instant::now() >= deadline {
                break done;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for t in self.state.lock().expect("state lock").topics.values() {
            t.set_state(TOPIC_CLOSED);
        }
        self.stop_log_writers();
        // Message-queue subscribers get what is left and an end-of-stream mark.
        mqueue::finish_all(&self.state);
        let s = self.state.lock().expect("state lock");
        for c in s.clients.values() {
            c.conn.shutdown();
        }
        caught_up
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.owns_socket {
            let _ = std::fs::remove_file(&self.socket);
        }
        let _ = std::fs::remove_file(&self.admin_pipe);
        let _ = std::fs::remove_dir_all(admin::replies_dir(&self.socket));
        if let Ok(s) = self.state.lock() {
            for t in s.topics.values() {
                t.set_state(TOPIC_CLOSED);
            }
        }
        self.stop_log_writers();
        if let Ok(mut s) = self.state.lock() {
            s.topics.clear();
        }
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Re-reads the configuration file with the same flags and environment, and
/// on success puts it in force (rules, limits, topic defaults, log level,
/// drain timeout; connected clients stay). Returns what was ignored (socket
/// settings change only at restart), or the error, the running configuration
/// kept. Each outcome is logged.
pub(crate) fn reload(state: &Mutex<State>) -> std::result::Result<Vec<String>, ConfigError> {
    let mut s = state.lock().expect("state lock");
    let Some(loaded) = s.loaded.as_ref() else {
        return Ok(vec!["an embedded broker has no configuration file to re-read".into()]);
    };
    match loaded.reload() {
        Ok((new, ignored)) => {
            for note in &ignored {
                log::warn!("reload: {note}");
            }
            crate::logger::set_level(new.settings.log_level);
            match &new.file {
                Some(f) => log::info!("reload: configuration re-read from {}", f.display()),
                None => log::info!("reload: no configuration file (none named); flags and environment re-applied"),
            }
            s.set_config(new.config.clone());
            for d in s.topics.values().filter_map(|t| t.durable.as_ref()) {
                d.configure(s.config.log);
            }
            s.loaded = Some(new);
            Ok(ignored)
        }
        Err(e) => {
            log::error!("reload: {e}; the running configuration is kept");
            Err(e)
        }
    }
}

fn accept_loop(state: &Arc<Mutex<State>>, listener: &SeqPacket) {
    let mut last_accept_error: Option<Instant> = None;
    // A descriptor in reserve: out of descriptors, the acceptor lets go of
    // it to take the waiting connection and tell the client why (`Limit`),
    // rather than leave it to time out not knowing.
    let reserve = || File::open("/dev/null").ok();
    let mut spare = reserve();
    loop {
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                if state.lock().expect("state lock").draining {
                    return;
                }
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) && spare.take().is_some() {
                    if let Ok(conn) = listener.accept() {
                        requests::refuse(
                            &Arc::new(conn),
                            Error::new(
                                Status::Limit,
                                format!("aetherd is out of file descriptors ({e}): try again once clients have left"),
                            ),
                        );
                    }
                }
                if spare.is_none() {
                    spare = reserve();
                }
                // Out of descriptors, say: the log says so once per 10 s, not 20 times a second.
                if last_accept_error.is_none_or(|t| t.elapsed() >= crate::quota::LOG_EVERY) {
                    log::warn!("accept: {e} (said once per 10 s while it lasts)");
                    last_accept_error = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let cred = match conn.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("SO_PEERCRED: {e}; connection refused");
                continue;
            }
        };
        let conn = Arc::new(conn);
        // Read /proc and open the pidfd before taking the lock every request waits on.
        let (who, pidfd) = (Identity::of(cred), pidfd_open(cred.pid));
        let (id, cpus) = {
            let mut s = state.lock().expect("state lock");
            if s.draining {
                return;
            }
            if s.clients.len() >= s.config.limits.max_clients {
                let max = s.config.limits.max_clients;
                drop(s);
                requests::refuse(
                    &conn,
                    Error::new(Status::Limit, format!("the broker has its maximum of {max} clients")),
                );
                log::warn!("refused pid {} uid {}: client limit {max}", cred.pid, cred.uid);
                continue;
            }
            if let Err(e) = quota::check(&mut s, cred.uid, 0, Quota::Connections, 1) {
                drop(s);
                requests::refuse(&conn, e);
                continue;
            }
            s.next_client += 1;
            let id = s.next_client;
            let client = Client {
                who,
                conn: Arc::clone(&conn),
                pidfd,
                connected: Instant::now(),
                notices: Default::default(),
            };
            s.clients.insert(id, client);
            (id, s.affinity.client.clone())
        };
        probe::probe!(aetherd, client_connect, id, cred.pid, cred.uid);
        log::debug!(
            "client {id} connected: pid {} uid {} gid {}",
            cred.pid,
            cred.uid,
            cred.gid
        );
        let st = Arc::clone(state);
        let spawned = std::thread::Builder::new()
            .name("aetherd-client".into())
            .spawn(move || {
                crate::config::pin(&cpus, "client");
                requests::serve(&st, id, &conn);
                release_client(&st, id);
            });
        if let Err(e) = spawned {
            log::error!("cannot start a client thread: {e}");
            release_client(state, id);
        }
    }
}

/// Frees every slot `client` held (so reliable publishers stop waiting for
/// it) and forgets the client.
fn release_client(state: &Mutex<State>, client: u64) {
    // Its dispatch threads first: they read through its subscriber slots.
    let dispatchers = mqueue::take(&mut state.lock().expect("state lock"), client, None);
    mqueue::join(dispatchers);
    let mut s = state.lock().expect("state lock");
    for t in s.topics.values_mut() {
        for kind in [SlotKind::Subscriber, SlotKind::Publisher] {
            for i in 0..t.owners(kind).len() {
                if t.owners(kind)[i] == Some(client) {
                    t.owners(kind)[i] = None;
                    t.free(kind, i as u32);
                }
            }
        }
    }
    if let Some(c) = s.clients.remove(&client) {
        log::debug!(
            "client {client} (pid {}) gone after {:?}",
            c.who.cred.pid,
            c.connected.elapsed()
        );
    }
}
