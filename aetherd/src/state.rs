//! What the daemon knows, shared by all its threads under one mutex: the
//! topics with their segments and slot owners, and the connected clients.

use crate::access::Identity;
use crate::config::Config;
use crate::keeper::{Held, Keeper};
use aether::segment::{wake_all, Cursor, Segment, Waiters, SLOT_FREE};
use aether::sys::uds::SeqPacket;
use aether::{Error, Result, Status};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

pub(crate) struct Topic {
    /// The segment's keeper mutex, held while the topic lives. First, so that
    /// it is let go before the segment below is unmapped.
    pub(crate) _held: Held,
    /// The segment: read-write (for publishers and the daemon's own readers)
    /// and read-only (for subscribers).
    pub(crate) fd: OwnedFd,
    pub(crate) fd_ro: OwnedFd,
    /// The control page (gate line, directories), read-only for every client;
    /// the daemon writes it through `seg`.
    pub(crate) control_ro: OwnedFd,
    pub(crate) seg: Arc<Segment>,
    /// The waiters page: read-write (subscribers), read-only (publishers).
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) waiters_fd: OwnedFd,
    pub(crate) waiters_ro: OwnedFd,
    /// Per subscriber slot: the cursor page of its current holder.
    pub(crate) cursors: Vec<Option<CursorEntry>>,
    /// Which client holds each subscriber slot.
    pub(crate) slots: Vec<Option<u64>>,
    /// Which client holds each publisher slot.
    pub(crate) pub_slots: Vec<Option<u64>>,
    /// The last rate sample (about once a second).
    pub(crate) rate: Rate,
    /// Per subscriber slot: its delivered count when last sampled, and when it last changed.
    pub(crate) activity: Vec<(u64, Instant)>,
    /// The uid whose request made the topic (its bytes count against that
    /// uid's quota); `None` when the admin pipe or an embedder made it.
    pub(crate) creator: Option<u32>,
    /// A durable topic's log and its writer.
    pub(crate) durable: Option<Arc<crate::durable::Durable>>,
    /// Per subscriber slot: the durable subscription it reads for, if any.
    pub(crate) names: Vec<Option<String>>,
}

/// A topic's rates, sampled by the housekeeper about once a second.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rate {
    /// Messages published and ring bytes claimed at the last sample, and when.
    pub(crate) published: u64,
    pub(crate) ring_bytes: u64,
    pub(crate) at: Instant,
    /// Per second between the last two samples.
    pub(crate) msgs_per_s: f64,
    pub(crate) bytes_per_s: f64,
}

impl Rate {
    pub(crate) fn new() -> Rate {
        Rate {
            published: 0,
            ring_bytes: 0,
            at: Instant::now(),
            msgs_per_s: 0.0,
            bytes_per_s: 0.0,
        }
    }
}

/// A subscriber's cursor page as the daemon keeps it: the owner generation it
/// was made for, the mapping (for statistics and draining), and its
/// descriptor (read-only copies go to reliable publishers); and, once the
/// subscriber asked to be pollable, its eventfd (copies go to the subscriber
/// and to publishers, which signal it while the subscriber is armed).
pub(crate) struct CursorEntry {
    pub(crate) gen: u64,
    pub(crate) page: Arc<Cursor>,
    pub(crate) fd: OwnedFd,
    pub(crate) notify: Option<OwnedFd>,
}

/// The two kinds of per-topic slots the daemon hands out and takes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotKind {
    Subscriber,
    Publisher,
}

impl Topic {
    /// Identifies this incarnation of the topic: its segment's salt, random
    /// and fixed for the segment's life (the protocol names incarnations the
    /// same way); a topic deleted and made again gets a new one.
    pub(crate) fn key(&self) -> u64 {
        self.seg.geometry().salt
    }

    pub(crate) fn owners(&mut self, kind: SlotKind) -> &mut Vec<Option<u64>> {
        match kind {
            SlotKind::Subscriber => &mut self.slots,
            SlotKind::Publisher => &mut self.pub_slots,
        }
    }

    /// The first free slot of `kind` on this topic (named `name`), or the
    /// `Limit` error that says it is full.
    pub(crate) fn free_slot(&mut self, kind: SlotKind, name: &str) -> Result<usize> {
        let owners = self.owners(kind);
        owners.iter().position(Option::is_none).ok_or_else(|| {
            let what = match kind {
                SlotKind::Publisher => "publishers",
                SlotKind::Subscriber => "subscribers",
            };
            let msg = format!("topic {name:?} has its maximum of {} {what} open", owners.len());
            Error::new(Status::Limit, msg)
        })
    }

    /// Gives slot `i` of `kind` to `client` (a subscriber slot's lag record starts afresh).
    pub(crate) fn take_slot(&mut self, kind: SlotKind, i: usize, client: u64) {
        self.owners(kind)[i] = Some(client);
        if kind == SlotKind::Subscriber {
            if let Some(a) = self.activity.get_mut(i) {
                *a = (0, Instant::now());
            }
        }
    }

    /// Makes subscriber slot `i`'s cursor page and registers the slot for
    /// process `pid` (see `Segment::join_at`), its cursor at `start` or at
    /// the tail, gating publishers on a reliable topic (and when
    /// `log_writer`). Returns the page and its descriptor.
    pub(crate) fn join(
        &mut self,
        i: u32,
        pid: u32,
        topic: &str,
        start: Option<(u64, u64)>,
        log_writer: bool,
    ) -> Result<(Arc<Cursor>, OwnedFd)> {
        let (fd, page) = Cursor::create(topic, self.key(), i)?;
        let page = Arc::new(page);
        let gating = log_writer || self.seg.geometry().policy == aether::Policy::Reliable;
        let gen = self.seg.join_at(i, pid, &page, start, gating)?;
        let mine = fd
            .try_clone()
            .map_err(|e| Error::io("duplicate a cursor page descriptor", e))?;
        self.cursors[i as usize] = Some(CursorEntry {
            gen,
            page: Arc::clone(&page),
            fd: mine,
            notify: None,
        });
        Ok((page, fd))
    }

    /// Takes slot `i` back: it stops counting at once (nobody waits for its
    /// holder any more), and it is fenced: its holder's handle fails from its
    /// next call (the owner generation moves on).
    pub(crate) fn free(&mut self, kind: SlotKind, i: u32) {
        match kind {
            SlotKind::Subscriber => {
                self.seg.leave(i, &self.waiters);
                if let Some(n) = self.names.get_mut(i as usize) {
                    *n = None;
                }
                if let Some(c) = self.cursors.get_mut(i as usize) {
                    *c = None;
                }
            }
            SlotKind::Publisher => self.seg.leave_publisher(i, &self.waiters),
        }
    }

    /// How many slots of `kind` `client` holds here.
    pub(crate) fn held_by(&self, kind: SlotKind, client: u64) -> usize {
        let owners = match kind {
            SlotKind::Subscriber => &self.slots,
            SlotKind::Publisher => &self.pub_slots,
        };
        owners.iter().filter(|o| **o == Some(client)).count()
    }

    /// Sets the topic's life state in the segment and wakes every sleeper
    /// (and signals every pollable subscriber) so they see it.
    pub(crate) fn set_state(&self, state: u32) {
        self.seg.gate().state.store(state, Ordering::SeqCst);
        wake_all(&self.seg.data_notify().word);
        wake_all(&self.waiters.page().space.word);
        for fd in self.cursors.iter().flatten().filter_map(|c| c.notify.as_ref()) {
            aether::sys::eventfd::signal(fd);
        }
    }

    /// Whether every subscriber has read everything published.
    pub(crate) fn caught_up(&self) -> bool {
        let tail = self.seg.tail().lo.load(Ordering::Acquire);
        self.cursors.iter().flatten().all(|e| {
            let c = e.page.line().cursor.load(Ordering::Acquire);
            c == SLOT_FREE || c >= tail
        })
    }
}

/// A connected client.
pub(crate) struct Client {
    pub(crate) who: Identity,
    pub(crate) conn: Arc<SeqPacket>,
    /// Readable once the process has exited (None where pidfd_open is unavailable).
    pub(crate) pidfd: Option<OwnedFd>,
    pub(crate) connected: Instant,
    /// The daemon's end of the client's control queue, once it asked for one.
    pub(crate) notices: Notices,
}

pub(crate) struct State {
    pub(crate) instance_id: u64,
    /// Replaced only through [`State::set_config`].
    pub(crate) config: Config,
    /// Moves on each time `config` is replaced: what was decided from the
    /// configuration can be kept until then without this lock (the bridge
    /// keeps whether its identity may publish to each topic).
    pub(crate) config_epoch: Arc<AtomicU64>,
    pub(crate) topics: HashMap<String, Topic>,
    pub(crate) clients: HashMap<u64, Client>,
    pub(crate) next_client: u64,
    /// Clients found dead (process exited) rather than closed cleanly.
    pub(crate) dead_clients: u64,
    pub(crate) draining: bool,
    pub(crate) started: Instant,
    /// Dispatch threads of `delivery=mqueue` subscribers, lag reports.
    pub(crate) mq: Registry,
    /// Holds every topic's keeper mutex (after `topics`: dropped after them).
    pub(crate) keeper: Arc<Keeper>,
    /// When each quota refusal was last logged.
    pub(crate) refusals: crate::quota::Refusals,
    /// Where the configuration came from, so that a reload (SIGHUP or the
    /// admin pipe) redoes the same merge; `None` for an embedded broker.
    pub(crate) loaded: Option<crate::config::Loaded>,
    /// Where durable topics keep their logs; `None`: this broker makes none.
    pub(crate) state_dir: Option<std::path::PathBuf>,
    /// The state directory's lock, once durable topics use it: one daemon at a time.
    pub(crate) state_lock: Option<nix::fcntl::Flock<std::fs::File>>,
    /// Which CPUs each kind of thread runs on (`[daemon] cpu_affinity`).
    pub(crate) affinity: crate::config::Affinity,
    /// The bridge's counters, while one runs.
    pub(crate) bridge: Option<Arc<crate::bridge::Counters>>,
}

impl State {
    /// Puts `config` in force (a reload), moving `config_epoch` on.
    pub(crate) fn set_config(&mut self, config: Config) {
        self.config = config;
        // (Under the state lock, as the configuration: who finds the epoch
        // moved reads both again under that lock.)
        self.config_epoch.fetch_add(1, Ordering::Release);
    }
}

/// The error for a topic that does not exist.
pub(crate) fn not_found(topic: &str) -> Error {
    Error::new(Status::NotFound, format!("no topic named {topic:?}"))
}

/// The daemon's mqueue state: dispatch threads and what was last reported.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) dispatchers: Vec<Dispatcher>,
    /// Per (topic, subscriber slot): the holder and the lost count last reported to it.
    pub(crate) lag: HashMap<(u64, u32), (u64, u64)>,
}

/// The daemon's end of a client's control queue.
pub(crate) struct NoticeQueue {
    pub(crate) fd: OwnedFd,
    /// Notices dropped (queue full) since the last one that fitted.
    pub(crate) dropped: AtomicU32,
}

/// A client's control queue, once it asked for one.
pub(crate) type Notices = Arc<OnceLock<NoticeQueue>>;

/// One `delivery=mqueue` subscriber's dispatch thread.
pub(crate) struct Dispatcher {
    pub(crate) client: u64,
    pub(crate) topic: String,
    pub(crate) topic_key: u64,
    pub(crate) slot: u32,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Not joined (see `join`): the thread still stops at its next look.
        self.stop.store(true, Ordering::Release);
    }
}

impl NoticeQueue {
    pub(crate) fn new(fd: OwnedFd) -> NoticeQueue {
        NoticeQueue {
            fd,
            dropped: AtomicU32::new(0),
        }
    }
}
