//! The fuzz targets on stable: each replays its committed corpus and
//! regressions, then runs random mutations of them for
//! `AETHER_FUZZ_SECONDS` (default 2 s; `scripts/fuzz.sh` gives CI 60 s).
//! See `aether_fuzz::runner`.

use aether_fuzz::runner::{check, fuzz_dir, load_dir};
use aether_fuzz::{seeds, TARGETS};

/// Seconds per target when `AETHER_FUZZ_SECONDS` is not set.
const DEFAULT_SECONDS: f64 = 2.0;

#[test]
fn protocol_request() {
    check("protocol_request", DEFAULT_SECONDS);
}

#[test]
fn protocol_reply() {
    check("protocol_reply", DEFAULT_SECONDS);
}

#[test]
fn admin_request() {
    check("admin_request", DEFAULT_SECONDS);
}

#[test]
fn config() {
    check("config", DEFAULT_SECONDS);
}

#[test]
fn segment() {
    check("segment", DEFAULT_SECONDS);
}

#[test]
fn wal() {
    check("wal", DEFAULT_SECONDS);
}

#[test]
fn envelope() {
    check("envelope", DEFAULT_SECONDS);
}

/// Every target has a committed seed corpus, and a libFuzzer target file.
#[test]
fn every_target_has_a_corpus_and_a_libfuzzer_target() {
    let dir = fuzz_dir();
    for (name, _) in TARGETS {
        assert!(
            !load_dir(&dir.join("corpus").join(name)).is_empty(),
            "fuzz/corpus/{name} is empty: run the ignored test write_seed_corpus"
        );
        assert!(
            dir.join("fuzz_targets").join(format!("{name}.rs")).is_file(),
            "no fuzz/fuzz_targets/{name}.rs"
        );
    }
}

/// Writes the seed corpora (`fuzz/corpus/<target>/`), replacing the seeds
/// of the same names (files libFuzzer added stay).
#[test]
#[ignore = "writes fuzz/corpus: run by hand when the seeds change"]
fn write_seed_corpus() {
    for (name, _) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, bytes) in seeds::seeds(name) {
            std::fs::write(dir.join(format!("seed-{file}")), bytes).unwrap();
        }
    }
}

/// The segment seeds and regressions are of the segment layout this build
/// opens: an input of an older layout is refused at once, and the target
/// fuzzes (or replays) nothing past `Segment::open` (as happened from layout
/// 7 to 8: the lap line's reader code went unfuzzed until the seeds were
/// written again, which found a crash). After a layout change: `cargo test
/// -p aether-fuzz --test corpus -- --ignored write_seed_corpus`, and set the
/// regressions' layout version (the 4 bytes this test reads) to the new one.
#[test]
fn the_segment_seeds_and_regressions_are_of_this_layout() {
    // The input: flags (1), back (2), then the segment image.
    let at = 3 + std::mem::offset_of!(aether::segment::Meta, layout_version);
    let seeds = std::fs::read_dir(fuzz_dir().join("corpus").join("segment"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("seed-"));
    let regressions = std::fs::read_dir(fuzz_dir().join("regressions").join("segment"))
        .unwrap()
        .map(|e| e.unwrap());
    let mut seen = 0;
    for e in seeds.chain(regressions) {
        let name = e.path().display().to_string();
        let b = std::fs::read(e.path()).unwrap();
        let version = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        assert_eq!(
            version,
            aether::segment::LAYOUT_VERSION,
            "{name}: layout {version}; write it again for this layout (see this test)"
        );
        seen += 1;
    }
    assert!(seen > 1, "no segment seeds or regressions");
}
