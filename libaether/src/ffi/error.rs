//! C status codes and the thread-local last error.

use crate::error::{Error, Status};
use std::cell::RefCell;
use std::ffi::{c_char, CString};

/// Status codes returned by every `int`-returning call: `AETHER_OK` (0) or negative.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aether_status {
    AETHER_OK = 0,
    AETHER_E_INVALID = -1,
    AETHER_E_TIMEOUT = -2,
    AETHER_E_NOT_FOUND = -3,
    AETHER_E_EXISTS = -4,
    AETHER_E_PERMISSION = -5,
    AETHER_E_TOO_LARGE = -6,
    AETHER_E_UNAVAILABLE = -7,
    AETHER_E_SHUTDOWN = -8,
    AETHER_E_CORRUPT = -9,
    AETHER_E_OVERWRITTEN = -10,
    AETHER_E_PROTOCOL = -11,
    AETHER_E_LIMIT = -12,
    AETHER_E_NOMEM = -13,
    AETHER_E_IO = -14,
    AETHER_E_INTERNAL = -15,
}

// The C codes and the Rust ones are the same numbers.
const _: () = {
    assert!(aether_status::AETHER_E_INVALID as i32 == Status::Invalid as i32);
    assert!(aether_status::AETHER_E_INTERNAL as i32 == Status::Internal as i32);
    assert!(aether_status::AETHER_E_IO as i32 == Status::Io as i32);
};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "?")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Records `e` as this thread's last error and returns its status code.
pub fn fail(e: &Error) -> i32 {
    set_last_error(&e.to_string());
    e.status as i32
}

pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

static STATUS_TEXT: [&std::ffi::CStr; 16] = [
    c"success",
    c"invalid argument",
    c"timed out",
    c"not found",
    c"already exists",
    c"permission denied",
    c"too large",
    c"broker unavailable",
    c"broker shutting down",
    c"corrupt shared memory",
    c"message overwritten",
    c"protocol error",
    c"limit reached",
    c"out of memory",
    c"I/O error",
    c"internal error",
];

pub fn strerror(status: i32) -> *const c_char {
    match status {
        -15..=0 => STATUS_TEXT[(-status) as usize].as_ptr(),
        _ => c"unknown status code".as_ptr(),
    }
}
