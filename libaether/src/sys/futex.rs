//! Shared (not PRIVATE) futex wait/wake on a 32-bit word that lives in a
//! shared-memory segment, so that waiters and wakers may be different processes.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, at most `timeout` (forever if `None`).
/// Returns when woken, on a value mismatch, on a signal or on timeout; the caller
/// re-checks its condition in every case.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    futex_wait(word, libc::FUTEX_WAIT, expected, timeout.map(timespec), 0);
}

/// Wakes every waiter sleeping on `word`.
pub fn wake_all(word: &AtomicU32) {
    futex_wake(word, libc::FUTEX_WAKE, 0);
}

/// [`wait`], to be woken only by a [`wake_bits`] whose mask shares a bit
/// with `bits` (or by any [`wake_all`]): waiters on one word that wait for
/// different things need not all wake for each.
pub fn wait_bits(word: &AtomicU32, expected: u32, timeout: Option<Duration>, bits: u32) {
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline.
    let at = timeout.map(|d| {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(Duration::from)
            .unwrap_or_default();
        timespec(now.saturating_add(d))
    });
    // (The kernel rejects a mask of 0.)
    futex_wait(word, libc::FUTEX_WAIT_BITSET, expected, at, bits.max(1));
}

/// Wakes the waiters on `word` whose [`wait_bits`] mask shares a bit with `bits`.
pub fn wake_bits(word: &AtomicU32, bits: u32) {
    futex_wake(word, libc::FUTEX_WAKE_BITSET, bits.max(1));
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

fn futex_wait(word: &AtomicU32, op: libc::c_int, expected: u32, ts: Option<libc::timespec>, bits: u32) {
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 32-bit location for the duration of the
    // call; FUTEX_WAIT(_BITSET) only reads it. `ts_ptr` is null or points to
    // `ts`; `bits` is a plain value (ignored by FUTEX_WAIT).
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), op, expected, ts_ptr, 0usize, bits);
    }
}

fn futex_wake(word: &AtomicU32, op: libc::c_int, bits: u32) {
    // SAFETY: `word` is a valid, aligned 32-bit location; FUTEX_WAKE(_BITSET)
    // does not access memory beyond looking up the futex by address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), op, i32::MAX, 0usize, 0usize, bits);
    }
}
