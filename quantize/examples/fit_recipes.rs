//! Fine-tuning recipes for structured pruning of the digits CNN, measured on the 360 test
//! images (the experiments behind `mote fit`'s default fine-tuning; see
//! `quantize/tests/fit.rs`). Prints the float / int8 test accuracy of the float model and of
//! the pruned model before fine-tuning, then per shuffling seed: training accuracy, float and
//! int8 (on mote's runtime) test accuracy after fine-tuning, and the wall time.
//!
//! ```sh
//! cargo run --profile test -p mote-quantize --example fit_recipes -- \
//!     ratio=0.5 seeds=0,1,2 epochs=60 lr=1e-2 distill=0.5 temp=2 shift=9 views=9
//! ```
//!
//! Settings (`key=value`): `ratio` (uniform, default 0.5) or `ratios` (per channel group,
//! comma separated), `seeds`, `epochs`, `lr`, `batch`, `distill` (weight of distillation from
//! the float model), `temp`, `shift` (0 = none, 5 = the four one-pixel shifts, 9 = all nine
//! offsets in {-1, 0, 1}²), `views` (1 = every copy every epoch; 5 or 9 = one random view per
//! image and epoch), `steps` / `between` (gradual pruning), `wd` (AdamW weight decay), `qat` /
//! `qat_epochs` (extra quantization-aware epochs), `scratch=1` (train the pruned width from a
//! random initialisation instead of the pruned weights), `random_select=1` (keep random channels
//! instead of those with the largest weight norms; one-shot), `act_select=1` (keep those with
//! the largest mean activation over the calibration images; one-shot), `model` (a float
//! TFLite file instead of the default model, e.g. one written by
//! `tools/train_digits.py --width=2 --out=DIR`).

#[cfg(not(feature = "float"))]
fn main() {
    eprintln!("needs the `float` feature");
}

#[cfg(feature = "float")]
use mote_quantize::demo::{test_images, train_images, FLOAT_TFLITE, TEST_LABELS, TRAIN_LABELS};
#[cfg(feature = "float")]
use mote_quantize::fit::finetune::{
    finetune, logits, predict, shifted, shifted_grid, trainable, FinetuneOptions, Targets,
};
#[cfg(feature = "float")]
use mote_quantize::fit::gradual::{prune_gradually, GradualOptions};
#[cfg(feature = "float")]
use mote_quantize::fit::prune;
#[cfg(feature = "float")]
use mote_quantize::fit::search::{calibrate_ranges, run_quantized, top1};
#[cfg(feature = "float")]
use mote_quantize::float::prepare;
#[cfg(feature = "float")]
use mote_quantize::ir::Graph;

/// `key=value` from the command line (keys case-insensitive), else `d`.
#[cfg(feature = "float")]
fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::args()
        .skip(1)
        .find_map(|a| {
            let (key, v) = a.split_once('=')?;
            key.eq_ignore_ascii_case(k)
                .then(|| v.parse().ok())
                .flatten()
        })
        .unwrap_or(d)
}

#[cfg(feature = "float")]
fn int8_acc(g: &Graph, cal: &[Vec<f32>], test: &[Vec<f32>], truth: &[usize]) -> f64 {
    let ranges = calibrate_ranges(g, cal).unwrap();
    let q = mote_quantize::ptq::quantize_int8(g, &ranges).unwrap();
    let c = mote_quantize::compile::compile(q.clone()).unwrap();
    top1(&run_quantized(&q, &c, test).unwrap(), truth)
}

#[cfg(feature = "float")]
fn reinit(g: &Graph, seed: u64) -> Graph {
    let mut out = g.clone();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for id in trainable(g) {
        let t = &mut out.tensors[id];
        let shape = t.shape.clone();
        let n: usize = shape.iter().product();
        let v: Vec<f32> = if shape.len() == 1 {
            vec![0.0; n]
        } else {
            // fan-in: product of all but the output axis (depthwise [1,h,w,c]: h*w)
            let fan_in = if shape[0] == 1 && shape.len() == 4 {
                shape[1] * shape[2]
            } else {
                n / shape[0]
            };
            let lim = (6.0 / fan_in as f32).sqrt();
            (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0) * lim
                })
                .collect()
        };
        t.data = Some(v.iter().flat_map(|x| x.to_le_bytes()).collect());
    }
    out
}

#[cfg(feature = "float")]
fn main() {
    let ratio: f32 = env("RATIO", 0.5);
    let seeds: String = env("SEEDS", "0,1,2".to_string());
    let epochs: usize = env("EPOCHS", 60);
    let lr: f64 = env("LR", 2e-2);
    let batch: usize = env("BATCH", 32);
    let distill: f32 = env("DISTILL", 0.0);
    let temp: f32 = env("TEMP", 1.0);
    let shift: u8 = env("SHIFT", 0);
    let steps: usize = env("STEPS", 1);
    let between: usize = env("BETWEEN", 2);
    let wd: f64 = env("WD", 0.0);
    let qat: u8 = env("QAT", 0);
    let qat_epochs: usize = env("QAT_EPOCHS", 0);
    let scratch: u8 = env("SCRATCH", 0);
    let random_select: u8 = env("RANDOM_SELECT", 0);
    let act_select: u8 = env("ACT_SELECT", 0);
    let model: String = env("MODEL", String::new());
    let float = if model.is_empty() {
        prepare(&mote_quantize::tflite::import(FLOAT_TFLITE).unwrap()).unwrap()
    } else {
        prepare(&mote_quantize::tflite::import_file(&model).unwrap()).unwrap()
    };
    let test = test_images();
    let truth: Vec<usize> = TEST_LABELS.iter().map(|&c| usize::from(c)).collect();
    let train = train_images();
    let cal: Vec<Vec<f32>> = train.iter().take(200).cloned().collect();
    let a = prune::analyze(&float);
    let rs: Vec<f32> = match env("RATIOS", String::new()) {
        v if !v.is_empty() => v.split(',').map(|x| x.parse().unwrap()).collect(),
        _ => vec![ratio; a.groups.len()],
    };
    let one_shot = prune::apply(&float, &a, &a.plan(&float, &rs)).unwrap();
    let fa = top1(&predict(&float, &test, 64).unwrap(), &truth);
    let pa = top1(&predict(&one_shot, &test, 64).unwrap(), &truth);
    eprintln!(
        "float {:.2} int8 {:.2}; pruned {ratio} before FT: float {:.2} int8 {:.2}; MACs {} -> {}",
        100.0 * fa,
        100.0 * int8_acc(&float, &cal, &test, &truth),
        100.0 * pa,
        100.0 * int8_acc(&one_shot, &cal, &test, &truth),
        prune::macs(&float),
        prune::macs(&one_shot)
    );
    let inshape = float.tensors[float.inputs[0]].shape.clone();
    let inputs = match shift {
        0 => train.clone(),
        9 => shifted_grid(&train, &inshape),
        _ => shifted(&train, &inshape),
    };
    let views: usize = env("VIEWS", 1);
    let labels: Vec<u8> = (0..inputs.len() / train.len())
        .flat_map(|_| TRAIN_LABELS.iter().copied())
        .collect();
    let teacher = logits(&float, &inputs, 64).unwrap();
    let targets = Targets::Distill {
        labels: &labels,
        teacher: &teacher,
    };
    let mut res = Vec::new();
    for seed in seeds.split(',').map(|s| s.parse::<u64>().unwrap()) {
        let t0 = std::time::Instant::now();
        let fo = FinetuneOptions {
            epochs,
            batch,
            lr,
            seed,
            distill,
            temperature: temp,
            qat_bits: 0,
            weight_decay: wd,
            views,
            keep_zeros: false,
        };
        let mut g = if scratch > 0 {
            let init = reinit(&one_shot, seed);
            finetune(&init, &inputs, &targets, &fo).unwrap().0
        } else if act_select > 0 {
            // Keep the channels with the largest mean activation of their group's producer
            // output over the calibration images (as many as the L1 criterion keeps).
            let dev = mote_quantize::float::default_device();
            let n = cal.len();
            let xb: Vec<f32> = cal.iter().flatten().copied().collect();
            let keep = a
                .plan(&float, &rs)
                .keep
                .iter()
                .zip(&a.groups)
                .map(|(k, gr)| {
                    k.as_ref().map(|k| {
                        let out = float.nodes[gr.producers[0]].outputs[0];
                        let x = burn::tensor::Tensor::<4>::from_data(
                            burn::tensor::TensorData::new(xb.clone(), [n, 8, 8, 1]),
                            &dev,
                        );
                        let y = mote_quantize::fit::finetune::forward(
                            &float,
                            x,
                            n,
                            &Default::default(),
                            out,
                            &dev,
                        )
                        .unwrap();
                        let v = y.into_data().try_into_vec::<f32>().unwrap();
                        let mut score = vec![0f32; gr.channels];
                        for (i, val) in v.iter().enumerate() {
                            score[i % gr.channels] += val.abs();
                        }
                        let mut idx: Vec<usize> = (0..gr.channels).collect();
                        idx.sort_by(|&p, &q| score[q].total_cmp(&score[p]));
                        let mut v = idx[..k.len()].to_vec();
                        v.sort_unstable();
                        v
                    })
                })
                .collect();
            let pg = prune::apply(&float, &a, &prune::PrunePlan { keep }).unwrap();
            eprintln!(
                "activation-selected before FT: float {:.2}",
                100.0 * top1(&predict(&pg, &test, 64).unwrap(), &truth)
            );
            finetune(&pg, &inputs, &targets, &fo).unwrap().0
        } else if random_select > 0 {
            // Random channels kept (as many as the L1 criterion keeps), then fine-tuned.
            let mut st = seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1;
            let keep = a
                .plan(&float, &rs)
                .keep
                .iter()
                .zip(&a.groups)
                .map(|(k, gr)| {
                    k.as_ref().map(|k| {
                        let mut idx: Vec<usize> = (0..gr.channels).collect();
                        for i in (1..idx.len()).rev() {
                            st ^= st << 13;
                            st ^= st >> 7;
                            st ^= st << 17;
                            idx.swap(i, (st % (i as u64 + 1)) as usize);
                        }
                        let mut v = idx[..k.len()].to_vec();
                        v.sort_unstable();
                        v
                    })
                })
                .collect();
            let pg = prune::apply(&float, &a, &prune::PrunePlan { keep }).unwrap();
            finetune(&pg, &inputs, &targets, &fo).unwrap().0
        } else {
            let opts = GradualOptions {
                steps,
                between: FinetuneOptions {
                    epochs: between,
                    ..fo
                },
                last: fo,
            };
            prune_gradually(&float, &rs, &inputs, &targets, &opts)
                .unwrap()
                .0
        };
        let f1 = top1(&predict(&g, &test, 64).unwrap(), &truth);
        let i1 = int8_acc(&g, &cal, &test, &truth);
        let ty: Vec<usize> = TRAIN_LABELS.iter().map(|&c| usize::from(c)).collect();
        let tr = top1(&predict(&g, &train, 64).unwrap(), &ty);
        let mut line = format!(
            "seed {seed}: train {:.2} FT float {:.2} int8 {:.2}",
            100.0 * tr,
            100.0 * f1,
            100.0 * i1
        );
        let mut fin = i1;
        if qat > 0 && qat_epochs > 0 {
            let qo = FinetuneOptions {
                epochs: qat_epochs,
                qat_bits: qat,
                lr: lr * 0.1,
                ..fo
            };
            g = finetune(&g, &inputs, &targets, &qo).unwrap().0;
            let f2 = top1(&predict(&g, &test, 64).unwrap(), &truth);
            fin = int8_acc(&g, &cal, &test, &truth);
            line += &format!("; +QAT float {:.2} int8 {:.2}", 100.0 * f2, 100.0 * fin);
        }
        eprintln!("{line} ({:.1} s)", t0.elapsed().as_secs_f64());
        res.push(fin);
    }
    let mean = res.iter().sum::<f64>() / res.len() as f64;
    let min = res.iter().copied().fold(1.0, f64::min);
    eprintln!(
        "SUMMARY int8 mean {:.2} min {:.2}",
        100.0 * mean,
        100.0 * min
    );
}
