//! Aether's fuzz targets: one function per parser of bytes that come from
//! another process, the disk or the network (issue 22). Each takes any
//! bytes, runs the parser on them, and panics if an invariant breaks: a
//! panic inside the parser, a decode that does not survive re-encoding, a
//! receive that outlives its deadline. The same functions run under
//! libFuzzer (`fuzz/`, `cargo +nightly fuzz run <target>`) and on stable
//! under [`runner`] (`cargo test -p aether-fuzz`, `scripts/fuzz.sh`), over
//! the committed corpus (`fuzz/corpus/<target>/`), the regressions
//! (`fuzz/regressions/<target>/`) and random mutations of them.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod runner;
pub mod seeds;
mod segment;
mod wal;

use aether::protocol::{self, Op, Reply, MAX_FRAME};
use aether::Status;
use aetherd::admin;
use aetherd::bridge::envelope::{self, Envelope};
use aetherd::config::{self, BridgeTopic};
use std::path::Path;

pub use segment::segment;
pub use wal::wal;

/// A target: its name (the directory of its corpus) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("protocol_request", protocol_request),
    ("protocol_reply", protocol_reply),
    ("admin_request", admin_request),
    ("config", config),
    ("segment", segment),
    ("wal", wal),
    ("envelope", envelope),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Every op, in wire order (op `i + 1` at index `i`).
pub const OPS: [Op; 14] = [
    Op::Hello,
    Op::TopicCreate,
    Op::TopicDelete,
    Op::PublisherOpen,
    Op::SubscriberOpen,
    Op::SubscriberClose,
    Op::PublisherClose,
    Op::ControlQueue,
    Op::SubscriberOpenMqueue,
    Op::Cursors,
    Op::SubscriberFd,
    Op::Notifiers,
    Op::SubscriberCommit,
    Op::TopicStats,
];

/// The daemon's decoder of a client's frame (`protocol::decode_request`).
/// Invariants: `frame_id` agrees with the decoder on the id; a decoded
/// request re-encodes to a frame that decodes again, is a fixed point of
/// decode-then-encode, and (when no string was long enough to be cut by the
/// encoder) is the same request; an error is `Protocol` or `Invalid`.
pub fn protocol_request(data: &[u8]) {
    match protocol::decode_request(data) {
        Ok((id, req)) => {
            assert_eq!(
                protocol::frame_id(data),
                Some(id),
                "frame_id disagrees with decode_request"
            );
            let _ = req.to_string();
            let f2 = protocol::encode_request(&req, id);
            assert!(f2.len() <= MAX_FRAME, "re-encoded frame of {} bytes", f2.len());
            let (id2, req2) =
                protocol::decode_request(&f2).unwrap_or_else(|e| panic!("re-encoded {req:?} does not decode: {}", e.2));
            assert_eq!(id2, id);
            assert_eq!(
                protocol::encode_request(&req2, id),
                f2,
                "decode-encode is not a fixed point"
            );
            if data.len() <= MAX_FRAME / 2 {
                assert_eq!(req2, req, "request changed through encode and decode");
            }
        }
        Err((id, _op, e)) => {
            assert!(matches!(e.status, Status::Protocol | Status::Invalid), "{e}");
            if let Some(fid) = protocol::frame_id(data) {
                assert_eq!(fid, id, "the error names another id than the header's");
            }
        }
    }
}

/// The client's decoder of the daemon's reply (`protocol::decode_reply`).
/// The first byte picks the op the reply answers; the rest is the frame
/// (the id expected is the frame's own, so that the body is reached).
/// Invariants: a decoded reply (success or error) re-encodes to a frame that
/// decodes to the same status and is a fixed point; a failure is `Protocol`.
pub fn protocol_reply(data: &[u8]) {
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    let op = OPS[pick as usize % OPS.len()];
    let id = protocol::frame_id(frame).unwrap_or(0);
    match protocol::decode_reply(op, id, frame) {
        Ok(reply) => {
            let f2 = protocol::encode_reply(op as u16, id, &reply);
            assert!(f2.len() <= MAX_FRAME, "re-encoded reply of {} bytes", f2.len());
            let again = protocol::decode_reply(op, id, &f2)
                .unwrap_or_else(|e| panic!("re-encoded {reply:?} does not decode: {e}"));
            match (&reply, &again) {
                (Ok(_), Ok(_)) => {}
                (Err(a), Err(b)) => {
                    assert_ne!(a.status, Status::Ok, "an error reply with status Ok");
                    assert_eq!(a.status, b.status);
                    if a.message.len() <= MAX_FRAME / 2 {
                        assert_eq!(a.message, b.message);
                    }
                }
                _ => panic!("{reply:?} came back as {again:?}"),
            }
            assert_eq!(
                protocol::encode_reply(op as u16, id, &again),
                f2,
                "decode-encode is not a fixed point"
            );
            if let (Ok(a), Ok(b)) = (&reply, &again) {
                if frame.len() <= MAX_FRAME / 2 && !has_nan(a) {
                    assert_eq!(a, b, "reply changed through encode and decode");
                }
            }
        }
        Err(e) => assert_eq!(e.status, Status::Protocol, "{e}"),
    }
}

fn has_nan(r: &Reply) -> bool {
    matches!(r, Reply::TopicStats(t) if t.rate_msgs_per_s.is_nan() || t.rate_bytes_per_s.is_nan())
}

/// The daemon's parser of an admin-pipe line (`admin::parse_request`, then
/// `Request::command`). Invariants: a request whose command is valid
/// re-serialises (as `aether-cli` writes it) to a line that parses to the
/// same command and reply FIFO; the reply FIFO named by a parsed request is
/// the one returned; every check answers without a panic.
pub fn admin_request(data: &[u8]) {
    let (reply, req) = admin::parse_request(data);
    let _ = admin::is_reply_name(&reply);
    let Ok(req) = req else {
        return;
    };
    assert_eq!(reply, req.reply);
    let Ok(cmd) = req.command() else {
        return;
    };
    let _ = (cmd.to_string(), cmd.right());
    let line = serde_json::to_vec(&admin::Request::new(reply.clone(), cmd.clone())).expect("a request serialises");
    let (reply2, req2) = admin::parse_request(&line);
    assert_eq!(reply2, reply);
    let req2 = req2.unwrap_or_else(|e| panic!("re-serialised {cmd:?} does not parse: {e}"));
    assert_eq!(req2.command().ok(), Some(cmd), "command changed through serialisation");
}

/// The configuration file's parser (`config::parse`, TOML), and the
/// parsers of its values that the environment and flags share
/// (`BridgeTopic::parse`, `parse_mode`), on each line. Invariants: parsing
/// is deterministic; an error names its origin; a parsed bridge topic or
/// mode, written back out, parses to the same value.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let origin = Path::new("fuzz.toml");
    match config::parse(&text, origin) {
        Ok(c) => assert_eq!(config::parse(&text, origin).ok(), Some(c), "parse is not deterministic"),
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
    for line in text.lines().take(64) {
        if let Ok(t) = BridgeTopic::parse(line) {
            let dir = match (t.out, t.inbound) {
                (true, true) => "both",
                (false, true) => "in",
                (true, false) => "out",
                (false, false) => panic!("{line:?}: a bridge topic going nowhere"),
            };
            assert_eq!(BridgeTopic::parse(&format!("{}:{dir}", t.pattern)), Ok(t));
        }
        if let Ok(m) = config::parse_mode(line) {
            assert!(m <= 0o777, "{line:?}: mode {m:o}");
            assert_eq!(config::parse_mode(&format!("{m:o}")), Ok(m));
        }
    }
}

/// The bridge's envelope decoder (`Sent::decode`: an envelope or a batch's,
/// bytes from the network). Invariants: what decodes has a valid origin
/// name and encodes back to exactly the bytes given (the format has one
/// encoding per value); a batch's seqs rise and its messages' ranges tile
/// its payload.
pub fn envelope(data: &[u8]) {
    if let Ok(envelope::Sent::Batch(b)) = envelope::Sent::decode(data) {
        assert!(envelope::valid_name(b.origin), "{:?}", b.origin);
        let entries: Vec<_> = b.entries().collect();
        assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
        let mut again = Vec::new();
        envelope::Batch::encode_into(b.origin, b.link_seq, b.numbering, &entries, &mut again);
        assert_eq!(again, data, "batch is not canonical");
        let mut at = 0;
        for (i, (e, range)) in b.messages().enumerate() {
            assert_eq!((range.start, e.link_seq), (at, b.link_seq + i as u64));
            at = range.end;
        }
        assert_eq!(at as u64, b.payload_len());
        return;
    }
    if let Ok(e) = Envelope::decode(data) {
        assert!(envelope::valid_name(e.origin), "{:?}", e.origin);
        if data[3] == 1 {
            // Version 1 (no numbering) is read as numbering 0 and written as version 2.
            assert_eq!(e.numbering, 0);
            assert_eq!(
                Envelope::decode(&e.encode()).unwrap(),
                e,
                "version 1 does not round-trip"
            );
        } else {
            assert_eq!(e.encode(), data, "envelope is not canonical");
        }
    }
}
