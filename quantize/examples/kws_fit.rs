//! Fit experiments on the MLPerf Tiny KWS float model (issue 7's bar: half the flash of mote's
//! int8 model, half of TFLM's arena, top-1 agreement with the float model ≥ 95 %): prune to
//! given channel counts, fine-tune by distillation from the float model on windows of the
//! calibration audio, quantize with per-layer precision plans (MSE observer + bias correction,
//! mote's KWS recipe), and report flash / arena exactly as `mote inspect` does, with the
//! agreement on a calibration-side validation set and on the held-out sets of
//! `tests/fidelity_table.rs` (H1: windows every 100 ms of the last 5 s of speech + "marvin";
//! H2: every 20 ms; H3: 4 + 8 perturbed copies with ±10 % speed).
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --profile test -p mote-quantize --example kws_fit -- \
//!     counts=40,40,40,40,40 plans=8888888888,8484848488 epochs=6
//! ```
//!
//! Settings (`key=value`): `counts` (channels kept per prunable group, in `prune::analyze`
//! order; `;`-separated lists run one after the other) or `ratio`; `plans` (comma separated;
//! one digit per weight layer in node order — conv, dw, pw, dw, pw, dw, pw, dw, pw, fc —
//! `8` = int8, `4` = int4 weights, `a` = int16 activations with int8 weights); `epochs`, `lr`,
//! `temp`, `qat` (fake-quantized weight bits during fine-tuning), `hop` (distillation window
//! hop in samples, default 1600 = 100 ms), `copies` (augmented copies of the distillation
//! audio, default 8), `speed` (speed perturbation of those copies), `seed`, `steps` (gradual
//! pruning), `select=ablate` (channels chosen by `fit::recover::ablation_scores` on the
//! calibration windows and those of `seldata=A.wav,...` every `selhop` samples), `removed=FILE`
//! (lines `G c1 c2 ...`: channels removed from group G), `ft=E` (E epochs of distillation on
//! top of `comp`), a plan ending in `g` (int4 weights rounded by GPTQ), `comp=1` (one-shot
//! pruning with the removed channels' mean
//! activations folded into the next layer's bias, no fine-tuning), `lsq=1` (one-shot pruning
//! with every pointwise conv / FC refitted by ridge least squares to the float model's
//! pre-activations on the distillation windows (`hop`, `copies`, `speed`), `lambda` = ridge towards the float weights, `lsqfc=0` leaves
//! the FC's weights alone, `lsqft=E` adds E epochs of distillation (default 0)), `sizes=1` (only flash / arena of every structure × plan, no fine-tuning), `held=0`
//! (do not score on the held-out sets: selection on the validation set only).
//!
//! More audio: `extra=A.wav,B.wav` adds the windows of these files (any sample rate; e.g.
//! text-to-speech keywords from `tools/tts_keywords.py`) and of `extra_copies` augmented
//! copies (default 2) to the distillation set; `evalextra=C.wav,...` scores every candidate on
//! their windows too (sets `extra0`, `extra1`, ...). `strip=1` compiles without tensor names
//! (the int8 reference whose half is the flash budget too).
//!
//! Teacher-guided input synthesis (`mote_quantize::fit::synth`): `synth=N` adds N inputs per
//! class, synthesized from the distillation windows, to the distillation set (`synth_steps`,
//! `synth_lr`, `synth_l2`, `synth_jitter`, `synth_seed`, `synth_repeat` set its options). In the
//! recipe-selection mode (`split` below 5) the validation audio also yields a held-apart
//! synthetic set `syn` (`synval=N` per class, default 4, default synthesis options, seed 7),
//! the only calibration-side inputs on which the float model hears keywords.

#[cfg(not(feature = "float"))]
fn main() {
    eprintln!("needs the `float` feature");
}

#[cfg(feature = "float")]
mod run {
    use std::path::PathBuf;

    use mote_quantize::calibrate::ObserverKind;
    use mote_quantize::fidelity::argmax;
    use mote_quantize::fit::finetune::{predict, FinetuneOptions};
    use mote_quantize::fit::layerwise::ratios_of;
    use mote_quantize::fit::prune;
    use mote_quantize::fit::recover;
    use mote_quantize::fit::search::{
        calibrate_ranges_with, measure, run_quantized, FitData, FitOptions, Tuner,
    };
    use mote_quantize::float::{default_device, prepare, FloatExecutor};
    use mote_quantize::frontend::{
        kws_windows, kws_windows_augmented, read_wav_pcm16, AudioAugment,
    };
    use mote_quantize::ir::{Graph, Operator};
    use mote_quantize::ptq::Precision;

    /// `key=value` from the command line (keys case-insensitive), else `d`.
    fn arg(k: &str) -> Option<String> {
        std::env::args().skip(1).find_map(|a| {
            let (key, v) = a.split_once('=')?;
            key.eq_ignore_ascii_case(k).then(|| v.to_string())
        })
    }

    fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
        arg(k).and_then(|v| v.parse().ok()).unwrap_or(d)
    }

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

    fn is_weighted(op: &Operator) -> bool {
        matches!(
            op,
            Operator::Conv2d(_) | Operator::DepthwiseConv2d(_) | Operator::FullyConnected { .. }
        )
    }

    /// Per-node precisions from a plan string (one char per weight layer in node order).
    fn per_node(g: &Graph, plan: &str) -> Vec<Precision> {
        let mut chars = plan.chars();
        g.nodes
            .iter()
            .map(|n| {
                if !is_weighted(&n.op) {
                    return Precision::Int8;
                }
                match chars.next() {
                    Some('4') => Precision::Int4Weights,
                    Some('a') => Precision::A16W8,
                    _ => Precision::Int8,
                }
            })
            .collect()
    }

    fn agree(outs: &[Vec<f32>], truth: &[usize]) -> (usize, usize) {
        let ok = outs
            .iter()
            .zip(truth)
            .filter(|(o, t)| argmax(o) == **t)
            .count();
        (ok, truth.len())
    }

    fn pct((a, n): (usize, usize)) -> String {
        format!("{a}/{n} {:.2}%", 100.0 * a as f64 / n.max(1) as f64)
    }

    struct Set {
        name: &'static str,
        x: Vec<Vec<f32>>,
        truth: Vec<usize>,
        probs: Vec<Vec<f32>>,
    }

    /// Mean KL(float ‖ candidate) of the output probabilities (the model ends in a softmax;
    /// the candidate's are clamped at 1/512, below int8's step).
    fn kl(p: &[Vec<f32>], q: &[Vec<f32>]) -> f64 {
        let s: f64 = p
            .iter()
            .zip(q)
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .filter(|(x, _)| **x > 0.0)
                    .map(|(&x, &y)| {
                        f64::from(x) * (f64::from(x) / f64::from(y.max(1.0 / 512.0))).ln()
                    })
                    .sum::<f64>()
            })
            .sum();
        s / p.len().max(1) as f64
    }

    pub fn main() {
        let t0 = std::time::Instant::now();
        let g = mote_quantize::tflite::import_file(
            shared().join("models/kws_ref_model_float32.tflite"),
        )
        .unwrap();
        let float = prepare(&g).unwrap();
        let speech = wav("speech_10s_16k.wav");
        let marvin = wav("marvin_1s_16k.wav");
        let (cal_audio, held_audio) = speech.split_at(5 * 16000);
        let aug = AudioAugment::default();
        // `split` (seconds, default 5 = no split): the recipe-selection mode. Calibration and
        // distillation see only the first `split` s of the calibration audio; validation is
        // the rest of it (windows every 20 ms, plus 4 copies perturbed with ±10 % speed), audio
        // the model never saw, like the held-out sets' but taken from the calibration side.
        let split: f32 = env("split", 5.0);
        let cut = ((split * 16000.0) as usize).min(cal_audio.len());
        let fit_audio = &cal_audio[..cut];
        // Ranges and bias correction: mote's KWS recipe (tests/fidelity_table.rs).
        let cal = kws_windows_augmented(fit_audio, 1600, 8, &aug, 3);
        // Distillation windows.
        let hop: usize = env("hop", 1600);
        let copies: usize = env("copies", 8);
        let speed: f32 = env("speed", 0.0);
        let mut distill =
            kws_windows_augmented(fit_audio, hop, copies, &AudioAugment { speed, ..aug }, 3);
        // `extra=A.wav,B.wav`: more distillation audio (any sample rate, resampled to 16 kHz),
        // e.g. text-to-speech keywords from `tools/data/tts_keywords.py`; `extra_copies`
        // augmented copies of each (default 2).
        if let Some(list) = arg("extra") {
            for path in list.split(',') {
                let (a, rate) = read_wav_pcm16(&std::fs::read(path).unwrap()).unwrap();
                let a = mote_quantize::frontend::resample(&a, rate as usize, 16000);
                let w = kws_windows_augmented(
                    &a,
                    env("extrahop", hop),
                    env("extra_copies", 2),
                    &aug,
                    11,
                );
                eprintln!("extra distillation audio {path}: {} windows", w.len());
                distill.extend(w);
            }
        }
        let val_aug = AudioAugment { speed: 0.1, ..aug };
        let mut val: Vec<Vec<f32>> = Vec::new();
        if cut < cal_audio.len() {
            // The validation windows start in the validation audio: the last second of the
            // fitting audio is their left context only when `ctx=1`.
            let from = if env("ctx", 0) == 1 {
                cut.saturating_sub(16000)
            } else {
                cut
            };
            let va = &cal_audio[from..];
            val.extend(kws_windows(va, 320));
            for a in mote_quantize::frontend::augment_audio(va, 4, &val_aug, 500) {
                val.extend(kws_windows(&a, 1600));
            }
        }
        let held_aug = AudioAugment { speed: 0.1, ..aug };
        let with_marvin = |mut v: Vec<Vec<f32>>, m: Vec<Vec<f32>>| {
            v.extend(m);
            v
        };
        let synval: usize = env("synval", 4);
        let syn = if !val.is_empty() && synval > 0 {
            let s = mote_quantize::fit::synth::synthesize(
                &float,
                &val,
                &mote_quantize::fit::synth::SynthOptions {
                    per_class: synval,
                    seed: 7,
                    ..Default::default()
                },
            )
            .unwrap();
            eprintln!(
                "held-apart synthetic set: reached per class {:?}",
                s.reached
            );
            s.samples
        } else {
            Vec::new()
        };
        let mut sets = vec![("val", val)];
        // `evalextra=A.wav`: another scored set (e.g. held-apart text-to-speech keywords).
        for (i, path) in arg("evalextra")
            .iter()
            .flat_map(|l| l.split(','))
            .enumerate()
        {
            let (a, rate) = read_wav_pcm16(&std::fs::read(path).unwrap()).unwrap();
            let a = mote_quantize::frontend::resample(&a, rate as usize, 16000);
            let name: &'static str = Box::leak(format!("extra{i}").into_boxed_str());
            sets.push((name, kws_windows(&a, 1600)));
        }
        if !syn.is_empty() {
            sets.push(("syn", syn));
        }
        if env("held", 1) == 1 {
            sets.push((
                "H1",
                with_marvin(kws_windows(held_audio, 1600), kws_windows(&marvin, 16000)),
            ));
            sets.push((
                "H2",
                with_marvin(kws_windows(held_audio, 320), kws_windows(&marvin, 16000)),
            ));
            sets.push((
                "H3",
                with_marvin(
                    kws_windows_augmented(held_audio, 1600, 4, &held_aug, 1000),
                    kws_windows_augmented(&marvin, 16000, 8, &held_aug, 1001),
                ),
            ));
        }
        let sets: Vec<Set> = sets
            .into_iter()
            .map(|(name, x)| {
                let probs = predict(&float, &x, 64).unwrap();
                let truth = probs.iter().map(|o| argmax(o)).collect();
                Set {
                    name,
                    x,
                    truth,
                    probs,
                }
            })
            .collect();
        eprintln!(
            "cal {} windows, distill {} windows (hop {hop}, {copies} copies, speed {speed}); {}",
            cal.len(),
            distill.len(),
            sets.iter()
                .map(|s| format!("{} {}", s.name, s.x.len()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // The float model's classes on each set (and on the distillation windows).
        let hist = |t: &[usize]| {
            let mut h = [0usize; 12];
            for &c in t {
                h[c.min(11)] += 1;
            }
            h
        };
        let dt: Vec<usize> = predict(&float, &distill, 64)
            .unwrap()
            .iter()
            .map(|o| argmax(o))
            .collect();
        eprintln!("float top-1 classes: distill {:?}", hist(&dt));
        for s in &sets {
            eprintln!("float top-1 classes: {} {:?}", s.name, hist(&s.truth));
        }
        let target = mote_quantize::bench::target_by_id("stm32l4r5").unwrap();
        let r0 = calibrate_ranges_with(&float, &cal, ObserverKind::Mse).unwrap();
        // `strip=1`: compile without tensor names (the int8 reference too).
        let strip = |mut g: Graph| {
            if env("strip", 0) == 1 {
                g.tensors.iter_mut().for_each(|t| t.name.clear());
            }
            g
        };
        let c0 = mote_quantize::compile::compile(strip(
            mote_quantize::ptq::quantize_int8(&float, &r0).unwrap(),
        ))
        .unwrap();
        let (fb, rb) = (c0.bytes.len() / 2, 24_279 / 2);
        eprintln!(
            "int8 unpruned {} bytes flash, {} arena; budgets flash {fb}, arena {rb}",
            c0.bytes.len(),
            c0.arena_bytes
        );
        let a = prune::analyze(&float);
        let prunable = a.prunable();
        // The channel-selection windows of `select=ablate`: the calibration windows and those
        // of `seldata=A.wav,...` (any sample rate).
        let mut sel = cal.clone();
        for path in arg("seldata").iter().flat_map(|l| l.split(',')) {
            let (x, rate) = read_wav_pcm16(&std::fs::read(path).unwrap()).unwrap();
            let x = mote_quantize::frontend::resample(&x, rate as usize, 16000);
            sel.extend(kws_windows(&x, env("selhop", 1600)));
        }
        let structures: Vec<Vec<usize>> = match arg("counts") {
            Some(s) => s
                .split(';')
                .map(|c| c.split(',').map(|x| x.trim().parse().unwrap()).collect())
                .collect(),
            None => {
                let r: f32 = env("ratio", 0.375);
                vec![prunable
                    .iter()
                    .map(|&g| prune::kept_channels(a.groups[g].channels, r))
                    .collect()]
            }
        };
        let plans: Vec<String> = arg("plans")
            .unwrap_or_else(|| "8888888888".into())
            .split(',')
            .map(str::to_string)
            .collect();
        let mut opts = FitOptions {
            shift_augment: false,
            steps: env("steps", 1),
            ..FitOptions::default()
        };
        opts.finetune = FinetuneOptions {
            epochs: env("epochs", 6),
            lr: env("lr", opts.finetune.lr),
            temperature: env("temp", opts.finetune.temperature),
            qat_bits: env("qat", 0),
            seed: env("seed", 0),
            ..opts.finetune
        };
        opts.synth = mote_quantize::fit::synth::SynthOptions {
            per_class: env("synth", 0),
            steps: env("synth_steps", opts.synth.steps),
            lr: env("synth_lr", opts.synth.lr),
            l2: env("synth_l2", opts.synth.l2),
            jitter: env("synth_jitter", opts.synth.jitter),
            seed: env("synth_seed", opts.synth.seed),
            repeat: env("synth_repeat", opts.synth.repeat),
        };
        let sizes_only = env("sizes", 0) == 1;
        let data = FitData {
            calibration: distill,
            ..FitData::default()
        };
        let t1 = std::time::Instant::now();
        let tuner = (!sizes_only).then(|| Tuner::new(&float, &data, &opts).unwrap());
        if let Some(t) = &tuner {
            eprintln!(
                "synthesized for distillation, per class: {:?} ({:.1} s incl. teacher logits)",
                t.synthesized(),
                t1.elapsed().as_secs_f64()
            );
        }
        // The synthesized distillation inputs (after the calibration windows): how well the
        // pruned model learnt them.
        let n_syn = tuner
            .as_ref()
            .map_or(0, |t| t.synthesized().iter().sum::<usize>());
        let mut sets = sets;
        if n_syn > 0 {
            let t = tuner.as_ref().unwrap();
            let x = t.inputs()[t.inputs().len() - n_syn..].to_vec();
            let probs = predict(&float, &x, 64).unwrap();
            let truth = probs.iter().map(|o| argmax(o)).collect();
            sets.insert(
                0,
                Set {
                    name: "synfit",
                    x,
                    truth,
                    probs,
                },
            );
        }
        for counts in &structures {
            let mut full: Vec<usize> = a.groups.iter().map(|gr| gr.channels).collect();
            for (&gi, &k) in prunable.iter().zip(counts) {
                full[gi] = k;
            }
            let ratios = ratios_of(&a, &full);
            let t1 = std::time::Instant::now();
            // `select=ablate`: channels chosen by ablation (`fit::recover::ablation_scores`)
            // on the calibration windows plus those of `seldata=A.wav,...` (hop `selhop`),
            // instead of by weight norm.
            // `removed=FILE`: lines `G c1 c2 ...`, the channels removed from group G (e.g. an
            // earlier ablation's choice, from its log).
            let plan_for = || {
                if let Some(path) = arg("removed") {
                    let text = std::fs::read_to_string(path).unwrap();
                    let mut keep: Vec<Option<Vec<usize>>> = vec![None; a.groups.len()];
                    for line in text.lines() {
                        let v: Vec<usize> = line
                            .split_whitespace()
                            .map(|x| x.parse().unwrap())
                            .collect();
                        if let Some((&gi, rm)) = v.split_first() {
                            keep[gi] = Some(
                                (0..a.groups[gi].channels)
                                    .filter(|c| !rm.contains(c))
                                    .collect(),
                            );
                        }
                    }
                    prune::PrunePlan { keep }
                } else if arg("select").as_deref() == Some("ablate") {
                    let means = recover::channel_means(&float, &a, &sel).unwrap();
                    let scores = recover::ablation_scores(&float, &a, &sel, &means).unwrap();
                    for (gi, sc) in scores.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
                        eprintln!("ablation scores, group {gi}: {sc:?}");
                    }
                    a.plan_scored(&ratios, &scores)
                } else {
                    a.plan(&float, &ratios)
                }
            };
            // `ft=E`: E epochs of distillation on top of a one-shot pruning (the float
            // model's outputs on the distillation windows as targets).
            let distill_on_top = |p: Graph, e: usize| {
                if e == 0 {
                    return p;
                }
                let teacher = predict(&float, &data.calibration, 64).unwrap();
                let fo = FinetuneOptions {
                    epochs: e,
                    ..opts.finetune
                };
                mote_quantize::fit::finetune::finetune(
                    &p,
                    &data.calibration,
                    &mote_quantize::fit::finetune::Targets::Teacher(&teacher),
                    &fo,
                )
                .unwrap()
                .0
            };
            let pf = if env("comp", 0) == 1 {
                // One-shot pruning with bias compensation (`ft` epochs of distillation on top).
                let plan = plan_for();
                let mut p = prune::apply(&float, &a, &plan).unwrap();
                let means = recover::channel_means(&float, &a, &cal).unwrap();
                recover::compensate(&float, &mut p, &a, &plan, &means);
                distill_on_top(p, env("ft", 0))
            } else if env("lsq", 0) == 1 {
                // One-shot pruning with feature reconstruction (ridge least squares per
                // pointwise conv / FC against the float model's pre-activations).
                let plan = plan_for();
                let mut p = prune::apply(&float, &a, &plan).unwrap();
                recover::reconstruct(
                    &float,
                    &mut p,
                    &a,
                    &plan,
                    &data.calibration,
                    env("lambda", 1e-3),
                    env("lsqfc", 1) == 1,
                )
                .unwrap();
                // `lsqft=E`: E epochs of distillation on top.
                distill_on_top(p, env("lsqft", 0))
            } else {
                match &tuner {
                    Some(t) => t.prune_and_tune(&float, &ratios).unwrap().0,
                    None => prune::apply(&float, &a, &a.plan(&float, &ratios)).unwrap(),
                }
            };
            let mut line = format!(
                "counts {counts:?} ({:.1} s tune)",
                t1.elapsed().as_secs_f64()
            );
            if !sizes_only {
                for s in &sets {
                    let o = predict(&pf, &s.x, 64).unwrap();
                    let pairs: Vec<String> = o
                        .iter()
                        .zip(&s.truth)
                        .zip(&s.probs)
                        .filter(|((a, t), _)| argmax(a) != **t)
                        .map(|((a, t), p)| {
                            let m = p.iter().copied().fold(f32::MIN, f32::max);
                            let second = p
                                .iter()
                                .copied()
                                .filter(|&v| v < m)
                                .fold(f32::MIN, f32::max);
                            format!("({t}->{} teacher {:.2}/{:.2})", argmax(a), m, second)
                        })
                        .collect();
                    if pairs.len() <= 30 {
                        eprintln!("  {} disagreements (float, pruned): {pairs:?}", s.name);
                    }
                    line += &format!(
                        " | float {} {} kl {:.4}",
                        s.name,
                        pct(agree(&o, &s.truth)),
                        kl(&s.probs, &o)
                    );
                }
            }
            println!("{line}");
            // `qcal=all`: ranges, GPTQ and bias correction on the distillation windows (with
            // `extra=` audio) instead of the calibration windows.
            let qcal = if arg("qcal").as_deref() == Some("all") {
                &data.calibration
            } else {
                &cal
            };
            let ranges = calibrate_ranges_with(&pf, qcal, ObserverKind::Mse).unwrap();
            for plan in &plans {
                // A plan ending in `g`: int4 weights rounded by GPTQ on the calibration
                // windows.
                let (digits, gptq) = match plan.strip_suffix('g') {
                    Some(d) => (d, true),
                    None => (plan.as_str(), false),
                };
                let pn = per_node(&pf, digits);
                let pq = if gptq {
                    let wrapped: Vec<Vec<Vec<f32>>> =
                        qcal.iter().map(|s| vec![s.clone()]).collect();
                    mote_quantize::ptq::gptq::gptq_int4(&pf, &pn, &wrapped).unwrap()
                } else {
                    pf.clone()
                };
                let mut qg = strip(mote_quantize::ptq::quantize_mixed(&pq, &ranges, &pn).unwrap());
                let mut c = mote_quantize::compile::compile(qg.clone()).unwrap();
                if !sizes_only {
                    let exec = FloatExecutor::new(&pf, default_device());
                    let wrapped: Vec<Vec<Vec<f32>>> =
                        qcal.iter().map(|s| vec![s.clone()]).collect();
                    qg = mote_quantize::pipeline::correct_biases(&exec, &qg, &c, &wrapped).unwrap();
                    c = mote_quantize::compile::compile(qg.clone()).unwrap();
                }
                let m = measure(&c, target).unwrap();
                let ok = m.flash <= fb && m.arena <= rb;
                let mut line = format!(
                    "  plan {plan}: flash {} arena {} {}",
                    m.flash,
                    m.arena,
                    if ok { "FITS" } else { "over" }
                );
                if !sizes_only {
                    for s in &sets {
                        let o = run_quantized(&qg, &c, &s.x).unwrap();
                        line += &format!(
                            " | {} {} kl {:.4}",
                            s.name,
                            pct(agree(&o, &s.truth)),
                            kl(&s.probs, &o)
                        );
                    }
                }
                println!("{line}");
            }
        }
        eprintln!("({:.1} s)", t0.elapsed().as_secs_f64());
    }
}

#[cfg(feature = "float")]
fn main() {
    run::main();
}
