//! The requester's side of the admin pipe (what `aether-cli` uses): a
//! private reply FIFO, one request line, one reply read with a deadline.

use super::{pipe_path, Command, Reply, Request, MAX_REQUEST};
use aether::sys::poll_one;
use aether::{Error, Result, Status};
use nix::fcntl::OFlag;
use nix::poll::PollFlags;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::Mode;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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

/// A private directory with the reply FIFO, removed on drop. Named
/// `cli.<pid>.<random>` next to the admin pipe, so that the daemon can remove
/// the ones whose process died without cleaning up (SIGKILL).
struct ReplyFifo {
    dir: PathBuf,
    fifo: PathBuf,
}

impl ReplyFifo {
    fn create(next_to: &Path) -> Result<ReplyFifo> {
        let parent = next_to
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = parent.join(format!(
            "cli.{}.{:08x}",
            std::process::id(),
            aether::sys::random_u64() as u32
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(&format!("create {}", dir.display()), e))?;
        let fifo = dir.join("reply");
        if let Err(e) = mkfifo(&fifo, 0o600) {
            let _ = std::fs::remove_dir(&dir);
            return Err(Error::io("mkfifo", e));
        }
        let made = ReplyFifo { dir, fifo };
        // Root administering a daemon of another user: that user must be able
        // to reach and open the FIFO, so it gets them (root reads it anyway).
        if nix::unistd::geteuid().is_root() {
            if let Ok(owner) = std::fs::symlink_metadata(next_to).map(|m| m.uid()) {
                if owner != 0 {
                    for p in [&made.dir, &made.fifo] {
                        std::os::unix::fs::lchown(p, Some(owner), None)
                            .map_err(|e| Error::io(&format!("chown {} to uid {owner}", p.display()), e))?;
                    }
                }
            }
        }
        Ok(made)
    }
}

use std::os::unix::fs::DirBuilderExt;

impl Drop for ReplyFifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.fifo);
        let _ = std::fs::remove_dir(&self.dir);
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
    match std::fs::symlink_metadata(&pipe) {
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
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_daemon()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Error::new(
                Status::Permission,
                format!("permission denied on the admin pipe {}", pipe.display()),
            ))
        }
        Err(e) => return Err(Error::io(&format!("stat {}", pipe.display()), e)),
    }
    let reply_fifo = ReplyFifo::create(&pipe)?;
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
            return Err(Error::new(
                Status::Timeout,
                format!("aetherd did not answer within {timeout:?} (it may be stopped or overloaded)"),
            ));
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
