//! A Rust client that carries on across daemon restarts (the Rust side of
//! scripts/restart-loop.sh; c-tests/restart_client.c is the C side, with
//! the same behaviour and output).
//!
//! Usage: restart_client SOCKET TOPIC futex|spin copy|zerocopy
//!
//! Loops: publish message k on TOPIC (reliable; made if missing), receive
//! it back, check it. A call failing with `Unavailable` (the daemon died)
//! is reported with how long it took (`down MS`), then the subscriber and
//! publisher are reopened, retrying every 20 ms (`up`). Prints `ok N` after
//! 200 round trips (from the start and from each `up`), then every 100000;
//! any other error ends it with status 1; SIGTERM with 0.

use aether::ring::Deadline;
use aether::{Client, Delivery, Policy, Status, SubscriberConfig, TopicParams, WaitConfig, WaitStrategy};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5
        || !["futex", "spin"].contains(&args[3].as_str())
        || !["copy", "zerocopy"].contains(&args[4].as_str())
    {
        eprintln!("usage: restart_client SOCKET TOPIC futex|spin copy|zerocopy");
        std::process::exit(2);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_term as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    let (socket, topic, zerocopy) = (Path::new(&args[1]), args[2].as_str(), args[4] == "zerocopy");
    let fail = |what: &str, e: aether::Error| -> ! {
        say(format!("error {what}: {e}"));
        std::process::exit(1)
    };
    let client = Client::connect(Some(socket)).unwrap_or_else(|e| fail("connect", e));
    let params = TopicParams {
        policy: Policy::Reliable,
        ring_size: 1 << 16,
        max_message: 64,
        ..TopicParams::default()
    };
    match client.create_topic(topic, &params) {
        Err(e) if e.status != Status::Exists => fail("create", e),
        _ => {}
    }
    let strategy = if args[3] == "spin" {
        WaitStrategy::Spin
    } else {
        WaitStrategy::Futex
    };
    let cfg = SubscriberConfig {
        wait: WaitConfig { strategy, spin: 2000 },
        abandon_timeout: Duration::from_millis(100),
        delivery: Delivery::Shm,
        ..SubscriberConfig::default()
    };
    let mut sub = client.subscriber(topic, &cfg).unwrap_or_else(|e| fail("subscribe", e));
    let mut publ = client.publisher(topic).unwrap_or_else(|e| fail("publish", e));
    drop(client);
    say("ready".into());
    let (mut k, mut ok, mut since_up) = (0u64, 0u64, 0u64);
    let mut got = [0u8; 64];
    while !STOP.load(Ordering::SeqCst) {
        let msg = format!("{topic} {k}");
        let t0 = Instant::now();
        let sent = if zerocopy {
            publ.loan(msg.len())
                .map(|buf| buf.copy_from_slice(msg.as_bytes()))
                .and_then(|()| publ.commit(msg.len()))
        } else {
            publ.publish(msg.as_bytes())
        };
        let received = sent.map_err(|e| ("publish", e)).and_then(|_| {
            let two_s = Some(Duration::from_secs(2));
            let r = if zerocopy {
                sub.receive_view(&Deadline::after(two_s)).and_then(|rec| {
                    let n = rec.len.min(got.len());
                    // SAFETY: the view's bytes stay valid until release_view.
                    got[..n].copy_from_slice(unsafe { std::slice::from_raw_parts(rec.data, n) });
                    sub.release_view().map(|_| n)
                })
            } else {
                sub.receive_into(&mut got, two_s).map(|r| r.len)
            };
            r.map_err(|e| ("receive", e))
        });
        match received {
            Ok(n) if got[..n] == *msg.as_bytes() => {}
            Ok(n) => {
                say(format!("error message {k}: got {}", String::from_utf8_lossy(&got[..n])));
                std::process::exit(1);
            }
            Err((what, e)) if e.status == Status::Unavailable => {
                say(format!("down {} {what}", t0.elapsed().as_millis()));
                while !STOP.load(Ordering::SeqCst) && sub.reopen().is_err() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                while !STOP.load(Ordering::SeqCst) && publ.reopen().is_err() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                say("up".into());
                since_up = 0;
                continue;
            }
            Err((what, e)) => fail(what, e),
        }
        k += 1;
        ok += 1;
        since_up += 1;
        if since_up == 200 || ok.is_multiple_of(100_000) {
            say(format!("ok {ok}"));
        }
    }
    drop((publ, sub));
    say(format!("done {ok}"));
}
