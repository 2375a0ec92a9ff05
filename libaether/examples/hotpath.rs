//! Instruction cost of the hot paths, one thread, no contention:
//! `cargo run --release -p aether --example hotpath`.
use aether::ring::{Deadline, Reader, Writer};
use aether::segment::{Policy, Segment, TopicParams};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    for policy in [Policy::Lossy, Policy::Reliable] {
        let params = TopicParams {
            policy,
            ring_size: 1 << 16,
            max_message: 64,
            max_subscribers: 8,
        };
        let (_fd, seg) = Segment::create("t", &params, 1).expect("create segment");
        let seg = Arc::new(seg);
        let mut w = Writer::new(Arc::clone(&seg), Some(0));
        let mut r = Reader::new(Arc::clone(&seg), Some(0), std::process::id()).expect("reader");
        let msg = [7u8; 64];
        let mut buf = [0u8; 64];
        let n = 2_000_000u64;
        let forever = Deadline::after(None);
        let t = Instant::now();
        for _ in 0..n {
            w.publish(&msg).expect("publish");
            r.receive_into(&mut buf, &forever).expect("receive");
        }
        let pair = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(aether::sys::realtime_ns());
        }
        let clock = t.elapsed().as_nanos() as f64 / n as f64;
        println!("{policy:?}: publish+receive {pair:.1} ns; realtime_ns {clock:.1} ns");
    }
}
