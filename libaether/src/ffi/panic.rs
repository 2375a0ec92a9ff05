//! The panic boundary: no unwind crosses into C.

use super::error::{fail, set_last_error};
use crate::error::{Error, Result, Status};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs an exported function's body, turning errors into status codes (and
/// the thread's last error) and a panic into `AETHER_E_INTERNAL`.
pub fn guard(f: impl FnOnce() -> Result<()>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => fail(&e),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (panic in libaether): {what}"));
            Status::Internal as i32
        }
    }
}

/// Like [`guard`] for functions that return no status: a panic is swallowed.
pub fn guard_void(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

pub fn null_arg(name: &str) -> Error {
    Error::invalid(format!("{name} must not be NULL"))
}
