//! Shared memory: segments are sealed memfds (see [`create_sealed`]); the
//! POSIX shm namespace is only cleaned (`shm_unlink`). The calls are `nix`'s.

#[cfg(not(miri))]
use nix::fcntl::SealFlag;
use nix::fcntl::{fcntl, FcntlArg};
#[cfg(not(miri))]
use nix::sys::memfd::memfd_create;
use nix::sys::memfd::MFdFlags;
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;

/// `name` as a C string (shm and message-queue names).
pub(super) fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// Removes the name `name`; mappings and descriptors stay valid.
pub fn unlink(name: &str) -> io::Result<()> {
    Ok(nix::sys::mman::shm_unlink(cname(name)?.as_c_str())?)
}

/// Size in bytes of the object behind `fd`.
pub fn size(fd: &OwnedFd) -> io::Result<u64> {
    Ok(nix::sys::stat::fstat(fd)?.st_size as u64)
}

/// Seals that make a segment's size immutable: no process holding the
/// descriptor can shrink it under other processes' mappings (SIGBUS) or grow it.
pub const SIZE_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// An anonymous, sealed shared-memory file of `size` bytes (memfd): it has no
/// name anyone could open, vanishes with its last descriptor or mapping, and
/// cannot be resized once sealed. `name` only labels it in /proc/PID/fd.
/// Mode 0600, so that only its owner (and root) can reopen it.
pub fn create_sealed(name: &str, size: u64) -> io::Result<OwnedFd> {
    create(name, size, MFdFlags::empty())
}

/// Size of the huge pages [`create_sealed_huge`] asks for.
pub const HUGE_PAGE: u64 = 2 << 20;

/// As [`create_sealed`], backed by 2 MiB huge pages (`MFD_HUGETLB`); `size`
/// must be a multiple of [`HUGE_PAGE`]. The pages are taken from the reserved
/// pool when the file is first mapped: that mapping fails with `ENOMEM` when
/// too few are free.
pub fn create_sealed_huge(name: &str, size: u64) -> io::Result<OwnedFd> {
    create(name, size, MFdFlags::MFD_HUGETLB | MFdFlags::MFD_HUGE_2MB)
}

#[cfg(not(miri))]
fn create(name: &str, size: u64, extra: MFdFlags) -> io::Result<OwnedFd> {
    let fd = memfd_create(
        cname(name)?.as_c_str(),
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING | extra,
    )?;
    // A memfd starts 0777: another user holding a descriptor could reopen it
    // through /proc for more than the descriptor allows.
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    let len = libc::off_t::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    nix::unistd::ftruncate(&fd, len)?;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::from_bits_truncate(SIZE_SEALS)))?;
    Ok(fd)
}

/// Under Miri (no memfd, no file mappings): a descriptor that only stands
/// for the memory, which [`super::mmap::Mapping`] then allocates. Enough for
/// one process's topics ([`crate::local::LocalTopic`]), mapped once each.
#[cfg(miri)]
fn create(_name: &str, _size: u64, _extra: MFdFlags) -> io::Result<OwnedFd> {
    super::eventfd::create()
}

/// Whether `fd` is a file of huge pages (hugetlbfs, as [`create_sealed_huge`] makes).
pub fn is_huge(fd: &OwnedFd) -> bool {
    nix::sys::statfs::fstatfs(fd).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::HUGETLBFS_MAGIC)
}

/// 2 MiB huge pages of the pool that a new mapping can still have: free
/// (`HugePages_Free`) and not promised to a mapping already made
/// (`HugePages_Rsvd`).
pub fn huge_pages_free() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |k: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(k))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(field("HugePages_Free:")?.saturating_sub(field("HugePages_Rsvd:")?))
}

/// Whether `fd`'s size is sealed (see [`SIZE_SEALS`]).
pub fn size_sealed(fd: &OwnedFd) -> bool {
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    fcntl(fd, FcntlArg::F_GET_SEALS).is_ok_and(|s| s & want == want)
}

/// A read-only descriptor of the file behind `fd` (reopened through
/// /proc/self/fd). Nothing holding only it can map the file writable, and,
/// the file being 0600 and another user's, nor can it reopen it writable.
pub fn reopen_readonly(fd: &OwnedFd) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
    Ok(nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?)
}
