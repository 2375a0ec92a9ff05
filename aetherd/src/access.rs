//! Who may do what. Clients are identified by SO_PEERCRED (and their
//! supplementary groups from /proc). Default policy: the daemon's own uid and
//! root may do everything; anyone else only what a rule grants. Also the
//! socket's file permissions, which decide who may connect at all.

use crate::config::{Action, Config, Rule};
use aether::sys::uds::PeerCred;
use aether::{Error, Result, Status};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// A connected client's identity.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cred: PeerCred,
    /// Primary and supplementary groups.
    pub gids: Vec<u32>,
}

impl Identity {
    pub fn of(cred: PeerCred) -> Identity {
        let mut gids = vec![cred.gid];
        gids.extend(supplementary_groups(cred.pid));
        Identity { cred, gids }
    }

    /// The owner of a file only its owner could have made (an admin
    /// requester's reply FIFO): uid `uid`, the file's group `gid` (one its
    /// owner belongs to, or could not have given it the file), and the
    /// groups the group database lists for that user. No process: pid 0.
    pub fn of_owner(uid: u32, gid: u32) -> Identity {
        let mut gids = vec![gid];
        if let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            if let Ok(name) = std::ffi::CString::new(user.name) {
                if let Ok(list) = nix::unistd::getgrouplist(&name, user.gid) {
                    gids.extend(list.into_iter().map(|g| g.as_raw()));
                }
            }
        }
        gids.sort_unstable();
        gids.dedup();
        Identity {
            cred: PeerCred { pid: 0, uid, gid },
            gids,
        }
    }
}

/// The `Groups:` line of /proc/PID/status (empty if unreadable).
fn supplementary_groups(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        })
        .unwrap_or_default()
}

pub(crate) fn topic_matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

/// Whether `rule` names `who` and grants `action` (on whatever topics it names).
fn rule_grants_action(rule: &Rule, who: &Identity, action: Action) -> bool {
    let person = rule.uids.contains(&who.cred.uid) || who.gids.iter().any(|g| rule.gids.contains(g));
    let granted = rule.allow.contains(&action) || (action == Action::Monitor && rule.allow.contains(&Action::Admin));
    person && granted
}

fn rule_grants(rule: &Rule, who: &Identity, action: Action, topic: Option<&str>) -> bool {
    let topic_ok = match topic {
        Some(t) => rule.topics.is_empty() || rule.topics.iter().any(|p| topic_matches(p, t)),
        // Broker-wide actions: rules for every topic (no patterns, or `*`).
        None => rule.topics.is_empty() || rule.topics.iter().any(|p| p == "*"),
    };
    topic_ok && rule_grants_action(rule, who, action)
}

/// The topic patterns on which [`authorize`] lets `who` do `action`
/// (`None`: every topic), for a filter that must decide ahead of it (the
/// bridge's Zenoh access control, docs/BRIDGE.md).
pub fn granted_patterns(config: &Config, who: &Identity, action: Action) -> Option<Vec<String>> {
    let own = nix::unistd::geteuid().as_raw();
    if who.cred.uid == 0 || who.cred.uid == own {
        return None;
    }
    let mut patterns = Vec::new();
    for r in config.rules.iter().filter(|r| rule_grants_action(r, who, action)) {
        if r.topics.is_empty() {
            return None;
        }
        patterns.extend(r.topics.iter().cloned());
    }
    Some(patterns)
}

/// `Ok` if `who` may do `action` (on `topic`, when the action concerns one).
pub fn authorize(config: &Config, who: &Identity, action: Action, topic: Option<&str>) -> Result<()> {
    let own = nix::unistd::geteuid().as_raw();
    if who.cred.uid == 0 || who.cred.uid == own {
        return Ok(());
    }
    if config.rules.iter().any(|r| rule_grants(r, who, action, topic)) {
        return Ok(());
    }
    let what = match action {
        Action::Publish => "publish to",
        Action::Subscribe => "subscribe to",
        Action::Admin => "administer",
        Action::Monitor => "monitor",
    };
    Err(Error::new(
        Status::Permission,
        format!(
            "uid {} may not {what} {} (no rule in the daemon's configuration grants it)",
            who.cred.uid,
            topic.map_or("this broker".to_string(), |t| format!("topic {t:?}"))
        ),
    ))
}

/// `Ok` if `who` holds some right, on some topic or the broker (the daemon's
/// own uid and root hold every right): what a daemon-made control queue
/// needs, since it costs the daemon's user a queue.
pub fn authorize_any(config: &Config, who: &Identity) -> Result<()> {
    let own = nix::unistd::geteuid().as_raw();
    let person = |r: &Rule| r.uids.contains(&who.cred.uid) || who.gids.iter().any(|g| r.gids.contains(g));
    if who.cred.uid == 0 || who.cred.uid == own || config.rules.iter().any(|r| person(r) && !r.allow.is_empty()) {
        return Ok(());
    }
    Err(Error::new(
        Status::Permission,
        format!(
            "uid {} holds no right on this broker, so it gets no control queue (no rule in the daemon's \
             configuration names it)",
            who.cred.uid
        ),
    ))
}

/// Whether `mode` lets anyone but the owner connect (connecting needs write permission).
fn shared(mode: Option<u32>) -> bool {
    mode.is_some_and(|m| m & 0o022 != 0)
}

/// Creates the socket's directory (and missing parents) when absent: 0700,
/// or 0755 when `socket_mode` lets others connect, since they must be able to
/// reach the socket. Then checks the directory is the daemon's own (see
/// [`check_socket_dir`]). An existing directory keeps its mode; if it keeps
/// others out of a shared socket, a warning says so.
pub fn prepare_socket_dir(socket: &Path, socket_mode: Option<u32>, socket_group: Option<u32>) -> Result<()> {
    let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let mode = if shared(socket_mode) { 0o755 } else { 0o700 };
    // Outermost missing directory first; each one gets `mode` whatever the umask.
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err())
        .collect();
    for d in missing.iter().rev() {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(d)
            .or_else(|e| if d.is_dir() { Ok(()) } else { Err(e) })
            .and_then(|()| std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| Error::io(&format!("create {}", d.display()), e))?;
    }
    let meta = check_socket_dir(dir, socket_group)?;
    if missing.is_empty() && shared(socket_mode) && meta.permissions().mode() & 0o011 == 0 {
        log::warn!(
            "socket_mode {:04o} shares the socket, but its directory {} ({:04o}) lets only its owner in",
            socket_mode.unwrap_or(0),
            dir.display(),
            meta.permissions().mode() & 0o7777
        );
    }
    Ok(())
}

/// The daemon keeps its socket, lock, admin pipe and statistics in `dir`, so
/// whoever else can write there could plant symlinks or swap the socket: it
/// must be a real directory (not a symlink) owned by the daemon's user that
/// others cannot write, group-writable only when its group is the configured
/// `socket_group`. Anything else is refused with what to do about it.
pub fn check_socket_dir(dir: &Path, socket_group: Option<u32>) -> Result<std::fs::Metadata> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(&format!("stat {}", dir.display()), e))?;
    let euid = nix::unistd::geteuid().as_raw();
    let mode = meta.permissions().mode() & 0o7777;
    let refuse = |why: String| {
        Error::new(
            Status::Permission,
            format!(
                "refusing the socket directory {}: {why}; aetherd keeps its socket, lock and pipes only in a \
                 directory it owns that others cannot write (mkdir -m 0700 a private one, or pass another --socket)",
                dir.display()
            ),
        )
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    if meta.uid() != euid {
        return Err(refuse(format!(
            "it belongs to uid {}, not to this daemon's uid {euid}",
            meta.uid()
        )));
    }
    if mode & 0o002 != 0 {
        return Err(refuse(format!("its mode {mode:04o} lets every user write in it")));
    }
    if mode & 0o020 != 0 && socket_group != Some(meta.gid()) {
        return Err(refuse(format!(
            "its mode {mode:04o} lets group {} write in it, and that is not the configured socket_group",
            meta.gid()
        )));
    }
    Ok(meta)
}

/// After bind: sets the socket's mode and group when configured (`None`:
/// leave it as bind created it), and opens the admin pipe and its reply
/// directory to the same people: whoever may connect may also ask (their
/// `monitor` and `admin` rights decide what they get). The pipe becomes
/// writable (`0620`/`0622`), the reply directory writable and searchable
/// but not listable, and sticky (`1730`/`1733`), so that nobody can find,
/// remove or replace another requester's FIFO.
pub fn set_socket_permissions(socket: &Path, mode: Option<u32>, gid: Option<u32>) -> Result<()> {
    set_permissions(socket, mode, gid)?;
    share_admin(socket, mode, gid)
}

/// The admin pipe's and reply directory's half of [`set_socket_permissions`],
/// alone: for a socket systemd made (`aetherd.socket`), whose own mode and
/// group are systemd's to set and are passed here.
pub fn share_admin(socket: &Path, mode: Option<u32>, gid: Option<u32>) -> Result<()> {
    let shared = mode.unwrap_or(0) & 0o022;
    // Write and search (`-wx`) for whoever may write the socket.
    let dir_mode = if shared == 0 {
        0o700
    } else {
        0o1700 | shared | (shared >> 1)
    };
    set_permissions(&crate::admin::pipe_path(socket), mode.map(|_| 0o600 | shared), gid)?;
    set_permissions(&crate::admin::replies_dir(socket), mode.map(|_| dir_mode), gid)
}

fn set_permissions(path: &Path, mode: Option<u32>, gid: Option<u32>) -> Result<()> {
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| Error::io(&format!("chown {} to group {gid}", path.display()), e))?;
    }
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(&format!("chmod {:04o} {}", mode, path.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gids: &[u32]) -> Identity {
        Identity {
            cred: PeerCred {
                pid: 1,
                uid,
                gid: gids[0],
            },
            gids: gids.to_vec(),
        }
    }

    #[test]
    fn default_policy_and_rules() {
        let mut c = Config::default();
        assert!(authorize(&c, &who(0, &[0]), Action::Admin, None).is_ok(), "root may");
        let stranger = who(4242, &[4242]);
        assert_eq!(
            authorize(&c, &stranger, Action::Subscribe, Some("t"))
                .unwrap_err()
                .status,
            Status::Permission
        );
        c.rules.push(Rule {
            topics: vec!["sensors.*".into()],
            uids: vec![],
            gids: vec![4242],
            allow: vec![Action::Subscribe],
        });
        assert!(authorize(&c, &stranger, Action::Subscribe, Some("sensors.temp")).is_ok());
        assert!(authorize(&c, &stranger, Action::Publish, Some("sensors.temp")).is_err());
        assert!(authorize(&c, &stranger, Action::Subscribe, Some("other")).is_err());
        assert!(authorize(&c, &stranger, Action::Admin, None).is_err());
        // `*` covers every topic and the broker itself.
        c.rules.push(Rule {
            topics: vec!["*".into()],
            uids: vec![4242],
            gids: vec![],
            allow: vec![Action::Admin],
        });
        assert!(authorize(&c, &stranger, Action::Admin, Some("any")).is_ok());
        assert!(authorize(&c, &stranger, Action::Admin, None).is_ok());
        assert!(authorize(&c, &who(4243, &[4243]), Action::Admin, None).is_err());
    }

    /// `granted_patterns` says what `authorize` says, topic by topic.
    #[test]
    fn granted_patterns_agree_with_authorize() {
        let rule = |topics: &[&str], uids: &[u32], gids: &[u32], allow: &[Action]| Rule {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            uids: uids.to_vec(),
            gids: gids.to_vec(),
            allow: allow.to_vec(),
        };
        let mut c = Config::default();
        c.rules
            .push(rule(&["sensors.*", "cmd"], &[], &[50], &[Action::Publish]));
        c.rules.push(rule(&["log.*"], &[4242], &[], &[Action::Subscribe]));
        c.rules.push(rule(&["stats"], &[4242], &[], &[Action::Admin]));
        c.rules.push(rule(&[], &[4244], &[], &[Action::Publish]));
        let topics = ["sensors.t", "sensors", "cmd", "cmd2", "log.a", "stats", "other"];
        let own = nix::unistd::geteuid().as_raw();
        for w in [
            who(4242, &[50]),
            who(4243, &[4243]),
            who(4244, &[4244]),
            who(0, &[0]),
            who(own, &[own]),
        ] {
            for action in [Action::Publish, Action::Subscribe, Action::Monitor] {
                let patterns = granted_patterns(&c, &w, action);
                for t in topics {
                    let by_patterns = patterns
                        .as_ref()
                        .is_none_or(|ps| ps.iter().any(|p| topic_matches(p, t)));
                    assert_eq!(
                        by_patterns,
                        authorize(&c, &w, action, Some(t)).is_ok(),
                        "uid {} {action:?} {t}: {patterns:?}",
                        w.cred.uid
                    );
                }
            }
        }
        assert_eq!(
            granted_patterns(&c, &who(4242, &[50]), Action::Publish),
            Some(vec!["sensors.*".to_string(), "cmd".to_string()])
        );
        assert_eq!(granted_patterns(&c, &who(4243, &[4243]), Action::Publish), Some(vec![]));
    }

    #[test]
    fn socket_dir_modes() {
        let base = std::env::temp_dir().join(format!(
            "aether-access-test-{}-{:x}",
            std::process::id(),
            aether::sys::random_u64()
        ));
        let mode_of = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        prepare_socket_dir(&base.join("private/a/s.sock"), None, None).unwrap();
        assert_eq!(mode_of(&base.join("private/a")), 0o700);
        assert_eq!(mode_of(&base.join("private")), 0o700);
        prepare_socket_dir(&base.join("shared/s.sock"), Some(0o660), None).unwrap();
        assert_eq!(mode_of(&base.join("shared")), 0o755);
        // Group/other read alone does not let anyone connect: stays private.
        prepare_socket_dir(&base.join("readonly/s.sock"), Some(0o644), None).unwrap();
        assert_eq!(mode_of(&base.join("readonly")), 0o700);
        // An existing directory is left alone.
        prepare_socket_dir(&base.join("private/a/t.sock"), Some(0o666), None).unwrap();
        assert_eq!(mode_of(&base.join("private/a")), 0o700);

        // The admin pipe and reply directory follow the socket: writable by
        // whoever may connect, the directory sticky and not listable.
        let sock = base.join("shared/f");
        let (pipe, replies) = (crate::admin::pipe_path(&sock), crate::admin::replies_dir(&sock));
        std::fs::write(&sock, b"").unwrap();
        std::fs::write(&pipe, b"").unwrap();
        std::fs::create_dir(&replies).unwrap();
        let full_mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        set_socket_permissions(&sock, Some(0o666), None).unwrap();
        assert_eq!(
            (mode_of(&sock), mode_of(&pipe), full_mode(&replies)),
            (0o666, 0o622, 0o1733)
        );
        let gid = nix::unistd::getegid().as_raw();
        set_socket_permissions(&sock, Some(0o660), Some(gid)).unwrap();
        assert_eq!(
            (mode_of(&sock), mode_of(&pipe), full_mode(&replies)),
            (0o660, 0o620, 0o1730)
        );
        set_socket_permissions(&sock, Some(0o640), Some(gid)).unwrap();
        assert_eq!(
            (mode_of(&sock), mode_of(&pipe), full_mode(&replies)),
            (0o640, 0o600, 0o700)
        );
        assert!(set_socket_permissions(&base.join("missing"), Some(0o600), None).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }

    /// Issue 15, case 5: a directory others can write, or that is a symlink,
    /// or (as root's test: chown) belongs to someone else, is refused.
    #[test]
    fn a_socket_directory_others_control_is_refused() {
        let base = std::env::temp_dir().join(format!(
            "aether-access-dir-{}-{:x}",
            std::process::id(),
            aether::sys::random_u64()
        ));
        std::fs::create_dir_all(&base).unwrap();
        let chmod = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        let status = |r: Result<std::fs::Metadata>| r.map(drop).map_err(|e| e.status);
        let world = base.join("world");
        std::fs::create_dir(&world).unwrap();
        chmod(&world, 0o1777);
        let e = prepare_socket_dir(&world.join("s.sock"), None, None).unwrap_err();
        assert!(e.message.contains("every user write"), "{e}");
        let group = base.join("group");
        std::fs::create_dir(&group).unwrap();
        chmod(&group, 0o770);
        let gid = std::fs::metadata(&group).unwrap().gid();
        assert_eq!(status(check_socket_dir(&group, None)), Err(Status::Permission));
        assert_eq!(
            status(check_socket_dir(&group, Some(gid))),
            Ok(()),
            "the configured group may"
        );
        let link = base.join("link");
        std::os::unix::fs::symlink(&group, &link).unwrap();
        assert_eq!(status(check_socket_dir(&link, Some(gid))), Err(Status::Permission));
        if nix::unistd::geteuid().is_root() {
            let theirs = base.join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            let e = check_socket_dir(&theirs, None).unwrap_err();
            assert!(e.message.contains("belongs to uid 65534"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
