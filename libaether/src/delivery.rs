//! How a subscriber gets its messages, and the receiving end of
//! `delivery=mqueue` (see docs/ARCHITECTURE.md, "Message queues").
//!
//! A [`Delivery::Mqueue`] subscriber owns the read end of a POSIX message
//! queue that a daemon thread fills from the ring: each queued message is a
//! [`crate::notice::Frame`] (sequence number, timestamp, payload), and the
//! last one an end-of-stream frame saying why the stream ended. The queue
//! descriptor is pollable, so such a subscriber can wait in poll/epoll with
//! other descriptors. Messages are copied (no zero-copy views).

use crate::error::{Error, Result, Status};
use crate::notice::{self, Frame, FRAME_HEADER};
use crate::ring::Deadline;
use crate::sys::mqueue as mq;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// Metadata of a received message (what a receive into the caller's buffer gives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The message's length: the first `len` bytes of the buffer.
    pub len: usize,
    /// Its sequence number in the topic (0, 1, 2, ... per topic).
    pub seq: u64,
    /// When it was published: CLOCK_REALTIME, nanoseconds since the epoch.
    pub timestamp_ns: u64,
}

/// How a subscriber gets its messages.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Straight from the topic's shared-memory ring: lowest latency,
    /// zero-copy views (the default).
    #[default]
    Shm = 0,
    /// Through a POSIX message queue that a daemon thread fills from the
    /// ring. The queue's descriptor ([`crate::Subscriber::fd`]) is pollable.
    /// Messages are copied; a message larger than the queue's message size
    /// (at most `/proc/sys/fs/mqueue/msgsize_max` minus a 24-byte header) is
    /// skipped, counted ([`crate::Subscriber::too_large`]) and reported with a
    /// notice on the client's control queue.
    Mqueue = 1,
}

impl Delivery {
    /// The delivery of a C `aether_delivery` value; `None` for an unknown one.
    pub fn from_u32(v: u32) -> Option<Delivery> {
        match v {
            0 => Some(Delivery::Shm),
            1 => Some(Delivery::Mqueue),
            _ => None,
        }
    }
}

/// While waiting, how often a receiver checks that the daemon is still there.
const SLICE: Duration = Duration::from_millis(250);

/// The receiving end of a `delivery=mqueue` subscriber.
pub(crate) struct MqReceiver {
    fd: OwnedFd,
    /// The queue's message size: `buf` is this long.
    msgsize: usize,
    buf: Vec<u8>,
    /// Length of a frame in `buf` not handed out yet (the caller's buffer was too small).
    pending: Option<usize>,
    /// Why the stream ended, once it has.
    ended: Option<Error>,
    delivered: u64,
    too_large_len: usize,
}

fn end_error(status: Status) -> Error {
    let why = match status {
        Status::NotFound => "the topic was deleted",
        Status::Shutdown => "the broker is shutting down",
        _ => "the broker ended this subscriber's message stream",
    };
    Error::new(status, why)
}

impl MqReceiver {
    /// Takes the queue the daemon sent; `msgsize` is what its reply said.
    pub(crate) fn new(fd: OwnedFd, msgsize: usize) -> Result<MqReceiver> {
        let attr = mq::getattr(fd.as_fd()).map_err(|e| Error::io("mq_getattr on the subscriber's queue", e))?;
        if attr.msgsize != msgsize || msgsize <= FRAME_HEADER {
            return Err(Error::protocol(format!(
                "the daemon's queue has message size {}, its reply said {msgsize}",
                attr.msgsize
            )));
        }
        Ok(MqReceiver {
            fd,
            msgsize,
            buf: vec![0u8; msgsize],
            pending: None,
            ended: None,
            delivered: 0,
            too_large_len: 0,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Largest payload the queue carries.
    pub(crate) fn max_message(&self) -> usize {
        self.msgsize - FRAME_HEADER
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    pub(crate) fn too_large_len(&self) -> usize {
        self.too_large_len
    }

    /// Waits for the next frame until `deadline`; `hung_up` says whether the
    /// daemon closed our connection (then nothing more will come).
    fn wait_frame(&mut self, deadline: &Deadline, hung_up: &dyn Fn() -> bool) -> Result<usize> {
        loop {
            let left = deadline.remaining().map(Duration::from_nanos);
            let slice = left.map_or(SLICE, |l| l.min(SLICE));
            match mq::timedreceive(self.fd.as_fd(), &mut self.buf, Some(slice)) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    // Nothing queued: if the daemon is gone, nothing ever will be.
                    // (A draining daemon ends every stream with a frame first:
                    // a hang-up without one is a death.)
                    if hung_up() {
                        let e = Error::new(
                            Status::Unavailable,
                            "aetherd closed the connection without ending this stream: it has died",
                        );
                        self.ended = Some(e.clone());
                        return Err(e);
                    }
                    if left.is_some_and(|l| l <= slice) {
                        return Err(Error::new(Status::Timeout, "timed out waiting"));
                    }
                }
                Err(e) => return Err(Error::io("mq_timedreceive on the subscriber's queue", e)),
            }
        }
    }

    /// Copies the next message into `buf`. A message longer than `buf` stays
    /// unread: `TooLarge`, and [`too_large_len`](Self::too_large_len) gives its length.
    pub(crate) fn receive_into(
        &mut self,
        buf: &mut [u8],
        deadline: &Deadline,
        hung_up: &dyn Fn() -> bool,
    ) -> Result<Received> {
        let n = match self.pending {
            Some(n) => n,
            None => {
                if let Some(e) = &self.ended {
                    return Err(e.clone());
                }
                let n = self.wait_frame(deadline, hung_up)?;
                self.pending = Some(n);
                n
            }
        };
        let (seq, timestamp_ns, len) = match notice::decode_frame(&self.buf[..n]) {
            Err(e) => {
                self.pending = None;
                return Err(e);
            }
            Ok(Frame::End(status)) => {
                self.pending = None;
                let e = end_error(status);
                self.ended = Some(e.clone());
                return Err(e);
            }
            Ok(Frame::Message {
                seq,
                timestamp_ns,
                data,
            }) => {
                if data.len() > buf.len() {
                    self.too_large_len = data.len();
                    return Err(Error::new(
                        Status::TooLarge,
                        format!("message of {} bytes does not fit a buffer of {}", data.len(), buf.len()),
                    ));
                }
                buf[..data.len()].copy_from_slice(data);
                (seq, timestamp_ns, data.len())
            }
        };
        self.pending = None;
        self.delivered += 1;
        Ok(Received { len, seq, timestamp_ns })
    }
}
