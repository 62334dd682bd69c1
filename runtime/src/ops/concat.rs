//! CONCATENATION along one axis.
//!
//! TFLM's `reference_ops::Concatenation` copies bytes (for int8 too: its `ConcatenationEval` runs
//! the unquantized kernel), so the kernel here is dtype-agnostic. The compiler refuses int8/int16
//! inputs whose scale or zero point differs from the output's, where a byte copy would be wrong.

use super::{OpCtx, OpMem};
use crate::error::Error;
use crate::format::TensorDesc;

/// Parameters of CONCATENATION.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct ConcatParams {
    /// The axis, already made non-negative (`< rank`).
    pub axis: u32,
}

/// Copies one input of a concatenation into place: the input is `outer` rows of `in_row` bytes;
/// row `i` lands at `output[i·out_row + offset ..][.. in_row]`. Stops at the first row that does
/// not fit either slice.
pub fn concat_one(
    input: &[u8],
    outer: usize,
    in_row: usize,
    output: &mut [u8],
    out_row: usize,
    offset: usize,
) {
    if in_row == 0 || out_row == 0 {
        return;
    }
    for (src, dst) in input
        .chunks_exact(in_row)
        .zip(output.chunks_exact_mut(out_row))
        .take(outer)
    {
        if let Some(d) = dst.get_mut(offset..offset.saturating_add(in_row)) {
            // Always equal (validated); the test spares `copy_from_slice` its length panic.
            if d.len() == src.len() {
                d.copy_from_slice(src);
            }
        }
    }
}

/// `(outer, inner)`: products of the dims before and after `axis`.
fn outer_inner(t: &TensorDesc, axis: usize) -> (usize, usize) {
    let d = t.dims();
    let outer = d.iter().take(axis).map(|&v| v as usize).product();
    let inner = d.iter().skip(axis + 1).map(|&v| v as usize).product();
    (outer, inner)
}

/// Checks a CONCATENATION op.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &ConcatParams = ctx.params()?;
    if ctx.input_count() == 0 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let output = ctx.output(0)?;
    let dtype = output
        .1
        .dtype()
        .ok_or(ctx.shape_error(output.0, "a known dtype"))?;
    let rank = output.1.dims().len();
    let axis = p.axis as usize;
    if axis >= rank {
        return Err(ctx.param_error("axis"));
    }
    let mut total = 0u64;
    for k in 0..ctx.input_count() {
        let input = ctx.required_input(k)?;
        ctx.expect_dtype(input, dtype)?;
        let d = input.1.dims();
        if d.len() != rank {
            return Err(ctx.shape_error(input.0, "the output's rank"));
        }
        for (j, (&a, &b)) in d.iter().zip(output.1.dims()).enumerate() {
            if j != axis && a != b {
                return Err(ctx.shape_error(input.0, "the output's dims off the concat axis"));
            }
        }
        total += d[axis] as u64;
    }
    if total != output.1.dims()[axis] as u64 {
        return Err(ctx.shape_error(output.0, "the sum of the inputs along the axis"));
    }
    Ok(())
}

/// Runs a CONCATENATION op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let p: &ConcatParams = ctx.params()?;
    let axis = p.axis as usize;
    let output = ctx.output(0)?;
    let elem = output.1.dtype().map_or(1, |d| d.size());
    let (outer, inner) = outer_inner(output.1, axis);
    let inner = inner * elem;
    let out_row = output.1.dims().get(axis).map_or(0, |&d| d as usize) * inner;
    let mut offset = 0usize;
    for k in 0..ctx.input_count() {
        let (_, t) = ctx.required_input(k)?;
        let in_row = t.dims().get(axis).map_or(0, |&d| d as usize) * inner;
        concat_one(
            mem.required_input(k)?,
            outer,
            in_row,
            mem.output,
            out_row,
            offset,
        );
        offset += in_row;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concatenates 2-D row-major `a` (ra×ca) and `b` (rb×cb) along `axis` with `concat_one`.
    fn cat(a: &[u8], ash: [usize; 2], b: &[u8], bsh: [usize; 2], axis: usize, out: &mut [u8]) {
        if axis == 0 {
            let row = ash[1];
            let out_row = (ash[0] + bsh[0]) * row;
            concat_one(a, 1, ash[0] * row, out, out_row, 0);
            concat_one(b, 1, bsh[0] * row, out, out_row, ash[0] * row);
        } else {
            let out_row = ash[1] + bsh[1];
            concat_one(a, ash[0], ash[1], out, out_row, 0);
            concat_one(b, bsh[0], bsh[1], out, out_row, ash[1]);
        }
    }

    #[test]
    fn axis_zero() {
        let mut out = [0u8; 6];
        cat(&[1, 2], [1, 2], &[3, 4, 5, 6], [2, 2], 0, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn last_axis() {
        let mut out = [0u8; 6];
        cat(&[1, 2], [2, 1], &[3, 4, 5, 6], [2, 2], 1, &mut out);
        assert_eq!(out, [1, 3, 4, 2, 5, 6]);
    }

    #[test]
    fn middle_axis_of_3d_with_wide_elements() {
        // a: 2x1x2 int16, b: 2x2x2 int16, concat on axis 1 → 2x3x2.
        let a: [i16; 4] = [1, 2, 3, 4];
        let b: [i16; 8] = [10, 11, 12, 13, 14, 15, 16, 17];
        let mut out = [0i16; 12];
        let inner = 2 * 2; // 2 elements × 2 bytes
        let out_row = 3 * inner;
        let o: &mut [u8] = bytemuck::cast_slice_mut(&mut out);
        concat_one(bytemuck::cast_slice(&a), 2, inner, o, out_row, 0);
        concat_one(bytemuck::cast_slice(&b), 2, 2 * inner, o, out_row, inner);
        assert_eq!(out, [1, 2, 10, 11, 12, 13, 3, 4, 14, 15, 16, 17]);
    }

    #[test]
    fn short_output_does_not_panic() {
        let mut out = [0u8; 3];
        concat_one(&[1, 2, 3, 4], 2, 2, &mut out, 4, 2);
    }
}
