//! `--only durable`: durable topics (docs/DURABILITY.md) beside the plain
//! ring, in one run. First the disk's lone-fsync rate (write 64 bytes,
//! fdatasync, again). Then per size and per policy, `ring` (a reliable topic
//! without a log, one subscriber thread draining it: the baseline), `never`,
//! `lossy-never` (a lossy durable topic: publishers wait for the writer alone),
//! `interval=10` and `always`: the publishers' rate until the log writer has
//! written everything, and each publish's latency (p50/p99/p99.9); `always`
//! also with 32 and 64 publishers (a topic's most) sharing syncs, each beside a lone-fsync
//! probe made just before it (the disk's pace drifts). Last, replay: a subscriber reading
//! the `never` run's log from the page cache, beside a Unix socket carrying
//! the same bytes (the floor of any design that streams history through
//! the daemon). Then seeking: the time to the first message of a `time=`
//! start near the end of a 256 MiB log (`--quick`: 64 MiB) and of a `seq=`
//! start in the middle of a segment, with the log's index files and with
//! them moved away (the linear read the index replaces). Publishers, the
//! writer and the drain are threads of this process (the broker is
//! embedded), so rates compare within the run.

use super::{fmt_rate, fmt_size, Bench, Result};
use aether::{Fsync, Policy, Start, SubscriberConfig, TopicParams};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// One run's outcome: messages per second, and publish latencies (ns).
struct Run {
    rate: f64,
    latencies: Vec<u64>,
}

fn pct(s: &[u64], p: f64) -> u64 {
    s.get(((s.len() as f64 * p) as usize).min(s.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

/// fdatasync calls per second on a file in `dir`, each after a 64-byte write.
fn lone_fsync_rate(dir: &std::path::Path) -> Result<f64> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-probe");
    let f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let (start, mut n) = (Instant::now(), 0u64);
    while n < 20 || (start.elapsed() < Duration::from_secs(1) && n < 5000) {
        f.write_all_at(&[n as u8; 64], n * 64).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}

impl Bench {
    pub(super) fn durable(&mut self) -> Result<()> {
        let state = self.dir.join("state");
        self.broker
            .as_ref()
            .expect("the embedded broker")
            .set_state_dir(state.clone());
        let quick = self.args.quick;
        let lone = lone_fsync_rate(&self.dir)?;
        if !self.args.json {
            println!(
                "durable: the log under {} (TMPDIR's disk); publishers, log writer and drain are threads",
                state.display()
            );
            println!(
                "{:<14} {:>6} {:>5} {:>12} {:>10} {:>10} {:>10}",
                "policy", "size", "pubs", "msgs/s", "p50", "p99", "p99.9"
            );
        }
        self.emit(
            format!(r#"{{"bench":"durable","system":"lone-fsync","syncs_per_s":{lone:.0}}}"#),
            format!(
                "{:<14} {:>6} {:>5} {:>10}/s   (write 64 B + fdatasync, alone)",
                "lone-fsync",
                "",
                "1",
                fmt_rate(lone)
            ),
        );
        for size in [64u64, 4096] {
            let bulk = if quick { 100_000 } else { 1_000_000 } / if size > 64 { 4 } else { 1 };
            let synced = if quick { 300 } else { 2000 };
            let runs: [(&str, Option<Fsync>, usize, u64); 7] = [
                ("ring", None, 1, bulk),
                ("never", Some(Fsync::Never), 1, bulk),
                // A lossy durable topic: publishers wait for the log writer alone.
                ("lossy-never", Some(Fsync::Never), 1, bulk),
                ("interval=10", Some(Fsync::Interval(10)), 1, bulk),
                ("always", Some(Fsync::Always), 1, synced),
                ("always", Some(Fsync::Always), 32, synced * 32),
                ("always", Some(Fsync::Always), 64, synced * 64),
            ];
            for (name, wal, publishers, count) in runs {
                let topic = format!("dur-{}-{size}-{publishers}", name.replace('=', ""));
                // The disk's pace drifts: `always` is compared with a probe just before it.
                let lone_before = if wal == Some(Fsync::Always) {
                    lone_fsync_rate(&self.dir)?
                } else {
                    lone
                };
                let policy = if name.starts_with("lossy") {
                    Policy::Lossy
                } else {
                    Policy::Reliable
                };
                let mut run = self.publish_run(&topic, policy, wal, size, publishers, count)?;
                run.latencies.sort_unstable();
                let s = &run.latencies;
                let (p50, p99, p999) = (pct(s, 0.5), pct(s, 0.99), pct(s, 0.999));
                let vs = match wal {
                    Some(Fsync::Always) => format!(
                        "  {:.1} x lone fsync ({}/s just before)",
                        run.rate / lone_before,
                        fmt_rate(lone_before)
                    ),
                    _ => String::new(),
                };
                self.emit(
                    format!(r#"{{"bench":"durable","system":"{name}","size":{size},"publishers":{publishers},"msgs_per_s":{:.0},"p50_ns":{p50},"p99_ns":{p99},"p999_ns":{p999}}}"#, run.rate),
                    format!("{name:<14} {:>6} {publishers:>5} {:>10}/s {p50:>7} ns {p99:>7} ns {p999:>7} ns{vs}", fmt_size(size), fmt_rate(run.rate)),
                );
            }
        }
        // Replay the 4 KiB `never` log (in the page cache: just written).
        let topic = "dur-never-4096-1";
        let count = if quick { 25_000 } else { 250_000 };
        let (rate, bytes) = self.replay(topic, count)?;
        let uds = uds_stream(bytes)?;
        self.emit(
            format!(
                r#"{{"bench":"durable","system":"replay","size":4096,"msgs_per_s":{rate:.0},"bytes_per_s":{:.0}}}"#,
                rate * 4096.0
            ),
            format!(
                "{:<14} {:>6} {:>5} {:>10}/s {:>10}B/s of payload from the log (page cache)",
                "replay",
                "4 KiB",
                "",
                fmt_rate(rate),
                fmt_rate(rate * 4096.0)
            ),
        );
        self.emit(
            format!(r#"{{"bench":"durable","system":"uds-stream","bytes_per_s":{uds:.0}}}"#),
            format!(
                "{:<14} {:>6} {:>5} {:>10} {:>10}B/s the same bytes through a Unix socket (64 KiB writes)",
                "uds-stream",
                "",
                "",
                "",
                fmt_rate(uds)
            ),
        );
        self.seek(&state)
    }

    /// Time to the first message from a `time=` start near the end of a
    /// big log and a `seq=` start mid-segment, with the index and without
    /// (its files moved away, then back): the median of a few opens each,
    /// the page cache warm for both.
    fn seek(&mut self, state: &std::path::Path) -> Result<()> {
        const SIZE: usize = 1000;
        let topic = "dur-seek";
        let log_bytes: u64 = if self.args.quick { 64 << 20 } else { 256 << 20 };
        let count = log_bytes / aether::logfile::record_size(SIZE) as u64;
        let _ = self.client.delete_topic(topic);
        let params = TopicParams {
            policy: Policy::Reliable,
            ring_size: 4 << 20,
            max_message: SIZE as u64,
            max_subscribers: 4,
            wal: Some(Fsync::Never),
            ..TopicParams::default()
        };
        self.client.create_topic(topic, &params).map_err(|e| e.to_string())?;
        let mut p = self.client.publisher(topic).map_err(|e| e.to_string())?;
        p.set_timeout(Some(Duration::from_secs(60)));
        let payload = vec![7u8; SIZE];
        // The time start: stamped just before the last 100 messages.
        let mut t = 0;
        for i in 0..count {
            if i == count - 100 {
                t = aether::sys::realtime_ns();
            }
            p.publish(&payload).map_err(|e| e.to_string())?;
        }
        self.wait_logged(topic, count, Duration::from_secs(120))?;
        // Mid-segment: half a default segment (64 MiB) into the last whole one.
        let segment = (64u64 << 20) / aether::logfile::record_size(SIZE) as u64;
        let mid = (count / segment).saturating_sub(1) * segment + segment / 2;
        let dir = state.join("topics").join(topic);
        let rounds = 5;
        // The floor: the first message of the log, nothing to pass over.
        let floor = self.first_message(topic, &Start::Earliest, rounds)?.0.as_nanos();
        for (name, start) in [("time=end", Start::Time(t)), ("seq=mid", Start::Seq(mid))] {
            let indexed = self.first_message(topic, &start, rounds)?;
            move_indexes(&dir, "idx", "idx.away")?;
            let linear = self.first_message(topic, &start, rounds);
            move_indexes(&dir, "idx.away", "idx")?;
            let linear = linear?;
            if indexed.1 != linear.1 {
                return Err(format!(
                    "{name}: first message {} with the index, {} without",
                    indexed.1, linear.1
                ));
            }
            let (i, l) = (indexed.0.as_nanos(), linear.0.as_nanos());
            self.emit(
                format!(
                    r#"{{"bench":"durable","system":"seek","start":"{name}","log_bytes":{log_bytes},"first_seq":{},"indexed_ns":{i},"linear_ns":{l},"earliest_ns":{floor}}}"#,
                    indexed.1
                ),
                format!(
                    "{:<14} {:>6} {:>5} first message (seq {}) of a {} log in {:.1} us with the index, {:.1} us without: {:.0}x (from earliest: {:.1} us)",
                    "seek",
                    name,
                    "",
                    indexed.1,
                    fmt_size(log_bytes),
                    i as f64 / 1e3,
                    l as f64 / 1e3,
                    l as f64 / i.max(1) as f64,
                    floor as f64 / 1e3
                ),
            );
        }
        drop(p);
        let _ = self.client.delete_topic(topic);
        Ok(())
    }

    /// The median time, of `rounds` tries, from opening a subscriber from
    /// `start` to its first message; and that message's seq.
    fn first_message(&self, topic: &str, start: &Start, rounds: usize) -> Result<(Duration, u64)> {
        let cfg = SubscriberConfig {
            start: start.clone(),
            ..SubscriberConfig::default()
        };
        let mut times = Vec::new();
        let mut seq = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let mut sub = self.client.subscriber(topic, &cfg).map_err(|e| e.to_string())?;
            let m = sub
                .receive_view(&aether::Deadline::after(Some(Duration::from_secs(30))))
                .map_err(|e| e.to_string())?;
            seq = m.seq;
            times.push(t.elapsed());
            sub.release_view().map_err(|e| e.to_string())?;
        }
        times.sort_unstable();
        Ok((times[rounds / 2], seq))
    }

    /// `publishers` threads publish `count` messages of `size` bytes in all to
    /// a new reliable topic, logged with `wal` (else drained by a subscriber
    /// thread); returns the rate until the log (or the drain) has them all.
    fn publish_run(
        &self,
        topic: &str,
        policy: Policy,
        wal: Option<Fsync>,
        size: u64,
        publishers: usize,
        count: u64,
    ) -> Result<Run> {
        let _ = self.client.delete_topic(topic);
        let params = TopicParams {
            policy,
            ring_size: 4 << 20,
            max_message: size,
            max_subscribers: 4,
            wal,
            huge_pages: false,
            retain_bytes: None,
            retain_seconds: None,
        };
        self.client.create_topic(topic, &params).map_err(|e| e.to_string())?;
        let gate = Arc::new(Barrier::new(publishers + 1 + usize::from(wal.is_none())));
        let drain = wal.is_none().then(|| {
            let (client, gate, topic) = (self.client.clone(), Arc::clone(&gate), topic.to_string());
            std::thread::spawn(move || -> Result<()> {
                let sub = client.subscriber(&topic, &SubscriberConfig::default());
                gate.wait();
                let mut sub = sub.map_err(|e| e.to_string())?;
                let deadline = aether::Deadline::after(Some(Duration::from_secs(60)));
                for _ in 0..count {
                    sub.receive_view(&deadline).map_err(|e| e.to_string())?;
                    sub.release_view().map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        });
        let per = count / publishers as u64;
        let threads: Vec<_> = (0..publishers)
            .map(|_| {
                let (client, gate, topic) = (self.client.clone(), Arc::clone(&gate), topic.to_string());
                std::thread::spawn(move || -> Result<Vec<u64>> {
                    let p = client.publisher(&topic);
                    // At the gate even when it failed: the others wait there.
                    gate.wait();
                    let mut p = p.map_err(|e| e.to_string())?;
                    p.set_timeout(Some(Duration::from_secs(60)));
                    let payload = vec![7u8; size as usize];
                    let mut lat = Vec::with_capacity(per as usize);
                    for _ in 0..per {
                        let t = Instant::now();
                        p.publish(&payload).map_err(|e| e.to_string())?;
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    Ok(lat)
                })
            })
            .collect();
        gate.wait();
        let start = Instant::now();
        let mut latencies = Vec::new();
        for t in threads {
            latencies.extend(t.join().map_err(|_| "a publisher thread panicked")??);
        }
        if let Some(d) = drain {
            d.join().map_err(|_| "the drain thread panicked")??;
        } else {
            // Until the log writer has written the last message.
            self.wait_logged(topic, per * publishers as u64, Duration::from_secs(60))?;
        }
        let secs = start.elapsed().as_secs_f64();
        Ok(Run {
            rate: latencies.len() as f64 / secs,
            latencies,
        })
    }

    /// Waits until `topic`'s log writer has written its first `count`
    /// messages (the embedded broker's figures, looked at every 200 us).
    fn wait_logged(&self, topic: &str, count: u64, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        let broker = self.broker.as_ref().expect("the embedded broker");
        while broker
            .stats()
            .topics
            .iter()
            .find(|t| t.name == topic)
            .and_then(|t| t.log.as_ref())
            .is_none_or(|l| l.next_seq < count)
        {
            if Instant::now() > end {
                return Err(format!("{topic}: the log writer did not catch up"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    /// Reads `count` messages of `topic` from its log's start; returns the
    /// rate and the bytes the log holds for them.
    fn replay(&self, topic: &str, count: u64) -> Result<(f64, u64)> {
        let cfg = SubscriberConfig {
            start: Start::Earliest,
            ..SubscriberConfig::default()
        };
        let mut sub = self.client.subscriber(topic, &cfg).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; sub.max_message()];
        let (start, mut bytes) = (Instant::now(), 0u64);
        for _ in 0..count {
            let r = sub
                .receive_into(&mut buf, Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            bytes += aether::logfile::record_size(r.len) as u64;
        }
        Ok((count as f64 / start.elapsed().as_secs_f64(), bytes))
    }
}

/// Bytes per second of `bytes` written in 64 KiB pieces into a Unix stream
/// socket and read out on another thread.
fn uds_stream(bytes: u64) -> Result<f64> {
    let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut a = a;
        let chunk = vec![1u8; 64 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if a.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
    });
    use std::io::Read;
    let start = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    let (mut got, mut b) = (0u64, b);
    while got < bytes {
        match b.read(&mut buf) {
            Ok(0) | Err(_) => return Err("the socket ended early".into()),
            Ok(n) => got += n as u64,
        }
    }
    let rate = got as f64 / start.elapsed().as_secs_f64();
    let _ = writer.join();
    Ok(rate)
}

/// Renames the files `*.<from>` in `dir` to `*.<to>`.
fn move_indexes(dir: &std::path::Path, from: &str, to: &str) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for path in entries.filter_map(|e| Some(e.ok()?.path())) {
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str()?.strip_suffix(&format!(".{from}")).map(str::to_string))
        else {
            continue;
        };
        std::fs::rename(&path, dir.join(format!("{stem}.{to}"))).map_err(|e| e.to_string())?;
    }
    Ok(())
}
