//! The admin reader thread (`aetherd-admin`): serves requests from the named
//! pipe next to the socket (see `crate::admin` for the format). Every request
//! is validated; a bad one gets an error reply (when it names a usable reply
//! FIFO) and disturbs nobody else. Replies go to FIFOs opened non-blocking
//! and without following symlinks, with a bounded wait, so a requester that
//! vanished can never hang this thread.

use crate::admin::{self, Command, Reply, Request};
use crate::requests;
use crate::state::{not_found, State};
use aether::segment::{Policy, TopicParams};
use aether::sys::poll_one;
use aether::{Error, Result, Status};
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
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
    let req: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            // Answer if the junk at least names a reply FIFO we may write to.
            let reply_to = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("reply").and_then(|r| r.as_str()).map(str::to_string));
            log::info!("admin pipe: malformed request: {e}");
            if let Some(r) = reply_to {
                send_reply(
                    pipe,
                    &r,
                    &Reply::err(&Error::protocol(format!("malformed admin request: {e}"))),
                );
            }
            return;
        }
    };
    let cmd = req.command();
    let reply = match &cmd {
        Ok(cmd) => {
            log::debug!("admin: {cmd}");
            match execute(state, socket, pipe, cmd) {
                Ok(v) => Reply::ok(v),
                Err(e) => Reply::err(&e),
            }
        }
        Err(e) => Reply::err(e),
    };
    send_reply(pipe, &req.reply, &reply);
    // A drain acts after the requester has its answer, through the same
    // signal path an operator uses (the main thread takes it with sigwait).
    if reply.ok && matches!(cmd, Ok(Command::Drain)) {
        let _ = kill(Pid::this(), Signal::SIGTERM);
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
        } => {
            let mut p: TopicParams = s.config.topic_defaults;
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

/// Whether `reply` is a FIFO in a `cli.*` directory next to the admin pipe:
/// the daemon writes nowhere else.
fn reply_path_ok(pipe: &Path, reply: &Path) -> bool {
    let dir = reply.parent();
    let in_place = reply.is_absolute()
        && dir.and_then(Path::parent) == pipe.parent()
        && dir
            .and_then(Path::file_name)
            .is_some_and(|n| n.as_bytes().starts_with(b"cli."))
        && !reply.components().any(|c| matches!(c, std::path::Component::ParentDir));
    in_place && std::fs::symlink_metadata(reply).is_ok_and(|m| m.file_type().is_fifo())
}

fn send_reply(pipe: &Path, reply_to: &str, reply: &Reply) {
    let path = PathBuf::from(reply_to);
    if !reply_path_ok(pipe, &path) {
        log::info!(
            "admin pipe: reply path {reply_to:?} refused (must be a FIFO in a cli.* directory next to the pipe)"
        );
        return;
    }
    // Non-blocking: ENXIO means the requester is gone; no symlinks.
    let fd = match admin::client::open_fd(&path, libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(e) => {
            log::debug!("admin pipe: requester gone ({reply_to}): {e}");
            return;
        }
    };
    let body = serde_json::to_vec(reply).expect("reply serialises");
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut off = 0;
    while off < body.len() {
        match nix::unistd::write(&fd, &body[off..]) {
            Ok(n) if n > 0 => {
                off += n;
                continue;
            }
            Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(e) => {
                log::debug!("admin pipe: reply to {reply_to} failed: {e}");
                return;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::info!("admin pipe: requester {reply_to} stopped reading; reply abandoned");
            return;
        }
        poll_one(fd.as_fd(), PollFlags::POLLOUT, left.as_millis().min(100) as i32);
    }
}

/// Removes reply directories (`cli.<pid>.*` next to the pipe) whose process has died.
pub(crate) fn sweep_dead_requesters(pipe: &Path) {
    let Some(dir) = pipe.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
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
        let dead = kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH);
        if dead {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
