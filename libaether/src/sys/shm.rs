//! Shared memory: segments are sealed memfds (see [`create_sealed`]); the
//! POSIX shm namespace is only cleaned (`shm_unlink`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `name` as a C string (shm and message-queue names).
pub(super) fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// Removes the name `name`; mappings and descriptors stay valid.
pub fn unlink(name: &str) -> io::Result<()> {
    let c = cname(name)?;
    syscall!(shm_unlink(c.as_ptr())).map(drop)
}

/// Size in bytes of the object behind `fd`.
pub fn size(fd: &OwnedFd) -> io::Result<u64> {
    // SAFETY: zeroed `stat` is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(fstat(fd.as_raw_fd(), &mut st))?;
    Ok(st.st_size as u64)
}

/// Seals that make a segment's size immutable: no process holding the
/// descriptor can shrink it under other processes' mappings (SIGBUS) or grow it.
pub const SIZE_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// An anonymous, sealed shared-memory file of `size` bytes (memfd): it has no
/// name anyone could open, vanishes with its last descriptor or mapping, and
/// cannot be resized once sealed. `name` only labels it in /proc/PID/fd.
pub fn create_sealed(name: &str, size: u64) -> io::Result<OwnedFd> {
    let c = cname(name)?;
    let fd = syscall!(memfd_create(c.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING))?;
    // SAFETY: memfd_create just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    syscall!(ftruncate(fd.as_raw_fd(), size as libc::off_t))?;
    syscall!(fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SIZE_SEALS))?;
    Ok(fd)
}

/// Whether `fd`'s size is sealed (see [`SIZE_SEALS`]).
pub fn size_sealed(fd: &OwnedFd) -> bool {
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    syscall!(fcntl(fd.as_raw_fd(), libc::F_GET_SEALS)).is_ok_and(|s| s & want == want)
}
