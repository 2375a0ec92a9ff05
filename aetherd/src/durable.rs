//! Durable topics. Each has a directory under the daemon's state directory,
//! `<state>/topics/<name>/`, that outlives the daemon: `topic` (the
//! parameters it was made with and its log's id, so that the daemon makes
//! it again on start) and the segments of its write-ahead log ([`crate::wal`]).
//! A log writer thread is a subscriber of the topic's ring whose slot gates
//! the publishers (on a lossy topic too, where it is the only one that does),
//! so nothing is overwritten before it is logged. It copies a batch of records into the log's buffer, writes them
//! with one `pwrite`, and only then moves its cursor on: every message
//! before the writer's cursor is in the files. A subscriber asking for
//! history joins the ring at that cursor (under the same lock) and reads
//! the files for everything before it: no gap, no duplicate.
//!
//! Who may read a log: the files are 0600 and the directories 0700, the
//! daemon's user's alone; a client reads history only through read-only
//! descriptors the daemon hands to a subscriber it authorized (the topic's
//! `subscribe` right).

use crate::config::LogConfig;
use crate::state::{SlotKind, State, Topic};
use crate::wal::{Log, SegmentWriter};
use aether::protocol::Start;
use aether::ring::{Deadline, Reader};
use aether::segment::{Fsync, Policy, Segment, TopicParams};
use aether::{Error, Result, Status};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The client id that holds a log writer's subscriber slot (real clients start at 2).
pub(crate) const LOG_WRITER: u64 = 0;
/// How long a stopping writer waits for what is still being published.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// How often the writer applies retention.
const RETENTION_EVERY: Duration = Duration::from_secs(1);
/// How long the writer waits for a message before it looks at its stop flag.
const IDLE: Duration = Duration::from_millis(50);

/// One durable topic's log, as the daemon's threads share it.
pub(crate) struct Durable {
    pub(crate) dir: PathBuf,
    /// The log's id: names the topic's numbering, which goes on across
    /// restarts (the bridge's envelopes carry it).
    pub(crate) log_id: u64,
    pub(crate) fsync: Fsync,
    /// Where the writer stands: every message before seq `.1` is in the
    /// files; `.0` is that place in the ring. Locked while the writer moves
    /// its cursor on, and while a subscriber with a start joins there.
    pub(crate) mark: Mutex<(u64, u64)>,
    /// The last seq made durable by fdatasync, plus one.
    pub(crate) synced: AtomicU64,
    /// The first seq the log still holds, and its bytes on disk.
    pub(crate) oldest: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Stop: when caught up with the ring (`stop`), or at once (`discard`:
    /// the topic was deleted and its log goes with it).
    stop: AtomicBool,
    discard: AtomicBool,
    /// Rolling and retention, as configured (`[log]`; a reload changes it).
    config: Mutex<LogConfig>,
    /// The topic's own retention (`TopicParams::retain_bytes`,
    /// `retain_seconds`), over `[log]`'s where set (0: no limit).
    own_retain: (Option<u64>, Option<u64>),
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The state directory, made private and locked for this daemon on first
/// use (a second daemon on the same directory would write the same logs).
pub(crate) fn claim_state_dir(s: &mut State) -> Result<PathBuf> {
    let dir = s
        .state_dir
        .clone()
        .ok_or_else(|| Error::invalid("this broker has no state directory: it cannot make durable topics"))?;
    if s.state_lock.is_none() {
        private_dir(&dir)?;
        let held = format!("another aetherd keeps its durable topics in {}", dir.display());
        s.state_lock = Some(crate::broker::take_lock(&dir.join("lock"), &held)?);
    }
    Ok(dir)
}

/// `<state>/topics/<name>`.
pub(crate) fn topic_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("topics").join(name)
}

/// Makes `dir` (0700) unless it exists; either way it must be a directory
/// of this process's user that nobody else may write.
fn private_dir(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(Error::io(&format!("create {}", dir.display()), e))
        }
        _ => {}
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| Error::io(&format!("stat {}", dir.display()), e))?;
    let euid = nix::unistd::geteuid().as_raw();
    if !m.is_dir() || m.uid() != euid || m.mode() & 0o022 != 0 {
        return Err(Error::new(
            Status::Permission,
            format!(
                "{} must be a directory of uid {euid} that no one else may write (it holds the topics' logs)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// The `topic` file: what the topic was made with, one `key=value` a line
/// (`retain_bytes` and `retain_seconds` only when the topic set them; a file
/// without them, as older daemons wrote, means `[log]`'s).
fn params_text(p: &TopicParams, log_id: u64) -> String {
    let mut text = format!(
        "log_id={log_id}\npolicy={}\nring_size={}\nmax_message={}\nmax_subscribers={}\nfsync={}\nhuge_pages={}\n",
        p.policy.name(),
        p.ring_size,
        p.max_message,
        p.max_subscribers,
        p.wal.unwrap_or(Fsync::Never),
        u8::from(p.huge_pages)
    );
    for (k, v) in [("retain_bytes", p.retain_bytes), ("retain_seconds", p.retain_seconds)] {
        if let Some(v) = v {
            text.push_str(&format!("{k}={v}\n"));
        }
    }
    text
}

fn parse_params(text: &str, what: &Path) -> Result<(TopicParams, u64)> {
    let bad = |why: String| Error::new(Status::Corrupt, format!("{}: {why}", what.display()));
    let mut p = TopicParams::default();
    let mut log_id = None;
    let mut fsync = None;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("{line:?} is not key=value")))?;
        let num = || v.parse::<u64>().map_err(|_| bad(format!("{k}: {v:?} is not a number")));
        match k {
            "log_id" => log_id = Some(num()?),
            "policy" => p.policy = Policy::from_name(v).ok_or_else(|| bad(format!("unknown policy {v:?}")))?,
            "ring_size" => p.ring_size = num()?,
            "max_message" => p.max_message = num()?,
            "max_subscribers" => p.max_subscribers = num()?.try_into().map_err(|_| bad("max_subscribers".into()))?,
            "fsync" => fsync = Some(Fsync::parse(v).ok_or_else(|| bad(format!("unknown fsync {v:?}")))?),
            "huge_pages" => p.huge_pages = num()? != 0,
            "retain_bytes" => p.retain_bytes = Some(num()?),
            "retain_seconds" => p.retain_seconds = Some(num()?),
            _ => return Err(bad(format!("unknown key {k:?}"))),
        }
    }
    p.wal = Some(fsync.ok_or_else(|| bad("no fsync".into()))?);
    p.validate().map_err(|e| bad(e.message))?;
    Ok((p, log_id.ok_or_else(|| bad("no log_id".into()))?))
}

/// A new durable topic's directory and log (`Exists` if it has one already:
/// a log the daemon could not recover at start, which it keeps for a human).
pub(crate) fn create(s: &mut State, name: &str, params: &TopicParams) -> Result<Log> {
    let segment_bytes = s.config.log.segment_bytes;
    let state_dir = claim_state_dir(s)?;
    private_dir(&state_dir.join("topics"))?;
    let state_dir = state_dir.as_path();
    let dir = topic_dir(state_dir, name);
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::new(
                Status::Exists,
                format!(
                    "{} exists: a log the broker could not recover (see its log)",
                    dir.display()
                ),
            )
        } else {
            Error::io(&format!("create {}", dir.display()), e)
        });
    }
    let log_id = aether::sys::random_u64();
    let made = (|| {
        let tmp = dir.join("topic.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&format!("create {}", tmp.display()), e))?;
        std::io::Write::write_all(&mut f, params_text(params, log_id).as_bytes())
            .and_then(|_| f.sync_all())
            .and_then(|_| std::fs::rename(&tmp, dir.join("topic")))
            .map_err(|e| Error::io(&format!("write {}", tmp.display()), e))?;
        Log::open(&dir, log_id, segment_bytes).map(|(log, _)| log)
    })();
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    made
}

/// A durable topic's parameters and log, found in `dir` at start: the log
/// recovered (a torn tail cut), numbering to go on from its end.
pub(crate) fn reopen(dir: &Path, segment_bytes: u64) -> Result<(TopicParams, Log)> {
    private_dir(dir)?;
    let path = dir.join("topic");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&format!("read {}", path.display()), e))?;
    let (params, log_id) = parse_params(&text, &path)?;
    let (log, recovery) = Log::open(dir, log_id, segment_bytes)?;
    if recovery.cut > 0 {
        log::warn!(
            "log {}: cut a torn tail of {} bytes; numbering goes on at {}",
            dir.display(),
            recovery.cut,
            recovery.next_seq
        );
    }
    Ok((params, log))
}

/// The names of the durable topics whose directories are under `state_dir`.
pub(crate) fn saved_topics(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("topics")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| aether::protocol::validate_topic(n).is_ok())
        .collect();
    names.sort();
    names
}

/// Starts `t`'s log writer (`name`, made with `log`): it takes a subscriber
/// slot, which it holds as long as the topic lives, and which gates the
/// publishers whatever the topic's policy: on a lossy topic they wait for
/// the writer alone, never for a subscriber.
pub(crate) fn start(
    t: &mut Topic,
    name: &str,
    dir: PathBuf,
    params: &TopicParams,
    log: Log,
    config: LogConfig,
    cpus: Vec<usize>,
) -> Result<Arc<Durable>> {
    let fsync = params
        .wal
        .ok_or_else(|| Error::invalid(format!("topic {name:?} is not durable: it has no log writer")))?;
    let i = t.free_slot(SlotKind::Subscriber, name)?;
    let (page, _) = t.join(i as u32, std::process::id(), name, None, true)?;
    t.take_slot(SlotKind::Subscriber, i, LOG_WRITER);
    let mut reader = Reader::new(Arc::clone(&t.seg), Arc::clone(&t.waiters), Some((i as u32, page)))?;
    // Publishers may overwrite nothing before it is written (see `write`).
    reader.hold_cursor();
    let next = log.next_seq();
    if reader.next_seq() != next {
        return Err(Error::new(
            Status::Corrupt,
            format!("the ring starts at seq {} but the log at {next}", reader.next_seq()),
        ));
    }
    let d = Arc::new(Durable {
        dir,
        log_id: log.id(),
        fsync,
        mark: Mutex::new((reader.position(), next)),
        synced: AtomicU64::new(next),
        oldest: AtomicU64::new(log.first_seq()),
        bytes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        discard: AtomicBool::new(false),
        config: Mutex::new(config),
        own_retain: (params.retain_bytes, params.retain_seconds),
        thread: Mutex::new(None),
    });
    let (w, topic) = (Arc::clone(&d), name.to_string());
    let handle = std::thread::Builder::new()
        .name(format!("aetherd-log-{}", &name[..name.len().min(4)]))
        .spawn(move || {
            crate::config::pin(&cpus, "log");
            w.run(&topic, log, reader)
        })
        .map_err(|e| Error::io("spawn a log writer", e))?;
    *d.thread.lock().expect("thread lock") = Some(handle);
    Ok(d)
}

impl Durable {
    /// The writer: batches what the ring holds into the log, writes it,
    /// then moves its cursor on; syncs by the topic's policy.
    fn run(&self, topic: &str, mut log: Log, mut reader: Reader) {
        let batch_limit = (reader.geometry().ring_size / 4).clamp(4096, 1 << 20) as usize;
        let (mut staged, mut staged_bytes) = (0u64, 0usize);
        let mut last_error: Option<Instant> = None;
        let mut last_retention = Instant::now();
        // Since when something written waits for a sync; since when asked to stop.
        let (mut unsynced_since, mut stop_seen) = (None::<Instant>, None::<Instant>);
        self.bytes.store(log.bytes(), Ordering::Relaxed);
        loop {
            if self.discard.load(Ordering::Acquire) {
                return;
            }
            // When the next sync is due, if something waits for one.
            let sync_in = unsynced_since.map(|t| {
                let after = match self.fsync {
                    Fsync::Never => IDLE,
                    Fsync::Interval(ms) => Duration::from_millis(ms.into()),
                    // At once: what publishers wrote during the last sync makes
                    // the next one's group (a delay to gather more lost here).
                    Fsync::Always => Duration::ZERO,
                };
                after.saturating_sub(t.elapsed())
            });
            let wait = match (staged, sync_in) {
                (1.., _) => Duration::ZERO,
                (0, Some(d)) => d.min(IDLE),
                (0, None) => IDLE,
            };
            let deadline = Deadline::after(Some(wait));
            let got = if staged_bytes >= batch_limit {
                None
            } else {
                match reader.next(&deadline) {
                    Ok(rec) => Some(rec),
                    Err(e) if e.status == Status::Timeout => None,
                    Err(e) if matches!(e.status, Status::NotFound | Status::Shutdown | Status::Unavailable) => {
                        // Deleted or closed: write what is staged and end.
                        log::debug!("log writer {topic:?}: the ring ends ({e})");
                        let _ = self.write(&mut log, &mut reader).and_then(|_| log.sync());
                        return;
                    }
                    Err(e) => {
                        // Damage a publisher left in the ring: say so, back
                        // off, and go on; the writer never dies with its
                        // cursor still holding the publishers.
                        complain(
                            &mut last_error,
                            log::Level::Warn,
                            format_args!("log writer {topic:?}: {e}"),
                            10,
                        );
                        None
                    }
                }
            };
            if let Some(rec) = got {
                // SAFETY: rec.data..+rec.len lies in the ring (validated by
                // `next`), and this reader's slot gates publishers (on a lossy
                // topic too: see `start`) at or before rec.pos (its cursor is
                // held until the batch is written), so no publisher writes
                // those bytes meanwhile.
                // A remote message keeps its origin in the log (its bridge
                // must not send it back when it reads history).
                let appended = log.append_seq(rec.seq, rec.timestamp_ns, rec.len, rec.origin, |dst| unsafe {
                    std::ptr::copy_nonoverlapping(rec.data, dst.as_mut_ptr(), rec.len)
                });
                match appended {
                    Ok(_) => {}
                    // Numbers going back: damage in the ring, passed over.
                    Err(e) if e.status == Status::Invalid => {
                        log::warn!("log writer {topic:?}: {e}: record passed over");
                        reader.pass(&rec, true);
                        continue;
                    }
                    Err(e) => {
                        // A roll that failed (disk full, I/O): the record stays
                        // in the ring, unread; try again.
                        let what = format_args!("log writer {topic:?}: {e}; retrying");
                        complain(&mut last_error, log::Level::Error, what, 100);
                        continue;
                    }
                }
                reader.consume(&rec);
                staged += 1;
                staged_bytes += aether::logfile::record_size(rec.len + rec.origin.map_or(0, |_| aether::ORIGIN_BYTES));
                continue;
            }
            if staged > 0 {
                match self.write(&mut log, &mut reader) {
                    Ok(()) => {
                        (staged, staged_bytes) = (0, 0);
                        last_error = None;
                        if self.fsync != Fsync::Never {
                            unsynced_since.get_or_insert_with(Instant::now);
                        }
                    }
                    Err(e) => {
                        // Disk full, an I/O error: the cursor stays (publishers
                        // wait, then time out); try again.
                        let what = format_args!("log writer {topic:?}: {e}; retrying");
                        complain(&mut last_error, log::Level::Error, what, 100);
                        continue;
                    }
                }
            }
            // Group commit: one sync for everything written, whoever waits on it.
            let due = self.fsync != Fsync::Never && sync_in.is_some_and(|d| d.is_zero());
            let next = reader.next_seq();
            let synced = self.synced.load(Ordering::Relaxed);
            if due && synced != next {
                match log.sync() {
                    Ok(()) => {
                        self.synced_to(reader.segment(), next);
                        unsynced_since = None;
                    }
                    Err(e) => log::error!("log writer {topic:?}: {e}"),
                }
            }
            if last_retention.elapsed() >= RETENTION_EVERY {
                self.retain(topic, &mut log);
                last_retention = Instant::now();
            }
            // Stopping: once everything published is written, or after
            // STOP_WAIT (a client that keeps a claim open must not hold the
            // daemon's exit).
            let stopping = self.stop.load(Ordering::Acquire);
            if stopping {
                stop_seen.get_or_insert_with(Instant::now);
            }
            if stopping && (reader.position() >= reader.tail() || stop_seen.is_some_and(|t| t.elapsed() >= STOP_WAIT)) {
                match log.sync() {
                    Ok(()) => self.synced_to(reader.segment(), reader.next_seq()),
                    Err(e) => log::error!("log writer {topic:?}: {e}"),
                }
                return;
            }
        }
    }

    /// Puts `[log]` in force (rolling at the next file, retention at its next pass).
    pub(crate) fn configure(&self, config: LogConfig) {
        *self.config.lock().expect("config lock") = config;
    }

    /// The retention in force: (bytes, seconds, each 0 for no limit), and
    /// whether each is the topic's own (else `[log]`'s).
    pub(crate) fn retention(&self) -> ((u64, u64), (bool, bool)) {
        let c = *self.config.lock().expect("config lock");
        let (bytes, seconds) = self.own_retain;
        (
            (bytes.unwrap_or(c.retain_bytes), seconds.unwrap_or(c.retain_seconds)),
            (bytes.is_some(), seconds.is_some()),
        )
    }

    /// Retention: removes the oldest files while the log is over its size,
    /// and those whose every message is over its age (the topic's own
    /// limits where it set them, `[log]`'s otherwise). Never the file being
    /// written; a subscriber replaying a removed file holds it open and reads on.
    fn retain(&self, topic: &str, log: &mut Log) {
        log.set_segment_bytes(self.config.lock().expect("config lock").segment_bytes);
        let ((retain_bytes, retain_seconds), _) = self.retention();
        let mut removed = 0;
        if retain_bytes > 0 {
            while log.bytes() > retain_bytes && log.segments() > 1 {
                match log.remove_before(log.second_first_seq()) {
                    Ok(n) => removed += n,
                    Err(e) => {
                        log::warn!("log {topic:?}: retention: {e}");
                        break;
                    }
                }
            }
        }
        if retain_seconds > 0 {
            let cutoff = aether::sys::realtime_ns().saturating_sub(retain_seconds.saturating_mul(1_000_000_000));
            match log.remove_older_than(cutoff) {
                Ok(n) => removed += n,
                Err(e) => log::warn!("log {topic:?}: retention: {e}"),
            }
        }
        if removed > 0 {
            self.oldest.store(log.first_seq(), Ordering::Relaxed);
            self.bytes.store(log.bytes(), Ordering::Relaxed);
            log::info!(
                "log {topic:?}: retention removed {removed} file(s); it now holds from seq {}",
                log.first_seq()
            );
        }
    }

    /// Everything below `next` is on disk: says so to publishers waiting for it.
    fn synced_to(&self, seg: &Segment, next: u64) {
        let from = self.synced.swap(next, Ordering::AcqRel);
        seg.durable().synced.store(next, Ordering::SeqCst);
        seg.synced_notify().wake(from, next);
    }

    /// Writes the staged records, then moves the cursor past them.
    fn write(&self, log: &mut Log, reader: &mut Reader) -> Result<()> {
        log.flush()?;
        let mut mark = self.mark.lock().expect("mark lock");
        reader.store_position();
        *mark = (reader.position(), reader.next_seq());
        self.bytes.store(log.bytes(), Ordering::Relaxed);
        Ok(())
    }

    /// Stops the writer once it has logged everything published (the
    /// daemon is draining or exiting), or at once when `discard`.
    pub(crate) fn stop(&self, discard: bool) {
        self.discard.store(discard, Ordering::Release);
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.thread.lock().expect("thread lock").take() {
            let _ = h.join();
        }
    }

    /// The position durable subscription `name` committed, if it exists.
    pub(crate) fn committed(&self, name: &str) -> Result<Option<u64>> {
        let path = self.dir.join("subscriptions").join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map(Some).map_err(|_| {
                Error::new(
                    Status::Corrupt,
                    format!("{}: {text:?} is not a sequence number", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&format!("read {}", path.display()), e)),
        }
    }

    /// Records `next_seq` as durable subscription `name`'s position: a new
    /// file renamed over the old, so a crash leaves one or the other.
    pub(crate) fn commit(&self, name: &str, next_seq: u64) -> Result<()> {
        aether::protocol::validate_subscription(name)?;
        let dir = self.dir.join("subscriptions");
        private_dir(&dir)?;
        let tmp = dir.join(format!(".{name}.tmp"));
        // Synced before the rename: a crash leaves the old position or the new, never an empty file.
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, format!("{next_seq}\n").as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, dir.join(name))
        };
        write().map_err(|e| Error::io(&format!("record durable subscription {name:?}"), e))
    }

    /// Every durable subscription with its committed position.
    pub(crate) fn subscriptions(&self) -> Vec<(String, u64)> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("subscriptions")) else {
            return Vec::new();
        };
        let mut v: Vec<(String, u64)> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| aether::protocol::validate_subscription(n).is_ok())
            .filter_map(|n| Some((n.clone(), self.committed(&n).ok()??)))
            .collect();
        v.sort();
        v
    }

    /// Read-only descriptors of the log files that hold `start` and what
    /// follows, oldest first, at most `max` of them. A `time=` start
    /// begins at the file where a record at or after the time may first
    /// be (the files' indexes), a `seq=` start at the file holding it; the
    /// first file's offset is set to where reading it may start (the last
    /// index entry at or before the start; a hint to the client, which
    /// checks the record there, see `aether::history`).
    pub(crate) fn files_from(&self, start: &Start, max: usize) -> Result<Vec<OwnedFd>> {
        let mut firsts = crate::wal::segment_firsts(&self.dir)?;
        let from = match *start {
            // The file holding n (the last starting at or before it) and those after.
            Start::Seq(n) => firsts.partition_point(|&f| f <= n).saturating_sub(1),
            Start::Time(t) => self.first_file_at(&firsts, t),
            _ => 0,
        };
        firsts.drain(..from);
        let mut files = Vec::new();
        for &f in &firsts {
            if files.len() == max {
                break;
            }
            let path = self.dir.join(SegmentWriter::file_name(f));
            match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(mut file) => {
                    if files.is_empty() {
                        self.seek(&mut file, f, start);
                    }
                    files.push(OwnedFd::from(file))
                }
                // Retention removed it since the listing: the history starts later
                // (counted lost, as for any start retention passed).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && files.is_empty() => continue,
                Err(e) => return Err(Error::io(&format!("open {}", path.display()), e)),
            }
        }
        Ok(files)
    }

    /// Of the segments `firsts` (ascending), the index of the last whose
    /// index's first entry says every record up to it is older than `t`
    /// (0 if none): the files before it hold nothing at or after `t`. A
    /// binary search on the entries' running maximum; a file without a
    /// usable index counts as one that may hold `t` (the search then
    /// settles earlier: slower, never wrong).
    fn first_file_at(&self, firsts: &[u64], t: u64) -> usize {
        let older =
            |f: u64| crate::wal::first_index_entry(&self.dir, self.log_id, f).is_some_and(|e| e.max_timestamp_ns < t);
        let (mut lo, mut hi) = (0, firsts.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if older(firsts[mid]) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Sets `file`'s offset (segment `first`) to the record its index
    /// names last at or before `start` (by seq, or by time: every record
    /// up to it older), if that is past the first record.
    fn seek(&self, file: &mut std::fs::File, first: u64, start: &Start) {
        use aether::logfile::{seek_seq, seek_time, SEGMENT_HEADER};
        use std::io::{Seek, SeekFrom};
        let Some(entries) = crate::wal::read_index(&self.dir, self.log_id, first) else {
            return;
        };
        let entry = match *start {
            Start::Seq(n) => seek_seq(&entries, n),
            Start::Time(t) => seek_time(&entries, t),
            _ => None,
        };
        if let Some(e) = entry.filter(|e| e.offset > SEGMENT_HEADER as u64) {
            let _ = file.seek(SeekFrom::Start(e.offset));
        }
    }
}

/// Logs `what` at most once a second (`last`: when it last did; a fault
/// that repeats must not flood the log), then waits `pause_ms`.
fn complain(last: &mut Option<Instant>, level: log::Level, what: std::fmt::Arguments, pause_ms: u64) {
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        log::log!(level, "{what}");
        *last = Some(Instant::now());
    }
    std::thread::sleep(Duration::from_millis(pause_ms));
}

/// Makes every durable topic saved under the state directory again, each
/// numbered on from its log. One that cannot be recovered is reported and
/// left on disk as it is; the others go on.
pub(crate) fn recover_all(s: &mut State) {
    let Some(state_dir) = s.state_dir.clone() else {
        return;
    };
    let names = saved_topics(&state_dir);
    if names.is_empty() {
        return;
    }
    if let Err(e) = claim_state_dir(s) {
        log::error!("durable topics not recovered: {e}");
        return;
    }
    for name in names {
        let dir = topic_dir(&state_dir, &name);
        let made = reopen(&dir, s.config.log.segment_bytes)
            .and_then(|(params, log)| crate::requests::make_topic(s, &name, &params, None, Some(log)));
        match made {
            Ok(()) => log::info!("durable topic {name:?} recovered from {}", dir.display()),
            Err(e) => log::error!("durable topic {name:?} not recovered: {e}"),
        }
    }
}

/// Where a daemon keeps its durable topics unless told: `/var/lib/aether`
/// for root, else `$XDG_STATE_HOME/aether`, else `~/.local/state/aether`.
pub fn default_state_dir(get: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/lib/aether"));
    }
    let get = |k: &str| get(k).filter(|v| !v.is_empty());
    if let Some(x) = get("XDG_STATE_HOME") {
        return Some(PathBuf::from(x).join("aether"));
    }
    get("HOME").map(|h| PathBuf::from(h).join(".local/state/aether"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a durable topic was made with comes back at start as it was
    /// (huge pages included); a damaged `topic` file is `Corrupt`, not guessed.
    #[test]
    fn topic_file_round_trip_and_damage() {
        let path = Path::new("/state/topics/t/topic");
        for (wal, huge_pages, retain_bytes, retain_seconds) in [
            (Fsync::Never, false, None, None),
            (Fsync::Interval(20), true, Some(0), None),
            (Fsync::Always, true, None, Some(0)),
            (Fsync::Never, false, Some(1 << 30), Some(86_400)),
            (Fsync::Never, false, Some(u64::MAX), Some(u64::MAX)),
        ] {
            let p = TopicParams {
                policy: Policy::Reliable,
                ring_size: 1 << 22,
                max_message: 1000,
                max_subscribers: 8,
                wal: Some(wal),
                huge_pages,
                retain_bytes,
                retain_seconds,
            };
            assert_eq!(parse_params(&params_text(&p, 42), path).unwrap(), (p, 42));
        }
        // A file from before per-topic retention (no retain_* keys): [log]'s.
        let old = "log_id=7\npolicy=reliable\nring_size=65536\nmax_message=256\nmax_subscribers=4\nfsync=never\nhuge_pages=0\n";
        let (p, _) = parse_params(old, path).unwrap();
        assert_eq!((p.retain_bytes, p.retain_seconds), (None, None));
        let own = params_text(
            &TopicParams {
                policy: Policy::Reliable,
                wal: Some(Fsync::Never),
                retain_bytes: Some(4096),
                retain_seconds: Some(60),
                ..TopicParams::default()
            },
            1,
        );
        assert!(own.ends_with("retain_bytes=4096\nretain_seconds=60\n"), "{own}");
        let good = params_text(
            &TopicParams {
                policy: Policy::Reliable,
                wal: Some(Fsync::Never),
                ..TopicParams::default()
            },
            1,
        );
        for bad in [
            good.replace("huge_pages=0", "huge_pages=x"),
            good.replace("fsync=never", "fsync=sometimes"),
            good.replace("log_id=1\n", ""),
            good.replace("ring_size=4194304", "ring_size=3"),
            format!("{good}color=blue\n"),
            format!("{good}retain_bytes=-1\n"),
            format!("{good}retain_bytes=\n"),
            format!("{good}retain_seconds=1h\n"),
            format!("{good}retain_seconds=18446744073709551616\n"),
            own.replace("retain_bytes=4096", "retain_bytes=4k"),
        ] {
            let e = parse_params(&bad, path).unwrap_err();
            assert_eq!(e.status, Status::Corrupt, "{bad}: {e}");
        }
    }
}
