//! Topics bridged between brokers over Zenoh (docs/BRIDGE.md). The engine
//! (`engine`, cargo feature `bridge`) embeds a Zenoh peer; what every build
//! has is the envelope format and the counters the statistics show.

#[cfg(feature = "bridge")]
mod engine;
pub mod envelope;

#[cfg(feature = "bridge")]
pub use engine::Bridge;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The bridge's counters, shared by its threads and read by the statistics.
#[derive(Default)]
pub struct Counters {
    pub name: String,
    /// Whether this broker forwards between others (`relay = true`).
    pub relay: bool,
    /// Local messages sent to other brokers, and their payload bytes.
    pub sent: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// The Zenoh samples those went in: fewer than `sent` where the
    /// outbound side put messages waiting together, as one batch.
    pub sent_samples: AtomicU64,
    /// Local messages that never left: lapped in a lossy ring before the
    /// bridge read them, or published while no remote broker listened.
    pub unsent: AtomicU64,
    /// Remote messages not published here: refused by the local access
    /// rules, addressed to a topic outside the patterns, or malformed.
    pub refused: AtomicU64,
    /// Messages that came back to their origin (dropped: never re-published).
    pub echoes: AtomicU64,
    pub links: Mutex<BTreeMap<String, Link>>,
    /// Per remote broker, its messages published here and their bytes,
    /// counted by the receiving thread without `links`' lock (once per
    /// message) and added to its link's `received`, `received_bytes` by
    /// [`Counters::snapshot`].
    pub received: Mutex<BTreeMap<String, Arc<Received>>>,
}

/// One remote broker's messages published here, and their payload bytes.
#[derive(Default)]
pub struct Received {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
}

/// What the bridge knows of one remote broker, by its name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Link {
    /// The broker's id in the origin of its messages here
    /// (`aether::broker_id` of its name; `Message::origin`).
    #[serde(default)]
    pub id: u64,
    /// Whether its bridge is reachable now.
    pub up: bool,
    /// Its messages published here, and their payload bytes.
    pub received: u64,
    pub received_bytes: u64,
    /// Its messages that the network lost on the way (counted exactly, from
    /// gaps in the link sequence numbers).
    pub dropped: u64,
    /// Its messages received twice (a durable topic's, sent again from its
    /// log after the link came back), dropped.
    #[serde(default)]
    pub duplicates: u64,
    /// Times the link went up and down.
    pub ups: u64,
    pub downs: u64,
    pub last_error: Option<String>,
}

/// The bridge in the statistics (`aether-cli stats --json`, SIGUSR1).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BridgeStats {
    pub name: String,
    /// Whether this broker forwards between others (`relay = true`): its
    /// links then include the brokers it reaches through others.
    #[serde(default)]
    pub relay: bool,
    pub sent: u64,
    pub sent_bytes: u64,
    /// The samples `sent` went in (batches count once).
    #[serde(default)]
    pub sent_samples: u64,
    pub unsent: u64,
    pub refused: u64,
    pub echoes: u64,
    pub links: BTreeMap<String, Link>,
}

impl Counters {
    pub fn snapshot(&self) -> BridgeStats {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut links = self.links.lock().map(|l| l.clone()).unwrap_or_default();
        for (broker, r) in self.received.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            // (Its link was made with it: `received`.)
            if let Some(l) = links.get_mut(broker) {
                l.received += n(&r.messages);
                l.received_bytes += n(&r.bytes);
            }
        }
        BridgeStats {
            name: self.name.clone(),
            relay: self.relay,
            sent: n(&self.sent),
            sent_bytes: n(&self.sent_bytes),
            sent_samples: n(&self.sent_samples),
            unsent: n(&self.unsent),
            refused: n(&self.refused),
            echoes: n(&self.echoes),
            links,
        }
    }

    /// Runs `f` on the link to `broker` (made on first mention).
    pub fn link<R>(&self, broker: &str, f: impl FnOnce(&mut Link) -> R) -> R {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        match links.get_mut(broker) {
            Some(l) => f(l),
            None => f(links.entry(broker.to_string()).or_insert_with(|| Link {
                id: aether::broker_id(broker),
                ..Link::default()
            })),
        }
    }

    /// Where to count `broker`'s messages published here (its link made on
    /// first mention, as by [`link`](Self::link)).
    pub fn received(&self, broker: &str) -> Arc<Received> {
        self.link(broker, |_| ());
        let mut r = self.received.lock().unwrap_or_else(|p| p.into_inner());
        match r.get(broker) {
            Some(r) => Arc::clone(r),
            None => Arc::clone(r.entry(broker.to_string()).or_default()),
        }
    }
}
