//! aetherd's command line, kept apart from `main.rs` so that the man page
//! generator (`aether-mangen`) renders the very same definition.

use clap::Parser;
use std::path::PathBuf;

const PRECEDENCE: &str = "\
Each setting is taken from, highest first: its command-line flag, its AETHER_*
environment variable, the configuration file, the built-in default.

Configuration file: --config PATH, else $AETHER_CONFIG, else
/etc/aether/aetherd.toml if it exists. It also holds the limits, the default
topic parameters and the access rules ([limits], [topic_defaults], [[access]]);
SIGHUP re-reads it (rules, limits, log level and drain timeout apply at once;
socket, socket_mode and socket_group only at restart). Example: etc/aetherd.toml;
every key: docs/OPERATIONS.md.

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
    /// Configuration file (TOML) [env: AETHER_CONFIG] [default: /etc/aether/aetherd.toml if it exists]
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Control socket path [env: AETHER_SOCKET] [file: daemon.socket] [default: $XDG_RUNTIME_DIR/aether/aetherd.sock, else /run/aether/aetherd.sock]
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
    /// error, warn, info or debug [env: AETHER_LOG, else RUST_LOG when it is a bare level] [file: daemon.log_level] [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
}
