//! Generic window and matrix kernels for the schemes beside int8 (packed int4 weights, 16x8):
//! CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED as *accumulate, then output stage*.
//!
//! Each kernel sums `w · (x + input_offset)` exactly in `i64` over the same taps, in the same
//! layouts, as the int8 reference kernels (`conv::conv2d_int8`, ...), reading weights through a
//! [`WeightSource`] (plain `i8` or packed int4 nibbles), and hands the sum of each output element
//! with its channel to an output stage closure (bias, requantization, clamp). A scheme whose
//! reference accumulates in wrapping `i32` (int8 activations) truncates the exact sum to `i32`,
//! which equals the wrapping sum (both are the sum modulo 2³²).
//!
//! No heap, no panics: every read goes through `get`, lengths are checked up front.

use super::conv::{kernel_error, valid_taps};
use crate::error::Error;

/// Where a kernel reads its weights from, element by element in row-major order.
pub trait WeightSource {
    /// Number of weights.
    fn len(&self) -> usize;
    /// Whether there are no weights.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Weight `i` (0 past the end; the kernels check lengths first).
    fn at(&self, i: usize) -> i32;
}

impl WeightSource for [i8] {
    fn len(&self) -> usize {
        <[i8]>::len(self)
    }
    #[inline(always)]
    fn at(&self, i: usize) -> i32 {
        self.get(i).map_or(0, |&w| i32::from(w))
    }
}

/// Signed 4-bit weights packed two per byte (see [`crate::format::DType::Int4`]).
#[derive(Debug, Clone, Copy)]
pub struct PackedInt4<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> PackedInt4<'a> {
    /// `len` weights in `bytes`, which must hold exactly `ceil(len / 2)` bytes.
    pub fn new(bytes: &'a [u8], len: usize) -> Option<Self> {
        (bytes.len() == len / 2 + len % 2).then_some(PackedInt4 { bytes, len })
    }
}

/// The sign-extended value of the low nibble of `b`.
#[inline(always)]
pub fn low_nibble(b: u8) -> i8 {
    ((b << 4) as i8) >> 4
}

/// The sign-extended value of the high nibble of `b`.
#[inline(always)]
pub fn high_nibble(b: u8) -> i8 {
    (b as i8) >> 4
}

impl WeightSource for PackedInt4<'_> {
    fn len(&self) -> usize {
        self.len
    }
    #[inline(always)]
    fn at(&self, i: usize) -> i32 {
        let b = self.bytes.get(i / 2).copied().unwrap_or(0);
        i32::from(if i % 2 == 0 {
            low_nibble(b)
        } else {
            high_nibble(b)
        })
    }
}

/// Strides, dilations and leading padding of a window op, `[height, width]` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Strides (≥ 1).
    pub stride: [usize; 2],
    /// Dilations (≥ 1).
    pub dilation: [usize; 2],
    /// Rows above / columns left of the input of implicit padding.
    pub pad: [usize; 2],
}

fn elements(s: [usize; 4]) -> Option<usize> {
    s.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn check_lengths(
    input: usize,
    input_shape: [usize; 4],
    weights: usize,
    filter_shape: [usize; 4],
    output: usize,
    output_shape: [usize; 4],
) -> Result<(), Error> {
    if elements(input_shape) != Some(input)
        || elements(filter_shape) != Some(weights)
        || elements(output_shape) != Some(output)
    {
        return Err(kernel_error("tensor length"));
    }
    Ok(())
}

/// The first input coordinate of output coordinate `o` along one axis (may be negative).
fn origin(o: usize, stride: usize, pad: usize) -> Option<isize> {
    let o = isize::try_from(o.checked_mul(stride)?).ok()?;
    o.checked_sub(isize::try_from(pad).ok()?)
}

/// CONV_2D: NHWC input, OHWI filter, NHWC output; groups as in `conv::conv2d_int8`. Calls
/// `stage(sum, output_channel)` once per output element, in output order.
#[allow(clippy::too_many_arguments)]
pub fn conv<X: Copy + Into<i32>, Y, W: WeightSource + ?Sized>(
    g: &Geometry,
    input_shape: [usize; 4],
    input: &[X],
    input_offset: i32,
    filter_shape: [usize; 4],
    filter: &W,
    output_shape: [usize; 4],
    output: &mut [Y],
    mut stage: impl FnMut(i64, usize) -> Y,
) -> Result<(), Error> {
    check_lengths(
        input.len(),
        input_shape,
        filter.len(),
        filter_shape,
        output.len(),
        output_shape,
    )?;
    let [batches, in_h, in_w, in_c] = input_shape;
    let [out_c, f_h, f_w, f_ic] = filter_shape;
    let [o_batches, out_h, out_w, o_c] = output_shape;
    if batches != o_batches || out_c != o_c || f_ic == 0 || in_c % f_ic != 0 {
        return Err(kernel_error("convolution shapes"));
    }
    let groups = in_c / f_ic;
    // `checked_rem`: `groups` is 0 when `in_c` is (an error, never a division by zero).
    if out_c.checked_rem(groups) != Some(0) || g.stride.contains(&0) || g.dilation.contains(&0) {
        return Err(kernel_error("convolution groups or geometry"));
    }
    let per_group = out_c / groups;
    let off = i64::from(input_offset);
    let x_at = |i: usize| input.get(i).map_or(0, |&x| i64::from(x.into()));
    let mut out = output.iter_mut();
    for b in 0..batches {
        for oy in 0..out_h {
            let y0 = origin(oy, g.stride[0], g.pad[0]).ok_or(kernel_error("geometry"))?;
            let rows = valid_taps(y0, g.dilation[0], in_h, f_h);
            for ox in 0..out_w {
                let x0 = origin(ox, g.stride[1], g.pad[1]).ok_or(kernel_error("geometry"))?;
                let cols = valid_taps(x0, g.dilation[1], in_w, f_w);
                for oc in 0..out_c {
                    let group = oc / per_group.max(1);
                    let mut acc = 0i64;
                    for fy in rows.clone() {
                        // valid_taps: 0 ≤ iy < in_h.
                        let iy = (y0 + (fy * g.dilation[0]) as isize) as usize;
                        for fx in cols.clone() {
                            let ix = (x0 + (fx * g.dilation[1]) as isize) as usize;
                            let px = ((b * in_h + iy) * in_w + ix) * in_c + group * f_ic;
                            let wr = ((oc * f_h + fy) * f_w + fx) * f_ic;
                            for ic in 0..f_ic {
                                let w = i64::from(filter.at(wr + ic));
                                acc = acc.wrapping_add(w * (x_at(px + ic) + off));
                            }
                        }
                    }
                    if let Some(o) = out.next() {
                        *o = stage(acc, oc);
                    }
                }
            }
        }
    }
    Ok(())
}

/// DEPTHWISE_CONV_2D: NHWC input with `C` channels, `1×H×W×(C·M)` filter, output channel `c·M + m`
/// reading input channel `c`. Calls `stage(sum, output_channel)` per output element.
#[allow(clippy::too_many_arguments)]
pub fn depthwise<X: Copy + Into<i32>, Y, W: WeightSource + ?Sized>(
    g: &Geometry,
    depth_multiplier: usize,
    input_shape: [usize; 4],
    input: &[X],
    input_offset: i32,
    filter_shape: [usize; 4],
    filter: &W,
    output_shape: [usize; 4],
    output: &mut [Y],
    mut stage: impl FnMut(i64, usize) -> Y,
) -> Result<(), Error> {
    check_lengths(
        input.len(),
        input_shape,
        filter.len(),
        filter_shape,
        output.len(),
        output_shape,
    )?;
    let [batches, in_h, in_w, in_c] = input_shape;
    let [f_one, f_h, f_w, f_c] = filter_shape;
    let [o_batches, out_h, out_w, out_c] = output_shape;
    let m = depth_multiplier;
    if batches != o_batches
        || f_one != 1
        || m == 0
        || in_c.checked_mul(m) != Some(out_c)
        || f_c != out_c
        || g.stride.contains(&0)
        || g.dilation.contains(&0)
    {
        return Err(kernel_error("depthwise shapes or geometry"));
    }
    let off = i64::from(input_offset);
    let x_at = |i: usize| input.get(i).map_or(0, |&x| i64::from(x.into()));
    let mut out = output.iter_mut();
    for b in 0..batches {
        for oy in 0..out_h {
            let y0 = origin(oy, g.stride[0], g.pad[0]).ok_or(kernel_error("geometry"))?;
            let rows = valid_taps(y0, g.dilation[0], in_h, f_h);
            for ox in 0..out_w {
                let x0 = origin(ox, g.stride[1], g.pad[1]).ok_or(kernel_error("geometry"))?;
                let cols = valid_taps(x0, g.dilation[1], in_w, f_w);
                for oc in 0..out_c {
                    let mut acc = 0i64;
                    for fy in rows.clone() {
                        let iy = (y0 + (fy * g.dilation[0]) as isize) as usize;
                        for fx in cols.clone() {
                            let ix = (x0 + (fx * g.dilation[1]) as isize) as usize;
                            let x = x_at(((b * in_h + iy) * in_w + ix) * in_c + oc / m);
                            let w = i64::from(filter.at((fy * f_w + fx) * out_c + oc));
                            acc = acc.wrapping_add(w * (x + off));
                        }
                    }
                    if let Some(o) = out.next() {
                        *o = stage(acc, oc);
                    }
                }
            }
        }
    }
    Ok(())
}

/// FULLY_CONNECTED: `[batches, in]` input, `[out, in]` weights, `[batches, out]` output; the sum
/// is `Σ (w + filter_offset) · (x + input_offset)`. Calls `stage(sum, output_channel)`.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected<X: Copy + Into<i32>, Y, W: WeightSource + ?Sized>(
    batches: usize,
    in_features: usize,
    out_features: usize,
    input: &[X],
    input_offset: i32,
    weights: &W,
    filter_offset: i32,
    output: &mut [Y],
    mut stage: impl FnMut(i64, usize) -> Y,
) -> Result<(), Error> {
    check_lengths(
        input.len(),
        [batches, in_features, 1, 1],
        weights.len(),
        [out_features, in_features, 1, 1],
        output.len(),
        [batches, out_features, 1, 1],
    )?;
    let (xo, wo) = (i64::from(input_offset), i64::from(filter_offset));
    let mut out = output.iter_mut();
    for b in 0..batches {
        for c in 0..out_features {
            let mut acc = 0i64;
            for k in 0..in_features {
                let x = input
                    .get(b * in_features + k)
                    .map_or(0, |&x| i64::from(x.into()));
                let w = i64::from(weights.at(c * in_features + k));
                acc = acc.wrapping_add((w + wo) * (x + xo));
            }
            if let Some(o) = out.next() {
                *o = stage(acc, c);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibbles_sign_extend_in_element_order() {
        // Elements 0..4 = [7, -8, -1, 1]: bytes 0x87 (7 low, -8 high), 0x1F (-1 low, 1 high).
        let w = PackedInt4::new(&[0x87, 0x1F], 4).unwrap();
        let v: [i32; 4] = core::array::from_fn(|i| w.at(i));
        assert_eq!(v, [7, -8, -1, 1]);
        assert!(PackedInt4::new(&[0, 0], 5).is_none());
        assert!(PackedInt4::new(&[0, 0, 0], 5).is_some());
    }
}
