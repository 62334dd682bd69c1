//! Hostile and corrupted `.mote` files: every one must give an `Err` naming what is wrong (or,
//! if it happens to stay valid, run) — never a panic.
//!
//! The mutations recompute the CRC-32 after changing the body, so that they reach the deeper
//! validation (offsets, shapes, parameters) instead of stopping at the checksum.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use mote_quantize::compile::{compile_tflite, compile_with};
use mote_quantize::schedule::ScheduleOptions;
use mote_quantize::write::AlignedBytes;
use mote_runtime::crc32::crc32;
use mote_runtime::format::{Header, InPlace, OpFlags, SectionId, ALIGN};
use mote_runtime::ops::conv::ConvParams;
use mote_runtime::{Error, Interpreter, Model};

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const HEADER: usize = std::mem::size_of::<Header>();
/// Size of an `OpDesc`; its `flags` word is at byte 28.
const OP_DESC: usize = 32;
/// Size of a `TensorDesc`; its arena `offset` is at byte 36.
const TENSOR_DESC: usize = 48;
/// In-place flag words worth trying: each mode, alias of inputs 0..3, the fused ADD epilogue,
/// and invalid ones.
const FLAG_VALUES: [u32; 12] = [
    0,
    1,
    1 | (1 << 8),
    1 | (3 << 8),
    2,
    3,
    1 << 16,
    (1 << 16) | (1 << 17),
    (1 << 16) | 1 | (3 << 8),
    4,
    1 << 17,
    0xFFFF_FFFF,
];

/// Byte position of the descriptor of the first output tensor of the op whose descriptor is at
/// `op` (in a well-formed file), if it is inside the file.
fn op_output(b: &[u8], op: usize) -> Option<usize> {
    let hdr: Header = *bytemuck::from_bytes(&b[..HEADER]);
    let input_count = b[op + 2] as usize;
    let io_start = u32::from_le_bytes(b[op + 4..op + 8].try_into().ok()?) as usize;
    let idx =
        hdr.sections[SectionId::Indices as usize].offset as usize + 4 * (io_start + input_count);
    let t = u32::from_le_bytes(b.get(idx..idx + 4)?.try_into().ok()?) as usize;
    let at = hdr.sections[SectionId::Tensors as usize].offset as usize + TENSOR_DESC * t;
    (at + TENSOR_DESC <= b.len()).then_some(at)
}
/// Byte offset of the section table in the header.
const SECTIONS_AT: usize = 48;

fn fix_crc(bytes: &mut [u8]) {
    if bytes.len() >= HEADER {
        let crc = crc32(&bytes[HEADER..]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Loads, binds and runs `bytes`; returns the error, if any. Panics propagate to the caller.
fn exercise(bytes: &[u8]) -> Result<(), Error> {
    let aligned = AlignedBytes::new(bytes);
    let model = Model::from_bytes(aligned.as_slice())?;
    let mut arena = AlignedBytes::zeroed(model.arena_bytes());
    let mut interp = Interpreter::new(&model, arena.as_mut_slice())?;
    for i in 0..model.input_count() {
        for (k, b) in interp.input_bytes_mut(i)?.iter_mut().enumerate() {
            *b = (k * 7) as u8;
        }
    }
    interp.invoke()?;
    for k in 0..model.output_count() {
        interp.output_bytes(k)?;
    }
    Ok(())
}

fn seed_models() -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<PathBuf> = vec![root.join("assets/digits_cnn_int8.tflite")];
    let shared = root.join("../../shared/models");
    for m in [
        "kws_ref_model.tflite",
        "ad01_int8.tflite",
        "hello_world_int8.tflite",
        "pretrainedResnet_quant.tflite",
    ] {
        paths.push(shared.join(m));
    }
    // A residual block: a CONV_2D with a fused ADD writing over its residual.
    paths.push(root.join("tests/fixtures/ops/net_residual.tflite"));
    // 16x8 (int16 activations): the int16 element-wise, SOFTMAX and MAC kernels.
    for m in [
        "a16_net_residual",
        "a16_net_inception",
        "a16_add_bcast_4d",
        "a16_softmax_3d",
    ] {
        paths.push(root.join(format!("tests/fixtures/ops16/{m}.tflite")));
    }
    // Float32 activations with float32 and float16 weights (`ops::float`).
    paths.push(root.join("assets/digits_cnn_float.tflite"));
    paths.push(root.join("tests/fixtures/float/digits_cnn_f16.tflite"));
    if let Ok(dir) = std::fs::read_dir(root.join("tests/fixtures/ops")) {
        let mut ops: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        ops.sort();
        paths.extend(ops.into_iter().step_by(5));
    }
    let mut seeds: Vec<(String, Vec<u8>)> = paths
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            let compiled = compile_tflite(&bytes).ok()?;
            Some((
                p.file_name()?.to_string_lossy().into_owned(),
                compiled.bytes,
            ))
        })
        .collect();
    // The same residual block as a CONV_2D with a fused ADD (no residual-block op).
    if let Ok(bytes) = std::fs::read(root.join("tests/fixtures/ops/net_residual.tflite")) {
        let graph = mote_quantize::tflite::import(&bytes).expect("import");
        let opts = ScheduleOptions {
            chain: false,
            ..ScheduleOptions::default()
        };
        if let Ok(c) = compile_with(graph, opts) {
            seeds.push(("net_residual (conv+add)".into(), c.bytes));
        }
    }
    // N:M sparse weights (SPARSE_CONV_2D, SPARSE_FULLY_CONNECTED): the digits CNN pruned 2:4
    // and 1:16 in int8.
    #[cfg(feature = "float")]
    for how in [
        mote_quantize::fit::sparse::Sparsity::NM { n: 2, m: 4 },
        mote_quantize::fit::sparse::Sparsity::NM { n: 1, m: 16 },
    ] {
        let bytes = std::fs::read(root.join("assets/digits_cnn_int8.tflite")).expect("digits");
        let mut graph = mote_quantize::tflite::import(&bytes).expect("import");
        mote_quantize::fit::sparse::prune(&mut graph, how);
        let c = mote_quantize::compile::compile(graph).expect("compile sparse digits");
        assert!(
            c.ops
                .iter()
                .any(|o| o.kind == mote_runtime::OpKind::SparseConv2d),
            "the sparse seed has sparse ops"
        );
        seeds.push((format!("digits {how:?}"), c.bytes));
    }
    seeds
}

fn mutate(rng: &mut Rng, good: &[u8]) -> (String, Vec<u8>) {
    let mut b = good.to_vec();
    match rng.below(9) {
        0 => {
            let n = rng.below(b.len());
            b.truncate(n);
            (format!("truncated to {n}"), b)
        }
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = HEADER + rng.below(b.len() - HEADER);
                b[i] ^= 1 << rng.below(8);
            }
            fix_crc(&mut b);
            ("bit flips".into(), b)
        }
        2 => {
            // Overwrite one u32 of a descriptor section with an extreme value.
            let hdr: Header = *bytemuck::from_bytes(&good[..HEADER]);
            let sec = [
                SectionId::Tensors,
                SectionId::Ops,
                SectionId::Indices,
                SectionId::Params,
            ][rng.below(4)];
            let s = hdr.sections[sec as usize];
            if s.len >= 4 {
                let at = s.offset as usize + 4 * rng.below(s.len as usize / 4);
                let v: u32 =
                    [0, 1, 0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 15, 17, 255][rng.below(8)];
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            fix_crc(&mut b);
            (format!("{sec:?} field overwritten"), b)
        }
        3 => {
            // Corrupt the section table or header counts.
            let at = 16 + 4 * rng.below((HEADER - 16) / 4);
            let v = rng.next() as u32 % (good.len() as u32 * 2 + 1);
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            fix_crc(&mut b);
            (format!("header word {at} = {v}"), b)
        }
        4 => {
            // Zero a region.
            let start = HEADER + rng.below(b.len() - HEADER);
            let len = rng.below(64);
            let end = (start + len).min(b.len());
            b[start..end].fill(0);
            fix_crc(&mut b);
            ("zeroed region".into(), b)
        }
        5 => {
            // Random bytes everywhere after the header.
            for x in &mut b[HEADER..] {
                if rng.below(16) == 0 {
                    *x = rng.next() as u8;
                }
            }
            fix_crc(&mut b);
            ("random noise".into(), b)
        }
        6 => {
            // Misalign a section.
            let id = rng.below(7);
            let at = SECTIONS_AT + 8 * id;
            let off = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            b[at..at + 4].copy_from_slice(&(off + 1 + rng.below(ALIGN - 1) as u32).to_le_bytes());
            fix_crc(&mut b);
            (format!("section {id} misaligned"), b)
        }
        8 => {
            // Change an op's in-place flags, and half of the time move its output by a multiple
            // of 16 bytes, so that overlaps each mode must refuse reach validation.
            let hdr: Header = *bytemuck::from_bytes(&good[..HEADER]);
            let ops = hdr.sections[SectionId::Ops as usize];
            let n = ops.len as usize / OP_DESC;
            if n > 0 {
                let at = ops.offset as usize + OP_DESC * rng.below(n);
                let v = FLAG_VALUES[rng.below(FLAG_VALUES.len())];
                b[at + 28..at + 32].copy_from_slice(&v.to_le_bytes());
                if rng.below(2) == 0 {
                    if let Some(t) = op_output(&b, at) {
                        let off = u32::from_le_bytes(b[t + 36..t + 40].try_into().unwrap());
                        let delta = 16 * rng.below(80) as u32;
                        let moved = if rng.below(2) == 0 {
                            off.wrapping_add(delta)
                        } else {
                            off.wrapping_sub(delta)
                        };
                        b[t + 36..t + 40].copy_from_slice(&moved.to_le_bytes());
                    }
                }
            }
            fix_crc(&mut b);
            ("op flags changed".into(), b)
        }
        _ => {
            // Change a tensor's shape (element count no longer matches the op).
            let hdr: Header = *bytemuck::from_bytes(&good[..HEADER]);
            let s = hdr.sections[SectionId::Tensors as usize];
            let n = s.len as usize / 48;
            if n > 0 {
                let t = s.offset as usize + 48 * rng.below(n);
                let d = rng.below(4);
                let v = 1 + rng.below(40) as u32;
                b[t + 4 * d..t + 4 * d + 4].copy_from_slice(&v.to_le_bytes());
                // Keep bytes consistent half of the time so shape checks of ops are reached.
                if rng.below(2) == 0 {
                    let desc: &mote_runtime::format::TensorDesc =
                        bytemuck::from_bytes(&b[t..t + 48]);
                    let elems = desc.elements() as u32;
                    let size = desc.dtype().map_or(1, |d| d.size()) as u32;
                    b[t + 40..t + 44].copy_from_slice(&(elems.wrapping_mul(size)).to_le_bytes());
                }
            }
            fix_crc(&mut b);
            ("shape changed".into(), b)
        }
    }
}

#[test]
fn mutated_models_never_panic() {
    let seeds = seed_models();
    assert!(
        !seeds.is_empty(),
        "no seed models compiled (tests/fixtures or assets missing?)"
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut total = 0;
    let mut rejected = 0;
    for (name, good) in &seeds {
        assert!(
            exercise(good).is_ok(),
            "{name}: the unmutated model must run"
        );
        for _ in 0..120 {
            let (what, bad) = mutate(&mut rng, good);
            let r = catch_unwind(AssertUnwindSafe(|| exercise(&bad)));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    rejected += 1;
                    assert!(!e.to_string().is_empty());
                }
                Err(_) => panic!("{name}: {what}: the runtime panicked"),
            }
            total += 1;
        }
    }
    println!("{total} mutated files, {rejected} rejected with an error, none panicked");
    assert!(total >= 200);
    assert!(rejected * 2 >= total, "most mutations should be caught");
}

fn first_seed() -> Vec<u8> {
    seed_models().into_iter().next().expect("a seed model").1
}

#[test]
fn malformed_input_table() {
    let good = first_seed();
    let err = |b: &[u8]| exercise(b).expect_err("must be refused");

    let e = err(&good[..50]);
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
    println!("truncated:          {e}");

    let mut b = good.clone();
    b[0] = b'X';
    let e = err(&b);
    assert_eq!(e, Error::BadMagic);
    println!("bad magic:          {e}");

    let mut b = good.clone();
    b[4] = 99;
    let e = err(&b);
    assert!(
        matches!(e, Error::UnsupportedVersion { found: 99, .. }),
        "{e}"
    );
    println!("bad version:        {e}");

    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0xFF;
    let e = err(&b);
    assert!(matches!(e, Error::BadChecksum { .. }), "{e}");
    println!("bad checksum:       {e}");

    let mut b = good.clone();
    let hdr: Header = *bytemuck::from_bytes(&good[..HEADER]);
    let t = hdr.sections[SectionId::Tensors as usize].offset as usize;
    b[t + 36..t + 40].copy_from_slice(&0x00FF_FFF0u32.to_le_bytes()); // offset
    fix_crc(&mut b);
    let e = err(&b);
    assert!(matches!(e, Error::OutOfBounds { .. }), "{e}");
    println!("out-of-bounds:      {e}");

    let mut b = good.clone();
    b[SECTIONS_AT..SECTIONS_AT + 4].copy_from_slice(&(hdr.sections[0].offset + 4).to_le_bytes());
    fix_crc(&mut b);
    let e = err(&b);
    assert!(matches!(e, Error::Misaligned { .. }), "{e}");
    println!("misaligned section: {e}");

    // Wrong shapes: the first op's output with batch and channels swapped (same element count and
    // byte length, so only the operator's shape check can catch it).
    let ops = hdr.sections[SectionId::Ops as usize].offset as usize;
    let out = op_output(&good, ops).expect("first op's output descriptor");
    let mut b = good.clone();
    let rank = b[out + 24] as usize; // after the six u32 dims
    assert!(rank >= 2, "first op's output has rank {rank}");
    let (d0, dl) = (get_u32(&b, out), get_u32(&b, out + 4 * (rank - 1)));
    assert_ne!(d0, dl, "swapping equal dims would change nothing");
    set_u32(&mut b, out, dl);
    set_u32(&mut b, out + 4 * (rank - 1), d0);
    fix_crc(&mut b);
    let e = err(&b);
    // The convolution's shape check names the dimension: "batch size (input vs output)".
    assert!(
        matches!(e, Error::ShapeMismatch { .. } | Error::InvalidField { .. }),
        "{e}"
    );
    println!("wrong shapes:       {e}");

    // Unsupported op: a kind number no runtime version defines.
    let mut b = good.clone();
    b[ops..ops + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
    fix_crc(&mut b);
    let e = err(&b);
    assert!(matches!(e, Error::UnsupportedOp { .. }), "{e}");
    println!("unsupported op:     {e}");

    let aligned = AlignedBytes::new(&good);
    let model = Model::from_bytes(aligned.as_slice()).unwrap();
    let mut arena = AlignedBytes::zeroed(model.arena_bytes() - 1);
    let e = Interpreter::new(&model, arena.as_mut_slice())
        .err()
        .expect("too small");
    assert!(matches!(e, Error::ArenaTooSmall { .. }), "{e}");
    println!("arena too small:    {e}");

    let mut arena = AlignedBytes::zeroed(model.arena_bytes());
    let mut interp = Interpreter::new(&model, arena.as_mut_slice()).unwrap();
    let e = interp.set_input_bytes(0, &[1, 2, 3]).unwrap_err();
    assert!(matches!(e, Error::WrongSize { .. }), "{e}");
    println!("wrong input size:   {e}");
    let e = interp.input_mut::<f32>(0).unwrap_err();
    assert!(matches!(e, Error::WrongDType { .. }), "{e}");
    println!("wrong input type:   {e}");
}

/// Finds the first op of `good` whose flags decode to `pred`, returning its descriptor position.
fn find_op(good: &[u8], pred: impl Fn(OpFlags, u16) -> bool) -> Option<usize> {
    let hdr: Header = *bytemuck::from_bytes(&good[..HEADER]);
    let ops = hdr.sections[SectionId::Ops as usize];
    (0..ops.len as usize / OP_DESC)
        .map(|i| ops.offset as usize + OP_DESC * i)
        .find(|&at| {
            let flags = u32::from_le_bytes(good[at + 28..at + 32].try_into().unwrap());
            let kind = u16::from_le_bytes(good[at..at + 2].try_into().unwrap());
            OpFlags::from_u32(flags).is_some_and(|f| pred(f, kind))
        })
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn in_place_modes_allow_exactly_their_overlap() {
    let models: Vec<(String, Vec<u8>)> = seed_models()
        .into_iter()
        .filter(|(n, _)| n.starts_with("kws") || n.starts_with("net_residual"))
        .collect();
    let kws = models.iter().find(|(n, _)| n.starts_with("kws"));
    let residuals: Vec<&(String, Vec<u8>)> = models
        .iter()
        .filter(|(n, _)| n.starts_with("net_residual"))
        .collect();
    let refuse = |b: &[u8], what: &str| {
        let e = exercise(b).expect_err(what);
        println!("{what}: {e}");
    };

    if let Some((_, good)) = kws {
        // A shifted convolution: one aligned step closer to its input is refused...
        let at = find_op(good, |f, _| f.in_place == InPlace::ShiftDown)
            .expect("KWS has a shift-down op");
        let out = op_output(good, at).unwrap();
        let mut b = good.clone();
        set_u32(&mut b, out + 36, get_u32(good, out + 36) + 16);
        fix_crc(&mut b);
        refuse(&b, "shift down 16 bytes too small");
        // ...and so is the same layout flagged as separate, or as shifting the other way.
        for flags in [
            0,
            OpFlags {
                in_place: InPlace::ShiftUp,
                ..Default::default()
            }
            .to_u32(),
        ] {
            let mut b = good.clone();
            set_u32(&mut b, at + 28, flags);
            fix_crc(&mut b);
            refuse(&b, "shifted output without its mode");
        }
        // An alias (RESHAPE over its input) flagged separate overlaps: refused.
        let at = find_op(good, |f, _| matches!(f.in_place, InPlace::Alias(_)))
            .expect("KWS has an alias op");
        let mut b = good.clone();
        set_u32(&mut b, at + 28, 0);
        fix_crc(&mut b);
        refuse(&b, "alias without its mode");
        // An alias of an input index that does not overlap: refused.
        let mut b = good.clone();
        set_u32(
            &mut b,
            at + 28,
            OpFlags {
                in_place: InPlace::Alias(1),
                ..Default::default()
            }
            .to_u32(),
        );
        fix_crc(&mut b);
        refuse(&b, "alias of a missing input");
        // A separate op whose output is moved onto its (larger) input: refused.
        let hdr: Header = *bytemuck::from_bytes(&good[..HEADER]);
        let tensor_at = |t: u32| {
            hdr.sections[SectionId::Tensors as usize].offset as usize + TENSOR_DESC * t as usize
        };
        let first_input = |op: usize| {
            let idx = hdr.sections[SectionId::Indices as usize].offset as usize
                + 4 * get_u32(good, op + 4) as usize;
            tensor_at(get_u32(good, idx))
        };
        let ops = hdr.sections[SectionId::Ops as usize];
        let (out, input) = (0..ops.len as usize / OP_DESC)
            .map(|i| ops.offset as usize + OP_DESC * i)
            .filter(|&op| get_u32(good, op + 28) == 0)
            .map(|op| (op_output(good, op).unwrap(), first_input(op)))
            .find(|&(o, i)| good[i + 26] == 0 && get_u32(good, o + 40) <= get_u32(good, i + 40))
            .expect("a separate op with an input as large as its output");
        let mut b = good.clone();
        set_u32(&mut b, out + 36, get_u32(good, input + 36));
        fix_crc(&mut b);
        refuse(&b, "separate op on its input");
    }
    assert_eq!(residuals.len(), 2, "a residual block and a CONV_2D + ADD");
    for (_, good) in residuals {
        let at = find_op(good, |f, _| f.epilogue_add).expect("a fused CONV_2D + ADD");
        let flags = OpFlags::from_u32(get_u32(good, at + 28)).unwrap();
        // Without the epilogue bit the op has the wrong inputs and params: refused.
        let mut b = good.clone();
        set_u32(
            &mut b,
            at + 28,
            OpFlags {
                epilogue_add: false,
                residual_first: false,
                ..flags
            }
            .to_u32(),
        );
        fix_crc(&mut b);
        refuse(&b, "fused op without its epilogue flag");
        // Aliasing the convolution's input instead of the residual: refused.
        let mut b = good.clone();
        set_u32(
            &mut b,
            at + 28,
            OpFlags {
                in_place: InPlace::Alias(0),
                ..flags
            }
            .to_u32(),
        );
        fix_crc(&mut b);
        refuse(&b, "fused op aliasing its input 0");
        if flags.chain {
            // A residual block with one byte too little scratch for its row window: refused.
            let mut b = good.clone();
            set_u32(&mut b, at + 20, get_u32(good, at + 20) - 1);
            fix_crc(&mut b);
            refuse(&b, "residual block short of scratch");
            // Zero output rows per step: refused.
            let hdr: Header = *bytemuck::from_bytes(&good[..HEADER]);
            let params = hdr.sections[SectionId::Params as usize].offset as usize
                + get_u32(good, at + 8) as usize;
            let band_rows = params + 2 * std::mem::size_of::<ConvParams>() + 12;
            let mut b = good.clone();
            set_u32(&mut b, band_rows, 0);
            fix_crc(&mut b);
            refuse(&b, "residual block with no rows per step");
        }
    }
}
