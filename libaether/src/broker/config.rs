//! The daemon's configuration: limits, topic defaults and access rules.
//! (Loading it from a TOML file, the environment and flags comes with the
//! configuration work; this is the in-memory shape the broker consults.)

use crate::segment::TopicParams;

/// Limits against abuse; each breach is refused with a clear `Limit` (or
/// `TooLarge`) error and changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_topics: usize,
    pub max_clients: usize,
    /// Cap on a topic's `max_subscribers`.
    pub max_subscribers_per_topic: u32,
    /// Cap on a topic's ring size in bytes.
    pub max_segment_bytes: u64,
    /// Cap on a topic's `max_message` in bytes.
    pub max_message_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_topics: 1024,
            max_clients: 1024,
            max_subscribers_per_topic: crate::segment::MAX_SUBSCRIBERS,
            max_segment_bytes: crate::segment::MAX_RING,
            max_message_bytes: crate::segment::MAX_RING / 2 - crate::ring::RECORD_HEADER as u64,
        }
    }
}

/// Something a client may be allowed to do on a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Publish,
    Subscribe,
    /// Create and delete topics, and administer the daemon.
    Admin,
}

/// One grant: who (users/uids, groups/gids) may do what on which topics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Topic patterns: exact names, or a prefix ending in `*`; empty = all topics.
    pub topics: Vec<String>,
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub allow: Vec<Action>,
}

/// Everything the broker consults at run time. Replaced as a whole on reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub limits: Limits,
    pub topic_defaults: TopicParams,
    pub rules: Vec<Rule>,
}
