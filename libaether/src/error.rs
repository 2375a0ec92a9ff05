//! The one error type of the Rust API, and the status codes it maps to in C.

use std::fmt;
use std::io;

/// Status codes shared by the Rust, C and Python APIs and by the control protocol.
/// Values are part of the ABI: never renumber.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Ok = 0,
    Invalid = -1,
    Timeout = -2,
    NotFound = -3,
    Exists = -4,
    Permission = -5,
    TooLarge = -6,
    Unavailable = -7,
    Shutdown = -8,
    Corrupt = -9,
    Overwritten = -10,
    Protocol = -11,
    Limit = -12,
    NoMem = -13,
    Io = -14,
    Internal = -15,
}

impl Status {
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
    pub status: Status,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }
    pub fn invalid(m: impl Into<String>) -> Error {
        Error::new(Status::Invalid, m)
    }
    pub fn corrupt(m: impl Into<String>) -> Error {
        Error::new(Status::Corrupt, m)
    }
    pub fn protocol(m: impl Into<String>) -> Error {
        Error::new(Status::Protocol, m)
    }
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
