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
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod client;
pub mod delivery;
pub mod error;
pub mod ffi;
pub mod local;
pub mod notice;
pub mod paths;
pub mod protocol;
pub mod ring;
pub mod segment;
pub mod sys;

pub use client::{Client, Message, Publisher, Subscriber, SubscriberConfig};
pub use delivery::{Delivery, Received};
pub use error::{Error, Result, Status};
pub use notice::Notice;
pub use ring::{WaitConfig, WaitStrategy};
pub use segment::{Policy, TopicParams};

/// This library's version (the workspace's): sent to the daemon in `Hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
