//! Unix-domain SOCK_SEQPACKET sockets: message boundaries are kept, a file
//! descriptor travels with SCM_RIGHTS, and the peer is identified by
//! SO_PEERCRED. The calls are `nix`'s; this module adds the retry on EINTR,
//! the descriptor bounds and ownership of what arrives.

use nix::errno::Errno;
use nix::sys::socket::{self as sock, sockopt, AddressFamily, Backlog, ControlMessage, ControlMessageOwned};
use nix::sys::socket::{MsgFlags, SockFlag, SockType, UnixAddr};
use nix::sys::time::TimeVal;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// Credentials of the process at the other end of a connection.
#[derive(Clone, Copy, Debug)]
pub struct PeerCred {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Most descriptors [`SeqPacket::send_fds`] attaches to one packet.
pub const MAX_FDS: usize = crate::protocol::MAX_CURSORS;

/// The most descriptors Linux passes in one message (`SCM_MAX_FD`). The
/// receive buffer has room for all of them, so that a peer sending too many
/// never truncates the control data: every descriptor that arrives is taken
/// into ownership (and closed), none leaks.
const SCM_MAX_FD: usize = 253;

pub struct SeqPacket {
    fd: OwnedFd,
}

fn address(path: &Path) -> io::Result<UnixAddr> {
    let len = path.as_os_str().len();
    // sun_path holds 108 bytes including the terminating NUL.
    if len == 0 || len >= 108 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path must be 1..107 bytes without NUL: {}", path.display()),
        ));
    }
    UnixAddr::new(path).map_err(io::Error::from)
}

fn socket() -> io::Result<OwnedFd> {
    Ok(sock::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// Calls `f` until it does not fail with EINTR.
fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

impl SeqPacket {
    /// Binds and listens at `path` (which must not exist).
    pub fn listen(path: &Path) -> io::Result<SeqPacket> {
        let addr = address(path)?;
        let fd = socket()?;
        sock::bind(fd.as_raw_fd(), &addr)?;
        sock::listen(&fd, Backlog::new(128)?)?;
        Ok(SeqPacket { fd })
    }

    /// Takes over a socket another process bound and listens on (systemd's
    /// socket activation), after checking it is what `listen` would have
    /// made: AF_UNIX, SOCK_SEQPACKET, listening, bound to `path`.
    pub fn adopt_listener(fd: OwnedFd, path: &Path) -> io::Result<SeqPacket> {
        let wrong = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        if sock::getsockopt(&fd, sockopt::SockType)? != SockType::SeqPacket {
            return Err(wrong(
                "the socket is not SOCK_SEQPACKET (ListenSequentialPacket=)".into(),
            ));
        }
        if !sock::getsockopt(&fd, sockopt::AcceptConn)? {
            return Err(wrong("the socket is not listening".into()));
        }
        let bound: UnixAddr = sock::getsockname(fd.as_raw_fd())?;
        if bound.path() != Some(path) {
            return Err(wrong(format!(
                "the socket is bound to {}, not to {}",
                bound.path().map_or("(no path)".into(), |p| p.display().to_string()),
                path.display()
            )));
        }
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
        Ok(SeqPacket { fd })
    }

    pub fn connect(path: &Path) -> io::Result<SeqPacket> {
        let addr = address(path)?;
        let fd = socket()?;
        retry(|| sock::connect(fd.as_raw_fd(), &addr))?;
        Ok(SeqPacket { fd })
    }

    pub fn accept(&self) -> io::Result<SeqPacket> {
        let fd = retry(|| sock::accept4(self.fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC))?;
        // SAFETY: accept4 just returned this descriptor; we are its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SeqPacket { fd })
    }

    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        let c = sock::getsockopt(&self.fd, sockopt::PeerCredentials)?;
        Ok(PeerCred {
            pid: c.pid() as u32,
            uid: c.uid(),
            gid: c.gid(),
        })
    }

    /// Shuts both directions down: a thread blocked in accept, send or receive
    /// on this socket returns, and the peer sees the end of the connection.
    pub fn shutdown(&self) {
        let _ = sock::shutdown(self.fd.as_raw_fd(), sock::Shutdown::Both);
    }

    /// Bounds every later send and receive by `timeout` (`None`: no bound).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let tv = TimeVal::from(libc::timeval {
            tv_sec: timeout.map_or(0, |d| d.as_secs() as libc::time_t),
            tv_usec: timeout.map_or(0, |d| d.subsec_micros() as libc::suseconds_t),
        });
        sock::setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)?;
        sock::setsockopt(&self.fd, sockopt::SendTimeout, &tv)?;
        Ok(())
    }

    /// Sends one packet, with `fd` attached as SCM_RIGHTS when given.
    pub fn send(&self, data: &[u8], fd: Option<RawFd>) -> io::Result<()> {
        self.send_fds(data, fd.as_slice())
    }

    /// Sends one packet with the descriptors `fds` (at most [`MAX_FDS`]) attached
    /// as one SCM_RIGHTS message, in order.
    pub fn send_fds(&self, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
        if fds.len() > MAX_FDS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"));
        }
        let iov = [IoSlice::new(data)];
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        let n = retry(|| sock::sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None))?;
        if n != data.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short send on seqpacket"));
        }
        Ok(())
    }

    /// Receives one packet into `buf`. Returns its length (0 means the peer
    /// closed) and the descriptor it carried, if any. A packet longer than
    /// `buf` is reported as `InvalidData` (it was truncated).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
        let (n, mut fds) = self.recv_fds(buf, 1)?;
        Ok((n, fds.pop()))
    }

    /// Like [`recv`](Self::recv), accepting up to `max` descriptors (in the
    /// order sent). More than `max` is `InvalidData`; all of them are closed.
    pub fn recv_fds(&self, buf: &mut [u8], max: usize) -> io::Result<(usize, Vec<OwnedFd>)> {
        let mut cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
        let mut iov = [IoSliceMut::new(buf)];
        let flags = MsgFlags::MSG_CMSG_CLOEXEC;
        let msg = loop {
            match sock::recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
                Err(Errno::EINTR) => continue,
                r => break r?,
            }
        };
        // Take ownership of every descriptor received first, so none leaks on error.
        let mut fds = Vec::new();
        let cmsgs = msg
            .cmsgs()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "control data truncated"))?;
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(received) = c {
                // SAFETY: the kernel just installed these descriptors in this
                // process for us; nothing else knows them.
                fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "packet truncated"));
        }
        if fds.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {max} descriptors in a packet"),
            ));
        }
        Ok((msg.bytes, fds))
    }
}

impl AsRawFd for SeqPacket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
