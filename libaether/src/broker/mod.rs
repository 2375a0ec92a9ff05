//! The daemon's core: the control socket, topics and their segments, and the
//! clients holding subscriber slots. `aetherd` is a thin binary over this.
//!
//! Threads: the acceptor (`aetherd-accept`) takes connections and starts one
//! thread per client (`aetherd-client`), which answers that client's requests
//! in order. All of them share [`State`] under one mutex; no lock is held
//! across a blocking call on a socket.

use crate::error::{Error, Result, Status};
use crate::protocol::{self, Reply, Request};
use crate::segment::{Segment, TopicParams, SLOT_FREE};
use crate::sys::{self, uds::SeqPacket};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Topic {
    shm_name: String,
    fd: OwnedFd,
    seg: Segment,
    /// Which client holds each subscriber slot.
    slots: Vec<Option<u64>>,
    /// Which client holds each publisher slot.
    pub_slots: Vec<Option<u64>>,
}

/// The two kinds of per-topic slots the daemon hands out and takes back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    Subscriber,
    Publisher,
}

impl Topic {
    fn owners(&mut self, kind: SlotKind) -> &mut Vec<Option<u64>> {
        match kind {
            SlotKind::Subscriber => &mut self.slots,
            SlotKind::Publisher => &mut self.pub_slots,
        }
    }

    /// Clears slot `i` in the segment, so that nobody waits for its holder any more.
    fn free(&self, kind: SlotKind, i: u32) {
        match kind {
            SlotKind::Subscriber => {
                if let Some(slot) = self.seg.slot(i) {
                    slot.flags.store(0, Ordering::SeqCst);
                    slot.cursor.store(SLOT_FREE, Ordering::SeqCst);
                }
            }
            SlotKind::Publisher => {
                if let Some(slot) = self.seg.pub_slot(i) {
                    slot.claim.store(SLOT_FREE, Ordering::SeqCst);
                }
            }
        }
        let n = self.seg.space_notify();
        n.word.fetch_add(1, Ordering::SeqCst);
        sys::futex::wake_all(&n.word);
    }
}

struct State {
    instance_id: u64,
    topics: HashMap<String, Topic>,
    next_client: u64,
    /// Unlink each segment's name as soon as it exists (see `Broker::set_unnamed_segments`).
    unnamed_segments: bool,
}

/// A running broker bound to its socket. Dropping it removes the socket, the
/// lock file and every segment it created.
pub struct Broker {
    state: Arc<Mutex<State>>,
    listener: Arc<SeqPacket>,
    socket: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

fn take_lock(path: &Path) -> Result<File> {
    loop {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(&format!("open lock file {}", path.display()), e))?;
        // SAFETY: plain flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::new(
                Status::Exists,
                format!(
                    "another aetherd is already running on this socket (lock {} is held)",
                    path.display()
                ),
            ));
        }
        // The previous holder may have unlinked the file between our open and
        // flock: the lock only counts if the path still names our file.
        let same = match (f.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            return Ok(f);
        }
    }
}

impl Broker {
    /// Takes the daemon lock for `socket`, removes a stale socket and listens.
    pub fn bind(socket: &Path) -> Result<Broker> {
        if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| Error::io(&format!("create {}", dir.display()), e))?;
            }
        }
        let lock_path = crate::paths::lock_file(socket);
        let lock = take_lock(&lock_path)?;
        // We hold the lock, so a socket file here is a dead daemon's.
        let _ = std::fs::remove_file(socket);
        let listener =
            SeqPacket::listen(socket).map_err(|e| Error::io(&format!("listen on {}", socket.display()), e))?;
        Ok(Broker {
            state: Arc::new(Mutex::new(State {
                instance_id: sys::random_u64(),
                topics: HashMap::new(),
                next_client: 1,
                unnamed_segments: false,
            })),
            listener: Arc::new(listener),
            socket: socket.to_path_buf(),
            lock_path,
            _lock: lock,
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn instance_id(&self) -> u64 {
        self.state.lock().expect("state lock").instance_id
    }

    /// Starts the acceptor thread. It runs until the process exits.
    pub fn spawn_acceptor(&self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let listener = Arc::clone(&self.listener);
        let state = Arc::clone(&self.state);
        std::thread::Builder::new()
            .name("aetherd-accept".into())
            .spawn(move || loop {
                match listener.accept() {
                    Ok(conn) => {
                        let state = Arc::clone(&state);
                        let id = {
                            let mut s = state.lock().expect("state lock");
                            s.next_client += 1;
                            s.next_client
                        };
                        let r = std::thread::Builder::new()
                            .name("aetherd-client".into())
                            .spawn(move || serve_client(&state, id, conn));
                        if let Err(e) = r {
                            eprintln!("aetherd: cannot start a client thread: {e}");
                        }
                    }
                    Err(e) => {
                        eprintln!("aetherd: accept: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                }
            })
    }

    /// Removes each segment's name from /dev/shm as soon as it is created:
    /// clients get descriptors anyway, and a process that is killed leaves
    /// nothing behind. For brokers embedded in short-lived tools (the
    /// benchmark); the daemon keeps names so a restart can find them.
    pub fn set_unnamed_segments(&self, on: bool) {
        self.state.lock().expect("state lock").unnamed_segments = on;
    }

    /// Names of the current topics (for logs and tests).
    pub fn topics(&self) -> Vec<String> {
        self.state.lock().expect("state lock").topics.keys().cloned().collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        if let Ok(mut s) = self.state.lock() {
            for (_, t) in s.topics.drain() {
                let _ = sys::shm::unlink(&t.shm_name);
            }
        }
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

fn serve_client(state: &Mutex<State>, client: u64, conn: SeqPacket) {
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
                let (r, fd) = handle(state, client, req);
                (protocol::encode_reply(op as u16, id, &r), fd)
            }
            Err((id, op, e)) => (protocol::encode_reply(op, id, &Err(e)), None),
        };
        if conn.send(&reply, fd).is_err() {
            break;
        }
    }
    release_client(state, client);
}

/// Frees every subscriber slot `client` held, so reliable publishers stop waiting for it.
fn release_client(state: &Mutex<State>, client: u64) {
    let mut s = state.lock().expect("state lock");
    for t in s.topics.values_mut() {
        for kind in [SlotKind::Subscriber, SlotKind::Publisher] {
            for i in 0..t.owners(kind).len() {
                if t.owners(kind)[i] == Some(client) {
                    t.owners(kind)[i] = None;
                    t.free(kind, i as u32);
                }
            }
        }
    }
}

fn not_found(topic: &str) -> Error {
    Error::new(Status::NotFound, format!("no topic named {topic:?}"))
}

/// Answers one request. Returns the reply and the descriptor to attach, if any.
fn handle(state: &Mutex<State>, client: u64, req: Request) -> (Result<Reply>, Option<i32>) {
    let mut s = state.lock().expect("state lock");
    let instance_id = s.instance_id;
    match req {
        Request::Hello { .. } => (
            Ok(Reply::Hello {
                daemon_version: VERSION.into(),
                pid: std::process::id(),
                instance_id,
            }),
            None,
        ),
        Request::TopicCreate { topic, params } => (create_topic(&mut s, &topic, &params).map(|_| Reply::Done), None),
        Request::TopicDelete { topic } => {
            if let Err(e) = protocol::validate_topic(&topic) {
                return (Err(e), None);
            }
            match s.topics.remove(&topic) {
                Some(t) => {
                    let _ = sys::shm::unlink(&t.shm_name);
                    (Ok(Reply::Done), None)
                }
                None => (Err(not_found(&topic)), None),
            }
        }
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
    if let Err(e) = lookup(s, topic) {
        return (Err(e), None);
    }
    let t = s.topics.get_mut(topic).expect("looked up");
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

fn lookup<'a>(s: &'a State, topic: &str) -> Result<&'a Topic> {
    protocol::validate_topic(topic)?;
    s.topics.get(topic).ok_or_else(|| not_found(topic))
}

fn create_topic(s: &mut State, topic: &str, params: &TopicParams) -> Result<()> {
    protocol::validate_topic(topic)?;
    params.validate()?;
    if s.topics.contains_key(topic) {
        return Err(Error::new(Status::Exists, format!("topic {topic:?} already exists")));
    }
    let shm_name = format!("/aether.{:016x}.{topic}", s.instance_id);
    let (fd, seg) = Segment::create(&shm_name, topic, params, s.instance_id)?;
    if s.unnamed_segments {
        let _ = sys::shm::unlink(&shm_name);
    }
    let slots = vec![None; params.max_subscribers as usize];
    let pub_slots = vec![None; crate::segment::MAX_PUBLISHERS as usize];
    s.topics.insert(
        topic.to_string(),
        Topic {
            shm_name,
            fd,
            seg,
            slots,
            pub_slots,
        },
    );
    Ok(())
}
