//! The seed corpora: small valid inputs of each target, made with the
//! encoders themselves (and the example configuration files). Written to
//! `fuzz/corpus/<target>/` by
//! `cargo test -p aether-fuzz --test corpus -- --ignored write_seed_corpus`;
//! the committed files are what the runners read.

use crate::segment::{params, RING};
use aether::logfile::{encode_header, encode_index_entry, encode_index_header, encode_record, record_size, IndexEntry};
use aether::protocol::{self, Reply, Request, Start, TopicStats};
use aether::ring::{Origin, Writer};
use aether::segment::{Fsync, Policy, Segment, TopicParams, Waiters};
use aether::{Error, Status};
use aetherd::admin::{self, Command};
use aetherd::bridge::envelope::{self, Envelope};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A seed: its file name and bytes.
pub type Seed = (String, Vec<u8>);

/// The seeds of the target named `target`.
pub fn seeds(target: &str) -> Vec<Seed> {
    match target {
        "protocol_request" => protocol_request(),
        "protocol_reply" => protocol_reply(),
        "admin_request" => admin_request(),
        "config" => config(),
        "segment" => segment(),
        "wal" => wal(),
        "envelope" => envelope(),
        _ => panic!("no target {target}"),
    }
}

fn requests() -> Vec<Request> {
    let t = || "sensors.temp".to_string();
    let mut v = vec![
        Request::Hello {
            client_version: "0.1.0".into(),
        },
        Request::TopicCreate {
            topic: t(),
            params: TopicParams::default(),
        },
        Request::TopicDelete { topic: t() },
        Request::PublisherOpen { topic: t() },
        Request::SubscriberOpen {
            topic: t(),
            start: Start::Latest,
        },
        Request::SubscriberClose {
            topic: t(),
            slot: 3,
            topic_id: 9,
        },
        Request::PublisherClose {
            topic: t(),
            slot: 4,
            topic_id: 0,
        },
        Request::ControlQueue,
        Request::SubscriberOpenMqueue { topic: t() },
        Request::Cursors {
            topic: t(),
            topic_id: 7,
            slots: vec![(0, 1), (5, u64::MAX)],
        },
        Request::SubscriberFd {
            topic: t(),
            topic_id: 7,
            slot: 1023,
        },
        Request::Notifiers {
            topic: t(),
            topic_id: 7,
            slots: vec![(3, 2)],
        },
        Request::SubscriberCommit {
            topic: t(),
            topic_id: 7,
            slot: 2,
            next_seq: 1 << 40,
        },
        Request::TopicStats { topic: t() },
        Request::LogFiles {
            topic: t(),
            topic_id: 7,
            slot: 2,
            from_seq: 1 << 41,
        },
    ];
    for start in [
        Start::Earliest,
        Start::Seq(7),
        Start::Time(1 << 60),
        Start::Durable("billing-1".into()),
    ] {
        v.push(Request::SubscriberOpen { topic: t(), start });
    }
    for (wal, huge_pages) in [
        (Some(Fsync::Never), false),
        (Some(Fsync::Interval(5)), true),
        (Some(Fsync::Always), false),
        (None, true),
    ] {
        v.push(Request::TopicCreate {
            topic: t(),
            params: TopicParams {
                policy: Policy::Reliable,
                wal,
                huge_pages,
                ..TopicParams::default()
            },
        });
    }
    for (retain_bytes, retain_seconds) in [(Some(1 << 30), None), (None, Some(0)), (Some(0), Some(86_400))] {
        v.push(Request::TopicCreate {
            topic: t(),
            params: TopicParams {
                policy: Policy::Reliable,
                wal: Some(Fsync::Never),
                retain_bytes,
                retain_seconds,
                ..TopicParams::default()
            },
        });
    }
    v
}

fn protocol_request() -> Vec<Seed> {
    requests()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                format!("{i:02}-{:?}", r.op()),
                protocol::encode_request(r, i as u32 + 1),
            )
        })
        .collect()
}

fn protocol_reply() -> Vec<Seed> {
    use protocol::Op;
    let cases: Vec<(Op, aether::Result<Reply>)> = vec![
        (
            Op::Hello,
            Ok(Reply::Hello {
                daemon_version: "0.1.0".into(),
                pid: 7,
                instance_id: 9,
            }),
        ),
        (Op::TopicCreate, Ok(Reply::Done)),
        (Op::PublisherOpen, Ok(Reply::Publishing { slot: 3 })),
        (Op::SubscriberOpen, Ok(Reply::Subscribed { slot: 5, start: None })),
        (
            Op::SubscriberOpen,
            Ok(Reply::Subscribed {
                slot: 5,
                start: Some((4096, 77, 70)),
            }),
        ),
        (
            Op::ControlQueue,
            Ok(Reply::ControlQueue {
                maxmsg: 10,
                msgsize: 256,
            }),
        ),
        (
            Op::SubscriberOpenMqueue,
            Ok(Reply::SubscribedMqueue {
                slot: 2,
                maxmsg: 10,
                msgsize: 8192,
            }),
        ),
        (
            Op::Cursors,
            Ok(Reply::Cursors {
                slots: vec![(1, 2), (3, 4)],
            }),
        ),
        (Op::Notifiers, Ok(Reply::Notifiers { slots: vec![(5, 6)] })),
        (
            Op::TopicStats,
            Ok(Reply::TopicStats(TopicStats {
                published: 9,
                publishers: 2,
                subscribers: 1,
                rate_msgs_per_s: 1.5,
                durable: true,
                log_next_seq: 9,
                ..TopicStats::default()
            })),
        ),
        (Op::SubscriberFd, Ok(Reply::Done)),
        (Op::TopicCreate, Err(Error::new(Status::Exists, "topic exists"))),
        (Op::SubscriberOpen, Err(Error::new(Status::Permission, "no: ünïcödé"))),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (op, r))| {
            let mut v = vec![op as u16 as u8 - 1];
            v.extend(protocol::encode_reply(op as u16, i as u32 + 1, &r));
            (format!("{i:02}-{op:?}"), v)
        })
        .collect()
}

fn admin_request() -> Vec<Seed> {
    let reply = "/run/aether/aetherd.sock.replies/cli.42.0123456789abcdef0123456789abcdef".to_string();
    let cmds = vec![
        ("status", Command::Status),
        ("topics", Command::Topics),
        ("subscribers", Command::Subscribers { topic: None }),
        (
            "subscribers-of",
            Command::Subscribers {
                topic: Some("t".into()),
            },
        ),
        ("stats", Command::Stats),
        (
            "create",
            Command::Create {
                topic: "t".into(),
                policy: Some("reliable".into()),
                ring_size: Some(1 << 20),
                max_message: Some(64),
                fsync: Some("interval=10".into()),
                huge_pages: Some(true),
                retain_bytes: None,
                retain_seconds: None,
            },
        ),
        (
            "create-retention",
            Command::Create {
                topic: "t".into(),
                policy: None,
                ring_size: None,
                max_message: None,
                fsync: Some("never".into()),
                huge_pages: None,
                retain_bytes: Some(1 << 30),
                retain_seconds: Some(0),
            },
        ),
        ("delete", Command::Delete { topic: "t".into() }),
        ("kick", Command::Kick { client: 7 }),
        ("drain", Command::Drain),
        ("reload", Command::Reload),
    ];
    let mut v: Vec<Seed> = cmds
        .into_iter()
        .map(|(name, c)| {
            let line = serde_json::to_vec(&admin::Request::new(reply.clone(), c)).expect("serialises");
            (name.to_string(), line)
        })
        .collect();
    v.push((
        "junk-with-reply".into(),
        br#"{"v":2,"reply":"/x/cli.1.0123456789abcdef0123456789abcdef","cmd":"explode","extra":[1,2.5e3,null,true,{"a":"\u00e9"}]}"#.to_vec(),
    ));
    v
}

/// The TOML blocks of a Markdown file.
fn toml_blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match &mut cur {
            None if line.trim_start().starts_with("```toml") => cur = Some(String::new()),
            Some(_) if line.trim_start().starts_with("```") => out.extend(cur.take()),
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

fn config() -> Vec<Seed> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut v = Vec::new();
    for f in ["etc/aetherd.toml", "packaging/aetherd.toml"] {
        let text = std::fs::read(root.join(f)).unwrap_or_else(|e| panic!("read {f}: {e}"));
        v.push((f.replace('/', "-"), text));
    }
    for doc in ["BRIDGE", "OBSERVABILITY", "OPERATIONS"] {
        let md = std::fs::read_to_string(root.join(format!("docs/{doc}.md"))).expect("read a doc");
        for (i, b) in toml_blocks(&md).into_iter().enumerate() {
            v.push((format!("docs-{doc}-{i}.toml"), b.into_bytes()));
        }
    }
    v.push((
        "values".into(),
        b"sensors.*:in\n*\nt:out\nt:both\n0660\n0o600\n755\n".to_vec(),
    ));
    v
}

/// A segment image of the template geometry: `publish` writes into it and
/// returns the position the reader should start at; the seed is
/// `flags | back | image`.
fn image(policy: Policy, flags: u8, publish: impl FnOnce(&mut Writer, &Segment) -> u64) -> Vec<u8> {
    let (fd, _control, seg) = Segment::create("seed", &params(policy), 1, 0).expect("a segment");
    let (_w, waiters) = Waiters::create("seed", seg.geometry().salt).expect("a waiters page");
    let seg = Arc::new(seg);
    let mut w = Writer::new(Arc::clone(&seg), Arc::new(waiters), Some(0), None);
    let start = publish(&mut w, &seg);
    drop(w);
    let tail = seg.tail().load().0;
    let back = u16::try_from((tail - start) / 64).expect("within a ring");
    let f = std::fs::File::from(fd);
    let mut img = vec![0u8; seg.geometry().file_size() as usize];
    f.read_exact_at(&mut img, 0).expect("read the segment");
    let mut v = vec![flags];
    v.extend_from_slice(&back.to_le_bytes());
    v.extend(img);
    v
}

fn msg(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i * 31 + k) as u8).collect()
}

fn segment() -> Vec<Seed> {
    let mut v = vec![("empty".to_string(), image(Policy::Lossy, 0, |_, _| 0))];
    for (name, policy, flags) in [
        ("lossy", Policy::Lossy, 0u8),
        ("lossy-next", Policy::Lossy, 4),
        ("lossy-small-buffer", Policy::Lossy, 8),
        ("reliable", Policy::Reliable, 0),
        ("reliable-wait", Policy::Reliable, 1 | 4),
    ] {
        let img = image(policy, flags, |w, _| {
            for (i, len) in [0, 1, 10, 100, 500, 33].into_iter().enumerate() {
                w.publish(&msg(i, len)).expect("publish");
            }
            0
        });
        v.push((name.into(), img));
    }
    v.push((
        "lossy-wrapped".into(),
        image(Policy::Lossy, 0, |w, seg| {
            let mut tails = Vec::new();
            for i in 0..50 {
                tails.push(seg.tail().load().0);
                w.publish(&msg(i, 150 + i % 7)).expect("publish");
            }
            tails[tails.len() - 10]
        }),
    ));
    v.push((
        "remote-aborted-claimed".into(),
        image(Policy::Lossy, 2, |w, _| {
            w.publish(b"local").expect("publish");
            let c = w.claim(8 + aether::ORIGIN_BYTES).expect("claim");
            // SAFETY: the claim's payload has room for 8 bytes.
            unsafe { std::ptr::copy_nonoverlapping(b"remote!!".as_ptr(), w.payload(&c), 8) };
            let origin = Origin {
                broker: aether::broker_id("host-b"),
                seq: 41,
            };
            w.commit_remote(c, 8, 1 << 60, origin).expect("commit");
            let c = w.claim(20).expect("claim");
            w.abort(c);
            w.publish(b"after the abort").expect("publish");
            // Claimed and never committed (the writer goes away).
            let _ = w.claim(40).expect("claim");
            0
        }),
    ));
    assert!(v.iter().all(|(_, s)| s.len() == 3 + 8192 + RING as usize));
    v
}

fn log_file(topic_id: u64, first: u64, seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut v = encode_header(topic_id, first).to_vec();
    for s in seqs {
        encode_record(&mut v, s, s * 10, &msg(s as usize, (s as usize * 7) % 50));
    }
    v
}

/// An index of `log_file(topic_id, first, seqs)` with an entry for each
/// record whose seq is in `at` (the writer's rule would give one entry
/// for so small a file: these give seeks something to skip).
fn index_file(topic_id: u64, first: u64, seqs: impl IntoIterator<Item = u64>, at: &[u64]) -> Vec<u8> {
    let mut v = encode_index_header(topic_id, first).to_vec();
    let (mut offset, mut max) = (32u64, 0);
    for s in seqs {
        max = max.max(s * 10);
        if at.contains(&s) {
            let e = IndexEntry {
                seq: s,
                max_timestamp_ns: max,
                offset,
            };
            v.extend_from_slice(&encode_index_entry(&e));
        }
        offset += record_size((s as usize * 7) % 50) as u64;
    }
    v
}

fn wal() -> Vec<Seed> {
    let one = log_file(9, 0, 0..6);
    let indexed = [one.clone(), index_file(9, 0, 0..6, &[0, 2, 4])].concat();
    let mut torn_index = indexed.clone();
    torn_index.truncate(torn_index.len() - 7);
    let two_indexed = [
        log_file(9, 0, 0..3),
        index_file(9, 0, 0..3, &[0]),
        log_file(9, 3, 3..7),
        index_file(9, 3, 3..7, &[3]),
    ]
    .concat();
    let mut torn = one.clone();
    torn.extend_from_slice(&log_file(9, 0, [6])[32..50]);
    let mut damaged = one.clone();
    damaged[32 + 30] ^= 1;
    let two = [log_file(9, 0, 0..3), log_file(9, 3, 3..7)].concat();
    let three = [log_file(9, 0, 0..2), log_file(9, 2, 2..4), log_file(9, 4, [])].concat();
    let seeds = [
        ("one", 0u8, one.clone()),
        ("one-fix-crc", 1, one.clone()),
        ("one-from-seq", 2 | 8, one.clone()),
        ("one-from-time", 4, one.clone()),
        ("gaps", 0, log_file(9, 0, [0, 1, 5, 9])),
        ("torn-tail", 0, torn),
        ("damaged", 1, damaged),
        ("two-files", 8, two),
        ("three-files-last-empty", 0, three),
        ("header-only", 0, encode_header(9, 100).to_vec()),
        ("short", 0, encode_header(9, 0)[..20].to_vec()),
        ("indexed-from-seq", 2 | 16, indexed.clone()),
        ("indexed-from-time", 4 | 16, indexed),
        ("indexed-torn", 2 | 8 | 16, torn_index),
        ("two-files-indexed", 2 | 8 | 16, two_indexed),
        ("offset-at-record-3", 2 | 16 | (3 << 5), one.clone()),
        ("offset-in-a-record", 2 | 16 | (7 << 5), one.clone()),
    ];
    seeds
        .into_iter()
        .map(|(name, flags, bytes)| {
            let mut v = vec![flags];
            v.extend(bytes);
            (name.to_string(), v)
        })
        .collect()
}

fn envelope() -> Vec<Seed> {
    [("short", "a", 0, 0, 0), ("host", "host-a.example_1", 7, 1 << 60, 3)]
        .into_iter()
        .map(|(name, origin, seq, timestamp_ns, link_seq)| {
            let e = Envelope {
                origin,
                seq,
                timestamp_ns,
                link_seq,
                numbering: seq ^ link_seq,
            };
            (name.to_string(), e.encode())
        })
        .chain(std::iter::once((
            "longest-name".to_string(),
            Envelope {
                origin: &"x".repeat(64),
                seq: u64::MAX,
                timestamp_ns: 1,
                link_seq: u64::MAX,
                numbering: u64::MAX,
            }
            .encode(),
        )))
        .chain([1usize, 3].into_iter().map(|n| {
            let entries: Vec<_> = (0..n as u64)
                .map(|i| envelope::Entry {
                    seq: 10 + 2 * i,
                    timestamp_ns: 1 << 40,
                    len: 64 * i as u32,
                })
                .collect();
            let mut v = Vec::new();
            envelope::Batch::encode_into("host-b", 5, 9, &entries, &mut v);
            (format!("batch-{n}"), v)
        }))
        .collect()
}
