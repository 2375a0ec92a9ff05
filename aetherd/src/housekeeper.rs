//! The housekeeper thread: notices clients whose process has died even when
//! their socket stays open (inherited by a child), and samples topic rates.

use crate::state::State;
use aether::sys::poll_one;
use nix::poll::PollFlags;
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PERIOD: Duration = Duration::from_millis(100);

pub(crate) fn run(state: &Mutex<State>, socket: &std::path::Path) {
    let mut rounds = 0u32;
    loop {
        std::thread::sleep(PERIOD);
        rounds += 1;
        if rounds.is_multiple_of(10) {
            crate::admin::server::sweep_dead_requesters(socket);
        }
        let mut s = state.lock().expect("state lock");
        if s.draining {
            return;
        }
        // A pidfd becomes readable when its process exits.
        let mut dead = Vec::new();
        for (id, c) in &s.clients {
            if let Some(fd) = &c.pidfd {
                if !poll_one(fd.as_fd(), PollFlags::POLLIN, 0).is_empty() {
                    dead.push((*id, c.who.cred.pid));
                }
            }
        }
        for (id, pid) in dead {
            if let Some(c) = s.clients.get_mut(&id) {
                c.pidfd = None; // count once
                                // Its thread sees the connection end and frees its slots.
                c.conn.shutdown();
                s.dead_clients += 1;
                log::info!("client {id} (pid {pid}) died; releasing what it held");
                probe::probe!(aetherd, client_dead, id, pid);
            }
        }
        // Rates: messages per second since the last sample, about once a second.
        let now = Instant::now();
        for t in s.topics.values_mut() {
            // Last activity of each subscriber: when its delivered count last moved.
            for (a, c) in t.activity.iter_mut().zip(&t.cursors) {
                if let Some(c) = c {
                    let d = c.page.line().delivered.load(std::sync::atomic::Ordering::Relaxed);
                    if d != a.0 {
                        *a = (d, now);
                    }
                }
            }
            let last = t.rate;
            let dt = now.duration_since(last.at).as_secs_f64();
            if dt >= 1.0 {
                let tail = t.seg.tail();
                let published = tail.hi.load(std::sync::atomic::Ordering::Acquire);
                let ring_bytes = tail.lo.load(std::sync::atomic::Ordering::Acquire);
                t.rate = crate::state::Rate {
                    published,
                    ring_bytes,
                    at: now,
                    msgs_per_s: published.saturating_sub(last.published) as f64 / dt,
                    bytes_per_s: ring_bytes.saturating_sub(last.ring_bytes) as f64 / dt,
                };
            }
        }
        // Subscribers that lost messages since the last round: tell their clients.
        crate::mqueue::report_lag(&mut s);
    }
}
