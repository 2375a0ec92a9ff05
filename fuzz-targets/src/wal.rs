//! The `wal` target: arbitrary bytes as a durable topic's log files, read
//! by every reader of them: `aether::logfile` (header, record decoder,
//! scan, the search for a valid record after damage, `read_segment`), the
//! daemon's recovery of a log directory (`aetherd::wal::Log::open`, which
//! cuts a torn tail) and appending after it, and a subscriber's history
//! (`aether::replay_history`, over memfds as the daemon hands files over).
//!
//! Input: `flags (1) | files`. The files are split at each occurrence of
//! the log magic after the first byte, each named after its header's first
//! seq (or its index, when it has no header). Flags: bit 0: the record
//! checksums are made right first (so that the fuzzer gets past the CRC to
//! lengths and numbering); bits 1-2: where the history starts (earliest,
//! seq, time, latest); bit 3: the history ends at the log's end (else
//! never: the ring "starts" at u64::MAX).

use aether::logfile::{
    decode_at, decode_header, encode_record_with, record_size, scan, valid_record_after, Found, MAGIC, MAX_PAYLOAD,
    RECORD_HEADER, REMOTE, SEGMENT_HEADER,
};
use aether::protocol::Start;
use aether::{Origin, Status, ORIGIN_BYTES};
use aetherd::wal::{Log, SegmentWriter};
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
    let mut files = split(rest);
    if flags & 1 != 0 {
        for f in &mut files {
            fix_crcs(f);
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
    history(&files, flags, log_end);
    directory(&files, topic_id);
}

/// The files in `rest`: split before each magic after its first byte.
fn split(rest: &[u8]) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut from = 0;
    let mut at = 1;
    while at + MAGIC.len() <= rest.len() && files.len() + 1 < MAX_FILES {
        if &rest[at..at + MAGIC.len()] == MAGIC {
            files.push(rest[from..at].to_vec());
            from = at;
        }
        at += 1;
    }
    files.push(rest[from..].to_vec());
    files
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

/// A subscriber's history over the files, from where `flags` say.
fn history(files: &[Vec<u8>], flags: u8, log_end: Option<u64>) {
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
    let fds = files.iter().map(|f| memfd(f)).collect();
    let (got, err) = aether::replay_history(fds, start.clone(), end_seq, MAX_MESSAGE, 100_000);
    let mut prev = None;
    for &(seq, ts, len) in &got {
        assert!(prev.is_none_or(|p| seq > p), "history seq {seq} after {prev:?}");
        assert!(seq < end_seq, "history seq {seq} at or past the ring's {end_seq}");
        assert!(len <= MAX_MESSAGE, "a message of {len} bytes");
        match start {
            Start::Seq(n) => assert!(seq >= n, "seq {seq} before the start {n}"),
            Start::Time(t) => assert!(ts >= t, "timestamp {ts} before the start {t}"),
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

/// The files as a log directory: the daemon's recovery, reads across the
/// segments, and an append after recovery that survives reopening.
fn directory(files: &[Vec<u8>], topic_id: u64) {
    let tmp = TempDir::new();
    let dir = tmp.0.join("log");
    std::fs::create_dir(&dir).expect("make the log directory");
    for (i, f) in files.iter().enumerate() {
        let first = decode_header(f, "file").map_or(i as u64, |(_, first)| first);
        std::fs::write(dir.join(SegmentWriter::file_name(first)), f).expect("write a log file");
    }
    let (mut log, recovery) = match Log::open(&dir, topic_id, 1 << 20) {
        Ok(l) => l,
        Err(e) => {
            assert!(matches!(e.status, Status::Corrupt | Status::Io), "Log::open: {e}");
            return;
        }
    };
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
    let back = log
        .read_from(seq, 1)
        .unwrap_or_else(|e| panic!("reading the appended record: {e}"));
    assert_eq!(back, vec![(seq, 7, b"fuzz".to_vec())]);
}
