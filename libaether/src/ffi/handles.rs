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

/// Most bytes a caller's config struct may claim: far beyond any layout we
/// will grow to, so that a garbage `struct_size` is refused, not read.
const MAX_CONFIG_SIZE: usize = 4096;

/// An older layout of a versioned struct: its `struct_size`, and the bytes
/// its fields cover (less when it ends in padding, which a newer layout may
/// fill with a field: bytes an older program never set).
#[derive(Clone, Copy)]
pub struct Layout {
    pub size: usize,
    pub fields: usize,
}

/// Reads a versioned config struct `T` whose first field is `struct_size`,
/// into a copy of `defaults`. Accepted sizes: one of `older` (a program
/// built against an older header: the bytes of that layout's fields are
/// read, everything after keeps its default), `T`'s own size, or a bigger
/// one (a newer header) whose bytes past `T` are all zero: fields this
/// version does not know, left at their defaults. Anything else is
/// `Invalid`, naming `what`.
///
/// # Safety
/// `cfg` is non-null and points to at least `struct_size` readable bytes.
pub unsafe fn read_config<T: Copy>(cfg: *const T, defaults: T, older: &[Layout], what: &str) -> Result<T> {
    let ours = std::mem::size_of::<T>();
    // SAFETY: every config starts with a size_t struct_size (asserted by callers' layouts).
    let size = unsafe { cfg.cast::<usize>().read_unaligned() };
    let invalid = |why: String| {
        Error::invalid(format!(
            "{what}->struct_size is {size}: {why}; initialise it with {what}_default()"
        ))
    };
    let older_fields = older.iter().find(|l| l.size == size).map(|l| l.fields);
    if size < ours && older_fields.is_none() {
        return Err(invalid(format!(
            "no version of this struct has that size (this library's: {ours})"
        )));
    }
    if size > MAX_CONFIG_SIZE {
        return Err(invalid(format!("larger than any version could be ({MAX_CONFIG_SIZE})")));
    }
    let bytes = cfg.cast::<u8>();
    if size > ours {
        // SAFETY: the caller's struct has `size` readable bytes.
        let extra = unsafe { std::slice::from_raw_parts(bytes.add(ours), size - ours) };
        if let Some(i) = extra.iter().position(|b| *b != 0) {
            return Err(invalid(format!(
                "byte {} is set, in a field this library (struct of {ours} bytes) does not know",
                ours + i
            )));
        }
    }
    let mut out = defaults;
    let n = older_fields.unwrap_or(size.min(ours));
    // SAFETY: `n` bytes are readable at `cfg` (the caller's size) and writable
    // in `out` (at most its size); `T` is plain C data, any bytes are valid.
    unsafe { std::ptr::copy_nonoverlapping(bytes, (&mut out as *mut T).cast::<u8>(), n) };
    Ok(out)
}

/// Writes `value` into a caller's versioned out-struct whose first field
/// is `struct_size` (set by the caller to its `sizeof`): as many bytes as
/// both know (a program built against an older header gets its prefix, a
/// newer one finds its extra fields untouched). `Invalid` when the size is
/// smaller than the first layout's `v1` or beyond any layout.
///
/// # Safety
/// `out` is non-null and points to at least `struct_size` writable bytes.
pub unsafe fn write_versioned<T: Copy>(out: *mut T, value: T, v1: usize, what: &str) -> Result<()> {
    // SAFETY: every versioned struct starts with a size_t struct_size (asserted by callers' layouts).
    let size = unsafe { out.cast::<usize>().read_unaligned() };
    if size < v1 || size > MAX_CONFIG_SIZE {
        return Err(Error::invalid(format!(
            "{what}->struct_size is {size}: set it to sizeof({what}) before the call"
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: `n` bytes are readable in `value` (at most its size) and
    // writable at `out` (at most the caller's size); T is plain C data. The
    // copy rewrites struct_size with ours, so it is put back after.
    unsafe {
        std::ptr::copy_nonoverlapping((&value as *const T).cast::<u8>(), out.cast::<u8>(), n);
        out.cast::<usize>().write_unaligned(size);
    }
    Ok(())
}
