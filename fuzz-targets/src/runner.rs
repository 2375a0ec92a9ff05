//! The stable runner: the fuzz targets as property tests, for toolchains
//! and CI runs without libFuzzer. For one target it replays every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`, then feeds it
//! random mutations of them (bit flips, byte changes, interesting integers,
//! insertions, deletions, truncation, splicing) and some pure random bytes,
//! for a time budget. No coverage guidance: that is libFuzzer's part.
//!
//! A panic is a crash; an input that runs longer than the hang limit is a
//! hang (a watchdog thread reports it and ends the process, since a thread
//! cannot be stopped). Either way the input is saved to a file and printed
//! in hex, with the seed that reproduces the run.
//!
//! Environment: `AETHER_FUZZ_SECONDS` (per target, default 2),
//! `AETHER_FUZZ_SEED` (default: from the clock; printed),
//! `AETHER_FUZZ_HANG_SECONDS` (default 2), `AETHER_FUZZ_ARTIFACTS` (where
//! findings go; default `$TMPDIR/aether-fuzz-findings`).

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    /// Inputs run: the corpus and regressions, then mutations.
    pub execs: u64,
    /// Files replayed from the corpus and the regressions.
    pub replayed: usize,
    pub seconds: f64,
    pub seed: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} executions in {:.1} s ({:.0}/s), {} corpus files replayed, seed {}",
            self.target,
            self.execs,
            self.seconds,
            self.execs as f64 / self.seconds.max(1e-9),
            self.replayed,
            self.seed
        )
    }
}

/// A crash: the input, what the panic said, and where the input was saved.
#[derive(Debug)]
pub struct Finding {
    pub target: &'static str,
    pub input: Vec<u8>,
    pub message: String,
    pub saved: PathBuf,
    pub seed: u64,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: crash (seed {}): {}\ninput saved to {} ({} bytes): {}",
            self.target,
            self.seed,
            self.message,
            self.saved.display(),
            self.input.len(),
            hex(&self.input)
        )
    }
}

/// The `fuzz/` directory of the repository.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz")
}

/// The files of `dir`, sorted by name (none if it does not exist).
pub fn load_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

fn env_f64(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The seed: `AETHER_FUZZ_SEED`, or one from the clock.
pub fn seed() -> u64 {
    match std::env::var("AETHER_FUZZ_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("AETHER_FUZZ_SEED={v:?} is not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// Bytes as hex (the first 16 KiB).
pub fn hex(b: &[u8]) -> String {
    let mut s: String = b.iter().take(16384).map(|x| format!("{x:02x}")).collect();
    if b.len() > 16384 {
        s.push_str("...");
    }
    s
}

thread_local! {
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Panics inside a target are recorded, not printed; others as before.
fn install_hook() {
    static ONCE: Once = Once::new();
    static PREVIOUS: OnceLock<Hook> = OnceLock::new();
    ONCE.call_once(|| {
        let _ = PREVIOUS.set(panic::take_hook());
        panic::set_hook(Box::new(|info| {
            if IN_TARGET.with(Cell::get) {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(a panic without a message)".into());
                let at = info.location().map_or(String::new(), |l| format!(" at {l}"));
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            } else if let Some(h) = PREVIOUS.get() {
                h(info);
            }
        }));
    });
}

/// Saves `input` as `<artifacts>/<target>/<kind>-<hash>`.
fn save(target: &str, kind: &str, input: &[u8]) -> PathBuf {
    let base = std::env::var_os("AETHER_FUZZ_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("aether-fuzz-findings"));
    let dir = base.join(target);
    let _ = std::fs::create_dir_all(&dir);
    // FNV-1a: a stable name for the same input.
    let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let path = dir.join(format!("{kind}-{h:016x}"));
    if let Err(e) = std::fs::write(&path, input) {
        eprintln!("could not save the input to {}: {e}", path.display());
    }
    path
}

/// What the watchdog watches: when the current input started (0: none
/// running), and the input.
struct Watch {
    started_ns: AtomicU64,
    input: Mutex<Vec<u8>>,
    done: AtomicBool,
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64 + 1
}

/// Fuzzes `target` (`TARGETS`' name, function) for `seconds`, from `seed`.
pub fn run(target: &'static str, f: fn(&[u8]), seconds: f64, seed: u64) -> Result<Report, Finding> {
    install_hook();
    let hang = Duration::from_secs_f64(env_f64("AETHER_FUZZ_HANG_SECONDS", 2.0));
    let dir = fuzz_dir();
    let mut files = load_dir(&dir.join("corpus").join(target));
    files.extend(load_dir(&dir.join("regressions").join(target)));
    let epoch = Instant::now();
    let watch = Arc::new(Watch {
        started_ns: AtomicU64::new(0),
        input: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
    });
    let dog = {
        let watch = Arc::clone(&watch);
        std::thread::spawn(move || {
            while !watch.done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let s = watch.started_ns.load(Ordering::Acquire);
                if s != 0 && now_ns(epoch).saturating_sub(s) > hang.as_nanos() as u64 {
                    let input = watch.input.lock().map(|i| i.clone()).unwrap_or_default();
                    let saved = save(target, "hang", &input);
                    eprintln!(
                        "{target}: HANG (seed {seed}): an input ran over {hang:?}\ninput saved to {} ({} bytes): {}",
                        saved.display(),
                        input.len(),
                        hex(&input)
                    );
                    std::process::exit(70);
                }
            }
        })
    };
    let exec = |input: &[u8]| -> Result<(), Finding> {
        {
            let mut cur = watch.input.lock().expect("watch lock");
            cur.clear();
            cur.extend_from_slice(input);
        }
        watch.started_ns.store(now_ns(epoch), Ordering::Release);
        IN_TARGET.with(|c| c.set(true));
        let r = panic::catch_unwind(AssertUnwindSafe(|| f(input)));
        IN_TARGET.with(|c| c.set(false));
        watch.started_ns.store(0, Ordering::Release);
        r.map_err(|_| {
            let message = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "(no message)".into());
            Finding {
                target,
                input: input.to_vec(),
                saved: save(target, "crash", input),
                message,
                seed,
            }
        })
    };
    let result = (|| {
        let mut execs = 0u64;
        for (path, bytes) in &files {
            exec(bytes).map_err(|mut e| {
                e.message = format!("{} (corpus file {})", e.message, path.display());
                e
            })?;
            execs += 1;
        }
        let corpus: Vec<Vec<u8>> = files.iter().map(|(_, b)| b.clone()).collect();
        let max_len = corpus.iter().map(Vec::len).max().unwrap_or(0).max(256) * 2;
        let mut rng = Rng(seed);
        let budget = Duration::from_secs_f64(seconds);
        let t0 = Instant::now();
        while t0.elapsed() < budget {
            // The clock is read once per batch.
            for _ in 0..16 {
                let input = mutate(&mut rng, &corpus, max_len);
                exec(&input)?;
                execs += 1;
            }
        }
        Ok(Report {
            target,
            execs,
            replayed: files.len(),
            seconds: t0.elapsed().as_secs_f64(),
            seed,
        })
    })();
    watch.done.store(true, Ordering::Relaxed);
    let _ = dog.join();
    result
}

/// Runs the target named `target` for `AETHER_FUZZ_SECONDS` (default
/// `default_seconds`); prints the report, or the finding and panics.
pub fn check(target: &'static str, default_seconds: f64) -> Report {
    let f = crate::target(target).unwrap_or_else(|| panic!("no target {target}"));
    let seconds = env_f64("AETHER_FUZZ_SECONDS", default_seconds);
    let seed = seed();
    match run(target, f, seconds, seed) {
        Ok(r) => {
            eprintln!("{r}");
            r
        }
        Err(finding) => panic!("{finding}\n(rerun: AETHER_FUZZ_SEED={seed})"),
    }
}

/// splitmix64: small, fast, and the same everywhere.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number below `n` (0 if `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Values that sit on the edges parsers check.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    16,
    24,
    31,
    32,
    63,
    64,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    4096,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 30,
    (1 << 30) + 1,
    u64::MAX - 1,
    u64::MAX,
    i64::MAX as u64,
    1 << 63,
];

/// A new input: a mutation of a corpus entry, or random bytes.
pub fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    if corpus.is_empty() || rng.below(16) == 0 {
        let n = rng.below(max_len.min(4096) + 1);
        return (0..n).map(|_| rng.next_u64() as u8).collect();
    }
    let mut v = corpus[rng.below(corpus.len())].clone();
    let rounds = if rng.below(4) == 0 {
        1 + rng.below(16)
    } else {
        1 + rng.below(3)
    };
    for _ in 0..rounds {
        let len = v.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())] as u8;
            }
            3 if len > 0 => {
                // An interesting integer of 2, 4 or 8 bytes, little-endian.
                let w = [2, 4, 8][rng.below(3)];
                let i = rng.below(len);
                let x = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let n = w.min(len - i);
                v[i..i + n].copy_from_slice(&x[..n]);
            }
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                v.splice(i..i, bytes);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                v.drain(i..i + n);
            }
            6 => v.truncate(rng.below(len + 1)),
            7 if len > 0 => {
                // A chunk copied over another place.
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                let to = rng.below(len);
                let chunk = v[from..from + n].to_vec();
                let n = n.min(len - to);
                v[to..to + n].copy_from_slice(&chunk[..n]);
            }
            8 => {
                // Splice: this one's head, another's tail.
                let other = &corpus[rng.below(corpus.len())];
                let a = rng.below(len + 1);
                let b = rng.below(other.len() + 1);
                v.truncate(a);
                v.extend_from_slice(&other[b..]);
            }
            9 if len >= 4 => {
                // A small change to a 32-bit word.
                let i = rng.below(len - 3);
                let x = u32::from_le_bytes(v[i..i + 4].try_into().expect("4 bytes"));
                let d = rng.below(33) as u32;
                let x = if rng.below(2) == 0 {
                    x.wrapping_add(d)
                } else {
                    x.wrapping_sub(d)
                };
                v[i..i + 4].copy_from_slice(&x.to_le_bytes());
            }
            _ if len > 0 => {
                // A run of one byte.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let b = rng.next_u64() as u8;
                v[i..i + n].fill(b);
            }
            _ => v.push(rng.next_u64() as u8),
        }
    }
    v.truncate(max_len);
    v
}
