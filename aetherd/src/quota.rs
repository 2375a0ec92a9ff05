//! Quotas: what one uid, one connection, and everyone together may hold at
//! once (the `[limits]` keys `per_uid_*`, `per_client_slots`,
//! `max_total_segment_bytes`; docs/SECURITY.md). Usage is counted from the
//! state itself when a request asks for more, so that no counter can drift
//! from what is really held. The daemon's own uid and root are exempt from
//! the per-uid quotas (they can do anything anyway), not from the others.
//!
//! A refusal is `Limit`, naming the quota; the log says it once per uid and
//! quota every [`LOG_EVERY`], however often it is hit.

use crate::state::State;
use aether::{Error, Result, Status};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often the log repeats a refusal of the same quota to the same uid.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Quota {
    Connections,
    ControlQueues,
    MqueueSubscribers,
    /// Publisher and subscriber slots of a uid.
    Slots,
    /// Bytes of the topics a uid made.
    SegmentBytes,
    /// Slots of one connection.
    ClientSlots,
    /// Bytes of every topic together.
    TotalSegmentBytes,
}

impl Quota {
    fn key(self) -> &'static str {
        match self {
            Quota::Connections => "per_uid_connections",
            Quota::ControlQueues => "per_uid_control_queues",
            Quota::MqueueSubscribers => "per_uid_mqueue_subscribers",
            Quota::Slots => "per_uid_slots",
            Quota::SegmentBytes => "per_uid_segment_bytes",
            Quota::ClientSlots => "per_client_slots",
            Quota::TotalSegmentBytes => "max_total_segment_bytes",
        }
    }
}

/// When each (uid, quota) refusal was last logged.
#[derive(Default)]
pub(crate) struct Refusals(HashMap<(u32, Quota), Instant>);

/// Whether `uid` is exempt from the per-uid quotas.
pub(crate) fn exempt(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// What `uid` (or, for the per-client and total quotas, `client` and
/// everyone) holds now of `q`.
fn used(s: &State, uid: u32, client: u64, q: Quota) -> u64 {
    let of_uid = |c: &u64| s.clients.get(c).is_some_and(|cl| cl.who.cred.uid == uid);
    let slots = |who: &dyn Fn(&u64) -> bool| -> u64 {
        s.topics
            .values()
            .flat_map(|t| t.slots.iter().chain(t.pub_slots.iter()))
            .filter(|o| o.as_ref().is_some_and(who))
            .count() as u64
    };
    match q {
        Quota::Connections => s.clients.values().filter(|c| c.who.cred.uid == uid).count() as u64,
        Quota::ControlQueues => s
            .clients
            .values()
            .filter(|c| c.who.cred.uid == uid && c.notices.get().is_some())
            .count() as u64,
        Quota::MqueueSubscribers => s.mq.dispatchers.iter().filter(|d| of_uid(&d.client)).count() as u64,
        Quota::Slots => slots(&of_uid),
        Quota::ClientSlots => slots(&|c: &u64| *c == client),
        Quota::SegmentBytes => s
            .topics
            .values()
            .filter(|t| t.creator == Some(uid))
            .map(|t| t.seg.geometry().file_size())
            .sum(),
        Quota::TotalSegmentBytes => s.topics.values().map(|t| t.seg.geometry().file_size()).sum(),
    }
}

fn limit(s: &State, q: Quota) -> u64 {
    let l = &s.config.limits;
    match q {
        Quota::Connections => l.per_uid_connections as u64,
        Quota::ControlQueues => l.per_uid_control_queues as u64,
        Quota::MqueueSubscribers => l.per_uid_mqueue_subscribers as u64,
        Quota::Slots => l.per_uid_slots as u64,
        Quota::SegmentBytes => l.per_uid_segment_bytes,
        Quota::ClientSlots => l.per_client_slots as u64,
        Quota::TotalSegmentBytes => l.max_total_segment_bytes,
    }
}

/// `Ok` if `uid` (connection `client`) may take `more` of `q`; else `Limit`
/// naming the quota (logged at most once per [`LOG_EVERY`] per uid and quota).
pub(crate) fn check(s: &mut State, uid: u32, client: u64, q: Quota, more: u64) -> Result<()> {
    let per_uid = !matches!(q, Quota::ClientSlots | Quota::TotalSegmentBytes);
    if per_uid && exempt(uid) {
        return Ok(());
    }
    let (used, max) = (used(s, uid, client, q), limit(s, q));
    if used.saturating_add(more) <= max {
        return Ok(());
    }
    let whose = match q {
        Quota::ClientSlots => "this connection".to_string(),
        Quota::TotalSegmentBytes => "the broker".to_string(),
        _ => format!("uid {uid}"),
    };
    let e = Error::new(
        Status::Limit,
        format!(
            "quota {} reached: {whose} holds {used} of {max}{}",
            q.key(),
            if more > 1 {
                format!(" and asks for {more} more")
            } else {
                String::new()
            }
        ),
    );
    let now = Instant::now();
    let due = s
        .refusals
        .0
        .get(&(uid, q))
        .is_none_or(|t| now.duration_since(*t) >= LOG_EVERY);
    if due {
        s.refusals.0.insert((uid, q), now);
        log::warn!(
            "refused uid {uid}: {} (said once per {} s)",
            e.message,
            LOG_EVERY.as_secs()
        );
    }
    Err(e)
}
