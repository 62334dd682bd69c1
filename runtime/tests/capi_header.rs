//! The committed C header (`include/mote.h`) is what cbindgen generates from `src/capi.rs`.
//!
//! After changing the C API, regenerate it with `MOTE_BLESS=1 cargo test -p mote-runtime --test
//! capi_header` (or the cbindgen CLI: see `cbindgen.toml`).

use std::path::PathBuf;

#[test]
fn committed_header_is_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/capi.rs"))
        .generate()
        .expect("cbindgen parses src/capi.rs")
        .write(&mut generated);
    let path = dir.join("include/mote.h");
    if std::env::var_os("MOTE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/mote.h");
    }
    let committed = std::fs::read(&path).expect("include/mote.h");
    assert!(
        committed == generated,
        "runtime/include/mote.h is stale: regenerate it with \
         `MOTE_BLESS=1 cargo test -p mote-runtime --test capi_header`"
    );
}
