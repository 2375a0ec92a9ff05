//! A topic held in one process, handed out as the daemon would: for the
//! ring's own tests, examples and benchmarks, which exercise [`Reader`] and
//! [`Writer`] without a daemon. Everything is mapped read-write here; the
//! daemon's clients get read-only mappings where docs/SECURITY.md says.

use crate::error::{Error, Result};
use crate::ring::{Reader, SubscriberSource, Writer};
use crate::segment::{Cursor, Segment, TopicParams, Waiters};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

/// Cursor pages by subscriber slot, with the owner generation they were made for.
type CursorTable = Arc<Mutex<Vec<Option<(u64, Arc<Cursor>)>>>>;
/// Pollable subscribers' eventfds by slot, with the owner generation.
type NotifierTable = Arc<Mutex<Vec<Option<(u64, OwnedFd)>>>>;

/// A segment, its waiters page, and the cursor pages and eventfds of the
/// slots handed out.
pub struct LocalTopic {
    pub seg: Arc<Segment>,
    pub waiters: Arc<Waiters>,
    cursors: CursorTable,
    notifiers: NotifierTable,
    name: String,
}

impl LocalTopic {
    pub fn create(name: &str, params: &TopicParams) -> Result<LocalTopic> {
        let (_, _, seg) = Segment::create(name, params, 1, 0)?;
        let (_, waiters) = Waiters::create(name, seg.geometry().salt)?;
        let slots = params.max_subscribers as usize;
        Ok(LocalTopic {
            seg: Arc::new(seg),
            waiters: Arc::new(waiters),
            cursors: Arc::new(Mutex::new((0..slots).map(|_| None).collect())),
            notifiers: Arc::new(Mutex::new((0..slots).map(|_| None).collect())),
            name: name.to_string(),
        })
    }

    /// Hands subscriber slot `i` out (a new cursor page, registered as
    /// `Segment::join` does) and returns a reader on it.
    pub fn reader(&self, i: u32) -> Result<Reader> {
        let (_, page) = Cursor::create(&self.name, self.seg.geometry().salt, i)?;
        let page = Arc::new(page);
        let gen = self.seg.join(i, std::process::id(), &page)?;
        let mut table = self
            .cursors
            .lock()
            .map_err(|_| Error::invalid("cursor table poisoned"))?;
        let entry = table
            .get_mut(i as usize)
            .ok_or_else(|| Error::invalid(format!("slot {i} out of range")))?;
        *entry = Some((gen, Arc::clone(&page)));
        drop(table);
        Reader::new(Arc::clone(&self.seg), Arc::clone(&self.waiters), Some((i, page)))
    }

    /// The eventfd of subscriber slot `i` (made on first call, as the daemon
    /// does for `aether_subscriber_fd`): the subscriber's own copy.
    pub fn notifier(&self, i: u32) -> Result<OwnedFd> {
        let gen = self
            .seg
            .slot(i)
            .ok_or_else(|| Error::invalid(format!("slot {i} out of range")))?
            .owner_gen
            .load(std::sync::atomic::Ordering::Acquire);
        let mut table = self
            .notifiers
            .lock()
            .map_err(|_| Error::invalid("notifier table poisoned"))?;
        let entry = &mut table[i as usize];
        if !matches!(entry, Some((g, _)) if *g == gen) {
            *entry = Some((gen, crate::sys::eventfd::create().map_err(|e| Error::io("eventfd", e))?));
        }
        let (_, fd) = entry.as_ref().expect("just made");
        fd.try_clone().map_err(|e| Error::io("dup eventfd", e))
    }

    /// Takes subscriber slot `i` back (as the daemon does when its holder goes).
    pub fn leave(&self, i: u32) {
        self.seg.leave(i, &self.waiters);
        if let Ok(mut table) = self.cursors.lock() {
            if let Some(e) = table.get_mut(i as usize) {
                *e = None;
            }
        }
        if let Ok(mut table) = self.notifiers.lock() {
            if let Some(e) = table.get_mut(i as usize) {
                *e = None;
            }
        }
    }

    /// A writer announcing its claims in publisher slot `slot` (`None`: a
    /// writer known to be alone), mapping gating cursors from this topic.
    pub fn writer(&self, slot: Option<u32>) -> Writer {
        let source = LocalSubscribers(Arc::clone(&self.cursors), Arc::clone(&self.notifiers));
        Writer::new(
            Arc::clone(&self.seg),
            Arc::clone(&self.waiters),
            slot,
            Some(Box::new(source)),
        )
    }
}

struct LocalSubscribers(CursorTable, NotifierTable);

impl SubscriberSource for LocalSubscribers {
    fn cursors(&mut self, wanted: &[(u32, u64)]) -> Result<Vec<(u32, u64, Arc<Cursor>)>> {
        let table = self.0.lock().map_err(|_| Error::invalid("cursor table poisoned"))?;
        Ok(wanted
            .iter()
            .filter_map(|&(i, gen)| match table.get(i as usize) {
                Some(Some((g, page))) if *g == gen => Some((i, gen, Arc::clone(page))),
                _ => None,
            })
            .collect())
    }

    fn notifiers(&mut self, wanted: &[(u32, u64)]) -> Result<Vec<(u32, u64, OwnedFd)>> {
        let table = self.1.lock().map_err(|_| Error::invalid("notifier table poisoned"))?;
        Ok(wanted
            .iter()
            .filter_map(|&(i, gen)| match table.get(i as usize) {
                Some(Some((g, fd))) if *g == gen => Some((i, gen, fd.try_clone().ok()?)),
                _ => None,
            })
            .collect())
    }
}

/// The segment's own accessors (tail, gate, stats, ...) straight on the topic.
impl std::ops::Deref for LocalTopic {
    type Target = Segment;
    fn deref(&self) -> &Segment {
        &self.seg
    }
}
