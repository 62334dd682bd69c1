//! Shared helpers for mote's criterion benchmarks.
#![warn(missing_docs)]

use std::path::PathBuf;

/// The folder of reference models (`../shared/models` beside the project root), if present.
pub fn shared_models() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models");
    dir.is_dir().then_some(dir)
}
