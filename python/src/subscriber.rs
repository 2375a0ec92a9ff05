//! `aether.Subscriber` and `aether.Message` (a zero-copy view into the ring).

use crate::errors::{self, invalid};
use crate::publisher::{bytes_at, DETACH_COPY};
use crate::{lock, lock_detached};
use aether::ring::Deadline;
use aether::{Policy, Status, SubscriberConfig};
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple, PyType};
use pyo3::PyTraverseError;
use std::ffi::{c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest stretch a blocking receive waits detached before it re-attaches to
/// check for signals (Ctrl-C) and `close()` from another thread.
///
/// It must exceed the subscriber's abandon timeout (100 ms): the core notices a
/// record abandoned by a dead publisher only within one wait of at least that
/// long, so shorter slices would wait on such a record forever.
const SLICE: Duration = Duration::from_millis(150);

/// The core subscriber, made `Send`.
struct SendSub(aether::Subscriber);

// SAFETY: `aether::Subscriber` is not `Send` only because the view it may hold
// (`ring::Record`) carries a raw pointer into the segment mapping, and that
// mapping is owned by the subscriber itself (its reader's `Arc<Segment>`,
// whose `Mapping` is `Send + Sync`). Moving the subscriber moves the owner of
// the mapping with the pointer, which is only dereferenced while the
// subscriber is alive; every other part (reader, client connection) is `Send`.
unsafe impl Send for SendSub {}

/// Shared between a `Message` and its subscriber: the state of one held view.
struct ViewState {
    /// The view was released (explicitly, by the next receive, or by close):
    /// its bytes must not be read any more.
    released: AtomicBool,
    /// Buffers exported from the message (memoryviews, numpy arrays) alive.
    exports: AtomicUsize,
    /// Release as soon as `exports` drops to zero (a `with` block ended by an exception).
    release_pending: AtomicBool,
}

struct State {
    inner: Option<SendSub>,
    /// The message holding the core's one view, if any.
    held: Option<Arc<ViewState>>,
}

impl State {
    /// Releases the held view, if any, so that a new one can be taken.
    /// Fails with BufferError while buffers exported from it are alive.
    fn release_held(&mut self, counters: &Counters) -> PyResult<()> {
        let Some(v) = self.held.as_ref() else { return Ok(()) };
        let n = v.exports.load(Ordering::SeqCst);
        if n > 0 {
            return Err(PyBufferError::new_err(format!(
                "the previous message still has {n} exported buffer(s) (memoryview, numpy array, ...) \
                 pointing into the ring: delete them (or copy the data, e.g. with msg.bytes() or \
                 array.copy()) before receiving the next message"
            )));
        }
        v.released.store(true, Ordering::SeqCst);
        self.held = None;
        if let Some(inner) = self.inner.as_mut() {
            // Overwritten (lossy): already counted in `lost` by the core.
            let _ = inner.0.release_view();
            counters.update(&inner.0);
        }
        Ok(())
    }
}

/// Copies of the core's counters, readable without the state lock (a receive
/// in another thread may hold it while it waits).
#[derive(Default)]
struct Counters {
    lost: AtomicU64,
    delivered: AtomicU64,
}

impl Counters {
    fn update(&self, s: &aether::Subscriber) {
        self.lost.store(s.lost(), Ordering::Relaxed);
        self.delivered.store(s.delivered(), Ordering::Relaxed);
    }
}

/// A received record, as plain integers (it crosses `py.detach`).
struct Got {
    ptr: usize,
    len: usize,
    seq: u64,
    timestamp_ns: u64,
    view: Arc<ViewState>,
    /// `delivery="mqueue"`: the bytes, copied out of the queue (`ptr` points
    /// into them); `None`: `ptr` points into the ring.
    owned: Option<Box<[u8]>>,
    origin: Option<aether::Origin>,
}

enum Outcome {
    Message(Py<Message>),
    TimedOut,
    Closed,
}

enum Slice {
    Got(Got),
    TimedOut,
    Closed,
    /// Another thread took a view meanwhile: go round again.
    Busy,
}

/// Receives from one topic.
///
/// Subscriber(topic, *, from_="latest", delivery="shm", socket=None, create=True,
///            policy="lossy", ring_size=None, max_message=None, max_subscribers=None,
///            fill_gaps=False)
///
/// `from_`: "latest" (messages published from now on), or on a durable
/// topic "earliest", a seq (int or "seq=N"), "time=NS" or "durable=NAME".
/// `fill_gaps`: on a durable lossy topic, messages publishers lapped this
/// subscriber over are read from the log instead of lost.
/// `delivery="shm"` reads straight from the shared-memory ring (zero-copy);
/// `delivery="mqueue"` through a POSIX message queue a daemon thread fills
/// (each message copied). `fileno()` gives a descriptor to poll either way.
/// With `create`, a missing topic is created with the given settings.
#[pyclass(module = "aether", name = "Subscriber", frozen, weakref)]
pub struct Subscriber {
    state: Mutex<State>,
    topic: Py<PyString>,
    policy: Policy,
    max_message: usize,
    mapping: (usize, usize),
    counters: Counters,
    closed: AtomicBool,
}

fn timeout_deadline(py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) => {
            let d = Duration::try_from_secs_f64(t)
                .map_err(|_| invalid(py, format!("timeout must be a number of seconds >= 0 or None, not {t}")))?;
            // A deadline past any representable instant waits forever.
            Ok(Instant::now().checked_add(d))
        }
    }
}

impl Subscriber {
    fn make_message(&self, slf: &Bound<'_, Self>, g: Got) -> PyResult<Py<Message>> {
        let py = slf.py();
        Py::new(
            py,
            Message {
                sub: slf.clone().unbind(),
                topic: self.topic.clone_ref(py),
                seq: g.seq,
                timestamp_ns: g.timestamp_ns,
                origin: g.origin.map(|o| (o.broker, o.seq)),
                len: g.len,
                ptr: g.ptr,
                view: g.view,
                _owned: g.owned,
            },
        )
    }

    /// Takes the next message without waiting past `deadline`: a view into
    /// the ring (`delivery="shm"`), or a copy out of the queue
    /// (`delivery="mqueue"`), registered as the held view either way.
    fn take(st: &mut State, deadline: &Deadline, max_message: usize) -> aether::Result<Got> {
        let inner = &mut st.inner.as_mut().expect("the caller checked").0;
        let (ptr, len, seq, timestamp_ns, owned, origin) = match inner.delivery() {
            aether::Delivery::Shm => {
                let rec = inner.receive_view(deadline)?;
                (rec.data as usize, rec.len, rec.seq, rec.timestamp_ns, None, rec.origin)
            }
            aether::Delivery::Mqueue => {
                let mut buf = vec![0u8; max_message].into_boxed_slice();
                let r = inner.receive_into_deadline(&mut buf, deadline)?;
                (buf.as_ptr() as usize, r.len, r.seq, r.timestamp_ns, Some(buf), None)
            }
        };
        let view = Arc::new(ViewState {
            released: AtomicBool::new(false),
            exports: AtomicUsize::new(0),
            release_pending: AtomicBool::new(false),
        });
        st.held = Some(view.clone());
        Ok(Got {
            ptr,
            len,
            seq,
            timestamp_ns,
            view,
            owned,
            origin,
        })
    }

    /// The receive loop: attached between slices (signals, releasing the
    /// previous message, `close()` from another thread), detached while waiting.
    fn receive_impl(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Outcome> {
        let py = slf.py();
        let this = slf.get();
        let deadline = timeout_deadline(py, timeout)?;
        let mut first = true;
        loop {
            // Attached: bookkeeping, and a try that does not wait.
            {
                let mut st = lock(py, &this.state);
                if st.inner.is_none() {
                    return Ok(Outcome::Closed);
                }
                st.release_held(&this.counters)?;
                if first {
                    let r = Self::take(&mut st, &Deadline::from_timeout_ns(0), this.max_message);
                    this.counters.update(&st.inner.as_ref().expect("checked above").0);
                    match r {
                        Ok(g) => {
                            drop(st);
                            return Ok(Outcome::Message(this.make_message(slf, g)?));
                        }
                        Err(e) if e.status == Status::Timeout => {}
                        Err(e) => return Err(errors::to_py(e)),
                    }
                }
            }
            if !first {
                py.check_signals()?;
            }
            first = false;
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if d <= now => return Ok(Outcome::TimedOut),
                Some(d) => (d - now).min(SLICE),
                None => SLICE,
            };
            let r = py.detach(|| {
                let mut st = lock_detached(&this.state);
                if st.held.is_some() {
                    return Ok(Slice::Busy);
                }
                if st.inner.is_none() {
                    return Ok(Slice::Closed);
                }
                let r = Self::take(&mut st, &Deadline::after(Some(slice)), this.max_message);
                this.counters.update(&st.inner.as_ref().expect("checked above").0);
                match r {
                    Ok(g) => Ok(Slice::Got(g)),
                    Err(e) if e.status == Status::Timeout => Ok(Slice::TimedOut),
                    Err(e) => Err(e),
                }
            });
            match r.map_err(errors::to_py)? {
                Slice::Got(g) => return Ok(Outcome::Message(this.make_message(slf, g)?)),
                Slice::Closed => return Ok(Outcome::Closed),
                Slice::TimedOut | Slice::Busy => {}
            }
        }
    }

    fn closed_error(&self, py: Python<'_>) -> PyErr {
        invalid(
            py,
            format!("the subscriber of {:?} is closed", self.topic.bind(py).to_string()),
        )
    }
}

#[pymethods]
impl Subscriber {
    #[new]
    #[pyo3(signature = (topic, *, from_ = None, delivery = "shm", socket = None, create = true, policy = "lossy", ring_size = None, max_message = None, max_subscribers = None, fill_gaps = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        topic: &str,
        from_: Option<&Bound<'_, PyAny>>,
        delivery: &str,
        socket: Option<PathBuf>,
        create: bool,
        policy: &str,
        ring_size: Option<u64>,
        max_message: Option<u64>,
        max_subscribers: Option<u32>,
        fill_gaps: bool,
    ) -> PyResult<Self> {
        // None is the default, "latest"; an int is a seq.
        let start = match from_ {
            None => aether::Start::Latest,
            Some(f) => match (f.extract::<u64>(), f.extract::<String>()) {
                (Ok(seq), _) => aether::Start::Seq(seq),
                (_, Ok(s)) => aether::Start::parse(&s).ok_or_else(|| {
                    invalid(
                        py,
                        format!(
                            "from_={s:?}: use \"latest\", \"earliest\", a seq (int or \"seq=N\"), \
                             \"time=NS\" or \"durable=NAME\""
                        ),
                    )
                })?,
                _ => return Err(invalid(py, format!("from_={}: use a str or an int", f.repr()?))),
            },
        };
        let delivery = match delivery {
            "shm" => aether::Delivery::Shm,
            "mqueue" => aether::Delivery::Mqueue,
            other => {
                return Err(invalid(
                    py,
                    format!("delivery={other:?}: use \"shm\" (the shared-memory ring) or \"mqueue\" (a message queue)"),
                ))
            }
        };
        let config = SubscriberConfig {
            delivery,
            start,
            fill_gaps,
            ..SubscriberConfig::default()
        };
        let params = crate::topic_params(py, policy, ring_size, max_message, max_subscribers)?;
        let client = crate::connect(py, socket)?;
        if create {
            crate::create(py, &client, topic, &params, true)?;
        }
        let inner = py
            .detach(|| client.subscriber(topic, &config).map(SendSub))
            .map_err(errors::to_py)?
            .0;
        Ok(Subscriber {
            topic: PyString::new(py, topic).unbind(),
            policy: inner.policy(),
            max_message: inner.max_message(),
            mapping: inner.mapping_range(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            state: Mutex::new(State {
                inner: Some(SendSub(inner)),
                held: None,
            }),
        })
    }

    /// receive(timeout=None) -> Message | None
    ///
    /// Waits for the next message (up to `timeout` seconds; None: forever)
    /// and returns it as a zero-copy view into the ring, or None on timeout.
    /// Receiving ends the previous message of this subscriber (its bytes are
    /// no longer readable), unless buffers made from it are still alive, in
    /// which case this raises BufferError. Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout = None))]
    fn receive(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Option<Py<Message>>> {
        match Self::receive_impl(slf, timeout)? {
            Outcome::Message(m) => Ok(Some(m)),
            Outcome::TimedOut => Ok(None),
            Outcome::Closed => Err(slf.get().closed_error(slf.py())),
        }
    }

    /// fileno() -> int
    ///
    /// A descriptor to poll (select, selectors, asyncio's add_reader): it is
    /// readable when a receive may not come back empty. For
    /// `delivery="mqueue"` it is the message queue; for `delivery="shm"` an
    /// eventfd the broker makes on the first call, which publishers signal
    /// while this subscriber's last receive came back empty (until its next
    /// receive). So: wait for it, then `receive(timeout=0)` until None, then
    /// wait again. Valid until `close()`; do not read or close it.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        use std::os::fd::AsRawFd;
        let mut st = lock(py, &self.state);
        let Some(inner) = st.inner.as_mut() else {
            return Err(self.closed_error(py));
        };
        let fd = inner.0.fd().map_err(errors::to_py)?.as_raw_fd();
        Ok(fd)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Blocks until the next message; the iteration ends when the subscriber
    /// is closed (from another thread).
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Option<Py<Message>>> {
        match Self::receive_impl(slf, None)? {
            Outcome::Message(m) => Ok(Some(m)),
            _ => Ok(None),
        }
    }

    /// areceive(timeout=None) -> Message | None (a coroutine)
    ///
    /// `receive` for asyncio: the event loop waits on `fileno()` (no thread,
    /// no polling) and receives without waiting once it is readable.
    #[pyo3(signature = (timeout = None))]
    fn areceive<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("aether._async")?.getattr("areceive")?.call1((slf, timeout))
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("aether._async")?.getattr("anext")?.call1((slf,))
    }

    /// reopen() -> None
    ///
    /// Carries the subscriber on after its daemon died (receives raise
    /// BrokerUnavailable) or its topic was deleted: connects again, makes the
    /// topic again with the same settings if it is missing, and subscribes
    /// anew from its tail as it is now (what was published while no daemon
    /// ran is gone; `lost` and `delivered` start again from zero). The current
    /// message is released (BufferError while buffers made from it are
    /// alive). The library never does this by itself. On error the
    /// subscriber is left as it was.
    fn reopen(&self, py: Python<'_>) -> PyResult<()> {
        let mut st = lock(py, &self.state);
        st.release_held(&self.counters)?;
        let Some(inner) = st.inner.as_mut() else {
            return Err(self.closed_error(py));
        };
        // (The closure takes the Send wrapper whole, not its field.)
        let wrapper: &mut SendSub = inner;
        py.detach(move || {
            let w = wrapper;
            w.0.reopen()
        })
        .map_err(errors::to_py)?;
        self.counters.update(&inner.0);
        Ok(())
    }

    /// Closes the subscriber (ending its current message). Idempotent.
    /// Raises BufferError while buffers made from its current message are alive.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let (py, this) = (slf.py(), slf.get());
        let inner = {
            let mut st = lock(py, &this.state);
            if let Some(v) = st.held.as_ref() {
                let n = v.exports.load(Ordering::SeqCst);
                if n > 0 {
                    return Err(PyBufferError::new_err(format!(
                        "cannot close the subscriber: its current message has {n} exported buffer(s) \
                         (memoryview, numpy array, ...) still alive"
                    )));
                }
            }
            st.release_held(&this.counters)?;
            this.closed.store(true, Ordering::SeqCst);
            st.inner.take()
        };
        // Coroutines awaiting this subscriber's descriptor learn it is closed
        // (before the descriptor goes: the event loop forgets it then).
        if let Ok(m) = py.import("aether._async") {
            m.call_method1("closed", (slf,))?;
        }
        // Dropping the core subscriber tells the daemon (a socket round trip).
        if let Some(inner) = inner {
            py.detach(move || drop(inner));
        }
        Ok(())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    #[getter]
    fn topic(&self, py: Python<'_>) -> Py<PyString> {
        self.topic.clone_ref(py)
    }

    /// The topic's policy: "lossy" or "reliable".
    #[getter]
    fn policy(&self) -> &'static str {
        self.policy.name()
    }

    #[getter]
    fn max_message(&self) -> usize {
        self.max_message
    }

    /// Messages this subscriber missed (lossy topics: lapped or overwritten
    /// while held; any topic: records abandoned by a dead publisher). A gap
    /// counts once the message after it is released.
    #[getter]
    fn lost(&self) -> u64 {
        self.counters.lost.load(Ordering::Relaxed)
    }

    /// commit() -> None
    ///
    /// A durable subscription (from_="durable=NAME"): ends the current
    /// message (as the next receive would) and records with the daemon that
    /// everything received so far is done with; the next subscriber of that
    /// name starts after it. What is received after the last commit comes
    /// again then (at least once). Raises InvalidError when this is not a
    /// durable subscription, BufferError while the current message has
    /// exported buffers.
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        let mut st = lock(py, &self.state);
        st.release_held(&self.counters)?;
        let inner = st.inner.as_mut().ok_or_else(|| self.closed_error(py))?;
        inner.0.commit().map_err(errors::to_py)
    }

    /// Messages received so far (counted when released).
    #[getter]
    fn delivered(&self) -> u64 {
        self.counters.delivered.load(Ordering::Relaxed)
    }

    /// stats() -> dict: topic, policy, delivered, lost, max_message, holding,
    /// closed, and (None while another thread is receiving) published (the
    /// topic's messages so far) and lag (those not read yet).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("topic", self.topic.bind(py))?;
        d.set_item("policy", self.policy.name())?;
        d.set_item("delivered", self.delivered())?;
        d.set_item("lost", self.lost())?;
        d.set_item("max_message", self.max_message)?;
        let (holding, figures) = match self.state.try_lock() {
            Ok(st) => (st.held.is_some(), st.inner.as_ref().map(|i| i.0.stats())),
            Err(_) => (false, None),
        };
        d.set_item("holding", holding)?;
        d.set_item("published", figures.map(|f| f.published))?;
        d.set_item("lag", figures.map(|f| f.lag))?;
        d.set_item("closed", self.closed())?;
        Ok(d)
    }

    /// (base address, length) of the mapped segment: every message view lies inside.
    fn mapping_range(&self) -> (usize, usize) {
        self.mapping
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(slf: &Bound<'_, Self>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        Self::close(slf)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<aether.Subscriber topic={:?} policy={}{}>",
            self.topic.bind(py).to_string(),
            self.policy.name(),
            if self.closed() { " closed" } else { "" }
        )
    }
}

/// A received message: a read-only, zero-copy view of its bytes in the ring.
///
/// `memoryview(msg)`, `numpy.frombuffer(msg, dtype)`, `msg.bytes()` (a copy).
/// Valid until `msg.release()`, the end of a `with msg:` block, the next
/// receive on the same subscriber, or its close; after that, reading raises
/// `aether.InvalidArgument` (a ValueError). Metadata (seq, timestamp_ns,
/// topic, len) stays readable.
#[pyclass(module = "aether", name = "Message", frozen)]
pub struct Message {
    sub: Py<Subscriber>,
    topic: Py<PyString>,
    seq: u64,
    timestamp_ns: u64,
    origin: Option<(u64, u64)>,
    len: usize,
    ptr: usize,
    view: Arc<ViewState>,
    /// `delivery="mqueue"`: the copy `ptr` points into (kept alive with the message).
    _owned: Option<Box<[u8]>>,
}

enum Release {
    /// `release()`: BufferError while buffers are exported; Overwritten raised.
    Explicit,
    /// Quiet: the last export went away, or the object is being dropped.
    Quiet,
}

impl Message {
    fn check_live(&self, py: Python<'_>) -> PyResult<()> {
        if self.view.released.load(Ordering::SeqCst) {
            return Err(invalid(
                py,
                format!(
                    "message {} was released: its bytes are no longer readable (copy them with \
                     bytes() before releasing, or before receiving the next message)",
                    self.seq
                ),
            ));
        }
        Ok(())
    }

    /// Releases the view in the subscriber if it is still this message's.
    /// Returns the core's verdict (Overwritten on a lapped lossy view).
    fn release_in(&self, st: &mut State, counters: &Counters) -> aether::Result<()> {
        self.view.released.store(true, Ordering::SeqCst);
        let ours = st.held.as_ref().is_some_and(|h| Arc::ptr_eq(h, &self.view));
        if !ours {
            return Ok(());
        }
        st.held = None;
        match st.inner.as_mut() {
            // A copy (delivery="mqueue") holds no view of the core's.
            Some(_) if self._owned.is_some() => Ok(()),
            Some(inner) => {
                let r = inner.0.release_view().map(drop);
                counters.update(&inner.0);
                r
            }
            None => Ok(()),
        }
    }

    fn do_release(&self, py: Python<'_>, how: Release) -> PyResult<()> {
        if self.view.released.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Release::Explicit = how {
            let n = self.view.exports.load(Ordering::SeqCst);
            if n > 0 {
                return Err(PyBufferError::new_err(format!(
                    "cannot release message {}: {n} buffer(s) made from it (memoryview, numpy \
                     array, ...) are still alive; delete them first",
                    self.seq
                )));
            }
        }
        let sub = self.sub.get();
        let r = {
            let mut st = lock(py, &sub.state);
            self.release_in(&mut st, &sub.counters)
        };
        match (r, how) {
            (Err(e), Release::Explicit) => Err(errors::to_py(e)),
            _ => Ok(()),
        }
    }
}

#[pymethods]
impl Message {
    /// The message's sequence number in its topic (gap-free, from 0).
    #[getter]
    fn seq(&self) -> u64 {
        self.seq
    }

    /// When it was published: nanoseconds since the Unix epoch (CLOCK_REALTIME).
    #[getter]
    fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }

    /// For a message another broker's bridge brought here: `(broker, seq)`,
    /// the broker's id (`aether.broker_id(name)`) and the message's sequence
    /// number there; `None` for one published here.
    #[getter]
    fn origin(&self) -> Option<(u64, u64)> {
        self.origin
    }

    #[getter]
    fn topic(&self, py: Python<'_>) -> Py<PyString> {
        self.topic.clone_ref(py)
    }

    /// Whether the message was released (its bytes are no longer readable).
    #[getter]
    fn released(&self) -> bool {
        self.view.released.load(Ordering::SeqCst)
    }

    /// Address of the bytes in this process (for zero-copy checks).
    #[getter]
    fn _address(&self, py: Python<'_>) -> PyResult<usize> {
        self.check_live(py)?;
        Ok(self.ptr)
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// bytes() -> bytes: a copy of the message. On a lossy topic, raises
    /// Overwritten if a publisher lapped the message during the copy.
    fn bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.check_live(py)?;
        let sub = self.sub.get();
        let (ptr, len) = (self.ptr, self.len);
        // Allocated first: no Python allocation happens under the state lock.
        PyBytes::new_with(py, len, |dst| {
            // Hold the subscriber's state while copying: release and close
            // need it, so the view stays held and mapped even while the copy
            // runs detached. Liveness is checked again under the lock.
            let st = lock(py, &sub.state);
            self.check_live(py)?;
            let copy = move |dst: &mut [u8]| {
                // SAFETY: [ptr, ptr + len) is the held view (checked live under
                // the state lock, which release and close take), inside the
                // mapping; publishers of a lossy topic may write it
                // concurrently, which the overwrite check below detects.
                dst.copy_from_slice(unsafe { bytes_at(ptr, len) })
            };
            if len >= DETACH_COPY {
                py.detach(|| copy(dst));
            } else {
                copy(dst);
            }
            let overwritten = st.inner.as_ref().is_some_and(|s| s.0.held_view_overwritten());
            drop(st);
            if overwritten {
                return Err(errors::new_err(
                    py,
                    Status::Overwritten,
                    format!(
                        "message {} was overwritten by a publisher while it was copied",
                        self.seq
                    ),
                ));
            }
            Ok(())
        })
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.bytes(py)
    }

    /// Ends the message: the subscriber's ring space is given back. Idempotent.
    /// Raises BufferError while buffers made from it are alive, and
    /// Overwritten if, on a lossy topic, a publisher lapped it while held.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.do_release(py, Release::Explicit)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Releases the message; after an exception in the block, a release that
    /// must wait for exported buffers happens when the last one goes.
    #[pyo3(signature = (exc_type, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyType>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if exc_type.is_none() {
            self.do_release(py, Release::Explicit)?;
        } else if self.view.exports.load(Ordering::SeqCst) > 0 {
            self.view.release_pending.store(true, Ordering::SeqCst);
        } else {
            self.do_release(py, Release::Quiet)?;
        }
        Ok(false)
    }

    /// # Safety
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_live(py)?;
        // SAFETY: `view` is the caller's Py_buffer to fill; [ptr, ptr + len)
        // is the held view inside the subscriber's mapping. It stays mapped
        // and held while the export lives: release and close refuse while
        // exports > 0, and the export keeps this message, hence its
        // subscriber, alive. Read-only: writing would reach other processes.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                this.ptr as *mut c_void,
                this.len as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        this.view.exports.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// # Safety
    /// Called by Python with a view filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, py: Python<'_>, _view: *mut ffi::Py_buffer) {
        let left = self.view.exports.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        if left == 0 && self.view.release_pending.load(Ordering::SeqCst) {
            let _ = self.do_release(py, Release::Quiet);
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.sub)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<aether.Message topic={:?} seq={} len={}{}>",
            self.topic.bind(py).to_string(),
            self.seq,
            self.len,
            if self.released() { " released" } else { "" }
        )
    }
}

impl Drop for Message {
    /// A message dropped without release gives its view back.
    fn drop(&mut self) {
        if self.view.released.load(Ordering::SeqCst) {
            return;
        }
        let sub = self.sub.get();
        let done = Python::try_attach(|py| {
            let mut st = lock(py, &sub.state);
            let _ = self.release_in(&mut st, &sub.counters);
        });
        if done.is_none() {
            let mut st = lock_detached(&sub.state);
            let _ = self.release_in(&mut st, &sub.counters);
        }
    }
}
