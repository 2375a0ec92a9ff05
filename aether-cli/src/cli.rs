//! aether-cli's command line, kept apart from `main.rs` so that the man page
//! generator (`aether-mangen`) renders the very same definition. Behaviour
//! (what each value means to the library) stays in `main.rs`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "aether-cli", version, about = "Aether command-line client and admin tool")]
pub(crate) struct Cli {
    /// Control socket of the broker; the admin pipe is this path + ".admin"
    /// [default: $AETHER_SOCKET, else this user's private broker:
    /// $XDG_RUNTIME_DIR/aether/aetherd.sock, else /tmp/aether-UID/aetherd.sock]
    #[arg(long, global = true)]
    pub(crate) socket: Option<PathBuf>,
    /// The system broker (aetherd.service): --socket /run/aether/aetherd.sock
    #[arg(long, global = true, conflicts_with = "socket")]
    pub(crate) system: bool,
    /// Print exactly one JSON document (JSON lines for `stats --watch` and `sub`)
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(clap::Args, Clone, Copy)]
pub(crate) struct Wait {
    /// Seconds to wait for the daemon's answer
    #[arg(long, default_value_t = 2.0)]
    pub(crate) timeout: f64,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PolicyArg {
    Lossy,
    Reliable,
}

#[derive(clap::Args, Clone, Copy)]
pub(crate) struct TopicArgs {
    /// Delivery policy [default: create: the daemon's topic default; pub/sub: the library's]
    #[arg(long, value_enum)]
    pub(crate) policy: Option<PolicyArg>,
    /// Ring size in bytes, a power of two [default: create: the daemon's topic default; pub/sub: the library's, sized for max_message: 1 MiB, or the smallest ring that takes one]
    #[arg(long)]
    pub(crate) ring_size: Option<u64>,
    /// Largest message in bytes [default: create: the daemon's topic default; pub/sub: the library's]
    #[arg(long)]
    pub(crate) max_message: Option<u64>,
}

/// Whether a topic is logged to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Durability {
    Memory,
    Wal,
}

/// How `sub` prints a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Hex,
    Base64,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Daemon version, uptime, pid, instance, paths, counts and memory in segments
    Status {
        #[command(flatten)]
        wait: Wait,
    },
    /// One row per topic: policy, sizes, publishers, subscribers, published, rate, lost
    Topics {
        #[command(flatten)]
        wait: Wait,
    },
    /// One row per subscriber (of TOPIC, or all): client, delivery, lag, lost
    Subscribers {
        topic: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Topics and subscribers with their rates, redrawn in place until q, Esc or Ctrl-C
    Top {
        /// Seconds between refreshes
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many redraws
        #[arg(long)]
        iterations: Option<u64>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Every statistic the daemon keeps (what SIGUSR1 dumps)
    Stats {
        /// Refresh in place until Ctrl-C (JSON lines with --json)
        #[arg(long)]
        watch: bool,
        /// In the Prometheus text format (e.g. for node-exporter's textfile
        /// collector: `aether-cli stats --prometheus > DIR/aether.prom.tmp &&
        /// mv DIR/aether.prom.tmp DIR/aether.prom`)
        #[arg(long, conflicts_with = "watch")]
        prometheus: bool,
        /// Seconds between refreshes
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        #[command(flatten)]
        wait: Wait,
    },
    /// Create a topic
    Create {
        topic: String,
        #[command(flatten)]
        topic_args: TopicArgs,
        /// `wal`: the daemon logs every message to disk, for subscribers
        /// that start in the past (`sub --from`) and across restarts; the
        /// topic is reliable
        #[arg(long, value_enum, default_value_t = Durability::Memory)]
        durability: Durability,
        /// With --durability wal: when the log is synced to disk: `never`
        /// (the kernel decides), `interval=MS`, or `always` (a publish
        /// returns once its message is on disk) [default: never]
        #[arg(long, value_name = "POLICY")]
        fsync: Option<String>,
        /// Put the ring on 2 MiB huge pages (fewer TLB misses for big
        /// rings); they must be reserved (`sysctl vm.nr_hugepages=N`)
        #[arg(long)]
        huge_pages: bool,
        /// With --durability wal: keep this topic's log to about this many
        /// bytes, removing its oldest files (0: no limit) [default: the
        /// daemon's `[log] retain_bytes`]
        #[arg(long, value_name = "BYTES")]
        retain_bytes: Option<u64>,
        /// With --durability wal: remove this topic's log files whose every
        /// message is older than this many seconds (0: keep them) [default:
        /// the daemon's `[log] retain_seconds`]
        #[arg(long, value_name = "SECONDS")]
        retain_seconds: Option<u64>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Delete a topic; its publishers and subscribers get a clear error at their next call
    Delete {
        topic: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Disconnect a client (its id is in `stats` and `subscribers`) and free what it held
    Kick {
        client: u64,
        #[command(flatten)]
        wait: Wait,
    },
    /// Shut the daemon down gracefully (same as SIGTERM)
    Drain {
        #[command(flatten)]
        wait: Wait,
    },
    /// Reload the daemon's configuration (same as SIGHUP)
    Reload {
        #[command(flatten)]
        wait: Wait,
    },
    /// Publish MESSAGE, or each line of standard input, to TOPIC (created if missing)
    Pub {
        topic: String,
        message: Option<String>,
        #[command(flatten)]
        topic_args: TopicArgs,
    },
    /// Print each message of TOPIC on its own line (TOPIC is created if missing)
    Sub {
        topic: String,
        /// Exit after this many messages
        #[arg(long)]
        count: Option<u64>,
        /// Give up when no message arrives for this many seconds
        #[arg(long)]
        timeout: Option<f64>,
        /// Do not print messages, only the summary
        #[arg(long)]
        quiet: bool,
        /// How a payload is printed: its bytes as they are (text), or as hex
        /// or base64 (one message per line whatever it holds). With --json,
        /// `data` is the payload as UTF-8 when it is, else base64, and
        /// `encoding` says which (hex and base64 force that encoding).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Where to begin: `latest` (what is published from now on),
        /// `earliest`, `seq=N` or `time=NS` (nanoseconds since the epoch):
        /// the last three read a durable topic's log first
        #[arg(long, value_name = "START", default_value = "latest")]
        from: String,
        /// On a durable lossy topic: read the messages publishers lapped
        /// this subscriber over from the log instead of losing them
        #[arg(long)]
        fill_gaps: bool,
        #[command(flatten)]
        topic_args: TopicArgs,
    },
    /// Run the benchmark (same as `aether-bench`; see `aether-cli bench --help`)
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
}
