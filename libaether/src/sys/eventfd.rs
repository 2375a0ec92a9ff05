//! The eventfds that make shared-memory subscribers pollable: the daemon
//! makes one per pollable subscriber; publishers write to it, the subscriber
//! polls it and drains it before it re-arms (see `segment::PollLine`).

use std::os::fd::{AsFd, OwnedFd};

/// A new eventfd, non-blocking and close-on-exec, counter 0.
pub fn create() -> std::io::Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
    Ok(fd.into())
}

/// Makes `fd` readable (adds 1 to its counter). A full counter (2^64 - 2
/// signals unread) is already readable, so EAGAIN changes nothing.
pub fn signal(fd: impl AsFd) {
    let _ = nix::unistd::write(fd, &1u64.to_ne_bytes());
}

/// Clears `fd`'s counter (readable no more until the next signal).
pub fn drain(fd: impl AsFd) {
    let mut buf = [0u8; 8];
    let _ = nix::unistd::read(fd, &mut buf);
}
