//! Statistics: a snapshot of the daemon, its topics, subscribers and
//! clients, read from the segments' counters (SIGUSR1, the admin interface).

use crate::state::{SlotKind, State};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::Ordering;

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Stats {
    pub daemon: DaemonStats,
    pub topics: Vec<TopicStats>,
    pub subscribers: Vec<SubscriberStats>,
    pub clients: Vec<ClientStats>,
    /// The bridge to other brokers, when one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<crate::bridge::BridgeStats>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DaemonStats {
    pub version: String,
    pub pid: u32,
    pub instance_id: String,
    pub socket: String,
    pub uptime_s: f64,
    pub topics: usize,
    pub clients: usize,
    pub dead_clients: u64,
    pub segment_bytes: u64,
    pub draining: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct TopicStats {
    pub name: String,
    pub policy: String,
    pub ring_size: u64,
    pub max_message: u64,
    pub publishers: usize,
    pub subscribers: usize,
    /// Messages published so far (the next sequence number).
    pub published: u64,
    /// Messages per second over the last sample (about a second).
    pub rate_msgs_per_s: f64,
    /// Bytes of ring written per second over the last sample: payloads
    /// with their 32-byte record headers, rounded to 64 bytes each.
    pub rate_bytes_per_s: f64,
    /// Sum over current subscribers of what each lost.
    pub lost: u64,
    pub aborted: u64,
    pub overruns: u64,
    pub waits: u64,
    pub space_waits: u64,
    pub wakes: u64,
    /// `none`, or `wal (fsync POLICY)` for a durable topic.
    pub durability: String,
    /// The ring is on 2 MiB huge pages. (Absent from an older daemon's document.)
    #[serde(default)]
    pub huge_pages: bool,
    /// A durable topic's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogStats>,
}

/// A durable topic's write-ahead log.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct LogStats {
    /// Bytes of its files on disk.
    pub bytes: u64,
    /// The oldest message it holds, and the number of the next it will write
    /// (oldest == next: empty).
    pub oldest_seq: u64,
    pub next_seq: u64,
    /// Everything before this one has been synced to disk (fdatasync).
    pub synced_seq: u64,
    pub dir: String,
    /// The retention in force: the log is kept to about this many bytes,
    /// and files whose every message is older than this many seconds are
    /// removed (0: no limit). (Absent from an older daemon's document.)
    #[serde(default)]
    pub retain_bytes: u64,
    #[serde(default)]
    pub retain_seconds: u64,
    /// Where each comes from: `topic` (set when it was created) or `log`
    /// (the daemon's `[log]`, which a reload changes).
    #[serde(default)]
    pub retain_bytes_from: String,
    #[serde(default)]
    pub retain_seconds_from: String,
    /// Durable subscriptions, with what each has committed.
    pub subscriptions: Vec<DurableSubscriptionStats>,
}

/// A durable subscription of a topic.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DurableSubscriptionStats {
    pub name: String,
    /// The seq after the last message it committed.
    pub committed_seq: u64,
    /// Messages published after that.
    pub lag_messages: u64,
    /// Whether a subscriber holds it now.
    pub connected: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SubscriberStats {
    pub topic: String,
    pub slot: u32,
    pub client: u64,
    pub pid: u32,
    pub uid: u32,
    pub delivery: String,
    pub delivered: u64,
    pub lost: u64,
    pub lag_messages: u64,
    pub lag_bytes: u64,
    /// Seconds since it last received a message (or subscribed).
    pub idle_s: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ClientStats {
    pub id: u64,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub connected_s: f64,
    pub publishers: usize,
    pub subscribers: usize,
}

pub(crate) fn collect(s: &State, socket: &Path) -> Stats {
    let mut topics = Vec::new();
    let mut subscribers = Vec::new();
    let mut segment_bytes = 0;
    let mut names: Vec<&String> = s.topics.keys().collect();
    names.sort();
    for name in names {
        let t = &s.topics[name];
        segment_bytes += t.seg.geometry().file_size();
        let (topic, subs) = topic_stats(s, name, t);
        topics.push(topic);
        subscribers.extend(subs);
    }
    let mut clients: Vec<ClientStats> = s
        .clients
        .iter()
        .map(|(id, c)| {
            let held = |kind| s.topics.values().map(|t| t.held_by(kind, *id)).sum();
            ClientStats {
                id: *id,
                pid: c.who.cred.pid,
                uid: c.who.cred.uid,
                gid: c.who.cred.gid,
                connected_s: c.connected.elapsed().as_secs_f64(),
                publishers: held(SlotKind::Publisher),
                subscribers: held(SlotKind::Subscriber),
            }
        })
        .collect();
    clients.sort_by_key(|c| c.id);
    Stats {
        daemon: DaemonStats {
            version: aether::VERSION.into(),
            pid: std::process::id(),
            instance_id: format!("{:016x}", s.instance_id),
            socket: socket.display().to_string(),
            uptime_s: s.started.elapsed().as_secs_f64(),
            topics: s.topics.len(),
            clients: s.clients.len(),
            dead_clients: s.dead_clients,
            segment_bytes,
            draining: s.draining,
        },
        topics,
        subscribers,
        clients,
        bridge: s.bridge.as_ref().map(|b| b.snapshot()),
    }
}

impl Stats {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("stats serialise")
    }

    /// A few lines for the log.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} topics, {} clients ({} died), {} bytes in segments",
            self.daemon.topics, self.daemon.clients, self.daemon.dead_clients, self.daemon.segment_bytes
        );
        for t in &self.topics {
            out.push_str(&format!(
                "\n  topic {}: {} published ({:.0} messages/s, {:.0} bytes/s), {} publishers, {} subscribers, {} lost, {} waits, {} wakes",
                t.name,
                t.published,
                t.rate_msgs_per_s,
                t.rate_bytes_per_s,
                t.publishers,
                t.subscribers,
                t.lost,
                t.waits,
                t.wakes
            ));
        }
        if let Some(b) = &self.bridge {
            out.push_str(&format!(
                "\n  bridge {:?}: {} sent ({} bytes, {} samples), {} unsent, {} refused, {} echoes",
                b.name, b.sent, b.sent_bytes, b.sent_samples, b.unsent, b.refused, b.echoes
            ));
            for (name, l) in &b.links {
                out.push_str(&format!(
                    "\n    link {name:?}: {}, {} received ({} bytes), {} dropped, {} up / {} down{}",
                    if l.up { "up" } else { "down" },
                    l.received,
                    l.received_bytes,
                    l.dropped,
                    l.ups,
                    l.downs,
                    l.last_error
                        .as_ref()
                        .map_or(String::new(), |e| format!(", last error: {e}"))
                ));
            }
        }
        out
    }
}

/// One topic's figures, with its subscribers'.
pub(crate) fn topic_stats(s: &State, name: &str, t: &crate::state::Topic) -> (TopicStats, Vec<SubscriberStats>) {
    let mut subscribers = Vec::new();
    let g = t.seg.geometry();
    let (tail, published) = (
        t.seg.tail().lo.load(Ordering::Acquire),
        t.seg.tail().hi.load(Ordering::Acquire),
    );
    let mut lost: u64 = 0;
    for (i, owner) in t.slots.iter().enumerate() {
        let (Some(client), Some(Some(c))) = (owner, t.cursors.get(i)) else {
            continue;
        };
        let slot = c.page.line();
        let who = s.clients.get(client).map(|c| &c.who.cred);
        let cursor = slot.cursor.load(Ordering::Acquire);
        let l = slot.lost.load(Ordering::Relaxed);
        lost = lost.saturating_add(l);
        subscribers.push(SubscriberStats {
            topic: name.to_string(),
            slot: i as u32,
            client: *client,
            pid: who.map_or(0, |c| c.pid),
            uid: who.map_or(0, |c| c.uid),
            delivery: crate::mqueue::delivery_of(s, t, i as u32).into(),
            delivered: slot.delivered.load(Ordering::Relaxed),
            lost: l,
            lag_messages: published.saturating_sub(slot.next_seq.load(Ordering::Relaxed)),
            lag_bytes: if cursor == aether::segment::SLOT_FREE {
                0
            } else {
                tail.saturating_sub(cursor)
            },
            idle_s: t.activity.get(i).map_or(0.0, |a| a.1.elapsed().as_secs_f64()),
        });
    }
    let st = t.seg.stats();
    let sub_stats = &t.waiters.page().stats;
    let topic = TopicStats {
        name: name.to_string(),
        policy: g.policy.name().to_string(),
        ring_size: g.ring_size,
        max_message: g.max_message,
        publishers: t.pub_slots.iter().filter(|o| o.is_some()).count(),
        subscribers: t.slots.iter().filter(|o| o.is_some()).count(),
        published,
        rate_msgs_per_s: t.rate.msgs_per_s,
        rate_bytes_per_s: t.rate.bytes_per_s,
        lost,
        aborted: st.aborted.load(Ordering::Relaxed),
        overruns: st.overruns.load(Ordering::Relaxed),
        waits: sub_stats.waits.load(Ordering::Relaxed),
        space_waits: st.space_waits.load(Ordering::Relaxed),
        wakes: st.wakes.load(Ordering::Relaxed) + sub_stats.wakes.load(Ordering::Relaxed),
        durability: t
            .durable
            .as_ref()
            .map_or("none".into(), |d| format!("wal (fsync {})", d.fsync)),
        huge_pages: t.seg.geometry().huge_pages,
        log: t.durable.as_ref().map(|d| {
            let ((retain_bytes, retain_seconds), (own_bytes, own_seconds)) = d.retention();
            let from = |own: bool| if own { "topic" } else { "log" }.to_string();
            LogStats {
                bytes: d.bytes.load(Ordering::Relaxed),
                oldest_seq: d.oldest.load(Ordering::Relaxed),
                next_seq: d.mark.lock().map_or(0, |m| m.1),
                synced_seq: d.synced.load(Ordering::Relaxed),
                dir: d.dir.display().to_string(),
                retain_bytes,
                retain_seconds,
                retain_bytes_from: from(own_bytes),
                retain_seconds_from: from(own_seconds),
                subscriptions: d
                    .subscriptions()
                    .into_iter()
                    .map(|(name, committed)| DurableSubscriptionStats {
                        connected: t.names.iter().any(|n| n.as_deref() == Some(name.as_str())),
                        name,
                        committed_seq: committed,
                        lag_messages: published.saturating_sub(committed),
                    })
                    .collect(),
            }
        }),
    };
    (topic, subscribers)
}
