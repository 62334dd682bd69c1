//! The fidelity table of issue 6: mote's int8 PTQ of the MLPerf Tiny float models against the
//! published int8 models, on realistic held-out inputs. Needs the (default) `float` feature and
//! `../shared`; about 11 s in the test profile:
//!
//! ```sh
//! cargo test -p mote-quantize --test fidelity_table -- --nocapture
//! ```
#![cfg(feature = "float")]

use std::path::PathBuf;

use mote_quantize::calibrate::ObserverKind;
use mote_quantize::frontend::{kws_windows, natural_images, read_wav_pcm16};
use mote_quantize::pipeline::{compare_published, quantize_graph, Sample};
use mote_quantize::tflite;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

fn wav(name: &str) -> Vec<f32> {
    read_wav_pcm16(&std::fs::read(shared().join("data").join(name)).unwrap())
        .unwrap()
        .0
}

/// Calibration and held-out samples.
type Split = (Vec<Sample>, Vec<Sample>);

fn wrap(v: Vec<Vec<f32>>) -> Vec<Sample> {
    v.into_iter().map(|x| vec![x]).collect()
}

/// KWS: MFCC windows every 100 ms; calibration = windows starting in 0–4 s of the 10-s
/// speech, held-out = windows starting at 5–9 s plus the "marvin" clip.
fn kws_data() -> Split {
    let speech = wav("speech_10s_16k.wav");
    let cal = kws_windows(&speech[..5 * 16000], 1600);
    let mut held = kws_windows(&speech[5 * 16000..], 1600);
    held.extend(kws_windows(&wav("marvin_1s_16k.wav"), 16000));
    (wrap(cal), wrap(held))
}

/// AD: 5-frame log-mel windows (640 values); calibration = windows within frames 0–99,
/// held-out = windows within frames 100–199.
fn ad_data() -> Split {
    let b = std::fs::read(shared().join("data/ad_normal_id01_logmel_f32.bin")).unwrap();
    let v: Vec<f32> = b
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let frames = v.len() / 128;
    let win = |a: usize, b: usize| -> Vec<Vec<f32>> {
        (a..=b - 5)
            .map(|s| v[s * 128..(s + 5) * 128].to_vec())
            .collect()
    };
    (wrap(win(0, frames / 2)), wrap(win(frames / 2, frames)))
}

/// ResNet: synthetic natural-image-like images (no CIFAR-10 images here).
fn image_data() -> Split {
    (wrap(natural_images(200, 1)), wrap(natural_images(200, 2)))
}

#[test]
fn fidelity_table() {
    if !shared().join("models").is_dir() {
        eprintln!("SKIPPED: ../shared is absent");
        return;
    }
    let cases: Vec<(&str, &str, &str, Split)> = vec![
        (
            "kws",
            "kws_ref_model_float32.tflite",
            "kws_ref_model.tflite",
            kws_data(),
        ),
        (
            "resnet",
            "pretrainedResnet.tflite",
            "pretrainedResnet_quant.tflite",
            image_data(),
        ),
        ("ad01", "ad01_fp32.tflite", "ad01_int8.tflite", ad_data()),
    ];
    println!("| model | inputs (cal / held-out) | observer | mote int8 output SQNR dB | mote top-1 agree | published int8 SQNR dB | published top-1 agree |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for (name, float, int8, (cal, held)) in cases {
        let g = tflite::import_file(shared().join("models").join(float)).unwrap();
        let published = compare_published(
            &g,
            &std::fs::read(shared().join("models").join(int8)).unwrap(),
            &held,
        )
        .unwrap();
        for obs in [
            ObserverKind::MinMax,
            ObserverKind::Percentile,
            ObserverKind::Entropy,
        ] {
            let q = quantize_graph(&g, &cal, &held, obs, false).unwrap();
            println!(
                "| {name} | {} / {} | {obs} | {:.2} | {:.1} % | {:.2} | {:.1} % |",
                cal.len(),
                held.len(),
                q.report.output_sqnr_db,
                100.0 * q.report.top1_agreement,
                published.output_sqnr_db,
                100.0 * published.top1_agreement
            );
            if obs == ObserverKind::MinMax {
                eprintln!(
                    "{name} per layer (minmax):\n{}",
                    mote_quantize::fidelity::render(&q.report)
                );
            }
        }
    }
}
