//! Durable topics across real processes (issue 18): a daemon that logs a
//! topic to its state directory, publishers and subscribers in other
//! processes, restarts and kill -9 of the daemon, damaged log files, and a
//! client of another uid.

mod common;

use aether::{Client, Fsync, Policy, Start, Status, SubscriberConfig, TopicParams};
use common::*;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOBODY: u32 = 65534;

/// A reliable topic logged with `fsync`.
fn durable(fsync: Fsync, ring_size: u64, max_message: u64) -> TopicParams {
    TopicParams {
        policy: Policy::Reliable,
        ring_size,
        max_message,
        max_subscribers: 4,
        wal: Some(fsync),
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    }
}

fn from(start: Start) -> SubscriberConfig {
    SubscriberConfig {
        start,
        ..SubscriberConfig::default()
    }
}

/// An aetherd on `socket` keeping its durable topics in `state`, its log in a
/// fresh directory (so that a restart on the same socket and state is a new
/// process with the same disk).
fn daemon(socket: &Path, state: &Path, extra: &[&OsStr]) -> Daemon {
    let mut args = vec![
        OsStr::new("--socket"),
        socket.as_os_str(),
        OsStr::new("--state-dir"),
        state.as_os_str(),
    ];
    args.extend_from_slice(extra);
    Daemon::start_with(TempDir::new("dur-log"), socket.to_path_buf(), &args, &[])
}

/// A test's directory `name`, with aetherd's socket and state paths in it
/// and a configuration file whose `[log]` table holds `log`.
fn log_dir(name: &str, log: &str) -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = TempDir::new(name);
    let (socket, state, config) = (
        dir.0.join("aetherd.sock"),
        dir.0.join("state"),
        dir.0.join("aetherd.toml"),
    );
    std::fs::write(&config, format!("[log]\n{log}")).unwrap();
    (dir, socket, state, config)
}

/// `daemon` reading the configuration file `config` (reloadable).
fn config_daemon(socket: &Path, state: &Path, config: &Path) -> Daemon {
    daemon(socket, state, &[OsStr::new("--config"), config.as_os_str()])
}

fn kill9(d: &mut Daemon) {
    d.child.kill().expect("SIGKILL aetherd");
    let _ = d.child.wait();
}

/// The log segment files of `topic` under `state`, oldest first.
fn log_files(state: &Path, topic: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("topics").join(topic))
        .expect("the topic's log directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Entry point of child processes; a no-op when run as an ordinary test.
///
/// - `publisher`: publishes `AETHER_N` messages `message(i, 32)` to
///   `AETHER_TEST_TOPIC` (i from `AETHER_FIRST`, 0 by default: the seq
///   each must get), printing `AETHER:at I` every 50,000.
/// - `acked`: publishes `round.i` (8 + 8 bytes) until a publish fails,
///   printing `AETHER:acked SEQ ROUND I` for each that returned OK.
/// - `client` (run as another uid): one command per stdin line, one
///   `AETHER:<status>` line each: `replay T`, `open PATH`.
#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    let socket = PathBuf::from(env_var("AETHER_TEST_SOCKET"));
    let c = || Client::connect_with(Some(&socket), false).expect("connect");
    match role.as_str() {
        "publisher" => {
            let topic = env_var("AETHER_TEST_TOPIC");
            let n: u64 = env_var("AETHER_N").parse().expect("N");
            let first: u64 = std::env::var("AETHER_FIRST").map_or(0, |v| v.parse().expect("first"));
            let mut p = c().publisher(&topic).expect("publisher");
            // History is read before the ring: a rejoining subscriber may hold us a while.
            p.set_timeout(Some(Duration::from_secs(120)));
            for i in first..first + n {
                assert_eq!(p.publish(&message(i, 32)).expect("publish"), i);
                if (i + 1) % 50_000 == 0 {
                    println!("AETHER:at {}", i + 1);
                }
            }
            println!("AETHER:done");
        }
        "acked" => {
            let topic = env_var("AETHER_TEST_TOPIC");
            let round: u64 = env_var("AETHER_ROUND").parse().expect("round");
            let mut p = c().publisher(&topic).expect("publisher");
            for i in 0.. {
                let mut payload = round.to_le_bytes().to_vec();
                payload.extend_from_slice(&(i as u64).to_le_bytes());
                match p.publish(&payload) {
                    Ok(seq) => println!("AETHER:acked {seq} {round} {i}"),
                    Err(e) => {
                        println!("AETHER:error {:?}", e.status);
                        break;
                    }
                }
            }
        }
        "client" => {
            use std::io::BufRead;
            for line in std::io::stdin().lock().lines() {
                let line = line.expect("read stdin");
                let answer = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                    ["replay", t] => match c().subscriber(t, &from(Start::Earliest)) {
                        Ok(_) => "Ok".to_string(),
                        Err(e) => format!("{:?}", e.status),
                    },
                    ["open", path] => match std::fs::File::open(path) {
                        Ok(_) => "Ok".to_string(),
                        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => "EACCES".to_string(),
                        Err(e) => format!("{e}"),
                    },
                    ["quit"] => break,
                    _ => format!("Invalid: {line:?}"),
                };
                println!("AETHER:{answer}");
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// A million messages: a subscriber reads the first thousand and goes away
/// while a publisher in another process goes on; it comes back (from seq
/// 1000) while the publisher is still publishing, reads the log, passes to
/// the live ring, and sees every message once, in order.
#[test]
fn a_subscriber_back_from_away_replays_a_million_and_joins_the_live_stream() {
    const N: u64 = 1_000_000;
    let dir = TempDir::new("dur-million");
    let (socket, state) = (dir.0.join("aetherd.sock"), dir.0.join("state"));
    let d = daemon(&socket, &state, &[]);
    let c = d.client();
    c.create_topic("mil", &durable(Fsync::Never, 1 << 20, 64)).unwrap();
    let mut s = c.subscriber("mil", &from(Start::Earliest)).unwrap();
    let mut p = Role::spawn(
        "publisher",
        &[
            d.socket_env(),
            ("AETHER_TEST_TOPIC", "mil".into()),
            ("AETHER_N", N.to_string()),
        ],
    );
    let mut buf = vec![0u8; 64];
    for i in 0..1000 {
        let r = s.receive_into(&mut buf, Some(Duration::from_secs(30))).unwrap();
        assert_eq!((r.seq, &buf[..r.len]), (i, &message(i, 32)[..]));
    }
    drop(s);
    // Away until the publisher is well past it, and not finished.
    loop {
        let l = p.line();
        let at: u64 = l
            .strip_prefix("at ")
            .expect("the publisher is not done")
            .parse()
            .unwrap();
        if at >= 600_000 {
            break;
        }
    }
    let mut s = c.subscriber("mil", &from(Start::Seq(1000))).unwrap();
    for i in 1000..N {
        let r = s.receive_into(&mut buf, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(r.seq, i, "no gap, no duplicate");
        assert_eq!(&buf[..r.len], &message(i, 32)[..], "message {i}");
    }
    while p.line() != "done" {}
    p.wait_ok();
    assert_eq!(
        s.receive(Some(Duration::from_millis(100))).unwrap(),
        None,
        "nothing more"
    );
    assert_eq!((s.delivered(), s.lost()), (N - 1000, 0));
}

/// A lossy durable topic: publishers wait for the log writer alone, never
/// for a subscriber. Two subscribers that read nothing while a publisher in
/// another process publishes 200,000 messages through a ring of 1,024: the
/// publisher finishes (it waited for neither); the plain one was lapped and
/// counts what it lost; the one with `fill_gaps` reads every message from
/// the log, in order, once. Then, while 200,000 more are published, the
/// filling subscriber, lapped over and over, still gets every message once.
#[test]
fn a_lapped_subscriber_of_a_lossy_durable_topic_fills_its_gaps_from_the_log() {
    let d = Daemon::start();
    let c = d.client();
    let lossy = TopicParams {
        policy: Policy::Lossy,
        ..durable(Fsync::Never, 1 << 16, 64)
    };
    c.create_topic("lz", &lossy).unwrap();
    let fill = SubscriberConfig {
        fill_gaps: true,
        ..SubscriberConfig::default()
    };
    let mut plain = c.subscriber("lz", &SubscriberConfig::default()).unwrap();
    let mut filler = c.subscriber("lz", &fill).unwrap();
    const N: u64 = 200_000;
    let publish = |first: u64| {
        Role::spawn(
            "publisher",
            &[
                d.socket_env(),
                ("AETHER_TEST_TOPIC", "lz".into()),
                ("AETHER_N", N.to_string()),
                ("AETHER_FIRST", first.to_string()),
            ],
        )
    };
    let mut p = publish(0);
    while p.line() != "done" {}
    p.wait_ok();
    // The plain subscriber: what it got is in order, and with what it lost, everything.
    let (mut last, mut got) = (None, 0u64);
    while let Some(m) = plain.receive(Some(Duration::from_millis(200))).unwrap() {
        assert!(last.is_none_or(|l| m.seq > l), "in order");
        assert_eq!(m.data, message(m.seq, 32));
        (last, got) = (Some(m.seq), got + 1);
    }
    assert!(plain.lost() > N / 2, "lapped: lost {}", plain.lost());
    assert_eq!((plain.delivered(), got + plain.lost()), (got, N));
    // The filling one: every message, from the log then the ring.
    let mut buf = vec![0u8; 64];
    for i in 0..N {
        let r = filler.receive_into(&mut buf, Some(Duration::from_secs(10))).unwrap();
        assert_eq!((r.seq, &buf[..r.len]), (i, &message(i, 32)[..]));
    }
    assert_eq!((filler.delivered(), filler.lost()), (N, 0));
    // Reading while publishing goes on: lapped again and again, it fills each gap.
    let mut p = publish(N);
    for i in N..2 * N {
        let m = filler
            .receive(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("a message");
        assert_eq!((m.seq, m.data), (i, message(i, 32)));
        // A slow reader now and then, so that it is lapped while the publisher runs.
        if i % 20_000 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    while p.line() != "done" {}
    p.wait_ok();
    assert_eq!((filler.delivered(), filler.lost()), (2 * N, 0));
    // The zero-copy path fills too, a view that was overwritten while held included.
    let mut view = c.subscriber("lz", &fill).unwrap();
    c.publisher("lz").unwrap().publish(b"x").unwrap();
    let mut q = c.publisher("lz").unwrap();
    let deadline = || aether::Deadline::after(Some(Duration::from_secs(10)));
    let first = view.receive_view(&deadline()).unwrap();
    assert_eq!(first.seq, 2 * N);
    for i in 0..5000u64 {
        q.publish(&message(2 * N + 1 + i, 32)).unwrap();
    }
    assert_eq!(view.release_view().unwrap_err().status, Status::Overwritten);
    // (It was overwritten: it comes again, from the log.)
    for i in 2 * N..2 * N + 5001 {
        let r = view.receive_view(&deadline()).unwrap();
        assert_eq!(r.seq, i);
        view.release_view().unwrap();
    }
    assert_eq!(view.lost(), 0);
    // fill_gaps needs a log, and the ring.
    c.create_topic("mem", &TopicParams::default()).unwrap();
    assert_eq!(
        c.subscriber("mem", &fill).err().map(|e| e.status),
        Some(Status::Invalid)
    );
    let mq = SubscriberConfig {
        delivery: aether::Delivery::Mqueue,
        ..fill.clone()
    };
    assert_eq!(c.subscriber("lz", &mq).err().map(|e| e.status), Some(Status::Invalid));
}

/// `fsync = always`, the daemon killed (SIGKILL) while a publisher in
/// another process publishes (in the middle of a log write: the writer
/// syncs every batch), 20 times over (`AETHER_FAULT_ROUNDS`: the fault
/// loop of issue 22, 1000 on demand), with a torn write added to the log
/// after every other kill: after each restart, every publish that returned
/// OK is in the log with its payload, the torn tail is cut, and numbering
/// goes on without a gap. On a reliable topic and on a lossy one (whose
/// publishers wait for the log writer alone).
#[test]
fn kill_9_under_fsync_always_loses_no_acknowledged_publish() {
    kill_9_rounds(Policy::Reliable);
}

#[test]
fn kill_9_under_fsync_always_loses_no_acknowledged_publish_on_a_lossy_topic() {
    kill_9_rounds(Policy::Lossy);
}

fn kill_9_rounds(policy: Policy) {
    let rounds = fault_rounds(20);
    let t0 = std::time::Instant::now();
    let dir = TempDir::new(&format!("dur-kill-{}", policy.name()));
    let (socket, state) = (dir.0.join("aetherd.sock"), dir.0.join("state"));
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut cuts = 0;
    for round in 0..rounds {
        let mut d = daemon(&socket, &state, &[]);
        if round == 0 {
            d.client()
                .create_topic(
                    "al",
                    &TopicParams {
                        policy,
                        ..durable(Fsync::Always, 1 << 16, 64)
                    },
                )
                .unwrap();
        }
        assert!(d.log().contains("recovered") || round == 0, "{}", d.log());
        cuts += d.log().matches("cut a torn tail").count();
        let mut p = Role::spawn(
            "acked",
            &[
                d.socket_env(),
                ("AETHER_TEST_TOPIC", "al".into()),
                ("AETHER_ROUND", round.to_string()),
            ],
        );
        let mut record = |l: &str| {
            let w: Vec<u64> = l
                .strip_prefix("acked ")
                .expect("an ack")
                .split(' ')
                .map(|x| x.parse().expect("number"))
                .collect();
            let mut payload = w[1].to_le_bytes().to_vec();
            payload.extend_from_slice(&w[2].to_le_bytes());
            acked.push((w[0], payload));
        };
        // Some acknowledged publishes, then the kill at a moment the publisher does not choose.
        for _ in 0..5 + (round % 20) * 3 {
            record(&p.line());
        }
        kill9(&mut d);
        loop {
            let l = p.line();
            if l.starts_with("error") {
                break;
            }
            record(&l);
        }
        p.wait_ok();
        if round % 2 == 1 {
            // A write the kill tore: part of a record header at the end of the newest file.
            use std::io::Write;
            let newest = log_files(&state, "al").pop().expect("a log file");
            let mut f = std::fs::OpenOptions::new().append(true).open(newest).unwrap();
            f.write_all(&[0x2a, 0, 0, 0, 0xde, 0xad]).unwrap();
        }
    }
    let d = daemon(&socket, &state, &[]);
    cuts += d.log().matches("cut a torn tail").count();
    assert!(
        cuts as u64 >= rounds / 2,
        "every torn tail added was cut ({cuts}):\n{}",
        d.log()
    );
    let mut s = d.client().subscriber("al", &from(Start::Earliest)).unwrap();
    let mut logged = Vec::new();
    while let Some(m) = s.receive(Some(Duration::from_millis(300))).unwrap() {
        assert_eq!(m.seq, logged.len() as u64, "numbered without a gap");
        logged.push(m.data);
    }
    assert!(acked.len() as u64 >= rounds * 5);
    for (seq, payload) in &acked {
        assert_eq!(logged.get(*seq as usize), Some(payload), "acknowledged message {seq}");
    }
    // Numbering went on across restarts: each round's first ack is past the last round's.
    assert!(acked.windows(2).all(|w| w[0].0 < w[1].0));
    println!(
        "durable: kill -9 under fsync=always ({}): {rounds} rounds in {:.1} s, {} acknowledged publishes, \
         {} logged, {cuts} torn tails cut, none lost",
        policy.name(),
        t0.elapsed().as_secs_f64(),
        acked.len(),
        logged.len()
    );
}

/// A byte flipped in a log file: a subscriber replaying it gets everything
/// before the damage and then `Corrupt` naming the place, never the
/// damaged message; a restarted daemon does not serve that topic (it keeps
/// the log for a human) and serves the others.
#[test]
fn a_flipped_byte_in_the_log_is_reported_never_delivered() {
    let dir = TempDir::new("dur-flip");
    let (socket, state) = (dir.0.join("aetherd.sock"), dir.0.join("state"));
    let mut d = daemon(&socket, &state, &[]);
    let c = d.client();
    c.create_topic("fl", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
    c.create_topic("ok", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
    let mut p = c.publisher("fl").unwrap();
    for i in 0..100 {
        p.publish(&message(i, 100)).unwrap();
    }
    c.publisher("ok").unwrap().publish(b"fine").unwrap();
    // All of it logged: a replay sees the hundred.
    let mut s = c.subscriber("fl", &from(Start::Earliest)).unwrap();
    for i in 0..100 {
        assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, i);
    }
    drop(s);
    // Record 50's payload: after the 32-byte file header, records of 24 + 100 bytes padded to 128.
    // (A replay may have had the last ones from the ring: wait for the writer.)
    let file = log_files(&state, "fl").remove(0);
    wait_for("the hundred in the file", Duration::from_secs(10), || {
        std::fs::metadata(&file).map_or(0, |m| m.len()) >= 32 + 100 * 128
    });
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[32 + 50 * 128 + 24 + 10] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let mut s = c.subscriber("fl", &from(Start::Earliest)).unwrap();
    for i in 0..50 {
        assert_eq!(
            s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data,
            message(i, 100)
        );
    }
    let e = s.receive(Some(Duration::from_secs(5))).unwrap_err();
    assert_eq!(e.status, Status::Corrupt, "{e}");
    assert!(
        e.message.contains("offset 6432") && e.message.contains("record 50"),
        "{e}"
    );
    // Reported once: the subscriber then goes on with the live ring, what the
    // log could not give counted lost (its cursor must not hold publishers forever).
    assert_eq!(s.receive(Some(Duration::from_millis(100))).unwrap(), None);
    assert_eq!(s.lost(), 50);
    drop((s, p, c));
    d.stop();
    let d = daemon(&socket, &state, &[]);
    let c = d.client();
    assert!(d.log().contains("\"fl\" not recovered"), "{}", d.log());
    let e = c
        .subscriber("fl", &SubscriberConfig::default())
        .err()
        .expect("no such topic now");
    assert_eq!(e.status, Status::NotFound);
    let e = c.create_topic("fl", &durable(Fsync::Never, 1 << 16, 256)).unwrap_err();
    assert_eq!(e.status, Status::Exists, "the damaged log is kept: {e}");
    let m = c
        .subscriber("ok", &from(Start::Earliest))
        .unwrap()
        .receive(Some(Duration::from_secs(5)));
    assert_eq!(m.unwrap().unwrap().data, b"fine");
}

/// Only a client with the topic's `subscribe` right reads its history,
/// and only through the daemon: as uid 65534 with `publish` alone, a
/// replaying subscriber is refused, and the log files cannot be opened.
/// The topic's own files are 0600 in 0700 directories.
#[test]
fn a_client_without_the_subscribe_right_reads_no_log() {
    use std::os::unix::fs::PermissionsExt;
    let dir = shared_dir("dur-uid");
    let (socket, state) = (dir.0.join("aetherd.sock"), dir.0.join("state"));
    let config = dir.0.join("aetherd.toml");
    std::fs::write(
        &config,
        format!("[[access]]\ntopics = [\"sec\"]\nuids = [{NOBODY}]\nallow = [\"publish\"]\n"),
    )
    .unwrap();
    let d = daemon(
        &socket,
        &state,
        &[
            OsStr::new("--socket-mode"),
            OsStr::new("0666"),
            OsStr::new("--config"),
            config.as_os_str(),
        ],
    );
    let c = d.client();
    c.create_topic("sec", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
    c.publisher("sec").unwrap().publish(b"secret").unwrap();
    let file = log_files(&state, "sec").remove(0);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    for p in [state.clone(), state.join("topics"), state.join("topics/sec")] {
        assert_eq!(mode(&p), 0o700, "{}", p.display());
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running a client as another uid needs root");
        return;
    }
    let exe = exe_for_others(&dir.0);
    let mut other = UserRole::spawn(&exe, "client", &[d.socket_env()], NOBODY, NOBODY, &[]);
    assert_eq!(other.ask("replay sec"), "Permission");
    assert_eq!(other.ask(&format!("open {}", file.display())), "EACCES");
    // Even with the directories opened up, the file's own mode keeps it private.
    for p in [state.clone(), state.join("topics"), state.join("topics/sec")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_eq!(other.ask(&format!("open {}", file.display())), "EACCES");
    other.send("quit");
}

/// Starts that make no sense are refused with a clear error and change nothing.
#[test]
fn bad_starts_and_bad_durable_topics_are_refused() {
    let d = Daemon::start();
    let c = d.client();
    let memory = TopicParams {
        wal: None,
        ..durable(Fsync::Never, 1 << 16, 256)
    };
    c.create_topic("mem", &memory).unwrap();
    let e = c.subscriber("mem", &from(Start::Earliest)).err().expect("not durable");
    assert_eq!(e.status, Status::Invalid);
    assert!(e.message.contains("not durable"), "{e}");
    c.create_topic("dur", &durable(Fsync::Interval(5), 1 << 16, 256))
        .unwrap();
    c.publisher("dur").unwrap().publish(b"one").unwrap();
    let e = c.subscriber("dur", &from(Start::Seq(5))).err().expect("the future");
    assert_eq!(e.status, Status::Invalid);
    assert!(e.message.contains("not published yet"), "{e}");
    // A time starts at the first message published at or after it: now is
    // the live stream (whether or not "one" was logged yet).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut s = c.subscriber("dur", &from(Start::Time(now.as_nanos() as u64))).unwrap();
    assert_eq!(s.receive(Some(Duration::from_millis(50))).unwrap(), None);
    c.publisher("dur").unwrap().publish(b"two").unwrap();
    assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, 1);
    let mut s = c.subscriber("dur", &from(Start::Time(0))).unwrap();
    assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().data, b"one");
    // Deleting a durable topic deletes its log; the name can be used again.
    let state = d.dir.0.join("state/topics/dur");
    assert!(state.exists());
    c.delete_topic("dur").unwrap();
    assert!(!state.exists(), "the log went with the topic");
    c.create_topic("dur", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
}

/// Retention (`[log]` retain_bytes, small files) removes old log files while
/// a subscriber replays through them: it reads every message anyway (it
/// holds the files open). A later subscriber from seq 0 starts at the oldest
/// message kept and counts the removed ones as lost.
#[test]
fn retention_removes_old_files_without_breaking_a_replay() {
    let (_dir, socket, state, config) = log_dir("dur-retain", "segment_bytes = 4096\nretain_bytes = 16384\n");
    let d = config_daemon(&socket, &state, &config);
    let c = d.client();
    c.create_topic("ret", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
    const N: u64 = 1000;
    let mut p = c.publisher("ret").unwrap();
    for i in 0..N {
        p.publish(&message(i, 100)).unwrap();
    }
    let mut s = c.subscriber("ret", &from(Start::Earliest)).unwrap();
    for i in 0..10 {
        assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, i);
    }
    // Retention runs about once a second: wait until it has cut the log down.
    wait_for("retention", Duration::from_secs(10), || {
        log_files(&state, "ret").len() <= 5
    });
    d.wait_log("retention removed", 1);
    for i in 10..N {
        let m = s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
        assert_eq!((m.seq, m.data), (i, message(i, 100)));
    }
    assert_eq!(s.lost(), 0);
    let files = log_files(&state, "ret");
    let oldest: u64 = files[0].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert!(oldest > 0);
    let mut late = c.subscriber("ret", &from(Start::Seq(0))).unwrap();
    assert_eq!(late.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, oldest);
    assert_eq!(late.lost(), oldest, "what retention removed is counted lost");
}

/// A history longer than one reply's descriptors (here about 190 files of
/// 4 KiB) is read in batches: the subscriber asks for more files as it
/// reaches the end of those it holds (`LogFiles`) and sees every message
/// once, in order, from the oldest, from a seq deep in the log and from a
/// time, then the live stream. A connection that holds no subscriber slot
/// gets no log file for any slot.
#[test]
fn a_history_of_many_files_is_read_in_batches() {
    let (_dir, socket, state, config) = log_dir("dur-many", "segment_bytes = 4096\n");
    let d = config_daemon(&socket, &state, &config);
    let c = d.client();
    c.create_topic("many", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
    const N: u64 = 6000;
    let mut p = c.publisher("many").unwrap();
    for i in 0..N {
        p.publish(&message(i, 100)).unwrap();
    }
    wait_for("the log writer", Duration::from_secs(10), || {
        c.topic_stats("many").unwrap().log_next_seq == N
    });
    let files = log_files(&state, "many").len();
    assert!(files > 150, "{files} files");
    let mut stamp_of_4000 = 0;
    for start in [Start::Earliest, Start::Seq(3000), Start::Time(u64::MAX)] {
        let start = match start {
            Start::Time(_) => Start::Time(stamp_of_4000),
            s => s,
        };
        let first = match start {
            Start::Seq(n) => n,
            Start::Time(_) => 4000,
            _ => 0,
        };
        let mut s = c.subscriber("many", &from(start.clone())).unwrap();
        for i in first..N {
            let m = s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
            assert_eq!((m.seq, &m.data), (i, &message(i, 100)), "from {start:?}");
            if i == 4000 {
                stamp_of_4000 = m.timestamp_ns;
            }
        }
        assert_eq!(s.lost(), 0, "from {start:?}");
        p.publish(b"live").unwrap();
        let live = s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
        assert_eq!(live.data, b"live");
    }
    // A connection of its own, holding no slot, asks for the files of each.
    use aether::protocol::{self, Request};
    let raw = aether::sys::uds::SeqPacket::connect(&socket).unwrap();
    for slot in 0..4 {
        let req = Request::LogFiles {
            topic: "many".into(),
            topic_id: 0,
            slot,
            from_seq: 0,
        };
        raw.send(&protocol::encode_request(&req, slot + 1), None).unwrap();
        let mut buf = vec![0u8; 8192];
        let (n, fds) = raw.recv_fds(&mut buf, 8).unwrap();
        assert!(fds.is_empty(), "slot {slot}: {} files given", fds.len());
        let reply = protocol::decode_reply(req.op(), slot + 1, &buf[..n]).unwrap();
        assert_eq!(reply.unwrap_err().status, Status::Permission, "slot {slot}");
    }
}

/// The first seq of `topic`'s oldest log file.
fn oldest_file(state: &Path, topic: &str) -> u64 {
    let files = log_files(state, topic);
    files[0].file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// `n` messages of 100 bytes to `topic`, numbered on from `from`.
fn publish_n(c: &Client, topic: &str, from: u64, n: u64) {
    let mut p = c.publisher(topic).unwrap();
    for i in from..from + n {
        assert_eq!(p.publish(&message(i, 100)).unwrap(), i);
    }
}

/// `topic`'s retention in force, as `aether-cli topics` shows it: (bytes,
/// where from), (seconds, where from).
fn retention_of(socket: &Path, topic: &str) -> ((u64, String), (u64, String)) {
    let t = topic_row(socket, topic);
    let l = &t["log"];
    let (num, text) = (
        |k: &str| l[k].as_u64().unwrap(),
        |k: &str| l[k].as_str().unwrap().to_string(),
    );
    (
        (num("retain_bytes"), text("retain_bytes_from")),
        (num("retain_seconds"), text("retain_seconds_from")),
    )
}

/// Per-topic retention across processes: three durable topics on one daemon
/// with small log files. `own` keeps about 16 KiB of its own, `plain` sets
/// nothing (the daemon's `[log]`), `keep` sets 0 (no limit, whatever `[log]`
/// says). First `[log]` sets no limit: only `own` is trimmed. A reload that
/// gives `[log]` a 32 KiB limit trims `plain` to it and leaves `own` at its
/// own and `keep` whole. After a restart the saved limits still apply, and
/// `aether-cli topics` shows each in force with where it comes from.
#[test]
fn a_topic_with_its_own_retention_beside_ones_that_follow_the_daemons() {
    let (_dir, socket, state, config) = log_dir("dur-own-retain", "segment_bytes = 4096\n");
    let mut d = config_daemon(&socket, &state, &config);
    let c = d.client();
    let with = |retain_bytes| TopicParams {
        retain_bytes,
        ..durable(Fsync::Never, 1 << 16, 256)
    };
    c.create_topic("own", &with(Some(16 << 10))).unwrap();
    c.create_topic("plain", &with(None)).unwrap();
    c.create_topic("keep", &with(Some(0))).unwrap();
    const N: u64 = 1000; // about 136 KiB of log each: 34 files of 4 KiB
    for t in ["own", "plain", "keep"] {
        publish_n(&c, t, 0, N);
    }
    // At most the limit, plus the file being written.
    let files_within = |t: &str, limit: u64| log_files(&state, t).len() as u64 <= limit / 4096 + 1;
    wait_for("own trimmed to its 16 KiB", Duration::from_secs(10), || {
        files_within("own", 16 << 10)
    });
    // Each writer applies retention about once a second: give the others two passes.
    std::thread::sleep(Duration::from_millis(2500));
    for t in ["plain", "keep"] {
        assert_eq!(oldest_file(&state, t), 0, "{t} keeps everything");
        assert!(log_files(&state, t).len() > 30, "{t}: {:?}", log_files(&state, t));
    }
    assert!(oldest_file(&state, "own") > 0);
    assert_eq!(
        retention_of(&socket, "own"),
        ((16 << 10, "topic".into()), (0, "log".into()))
    );
    assert_eq!(retention_of(&socket, "plain"), ((0, "log".into()), (0, "log".into())));
    assert_eq!(retention_of(&socket, "keep"), ((0, "topic".into()), (0, "log".into())));

    // [log] gets a limit: the topic that set none follows it at once.
    std::fs::write(&config, "[log]\nsegment_bytes = 4096\nretain_bytes = 32768\n").unwrap();
    aetherd::admin::call(&socket, aetherd::admin::Command::Reload, Duration::from_secs(5)).unwrap();
    wait_for("plain trimmed to [log]'s 32 KiB", Duration::from_secs(10), || {
        files_within("plain", 32 << 10)
    });
    assert!(
        log_files(&state, "plain").len() > 5,
        "plain keeps [log]'s 32 KiB, not own's 16"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        oldest_file(&state, "keep"),
        0,
        "keep: 0 is no limit, whatever [log] says"
    );
    assert!(files_within("own", 16 << 10));
    assert_eq!(
        retention_of(&socket, "plain"),
        ((32 << 10, "log".into()), (0, "log".into()))
    );
    assert_eq!(retention_of(&socket, "own").0, (16 << 10, "topic".into()));

    // Restart: the limits were saved with the topics.
    drop(c);
    assert!(d.stop().success());
    let topic_file = std::fs::read_to_string(state.join("topics/own/topic")).unwrap();
    assert!(topic_file.contains("retain_bytes=16384\n"), "{topic_file}");
    let d = config_daemon(&socket, &state, &config);
    let c = d.client();
    for t in ["own", "plain", "keep"] {
        publish_n(&c, t, N, N);
    }
    wait_for("own trimmed again after the restart", Duration::from_secs(10), || {
        files_within("own", 16 << 10) && oldest_file(&state, "own") > N
    });
    wait_for("plain trimmed again after the restart", Duration::from_secs(10), || {
        files_within("plain", 32 << 10) && oldest_file(&state, "plain") > N
    });
    assert!(log_files(&state, "plain").len() > 5);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(oldest_file(&state, "keep"), 0);
    assert_eq!(
        retention_of(&socket, "own"),
        ((16 << 10, "topic".into()), (0, "log".into()))
    );
    assert_eq!(retention_of(&socket, "keep").0, (0, "topic".into()));
    // What is kept still reads back whole, through the log into the ring.
    let mut s = c.subscriber("own", &from(Start::Earliest)).unwrap();
    let first = s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq;
    assert!(first > N, "own starts at its oldest kept, {first}");
    for i in first + 1..2 * N {
        let m = s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
        assert_eq!((m.seq, m.data), (i, message(i, 100)));
    }
}

/// `retain_seconds` of its own: a topic keeping 1 s of log loses its older
/// files within seconds while one without (the daemon's `[log]`: forever)
/// keeps them; the same after a restart.
#[test]
fn a_topic_with_its_own_age_limit() {
    let (_dir, socket, state, config) = log_dir("dur-own-age", "segment_bytes = 4096\n");
    let mut d = config_daemon(&socket, &state, &config);
    let mut c = d.client();
    let aged = TopicParams {
        retain_seconds: Some(1),
        ..durable(Fsync::Never, 1 << 16, 256)
    };
    c.create_topic("aged", &aged).unwrap();
    c.create_topic("all", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
    const N: u64 = 300; // about 10 files each
    for round in 0..2 {
        for t in ["aged", "all"] {
            publish_n(&c, t, round * N, N);
        }
        // Both logs have it all (else "aged" may still show its one file of before).
        wait_for("the log writers", Duration::from_secs(10), || {
            ["aged", "all"]
                .iter()
                .all(|t| c.topic_stats(t).unwrap().log_next_seq == (round + 1) * N)
        });
        // Every file but the one being written is over a second old within ~2 s.
        wait_for("aged's old files removed", Duration::from_secs(10), || {
            log_files(&state, "aged").len() == 1
        });
        assert_eq!(oldest_file(&state, "all"), 0, "all keeps everything");
        let all = log_files(&state, "all").len() as u64;
        assert!(all >= (round + 1) * 8, "all has {all} files");
        assert_eq!(retention_of(&socket, "aged").1, (1, "topic".into()));
        assert_eq!(retention_of(&socket, "all").1, (0, "log".into()));
        if round == 0 {
            assert!(d.stop().success());
            d = config_daemon(&socket, &state, &config);
            c = d.client();
        }
    }
}

/// Retention is a durable topic's: asked of one that is not (through the
/// library, which checks first, and through the admin interface, where the
/// daemon does), it is `Invalid` with a clear message and nothing is made.
#[test]
fn retention_on_a_topic_that_is_not_durable_is_refused() {
    let d = Daemon::start();
    let c = d.client();
    for (retain_bytes, retain_seconds) in [(Some(4096), None), (None, Some(0)), (Some(0), Some(60))] {
        let p = TopicParams {
            wal: None,
            retain_bytes,
            retain_seconds,
            ..durable(Fsync::Never, 1 << 16, 256)
        };
        let e = c.create_topic("mem", &p).unwrap_err();
        assert_eq!(e.status, Status::Invalid, "{e}");
        assert!(e.message.contains("not durable"), "{e}");
        let admin = aetherd::admin::Command::Create {
            topic: "mem".into(),
            policy: None,
            ring_size: None,
            max_message: None,
            fsync: None,
            huge_pages: None,
            retain_bytes,
            retain_seconds,
        };
        let e = aetherd::admin::call(&d.socket, admin, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.status, Status::Invalid, "{e}");
        assert!(e.message.contains("not durable"), "{e}");
        assert_eq!(c.topic_stats("mem").unwrap_err().status, Status::NotFound);
    }
    assert!(!d.dir.0.join("state/topics/mem").exists());
}

/// (seq, timestamp, origin) of every message a subscriber from `start`
/// receives: until the topic's last (`last`), or 300 ms with none.
fn received(c: &aether::Client, topic: &str, start: &Start, last: u64) -> Vec<(u64, u64, bool)> {
    let mut s = c.subscriber(topic, &from(start.clone())).unwrap();
    let mut got = Vec::new();
    while let Some(m) = s.receive(Some(Duration::from_millis(300))).unwrap() {
        assert_eq!(m.data, message(m.seq, 100), "from {start:?}");
        got.push((m.seq, m.timestamp_ns, m.origin.is_some()));
        if m.seq == last {
            break;
        }
    }
    assert_eq!(s.lost(), 0, "from {start:?}");
    got
}

/// The record where the daemon set the first log file's offset for a
/// subscriber from `start` (its index's seek), with that file's first seq:
/// from the descriptors of a raw open on a connection of its own.
fn seek_point(socket: &Path, topic: &str, start: &Start) -> (u64, Option<(u64, u64)>) {
    use aether::logfile::{decode_at, decode_header, Found, SEGMENT_HEADER};
    use aether::protocol::{self, Reply, Request};
    use std::os::unix::fs::FileExt;
    let raw = aether::sys::uds::SeqPacket::connect(socket).unwrap();
    let req = Request::SubscriberOpen {
        topic: topic.into(),
        start: start.clone(),
    };
    raw.send(&protocol::encode_request(&req, 1), None).unwrap();
    let mut buf = vec![0u8; 8192];
    let (n, mut fds) = raw.recv_fds(&mut buf, 32).unwrap();
    let reply = protocol::decode_reply(req.op(), 1, &buf[..n]).unwrap().unwrap();
    assert!(matches!(reply, Reply::Subscribed { start: Some(_), .. }), "{reply:?}");
    let fd = fds.drain(..).nth(4).expect("a log file");
    let at = nix::unistd::lseek(&fd, 0, nix::unistd::Whence::SeekCur).unwrap() as u64;
    let f = std::fs::File::from(fd);
    let mut bytes = vec![0u8; f.metadata().unwrap().len() as usize];
    f.read_exact_at(&mut bytes, 0).unwrap();
    let first = decode_header(&bytes, "log").unwrap().1;
    if at <= SEGMENT_HEADER as u64 {
        return (first, None);
    }
    match decode_at(&bytes, at as usize, first) {
        Found::Record(r, _) => (first, Some((r.seq, r.timestamp_ns))),
        other => panic!("offset {at} of the file from {first}: {other:?}"),
    }
}

/// The index (`<first>.idx` beside each log file): `seq=` and `time=`
/// starts deliver exactly what reading the whole log delivers, in a log
/// whose timestamps go back (every 50th message is published as a
/// bridge does, with its origin's older clock), before and after a
/// restart that rebuilds a missing, a damaged and a torn index; and the
/// daemon hands the file and the place in it that the start needs (the
/// descriptor's offset), not the oldest file's start.
#[test]
fn seq_and_time_starts_seek_by_the_index_and_deliver_what_a_linear_read_does() {
    let (_dir, socket, state, config) = log_dir("dur-index", "segment_bytes = 1048576\n");
    let mut d = config_daemon(&socket, &state, &config);
    let c = d.client();
    let params = TopicParams {
        max_subscribers: 16,
        ..durable(Fsync::Never, 1 << 20, 256)
    };
    c.create_topic("idx", &params).unwrap();
    const N: u64 = 20_000;
    let mut p = c.publisher("idx").unwrap();
    for i in 0..N {
        let data = message(i, 100);
        if i % 50 == 25 {
            let buf = p.loan(data.len() + aether::ORIGIN_BYTES).unwrap();
            buf[..data.len()].copy_from_slice(&data);
            let past = aether::sys::realtime_ns() - 1_000_000_000;
            p.commit_from(data.len(), past, aether::Origin { broker: 7, seq: i })
                .unwrap();
        } else {
            assert_eq!(p.publish(&data).unwrap(), i);
        }
    }
    drop(p);
    wait_for("the log writer", Duration::from_secs(10), || {
        c.topic_stats("idx").unwrap().log_next_seq == N
    });
    let files = log_files(&state, "idx");
    assert!(files.len() >= 3, "{} files", files.len());
    let second: u64 = files[1].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let all = received(&c, "idx", &Start::Earliest, N - 1);
    assert_eq!(all.len() as u64, N);
    assert!(all.windows(2).any(|w| w[1].1 < w[0].1), "timestamps go back");
    let ts = |i: usize| all[i].1;
    let starts = [
        Start::Seq(0),
        Start::Seq(1),
        Start::Seq(7_777),
        Start::Seq(second - 1),
        Start::Seq(second),
        Start::Seq(15_000),
        Start::Seq(N - 1),
        Start::Seq(N),
        Start::Time(0),
        Start::Time(ts(0)),
        Start::Time(ts(9_000)),
        Start::Time(ts(15_025)), // a message stamped 1 s back
        Start::Time(ts(15_026)),
        Start::Time(ts(19_000)),
        Start::Time(ts(N as usize - 1)),
        Start::Time(ts(N as usize - 1) + 1),
    ];
    let check = |c: &aether::Client| {
        for start in &starts {
            let want: Vec<_> = all
                .iter()
                .filter(|m| match *start {
                    Start::Seq(n) => m.0 >= n,
                    Start::Time(t) => m.1 >= t,
                    _ => unreachable!(),
                })
                .copied()
                .collect();
            assert_eq!(received(c, "idx", start, N - 1), want, "from {start:?}");
        }
        // The seek happens: a seq deep in a file is found from a record
        // less than an index step (64 KiB, ~512 records here) before it...
        let (first, at) = seek_point(&socket, "idx", &Start::Seq(15_000));
        let (seq, _) = at.expect("an offset past the file's first record");
        assert!(
            first <= seq && seq <= 15_000 && 15_000 - seq <= 600,
            "seq {seq} in the file from {first}"
        );
        // ...and a time near the end from the file and place where a
        // record at or after it may first be, every record before older.
        let t = ts(19_000);
        let (first, at) = seek_point(&socket, "idx", &Start::Time(t));
        assert!(first > 0, "not the oldest file");
        let (seq, _) = at.expect("an offset past the file's first record");
        assert!(all[..seq as usize].iter().all(|m| m.1 < t));
        // (Within two index steps: an entry's maximum may equal t.)
        assert!(19_000 - seq <= 1200, "seq {seq}");
    };
    check(&c);

    // A restart: one index missing, one damaged, the last torn; rebuilt.
    drop(c);
    d.stop();
    let idx = |f: &PathBuf| f.with_extension("idx");
    std::fs::remove_file(idx(&files[0])).unwrap();
    let mut bad = std::fs::read(idx(&files[1])).unwrap();
    bad[32 + 3 * 32 + 9] ^= 0x20;
    std::fs::write(idx(&files[1]), bad).unwrap();
    let last = idx(files.last().unwrap());
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let d = config_daemon(&socket, &state, &config);
    d.wait_log("index rebuilt", 3);
    let c = d.client();
    check(&c);
    c.publisher("idx").unwrap().publish(&message(N, 100)).unwrap();
    assert_eq!(received(&c, "idx", &Start::Seq(N), N).len(), 1);
}

/// A named durable subscription: the daemon keeps its committed position
/// across the subscriber's end and a kill -9 of the daemon; what was read
/// and not committed comes again (at least once); one holder at a time;
/// commit is for durable subscriptions only, and only for the slot's holder.
#[test]
fn a_durable_subscription_resumes_where_it_committed_across_restarts() {
    let dir = TempDir::new("dur-named");
    let (socket, state) = (dir.0.join("aetherd.sock"), dir.0.join("state"));
    let mut d = daemon(&socket, &state, &[]);
    let c = d.client();
    c.create_topic("ns", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
    let mut p = c.publisher("ns").unwrap();
    for i in 0..100 {
        p.publish(&message(i, 50)).unwrap();
    }
    let billing = || from(Start::Durable("billing".into()));
    let mut s = c.subscriber("ns", &billing()).unwrap();
    let e = c.subscriber("ns", &billing()).err().expect("in use");
    assert_eq!(e.status, Status::Exists, "{e}");
    for i in 0..40 {
        assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, i);
    }
    s.commit().unwrap();
    for i in 40..60 {
        assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, i);
    }
    drop(s);
    // Not committed past 40: the next holder starts there.
    let mut s = c.subscriber("ns", &billing()).unwrap();
    assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, 40);
    for i in 41..100 {
        assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, i);
    }
    s.commit().unwrap();
    let e = c
        .subscriber("ns", &SubscriberConfig::default())
        .unwrap()
        .commit()
        .unwrap_err();
    assert_eq!(e.status, Status::Invalid);
    drop((s, p, c));
    kill9(&mut d);
    let d = daemon(&socket, &state, &[]);
    let c = d.client();
    c.publisher("ns").unwrap().publish(b"after the crash").unwrap();
    let mut s = c.subscriber("ns", &billing()).unwrap();
    let m = s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!((m.seq, m.data.as_slice()), (100, &b"after the crash"[..]));
    // A new name starts with the oldest message logged.
    let mut audit = c.subscriber("ns", &from(Start::Durable("audit".into()))).unwrap();
    assert_eq!(audit.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, 0);
    let e = c
        .subscriber("ns", &from(Start::Durable("../escape".into())))
        .err()
        .expect("a bad name");
    assert_eq!(e.status, Status::Invalid);
}

/// The statistics API: a topic's figures from the broker (one request) and a
/// subscriber's own from the segment, as a program sees them.
#[test]
fn topic_and_subscriber_statistics() {
    let d = Daemon::start();
    let c = d.client();
    c.create_topic("st", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
    let mut s = c.subscriber("st", &SubscriberConfig::default()).unwrap();
    let mut p = c.publisher("st").unwrap();
    for i in 0..10 {
        p.publish(&message(i, 50)).unwrap();
    }
    for _ in 0..4 {
        s.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
    }
    let st = s.stats();
    assert_eq!((st.published, st.delivered, st.lost, st.lag), (10, 4, 0, 6));
    let mut t = c.topic_stats("st").unwrap();
    wait_for("the log writer", Duration::from_secs(5), || {
        t = c.topic_stats("st").unwrap();
        t.log_next_seq == 10
    });
    assert_eq!((t.published, t.publishers, t.subscribers), (10, 1, 2), "{t:?}");
    assert!(t.durable && t.log_bytes > 10 * 50 && t.log_oldest_seq == 0, "{t:?}");
    assert_eq!(c.topic_stats("nope").unwrap_err().status, Status::NotFound);
    assert_eq!(c.topic_stats("bad name").unwrap_err().status, Status::Invalid);
}

/// The ring's numbering has holes (a loan given up takes a number): the log
/// keeps the ring's numbers, history and ring agree on them, and a
/// restarted daemon numbers on after the last.
#[test]
fn holes_in_the_numbering_are_kept_across_log_ring_and_restart() {
    let dir = TempDir::new("dur-holes");
    let (socket, state) = (dir.0.join("aetherd.sock"), dir.0.join("state"));
    let mut d = daemon(&socket, &state, &[]);
    let c = d.client();
    c.create_topic("holes", &durable(Fsync::Never, 1 << 16, 256)).unwrap();
    let mut p = c.publisher("holes").unwrap();
    p.loan(8).unwrap();
    p.abort().unwrap(); // seq 0 given up
    assert_eq!(p.publish(b"a").unwrap(), 1);
    p.loan(8).unwrap();
    p.abort().unwrap(); // seq 2
    assert_eq!(p.publish(b"b").unwrap(), 3);
    let seqs = |c: &aether::Client| {
        let mut s = c.subscriber("holes", &from(Start::Earliest)).unwrap();
        let mut got = Vec::new();
        while let Some(m) = s.receive(Some(Duration::from_millis(300))).unwrap() {
            got.push((m.seq, m.data));
        }
        got
    };
    wait_for("the log writer", Duration::from_secs(5), || {
        c.topic_stats("holes").unwrap().log_next_seq == 4
    });
    assert_eq!(seqs(&c), vec![(1, b"a".to_vec()), (3, b"b".to_vec())]);
    // From seq 2 (a hole): the next one there is.
    let mut s = c.subscriber("holes", &from(Start::Seq(2))).unwrap();
    assert_eq!(s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq, 3);
    drop((s, p, c));
    d.stop();
    let d = daemon(&socket, &state, &[]);
    let c = d.client();
    assert_eq!(c.publisher("holes").unwrap().publish(b"c").unwrap(), 4);
    assert_eq!(
        seqs(&c),
        vec![(1, b"a".to_vec()), (3, b"b".to_vec()), (4, b"c".to_vec())]
    );
}

/// One daemon per state directory: a second daemon on the same directory
/// (another socket) refuses durable topics and says why, and touches
/// nothing of the first's logs; topics in memory it still serves.
#[test]
fn a_second_daemon_on_the_same_state_directory_makes_no_durable_topic() {
    let dir = TempDir::new("dur-lock");
    let state = dir.0.join("state");
    let first = daemon(&dir.0.join("a.sock"), &state, &[]);
    first
        .client()
        .create_topic("mine", &durable(Fsync::Never, 1 << 16, 256))
        .unwrap();
    let second = daemon(&dir.0.join("b.sock"), &state, &[]);
    let c = second.client();
    let e = c
        .create_topic("theirs", &durable(Fsync::Never, 1 << 16, 256))
        .unwrap_err();
    assert_eq!(e.status, Status::Exists, "{e}");
    assert!(e.message.contains("another aetherd"), "{e}");
    assert!(!state.join("topics/theirs").exists());
    assert!(log_files(&state, "mine").len() == 1);
    let memory = TopicParams {
        wal: None,
        ..durable(Fsync::Never, 1 << 16, 256)
    };
    c.create_topic("plain", &memory).unwrap();
}

/// A publisher that sends no timestamps (`set_timestamps(false)`, kept
/// across `reopen`): its messages carry 0, live and from the log, through
/// `publish` and loan/commit alike, and the others keep their times. A
/// `time=` start takes an unstamped message by those before it: passed
/// over before the first stamped at or after the time, delivered after;
/// from the log (seeking by the index, across files) exactly what a linear
/// read keeps by that rule, and from the ring (a start in the future).
#[test]
fn a_time_start_takes_messages_without_timestamps_by_those_before() {
    let (_dir, socket, state, config) = log_dir("dur-untimed", "segment_bytes = 1048576\n");
    let d = config_daemon(&socket, &state, &config);
    let c = d.client();
    let params = TopicParams {
        max_subscribers: 8,
        ..durable(Fsync::Never, 1 << 20, 256)
    };
    c.create_topic("untimed", &params).unwrap();
    const N: u64 = 12_000;
    let untimed = |i: u64| (3_000..3_010).contains(&i) || i == 9_000;
    let mut live = c.subscriber("untimed", &SubscriberConfig::default()).unwrap();
    let mut p = c.publisher("untimed").unwrap();
    assert!(p.timestamps(), "on by default");
    let before = aether::sys::realtime_ns();
    for i in 0..N {
        p.set_timestamps(!untimed(i));
        if i == 3_005 {
            p.reopen().unwrap();
            assert!(!p.timestamps(), "kept across reopen");
        }
        let data = message(i, 100);
        if i % 2 == 0 {
            assert_eq!(p.publish(&data).unwrap(), i);
        } else {
            p.loan(data.len()).unwrap().copy_from_slice(&data);
            assert_eq!(p.commit(data.len()).unwrap(), i);
        }
        // The live subscriber keeps up (the ring holds ~8000 of them).
        let m = live.receive(Some(Duration::from_secs(5))).unwrap().unwrap();
        assert_eq!((m.seq, m.data.as_slice()), (i, data.as_slice()));
        if untimed(i) {
            assert_eq!(m.timestamp_ns, 0, "seq {i}");
        } else {
            assert!(
                m.timestamp_ns >= before && m.timestamp_ns <= aether::sys::realtime_ns() + 1_000_000,
                "seq {i}"
            );
        }
    }
    drop(p);
    wait_for("the log writer", Duration::from_secs(10), || {
        c.topic_stats("untimed").unwrap().log_next_seq == N
    });
    assert!(log_files(&state, "untimed").len() >= 2);
    let all = received(&c, "untimed", &Start::Earliest, N - 1);
    assert_eq!(all.len() as u64, N);
    assert!(
        all.iter().all(|m| (m.1 == 0) == untimed(m.0)),
        "0 from the log exactly where sent"
    );
    let ts = |i: usize| all[i].1;
    for start in [
        Start::Time(ts(0)),
        Start::Time(ts(2_000)),
        Start::Time(ts(5_000)),
        Start::Time(ts(10_000)),
        Start::Time(ts(N as usize - 1) + 1),
    ] {
        let Start::Time(t) = start else { unreachable!() };
        let mut found = false;
        let want: Vec<_> = all
            .iter()
            .filter(|m| {
                found |= m.1 >= t;
                m.1 >= t || (found && m.1 == 0)
            })
            .copied()
            .collect();
        assert_eq!(received(&c, "untimed", &start, N - 1), want, "from {start:?}");
    }
    // Of the ring, from a time to come: unstamped messages before the first
    // stamped at or after it are passed over, those after it delivered.
    let t = aether::sys::realtime_ns() + 100_000_000;
    let mut s = c.subscriber("untimed", &from(Start::Time(t))).unwrap();
    let mut p = c.publisher("untimed").unwrap();
    p.set_timestamps(false);
    p.publish(&message(N, 100)).unwrap();
    while aether::sys::realtime_ns() <= t {
        std::thread::sleep(Duration::from_millis(10));
    }
    p.publish(&message(N + 1, 100)).unwrap();
    p.set_timestamps(true);
    p.publish(&message(N + 2, 100)).unwrap();
    p.set_timestamps(false);
    p.publish(&message(N + 3, 100)).unwrap();
    let got: Vec<_> = (0..2)
        .map(|_| s.receive(Some(Duration::from_secs(5))).unwrap().unwrap().seq)
        .collect();
    assert_eq!(got, [N + 2, N + 3]);
    assert_eq!(s.receive(Some(Duration::from_millis(50))).unwrap(), None);
}
