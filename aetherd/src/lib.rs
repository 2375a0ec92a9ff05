//! aetherd: the Aether broker, as a library (this crate) under the thin
//! `aetherd` binary. Everything a client process needs — the segment layout,
//! the ring, the control protocol, the client — is in the `aether` crate
//! (libaether); this crate holds only what the daemon runs: its
//! configuration, access rules, the admin pipe, message-queue dispatch, the
//! housekeeper and statistics. Tests and benchmarks that embed a broker use
//! [`Broker`] from here.
//!
//! Modules, each depending only on those listed before it:
//! - [`config`]: the configuration file, environment and flags;
//! - [`logger`]: the `log` backend (stderr, or journald's priority prefixes);
//! - [`access`]: who may do what, and the socket's permissions;
//! - [`admin`]: the admin pipe's wire format and the requester's side
//!   (used by `aether-cli`); its `server` is the daemon's side;
//! - `keeper`: holds each segment's robust mutex, which tells clients the daemon died;
//! - `state`: what the daemon knows (topics, slots, clients), under one mutex;
//! - `quota`: what a uid, a connection and everyone may hold, counted from the state;
//! - `mqueue`, `requests`, `stats`, `housekeeper`: what the threads do with it;
//! - [`broker`]: the [`Broker`] that binds the socket and starts the threads;
//! - [`wal`]: the write-ahead log's files (segment format, append, checked
//!   reads, torn-tail recovery, a directory of segments with rolling and
//!   retention); not wired into the broker yet.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod access;
pub mod admin;
pub mod bridge;
pub mod broker;
pub mod config;
pub mod durable;
mod housekeeper;
mod keeper;
pub mod logger;
pub mod metrics;
mod mqueue;
mod quota;
mod requests;
mod state;
pub mod stats;
pub mod wal;

pub use broker::Broker;
