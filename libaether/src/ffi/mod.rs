//! The C API (`include/aether.h`, generated from this module by cbindgen).
//!
//! Conventions: every call that can fail returns `AETHER_OK` (0) or a negative
//! `aether_status`, and sets this thread's `aether_last_error()` (the two
//! that return a descriptor are described in the header); out-parameters
//! come before a trailing timeout and are written only on success (except
//! `*len` on `AETHER_E_TOO_LARGE`); every pointer is checked; no panic
//! crosses the boundary. Handles are opaque and freed by their `_close` call.
//!
//! Thread safety: an `aether_client` may be used from several threads at
//! once. A publisher or subscriber may be used by one thread at a time (open
//! one per thread: publishers on one topic never lock each other).
//!
//! Descriptors handed out (`aether_subscriber_fd`, `aether_client_notices_fd`)
//! stay owned by the library: poll them, never close or read them directly.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

pub mod error;
pub mod handles;
pub mod panic;

use self::handles::{
    free_handle, handle_mut, handle_ref, into_handle, read_config, str_arg, write_out, write_versioned, Layout,
};
use self::panic::{guard, guard_void, null_arg};
use crate::client::{Client, Publisher, Subscriber, SubscriberConfig};
use crate::delivery::Delivery;
use crate::error::{Error, Status};
use crate::notice::Notice;
use crate::protocol::Start;
use crate::ring::{Deadline, LargeLaps, WaitConfig, WaitStrategy};
use crate::segment::{Fsync, Policy, TopicParams};
use std::ffi::{c_char, c_int, c_void};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A connection to the broker (opaque).
pub struct aether_client {
    inner: Client,
}

/// A publisher on one topic (opaque).
pub struct aether_publisher {
    inner: Publisher,
}

/// A subscriber on one topic (opaque).
pub struct aether_subscriber {
    inner: Subscriber,
}

/// Delivery policy of a topic.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aether_policy {
    /// Publishers never wait; a subscriber lapped by the ring is told how many messages it lost.
    AETHER_POLICY_LOSSY = 0,
    /// Publishers wait (with a timeout) for the slowest subscriber; nothing is lost.
    AETHER_POLICY_RELIABLE = 1,
}

/// How a subscriber waits for messages.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aether_wait {
    /// Busy-spin: lowest latency, burns a core while waiting.
    AETHER_WAIT_SPIN = 0,
    /// Spin, then yield the CPU between checks.
    AETHER_WAIT_YIELD = 1,
    /// Spin, then sleep on a futex (default).
    AETHER_WAIT_FUTEX = 2,
}

/// How a subscriber gets its messages (`aether_subscriber_config.delivery`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aether_delivery {
    /// Straight from the topic's shared-memory ring (default; zero-copy views).
    AETHER_DELIVERY_SHM = 0,
    /// Through a POSIX message queue that a daemon thread fills from the ring:
    /// `aether_subscriber_fd` gives a descriptor to poll. Messages are copied
    /// (`aether_receive_view` fails with `AETHER_E_INVALID`); one larger than the
    /// queue's message size (at most /proc/sys/fs/mqueue/msgsize_max - 24 bytes)
    /// is skipped, counted (`aether_subscriber_too_large`) and reported with an
    /// `AETHER_NOTICE_TOO_LARGE` notice.
    AETHER_DELIVERY_MQUEUE = 1,
}

/// Where a reliable publisher puts its large messages, 32 KiB and up
/// (`aether_publisher_set_large_laps`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aether_large_laps {
    /// Every lap of the ring whole: the ring holds its size of messages.
    AETHER_LARGE_LAPS_WHOLE = 0,
    /// Each lap only to its first 256 KiB (or four messages), so that the
    /// publisher writes memory still in its cache: best when subscribers
    /// read little of each message and keep up. Costs buffering: until a
    /// subscriber passes a lap's end, the ring holds only the messages at
    /// the next lap's start, so code that publishes a batch before reading
    /// it (in one thread, say) may wait for itself.
    AETHER_LARGE_LAPS_SHORT = 1,
    /// Short laps or whole ones, whichever the publisher measures faster,
    /// tried again now and then.
    AETHER_LARGE_LAPS_MEASURED = 2,
    /// A lap cut short past its first 256 KiB (or four messages) only when
    /// every subscriber has read everything before (default): subscribers
    /// that keep up get the short laps' speed, those behind get whole laps,
    /// and the ring still holds its size of messages (a subscriber at the
    /// cut counts as past it).
    AETHER_LARGE_LAPS_CAUGHT_UP = 3,
}

/// Whether a topic is logged to disk (`aether_topic_config.durability`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aether_durability {
    /// In memory only (default).
    AETHER_DURABILITY_NONE = 0,
    /// The daemon logs every message to a write-ahead log under its state
    /// directory: subscribers may start in the past, and the topic comes
    /// back numbered on after a daemon restart. Reliable topics only.
    AETHER_DURABILITY_WAL = 1,
}

/// When a durable topic's log is synced to disk (`aether_topic_config.fsync`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aether_fsync {
    /// Never: the kernel writes back when it likes (default). Survives a
    /// crash of any process, the daemon's included; not a power loss.
    AETHER_FSYNC_NEVER = 0,
    /// Every `fsync_interval_ms`: a power loss loses at most about that much.
    AETHER_FSYNC_INTERVAL = 1,
    /// Before a publish returns (publishers waiting together share one
    /// sync): a publish that returned `AETHER_OK` survives a power loss.
    AETHER_FSYNC_ALWAYS = 2,
}

/// Where a subscriber begins (`aether_subscriber_config.start`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aether_start {
    /// With the next message published (default).
    AETHER_START_LATEST = 0,
    /// With the oldest message a durable topic's log holds.
    AETHER_START_EARLIEST = 1,
    /// With message number `start_value` (the oldest logged, if older).
    AETHER_START_SEQ = 2,
    /// With the first message published at or after `start_value`
    /// (CLOCK_REALTIME nanoseconds).
    AETHER_START_TIME = 3,
    /// After what the durable subscription `durable_name` last committed
    /// (`aether_subscriber_commit`); a new name: the oldest logged.
    AETHER_START_DURABLE = 4,
}

/// What an `aether_notice` says.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aether_notice_kind {
    /// `topic` was deleted (sent to clients with a publisher or subscriber on it).
    AETHER_NOTICE_TOPIC_DELETED = 1,
    /// The broker is shutting down: publishing is refused; subscribers read
    /// what is left, then get `AETHER_E_SHUTDOWN`.
    AETHER_NOTICE_DRAINING = 2,
    /// A subscriber of this client on `topic` lost `count` more messages;
    /// `seq` is where it was when the broker looked.
    AETHER_NOTICE_LAGGED = 3,
    /// An `AETHER_DELIVERY_MQUEUE` subscriber on `topic` skipped message `seq`
    /// of `len` bytes: too large for its queue (`count` is 1).
    AETHER_NOTICE_TOO_LARGE = 4,
    /// The broker dropped `count` notices for this client: its control queue was full.
    AETHER_NOTICE_DROPPED = 5,
}

/// A notice from the broker, filled by `aether_client_next_notice`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct aether_notice {
    /// An `aether_notice_kind` value.
    pub kind: u32,
    /// The topic, NUL-terminated ("" for `AETHER_NOTICE_DRAINING` and `AETHER_NOTICE_DROPPED`).
    pub topic: [c_char; 121],
    /// A sequence number (see the kind), else 0.
    pub seq: u64,
    /// A count of messages or notices (see the kind), else 0.
    pub count: u64,
    /// `AETHER_NOTICE_TOO_LARGE`: the message's length in bytes, else 0.
    pub len: u64,
}

/// Topic settings. Start from `aether_topic_config_default()` and edit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct aether_topic_config {
    /// Set by `aether_topic_config_default()`; lets the struct grow compatibly:
    /// a bigger size (a newer header) is accepted when the bytes this library
    /// does not know are zero, a smaller one when it is an older layout's.
    pub struct_size: usize,
    /// An `aether_policy` value (default `AETHER_POLICY_LOSSY`).
    pub policy: u32,
    /// Bytes in the ring, a power of two from 4096 to 2^30; 0 (the default):
    /// sized for `max_message`, the smallest ring that takes it and at
    /// least 1 MiB (64 KiB messages: 1 MiB; 1 MiB messages: 4 MiB).
    pub ring_size: u64,
    /// Largest message in bytes, at most ring_size / 2 - 32 (default 64 KiB).
    pub max_message: u64,
    /// Most subscribers at once, 1 to 1024 (default 64).
    pub max_subscribers: u32,
    /// An `aether_durability` value (default `AETHER_DURABILITY_NONE`). Added
    /// after the first layout: a struct_size of 40 (without this field and
    /// the next two) is still accepted and means not durable.
    pub durability: u32,
    /// A durable topic's `aether_fsync` value (default `AETHER_FSYNC_NEVER`).
    pub fsync: u32,
    /// `AETHER_FSYNC_INTERVAL`: milliseconds between syncs, 1 to 60000.
    pub fsync_interval_ms: u32,
    /// 1: put the ring on 2 MiB huge pages, which must be reserved
    /// (`sysctl vm.nr_hugepages=N`; too few free: `AETHER_ERR_LIMIT`).
    /// Default 0. Added after `fsync_interval_ms`: a struct_size of 48
    /// (without it) is still accepted and means normal pages.
    pub huge_pages: u32,
    /// A durable topic's own log size limit: its oldest log files are
    /// removed while the log is bigger. `AETHER_RETAIN_DEFAULT` (UINT64_MAX,
    /// what `aether_topic_config_default()` sets): the daemon's `[log]
    /// retain_bytes` applies, and follows its reloads; 0: no limit for this
    /// topic, whatever `[log]` says; else bytes. Anything but
    /// `AETHER_RETAIN_DEFAULT` on a topic that is not durable is
    /// `AETHER_E_INVALID`. Added after `huge_pages`: a struct_size of 56
    /// (without this field and the next) is still accepted and means
    /// `AETHER_RETAIN_DEFAULT` for both.
    pub retain_bytes: u64,
    /// A durable topic's own log age limit, in seconds: log files whose
    /// every message is older are removed. `AETHER_RETAIN_DEFAULT`: the
    /// daemon's `[log] retain_seconds`; 0: kept forever; as `retain_bytes`.
    pub retain_seconds: u64,
}

/// `aether_topic_config.retain_bytes` and `.retain_seconds`: not set, the
/// daemon's `[log]` value applies (`#define AETHER_RETAIN_DEFAULT UINT64_MAX`
/// in the header, from cbindgen.toml: cbindgen exports no constants here).
pub const AETHER_RETAIN_DEFAULT: u64 = u64::MAX;

/// `struct_size` of the first `aether_topic_config` layout (before
/// `durability`, which fills its tail padding).
const TOPIC_CONFIG_V1_SIZE: usize = 40;
const TOPIC_CONFIG_V1: Layout = Layout {
    size: TOPIC_CONFIG_V1_SIZE,
    fields: TOPIC_CONFIG_V1_SIZE - 4,
};
/// `struct_size` of the second layout (before `huge_pages`).
const TOPIC_CONFIG_V2_SIZE: usize = 48;
const TOPIC_CONFIG_V2: Layout = Layout {
    size: TOPIC_CONFIG_V2_SIZE,
    fields: TOPIC_CONFIG_V2_SIZE,
};
/// `struct_size` of the third layout (before `retain_bytes`; `huge_pages`
/// is followed by 4 bytes of padding, whatever they hold).
const TOPIC_CONFIG_V3_SIZE: usize = 56;
const TOPIC_CONFIG_V3: Layout = Layout {
    size: TOPIC_CONFIG_V3_SIZE,
    fields: TOPIC_CONFIG_V3_SIZE - 4,
};

/// `struct_size` of the second `aether_subscriber_config` layout (before
/// `start`, which fills its tail padding).
const SUBSCRIBER_CONFIG_V2_SIZE: usize = 32;
const SUBSCRIBER_CONFIG_V2: Layout = Layout {
    size: SUBSCRIBER_CONFIG_V2_SIZE,
    fields: SUBSCRIBER_CONFIG_V2_SIZE - 4,
};

/// `struct_size` of the third `aether_subscriber_config` layout (before `fill_gaps`).
const SUBSCRIBER_CONFIG_V3_SIZE: usize = 48;
const SUBSCRIBER_CONFIG_V3: Layout = Layout {
    size: SUBSCRIBER_CONFIG_V3_SIZE,
    fields: SUBSCRIBER_CONFIG_V3_SIZE,
};

/// `struct_size` of the first `aether_subscriber_config` layout (before `delivery`).
const SUBSCRIBER_CONFIG_V1_SIZE: usize = 24;
const SUBSCRIBER_CONFIG_V1: Layout = Layout {
    size: SUBSCRIBER_CONFIG_V1_SIZE,
    fields: SUBSCRIBER_CONFIG_V1_SIZE,
};

/// Subscriber settings. Start from `aether_subscriber_config_default()` and edit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct aether_subscriber_config {
    /// Set by `aether_subscriber_config_default()`.
    pub struct_size: usize,
    /// An `aether_wait` value (default `AETHER_WAIT_FUTEX`).
    pub wait: u32,
    /// Checks made by spinning before yielding or sleeping (default 2000;
    /// with `AETHER_WAIT_FUTEX`, fewer, down to 16, while sleeps outlast a
    /// whole spin).
    pub spin: u32,
    /// After how long a record left half-written by a dead publisher is skipped (default 100 ms).
    pub abandon_timeout_ns: u64,
    /// An `aether_delivery` value (default `AETHER_DELIVERY_SHM`). Added after
    /// the first layout: a struct_size of 24 (without this field) is still
    /// accepted and means `AETHER_DELIVERY_SHM`.
    pub delivery: u32,
    /// An `aether_start` value (default `AETHER_START_LATEST`); anything
    /// else reads a durable topic's log first, then passes to the live
    /// ring with no gap and no duplicate (`AETHER_DELIVERY_SHM` only).
    /// Added after the second layout (struct_size 32: latest).
    pub start: u32,
    /// `AETHER_START_SEQ`: the seq; `AETHER_START_TIME`: the time (ns).
    pub start_value: u64,
    /// `AETHER_START_DURABLE`: the subscription's name (1 to 64 letters,
    /// digits, '.', '_', '-'); read during `aether_subscriber_open` only.
    pub durable_name: *const c_char,
    /// 1: on a durable lossy topic, messages this subscriber was lapped
    /// over are read from the log instead of lost (in order, before the
    /// ring's next). Default 0. Added after `durable_name`: a struct_size of
    /// 48 (without it) is still accepted and means 0.
    pub fill_gaps: u32,
}

/// A topic's figures (`aether_topic_stats`). Set `struct_size` to
/// `sizeof(aether_topic_statistics)` before the call: a later library fills
/// what this header knows of.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct aether_topic_statistics {
    /// Set by the caller to `sizeof(aether_topic_statistics)`.
    pub struct_size: usize,
    /// Messages published so far (the next sequence number).
    pub published: u64,
    /// Publishers open now.
    pub publishers: u32,
    /// Subscribers open now (a durable topic's log writer counts as one).
    pub subscribers: u32,
    /// What its current subscribers lost, summed.
    pub lost: u64,
    /// Loans given up.
    pub aborted: u64,
    /// Reliable claims written over space a just-joined subscriber had not read.
    pub overruns: u64,
    /// Subscribers' sleeps waiting for messages.
    pub waits: u64,
    /// Publishers' sleeps waiting for space.
    pub space_waits: u64,
    /// Futex wake calls.
    pub wakes: u64,
    /// Messages per second over the broker's last sample (about a second).
    pub rate_msgs_per_s: f64,
    /// Ring bytes (records with headers) per second, likewise.
    pub rate_bytes_per_s: f64,
    /// 1 for a durable topic (then the log figures below mean something).
    pub durable: u32,
    /// Zero (padding, named so that it is never garbage).
    pub _reserved: u32,
    /// Bytes of its log's files on disk.
    pub log_bytes: u64,
    /// The oldest message its log holds.
    pub log_oldest_seq: u64,
    /// The next message its log will write.
    pub log_next_seq: u64,
}

/// A subscriber's figures (`aether_subscriber_stats`). Set `struct_size` to
/// `sizeof(aether_subscriber_statistics)` before the call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct aether_subscriber_statistics {
    /// Set by the caller to `sizeof(aether_subscriber_statistics)`.
    pub struct_size: usize,
    /// Messages the topic has published so far.
    pub published: u64,
    /// Messages this subscriber received.
    pub delivered: u64,
    /// Messages it missed.
    pub lost: u64,
    /// Messages published that it has not read yet.
    pub lag: u64,
    /// `AETHER_DELIVERY_MQUEUE`: messages skipped as too large for its queue.
    pub too_large: u64,
}

/// A received message. For `aether_receive_view`, `data` points into shared
/// memory and stays valid until `aether_release`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct aether_message {
    pub data: *const c_void,
    pub len: usize,
    /// Position of the message in the topic's total order.
    pub seq: u64,
    /// Wall-clock time (CLOCK_REALTIME, ns) of `aether_publish`'s call (before
    /// any wait for space) or of `aether_commit`; 0 if the publisher sends
    /// none (`aether_publisher_set_timestamps`).
    pub timestamp_ns: u64,
}

const _: () = {
    assert!(std::mem::size_of::<aether_topic_config>() == 72);
    assert!(std::mem::offset_of!(aether_topic_config, huge_pages) == TOPIC_CONFIG_V2_SIZE);
    assert!(std::mem::offset_of!(aether_topic_config, huge_pages) + 4 == TOPIC_CONFIG_V3_SIZE - 4);
    assert!(std::mem::offset_of!(aether_topic_config, retain_bytes) == TOPIC_CONFIG_V3_SIZE);
    assert!(std::mem::size_of::<aether_topic_statistics>() == 120);
    assert!(std::mem::size_of::<aether_subscriber_statistics>() == 48);
    assert!(std::mem::offset_of!(aether_topic_config, durability) == TOPIC_CONFIG_V1_SIZE - 4);
    assert!(std::mem::size_of::<aether_subscriber_config>() == 56);
    assert!(std::mem::offset_of!(aether_subscriber_config, fill_gaps) == SUBSCRIBER_CONFIG_V3_SIZE);
    assert!(std::mem::offset_of!(aether_subscriber_config, start_value) == SUBSCRIBER_CONFIG_V2_SIZE);
    assert!(std::mem::offset_of!(aether_subscriber_config, delivery) == SUBSCRIBER_CONFIG_V1_SIZE);
    assert!(std::mem::size_of::<aether_message>() == 32);
    assert!(std::mem::offset_of!(aether_notice, topic) == 4);
    assert!(std::mem::offset_of!(aether_notice, seq) == 128);
    assert!(std::mem::size_of::<aether_notice>() == 152);
    // The C enums carry the Rust enums' numbers (decoded with their from_u32).
    assert!(aether_policy::AETHER_POLICY_LOSSY as u32 == Policy::Lossy as u32);
    assert!(aether_policy::AETHER_POLICY_RELIABLE as u32 == Policy::Reliable as u32);
    assert!(aether_wait::AETHER_WAIT_SPIN as u32 == WaitStrategy::Spin as u32);
    assert!(aether_wait::AETHER_WAIT_YIELD as u32 == WaitStrategy::Yield as u32);
    assert!(aether_wait::AETHER_WAIT_FUTEX as u32 == WaitStrategy::Futex as u32);
    assert!(aether_delivery::AETHER_DELIVERY_SHM as u32 == Delivery::Shm as u32);
    assert!(aether_delivery::AETHER_DELIVERY_MQUEUE as u32 == Delivery::Mqueue as u32);
    assert!(aether_large_laps::AETHER_LARGE_LAPS_WHOLE as u32 == LargeLaps::Whole as u32);
    assert!(aether_large_laps::AETHER_LARGE_LAPS_SHORT as u32 == LargeLaps::Short as u32);
    assert!(aether_large_laps::AETHER_LARGE_LAPS_MEASURED as u32 == LargeLaps::Measured as u32);
    assert!(aether_large_laps::AETHER_LARGE_LAPS_CAUGHT_UP as u32 == LargeLaps::CaughtUp as u32);
    assert!(std::mem::offset_of!(aether_subscriber_config, start) == SUBSCRIBER_CONFIG_V2_SIZE - 4);
};

/// The library version, e.g. "0.1.0" (the library loaded at run time, which
/// may differ from the header's `AETHER_VERSION_*`). Static storage.
#[no_mangle]
pub extern "C" fn aether_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Default topic settings: lossy, a ring sized for its messages (0: see
/// `ring_size`), 64 KiB messages, 64 subscribers.
#[no_mangle]
pub extern "C" fn aether_topic_config_default() -> aether_topic_config {
    let d = TopicParams::default();
    aether_topic_config {
        struct_size: std::mem::size_of::<aether_topic_config>(),
        policy: d.policy as u32,
        ring_size: d.ring_size,
        max_message: d.max_message,
        max_subscribers: d.max_subscribers,
        durability: aether_durability::AETHER_DURABILITY_NONE as u32,
        fsync: aether_fsync::AETHER_FSYNC_NEVER as u32,
        fsync_interval_ms: 0,
        huge_pages: 0,
        retain_bytes: AETHER_RETAIN_DEFAULT,
        retain_seconds: AETHER_RETAIN_DEFAULT,
    }
}

/// Default subscriber settings: futex wait after 2000 spins, 100 ms abandon timeout.
#[no_mangle]
pub extern "C" fn aether_subscriber_config_default() -> aether_subscriber_config {
    let d = SubscriberConfig::default();
    aether_subscriber_config {
        struct_size: std::mem::size_of::<aether_subscriber_config>(),
        wait: d.wait.strategy as u32,
        spin: d.wait.spin,
        abandon_timeout_ns: d.abandon_timeout.as_nanos() as u64,
        delivery: d.delivery as u32,
        start: aether_start::AETHER_START_LATEST as u32,
        start_value: 0,
        durable_name: std::ptr::null(),
        fill_gaps: 0,
    }
}

/// Pins the calling thread to the `n` CPUs at `cpus` (sched_setaffinity):
/// a publisher's or subscriber's thread kept on its core.
/// Errors: `AETHER_E_INVALID` (`cpus` NULL or `n` 0, or a CPU this process
/// may not use: the message names those it may; the thread's affinity is
/// left as it was), `AETHER_E_IO`.
#[no_mangle]
pub unsafe extern "C" fn aether_set_thread_affinity(cpus: *const u32, n: usize) -> c_int {
    guard(|| {
        if cpus.is_null() || n == 0 {
            return Err(Error::invalid("cpus is NULL or n is 0"));
        }
        if n > 65536 {
            return Err(Error::invalid(format!("{n} CPUs: more than any machine has")));
        }
        // SAFETY: per the contract, `n` readable u32 at `cpus` (non-null, checked).
        let list = unsafe { std::slice::from_raw_parts(cpus, n) };
        let list: Vec<usize> = list.iter().map(|&c| c as usize).collect();
        crate::set_thread_affinity(&list)
    })
}

/// This thread's last error message (empty if none). Valid until the next
/// failing call on this thread; never NULL.
#[no_mangle]
pub extern "C" fn aether_last_error() -> *const c_char {
    error::last_error_ptr()
}

/// A static description of a status code; never NULL.
#[no_mangle]
pub extern "C" fn aether_strerror(status: c_int) -> *const c_char {
    error::strerror(status)
}

/// Connects to the broker at `socket_path` (NULL: `$AETHER_SOCKET`, else this
/// user's private broker: `$XDG_RUNTIME_DIR/aether/aetherd.sock`, else
/// `/tmp/aether-<uid>/aetherd.sock`; the system broker is
/// `/run/aether/aetherd.sock`, used only when named). If no broker answers,
/// starts a private `aetherd` unless `AETHER_NO_AUTOSTART=1` (never on the
/// system broker's socket, nor in another user's directory).
/// On success `*out` owns a client; free it with `aether_client_close`.
/// Errors: `AETHER_E_UNAVAILABLE` (no broker answers and none could be
/// started; the message says which socket, from where, and why),
/// `AETHER_E_PERMISSION` (the socket's permissions keep this user out, or
/// the process listening there is not a daemon this user may trust),
/// `AETHER_E_LIMIT` (the broker's client limit or this uid's connection
/// quota), `AETHER_E_PROTOCOL` (a broker speaking another protocol
/// version), `AETHER_E_INVALID` (`out` NULL, `socket_path` not UTF-8 or too
/// long), `AETHER_E_IO`.
#[no_mangle]
pub unsafe extern "C" fn aether_connect(socket_path: *const c_char, out: *mut *mut aether_client) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(null_arg("out"));
        }
        let path = if socket_path.is_null() {
            None
        } else {
            // SAFETY: non-null C string per the API contract.
            Some(std::path::PathBuf::from(unsafe {
                str_arg(socket_path, "socket_path")
            }?))
        };
        let client = Client::connect(path.as_deref())?;
        // SAFETY: `out` is non-null and writable per the API contract.
        unsafe { write_out(out, into_handle(aether_client { inner: client })) };
        Ok(())
    })
}

/// Closes a client. Publishers and subscribers opened from it stay usable
/// until they are closed. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn aether_client_close(c: *mut aether_client) {
    // SAFETY: NULL or a handle from aether_connect, per the API contract.
    guard_void(|| unsafe { free_handle(c) })
}

fn topic_params(cfg: *const aether_topic_config) -> crate::error::Result<TopicParams> {
    if cfg.is_null() {
        return Ok(TopicParams::default());
    }
    // SAFETY: non-null and, per the contract, a config from
    // aether_topic_config_default() with struct_size readable bytes.
    // (The first layout, without `durability`, is a prefix: not durable.)
    let c = unsafe {
        read_config(
            cfg,
            aether_topic_config_default(),
            &[TOPIC_CONFIG_V1, TOPIC_CONFIG_V2, TOPIC_CONFIG_V3],
            "aether_topic_config",
        )?
    };
    let policy = Policy::from_u32(c.policy).ok_or_else(|| Error::invalid(format!("unknown policy {}", c.policy)))?;
    use {aether_durability as D, aether_fsync as F};
    const NONE: u32 = D::AETHER_DURABILITY_NONE as u32;
    const WAL: u32 = D::AETHER_DURABILITY_WAL as u32;
    const NEVER: u32 = F::AETHER_FSYNC_NEVER as u32;
    const INTERVAL: u32 = F::AETHER_FSYNC_INTERVAL as u32;
    const ALWAYS: u32 = F::AETHER_FSYNC_ALWAYS as u32;
    let wal = match (c.durability, c.fsync) {
        (NONE, _) => None,
        (WAL, NEVER) => Some(Fsync::Never),
        (WAL, INTERVAL) => Some(Fsync::Interval(c.fsync_interval_ms)),
        (WAL, ALWAYS) => Some(Fsync::Always),
        (WAL, f) => return Err(Error::invalid(format!("unknown fsync {f}"))),
        (d, _) => return Err(Error::invalid(format!("unknown durability {d}"))),
    };
    let p = TopicParams {
        policy,
        ring_size: c.ring_size,
        max_message: c.max_message,
        max_subscribers: c.max_subscribers,
        wal,
        huge_pages: match c.huge_pages {
            0 => false,
            1 => true,
            h => return Err(Error::invalid(format!("huge_pages must be 0 or 1, not {h}"))),
        },
        retain_bytes: (c.retain_bytes != AETHER_RETAIN_DEFAULT).then_some(c.retain_bytes),
        retain_seconds: (c.retain_seconds != AETHER_RETAIN_DEFAULT).then_some(c.retain_seconds),
    };
    p.sized().validate()?;
    Ok(p)
}

/// Creates `topic` with `cfg` (NULL: defaults). Topic names are 1 to 120 bytes
/// of letters, digits, '.', '_' and '-', not starting with '.'.
/// Errors: `AETHER_E_EXISTS`, `AETHER_E_INVALID` (a bad name or setting,
/// NULL), `AETHER_E_PERMISSION` (no `admin` right on the topic),
/// `AETHER_E_LIMIT` (the broker's topic or segment limits, or this uid's
/// quotas), `AETHER_E_TOO_LARGE` (`max_message` over the broker's limit),
/// `AETHER_E_SHUTDOWN` (the broker is draining), `AETHER_E_UNAVAILABLE`.
#[no_mangle]
pub unsafe extern "C" fn aether_topic_create(
    c: *mut aether_client,
    topic: *const c_char,
    cfg: *const aether_topic_config,
) -> c_int {
    guard(|| {
        // SAFETY: pointers per the API contract (checked for NULL inside).
        let (c, topic) = unsafe { (handle_ref(c, "client")?, str_arg(topic, "topic")?) };
        c.inner.create_topic(topic, &topic_params(cfg)?)
    })
}

/// Deletes `topic`. Open handles keep their mapping; new opens fail, and
/// open handles get `AETHER_E_NOT_FOUND` (subscribers once they have read
/// what was published).
/// Errors: `AETHER_E_NOT_FOUND`, `AETHER_E_PERMISSION` (no `admin` right),
/// `AETHER_E_INVALID` (NULL), `AETHER_E_SHUTDOWN`, `AETHER_E_UNAVAILABLE`.
#[no_mangle]
pub unsafe extern "C" fn aether_topic_delete(c: *mut aether_client, topic: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: pointers per the API contract (checked for NULL inside).
        let (c, topic) = unsafe { (handle_ref(c, "client")?, str_arg(topic, "topic")?) };
        c.inner.delete_topic(topic)
    })
}

/// Opens a publisher on an existing topic. Free with `aether_publisher_close`.
/// Its reliable publishes wait up to 5 s for the slowest subscriber
/// (`aether_publisher_set_timeout` changes it).
/// Errors: `AETHER_E_NOT_FOUND`, `AETHER_E_PERMISSION` (no `publish`
/// right), `AETHER_E_LIMIT` (the topic's 64 publishers, or this uid's or
/// client's slot quota), `AETHER_E_INVALID` (NULL), `AETHER_E_CORRUPT` (a
/// segment that fails its checks), `AETHER_E_SHUTDOWN`, `AETHER_E_UNAVAILABLE`.
#[no_mangle]
pub unsafe extern "C" fn aether_publisher_open(
    c: *mut aether_client,
    topic: *const c_char,
    out: *mut *mut aether_publisher,
) -> c_int {
    guard(|| {
        // SAFETY: pointers per the API contract (checked for NULL inside).
        let (c, topic) = unsafe { (handle_ref(c, "client")?, str_arg(topic, "topic")?) };
        if out.is_null() {
            return Err(null_arg("out"));
        }
        let p = c.inner.publisher(topic)?;
        // SAFETY: `out` is non-null and writable per the API contract.
        unsafe { write_out(out, into_handle(aether_publisher { inner: p })) };
        Ok(())
    })
}

/// Publishes a copy of `len` bytes at `data` (`data` may be NULL when `len` is 0).
/// Errors: `AETHER_E_TOO_LARGE` (over the topic's max_message), `AETHER_E_TIMEOUT`
/// (reliable topic whose slowest subscriber stayed a full ring behind for
/// the publisher's timeout), `AETHER_E_NOT_FOUND` (the topic was deleted),
/// `AETHER_E_SHUTDOWN` (the broker is draining), `AETHER_E_UNAVAILABLE` (the
/// daemon died, or kicked this client), `AETHER_E_INVALID` (NULL `data`
/// with `len` > 0, a loan outstanding, a handle of the parent process after
/// fork), `AETHER_E_CORRUPT` (the segment's shared state is impossible).
#[no_mangle]
pub unsafe extern "C" fn aether_publish(p: *mut aether_publisher, data: *const c_void, len: usize) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live publisher handle, per the API contract.
        let p = unsafe { handle_mut(p, "publisher")? };
        let bytes = if len == 0 {
            &[][..]
        } else if data.is_null() {
            return Err(null_arg("data"));
        } else {
            // SAFETY: the caller promises `len` readable bytes at `data`.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
        };
        p.inner.publish(bytes).map(drop)
    })
}

/// Loans `len` bytes of the ring: write the message at `*buf`, then
/// `aether_commit` (publish) or `aether_abort`. One loan at a time per publisher.
/// Errors: as `aether_publish` (`AETHER_E_INVALID` also for a NULL `buf`).
#[no_mangle]
pub unsafe extern "C" fn aether_loan(p: *mut aether_publisher, len: usize, buf: *mut *mut c_void) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live publisher handle, per the API contract.
        let p = unsafe { handle_mut(p, "publisher")? };
        if buf.is_null() {
            return Err(null_arg("buf"));
        }
        let slice = p.inner.loan(len)?;
        let ptr = slice.as_mut_ptr();
        // SAFETY: `buf` is non-null and writable per the API contract.
        unsafe { write_out(buf, ptr.cast()) };
        Ok(())
    })
}

/// Publishes the first `len` bytes (at most the loaned length) of the outstanding loan.
/// Errors: `AETHER_E_INVALID` (no loan, or `len` over the loaned length),
/// `AETHER_E_UNAVAILABLE` (the daemon died or kicked this client meanwhile:
/// nothing is published).
#[no_mangle]
pub unsafe extern "C" fn aether_commit(p: *mut aether_publisher, len: usize) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live publisher handle, per the API contract.
        let p = unsafe { handle_mut(p, "publisher")? };
        // The core checks that a loan is outstanding and that `len` fits it.
        p.inner.commit(len).map(drop)
    })
}

/// Gives up the outstanding loan; nothing is published.
/// Errors: `AETHER_E_INVALID` (no loan outstanding, NULL).
#[no_mangle]
pub unsafe extern "C" fn aether_abort(p: *mut aether_publisher) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live publisher handle, per the API contract.
        unsafe { handle_mut(p, "publisher")? }.inner.abort()
    })
}

/// Carries the publisher on after its daemon died (its calls then fail with
/// `AETHER_E_UNAVAILABLE`) or its topic was deleted (`AETHER_E_NOT_FOUND`):
/// connects again to the same socket (starting a daemon if its client was
/// allowed to), makes the topic again with the same parameters if it does
/// not exist, and takes a new slot. An outstanding loan is given up. The
/// library never does this by itself. On error the handle is left as it
/// was and may be reopened again later. Not thread-safe with other calls
/// on the same publisher.
#[no_mangle]
pub unsafe extern "C" fn aether_publisher_reopen(p: *mut aether_publisher) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live publisher handle, per the API contract.
        unsafe { handle_mut(p, "publisher")? }.inner.reopen()
    })
}

/// Sets how long a publish (or loan) on a reliable topic waits for the
/// slowest subscriber before it fails with `AETHER_E_TIMEOUT`: `timeout_ns`
/// nanoseconds (negative: forever; 0: never wait). The default is 5 s.
/// Errors: `AETHER_E_INVALID` (NULL).
#[no_mangle]
pub unsafe extern "C" fn aether_publisher_set_timeout(p: *mut aether_publisher, timeout_ns: i64) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live publisher handle, per the API contract.
        let p = unsafe { handle_mut(p, "publisher")? };
        p.inner
            .set_timeout((timeout_ns >= 0).then(|| Duration::from_nanos(timeout_ns as u64)));
        Ok(())
    })
}

/// Sets where this publisher puts messages of 32 KiB and up on a reliable
/// topic: an `aether_large_laps` value (`AETHER_LARGE_LAPS_CAUGHT_UP`, the
/// default unless the `AETHER_LARGE_LAPS` environment variable says
/// `whole`, `short` or `measured`). Kept across `aether_publisher_reopen`.
/// Lossy topics always use whole laps (accepted, no effect). Subscribers
/// need nothing: any subscriber reads every kind.
/// Errors: `AETHER_E_INVALID` (an unknown value, NULL).
#[no_mangle]
pub unsafe extern "C" fn aether_publisher_set_large_laps(p: *mut aether_publisher, laps: u32) -> c_int {
    guard(|| {
        let laps =
            LargeLaps::from_u32(laps).ok_or_else(|| Error::invalid(format!("unknown large_laps value {laps}")))?;
        // SAFETY: NULL or a live publisher handle, per the API contract.
        unsafe { handle_mut(p, "publisher")? }.inner.set_large_laps(laps);
        Ok(())
    })
}

/// Whether this publisher's messages carry the time they were published
/// (`on` = 1, the default) or 0 in `aether_message.timestamp_ns` (`on` = 0).
/// Reading the clock is about a third of a small publish (~10 of ~30 ns).
/// A subscriber starting at a time (`time=` start) takes a message without
/// one by those before it: passed over before the first message stamped at
/// or after the time, delivered after. Kept across `aether_publisher_reopen`.
/// Errors: `AETHER_E_INVALID` (`on` neither 0 nor 1, NULL).
#[no_mangle]
pub unsafe extern "C" fn aether_publisher_set_timestamps(p: *mut aether_publisher, on: c_int) -> c_int {
    guard(|| {
        let on = match on {
            0 => false,
            1 => true,
            _ => return Err(Error::invalid(format!("timestamps must be 0 or 1, not {on}"))),
        };
        // SAFETY: NULL or a live publisher handle, per the API contract.
        unsafe { handle_mut(p, "publisher")? }.inner.set_timestamps(on);
        Ok(())
    })
}

/// Closes a publisher (an outstanding loan is aborted). NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn aether_publisher_close(p: *mut aether_publisher) {
    // SAFETY: NULL or a handle from aether_publisher_open, per the API contract.
    guard_void(|| unsafe { free_handle(p) })
}

/// Opens a subscriber on an existing topic; it receives messages published
/// from now on, or with a `start` (a durable topic) the topic's logged
/// history from there first. `cfg` NULL: defaults. Free with
/// `aether_subscriber_close`.
/// Errors: `AETHER_E_NOT_FOUND`, `AETHER_E_LIMIT` (topic has max_subscribers,
/// or this uid's or client's slot quota, or its message-queue quota),
/// `AETHER_E_PERMISSION` (no `subscribe` right), `AETHER_E_INVALID` (NULL,
/// a config not from `aether_subscriber_config_default`, an unknown
/// delivery, wait or start, a start or `fill_gaps` on a topic that is not
/// durable, a seq not published yet, a bad durable name), `AETHER_E_EXISTS` (that durable subscription is in use),
/// `AETHER_E_CORRUPT` (also: a damaged log file, when the history reaches it), `AETHER_E_SHUTDOWN`,
/// `AETHER_E_UNAVAILABLE`, `AETHER_E_IO` (a message queue could not be made).
#[no_mangle]
pub unsafe extern "C" fn aether_subscriber_open(
    c: *mut aether_client,
    topic: *const c_char,
    cfg: *const aether_subscriber_config,
    out: *mut *mut aether_subscriber,
) -> c_int {
    guard(|| {
        // SAFETY: pointers per the API contract (checked for NULL inside).
        let (c, topic) = unsafe { (handle_ref(c, "client")?, str_arg(topic, "topic")?) };
        if out.is_null() {
            return Err(null_arg("out"));
        }
        let mut conf = SubscriberConfig::default();
        if !cfg.is_null() {
            // SAFETY: non-null and, per the contract, a config from
            // aether_subscriber_config_default() with struct_size readable bytes.
            // (The first layout, without `delivery`, is a prefix: it means shm.)
            let c = unsafe {
                read_config(
                    cfg,
                    aether_subscriber_config_default(),
                    &[SUBSCRIBER_CONFIG_V1, SUBSCRIBER_CONFIG_V2, SUBSCRIBER_CONFIG_V3],
                    "aether_subscriber_config",
                )?
            };
            use aether_start as S;
            const LATEST: u32 = S::AETHER_START_LATEST as u32;
            const EARLIEST: u32 = S::AETHER_START_EARLIEST as u32;
            const SEQ: u32 = S::AETHER_START_SEQ as u32;
            const TIME: u32 = S::AETHER_START_TIME as u32;
            const DURABLE: u32 = S::AETHER_START_DURABLE as u32;
            conf.start = match c.start {
                LATEST => Start::Latest,
                EARLIEST => Start::Earliest,
                SEQ => Start::Seq(c.start_value),
                TIME => Start::Time(c.start_value),
                DURABLE => {
                    // SAFETY: per the contract, a NUL-terminated string when start is durable.
                    let name = unsafe { str_arg(c.durable_name, "durable_name")? };
                    crate::protocol::validate_subscription(name)?;
                    Start::Durable(name.to_string())
                }
                s => return Err(Error::invalid(format!("unknown start {s}"))),
            };
            let (wait, spin, abandon_ns, delivery) = (c.wait, c.spin, c.abandon_timeout_ns, c.delivery);
            let strategy =
                WaitStrategy::from_u32(wait).ok_or_else(|| Error::invalid(format!("unknown wait strategy {wait}")))?;
            conf.wait = WaitConfig { strategy, spin };
            conf.abandon_timeout = Duration::from_nanos(abandon_ns.max(1));
            conf.delivery =
                Delivery::from_u32(delivery).ok_or_else(|| Error::invalid(format!("unknown delivery {delivery}")))?;
            conf.fill_gaps = match c.fill_gaps {
                0 => false,
                1 => true,
                f => return Err(Error::invalid(format!("fill_gaps is 0 or 1, not {f}"))),
            };
        }
        let s = c.inner.subscriber(topic, &conf)?;
        // SAFETY: `out` is non-null and writable per the API contract.
        unsafe { write_out(out, into_handle(aether_subscriber { inner: s })) };
        Ok(())
    })
}

fn deadline(timeout_ns: i64) -> Deadline {
    Deadline::from_timeout_ns(timeout_ns)
}

/// Copies the next message into `buf` (capacity `cap`) and sets `*len`.
/// Waits up to `timeout_ns` (negative: forever; 0: do not wait).
/// Errors: `AETHER_E_TIMEOUT`; `AETHER_E_TOO_LARGE` when the message exceeds
/// `cap`: then `*len` is set to its length and the message stays unread;
/// `AETHER_E_NOT_FOUND` (the topic was deleted, once everything published
/// before was read), `AETHER_E_SHUTDOWN` (the broker drained),
/// `AETHER_E_UNAVAILABLE` (the daemon died, or kicked this client),
/// `AETHER_E_INVALID` (NULL, a view outstanding, a handle of the parent
/// process after fork), `AETHER_E_CORRUPT`.
/// On a lossy topic, check `aether_subscriber_lost` for messages it missed.
#[no_mangle]
pub unsafe extern "C" fn aether_receive(
    s: *mut aether_subscriber,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live subscriber handle, per the API contract.
        let s = unsafe { handle_mut(s, "subscriber")? };
        if len.is_null() {
            return Err(null_arg("len"));
        }
        if buf.is_null() && cap > 0 {
            return Err(null_arg("buf"));
        }
        let out: &mut [u8] = if cap == 0 {
            &mut []
        } else {
            // SAFETY: the caller promises `cap` writable bytes at `buf`.
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) }
        };
        match s.inner.receive_into_deadline(out, &deadline(timeout_ns)) {
            Ok(r) => {
                // SAFETY: `len` is non-null and writable.
                unsafe { write_out(len, r.len) };
                Ok(())
            }
            Err(e) if e.status == Status::TooLarge => {
                let need = s.inner.too_large_len();
                // SAFETY: `len` is non-null and writable.
                unsafe { write_out(len, need) };
                Err(e)
            }
            Err(e) => Err(e),
        }
    })
}

/// Borrows the next message in place (zero-copy) into `*msg`, waiting up to
/// `timeout_ns`. `msg->data` stays valid until `aether_release`; hold one view
/// at a time. On a lossy topic the publisher may overwrite a view that is held
/// too long: `aether_release` then returns `AETHER_E_OVERWRITTEN`, and the
/// bytes read from it must be discarded.
/// Errors: as `aether_receive` (not `AETHER_E_TOO_LARGE`), and
/// `AETHER_E_INVALID` for an `AETHER_DELIVERY_MQUEUE` subscriber (its
/// messages arrive copied: use `aether_receive`).
#[no_mangle]
pub unsafe extern "C" fn aether_receive_view(
    s: *mut aether_subscriber,
    msg: *mut aether_message,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live subscriber handle, per the API contract.
        let s = unsafe { handle_mut(s, "subscriber")? };
        if msg.is_null() {
            return Err(null_arg("msg"));
        }
        let rec = s.inner.receive_view(&deadline(timeout_ns))?;
        let m = aether_message {
            data: rec.data.cast(),
            len: rec.len,
            seq: rec.seq,
            timestamp_ns: rec.timestamp_ns,
        };
        // SAFETY: `msg` is non-null and writable.
        unsafe { write_out(msg, m) };
        Ok(())
    })
}

/// Ends the view `msg` got from `aether_receive_view`.
/// Errors: `AETHER_E_OVERWRITTEN` (lossy topic: the view was overwritten while
/// held, and is counted lost), `AETHER_E_INVALID` (not the view held).
#[no_mangle]
pub unsafe extern "C" fn aether_release(s: *mut aether_subscriber, msg: *mut aether_message) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live subscriber handle, per the API contract.
        let s = unsafe { handle_mut(s, "subscriber")? };
        // SAFETY: NULL or a message filled by aether_receive_view.
        let m = unsafe { handle_ref(msg as *const aether_message, "msg")? };
        match s.inner.held_view() {
            Some(h) if h.seq == m.seq && h.data as *const c_void == m.data => {}
            _ => return Err(Error::invalid("msg is not the view this subscriber holds")),
        }
        s.inner.release_view().map(drop)
    })
}

/// A durable subscription (`AETHER_START_DURABLE`): records with the broker
/// that every message this subscriber delivered (received, or viewed and
/// released) is done with, so that the next subscriber of that name (after
/// this one closes or crashes, or the broker restarts) begins after it.
/// Messages delivered after the last commit come again then: at least once.
/// One request to the broker.
/// Errors: `AETHER_E_INVALID` (NULL, not a durable subscription, a handle of
/// the parent process after fork), `AETHER_E_NOT_FOUND` (the topic was
/// deleted), `AETHER_E_UNAVAILABLE` (the daemon died), `AETHER_E_IO` (the
/// broker could not write its state).
#[no_mangle]
pub unsafe extern "C" fn aether_subscriber_commit(s: *mut aether_subscriber) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live subscriber handle, per the API contract.
        let s = unsafe { handle_mut(s, "subscriber")? };
        s.inner.commit()
    })
}

/// Where the message this subscriber received (or viewed) last was first
/// published: for one another broker's bridge brought here
/// (docs/BRIDGE.md), `*broker` is that broker's id (`aether_broker_id` of
/// its name, never 0) and `*seq` its sequence number there; for one
/// published here, both are 0. Errors: `AETHER_E_INVALID` (a NULL argument).
#[no_mangle]
pub unsafe extern "C" fn aether_subscriber_origin(
    s: *const aether_subscriber,
    broker: *mut u64,
    seq: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live subscriber handle, per the API contract.
        let s = unsafe { handle_ref(s.cast_mut(), "subscriber")? };
        if broker.is_null() {
            return Err(null_arg("broker"));
        }
        if seq.is_null() {
            return Err(null_arg("seq"));
        }
        let o = s.inner.last_origin().unwrap_or(crate::Origin { broker: 0, seq: 0 });
        // SAFETY: both non-null, and per the contract writable u64s.
        unsafe {
            write_out(broker, o.broker);
            write_out(seq, o.seq);
        }
        Ok(())
    })
}

/// The id of the broker named `name` in message origins
/// (`aether_subscriber_origin`); 0 for a NULL or non-UTF-8 name.
#[no_mangle]
pub unsafe extern "C" fn aether_broker_id(name: *const c_char) -> u64 {
    if name.is_null() {
        return 0;
    }
    // SAFETY: non-null and, per the contract, a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(name) };
    name.to_str().map_or(0, crate::broker_id)
}

/// Fills `*out` with `topic`'s figures as the broker keeps them (one
/// request): `out->struct_size` must be set to `sizeof(aether_topic_statistics)`.
/// Errors: `AETHER_E_INVALID` (NULL, a bad name or struct_size),
/// `AETHER_E_NOT_FOUND`, `AETHER_E_PERMISSION` (no right on the topic:
/// publish, subscribe or monitor), `AETHER_E_UNAVAILABLE`.
#[no_mangle]
pub unsafe extern "C" fn aether_topic_stats(
    c: *mut aether_client,
    topic: *const c_char,
    out: *mut aether_topic_statistics,
) -> c_int {
    guard(|| {
        // SAFETY: pointers per the API contract (checked for NULL inside).
        let (c, topic) = unsafe { (handle_ref(c, "client")?, str_arg(topic, "topic")?) };
        if out.is_null() {
            return Err(null_arg("out"));
        }
        let t = c.inner.topic_stats(topic)?;
        let v = aether_topic_statistics {
            struct_size: std::mem::size_of::<aether_topic_statistics>(),
            published: t.published,
            publishers: t.publishers,
            subscribers: t.subscribers,
            lost: t.lost,
            aborted: t.aborted,
            overruns: t.overruns,
            waits: t.waits,
            space_waits: t.space_waits,
            wakes: t.wakes,
            rate_msgs_per_s: t.rate_msgs_per_s,
            rate_bytes_per_s: t.rate_bytes_per_s,
            durable: t.durable as u32,
            _reserved: 0,
            log_bytes: t.log_bytes,
            log_oldest_seq: t.log_oldest_seq,
            log_next_seq: t.log_next_seq,
        };
        // SAFETY: non-null; per the contract struct_size writable bytes.
        unsafe {
            write_versioned(
                out,
                v,
                std::mem::size_of::<aether_topic_statistics>(),
                "aether_topic_statistics",
            )
        }
    })
}

/// Fills `*out` with this subscriber's figures, read from the topic's
/// segment (no request): `out->struct_size` must be set to
/// `sizeof(aether_subscriber_statistics)`.
/// Errors: `AETHER_E_INVALID` (NULL, a bad struct_size).
#[no_mangle]
pub unsafe extern "C" fn aether_subscriber_stats(
    s: *const aether_subscriber,
    out: *mut aether_subscriber_statistics,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live subscriber handle, per the API contract.
        let s = unsafe { handle_ref(s.cast_mut(), "subscriber")? };
        if out.is_null() {
            return Err(null_arg("out"));
        }
        let st = s.inner.stats();
        let v = aether_subscriber_statistics {
            struct_size: std::mem::size_of::<aether_subscriber_statistics>(),
            published: st.published,
            delivered: st.delivered,
            lost: st.lost,
            lag: st.lag,
            too_large: st.too_large,
        };
        // SAFETY: non-null; per the contract struct_size writable bytes.
        unsafe {
            write_versioned(
                out,
                v,
                std::mem::size_of::<aether_subscriber_statistics>(),
                "aether_subscriber_statistics",
            )
        }
    })
}

/// Messages this subscriber missed so far (lapped on a lossy topic, or left
/// half-written by a dead publisher). 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn aether_subscriber_lost(s: *const aether_subscriber) -> u64 {
    // SAFETY: NULL or a live subscriber handle, per the API contract.
    match unsafe { s.as_ref() } {
        Some(s) => s.inner.lost(),
        None => 0,
    }
}

/// A descriptor to poll (poll, epoll, select, an event loop) for POLLIN: it
/// is readable when `aether_receive` may not come back empty. For
/// `AETHER_DELIVERY_MQUEUE` it is the subscriber's queue; for
/// `AETHER_DELIVERY_SHM` an eventfd the broker makes on the first call (one
/// request to it), which publishers signal only while the subscriber is
/// armed: from a receive that came back `AETHER_E_TIMEOUT` (timeout 0 or
/// not) until its next receive. So the loop is: poll; then
/// `aether_receive`/`aether_receive_view` with timeout 0 until
/// `AETHER_E_TIMEOUT`; poll again. A subscriber that never calls this costs
/// publishers nothing. Returns the descriptor (>= 0), owned by the
/// subscriber (valid until `aether_subscriber_close`; do not read or close
/// it), or a negative `aether_status` (`AETHER_E_INVALID` for NULL,
/// `AETHER_E_UNAVAILABLE` when the broker is gone, as any request).
#[no_mangle]
pub unsafe extern "C" fn aether_subscriber_fd(s: *const aether_subscriber) -> c_int {
    let mut fd = -1;
    let rc = guard(|| {
        // SAFETY: NULL or a live subscriber handle, per the API contract; the
        // handle was made mutable (Box::into_raw) and is used by one thread at
        // a time, so the `const` of the C signature (kept for compatibility)
        // does not guard anything here.
        let s = unsafe { handle_mut(s as *mut aether_subscriber, "subscriber")? };
        fd = s.inner.fd()?.as_raw_fd();
        Ok(())
    });
    if rc == 0 {
        fd
    } else {
        rc
    }
}

/// Messages the broker skipped for an `AETHER_DELIVERY_MQUEUE` subscriber
/// because they exceed its queue's message size (neither delivered nor
/// lost; each also reported by an `AETHER_NOTICE_TOO_LARGE` notice).
/// 0 for shm subscribers and NULL.
#[no_mangle]
pub unsafe extern "C" fn aether_subscriber_too_large(s: *const aether_subscriber) -> u64 {
    let mut n = 0;
    guard_void(|| {
        // SAFETY: NULL or a live subscriber handle, per the API contract.
        n = unsafe { s.as_ref() }.map_or(0, |s| s.inner.too_large());
    });
    n
}

/// The client's control queue, on which the broker posts notices (topic
/// deleted, draining, lagged, message too large): a descriptor to poll for
/// POLLIN, then read with `aether_client_next_notice`. The queue is made on
/// the first call (or the first mqueue subscriber); earlier notices are not
/// kept. Returns the descriptor (>= 0), owned by the client (do not read or
/// close it), or a negative `aether_status`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn aether_client_notices_fd(c: *mut aether_client) -> c_int {
    let mut fd = -1;
    let rc = guard(|| {
        // SAFETY: NULL or a live client handle, per the API contract.
        let c = unsafe { handle_ref(c, "client")? };
        fd = c.inner.notices_fd()?.as_raw_fd();
        Ok(())
    });
    if rc == 0 {
        fd
    } else {
        rc
    }
}

fn notice_to_c(n: &Notice) -> aether_notice {
    use aether_notice_kind::*;
    let mut out = aether_notice {
        kind: 0,
        topic: [0; 121],
        seq: 0,
        count: 0,
        len: 0,
    };
    for (d, b) in out.topic.iter_mut().zip(n.topic().bytes().take(120)) {
        *d = b as c_char;
    }
    let kind = match *n {
        Notice::TopicDeleted { .. } => AETHER_NOTICE_TOPIC_DELETED,
        Notice::Draining => AETHER_NOTICE_DRAINING,
        Notice::Lagged { seq, lost, .. } => {
            (out.seq, out.count) = (seq, lost);
            AETHER_NOTICE_LAGGED
        }
        Notice::TooLarge { seq, len, .. } => {
            (out.seq, out.count, out.len) = (seq, 1, len);
            AETHER_NOTICE_TOO_LARGE
        }
        Notice::Dropped { count } => {
            out.count = count;
            AETHER_NOTICE_DROPPED
        }
    };
    out.kind = kind as u32;
    out
}

/// Takes the next notice from the client's control queue into `*out`, waiting
/// up to `timeout_ns` (negative: forever; 0: only one already there).
/// Makes the queue on first use, like `aether_client_notices_fd`.
/// Errors: `AETHER_E_TIMEOUT` (none came), `AETHER_E_LIMIT` (no queue could be
/// made: this uid's control-queue quota, or RLIMIT_MSGQUEUE), `AETHER_E_INVALID`
/// (NULL), `AETHER_E_UNAVAILABLE`.
/// Thread-safe; each notice goes to one caller.
#[no_mangle]
pub unsafe extern "C" fn aether_client_next_notice(
    c: *mut aether_client,
    out: *mut aether_notice,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live client handle, per the API contract.
        let c = unsafe { handle_ref(c, "client")? };
        if out.is_null() {
            return Err(null_arg("out"));
        }
        let timeout = (timeout_ns >= 0).then(|| Duration::from_nanos(timeout_ns as u64));
        match c.inner.next_notice(timeout)? {
            Some(n) => {
                // SAFETY: `out` is non-null and writable per the API contract.
                unsafe { write_out(out, notice_to_c(&n)) };
                Ok(())
            }
            None => Err(Error::new(Status::Timeout, "no notice came in time")),
        }
    })
}

/// Carries the subscriber on after its daemon died or its topic was
/// deleted, as `aether_publisher_reopen` does: a new subscriber with the
/// same configuration, reading from the topic's tail as it is now (what was
/// published while no daemon ran is gone; its counts start from zero). An
/// outstanding view is dropped: its `aether_message` must not be used. On
/// error the handle is left as it was.
#[no_mangle]
pub unsafe extern "C" fn aether_subscriber_reopen(s: *mut aether_subscriber) -> c_int {
    guard(|| {
        // SAFETY: NULL or a live subscriber handle, per the API contract.
        unsafe { handle_mut(s, "subscriber")? }.inner.reopen()
    })
}

/// Closes a subscriber and frees its slot. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn aether_subscriber_close(s: *mut aether_subscriber) {
    // SAFETY: NULL or a handle from aether_subscriber_open, per the API contract.
    guard_void(|| unsafe { free_handle(s) })
}

#[cfg(test)]
mod tests;
