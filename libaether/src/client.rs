//! The client side: a connection to `aetherd`, and the publisher and
//! subscriber handles built on it. Control requests go over the socket; the
//! data path is the mapped segment (or, for a `delivery=mqueue` subscriber,
//! the message queue the daemon fills from it).

use crate::delivery::{Delivery, MqReceiver, Received};
use crate::error::{Error, Result, Status};
use crate::history::History;
use crate::notice::{self, Notice};
use crate::protocol::{self, Reply, Request, Start};
use crate::ring::{
    Claim, Deadline, Got, LargeLaps, Origin, Reader, Record, SubscriberSource, WaitConfig, WaitStrategy, Writer,
};
use crate::segment::{Cursor, CursorLine, Segment, TopicParams, Waiters};
use crate::sys::{mqueue as mq, uds::SeqPacket};
use nix::poll::PollFlags;
use probe::probe_lazy;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long a control request may take before the call fails with `Timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long auto-start waits for a freshly started daemon to answer.
const AUTOSTART_WAIT: Duration = Duration::from_secs(5);

struct Conn {
    sock: Mutex<SeqPacket>,
    /// `sock`'s descriptor, to poll for hang-up without taking the lock.
    raw: RawFd,
    next_id: AtomicU32,
    socket: PathBuf,
    /// The control queue's read end and message size, once asked for.
    notices: OnceLock<(OwnedFd, usize)>,
    notices_init: Mutex<()>,
    /// A notice read but not returned yet (a `Dropped` made from its count went first).
    notice_stash: Mutex<Option<Notice>>,
    /// The daemon's pid, from its `Hello` (0 until then).
    daemon_pid: AtomicU32,
    /// Whether this connection was allowed to start a daemon (reconnects do the same).
    autostart: bool,
    /// The process that opened it, as a fork generation (`sys::fork_generation`).
    owner: u64,
}

impl Conn {
    /// Whether the daemon has closed this connection (shut down or died).
    fn hung_up(&self) -> bool {
        // SAFETY: `raw` is the descriptor of `sock`, which this Conn keeps open.
        let fd = unsafe { BorrowedFd::borrow_raw(self.raw) };
        // (nix has no name for POLLRDHUP: the peer shut its end down.)
        let rdhup = PollFlags::from_bits_retain(libc::POLLRDHUP);
        crate::sys::poll_one(fd, rdhup, 0).intersects(PollFlags::POLLHUP | rdhup)
    }

    /// Sends `req` and waits for its reply, with the descriptors it carried (in order).
    fn call(&self, req: &Request) -> Result<(Reply, Vec<OwnedFd>)> {
        // A forked child shares the parent's socket: never interleave requests on it.
        owned_by_this_process(self.owner)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = protocol::encode_request(req, id);
        let sock = self
            .sock
            .lock()
            .map_err(|_| Error::new(Status::Internal, "connection lock poisoned"))?;
        sock.send(&frame, None).map_err(|e| self.gone(e))?;
        let mut buf = vec![0u8; protocol::MAX_FRAME + 1];
        // A reply to an earlier call that timed out may arrive first: drop it
        // (closing any descriptors it carried) and read on.
        let (n, fd) = loop {
            let (n, fd) = sock
                .recv_fds(&mut buf, crate::sys::uds::MAX_FDS)
                .map_err(|e| self.gone(e))?;
            match protocol::frame_id(&buf[..n]) {
                Some(rid) if rid != id && rid.wrapping_sub(id) > u32::MAX / 2 => continue,
                _ => break (n, fd),
            }
        };
        if n == 0 {
            return Err(self.gone(std::io::ErrorKind::BrokenPipe.into()));
        }
        match protocol::decode_reply(req.op(), id, &buf[..n])? {
            Ok(reply) => Ok((reply, fd)),
            Err(e) => Err(e),
        }
    }
}

/// `Ok` in the process that opened a handle (fork generation `owner`); in a
/// child forked since, a clear `Invalid`: handles belong to their process.
#[inline(always)]
fn owned_by_this_process(owner: u64) -> Result<()> {
    if crate::sys::forked_since(owner) {
        return Err(Error::invalid(
            "this handle was opened by the parent of this forked process: a child opens its own \
             (connect again, or call reopen on the handle)",
        ));
    }
    Ok(())
}

impl Conn {
    /// The error for a failed exchange with the daemon: `Timeout`; `Shutdown`
    /// if it closed the connection and is still there (draining);
    /// `Unavailable` if its process is gone (it died, or exited after a
    /// drain) or the connection broke otherwise.
    fn gone(&self, e: std::io::Error) -> Error {
        let socket = self.socket.display();
        let pid = self.daemon_pid.load(Ordering::Relaxed);
        // A killed daemon closes its sockets while it exits, before it is a
        // zombie (which its parent may leave unreaped): kill(0) still finds
        // it, but it is gone all the same, not "shutting down". /proc says
        // so: state Z or X, or PF_EXITING (0x4) in its flags.
        let zombie = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                // After the command's `)`: state, ppid, pgrp, session, tty, tpgid, flags.
                let f: Vec<&str> = s.rsplit(')').next().unwrap_or("").split_whitespace().collect();
                matches!(f.first(), Some(&"Z" | &"X"))
                    || f.get(6)
                        .and_then(|x| x.parse::<u64>().ok())
                        .is_some_and(|fl| fl & 0x4 != 0)
            })
        };
        let present = || {
            pid == 0
                || (!matches!(
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None),
                    Err(nix::errno::Errno::ESRCH)
                ) && !zombie())
        };
        // And a process in the middle of dying may look present for a moment
        // after its sockets closed (seen in faults.rs's kill loop): a
        // draining daemon is still there 100 ms later, a dead one is not.
        let alive = || {
            (0..20).all(|_| {
                let p = present();
                if p {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                p
            })
        };
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                Error::new(Status::Timeout, format!("aetherd at {socket} did not answer in time"))
            }
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset if !alive() => Error::new(
                Status::Unavailable,
                format!(
                    "aetherd at {socket} (pid {pid}) is gone (it died or exited): connect again once a daemon is back"
                ),
            ),
            std::io::ErrorKind::BrokenPipe => Error::new(
                Status::Shutdown,
                format!("aetherd at {socket} closed the connection: it is shutting down"),
            ),
            _ => Error::new(
                Status::Unavailable,
                format!("lost the connection to aetherd at {socket}: {e}"),
            ),
        }
    }
}

/// A connection to the broker. Cheap to share: publishers and subscribers
/// keep it alive as long as they need it.
#[derive(Clone)]
pub struct Client {
    conn: Arc<Conn>,
    daemon_pid: u32,
    instance_id: u64,
}

fn autostart_enabled() -> bool {
    !matches!(
        std::env::var("AETHER_NO_AUTOSTART").as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// Starts `aetherd --detach` for `socket` and waits for it to exit: it does
/// so once it listens (or once it finds another daemon already there). Only
/// a private broker: never on the system broker's path, nor in a directory
/// of another user's. The daemon logs to `aetherd.log` next to the socket.
fn start_daemon(socket: &Path, origin: &str) -> Result<()> {
    if crate::paths::is_system_socket(socket) {
        return Err(Error::new(
            Status::Unavailable,
            format!(
                "no aetherd listening at {} ({origin}), the system broker's socket: the system broker is started \
                 by its service (`systemctl start aetherd`), never auto-started; unset AETHER_SOCKET to use a \
                 private broker instead",
                socket.display()
            ),
        ));
    }
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(m) = std::fs::metadata(dir) {
        let me = nix::unistd::geteuid().as_raw();
        if m.uid() != me {
            return Err(Error::new(
                Status::Unavailable,
                format!(
                    "no aetherd listening at {} ({origin}); not starting one: its directory {} belongs to uid {}, \
                     and auto-start only starts a private broker of this user (uid {me})",
                    socket.display(),
                    dir.display(),
                    m.uid()
                ),
            ));
        }
    }
    let candidates = crate::paths::daemon_candidates();
    let exe = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::new(
            Status::Unavailable,
            format!(
                "no aetherd listening at {} ({origin}) and no aetherd program found to start one (set \
                 AETHER_DAEMON or put aetherd on PATH)",
                socket.display()
            ),
        )
    })?;
    let log = dir.join("aetherd.log");
    let out = std::process::Command::new(exe)
        .arg("--socket")
        .arg(socket)
        .arg("--detach")
        .arg("--log-file")
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| Error::new(Status::Unavailable, format!("cannot start {}: {e}", exe.display())))?;
    if !out.status.success() {
        return Err(Error::new(
            Status::Unavailable,
            format!(
                "auto-start: {} --socket {} failed ({}): {}",
                exe.display(),
                socket.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

impl Client {
    /// Connects to the daemon at `socket`. `None`: `$AETHER_SOCKET`, else
    /// this user's private broker's (`$XDG_RUNTIME_DIR/aether/aetherd.sock`,
    /// else `/tmp/aether-<uid>/aetherd.sock`), which is started if none
    /// answers, unless `AETHER_NO_AUTOSTART=1`. The system broker
    /// (`/run/aether/aetherd.sock`) is used only when named, and never started.
    ///
    /// Errors: `Unavailable` (nobody answers and none could be started; the
    /// message names the socket and why it was chosen), `Permission` (the
    /// socket's mode or the broker's access rules refuse this user),
    /// `Protocol` (not an aetherd, or an incompatible one).
    pub fn connect(socket: Option<&Path>) -> Result<Client> {
        Client::connect_with(socket, autostart_enabled())
    }

    /// Like [`connect`](Self::connect), with auto-start chosen by the caller
    /// (`AETHER_NO_AUTOSTART` is not consulted).
    pub fn connect_with(socket: Option<&Path>, autostart: bool) -> Result<Client> {
        let (path, origin) = match socket {
            Some(p) => (p.to_path_buf(), "as given"),
            None => crate::paths::socket_choice(),
        };
        let sock = match SeqPacket::connect(&path) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                if !autostart {
                    return Err(Error::new(
                        Status::Unavailable,
                        format!(
                            "no aetherd listening at {} ({origin}; auto-start is off: AETHER_NO_AUTOSTART)",
                            path.display()
                        ),
                    ));
                }
                start_daemon(&path, origin)?;
                let deadline = std::time::Instant::now() + AUTOSTART_WAIT;
                loop {
                    match SeqPacket::connect(&path) {
                        Ok(s) => break s,
                        Err(e) if std::time::Instant::now() >= deadline => {
                            return Err(Error::new(
                                Status::Unavailable,
                                format!("started aetherd but cannot connect to {}: {e}", path.display()),
                            ))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(Error::new(
                    Status::Permission,
                    format!(
                        "permission denied on the aetherd socket {} ({origin}): {e} ({})",
                        path.display(),
                        match crate::paths::is_system_socket(&path) {
                            true =>
                                "the system broker lets in members of group aether: `adduser $USER aether`, \
                                     then log in again",
                            false => "its daemon's socket_mode and socket_group decide who may connect",
                        }
                    ),
                ))
            }
            Err(e) => {
                return Err(Error::new(
                    Status::Unavailable,
                    format!("cannot connect to aetherd at {} ({origin}): {e}", path.display()),
                ))
            }
        };
        // Whoever listens there must be a daemon we trust, before a byte is sent.
        let peer = sock
            .peer_cred()
            .map_err(|e| Error::io("SO_PEERCRED on the aetherd socket", e))?;
        if !crate::paths::trusted_daemon(&path, peer.uid) {
            return Err(Error::new(
                Status::Permission,
                format!(
                    "refusing the process listening at {} (pid {}, uid {}): an aetherd must run as this user, \
                     as root, or as the owner of a socket directory only root or this user could have made",
                    path.display(),
                    peer.pid,
                    peer.uid
                ),
            ));
        }
        sock.set_timeout(Some(REQUEST_TIMEOUT))
            .map_err(|e| Error::io("set socket timeout", e))?;
        let conn = Arc::new(Conn {
            raw: sock.as_raw_fd(),
            sock: Mutex::new(sock),
            next_id: AtomicU32::new(1),
            socket: path,
            notices: OnceLock::new(),
            notices_init: Mutex::new(()),
            notice_stash: Mutex::new(None),
            daemon_pid: AtomicU32::new(0),
            autostart,
            owner: crate::sys::fork_generation(),
        });
        let (reply, _) = conn.call(&Request::Hello {
            client_version: crate::VERSION.into(),
        })?;
        let Reply::Hello { pid, instance_id, .. } = reply else {
            return Err(Error::protocol("unexpected reply to hello"));
        };
        conn.daemon_pid.store(pid, Ordering::Relaxed);
        // USDT: connected to the daemon `pid`.
        probe_lazy!(aether, connect, pid);
        Ok(Client {
            conn,
            daemon_pid: pid,
            instance_id,
        })
    }

    /// A new connection to the same socket (after the daemon died or was
    /// restarted), starting a daemon if this client was allowed to.
    pub fn reconnect(&self) -> Result<Client> {
        Client::connect_with(Some(&self.conn.socket), self.conn.autostart)
    }

    /// Makes `topic` with the parameters of `geo` unless it exists.
    fn ensure_topic(&self, topic: &str, geo: &crate::segment::Geometry) -> Result<()> {
        let params = TopicParams {
            policy: geo.policy,
            ring_size: geo.ring_size,
            max_message: geo.max_message,
            max_subscribers: geo.max_subscribers,
            wal: None,
            huge_pages: false,
            retain_bytes: None,
            retain_seconds: None,
        };
        match self.create_topic(topic, &params) {
            Err(e) if e.status != Status::Exists => Err(e),
            _ => Ok(()),
        }
    }

    /// Process id of the daemon this client talks to.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon_pid
    }

    /// The daemon's instance: random per start, so a restarted daemon on the
    /// same socket differs (and its segments are told apart).
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// The control socket this client connected to.
    pub fn socket_path(&self) -> &Path {
        &self.conn.socket
    }

    /// Makes `topic` (a name of 1 to 120 bytes of letters, digits, `.`, `_`
    /// and `-`, not starting with `.`) with `params` ([`TopicParams::default`]: a
    /// lossy ring sized for its messages, messages up to 64 KiB, 64
    /// subscribers; see [`TopicParams::ring_for`]).
    ///
    /// Errors: `Exists` (with whatever parameters it has: fine when several
    /// programs make the same topic), `Invalid` (a bad name or parameters),
    /// `Permission` (no `admin` right on it), `Limit` (the broker's topic limit
    /// or this user's quota), `NoMem` (no shared memory for the ring).
    pub fn create_topic(&self, topic: &str, params: &TopicParams) -> Result<()> {
        protocol::validate_topic(topic)?;
        // Sized here, so that a daemon older than sized rings gets a size.
        let params = params.sized();
        params.validate()?;
        self.conn
            .call(&Request::TopicCreate {
                topic: topic.into(),
                params,
            })
            .map(drop)
    }

    /// Deletes `topic`: its publishers and subscribers get `NotFound` from
    /// then on (a subscriber first reads what was committed).
    ///
    /// Errors: `NotFound`, `Permission` (no `admin` right on it).
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        protocol::validate_topic(topic)?;
        self.conn.call(&Request::TopicDelete { topic: topic.into() }).map(drop)
    }

    /// `topic`'s figures as the broker keeps them (one request).
    ///
    /// Errors: `NotFound`, `Permission` (no right on the topic: publish,
    /// subscribe, monitor or admin), `Unavailable`.
    pub fn topic_stats(&self, topic: &str) -> Result<protocol::TopicStats> {
        protocol::validate_topic(topic)?;
        match self.conn.call(&Request::TopicStats { topic: topic.into() })?.0 {
            Reply::TopicStats(t) => Ok(t),
            _ => Err(Error::protocol("unexpected reply to a statistics request")),
        }
    }

    /// Sends an open request; returns the slot the daemon gave, the mapped
    /// segment (with its control page), the waiters page, and the descriptors that follow them (a
    /// subscriber's cursor page). If anything cannot be mapped, the slot is given back.
    fn open_segment(&self, req: &Request, topic: &str) -> Result<Opened> {
        let (reply, fds) = self.conn.call(req)?;
        let mut start = None;
        let (slot, close) = match reply {
            Reply::Publishing { slot } => (
                slot,
                Request::PublisherClose {
                    topic: topic.into(),
                    slot,
                    topic_id: 0,
                },
            ),
            Reply::Subscribed { slot, start: s } => {
                start = s;
                (slot, subscriber_close(topic, slot))
            }
            _ => return Err(Error::protocol("unexpected reply to an open request")),
        };
        let mapped = (|| {
            let mut fds = fds.into_iter();
            let (Some(seg_fd), Some(control_fd), Some(waiters_fd)) = (fds.next(), fds.next(), fds.next()) else {
                return Err(Error::protocol(
                    "the daemon sent no segment, control page or waiters page",
                ));
            };
            let seg = Segment::open(&seg_fd, &control_fd)?;
            let waiters = Waiters::open(&waiters_fd, seg.geometry().salt)?;
            Ok((Arc::new(seg), Arc::new(waiters), fds.collect()))
        })();
        self.or_give_back(mapped, close)
            .map(|(seg, w, rest)| (slot, seg, w, rest, start))
    }

    /// `r`; when it is an error, first gives back the slot that `close` names
    /// (an open that failed after the daemon granted it).
    fn or_give_back<T>(&self, r: Result<T>, close: Request) -> Result<T> {
        if r.is_err() {
            let _ = self.conn.call(&close);
        }
        r
    }

    /// A publisher on the existing `topic`; its publishes wait up to 5 s for
    /// space on a reliable topic ([`Publisher::set_timeout`]).
    ///
    /// Errors: `NotFound`, `Permission` (no `publish` right), `Limit` (the
    /// topic's 64 publishers, or this user's slot quota), `Corrupt` (a
    /// segment that fails its checks).
    pub fn publisher(&self, topic: &str) -> Result<Publisher> {
        protocol::validate_topic(topic)?;
        let (slot, seg, waiters, _, _) = self.open_segment(&Request::PublisherOpen { topic: topic.into() }, topic)?;
        // Cursor pages (a reliable publisher's) and pollable subscribers' eventfds come from the daemon.
        let source: Box<dyn SubscriberSource> = Box::new(DaemonSubscribers {
            client: self.clone(),
            topic: topic.into(),
            salt: seg.geometry().salt,
        });
        // Set when the topic was made, never changed.
        let synced = seg.durable().always.load(Ordering::Acquire) == 1;
        Ok(Publisher {
            synced,
            topic_c: probe_name(topic),
            writer: Writer::new(seg, waiters, Some(slot), Some(source)),
            loan: None,
            topic: topic.into(),
            slot,
            client: self.clone(),
        })
    }

    /// This connection's control queue, asked for on first use: a pollable
    /// descriptor, readable while a [`Notice`] waits (read it with
    /// [`next_notice`](Self::next_notice)). Notices from before the first
    /// call are not kept. Clones of this client share the queue.
    pub fn notices_fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.notice_queue()?.0.as_fd())
    }

    fn notice_queue(&self) -> Result<&(OwnedFd, usize)> {
        if let Some(q) = self.conn.notices.get() {
            return Ok(q);
        }
        let _once = self
            .conn
            .notices_init
            .lock()
            .map_err(|_| Error::new(Status::Internal, "notice lock poisoned"))?;
        if let Some(q) = self.conn.notices.get() {
            return Ok(q);
        }
        let (reply, fds) = self.conn.call(&Request::ControlQueue)?;
        let (Reply::ControlQueue { msgsize, .. }, Some(fd)) = (reply, fds.into_iter().next()) else {
            return Err(Error::protocol("unexpected reply to a control queue request"));
        };
        let attr = mq::getattr(fd.as_fd()).map_err(|e| Error::io("mq_getattr on the control queue", e))?;
        if attr.msgsize != msgsize as usize {
            return Err(Error::protocol("control queue message size differs from the reply's"));
        }
        Ok(self.conn.notices.get_or_init(|| (fd, attr.msgsize)))
    }

    /// The next notice from the daemon, waiting up to `timeout` (`None`:
    /// forever; zero: only one already there); `Ok(None)` on timeout.
    /// If the daemon had to drop notices because the queue was full, a
    /// [`Notice::Dropped`] with their number comes first.
    pub fn next_notice(&self, timeout: Option<Duration>) -> Result<Option<Notice>> {
        let stash = || {
            self.conn
                .notice_stash
                .lock()
                .map_err(|_| Error::new(Status::Internal, "notice lock poisoned"))
        };
        if let Some(n) = stash()?.take() {
            return Ok(Some(n));
        }
        let (fd, msgsize) = self.notice_queue()?;
        let mut buf = vec![0u8; *msgsize];
        let n = match mq::timedreceive(fd.as_fd(), &mut buf, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Ok(None),
            Err(e) => return Err(Error::io("mq_timedreceive on the control queue", e)),
        };
        let (notice, dropped) = notice::decode_notice(&buf[..n])?;
        if dropped > 0 {
            *stash()? = Some(notice);
            return Ok(Some(Notice::Dropped { count: dropped as u64 }));
        }
        Ok(Some(notice))
    }

    /// A subscriber on the existing `topic`: it receives, in order, what is
    /// published from now on, or with `cfg.start` other than `Latest` (a
    /// durable topic), the topic's logged history from there first, then
    /// what is published, with no gap and no duplicate between the two.
    ///
    /// Errors: `NotFound`, `Permission` (no `subscribe` right), `Limit` (the
    /// topic's `max_subscribers`, or this user's slot or queue quota),
    /// `Invalid` (a start on a topic that is not durable, a seq not yet
    /// published, a start with `Delivery::Mqueue`), `Corrupt`, `Io`
    /// (`Delivery::Mqueue`: the queue could not be made).
    pub fn subscriber(&self, topic: &str, cfg: &SubscriberConfig) -> Result<Subscriber> {
        protocol::validate_topic(topic)?;
        if cfg.delivery == Delivery::Mqueue {
            if cfg.start != Start::Latest || cfg.fill_gaps {
                return Err(Error::invalid(
                    "a subscriber with a start (history) or fill_gaps reads the ring: use delivery=shm",
                ));
            }
            return self.mqueue_subscriber(topic);
        }
        if cfg.fill_gaps && !self.topic_stats(topic)?.durable {
            return Err(Error::invalid(format!(
                "topic {topic:?} is not durable: there is no log to fill gaps from"
            )));
        }
        let req = Request::SubscriberOpen {
            topic: topic.into(),
            start: cfg.start.clone(),
        };
        let (slot, seg, waiters, rest, start) = self.open_segment(&req, topic)?;
        let opened = (|| {
            let mut rest = rest.into_iter();
            let fd = rest
                .next()
                .ok_or_else(|| Error::protocol("the daemon sent no cursor page"))?;
            let cursor = Arc::new(Cursor::open(&fd, seg.geometry().salt, slot)?);
            let (max_message, salt) = (seg.geometry().max_message as usize, seg.geometry().salt);
            let history = match (&cfg.start, start) {
                (Start::Latest, _) => None,
                // The daemon resolved the name to the committed position.
                (Start::Durable(_), Some((_, seq, from))) => {
                    Some(History::new(rest.collect(), Start::Seq(from), seq, max_message))
                }
                (s, Some((_, seq, _))) => Some(History::new(rest.collect(), s.clone(), seq, max_message)),
                (_, None) => return Err(Error::protocol("the daemon sent no history for a start")),
            }
            // Files past those this reply carried, as history reaches them.
            .map(|h| h.with_more(self.log_files(topic, salt, slot)));
            let at = start.map(|(pos, seq, _)| (pos, seq));
            Ok((Reader::new_at(seg, waiters, Some((slot, cursor)), at)?, history))
        })();
        let (mut reader, history) = self.or_give_back(opened, subscriber_close(topic, slot))?;
        reader.wait = cfg.wait;
        reader.abandon_timeout = cfg.abandon_timeout;
        let mut sub = Subscriber::new(reader, topic, slot, self.clone(), None);
        sub.history = history;
        sub.fill_gaps = cfg.fill_gaps;
        if let Start::Durable(name) = &cfg.start {
            sub.durable = Some(name.clone());
        }
        Ok(sub)
    }

    /// Asks the daemon for the log files of `topic` (the incarnation `salt`)
    /// from a seq on, for the holder of subscriber slot `slot`.
    fn log_files(&self, topic: &str, salt: u64, slot: u32) -> crate::history::MoreFiles {
        let (client, topic) = (self.clone(), topic.to_string());
        Box::new(move |from_seq| {
            let req = Request::LogFiles {
                topic: topic.clone(),
                topic_id: salt,
                slot,
                from_seq,
            };
            client.conn.call(&req).map(|(_, files)| files)
        })
    }

    /// A `delivery=mqueue` subscriber: the daemon reads the ring for it and
    /// forwards into a queue; the segment comes too, for the slot's counters.
    fn mqueue_subscriber(&self, topic: &str) -> Result<Subscriber> {
        // Too-large notices go to the control queue: make sure there is one
        // (a subscriber works without, so a failure here is not fatal).
        let _ = self.notice_queue();
        let (reply, fds) = self.conn.call(&Request::SubscriberOpenMqueue { topic: topic.into() })?;
        let Reply::SubscribedMqueue { slot, msgsize, .. } = reply else {
            return Err(Error::protocol("unexpected reply to an mqueue subscriber request"));
        };
        let opened = (|| {
            let mut fds = fds.into_iter();
            let (Some(seg_fd), Some(control_fd), Some(waiters_fd), Some(queue), Some(cursor_fd)) =
                (fds.next(), fds.next(), fds.next(), fds.next(), fds.next())
            else {
                return Err(Error::protocol(
                    "the daemon sent no segment, control page, waiters page, queue or cursor page",
                ));
            };
            let seg = Segment::open(&seg_fd, &control_fd)?;
            let salt = seg.geometry().salt;
            let waiters = Arc::new(Waiters::open(&waiters_fd, salt)?);
            // The daemon's dispatch thread reads through the slot; the cursor
            // page (read-only here) gives this side the slot's counts.
            let cursor = Cursor::open(&cursor_fd, salt, slot)?;
            let reader = Reader::new(Arc::new(seg), waiters, None)?;
            Ok((reader, MqReceiver::new(queue, msgsize as usize)?, cursor))
        })();
        let (reader, rx, cursor) = self.or_give_back(opened, subscriber_close(topic, slot))?;
        let mut s = Subscriber::new(reader, topic, slot, self.clone(), Some(rx));
        s.mq_cursor = Some(cursor);
        Ok(s)
    }
}

/// What an open request gives: the slot, the segment, the waiters page, and
/// the descriptors after them.
/// Slot, segment, waiters page, the descriptors that follow, and where a
/// replaying subscriber's cursor was put (position, next seq) and its history begins.
type Opened = (u32, Arc<Segment>, Arc<Waiters>, Vec<OwnedFd>, Option<(u64, u64, u64)>);

/// A publisher's [`SubscriberSource`]: asks the daemon for read-only cursor
/// pages of gating subscribers (`Cursors`: a reliable topic's subscribers,
/// a durable topic's log writer) and for the eventfds of pollable ones
/// (`Notifiers`), [`protocol::MAX_CURSORS`] at a time.
struct DaemonSubscribers {
    client: Client,
    topic: String,
    salt: u64,
}

impl DaemonSubscribers {
    /// Asks with `request` (one of the two) for the slots `wanted`, in
    /// chunks; the reply lists the slots given, one descriptor each.
    fn ask(
        &self,
        wanted: &[(u32, u64)],
        request: impl Fn(Vec<(u32, u64)>) -> Request,
    ) -> Result<Vec<((u32, u64), OwnedFd)>> {
        let mut out = Vec::new();
        for chunk in wanted.chunks(protocol::MAX_CURSORS) {
            let (reply, fds) = self.client.conn.call(&request(chunk.to_vec()))?;
            let (Reply::Cursors { slots } | Reply::Notifiers { slots }) = reply else {
                return Err(Error::protocol("unexpected reply to a cursors or notifiers request"));
            };
            if slots.len() != fds.len() {
                return Err(Error::protocol("descriptors and their slots do not match"));
            }
            out.extend(slots.into_iter().zip(fds));
        }
        Ok(out)
    }
}

impl SubscriberSource for DaemonSubscribers {
    fn cursors(&mut self, wanted: &[(u32, u64)]) -> Result<Vec<(u32, u64, Arc<Cursor>)>> {
        let (topic, topic_id) = (self.topic.clone(), self.salt);
        self.ask(wanted, |slots| Request::Cursors {
            topic: topic.clone(),
            topic_id,
            slots,
        })?
        .into_iter()
        .map(|((slot, gen), fd)| Ok((slot, gen, Arc::new(Cursor::open(&fd, self.salt, slot)?))))
        .collect()
    }

    fn notifiers(&mut self, wanted: &[(u32, u64)]) -> Result<Vec<(u32, u64, OwnedFd)>> {
        let (topic, topic_id) = (self.topic.clone(), self.salt);
        let got = self.ask(wanted, |slots| Request::Notifiers {
            topic: topic.clone(),
            topic_id,
            slots,
        })?;
        Ok(got.into_iter().map(|((slot, gen), fd)| (slot, gen, fd)).collect())
    }
}

/// Options for a subscriber.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// How a receive waits: spin this many times, then sleep on a futex
    /// (the default), or spin only, or yield.
    pub wait: WaitConfig,
    /// How long a receive waits for a publisher that claimed the next
    /// record but has not committed it, before skipping it as abandoned
    /// (the publisher died between claim and commit). Default 100 ms.
    pub abandon_timeout: Duration,
    /// Straight from the ring (default) or through a message queue.
    /// `wait` and `abandon_timeout` apply to `Delivery::Shm` only.
    pub delivery: Delivery,
    /// Where to begin: `Latest` (default), or on a durable topic, somewhere
    /// in its log (`Earliest`, `Seq`, `Time`). `Delivery::Shm` only.
    pub start: Start,
    /// A durable lossy topic: when publishers lapped this subscriber, read
    /// the messages it missed from the log instead of losing them (they come
    /// in order, before the ring's next). `Delivery::Shm` on a durable topic
    /// only (`Invalid` otherwise). Default false.
    pub fill_gaps: bool,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        SubscriberConfig {
            wait: WaitConfig {
                strategy: WaitStrategy::Futex,
                spin: 2000,
            },
            abandon_timeout: Duration::from_millis(100),
            delivery: Delivery::Shm,
            start: Start::Latest,
            fill_gaps: false,
        }
    }
}

/// Publishes to one topic. Not shareable between threads at once (`&mut self`);
/// open one per thread: publishers never lock each other.
pub struct Publisher {
    /// A durable topic with `fsync = always`: a publish returns once its
    /// message is on disk.
    synced: bool,
    /// The topic's name for the USDT probes (a C string).
    topic_c: std::ffi::CString,
    writer: Writer,
    loan: Option<Claim>,
    topic: String,
    slot: u32,
    client: Client,
}

impl Publisher {
    /// Copies `data` into the ring as one message; returns its sequence number.
    #[inline]
    pub fn publish(&mut self, data: &[u8]) -> Result<u64> {
        owned_by_this_process(self.client.conn.owner)?;
        if self.loan.is_some() {
            return Err(Error::invalid("a loan is outstanding: commit or abort it first"));
        }
        let seq = self.writer.publish(data)?;
        probe_lazy!(aether, publish, self.topic_c.as_ptr(), seq, data.len());
        self.synced(seq)
    }

    /// `seq`, once it is on disk where the topic says so (`fsync = always`).
    fn synced(&self, seq: u64) -> Result<u64> {
        if self.synced {
            self.writer.wait_synced(seq)?;
        }
        Ok(seq)
    }

    /// Loans `len` bytes of the ring to write a message in place.
    #[inline]
    pub fn loan(&mut self, len: usize) -> Result<&mut [u8]> {
        owned_by_this_process(self.client.conn.owner)?;
        if self.loan.is_some() {
            return Err(Error::invalid("a loan is outstanding: commit or abort it first"));
        }
        let mut claim = self.writer.claim(len)?;
        // Commit may publish at most what was loaned (not the stride's slack).
        claim.capacity = len;
        self.loan = Some(claim);
        // SAFETY: the claimed payload has `len` bytes (capacity >= len) that no
        // other publisher writes and no reader reads until commit; the slice
        // borrows `self`, so it cannot outlive the loan.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.writer.payload(&claim), len) })
    }

    /// Publishes the first `len` bytes of the outstanding loan.
    #[inline]
    pub fn commit(&mut self, len: usize) -> Result<u64> {
        self.commit_loan(len, |w, claim| w.commit(claim, len))
    }

    /// Publishes the first `len` bytes of the outstanding loan as a message
    /// another broker published first (the daemon's bridge does): `origin`
    /// and the origin's `timestamp_ns` go with it, so subscribers can tell.
    /// The loan must hold `len + ORIGIN_BYTES`.
    pub fn commit_from(&mut self, len: usize, timestamp_ns: u64, origin: Origin) -> Result<u64> {
        self.commit_loan(len, |w, claim| w.commit_remote(claim, len, timestamp_ns, origin))
    }

    /// Publishes the outstanding loan with `publish` (a commit of the ring):
    /// on success the loan is gone, the probe fires, and an `fsync=always`
    /// topic waits for the log.
    #[inline(always)]
    fn commit_loan(&mut self, len: usize, publish: impl FnOnce(&mut Writer, Claim) -> Result<()>) -> Result<u64> {
        owned_by_this_process(self.client.conn.owner)?;
        let claim = self
            .loan
            .ok_or_else(|| Error::invalid("no loan to commit: loan first"))?;
        publish(&mut self.writer, claim)?;
        self.loan = None;
        probe_lazy!(aether, publish, self.topic_c.as_ptr(), claim.seq, len);
        self.synced(claim.seq)
    }

    /// Gives the outstanding loan up without publishing it.
    pub fn abort(&mut self) -> Result<()> {
        owned_by_this_process(self.client.conn.owner)?;
        let claim = self.loan.take().ok_or_else(|| Error::invalid("no loan to abort"))?;
        self.writer.abort(claim);
        Ok(())
    }

    /// The sequence number the outstanding loan will be published under
    /// (it is fixed when the loan is made); `None` without a loan.
    pub fn loan_seq(&self) -> Option<u64> {
        self.loan.map(|c| c.seq)
    }

    /// Whether a loan is outstanding.
    pub fn has_loan(&self) -> bool {
        self.loan.is_some()
    }

    /// Base address and length of this publisher's (writable) mapping of the
    /// segment, for tests and diagnostics.
    pub fn mapping_range(&self) -> (usize, usize) {
        self.writer.segment().mapping_range()
    }

    /// Bounds how long a publish on a reliable topic waits for slow subscribers.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.writer.timeout = timeout;
    }

    /// Where messages of 32 KiB and up go in the ring from now on (by
    /// default as `AETHER_LARGE_LAPS` says, else [`LargeLaps::CaughtUp`]):
    /// short laps are faster to subscribers that read little of each
    /// message and keep up; always short, they hold only about four such
    /// messages for a subscriber that falls behind; caught-up laps are cut
    /// short only when that costs no room (docs/ARCHITECTURE.md, "Large
    /// messages"). Lossy topics keep whole laps whatever is asked.
    pub fn set_large_laps(&mut self, laps: LargeLaps) {
        self.writer.set_large_laps(laps);
    }

    /// Where messages of 32 KiB and up go, as last asked (lossy topics:
    /// always [`LargeLaps::Whole`]).
    pub fn large_laps(&self) -> LargeLaps {
        self.writer.large_laps()
    }

    /// Whether this publisher's messages carry the time they were published
    /// (`CLOCK_REALTIME` in ns, within about a microsecond; the default) or
    /// 0 ([`Message::timestamp_ns`]). Reading the clock is about a third of
    /// a small publish (~10 of ~30 ns): a publisher whose subscribers do not
    /// use the time can go without. A subscriber that starts at a time
    /// ([`Start::Time`]) takes a message without one by those before it.
    pub fn set_timestamps(&mut self, on: bool) {
        self.writer.set_timestamps(on);
    }

    /// Whether this publisher's messages carry timestamps.
    pub fn timestamps(&self) -> bool {
        self.writer.timestamps()
    }

    /// Carries on after the daemon died (calls fail with `Unavailable`) or
    /// the topic was deleted (`NotFound`): connects again to the same socket
    /// (starting a daemon if its client was allowed to), makes the topic again
    /// with this one's parameters if it does not exist, and takes a new
    /// publisher slot, keeping this handle's timeout, laps and timestamps. An outstanding loan is
    /// given up. The library never does this by itself: the caller decides
    /// when, with this one call. On error the handle is left as it was.
    pub fn reopen(&mut self) -> Result<()> {
        let client = self.client.reconnect()?;
        client.ensure_topic(&self.topic, self.writer.segment().geometry())?;
        let mut fresh = client.publisher(&self.topic)?;
        fresh.writer.timeout = self.writer.timeout;
        fresh.writer.wait = self.writer.wait;
        fresh.writer.set_large_laps(self.writer.large_laps());
        fresh.writer.set_timestamps(self.writer.timestamps());
        // Dropping the old handle aborts its loan and tells its daemon, if alive.
        *self = fresh;
        Ok(())
    }

    /// The topic's largest message, in bytes.
    pub fn max_message(&self) -> usize {
        self.writer.segment().geometry().max_message as usize
    }

    /// The topic's delivery policy (lossy or reliable).
    pub fn policy(&self) -> crate::segment::Policy {
        self.writer.segment().geometry().policy
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // In a forked child the slot and the connection are the parent's:
        // touch neither (only this process's mapping goes).
        if crate::sys::forked_since(self.client.conn.owner) {
            self.writer.forget_slot();
            return;
        }
        if let Some(c) = self.loan.take() {
            self.writer.abort(c);
        }
        // Leave the slot before the daemon can hand it to someone else.
        self.writer.leave_slot();
        let _ = self.client.conn.call(&Request::PublisherClose {
            topic: self.topic.clone(),
            slot: self.slot,
            topic_id: self.writer.segment().geometry().salt,
        });
    }
}

/// A message copied out of the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The payload.
    pub data: Vec<u8>,
    /// Its sequence number in the topic.
    pub seq: u64,
    /// When it was published: CLOCK_REALTIME, nanoseconds since the epoch;
    /// [`NO_TIMESTAMP`](crate::NO_TIMESTAMP) (0) if its publisher sends none
    /// ([`Publisher::set_timestamps`]).
    pub timestamp_ns: u64,
    /// For a message another broker's bridge brought here: the broker and
    /// its seq there (docs/BRIDGE.md); `None` for one published here.
    pub origin: Option<Origin>,
}

/// Receives from one topic, in publication order.
pub struct Subscriber {
    /// `Delivery::Mqueue`: not registered in a slot; maps the segment only.
    reader: Reader,
    held: Option<Record>,
    topic: String,
    slot: u32,
    client: Client,
    /// `Delivery::Mqueue`: the queue the daemon forwards into.
    mq: Option<MqReceiver>,
    /// `receive`'s landing area, sized to max_message once, so that each call
    /// allocates only the message it returns.
    scratch: Vec<u8>,
    /// `Delivery::Mqueue`: the slot's cursor page, read-only (the daemon's
    /// dispatch thread keeps its counts).
    mq_cursor: Option<Cursor>,
    /// `Delivery::Shm`, once [`fd`](Self::fd) was asked for: the eventfd
    /// publishers signal while this subscriber is armed (see `PollLine`).
    notify: Option<OwnedFd>,
    /// A durable topic's logged messages still to deliver before the ring's.
    history: Option<History>,
    /// The seq and origin of the last message delivered from the log.
    log_origin: Option<(u64, Option<Origin>)>,
    /// The topic's name for the USDT probes (a C string), and the lost
    /// count the `lost` probe last reported.
    topic_c: std::ffi::CString,
    lost_seen: u64,
    /// Messages the finished history delivered, and lost (retention had removed them).
    from_log: (u64, u64),
    /// A start the log did not reach: ring messages before it are passed over.
    ring_start: Option<Start>,
    /// A durable subscription's name.
    durable: Option<String>,
    /// `SubscriberConfig::fill_gaps`, and the gap being filled from the log
    /// (`history` holds it): from, to.
    fill_gaps: bool,
    filling: Option<(u64, u64)>,
}

impl Subscriber {
    fn new(reader: Reader, topic: &str, slot: u32, client: Client, mq: Option<MqReceiver>) -> Subscriber {
        Subscriber {
            reader,
            held: None,
            topic_c: probe_name(topic),
            lost_seen: 0,
            topic: topic.into(),
            slot,
            client,
            mq,
            scratch: Vec::new(),
            mq_cursor: None,
            notify: None,
            history: None,
            log_origin: None,
            from_log: (0, 0),
            ring_start: None,
            durable: None,
            fill_gaps: false,
            filling: None,
        }
    }

    /// A descriptor for poll/epoll/select (and event loops): readable when a
    /// receive may not come back empty. For `delivery=mqueue` it is the
    /// queue's; for `delivery=shm` an eventfd the daemon makes on the first
    /// call (one request), which publishers signal only while this subscriber
    /// is armed: from a receive that came back empty (a timeout, zero or
    /// not) until the next receive. So: poll, then receive (timeout 0) until
    /// it comes back empty, then poll again. The descriptor stays valid as
    /// long as the subscriber; do not read or close it.
    pub fn fd(&mut self) -> Result<BorrowedFd<'_>> {
        owned_by_this_process(self.client.conn.owner)?;
        if self.mq.is_none() && self.notify.is_none() {
            let (_, mut fds) = self.client.conn.call(&Request::SubscriberFd {
                topic: self.topic.clone(),
                topic_id: self.reader.segment().geometry().salt,
                slot: self.slot,
            })?;
            let fd = fds.pop().ok_or_else(|| Error::protocol("the daemon sent no eventfd"))?;
            self.notify = Some(fd);
            self.came_back_empty();
            // History to deliver: readable now, whatever the ring holds.
            if let (Some(fd), true) = (&self.notify, self.history.as_ref().is_some_and(History::pending)) {
                crate::sys::eventfd::signal(fd);
            }
        }
        match (&self.mq, &self.notify) {
            (Some(mq), _) => Ok(mq.fd()),
            (None, Some(fd)) => Ok(fd.as_fd()),
            (None, None) => unreachable!("made above"),
        }
    }

    /// After a receive found nothing: a pollable subscriber clears its
    /// eventfd and arms, and signals itself if something arrived meanwhile.
    fn came_back_empty(&mut self) {
        if let Some(fd) = &self.notify {
            crate::sys::eventfd::drain(fd);
            if self.reader.arm_poll() {
                crate::sys::eventfd::signal(fd);
            }
        }
    }

    /// Disarms before a receive, and arms again if it came back empty.
    fn pollable<T>(&mut self, receive: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.reader.disarm_poll();
        let r = receive(self);
        if matches!(&r, Err(e) if e.status == Status::Timeout) {
            self.came_back_empty();
        }
        r
    }

    /// Copies the next message into `buf`, waiting up to `timeout` (`None`: forever).
    /// A message longer than `buf` is left unread and reported as `TooLarge`;
    /// [`too_large_len`](Self::too_large_len) then gives its length.
    pub fn receive_into(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<Received> {
        self.receive_into_deadline(buf, &Deadline::after(timeout))
    }

    /// [`receive_into`](Self::receive_into) with an absolute deadline (one
    /// deadline for several calls).
    #[inline]
    pub fn receive_into_deadline(&mut self, buf: &mut [u8], deadline: &Deadline) -> Result<Received> {
        owned_by_this_process(self.client.conn.owner)?;
        // The common case, inline: the next message is in the ring, committed and fits.
        if self.mq.is_none() && self.held.is_none() && !self.replaying() && !self.fill_gaps {
            self.reader.disarm_poll();
            if let Some((len, seq, timestamp_ns)) = self.reader.receive_into_fast(buf) {
                self.probe_received(seq, len, timestamp_ns);
                return Ok(Received { len, seq, timestamp_ns });
            }
        }
        self.receive_into_general(buf, deadline)
    }

    #[inline(never)]
    fn receive_into_general(&mut self, buf: &mut [u8], deadline: &Deadline) -> Result<Received> {
        if let Some(mq) = &mut self.mq {
            let conn = &self.client.conn;
            return mq.receive_into(buf, deadline, &|| conn.hung_up());
        }
        if self.held.is_some() {
            return Err(Error::invalid("a received view is outstanding: release it first"));
        }
        loop {
            if self.replaying() {
                let from_log = self.take_history(true, deadline, |m| {
                    let len = m.payload.len();
                    let dst = buf.get_mut(..len).ok_or(len)?;
                    dst.copy_from_slice(m.payload);
                    Ok((
                        Received {
                            len,
                            seq: m.seq,
                            timestamp_ns: m.timestamp_ns,
                        },
                        m.origin,
                    ))
                })?;
                if let Some((got, origin)) = from_log {
                    self.log_origin = Some((got.seq, origin));
                    self.probe_received(got.seq, got.len, got.timestamp_ns);
                    return Ok(got);
                }
                if self.ring_start.is_some() {
                    self.pollable(|s| s.pass_before_start(deadline))?;
                }
            }
            let (len, seq, timestamp_ns) = if self.fill_gaps {
                match self.pollable(|s| s.reader.receive_into_or_gap(buf, deadline))? {
                    Got::Message(len, seq, timestamp_ns) => (len, seq, timestamp_ns),
                    Got::Gap { from, to } => {
                        self.fill_gap(from, to)?;
                        continue;
                    }
                }
            } else {
                // (The fast path was tried in receive_into_deadline, or does
                // not apply; next() looks at the cursor first anyway.)
                self.pollable(|s| s.reader.receive_into_waiting(buf, deadline))?
            };
            self.probe_received(seq, len, timestamp_ns);
            return Ok(Received { len, seq, timestamp_ns });
        }
    }

    /// Where the message received last was first published, if another
    /// broker's bridge brought it here (`None` for one published here).
    pub fn last_origin(&self) -> Option<Origin> {
        match self.log_origin {
            // The last message came from the log.
            Some((seq, origin)) if seq.wrapping_add(1) == self.next_to_deliver() => origin,
            _ => self.reader.last_origin(),
        }
    }

    /// Receives the next message as an owned copy; `Ok(None)` on timeout.
    pub fn receive(&mut self, timeout: Option<Duration>) -> Result<Option<Message>> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(self.max_message(), 0);
        let got = self
            .receive_into(&mut scratch, timeout)
            .map(|r| (scratch[..r.len].to_vec(), r));
        self.scratch = scratch;
        match got {
            Ok((data, r)) => Ok(Some(Message {
                data,
                seq: r.seq,
                timestamp_ns: r.timestamp_ns,
                origin: self.last_origin(),
            })),
            Err(e) if e.status == Status::Timeout => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Borrows the next message in place (zero-copy). The view stays valid
    /// until [`release`](Self::release_view); on a lossy topic it may be
    /// overwritten meanwhile, which `release` then reports as `Overwritten`.
    #[inline]
    pub fn receive_view(&mut self, deadline: &Deadline) -> Result<Record> {
        owned_by_this_process(self.client.conn.owner)?;
        if self.mq.is_none() && self.held.is_none() && !self.replaying() {
            if let Some(rec) = self.view_fast() {
                return Ok(rec);
            }
        }
        self.receive_view_general(deadline)
    }

    /// The common case of [`receive_view`](Self::receive_view), kept short
    /// (it inlines into the caller): the next message is in the ring,
    /// committed, in sequence and not overwritten. `None`: the general way.
    #[inline(always)]
    fn view_fast(&mut self) -> Option<Record> {
        self.reader.disarm_poll();
        let rec = self.reader.next_fast()?;
        if self.reader.overwritten(rec.pos) || (self.fill_gaps && rec.seq != self.reader.next_seq()) {
            return None;
        }
        self.held = Some(rec);
        self.probe_received(rec.seq, rec.len, rec.timestamp_ns);
        Some(rec)
    }

    #[inline(never)]
    fn receive_view_general(&mut self, deadline: &Deadline) -> Result<Record> {
        if self.mq.is_some() {
            return Err(Error::invalid(
                "receive_view is not available with delivery=mqueue (messages arrive copied through the \
                 queue): use receive or receive_into",
            ));
        }
        if self.held.is_some() {
            return Err(Error::invalid("a received view is outstanding: release it first"));
        }
        loop {
            if self.replaying() {
                // Not advanced: the view stays in the history's buffer until released.
                let from_log = self.take_history(false, deadline, |m| {
                    Ok(Record {
                        pos: HISTORY,
                        stride: 0,
                        seq: m.seq,
                        timestamp_ns: m.timestamp_ns,
                        len: m.payload.len(),
                        data: m.payload.as_ptr(),
                        origin: m.origin,
                    })
                })?;
                if let Some(rec) = from_log {
                    self.held = Some(rec);
                    self.log_origin = Some((rec.seq, rec.origin));
                    self.probe_received(rec.seq, rec.len, rec.timestamp_ns);
                    return Ok(rec);
                }
                if self.ring_start.is_some() {
                    self.pollable(|s| s.pass_before_start(deadline))?;
                }
            }
            let rec = self.pollable(|s| loop {
                let rec = s.reader.next(deadline)?;
                if s.reader.overwritten(rec.pos) {
                    s.reader.drop_overwritten(&rec)?;
                    continue;
                }
                return Ok(rec);
            })?;
            // (A view overwritten while held was not consumed either: it
            // comes again from the log, as part of the next gap.)
            if self.fill_gaps && rec.seq > self.reader.next_seq() {
                self.fill_gap(self.reader.next_seq(), rec.seq)?;
                continue;
            }
            self.held = Some(rec);
            self.probe_received(rec.seq, rec.len, rec.timestamp_ns);
            return Ok(rec);
        }
    }

    /// Ends the outstanding view. `Overwritten` if, on a lossy topic, the
    /// publisher lapped it while it was held (its bytes may be torn; it is counted lost).
    #[inline]
    pub fn release_view(&mut self) -> Result<Record> {
        owned_by_this_process(self.client.conn.owner)?;
        match &self.held {
            // The common case, inline: a view of the ring, not lapped. Field
            // by field: `receive_view` has just stored them one by one, and a
            // wider load spanning two of those stores stalls (store-to-load
            // forwarding fails: a quarter of this function's samples in perf).
            Some(h) if h.pos != HISTORY && !self.reader.overwritten(h.pos) => {
                let rec = Record {
                    pos: h.pos,
                    stride: h.stride,
                    seq: h.seq,
                    timestamp_ns: h.timestamp_ns,
                    len: h.len,
                    data: h.data,
                    origin: h.origin,
                };
                self.held = None;
                self.reader.consume(&rec);
                Ok(rec)
            }
            _ => {
                let held = self.held.take();
                self.release_general(held)
            }
        }
    }

    #[inline(never)]
    fn release_general(&mut self, held: Option<Record>) -> Result<Record> {
        let rec = held.ok_or_else(|| Error::invalid("no received view to release"))?;
        if rec.pos == HISTORY {
            if let Some(h) = &mut self.history {
                h.advance();
            }
            return Ok(rec);
        }
        if self.reader.overwritten(rec.pos) {
            self.reader.drop_overwritten(&rec)?;
            return Err(Error::new(
                Status::Overwritten,
                format!("message {} was overwritten while held", rec.seq),
            ));
        }
        self.reader.consume(&rec);
        Ok(rec)
    }

    /// Length of the message the last `TooLarge` error left unread.
    pub fn too_large_len(&self) -> usize {
        match (&self.mq, &self.history) {
            (Some(mq), _) => mq.too_large_len(),
            (None, Some(h)) if h.too_large_len != 0 => h.too_large_len,
            (None, _) => self.reader.too_large_len(),
        }
    }

    /// The view currently held, if any.
    pub fn held_view(&self) -> Option<&Record> {
        self.held.as_ref()
    }

    /// Messages this subscriber missed (lossy topics: lapped; any topic:
    /// abandoned records; `delivery=mqueue` on a lossy topic: also those that
    /// found its queue full). A gap counts once the message after it is
    /// consumed: received, or its view released (a record abandoned while
    /// its claim was stamped, over 1 KiB, counts as soon as it is passed).
    /// For `delivery=mqueue` this is the daemon's count,
    /// read from the subscriber's slot in the segment: up to date as soon as
    /// the daemon has passed a message, even before what precedes it is received.
    pub fn lost(&self) -> u64 {
        match &self.mq {
            Some(_) => self.slot_counter(|s| &s.lost),
            None => self.reader.lost() + self.from_log.1 + self.history.as_ref().map_or(0, |h| h.lost),
        }
    }

    /// Messages received so far.
    pub fn delivered(&self) -> u64 {
        match &self.mq {
            Some(mq) => mq.delivered(),
            None => self.reader.delivered() + self.from_log.0 + self.history.as_ref().map_or(0, |h| h.delivered),
        }
    }

    /// `delivery=mqueue`: messages the daemon skipped because they exceed the
    /// queue's message size (each also reported by a [`Notice::TooLarge`]).
    /// They are neither delivered nor lost. Always 0 for `delivery=shm`.
    pub fn too_large(&self) -> u64 {
        match &self.mq {
            Some(_) => self.slot_counter(|s| &s.too_large),
            None => 0,
        }
    }

    /// A count of this subscriber's cursor page (kept by the daemon's
    /// dispatch thread for a `delivery=mqueue` subscriber).
    fn slot_counter(&self, f: impl Fn(&CursorLine) -> &std::sync::atomic::AtomicU64) -> u64 {
        self.mq_cursor
            .as_ref()
            .or(self.reader.cursor_page())
            .map_or(0, |c| f(c.line()).load(Ordering::Acquire))
    }

    /// Largest message this subscriber can receive: the topic's maximum, or
    /// for `delivery=mqueue` the queue's message size less its 24-byte header.
    pub fn max_message(&self) -> usize {
        match &self.mq {
            Some(mq) => mq.max_message(),
            None => self.reader.geometry().max_message as usize,
        }
    }

    /// Whether this subscriber reads the ring or a message queue.
    pub fn delivery(&self) -> Delivery {
        if self.mq.is_some() {
            Delivery::Mqueue
        } else {
            Delivery::Shm
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The mapped segment's address range (lets tests prove views are zero-copy).
    pub fn mapping_range(&self) -> (usize, usize) {
        self.reader.segment().mapping_range()
    }

    /// The topic's delivery policy (lossy or reliable).
    pub fn policy(&self) -> crate::segment::Policy {
        self.reader.geometry().policy
    }

    /// Whether the held view has been overwritten so far: on a lossy topic a
    /// publisher lapped it and its bytes may be torn. Check this after copying
    /// from the view to know whether the copy can be trusted (the view stays
    /// held; [`release_view`](Self::release_view) then reports `Overwritten`).
    /// `false` when no view is held or the topic is reliable.
    pub fn held_view_overwritten(&self) -> bool {
        self.held
            .is_some_and(|rec| rec.pos != HISTORY && self.reader.overwritten(rec.pos))
    }

    /// Whether history remains, or a start the ring has not reached: one
    /// check on the receive paths, which otherwise go straight to the ring.
    #[inline(always)]
    fn replaying(&self) -> bool {
        self.history.is_some() || self.ring_start.is_some()
    }

    /// The history is done (`damaged`: it stopped at damage, what it did not
    /// read is lost): its counts join the subscriber's, and after a gap
    /// filled, the ring goes on after the gap.
    fn end_history(&mut self, damaged: bool) {
        let Some(h) = self.history.take() else { return };
        let lost = match self.filling.take() {
            // Whatever of the gap the log did not give (retention, damage, holes in the numbering).
            Some((from, to)) => {
                self.reader.filled_to(to);
                (to - from).saturating_sub(h.delivered)
            }
            None => {
                self.ring_start = h.ring_start();
                h.lost + if damaged { h.unread() } else { 0 }
            }
        };
        self.from_log = (self.from_log.0 + h.delivered, self.from_log.1 + lost);
    }

    /// The ring lapped this subscriber over messages `from..to`: they come
    /// from the log first (`fill_gaps`).
    #[cold]
    fn fill_gap(&mut self, from: u64, to: u64) -> Result<()> {
        let salt = self.reader.segment().geometry().salt;
        let mut more = self.client.log_files(&self.topic, salt, self.slot);
        let files = more(from)?;
        let max_message = self.max_message();
        self.history = Some(History::new(files, Start::Seq(from), to, max_message).with_more(more));
        self.filling = Some((from, to));
        Ok(())
    }

    /// While history remains: `take` of its next message (`Err(len)`: the
    /// caller's buffer is too small: `TooLarge`, nothing consumed), and the
    /// message consumed when `advance`. `None` once the ring takes over.
    #[inline(never)]
    fn take_history<T>(
        &mut self,
        advance: bool,
        deadline: &Deadline,
        take: impl FnOnce(&crate::history::Logged<'_>) -> std::result::Result<T, usize>,
    ) -> Result<Option<T>> {
        let Some(h) = &mut self.history else {
            return Ok(None);
        };
        // Damage in the log is reported once; then the subscriber goes on
        // with the ring (what the log could not give counted lost), rather
        // than failing forever while its cursor holds the publishers back.
        // A deadline that passed while the log writer was waited for is
        // not damage: the next receive goes on.
        match h.peek_until(Some(deadline)) {
            Err(e) if e.status == Status::Timeout => return Err(e),
            Err(e) => {
                self.end_history(true);
                return Err(e);
            }
            Ok(_) => {}
        }
        let h = self.history.as_mut().expect("kept above");
        let Some(m) = h.peek()? else {
            self.end_history(false);
            return Ok(None);
        };
        let seq = m.seq;
        match take(&m) {
            Ok(t) => {
                h.too_large_len = 0;
                if advance {
                    h.advance();
                }
                Ok(Some(t))
            }
            Err(len) => {
                h.too_large_len = len;
                Err(Error::new(
                    Status::TooLarge,
                    format!("message {seq} of {len} bytes does not fit the buffer"),
                ))
            }
        }
    }
}

/// A subscriber's own figures ([`Subscriber::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Messages the topic has published so far (its next sequence number).
    pub published: u64,
    /// Messages this subscriber received.
    pub delivered: u64,
    /// Messages it missed (see [`Subscriber::lost`]).
    pub lost: u64,
    /// Messages published that it has not read yet.
    pub lag: u64,
    /// `delivery=mqueue`: messages skipped as too large for its queue.
    pub too_large: u64,
}

/// A topic name as the probes pass it (names never hold a NUL: validated).
fn probe_name(topic: &str) -> std::ffi::CString {
    std::ffi::CString::new(topic).unwrap_or_default()
}

impl Subscriber {
    /// The `receive` USDT probe (topic, seq, len, latency from the
    /// publisher's timestamp in ns, 0 without one) and `lost` (topic, messages lost since
    /// the last receive: usually 0). Arguments are computed only while a
    /// tracer is attached (each probe's semaphore): otherwise a probe costs
    /// a load and a branch.
    #[inline(always)]
    fn probe_received(&mut self, seq: u64, len: usize, timestamp_ns: u64) {
        probe_lazy!(
            aether,
            receive,
            self.topic_c.as_ptr(),
            seq,
            len,
            // 0 for a message without a timestamp.
            if timestamp_ns == crate::NO_TIMESTAMP {
                0
            } else {
                crate::sys::realtime_ns().saturating_sub(timestamp_ns)
            }
        );
        probe_lazy!(aether, lost, self.topic_c.as_ptr(), {
            let lost = self.lost();
            let new = lost.saturating_sub(self.lost_seen);
            self.lost_seen = lost;
            new
        });
    }

    /// The seq of the next message this subscriber will deliver (those
    /// before it are delivered, or released if viewed): from the history
    /// while it lasts, from the start the ring has not reached yet, else
    /// from the ring's cursor. What `commit` records.
    fn next_to_deliver(&self) -> u64 {
        match (&self.history, &self.ring_start) {
            (Some(h), _) => h.position(),
            (None, Some(Start::Seq(n))) => *n,
            _ => self.reader.next_seq(),
        }
    }

    /// This subscriber's figures, read from the topic's segment (no request).
    pub fn stats(&self) -> SubscriberStats {
        let published = self.reader.segment().tail().hi.load(Ordering::Acquire);
        let next = match &self.mq {
            Some(_) => self.slot_counter(|c| &c.next_seq),
            None => self.next_to_deliver().min(published),
        };
        SubscriberStats {
            published,
            delivered: self.delivered(),
            lost: self.lost(),
            lag: published.saturating_sub(next),
            too_large: self.too_large(),
        }
    }

    /// A durable subscription ([`Start::Durable`]): records with the daemon
    /// that every message delivered so far is done with, so that the next
    /// subscriber of that name (after this one closes, crashes, or the
    /// daemon restarts) begins after it. Messages delivered after the last
    /// commit come again then: at-least-once. One request to the daemon;
    /// the daemon writes the position to its state directory (a crash of
    /// any process keeps it; a power loss may lose the last commits).
    ///
    /// Errors: `Invalid` (not a durable subscription), `Unavailable`.
    pub fn commit(&mut self) -> Result<()> {
        self.commit_at(self.next_to_deliver())
    }

    fn commit_at(&mut self, next_seq: u64) -> Result<()> {
        owned_by_this_process(self.client.conn.owner)?;
        if self.durable.is_none() {
            return Err(Error::invalid(
                "commit is for durable subscriptions (start durable=NAME)",
            ));
        }
        self.client
            .conn
            .call(&Request::SubscriberCommit {
                topic: self.topic.clone(),
                topic_id: self.reader.segment().geometry().salt,
                slot: self.slot,
                next_seq,
            })
            .map(drop)
    }

    /// As [`commit`](Self::commit), but only up to `next_seq`: every message
    /// before it is done with, those from it on come again to the next
    /// subscriber of this name. For a subscriber that hands messages on and
    /// learns later which of them arrived (the daemon's bridge: what the
    /// remote broker acknowledged). `Invalid` past what was delivered.
    pub fn commit_to(&mut self, next_seq: u64) -> Result<()> {
        if next_seq > self.next_to_deliver() {
            return Err(Error::invalid(format!(
                "commit of seq {next_seq}: only messages before {} were delivered",
                self.next_to_deliver()
            )));
        }
        self.commit_at(next_seq)
    }

    /// Passes over the ring's messages before a start the log did not reach
    /// (published before this subscriber joined, not yet logged then),
    /// neither delivered nor lost, up to the first at or after it.
    fn pass_before_start(&mut self, deadline: &Deadline) -> Result<()> {
        while let Some(start) = self.ring_start.clone() {
            let rec = self.reader.next(deadline)?;
            // The first message this start reaches: the ring's after it all count.
            if start.reached_by(rec.seq, rec.timestamp_ns, false) {
                self.ring_start = None;
            } else {
                self.reader.pass(&rec, false);
            }
        }
        Ok(())
    }
}

/// The position a view from the log (not the ring) carries.
const HISTORY: u64 = u64::MAX;

impl Subscriber {
    /// Carries on after the daemon died or the topic was deleted, as
    /// [`Publisher::reopen`] does: a new connection, the topic made again if
    /// it does not exist, and a new subscriber with this one's configuration,
    /// reading from the topic's tail as it is now (what was published while
    /// no daemon ran is gone; the counts start again from zero). An
    /// outstanding view is dropped. On error the handle is left as it was.
    pub fn reopen(&mut self) -> Result<()> {
        let client = self.client.reconnect()?;
        client.ensure_topic(&self.topic, self.reader.geometry())?;
        let cfg = SubscriberConfig {
            wait: self.reader.wait,
            abandon_timeout: self.reader.abandon_timeout,
            delivery: self.delivery(),
            start: Start::Latest,
            fill_gaps: self.fill_gaps,
        };
        let fresh = client.subscriber(&self.topic, &cfg)?;
        self.held = None;
        *self = fresh;
        Ok(())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if crate::sys::forked_since(self.client.conn.owner) {
            self.reader.forget_slot();
            return;
        }
        // Leave the slot in shared memory first: once the daemon has it back
        // it may give it to another subscriber, whose registration we must not wipe.
        self.reader.leave_slot();
        let _ = self.client.conn.call(&Request::SubscriberClose {
            topic: self.topic.clone(),
            slot: self.slot,
            topic_id: self.reader.segment().geometry().salt,
        });
    }
}

/// The request that gives back subscriber slot `slot` of whatever incarnation
/// of `topic` is current (`topic_id` 0: used right after the open).
fn subscriber_close(topic: &str, slot: u32) -> Request {
    Request::SubscriberClose {
        topic: topic.into(),
        slot,
        topic_id: 0,
    }
}
