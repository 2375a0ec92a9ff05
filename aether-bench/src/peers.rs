//! The peers a user would pick instead of Aether, measured as Aether is
//! (separate processes, same pinning, sizes and rounds), behind the cargo
//! feature `peers` so that the default build stays lean:
//!
//! - `iceoryx2` (0.10, `ipc::Service`, publish/subscribe over `[u8]`):
//!   latency with a spinning receiver (`spin`) or one woken through an
//!   iceoryx2 event service (`event`: the publisher notifies after sending,
//!   the receiver blocks in `Listener::blocking_wait`); throughput
//!   lossless (no safe overflow, `RetryUntilDelivered`), loan, write every
//!   byte, send; the receiver reads per `--touch`.
//! - `zmq` (ZeroMQ 4.3 through the `zmq` crate, `ipc://`): latency REQ/REP
//!   (blocking, its only mode); throughput PUB/SUB lossless, an XPUB socket
//!   with `ZMQ_XPUB_NODROP` (a send at the high-water mark waits in
//!   `zmq_poll` for room instead of dropping).
//!
//! Each child learns its rendezvous names from `AB_PEER` (unique per run).

use crate::roles::{check_echo, fail, ready_then_wait_for_go, Touch};
use crate::shared::Stopwatch;
use iceoryx2::prelude::*;
use std::time::Duration;

type Ipc = ipc::Service;
type Factory = iceoryx2::service::port_factory::publish_subscribe::PortFactory<Ipc, [u8], ()>;

fn service_name(what: &str) -> ServiceName {
    let name = format!(
        "{}/{what}",
        std::env::var("AB_PEER").unwrap_or_else(|_| fail("peers", "AB_PEER not set"))
    );
    ServiceName::new(&name).unwrap_or_else(|e| fail("iceoryx2 service name", format!("{e:?}")))
}

fn zmq_endpoint(what: &str) -> String {
    let dir = std::env::var("AB_PEER_DIR").unwrap_or_else(|_| fail("peers", "AB_PEER_DIR not set"));
    format!("ipc://{dir}/zmq-{what}.ipc")
}

fn node() -> Node<Ipc> {
    // (its warning that no config file was found would interleave with the tables)
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .create::<Ipc>()
        .unwrap_or_else(|e| fail("iceoryx2 node", format!("{e:?}")))
}

/// A `[u8]` publish/subscribe service whose subscriber holds `buffer`
/// messages (1 to 1024), lossless: a full buffer makes the publisher retry.
fn pubsub(node: &Node<Ipc>, what: &str, buffer: usize) -> Factory {
    node.service_builder(&service_name(what))
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(buffer.clamp(1, 1024))
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1)
        .open_or_create()
        .unwrap_or_else(|e| fail("iceoryx2 service", format!("{e:?}")))
}

type Publisher = iceoryx2::port::publisher::Publisher<Ipc, [u8], ()>;
type Subscriber = iceoryx2::port::subscriber::Subscriber<Ipc, [u8], ()>;

fn publisher(f: &Factory, size: usize) -> Publisher {
    f.publisher_builder()
        .initial_max_slice_len(size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .unwrap_or_else(|e| fail("iceoryx2 publisher", format!("{e:?}")))
}

fn subscriber(f: &Factory) -> Subscriber {
    f.subscriber_builder()
        .create()
        .unwrap_or_else(|e| fail("iceoryx2 subscriber", format!("{e:?}")))
}

/// Loans `size` bytes uninitialized (no zeroing: `loan_slice` would write
/// every byte once more), writes byte `k` as `byte(k)`, sends.
fn send(p: &Publisher, size: usize, byte: impl FnMut(usize) -> u8) {
    p.loan_slice_uninit(size)
        .unwrap_or_else(|e| fail("iceoryx2 loan", format!("{e:?}")))
        .write_from_fn(byte)
        .send()
        .unwrap_or_else(|e| fail("iceoryx2 send", format!("{e:?}")));
}

/// One ping-pong of `total` round trips; `time(i, t0)` records each.
pub fn latency(
    system: &str,
    wait: &str,
    ping: bool,
    total: u64,
    size: usize,
    watch: &Stopwatch,
    time: &mut dyn FnMut(u64, u64),
) {
    match system {
        "iceoryx2" => {
            let node = node();
            let (out_name, in_name) = if ping { ("ping", "pong") } else { ("pong", "ping") };
            let (out_f, in_f) = (pubsub(&node, out_name, 2), pubsub(&node, in_name, 2));
            let (p, s) = (publisher(&out_f, size), subscriber(&in_f));
            // `event`: the receiver sleeps until the sender's notifier wakes it.
            let events = (wait == "event").then(|| {
                let ev = |what: &str| {
                    node.service_builder(&service_name(&format!("{what}-event")))
                        .event()
                        .open_or_create()
                        .unwrap_or_else(|e| fail("iceoryx2 event service", format!("{e:?}")))
                };
                let notifier = ev(out_name)
                    .notifier_builder()
                    .create()
                    .unwrap_or_else(|e| fail("iceoryx2 notifier", format!("{e:?}")));
                let listener = ev(in_name)
                    .listener_builder()
                    .create()
                    .unwrap_or_else(|e| fail("iceoryx2 listener", format!("{e:?}")));
                (notifier, listener)
            });
            ready_then_wait_for_go();
            let mut echo = vec![0u8; size];
            for i in 0..total {
                let t0 = watch.now();
                let notify = || {
                    if let Some((n, _)) = &events {
                        n.notify().unwrap_or_else(|e| fail("iceoryx2 notify", format!("{e:?}")));
                    }
                };
                if ping {
                    let head = i.to_le_bytes();
                    send(&p, size, |k| if k < 8 { head[k] } else { 0 });
                    notify();
                }
                let sample = loop {
                    if let Some(sample) = s
                        .receive()
                        .unwrap_or_else(|e| fail("iceoryx2 receive", format!("{e:?}")))
                    {
                        break sample;
                    }
                    match &events {
                        Some((_, l)) => {
                            l.blocking_wait(|_| {})
                                .unwrap_or_else(|e| fail("iceoryx2 wait", format!("{e:?}")));
                        }
                        None => std::hint::spin_loop(),
                    }
                };
                check_echo(sample.payload(), size, i);
                if !ping {
                    echo.copy_from_slice(sample.payload());
                    drop(sample);
                    p.loan_slice_uninit(size)
                        .unwrap_or_else(|e| fail("iceoryx2 loan", format!("{e:?}")))
                        .write_from_slice(&echo)
                        .send()
                        .unwrap_or_else(|e| fail("iceoryx2 send", format!("{e:?}")));
                    notify();
                }
                time(i, t0);
            }
        }
        "zmq" => {
            let ctx = zmq::Context::new();
            let sock = ctx
                .socket(if ping { zmq::REQ } else { zmq::REP })
                .unwrap_or_else(|e| fail("zmq socket", e));
            let endpoint = zmq_endpoint("latency");
            if ping {
                sock.connect(&endpoint).unwrap_or_else(|e| fail("zmq connect", e));
            } else {
                sock.bind(&endpoint).unwrap_or_else(|e| fail("zmq bind", e));
            }
            sock.set_linger(0).unwrap_or_else(|e| fail("zmq linger", e));
            let mut buf = vec![0u8; size];
            ready_then_wait_for_go();
            for i in 0..total {
                let t0 = watch.now();
                if ping {
                    buf[..8].copy_from_slice(&i.to_le_bytes());
                    sock.send(&buf[..], 0).unwrap_or_else(|e| fail("zmq send", e));
                }
                let n = sock.recv_into(&mut buf, 0).unwrap_or_else(|e| fail("zmq recv", e));
                // (n: the message's length, which may exceed the buffer)
                check_echo(buf.get(..n).unwrap_or(&[]), size, i);
                if !ping {
                    sock.send(&buf[..], 0).unwrap_or_else(|e| fail("zmq send", e));
                }
                time(i, t0);
            }
        }
        other => fail("unknown peer", other),
    }
}

/// The throughput source: `count` messages of `size` bytes, each written
/// in full; returns when the last is sent, with the start time (ns).
pub fn source(system: &str, count: u64, size: usize, buffer: usize, now: fn() -> u64) -> u64 {
    match system {
        "iceoryx2" => {
            let node = node();
            let f = pubsub(&node, "tput", buffer);
            let p = publisher(&f, size);
            ready_then_wait_for_go();
            let start = now();
            for i in 0..count {
                send(&p, size, |_| i as u8);
            }
            // The sink may still be reading what the last sends delivered
            // (at most a buffer's worth): leave it the time to.
            std::thread::sleep(Duration::from_millis(300));
            start
        }
        "zmq" => {
            let ctx = zmq::Context::new();
            let mut sock = ctx.socket(zmq::XPUB).unwrap_or_else(|e| fail("zmq socket", e));
            let nodrop: i32 = 1;
            // SAFETY: a live socket; ZMQ_XPUB_NODROP takes an int, passed by
            // pointer with its size (the zmq crate has no setter for it).
            let rc = unsafe {
                zmq_sys::zmq_setsockopt(
                    sock.as_mut_ptr(),
                    zmq_sys::ZMQ_XPUB_NODROP as i32,
                    (&nodrop as *const i32).cast(),
                    std::mem::size_of::<i32>(),
                )
            };
            if rc != 0 {
                fail("zmq XPUB_NODROP", std::io::Error::last_os_error());
            }
            sock.set_linger(-1).unwrap_or_else(|e| fail("zmq linger", e));
            sock.bind(&zmq_endpoint("tput")).unwrap_or_else(|e| fail("zmq bind", e));
            // The subscription arrives as a message: the sink is connected.
            sock.recv_bytes(0).unwrap_or_else(|e| fail("zmq subscription", e));
            let msg = vec![0x5au8; size];
            ready_then_wait_for_go();
            let start = now();
            for _ in 0..count {
                loop {
                    match sock.send(&msg[..], zmq::DONTWAIT) {
                        Ok(()) => break,
                        Err(zmq::Error::EAGAIN) => {
                            // At the high-water mark: wait for room (NODROP).
                            sock.poll(zmq::POLLOUT, 1000).unwrap_or_else(|e| fail("zmq poll", e));
                        }
                        Err(e) => fail("zmq send", e),
                    }
                }
            }
            start
        }
        other => fail("unknown peer", other),
    }
}

/// The throughput sink: receives `count` messages (or until 2 s of
/// silence); returns (received, first, last (Stopwatch ticks), checksum).
pub fn sink(
    system: &str,
    count: u64,
    size: usize,
    buffer: usize,
    touch: Touch,
    watch: &Stopwatch,
) -> (u64, u64, u64, u64) {
    let (mut got, mut first, mut last, mut sum) = (0u64, 0u64, 0u64, 0u64);
    // Gives up after 30 s without a first message, or 2 s without the next.
    let quiet_limit = |got: u64| if got == 0 { 30_000_000_000 } else { 2_000_000_000 };
    match system {
        "iceoryx2" => {
            let node = node();
            let f = pubsub(&node, "tput", buffer);
            let s = subscriber(&f);
            ready_then_wait_for_go();
            let (mut seen, mut spins) = (crate::roles::now(), 0u32);
            while got < count {
                match s
                    .receive()
                    .unwrap_or_else(|e| fail("iceoryx2 receive", format!("{e:?}")))
                {
                    Some(sample) => sum = sum.wrapping_add(touch.read(sample.payload())),
                    None => {
                        spins = spins.wrapping_add(1);
                        if spins.is_multiple_of(4096) && crate::roles::now() - seen > quiet_limit(got) {
                            break;
                        }
                        std::hint::spin_loop();
                        continue;
                    }
                }
                seen = crate::roles::now();
                last = watch.now();
                if got == 0 {
                    first = last;
                }
                got += 1;
            }
        }
        "zmq" => {
            let ctx = zmq::Context::new();
            let sock = ctx.socket(zmq::SUB).unwrap_or_else(|e| fail("zmq socket", e));
            sock.set_subscribe(b"").unwrap_or_else(|e| fail("zmq subscribe", e));
            sock.set_rcvtimeo(2000).unwrap_or_else(|e| fail("zmq rcvtimeo", e));
            sock.connect(&zmq_endpoint("tput"))
                .unwrap_or_else(|e| fail("zmq connect", e));
            let mut buf = vec![0u8; size];
            ready_then_wait_for_go();
            let started = crate::roles::now();
            while got < count {
                match sock.recv_into(&mut buf, 0) {
                    Ok(n) if n == size => {}
                    Ok(n) => fail("zmq recv", format!("{n} bytes, not {size}")),
                    // (the socket's 2 s receive timeout)
                    Err(zmq::Error::EAGAIN) if got == 0 && crate::roles::now() - started < quiet_limit(0) => continue,
                    Err(zmq::Error::EAGAIN) => break,
                    Err(e) => fail("zmq recv", e),
                }
                last = watch.now();
                if got == 0 {
                    first = last;
                }
                got += 1;
            }
        }
        other => fail("unknown peer", other),
    }
    (got, first, last, sum)
}
