//! A cheap wall clock for message timestamps, from the CPU's time-stamp counter.
//!
//! `clock_gettime(CLOCK_REALTIME)` costs ~25 ns in a VM (kvm-clock), a third
//! of a small publish. `rdtsc` costs ~10 ns. Each [`WallClock`] (one per
//! publisher) pairs a TSC reading with `CLOCK_REALTIME` and extrapolates from
//! there with a rate it measured itself. It re-anchors after twice the
//! interval that rate was measured over, and at least every
//! [`ANCHOR_SPAN_NS`]: timestamps stay within (typically) a microsecond of
//! `CLOCK_REALTIME`, and a clock step is followed within that span. Without an
//! invariant TSC (CPUID 8000_0007h EDX bit 8) it reads `CLOCK_REALTIME` every time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// How long one anchor is used before re-reading `CLOCK_REALTIME`.
pub const ANCHOR_SPAN_NS: u64 = 100_000_000;
/// A re-anchor finding the clock this far from the extrapolation takes it
/// for a clock step (settimeofday, an NTP step), not drift.
const STEP_NS: u64 = 1_000_000;
/// The first rate is measured over at least this long (reading the clock until then).
const FIRST_RATE_NS: u64 = 1_000_000;

/// The last rate any clock in this process measured (0: none yet), so that a
/// new publisher does not measure it again.
static RATE: AtomicU64 = AtomicU64::new(0);

/// Whether the CPU's time-stamp counter ticks at a constant rate in every
/// power state (then it measures time).
pub fn invariant_tsc() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if cfg!(miri) {
            return false;
        }
        use std::arch::x86_64::__cpuid;
        // `__cpuid` became a safe function in Rust 1.88; older compilers want `unsafe`.
        #[allow(unused_unsafe)]
        // SAFETY: cpuid is available on every x86-64 CPU; leaf 0x8000_0000 says
        // which extended leaves exist before we ask for 0x8000_0007.
        let max = unsafe { __cpuid(0x8000_0000) }.eax;
        #[allow(unused_unsafe)]
        // SAFETY: as above; the answer counts only if the leaf exists (`max`, checked below).
        let edx = unsafe { __cpuid(0x8000_0007) }.edx;
        max >= 0x8000_0007 && edx & (1 << 8) != 0
    })
}

/// The time-stamp counter (a time only where [`invariant_tsc`] holds;
/// under Miri, which has no such counter, the monotonic clock in ns).
#[inline]
pub fn rdtsc() -> u64 {
    if cfg!(miri) {
        return super::monotonic_ns();
    }
    // SAFETY: rdtsc reads a counter; it has no memory effects.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// TSC ticks per nanosecond of `CLOCK_MONOTONIC`, measured over `span`
/// (sleeping): for converting intervals timed with [`rdtsc`].
pub fn ticks_per_ns(span: std::time::Duration) -> f64 {
    let (t0, n0) = (rdtsc(), super::monotonic_ns());
    std::thread::sleep(span);
    let (t1, n1) = (rdtsc(), super::monotonic_ns());
    t1.wrapping_sub(t0) as f64 / n1.saturating_sub(n0).max(1) as f64
}

/// One anchor: at TSC `tsc`, the wall clock read `ns`.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    tsc: u64,
    ns: u64,
}

fn anchor() -> Anchor {
    // The TSC halfway through the clock read stands for the instant it
    // returned; of a few tries, the tightest pair (a preempted read is useless).
    let mut best: Option<(u64, Anchor)> = None;
    for _ in 0..4 {
        let a = rdtsc();
        let ns = super::realtime_ns();
        let b = rdtsc();
        let width = b.wrapping_sub(a);
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((
                width,
                Anchor {
                    tsc: a.wrapping_add(width / 2),
                    ns,
                },
            ));
        }
    }
    best.expect("four tries").1
}

/// Wall-clock nanoseconds, extrapolated from the TSC between anchors.
#[derive(Debug, Default)]
pub struct WallClock {
    anchor: Option<Anchor>,
    /// Nanoseconds per TSC tick, 32.32 fixed point; 0 until measured.
    rate: u64,
    /// TSC ticks after the anchor at which to re-anchor.
    span: u64,
    /// The last time handed out: a re-anchor that corrects an extrapolation
    /// running ahead must not make one publisher's timestamps go backwards.
    last: u64,
}

impl WallClock {
    pub fn new() -> WallClock {
        WallClock::default()
    }

    /// `CLOCK_REALTIME` in nanoseconds, give or take a microsecond.
    #[inline]
    pub fn now_ns(&mut self) -> u64 {
        let t = match self.anchor {
            Some(a) => {
                let ticks = rdtsc().wrapping_sub(a.tsc);
                if ticks < self.span {
                    a.ns + ((ticks as u128 * self.rate as u128) >> 32) as u64
                } else {
                    self.reanchor()
                }
            }
            None => self.reanchor(),
        };
        // Never backwards, except across a real clock step (reanchor resets `last`).
        let t = t.max(self.last);
        self.last = t;
        t
    }

    #[cold]
    fn reanchor(&mut self) -> u64 {
        if !invariant_tsc() {
            return super::realtime_ns();
        }
        let Some(old) = self.anchor else {
            let now = anchor();
            self.anchor = Some(now);
            // Another clock in this process may have measured the rate already.
            self.set_rate(RATE.load(Ordering::Relaxed), ANCHOR_SPAN_NS);
            return now.ns;
        };
        if self.rate == 0 {
            // Still measuring the first rate: plain clock reads until it is long enough.
            let ns = super::realtime_ns();
            if ns.wrapping_sub(old.ns) < FIRST_RATE_NS {
                return ns;
            }
        }
        let now = anchor();
        let (dns, dtsc) = (now.ns.wrapping_sub(old.ns), now.tsc.wrapping_sub(old.tsc));
        // Where the current rate says the clock should be: a clock that is
        // more than STEP_NS away from it was set (or the TSC misbehaved).
        let predicted = old.ns.wrapping_add(((dtsc as u128 * self.rate as u128) >> 32) as u64);
        let stepped = self.rate != 0 && now.ns.abs_diff(predicted) > STEP_NS;
        if dns > 1 << 40 || dtsc == 0 || now.ns < old.ns || stepped {
            // Start measuring again, and let a step back show (`last` reset):
            // timestamps follow CLOCK_REALTIME, steps included.
            *self = WallClock {
                anchor: Some(now),
                ..WallClock::default()
            };
            return now.ns;
        }
        // Each anchor is used for at most twice the interval its rate was
        // measured over, so the extrapolation error stays near the read jitter.
        self.set_rate(
            (((dns as u128) << 32) / dtsc as u128).min(u64::MAX as u128) as u64,
            2 * dns,
        );
        RATE.store(self.rate, Ordering::Relaxed);
        self.anchor = Some(now);
        now.ns
    }

    /// Uses `rate` (0: unknown) for at most `span_ns` (capped at [`ANCHOR_SPAN_NS`]).
    fn set_rate(&mut self, rate: u64, span_ns: u64) {
        self.rate = rate;
        let span_ns = span_ns.min(ANCHOR_SPAN_NS) as u128;
        self.span = if rate == 0 {
            0
        } else {
            ((span_ns << 32) / rate as u128).min(u64::MAX as u128) as u64
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_realtime_clock() {
        let mut c = WallClock::new();
        let start = super::super::realtime_ns();
        let (mut worst, mut last) = (0i64, 0u64);
        while super::super::realtime_ns() - start < 300_000_000 {
            let before = super::super::realtime_ns();
            let t = c.now_ns();
            let after = super::super::realtime_ns();
            // Outside [before, after] by how much, in ns.
            let off = if t < before {
                (before - t) as i64
            } else {
                t.saturating_sub(after) as i64
            };
            worst = worst.max(off);
            assert!(t >= last, "went backwards: {t} after {last}");
            last = t;
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        // A loaded 2-vCPU machine can stall a thread between reads; a wrong
        // rate would be off by milliseconds.
        assert!(worst < 50_000, "wall clock off by {worst} ns");
    }
}
