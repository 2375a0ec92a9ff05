//! The 128-bit compare-and-swap that claims ring space: the publisher tail is a
//! pair (byte position, next sequence number) updated together by one
//! `lock cmpxchg16b`, so that positions and sequence numbers stay in one total
//! order with one read-modify-write per claim.
//!
//! Readers load only the 64-bit position half with an ordinary atomic load; on
//! x86-64 an aligned 8-byte load is single-copy atomic with respect to the
//! locked 16-byte write.

use std::sync::atomic::AtomicU64;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("aether's ring needs a 128-bit compare-and-swap; only x86-64 is supported so far");

/// The two halves of the tail, 16-byte aligned as `cmpxchg16b` requires.
#[repr(C, align(16))]
pub struct Pair {
    pub lo: AtomicU64,
    pub hi: AtomicU64,
}

/// Whether this CPU has `cmpxchg16b` (every x86-64 CPU since ~2006 does).
pub fn supported() -> bool {
    cfg!(miri) || std::arch::is_x86_feature_detected!("cmpxchg16b")
}

/// Under Miri, which cannot run the assembly below: the same exchange made
/// of two atomic halves under one process-wide lock. (Readers of `lo`
/// alone, which take no lock, see it change once, as with the real one.)
#[cfg(miri)]
unsafe fn cmpxchg16b(dst: *mut u128, old: u128, new: u128) -> u128 {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: `dst` is a `Pair` (the only caller's), so it is two atomics.
    let p = unsafe { &*(dst as *const Pair) };
    let found = join(
        p.lo.load(std::sync::atomic::Ordering::SeqCst),
        p.hi.load(std::sync::atomic::Ordering::SeqCst),
    );
    if found == old {
        p.hi.store((new >> 64) as u64, std::sync::atomic::Ordering::SeqCst);
        p.lo.store(new as u64, std::sync::atomic::Ordering::SeqCst);
    }
    found
}

/// `lock cmpxchg16b` in inline assembly: the std intrinsic becomes a libatomic
/// call unless the whole crate is built with the CPU feature enabled.
///
/// # Safety
/// `dst` is valid for reads and writes of 16 bytes and 16-byte aligned, and
/// the CPU supports `cmpxchg16b`.
#[cfg(not(miri))]
unsafe fn cmpxchg16b(dst: *mut u128, old: u128, new: u128) -> u128 {
    let (mut lo, mut hi) = (old as u64, (old >> 64) as u64);
    // SAFETY: per the function's contract. rbx is reserved by LLVM, so the new
    // low half is swapped into it around the instruction and restored after.
    unsafe {
        std::arch::asm!(
            "xchg {new_lo}, rbx",
            "lock cmpxchg16b xmmword ptr [rdi]",
            "mov rbx, {new_lo}",
            new_lo = inout(reg) new as u64 => _,
            // A fixed register: a `reg` operand could be given rbx, which the
            // xchg above has just repurposed.
            in("rdi") dst,
            inout("rax") lo,
            inout("rdx") hi,
            in("rcx") (new >> 64) as u64,
            options(nostack),
        );
    }
    (lo as u128) | ((hi as u128) << 64)
}

fn join(lo: u64, hi: u64) -> u128 {
    (lo as u128) | ((hi as u128) << 64)
}

fn split(v: u128) -> (u64, u64) {
    (v as u64, (v >> 64) as u64)
}

impl Pair {
    /// Replaces `(lo, hi)` by `new` if it equals `old`; returns the value found.
    /// Callers must have checked [`supported`] once (segment open does).
    pub fn compare_exchange(&self, old: (u64, u64), new: (u64, u64)) -> Result<(), (u64, u64)> {
        let dst = self as *const Pair as *mut u128;
        // SAFETY: `Pair` is 16 bytes, 16-byte aligned and made of atomics, so a
        // locked 16-byte exchange on it races with nothing non-atomic; the CPU
        // feature is checked at segment open.
        let found = unsafe { cmpxchg16b(dst, join(old.0, old.1), join(new.0, new.1)) };
        if found == join(old.0, old.1) {
            Ok(())
        } else {
            Err(split(found))
        }
    }

    /// A consistent snapshot of both halves without writing (for read-only
    /// mappings, where `cmpxchg16b` faults): every claim raises `hi` by one,
    /// so a `lo` read between two equal reads of `hi` belongs to that `hi`.
    pub fn load_shared(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Acquire;
        // Bounded: a writer that never stops must not hold a reader here.
        let mut last = (0, 0);
        for _ in 0..1000 {
            let hi = self.hi.load(Acquire);
            let lo = self.lo.load(Acquire);
            if self.hi.load(Acquire) == hi {
                return (lo, hi);
            }
            last = (lo, hi);
            std::hint::spin_loop();
        }
        last
    }

    /// A consistent snapshot of both halves (a CAS that writes back what it found).
    pub fn load(&self) -> (u64, u64) {
        match self.compare_exchange((0, 0), (0, 0)) {
            Ok(()) => (0, 0),
            Err(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads incrementing both halves with CAS loops never lose an update
    /// and never see the halves disagree.
    #[test]
    fn concurrent_increments_are_atomic() {
        let p = std::sync::Arc::new(Pair {
            lo: AtomicU64::new(0),
            hi: AtomicU64::new(0),
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = std::sync::Arc::clone(&p);
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        let mut cur = p.load();
                        loop {
                            assert_eq!(cur.0 * 3, cur.1, "halves updated together");
                            match p.compare_exchange(cur, (cur.0 + 1, cur.1 + 3)) {
                                Ok(()) => break,
                                Err(found) => cur = found,
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(p.load(), (200_000, 600_000));
    }
}
