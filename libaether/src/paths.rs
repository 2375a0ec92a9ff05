//! Where the control socket lives, and where to find `aetherd` for auto-start.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The system broker's socket (`aetherd.service`). No program uses it unless
/// told to (`--socket`, `$AETHER_SOCKET`), and auto-start never starts a
/// daemon there.
pub const SYSTEM_SOCKET: &str = "/run/aether/aetherd.sock";

/// `$AETHER_SOCKET`, else a private broker of this user:
/// `$XDG_RUNTIME_DIR/aether/aetherd.sock`, else `/tmp/aether-<uid>/aetherd.sock`.
pub fn default_socket() -> PathBuf {
    socket_choice().0
}

/// [`default_socket`], and where that choice came from, in words (for errors).
pub fn socket_choice() -> (PathBuf, &'static str) {
    if let Some(p) = std::env::var_os("AETHER_SOCKET").filter(|p| !p.is_empty()) {
        return (PathBuf::from(p), "from $AETHER_SOCKET");
    }
    let xdg = std::env::var_os("XDG_RUNTIME_DIR");
    let origin = match xdg.as_deref().filter(|d| !d.is_empty()) {
        Some(_) => "this user's private broker, under $XDG_RUNTIME_DIR",
        None => "this user's private broker ($XDG_RUNTIME_DIR is not set)",
    };
    (builtin_socket(xdg.as_deref(), nix::unistd::geteuid().as_raw()), origin)
}

/// The socket path without `$AETHER_SOCKET`, for user `uid`: under
/// `xdg_runtime_dir` when it is set and not empty, else
/// `/tmp/aether-<uid>/aetherd.sock` (a directory the daemon makes 0700 and
/// refuses if someone else made it). Never the system broker's.
pub fn builtin_socket(xdg_runtime_dir: Option<&std::ffi::OsStr>, uid: u32) -> PathBuf {
    match xdg_runtime_dir.filter(|d| !d.is_empty()) {
        Some(d) => Path::new(d).join("aether").join("aetherd.sock"),
        None => PathBuf::from(format!("/tmp/aether-{uid}/aetherd.sock")),
    }
}

/// Whether `socket` is the system broker's, or in its directory: a place
/// only `aetherd.service` starts a daemon.
pub fn is_system_socket(socket: &Path) -> bool {
    let system = Path::new(SYSTEM_SOCKET);
    socket == system || socket.parent() == system.parent()
}

/// Whether a daemon running as `uid` may be trusted at `socket`, before a
/// byte is sent to it: it runs as this process's user or as root, or as the
/// owner of the socket's directory when that directory could not have been
/// made by a stranger (others cannot write it, and its parent is root's or
/// ours and others cannot write that either: `/run/aether` of the system
/// broker qualifies, a directory someone made in `/tmp` does not).
pub fn trusted_daemon(socket: &Path, uid: u32) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    if uid == me || uid == 0 {
        return true;
    }
    let closed = |m: &std::fs::Metadata| m.is_dir() && m.mode() & 0o022 == 0;
    let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return false;
    };
    let (Ok(d), Some(Ok(p))) = (
        std::fs::symlink_metadata(dir),
        dir.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    d.uid() == uid && closed(&d) && (p.uid() == 0 || p.uid() == me) && closed(&p)
}

fn library_dir() -> Option<PathBuf> {
    // SAFETY: Dl_info is plain data; dladdr fills it for an address inside a
    // loaded object (this function's own code) and leaves it alone otherwise.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(library_dir as *const libc::c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(info.dli_fname);
        let p = PathBuf::from(std::ffi::OsStr::from_encoded_bytes_unchecked(name.to_bytes()));
        p.canonicalize().ok()?.parent().map(Path::to_path_buf)
    }
}

/// Candidates for the daemon binary, in order: `$AETHER_DAEMON`; next to the
/// running program; next to libaether (and its prefix's `bin/`); `aetherd` on PATH.
pub fn daemon_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("AETHER_DAEMON").filter(|p| !p.is_empty()) {
        v.push(PathBuf::from(p));
        return v;
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(d.join("aetherd"));
        // cargo puts test binaries in target/<profile>/deps
        v.push(d.join("..").join("aetherd"));
    }
    if let Some(d) = library_dir() {
        v.push(d.join("aetherd"));
        v.push(d.join("../bin/aetherd"));
        v.push(d.join("../../bin/aetherd"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            v.push(d.join("aetherd"));
        }
    }
    v
}
