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
//!   does not exist), under the rights of the identity configured for its
//!   origin broker (else the default identity), each as a remote record
//!   carrying its origin. With TLS, Zenoh's access control bounds what
//!   each certified broker may put ([`access_control`]). A topic's first message published
//!   gives it a subscriber of its own key and a `TopicIn` holding what
//!   each message needs (its publisher, the rights decided once per
//!   configuration, each origin's numbering and counters), so that a
//!   message costs no lookup by name, lock or allocation of ours.
//! - No loops: a message is sent only from the broker it was published on.
//!   The outbound side skips remote records; for the few that cross
//!   without their origin (no room for it), the inbound side notes their
//!   sequence numbers before committing them, and the outbound side skips
//!   those too. A sample whose origin is this broker is dropped.
//! - Links: each bridge holds a liveliness token `aether-bridge/<name>`, so
//!   every bridge sees the others come and go.

use super::envelope::{Batch, Entry, Envelope, Sent, MAX_BATCH};
use super::{Counters, Received};
use crate::access::{self, Identity};
use crate::config::{Action, BridgeConfig, BridgeTopic, Config};
use crate::state::State;
use aether::{
    broker_id, Client, Deadline, Origin, Policy, Publisher, Start, Status, SubscriberConfig, WaitConfig, WaitStrategy,
    ORIGIN_BYTES,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, Sample, SampleKind};
use zenoh::{Session, Wait};
use zenoh_buffers::{ZBuf, ZSlice, ZSliceBuffer};

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
/// How many times an outbound side looks at an empty ring before it sleeps
/// (a client's default is 2,000). It sleeps almost at once: it reads in
/// bursts (a Zenoh sample's batch, a local publisher's run), and its spin
/// between them took the CPU that the receiving broker's other threads
/// needed (of a `both` topic, every message the inbound side publishes is
/// read, and skipped, by the outbound side): 64 B through two brokers
/// bridged on loopback, on 2 vCPUs, 505-546 k msgs/s with 2,000, 743-894 k
/// with 20 (docs/BENCHMARKS.md). (The inbound side's publisher keeps the
/// default spin: one that slept at a full ring made its subscribers wake
/// it, one way 434-455 k -> 327-336 k msgs/s.)
const OUTBOUND_SPIN: u32 = 20;
/// An outbound side puts the messages already waiting in its ring together,
/// as one [`Batch`], up to this many payload bytes (a message that would
/// take a batch past it goes in the next) or [`MAX_BATCH`] messages.
const BATCH_BYTES: usize = 16 * 1024;
/// Remote brokers (origin names) the inbound side keeps state for; a
/// message from one more is refused. Names are whatever envelopes say,
/// so without this a peer could make the daemon's memory grow with each
/// name it makes up.
const MAX_BROKERS: usize = 256;
/// What a refusal is counted under when its origin is not one kept.
const UNKNOWN_BROKER: &str = "?";

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
    /// Whose rights remote messages have: their origin broker's own
    /// identity, else the default one, else (neither) the daemon's.
    identity: Option<Identity>,
    identities: HashMap<String, Identity>,
    counters: Arc<Counters>,
    /// The state's `config_epoch`: whether the configuration changed since
    /// the inbound side last consulted it.
    config_epoch: Arc<AtomicU64>,
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

/// Zenoh's access control for a bridge with TLS and per-broker identities
/// (docs/BRIDGE.md, "Who may do what"): a peer may put messages only on
/// the topics the identity of the broker its certificate names (its common
/// name) may publish, or the default identity's; anything else Zenoh
/// drops before it reaches the bridge. So a certified broker that claims
/// another's name in its envelopes gets no further than its own rights.
/// Fixed at start: Zenoh's access control does not change while it runs.
fn access_control(
    config: &Config,
    identity: Option<&Identity>,
    identities: &HashMap<String, Identity>,
) -> serde_json::Value {
    let keys = |who: Option<&Identity>| -> Vec<String> {
        match who.and_then(|w| access::granted_patterns(config, w, Action::Publish)) {
            Some(patterns) => patterns.iter().map(|p| key_of(p)).collect(),
            // The daemon's rights (no identity), or every topic.
            None => vec![key_of("*")],
        }
    };
    let rule = |id: String, flows: &[&str], messages: &[&str], keys: Vec<String>| serde_json::json!({ "id": id, "permission": "allow", "flows": flows, "messages": messages, "key_exprs": keys });
    let mut rules = vec![
        rule(
            "declarations".into(),
            &["ingress", "egress"],
            &[
                "declare_subscriber",
                "declare_queryable",
                "query",
                "reply",
                "liveliness_token",
                "declare_liveliness_subscriber",
                "liveliness_query",
            ],
            vec!["**".into()],
        ),
        rule("sent".into(), &["egress"], &["put"], vec!["**".into()]),
        rule("acks".into(), &["ingress"], &["put"], vec![format!("{ACK_PREFIX}**")]),
    ];
    let mut peers = vec!["declarations", "sent", "acks"];
    let default = keys(identity);
    if !default.is_empty() {
        rules.push(rule("in-default".into(), &["ingress"], &["put"], default));
        peers.push("in-default");
    }
    let mut subjects = vec![serde_json::json!({
        "id": "peers",
        "link_protocols": ["tcp", "udp", "tls", "quic", "serial", "unixpipe", "unixsock-stream", "vsock", "ws"],
    })];
    let mut policies = vec![serde_json::json!({ "rules": peers, "subjects": ["peers"] })];
    for (broker, who) in identities {
        let keys = keys(Some(who));
        if keys.is_empty() {
            continue;
        }
        rules.push(rule(format!("in-{broker}"), &["ingress"], &["put"], keys));
        subjects.push(serde_json::json!({ "id": format!("broker-{broker}"), "cert_common_names": [broker] }));
        policies
            .push(serde_json::json!({ "rules": [format!("in-{broker}")], "subjects": [format!("broker-{broker}")] }));
    }
    serde_json::json!({
        "enabled": true,
        "default_permission": "deny",
        "rules": rules,
        "subjects": subjects,
        "policies": policies,
    })
}

fn zenoh_config(cfg: &BridgeConfig, acl: Option<serde_json::Value>) -> Result<zenoh::Config, String> {
    let mut c = zenoh::Config::default();
    let mut set = |k: &str, v: String| c.insert_json5(k, &v).map_err(|e| format!("zenoh setting {k}: {e}"));
    let list = |v: &[String]| serde_json::to_string(v).expect("strings serialize");
    // A relay is a Zenoh router: relays forward for each other (routers
    // find their routes by link state). A peer does not, and a router does
    // not forward between two peers (it takes them for a mesh).
    set("mode", if cfg.relay { r#""router""# } else { r#""peer""# }.into())?;
    // Neither connects to brokers that others tell it of (Zenoh's gossip
    // would, for peers): a bridge's transports are the endpoints named.
    set("scouting/gossip/autoconnect", "[]".into())?;
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
    if let Some(acl) = acl {
        set("access_control", acl.to_string())?;
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
        let of_uid = |uid: u32| {
            let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or(uid, |u| u.gid.as_raw());
            Identity::of_owner(uid, gid)
        };
        let identity = cfg.identity.map(of_uid);
        let identities: HashMap<String, Identity> = cfg
            .identities
            .iter()
            .map(|(b, &uid)| (b.clone(), of_uid(uid)))
            .collect();
        // With TLS, each broker's certificate bounds what it may put.
        let acl = (cfg.tls.is_some() && !identities.is_empty()).then(|| {
            let st = state.lock().unwrap_or_else(|p| p.into_inner());
            access_control(&st.config, identity.as_ref(), &identities)
        });
        if acl.is_some() {
            log::info!("bridge: each certified broker may put only on the topics its identity may publish");
        }
        let session = zenoh::open(zenoh_config(cfg, acl)?)
            .wait()
            .map_err(|e| format!("cannot start Zenoh: {e}"))?;
        let config_epoch = Arc::clone(&state.lock().unwrap_or_else(|p| p.into_inner()).config_epoch);
        let shared = Arc::new(Shared {
            name: name.clone(),
            topics: cfg.topics.clone(),
            socket,
            state,
            identity,
            identities,
            config_epoch,
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
        wait: WaitConfig {
            strategy: WaitStrategy::Futex,
            spin: OUTBOUND_SPIN,
        },
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
    let mut out = Outgoing::default();
    let (mut lost_seen, mut since_stats) = (0u64, 0u32);
    let mut progress = Progress {
        acked,
        received_to: 0,
        committed: 0,
        uncommitted: 0,
    };
    let sender = Sender {
        publisher: &publisher,
        origin: &s.name,
        numbering,
        counters: &s.counters,
        topic,
    };
    log::debug!("bridge: sending {topic:?} out");
    while !s.stopping() {
        if durable && !matched.load(Ordering::Acquire) {
            // Nobody listens: let the ring go; the log keeps the rest.
            progress.uncommitted += out.put(&sender);
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
        // With messages in hand, only what is already waiting joins them.
        let wait = if out.entries.is_empty() {
            Deadline::after(Some(IDLE))
        } else {
            Deadline::from_timeout_ns(0)
        };
        // A view, not a copy: most of what an outbound side skips (echoes)
        // it never copies, and what it sends it copies once.
        match sb.receive_view(&wait) {
            Ok(rec) => {
                since_stats += 1;
                progress.received_to = rec.seq + 1;
                if rec.origin.is_some() || is_echo(&echoes, rec.seq) {
                    let _ = sb.release_view();
                    continue;
                }
                if !matched.load(Ordering::Acquire) {
                    let _ = sb.release_view();
                    progress.uncommitted += out.put(&sender);
                    if durable {
                        // Not committed: sent again from the log once someone listens.
                        sub = None;
                    } else {
                        // Nobody remote listens: the message cannot cross.
                        s.counters.unsent.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                // A large message goes alone (as one does that nothing follows).
                if !out.entries.is_empty() && out.bytes() + rec.len > BATCH_BYTES {
                    progress.uncommitted += out.put(&sender);
                }
                // SAFETY: the view's bytes lie in the mapped ring until
                // release_view, which says whether a lossy publisher
                // overwrote them meanwhile (then the copy is not sent).
                out.add(rec.seq, rec.timestamp_ns, unsafe {
                    std::slice::from_raw_parts(rec.data, rec.len)
                });
                if sb.release_view().is_err() {
                    out.take_back_last();
                    s.counters.unsent.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if out.bytes() >= BATCH_BYTES || out.entries.len() == MAX_BATCH {
                    progress.uncommitted += out.put(&sender);
                }
                if durable && progress.uncommitted >= COMMIT_EVERY {
                    progress.commit(sb, topic);
                }
            }
            // Nothing more waiting: what is in hand goes now.
            Err(e) if e.status == Status::Timeout && !out.entries.is_empty() => {
                progress.uncommitted += out.put(&sender);
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
                progress.uncommitted += out.put(&sender);
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
    out.put(&sender);
    if let Some(sb) = &mut sub {
        if durable {
            progress.commit(sb, topic);
        }
    }
}

/// Where an outbound side puts what it read: its topic's Zenoh publisher,
/// and what each sample's envelope says.
struct Sender<'a> {
    publisher: &'a zenoh::pubsub::Publisher<'a>,
    origin: &'a str,
    numbering: u64,
    counters: &'a Counters,
    topic: &'a str,
}

/// Messages read from the ring and not yet put: their bytes one after
/// another in `buf`, what each batch entry says of them in `entries`.
#[derive(Default)]
struct Outgoing {
    buf: Arc<Vec<u8>>,
    entries: Vec<Entry>,
    /// The next link seq: counts the topic's messages put, from 0.
    link_seq: u64,
}

impl Outgoing {
    /// The payload bytes in hand.
    fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Copies in one more message.
    fn add(&mut self, seq: u64, timestamp_ns: u64, data: &[u8]) {
        if self.entries.is_empty() {
            // The buffer is written again once Zenoh dropped the slices of
            // the last sample (it copies what it sends into its batches),
            // else a new one.
            if Arc::get_mut(&mut self.buf).is_none() {
                self.buf = Arc::new(Vec::new());
            }
            Arc::get_mut(&mut self.buf).expect("just made").clear();
        }
        Arc::get_mut(&mut self.buf)
            .expect("not shared while filling")
            .extend_from_slice(data);
        self.entries.push(Entry {
            seq,
            timestamp_ns,
            len: data.len() as u32,
        });
    }

    /// Forgets the message added last (lapped while it was copied).
    fn take_back_last(&mut self) {
        if let Some(e) = self.entries.pop() {
            let v = Arc::get_mut(&mut self.buf).expect("not shared while filling");
            v.truncate(v.len() - e.len as usize);
        }
    }

    /// Puts what is in hand as one sample: a lone message with its
    /// envelope, several as a [`Batch`] (payload, then the attachment,
    /// in one buffer put as two slices of it). Returns how many messages
    /// were put (0 when none were in hand).
    fn put(&mut self, to: &Sender) -> u32 {
        let n = self.entries.len();
        if n == 0 {
            return 0;
        }
        let v = Arc::get_mut(&mut self.buf).expect("not shared while filling");
        let len = v.len();
        if let [e] = self.entries[..] {
            Envelope {
                origin: to.origin,
                seq: e.seq,
                timestamp_ns: e.timestamp_ns,
                link_seq: self.link_seq,
                numbering: to.numbering,
            }
            .encode_into(v);
        } else {
            Batch::encode_into(to.origin, self.link_seq, to.numbering, &self.entries, v);
        }
        self.entries.clear();
        let (data, env) = (part(&self.buf, 0..len), part(&self.buf, len..self.buf.len()));
        match to.publisher.put(data).attachment(env).wait() {
            Ok(()) => {
                self.link_seq += n as u64;
                to.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                to.counters.sent_bytes.fetch_add(len as u64, Ordering::Relaxed);
                to.counters.sent_samples.fetch_add(1, Ordering::Relaxed);
                n as u32
            }
            Err(e) => {
                to.counters.unsent.fetch_add(n as u64, Ordering::Relaxed);
                log::warn!("bridge: {:?}: {e}", to.topic);
                0
            }
        }
    }
}

/// The bytes `range` of `buf`, as Zenoh takes them (sharing `buf`).
fn part(buf: &Arc<Vec<u8>>, range: std::ops::Range<usize>) -> ZBytes {
    let shared: Arc<dyn ZSliceBuffer> = Arc::clone(buf) as _;
    ZBytes::from(ZBuf::from(
        ZSlice::new(shared, range.start, range.end).expect("a range within the buffer"),
    ))
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
    client: Option<Client>,
    /// Each topic that came in (a valid name an `in` pattern names): its
    /// index in `topics`; at most `limits.max_topics`.
    index: HashMap<String, usize>,
    topics: Vec<TopicIn>,
    /// The origin names messages came from, at most [`MAX_BROKERS`].
    brokers: HashSet<String>,
}

/// A topic that comes in, with all its messages need: one lookup by name
/// reaches it from a pattern's subscriber, none from its own subscriber
/// (which knows its index).
struct TopicIn {
    name: String,
    /// A subscriber of its own, once one of its messages was published,
    /// that takes its samples from then on: Zenoh caches the route of an
    /// exact key, but matches every sample of a pattern's against every
    /// subscription (docs/BENCHMARKS.md, "each side of the bridge alone").
    exact: Option<zenoh::pubsub::Subscriber<()>>,
    publisher: Option<Publisher>,
    /// Its messages published without their origin (`Shared::echoes`),
    /// once there was one.
    echoes: Option<Echoes>,
    /// Each broker it came from; the one of the last message tried first.
    origins: Vec<FromOrigin>,
    by_name: HashMap<String, usize>,
    last: usize,
}

/// One topic from one broker.
struct FromOrigin {
    name: String,
    /// `broker_id(name)`, its messages' origin here.
    id: u64,
    expected: Expected,
    /// Where its messages published here are counted, from the first one.
    received: Option<Arc<Received>>,
    /// Whether its identity may publish here, as the configuration of that
    /// epoch (`State::config_epoch`) said.
    allowed: Option<(u64, Result<(), String>)>,
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

impl TopicIn {
    fn new(name: &str) -> TopicIn {
        TopicIn {
            name: name.to_string(),
            exact: None,
            publisher: None,
            echoes: None,
            origins: Vec::new(),
            by_name: HashMap::new(),
            last: 0,
        }
    }

    /// The index of `env`'s origin in `origins`, added (expecting `env`)
    /// when new; `None` when new here and not among the `brokers` the
    /// bridge keeps, which are [`MAX_BROKERS`] already.
    fn origin(&mut self, env: &Envelope, brokers: &mut HashSet<String>) -> Option<usize> {
        if self.origins.get(self.last).is_some_and(|o| o.name == env.origin) {
            return Some(self.last);
        }
        self.last = match self.by_name.get(env.origin) {
            Some(&i) => i,
            None => {
                if !brokers.contains(env.origin) {
                    if brokers.len() >= MAX_BROKERS {
                        return None;
                    }
                    brokers.insert(env.origin.to_string());
                }
                self.origins.push(FromOrigin {
                    name: env.origin.to_string(),
                    id: broker_id(env.origin),
                    expected: Expected {
                        numbering: env.numbering,
                        link: env.link_seq,
                        seq: env.seq,
                        acked: None,
                    },
                    received: None,
                    allowed: None,
                });
                self.by_name.insert(env.origin.to_string(), self.origins.len() - 1);
                self.origins.len() - 1
            }
        };
        Some(self.last)
    }
}

/// Counts a refused message.
fn refuse(s: &Shared, broker: &str, why: String) {
    s.counters.refused.fetch_add(1, Ordering::Relaxed);
    log::debug!("bridge: refused a message from {broker:?}: {why}");
    s.counters.link(broker, |l| l.last_error = Some(why));
}

impl Inbound {
    fn new(s: Arc<Shared>, session: Session, me: Weak<Mutex<Inbound>>) -> Inbound {
        Inbound {
            s,
            session,
            me,
            client: None,
            index: HashMap::new(),
            topics: Vec::new(),
            brokers: HashSet::new(),
        }
    }

    /// (topic, origin, next seq) of every origin whose topic received more
    /// since its last acknowledgement.
    fn acks_due(&mut self) -> Vec<(String, String, u64)> {
        let mut due = Vec::new();
        for t in &mut self.topics {
            for o in &mut t.origins {
                let e = &mut o.expected;
                if e.acked != Some(e.seq) {
                    e.acked = Some(e.seq);
                    due.push((t.name.clone(), o.name.clone(), e.seq));
                }
            }
        }
        due
    }

    /// A sample through a pattern's subscriber: taken unless its topic has
    /// a subscriber of its own, which the first one published gets. (Both
    /// subscribers' callbacks run on the receiving thread, one sample after
    /// another, under this lock: each sample is taken exactly once.)
    fn take_from_pattern(&mut self, sample: &Sample) {
        let known = (sample.key_expr().as_str().strip_prefix(KEY_PREFIX)).and_then(|t| self.index.get(t).copied());
        if known.is_some_and(|i| self.topics[i].exact.is_some()) {
            return;
        }
        let Some(i) = self.one(known, sample) else {
            return;
        };
        let (me, topic) = (self.me.clone(), &self.topics[i].name);
        match self
            .session
            .declare_subscriber(format!("{KEY_PREFIX}{topic}"))
            .allowed_origin(Locality::Remote)
            .callback(move |sample| {
                if let Some(h) = me.upgrade() {
                    h.lock().unwrap_or_else(|p| p.into_inner()).one(Some(i), &sample);
                }
            })
            .wait()
        {
            Ok(sub) => self.topics[i].exact = Some(sub),
            Err(e) => log::warn!("bridge: zenoh subscriber for {topic:?}: {e}"),
        }
    }

    /// The name a refusal of `origin`'s message is counted under: its own
    /// once the bridge keeps it, else [`UNKNOWN_BROKER`] (made-up names add
    /// no links).
    fn counted_as<'a>(&self, origin: &'a str) -> &'a str {
        if self.brokers.contains(origin) {
            origin
        } else {
            UNKNOWN_BROKER
        }
    }

    /// The index of the topic `key` names, made on its first message;
    /// `None` (refused, counted) when it names none that comes in.
    fn topic_of(&mut self, key: &str, origin: &str) -> Option<usize> {
        let origin = self.counted_as(origin);
        let topic = match key.strip_prefix(KEY_PREFIX) {
            Some(t) if aether::protocol::validate_topic(t).is_ok() => t,
            _ => {
                refuse(&self.s, origin, format!("{key:?} names no topic"));
                return None;
            }
        };
        if let Some(&i) = self.index.get(topic) {
            return Some(i);
        }
        // (Only a topic that comes in is kept: what a peer names outside
        // the patterns costs nothing here.)
        if !self
            .s
            .topics
            .iter()
            .any(|t| t.inbound && access::topic_matches(&t.pattern, topic))
        {
            refuse(&self.s, origin, format!("topic {topic:?} does not come in"));
            return None;
        }
        // (Names a peer makes up cost nothing past the broker's own limit.)
        let max_topics = self
            .s
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .limits
            .max_topics;
        if self.topics.len() >= max_topics {
            refuse(
                &self.s,
                origin,
                format!("topic {topic:?}: {max_topics} topics already come in (limits.max_topics)"),
            );
            return None;
        }
        self.topics.push(TopicIn::new(topic));
        self.index.insert(topic.to_string(), self.topics.len() - 1);
        Some(self.topics.len() - 1)
    }

    /// Publishes one remote sample's messages here (`known`: its topic's
    /// index, when known); the index of its topic when one was published.
    fn one(&mut self, known: Option<usize>, sample: &Sample) -> Option<usize> {
        // (Borrowed when the attachment is one slice, as it is from the network.)
        let attachment = sample.attachment().map(|a| a.to_bytes());
        let sent = match attachment.as_deref().map(Sent::decode) {
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                refuse(&self.s, UNKNOWN_BROKER, e.message);
                return None;
            }
            None => {
                refuse(&self.s, UNKNOWN_BROKER, "a sample without an Aether envelope".into());
                return None;
            }
        };
        if sent.origin() == self.s.name {
            self.s.counters.echoes.fetch_add(sent.count() as u64, Ordering::Relaxed);
            return None;
        }
        let i = match known {
            Some(i) => i,
            None => self.topic_of(sample.key_expr().as_str(), sent.origin())?,
        };
        let payload = sample.payload();
        match sent {
            Sent::One(env) => self.message(i, &env, Payload::Zenoh(payload)),
            Sent::Batch(batch) => {
                if let Err(e) = batch.check_payload(payload.len()) {
                    refuse(&self.s, self.counted_as(batch.origin), e.message);
                    return None;
                }
                // (One slice as it comes from the network, unless Zenoh
                // split the sample: then copied once, here.)
                let bytes = payload.to_bytes();
                let mut published = None;
                for (env, range) in batch.messages() {
                    published = self.message(i, &env, Payload::Bytes(&bytes[range])).or(published);
                }
                published
            }
        }
    }

    /// Publishes one remote message of topic `i` here; `Some(i)` when it was.
    fn message(&mut self, i: usize, env: &Envelope, payload: Payload) -> Option<usize> {
        let Inbound {
            s,
            client,
            topics,
            brokers,
            ..
        } = self;
        let t = &mut topics[i];
        // Exact loss: the origin numbers what it sent on each topic; and
        // what it sent again (a durable topic's, from its log, after a link
        // came back or its broker started again) has a seq already seen. A
        // smaller link number: the origin's bridge of the topic started
        // again, from 0; with another numbering (a topic made anew, or a
        // version 1 envelope, which does not say), so did its seqs.
        let Some(o) = t.origin(env, brokers) else {
            let why = format!(
                "a message from {:?}: {MAX_BROKERS} brokers already send here",
                env.origin
            );
            refuse(s, UNKNOWN_BROKER, why);
            return None;
        };
        let next = &mut t.origins[o].expected;
        if env.numbering != next.numbering || (env.link_seq < next.link && env.numbering == 0) {
            log::info!(
                "bridge: {:?} numbers {:?} anew (numbering {:x} -> {:x}, link {} -> {}, seq {} -> {})",
                env.origin,
                t.name,
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
            s.counters.link(env.origin, |l| {
                l.dropped += gap;
                l.duplicates += 1;
            });
            return None;
        }
        next.seq = env.seq + 1;
        if gap > 0 {
            s.counters.link(env.origin, |l| l.dropped += gap);
        }
        // Whose rights, and the answer, decided once per topic, origin and
        // configuration (a reload moves the epoch on): no lookup by name
        // per message.
        let epoch = s.config_epoch.load(Ordering::Acquire);
        let from = &mut t.origins[o];
        if from.allowed.as_ref().is_none_or(|(e, _)| *e != epoch) {
            from.allowed = Some(match s.identities.get(env.origin).or(s.identity.as_ref()) {
                Some(who) => {
                    let st = s.state.lock().unwrap_or_else(|p| p.into_inner());
                    let allowed =
                        access::authorize(&st.config, who, Action::Publish, Some(&t.name)).map_err(|e| e.message);
                    // (The epoch of the configuration just read.)
                    (st.config_epoch.load(Ordering::Acquire), allowed)
                }
                // No identity: the daemon's own rights.
                None => (epoch, Ok(())),
            });
        }
        if let Some((_, Err(why))) = &from.allowed {
            refuse(s, env.origin, why.clone());
            return None;
        }
        let broker = t.origins[o].id;
        match publish(s, client, t, &payload, env, broker) {
            Ok(()) => {
                let from = &mut t.origins[o];
                let r = from.received.get_or_insert_with(|| s.counters.received(&from.name));
                r.messages.fetch_add(1, Ordering::Relaxed);
                r.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                Some(i)
            }
            Err(e) => {
                refuse(s, env.origin, format!("topic {:?}: {e}", t.name));
                None
            }
        }
    }
}

/// A remote message's bytes: a sample's payload, or one message's part of a batch's.
enum Payload<'a> {
    Zenoh(&'a ZBytes),
    Bytes(&'a [u8]),
}

impl Payload<'_> {
    fn len(&self) -> usize {
        match self {
            Payload::Zenoh(z) => z.len(),
            Payload::Bytes(b) => b.len(),
        }
    }

    /// Copies the bytes to the start of `to` (at least as long).
    fn copy_to(&self, to: &mut [u8]) {
        match self {
            // Straight from Zenoh's buffers, however many.
            Payload::Zenoh(z) => {
                let mut at = 0;
                for part in z.slices() {
                    to[at..at + part.len()].copy_from_slice(part);
                    at += part.len();
                }
            }
            Payload::Bytes(b) => to[..b.len()].copy_from_slice(b),
        }
    }
}

/// Publishes `data` on `t` (made with the configured defaults when
/// missing) as a remote record from `broker`; one without room for its
/// origin goes plain, its sequence number noted as an echo before it is
/// visible.
fn publish(
    s: &Shared,
    client: &mut Option<Client>,
    t: &mut TopicIn,
    data: &Payload,
    env: &Envelope,
    broker: u64,
) -> aether::Result<()> {
    let len = data.len();
    let origin = Origin { broker, seq: env.seq };
    for attempt in 0..2 {
        let p = publisher(s, client, &mut t.publisher, &t.name)?;
        // A message that leaves no room for its origin crosses without it.
        let marked = len + ORIGIN_BYTES <= p.max_message();
        let room = if marked { len + ORIGIN_BYTES } else { len };
        let result = loop {
            match p.loan(room) {
                // Straight from Zenoh's buffers into the ring.
                Ok(buf) => data.copy_to(buf),
                // A full reliable ring: wait on, unless the bridge stops.
                Err(e) if e.status == Status::Timeout && !s.stopping() => continue,
                Err(e) => break Err(e),
            }
            if !marked {
                let seq = p.loan_seq().expect("a loan is outstanding");
                let echoes = t.echoes.get_or_insert_with(|| s.echoes(&t.name));
                echoes.lock().unwrap_or_else(|p| p.into_inner()).push_back(seq);
            }
            break if marked {
                p.commit_from(len, env.timestamp_ns, origin)
            } else {
                p.commit(len)
            }
            .map(|_| ());
        };
        match result {
            // The topic was deleted (or made again): a fresh publisher once.
            Err(e) if attempt == 0 && matches!(e.status, Status::NotFound | Status::Unavailable) => {
                t.publisher = None;
            }
            other => return other,
        }
    }
    unreachable!("the second attempt returns")
}

/// The publisher in `slot`, made (and the topic too, with the configured
/// defaults) when there is none.
fn publisher<'a>(
    s: &Shared,
    client: &mut Option<Client>,
    slot: &'a mut Option<Publisher>,
    topic: &str,
) -> aether::Result<&'a mut Publisher> {
    if let Some(p) = slot {
        return Ok(p);
    }
    if client.is_none() {
        *client = Some(Client::connect_with(Some(&s.socket), false)?);
    }
    let client = client.as_ref().expect("connected");
    let p = match client.publisher(topic) {
        Err(e) if e.status == Status::NotFound => {
            let defaults = s.state.lock().unwrap_or_else(|p| p.into_inner()).config.topic_defaults;
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
    Ok(slot.insert(p))
}
