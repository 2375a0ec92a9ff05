//! An asymmetric store-load fence across processes, from `membarrier(2)`.
//!
//! A sleeper and a waker meet Dekker-style: the sleeper announces itself
//! (waiter count) then re-checks the condition; the waker writes the condition
//! then reads the waiter count. Each side needs a store-load fence between its
//! write and its read, and on x86 that fence (`mfence`) makes the waker wait
//! for its store buffer to drain: the cost of every publish. Sleeping is the
//! rare, slow side, so it pays instead: a process that has registered with
//! `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED` skips the waker's fence
//! ([`light`]), and a sleeper calls [`heavy`], which runs a full barrier on
//! every CPU currently running a registered process (an IPI, ~0.5 µs).
//! Either the waker read the count after that barrier (and saw the sleeper),
//! or its write was drained by it (and the sleeper's re-check sees it).
//!
//! Where registration fails, [`light`] stays a real `SeqCst` fence. Where a
//! sandbox refuses the sleeper's barrier that the kernel supports, [`heavy`]
//! reports failure, so sleepers cap their sleep (a kernel without the command
//! lets nobody register, so there is nothing to miss).
//!
//! `AETHER_MEMBARRIER=off` in a process's environment keeps it from
//! registering: its wakers fence, and no sleeper's barrier interrupts it (for
//! publishers spinning on isolated CPUs that must not take IPIs).

use std::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};

const CMD_QUERY: libc::c_long = 0;
const CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;

const UNKNOWN: u8 = 0;
const REGISTERED: u8 = 1;
const UNAVAILABLE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

#[cfg(miri)]
fn membarrier(_cmd: libc::c_long) -> libc::c_long {
    -1
}

#[cfg(not(miri))]
fn membarrier(cmd: libc::c_long) -> libc::c_long {
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long, 0 as libc::c_long) }
}

/// Registers this process as a light-fence side, once. Returns whether it is.
pub fn register() -> bool {
    match STATE.load(Ordering::Acquire) {
        REGISTERED => return true,
        UNAVAILABLE => return false,
        _ => {}
    }
    let opted_out = std::env::var_os("AETHER_MEMBARRIER").is_some_and(|v| v == "off" || v == "0");
    if opted_out {
        STATE.store(UNAVAILABLE, Ordering::Release);
        return false;
    }
    let supported = membarrier(CMD_QUERY);
    let wanted = CMD_GLOBAL_EXPEDITED | CMD_REGISTER_GLOBAL_EXPEDITED;
    let ok = supported >= 0 && supported & wanted == wanted && membarrier(CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
    STATE.store(if ok { REGISTERED } else { UNAVAILABLE }, Ordering::Release);
    ok
}

/// The waker's side: between its write and its read of the waiter count.
#[inline]
pub fn light() {
    if STATE.load(Ordering::Relaxed) == REGISTERED {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The sleeper's side: between announcing itself and re-checking. Returns
/// false if the kernel refused a barrier that it supports (a sandbox), in
/// which case a registered waker may have missed the announcement and the
/// sleeper must not sleep for long.
pub fn heavy() -> bool {
    fence(Ordering::SeqCst);
    if membarrier(CMD_GLOBAL_EXPEDITED) == 0 {
        return true;
    }
    // Not supported at all: then no process could register, and every waker fences.
    matches!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOSYS)
    )
}
