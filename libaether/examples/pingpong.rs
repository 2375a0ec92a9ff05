//! Ping-pong through two rings between two forked processes, straight on the
//! ring types (no daemon, no client layer): the ring's own share of
//! `aether-bench`'s latency. `cargo run --release -p aether --example pingpong`
//! (pins to CPUs 0 and 1; one-way = round trip / 2).
use aether::ring::{Deadline, Reader, WaitConfig, WaitStrategy, Writer};
use aether::segment::{Policy, Segment, TopicParams};
use std::sync::Arc;

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn segment(policy: Policy) -> Arc<Segment> {
    let params = TopicParams {
        policy,
        ring_size: 1 << 16,
        max_message: 64,
        max_subscribers: 8,
    };
    let (_fd, seg) = Segment::create("pp", &params, 1).expect("create segment");
    Arc::new(seg)
}

fn main() {
    let (warmup, count) = (20_000u64, 200_000u64);
    for policy in [Policy::Reliable, Policy::Lossy] {
        let (ping, pong) = (segment(policy), segment(policy));
        // Readers first, so that each starts before the first message.
        let spin = WaitConfig {
            strategy: WaitStrategy::Spin,
            spin: 0,
        };
        let mut from_pong = Reader::new(Arc::clone(&pong), Some(0), 1).expect("reader");
        let mut from_ping = Reader::new(Arc::clone(&ping), Some(0), 2).expect("reader");
        from_pong.wait = spin;
        from_ping.wait = spin;
        let forever = Deadline::after(None);
        let mut buf = [0u8; 64];
        // SAFETY: fork in a single-threaded program; the child only uses what it inherited.
        let child = unsafe { libc::fork() };
        if child == 0 {
            pin(1);
            drop(from_pong);
            let mut w = Writer::new(Arc::clone(&pong), None);
            for _ in 0..warmup + count {
                let (n, _, _) = from_ping.receive_into(&mut buf, &forever).expect("receive");
                w.publish(&buf[..n]).expect("publish");
            }
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        pin(0);
        drop(from_ping);
        let mut w = Writer::new(Arc::clone(&ping), None);
        let mut samples = Vec::with_capacity(count as usize);
        let msg = [7u8; 64];
        for i in 0..warmup + count {
            let t0 = aether::sys::monotonic_ns();
            w.publish(&msg).expect("publish");
            from_pong.receive_into(&mut buf, &forever).expect("receive");
            if i >= warmup {
                samples.push((aether::sys::monotonic_ns() - t0) / 2);
            }
        }
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
        samples.sort_unstable();
        let pct = |p: f64| samples[(samples.len() as f64 * p) as usize];
        println!("{policy:?}: one-way p50 {} ns, p99 {} ns", pct(0.5), pct(0.99));
    }
}
