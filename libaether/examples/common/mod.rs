//! What the scratch examples share.
use aether::local::LocalTopic;
use aether::segment::{Policy, TopicParams};
use std::sync::Arc;

/// A private topic (no daemon) for 64 B messages in a 64 KiB ring, which
/// stays in cache.
pub fn small_segment(name: &str, policy: Policy) -> Arc<LocalTopic> {
    let params = TopicParams {
        policy,
        ring_size: 1 << 16,
        max_message: 64,
        max_subscribers: 8,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    };
    Arc::new(LocalTopic::create(name, &params).expect("create the topic"))
}
