//! What the benchmark's child processes do. A child reads its role and
//! parameters from `AB_*` environment variables, prints `READY` once set up,
//! waits for `GO` on stdin, runs, and prints one `RESULT key=value ...` line.

use crate::shared::{self, SharedPage, RECORD_TO_PING, RECORD_TO_PONG};
use aether::ring::Deadline;
use aether::{Client, Status, SubscriberConfig, WaitConfig, WaitStrategy};
use std::hint::black_box;
use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("aether-bench child: {k} not set"))
}

fn num(k: &str) -> u64 {
    env(k)
        .parse()
        .unwrap_or_else(|_| panic!("aether-bench child: {k} is not a number"))
}

pub(crate) fn now() -> u64 {
    aether::sys::monotonic_ns()
}

pub(crate) fn ready_then_wait_for_go() {
    println!("READY");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("read GO");
}

pub(crate) fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("aether-bench child: {what}: {e}");
    std::process::exit(1);
}

fn client() -> Client {
    Client::connect_with(Some(&PathBuf::from(env("AB_SOCKET"))), false).unwrap_or_else(|e| fail("connect", e))
}

fn sub_config() -> SubscriberConfig {
    let wait = match env("AB_WAIT").as_str() {
        "spin" => WaitConfig {
            strategy: WaitStrategy::Spin,
            spin: 0,
        },
        // Straight to the futex (or, `poll`, to poll(2) on the eventfd): no
        // spinning, the figures to compare with a raw futex ping-pong.
        "futex" | "poll" => WaitConfig {
            strategy: WaitStrategy::Futex,
            spin: 0,
        },
        _ => WaitConfig::default(),
    };
    SubscriberConfig {
        wait,
        ..SubscriberConfig::default()
    }
}

/// Entry point for a child process; returns its exit code.
pub fn run(role: &str) -> i32 {
    if let Ok(cpu) = std::env::var("AB_CPU") {
        if let Ok(cpu) = cpu.parse() {
            shared::pin(cpu);
        }
    }
    match role {
        "ping" | "pong" => latency(role == "ping"),
        "source" => source(),
        "sink" => sink(),
        other => fail("unknown role", other),
    }
    0
}

/// Hands the one-way latencies (ns) to the parent, which merges the rounds
/// and computes the percentiles.
fn report_latency(samples: Vec<u64>) {
    let raw: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(env("AB_SAMPLES"), raw).unwrap_or_else(|e| fail("write samples", e));
    println!("RESULT n={}", samples.len());
}

/// An Aether system's name without `-untimed` (its publishers send no
/// timestamps, `Publisher::set_timestamps`), and whether it had it.
pub(crate) fn untimed(system: &str) -> (&str, bool) {
    match system.strip_suffix("-untimed") {
        Some(base) => (base, true),
        None => (system, false),
    }
}

/// The Aether latency runs' ports: a subscriber on the topic the other side
/// publishes to, and a publisher on its own (sending no timestamps for an
/// `-untimed` system).
fn ping_pong_ports(ping: bool) -> (aether::Subscriber, aether::Publisher) {
    let c = client();
    let (out_topic, in_topic) = if ping {
        ("lat-ping", "lat-pong")
    } else {
        ("lat-pong", "lat-ping")
    };
    let s = c
        .subscriber(in_topic, &sub_config())
        .unwrap_or_else(|e| fail("subscribe", e));
    let mut p = c.publisher(out_topic).unwrap_or_else(|e| fail("publisher", e));
    p.set_timestamps(!untimed(&env("AB_SYSTEM")).1);
    (s, p)
}

/// Every ping-pong's check of what came back: `size` bytes, numbered `i`
/// in the first eight.
pub(crate) fn check_echo(got: &[u8], size: usize, i: u64) {
    if got.len() != size || got.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) != Some(i) {
        fail("ping-pong", "echo out of order");
    }
}

/// Ping-pong: `ping` sends, waits for the echo, and times the round trip.
fn latency(ping: bool) {
    let (warmup, count, size) = (num("AB_WARMUP"), num("AB_COUNT"), num("AB_SIZE") as usize);
    let total = warmup + count;
    let watch = shared::Stopwatch::new();
    let mut samples = Vec::with_capacity(if ping { count as usize } else { 0 });
    let mut time = |i: u64, t0: u64| {
        if ping && i >= warmup {
            samples.push(watch.ns_since(t0) / 2);
        }
    };
    match untimed(&env("AB_SYSTEM")).0 {
        "aether-zc" => {
            // Zero-copy both ways: loan, write in place, commit; a borrowed
            // view, read in place (the pong copies it into its own loan), release.
            let (mut s, mut p) = ping_pong_ports(ping);
            ready_then_wait_for_go();
            let forever = Deadline::after(None);
            for i in 0..total {
                let t0 = watch.now();
                if ping {
                    let buf = p.loan(size).unwrap_or_else(|e| fail("loan", e));
                    buf[..8].copy_from_slice(&i.to_le_bytes());
                    p.commit(size).unwrap_or_else(|e| fail("commit", e));
                }
                let rec = s.receive_view(&forever).unwrap_or_else(|e| fail("receive_view", e));
                // SAFETY: the view's bytes lie in the mapped ring and stay there
                // until release_view (reliable topic: no publisher overwrites them).
                let data = unsafe { std::slice::from_raw_parts(rec.data, rec.len) };
                check_echo(data, size, i);
                if !ping {
                    let buf = p.loan(size).unwrap_or_else(|e| fail("loan", e));
                    buf.copy_from_slice(data);
                    p.commit(size).unwrap_or_else(|e| fail("commit", e));
                }
                s.release_view().unwrap_or_else(|e| fail("release_view", e));
                time(i, t0);
            }
        }
        "aether" => {
            let (mut s, mut p) = ping_pong_ports(ping);
            let mut msg = vec![0u8; size];
            let mut buf = vec![0u8; size.max(8)];
            // `poll`: the receiver waits in poll(2) on its pollable descriptor
            // (an eventfd), as an event loop would, and receives without waiting.
            let pollable = env("AB_WAIT") == "poll";
            let fd = match pollable {
                true => s.fd().unwrap_or_else(|e| fail("pollable descriptor", e)).as_raw_fd(),
                false => -1,
            };
            ready_then_wait_for_go();
            let forever = Deadline::after(None);
            let now = Deadline::after(Some(Duration::ZERO));
            for i in 0..total {
                let t0 = watch.now();
                if ping {
                    msg[..8].copy_from_slice(&i.to_le_bytes());
                    p.publish(&msg).unwrap_or_else(|e| fail("publish", e));
                }
                let r = if pollable {
                    loop {
                        match s.receive_into_deadline(&mut buf, &now) {
                            Err(e) if e.status == Status::Timeout => {
                                let mut pfd = libc::pollfd {
                                    fd,
                                    events: libc::POLLIN,
                                    revents: 0,
                                };
                                // SAFETY: one pollfd for a descriptor the subscriber keeps open.
                                unsafe { libc::poll(&mut pfd, 1, -1) };
                            }
                            r => break r.unwrap_or_else(|e| fail("receive", e)),
                        }
                    }
                } else {
                    s.receive_into_deadline(&mut buf, &forever)
                        .unwrap_or_else(|e| fail("receive", e))
                };
                check_echo(&buf[..r.len], size, i);
                if !ping {
                    p.publish(&buf[..r.len]).unwrap_or_else(|e| fail("publish", e));
                }
                time(i, t0);
            }
        }
        "cacheline" => {
            let page = SharedPage::from_inherited(num("AB_FD") as i32).unwrap_or_else(|e| fail("map", e));
            let x = page.u64_at(0);
            ready_then_wait_for_go();
            for i in 0..total {
                let t0 = watch.now();
                if ping {
                    x.store(2 * i + 1, Ordering::Release);
                    while x.load(Ordering::Acquire) != 2 * i + 2 {
                        std::hint::spin_loop();
                    }
                } else {
                    while x.load(Ordering::Acquire) != 2 * i + 1 {
                        std::hint::spin_loop();
                    }
                    x.store(2 * i + 2, Ordering::Release);
                }
                time(i, t0);
            }
        }
        "record" => {
            // The floor for handing over a 64-byte payload with a stamp: per
            // direction one ring-shaped record (stamp, 32-byte header, payload:
            // two cache lines), payload written before the stamp.
            let page = SharedPage::from_inherited(num("AB_FD") as i32).unwrap_or_else(|e| fail("map", e));
            let (to_pong, to_ping) = (page.record(RECORD_TO_PONG), page.record(RECORD_TO_PING));
            let (mine, theirs) = if ping { (to_pong, to_ping) } else { (to_ping, to_pong) };
            let mut msg = [0u8; 64];
            ready_then_wait_for_go();
            for i in 0..total {
                let t0 = watch.now();
                if ping {
                    msg[..8].copy_from_slice(&i.to_le_bytes());
                    mine.send(i + 1, &msg);
                }
                theirs.receive(i + 1, &mut msg);
                check_echo(&msg, 64, i);
                if !ping {
                    mine.send(i + 1, &msg);
                }
                time(i, t0);
            }
        }
        "futex" => {
            let page = SharedPage::from_inherited(num("AB_FD") as i32).unwrap_or_else(|e| fail("map", e));
            let (to_pong, to_ping) = (page.u32_at(0), page.u32_at(1));
            let (mine, theirs) = if ping { (to_pong, to_ping) } else { (to_ping, to_pong) };
            ready_then_wait_for_go();
            for i in 0..total {
                let t0 = watch.now();
                let want = (i + 1) as u32;
                if ping {
                    mine.store(want, Ordering::Release);
                    aether::sys::futex::wake_all(mine);
                }
                loop {
                    let v = theirs.load(Ordering::Acquire);
                    if v == want {
                        break;
                    }
                    aether::sys::futex::wait(theirs, v, None);
                }
                if !ping {
                    mine.store(want, Ordering::Release);
                    aether::sys::futex::wake_all(mine);
                }
                time(i, t0);
            }
        }
        "uds" => {
            let fd = num("AB_FD") as i32;
            let mut buf = vec![0u8; size];
            ready_then_wait_for_go();
            for i in 0..total {
                let t0 = watch.now();
                if ping {
                    buf[..8].copy_from_slice(&i.to_le_bytes());
                    shared::write_all(fd, &buf).unwrap_or_else(|e| fail("write", e));
                }
                shared::read_exact(fd, &mut buf).unwrap_or_else(|e| fail("read", e));
                if !ping {
                    shared::write_all(fd, &buf).unwrap_or_else(|e| fail("write", e));
                }
                time(i, t0);
            }
        }
        #[cfg(feature = "peers")]
        peer @ ("iceoryx2" | "zmq") => {
            crate::peers::latency(peer, &env("AB_WAIT"), ping, total, size, &watch, &mut time)
        }
        other => fail("unknown latency system", other),
    }
    if ping {
        report_latency(samples);
    } else {
        println!("RESULT done=1");
    }
}

/// What a zero-copy receiver reads of each message (`--touch`): its first
/// and last 8 bytes (`Head`: a receiver that looks at a header and hands
/// the payload on), or every byte (`All`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Touch {
    Head,
    All,
}

impl Touch {
    fn from_env() -> Touch {
        match std::env::var("AB_TOUCH").as_deref() {
            Ok("head") => Touch::Head,
            _ => Touch::All,
        }
    }

    /// Reads `data` as this mode says; returns a sum the caller keeps.
    pub(crate) fn read(self, data: &[u8]) -> u64 {
        match self {
            Touch::All => touch(data),
            Touch::Head => {
                let n = data.len();
                touch(&data[..n.min(8)]).wrapping_add(touch(&data[n.saturating_sub(8)..]))
            }
        }
    }
}

/// Sums a buffer eight bytes at a time: proof that every byte was read.
fn touch(data: &[u8]) -> u64 {
    let mut sum = 0u64;
    let chunks = data.chunks_exact(8);
    let rest: u64 = chunks.remainder().iter().map(|b| *b as u64).sum();
    for c in chunks {
        sum = sum.wrapping_add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    sum.wrapping_add(rest)
}

/// The hand-off baseline's shared area: AB_SLOTS slots of AB_STRIDE bytes
/// after a page whose lines 0 and 2 count the messages produced and consumed.
/// Each side keeps its own slot index and caches the other side's counter,
/// reloading it only when it must wait, as the ring's publisher caches its
/// gate: what is measured is the hand-off, not the bookkeeping.
struct Handoff {
    area: SharedPage,
    slots: u64,
    stride: usize,
}

impl Handoff {
    fn from_env(size: usize) -> Handoff {
        let (slots, stride) = (num("AB_SLOTS"), num("AB_STRIDE") as usize);
        assert!(
            slots > 0 && size <= stride,
            "handoff: {slots} slots of {stride} bytes for {size}"
        );
        let len = shared::PAGE + slots as usize * stride;
        let area = SharedPage::from_inherited_sized(num("AB_FD") as i32, len).unwrap_or_else(|e| fail("map", e));
        // Checks once that the last slot is inside the area.
        area.slot(slots as usize - 1, stride);
        Handoff { area, slots, stride }
    }

    /// The slot at `*index` (in 0..slots), whose `stride` bytes lie in the
    /// area (checked in `from_env`); moves `*index` on to the next.
    fn next_slot(&self, index: &mut usize) -> *mut u8 {
        let i = *index;
        *index = if i + 1 == self.slots as usize { 0 } else { i + 1 };
        self.area.slot_unchecked(i, self.stride)
    }

    /// Spins until the counter `c` reaches `want`; returns what it read.
    /// Fails after 60 s (a dead peer).
    fn wait_for(c: &std::sync::atomic::AtomicU64, want: u64) -> u64 {
        let start = now();
        let mut turns = 0u32;
        loop {
            let v = c.load(Ordering::Acquire);
            if v >= want {
                return v;
            }
            std::hint::spin_loop();
            turns = turns.wrapping_add(1);
            if turns.is_multiple_of(4096) && now() - start > 60_000_000_000 {
                fail("handoff", "the peer stopped for 60 s");
            }
        }
    }
}

/// Publishes AB_COUNT messages of AB_SIZE bytes as fast as it can.
fn source() {
    let (count, size) = (num("AB_COUNT"), num("AB_SIZE") as usize);
    let named = env("AB_SYSTEM");
    let (system, untimed) = untimed(&named);
    let start;
    match system {
        s if s == "aether" || s.starts_with("aether-zc") => {
            let c = client();
            let mut p = c.publisher(&env("AB_TOPIC")).unwrap_or_else(|e| fail("publisher", e));
            p.set_timeout(Some(Duration::from_secs(60)));
            p.set_timestamps(!untimed);
            if let Some(laps) = system.strip_prefix("aether-zc-") {
                // Another kind of large laps than the default's, to compare in one run.
                let laps = aether::LargeLaps::from_name(laps).unwrap_or_else(|| fail("large laps", laps));
                p.set_large_laps(laps);
            }
            let msg = vec![0x5au8; size];
            ready_then_wait_for_go();
            start = now();
            for i in 0..count {
                if system == "aether" {
                    p.publish(&msg).unwrap_or_else(|e| fail("publish", e));
                } else {
                    // Zero-copy: the message is written in place, every byte.
                    let buf = p.loan(size).unwrap_or_else(|e| fail("loan", e));
                    buf.fill(i as u8);
                    p.commit(size).unwrap_or_else(|e| fail("commit", e));
                }
            }
        }
        "handoff" => {
            // The floor for aether-zc: the same fill, into slots of a shared
            // area, each handed over by one counter store; no protocol at all.
            let h = Handoff::from_env(size);
            let (produced, consumed) = (h.area.u64_at(0), h.area.u64_at(2));
            // Messages below this may be written: the sink has consumed
            // everything a lap before them.
            let mut free_below = h.slots;
            let mut slot = 0;
            ready_then_wait_for_go();
            start = now();
            for i in 0..count {
                if i >= free_below {
                    free_below = Handoff::wait_for(consumed, i + 1 - h.slots) + h.slots;
                }
                // SAFETY: in the area (next_slot). Ours: the sink consumed this
                // slot's previous message (above) and reads it again only once
                // `produced` passes `i`.
                let buf = unsafe { std::slice::from_raw_parts_mut(h.next_slot(&mut slot), size) };
                buf.fill(i as u8);
                produced.store(i + 1, Ordering::Release);
            }
        }
        "uds" => {
            let fd = num("AB_FD") as i32;
            let msg = vec![0x5au8; size];
            ready_then_wait_for_go();
            start = now();
            for _ in 0..count {
                shared::write_all(fd, &msg).unwrap_or_else(|e| fail("write", e));
            }
        }
        #[cfg(feature = "peers")]
        peer @ ("iceoryx2" | "zmq") => {
            start = crate::peers::source(peer, count, size, num("AB_PEER_BUFFER") as usize, now);
        }
        other => fail("unknown source system", other),
    }
    let secs = (now() - start) as f64 / 1e9;
    println!("RESULT msgs={count} secs={secs}");
}

/// Receives until it has seen AB_COUNT messages (delivered + lost) or the
/// stream goes quiet; times from the first message to the last.
fn sink() {
    let (count, size) = (num("AB_COUNT"), num("AB_SIZE") as usize);
    // What its publisher sends makes no difference here.
    let named = env("AB_SYSTEM");
    let system = untimed(&named).0;
    // Read once a message: the TSC costs less than the clock (a third, here).
    let watch = shared::Stopwatch::new();
    let (mut first, mut last, mut got, mut lost, mut sum) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let touch_mode = Touch::from_env();
    match system {
        s if s == "aether" || s.starts_with("aether-zc") => {
            let c = client();
            let mut s = c
                .subscriber(&env("AB_TOPIC"), &sub_config())
                .unwrap_or_else(|e| fail("subscribe", e));
            let mut buf = vec![0u8; size];
            ready_then_wait_for_go();
            while got + s.lost() < count {
                let deadline = Deadline::after(Some(Duration::from_secs(if got == 0 { 30 } else { 2 })));
                if system == "aether" {
                    match s.receive_into_deadline(&mut buf, &deadline) {
                        Ok(_) => {}
                        Err(e) if e.status == Status::Timeout => break,
                        Err(e) => fail("receive", e),
                    }
                } else {
                    match s.receive_view(&deadline) {
                        Ok(rec) => {
                            // SAFETY: the view's bytes lie in the mapped ring and stay
                            // there until release_view (reliable topic) or are checked by it.
                            let data = unsafe { std::slice::from_raw_parts(rec.data, rec.len) };
                            sum = sum.wrapping_add(touch_mode.read(data));
                            match s.release_view() {
                                Ok(_)
                                | Err(aether::Error {
                                    status: Status::Overwritten,
                                    ..
                                }) => {}
                                Err(e) => fail("release", e),
                            }
                        }
                        Err(e) if e.status == Status::Timeout => break,
                        Err(e) => fail("receive", e),
                    }
                }
                last = watch.now();
                if got == 0 {
                    first = last;
                }
                got = s.delivered();
            }
            lost = s.lost();
        }
        "handoff" => {
            let h = Handoff::from_env(size);
            let (produced, consumed) = (h.area.u64_at(0), h.area.u64_at(2));
            let mut ready_below = 0;
            let mut slot = 0;
            ready_then_wait_for_go();
            while got < count {
                if got >= ready_below {
                    ready_below = Handoff::wait_for(produced, got + 1);
                }
                // SAFETY: in the area (next_slot). Ours: produced (above), and
                // not written again until `consumed` passes `got`.
                let data = unsafe { std::slice::from_raw_parts(h.next_slot(&mut slot), size) };
                sum = sum.wrapping_add(touch_mode.read(data));
                consumed.store(got + 1, Ordering::Release);
                last = watch.now();
                if got == 0 {
                    first = last;
                }
                got += 1;
            }
        }
        "uds" => {
            let fd = num("AB_FD") as i32;
            let mut buf = vec![0u8; size];
            ready_then_wait_for_go();
            while got < count {
                shared::read_exact(fd, &mut buf).unwrap_or_else(|e| fail("read", e));
                last = watch.now();
                if got == 0 {
                    first = last;
                }
                got += 1;
            }
        }
        #[cfg(feature = "peers")]
        peer @ ("iceoryx2" | "zmq") => {
            (got, first, last, sum) =
                crate::peers::sink(peer, count, size, num("AB_PEER_BUFFER") as usize, touch_mode, &watch);
            // Whatever did not arrive was lost (both are set up lossless).
            lost = count - got;
        }
        other => fail("unknown sink system", other),
    }
    black_box(sum);
    // The first message's own transfer is not inside [first, last]: count got - 1 intervals.
    let secs = watch.ns(last.saturating_sub(first)) as f64 / 1e9;
    println!(
        "RESULT msgs={got} lost={lost} secs={secs} intervals={}",
        got.saturating_sub(1)
    );
}
