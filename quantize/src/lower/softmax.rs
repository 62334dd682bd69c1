//! Lowering of SOFTMAX (int8 input; int8 or int16 output) to `mote_runtime::ops::softmax`.
//!
//! Parameters are computed as TFLM's `CalculateSoftmaxParams` (softmax_common.cc) does:
//! `PreprocessSoftmaxScaling(beta, input_scale, 5)` — the real multiplier
//! `min(beta · input_scale · 2^26, 2^31 − 1)` through `QuantizeMultiplierGreaterThanOne` — and
//! `diff_min = −CalculateInputRadius(5, input_left_shift, 31)`. The output quantization is fixed:
//! int8 scale exactly 1/256 zero point −128, or int16 scale 1/65536 (±0.1 %) zero point −32768.

use mote_runtime::format::OpCost;
use mote_runtime::ops::softmax::SoftmaxParams;
use mote_runtime::OpKind;

use super::arith::{input_bytes, int8_per_tensor, sat_u32};
use super::quant_math::quantize_multiplier;
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{DataType, Node, Operator};

/// Lowers a SOFTMAX node.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let Operator::Softmax { beta } = node.op else {
        return Err(ctx.invalid(node, "not a SOFTMAX node"));
    };
    if node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 1 input and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    let (in_scale, _) = int8_per_tensor(ctx, node, input, "the input")?;
    let out = ctx.tensor(output);
    let (out_scale, out_zp) = match (out.dtype, out.quant.as_ref()) {
        (DataType::Int8 | DataType::Int16, Some(q)) if q.is_per_tensor() => {
            (q.scale(), q.zero_point())
        }
        _ => {
            return Err(ctx.unsupported(
                node,
                format!(
                    "output is {} (only quantized int8 or int16 per tensor is supported)",
                    out.dtype
                ),
            ))
        }
    };
    match out.dtype {
        DataType::Int8 => {
            if out_zp != -128 || out_scale != 1.0f32 / 256.0 {
                return Err(ctx.unsupported(
                    node,
                    format!(
                        "int8 output quantization must be scale 1/256 zero point -128, got scale \
                         {out_scale} zero point {out_zp}"
                    ),
                ));
            }
        }
        _ => {
            let want = 1.0f32 / 65536.0;
            if out_zp != -32768 || (out_scale - want).abs() > 0.001f32 * want {
                return Err(ctx.unsupported(
                    node,
                    format!(
                        "int16 output quantization must be scale 1/65536 zero point -32768, got \
                         scale {out_scale} zero point {out_zp}"
                    ),
                ));
            }
        }
    }
    let shape = ctx.tensor(input).shape.clone();
    if shape.is_empty() {
        return Err(ctx.unsupported(node, "input is a scalar (rank 0)"));
    }
    if ctx.tensor(output).shape != shape {
        return Err(ctx.invalid(node, "output shape differs from the input shape"));
    }

    // PreprocessSoftmaxScaling (double-rounding build: cap at 2^31 - 1). TFLM aborts unless the
    // multiplier exceeds 1 (QuantizeMultiplierGreaterThanOne), so refuse that at compile time.
    const SCALED_DIFF_INTEGER_BITS: i32 = 5;
    let beta_scale = f64::from(beta) * f64::from(in_scale);
    let real = beta_scale * f64::from(1u32 << (31 - SCALED_DIFF_INTEGER_BITS));
    if beta_scale.is_nan() || real <= 1.0 {
        return Err(ctx.unsupported(
            node,
            format!(
                "beta · input_scale = {beta_scale} is too small (TFLM requires beta · scale · 2^26 > 1)"
            ),
        ));
    }
    let real = real.min(2147483647.0);
    let (input_multiplier, input_left_shift) = quantize_multiplier(real);
    if !(0..=31).contains(&input_left_shift) {
        return Err(ctx.unsupported(node, "softmax input multiplier out of range"));
    }
    // CalculateInputRadius(5, input_left_shift, 31).
    let radius = (f64::from((1i32 << SCALED_DIFF_INTEGER_BITS) - 1)
        * (1u64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64
        / (1u64 << input_left_shift) as f64)
        .floor();
    let p = SoftmaxParams {
        input_multiplier,
        input_left_shift,
        diff_min: -(radius as i32),
        reserved: 0,
    };

    let elements = ctx.tensor(input).elements();
    let (const_bytes_read, arena_bytes_read) = input_bytes(ctx, &[input]);
    Ok(LoweredOp {
        kind: OpKind::Softmax,
        inputs: vec![Some(input)],
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost: OpCost {
            // max, exp + sum, exp · reciprocal per element.
            macs: 3 * elements as u64,
            const_bytes_read: const_bytes_read.saturating_mul(3),
            arena_bytes_read: arena_bytes_read.saturating_mul(3),
            arena_bytes_written: sat_u32(ctx.tensor(output).bytes()),
            reserved: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Graph, Quantization, Tensor};
    use crate::lower::ConstPool;

    fn t(shape: &[usize], dtype: DataType, scale: f32, zp: i64) -> Tensor {
        Tensor {
            name: String::new(),
            shape: shape.to_vec(),
            dtype,
            quant: Some(Quantization::per_tensor(scale, zp)),
            data: None,
        }
    }

    fn lower_one(beta: f32, i: Tensor, o: Tensor) -> Result<LoweredOp, CompileError> {
        let mut graph = Graph {
            tensors: vec![i, o],
            ..Default::default()
        };
        let node = Node {
            op: Operator::Softmax { beta },
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
    fn params_like_tflm() {
        let op = lower_one(
            1.0,
            t(&[1, 10], DataType::Int8, 0.125, 3),
            t(&[1, 10], DataType::Int8, 1.0 / 256.0, -128),
        )
        .unwrap();
        let p: SoftmaxParams = *bytemuck::from_bytes(&op.params);
        // 0.125 · 2^26 = 2^23 = 0.5 · 2^24.
        assert_eq!((p.input_multiplier, p.input_left_shift), (1 << 30, 24));
        // floor(31 · 2^26 / 2^24) = 124.
        assert_eq!(p.diff_min, -124);
        assert!(lower_one(
            1.0,
            t(&[10], DataType::Int8, 0.1, 0),
            t(&[10], DataType::Int16, 1.0 / 65536.0, -32768),
        )
        .is_ok());
    }

    #[test]
    fn refusals() {
        // Wrong output quantization.
        assert!(lower_one(
            1.0,
            t(&[10], DataType::Int8, 0.1, 0),
            t(&[10], DataType::Int8, 1.0 / 255.0, -128),
        )
        .is_err());
        // int16 input.
        assert!(lower_one(
            1.0,
            t(&[10], DataType::Int16, 0.1, 0),
            t(&[10], DataType::Int16, 1.0 / 65536.0, -32768),
        )
        .is_err());
        // beta · scale too small.
        assert!(lower_one(
            1e-9,
            t(&[10], DataType::Int8, 0.01, 0),
            t(&[10], DataType::Int8, 1.0 / 256.0, -128),
        )
        .is_err());
    }
}
