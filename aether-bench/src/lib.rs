//! aether-bench: Aether against the physical floors and a socket baseline,
//! in one run, so that results are ratios that survive a noisy machine.
//!
//! Every measurement that involves two parties runs them as two (or more)
//! separate processes: this binary re-executed in a role (see `roles`). The
//! broker runs inside the parent process on a private socket.

mod durable;
#[cfg(feature = "peers")]
mod peers;
mod roles;
mod shared;

use aether::{Client, Policy, TopicParams};
use aetherd::Broker;
use clap::Parser;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "aether-bench",
    about = "Latency, throughput and fan-out of Aether beside cache-line, record, futex, Unix-socket, hand-off, memcpy and memset baselines"
)]
pub struct Args {
    /// A reduced run (under 30 s)
    #[arg(long)]
    pub quick: bool,
    /// One JSON object per line instead of tables
    #[arg(long)]
    pub json: bool,
    /// CPUs to pin processes to, e.g. 0,1: publisher/ping on the first, pong/sink on the
    /// second, fan-out subscribers round-robin over all but the first
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Which benchmarks to run: latency, throughput, fanout; durable (the
    /// write-ahead log, under TMPDIR), pages (normal against huge pages) and
    /// publishers (one against two publishers on one topic) and path (the
    /// client's own cost per message, one thread) only when asked
    #[arg(long, value_delimiter = ',', default_values_t = vec!["latency".to_string(), "throughput".into(), "fanout".into()])]
    pub only: Vec<String>,
    /// Round trips measured per latency system (after a 10% warm-up)
    #[arg(long)]
    pub round_trips: Option<u64>,
    /// Message sizes of the throughput runs
    #[arg(long, value_delimiter = ',', default_values_t = vec![64u64, 4096, 65536, 1 << 20])]
    pub sizes: Vec<u64>,
    /// Messages per throughput and fan-out run (default: sized by --quick)
    #[arg(long)]
    pub messages: Option<u64>,
    /// Ring size of the latency topics
    #[arg(long, default_value_t = 65536)]
    pub latency_ring: u64,
    /// Ring size of the throughput topic (at least 8 messages of the size
    /// run); 0: the ring a topic gets by default, sized for the message
    /// (1 MiB, or the smallest that takes one: `TopicParams::ring_for`)
    #[arg(long, default_value_t = 0)]
    pub throughput_ring: u64,
    /// Latency and throughput runs are split in this many rounds, each system
    /// taking its turn in every round, so that a change in the machine (a VM's
    /// vCPUs moved to other cores) hits every system alike (default: 2 with
    /// --quick, else 5)
    #[arg(long)]
    pub rounds: Option<u64>,
    /// What zero-copy receivers (aether-zc, handoff, iceoryx2) read of each
    /// throughput message: `all` its bytes, or `head` its first and last 8
    #[arg(long, default_value = "all", value_parser = ["all", "head"])]
    pub touch: String,
    /// iceoryx2's subscriber buffer in the throughput runs, in messages
    /// (`--features peers`; 0: as many as Aether's ring holds, up to 1024).
    /// The default, 2, is iceoryx2's own: its publisher then reuses the
    /// sample just released while it is still in cache
    #[arg(long, default_value_t = 2)]
    pub iceoryx2_buffer: u64,
    /// Ring size of the `pages` benchmark (normal against huge pages; it
    /// needs this much in reserved 2 MiB pages, `sysctl vm.nr_hugepages`)
    #[arg(long, default_value_t = 64 << 20)]
    pub pages_ring: u64,
    /// Only these systems in the latency and throughput runs, e.g.
    /// `aether-zc,handoff` (default: all), to profile or compare a few quickly;
    /// `aether-zc-whole`, `aether-zc-short`, `aether-zc-measured` (throughput,
    /// only when named): aether-zc with its publisher in those large laps
    /// rather than the default's (`caught-up`); `aether-untimed`,
    /// `aether-zc-untimed` (latency and throughput only when named; path
    /// always): with publishers that send no timestamps
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
}

/// The latency systems: (system, how the receiver waits).
fn latency_systems() -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("cacheline", "spin"),
        ("record", "spin"),
        ("aether", "spin"),
        ("aether-zc", "spin"),
        ("futex", "futex"),
        ("aether", "futex"),
        ("aether", "poll"),
        ("uds", "futex"),
    ];
    if cfg!(feature = "peers") {
        v.extend([("iceoryx2", "spin"), ("iceoryx2", "event"), ("zmq", "block")]);
    }
    v
}

/// The throughput systems.
fn throughput_systems() -> Vec<&'static str> {
    let mut v = vec!["aether", "aether-zc", "handoff", "uds", "memcpy", "memset"];
    if cfg!(feature = "peers") {
        v.extend(["iceoryx2", "zmq"]);
    }
    v
}

/// Runs the benchmark (or, in a child, its role). `self_cmd` re-executes this
/// program into the same argument parser (e.g. `[aether-cli, bench]`).
pub fn main(args: impl Iterator<Item = OsString>, self_cmd: Vec<OsString>) -> i32 {
    if let Ok(role) = std::env::var("AB_ROLE") {
        return roles::run(&role);
    }
    let args = Args::parse_from(std::iter::once(OsString::from("aether-bench")).chain(args));
    match Bench::new(args, self_cmd).and_then(|mut b| b.run()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("aether-bench: {e}");
            1
        }
    }
}

type Result<T> = std::result::Result<T, String>;

struct Proc {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Proc {
    fn expect_ready(&mut self) -> Result<()> {
        let mut l = String::new();
        self.out.read_line(&mut l).map_err(|e| e.to_string())?;
        if l.trim() != "READY" {
            return Err(format!("child did not get ready (said {l:?})"));
        }
        Ok(())
    }
    fn go(&mut self) -> Result<()> {
        writeln!(self.stdin, "GO").map_err(|e| e.to_string())
    }
    fn result(mut self) -> Result<HashMap<String, f64>> {
        let mut l = String::new();
        self.out.read_line(&mut l).map_err(|e| e.to_string())?;
        let st = self.child.wait().map_err(|e| e.to_string())?;
        let body = l
            .trim()
            .strip_prefix("RESULT ")
            .ok_or_else(|| format!("child failed ({st}): {l:?}"))?;
        Ok(body
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect())
    }
}

struct Bench {
    args: Args,
    self_cmd: Vec<OsString>,
    dir: PathBuf,
    socket: PathBuf,
    broker: Option<Broker>,
    client: Client,
    /// Runs so far: peers rendezvous under a name unique to each (AB_PEER).
    runs: std::cell::Cell<u64>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        drop(self.broker.take()); // removes the socket and every segment
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e9 {
        format!("{:.2} G", r / 1e9)
    } else if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0} ")
    }
}

fn fmt_size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

impl Bench {
    fn new(args: Args, self_cmd: Vec<OsString>) -> Result<Bench> {
        let dir = std::env::temp_dir().join(format!(
            "aether-bench-{}-{:x}",
            std::process::id(),
            aether::sys::random_u64() as u32
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let socket = dir.join("bench.sock");
        // The embedded broker's info lines would interleave with the tables.
        aetherd::logger::init(log::LevelFilter::Warn, aetherd::logger::Format::Text);
        let broker = Broker::bind(&socket).map_err(|e| e.to_string())?;
        broker.spawn_threads().map_err(|e| e.to_string())?;
        let client = Client::connect_with(Some(&socket), false).map_err(|e| e.to_string())?;
        Ok(Bench {
            args,
            self_cmd,
            dir,
            socket,
            broker: Some(broker),
            client,
            runs: std::cell::Cell::new(0),
        })
    }

    fn cpu(&self, i: usize) -> Option<usize> {
        (!self.args.cpus.is_empty()).then(|| self.args.cpus[i % self.args.cpus.len()])
    }

    /// Where fan-out subscriber `i` runs: round-robin over the CPUs after the
    /// publisher's, so that subscribers share CPUs with each other, never
    /// with the publisher whose rate is measured.
    fn subscriber_cpu(&self, i: usize) -> Option<usize> {
        match self.args.cpus.len() {
            0 => None,
            1 => Some(self.args.cpus[0]),
            n => Some(self.args.cpus[1 + i % (n - 1)]),
        }
    }

    fn spawn(&self, role: &str, cpu: Option<usize>, env: &[(&str, String)]) -> Result<Proc> {
        let mut cmd = Command::new(&self.self_cmd[0]);
        cmd.args(&self.self_cmd[1..])
            .env("AB_ROLE", role)
            .env("AB_SOCKET", &self.socket)
            .env("AETHER_NO_AUTOSTART", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(c) = cpu {
            cmd.env("AB_CPU", c.to_string());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env("AB_TOUCH", &self.args.touch).env("AB_PEER_DIR", &self.dir).env(
            "AB_PEER",
            format!(
                "{}-{}",
                self.dir.file_name().unwrap_or_default().to_string_lossy(),
                self.runs.get()
            ),
        );
        let mut child = cmd.spawn().map_err(|e| format!("spawn {role}: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let out = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Proc { child, stdin, out })
    }

    /// Starts all `procs`, waits until each is ready, then lets them go together.
    fn start(&self, mut procs: Vec<Proc>) -> Result<Vec<Proc>> {
        self.runs.set(self.runs.get() + 1);
        for p in &mut procs {
            p.expect_ready()?;
        }
        for p in &mut procs {
            p.go()?;
        }
        Ok(procs)
    }

    fn topic(&self, name: &str, policy: Policy, max_message: u64, ring_size: u64) -> Result<()> {
        self.topic_on(name, policy, max_message, ring_size, false)
    }

    /// As `topic`, on huge pages or not.
    fn topic_on(&self, name: &str, policy: Policy, max_message: u64, ring_size: u64, huge_pages: bool) -> Result<()> {
        let _ = self.client.delete_topic(name);
        let ring_size = ring_bytes(max_message, ring_size);
        let params = TopicParams {
            policy,
            ring_size,
            max_message,
            max_subscribers: 16,
            wal: None,
            huge_pages,
            retain_bytes: None,
            retain_seconds: None,
        };
        self.client.create_topic(name, &params).map_err(|e| e.to_string())
    }

    fn emit(&self, json: String, table: String) {
        if self.args.json {
            println!("{json}");
        } else {
            println!("{table}");
        }
    }

    fn run(&mut self) -> Result<()> {
        let only = self.args.only.clone();
        if only.iter().any(|o| o == "latency") {
            self.latency()?;
        }
        if only.iter().any(|o| o == "throughput") {
            self.throughput()?;
        }
        if only.iter().any(|o| o == "durable") {
            self.durable()?;
        }
        if only.iter().any(|o| o == "pages") {
            self.pages()?;
        }
        if only.iter().any(|o| o == "publishers") {
            self.publishers()?;
        }
        if only.iter().any(|o| o == "fanout") {
            self.fanout()?;
        }
        if only.iter().any(|o| o == "path") {
            self.path()?;
        }
        Ok(())
    }

    /// What the client library itself costs per 64 B message, without the
    /// cross-core traffic: one thread publishes a batch (that fits the ring),
    /// then receives it. ns per message, the best and the median batch.
    /// Baseline `slots`: the same bytes written to and read from slots of
    /// an array, with a stamp each (no protocol at all).
    fn path(&mut self) -> Result<()> {
        const BATCH: usize = 200;
        const SIZE: usize = 64;
        let batches = if self.args.quick { 20_000 } else { 100_000 };
        if !self.args.json {
            println!("path: one thread, {SIZE} B, batches of {BATCH} published then received; ns per message");
            println!(
                "{:<17} {:>14} {:>14} {:>14} {:>14}",
                "system", "send best", "send median", "receive best", "receive median"
            );
        }
        let systems = ["aether", "aether-zc", "aether-untimed", "aether-zc-untimed", "slots"];
        for system in systems.into_iter().filter(|s| self.wanted(s)) {
            let (mut send, mut recv) = (Vec::with_capacity(batches), Vec::with_capacity(batches));
            let mut timed = |send_batch: &mut dyn FnMut(), recv_batch: &mut dyn FnMut()| {
                for _ in 0..batches {
                    let t0 = aether::sys::monotonic_ns();
                    send_batch();
                    let t1 = aether::sys::monotonic_ns();
                    recv_batch();
                    let t2 = aether::sys::monotonic_ns();
                    send.push(t1 - t0);
                    recv.push(t2 - t1);
                }
            };
            if system == "slots" {
                // 128 B slots, as the ring's records of 64 B are.
                let area = std::cell::RefCell::new(vec![0u64; BATCH * 16]);
                let mut sum = 0u64;
                timed(
                    &mut || {
                        let mut a = area.borrow_mut();
                        for (i, slot) in a.chunks_exact_mut(16).enumerate() {
                            slot[4..12].fill(i as u64);
                            slot[0] = i as u64 + 1;
                        }
                        std::hint::black_box(&mut *a);
                    },
                    &mut || {
                        let a = area.borrow();
                        for slot in std::hint::black_box(&*a).chunks_exact(16) {
                            sum = sum.wrapping_add(slot[0]).wrapping_add(slot[4]);
                        }
                    },
                );
                std::hint::black_box(sum);
            } else {
                self.topic("path", Policy::Reliable, 1024, 1 << 16)?;
                let (base, untimed) = roles::untimed(system);
                let mut p = self.client.publisher("path").map_err(|e| e.to_string())?;
                p.set_timestamps(!untimed);
                let p = std::cell::RefCell::new(p);
                let s = std::cell::RefCell::new(
                    self.client
                        .subscriber("path", &aether::SubscriberConfig::default())
                        .map_err(|e| e.to_string())?,
                );
                let msg = [0x5au8; SIZE];
                let deadline = aether::ring::Deadline::after(Some(std::time::Duration::from_secs(10)));
                let zc = base == "aether-zc";
                let failed = std::cell::Cell::new(None);
                let fail = |what: &str, e: aether::Error| {
                    failed.set(Some(format!("path {system}: {what}: {e}")));
                };
                timed(
                    &mut || {
                        let mut p = p.borrow_mut();
                        for i in 0..BATCH {
                            let r = if zc {
                                p.loan(SIZE).map(|b| b.fill(i as u8)).and_then(|()| p.commit(SIZE))
                            } else {
                                p.publish(&msg)
                            };
                            if let Err(e) = r {
                                fail("publish", e);
                            }
                        }
                    },
                    &mut || {
                        let mut s = s.borrow_mut();
                        let mut buf = [0u8; SIZE];
                        for _ in 0..BATCH {
                            let r = if zc {
                                s.receive_view(&deadline).and_then(|rec| {
                                    // SAFETY: the view's bytes stay in the ring until release_view.
                                    std::hint::black_box(unsafe { *rec.data });
                                    s.release_view().map(|_| ())
                                })
                            } else {
                                s.receive_into_deadline(&mut buf, &deadline).map(|_| ())
                            };
                            if let Err(e) = r {
                                fail("receive", e);
                            }
                        }
                    },
                );
                if let Some(e) = failed.take() {
                    return Err(e);
                }
            }
            let stats = |v: &mut Vec<u64>| {
                v.sort_unstable();
                (v[0] as f64 / BATCH as f64, v[v.len() / 2] as f64 / BATCH as f64)
            };
            let ((sb, sm), (rb, rm)) = (stats(&mut send), stats(&mut recv));
            self.emit(
                format!(r#"{{"bench":"path","system":"{system}","size":{SIZE},"send_best_ns":{sb:.1},"send_median_ns":{sm:.1},"receive_best_ns":{rb:.1},"receive_median_ns":{rm:.1}}}"#),
                format!("{system:<17} {sb:>11.1} ns {sm:>11.1} ns {rb:>11.1} ns {rm:>11.1} ns"),
            );
        }
        Ok(())
    }

    fn latency(&mut self) -> Result<()> {
        let count = self
            .args
            .round_trips
            .unwrap_or(if self.args.quick { 20_000 } else { 100_000 });
        let size = 64u64;
        if !self.args.json {
            println!("latency: one-way = round trip / 2, {size} B, {count} round trips (after warm-ups) in rounds that alternate the systems, ping and pong in separate processes");
            println!(
                "{:<17} {:<6} {:>10} {:>10} {:>10}",
                "system", "wait", "p50", "p99", "p99.9"
            );
        }
        let page = shared::SharedPage::create().map_err(|e| e.to_string())?;
        let (s0, s1) = shared::socket_pair().map_err(|e| e.to_string())?;
        let rounds = self.rounds();
        let per_round = count.div_ceil(rounds);
        let mut systems: Vec<_> = latency_systems().into_iter().filter(|(s, _)| self.wanted(s)).collect();
        // Only when named: publishers without timestamps, beside the default.
        for untimed in ["aether-untimed", "aether-zc-untimed"] {
            if self.args.systems.iter().any(|s| s == untimed) {
                systems.push((untimed, "spin"));
            }
        }
        let mut samples: Vec<Vec<u64>> = vec![Vec::new(); systems.len()];
        let samples_file = self.dir.join("latency-samples");
        for _ in 0..rounds {
            for (k, &(system, wait)) in systems.iter().enumerate() {
                if system.starts_with("aether") {
                    // A small ring stays in cache: the latency a caller tuning for it gets.
                    self.topic("lat-ping", Policy::Reliable, size, self.args.latency_ring)?;
                    self.topic("lat-pong", Policy::Reliable, size, self.args.latency_ring)?;
                }
                // Reset the shared words between runs.
                page.u64_at(0).store(0, std::sync::atomic::Ordering::SeqCst);
                page.u32_at(1).store(0, std::sync::atomic::Ordering::SeqCst);
                page.u64_at(shared::RECORD_TO_PONG)
                    .store(0, std::sync::atomic::Ordering::SeqCst);
                page.u64_at(shared::RECORD_TO_PING)
                    .store(0, std::sync::atomic::Ordering::SeqCst);
                let base = |fd: i32| {
                    vec![
                        ("AB_SYSTEM", system.to_string()),
                        ("AB_WAIT", wait.to_string()),
                        ("AB_SIZE", size.to_string()),
                        ("AB_COUNT", per_round.to_string()),
                        ("AB_WARMUP", (per_round / 10).to_string()),
                        ("AB_FD", fd.to_string()),
                        ("AB_SAMPLES", samples_file.display().to_string()),
                    ]
                };
                let (fd_ping, fd_pong) = if system == "uds" {
                    (s0.as_raw_fd(), s1.as_raw_fd())
                } else {
                    (page.fd(), page.fd())
                };
                let procs = vec![
                    self.spawn("ping", self.cpu(0), &base(fd_ping))?,
                    self.spawn("pong", self.cpu(1), &base(fd_pong))?,
                ];
                let mut procs = self.start(procs)?.into_iter();
                let (ping, pong) = (procs.next().expect("ping"), procs.next().expect("pong"));
                ping.result()?;
                pong.result()?;
                let raw = std::fs::read(&samples_file).map_err(|e| format!("latency samples: {e}"))?;
                samples[k].extend(
                    raw.chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
                );
            }
        }
        let _ = std::fs::remove_file(&samples_file);
        for (&(system, wait), mut s) in systems.iter().zip(samples) {
            s.sort_unstable();
            let pct = |p: f64| {
                s.get(((s.len() as f64 * p) as usize).min(s.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0)
            };
            let (p50, p99, p999) = (pct(0.50), pct(0.99), pct(0.999));
            self.emit(
                format!(r#"{{"bench":"latency","system":"{system}","wait":"{wait}","size":{size},"p50_ns":{p50},"p99_ns":{p99},"p999_ns":{p999}}}"#),
                format!("{system:<17} {wait:<6} {:>8} ns {:>7} ns {:>7} ns", p50, p99, p999),
            );
        }
        Ok(())
    }

    /// Whether `--systems` lets `system` run.
    fn wanted(&self, system: &str) -> bool {
        self.args.systems.is_empty() || self.args.systems.iter().any(|s| s == system)
    }

    fn throughput(&mut self) -> Result<()> {
        if !self.args.json {
            println!(
                "throughput: publisher and subscriber in separate processes, reliable topic; memcpy/memset: one thread"
            );
            println!(
                "{:<18} {:>8} {:>14} {:>14} {:>6}",
                "system", "size", "msgs/s", "bytes/s", "lost"
            );
        }
        let budget: u64 = if self.args.quick { 64 << 20 } else { 1 << 31 };
        let cap: u64 = if self.args.quick { 300_000 } else { 5_000_000 };
        let rounds = self.rounds();
        let mut systems: Vec<_> = throughput_systems().into_iter().filter(|s| self.wanted(s)).collect();
        // Only when named: aether-zc with its publisher in other large laps
        // (`aether-zc-whole`, `-short`, `-measured`) or without timestamps
        // (`aether-untimed`, `aether-zc-untimed`), beside the default.
        let variants = self
            .args
            .systems
            .iter()
            .filter(|s| s.starts_with("aether-zc-") || *s == "aether-untimed");
        systems.extend(variants.map(|s| s.as_str()));
        for size in self.args.sizes.clone() {
            let count = self.args.messages.unwrap_or((budget / size).clamp(200, cap));
            let per_round = count.div_ceil(rounds).max(2);
            // Per system: messages (intervals), seconds, lost, summed over rounds.
            let mut sums = vec![(0f64, 0f64, 0u64); systems.len()];
            for _ in 0..rounds {
                for (system, sum) in systems.iter().zip(sums.iter_mut()) {
                    let (msgs, secs, lost) = match *system {
                        "memcpy" | "memset" => local_bandwidth(system, size as usize, per_round),
                        _ => self.pipe(system, size, per_round, self.args.throughput_ring, false)?,
                    };
                    *sum = (sum.0 + msgs, sum.1 + secs, sum.2 + lost);
                }
            }
            for (&system, (msgs, secs, lost)) in systems.iter().zip(sums) {
                let rate = msgs / secs.max(1e-9);
                let bytes = rate * size as f64;
                self.emit(
                    format!(r#"{{"bench":"throughput","system":"{system}","size":{size},"msgs_per_s":{rate:.0},"bytes_per_s":{bytes:.0},"lost":{lost}}}"#),
                    format!("{system:<18} {:>8} {:>12}/s {:>12}B/s {lost:>6}", fmt_size(size), fmt_rate(rate), fmt_rate(bytes)),
                );
            }
        }
        Ok(())
    }

    fn rounds(&self) -> u64 {
        self.args.rounds.unwrap_or(if self.args.quick { 2 } else { 5 }).max(1)
    }

    /// One source, one sink: returns (intervals measured, seconds, lost).
    fn pipe(&self, system: &str, size: u64, count: u64, ring: u64, huge_pages: bool) -> Result<(f64, f64, u64)> {
        let (s0, s1) = shared::socket_pair().map_err(|e| e.to_string())?;
        // The hand-off area is as big as the ring.
        let stride = size.div_ceil(64) * 64;
        let slots = ring_bytes(size, ring) / stride;
        let area = if system == "handoff" {
            Some(
                shared::SharedPage::create_sized(shared::PAGE + (slots * stride) as usize)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        if system.starts_with("aether") {
            self.topic_on("tput", Policy::Reliable, size, ring, huge_pages)?;
        }
        let env = |fd: i32| {
            vec![
                ("AB_SYSTEM", system.to_string()),
                ("AB_WAIT", "default".to_string()),
                ("AB_SIZE", size.to_string()),
                ("AB_COUNT", count.to_string()),
                ("AB_TOPIC", "tput".to_string()),
                ("AB_FD", area.as_ref().map_or(fd, |a| a.fd()).to_string()),
                ("AB_SLOTS", slots.to_string()),
                (
                    "AB_PEER_BUFFER",
                    match self.args.iceoryx2_buffer {
                        0 => slots,
                        n => n,
                    }
                    .to_string(),
                ),
                ("AB_STRIDE", stride.to_string()),
            ]
        };
        let procs = vec![
            self.spawn("sink", self.cpu(1), &env(s1.as_raw_fd()))?,
            self.spawn("source", self.cpu(0), &env(s0.as_raw_fd()))?,
        ];
        let mut procs = self.start(procs)?.into_iter();
        let (sink, source) = (procs.next().expect("sink"), procs.next().expect("source"));
        source.result()?;
        let r = sink.result()?;
        Ok((r["intervals"], r["secs"], r["lost"] as u64))
    }

    /// Throughput through a big ring on normal pages and on huge pages, in
    /// alternating rounds: what the TLB costs when the ring is far beyond
    /// its reach (4 KiB pages: a few MiB; 2 MiB pages: gigabytes).
    fn pages(&mut self) -> Result<()> {
        let ring = self.args.pages_ring;
        let need = (ring + (1 << 20)).div_ceil(2 << 20);
        let free = aether::sys::shm::huge_pages_free().unwrap_or(0);
        if free < need {
            return Err(format!(
                "pages: a {} ring needs {need} free 2 MiB huge pages and {free} are free: reserve them with `sysctl vm.nr_hugepages={need}` (as root), or pass a smaller --pages-ring",
                fmt_size(ring)
            ));
        }
        if !self.args.json {
            println!(
                "pages: {} ring, normal (4 KiB) against huge (2 MiB) pages, reliable topic, receivers read {} of each message",
                fmt_size(ring),
                if self.args.touch == "all" { "every byte" } else { "the head and tail" }
            );
            println!(
                "{:<10} {:<6} {:>8} {:>14} {:>14}",
                "system", "pages", "size", "msgs/s", "bytes/s"
            );
        }
        let budget: u64 = if self.args.quick { 256 << 20 } else { 4 << 30 };
        let rounds = self.rounds();
        let runs = [
            ("aether", false),
            ("aether", true),
            ("aether-zc", false),
            ("aether-zc", true),
        ];
        for size in self.args.sizes.clone().into_iter().filter(|&s| s * 8 <= ring) {
            let count = self.args.messages.unwrap_or((budget / size).clamp(200, 20_000_000));
            let per_round = count.div_ceil(rounds).max(2);
            let mut sums = [(0f64, 0f64); 4];
            for _ in 0..rounds {
                for (&(system, huge), sum) in runs.iter().zip(sums.iter_mut()) {
                    let (msgs, secs, _) = self.pipe(system, size, per_round, ring, huge)?;
                    *sum = (sum.0 + msgs, sum.1 + secs);
                }
            }
            for (&(system, huge), (msgs, secs)) in runs.iter().zip(sums) {
                let rate = msgs / secs.max(1e-9);
                let bytes = rate * size as f64;
                let pages = if huge { "huge" } else { "normal" };
                self.emit(
                    format!(r#"{{"bench":"pages","system":"{system}","pages":"{pages}","ring":{ring},"size":{size},"msgs_per_s":{rate:.0},"bytes_per_s":{bytes:.0}}}"#),
                    format!("{system:<10} {pages:<6} {:>8} {:>12}/s {:>12}B/s", fmt_size(size), fmt_rate(rate), fmt_rate(bytes)),
                );
            }
        }
        let _ = self.client.delete_topic("tput");
        Ok(())
    }

    /// Publishers contending for one lossy topic with nobody subscribed: one
    /// alone, then two at once (separate processes on the first CPUs),
    /// their summed rate: what they cost each other (the tail they share,
    /// and whatever else shares its lines).
    fn publishers(&mut self) -> Result<()> {
        let count: u64 = self
            .args
            .messages
            .unwrap_or(if self.args.quick { 2_000_000 } else { 10_000_000 });
        if !self.args.json {
            println!("publishers: N publishers (separate processes), one lossy topic, no subscriber, 64 B, {count} messages each");
            println!("{:<12} {:>16}", "publishers", "summed msgs/s");
        }
        for n in [1usize, 2] {
            let mut sums = (0f64, 0f64);
            for _ in 0..self.rounds() {
                self.topic("pubs", Policy::Lossy, 64, 4 << 20)?;
                let env = vec![
                    ("AB_SYSTEM", "aether".to_string()),
                    ("AB_WAIT", "default".to_string()),
                    ("AB_SIZE", "64".to_string()),
                    ("AB_COUNT", count.to_string()),
                    ("AB_TOPIC", "pubs".to_string()),
                ];
                let procs = (0..n)
                    .map(|i| self.spawn("source", self.cpu(i), &env))
                    .collect::<Result<Vec<_>>>()?;
                let (mut msgs, mut secs) = (0f64, 0f64);
                for p in self.start(procs)? {
                    let r = p.result()?;
                    msgs += r["msgs"];
                    secs = f64::max(secs, r["secs"]);
                }
                sums = (sums.0 + msgs, sums.1 + secs);
            }
            let rate = sums.0 / sums.1.max(1e-9);
            self.emit(
                format!(r#"{{"bench":"publishers","publishers":{n},"msgs_per_s":{rate:.0}}}"#),
                format!("{n:<12} {:>14}/s", fmt_rate(rate)),
            );
        }
        Ok(())
    }

    fn fanout(&mut self) -> Result<()> {
        let count: u64 = self
            .args
            .messages
            .unwrap_or(if self.args.quick { 200_000 } else { 2_000_000 });
        if !self.args.json {
            println!("fan-out: one publisher, N subscribers (separate processes), lossy topic, 64 B, {count} messages");
            println!(
                "{:<12} {:>16} {:>20}",
                "subscribers", "publisher msg/s", "slowest sub msg/s"
            );
        }
        for n in [1usize, 2, 4, 8] {
            self.topic("fan", Policy::Lossy, 64, 4 << 20)?;
            let env = vec![
                ("AB_SYSTEM", "aether".to_string()),
                ("AB_WAIT", "default".to_string()),
                ("AB_SIZE", "64".to_string()),
                ("AB_COUNT", count.to_string()),
                ("AB_TOPIC", "fan".to_string()),
            ];
            let mut procs = Vec::new();
            for i in 0..n {
                procs.push(self.spawn("sink", self.subscriber_cpu(i), &env)?);
            }
            procs.push(self.spawn("source", self.cpu(0), &env)?);
            let mut procs = self.start(procs)?;
            let source = procs.pop().expect("source").result()?;
            let pub_rate = source["msgs"] / source["secs"].max(1e-9);
            let mut min_sub = f64::MAX;
            for p in procs {
                let r = p.result()?;
                min_sub = min_sub.min(r["intervals"] / r["secs"].max(1e-9));
            }
            self.emit(
                format!(r#"{{"bench":"fanout","subscribers":{n},"pub_msgs_per_s":{pub_rate:.0},"min_sub_msgs_per_s":{min_sub:.0}}}"#),
                format!("{n:<12} {:>14}/s {:>18}/s", fmt_rate(pub_rate), fmt_rate(min_sub)),
            );
        }
        Ok(())
    }
}

/// The ring size of a topic for messages up to `max_message`: `ring_size`,
/// or more, to hold at least eight messages; for `ring_size` 0, the ring a
/// topic gets by default.
fn ring_bytes(max_message: u64, ring_size: u64) -> u64 {
    match ring_size {
        0 => TopicParams::ring_for(max_message),
        r => (max_message * 8).next_power_of_two().max(r),
    }
}

/// Single-thread copy or fill bandwidth, the physical limit for the copy and
/// zero-copy paths: returns (operations, seconds, 0).
fn local_bandwidth(system: &str, size: usize, count: u64) -> (f64, f64, u64) {
    let src = vec![0x5au8; size];
    // Rotate over a buffer as big as a ring, like the real paths do.
    let slots = ((8 << 20) / size).max(2);
    let mut dst = vec![0u8; slots * size];
    // Fault the pages in before timing, as the rings are (mapped populated).
    dst.fill(1);
    std::hint::black_box(&mut dst);
    let start = aether::sys::monotonic_ns();
    for i in 0..count as usize {
        let d = &mut dst[(i % slots) * size..][..size];
        if system == "memcpy" {
            d.copy_from_slice(&src);
        } else {
            d.fill(i as u8);
        }
        std::hint::black_box(&mut *d);
    }
    let secs = (aether::sys::monotonic_ns() - start) as f64 / 1e9;
    (count as f64, secs, 0)
}
