//! aether-cli: publish, subscribe and manage topics from the shell.

use aether::{Client, Policy, Status, SubscriberConfig, TopicParams};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "aether-cli", version, about = "Aether command-line client and admin tool")]
struct Cli {
    /// Control socket of the broker [default: $AETHER_SOCKET, else $XDG_RUNTIME_DIR/aether/aetherd.sock, else /run/aether/aetherd.sock]
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    Lossy,
    Reliable,
}

#[derive(clap::Args, Clone, Copy)]
struct TopicArgs {
    /// Delivery policy when the topic is created
    #[arg(long, value_enum, default_value = "lossy")]
    policy: PolicyArg,
    /// Ring size in bytes (a power of two) when the topic is created
    #[arg(long, default_value_t = TopicParams::default().ring_size)]
    ring_size: u64,
    /// Largest message in bytes when the topic is created
    #[arg(long, default_value_t = TopicParams::default().max_message)]
    max_message: u64,
}

impl TopicArgs {
    fn params(&self) -> TopicParams {
        TopicParams {
            policy: match self.policy {
                PolicyArg::Lossy => Policy::Lossy,
                PolicyArg::Reliable => Policy::Reliable,
            },
            ring_size: self.ring_size,
            max_message: self.max_message,
            ..TopicParams::default()
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
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
        #[command(flatten)]
        topic_args: TopicArgs,
    },
    /// Create a topic
    Create {
        topic: String,
        #[command(flatten)]
        topic_args: TopicArgs,
    },
    /// Delete a topic
    Delete { topic: String },
    /// Show the daemon this client reaches
    Status,
    /// Run the benchmark (same as `aether-bench`; see `aether-cli bench --help`)
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn fail(e: aether::Error) -> ! {
    eprintln!("aether-cli: {e}");
    if e.status == Status::Unavailable {
        eprintln!("hint: start the broker with `aetherd`, or unset AETHER_NO_AUTOSTART");
    }
    std::process::exit(1);
}

fn ensure_topic(client: &Client, topic: &str, args: &TopicArgs) {
    match client.create_topic(topic, &args.params()) {
        Ok(()) => {}
        Err(e) if e.status == Status::Exists => {}
        Err(e) => fail(e),
    }
}

fn rate(n: u64, secs: f64) -> String {
    let r = n as f64 / secs.max(1e-9);
    if r >= 1e6 {
        format!("{:.2} M msg/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k msg/s", r / 1e3)
    } else {
        format!("{r:.0} msg/s")
    }
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Bench { args } = cli.cmd {
        // The benchmark hosts its own broker and re-executes `aether-cli bench` for its children.
        let exe = std::env::current_exe().expect("own executable path");
        std::process::exit(aether_bench::main(
            args.into_iter(),
            vec![exe.into_os_string(), "bench".into()],
        ));
    }
    let client = Client::connect(cli.socket.as_deref()).unwrap_or_else(|e| fail(e));
    match cli.cmd {
        Cmd::Bench { .. } => unreachable!("handled above"),
        Cmd::Status => {
            println!("socket:   {}", client.socket_path().display());
            println!("pid:      {}", client.daemon_pid());
            println!("instance: {:016x}", client.instance_id());
        }
        Cmd::Create { topic, topic_args } => client
            .create_topic(&topic, &topic_args.params())
            .unwrap_or_else(|e| fail(e)),
        Cmd::Delete { topic } => client.delete_topic(&topic).unwrap_or_else(|e| fail(e)),
        Cmd::Pub {
            topic,
            message,
            topic_args,
        } => {
            ensure_topic(&client, &topic, &topic_args);
            let mut p = client.publisher(&topic).unwrap_or_else(|e| fail(e));
            let start = Instant::now();
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut send = |m: &[u8]| {
                p.publish(m).unwrap_or_else(|e| fail(e));
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
                            Err(e) => fail(aether::Error::io("read stdin", e)),
                        }
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "published {n} messages ({bytes} bytes) to {topic} in {secs:.3} s: {}",
                rate(n, secs)
            );
        }
        Cmd::Sub {
            topic,
            count,
            timeout,
            quiet,
            topic_args,
        } => {
            ensure_topic(&client, &topic, &topic_args);
            let mut s = client
                .subscriber(&topic, &SubscriberConfig::default())
                .unwrap_or_else(|e| fail(e));
            eprintln!("subscribed to {topic}");
            let mut buf = vec![0u8; s.max_message()];
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let idle = timeout.map(Duration::from_secs_f64);
            let (mut n, mut first) = (0u64, None);
            let mut timed_out = false;
            while count.is_none_or(|c| n < c) {
                match s.receive_into(&mut buf, idle) {
                    Ok(r) => {
                        first.get_or_insert_with(Instant::now);
                        n += 1;
                        if !quiet {
                            let ok = out.write_all(&buf[..r.len]).and_then(|_| out.write_all(b"\n"));
                            if ok.is_err() {
                                break; // stdout closed (e.g. `| head`)
                            }
                        }
                    }
                    Err(e) if e.status == Status::Timeout => {
                        timed_out = true;
                        break;
                    }
                    Err(e) => fail(e),
                }
            }
            let _ = out.flush();
            let secs = first.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64());
            eprintln!(
                "received {n} messages from {topic} ({} lost) in {secs:.3} s: {}",
                s.lost(),
                rate(n, secs)
            );
            if timed_out && count.is_some_and(|c| n < c) {
                eprintln!("aether-cli: timed out after {n} of {} messages", count.unwrap_or(0));
                std::process::exit(2);
            }
        }
    }
}
