//! What the scratch examples share.
use aether::segment::{Policy, Segment, TopicParams};
use std::sync::Arc;

/// A private segment (no daemon) for 64 B messages in a 64 KiB ring, which
/// stays in cache.
pub fn small_segment(name: &str, policy: Policy) -> Arc<Segment> {
    let params = TopicParams {
        policy,
        ring_size: 1 << 16,
        max_message: 64,
        max_subscribers: 8,
    };
    let (_fd, seg) = Segment::create(name, &params, 1).expect("create segment");
    Arc::new(seg)
}
