//! The one error type of the Rust API, and the status codes it maps to in C.

use std::fmt;
use std::io;

/// Status codes shared by the Rust, C and Python APIs and by the control protocol.
/// Values are part of the ABI: never renumber.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success (C only: the Rust API returns `Ok(..)`).
    Ok = 0,
    /// A bad argument: a bad topic name, a NULL pointer, a call out of order, a handle used after fork.
    Invalid = -1,
    /// Nothing within the timeout: no message to receive, no space to publish into.
    Timeout = -2,
    /// No such topic (or it was deleted).
    NotFound = -3,
    /// The topic exists already (`create_topic`).
    Exists = -4,
    /// The broker's access rules refuse this to this user.
    Permission = -5,
    /// A message over the topic's `max_message`, or larger than the buffer given.
    TooLarge = -6,
    /// No broker answers: not running, died, or kicked this client.
    Unavailable = -7,
    /// The broker is draining or the topic is closing.
    Shutdown = -8,
    /// Shared memory or a reply failed its checks (impossible values: someone wrote them).
    Corrupt = -9,
    /// On a lossy topic, a publisher overwrote the message being read.
    Overwritten = -10,
    /// A malformed or unexpected message on the control socket.
    Protocol = -11,
    /// A limit or quota was reached (topics, subscribers, publishers, slots, queues).
    Limit = -12,
    /// Out of memory (shared or private).
    NoMem = -13,
    /// A system call failed (the message says which, and the OS error).
    Io = -14,
    /// A bug in Aether (a panic caught at the C boundary, a broken invariant).
    Internal = -15,
}

impl Status {
    /// The status of a C/protocol code; `None` for a code no status has.
    pub fn from_code(code: i32) -> Option<Status> {
        use Status::*;
        Some(match code {
            0 => Ok,
            -1 => Invalid,
            -2 => Timeout,
            -3 => NotFound,
            -4 => Exists,
            -5 => Permission,
            -6 => TooLarge,
            -7 => Unavailable,
            -8 => Shutdown,
            -9 => Corrupt,
            -10 => Overwritten,
            -11 => Protocol,
            -12 => Limit,
            -13 => NoMem,
            -14 => Io,
            -15 => Internal,
            _ => return None,
        })
    }

    /// A short description ("timed out"), as `aether_strerror` gives.
    pub fn describe(self) -> &'static str {
        self.describe_c().to_str().expect("status texts are ASCII")
    }

    /// [`describe`](Self::describe) as a C string (`aether_strerror`).
    pub fn describe_c(self) -> &'static std::ffi::CStr {
        use Status::*;
        match self {
            Ok => c"success",
            Invalid => c"invalid argument",
            Timeout => c"timed out",
            NotFound => c"not found",
            Exists => c"already exists",
            Permission => c"permission denied",
            TooLarge => c"too large",
            Unavailable => c"broker unavailable",
            Shutdown => c"broker shutting down",
            Corrupt => c"corrupt shared memory",
            Overwritten => c"message overwritten",
            Protocol => c"protocol error",
            Limit => c"limit reached",
            NoMem => c"out of memory",
            Io => c"I/O error",
            Internal => c"internal error",
        }
    }
}

/// An error: a status code plus a human-readable message saying what and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure (the code C and Python see).
    pub status: Status,
    /// What failed and why, for a person.
    pub message: String,
}

/// The result of every fallible call of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `status` saying `message`.
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }
    #[doc(hidden)]
    pub fn invalid(m: impl Into<String>) -> Error {
        Error::new(Status::Invalid, m)
    }
    #[doc(hidden)]
    pub fn corrupt(m: impl Into<String>) -> Error {
        Error::new(Status::Corrupt, m)
    }
    #[doc(hidden)]
    pub fn protocol(m: impl Into<String>) -> Error {
        Error::new(Status::Protocol, m)
    }
    /// An I/O error with what was being done (`context`), its status from the error's kind.
    pub fn io(context: &str, e: io::Error) -> Error {
        let status = match e.kind() {
            io::ErrorKind::PermissionDenied => Status::Permission,
            io::ErrorKind::OutOfMemory => Status::NoMem,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Status::Timeout,
            _ if e.raw_os_error() == Some(libc::ENOMEM) => Status::NoMem,
            _ => Status::Io,
        };
        Error::new(status, format!("{context}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status.describe())
    }
}

impl std::error::Error for Error {}
