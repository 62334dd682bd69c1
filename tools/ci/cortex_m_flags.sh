# shellcheck shell=bash
# The code-size flags every Cortex-M build uses (.cargo/config.toml says why; it and
# quantize/src/board.rs spell them out too, as TOML and Rust cannot read this file). Sourced by
# nopanic.sh and determinism.sh, whose RUSTFLAGS replace the config's.
cortex_m_size_flags="-C llvm-args=-unroll-runtime=false -C llvm-args=-unroll-allow-partial=false \
-C llvm-args=-unroll-threshold=100 -C llvm-args=-inline-threshold=200 \
-C llvm-args=-enable-machine-outliner=always"
