//! Instruction cost of the hot paths, one thread, no contention, no daemon:
//! `cargo run --release -p aether --example hotpath`. Each figure is the best
//! of seven runs of 500,000 operations (the machine's noise only adds).
mod common;

use aether::ring::Deadline;
use aether::segment::Policy;
use common::small_segment;
use std::time::Instant;

const N: u32 = 500_000;

/// Best-of-seven nanoseconds per call of `f`.
fn best(mut f: impl FnMut()) -> f64 {
    (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                f();
            }
            t.elapsed().as_nanos() as f64 / N as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    for policy in [Policy::Lossy, Policy::Reliable] {
        let seg = small_segment("t", policy);
        let mut w = seg.writer(Some(0));
        let mut r = seg.reader(0).expect("reader");
        let msg = [7u8; 64];
        let mut buf = [0u8; 64];
        let forever = Deadline::after(None);
        let pair = best(|| {
            w.publish(&msg).expect("publish");
            r.receive_into(&mut buf, &forever).expect("receive");
        });
        let zero_copy = best(|| {
            let claim = w.claim(64).expect("claim");
            // SAFETY: the claim's payload has at least 64 bytes we own until commit.
            unsafe { std::ptr::write_bytes(w.payload(&claim), 7, 64) };
            w.commit(claim, 64).expect("commit");
            let rec = r.next(&forever).expect("next");
            // SAFETY: the record's bytes are in the ring until consumed.
            std::hint::black_box(unsafe { std::ptr::read_volatile(rec.data) });
            r.consume(&rec);
        });
        drop(r);
        let publish = best(|| {
            w.publish(&msg).expect("publish");
        });
        let clock = best(|| {
            std::hint::black_box(aether::sys::realtime_ns());
        });
        println!(
            "{policy:?}: publish+receive {pair:.1} ns; claim+commit+next+consume {zero_copy:.1} ns; publish alone {publish:.1} ns; clock_gettime {clock:.1} ns"
        );
    }
    // What a subscriber pays before it sleeps, so that publishers need no fence.
    let registered = aether::sys::membarrier::register();
    let barrier = best(|| {
        std::hint::black_box(aether::sys::membarrier::heavy());
    });
    println!("membarrier (sleeper's barrier, registered: {registered}) {barrier:.1} ns");
}
