//! CPU affinity of the calling thread (sched_setaffinity through `nix`),
//! checked against the CPUs this process may use, so that a bad list is a
//! clear error that changes nothing.

use crate::error::{Error, Result};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs the calling thread may run on now.
pub fn current() -> Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(|e| Error::io("sched_getaffinity", e.into()))?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// The CPUs this process was started with (its main thread's, at the first
/// call): what any of its threads may be pinned to.
pub fn available() -> Result<&'static [usize]> {
    static AVAILABLE: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    if let Some(v) = AVAILABLE.get() {
        return Ok(v);
    }
    let pid = std::process::id() as i32;
    let set = sched_getaffinity(Pid::from_raw(pid)).map_err(|e| Error::io("sched_getaffinity", e.into()))?;
    let v = (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect();
    Ok(AVAILABLE.get_or_init(|| v))
}

/// Checks `cpus` against the CPUs the process may use: `Invalid` (naming them) if not.
pub fn check(cpus: &[usize]) -> Result<()> {
    if cpus.is_empty() {
        return Err(Error::invalid("an empty CPU list"));
    }
    let ok = available()?;
    if let Some(c) = cpus.iter().find(|c| !ok.contains(c)) {
        return Err(Error::invalid(format!(
            "CPU {c} is not one this process may use ({})",
            ranges(ok)
        )));
    }
    Ok(())
}

/// Pins the calling thread to `cpus` (checked first: on error nothing changes).
pub fn set_current(cpus: &[usize]) -> Result<()> {
    check(cpus)?;
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(|e| Error::invalid(format!("CPU {c}: {e}")))?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| Error::io("sched_setaffinity", e.into()))
}

/// `0-3,6` for [0, 1, 2, 3, 6].
pub fn ranges(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        out.push(if cpus[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", cpus[i])
        });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_pinned_and_a_bad_list_changes_nothing() {
        std::thread::spawn(|| {
            let all = current().unwrap();
            let last = *all.last().unwrap();
            set_current(&[last]).unwrap();
            assert_eq!(current().unwrap(), vec![last]);
            for bad in [vec![], vec![CpuSet::count() + 5], vec![last, 100_000]] {
                assert!(set_current(&bad).is_err(), "{bad:?}");
                assert_eq!(current().unwrap(), vec![last], "unchanged after {bad:?}");
            }
            // Back to every CPU of the process, from a pinned thread.
            set_current(&all).unwrap();
            assert_eq!(current().unwrap(), all);
        })
        .join()
        .unwrap();
        assert_eq!(ranges(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
    }
}
