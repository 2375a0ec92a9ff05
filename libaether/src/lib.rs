//! Aether: a local publish/subscribe broker whose data plane is shared memory.
//!
//! ```no_run
//! use aether::{Client, SubscriberConfig, TopicParams};
//! let client = Client::connect(None)?;               // default socket; starts aetherd if needed
//! client.create_topic("greetings", &TopicParams::default()).ok();
//! let mut sub = client.subscriber("greetings", &SubscriberConfig::default())?;
//! let mut publ = client.publisher("greetings")?;
//! publ.publish(b"hello")?;
//! let msg = sub.receive(Some(std::time::Duration::from_secs(1)))?.expect("a message");
//! assert_eq!(msg.data, b"hello");
//! # Ok::<(), aether::Error>(())
//! ```
//!
//! The API is what the crate root re-exports: [`Client`] (a connection to
//! the broker: makes and deletes topics, opens publishers and subscribers),
//! [`Publisher`] (copy or loan/commit), [`Subscriber`] (copy, or a zero-copy
//! view until `release_view`; `fd()` for poll/epoll), and their options and
//! results. Every fallible call returns [`Error`], whose [`Status`] is the
//! same code C and Python see. The modules hidden from these pages are
//! shared with the daemon and the tools; they carry no stability promise.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

// The API: the items re-exported below, nothing else.
mod client;
mod delivery;
mod error;
mod ffi;
mod history;

pub use client::{Client, Message, Publisher, Subscriber, SubscriberConfig, SubscriberStats};
pub use delivery::{Delivery, Received};
pub use error::{Error, Result, Status};
#[doc(hidden)]
pub use history::replay as replay_history;
pub use notice::Notice;
pub use protocol::{Start, TopicStats};
pub use ring::{broker_id, Deadline, LargeLaps, Origin, Record, WaitConfig, WaitStrategy, NO_TIMESTAMP, ORIGIN_BYTES};
pub use segment::{Fsync, Policy, TopicParams, RING_SIZED};

// The parts the daemon, the CLI, the benchmark and the tests share with the
// client (one definition of each layout and wire format). Public for them,
// hidden from the documentation, and not a stable API: no semver promise.
#[doc(hidden)]
pub mod local;
#[doc(hidden)]
pub mod logfile;
#[doc(hidden)]
pub mod notice;
#[doc(hidden)]
pub mod paths;
#[doc(hidden)]
pub mod protocol;
#[doc(hidden)]
pub mod ring;
#[doc(hidden)]
pub mod segment;
#[doc(hidden)]
pub mod sys;

/// Pins the calling thread to `cpus` (sched_setaffinity): a publisher's or
/// subscriber's thread kept on its core, away from the others.
///
/// Errors: `Invalid` (an empty list, or a CPU this process may not use: the
/// message names those it may; the thread's affinity is left as it was),
/// `Io`.
pub fn set_thread_affinity(cpus: &[usize]) -> Result<()> {
    sys::affinity::set_current(cpus)
}

/// This library's version (the workspace's): sent to the daemon in `Hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
