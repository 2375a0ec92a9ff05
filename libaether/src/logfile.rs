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
    let (seq, records, off) = scan(&bytes, path, topic_id)?;
    if off < bytes.len() && (sealed || valid_record_after(&bytes, off + 8, seq.saturating_add(1)).is_some()) {
        let Found::Bad(why) = decode_at(&bytes, off, seq) else {
            unreachable!("scan stopped at a record that does not pass")
        };
        return Err(Error::new(
            Status::Corrupt,
            format!("{}: record {seq} at offset {off}: {why}", path.display()),
        ));
    }
    Ok(records
        .iter()
        .map(|r| (r.seq, r.timestamp_ns, r.data().to_vec()))
        .collect())
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
}
