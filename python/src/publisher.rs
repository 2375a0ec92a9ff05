//! `aether.Publisher` and `aether.Loan`.

use crate::errors::{self, invalid};
use crate::{lock, lock_detached};
use aether::Policy;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::PyTraverseError;
use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Copies at least this long run with the interpreter detached (other
/// threads run meanwhile); shorter ones are cheaper than the detach itself.
pub(crate) const DETACH_COPY: usize = 64 * 1024;

/// A buffer exported by any object with the buffer protocol, released on drop.
pub(crate) struct Exported {
    view: Box<ffi::Py_buffer>,
}

impl Exported {
    /// Asks `obj` for a read-only buffer of any layout (strided, with suboffsets).
    pub(crate) fn get(obj: &Bound<'_, PyAny>) -> PyResult<Exported> {
        let mut view = Box::new(ffi::Py_buffer::new());
        // SAFETY: `obj` is a live object and `view` points to a zeroed
        // Py_buffer that stays at this address (boxed) until released in drop.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_FULL_RO) };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Exported { view })
    }

    pub(crate) fn len(&self) -> usize {
        self.view.len.max(0) as usize
    }

    pub(crate) fn is_c_contiguous(&self) -> bool {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer.
        unsafe { ffi::PyBuffer_IsContiguous(&*self.view, b'C' as c_char) != 0 }
    }

    /// The bytes, when the buffer is C-contiguous (`None` otherwise).
    /// The slice is valid while `self` lives.
    pub(crate) fn contiguous(&self) -> Option<(usize, usize)> {
        self.is_c_contiguous().then(|| (self.view.buf as usize, self.len()))
    }

    /// Gathers the (non-contiguous) bytes into `dst`, which has `len()` bytes.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `self.len()` bytes.
    pub(crate) unsafe fn gather_into(&self, py: Python<'_>, dst: *mut u8) -> PyResult<()> {
        // SAFETY: the view is valid (GetBuffer); the caller vouches for `dst`.
        let rc =
            unsafe { ffi::PyBuffer_ToContiguous(dst.cast::<c_void>(), &*self.view, self.view.len, b'C' as c_char) };
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(())
    }
}

impl Drop for Exported {
    fn drop(&mut self) {
        // Only ever dropped attached (it lives in frames that hold a `Python`).
        Python::attach(|_| {
            // SAFETY: the view was filled by a successful PyObject_GetBuffer
            // and is released exactly once, here.
            unsafe { ffi::PyBuffer_Release(&mut *self.view) }
        });
    }
}

/// Bytes `[ptr, ptr + len)` as a slice (empty when `len == 0`, whatever `ptr`).
///
/// # Safety
/// When `len > 0`, the range must be readable for the slice's lifetime and
/// not be written through a Rust reference meanwhile.
pub(crate) unsafe fn bytes_at<'a>(ptr: usize, len: usize) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: per the caller.
    unsafe { std::slice::from_raw_parts(ptr as *const u8, len) }
}

/// The outstanding loan of a publisher.
struct LoanState {
    token: u64,
    ptr: usize,
    len: usize,
    /// Buffers exported from the loan (memoryviews, numpy arrays) still alive.
    exports: usize,
    /// Abort as soon as `exports` drops to 0 (set when the loan had to end
    /// while views of it were alive).
    abort_pending: bool,
}

struct State {
    inner: Option<aether::Publisher>,
    loan: Option<LoanState>,
    next_token: u64,
}

impl State {
    fn publisher(&mut self, py: Python<'_>) -> PyResult<&mut aether::Publisher> {
        self.inner
            .as_mut()
            .ok_or_else(|| invalid(py, "the publisher is closed"))
    }

    /// A clear error when a loan is outstanding.
    fn no_loan(&self, py: Python<'_>) -> PyResult<()> {
        match &self.loan {
            None => Ok(()),
            Some(l) if l.abort_pending => Err(invalid(
                py,
                format!(
                    "a loan of {} bytes is outstanding: it is aborted once the {} buffer(s) \
                     exported from it (memoryview, numpy array, ...) are released",
                    l.len, l.exports
                ),
            )),
            Some(l) => Err(invalid(
                py,
                format!("a loan of {} bytes is outstanding: commit or abort it first", l.len),
            )),
        }
    }
}

/// Publishes to one topic.
///
/// Publisher(topic, *, create=True, policy="lossy", ring_size=None,
///           max_message=None, max_subscribers=None, socket=None, timeout=5.0)
///
/// `create`: create the topic if missing with the given settings (an existing
/// topic keeps its own). `timeout`: how long a publish on a reliable topic
/// waits for the slowest subscriber (seconds; None: forever).
#[pyclass(module = "aether", name = "Publisher", frozen, weakref)]
pub struct Publisher {
    state: Mutex<State>,
    topic: String,
    policy: Policy,
    max_message: usize,
}

#[pymethods]
impl Publisher {
    #[new]
    #[pyo3(signature = (topic, *, create = true, policy = "lossy", ring_size = None, max_message = None, max_subscribers = None, socket = None, timeout = Some(5.0)))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        topic: &str,
        create: bool,
        policy: &str,
        ring_size: Option<u64>,
        max_message: Option<u64>,
        max_subscribers: Option<u32>,
        socket: Option<PathBuf>,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let params = crate::topic_params(py, policy, ring_size, max_message, max_subscribers)?;
        let timeout = match timeout {
            None => None,
            Some(t) => Some(
                Duration::try_from_secs_f64(t)
                    .map_err(|_| invalid(py, format!("timeout must be a number of seconds >= 0 or None, not {t}")))?,
            ),
        };
        let client = crate::connect(py, socket)?;
        if create {
            crate::create(py, &client, topic, &params, true)?;
        }
        let mut inner = py.detach(|| client.publisher(topic)).map_err(errors::to_py)?;
        inner.set_timeout(timeout);
        Ok(Publisher {
            policy: inner.policy(),
            max_message: inner.max_message(),
            topic: topic.to_owned(),
            state: Mutex::new(State {
                inner: Some(inner),
                loan: None,
                next_token: 1,
            }),
        })
    }

    /// publish(data) -> int
    ///
    /// Publishes the bytes of `data` (any object with the buffer protocol:
    /// bytes, bytearray, memoryview, array, numpy array, ...) as one message,
    /// copied once, straight into the ring. Returns its sequence number.
    fn publish(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u64> {
        let buf = Exported::get(data)?;
        let mut st = lock(py, &self.state);
        st.no_loan(py)?;
        let reliable = self.policy == Policy::Reliable;
        let p = st.publisher(py)?;
        let r = match buf.contiguous() {
            Some((ptr, len)) => {
                let run = move |p: &mut aether::Publisher| {
                    // SAFETY: `buf` (alive for this whole call) exports these
                    // bytes; an exporter keeps them valid until released.
                    p.publish(unsafe { bytes_at(ptr, len) })
                };
                // A reliable publish may wait for subscribers: never attached.
                if reliable || len >= DETACH_COPY {
                    py.detach(|| run(p))
                } else {
                    run(p)
                }
            }
            None => {
                // Strided: gather the bytes straight into a loan.
                let len = buf.len();
                let dst = if reliable {
                    py.detach(|| p.loan(len).map(|s| s.as_mut_ptr() as usize))
                } else {
                    p.loan(len).map(|s| s.as_mut_ptr() as usize)
                };
                let dst = dst.map_err(errors::to_py)?;
                // SAFETY: the loan gives `len` writable bytes at `dst` until
                // commit or abort, and `p` is not used meanwhile.
                if let Err(e) = unsafe { buf.gather_into(py, dst as *mut u8) } {
                    let _ = p.abort();
                    return Err(e);
                }
                p.commit(len)
            }
        };
        r.map_err(errors::to_py)
    }

    /// loan(size) -> Loan
    ///
    /// Reserves `size` bytes in the ring to write a message in place:
    ///
    ///     with pub.loan(n) as buf:     # a writable memoryview into the ring
    ///         buf[:] = ...             # committed (published) at the end of the block,
    ///                                  # aborted (never delivered) on an exception
    ///
    /// Call `loan.commit(k)` inside the block to publish only the first k bytes.
    /// Buffers made from `buf` (numpy arrays, ...) must be gone by the end of
    /// the block: a loan is not published while views of it are alive.
    fn loan(slf: &Bound<'_, Self>, size: usize) -> PyResult<Loan> {
        let py = slf.py();
        let this = slf.get();
        let mut st = lock(py, &this.state);
        st.no_loan(py)?;
        let reliable = this.policy == Policy::Reliable;
        let p = st.publisher(py)?;
        let r = if reliable {
            py.detach(|| p.loan(size).map(|s| s.as_mut_ptr() as usize))
        } else {
            p.loan(size).map(|s| s.as_mut_ptr() as usize)
        };
        let ptr = r.map_err(errors::to_py)?;
        let token = st.next_token;
        st.next_token += 1;
        st.loan = Some(LoanState {
            token,
            ptr,
            len: size,
            exports: 0,
            abort_pending: false,
        });
        Ok(Loan {
            publisher: slf.clone().unbind(),
            token,
            size,
            view: Mutex::new(None),
            seq: Mutex::new(None),
        })
    }

    /// reopen() -> None
    ///
    /// Carries the publisher on after its daemon died (calls raise
    /// BrokerUnavailable) or its topic was deleted (NotFound): connects again
    /// to the same socket, makes the topic again with the same settings if it
    /// is missing, and takes a new slot. An outstanding loan is given up
    /// (BufferError while buffers exported from it are alive). The library
    /// never does this by itself. On error the publisher is left as it was.
    fn reopen(&self, py: Python<'_>) -> PyResult<()> {
        let mut st = lock(py, &self.state);
        if let Some(l) = &st.loan {
            if l.exports > 0 {
                return Err(PyBufferError::new_err(format!(
                    "cannot reopen the publisher: {} buffer(s) exported from its loan are alive",
                    l.exports
                )));
            }
        }
        st.loan = None;
        let p = st.publisher(py)?;
        py.detach(|| p.reopen()).map_err(errors::to_py)
    }

    /// (base address, length) of this publisher's (writable) mapping of the
    /// segment: for tests and diagnostics.
    fn mapping_range(&self, py: Python<'_>) -> PyResult<(usize, usize)> {
        let mut st = lock(py, &self.state);
        Ok(st.publisher(py)?.mapping_range())
    }

    /// Closes the publisher (aborting an outstanding loan). Idempotent.
    /// Raises BufferError while buffers exported from a loan are alive.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = {
            let mut st = lock(py, &self.state);
            if let Some(l) = &st.loan {
                if l.exports > 0 {
                    return Err(PyBufferError::new_err(format!(
                        "cannot close the publisher: {} buffer(s) exported from its loan are alive",
                        l.exports
                    )));
                }
            }
            st.loan = None;
            st.inner.take()
        };
        // Dropping the core publisher aborts its loan, if any, and asks the
        // daemon to free its slot: a round trip, made detached like every
        // control request.
        if let Some(inner) = inner {
            py.detach(move || drop(inner));
        }
        Ok(())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        lock(py, &self.state).inner.is_none()
    }

    #[getter]
    fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic's policy: "lossy" or "reliable".
    #[getter]
    fn policy(&self) -> &'static str {
        self.policy.name()
    }

    /// The largest message the topic takes, in bytes.
    #[getter]
    fn max_message(&self) -> usize {
        self.max_message
    }

    /// Where messages of 32 KiB and up go in the ring on a reliable topic:
    /// "caught-up" (the default unless AETHER_LARGE_LAPS says otherwise: a
    /// lap is cut short past its first 256 KiB or four messages, so that
    /// the publisher writes memory still in its cache, only when every
    /// subscriber has read everything; the ring still holds its size of
    /// messages), "whole" (every lap whole), "short" (every lap cut short:
    /// a subscriber that stops reading leaves room for only a few; code
    /// that publishes a batch before reading it may wait for itself) or
    /// "measured" (short or whole, whichever the publisher measures
    /// faster). Lossy topics always use whole laps. Kept across reopen().
    #[getter]
    fn large_laps(&self, py: Python<'_>) -> PyResult<&'static str> {
        let mut st = lock(py, &self.state);
        Ok(st.publisher(py)?.large_laps().name())
    }

    #[setter]
    fn set_large_laps(&self, py: Python<'_>, laps: &str) -> PyResult<()> {
        let laps = aether::LargeLaps::from_name(laps).ok_or_else(|| {
            errors::invalid(
                py,
                format!("large_laps must be 'caught-up', 'whole', 'short' or 'measured', not {laps:?}"),
            )
        })?;
        let mut st = lock(py, &self.state);
        st.publisher(py)?.set_large_laps(laps);
        Ok(())
    }

    /// Whether messages carry the time they were published (True, the
    /// default) or 0 (False): reading the clock is about a third of a small
    /// publish. A subscriber starting at a time takes a message without one
    /// by those before it (passed over before the first stamped at or after
    /// the time, delivered after). Kept across reopen().
    #[getter]
    fn timestamps(&self, py: Python<'_>) -> PyResult<bool> {
        let mut st = lock(py, &self.state);
        Ok(st.publisher(py)?.timestamps())
    }

    #[setter]
    fn set_timestamps(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        let mut st = lock(py, &self.state);
        st.publisher(py)?.set_timestamps(on);
        Ok(())
    }

    /// Whether a loan is outstanding.
    #[getter]
    fn has_loan(&self, py: Python<'_>) -> bool {
        lock(py, &self.state).loan.is_some()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<aether.Publisher topic={:?} policy={}{}>",
            self.topic,
            self.policy.name(),
            if self.closed(py) { " closed" } else { "" }
        )
    }
}

/// Space loaned in the ring. A context manager yielding a writable memoryview
/// (the loan itself also has the buffer protocol); committed at the end of a
/// `with` block, aborted on an exception. Made by `Publisher.loan(size)`.
#[pyclass(module = "aether", name = "Loan", frozen)]
pub struct Loan {
    publisher: Py<Publisher>,
    token: u64,
    size: usize,
    /// The memoryview handed out by `__enter__`, released when the loan ends.
    view: Mutex<Option<Py<PyAny>>>,
    seq: Mutex<Option<u64>>,
}

enum End {
    Commit(usize),
    Abort,
}

impl Loan {
    /// Releases the memoryview from `__enter__` (it becomes unusable). Fails
    /// quietly when buffers made from it are alive; the export count says so.
    fn release_view(&self, py: Python<'_>) {
        let view = lock(py, &self.view).take();
        if let Some(v) = view {
            if let Err(e) = v.bind(py).call_method0("release") {
                drop(e); // BufferError: exports of the view remain; counted below.
            }
        }
    }

    /// Commits or aborts. With buffers still exported: a commit fails with
    /// BufferError (leaving the loan as it is unless `defer_on_busy`), an abort
    /// is deferred until the last one is released.
    fn end(&self, py: Python<'_>, how: End, defer_on_busy: bool) -> PyResult<Option<u64>> {
        self.release_view(py);
        let publ = self.publisher.get();
        let mut st = lock(py, &publ.state);
        let st = &mut *st;
        let Some(l) = st.loan.as_mut().filter(|l| l.token == self.token) else {
            return match how {
                End::Abort => Ok(None),
                End::Commit(_) => Err(invalid(py, "this loan was already committed or aborted")),
            };
        };
        if l.abort_pending {
            return match how {
                End::Abort => Ok(None),
                End::Commit(_) => Err(invalid(py, "this loan is being aborted")),
            };
        }
        if let End::Commit(n) = how {
            if n > self.size {
                return Err(errors::new_err(
                    py,
                    aether::Status::TooLarge,
                    format!("cannot commit {n} bytes of a loan of {}", self.size),
                ));
            }
        }
        if l.exports > 0 {
            let n = l.exports;
            return match how {
                End::Abort => {
                    l.abort_pending = true;
                    Ok(None)
                }
                End::Commit(_) => {
                    if defer_on_busy {
                        l.abort_pending = true;
                    }
                    Err(PyBufferError::new_err(format!(
                        "the loan was not published: {n} buffer(s) made from it (numpy array, \
                         memoryview slice, ...) are still alive{}",
                        if defer_on_busy {
                            "; it is aborted once they are released (delete them before the end of the with block)"
                        } else {
                            "; delete them, then commit again"
                        }
                    )))
                }
            };
        }
        st.loan = None;
        let p = st.publisher(py)?;
        match how {
            End::Commit(n) => {
                let seq = p.commit(n).map_err(errors::to_py)?;
                *lock(py, &self.seq) = Some(seq);
                Ok(Some(seq))
            }
            End::Abort => {
                p.abort().map_err(errors::to_py)?;
                Ok(None)
            }
        }
    }
}

#[pymethods]
impl Loan {
    /// commit(size=None) -> int
    ///
    /// Publishes the first `size` bytes (default: all) and returns the
    /// message's sequence number. Buffers of the loan become unusable.
    #[pyo3(signature = (size = None))]
    fn commit(&self, py: Python<'_>, size: Option<usize>) -> PyResult<u64> {
        let n = size.unwrap_or(self.size);
        Ok(self.end(py, End::Commit(n), false)?.unwrap_or_default())
    }

    /// Gives the space back unpublished: subscribers never see it. Idempotent.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        self.end(py, End::Abort, false).map(drop)
    }

    /// The loaned size in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    /// The sequence number once committed, else None.
    #[getter]
    fn seq(&self, py: Python<'_>) -> Option<u64> {
        *lock(py, &self.seq)
    }

    /// Whether the loan is still outstanding (neither committed nor aborted).
    #[getter]
    fn active(&self, py: Python<'_>) -> bool {
        let publ = self.publisher.get();
        let st = lock(py, &publ.state);
        st.loan
            .as_ref()
            .is_some_and(|l| l.token == self.token && !l.abort_pending)
    }

    fn __len__(&self) -> usize {
        self.size
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let mv = py.import("builtins")?.getattr("memoryview")?.call1((slf,))?.unbind();
        let old = lock(py, &this.view).replace(mv.clone_ref(py));
        drop(old);
        Ok(mv)
    }

    #[pyo3(signature = (exc_type, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyType>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        match exc_type {
            None => {
                let active = {
                    let st = lock(py, &self.publisher.get().state);
                    st.loan.as_ref().is_some_and(|l| l.token == self.token)
                };
                if active {
                    self.end(py, End::Commit(self.size), true)?;
                } else {
                    self.release_view(py);
                }
            }
            Some(_) => {
                self.end(py, End::Abort, true)?;
            }
        }
        Ok(false)
    }

    /// # Safety
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut st = lock(py, &this.publisher.get().state);
        let l = match st.loan.as_mut() {
            Some(l) if l.token == this.token && !l.abort_pending => l,
            _ => {
                return Err(invalid(
                    py,
                    "this loan was committed or aborted: its memory is no longer yours",
                ))
            }
        };
        // SAFETY: `view` is the caller's Py_buffer to fill. [ptr, ptr + len)
        // is the loaned payload: mapped and writable by us while the loan is
        // outstanding, which lasts until this export is released (commit and
        // abort wait for the export count to drop to zero; close refuses).
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                l.ptr as *mut c_void,
                l.len as ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        l.exports += 1;
        Ok(())
    }

    /// # Safety
    /// Called by Python with a view filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, py: Python<'_>, _view: *mut ffi::Py_buffer) {
        let publ = self.publisher.get();
        let mut st = lock(py, &publ.state);
        let st = &mut *st;
        let Some(l) = st.loan.as_mut().filter(|l| l.token == self.token) else {
            return;
        };
        l.exports = l.exports.saturating_sub(1);
        if l.exports == 0 && l.abort_pending {
            st.loan = None;
            if let Some(p) = st.inner.as_mut() {
                let _ = p.abort();
            }
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(v) = self.view.try_lock() {
            if let Some(v) = v.as_ref() {
                visit.call(v)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let v = self.view.try_lock().ok().and_then(|mut v| v.take());
        drop(v);
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = match self.seq(py) {
            Some(s) => format!("committed seq={s}"),
            None if self.active(py) => "active".to_string(),
            None => "ended".to_string(),
        };
        format!("<aether.Loan size={} {state}>", self.size)
    }
}

impl Drop for Loan {
    /// A loan dropped while still outstanding (never entered, or the program
    /// lost it) is aborted so that the publisher can go on.
    fn drop(&mut self) {
        let publ = self.publisher.get();
        let end = |st: &mut State| {
            if st
                .loan
                .as_ref()
                .is_some_and(|l| l.token == self.token && l.exports == 0)
            {
                st.loan = None;
                if let Some(p) = st.inner.as_mut() {
                    let _ = p.abort();
                }
            }
        };
        if Python::try_attach(|py| end(&mut lock(py, &publ.state))).is_none() {
            end(&mut lock_detached(&publ.state));
        }
    }
}
