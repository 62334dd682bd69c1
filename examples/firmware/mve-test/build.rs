//! Puts the MPS3-AN547 (Cortex-M55) memory map on the linker's search path.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let memory = manifest.join("../../../targets/boards/mps3-an547/memory.x");
    let bytes = fs::read(&memory).unwrap_or_else(|e| panic!("{}: {e}", memory.display()));
    fs::write(out.join("memory.x"), bytes).expect("OUT_DIR is writable");
    println!("cargo:rerun-if-changed={}", memory.display());
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
