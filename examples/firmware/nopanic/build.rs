//! Puts the board's memory map on the linker's search path (cortex-m-rt's `link.x` includes it).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let target = env::var("TARGET").expect("set by cargo");
    // Any board of the core will do: the binary is linked, never run.
    let board = if target.starts_with("thumbv6m") {
        "microbit"
    } else if target.starts_with("thumbv8m.main") {
        "mps3-an547"
    } else {
        "mps2-an386"
    };
    let memory = manifest
        .join("../../../targets/boards")
        .join(board)
        .join("memory.x");
    let bytes = fs::read(&memory).unwrap_or_else(|e| panic!("{}: {e}", memory.display()));
    fs::write(out.join("memory.x"), bytes).expect("OUT_DIR is writable");
    println!("cargo:rerun-if-changed={}", memory.display());
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
