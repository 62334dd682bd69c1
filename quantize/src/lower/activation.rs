//! Lowering of RELU, RELU6, LOGISTIC and TANH (int8) to `mote_runtime::ops::activation`.
//!
//! Parameters are computed as TFLM's `Prepare` does:
//! - RELU (`CalculateReluOpData`): multiplier of `in_scale / out_scale` (double),
//!   clamp `[max(-128, out_zp + round(0 / out_scale)), 127]`.
//! - RELU6 (`Relu6Prepare`): `zero = in_zp`, `six = FloatToQuantizedType<int8>(6, in_scale, in_zp)`
//!   (TFLM uses the input quantization only).
//! - LOGISTIC / TANH (`CalculateArithmeticOpDataLogistic`, tanh `CalculateArithmeticOpData`):
//!   `frexp(in_scale · 2^27)` gives the Q31 `input_multiplier` and `input_left_shift`,
//!   `input_range_radius = CalculateInputRadius(4, input_left_shift, 31)`. The output
//!   quantization is fixed: logistic scale 1/256 zero point −128, tanh scale 1/128 zero point 0.

use mote_runtime::format::OpCost;
use mote_runtime::ops::activation::{Relu6Params, ReluParams, SigmoidParams};
use mote_runtime::OpKind;

use super::arith::{input_bytes, int8_per_tensor, sat_u32};
use super::quant_math::{frexp, quantize_multiplier};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Node, Operator};

/// Lowers a RELU, RELU6, LOGISTIC or TANH node.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let kind = match &node.op {
        Operator::Relu => OpKind::Relu,
        Operator::Relu6 => OpKind::Relu6,
        Operator::Logistic => OpKind::Logistic,
        Operator::Tanh => OpKind::Tanh,
        _ => return Err(ctx.invalid(node, "not a RELU, RELU6, LOGISTIC or TANH node")),
    };
    if node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 1 input and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    let (in_scale, in_zp) = int8_per_tensor(ctx, node, input, "the input")?;
    let (out_scale, out_zp) = int8_per_tensor(ctx, node, output, "the output")?;
    if ctx.tensor(input).shape != ctx.tensor(output).shape {
        return Err(ctx.invalid(node, "output shape differs from the input shape"));
    }

    let params = match kind {
        OpKind::Relu => {
            let real = f64::from(in_scale) / f64::from(out_scale);
            let (output_multiplier, output_shift) = quantize_multiplier(real);
            if !(-31..=30).contains(&output_shift) {
                return Err(ctx.unsupported(
                    node,
                    format!("input/output scale ratio {real} is out of range"),
                ));
            }
            // roundf(0.0f / out_scale) is 0.
            let p = ReluParams {
                input_offset: in_zp,
                output_offset: out_zp,
                output_multiplier,
                output_shift,
                activation_min: out_zp.max(-128),
                activation_max: 127,
            };
            bytemuck::bytes_of(&p).to_vec()
        }
        OpKind::Relu6 => {
            // FloatToQuantizedType<int8_t>(6.0f, scale, zp): round(6.0f / scale) + zp, clamped.
            let q = (6.0f32 / in_scale).round();
            if !q.is_finite() || q.abs() > 1e9 {
                return Err(ctx.unsupported(node, format!("input scale {in_scale} is too small")));
            }
            let six = (q as i32 + in_zp).clamp(-128, 127);
            let p = Relu6Params { zero: in_zp, six };
            bytemuck::bytes_of(&p).to_vec()
        }
        _ => {
            let (want_scale, want_zp, name) = if kind == OpKind::Logistic {
                (1.0f32 / 256.0, -128, "LOGISTIC")
            } else {
                (1.0f32 / 128.0, 0, "TANH")
            };
            if out_scale != want_scale || out_zp != want_zp {
                return Err(ctx.unsupported(
                    node,
                    format!(
                        "int8 {name} output quantization must be scale {want_scale} zero point \
                         {want_zp}, got scale {out_scale} zero point {out_zp}"
                    ),
                ));
            }
            const INPUT_INTEGER_BITS: i32 = 4;
            let real = f64::from(in_scale) * f64::from(1u32 << (31 - INPUT_INTEGER_BITS));
            let (q, input_left_shift) = frexp(real);
            let m = (q * (1u64 << 31) as f64).round();
            if !(0..=31).contains(&input_left_shift) || m >= 2147483648.0 {
                return Err(ctx.unsupported(
                    node,
                    format!("input scale {in_scale} is out of the supported range"),
                ));
            }
            // CalculateInputRadius(4, input_left_shift, 31).
            let radius = (f64::from((1i32 << INPUT_INTEGER_BITS) - 1)
                * (1u64 << (31 - INPUT_INTEGER_BITS)) as f64
                / (1u64 << input_left_shift) as f64)
                .floor();
            let p = SigmoidParams {
                input_zero_point: in_zp,
                input_range_radius: radius as i32,
                input_multiplier: m as i32,
                input_left_shift,
            };
            bytemuck::bytes_of(&p).to_vec()
        }
    };

    let (const_bytes_read, arena_bytes_read) = input_bytes(ctx, &[input]);
    Ok(LoweredOp {
        kind,
        inputs: vec![Some(input)],
        outputs: vec![output],
        params,
        scratch_bytes: 0,
        cost: OpCost {
            macs: ctx.tensor(output).elements() as u64,
            const_bytes_read,
            arena_bytes_read,
            arena_bytes_written: sat_u32(ctx.tensor(output).bytes()),
            reserved: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DataType, Graph, Quantization, Tensor};
    use crate::lower::ConstPool;

    fn t(shape: &[usize], scale: f32, zp: i64) -> Tensor {
        Tensor {
            name: String::new(),
            shape: shape.to_vec(),
            dtype: DataType::Int8,
            quant: Some(Quantization::per_tensor(scale, zp)),
            data: None,
        }
    }

    fn lower_one(op: Operator, i: Tensor, o: Tensor) -> Result<LoweredOp, CompileError> {
        let mut graph = Graph {
            tensors: vec![i, o],
            ..Default::default()
        };
        let node = Node {
            op,
            inputs: vec![Some(0)],
            outputs: vec![1],
        };
        let mut consts = ConstPool::default();
        let mut ctx = LowerCtx {
            graph: &mut graph,
            index: 0,
            consts: &mut consts,
            pack_weights: true,
        };
        lower(&mut ctx, &node)
    }

    #[test]
    fn relu_and_relu6() {
        let op = lower_one(Operator::Relu, t(&[4], 0.5, -10), t(&[4], 0.25, -128)).unwrap();
        let p: ReluParams = *bytemuck::from_bytes(&op.params);
        assert_eq!((p.output_multiplier, p.output_shift), (1 << 30, 2));
        assert_eq!((p.activation_min, p.activation_max), (-128, 127));
        assert_eq!(p.input_offset, -10);

        let op = lower_one(Operator::Relu6, t(&[4], 0.05, -3), t(&[4], 0.05, -3)).unwrap();
        let p: Relu6Params = *bytemuck::from_bytes(&op.params);
        assert_eq!((p.zero, p.six), (-3, 117));
        let op = lower_one(Operator::Relu6, t(&[4], 0.01, 0), t(&[4], 0.01, 0)).unwrap();
        let p: Relu6Params = *bytemuck::from_bytes(&op.params);
        assert_eq!(p.six, 127);
    }

    #[test]
    fn logistic_and_tanh_params() {
        let op = lower_one(
            Operator::Logistic,
            t(&[4], 1.0, 0),
            t(&[4], 1.0 / 256.0, -128),
        )
        .unwrap();
        let p: SigmoidParams = *bytemuck::from_bytes(&op.params);
        assert_eq!(
            (p.input_multiplier, p.input_left_shift, p.input_range_radius),
            (1 << 30, 28, 7)
        );
        assert!(lower_one(Operator::Tanh, t(&[4], 0.1, 0), t(&[4], 1.0 / 128.0, 0)).is_ok());
        // Wrong output quantization is refused.
        assert!(lower_one(Operator::Logistic, t(&[4], 0.1, 0), t(&[4], 1.0 / 256.0, 0)).is_err());
        assert!(lower_one(Operator::Tanh, t(&[4], 0.1, 0), t(&[4], 1.0 / 256.0, 0)).is_err());
        // Shape mismatch.
        assert!(lower_one(Operator::Tanh, t(&[4], 0.1, 0), t(&[2, 2], 1.0 / 128.0, 0)).is_err());
    }

    /// Runs one lowered activation through the runtime, with its output either in place over the
    /// input (same arena bytes) or in a separate buffer.
    fn run(op: &LoweredOp, input: &[i8], in_place: bool) -> Vec<i8> {
        use crate::write::{AlignedBytes, FileParts};
        use mote_runtime::format::{OpDesc, TensorDesc, NONE};
        let n = input.len() as u32;
        let desc = |offset: u32| TensorDesc {
            shape: [n, 0, 0, 0, 0, 0],
            rank: 1,
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
            tensors: vec![desc(0), desc(out_offset)],
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
        for (op, o) in [
            (Operator::Relu, t(&[300], 0.05, 0)),
            (Operator::Relu6, t(&[300], 0.05, 0)),
            (Operator::Logistic, t(&[300], 1.0 / 256.0, -128)),
            (Operator::Tanh, t(&[300], 1.0 / 128.0, 0)),
        ] {
            let lowered = lower_one(op, t(&[300], 0.05, 3), o).unwrap();
            for len in [7usize, 300] {
                let input: Vec<i8> = (0..len).map(|i| (i * 37 % 256) as u8 as i8).collect();
                let separate = run(&lowered, &input, false);
                let shared = run(&lowered, &input, true);
                assert_eq!(separate, shared, "{:?} len {len}", lowered.kind);
                assert_eq!(separate.len(), len);
            }
        }
    }
}
