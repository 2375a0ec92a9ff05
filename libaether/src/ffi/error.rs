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

// The C codes and the Rust ones are the same numbers, every one of them.
const _: () = {
    use aether_status::*;
    let pairs = [
        (AETHER_OK, Status::Ok),
        (AETHER_E_INVALID, Status::Invalid),
        (AETHER_E_TIMEOUT, Status::Timeout),
        (AETHER_E_NOT_FOUND, Status::NotFound),
        (AETHER_E_EXISTS, Status::Exists),
        (AETHER_E_PERMISSION, Status::Permission),
        (AETHER_E_TOO_LARGE, Status::TooLarge),
        (AETHER_E_UNAVAILABLE, Status::Unavailable),
        (AETHER_E_SHUTDOWN, Status::Shutdown),
        (AETHER_E_CORRUPT, Status::Corrupt),
        (AETHER_E_OVERWRITTEN, Status::Overwritten),
        (AETHER_E_PROTOCOL, Status::Protocol),
        (AETHER_E_LIMIT, Status::Limit),
        (AETHER_E_NOMEM, Status::NoMem),
        (AETHER_E_IO, Status::Io),
        (AETHER_E_INTERNAL, Status::Internal),
    ];
    let mut i = 0;
    while i < pairs.len() {
        assert!(pairs[i].0 as i32 == pairs[i].1 as i32);
        i += 1;
    }
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

pub fn strerror(status: i32) -> *const c_char {
    Status::from_code(status)
        .map_or(c"unknown status code", Status::describe_c)
        .as_ptr()
}
