//! The `wal` target: arbitrary bytes as a durable topic's log files and
//! their indexes, read by every reader of them: `aether::logfile` (header,
//! record decoder, scan, the search for a valid record after damage,
//! `read_segment`, the index decoder and seeks), the daemon's recovery of
//! a log directory (`aetherd::wal::Log::open`, which cuts a torn tail and
//! checks or rebuilds every index) and appending after it, and a
//! subscriber's history (`aether::replay_history`, over memfds as the
//! daemon hands files over, the first one's offset set as the daemon's
//! seek sets it).
//!
//! Input: `flags (1) | files`. The files are split at each occurrence of
//! the log magic or the index magic after the first byte. A log file is
//! named after its header's first seq (or its place, when it has no
//! header); an index file (starting with the index magic) after its
//! header's first seq, or the log file before it. Flags: bit 0: the record
//! and index entry checksums are made right first (so that the fuzzer gets
//! past the CRC to lengths and numbering); bits 1-2: where the history
//! starts (earliest, seq, time, latest); bit 3: the history ends at the
//! log's end (else never: the ring "starts" at u64::MAX); bit 4: the first
//! file's offset is set, to where its index seeks for the start if the
//! input has one that answers, else to the start of its record `k` (bits
//! 5-7), else to `8 (k + 5)`.

use aether::logfile::{
    check_segment, decode_at, decode_header, decode_index, encode_index_entry, encode_record_with, record_offsets,
    record_size, scan, seek_seq, seek_time, valid_record_after, Found, IndexEntry, Indexer, INDEX_ENTRY, INDEX_HEADER,
    INDEX_MAGIC, MAGIC, MAX_PAYLOAD, RECORD_HEADER, REMOTE, SEGMENT_HEADER,
};
use aether::protocol::Start;
use aether::{Origin, Status, ORIGIN_BYTES};
use aetherd::wal::{index_path, read_index, segment_firsts, Log, SegmentWriter};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Files per input at most.
const MAX_FILES: usize = 8;
/// A topic's largest message, for the history.
const MAX_MESSAGE: usize = 1 << 16;

/// See the module documentation.
pub fn wal(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (mut files, mut indexes) = split(rest);
    if flags & 1 != 0 {
        for f in &mut files {
            fix_crcs(f);
        }
        for (_, ix) in &mut indexes {
            fix_index_crcs(ix);
        }
    }
    let topic_id = files
        .first()
        .and_then(|f| decode_header(f, "first").ok())
        .map_or(0, |(id, _)| id);
    let mut log_end = None;
    for f in &files {
        log_end = check_bytes(f, topic_id).or(log_end);
    }
    for (first, ix) in &indexes {
        check_index_bytes(ix, topic_id, *first);
    }
    history(&files, &indexes, topic_id, flags, log_end);
    directory(&files, &indexes, topic_id);
}

/// The name (first seq) of the log file `f`, the `i`th.
fn first_of(f: &[u8], i: usize) -> u64 {
    decode_header(f, "file").map_or(i as u64, |(_, first)| first)
}

/// Index files, each with the first seq it is named by.
type Indexes = Vec<(u64, Vec<u8>)>;

/// The files in `rest`, split before each magic after its first byte:
/// the log files, and the index files.
fn split(rest: &[u8]) -> (Vec<Vec<u8>>, Indexes) {
    let mut pieces = Vec::new();
    let mut from = 0;
    let mut at = 1;
    while at + MAGIC.len() <= rest.len() && pieces.len() + 1 < MAX_FILES {
        let m = &rest[at..at + MAGIC.len()];
        if m == MAGIC || m == INDEX_MAGIC {
            pieces.push(rest[from..at].to_vec());
            from = at;
        }
        at += 1;
    }
    pieces.push(rest[from..].to_vec());
    let (mut files, mut indexes) = (Vec::new(), Vec::new());
    for p in pieces {
        if p.starts_with(INDEX_MAGIC) {
            let named = p
                .get(24..32)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            let before = files.last().map(|f: &Vec<u8>| first_of(f, files.len() - 1));
            indexes.push((named.or(before).unwrap_or(0), p));
        } else {
            files.push(p);
        }
    }
    (files, indexes)
}

/// Rewrites the checksum of each whole entry of an index.
fn fix_index_crcs(ix: &mut [u8]) {
    if ix.len() < INDEX_HEADER {
        return;
    }
    for e in ix[INDEX_HEADER..].chunks_exact_mut(INDEX_ENTRY) {
        let u = |at: usize| u64::from_le_bytes(e[at..at + 8].try_into().expect("8 bytes"));
        let good = encode_index_entry(&IndexEntry {
            seq: u(0),
            max_timestamp_ns: u(8),
            offset: u(16),
        });
        e[28..].copy_from_slice(&good[28..]);
    }
}

/// The index decoder and seeks over one index's bytes: the entries go
/// up, each re-encodes to its bytes, and a seek answers one of them.
fn check_index_bytes(ix: &[u8], topic_id: u64, first: u64) {
    let Ok(entries) = decode_index(ix, topic_id, first) else {
        return;
    };
    assert!(entries.len() <= (ix.len() - INDEX_HEADER) / INDEX_ENTRY);
    for (i, e) in entries.iter().enumerate() {
        let at = INDEX_HEADER + i * INDEX_ENTRY;
        assert_eq!(&encode_index_entry(e)[..], &ix[at..at + INDEX_ENTRY], "entry {i}");
        assert!(e.seq >= first && e.offset >= SEGMENT_HEADER as u64);
    }
    assert!(entries
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].offset < w[1].offset && w[0].max_timestamp_ns <= w[1].max_timestamp_ns));
    for probe in [0, first, first.saturating_add(3), 30, u64::MAX] {
        if let Some(e) = seek_seq(&entries, probe) {
            assert!(e.seq <= probe && entries.contains(&e));
        }
        if let Some(e) = seek_time(&entries, probe) {
            assert!(e.max_timestamp_ns < probe && entries.contains(&e));
        }
    }
}

/// Rewrites the checksum of each record from the header on, as far as the
/// lengths lead and the bytes go.
fn fix_crcs(f: &mut [u8]) {
    let mut off = SEGMENT_HEADER;
    while off + RECORD_HEADER <= f.len() {
        let field = u32::from_le_bytes(f[off..off + 4].try_into().expect("4 bytes"));
        let (len, remote) = ((field & !REMOTE) as usize, field & REMOTE != 0);
        let size = record_size(len.min(MAX_PAYLOAD));
        if len > MAX_PAYLOAD || off + size > f.len() || remote && len < ORIGIN_BYTES {
            return;
        }
        let seq = u64::from_le_bytes(f[off + 8..off + 16].try_into().expect("8 bytes"));
        let ts = u64::from_le_bytes(f[off + 16..off + 24].try_into().expect("8 bytes"));
        let mut good = Vec::with_capacity(size);
        let payload = &f[off + RECORD_HEADER..off + RECORD_HEADER + len];
        let origin = remote.then(|| Origin {
            broker: u64::from_le_bytes(payload[len - 16..len - 8].try_into().expect("8 bytes")),
            seq: u64::from_le_bytes(payload[len - 8..].try_into().expect("8 bytes")),
        });
        let data = &payload[..len - if remote { ORIGIN_BYTES } else { 0 }];
        encode_record_with(&mut good, seq, ts, data.len(), origin, |d| d.copy_from_slice(data));
        f[off + 4..off + 8].copy_from_slice(&good[4..8]);
        off += size;
    }
}

/// The pure decoders over one file's bytes; returns where its records end
/// (the seq the next would have), if its header is for `topic_id`.
fn check_bytes(f: &[u8], topic_id: u64) -> Option<u64> {
    let header = decode_header(f, "file");
    assert_eq!(
        header.is_ok(),
        f.len() >= SEGMENT_HEADER && &f[..8] == MAGIC && f[8..12] == 1u32.to_le_bytes() && f[24..32] != [0xff; 8],
        "decode_header"
    );
    if let Err(e) = &header {
        assert_eq!(e.status, Status::Corrupt, "{e}");
    }
    // decode_at at every 8-byte offset: any answer, never a panic; a record ends inside the bytes.
    for off in (0..=f.len()).step_by(8).take(512) {
        match decode_at(f, off, 0) {
            Found::Record(r, next) => {
                assert!(
                    next > off && next <= f.len(),
                    "record at {off} ends at {next} of {}",
                    f.len()
                );
                assert_eq!(next - off, record_size(r.payload.len()));
            }
            Found::End => assert_eq!(off, f.len()),
            Found::Bad(_) => {}
        }
    }
    let (_, first) = header.ok()?;
    let path = Path::new("fuzz.wal");
    let (due, records, end) = match scan(f, path, topic_id) {
        Ok(s) => s,
        Err(e) => {
            assert_eq!(e.status, Status::Corrupt, "{e}");
            return None;
        }
    };
    // The records: numbered upwards from the header's first seq, laid end to end up to `end`.
    assert!(end >= SEGMENT_HEADER && end <= f.len());
    let mut expect = first;
    let mut off = SEGMENT_HEADER;
    for r in &records {
        assert!(r.seq >= expect, "record {} where {expect} or later was due", r.seq);
        expect = r.seq.wrapping_add(1);
        // Re-encoded, it is the same record of the same size.
        let mut again = Vec::new();
        let data = r.data();
        encode_record_with(&mut again, r.seq, r.timestamp_ns, data.len(), r.origin, |d| {
            d.copy_from_slice(data)
        });
        assert_eq!(again.len(), record_size(r.payload.len()));
        assert_eq!(
            &again[..RECORD_HEADER],
            &f[off..off + RECORD_HEADER],
            "record header at {off}"
        );
        assert_eq!(decode_at(&again, 0, r.seq), Found::Record(*r, again.len()));
        off += again.len();
    }
    assert_eq!(off, end, "records end where scan says");
    assert_eq!(due, records.last().map_or(first, |r| r.seq.wrapping_add(1)));
    if let Some(at) = valid_record_after(f, end, due) {
        assert!(
            at >= end && at % 8 == end % 8,
            "valid record at {at}, searched from {end}"
        );
        assert!(matches!(decode_at(f, at, due), Found::Record(..)));
    }
    Some(due)
}

/// A memfd holding `bytes`, read-only from the start (as the daemon sends log files).
fn memfd(bytes: &[u8]) -> OwnedFd {
    use std::io::Write;
    // SAFETY: a NUL-terminated name and valid flags; the result is checked.
    let fd = unsafe { libc::memfd_create(c"aether-fuzz-log".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by memfd_create and is owned by nothing else.
    let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    f.write_all(bytes).expect("write a memfd");
    f.into()
}

/// Where the first file's offset is set for `start` (flag bit 4), and
/// whether a reader from there must deliver what one from the header
/// does: the offset is a record of the file's valid prefix, at or before
/// the start (every record before it older, for a time).
fn hint(files: &[Vec<u8>], indexes: &[(u64, Vec<u8>)], topic_id: u64, flags: u8, start: &Start) -> Option<(u64, bool)> {
    let f = files.first().filter(|_| flags & 16 != 0)?;
    let first = first_of(f, 0);
    let from_index = indexes
        .iter()
        .find(|(n, _)| *n == first)
        .and_then(|(_, ix)| decode_index(ix, topic_id, first).ok())
        .and_then(|entries| match *start {
            Start::Seq(n) => seek_seq(&entries, n),
            Start::Time(t) => seek_time(&entries, t),
            _ => None,
        })
        .map(|e| e.offset);
    let records = scan(f, Path::new("hint"), topic_id).map(|r| r.1).unwrap_or_default();
    let placed: Vec<_> = record_offsets(&records).collect();
    let k = usize::from(flags >> 5);
    let at = from_index.unwrap_or_else(|| placed.get(k).map_or(8 * (k as u64 + 5), |r| r.2));
    let truthful = match placed.iter().position(|r| r.2 == at) {
        None => false,
        Some(i) => match *start {
            Start::Seq(n) => placed[i].0 <= n,
            Start::Time(t) => placed[..i].iter().all(|r| r.1 < t),
            _ => true,
        },
    };
    Some((at, truthful))
}

/// A subscriber's history over the files, from where `flags` say.
fn history(files: &[Vec<u8>], indexes: &[(u64, Vec<u8>)], topic_id: u64, flags: u8, log_end: Option<u64>) {
    let start = match (flags >> 1) & 3 {
        0 => Start::Earliest,
        1 => Start::Seq(3),
        2 => Start::Time(30),
        _ => Start::Latest,
    };
    let end_seq = match log_end {
        Some(end) if flags & 8 != 0 => end,
        _ => u64::MAX,
    };
    let fds = || files.iter().map(|f| memfd(f)).collect::<Vec<_>>();
    let (got, err) = aether::replay_history(fds(), start.clone(), end_seq, MAX_MESSAGE, 100_000);
    if let Some((at, truthful)) = hint(files, indexes, topic_id, flags, &start) {
        let fds = fds();
        let _ = set_offset(&fds[0], at);
        let (hinted, herr) = aether::replay_history(fds, start.clone(), end_seq, MAX_MESSAGE, 100_000);
        if truthful {
            assert_eq!(hinted, got, "from offset {at}");
            assert_eq!(
                herr.map(|e| e.status),
                err.as_ref().map(|e| e.status),
                "from offset {at}"
            );
        } else {
            check_history(&hinted, herr, &start, end_seq);
        }
    }
    check_history(&got, err, &start, end_seq);
}

/// Sets `fd`'s offset (as the daemon's seek does).
fn set_offset(fd: &OwnedFd, at: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: lseek on a descriptor this function borrows; no memory is passed.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), at.min(i64::MAX as u64) as i64, libc::SEEK_SET) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What any history delivers: in order, inside its bounds (a record
/// without a timestamp, 0, only after one stamped at or after a time
/// start); errors `Corrupt` or `Io`.
fn check_history(got: &[(u64, u64, usize)], err: Option<aether::Error>, start: &Start, end_seq: u64) {
    let (mut prev, mut found) = (None, false);
    for &(seq, ts, len) in got {
        assert!(prev.is_none_or(|p| seq > p), "history seq {seq} after {prev:?}");
        assert!(seq < end_seq, "history seq {seq} at or past the ring's {end_seq}");
        assert!(len <= MAX_MESSAGE, "a message of {len} bytes");
        match *start {
            Start::Seq(n) => assert!(seq >= n, "seq {seq} before the start {n}"),
            Start::Time(t) => {
                found |= ts >= t;
                assert!(
                    ts >= t || (found && ts == aether::NO_TIMESTAMP),
                    "timestamp {ts} before the start {t}"
                );
            }
            _ => {}
        }
        prev = Some(seq);
    }
    if let Some(e) = err {
        assert!(matches!(e.status, Status::Corrupt | Status::Io), "history: {e}");
    }
}

/// A directory unique to this call, removed when dropped: under
/// `AETHER_FUZZ_TMPDIR`, else /dev/shm if present, else the temporary directory.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        // tmpfs where there is one: the log syncs every file it makes, and
        // a sync there costs nothing.
        let base = std::env::var_os("AETHER_FUZZ_TMPDIR")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "fuzz-aether-wal-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("make a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The files as a log directory: the daemon's recovery (index files never
/// make it fail, and it leaves every segment an index that is right), reads
/// across the segments, and an append after recovery that survives reopening.
fn directory(files: &[Vec<u8>], indexes: &[(u64, Vec<u8>)], topic_id: u64) {
    let tmp = TempDir::new();
    let dir = tmp.0.join("log");
    std::fs::create_dir(&dir).expect("make the log directory");
    for (i, f) in files.iter().enumerate() {
        std::fs::write(dir.join(SegmentWriter::file_name(first_of(f, i))), f).expect("write a log file");
    }
    for (first, ix) in indexes {
        std::fs::write(index_path(&dir.join(SegmentWriter::file_name(*first))), ix).expect("write an index");
    }
    let (mut log, recovery) = match Log::open(&dir, topic_id, 1 << 20) {
        Ok(l) => l,
        Err(e) => {
            assert!(matches!(e.status, Status::Corrupt | Status::Io), "Log::open: {e}");
            // Not because of an index: without them, it fails the same.
            for (first, _) in indexes {
                let _ = std::fs::remove_file(index_path(&dir.join(SegmentWriter::file_name(*first))));
            }
            let again = Log::open(&dir, topic_id, 1 << 20).err().map(|e| e.status);
            assert_eq!(again, Some(e.status), "Log::open failed for an index: {e}");
            return;
        }
    };
    indexes_are_right(&dir, topic_id);
    assert_eq!(recovery.next_seq, log.next_seq());
    let first = log.first_seq();
    let read = log
        .read_from(first, 100_000)
        .unwrap_or_else(|e| panic!("reading the log just recovered: {e}"));
    let mut prev = None;
    for r in &read {
        assert!(prev.is_none_or(|p| r.0 > p), "log seq {} after {prev:?}", r.0);
        assert!(
            r.0 < log.next_seq(),
            "log seq {} at or past next {}",
            r.0,
            log.next_seq()
        );
        prev = Some(r.0);
    }
    // Appending after recovery: the record is there after reopening.
    let seq = log.next_seq();
    if seq == u64::MAX {
        return;
    }
    let appended = log.append(7, b"fuzz").and_then(|s| log.sync().map(|_| s));
    let appended = appended.unwrap_or_else(|e| panic!("append after recovery: {e}"));
    assert_eq!(appended, seq);
    drop(log);
    let (log, again) = Log::open(&dir, topic_id, 1 << 20).unwrap_or_else(|e| panic!("reopening after an append: {e}"));
    assert_eq!(again.next_seq, seq + 1);
    assert_eq!(again.cut, 0, "a clean log had a tail cut");
    assert_eq!(again.indexes_rebuilt, 0, "the writer's index is what recovery makes");
    indexes_are_right(&dir, topic_id);
    let back = log
        .read_from(seq, 1)
        .unwrap_or_else(|e| panic!("reading the appended record: {e}"));
    assert_eq!(back, vec![(seq, 7, b"fuzz".to_vec())]);
}

/// Every segment in `dir` has an index naming the records the writer's
/// rule picks (seq and offset), each with a running maximum at least every
/// timestamp up to it, across the segments.
fn indexes_are_right(dir: &Path, topic_id: u64) {
    let mut ix = Indexer::new(0);
    for first in segment_firsts(dir).expect("list the log") {
        let path = dir.join(SegmentWriter::file_name(first));
        let bytes = std::fs::read(&path).expect("read a segment");
        let (_, records) = check_segment(&bytes, &path, topic_id, false).expect("a recovered segment reads");
        let have = read_index(dir, topic_id, first).unwrap_or_else(|| panic!("segment {first} has no index"));
        let max_before = ix.max_timestamp_ns();
        ix = Indexer::new(max_before);
        let want: Vec<_> = record_offsets(&records)
            .filter_map(|(s, t, o)| ix.record(s, t, o))
            .collect();
        assert_eq!(have.len(), want.len(), "segment {first}: {have:?} for {want:?}");
        for (h, w) in have.iter().zip(&want) {
            assert_eq!((h.seq, h.offset), (w.seq, w.offset), "segment {first}");
            assert!(
                h.max_timestamp_ns >= w.max_timestamp_ns,
                "segment {first}: {h:?} below {w:?}"
            );
        }
        if let Some(h) = have.last() {
            ix.raise(h.max_timestamp_ns);
        }
    }
}
