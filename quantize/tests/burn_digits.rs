//! A CNN defined and trained with burn on scikit-learn's digits, exported to the IR, quantized
//! to int8 by mote and run on the mote runtime (the default `float` feature). Training takes
//! about 2 min for 20 epochs on 2 quiet cores in the test profile (9 min on a busy machine), too
//! long for every CI run, so the test is `#[ignore]`d:
//!
//! ```sh
//! cargo test -p mote-quantize --test burn_digits -- --ignored --nocapture
//! ```
//!
//! `MOTE_DIGITS_EPOCHS` overrides the 20 epochs.
#![cfg(feature = "float")]

use std::path::PathBuf;

use mote_quantize::calibrate::ObserverKind;
use mote_quantize::fidelity::{argmax, Int8Runner};
use mote_quantize::float::{default_device, prepare, FloatExecutor};
use mote_quantize::pipeline::quantize_graph;
use mote_quantize::train::{accuracy, train_digits};

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(assets().join(name)).unwrap()
}

#[test]
#[ignore]
fn burn_trained_digits_cnn_loses_at_most_half_a_point_at_int8() {
    let train_x: Vec<f32> = read("digits_train_u8.bin")
        .iter()
        .map(|&p| f32::from(p) / 16.0)
        .collect();
    let train_y = read("digits_train_labels.bin");
    let test_x: Vec<f32> = read("digits_test_f32.bin")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let test_y = read("digits_test_labels.bin");
    let epochs = std::env::var("MOTE_DIGITS_EPOCHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let device = default_device().autodiff();
    let t0 = std::time::Instant::now();
    let net = train_digits(&train_x, &train_y, epochs, 0, &device);
    eprintln!(
        "trained {epochs} epochs in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let g = net.to_graph();

    // Float accuracy through the IR (the export is checked against burn's own forward too).
    let fg = prepare(&g).unwrap();
    let exec = FloatExecutor::new(&fg, default_device());
    let samples: Vec<Vec<Vec<f32>>> = test_x.chunks_exact(64).map(|c| vec![c.to_vec()]).collect();
    let float_pred: Vec<usize> = samples
        .iter()
        .map(|s| argmax(&exec.outputs(s).unwrap()[0]))
        .collect();
    let float_acc = accuracy(&float_pred, &test_y);

    let cal: Vec<Vec<Vec<f32>>> = train_x
        .chunks_exact(64)
        .take(200)
        .map(|c| vec![c.to_vec()])
        .collect();
    let q = quantize_graph(&g, &cal, &samples, ObserverKind::MinMax, false).unwrap();
    let mut runner = Int8Runner::new(&q.graph, &q.compiled).unwrap();
    let int8_pred: Vec<usize> = samples
        .iter()
        .map(|s| argmax(&runner.run_layers(s, false).unwrap().1[0]))
        .collect();
    let int8_acc = accuracy(&int8_pred, &test_y);
    eprintln!(
        "burn digits CNN: float {:.2} %, mote int8 {:.2} % ({} test images); {} bytes .mote\n{}",
        100.0 * float_acc,
        100.0 * int8_acc,
        test_y.len(),
        q.compiled.bytes.len(),
        mote_quantize::fidelity::render(&q.report)
    );
    assert!(float_acc > 0.9, "float accuracy {float_acc}");
    assert!(
        float_acc - int8_acc <= 0.005 + 1e-9,
        "float {float_acc} int8 {int8_acc}"
    );
}
