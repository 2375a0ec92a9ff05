//! A topic's shared memory: three kinds of sealed memfds, so that each party
//! can write only what it must (docs/SECURITY.md, "least privilege").
//!
//! **The segment** (one per topic; the daemon and publishers map it
//! read-write, subscribers read-only):
//!
//! ```text
//! offset  line  contents                                   written by
//! 0       0     Meta: magic, version, geometry, salt        daemon, once
//! 64      1-2   topic name                                  daemon, once
//! 192     3     tail: (position, next seq) pair             publishers (CAS)
//! 256     4     data: futex word subscribers sleep on       publishers
//! 320     5     space: publishers asleep on the space word  publishers
//! 384     6     horizon: no write reaches past it           publishers
//! 448     7     stats: aborted, overruns, wakes, space_waits publishers
//! 512     8     synced: publishers waiting for the log's sync publishers, daemon
//! 576     9     lap: where a lap was last padded short       publishers
//! then          64 publisher slots, one line each           publishers, daemon (owner generation)
//! ring_offset   the ring: ring_size bytes, page aligned     publishers
//! ```
//!
//! **The waiters page** ([`Waiters`], one per topic; subscribers and the
//! daemon map it read-write, publishers read-only): how many subscribers
//! sleep on the data word, the space word publishers sleep on (bumped by
//! subscribers as they read), the subscribers' wait statistics, and which
//! pollable subscribers wait for a signal on their descriptor ([`PollLine`]).
//!
//! **A cursor page** ([`Cursor`], one per subscriber; its subscriber and the
//! daemon map it read-write, reliable publishers read-only): where the
//! subscriber reads, and its counts.
//!
//! Every page starts with a line naming its kind and the segment's salt, so
//! that pages of different topics cannot be mixed. The geometry is read once,
//! validated and copied into [`Geometry`]; nothing later re-reads it from
//! shared memory, so a corrupted header cannot move any bound after open.

use crate::error::{Error, Result};
use crate::sys::{self, atomic128, mmap::Mapping, shm};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub const MAGIC: u64 = u64::from_le_bytes(*b"AETHERSG");
/// 6: the waiters page has the pollable subscribers' line ([`PollLine`]).
/// 8: the header has the lap line ([`LapLine`]).
/// 9: the waiters page's data line counts sleeps ([`DataWaitLine::sleeps`]).
/// 10: the header's space line counts sleeps too ([`SpaceLine::sleeps`]).
/// (The `unpadded-*` benchmark builds' segments are another layout: their own version.)
pub const LAYOUT_VERSION: u32 = if cfg!(any(
    feature = "unpadded-header",
    feature = "unpadded-slots",
    feature = "unpadded-waiters"
)) {
    0x8000_000a
} else {
    10
};
pub const LINE: usize = 64;
pub const MIN_RING: u64 = 4096;
pub const MAX_RING: u64 = 1 << 30;
pub const MAX_SUBSCRIBERS: u32 = 1024;
/// Publisher slots per topic: how many publishers may be open on it at once.
pub const MAX_PUBLISHERS: u32 = 64;
pub const MAX_TOPIC_LEN: usize = 120;
/// A cursor (or publisher claim) holding this value is not in use.
pub const SLOT_FREE: u64 = u64::MAX;
/// Directory flag: publishers wait for this subscriber (reliable topics).
pub const SLOT_GATING: u32 = 1;
/// Directory flag: the daemon has handed this slot out.
pub const SLOT_LIVE: u32 = 2;

/// What a topic does when a subscriber falls a full ring behind.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Publishers go on and overwrite; the subscriber is told how many
    /// messages it lost (`Subscriber::lost`).
    Lossy = 0,
    /// Publishers wait (up to their timeout) for the slowest subscriber:
    /// nothing is lost.
    Reliable = 1,
}

impl Policy {
    /// The policy of a C `aether_policy` value; `None` for an unknown one.
    pub fn from_u32(v: u32) -> Option<Policy> {
        match v {
            0 => Some(Policy::Lossy),
            1 => Some(Policy::Reliable),
            _ => None,
        }
    }

    /// "lossy" or "reliable": the name in configuration files, the admin
    /// protocol, the CLI and Python.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Lossy => "lossy",
            Policy::Reliable => "reliable",
        }
    }

    /// The policy [`name`](Self::name) names.
    pub fn from_name(name: &str) -> Option<Policy> {
        [Policy::Lossy, Policy::Reliable].into_iter().find(|p| p.name() == name)
    }
}

#[repr(C, align(64))]
pub struct Meta {
    pub magic: u64,
    pub layout_version: u32,
    pub ring_offset: u32,
    pub ring_size: u64,
    pub max_message: u64,
    pub policy: u32,
    pub max_subscribers: u32,
    pub salt: u64,
    pub instance_id: u64,
    pub created_ns: u64,
}

#[repr(C, align(64))]
pub struct TopicName {
    pub len: u32,
    pub _pad: u32,
    pub bytes: [u8; MAX_TOPIC_LEN],
}

#[cfg_attr(not(feature = "unpadded-header"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-header", repr(C))]
pub struct TailLine {
    /// `lo`: byte position of the next claim; `hi`: sequence number of the next message.
    pub pair: atomic128::Pair,
}

/// The word subscribers sleep on while there is nothing to read.
#[cfg_attr(not(feature = "unpadded-header"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-header", repr(C))]
pub struct DataLine {
    /// Bumped by a publisher before FUTEX_WAKE (and by the daemon to wake
    /// everyone), so that a sleeper about to wait on the old value does not.
    pub word: AtomicU32,
}

/// Publishers waiting for space (reliable topics, or a stalled peer): they
/// sleep on the waiters page's `space_word`.
#[cfg_attr(not(feature = "unpadded-header"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-header", repr(C))]
pub struct SpaceLine {
    /// Publishers asleep or about to sleep on the space word.
    pub waiters: AtomicU32,
    /// Bumped by each publisher about to sleep for space, after it read
    /// the space word: a subscriber that already woke the sleepers since
    /// it last saw this change wakes no one again, where it made one
    /// FUTEX_WAKE per message read until a woken publisher ran (a bridged
    /// 64 B run: 167,758 wakes for 1,342 sleeps). As [`DataWaitLine::sleeps`].
    pub sleeps: AtomicU64,
}

/// Bumps `word` (so that a sleeper about to wait on the old value does not)
/// and wakes every sleeper, whether or not any is counted.
pub fn wake_all(word: &AtomicU32) {
    word.fetch_add(1, Ordering::SeqCst);
    sys::futex::wake_all(word);
}

/// No publisher writes at or above this ring position: raised (in steps
/// of a 64th of the ring) before a claim's bytes are written. Lossy readers
/// check it after a copy, instead of the tail that every claim writes; it
/// changes about 64 times per ring, so the line stays cached.
#[cfg_attr(not(feature = "unpadded-header"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-header", repr(C))]
pub struct HorizonLine {
    pub horizon: AtomicU64,
}

/// Where a reliable publisher last padded a lap short while every gating
/// subscriber was there ([`crate::ring::LargeLaps::CaughtUp`]): such a
/// subscriber is as good as past the padding, so publishers may write over
/// it, and a reader that finds its position written over goes on at the
/// next lap. Written once per short lap, read by readers only when they
/// find no record where they are.
#[cfg_attr(not(feature = "unpadded-header"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-header", repr(C))]
pub struct LapLine {
    /// The padding's position (0: none yet; a lap is never padded at its start).
    pub padded_at: AtomicU64,
}

/// The daemon's word on the topic, in the control page (which only the
/// daemon writes): publishers read it on every claim.
#[repr(C, align(64))]
pub struct GateLine {
    /// Bumped each time a gating subscriber joins or leaves, so publishers
    /// re-read the directory.
    pub slots_gen: AtomicU64,
    pub _pad0: u64,
    /// The topic's life: [`TOPIC_LIVE`], [`TOPIC_DRAINING`], [`TOPIC_CLOSED`], [`TOPIC_DELETED`].
    /// Set by the daemon; publishers read it on every claim (same line as
    /// `slots_gen` and `keeper`), subscribers when they find nothing to read.
    pub state: AtomicU32,
    pub _pad: u32,
    /// A process-shared robust mutex (glibc's `pthread_mutex_t`, 40 bytes)
    /// that the daemon holds for the segment's life. When the daemon dies,
    /// however it dies, the kernel marks its first word [`KEEPER_DIED`]
    /// (robust futex list): every client sees the death at its next look
    /// at this line, without a system call. Zero: nobody holds it (a
    /// segment made outside a daemon, or one the daemon has let go).
    pub keeper: [AtomicU32; 10],
}

/// Set by the kernel in the keeper word when the daemon holding it died.
pub const KEEPER_DIED: u32 = 0x4000_0000;

impl GateLine {
    /// Whether the daemon that made this segment has died (see `keeper`).
    #[inline(always)]
    pub fn daemon_died(&self) -> bool {
        self.keeper[0].load(Ordering::Acquire) & KEEPER_DIED != 0
    }
}

/// The topic accepts messages.
pub const TOPIC_LIVE: u32 = 0;
/// The broker is shutting down: publishing is refused, subscribers read what is left.
pub const TOPIC_DRAINING: u32 = 1;
/// The broker has shut down: nothing more will be published.
pub const TOPIC_CLOSED: u32 = 2;
/// The topic was deleted.
pub const TOPIC_DELETED: u32 = 3;

#[cfg_attr(not(feature = "unpadded-header"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-header", repr(C))]
pub struct StatsLine {
    /// Loans given up (`Writer::abort`).
    pub aborted: AtomicU64,
    /// Reliable claims written although a subscriber that joined meanwhile
    /// had not read the space, after the publish timeout.
    pub overruns: AtomicU64,
    /// FUTEX_WAKE calls by publishers (subscribers count theirs in the waiters page).
    pub wakes: AtomicU64,
    /// Times a publisher went to sleep on the space futex (reliable topics,
    /// or waiting for a stalled peer publisher).
    pub space_waits: AtomicU64,
}

/// A subscriber slot as the daemon hands it out: the directory entry that
/// says whether it counts, in the segment (which subscribers cannot write).
#[repr(C, align(64))]
pub struct SubscriberEntry {
    /// Bumped by the daemon each time it takes the slot back: a handle notes
    /// it at open, and once it differs, the slot is no longer the handle's
    /// (kicked, or its connection ended); publishers map the slot's cursor
    /// page for this generation only.
    pub owner_gen: AtomicU64,
    /// [`SLOT_LIVE`], and [`SLOT_GATING`] on reliable topics.
    pub flags: AtomicU32,
    pub pid: AtomicU32,
}

/// Where a publisher announces the claim it is writing, so that no other
/// publisher laps it mid-write (docs/ARCHITECTURE.md, "Publisher gating").
#[cfg_attr(not(feature = "unpadded-slots"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-slots", repr(C))]
pub struct PubSlot {
    /// A lower bound of the position this publisher is writing at, or [`SLOT_FREE`].
    pub claim: AtomicU64,
    pub pid: AtomicU32,
}

#[repr(C)]
pub struct Header {
    pub meta: Meta,
    pub name: TopicName,
    pub tail: TailLine,
    pub data_notify: DataLine,
    pub space_notify: SpaceLine,
    pub horizon: HorizonLine,
    pub stats: StatsLine,
    pub synced_notify: SyncedLine,
    pub lap: LapLine,
}

/// Publishers of an `fsync = always` topic waiting for the log writer's
/// sync (see [`DurableLine`]). In the segment, which publishers may write:
/// a publisher that meddles here only wakes others early (they re-check) or
/// makes them sleep in slices until the sync they wait for.
#[cfg_attr(not(feature = "unpadded-header"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-header", repr(C))]
pub struct SyncedLine {
    /// Bumped by the daemon after each sync, before FUTEX_WAKE.
    pub word: AtomicU32,
    /// Publishers asleep or about to sleep on `word`.
    pub waiters: AtomicU32,
}

impl SyncedLine {
    /// The futex bit a publisher waiting for message `seq` sleeps with: a
    /// sync wakes only those whose messages it may have covered, not every
    /// publisher that waits for a later one.
    pub fn bit(seq: u64) -> u32 {
        1 << (seq % 32)
    }

    /// Says that messages below `to` are synced, those from `from` on being
    /// new: bumps the word and wakes the publishers waiting for them (by
    /// their [`bit`](Self::bit)), if any is counted. Call after storing
    /// [`DurableLine::synced`] `SeqCst`: with these `SeqCst` operations that
    /// makes the fence the sleepers' re-check pairs with (they issue no
    /// membarrier for this wake).
    pub fn wake(&self, from: u64, to: u64) {
        self.word.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let bits = if to.saturating_sub(from) >= 32 {
            u32::MAX
        } else {
            (from..to).fold(0, |b, seq| b | Self::bit(seq))
        };
        sys::futex::wake_bits(&self.word, bits);
    }
}

/// A durable topic's log, as far as publishers need it: in the control
/// page, which only the daemon writes.
#[repr(C, align(64))]
pub struct DurableLine {
    /// Every message numbered below this one is on disk (fdatasync).
    pub synced: AtomicU64,
    /// 1: a publish returns only once its message is below `synced` (the
    /// topic's fsync policy is `always`).
    pub always: AtomicU32,
}

#[cfg(not(any(
    feature = "unpadded-header",
    feature = "unpadded-slots",
    feature = "unpadded-waiters"
)))]
const _: () = {
    assert!(std::mem::size_of::<Meta>() == 64);
    assert!(std::mem::size_of::<TopicName>() == 128);
    assert!(std::mem::offset_of!(Header, tail) == 192);
    assert!(std::mem::offset_of!(Header, data_notify) == 256);
    assert!(std::mem::offset_of!(Header, space_notify) == 320);
    assert!(std::mem::offset_of!(Header, horizon) == 384);
    assert!(std::mem::offset_of!(Header, stats) == 448);
    assert!(std::mem::offset_of!(Header, synced_notify) == 512);
    assert!(std::mem::offset_of!(Header, lap) == 576);
    assert!(std::mem::size_of::<Header>() == 640);
    assert!(std::mem::size_of::<SubscriberEntry>() == LINE);
    assert!(std::mem::size_of::<PageMeta>() == LINE);
    assert!(std::mem::size_of::<WaitersPage>() == 6 * LINE && std::mem::offset_of!(WaitersPage, poll) == 4 * LINE);
    assert!(std::mem::size_of::<CursorPage>() == 2 * LINE);
    assert!(std::mem::size_of::<PubSlot>() == LINE);
};

/// The `unpadded-*` builds really share lines: the tail with the horizon
/// and stats (`header`), the publisher slots four to a line (`slots`), the
/// waiters page's hot words in one line (`waiters`).
#[cfg(feature = "unpadded-header")]
const _: () = {
    assert!(std::mem::offset_of!(Header, tail) / LINE == std::mem::offset_of!(Header, horizon) / LINE);
    assert!(std::mem::offset_of!(Header, tail) / LINE == std::mem::offset_of!(Header, stats) / LINE);
};
#[cfg(feature = "unpadded-slots")]
const _: () = assert!(std::mem::size_of::<PubSlot>() == 16);
#[cfg(feature = "unpadded-waiters")]
const _: () =
    assert!(std::mem::offset_of!(WaitersPage, data) / LINE == std::mem::offset_of!(WaitersPage, stats) / LINE);

const _: () = {
    assert!(std::mem::size_of::<GateLine>() == LINE);
    assert!(std::mem::offset_of!(GateLine, keeper) == 24);
    assert!(std::mem::size_of::<ControlHead>() == CONTROL_DIRECTORY);
    // The keeper holds exactly a pthread_mutex_t, 8-aligned.
    assert!(std::mem::size_of::<libc::pthread_mutex_t>() == 40);
    assert!(std::mem::align_of::<libc::pthread_mutex_t>() <= 8);
};

/// Validated, process-local copy of a segment's immutable parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub ring_size: u64,
    pub max_message: u64,
    pub policy: Policy,
    pub max_subscribers: u32,
    pub ring_offset: usize,
    pub salt: u64,
    pub instance_id: u64,
    /// Backed by huge pages (`TopicParams::huge_pages`).
    pub huge_pages: bool,
}

impl Geometry {
    pub fn total_size(&self) -> u64 {
        self.ring_offset as u64 + self.ring_size
    }

    /// Bytes of the segment's file: the total size, rounded up to whole huge
    /// pages when it has them (hugetlbfs sizes are).
    pub fn file_size(&self) -> u64 {
        file_size(self.total_size(), self.huge_pages)
    }
}

/// `total` bytes as a segment file takes them: whole huge pages when it has them.
fn file_size(total: u64, huge_pages: bool) -> u64 {
    if huge_pages {
        total.next_multiple_of(shm::HUGE_PAGE)
    } else {
        total
    }
}

/// Bytes of a record header in the ring: stamp, len, stride, seq, timestamp
/// (the layout is `ring.rs`'s `RecordHeader`, asserted there to match).
pub const RECORD_HEADER: usize = 32;

/// Largest message a ring of `ring_size` bytes accepts: a record may take at
/// most half the ring, so a wrap's padding plus one record always fits.
pub fn max_message_limit(ring_size: u64) -> u64 {
    ring_size / 2 - RECORD_HEADER as u64
}

/// The ring starts after the header and the publisher slots, page aligned.
fn ring_offset() -> usize {
    let raw = pub_slots_offset() + MAX_PUBLISHERS as usize * PUB_SLOT_STRIDE;
    raw.div_ceil(PAGE) * PAGE
}

/// Bytes between publisher slots: a line each (less with `unpadded`).
const PUB_SLOT_STRIDE: usize = std::mem::size_of::<PubSlot>();

fn pub_slots_offset() -> usize {
    std::mem::size_of::<Header>()
}

/// Bytes of a topic's control page: its head, then one directory line per subscriber slot.
fn control_size(max_subscribers: u32) -> usize {
    (CONTROL_DIRECTORY + max_subscribers as usize * LINE).div_ceil(PAGE) * PAGE
}

/// Bytes of shared memory a topic with `params` takes, cursor pages aside
/// (segment, control page and waiters page).
pub fn segment_size(params: &TopicParams) -> u64 {
    file_size(ring_offset() as u64 + params.ring_size, params.huge_pages)
        + (control_size(params.max_subscribers) + PAGE) as u64
}

/// Parameters a topic is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicParams {
    /// Lossy (default) or reliable.
    pub policy: Policy,
    /// The ring's bytes: a power of two, 4 KiB to 1 GiB; [`RING_SIZED`]
    /// (the default): sized for `max_message` ([`TopicParams::ring_for`]).
    pub ring_size: u64,
    /// The largest message, in bytes: at most half the ring less a record
    /// header (default 64 KiB).
    pub max_message: u64,
    /// Subscribers at once: 1 to 1024 (default 64).
    pub max_subscribers: u32,
    /// Durable topics: the daemon logs every message to disk (a write-ahead
    /// log it replays from), with this fsync policy. `None` (default): the
    /// topic lives in memory only. A lossy durable topic's publishers wait
    /// for the log writer alone (nothing is overwritten before it is
    /// logged); its subscribers may be lapped, and may fill what they
    /// missed from the log (`SubscriberConfig::fill_gaps`).
    pub wal: Option<Fsync>,
    /// Back the ring with 2 MiB huge pages (a `MFD_HUGETLB` memfd): one TLB
    /// entry covers 512 times the bytes, for rings far bigger than the TLB
    /// reaches. The pages must be reserved beforehand (`vm.nr_hugepages`);
    /// creating the topic fails with `Limit` when too few are free. The
    /// segment is rounded up to whole huge pages.
    pub huge_pages: bool,
    /// A durable topic's log is kept to at most about this many bytes (the
    /// oldest files removed first). `None` (default): the daemon's `[log]
    /// retain_bytes` applies (and follows its reloads); `Some(0)`: no limit
    /// for this topic, whatever `[log]` says. Only with `wal`.
    pub retain_bytes: Option<u64>,
    /// A durable topic's log files whose every message is older than this
    /// many seconds are removed. `None` (default): the daemon's `[log]
    /// retain_seconds`; `Some(0)`: kept forever. Only with `wal`.
    pub retain_seconds: Option<u64>,
}

/// When the daemon's log writer makes what it wrote durable (fdatasync).
/// `docs/DURABILITY.md` says what each survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Never: the kernel writes back when it likes. Survives a crash of any
    /// process, the daemon's included; not a power loss.
    Never,
    /// Every this many milliseconds (1 to 60000), for everything written
    /// since the last: a power loss loses at most about that much.
    Interval(u32),
    /// Before a publish returns: a publish that returned OK survives a
    /// power loss. Publishers waiting together share one sync.
    Always,
}

impl Fsync {
    /// `never`, `always` or `interval=MS` (the CLI's and the configuration file's spelling).
    pub fn parse(s: &str) -> Option<Fsync> {
        match s {
            "never" => Some(Fsync::Never),
            "always" => Some(Fsync::Always),
            _ => {
                let ms = s.strip_prefix("interval=")?.parse().ok()?;
                (1..=60_000).contains(&ms).then_some(Fsync::Interval(ms))
            }
        }
    }
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fsync::Never => write!(f, "never"),
            Fsync::Always => write!(f, "always"),
            Fsync::Interval(ms) => write!(f, "interval={ms}"),
        }
    }
}

/// `TopicParams::ring_size` for a ring sized for the topic's messages
/// ([`TopicParams::ring_for`]): the default.
pub const RING_SIZED: u64 = 0;

/// The smallest ring a topic gets when its size is left to [`TopicParams::ring_for`].
pub const SIZED_RING_MIN: u64 = 1 << 20;

impl Default for TopicParams {
    fn default() -> Self {
        TopicParams {
            policy: Policy::Lossy,
            ring_size: RING_SIZED,
            max_message: 64 << 10,
            max_subscribers: 64,
            wal: None,
            huge_pages: false,
            retain_bytes: None,
            retain_seconds: None,
        }
    }
}

/// In words, for logs: `reliable, 1 MiB ring, messages up to 65536 bytes, 64 subscribers`.
impl std::fmt::Display for TopicParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = match self.sized().ring_size {
            r if r >= 1 << 20 && r % (1 << 20) == 0 => format!("{} MiB", r >> 20),
            r if r >= 1 << 10 && r % (1 << 10) == 0 => format!("{} KiB", r >> 10),
            r => format!("{r} bytes"),
        };
        write!(
            f,
            "{}, {ring} ring, messages up to {} bytes, {} subscribers",
            self.policy.name(),
            self.max_message,
            self.max_subscribers
        )?;
        if let Some(fsync) = self.wal {
            write!(f, ", logged (fsync {fsync})")?;
        }
        if self.huge_pages {
            write!(f, ", huge pages")?;
        }
        match self.retain_bytes {
            Some(0) => write!(f, ", log size unlimited")?,
            Some(b) => write!(f, ", log kept to {b} bytes")?,
            None => {}
        }
        match self.retain_seconds {
            Some(0) => write!(f, ", log kept forever")?,
            Some(s) => write!(f, ", log kept {s} s")?,
            None => {}
        }
        Ok(())
    }
}

impl TopicParams {
    /// The ring a topic gets when it leaves `ring_size` at [`RING_SIZED`]:
    /// the smallest that takes a `max_message` record (one may fill at
    /// most half the ring), and at least 1 MiB. Large messages then cycle
    /// through memory that stays in cache, not through a ring many times
    /// their size (64 KiB messages to a reader of their head: 1.6-1.9x the
    /// rate of a 4 MiB ring, docs/BENCHMARKS.md, session 10), and small
    /// ones still get thousands of records
    /// (8192 of 64 B). The ring is the topic's memory (plus a few pages).
    pub fn ring_for(max_message: u64) -> u64 {
        let record = max_message.saturating_add(RECORD_HEADER as u64);
        record
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX)
            .max(SIZED_RING_MIN)
    }

    /// These parameters with a ring of [`RING_SIZED`] made concrete
    /// ([`ring_for`](Self::ring_for)); the others as they are.
    pub fn sized(mut self) -> TopicParams {
        if self.ring_size == RING_SIZED {
            self.ring_size = Self::ring_for(self.max_message);
        }
        self
    }

    /// Checks parameters whose ring is concrete (see [`sized`](Self::sized)).
    pub fn validate(&self) -> Result<()> {
        if !self.ring_size.is_power_of_two() || self.ring_size < MIN_RING || self.ring_size > MAX_RING {
            return Err(Error::invalid(format!(
                "ring_size {} must be a power of two between {MIN_RING} and {MAX_RING}",
                self.ring_size
            )));
        }
        if self.max_message == 0 || self.max_message > max_message_limit(self.ring_size) {
            return Err(Error::invalid(format!(
                "max_message {} must be between 1 and {} for a ring of {} bytes",
                self.max_message,
                max_message_limit(self.ring_size),
                self.ring_size
            )));
        }
        if self.max_subscribers == 0 || self.max_subscribers > MAX_SUBSCRIBERS {
            return Err(Error::invalid(format!(
                "max_subscribers must be between 1 and {MAX_SUBSCRIBERS}"
            )));
        }
        if let Some(Fsync::Interval(ms)) = self.wal {
            if !(1..=60_000).contains(&ms) {
                return Err(Error::invalid(format!("fsync interval {ms} ms must be 1 to 60000")));
            }
        }
        if self.wal.is_none() {
            for (name, v) in [
                ("retain_bytes", self.retain_bytes),
                ("retain_seconds", self.retain_seconds),
            ] {
                if v.is_some() {
                    return Err(Error::invalid(format!(
                        "{name} limits a durable topic's log: this topic is not durable (it has no log)"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A topic's segment and control page, mapped, with the validated geometry.
pub struct Segment {
    map: Mapping,
    /// The control page: the gate line and the directories (read-only
    /// everywhere but in the daemon).
    control: Mapping,
    geo: Geometry,
    /// Whether this process maps the segment writable (the daemon, publishers).
    writable: bool,
}

/// The head of the control page: what it is, the gate line, and the owner
/// generations of the publisher slots; the subscriber directory follows.
#[repr(C)]
pub struct ControlHead {
    pub meta: PageMeta,
    pub gate: GateLine,
    /// Bumped by the daemon each time it takes a publisher slot back.
    pub pub_owner_gen: [AtomicU64; MAX_PUBLISHERS as usize],
    pub durable: DurableLine,
}

/// Where the subscriber directory starts in the control page.
const CONTROL_DIRECTORY: usize = 3 * LINE + MAX_PUBLISHERS as usize * 8;
pub const CONTROL_MAGIC: u64 = u64::from_le_bytes(*b"AETHERCT");

/// Whether `fd` was opened for writing (a read-only one can only be mapped read-only).
fn fd_writable(fd: &OwnedFd) -> bool {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    fcntl(fd, FcntlArg::F_GETFL)
        .map(|f| OFlag::from_bits_truncate(f) & OFlag::O_ACCMODE != OFlag::O_RDONLY)
        .unwrap_or(false)
}

/// Maps the `len` bytes of `fd`, writable when the descriptor allows it;
/// returns the mapping and whether it is writable.
fn map_fd(fd: &OwnedFd, len: usize, what: &str) -> Result<(Mapping, bool)> {
    let writable = fd_writable(fd);
    let map = if writable {
        Mapping::shared(fd.as_fd(), len, true)
    } else {
        Mapping::shared_readonly(fd.as_fd(), len, true)
    };
    Ok((map.map_err(|e| Error::io(&format!("mmap {what}"), e))?, writable))
}

impl Segment {
    /// Creates a topic's segment and control page: sealed memfds (no name
    /// anyone could open; their size cannot change, so no holder can pull the
    /// memory from under other mappings), with fresh headers. Used by the
    /// daemon. Returns the descriptors (the segment's, the control page's)
    /// and the mappings.
    /// The first message published gets sequence number `first_seq` (a
    /// durable topic's numbering goes on from its log).
    pub fn create(
        topic: &str,
        params: &TopicParams,
        instance_id: u64,
        first_seq: u64,
    ) -> Result<(OwnedFd, OwnedFd, Segment)> {
        let params = &params.sized();
        params.validate()?;
        if topic.len() > MAX_TOPIC_LEN {
            return Err(Error::invalid("topic name too long"));
        }
        let ring_offset = ring_offset();
        let geo = Geometry {
            ring_size: params.ring_size,
            max_message: params.max_message,
            policy: params.policy,
            max_subscribers: params.max_subscribers,
            ring_offset,
            salt: sys::random_u64() | 1,
            instance_id,
            huge_pages: params.huge_pages,
        };
        let label = format!("aether:{topic}");
        let size = geo.file_size();
        let fd = if geo.huge_pages {
            shm::create_sealed_huge(&label, size)
        } else {
            shm::create_sealed(&label, size)
        }
        .map_err(|e| Error::io("memfd_create segment", e))?;
        // Not populated: a topic nobody uses takes (almost) no memory. (Huge
        // pages are reserved for the file here all the same.)
        let map = Mapping::shared(fd.as_fd(), size as usize, false).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOMEM) if geo.huge_pages => Error::new(
                crate::error::Status::Limit,
                format!(
                    "too few huge pages: the topic needs {} of 2 MiB and {} are free (reserve more with `sysctl vm.nr_hugepages=N`)",
                    size / shm::HUGE_PAGE,
                    shm::huge_pages_free().map_or("?".to_string(), |n| n.to_string())
                ),
            ),
            _ => Error::io("mmap segment", e),
        })?;
        let control_len = control_size(params.max_subscribers);
        let control_fd = shm::create_sealed(&format!("{label}:control"), control_len as u64)
            .map_err(|e| Error::io("memfd_create control page", e))?;
        let control =
            Mapping::shared(control_fd.as_fd(), control_len, false).map_err(|e| Error::io("mmap control page", e))?;
        let seg = Segment {
            map,
            control,
            geo,
            writable: true,
        };
        let h = seg.map.as_ptr().cast::<Header>();
        // SAFETY: the object is fresh (zero-filled by ftruncate), at least a
        // Header long, page aligned, and no other process knows it yet; the
        // same holds for the control page and its PageMeta.
        unsafe {
            let mut name = TopicName {
                len: topic.len() as u32,
                _pad: 0,
                bytes: [0; MAX_TOPIC_LEN],
            };
            name.bytes[..topic.len()].copy_from_slice(topic.as_bytes());
            std::ptr::addr_of_mut!((*h).name).write(name);
            std::ptr::addr_of_mut!((*h).meta).write(Meta {
                magic: MAGIC,
                layout_version: LAYOUT_VERSION,
                ring_offset: ring_offset as u32,
                ring_size: geo.ring_size,
                max_message: geo.max_message,
                policy: geo.policy as u32,
                max_subscribers: geo.max_subscribers,
                salt: geo.salt,
                instance_id,
                created_ns: sys::realtime_ns(),
            });
            seg.control.as_ptr().cast::<PageMeta>().write(PageMeta {
                magic: CONTROL_MAGIC,
                layout_version: LAYOUT_VERSION,
                slot: geo.max_subscribers,
                salt: geo.salt,
            });
        }
        for i in 0..MAX_PUBLISHERS {
            let slot = seg.pub_slot(i).expect("slot index below max");
            slot.claim.store(SLOT_FREE, Ordering::Relaxed);
        }
        seg.tail().hi.store(first_seq, Ordering::Relaxed);
        seg.durable().synced.store(first_seq, Ordering::Relaxed);
        if params.wal == Some(Fsync::Always) {
            seg.durable().always.store(1, Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        Ok((fd, control_fd, seg))
    }

    /// Maps a segment and its control page received from the daemon and
    /// validates both. Every check failure is `Corrupt`: the descriptors do
    /// not hold a topic we can trust.
    pub fn open(fd: &OwnedFd, control_fd: &OwnedFd) -> Result<Segment> {
        if !atomic128::supported() {
            return Err(Error::new(
                crate::error::Status::Invalid,
                "this CPU lacks cmpxchg16b, which the ring needs",
            ));
        }
        // An unsealed descriptor could be truncated under our mapping (SIGBUS).
        if !shm::size_sealed(fd) || !shm::size_sealed(control_fd) {
            return Err(Error::corrupt(
                "segment descriptor is not size-sealed: refusing to map it",
            ));
        }
        let size = shm::size(fd).map_err(|e| Error::io("fstat segment", e))?;
        if size < std::mem::size_of::<Header>() as u64 || size > MAX_RING * 2 {
            return Err(Error::corrupt(format!(
                "segment size {size} is not a valid segment size"
            )));
        }
        let (map, writable) = map_fd(fd, size as usize, "segment")?;
        let h = map.as_ptr().cast::<Meta>();
        // SAFETY: the mapping is at least a Header long and page aligned; Meta
        // is plain integers, so any bit pattern is a valid value. The volatile
        // read takes one snapshot that is validated below and never re-read.
        let meta = unsafe { std::ptr::read_volatile(h) };
        if meta.magic != MAGIC {
            return Err(Error::corrupt("segment magic mismatch: not an aether segment"));
        }
        if meta.layout_version != LAYOUT_VERSION {
            return Err(Error::corrupt(format!(
                "segment layout version {} (this library reads {LAYOUT_VERSION})",
                meta.layout_version
            )));
        }
        let policy = Policy::from_u32(meta.policy).ok_or_else(|| Error::corrupt("segment policy out of range"))?;
        let params = TopicParams {
            policy,
            ring_size: meta.ring_size,
            max_message: meta.max_message,
            max_subscribers: meta.max_subscribers,
            wal: None,
            huge_pages: false,
            retain_bytes: None,
            retain_seconds: None,
        };
        params
            .validate()
            .map_err(|e| Error::corrupt(format!("segment header: {}", e.message)))?;
        let geo = Geometry {
            ring_size: meta.ring_size,
            max_message: meta.max_message,
            policy,
            max_subscribers: meta.max_subscribers,
            ring_offset: ring_offset(),
            salt: meta.salt,
            instance_id: meta.instance_id,
            huge_pages: shm::is_huge(fd),
        };
        if meta.ring_offset as usize != geo.ring_offset || geo.file_size() != size {
            return Err(Error::corrupt("segment size does not match its header"));
        }
        // The control page: its size follows from the validated slot count.
        let control_len = control_size(geo.max_subscribers);
        if shm::size(control_fd).ok() != Some(control_len as u64) {
            return Err(Error::corrupt("control page size does not match the segment"));
        }
        let (control, _) = map_fd(control_fd, control_len, "control page")?;
        // SAFETY: the mapping is at least a page; PageMeta is plain integers.
        let cmeta = unsafe { std::ptr::read_volatile(control.as_ptr().cast::<PageMeta>()) };
        if cmeta.magic != CONTROL_MAGIC
            || cmeta.layout_version != LAYOUT_VERSION
            || cmeta.salt != geo.salt
            || cmeta.slot != geo.max_subscribers
        {
            return Err(Error::corrupt("control page does not belong to this segment"));
        }
        Ok(Segment {
            map,
            control,
            geo,
            writable,
        })
    }

    /// Whether this process maps the segment writable (subscribers do not).
    pub fn writable(&self) -> bool {
        self.writable
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    pub(crate) fn header(&self) -> *const Header {
        self.map.as_ptr().cast()
    }

    pub fn tail(&self) -> &atomic128::Pair {
        // SAFETY: the mapping holds a full Header (checked at open/create) and
        // the tail line is made of atomics only, so a shared reference is sound
        // even while other processes write it.
        unsafe { &(*self.header()).tail.pair }
    }

    pub fn data_notify(&self) -> &DataLine {
        // SAFETY: as for `tail`: in bounds, atomics only.
        unsafe { &(*self.header()).data_notify }
    }

    pub fn space_notify(&self) -> &SpaceLine {
        // SAFETY: as for `tail`: in bounds, atomics only.
        unsafe { &(*self.header()).space_notify }
    }

    pub fn horizon(&self) -> &AtomicU64 {
        // SAFETY: as for `tail`: in bounds, atomics only.
        unsafe { &(*self.header()).horizon.horizon }
    }

    /// See [`LapLine`].
    pub fn lap_padded_at(&self) -> &AtomicU64 {
        // SAFETY: as for `tail`: in bounds, atomics only.
        unsafe { &(*self.header()).lap.padded_at }
    }

    fn control_head(&self) -> &ControlHead {
        // SAFETY: the control mapping is at least CONTROL_DIRECTORY bytes
        // (control_size) and page aligned; after its meta, the head is atomics only.
        unsafe { &*self.control.as_ptr().cast::<ControlHead>() }
    }

    /// The gate line, in the control page.
    pub fn gate(&self) -> &GateLine {
        &self.control_head().gate
    }

    /// The control page's durable line (see [`DurableLine`]).
    pub fn durable(&self) -> &DurableLine {
        &self.control_head().durable
    }

    /// The segment's line for publishers waiting on a sync (see [`SyncedLine`]).
    pub fn synced_notify(&self) -> &SyncedLine {
        // SAFETY: the header is in bounds and 64-aligned; the line is atomics only.
        unsafe { &(*self.header()).synced_notify }
    }

    /// Publisher slot `i`'s owner generation (in the control page).
    pub fn pub_owner_gen(&self, i: u32) -> Option<&AtomicU64> {
        self.control_head().pub_owner_gen.get(i as usize)
    }

    pub fn stats(&self) -> &StatsLine {
        // SAFETY: as for `tail`: in bounds, atomics only.
        unsafe { &(*self.header()).stats }
    }

    /// Subscriber slot `i`'s directory entry, if `i` is below the validated slot count.
    pub fn slot(&self, i: u32) -> Option<&SubscriberEntry> {
        if i >= self.geo.max_subscribers {
            return None;
        }
        let off = CONTROL_DIRECTORY + i as usize * LINE;
        debug_assert!(off + LINE <= self.control.len());
        // SAFETY: i < max_subscribers, so the entry lies inside the control
        // mapping (control_size); it is atomics only and 64-aligned.
        Some(unsafe { &*self.control.as_ptr().add(off).cast::<SubscriberEntry>() })
    }

    /// Publisher slot `i`, if `i` is below [`MAX_PUBLISHERS`].
    pub fn pub_slot(&self, i: u32) -> Option<&PubSlot> {
        if i >= MAX_PUBLISHERS {
            return None;
        }
        let off = pub_slots_offset() + i as usize * PUB_SLOT_STRIDE;
        debug_assert!(off + PUB_SLOT_STRIDE <= self.geo.ring_offset);
        // SAFETY: i < MAX_PUBLISHERS, so the slot lies between the header and
        // ring_offset, inside the mapping; PubSlot is atomics only.
        Some(unsafe { &*self.map.as_ptr().add(off).cast::<PubSlot>() })
    }

    /// Start of the ring's bytes; `ring_size` bytes from here are mapped.
    pub fn ring_ptr(&self) -> *mut u8 {
        // SAFETY: ring_offset + ring_size == mapping length (validated).
        unsafe { self.map.as_ptr().add(self.geo.ring_offset) }
    }

    /// Base address and length of the whole mapping (for tests and diagnostics).
    pub fn mapping_range(&self) -> (usize, usize) {
        (self.map.as_ptr() as usize, self.map.len())
    }
}

impl Segment {
    /// Daemon: hands subscriber slot `i` out to process `pid` with its cursor
    /// page: the cursor starts at the tail as it is now, and the directory
    /// says the slot is live (and gating, on a reliable topic: publishers
    /// re-read the directory when `slots_gen` changes). The subscriber moves
    /// its cursor on from there. Returns the slot's owner generation.
    pub fn join(&self, i: u32, pid: u32, cursor: &Cursor) -> Result<u64> {
        self.join_at(i, pid, cursor, None, self.geo.policy == Policy::Reliable)
    }

    /// [`join`](Self::join), with the cursor at `start` (position, next seq)
    /// instead of the tail: a place no publisher may have passed by a ring
    /// (another gating cursor's, which the caller keeps from moving); and
    /// gating publishers when `gating` (every subscriber of a reliable
    /// topic; a lossy durable topic's log writer alone).
    pub fn join_at(&self, i: u32, pid: u32, cursor: &Cursor, start: Option<(u64, u64)>, gating: bool) -> Result<u64> {
        let e = self
            .slot(i)
            .ok_or_else(|| Error::invalid(format!("subscriber slot {i} out of range")))?;
        let c = cursor.line();
        for a in [&c.delivered, &c.lost, &c.too_large] {
            a.store(0, Ordering::Relaxed);
        }
        c.pid.store(pid, Ordering::Relaxed);
        match start {
            Some((pos, seq)) => {
                c.next_seq.store(seq, Ordering::Relaxed);
                c.cursor.store(pos, Ordering::SeqCst);
            }
            None => c.cursor.store(self.tail().lo.load(Ordering::SeqCst), Ordering::SeqCst),
        }
        e.pid.store(pid, Ordering::Relaxed);
        let flags = SLOT_LIVE | if gating { SLOT_GATING } else { 0 };
        e.flags.store(flags, Ordering::SeqCst);
        if gating {
            self.gate().slots_gen.fetch_add(1, Ordering::SeqCst);
        }
        Ok(e.owner_gen.load(Ordering::SeqCst))
    }

    /// Daemon: takes publisher slot `i` back: its holder's next claim fails,
    /// and nobody waits for its announced claim any more.
    pub fn leave_publisher(&self, i: u32, waiters: &Waiters) {
        if let (Some(g), Some(slot)) = (self.pub_owner_gen(i), self.pub_slot(i)) {
            g.fetch_add(1, Ordering::SeqCst);
            slot.claim.store(SLOT_FREE, Ordering::SeqCst);
        }
        wake_all(&waiters.page().space.word);
    }

    /// Daemon: takes subscriber slot `i` back. It stops counting at once
    /// (publishers stop waiting for it), and its holder's handle fails from
    /// its next call (the owner generation moves on).
    pub fn leave(&self, i: u32, waiters: &Waiters) {
        if let Some(e) = self.slot(i) {
            let gating = e.flags.swap(0, Ordering::SeqCst) & SLOT_GATING != 0;
            e.owner_gen.fetch_add(1, Ordering::SeqCst);
            if gating {
                self.gate().slots_gen.fetch_add(1, Ordering::SeqCst);
            }
        }
        // A pollable subscriber that died armed must not keep publishers signalling.
        waiters.disarm(i);
        wake_all(&waiters.page().space.word);
    }
}

/// The first line of a waiters or cursor page: what it is, and whose.
#[repr(C, align(64))]
pub struct PageMeta {
    pub magic: u64,
    pub layout_version: u32,
    /// The cursor page's slot (0 for the waiters page).
    pub slot: u32,
    /// The segment's salt.
    pub salt: u64,
}

pub const WAITERS_MAGIC: u64 = u64::from_le_bytes(*b"AETHERWT");
pub const CURSOR_MAGIC: u64 = u64::from_le_bytes(*b"AETHERCR");
const PAGE: usize = 4096;

/// Subscribers asleep on the segment's data word, and pollable subscribers
/// waiting for a signal on their descriptor: a publisher reads both (one
/// line) after every commit, and does nothing more while both are 0.
#[cfg_attr(not(feature = "unpadded-waiters"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-waiters", repr(C))]
pub struct DataWaitLine {
    pub waiters: AtomicU32,
    /// Bits set in [`PollLine::armed`].
    pub pollers: AtomicU32,
    /// Bumped by each subscriber about to sleep, after it read the data
    /// word: a publisher that already woke the sleepers since it last saw
    /// this change wakes no one again (they are not asleep on the word it
    /// bumped), where it made one FUTEX_WAKE per commit until a woken
    /// subscriber ran (docs/ARCHITECTURE.md, "Waiting").
    pub sleeps: AtomicU64,
}

/// The word publishers sleep on while waiting for space, bumped by
/// subscribers (and the daemon) before FUTEX_WAKE.
#[cfg_attr(not(feature = "unpadded-waiters"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-waiters", repr(C))]
pub struct SpaceWakeLine {
    pub word: AtomicU32,
}

#[cfg_attr(not(feature = "unpadded-waiters"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-waiters", repr(C))]
pub struct SubscriberStatsLine {
    /// Times a subscriber went to sleep on the data futex.
    pub waits: AtomicU64,
    /// FUTEX_WAKE calls by subscribers (waking publishers on the space word).
    pub wakes: AtomicU64,
}

/// Pollable subscribers (`aether_subscriber_fd`) waiting for a signal: a
/// subscriber whose ring came up empty counts itself in
/// [`DataWaitLine::pollers`], sets its slot's bit here, and polls its
/// eventfd; after every commit while `pollers` is not 0, publishers write to
/// the eventfd of each slot whose bit is set (they map this page read-only).
/// The subscriber clears its bit and uncounts itself at its next receive;
/// the daemon does so when it takes the slot back.
#[cfg_attr(not(feature = "unpadded-waiters"), repr(C, align(64)))]
#[cfg_attr(feature = "unpadded-waiters", repr(C))]
pub struct PollLine {
    /// One bit per subscriber slot.
    pub armed: [AtomicU64; MAX_SUBSCRIBERS as usize / 64],
}

/// The bit of subscriber slot `slot` in [`PollLine::armed`]: (word, mask).
pub fn poll_bit(slot: u32) -> (usize, u64) {
    (slot as usize / 64 % (MAX_SUBSCRIBERS as usize / 64), 1 << (slot % 64))
}

/// The waiters page's layout.
#[repr(C)]
pub struct WaitersPage {
    pub meta: PageMeta,
    pub data: DataWaitLine,
    pub space: SpaceWakeLine,
    pub stats: SubscriberStatsLine,
    pub poll: PollLine,
}

/// A subscriber's own line: where it reads, and its counts.
#[repr(C, align(64))]
pub struct CursorLine {
    /// Position of the next record this subscriber reads, or [`SLOT_FREE`].
    pub cursor: AtomicU64,
    /// Sequence number of the next message this subscriber will see (for lag).
    pub next_seq: AtomicU64,
    pub delivered: AtomicU64,
    pub lost: AtomicU64,
    /// `delivery=mqueue` subscribers: messages the daemon's dispatch thread
    /// skipped because they do not fit the subscriber's queue.
    pub too_large: AtomicU64,
    pub pid: AtomicU32,
}

/// A cursor page's layout.
#[repr(C)]
pub struct CursorPage {
    pub meta: PageMeta,
    pub line: CursorLine,
}

/// Creates a one-page sealed memfd with `meta` written (the daemon's part).
fn create_page(label: &str, meta: PageMeta) -> Result<(OwnedFd, Mapping)> {
    let fd = shm::create_sealed(label, PAGE as u64).map_err(|e| Error::io("memfd_create page", e))?;
    let map = Mapping::shared(fd.as_fd(), PAGE, true).map_err(|e| Error::io("mmap page", e))?;
    // SAFETY: a fresh, zero-filled page no other process knows yet; PageMeta is plain data.
    unsafe { map.as_ptr().cast::<PageMeta>().write(meta) };
    Ok((fd, map))
}

/// Maps a page received from the daemon and checks it is a `magic` page of
/// the segment salted `salt` (and of slot `slot`). Failures are `Corrupt`.
fn open_page(fd: &OwnedFd, magic: u64, salt: u64, slot: u32, what: &str) -> Result<(Mapping, bool)> {
    if !shm::size_sealed(fd) || shm::size(fd).ok() != Some(PAGE as u64) {
        return Err(Error::corrupt(format!("{what} descriptor is not a sealed page")));
    }
    let (map, writable) = map_fd(fd, PAGE, what)?;
    // SAFETY: the mapping is one page; PageMeta is plain integers, any bits are valid.
    let meta = unsafe { std::ptr::read_volatile(map.as_ptr().cast::<PageMeta>()) };
    if meta.magic != magic || meta.layout_version != LAYOUT_VERSION || meta.salt != salt || meta.slot != slot {
        return Err(Error::corrupt(format!("{what} does not belong to this topic")));
    }
    Ok((map, writable))
}

/// The topic's waiters page (see the module doc).
pub struct Waiters {
    map: Mapping,
}

impl Waiters {
    /// Daemon: the waiters page of the segment salted `salt`.
    pub fn create(topic: &str, salt: u64) -> Result<(OwnedFd, Waiters)> {
        let meta = PageMeta {
            magic: WAITERS_MAGIC,
            layout_version: LAYOUT_VERSION,
            slot: 0,
            salt,
        };
        let (fd, map) = create_page(&format!("aether:{topic}:waiters"), meta)?;
        Ok((fd, Waiters { map }))
    }

    /// Maps the waiters page the daemon sent with the segment salted `salt`.
    pub fn open(fd: &OwnedFd, salt: u64) -> Result<Waiters> {
        let (map, _) = open_page(fd, WAITERS_MAGIC, salt, 0, "waiters page")?;
        Ok(Waiters { map })
    }

    pub fn page(&self) -> &WaitersPage {
        // SAFETY: the mapping is a whole page (checked at create/open) and the
        // lines after the meta are atomics only.
        unsafe { &*self.map.as_ptr().cast::<WaitersPage>() }
    }

    /// Pollable subscriber `slot` waits for a signal (see [`PollLine`]):
    /// counted first, then its bit set, so that the count never falls short
    /// of the bits a publisher may see. Needs the page mapped writable.
    pub fn arm(&self, slot: u32) {
        let (w, m) = poll_bit(slot);
        let p = self.page();
        p.data.pollers.fetch_add(1, Ordering::SeqCst);
        if p.poll.armed[w].fetch_or(m, Ordering::SeqCst) & m != 0 {
            p.data.pollers.fetch_sub(1, Ordering::SeqCst); // it was armed (and counted) already
        }
    }

    /// Undoes [`arm`](Self::arm) if `slot`'s bit is set (whoever clears it uncounts it).
    pub fn disarm(&self, slot: u32) {
        let (w, m) = poll_bit(slot);
        let p = self.page();
        if p.poll.armed[w].fetch_and(!m, Ordering::SeqCst) & m != 0 {
            p.data.pollers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One subscriber's cursor page (see the module doc).
pub struct Cursor {
    map: Mapping,
}

impl Cursor {
    /// Daemon: a cursor page for slot `slot` of the segment salted `salt`.
    pub fn create(topic: &str, salt: u64, slot: u32) -> Result<(OwnedFd, Cursor)> {
        let meta = PageMeta {
            magic: CURSOR_MAGIC,
            layout_version: LAYOUT_VERSION,
            slot,
            salt,
        };
        let (fd, map) = create_page(&format!("aether:{topic}:cursor{slot}"), meta)?;
        let c = Cursor { map };
        c.line().cursor.store(SLOT_FREE, Ordering::Relaxed);
        Ok((fd, c))
    }

    /// Maps the cursor page of slot `slot` the daemon sent for the segment salted `salt`.
    pub fn open(fd: &OwnedFd, salt: u64, slot: u32) -> Result<Cursor> {
        let (map, _) = open_page(fd, CURSOR_MAGIC, salt, slot, "cursor page")?;
        Ok(Cursor { map })
    }

    pub fn line(&self) -> &CursorLine {
        // SAFETY: the mapping is a whole page (checked at create/open) and the
        // line after the meta is atomics only.
        unsafe { &(*self.map.as_ptr().cast::<CursorPage>()).line }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sync wakes the publishers whose messages it covers and leaves those
    /// waiting for later ones asleep (each sleeper counts its returns from
    /// the futex); a range of 32 or more wakes everyone.
    #[cfg(not(miri))] // (futex bitsets: Miri has them, but this test sleeps for real)
    /// A ring left to the library takes one record of the largest message
    /// (so `validate` accepts it), is a power of two, at least 1 MiB, and
    /// no bigger than needed past that.
    #[test]
    fn a_sized_ring_takes_the_largest_message_and_no_more() {
        let sized = |max_message| {
            TopicParams {
                max_message,
                ..TopicParams::default()
            }
            .sized()
        };
        assert_eq!(TopicParams::default().ring_size, RING_SIZED);
        assert_eq!(sized(64).ring_size, 1 << 20);
        assert_eq!(sized(64 << 10).ring_size, 1 << 20);
        assert_eq!(sized(1 << 20).ring_size, 4 << 20);
        for m in [1, 1000, (512 << 10) - 32, (512 << 10) - 31, 1 << 20, (1 << 29) - 32] {
            let p = sized(m);
            p.validate().unwrap();
            assert!(p.ring_size.is_power_of_two());
            assert!(
                p.ring_size == SIZED_RING_MIN || max_message_limit(p.ring_size / 2) < m,
                "{m}: {}",
                p.ring_size
            );
        }
        // Too large for any ring: refused by validate, not made huge.
        assert_eq!(sized(1 << 29).validate().unwrap_err().status, crate::Status::Invalid);
        // An explicit ring stays as it is.
        let p = TopicParams {
            ring_size: 4096,
            max_message: 64,
            ..TopicParams::default()
        };
        assert_eq!(p.sized(), p);
    }

    #[test]
    fn a_sync_wakes_only_the_publishers_it_covers() {
        use std::sync::atomic::AtomicU64;
        use std::sync::Arc;
        struct Shared {
            line: SyncedLine,
            synced: AtomicU64,
            returns: [AtomicU32; 3],
        }
        let sh = Arc::new(Shared {
            line: SyncedLine {
                word: AtomicU32::new(0),
                waiters: AtomicU32::new(0),
            },
            synced: AtomicU64::new(0),
            returns: [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)],
        });
        // Waiters for messages 0, 1 and 33 (33 shares no bit with 0..2).
        let seqs = [0u64, 1, 33];
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let (sh, done) = (Arc::clone(&sh), done_tx.clone());
                std::thread::spawn(move || {
                    let seq = seqs[i];
                    while sh.synced.load(Ordering::SeqCst) <= seq {
                        sh.line.waiters.fetch_add(1, Ordering::SeqCst);
                        let w = sh.line.word.load(Ordering::SeqCst);
                        if sh.synced.load(Ordering::SeqCst) <= seq {
                            let slice = Some(std::time::Duration::from_secs(20));
                            sys::futex::wait_bits(&sh.line.word, w, slice, SyncedLine::bit(seq));
                            sh.returns[i].fetch_add(1, Ordering::SeqCst);
                        }
                        sh.line.waiters.fetch_sub(1, Ordering::SeqCst);
                    }
                    done.send(i).unwrap();
                })
            })
            .collect();
        // All three asleep.
        while sh.line.waiters.load(Ordering::SeqCst) < 3 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let wait = std::time::Duration::from_secs(10);
        // Synced up to 1 (message 0): its waiter alone wakes.
        sh.synced.store(1, Ordering::SeqCst);
        sh.line.wake(0, 1);
        assert_eq!(done_rx.recv_timeout(wait), Ok(0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(sh.returns[1].load(Ordering::SeqCst), 0, "the waiter for 1 woke for 0");
        assert_eq!(sh.returns[2].load(Ordering::SeqCst), 0, "the waiter for 33 woke for 0");
        // Up to 2: the waiter for 1 wakes; 33 (bit 1 too) wakes, finds it
        // is not synced and sleeps again.
        sh.synced.store(2, Ordering::SeqCst);
        sh.line.wake(1, 2);
        assert_eq!(done_rx.recv_timeout(wait), Ok(1));
        // Up to 40, a range of 32 or more: everyone.
        sh.synced.store(40, Ordering::SeqCst);
        sh.line.wake(2, 40);
        assert_eq!(done_rx.recv_timeout(wait), Ok(2));
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn an_unsealed_descriptor_is_refused() {
        let (sealed, control, _seg) = Segment::create("t", &TopicParams::default(), 1, 0).unwrap();
        assert!(Segment::open(&sealed, &control).is_ok());
        // The same bytes in a memfd without seals: a client must not map it.
        let size = shm::size(&sealed).unwrap();
        let c = std::ffi::CString::new("unsealed").unwrap();
        // SAFETY: memfd_create with a NUL-terminated name; the result is owned below.
        let raw = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: memfd_create just returned this descriptor.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        // SAFETY: ftruncate on our own descriptor.
        let rc = unsafe { libc::ftruncate(std::os::fd::AsRawFd::as_raw_fd(&fd), size as libc::off_t) };
        assert_eq!(rc, 0);
        assert_eq!(
            Segment::open(&fd, &control).err().map(|e| e.status),
            Some(crate::error::Status::Corrupt)
        );
    }

    /// A control page of another topic (another salt) is refused.
    #[test]
    fn a_control_page_of_another_topic_is_refused() {
        let (seg_a, _, _a) = Segment::create("a", &TopicParams::default(), 1, 0).unwrap();
        let (_, control_b, _b) = Segment::create("b", &TopicParams::default(), 1, 0).unwrap();
        let e = Segment::open(&seg_a, &control_b).err().expect("refused");
        assert_eq!(e.status, crate::error::Status::Corrupt, "{e}");
    }
}
