//! Constant padding: PAD and PADV2.
//!
//! Like TFLM's `reference_ops::Pad`, every output element is either the input element it covers or
//! the pad value. The compiler resolves the pad amounts (from the constant paddings tensor) and
//! the pad value (the output zero point for int8 PAD, zero for other PAD types, the constant third
//! input for PADV2) into [`PadParams`], so the kernel only moves bytes and works for any dtype.

use super::{OpCtx, OpMem};
use crate::error::Error;
use crate::format::MAX_RANK;

/// Parameters of PAD / PADV2.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct PadParams {
    /// Elements added before each axis (entries past the rank are zero).
    pub before: [u32; MAX_RANK],
    /// Elements added after each axis (entries past the rank are zero).
    pub after: [u32; MAX_RANK],
    /// The pad element's bytes, little-endian, in the low bytes (1, 2 or 4 of them by dtype).
    pub pad_value: u32,
}

/// Fills `dst` with copies of the element `pattern`.
#[inline]
fn fill(dst: &mut [u8], pattern: &[u8]) {
    match pattern {
        [b] => dst.fill(*b),
        _ if pattern.iter().all(|&b| b == pattern[0]) => dst.fill(pattern[0]),
        _ => dst
            .chunks_exact_mut(pattern.len())
            .for_each(|c| c.copy_from_slice(pattern)),
    }
}

/// PAD over raw elements of `elem` bytes (1, 2 or 4): `input` has shape `in_dims`, the output
/// has shape `in_dims[k] + before[k] + after[k]`. Does nothing when the slices are too short for
/// the shapes or `elem` is not 1, 2 or 4.
pub fn pad(p: &PadParams, elem: usize, in_dims: &[usize], input: &[u8], output: &mut [u8]) {
    let rank = in_dims.len();
    if rank > MAX_RANK || !matches!(elem, 1 | 2 | 4) {
        return;
    }
    let value = p.pad_value.to_le_bytes();
    let pattern = &value[..elem];
    let mut out_dims = [0usize; MAX_RANK];
    for k in 0..rank {
        out_dims[k] = in_dims[k]
            .saturating_add(p.before[k] as usize)
            .saturating_add(p.after[k] as usize);
    }
    let count = |d: &[usize]| d.iter().try_fold(elem, |a, &v| a.checked_mul(v));
    let (Some(n_in), Some(n_out)) = (count(in_dims), count(&out_dims[..rank])) else {
        return;
    };
    let (Some(input), Some(output)) = (input.get(..n_in), output.get_mut(..n_out)) else {
        return;
    };
    if rank == 0 {
        // Both hold one element (`n_in == n_out == elem`); the test only spares a panic path.
        if output.len() == input.len() {
            output.copy_from_slice(input);
        }
        return;
    }
    if n_out == 0 {
        return;
    }
    let last = rank - 1;
    // Row-major strides of the input, in elements.
    let mut in_stride = [0usize; MAX_RANK];
    let mut s = 1usize;
    for k in (0..rank).rev() {
        in_stride[k] = s;
        s *= in_dims[k];
    }
    let in_row = in_dims[last] * elem;
    let head = p.before[last] as usize * elem;
    let row_len = out_dims[last] * elem;
    if head + in_row > row_len {
        return;
    }
    let mut idx = [0usize; MAX_RANK];
    // row_len > 0 as n_out > 0; `max(1)` spares `chunks_exact_mut` its zero-size panic.
    for row in output.chunks_exact_mut(row_len.max(1)) {
        // Where this output row comes from, if it is inside the input along every leading axis.
        let mut src = Some(0usize);
        for k in 0..last {
            let b = p.before[k] as usize;
            if idx[k] < b || idx[k] >= b + in_dims[k] {
                src = None;
                break;
            }
            src = src.map(|o| o + (idx[k] - b) * in_stride[k]);
        }
        match src.and_then(|o| input.get(o * elem..o * elem + in_row)) {
            Some(src) => {
                // head + in_row <= row_len (checked above) and `src` holds in_row bytes.
                let Some((pre, rest)) = row.split_at_mut_checked(head) else {
                    return;
                };
                let Some((mid, post)) = rest.split_at_mut_checked(in_row) else {
                    return;
                };
                fill(pre, pattern);
                if mid.len() == src.len() {
                    mid.copy_from_slice(src);
                }
                fill(post, pattern);
            }
            None => fill(row, pattern),
        }
        // Next row: advance the odometer over the leading output axes.
        for k in (0..last).rev() {
            idx[k] += 1;
            if idx[k] < out_dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Checks a PAD op.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &PadParams = ctx.params()?;
    if ctx.input_count() != 1 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let input = ctx.required_input(0)?;
    let output = ctx.output(0)?;
    let dtype = input
        .1
        .dtype()
        .ok_or(ctx.shape_error(input.0, "a known dtype"))?;
    ctx.expect_dtype(output, dtype)?;
    if input.1.rank != output.1.rank {
        return Err(ctx.shape_error(output.0, "the input's rank"));
    }
    let rank = input.1.dims().len();
    if p.before[rank..]
        .iter()
        .chain(&p.after[rank..])
        .any(|&v| v != 0)
    {
        return Err(ctx.param_error("before/after (past the rank)"));
    }
    for (k, (&i, &o)) in input.1.dims().iter().zip(output.1.dims()).enumerate() {
        if i as u64 + p.before[k] as u64 + p.after[k] as u64 != o as u64 {
            return Err(ctx.shape_error(output.0, "input dims plus the pad amounts"));
        }
    }
    Ok(())
}

/// Runs a PAD op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let p: &PadParams = ctx.params()?;
    let input = ctx.required_input(0)?;
    let elem = input.1.dtype().map_or(1, |d| d.size());
    let mut dims = [0usize; MAX_RANK];
    for (o, &d) in dims.iter_mut().zip(input.1.dims()) {
        *o = d as usize;
    }
    let rank = input.1.dims().len();
    pad(p, elem, &dims[..rank], mem.required_input(0)?, mem.output);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(before: &[u32], after: &[u32], value: u32) -> PadParams {
        let mut p = PadParams {
            before: [0; MAX_RANK],
            after: [0; MAX_RANK],
            pad_value: value,
        };
        p.before[..before.len()].copy_from_slice(before);
        p.after[..after.len()].copy_from_slice(after);
        p
    }

    #[test]
    fn int8_with_nonzero_zero_point() {
        // 1x2x2x1 → pad H and W by (1, 0) / (0, 1) with zero point -5.
        let p = params(&[0, 1, 0, 0], &[0, 0, 1, 0], (-5i8) as u8 as u32);
        let input: [i8; 4] = [1, 2, 3, 4];
        let mut out = [0u8; 9];
        pad(&p, 1, &[1, 2, 2, 1], bytemuck::cast_slice(&input), &mut out);
        let out: &[i8] = bytemuck::cast_slice(&out);
        assert_eq!(out, &[-5, -5, -5, 1, 2, -5, 3, 4, -5]);
    }

    #[test]
    fn float_all_axes() {
        let p = params(&[1, 1], &[0, 2], 7.5f32.to_bits());
        let input = [1.0f32, 2.0];
        let mut out = [0f32; 2 * 5];
        pad(
            &p,
            4,
            &[1, 2],
            bytemuck::cast_slice(&input),
            bytemuck::cast_slice_mut(&mut out),
        );
        assert_eq!(out, [7.5, 7.5, 7.5, 7.5, 7.5, 7.5, 1.0, 2.0, 7.5, 7.5]);
    }

    #[test]
    fn int16_five_dims() {
        let p = params(&[1, 0, 0, 0, 0], &[0, 0, 0, 0, 1], 0x0102);
        let input = [10i16, 20];
        let mut out = [0i16; 2 * 3];
        pad(
            &p,
            2,
            &[1, 1, 1, 1, 2],
            bytemuck::cast_slice(&input),
            bytemuck::cast_slice_mut(&mut out),
        );
        assert_eq!(out, [0x0102, 0x0102, 0x0102, 10, 20, 0x0102]);
    }

    #[test]
    fn no_padding_is_a_copy() {
        let p = params(&[0, 0], &[0, 0], 0);
        let mut out = [0u8; 6];
        pad(&p, 1, &[2, 3], &[1, 2, 3, 4, 5, 6], &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
    }
}
