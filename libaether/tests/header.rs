//! `include/aether.h` must be exactly what cbindgen generates from the
//! sources: a stale committed header fails this test.
//! `AETHER_BLESS=1 cargo test -p aether --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_is_fresh() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let header = crate_dir.join("../include/aether.h");
    if std::env::var_os("AETHER_BLESS").is_some() {
        std::fs::write(&header, &generated).expect("write include/aether.h");
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "include/aether.h is stale: run `AETHER_BLESS=1 cargo test -p aether --test header` and commit it"
    );
}

/// The header's version macros are the crate's version (bump them with it,
/// in libaether/cbindgen.toml).
#[test]
fn version_macros_match_the_crate() {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../include/aether.h")).unwrap();
    let num = |name: &str| -> u64 {
        let line = header
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("no {name} in aether.h"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let v: Vec<u64> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|x| x.parse().unwrap())
        .collect();
    let (major, minor, patch) = (
        num("AETHER_VERSION_MAJOR"),
        num("AETHER_VERSION_MINOR"),
        num("AETHER_VERSION_PATCH"),
    );
    assert_eq!(
        vec![major, minor, patch],
        v,
        "update AETHER_VERSION_* in libaether/cbindgen.toml"
    );
    assert_eq!(num("AETHER_VERSION_NUMBER"), major * 10000 + minor * 100 + patch);
    let text = format!("#define AETHER_VERSION \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(header.contains(&text), "{text} missing from aether.h");
}
