//! The write-ahead log's on-disk format, defined once: the daemon writes
//! it (`aetherd::wal`), and subscribers replaying history read the files
//! the daemon hands them (`history`). Every reader checks every
//! record: a log file is untrusted input like the segment.
//!
//! A log segment is one file, `<first seq, 20 digits>.wal`, mode 0600 (the
//! daemon's alone), little-endian throughout:
//!
//! ```text
//! header (32 B)  magic "AETHWAL1" | version u32 (1) | reserved u32 (0)
//!                | topic id u64 | first seq u64
//! record         len u32 | crc u32 | seq u64 | timestamp_ns u64
//!                | payload (len bytes) | zeros to a multiple of 8
//! ```
//!
//! A message another broker published first (brought by the bridge) keeps
//! its origin: `len`'s top bit is set ([`REMOTE`]), and the payload's last
//! 16 bytes are the origin's broker id and seq (u64 each), as in the ring.
//! `crc` is CRC32C over len (with that bit), seq, timestamp and payload. Records are
//! numbered without gaps from the header's first seq. A file is append-only,
//! so what a crash can leave is a prefix of the last write: a torn tail.
//! Recovery keeps every record up to the first one that fails its checks
//! and cuts the rest, but only when nothing valid follows it; a bad record
//! with valid ones after it is damage, not a torn write, and is reported
//! (`Corrupt`, with the file and offset), never skipped or cut.
//!
//! Beside each segment, the daemon keeps an index, `<first seq>.idx`
//! (0600 too), for seeking by sequence number and by time:
//!
//! ```text
//! header (32 B)  magic "AETHIDX1" | version u32 (1) | reserved u32 (0)
//!                | topic id u64 | first seq u64        (the segment's)
//! entry (32 B)   seq u64 | max_timestamp_ns u64 | offset u64
//!                | reserved u32 (0) | crc u32
//! ```
//!
//! An entry names a record of the segment (its seq and byte offset): the
//! first record, then the first at least [`INDEX_EVERY`] bytes after the
//! last entry's. `max_timestamp_ns` is at least every timestamp of the
//! log up to and including that record (a running maximum across the
//! segments): timestamps are the publishers' clocks, nearly but not
//! strictly in order, and with the maximum a search for the first place a
//! record at or after a time may be is still a binary search. A record
//! without a timestamp (0: its publisher sent none) does not move the
//! maximum: a `time=` start finds it by the stamped records before it. `crc` is
//! CRC32C over the entry's first 28 bytes. The index is a hint written
//! without a sync (the log is the truth): a reader takes the entries from
//! the start while each passes its checks and numbers, offsets and
//! maxima go up, and ignores the rest (a torn tail), and every record it
//! reads from an offset found there is checked as any other.

use crate::ring::{Origin, ORIGIN_BYTES};
use crate::{Error, Result, Status};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"AETHWAL1";
pub const VERSION: u32 = 1;
/// Bytes of a segment's header.
pub const SEGMENT_HEADER: usize = 32;
/// Bytes of a record's header (before its payload).
pub const RECORD_HEADER: usize = 24;
/// The largest payload a record may hold (a topic's max_message is far below).
pub const MAX_PAYLOAD: usize = 1 << 30;
/// The bit of a record's `len` that marks a remote message (its payload
/// ends with its origin).
pub const REMOTE: u32 = 1 << 31;

/// One logged message, borrowed from the bytes it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRecord<'a> {
    pub seq: u64,
    pub timestamp_ns: u64,
    /// The payload as stored: the message, then its origin if it has one.
    pub payload: &'a [u8],
    /// Where the message was first published, if another broker.
    pub origin: Option<Origin>,
}

impl<'a> LogRecord<'a> {
    /// The message's bytes (the payload without its origin).
    pub fn data(&self) -> &'a [u8] {
        let n = self.payload.len() - if self.origin.is_some() { ORIGIN_BYTES } else { 0 };
        &self.payload[..n]
    }
}

/// Bytes a record with `len` payload bytes takes in the file.
pub fn record_size(len: usize) -> usize {
    (RECORD_HEADER + len).div_ceil(8) * 8
}

fn crc(len: u32, seq: u64, timestamp_ns: u64, payload: &[u8]) -> u32 {
    let mut head = [0u8; 20];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..12].copy_from_slice(&seq.to_le_bytes());
    head[12..20].copy_from_slice(&timestamp_ns.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Appends the encoded record to `out`.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, timestamp_ns: u64, payload: &[u8]) {
    encode_record_with(out, seq, timestamp_ns, payload.len(), None, |dst| {
        dst.copy_from_slice(payload)
    });
}

/// Appends a record of a `len`-byte message to `out`, the message written
/// in place by `fill` (the daemon copies it there straight from the ring),
/// followed by its `origin` if it has one.
pub fn encode_record_with(
    out: &mut Vec<u8>,
    seq: u64,
    timestamp_ns: u64,
    len: usize,
    origin: Option<Origin>,
    fill: impl FnOnce(&mut [u8]),
) {
    let stored = len + if origin.is_some() { ORIGIN_BYTES } else { 0 };
    let start = out.len();
    out.resize(start + record_size(stored), 0);
    let rec = &mut out[start..];
    fill(&mut rec[RECORD_HEADER..RECORD_HEADER + len]);
    let mut len_field = stored as u32;
    if let Some(o) = origin {
        rec[RECORD_HEADER + len..RECORD_HEADER + len + 8].copy_from_slice(&o.broker.to_le_bytes());
        rec[RECORD_HEADER + len + 8..RECORD_HEADER + stored].copy_from_slice(&o.seq.to_le_bytes());
        len_field |= REMOTE;
    }
    let len = stored;
    let crc = crc(len_field, seq, timestamp_ns, &rec[RECORD_HEADER..RECORD_HEADER + len]);
    rec[..4].copy_from_slice(&len_field.to_le_bytes());
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
    rec[8..16].copy_from_slice(&seq.to_le_bytes());
    rec[16..24].copy_from_slice(&timestamp_ns.to_le_bytes());
}

/// What is at an offset of a segment's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// A record that passes every check, and the offset after it.
    Record(LogRecord<'a>, usize),
    /// The end of the bytes, exactly.
    End,
    /// Something that is not the record expected there (why, for messages).
    Bad(String),
}

/// A segment's header for `topic_id`, records from `first_seq` on.
pub fn encode_header(topic_id: u64, first_seq: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&topic_id.to_le_bytes());
    h[24..32].copy_from_slice(&first_seq.to_le_bytes());
    h
}

/// A segment header's topic id and first seq; `Corrupt` (naming `what`)
/// if it is not one this library reads.
pub fn decode_header(bytes: &[u8], what: &str) -> Result<(u64, u64)> {
    let corrupt = |why: String| Error::new(Status::Corrupt, format!("{what}: {why}"));
    let h = bytes
        .get(..SEGMENT_HEADER)
        .ok_or_else(|| corrupt("shorter than a log segment's header".into()))?;
    if &h[..8] != MAGIC {
        return Err(corrupt("not an Aether log segment (bad magic)".into()));
    }
    if u32_at(h, 8) != VERSION {
        return Err(corrupt(format!(
            "log format version {}, this library reads {VERSION}",
            u32_at(h, 8)
        )));
    }
    if u64_at(h, 24) == u64::MAX {
        return Err(corrupt(format!("first seq {}: no record can follow it", u64::MAX)));
    }
    Ok((u64_at(h, 16), u64_at(h, 24)))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes the record at `off` of `bytes`, which must be numbered `seq` or
/// later (the ring's numbering has holes where a loan was given up or a
/// dead publisher's claim skipped; the log keeps the ring's numbers), and
/// below `u64::MAX` (so that the number after it exists).
/// Any input gives an answer, never a panic.
pub fn decode_at(bytes: &[u8], off: usize, seq: u64) -> Found<'_> {
    if off == bytes.len() {
        return Found::End;
    }
    let Some(head) = bytes.get(off..off.saturating_add(RECORD_HEADER)) else {
        return Found::Bad(format!("{} bytes, less than a record header", bytes.len() - off));
    };
    let len_field = u32_at(head, 0);
    let len = (len_field & !REMOTE) as usize;
    let remote = len_field & REMOTE != 0;
    if remote && len < ORIGIN_BYTES {
        return Found::Bad(format!("a remote record of {len} bytes, too short for its origin"));
    }
    if len > MAX_PAYLOAD {
        return Found::Bad(format!("length {len} over the limit of {MAX_PAYLOAD}"));
    }
    let size = record_size(len);
    let Some(rec) = bytes.get(off..off.saturating_add(size)) else {
        return Found::Bad(format!("a record of {size} bytes, {} present", bytes.len() - off));
    };
    let (stored, got_seq, ts) = (u32_at(rec, 4), u64_at(rec, 8), u64_at(rec, 16));
    let payload = &rec[RECORD_HEADER..RECORD_HEADER + len];
    if crc(len_field, got_seq, ts, payload) != stored {
        return Found::Bad("CRC mismatch".into());
    }
    if got_seq < seq {
        return Found::Bad(format!("sequence number {got_seq} where {seq} or later was due"));
    }
    // Every reader counts on the number after a record's (the next due).
    if got_seq == u64::MAX {
        return Found::Bad(format!("sequence number {got_seq}: no number can follow it"));
    }
    Found::Record(
        LogRecord {
            seq: got_seq,
            timestamp_ns: ts,
            payload,
            origin: remote.then(|| Origin {
                broker: u64_at(payload, len - ORIGIN_BYTES),
                seq: u64_at(payload, len - 8),
            }),
        },
        off + size,
    )
}

/// A segment's bytes, checked: its header (for `topic_id`), then its
/// records from the start while they pass. Returns the number the next
/// record must have at least (after the last, or the header's first seq),
/// those records, and the offset where they end (the file's length if all pass).
pub fn scan<'a>(bytes: &'a [u8], path: &Path, topic_id: u64) -> Result<(u64, Vec<LogRecord<'a>>, usize)> {
    let what = path.display().to_string();
    let (id, first) = decode_header(bytes, &what)?;
    if id != topic_id {
        return Err(Error::new(
            Status::Corrupt,
            format!("{what}: belongs to topic id {id:#x}, not {topic_id:#x}"),
        ));
    }
    let (mut records, mut off, mut due) = (Vec::new(), SEGMENT_HEADER, first);
    while let Found::Record(r, next) = decode_at(bytes, off, due) {
        due = r.seq + 1;
        records.push(r);
        off = next;
    }
    Ok((due, records, off))
}

/// Where a valid record numbered `min_seq` or later starts in
/// `bytes[from..]` (8-byte steps), if anywhere: tells damage from a torn tail.
pub fn valid_record_after(bytes: &[u8], from: usize, min_seq: u64) -> Option<usize> {
    (from..bytes.len()).step_by(8).find(|&off| {
        bytes.len() - off >= RECORD_HEADER && {
            let seq = u64_at(bytes, off + 8);
            seq >= min_seq && matches!(decode_at(bytes, off, seq), Found::Record(..))
        }
    })
}

/// Every record of the segment at `path`, checked: `Corrupt`, naming the
/// file and the offset, at the first one that fails. `sealed`: the segment
/// is complete (not the one being written), so a bad tail is damage too;
/// else a bad tail with nothing valid after it is a write in progress and
/// ends the list.
pub fn read_segment(path: &Path, topic_id: u64, sealed: bool) -> Result<Vec<(u64, u64, Vec<u8>)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(&format!("read {}", path.display()), e))?;
    let (_, records) = check_segment(&bytes, path, topic_id, sealed)?;
    Ok(records
        .iter()
        .map(|r| (r.seq, r.timestamp_ns, r.data().to_vec()))
        .collect())
}

/// [`read_segment`] of a segment's bytes (read from `path`), its records
/// borrowed: also the number the next record must have at least. Records
/// lie end to end from [`SEGMENT_HEADER`] (see [`record_offsets`]).
pub fn check_segment<'a>(
    bytes: &'a [u8],
    path: &Path,
    topic_id: u64,
    sealed: bool,
) -> Result<(u64, Vec<LogRecord<'a>>)> {
    let (seq, records, off) = scan(bytes, path, topic_id)?;
    if off < bytes.len() && (sealed || valid_record_after(bytes, off + 8, seq.saturating_add(1)).is_some()) {
        let Found::Bad(why) = decode_at(bytes, off, seq) else {
            unreachable!("scan stopped at a record that does not pass")
        };
        return Err(Error::new(
            Status::Corrupt,
            format!("{}: record {seq} at offset {off}: {why}", path.display()),
        ));
    }
    Ok((seq, records))
}

/// (seq, timestamp, offset) of each of a segment's records as [`scan`]
/// returns them (end to end from the header).
pub fn record_offsets<'a>(records: &'a [LogRecord<'_>]) -> impl Iterator<Item = (u64, u64, u64)> + 'a {
    records.iter().scan(SEGMENT_HEADER as u64, |off, r| {
        let at = *off;
        *off += record_size(r.payload.len()) as u64;
        Some((r.seq, r.timestamp_ns, at))
    })
}

pub const INDEX_MAGIC: &[u8; 8] = b"AETHIDX1";
pub const INDEX_VERSION: u32 = 1;
/// Bytes of an index's header.
pub const INDEX_HEADER: usize = 32;
/// Bytes of an index entry.
pub const INDEX_ENTRY: usize = 32;
/// Bytes of log at least between two index entries of a segment.
pub const INDEX_EVERY: u64 = 64 << 10;

/// One entry of a segment's index: a record, and the largest timestamp
/// of the log up to and including it (at least).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub seq: u64,
    pub max_timestamp_ns: u64,
    /// Where the record starts in its segment.
    pub offset: u64,
}

/// The header of the index of the segment of log `topic_id` from `first_seq`.
pub fn encode_index_header(topic_id: u64, first_seq: u64) -> [u8; INDEX_HEADER] {
    let mut h = [0u8; INDEX_HEADER];
    h[..8].copy_from_slice(INDEX_MAGIC);
    h[8..12].copy_from_slice(&INDEX_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&topic_id.to_le_bytes());
    h[24..32].copy_from_slice(&first_seq.to_le_bytes());
    h
}

/// An index entry's bytes.
pub fn encode_index_entry(e: &IndexEntry) -> [u8; INDEX_ENTRY] {
    let mut b = [0u8; INDEX_ENTRY];
    b[..8].copy_from_slice(&e.seq.to_le_bytes());
    b[8..16].copy_from_slice(&e.max_timestamp_ns.to_le_bytes());
    b[16..24].copy_from_slice(&e.offset.to_le_bytes());
    let crc = crc32c::crc32c(&b[..28]);
    b[28..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The entries of an index's bytes, for the segment of log `topic_id`
/// from `first_seq`: those from the start while each passes (its CRC; a
/// seq at or after `first_seq` and below `u64::MAX`, an offset past the
/// segment's header on an 8-byte boundary; seq and offset above the last
/// entry's, the maximum timestamp not below it); the rest is ignored (a
/// torn tail, damage). `Corrupt` if the header is not this segment's
/// index's. Any input gives an answer, never a panic.
pub fn decode_index(bytes: &[u8], topic_id: u64, first_seq: u64) -> Result<Vec<IndexEntry>> {
    let h = bytes.get(..INDEX_HEADER);
    if h != Some(&encode_index_header(topic_id, first_seq)[..]) {
        return Err(Error::new(
            Status::Corrupt,
            format!("not the index of segment {first_seq} of log {topic_id:#x} (header)"),
        ));
    }
    let mut out: Vec<IndexEntry> = Vec::new();
    for b in bytes[INDEX_HEADER..].chunks_exact(INDEX_ENTRY) {
        let e = IndexEntry {
            seq: u64_at(b, 0),
            max_timestamp_ns: u64_at(b, 8),
            offset: u64_at(b, 16),
        };
        let fits = crc32c::crc32c(&b[..28]) == u32_at(b, 28)
            && u32_at(b, 24) == 0
            && e.seq >= first_seq
            && e.seq < u64::MAX
            && e.offset >= SEGMENT_HEADER as u64
            && e.offset.is_multiple_of(8)
            && out
                .last()
                .is_none_or(|p| e.seq > p.seq && e.offset > p.offset && e.max_timestamp_ns >= p.max_timestamp_ns);
        if !fits {
            break;
        }
        out.push(e);
    }
    Ok(out)
}

/// Which records of a log get an index entry, and the running maximum of
/// their timestamps: the writer's rule, also what recovery checks an
/// index against and rebuilds it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Indexer {
    max_timestamp_ns: u64,
    /// Offset of the segment's last entry (none yet: the next record gets one).
    last: Option<u64>,
}

impl Indexer {
    /// For a new segment, after records whose timestamps are at most
    /// `max_before` (those of the segments before it).
    pub fn new(max_before: u64) -> Indexer {
        Indexer {
            max_timestamp_ns: max_before,
            last: None,
        }
    }

    /// The record `seq` stamped `timestamp_ns` at `offset` of the segment,
    /// after those given before: its entry, if it gets one.
    pub fn record(&mut self, seq: u64, timestamp_ns: u64, offset: u64) -> Option<IndexEntry> {
        self.max_timestamp_ns = self.max_timestamp_ns.max(timestamp_ns);
        if self.last.is_some_and(|l| offset < l.saturating_add(INDEX_EVERY)) {
            return None;
        }
        self.last = Some(offset);
        Some(IndexEntry {
            seq,
            max_timestamp_ns: self.max_timestamp_ns,
            offset,
        })
    }

    /// At least every timestamp given so far.
    pub fn max_timestamp_ns(&self) -> u64 {
        self.max_timestamp_ns
    }

    /// Counts `timestamp_ns` in the maximum (an entry kept from an older
    /// index may say more than the records now present: later entries
    /// must not say less).
    pub fn raise(&mut self, timestamp_ns: u64) {
        self.max_timestamp_ns = self.max_timestamp_ns.max(timestamp_ns);
    }
}

/// The entry of `entries` (a decoded index) to start reading at for the
/// first record numbered `seq` or later: the last at or before it.
pub fn seek_seq(entries: &[IndexEntry], seq: u64) -> Option<IndexEntry> {
    let i = entries.partition_point(|e| e.seq <= seq);
    i.checked_sub(1).map(|i| entries[i])
}

/// The entry of `entries` to start reading at for the records stamped
/// `timestamp_ns` or later: the last before which, and at which, every
/// record of the log is older.
pub fn seek_time(entries: &[IndexEntry], timestamp_ns: u64) -> Option<IndexEntry> {
    let i = entries.partition_point(|e| e.max_timestamp_ns < timestamp_ns);
    i.checked_sub(1).map(|i| entries[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (aether-fuzz `wal`): a record numbered u64::MAX with
    /// a valid checksum made `scan` overflow computing the next number due
    /// (a panic in debug builds, a wrap to 0 in release). Such a record,
    /// and a header whose first seq is u64::MAX, are refused.
    #[test]
    fn the_last_sequence_number_is_refused() {
        let mut v = encode_header(9, u64::MAX - 1).to_vec();
        encode_record(&mut v, u64::MAX - 1, 1, b"a");
        encode_record(&mut v, u64::MAX, 2, b"b");
        let path = Path::new("x.wal");
        let (due, records, off) = scan(&v, path, 9).unwrap();
        assert_eq!(
            (due, records.len(), off),
            (u64::MAX, 1, SEGMENT_HEADER + record_size(1))
        );
        assert!(matches!(decode_at(&v, off, due), Found::Bad(why) if why.contains("no number can follow")));
        assert_eq!(valid_record_after(&v, off, due), None);
        let e = decode_header(&encode_header(9, u64::MAX), "x").unwrap_err();
        assert_eq!(e.status, Status::Corrupt);
    }

    /// A remote message keeps its origin in the log (the bridge of the
    /// broker that logged it must not send it back when it reads history);
    /// the origin is covered by the checksum, and a remote record too
    /// short to hold one is damage.
    #[test]
    fn a_remote_record_keeps_its_origin() {
        let o = Origin { broker: 0xb0b, seq: 77 };
        let mut v = encode_header(9, 5).to_vec();
        encode_record(&mut v, 5, 1, b"here");
        encode_record_with(&mut v, 6, 2, 3, Some(o), |d| d.copy_from_slice(b"abc"));
        encode_record(&mut v, 7, 3, b"");
        let (due, records, _) = scan(&v, Path::new("x.wal"), 9).unwrap();
        assert_eq!(due, 8);
        let got: Vec<_> = records.iter().map(|r| (r.seq, r.data(), r.origin)).collect();
        assert_eq!(
            got,
            [(5, &b"here"[..], None), (6, &b"abc"[..], Some(o)), (7, &b""[..], None)]
        );
        // The origin's bytes are checked: one flipped is a bad record.
        let at = SEGMENT_HEADER + record_size(4) + RECORD_HEADER + 3;
        let mut bad = v.clone();
        bad[at] ^= 1;
        assert!(matches!(decode_at(&bad, SEGMENT_HEADER + record_size(4), 6), Found::Bad(why) if why.contains("CRC")));
        // A remote record of fewer bytes than an origin.
        let mut short = encode_header(9, 0).to_vec();
        encode_record(&mut short, 0, 1, b"0123456789");
        short[SEGMENT_HEADER + 3] |= 0x80;
        assert!(matches!(decode_at(&short, SEGMENT_HEADER, 0), Found::Bad(why) if why.contains("too short")));
    }

    fn index_bytes(topic_id: u64, first: u64, entries: &[IndexEntry]) -> Vec<u8> {
        let mut v = encode_index_header(topic_id, first).to_vec();
        for e in entries {
            v.extend_from_slice(&encode_index_entry(e));
        }
        v
    }

    fn entry(seq: u64, max_timestamp_ns: u64, offset: u64) -> IndexEntry {
        IndexEntry {
            seq,
            max_timestamp_ns,
            offset,
        }
    }

    /// An index's entries come back as written; a torn tail (any cut) and
    /// a damaged entry end the list there, the entries before it kept; a
    /// header of another segment or log is no index of this one.
    #[test]
    fn an_index_round_trips_and_a_torn_or_damaged_tail_is_ignored() {
        let entries: Vec<_> = (0..10)
            .map(|i| entry(100 + i * 50, 1000 + i * 7, 32 + i * 65_536))
            .collect();
        let v = index_bytes(9, 100, &entries);
        assert_eq!(v.len(), INDEX_HEADER + 10 * INDEX_ENTRY);
        assert_eq!(decode_index(&v, 9, 100).unwrap(), entries);
        for cut in 0..v.len() - INDEX_HEADER {
            let got = decode_index(&v[..v.len() - cut], 9, 100).unwrap();
            assert_eq!(
                got,
                entries[..(v.len() - cut - INDEX_HEADER) / INDEX_ENTRY],
                "cut {cut}"
            );
        }
        for byte in [
            INDEX_HEADER + 3 * INDEX_ENTRY,
            INDEX_HEADER + 3 * INDEX_ENTRY + 17,
            v.len() - 1,
        ] {
            let mut bad = v.clone();
            bad[byte] ^= 0x10;
            let kept = (byte - INDEX_HEADER) / INDEX_ENTRY;
            assert_eq!(decode_index(&bad, 9, 100).unwrap(), entries[..kept], "byte {byte}");
        }
        // Entries that pass their CRC but do not go up end it too.
        for wrong in [
            entry(90, 2000, 1 << 20),          // before the segment's first seq
            entry(600, 1000, 1 << 20),         // a maximum that went down
            entry(600, 2000, 32 + 9 * 65_536), // an offset not past the last
            entry(600, 2000, (1 << 20) + 4),   // not on a record's boundary
            entry(u64::MAX, 2000, 1 << 20),    // no number follows it
        ] {
            let mut more = entries.clone();
            more.push(wrong);
            assert_eq!(
                decode_index(&index_bytes(9, 100, &more), 9, 100).unwrap(),
                entries,
                "{wrong:?}"
            );
        }
        for (id, first) in [(8, 100), (9, 101)] {
            assert_eq!(decode_index(&v, id, first).unwrap_err().status, Status::Corrupt);
        }
        assert!(decode_index(&v[..INDEX_HEADER - 1], 9, 100).is_err());
        assert_eq!(decode_index(&v[..INDEX_HEADER], 9, 100).unwrap(), []);
    }

    /// Timestamps out of order (several publishers, a clock stepped back):
    /// an entry's running maximum still lets a binary search find a place
    /// before every record at or after any time, and the entries for a seq
    /// name the last record at or before it. Checked against every record.
    #[test]
    fn a_seek_by_time_or_seq_never_passes_a_record_it_should_deliver() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // (seq, timestamp, offset) of a segment's records: stamps mostly
        // rising, some going back by up to 2000, one clock step back by 10^6,
        // one record without a timestamp (found by the records before it).
        let mut records = Vec::new();
        let (mut ts, mut off) = (1_000_000u64, SEGMENT_HEADER as u64);
        for seq in 0..20_000u64 {
            ts += next() % 100;
            let stamp = match seq {
                12_000 => ts - 1_000_000,
                17_000 => 0,
                _ if next() % 10 == 0 => ts - next() % 2000,
                _ => ts,
            };
            records.push((seq * 2, stamp, off));
            off += (record_size((next() % 40) as usize * 8)) as u64;
        }
        let mut ix = Indexer::new(0);
        let entries: Vec<_> = records.iter().filter_map(|&(s, t, o)| ix.record(s, t, o)).collect();
        assert!(entries.len() > 10 && entries[0].offset == SEGMENT_HEADER as u64);
        assert!(entries.windows(2).all(|w| w[1].offset - w[0].offset >= INDEX_EVERY));
        assert_eq!(decode_index(&index_bytes(1, 0, &entries), 1, 0).unwrap(), entries);
        for _ in 0..2000 {
            let t = (records[next() as usize % records.len()].1 + next() % 3).saturating_sub(1);
            let at = seek_time(&entries, t).map_or(SEGMENT_HEADER as u64, |e| e.offset);
            // Nothing before the seek point is at or after t (an unstamped
            // record goes with those before it).
            assert!(records.iter().take_while(|r| r.2 < at).all(|r| r.1 < t), "t {t}");
            let n = next() % 40_002;
            let e = seek_seq(&entries, n).expect("the first record has an entry");
            assert!(e.seq <= n && entries.iter().all(|f| f.seq <= e.seq || f.seq > n));
        }
        // The record stamped before the step back is found from its own time.
        let stepped = records[12_000];
        let at = seek_time(&entries, stepped.1).map_or(SEGMENT_HEADER as u64, |e| e.offset);
        assert!(
            at <= stepped.2 && at < records[11_000].2,
            "settles before the stamps it undercuts"
        );
        // The record without a timestamp moves no maximum.
        let max_up_to = |off: u64| records.iter().take_while(|r| r.2 <= off).map(|r| r.1).max();
        assert!(entries.iter().all(|e| Some(e.max_timestamp_ns) == max_up_to(e.offset)));
        assert_eq!(seek_time(&entries, 0), None);
        assert_eq!(seek_seq(&entries, 0).map(|e| e.seq), Some(0));
    }
}
