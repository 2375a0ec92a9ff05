//! Fault loops across real processes (issue 22): SIGKILL of a publisher
//! between claim and commit, of a subscriber holding a zero-copy view, of
//! the daemon in the middle of requests, of a CLI waiting on its reply FIFO,
//! and of a bridged daemon in the middle of sending a durable topic. (The
//! daemon killed in the middle of a log write is durable.rs's
//! `kill_9_under_fsync_always_loses_no_acknowledged_publish`, whose rounds
//! the same variable sets.)
//!
//! Rounds: `AETHER_FAULT_ROUNDS` (1000 on demand); by default what a CI run
//! affords for each kind (printed). After every round the surviving party's
//! next call returns within its timeout and nothing committed is lost;
//! after all of them nothing is left behind: no /dev/shm object, no message
//! queue, no reply FIFO, and the daemon holds no more descriptors than
//! before the rounds (plus [`FD_SLACK`]).

mod common;

use aether::{Client, Deadline, Policy, Status, SubscriberConfig, TopicParams};
use common::*;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Descriptors a daemon may hold beyond its baseline after the rounds (none
/// is expected: the bound only absorbs a descriptor opened for a moment,
/// e.g. /proc read by the housekeeper while we count).
const FD_SLACK: usize = 2;
/// How long a surviving party's call may take (the calls' own timeouts are
/// shorter; this is the bound on "not wedged").
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn reliable(ring_size: u64, max_subscribers: u32) -> TopicParams {
    TopicParams {
        policy: Policy::Reliable,
        ring_size,
        max_message: 512,
        max_subscribers,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    }
}

/// Entry point of child processes; a no-op when run as an ordinary test.
///
/// - `crasher`: loans (claims) 64 bytes on `AETHER_TEST_TOPIC`, writes half,
///   prints `AETHER:loaned`, and sleeps until killed.
/// - `viewer`: subscribes, prints `AETHER:subscribed`, takes the next
///   message as a zero-copy view, prints `AETHER:viewing SEQ`, and sleeps
///   holding it until killed.
/// - `requester`: forever: connects (retrying), prints `AETHER:up FDS` (its
///   descriptors then), and makes requests of every kind until one fails,
///   then prints `AETHER:down STATUS MS MESSAGE` (the failed call's status, how
///   long it took) and lets go of everything.
/// - `acked`: publishes `round.i` (8 + 8 bytes) until a publish fails,
///   printing `AETHER:acked SEQ ROUND I` for each that returned OK.
#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    let socket = PathBuf::from(env_var("AETHER_TEST_SOCKET"));
    let connect = || Client::connect_with(Some(&socket), false);
    match role.as_str() {
        "crasher" => {
            let c = connect().expect("connect");
            let mut p = c.publisher(&env_var("AETHER_TEST_TOPIC")).expect("publisher");
            let buf = p.loan(64).expect("loan");
            buf[..32].fill(0xee);
            println!("AETHER:loaned");
            std::thread::sleep(Duration::from_secs(120));
        }
        "viewer" => {
            let c = connect().expect("connect");
            let mut s = c
                .subscriber(&env_var("AETHER_TEST_TOPIC"), &SubscriberConfig::default())
                .expect("subscriber");
            println!("AETHER:subscribed");
            let rec = s
                .receive_view(&Deadline::after(Some(Duration::from_secs(30))))
                .expect("a view");
            println!("AETHER:viewing {}", rec.seq);
            std::thread::sleep(Duration::from_secs(120));
        }
        "requester" => loop {
            let c = loop {
                match connect() {
                    Ok(c) => break c,
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            };
            println!("AETHER:up {}", fd_count(std::process::id()));
            let mut held_p = Vec::new();
            let mut held_s = Vec::new();
            for n in 0u64.. {
                let topic = format!("r{}", n / 6 % 4);
                let t0 = Instant::now();
                let r: aether::Result<()> = match n % 6 {
                    0 => c.create_topic(&topic, &reliable(1 << 14, 4)),
                    1 => c.publisher(&topic).map(|p| held_p.push(p)),
                    2 => c
                        .subscriber(&topic, &SubscriberConfig::default())
                        .map(|s| held_s.push(s)),
                    3 => held_p.last_mut().map_or(Ok(()), |p| p.publish(b"x").map(|_| ())),
                    4 => c.topic_stats(&topic).map(|_| ()),
                    _ => {
                        held_p.clear();
                        held_s.clear();
                        c.delete_topic(&topic)
                    }
                };
                match r {
                    Err(e) if !matches!(e.status, Status::Exists | Status::NotFound | Status::Limit) => {
                        println!("AETHER:down {:?} {} {}", e.status, t0.elapsed().as_millis(), e.message);
                        break;
                    }
                    _ => {}
                }
            }
        },
        "acked" => {
            let c = connect().expect("connect");
            let round: u64 = env_var("AETHER_ROUND").parse().expect("round");
            let mut p = c.publisher(&env_var("AETHER_TEST_TOPIC")).expect("publisher");
            p.set_timeout(Some(Duration::from_secs(30)));
            for i in 0u64.. {
                let mut payload = round.to_le_bytes().to_vec();
                payload.extend_from_slice(&i.to_le_bytes());
                match p.publish(&payload) {
                    Ok(seq) => println!("AETHER:acked {seq} {round} {i}"),
                    Err(e) => {
                        println!("AETHER:error {:?}", e.status);
                        break;
                    }
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn kill9(child: &mut std::process::Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
}

/// Nothing of daemon `d` outside it: no /dev/shm object, no message queue,
/// no reply FIFO.
fn assert_nothing_left(d: &Daemon) {
    assert_eq!(shm_objects(d.instance_id), Vec::<String>::new(), "/dev/shm");
    assert_eq!(mqueue_objects(d.instance_id), Vec::<String>::new(), "/dev/mqueue");
    wait_for("the reply FIFOs to be swept", Duration::from_secs(10), || {
        reply_fifos(&d.socket).is_empty()
    });
}

/// A publisher killed between claim (loan) and commit, round after round:
/// a subscriber (the test itself) reading the reliable topic gets each
/// healthy message within its timeout, counts each abandoned record lost
/// exactly once, and loses nothing committed; the publisher slots come back
/// (a topic has 64: had they leaked, round 64 would be refused); the
/// daemon's descriptors return to their baseline.
#[test]
fn publisher_killed_between_claim_and_commit() {
    let rounds = fault_rounds(100);
    let d = Daemon::start();
    let pid = d.child.id();
    let c = d.client();
    c.create_topic("claim", &reliable(1 << 14, 4)).unwrap();
    let mut s = c.subscriber("claim", &SubscriberConfig::default()).unwrap();
    let mut p = c.publisher("claim").unwrap();
    p.set_timeout(Some(CALL_TIMEOUT));
    let baseline = fd_count(pid);
    let env = [d.socket_env(), ("AETHER_TEST_TOPIC", "claim".to_string())];
    let t0 = Instant::now();
    for round in 0..rounds {
        let mut crasher = Role::spawn("crasher", &env);
        crasher.expect("loaned");
        kill9(&mut crasher.child);
        // The healthy publisher goes on past the abandoned record, and the
        // subscriber gets its message (and each before) within the timeout.
        for k in 0..3 {
            let i = round * 3 + k;
            p.publish(&message(i, 40)).unwrap();
            let m = s
                .receive(Some(CALL_TIMEOUT))
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: wedged behind the abandoned record"));
            assert_eq!(m.data, message(i, 40), "round {round}: committed message {i}");
        }
        assert_eq!(s.lost(), round + 1, "round {round}: each abandoned record counted once");
    }
    assert_eq!(s.delivered(), rounds * 3, "nothing committed was lost");
    wait_fds_at_most(pid, baseline + FD_SLACK, "after the crashers");
    assert_nothing_left(&d);
    println!(
        "faults: publisher killed between claim and commit: {rounds} rounds in {:.1} s; daemon fds {baseline} -> {}",
        t0.elapsed().as_secs_f64(),
        fd_count(pid)
    );
}

/// A subscriber killed while it holds a zero-copy view of a reliable topic,
/// round after round: its cursor would hold the ring forever; the daemon
/// frees its slot, so the publisher writes past a whole ring within its
/// timeout, and a surviving subscriber gets every message in order. The
/// topic has 4 subscriber slots: a leaked slot would refuse the fifth round.
#[test]
fn subscriber_killed_holding_a_zero_copy_view() {
    let rounds = fault_rounds(100);
    let d = Daemon::start();
    let pid = d.child.id();
    let c = d.client();
    // 4096 bytes of ring: ~50 records of 40 bytes; a round writes 100.
    c.create_topic("view", &reliable(4096, 4)).unwrap();
    let mut s = c.subscriber("view", &SubscriberConfig::default()).unwrap();
    let mut p = c.publisher("view").unwrap();
    p.set_timeout(Some(CALL_TIMEOUT));
    let baseline = fd_count(pid);
    let env = [d.socket_env(), ("AETHER_TEST_TOPIC", "view".to_string())];
    let mut i = 0u64;
    let t0 = Instant::now();
    for round in 0..rounds {
        let mut viewer = Role::spawn("viewer", &env);
        viewer.expect("subscribed");
        p.publish(&message(i, 40)).unwrap();
        assert_eq!(viewer.line(), format!("viewing {i}"));
        assert_eq!(s.receive(Some(CALL_TIMEOUT)).unwrap().unwrap().data, message(i, 40));
        i += 1;
        kill9(&mut viewer.child);
        for _ in 0..100 {
            let t = Instant::now();
            p.publish(&message(i, 40))
                .unwrap_or_else(|e| panic!("round {round}: the dead view holds the ring: {e}"));
            assert!(t.elapsed() < CALL_TIMEOUT);
            let m = s.receive(Some(CALL_TIMEOUT)).unwrap().expect("a message");
            assert_eq!(m.data, message(i, 40), "round {round}: message {i} in order");
            i += 1;
        }
    }
    assert_eq!((s.delivered(), s.lost()), (i, 0), "nothing lost");
    wait_fds_at_most(pid, baseline + FD_SLACK, "after the viewers");
    assert_nothing_left(&d);
    println!(
        "faults: subscriber killed holding a view: {rounds} rounds in {:.1} s; daemon fds {baseline} -> {}",
        t0.elapsed().as_secs_f64(),
        fd_count(pid)
    );
}

/// A daemon on `socket` with its state in `state`, its log in a fresh directory.
fn daemon_on(socket: &Path, state: &Path) -> Daemon {
    Daemon::start_with(
        TempDir::new("faults-log"),
        socket.to_path_buf(),
        &[
            OsStr::new("--socket"),
            socket.as_os_str(),
            OsStr::new("--state-dir"),
            state.as_os_str(),
        ],
        &[],
    )
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

/// The daemon SIGKILLed in the middle of requests (a requester in another
/// process makes every kind of request in a loop; the kill comes 0 to 20 ms
/// after it connected), then started again on the same socket: the call in
/// flight fails `Unavailable` within its timeout, the requester reconnects
/// to the new daemon holding no more descriptors than the first time, and
/// nothing accumulates beside the socket or in /dev/shm.
#[test]
fn daemon_killed_mid_request() {
    let rounds = fault_rounds(100);
    let dir = TempDir::new("faults-req");
    let (socket, state) = (dir.0.join("aetherd.sock"), dir.0.join("state"));
    let mut d = daemon_on(&socket, &state);
    let mut req = Role::spawn("requester", &[d.socket_env()]);
    let mut first_fds = None;
    let mut entries = None;
    let mut slowest = 0u64;
    let mut instances = Vec::new();
    let t0 = Instant::now();
    for round in 0..rounds {
        let up = req.line();
        let fds: usize = up.strip_prefix("up ").expect("up").parse().unwrap();
        let first = *first_fds.get_or_insert(fds);
        assert!(
            fds <= first,
            "round {round}: the requester holds {fds} descriptors, {first} at first"
        );
        std::thread::sleep(Duration::from_micros(aether::sys::random_u64() % 20_000));
        kill9(&mut d.child);
        instances.push(d.instance_id);
        let down = req.line();
        let w: Vec<&str> = down.splitn(4, ' ').collect();
        assert_eq!(w[..2], ["down", "Unavailable"], "round {round}: {down}");
        let ms: u64 = w[2].parse().unwrap();
        assert!(
            ms < CALL_TIMEOUT.as_millis() as u64,
            "round {round}: a call took {ms} ms"
        );
        slowest = slowest.max(ms);
        // The same socket and state: the killed daemon's socket, pipe and lock are taken over.
        d = daemon_on(&socket, &state);
        let now = dir_entries(&dir.0);
        assert_eq!(
            &now,
            entries.get_or_insert_with(|| now.clone()),
            "round {round}: what lies beside the socket"
        );
    }
    kill9(&mut req.child);
    assert_nothing_left(&d);
    d.stop();
    for id in instances {
        assert_eq!(shm_objects(id), Vec::<String>::new());
    }
    let left = dir_entries(&dir.0);
    assert!(
        left.iter().all(|e| e == "state"),
        "a stopped daemon leaves nothing but its state: {left:?}"
    );
    println!(
        "faults: daemon killed mid-request: {rounds} rounds in {:.1} s; slowest failed call {slowest} ms; \
         requester fds {}",
        t0.elapsed().as_secs_f64(),
        first_fds.unwrap_or(0)
    );
}

/// `aether-cli`, built beside aetherd (`cargo build -p aether-cli`).
fn cli_path() -> PathBuf {
    let p = Path::new(AETHERD).with_file_name("aether-cli");
    assert!(
        p.exists(),
        "{} missing: build it first (cargo build -p aether-cli)",
        p.display()
    );
    p
}

fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('T')))
}

/// `aether-cli status` SIGKILLed while it waits on its reply FIFO, round
/// after round: on odd rounds deterministically (the daemon is stopped with
/// SIGSTOP until the CLI's FIFO exists, then the CLI is killed and the
/// daemon continued, to find a dead requester), on even rounds 0 to 5 ms
/// after it started. Each round the next admin call is answered within its
/// timeout; at the end the daemon has swept every dead CLI's FIFO, holds no
/// more descriptors than before, and a real CLI still works.
#[test]
fn cli_killed_waiting_on_its_reply() {
    let rounds = fault_rounds(100);
    let cli = cli_path();
    let d = Daemon::start();
    let pid = d.child.id();
    let call = || aetherd::admin::call(&d.socket, aetherd::admin::Command::Status, Duration::from_secs(5));
    call().expect("status");
    let baseline = fd_count(pid);
    let t0 = Instant::now();
    for round in 0..rounds {
        let freeze = round % 2 == 1;
        if freeze {
            d.signal(libc::SIGSTOP);
            wait_for("the daemon to stop", Duration::from_secs(10), || stopped(pid));
        }
        let before = reply_fifos(&d.socket).len();
        let mut c = Command::new(&cli)
            .args([OsStr::new("--socket"), d.socket.as_os_str()])
            .args(["status", "--timeout", "30"])
            .env("AETHER_NO_AUTOSTART", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if freeze {
            wait_for("the CLI's reply FIFO", Duration::from_secs(10), || {
                reply_fifos(&d.socket).len() > before
            });
        } else {
            std::thread::sleep(Duration::from_micros(aether::sys::random_u64() % 5000));
        }
        kill9(&mut c);
        if freeze {
            d.signal(libc::SIGCONT);
        }
        let t = Instant::now();
        let r = call();
        assert!(r.is_ok(), "round {round}: the next admin call: {r:?}");
        assert!(t.elapsed() < CALL_TIMEOUT, "round {round}: wedged {:?}", t.elapsed());
    }
    assert_nothing_left(&d);
    wait_fds_at_most(pid, baseline + FD_SLACK, "after the killed CLIs");
    let out = Command::new(&cli)
        .args([OsStr::new("--socket"), d.socket.as_os_str()])
        .args(["status", "--timeout", "5"])
        .env("AETHER_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "faults: CLI killed waiting on its reply: {rounds} rounds in {:.1} s; daemon fds {baseline} -> {}",
        t0.elapsed().as_secs_f64(),
        fd_count(pid)
    );
}

// ---------------------------------------------------------------------------
// The daemon killed in the middle of a bridge send (the helpers as in
// bridge.rs).

#[cfg(feature = "bridge")]
mod bridged {
    use super::*;

    /// A broker `name` at home `home` (socket and state there) bridging
    /// `fault.*`, listening on `listen` or connecting to `connect`.
    fn broker(home: &Path, name: &str, listen: Option<u16>, connect: Option<u16>) -> Daemon {
        let socket = home.join("aetherd.sock");
        let mut args: Vec<String> = vec![
            "--socket".into(),
            socket.display().to_string(),
            "--state-dir".into(),
            home.join("state").display().to_string(),
            "--bridge-name".into(),
            name.into(),
            "--bridge-topics".into(),
            "fault.*".into(),
        ];
        if let Some(p) = listen {
            args.extend(["--bridge-listen".into(), format!("tcp/127.0.0.1:{p}")]);
        }
        if let Some(p) = connect {
            args.extend(["--bridge-connect".into(), format!("tcp/127.0.0.1:{p}")]);
        }
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        Daemon::start_with(TempDir::new(&format!("faults-bridge-{name}")), socket, &args, &[])
    }

    /// Parses a message of the stream: `(round, i)` of an `acked` payload, or
    /// the round of a `mark R`.
    enum Got {
        Msg(u64, u64),
        Mark(u64),
        Other,
    }

    fn parse(data: &[u8]) -> Got {
        if let Some(r) = data.strip_prefix(b"mark ") {
            return Got::Mark(std::str::from_utf8(r).unwrap().parse().unwrap());
        }
        if data.len() == 16 {
            let w = |k: usize| u64::from_le_bytes(data[k..k + 8].try_into().unwrap());
            return Got::Msg(w(0), w(8));
        }
        Got::Other
    }

    /// Broker `a` publishes a durable topic (`fsync = always`) that crosses
    /// to broker `b`; `a` is SIGKILLed while a publisher in another process
    /// publishes (the bridge in the middle of sending), and started again
    /// on its state, round after round. After each restart the bridge
    /// resumes from its durable subscription's last commit: `b`'s
    /// subscriber gets every publish that `a` acknowledged, in order, none
    /// twice (what is sent again `b` drops as a duplicate), before the
    /// round's closing mark.
    #[test]
    fn bridged_daemon_killed_mid_send() {
        // A round restarts a daemon and waits for its link (about 0.2 s here).
        let rounds = fault_rounds(100);
        if std::env::var("AETHER_FAULT_ROUNDS").is_err() {
            println!(
                "faults: bridge: {rounds} rounds (each restarts a bridged daemon); AETHER_FAULT_ROUNDS=N for more"
            );
        }
        let port = free_port();
        let (home_a, home_b) = (TempDir::new("faults-br-a"), TempDir::new("faults-br-b"));
        let durable = TopicParams {
            policy: Policy::Reliable,
            ring_size: 1 << 16,
            max_message: 256,
            max_subscribers: 8,
            wal: Some(aether::Fsync::Always),
            huge_pages: false,
            retain_bytes: None,
            retain_seconds: None,
        };
        let b = broker(&home_b.0, "b", Some(port), None);
        let mut a = broker(&home_a.0, "a", None, Some(port));
        let cb = b.client();
        cb.create_topic("fault.d", &durable).unwrap();
        a.client().create_topic("fault.d", &durable).unwrap();
        let mut sub = cb.subscriber("fault.d", &SubscriberConfig::default()).unwrap();
        let mut last: Option<(u64, u64)> = None;
        let (mut acked_total, mut received, mut again, mut mark) = (0u64, 0u64, 0u64, 0u64);
        // The route is open once a mark crosses.
        let mut send_mark = |a: &Daemon, sub: &mut aether::Subscriber, until: &mut dyn FnMut(Got)| {
            let mut p = a.client().publisher("fault.d").unwrap();
            let end = Instant::now() + Duration::from_secs(60);
            mark += 1;
            p.publish(format!("mark {mark}").as_bytes()).unwrap();
            loop {
                assert!(Instant::now() < end, "mark {mark} did not cross");
                match sub.receive(Some(Duration::from_millis(500))).unwrap() {
                    Some(m) => match parse(&m.data) {
                        Got::Mark(k) if k == mark => return,
                        Got::Mark(_) => {}
                        g => {
                            until(g);
                        }
                    },
                    // Not across yet (the link is coming up): a mark again.
                    None => {
                        mark += 1;
                        p.publish(format!("mark {mark}").as_bytes()).unwrap();
                    }
                }
            }
        };
        send_mark(&a, &mut sub, &mut |_| {});
        let t0 = Instant::now();
        for round in 0..rounds {
            let mut pubr = Role::spawn(
                "acked",
                &[
                    a.socket_env(),
                    ("AETHER_TEST_TOPIC", "fault.d".into()),
                    ("AETHER_ROUND", round.to_string()),
                ],
            );
            let mut acked = Vec::new();
            let mut record = |l: &str| {
                let w: Vec<u64> = l
                    .strip_prefix("acked ")
                    .unwrap_or_else(|| panic!("an ack: {l}"))
                    .split(' ')
                    .map(|x| x.parse().unwrap())
                    .collect();
                acked.push(w[2]);
            };
            for _ in 0..20 + aether::sys::random_u64() % 200 {
                record(&pubr.line());
            }
            a.signal(libc::SIGKILL);
            let _ = a.child.wait();
            loop {
                let l = pubr.line();
                if l.starts_with("error") {
                    break;
                }
                record(&l);
            }
            pubr.wait_ok();
            a = broker(&home_a.0, "a", None, Some(port));
            // Everything up to the round's mark: in order, none twice, every ack.
            let mut seen = std::collections::BTreeSet::new();
            send_mark(&a, &mut sub, &mut |g| {
                if let Got::Msg(r, i) = g {
                    received += 1;
                    if last.is_some_and(|l| (r, i) <= l) {
                        // Out of order or twice: counted, and failed on below.
                        if again < 5 {
                            println!("faults: bridge round {round}: ({r}, {i}) after {last:?}");
                        }
                        again += 1;
                        return;
                    }
                    last = Some((r, i));
                    if r == round {
                        seen.insert(i);
                    }
                }
            });
            for i in &acked {
                assert!(
                    seen.contains(i),
                    "round {round}: acknowledged message {i} never crossed"
                );
            }
            acked_total += acked.len() as u64;
        }
        println!(
            "faults: bridged daemon killed mid-send: {rounds} rounds in {:.1} s; {acked_total} acknowledged, \
             {received} received, {again} of them twice or out of order",
            t0.elapsed().as_secs_f64()
        );
        assert_eq!(again, 0, "messages delivered twice after the sending broker restarted");
        assert_eq!(shm_objects(a.instance_id), Vec::<String>::new());
    }
}
