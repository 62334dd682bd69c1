//! The N:M sparse weight encoding (`mote_runtime::ops::sparse`): a lowered int8 CONV_2D (one
//! group) or FULLY_CONNECTED whose weights keep few enough non-zeros per group of input channels
//! becomes SPARSE_CONV_2D / SPARSE_FULLY_CONNECTED, with its weights stored without the zeros.
//!
//! The rule (per layer): among `M` in {4, 16, 2}, with `N` the largest count of non-zero weights
//! in any group of `M` consecutive input channels of the layer, the encoding is used when
//! `N ≤ M / 2` (the kernel does at most half the multiply-adds) and it takes fewer bytes than the
//! dense weights; the smallest such encoding wins. Dense weights (random or merely
//! unstructured-sparse) are left alone, so only models pruned N:M (`mote quantize --nm`) change.
//! Only the compact weight layout is encoded: the host SIMD layout is chosen for speed.
//!
//! What it pays: flash, always (2:4 stores 62.5 % of the weight bytes, 1:4 31 %). Not speed,
//! measured: the sparse reference kernels decode a position per stored weight and run at about
//! 0.5–0.7 GMAC/s on an x86 host where the dense reference kernels reach 3.6–6.5 GMAC/s, so a
//! 2:4 layer takes 3–4.6× as long as dense and a 1:4 layer 1.7–2.3× (`mote bench` of AD01 and
//! KWS quantized with `--nm`); on a Cortex-M4 (qemu) a KWS 1×1 CONV_2D of 64 channels takes
//! 10.1 M (2:4) and 5.8 M (1:4) instructions against 1.2 M for the dense DSP kernel. The sparse
//! kinds also have no in-place (shifted) mode, so a model whose dense convolutions ran in place
//! can need a larger arena (KWS: 8,704 → 16,000 bytes).

use mote_runtime::ops::conv::{ConvParams, LAYOUT_REFERENCE};
use mote_runtime::ops::fully_connected::FullyConnectedParams;
use mote_runtime::ops::sparse::{encode, encoded_len, min_n, SparseParams};
use mote_runtime::OpKind;

use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{DataType, Tensor};

/// The group lengths tried, in order of preference on ties.
const GROUP_LENGTHS: [usize; 3] = [4, 16, 2];

/// The best `(n, m, values, position bytes)` for `dense` (rows of `c` channels), if one pays.
pub fn choose(dense: &[i8], c: usize) -> Option<(usize, usize, usize, usize)> {
    let rows = dense.len().checked_div(c)?;
    let mut best: Option<(usize, usize, usize, usize)> = None;
    for m in GROUP_LENGTHS {
        let n = min_n(dense, c, m)?;
        if 2 * n > m {
            continue;
        }
        let (nv, nb) = encoded_len(rows, c, n, m)?;
        if nv + nb >= dense.len() {
            continue;
        }
        if best.is_none_or(|b| nv + nb < b.2 + b.3) {
            best = Some((n, m, nv, nb));
        }
    }
    best
}

/// The int8 data of constant tensor `id`, if it is one.
fn int8_data(ctx: &LowerCtx, id: usize) -> Option<Vec<i8>> {
    let t = ctx.tensor(id);
    if t.dtype != DataType::Int8 {
        return None;
    }
    t.data.as_ref().map(|d| bytemuck::cast_slice(d).to_vec())
}

/// Rewrites `op` to its sparse kind when its weights are N:M sparse enough to pay (see the
/// module documentation); returns it unchanged otherwise.
pub fn sparsify(ctx: &mut LowerCtx, op: LoweredOp) -> Result<LoweredOp, CompileError> {
    let geometry = match op.kind {
        OpKind::Conv2d if op.params.len() == size_of::<ConvParams>() => {
            let p: ConvParams = bytemuck::pod_read_unaligned(&op.params);
            if p.layout != LAYOUT_REFERENCE {
                return Ok(op);
            }
            Some(p)
        }
        OpKind::FullyConnected if op.params.len() == size_of::<FullyConnectedParams>() => {
            let p: FullyConnectedParams = bytemuck::pod_read_unaligned(&op.params);
            if p.layout != LAYOUT_REFERENCE || p.filter_offset != 0 {
                return Ok(op);
            }
            None
        }
        _ => return Ok(op),
    };
    let (Some(Some(x)), Some(Some(w)), Some(&y)) =
        (op.inputs.first(), op.inputs.get(1), op.outputs.first())
    else {
        return Ok(op);
    };
    let (x, w) = (*x, *w);
    if op.inputs.len() > 3
        || ctx.tensor(x).dtype != DataType::Int8
        || ctx.tensor(y).dtype != DataType::Int8
    {
        return Ok(op);
    }
    let Some(dense) = int8_data(ctx, w) else {
        return Ok(op);
    };
    let shape = ctx.tensor(w).shape.clone();
    let (o, fh, fw, c) = match (&geometry, shape.as_slice()) {
        (Some(_), &[o, fh, fw, c]) if ctx.tensor(x).shape.last() == Some(&c) => (o, fh, fw, c),
        (None, &[o, c]) => (o, 1, 1, c),
        _ => return Ok(op),
    };
    if o * fh * fw * c != dense.len() {
        return Ok(op);
    }
    let Some((n, m, nv, nb)) = choose(&dense, c) else {
        return Ok(op);
    };
    let mut values = vec![0i8; nv];
    let mut positions = vec![0u8; nb];
    encode(&dense, c, n, m, &mut values, &mut positions)
        .ok_or_else(|| CompileError::Limit(format!("sparse encoding of tensor {w} failed")))?;
    let name = ctx.tensor(w).name.clone();
    let values_id = ctx.add_tensor(Tensor {
        name: format!("{name}/sparse_values"),
        shape: vec![nv],
        dtype: DataType::Int8,
        quant: None,
        data: Some(bytemuck::cast_slice(&values).to_vec()),
    });
    let positions_id = ctx.add_tensor(Tensor {
        name: format!("{name}/sparse_positions"),
        shape: vec![nb],
        dtype: DataType::UInt8,
        quant: None,
        data: Some(positions),
    });
    let (kind, params) = match geometry {
        Some(p) => (
            OpKind::SparseConv2d,
            SparseParams {
                stride_h: p.stride_h,
                stride_w: p.stride_w,
                dilation_h: p.dilation_h,
                dilation_w: p.dilation_w,
                pad_h: p.pad_h,
                pad_w: p.pad_w,
                input_offset: p.input_offset,
                output_offset: p.output_offset,
                act_min: p.act_min,
                act_max: p.act_max,
                multipliers_offset: p.multipliers_offset,
                shifts_offset: p.shifts_offset,
                channel_count: p.channel_count,
                filter_h: fh as u32,
                filter_w: fw as u32,
                filter_c: c as u32,
                n: n as u32,
                m: m as u32,
            },
        ),
        None => {
            let p: FullyConnectedParams = bytemuck::pod_read_unaligned(&op.params);
            (
                OpKind::SparseFullyConnected,
                SparseParams {
                    stride_h: 1,
                    stride_w: 1,
                    dilation_h: 1,
                    dilation_w: 1,
                    pad_h: 0,
                    pad_w: 0,
                    input_offset: p.input_offset,
                    output_offset: p.output_offset,
                    act_min: p.act_min,
                    act_max: p.act_max,
                    multipliers_offset: p.multipliers_offset,
                    shifts_offset: p.shifts_offset,
                    channel_count: p.channel_count,
                    filter_h: 1,
                    filter_w: 1,
                    filter_c: c as u32,
                    n: n as u32,
                    m: m as u32,
                },
            )
        }
    };
    let bias = op.inputs.get(2).copied().flatten();
    let mut cost = op.cost;
    // The stored entries are the multiply-adds the kernel does (at most; zero padding is skipped).
    cost.macs = cost.macs.saturating_mul(nv as u64) / (dense.len().max(1) as u64);
    cost.const_bytes_read = cost
        .const_bytes_read
        .saturating_sub(dense.len() as u32)
        .saturating_add((nv + nb) as u32);
    Ok(LoweredOp {
        kind,
        inputs: vec![Some(x), Some(values_id), bias, Some(positions_id)],
        outputs: op.outputs,
        params: bytemuck::bytes_of(&params).to_vec(),
        scratch_bytes: 0,
        cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_takes_the_smallest_encoding_that_halves_the_work() {
        // 2:4 on 8 channels: 4 values + 1 position byte < 8.
        let w = [1i8, 0, 2, 0, 0, 3, 0, 4];
        assert_eq!(choose(&w, 8), Some((2, 4, 4, 1)));
        // 3 non-zeros in a group of 4: not 3:4 (over half), but 3:16 (3 values, 2 bytes).
        let w = [1i8, 2, 3, 0, 0, 0, 0, 0];
        assert_eq!(choose(&w, 8), Some((3, 16, 3, 2)));
        // Dense weights: never.
        let w: Vec<i8> = (0..64).map(|i| (i % 7 + 1) as i8).collect();
        assert_eq!(choose(&w, 16), None);
        // 1:4 beats 2:4.
        let w = [0i8, 0, 0, 9, 5, 0, 0, 0];
        assert_eq!(choose(&w, 8), Some((1, 4, 2, 1)));
        // A single channel: groups of one, never pays.
        assert_eq!(choose(&[1i8, 0, 2, 0], 1), None);
    }
}
