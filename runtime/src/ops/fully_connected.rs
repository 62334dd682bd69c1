//! FULLY_CONNECTED: int8 matrix × vector per batch, bit-exact with TFLM's
//! `reference_integer_ops::FullyConnected` (per-tensor weights, weight zero point applied as
//! `filter_offset`) and `FullyConnectedPerChannel` (per-channel weights, symmetric).
//!
//! Inputs: 0 = input int8 of any rank, read as `[batches, in]` row-major; 1 = weights `[out, in]`
//! int8; 2 = optional bias int32 `[out]`. Output: int8 of any rank ≥ 1 whose last dimension is
//! `out`; `batches` = output elements / `out` (this covers `keep_num_dims`).

use bytemuck::{Pod, Zeroable};

use super::conv::{
    bias_input, check_bias, check_channel_quant, check_quant, dot_offset, kernel_error, requantize,
    segment, PackedFilter, LAYOUT_PACKED, LAYOUT_REFERENCE, STAGE_BYTES,
};
use super::{as_i8, as_i8_mut, OpCtx, OpMem};
use crate::error::Error;
use crate::format::DType;
use crate::simd::{self, Isa};

/// Parameters of a FULLY_CONNECTED op: everything TFLM computes in `Prepare`.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct FullyConnectedParams {
    /// `-input_zero_point`, in `[-127, 128]`.
    pub input_offset: i32,
    /// `-weights_zero_point`, in `[-127, 128]` (per-tensor weights only; 0 when per-channel).
    pub filter_offset: i32,
    /// The output zero point, in `[-128, 127]`.
    pub output_offset: i32,
    /// Lower clamp of the fused activation (quantized), in `[-128, 127]`.
    pub act_min: i32,
    /// Upper clamp of the fused activation (quantized), `act_min ≤ act_max ≤ 127`.
    pub act_max: i32,
    /// Byte offset in the constant section of `channel_count` Q31 multipliers (`i32`, ≥ 0).
    pub multipliers_offset: u32,
    /// Byte offset in the constant section of `channel_count` shifts (`i32`, positive = left, in `[-31, 30]`).
    pub shifts_offset: u32,
    /// 1 for per-tensor weights (one multiplier for every output), else the number of outputs.
    pub channel_count: u32,
    /// Weight layout for the SIMD kernels: [`LAYOUT_REFERENCE`] (the weights only) or
    /// [`LAYOUT_PACKED`] (also packed by [`crate::simd::pack_weights`], with folded biases).
    pub layout: u32,
    /// With [`LAYOUT_PACKED`]: byte offset in the constant section of the `[out, in]` weights
    /// packed ([`crate::simd::packed_len`] bytes). Else zero.
    pub packed_offset: u32,
    /// With [`LAYOUT_PACKED`]: byte offset in the constant section of `2·out` folded `i32`
    /// biases ([`crate::simd::fold_bias`]: the signed set, then the unsigned set). Else zero.
    pub folded_bias_offset: u32,
}

/// Portable reference int8 FULLY_CONNECTED (TFLM `FullyConnected` / `FullyConnectedPerChannel`).
///
/// `input` is `[batches, in_features]`, `weights` `[out_features, in_features]`, `output`
/// `[batches, out_features]`, all row-major. `multipliers`/`shifts` hold 1 entry (per-tensor) or
/// `out_features` entries (per-channel, then `p.filter_offset` must be 0 as TFLM ignores it).
/// Returns an error (never panics) when lengths or parameters are inconsistent.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected_int8(
    p: &FullyConnectedParams,
    batches: usize,
    in_features: usize,
    out_features: usize,
    input: &[i8],
    weights: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) -> Result<(), Error> {
    check_params(p, out_features).map_err(kernel_error)?;
    let lens_ok = batches.checked_mul(in_features) == Some(input.len())
        && out_features.checked_mul(in_features) == Some(weights.len())
        && batches.checked_mul(out_features) == Some(output.len())
        && multipliers.len() == p.channel_count as usize
        && bias.is_none_or(|b| b.len() == out_features);
    if !lens_ok {
        return Err(kernel_error("tensor length"));
    }
    check_channel_quant(multipliers, shifts).map_err(kernel_error)?;
    if output.is_empty() || in_features == 0 {
        // in_features == 0 with a non-empty output: every accumulator is just the bias.
        for (k, o) in output.iter_mut().enumerate() {
            let c = k % out_features.max(1);
            let acc = bias.and_then(|b| b.get(c)).map_or(0, |&b| b);
            let q = c % multipliers.len().max(1);
            // q < multipliers.len() == shifts.len() (check_channel_quant): always found.
            let (Some(&mul), Some(&sh)) = (multipliers.get(q), shifts.get(q)) else {
                continue;
            };
            *o = requantize(acc, mul, sh, p.output_offset, p.act_min, p.act_max);
        }
        return Ok(());
    }
    let per_channel = multipliers.len() != 1;
    // Rows by index rather than zipped `chunks_exact` (whose outlined `Zip::new` keeps a
    // division-by-zero panic path): the lengths checked above put every row inside.
    for (b, out_row) in output.chunks_mut(out_features.max(1)).enumerate() {
        let x = segment(input, b * in_features, in_features);
        for (c, o) in out_row.iter_mut().enumerate() {
            let w = segment(weights, c * in_features, in_features);
            // Builds with the DSP-extension kernels (`arm-dsp`), which run this kernel only for
            // shapes those do not take, keep the general loop alone (smaller; the same sums).
            let mut acc = if p.filter_offset == 0 && !cfg!(feature = "arm-dsp") {
                dot_offset(x, w, p.input_offset)
            } else {
                x.iter().zip(w).fold(0i32, |acc, (&x, &w)| {
                    acc.wrapping_add(
                        (w as i32)
                            .wrapping_add(p.filter_offset)
                            .wrapping_mul((x as i32).wrapping_add(p.input_offset)),
                    )
                })
            };
            if let Some(&b) = bias.and_then(|b| b.get(c)) {
                // bias.len() == out_features (checked above).
                acc = acc.wrapping_add(b);
            }
            // multipliers/shifts hold out_features entries when per-channel, else 1.
            let q = if per_channel { c } else { 0 };
            let (Some(&mul), Some(&sh)) = (multipliers.get(q), shifts.get(q)) else {
                continue;
            };
            *o = requantize(acc, mul, sh, p.output_offset, p.act_min, p.act_max);
        }
    }
    Ok(())
}

/// The SIMD tier a FULLY_CONNECTED op with these parameters runs on, or `None` for the
/// reference kernel: packed weights, symmetric weights (`filter_offset` 0), and either rows the
/// kernel can read in place (signed activations, `in_features` a multiple of 4) or rows that fit
/// the staging buffer.
pub fn fc_fast_isa(
    isa: Option<Isa>,
    packed: bool,
    p: &FullyConnectedParams,
    in_features: usize,
) -> Option<Isa> {
    let isa = isa?;
    let direct = isa.tier().encoding() == simd::Encoding::Signed && in_features % 4 == 0;
    let staged = simd::k_steps(in_features) * simd::BLOCK_K <= STAGE_BYTES;
    (packed && p.filter_offset == 0 && in_features > 0 && (direct || staged)).then_some(isa)
}

/// FULLY_CONNECTED with the fastest kernel available: `isa`'s matrix kernel over `packed`
/// weights when [`fc_fast_isa`] allows it, else [`fully_connected_int8`]. Same arguments and
/// results as [`fully_connected_int8`], bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected_int8_fast(
    isa: Option<Isa>,
    packed: Option<&PackedFilter>,
    p: &FullyConnectedParams,
    batches: usize,
    in_features: usize,
    out_features: usize,
    input: &[i8],
    weights: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) -> Result<(), Error> {
    let fast = fc_fast_isa(isa, packed.is_some(), p, in_features);
    let (Some(isa), Some(packed)) = (fast, packed) else {
        return fully_connected_int8(
            p,
            batches,
            in_features,
            out_features,
            input,
            weights,
            bias,
            multipliers,
            shifts,
            output,
        );
    };
    check_params(p, out_features).map_err(kernel_error)?;
    let lens_ok = out_features.checked_mul(in_features) == Some(weights.len())
        && multipliers.len() == p.channel_count as usize;
    if !lens_ok {
        return Err(kernel_error("tensor length"));
    }
    check_channel_quant(multipliers, shifts).map_err(kernel_error)?;
    let q = FcQuant::new(p, multipliers, shifts);
    fc_packed(
        isa,
        packed,
        &q,
        batches,
        in_features,
        out_features,
        input,
        output,
    )
}

/// The requantization of a FULLY_CONNECTED op whose multipliers and shifts are known to be in
/// range (multipliers ≥ 0, shifts in `[-31, 30]`, as many shifts as multipliers).
struct FcQuant<'a> {
    multipliers: &'a [i32],
    shifts: &'a [i32],
    output_offset: i32,
    act_min: i32,
    act_max: i32,
}

impl<'a> FcQuant<'a> {
    /// `p`'s output stage with these per-channel arrays (the caller has checked their values).
    fn new(p: &FullyConnectedParams, multipliers: &'a [i32], shifts: &'a [i32]) -> Self {
        FcQuant {
            multipliers,
            shifts,
            output_offset: p.output_offset,
            act_min: p.act_min,
            act_max: p.act_max,
        }
    }
}

/// The matrix-kernel part of [`fully_connected_int8_fast`], for `isa` chosen by
/// [`fc_fast_isa`]: checks the tensor lengths (an error, never a panic), not the values of the
/// requantization parameters, which the caller has (see [`FcQuant`]).
#[allow(clippy::too_many_arguments)]
fn fc_packed(
    isa: Isa,
    packed: &PackedFilter,
    fq: &FcQuant,
    batches: usize,
    in_features: usize,
    out_features: usize,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let lens_ok = batches.checked_mul(in_features) == Some(input.len())
        && batches.checked_mul(out_features) == Some(output.len())
        && packed.fits(out_features, in_features);
    if !lens_ok {
        return Err(kernel_error("tensor length"));
    }
    if output.is_empty() {
        return Ok(());
    }
    let enc = isa.tier().encoding();
    let q = simd::Requant {
        bias: Some(packed.bias(enc)),
        multipliers: fq.multipliers,
        shifts: fq.shifts,
        output_offset: fq.output_offset,
        act_min: fq.act_min,
        act_max: fq.act_max,
    };
    if batches == 1 {
        // One row: the tier's one-row kernel when it has one (reads the row in place).
        let row =
            simd::gemv::gemv_checked_quant(isa, input, packed.weights, out_features, &q, output);
        if let Some(done) = row {
            return done;
        }
    }
    let steps = simd::k_steps(in_features);
    let kp = steps * simd::BLOCK_K;
    if enc == simd::Encoding::Signed && kp == in_features {
        // The input rows are the matrix rows already.
        let a = simd::MatrixA {
            data: bytemuck::cast_slice(input),
            first: 0,
            rows: batches,
            width: batches,
            x_stride: in_features,
            y_stride: 0,
            k_steps: steps,
            k_offsets: None,
        };
        return simd::gemm_checked_quant(
            isa,
            &a,
            packed.weights,
            out_features,
            &q,
            output,
            out_features,
        );
    }
    fc_staged(
        isa,
        packed,
        &q,
        batches,
        in_features,
        out_features,
        input,
        output,
    )
}

/// The part of [`fc_packed`] that stages the input rows in the tier's encoding, padded to whole
/// steps. Out of line: its stack buffer (up to [`simd::STAGE_CAPACITY`] bytes) would otherwise
/// be reserved, and probed page by page, on every call of [`fc_packed`], also by the paths that
/// need no staging. Called by [`fc_packed`] after its checks of the lengths.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn fc_staged(
    isa: Isa,
    packed: &PackedFilter,
    q: &simd::Requant,
    batches: usize,
    in_features: usize,
    out_features: usize,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let enc = isa.tier().encoding();
    let steps = simd::k_steps(in_features);
    let kp = steps * simd::BLOCK_K;
    let input = bytemuck::cast_slice::<i8, u8>(input);
    let flip = match enc {
        simd::Encoding::Signed => 0u8,
        simd::Encoding::Unsigned => 0x80u8,
    };
    simd::with_stage(batches.saturating_mul(kp), |stage| {
        // Every batch at once when they fit (always for one batch): no division.
        let rows_max = if batches.saturating_mul(kp) <= stage.capacity() {
            batches
        } else {
            (stage.capacity() / kp).max(1)
        };
        let mut b0 = 0;
        while b0 < batches {
            let rows = rows_max.min(batches - b0);
            let mut w = stage.writer();
            // `batches · in_features` is the input's length and `batches · out_features` the
            // output's (checked by `fc_packed`): these products cannot overflow, and the `get`s are
            // always inside (an empty slice otherwise, which the kernel's checks refuse).
            for b in b0..b0 + rows {
                let src = input
                    .get(b * in_features..(b + 1) * in_features)
                    .unwrap_or(&[]);
                w.copy_xor(src, flip);
                w.fill(kp - in_features, 0);
            }
            let staged = w.finish();
            let a = simd::MatrixA {
                data: staged,
                first: 0,
                rows,
                width: rows,
                x_stride: kp,
                y_stride: 0,
                k_steps: steps,
                k_offsets: None,
            };
            let out_rows = output
                .get_mut(b0 * out_features..(b0 + rows) * out_features)
                .unwrap_or(&mut []);
            simd::gemm_checked_quant(
                isa,
                &a,
                packed.weights,
                out_features,
                q,
                out_rows,
                out_features,
            )?;
            b0 += rows;
        }
        Ok(())
    })
}

/// The packed weights of a FULLY_CONNECTED op, if the compiler stored them.
pub fn packed_weights<'a>(
    ctx: &OpCtx<'a>,
    p: &FullyConnectedParams,
    in_features: usize,
    out_features: usize,
) -> Result<Option<PackedFilter<'a>>, Error> {
    PackedFilter::read(
        ctx,
        p.layout,
        p.packed_offset,
        p.folded_bias_offset,
        out_features,
        in_features,
    )
}

/// The kernel a FULLY_CONNECTED op runs on this CPU: a SIMD tier's name or `reference`.
pub(crate) fn kernel_name(ctx: &OpCtx) -> &'static str {
    let Ok(p) = ctx.params::<FullyConnectedParams>() else {
        return "reference";
    };
    let Ok((_, in_f, out_f)) = fc_shapes(ctx, p) else {
        return "reference";
    };
    let packed = matches!(packed_weights(ctx, p, in_f, out_f), Ok(Some(_)));
    fc_fast_isa(Isa::best(), packed, p, in_f).map_or("reference", Isa::name)
}

/// Checks the scalar parameters against the number of outputs.
fn check_params(p: &FullyConnectedParams, out_features: usize) -> Result<(), &'static str> {
    check_quant(p.input_offset, p.output_offset, p.act_min, p.act_max)?;
    if !(-127..=128).contains(&p.filter_offset) {
        return Err("filter_offset");
    }
    let count = p.channel_count as usize;
    if count != 1 && count != out_features {
        return Err("channel_count (1 or the number of outputs)");
    }
    if count != 1 && p.filter_offset != 0 {
        return Err("filter_offset (must be 0 with per-channel weights)");
    }
    if p.layout > LAYOUT_PACKED
        || (p.layout == LAYOUT_REFERENCE && (p.packed_offset != 0 || p.folded_bias_offset != 0))
        || (p.layout == LAYOUT_PACKED && p.filter_offset != 0)
    {
        return Err("layout");
    }
    Ok(())
}

/// `(batches, in_features, out_features)` of the op, checked against the tensors.
fn fc_shapes(ctx: &OpCtx, p: &FullyConnectedParams) -> Result<(usize, usize, usize), Error> {
    let input = ctx.required_input(0)?;
    let weights = ctx.required_input(1)?;
    let output = ctx.output(0)?;
    ctx.expect_dtype(input, DType::Int8)?;
    ctx.expect_dtype(weights, DType::Int8)?;
    ctx.expect_dtype(output, DType::Int8)?;
    let (out_features, in_features) = match weights.1.dims() {
        &[o, i] if o > 0 && i > 0 => (o as usize, i as usize),
        _ => return Err(ctx.shape_error(weights.0, "2-D weights [out, in], both non-zero")),
    };
    let out_last = output.1.dims().last().copied();
    if out_last != Some(out_features as u32) {
        return Err(ctx.shape_error(
            output.0,
            "an output whose last dimension is the weights' rows",
        ));
    }
    // Element counts fit in u32 (validated tensor byte counts), so these products fit in u64.
    let batches = output.1.elements() / out_features as u64;
    if input.1.elements() != batches * in_features as u64 {
        return Err(ctx.shape_error(
            input.0,
            "an input of batches × the weights' columns elements",
        ));
    }
    check_params(p, out_features).map_err(|f| ctx.param_error(f))?;
    Ok((batches as usize, in_features, out_features))
}

/// `(batches, in_features, out_features)` read from the weights' and output's shapes, without
/// [`fc_shapes`]'s dtype, shape and parameter checks: [`validate`] ran them on this op in
/// `Model::from_bytes`, and a loaded model never changes (its bytes are borrowed immutably).
/// The kernels still check every length and parameter they rely on, so an op that skipped
/// validation gets an error, never a panic. Spares ~70 instructions per FULLY_CONNECTED invoke (callgrind).
pub(crate) fn fc_dims(ctx: &OpCtx) -> Result<(usize, usize, usize), Error> {
    let weights = ctx.required_input(1)?;
    let (out_features, in_features) = match weights.1.dims() {
        &[o, i] if o > 0 && i > 0 => (o as usize, i as usize),
        _ => return Err(ctx.shape_error(weights.0, "2-D weights [out, in], both non-zero")),
    };
    // Element counts fit in u32 (validated tensor byte counts). One batch (the usual case)
    // without the division.
    let elements = ctx.output(0)?.1.elements();
    let batches = if elements == out_features as u64 {
        1
    } else {
        elements / out_features as u64
    };
    Ok((batches as usize, in_features, out_features))
}

/// Checks a FULLY_CONNECTED op (see the module documentation).
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &FullyConnectedParams = ctx.params()?;
    if ctx.desc.output_count != 1 {
        return Err(ctx.param_error("output_count"));
    }
    let (_, in_features, out_features) = fc_shapes(ctx, p)?;
    check_bias(ctx, out_features)?;
    packed_weights(ctx, p, in_features, out_features)?;
    let count = p.channel_count as usize;
    let m = ctx.const_array::<i32>(p.multipliers_offset, count)?;
    let s = ctx.const_array::<i32>(p.shifts_offset, count)?;
    check_channel_quant(m, s).map_err(|f| ctx.param_error(f))?;
    Ok(())
}

/// Runs a FULLY_CONNECTED op.
///
/// Relies on what [`validate`] established when the model was loaded (the model's bytes are
/// borrowed immutably, so they still hold): [`check_params`] passed (in particular
/// `filter_offset` is 0 with packed weights), the multipliers and shifts are in range and there
/// are `channel_count` of each, and the input's, weights' and output's shapes agree. So the
/// packed path neither decodes the bias (folded into the packed filter's) nor checks parameter
/// values again; every slice is still taken with checked accessors and every length the
/// kernels rely on is checked, so an inconsistency gives an error, never a panic.
pub(crate) fn eval(ctx: &OpCtx, #[allow(unused_mut)] mut mem: OpMem) -> Result<(), Error> {
    let p: &FullyConnectedParams = ctx.params()?;
    #[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
    if let Some(done) = eval_packed(ctx, p, &mut mem) {
        return done;
    }
    let (batches, in_features, out_features) = fc_dims(ctx)?;
    let count = p.channel_count as usize;
    let multipliers = ctx.const_array::<i32>(p.multipliers_offset, count)?;
    let shifts = ctx.const_array::<i32>(p.shifts_offset, count)?;
    let input = as_i8(mem.required_input(0)?);
    if let Some(isa) = fc_fast_isa(Isa::best(), p.layout == LAYOUT_PACKED, p, in_features) {
        if let Some(packed) = packed_weights(ctx, p, in_features, out_features)? {
            let q = FcQuant::new(p, multipliers, shifts);
            let output = as_i8_mut(mem.output);
            return fc_packed(
                isa,
                &packed,
                &q,
                batches,
                in_features,
                out_features,
                input,
                output,
            );
        }
    }
    let weights = as_i8(mem.required_input(1)?);
    let bias = bias_input(ctx, &mem)?;
    let output = as_i8_mut(mem.output);
    #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
    if crate::simd::mve::fully_connected_int8(
        p,
        batches,
        in_features,
        out_features,
        input,
        weights,
        bias,
        multipliers,
        shifts,
        output,
    )
    .is_some()
    {
        return Ok(());
    }
    #[cfg(feature = "arm-dsp")]
    if crate::simd::arm_dsp::fully_connected_int8(
        p,
        batches,
        in_features,
        out_features,
        input,
        weights,
        bias,
        multipliers,
        shifts,
        output,
    )
    .is_some()
    {
        return Ok(());
    }
    fully_connected_int8(
        p,
        batches,
        in_features,
        out_features,
        input,
        weights,
        bias,
        multipliers,
        shifts,
        output,
    )
}

/// The SIMD path of [`eval`] for packed weights, with every operand looked up by `Option`s
/// that stay in registers (no [`Error`] is built on the way, and nothing is looked up twice):
/// on a one-row layer of 128 × 128 the lookups cost as much as the multiply-adds, and the
/// general accessors return errors through memory. `None` when the op does not take this path
/// (no SIMD tier, reference layout) or an operand is not as [`validate`] left it; [`eval`] then
/// runs its general code, which reports what is wrong.
#[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
fn eval_packed(
    ctx: &OpCtx,
    p: &FullyConnectedParams,
    mem: &mut OpMem,
) -> Option<Result<(), Error>> {
    if p.layout != LAYOUT_PACKED {
        return None;
    }
    let (isa, fc, x) = packed_operands(ctx, p, mem)?;
    let output = as_i8_mut(&mut *mem.output);
    Some(fc_packed(
        isa,
        &fc.packed,
        &fc.quant,
        fc.batches,
        fc.in_features,
        fc.out_features,
        x,
        output,
    ))
}

/// The operands of a FULLY_CONNECTED op on the packed SIMD path (see [`eval_packed`]).
#[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
struct PackedOperands<'a> {
    packed: PackedFilter<'a>,
    quant: FcQuant<'a>,
    batches: usize,
    in_features: usize,
    out_features: usize,
}

/// Looks up [`PackedOperands`] and the input row(s), or `None` (see [`eval_packed`]).
#[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn packed_operands<'c, 'm>(
    ctx: &OpCtx<'c>,
    p: &FullyConnectedParams,
    mem: &OpMem<'m>,
) -> Option<(Isa, PackedOperands<'c>, &'m [i8])> {
    let tensor = |k: usize| ctx.tensors.get(*ctx.io.get(k)? as usize);
    let weights = tensor(1)?;
    let output = tensor(ctx.input_count())?;
    let (out_features, in_features) = match weights.dims() {
        &[o, i] if o > 0 && i > 0 => (o as usize, i as usize),
        _ => return None,
    };
    let isa = fc_fast_isa(Isa::best(), true, p, in_features)?;
    // Element counts fit in u32 (validated tensor byte counts). One batch without the division.
    let elements = output.elements();
    let batches = if elements == out_features as u64 {
        1
    } else {
        elements / out_features as u64
    } as usize;
    let count = p.channel_count as usize;
    let consts = ctx.consts;
    let n2 = out_features.checked_mul(2)?;
    let biases = const_slice::<i32>(consts, p.folded_bias_offset, n2)?;
    let (bias_signed, bias_unsigned) = biases.split_at_checked(out_features)?;
    let packed = PackedFilter {
        weights: const_slice::<i8>(
            consts,
            p.packed_offset,
            simd::packed_len(out_features, in_features)?,
        )?,
        bias_signed,
        bias_unsigned,
    };
    let quant = FcQuant::new(
        p,
        const_slice::<i32>(consts, p.multipliers_offset, count)?,
        const_slice::<i32>(consts, p.shifts_offset, count)?,
    );
    let x = as_i8(mem.arena_input(tensor(0)?)?);
    let fc = PackedOperands {
        packed,
        quant,
        batches,
        in_features,
        out_features,
    };
    Some((isa, fc, x))
}

/// `count` values of `T` at byte `offset` of the constant section, or `None`.
#[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn const_slice<T: bytemuck::Pod>(consts: &[u8], offset: u32, count: usize) -> Option<&[T]> {
    let start = offset as usize;
    let len = count.checked_mul(core::mem::size_of::<T>())?;
    bytemuck::try_cast_slice(consts.get(start..start.checked_add(len)?)?).ok()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::super::conv::tests::{bytes_i8, cases, naive_mbqm, sampled, Harness, Rng};
    use super::super::OpKind;
    use super::*;

    fn params(zp_in: i32, zp_w: i32, zp_out: i32, count: u32) -> FullyConnectedParams {
        FullyConnectedParams {
            input_offset: -zp_in,
            filter_offset: -zp_w,
            output_offset: zp_out,
            act_min: -128,
            act_max: 127,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: count,
            layout: 0,
            packed_offset: 0,
            folded_bias_offset: 0,
        }
    }

    #[test]
    fn hand_computed_per_tensor_with_weight_zero_point() {
        // x = [1, 2, 3] (zp 1 → 0, 1, 2); w zp −1 → w+1; out zp 5; multiplier 0.5.
        let p = params(1, -1, 5, 1);
        let mut out = [0i8; 2];
        fully_connected_int8(
            &p,
            1,
            3,
            2,
            &[1, 2, 3],
            &[0, 1, 2, -1, -1, -1],
            Some(&[1, -1]),
            &[1 << 30],
            &[0],
            &mut out,
        )
        .unwrap();
        // row 0: (1,2,3)·(0,1,2) = 0+2+6 = 8, +1 = 9 → 4.5 → 5 (+5) = 10
        // row 1: (0,0,0)·… = 0, −1 → −0.5 → 0 (ties round toward +∞) (+5) = 5
        assert_eq!(out, [10, 5]);
    }

    #[test]
    fn hand_computed_per_channel_two_batches() {
        let p = params(0, 0, 0, 2);
        let mut out = [0i8; 4];
        fully_connected_int8(
            &p,
            2,
            2,
            2,
            &[1, 2, -3, 4],
            &[1, 1, 2, -1],
            None,
            &[1 << 30, 1 << 30],
            &[1, 0],
            &mut out,
        )
        .unwrap();
        // batch 0: 3 (×1) = 3, 0 (×0.5) = 0; batch 1: 1 → 1, −10 → −5
        assert_eq!(out, [3, 0, 1, -5]);
    }

    /// FC with a rank-4 input [1, 2, 3, 4] read as 2 batches of 12, 5 outputs, output [2, 5].
    fn case(per_channel: bool) -> Harness {
        let mut h = Harness::new(OpKind::FullyConnected);
        let mut r = Rng(77);
        let x = r.i8s(24, -128, 127);
        let w = r.i8s(60, -127, 127);
        h.arena_input(&[1, 2, 3, 4], DType::Int8, bytes_i8(&x[..24]));
        h.const_input(&[5, 12], DType::Int8, bytes_i8(&w[..60]));
        h.const_input(
            &[5],
            DType::Int32,
            bytemuck::cast_slice(&[5i32, -7, 100, 0, -1000]),
        );
        h.set_output(&[2, 5], DType::Int8);
        let n = if per_channel { 5 } else { 1 };
        let (mults, shifts): (Vec<i32>, Vec<i32>) = (0..n).map(|_| r.quant()).unzip();
        let p = FullyConnectedParams {
            multipliers_offset: h.add_i32s(&mults),
            shifts_offset: h.add_i32s(&shifts),
            ..params(-3, if per_channel { 0 } else { 2 }, 11, n as u32)
        };
        h.set_params(&p);
        h
    }

    #[test]
    fn through_validate_and_eval() {
        for per_channel in [false, true] {
            let h = case(per_channel);
            let got = h.run().unwrap();
            let mut r = Rng(77);
            let x = r.i8s(24, -128, 127);
            let w = r.i8s(60, -127, 127);
            let n = if per_channel { 5 } else { 1 };
            let (mults, shifts): (Vec<i32>, Vec<i32>) = (0..n).map(|_| r.quant()).unzip();
            let p: FullyConnectedParams = *bytemuck::from_bytes(bytemuck::cast_slice(&h.params));
            let mut want = [0i8; 10];
            fully_connected_int8(
                &p,
                2,
                12,
                5,
                &x[..24],
                &w[..60],
                Some(&[5, -7, 100, 0, -1000]),
                &mults,
                &shifts,
                &mut want,
            )
            .unwrap();
            assert_eq!(got, bytes_i8(&want));
        }
        // keep_num_dims-style output [1, 2, 5] and no bias.
        let mut h = case(true);
        h.tensors[3].rank = 3;
        h.tensors[3].shape = [1, 2, 5, 0, 0, 0];
        h.inputs[2] = crate::format::NONE;
        assert!(h.run().is_ok());
    }

    #[test]
    fn validate_refuses_corruptions() {
        // Output last dimension ≠ weight rows.
        let mut h = case(false);
        h.tensors[3].shape = [5, 2, 0, 0, 0, 0];
        assert!(h.run().is_err());
        // Input elements ≠ batches × in.
        let mut h = case(false);
        h.tensors[0].shape = [1, 2, 3, 2, 0, 0];
        h.tensors[0].bytes = 12;
        assert!(h.run().is_err());
        // Weights of rank 3.
        let mut h = case(false);
        h.tensors[1].rank = 3;
        h.tensors[1].shape = [5, 12, 1, 0, 0, 0];
        assert!(h.run().is_err());
        // Per-channel with a weight offset.
        let mut h = case(true);
        h.params[1] = 3;
        assert!(h.run().is_err());
        // channel_count neither 1 nor out.
        let mut h = case(true);
        h.params[7] = 4;
        assert!(h.run().is_err());
    }

    #[test]
    fn hostile_params_never_panic() {
        let mut r = Rng(999);
        for _ in 0..cases(3000, 12) {
            let mut h = case(r.range(0, 1) == 1);
            for _ in 0..r.range(1, 4) {
                let k = r.range(0, h.params.len() as i64 - 1) as usize;
                h.params[k] = match r.range(0, 3) {
                    0 => r.next() as u32,
                    1 => r.range(0, 8) as u32,
                    2 => (r.range(-200, 200) as i32) as u32,
                    _ => u32::MAX - r.range(0, 3) as u32,
                };
            }
            let _ = h.run();
        }
    }

    #[test]
    fn special_param_values_never_panic() {
        let values = [
            0u32,
            1,
            2,
            5,
            15,
            17,
            255,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FFFF,
        ];
        for per_channel in [false, true] {
            let fields = case(per_channel).params.len();
            let mut i = 0;
            for k in 0..fields {
                for &v in &values {
                    for &w in &values {
                        i += 1;
                        if !sampled(i) {
                            continue;
                        }
                        let mut h = case(per_channel);
                        h.params[k] = v;
                        h.params[(k + 1) % fields] = w;
                        let _ = h.run();
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_bad_params() {
        let mut out = [0i8; 2];
        // per-channel with a filter offset
        let p = params(0, 3, 0, 2);
        assert!(
            fully_connected_int8(&p, 1, 1, 2, &[1], &[1, 1], None, &[1, 1], &[0, 0], &mut out)
                .is_err()
        );
        // wrong number of multipliers
        let p = params(0, 0, 0, 3);
        assert!(fully_connected_int8(
            &p,
            1,
            1,
            2,
            &[1],
            &[1, 1],
            None,
            &[1, 1, 1],
            &[0, 0, 0],
            &mut out
        )
        .is_err());
        // wrong input length
        let p = params(0, 0, 0, 1);
        assert!(
            fully_connected_int8(&p, 1, 2, 2, &[1], &[1, 1, 1, 1], None, &[1], &[0], &mut out)
                .is_err()
        );
    }

    #[test]
    fn randomized_against_naive() {
        let mut r = Rng(0x5eed);
        for case in 0..cases(500, 12) {
            let batches = r.range(1, 4) as usize;
            let n_in = r.range(1, 64) as usize;
            let n_out = r.range(1, 40) as usize;
            let per_channel = n_out > 1 && r.range(0, 1) == 1;
            let zp_w = if per_channel {
                0
            } else {
                r.range(-5, 5) as i32
            };
            let mut p = params(
                r.range(-128, 127) as i32,
                zp_w,
                r.range(-128, 127) as i32,
                if per_channel { n_out as u32 } else { 1 },
            );
            p.act_min = r.range(-128, 0) as i32;
            p.act_max = r.range(p.act_min as i64, 127) as i32;
            let x = r.i8s(batches * n_in, -128, 127);
            let w = r.i8s(n_in * n_out, -127, 127);
            let mut bias = [0i32; 40];
            let mut mult = [0i32; 40];
            let mut shift = [0i32; 40];
            for c in 0..n_out {
                bias[c] = r.range(-50000, 50000) as i32;
                (mult[c], shift[c]) = r.quant();
            }
            let count = p.channel_count as usize;
            let bias_opt = (r.range(0, 1) == 1).then_some(&bias[..n_out]);
            let mut got = [0i8; 160];
            fully_connected_int8(
                &p,
                batches,
                n_in,
                n_out,
                &x[..batches * n_in],
                &w[..n_in * n_out],
                bias_opt,
                &mult[..count],
                &shift[..count],
                &mut got[..batches * n_out],
            )
            .unwrap();
            // TFLM's loops, literally, with an i64 accumulator.
            for b in 0..batches {
                for c in 0..n_out {
                    let mut acc: i64 = 0;
                    for d in 0..n_in {
                        acc += (w[c * n_in + d] as i64 + p.filter_offset as i64)
                            * (x[b * n_in + d] as i64 + p.input_offset as i64);
                    }
                    if let Some(bias) = bias_opt {
                        acc += bias[c] as i64;
                    }
                    let q = if per_channel { c } else { 0 };
                    let v = naive_mbqm(acc as i32, mult[q], shift[q]) + p.output_offset as i64;
                    let v = v.max(p.act_min as i64).min(p.act_max as i64) as i8;
                    assert_eq!(got[b * n_out + c], v, "case {case} b {b} c {c}");
                }
            }
        }
    }
}
