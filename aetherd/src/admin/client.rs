//! The requester's side of the admin pipe (what `aether-cli` uses): a
//! private reply FIFO, one request line, one reply read with a deadline.

use super::{pipe_path, replies_dir, Command, Reply, Request, MAX_REQUEST, VERSION};
use aether::sys::poll_one;
use aether::{Error, Result, Status};
use nix::fcntl::OFlag;
use nix::poll::PollFlags;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::Mode;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set from a SIGINT/SIGTERM handler: a waiting [`call`] gives up, removes its FIFO and returns `Shutdown`.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM interrupt a waiting [`call`] (which then removes
/// its reply FIFO) instead of killing the process outright.
pub fn interrupt_on_signals() {
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// The reply FIFO, removed on drop: `cli.<pid>.<128 random bits>` in the
/// daemon's reply directory, which others cannot list, so that nobody else
/// can name it in a request of theirs (the daemon takes its owner for the
/// requester). The pid lets the daemon remove the FIFOs of requesters that
/// died without cleaning up (SIGKILL).
struct ReplyFifo {
    fifo: PathBuf,
}

impl ReplyFifo {
    /// `daemon_uid`: the owner of the admin pipe, who must own the reply directory too.
    fn create(socket: &Path, daemon_uid: u32) -> Result<ReplyFifo> {
        let dir = replies_dir(socket);
        let meta = match std::fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(
                    Status::Unavailable,
                    format!(
                        "no reply directory {} next to the admin pipe (aetherd stopped, or it is older than \
                         admin protocol {VERSION})",
                        dir.display()
                    ),
                ))
            }
            Err(e) => return Err(Error::io(&format!("stat {}", dir.display()), e)),
        };
        // Shared with others, it must be sticky, or they could swap our FIFO for theirs.
        let mode = meta.mode() & 0o7777;
        if !meta.is_dir() || meta.uid() != daemon_uid || (mode & 0o022 != 0 && mode & 0o1000 == 0) {
            return Err(Error::new(
                Status::Permission,
                format!(
                    "refusing the reply directory {}: not a directory of the admin pipe's owner (uid {daemon_uid}) \
                     that others cannot tamper with (uid {}, mode {mode:04o})",
                    dir.display(),
                    meta.uid()
                ),
            ));
        }
        let fifo = dir.join(format!(
            "cli.{}.{:016x}{:016x}",
            std::process::id(),
            aether::sys::random_u64(),
            aether::sys::random_u64()
        ));
        if let Err(e) = mkfifo(&fifo, 0o600) {
            return Err(match e.kind() {
                std::io::ErrorKind::PermissionDenied => Error::new(
                    Status::Permission,
                    format!(
                        "permission denied making a reply FIFO in {}: uid {} may not use this broker's admin pipe \
                         (it is open to the daemon's user, root, and whoever its socket_mode and socket_group \
                         let connect)",
                        dir.display(),
                        nix::unistd::geteuid()
                    ),
                ),
                _ => Error::io(&format!("mkfifo {}", fifo.display()), e),
            });
        }
        let made = ReplyFifo { fifo };
        // The FIFO's group counts as one of ours: when we are in the reply
        // directory's group (the daemon's socket_group), give it that one, so
        // that a rule for that group sees us even where the group database
        // does not list us (groups given by setgroups, SupplementaryGroups=).
        let dir_gid = nix::unistd::Gid::from_raw(meta.gid());
        if dir_gid != nix::unistd::getegid() && nix::unistd::getgroups().is_ok_and(|g| g.contains(&dir_gid)) {
            let _ = std::os::unix::fs::lchown(&made.fifo, None, Some(meta.gid()));
        }
        // The daemon must open it for writing. Its name is the secret: the
        // directory cannot be listed, so others cannot find it.
        if daemon_uid != nix::unistd::geteuid().as_raw() {
            std::fs::set_permissions(&made.fifo, std::fs::Permissions::from_mode(0o622))
                .map_err(|e| Error::io(&format!("chmod {}", made.fifo.display()), e))?;
        }
        Ok(made)
    }
}

impl Drop for ReplyFifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.fifo);
    }
}

/// Creates a FIFO at `path` with permissions `mode` (for the daemon's pipe too).
pub(crate) fn mkfifo(path: &Path, mode: libc::mode_t) -> std::io::Result<()> {
    Ok(nix::unistd::mkfifo(path, Mode::from_bits_truncate(mode))?)
}

/// Opens `path` (close-on-exec) with `flags` (for the daemon's pipe too).
pub(crate) fn open_fd(path: &Path, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_CLOEXEC;
    Ok(nix::fcntl::open(path, flags, Mode::empty())?)
}

/// Why the daemon did not answer, as far as the requester can tell: whether
/// its socket still accepts connections (a daemon killed outright leaves its
/// socket and pipe behind), and whether it had begun to answer.
fn silence(socket: &Path, timeout: Duration, began: bool) -> String {
    if began {
        return format!("aetherd began to answer but did not finish within {timeout:?}");
    }
    match aether::sys::uds::SeqPacket::connect(socket) {
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => format!(
            "aetherd did not answer within {timeout:?}: it is not running (nothing accepts connections on {}; \
             its socket and admin pipe were left by a daemon that died)",
            socket.display()
        ),
        Ok(_) => format!(
            "aetherd did not answer within {timeout:?}: it is running (its socket accepts connections) but its \
             admin thread did not reply (overloaded or stuck: see its log)"
        ),
        Err(_) => format!("aetherd did not answer within {timeout:?} (it may be stopped or overloaded)"),
    }
}

/// Sends `cmd` to the daemon behind `socket` and waits up to `timeout` for its reply.
pub fn call(socket: &Path, cmd: Command, timeout: Duration) -> Result<serde_json::Value> {
    let pipe = pipe_path(socket);
    let no_daemon = || {
        Error::new(
            Status::Unavailable,
            format!(
                "no aetherd admin pipe at {} (is aetherd running on {}?)",
                pipe.display(),
                socket.display()
            ),
        )
    };
    let daemon_uid = match std::fs::symlink_metadata(&pipe) {
        // The request goes only to a FIFO of a daemon we trust (as the
        // client's connect checks the socket's listener).
        Ok(m) if !m.file_type().is_fifo() || !aether::paths::trusted_daemon(socket, m.uid()) => {
            return Err(Error::new(
                Status::Permission,
                format!(
                    "refusing the admin pipe {}: not a FIFO made by this user, root, or the owner of its \
                     directory (uid {})",
                    pipe.display(),
                    m.uid()
                ),
            ))
        }
        Ok(m) => m.uid(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_daemon()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Error::new(
                Status::Permission,
                format!("permission denied on the admin pipe {}", pipe.display()),
            ))
        }
        Err(e) => return Err(Error::io(&format!("stat {}", pipe.display()), e)),
    };
    let reply_fifo = ReplyFifo::create(socket, daemon_uid)?;
    // Open our end first (non-blocking), so the daemon's open finds a reader.
    let rd =
        open_fd(&reply_fifo.fifo, libc::O_RDONLY | libc::O_NONBLOCK).map_err(|e| Error::io("open reply FIFO", e))?;
    let req = Request::new(reply_fifo.fifo.display().to_string(), cmd);
    let mut line = serde_json::to_vec(&req).map_err(|e| Error::invalid(e.to_string()))?;
    line.push(b'\n');
    if line.len() > MAX_REQUEST {
        return Err(Error::new(Status::TooLarge, "admin request longer than PIPE_BUF"));
    }
    let wr = open_fd(&pipe, libc::O_WRONLY | libc::O_NONBLOCK).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENXIO) => no_daemon(),
        Some(libc::EACCES) | Some(libc::EPERM) => Error::new(
            Status::Permission,
            format!("permission denied on the admin pipe {}", pipe.display()),
        ),
        _ => Error::io(&format!("open {}", pipe.display()), e),
    })?;
    // One write of at most PIPE_BUF bytes is atomic: all of it or nothing.
    if nix::unistd::write(&wr, &line) != Ok(line.len()) {
        return Err(Error::new(
            Status::Timeout,
            "the admin pipe is full: aetherd is not reading it",
        ));
    }
    drop(wr);
    // Read until the daemon closes its end (EOF), up to the deadline.
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut file = std::fs::File::from(rd);
    let mut got_writer = false;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(Error::new(Status::Shutdown, "interrupted"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::new(Status::Timeout, silence(socket, timeout, got_writer)));
        }
        // Short slices, so that an interrupt is noticed quickly.
        let revents = poll_one(file.as_fd(), PollFlags::POLLIN, left.as_millis().min(50) as i32);
        let mut buf = [0u8; 8192];
        match file.read(&mut buf) {
            Ok(0) if got_writer || revents.contains(PollFlags::POLLHUP) => break,
            Ok(0) => continue, // no writer has opened the FIFO yet
            Ok(n) => {
                got_writer = true;
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::io("read reply", e)),
        }
    }
    let reply: Reply =
        serde_json::from_slice(&out).map_err(|e| Error::protocol(format!("malformed reply from aetherd: {e}")))?;
    if reply.ok {
        Ok(reply.result.unwrap_or(serde_json::Value::Null))
    } else {
        let status = reply.status.and_then(Status::from_code).unwrap_or(Status::Internal);
        Err(Error::new(status, reply.error.unwrap_or_default()))
    }
}
