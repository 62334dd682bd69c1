//! Any byte string given to `Model::from_bytes` must give `Ok` or `Err`, never a panic or UB;
//! a model that validates must bind an arena of its stated size and run without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_quantize::write::AlignedBytes;
use mote_runtime::{Interpreter, Model};

fuzz_target!(|data: &[u8]| {
    let aligned = AlignedBytes::new(data);
    let Ok(model) = Model::from_bytes(aligned.as_slice()) else {
        return;
    };
    // Bound the work per input: the arena size comes from the (fuzzed) header.
    if model.arena_bytes() > 1 << 22 {
        return;
    }
    let mut arena = AlignedBytes::zeroed(model.arena_bytes());
    let Ok(mut interp) = Interpreter::new(&model, arena.as_mut_slice()) else {
        return;
    };
    for i in 0..model.input_count() {
        if let Ok(bytes) = interp.input_bytes_mut(i) {
            for (k, b) in bytes.iter_mut().enumerate() {
                *b = (k as u8).wrapping_mul(7);
            }
        }
    }
    let _ = interp.invoke();
    for k in 0..model.output_count() {
        let _ = interp.output_bytes(k);
    }
});
