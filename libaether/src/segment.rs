//! The topic segment: one sealed shared-memory file (memfd) per topic holding a
//! versioned header, the subscriber slots and the ring's bytes.
//!
//! ```text
//! offset  line  contents                                   written by
//! 0       0     Meta: magic, version, geometry, salt        daemon, once
//! 64      1-2   topic name                                  daemon, once
//! 192     3     tail: (position, next seq) pair             publishers (CAS)
//! 256     4     data notify: futex word, sleeping readers   publishers / readers
//! 320     5     space notify: futex word, sleeping writers  readers / publishers
//! 384     6     gate: slots generation, horizon, state,     subscribers joining, publishers (rarely),
//!               keeper (robust mutex: daemon alive)         daemon, the kernel (daemon died)
//! 448     7     stats: aborted, overruns, waits, wakes,     publishers, subscribers
//!               space_waits
//! 512     8..   subscriber slots, one line each             subscribers, daemon
//! then          64 publisher slots, one line each           publishers, daemon
//! ring_offset   the ring: ring_size bytes, page aligned     publishers
//! ```
//!
//! The geometry is read once, validated and copied into [`Geometry`]; nothing
//! later re-reads it from shared memory, so a corrupted header cannot move any
//! bound after open.

use crate::error::{Error, Result};
use crate::sys::{self, atomic128, mmap::Mapping, shm};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub const MAGIC: u64 = u64::from_le_bytes(*b"AETHERSG");
pub const LAYOUT_VERSION: u32 = 4;
pub const LINE: usize = 64;
pub const MIN_RING: u64 = 4096;
pub const MAX_RING: u64 = 1 << 30;
pub const MAX_SUBSCRIBERS: u32 = 1024;
/// Publisher slots per topic: how many publishers may be open on it at once.
pub const MAX_PUBLISHERS: u32 = 64;
pub const MAX_TOPIC_LEN: usize = 120;
/// A slot whose cursor holds this value is free.
pub const SLOT_FREE: u64 = u64::MAX;
/// Slot flag: publishers wait for this subscriber (reliable topics).
pub const SLOT_GATING: u32 = 1;

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Lossy = 0,
    Reliable = 1,
}

impl Policy {
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

#[repr(C, align(64))]
pub struct TailLine {
    /// `lo`: byte position of the next claim; `hi`: sequence number of the next message.
    pub pair: atomic128::Pair,
}

#[repr(C, align(64))]
pub struct NotifyLine {
    /// Bumped by the waker before FUTEX_WAKE; sleepers wait on it.
    pub word: AtomicU32,
    /// Number of processes asleep or about to sleep on `word`.
    pub waiters: AtomicU32,
}

impl NotifyLine {
    /// Bumps the word (so a sleeper about to wait on the old value does not)
    /// and wakes every sleeper, whether or not any is counted.
    pub fn wake_all(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
        sys::futex::wake_all(&self.word);
    }
}

#[repr(C, align(64))]
pub struct GateLine {
    /// Bumped each time a gating subscriber joins, so publishers re-read the slots.
    pub slots_gen: AtomicU64,
    /// No publisher writes at or above this ring position: raised (in steps
    /// of a 64th of the ring) before a claim's bytes are written. Lossy
    /// readers check it after a copy, instead of the tail that every claim
    /// writes; it changes about 64 times per ring, so the line stays cached.
    pub horizon: AtomicU64,
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

#[repr(C, align(64))]
pub struct StatsLine {
    /// Loans given up (`Writer::abort`).
    pub aborted: AtomicU64,
    /// Reliable claims written although a subscriber that joined meanwhile
    /// had not read the space, after the publish timeout.
    pub overruns: AtomicU64,
    /// Times a subscriber went to sleep on the data futex.
    pub waits: AtomicU64,
    /// FUTEX_WAKE calls, by publishers (data) and subscribers (space).
    pub wakes: AtomicU64,
    /// Times a publisher went to sleep on the space futex (reliable topics,
    /// or waiting for a stalled peer publisher).
    pub space_waits: AtomicU64,
}

#[repr(C, align(64))]
pub struct Slot {
    /// Position of the next record this subscriber reads, or [`SLOT_FREE`].
    pub cursor: AtomicU64,
    pub pid: AtomicU32,
    pub flags: AtomicU32,
    pub delivered: AtomicU64,
    pub lost: AtomicU64,
    /// Sequence number of the next message this subscriber will see (for lag).
    pub next_seq: AtomicU64,
    /// `delivery=mqueue` subscribers: messages the daemon's dispatch thread
    /// skipped because they do not fit the subscriber's queue (written by the
    /// daemon only; zero for other subscribers).
    pub too_large: AtomicU64,
    /// Bumped by the daemon each time it takes the slot back: a handle notes
    /// it at open, and once it differs, the slot is no longer the handle's
    /// (kicked, or its connection ended).
    pub owner_gen: AtomicU64,
}

/// Where a publisher announces the claim it is writing, so that no other
/// publisher laps it mid-write (docs/ARCHITECTURE.md, "Publisher gating").
#[repr(C, align(64))]
pub struct PubSlot {
    /// A lower bound of the position this publisher is writing at, or [`SLOT_FREE`].
    pub claim: AtomicU64,
    pub pid: AtomicU32,
    /// As [`Slot::owner_gen`].
    pub owner_gen: AtomicU64,
}

#[repr(C)]
pub struct Header {
    pub meta: Meta,
    pub name: TopicName,
    pub tail: TailLine,
    pub data_notify: NotifyLine,
    pub space_notify: NotifyLine,
    pub gate: GateLine,
    pub stats: StatsLine,
}

const _: () = {
    assert!(std::mem::size_of::<Meta>() == 64);
    assert!(std::mem::size_of::<TopicName>() == 128);
    assert!(std::mem::offset_of!(Header, tail) == 192);
    assert!(std::mem::offset_of!(Header, data_notify) == 256);
    assert!(std::mem::offset_of!(Header, space_notify) == 320);
    assert!(std::mem::offset_of!(Header, gate) == 384);
    assert!(std::mem::offset_of!(Header, stats) == 448);
    assert!(std::mem::size_of::<Header>() == 512);
    assert!(std::mem::size_of::<Slot>() == LINE);
    assert!(std::mem::size_of::<PubSlot>() == LINE);
    assert!(std::mem::size_of::<GateLine>() == LINE);
    assert!(std::mem::offset_of!(GateLine, keeper) == 24);
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
}

impl Geometry {
    pub fn total_size(&self) -> u64 {
        self.ring_offset as u64 + self.ring_size
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

fn ring_offset(max_subscribers: u32) -> usize {
    let raw = pub_slots_offset(max_subscribers) + MAX_PUBLISHERS as usize * LINE;
    raw.div_ceil(4096) * 4096
}

fn pub_slots_offset(max_subscribers: u32) -> usize {
    std::mem::size_of::<Header>() + max_subscribers as usize * LINE
}

/// Bytes of the segment a topic with `params` gets (header, slots and ring).
pub fn segment_size(params: &TopicParams) -> u64 {
    ring_offset(params.max_subscribers) as u64 + params.ring_size
}

/// Parameters a topic is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicParams {
    pub policy: Policy,
    pub ring_size: u64,
    pub max_message: u64,
    pub max_subscribers: u32,
}

impl Default for TopicParams {
    fn default() -> Self {
        TopicParams {
            policy: Policy::Lossy,
            ring_size: 4 << 20,
            max_message: 64 << 10,
            max_subscribers: 64,
        }
    }
}

impl TopicParams {
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
        Ok(())
    }
}

/// A mapped segment with its validated geometry.
pub struct Segment {
    map: Mapping,
    geo: Geometry,
}

impl Segment {
    /// Creates a segment: a sealed memfd (no name anyone could open; its size
    /// cannot change, so no holder can pull the memory from under other
    /// mappings), sized and with a fresh header. Used by the daemon. Returns
    /// the descriptor (handed to clients over SCM_RIGHTS) and the mapping.
    pub fn create(topic: &str, params: &TopicParams, instance_id: u64) -> Result<(OwnedFd, Segment)> {
        params.validate()?;
        if topic.len() > MAX_TOPIC_LEN {
            return Err(Error::invalid("topic name too long"));
        }
        let ring_offset = ring_offset(params.max_subscribers);
        let geo = Geometry {
            ring_size: params.ring_size,
            max_message: params.max_message,
            policy: params.policy,
            max_subscribers: params.max_subscribers,
            ring_offset,
            salt: sys::random_u64() | 1,
            instance_id,
        };
        let label = format!("aether:{topic}");
        let fd = shm::create_sealed(&label, geo.total_size()).map_err(|e| Error::io("memfd_create segment", e))?;
        // Not populated: a topic nobody uses takes (almost) no memory.
        let map =
            Mapping::shared(fd.as_fd(), geo.total_size() as usize, false).map_err(|e| Error::io("mmap segment", e))?;
        let seg = Segment { map, geo };
        let h = seg.map.as_ptr().cast::<Header>();
        // SAFETY: the object is fresh (zero-filled by ftruncate), at least a
        // Header long, page aligned, and no other process knows it yet.
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
        }
        for i in 0..geo.max_subscribers {
            seg.slot(i)
                .expect("slot index below max")
                .cursor
                .store(SLOT_FREE, Ordering::Relaxed);
        }
        for i in 0..MAX_PUBLISHERS {
            let slot = seg.pub_slot(i).expect("slot index below max");
            slot.claim.store(SLOT_FREE, Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        Ok((fd, seg))
    }

    /// Maps a segment received from the daemon and validates its header.
    /// Every check failure is `Corrupt`: the descriptor does not hold a segment we can trust.
    pub fn open(fd: &OwnedFd) -> Result<Segment> {
        if !atomic128::supported() {
            return Err(Error::new(
                crate::error::Status::Invalid,
                "this CPU lacks cmpxchg16b, which the ring needs",
            ));
        }
        // An unsealed descriptor could be truncated under our mapping (SIGBUS).
        if !shm::size_sealed(fd) {
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
        let map = Mapping::shared(fd.as_fd(), size as usize, true).map_err(|e| Error::io("mmap segment", e))?;
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
        };
        params
            .validate()
            .map_err(|e| Error::corrupt(format!("segment header: {}", e.message)))?;
        let geo = Geometry {
            ring_size: meta.ring_size,
            max_message: meta.max_message,
            policy,
            max_subscribers: meta.max_subscribers,
            ring_offset: ring_offset(meta.max_subscribers),
            salt: meta.salt,
            instance_id: meta.instance_id,
        };
        if meta.ring_offset as usize != geo.ring_offset || geo.total_size() != size {
            return Err(Error::corrupt("segment size does not match its header"));
        }
        Ok(Segment { map, geo })
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

    pub fn data_notify(&self) -> &NotifyLine {
        // SAFETY: as for `tail`: in bounds, atomics only.
        unsafe { &(*self.header()).data_notify }
    }

    pub fn space_notify(&self) -> &NotifyLine {
        // SAFETY: as for `tail`: in bounds, atomics only.
        unsafe { &(*self.header()).space_notify }
    }

    pub fn gate(&self) -> &GateLine {
        // SAFETY: as for `tail`: in bounds, atomics only.
        unsafe { &(*self.header()).gate }
    }

    pub fn stats(&self) -> &StatsLine {
        // SAFETY: as for `tail`: in bounds, atomics only.
        unsafe { &(*self.header()).stats }
    }

    /// Subscriber slot `i`, if `i` is below the validated slot count.
    pub fn slot(&self, i: u32) -> Option<&Slot> {
        if i >= self.geo.max_subscribers {
            return None;
        }
        let off = std::mem::size_of::<Header>() + i as usize * LINE;
        debug_assert!(off + LINE <= self.geo.ring_offset);
        // SAFETY: i < max_subscribers, so the slot lies between the header and
        // ring_offset, inside the mapping; Slot is atomics only and 64-aligned.
        Some(unsafe { &*self.map.as_ptr().add(off).cast::<Slot>() })
    }

    /// Publisher slot `i`, if `i` is below [`MAX_PUBLISHERS`].
    pub fn pub_slot(&self, i: u32) -> Option<&PubSlot> {
        if i >= MAX_PUBLISHERS {
            return None;
        }
        let off = pub_slots_offset(self.geo.max_subscribers) + i as usize * LINE;
        debug_assert!(off + LINE <= self.geo.ring_offset);
        // SAFETY: i < MAX_PUBLISHERS, so the slot lies between the subscriber
        // slots and ring_offset, inside the mapping; PubSlot is atomics only.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsealed_descriptor_is_refused() {
        let (sealed, _seg) = Segment::create("t", &TopicParams::default(), 1).unwrap();
        assert!(Segment::open(&sealed).is_ok());
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
            Segment::open(&fd).err().map(|e| e.status),
            Some(crate::error::Status::Corrupt)
        );
    }
}
