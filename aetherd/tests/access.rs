//! Configuration, access control and limits, end to end: a private `aetherd`
//! started with a configuration file, and clients running as another user
//! (this binary re-executed as uid 65534, which needs root; those tests say
//! "skipped" and pass when not run as root).

mod common;

use aether::{Client, Status, SubscriberConfig, TopicParams};
use common::*;
use std::ffi::OsStr;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;
/// A supplementary group given to the other-user client (need not exist in /etc/group).
const EXTRA_GROUP: u32 = 4242;

/// Entry point of child processes; a no-op when run as an ordinary test.
///
/// Role `client`: one command per stdin line, one `AETHER:<status>[: detail]`
/// line per command, all on one connection (so a reload can be seen by a
/// client that stays connected). Commands: `id`, `connect`, `create T`,
/// `delete T`, `sub T`, `pub T [MESSAGE]`, `shm NAME`, `quit`. Opened
/// publishers and subscribers are kept until the process exits.
#[test]
fn child_main() {
    let Ok(role) = std::env::var("AETHER_CHILD_ROLE") else {
        return;
    };
    assert_eq!(role, "client", "unknown role");
    let socket = PathBuf::from(env_var("AETHER_TEST_SOCKET"));
    let mut client: Option<Client> = None;
    let (mut subs, mut pubs) = (Vec::new(), Vec::new());
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        let words: Vec<&str> = line.split_whitespace().collect();
        let c = || client.as_ref().expect("connect first");
        let answer = match words.as_slice() {
            ["id"] => {
                // SAFETY: getuid/getgid have no preconditions.
                let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
                format!("Ok: uid={uid} gid={gid}")
            }
            ["connect"] => outcome(Client::connect_with(Some(&socket), false).map(|c| client = Some(c))),
            ["create", t] => outcome(c().create_topic(t, &small_topic())),
            ["delete", t] => outcome(c().delete_topic(t)),
            ["stats", t] => outcome(c().topic_stats(t)),
            ["sub", t] => outcome(c().subscriber(t, &SubscriberConfig::default()).map(|s| subs.push(s))),
            ["pub", t] => outcome(c().publisher(t).map(|p| pubs.push(p))),
            ["pub", t, msg] => outcome(c().publisher(t).and_then(|mut p| {
                p.publish(msg.as_bytes())?;
                pubs.push(p);
                Ok(())
            })),
            ["shm", name] => shm_open_readonly(name),
            ["quit"] => break,
            _ => format!("Invalid: unknown command {line:?}"),
        };
        println!("AETHER:{answer}");
    }
    std::process::exit(0);
}

fn outcome<T>(r: aether::Result<T>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => format!("{:?}: {}", e.status, e.message),
    }
}

/// `shm_open(name, O_RDONLY)`: `Ok`, or the errno's name.
fn shm_open_readonly(name: &str) -> String {
    let cname = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: a NUL-terminated name; the descriptor, if any, is closed at once.
    let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDONLY, 0) };
    if fd >= 0 {
        // SAFETY: closing the descriptor shm_open just returned.
        unsafe { libc::close(fd) };
        return "Ok".into();
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        e => format!("errno {e:?}"),
    }
}

fn small_topic() -> TopicParams {
    TopicParams {
        ring_size: 64 << 10,
        max_message: 1024,
        max_subscribers: 4,
        ..TopicParams::default()
    }
}

/// The status part of a role's answer (`Permission: uid ... may not ...` -> `Permission`).
fn status(answer: &str) -> &str {
    answer.split(':').next().unwrap_or(answer)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("aetherd.toml");
    // Write then rename, so a reload never reads half a file.
    let tmp = dir.join("aetherd.toml.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, &p).expect("rename config");
    p
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn start(dir: TempDir, socket: &Path, config: &Path) -> Daemon {
    Daemon::start_with(
        dir,
        socket.to_path_buf(),
        &[OsStr::new("--config"), config.as_os_str()],
        &[],
    )
}

fn role_env(d: &Daemon) -> Vec<(&'static str, String)> {
    vec![("AETHER_TEST_SOCKET", d.socket.display().to_string())]
}

/// (a) Another uid is refused without a rule, let in by a rule for its uid or
/// one of its groups, and can never open a segment by name.
#[test]
fn other_uid_needs_a_rule() {
    if !is_root() {
        eprintln!("skipped: running a client as another uid needs root");
        return;
    }
    let dir = shared_dir("acl");
    // A socket directory the daemon creates: 0755, since the socket is shared.
    let socket = dir.0.join("run").join("aetherd.sock");
    let config = write_config(
        &dir.0,
        &format!(
            r#"
[daemon]
socket_mode = "0666"

[[access]]
topics = ["granted.*"]
uids = [{NOBODY}]
allow = ["publish", "subscribe"]

[[access]]
topics = ["group.*"]
gids = [{EXTRA_GROUP}]
allow = ["subscribe", "admin"]
"#
        ),
    );
    let exe = exe_for_others(&dir.0);
    let d = Daemon::start_with(
        dir,
        socket.clone(),
        &[
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--socket"),
            socket.as_os_str(),
        ],
        &[],
    );
    assert_eq!(mode(socket.parent().unwrap()), 0o755, "socket dir");
    assert_eq!(mode(&socket), 0o666, "socket");

    let root = d.client();
    for t in ["private", "granted.t", "group.t"] {
        root.create_topic(t, &small_topic()).expect("create as root");
    }
    let mut root_sub = root
        .subscriber("granted.t", &SubscriberConfig::default())
        .expect("root subscribes");

    let mut a = UserRole::spawn(&exe, "client", &role_env(&d), NOBODY, NOBODY, &[NOBODY, EXTRA_GROUP]);
    let id = a.ask("id");
    assert!(id.contains(&format!("uid={NOBODY} gid={NOBODY}")), "{id}");
    assert_eq!(a.ask("connect"), "Ok");

    // No rule: refused, with the daemon's reason.
    for cmd in [
        "sub private",
        "pub private",
        "create private2",
        "delete private",
        "create granted.new",
    ] {
        let ans = a.ask(cmd);
        assert_eq!(status(&ans), "Permission", "{cmd}: {ans}");
        assert!(ans.contains(&format!("uid {NOBODY} may not")), "{cmd}: {ans}");
    }
    // Granted by uid: publish and subscribe under granted.*, and the message arrives.
    assert_eq!(a.ask("sub granted.t"), "Ok");
    assert_eq!(a.ask("pub granted.t hello"), "Ok");
    let msg = root_sub
        .receive(Some(Duration::from_secs(5)))
        .expect("receive")
        .expect("a message");
    assert_eq!(msg.data, b"hello");
    // Granted by a supplementary group: subscribe and admin under group.*, not publish.
    assert_eq!(a.ask("sub group.t"), "Ok");
    assert_eq!(a.ask("create group.new"), "Ok");
    assert_eq!(status(&a.ask("pub group.t")), "Permission");

    // A client of the same uid without that group gets nothing under group.*.
    let mut b = UserRole::spawn(&exe, "client", &role_env(&d), NOBODY, NOBODY, &[NOBODY]);
    assert_eq!(b.ask("connect"), "Ok");
    assert_eq!(status(&b.ask("sub group.t")), "Permission");
    assert_eq!(b.ask("sub granted.t"), "Ok");
    // A topic's statistics: for a party with some right on it, no one else.
    assert_eq!(b.ask("stats granted.t"), "Ok");
    assert_eq!(status(&b.ask("stats group.t")), "Permission");
    assert_eq!(status(&b.ask("stats private")), "Permission");
    assert_eq!(a.ask("stats group.t"), "Ok");

    // Segments are anonymous sealed memfds: there is no name to open at all;
    // the only way in is a descriptor the daemon hands to an authorised client.
    for t in ["private", "granted.t", "group.t"] {
        let name = format!("aether.{:016x}.{t}", d.instance_id);
        assert!(!Path::new("/dev/shm").join(&name).exists(), "{name}");
        assert_eq!(a.ask(&format!("shm /{name}")), "ENOENT", "{name}");
        assert_eq!(b.ask(&format!("shm /{name}")), "ENOENT", "{name}");
    }
    assert!(d
        .log()
        .contains(&format!("uid {NOBODY} may not subscribe to topic \"private\"")));
}

/// (b) SIGHUP re-reads the file: a still-connected client's next open follows
/// the new rules and limits; a broken file is reported and the old
/// configuration stays; the socket cannot move while running.
#[test]
fn sighup_reloads_rules_and_keeps_old_config_on_error() {
    if !is_root() {
        eprintln!("skipped: running a client as another uid needs root");
        return;
    }
    let dir = shared_dir("hup");
    let socket = dir.0.join("aetherd.sock");
    let base = format!("[daemon]\nsocket = \"{}\"\nsocket_mode = \"0666\"\n", socket.display());
    let config = write_config(&dir.0, &base);
    let exe = exe_for_others(&dir.0);
    let d = start(dir, &socket, &config);
    let root = d.client();
    root.create_topic("t", &small_topic()).expect("create t");

    let mut other = UserRole::spawn(&exe, "client", &role_env(&d), NOBODY, NOBODY, &[NOBODY]);
    assert_eq!(other.ask("connect"), "Ok");
    assert_eq!(status(&other.ask("sub t")), "Permission");

    // Grant subscribe, cap topics at 2, and try to move the socket.
    write_config(
        &d.dir.0,
        &format!(
            "[daemon]\nsocket = \"{}/elsewhere.sock\"\nsocket_mode = \"0666\"\n\
             [limits]\nmax_topics = 2\n\
             [[access]]\ntopics = [\"t\"]\nuids = [{NOBODY}]\nallow = [\"subscribe\"]\n",
            d.dir.0.display()
        ),
    );
    d.signal(libc::SIGHUP);
    d.wait_log("reload: configuration re-read", 1);
    assert!(d.log().contains("ignored until restart"), "{}", d.log());
    assert_eq!(other.ask("sub t"), "Ok", "the same connection, the new rules");
    assert_eq!(status(&other.ask("pub t")), "Permission", "only what the rule grants");
    root.create_topic("u", &small_topic()).expect("second topic");
    assert_eq!(
        root.create_topic("v", &small_topic()).unwrap_err().status,
        Status::Limit
    );
    assert!(!d.dir.0.join("elsewhere.sock").exists());

    // A broken file: an error naming the key, and everything as before.
    write_config(&d.dir.0, &format!("{base}[limits]\nmax_topics = \"lots\"\n"));
    d.signal(libc::SIGHUP);
    d.wait_log("the running configuration is kept", 1);
    let log = d.log();
    assert!(log.contains("ERROR") && log.contains("limits.max_topics"), "{log}");
    assert_eq!(other.ask("sub t"), "Ok", "old rules kept");
    assert_eq!(status(&other.ask("pub t")), "Permission");
    assert_eq!(
        root.create_topic("v", &small_topic()).unwrap_err().status,
        Status::Limit,
        "old limits kept"
    );
    // Still serving new connections.
    let again = d.client();
    again
        .subscriber("u", &SubscriberConfig::default())
        .expect("still serving");

    // The file gone entirely: also an error (it was named with --config), old config kept.
    std::fs::remove_file(&config).expect("remove config");
    d.signal(libc::SIGHUP);
    d.wait_log("the running configuration is kept", 2);
    assert_eq!(other.ask("sub t"), "Ok");
}

/// (c) Every limit refuses with a clear error and changes nothing.
#[test]
fn limits_refuse_and_change_nothing() {
    let dir = TempDir::new("limits");
    // No socket_mode: the directory the daemon creates stays private.
    let socket = dir.0.join("private").join("aetherd.sock");
    let config = write_config(
        &dir.0,
        &format!(
            "[daemon]\nsocket = \"{}\"\n\
             [limits]\nmax_topics = 2\nmax_clients = 3\nmax_subscribers_per_topic = 4\n\
             max_segment_bytes = 65536\nmax_message_bytes = 1024\n",
            socket.display()
        ),
    );
    let d = start(dir, &socket, &config);
    assert_eq!(mode(socket.parent().unwrap()), 0o700, "private socket dir");
    let c = d.client();
    c.create_topic("a", &small_topic()).expect("within every limit");
    let before = daemon_segments(d.child.id());
    assert_eq!(before, ["a"], "the daemon holds the one segment");
    let refused = |name: &str, p: TopicParams, want: Status, what: &str| {
        let e = c.create_topic(name, &p).expect_err(what);
        assert_eq!(e.status, want, "{what}: {e}");
        assert!(e.message.contains(what), "{what}: {e}");
        assert_eq!(shm_objects(d.instance_id), Vec::<String>::new(), "nothing created");
        assert_eq!(daemon_segments(d.child.id()), before, "nothing created");
    };
    let p = small_topic();
    refused(
        "big",
        TopicParams {
            ring_size: 128 << 10,
            ..p
        },
        Status::Limit,
        "ring_size",
    );
    refused(
        "big",
        TopicParams { max_message: 2048, ..p },
        Status::TooLarge,
        "max_message",
    );
    refused(
        "big",
        TopicParams {
            max_subscribers: 5,
            ..p
        },
        Status::Limit,
        "max_subscribers",
    );
    // The refused name was not taken: it can be created within the limits.
    c.create_topic("big", &p).expect("second topic");
    let two = daemon_segments(d.child.id());
    assert_eq!(two, ["a", "big"]);
    let e = c.create_topic("c", &p).unwrap_err();
    assert_eq!(e.status, Status::Limit, "{e}");
    assert!(e.message.contains("maximum of 2 topics"), "{e}");
    assert_eq!(daemon_segments(d.child.id()), two);

    // A topic's own max_subscribers (here 4, the cap) bounds its subscribers.
    let subs: Vec<_> = (0..4)
        .map(|_| c.subscriber("a", &SubscriberConfig::default()).expect("subscriber"))
        .collect();
    let e = c.subscriber("a", &SubscriberConfig::default()).map(drop).unwrap_err();
    assert_eq!(e.status, Status::Limit, "{e}");
    drop(subs);

    // max_clients = 3: `c` and two more; the fourth is refused until one leaves.
    // (Earlier connections, like the harness's, may take a moment to be released.)
    let mut others = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while others.len() < 2 {
        match Client::connect_with(Some(&d.socket), false) {
            Ok(x) => others.push(x),
            Err(e) => assert!(Instant::now() < end, "cannot connect a second/third client: {e}"),
        }
    }
    let e = Client::connect_with(Some(&d.socket), false).map(drop).unwrap_err();
    assert_eq!(e.status, Status::Limit, "{e}");
    assert!(e.message.contains("maximum of 3 clients"), "{e}");
    others.pop();
    wait_for("a client slot to free", Duration::from_secs(10), || {
        Client::connect_with(Some(&d.socket), false).is_ok()
    });
    assert_eq!(daemon_segments(d.child.id()), two);
}

/// (d) Flag beats environment beats file (socket path, log level, config file).
#[test]
fn precedence_flag_env_file() {
    let dir = TempDir::new("prec");
    let at = |n: &str| dir.0.join(n);
    let (file_sock, env_sock, flag_sock) = (at("file.sock"), at("env.sock"), at("flag.sock"));
    write_config(
        &dir.0,
        &format!(
            "[daemon]\nsocket = \"{}\"\nlog_level = \"debug\"\n",
            file_sock.display()
        ),
    );
    let config = at("aetherd.toml");

    // File only (named by $AETHER_CONFIG): its socket, its level (debug lines appear).
    let d = Daemon::start_with(
        TempDir::new("prec-a"),
        file_sock.clone(),
        &[],
        &[("AETHER_CONFIG", config.as_os_str())],
    );
    let _ = d.client();
    d.wait_log(" DEBUG ", 1);
    drop(d);

    // Environment over file: $AETHER_SOCKET and $AETHER_LOG=warn (no info lines).
    let d = Daemon::start_with(
        TempDir::new("prec-b"),
        env_sock.clone(),
        &[OsStr::new("--config"), config.as_os_str()],
        &[
            ("AETHER_SOCKET", env_sock.as_os_str()),
            ("AETHER_LOG", OsStr::new("warn")),
        ],
    );
    assert!(!file_sock.exists(), "the file's socket is not used");
    let log = d.log();
    assert!(!log.contains("listening on") && !log.contains(" DEBUG "), "{log}");
    drop(d);

    // Flags over both.
    let d = Daemon::start_with(
        TempDir::new("prec-c"),
        flag_sock.clone(),
        &[
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--socket"),
            flag_sock.as_os_str(),
            OsStr::new("--log-level"),
            OsStr::new("info"),
        ],
        &[
            ("AETHER_SOCKET", env_sock.as_os_str()),
            ("AETHER_LOG", OsStr::new("warn")),
        ],
    );
    assert!(!file_sock.exists() && !env_sock.exists());
    let _ = d.client();
    let log = d.log();
    assert!(log.contains("listening on") && !log.contains(" DEBUG "), "{log}");
    drop(d);

    // --config beats $AETHER_CONFIG: a missing file named by the flag is an error.
    let (code, err) = run_aetherd(
        &[OsStr::new("--config"), at("missing.toml").as_os_str()],
        &[("AETHER_CONFIG", config.as_os_str())],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing.toml") && err.contains("cannot read"), "{err}");
}

/// A configuration error at start-up: exit 2, naming the file and the key; nothing left behind.
#[test]
fn bad_config_at_startup_exits_2() {
    let dir = TempDir::new("badcfg");
    let socket = dir.0.join("aetherd.sock");
    for (text, key) in [
        ("[limits]\nmax_topic = 3\n", "limits.max_topic"),
        ("[topic_defaults]\npolicy = \"fast\"\n", "topic_defaults.policy"),
        ("[daemon]\nsocket_mode = \"0999\"\n", "daemon.socket_mode"),
        (
            "[[access]]\ntopics = [\"t\"]\nusers = [\"aether-no-such-user\"]\nallow = [\"publish\"]\n",
            "access[1].users",
        ),
    ] {
        let config = write_config(&dir.0, text);
        let (code, err) = run_aetherd(
            &[
                OsStr::new("--config"),
                config.as_os_str(),
                OsStr::new("--socket"),
                socket.as_os_str(),
            ],
            &[],
        );
        assert_eq!(code, Some(2), "{text}: {err}");
        assert!(err.contains(&format!("{}: {key}: ", config.display())), "{text}: {err}");
        assert!(!socket.exists(), "no socket");
    }
    let (code, err) = run_aetherd(&[OsStr::new("--log-level"), OsStr::new("loud")], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--log-level"), "{err}");
}

/// Runs aetherd to completion (it is expected to exit at once); returns its exit code and stderr.
fn run_aetherd(args: &[&OsStr], env: &[(&str, &OsStr)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(AETHERD);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for k in CONFIG_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run aetherd");
    let end = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_wait().expect("wait aetherd") {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aetherd {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("read stderr");
    (st.code(), err)
}
