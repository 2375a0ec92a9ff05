//! The topic ring: variable-length records packed in a byte ring, claimed by
//! any number of publishers and read by any number of subscribers, each with
//! its own cursor.
//!
//! The design follows Aeron's log buffer and Agrona's broadcast buffer:
//!
//! * **Claim.** A publisher claims `[pos, pos + stride)` and the sequence
//!   number `seq` with one 128-bit compare-and-swap on the tail pair
//!   `(position, next seq)`. Records are 64-byte aligned and never straddle the
//!   end of the ring: a claim that would is preceded, in the same CAS, by a
//!   padding record up to the end. A reliable publisher pads large records
//!   (32 KiB and up) to the next lap once past its first 256 KiB when every
//!   subscriber has read all there is (by default; always or never if asked),
//!   so that it writes lines still in its cache ([`pad_before`],
//!   [`LargeLaps`]). A subscriber found at such a padding is as good as past
//!   it, so the ring still holds its size of messages
//!   ([`LapLine`](crate::segment::LapLine)).
//! * **Stamp.** Each record starts with a 64-bit stamp `(pos | kind) ^ salt`:
//!   the absolute position tells the current record from one a lap older, the
//!   kind says claimed / message / padding / aborted, and the per-segment salt
//!   makes payload bytes that happen to look like a stamp vanishingly unlikely.
//!   A publisher writes the header, then stamps CLAIMED, writes the payload and
//!   stamps MESSAGE (release); a reader acquires the stamp before reading.
//! * **Overwrite.** Before writing, a publisher makes sure the segment's
//!   horizon (a position no write reaches) is past its claim, raising it a
//!   64th of a ring at a time, then fences. In lossy mode a reader copies a
//!   record and then reads the horizon: if it has passed `pos + ring_size`,
//!   the bytes may be torn and the copy is discarded (by the fences, a torn
//!   read always sees the raised horizon). The horizon line is written about
//!   64 times per ring, so readers do not pull the tail line, which every
//!   claim writes, away from publishers. A lapped reader scans forward from
//!   the oldest byte still valid to the next stamp, and counts what it missed
//!   from the sequence numbers.
//! * **Reliable.** Publishers also wait until the slowest gating subscriber's
//!   cursor is within one ring of the claim's end.
//! * **Wake-up.** Readers spin, then sleep on a futex word in the segment; a
//!   publisher calls FUTEX_WAKE only when the waiter count is non-zero.
//! * **Abandon.** A record left CLAIMED longer than the abandon timeout (its
//!   publisher died between claim and commit) is skipped and counted lost.
//!
//! Everything read from the segment is validated against the process-local
//! [`Geometry`] before use: every access stays inside the ring whatever the
//! shared bytes say.

use crate::error::{Error, Result, Status};
use crate::segment::{
    wake_all, Cursor, CursorLine, DataLine, GateLine, Geometry, Header, Policy, PubSlot, Segment, SpaceLine, StatsLine,
    SubscriberEntry, Waiters, WaitersPage, MAX_PUBLISHERS, RECORD_HEADER, SLOT_FREE, SLOT_GATING, TOPIC_CLOSED,
    TOPIC_DELETED, TOPIC_DRAINING, TOPIC_LIVE,
};
use crate::sys::{self, atomic128::Pair, futex, membarrier, tsc::WallClock};
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A place in the segment's mapping, looked up once so that the hot path
/// skips the offset arithmetic. Only a [`Writer`] or [`Reader`] holds one,
/// next to the `Arc<Segment>` that keeps the mapping alive.
struct InSegment<T>(NonNull<T>);

// SAFETY: it points into a shared mapping (`Mapping` is Send + Sync) that its
// owner keeps alive; the pointees are atomics or ring bytes accessed with
// atomics and validated volatile copies.
unsafe impl<T> Send for InSegment<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for InSegment<T> {}

impl<T> InSegment<T> {
    fn new(r: &T) -> InSegment<T> {
        InSegment(NonNull::from(r))
    }
    fn ptr(&self) -> *mut T {
        self.0.as_ptr()
    }
    /// For types made of atomics only (the subscriber and publisher slots).
    fn get(&self) -> &T {
        // SAFETY: the mapping outlives `self` (see the type's doc); the
        // borrow of `self` bounds the reference; `T` is atomics only, so
        // other processes writing it do not race with the reference.
        unsafe { self.0.as_ref() }
    }
}

/// The segment header's shared lines. Only fields are borrowed, never the
/// whole `Header` (its metadata is plain data another process could write).
impl InSegment<Header> {
    fn tail(&self) -> &Pair {
        // SAFETY: the header is in the live mapping (see InSegment); the
        // tail line is atomics only.
        unsafe { &(*self.ptr()).tail.pair }
    }
    fn horizon(&self) -> &AtomicU64 {
        // SAFETY: as for `tail`.
        unsafe { &(*self.ptr()).horizon.horizon }
    }
    fn data_notify(&self) -> &DataLine {
        // SAFETY: as for `tail`.
        unsafe { &(*self.ptr()).data_notify }
    }
    fn space_notify(&self) -> &SpaceLine {
        // SAFETY: as for `tail`.
        unsafe { &(*self.ptr()).space_notify }
    }
    fn stats(&self) -> &StatsLine {
        // SAFETY: as for `tail`.
        unsafe { &(*self.ptr()).stats }
    }
    fn lap_padded_at(&self) -> &AtomicU64 {
        // SAFETY: as for `tail`.
        unsafe { &(*self.ptr()).lap.padded_at }
    }
}

/// The header and ring start of `seg`, for a Writer or Reader that holds `seg`.
fn in_segment(seg: &Segment) -> (InSegment<Header>, InSegment<u8>) {
    // SAFETY: both are non-null addresses inside the mapping (header at its
    // start, ring at the validated ring_offset).
    unsafe {
        (
            InSegment(NonNull::new_unchecked(seg.header().cast_mut())),
            InSegment(NonNull::new_unchecked(seg.ring_ptr())),
        )
    }
}

const ALIGN: u64 = 64;

/// Spins a receive makes on its fast path before the general one (which
/// counts its own toward the spin budget).
const FAST_SPINS: u32 = 64;

/// Copies up to this size are published without a CLAIMED stamp (see `Writer::publish`).
const SMALL_COPY: usize = 1024;

const KIND_CLAIMED: u64 = 1;
const KIND_MESSAGE: u64 = 2;
const KIND_PADDING: u64 = 3;
const KIND_ABORTED: u64 = 4;
/// A message published for another broker (the daemon's bridge): an
/// [`Origin`] of [`ORIGIN_BYTES`] follows its payload, inside the stride.
const KIND_REMOTE: u64 = 5;

/// Bytes of the origin a remote message carries after its payload: the
/// origin broker's id and the message's seq there. A remote message may
/// therefore be at most `max_message - ORIGIN_BYTES` long.
pub const ORIGIN_BYTES: usize = 16;

/// The timestamp of a message whose publisher sends none
/// (`Publisher::set_timestamps(false)`): no clock reads 0.
pub const NO_TIMESTAMP: u64 = 0;

/// Where a message bridged from another broker was first published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The origin broker's id: [`broker_id`] of its name.
    pub broker: u64,
    /// The message's sequence number on the origin broker.
    pub seq: u64,
}

/// The id of the broker named `name` in an [`Origin`]: 64-bit FNV-1a of the
/// name's bytes with the lowest bit set, so never 0 (`aether-cli stats
/// --json` shows each linked broker's).
pub fn broker_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1
}

#[repr(C)]
struct RecordHeader {
    stamp: AtomicU64,
    len: u32,
    stride: u32,
    seq: u64,
    timestamp_ns: u64,
}
const _: () = assert!(std::mem::size_of::<RecordHeader>() == RECORD_HEADER);

fn stamp(salt: u64, pos: u64, kind: u64) -> u64 {
    (pos | kind) ^ salt
}

fn decode(salt: u64, v: u64) -> (u64, u64) {
    let x = v ^ salt;
    (x & !(ALIGN - 1), x & (ALIGN - 1))
}

/// How far past a claim a publisher raises the horizon: rarely enough that
/// readers keep the line cached, little enough that the early "overwritten"
/// verdicts it causes (a reader within this distance of being lapped) are rare.
pub fn horizon_step(ring_size: u64) -> u64 {
    (ring_size / 64).max(ALIGN)
}

/// Records from this size up are large: they keep to the start of each lap
/// ([`pad_before`]).
pub const LARGE_RECORD: u64 = 32 * 1024;
/// The bytes of each lap that large records keep to, at least (four records
/// when that is more): small enough that a publisher's writes stay in its
/// core's L2 cache (512 KiB and up on current server cores), so that it
/// writes lines it already holds instead of streaming through the ring.
pub const LARGE_LAP: u64 = 256 * 1024;

/// Padding a record of `stride` bytes claimed at offset `off` of a ring of
/// `ring` bytes takes first, to the end of the lap: when it would straddle
/// the end, and, with `short_laps`, when it is large and past the part of
/// the lap large records keep to. A large message then goes back to lines
/// its publisher wrote a few messages earlier and still has in cache; the
/// ring's size is unchanged, but a lap holds only a few large records, and
/// so does the ring while a subscriber has not yet passed the padding
/// (docs/ARCHITECTURE.md, "Large messages"). A reader steps over padding
/// to the end of the lap whatever its length, so readers need not know
/// this rule (only the lap line's, [`LargeLaps::CaughtUp`]).
#[inline(always)]
pub fn pad_before(off: u64, stride: u64, ring: u64, short_laps: bool) -> u64 {
    if off + stride > ring || (short_laps && stride >= LARGE_RECORD && off >= (4 * stride).max(LARGE_LAP)) {
        ring - off
    } else {
        0
    }
}

/// A reliable publisher's short or whole laps for its large records
/// (`pad_before`), as asked, or chosen when asked to choose
/// ([`LargeLaps::Measured`]). Short laps keep its writes in its own cache:
/// fastest when subscribers read little of each message (64 KiB, head and
/// tail read: 1.2-1.6x). But a subscriber that reads every byte
/// still holds the lines of a lap of a few records when the publisher comes
/// back to them, and each store then waits for its line to be taken back:
/// whole laps let them age out (64 KiB, every byte read: a large record
/// takes twice as long to write in short laps). What subscribers read is
/// not visible here, so the publisher measures: after a first lap in whole
/// laps (its writes find the topic's pages not yet mapped), the median
/// time from claim to commit over [`LAP_TRIAL`] large records in each kind
/// (after a lap in it: the first lap after a change finds lines nobody
/// touched for a while), then keeps the faster for [`LAP_KEEP`] large
/// records (or 16 whole laps, if more), and tries again
/// (docs/ARCHITECTURE.md, "Large messages").
/// `AETHER_LARGE_LAPS` or [`Writer::set_large_laps`] asks for it.
#[derive(Debug)]
struct LapChoice {
    /// Large records past a lap's first 256 KiB go to the next lap (with
    /// [`LargeLaps::CaughtUp`], only when every gating subscriber is there).
    short: bool,
    /// What was asked: short or whole laps are never tried.
    asked: LargeLaps,
    /// Large records left before the next trial; 0 while trying.
    keep: u64,
    /// While trying: no timing until a record at or past this position
    /// (`u64::MAX`: until a lap past the first large record).
    warm_from: u64,
    /// The median of each kind tried in this trial (whole, short).
    tried: [Option<u64>; 2],
    samples: [u64; LAP_TRIAL],
    n: usize,
    /// When the large record being written was claimed (TSC ticks).
    claimed_at: u64,
}

/// Where a reliable publisher puts its large records (32 KiB and up):
/// [`Writer::set_large_laps`], `AETHER_LARGE_LAPS`.
///
/// A lap cut short ([`Short`](Self::Short), [`Measured`](Self::Measured)
/// while in short laps) costs buffering: while a subscriber has not passed
/// the lap's padding, the ring holds only the four large records (or 256
/// KiB) at its start, not the ring's size of them, so code that publishes a
/// batch the ring holds before reading it (one thread doing both, say)
/// would wait for itself. [`CaughtUp`](Self::CaughtUp), the default, cuts a
/// lap short only where that costs nothing: when every subscriber has read
/// everything, a subscriber at the padding counts as past it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LargeLaps {
    /// Every lap whole, as small records: a ring holds its size of messages.
    Whole = 0,
    /// Each lap only to its first 256 KiB (or four records): best when
    /// subscribers read little of each message (and keep up).
    Short = 1,
    /// Short laps or whole ones, whichever it measures faster, tried again
    /// now and then (with the buffering of short laps while in them).
    Measured = 2,
    /// A lap cut short past its first 256 KiB (or four records) when every
    /// gating subscriber has read everything there (waiting a moment, once
    /// a lap, for one that is reading the last record), else whole (the
    /// default). Subscribers that keep up with large messages they read
    /// little of get short laps, the fast kind for them; those that fall
    /// behind (or read every byte, which takes longer than writing it) get
    /// whole laps; and a ring still holds its size of messages.
    #[default]
    CaughtUp = 3,
}

impl LargeLaps {
    /// The choice of a C `aether_large_laps` value; `None` for an unknown one.
    pub fn from_u32(v: u32) -> Option<LargeLaps> {
        match v {
            0 => Some(LargeLaps::Whole),
            1 => Some(LargeLaps::Short),
            2 => Some(LargeLaps::Measured),
            3 => Some(LargeLaps::CaughtUp),
            _ => None,
        }
    }

    /// "whole", "short", "measured" or "caught-up": the name in
    /// `AETHER_LARGE_LAPS` and in Python.
    pub fn name(self) -> &'static str {
        match self {
            LargeLaps::Whole => "whole",
            LargeLaps::Short => "short",
            LargeLaps::Measured => "measured",
            LargeLaps::CaughtUp => "caught-up",
        }
    }

    /// The choice named `name` (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<LargeLaps> {
        [
            LargeLaps::Whole,
            LargeLaps::Short,
            LargeLaps::Measured,
            LargeLaps::CaughtUp,
        ]
        .into_iter()
        .find(|l| l.name() == name)
    }
}

/// Large records timed in each kind of lap per trial.
const LAP_TRIAL: usize = 32;
/// Large records between trials.
const LAP_KEEP: u64 = 4096;

impl LapChoice {
    /// As `AETHER_LARGE_LAPS` says: `whole`, `short`, `measured`, or
    /// (unset, or anything else) `caught-up`.
    fn from_env() -> LapChoice {
        let asked = std::env::var("AETHER_LARGE_LAPS").ok();
        LapChoice::new(asked.as_deref().and_then(LargeLaps::from_name).unwrap_or_default())
    }

    fn new(laps: LargeLaps) -> LapChoice {
        LapChoice {
            short: matches!(laps, LargeLaps::Short | LargeLaps::CaughtUp),
            asked: laps,
            keep: 0,
            warm_from: u64::MAX,
            tried: [None; 2],
            samples: [0; LAP_TRIAL],
            n: 0,
            claimed_at: 0,
        }
    }

    #[inline]
    fn claimed(&mut self) {
        if self.asked == LargeLaps::Measured {
            self.claimed_at = sys::tsc::rdtsc();
        }
    }

    #[inline]
    fn committed(&mut self, pos: u64, stride: u64, ring: u64) {
        if self.asked == LargeLaps::Measured {
            let took = sys::tsc::rdtsc().wrapping_sub(self.claimed_at);
            self.record(took, pos, stride, ring);
        }
    }

    /// Counts a large record at `pos` that took `took` ticks from claim to commit.
    fn record(&mut self, took: u64, pos: u64, stride: u64, ring: u64) {
        if self.keep > 0 {
            self.keep -= 1;
            return;
        }
        if self.warm_from == u64::MAX {
            self.warm_from = pos.saturating_add(ring);
        }
        if pos < self.warm_from {
            return;
        }
        self.samples[self.n] = took;
        self.n += 1;
        if self.n < LAP_TRIAL {
            return;
        }
        self.n = 0;
        self.samples.sort_unstable();
        self.tried[usize::from(self.short)] = Some(self.samples[LAP_TRIAL / 2]);
        match self.tried {
            [Some(whole), Some(short)] => {
                self.short = short < whole;
                self.keep = LAP_KEEP.max(16 * (ring / stride));
                self.tried = [None; 2];
            }
            _ => {
                self.short = !self.short;
                self.warm_from = pos.saturating_add(ring);
            }
        }
    }
}

/// Where the lap after the one holding `pos` starts; `None` in the last lap
/// below 2^64 (only a forged position is there), which has no next.
fn next_lap(pos: u64, ring: u64) -> Option<u64> {
    (pos | (ring - 1)).checked_add(1)
}

/// How long a publisher about to cut a lap short waits, once a lap, for a
/// subscriber reading the last record to finish ([`LargeLaps::CaughtUp`]):
/// long enough for one that reads a little of a large message (hundreds of
/// nanoseconds), little beside writing the lap's records.
const CATCH_UP_NS: u64 = 1_000;

/// Bytes a message of `len` bytes takes in the ring.
pub fn stride_for(len: usize) -> u64 {
    (RECORD_HEADER as u64 + len as u64).div_ceil(ALIGN) * ALIGN
}

/// How a waiting call passes the time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Busy-spin on the ring: lowest latency, burns a core.
    Spin = 0,
    /// Spin, then `sched_yield` between checks.
    Yield = 1,
    /// Spin, then sleep on the segment's futex (default).
    Futex = 2,
}

impl WaitStrategy {
    /// The strategy of a C `aether_wait` value; `None` for an unknown one.
    pub fn from_u32(v: u32) -> Option<WaitStrategy> {
        match v {
            0 => Some(WaitStrategy::Spin),
            1 => Some(WaitStrategy::Yield),
            2 => Some(WaitStrategy::Futex),
            _ => None,
        }
    }
}

/// How a receive (or a reliable publish) waits: spin first, then per `strategy`.
#[derive(Clone, Copy, Debug)]
pub struct WaitConfig {
    /// What to do once the spins are spent (default: futex sleep).
    pub strategy: WaitStrategy,
    /// Checks made by spinning before yielding or sleeping. A futex waiter
    /// spins less (down to 16) while its sleeps outlast a whole spin, and
    /// all of it again once one would have paid (`SpinBudget`).
    pub spin: u32,
}

/// Rounds a waiter spins before it sleeps, by default.
const DEFAULT_SPIN: u32 = 2000;

impl Default for WaitConfig {
    fn default() -> Self {
        WaitConfig {
            strategy: WaitStrategy::Futex,
            spin: DEFAULT_SPIN,
        }
    }
}

/// A monotonic deadline, started lazily: the clock is read the first time a
/// wait asks how long is left, so a call that finds its message (or its
/// space) at once never reads the clock (~20 ns) at all.
#[derive(Clone, Debug)]
pub struct Deadline {
    /// The timeout in ns; `None` waits forever.
    timeout_ns: Option<u64>,
    /// The absolute monotonic deadline, once started.
    at: std::cell::Cell<Option<u64>>,
}

impl Deadline {
    /// From a C-style timeout: negative means forever, 0 means do not wait.
    pub fn from_timeout_ns(t: i64) -> Deadline {
        Deadline {
            timeout_ns: (t >= 0).then_some(t as u64),
            at: std::cell::Cell::new(None),
        }
    }
    /// `d` from the first wait on (`None`: forever).
    pub fn after(d: Option<Duration>) -> Deadline {
        Deadline::from_timeout_ns(d.map_or(-1, |d| d.as_nanos().min(i64::MAX as u128) as i64))
    }
    /// Nanoseconds left (`None`: unbounded); `Some(0)` once passed.
    pub fn remaining(&self) -> Option<u64> {
        let timeout = self.timeout_ns?;
        let now = sys::monotonic_ns();
        let at = self.at.get().unwrap_or_else(|| {
            let at = now.saturating_add(timeout);
            self.at.set(Some(at));
            at
        });
        Some(at.saturating_sub(now))
    }
}

/// Who wakes a sleeper, which decides how it sleeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waker {
    /// A publisher or subscriber on its hot path, which skips its store-load
    /// fence ([`membarrier::light`]): the sleeper pays with a barrier on
    /// every CPU, and any wake on the word is for it.
    Light,
    /// The daemon's log writer, whose wake is all `SeqCst` (a sync is
    /// rare: no barrier needed), and which wakes only the sleepers whose
    /// [`futex::wait_bits`] mask meets `bits` (see [`SyncedLine::bit`](crate::segment::SyncedLine::bit)).
    Fenced { bits: u32 },
}

/// The fewest turns an adaptive spin keeps (or `WaitConfig::spin`, if fewer).
const MIN_SPIN: u32 = 16;

/// How much of its `WaitConfig::spin` a futex waiter spins this time.
/// Spinning saves a sleep and a wake-up only when what is waited for
/// comes within the spin; on a loaded machine, a spin that never pays
/// takes the CPU the waited-for party needs (a bridged 64 KiB subscriber
/// and publisher, waiting ~150 us a message, spent a fifth of two CPUs
/// spinning: docs/BENCHMARKS.md, session 14). So, after each wait that
/// slept: if it lasted longer than a whole spin would have (the full
/// spin would not have caught it either), spin half as long next time,
/// down to [`MIN_SPIN`] turns; if not, the full spin again. After a wait
/// that ended while spinning, twice as long (up to the full spin). A wait
/// that timed out after sleeping counts as a long one. Other strategies
/// spin in full.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpinBudget {
    /// At most this many turns (`u32::MAX`: the configured spin).
    turns: u32,
}

impl SpinBudget {
    pub(crate) const FULL: SpinBudget = SpinBudget { turns: u32::MAX };

    /// The turns to spin this wait, under `cfg`.
    #[inline(always)]
    fn limit(self, cfg: &WaitConfig) -> u32 {
        match cfg.strategy {
            WaitStrategy::Futex => self.turns.min(cfg.spin),
            _ => cfg.spin,
        }
    }

    /// After a wait under `cfg` that went `round` turns (0: it did not
    /// wait) and slept `slept_ns` (0: it did not sleep), and then found what
    /// it waited for (`found`) or timed out; each turn takes about
    /// `ns_per_turn()`. A timeout counts only after a sleep (nothing came
    /// in that long); one while spinning says nothing.
    fn after_wait(
        &mut self,
        cfg: &WaitConfig,
        round: u32,
        slept_ns: u64,
        found: bool,
        ns_per_turn: impl FnOnce() -> u64,
    ) {
        if round == 0 || (!found && slept_ns == 0) {
            return;
        }
        let limit = self.limit(cfg);
        let spun = round.min(limit);
        self.turns = if slept_ns == 0 {
            limit.saturating_mul(2)
        } else {
            let ns_per_turn = ns_per_turn();
            let waited = (spun as u64).saturating_mul(ns_per_turn).saturating_add(slept_ns);
            if waited <= (cfg.spin as u64).saturating_mul(ns_per_turn) {
                u32::MAX
            } else {
                (limit / 2).max(MIN_SPIN)
            }
        };
        if self.turns >= cfg.spin {
            self.turns = u32::MAX;
        }
    }
}

/// About how long one turn of a spin takes here (a `PAUSE` is ~30 ns on
/// some CPUs, a few on others), measured once per process, when its first
/// publisher or subscriber opens (~30 us here, then nothing): the least of
/// four measurements, so that one preempted does not count.
fn ns_per_turn() -> u64 {
    static NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NS.get_or_init(|| {
        (0..4)
            .map(|_| {
                let t = sys::monotonic_ns();
                for _ in 0..250 {
                    std::hint::spin_loop();
                }
                sys::monotonic_ns().saturating_sub(t) / 250
            })
            .min()
            .unwrap_or(1)
            .max(1)
    })
}

/// Spins, yields or sleeps once, per `cfg` (the caller checks its condition
/// between calls; a futex sleep on `word`, counted in `waiters`, re-checks
/// `ready()` after announcing itself). `round` counts calls for the current
/// wait. `cap_ns` bounds one sleep, and `slept` counts them (statistics).
/// Returns how long it slept on the futex (0: it did not).
/// With `announce`, a sleeper bumps it after reading the word it sleeps on,
/// before its re-check (see [`DataWaitLine::sleeps`]).
///
/// [`DataWaitLine::sleeps`]: crate::segment::DataWaitLine::sleeps
#[allow(clippy::too_many_arguments)]
fn wait_once(
    cfg: &WaitConfig,
    word: &AtomicU32,
    waker: Waker,
    waiters: &AtomicU32,
    announce: Option<&AtomicU64>,
    slept: &AtomicU64,
    round: &mut u32,
    deadline: &Deadline,
    cap_ns: u64,
    ready: impl Fn() -> bool,
) -> Result<u64> {
    *round = round.saturating_add(1);
    let spinning = *round <= cfg.spin || cfg.strategy == WaitStrategy::Spin;
    // Reading the clock costs ~20 ns: while spinning, look at it only now
    // and then (and at every turn once `round` stopped counting).
    if (!spinning || (*round).is_multiple_of(64) || *round == u32::MAX) && deadline.remaining() == Some(0) {
        return Err(Error::new(Status::Timeout, "timed out waiting"));
    }
    if spinning {
        std::hint::spin_loop();
        return Ok(0);
    }
    let mut slept_ns = 0;
    match cfg.strategy {
        WaitStrategy::Spin => unreachable!(),
        WaitStrategy::Yield => {
            std::thread::yield_now();
        }
        WaitStrategy::Futex => {
            // Announce the sleeper, then re-check: either the waker sees the
            // count or we see its write (a publisher's light fence pairs with
            // our heavy one, see `sys::membarrier`; the log writer fences).
            waiters.fetch_add(1, Ordering::SeqCst);
            // The word before the announcement: a waker that sees the
            // announcement bumps the word after, so we cannot sleep through it.
            let w = word.load(Ordering::SeqCst);
            if let Some(a) = announce {
                a.fetch_add(1, Ordering::SeqCst);
            }
            // Without the barrier a waker may miss us: sleep in short slices.
            let cap_ns = if waker != Waker::Light || membarrier::heavy() {
                cap_ns
            } else {
                cap_ns.min(1_000_000)
            };
            if !ready() {
                slept.fetch_add(1, Ordering::Relaxed);
                let left = deadline.remaining().unwrap_or(u64::MAX).min(cap_ns);
                // USDT: the word slept on (a subscriber's data word, a
                // publisher's space or sync word), around the sleep.
                #[cfg(not(miri))] // (USDT probes are assembly, which Miri cannot run)
                probe::probe!(aether, wait_begin, word.as_ptr());
                let t = sys::monotonic_ns();
                match waker {
                    Waker::Light => futex::wait(word, w, Some(Duration::from_nanos(left))),
                    Waker::Fenced { bits } => futex::wait_bits(word, w, Some(Duration::from_nanos(left)), bits),
                }
                slept_ns = sys::monotonic_ns().saturating_sub(t).max(1);
                #[cfg(not(miri))]
                probe::probe!(aether, wait_end, word.as_ptr());
            }
            waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(slept_ns)
}

/// Wakes sleepers on `word` if `waiters` counts any and one announced a
/// sleep (`sleeps`) since this waker's last wake (`woke_at`, this waker's
/// own): a sleeper woken but not yet running stays counted, and would cost
/// a FUTEX_WAKE per call until it runs. Call after the write they wait for.
/// Both ways: publishers waking subscribers on the data word, subscribers
/// waking publishers on the space word.
#[inline(always)]
fn wake(word: &AtomicU32, waiters: &AtomicU32, sleeps: &AtomicU64, woke_at: &AtomicU64, wakes: &AtomicU64) {
    membarrier::light();
    if waiters.load(Ordering::Relaxed) != 0 {
        let s = sleeps.load(Ordering::Relaxed);
        if s != woke_at.load(Ordering::Relaxed) {
            woke_at.store(s, Ordering::Relaxed);
            wake_all(word);
            wakes.fetch_add(1, Ordering::Relaxed);
            #[cfg(not(miri))]
            probe::probe!(aether, wake, word.as_ptr());
        }
    }
}

/// The cursor pages of the subscribers that hold a reliable publisher back,
/// as of one `slots_gen`: a spinning publisher reads them again and again,
/// and the directory changes only with that count (a slot that starts or
/// stops gating bumps it).
struct GatingCursors {
    /// The `slots_gen` they were listed under (`u64::MAX`: never).
    gen: u64,
    /// The slots that gated then.
    slots: Vec<u32>,
    /// By slot: the page, with the owner generation it was handed out under.
    pages: Vec<Option<(u64, Arc<Cursor>)>>,
}

/// The lowest cursor of the subscribers that hold reliable publishers back
/// (`u64::MAX` if none does), from the pages in `gating`. A gating slot
/// whose page is not mapped (under its current owner generation) holds the
/// publisher back entirely: it is treated as unread from position 0. A
/// cursor at the padding of the lap line counts as at the next lap: it was
/// made while every gating subscriber was there, and whoever reads there
/// next goes on at the next lap whatever is written over it
/// ([`LargeLaps::CaughtUp`]).
fn slowest_gating_cursor(seg: &Segment, gating: &GatingCursors) -> u64 {
    let padded_at = seg.lap_padded_at().load(Ordering::Acquire);
    let ring = seg.geometry().ring_size;
    let mut min = u64::MAX;
    for &i in &gating.slots {
        let Some(e) = seg.slot(i) else { break };
        if e.flags.load(Ordering::SeqCst) & SLOT_GATING == 0 {
            continue;
        }
        let gen = e.owner_gen.load(Ordering::SeqCst);
        let c = match &gating.pages[i as usize] {
            Some((g, page)) if *g == gen => page.line().cursor.load(Ordering::SeqCst),
            _ => 0,
        };
        let c = if c == padded_at && c != 0 {
            next_lap(c, ring).unwrap_or(u64::MAX)
        } else {
            c
        };
        min = min.min(c);
    }
    min
}

/// Where a reliable publisher gets the cursor pages of gating subscribers it
/// has not mapped yet: the daemon hands them over (read-only); an in-process
/// user (the ring's tests) keeps them in a table.
pub trait SubscriberSource: Send {
    /// The pages of the subscriber slots `wanted` (slot, owner generation)
    /// that are still handed out under that generation, with their slots and
    /// generations; slots taken back meanwhile are left out.
    fn cursors(&mut self, wanted: &[(u32, u64)]) -> Result<Vec<(u32, u64, Arc<Cursor>)>>;

    /// The eventfds of the pollable subscribers among `wanted` (slot, owner
    /// generation), as [`cursors`](Self::cursors) gives pages: what a
    /// publisher writes to when their bit is armed (see `PollLine`).
    fn notifiers(&mut self, wanted: &[(u32, u64)]) -> Result<Vec<(u32, u64, OwnedFd)>>;
}

/// The error a closed, draining or deleted topic, or one whose daemon died,
/// gives, if any. One line, which publishers read on every claim anyway.
#[inline(always)]
fn gate_error(gate: &GateLine, publishing: bool) -> Option<Error> {
    let state = gate.state.load(Ordering::Acquire);
    if state == TOPIC_LIVE && !gate.daemon_died() {
        return None;
    }
    gate_error_slow(state, gate.daemon_died(), publishing)
}

#[cold]
fn gate_error_slow(state: u32, died: bool, publishing: bool) -> Option<Error> {
    match state {
        TOPIC_LIVE | TOPIC_DRAINING if died => Some(Error::new(
            Status::Unavailable,
            "aetherd, which served this topic, has died: this handle can do nothing more; reopen it \
             (or connect again) once a daemon is back",
        )),
        TOPIC_LIVE => None,
        TOPIC_DRAINING if !publishing => None,
        TOPIC_DRAINING | TOPIC_CLOSED => Some(Error::new(Status::Shutdown, "the broker is shutting down")),
        TOPIC_DELETED => Some(Error::new(Status::NotFound, "the topic was deleted")),
        _ => Some(Error::corrupt(format!("topic state {state} out of range"))),
    }
}

/// The error of a handle whose slot the daemon took back.
#[cold]
fn slot_taken_back() -> Error {
    Error::new(
        Status::Unavailable,
        "the daemon took this handle's slot back (an admin kicked it, or its connection ended): \
         it can do nothing more; reopen it",
    )
}

/// How long a wait sleeps at most before it looks again at what no futex
/// wake-up announces: the daemon's death (the kernel marks the keeper word
/// but wakes nobody on the data or space words).
const LOOK_AGAIN_NS: u64 = 200_000_000;

/// Space claimed by a publisher and not yet committed or aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub pos: u64,
    pub seq: u64,
    /// Payload bytes available at [`Writer::payload`] (a caller may lower it).
    pub capacity: usize,
    /// Bytes the record takes in the ring, as claimed.
    stride: u64,
}

/// The publishing side of a ring. One per publisher handle; many may exist
/// for one segment, in any number of processes.
pub struct Writer {
    seg: Arc<Segment>,
    geo: Geometry,
    /// The segment's header and the first byte of its ring.
    hdr: InSegment<Header>,
    ring: InSegment<u8>,
    /// This publisher's slot, where it announces the claim it is writing.
    slot: Option<u32>,
    announce: Option<InSegment<PubSlot>>,
    /// The slot's owner generation in the control page, and its value when
    /// the slot was handed to us (see `SubscriberEntry::owner_gen`).
    announce_gen: Option<InSegment<AtomicU64>>,
    owner_gen: u64,
    /// The control page's gate line (state, daemon alive, slots generation).
    gate_line: InSegment<GateLine>,
    /// The topic's waiters page (read-only here): who sleeps on the data word,
    /// and the space word this publisher sleeps on. The `Arc` keeps it mapped.
    _waiters: Arc<Waiters>,
    waiters_page: InSegment<WaitersPage>,
    /// Reliable topics: the cursor pages of gating subscribers; and where to get more.
    cursors: GatingCursors,
    /// Pollable subscribers' eventfds, by slot, with the owner generation
    /// they were handed out under (asked for when a slot is first armed).
    notifiers: Vec<Option<(u64, OwnedFd)>>,
    source: Option<Box<dyn SubscriberSource>>,
    /// Claims may end at or below this position without re-reading the slots.
    gate: u64,
    /// The segment's horizon as last seen: claims ending at or below it need not raise it.
    horizon: u64,
    gate_gen: u64,
    /// The subscribers' sleeps ([`DataWaitLine::sleeps`]) when this writer
    /// last woke them: until the count moves on, nobody sleeps on the word
    /// it bumped then, so it need not wake anyone again (see `wake`; only
    /// this writer touches it).
    ///
    /// [`DataWaitLine::sleeps`]: crate::segment::DataWaitLine::sleeps
    woke_readers_at: AtomicU64,
    /// Reliable topics: whether large records keep to short laps (whole
    /// laps unless asked: `set_large_laps`, `AETHER_LARGE_LAPS`). Lossy
    /// topics keep whole laps, so that a lossy subscriber is not lapped
    /// sooner.
    laps: Option<LapChoice>,
    /// The lap (position / ring size) before which this writer does not
    /// wait for a subscriber to catch up again ([`LargeLaps::CaughtUp`]):
    /// once a lap at most, less after waiting in vain (`wait_laps`).
    wait_from_lap: u64,
    /// Laps to skip after the next wait in vain: doubled each time (to 64),
    /// 1 again after a wait that sees the subscriber catch up. A subscriber
    /// one record behind that reads every byte takes longer than the wait.
    wait_laps: u64,
    /// How long a claim (reliable topics: the slowest subscriber) may hold this publisher up.
    pub timeout: Option<Duration>,
    pub wait: WaitConfig,
    /// How much of `wait.spin` the next wait for space spins.
    spin: SpinBudget,
    /// Where message timestamps come from.
    clock: WallClock,
    /// Whether messages carry them: without, timestamp 0, saving the clock
    /// read (~10 ns of a ~30 ns publish). The clock is kept while off, so
    /// that timestamps never go back across a switch.
    timestamps: bool,
}

impl Writer {
    /// A writer announcing its claims in publisher slot `slot`. Writers on a
    /// topic that may have several publishers need a slot each (the daemon
    /// hands them out); `None` is for a writer known to be alone. On a
    /// reliable topic, `source` maps the cursor pages of gating subscribers
    /// (a writer without one waits for no subscriber).
    pub fn new(
        seg: Arc<Segment>,
        waiters: Arc<Waiters>,
        slot: Option<u32>,
        source: Option<Box<dyn SubscriberSource>>,
    ) -> Writer {
        let geo = *seg.geometry();
        membarrier::register();
        ns_per_turn();
        let announce = slot.and_then(|i| seg.pub_slot(i));
        let announce_gen = slot.and_then(|i| seg.pub_owner_gen(i));
        let owner_gen = announce_gen.map_or(0, |g| g.load(Ordering::Acquire));
        let announce_gen = announce_gen.map(InSegment::new);
        let gate_line = InSegment::new(seg.gate());
        if let Some(s) = announce {
            s.pid.store(std::process::id(), Ordering::Relaxed);
            s.claim.store(SLOT_FREE, Ordering::Release);
        }
        let announce = announce.map(InSegment::new);
        let (hdr, ring) = in_segment(&seg);
        let waiters_page = InSegment::new(waiters.page());
        Writer {
            cursors: GatingCursors {
                gen: u64::MAX,
                slots: Vec::new(),
                pages: (0..geo.max_subscribers).map(|_| None).collect(),
            },
            notifiers: (0..geo.max_subscribers).map(|_| None).collect(),
            seg,
            geo,
            hdr,
            ring,
            slot,
            announce,
            announce_gen,
            owner_gen,
            gate_line,
            _waiters: waiters,
            waiters_page,
            source,
            gate: 0,
            horizon: 0,
            gate_gen: u64::MAX,
            woke_readers_at: AtomicU64::new(u64::MAX),
            laps: (geo.policy == Policy::Reliable).then(LapChoice::from_env),
            wait_from_lap: 0,
            wait_laps: 1,
            timeout: Some(Duration::from_secs(5)),
            wait: WaitConfig::default(),
            spin: SpinBudget::FULL,
            clock: WallClock::new(),
            timestamps: true,
        }
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Where this publisher puts its large records from now on (by default
    /// as `AETHER_LARGE_LAPS` says, else [`LargeLaps::CaughtUp`]). Lossy
    /// topics keep whole laps whatever is asked, so that their subscribers
    /// are not lapped sooner.
    pub fn set_large_laps(&mut self, laps: LargeLaps) {
        if self.laps.is_some() {
            self.laps = Some(LapChoice::new(laps));
        }
    }

    /// Where this publisher puts its large records, as asked (lossy
    /// topics: whole laps).
    pub fn large_laps(&self) -> LargeLaps {
        self.laps.as_ref().map_or(LargeLaps::Whole, |l| l.asked)
    }

    /// Whether this writer's messages carry the wall-clock time they were
    /// published at (the default), or 0.
    pub fn set_timestamps(&mut self, on: bool) {
        self.timestamps = on;
    }

    /// Whether this writer's messages carry timestamps.
    pub fn timestamps(&self) -> bool {
        self.timestamps
    }

    /// The timestamp of a message published now ([`NO_TIMESTAMP`] without).
    #[inline(always)]
    fn timestamp(&mut self) -> u64 {
        if self.timestamps {
            self.clock.now_ns()
        } else {
            NO_TIMESTAMP
        }
    }

    fn header_at(&self, pos: u64) -> *mut RecordHeader {
        let off = pos & (self.geo.ring_size - 1);
        // SAFETY: off < ring_size and every record start is 64-aligned with at
        // least a header's room before the end of the ring (stride >= 64).
        unsafe { self.ring.ptr().add(off as usize).cast() }
    }

    /// Recomputes the gate: one ring past the lowest of the tail (as it is
    /// now), every other publisher's announced claim, and every gating
    /// subscriber's cursor (a reliable topic's subscribers; a durable
    /// topic's log writer, lossy topics included). Returns the publisher
    /// slot that set the gate, if one did.
    fn rescan(&mut self, gen: u64) -> Result<Option<u32>> {
        // The tail first: a claim announced after this scan starts at or above it.
        let mut min = self.hdr.tail().lo.load(Ordering::SeqCst);
        let mut by_publisher = None;
        self.map_gating_cursors()?;
        min = min.min(slowest_gating_cursor(&self.seg, &self.cursors));
        for i in (0..MAX_PUBLISHERS).filter(|i| Some(*i) != self.slot) {
            let c = self
                .seg
                .pub_slot(i)
                .expect("index below MAX_PUBLISHERS")
                .claim
                .load(Ordering::SeqCst);
            if c < min {
                min = c;
                by_publisher = Some(i);
            }
        }
        self.gate = min.saturating_add(self.geo.ring_size);
        self.gate_gen = gen;
        Ok(by_publisher)
    }

    /// Maps the cursor page of every gating subscriber the directory lists
    /// that this writer has not mapped under its current owner generation,
    /// and forgets pages of slots taken back. Reads the directory only when
    /// `slots_gen` moved since it last did: a publisher waiting for space
    /// calls this every turn of its spin, and the directory is
    /// `max_subscribers` lines.
    fn map_gating_cursors(&mut self) -> Result<()> {
        // Before the flags: a slot that changes after this load bumps it again.
        let slots_gen = self.gate_line.get().slots_gen.load(Ordering::SeqCst);
        if slots_gen == self.cursors.gen {
            return Ok(());
        }
        let mut wanted = Vec::new();
        self.cursors.slots.clear();
        for i in 0..self.geo.max_subscribers {
            let e = self.seg.slot(i).expect("index below max_subscribers");
            let gating = e.flags.load(Ordering::SeqCst) & SLOT_GATING != 0;
            let gen = e.owner_gen.load(Ordering::SeqCst);
            let have = &mut self.cursors.pages[i as usize];
            match have {
                Some((g, _)) if gating && *g == gen => {}
                _ if gating => wanted.push((i, gen)),
                _ => *have = None,
            }
            if gating {
                self.cursors.slots.push(i);
            }
        }
        let mut all = true;
        if let (false, Some(source)) = (wanted.is_empty(), self.source.as_mut()) {
            let got = source.cursors(&wanted)?;
            // A slot left out (taken back meanwhile) is asked for again next time.
            all = got.len() == wanted.len();
            for (i, gen, page) in got {
                if let Some(c) = self.cursors.pages.get_mut(i as usize) {
                    *c = Some((gen, page));
                }
            }
        }
        if all {
            self.cursors.gen = slots_gen;
        }
        Ok(())
    }

    /// Whether a claim ending at `end` fits without waiting (the slots read
    /// again if the cached gate says it does not).
    fn fits_now(&mut self, end: u64) -> Result<bool> {
        let gen = self.gate_line.get().slots_gen.load(Ordering::SeqCst);
        if end <= self.gate && gen == self.gate_gen {
            return Ok(true);
        }
        self.rescan(gen)?;
        Ok(end <= self.gate)
    }

    /// Waits until a claim ending at `end` overwrites nothing that another
    /// publisher is still writing or, on reliable topics, that a gating
    /// subscriber has yet to read. A peer's announcement holds until its owner
    /// commits or aborts, or the daemon clears the slot of a client that is
    /// gone: a live but stalled peer is never lapped (this times out instead).
    ///
    /// Once it has had to wait, while it spins it holds out for `slack`
    /// bytes more than it needs: a publisher that goes on at the first
    /// record freed is back at once for the next, and each of its rescans
    /// pulls the subscribers' cursor lines away from them, message after
    /// message (4 KiB zero-copy: 7.2 -> 8.1 M msgs/s, docs/BENCHMARKS.md,
    /// session 10). Never when it would sleep: then the claim's own room
    /// is enough, as without slack.
    fn wait_for_space(&mut self, end: u64, slack: u64, deadline: &Deadline) -> Result<()> {
        let cfg = WaitConfig {
            spin: self.spin.limit(&self.wait),
            ..self.wait
        };
        let (mut round, mut slept) = (0, 0);
        let waited = self.wait_for_space_with(&cfg, end, slack, deadline, &mut round, &mut slept);
        self.spin
            .after_wait(&self.wait, round, slept, waited.is_ok(), ns_per_turn);
        waited
    }

    /// [`wait_for_space`](Self::wait_for_space) under `cfg`, counting the
    /// turns it spun in `round` and the nanoseconds it slept in `slept`.
    fn wait_for_space_with(
        &mut self,
        cfg: &WaitConfig,
        end: u64,
        slack: u64,
        deadline: &Deadline,
        round: &mut u32,
        slept: &mut u64,
    ) -> Result<()> {
        let hold_out = match cfg.strategy {
            WaitStrategy::Spin => DEFAULT_SPIN,
            _ => cfg.spin,
        };
        let mut want = end;
        loop {
            let gen = self.gate_line.get().slots_gen.load(Ordering::SeqCst);
            if want <= self.gate && gen == self.gate_gen {
                return Ok(());
            }
            if let Some(e) = gate_error(self.gate_line.get(), true) {
                return Err(e);
            }
            let blocker = self.rescan(gen)?;
            if want <= self.gate {
                return Ok(());
            }
            want = if *round < hold_out {
                end.saturating_add(slack)
            } else {
                end
            };
            let seg = &*self.seg;
            let cursors = &self.cursors;
            let ring = self.geo.ring_size;
            let stalled = blocker.map(|i| {
                (
                    i,
                    seg.pub_slot(i).expect("index below max").claim.load(Ordering::SeqCst),
                )
            });
            let space_for = |target: u64| {
                if let Some((i, c)) = stalled {
                    // A peer does not wake us: wait (timed) for its announcement to change.
                    return seg.pub_slot(i).expect("index below max").claim.load(Ordering::SeqCst) != c;
                }
                target <= slowest_gating_cursor(seg, cursors).saturating_add(ring)
                    || seg.gate().slots_gen.load(Ordering::SeqCst) != gen
            };
            let cap = if blocker.is_some() { 1_000_000 } else { 10_000_000 };
            let space_waits = &self.hdr.stats().space_waits;
            // While spinning, only the cheap test (the gating cursors' lines,
            // or the blocking peer's slot) each turn: the rescan above reads
            // every publisher slot, 64 lines, and a publisher waiting on a
            // slow subscriber spent most of its time there (docs/BENCHMARKS.md,
            // session 14). The rescan follows once the test passes.
            let waited = loop {
                let w = wait_once(
                    cfg,
                    &self.waiters_page.get().space.word,
                    Waker::Light,
                    &self.hdr.space_notify().waiters,
                    Some(&self.hdr.space_notify().sleeps),
                    space_waits,
                    round,
                    deadline,
                    cap,
                    || space_for(end),
                );
                if w.is_err() || *round > hold_out || space_for(want) {
                    break w;
                }
            };
            *slept += waited.map_err(|_| match stalled {
                Some((i, _)) => Error::new(
                    Status::Timeout,
                    format!(
                        "publish timed out: another publisher (pid {}) has been writing a record a full ring back",
                        seg.pub_slot(i).map_or(0, |p| p.pid.load(Ordering::Relaxed))
                    ),
                ),
                None => Error::new(
                    Status::Timeout,
                    "publish timed out: the slowest subscriber of this reliable topic is a full ring behind",
                ),
            })?;
        }
    }

    /// Waits until message `seq` is on disk, for a durable topic whose fsync
    /// policy is `always` (the daemon's log writer syncs, then raises the
    /// control page's `synced`), up to the publisher's timeout. `Timeout`
    /// leaves the message published, not known durable.
    pub fn wait_synced(&self, seq: u64) -> Result<()> {
        let durable = self.seg.durable();
        let line = self.seg.synced_notify();
        let synced = || durable.synced.load(Ordering::SeqCst) > seq;
        let deadline = Deadline::after(self.timeout);
        let (mut round, sleeps) = (0, AtomicU64::new(0));
        // A sync takes hundreds of microseconds: spinning for it only takes
        // the CPU from the publishers and the writer that would fill the next.
        let wait = WaitConfig { spin: 0, ..self.wait };
        while !synced() {
            if let Some(e) = gate_error(self.gate_line.get(), false) {
                return Err(e);
            }
            wait_once(
                &wait,
                &line.word,
                Waker::Fenced {
                    bits: crate::segment::SyncedLine::bit(seq),
                },
                &line.waiters,
                None,
                &sleeps,
                &mut round,
                &deadline,
                10_000_000,
                synced,
            )
            .map_err(|_| {
                Error::new(
                    Status::Timeout,
                    format!("message {seq} is published but not known to be on disk: the daemon's log writer did not sync it in time"),
                )
            })?;
        }
        Ok(())
    }

    /// Claims room for a message of `len` bytes, to be written in place and
    /// committed or aborted. A claim over [`SMALL_COPY`] bytes is stamped
    /// CLAIMED at once, so that if this process dies before commit, readers
    /// skip it by its stride after the abandon timeout; a smaller one is not
    /// (as a small copy is not): its header is written once, at commit, in
    /// one burst with the stamp, and a reader spinning on that line does not
    /// pull it away twice. If this process dies before commit, readers scan
    /// past it after the abandon timeout instead (`Reader::next`).
    #[inline]
    pub fn claim(&mut self, len: usize) -> Result<Claim> {
        self.claim_marked(len, len > SMALL_COPY)
    }

    #[inline(always)]
    fn claim_marked(&mut self, len: usize, mark_claimed: bool) -> Result<Claim> {
        if len as u64 > self.geo.max_message {
            return Err(Error::new(
                Status::TooLarge,
                format!(
                    "message of {len} bytes exceeds the topic's max_message of {}",
                    self.geo.max_message
                ),
            ));
        }
        if let Some(e) = gate_error(self.gate_line.get(), true) {
            return Err(e);
        }
        if let Some(g) = &self.announce_gen {
            if g.get().load(Ordering::Relaxed) != self.owner_gen {
                return Err(slot_taken_back());
            }
        }
        let ring = self.geo.ring_size;
        let stride = stride_for(len);
        if stride >= LARGE_RECORD {
            if let Some(l) = &mut self.laps {
                l.claimed();
            }
        }
        // Built at the first wait (rare), kept across CAS retries. Not built
        // up front although `Deadline` is lazy itself: building one costs 16
        // instructions per publish (callgrind), a tenth of the path.
        let mut deadline = None;
        let mut cur = {
            let tail = self.hdr.tail();
            (tail.lo.load(Ordering::Acquire), tail.hi.load(Ordering::Acquire))
        };
        let (pos, pad, end, gen_before, caught_up) = loop {
            let (pos, seq) = cur;
            if pos % ALIGN != 0 {
                return Err(Error::corrupt(format!("ring tail {pos:#x} is not 64-byte aligned")));
            }
            let off = pos & (ring - 1);
            // (Read here, not once before the loop: hoisted, it cost the
            // 64 B copying publish 26.7 -> 30.4 ns, docs/BENCHMARKS.md.)
            let short = self.laps.as_ref().is_some_and(|l| l.short);
            let mut pad = pad_before(off, stride, ring, short);
            let mut caught_up = false;
            if short && pad > 0 && off + stride <= ring {
                // A short lap's padding only where the ring has room for it now:
                // padding never makes the claim itself wait. Asked to, only
                // where every gating subscriber has read all before it.
                if self.laps.as_ref().is_some_and(|l| l.asked == LargeLaps::CaughtUp) {
                    caught_up = self.caught_up(pos, stride)?;
                    if !caught_up {
                        pad = 0;
                    }
                }
                if pad > 0 && !self.fits_now(pos + pad + stride)? {
                    pad = 0;
                }
            }
            let end = pos
                .checked_add(pad + stride)
                .ok_or_else(|| Error::corrupt("ring tail is at the end of the position space"));
            let end = end?;
            // The common case inline: the claim ends below the cached gate.
            let gen = self.gate_line.get().slots_gen.load(Ordering::SeqCst);
            if end > self.gate || gen != self.gate_gen {
                let timeout = self.timeout;
                // Room to hold out for past the claim (see wait_for_space), as
                // much as the ring can ever give it: at most a horizon step.
                let slack = horizon_step(ring).min(ring.saturating_sub(end - pos));
                self.wait_for_space(end, slack, deadline.get_or_insert_with(|| Deadline::after(timeout)))?;
            }
            let announce = self.announce.as_ref().map(InSegment::get);
            // Announce the claim before making it (docs/ARCHITECTURE.md, "Publisher gating"); withdraw
            // it if the claim fails, so that a waiting publisher holds nobody up.
            // Release is enough: the claim below is a `lock cmpxchg16b`, a full
            // barrier on x86, so the announcement is visible before the claim
            // to any publisher that scans the slots after reading the tail.
            if let Some(a) = announce {
                a.claim.store(pos, Ordering::Release);
            }
            match self.hdr.tail().compare_exchange((pos, seq), (end, seq.wrapping_add(1))) {
                Ok(()) => break (pos, pad, end, self.gate_gen, caught_up),
                Err(found) => {
                    if let Some(a) = announce {
                        a.claim.store(SLOT_FREE, Ordering::Relaxed);
                    }
                    cur = found
                }
            }
        };
        let rec = pos + pad;
        let seq = cur.1;
        if caught_up && pad > 0 {
            // Before the padding's stamp: a reader that finds its position
            // written over learns here that it was this padding (see
            // `Reader::look`). Every gating subscriber is at `pos`, so no
            // padding at a lower position still counts (slowest_gating_cursor).
            self.hdr.lap_padded_at().fetch_max(pos, Ordering::Release);
        }
        if self.geo.policy == Policy::Reliable && self.gate_line.get().slots_gen.load(Ordering::SeqCst) != gen_before {
            // A gating subscriber joined while we claimed: do not write over
            // what it may still read. Past the timeout, write anyway and count it.
            if self.wait_for_space(end, 0, &Deadline::after(self.timeout)).is_err() {
                self.hdr.stats().overruns.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Overwrite detection: the horizon is past every byte we write, and
        // visible to any reader that sees one of them (the fence pairs with
        // the reader's acquire fence before it reads the horizon; a value we
        // only loaded is covered too, horizons only grow).
        if end > self.horizon {
            let horizon = &self.hdr.horizon();
            self.horizon = horizon.load(Ordering::Relaxed);
            if end > self.horizon {
                let raised = end.saturating_add(horizon_step(self.geo.ring_size));
                // Release: whoever reads this horizon and then the tail sees our claim.
                self.horizon = horizon.fetch_max(raised, Ordering::Release).max(raised);
            }
        }
        fence(Ordering::Release);
        let salt = self.geo.salt;
        if pad > 0 {
            let h = self.header_at(pos);
            // SAFETY: `h` is inside the ring (header_at) and the range
            // [pos, pos + pad) is ours alone since the CAS succeeded.
            unsafe {
                std::ptr::addr_of_mut!((*h).len).write_volatile(0);
                std::ptr::addr_of_mut!((*h).stride).write_volatile(pad as u32);
                std::ptr::addr_of_mut!((*h).seq).write_volatile(0);
                (*h).stamp.store(stamp(salt, pos, KIND_PADDING), Ordering::Release);
            }
        }
        if mark_claimed {
            // Readers that find the record abandoned read its stride and seq.
            let h = self.header_at(rec);
            // SAFETY: [rec, rec + stride) is ours (CAS) and inside the ring (no straddle).
            unsafe {
                std::ptr::addr_of_mut!((*h).len).write_volatile(len as u32);
                std::ptr::addr_of_mut!((*h).stride).write_volatile(stride as u32);
                std::ptr::addr_of_mut!((*h).seq).write_volatile(seq);
                std::ptr::addr_of_mut!((*h).timestamp_ns).write_volatile(0);
                (*h).stamp.store(stamp(salt, rec, KIND_CLAIMED), Ordering::Release);
            }
        }
        Ok(Claim {
            pos: rec,
            seq,
            capacity: (stride as usize) - RECORD_HEADER,
            stride,
        })
    }

    /// Whether every gating subscriber has read all before `pos` (a claim
    /// of `stride` bytes): at once, or, once a lap, within
    /// [`CATCH_UP_NS`] when the slowest is one record behind (most likely
    /// reading the record just committed).
    #[cold]
    fn caught_up(&mut self, pos: u64, stride: u64) -> Result<bool> {
        self.map_gating_cursors()?;
        let (seg, cursors) = (&*self.seg, &self.cursors);
        let slowest = || slowest_gating_cursor(seg, cursors);
        let behind = pos.saturating_sub(slowest());
        if behind == 0 {
            return Ok(true);
        }
        let lap = pos / self.geo.ring_size;
        if behind > stride_for(self.geo.max_message as usize).max(stride) || lap < self.wait_from_lap {
            return Ok(false);
        }
        self.wait_from_lap = lap.saturating_add(self.wait_laps);
        self.wait_laps = (self.wait_laps * 2).min(64);
        let until = sys::monotonic_ns().saturating_add(CATCH_UP_NS);
        loop {
            for _ in 0..16 {
                if slowest() >= pos {
                    self.wait_laps = 1;
                    return Ok(true);
                }
                std::hint::spin_loop();
            }
            if sys::monotonic_ns() >= until {
                return Ok(false);
            }
        }
    }

    /// Where the payload of `claim` is written. Valid until commit or abort.
    pub fn payload(&self, claim: &Claim) -> *mut u8 {
        // SAFETY: the header is in the ring and the payload follows it within the stride.
        unsafe { self.header_at(claim.pos).cast::<u8>().add(RECORD_HEADER) }
    }

    /// Publishes `len` bytes (at most the claimed capacity and max_message) of `claim`.
    #[inline]
    pub fn commit(&mut self, claim: Claim, len: usize) -> Result<()> {
        // `capacity` is public (a caller may lower it, or raise it by mistake):
        // the claimed stride and max_message bound what is written.
        if len > claim.capacity || len + RECORD_HEADER > claim.stride as usize || len as u64 > self.geo.max_message {
            return Err(Error::new(
                Status::TooLarge,
                format!("commit of {len} bytes exceeds the loan of {}", claim.capacity),
            ));
        }
        let now = self.timestamp();
        self.commit_at(claim, len, now);
        Ok(())
    }

    /// Publishes the first `len` bytes of `claim` as a message from another
    /// broker: `origin` goes after them (the claim must have room for both:
    /// claim `len + ORIGIN_BYTES`), and `timestamp_ns` is the origin's.
    pub fn commit_remote(&mut self, claim: Claim, len: usize, timestamp_ns: u64, origin: Origin) -> Result<()> {
        if len + ORIGIN_BYTES > claim.capacity || (RECORD_HEADER + len + ORIGIN_BYTES) as u64 > claim.stride {
            return Err(Error::new(
                Status::TooLarge,
                format!(
                    "a remote message of {len} bytes and its origin exceed the loan of {}",
                    claim.capacity
                ),
            ));
        }
        let payload = self.payload(&claim);
        // SAFETY: [payload, + len + ORIGIN_BYTES) is inside the claim (checked
        // above), which is ours until the stamp publishes it.
        unsafe {
            let t = payload.add(len).cast::<u64>();
            t.write_unaligned(origin.broker);
            t.add(1).write_unaligned(origin.seq);
        }
        self.commit_kind(claim, len, timestamp_ns, KIND_REMOTE);
        Ok(())
    }

    /// Publishes a claim of at least `len` bytes (checked by the caller).
    #[inline(always)]
    fn commit_at(&mut self, claim: Claim, len: usize, timestamp_ns: u64) {
        self.commit_kind(claim, len, timestamp_ns, KIND_MESSAGE)
    }

    #[inline(always)]
    fn commit_kind(&mut self, claim: Claim, len: usize, timestamp_ns: u64, kind: u64) {
        if claim.stride >= LARGE_RECORD {
            if let Some(l) = &mut self.laps {
                l.committed(claim.pos, claim.stride, self.geo.ring_size);
            }
        }
        let h = self.header_at(claim.pos);
        // The whole header, then the stamp, in one burst: the reader spinning on
        // this line pulls it away between stores that are further apart.
        // SAFETY: the record is ours until the stamp below publishes it.
        unsafe {
            std::ptr::addr_of_mut!((*h).len).write_volatile(len as u32);
            std::ptr::addr_of_mut!((*h).stride).write_volatile(claim.stride as u32);
            std::ptr::addr_of_mut!((*h).seq).write_volatile(claim.seq);
            std::ptr::addr_of_mut!((*h).timestamp_ns).write_volatile(timestamp_ns);
            (*h).stamp
                .store(stamp(self.geo.salt, claim.pos, kind), Ordering::Release);
        }
        self.release_slot();
        self.wake_readers();
    }

    /// Wakes the subscribers waiting for data: those asleep on the data word,
    /// and the pollable ones armed in the waiters page (see `PollLine`).
    /// Call after the write they wait for. While nobody waits: one fence
    /// (a compiler fence where membarrier is registered) and one line read.
    #[inline(always)]
    fn wake_readers(&mut self) {
        let data = &self.waiters_page.get().data;
        wake(
            &self.hdr.data_notify().word,
            &data.waiters,
            &data.sleeps,
            &self.woke_readers_at,
            &self.hdr.stats().wakes,
        );
        if data.pollers.load(Ordering::Relaxed) != 0 {
            self.signal_pollers();
        }
    }

    /// Writes to the eventfd of every armed pollable subscriber. Allocates
    /// nothing while each armed slot's eventfd is known (every commit comes
    /// here while a subscriber is armed); asks the daemon only for those of
    /// slots new to this publisher or taken by a new holder.
    #[cold]
    fn signal_pollers(&mut self) {
        let max = self.geo.max_subscribers;
        let mut wanted = Vec::new();
        for w in 0..(max as usize).div_ceil(64) {
            let mut bits = self.waiters_page.get().poll.armed[w].load(Ordering::Acquire);
            while bits != 0 {
                let i = w as u32 * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                let Some(e) = self.seg.slot(i) else { break };
                let gen = e.owner_gen.load(Ordering::Acquire);
                match &self.notifiers[i as usize] {
                    Some((g, fd)) if *g == gen => sys::eventfd::signal(fd),
                    _ => wanted.push((i, gen)),
                }
            }
        }
        if !wanted.is_empty() {
            if let Some(src) = self.source.as_mut() {
                // A failure only delays these subscribers to their next arming.
                for (i, gen, fd) in src.notifiers(&wanted).unwrap_or_default() {
                    if let Some(n) = self.notifiers.get_mut(i as usize) {
                        *n = Some((gen, fd));
                    }
                }
            }
            for (i, _) in wanted {
                if let Some((_, fd)) = &self.notifiers[i as usize] {
                    sys::eventfd::signal(fd);
                }
            }
        }
        self.hdr.stats().wakes.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops using the publisher slot (before giving it back to the daemon).
    pub fn leave_slot(&mut self) {
        self.release_slot();
        self.forget_slot();
    }

    /// Stops using the publisher slot without touching it (a forked child's
    /// inherited writer: the slot is its parent's).
    pub fn forget_slot(&mut self) {
        self.slot = None;
        self.announce = None;
        self.announce_gen = None;
    }

    /// Withdraws the announced claim: peers may now lap what we wrote. Not
    /// once the daemon has taken the slot back: it may be another's now.
    fn release_slot(&self) {
        if let (Some(a), Some(g)) = (&self.announce, &self.announce_gen) {
            if g.get().load(Ordering::Acquire) == self.owner_gen {
                a.get().claim.store(SLOT_FREE, Ordering::Release);
            }
        }
    }

    /// Gives a claim up: readers skip it (its sequence number is not a loss).
    pub fn abort(&mut self, claim: Claim) {
        let h = self.header_at(claim.pos);
        // Readers skip it by its stride and take its seq as not lost: a
        // small claim has no header yet (`claim`).
        // SAFETY: the record is ours until the stamp below releases it.
        unsafe {
            std::ptr::addr_of_mut!((*h).len).write_volatile(0);
            std::ptr::addr_of_mut!((*h).stride).write_volatile(claim.stride as u32);
            std::ptr::addr_of_mut!((*h).seq).write_volatile(claim.seq);
            (*h).stamp
                .store(stamp(self.geo.salt, claim.pos, KIND_ABORTED), Ordering::Release)
        };
        self.hdr.stats().aborted.fetch_add(1, Ordering::Relaxed);
        self.release_slot();
        self.wake_readers();
    }

    /// Copies `data` into the ring as one message.
    ///
    /// Small messages are written in one burst of stores ending with the
    /// MESSAGE stamp, without the intermediate CLAIMED stamp: a reader spinning
    /// on the stamp's line would otherwise pull it away mid-write. The clock is
    /// read before the claim for the same reason.
    #[inline]
    pub fn publish(&mut self, data: &[u8]) -> Result<u64> {
        let timestamp_ns = self.timestamp();
        let claim = self.claim_marked(data.len(), data.len() > SMALL_COPY)?;
        // SAFETY: the payload area holds `capacity >= data.len()` bytes we own.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.payload(&claim), data.len()) };
        // The claim was sized for `data`: nothing to check.
        self.commit_at(claim, data.len(), timestamp_ns);
        Ok(claim.seq)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.release_slot();
    }
}

/// A committed message found by a reader, not yet consumed.
///
/// As [`Subscriber::receive_view`](crate::Subscriber::receive_view) gives it:
/// `data` points at `len` bytes in the shared ring, readable until
/// `release_view`. Reading them is the caller's `unsafe`: on a reliable topic
/// they do not change; on a lossy topic a publisher may overwrite them
/// meanwhile, so copy what you need, then trust the copy only if
/// `held_view_overwritten()` is false (or `release_view` is `Ok`).
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// The record's position in the ring (bytes since the topic began).
    pub pos: u64,
    /// Bytes the record takes in the ring (header, payload, padding).
    pub stride: u64,
    /// The message's sequence number.
    pub seq: u64,
    /// When it was published: CLOCK_REALTIME, nanoseconds since the epoch.
    pub timestamp_ns: u64,
    /// The payload's length.
    pub len: usize,
    /// The payload, in the shared mapping.
    pub data: *const u8,
    /// Where it was first published, for a message from another broker.
    pub origin: Option<Origin>,
}

/// What the reader found at its position.
enum Found {
    Message(Record),
    /// Nothing (or nothing finished) there yet; `claimed` if a publisher has
    /// stamped it. `stamp`: the stamp word as read, which a waiter watches for
    /// a change (a change after this read, not after a later one).
    Pending {
        claimed: bool,
        stamp: u64,
    },
}

/// The subscribing side of a ring: one cursor.
pub struct Reader {
    seg: Arc<Segment>,
    geo: Geometry,
    /// The segment's header and the first byte of its ring.
    hdr: InSegment<Header>,
    ring: InSegment<u8>,
    /// The topic's waiters page: read-write for a subscriber (it counts its
    /// sleeps there, and bumps the space word for publishers).
    waiters: Arc<Waiters>,
    waiters_page: InSegment<WaitersPage>,
    /// This subscriber's cursor page (kept mapped by `cursor_page`), and the
    /// line in it where the cursor is published.
    cursor_page: Option<Arc<Cursor>>,
    cursor_slot: Option<InSegment<CursorLine>>,
    /// The slot's directory entry (looked up once), and its owner generation
    /// when it was handed to us.
    entry: Option<InSegment<SubscriberEntry>>,
    /// The control page's gate line (state, daemon alive).
    gate_line: InSegment<GateLine>,
    owner_gen: u64,
    /// The subscriber slot, if any.
    slot: Option<u32>,
    /// Whether this (pollable) reader has armed its bit in the waiters page.
    poll_armed: bool,
    pos: u64,
    next_seq: u64,
    lost: u64,
    delivered: u64,
    /// Length of the message the last `TooLarge` from `receive_into` left unread.
    too_large_len: usize,
    /// Since when (monotonic ns) the record at a position (the first field)
    /// has been claimed but not committed: what the abandon timeout measures.
    pending_since: Option<(u64, u64)>,
    /// The shared cursor moves only at `store_position` (see `hold_cursor`).
    hold: bool,
    /// Publishers may lap this reader: a lossy topic's, unless its slot
    /// gates them (a durable lossy topic's log writer).
    lossy: bool,
    /// The last remote message consumed: its seq here, and its origin.
    remote: Option<(u64, Origin)>,
    pub wait: WaitConfig,
    /// How much of `wait.spin` the next wait for a message spins.
    spin: SpinBudget,
    /// The publishers' space sleeps ([`SpaceLine::sleeps`]) when this
    /// reader last woke them (only this reader writes it).
    ///
    /// [`SpaceLine::sleeps`]: crate::segment::SpaceLine::sleeps
    woke_publishers_at: AtomicU64,
    pub abandon_timeout: Duration,
}

impl Reader {
    /// A reader starting at the current tail, through subscriber slot `slot`
    /// with its cursor page (the daemon has registered the slot, gating on
    /// reliable topics: see `Segment::join`), or with no slot at all (a reader
    /// nobody waits for: the daemon's view of an mqueue subscriber's ring).
    pub fn new(seg: Arc<Segment>, waiters: Arc<Waiters>, slot: Option<(u32, Arc<Cursor>)>) -> Result<Reader> {
        Reader::new_at(seg, waiters, slot, None)
    }

    /// [`new`](Self::new), starting at `start` (position, next seq) rather
    /// than the tail: where the daemon registered the slot's cursor (see
    /// `Segment::join_at`). Checked against the tail: not past it, not a
    /// ring behind it, 64-byte aligned.
    pub fn new_at(
        seg: Arc<Segment>,
        waiters: Arc<Waiters>,
        slot: Option<(u32, Arc<Cursor>)>,
        start: Option<(u64, u64)>,
    ) -> Result<Reader> {
        let geo = *seg.geometry();
        membarrier::register();
        ns_per_turn();
        let (slot, cursor_page) = match slot {
            Some((i, page)) => {
                seg.slot(i)
                    .ok_or_else(|| Error::protocol(format!("slot {i} out of range")))?;
                (Some(i), Some(page))
            }
            None => (None, None),
        };
        let entry = slot.and_then(|i| seg.slot(i));
        let owner_gen = entry.map_or(0, |e| e.owner_gen.load(Ordering::Acquire));
        let gating = entry.is_some_and(|e| e.flags.load(Ordering::Acquire) & SLOT_GATING != 0);
        let lossy = geo.policy == Policy::Lossy && !gating;
        let entry = entry.map(InSegment::new);
        let gate_line = InSegment::new(seg.gate());
        let cursor_slot = cursor_page.as_deref().map(|p| InSegment::new(p.line()));
        // Without writing: the segment may be mapped read-only here. The
        // daemon registered the cursor at or below this tail.
        let (tail, tail_seq) = seg.tail().load_shared();
        if tail % ALIGN != 0 {
            return Err(Error::corrupt("ring tail is not 64-byte aligned"));
        }
        let (pos, next_seq) = match start {
            None => (tail, tail_seq),
            Some((pos, seq)) => {
                if pos % ALIGN != 0 || pos > tail || tail - pos > geo.ring_size || seq > tail_seq {
                    return Err(Error::protocol(format!(
                        "start position {pos} (seq {seq}) is not in the ring (tail {tail}, seq {tail_seq})"
                    )));
                }
                (pos, seq)
            }
        };
        let (hdr, ring) = in_segment(&seg);
        let waiters_page = InSegment::new(waiters.page());
        let r = Reader {
            seg,
            geo,
            hdr,
            ring,
            waiters,
            waiters_page,
            cursor_page,
            cursor_slot,
            entry,
            gate_line,
            owner_gen,
            slot,
            poll_armed: false,
            pos,
            next_seq,
            lost: 0,
            delivered: 0,
            too_large_len: 0,
            pending_since: None,
            hold: false,
            lossy,
            remote: None,
            wait: WaitConfig::default(),
            spin: SpinBudget::FULL,
            woke_publishers_at: AtomicU64::new(u64::MAX),
            abandon_timeout: Duration::from_millis(100),
        };
        r.store_cursor();
        Ok(r)
    }

    /// Whether some publisher announces a claim at or below `pos` (see
    /// `Writer::wait_for_space`): then the record at `pos` may still be written.
    fn live_writer_at_or_below(&self, pos: u64) -> bool {
        self.announced_claims().any(|c| c <= pos)
    }

    /// The claims publishers announce now (`SLOT_FREE`, above every
    /// position, for a slot without one).
    fn announced_claims(&self) -> impl Iterator<Item = u64> + '_ {
        (0..MAX_PUBLISHERS)
            .filter_map(|i| self.seg.pub_slot(i))
            .map(|p| p.claim.load(Ordering::Acquire))
    }

    /// Messages missed so far; a gap is counted when the message after it is consumed.
    pub fn lost(&self) -> u64 {
        self.lost
    }
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
    /// Length of the message that the last `TooLarge` error left unread.
    pub fn too_large_len(&self) -> usize {
        self.too_large_len
    }
    pub fn position(&self) -> u64 {
        self.pos
    }
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }
    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    fn store_cursor(&self) {
        if !self.hold {
            self.publish_cursor();
        }
    }

    fn publish_cursor(&self) {
        if let Some(s) = self.cursor_slot.as_ref().map(InSegment::get) {
            s.cursor.store(self.pos, Ordering::Release);
            s.delivered.store(self.delivered, Ordering::Relaxed);
            s.lost.store(self.lost, Ordering::Relaxed);
            s.next_seq.store(self.next_seq, Ordering::Relaxed);
            if !self.lossy {
                self.wake_publishers();
            }
        }
    }

    /// Wakes publishers asleep waiting for space (the space word is in the
    /// waiters page, which subscribers may write; the count in the segment).
    fn wake_publishers(&self) {
        let w = self.waiters_page.get();
        let space = self.hdr.space_notify();
        wake(
            &w.space.word,
            &space.waiters,
            &space.sleeps,
            &self.woke_publishers_at,
            &w.stats.wakes,
        );
    }

    fn header_at(&self, pos: u64) -> *const RecordHeader {
        let off = pos & (self.geo.ring_size - 1);
        // SAFETY: off < ring_size and is 64-aligned (positions are), so a
        // 32-byte header fits before the end of the ring.
        unsafe { self.ring.ptr().add(off as usize).cast() }
    }

    fn tail_pos(&self) -> u64 {
        self.hdr.tail().lo.load(Ordering::Acquire)
    }

    /// Whether the bytes of a record at `pos` may have been overwritten since
    /// they were read. Call after reading them. Always false on a reliable
    /// topic, and for a durable lossy topic's log writer (publishers never
    /// lap a gating subscriber). The horizon may run up to [`horizon_step`]
    /// ahead of the claims: a lossy reader that close to being lapped
    /// counts as lapped.
    #[inline]
    pub fn overwritten(&self, pos: u64) -> bool {
        if !self.lossy {
            return false;
        }
        fence(Ordering::Acquire);
        self.horizon() > pos.saturating_add(self.geo.ring_size)
    }

    fn horizon(&self) -> u64 {
        self.hdr.horizon().load(Ordering::Acquire)
    }

    /// Reads stride/len/seq of the record at `pos` and checks them against the ring.
    #[inline(always)]
    fn read_header(&self, pos: u64) -> Result<(u64, usize, u64, u64)> {
        let h = self.header_at(pos);
        // SAFETY: header_at is in bounds; the fields are plain integers read
        // volatile because another process may be writing them (validated below).
        let (len, stride, seq, ts) = unsafe {
            (
                std::ptr::addr_of!((*h).len).read_volatile() as usize,
                std::ptr::addr_of!((*h).stride).read_volatile() as u64,
                std::ptr::addr_of!((*h).seq).read_volatile(),
                std::ptr::addr_of!((*h).timestamp_ns).read_volatile(),
            )
        };
        let off = pos & (self.geo.ring_size - 1);
        if stride % ALIGN != 0 || stride < ALIGN || off + stride > self.geo.ring_size {
            return Err(Error::corrupt(format!("record at {pos} has invalid stride {stride}")));
        }
        if len as u64 > self.geo.max_message || RECORD_HEADER as u64 + len as u64 > stride {
            return Err(Error::corrupt(format!("record at {pos} has invalid length {len}")));
        }
        Ok((stride, len, seq, ts))
    }

    /// [`read_header`](Self::read_header), except that a header found invalid
    /// or torn because a publisher lapped us (lossy) is `None`, not corruption.
    #[inline(always)]
    fn read_header_unless_lapped(&self, pos: u64) -> Result<Option<(u64, usize, u64, u64)>> {
        // A valid header is returned without reading the tail: whoever copies
        // the payload checks for overwrite afterwards, which covers the header.
        match self.read_header(pos) {
            Ok(h) => Ok(Some(h)),
            Err(_) if self.overwritten(pos) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks at the record at the cursor, stepping over padding and aborted records.
    #[inline(always)]
    fn look(&mut self) -> Result<Found> {
        loop {
            let h = self.header_at(self.pos);
            // SAFETY: in bounds (header_at); the stamp is an atomic.
            let raw = unsafe { (*h).stamp.load(Ordering::Acquire) };
            let (p, kind) = decode(self.geo.salt, raw);
            if p != self.pos {
                if self.skip_lap_padding() {
                    continue;
                }
                return Ok(Found::Pending {
                    claimed: false,
                    stamp: raw,
                });
            }
            match kind {
                KIND_MESSAGE | KIND_REMOTE => {
                    let Some(header) = self.read_header_unless_lapped(self.pos)? else {
                        return Ok(Found::Pending {
                            claimed: false,
                            stamp: raw,
                        });
                    };
                    let mut rec = self.record(self.pos, header);
                    if kind == KIND_REMOTE {
                        if RECORD_HEADER as u64 + (rec.len + ORIGIN_BYTES) as u64 > rec.stride {
                            if self.overwritten(self.pos) {
                                return Ok(Found::Pending {
                                    claimed: false,
                                    stamp: raw,
                                });
                            }
                            return Err(Error::corrupt(format!(
                                "remote record at {} has no room for its origin",
                                self.pos
                            )));
                        }
                        // SAFETY: the origin lies inside the record's stride
                        // (checked above), which read_header checked is inside
                        // the ring; plain integers, read once, unaligned. A lossy
                        // publisher may be overwriting them: the reader's
                        // overwrite check after the payload covers them too.
                        rec.origin = Some(unsafe {
                            let t = rec.data.add(rec.len).cast::<u64>();
                            Origin {
                                broker: t.read_unaligned(),
                                seq: t.add(1).read_unaligned(),
                            }
                        });
                    }
                    return Ok(Found::Message(rec));
                }
                KIND_PADDING => {
                    self.pos = next_lap(self.pos, self.geo.ring_size)
                        .ok_or_else(|| Error::corrupt(format!("padding at {} has no next lap", self.pos)))?;
                }
                KIND_ABORTED => {
                    let Some((stride, _, seq, _)) = self.read_header_unless_lapped(self.pos)? else {
                        return Ok(Found::Pending {
                            claimed: false,
                            stamp: raw,
                        });
                    };
                    if self.overwritten(self.pos) {
                        return Ok(Found::Pending {
                            claimed: false,
                            stamp: raw,
                        });
                    }
                    if seq >= self.next_seq {
                        self.lost = self.lost.saturating_add(seq - self.next_seq);
                        self.next_seq = seq.wrapping_add(1);
                    }
                    self.pos += stride;
                }
                KIND_CLAIMED => {
                    return Ok(Found::Pending {
                        claimed: true,
                        stamp: raw,
                    })
                }
                _ => {
                    return Ok(Found::Pending {
                        claimed: false,
                        stamp: raw,
                    })
                }
            }
        }
    }

    /// Whether the cursor is at the lap line's padding, which a publisher
    /// may have written over since (every gating subscriber was there when
    /// it was made, so publishers count a subscriber there as past it:
    /// `slowest_gating_cursor`, [`LargeLaps::CaughtUp`]); if so, moves it to
    /// the next lap.
    /// Read after a tail more than a ring past the cursor, the answer is
    /// sure: claims that far ahead were made by publishers that had read
    /// the line (acquire) and then moved the tail (release), so the line
    /// read here is at least as new. Read before (`look`), it is a shortcut
    /// that may miss a padding just made; `next` asks again after the tail.
    #[inline]
    fn skip_lap_padding(&mut self) -> bool {
        fence(Ordering::Acquire);
        let at = self.hdr.lap_padded_at().load(Ordering::Acquire);
        if at == 0 || at != self.pos {
            return false;
        }
        match next_lap(self.pos, self.geo.ring_size) {
            Some(next) => {
                self.pos = next;
                true
            }
            None => false,
        }
    }

    /// After being lapped or finding garbage: move to the first record stamp in
    /// `[from, tail)`, or to the tail. What was skipped shows up as a sequence gap.
    /// The scan stops at the lowest claim a publisher announces there: a
    /// claim of 1 KiB or less carries no stamp until its commit, and a live
    /// loan may be held for any time (passing it would lose its message).
    /// A horizon beyond anything ever claimed (it is raised at most one step
    /// past a claim's end, and the tail covers every claim) is `Corrupt`: obeyed,
    /// it would make every record look overwritten, and the reader resync forever.
    fn resync(&mut self, from: u64) -> Result<()> {
        // The horizon first: the tail read after it covers the claim that raised it.
        let horizon = self.horizon();
        let tail = self.tail_pos();
        if horizon > tail.saturating_add(horizon_step(self.geo.ring_size)) {
            return Err(Error::corrupt(format!(
                "ring horizon {horizon} is beyond anything claimed (tail {tail})"
            )));
        }
        // What a claim may have written over: on a lossy topic, below the
        // horizon (up to a horizon step past the tail); on a reliable one
        // only below the tail, since no claim passes a gating subscriber by
        // a ring (its horizon step would skip records it has yet to read).
        let newest = if self.lossy { horizon.max(tail) } else { tail };
        let oldest = newest.saturating_sub(self.geo.ring_size);
        let lo = from.max(oldest).div_ceil(ALIGN) * ALIGN;
        // After the tail: a claim below it announced itself before moving
        // it, and withdraws only after its stamp, so every claim in
        // [lo, tail) is either seen here or stamped.
        let live = self.announced_claims().filter(|&c| c >= lo).min().unwrap_or(u64::MAX);
        let tail = tail.min(live);
        let mut u = lo;
        while u < tail && u - lo < self.geo.ring_size {
            let h = self.header_at(u);
            // SAFETY: in bounds (header_at); the stamp is an atomic.
            let (p, kind) = decode(self.geo.salt, unsafe { (*h).stamp.load(Ordering::Acquire) });
            if p == u && (KIND_CLAIMED..=KIND_REMOTE).contains(&kind) {
                break;
            }
            u += ALIGN;
        }
        self.pos = u.min(tail).max(self.pos);
        if !self.pos.is_multiple_of(ALIGN) {
            self.pos = self.pos.div_ceil(ALIGN) * ALIGN;
        }
        Ok(())
    }

    /// `Err` once the daemon has taken this reader's slot back.
    #[inline(always)]
    fn still_ours(&self) -> Result<()> {
        match &self.entry {
            Some(e) if e.get().owner_gen.load(Ordering::Relaxed) != self.owner_gen => Err(slot_taken_back()),
            _ => Ok(()),
        }
    }

    /// Finds the next message, waiting until `deadline`. Does not consume it.
    pub fn next(&mut self, deadline: &Deadline) -> Result<Record> {
        self.still_ours()?;
        if self.committed_at_cursor() {
            if let Some(rec) = self.record_at_cursor() {
                return Ok(rec);
            }
        }
        let mut round = 0u32;
        let mut turns = 0u32;
        let cfg = WaitConfig {
            spin: self.spin.limit(&self.wait),
            ..self.wait
        };
        let mut slept = 0;
        // The ends that count in the spin budget leave the loop by `break`.
        let waited = loop {
            // Whatever the segment holds, this loop ends by its deadline: every
            // path that goes round without waiting passes here.
            turns = turns.wrapping_add(1);
            if turns.is_multiple_of(64) && deadline.remaining() == Some(0) {
                break Err(Error::new(Status::Timeout, "timed out waiting"));
            }
            let found = match self.look() {
                Ok(f) => f,
                Err(e) => {
                    // A corrupt header: report it, and step past so the next call can go on.
                    let from = self.pos.saturating_add(ALIGN);
                    self.resync(from)?;
                    self.store_cursor();
                    return Err(e);
                }
            };
            match found {
                Found::Message(rec) => {
                    if rec.seq < self.next_seq {
                        let from = self.pos.saturating_add(ALIGN);
                        if self.overwritten(rec.pos) {
                            self.resync(from)?;
                            continue;
                        }
                        self.resync(from)?;
                        self.store_cursor();
                        return Err(Error::corrupt(format!(
                            "sequence went backwards at position {}: {} after {}",
                            rec.pos, rec.seq, self.next_seq
                        )));
                    }
                    // Gaps are counted when the record is consumed: until the
                    // caller's copy is checked, a lossy header may be torn.
                    break Ok(rec);
                }
                Found::Pending { claimed, stamp: seen } => {
                    // While spinning, watch only the stamp, the line a commit writes:
                    // reading the tail (a line every claim writes) on each turn
                    // would pull it away from publishers. Full checks every 256 turns.
                    let spin_left = match cfg.strategy {
                        WaitStrategy::Spin => 255,
                        _ => cfg.spin.saturating_sub(round).min(255),
                    };
                    if spin_left > 0 {
                        let h = self.header_at(self.pos);
                        // SAFETY: in bounds (header_at); the stamp is an atomic.
                        let stamp_now = || unsafe { (*h).stamp.load(Ordering::Acquire) };
                        // Watch for a change from what `look` saw, not from a second
                        // read: a loan stamps its record twice (claimed, then
                        // committed), and a commit landing between two reads would
                        // be waited for as a change that already happened (255 turns
                        // of PAUSE: microseconds, the zero-copy path's old p99).
                        let mut turns = 0;
                        while turns < spin_left && stamp_now() == seen {
                            std::hint::spin_loop();
                            turns += 1;
                        }
                        round = round.saturating_add(turns);
                        if turns < spin_left {
                            continue;
                        }
                    }
                    let tail = self.tail_pos();
                    if tail > self.pos.saturating_add(self.geo.ring_size) {
                        // At the lap line's padding, written over: look
                        // again now, after the tail (`look` read the line
                        // before it, and a line read before a tail a ring
                        // ahead may be older than the padding: the loom
                        // model finds that interleaving).
                        if self.skip_lap_padding() {
                            continue;
                        }
                        // Lapped: what we wanted is gone.
                        self.resync(self.pos)?;
                        continue;
                    }
                    if tail < self.pos {
                        return Err(Error::corrupt(format!(
                            "ring tail {tail} is behind this reader's position {}",
                            self.pos
                        )));
                    }
                    if tail == self.pos {
                        // Caught up: if the topic is closed or deleted, nothing more will come.
                        if let Some(e) = gate_error(self.gate_line.get(), false) {
                            return Err(e);
                        }
                    }
                    if tail > self.pos {
                        // Claimed space not yet committed: in progress, abandoned, or garbage.
                        let now = sys::monotonic_ns();
                        // Kept across calls: short receive timeouts still add up to the abandon timeout.
                        match self.pending_since {
                            // A publisher that still announces a claim at or below this
                            // record may be writing it: alive (the daemon clears the slots
                            // of clients that are gone), so wait for it, however slow.
                            Some(_) if self.live_writer_at_or_below(self.pos) => {
                                self.pending_since = Some((self.pos, now))
                            }
                            Some((p, since)) if p == self.pos => {
                                if now.saturating_sub(since) >= self.abandon_timeout.as_nanos() as u64 {
                                    self.pending_since = None;
                                    let torn = self.overwritten(self.pos);
                                    if claimed && !torn {
                                        if let Ok((stride, _, seq, _)) = self.read_header(self.pos) {
                                            if seq >= self.next_seq {
                                                self.lost =
                                                    self.lost.saturating_add(seq - self.next_seq).saturating_add(1);
                                                self.next_seq = seq.wrapping_add(1);
                                            }
                                            self.pos += stride;
                                            self.store_cursor();
                                            continue;
                                        }
                                    }
                                    // No CLAIMED stamp (small copies skip it): either a
                                    // publisher died before its first store, or garbage.
                                    // A valid record further on means the former; its
                                    // sequence gap counts the loss.
                                    let at = self.pos;
                                    self.resync(at + ALIGN)?;
                                    self.store_cursor();
                                    if self.pos < self.tail_pos() {
                                        continue;
                                    }
                                    return Err(Error::corrupt(format!(
                                        "no valid record at position {at} after {:?}; skipped ahead",
                                        self.abandon_timeout
                                    )));
                                }
                            }
                            _ => self.pending_since = Some((self.pos, now)),
                        }
                    }
                    let pos = self.pos;
                    let salt = self.geo.salt;
                    let hdr = &self.hdr;
                    let gate = &self.gate_line;
                    let h = self.header_at(pos);
                    let ready = || {
                        // SAFETY: in bounds (header_at); the stamp is an atomic.
                        let (p, kind) = decode(salt, unsafe { (*h).stamp.load(Ordering::Acquire) });
                        (p == pos && kind != KIND_CLAIMED)
                            || hdr.tail().lo.load(Ordering::Acquire) != tail
                            || gate_error(gate.get(), false).is_some()
                    };
                    let cap = if tail > pos {
                        (self.abandon_timeout.as_nanos() as u64 / 4 + 1).min(LOOK_AGAIN_NS)
                    } else {
                        LOOK_AGAIN_NS
                    };
                    let w = self.waiters_page.get();
                    let waited = wait_once(
                        &cfg,
                        &self.hdr.data_notify().word,
                        Waker::Light,
                        &w.data.waiters,
                        Some(&w.data.sleeps),
                        &w.stats.waits,
                        &mut round,
                        deadline,
                        cap,
                        ready,
                    );
                    match waited {
                        Ok(ns) => slept += ns,
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        self.spin
            .after_wait(&self.wait, round, slept, waited.is_ok(), ns_per_turn);
        waited
    }

    /// Marks `rec` (returned by [`next`](Self::next)) as consumed.
    /// Messages skipped before it (lapped, abandoned) are added to `lost`.
    #[inline(always)]
    pub fn consume(&mut self, rec: &Record) {
        if let Some(o) = rec.origin {
            self.remote = Some((rec.seq, o));
        }
        self.advance(rec.pos + rec.stride, rec.seq, 1, 0);
    }

    /// The origin of the last message consumed, if it came from another broker.
    pub fn last_origin(&self) -> Option<Origin> {
        self.remote
            .filter(|(seq, _)| seq.wrapping_add(1) == self.next_seq)
            .map(|(_, o)| o)
    }

    /// From now on the shared cursor moves only at
    /// [`store_position`](Self::store_position): not when a record is
    /// consumed, nor when [`next`](Self::next) skips an abandoned claim or
    /// damage (the daemon's log writer: nothing it has not written is given
    /// back to publishers).
    pub fn hold_cursor(&mut self) {
        self.hold = true;
    }

    /// Publishes the position reached (see [`hold_cursor`](Self::hold_cursor)).
    pub fn store_position(&self) {
        self.publish_cursor();
    }

    /// The ring's tail: where the next claim goes.
    pub fn tail(&self) -> u64 {
        self.tail_pos()
    }

    /// The sequence number the next message will have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Moves past `rec` (returned by [`next`](Self::next)) without delivering
    /// it: counted lost when `lost` (a dispatch thread whose subscriber's
    /// queue was full), else not counted here (the caller accounts for it).
    /// Messages skipped before it are added to `lost`, as in [`consume`](Self::consume).
    pub fn pass(&mut self, rec: &Record, lost: bool) {
        self.advance(rec.pos + rec.stride, rec.seq, 0, lost as u64);
    }

    /// Moves the cursor to `next_pos`, past the message numbered `seq`:
    /// the gap before it is lost, and so are `extra_lost` more.
    #[inline(always)]
    fn advance(&mut self, next_pos: u64, seq: u64, delivered: u64, extra_lost: u64) {
        self.pos = next_pos;
        self.lost = self
            .lost
            .saturating_add(seq.saturating_sub(self.next_seq))
            .saturating_add(extra_lost);
        self.next_seq = seq.wrapping_add(1);
        self.delivered += delivered;
        self.store_cursor();
    }

    /// Moves past `rec`, which was overwritten while read. Its header may be
    /// torn, so nothing in it is trusted: the message shows up as part of the
    /// sequence gap before the next message consumed, and is counted lost then.
    /// `Corrupt` (the cursor stays) if the segment's horizon is impossible.
    pub fn drop_overwritten(&mut self, rec: &Record) -> Result<()> {
        let from = rec.pos + ALIGN;
        self.resync(from)?;
        self.store_cursor();
        Ok(())
    }

    /// Copies the next message into `buf`. Returns (length, seq, timestamp).
    /// A message longer than `buf` is not consumed: `TooLarge`, with its length.
    pub fn receive_into(&mut self, buf: &mut [u8], deadline: &Deadline) -> Result<(usize, u64, u64)> {
        match self.receive_into_fast(buf) {
            Some(r) => Ok(r),
            None => self.receive_into_waiting(buf, deadline),
        }
    }

    /// [`receive_into`](Self::receive_into) past its fast path, for a caller
    /// that has just tried [`receive_into_fast`](Self::receive_into_fast)
    /// (not twice: the fast path spins before it gives up).
    pub fn receive_into_waiting(&mut self, buf: &mut [u8], deadline: &Deadline) -> Result<(usize, u64, u64)> {
        self.still_ours()?;
        match self.receive_general(buf, deadline, false)? {
            Got::Message(len, seq, timestamp_ns) => Ok((len, seq, timestamp_ns)),
            Got::Gap { .. } => unreachable!("not asked to stop at gaps"),
        }
    }

    /// [`receive_into`](Self::receive_into) for a subscriber that fills the
    /// gaps it was lapped over from elsewhere (a durable topic's log): a
    /// message after a gap is copied, then left unconsumed, and the gap
    /// (`from..to`, the seqs missed) is returned instead; once the caller has
    /// delivered them, [`filled_to`](Self::filled_to) moves on to `to`.
    pub fn receive_into_or_gap(&mut self, buf: &mut [u8], deadline: &Deadline) -> Result<Got> {
        self.still_ours()?;
        self.receive_general(buf, deadline, true)
    }

    /// The receives' general way (past the fast path): waits for the next
    /// message, copies it into `buf` (a copy a lossy publisher overwrote is
    /// dropped and the next looked for) and consumes it; with `stop_at_gap`
    /// a message after a gap is left unconsumed and the gap returned.
    fn receive_general(&mut self, buf: &mut [u8], deadline: &Deadline, stop_at_gap: bool) -> Result<Got> {
        loop {
            let rec = self.next(deadline)?;
            if rec.len > buf.len() {
                self.too_large(&rec, buf.len())?;
                continue;
            }
            if !self.copy_checked(&rec, buf) {
                self.drop_overwritten(&rec)?;
                continue;
            }
            if stop_at_gap && rec.seq > self.next_seq {
                return Ok(Got::Gap {
                    from: self.next_seq,
                    to: rec.seq,
                });
            }
            self.consume(&rec);
            return Ok(Got::Message(rec.len, rec.seq, rec.timestamp_ns));
        }
    }

    /// `rec` is longer than the caller's buffer of `room` bytes: `TooLarge`
    /// (unread), unless a lossy publisher overwrote it (its length may be
    /// torn): then it is passed over, and the caller looks again.
    #[cold]
    fn too_large(&mut self, rec: &Record, room: usize) -> Result<()> {
        if self.overwritten(rec.pos) {
            return self.drop_overwritten(rec);
        }
        self.too_large_len = rec.len;
        Err(Error::new(
            Status::TooLarge,
            format!("message of {} bytes does not fit a buffer of {room}", rec.len),
        ))
    }

    /// The messages before `seq` were delivered from elsewhere (see
    /// [`receive_into_or_gap`](Self::receive_into_or_gap)): not lost.
    pub fn filled_to(&mut self, seq: u64) {
        if seq > self.next_seq {
            self.next_seq = seq;
            self.store_cursor();
        }
    }
}

/// What [`Reader::receive_into_or_gap`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Got {
    /// A message consumed: (length, seq, timestamp).
    Message(usize, u64, u64),
    /// Messages `from..to` were overwritten before this reader got to them.
    Gap { from: u64, to: u64 },
}

impl Reader {
    /// The common case of [`receive_into`](Self::receive_into), kept short for
    /// latency: the record at the cursor is, or within a few spins becomes, a
    /// committed message that fits `buf`. Anything else (`None`) goes the
    /// general way, which also redoes a copy found torn here.
    #[inline(always)]
    fn receive_fast(&mut self, buf: &mut [u8]) -> Option<(usize, u64, u64)> {
        let rec = self.committed_soon()?;
        if rec.len > buf.len() {
            return None;
        }
        self.copy_out(&rec, buf)
    }

    /// [`receive_into`](Self::receive_into)'s common case alone (see
    /// `receive_fast`), for callers that inline it; `None`: call `receive_into`.
    #[inline(always)]
    pub fn receive_into_fast(&mut self, buf: &mut [u8]) -> Option<(usize, u64, u64)> {
        self.still_ours().ok()?;
        self.receive_fast(buf)
    }

    /// The common case of [`next`](Self::next), for a zero-copy view: as
    /// `receive_fast`, the record at the cursor is, or within a few spins
    /// becomes, a committed message; anything else (`None`) goes the
    /// general way. A lossy caller checks [`overwritten`](Self::overwritten)
    /// after reading the bytes, as after `next`.
    #[inline(always)]
    pub fn next_fast(&mut self) -> Option<Record> {
        self.still_ours().ok()?;
        self.committed_soon()
    }

    /// The record at the cursor, once it is (within a few spins) a
    /// committed message in sequence; `None` otherwise.
    #[inline(always)]
    fn committed_soon(&self) -> Option<Record> {
        let pos = self.pos;
        let spins = if self.wait.strategy == WaitStrategy::Spin {
            FAST_SPINS
        } else {
            self.wait.spin.min(FAST_SPINS)
        };
        let mut turns = 0;
        loop {
            let h = self.header_at(pos);
            // SAFETY: in bounds (header_at); the stamp is an atomic.
            let s = unsafe { (*h).stamp.load(Ordering::Acquire) };
            if s == stamp(self.geo.salt, pos, KIND_MESSAGE) {
                break;
            }
            // Committed as something else (a remote message, padding, an
            // aborted record) goes the general way at once: spinning for a
            // message stamp that never comes cost a bridged topic's
            // subscribers ~3 us per remote message (docs/BENCHMARKS.md).
            let (at, kind) = decode(self.geo.salt, s);
            if turns == spins || (at == pos && kind != KIND_CLAIMED) {
                return None;
            }
            // A message over 32 B goes on in the record's second line, which
            // the publisher writes before the stamp: fetching it while we spin
            // overlaps its transfer with the stamp's instead of following it
            // (a prefetch past the ring's end is harmless).
            sys::prefetch(h.cast::<u8>().wrapping_add(ALIGN as usize));
            std::hint::spin_loop();
            turns += 1;
        }
        self.record_at_cursor()
    }

    /// Copies `rec` (from `next`, or the fast path) into `buf`, which has room,
    /// and consumes it: (length, seq, timestamp). `None`, consuming nothing,
    /// if a lossy publisher overwrote it meanwhile (the copy may be torn).
    #[inline(always)]
    fn copy_out(&mut self, rec: &Record, buf: &mut [u8]) -> Option<(usize, u64, u64)> {
        if !self.copy_checked(rec, buf) {
            return None;
        }
        self.consume(rec);
        Some((rec.len, rec.seq, rec.timestamp_ns))
    }

    /// Copies `rec` into `buf`, which has room: false if a lossy publisher
    /// overwrote it meanwhile (the copy may be torn).
    #[inline(always)]
    fn copy_checked(&self, rec: &Record, buf: &mut [u8]) -> bool {
        debug_assert!(rec.len <= buf.len());
        // SAFETY: [data, + len) is inside the ring (validated in read_header);
        // `buf` has room (the callers check). The source may be overwritten
        // concurrently in lossy mode, which `overwritten` detects below.
        unsafe { std::ptr::copy_nonoverlapping(rec.data, buf.as_mut_ptr(), rec.len) };
        !self.overwritten(rec.pos)
    }

    /// Whether the record at the cursor is stamped as a committed message.
    #[inline(always)]
    fn committed_at_cursor(&self) -> bool {
        let h = self.header_at(self.pos);
        // SAFETY: in bounds (header_at); the stamp is an atomic.
        unsafe { (*h).stamp.load(Ordering::Acquire) == stamp(self.geo.salt, self.pos, KIND_MESSAGE) }
    }

    /// The common case of [`next`](Self::next), once the record at the cursor
    /// is stamped committed: its header is valid and in sequence. Anything
    /// else (`None`) goes the general way. As from `next`, a lossy caller
    /// checks [`overwritten`](Self::overwritten) after reading the bytes.
    #[inline(always)]
    fn record_at_cursor(&self) -> Option<Record> {
        let header = self.read_header(self.pos).ok()?;
        if header.2 < self.next_seq {
            return None;
        }
        Some(self.record(self.pos, header))
    }

    /// The record at `pos`, from its header fields (`read_header`).
    #[inline(always)]
    fn record(&self, pos: u64, (stride, len, seq, timestamp_ns): (u64, usize, u64, u64)) -> Record {
        Record {
            pos,
            stride,
            seq,
            timestamp_ns,
            len,
            data: self.header_at(pos).cast::<u8>().wrapping_add(RECORD_HEADER),
            origin: None,
        }
    }

    /// Stops using the subscriber slot without touching it (a forked child's
    /// inherited reader: the slot is its parent's).
    pub fn forget_slot(&mut self) {
        self.cursor_slot = None;
        self.entry = None;
    }

    /// Stops using the subscriber slot: marks its cursor page free (so that
    /// publishers stop waiting for it even before the daemon takes the slot
    /// back). The page is this subscriber's alone: the daemon makes a new one
    /// for the slot's next holder.
    pub fn leave_slot(&mut self) {
        self.disarm_poll();
        if let Some(c) = self.cursor_slot.take() {
            c.get().cursor.store(SLOT_FREE, Ordering::SeqCst);
            self.wake_publishers();
        }
        self.entry = None;
    }

    /// Pollable subscribers: announces in the waiters page that this reader
    /// waits for a signal on its eventfd (see `PollLine`), then looks again.
    /// Returns whether there is something to receive already (a message, a
    /// lap, the topic's end): then the caller signals its eventfd itself,
    /// since no publisher may. Call when a receive came back empty.
    pub fn arm_poll(&mut self) -> bool {
        if self.still_ours().is_err() {
            return true; // the receive will say so
        }
        if let (Some(slot), false) = (self.slot, self.poll_armed) {
            if self.entry.is_some() {
                self.waiters.arm(slot);
                self.poll_armed = true;
            }
        }
        // Announce, then re-check: a publisher either sees the bit or its
        // commit is visible here (its light fence pairs with this heavy one).
        // Where the kernel refuses the barrier, a waker may miss the bit.
        membarrier::heavy();
        self.something_to_receive()
    }

    /// Withdraws [`arm_poll`](Self::arm_poll)'s announcement (before receiving).
    #[inline]
    pub fn disarm_poll(&mut self) {
        if self.poll_armed {
            self.poll_armed = false;
            if let (Some(slot), Some(_)) = (self.slot, &self.entry) {
                self.waiters.disarm(slot);
            }
        }
    }

    /// Whether a receive now would not come back empty: something was
    /// claimed past the cursor and the record there is committed or given
    /// up, or a publisher lapped the cursor, or the topic ended. (A claim
    /// still being written is not: its commit signals.)
    fn something_to_receive(&self) -> bool {
        if gate_error(self.gate_line.get(), false).is_some() {
            return true;
        }
        let tail = self.tail_pos();
        if tail == self.pos {
            return false;
        }
        let h = self.header_at(self.pos);
        // SAFETY: in bounds (header_at); the stamp is an atomic.
        let (p, kind) = decode(self.geo.salt, unsafe { (*h).stamp.load(Ordering::Acquire) });
        (p == self.pos && kind != KIND_CLAIMED) || tail.wrapping_sub(self.pos) > self.geo.ring_size
    }

    /// This subscriber's cursor page (its counts), if it has a slot.
    pub fn cursor_page(&self) -> Option<&Cursor> {
        self.cursor_page.as_deref()
    }

    /// The topic's waiters page.
    pub fn waiters(&self) -> &Arc<Waiters> {
        &self.waiters
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.leave_slot();
    }
}

#[cfg(test)]
mod lap_tests {
    use super::*;

    const RING: u64 = 1 << 20;
    const STRIDE: u64 = 65_600;

    /// Feeds `l` records of `took` ticks each, one stride apart from `*pos`.
    fn feed(l: &mut LapChoice, pos: &mut u64, count: u64, took: impl Fn(u64) -> u64) {
        for i in 0..count {
            l.record(took(i), *pos, STRIDE, RING);
            *pos += STRIDE;
        }
    }

    /// Runs a trial where whole laps take `whole` and short ones `short`
    /// ticks (every 5th sample of each 40 times slower: the median ignores
    /// it); returns the choice and the records it took.
    fn trial(whole: u64, short: u64) -> (bool, u64) {
        let mut l = LapChoice::new(LargeLaps::Measured);
        let mut pos = 0;
        feed(&mut l, &mut pos, RING / STRIDE + 1, |_| 1);
        assert!(!l.short && l.n == 0, "a lap in whole laps, untimed, first");
        let mut n = 0;
        while l.keep == 0 {
            let t = if l.short { short } else { whole };
            l.record(if n % 5 == 0 { 40 * t } else { t }, pos, STRIDE, RING);
            pos += STRIDE;
            n += 1;
        }
        (l.short, n)
    }

    #[test]
    fn the_faster_kind_of_lap_is_kept() {
        let (short, n) = trial(6_000, 3_000);
        assert!(short);
        // Both kinds timed, the second after a lap of warm-up.
        assert_eq!(n, 2 * LAP_TRIAL as u64 + RING / STRIDE);
        assert!(!trial(6_000, 12_000).0);
        assert!(!trial(6_000, 6_000).0, "a tie keeps whole laps");
    }

    #[test]
    fn the_choice_is_tried_again_after_its_keep() {
        let mut l = LapChoice::new(LargeLaps::Measured);
        let mut pos = 0;
        feed(&mut l, &mut pos, RING / STRIDE + 1, |_| 1);
        // Short laps faster: chosen.
        while l.keep == 0 {
            let t = if l.short { 100 } else { 200 };
            l.record(t, pos, STRIDE, RING);
            pos += STRIDE;
        }
        assert!(l.short);
        feed(&mut l, &mut pos, LAP_KEEP, |_| 1_000_000);
        assert_eq!(l.keep, 0, "kept for LAP_KEEP records, whatever they took");
        // Now the subscribers read every byte: whole laps are faster.
        while l.keep == 0 {
            let t = if l.short { 200 } else { 100 };
            l.record(t, pos, STRIDE, RING);
            pos += STRIDE;
        }
        assert!(!l.short);
    }

    #[test]
    fn a_fixed_choice_is_never_tried() {
        for (laps, short) in [(LargeLaps::Short, true), (LargeLaps::Whole, false)] {
            let mut l = LapChoice::new(laps);
            for i in 0..10_000 {
                l.committed(i * STRIDE, STRIDE, RING);
                assert_eq!(l.short, short);
            }
        }
    }

    #[test]
    fn padding_before_a_claim() {
        // A straddling claim pads to the end, with or without short laps.
        assert_eq!(pad_before(RING - 64, 128, RING, false), 64);
        assert_eq!(pad_before(RING - 64, 128, RING, true), 64);
        // A small record goes anywhere.
        assert_eq!(pad_before(RING / 2, 4160, RING, true), 0);
        // A large one in short laps: four records, then the next lap.
        for k in 0..4 {
            assert_eq!(pad_before(k * STRIDE, STRIDE, RING, true), 0);
        }
        assert_eq!(pad_before(4 * STRIDE, STRIDE, RING, true), RING - 4 * STRIDE);
        assert_eq!(pad_before(4 * STRIDE, STRIDE, RING, false), 0);
        // 32 KiB records: the first 256 KiB of the lap.
        let s = stride_for(32 * 1024);
        assert_eq!(pad_before(LARGE_LAP - ALIGN, s, RING, true), 0);
        assert_eq!(pad_before(LARGE_LAP, s, RING, true), RING - LARGE_LAP);
        // Records too large for four in a ring never pad early.
        let s = stride_for(1 << 20);
        assert_eq!(pad_before(s, s, 4 * RING, true), 0);
    }
}

#[cfg(test)]
mod spin_tests {
    use super::*;

    const FUTEX: WaitConfig = WaitConfig {
        strategy: WaitStrategy::Futex,
        spin: 2000,
    };
    /// 1 turn = 10 ns here: the full spin is 20 us.
    const NS: fn() -> u64 = || 10;

    #[test]
    fn sleeps_longer_than_a_spin_halve_it_down_to_the_floor() {
        let mut b = SpinBudget::FULL;
        assert_eq!(b.limit(&FUTEX), 2000);
        // Spun it all, then slept 100 us: the full spin would not have caught it.
        b.after_wait(&FUTEX, 2000, 100_000, true, NS);
        assert_eq!(b.limit(&FUTEX), 1000);
        for _ in 0..20 {
            let spun = b.limit(&FUTEX);
            b.after_wait(&FUTEX, spun, 100_000, true, NS);
        }
        assert_eq!(b.limit(&FUTEX), MIN_SPIN);
    }

    #[test]
    fn a_sleep_the_full_spin_would_have_saved_restores_it() {
        let mut b = SpinBudget { turns: MIN_SPIN };
        // 16 turns (160 ns) and 15 us asleep: within the 20 us full spin.
        b.after_wait(&FUTEX, MIN_SPIN, 15_000, true, NS);
        assert_eq!(b.limit(&FUTEX), 2000);
    }

    #[test]
    fn a_wait_that_ended_while_spinning_doubles_it() {
        let mut b = SpinBudget { turns: 100 };
        b.after_wait(&FUTEX, 40, 0, true, || unreachable!("no clock without a sleep"));
        assert_eq!(b.limit(&FUTEX), 200);
        b.turns = 1500;
        b.after_wait(&FUTEX, 40, 0, true, NS);
        assert_eq!(b.limit(&FUTEX), 2000);
    }

    /// Through a real reader: receives that time out on an idle topic,
    /// each after sleeping far longer than a whole spin, leave it spinning
    /// the least (the budget counts waits that end in a timeout too).
    #[test]
    fn a_subscriber_polling_an_idle_topic_spins_less_and_less() {
        let params = crate::segment::TopicParams {
            policy: Policy::Lossy,
            ring_size: 1 << 16,
            max_message: 64,
            max_subscribers: 2,
            wal: None,
            huge_pages: false,
            retain_bytes: None,
            retain_seconds: None,
        };
        let topic = crate::local::LocalTopic::create("spin", &params).unwrap();
        let mut r = topic.reader(0).unwrap();
        r.wait.spin = 200; // a short spin: far shorter than each 20 ms wait
        let mut buf = [0u8; 64];
        for _ in 0..8 {
            let e = r
                .receive_into(&mut buf, &Deadline::after(Some(Duration::from_millis(20))))
                .unwrap_err();
            assert_eq!(e.status, Status::Timeout);
        }
        assert_eq!(r.spin.limit(&r.wait), MIN_SPIN);
        // What is there at once is read without a wait, and changes nothing.
        topic.writer(None).publish(b"now").unwrap();
        assert_eq!(r.receive_into(&mut buf, &Deadline::after(None)).unwrap().0, 3);
        assert_eq!(r.spin.limit(&r.wait), MIN_SPIN);
    }

    #[test]
    fn no_wait_or_a_timeout_while_spinning_changes_nothing() {
        let mut b = SpinBudget { turns: 100 };
        b.after_wait(&FUTEX, 0, 0, true, || unreachable!("no wait"));
        b.after_wait(&FUTEX, 100, 0, false, || unreachable!("no sleep"));
        assert_eq!(b.limit(&FUTEX), 100);
        // A timeout after a sleep longer than the full spin halves it.
        b.after_wait(&FUTEX, 100, 100_000, false, NS);
        assert_eq!(b.limit(&FUTEX), 50);
    }

    #[test]
    fn other_strategies_and_small_spins_keep_what_is_asked() {
        let mut b = SpinBudget { turns: MIN_SPIN };
        for strategy in [WaitStrategy::Spin, WaitStrategy::Yield] {
            assert_eq!(b.limit(&WaitConfig { strategy, spin: 2000 }), 2000);
        }
        // Never more than asked, nor a floor above it.
        let few = WaitConfig { spin: 4, ..FUTEX };
        b.after_wait(&few, 4, 1_000_000, true, NS);
        assert_eq!(b.limit(&few), 4);
        let none = WaitConfig { spin: 0, ..FUTEX };
        b.after_wait(&none, 0, 1_000_000, true, NS);
        assert_eq!(b.limit(&none), 0);
    }
}
