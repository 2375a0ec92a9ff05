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

use aether::{Error, Result};

const MAGIC: &[u8; 3] = b"AEB";
const VERSION: u8 = 2;
/// The first version, without `numbering`.
const VERSION_1: u8 = 1;
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
                    "version {v} (this broker reads {VERSION_1} and {VERSION})"
                )))
            }
        };
        let n = b[4] as usize;
        if b.len() != 5 + n + 8 * numbers {
            return Err(bad(&format!("{} bytes for a name of {n}", b.len())));
        }
        let origin = std::str::from_utf8(&b[5..5 + n])
            .ok()
            .filter(|s| valid_name(s))
            .ok_or_else(|| bad("the origin is not a broker name"))?;
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
        let mut v3 = b.clone();
        v3[3] = 3;
        assert!(Envelope::decode(&v3).is_err());
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
}
