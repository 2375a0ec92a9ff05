//! Unix-domain SOCK_SEQPACKET sockets: message boundaries are kept, a file
//! descriptor travels with SCM_RIGHTS, and the peer is identified by SO_PEERCRED.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
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
pub const MAX_FDS: usize = 2;

pub struct SeqPacket {
    fd: OwnedFd,
}

fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path must be 1..{} bytes without NUL: {}",
                addr.sun_path.len() - 1,
                path.display()
            ),
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn socket() -> io::Result<OwnedFd> {
    let fd = syscall!(socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: socket() just returned this descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl SeqPacket {
    /// Binds and listens at `path` (which must not exist).
    pub fn listen(path: &Path) -> io::Result<SeqPacket> {
        let (addr, len) = sockaddr(path)?;
        let fd = socket()?;
        syscall!(bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len))?;
        syscall!(listen(fd.as_raw_fd(), 128))?;
        Ok(SeqPacket { fd })
    }

    pub fn connect(path: &Path) -> io::Result<SeqPacket> {
        let (addr, len) = sockaddr(path)?;
        let fd = socket()?;
        loop {
            match syscall!(connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len)) {
                Ok(_) => return Ok(SeqPacket { fd }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn accept(&self) -> io::Result<SeqPacket> {
        loop {
            match syscall!(accept4(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC
            )) {
                Ok(fd) => {
                    // SAFETY: accept4 just returned this descriptor; we own it.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    return Ok(SeqPacket { fd });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
        syscall!(getsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len
        ))?;
        Ok(PeerCred {
            pid: cred.pid as u32,
            uid: cred.uid,
            gid: cred.gid,
        })
    }

    /// Shuts both directions down: a thread blocked in accept, send or receive
    /// on this socket returns, and the peer sees the end of the connection.
    pub fn shutdown(&self) {
        // SAFETY: shutdown on a socket we own; it touches no memory of ours.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Bounds every later send and receive by `timeout` (`None`: no bound).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let tv = match timeout {
            Some(d) => libc::timeval {
                tv_sec: d.as_secs() as libc::time_t,
                tv_usec: d.subsec_micros() as libc::suseconds_t,
            },
            None => libc::timeval { tv_sec: 0, tv_usec: 0 },
        };
        for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
            syscall!(setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&tv as *const libc::timeval).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t
            ))?;
        }
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
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut cmsg_buf = [0u64; 4]; // room for one cmsghdr + MAX_FDS ints, 8-aligned
                                      // SAFETY: msghdr is plain data; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            let bytes = mem::size_of_val(fds) as u32;
            // SAFETY: CMSG_SPACE is a pure computation.
            let space = unsafe { libc::CMSG_SPACE(bytes) } as usize;
            debug_assert!(space <= mem::size_of_val(&cmsg_buf));
            msg.msg_control = cmsg_buf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            // SAFETY: msg_control points at `space` writable bytes, enough for one
            // header carrying `fds.len()` ints, so CMSG_FIRSTHDR is non-null and in bounds.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(bytes) as _;
                for (i, fd) in fds.iter().enumerate() {
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>().add(i), *fd);
                }
            }
        }
        loop {
            match syscall!(sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)) {
                Ok(n) if n as usize == data.len() => return Ok(()),
                Ok(_) => return Err(io::Error::new(io::ErrorKind::WriteZero, "short send on seqpacket")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
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
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cmsg_buf = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&cmsg_buf) as _;
        let n = loop {
            match syscall!(recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC)) {
                Ok(n) => break n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        // Take ownership of every descriptor received first, so none leaks on error.
        let mut fds = Vec::new();
        // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_* walk only
        // within that buffer and every SCM_RIGHTS payload is an array of ints.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c);
                    let count = ((*c).cmsg_len as usize - (data as usize - c as usize)) / mem::size_of::<RawFd>();
                    for i in 0..count {
                        let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "packet or control data truncated",
            ));
        }
        if fds.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {max} descriptors in a packet"),
            ));
        }
        Ok((n, fds))
    }
}

impl AsRawFd for SeqPacket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
