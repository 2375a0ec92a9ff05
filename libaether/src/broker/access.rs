//! Who may do what. Clients are identified by SO_PEERCRED (and their
//! supplementary groups from /proc). Default policy: the daemon's own uid and
//! root may do everything; anyone else only what a rule grants.

use super::config::{Action, Config, Rule};
use crate::error::{Error, Result, Status};
use crate::sys::uds::PeerCred;

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

fn topic_matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

fn rule_grants(rule: &Rule, who: &Identity, action: Action, topic: Option<&str>) -> bool {
    let person = rule.uids.contains(&who.cred.uid) || who.gids.iter().any(|g| rule.gids.contains(g));
    let topic_ok = match topic {
        Some(t) => rule.topics.is_empty() || rule.topics.iter().any(|p| topic_matches(p, t)),
        None => rule.topics.is_empty(),
    };
    person && topic_ok && rule.allow.contains(&action)
}

/// `Ok` if `who` may do `action` (on `topic`, when the action concerns one).
pub fn authorize(config: &Config, who: &Identity, action: Action, topic: Option<&str>) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
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
    }
}
