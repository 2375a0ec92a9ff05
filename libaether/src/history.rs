//! A subscriber's history on a durable topic: the log files the daemon
//! handed over (read-only descriptors, oldest first), read in place in
//! order with every record checked, up to the sequence number where the
//! subscriber's ring cursor starts. The daemon put that cursor where its
//! log writer had written everything before it, so history and ring meet
//! with no gap and no duplicate.

use crate::logfile::{decode_at, decode_header, record_size, Found, RECORD_HEADER, REMOTE, SEGMENT_HEADER};
use crate::protocol::Start;
use crate::ring::{Deadline, Origin};
use crate::{sys, Error, Result, Status};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;

/// Bytes read from a log file at a time (a record larger is read whole).
const CHUNK: usize = 1 << 20;
/// How long the files are asked for again (a millisecond apart while a
/// receive waits) when they end before the ring starts. The daemon's log
/// writer may be just behind: a lossy subscriber counts itself lapped up
/// to a horizon step early (`ring::horizon_step`), before the writer has
/// logged what it missed. Past this, the log is taken to lack them:
/// `Corrupt`. A receive whose deadline comes first asks once more, then
/// returns `Timeout`; the next receive goes on where it left off.
const MORE_FOR_NS: u64 = 1_000_000_000;

/// The record `peek` found, as offsets into the buffer.
#[derive(Clone, Copy)]
struct Peeked {
    seq: u64,
    timestamp_ns: u64,
    at: usize,
    len: usize,
    origin: Option<Origin>,
    next: usize,
}

/// A message of the history, borrowed from the read buffer.
pub(crate) struct Logged<'a> {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub payload: &'a [u8],
    /// Where it was first published, if another broker (its bridge brought it).
    pub origin: Option<Origin>,
}

/// Asks the daemon for the log files from a seq on (`Request::LogFiles`).
pub(crate) type MoreFiles = Box<dyn FnMut(u64) -> Result<Vec<OwnedFd>> + Send>;

pub(crate) struct History {
    /// Files not opened yet, oldest first.
    files: VecDeque<OwnedFd>,
    /// Where the files that follow come from, once these are read (one
    /// reply carries at most 30), and the seq last asked for with when it
    /// first was (see `MORE_FOR_NS`).
    more: Option<MoreFiles>,
    asked_more: Option<(u64, u64)>,
    /// The next file opened is the first of a further batch: it may start
    /// after the one read last (retention removed files since: lost) or
    /// before the next seq (records at or after it only are delivered).
    joined: bool,
    skip_below: u64,
    /// The file being read, and how many were opened before it.
    file: Option<OwnedFd>,
    opened: usize,
    /// Bytes of the file from offset `buf_at`; the next record at `buf[off..]`.
    buf: Vec<u8>,
    buf_at: u64,
    off: usize,
    /// The number the next record in the file must have.
    next_seq: u64,
    /// The ring holds this one and after: history ends before it.
    end_seq: u64,
    start: Start,
    /// The topic's largest message: a record claiming more is damage.
    max_message: usize,
    /// Bytes the last fill asked for.
    asked: usize,
    peeked: Option<Peeked>,
    /// Messages delivered from the log, and those asked for that retention had removed.
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    /// Whether a message at or after the start was found in the log: if not,
    /// the ring's first messages may still be before it (published, not yet
    /// logged when the subscriber joined), and the subscriber skips those.
    pub(crate) found_start: bool,
    /// Length of the message the last `TooLarge` left unread (0: none).
    pub(crate) too_large_len: usize,
    /// Records read and passed over (before the start).
    #[cfg(test)]
    skipped: u64,
}

impl History {
    /// History from `start` up to (not including) `end_seq`, in `files`.
    pub(crate) fn new(files: Vec<OwnedFd>, start: Start, end_seq: u64, max_message: usize) -> History {
        History {
            files: files.into(),
            more: None,
            asked_more: None,
            joined: false,
            skip_below: 0,
            file: None,
            opened: 0,
            buf: Vec::new(),
            buf_at: 0,
            off: 0,
            next_seq: 0,
            end_seq,
            start,
            max_message,
            asked: 0,
            peeked: None,
            delivered: 0,
            lost: 0,
            too_large_len: 0,
            found_start: false,
            #[cfg(test)]
            skipped: 0,
        }
    }

    /// Reads on through the files `more` gives when those at hand end
    /// before the ring's start.
    pub(crate) fn with_more(mut self, more: MoreFiles) -> History {
        self.more = Some(more);
        self
    }

    /// Where the ring's messages start to count for this subscriber: `None`
    /// when the log held the start (the ring's first message follows it).
    pub(crate) fn ring_start(&self) -> Option<Start> {
        match self.start {
            Start::Seq(_) | Start::Time(_) if !self.found_start => Some(self.start.clone()),
            _ => None,
        }
    }

    /// Whether messages remain before the ring takes over.
    pub(crate) fn pending(&self) -> bool {
        self.peeked.is_some()
            || (self.next_seq < self.end_seq && (self.file.is_some() || !self.files.is_empty() || self.more.is_some()))
    }

    fn corrupt(&self, why: String) -> Error {
        Error::new(
            Status::Corrupt,
            format!(
                "log file {} (from the daemon), offset {}: {why}",
                self.opened,
                self.buf_at + self.off as u64
            ),
        )
    }

    /// Reads the file from `at` (at least `need` bytes if the file has them).
    fn fill(&mut self, at: u64, need: usize) -> Result<()> {
        let fd = self.file.as_ref().expect("a file is open");
        let want = need.max(CHUNK);
        self.asked = want;
        self.buf.resize(want, 0);
        let mut got = 0;
        while got < want {
            match nix::sys::uio::pread(fd, &mut self.buf[got..], (at + got as u64) as i64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::io("read a log file", e.into())),
            }
        }
        self.buf.truncate(got);
        self.buf_at = at;
        self.off = 0;
        Ok(())
    }

    /// Opens the next file: its header must continue the numbering.
    fn open_next(&mut self) -> Result<bool> {
        let Some(fd) = self.files.pop_front() else {
            return Ok(false);
        };
        // The first file of a batch may come with a place to start in it:
        // at or before the start, or the seq asked for (`LogFiles`).
        let limit = match (self.opened, self.joined, &self.start) {
            (0, _, Start::Seq(n)) => Some(*n),
            (0, _, Start::Time(_)) => Some(u64::MAX),
            (_, true, _) => Some(self.next_seq),
            _ => None,
        };
        self.file = Some(fd);
        self.opened += 1;
        self.fill(0, SEGMENT_HEADER)?;
        let (_, first) = decode_header(&self.buf, &format!("log file {}", self.opened))?;
        if self.opened == 1 {
            let wanted = match self.start {
                Start::Seq(n) => n,
                _ => first,
            };
            // What retention removed before the first file is lost to us.
            self.lost = first.saturating_sub(wanted).min(self.end_seq.saturating_sub(wanted));
        } else if self.joined && first > self.next_seq {
            // Removed by retention between two batches.
            self.lost += first.min(self.end_seq) - self.next_seq;
        } else if self.joined && first < self.next_seq {
            self.skip_below = self.next_seq;
        } else if first != self.next_seq {
            return Err(self.corrupt(format!("starts at seq {first}, {} was due", self.next_seq)));
        }
        self.joined = false;
        self.next_seq = first;
        self.off = SEGMENT_HEADER;
        if let Some(limit) = limit {
            self.seek_hint(limit)?;
        }
        Ok(true)
    }

    /// The daemon sets the first file's offset (`lseek`) to a record where
    /// reading may start (its index: the last entry at or before the
    /// start); reads with `pread` leave it alone. Starts there if the
    /// record there is whole, of this file, and numbered `limit` or below;
    /// else (no hint, an older daemon, any damage) reads from the header.
    fn seek_hint(&mut self, limit: u64) -> Result<()> {
        let fd = self.file.as_ref().expect("a file is open");
        let at = match nix::unistd::lseek(fd, 0, nix::unistd::Whence::SeekCur) {
            Ok(at) if at > SEGMENT_HEADER as i64 && at % 8 == 0 => at as u64,
            _ => return Ok(()),
        };
        let first = self.next_seq;
        self.fill(at, RECORD_HEADER)?;
        let len = self.buf.get(..4).map_or(0, |l| {
            (u32::from_le_bytes(l.try_into().expect("4 bytes")) & !REMOTE) as usize
        });
        if len <= self.max_message && record_size(len) > self.buf.len() {
            self.fill(at, record_size(len))?;
        }
        match decode_at(&self.buf, 0, first) {
            Found::Record(r, _) if r.seq <= limit => {
                self.next_seq = r.seq;
                self.off = 0;
            }
            _ => {
                self.fill(0, SEGMENT_HEADER)?;
                self.off = SEGMENT_HEADER;
            }
        }
        Ok(())
    }

    /// The next message to deliver, left in place until [`advance`](Self::advance);
    /// `None` once the ring takes over.
    pub(crate) fn peek(&mut self) -> Result<Option<Logged<'_>>> {
        self.peek_until(None)
    }

    /// As [`peek`](Self::peek), but `Timeout` once `deadline` has passed
    /// while it waits for the log writer (see `MORE_FOR_NS`); nothing is
    /// lost by that, the next call goes on.
    pub(crate) fn peek_until(&mut self, deadline: Option<&Deadline>) -> Result<Option<Logged<'_>>> {
        while self.peeked.is_none() {
            // The ring has the rest (the files may already hold more: the
            // writer goes on after the subscriber joined).
            if self.opened > 0 && self.next_seq >= self.end_seq {
                self.finish();
                return Ok(None);
            }
            if self.file.is_none() {
                if self.open_next()? {
                    continue;
                }
                if self.opened == 0 {
                    self.finish();
                    return Ok(None);
                }
                let since = match self.asked_more {
                    Some((seq, t)) if seq == self.next_seq => Some(t),
                    _ => None,
                };
                let now = sys::monotonic_ns();
                if let Some(more) = self
                    .more
                    .as_mut()
                    .filter(|_| since.is_none_or(|t| now - t < MORE_FOR_NS))
                {
                    // Asked before: the writer is behind; once more, after
                    // a millisecond unless the deadline has passed.
                    let out_of_time = since.is_some() && deadline.is_some_and(|d| d.remaining() == Some(0));
                    if since.is_some() && !out_of_time {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    self.asked_more = Some((self.next_seq, since.unwrap_or(now)));
                    let files = more(self.next_seq)?;
                    if !files.is_empty() {
                        self.files.extend(files);
                        self.joined = true;
                    } else if out_of_time {
                        return Err(Error::new(
                            Status::Timeout,
                            format!("timed out waiting for the log to reach seq {}", self.next_seq),
                        ));
                    }
                    continue;
                }
                return Err(Error::new(
                    Status::Corrupt,
                    format!(
                        "the log ends at seq {} but the ring starts at {}",
                        self.next_seq, self.end_seq
                    ),
                ));
            }
            match decode_at(&self.buf, self.off, self.next_seq) {
                Found::Record(r, _) if r.seq >= self.end_seq => {
                    // (Past a hole in the numbering: the ring has this one.)
                    self.finish();
                    return Ok(None);
                }
                Found::Record(r, next) => {
                    let p = Peeked {
                        seq: r.seq,
                        timestamp_ns: r.timestamp_ns,
                        at: next - record_size(r.payload.len()) + RECORD_HEADER,
                        len: r.data().len(),
                        origin: r.origin,
                        next,
                    };
                    let wanted =
                        r.seq >= self.skip_below && self.start.reached_by(r.seq, r.timestamp_ns, self.found_start);
                    if wanted {
                        self.found_start = true;
                        self.peeked = Some(p);
                    } else {
                        #[cfg(test)]
                        {
                            self.skipped += 1;
                        }
                        self.step(p);
                    }
                }
                found => {
                    let rest = &self.buf[self.off.min(self.buf.len())..];
                    let len = rest
                        .get(..4)
                        .map(|l| (u32::from_le_bytes(l.try_into().expect("4 bytes")) & !REMOTE) as usize);
                    if len.is_some_and(|l| l > self.max_message) {
                        return Err(self.corrupt(format!(
                            "record {}: length {} over the topic's max_message {}",
                            self.next_seq,
                            len.unwrap_or(0),
                            self.max_message
                        )));
                    }
                    let need = record_size(len.unwrap_or(0));
                    if self.off > 0 || self.buf.len() < need && self.asked < need {
                        // The buffer may end inside the record: read on from it.
                        self.fill(self.buf_at + self.off as u64, need)?;
                        continue;
                    }
                    // The buffer starts at this record and holds all the file has of it.
                    if matches!(found, Found::End) || self.buf.len() < need {
                        self.file = None;
                        continue;
                    }
                    let Found::Bad(why) = found else {
                        unreachable!("End handled above")
                    };
                    return Err(self.corrupt(format!("record {}: {why}", self.next_seq)));
                }
            }
        }
        let p = self.peeked.expect("set above");
        Ok(Some(Logged {
            seq: p.seq,
            timestamp_ns: p.timestamp_ns,
            payload: &self.buf[p.at..p.at + p.len],
            origin: p.origin,
        }))
    }

    fn step(&mut self, p: Peeked) {
        self.off = p.next;
        self.next_seq = p.seq + 1;
    }

    /// Messages between where history stands and where the ring starts.
    pub(crate) fn unread(&self) -> u64 {
        self.end_seq.saturating_sub(self.position())
    }

    /// The seq of the next message to deliver (or passed over); before the
    /// first file is read, where the history starts.
    pub(crate) fn position(&self) -> u64 {
        match (self.peeked, self.opened, &self.start) {
            (Some(p), _, _) => p.seq,
            (None, 0, Start::Seq(n)) => *n,
            _ => self.next_seq,
        }
    }

    /// Moves past the message [`peek`](Self::peek) returned.
    pub(crate) fn advance(&mut self) {
        if let Some(p) = self.peeked.take() {
            self.step(p);
            self.delivered += 1;
        }
    }

    fn finish(&mut self) {
        self.file = None;
        self.files.clear();
        self.buf = Vec::new();
        self.next_seq = self.end_seq;
    }
}

/// Reads the history in `files` from `start` up to `end_seq` as a
/// subscriber does, delivering at most `max` messages: the (seq, timestamp,
/// payload length) of each, and the error that ended it early, if any. For
/// the fuzz targets (`aether-fuzz`): not an API.
#[doc(hidden)]
pub fn replay(
    files: Vec<OwnedFd>,
    start: Start,
    end_seq: u64,
    max_message: usize,
    max: usize,
) -> (Vec<(u64, u64, usize)>, Option<Error>) {
    let mut h = History::new(files, start, end_seq, max_message);
    let mut out = Vec::new();
    while out.len() < max {
        match h.peek() {
            Ok(Some(m)) => out.push((m.seq, m.timestamp_ns, m.payload.len())),
            Ok(None) => break,
            Err(e) => return (out, Some(e)),
        }
        h.advance();
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logfile::{encode_header, encode_record};
    use std::io::Write;

    /// A log file holding `bytes`, as a read-only descriptor (unlinked at once).
    fn file(bytes: &[u8]) -> OwnedFd {
        let path = std::env::temp_dir().join(format!(
            "aether-history-{}-{:x}",
            std::process::id(),
            crate::sys::random_u64()
        ));
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(bytes))
            .expect("write");
        let f = std::fs::File::open(&path).expect("open");
        std::fs::remove_file(&path).expect("unlink");
        f.into()
    }

    fn segment(first: u64, n: u64, len: usize) -> Vec<u8> {
        let mut v = encode_header(9, first).to_vec();
        for seq in first..first + n {
            // 0 would be a record without a timestamp.
            encode_record(&mut v, seq, seq * 10 + 1, &vec![seq as u8; len]);
        }
        v
    }

    /// Everything `h` delivers, until the ring takes over or an error.
    fn drain(h: &mut History) -> (Vec<u64>, Option<Error>) {
        let mut seqs = Vec::new();
        for _ in 0..100_000 {
            match h.peek() {
                Ok(Some(m)) => {
                    assert_eq!(m.payload, vec![m.seq as u8; m.payload.len()].as_slice());
                    seqs.push(m.seq);
                    h.advance();
                }
                Ok(None) => return (seqs, None),
                Err(e) => return (seqs, Some(e)),
            }
        }
        panic!("history did not end");
    }

    /// A record without a timestamp (its publisher sent none) goes with
    /// those before it: a `time=` start passes it over before the first
    /// record stamped at or after the time and delivers it after.
    #[test]
    fn a_time_start_takes_records_without_a_timestamp_by_those_before() {
        let mut v = encode_header(9, 0).to_vec();
        for seq in 0..80 {
            let ts = if seq % 20 == 3 { 0 } else { seq * 10 + 1 };
            encode_record(&mut v, seq, ts, &[seq as u8; 16]);
        }
        let (seqs, e) = drain(&mut History::new(vec![file(&v)], Start::Time(455), 80, 4096));
        assert!(e.is_none(), "{e:?}");
        assert_eq!(seqs, (46..80).collect::<Vec<_>>(), "63 is in, 3, 23 and 43 are not");
    }

    #[test]
    fn reads_across_files_from_a_start_up_to_the_ring() {
        let files = || vec![file(&segment(0, 40, 5)), file(&segment(40, 40, 3000))];
        let (seqs, e) = drain(&mut History::new(files(), Start::Earliest, 70, 4096));
        assert!(e.is_none(), "{e:?}");
        assert_eq!(seqs, (0..70).collect::<Vec<_>>());
        // Bigger than a read: records of 3000 bytes cross the 1 MiB buffer's end.
        let big = vec![file(&segment(0, 1000, 3000))];
        let (seqs, e) = drain(&mut History::new(big, Start::Seq(10), 1000, 4096));
        assert!(e.is_none(), "{e:?}");
        assert_eq!(seqs, (10..1000).collect::<Vec<_>>());
        let mut h = History::new(files(), Start::Time(455), 80, 4096);
        assert_eq!(drain(&mut h).0, (46..80).collect::<Vec<_>>());
        // Retention removed 0..40: asked from 5, it starts at 40 and counts 35 lost.
        let mut h = History::new(vec![file(&segment(40, 40, 3))], Start::Seq(5), 80, 4096);
        assert_eq!(drain(&mut h).0, (40..80).collect::<Vec<_>>());
        assert_eq!(h.lost, 35);
        // The files hold more than the ring's start: history stops there.
        let (seqs, _) = drain(&mut History::new(files(), Start::Earliest, 3, 4096));
        assert_eq!(seqs, vec![0, 1, 2]);
        // A gap between files, or a log ending before the ring's start, is damage.
        let gap = vec![file(&segment(0, 10, 5)), file(&segment(11, 10, 5))];
        assert_eq!(
            drain(&mut History::new(gap, Start::Earliest, 21, 64)).1.unwrap().status,
            Status::Corrupt
        );
        let short = vec![file(&segment(0, 10, 5))];
        assert_eq!(
            drain(&mut History::new(short, Start::Earliest, 20, 64))
                .1
                .unwrap()
                .status,
            Status::Corrupt
        );
    }

    /// A history longer than one batch of files asks for the next batch
    /// where the first ends: it goes on in order whether that batch starts
    /// where the last ended, later (retention removed files in between:
    /// counted lost) or earlier (the file holding the next seq: nothing
    /// twice); a daemon with nothing more is asked once, and it is damage.
    #[test]
    fn further_batches_continue_or_count_what_retention_removed() {
        // (The next batch's files as (first seq, records); seqs delivered; lost.)
        type Case = (Vec<(u64, u64)>, Vec<u64>, u64);
        let cases: [Case; 3] = [
            (vec![(10, 10), (20, 10)], (0..30).collect(), 0),
            (vec![(20, 10)], (0..10).chain(20..30).collect(), 10),
            (vec![(5, 15), (20, 10)], (0..30).collect(), 0),
        ];
        for (batch, want, lost) in cases {
            let asked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let a = std::sync::Arc::clone(&asked);
            let more = move |from: u64| {
                assert_eq!(from, 10);
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(batch.iter().map(|&(first, n)| file(&segment(first, n, 5))).collect())
            };
            let mut h = History::new(vec![file(&segment(0, 10, 5))], Start::Earliest, 30, 64).with_more(Box::new(more));
            let (seqs, e) = drain(&mut h);
            assert!(e.is_none(), "{e:?}");
            assert_eq!((seqs, h.lost), (want, lost));
            assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        }
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let a = std::sync::Arc::clone(&asked);
        let none = move |_| {
            a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Vec::new())
        };
        let mut h = History::new(vec![file(&segment(0, 10, 5))], Start::Earliest, 30, 64).with_more(Box::new(none));
        let (seqs, e) = drain(&mut h);
        assert_eq!((seqs.len(), e.map(|e| e.status)), (10, Some(Status::Corrupt)));
        // (Asked again a millisecond apart for a second first: the log
        // writer may be behind.)
        assert!(asked.load(std::sync::atomic::Ordering::SeqCst) > 100);
    }

    /// A receive whose deadline has passed while the log writer is behind
    /// gets `Timeout` (after asking once more, at once), not a second's
    /// wait; the next goes on, and takes the files once they come.
    #[test]
    fn a_deadline_ends_the_wait_for_the_log_writer_not_the_history() {
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let a = std::sync::Arc::clone(&asked);
        let late = move |from: u64| {
            assert_eq!(from, 10);
            // The writer catches up at the fourth ask.
            Ok(if a.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
                Vec::new()
            } else {
                vec![file(&segment(10, 20, 5))]
            })
        };
        let mut h = History::new(vec![file(&segment(0, 10, 5))], Start::Earliest, 30, 64).with_more(Box::new(late));
        for seq in 0..10 {
            assert_eq!(h.peek().unwrap().unwrap().seq, seq);
            h.advance();
        }
        let now = Deadline::after(Some(std::time::Duration::ZERO));
        let started = std::time::Instant::now();
        // Asks 1 and 2 (the first is no wait yet), then ask 3: each call
        // asks, and times out, at once.
        for call in 1..=2 {
            let got = h.peek_until(Some(&now)).map(|m| m.map(|m| m.seq));
            assert_eq!(got.unwrap_err().status, Status::Timeout, "call {call}");
        }
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        assert_eq!(h.peek_until(Some(&now)).unwrap().unwrap().seq, 10);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 4);
        let (seqs, e) = drain(&mut h);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(seqs, (10..30).collect::<Vec<_>>());
    }

    /// `fd` with its offset set to `at`, as the daemon hands a first file.
    fn at(fd: OwnedFd, at: u64) -> OwnedFd {
        nix::unistd::lseek(&fd, at as i64, nix::unistd::Whence::SeekSet).expect("lseek");
        fd
    }

    /// Where record `seq` of `segment(first, _, len)` starts.
    fn offset_of(first: u64, seq: u64, len: usize) -> u64 {
        (SEGMENT_HEADER + (seq - first) as usize * record_size(len)) as u64
    }

    /// A first file whose offset the daemon set (its index) is read from
    /// there: the records before it are never read. An offset that is no
    /// record of the file at or before the start (inside a record, past
    /// the start, past the end, not on a record's boundary) is ignored:
    /// the file is read from its header, and the same messages come.
    #[test]
    fn a_first_file_is_read_from_the_offset_the_daemon_set_if_it_checks_out() {
        // (start, hint: the record there or a raw offset, records skipped)
        let len = 3000;
        let seg = || file(&segment(0, 1000, len));
        for (start, hint, skipped) in [
            (Start::Seq(700), Some(offset_of(0, 500, len)), 200),
            (Start::Seq(700), Some(offset_of(0, 700, len)), 0),
            (Start::Seq(700), None, 700),
            (Start::Seq(700), Some(offset_of(0, 701, len)), 700),
            (Start::Seq(700), Some(offset_of(0, 500, len) + 16), 700),
            (Start::Seq(700), Some(offset_of(0, 500, len) + 4), 700),
            (Start::Seq(700), Some(offset_of(0, 1000, len) + 800), 700),
            (Start::Seq(700), Some(8), 700),
            (Start::Time(7000), Some(offset_of(0, 600, len)), 100),
            (Start::Time(7000), Some(offset_of(0, 699, len) + 8), 700),
        ] {
            let fd = match hint {
                Some(h) => at(seg(), h),
                None => seg(),
            };
            let mut h = History::new(vec![fd], start.clone(), 1000, 4096);
            let (seqs, e) = drain(&mut h);
            assert!(e.is_none(), "{e:?}");
            assert_eq!(seqs, (700..1000).collect::<Vec<_>>(), "{start:?} {hint:?}");
            assert_eq!((h.skipped, h.lost), (skipped, 0), "{start:?} {hint:?}");
        }
        // Retention removed 0..40: the hint cannot be at or before seq 5;
        // the 35 removed are lost as without one.
        let fd = at(file(&segment(40, 40, 3)), offset_of(40, 50, 3));
        let mut h = History::new(vec![fd], Start::Seq(5), 80, 4096);
        assert_eq!(drain(&mut h).0, (40..80).collect::<Vec<_>>());
        assert_eq!((h.lost, h.skipped), (35, 0));
        // Only a batch's first file: another's offset is not read.
        let files = vec![
            file(&segment(0, 10, 5)),
            at(file(&segment(10, 10, 5)), offset_of(10, 15, 5)),
        ];
        assert_eq!(
            drain(&mut History::new(files, Start::Earliest, 20, 64)).0,
            (0..20).collect::<Vec<_>>()
        );
        // A record larger than a read at the offset.
        let big = 1536 << 10;
        let fd = at(file(&segment(0, 5, big)), offset_of(0, 3, big));
        let mut h = History::new(vec![fd], Start::Seq(4), 5, 2 << 20);
        assert_eq!(drain(&mut h).0, vec![4]);
        assert_eq!(h.skipped, 1);
    }

    /// A further batch's first file may come with an offset too (`LogFiles`
    /// from the next seq): read from there when at or before the next seq,
    /// nothing twice; ignored when past it.
    #[test]
    fn a_further_batch_starts_at_its_offset_nothing_twice() {
        for (hint, skipped) in [(10, 0), (8, 2), (11, 5), (13, 5)] {
            let more = move |from: u64| {
                assert_eq!(from, 10);
                Ok(vec![
                    at(file(&segment(5, 15, 5)), offset_of(5, hint, 5)),
                    file(&segment(20, 10, 5)),
                ])
            };
            let first = vec![file(&segment(0, 10, 5))];
            let mut h = History::new(first, Start::Earliest, 30, 64).with_more(Box::new(more));
            let (seqs, e) = drain(&mut h);
            assert!(e.is_none(), "{e:?}");
            assert_eq!(
                (seqs, h.lost, h.skipped),
                ((0..30).collect(), 0, skipped),
                "hint {hint}"
            );
        }
    }

    /// Any bytes in a log file: the history delivers only records that pass
    /// their checks, in order, and ends (the ring) or says `Corrupt`: never a
    /// panic, a hang or a huge allocation.
    #[test]
    fn any_file_bytes_give_records_or_corrupt() {
        let whole = segment(0, 30, 37);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut bytes = whole.clone();
            match round % 3 {
                // Flipped bytes.
                0 => {
                    for _ in 0..1 + next() % 4 {
                        let i = next() as usize % bytes.len();
                        bytes[i] ^= 1 << (next() % 8);
                    }
                }
                // Cut anywhere.
                1 => bytes.truncate(next() as usize % bytes.len()),
                // Random bytes after a valid header.
                _ => {
                    let n = 32 + next() as usize % 2000;
                    bytes = encode_header(9, 0).to_vec();
                    bytes.extend((0..n).map(|_| next() as u8));
                }
            }
            let mut h = History::new(vec![file(&bytes)], Start::Earliest, 30, 64);
            let (seqs, e) = drain(&mut h);
            assert!(seqs.iter().enumerate().all(|(i, &s)| s == i as u64), "in order from 0");
            assert!(e.is_none_or(|e| e.status == Status::Corrupt), "round {round}");
        }
    }
}
