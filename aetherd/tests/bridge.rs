//! The bridge between brokers (docs/BRIDGE.md), across real daemons joined
//! over Zenoh on loopback TCP: messages cross in order and intact, only
//! topics the patterns name cross, nothing comes back (two brokers sending
//! both ways, and a triangle), a remote broker without the right is
//! refused and counted, and a broker killed and started again is rejoined
//! without restarting the other.
//!
//! (Hosts in network namespaces joined by veth pairs, and a cut link, are
//! scripts/bridge-netns.sh's, as root.)

#![cfg(feature = "bridge")]

mod common;

use aether::{Client, Policy, Status, SubscriberConfig, TopicParams};
use common::*;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

fn endpoint(port: u16) -> String {
    format!("tcp/127.0.0.1:{port}")
}

/// A daemon named `name`, bridging `topics`, listening on `listen` and
/// connecting to each of `connect`.
fn broker(name: &str, listen: Option<u16>, connect: &[u16], topics: &[&str], extra: &[&str]) -> Daemon {
    broker_in_home(None, name, listen, connect, topics, extra)
}

/// As [`broker`]; with `home`, its socket and state directory are there, so
/// that a daemon started again there finds its durable topics.
fn broker_in_home(
    home: Option<&std::path::Path>,
    name: &str,
    listen: Option<u16>,
    connect: &[u16],
    topics: &[&str],
    extra: &[&str],
) -> Daemon {
    let dir = TempDir::new(&format!("bridge-{name}"));
    let socket = home.unwrap_or(&dir.0).join("aetherd.sock");
    let mut args: Vec<String> = vec![
        "--socket".into(),
        socket.display().to_string(),
        "--bridge-name".into(),
        name.into(),
        "--log-level".into(),
        "debug".into(),
    ];
    if let Some(p) = listen {
        args.extend(["--bridge-listen".into(), endpoint(p)]);
    }
    for p in connect {
        args.extend(["--bridge-connect".into(), endpoint(*p)]);
    }
    for t in topics {
        args.extend(["--bridge-topics".into(), t.to_string()]);
    }
    if let Some(h) = home {
        args.extend(["--state-dir".into(), h.join("state").display().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    Daemon::start_with(dir, socket, &args, &[])
}

/// The daemon's statistics document (SIGUSR1 writes it beside the socket).
fn stats(d: &Daemon) -> serde_json::Value {
    let file = d.socket.with_file_name("aetherd.stats.json");
    let _ = std::fs::remove_file(&file);
    d.signal(libc::SIGUSR1);
    let mut text = String::new();
    wait_for("the statistics file", Duration::from_secs(10), || {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&text).is_ok()
    });
    serde_json::from_str(&text).unwrap()
}

fn link_up(d: &Daemon, peer: &str) -> bool {
    stats(d)["bridge"]["links"][peer]["up"] == serde_json::Value::Bool(true)
}

fn reliable(c: &Client, topic: &str) {
    let p = TopicParams {
        policy: Policy::Reliable,
        ring_size: 1 << 20,
        max_message: 4096,
        ..TopicParams::default()
    };
    match c.create_topic(topic, &p) {
        Ok(()) => {}
        Err(e) if e.status == Status::Exists => {}
        Err(e) => panic!("create {topic}: {e}"),
    }
}

/// Publishes a probe on `from` every 50 ms until `sub` (on another broker)
/// gets one: the route is open. Returns how many probes went.
fn wait_route(from: &Client, topic: &str, sub: &mut aether::Subscriber) -> u64 {
    let mut p = from.publisher(topic).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    for n in 1.. {
        assert!(Instant::now() < end, "no route for {topic} after 20 s");
        p.publish(b"probe").unwrap();
        if let Some(m) = sub.receive(Some(Duration::from_millis(50))).unwrap() {
            assert_eq!(m.data, b"probe");
            // Drain the probes still on the way.
            while let Some(m) = sub.receive(Some(Duration::from_millis(300))).unwrap() {
                assert_eq!(m.data, b"probe");
            }
            return n;
        }
    }
    unreachable!()
}

#[test]
fn messages_cross_in_order_and_only_named_topics_cross() {
    let port = free_port();
    let a = broker("a", Some(port), &[], &["br.*:out"], &[]);
    let b = broker("b", None, &[port], &["br.*:in"], &[]);
    let (ca, cb) = (a.client(), b.client());
    reliable(&ca, "br.data");
    reliable(&cb, "br.data");
    let mut sub = cb.subscriber("br.data", &SubscriberConfig::default()).unwrap();
    let probes = wait_route(&ca, "br.data", &mut sub);

    let count = 100_000u64;
    let publisher = std::thread::spawn({
        let socket = a.socket.clone();
        move || {
            let c = Client::connect_with(Some(&socket), false).unwrap();
            let mut p = c.publisher("br.data").unwrap();
            p.set_timeout(Some(Duration::from_secs(30)));
            for i in 0..count {
                p.publish(&message(i, size_of_msg(i, 1000))).unwrap();
            }
        }
    });
    for i in 0..count {
        let m = sub
            .receive(Some(Duration::from_secs(30)))
            .unwrap()
            .unwrap_or_else(|| panic!("message {i} did not arrive; b's log:\n{}", b.log()));
        assert_eq!(m.data, message(i, size_of_msg(i, 1000)), "message {i}");
        // Its origin: broker a, and its seq there (after the probes).
        let o = m.origin.expect("a remote message says so");
        assert_eq!((o.broker, o.seq), (aether::broker_id("a"), probes + i));
    }
    publisher.join().unwrap();
    // One published on b itself has no origin.
    cb.publisher("br.data").unwrap().publish(b"local").unwrap();
    let m = sub.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!((m.data.as_slice(), m.origin), (&b"local"[..], None));
    // A message of the topic's max_message leaves no room for its origin: it
    // crosses without one.
    let full = message(7, 4096);
    ca.publisher("br.data").unwrap().publish(&full).unwrap();
    let m = sub.receive(Some(Duration::from_secs(10))).unwrap().unwrap();
    assert_eq!((&m.data, m.origin), (&full, None));

    // A topic no pattern names never leaves; a remote one is counted.
    reliable(&ca, "private");
    ca.publisher("private").unwrap().publish(b"secret").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cb.topic_stats("private").unwrap_err().status, Status::NotFound);
    let sa = stats(&a)["bridge"].clone();
    assert!(sa["sent"].as_u64().unwrap() >= count, "{sa}");
    // The publisher outran the bridge: what waited in the ring crossed in
    // batches, fewer samples than messages.
    assert!(sa["sent_samples"].as_u64().unwrap() < count, "{sa}");
    let sb = stats(&b)["bridge"].clone();
    assert!(sb["links"]["a"]["received"].as_u64().unwrap() >= count, "{sb}");
    assert_eq!(sb["links"]["a"]["dropped"], 0, "{sb}");
    assert_eq!(sb["links"]["a"]["up"], true, "{sb}");
}

/// Each of `brokers` publishes `n` messages `NAME i` on `topic`; each must
/// receive exactly every broker's messages, each once, in each origin's order.
fn everyone_gets_everything_once(brokers: &[(&str, &Daemon)], topic: &str, n: u64) {
    let clients: Vec<Client> = brokers.iter().map(|(_, d)| d.client()).collect();
    for c in &clients {
        reliable(c, topic);
    }
    let mut subs: Vec<aether::Subscriber> = clients
        .iter()
        .map(|c| c.subscriber(topic, &SubscriberConfig::default()).unwrap())
        .collect();
    // Every route open before counting (probes are not counted).
    for (i, c) in clients.iter().enumerate() {
        for (j, sub) in subs.iter_mut().enumerate() {
            if i != j {
                wait_route(c, topic, sub);
            }
        }
    }
    for s in subs.iter_mut() {
        while s.receive(Some(Duration::from_millis(500))).unwrap().is_some() {}
    }
    for ((name, _), c) in brokers.iter().zip(&clients) {
        let mut p = c.publisher(topic).unwrap();
        for i in 0..n {
            p.publish(format!("{name} {i}").as_bytes()).unwrap();
        }
    }
    for ((me, d), s) in brokers.iter().zip(subs.iter_mut()) {
        let mut next: std::collections::HashMap<String, u64> = Default::default();
        let mut total = 0;
        while let Some(m) = s.receive(Some(Duration::from_secs(2))).unwrap() {
            let text = String::from_utf8(m.data).unwrap();
            if text == "probe" {
                continue;
            }
            let (origin, i) = text.split_once(' ').unwrap();
            let want = next.entry(origin.to_string()).or_default();
            assert_eq!(
                i.parse::<u64>().unwrap(),
                *want,
                "{me} got {text:?} out of order or twice"
            );
            *want += 1;
            total += 1;
        }
        assert_eq!(
            total,
            n * brokers.len() as u64,
            "{me} got {next:?}; its bridge: {}",
            stats(d)["bridge"]
        );
    }
}

#[test]
fn nothing_comes_back_between_two_brokers_or_around_a_triangle() {
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = broker("a", Some(pa), &[], &["loop.*"], &[]);
    let b = broker("b", Some(pb), &[pa], &["loop.*"], &[]);
    everyone_gets_everything_once(&[("a", &a), ("b", &b)], "loop.pair", 2000);
    // A message of the topic's max_message crosses without its origin (no
    // room): the noted sequence number keeps it from coming back.
    let (ca, cb) = (a.client(), b.client());
    let mut sa = ca.subscriber("loop.pair", &SubscriberConfig::default()).unwrap();
    let mut sb = cb.subscriber("loop.pair", &SubscriberConfig::default()).unwrap();
    let full = message(3, 4096);
    ca.publisher("loop.pair").unwrap().publish(&full).unwrap();
    for s in [&mut sa, &mut sb] {
        let m = s
            .receive(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("the full message");
        assert_eq!((&m.data, m.origin), (&full, None));
        assert!(
            s.receive(Some(Duration::from_secs(1))).unwrap().is_none(),
            "it came again"
        );
    }
    // c joins both: a full triangle.
    let c = broker("c", Some(pc), &[pa, pb], &["loop.*"], &[]);
    everyone_gets_everything_once(&[("a", &a), ("b", &b), ("c", &c)], "loop.tri", 2000);
    for d in [&a, &b, &c] {
        let s = stats(d)["bridge"].clone();
        assert_eq!(s["refused"], 0, "{s}");
    }
}

/// A configuration file that makes a broker a relay (its directory, removed
/// on drop, and its path).
fn relay_config() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("bridge-relay");
    let config = dir.0.join("aetherd.toml");
    std::fs::write(&config, "[bridge]\nrelay = true\n").unwrap();
    (dir, config)
}

/// A line `a - b - c`: `c` is joined only to `b`, `b` only to `a`. Plain
/// bridges do not relay: `b` gets `a`'s messages, `c` none (nor does `c`
/// connect to `a`, which `b` could tell it of). With `relay = true` (Zenoh's
/// router mode) `b` forwards: each broker gets every other's messages once
/// and in order, `a`'s reaching `c` through `b`; and a triangle of relays
/// still gets each message once.
#[test]
fn relays_carry_messages_along_a_line() {
    let (pa, pb) = (free_port(), free_port());
    {
        let a = broker("a", Some(pa), &[], &["line.*"], &[]);
        let b = broker("b", Some(pb), &[pa], &["line.*"], &[]);
        let c = broker("c", None, &[pb], &["line.*"], &[]);
        let (ca, cb, cc) = (a.client(), b.client(), c.client());
        for cl in [&ca, &cb, &cc] {
            reliable(cl, "line.plain");
        }
        // (b's subscriber made after b's probes to c.)
        let mut sc = cc.subscriber("line.plain", &SubscriberConfig::default()).unwrap();
        wait_route(&cb, "line.plain", &mut sc);
        let mut sb = cb.subscriber("line.plain", &SubscriberConfig::default()).unwrap();
        wait_route(&ca, "line.plain", &mut sb);
        let mut p = ca.publisher("line.plain").unwrap();
        for i in 0..100u32 {
            p.publish(&i.to_le_bytes()).unwrap();
        }
        for i in 0..100u32 {
            let m = sb
                .receive(Some(Duration::from_secs(10)))
                .unwrap()
                .expect("b gets a's message");
            assert_eq!(m.data, i.to_le_bytes());
        }
        assert!(
            sc.receive(Some(Duration::from_secs(2))).unwrap().is_none(),
            "c got a's message through a bridge that does not relay"
        );
        assert!(!link_up(&c, "a"), "c reached a: {}", stats(&c)["bridge"]);
        assert_eq!(stats(&b)["bridge"]["relay"], false);
    }
    let (_dir, config) = relay_config();
    let relay = ["--config", config.to_str().unwrap()];
    let a = broker("a", Some(pa), &[], &["line.*"], &relay);
    let b = broker("b", Some(pb), &[pa], &["line.*"], &relay);
    let c = broker("c", None, &[pb], &["line.*"], &relay);
    everyone_gets_everything_once(&[("a", &a), ("b", &b), ("c", &c)], "line.x", 1000);
    let s = stats(&c)["bridge"].clone();
    assert!(s["relay"] == true && s["links"]["a"]["up"] == true, "{s}");
    // c joins a too: a triangle of relays, every message still once.
    drop(c);
    let c = broker("c", None, &[pa, pb], &["line.*"], &relay);
    everyone_gets_everything_once(&[("a", &a), ("b", &b), ("c", &c)], "line.tri", 1000);
}

/// Publishes `data` with `p` every 50 ms until broker `d` has refused a
/// message (once the route is open); its bridge statistics then.
fn publish_until_refused(p: &mut aether::Publisher, data: &[u8], d: &Daemon) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        p.publish(data).unwrap();
        let s = stats(d)["bridge"].clone();
        if s["refused"].as_u64().unwrap() > 0 {
            return s;
        }
        assert!(Instant::now() < end, "nothing refused: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_remote_broker_without_the_right_is_refused_and_counted() {
    let port = free_port();
    let dir = TempDir::new("bridge-identity");
    let config = dir.0.join("aetherd.toml");
    // Remote messages act as uid 65534, whom no rule lets publish.
    std::fs::write(&config, "[bridge]\nidentity = 65534\n").unwrap();
    let a = broker("a", Some(port), &[], &["guarded"], &[]);
    let b = broker(
        "b",
        None,
        &[port],
        &["guarded"],
        &["--config", config.to_str().unwrap()],
    );
    let (ca, cb) = (a.client(), b.client());
    reliable(&ca, "guarded");
    reliable(&cb, "guarded");
    let mut sub = cb.subscriber("guarded", &SubscriberConfig::default()).unwrap();
    wait_for("the link", Duration::from_secs(20), || {
        link_up(&a, "b") && link_up(&b, "a")
    });
    // The route: a's outbound side matches b's inbound subscriber.
    let mut p = ca.publisher("guarded").unwrap();
    let s = publish_until_refused(&mut p, b"forbidden", &b);
    assert!(
        s["links"]["a"]["last_error"]
            .as_str()
            .unwrap()
            .contains("uid 65534 may not publish"),
        "{s}"
    );
    assert!(sub.receive(Some(Duration::from_millis(300))).unwrap().is_none());
    assert_eq!(cb.topic_stats("guarded").unwrap().published, 0);
    // A reload that grants the right lets the next messages in: what the
    // bridge decided for the topic lasts only as long as the configuration.
    std::fs::write(
        &config,
        "[bridge]\nidentity = 65534\n\n[[access]]\ntopics = [\"guarded\"]\nuids = [65534]\nallow = [\"publish\"]\n",
    )
    .unwrap();
    b.signal(libc::SIGHUP);
    let (mut got, mut bytes) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(20);
    'granted: loop {
        p.publish(b"allowed").unwrap();
        // (A "forbidden" still on the way when the reload came is let in too.)
        while let Some(m) = sub.receive(Some(Duration::from_millis(50))).unwrap() {
            assert!(m.data == b"allowed" || m.data == b"forbidden", "{:?}", m.data);
            (got, bytes) = (got + 1, bytes + m.data.len() as u64);
            if m.data == b"allowed" {
                break 'granted;
            }
        }
        assert!(Instant::now() < end, "nothing let in after the reload: {}", b.log());
    }
    // Every message let in is counted on its link, with its bytes.
    while let Some(m) = sub.receive(Some(Duration::from_millis(500))).unwrap() {
        (got, bytes) = (got + 1, bytes + m.data.len() as u64);
    }
    let l = stats(&b)["bridge"]["links"]["a"].clone();
    assert_eq!(
        (l["received"].as_u64(), l["received_bytes"].as_u64()),
        (Some(got), Some(bytes)),
        "{l}"
    );
    assert_eq!(cb.topic_stats("guarded").unwrap().published, got);
}

/// `[bridge.identities]`: each remote broker's messages have its own
/// identity's rights, the others the default `identity`'s. Of two brokers
/// sending the same topic, the one whose identity may publish it gets in;
/// the other's messages are refused and counted on its own link.
#[test]
fn each_remote_broker_has_its_own_identity() {
    let port = free_port();
    let dir = TempDir::new("bridge-identities");
    let config = dir.0.join("aetherd.toml");
    std::fs::write(
        &config,
        "[bridge]\nidentity = 65534\n\n[bridge.identities]\na = 65533\n\n\
         [[access]]\ntopics = [\"guarded\"]\nuids = [65533]\nallow = [\"publish\"]\n",
    )
    .unwrap();
    let r = broker(
        "r",
        Some(port),
        &[],
        &["guarded"],
        &["--config", config.to_str().unwrap()],
    );
    let a = broker("a", None, &[port], &["guarded"], &[]);
    let c = broker("c", None, &[port], &["guarded"], &[]);
    let (ca, cc, cr) = (a.client(), c.client(), r.client());
    for cl in [&ca, &cc, &cr] {
        reliable(cl, "guarded");
    }
    let mut sub = cr.subscriber("guarded", &SubscriberConfig::default()).unwrap();
    wait_for("the links", Duration::from_secs(20), || {
        link_up(&r, "a") && link_up(&r, "c")
    });
    // c's messages are refused, each counted, on c's link.
    let mut pc = cc.publisher("guarded").unwrap();
    let s = publish_until_refused(&mut pc, b"from c", &r);
    let why = s["links"]["c"]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("uid 65534 may not publish"), "{s}");
    assert!(s["links"]["a"]["last_error"].is_null(), "{s}");
    // a's come in, with their origin; none of c's ever does.
    let mut pa = ca.publisher("guarded").unwrap();
    let mut got = 0u64;
    let end = Instant::now() + Duration::from_secs(20);
    while got < 100 {
        assert!(Instant::now() < end, "only {got} of a's messages came in: {}", r.log());
        pa.publish(b"from a").unwrap();
        pc.publish(b"from c").unwrap();
        while let Some(m) = sub.receive(Some(Duration::from_millis(20))).unwrap() {
            assert_eq!(m.data, b"from a");
            assert_eq!(m.origin.map(|o| o.broker), Some(aether::broker_id("a")));
            got += 1;
        }
    }
    let s = stats(&r)["bridge"].clone();
    assert_eq!(s["links"]["c"]["received"], 0, "{s}");
    assert!(s["links"]["a"]["received"].as_u64().unwrap() >= got, "{s}");
}

#[test]
fn a_broker_killed_and_started_again_is_rejoined() {
    let port = free_port();
    let mut a = broker("a", Some(port), &[], &["re.*"], &[]);
    let b = broker("b", None, &[port], &["re.*"], &[]);
    let cb = b.client();
    reliable(&cb, "re.t");
    let mut sub = cb.subscriber("re.t", &SubscriberConfig::default()).unwrap();
    reliable(&a.client(), "re.t");
    wait_route(&a.client(), "re.t", &mut sub);
    // a dies at once (no goodbye); b notices, and keeps trying.
    a.signal(libc::SIGKILL);
    let _ = a.child.wait();
    wait_for("b to see a down", Duration::from_secs(20), || !link_up(&b, "a"));
    let a2 = broker("a", Some(port), &[], &["re.*"], &[]);
    reliable(&a2.client(), "re.t");
    wait_route(&a2.client(), "re.t", &mut sub);
    let l = stats(&b)["bridge"]["links"]["a"].clone();
    assert!(
        l["ups"].as_u64().unwrap() >= 2 && l["downs"].as_u64().unwrap() >= 1,
        "{l}"
    );
}

// ---------------------------------------------------------------------------
// Hosts in network namespaces (as root): each daemon in its own namespace,
// joined by veth pairs the test makes and removes; traffic only inside them.

/// Network namespaces (and the veth pairs in them), removed on drop.
struct Hosts {
    names: Vec<String>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::process::Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process may make network namespaces (root, `ip` present, a
/// kernel that allows it); says why not.
fn can_make_hosts() -> bool {
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("not root: the namespace test is skipped (the loopback tests above ran)");
        return false;
    }
    let probe = format!("aeth-probe-{}", std::process::id());
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &probe])
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::process::Command::new("ip").args(["netns", "del", &probe]).status();
    if !ok {
        eprintln!("cannot make network namespaces here (no `ip`, or the kernel refuses): skipped");
    }
    ok
}

/// Namespaces `a` and `b` joined by one veth pair: 10.77.N.1 and 10.77.N.2.
fn two_hosts() -> (Hosts, [String; 2], [String; 2], String) {
    let id = std::process::id();
    let (na, nb) = (format!("aeth-a-{id}"), format!("aeth-b-{id}"));
    let hosts = Hosts {
        names: vec![na.clone(), nb.clone()],
    };
    for n in &hosts.names {
        ip(&["netns", "add", n]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    let net = id % 250;
    let (va, vb) = (format!("va{}", id % 100_000), format!("vb{}", id % 100_000));
    ip(&[
        "link", "add", &va, "netns", &na, "type", "veth", "peer", "name", &vb, "netns", &nb,
    ]);
    let addr = |h: u32| format!("10.77.{net}.{h}");
    ip(&["-n", &na, "addr", "add", &format!("{}/24", addr(1)), "dev", &va]);
    ip(&["-n", &nb, "addr", "add", &format!("{}/24", addr(2)), "dev", &vb]);
    ip(&["-n", &na, "link", "set", &va, "up"]);
    ip(&["-n", &nb, "link", "set", &vb, "up"]);
    (hosts, [na, nb], [addr(1), addr(2)], va)
}

/// Namespaces `a`, `b` and `c` in a line: a veth pair joins `a` to `b`
/// (10.78.N.1 and .2), another `b` to `c` (10.79.N.1 and .2); `a` and `c`
/// have no route to each other. Returns `a`'s and `b`'s listening addresses.
fn hosts_in_a_line() -> (Hosts, [String; 3], [String; 2]) {
    let id = std::process::id();
    let names = ["a", "b", "c"].map(|h| format!("aeth-l{h}-{id}"));
    let hosts = Hosts { names: names.to_vec() };
    for n in &names {
        ip(&["netns", "add", n]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    let net = id % 250;
    let mut listen = Vec::new();
    for (k, (l, r)) in [(0, 1), (1, 2)].into_iter().enumerate() {
        let (vl, vr) = (format!("l{k}a{}", id % 100_000), format!("l{k}b{}", id % 100_000));
        ip(&[
            "link", "add", &vl, "netns", &names[l], "type", "veth", "peer", "name", &vr, "netns", &names[r],
        ]);
        let addr = |h: u32| format!("10.{}.{net}.{h}", 78 + k);
        ip(&["-n", &names[l], "addr", "add", &format!("{}/24", addr(1)), "dev", &vl]);
        ip(&["-n", &names[r], "addr", "add", &format!("{}/24", addr(2)), "dev", &vr]);
        ip(&["-n", &names[l], "link", "set", &vl, "up"]);
        ip(&["-n", &names[r], "link", "set", &vr, "up"]);
        listen.push(addr(1));
    }
    let [la, lb]: [String; 2] = listen.try_into().unwrap();
    (hosts, names, [la, lb])
}

/// A daemon inside namespace `ns` (its socket, a path, reachable from here).
fn broker_in(ns: &str, name: &str, args: &[String]) -> Daemon {
    let dir = TempDir::new(&format!("bridge-ns-{name}"));
    let socket = dir.0.join("aetherd.sock");
    let log = std::fs::File::create(dir.0.join("aetherd.log")).unwrap();
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, AETHERD, "--socket"])
        .arg(&socket)
        .args(["--bridge-name", name, "--log-level", "debug"])
        .args(args)
        .env("AETHER_STATE_DIR", dir.0.join("state"))
        .env_remove("AETHER_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start aetherd in a namespace");
    Daemon::adopt(child, socket, dir)
}

#[test]
fn hosts_joined_by_veth_carry_a_topic_through_a_cut_link() {
    if !can_make_hosts() {
        return;
    }
    let (_hosts, [na, nb], [addr_a, _], veth_a) = two_hosts();
    let a = broker_in(
        &na,
        "a",
        &[
            "--bridge-listen".into(),
            format!("tcp/{addr_a}:7447"),
            "--bridge-topics".into(),
            "net.*".into(),
        ],
    );
    let b = broker_in(
        &nb,
        "b",
        &[
            "--bridge-connect".into(),
            format!("tcp/{addr_a}:7447"),
            "--bridge-topics".into(),
            "net.*".into(),
        ],
    );
    let (ca, cb) = (a.client(), b.client());
    reliable(&ca, "net.data");
    reliable(&cb, "net.data");
    let mut sub = cb.subscriber("net.data", &SubscriberConfig::default()).unwrap();
    wait_route(&ca, "net.data", &mut sub);
    let mut p = ca.publisher("net.data").unwrap();
    p.set_timeout(Some(Duration::from_secs(30)));
    let count = 100_000u64;
    let mut i = 0u64;
    let mut expect = 0u64;
    let mut check = |sub: &mut aether::Subscriber, upto: u64| {
        while expect < upto {
            let m = sub
                .receive(Some(Duration::from_secs(30)))
                .unwrap()
                .unwrap_or_else(|| panic!("message {expect} did not arrive; b's log:\n{}", b.log()));
            assert_eq!(m.data, message(expect, size_of_msg(expect, 1000)), "message {expect}");
            expect += 1;
        }
    };
    while i < count / 2 {
        p.publish(&message(i, size_of_msg(i, 1000))).unwrap();
        i += 1;
        if i.is_multiple_of(1000) {
            check(&mut sub, i);
        }
    }
    // The cable is pulled for 3 s (shorter than Zenoh's 10 s lease): what is
    // published meanwhile waits in TCP and arrives once it is back.
    ip(&["-n", &na, "link", "set", &veth_a, "down"]);
    for _ in 0..1000 {
        p.publish(&message(i, size_of_msg(i, 1000))).unwrap();
        i += 1;
    }
    std::thread::sleep(Duration::from_secs(3));
    ip(&["-n", &na, "link", "set", &veth_a, "up"]);
    while i < count {
        p.publish(&message(i, size_of_msg(i, 1000))).unwrap();
        i += 1;
        if i.is_multiple_of(1000) {
            check(&mut sub, i);
        }
    }
    check(&mut sub, count);
    let s = stats(&b)["bridge"]["links"]["a"].clone();
    assert_eq!(s["dropped"], 0, "{s}");
    assert_eq!(stats(&a)["bridge"]["unsent"], 0);
}

// ---------------------------------------------------------------------------
// TLS: only brokers whose certificates the configured authority signed.

/// A certificate authority: its certificate (PEM file `ca.pem` in `dir`) and key.
fn authority(dir: &std::path::Path) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    (ca, key)
}

/// A configuration file for broker `name` whose TLS certificate (common
/// name `name`) `ca` signed; `more` follows in `[bridge]`.
fn tls_config(
    dir: &std::path::Path,
    name: &str,
    ca: &(rcgen::Certificate, rcgen::KeyPair),
    more: &str,
) -> std::path::PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap();
    let (cert_file, key_file) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[bridge]\ntls = {{ root_ca = {:?}, certificate = {:?}, private_key = {:?} }}\n{more}",
            dir.join("ca.pem"),
            cert_file,
            key_file
        ),
    )
    .unwrap();
    config
}

/// Broker `name` bridging `topic` with the TLS configuration `config`,
/// listening (`--bridge-listen`) or connecting (`--bridge-connect`) at `tls`.
fn tls_broker(name: &str, topic: &str, config: &std::path::Path, how: &str, tls: &str) -> Daemon {
    broker(
        name,
        None,
        &[],
        &[topic],
        &["--config", config.to_str().unwrap(), how, tls],
    )
}

#[test]
fn with_tls_a_broker_the_authority_did_not_sign_is_kept_out() {
    let (trusted, stranger) = (TempDir::new("bridge-tls-ca"), TempDir::new("bridge-tls-other-ca"));
    let ca = authority(&trusted.0);
    let other = authority(&stranger.0);
    let (ca_a, ca_b) = (
        tls_config(&trusted.0, "a", &ca, ""),
        tls_config(&trusted.0, "b", &ca, ""),
    );
    let ca_c = tls_config(&stranger.0, "c", &other, "");
    let port = free_port();
    let tls = format!("tls/localhost:{port}");
    let a = tls_broker("a", "sec.*", &ca_a, "--bridge-listen", &tls);
    let b = tls_broker("b", "sec.*", &ca_b, "--bridge-connect", &tls);
    let c = tls_broker("c", "sec.*", &ca_c, "--bridge-connect", &tls);
    let (ca_client, cb, cc) = (a.client(), b.client(), c.client());
    for cl in [&ca_client, &cb, &cc] {
        reliable(cl, "sec.data");
    }
    let mut sub_b = cb.subscriber("sec.data", &SubscriberConfig::default()).unwrap();
    let mut sub_c = cc.subscriber("sec.data", &SubscriberConfig::default()).unwrap();
    let mut sub_a = ca_client.subscriber("sec.data", &SubscriberConfig::default()).unwrap();
    // a and b, signed by the same authority, talk.
    wait_route(&ca_client, "sec.data", &mut sub_b);
    // c, signed by another, neither hears a nor is heard.
    let mut pa = ca_client.publisher("sec.data").unwrap();
    let mut pc = cc.publisher("sec.data").unwrap();
    for _ in 0..20 {
        pa.publish(b"for the trusted").unwrap();
        pc.publish(b"from a stranger").unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    while let Some(m) = sub_c.receive(Some(Duration::from_millis(200))).unwrap() {
        assert_eq!(m.data, b"from a stranger", "c got a message from a");
    }
    while let Some(m) = sub_a.receive(Some(Duration::from_millis(200))).unwrap() {
        assert_ne!(m.data, b"from a stranger", "a got c's message");
    }
    assert!(stats(&a)["bridge"]["links"]["c"].is_null(), "a saw c: {}", stats(&a));
    assert!(stats(&c)["bridge"]["links"]["a"].is_null(), "c saw a: {}", stats(&c));
    assert_eq!(stats(&a)["bridge"]["links"]["b"]["up"], true);
}

/// With TLS and `[bridge.identities]`, a broker's certificate (its common
/// name) bounds what it may put: broker c, certified as "c" but calling
/// itself "a" in its envelopes to borrow a's right to publish, is dropped
/// by Zenoh's access control, while the real a gets in.
#[test]
fn with_tls_a_broker_cannot_borrow_anothers_identity() {
    let dir = TempDir::new("bridge-tls-ids");
    let ca = authority(&dir.0);
    let rights = "identity = 65534\n\n[bridge.identities]\na = 65533\n\n\
                  [[access]]\ntopics = [\"guarded\"]\nuids = [65533]\nallow = [\"publish\"]\n";
    let config_r = tls_config(&dir.0, "r", &ca, rights);
    let (config_a, config_c) = (tls_config(&dir.0, "a", &ca, ""), tls_config(&dir.0, "c", &ca, ""));
    let port = free_port();
    let tls = format!("tls/localhost:{port}");
    let r = tls_broker("r", "guarded", &config_r, "--bridge-listen", &tls);
    let a = tls_broker("a", "guarded", &config_a, "--bridge-connect", &tls);
    // c's certificate says "c"; its bridge says "a".
    let c = tls_broker("a", "guarded", &config_c, "--bridge-connect", &tls);
    let (ca_client, cc, cr) = (a.client(), c.client(), r.client());
    for cl in [&ca_client, &cc, &cr] {
        reliable(cl, "guarded");
    }
    let mut sub = cr.subscriber("guarded", &SubscriberConfig::default()).unwrap();
    wait_route(&ca_client, "guarded", &mut sub);
    let (mut pa, mut pc) = (
        ca_client.publisher("guarded").unwrap(),
        cc.publisher("guarded").unwrap(),
    );
    let mut got = 0u64;
    for _ in 0..40 {
        pa.publish(b"from a").unwrap();
        pc.publish(b"from c").unwrap();
        std::thread::sleep(Duration::from_millis(25));
        while let Some(m) = sub.receive(Some(Duration::from_millis(1))).unwrap() {
            assert_eq!(m.data, b"from a", "c's message came in under a's name");
            got += 1;
        }
    }
    while let Some(m) = sub.receive(Some(Duration::from_millis(500))).unwrap() {
        assert_eq!(m.data, b"from a", "c's message came in under a's name");
        got += 1;
    }
    assert!(got >= 30, "only {got} of a's 40 messages: {}", r.log());
}

#[test]
fn a_durable_topic_delivers_what_was_published_while_the_link_was_down() {
    let port = free_port();
    let (home_a, home_b) = (TempDir::new("bridge-dur-a"), TempDir::new("bridge-dur-b"));
    let durable = TopicParams {
        policy: Policy::Reliable,
        ring_size: 1 << 20,
        max_message: 4096,
        wal: Some(aether::Fsync::Never),
        ..TopicParams::default()
    };
    let a = broker_in_home(Some(&home_a.0), "a", Some(port), &[], &["dur.*"], &[]);
    let mut b = broker_in_home(Some(&home_b.0), "b", None, &[port], &["dur.*"], &[]);
    let (ca, cb) = (a.client(), b.client());
    ca.create_topic("dur.t", &durable).unwrap();
    cb.create_topic("dur.t", &durable).unwrap();
    let mut sub = cb.subscriber("dur.t", &SubscriberConfig::default()).unwrap();
    wait_route(&ca, "dur.t", &mut sub);
    let mut p = ca.publisher("dur.t").unwrap();
    for i in 0..100u64 {
        p.publish(format!("before {i}").as_bytes()).unwrap();
    }
    for i in 0..100u64 {
        let m = sub
            .receive(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("before the cut");
        assert_eq!(m.data, format!("before {i}").as_bytes());
    }
    let next_on_b = cb.topic_stats("dur.t").unwrap().published;
    wait_for("b to log what came from a", Duration::from_secs(10), || {
        cb.topic_stats("dur.t").unwrap().log_next_seq >= next_on_b
    });
    drop((sub, cb));
    // b dies; a sees it go, and publishing there goes on, into a's log.
    b.signal(libc::SIGKILL);
    let _ = b.child.wait();
    wait_for("a to see b down", Duration::from_secs(20), || !link_up(&a, "b"));
    for i in 0..1000u64 {
        p.publish(format!("during {i}").as_bytes()).unwrap();
    }
    // b again, on its state: its topic is back, numbered on; the link returns
    // and a sends what b missed, from its log.
    let b2 = broker_in_home(Some(&home_b.0), "b", None, &[port], &["dur.*"], &[]);
    let cb = b2.client();
    let mut sub = cb
        .subscriber(
            "dur.t",
            &SubscriberConfig {
                start: aether::Start::Seq(next_on_b),
                ..SubscriberConfig::default()
            },
        )
        .unwrap();
    let mut during = 0u64;
    while during < 1000 {
        let m = sub
            .receive(Some(Duration::from_secs(20)))
            .unwrap()
            .unwrap_or_else(|| panic!("only {during} of the 1000 came; a: {}", stats(&a)["bridge"]));
        let text = String::from_utf8(m.data).unwrap();
        if text == "probe" || text.starts_with("before ") {
            continue;
        }
        assert_eq!(text, format!("during {during}"), "in order, none twice");
        during += 1;
    }
    let sa = stats(&a)["bridge"].clone();
    assert_eq!(sa["unsent"], 0, "{sa}");
    // What b logged from a keeps its origin: read back from b's log after
    // its restart, a's messages still say they came from a (so b's bridge,
    // reading history, never sends them back as its own).
    let mut history = cb
        .subscriber(
            "dur.t",
            &SubscriberConfig {
                start: aether::Start::Earliest,
                ..SubscriberConfig::default()
            },
        )
        .unwrap();
    let m = loop {
        let m = history
            .receive(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("b's history");
        if m.data.starts_with(b"before ") {
            break m;
        }
    };
    assert_eq!(m.origin.map(|o| o.broker), Some(aether::broker_id("a")), "{m:?}");
}

/// A hostile Zenoh peer (a plain session, not a broker) puts forged samples
/// on the keys the bridge listens to: none without an envelope, with junk
/// for one, or with this broker's own name as origin is published, and
/// each is counted; keys outside the patterns (one that names no topic,
/// one of a topic not let in) never reach the bridge (Zenoh routes by
/// interest) and make no topic; made-up origin names past 256 are refused,
/// and add nothing to the statistics. The broker serves on.
#[test]
fn forged_samples_from_a_hostile_peer_are_counted_never_published() {
    use zenoh::Wait;
    let port = free_port();
    let a = broker("a", Some(port), &[], &["open.*:in"], &[]);
    let ca = a.client();
    reliable(&ca, "open.t");
    let mut sub = ca.subscriber("open.t", &SubscriberConfig::default()).unwrap();
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", r#""peer""#).unwrap();
    config.insert_json5("scouting/multicast/enabled", "false").unwrap();
    config
        .insert_json5("connect/endpoints", &format!(r#"["{}"]"#, endpoint(port)))
        .unwrap();
    let z = zenoh::open(config).wait().unwrap();
    let envelope = |origin: &str| {
        let mut v = b"AEB\x01".to_vec();
        v.push(origin.len() as u8);
        v.extend_from_slice(origin.as_bytes());
        v.extend_from_slice(&[0u8; 24]);
        v
    };
    let p = z.declare_publisher("aether/open.t").wait().unwrap();
    wait_for("a's subscription to reach the peer", Duration::from_secs(20), || {
        p.matching_status().wait().unwrap().matching()
    });
    p.put(b"no envelope".to_vec()).wait().unwrap();
    p.put(b"junk envelope".to_vec())
        .attachment(b"AEB\x09junk".to_vec())
        .wait()
        .unwrap();
    p.put(b"my own name".to_vec()).attachment(envelope("a")).wait().unwrap();
    z.put("aether/..", b"no topic".to_vec())
        .attachment(envelope("x"))
        .wait()
        .unwrap();
    z.put("aether/closed.t", b"outside".to_vec())
        .attachment(envelope("x"))
        .wait()
        .unwrap();
    // And one well-formed message, to know the others were processed first.
    p.put(b"fine".to_vec()).attachment(envelope("x")).wait().unwrap();
    let m = sub
        .receive(Some(Duration::from_secs(10)))
        .unwrap()
        .expect("the well-formed message");
    assert_eq!(m.data, b"fine", "a forged sample was published");
    assert!(sub.receive(Some(Duration::from_millis(300))).unwrap().is_none());
    let s = stats(&a)["bridge"].clone();
    assert_eq!(s["refused"], 2, "no envelope, junk envelope: {s}");
    assert_eq!(s["echoes"], 1, "its own name: {s}");
    assert_eq!(s["links"]["x"]["received"], 1, "{s}");
    assert_eq!(ca.topic_stats("closed.t").unwrap_err().status, Status::NotFound);
    // Made-up origin names, one per message: the bridge keeps state for
    // 256 brokers (x and 255 of these) and refuses the rest, counted
    // under "?", so that names cost it no memory past that.
    for i in 0..300 {
        p.put(format!("from f{i}").into_bytes())
            .attachment(envelope(&format!("f{i}")))
            .wait()
            .unwrap();
    }
    p.put(b"fine again".to_vec()).attachment(envelope("x")).wait().unwrap();
    let mut got = 0;
    loop {
        let m = sub
            .receive(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("the well-formed messages");
        if m.data == b"fine again" {
            break;
        }
        assert_eq!(m.data, format!("from f{got}").into_bytes());
        got += 1;
    }
    assert_eq!(got, 255);
    let s = stats(&a)["bridge"].clone();
    assert_eq!(s["refused"], 2 + 45, "{s}");
    assert_eq!(
        s["links"].as_object().unwrap().len(),
        1 + 1 + 255,
        "?, x and 255 made-up names: {s}"
    );
    assert!(
        s["links"]["?"]["last_error"].as_str().unwrap().contains("256 brokers"),
        "{s}"
    );

    // Batches (several messages in one sample, from x: the bridge keeps no
    // more brokers now): one whose lengths do not
    // add up to its payload is refused whole; one under a's own name is
    // an echo per message; a well-formed one is published message by
    // message, in order, with its origin's seqs, and a link seq that
    // jumps between batches is counted as dropped.
    use aetherd::bridge::envelope::{Batch, Entry};
    let batch = |origin: &str, link_seq: u64, seqs: &[u64], payload: &[u8], lens: &[u32]| {
        let entries: Vec<Entry> = seqs
            .iter()
            .zip(lens)
            .map(|(&seq, &len)| Entry {
                seq,
                timestamp_ns: 1,
                len,
            })
            .collect();
        let mut v = Vec::new();
        Batch::encode_into(origin, link_seq, 0, &entries, &mut v);
        (payload.to_vec(), v)
    };
    let before = stats(&a)["bridge"].clone();
    let (data, att) = batch("x", 0, &[1, 2], b"onetwo!", &[3, 3]);
    p.put(data).attachment(att).wait().unwrap();
    let (data, att) = batch("a", 0, &[1, 2, 3], b"abc", &[1, 1, 1]);
    p.put(data).attachment(att).wait().unwrap();
    let (data, att) = batch("x", 0, &[10, 11, 12], b"b1b2b3", &[2, 2, 2]);
    p.put(data).attachment(att).wait().unwrap();
    // Link seqs 3 and 4 never came: 2 dropped.
    let (data, att) = batch("x", 5, &[20, 21], b"c1c2", &[2, 2]);
    p.put(data).attachment(att).wait().unwrap();
    for want in ["b1", "b2", "b3", "c1", "c2"] {
        let m = sub.receive(Some(Duration::from_secs(10))).unwrap().expect(want);
        assert_eq!(m.data, want.as_bytes());
        let seq = m.origin.expect("a remote message").seq;
        assert_eq!(
            seq,
            [10, 11, 12, 20, 21][["b1", "b2", "b3", "c1", "c2"].iter().position(|w| *w == want).unwrap()]
        );
    }
    assert!(sub.receive(Some(Duration::from_millis(300))).unwrap().is_none());
    let s = stats(&a)["bridge"].clone();
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(n(&s, "refused"), n(&before, "refused") + 1, "the short payload: {s}");
    assert_eq!(n(&s, "echoes"), n(&before, "echoes") + 3, "its own name: {s}");
    let link = |v: &serde_json::Value, k: &str| v["links"]["x"][k].as_u64().unwrap();
    assert_eq!(link(&s, "received"), link(&before, "received") + 5, "{s}");
    assert_eq!(link(&s, "dropped"), link(&before, "dropped") + 2, "{s}");
    drop(z);
    // Still serving.
    reliable(&ca, "open.after");
}

/// Three hosts in a line, `a - b - c`, where `c` has no route to `a`: with
/// relays, every broker gets every other's messages once and in order,
/// `a`'s reaching `c` (and `c`'s `a`) through `b`.
#[test]
fn relays_carry_messages_across_hosts_in_a_line() {
    if !can_make_hosts() {
        return;
    }
    let (_hosts, [na, nb, nc], [addr_a, addr_b]) = hosts_in_a_line();
    let (_dir, config) = relay_config();
    let args = |listen: Option<&str>, connect: Option<&str>| {
        let mut v = vec![
            "--config".to_string(),
            config.display().to_string(),
            "--bridge-topics".into(),
            "net.*".into(),
        ];
        if let Some(a) = listen {
            v.extend(["--bridge-listen".into(), format!("tcp/{a}:7447")]);
        }
        if let Some(a) = connect {
            v.extend(["--bridge-connect".into(), format!("tcp/{a}:7447")]);
        }
        v
    };
    let a = broker_in(&na, "a", &args(Some(&addr_a), None));
    let b = broker_in(&nb, "b", &args(Some(&addr_b), Some(&addr_a)));
    let c = broker_in(&nc, "c", &args(None, Some(&addr_b)));
    // (Each ring takes all 9,000 before its subscriber reads: a relay
    // whose ring is full holds what it forwards too, docs/BRIDGE.md.)
    everyone_gets_everything_once(&[("a", &a), ("b", &b), ("c", &c)], "net.line", 3000);
}

/// With TLS and identities, each hop's certificate bounds what it may put:
/// in a line of relays `a - b - r`, `a`'s messages reach `r` through `b` on
/// a topic `b`'s identity may publish at `r`, and on one only `a`'s may,
/// not until `r` grants `b`'s identity that right too.
#[test]
fn with_tls_a_relay_forwards_only_what_its_identity_may_publish() {
    for relay_trusted in [false, true] {
        let dir = TempDir::new("bridge-tls-relay");
        let ca = authority(&dir.0);
        let b_is = if relay_trusted { 65533 } else { 65534 };
        let rights = format!(
            "identity = 65534\n\n[bridge.identities]\na = 65533\nb = {b_is}\n\n\
             [[access]]\ntopics = [\"guarded\"]\nuids = [65533]\nallow = [\"publish\"]\n\n\
             [[access]]\ntopics = [\"open\"]\nuids = [65533, 65534]\nallow = [\"publish\"]\n"
        );
        let config_r = tls_config(&dir.0, "r", &ca, &format!("relay = true\n{rights}"));
        let config_b = tls_config(&dir.0, "b", &ca, "relay = true\n");
        let config_a = tls_config(&dir.0, "a", &ca, "relay = true\n");
        let (port_r, port_b) = (free_port(), free_port());
        let (tls_r, tls_b) = (format!("tls/localhost:{port_r}"), format!("tls/localhost:{port_b}"));
        let r = tls_broker("r", "*", &config_r, "--bridge-listen", &tls_r);
        let b = broker(
            "b",
            None,
            &[],
            &["*"],
            &[
                "--config",
                config_b.to_str().unwrap(),
                "--bridge-listen",
                &tls_b,
                "--bridge-connect",
                &tls_r,
            ],
        );
        let a = tls_broker("a", "*", &config_a, "--bridge-connect", &tls_b);
        let (cr, cb, ca_client) = (r.client(), b.client(), a.client());
        for cl in [&cr, &cb, &ca_client] {
            reliable(cl, "open");
            reliable(cl, "guarded");
        }
        let mut open = cr.subscriber("open", &SubscriberConfig::default()).unwrap();
        let mut guarded = cr.subscriber("guarded", &SubscriberConfig::default()).unwrap();
        // a's messages reach r (through b: a is joined to b alone).
        wait_route(&ca_client, "open", &mut open);
        let mut pg = ca_client.publisher("guarded").unwrap();
        for i in 0..20u8 {
            pg.publish(&[i]).unwrap();
        }
        // A message on the open topic after them: once it is in, they
        // would have been too.
        ca_client.publisher("open").unwrap().publish(b"after").unwrap();
        let m = open
            .receive(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("the open message");
        assert_eq!(m.data, b"after");
        let mut got = 0;
        while guarded.receive(Some(Duration::from_millis(500))).unwrap().is_some() {
            got += 1;
        }
        let want = if relay_trusted { 20 } else { 0 };
        assert_eq!(got, want, "relay trusted: {relay_trusted}; r's log:\n{}", r.log());
    }
}
