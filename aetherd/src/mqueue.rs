//! POSIX message queues on the daemon side (docs/ARCHITECTURE.md, "Message
//! queues"):
//!
//! - a client's **control queue**, asked for with the `ControlQueue` request:
//!   the daemon keeps the write end ([`NoticeQueue`]) in the client registry
//!   and posts [`Notice`]s there without ever blocking (a full queue drops the
//!   notice and counts it; the next notice that fits carries the count);
//! - `delivery=mqueue` subscribers (`SubscriberOpenMqueue`): an
//!   `aetherd-dispatch` thread per subscriber is a ring [`Reader`] on a
//!   subscriber slot and forwards each message into the subscriber's queue.
//!
//! Every queue is created under a unique name (`/aether.<instance>.q<n>`,
//! mode 0600, O_EXCL), opened for the client, and unlinked at once: the
//! client gets its descriptor over SCM_RIGHTS and nothing is left behind.

use crate::state::{not_found, Dispatcher, NoticeQueue, Notices, SlotKind, State, Topic};
use aether::notice::{self, Notice, FRAME_HEADER, NOTICE_MSGSIZE};
use aether::protocol::Reply;
use aether::ring::{Deadline, Reader, WaitConfig, WaitStrategy};
use aether::segment::{Policy, Segment};
use aether::sys::mqueue as mq;
use aether::{Error, Result, Status};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most messages a queue holds (the system's `msg_max` permitting).
pub const QUEUE_DEPTH: usize = 10;
/// How long a dispatch thread waits (for a message, or for room in its queue)
/// before looking at its stop flag again.
const POLL: Duration = Duration::from_millis(50);
/// How long a draining broker lets dispatch threads forward what is left.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

static NEXT_QUEUE: AtomicU64 = AtomicU64::new(0);

impl NoticeQueue {
    /// Posts `n` without blocking. Returns whether it fitted.
    pub(crate) fn post(&self, n: &Notice) -> bool {
        let dropped = self.dropped.swap(0, Ordering::AcqRel);
        let Some(bytes) = notice::encode_notice(n, dropped) else {
            return true;
        };
        match mq::send(self.fd.as_fd(), &bytes) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(dropped.wrapping_add(1), Ordering::AcqRel);
                false
            }
        }
    }
}

/// A queue just made: the daemon's end, the client's end; the name is gone.
struct NewQueue {
    daemon: OwnedFd,
    client: OwnedFd,
}

fn queue_error(name: &str, e: std::io::Error) -> Error {
    let why = match e.raw_os_error() {
        Some(libc::EMFILE) => "the daemon's user has used up its RLIMIT_MSGQUEUE bytes, or the daemon its descriptors",
        Some(libc::ENFILE) => "the system is out of file descriptors",
        Some(libc::ENOSPC) => "the system-wide limit on queues (/proc/sys/fs/mqueue/queues_max) is reached",
        Some(libc::ENOMEM) => "out of memory",
        _ => return Error::io(&format!("cannot create message queue {name}"), e),
    };
    Error::new(Status::Limit, format!("cannot create message queue {name}: {why}"))
}

/// Creates a queue of `maxmsg` x `msgsize` bytes, opens the daemon's write
/// end (non-blocking if asked) and the client's read end, and unlinks it.
fn make_queue(instance: u64, nonblocking: bool, maxmsg: usize, msgsize: usize) -> Result<NewQueue> {
    let name = format!(
        "/aether.{instance:016x}.q{}",
        NEXT_QUEUE.fetch_add(1, Ordering::Relaxed)
    );
    let flags = libc::O_WRONLY | if nonblocking { libc::O_NONBLOCK } else { 0 };
    let daemon = mq::create(&name, flags, maxmsg, msgsize).map_err(|e| queue_error(&name, e))?;
    let client = mq::open(&name, libc::O_RDONLY);
    let _ = mq::unlink(&name);
    let client = client.map_err(|e| queue_error(&name, e))?;
    Ok(NewQueue { daemon, client })
}

/// `ControlQueue`: makes `client`'s control queue and hands out its read end.
pub(crate) fn control_queue(s: &mut State, client: u64, fds: &mut Vec<OwnedFd>) -> Result<Reply> {
    let instance = s.instance_id;
    let c = s
        .clients
        .get(&client)
        .ok_or_else(|| Error::new(Status::Internal, "client not registered"))?;
    if c.notices.get().is_some() {
        return Err(Error::new(
            Status::Exists,
            "this connection already has its control queue",
        ));
    }
    let (msg_max, msgsize_max) = mq::system_limits();
    let (maxmsg, msgsize) = (QUEUE_DEPTH.min(msg_max), NOTICE_MSGSIZE.min(msgsize_max));
    let q = make_queue(instance, true, maxmsg, msgsize)?;
    let _ = c.notices.set(NoticeQueue::new(q.daemon));
    fds.push(q.client);
    log::debug!("client {client}: control queue {maxmsg} x {msgsize} bytes");
    Ok(Reply::ControlQueue {
        maxmsg: maxmsg as u32,
        msgsize: msgsize as u32,
    })
}

/// Posts `n` to `client`'s control queue, if it has one. Returns whether it was delivered.
pub(crate) fn post(s: &State, client: u64, n: &Notice) -> bool {
    match s.clients.get(&client).and_then(|c| c.notices.get()) {
        Some(q) => q.post(n),
        None => false,
    }
}

/// Posts `n` to every client that has a control queue.
pub(crate) fn post_all(s: &State, n: &Notice) {
    for c in s.clients.values() {
        if let Some(q) = c.notices.get() {
            q.post(n);
        }
    }
}

/// Tells every client holding a slot on the deleted topic `t` that it is gone.
pub(crate) fn topic_deleted(s: &State, name: &str, t: &Topic) {
    let mut told = Vec::new();
    for c in t.slots.iter().chain(t.pub_slots.iter()).flatten() {
        if !told.contains(c) {
            told.push(*c);
            post(s, *c, &Notice::TopicDeleted { topic: name.into() });
        }
    }
}

/// Housekeeping: tells each client whose subscriber lost messages since the
/// last look (a `Lagged` notice per slot, at most once per call). A notice
/// that does not fit is retried with the larger count next time.
pub(crate) fn report_lag(s: &mut State) {
    let mut seen = HashMap::new();
    for (name, t) in &s.topics {
        let key = t.key();
        for (i, owner) in t.slots.iter().enumerate() {
            let (Some(client), Some(Some(c))) = (owner, t.cursors.get(i)) else {
                continue;
            };
            let slot = c.page.line();
            let lost = slot.lost.load(Ordering::Relaxed);
            // A new holder, or a reopened slot (its count restarted): from zero.
            let before = match s.mq.lag.get(&(key, i as u32)) {
                Some(&(c, r)) if c == *client && r <= lost => r,
                _ => 0,
            };
            let mut reported = before;
            if lost > before {
                let n = Notice::Lagged {
                    topic: name.clone(),
                    seq: slot.next_seq.load(Ordering::Relaxed),
                    lost: lost - before,
                };
                let has_queue = s.clients.get(client).is_some_and(|c| c.notices.get().is_some());
                if !has_queue || post(s, *client, &n) {
                    reported = lost;
                }
            }
            seen.insert((key, i as u32), (*client, reported));
        }
    }
    s.mq.lag = seen;
}

/// How subscriber slot `slot` of `t` is delivered: "mqueue" when a live
/// dispatch thread serves it, else "shm" (for statistics).
pub(crate) fn delivery_of(s: &State, t: &Topic, slot: u32) -> &'static str {
    if t.slots.get(slot as usize) == Some(&Some(crate::durable::LOG_WRITER)) {
        return "log writer";
    }
    let key = t.key();
    let live = |d: &Dispatcher| !d.thread.as_ref().is_some_and(|h| h.is_finished());
    if s.mq
        .dispatchers
        .iter()
        .any(|d| d.topic_key == key && d.slot == slot && live(d))
    {
        "mqueue"
    } else {
        "shm"
    }
}

/// `SubscriberOpenMqueue`: a subscriber slot on `topic` for `client`, read by
/// a new dispatch thread that forwards into a new queue. Hands out the
/// segment and waiters page (read-only), the queue's read end, and the
/// slot's cursor page (read-only: the client reads its counts there).
pub(crate) fn open_subscriber(s: &mut State, topic: &str, client: u64, fds: &mut Vec<OwnedFd>) -> Result<Reply> {
    let instance = s.instance_id;
    let cpus = s.affinity.dispatch.clone();
    let notices = s.clients.get(&client).map(|c| Arc::clone(&c.notices));
    s.mq.dispatchers
        .retain(|d| !d.thread.as_ref().is_some_and(|h| h.is_finished()));
    let t = s.topics.get_mut(topic).ok_or_else(|| not_found(topic))?;
    let i = t.free_slot(SlotKind::Subscriber, topic)?;
    let geo = *t.seg.geometry();
    let (msg_max, msgsize_max) = mq::system_limits();
    let msgsize = (geo.max_message as usize + FRAME_HEADER).min(msgsize_max);
    let maxmsg = QUEUE_DEPTH.min(msg_max);
    let lossy = geo.policy == Policy::Lossy;
    // Lossy: a full queue drops the message (non-blocking end); reliable: the
    // thread waits for room, and the ring's gate holds publishers back.
    let q = make_queue(instance, lossy, maxmsg, msgsize)?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("duplicate a descriptor", e));
    let (seg_fd, control_fd, waiters_fd) = (dup(&t.fd_ro)?, dup(&t.control_ro)?, dup(&t.waiters_ro)?);
    let seg = Arc::new(Segment::open(&t.fd, &t.control_ro)?);
    // Registered (gating on reliable topics) before the reply: the subscriber
    // gets every message published after its open returns.
    let pid = s.clients.get(&client).map_or(0, |c| c.who.cred.pid);
    let (page, cursor_fd) = t.join(i as u32, pid, topic, None, false)?;
    let opened = (|| {
        let cursor_ro = aether::sys::shm::reopen_readonly(&cursor_fd)
            .map_err(|e| Error::io("reopen the cursor page read-only", e))?;
        let reader = Reader::new(seg, Arc::clone(&t.waiters), Some((i as u32, page)))?;
        Ok((reader, cursor_ro))
    })();
    let (mut reader, cursor_ro) = match opened {
        Ok(r) => r,
        Err(e) => {
            t.free(SlotKind::Subscriber, i as u32);
            return Err(e);
        }
    };
    reader.wait = WaitConfig {
        strategy: WaitStrategy::Futex,
        spin: 64,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let job = Job {
        reader,
        queue: q.daemon,
        msgsize,
        topic: topic.to_string(),
        slot: i as u32,
        stop: Arc::clone(&stop),
        notices,
    };
    let thread = match std::thread::Builder::new()
        .name("aetherd-dispatch".into())
        .spawn(move || {
            crate::config::pin(&cpus, "dispatch");
            job.run()
        }) {
        Ok(h) => h,
        Err(e) => {
            t.free(SlotKind::Subscriber, i as u32);
            return Err(Error::new(
                Status::Limit,
                format!("cannot start a dispatch thread: {e}"),
            ));
        }
    };
    t.take_slot(SlotKind::Subscriber, i, client);
    let key = t.key();
    s.mq.dispatchers.push(Dispatcher {
        client,
        topic: topic.to_string(),
        topic_key: key,
        slot: i as u32,
        stop,
        thread: Some(thread),
    });
    fds.push(seg_fd);
    fds.push(control_fd);
    fds.push(waiters_fd);
    fds.push(q.client);
    fds.push(cursor_ro);
    log::debug!("client {client}: mqueue subscriber on {topic:?} slot {i}, queue {maxmsg} x {msgsize} bytes");
    Ok(Reply::SubscribedMqueue {
        slot: i as u32,
        maxmsg: maxmsg as u32,
        msgsize: msgsize as u32,
    })
}

/// Takes out of `s` the dispatchers of `client`: all of them, or the one
/// serving `(topic, slot)` (of the live topic of that name, or of a deleted
/// one if none lives). Their stop flags are set; [`join`] them unlocked.
pub(crate) fn take(s: &mut State, client: u64, which: Option<(&str, u32)>) -> Vec<Dispatcher> {
    let live = which.and_then(|(name, _)| s.topics.get(name).map(Topic::key));
    let (out, keep) = std::mem::take(&mut s.mq.dispatchers).into_iter().partition(|d| {
        d.client == client
            && which
                .is_none_or(|(name, slot)| d.topic == name && d.slot == slot && live.is_none_or(|k| k == d.topic_key))
    });
    s.mq.dispatchers = keep;
    for d in &out {
        d.stop.store(true, Ordering::Release);
    }
    out
}

/// Waits for the threads of `ds` to end (each looks at its flag every 50 ms).
/// Call without the state lock: the threads never take it, but this waits.
pub(crate) fn join(ds: Vec<Dispatcher>) {
    for mut d in ds {
        if let Some(h) = d.thread.take() {
            let _ = h.join();
        }
    }
}

/// Draining, once every topic is closed: lets dispatch threads forward what
/// is left and their end-of-stream marker (at most [`DRAIN_GRACE`]), then
/// stops and joins them.
pub(crate) fn finish_all(state: &Mutex<State>) {
    let all = std::mem::take(&mut state.lock().expect("state lock").mq.dispatchers);
    let deadline = Instant::now() + DRAIN_GRACE;
    while Instant::now() < deadline && !all.iter().all(|d| d.thread.as_ref().is_none_or(|h| h.is_finished())) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for d in &all {
        d.stop.store(true, Ordering::Release);
    }
    join(all);
}

/// What a dispatch thread owns.
struct Job {
    reader: Reader,
    queue: OwnedFd,
    msgsize: usize,
    topic: String,
    slot: u32,
    stop: Arc<AtomicBool>,
    notices: Option<Notices>,
}

impl Job {
    /// Moves past a record overwritten while read; a segment whose horizon
    /// is impossible (the reader reports it at its next look) is backed off from.
    fn drop_overwritten(&mut self, rec: &aether::ring::Record) {
        if self.reader.drop_overwritten(rec).is_err() {
            std::thread::sleep(POLL);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Sends `frame`, waiting for room until stopped. Returns whether it was sent.
    fn send_waiting(&self, frame: &[u8]) -> std::io::Result<bool> {
        loop {
            if self.stopped() {
                return Ok(false);
            }
            match mq::timedsend(self.queue.as_fd(), frame, Some(POLL)) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                // The lossy queue's end is non-blocking: wait here instead.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL / 5),
                Err(e) => return Err(e),
            }
        }
    }

    /// Forwards messages until stopped (the subscriber closed or its client
    /// went) or the topic ends (deleted, broker closed): then queues an
    /// end-of-stream frame saying why.
    fn run(mut self) {
        let lossy = self.reader.geometry().policy == Policy::Lossy;
        let cap = self.msgsize - FRAME_HEADER;
        let mut buf = vec![0u8; self.msgsize];
        let mut too_large = 0u64;
        let mut last_corrupt_log: Option<Instant> = None;
        let end = loop {
            if self.stopped() {
                return;
            }
            let rec = match self.reader.next(&Deadline::after(Some(POLL))) {
                Ok(r) => r,
                Err(e) if e.status == Status::Timeout => continue,
                Err(e) if e.status == Status::Corrupt => {
                    // A damaged segment must not make this thread spin or flood the
                    // log: report it at most once a second, and back off.
                    if last_corrupt_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        log::warn!("dispatch {:?} slot {}: {e}", self.topic, self.slot);
                        last_corrupt_log = Some(Instant::now());
                    }
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(e) => break e.status,
            };
            if rec.len > cap {
                // Never truncated: skipped, counted in the slot, and reported.
                if self.reader.overwritten(rec.pos) {
                    self.drop_overwritten(&rec);
                    continue;
                }
                self.reader.pass(&rec, false);
                too_large += 1;
                if let Some(c) = self.reader.cursor_page() {
                    c.line().too_large.store(too_large, Ordering::Release);
                }
                if let Some(q) = self.notices.as_ref().and_then(|n| n.get()) {
                    q.post(&Notice::TooLarge {
                        topic: self.topic.clone(),
                        seq: rec.seq,
                        len: rec.len as u64,
                    });
                }
                continue;
            }
            // SAFETY: rec.data..+rec.len lies in the ring (validated by `next`);
            // `buf` has room for the header and `cap >= rec.len` bytes. A lossy
            // ring may overwrite the source meanwhile: checked right below.
            unsafe {
                std::ptr::copy_nonoverlapping(rec.data, buf.as_mut_ptr().add(FRAME_HEADER), rec.len);
            }
            if self.reader.overwritten(rec.pos) {
                self.drop_overwritten(&rec);
                continue;
            }
            notice::put_message_header(&mut buf, rec.seq, rec.timestamp_ns);
            let frame = &buf[..FRAME_HEADER + rec.len];
            let sent = if lossy {
                match mq::send(self.queue.as_fd(), frame) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
                    Err(e) => Err(e),
                }
            } else {
                match self.send_waiting(frame) {
                    Ok(false) => return, // stopped
                    r => r,
                }
            };
            match sent {
                Ok(true) => self.reader.consume(&rec),
                // Queue full on a lossy topic: the subscriber lost this one.
                Ok(false) => self.reader.pass(&rec, true),
                Err(e) => {
                    log::warn!("dispatch {:?} slot {}: mq_send: {e}", self.topic, self.slot);
                    break Status::Io;
                }
            }
        };
        log::debug!(
            "dispatch {:?} slot {}: stream ends ({})",
            self.topic,
            self.slot,
            end.describe()
        );
        let _ = self.send_waiting(&notice::end_frame(end));
    }
}
