//! The write-ahead log's files: appending to a log segment, the recovery
//! scan that repairs a torn tail, and [`Log`], one topic's directory of
//! segments (rolling, reading across them, retention), and each segment's
//! index (`<first>.idx`: where records are, by seq and by time). The
//! on-disk format is defined once, in `aether::logfile` (clients read logs
//! the daemon hands them).

use aether::logfile::{
    check_segment, decode_index, encode_header, encode_index_entry, encode_index_header, encode_record_with,
    read_segment, record_offsets, scan, valid_record_after, IndexEntry, Indexer, INDEX_ENTRY, INDEX_HEADER,
    MAX_PAYLOAD, SEGMENT_HEADER,
};
use aether::{Error, Origin, Result, Status, ORIGIN_BYTES};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
#[derive(Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records kept.
    pub records: u64,
    /// Bytes of torn tail cut off (0 when the file ended cleanly).
    pub cut: u64,
    /// The number the next record gets.
    pub next_seq: u64,
    /// Segment indexes rebuilt (missing, damaged, or behind their segment).
    pub indexes_rebuilt: usize,
}

/// Appends records to one segment file, and entries to its index.
pub struct SegmentWriter {
    file: File,
    path: PathBuf,
    len: u64,
    next_seq: u64,
    buf: Vec<u8>,
    indexer: Indexer,
    /// The index being appended to (none: it could not be written; the
    /// segment is then read without, from its start).
    index: Option<IndexFile>,
}

/// A segment's index as its writer appends to it: entries are written
/// after the records they name, and never synced (a hint).
struct IndexFile {
    file: File,
    len: u64,
    buf: Vec<u8>,
}

/// The index file of the segment at `segment`.
pub fn index_path(segment: &Path) -> PathBuf {
    segment.with_extension("idx")
}

/// Makes the index file at `path` (0600, replacing any) holding `bytes`.
fn write_index_file(path: &Path, bytes: &[u8]) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(bytes)?;
    Ok(f)
}

/// The index entries of segment `first` of log `topic_id` in `dir`, if
/// it has a usable index (a torn or damaged tail ignored).
pub fn read_index(dir: &Path, topic_id: u64, first: u64) -> Option<Vec<IndexEntry>> {
    let path = index_path(&dir.join(SegmentWriter::file_name(first)));
    let bytes = std::fs::read(path).ok()?;
    decode_index(&bytes, topic_id, first).ok()
}

/// The first entry of that index (one small read).
pub fn first_index_entry(dir: &Path, topic_id: u64, first: u64) -> Option<IndexEntry> {
    let path = index_path(&dir.join(SegmentWriter::file_name(first)));
    let f = File::open(path).ok()?;
    let mut b = [0u8; INDEX_HEADER + INDEX_ENTRY];
    f.read_exact_at(&mut b, 0).ok()?;
    decode_index(&b, topic_id, first).ok()?.first().copied()
}

/// Checks the index of the segment at `path` (of log `topic_id`, from
/// `first`; its records `(seq, timestamp, offset)`) against the entries
/// the writer makes for them after timestamps up to `max_before`, and
/// rewrites it if it differs: missing, damaged, not as long, entries
/// elsewhere or with a smaller maximum. Returns the indexer as it stands
/// after the segment, the index's length, and why it was rewritten. An
/// index that cannot be written is left out (warned): never fatal.
fn check_index(
    path: &Path,
    topic_id: u64,
    first: u64,
    records: impl Iterator<Item = (u64, u64, u64)>,
    max_before: u64,
) -> (Indexer, Option<u64>, Option<String>) {
    let mut indexer = Indexer::new(max_before);
    let want: Vec<IndexEntry> = records.filter_map(|(s, t, o)| indexer.record(s, t, o)).collect();
    let ipath = index_path(path);
    let len = (INDEX_HEADER + want.len() * INDEX_ENTRY) as u64;
    let why =
        match std::fs::read(&ipath) {
            Err(e) => format!("{e}"),
            Ok(bytes) => match decode_index(&bytes, topic_id, first) {
                Err(e) => e.message,
                Ok(have) if have.len() != want.len() || bytes.len() as u64 != len => {
                    format!("{} entries where {} were due", have.len(), want.len())
                }
                Ok(have) => match have.iter().zip(&want).position(|(h, w)| {
                    (h.seq, h.offset) != (w.seq, w.offset) || h.max_timestamp_ns < w.max_timestamp_ns
                }) {
                    Some(i) => format!("entry {i} is not record {} at {}", want[i].seq, want[i].offset),
                    None => {
                        // Kept: its maxima may say more than the records now
                        // present (retention removed older ones), never less.
                        if let Some(h) = have.last() {
                            indexer.raise(h.max_timestamp_ns);
                        }
                        return (indexer, Some(len), None);
                    }
                },
            },
        };
    let mut bytes = encode_index_header(topic_id, first).to_vec();
    for e in &want {
        bytes.extend_from_slice(&encode_index_entry(e));
    }
    match write_index_file(&ipath, &bytes) {
        Ok(_) => (indexer, Some(len), Some(why)),
        Err(e) => {
            log::warn!(
                "{}: cannot rebuild the index ({e}): the segment is read from its start",
                ipath.display()
            );
            let _ = std::fs::remove_file(&ipath);
            (indexer, None, Some(why))
        }
    }
}

impl SegmentWriter {
    /// The file name of the segment whose first record is `first_seq`.
    pub fn file_name(first_seq: u64) -> String {
        format!("{first_seq:020}.wal")
    }

    /// Makes a new segment in `dir` (which must exist) for records from
    /// `first_seq` on, the first of its log; fails if it exists.
    pub fn create(dir: &Path, topic_id: u64, first_seq: u64) -> Result<SegmentWriter> {
        Self::create_after(dir, topic_id, first_seq, 0)
    }

    /// [`create`](Self::create) of a segment after others whose records
    /// are stamped `max_timestamp_ns` at most (the running maximum its
    /// index goes on from).
    pub fn create_after(dir: &Path, topic_id: u64, first_seq: u64, max_timestamp_ns: u64) -> Result<SegmentWriter> {
        let path = dir.join(Self::file_name(first_seq));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::io(&format!("create {}", path.display()), e))?;
        let h = encode_header(topic_id, first_seq);
        // The file and its name made durable before any record goes in: a
        // record synced later must not vanish with its file's directory entry.
        file.write_all(&h)
            .and_then(|_| file.sync_data())
            .and_then(|_| File::open(dir)?.sync_all())
            .map_err(|e| Error::io(&format!("write {}", path.display()), e))?;
        // The index: a hint, not synced; without one the segment is read
        // from its start.
        let ipath = index_path(&path);
        let index = match write_index_file(&ipath, &encode_index_header(topic_id, first_seq)) {
            Ok(file) => Some(IndexFile {
                file,
                len: INDEX_HEADER as u64,
                buf: Vec::new(),
            }),
            Err(e) => {
                log::warn!("{}: {e}: the segment goes without an index", ipath.display());
                None
            }
        };
        Ok(SegmentWriter {
            file,
            path,
            len: SEGMENT_HEADER as u64,
            next_seq: first_seq,
            buf: Vec::new(),
            indexer: Indexer::new(max_timestamp_ns),
            index,
        })
    }

    /// Opens the last segment of a log after a restart: keeps every valid
    /// record, cuts a torn tail, checks its index against what is kept
    /// (rebuilt if it differs), and appends after it. `Corrupt` (nothing
    /// cut) when a bad record has valid ones after it.
    pub fn recover(path: &Path, topic_id: u64) -> Result<(SegmentWriter, Recovery)> {
        Self::recover_after(path, topic_id, 0)
    }

    /// [`recover`](Self::recover) of a segment after others whose records
    /// are stamped `max_timestamp_ns` at most.
    pub fn recover_after(path: &Path, topic_id: u64, max_timestamp_ns: u64) -> Result<(SegmentWriter, Recovery)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(&format!("open {}", path.display()), e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(&format!("read {}", path.display()), e))?;
        if bytes.len() < SEGMENT_HEADER {
            // A crash just after the file was made, before its header was
            // whole: an empty segment, its first seq in its name.
            let first = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::new(Status::Corrupt, format!("{}: not a segment's name", path.display())))?;
            let h = encode_header(topic_id, first);
            nix::sys::uio::pwrite(&file, &h, 0)
                .map_err(|e| Error::io(&format!("rewrite the header of {}", path.display()), e.into()))?;
            file.sync_data()
                .map_err(|e| Error::io(&format!("fdatasync {}", path.display()), e))?;
            bytes = h.to_vec();
        }
        let (seq, records, off) = scan(&bytes, path, topic_id)?;
        let first = aether::logfile::decode_header(&bytes, "")?.1;
        if off < bytes.len() {
            if let Some(at) = valid_record_after(&bytes, off + 8, seq.saturating_add(1)) {
                return Err(Error::new(
                    Status::Corrupt,
                    format!(
                        "{}: record {seq} at offset {off} is damaged and valid records follow (offset {at}): \
                         not a torn write, nothing cut",
                        path.display()
                    ),
                ));
            }
            file.set_len(off as u64)
                .and_then(|_| file.sync_data())
                .map_err(|e| Error::io(&format!("cut the torn tail of {}", path.display()), e))?;
        }
        let (indexer, index_len, rebuilt) =
            check_index(path, topic_id, first, record_offsets(&records), max_timestamp_ns);
        if let Some(why) = &rebuilt {
            log::info!("{}: index rebuilt ({why})", index_path(path).display());
        }
        let index = index_len.and_then(|len| {
            let ipath = index_path(path);
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&ipath)
                .inspect_err(|e| log::warn!("{}: {e}: the segment goes on without an index", ipath.display()))
                .ok()
                .map(|file| IndexFile {
                    file,
                    len,
                    buf: Vec::new(),
                })
        });
        let recovery = Recovery {
            records: records.len() as u64,
            cut: (bytes.len() - off) as u64,
            next_seq: seq,
            indexes_rebuilt: usize::from(rebuilt.is_some()),
        };
        let writer = SegmentWriter {
            file,
            path: path.to_path_buf(),
            len: off as u64,
            next_seq: seq,
            buf: Vec::new(),
            indexer,
            index,
        };
        Ok((writer, recovery))
    }

    /// Appends one record (numbered next); returns its seq. Written to the
    /// file by [`flush`](Self::flush), durable after [`sync`](Self::sync).
    pub fn append(&mut self, timestamp_ns: u64, payload: &[u8]) -> Result<u64> {
        self.append_with(timestamp_ns, payload.len(), |dst| dst.copy_from_slice(payload))
    }

    /// [`append`](Self::append) of `len` bytes that `fill` writes in place.
    pub fn append_with(&mut self, timestamp_ns: u64, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<u64> {
        self.append_seq(self.next_seq, timestamp_ns, len, None, fill)
    }

    /// Appends the record numbered `seq`, at least the next number (the
    /// ring's numbering may skip some: a loan given up, a dead publisher's claim).
    pub fn append_seq(
        &mut self,
        seq: u64,
        timestamp_ns: u64,
        len: usize,
        origin: Option<Origin>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64> {
        if len + ORIGIN_BYTES > MAX_PAYLOAD {
            return Err(Error::new(
                Status::TooLarge,
                format!("a log record of {len} bytes (at most {MAX_PAYLOAD})"),
            ));
        }
        if seq < self.next_seq {
            return Err(Error::invalid(format!(
                "record {seq} after {}: the log's numbers only go up",
                self.next_seq - 1
            )));
        }
        if seq == u64::MAX {
            return Err(Error::invalid(format!(
                "record {seq}: the log numbers its records below it (readers refuse it)"
            )));
        }
        let offset = self.len();
        encode_record_with(&mut self.buf, seq, timestamp_ns, len, origin, fill);
        self.next_seq = seq + 1;
        if let Some(e) = self.indexer.record(seq, timestamp_ns, offset) {
            if let Some(index) = &mut self.index {
                index.buf.extend_from_slice(&encode_index_entry(&e));
            }
        }
        Ok(seq)
    }

    /// Writes what was appended since the last flush (one write).
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // pwrite at the known end: a failed write leaves at most a torn tail,
        // which the next write overwrites and recovery cuts.
        let mut done = 0;
        while done < self.buf.len() {
            match nix::sys::uio::pwrite(&self.file, &self.buf[done..], (self.len + done as u64) as i64) {
                Ok(0) => {
                    return Err(Error::new(
                        Status::Io,
                        format!("short write to {}", self.path.display()),
                    ))
                }
                Ok(n) => done += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::io(&format!("append to {}", self.path.display()), e.into())),
            }
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        self.flush_index();
        Ok(())
    }

    /// Writes the index entries of the records written (after them: an
    /// entry never names a record a reader cannot read yet). A failure
    /// ends the index there (what it holds stays right).
    fn flush_index(&mut self) {
        let Some(index) = self.index.as_mut().filter(|i| !i.buf.is_empty()) else {
            return;
        };
        match index.file.write_all_at(&index.buf, index.len) {
            Ok(()) => {
                index.len += index.buf.len() as u64;
                index.buf.clear();
            }
            Err(e) => {
                log::warn!(
                    "{}: {e}: its index ends here (seeks go to its last entry, then read on)",
                    self.path.display()
                );
                // A partial entry fails its CRC: readers stop before it.
                self.index = None;
            }
        }
    }

    /// Makes every appended record durable (write, then fdatasync).
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.file
            .sync_data()
            .map_err(|e| Error::io(&format!("fdatasync {}", self.path.display()), e))
    }

    /// The number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes in the file, with those appended and not yet flushed.
    pub fn len(&self) -> u64 {
        self.len + self.buf.len() as u64
    }

    /// Whether it holds no record yet.
    pub fn is_empty(&self) -> bool {
        self.len() == SEGMENT_HEADER as u64
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// At least every timestamp appended to the log so far.
    pub fn max_timestamp_ns(&self) -> u64 {
        self.indexer.max_timestamp_ns()
    }
}

/// The first seqs of the segments in `dir` (files named by
/// [`SegmentWriter::file_name`]), ascending.
pub fn segment_firsts(dir: &Path) -> Result<Vec<u64>> {
    let mut firsts: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(&format!("list {}", dir.display()), e))?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let first = name.strip_suffix(".wal")?;
            (first.len() == 20).then(|| first.parse().ok()).flatten()
        })
        .collect();
    firsts.sort_unstable();
    Ok(firsts)
}

/// Removes the index files in `dir` whose segments (`firsts`) are gone
/// (retention removes the segment, then its index: a crash between leaves one).
fn remove_stray_indexes(dir: &Path, firsts: &[u64]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let first = name
            .strip_suffix(".idx")
            .filter(|f| f.len() == 20)
            .and_then(|f| f.parse().ok());
        if first.is_some_and(|f| firsts.binary_search(&f).is_err()) {
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
}

/// One topic's log: a directory of segments numbered without gaps, the
/// last one appended to and rolled over at `segment_bytes`.
pub struct Log {
    dir: PathBuf,
    topic_id: u64,
    segment_bytes: u64,
    /// First seq of every segment, ascending; the last is `writer`'s.
    firsts: Vec<u64>,
    writer: SegmentWriter,
    /// Bytes of the segments before the writer's.
    sealed_bytes: u64,
}

impl Log {
    /// The log's id (in every file's header): made with the topic, the same
    /// across every restart of the daemon that recovers it.
    pub fn id(&self) -> u64 {
        self.topic_id
    }

    /// Opens the log in `dir` (made 0700 if missing), checks that its
    /// segments follow each other with no gap, and recovers the last one
    /// (see [`SegmentWriter::recover`]); an empty directory starts at 0.
    pub fn open(dir: &Path, topic_id: u64, segment_bytes: u64) -> Result<(Log, Recovery)> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Error::io(&format!("create {}", dir.display()), e))
            }
            _ => {}
        }
        let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(&format!("stat {}", dir.display()), e))?;
        if !meta.is_dir() {
            return Err(Error::invalid(format!("{} is not a directory", dir.display())));
        }
        let firsts = segment_firsts(dir)?;
        remove_stray_indexes(dir, &firsts);
        let Some(&last) = firsts.last() else {
            let writer = SegmentWriter::create(dir, topic_id, 0)?;
            let log = Log {
                dir: dir.into(),
                topic_id,
                segment_bytes,
                firsts: vec![0],
                writer,
                sealed_bytes: 0,
            };
            return Ok((
                log,
                Recovery {
                    records: 0,
                    cut: 0,
                    next_seq: 0,
                    indexes_rebuilt: 0,
                },
            ));
        };
        // Each sealed segment must end where the next begins; its index
        // must name its records (else it is rebuilt), the timestamps'
        // running maximum going on from segment to segment.
        let (mut max_timestamp_ns, mut rebuilt) = (0, 0);
        for w in firsts.windows(2) {
            let path = dir.join(SegmentWriter::file_name(w[0]));
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&format!("read {}", path.display()), e))?;
            let (_, records) = check_segment(&bytes, &path, topic_id, true)?;
            let due = records.last().map_or(w[0], |r| r.seq + 1);
            let (indexer, _, why) = check_index(&path, topic_id, w[0], record_offsets(&records), max_timestamp_ns);
            max_timestamp_ns = indexer.max_timestamp_ns();
            if let Some(why) = why {
                log::info!("{}: index rebuilt ({why})", index_path(&path).display());
                rebuilt += 1;
            }
            if due != w[1] {
                return Err(Error::new(
                    Status::Corrupt,
                    format!(
                        "{}: holds records {} to {}, but the next segment starts at {}",
                        path.display(),
                        w[0],
                        due.wrapping_sub(1),
                        w[1]
                    ),
                ));
            }
        }
        let last_path = dir.join(SegmentWriter::file_name(last));
        let (writer, mut recovery) = SegmentWriter::recover_after(&last_path, topic_id, max_timestamp_ns)?;
        recovery.indexes_rebuilt += rebuilt;
        let log = Log {
            dir: dir.into(),
            topic_id,
            segment_bytes,
            sealed_bytes: firsts[..firsts.len() - 1]
                .iter()
                .filter_map(|&f| std::fs::metadata(dir.join(SegmentWriter::file_name(f))).ok())
                .map(|m| m.len())
                .sum(),
            firsts,
            writer,
        };
        Ok((log, recovery))
    }

    /// Appends one record; rolls to a new segment first when the current
    /// one has reached `segment_bytes`. Durable only after [`sync`](Self::sync).
    pub fn append(&mut self, timestamp_ns: u64, payload: &[u8]) -> Result<u64> {
        self.append_with(timestamp_ns, payload.len(), |dst| dst.copy_from_slice(payload))
    }

    /// [`append`](Self::append) of `len` bytes that `fill` writes in place.
    pub fn append_with(&mut self, timestamp_ns: u64, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<u64> {
        let seq = self.writer.next_seq();
        self.append_seq(seq, timestamp_ns, len, None, fill)
    }

    /// Appends the record numbered `seq` (at least the next number: see
    /// [`SegmentWriter::append_seq`]); rolls to a new segment first when the
    /// current one has reached `segment_bytes`. A failed roll changes
    /// nothing, so the same call may be tried again.
    pub fn append_seq(
        &mut self,
        seq: u64,
        timestamp_ns: u64,
        len: usize,
        origin: Option<Origin>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64> {
        if self.writer.len() >= self.segment_bytes && !self.writer.is_empty() {
            // The old segment's records are made durable before a new file
            // names a first seq after them.
            self.writer.sync()?;
            let next = self.writer.next_seq();
            let path = self.dir.join(SegmentWriter::file_name(next));
            // Left by a roll that failed after making the file (nothing in it yet).
            if std::fs::metadata(&path).is_ok_and(|m| m.len() <= SEGMENT_HEADER as u64) {
                let _ = std::fs::remove_file(&path);
            }
            let fresh = SegmentWriter::create_after(&self.dir, self.topic_id, next, self.writer.max_timestamp_ns())?;
            self.sealed_bytes += self.writer.len();
            self.writer = fresh;
            self.firsts.push(next);
        }
        self.writer.append_seq(seq, timestamp_ns, len, origin, fill)
    }

    /// Writes what was appended (readers of the files see it from then on).
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush()
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<()> {
        self.writer.sync()
    }

    /// The number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.writer.next_seq()
    }

    /// Bytes in the log's files (with what is appended and not yet written).
    pub fn bytes(&self) -> u64 {
        self.sealed_bytes + self.writer.len()
    }

    /// The first seq still in the log.
    pub fn first_seq(&self) -> u64 {
        self.firsts[0]
    }

    /// Records from `seq` on, up to `max` of them, read and checked across
    /// segments. `NotFound` if `seq` is below the log's first (removed by
    /// retention) or past its end.
    pub fn read_from(&self, seq: u64, max: usize) -> Result<Vec<(u64, u64, Vec<u8>)>> {
        if seq < self.first_seq() || seq > self.next_seq() {
            return Err(Error::new(
                Status::NotFound,
                format!(
                    "record {seq} is not in the log (it holds {} to {})",
                    self.first_seq(),
                    self.next_seq()
                ),
            ));
        }
        let start = self.firsts.partition_point(|&f| f <= seq) - 1;
        let mut out = Vec::new();
        for (i, &first) in self.firsts.iter().enumerate().skip(start) {
            let sealed = i + 1 < self.firsts.len();
            let path = self.dir.join(SegmentWriter::file_name(first));
            for r in read_segment(&path, self.topic_id, sealed)? {
                if r.0 >= seq && out.len() < max {
                    out.push(r);
                }
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Retention: removes the segments all of whose records are below
    /// `seq` (never the one being written); returns how many went.
    pub fn remove_before(&mut self, seq: u64) -> Result<usize> {
        let mut gone = 0;
        while self.firsts.len() > 1 && self.firsts[1] <= seq {
            let path = self.dir.join(SegmentWriter::file_name(self.firsts[0]));
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            std::fs::remove_file(&path).map_err(|e| Error::io(&format!("remove {}", path.display()), e))?;
            // Its index goes with it (one left by a crash here goes at the next start).
            let _ = std::fs::remove_file(index_path(&path));
            self.firsts.remove(0);
            self.sealed_bytes = self.sealed_bytes.saturating_sub(len);
            gone += 1;
        }
        Ok(gone)
    }

    /// The first seq of the second-oldest segment (the writer's own if it is the only one).
    pub fn second_first_seq(&self) -> u64 {
        self.firsts.get(1).copied().unwrap_or(self.firsts[0])
    }

    /// Rolls over at `bytes` from the next record on.
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes;
    }

    /// Retention by age: removes the sealed segments whose every record is
    /// older than `cutoff_ns` (CLOCK_REALTIME), judged by the first record
    /// of the segment after each (timestamps are the publishers', so this is
    /// as exact as their clocks agree); where that record has no timestamp
    /// (its publisher sent none), by when the segment was last written
    /// (its mtime: the daemon's clock, after every record in it was
    /// published). Returns how many went.
    pub fn remove_older_than(&mut self, cutoff_ns: u64) -> Result<usize> {
        let mut keep_from = self.firsts[0];
        for w in self.firsts.windows(2) {
            let age = match self.first_timestamp(w[1])? {
                Some(aether::NO_TIMESTAMP) => self.written_at(w[0]),
                ts => ts,
            };
            match age {
                Some(ts) if ts < cutoff_ns => keep_from = w[1],
                _ => break,
            }
        }
        self.remove_before(keep_from)
    }

    /// When the segment starting at `first` was last written (ns since the
    /// epoch), if the file system says.
    fn written_at(&self, first: u64) -> Option<u64> {
        let path = self.dir.join(SegmentWriter::file_name(first));
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        u64::try_from(since.as_nanos()).ok()
    }

    /// The timestamp of the first record of the segment starting at `first`,
    /// if one is written there.
    fn first_timestamp(&self, first: u64) -> Result<Option<u64>> {
        use std::os::unix::fs::FileExt;
        let path = self.dir.join(SegmentWriter::file_name(first));
        let f = File::open(&path).map_err(|e| Error::io(&format!("open {}", path.display()), e))?;
        let mut head = [0u8; SEGMENT_HEADER + 24];
        match f.read_exact_at(&mut head, 0) {
            Ok(()) => Ok(Some(u64::from_le_bytes(
                head[SEGMENT_HEADER + 16..].try_into().expect("8 bytes"),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(Error::io(&format!("read {}", path.display()), e)),
        }
    }

    /// Segments in the log, oldest first.
    pub fn segments(&self) -> usize {
        self.firsts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether::logfile::{record_size, RECORD_HEADER};
    use std::os::unix::fs::PermissionsExt;

    /// A directory unique to the test, removed when dropped.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "aether-wal-{tag}-{}-{:x}",
                std::process::id(),
                aether::sys::random_u64()
            ));
            std::fs::create_dir(&p).expect("temp dir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const TOPIC: u64 = 0x5eed;

    fn payload(i: u64) -> Vec<u8> {
        (0..(i * 37 % 300)).map(|k| (k ^ i) as u8).collect()
    }

    /// A segment of `n` records numbered from `first`.
    fn segment(dir: &Path, first: u64, n: u64) -> PathBuf {
        let mut w = SegmentWriter::create(dir, TOPIC, first).expect("create");
        for i in first..first + n {
            assert_eq!(w.append(i * 10, &payload(i)).expect("append"), i);
        }
        w.sync().expect("sync");
        w.path().to_path_buf()
    }

    #[test]
    fn records_come_back_in_order_and_numbering_goes_on_after_reopening() {
        let d = TempDir::new("roundtrip");
        let path = segment(&d.0, 1000, 500);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the daemon's alone");
        let got = read_segment(&path, TOPIC, true).expect("read");
        assert_eq!(got.len(), 500);
        for (k, (seq, ts, p)) in got.iter().enumerate() {
            let i = 1000 + k as u64;
            assert_eq!((*seq, *ts, p.clone()), (i, i * 10, payload(i)));
        }
        let (mut w, r) = SegmentWriter::recover(&path, TOPIC).expect("recover");
        assert_eq!(
            r,
            Recovery {
                records: 500,
                cut: 0,
                next_seq: 1500,
                indexes_rebuilt: 0,
            }
        );
        assert_eq!(w.append(1, b"after").expect("append"), 1500);
        w.flush().expect("flush");
        assert_eq!(read_segment(&path, TOPIC, true).expect("read").len(), 501);
        assert!(
            SegmentWriter::create(&d.0, TOPIC, 1000).is_err(),
            "an existing segment is never overwritten"
        );
        assert_eq!(
            read_segment(&path, TOPIC + 1, true)
                .expect_err("another topic's")
                .status,
            Status::Corrupt
        );
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_length_and_numbering_resumes() {
        let d = TempDir::new("torn");
        let path = segment(&d.0, 0, 20);
        let whole = std::fs::read(&path).expect("read");
        let last = record_size(payload(19).len());
        let keep = whole.len() - last;
        for cut in 1..last {
            // A crash mid-append leaves a prefix of the last record (or of
            // its zero padding: then the record itself is whole and stays).
            std::fs::write(&path, &whole[..whole.len() - cut]).expect("write");
            let (mut w, r) = SegmentWriter::recover(&path, TOPIC).expect("recover");
            assert_eq!((r.records, r.next_seq), (19, 19), "cut {cut}");
            assert_eq!(r.cut as usize, last - cut, "cut {cut}");
            assert_eq!(std::fs::metadata(&path).expect("stat").len() as usize, keep);
            assert_eq!(w.append(7, b"next").expect("append"), 19);
            w.flush().expect("flush");
            let got = read_segment(&path, TOPIC, true).expect("read");
            assert_eq!(got.len(), 20);
            assert_eq!(got[19], (19, 7, b"next".to_vec()));
        }
    }

    #[test]
    fn a_flipped_byte_is_reported_with_its_place_never_delivered_or_cut() {
        let d = TempDir::new("flip");
        let path = segment(&d.0, 0, 30);
        let whole = std::fs::read(&path).expect("read");
        // Offsets of records 10 (in the middle) and 29 (the last).
        let at = |n: u64| SEGMENT_HEADER + (0..n).map(|i| record_size(payload(i).len())).sum::<usize>();
        for (victim, sealed_only) in [(0u64, false), (10, false), (29, true)] {
            for byte in [0usize, 5, 9, 17, RECORD_HEADER + 1] {
                let mut bad = whole.clone();
                let off = at(victim) + byte;
                if off >= at(victim) + RECORD_HEADER + payload(victim).len() {
                    continue;
                }
                bad[off] ^= 0x40;
                std::fs::write(&path, &bad).expect("write");
                let e = read_segment(&path, TOPIC, true).expect_err("a flipped byte is found");
                assert_eq!(e.status, Status::Corrupt);
                assert!(
                    e.message.contains(&format!("record {victim} at offset {}", at(victim))),
                    "names the place: {}",
                    e.message
                );
                if !sealed_only {
                    let e = SegmentWriter::recover(&path, TOPIC)
                        .err()
                        .expect("damage in the middle");
                    assert_eq!(e.status, Status::Corrupt, "{}", e.message);
                    assert_eq!(std::fs::read(&path).expect("read"), bad, "nothing cut");
                }
            }
        }
    }

    #[test]
    fn any_bytes_give_an_answer_never_a_panic() {
        let d = TempDir::new("fuzz");
        let path = d.0.join(SegmentWriter::file_name(0));
        let good = std::fs::read(segment(&d.0, 0, 8)).expect("read");
        let mut x = aether::sys::random_u64() | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut bytes = if round % 2 == 0 {
                // A real segment with some bytes changed and a random length.
                let mut b = good.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % b.len();
                    b[i] = next() as u8;
                }
                b.truncate((next() as usize) % (b.len() + 1));
                b
            } else {
                (0..next() % 600).map(|_| next() as u8).collect()
            };
            if round % 3 == 0 && bytes.len() >= SEGMENT_HEADER {
                bytes[..SEGMENT_HEADER].copy_from_slice(&good[..SEGMENT_HEADER]);
            }
            std::fs::write(&path, &bytes).expect("write");
            for sealed in [false, true] {
                if let Err(e) = read_segment(&path, TOPIC, sealed) {
                    assert_eq!(e.status, Status::Corrupt, "{}", e.message);
                }
            }
            match SegmentWriter::recover(&path, TOPIC) {
                Ok((_, r)) => {
                    // What recovery kept reads back whole.
                    let kept = read_segment(&path, TOPIC, true).expect("what recovery keeps is valid");
                    assert_eq!(kept.len() as u64, r.records);
                }
                Err(e) => assert_eq!(e.status, Status::Corrupt, "{}", e.message),
            }
        }
    }

    #[test]
    fn a_log_rolls_segments_reads_across_them_and_resumes_after_reopening() {
        let d = TempDir::new("log");
        let dir = d.0.join("topic");
        let (mut log, r) = Log::open(&dir, TOPIC, 4096).expect("open");
        assert_eq!(r.next_seq, 0);
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the daemon's alone");
        for i in 0..400 {
            assert_eq!(log.append(i, &payload(i)).expect("append"), i);
        }
        log.sync().expect("sync");
        assert!(log.segments() > 5, "rolled at 4 KiB: {} segments", log.segments());
        let got = log.read_from(123, 1000).expect("read");
        assert_eq!(got.len(), 400 - 123);
        for (k, (seq, ts, p)) in got.iter().enumerate() {
            let i = 123 + k as u64;
            assert_eq!((*seq, *ts, p.clone()), (i, i, payload(i)));
        }
        assert_eq!(log.read_from(0, 10).expect("read").len(), 10);
        assert_eq!(log.read_from(400, 10).expect("at the end: nothing yet").len(), 0);
        assert_eq!(
            log.read_from(401, 1).expect_err("past the end").status,
            Status::NotFound
        );
        let segments = log.segments();
        drop(log);
        let (mut log, r) = Log::open(&dir, TOPIC, 4096).expect("reopen");
        assert_eq!((r.next_seq, log.segments()), (400, segments));
        assert_eq!(log.append(1, b"on").expect("append"), 400);
        log.flush().expect("flush");

        // Retention: whole segments below the mark go; reading above it goes on.
        let removed = log.remove_before(200).expect("retention");
        assert!(removed > 0);
        assert!(log.first_seq() <= 200 && log.first_seq() > 0);
        assert_eq!(log.read_from(0, 1).expect_err("removed").status, Status::NotFound);
        assert_eq!(log.read_from(200, 1000).expect("read").len(), 201);
        drop(log);
        let (log, _) = Log::open(&dir, TOPIC, 4096).expect("reopen after retention");
        assert!(log.first_seq() > 0);
    }

    #[test]
    fn a_missing_segment_in_the_middle_is_corrupt_not_skipped() {
        let d = TempDir::new("gap");
        let dir = d.0.join("topic");
        let (mut log, _) = Log::open(&dir, TOPIC, 2048).expect("open");
        for i in 0..200 {
            log.append(i, &payload(i)).expect("append");
        }
        assert!(log.segments() >= 3);
        let second = log.firsts[1];
        drop(log);
        std::fs::remove_file(dir.join(SegmentWriter::file_name(second))).expect("remove");
        let e = Log::open(&dir, TOPIC, 2048).err().expect("a gap");
        assert_eq!(e.status, Status::Corrupt);
        assert!(e.message.contains("but the next segment starts at"), "{}", e.message);
    }

    /// Every index file of the log in `dir`, by first seq, checked to name
    /// records of its segment (seq and offset) with a running maximum at
    /// least every timestamp up to them, across the segments.
    fn indexes(dir: &Path) -> Vec<(u64, Vec<u8>)> {
        let mut max = 0;
        let mut out = Vec::new();
        for first in segment_firsts(dir).expect("list") {
            let path = dir.join(SegmentWriter::file_name(first));
            let bytes = std::fs::read(&path).expect("read");
            let (_, records) = check_segment(&bytes, &path, TOPIC, false).expect("valid");
            let ibytes = std::fs::read(index_path(&path)).expect("every segment has an index");
            let mode = std::fs::metadata(index_path(&path)).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the daemon's alone");
            let entries = decode_index(&ibytes, TOPIC, first).expect("decodes");
            assert_eq!(
                ibytes.len(),
                INDEX_HEADER + entries.len() * INDEX_ENTRY,
                "no torn entry"
            );
            let mut e = entries.iter().peekable();
            for (seq, ts, off) in record_offsets(&records) {
                max = max.max(ts);
                if let Some(en) = e.next_if(|en| en.offset == off) {
                    assert_eq!(en.seq, seq);
                    assert!(en.max_timestamp_ns >= max, "{en:?} below {max}");
                }
            }
            assert!(e.next().is_none(), "entries name records of the segment");
            assert_eq!(
                entries.first().map(|e| e.offset),
                records.first().map(|_| SEGMENT_HEADER as u64)
            );
            out.push((first, ibytes));
        }
        out
    }

    /// The writer keeps an index beside each segment as it appends (entries
    /// every 64 KiB, the timestamps' running maximum going on across
    /// segments even when stamps go back); reopening keeps good indexes
    /// and rebuilds a missing, damaged or torn one as it was; retention
    /// removes a segment's index with it, and a stray index goes at start.
    #[test]
    fn indexes_are_written_checked_rebuilt_and_removed_with_their_segments() {
        let d = TempDir::new("index");
        let dir = d.0.join("topic");
        let (mut log, _) = Log::open(&dir, TOPIC, 1 << 20).expect("open");
        let stamp = |i: u64| if i % 7 == 3 { i * 100 - 250 } else { i * 100 };
        let mut i = 1;
        while log.segments() < 4 || log.writer.len() < 600_000 {
            log.append(stamp(i), &payload(i)).expect("append");
            i += 1;
        }
        log.flush().expect("flush");
        let written = indexes(&dir);
        assert!(written.iter().all(|(_, b)| b.len() >= INDEX_HEADER + 8 * INDEX_ENTRY));
        drop(log);
        let (log, r) = Log::open(&dir, TOPIC, 1 << 20).expect("reopen");
        assert_eq!(r.indexes_rebuilt, 0);
        assert_eq!(indexes(&dir), written);
        drop(log);

        // One missing, one with a flipped byte, the last one torn.
        let ipath = |f: u64| index_path(&dir.join(SegmentWriter::file_name(f)));
        let (a, b, c) = (written[0].0, written[1].0, written.last().expect("some").0);
        std::fs::remove_file(ipath(a)).expect("remove");
        let mut bad = written[1].1.clone();
        bad[INDEX_HEADER + 2 * INDEX_ENTRY + 5] ^= 1;
        std::fs::write(ipath(b), bad).expect("write");
        let torn = &written.last().expect("some").1;
        std::fs::write(ipath(c), &torn[..torn.len() - 40]).expect("write");
        let (log, r) = Log::open(&dir, TOPIC, 1 << 20).expect("reopen");
        assert_eq!(r.indexes_rebuilt, 3);
        assert_eq!(indexes(&dir), written, "rebuilt as written");
        drop(log);

        // The last segment cut before its last entries (a torn write of a
        // whole batch): their entries go too, and appending goes on.
        let last = dir.join(SegmentWriter::file_name(c));
        let entries = decode_index(torn, TOPIC, c).expect("decodes");
        let cut_at = entries[entries.len() - 2].offset + 3;
        let f = OpenOptions::new().write(true).open(&last).expect("open");
        f.set_len(cut_at).expect("truncate");
        let (mut log, r) = Log::open(&dir, TOPIC, 1 << 20).expect("reopen");
        assert!(r.cut > 0 && r.indexes_rebuilt == 1, "{r:?}");
        let after = indexes(&dir);
        let kept = decode_index(&after.last().expect("some").1, TOPIC, c).expect("decodes");
        assert_eq!(kept, entries[..entries.len() - 2]);
        for i in 0..3000 {
            log.append(5, &payload(i)).expect("append");
        }
        log.flush().expect("flush");
        indexes(&dir);
        drop(log);
        let (mut log, r) = Log::open(&dir, TOPIC, 1 << 20).expect("reopen");
        assert_eq!(r.indexes_rebuilt, 0, "what the writer appended is what recovery makes");

        // Retention takes the index with the segment; a stray index goes at start.
        assert!(log.remove_before(b).expect("retention") == 1);
        assert!(!ipath(a).exists());
        std::fs::write(ipath(a), &written[0].1).expect("write");
        drop(log);
        let (_log, r) = Log::open(&dir, TOPIC, 1 << 20).expect("reopen");
        assert_eq!(r.indexes_rebuilt, 0);
        assert!(!ipath(a).exists(), "a stray index is removed");
        // The running maximum of the first segment kept goes on from the removed ones.
        assert_eq!(&indexes(&dir)[0].1, &written[1].1);
    }

    /// Retention by age judges a segment by the first record after it;
    /// where that record has no timestamp (0: its publisher sent none), by
    /// the segment's mtime instead: never removed for the 0 alone.
    #[test]
    fn age_retention_judges_unstamped_segments_by_when_they_were_written() {
        let d = TempDir::new("age");
        let dir = d.0.join("topic");
        let (mut log, _) = Log::open(&dir, TOPIC, 4096).expect("open");
        // Stamped 1000 + i, but every record from 100 on without a stamp.
        let mut i = 0;
        while log.segments() < 8 {
            log.append(if i < 100 { 1000 + i } else { 0 }, &payload(i))
                .expect("append");
            i += 1;
        }
        log.flush().expect("flush");
        let firsts = log.firsts.clone();
        let stamped = firsts.iter().filter(|&&f| f > 0 && f < 100).count();
        assert!(stamped >= 2 && firsts.iter().any(|&f| f > 100), "{firsts:?}");
        // Every stamp is older than the cutoff: only the segments followed
        // by a stamped first record go; the mtimes are now.
        let now = aether::sys::realtime_ns();
        assert_eq!(log.remove_older_than(1_000_000).expect("retention"), stamped);
        assert_eq!(log.remove_older_than(now - 60_000_000_000).expect("retention"), 0);
        // Written an hour ago: those go too, but for the one being written.
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for f in &log.firsts {
            let file = File::options()
                .write(true)
                .open(dir.join(SegmentWriter::file_name(*f)))
                .expect("open");
            file.set_modified(hour_ago).expect("set mtime");
        }
        let left = log.segments();
        assert_eq!(
            log.remove_older_than(now - 60_000_000_000).expect("retention"),
            left - 1
        );
        assert_eq!(log.segments(), 1);
    }

    #[test]
    fn another_uid_cannot_read_a_log_file() {
        // As root, read it as uid 65534 with setpriv; elsewhere there is no
        // other uid to be, and the mode checks above stand alone.
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to act as another uid");
            return;
        }
        let d = TempDir::new("uid");
        // The directory open to all: only the file's own mode keeps it private.
        std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = segment(&d.0, 0, 3);
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(&path)
            .output()
            .expect("run setpriv");
        assert!(!out.status.success(), "uid 65534 read the log");
        assert!(out.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
