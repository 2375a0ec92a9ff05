//! aether-cli: publish and subscribe from the shell, and inspect and control
//! a running `aetherd` through its admin named pipe. Argument parsing and
//! output only: everything else is libaether (`aether::Client`) and the admin pipe's
//! requester side in aetherd's library (`aetherd::admin`).

mod cli;
mod fmt;
mod top;

use aether::{Client, Policy, Status, SubscriberConfig, TopicParams};
use aetherd::admin::{self, Command};
use clap::{CommandFactory, Parser};
use cli::{Cli, Cmd, Durability, Format, PolicyArg, TopicArgs, Wait};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

impl PolicyArg {
    fn policy(self) -> Policy {
        match self {
            PolicyArg::Lossy => Policy::Lossy,
            PolicyArg::Reliable => Policy::Reliable,
        }
    }
}

impl TopicArgs {
    /// For library clients that create a missing topic: unset values take the library defaults.
    fn params(&self) -> TopicParams {
        let d = TopicParams::default();
        TopicParams {
            policy: self.policy.map_or(d.policy, PolicyArg::policy),
            ring_size: self.ring_size.unwrap_or(d.ring_size),
            max_message: self.max_message.unwrap_or(d.max_message),
            ..d
        }
    }
}

/// One clear line on stderr, a hint where one helps, and a non-zero exit.
fn fail(e: aether::Error, socket: &Path) -> ! {
    eprintln!("aether-cli: {}", e.message);
    let hint = match e.status {
        Status::Unavailable if aether::paths::is_system_socket(socket) => {
            "hint: the system broker runs as a service: `systemctl start aetherd` (see aetherd(8))".into()
        }
        Status::Unavailable => format!(
            "hint: no broker answers at {}; start a private one with `aetherd --socket {}`, or use the \
             system broker with --system (or AETHER_SOCKET={})",
            socket.display(),
            socket.display(),
            aether::paths::SYSTEM_SOCKET
        ),
        Status::Permission => "hint: the socket's mode and group decide who may connect; the daemon's [[access]] \
                               rules decide who may publish, subscribe, monitor or administer"
            .into(),
        Status::Timeout => "hint: try a longer --timeout".into(),
        Status::NotFound if e.message.contains("topic") => "hint: `aether-cli topics` lists the topics".into(),
        Status::NotFound if e.message.contains("client") => "hint: `aether-cli stats` lists the clients".into(),
        _ => String::new(),
    };
    if !hint.is_empty() {
        eprintln!("{hint}");
    }
    std::process::exit(1);
}

fn main() {
    // Like any Unix filter: when the reader of our output goes away
    // (`| head`), end quietly on SIGPIPE instead of failing on EPIPE.
    // SAFETY: restoring the default disposition of one signal before any
    // thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    // Only a socket named here is passed to the library, so that its errors
    // say where the default came from.
    let named = match cli.system {
        true => Some(PathBuf::from(aether::paths::SYSTEM_SOCKET)),
        false => cli.socket.clone(),
    };
    let socket = named.clone().unwrap_or_else(aether::paths::default_socket);
    match cli.cmd {
        Cmd::Bench { args } => {
            // The benchmark hosts its own broker and re-executes `aether-cli bench` for its children.
            let exe = std::env::current_exe().expect("own executable path");
            std::process::exit(aether_bench::main(
                args.into_iter(),
                vec![exe.into_os_string(), "bench".into()],
            ));
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "aether-cli", &mut std::io::stdout());
        }
        Cmd::Pub {
            ref topic,
            ref message,
            topic_args,
        } => publish(
            named.as_deref(),
            &socket,
            topic,
            message.as_deref(),
            &topic_args,
            cli.json,
        ),
        Cmd::Sub {
            ref topic,
            count,
            timeout,
            quiet,
            format,
            ref from,
            fill_gaps,
            topic_args,
        } => {
            let Some(start) = aether::Start::parse(from) else {
                eprintln!("aether-cli: --from {from:?}: use latest, earliest, seq=N or time=NS");
                std::process::exit(2);
            };
            subscribe(
                named.as_deref(),
                &socket,
                topic,
                Limits {
                    start,
                    fill_gaps,
                    count,
                    timeout,
                },
                if quiet { None } else { Some(format) },
                &topic_args,
                cli.json,
            )
        }
        Cmd::Stats {
            watch: true,
            interval,
            wait,
            ..
        } => watch(&socket, interval, wait, cli.json),
        Cmd::Top {
            interval,
            iterations,
            wait,
        } => {
            if let Err(e) = top::run(&socket, interval, iterations, wait.timeout) {
                eprintln!("aether-cli: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Stats {
            prometheus: true, wait, ..
        } => {
            admin::interrupt_on_signals();
            let v = admin::call(&socket, Command::Stats, Duration::from_secs_f64(wait.timeout.max(0.0)))
                .unwrap_or_else(|e| fail(e, &socket));
            let stats: aetherd::stats::Stats = serde_json::from_value(v).unwrap_or_else(|e| {
                eprintln!("aether-cli: the daemon's statistics do not parse ({e}): is it another version?");
                std::process::exit(1);
            });
            print!("{}", aetherd::metrics::render(&stats));
        }
        ref cmd => {
            let (command, wait) = admin_command(cmd);
            admin::interrupt_on_signals();
            let v = admin::call(&socket, command, Duration::from_secs_f64(wait.timeout.max(0.0)))
                .unwrap_or_else(|e| fail(e, &socket));
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
            } else {
                println!("{}", human(cmd, &v));
            }
        }
    }
}

fn admin_command(cmd: &Cmd) -> (Command, Wait) {
    match cmd {
        Cmd::Status { wait } => (Command::Status, *wait),
        Cmd::Topics { wait } => (Command::Topics, *wait),
        Cmd::Subscribers { topic, wait } => (Command::Subscribers { topic: topic.clone() }, *wait),
        Cmd::Stats { wait, .. } => (Command::Stats, *wait),
        Cmd::Create {
            topic,
            topic_args,
            durability,
            fsync,
            huge_pages,
            retain_bytes,
            retain_seconds,
            wait,
        } => (
            Command::Create {
                topic: topic.clone(),
                policy: topic_args.policy.map(|p| p.policy().name().to_string()),
                ring_size: topic_args.ring_size,
                max_message: topic_args.max_message,
                fsync: match (durability, fsync) {
                    (Durability::Wal, f) => Some(f.clone().unwrap_or_else(|| "never".into())),
                    (Durability::Memory, None) => None,
                    (Durability::Memory, Some(_)) => {
                        eprintln!("aether-cli: --fsync needs --durability wal");
                        std::process::exit(2);
                    }
                },
                huge_pages: huge_pages.then_some(true),
                // Without --durability wal the daemon refuses them (Invalid).
                retain_bytes: *retain_bytes,
                retain_seconds: *retain_seconds,
            },
            *wait,
        ),
        Cmd::Delete { topic, wait } => (Command::Delete { topic: topic.clone() }, *wait),
        Cmd::Kick { client, wait } => (Command::Kick { client: *client }, *wait),
        Cmd::Drain { wait } => (Command::Drain, *wait),
        Cmd::Reload { wait } => (Command::Reload, *wait),
        _ => unreachable!("not an admin command"),
    }
}

/// A durable topic's retention in force, for `topics`: `keeps 16 KiB (topic), 7d 0h`;
/// "" when it keeps everything.
fn retention_text(log: &Value) -> String {
    let from = |k: &str| match log[k].as_str() {
        Some("topic") => " (topic)",
        _ => "",
    };
    let mut parts = Vec::new();
    match num(log, "retain_bytes") as u64 {
        0 => {}
        b => parts.push(format!("{}{}", fmt::bytes(b), from("retain_bytes_from"))),
    }
    match num(log, "retain_seconds") as u64 {
        0 => {}
        s => parts.push(format!("{}{}", fmt::duration(s as f64), from("retain_seconds_from"))),
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", keeps {}", parts.join(", "))
    }
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

fn text(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn status_text(d: &Value) -> String {
    let rows = [
        ("version", text(d, "version")),
        ("pid", text(d, "pid")),
        ("instance", text(d, "instance_id")),
        ("uptime", fmt::duration(num(d, "uptime_s"))),
        ("socket", text(d, "socket")),
        ("admin pipe", text(d, "admin_pipe")),
        ("topics", text(d, "topics")),
        (
            "clients",
            format!("{} ({} died)", text(d, "clients"), text(d, "dead_clients")),
        ),
        ("segments", fmt::bytes(num(d, "segment_bytes") as u64)),
        ("draining", text(d, "draining")),
        ("bridge", bridge_summary(&d["bridge"])),
    ];
    rows.iter()
        .filter(|(_, v)| v != "-")
        .map(|(k, v)| format!("{:<11} {v}", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn topics_table(topics: &Value) -> String {
    let rows: Vec<Vec<String>> = topics
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    vec![
                        text(t, "name"),
                        text(t, "policy"),
                        match t["huge_pages"] {
                            Value::Bool(true) => format!("{} (huge)", fmt::bytes(num(t, "ring_size") as u64)),
                            _ => fmt::bytes(num(t, "ring_size") as u64),
                        },
                        fmt::bytes(num(t, "max_message") as u64),
                        text(t, "publishers"),
                        text(t, "subscribers"),
                        fmt::count(num(t, "published")),
                        format!("{} msg/s", fmt::count(num(t, "rate_msgs_per_s"))),
                        format!("{}/s", fmt::bytes(num(t, "rate_bytes_per_s") as u64)),
                        fmt::count(num(t, "lost")),
                        match &t["log"] {
                            Value::Null => text(t, "durability"),
                            l => format!(
                                "{}, {}, seq {}..{}{}",
                                text(t, "durability"),
                                fmt::bytes(num(l, "bytes") as u64),
                                num(l, "oldest_seq"),
                                num(l, "next_seq"),
                                retention_text(l)
                            ),
                        },
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "no topics".into();
    }
    fmt::table(
        &[
            "TOPIC",
            "POLICY",
            "RING",
            "MAX MSG",
            "PUBS",
            "SUBS",
            "PUBLISHED",
            "RATE",
            "BYTES",
            "LOST",
            "DURABILITY",
        ],
        &rows,
    )
}

fn subscribers_table(subs: &Value) -> String {
    let rows: Vec<Vec<String>> = subs
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    vec![
                        text(s, "topic"),
                        text(s, "client"),
                        text(s, "pid"),
                        text(s, "uid"),
                        text(s, "delivery"),
                        fmt::count(num(s, "delivered")),
                        format!("{} msgs", fmt::count(num(s, "lag_messages"))),
                        fmt::bytes(num(s, "lag_bytes") as u64),
                        fmt::count(num(s, "lost")),
                        format!("{} ago", fmt::duration(num(s, "idle_s"))),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "no subscribers".into();
    }
    fmt::table(
        &[
            "TOPIC",
            "CLIENT",
            "PID",
            "UID",
            "DELIVERY",
            "DELIVERED",
            "LAG",
            "LAG BYTES",
            "LOST",
            "LAST ACTIVITY",
        ],
        &rows,
    )
}

/// The connected clients, with the ids `kick` takes.
fn clients_table(clients: &Value) -> String {
    let rows: Vec<Vec<String>> = clients
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    vec![
                        text(c, "id"),
                        text(c, "pid"),
                        text(c, "uid"),
                        text(c, "gid"),
                        text(c, "publishers"),
                        text(c, "subscribers"),
                        fmt::duration(num(c, "connected_s")),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "no clients".into();
    }
    fmt::table(&["CLIENT", "PID", "UID", "GID", "PUBS", "SUBS", "CONNECTED"], &rows)
}

/// `NAME, N of M brokers up` (`-`, which the status leaves out, without a bridge).
fn bridge_summary(b: &Value) -> String {
    let Some(links) = b["links"].as_object() else {
        return "-".into();
    };
    let up = links.values().filter(|l| l["up"] == Value::Bool(true)).count();
    format!("{}, {up} of {} brokers up", text(b, "name"), links.len())
}

/// The bridge's links (nothing when the daemon runs no bridge).
fn bridge_table(b: &Value) -> String {
    if b.is_null() {
        return String::new();
    }
    let mut rows: Vec<Vec<String>> = b["links"]
        .as_object()
        .map(|links| {
            links
                .iter()
                .map(|(name, l)| {
                    vec![
                        name.clone(),
                        if l["up"] == Value::Bool(true) { "up" } else { "down" }.into(),
                        fmt::count(num(l, "received")),
                        fmt::bytes(num(l, "received_bytes") as u64),
                        fmt::count(num(l, "dropped")),
                        text(l, "last_error"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort();
    format!(
        "\n\nbridge {}{}: {} sent ({}, {} samples), {} unsent, {} refused, {} echoes dropped\n{}",
        text(b, "name"),
        if b["relay"] == Value::Bool(true) {
            " (relay)"
        } else {
            ""
        },
        fmt::count(num(b, "sent")),
        fmt::bytes(num(b, "sent_bytes") as u64),
        fmt::count(num(b, "sent_samples")),
        fmt::count(num(b, "unsent")),
        fmt::count(num(b, "refused")),
        fmt::count(num(b, "echoes")),
        if rows.is_empty() {
            "no other broker seen".to_string()
        } else {
            fmt::table(&["BROKER", "LINK", "RECEIVED", "BYTES", "DROPPED", "LAST ERROR"], &rows)
        }
    )
}

fn human(cmd: &Cmd, v: &Value) -> String {
    match cmd {
        Cmd::Status { .. } => status_text(v),
        Cmd::Topics { .. } => topics_table(v),
        Cmd::Subscribers { .. } => subscribers_table(v),
        Cmd::Stats { .. } => format!(
            "{}\n\n{}\n\n{}\n\n{}{}",
            status_text(&v["daemon"]),
            topics_table(&v["topics"]),
            subscribers_table(&v["subscribers"]),
            clients_table(&v["clients"]),
            bridge_table(&v["bridge"])
        ),
        Cmd::Create { topic, .. } => format!("created topic {topic}"),
        Cmd::Delete { topic, .. } => format!("deleted topic {topic}"),
        Cmd::Kick { client, .. } => format!("kicked client {client}"),
        Cmd::Drain { .. } => "aetherd is draining".into(),
        Cmd::Reload { .. } => {
            let ignored: Vec<String> = v["ignored"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_str())
                        .map(|n| format!("\nignored: {n}"))
                        .collect()
                })
                .unwrap_or_default();
            format!("aetherd reloaded its configuration{}", ignored.concat())
        }
        _ => v.to_string(),
    }
}

/// `stats --watch`: redraw in place (or print JSON lines) until Ctrl-C.
fn watch(socket: &Path, interval: f64, wait: Wait, json: bool) {
    admin::interrupt_on_signals();
    let interval = Duration::from_secs_f64(interval.max(0.1));
    loop {
        let v = match admin::call(socket, Command::Stats, Duration::from_secs_f64(wait.timeout.max(0.0))) {
            Ok(v) => v,
            Err(e) if e.status == Status::Shutdown && admin::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) => {
                return
            }
            Err(e) => fail(e, socket),
        };
        if json {
            println!("{}", serde_json::to_string(&v).expect("JSON"));
        } else {
            // Clear the screen and go home, like top.
            println!(
                "\x1b[2J\x1b[H{}",
                human(
                    &Cmd::Stats {
                        watch: true,
                        prometheus: false,
                        interval: 0.0,
                        wait
                    },
                    &v
                )
            );
        }
        let _ = std::io::stdout().flush();
        let until = Instant::now() + interval;
        while Instant::now() < until {
            if admin::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn connect(named: Option<&Path>, socket: &Path) -> Client {
    Client::connect(named).unwrap_or_else(|e| fail(e, socket))
}

/// Opens a publisher or subscriber with `open`; only if the topic does not
/// exist is it made (which needs the admin right) and `open` tried again. So
/// `pub` and `sub` on an existing topic need only the right they use.
fn open_or_create<T>(
    client: &Client,
    socket: &Path,
    topic: &str,
    args: &TopicArgs,
    open: impl Fn(&Client) -> aether::Result<T>,
) -> T {
    match open(client) {
        Ok(h) => h,
        Err(e) if e.status == Status::NotFound => {
            match client.create_topic(topic, &args.params()) {
                Ok(()) => {}
                Err(e) if e.status == Status::Exists => {}
                Err(e) => fail(e, socket),
            }
            open(client).unwrap_or_else(|e| fail(e, socket))
        }
        Err(e) => fail(e, socket),
    }
}

fn publish(
    named: Option<&Path>,
    socket: &Path,
    topic: &str,
    message: Option<&str>,
    topic_args: &TopicArgs,
    json: bool,
) {
    let client = connect(named, socket);
    let mut p = open_or_create(&client, socket, topic, topic_args, |c| c.publisher(topic));
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut send = |m: &[u8]| {
        p.publish(m).unwrap_or_else(|e| fail(e, socket));
        n += 1;
        bytes += m.len() as u64;
    };
    match message {
        Some(m) => send(m.as_bytes()),
        None => {
            let stdin = std::io::stdin();
            let mut line = Vec::new();
            let mut lock = stdin.lock();
            loop {
                line.clear();
                match lock.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        send(&line);
                    }
                    Err(e) => fail(aether::Error::io("read stdin", e), socket),
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({"topic": topic, "published": n, "bytes": bytes, "seconds": secs})
        );
    } else {
        eprintln!(
            "published {n} messages ({bytes} bytes) to {topic} in {secs:.3} s: {} msg/s",
            fmt::count(n as f64 / secs.max(1e-9))
        );
    }
}

/// Where `sub` starts, and when it stops: after `count` messages, or
/// `timeout` seconds without one.
struct Limits {
    start: aether::Start,
    fill_gaps: bool,
    count: Option<u64>,
    timeout: Option<f64>,
}

/// One message as `sub` prints it (`format` for the payload; JSON lines with `json`).
fn message_line(data: &[u8], seq: u64, timestamp_ns: u64, format: Format, json: bool) -> Vec<u8> {
    use base64::Engine;
    let b64 = || base64::engine::general_purpose::STANDARD.encode(data);
    let hex = || data.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut line = if json {
        let (encoding, text) = match (format, std::str::from_utf8(data)) {
            (Format::Text, Ok(t)) => ("utf8", t.to_string()),
            (Format::Hex, _) => ("hex", hex()),
            _ => ("base64", b64()),
        };
        serde_json::json!({
            "seq": seq,
            "timestamp_ns": timestamp_ns,
            "len": data.len(),
            "encoding": encoding,
            "data": text,
        })
        .to_string()
        .into_bytes()
    } else {
        match format {
            Format::Text => data.to_vec(),
            Format::Hex => hex().into_bytes(),
            Format::Base64 => b64().into_bytes(),
        }
    };
    line.push(b'\n');
    line
}

fn subscribe(
    named: Option<&Path>,
    socket: &Path,
    topic: &str,
    limits: Limits,
    format: Option<Format>,
    topic_args: &TopicArgs,
    json: bool,
) {
    let client = connect(named, socket);
    let cfg = SubscriberConfig {
        start: limits.start.clone(),
        fill_gaps: limits.fill_gaps,
        ..SubscriberConfig::default()
    };
    let mut s = open_or_create(&client, socket, topic, topic_args, |c| c.subscriber(topic, &cfg));
    eprintln!("subscribed to {topic}");
    let mut buf = vec![0u8; s.max_message()];
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let idle = limits.timeout.map(Duration::from_secs_f64);
    let (mut n, mut first) = (0u64, None);
    let mut timed_out = false;
    // A durable subscription commits what has reached stdout, whenever the
    // output is flushed: a message is printed at least once.
    let durable = matches!(limits.start, aether::Start::Durable(_));
    let mut committed = 0;
    let mut commit = |s: &mut aether::Subscriber, n: u64| {
        if durable && n != committed {
            s.commit().unwrap_or_else(|e| fail(e, socket));
            committed = n;
        }
    };
    while limits.count.is_none_or(|c| n < c) {
        // What is waiting is taken at once and written in one batch; the
        // output is flushed before waiting, so that each message reaches a
        // pipe (`| head`) as soon as nothing else follows it.
        let r = match s.receive_into(&mut buf, Some(Duration::ZERO)) {
            Err(e) if e.status == Status::Timeout => {
                if out.flush().is_err() {
                    break;
                }
                commit(&mut s, n);
                s.receive_into(&mut buf, idle)
            }
            r => r,
        };
        match r {
            Ok(r) => {
                first.get_or_insert_with(Instant::now);
                n += 1;
                let Some(format) = format else { continue };
                if out
                    .write_all(&message_line(&buf[..r.len], r.seq, r.timestamp_ns, format, json))
                    .is_err()
                {
                    break; // stdout closed (e.g. `| head`)
                }
            }
            Err(e) if e.status == Status::Timeout => {
                timed_out = true;
                break;
            }
            Err(e) => {
                let _ = out.flush();
                fail(e, socket)
            }
        }
    }
    if out.flush().is_ok() {
        commit(&mut s, n);
    }
    let secs = first.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64());
    eprintln!(
        "received {n} messages from {topic} ({} lost) in {secs:.3} s: {} msg/s",
        s.lost(),
        fmt::count(n as f64 / secs.max(1e-9))
    );
    if timed_out && limits.count.is_some_and(|c| n < c) {
        eprintln!(
            "aether-cli: timed out after {n} of {} messages",
            limits.count.unwrap_or(0)
        );
        std::process::exit(2);
    }
}
