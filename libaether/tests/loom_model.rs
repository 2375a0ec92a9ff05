//! Model checking of the ring protocol with loom: every interleaving (up to a
//! preemption bound) of a scaled-down copy of the claim / commit / read /
//! overwrite-check / gating steps of `ring.rs`, under the C11 memory model.
//!
//! The model keeps the real protocol's shape and orderings and shrinks the
//! rest: the ring has a handful of one-word units, a record is 1-3 units
//! (header word + payload words), and the (position, seq) tail pair that the
//! real ring updates with one 128-bit CAS is one 64-bit word here (position
//! in the high half, seq in the low half) updated with one CAS.
//! Payload words are relaxed atomics: the real code reads them with plain
//! (volatile) copies that may race, and validates afterwards.

use loom::sync::atomic::{fence, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

const MSG: u64 = 1;
const PAD: u64 = 2;

struct Ring {
    units: u64,
    /// (position << 32) | next seq
    tail: AtomicU64,
    /// No write reaches this position; raised `step` past a claim before writing.
    horizon: AtomicU64,
    step: u64,
    /// Per unit: stamp = position * 4 + kind (0: never written).
    stamp: Vec<AtomicU64>,
    /// Per unit: header word (seq) or payload word.
    word: Vec<AtomicU64>,
    /// The one subscriber's cursor (reliable gating), and whether it gates.
    cursor: AtomicU64,
    gating: bool,
    /// Per publisher: the position of the claim it is making or writing, or
    /// FREE (publisher gating: no publisher laps another mid-write).
    announce: Vec<AtomicU64>,
    /// Caught-up laps (`LargeLaps::CaughtUp`): a claim past the first half
    /// of a lap pads to the next lap when the subscriber has read
    /// everything, and says where in `lap` (0: never), the lap line.
    caught_up_laps: bool,
    lap: AtomicU64,
}

const FREE: u64 = u64::MAX;
/// Publisher slots in the model.
const PUBLISHERS: usize = 2;

fn enc(pos: u64, kind: u64) -> u64 {
    pos * 4 + kind
}

/// The payload word `k` of message `seq`: checkable by the reader.
fn payload(seq: u64, k: u64) -> u64 {
    1000 * (seq + 1) + k
}

impl Ring {
    fn new(units: u64, gating: bool) -> Ring {
        Ring {
            units,
            tail: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            // A 64th of the ring in the real code (`horizon_step`); one unit here.
            step: (units / 8).max(1),
            stamp: (0..units).map(|_| AtomicU64::new(0)).collect(),
            word: (0..units).map(|_| AtomicU64::new(0)).collect(),
            cursor: AtomicU64::new(0),
            gating,
            announce: (0..PUBLISHERS).map(|_| AtomicU64::new(FREE)).collect(),
            caught_up_laps: false,
            lap: AtomicU64::new(0),
        }
    }

    fn next_lap(&self, pos: u64) -> u64 {
        (pos / self.units + 1) * self.units
    }

    /// The subscriber's cursor as publishers count it: at the lap line's
    /// padding, as past it (`slowest_gating_cursor`).
    fn gating_cursor(&self) -> u64 {
        let lap = self.lap.load(Ordering::Acquire);
        let c = self.cursor.load(Ordering::SeqCst);
        if c == lap && c != 0 {
            self.next_lap(c)
        } else {
            c
        }
    }

    fn at(&self, pos: u64) -> usize {
        (pos % self.units) as usize
    }

    /// Claim (one CAS, with padding at the wrap), then write, then stamp, as
    /// publisher `me` (its announcement slot).
    fn publish(&self, len: u64) -> u64 {
        self.publish_as(0, len)
    }

    fn publish_as(&self, me: usize, len: u64) -> u64 {
        let (pos, pad, end, seq) = loop {
            let t = self.tail.load(Ordering::Acquire);
            let (pos, seq) = (t >> 32, t & 0xffff_ffff);
            let off = pos % self.units;
            let mut pad = if off + len > self.units { self.units - off } else { 0 };
            // A caught-up lap: cut short past its first half while the
            // subscriber has read everything (`Writer::caught_up`).
            let caught_up = self.caught_up_laps && pad == 0 && 2 * off >= self.units && self.gating_cursor() >= pos;
            if caught_up {
                pad = self.units - off;
            }
            let end = pos + pad + len;
            if self.gating && end > self.gating_cursor() + self.units {
                thread::yield_now(); // reliable: wait for the subscriber
                continue;
            }
            // Publisher gating: end at most a ring past the lowest claim another
            // publisher announces (read after the tail: a later announcement
            // starts at or above the tail we read). Modelled on lossy rings
            // only: on a reliable one the subscriber's cursor, which cannot pass
            // an unfinished record, already holds every publisher back (the real
            // code announces on both; modelling it there too multiplies the
            // interleavings of `two_publishers_one_subscriber` by ~40).
            let announcing = !self.gating;
            let lowest = (0..PUBLISHERS)
                .filter(|&i| announcing && i != me)
                .map(|i| self.announce[i].load(Ordering::SeqCst))
                .fold(pos, u64::min);
            if end > lowest + self.units {
                thread::yield_now(); // wait for that publisher to finish
                continue;
            }
            // Announce, then claim; withdraw if the claim fails.
            if announcing {
                self.announce[me].store(pos, Ordering::Release);
            }
            if self
                .tail
                .compare_exchange(t, (end << 32) | (seq + 1), Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                if caught_up {
                    // Before the padding's stamp (`Writer::claim_marked`).
                    self.lap.fetch_max(pos, Ordering::Release);
                }
                break (pos, pad, end, seq);
            }
            if announcing {
                self.announce[me].store(FREE, Ordering::Relaxed);
            }
        };
        // The horizon is past every byte we write, and visible before any of
        // them (overwrite detection). A horizon only loaded counts too.
        if end > self.horizon.load(Ordering::Relaxed) {
            // Release: a reader that sees this horizon then sees our claim in the tail.
            self.horizon.fetch_max(end + self.step, Ordering::Release);
        }
        fence(Ordering::Release);
        if pad > 0 {
            self.stamp[self.at(pos)].store(enc(pos, PAD), Ordering::Release);
        }
        let rec = pos + pad;
        self.word[self.at(rec)].store(seq, Ordering::Relaxed);
        for k in 1..len {
            self.word[self.at(rec + k)].store(payload(seq, k), Ordering::Relaxed);
        }
        self.stamp[self.at(rec)].store(enc(rec, MSG), Ordering::Release);
        // Written: others may lap it now.
        if !self.gating {
            self.announce[me].store(FREE, Ordering::Release);
        }
        seq
    }

    fn tail_pos(&self) -> u64 {
        self.tail.load(Ordering::Acquire) >> 32
    }

    fn horizon(&self) -> u64 {
        self.horizon.load(Ordering::Acquire)
    }
}

/// What one read attempt at `pos` found.
enum Read {
    /// seq, units the record takes
    Message(u64, u64),
    Padding(u64),
    Nothing,
    Lapped,
}

struct Reader<'a> {
    ring: &'a Ring,
    pos: u64,
    next_seq: u64,
    delivered: u64,
    lost: u64,
}

impl<'a> Reader<'a> {
    fn new(ring: &'a Ring) -> Reader<'a> {
        Reader {
            ring,
            pos: 0,
            next_seq: 0,
            delivered: 0,
            lost: 0,
        }
    }

    /// One attempt, as `Reader::look` + `receive_into` do: acquire the stamp,
    /// read header and payload, fence, read the horizon; a torn copy is never accepted.
    fn try_read(&self, len: u64) -> Read {
        let r = self.ring;
        let s = r.stamp[r.at(self.pos)].load(Ordering::Acquire);
        if s == enc(self.pos, PAD) {
            return Read::Padding(r.units - self.pos % r.units);
        }
        if s != enc(self.pos, MSG) {
            // At the lap line's padding, perhaps written over: on at the
            // next lap (`Reader::skip_lap_padding`). The tail first: a tail a
            // ring ahead was claimed after the padding was made, so the lap
            // line read after it says so (read before it, loom finds it stale).
            let tail = r.tail_pos();
            fence(Ordering::Acquire);
            let lap = r.lap.load(Ordering::Acquire);
            if lap != 0 && lap == self.pos {
                return Read::Padding(r.units - self.pos % r.units);
            }
            return if tail > self.pos + r.units {
                Read::Lapped
            } else {
                Read::Nothing
            };
        }
        let seq = r.word[r.at(self.pos)].load(Ordering::Relaxed);
        let words: Vec<u64> = (1..len)
            .map(|k| r.word[r.at(self.pos + k)].load(Ordering::Relaxed))
            .collect();
        // Lossy only: a reliable publisher never laps a gating reader (and the
        // horizon, up to a step ahead of the tail, would flag good copies).
        fence(Ordering::Acquire);
        if !r.gating && r.horizon() > self.pos + r.units {
            return Read::Lapped; // possibly torn: discard
        }
        for (k, w) in words.iter().enumerate() {
            assert_eq!(*w, payload(seq, k as u64 + 1), "an accepted message is never torn");
        }
        Read::Message(seq, len)
    }

    /// Reads until `published` messages are delivered or counted lost.
    fn drain(&mut self, published: u64, len: u64) {
        self.drain_for(published, len, u64::MAX);
    }

    /// [`drain`](Self::drain), giving up after `attempts` reads (for models
    /// whose waiting loops loom cannot bound).
    fn drain_for(&mut self, published: u64, len: u64, mut attempts: u64) {
        while self.delivered + self.lost < published && attempts > 0 {
            attempts -= 1;
            match self.try_read(len) {
                Read::Message(seq, n) => {
                    assert!(seq >= self.next_seq, "sequence numbers only grow");
                    self.lost += seq - self.next_seq;
                    self.next_seq = seq + 1;
                    self.delivered += 1;
                    self.pos += n;
                    self.ring.cursor.store(self.pos, Ordering::SeqCst);
                }
                Read::Padding(n) => self.pos += n,
                Read::Lapped => {
                    // Resync to the oldest byte still valid; the gap counts as lost.
                    // The horizon first: the tail read after it covers the claim that raised it.
                    let h = self.ring.horizon();
                    let t = self.ring.tail_pos();
                    self.pos = self.pos.max(h.max(t) - self.ring.units);
                    // Find the next record start (the real reader scans stamps).
                    while self.pos < t {
                        let s = self.ring.stamp[self.ring.at(self.pos)].load(Ordering::Acquire);
                        if s == enc(self.pos, MSG) || s == enc(self.pos, PAD) {
                            break;
                        }
                        self.pos += 1;
                    }
                    if self.pos >= t {
                        // Everything up to the tail is gone: count it now, with the
                        // seq from the same tail word (a later one covers more).
                        let next = self.ring.tail.load(Ordering::Acquire);
                        if next >> 32 == t {
                            self.lost += (next & 0xffff_ffff) - self.next_seq;
                            self.next_seq = next & 0xffff_ffff;
                        }
                    }
                }
                Read::Nothing => thread::yield_now(),
            }
        }
    }
}

/// Explores every interleaving with at most `preemptions` forced thread switches.
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    // Waiting loops (a publisher for a peer's announcement, the reader for a
    // stamp) take many branches in some interleavings.
    b.max_branches = 20_000;
    b.check(f);
}

/// Two publishers and one subscriber: total order, gap-free sequence numbers,
/// intact messages, each publisher's messages in its own order.
#[test]
fn two_publishers_one_subscriber() {
    model(2, || {
        let ring = Arc::new(Ring::new(8, true));
        let pubs: Vec<_> = (0..PUBLISHERS)
            .map(|me| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let a = ring.publish_as(me, 2);
                    let b = ring.publish_as(me, 2);
                    assert!(b > a);
                })
            })
            .collect();
        let mut r = Reader::new(&ring);
        r.drain(4, 2);
        assert_eq!((r.delivered, r.lost), (4, 0));
        for p in pubs {
            p.join().unwrap();
        }
    });
}

/// Lossy, two publishers, a ring of 4 units and 2-unit messages: three
/// messages lap the ring while the subscriber reads. Neither publisher
/// laps the other mid-write (publisher gating) and a torn copy is never
/// accepted, whichever publisher raised the horizon (asserted in
/// `try_read`), and sequence numbers only grow. Safety only: the reader makes
/// a bounded number of attempts, because loom may serve a waiting loop stale
/// values without end (delivered + lost = published is checked with one
/// publisher above, and across processes in aetherd/tests/stress.rs).
#[test]
fn two_lossy_publishers_overwrite_during_read() {
    model(1, || {
        let ring = Arc::new(Ring::new(4, false));
        let pubs: Vec<_> = (0..PUBLISHERS)
            .map(|me| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    ring.publish_as(me, 2);
                    if me == 0 {
                        ring.publish_as(me, 2);
                    }
                })
            })
            .collect();
        let mut r = Reader::new(&ring);
        r.drain_for(3, 2, 6);
        assert!(r.delivered + r.lost <= 3);
        for p in pubs {
            p.join().unwrap();
        }
    });
}

/// One publisher thread sends `count` messages of `len` units into a ring of
/// `units` while this thread drains them; returns (delivered, lost).
fn one_publisher(units: u64, gating: bool, count: u64, len: u64) -> (u64, u64) {
    let ring = Arc::new(Ring::new(units, gating));
    let w = Arc::clone(&ring);
    let publisher = thread::spawn(move || {
        for _ in 0..count {
            w.publish(len);
        }
    });
    let mut r = Reader::new(&ring);
    r.drain(count, len);
    publisher.join().unwrap();
    (r.delivered, r.lost)
}

/// Lossy, a ring of 8 units and 2-unit messages: the publisher laps
/// the subscriber while it reads. A torn copy is never accepted (asserted in
/// `try_read`), and delivered + lost = published. (The horizon runs up to a
/// step, one unit here, ahead of the claims: in a smaller ring that step would
/// make the newest message look overwritten while the next is being written.)
#[test]
fn overwrite_during_read() {
    model(3, || {
        let (delivered, lost) = one_publisher(8, false, 5, 2);
        assert_eq!(delivered + lost, 5);
        assert!(delivered >= 1, "the last message is never overwritten");
    });
}

/// Records of 3 units in a ring of 4: every other claim pads to the end.
#[test]
fn wrap_around_padding() {
    model(3, || assert_eq!(one_publisher(4, true, 3, 3), (3, 0)));
}

/// Caught-up laps: a ring of 4 units, 1-unit messages. Two messages,
/// read: the next claim, half a lap in, finds the subscriber caught up and
/// cuts the lap short. The publisher counts a subscriber at that padding
/// as past it, so its next four messages may fill the next lap and write
/// over the padding before the subscriber gets there (whenever the
/// interleaving lets the publisher run ahead); the subscriber, finding its
/// position written over, goes on at the next lap by the lap line. Nothing
/// is lost or torn, all in order (the reader asserts both).
#[test]
fn caught_up_laps_lose_nothing() {
    model(3, || {
        let mut ring = Ring::new(4, true);
        ring.caught_up_laps = true;
        // The real horizon step is many records: a reader that took its
        // written-over padding for being lapped would resync past records.
        ring.step = 2;
        let ring = Arc::new(ring);
        let mut r = Reader::new(&ring);
        for _ in 0..2 {
            ring.publish(1);
        }
        r.drain(2, 1);
        let w = Arc::clone(&ring);
        let publisher = thread::spawn(move || {
            for _ in 0..4 {
                w.publish(1);
            }
        });
        r.drain(6, 1);
        publisher.join().unwrap();
        assert_eq!((r.delivered, r.lost), (6, 0));
        assert!(
            ring.lap.load(Ordering::SeqCst) >= 2,
            "a lap was cut short (at 2 at least)"
        );
    });
}

/// Reliable: the publisher waits for the subscriber's cursor, so a ring of 2
/// units carries 4 messages with nothing lost.
#[test]
fn reliable_gating_loses_nothing() {
    model(3, || assert_eq!(one_publisher(2, true, 4, 1), (4, 0)));
}

/// The data word's sleepers and a publisher that wakes them once per sleep
/// (`wake_readers`, `wait_once`): the publisher stores a message, fences,
/// and bumps the word (and wakes every sleeper) only when the sleeps count
/// moved since its last bump; a subscriber counts itself, reads the word,
/// counts its sleep, fences, looks for the message once more, and sleeps
/// unless the word moved. FUTEX_WAIT and FUTEX_WAKE are a lock and a
/// condition variable, as the kernel's bucket lock makes them: the word is
/// compared under the lock, and a wake made before the sleep is lost. The
/// real fences are asymmetric (the publisher's compiler fence pairs with
/// the sleeper's `membarrier`, a full fence on every CPU): both are
/// `SeqCst` fences here. A subscriber that slept through the last message
/// would leave the model deadlocked (as it does with the sleep counted
/// before the word is read).
///
/// The space word has the same protocol the other way round: publishers
/// asleep for space, and every subscriber of the topic a waker with its own
/// count of its last wake (`Reader::wake_publishers`); the sleeper then
/// waits for the slowest of them. `progress` holds one count per waker.
struct DataWait {
    progress: Vec<AtomicU64>,
    word: AtomicU64,
    waiters: AtomicU64,
    sleeps: AtomicU64,
    bucket: loom::sync::Mutex<()>,
    futex: loom::sync::Condvar,
}

impl DataWait {
    fn new(wakers: usize) -> DataWait {
        DataWait {
            progress: (0..wakers).map(|_| AtomicU64::new(0)).collect(),
            word: AtomicU64::new(0),
            waiters: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            bucket: loom::sync::Mutex::new(()),
            futex: loom::sync::Condvar::new(),
        }
    }

    /// How far every waker has got.
    fn done(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }
}

fn sleeper_sees(w: &DataWait, want: u64) {
    loop {
        if w.done() >= want {
            return;
        }
        w.waiters.fetch_add(1, Ordering::SeqCst);
        let word = w.word.load(Ordering::SeqCst);
        w.sleeps.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if w.done() < want {
            let bucket = w.bucket.lock().unwrap();
            if w.word.load(Ordering::SeqCst) == word {
                drop(w.futex.wait(bucket).unwrap());
            }
        }
        w.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waker `k`: its progress (a publisher's commit, a subscriber's cursor),
/// then the wake, once per sleep it has not seen.
fn publish_and_wake(w: &DataWait, k: usize, messages: u64) {
    let mut woke_at = u64::MAX;
    for m in 1..=messages {
        w.progress[k].store(m, Ordering::Release);
        fence(Ordering::SeqCst);
        if w.waiters.load(Ordering::Relaxed) != 0 {
            let sleeps = w.sleeps.load(Ordering::Relaxed);
            if sleeps != woke_at {
                woke_at = sleeps;
                w.word.fetch_add(1, Ordering::SeqCst);
                let _bucket = w.bucket.lock().unwrap();
                w.futex.notify_all();
            }
        }
    }
}

#[test]
fn a_publisher_wakes_once_per_sleep_and_no_sleeper_is_missed() {
    for (sleepers, messages) in [(1, 3), (2, 2)] {
        model(3, move || {
            let w = Arc::new(DataWait::new(1));
            let subs: Vec<_> = (0..sleepers)
                .map(|_| {
                    let w = Arc::clone(&w);
                    thread::spawn(move || sleeper_sees(&w, messages))
                })
                .collect();
            publish_and_wake(&w, 0, messages);
            for s in subs {
                s.join().unwrap();
            }
        });
    }
}

/// The space word: two subscribers reading (each waking with its own
/// count of its last wake) and a publisher asleep until both have read
/// two messages. A wake skipped by both (each thinking it had woken for
/// that sleep) would leave the model deadlocked.
#[test]
fn subscribers_wake_a_publisher_once_per_sleep_and_it_is_never_missed() {
    model(3, || {
        let w = Arc::new(DataWait::new(2));
        let sleeper = {
            let w = Arc::clone(&w);
            thread::spawn(move || sleeper_sees(&w, 2))
        };
        let other = {
            let w = Arc::clone(&w);
            thread::spawn(move || publish_and_wake(&w, 1, 2))
        };
        publish_and_wake(&w, 0, 2);
        other.join().unwrap();
        sleeper.join().unwrap();
    });
}
