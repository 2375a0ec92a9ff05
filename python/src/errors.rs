//! The exception hierarchy: `aether.Error` (base, with `.status`) and one
//! subclass per status code of the core, some of which also derive from the
//! matching builtin (`PermissionDenied` is a `PermissionError`, ...).

use aether::Status;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// Python name, builtin extra bases, docstring, for each status.
struct Spec {
    status: Status,
    name: &'static str,
    builtins: &'static [&'static str],
    doc: &'static str,
}

const SPECS: &[Spec] = &[
    Spec {
        status: Status::Invalid,
        name: "InvalidArgument",
        builtins: &["ValueError"],
        doc: "An argument was rejected (bad topic name, bad size, object closed or released, ...).",
    },
    Spec {
        status: Status::Timeout,
        name: "Timeout",
        builtins: &["TimeoutError"],
        doc: "A wait ran out of time (a reliable publish, a control request).",
    },
    Spec {
        status: Status::NotFound,
        name: "NotFound",
        builtins: &[],
        doc: "The topic does not exist.",
    },
    Spec {
        status: Status::Exists,
        name: "Exists",
        builtins: &[],
        doc: "The topic already exists.",
    },
    Spec {
        status: Status::Permission,
        name: "PermissionDenied",
        builtins: &["PermissionError"],
        doc: "The broker or the operating system refused access.",
    },
    Spec {
        status: Status::TooLarge,
        name: "MessageTooLarge",
        builtins: &[],
        doc: "The message is larger than the topic's max_message (or the loan).",
    },
    Spec {
        status: Status::Unavailable,
        name: "BrokerUnavailable",
        builtins: &["ConnectionError"],
        doc: "No broker answers at the socket (and none could be started).",
    },
    Spec {
        status: Status::Shutdown,
        name: "BrokerShutdown",
        builtins: &[],
        doc: "The broker is shutting down.",
    },
    Spec {
        status: Status::Corrupt,
        name: "Corrupt",
        builtins: &[],
        doc: "The shared-memory segment holds invalid data; the subscriber skipped past it.",
    },
    Spec {
        status: Status::Overwritten,
        name: "Overwritten",
        builtins: &[],
        doc: "On a lossy topic, a publisher lapped a message while it was held; it counts as lost.",
    },
    Spec {
        status: Status::Protocol,
        name: "ProtocolError",
        builtins: &[],
        doc: "The broker sent or received a malformed control message.",
    },
    Spec {
        status: Status::Limit,
        name: "LimitReached",
        builtins: &[],
        doc: "A broker limit was reached (topics, subscribers, ...).",
    },
    Spec {
        status: Status::NoMem,
        name: "OutOfMemory",
        builtins: &[],
        doc: "Memory (or shared memory) could not be allocated.",
    },
    Spec {
        status: Status::Io,
        name: "IoError",
        builtins: &["OSError"],
        doc: "An operating-system call failed.",
    },
    Spec {
        status: Status::Internal,
        name: "InternalError",
        builtins: &[],
        doc: "A bug in aether: please report it.",
    },
];

struct Classes {
    base: Py<PyType>,
    by_status: Vec<(Status, Py<PyType>)>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn make_class<'py>(
    py: Python<'py>,
    name: &str,
    bases: Bound<'py, PyTuple>,
    doc: &str,
    status: Option<Status>,
) -> PyResult<Bound<'py, PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "aether")?;
    ns.set_item("__doc__", doc)?;
    match status {
        Some(s) => {
            ns.set_item("status", s as i32)?;
            ns.set_item("status_name", format!("{s:?}"))?;
        }
        None => {
            ns.set_item("status", py.None())?;
            ns.set_item("status_name", py.None())?;
        }
    }
    let ty = py.import("builtins")?.getattr("type")?;
    Ok(ty.call1((name, bases, ns))?.cast_into::<PyType>()?)
}

fn build(py: Python<'_>) -> PyResult<Classes> {
    let builtins = py.import("builtins")?;
    let exception = builtins.getattr("Exception")?;
    let base = make_class(
        py,
        "Error",
        PyTuple::new(py, [exception])?,
        "Base class of every aether error. `status` is the core's status code \
         (an int, the same as the C API's AETHER_E_* values).",
        None,
    )?;
    let mut by_status = Vec::with_capacity(SPECS.len());
    for spec in SPECS {
        let mut bases = vec![base.clone().into_any()];
        for b in spec.builtins {
            bases.push(builtins.getattr(*b)?);
        }
        let cls = make_class(py, spec.name, PyTuple::new(py, bases)?, spec.doc, Some(spec.status))?;
        by_status.push((spec.status, cls.unbind()));
    }
    Ok(Classes {
        base: base.unbind(),
        by_status,
    })
}

/// Creates the classes (once per process) and adds them to `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let classes = CLASSES.get_or_try_init(py, || build(py))?;
    m.add("Error", classes.base.bind(py))?;
    for (i, spec) in SPECS.iter().enumerate() {
        m.add(spec.name, classes.by_status[i].1.bind(py))?;
    }
    Ok(())
}

/// The class for `status` (the base class for `Ok`, which is never an error).
fn class_for(py: Python<'_>, status: Status) -> Option<Bound<'_, PyType>> {
    let classes = CLASSES.get(py)?;
    let cls = classes
        .by_status
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, c)| c)
        .unwrap_or(&classes.base);
    Some(cls.bind(py).clone())
}

/// Converts a core error into the matching Python exception. The message is
/// the core's, followed by the status in words.
pub fn to_py(e: aether::Error) -> PyErr {
    Python::attach(|py| new_err(py, e.status, e.to_string()))
}

/// An `aether` exception of the class for `status` with `message`.
pub fn new_err(py: Python<'_>, status: Status, message: impl Into<String>) -> PyErr {
    let message = message.into();
    match class_for(py, status) {
        Some(cls) => PyErr::from_type(cls, (message,)),
        None => PyRuntimeError::new_err(message),
    }
}

/// `aether.InvalidArgument` (a `ValueError`): wrong argument, closed object, released message.
pub fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    new_err(py, Status::Invalid, message)
}
