//! Lowering of RESHAPE and SQUEEZE to `mote_runtime::ops::shape`, plus small helpers shared by
//! the data-movement families (pool, reduce, pad, concat, shape, quantize).
//!
//! RESHAPE / SQUEEZE copy bytes (TFLM copies them too, for any dtype); the new shape is the output
//! tensor's shape, so the optional shape input of RESHAPE is dropped. The runtime kinds are
//! in-place capable: when the planner gives the output the input's bytes, nothing moves.

use mote_runtime::format::OpCost;
use mote_runtime::OpKind;

use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{DataType, Node, Operator, TensorId};

/// `n` as `u32`, saturating.
pub(crate) fn sat32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Bytes read from constants and from the arena when each of `inputs` is read once.
pub(crate) fn read_bytes(ctx: &LowerCtx, inputs: &[TensorId]) -> (u32, u32) {
    let (mut constant, mut arena) = (0usize, 0usize);
    for &id in inputs {
        let t = ctx.tensor(id);
        if t.is_const() {
            constant += t.bytes();
        } else {
            arena += t.bytes();
        }
    }
    (sat32(constant), sat32(arena))
}

/// The quantized integer range of `dtype` (int8, uint8, int16, int32), if it is one.
pub(crate) fn int_range(dtype: DataType) -> Option<(i32, i32)> {
    match dtype {
        DataType::Int8 => Some((i8::MIN as i32, i8::MAX as i32)),
        DataType::UInt8 => Some((0, u8::MAX as i32)),
        DataType::Int16 => Some((i16::MIN as i32, i16::MAX as i32)),
        DataType::Int32 => Some((i32::MIN, i32::MAX)),
        _ => None,
    }
}

/// Per-tensor `(scale, zero_point)` of quantized integer tensor `id`, or an "unsupported" error
/// naming `what` when it is not quantized per tensor with a positive scale and a zero point in
/// its type's range.
pub(crate) fn per_tensor(
    ctx: &LowerCtx,
    node: &Node,
    id: TensorId,
    what: &str,
) -> Result<(f32, i32), CompileError> {
    let t = ctx.tensor(id);
    let (lo, hi) = int_range(t.dtype).ok_or_else(|| {
        ctx.unsupported(
            node,
            format!("{what} is {}, not a quantized integer type", t.dtype),
        )
    })?;
    let q = t
        .quant
        .as_ref()
        .ok_or_else(|| ctx.unsupported(node, format!("{what} is {} but not quantized", t.dtype)))?;
    if !q.is_per_tensor() {
        return Err(ctx.unsupported(node, format!("{what} is quantized per channel")));
    }
    let (scale, zp) = (q.scale(), q.zero_point());
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ctx.invalid(node, format!("{what} has scale {scale}")));
    }
    if zp < lo as i64 || zp > hi as i64 {
        return Err(ctx.invalid(
            node,
            format!("{what} has zero point {zp} outside {}", t.dtype),
        ));
    }
    Ok((scale, zp as i32))
}

/// Integer values of constant int32 or int64 tensor `id` (e.g. axes, paddings).
pub(crate) fn const_ints(
    ctx: &LowerCtx,
    node: &Node,
    id: TensorId,
    what: &str,
    allow_int64: bool,
) -> Result<Vec<i64>, CompileError> {
    let t = ctx.tensor(id);
    let data = t.data.as_ref().ok_or_else(|| {
        ctx.unsupported(
            node,
            format!("{what} is computed at run time (only constants are supported)"),
        )
    })?;
    let values: Vec<i64> = match t.dtype {
        DataType::Int32 => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        DataType::Int64 if allow_int64 => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        other => {
            return Err(ctx.unsupported(
                node,
                format!(
                    "{what} is {other}; only int32{} is supported",
                    if allow_int64 { " or int64" } else { "" }
                ),
            ))
        }
    };
    if values.len() != t.elements() {
        return Err(ctx.invalid(
            node,
            format!(
                "{what} holds {} values, its shape needs {}",
                values.len(),
                t.elements()
            ),
        ));
    }
    Ok(values)
}

/// Lowers a RESHAPE or SQUEEZE node.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let kind = match node.op {
        Operator::Reshape => OpKind::Reshape,
        Operator::Squeeze => OpKind::Squeeze,
        _ => return Err(ctx.invalid(node, "not a RESHAPE or SQUEEZE node")),
    };
    if node.inputs.is_empty() || node.inputs.len() > 2 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 1 or 2 inputs and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    let (i, o) = (ctx.tensor(input), ctx.tensor(output));
    if i.dtype.to_runtime().is_none() {
        return Err(ctx.unsupported(node, format!("{} tensors", i.dtype)));
    }
    if i.dtype != o.dtype {
        return Err(ctx.invalid(
            node,
            format!("input is {} but output is {}", i.dtype, o.dtype),
        ));
    }
    if i.elements() != o.elements() {
        return Err(ctx.invalid(
            node,
            format!(
                "input shape {:?} and output shape {:?} hold different element counts",
                i.shape, o.shape
            ),
        ));
    }
    let (const_bytes_read, arena_bytes_read) = read_bytes(ctx, &[input]);
    Ok(LoweredOp {
        kind,
        inputs: vec![Some(input)],
        outputs: vec![output],
        params: Vec::new(),
        scratch_bytes: 0,
        cost: OpCost {
            macs: 0,
            const_bytes_read,
            arena_bytes_read,
            arena_bytes_written: sat32(ctx.tensor(output).bytes()),
            reserved: 0,
        },
    })
}

/// Test helpers shared by the data-movement families' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::error::CompileError;
    use crate::ir::{DataType, Graph, Node, Operator, Quantization, Tensor};
    use crate::lower::{lower_node, ConstPool, LowerCtx, LoweredOp};

    /// An activation tensor.
    pub(crate) fn act(shape: &[usize], dtype: DataType, quant: Option<(f32, i64)>) -> Tensor {
        Tensor {
            name: String::new(),
            shape: shape.to_vec(),
            dtype,
            quant: quant.map(|(s, z)| Quantization::per_tensor(s, z)),
            data: None,
        }
    }

    /// A constant int32 tensor.
    pub(crate) fn ints(shape: &[usize], v: &[i32]) -> Tensor {
        Tensor {
            name: String::new(),
            shape: shape.to_vec(),
            dtype: DataType::Int32,
            quant: None,
            data: Some(bytemuck::cast_slice(v).to_vec()),
        }
    }

    /// Lowers one node whose inputs are `inputs` and whose output is `output`.
    pub(crate) fn lower_one(
        op: Operator,
        inputs: Vec<Tensor>,
        output: Tensor,
    ) -> Result<(LoweredOp, ConstPool), CompileError> {
        let n = inputs.len();
        let mut tensors = inputs;
        tensors.push(output);
        let mut graph = Graph {
            tensors,
            ..Default::default()
        };
        let node = Node {
            op,
            inputs: (0..n).map(Some).collect(),
            outputs: vec![n],
        };
        let mut consts = ConstPool::default();
        let mut ctx = LowerCtx {
            graph: &mut graph,
            index: 0,
            consts: &mut consts,
            pack_weights: true,
        };
        let op = lower_node(&mut ctx, &node)?;
        Ok((op, consts))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use crate::ir::{DataType, Operator};
    use crate::lower::LoweredOp;

    /// Runs a lowered RESHAPE of a `[2, n/2]` int8 tensor into `[n]` through the runtime, with the
    /// output on the input's arena bytes (`in_place`) or in its own buffer.
    fn run(op: &LoweredOp, input: &[i8], in_place: bool) -> Vec<i8> {
        use crate::write::{AlignedBytes, FileParts};
        use mote_runtime::format::{OpDesc, TensorDesc, NONE};
        let n = input.len() as u32;
        let desc = |shape: [u32; 6], rank: u8, offset: u32| TensorDesc {
            shape,
            rank,
            dtype: 1,
            storage: 0,
            reserved: 0,
            scale: 0.0,
            zero_point: 0,
            offset,
            bytes: n,
            name: NONE,
        };
        let out_offset = if in_place { 0 } else { n.div_ceil(16) * 16 };
        let parts = FileParts {
            tensors: vec![
                desc([2, n / 2, 0, 0, 0, 0], 2, 0),
                desc([n, 0, 0, 0, 0, 0], 1, out_offset),
            ],
            ops: vec![OpDesc {
                kind: op.kind as u16,
                input_count: 1,
                output_count: 1,
                io_start: 0,
                params_offset: 0,
                params_len: op.params.len() as u32,
                scratch_offset: 0,
                scratch_bytes: 0,
                name: NONE,
                flags: if in_place {
                    mote_runtime::format::OpFlags {
                        in_place: mote_runtime::format::InPlace::Alias(0),
                        ..Default::default()
                    }
                    .to_u32()
                } else {
                    0
                },
            }],
            indices: vec![0, 1, 0, 1],
            params: op.params.clone(),
            costs: vec![op.cost],
            input_count: 1,
            output_count: 1,
            io_start: 2,
            arena_bytes: out_offset + n,
            ..Default::default()
        };
        let bytes = AlignedBytes::new(&parts.to_bytes().unwrap());
        let model = mote_runtime::Model::from_bytes(bytes.as_slice()).unwrap();
        let mut arena = AlignedBytes::zeroed(model.arena_bytes());
        let mut interp = mote_runtime::Interpreter::new(&model, arena.as_mut_slice()).unwrap();
        interp.input_mut::<i8>(0).unwrap().copy_from_slice(input);
        interp.invoke().unwrap();
        interp.output::<i8>(0).unwrap().to_vec()
    }

    #[test]
    fn in_place_equals_out_of_place() {
        let (op, _) = lower_one(
            Operator::Reshape,
            vec![act(&[2, 3], DataType::Int8, Some((0.5, 1)))],
            act(&[6], DataType::Int8, Some((0.5, 1))),
        )
        .unwrap();
        let input = [1i8, -2, 3, -4, 5, -6];
        assert_eq!(run(&op, &input, false), input);
        assert_eq!(run(&op, &input, true), input);
    }

    #[test]
    fn reshape_drops_shape_input_and_checks_counts() {
        let (op, _) = lower_one(
            Operator::Reshape,
            vec![
                act(&[1, 4, 4, 8], DataType::Int8, Some((0.1, 3))),
                ints(&[3], &[1, 16, 8]),
            ],
            act(&[1, 16, 8], DataType::Int8, Some((0.1, 3))),
        )
        .unwrap();
        assert_eq!(op.inputs, vec![Some(0)]);
        assert!(op.params.is_empty());
        assert_eq!(op.cost.arena_bytes_written, 128);
        assert!(lower_one(
            Operator::Squeeze,
            vec![act(&[1, 4], DataType::Float32, None)],
            act(&[5], DataType::Float32, None),
        )
        .is_err());
        assert!(lower_one(
            Operator::Squeeze,
            vec![act(&[1, 4], DataType::Float32, None)],
            act(&[4], DataType::Int32, None),
        )
        .is_err());
    }
}

/// Hostile parameters and shapes for the data-movement kinds: the runtime must answer `Ok` or
/// `Err`, never panic, and `invoke` must not panic on whatever validation accepted.
#[cfg(test)]
mod hostile {
    use crate::write::{AlignedBytes, FileParts};
    use mote_runtime::format::{OpCost, OpDesc, TensorDesc, NONE};
    use mote_runtime::OpKind;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        /// Mostly small values, sometimes extreme ones.
        fn val(&mut self) -> u32 {
            match self.next() % 8 {
                0 => self.next(),
                1 => u32::MAX - self.next() % 4,
                2 => 0x8000_0000 - self.next() % 4,
                _ => self.next() % 5,
            }
        }
    }

    fn tensor(r: &mut Lcg, offset: &mut u32) -> TensorDesc {
        let rank = (r.next() % 7) as u8;
        let mut shape = [0u32; 6];
        for d in shape.iter_mut().take(rank as usize) {
            *d = r.next() % 4;
        }
        let dtype = [1u8, 2, 3, 4, 5][(r.next() % 5) as usize];
        let size = [0u32, 1, 1, 2, 4, 4][dtype as usize];
        let bytes = shape[..rank as usize].iter().product::<u32>() * size;
        let t = TensorDesc {
            shape,
            rank,
            dtype,
            storage: 0,
            reserved: 0,
            scale: 0.5,
            zero_point: (r.next() % 256) as i32 - 128,
            offset: *offset,
            bytes,
            name: NONE,
        };
        *offset += bytes.div_ceil(16) * 16;
        t
    }

    #[test]
    fn hostile_params_never_panic() {
        let kinds = [
            OpKind::AveragePool2d,
            OpKind::MaxPool2d,
            OpKind::Mean,
            OpKind::Pad,
            OpKind::Concatenation,
            OpKind::Reshape,
            OpKind::Squeeze,
            OpKind::Quantize,
            OpKind::Dequantize,
        ];
        let mut r = Lcg(42);
        let mut accepted = 0;
        let mut per_kind = [0usize; 9];
        for iter in 0..60_000 {
            let kind = kinds[iter % kinds.len()];
            let n_in = if kind == OpKind::Concatenation {
                1 + r.next() % 3
            } else {
                1
            };
            let mut offset = 0u32;
            let mut tensors: Vec<TensorDesc> =
                (0..=n_in).map(|_| tensor(&mut r, &mut offset)).collect();
            // Often make the shapes agree so that validation gets further.
            if r.next() % 2 == 0 {
                let (first, rest) = tensors.split_at_mut(1);
                for t in rest {
                    t.shape = first[0].shape;
                    t.rank = first[0].rank;
                    t.dtype = if r.next() % 4 == 0 {
                        t.dtype
                    } else {
                        first[0].dtype
                    };
                    let size = [0u32, 1, 1, 2, 4, 4][t.dtype as usize];
                    t.bytes = t.shape[..t.rank as usize].iter().product::<u32>() * size;
                }
                let mut off = 0;
                for t in tensors.iter_mut() {
                    t.offset = off;
                    off += t.bytes.div_ceil(16) * 16;
                }
                offset = off;
            }
            let expected = match kind {
                OpKind::AveragePool2d | OpKind::MaxPool2d => 10,
                OpKind::Mean => 6,
                OpKind::Pad => 13,
                OpKind::Concatenation => 1,
                OpKind::Quantize | OpKind::Dequantize => 5,
                _ => 0,
            };
            let words = if r.next() % 4 == 0 {
                [0usize, 1, 5, 6, 10, 13][(r.next() % 6) as usize]
            } else {
                expected
            };
            let mut p: Vec<u32> = (0..words).map(|_| r.val()).collect();
            // Plausible geometry half of the time, so that validation reaches the kernels.
            if r.next() % 2 == 0 && tensors[0].rank as usize <= 6 {
                let rank = tensors[0].rank as usize;
                let (input, output) = (tensors[0], &mut tensors[n_in as usize]);
                match kind {
                    OpKind::Pad if words == 13 => {
                        p[6 + rank..12].fill(0);
                        p[rank..6].fill(0);
                        output.rank = input.rank;
                        output.shape = input.shape;
                        for k in 0..rank {
                            output.shape[k] = input.shape[k] + p[k] % 3 + p[6 + k] % 3;
                            p[k] %= 3;
                            p[6 + k] %= 3;
                        }
                    }
                    OpKind::AveragePool2d | OpKind::MaxPool2d if words == 10 && rank == 4 => {
                        for v in p.iter_mut().take(6) {
                            *v %= 4;
                        }
                        p[6] = (-128i32 + (r.next() % 100) as i32) as u32;
                        p[7] = (127 - (r.next() % 100) as i32) as u32;
                        p[8] = (-5.0f32).to_bits();
                        p[9] = 5.0f32.to_bits();
                        output.rank = 4;
                        output.dtype = input.dtype;
                        output.shape = input.shape;
                        output.shape[1] = r.next() % 4;
                        output.shape[2] = r.next() % 4;
                    }
                    OpKind::Mean if words == 6 => {
                        p[0] &= (1 << rank) - 1;
                        p[1] = (0..rank)
                            .filter(|k| p[0] & (1 << k) != 0)
                            .map(|k| input.shape[k])
                            .product();
                        p[5] = (p[5] % 63).wrapping_sub(31);
                        output.dtype = input.dtype;
                        output.rank = 1;
                        output.shape = [0; 6];
                        output.shape[0] = (0..rank)
                            .filter(|k| p[0] & (1 << k) == 0)
                            .map(|k| input.shape[k])
                            .product();
                    }
                    OpKind::Quantize | OpKind::Dequantize if words == 5 => {
                        p[4] = (p[4] % 63).wrapping_sub(31);
                        p[3] &= 0x7fff_ffff;
                        output.rank = input.rank;
                        output.shape = input.shape;
                    }
                    _ => {}
                }
                let size = [0u32, 1, 1, 2, 4, 4][output.dtype as usize];
                output.bytes = output.shape[..output.rank as usize].iter().product::<u32>() * size;
                let mut off = 0;
                for t in tensors.iter_mut() {
                    t.offset = off;
                    off += t.bytes.div_ceil(16) * 16;
                }
                offset = off;
            }
            let params: Vec<u8> = p.iter().flat_map(|v| v.to_le_bytes()).collect();
            let mut indices: Vec<u32> = (0..=n_in).collect();
            indices.extend([0, n_in]);
            let parts = FileParts {
                tensors,
                ops: vec![OpDesc {
                    kind: kind as u16,
                    input_count: n_in as u8,
                    output_count: 1,
                    io_start: 0,
                    params_offset: 0,
                    params_len: params.len() as u32,
                    scratch_offset: 0,
                    scratch_bytes: 0,
                    name: NONE,
                    flags: 0,
                }],
                indices,
                params,
                costs: vec![OpCost::default()],
                input_count: 1,
                output_count: 1,
                io_start: n_in + 1,
                arena_bytes: offset,
                ..Default::default()
            };
            let Ok(bytes) = parts.to_bytes() else {
                continue;
            };
            let bytes = AlignedBytes::new(&bytes);
            let Ok(model) = mote_runtime::Model::from_bytes(bytes.as_slice()) else {
                continue;
            };
            accepted += 1;
            per_kind[iter % kinds.len()] += 1;
            let mut arena = AlignedBytes::zeroed(model.arena_bytes());
            for (i, b) in arena.as_mut_slice().iter_mut().enumerate() {
                *b = (i * 37) as u8;
            }
            if let Ok(mut interp) = mote_runtime::Interpreter::new(&model, arena.as_mut_slice()) {
                let _ = interp.invoke();
            }
        }
        assert!(
            accepted > 100 && per_kind.iter().all(|&n| n > 0),
            "too few hostile models passed validation: {per_kind:?}"
        );
    }
}
