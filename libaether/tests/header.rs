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
