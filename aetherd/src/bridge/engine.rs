//! The bridge's engine: a Zenoh peer inside the daemon.
//!
//! - Outbound: for each local topic an `out` pattern matches, a thread is a
//!   subscriber of its ring (through the daemon's own socket, like any
//!   client) and puts each message on the Zenoh key `aether/<topic>`, with
//!   an [`Envelope`] as attachment. Reliable topics put with congestion
//!   control `Block` (a slow remote broker slows local publishers, as a
//!   slow local subscriber does), lossy ones with `Drop`.
//! - Inbound: one subscriber per `in` pattern, remote samples only
//!   (`Locality::Remote`), published into the local ring from Zenoh's
//!   receiving thread (the topic made with the configured defaults when it
//!   does not exist), under the configured identity's rights, each as a
//!   remote record carrying its origin.
//! - No loops: a message is sent only from the broker it was published on.
//!   The outbound side skips remote records; for the few that cross
//!   without their origin (no room for it), the inbound side notes their
//!   sequence numbers before committing them, and the outbound side skips
//!   those too. A sample whose origin is this broker is dropped.
//! - Links: each bridge holds a liveliness token `aether-bridge/<name>`, so
//!   every bridge sees the others come and go.

use super::envelope::Envelope;
use super::Counters;
use crate::access::{self, Identity};
use crate::config::{Action, BridgeConfig, BridgeTopic};
use crate::state::State;
use aether::{broker_id, Client, Deadline, Origin, Policy, Publisher, Start, Status, SubscriberConfig, ORIGIN_BYTES};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, Sample, SampleKind};
use zenoh::{Session, Wait};

const KEY_PREFIX: &str = "aether/";
const ALIVE_PREFIX: &str = "aether-bridge/";
/// Acknowledgements: `aether-ack/<origin broker>/<topic>`, a receiver's
/// next seq not yet published from that origin (8 bytes, little-endian).
const ACK_PREFIX: &str = "aether-ack/";
/// How often the bridge looks for new local topics to send out.
const DISCOVER_EVERY: Duration = Duration::from_millis(200);
/// How long a bridge thread waits before it looks at its stop flag.
const IDLE: Duration = Duration::from_millis(100);
/// A durable topic's bridge commits its progress after this many messages
/// sent (and whenever it is idle).
const COMMIT_EVERY: u32 = 1000;

type Echoes = Arc<Mutex<VecDeque<u64>>>;

/// A running bridge; [`Bridge::stop`] (or drop) ends it.
pub struct Bridge {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    // Declarations live as long as these handles.
    _inbound: Vec<zenoh::pubsub::Subscriber<()>>,
    _token: zenoh::liveliness::LivelinessToken,
    _peers: zenoh::pubsub::Subscriber<()>,
    session: Session,
}

struct Shared {
    name: String,
    topics: Vec<BridgeTopic>,
    socket: PathBuf,
    state: Arc<Mutex<State>>,
    identity: Option<Identity>,
    counters: Arc<Counters>,
    stop: AtomicBool,
    /// Per topic: the sequence numbers of the messages the inbound side
    /// published here without their origin (no room for it), oldest
    /// first, which the outbound side must not send back.
    echoes: Mutex<HashMap<String, Echoes>>,
}

impl Shared {
    fn echoes(&self, topic: &str) -> Echoes {
        let mut m = self.echoes.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(topic) {
            Some(q) => Arc::clone(q),
            None => Arc::clone(m.entry(topic.to_string()).or_default()),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The Zenoh key expression of a topic pattern (`t`, `prefix*`, `*`).
fn key_of(pattern: &str) -> String {
    match pattern.strip_suffix('*') {
        Some("") => format!("{KEY_PREFIX}*"),
        Some(prefix) => format!("{KEY_PREFIX}{prefix}$*"),
        None => format!("{KEY_PREFIX}{pattern}"),
    }
}

fn zenoh_config(cfg: &BridgeConfig) -> Result<zenoh::Config, String> {
    let mut c = zenoh::Config::default();
    let mut set = |k: &str, v: String| c.insert_json5(k, &v).map_err(|e| format!("zenoh setting {k}: {e}"));
    let list = |v: &[String]| serde_json::to_string(v).expect("strings serialize");
    set("mode", r#""peer""#.into())?;
    // Only the brokers named, unless asked: no multicast discovery on the
    // networks around.
    set("scouting/multicast/enabled", cfg.multicast.to_string())?;
    set("listen/endpoints", list(&cfg.listen))?;
    set("connect/endpoints", list(&cfg.connect))?;
    // Keep trying a broker that is not (yet, or any more) there.
    set(
        "connect/retry",
        "{ period_init_ms: 250, period_max_ms: 2000, period_increase_factor: 2.0 }".into(),
    )?;
    // A reliable topic's receiver may hold the link back while its local
    // subscribers are slow; Zenoh's default closes it after 5 s of that.
    set(
        "transport/link/tx/queue/congestion_control/block/wait_before_close",
        "60000000".into(),
    )?;
    if let Some(tls) = &cfg.tls {
        let path = |p: &PathBuf| serde_json::to_string(&p.display().to_string()).expect("a string serializes");
        set("transport/link/tls/root_ca_certificate", path(&tls.root_ca))?;
        set("transport/link/tls/listen_certificate", path(&tls.certificate))?;
        set("transport/link/tls/listen_private_key", path(&tls.private_key))?;
        set("transport/link/tls/connect_certificate", path(&tls.certificate))?;
        set("transport/link/tls/connect_private_key", path(&tls.private_key))?;
        set("transport/link/tls/enable_mtls", "true".into())?;
    }
    Ok(c)
}

impl Bridge {
    /// Starts the bridge of the broker whose state is `state` and socket
    /// `socket` (which must already accept connections).
    pub(crate) fn start(
        state: Arc<Mutex<State>>,
        socket: PathBuf,
        cfg: &BridgeConfig,
        counters: Arc<Counters>,
    ) -> Result<Bridge, String> {
        let name = counters.name.clone();
        let identity = cfg.identity.map(|uid| {
            let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or(uid, |u| u.gid.as_raw());
            Identity::of_owner(uid, gid)
        });
        let session = zenoh::open(zenoh_config(cfg)?)
            .wait()
            .map_err(|e| format!("cannot start Zenoh: {e}"))?;
        let shared = Arc::new(Shared {
            name: name.clone(),
            topics: cfg.topics.clone(),
            socket,
            state,
            identity,
            counters,
            stop: AtomicBool::new(false),
            echoes: Mutex::new(HashMap::new()),
        });
        // Links: every bridge's token, ours included (skipped).
        let token = session
            .liveliness()
            .declare_token(format!("{ALIVE_PREFIX}{name}"))
            .wait()
            .map_err(|e| format!("zenoh liveliness token: {e}"))?;
        let s = Arc::clone(&shared);
        let peers = session
            .liveliness()
            .declare_subscriber(format!("{ALIVE_PREFIX}*"))
            .history(true)
            .callback(move |sample: Sample| {
                let Some(peer) = sample.key_expr().as_str().strip_prefix(ALIVE_PREFIX) else {
                    return;
                };
                if peer == s.name {
                    return;
                }
                let up = sample.kind() == SampleKind::Put;
                s.counters.link(peer, |l| {
                    if up && !l.up {
                        l.ups += 1;
                    } else if !up && l.up {
                        l.downs += 1;
                    }
                    l.up = up;
                });
                log::info!("bridge: broker {peer:?} {}", if up { "up" } else { "down" });
            })
            .wait()
            .map_err(|e| format!("zenoh liveliness subscriber: {e}"))?;
        // Inbound: one Zenoh subscriber per `in` pattern, publishing from
        // Zenoh's receiving thread (no hand-off to wake: latency). While a
        // reliable ring is full it waits there, and Zenoh stops reading the
        // link: back-pressure to the sending broker.
        let handler = Arc::new_cyclic(|me| Mutex::new(Inbound::new(Arc::clone(&shared), session.clone(), me.clone())));
        let mut inbound = Vec::new();
        for t in shared.topics.iter().filter(|t| t.inbound) {
            let h = Arc::clone(&handler);
            let sub = session
                .declare_subscriber(key_of(&t.pattern))
                .allowed_origin(Locality::Remote)
                .callback(move |sample| h.lock().unwrap_or_else(|p| p.into_inner()).take_from_pattern(&sample))
                .wait()
                .map_err(|e| format!("zenoh subscriber for {:?}: {e}", t.pattern))?;
            inbound.push(sub);
        }
        let mut threads = Vec::new();
        let (s, z, h) = (Arc::clone(&shared), session.clone(), Arc::clone(&handler));
        threads.push(
            std::thread::Builder::new()
                .name("aetherd-bridge".into())
                .spawn(move || discover(s, z, h))
                .map_err(|e| format!("spawn the bridge's thread: {e}"))?,
        );
        log::info!(
            "bridge {name:?}: zenoh peer {} listening on {:?}, connecting to {:?}; topics {}",
            session.zid(),
            cfg.listen,
            cfg.connect,
            cfg.topics
                .iter()
                .map(|t| format!(
                    "{}:{}",
                    t.pattern,
                    match (t.out, t.inbound) {
                        (true, true) => "both",
                        (true, false) => "out",
                        _ => "in",
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(Bridge {
            shared,
            threads,
            _inbound: inbound,
            _token: token,
            _peers: peers,
            session,
        })
    }

    /// Stops every bridge thread and leaves the Zenoh network.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = self.session.close().wait();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.halt();
        }
    }
}

/// Starts an outbound thread for each local topic an `out` pattern matches
/// (and again when one ended: the topic was deleted and made again).
fn discover(s: Arc<Shared>, session: Session, inbound: Arc<Mutex<Inbound>>) {
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    while !s.stopping() {
        // What arrived from each origin, acknowledged to it (its durable
        // topics' bridges commit only that far).
        let acks = inbound.lock().unwrap_or_else(|p| p.into_inner()).acks_due();
        for (topic, origin, next) in acks {
            let _ = session
                .put(format!("{ACK_PREFIX}{origin}/{topic}"), next.to_le_bytes().to_vec())
                .allowed_destination(Locality::Remote)
                .wait();
        }
        let topics: Vec<(String, Policy, bool, u64)> = {
            let st = s.state.lock().unwrap_or_else(|p| p.into_inner());
            st.topics
                .iter()
                .filter(|(name, _)| {
                    s.topics
                        .iter()
                        .any(|t| t.out && access::topic_matches(&t.pattern, name))
                })
                .map(|(name, t)| {
                    // What names the topic's numbering (see `Envelope::numbering`).
                    let numbering = t.durable.as_ref().map_or(t.seg.geometry().salt, |d| d.log_id);
                    (name.clone(), t.seg.geometry().policy, t.durable.is_some(), numbering)
                })
                .collect()
        };
        running.retain(|_, h| !h.is_finished());
        for (topic, policy, durable, numbering) in topics {
            if running.contains_key(&topic) {
                continue;
            }
            let (s2, z, t) = (Arc::clone(&s), session.clone(), topic.clone());
            match std::thread::Builder::new()
                .name(format!("aetherd-bridge-{}", &topic[..topic.len().min(3)]))
                .spawn(move || outbound(&s2, &z, &t, policy, durable, numbering))
            {
                Ok(h) => {
                    running.insert(topic, h);
                }
                Err(e) => log::error!("bridge: cannot start a thread for {topic:?}: {e}"),
            }
        }
        std::thread::sleep(DISCOVER_EVERY);
    }
    for (_, h) in running {
        let _ = h.join();
    }
}

/// Sends `topic`'s local messages to the other brokers until the topic ends
/// or the bridge stops. A durable topic is read through a durable
/// subscription (`bridge.<name>`), committed up to what a remote broker
/// acknowledged, every [`COMMIT_EVERY`] sent messages and when idle (so a
/// message still in Zenoh's queues when this daemon dies is sent again
/// after its restart): while no remote broker listens the bridge lets go
/// of the ring (so it holds no publisher back) and, when one listens again,
/// resumes from the last commit, so what was published meanwhile is
/// delivered from the log. (What it sends twice, receivers drop by seq.)
fn outbound(s: &Shared, session: &Session, topic: &str, policy: Policy, durable: bool, numbering: u64) {
    let client = match Client::connect_with(Some(&s.socket), false) {
        Ok(c) => c,
        Err(e) => return log::warn!("bridge: cannot send {topic:?} out: {e}"),
    };
    let cfg = SubscriberConfig {
        start: if durable {
            Start::Durable(format!("bridge.{}", s.name))
        } else {
            Start::Latest
        },
        // A durable lossy topic's publishers may lap the bridge: it sends
        // what it missed from the log rather than nothing.
        fill_gaps: durable,
        ..SubscriberConfig::default()
    };
    let publisher = match session
        .declare_publisher(format!("{KEY_PREFIX}{topic}"))
        .congestion_control(match policy {
            Policy::Reliable => CongestionControl::Block,
            Policy::Lossy => CongestionControl::Drop,
        })
        .allowed_destination(Locality::Remote)
        .wait()
    {
        Ok(p) => p,
        Err(e) => return log::warn!("bridge: cannot send {topic:?} out: {e}"),
    };
    let matched = Arc::new(AtomicBool::new(
        publisher.matching_status().wait().is_ok_and(|m| m.matching()),
    ));
    let m = Arc::clone(&matched);
    let _listener = publisher
        .matching_listener()
        .callback(move |st| m.store(st.matching(), Ordering::Release))
        .wait();
    let echoes = s.echoes(topic);
    // A durable topic commits only what a remote broker acknowledged (its
    // next seq not yet published from here): a message put but still in
    // Zenoh's queues when this daemon dies is sent again after its restart.
    let acked = Arc::new(AtomicU64::new(0));
    let a = Arc::clone(&acked);
    let _acks = durable.then(|| {
        session
            .declare_subscriber(format!("{ACK_PREFIX}{}/{topic}", s.name))
            .allowed_origin(Locality::Remote)
            .callback(move |sample| {
                if let Ok(b) = <[u8; 8]>::try_from(&*sample.payload().to_bytes()) {
                    a.fetch_max(u64::from_le_bytes(b), Ordering::AcqRel);
                }
            })
            .wait()
    });
    let mut sub: Option<aether::Subscriber> = None;
    let (mut link_seq, mut lost_seen, mut since_stats) = (0u64, 0u64, 0u32);
    let mut progress = Progress {
        acked,
        received_to: 0,
        committed: 0,
        uncommitted: 0,
    };
    log::debug!("bridge: sending {topic:?} out");
    while !s.stopping() {
        if durable && !matched.load(Ordering::Acquire) {
            // Nobody listens: let the ring go; the log keeps the rest.
            if sub.take().is_some() {
                log::debug!("bridge: {topic:?}: no remote listener; resuming from the log later");
            }
            std::thread::sleep(IDLE);
            continue;
        }
        let sb = match &mut sub {
            Some(sb) => sb,
            None => match client.subscriber(topic, &cfg) {
                Ok(sb) => {
                    lost_seen = sb.stats().lost;
                    sub.insert(sb)
                }
                Err(e) if matches!(e.status, Status::NotFound | Status::Shutdown | Status::Unavailable) => break,
                Err(e) => {
                    log::warn!("bridge: cannot send {topic:?} out: {e}");
                    std::thread::sleep(IDLE * 10);
                    continue;
                }
            },
        };
        // A view, not a copy: most of what an outbound side skips (echoes)
        // it never copies, and what it sends it copies once.
        match sb.receive_view(&Deadline::after(Some(IDLE))) {
            Ok(rec) => {
                since_stats += 1;
                progress.received_to = rec.seq + 1;
                if rec.origin.is_some() || is_echo(&echoes, rec.seq) {
                    let _ = sb.release_view();
                    continue;
                }
                if !matched.load(Ordering::Acquire) {
                    let _ = sb.release_view();
                    if durable {
                        // Not committed: sent again from the log once someone listens.
                        sub = None;
                    } else {
                        // Nobody remote listens: the message cannot cross.
                        s.counters.unsent.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                // SAFETY: the view's bytes lie in the mapped ring until
                // release_view, which says whether a lossy publisher
                // overwrote them meanwhile (then the copy is not sent).
                let data = unsafe { std::slice::from_raw_parts(rec.data, rec.len) }.to_vec();
                if sb.release_view().is_err() {
                    s.counters.unsent.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let env = Envelope {
                    origin: s.name.clone(),
                    seq: rec.seq,
                    timestamp_ns: rec.timestamp_ns,
                    link_seq,
                    numbering,
                };
                let len = data.len() as u64;
                match publisher.put(data).attachment(env.encode()).wait() {
                    Ok(()) => {
                        link_seq += 1;
                        progress.uncommitted += 1;
                        s.counters.sent.fetch_add(1, Ordering::Relaxed);
                        s.counters.sent_bytes.fetch_add(len, Ordering::Relaxed);
                    }
                    Err(e) => {
                        s.counters.unsent.fetch_add(1, Ordering::Relaxed);
                        log::warn!("bridge: {topic:?}: {e}");
                    }
                }
                if durable && progress.uncommitted >= COMMIT_EVERY {
                    progress.commit(sb, topic);
                }
            }
            Err(e) if e.status == Status::Timeout => {
                since_stats = u32::MAX;
                // (Acknowledgements come after the messages: look again while idle.)
                if durable {
                    progress.commit(sb, topic);
                }
            }
            Err(e) if matches!(e.status, Status::NotFound | Status::Shutdown | Status::Unavailable) => {
                log::debug!("bridge: {topic:?} ends ({e})");
                break;
            }
            Err(e) => {
                log::warn!("bridge: receiving {topic:?}: {e}");
                std::thread::sleep(IDLE);
            }
        }
        // What a lossy ring lapped before the bridge read it never left.
        if since_stats >= 256 {
            if let Some(sb) = &sub {
                let lost = sb.stats().lost;
                s.counters
                    .unsent
                    .fetch_add(lost.saturating_sub(lost_seen), Ordering::Relaxed);
                (lost_seen, since_stats) = (lost, 0);
            }
        }
    }
    if let Some(sb) = &mut sub {
        if durable {
            progress.commit(sb, topic);
        }
    }
}

/// Where a durable topic's bridge stands: what a remote broker acknowledged
/// (its next seq not yet published from here), the next seq received here,
/// what was last committed, and how many were sent since.
struct Progress {
    acked: Arc<AtomicU64>,
    received_to: u64,
    committed: u64,
    uncommitted: u32,
}

impl Progress {
    /// Commits every message before the acknowledged one (of those received
    /// here): they crossed.
    fn commit(&mut self, sub: &mut aether::Subscriber, topic: &str) {
        self.uncommitted = 0;
        let to = self.acked.load(Ordering::Acquire).min(self.received_to);
        if to <= self.committed {
            return;
        }
        match sub.commit_to(to) {
            Ok(()) => self.committed = to,
            Err(e) => log::warn!("bridge: {topic:?}: commit: {e}"),
        }
    }
}

/// Whether `seq` is a message the inbound side published (and forgets
/// those before it: the outbound side reads in order).
fn is_echo(echoes: &Echoes, seq: u64) -> bool {
    let mut q = echoes.lock().unwrap_or_else(|p| p.into_inner());
    while q.front().is_some_and(|&f| f < seq) {
        q.pop_front();
    }
    if q.front() == Some(&seq) {
        q.pop_front();
        return true;
    }
    false
}

/// Publishes remote messages into local topics.
struct Inbound {
    s: Arc<Shared>,
    session: Session,
    /// Itself, for the callbacks of the subscribers it declares.
    me: Weak<Mutex<Inbound>>,
    /// The topics that came in through a pattern's subscriber, each with a
    /// subscriber of its own that takes its samples from then on: Zenoh
    /// caches the route of an exact key, but matches every sample of a
    /// pattern's against every subscription (docs/BRIDGE.md, "Throughput").
    exact: HashMap<String, zenoh::pubsub::Subscriber<()>>,
    client: Option<Client>,
    publishers: HashMap<String, Publisher>,
    /// Where each topic from each broker stands.
    expected: HashMap<String, HashMap<String, Expected>>,
}

/// One topic from one broker: its numbering (`Envelope::numbering`), the
/// next link sequence number expected, the next message sequence number
/// not yet published, and the one last acknowledged to the origin.
struct Expected {
    numbering: u64,
    link: u64,
    seq: u64,
    acked: Option<u64>,
}

impl Inbound {
    fn new(s: Arc<Shared>, session: Session, me: Weak<Mutex<Inbound>>) -> Inbound {
        Inbound {
            s,
            session,
            me,
            exact: HashMap::new(),
            client: None,
            publishers: HashMap::new(),
            expected: HashMap::new(),
        }
    }

    /// (topic, origin, next seq) of every origin whose topic received more
    /// since its last acknowledgement.
    fn acks_due(&mut self) -> Vec<(String, String, u64)> {
        let mut due = Vec::new();
        for (topic, origins) in &mut self.expected {
            for (origin, e) in origins {
                if e.acked != Some(e.seq) {
                    e.acked = Some(e.seq);
                    due.push((topic.clone(), origin.clone(), e.seq));
                }
            }
        }
        due
    }

    /// Counts a refused message (false: not published).
    fn refuse(&self, broker: &str, why: String) -> bool {
        self.s.counters.refused.fetch_add(1, Ordering::Relaxed);
        log::debug!("bridge: refused a message from {broker:?}: {why}");
        self.s.counters.link(broker, |l| l.last_error = Some(why));
        false
    }

    /// A sample through a pattern's subscriber: taken unless its topic has
    /// a subscriber of its own, which the first one published gets. (Both
    /// subscribers' callbacks run on the receiving thread, one sample after
    /// another, under this lock: each sample is taken exactly once.)
    fn take_from_pattern(&mut self, sample: &Sample) {
        let topic = sample.key_expr().as_str().strip_prefix(KEY_PREFIX);
        if topic.is_some_and(|t| self.exact.contains_key(t)) {
            return;
        }
        if let (true, Some(topic)) = (self.one(sample), topic) {
            let me = self.me.clone();
            match self
                .session
                .declare_subscriber(format!("{KEY_PREFIX}{topic}"))
                .allowed_origin(Locality::Remote)
                .callback(move |sample| {
                    if let Some(h) = me.upgrade() {
                        h.lock().unwrap_or_else(|p| p.into_inner()).one(&sample);
                    }
                })
                .wait()
            {
                Ok(sub) => {
                    self.exact.insert(topic.to_string(), sub);
                }
                Err(e) => log::warn!("bridge: zenoh subscriber for {topic:?}: {e}"),
            }
        }
    }

    /// Publishes one remote sample here; whether it was.
    fn one(&mut self, sample: &Sample) -> bool {
        let env = match sample.attachment().map(|a| Envelope::decode(&a.to_bytes())) {
            Some(Ok(e)) => e,
            Some(Err(e)) => return self.refuse("?", e.message),
            None => return self.refuse("?", "a sample without an Aether envelope".into()),
        };
        if env.origin == self.s.name {
            self.s.counters.echoes.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let key = sample.key_expr().as_str();
        let topic = match key.strip_prefix(KEY_PREFIX) {
            Some(t) if aether::protocol::validate_topic(t).is_ok() => t,
            _ => return self.refuse(&env.origin, format!("{key:?} names no topic")),
        };
        if !self
            .s
            .topics
            .iter()
            .any(|t| t.inbound && access::topic_matches(&t.pattern, topic))
        {
            return self.refuse(&env.origin, format!("topic {topic:?} does not come in"));
        }
        // Exact loss: the origin numbers what it sent on each topic; and
        // what it sent again (a durable topic's, from its log, after a link
        // came back or its broker started again) has a seq already seen. A
        // smaller link number: the origin's bridge of the topic started
        // again, from 0; with another numbering (a topic made anew, or a
        // version 1 envelope, which does not say), so did its seqs.
        let next = match self.expected.get_mut(topic).and_then(|m| m.get_mut(&env.origin)) {
            Some(n) => n,
            None => self
                .expected
                .entry(topic.to_string())
                .or_default()
                .entry(env.origin.clone())
                .or_insert(Expected {
                    numbering: env.numbering,
                    link: env.link_seq,
                    seq: env.seq,
                    acked: None,
                }),
        };
        if env.numbering != next.numbering || (env.link_seq < next.link && env.numbering == 0) {
            log::info!(
                "bridge: {:?} numbers {topic:?} anew (numbering {:x} -> {:x}, link {} -> {}, seq {} -> {})",
                env.origin,
                next.numbering,
                env.numbering,
                next.link,
                env.link_seq,
                next.seq,
                env.seq
            );
            (next.numbering, next.link, next.seq) = (env.numbering, env.link_seq, env.seq);
        } else if env.link_seq < next.link {
            next.link = env.link_seq;
        }
        let gap = env.link_seq - next.link;
        next.link = env.link_seq + 1;
        if env.seq < next.seq {
            self.s.counters.link(&env.origin, |l| {
                l.dropped += gap;
                l.duplicates += 1;
            });
            return false;
        }
        next.seq = env.seq + 1;
        if gap > 0 {
            self.s.counters.link(&env.origin, |l| l.dropped += gap);
        }
        if let Some(who) = &self.s.identity {
            let st = self.s.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = access::authorize(&st.config, who, Action::Publish, Some(topic)) {
                drop(st);
                return self.refuse(&env.origin, e.message);
            }
        }
        let payload = sample.payload().to_bytes();
        match self.publish(topic, &payload, &env) {
            Ok(()) => {
                self.s.counters.link(&env.origin, |l| {
                    l.received += 1;
                    l.received_bytes += payload.len() as u64;
                });
                true
            }
            Err(e) => self.refuse(&env.origin, format!("topic {topic:?}: {e}")),
        }
    }

    /// Publishes `data` on `topic` (made with the configured defaults when
    /// missing) as a remote record; one without room for its origin goes
    /// plain, its sequence number noted as an echo before it is visible.
    fn publish(&mut self, topic: &str, data: &[u8], env: &Envelope) -> aether::Result<()> {
        let s = Arc::clone(&self.s);
        let origin = Origin {
            broker: broker_id(&env.origin),
            seq: env.seq,
        };
        for attempt in 0..2 {
            let p = self.publisher(topic)?;
            // A message that leaves no room for its origin crosses without it.
            let marked = data.len() + ORIGIN_BYTES <= p.max_message();
            let room = if marked { data.len() + ORIGIN_BYTES } else { data.len() };
            let result = loop {
                match p.loan(room) {
                    Ok(buf) => buf[..data.len()].copy_from_slice(data),
                    // A full reliable ring: wait on, unless the bridge stops.
                    Err(e) if e.status == Status::Timeout && !s.stopping() => continue,
                    Err(e) => break Err(e),
                }
                if !marked {
                    let seq = p.loan_seq().expect("a loan is outstanding");
                    s.echoes(topic).lock().unwrap_or_else(|p| p.into_inner()).push_back(seq);
                }
                break if marked {
                    p.commit_from(data.len(), env.timestamp_ns, origin)
                } else {
                    p.commit(data.len())
                }
                .map(|_| ());
            };
            match result {
                // The topic was deleted (or made again): a fresh publisher once.
                Err(e) if attempt == 0 && matches!(e.status, Status::NotFound | Status::Unavailable) => {
                    self.publishers.remove(topic);
                }
                other => return other,
            }
        }
        unreachable!("the second attempt returns")
    }

    fn publisher(&mut self, topic: &str) -> aether::Result<&mut Publisher> {
        if !self.publishers.contains_key(topic) {
            if self.client.is_none() {
                self.client = Some(Client::connect_with(Some(&self.s.socket), false)?);
            }
            let client = self.client.as_ref().expect("connected");
            let p = match client.publisher(topic) {
                Err(e) if e.status == Status::NotFound => {
                    let defaults = self
                        .s
                        .state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .config
                        .topic_defaults;
                    match client.create_topic(topic, &defaults) {
                        Ok(()) => log::info!("bridge: made topic {topic:?} ({defaults}) for remote messages"),
                        Err(e) if e.status == Status::Exists => {}
                        Err(e) => return Err(e),
                    }
                    client.publisher(topic)?
                }
                other => other?,
            };
            let mut p = p;
            p.set_timeout(Some(IDLE));
            self.publishers.insert(topic.to_string(), p);
        }
        Ok(self.publishers.get_mut(topic).expect("inserted"))
    }
}
