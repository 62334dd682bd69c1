//! Any byte string given to the ONNX importer (and then to the compiler) must give `Ok` or a
//! clear `Err`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(graph) = mote_quantize::onnx::import(data) {
        let _ = mote_quantize::compile::compile(graph);
    }
});
