//! The arena planner end to end: in-place plans compute exactly what one-buffer-per-tensor plans
//! compute, the MLPerf Tiny models fit in well under TFLM's arena, and the plan can be printed,
//! drawn, and emitted as Rust and C source with the arena size as a constant.

use std::path::{Path, PathBuf};
use std::process::Command;

use mote_quantize::compile::{compile_with, Compiled};
use mote_quantize::schedule::ScheduleOptions;
use mote_quantize::write::AlignedBytes;
use mote_runtime::{DType, Interpreter, Model};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_models() -> PathBuf {
    manifest().join("../../shared/models")
}

/// Small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn compile(path: &Path, options: ScheduleOptions) -> Compiled {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let graph = mote_quantize::tflite::import(&bytes).expect("import");
    compile_with(graph, options).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Random bytes for every input of `model` (floats in [-4, 4) for float inputs).
fn random_inputs(model: &Model, rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..model.input_count())
        .map(|i| {
            let d = model.input(i).expect("input");
            match d.dtype() {
                Some(DType::Float32) => (0..d.elements())
                    .flat_map(|_| {
                        let v = (rng.next() % 8000) as f32 / 1000.0 - 4.0;
                        v.to_le_bytes()
                    })
                    .collect(),
                _ => (0..d.bytes).map(|_| rng.next() as u8).collect(),
            }
        })
        .collect()
}

/// Runs `compiled` on `inputs` in an arena of exactly its size, poisoned first.
fn run(compiled: &Compiled, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let aligned = compiled.aligned();
    let model = Model::from_bytes(aligned.as_slice()).expect("validates");
    let mut arena = AlignedBytes::zeroed(model.arena_bytes());
    arena.as_mut_slice().fill(0xA5);
    let mut interp = Interpreter::new(&model, arena.as_mut_slice()).expect("arena");
    for (i, x) in inputs.iter().enumerate() {
        interp.set_input_bytes(i, x).expect("input");
    }
    interp.invoke().expect("invoke");
    (0..model.output_count())
        .map(|k| interp.output_bytes(k).expect("output").to_vec())
        .collect()
}

fn every_model() -> Vec<PathBuf> {
    let mut paths = vec![manifest().join("assets/digits_cnn_int8.tflite")];
    let mut ops: Vec<PathBuf> = std::fs::read_dir(manifest().join("tests/fixtures/ops"))
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tflite"))
        .collect();
    ops.sort();
    paths.extend(ops);
    for m in [
        "kws_ref_model.tflite",
        "pretrainedResnet_quant.tflite",
        "ad01_int8.tflite",
        "hello_world_int8.tflite",
    ] {
        let p = shared_models().join(m);
        if p.exists() {
            paths.push(p);
        }
    }
    paths
}

#[test]
fn in_place_plans_compute_what_plain_plans_compute() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (mut models, mut smaller) = (0, 0);
    for path in every_model() {
        let plain = compile(&path, ScheduleOptions::plain());
        let best = compile(&path, ScheduleOptions::default());
        // Without residual blocks, CONV_2D + ADD fusions take their place.
        let no_chain = compile(
            &path,
            ScheduleOptions {
                chain: false,
                ..ScheduleOptions::default()
            },
        );
        assert!(
            best.arena_bytes <= plain.arena_bytes,
            "{}: {} > {}",
            path.display(),
            best.arena_bytes,
            plain.arena_bytes
        );
        smaller += usize::from(best.arena_bytes < plain.arena_bytes);
        let aligned = plain.aligned();
        let model = Model::from_bytes(aligned.as_slice()).unwrap();
        for _ in 0..3 {
            let x = random_inputs(&model, &mut rng);
            let want = run(&plain, &x);
            assert_eq!(run(&best, &x), want, "{}", path.display());
            assert_eq!(run(&no_chain, &x), want, "{} (no chains)", path.display());
        }
        models += 1;
    }
    println!("{models} models bit-exact in place; {smaller} with a smaller arena");
    assert!(
        models > 50 && smaller > 10,
        "{models} models, {smaller} smaller"
    );
}

/// TFLM's arena on a Cortex-M4 (`../shared/docs/ANCHORS.md`).
const TFLM_M4: [(&str, usize); 4] = [
    ("kws_ref_model.tflite", 22_820),
    ("pretrainedResnet_quant.tflite", 54_996),
    ("ad01_int8.tflite", 2_580),
    ("hello_world_int8.tflite", 772),
];

#[test]
fn shared_models_need_at_most_0_6_of_tflms_arena() {
    for (name, tflm) in TFLM_M4 {
        let path = shared_models().join(name);
        if !path.exists() {
            eprintln!("SKIPPED: {} is absent", path.display());
            continue;
        }
        let c = compile(&path, ScheduleOptions::default());
        let ratio = c.arena_bytes as f64 / tflm as f64;
        println!(
            "{name:<32} mote {:>6}  TFLM (M4) {tflm:>6}  ratio {ratio:.3}",
            c.arena_bytes
        );
        assert!(
            ratio <= 0.6,
            "{name}: {} bytes is {ratio:.3} of TFLM's",
            c.arena_bytes
        );
    }
}

fn mote(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(args)
        .output()
        .expect("run mote");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mote-arena-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn plan_is_printed_and_drawn() {
    let tflite = manifest().join("tests/fixtures/ops/net_residual.tflite");
    let mote_file = tmp("residual.mote");
    let (ok, _, stderr) = mote(&["convert", s(&tflite), "-o", s(&mote_file)]);
    assert!(ok, "{stderr}");
    let bytes = std::fs::read(&mote_file).unwrap();
    let aligned = AlignedBytes::new(&bytes);
    let model = Model::from_bytes(aligned.as_slice()).unwrap();

    let (ok, text, stderr) = mote(&["inspect", s(&mote_file), "--plan"]);
    assert!(ok, "{stderr}");
    assert!(text.starts_with("arena "), "{text}");
    for col in ["offset", "end", "size", "ops", "buffer"] {
        assert!(text.contains(col), "{text}");
    }
    assert!(text.lines().any(|l| l.starts_with('*')), "{text}");
    let arena_tensors = model.tensors().iter().filter(|t| t.storage == 0).count();
    let rows = text.lines().skip(3).count();
    assert!(
        rows >= arena_tensors,
        "{rows} rows for {arena_tensors} tensors:\n{text}"
    );

    let (ok, json, stderr) = mote(&["inspect", s(&mote_file), "--plan", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["arena_bytes"].as_u64(), Some(model.arena_bytes() as u64));
    let rows = v["rows"].as_array().unwrap();
    for r in rows {
        let end = r["offset"].as_u64().unwrap() + r["size"].as_u64().unwrap();
        assert!(end <= model.arena_bytes() as u64);
        assert!(r["first"].as_u64() <= r["last"].as_u64());
    }
    assert!(rows.iter().any(|r| r["at_peak"] == true));

    let svg = tmp("plan.svg");
    let (ok, _, stderr) = mote(&["inspect", s(&tflite), "--plan-svg", s(&svg)]);
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    assert_eq!(
        text.matches("<title>").count(),
        rows.len(),
        "one rectangle per buffer"
    );
}

#[test]
fn emitted_sources_build_with_the_arena_in_a_static() {
    let tflite = manifest().join("tests/fixtures/ops/net_cnn.tflite");
    let (h, rs, mote_file) = (tmp("net_cnn.h"), tmp("net_cnn.rs"), tmp("net_cnn.mote"));
    let (ok, stdout, stderr) = mote(&[
        "convert",
        s(&tflite),
        "-o",
        s(&mote_file),
        "--emit-c",
        s(&h),
        "--emit-rust",
        s(&rs),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("net_cnn.h") && stdout.contains("net_cnn.rs"),
        "{stdout}"
    );
    let bytes = std::fs::read(&mote_file).unwrap();
    let arena = Model::from_bytes(AlignedBytes::new(&bytes).as_slice())
        .unwrap()
        .arena_bytes();
    let want = format!(
        "{} {} {:02x}{:02x}{:02x}{:02x}",
        bytes.len(),
        arena,
        bytes[0],
        bytes[1],
        bytes[2],
        bytes[3]
    );

    // C: the macro sizes a static arena; the array is aligned and holds the file.
    let c_main = tmp("main.c");
    std::fs::write(
        &c_main,
        format!(
            "#include <stdio.h>\n#include <stdint.h>\n#include \"{}\"\n\
             static uint8_t arena[NET_CNN_ARENA_BYTES] __attribute__((aligned(16)));\n\
             int main(void) {{\n\
               if (((uintptr_t)net_cnn_model) % 16 != 0 || sizeof(net_cnn_model) != NET_CNN_MODEL_BYTES) return 1;\n\
               printf(\"%u %u %02x%02x%02x%02x\", (unsigned)sizeof(net_cnn_model), (unsigned)sizeof(arena),\n\
                      net_cnn_model[0], net_cnn_model[1], net_cnn_model[2], net_cnn_model[3]);\n\
               return 0;\n}}\n",
            s(&h)
        ),
    )
    .unwrap();
    let c_bin = tmp("main_c");
    match Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-o", s(&c_bin), s(&c_main)])
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = Command::new(&c_bin).output().unwrap();
            assert!(out.status.success());
            assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        }
        Err(e) => eprintln!("SKIPPED the C build: no cc ({e})"),
    }

    // Rust: the const sizes a static arena; the bytes are aligned and equal the file.
    let rs_main = tmp("main.rs");
    std::fs::write(
        &rs_main,
        format!(
            "mod net_cnn {{ include!({:?}); }}\n\
             static mut ARENA: [u8; net_cnn::ARENA_BYTES] = [0; net_cnn::ARENA_BYTES];\n\
             fn main() {{\n\
               let m = net_cnn::MODEL;\n\
               assert_eq!(m.as_ptr() as usize % 16, 0);\n\
               assert_eq!(m.len(), net_cnn::MODEL_BYTES);\n\
               let arena = unsafe {{ (*std::ptr::addr_of!(ARENA)).len() }};\n\
               print!(\"{{}} {{}} {{:02x}}{{:02x}}{{:02x}}{{:02x}}\", m.len(), arena, m[0], m[1], m[2], m[3]);\n\
             }}\n",
            s(&rs)
        ),
    )
    .unwrap();
    let rs_bin = tmp("main_rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    match Command::new(rustc)
        .args(["--edition", "2021", "-o", s(&rs_bin), s(&rs_main)])
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = Command::new(&rs_bin).output().unwrap();
            assert!(out.status.success());
            assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        }
        Err(e) => eprintln!("SKIPPED the Rust build: no rustc ({e})"),
    }
}

/// Latency of the smallest-arena plan against one buffer per tensor (measured, not asserted):
/// `cargo test --release -p mote-quantize --test arena -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run it by hand"]
fn in_place_latency() {
    for name in ["kws_ref_model", "pretrainedResnet_quant", "ad01_int8"] {
        let path = shared_models().join(format!("{name}.tflite"));
        if !path.exists() {
            continue;
        }
        for (label, opts) in [
            ("one buffer per tensor", ScheduleOptions::plain()),
            ("smallest arena", ScheduleOptions::default()),
        ] {
            let c = compile(&path, opts);
            let aligned = c.aligned();
            let model = Model::from_bytes(aligned.as_slice()).unwrap();
            let mut arena = AlignedBytes::zeroed(model.arena_bytes());
            let mut interp = Interpreter::new(&model, arena.as_mut_slice()).unwrap();
            let runs = 300;
            let mut us: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = std::time::Instant::now();
                    interp.invoke().unwrap();
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            us.sort_by(f64::total_cmp);
            println!(
                "{name:<24} {label:<22} arena {:>6} B  median {:>7.1} us  min {:>7.1} us",
                model.arena_bytes(),
                us[runs / 2],
                us[0]
            );
        }
    }
}
