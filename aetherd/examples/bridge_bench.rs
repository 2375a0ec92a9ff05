//! The roles of scripts/bridge-bench.sh: latency (ping/pong) and throughput
//! (source/sink) through two brokers bridged over Zenoh, through plain Zenoh
//! sessions (the floor the bridge is held to), and through one broker's ring.
//!
//!   bridge_bench zenoh-pong LISTEN | zenoh-sink LISTEN N SIZE [KEY]
//!   bridge_bench zenoh-ping CONNECT N SIZE | zenoh-source CONNECT N SIZE [KEY [envelope]]
//!   bridge_bench aether-pong SOCKET | aether-sink SOCKET N SIZE
//!   bridge_bench aether-ping SOCKET N SIZE | aether-source SOCKET N SIZE
//!
//! A ping prints `p50_ns= p99_ns= p999_ns=` (one way: round trip / 2); a
//! sink prints `msgs_per_s= bytes_per_s=` (first message to last).
//!
//! With a KEY (`aether/TOPIC`) the Zenoh roles stand in for one broker's
//! bridge, to time each side of a bridged link alone: a `zenoh-sink` for
//! the receiving broker, a `zenoh-source ... envelope` for the sending one
//! (each sample carries an envelope, as a bridge's do).

use aether::{Client, Policy, SubscriberConfig, TopicParams};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn session(listen: Option<&str>, connect: Option<&str>) -> Res<zenoh::Session> {
    let mut c = zenoh::Config::default();
    c.insert_json5("mode", r#""peer""#)?;
    c.insert_json5("scouting/multicast/enabled", "false")?;
    if let Some(l) = listen {
        c.insert_json5("listen/endpoints", &format!(r#"["{l}"]"#))?;
    }
    if let Some(e) = connect {
        c.insert_json5("connect/endpoints", &format!(r#"["{e}"]"#))?;
        c.insert_json5("connect/retry", "{ period_init_ms: 100, period_max_ms: 500 }")?;
    }
    zenoh::open(c).wait()
}

fn percentiles(mut v: Vec<u64>) -> String {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    format!("p50_ns={} p99_ns={} p999_ns={}", p(0.5), p(0.99), p(0.999))
}

fn rate(n: u64, size: u64, secs: f64) -> String {
    let r = (n - 1) as f64 / secs.max(1e-9);
    format!("msgs_per_s={r:.0} bytes_per_s={:.0}", r * size as f64)
}

fn topic(c: &Client, name: &str, size: u64) -> Res<()> {
    let p = TopicParams {
        policy: Policy::Reliable,
        ring_size: (size * 64).next_power_of_two().max(1 << 20),
        // Room for the origin a bridged message carries.
        max_message: size.max(64) + aether::ORIGIN_BYTES as u64,
        ..TopicParams::default()
    };
    match c.create_topic(name, &p) {
        Err(e) if e.status != aether::Status::Exists => Err(e.into()),
        _ => Ok(()),
    }
}

fn main() -> Res<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> u64 { a[i].parse().expect("a number") };
    let warm = |n: u64| n / 10;
    match a[0].as_str() {
        "zenoh-pong" => {
            let s = session(Some(&a[1]), None)?;
            let p = s
                .declare_publisher("bench/pong")
                .congestion_control(CongestionControl::Block)
                .express(true)
                .wait()?;
            let _sub = s
                .declare_subscriber("bench/ping")
                .callback(move |sample| {
                    let _ = p.put(sample.payload().to_bytes().into_owned()).wait();
                })
                .wait()?;
            std::thread::sleep(Duration::from_secs(3600));
        }
        "zenoh-ping" => {
            let (n, size) = (num(2), num(3) as usize);
            let s = session(None, Some(&a[1]))?;
            let (tx, rx) = mpsc::sync_channel::<()>(1);
            let _sub = s
                .declare_subscriber("bench/pong")
                .callback(move |_| {
                    let _ = tx.send(());
                })
                .wait()?;
            let p = s
                .declare_publisher("bench/ping")
                .congestion_control(CongestionControl::Block)
                .express(true)
                .wait()?;
            // Until the pong answers.
            loop {
                p.put(vec![0u8; size]).wait()?;
                if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                    break;
                }
            }
            while rx.recv_timeout(Duration::from_millis(200)).is_ok() {}
            let mut v = Vec::new();
            for i in 0..n + warm(n) {
                let t = Instant::now();
                p.put(vec![0u8; size]).wait()?;
                rx.recv_timeout(Duration::from_secs(10))?;
                if i >= warm(n) {
                    v.push(t.elapsed().as_nanos() as u64 / 2);
                }
            }
            println!("{}", percentiles(v));
        }
        "zenoh-sink" => {
            let (n, size) = (num(2), num(3));
            let s = session(Some(&a[1]), None)?;
            let (tx, rx) = mpsc::sync_channel::<Instant>(2);
            let seen = std::sync::atomic::AtomicU64::new(0);
            let key = a.get(4).map_or("bench/tput", String::as_str);
            let _sub = s
                .declare_subscriber(key)
                .callback(move |sample| {
                    // A bridge's sample may carry a batch of messages: each counts.
                    let count = sample.attachment().map_or(1, |a| {
                        aetherd::bridge::envelope::Sent::decode(&a.to_bytes()).map_or(1, |s| s.count() as u64)
                    });
                    let before = seen.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
                    if before == 0 || (before < n && before + count >= n) {
                        let _ = tx.send(Instant::now());
                    }
                })
                .wait()?;
            let first = rx.recv()?;
            let last = rx.recv()?;
            println!("{}", rate(n, size, (last - first).as_secs_f64()));
        }
        "zenoh-source" => {
            let (n, size) = (num(2), num(3) as usize);
            let s = session(None, Some(&a[1]))?;
            let key = a.get(4).map_or("bench/tput", String::as_str);
            let envelope = a.get(5).is_some_and(|e| e == "envelope");
            let p = s
                .declare_publisher(key)
                .congestion_control(CongestionControl::Block)
                .wait()?;
            while !p.matching_status().wait()?.matching() {
                std::thread::sleep(Duration::from_millis(10));
            }
            let buf = vec![7u8; size];
            for i in 0..n {
                let put = p.put(buf.clone());
                if envelope {
                    let env = aetherd::bridge::envelope::Envelope {
                        origin: "zenoh",
                        seq: i,
                        timestamp_ns: 0,
                        link_seq: i,
                        numbering: 1,
                    };
                    put.attachment(env.encode()).wait()?;
                } else {
                    put.wait()?;
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        "aether-pong" => {
            let c = Client::connect_with(Some(Path::new(&a[1])), false)?;
            topic(&c, "bb.ping", 65536)?;
            topic(&c, "bb.pong", 65536)?;
            let mut sub = c.subscriber("bb.ping", &SubscriberConfig::default())?;
            let mut p = c.publisher("bb.pong")?;
            loop {
                if let Some(m) = sub.receive(Some(Duration::from_secs(3600)))? {
                    p.publish(&m.data)?;
                }
            }
        }
        "aether-ping" => {
            let (n, size) = (num(2), num(3) as usize);
            let c = Client::connect_with(Some(Path::new(&a[1])), false)?;
            topic(&c, "bb.ping", 65536)?;
            topic(&c, "bb.pong", 65536)?;
            let mut sub = c.subscriber("bb.pong", &SubscriberConfig::default())?;
            let mut p = c.publisher("bb.ping")?;
            let buf = vec![0u8; size];
            loop {
                p.publish(&buf)?;
                if sub.receive(Some(Duration::from_millis(100)))?.is_some() {
                    break;
                }
            }
            while sub.receive(Some(Duration::from_millis(200)))?.is_some() {}
            let mut v = Vec::new();
            for i in 0..n + warm(n) {
                let t = Instant::now();
                p.publish(&buf)?;
                sub.receive(Some(Duration::from_secs(10)))?.ok_or("no pong in 10 s")?;
                if i >= warm(n) {
                    v.push(t.elapsed().as_nanos() as u64 / 2);
                }
            }
            println!("{}", percentiles(v));
        }
        "aether-sink" => {
            let (n, size) = (num(2), num(3));
            let c = Client::connect_with(Some(Path::new(&a[1])), false)?;
            let name = format!("bb.tput-{size}");
            topic(&c, &name, size)?;
            let mut sub = c.subscriber(&name, &SubscriberConfig::default())?;
            println!("ready");
            let mut first = None;
            for _ in 0..n {
                sub.receive(Some(Duration::from_secs(30)))?
                    .ok_or("a message did not come in 30 s")?;
                first.get_or_insert_with(Instant::now);
            }
            println!("{}", rate(n, size, first.expect("one").elapsed().as_secs_f64()));
        }
        "aether-source" => {
            let (n, size) = (num(2), num(3) as usize);
            let c = Client::connect_with(Some(Path::new(&a[1])), false)?;
            let name = format!("bb.tput-{size}");
            topic(&c, &name, size as u64)?;
            let mut p = c.publisher(&name)?;
            // A bridge finds a new topic within 200 ms; then Zenoh matches.
            std::thread::sleep(Duration::from_secs(1));
            p.set_timeout(Some(Duration::from_secs(30)));
            let buf = vec![7u8; size];
            for _ in 0..n {
                p.publish(&buf)?;
            }
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}
