//! The system-call layer. What `nix` covers (sockets and descriptor passing,
//! memfd and seals, mmap, message-queue opening, clocks) is called through
//! `nix`; what it lacks is made here by hand: the futex, membarrier, the
//! 128-bit compare-and-swap, the TSC clock, the timed message-queue calls,
//! `getrandom` and [`poll_one`]. Hand-made calls that report errors the C
//! way (`-1` and `errno`) go through `syscall!`, which turns that into
//! `io::Result` (futex and membarrier results, read differently, are checked
//! in place); every file descriptor is an `OwnedFd` from the moment it exists.

macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller passes arguments valid for this libc call; the
        // macro only converts the C error convention.
        #[allow(unused_unsafe, clippy::undocumented_unsafe_blocks)]
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

use nix::poll::PollFlags;
use nix::sys::time::TimeSpec;
use nix::time::ClockId;
use std::os::fd::{AsRawFd, BorrowedFd};

pub mod affinity;
pub mod atomic128;
pub mod eventfd;
pub mod futex;
pub mod membarrier;
pub mod mmap;
pub mod mqueue;
pub mod shm;
pub mod tsc;
pub mod uds;

/// Nanoseconds of `CLOCK_REALTIME` (wall clock; comparable across processes).
pub fn realtime_ns() -> u64 {
    clock_ns(ClockId::CLOCK_REALTIME)
}

/// Nanoseconds of `CLOCK_MONOTONIC` (for timeouts and latency).
pub fn monotonic_ns() -> u64 {
    clock_ns(ClockId::CLOCK_MONOTONIC)
}

fn clock_ns(clock: ClockId) -> u64 {
    // These clocks always exist; a failure could only read as time zero.
    let ts = nix::time::clock_gettime(clock).unwrap_or(TimeSpec::new(0, 0));
    (ts.tv_sec() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec() as u64)
}

/// Waits up to `timeout_ms` (negative: forever) for `events` on `fd`; returns
/// the events that occurred (empty on timeout or error: callers look again).
/// Made here rather than through `nix::poll`, whose `revents` cannot carry
/// POLLRDHUP (the peer shut its end down), which the client watches for.
pub fn poll_one(fd: BorrowedFd<'_>, events: PollFlags, timeout_ms: i32) -> PollFlags {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: events.bits(),
        revents: 0,
    };
    // SAFETY: one valid pollfd for a descriptor the caller keeps open for the call.
    match unsafe { libc::poll(&mut p, 1, timeout_ms.max(-1)) } {
        1 => PollFlags::from_bits_retain(p.revents),
        _ => PollFlags::empty(),
    }
}

/// Forks this process has gone through (bumped in the child by a
/// `pthread_atfork` handler): a handle notes it at open, and a call from a
/// forked child, which inherited the handle, sees it changed.
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// This process's fork generation, for a handle opened now (registers the
/// fork handler on first use). Forks made without glibc's `fork` (a raw
/// `clone`) are not seen.
pub fn fork_generation() -> u64 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a child handler that only bumps an atomic
        // (async-signal-safe, as a handler run after fork must be).
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether this process is a child forked since generation `gen` (one load).
#[inline(always)]
pub fn forked_since(gen: u64) -> bool {
    FORKS.load(std::sync::atomic::Ordering::Relaxed) != gen
}

/// Asks the CPU to start loading the cache line at `p` (a hint: no fault,
/// whatever the address, and no effect on what later loads return).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    // SAFETY: PREFETCHT0 never faults and never changes memory or registers,
    // so any address is fine; SSE is part of the x86-64 baseline.
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast()) };
}

/// Fills `buf` from the kernel's random source.
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if random_bytes(&mut b).is_err() {
        // Fall back to time and pid mixing; uniqueness, not secrecy, is what callers need.
        return monotonic_ns() ^ ((std::process::id() as u64) << 32) ^ realtime_ns().rotate_left(17);
    }
    u64::from_ne_bytes(b)
}
