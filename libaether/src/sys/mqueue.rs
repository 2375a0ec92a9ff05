//! POSIX message queues (`mq_open`). On Linux a queue descriptor (`mqd_t`) is
//! a file descriptor: it lives in an `OwnedFd`, travels over SCM_RIGHTS and
//! can be polled (readable while a message is queued, writable while there is
//! room). The kernel opens every queue descriptor close-on-exec. Opening and
//! unlinking are `nix`'s; the timed calls and `mq_getattr` on a borrowed
//! descriptor, which `nix` lacks, are made here.

use super::shm::cname;
use nix::mqueue::{mq_open, mq_unlink, MQ_OFlag, MqAttr, MqdT};
use nix::poll::PollFlags;
use nix::sys::stat::Mode;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

/// Where the kernel publishes the per-queue limits for unprivileged creators.
const MSG_MAX_FILE: &str = "/proc/sys/fs/mqueue/msg_max";
const MSGSIZE_MAX_FILE: &str = "/proc/sys/fs/mqueue/msgsize_max";

/// A queue's attributes (`struct mq_attr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Most messages the queue holds.
    pub maxmsg: usize,
    /// Largest message, in bytes; receive buffers must be at least this long.
    pub msgsize: usize,
    /// Messages queued now.
    pub curmsgs: usize,
    /// Whether this descriptor is non-blocking (O_NONBLOCK).
    pub nonblocking: bool,
}

/// Reads a number from a /proc file, or `fallback`.
fn proc_limit(path: &str, fallback: usize) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(fallback)
}

/// The system's per-queue limits `(msg_max, msgsize_max)` (defaults 10 and 8192).
pub fn system_limits() -> (usize, usize) {
    (proc_limit(MSG_MAX_FILE, 10), proc_limit(MSGSIZE_MAX_FILE, 8192))
}

/// Creates the queue `name` (must start with '/'), mode 0600, holding `maxmsg`
/// messages of at most `msgsize` bytes, and opens it with `oflag`
/// (`O_RDONLY`/`O_WRONLY`/`O_RDWR`, optionally `O_NONBLOCK`).
/// Fails with `AlreadyExists` if the name is taken.
pub fn create(name: &str, oflag: i32, maxmsg: usize, msgsize: usize) -> io::Result<OwnedFd> {
    let attr = MqAttr::new(0, maxmsg as _, msgsize as _, 0);
    let flags = MQ_OFlag::from_bits_truncate(oflag) | MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL;
    owned(mq_open(
        cname(name)?.as_c_str(),
        flags,
        Mode::from_bits_truncate(0o600),
        Some(&attr),
    )?)
}

/// Opens the existing queue `name` with `oflag`.
pub fn open(name: &str, oflag: i32) -> io::Result<OwnedFd> {
    owned(mq_open(
        cname(name)?.as_c_str(),
        MQ_OFlag::from_bits_truncate(oflag),
        Mode::empty(),
        None,
    )?)
}

/// A queue descriptor as the `OwnedFd` it is on Linux.
fn owned(q: MqdT) -> io::Result<OwnedFd> {
    // SAFETY: mq_open just returned this descriptor; `into_raw_fd` gives up
    // nix's ownership, so the `OwnedFd` is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(q.into_raw_fd()) })
}

/// Removes the name `name`; open descriptors stay valid, and the queue goes
/// away with the last of them.
pub fn unlink(name: &str) -> io::Result<()> {
    Ok(mq_unlink(cname(name)?.as_c_str())?)
}

/// Absolute `CLOCK_REALTIME` time `after` from now, as the timed calls want it.
fn abs_realtime(after: Duration) -> libc::timespec {
    let at = super::realtime_ns().saturating_add(after.as_nanos().min(u64::MAX as u128) as u64);
    libc::timespec {
        tv_sec: (at / 1_000_000_000) as libc::time_t,
        tv_nsec: (at % 1_000_000_000) as _,
    }
}

/// Sends `msg` with priority 0. On a non-blocking descriptor a full queue is
/// `WouldBlock`; otherwise it waits for room.
pub fn send(fd: BorrowedFd<'_>, msg: &[u8]) -> io::Result<()> {
    timedsend(fd, msg, None)
}

/// Sends `msg` with priority 0, waiting at most `timeout` for room
/// (`None`: as long as it takes). Timing out is `TimedOut`; a full queue on a
/// non-blocking descriptor is `WouldBlock`. `EINTR` is retried.
pub fn timedsend(fd: BorrowedFd<'_>, msg: &[u8], timeout: Option<Duration>) -> io::Result<()> {
    timed(fd, libc::POLLOUT, timeout, |tp| {
        syscall!(mq_timedsend(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0, tp)).map(drop)
    })
}

/// Runs `call` (an `mq_timed*` call given its timespec pointer) until it
/// succeeds, fails for good, or `timeout` passes (`TimedOut`). Timed waits
/// happen in poll() for `events` on the monotonic clock; the call itself is
/// given an expired deadline, so a wall-clock step cannot stretch it. `EINTR`
/// is retried.
fn timed<T>(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    timeout: Option<Duration>,
    mut call: impl FnMut(*const libc::timespec) -> io::Result<T>,
) -> io::Result<T> {
    let deadline = timeout.map(|t| super::monotonic_ns().saturating_add(t.as_nanos().min(u64::MAX as u128) as u64));
    loop {
        let ts = deadline.map(|d| {
            wait_ready(fd, events, d);
            abs_realtime(Duration::ZERO)
        });
        let tp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        match call(tp) {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if e.raw_os_error() == Some(libc::ETIMEDOUT) && deadline.is_some_and(|d| super::monotonic_ns() < d) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits (poll, monotonic) until `fd` reports `events` or the monotonic
/// `deadline` (ns) passes.
fn wait_ready(fd: BorrowedFd<'_>, events: libc::c_short, deadline: u64) {
    let left = deadline.saturating_sub(super::monotonic_ns());
    let ms = left.div_ceil(1_000_000).min(i32::MAX as u64) as i32;
    super::poll_one(fd, PollFlags::from_bits_truncate(events), ms);
}

/// Receives the oldest message into `buf` (at least the queue's msgsize long),
/// waiting for one. Returns its length.
pub fn receive(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    timedreceive(fd, buf, None)
}

/// Receives the oldest message into `buf`, waiting at most `timeout`
/// (`None`: as long as it takes; zero: only if one is queued). Timing out is
/// `TimedOut`; `buf` shorter than the queue's msgsize is `EMSGSIZE`. `EINTR` is retried.
pub fn timedreceive(fd: BorrowedFd<'_>, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
    timed(fd, libc::POLLIN, timeout, |tp| {
        syscall!(mq_timedreceive(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            std::ptr::null_mut(),
            tp
        ))
        .map(|n| n as usize)
    })
}

/// The queue's attributes as seen through `fd`.
pub fn getattr(fd: BorrowedFd<'_>) -> io::Result<Attr> {
    // SAFETY: mq_attr is plain data; all-zero is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    syscall!(mq_getattr(fd.as_raw_fd(), &mut attr))?;
    Ok(Attr {
        maxmsg: attr.mq_maxmsg as usize,
        msgsize: attr.mq_msgsize as usize,
        curmsgs: attr.mq_curmsgs as usize,
        nonblocking: attr.mq_flags & libc::O_NONBLOCK as libc::c_long != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn name(tag: &str) -> String {
        format!(
            "/aether-test.{tag}.{}.{:x}",
            std::process::id(),
            super::super::random_u64()
        )
    }

    #[test]
    fn create_send_receive_unlink() {
        let n = name("rw");
        let w = create(&n, libc::O_WRONLY | libc::O_NONBLOCK, 2, 64).unwrap();
        let r = open(&n, libc::O_RDONLY).unwrap();
        unlink(&n).unwrap();
        assert_eq!(
            create(&n, libc::O_WRONLY, 2, 64).map(drop).map_err(|e| e.kind()),
            Ok(()),
            "the name is free again once unlinked"
        );
        unlink(&n).unwrap();
        let a = getattr(w.as_fd()).unwrap();
        assert_eq!((a.maxmsg, a.msgsize, a.curmsgs, a.nonblocking), (2, 64, 0, true));
        send(w.as_fd(), b"one").unwrap();
        timedsend(w.as_fd(), b"two", Some(Duration::from_millis(10))).unwrap();
        // Full: a non-blocking descriptor says so at once.
        assert_eq!(send(w.as_fd(), b"three").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let mut buf = [0u8; 64];
        let k = receive(r.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..k], b"one");
        let k = timedreceive(r.as_fd(), &mut buf, Some(Duration::ZERO)).unwrap();
        assert_eq!(&buf[..k], b"two");
        let e = timedreceive(r.as_fd(), &mut buf, Some(Duration::from_millis(20))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // A buffer shorter than msgsize is refused by the kernel.
        let e = timedreceive(r.as_fd(), &mut buf[..10], Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
        assert_eq!(
            create(&n, libc::O_RDONLY, 0, 64).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn exclusive_create_and_limits() {
        let n = name("excl");
        let _q = create(&n, libc::O_RDWR, 1, 16).unwrap();
        assert_eq!(
            create(&n, libc::O_RDWR, 1, 16).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        unlink(&n).unwrap();
        assert_eq!(open(&n, libc::O_RDONLY).unwrap_err().kind(), io::ErrorKind::NotFound);
        let (msg_max, msgsize_max) = system_limits();
        assert!(msg_max >= 1 && msgsize_max >= 128, "{msg_max} {msgsize_max}");
    }
}
