//! In-process tests of the ring protocol: many publisher threads, lossy
//! laps, wrap-around, abandoned claims, overwritten views and garbage.
//! (Cross-process tests live in aetherd/tests.)

use aether::local::LocalTopic;
use aether::ring::{Deadline, LargeLaps, WaitConfig, WaitStrategy, LARGE_LAP, LARGE_RECORD};
use aether::segment::{wake_all, Policy, Segment, TopicParams};
use aether::Status;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A topic private to one test (sealed memfds: nothing to clean up).
fn segment(policy: Policy, ring_size: u64, max_message: u64) -> Arc<LocalTopic> {
    let params = TopicParams {
        policy,
        ring_size,
        max_message,
        max_subscribers: 8,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    };
    Arc::new(LocalTopic::create("t", &params).expect("create the topic"))
}

/// Message `i`: its index in the first 8 bytes, then a pattern of `i`.
fn message(i: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|k| (i as usize).wrapping_mul(31).wrapping_add(k) as u8)
        .collect();
    if len >= 8 {
        v[..8].copy_from_slice(&i.to_le_bytes());
    }
    v
}

fn size_of_msg(i: u64, max: usize) -> usize {
    1 + (i as usize).wrapping_mul(7919) % max
}

/// `full` rounds, or a few under Miri (`scripts/sanitizers.sh`), which
/// interprets every step and checks each access.
fn rounds(full: u64) -> u64 {
    if cfg!(miri) {
        (full / 50).max(20)
    } else {
        full
    }
}

fn soon() -> Deadline {
    Deadline::after(Some(Duration::from_secs(10)))
}

#[test]
fn single_publisher_round_trip_with_wraps() {
    let seg = segment(Policy::Reliable, 8192, 1000);
    let mut w = seg.writer(None);
    let mut r = seg.reader(0).unwrap();
    let mut buf = vec![0u8; 1000];
    let n = rounds(5000);
    for i in 0..n {
        let m = message(i, size_of_msg(i, 1000));
        assert_eq!(w.publish(&m).unwrap(), i);
        let (len, seq, ts) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!((seq, &buf[..len]), (i, &m[..]));
        assert!(ts > 0);
    }
    assert_eq!((r.delivered(), r.lost()), (n, 0));
}

/// Message `i` of the large-record tests: mostly large, one in three
/// small; the sizes vary within each kind.
fn large_or_small(i: u64, max: usize) -> usize {
    if i.is_multiple_of(3) {
        1 + (i as usize * 37) % 900
    } else {
        max - (i as usize * 131) % 20_000
    }
}

/// A 1 MiB ring of messages up to 64 KiB, its reader, and a writer asking
/// for short laps.
fn short_laps(policy: Policy) -> (Arc<LocalTopic>, aether::ring::Reader, aether::ring::Writer) {
    let seg = segment(policy, 1 << 20, 65536);
    let r = seg.reader(0).unwrap();
    let mut w = seg.writer(None);
    w.set_large_laps(LargeLaps::Short);
    (seg, r, w)
}

/// Large records (32 KiB and up) keep to the start of each lap while their
/// subscriber keeps up, in short laps and by default (caught-up laps: the
/// subscriber has read everything at each claim here); small ones go
/// anywhere; all arrive intact and in order.
#[test]
fn large_records_keep_to_the_lap_start_while_the_subscriber_keeps_up() {
    let (ring, max) = (1u64 << 20, 65536usize);
    for laps in [LargeLaps::Short, LargeLaps::CaughtUp] {
        let seg = segment(Policy::Reliable, ring, max as u64);
        let mut r = seg.reader(0).unwrap();
        let mut w = seg.writer(None);
        if laps == LargeLaps::Short {
            w.set_large_laps(laps);
        }
        assert_eq!(w.large_laps(), laps, "caught-up laps are the default");
        let mut buf = vec![0u8; max];
        let n = rounds(300);
        for i in 0..n {
            let m = message(i, large_or_small(i, max));
            w.publish(&m).unwrap();
            let pos = r.next(&soon()).unwrap().pos;
            let (got, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
            assert_eq!((seq, &buf[..got]), (i, &m[..]));
            let stride = aether::ring::stride_for(got);
            if stride >= LARGE_RECORD {
                assert!(
                    pos % ring < (4 * stride).max(LARGE_LAP),
                    "{laps:?}: message {i} of {got} bytes at {} into its lap",
                    pos % ring
                );
            }
        }
        assert_eq!((r.delivered(), r.lost()), (n, 0));
    }
}

/// Whatever the laps, messages reach a subscriber slower than their
/// publisher (which waits for it, at a lap's end as anywhere else) intact
/// and in order; in whole laps large records use the whole ring.
#[test]
fn large_records_reach_a_slow_subscriber_intact_in_any_laps() {
    let (ring, max) = (1u64 << 20, 65536usize);
    for laps in [
        LargeLaps::Short,
        LargeLaps::Whole,
        LargeLaps::Measured,
        LargeLaps::CaughtUp,
    ] {
        let seg = segment(Policy::Reliable, ring, max as u64);
        let mut r = seg.reader(0).unwrap();
        let n = rounds(3000);
        let publisher = {
            let seg = Arc::clone(&seg);
            std::thread::spawn(move || {
                let mut w = seg.writer(None);
                w.set_large_laps(laps);
                w.timeout = Some(Duration::from_secs(30));
                for i in 0..n {
                    assert_eq!(w.publish(&message(i, large_or_small(i, max))).unwrap(), i);
                }
            })
        };
        let (mut buf, mut farthest) = (vec![0u8; max], 0);
        for i in 0..n {
            let pos = r.next(&soon()).unwrap().pos;
            let (got, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
            assert_eq!(
                (seq, &buf[..got]),
                (i, &message(i, large_or_small(i, max))[..]),
                "{laps:?}"
            );
            if aether::ring::stride_for(got) >= LARGE_RECORD {
                farthest = farthest.max(pos % ring);
            }
            if i % 50 == 0 {
                // Slower than the publisher: it waits for room now and then.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        publisher.join().unwrap();
        assert_eq!((r.delivered(), r.lost()), (n, 0), "{laps:?}");
        if laps == LargeLaps::Whole {
            assert!(
                farthest >= ring / 2,
                "whole laps: large records reached only {farthest}"
            );
        }
    }
}

/// By default (whole laps) a reliable ring holds its size in large
/// messages, batch after batch: a publisher that publishes what fits
/// before anyone reads never waits (as one thread doing both would need).
/// In short laps it holds at least the four at a lap's start.
#[test]
fn a_reliable_ring_holds_its_size_in_large_messages_by_default() {
    let (ring, max) = (1u64 << 20, 65536usize);
    let fits = ring / aether::ring::stride_for(max);
    for (laps, holds) in [(None, fits), (Some(LargeLaps::Short), 4)] {
        let seg = segment(Policy::Reliable, ring, max as u64);
        let mut r = seg.reader(0).unwrap();
        let mut w = seg.writer(None);
        if let Some(l) = laps {
            w.set_large_laps(l);
        }
        w.timeout = Some(Duration::ZERO);
        let mut buf = vec![0u8; max];
        let mut seq = 0;
        for batch in 0..20 {
            let mut n = 0;
            while w.publish(&message(seq + n, max)).is_ok() {
                n += 1;
            }
            assert!(n >= holds, "{laps:?}, batch {batch}: only {n} of {holds} fit");
            if laps.is_none() {
                // (The padding where a record would straddle the ring's
                // end can take up to one record's room.)
                assert!(n >= fits - 1, "batch {batch}: {n} of {fits}");
            }
            for _ in 0..n {
                let (got, s, _) = r.receive_into(&mut buf, &soon()).unwrap();
                assert_eq!((s, &buf[..got]), (seq, &message(seq, max)[..]));
                seq += 1;
            }
        }
    }
}

/// A lap cut short while its subscriber had read everything costs no
/// room: the subscriber, at the padding, counts as past it, so the
/// publisher fills the whole next lap, writing over the padding itself;
/// the subscriber then goes on at the next lap and gets every message.
/// (Without the lap line the ring would hold four of them, and the
/// subscriber, finding its position written over, would skip ahead.)
#[test]
fn a_lap_cut_short_for_a_caught_up_subscriber_still_holds_the_ring() {
    // Records of 64 KiB exactly, so that the next lap fills to its end.
    let (ring, max, len) = (1u64 << 20, 65536usize, 65536 - aether::segment::RECORD_HEADER);
    let fits = ring / aether::ring::stride_for(len);
    assert_eq!(fits, 16);
    let seg = segment(Policy::Reliable, ring, max as u64);
    let mut r = seg.reader(0).unwrap();
    let mut w = seg.writer(None);
    w.timeout = Some(Duration::ZERO);
    let mut buf = vec![0u8; max];
    let mut seq = 0;
    // Four records, read: the next claim, just past the lap's first 256
    // KiB, finds the subscriber caught up.
    for _ in 0..4 {
        w.publish(&message(seq, len)).unwrap();
        r.receive_into(&mut buf, &soon()).unwrap();
        seq += 1;
    }
    let padded_at = seg.tail().lo.load(Ordering::SeqCst);
    let mut n = 0;
    while w.publish(&message(seq + n, len)).is_ok() {
        n += 1;
    }
    assert_eq!(
        seg.lap_padded_at().load(Ordering::SeqCst),
        padded_at,
        "the lap was cut short there"
    );
    assert!(n >= fits - 1, "{n} of {fits} fit after the padding");
    for _ in 0..n {
        let (got, s, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!(s, seq);
        assert!(buf[..got] == message(seq, len)[..], "message {seq} intact");
        seq += 1;
    }
    assert_eq!(r.lost(), 0);
}

/// A publisher killed at the worst moment for a caught-up lap: right after
/// cutting the lap short, its large record claimed at the next lap's start
/// and never committed. Another publisher fills the rest of that lap, over
/// the padding where the subscriber sits; the subscriber goes on at the
/// next lap, skips the dead record after the abandon timeout (counted
/// lost), and gets every other message, intact and in order. (Fails with
/// the publishers' lap-line rule removed: the live one times out.)
#[test]
fn a_publisher_killed_after_cutting_a_lap_short_holds_no_one_up() {
    let (ring, len) = (1u64 << 20, 65536 - aether::segment::RECORD_HEADER);
    let seg = segment(Policy::Reliable, ring, 65536);
    let mut r = seg.reader(0).unwrap();
    r.abandon_timeout = Duration::from_millis(20);
    let mut buf = vec![0u8; 65536];
    let mut dying = seg.writer(None);
    for i in 0..4 {
        dying.publish(&message(i, len)).unwrap();
        r.receive_into(&mut buf, &soon()).unwrap();
    }
    let cut_at = seg.tail().lo.load(Ordering::SeqCst);
    let dead = dying.claim(len).unwrap();
    assert_eq!((dead.pos % ring, dead.seq), (0, 4), "the claim opened the next lap");
    assert_eq!(seg.lap_padded_at().load(Ordering::SeqCst), cut_at);
    let mut w = seg.writer(None);
    w.timeout = Some(Duration::from_secs(5));
    // Fifteen more: with the dead record, the whole lap, the fifth over
    // the padding.
    for i in 5..20 {
        w.publish(&message(i, len)).unwrap();
    }
    for i in 5..20 {
        let (got, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!(seq, i);
        assert!(buf[..got] == message(i, len)[..], "message {i} intact");
    }
    assert_eq!(r.lost(), 1);
}

/// The lap line is publishers' to write, so a hostile one can forge it.
/// A subscriber trusts it only where it finds no record: a message at its
/// position is still delivered; a forged line where none is makes it skip
/// to the next lap and report the ring's tail behind it (Corrupt) rather
/// than wait forever or read outside the ring.
#[test]
fn a_forged_lap_line_costs_messages_at_most() {
    let seg = segment(Policy::Reliable, 1 << 20, 65536);
    let mut r = seg.reader(0).unwrap();
    let mut w = seg.writer(None);
    let mut buf = vec![0u8; 65536];
    w.publish(b"one").unwrap();
    let at = seg.tail().lo.load(Ordering::SeqCst) - aether::ring::stride_for(3);
    seg.lap_padded_at().store(at, Ordering::SeqCst);
    let (n, _, _) = r.receive_into(&mut buf, &soon()).unwrap();
    assert_eq!(&buf[..n], b"one");
    let tail = seg.tail().lo.load(Ordering::SeqCst);
    seg.lap_padded_at().store(tail, Ordering::SeqCst);
    let e = within(Duration::from_secs(5), move || {
        r.receive_into(&mut buf, &Deadline::after(Some(Duration::from_secs(2))))
            .unwrap_err()
    });
    assert_eq!(e.status, Status::Corrupt, "{e}");
}

/// A lossy topic keeps whole laps whatever its publisher asks: a
/// subscriber that has read nothing yet still finds as many large messages
/// as the whole ring holds, none lost.
#[test]
fn a_lossy_topic_keeps_whole_laps_for_large_records() {
    let (ring, max) = (1u64 << 20, 65536usize);
    let (_seg, mut r, mut w) = short_laps(Policy::Lossy);
    let fits = ring / aether::ring::stride_for(max) - 1;
    for i in 0..fits {
        w.publish(&message(i, max)).unwrap();
    }
    let mut buf = vec![0u8; max];
    for i in 0..fits {
        let (got, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!((seq, &buf[..got]), (i, &message(i, max)[..]));
    }
    assert_eq!(r.lost(), 0);
}

#[test]
fn reliable_many_publisher_threads_gap_free() {
    const PUBS: u64 = 4;
    let per = rounds(20_000);
    let seg = segment(Policy::Reliable, 16384, 512);
    let mut r = seg.reader(0).unwrap();
    let handles: Vec<_> = (0..PUBS)
        .map(|p| {
            let seg = Arc::clone(&seg);
            std::thread::spawn(move || {
                let mut w = seg.writer(Some(p as u32));
                w.timeout = Some(Duration::from_secs(30));
                for i in 0..per {
                    let id = p * per + i;
                    w.publish(&message(id, 8 + size_of_msg(id, 504))).unwrap();
                }
            })
        })
        .collect();
    let mut next = vec![0u64; PUBS as usize];
    let mut buf = vec![0u8; 512];
    for expect_seq in 0..PUBS * per {
        let (len, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!(seq, expect_seq, "sequence numbers are gap-free and in order");
        let id = u64::from_le_bytes(buf[..8].try_into().unwrap());
        let p = id / per;
        assert_eq!(
            id % per,
            next[p as usize],
            "each publisher's messages arrive in its order"
        );
        next[p as usize] += 1;
        assert_eq!(&buf[..len], &message(id, 8 + size_of_msg(id, 504))[..]);
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(r.lost(), 0);
}

#[test]
fn lossy_lap_reports_exact_loss() {
    let seg = segment(Policy::Lossy, 4096, 200);
    let mut w = seg.writer(None);
    let mut r = seg.reader(0).unwrap();
    let mut buf = vec![0u8; 200];
    let total = 10_000u64;
    let mut delivered = 0;
    for i in 0..total {
        w.publish(&message(i, size_of_msg(i, 200))).unwrap();
        // Read one message every 50 published: the reader is lapped often.
        if i % 50 == 0 {
            let (len, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
            assert_eq!(&buf[..len], &message(seq, size_of_msg(seq, 200))[..]);
            delivered += 1;
        }
    }
    loop {
        match r.receive_into(&mut buf, &Deadline::from_timeout_ns(0)) {
            Ok((len, seq, _)) => {
                assert_eq!(&buf[..len], &message(seq, size_of_msg(seq, 200))[..]);
                delivered += 1;
            }
            Err(e) => {
                assert_eq!(e.status, Status::Timeout);
                break;
            }
        }
    }
    assert!(r.lost() > 0, "the reader was lapped");
    assert_eq!(delivered + r.lost(), total, "delivered + lost = published");
    assert_eq!(r.delivered(), delivered);
}

#[test]
fn lossy_concurrent_reader_never_sees_torn_messages() {
    let seg = segment(Policy::Lossy, 4096, 300);
    let total = 200_000u64;
    let pubseg = Arc::clone(&seg);
    let mut r = seg.reader(0).unwrap();
    let h = std::thread::spawn(move || {
        let mut w = pubseg.writer(Some(0));
        for i in 0..total {
            w.publish(&message(i, size_of_msg(i, 300))).unwrap();
        }
    });
    let mut buf = vec![0u8; 300];
    let mut last = None;
    loop {
        match r.receive_into(&mut buf, &Deadline::after(Some(Duration::from_millis(500)))) {
            Ok((len, seq, _)) => {
                assert_eq!(
                    &buf[..len],
                    &message(seq, size_of_msg(seq, 300))[..],
                    "message {seq} intact"
                );
                assert!(last.is_none_or(|l| seq > l));
                last = Some(seq);
                if seq == total - 1 {
                    break;
                }
                // Fall behind now and then, so that the publisher laps us.
                if seq % 2048 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(e) if e.status == Status::Timeout => break,
            Err(e) => panic!("{e}"),
        }
    }
    h.join().unwrap();
    assert_eq!(r.delivered() + r.lost(), total);
    assert!(
        r.lost() > 0,
        "the publisher never lapped the reader: overwrite detection went untested"
    );
}

#[test]
fn abandoned_claim_is_skipped_and_counted() {
    let seg = segment(Policy::Lossy, 8192, 100);
    let mut w = seg.writer(None);
    let mut r = seg.reader(0).unwrap();
    r.abandon_timeout = Duration::from_millis(20);
    w.publish(b"first").unwrap();
    let _dead = w.claim(10).unwrap(); // a publisher that dies before commit
    w.publish(b"third").unwrap();
    let mut buf = [0u8; 100];
    let (n, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
    assert_eq!((&buf[..n], seq), (&b"first"[..], 0));
    let (n, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
    assert_eq!((&buf[..n], seq), (&b"third"[..], 2));
    assert_eq!(r.lost(), 1);
}

/// Small claims (no CLAIMED stamp: the abort writes the header) and large
/// ones alike.
#[test]
fn aborted_claim_is_skipped_without_loss() {
    for len in [10, 2000] {
        let seg = segment(Policy::Reliable, 16384, 2048);
        let mut w = seg.writer(None);
        let mut r = seg.reader(0).unwrap();
        let c = w.claim(len).unwrap();
        w.abort(c);
        // The aborted claim used sequence number 0 (counted in `aborted`, not lost).
        assert_eq!(w.publish(b"after").unwrap(), 1);
        let mut buf = [0u8; 100];
        let (n, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!(&buf[..n], b"after", "{len} B");
        assert_eq!(seq, 1);
        assert_eq!(r.lost(), 0, "{len} B");
        assert_eq!(seg.stats().aborted.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn reliable_publisher_times_out_on_a_stalled_subscriber() {
    let seg = segment(Policy::Reliable, 4096, 1000);
    let mut w = seg.writer(None);
    w.timeout = Some(Duration::from_millis(50));
    let _r = seg.reader(0).unwrap();
    let mut err = None;
    for _ in 0..10 {
        if let Err(e) = w.publish(&[0u8; 1000]) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err.expect("the ring filled up").status, Status::Timeout);
    drop(_r); // the subscriber goes away: publishing resumes
    w.publish(&[0u8; 1000]).unwrap();
}

#[test]
fn oversized_message_is_rejected_and_changes_nothing() {
    let seg = segment(Policy::Lossy, 4096, 100);
    let mut w = seg.writer(None);
    let before = seg.tail().load();
    assert_eq!(w.publish(&[0u8; 101]).unwrap_err().status, Status::TooLarge);
    assert_eq!(seg.tail().load(), before);
}

#[test]
fn receive_wakes_a_sleeping_subscriber() {
    let seg = segment(Policy::Lossy, 8192, 100);
    let mut r = seg.reader(0).unwrap();
    r.wait.spin = 10; // go to sleep on the futex quickly
    let s2 = Arc::clone(&seg);
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        s2.writer(None).publish(b"wake").unwrap();
    });
    let mut buf = [0u8; 100];
    let (n, _, _) = r.receive_into(&mut buf, &soon()).unwrap();
    assert_eq!(&buf[..n], b"wake");
    h.join().unwrap();
}

/// A loan whose capacity the caller lowered (as `Publisher::loan` does)
/// still commits a record with the stride it claimed: the reader steps over
/// it to the next message.
#[test]
fn a_loan_with_lowered_capacity_keeps_its_stride() {
    let seg = segment(Policy::Reliable, 4096, 200);
    let mut r = seg.reader(0).unwrap();
    let mut w = seg.writer(None);
    for len in [1usize, 31, 33, 64, 100, 200] {
        let mut claim = w.claim(len).unwrap();
        claim.capacity = len;
        // SAFETY: the claim's payload has at least `len` bytes we own.
        unsafe { std::ptr::write_bytes(w.payload(&claim), len as u8, len) };
        w.commit(claim, len).unwrap();
        w.publish(b"next").unwrap();
    }
    let mut buf = [0u8; 200];
    for len in [1usize, 31, 33, 64, 100, 200] {
        let (n, _, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!(buf[..n], vec![len as u8; len][..]);
        let (n, _, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!(&buf[..n], b"next");
    }
}

/// The waker skips its store-load fence (membarrier: the sleeper pays instead).
/// A lost wake-up would leave a receive asleep until its 5 s deadline; with no
/// spinning, every message races the subscriber going to sleep, both ways
/// (data for the subscriber, space for the reliable publisher).
#[test]
fn no_wake_up_is_lost_when_sleeper_and_waker_race() {
    if !aether::sys::membarrier::register() {
        eprintln!("membarrier is unavailable here: only the fenced fallback is tested");
    }
    // The lossy ring holds every message: a lap would lose some (by design).
    for (policy, ring) in [(Policy::Lossy, 1 << 21), (Policy::Reliable, 4096)] {
        let seg = segment(policy, ring, 64);
        let mut r = seg.reader(0).unwrap();
        r.wait = WaitConfig {
            strategy: WaitStrategy::Futex,
            spin: 0,
        };
        let s2 = Arc::clone(&seg);
        let n = 20_000u64;
        let h = std::thread::spawn(move || {
            let mut w = s2.writer(None);
            w.wait = WaitConfig {
                strategy: WaitStrategy::Futex,
                spin: 0,
            };
            let mut seed = 7u64;
            for i in 0..n {
                // Now and then let the subscriber fall asleep first.
                if rng(&mut seed).is_multiple_of(16) {
                    std::thread::sleep(Duration::from_micros(20));
                }
                w.publish(&i.to_le_bytes()).unwrap();
            }
        });
        let mut buf = [0u8; 64];
        let mut seed = 11u64;
        for i in 0..n {
            // And now and then let the (reliable) publisher fall asleep.
            if rng(&mut seed).is_multiple_of(16) {
                std::thread::sleep(Duration::from_micros(20));
            }
            let deadline = Deadline::after(Some(Duration::from_secs(5)));
            let (len, _, _) = r
                .receive_into(&mut buf, &deadline)
                .unwrap_or_else(|e| panic!("message {i}: {e}"));
            assert_eq!(buf[..len], i.to_le_bytes());
        }
        h.join().unwrap();
        let sleeps = seg.waiters.page().stats.waits.load(Ordering::Relaxed);
        assert!(sleeps > 0, "the subscriber never slept: the test proves nothing");
        if policy == Policy::Reliable {
            let space_sleeps = seg.stats().space_waits.load(Ordering::Relaxed);
            assert!(
                space_sleeps > 0,
                "the publisher never slept: the space side is untested"
            );
        }
    }
}

/// A subscriber killed while asleep stays counted in `waiters` with its
/// sleep counted: publishers wake the word once for it, not at every
/// commit, and a live subscriber that sleeps afterwards is still woken by
/// the next message (not by its 200 ms cap: each receive here has 100 ms).
#[test]
fn a_dead_sleeper_costs_one_wake_and_live_sleepers_are_still_woken() {
    let seg = segment(Policy::Lossy, 1 << 20, 64);
    let data = &seg.waiters.page().data;
    // The dead subscriber's leftovers, as `wait_once` leaves them while asleep.
    data.waiters.fetch_add(1, Ordering::SeqCst);
    data.sleeps.fetch_add(1, Ordering::SeqCst);
    let wakes = || seg.stats().wakes.load(Ordering::Relaxed);
    let mut w = seg.writer(None);
    for i in 0..1000u64 {
        w.publish(&i.to_le_bytes()).unwrap();
    }
    assert_eq!(wakes(), 1, "one wake for the dead sleeper, not one per commit");
    let mut r = seg.reader(0).unwrap();
    r.wait = WaitConfig {
        strategy: WaitStrategy::Futex,
        spin: 0,
    };
    let s2 = Arc::clone(&seg);
    let h = std::thread::spawn(move || {
        let mut w = s2.writer(None);
        for i in 0..20u64 {
            // Long enough for the subscriber to be asleep again.
            std::thread::sleep(Duration::from_millis(5));
            w.publish(&i.to_le_bytes()).unwrap();
        }
    });
    let mut buf = [0u8; 64];
    for i in 0..20u64 {
        let deadline = Deadline::after(Some(Duration::from_millis(100)));
        let (len, _, _) = r
            .receive_into(&mut buf, &deadline)
            .unwrap_or_else(|e| panic!("message {i}: {e} (a wake was skipped)"));
        assert_eq!(buf[..len], i.to_le_bytes());
    }
    h.join().unwrap();
    assert!(
        seg.waiters.page().stats.waits.load(Ordering::Relaxed) > 0,
        "the subscriber never slept"
    );
}

/// The same for publishers asleep waiting for space: one that died asleep
/// (or was woken and has not run yet) leaves its sleep counted in the
/// header's space line; a subscriber wakes the space word once for it, not
/// at every message it reads, and a live publisher that sleeps for space
/// afterwards is still woken (a wake that never comes fails `wakes() > 1`;
/// one skipped now and then costs only the 10 ms cap on a sleep, which
/// this test cannot tell from a wake: the loom model checks the protocol).
#[test]
fn a_dead_space_sleeper_costs_one_wake_and_live_ones_are_still_woken() {
    let seg = segment(Policy::Reliable, 4096, 64);
    let space = seg.space_notify();
    space.waiters.fetch_add(1, Ordering::SeqCst);
    space.sleeps.fetch_add(1, Ordering::SeqCst);
    let wakes = || seg.waiters.page().stats.wakes.load(Ordering::Relaxed);
    let mut r = seg.reader(0).unwrap();
    let mut w = seg.writer(None);
    let mut buf = [0u8; 64];
    for i in 0..1000u64 {
        w.publish(&i.to_le_bytes()).unwrap();
        r.receive_into(&mut buf, &soon()).unwrap();
    }
    assert_eq!(wakes(), 1, "one wake for the dead sleeper, not one per message read");
    space.waiters.fetch_sub(1, Ordering::SeqCst);
    a_publisher_sleeping_at_a_full_ring_delivers_all(&seg, &mut r);
    assert!(wakes() > 1, "the live publisher was never woken");
}

/// A hostile publisher (it maps the segment writable) that keeps the space
/// line's sleeps count frozen makes subscribers skip wakes: the other
/// publishers then sleep to their 10 ms cap. That costs time, never a
/// message, and nothing hangs (docs/SECURITY.md).
#[test]
fn a_frozen_space_sleeps_count_costs_time_not_messages() {
    use std::sync::atomic::AtomicBool;
    let seg = segment(Policy::Reliable, 4096, 64);
    let mut r = seg.reader(0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let forger = {
        let (seg, stop) = (Arc::clone(&seg), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                seg.space_notify().sleeps.store(7, Ordering::SeqCst);
                std::thread::yield_now();
            }
        })
    };
    a_publisher_sleeping_at_a_full_ring_delivers_all(&seg, &mut r);
    stop.store(true, Ordering::Relaxed);
    forger.join().unwrap();
}

/// A publisher that sleeps for space at once (spin 0) sends 200 messages
/// through a ring of 32 records to `r`, which pauses now and then: all
/// arrive, in order, each publish within 2 s, and the publisher slept.
fn a_publisher_sleeping_at_a_full_ring_delivers_all(seg: &Arc<LocalTopic>, r: &mut aether::ring::Reader) {
    let s2 = Arc::clone(seg);
    let h = std::thread::spawn(move || {
        let mut w = s2.writer(None);
        w.wait = WaitConfig {
            strategy: WaitStrategy::Futex,
            spin: 0,
        };
        w.timeout = Some(Duration::from_secs(2));
        for i in 0..200u64 {
            w.publish(&i.to_le_bytes())
                .unwrap_or_else(|e| panic!("message {i}: {e} (publishing stalled)"));
        }
    });
    let mut buf = [0u8; 64];
    for i in 0..200u64 {
        if i % 20 == 0 {
            // Long enough for the publisher to be asleep on a full ring.
            std::thread::sleep(Duration::from_millis(5));
        }
        let (len, _, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!(buf[..len], i.to_le_bytes());
    }
    h.join().unwrap();
    assert!(
        seg.stats().space_waits.load(Ordering::Relaxed) > 0,
        "the publisher never slept"
    );
}

/// Simple xorshift for reproducible garbage.
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn garbage_ring_bytes_and_tails_never_crash_the_reader() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    for round in 0..rounds(200) {
        let seg = segment(Policy::Lossy, 4096, 500);
        let mut w = seg.writer(None);
        let mut r = seg.reader(0).unwrap();
        r.abandon_timeout = Duration::from_millis(1);
        for i in 0..(rng(&mut seed) % 20) {
            w.publish(&message(i, size_of_msg(i, 500))).unwrap();
        }
        // Scribble: random bytes at random places, sometimes the whole ring.
        let ring = seg.ring_ptr();
        let writes = if round % 10 == 0 { 4096 / 8 } else { rng(&mut seed) % 64 };
        for k in 0..writes {
            let off = if round % 10 == 0 {
                k * 8
            } else {
                (rng(&mut seed) % 512) * 8
            };
            // SAFETY: off + 8 <= 4096 = ring size, and the ring is mapped.
            unsafe { ring.add(off as usize).cast::<u64>().write_volatile(rng(&mut seed)) };
        }
        if round % 7 == 0 {
            let t = rng(&mut seed) & !63;
            let _ = seg.tail().compare_exchange(seg.tail().load(), (t, rng(&mut seed)));
        }
        let mut buf = vec![0u8; 500];
        for _ in 0..50 {
            match r.receive_into(&mut buf, &Deadline::from_timeout_ns(2_000_000)) {
                Ok((len, _, _)) => assert!(len <= 500),
                Err(e) => {
                    assert!(matches!(e.status, Status::Corrupt | Status::Timeout), "{e}");
                    if e.status == Status::Timeout {
                        break;
                    }
                }
            }
        }
    }
}

/// A publisher claims, dawdles, and only then writes and commits, while
/// another publishes almost three rings' worth: every message the reader gets
/// is intact and every one is accounted for. (The cross-process 4 x 4 stress
/// test in aetherd/tests/stress.rs is the one that failed before publishers
/// announced their claims; scheduling between processes exposes it far more.)
#[test]
fn lossy_fast_publisher_never_laps_a_slow_one_mid_write() {
    let seg = segment(Policy::Lossy, 4096, 200);
    let mut r = seg.reader(0).unwrap();
    let mut slow = seg.writer(Some(1));
    let slow_msg = message(1_000_000, 100);
    let claim = slow.claim(slow_msg.len()).unwrap();
    let fast_seg = Arc::clone(&seg);
    let fast = std::thread::spawn(move || {
        let mut w = fast_seg.writer(Some(0));
        for id in 0..60u64 {
            w.publish(&message(id, 150)).unwrap(); // 60 x 192 bytes: almost three rings
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    // The gate held: the fast publisher is stuck at most a ring past our claim.
    assert!(
        !fast.is_finished(),
        "the fast publisher finished while a claim it would lap was open"
    );
    assert!(seg.tail().lo.load(Ordering::SeqCst) <= claim.pos + 4096);
    // SAFETY: the claim's payload has room for slow_msg.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(slow_msg.as_ptr(), slow.payload(&claim), slow_msg.len()) };
    slow.commit(claim, slow_msg.len()).unwrap();
    fast.join().unwrap();
    let mut buf = vec![0u8; 200];
    let mut seen = 0;
    loop {
        match r.receive_into(&mut buf, &Deadline::after(Some(Duration::from_millis(300)))) {
            Ok((len, _, _)) => {
                let id = u64::from_le_bytes(buf[..8].try_into().unwrap());
                let want = if id == 1_000_000 {
                    slow_msg.clone()
                } else {
                    message(id, 150)
                };
                assert_eq!(&buf[..len], &want[..], "message {id} intact");
                seen += 1;
            }
            Err(e) if e.status == Status::Timeout => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(seen > 0);
    assert_eq!(r.delivered() + r.lost(), 61);
}

/// The abandon timeout adds up over calls: a subscriber polling with short
/// timeouts still gets past a record whose publisher died mid-write, on
/// either kind of topic, whether the claim was stamped CLAIMED (over 1 KiB:
/// skipped by its stride) or not (small: passed by scanning ahead).
#[test]
fn abandoned_claim_is_skipped_by_short_polls_too() {
    for policy in [Policy::Lossy, Policy::Reliable] {
        for len in [10, 2000] {
            let seg = segment(policy, 16384, 2048);
            let mut w = seg.writer(None);
            let mut r = seg.reader(0).unwrap();
            r.abandon_timeout = Duration::from_millis(30);
            let _dead = w.claim(len).unwrap();
            w.publish(b"after").unwrap();
            let mut buf = [0u8; 2048];
            let mut got = None;
            for _ in 0..200 {
                match r.receive_into(&mut buf, &Deadline::after(Some(Duration::from_millis(5)))) {
                    Ok((n, seq, _)) => {
                        got = Some((buf[..n].to_vec(), seq));
                        break;
                    }
                    Err(e) => assert_eq!(e.status, Status::Timeout, "{policy:?}, {len} B"),
                }
            }
            assert_eq!(
                got,
                Some((b"after".to_vec(), 1)),
                "{policy:?}, {len} B: skipped within 200 polls of 5 ms"
            );
            assert_eq!(r.lost(), 1, "{policy:?}, {len} B");
        }
    }
}

/// A publisher that is slow (but alive: it still announces its claim) is
/// waited for, never skipped: on a reliable topic nothing is lost.
#[test]
fn a_slow_live_publisher_is_waited_for_not_skipped() {
    let seg = segment(Policy::Reliable, 8192, 100);
    let mut r = seg.reader(0).unwrap();
    r.abandon_timeout = Duration::from_millis(20);
    let mut slow = seg.writer(Some(1));
    let claim = slow.claim(4).unwrap();
    let s2 = Arc::clone(&seg);
    let fast = std::thread::spawn(move || s2.writer(Some(2)).publish(b"fast").unwrap());
    std::thread::sleep(Duration::from_millis(150)); // far past the abandon timeout
                                                    // SAFETY: the claim has room for 4 bytes.
    unsafe { std::ptr::copy_nonoverlapping(b"slow".as_ptr(), slow.payload(&claim), 4) };
    slow.commit(claim, 4).unwrap();
    fast.join().unwrap();
    let mut buf = [0u8; 100];
    let mut got = Vec::new();
    for _ in 0..2 {
        let (n, _, _) = r.receive_into(&mut buf, &soon()).unwrap();
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got, vec![b"slow".to_vec(), b"fast".to_vec()]);
    assert_eq!(r.lost(), 0);
}

/// A reader asleep on an empty topic wakes with NotFound when the topic is
/// deleted (the daemon sets the state word and wakes the futex), every time.
#[test]
fn a_sleeping_reader_sees_the_topic_deleted() {
    for _ in 0..100 {
        let seg = segment(Policy::Lossy, 4096, 100);
        let mut r = seg.reader(0).unwrap();
        r.wait.spin = 0;
        let s2 = Arc::clone(&seg);
        let deleter = std::thread::spawn(move || {
            s2.gate().state.store(aether::segment::TOPIC_DELETED, Ordering::SeqCst);
            wake_all(&s2.data_notify().word);
        });
        let mut buf = [0u8; 100];
        let e = r
            .receive_into(&mut buf, &Deadline::after(Some(Duration::from_secs(5))))
            .unwrap_err();
        assert_eq!(e.status, Status::NotFound, "{e}");
        deleter.join().unwrap();
    }
}

/// A publish blocked on a full reliable ring gives up when the topic is deleted.
#[test]
fn a_blocked_publish_sees_the_topic_deleted() {
    let seg = segment(Policy::Reliable, 4096, 1000);
    let _r = seg.reader(0).unwrap();
    let mut w = seg.writer(Some(0));
    w.timeout = Some(Duration::from_secs(10));
    while w.publish(&[0u8; 1000]).is_ok() && seg.tail().lo.load(Ordering::SeqCst) < 3000 {}
    let s2 = Arc::clone(&seg);
    let deleter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        s2.gate().state.store(aether::segment::TOPIC_DELETED, Ordering::SeqCst);
        wake_all(&s2.waiters.page().space.word);
    });
    let e = w.publish(&[0u8; 1000]).unwrap_err();
    assert_eq!(e.status, Status::NotFound, "{e}");
    deleter.join().unwrap();
}

/// Runs `f` on a thread and fails the test if it has not returned within
/// `bound` (a hang must fail, not stall the suite).
fn within<T: Send + 'static>(bound: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(bound)
        .expect("the call did not return within its bound")
}

/// Writes a record header stamped MESSAGE at ring position `pos`, as a
/// hostile party with write access to the segment could.
fn forge_message(seg: &Segment, pos: u64, seq: u64, len: u32) {
    let geo = *seg.geometry();
    let off = (pos & (geo.ring_size - 1)) as usize;
    // SAFETY: `off` is 64-aligned and below ring_size, so the 32-byte header
    // lies inside the ring; the test owns the segment.
    unsafe {
        let h = seg.ring_ptr().add(off);
        h.add(8).cast::<u32>().write_volatile(len);
        h.add(12).cast::<u32>().write_volatile(64);
        h.add(16).cast::<u64>().write_volatile(seq);
        h.add(24).cast::<u64>().write_volatile(0);
        (*h.cast::<std::sync::atomic::AtomicU64>()).store((pos | 2) ^ geo.salt, Ordering::Release);
    }
}

/// Issue 15, case 2: a record stamped MESSAGE at the tail with a stale
/// sequence number, plus a horizon raised far beyond anything claimed, made
/// `next` resync in place forever, ignoring the receive's deadline. Now the
/// impossible horizon is reported as corruption, at once.
#[test]
fn a_forged_stale_record_and_horizon_cannot_hold_a_receive() {
    let seg = segment(Policy::Lossy, 4096, 100);
    let mut w = seg.writer(Some(0));
    let mut r = seg.reader(0).unwrap();
    let mut buf = [0u8; 100];
    for m in [&b"one"[..], b"two"] {
        w.publish(m).unwrap();
        let (n, _, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!(&buf[..n], m);
    }
    let tail = seg.tail().lo.load(Ordering::SeqCst);
    forge_message(&seg, tail, 0, 3);
    seg.horizon().store(1 << 62, Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    let e = within(Duration::from_secs(5), move || {
        r.receive_into(&mut [0u8; 100], &Deadline::after(Some(Duration::from_secs(2))))
            .unwrap_err()
    });
    assert_eq!(e.status, Status::Corrupt, "{e}");
    assert!(e.message.contains("horizon"), "{e}");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "reported at once, not at the deadline"
    );
}

/// A forged horizon alone (nothing at the tail) is caught too: the lossy
/// overwrite check would otherwise call every message torn, forever.
#[test]
fn an_impossible_horizon_is_corruption_not_endless_loss() {
    let seg = segment(Policy::Lossy, 4096, 100);
    let mut w = seg.writer(Some(0));
    let mut r = seg.reader(0).unwrap();
    seg.horizon().store(1 << 62, Ordering::SeqCst);
    w.publish(b"x").unwrap();
    let e = within(Duration::from_secs(5), move || {
        r.receive_into(&mut [0u8; 100], &Deadline::after(Some(Duration::from_secs(2))))
            .unwrap_err()
    });
    assert_eq!(e.status, Status::Corrupt, "{e}");
}

/// Whether `fd` is readable within `ms` milliseconds.
fn readable(fd: &std::os::fd::OwnedFd, ms: i32) -> bool {
    use std::os::fd::AsFd;
    !aether::sys::poll_one(fd.as_fd(), nix::poll::PollFlags::POLLIN, ms).is_empty()
}

/// Issue 16: a pollable reader's eventfd is signalled by commits only while
/// the reader is armed; disarming, or the daemon taking the slot back,
/// uncounts it, so publishers go back to doing nothing.
#[test]
fn a_pollable_reader_is_signalled_only_while_armed() {
    let seg = segment(Policy::Lossy, 8192, 64);
    let mut w = seg.writer(None);
    let mut r = seg.reader(0).unwrap();
    let fd = seg.notifier(0).unwrap();
    let pollers = || seg.waiters.page().data.pollers.load(Ordering::SeqCst);
    w.publish(b"not armed").unwrap();
    assert!(!readable(&fd, 0), "signalled while not armed");
    assert!(
        r.arm_poll(),
        "a message waits: arming says so (the caller signals itself)"
    );
    r.disarm_poll();
    let mut buf = [0u8; 64];
    r.receive_into(&mut buf, &Deadline::after(Some(Duration::ZERO)))
        .unwrap();
    assert!(!r.arm_poll(), "nothing to receive");
    assert_eq!(pollers(), 1);
    assert!(!readable(&fd, 0));
    w.publish(b"one").unwrap();
    assert!(readable(&fd, 0), "armed: the commit signals");
    aether::sys::eventfd::drain(&fd);
    w.publish(b"two").unwrap();
    assert!(readable(&fd, 0), "still armed until the next receive");
    aether::sys::eventfd::drain(&fd);
    r.disarm_poll();
    assert_eq!(pollers(), 0);
    w.publish(b"three").unwrap();
    assert!(!readable(&fd, 0), "disarmed: nothing");
    // A subscriber that dies armed is disarmed when its slot is taken back.
    for _ in 0..3 {
        r.receive_into(&mut buf, &Deadline::after(Some(Duration::ZERO)))
            .unwrap();
    }
    assert!(!r.arm_poll());
    assert_eq!(pollers(), 1);
    r.forget_slot();
    seg.leave(0);
    assert_eq!(pollers(), 0);
    assert!(seg
        .waiters
        .page()
        .poll
        .armed
        .iter()
        .all(|w| w.load(Ordering::SeqCst) == 0));
}

/// No signal is lost between a reader that arms when its ring is empty and
/// a publisher committing at that moment: the reader only ever waits in
/// poll(2) (a 5 s poll that times out is a lost wake-up) and every message
/// arrives, over many rounds with random pauses on both sides.
#[test]
fn no_poll_wake_up_is_lost() {
    const N: u64 = 20_000;
    let seg = segment(Policy::Reliable, 8192, 64);
    let mut r = seg.reader(0).unwrap();
    let fd = seg.notifier(0).unwrap();
    let publisher = {
        let seg = Arc::clone(&seg);
        std::thread::spawn(move || {
            let mut w = seg.writer(None);
            w.timeout = Some(Duration::from_secs(30));
            let mut s = 7u64;
            for i in 0..N {
                w.publish(&i.to_le_bytes()).unwrap();
                if rng(&mut s).is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(rng(&mut s) % 200));
                }
            }
        })
    };
    let (mut next, mut polls, mut s) = (0u64, 0u64, 99u64);
    let mut buf = [0u8; 64];
    while next < N {
        r.disarm_poll();
        match r.receive_into(&mut buf, &Deadline::after(Some(Duration::ZERO))) {
            Ok((8, seq, _)) => {
                assert_eq!((seq, u64::from_le_bytes(buf[..8].try_into().unwrap())), (next, next));
                next += 1;
                if rng(&mut s).is_multiple_of(512) {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Err(e) if e.status == Status::Timeout => {
                aether::sys::eventfd::drain(&fd);
                if !r.arm_poll() {
                    polls += 1;
                    assert!(readable(&fd, 5000), "lost wake-up: message {next} never signalled");
                }
            }
            other => panic!("receive: {other:?}"),
        }
    }
    publisher.join().unwrap();
    assert!(polls > 0, "the reader never had to wait");
}

/// Messages from another broker (the bridge's `commit_remote`) carry their
/// origin after the payload; local ones carry none; a remote stamp on a
/// record with no room for the origin is corruption, never a read past it.
#[test]
fn remote_messages_carry_their_origin() {
    use aether::ring::{Origin, ORIGIN_BYTES};
    let seg = segment(Policy::Reliable, 8192, 1000);
    let mut w = seg.writer(None);
    let mut r = seg.reader(0).unwrap();
    let mut buf = vec![0u8; 1000];
    for i in 0..rounds(3000) {
        let m = message(i, size_of_msg(i, 1000 - ORIGIN_BYTES));
        let remote = i % 3 == 1;
        if remote {
            let c = w.claim(m.len() + ORIGIN_BYTES).unwrap();
            // SAFETY: the claim holds m.len() + ORIGIN_BYTES bytes, ours until commit.
            unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), w.payload(&c), m.len()) };
            let o = Origin {
                broker: aether::broker_id("b"),
                seq: 1000 + i,
            };
            w.commit_remote(c, m.len(), 77, o).unwrap();
        } else {
            w.publish(&m).unwrap();
        }
        if i % 2 == 0 {
            let (len, seq, ts) = r.receive_into(&mut buf, &soon()).unwrap();
            assert_eq!((seq, &buf[..len]), (i, &m[..]));
            assert_eq!(r.last_origin().map(|o| o.seq), remote.then_some(1000 + i));
            assert_eq!(ts == 77, remote);
        } else {
            let rec = r.next(&soon()).unwrap();
            // SAFETY: rec.data..+len is in the ring, and the topic is reliable.
            let got = unsafe { std::slice::from_raw_parts(rec.data, rec.len) };
            assert_eq!(got, &m[..]);
            assert_eq!(rec.origin.map(|o| o.broker), remote.then(|| aether::broker_id("b")));
            r.consume(&rec);
        }
    }
    // The claim must hold the origin too (20 + 16 bytes do not fit the 32
    // after a one-line record's header): nothing is published otherwise.
    let c = w.claim(20).unwrap();
    let e = w.commit_remote(c, 20, 0, Origin { broker: 1, seq: 1 }).unwrap_err();
    assert_eq!(e.status, Status::TooLarge);
    w.abort(c);
    // A hostile party stamps a one-line record remote (kind 5) with a
    // payload that leaves no room for the origin.
    w.publish(b"x").unwrap();
    r.receive_into(&mut buf, &soon()).unwrap();
    let tail = seg.tail().lo.load(Ordering::SeqCst);
    forge_message(&seg, tail, 3001, 30);
    let geo = *seg.geometry();
    let off = (tail & (geo.ring_size - 1)) as usize;
    // SAFETY: the stamp word of the forged header, inside the ring.
    unsafe {
        (*seg.ring_ptr().add(off).cast::<std::sync::atomic::AtomicU64>())
            .store((tail | 5) ^ geo.salt, Ordering::Release)
    };
    let e = r
        .receive_into(&mut buf, &Deadline::after(Some(Duration::from_millis(200))))
        .unwrap_err();
    assert_eq!(e.status, Status::Corrupt, "{e}");
    assert!(e.message.contains("origin"), "{e}");
}

/// A publisher at a full reliable ring holds out for a horizon step more
/// than it needs only while it spins: a subscriber that frees one record
/// (far less than the step) and stops still lets exactly one more publish
/// through, long before the timeout, and the next times out as before.
#[test]
fn a_full_ring_lets_one_through_for_one_record_freed() {
    let seg = segment(Policy::Reliable, 1 << 16, 64);
    let mut w = seg.writer(None);
    let mut r = seg.reader(0).unwrap();
    w.timeout = Some(Duration::from_millis(50));
    let mut published = 0u64;
    while w.publish(&message(published, 64)).is_ok() {
        published += 1;
    }
    assert_eq!(published, (1 << 16) / 128, "64 B records take 128 B");
    let mut buf = [0u8; 64];
    assert_eq!(r.receive_into(&mut buf, &soon()).unwrap().1, 0);
    w.timeout = Some(Duration::from_secs(10));
    let took = within(Duration::from_secs(20), move || {
        let t = std::time::Instant::now();
        w.publish(&message(published, 64)).unwrap();
        w.timeout = Some(Duration::from_millis(50));
        assert_eq!(
            w.publish(&message(published + 1, 64)).unwrap_err().status,
            Status::Timeout
        );
        t.elapsed()
    });
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A publisher waiting at a full ring reads the subscriber directory only
/// when `slots_gen` moves (ring.rs, `map_gating_cursors`): a subscriber
/// that joins while it waits, spinning or asleep, is still waited for
/// (never lapped), and one that leaves stops holding it up.
#[test]
fn a_subscriber_that_joins_while_the_publisher_waits_is_never_lapped() {
    use std::sync::atomic::AtomicBool;
    let seg = segment(Policy::Reliable, 4096, 64);
    let mut w = seg.writer(None);
    w.timeout = Some(Duration::from_secs(20));
    let mut fast = seg.reader(0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = Arc::clone(&stop);
    // Until told to stop, then one short message that ends the drain.
    let publisher = std::thread::spawn(move || {
        let mut i = 0;
        while !publishing.load(Ordering::Relaxed) {
            w.publish(&message(i, 64)).unwrap();
            i += 1;
        }
        w.publish(b"end").unwrap();
    });
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for i in 0.. {
            let (len, seq, _) = fast.receive_into(&mut buf, &soon()).unwrap();
            if len == 3 {
                break;
            }
            assert_eq!((seq, &buf[..len]), (i, &message(i, 64)[..]));
        }
    });
    // Mid-stream: the publisher keeps meeting a full ring (32 records).
    std::thread::sleep(Duration::from_millis(5));
    let mut late = seg.reader(1).unwrap();
    let mut buf = [0u8; 64];
    let (_, first, _) = late.receive_into(&mut buf, &soon()).unwrap();
    for k in 1..rounds(300) {
        if k % 30 == 0 {
            // Slower than the publisher: it fills the ring and waits for us.
            std::thread::sleep(Duration::from_millis(2));
        }
        let (len, seq, _) = late.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!((seq, &buf[..len]), (first + k, &message(first + k, 64)[..]));
    }
    assert_eq!(late.lost(), 0);
    drop(late); // leaves: the publisher goes on without it
    stop.store(true, Ordering::Relaxed);
    within(Duration::from_secs(30), move || {
        publisher.join().unwrap();
        drain.join().unwrap();
    });
}

/// A reliable publisher that died before it stamped a small claim (no
/// CLAIMED stamp: its stride is unknown), with the ring filled behind it
/// up to the subscriber: once the abandon timeout passes, the subscriber
/// scans ahead to the next record and gets every later message, the dead
/// one alone counted lost. (The scan used to start below the horizon,
/// which runs up to a horizon step past the tail, and skipped the records
/// there: ~1 KiB of committed messages in a 64 KiB ring.)
#[test]
fn a_dead_small_claim_before_a_full_ring_costs_only_itself() {
    // Message sizes put the horizon's last raise at different points of
    // the last horizon step: the old scan skipped up to 7 records here.
    for len in [20, 40, 100, 160, 200, 300] {
        let seg = segment(Policy::Reliable, 1 << 16, 400);
        let mut r = seg.reader(0).unwrap();
        r.abandon_timeout = Duration::from_millis(20);
        let mut dying = seg.writer(None);
        let _dead = dying.claim(10).unwrap();
        let mut w = seg.writer(None);
        w.timeout = Some(Duration::from_millis(20));
        let mut published = 0;
        while w.publish(&message(published, len)).is_ok() {
            published += 1;
        }
        assert!(published > 150, "the ring filled: {published}");
        let mut buf = [0u8; 400];
        for i in 0..published {
            let (n, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
            assert_eq!((&buf[..n], seq), (&message(i, len)[..], i + 1), "{len} B: message {i}");
        }
        assert_eq!(r.lost(), 1, "{len} B: the dead claim alone");
    }
}

/// A dead small claim (no CLAIMED stamp), then a live publisher's small
/// loan, unstamped until it commits, then a committed message: the
/// subscriber passes the dead claim after the abandon timeout but stops at
/// the live loan (its announcement bounds the scan ahead) and waits for
/// it, however long: it gets the loan's message, then the next, the dead
/// claim alone counted lost. (Without the bound the scan jumped past the
/// live loan to the committed message, and the loan's was lost.)
#[test]
fn passing_a_dead_small_claim_stops_at_a_live_loan() {
    let seg = segment(Policy::Reliable, 8192, 100);
    let mut r = seg.reader(0).unwrap();
    r.abandon_timeout = Duration::from_millis(20);
    let mut dying = seg.writer(None);
    let _dead = dying.claim(10).unwrap();
    let mut live = seg.writer(Some(1));
    let loan = live.claim(5).unwrap();
    seg.writer(None).publish(b"after").unwrap();
    let mut buf = [0u8; 100];
    let waited = r.receive_into(&mut buf, &Deadline::after(Some(Duration::from_millis(150))));
    assert_eq!(waited.unwrap_err().status, Status::Timeout, "waits at the live loan");
    // SAFETY: the loan has room for 5 bytes, ours until commit.
    unsafe { std::ptr::copy_nonoverlapping(b"loan!".as_ptr(), live.payload(&loan), 5) };
    live.commit(loan, 5).unwrap();
    for (want, seq) in [(&b"loan!"[..], 1), (&b"after"[..], 2)] {
        let (n, got, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!((&buf[..n], got), (want, seq));
    }
    assert_eq!(r.lost(), 1, "the dead claim alone");
}

/// Hostile: a publisher (it maps the segment writable) forges a claim
/// announcement inside a dead small claim, where the subscriber's scan
/// past the dead claim stops. The subscriber waits there while it stands
/// (its receives time out: no hang, no error, nothing delivered out of
/// turn); once it is withdrawn, the subscriber passes the rest of the dead
/// claim and gets every message, intact and in order, the dead claim
/// alone counted lost.
#[test]
fn a_forged_announcement_inside_a_dead_claim_holds_the_subscriber_until_withdrawn() {
    let seg = segment(Policy::Reliable, 8192, 600);
    let mut r = seg.reader(0).unwrap();
    r.abandon_timeout = Duration::from_millis(20);
    // 500 B: no CLAIMED stamp, a record of [0, 576).
    let _dead = seg.writer(None).claim(500).unwrap();
    let mut w = seg.writer(None);
    let n = 10;
    for i in 0..n {
        w.publish(&message(i, 40)).unwrap();
    }
    let forged = seg.seg.pub_slot(7).unwrap();
    forged.claim.store(128, Ordering::SeqCst);
    let mut buf = [0u8; 600];
    for _ in 0..3 {
        let held = r.receive_into(&mut buf, &Deadline::after(Some(Duration::from_millis(50))));
        assert_eq!(held.unwrap_err().status, Status::Timeout, "held at the forged claim");
    }
    forged.claim.store(aether::segment::SLOT_FREE, Ordering::SeqCst);
    for i in 0..n {
        let (len, seq, _) = r.receive_into(&mut buf, &soon()).unwrap();
        assert_eq!((&buf[..len], seq), (&message(i, 40)[..], i + 1), "message {i}");
    }
    assert_eq!(r.lost(), 1, "the dead claim alone");
}
