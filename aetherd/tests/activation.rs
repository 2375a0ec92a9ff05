//! Issue 16: the system broker under systemd. Socket activation (the
//! listening socket arrives as descriptor 3 with `LISTEN_PID`/`LISTEN_FDS`,
//! as `aetherd.socket` hands it over), played here without systemd: the
//! test binds the socket and keeps it, as systemd does, across two daemon
//! runs. Also `--log-file` and `--log-format json`.

mod common;

use aether::sys::uds::SeqPacket;
use aether::TopicParams;
use common::*;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `aetherd --socket SOCKET ARGS` with `listener` as descriptor 3 and the
/// activation variables naming its own pid, its stderr in `log`.
fn activate(listener: &SeqPacket, socket: &Path, log: &Path, args: &[&str]) -> Child {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(AETHERD)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for k in CONFIG_ENV {
        cmd.env_remove(k);
    }
    // SAFETY: dup2 and fcntl are async-signal-safe. dup2 leaves the new
    // descriptor 3 open across exec, but when the listener already is 3 it
    // does nothing, so its close-on-exec flag is cleared by hand.
    unsafe {
        cmd.pre_exec(move || {
            let ok = match fd {
                3 => libc::fcntl(3, libc::F_SETFD, 0) == 0,
                _ => libc::dup2(fd, 3) == 3,
            };
            match ok {
                true => Ok(()),
                false => Err(std::io::Error::last_os_error()),
            }
        })
    };
    cmd.spawn().expect("start aetherd")
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

#[test]
fn a_socket_from_systemd_is_served_and_survives_the_daemon() {
    let dir = TempDir::new("activation");
    let socket = dir.0.join("aetherd.sock");
    // What systemd does for ListenSequentialPacket= with SocketMode=0660.
    let listener = SeqPacket::listen(&socket).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660)).unwrap();
    let log = dir.0.join("first.log");
    let first = activate(&listener, &socket, &log, &[]);
    let mut client = None;
    wait_for("the activated daemon", Duration::from_secs(10), || {
        client = aether::Client::connect_with(Some(&socket), false).ok();
        client.is_some()
    });
    let client = client.unwrap();
    client.create_topic("t", &TopicParams::default()).unwrap();
    let mut sub = client.subscriber("t", &aether::SubscriberConfig::default()).unwrap();
    client.publisher("t").unwrap().publish(b"via systemd's socket").unwrap();
    let got = sub.receive(Some(Duration::from_secs(5))).unwrap().expect("a message");
    assert_eq!(got.data, b"via systemd's socket");
    // The admin pipe follows the socket's mode (0660: its group may ask).
    let pipe = aetherd::admin::pipe_path(&socket);
    assert_eq!(std::fs::metadata(&pipe).unwrap().permissions().mode() & 0o777, 0o620);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("a socket from systemd"), "{text}");
    drop((sub, client));
    assert!(stop(first).success(), "{}", std::fs::read_to_string(&log).unwrap());
    // The socket file and the listening socket are systemd's: both stay, and
    // a connection made now waits in its backlog for the next daemon.
    assert!(socket.exists(), "the daemon removed systemd's socket");
    assert!(!pipe.exists(), "the admin pipe is the daemon's and goes with it");
    let waiting = std::thread::spawn({
        let socket = socket.clone();
        move || aether::Client::connect_with(Some(&socket), false).map(|c| c.instance_id())
    });
    std::thread::sleep(Duration::from_millis(100));
    let log2 = dir.0.join("second.log");
    let second = activate(&listener, &socket, &log2, &[]);
    let id = waiting
        .join()
        .unwrap()
        .expect("the queued connection is served by the next daemon");
    assert_ne!(id, 0);
    assert!(stop(second).success(), "{}", std::fs::read_to_string(&log2).unwrap());
}

#[test]
fn a_socket_bound_elsewhere_is_refused() {
    let dir = TempDir::new("activation-bad");
    let listener = SeqPacket::listen(&dir.0.join("other.sock")).unwrap();
    let log = dir.0.join("aetherd.log");
    let child = activate(&listener, &dir.0.join("aetherd.sock"), &log, &[]);
    let out = child.wait_with_output().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the socket systemd passed") && text.contains("other.sock"),
        "{text}"
    );
}

/// `--log-file` takes the log (the daemon's stderr stays quiet), and
/// `--log-format json` writes one object per line.
#[test]
fn logs_go_to_a_file_as_json_lines() {
    let dir = TempDir::new("logfile");
    let socket = dir.0.join("aetherd.sock");
    let file = dir.0.join("aetherd.json.log");
    let d = Daemon::start_with(
        TempDir::new("logfile-d"),
        socket.clone(),
        &[
            "--socket".as_ref(),
            socket.as_os_str(),
            "--log-file".as_ref(),
            file.as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
        ],
        &[],
    );
    d.client().create_topic("logged", &TopicParams::default()).unwrap();
    drop(d);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    assert!(lines.iter().all(|l| l["time"].is_string() && l["level"].is_string()));
    assert!(lines.iter().any(|l| l["level"] == "info"
        && l["message"]
            .as_str()
            .is_some_and(|m| m.contains("topic \"logged\" created"))));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
}
