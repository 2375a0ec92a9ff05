//! The keeper threads (`aetherd-keeper`): each holds, for as long as a topic
//! lives, the robust process-shared mutex in its segment's gate line
//! (`aether::segment::GateLine::keeper`). When the daemon dies, however it
//! dies, the kernel walks each thread's robust list and marks every mutex
//! it held `KEEPER_DIED`: the clients of every topic see it at their next
//! look, with no system call on their side (docs/ARCHITECTURE.md, "A
//! daemon's death").
//!
//! A robust mutex must be unlocked by the thread that locked it, and before
//! its memory is unmapped (glibc links held robust mutexes through their
//! own memory), so one thread does both, on request; a [`Held`] guard asks
//! for the unlock when its topic goes. The kernel walks at most 2048 entries
//! of a list: each thread holds at most [`PER_THREAD`].

use aether::segment::Segment;
use aether::{Error, Result, Status};
use std::sync::mpsc::{channel, sync_channel, Sender, SyncSender};
use std::sync::{Arc, Mutex};

/// Mutexes one keeper thread holds at most (the kernel's limit is 2048).
const PER_THREAD: usize = 1024;

enum Request {
    /// Initialise and lock the mutex at this address; answer whether it worked.
    Lock(usize, SyncSender<bool>),
    /// Unlock it; answer when done.
    Unlock(usize, SyncSender<()>),
}

struct Thread {
    requests: Sender<Request>,
    held: usize,
}

/// The keeper threads of one broker.
#[derive(Default)]
pub(crate) struct Keeper {
    threads: Mutex<Vec<Thread>>,
}

/// A held keeper mutex: unlocked (by its thread) when dropped. Drop it
/// before the segment it lives in is unmapped.
pub(crate) struct Held {
    keeper: Arc<Keeper>,
    thread: usize,
    addr: usize,
}

impl Keeper {
    /// Locks `seg`'s keeper mutex on a keeper thread (starting one if all are full).
    pub(crate) fn hold(self: &Arc<Keeper>, seg: &Segment) -> Result<Held> {
        let addr = seg.gate().keeper.as_ptr() as usize;
        let mut threads = self.threads.lock().expect("keeper lock");
        let i = match threads.iter().position(|t| t.held < PER_THREAD) {
            Some(i) => i,
            None => {
                threads.push(spawn()?);
                threads.len() - 1
            }
        };
        let (tx, rx) = sync_channel(1);
        let sent = threads[i].requests.send(Request::Lock(addr, tx)).is_ok();
        if !sent || rx.recv() != Ok(true) {
            return Err(Error::new(
                Status::Internal,
                "the keeper thread could not take the segment's mutex",
            ));
        }
        threads[i].held += 1;
        Ok(Held {
            keeper: Arc::clone(self),
            thread: i,
            addr,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut threads = self.keeper.threads.lock().expect("keeper lock");
        if let Some(t) = threads.get_mut(self.thread) {
            let (tx, rx) = sync_channel(1);
            if t.requests.send(Request::Unlock(self.addr, tx)).is_ok() {
                let _ = rx.recv();
            }
            t.held -= 1;
        }
    }
}

fn spawn() -> Result<Thread> {
    let (tx, rx) = channel::<Request>();
    std::thread::Builder::new()
        .name("aetherd-keeper".into())
        .spawn(move || {
            // Not the affinity of whichever thread started it.
            crate::config::pin(&[], "keeper");
            for r in rx {
                match r {
                    Request::Lock(addr, done) => {
                        let _ = done.send(lock(addr as *mut libc::pthread_mutex_t));
                    }
                    Request::Unlock(addr, done) => {
                        // SAFETY: this thread locked the mutex at `addr` (Lock),
                        // and its segment is still mapped: `Held` is dropped
                        // before the segment.
                        unsafe { libc::pthread_mutex_unlock(addr as *mut libc::pthread_mutex_t) };
                        let _ = done.send(());
                    }
                }
            }
        })
        .map_err(|e| Error::new(Status::Limit, format!("cannot start a keeper thread: {e}")))?;
    Ok(Thread { requests: tx, held: 0 })
}

/// Initialises the mutex at `m` (robust, process-shared) and locks it.
fn lock(m: *mut libc::pthread_mutex_t) -> bool {
    // SAFETY: `m` points at the 40 bytes of a gate line's keeper in a segment
    // the daemon made and has mapped (size and alignment asserted in
    // aether::segment); no other thread uses it until this one has locked it.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr) == 0
            && libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED) == 0
            && libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST) == 0
            && libc::pthread_mutex_init(m, &attr) == 0
            && libc::pthread_mutex_lock(m) == 0
    }
}
