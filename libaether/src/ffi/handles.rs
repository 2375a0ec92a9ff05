//! Pointer and ownership helpers for the C boundary.

use super::panic::null_arg;
use crate::error::{Error, Result};
use std::ffi::{c_char, CStr};

/// Borrows `*p` mutably, or fails with `Invalid` naming the argument.
///
/// # Safety
/// `p` is NULL or a live handle of type `T` that no other thread uses now.
pub unsafe fn handle_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T> {
    // SAFETY: forwarded from the caller's contract.
    unsafe { p.as_mut() }.ok_or_else(|| null_arg(name))
}

/// Borrows `*p`, or fails with `Invalid`.
///
/// # Safety
/// `p` is NULL or a live handle of type `T`.
pub unsafe fn handle_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: forwarded from the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| null_arg(name))
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(null_arg(name));
    }
    // SAFETY: non-null and NUL-terminated per the contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::invalid(format!("{name} is not valid UTF-8")))
}

/// Writes `v` to the out-parameter `out` (checked non-null by the caller first).
///
/// # Safety
/// `out` is a valid, writable pointer.
pub unsafe fn write_out<T>(out: *mut T, v: T) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { out.write(v) }
}

/// Moves `v` to the heap and returns the pointer C will own.
pub fn into_handle<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// Takes back and drops a handle made by [`into_handle`]. NULL is ignored.
///
/// # Safety
/// `p` is NULL or came from `into_handle::<T>` and is not used afterwards.
pub unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: forwarded from the caller's contract.
        drop(unsafe { Box::from_raw(p) });
    }
}
