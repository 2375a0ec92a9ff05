//! `aether._aether`: the native half of the `aether` Python package, over the
//! Rust API of the core crate (no second implementation of anything).
//!
//! Threading rules, which keep the GIL and our mutexes from deadlocking:
//! * every blocking wait (receive, a reliable publish, a control request, a
//!   large contiguous copy) runs with the interpreter detached (`py.detach`);
//! * a thread attached to the interpreter never *blocks* on one of our
//!   mutexes: it tries the lock and, if it is taken, detaches while it waits
//!   ([`lock`]). A thread may therefore hold a mutex while it re-attaches.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod bench;
mod errors;
mod publisher;
mod subscriber;

use aether::{Client, Policy, TopicParams};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Locks `m` from a thread attached to the interpreter without ever blocking
/// while attached (see the crate docs). A poisoned mutex is used as is: the
/// state it guards stays consistent because no code here panics while holding it.
pub(crate) fn lock<'a, T: Send>(py: Python<'_>, m: &'a Mutex<T>) -> MutexGuard<'a, T> {
    loop {
        match m.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => py.detach(|| {
                // Wait for the holder to finish, then try again attached.
                drop(m.lock());
            }),
        }
    }
}

/// Locks `m` from a detached thread (it may block).
pub(crate) fn lock_detached<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn parse_policy(py: Python<'_>, policy: &str) -> PyResult<Policy> {
    Policy::from_name(policy)
        .ok_or_else(|| errors::invalid(py, format!("policy must be 'lossy' or 'reliable', not {policy:?}")))
}

/// Topic parameters from the optional keyword arguments (core defaults for the rest).
pub(crate) fn topic_params(
    py: Python<'_>,
    policy: &str,
    ring_size: Option<u64>,
    max_message: Option<u64>,
    max_subscribers: Option<u32>,
) -> PyResult<TopicParams> {
    let d = TopicParams::default();
    Ok(TopicParams {
        policy: parse_policy(py, policy)?,
        ring_size: ring_size.unwrap_or(d.ring_size),
        max_message: max_message.unwrap_or(d.max_message),
        max_subscribers: max_subscribers.unwrap_or(d.max_subscribers),
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    })
}

/// Connects (detached: it may start a daemon and waits on the socket).
pub(crate) fn connect(py: Python<'_>, socket: Option<PathBuf>) -> PyResult<Client> {
    py.detach(|| Client::connect(socket.as_deref())).map_err(errors::to_py)
}

/// Creates `topic` on `client`; `Exists` is fine when `exist_ok`.
pub(crate) fn create(
    py: Python<'_>,
    client: &Client,
    topic: &str,
    params: &TopicParams,
    exist_ok: bool,
) -> PyResult<()> {
    match py.detach(|| client.create_topic(topic, params)) {
        Ok(()) => Ok(()),
        Err(e) if exist_ok && e.status == aether::Status::Exists => Ok(()),
        Err(e) => Err(errors::to_py(e)),
    }
}

/// Creates a topic. Raises `Exists` if it exists (unless `exist_ok`).
/// Sizes default to the core's (64 KiB messages, a ring sized for them:
/// 1 MiB, or the smallest that takes one max_message; 64 subscribers).
/// `durability="wal"` makes it durable: the daemon logs every message, with
/// `fsync` "never" (default), "always" or "interval=MS"; such a topic must be
/// reliable (the policy defaults to reliable then). `huge_pages=True` puts
/// the ring on 2 MiB huge pages, which must be reserved (`sysctl
/// vm.nr_hugepages=N`; too few free raises `LimitReached`). A durable
/// topic's log is trimmed by the daemon's `[log]` retain_bytes and
/// retain_seconds unless `retain_bytes` / `retain_seconds` give the topic its
/// own (0: no limit for it); on a topic that is not durable they raise
/// `InvalidArgument`.
#[pyfunction]
#[pyo3(signature = (topic, *, policy = None, ring_size = None, max_message = None, max_subscribers = None, socket = None, exist_ok = false, durability = "none", fsync = None, huge_pages = false, retain_bytes = None, retain_seconds = None))]
#[allow(clippy::too_many_arguments)]
fn create_topic(
    py: Python<'_>,
    topic: &str,
    policy: Option<&str>,
    ring_size: Option<u64>,
    max_message: Option<u64>,
    max_subscribers: Option<u32>,
    socket: Option<PathBuf>,
    exist_ok: bool,
    durability: &str,
    fsync: Option<&str>,
    huge_pages: bool,
    retain_bytes: Option<u64>,
    retain_seconds: Option<u64>,
) -> PyResult<()> {
    let wal = match (durability, fsync) {
        ("none", None) => None,
        ("none", Some(_)) => return Err(errors::invalid(py, "fsync needs durability=\"wal\"")),
        ("wal", f) => Some(aether::Fsync::parse(f.unwrap_or("never")).ok_or_else(|| {
            errors::invalid(
                py,
                format!("fsync must be \"never\", \"always\" or \"interval=MS\", not {f:?}"),
            )
        })?),
        (d, _) => {
            return Err(errors::invalid(
                py,
                format!("durability must be \"none\" or \"wal\", not {d:?}"),
            ))
        }
    };
    let policy = policy.unwrap_or(if wal.is_some() { "reliable" } else { "lossy" });
    let mut params = topic_params(py, policy, ring_size, max_message, max_subscribers)?;
    params.wal = wal;
    params.huge_pages = huge_pages;
    (params.retain_bytes, params.retain_seconds) = (retain_bytes, retain_seconds);
    let client = connect(py, socket)?;
    create(py, &client, topic, &params, exist_ok)
}

/// The id of the broker named `name` in `Message.origin` (never 0).
#[pyfunction]
fn broker_id(name: &str) -> u64 {
    aether::broker_id(name)
}

/// Pins the calling thread to `cpus` (sched_setaffinity). Raises
/// InvalidArgument (a ValueError) for an empty list or a CPU this process
/// may not use; the thread's affinity is then left as it was.
#[pyfunction]
fn set_thread_affinity(py: Python<'_>, cpus: Vec<usize>) -> PyResult<()> {
    py.detach(|| aether::set_thread_affinity(&cpus)).map_err(errors::to_py)
}

/// topic_stats(topic, *, socket=None) -> dict: the topic's figures as the
/// broker keeps them (published, publishers, subscribers, lost, aborted,
/// overruns, waits, space_waits, wakes, rate_msgs_per_s, rate_bytes_per_s,
/// durable, log_bytes, log_oldest_seq, log_next_seq). Raises NotFound, or
/// PermissionDenied without a right on the topic.
#[pyfunction]
#[pyo3(signature = (topic, *, socket = None))]
fn topic_stats<'py>(
    py: Python<'py>,
    topic: &str,
    socket: Option<PathBuf>,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let client = connect(py, socket)?;
    let t = py.detach(|| client.topic_stats(topic)).map_err(errors::to_py)?;
    let d = pyo3::types::PyDict::new(py);
    for (k, v) in [
        ("published", t.published),
        ("publishers", t.publishers.into()),
        ("subscribers", t.subscribers.into()),
        ("lost", t.lost),
        ("aborted", t.aborted),
        ("overruns", t.overruns),
        ("waits", t.waits),
        ("space_waits", t.space_waits),
        ("wakes", t.wakes),
        ("log_bytes", t.log_bytes),
        ("log_oldest_seq", t.log_oldest_seq),
        ("log_next_seq", t.log_next_seq),
    ] {
        d.set_item(k, v)?;
    }
    d.set_item("rate_msgs_per_s", t.rate_msgs_per_s)?;
    d.set_item("rate_bytes_per_s", t.rate_bytes_per_s)?;
    d.set_item("durable", t.durable)?;
    Ok(d)
}

/// Deletes a topic. Raises `NotFound` if there is none of that name.
#[pyfunction]
#[pyo3(signature = (topic, *, socket = None))]
fn delete_topic(py: Python<'_>, topic: &str, socket: Option<PathBuf>) -> PyResult<()> {
    let client = connect(py, socket)?;
    py.detach(|| client.delete_topic(topic)).map_err(errors::to_py)
}

#[pymodule]
fn _aether(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<publisher::Publisher>()?;
    m.add_class::<publisher::Loan>()?;
    m.add_class::<subscriber::Subscriber>()?;
    m.add_class::<subscriber::Message>()?;
    m.add_function(wrap_pyfunction!(create_topic, m)?)?;
    m.add_function(wrap_pyfunction!(delete_topic, m)?)?;
    m.add_function(wrap_pyfunction!(set_thread_affinity, m)?)?;
    m.add_function(wrap_pyfunction!(broker_id, m)?)?;
    m.add_function(wrap_pyfunction!(topic_stats, m)?)?;
    bench::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
