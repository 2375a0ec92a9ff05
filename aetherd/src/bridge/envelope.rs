//! What travels beside each bridged message (as its Zenoh attachment): the
//! broker it was published on, its sequence number and timestamp there, and
//! the link sequence number that lets a receiver count exactly what the
//! network dropped. Bytes from the network are untrusted: [`Envelope::decode`]
//! checks everything and never panics.
//!
//! Layout (little-endian): `b"AEB"`, version (2), name length N (1..=64),
//! the origin's name (N bytes, a broker name: letters, digits, `.`, `_`,
//! `-`), origin seq (u64), timestamp in ns (u64), link seq (u64), numbering
//! (u64). Version 1 (before the numbering) is still read, as numbering 0.
//!
//! A [`Batch`] (version 3) carries several messages of one topic in one
//! sample, their bytes one after the other as its payload: `b"AEB"`, 3, N,
//! the name, the first message's link seq (u64; the others follow it by
//! one each), numbering (u64), count (u32, 1..=[`MAX_BATCH`]), then per
//! message its seq (u64, each above the one before), timestamp (u64) and
//! length (u32). A sender batches only what is already waiting in the ring
//! when it sends (one message goes alone, as version 2): it costs no
//! latency, and under load one Zenoh sample carries many messages.

use aether::{Error, Result};

const MAGIC: &[u8; 3] = b"AEB";
const VERSION: u8 = 2;
/// The first version, without `numbering`.
const VERSION_1: u8 = 1;
/// A batch of messages.
const VERSION_BATCH: u8 = 3;
/// The most messages one batch carries.
pub const MAX_BATCH: usize = 4096;
/// The bytes of one message's entry in a batch: seq, timestamp, length.
const ENTRY: usize = 20;
/// The longest broker name.
pub const MAX_NAME: usize = 64;

/// The origin is borrowed (from the bytes decoded, or the sender's name):
/// the bridge handles one per message, with nothing to allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The broker the message was first published on.
    pub origin: &'a str,
    /// Its sequence number in the origin's ring.
    pub seq: u64,
    /// Its timestamp there (CLOCK_REALTIME, ns).
    pub timestamp_ns: u64,
    /// Counts the origin's bridged messages of this topic, from 0 with each
    /// bridge start: a receiver that sees it jump knows how many the link lost.
    pub link_seq: u64,
    /// Names the origin topic's numbering of `seq`: a durable topic's log
    /// id (its numbering goes on across restarts), else an id of the topic's
    /// ring, new each time the topic is made (its numbering starts again).
    /// A receiver that sees the link numbering start again but the same
    /// numbering here drops what was sent again; 0: unknown (version 1).
    pub numbering: u64,
}

/// The origin name of an encoded envelope or batch (`n` bytes from byte
/// 5), if it is one.
fn origin_at(b: &[u8], n: usize) -> Option<&str> {
    std::str::from_utf8(b.get(5..5 + n)?).ok().filter(|s| valid_name(s))
}

/// Whether `name` may name a broker (the origin tag).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && aether::protocol::safe_name(name)
}

impl<'a> Envelope<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    /// How many bytes [`encode_into`](Self::encode_into) appends.
    pub fn encoded_len(&self) -> usize {
        5 + self.origin.len() + 32
    }

    /// Appends the encoded envelope to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Three appends rather than one per field: this runs once per message sent.
        out.reserve(self.encoded_len());
        out.extend_from_slice(&[MAGIC[0], MAGIC[1], MAGIC[2], VERSION, self.origin.len() as u8]);
        out.extend_from_slice(self.origin.as_bytes());
        let mut numbers = [0u8; 32];
        for (i, n) in [self.seq, self.timestamp_ns, self.link_seq, self.numbering]
            .into_iter()
            .enumerate()
        {
            numbers[8 * i..][..8].copy_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&numbers);
    }

    pub fn decode(b: &'a [u8]) -> Result<Envelope<'a>> {
        let bad = |why: &str| Error::protocol(format!("bridge envelope: {why}"));
        if b.len() < 5 || &b[..3] != MAGIC {
            return Err(bad("not an Aether envelope"));
        }
        let numbers = match b[3] {
            VERSION => 4,
            VERSION_1 => 3,
            v => {
                return Err(bad(&format!(
                    "version {v} (this broker reads {VERSION_1}, {VERSION} and batches, {VERSION_BATCH})"
                )))
            }
        };
        let n = b[4] as usize;
        if b.len() != 5 + n + 8 * numbers {
            return Err(bad(&format!("{} bytes for a name of {n}", b.len())));
        }
        let origin = origin_at(b, n).ok_or_else(|| bad("the origin is not a broker name"))?;
        let num = |i: usize| u64::from_le_bytes(b[5 + n + 8 * i..][..8].try_into().expect("8 bytes"));
        Ok(Envelope {
            origin,
            seq: num(0),
            timestamp_ns: num(1),
            link_seq: num(2),
            numbering: if numbers == 4 { num(3) } else { 0 },
        })
    }
}

/// One message of a [`Batch`]: its seq and timestamp at the origin, and
/// its length in the batch's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub len: u32,
}

/// Several messages of one topic from one origin in one sample (version 3).
/// Decoded, it borrows its entries from the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch<'a> {
    pub origin: &'a str,
    /// The first message's link seq; each next one's is one more.
    pub link_seq: u64,
    pub numbering: u64,
    /// `count` entries of [`ENTRY`] bytes, checked by `decode`.
    entries: &'a [u8],
}

impl<'a> Batch<'a> {
    /// How many bytes [`encode_into`](Self::encode_into) appends for `count` messages.
    pub fn encoded_len(origin: &str, count: usize) -> usize {
        5 + origin.len() + 20 + ENTRY * count
    }

    /// Appends the encoded batch of `entries` (1..=[`MAX_BATCH`] of them,
    /// seqs rising: the caller's ring order) to `out`.
    pub fn encode_into(origin: &str, link_seq: u64, numbering: u64, entries: &[Entry], out: &mut Vec<u8>) {
        debug_assert!((1..=MAX_BATCH).contains(&entries.len()));
        out.reserve(Self::encoded_len(origin, entries.len()));
        out.extend_from_slice(&[MAGIC[0], MAGIC[1], MAGIC[2], VERSION_BATCH, origin.len() as u8]);
        out.extend_from_slice(origin.as_bytes());
        out.extend_from_slice(&link_seq.to_le_bytes());
        out.extend_from_slice(&numbering.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            let mut b = [0u8; ENTRY];
            b[..8].copy_from_slice(&e.seq.to_le_bytes());
            b[8..16].copy_from_slice(&e.timestamp_ns.to_le_bytes());
            b[16..].copy_from_slice(&e.len.to_le_bytes());
            out.extend_from_slice(&b);
        }
    }

    pub fn decode(b: &'a [u8]) -> Result<Batch<'a>> {
        let bad = |why: &str| Error::protocol(format!("bridge batch: {why}"));
        if b.len() < 5 || &b[..3] != MAGIC || b[3] != VERSION_BATCH {
            return Err(bad("not an Aether batch"));
        }
        let n = b[4] as usize;
        let fixed = 5 + n + 20;
        if b.len() < fixed {
            return Err(bad(&format!("{} bytes for a name of {n}", b.len())));
        }
        let origin = origin_at(b, n).ok_or_else(|| bad("the origin is not a broker name"))?;
        let u64_at = |at: usize| u64::from_le_bytes(b[at..][..8].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(b[5 + n + 16..][..4].try_into().expect("4 bytes")) as usize;
        if !(1..=MAX_BATCH).contains(&count) {
            return Err(bad(&format!("{count} messages (1 to {MAX_BATCH})")));
        }
        if b.len() != fixed + ENTRY * count {
            return Err(bad(&format!("{} bytes for {count} messages", b.len())));
        }
        let batch = Batch {
            origin,
            link_seq: u64_at(5 + n),
            numbering: u64_at(5 + n + 8),
            entries: &b[fixed..],
        };
        // Rising seqs, as a ring numbers them; and link seqs that do not wrap.
        let mut last = None;
        for e in batch.entries() {
            if last.is_some_and(|l| e.seq <= l) {
                return Err(bad("seqs that do not rise"));
            }
            last = Some(e.seq);
        }
        if batch.link_seq.checked_add(count as u64).is_none() {
            return Err(bad("link seqs past 2^64"));
        }
        Ok(batch)
    }

    /// How many messages it carries.
    pub fn len(&self) -> usize {
        self.entries.len() / ENTRY
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = Entry> + 'a {
        self.entries.chunks_exact(ENTRY).map(|c| Entry {
            seq: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
            timestamp_ns: u64::from_le_bytes(c[8..16].try_into().expect("8 bytes")),
            len: u32::from_le_bytes(c[16..].try_into().expect("4 bytes")),
        })
    }

    /// The payload bytes its messages take together.
    pub fn payload_len(&self) -> u64 {
        self.entries().map(|e| e.len as u64).sum()
    }

    /// Whether a payload of `len` bytes is this batch's: one that is not is
    /// refused whole (its messages' bounds are not to be trusted).
    pub fn check_payload(&self, len: usize) -> Result<()> {
        if self.payload_len() == len as u64 {
            return Ok(());
        }
        Err(Error::protocol(format!(
            "bridge batch: {} messages of {} bytes in a payload of {len}",
            self.len(),
            self.payload_len()
        )))
    }

    /// Each message's envelope and where its bytes lie in the payload.
    pub fn messages(&self) -> impl Iterator<Item = (Envelope<'a>, std::ops::Range<usize>)> + 'a {
        let (origin, link_seq, numbering) = (self.origin, self.link_seq, self.numbering);
        self.entries().enumerate().scan(0usize, move |at, (i, e)| {
            let range = *at..*at + e.len as usize;
            *at = range.end;
            let env = Envelope {
                origin,
                seq: e.seq,
                timestamp_ns: e.timestamp_ns,
                link_seq: link_seq + i as u64,
                numbering,
            };
            Some((env, range))
        })
    }
}

/// What a sample's attachment says it carries: one message or a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent<'a> {
    One(Envelope<'a>),
    Batch(Batch<'a>),
}

impl<'a> Sent<'a> {
    pub fn decode(b: &'a [u8]) -> Result<Sent<'a>> {
        if b.len() > 3 && b[3] == VERSION_BATCH {
            Batch::decode(b).map(Sent::Batch)
        } else {
            Envelope::decode(b).map(Sent::One)
        }
    }

    pub fn origin(&self) -> &'a str {
        match self {
            Sent::One(e) => e.origin,
            Sent::Batch(b) => b.origin,
        }
    }

    /// How many messages it carries.
    pub fn count(&self) -> usize {
        match self {
            Sent::One(_) => 1,
            Sent::Batch(b) => b.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_junk() {
        let e = Envelope {
            origin: "host-a",
            seq: 7,
            timestamp_ns: 1 << 60,
            link_seq: 3,
            numbering: 9,
        };
        let b = e.encode();
        assert_eq!(Envelope::decode(&b).unwrap(), e);
        assert_eq!(b.len(), e.encoded_len());
        // It appends after what is there.
        let mut after = vec![1, 2, 3];
        e.encode_into(&mut after);
        assert_eq!((&after[..3], &after[3..]), (&[1u8, 2, 3][..], &b[..]));
        // Version 1, without the numbering: read as numbering 0.
        let mut v1 = b[..b.len() - 8].to_vec();
        v1[3] = 1;
        assert_eq!(Envelope::decode(&v1).unwrap(), Envelope { numbering: 0, ..e });
        for v in [0, 3, 4, 0xff] {
            let mut other = b.clone();
            other[3] = v;
            assert!(Envelope::decode(&other).is_err(), "version {v}");
        }
        // Every truncation and every single-byte change of the header or
        // name is refused or decodes to something valid; none panics.
        for n in 0..b.len() {
            assert!(Envelope::decode(&b[..n]).is_err());
        }
        for i in 0..b.len() {
            for x in [0u8, 1, 0x2f, 0x80, 0xff] {
                let mut c = b.clone();
                c[i] = x;
                if let Ok(d) = Envelope::decode(&c) {
                    assert!(valid_name(d.origin));
                }
            }
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Envelope::decode(&long).is_err());
        // Random bytes: never a panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000usize {
            let junk: Vec<u8> = (0..len % 120)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = Envelope::decode(&junk);
        }
    }

    fn batch_bytes(entries: &[Entry]) -> Vec<u8> {
        let mut b = Vec::new();
        Batch::encode_into("host-a", 40, 9, entries, &mut b);
        b
    }

    #[test]
    fn batches_round_trip_and_junk() {
        let entries = [
            Entry {
                seq: 5,
                timestamp_ns: 100,
                len: 3,
            },
            Entry {
                seq: 6,
                timestamp_ns: 101,
                len: 0,
            },
            Entry {
                seq: 9,
                timestamp_ns: 99,
                len: 70_000,
            },
        ];
        let b = batch_bytes(&entries);
        assert_eq!(b.len(), Batch::encoded_len("host-a", 3));
        let Ok(Sent::Batch(d)) = Sent::decode(&b) else {
            panic!("not a batch")
        };
        assert_eq!((d.origin, d.link_seq, d.numbering, d.len()), ("host-a", 40, 9, 3));
        assert_eq!(d.entries().collect::<Vec<_>>(), entries);
        assert_eq!(d.payload_len(), 70_003);
        assert!(d.check_payload(70_003).is_ok());
        for short_or_long in [0, 70_002, 70_004] {
            assert!(d.check_payload(short_or_long).is_err());
        }
        let m: Vec<_> = d.messages().collect();
        assert_eq!(m[0].1, 0..3);
        assert_eq!(m[1].1, 3..3);
        assert_eq!(m[2].1, 3..70_003);
        assert_eq!(
            m[2].0,
            Envelope {
                origin: "host-a",
                seq: 9,
                timestamp_ns: 99,
                link_seq: 42,
                numbering: 9
            }
        );
        // A single envelope still decodes as one.
        let one = Envelope {
            origin: "b",
            seq: 1,
            timestamp_ns: 2,
            link_seq: 3,
            numbering: 4,
        };
        assert_eq!(Sent::decode(&one.encode()).unwrap(), Sent::One(one));
        // Seqs that do not rise, no messages, too many, link seqs that wrap.
        let mut same = entries;
        same[1].seq = 5;
        assert!(Batch::decode(&batch_bytes(&same)).is_err());
        let mut none = batch_bytes(&entries[..1]);
        none.truncate(none.len() - ENTRY);
        let count_at = 5 + "host-a".len() + 16;
        none[count_at..count_at + 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(Batch::decode(&none).is_err());
        let many: Vec<Entry> = (0..MAX_BATCH as u64 + 1)
            .map(|seq| Entry {
                seq,
                timestamp_ns: 0,
                len: 1,
            })
            .collect();
        let mut too_many = batch_bytes(&many[..MAX_BATCH]);
        assert!(Batch::decode(&too_many).is_ok());
        too_many[count_at..count_at + 4].copy_from_slice(&(MAX_BATCH as u32 + 1).to_le_bytes());
        too_many.extend_from_slice(&[0xff; ENTRY]);
        assert!(Batch::decode(&too_many).is_err());
        let mut wrap = Vec::new();
        Batch::encode_into("host-a", u64::MAX - 1, 0, &entries, &mut wrap);
        assert!(Batch::decode(&wrap).is_err());
        // Every truncation and extension is refused; every single-byte
        // change is refused or decodes to a valid batch; none panics.
        for n in 0..b.len() {
            assert!(Sent::decode(&b[..n]).is_err(), "{n} bytes");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Sent::decode(&long).is_err());
        for i in 0..b.len() {
            for x in [0u8, 1, 0x2f, 0x80, 0xff] {
                let mut c = b.clone();
                c[i] = x;
                if let Ok(Sent::Batch(d)) = Sent::decode(&c) {
                    assert!(valid_name(d.origin));
                    assert!(d.entries().zip(d.entries().skip(1)).all(|(a, b)| a.seq < b.seq));
                }
            }
        }
    }
}
