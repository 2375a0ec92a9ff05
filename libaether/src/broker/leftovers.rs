//! Each daemon instance holds an exclusive `flock` on a shm object named
//! `/aether.<instance>` for its whole life; its segments are
//! `/aether.<instance>.<topic>`. A starting daemon removes the objects of
//! every instance whose lock it can take (that daemon is dead: a kill -9
//! leaves its objects behind) and never touches a live instance's.

use crate::error::{Error, Result};
use crate::sys::shm;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The lock object of instance `id`.
pub fn lock_name(id: u64) -> String {
    format!("/aether.{id:016x}")
}

fn try_flock(fd: &OwnedFd) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn open_existing(name: &str) -> Option<OwnedFd> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: shm_open of an existing object by a NUL-terminated name.
    let fd = unsafe { libc::shm_open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    // SAFETY: shm_open returned a fresh descriptor we now own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates and locks this instance's lock object. Held until the returned descriptor closes.
///
/// The object is created and locked under a temporary name and only then
/// renamed into place, so no scanner ever sees it unlocked.
pub fn lock_instance(id: u64) -> Result<OwnedFd> {
    let name = lock_name(id);
    let tmp = format!(
        "/aether-starting.{:016x}.{}",
        crate::sys::random_u64(),
        std::process::id()
    );
    let fd = shm::create(&tmp, 0).map_err(|e| Error::io(&format!("create instance lock {tmp}"), e))?;
    if !try_flock(&fd) {
        let _ = shm::unlink(&tmp);
        return Err(Error::new(
            crate::Status::Exists,
            format!("instance lock {tmp} is held"),
        ));
    }
    if let Err(e) = std::fs::rename(format!("/dev/shm{tmp}"), format!("/dev/shm{name}")) {
        let _ = shm::unlink(&tmp);
        return Err(Error::io(&format!("install instance lock {name}"), e));
    }
    Ok(fd)
}

/// Parses `aether.<16 hex>` or `aether.<16 hex>.<topic>` (names as listed in /dev/shm).
fn instance_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("aether.")?;
    let hex = rest.get(..16)?;
    if !(rest.len() == 16 || rest.as_bytes().get(16) == Some(&b'.')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Removes the shm objects of dead instances other than `own`. Returns what it removed.
pub fn clean_dead_instances(own: u64) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut by_instance: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for name in dir.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        if let Some(id) = instance_of(&name) {
            if id != own {
                by_instance.entry(id).or_default().push(name);
            }
        }
    }
    let mut removed = Vec::new();
    for (id, names) in by_instance {
        // Alive if its lock object exists and is locked. (A daemon creates its
        // lock before any segment, so segments without a lock are orphans.)
        let alive = open_existing(&lock_name(id)).is_some_and(|fd| !try_flock(&fd));
        if alive {
            continue;
        }
        for n in names {
            if shm::unlink(&format!("/{n}")).is_ok() {
                removed.push(n);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(instance_of("aether.00000000000000ff"), Some(255));
        assert_eq!(instance_of("aether.00000000000000ff.topic.a"), Some(255));
        assert_eq!(instance_of("aether.00000000000000ffx"), None);
        assert_eq!(instance_of("aether.zz"), None);
        assert_eq!(instance_of("other"), None);
    }

    #[test]
    fn dead_instances_are_cleaned_and_live_ones_kept() {
        let live = crate::sys::random_u64();
        let dead = crate::sys::random_u64();
        let _lock = lock_instance(live).unwrap();
        let live_seg = format!("{}.t", lock_name(live));
        shm::create(&live_seg, 64).unwrap();
        // A dead instance: its lock object exists but nobody holds it.
        drop(lock_instance(dead).unwrap());
        let dead_seg = format!("{}.t", lock_name(dead));
        shm::create(&dead_seg, 64).unwrap();
        let removed = clean_dead_instances(crate::sys::random_u64());
        assert!(removed.contains(&dead_seg[1..].to_string()), "{removed:?}");
        assert!(removed.contains(&lock_name(dead)[1..].to_string()), "{removed:?}");
        assert!(std::path::Path::new(&format!("/dev/shm{live_seg}")).exists());
        shm::unlink(&live_seg).unwrap();
        shm::unlink(&lock_name(live)).unwrap();
    }
}
