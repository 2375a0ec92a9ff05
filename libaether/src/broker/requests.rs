//! Answering one client's control requests, in order, on its own thread.

use super::config::Action;
use super::{access, SlotKind, State, Topic};
use crate::error::{Error, Result, Status};
use crate::log_at;
use crate::protocol::{self, Reply, Request};
use crate::segment::{Segment, TopicParams, MAX_PUBLISHERS, TOPIC_DELETED};
use crate::sys::{self, uds::SeqPacket};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Instant;

/// Answers a connection we will not serve with one error reply.
pub(super) fn refuse(conn: &SeqPacket, e: Error) {
    let _ = conn.send(&protocol::encode_reply(0, 0, &Err(e)), None);
}

/// Serves `client`'s requests until it hangs up (or is shut down).
pub(super) fn serve(state: &Mutex<State>, client: u64, conn: &SeqPacket) {
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
        let (reply, fd) = match protocol::decode_request(&buf[..n]) {
            Ok((id, req)) => {
                let op = req.op();
                log_at!(Debug, "client {client}: {req:?}");
                let (r, fd) = handle(state, client, req);
                if let Err(e) = &r {
                    log_at!(Debug, "client {client}: refused: {e}");
                }
                (protocol::encode_reply(op as u16, id, &r), fd)
            }
            Err((id, op, e)) => {
                log_at!(Debug, "client {client}: malformed request: {e}");
                (protocol::encode_reply(op, id, &Err(e)), None)
            }
        };
        if conn.send(&reply, fd).is_err() {
            break;
        }
    }
}

fn not_found(topic: &str) -> Error {
    Error::new(Status::NotFound, format!("no topic named {topic:?}"))
}

/// Answers one request. Returns the reply and the descriptor to attach, if any.
fn handle(state: &Mutex<State>, client: u64, req: Request) -> (Result<Reply>, Option<i32>) {
    let mut s = state.lock().expect("state lock");
    let closing = matches!(
        req,
        Request::Hello { .. } | Request::PublisherClose { .. } | Request::SubscriberClose { .. }
    );
    if s.draining && !closing {
        return (Err(Error::new(Status::Shutdown, "the broker is shutting down")), None);
    }
    // Who is asking, and may they?
    let action = match &req {
        Request::TopicCreate { topic, .. } | Request::TopicDelete { topic } => Some((Action::Admin, topic.clone())),
        Request::PublisherOpen { topic } => Some((Action::Publish, topic.clone())),
        Request::SubscriberOpen { topic } => Some((Action::Subscribe, topic.clone())),
        _ => None,
    };
    if let Some((action, topic)) = action {
        if let Err(e) = protocol::validate_topic(&topic) {
            return (Err(e), None);
        }
        let who = &s.clients.get(&client).expect("a served client is registered").who;
        if let Err(e) = access::authorize(&s.config, who, action, Some(&topic)) {
            log_at!(Info, "client {client}: {e}");
            return (Err(e), None);
        }
    }
    match req {
        Request::Hello { .. } => {
            let reply = Reply::Hello {
                daemon_version: super::VERSION.into(),
                pid: std::process::id(),
                instance_id: s.instance_id,
            };
            (Ok(reply), None)
        }
        Request::TopicCreate { topic, params } => (create_topic(&mut s, &topic, &params).map(|_| Reply::Done), None),
        Request::TopicDelete { topic } => match s.topics.remove(&topic) {
            Some(t) => {
                // Open handles see the topic deleted at their next call.
                t.set_state(TOPIC_DELETED);
                let _ = sys::shm::unlink(&t.shm_name);
                log_at!(Info, "topic {topic:?} deleted by client {client}");
                (Ok(Reply::Done), None)
            }
            None => (Err(not_found(&topic)), None),
        },
        Request::PublisherOpen { topic } => open_slot(&mut s, &topic, client, SlotKind::Publisher),
        Request::SubscriberOpen { topic } => open_slot(&mut s, &topic, client, SlotKind::Subscriber),
        Request::PublisherClose { topic, slot } => {
            (close_slot(&mut s, &topic, client, SlotKind::Publisher, slot), None)
        }
        Request::SubscriberClose { topic, slot } => {
            (close_slot(&mut s, &topic, client, SlotKind::Subscriber, slot), None)
        }
    }
}

/// Gives `client` a free slot of `kind` on `topic`, with the segment's descriptor.
fn open_slot(s: &mut State, topic: &str, client: u64, kind: SlotKind) -> (Result<Reply>, Option<i32>) {
    let Some(t) = s.topics.get_mut(topic) else {
        return (Err(not_found(topic)), None);
    };
    let owners = t.owners(kind);
    let Some(i) = owners.iter().position(Option::is_none) else {
        let what = if kind == SlotKind::Publisher {
            "publishers"
        } else {
            "subscribers"
        };
        let msg = format!("topic {topic:?} has its maximum of {} {what} open", owners.len());
        return (Err(Error::new(Status::Limit, msg)), None);
    };
    owners[i] = Some(client);
    let slot = i as u32;
    let reply = match kind {
        SlotKind::Publisher => Reply::Publishing { slot },
        SlotKind::Subscriber => Reply::Subscribed { slot },
    };
    (Ok(reply), Some(t.fd.as_raw_fd()))
}

fn close_slot(s: &mut State, topic: &str, client: u64, kind: SlotKind, slot: u32) -> Result<Reply> {
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

fn create_topic(s: &mut State, topic: &str, params: &TopicParams) -> Result<()> {
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
    let shm_name = format!("/aether.{:016x}.{topic}", s.instance_id);
    let (fd, seg) = Segment::create(&shm_name, topic, params, s.instance_id)?;
    if s.unnamed_segments {
        let _ = sys::shm::unlink(&shm_name);
    }
    let topic_entry = Topic {
        shm_name,
        fd,
        seg,
        slots: vec![None; params.max_subscribers as usize],
        pub_slots: vec![None; MAX_PUBLISHERS as usize],
        rate: (0, Instant::now(), 0.0),
    };
    s.topics.insert(topic.to_string(), topic_entry);
    log_at!(Info, "topic {topic:?} created: {params:?}");
    Ok(())
}
