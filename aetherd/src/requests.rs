//! Answering one client's control requests, in order, on its own thread.

use crate::access;
use crate::config::Action;
use crate::quota::{self, Quota};
use crate::state::{not_found, SlotKind, State, Topic};
use aether::protocol::{self, Reply, Request, Start};
use aether::segment::{Segment, TopicParams, Waiters, MAX_PUBLISHERS, TOPIC_DELETED};
use aether::sys::shm;
use aether::sys::uds::SeqPacket;
use aether::{Error, Result, Status};
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answers a connection we will not serve (the client limit): its first
/// request gets `e` with that request's op and id, so the client library
/// reports `e` itself, then the connection closes. The request must be read
/// before closing: closing a socket with unread data resets the client's end
/// (ECONNRESET) before it can read the answer. A short-lived thread waits for
/// it (at most 1 s); beyond 16 such threads the answer goes out at once,
/// unmatched (op and id 0).
pub(crate) fn refuse(conn: &Arc<SeqPacket>, e: Error) {
    static REFUSING: AtomicUsize = AtomicUsize::new(0);
    let unmatched = |conn: &SeqPacket, e: &Error| {
        let _ = conn.send(&protocol::encode_reply(0, 0, &Err(e.clone())), None);
    };
    if REFUSING.fetch_add(1, Ordering::Relaxed) >= 16 {
        REFUSING.fetch_sub(1, Ordering::Relaxed);
        return unmatched(conn, &e);
    }
    let (c, err) = (Arc::clone(conn), e.clone());
    let answer = move || {
        let mut buf = vec![0u8; protocol::MAX_FRAME + 1];
        let first = c
            .set_timeout(Some(Duration::from_secs(1)))
            .and_then(|()| c.recv(&mut buf));
        let (op, id) = match first {
            Ok((n, _)) if n > 0 => match protocol::decode_request(&buf[..n]) {
                Ok((id, req)) => (req.op() as u16, id),
                Err((id, op, _)) => (op, id),
            },
            _ => (0, 0),
        };
        let _ = c.send(&protocol::encode_reply(op, id, &Err(err)), None);
        REFUSING.fetch_sub(1, Ordering::Relaxed);
    };
    if std::thread::Builder::new()
        .name("aetherd-refuse".into())
        .spawn(answer)
        .is_err()
    {
        REFUSING.fetch_sub(1, Ordering::Relaxed);
        unmatched(conn, &e);
    }
}

/// USDT `aetherd:refused`: client, request op, status, why (a C string).
fn probe_refused(client: u64, op: u16, e: &Error) {
    let why = std::ffi::CString::new(e.message.replace('\0', " ")).unwrap_or_default();
    probe::probe!(aetherd, refused, client, op, e.status as i32, why.as_ptr());
}

/// Serves `client`'s requests until it hangs up (or is shut down).
pub(crate) fn serve(state: &Mutex<State>, client: u64, conn: &SeqPacket) {
    let mut buf = vec![0u8; protocol::MAX_FRAME + 1];
    loop {
        let n = match conn.recv(&mut buf) {
            Ok((0, _)) => break,
            Ok((n, _fd)) => n, // a descriptor sent by a client is dropped (closed) here
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                let reply = protocol::encode_reply(0, 0, &Err(Error::protocol("frame too large")));
                let _ = conn.send(&reply, None);
                continue;
            }
            Err(_) => break,
        };
        // Descriptors for this reply (segment, message queues): sent with it, closed here after.
        let mut made = Vec::new();
        let reply = match protocol::decode_request(&buf[..n]) {
            Ok((id, req)) => {
                let op = req.op();
                log::debug!("client {client}: {req}");
                let r = handle(state, client, req, &mut made);
                if let Err(e) = &r {
                    log::debug!("client {client}: refused: {e}");
                    probe_refused(client, op as u16, e);
                }
                protocol::encode_reply(op as u16, id, &r)
            }
            Err((id, op, e)) => {
                log::debug!("client {client}: malformed request: {e}");
                probe_refused(client, op, &e);
                protocol::encode_reply(op, id, &Err(e))
            }
        };
        let fds: Vec<i32> = made.iter().map(|f| f.as_raw_fd()).collect();
        if conn.send_fds(&reply, &fds).is_err() {
            break;
        }
    }
}

/// Answers one request. Descriptors for the reply are pushed on `made`:
/// owned duplicates, so a topic deleted meanwhile cannot close (and the
/// kernel reuse) a descriptor number before it is sent.
fn handle(state: &Mutex<State>, client: u64, req: Request, made: &mut Vec<std::os::fd::OwnedFd>) -> Result<Reply> {
    let mut s = state.lock().expect("state lock");
    let closing = matches!(
        req,
        Request::Hello { .. } | Request::PublisherClose { .. } | Request::SubscriberClose { .. }
    );
    if s.draining && !closing {
        return Err(Error::new(Status::Shutdown, "the broker is shutting down"));
    }
    // Who is asking, and may they?
    let action = match &req {
        Request::TopicCreate { topic, .. } | Request::TopicDelete { topic } => Some((Action::Admin, topic.clone())),
        Request::PublisherOpen { topic } => Some((Action::Publish, topic.clone())),
        // (Log files: the right is checked again for each further batch.)
        Request::SubscriberOpen { topic, .. }
        | Request::SubscriberOpenMqueue { topic }
        | Request::LogFiles { topic, .. } => Some((Action::Subscribe, topic.clone())),
        _ => None,
    };
    let who = s
        .clients
        .get(&client)
        .expect("a served client is registered")
        .who
        .clone();
    let uid = who.cred.uid;
    // Statistics: for a party with any right on the topic.
    if let Request::TopicStats { topic } = &req {
        protocol::validate_topic(topic)?;
        let granted = [Action::Monitor, Action::Subscribe, Action::Publish]
            .into_iter()
            .any(|a| access::authorize(&s.config, &who, a, Some(topic)).is_ok());
        if !granted {
            let e = Error::new(
                Status::Permission,
                format!("uid {uid} has no right on topic {topic:?} (publish, subscribe or monitor)"),
            );
            log::info!("client {client}: {e}");
            return Err(e);
        }
    }
    if let Some((action, topic)) = action {
        protocol::validate_topic(&topic)?;
        if let Err(e) = access::authorize(&s.config, &who, action, Some(&topic)) {
            log::info!("client {client}: {e}");
            return Err(e);
        }
    }
    // What the request would hold, against the quotas.
    let slot = |s: &mut State| {
        quota::check(s, uid, client, Quota::Slots, 1)?;
        quota::check(s, uid, client, Quota::ClientSlots, 1)
    };
    match &req {
        Request::PublisherOpen { .. } | Request::SubscriberOpen { .. } => slot(&mut s)?,
        Request::SubscriberOpenMqueue { .. } => {
            slot(&mut s)?;
            quota::check(&mut s, uid, client, Quota::MqueueSubscribers, 1)?;
        }
        Request::ControlQueue => {
            // A daemon-made queue for whoever asks: only for a party with some right.
            access::authorize_any(&s.config, &who)?;
            quota::check(&mut s, uid, client, Quota::ControlQueues, 1)?;
        }
        _ => {}
    }
    match req {
        Request::Hello { .. } => {
            let reply = Reply::Hello {
                daemon_version: aether::VERSION.into(),
                pid: std::process::id(),
                instance_id: s.instance_id,
            };
            Ok(reply)
        }
        Request::TopicCreate { topic, params } => create_topic(&mut s, &topic, &params, Some(uid)).map(|_| Reply::Done),
        Request::TopicDelete { topic } => delete_topic(&mut s, &topic).map(|_| Reply::Done),
        Request::PublisherOpen { topic } => open_slot(&mut s, &topic, client, SlotKind::Publisher, Start::Latest, made),
        Request::SubscriberOpen { topic, start } => {
            open_slot(&mut s, &topic, client, SlotKind::Subscriber, start, made)
        }
        Request::PublisherClose { topic, slot, topic_id } => {
            close_slot(&mut s, &topic, client, SlotKind::Publisher, slot, topic_id)
        }
        Request::SubscriberClose { topic, slot, topic_id } => {
            same_incarnation(&s, &topic, topic_id)?;
            // An mqueue subscriber's dispatch thread reads through the slot: stop it first.
            let dispatcher = crate::mqueue::take(&mut s, client, Some((&topic, slot)));
            if !dispatcher.is_empty() {
                drop(s);
                crate::mqueue::join(dispatcher);
                s = state.lock().expect("state lock");
            }
            close_slot(&mut s, &topic, client, SlotKind::Subscriber, slot, topic_id)
        }
        Request::ControlQueue => crate::mqueue::control_queue(&mut s, client, made),
        Request::Cursors { topic, topic_id, slots } => {
            per_subscriber(&s, &topic, client, topic_id, &slots, PerSubscriber::CursorPages, made)
        }
        Request::SubscriberFd { topic, topic_id, slot } => subscriber_fd(&mut s, &topic, client, topic_id, slot, made),
        Request::Notifiers { topic, topic_id, slots } => {
            per_subscriber(&s, &topic, client, topic_id, &slots, PerSubscriber::Eventfds, made)
        }
        Request::SubscriberOpenMqueue { topic } => crate::mqueue::open_subscriber(&mut s, &topic, client, made),
        Request::TopicStats { topic } => {
            let t = s.topics.get(&topic).ok_or_else(|| not_found(&topic))?;
            let (st, _) = crate::stats::topic_stats(&s, &topic, t);
            let log = st.log.as_ref();
            Ok(Reply::TopicStats(protocol::TopicStats {
                published: st.published,
                publishers: st.publishers as u32,
                subscribers: st.subscribers as u32,
                lost: st.lost,
                aborted: st.aborted,
                overruns: st.overruns,
                waits: st.waits,
                space_waits: st.space_waits,
                wakes: st.wakes,
                rate_msgs_per_s: st.rate_msgs_per_s,
                rate_bytes_per_s: st.rate_bytes_per_s,
                durable: log.is_some(),
                log_bytes: log.map_or(0, |l| l.bytes),
                log_oldest_seq: log.map_or(0, |l| l.oldest_seq),
                log_next_seq: log.map_or(0, |l| l.next_seq),
            }))
        }
        Request::SubscriberCommit {
            topic,
            topic_id,
            slot,
            next_seq,
        } => {
            let t = own_subscriber_slot(&mut s, &topic, topic_id, slot, client)?;
            let (Some(d), Some(Some(name))) = (&t.durable, t.names.get(slot as usize)) else {
                return Err(Error::invalid(format!(
                    "subscriber slot {slot} of {topic:?} is not a durable subscription"
                )));
            };
            let next = t.seg.tail().hi.load(std::sync::atomic::Ordering::Acquire);
            if next_seq > next {
                return Err(Error::invalid(format!(
                    "commit of seq {next_seq}: {topic:?} has published only up to {next}"
                )));
            }
            d.commit(name, next_seq).map(|_| Reply::Done)
        }
        Request::LogFiles {
            topic,
            topic_id,
            slot,
            from_seq,
        } => {
            let t = own_subscriber_slot(&mut s, &topic, topic_id, slot, client)?;
            let d = t
                .durable
                .as_ref()
                .ok_or_else(|| Error::invalid(format!("topic {topic:?} is not durable: it has no log files")))?;
            made.extend(d.files_from(&Start::Seq(from_seq), aether::sys::uds::MAX_FDS)?);
            Ok(Reply::Done)
        }
    }
}

/// Gives `client` a free slot of `kind` on `topic`, with the descriptors it
/// maps: a publisher the segment read-write, the control and waiters pages
/// read-only; a subscriber the segment and the control page read-only, the
/// waiters page read-write and a new cursor page of its own (read-write).
/// Nothing else is writable to it, and the control page to nobody.
/// A subscriber with a `start` (a durable topic) joins where the log
/// writer's cursor is, and gets read-only descriptors of the log files
/// that hold its history too.
fn open_slot(
    s: &mut State,
    topic: &str,
    client: u64,
    kind: SlotKind,
    start: Start,
    made: &mut Vec<std::os::fd::OwnedFd>,
) -> Result<Reply> {
    let pid = s.clients.get(&client).map_or(0, |c| c.who.cred.pid);
    let t = s.topics.get_mut(topic).ok_or_else(|| not_found(topic))?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("duplicate a descriptor", e));
    let i = t.free_slot(kind, topic)?;
    let reply = match kind {
        SlotKind::Publisher => {
            made.extend([dup(&t.fd)?, dup(&t.control_ro)?, dup(&t.waiters_ro)?]);
            Reply::Publishing { slot: i as u32 }
        }
        SlotKind::Subscriber => {
            let (seg, control, waiters) = (dup(&t.fd_ro)?, dup(&t.control_ro)?, dup(&t.waiters_fd)?);
            if start == Start::Latest {
                let (_, cursor) = t.join(i as u32, pid, topic, None, false)?;
                made.extend([seg, control, waiters, cursor]);
                Reply::Subscribed {
                    slot: i as u32,
                    start: None,
                }
            } else {
                let durable = t.durable.clone().ok_or_else(|| {
                    Error::invalid(format!(
                        "topic {topic:?} is not durable: it has no history to start from (only latest)"
                    ))
                })?;
                let next = t.seg.tail().hi.load(std::sync::atomic::Ordering::Acquire);
                // A durable subscription starts where it committed (a new one: the oldest logged).
                let start = match &start {
                    Start::Durable(name) => {
                        if let Some(other) = t.names.iter().position(|n| n.as_deref() == Some(name)) {
                            return Err(Error::new(
                                Status::Exists,
                                format!("durable subscription {name:?} of {topic:?} is in use (slot {other})"),
                            ));
                        }
                        let from = match durable.committed(name)? {
                            Some(seq) => seq.min(next),
                            None => {
                                let oldest = durable.oldest.load(std::sync::atomic::Ordering::Relaxed);
                                durable.commit(name, oldest)?;
                                oldest
                            }
                        };
                        t.names[i] = Some(name.clone());
                        Start::Seq(from)
                    }
                    other => other.clone(),
                };
                if let Start::Seq(n) = start {
                    if n > next {
                        return Err(Error::invalid(format!(
                            "seq {n} of {topic:?} is not published yet (the next is {next})"
                        )));
                    }
                }
                // The writer's cursor stays put while this one joins there.
                let held = durable.mark.lock().expect("mark lock");
                let (pos, seq) = *held;
                // As many files as the reply has room for: the client asks
                // for the rest as it reaches them (`LogFiles`).
                let files = durable.files_from(&start, aether::sys::uds::MAX_FDS - 4);
                let files = files.and_then(|f| {
                    t.join(i as u32, pid, topic, Some((pos, seq)), false)
                        .map(|(_, c)| (f, c))
                });
                drop(held);
                let (files, cursor) = files.inspect_err(|_| t.names[i] = None)?;
                made.extend([seg, control, waiters, cursor]);
                made.extend(files);
                let from = match start {
                    Start::Seq(n) => n,
                    _ => 0,
                };
                Reply::Subscribed {
                    slot: i as u32,
                    start: Some((pos, seq, from)),
                }
            }
        }
    };
    t.take_slot(kind, i, client);
    Ok(reply)
}

/// What a publisher asks for about subscriber slots it has not seen.
#[derive(Clone, Copy)]
enum PerSubscriber {
    /// `Cursors`: read-only cursor pages (reliable publishers wait for them).
    CursorPages,
    /// `Notifiers`: the eventfds of pollable subscribers (publishers signal them).
    Eventfds,
}

/// `Cursors` and `Notifiers`: for the slots asked for that are still handed
/// out under the generation given (and, for eventfds, are pollable), one
/// descriptor each, for a client that holds a publisher slot on this
/// incarnation of the topic (only publishers wait for or signal subscribers).
fn per_subscriber(
    s: &State,
    topic: &str,
    client: u64,
    topic_id: u64,
    slots: &[(u32, u64)],
    what: PerSubscriber,
    made: &mut Vec<std::os::fd::OwnedFd>,
) -> Result<Reply> {
    same_incarnation(s, topic, topic_id)?;
    let t = s.topics.get(topic).ok_or_else(|| not_found(topic))?;
    if t.held_by(SlotKind::Publisher, client) == 0 {
        let things = match what {
            PerSubscriber::CursorPages => "cursor pages",
            PerSubscriber::Eventfds => "pollable subscribers' descriptors",
        };
        return Err(Error::new(
            Status::Permission,
            format!("{things} of {topic:?} go only to its publishers"),
        ));
    }
    let mut given = Vec::new();
    for &(i, gen) in slots.iter().take(aether::protocol::MAX_CURSORS) {
        let Some(Some(c)) = t
            .cursors
            .get(i as usize)
            .filter(|c| c.as_ref().is_some_and(|c| c.gen == gen))
        else {
            continue;
        };
        let fd = match (what, &c.notify) {
            (PerSubscriber::CursorPages, _) => {
                shm::reopen_readonly(&c.fd).map_err(|e| Error::io("reopen a cursor page read-only", e))?
            }
            (PerSubscriber::Eventfds, Some(fd)) => fd.try_clone().map_err(|e| Error::io("duplicate an eventfd", e))?,
            (PerSubscriber::Eventfds, None) => continue,
        };
        made.push(fd);
        given.push((i, gen));
    }
    Ok(match what {
        PerSubscriber::CursorPages => Reply::Cursors { slots: given },
        PerSubscriber::Eventfds => Reply::Notifiers { slots: given },
    })
}

/// `topic` (the incarnation `topic_id`), whose subscriber slot `slot`
/// `client` must hold: `Permission` otherwise.
fn own_subscriber_slot<'a>(
    s: &'a mut State,
    topic: &str,
    topic_id: u64,
    slot: u32,
    client: u64,
) -> Result<&'a mut Topic> {
    same_incarnation(s, topic, topic_id)?;
    let t = s.topics.get_mut(topic).ok_or_else(|| not_found(topic))?;
    if t.slots.get(slot as usize).copied().flatten() != Some(client) {
        return Err(Error::new(
            Status::Permission,
            format!("subscriber slot {slot} of {topic:?} is not this client's"),
        ));
    }
    Ok(t)
}

/// `SubscriberFd`: the eventfd of subscriber slot `slot`, made on first
/// request, for the client that holds that slot (on this incarnation).
fn subscriber_fd(
    s: &mut State,
    topic: &str,
    client: u64,
    topic_id: u64,
    slot: u32,
    made: &mut Vec<std::os::fd::OwnedFd>,
) -> Result<Reply> {
    let t = own_subscriber_slot(s, topic, topic_id, slot, client)?;
    let entry = t
        .cursors
        .get_mut(slot as usize)
        .and_then(Option::as_mut)
        .ok_or_else(|| {
            Error::new(
                Status::Unavailable,
                format!("subscriber slot {slot} of {topic:?} is closed"),
            )
        })?;
    if entry.notify.is_none() {
        entry.notify = Some(aether::sys::eventfd::create().map_err(|e| Error::io("eventfd", e))?);
    }
    let fd = entry.notify.as_ref().expect("made above");
    made.push(fd.try_clone().map_err(|e| Error::io("duplicate an eventfd", e))?);
    Ok(Reply::Done)
}

/// Whether `topic_id` (a segment's salt; 0: any) names the current incarnation of `topic`.
fn same_incarnation(s: &State, topic: &str, topic_id: u64) -> Result<()> {
    let t = s.topics.get(topic).ok_or_else(|| not_found(topic))?;
    if topic_id != 0 && t.seg.geometry().salt != topic_id {
        return Err(Error::new(
            Status::NotFound,
            format!("topic {topic:?} was deleted (and created again): the slot belonged to the old one"),
        ));
    }
    Ok(())
}

fn close_slot(s: &mut State, topic: &str, client: u64, kind: SlotKind, slot: u32, topic_id: u64) -> Result<Reply> {
    same_incarnation(s, topic, topic_id)?;
    let t = s.topics.get_mut(topic).ok_or_else(|| not_found(topic))?;
    match t.owners(kind).get_mut(slot as usize) {
        Some(owner) if *owner == Some(client) => {
            *owner = None;
            t.free(kind, slot);
            Ok(Reply::Done)
        }
        _ => Err(Error::invalid(format!(
            "slot {slot} of {topic:?} is not held by this client"
        ))),
    }
}

/// Deletes `topic`: open handles see it deleted at their next call.
pub(crate) fn delete_topic(s: &mut State, topic: &str) -> Result<()> {
    protocol::validate_topic(topic)?;
    let t = s.topics.remove(topic).ok_or_else(|| not_found(topic))?;
    t.set_state(TOPIC_DELETED);
    if let Some(d) = &t.durable {
        // The log goes with the topic.
        d.stop(true);
        if let Err(e) = std::fs::remove_dir_all(&d.dir) {
            log::warn!("topic {topic:?}: remove its log {}: {e}", d.dir.display());
        }
    }
    crate::mqueue::topic_deleted(s, topic, &t);
    log::info!("topic {topic:?} deleted");
    let name = std::ffi::CString::new(topic).unwrap_or_default();
    probe::probe!(aetherd, topic_delete, name.as_ptr());
    Ok(())
}

/// Makes `topic`; `creator` is the uid whose request made it (its quota is
/// charged). A durable one gets a new log under the state directory.
pub(crate) fn create_topic(s: &mut State, topic: &str, params: &TopicParams, creator: Option<u32>) -> Result<()> {
    protocol::validate_topic(topic)?;
    let params = &params.sized();
    params.validate()?;
    let log = match params.wal {
        None => None,
        Some(_) => {
            if s.topics.contains_key(topic) {
                return Err(Error::new(Status::Exists, format!("topic {topic:?} already exists")));
            }
            Some(crate::durable::create(s, topic, params)?)
        }
    };
    let dir = s.state_dir.as_deref().map(|d| crate::durable::topic_dir(d, topic));
    let made = make_topic(s, topic, params, creator, log);
    if let (Err(_), Some(dir), Some(_)) = (&made, dir, params.wal) {
        let _ = std::fs::remove_dir_all(dir);
    }
    made
}

/// Makes `topic` with `params`; a durable one (with `log`) numbered on from
/// its log, its writer started.
pub(crate) fn make_topic(
    s: &mut State,
    topic: &str,
    params: &TopicParams,
    creator: Option<u32>,
    log: Option<crate::wal::Log>,
) -> Result<()> {
    protocol::validate_topic(topic)?;
    let params = &params.sized();
    params.validate()?;
    let limits = &s.config.limits;
    if params.ring_size > limits.max_segment_bytes {
        return Err(Error::new(
            Status::Limit,
            format!(
                "ring_size {} exceeds this broker's limit of {} bytes",
                params.ring_size, limits.max_segment_bytes
            ),
        ));
    }
    if params.max_message > limits.max_message_bytes {
        return Err(Error::new(
            Status::TooLarge,
            format!(
                "max_message {} exceeds this broker's limit of {} bytes",
                params.max_message, limits.max_message_bytes
            ),
        ));
    }
    if params.max_subscribers > limits.max_subscribers_per_topic {
        return Err(Error::new(
            Status::Limit,
            format!(
                "max_subscribers {} exceeds this broker's limit of {}",
                params.max_subscribers, limits.max_subscribers_per_topic
            ),
        ));
    }
    if s.topics.contains_key(topic) {
        return Err(Error::new(Status::Exists, format!("topic {topic:?} already exists")));
    }
    if s.topics.len() >= limits.max_topics {
        return Err(Error::new(
            Status::Limit,
            format!("the broker has its maximum of {} topics", limits.max_topics),
        ));
    }
    let bytes = aether::segment::segment_size(params);
    quota::check(s, creator.unwrap_or(0), 0, Quota::TotalSegmentBytes, bytes)?;
    if let Some(uid) = creator {
        quota::check(s, uid, 0, Quota::SegmentBytes, bytes)?;
    }
    let first_seq = log.as_ref().map_or(0, |l| l.next_seq());
    let (fd, control_fd, seg) = Segment::create(topic, params, s.instance_id, first_seq)?;
    let (waiters_fd, waiters) = Waiters::create(topic, seg.geometry().salt)?;
    // Read-only descriptors for those who only read each: subscribers (the
    // segment), publishers (the waiters page).
    let readonly = |fd: &OwnedFd| shm::reopen_readonly(fd).map_err(|e| Error::io("reopen read-only", e));
    let (fd_ro, control_ro, waiters_ro) = (readonly(&fd)?, readonly(&control_fd)?, readonly(&waiters_fd)?);
    // Held before anyone gets the segment: its clients can tell if we die.
    let held = s.keeper.hold(&seg)?;
    let topic_entry = Topic {
        _held: held,
        fd,
        fd_ro,
        control_ro,
        waiters: Arc::new(waiters),
        waiters_fd,
        waiters_ro,
        cursors: (0..params.max_subscribers).map(|_| None).collect(),
        seg: Arc::new(seg),
        slots: vec![None; params.max_subscribers as usize],
        pub_slots: vec![None; MAX_PUBLISHERS as usize],
        rate: crate::state::Rate::new(),
        activity: vec![(0, Instant::now()); params.max_subscribers as usize],
        creator,
        durable: None,
        names: vec![None; params.max_subscribers as usize],
    };
    let mut topic_entry = topic_entry;
    if let (Some(log), Some(_), Some(state_dir)) = (log, params.wal, s.state_dir.as_deref()) {
        let dir = crate::durable::topic_dir(state_dir, topic);
        let (config, cpus) = (s.config.log, s.affinity.log.clone());
        topic_entry.durable = Some(crate::durable::start(
            &mut topic_entry,
            topic,
            dir,
            params,
            log,
            config,
            cpus,
        )?);
    }
    s.topics.insert(topic.to_string(), topic_entry);
    log::info!("topic {topic:?} created: {params}");
    let name = std::ffi::CString::new(topic).unwrap_or_default();
    probe::probe!(aetherd, topic_create, name.as_ptr(), params.wal.is_some() as u32);
    Ok(())
}
