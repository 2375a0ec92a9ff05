//! aetherd's command line, kept apart from `main.rs` so that the man page
//! generator (`aether-mangen`) renders the very same definition.

use clap::Parser;
use std::path::PathBuf;

const PRECEDENCE: &str = "\
Each setting is taken from, highest first: its command-line flag, its AETHER_*
environment variable, the configuration file, the built-in default.

Configuration file: --config PATH, else $AETHER_CONFIG, else none (the
system broker's unit passes --config /etc/aether/aetherd.toml; a private
broker never reads it unless told to). It also holds the limits, the default
topic parameters and the access rules ([limits], [topic_defaults], [[access]]);
SIGHUP re-reads it (rules, limits, log level and drain timeout apply at once;
socket, socket_mode and socket_group only at restart). Example:
/usr/share/doc/aether/examples/aetherd.toml; every key:
/usr/share/doc/aether/OPERATIONS.md.

Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads the configuration,
SIGUSR1 writes statistics.";

#[derive(Parser)]
#[command(
    name = "aetherd",
    version,
    about = "Aether broker daemon: owns topics and hands their shared-memory segments to clients",
    after_help = PRECEDENCE
)]
pub(crate) struct Args {
    /// Configuration file (TOML) [env: AETHER_CONFIG] [default: none]
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Control socket path [env: AETHER_SOCKET] [file: daemon.socket] [default: $XDG_RUNTIME_DIR/aether/aetherd.sock, else /tmp/aether-UID/aetherd.sock; the system broker's is /run/aether/aetherd.sock]
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    /// Socket file mode, octal; e.g. 0660 lets the socket's group connect [file: daemon.socket_mode] [default: as created, private]
    #[arg(long, value_name = "MODE")]
    pub(crate) socket_mode: Option<String>,
    /// Group (name or id) that owns the socket [file: daemon.socket_group] [default: the daemon's group]
    #[arg(long, value_name = "GROUP")]
    pub(crate) socket_group: Option<String>,
    /// Go to the background once listening (used by client auto-start). If
    /// another daemon already serves the socket, exit 0 quietly.
    #[arg(long)]
    pub(crate) detach: bool,
    /// On SIGTERM/SIGINT, how long subscribers get to read what is left, in seconds [env: AETHER_DRAIN_TIMEOUT] [file: daemon.drain_timeout] [default: 5]
    #[arg(long, value_name = "SECONDS")]
    pub(crate) drain_timeout: Option<f64>,
    /// Serve the statistics in the Prometheus text format at
    /// http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0: any free one, logged).
    /// No authentication: anyone who reaches ADDR reads topic names and
    /// counts [file: daemon.metrics_listen] [default: off]
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<String>,
    /// Where durable topics keep their write-ahead logs (made 0700 on first
    /// use) [env: AETHER_STATE_DIR] [file: daemon.state_dir] [default: /var/lib/aether for root, else $XDG_STATE_HOME/aether or ~/.local/state/aether]
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Append the log to this file (created mode 0600) instead of writing it
    /// to stderr; auto-started daemons log to aetherd.log next to their socket
    #[arg(long, value_name = "PATH")]
    pub(crate) log_file: Option<PathBuf>,
    /// Log lines as text, or as one JSON object each (time, level, message).
    /// Under systemd either is prefixed with its syslog priority for journald
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// error, warn, info or debug [env: AETHER_LOG, else RUST_LOG when it is a bare level] [file: daemon.log_level] [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
    /// Bridge: listen for other brokers on this Zenoh endpoint, e.g.
    /// tcp/0.0.0.0:7447 (repeatable; added to the file's bridge.listen)
    #[arg(long, value_name = "ENDPOINT")]
    pub(crate) bridge_listen: Vec<String>,
    /// Bridge: connect to another broker at this Zenoh endpoint, e.g.
    /// tcp/192.0.2.7:7447, retried until it answers (repeatable; added to
    /// bridge.connect)
    #[arg(long, value_name = "ENDPOINT")]
    pub(crate) bridge_connect: Vec<String>,
    /// Bridge: topics that cross, PATTERN[:in|:out|:both] (a name, or a
    /// prefix ending in *; default both directions; repeatable; added to
    /// bridge.topics)
    #[arg(long, value_name = "PATTERN")]
    pub(crate) bridge_topics: Vec<String>,
    /// Bridge: this broker's name in the origin of what it sends [file:
    /// bridge.name] [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub(crate) bridge_name: Option<String>,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// TIME LEVEL aetherd: message
    Text,
    /// one JSON object per line: time, level, message
    Json,
}
