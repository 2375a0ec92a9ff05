//! The admin interface: a named pipe next to the control socket
//! (`<socket>.admin`). A client (`aether-cli`) makes a reply FIFO with an
//! unguessable name in the daemon's reply directory (`<socket>.replies`),
//! writes one request per `write` (one JSON line of at most `PIPE_BUF`
//! bytes, so concurrent writers never interleave), and reads one JSON reply
//! from its FIFO. The FIFO's owner is the requester: no one can make a file
//! owned by another user, so that is the identity the daemon checks the
//! `admin` and `monitor` rights against. See docs/CLI.md for the commands
//! and their fields, docs/SECURITY.md for the rights.

pub mod client;
pub(crate) mod server;

pub use client::{call, interrupt_on_signals, INTERRUPTED};

use crate::config::Action;
use aether::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest request: what one `write` to a pipe delivers atomically.
pub const MAX_REQUEST: usize = libc::PIPE_BUF;
/// 2: the reply FIFO lives in [`replies_dir`] and its owner is the requester.
pub const VERSION: u32 = 2;

/// The admin pipe that belongs to the control socket `socket`.
pub fn pipe_path(socket: &Path) -> PathBuf {
    let mut s = socket.as_os_str().to_owned();
    s.push(".admin");
    PathBuf::from(s)
}

/// Where requesters make their reply FIFOs: `<socket>.replies`, owned by
/// the daemon, writable (sticky, not listable) by those who may reach the
/// socket.
pub fn replies_dir(socket: &Path) -> PathBuf {
    let mut s = socket.as_os_str().to_owned();
    s.push(".replies");
    PathBuf::from(s)
}

/// Whether `name` is a reply FIFO's name: `cli.<pid>.<32 hex digits>`.
pub fn is_reply_name(name: &str) -> bool {
    let mut parts = name.splitn(3, '.');
    let (Some("cli"), Some(pid), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    pid.parse::<u32>().is_ok() && key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One admin request, as written to the pipe: one JSON line, e.g.
/// `{"v":2,"reply":"/run/aether/aetherd.sock.replies/cli.42.<32 hex>","cmd":"delete","topic":"t"}`.
/// Unknown fields are refused.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Protocol version, [`VERSION`].
    pub v: u32,
    /// Absolute path of the requester's reply FIFO, in [`replies_dir`].
    pub reply: String,
    pub cmd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message: Option<u64>,
    /// `create`: a durable topic with this fsync policy (`never`, `always`, `interval=MS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync: Option<String>,
    /// `create`: the ring on huge pages (true) or not (false); absent: the
    /// daemon's topic defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huge_pages: Option<bool>,
    /// `create`: the durable topic's own log size limit (0: none); absent:
    /// the daemon's `[log] retain_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_bytes: Option<u64>,
    /// `create`: the durable topic's own log age limit in seconds (0: none);
    /// absent: the daemon's `[log] retain_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<u64>,
}

/// What the requester asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Status,
    Topics,
    Subscribers {
        topic: Option<String>,
    },
    Stats,
    Create {
        topic: String,
        policy: Option<String>,
        ring_size: Option<u64>,
        max_message: Option<u64>,
        /// A durable topic (write-ahead log) with this fsync policy.
        fsync: Option<String>,
        /// The ring on huge pages; `None`: the daemon's topic defaults.
        huge_pages: Option<bool>,
        /// A durable topic's own retention (0: no limit); `None`: `[log]`'s.
        retain_bytes: Option<u64>,
        retain_seconds: Option<u64>,
    },
    Delete {
        topic: String,
    },
    Kick {
        client: u64,
    },
    Drain,
    Reload,
}

/// In words, for logs: `delete "t"`, `kick client 7`.
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Status => write!(f, "status"),
            Command::Topics => write!(f, "topics"),
            Command::Subscribers { topic: Some(t) } => write!(f, "subscribers of {t:?}"),
            Command::Subscribers { topic: None } => write!(f, "subscribers"),
            Command::Stats => write!(f, "stats"),
            Command::Create { topic, .. } => write!(f, "create {topic:?}"),
            Command::Delete { topic } => write!(f, "delete {topic:?}"),
            Command::Kick { client } => write!(f, "kick client {client}"),
            Command::Drain => write!(f, "drain"),
            Command::Reload => write!(f, "reload"),
        }
    }
}

impl Command {
    /// The right the command needs, and the topic it concerns (if any):
    /// reading needs `monitor` (which `admin` includes), changing needs `admin`.
    pub fn right(&self) -> (Action, Option<&str>) {
        match self {
            Command::Status | Command::Topics | Command::Stats => (Action::Monitor, None),
            Command::Subscribers { topic } => (Action::Monitor, topic.as_deref()),
            Command::Create { topic, .. } | Command::Delete { topic } => (Action::Admin, Some(topic)),
            Command::Kick { .. } | Command::Drain | Command::Reload => (Action::Admin, None),
        }
    }
}

impl Request {
    pub fn new(reply: String, cmd: Command) -> Request {
        let mut r = Request {
            v: VERSION,
            reply,
            ..Request::default()
        };
        r.cmd = match cmd {
            Command::Status => "status",
            Command::Topics => "topics",
            Command::Subscribers { topic } => {
                r.topic = topic;
                "subscribers"
            }
            Command::Stats => "stats",
            Command::Create {
                topic,
                policy,
                ring_size,
                max_message,
                fsync,
                huge_pages,
                retain_bytes,
                retain_seconds,
            } => {
                (r.topic, r.policy, r.ring_size, r.max_message) = (Some(topic), policy, ring_size, max_message);
                (r.fsync, r.huge_pages) = (fsync, huge_pages);
                (r.retain_bytes, r.retain_seconds) = (retain_bytes, retain_seconds);
                "create"
            }
            Command::Delete { topic } => {
                r.topic = Some(topic);
                "delete"
            }
            Command::Kick { client } => {
                r.client = Some(client);
                "kick"
            }
            Command::Drain => "drain",
            Command::Reload => "reload",
        }
        .to_string();
        r
    }

    /// The command, checking that exactly the fields it takes are present.
    pub fn command(&self) -> Result<Command> {
        if self.v != VERSION {
            return Err(Error::protocol(format!(
                "admin protocol version {} not supported (this side speaks {VERSION})",
                self.v
            )));
        }
        let extra = |allowed: &[&str]| -> Result<()> {
            let present = [
                ("topic", self.topic.is_some()),
                ("policy", self.policy.is_some()),
                ("ring_size", self.ring_size.is_some()),
                ("max_message", self.max_message.is_some()),
                ("fsync", self.fsync.is_some()),
                ("huge_pages", self.huge_pages.is_some()),
                ("retain_bytes", self.retain_bytes.is_some()),
                ("retain_seconds", self.retain_seconds.is_some()),
                ("client", self.client.is_some()),
            ];
            match present.iter().find(|(k, p)| *p && !allowed.contains(k)) {
                Some((k, _)) => Err(Error::invalid(format!(
                    "field {k:?} does not belong to command {:?}",
                    self.cmd
                ))),
                None => Ok(()),
            }
        };
        let need_topic = || {
            self.topic
                .clone()
                .ok_or_else(|| Error::invalid(format!("command {:?} needs a topic", self.cmd)))
        };
        Ok(match self.cmd.as_str() {
            "status" => extra(&[]).map(|_| Command::Status)?,
            "topics" => extra(&[]).map(|_| Command::Topics)?,
            "stats" => extra(&[]).map(|_| Command::Stats)?,
            "drain" => extra(&[]).map(|_| Command::Drain)?,
            "reload" => extra(&[]).map(|_| Command::Reload)?,
            "subscribers" => extra(&["topic"]).map(|_| Command::Subscribers {
                topic: self.topic.clone(),
            })?,
            "delete" => {
                extra(&["topic"])?;
                Command::Delete { topic: need_topic()? }
            }
            "create" => {
                extra(&[
                    "topic",
                    "policy",
                    "ring_size",
                    "max_message",
                    "fsync",
                    "huge_pages",
                    "retain_bytes",
                    "retain_seconds",
                ])?;
                Command::Create {
                    topic: need_topic()?,
                    policy: self.policy.clone(),
                    ring_size: self.ring_size,
                    max_message: self.max_message,
                    fsync: self.fsync.clone(),
                    huge_pages: self.huge_pages,
                    retain_bytes: self.retain_bytes,
                    retain_seconds: self.retain_seconds,
                }
            }
            "kick" => {
                extra(&["client"])?;
                Command::Kick {
                    client: self
                        .client
                        .ok_or_else(|| Error::invalid("command \"kick\" needs a client id"))?,
                }
            }
            other => return Err(Error::invalid(format!("unknown admin command {other:?}"))),
        })
    }
}

/// Parses one request line read from the pipe (without its newline):
/// the reply FIFO it names (empty if none can be found) and the request,
/// or why it is malformed. Junk that at least names a reply FIFO gets told
/// what is wrong. Any bytes give an answer, never a panic (fuzzed by
/// `aether-fuzz`'s `admin_request`).
pub fn parse_request(line: &[u8]) -> (String, Result<Request>) {
    match serde_json::from_slice::<Request>(line) {
        Ok(r) => (r.reply.clone(), Ok(r)),
        Err(e) => (
            serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("reply").and_then(|r| r.as_str()).map(str::to_string))
                .unwrap_or_default(),
            Err(Error::protocol(format!("malformed admin request: {e}"))),
        ),
    }
}

/// The reply: `{"ok":true,"result":...}` or `{"ok":false,"status":N,"error":"..."}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok(result: serde_json::Value) -> Reply {
        Reply {
            ok: true,
            result: Some(result),
            status: None,
            error: None,
        }
    }
    pub fn err(e: &Error) -> Reply {
        Reply {
            ok: false,
            result: None,
            status: Some(e.status as i32),
            error: Some(e.message.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_reject_junk() {
        let cmd = Command::Create {
            topic: "t".into(),
            policy: Some("reliable".into()),
            ring_size: None,
            max_message: Some(64),
            fsync: Some("interval=10".into()),
            huge_pages: Some(true),
            retain_bytes: Some(0),
            retain_seconds: Some(3600),
        };
        let r = Request::new("/tmp/x/reply".into(), cmd.clone());
        let s = serde_json::to_string(&r).unwrap();
        let back: Request = serde_json::from_str(&s).unwrap();
        assert_eq!(back.command().unwrap(), cmd);
        for bad in [
            r#"{"v":2,"reply":"/x","cmd":"explode"}"#,
            r#"{"v":2,"reply":"/x","cmd":"delete"}"#,
            r#"{"v":2,"reply":"/x","cmd":"status","topic":"t"}"#,
            r#"{"v":1,"reply":"/x","cmd":"status"}"#,
            r#"{"v":2,"reply":"/x","cmd":"kick"}"#,
            r#"{"v":2,"reply":"/x","cmd":"delete","topic":"t","retain_bytes":1}"#,
        ] {
            let r: Request = serde_json::from_str(bad).unwrap();
            assert!(r.command().is_err(), "{bad}");
        }
        for junk in [
            r#"{}"#,
            r#"{"v":1,"cmd":"status"}"#,
            r#"{"v":2,"reply":"/x","cmd":"status","extra":1}"#,
            r#"{"v":2,"reply":"/x","cmd":"create","topic":"t","retain_seconds":-1}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<Request>(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn reply_names_are_pid_and_128_random_bits() {
        assert!(is_reply_name("cli.42.0123456789abcdef0123456789ABCDEF"));
        for bad in [
            "cli.42.0123",
            "cli.x.0123456789abcdef0123456789abcdef",
            "cli.42.0123456789abcdef0123456789abcdeg",
            "reply",
            "cli.42.0123456789abcdef0123456789abcdef/..",
            "../cli.42.0123456789abcdef0123456789abcdef",
        ] {
            assert!(!is_reply_name(bad), "{bad}");
        }
    }

    #[test]
    fn reading_needs_monitor_changing_needs_admin() {
        assert_eq!(Command::Stats.right(), (Action::Monitor, None));
        assert_eq!(
            Command::Subscribers {
                topic: Some("t".into())
            }
            .right(),
            (Action::Monitor, Some("t"))
        );
        assert_eq!(
            Command::Delete { topic: "t".into() }.right(),
            (Action::Admin, Some("t"))
        );
        assert_eq!(Command::Reload.right(), (Action::Admin, None));
    }
}
