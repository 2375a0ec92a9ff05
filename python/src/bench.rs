//! Native twins of the loops in `aether/bench.py`, so that one run prints the
//! Python figures beside the Rust ones. Each runs detached, in plain Rust over
//! the same core API (no Python in the loop).

use crate::errors;
use aether::ring::Deadline;
use aether::{Client, Status, SubscriberConfig};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long one receive of the benchmarks may wait before the run fails.
const WAIT: Duration = Duration::from_secs(10);

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

fn publisher(socket: &Option<PathBuf>, topic: &str) -> aether::Result<aether::Publisher> {
    let mut p = Client::connect(socket.as_deref())?.publisher(topic)?;
    p.set_timeout(Some(WAIT));
    Ok(p)
}

fn subscriber(socket: &Option<PathBuf>, topic: &str) -> aether::Result<aether::Subscriber> {
    Client::connect(socket.as_deref())?.subscriber(topic, &SubscriberConfig::default())
}

fn timed_out(what: &str) -> aether::Error {
    aether::Error::new(Status::Timeout, format!("benchmark: no message for {WAIT:?} ({what})"))
}

/// Publishes `count` messages of `size` bytes; returns the seconds taken.
#[pyfunction]
#[pyo3(signature = (socket, topic, size, count))]
fn _rust_publish(py: Python<'_>, socket: Option<PathBuf>, topic: &str, size: usize, count: u64) -> PyResult<f64> {
    py.detach(|| {
        let mut p = publisher(&socket, topic)?;
        let data = payload(size);
        let t0 = Instant::now();
        for _ in 0..count {
            p.publish(&data)?;
        }
        Ok(t0.elapsed().as_secs_f64())
    })
    .map_err(errors::to_py)
}

/// Receives `count` messages of `size` bytes from `topic` (reliable, empty):
/// publishes `batch` messages (untimed), then times receiving them, until
/// `count` are received. `mode` "view": borrow and release each (zero-copy);
/// "copy": copy each into a buffer. Returns the seconds spent receiving.
#[pyfunction]
#[pyo3(signature = (socket, topic, size, count, batch, mode))]
fn _rust_receive(
    py: Python<'_>,
    socket: Option<PathBuf>,
    topic: String,
    size: usize,
    count: u64,
    batch: u64,
    mode: &str,
) -> PyResult<f64> {
    let copy = match mode {
        "view" => false,
        "copy" => true,
        _ => return Err(errors::invalid(py, "mode must be 'view' or 'copy'")),
    };
    py.detach(move || {
        let mut s = subscriber(&socket, &topic)?;
        let mut p = publisher(&socket, &topic)?;
        let data = payload(size);
        let mut buf = vec![0u8; s.max_message()];
        let mut total = 0u64;
        let mut spent = Duration::ZERO;
        let mut left = count;
        while left > 0 {
            let n = batch.min(left).max(1);
            for _ in 0..n {
                p.publish(&data)?;
            }
            let t0 = Instant::now();
            for _ in 0..n {
                if copy {
                    let r = s.receive_into(&mut buf, Some(WAIT)).map_err(|_| timed_out("receive"))?;
                    total += r.len as u64;
                } else {
                    let rec = s
                        .receive_view(&Deadline::after(Some(WAIT)))
                        .map_err(|_| timed_out("receive"))?;
                    total += rec.len as u64;
                    s.release_view()?;
                }
            }
            spent += t0.elapsed();
            left -= n;
        }
        std::hint::black_box(total);
        Ok(spent.as_secs_f64())
    })
    .map_err(errors::to_py)
}

/// Round trips: publishes `size` bytes on `ping`, waits for the echo on
/// `pong`; `warmup` untimed rounds, then `count` timed ones. Returns the
/// round-trip times in nanoseconds.
#[pyfunction]
#[pyo3(signature = (socket, ping, pong, size, count, warmup))]
fn _rust_ping(
    py: Python<'_>,
    socket: Option<PathBuf>,
    ping: String,
    pong: String,
    size: usize,
    count: usize,
    warmup: usize,
) -> PyResult<Vec<u64>> {
    py.detach(move || {
        let mut s = subscriber(&socket, &pong)?;
        let mut p = publisher(&socket, &ping)?;
        let data = payload(size);
        let mut rtt = Vec::with_capacity(count);
        for i in 0..warmup + count {
            let t0 = Instant::now();
            p.publish(&data)?;
            s.receive_view(&Deadline::after(Some(WAIT)))
                .map_err(|_| timed_out("pong"))?;
            let dt = t0.elapsed();
            s.release_view()?;
            if i >= warmup {
                rtt.push(dt.as_nanos() as u64);
            }
        }
        Ok(rtt)
    })
    .map_err(errors::to_py)
}

/// The echo side: subscribes to `ping`, calls `ready()` (the pinger may
/// start then), and publishes each of `count` messages back on `pong`,
/// zero-copy from ring to ring.
#[pyfunction]
#[pyo3(signature = (socket, ping, pong, count, ready))]
fn _rust_echo(
    py: Python<'_>,
    socket: Option<PathBuf>,
    ping: String,
    pong: String,
    count: usize,
    ready: Py<PyAny>,
) -> PyResult<()> {
    let r = py.detach(move || {
        let mut s = subscriber(&socket, &ping).map_err(Failure::Core)?;
        let mut p = publisher(&socket, &pong).map_err(Failure::Core)?;
        Python::attach(|py| ready.call0(py).map(drop)).map_err(Failure::Py)?;
        for _ in 0..count {
            let rec = s
                .receive_view(&Deadline::after(Some(WAIT)))
                .map_err(|_| Failure::Core(timed_out("ping")))?;
            // SAFETY: the record is the held view (valid until release_view),
            // inside the subscriber's mapping.
            let bytes = unsafe { std::slice::from_raw_parts(rec.data, rec.len) };
            p.publish(bytes).map_err(Failure::Core)?;
            s.release_view().map_err(Failure::Core)?;
        }
        Ok(())
    });
    r.map_err(|f| match f {
        Failure::Core(e) => errors::to_py(e),
        Failure::Py(e) => e,
    })
}

enum Failure {
    Core(aether::Error),
    Py(PyErr),
}

/// A no-op, to measure the interpreter's cost of one call into the extension.
#[pyfunction]
fn _noop() {}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_rust_publish, m)?)?;
    m.add_function(wrap_pyfunction!(_rust_receive, m)?)?;
    m.add_function(wrap_pyfunction!(_rust_ping, m)?)?;
    m.add_function(wrap_pyfunction!(_rust_echo, m)?)?;
    m.add_function(wrap_pyfunction!(_noop, m)?)?;
    Ok(())
}
