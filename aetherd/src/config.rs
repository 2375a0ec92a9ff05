//! The daemon's configuration.
//!
//! - [`Config`]: what the broker consults on every request (limits, topic
//!   defaults, access rules); replaced as a whole on reload (SIGHUP).
//! - [`Settings`]: the daemon's own settings (socket, its permissions, log
//!   level, drain timeout), which may come from several sources.
//! - [`parse`]/[`load_file`]: the TOML configuration file (format and every
//!   key in `docs/OPERATIONS.md`; a commented example in `etc/aetherd.toml`).
//!   Unknown keys, wrong types and unknown user or group names are errors
//!   naming the file, the key and the reason; nothing here panics on input.
//! - [`resolve`]: the one order of precedence, highest first: command-line
//!   flag > `AETHER_*` environment variable > configuration file > built-in
//!   default. [`Loaded`] keeps the sources so a reload redoes the same merge.

use aether::segment::{Policy, TopicParams, MAX_RING, MAX_SUBSCRIBERS, MIN_RING, RING_SIZED};
use log::LevelFilter as Level;
use nix::unistd::{Group, User};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Limits against abuse; each breach is refused with a clear `Limit` (or
/// `TooLarge`) error and changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_topics: usize,
    pub max_clients: usize,
    /// Cap on a topic's `max_subscribers`.
    pub max_subscribers_per_topic: u32,
    /// Cap on a topic's ring size in bytes.
    pub max_segment_bytes: u64,
    /// Cap on a topic's `max_message` in bytes.
    pub max_message_bytes: u64,
    /// Cap on the bytes of every topic's segment together (counted when a
    /// topic is made, whether or not its pages are touched yet).
    pub max_total_segment_bytes: u64,
    /// Quotas per client uid (the daemon's own uid and root are exempt):
    /// connections, control queues, `delivery=mqueue` subscribers, slots
    /// (publishers and subscribers), and bytes of the topics it made.
    pub per_uid_connections: usize,
    pub per_uid_control_queues: usize,
    pub per_uid_mqueue_subscribers: usize,
    pub per_uid_slots: usize,
    pub per_uid_segment_bytes: u64,
    /// Slots one connection may hold (everyone, the exempt uids too).
    pub per_client_slots: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_topics: 1024,
            max_clients: 1024,
            max_subscribers_per_topic: aether::segment::MAX_SUBSCRIBERS,
            max_segment_bytes: aether::segment::MAX_RING,
            max_message_bytes: largest_max_message(),
            max_total_segment_bytes: 4 << 30,
            per_uid_connections: 256,
            per_uid_control_queues: 16,
            per_uid_mqueue_subscribers: 4,
            per_uid_slots: 256,
            per_uid_segment_bytes: 1 << 30,
            per_client_slots: 128,
        }
    }
}

/// Durable topics' write-ahead logs: how their files roll and how long they
/// are kept (for every durable topic; applied by each topic's log writer
/// about once a second, and at once after a reload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A log segment file is rolled over at this size.
    pub segment_bytes: u64,
    /// Oldest segments are removed while a topic's log is larger (0: no limit).
    pub retain_bytes: u64,
    /// Segments whose every message is older are removed (0: kept forever).
    pub retain_seconds: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            retain_bytes: 0,
            retain_seconds: 0,
        }
    }
}

/// The largest `max_message` any ring allows (that of the largest ring).
fn largest_max_message() -> u64 {
    aether::segment::max_message_limit(MAX_RING)
}

/// Something a client may be allowed to do on a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Publish,
    Subscribe,
    /// Create and delete topics, and administer the daemon (every admin
    /// command; implies [`Action::Monitor`]).
    Admin,
    /// The admin pipe's read-only commands: status, topics, subscribers, stats.
    Monitor,
}

/// One grant: who (users/uids, groups/gids) may do what on which topics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Topic patterns: exact names, or a prefix ending in `*` (`*` alone: every
    /// topic and the broker itself); empty = all topics.
    pub topics: Vec<String>,
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub allow: Vec<Action>,
}

/// Everything the broker consults at run time. Replaced as a whole on reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub limits: Limits,
    /// Topic parameters for `aether-cli create` (admin pipe) values not given.
    /// Protocol topic creation always carries explicit parameters.
    pub topic_defaults: TopicParams,
    pub rules: Vec<Rule>,
    pub log: LogConfig,
}

/// The configuration file read when neither `--config` nor `$AETHER_CONFIG` names one.
/// How long a draining daemon lets subscribers catch up, unless configured.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The socket mode bits a configuration may set (no setuid, setgid or sticky bits).
const MODE_BITS: u32 = 0o777;

/// A configuration error: where (a file, "environment" or "command line"),
/// which key, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: String,
    /// The key (`limits.max_topics`, `access[2].users`, `AETHER_LOG`, `--log-level`); empty for the whole source.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(origin: &str, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: origin.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A group named in the configuration, resolved to its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRef {
    /// As written (a name, or the number).
    pub name: String,
    pub gid: u32,
}

/// Which CPUs each kind of daemon thread runs on (`[daemon] cpu_affinity`;
/// empty: not pinned). Applied as each thread starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affinity {
    /// The thread accepting connections.
    pub accept: Vec<usize>,
    /// The thread serving each client's requests.
    pub client: Vec<usize>,
    /// The admin pipe's thread.
    pub admin: Vec<usize>,
    /// The housekeeper (dead clients, rates, lag notices).
    pub housekeep: Vec<usize>,
    /// The threads feeding `delivery=mqueue` subscribers.
    pub dispatch: Vec<usize>,
    /// Durable topics' log writers.
    pub log: Vec<usize>,
}

/// Pins the calling thread to `cpus`, or with none to every CPU the process
/// may use (a thread inherits its creator's affinity: one started by a
/// pinned client thread must not keep that). A failure is logged, never
/// fatal (the lists were checked when the configuration was read).
pub fn pin(cpus: &[usize], what: &str) {
    use aether::sys::affinity;
    let r = if cpus.is_empty() {
        affinity::available().and_then(|all| match affinity::current() {
            Ok(now) if now != all => affinity::set_current(all),
            other => other.map(drop),
        })
    } else {
        affinity::set_current(cpus)
    };
    if let Err(e) = r {
        log::warn!("cpu_affinity.{what}: {e}");
    }
}

/// The daemon's own settings as one source gives them (`None`: not given there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub socket: Option<PathBuf>,
    /// Mode bits of the socket after bind (connecting needs write permission).
    pub socket_mode: Option<u32>,
    /// Group that owns the socket after bind.
    pub socket_group: Option<GroupRef>,
    pub log_level: Option<Level>,
    pub drain_timeout: Option<Duration>,
    /// Where durable topics keep their logs.
    pub state_dir: Option<PathBuf>,
    pub cpu_affinity: Option<Affinity>,
    /// Where to serve Prometheus metrics (`--metrics-listen`).
    pub metrics_listen: Option<String>,
}

impl Settings {
    /// Each setting from `self` where given, else from `lower`.
    pub fn or(&self, lower: &Settings) -> Settings {
        Settings {
            socket: self.socket.clone().or_else(|| lower.socket.clone()),
            socket_mode: self.socket_mode.or(lower.socket_mode),
            socket_group: self.socket_group.clone().or_else(|| lower.socket_group.clone()),
            log_level: self.log_level.or(lower.log_level),
            drain_timeout: self.drain_timeout.or(lower.drain_timeout),
            state_dir: self.state_dir.clone().or_else(|| lower.state_dir.clone()),
            cpu_affinity: self.cpu_affinity.clone().or_else(|| lower.cpu_affinity.clone()),
            metrics_listen: self.metrics_listen.clone().or_else(|| lower.metrics_listen.clone()),
        }
    }

    /// The settings given by command-line flags (each `None` when the flag is absent).
    pub fn from_flags(
        socket: Option<PathBuf>,
        socket_mode: Option<&str>,
        socket_group: Option<&str>,
        log_level: Option<&str>,
        drain_timeout: Option<f64>,
    ) -> Result<Settings, ConfigError> {
        let origin = "command line";
        let err = |key: &str, reason: String| ConfigError::new(origin, key, reason);
        Ok(Settings {
            socket: socket.filter(|p| !p.as_os_str().is_empty()),
            socket_mode: socket_mode
                .map(parse_mode)
                .transpose()
                .map_err(|r| err("--socket-mode", r))?,
            socket_group: socket_group
                .map(resolve_group_arg)
                .transpose()
                .map_err(|r| err("--socket-group", r))?,
            log_level: log_level
                .map(parse_level)
                .transpose()
                .map_err(|r| err("--log-level", r))?,
            drain_timeout: drain_timeout
                .map(seconds)
                .transpose()
                .map_err(|r| err("--drain-timeout", r))?,
            state_dir: None,
            cpu_affinity: None,
            metrics_listen: None,
        })
    }

    /// The settings given by the environment: `AETHER_SOCKET`, `AETHER_LOG`
    /// (else `RUST_LOG` when it is a bare level; other `RUST_LOG` forms are
    /// ignored) and `AETHER_DRAIN_TIMEOUT` (seconds). Empty variables count as unset.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let err = |key: &str, reason: String| ConfigError::new("environment", key, reason);
        let log_level = match get("AETHER_LOG") {
            Some(v) => Some(parse_level(&v).map_err(|r| err("AETHER_LOG", r))?),
            None => get("RUST_LOG").and_then(|v| crate::logger::parse_level(&v)),
        };
        let drain_timeout = match get("AETHER_DRAIN_TIMEOUT") {
            Some(v) => {
                let secs = v
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| err("AETHER_DRAIN_TIMEOUT", format!("{v:?} is not a number of seconds")))?;
                Some(seconds(secs).map_err(|r| err("AETHER_DRAIN_TIMEOUT", r))?)
            }
            None => None,
        };
        Ok(Settings {
            socket: get("AETHER_SOCKET").map(PathBuf::from),
            socket_mode: None,
            socket_group: None,
            log_level,
            drain_timeout,
            state_dir: get("AETHER_STATE_DIR").map(PathBuf::from),
            cpu_affinity: None,
            metrics_listen: None,
        })
    }
}

/// The daemon's settings after the merge: every one decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub socket: PathBuf,
    /// `None`: leave the socket as `bind` created it (private to the daemon's user under the usual umask).
    pub socket_mode: Option<u32>,
    pub socket_group: Option<GroupRef>,
    pub log_level: Level,
    pub drain_timeout: Duration,
    /// `None`: the default for the daemon's user (`aetherd::durable::default_state_dir`).
    pub state_dir: Option<PathBuf>,
    pub cpu_affinity: Affinity,
    pub metrics_listen: Option<String>,
}

/// The order of precedence: `flags` > `env` > `file` > built-in defaults
/// (`default_socket`, level `info`, drain timeout 5 s).
pub fn resolve(flags: &Settings, env: &Settings, file: &Settings, default_socket: PathBuf) -> Resolved {
    let s = flags.or(env).or(file);
    Resolved {
        socket: s.socket.unwrap_or(default_socket),
        socket_mode: s.socket_mode,
        socket_group: s.socket_group,
        log_level: s.log_level.unwrap_or(Level::Info),
        drain_timeout: s.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        state_dir: s.state_dir,
        cpu_affinity: s.cpu_affinity.unwrap_or_default(),
        metrics_listen: s.metrics_listen,
    }
}

/// The built-in socket path, a private broker's: `$XDG_RUNTIME_DIR/aether/aetherd.sock`,
/// else `/tmp/aether-<uid>/aetherd.sock` (`$AETHER_SOCKET` is the environment's say, above the file).
pub fn builtin_socket(get: impl Fn(&str) -> Option<String>) -> PathBuf {
    aether::paths::builtin_socket(
        get("XDG_RUNTIME_DIR").as_deref().map(std::ffi::OsStr::new),
        nix::unistd::geteuid().as_raw(),
    )
}

/// `--config PATH`, else `$AETHER_CONFIG`, else none: a daemon reads a
/// configuration file only when told to (the system broker's unit names
/// `/etc/aether/aetherd.toml`), so that a private broker never picks up the
/// system broker's settings.
pub fn config_file(flag: Option<&Path>, get: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    flag.filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .or_else(|| get("AETHER_CONFIG").filter(|p| !p.is_empty()).map(PathBuf::from))
}

/// What a configuration file gives: daemon settings and the broker's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub settings: Settings,
    pub config: Config,
    /// `[bridge]`, if the file has one.
    pub bridge: Option<BridgeConfig>,
}

/// `[bridge]`: topics carried to and from other brokers over Zenoh
/// (docs/BRIDGE.md). Read at start only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeConfig {
    /// This broker's name in the origin tag of what it sends [default: the host name].
    pub name: Option<String>,
    /// Zenoh endpoints to listen on (`tcp/0.0.0.0:7447`).
    pub listen: Vec<String>,
    /// Zenoh endpoints of other brokers to connect to (retried until they answer).
    pub connect: Vec<String>,
    /// Which topics cross, in which direction; none: no topic.
    pub topics: Vec<BridgeTopic>,
    /// The uid whose rights remote messages have on the local topics;
    /// `None`: the daemon's own (every right).
    pub identity: Option<u32>,
    /// Per remote broker (by name): the uid whose rights its messages
    /// have, instead of `identity`.
    pub identities: BTreeMap<String, u32>,
    /// Zenoh's TLS: the endpoints are then `tls/HOST:PORT`.
    pub tls: Option<BridgeTls>,
    /// Zenoh's multicast scouting: find other brokers on the local network
    /// by themselves (off: only the endpoints named).
    pub multicast: bool,
    /// Forward other brokers' messages (Zenoh's router mode): a line of
    /// relays `a - b - c` carries `a`'s messages to `c` through `b` (every
    /// broker of the line relays: a router does not forward between two
    /// plain peers); off: only to brokers joined directly.
    pub relay: bool,
}

/// A topic pattern (`name`, or a prefix ending in `*`) and its direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeTopic {
    pub pattern: String,
    /// Local messages go out to other brokers.
    pub out: bool,
    /// Other brokers' messages come in.
    pub inbound: bool,
}

impl BridgeTopic {
    /// `PATTERN` (both directions), or `PATTERN:in`, `:out`, `:both`.
    pub fn parse(s: &str) -> Result<BridgeTopic, String> {
        let (pattern, dir) = s.rsplit_once(':').unwrap_or((s, "both"));
        let (out, inbound) = match dir {
            "both" => (true, true),
            "in" => (false, true),
            "out" => (true, false),
            d => return Err(format!("{d:?} is not a direction (in, out or both)")),
        };
        let name = pattern.strip_suffix('*').unwrap_or(pattern);
        if !(name.is_empty() && pattern == "*") && aether::protocol::validate_topic(name).is_err() {
            return Err(format!("{pattern:?} is not a topic name or a prefix ending in *"));
        }
        Ok(BridgeTopic {
            pattern: pattern.to_string(),
            out,
            inbound,
        })
    }
}

/// The files of the bridge's TLS (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeTls {
    /// The authority whose certificates this broker accepts from its peers.
    pub root_ca: PathBuf,
    /// This broker's certificate and key, shown to every peer (mutual TLS).
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Reads and parses the file at `path` (it must exist).
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) => Err(ConfigError::new(
            &path.display().to_string(),
            "",
            format!("cannot read the configuration file: {e}"),
        )),
    }
}

/// The sources the daemon started from, kept so SIGHUP redoes the same merge.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The configuration file, if one was named.
    pub file: Option<PathBuf>,
    pub flags: Settings,
    pub env: Settings,
    pub settings: Resolved,
    pub config: Config,
    /// The file's `[bridge]`; the daemon's flags add to it (read at start only).
    pub bridge: Option<BridgeConfig>,
}

impl Loaded {
    /// Finds and reads the configuration file and merges it with `flags` and
    /// the environment (`get`), in the order of precedence.
    pub fn load(
        flags: Settings,
        config_flag: Option<&Path>,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        let env = Settings::from_env(&get)?;
        let file = config_file(config_flag, &get);
        let FileConfig {
            settings: file_settings,
            config,
            bridge,
        } = file.as_deref().map(load_file).transpose()?.unwrap_or_default();
        let settings = resolve(&flags, &env, &file_settings, builtin_socket(&get));
        Ok(Loaded {
            file,
            flags,
            env,
            settings,
            config,
            bridge,
        })
    }

    /// Re-reads the same file and redoes the merge with the same flags and
    /// environment. Settings that cannot change while running (the socket, its
    /// mode and group) keep their current values; the returned notes say which
    /// of them the file tried to change. On error nothing changes.
    pub fn reload(&self) -> Result<(Loaded, Vec<String>), ConfigError> {
        let FileConfig {
            settings: file_settings,
            config,
            bridge,
        } = self.file.as_deref().map(load_file).transpose()?.unwrap_or_default();
        let mut notes = Vec::new();
        if bridge != self.bridge {
            notes.push("[bridge] changes ignored until restart".to_string());
        }
        let mut settings = resolve(&self.flags, &self.env, &file_settings, self.settings.socket.clone());
        if settings.socket != self.settings.socket {
            notes.push(format!(
                "socket {} ignored until restart (still listening on {})",
                settings.socket.display(),
                self.settings.socket.display()
            ));
            settings.socket = self.settings.socket.clone();
        }
        if settings.socket_mode != self.settings.socket_mode {
            notes.push(format!(
                "socket_mode {} ignored until restart",
                settings.socket_mode.map_or("(unset)".into(), |m| format!("{m:04o}"))
            ));
            settings.socket_mode = self.settings.socket_mode;
        }
        if settings.socket_group != self.settings.socket_group {
            notes.push(format!(
                "socket_group {} ignored until restart",
                settings.socket_group.as_ref().map_or("(unset)", |g| g.name.as_str())
            ));
            settings.socket_group = self.settings.socket_group.clone();
        }
        let loaded = Loaded {
            file: self.file.clone(),
            flags: self.flags.clone(),
            env: self.env.clone(),
            settings,
            config,
            bridge: self.bridge.clone(),
        };
        Ok((loaded, notes))
    }
}

// ---------------------------------------------------------------------------
// The TOML file: its shape is the serde types below (unknown keys refused by
// `deny_unknown_fields`); what serde cannot say (ranges, names, patterns) is
// checked after, with the same key names in the errors.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileToml {
    daemon: Option<DaemonToml>,
    limits: Option<LimitsToml>,
    topic_defaults: Option<TopicToml>,
    log: Option<LogToml>,
    #[serde(default)]
    access: Vec<RuleToml>,
    bridge: Option<BridgeToml>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BridgeToml {
    name: Option<String>,
    #[serde(default)]
    listen: Vec<String>,
    #[serde(default)]
    connect: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    /// A user name, or a uid.
    identity: Option<toml::Value>,
    /// Broker name = user name or uid.
    #[serde(default)]
    identities: BTreeMap<String, toml::Value>,
    tls: Option<BridgeTlsToml>,
    multicast: Option<bool>,
    relay: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeTlsToml {
    root_ca: String,
    certificate: String,
    private_key: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DaemonToml {
    socket: Option<String>,
    /// A string ("0660") or TOML's own octal integer (0o660).
    socket_mode: Option<toml::Value>,
    /// A group name or id.
    socket_group: Option<toml::Value>,
    log_level: Option<String>,
    /// Seconds, an integer or a float.
    drain_timeout: Option<f64>,
    state_dir: Option<String>,
    cpu_affinity: Option<AffinityToml>,
    metrics_listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AffinityToml {
    accept: Option<Vec<i64>>,
    client: Option<Vec<i64>>,
    admin: Option<Vec<i64>>,
    housekeep: Option<Vec<i64>>,
    dispatch: Option<Vec<i64>>,
    log: Option<Vec<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsToml {
    max_topics: Option<i64>,
    max_clients: Option<i64>,
    max_subscribers_per_topic: Option<i64>,
    max_segment_bytes: Option<i64>,
    max_message_bytes: Option<i64>,
    max_total_segment_bytes: Option<i64>,
    per_uid_connections: Option<i64>,
    per_uid_control_queues: Option<i64>,
    per_uid_mqueue_subscribers: Option<i64>,
    per_uid_slots: Option<i64>,
    per_uid_segment_bytes: Option<i64>,
    per_client_slots: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogToml {
    segment_bytes: Option<i64>,
    retain_bytes: Option<i64>,
    retain_seconds: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TopicToml {
    policy: Option<String>,
    ring_size: Option<i64>,
    max_message: Option<i64>,
    max_subscribers: Option<i64>,
    huge_pages: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    topics: Option<Vec<String>>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    uids: Vec<u32>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    gids: Vec<u32>,
    #[serde(default)]
    allow: Vec<String>,
}

/// Errors for one table of the file: its key path (`limits`, `access[2]`).
struct Table<'a> {
    origin: &'a str,
    path: String,
}

impl Table<'_> {
    fn err(&self, k: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.origin, &format!("{}.{k}", self.path), reason)
    }

    fn whole(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.origin, &self.path, reason)
    }

    /// An integer in `min..=max`.
    fn int(&self, k: &str, v: Option<i64>, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        match v {
            None => Ok(None),
            Some(i) if i >= 0 && (min..=max).contains(&(i as u64)) => Ok(Some(i as u64)),
            Some(i) => Err(self.err(k, format!("{i} is out of range ({min} to {max})"))),
        }
    }
}

/// Parses a configuration file's text; `origin` names it in errors. User and
/// group names are resolved here: an unknown name is an error.
pub fn parse(text: &str, origin: &Path) -> Result<FileConfig, ConfigError> {
    let origin = origin.display().to_string();
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::new(&origin, "", syntax_error(text, &e)))?;
    let file: FileToml = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let (key, reason) = shape_error(&e);
        ConfigError::new(&origin, &key, reason)
    })?;
    let table = |path: &str| Table {
        origin: &origin,
        path: path.to_string(),
    };
    let mut out = FileConfig::default();
    if let Some(d) = file.daemon {
        out.settings = daemon_settings(&table("daemon"), d)?;
    }
    if let Some(l) = file.limits {
        out.config.limits = limits(&table("limits"), l)?;
    }
    if let Some(t) = file.topic_defaults {
        out.config.topic_defaults = topic_defaults(&table("topic_defaults"), t)?;
    }
    if let Some(l) = file.log {
        let t = table("log");
        let big = i64::MAX as u64;
        let mut log = LogConfig::default();
        if let Some(v) = t.int("segment_bytes", l.segment_bytes, 4096, 1 << 40)? {
            log.segment_bytes = v;
        }
        if let Some(v) = t.int("retain_bytes", l.retain_bytes, 0, big)? {
            log.retain_bytes = v;
        }
        if let Some(v) = t.int("retain_seconds", l.retain_seconds, 0, big)? {
            log.retain_seconds = v;
        }
        out.config.log = log;
    }
    for (i, r) in file.access.into_iter().enumerate() {
        out.config.rules.push(rule(&table(&format!("access[{}]", i + 1)), r)?);
    }
    if let Some(b) = file.bridge {
        out.bridge = Some(bridge(&table("bridge"), b)?);
    }
    Ok(out)
}

fn bridge(t: &Table, b: BridgeToml) -> Result<BridgeConfig, ConfigError> {
    if let Some(n) = &b.name {
        if !crate::bridge::envelope::valid_name(n) {
            return Err(t.err(
                "name",
                format!("{n:?} is not a broker name (1 to 64 letters, digits, '.', '_', '-')"),
            ));
        }
    }
    let mut topics = Vec::new();
    for p in &b.topics {
        topics.push(BridgeTopic::parse(p).map_err(|e| t.err("topics", e))?);
    }
    let identity = b.identity.map(|v| bridge_identity(t, "identity", v)).transpose()?;
    let mut identities = BTreeMap::new();
    for (broker, v) in b.identities {
        let key = format!("identities.{broker}");
        if !crate::bridge::envelope::valid_name(&broker) {
            return Err(t.err(
                &key,
                format!("{broker:?} is not a broker name (1 to 64 letters, digits, '.', '_', '-')"),
            ));
        }
        identities.insert(broker, bridge_identity(t, &key, v)?);
    }
    Ok(BridgeConfig {
        name: b.name,
        listen: b.listen,
        connect: b.connect,
        topics,
        identity,
        identities,
        tls: b.tls.map(|x| BridgeTls {
            root_ca: x.root_ca.into(),
            certificate: x.certificate.into(),
            private_key: x.private_key.into(),
        }),
        multicast: b.multicast.unwrap_or(false),
        relay: b.relay.unwrap_or(false),
    })
}

/// A bridge identity: a user name, or a uid.
fn bridge_identity(t: &Table, key: &str, v: toml::Value) -> Result<u32, ConfigError> {
    match v {
        toml::Value::Integer(uid) => u32::try_from(uid).map_err(|_| t.err(key, format!("{uid} is not a uid"))),
        toml::Value::String(name) => match lookup_user(&name) {
            Ok(Some(uid)) => Ok(uid),
            Ok(None) => Err(t.err(key, format!("no user named {name:?}"))),
            Err(e) => Err(t.err(key, format!("cannot look up user {name:?}: {e}"))),
        },
        v => Err(t.err(key, format!("{v} is not a user name or uid"))),
    }
}

/// The key and reason of an error in the file's shape (an unknown key, a
/// wrong type). Keys read as written: `limits.max_topic`, `access[1].users`
/// (tables of `[[access]]` counted from 1, as a reader counts them).
fn shape_error(e: &serde_path_to_error::Error<toml::de::Error>) -> (String, String) {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for seg in e.path().iter() {
        match seg {
            Segment::Seq { index } => key.push_str(&format!("[{}]", index + 1)),
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Unknown => {}
        }
    }
    let mut reason = e.inner().message().trim().replace('\n', "; ");
    // serde names Rust types; say what they mean in the file.
    for (rust, toml) in [
        ("expected i64", "expected an integer"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("invalid type: map", "invalid type: table"),
        ("unknown field", "unknown key"),
    ] {
        reason = reason.replace(rust, toml);
    }
    if let Some(i) = reason.find("expected struct ") {
        reason.replace_range(i.., "expected a table");
    }
    if key == "access" {
        reason.push_str(" of tables ([[access]])");
    }
    (key, reason)
}

/// A TOML syntax error on one line: where, and what.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            format!("not valid TOML at line {line}, column {column}: {what}")
        }
        None => format!("not valid TOML: {what}"),
    }
}

fn daemon_settings(t: &Table, d: DaemonToml) -> Result<Settings, ConfigError> {
    let socket = match d.socket.as_deref() {
        Some("") => return Err(t.err("socket", "must not be empty")),
        s => s.map(PathBuf::from),
    };
    let socket_mode = match d.socket_mode {
        None => None,
        Some(toml::Value::String(s)) => Some(parse_mode(&s).map_err(|r| t.err("socket_mode", r))?),
        // TOML's own octal integers (0o660) are fine too.
        Some(toml::Value::Integer(i)) if (0..=MODE_BITS as i64).contains(&i) => Some(i as u32),
        Some(toml::Value::Integer(i)) => {
            let why = format!("{i} (octal {i:o}) is not a file mode: write it as a string such as \"0660\"");
            return Err(t.err("socket_mode", why));
        }
        Some(v) => {
            let why = format!("expected an octal string such as \"0660\", found {}", v.type_str());
            return Err(t.err("socket_mode", why));
        }
    };
    let socket_group = match d.socket_group {
        None => None,
        Some(toml::Value::String(s)) => Some(resolve_group_arg(&s).map_err(|r| t.err("socket_group", r))?),
        Some(toml::Value::Integer(i)) => {
            let gid = u32::try_from(i).map_err(|_| t.err("socket_group", format!("{i} is not a group id")))?;
            Some(GroupRef {
                name: gid.to_string(),
                gid,
            })
        }
        Some(v) => {
            let why = format!("expected a group name or id, found {}", v.type_str());
            return Err(t.err("socket_group", why));
        }
    };
    let log_level = d
        .log_level
        .map(|l| parse_level(&l))
        .transpose()
        .map_err(|r| t.err("log_level", r))?;
    let drain_timeout = d
        .drain_timeout
        .map(seconds)
        .transpose()
        .map_err(|r| t.err("drain_timeout", r))?;
    let state_dir = match d.state_dir.as_deref() {
        Some("") => return Err(t.err("state_dir", "must not be empty")),
        s => s.map(PathBuf::from),
    };
    let cpu_affinity = match d.cpu_affinity {
        None => None,
        Some(a) => {
            // Checked against this machine's CPUs now, not when a thread starts.
            let cpus = |k: &str, v: Option<Vec<i64>>| -> Result<Vec<usize>, ConfigError> {
                let key = format!("cpu_affinity.{k}");
                let Some(v) = v else { return Ok(Vec::new()) };
                let v: Vec<usize> = v
                    .iter()
                    .map(|&c| usize::try_from(c).map_err(|_| t.err(&key, format!("{c} is not a CPU number"))))
                    .collect::<Result<_, _>>()?;
                aether::sys::affinity::check(&v).map_err(|e| t.err(&key, e.message))?;
                Ok(v)
            };
            Some(Affinity {
                accept: cpus("accept", a.accept)?,
                client: cpus("client", a.client)?,
                admin: cpus("admin", a.admin)?,
                housekeep: cpus("housekeep", a.housekeep)?,
                dispatch: cpus("dispatch", a.dispatch)?,
                log: cpus("log", a.log)?,
            })
        }
    };
    Ok(Settings {
        socket,
        socket_mode,
        socket_group,
        log_level,
        drain_timeout,
        state_dir,
        cpu_affinity,
        metrics_listen: d.metrics_listen.filter(|a| !a.is_empty()),
    })
}

fn limits(t: &Table, l: LimitsToml) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    let big = i64::MAX as u64;
    if let Some(v) = t.int("max_topics", l.max_topics, 1, big)? {
        limits.max_topics = usize::try_from(v).unwrap_or(usize::MAX);
    }
    if let Some(v) = t.int("max_clients", l.max_clients, 1, big)? {
        limits.max_clients = usize::try_from(v).unwrap_or(usize::MAX);
    }
    let per_topic = l.max_subscribers_per_topic;
    if let Some(v) = t.int("max_subscribers_per_topic", per_topic, 1, MAX_SUBSCRIBERS.into())? {
        limits.max_subscribers_per_topic = v as u32;
    }
    if let Some(v) = t.int("max_segment_bytes", l.max_segment_bytes, MIN_RING, MAX_RING)? {
        limits.max_segment_bytes = v;
    }
    if let Some(v) = t.int("max_message_bytes", l.max_message_bytes, 1, largest_max_message())? {
        limits.max_message_bytes = v;
    }
    let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    if let Some(v) = t.int("max_total_segment_bytes", l.max_total_segment_bytes, MIN_RING, big)? {
        limits.max_total_segment_bytes = v;
    }
    if let Some(v) = t.int("per_uid_connections", l.per_uid_connections, 1, big)? {
        limits.per_uid_connections = count(v);
    }
    if let Some(v) = t.int("per_uid_control_queues", l.per_uid_control_queues, 0, big)? {
        limits.per_uid_control_queues = count(v);
    }
    if let Some(v) = t.int("per_uid_mqueue_subscribers", l.per_uid_mqueue_subscribers, 0, big)? {
        limits.per_uid_mqueue_subscribers = count(v);
    }
    if let Some(v) = t.int("per_uid_slots", l.per_uid_slots, 0, big)? {
        limits.per_uid_slots = count(v);
    }
    if let Some(v) = t.int("per_uid_segment_bytes", l.per_uid_segment_bytes, 0, big)? {
        limits.per_uid_segment_bytes = v;
    }
    if let Some(v) = t.int("per_client_slots", l.per_client_slots, 1, big)? {
        limits.per_client_slots = count(v);
    }
    Ok(limits)
}

fn topic_defaults(t: &Table, d: TopicToml) -> Result<TopicParams, ConfigError> {
    let mut p = TopicParams::default();
    if let Some(name) = d.policy {
        p.policy = Policy::from_name(&name).ok_or_else(|| {
            t.err(
                "policy",
                format!("{name:?} is not a policy (\"lossy\" or \"reliable\")"),
            )
        })?;
    }
    // 0: sized for max_message (`TopicParams::ring_for`), the default.
    if let Some(v) = t.int("ring_size", d.ring_size, RING_SIZED, MAX_RING)? {
        if v != RING_SIZED && (v < MIN_RING || !v.is_power_of_two()) {
            return Err(t.err(
                "ring_size",
                format!("{v} is not a power of two from {MIN_RING} (or 0: sized for max_message)"),
            ));
        }
        p.ring_size = v;
    }
    if let Some(v) = t.int("max_message", d.max_message, 1, largest_max_message())? {
        p.max_message = v;
    }
    if let Some(v) = t.int("max_subscribers", d.max_subscribers, 1, MAX_SUBSCRIBERS.into())? {
        p.max_subscribers = v as u32;
    }
    p.huge_pages = d.huge_pages.unwrap_or(false);
    // Together (max_message against the ring size): reported on the table.
    // A ring left unset stays sized for each topic's max_message.
    p.sized().validate().map_err(|e| t.whole(e.message))?;
    Ok(p)
}

fn rule(t: &Table, r: RuleToml) -> Result<Rule, ConfigError> {
    let topics = r.topics.ok_or_else(|| {
        t.err(
            "topics",
            "missing (a list of topic names or prefixes ending in *; [\"*\"] for every topic)",
        )
    })?;
    if topics.is_empty() {
        return Err(t.err("topics", "is empty (use [\"*\"] for every topic)"));
    }
    for p in &topics {
        check_pattern(p).map_err(|reason| t.err("topics", reason))?;
    }
    let mut rule = Rule {
        topics,
        ..Rule::default()
    };
    for name in &r.users {
        match lookup_user(name) {
            Ok(Some(uid)) => rule.uids.push(uid),
            Ok(None) => return Err(t.err("users", format!("no user named {name:?}"))),
            Err(e) => return Err(t.err("users", format!("cannot look up user {name:?}: {e}"))),
        }
    }
    rule.uids.extend(r.uids);
    for name in &r.groups {
        match lookup_group(name) {
            Ok(Some(gid)) => rule.gids.push(gid),
            Ok(None) => return Err(t.err("groups", format!("no group named {name:?}"))),
            Err(e) => return Err(t.err("groups", format!("cannot look up group {name:?}: {e}"))),
        }
    }
    rule.gids.extend(r.gids);
    if rule.uids.is_empty() && rule.gids.is_empty() {
        return Err(t.whole("the rule names nobody: give users, uids, groups or gids"));
    }
    for a in &r.allow {
        let action = match a.as_str() {
            "publish" => Action::Publish,
            "subscribe" => Action::Subscribe,
            "admin" => Action::Admin,
            "monitor" => Action::Monitor,
            other => {
                let why = format!("{other:?} is not an action (publish, subscribe, admin, monitor)");
                return Err(t.err("allow", why));
            }
        };
        if !rule.allow.contains(&action) {
            rule.allow.push(action);
        }
    }
    if rule.allow.is_empty() {
        return Err(t.err(
            "allow",
            "missing or empty (a list of publish, subscribe, admin, monitor)",
        ));
    }
    Ok(rule)
}

/// A topic pattern: `*`, a topic name, or a prefix of one followed by `*`.
fn check_pattern(p: &str) -> Result<(), String> {
    let (body, prefix) = match p.strip_suffix('*') {
        Some(b) => (b, true),
        None => (p, false),
    };
    if prefix && body.is_empty() {
        return Ok(());
    }
    // The part before `*` follows the topic-name grammar of the protocol.
    if aether::protocol::validate_topic(body).is_err() {
        return Err(format!(
            "{p:?} is not a topic name or a prefix followed by * (names: 1 to {} bytes of A-Z a-z 0-9 . _ -, \
             not starting with .)",
            aether::segment::MAX_TOPIC_LEN
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Values shared by the file, the environment and the flags.

/// A socket mode: octal digits, optionally with a leading `0` or `0o` ("0660", "660", "0o660").
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= MODE_BITS && !digits.is_empty() => Ok(m),
        Ok(_) => Err(format!("{s:?} has bits beyond 0777 (no setuid, setgid or sticky bits)")),
        Err(_) => Err(format!("{s:?} is not an octal mode such as \"0660\"")),
    }
}

fn parse_level(s: &str) -> Result<Level, String> {
    crate::logger::parse_level(s).ok_or_else(|| format!("{s:?} is not a log level (error, warn, info, debug)"))
}

fn seconds(s: f64) -> Result<Duration, String> {
    if (0.0..=365.0 * 86_400.0).contains(&s) {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!("{s} is not a number of seconds from 0 to a year"))
    }
}

/// A group given by name, or by number when all digits.
fn resolve_group_arg(s: &str) -> Result<GroupRef, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let gid = s.parse().map_err(|_| format!("{s} is not a group id"))?;
        return Ok(GroupRef { name: s.into(), gid });
    }
    match lookup_group(s) {
        Ok(Some(gid)) => Ok(GroupRef { name: s.into(), gid }),
        Ok(None) => Err(format!("no group named {s:?}")),
        Err(e) => Err(format!("cannot look up group {s:?}: {e}")),
    }
}

/// A user's uid by name (`None`: no such user).
pub fn lookup_user(name: &str) -> Result<Option<u32>, String> {
    check_name(name)?;
    User::from_name(name)
        .map(|u| u.map(|u| u.uid.as_raw()))
        .map_err(|e| e.desc().to_string())
}

/// A group's gid by name (`None`: no such group).
pub fn lookup_group(name: &str) -> Result<Option<u32>, String> {
    check_name(name)?;
    Group::from_name(name)
        .map(|g| g.map(|g| g.gid.as_raw()))
        .map_err(|e| e.desc().to_string())
}

fn check_name(name: &str) -> Result<(), String> {
    match name.contains('\0') {
        true => Err("the name contains a NUL byte".into()),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<FileConfig, ConfigError> {
        parse(text, Path::new("/etc/aether/test.toml"))
    }

    /// The error for `text`, checked to name the file and `key`.
    #[test]
    fn bridge_table() {
        let f = p(r#"
            [bridge]
            name = "host-a"
            listen = ["tcp/0.0.0.0:7447"]
            connect = ["tcp/192.0.2.2:7447", "tls/b.example:7447"]
            topics = ["sensors.*", "cmd.*:in", "log:out", "*"]
            identity = 65534
            multicast = true
            relay = true
            tls = { root_ca = "/etc/aether/ca.pem", certificate = "/etc/aether/a.pem", private_key = "/etc/aether/a.key" }

            [bridge.identities]
            host-b = 65533
            "c.lab" = "root"
        "#)
        .unwrap();
        let b = f.bridge.unwrap();
        assert_eq!(b.name.as_deref(), Some("host-a"));
        assert_eq!(b.connect.len(), 2);
        assert_eq!(
            b.topics
                .iter()
                .map(|t| (t.pattern.as_str(), t.out, t.inbound))
                .collect::<Vec<_>>(),
            vec![
                ("sensors.*", true, true),
                ("cmd.*", false, true),
                ("log", true, false),
                ("*", true, true)
            ]
        );
        assert_eq!(b.identity, Some(65534));
        assert_eq!(
            b.identities.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
            vec![("c.lab", 0), ("host-b", 65533)]
        );
        assert!(err(
            "[bridge.identities]
\"b c\" = 1
",
            "bridge.identities.b c"
        )
        .reason
        .contains("not a broker name"));
        assert!(err(
            "[bridge.identities]
b = \"no-such-user-here\"
",
            "bridge.identities.b"
        )
        .reason
        .contains("no user named"));
        assert!(err(
            "[bridge.identities]
b = -1
",
            "bridge.identities.b"
        )
        .reason
        .contains("not a uid"));
        assert!(b.multicast && b.relay && b.tls.unwrap().private_key.ends_with("a.key"));
        assert!(p("").unwrap().bridge.is_none());
        assert!(err("[bridge]\ntopics = [\"x:sideways\"]\n", "bridge.topics")
            .reason
            .contains("direction"));
        assert!(err("[bridge]\ntopics = [\"../x\"]\n", "bridge.topics")
            .reason
            .contains("not a topic"));
        assert!(err("[bridge]\nname = \"a b\"\n", "bridge.name")
            .reason
            .contains("broker name"));
        err("[bridge]\nidentity = \"no-such-user-here\"\n", "bridge.identity");
        err("[bridge]\nidentity = -1\n", "bridge.identity");
        err("[bridge]\nlisten = \"tcp/x\"\n", "bridge.listen");
        err("[bridge]\nrelay = \"yes\"\n", "bridge.relay");
        err("[bridge]\nroute = true\n", "bridge.route");
    }

    fn err(text: &str, key: &str) -> ConfigError {
        let e = p(text).expect_err("should be refused");
        assert_eq!(e.origin, "/etc/aether/test.toml");
        assert_eq!(e.key, key, "{e}");
        assert!(
            e.to_string().starts_with(&format!("/etc/aether/test.toml: {key}")),
            "{e}"
        );
        e
    }

    const NO_SUCH_NAME: &str = "aether-no-such-name-7c1f";

    #[test]
    fn valid_file() {
        let f = p(r#"
            # comment
            [daemon]
            socket = "/run/aether/x.sock"
            socket_mode = "0660"
            socket_group = "root"
            log_level = "debug"
            drain_timeout = 2.5

            [limits]
            max_topics = 10
            max_clients = 20
            max_subscribers_per_topic = 8
            max_segment_bytes = 1048576
            max_message_bytes = 4096
            per_uid_slots = 9

            [topic_defaults]
            policy = "reliable"
            ring_size = 65536
            max_message = 1024
            max_subscribers = 4

            [[access]]
            topics = ["sensors.*", "logs"]
            users = ["root"]
            uids = [1000]
            allow = ["publish", "subscribe"]

            [[access]]
            topics = ["*"]
            groups = ["root"]
            gids = [4242]
            allow = ["admin", "admin"]
        "#)
        .unwrap();
        let s = &f.settings;
        assert_eq!(s.socket.as_deref(), Some(Path::new("/run/aether/x.sock")));
        assert_eq!(s.socket_mode, Some(0o660));
        assert_eq!(
            s.socket_group,
            Some(GroupRef {
                name: "root".into(),
                gid: 0
            })
        );
        assert_eq!(s.log_level, Some(Level::Debug));
        assert_eq!(s.drain_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(
            f.config.limits,
            Limits {
                max_topics: 10,
                max_clients: 20,
                max_subscribers_per_topic: 8,
                max_segment_bytes: 1 << 20,
                max_message_bytes: 4096,
                per_uid_slots: 9,
                ..Limits::default()
            }
        );
        assert_eq!(
            f.config.topic_defaults,
            TopicParams {
                policy: Policy::Reliable,
                ring_size: 65536,
                max_message: 1024,
                max_subscribers: 4,
                wal: None,
                huge_pages: false,
                retain_bytes: None,
                retain_seconds: None,
            }
        );
        assert_eq!(
            f.config.rules,
            vec![
                Rule {
                    topics: vec!["sensors.*".into(), "logs".into()],
                    uids: vec![0, 1000],
                    gids: vec![],
                    allow: vec![Action::Publish, Action::Subscribe],
                },
                Rule {
                    topics: vec!["*".into()],
                    uids: vec![],
                    gids: vec![0, 4242],
                    allow: vec![Action::Admin],
                },
            ]
        );
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(p("").unwrap(), FileConfig::default());
        assert_eq!(p("[limits]\n[daemon]\n").unwrap(), FileConfig::default());
    }

    #[test]
    fn each_limit_alone() {
        let one = |k: &str, v: u64| p(&format!("[limits]\n{k} = {v}\n")).unwrap().config.limits;
        let d = Limits::default();
        assert_eq!(
            one("max_topics", 3),
            Limits {
                max_topics: 3,
                ..d.clone()
            }
        );
        assert_eq!(
            one("max_clients", 4),
            Limits {
                max_clients: 4,
                ..d.clone()
            }
        );
        assert_eq!(
            one("max_subscribers_per_topic", 5),
            Limits {
                max_subscribers_per_topic: 5,
                ..d.clone()
            }
        );
        assert_eq!(
            one("max_segment_bytes", 8192),
            Limits {
                max_segment_bytes: 8192,
                ..d.clone()
            }
        );
        assert_eq!(
            one("max_message_bytes", 100),
            Limits {
                max_message_bytes: 100,
                ..d.clone()
            }
        );
        // Out of range, wrong type.
        err("[limits]\nmax_topics = 0\n", "limits.max_topics");
        err("[limits]\nmax_clients = -1\n", "limits.max_clients");
        err(
            "[limits]\nmax_subscribers_per_topic = 1025\n",
            "limits.max_subscribers_per_topic",
        );
        err("[limits]\nmax_segment_bytes = 4095\n", "limits.max_segment_bytes");
        err("[limits]\nmax_segment_bytes = 2147483648\n", "limits.max_segment_bytes");
        err("[limits]\nmax_message_bytes = 0\n", "limits.max_message_bytes");
        let e = err("[limits]\nmax_topics = \"10\"\n", "limits.max_topics");
        assert!(e.reason.contains("expected an integer"), "{e}");
    }

    #[test]
    fn unknown_keys() {
        let e = err("[limits]\nmax_topic = 3\n", "limits.max_topic");
        assert!(
            e.reason.contains("unknown key") && e.reason.contains("max_topics"),
            "{e}"
        );
        err("nonsense = 1\n", "nonsense");
        err("[daemon]\nsocket_path = \"/x\"\n", "daemon.socket_path");
        err("[topic_defaults]\nring = 4096\n", "topic_defaults.ring");
        err(
            "[[access]]\ntopics = [\"a\"]\nuids = [1]\nallow = [\"publish\"]\nuser = [\"x\"]\n",
            "access[1].user",
        );
        err(
            "[[access]]\ntopics = [\"a\"]\nuids = [1]\nallow = [\"publish\"]\n[[access]]\ntopic = [\"a\"]\n",
            "access[2].topic",
        );
    }

    #[test]
    fn bad_policy_and_topic_defaults() {
        let e = err("[topic_defaults]\npolicy = \"fast\"\n", "topic_defaults.policy");
        assert!(e.reason.contains("lossy"), "{e}");
        err("[topic_defaults]\nring_size = 5000\n", "topic_defaults.ring_size");
        err("[topic_defaults]\nring_size = 2048\n", "topic_defaults.ring_size");
        // 0: each topic's ring sized for its max_message.
        let f = p("[topic_defaults]\nring_size = 0\nmax_message = 1048576\n").unwrap();
        assert_eq!(f.config.topic_defaults.sized().ring_size, 4 << 20);
        // max_message too large for the ring: reported on the table.
        err(
            "[topic_defaults]\nring_size = 4096\nmax_message = 4000\n",
            "topic_defaults",
        );
        err("[topic_defaults]\npolicy = 1\n", "topic_defaults.policy");
    }

    #[test]
    fn socket_modes() {
        for (text, mode) in [
            ("\"0660\"", 0o660),
            ("\"660\"", 0o660),
            ("\"0o666\"", 0o666),
            ("\"0600\"", 0o600),
            ("0o660", 0o660),
        ] {
            let f = p(&format!("[daemon]\nsocket_mode = {text}\n")).unwrap();
            assert_eq!(f.settings.socket_mode, Some(mode), "{text}");
        }
        for bad in ["\"0999\"", "\"rw-rw----\"", "\"\"", "\"4755\"", "660", "true"] {
            err(&format!("[daemon]\nsocket_mode = {bad}\n"), "daemon.socket_mode");
        }
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert!(parse_mode("8").is_err());
    }

    #[test]
    fn unknown_names() {
        let rule = |who: &str| format!("[[access]]\ntopics = [\"t\"]\n{who}\nallow = [\"subscribe\"]\n");
        let e = err(&rule(&format!("users = [\"{NO_SUCH_NAME}\"]")), "access[1].users");
        assert!(e.reason.contains(NO_SUCH_NAME), "{e}");
        err(&rule(&format!("groups = [\"{NO_SUCH_NAME}\"]")), "access[1].groups");
        err(
            &format!("[daemon]\nsocket_group = \"{NO_SUCH_NAME}\"\n"),
            "daemon.socket_group",
        );
        assert_eq!(lookup_user("root"), Ok(Some(0)));
        assert_eq!(lookup_group("root"), Ok(Some(0)));
        assert_eq!(lookup_user(NO_SUCH_NAME), Ok(None));
        assert!(lookup_user("a\0b").is_err());
    }

    #[test]
    fn bad_rules() {
        let base = "[[access]]\n";
        err(
            &format!("{base}uids = [1]\nallow = [\"publish\"]\n"),
            "access[1].topics",
        );
        err(
            &format!("{base}topics = []\nuids = [1]\nallow = [\"publish\"]\n"),
            "access[1].topics",
        );
        err(
            &format!("{base}topics = [\"a/b\"]\nuids = [1]\nallow = [\"publish\"]\n"),
            "access[1].topics",
        );
        err(
            &format!("{base}topics = [\"a*b\"]\nuids = [1]\nallow = [\"publish\"]\n"),
            "access[1].topics",
        );
        err(&format!("{base}topics = [\"a\"]\nallow = [\"publish\"]\n"), "access[1]");
        err(&format!("{base}topics = [\"a\"]\nuids = [1]\n"), "access[1].allow");
        err(
            &format!("{base}topics = [\"a\"]\nuids = [1]\nallow = [\"read\"]\n"),
            "access[1].allow",
        );
        err(
            &format!("{base}topics = [\"a\"]\nuids = [-1]\nallow = [\"publish\"]\n"),
            "access[1].uids[1]",
        );
        err(
            &format!("{base}topics = \"a\"\nuids = [1]\nallow = [\"publish\"]\n"),
            "access[1].topics",
        );
        err("access = 3\n", "access");
        err("[access]\ntopics = [\"a\"]\n", "access");
        let r = p(&format!(
            "{base}topics = [\"a.*\", \"b\"]\ngids = [7]\nallow = [\"subscribe\"]\n"
        ))
        .unwrap();
        assert_eq!(r.config.rules[0].gids, vec![7]);
    }

    #[test]
    fn daemon_settings_types() {
        err("[daemon]\nlog_level = \"loud\"\n", "daemon.log_level");
        err("[daemon]\ndrain_timeout = -1\n", "daemon.drain_timeout");
        err("[daemon]\ndrain_timeout = \"5\"\n", "daemon.drain_timeout");
        err("[daemon]\nsocket = \"\"\n", "daemon.socket");
        err("[daemon]\nsocket = 3\n", "daemon.socket");
        err("daemon = 3\n", "daemon");
        let f = p("[daemon]\ndrain_timeout = 0\nsocket_group = 0\n").unwrap();
        assert_eq!(f.settings.drain_timeout, Some(Duration::ZERO));
        assert_eq!(f.settings.socket_group.map(|g| g.gid), Some(0));
        // CPU affinity: per kind of thread, checked against this machine's CPUs.
        let cpu = *aether::sys::affinity::current().unwrap().last().unwrap();
        let f = p(&format!(
            "[daemon]\ncpu_affinity = {{ housekeep = [{cpu}], log = [{cpu}] }}\n"
        ))
        .unwrap();
        let a = f.settings.cpu_affinity.unwrap();
        assert_eq!((a.housekeep, a.log, a.accept), (vec![cpu], vec![cpu], vec![]));
        let e = err(
            "[daemon.cpu_affinity]\naccept = [100000]\n",
            "daemon.cpu_affinity.accept",
        );
        assert!(e.reason.contains("may use"), "{e}");
        err("[daemon.cpu_affinity]\nclient = [-1]\n", "daemon.cpu_affinity.client");
        err("[daemon.cpu_affinity]\nclient = []\n", "daemon.cpu_affinity.client");
        err("[daemon.cpu_affinity]\nworkers = [0]\n", "daemon.cpu_affinity.workers");
    }

    #[test]
    fn syntax_error_names_the_file_and_line() {
        let e = p("[limits\nmax_topics = 1\n").unwrap_err();
        assert_eq!(e.key, "");
        assert!(
            e.to_string().starts_with("/etc/aether/test.toml: not valid TOML"),
            "{e}"
        );
        assert_eq!(e.reason.lines().count(), 1, "one line for the log: {e}");
        assert!(e.reason.contains("at line 1, column 8"), "{e}");
        let e = p("[limits]\nmax_topics = 1\nmax_topics = 2\n").unwrap_err();
        assert!(e.reason.contains("at line 3"), "{e}");
    }

    /// The example in etc/ parses as it is, and the defaults it shows
    /// (commented out) are the built-in ones.
    #[test]
    fn example_file_matches_the_defaults() {
        let text = include_str!("../../etc/aetherd.toml");
        assert_eq!(p(text).unwrap(), FileConfig::default());
        let shown: &[&str] = &[
            "max_total_segment_bytes",
            "per_uid_connections",
            "per_uid_control_queues",
            "per_uid_mqueue_subscribers",
            "per_uid_slots",
            "per_uid_segment_bytes",
            "per_client_slots",
            "max_topics",
            "max_clients",
            "max_subscribers_per_topic",
            "max_segment_bytes",
            "max_message_bytes",
            "policy",
            "ring_size",
            "max_message",
            "max_subscribers",
            "segment_bytes",
            "retain_bytes",
            "retain_seconds",
            "log_level",
            "drain_timeout",
            "socket_mode",
        ];
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if shown.iter().any(|k| rest.starts_with(&format!("{k} ="))) => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let f = p(&uncommented).unwrap();
        assert_eq!(f.config, Config::default());
        assert_eq!(f.settings.log_level, Some(Level::Info));
        assert_eq!(f.settings.drain_timeout, Some(DEFAULT_DRAIN_TIMEOUT));
        assert_eq!(f.settings.socket_mode, Some(0o660));
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn environment() {
        let s = Settings::from_env(env(&[
            ("AETHER_SOCKET", "/e.sock"),
            ("AETHER_LOG", "warn"),
            ("RUST_LOG", "debug"),
            ("AETHER_DRAIN_TIMEOUT", "0.5"),
        ]))
        .unwrap();
        assert_eq!(s.socket.as_deref(), Some(Path::new("/e.sock")));
        assert_eq!(s.log_level, Some(Level::Warn));
        assert_eq!(s.drain_timeout, Some(Duration::from_millis(500)));
        // RUST_LOG only as a bare level; empty variables are unset.
        let s = Settings::from_env(env(&[("RUST_LOG", "debug"), ("AETHER_SOCKET", "")])).unwrap();
        assert_eq!((s.log_level, s.socket), (Some(Level::Debug), None));
        let s = Settings::from_env(env(&[("RUST_LOG", "aether=debug,info")])).unwrap();
        assert_eq!(s.log_level, None);
        let e = Settings::from_env(env(&[("AETHER_LOG", "loud")])).unwrap_err();
        assert_eq!((e.origin.as_str(), e.key.as_str()), ("environment", "AETHER_LOG"));
        let e = Settings::from_env(env(&[("AETHER_DRAIN_TIMEOUT", "soon")])).unwrap_err();
        assert_eq!(e.key, "AETHER_DRAIN_TIMEOUT");
        assert!(Settings::from_env(env(&[("AETHER_DRAIN_TIMEOUT", "-1")])).is_err());
    }

    #[test]
    fn flags() {
        let s = Settings::from_flags(
            Some("/f.sock".into()),
            Some("0666"),
            Some("0"),
            Some("error"),
            Some(1.0),
        )
        .unwrap();
        assert_eq!(s.socket_mode, Some(0o666));
        assert_eq!(s.socket_group.map(|g| g.gid), Some(0));
        assert_eq!(s.log_level, Some(Level::Error));
        let e = Settings::from_flags(None, Some("999"), None, None, None).unwrap_err();
        assert_eq!((e.origin.as_str(), e.key.as_str()), ("command line", "--socket-mode"));
        let e = Settings::from_flags(None, None, None, None, Some(f64::NAN)).unwrap_err();
        assert_eq!(e.key, "--drain-timeout");
        let e = Settings::from_flags(None, None, Some(NO_SUCH_NAME), None, None).unwrap_err();
        assert_eq!(e.key, "--socket-group");
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let full = |tag: &str, level: Level, secs: u64, mode: u32| Settings {
            socket: Some(PathBuf::from(format!("/{tag}.sock"))),
            socket_mode: Some(mode),
            socket_group: Some(GroupRef {
                name: tag.into(),
                gid: mode,
            }),
            log_level: Some(level),
            drain_timeout: Some(Duration::from_secs(secs)),
            state_dir: Some(PathBuf::from(format!("/{tag}.state"))),
            cpu_affinity: None,
            metrics_listen: None,
        };
        let flags = full("flag", Level::Debug, 1, 0o600);
        let env = full("env", Level::Warn, 2, 0o660);
        let file = full("file", Level::Error, 3, 0o666);
        let none = Settings::default();
        let default = PathBuf::from("/default.sock");
        let r = resolve(&flags, &env, &file, default.clone());
        assert_eq!(r.socket, Path::new("/flag.sock"));
        assert_eq!(
            (r.log_level, r.drain_timeout, r.socket_mode),
            (Level::Debug, Duration::from_secs(1), Some(0o600))
        );
        let r = resolve(&none, &env, &file, default.clone());
        assert_eq!(r.socket, Path::new("/env.sock"));
        assert_eq!((r.log_level, r.drain_timeout), (Level::Warn, Duration::from_secs(2)));
        let r = resolve(&none, &none, &file, default.clone());
        assert_eq!(r.socket, Path::new("/file.sock"));
        assert_eq!(r.socket_group.map(|g| g.name), Some("file".into()));
        let r = resolve(&none, &none, &none, default.clone());
        assert_eq!(
            r,
            Resolved {
                socket: default.clone(),
                socket_mode: None,
                socket_group: None,
                log_level: Level::Info,
                drain_timeout: DEFAULT_DRAIN_TIMEOUT,
                state_dir: None,
                cpu_affinity: Affinity::default(),
                metrics_listen: None,
            }
        );
        // Per setting, not per source: a flag for one setting leaves the others to lower sources.
        let only_level = Settings {
            log_level: Some(Level::Debug),
            ..Settings::default()
        };
        let r = resolve(&only_level, &none, &file, default);
        assert_eq!((r.log_level, r.socket), (Level::Debug, PathBuf::from("/file.sock")));
    }

    #[test]
    fn builtin_socket_and_file_choice() {
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(
            builtin_socket(env(&[])),
            PathBuf::from(format!("/tmp/aether-{uid}/aetherd.sock"))
        );
        assert_eq!(
            builtin_socket(env(&[("XDG_RUNTIME_DIR", "/run/user/7")])),
            Path::new("/run/user/7/aether/aetherd.sock")
        );
        let f = config_file(Some(Path::new("/flag.toml")), env(&[("AETHER_CONFIG", "/env.toml")]));
        assert_eq!(f.as_deref(), Some(Path::new("/flag.toml")));
        let f = config_file(None, env(&[("AETHER_CONFIG", "/env.toml")]));
        assert_eq!(f.as_deref(), Some(Path::new("/env.toml")));
        // No file unless one is named: /etc/aether is the system broker's alone.
        assert_eq!(config_file(None, env(&[])), None);
    }

    #[test]
    fn load_and_reload() {
        let dir = std::env::temp_dir().join(format!(
            "aether-config-test-{}-{:x}",
            std::process::id(),
            aether::sys::random_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("aetherd.toml");
        let get = |k: &str| match k {
            "AETHER_LOG" => Some("warn".to_string()),
            _ => None,
        };
        // A named file must exist.
        let e = Loaded::load(Settings::default(), Some(&path), get).unwrap_err();
        assert!(e.reason.contains("cannot read"), "{e}");

        std::fs::write(
            &path,
            "[daemon]\nsocket = \"/a.sock\"\nlog_level = \"debug\"\ndrain_timeout = 1\n",
        )
        .unwrap();
        let l = Loaded::load(Settings::default(), Some(&path), get).unwrap();
        assert_eq!(l.file.as_deref(), Some(path.as_path()));
        assert_eq!(l.settings.socket, Path::new("/a.sock"));
        assert_eq!(l.settings.log_level, Level::Warn, "the environment beats the file");
        assert_eq!(l.settings.drain_timeout, Duration::from_secs(1));

        // Reload: limits and rules change; the socket cannot.
        std::fs::write(
            &path,
            "[daemon]\nsocket = \"/b.sock\"\ndrain_timeout = 2\n[limits]\nmax_topics = 2\n\
             [[access]]\ntopics = [\"*\"]\nuids = [5]\nallow = [\"subscribe\"]\n",
        )
        .unwrap();
        let (l2, notes) = l.reload().unwrap();
        assert_eq!(l2.settings.socket, Path::new("/a.sock"));
        assert_eq!(l2.settings.drain_timeout, Duration::from_secs(2));
        assert_eq!(l2.config.limits.max_topics, 2);
        assert_eq!(l2.config.rules.len(), 1);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("/b.sock"), "{notes:?}");

        // A broken file: an error, and the caller keeps what it had.
        std::fs::write(&path, "[limits]\nmax_topics = \"many\"\n").unwrap();
        let e = l2.reload().unwrap_err();
        assert_eq!(e.key, "limits.max_topics");
        assert_eq!(e.origin, path.display().to_string());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
