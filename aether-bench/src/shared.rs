//! Resources the benchmark parent creates and its child processes inherit:
//! a shared page (memfd) for the cache-line and futex baselines, a shared
//! area for the hand-off baseline, and a Unix socket pair for the socket
//! baseline. Descriptors are made inheritable on
//! purpose and named to the children by number.

use aether::sys::mmap::Mapping;
use aether::sys::tsc;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

pub const PAGE: usize = 4096;

/// A page (or a larger area) shared by every process that maps the same descriptor.
pub struct SharedPage {
    fd: OwnedFd,
    map: Mapping,
}

impl SharedPage {
    /// A fresh zeroed page whose descriptor children inherit.
    pub fn create() -> std::io::Result<SharedPage> {
        SharedPage::create_sized(PAGE)
    }

    /// A fresh zeroed area of `len` bytes (a multiple of the page size).
    pub fn create_sized(len: usize) -> std::io::Result<SharedPage> {
        // SAFETY: memfd_create with a static name; no MFD_CLOEXEC so exec'd children inherit it.
        let fd = unsafe { libc::memfd_create(c"aether-bench".as_ptr(), 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned this descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain ftruncate on our descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        SharedPage::map(fd, len)
    }

    /// Maps an inherited descriptor (in a child).
    pub fn from_inherited(fd: RawFd) -> std::io::Result<SharedPage> {
        SharedPage::from_inherited_sized(fd, PAGE)
    }

    /// Maps the first `len` bytes of an inherited descriptor (in a child).
    pub fn from_inherited_sized(fd: RawFd, len: usize) -> std::io::Result<SharedPage> {
        // SAFETY: the parent passed us this descriptor number; we take it over.
        SharedPage::map(unsafe { OwnedFd::from_raw_fd(fd) }, len)
    }

    /// Populated, as ring segments are, so that no run pays page faults.
    fn map(fd: OwnedFd, len: usize) -> std::io::Result<SharedPage> {
        let map = Mapping::shared(fd.as_fd(), len, true)?;
        Ok(SharedPage { fd, map })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The 64-bit word at cache line `line`.
    pub fn u64_at(&self, line: usize) -> &AtomicU64 {
        assert!(line < PAGE / 64);
        // SAFETY: in bounds of the mapped page, 64-byte aligned, accessed only atomically.
        unsafe { &*self.map.as_ptr().add(line * 64).cast::<AtomicU64>() }
    }

    /// The 32-bit word at cache line `line` (futex words).
    pub fn u32_at(&self, line: usize) -> &AtomicU32 {
        assert!(line < PAGE / 64);
        // SAFETY: as above.
        unsafe { &*self.map.as_ptr().add(line * 64).cast::<AtomicU32>() }
    }
}

/// Where the `record` baseline's two records live in the page (line numbers).
pub const RECORD_TO_PONG: usize = 16;
pub const RECORD_TO_PING: usize = 32;

/// A 128-byte record in the shared page: a stamp in the first word, a
/// 64-byte payload at offset 32 (as in the ring), so two cache lines.
#[derive(Clone, Copy)]
pub struct Record {
    ptr: *mut u8,
}

impl Record {
    fn stamp(&self) -> &AtomicU64 {
        // SAFETY: `ptr` is a 64-byte aligned record inside the mapped page (SharedPage::record).
        unsafe { &*self.ptr.cast::<AtomicU64>() }
    }

    /// Writes the payload, then the stamp (release).
    pub fn send(&self, stamp: u64, payload: &[u8; 64]) {
        // SAFETY: the payload area [32, 96) is inside the record; the peer reads
        // it only after seeing the stamp, and does not write it.
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), self.ptr.add(32), 64) };
        self.stamp().store(stamp, std::sync::atomic::Ordering::Release);
    }

    /// Spins until the stamp reads `stamp`, then copies the payload out.
    /// While it spins it prefetches the second line, as the ring's reader does.
    pub fn receive(&self, stamp: u64, payload: &mut [u8; 64]) {
        while self.stamp().load(std::sync::atomic::Ordering::Acquire) != stamp {
            aether::sys::prefetch(self.ptr.wrapping_add(64));
            std::hint::spin_loop();
        }
        // SAFETY: as in `send`; the writer does not touch the record again
        // before we answer.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(32), payload.as_mut_ptr(), 64) };
    }
}

impl SharedPage {
    /// Slot `i` of `size` bytes in the hand-off area: slots start after the
    /// first page (which holds the two counters, lines 0 and 2).
    pub fn slot(&self, i: usize, size: usize) -> *mut u8 {
        assert!(PAGE + (i + 1) * size <= self.map.len());
        self.slot_unchecked(i, size)
    }

    /// [`slot`](Self::slot) without the bounds check, for a hot loop whose
    /// caller checked its last slot once (the address is only computed here).
    pub fn slot_unchecked(&self, i: usize, size: usize) -> *mut u8 {
        self.map.as_ptr().wrapping_add(PAGE + i * size)
    }

    /// The two-line record starting at cache line `line`.
    pub fn record(&self, line: usize) -> Record {
        assert!(line + 2 <= PAGE / 64);
        // SAFETY: the record's 128 bytes are inside the mapped page.
        Record {
            ptr: unsafe { self.map.as_ptr().add(line * 64) },
        }
    }
}

/// A connected pair of Unix stream sockets that children inherit.
pub fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors; no CLOEXEC so children inherit them.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socketpair just returned both descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes all of `buf` to a stream socket.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid readable slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes from a stream socket.
pub fn read_exact(fd: RawFd, mut buf: &mut [u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid writable slice.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut std::mem::take(&mut buf)[n as usize..];
    }
    Ok(())
}

/// The latency timer: the time-stamp counter, converted to nanoseconds with
/// a rate measured against `CLOCK_MONOTONIC` when made. `clock_gettime`
/// costs ~24 ns a call on this VM and, timing a one-line ping-pong, doubled
/// it (30 ns one way read as 60-65). Without an invariant TSC it is the clock.
pub struct Stopwatch {
    tsc: bool,
    ns_per_tick: f64,
}

impl Stopwatch {
    pub fn new() -> Stopwatch {
        if !tsc::invariant_tsc() {
            return Stopwatch {
                tsc: false,
                ns_per_tick: 1.0,
            };
        }
        let rate = tsc::ticks_per_ns(std::time::Duration::from_millis(20));
        Stopwatch {
            tsc: true,
            ns_per_tick: 1.0 / rate.max(1e-9),
        }
    }

    /// Now, in ticks (see [`ns`](Self::ns)).
    #[inline]
    pub fn now(&self) -> u64 {
        if self.tsc {
            tsc::rdtsc()
        } else {
            aether::sys::monotonic_ns()
        }
    }

    /// A span of `ticks` (a difference of [`now`](Self::now)s), in nanoseconds.
    pub fn ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * self.ns_per_tick) as u64
    }

    /// The span from `since` (an earlier [`now`](Self::now)) to now, in
    /// nanoseconds (0 if the counter went backwards, as unsynchronised TSCs
    /// of two cores may).
    pub fn ns_since(&self, since: u64) -> u64 {
        self.ns(self.now().saturating_sub(since))
    }
}

/// Pins the calling process to one CPU.
pub fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays in bounds for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}
