//! Ping-pong through two rings between two forked processes, straight on the
//! ring types (no daemon, no client layer): the ring's own share of
//! `aether-bench`'s latency. Rounds alternate with a one-cache-line ping-pong
//! between the same two processes, so each ring figure has its floor beside
//! it (mid-means: the mean of the middle half of the samples).
//! `cargo run --release -p aether --example pingpong [rounds]` (pins to
//! CPUs 0 and 1; one-way = round trip / 2).
mod common;

use aether::local::LocalTopic;
use aether::ring::{Deadline, Reader, WaitConfig, WaitStrategy};
use aether::segment::Policy;
use aether::sys::tsc::rdtsc;
use common::small_segment;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const WARMUP: u64 = 5_000;
const COUNT: u64 = 50_000;
/// A round that takes longer than this means the other process is gone.
const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One shared cache line, mapped before the fork.
fn shared_line() -> &'static AtomicU64 {
    // SAFETY: a fresh anonymous shared mapping of one page; never unmapped
    // (the example exits), and only accessed as one atomic at its start.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        &*p.cast::<AtomicU64>()
    }
}

struct Rings {
    from_ping: Reader,
    from_pong: Reader,
    ping: Arc<LocalTopic>,
    pong: Arc<LocalTopic>,
}

fn rings(policy: Policy) -> Rings {
    let (ping, pong) = (small_segment("pp", policy), small_segment("pp", policy));
    // Readers first, so that each starts before the first message.
    let spin = WaitConfig {
        strategy: WaitStrategy::Spin,
        spin: 0,
    };
    let mut from_pong = pong.reader(0).expect("reader");
    let mut from_ping = ping.reader(0).expect("reader");
    from_pong.wait = spin;
    from_ping.wait = spin;
    Rings {
        from_ping,
        from_pong,
        ping,
        pong,
    }
}

/// Echoes `COUNT + WARMUP` messages (the child side of one round).
fn echo(rings: &mut Rings) {
    let deadline = Deadline::after(Some(PEER_TIMEOUT));
    let mut buf = [0u8; 64];
    let mut w = rings.pong.writer(None);
    for _ in 0..WARMUP + COUNT {
        let (n, _, _) = rings.from_ping.receive_into(&mut buf, &deadline).expect("receive");
        w.publish(&buf[..n]).expect("publish");
    }
}

/// Times one round through the rings; returns the one-way mid-mean in ticks.
fn ring_round(rings: &mut Rings) -> f64 {
    let deadline = Deadline::after(Some(PEER_TIMEOUT));
    let mut buf = [0u8; 64];
    let msg = [7u8; 64];
    let mut w = rings.ping.writer(None);
    let mut samples = Vec::with_capacity(COUNT as usize);
    for i in 0..WARMUP + COUNT {
        let t0 = rdtsc();
        w.publish(&msg).expect("publish");
        rings.from_pong.receive_into(&mut buf, &deadline).expect("receive");
        if i >= WARMUP {
            samples.push((rdtsc() - t0) / 2);
        }
    }
    mid_mean(samples)
}

/// One round of the cache-line ping-pong; the pinger returns its one-way mid-mean.
/// `base` is where the line's value stands at the start (rounds go on from
/// each other, so that no side has to reset it).
fn line_round(x: &AtomicU64, ping: bool, base: u64) -> f64 {
    let mut samples = Vec::with_capacity(if ping { COUNT as usize } else { 0 });
    for i in 0..WARMUP + COUNT {
        let t0 = rdtsc();
        if ping {
            x.store(base + 2 * i + 1, Ordering::Release);
            spin_until(|| x.load(Ordering::Acquire) == base + 2 * i + 2);
            if i >= WARMUP {
                samples.push((rdtsc() - t0) / 2);
            }
        } else {
            spin_until(|| x.load(Ordering::Acquire) == base + 2 * i + 1);
            x.store(base + 2 * i + 2, Ordering::Release);
        }
    }
    if ping {
        mid_mean(samples)
    } else {
        0.0
    }
}

/// Spins until `done`; panics after [`PEER_TIMEOUT`] (the other process died).
fn spin_until(done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    let mut turns = 0u32;
    while !done() {
        std::hint::spin_loop();
        turns = turns.wrapping_add(1);
        if turns.is_multiple_of(4096) && start.elapsed() > PEER_TIMEOUT {
            panic!("the other process stopped answering");
        }
    }
}

/// The mean of the middle half of the samples: as robust as the median, and
/// finer than this VM's TSC, which moves in steps of ~13 ticks (5 ns).
fn mid_mean(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    let mid = &v[v.len() / 4..v.len() * 3 / 4];
    mid.iter().sum::<u64>() as f64 / mid.len() as f64
}

fn main() {
    // Timed with the TSC: finer than this VM's clock, and ratios need no unit.
    let tpn = aether::sys::tsc::ticks_per_ns(std::time::Duration::from_millis(50));
    let rounds: usize = std::env::args().nth(1).map_or(5, |s| s.parse().expect("rounds"));
    assert!(rounds > 0, "at least one round");
    let policies = [Policy::Reliable, Policy::Lossy];
    // Every round's rings exist before the fork; each side uses its half.
    let all: Vec<Vec<Rings>> = (0..rounds)
        .map(|_| policies.iter().map(|&p| rings(p)).collect())
        .collect();
    let line = shared_line();
    // A second line for the two sides to agree that a round starts together.
    let go = shared_line();
    // SAFETY: fork in a single-threaded program; the child only uses what it inherited.
    let parent = std::process::id();
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
    let ping = child != 0;
    if !ping {
        // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number changes only
        // this process's own death signal. A spinning child must not outlive
        // a parent that died (its output piped to `head`, say).
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // The parent may have died before the prctl: then nobody signals us.
        if std::os::unix::process::parent_id() != parent {
            // SAFETY: leaving at once, as the parent is gone.
            unsafe { libc::_exit(1) };
        }
    }
    pin(if ping { 0 } else { 1 });
    let mut step = 0u64;
    let mut base = 0u64;
    let sync = |step: &mut u64| {
        *step += 1;
        if ping {
            go.store(*step, Ordering::SeqCst);
        } else {
            spin_until(|| go.load(Ordering::SeqCst) >= *step);
        }
    };
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); policies.len()];
    for round in all.into_iter() {
        for (k, mut rings) in round.into_iter().enumerate() {
            sync(&mut step);
            let floor = line_round(line, ping, base);
            base += 2 * (WARMUP + COUNT);
            sync(&mut step);
            if ping {
                let ring = ring_round(&mut rings);
                println!(
                    "{:?}: ring {:.1} ns, cacheline {:.1} ns, ratio {:.2}",
                    policies[k],
                    ring / tpn,
                    floor / tpn,
                    ring / floor
                );
                ratios[k].push(ring / floor);
            } else {
                echo(&mut rings);
                // The rings' readers hold the parent's slots too: leave them be.
                std::mem::forget(rings);
            }
        }
    }
    if !ping {
        // SAFETY: leaving the child without running the parent's destructors
        // (the readers' slots are the parent's too).
        unsafe { libc::_exit(0) };
    }
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    for (k, r) in ratios.iter_mut().enumerate() {
        r.sort_by(f64::total_cmp);
        println!(
            "{:?}: median ratio {:.2} over {rounds} rounds",
            policies[k],
            r[r.len() / 2]
        );
    }
}
