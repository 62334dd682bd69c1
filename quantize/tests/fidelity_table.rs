//! The fidelity table of issue 6: mote's int8 PTQ of the MLPerf Tiny float models against the
//! published int8 models, on realistic held-out inputs, and the bar it must meet: with mote's
//! recipe for each model, top-1 agreement with the float model AND output SQNR at least those
//! of the published int8 model, on the same held-out inputs. Other observers are printed for
//! comparison only. Needs the (default) `float` feature and the shared models and data:
//!
//! ```sh
//! cargo test -p mote-quantize --test fidelity_table -- --nocapture
//! ```
#![cfg(feature = "float")]

use std::path::PathBuf;

use mote_quantize::calibrate::ObserverKind;
use mote_quantize::fidelity::Report;
use mote_quantize::float::{self, FloatExecutor};
use mote_quantize::frontend::{kws_windows, kws_windows_augmented, read_wav_pcm16, AudioAugment};
use mote_quantize::ir::Graph;
use mote_quantize::pipeline::{
    compare_published, fidelity, quantize_graph_scheme, Refinements, Sample,
};
use mote_quantize::ptq::Precision;
use mote_quantize::tflite;

/// The shared models and data: the first `shared/` with a `models/` folder above the crate
/// (`/work/shared` from `/work/main` and from worktrees under `/work/wt/`).
fn shared() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared"))
        .find(|p| p.join("models").is_dir())
        .unwrap_or_else(|| here.join("../../shared"))
}

fn wav(name: &str) -> Vec<f32> {
    read_wav_pcm16(&std::fs::read(shared().join("data").join(name)).unwrap())
        .unwrap()
        .0
}

fn wrap(v: Vec<Vec<f32>>) -> Vec<Sample> {
    v.into_iter().map(|x| vec![x]).collect()
}

/// A calibration recipe: observer, bias correction.
#[derive(Clone, Copy)]
struct Recipe {
    observer: ObserverKind,
    bias_correction: bool,
}

impl std::fmt::Display for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.observer)?;
        if self.bias_correction {
            f.write_str(" + bias corr.")?;
        }
        Ok(())
    }
}

/// One model's case: calibration samples, named held-out sets, mote's recipe (asserted) and
/// other recipes (printed only).
struct Case {
    name: &'static str,
    float: &'static str,
    int8: &'static str,
    cal_desc: String,
    cal: Vec<Sample>,
    held: Vec<(&'static str, Vec<Sample>)>,
    recipe: Recipe,
    others: Vec<Recipe>,
}

/// Augmented copies of the KWS calibration audio.
const KWS_AUGMENT: usize = 8;

/// KWS: calibration = MFCC windows every 100 ms of the first 5 s of the 10-s speech, plus
/// those of [`KWS_AUGMENT`] perturbed copies of that audio (`AudioAugment::default()`).
/// Held-out (audio disjoint from calibration): windows starting every 100 ms (the issue's set)
/// and every 20 ms in the last 5 s, each plus the "marvin" clip; and windows every 100 ms of 4
/// perturbed copies of the last 5 s plus 8 of "marvin" (other seeds, and with ±10 % speed
/// perturbation: the held-out set was defined with it before the calibration recipe, whose
/// augmentation has none, was chosen).
fn kws_case() -> Case {
    let speech = wav("speech_10s_16k.wav");
    let marvin = wav("marvin_1s_16k.wav");
    let (cal_audio, held_audio) = speech.split_at(5 * 16000);
    let aug = AudioAugment::default();
    let cal = wrap(kws_windows_augmented(cal_audio, 1600, KWS_AUGMENT, &aug, 3));
    let held_aug = AudioAugment { speed: 0.1, ..aug };
    let with_marvin = |mut v: Vec<Vec<f32>>, m: Vec<Vec<f32>>| {
        v.extend(m);
        wrap(v)
    };
    let held = vec![
        (
            "100 ms",
            with_marvin(kws_windows(held_audio, 1600), kws_windows(&marvin, 16000)),
        ),
        (
            "20 ms",
            with_marvin(kws_windows(held_audio, 320), kws_windows(&marvin, 16000)),
        ),
        (
            "perturbed",
            with_marvin(
                kws_windows_augmented(held_audio, 1600, 4, &held_aug, 1000),
                kws_windows_augmented(&marvin, 16000, 8, &held_aug, 1001),
            ),
        ),
    ];
    Case {
        name: "kws",
        float: "kws_ref_model_float32.tflite",
        int8: "kws_ref_model.tflite",
        cal_desc: format!("0-5 s speech + {KWS_AUGMENT} perturbed copies"),
        cal,
        held,
        recipe: Recipe {
            observer: ObserverKind::Mse,
            bias_correction: true,
        },
        others: vec![
            Recipe {
                observer: ObserverKind::MinMax,
                bias_correction: false,
            },
            Recipe {
                observer: ObserverKind::Percentile,
                bias_correction: false,
            },
            Recipe {
                observer: ObserverKind::Mse,
                bias_correction: false,
            },
        ],
    }
}

/// AD: 5-frame log-mel windows (640 values); calibration = windows within frames 0–99,
/// held-out = windows within frames 100–199.
fn ad_case() -> Case {
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
    Case {
        name: "ad01",
        float: "ad01_fp32.tflite",
        int8: "ad01_int8.tflite",
        cal_desc: "log-mel frames 0-99".into(),
        cal: wrap(win(0, frames / 2)),
        held: vec![("frames 100-199", wrap(win(frames / 2, frames)))],
        recipe: Recipe {
            observer: ObserverKind::MinMax,
            bias_correction: false,
        },
        others: vec![Recipe {
            observer: ObserverKind::Mse,
            bias_correction: false,
        }],
    }
}

/// 32 × 32 RGB crops of two photographs (`tests/fixtures/images`, made by
/// `tools/make_image_crops.py`), as floats in [0, 255].
fn crops(file: &str) -> Vec<Sample> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/images")
        .join(file);
    let b = std::fs::read(p).unwrap();
    assert_eq!(b.len() % (32 * 32 * 3), 0);
    wrap(
        b.chunks_exact(32 * 32 * 3)
            .map(|c| c.iter().map(|&x| f32::from(x)).collect())
            .collect(),
    )
}

/// ResNet: crops of the left halves of two photographs for calibration, of the right halves
/// held out.
fn image_case() -> Case {
    Case {
        name: "resnet",
        float: "pretrainedResnet.tflite",
        int8: "pretrainedResnet_quant.tflite",
        cal_desc: "photo crops (left halves)".into(),
        cal: crops("calibration.u8"),
        held: vec![("photo crops (right halves)", crops("heldout.u8"))],
        recipe: Recipe {
            observer: ObserverKind::MinMax,
            bias_correction: false,
        },
        others: vec![Recipe {
            observer: ObserverKind::Mse,
            bias_correction: false,
        }],
    }
}

/// mote's int8 model of `g` calibrated on `cal` with recipe `r`, measured on each held-out set.
fn quantize(g: &Graph, cal: &[Sample], held: &[(&str, Vec<Sample>)], r: Recipe) -> Vec<Report> {
    let q = quantize_graph_scheme(
        g,
        cal,
        &[],
        r.observer,
        |fg| Ok(Precision::Int8.for_graph(fg)),
        Refinements {
            bias_correction: r.bias_correction,
            ..Refinements::default()
        },
        false,
    )
    .unwrap();
    let exec = FloatExecutor::new(&q.float, float::default_device());
    held.iter()
        .map(|(_, h)| fidelity(&exec, &q.graph, &q.compiled, h, false).unwrap())
        .collect()
}

#[test]
fn fidelity_table() {
    if !shared().join("models").is_dir() {
        eprintln!("SKIPPED: the shared models are absent");
        return;
    }
    let t0 = std::time::Instant::now();
    println!("| model | calibration | held-out | recipe | mote int8 SQNR dB | mote top-1 agree | published int8 SQNR dB | published top-1 agree |");
    println!("|---|---|---|---|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    for case in [kws_case(), image_case(), ad_case()] {
        let g = tflite::import_file(shared().join("models").join(case.float)).unwrap();
        let int8 = std::fs::read(shared().join("models").join(case.int8)).unwrap();
        let published: Vec<Report> = case
            .held
            .iter()
            .map(|(_, h)| compare_published(&g, &int8, h).unwrap())
            .collect();
        let recipes: Vec<Recipe> = std::iter::once(case.recipe)
            .chain(case.others.iter().copied())
            .collect();
        let reports: Vec<Vec<Report>> = recipes
            .iter()
            .map(|&r| quantize(&g, &case.cal, &case.held, r))
            .collect();
        for (h, ((held_name, held), published)) in case.held.iter().zip(&published).enumerate() {
            for (k, r) in recipes.iter().enumerate() {
                let q = &reports[k][h];
                let mote = if k == 0 { "**mote**" } else { "other" };
                println!(
                    "| {} | {} ({}) | {held_name} ({}) | {r} ({mote}) | {:.2} | {:.1} % ({}) | {:.2} | {:.1} % ({}) |",
                    case.name,
                    case.cal_desc,
                    case.cal.len(),
                    held.len(),
                    q.output_sqnr_db,
                    100.0 * q.top1_agreement,
                    (q.top1_agreement * held.len() as f64).round(),
                    published.output_sqnr_db,
                    100.0 * published.top1_agreement,
                    (published.top1_agreement * held.len() as f64).round(),
                );
                // The bar (issue 6), for mote's recipe only.
                if k == 0
                    && (q.top1_agreement < published.top1_agreement
                        || q.output_sqnr_db < published.output_sqnr_db)
                {
                    failures.push(format!(
                        "{} on {held_name}: mote {:.2} dB / {:.4} top-1 < published {:.2} dB / {:.4}",
                        case.name,
                        q.output_sqnr_db,
                        q.top1_agreement,
                        published.output_sqnr_db,
                        published.top1_agreement
                    ));
                }
            }
        }
    }
    eprintln!("({:.1} s)", t0.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "mote's int8 agrees less with the float model than the published int8:\n{}",
        failures.join("\n")
    );
}
