//! What travels on POSIX message queues (see docs/PROTOCOL.md, "Message queues"):
//!
//! - [`Notice`]: a small message the daemon posts on a client's control
//!   queue (topic deleted, draining, subscriber lagged, message too large);
//! - [`Frame`]: the header the daemon's dispatch thread puts in front of
//!   each message it forwards to a `delivery=mqueue` subscriber's queue, and
//!   the end-of-stream marker it sends last.
//!
//! Both are fixed-layout little-endian records. Decoding checks every length
//! against the bytes present: any input decodes to a value or to an error
//! (`Protocol` for notices, `Corrupt` for queued frames), never a panic.

use crate::error::{Error, Result, Status};
use crate::segment::MAX_TOPIC_LEN;

/// Bytes before the topic name in an encoded notice.
pub const NOTICE_HEADER: usize = 24;
/// Longest encoded notice.
pub const NOTICE_MAX: usize = NOTICE_HEADER + MAX_TOPIC_LEN;
/// Message size of control queues (room to grow past [`NOTICE_MAX`]).
pub const NOTICE_MSGSIZE: usize = 256;

const KIND_TOPIC_DELETED: u8 = 1;
const KIND_DRAINING: u8 = 2;
const KIND_LAGGED: u8 = 3;
const KIND_TOO_LARGE: u8 = 4;

/// A notice from the daemon to one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A topic this client had a publisher or subscriber on was deleted.
    TopicDeleted {
        /// Its name.
        topic: String,
    },
    /// The broker is shutting down: publishing is refused from now on;
    /// subscribers read what is left, then get `Shutdown`.
    Draining,
    /// A subscriber of this client on `topic` lost `lost` more messages
    /// (lapped on a lossy topic, or its message queue was full); `seq` is
    /// the sequence number it was at when the daemon looked.
    Lagged {
        /// The subscriber's topic.
        topic: String,
        /// Where the subscriber was.
        seq: u64,
        /// Messages lost since the last such notice.
        lost: u64,
    },
    /// A `delivery=mqueue` subscriber of this client on `topic` skipped
    /// message `seq` of `len` bytes: it does not fit the subscriber's queue.
    TooLarge {
        /// The subscriber's topic.
        topic: String,
        /// The skipped message's sequence number.
        seq: u64,
        /// Its length.
        len: u64,
    },
    /// The daemon dropped `count` notices for this client because its
    /// control queue was full (made by the client library from the count
    /// carried by the next notice that fitted; never on the wire by itself).
    Dropped {
        /// Notices dropped.
        count: u64,
    },
}

impl Notice {
    /// The topic the notice is about ("" for none).
    pub fn topic(&self) -> &str {
        match self {
            Notice::TopicDeleted { topic } | Notice::Lagged { topic, .. } | Notice::TooLarge { topic, .. } => topic,
            Notice::Draining | Notice::Dropped { .. } => "",
        }
    }
}

/// Encodes `n` for a control queue; `dropped` counts notices lost before it.
/// `Notice::Dropped` is not a wire notice: `None`.
///
/// ```text
/// 0  u8   kind (1 topic deleted, 2 draining, 3 lagged, 4 too large)
/// 1  u8   topic length n (0..=120)
/// 2  u16  reserved, 0
/// 4  u32  dropped: notices dropped (queue full) since the last one delivered
/// 8  u64  seq
/// 16 u64  value: lost (lagged), len (too large), else 0
/// 24 n    topic name
/// ```
pub fn encode_notice(n: &Notice, dropped: u32) -> Option<Vec<u8>> {
    let (kind, topic, seq, value) = match n {
        Notice::TopicDeleted { topic } => (KIND_TOPIC_DELETED, topic.as_str(), 0, 0),
        Notice::Draining => (KIND_DRAINING, "", 0, 0),
        Notice::Lagged { topic, seq, lost } => (KIND_LAGGED, topic.as_str(), *seq, *lost),
        Notice::TooLarge { topic, seq, len } => (KIND_TOO_LARGE, topic.as_str(), *seq, *len),
        Notice::Dropped { .. } => return None,
    };
    let topic = &topic.as_bytes()[..topic.len().min(MAX_TOPIC_LEN)];
    let mut v = Vec::with_capacity(NOTICE_HEADER + topic.len());
    v.push(kind);
    v.push(topic.len() as u8);
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&dropped.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&value.to_le_bytes());
    v.extend_from_slice(topic);
    Some(v)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes a notice; returns it with its `dropped` count.
pub fn decode_notice(b: &[u8]) -> Result<(Notice, u32)> {
    if b.len() < NOTICE_HEADER {
        return Err(Error::protocol(format!("notice of {} bytes is too short", b.len())));
    }
    let (kind, n) = (b[0], b[1] as usize);
    if n > MAX_TOPIC_LEN || b.len() != NOTICE_HEADER + n {
        return Err(Error::protocol("notice length does not match its topic length"));
    }
    let dropped = u32_at(b, 4);
    let (seq, value) = (u64_at(b, 8), u64_at(b, 16));
    let topic = std::str::from_utf8(&b[NOTICE_HEADER..])
        .map_err(|_| Error::protocol("notice topic is not UTF-8"))?
        .to_string();
    let needs_topic = kind != KIND_DRAINING;
    if needs_topic == topic.is_empty() {
        return Err(Error::protocol(format!("notice kind {kind} with topic {topic:?}")));
    }
    let notice = match kind {
        KIND_TOPIC_DELETED => Notice::TopicDeleted { topic },
        KIND_DRAINING => Notice::Draining,
        KIND_LAGGED => Notice::Lagged {
            topic,
            seq,
            lost: value,
        },
        KIND_TOO_LARGE => Notice::TooLarge { topic, seq, len: value },
        _ => return Err(Error::protocol(format!("unknown notice kind {kind}"))),
    };
    Ok((notice, dropped))
}

/// Bytes before the payload of a message on an mqueue subscriber's queue.
pub const FRAME_HEADER: usize = 24;

const FRAME_MESSAGE: u32 = 0;
const FRAME_END: u32 = 1;

/// One message on an mqueue subscriber's queue, decoded.
///
/// ```text
/// 0  u32  kind (0 message, 1 end of stream)
/// 4  i32  status: 0 for a message; for the end, why it ended (an aether_status)
/// 8  u64  seq
/// 16 u64  timestamp_ns
/// 24 ...  payload (messages only)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Message {
        seq: u64,
        timestamp_ns: u64,
        data: &'a [u8],
    },
    /// Nothing more will come: the topic was deleted (`NotFound`) or the
    /// broker shut down (`Shutdown`), or another error ended the stream.
    End(Status),
}

/// Writes the header of a message frame into `buf[..FRAME_HEADER]`.
pub fn put_message_header(buf: &mut [u8], seq: u64, timestamp_ns: u64) {
    buf[0..4].copy_from_slice(&FRAME_MESSAGE.to_le_bytes());
    buf[4..8].copy_from_slice(&0i32.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    buf[16..24].copy_from_slice(&timestamp_ns.to_le_bytes());
}

/// An end-of-stream frame carrying `status`.
pub fn end_frame(status: Status) -> [u8; FRAME_HEADER] {
    let mut b = [0u8; FRAME_HEADER];
    b[0..4].copy_from_slice(&FRAME_END.to_le_bytes());
    b[4..8].copy_from_slice(&(status as i32).to_le_bytes());
    b
}

pub fn decode_frame(b: &[u8]) -> Result<Frame<'_>> {
    if b.len() < FRAME_HEADER {
        return Err(Error::corrupt(format!(
            "queued message of {} bytes has no header",
            b.len()
        )));
    }
    let status = i32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
    match u32_at(b, 0) {
        FRAME_MESSAGE if status == 0 => Ok(Frame::Message {
            seq: u64_at(b, 8),
            timestamp_ns: u64_at(b, 16),
            data: &b[FRAME_HEADER..],
        }),
        FRAME_END if b.len() == FRAME_HEADER => match Status::from_code(status) {
            Some(s) if s != Status::Ok => Ok(Frame::End(s)),
            _ => Err(Error::corrupt(format!("end of stream with status {status}"))),
        },
        kind => Err(Error::corrupt(format!("queued message of unknown kind {kind}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Notice> {
        vec![
            Notice::TopicDeleted { topic: "t".into() },
            Notice::Draining,
            Notice::Lagged {
                topic: "x".repeat(MAX_TOPIC_LEN),
                seq: u64::MAX,
                lost: 7,
            },
            Notice::TooLarge {
                topic: "big.one".into(),
                seq: 3,
                len: 10_000,
            },
        ]
    }

    #[test]
    fn notices_round_trip() {
        for (i, n) in all().into_iter().enumerate() {
            let b = encode_notice(&n, i as u32).unwrap();
            assert!(b.len() <= NOTICE_MAX && NOTICE_MAX <= NOTICE_MSGSIZE);
            assert_eq!(decode_notice(&b).unwrap(), (n, i as u32));
        }
        assert_eq!(encode_notice(&Notice::Dropped { count: 1 }, 0), None);
    }

    #[test]
    fn frames_round_trip() {
        let mut b = vec![0u8; FRAME_HEADER + 3];
        put_message_header(&mut b, 9, 11);
        b[FRAME_HEADER..].copy_from_slice(b"abc");
        assert_eq!(
            decode_frame(&b).unwrap(),
            Frame::Message {
                seq: 9,
                timestamp_ns: 11,
                data: b"abc"
            }
        );
        assert_eq!(
            decode_frame(&end_frame(Status::NotFound)).unwrap(),
            Frame::End(Status::NotFound)
        );
        assert!(decode_frame(&end_frame(Status::Ok)).is_err());
        assert!(decode_frame(&b[..FRAME_HEADER - 1]).is_err());
    }

    /// Every prefix and single-byte corruption of every valid record, and
    /// random bytes, decode to a value or an error: never a panic.
    #[test]
    fn truncated_mutated_and_random_input_never_panics() {
        let notices: Vec<Vec<u8>> = all().iter().map(|n| encode_notice(n, 1).unwrap()).collect();
        for f in &notices {
            for n in 0..f.len() {
                assert!(decode_notice(&f[..n]).is_err(), "prefix {n} of {f:?} accepted");
            }
        }
        let mut inputs = notices;
        inputs.push(end_frame(Status::Shutdown).to_vec());
        for f in &inputs {
            for n in 0..f.len() {
                let _ = decode_frame(&f[..n]);
            }
            for i in 0..f.len() {
                for b in [0u8, 1, 2, 4, 5, 0x7f, 0x80, 0xff] {
                    let mut g = f.clone();
                    g[i] = b;
                    let _ = decode_notice(&g);
                    let _ = decode_frame(&g);
                }
            }
        }
        let mut x = 0x2545f4914f6cdd1du64;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 160) as usize;
            let mut f: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            if len >= NOTICE_HEADER && x.is_multiple_of(3) {
                f[0] = (x % 6) as u8;
                f[1] = (len - NOTICE_HEADER) as u8;
            }
            let _ = decode_notice(&f);
            let _ = decode_frame(&f);
        }
    }
}
