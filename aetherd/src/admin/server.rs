//! The admin reader thread (`aetherd-admin`): serves requests from the named
//! pipe next to the socket (see `crate::admin` for the format). A request is
//! served only when its reply FIFO, in the reply directory, can be opened:
//! the FIFO's owner is the requester, whose `monitor` or `admin` right is
//! checked before anything runs. Every request is validated; a bad or
//! refused one gets an error reply saying why and disturbs nobody else.
//! Replies go to FIFOs opened non-blocking and without following symlinks,
//! with a bounded wait, so a requester that vanished can never hang this
//! thread.

use crate::access::{self, Identity};
use crate::admin::{self, Command, Reply};
use crate::config::Action;
use crate::requests;
use crate::state::{not_found, State};
use aether::segment::{Fsync, Policy, TopicParams};
use aether::sys::poll_one;
use aether::{Error, Result, Status};
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a reply may take to write before the requester is given up on.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Creates the admin FIFO (mode 0600) at `path`, replacing a stale one, and
/// opens it read-write: from then on writers never get ENXIO ("no reader"),
/// even before the admin thread runs, and never make it see EOF.
pub(crate) fn create_pipe(path: &Path) -> Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    admin::client::mkfifo(path, 0o600).map_err(|e| Error::io(&format!("mkfifo {}", path.display()), e))?;
    admin::client::open_fd(path, libc::O_RDWR | libc::O_NOFOLLOW).map_err(|e| {
        let _ = std::fs::remove_file(path);
        Error::io(&format!("open {}", path.display()), e)
    })
}

/// Creates the reply directory (mode 0700 until [`crate::access::set_socket_permissions`]
/// shares it), replacing a stale one and whatever it held.
pub(crate) fn create_replies_dir(path: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(path);
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(&format!("create {}", path.display()), e))
}

/// Reads requests from the pipe (`fd`, from [`create_pipe`]) forever.
pub(crate) fn run(state: &Mutex<State>, fd: OwnedFd, pipe: &Path, socket: &Path) {
    let mut file = std::fs::File::from(fd);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; admin::MAX_REQUEST * 4];
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("admin pipe: {e}");
                return;
            }
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            serve_line(state, pipe, socket, &line[..line.len() - 1]);
        }
        if pending.len() > admin::MAX_REQUEST {
            log::warn!("admin pipe: discarding {} bytes without a newline", pending.len());
            pending.clear();
        }
    }
}

fn serve_line(state: &Mutex<State>, pipe: &Path, socket: &Path, line: &[u8]) {
    if line.len() > admin::MAX_REQUEST {
        log::warn!(
            "admin pipe: request of {} bytes refused (limit {})",
            line.len(),
            admin::MAX_REQUEST
        );
        return;
    }
    let (reply_to, req) = admin::parse_request(line);
    // Nothing runs for a requester who cannot be answered: its identity is its FIFO's owner.
    let Some(reply) = ReplyTo::open(socket, &reply_to) else {
        return;
    };
    let who = Identity::of_owner(reply.uid, reply.gid);
    let cmd = req.and_then(|r| r.command());
    let outcome = cmd.as_ref().map_err(Clone::clone).and_then(|cmd| {
        let (action, topic) = cmd.right();
        let allowed = access::authorize(&state.lock().expect("state lock").config, &who, action, topic);
        if let Err(e) = allowed {
            log::info!("admin: {cmd} refused: {}", e.message);
            return Err(Error::new(
                Status::Permission,
                format!("{} (`{cmd}` needs the {} right)", e.message, action_name(action)),
            ));
        }
        match action {
            Action::Monitor => log::debug!("admin: uid {} asks for {cmd}", who.cred.uid),
            _ => log::info!("admin: uid {} runs {cmd}", who.cred.uid),
        }
        execute(state, socket, pipe, cmd)
    });
    let ok = outcome.is_ok();
    reply.send(&match outcome {
        Ok(v) => Reply::ok(v),
        Err(e) => Reply::err(&e),
    });
    // A drain acts after the requester has its answer, through the same
    // signal path an operator uses (the main thread takes it with sigwait).
    if ok && matches!(cmd, Ok(Command::Drain)) {
        let _ = kill(Pid::this(), Signal::SIGTERM);
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Publish => "publish",
        Action::Subscribe => "subscribe",
        Action::Admin => "admin",
        Action::Monitor => "monitor",
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::new(Status::Internal, e.to_string()))
}

fn execute(state: &Mutex<State>, socket: &Path, pipe: &Path, cmd: &Command) -> Result<serde_json::Value> {
    let mut s = state.lock().expect("state lock");
    match cmd {
        Command::Status => {
            let st = crate::stats::collect(&s, socket);
            let mut v = to_json(&st.daemon)?;
            v["admin_pipe"] = pipe.display().to_string().into();
            if let Some(b) = &st.bridge {
                v["bridge"] = to_json(b)?;
            }
            Ok(v)
        }
        Command::Topics => to_json(&crate::stats::collect(&s, socket).topics),
        Command::Subscribers { topic } => {
            if let Some(t) = topic {
                if !s.topics.contains_key(t) {
                    return Err(not_found(t));
                }
            }
            let subs = crate::stats::collect(&s, socket).subscribers;
            to_json(
                &subs
                    .into_iter()
                    .filter(|x| topic.as_ref().is_none_or(|t| &x.topic == t))
                    .collect::<Vec<_>>(),
            )
        }
        Command::Stats => to_json(&crate::stats::collect(&s, socket)),
        Command::Create {
            topic,
            policy,
            ring_size,
            max_message,
            fsync,
            huge_pages,
            retain_bytes,
            retain_seconds,
        } => {
            let mut p: TopicParams = s.config.topic_defaults;
            p.huge_pages = huge_pages.unwrap_or(p.huge_pages);
            (p.retain_bytes, p.retain_seconds) = (*retain_bytes, *retain_seconds);
            if let Some(f) = fsync {
                p.wal = Some(Fsync::parse(f).ok_or_else(|| {
                    Error::invalid(format!("unknown fsync policy {f:?} (never, always or interval=MS)"))
                })?);
                // A durable topic is reliable unless the request says lossy.
                p.policy = Policy::Reliable;
            }
            if let Some(pol) = policy {
                p.policy = Policy::from_name(pol)
                    .ok_or_else(|| Error::invalid(format!("unknown policy {pol:?} (lossy or reliable)")))?;
            }
            p.ring_size = ring_size.unwrap_or(p.ring_size);
            p.max_message = max_message.unwrap_or(p.max_message);
            requests::create_topic(&mut s, topic, &p, None)?;
            Ok(serde_json::json!({ "created": topic }))
        }
        Command::Delete { topic } => {
            requests::delete_topic(&mut s, topic)?;
            Ok(serde_json::json!({ "deleted": topic }))
        }
        Command::Kick { client } => {
            let c = s
                .clients
                .get(client)
                .ok_or_else(|| Error::new(Status::NotFound, format!("no client {client}")))?;
            // Its thread sees the connection end and frees what it held.
            c.conn.shutdown();
            log::info!("client {client} (pid {}) kicked by an admin", c.who.cred.pid);
            Ok(serde_json::json!({ "kicked": client }))
        }
        Command::Drain => Ok(serde_json::json!({ "draining": true })),
        Command::Reload => {
            // Done here, so that the requester gets the verdict.
            drop(s);
            match crate::broker::reload(state) {
                Ok(ignored) => Ok(serde_json::json!({ "reloaded": true, "ignored": ignored })),
                Err(e) => Err(Error::new(
                    Status::Invalid,
                    format!("the configuration was not reloaded: {e}"),
                )),
            }
        }
    }
}

/// A requester's reply FIFO, open for writing, and who made it.
struct ReplyTo {
    fd: OwnedFd,
    path: String,
    uid: u32,
    gid: u32,
}

impl ReplyTo {
    /// Opens `path` if it names a FIFO in the reply directory (the daemon
    /// writes nowhere else): non-blocking (ENXIO means the requester is
    /// gone) and never through a symlink. Its owner and group are read from
    /// the open descriptor, so a file swapped in after the check cannot lend
    /// its owner's identity.
    fn open(socket: &Path, path: &str) -> Option<ReplyTo> {
        let p = Path::new(path);
        let in_place = p.parent() == Some(admin::replies_dir(socket).as_path())
            && p.file_name().and_then(|n| n.to_str()).is_some_and(admin::is_reply_name);
        if !in_place {
            log::info!(
                "admin pipe: request ignored: reply path {path:?} is not a FIFO named cli.<pid>.<32 hex digits> in {}",
                admin::replies_dir(socket).display()
            );
            return None;
        }
        let fd = match admin::client::open_fd(p, libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) => {
                log::info!("admin pipe: request ignored: cannot open its reply FIFO {path}: {e}");
                return None;
            }
        };
        let st = match nix::sys::stat::fstat(&fd) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFIFO => st,
            _ => {
                log::info!("admin pipe: request ignored: {path} is not a FIFO");
                return None;
            }
        };
        Some(ReplyTo {
            fd,
            path: path.to_string(),
            uid: st.st_uid,
            gid: st.st_gid,
        })
    }

    fn send(&self, reply: &Reply) {
        let body = serde_json::to_vec(reply).expect("reply serialises");
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut off = 0;
        while off < body.len() {
            match nix::unistd::write(&self.fd, &body[off..]) {
                Ok(n) if n > 0 => {
                    off += n;
                    continue;
                }
                Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(e) => {
                    log::debug!("admin pipe: reply to {} failed: {e}", self.path);
                    return;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::info!("admin pipe: requester {} stopped reading; reply abandoned", self.path);
                return;
            }
            poll_one(self.fd.as_fd(), PollFlags::POLLOUT, left.as_millis().min(100) as i32);
        }
    }
}

/// Removes the reply FIFOs (`cli.<pid>.*` in the reply directory) whose
/// process has died.
pub(crate) fn sweep_dead_requesters(socket: &Path) {
    let Ok(entries) = std::fs::read_dir(admin::replies_dir(socket)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cli."))
            .and_then(|r| r.split('.').next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        // No signal: only whether the process exists.
        if pid > 0 && kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
