//! One-row matrix kernel: FULLY_CONNECTED with one batch, `out = requantize(W · x + bias)`.
//!
//! [`super::gemm`] keeps one row's outputs in a tile of 8 blocks of 16 outputs and walks the 8
//! blocks' weights side by side: 8 read streams, each `steps · 64` bytes apart. On a batch-1
//! layer nothing reuses the weights, so the kernel runs at the speed the weights come from L2, and
//! 8 streams at a power-of-two distance fall in the same few L1 sets and slow each other down
//! (264 KB of ad01_int8's weights: 1.96 µs in 8 streams against 1.36 µs read front to back, on an
//! AVX-512 VNNI host). The kernel here reads the packed matrix front to back instead — block by
//! block, which [`super::pack_weights`]'s layout stores contiguously — with several accumulators
//! over the reduction steps so that the multiply-adds do not wait on each other. It reads the row
//! straight from the arena (signed bytes), converting each 4-byte step to the tier's encoding in a
//! register, so nothing is staged.

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
use super::{packed_len, simd_error, Tier};
use super::{Isa, Requant};
use crate::error::Error;

/// `out[c] = requantize(Σₖ x[k] · W[c][k] + q.bias[c])` for `c < n`, with `W` the `n × x.len()`
/// matrix packed by [`super::pack_weights`] and `q.bias` the bias folded for `isa`'s
/// [`super::Encoding`] ([`super::fold_bias`]); `x` holds signed bytes, whatever the encoding.
///
/// `None` when `isa` has no one-row kernel (then [`super::gemm`] on a one-row matrix computes the
/// same bytes). Otherwise checks every length (an error, never a panic) and `q`'s array lengths
/// and clamp, not the values of its multipliers and shifts: out-of-range values give wrong
/// numbers, never an out-of-bounds access (as [`super::gemm_checked_quant`]).
pub(crate) fn gemv_checked_quant(
    isa: Isa,
    x: &[i8],
    packed: &[i8],
    n: usize,
    q: &Requant,
    out: &mut [i8],
) -> Option<Result<(), Error>> {
    match isa.tier() {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Tier::Avx512Vnni => {
            let lens_ok =
                packed_len(n, x.len()).is_some_and(|len| len <= packed.len()) && n <= out.len();
            if !lens_ok {
                return Some(Err(simd_error("one-row matrix kernel shape")));
            }
            if let Err(e) = q.check_lengths(n) {
                return Some(Err(e));
            }
            // SAFETY: `isa` proves the CPU runs AVX-512 VNNI; the packed matrix holds
            // `packed_len(n, x.len())` bytes, `out` at least `n`, and `q` passed `check_lengths`
            // for `n` outputs: what `vnni` reads and writes.
            unsafe { vnni(x.as_ptr(), x.len(), packed.as_ptr(), n, q, out.as_mut_ptr()) };
            Some(Ok(()))
        }
        _ => {
            let _ = (x, packed, n, q, out);
            None
        }
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[allow(clippy::incompatible_msrv)]
mod x86 {
    #[cfg(target_arch = "x86")]
    use core::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    use core::mem::MaybeUninit;
    use core::ptr;

    use super::super::x86::vnni::Stage;
    use super::super::{Requant, BLOCK_K, BLOCK_N};

    /// Bytes of one packed step of one block.
    const STEP: usize = BLOCK_N * BLOCK_K;
    /// Accumulators per block: independent chains of `vpdpbusd` over the reduction steps.
    const CHAINS: usize = 4;

    /// Most activations [`vnni`] converts to unsigned bytes once, in a stack buffer, before the
    /// blocks (longer rows convert each step in the loop).
    const CONVERTED: usize = 2048;

    /// The one-row kernel on AVX-512 VNNI (see the module documentation).
    ///
    /// `vpdpbusd` multiplies unsigned by signed bytes: the activations go unsigned (x + 128, the
    /// top bit flipped) and the folded bias for that encoding makes up for it. Converted once,
    /// each step is one broadcast load and one multiply-add: a flip in the loop would be a third
    /// vector instruction per 64 weight bytes, on a loop that issues close to the vector units'
    /// throughput.
    ///
    /// # Safety
    /// The CPU runs AVX-512 F/BW/VL and VNNI; `x .. x + k` is readable; `w` points at
    /// `packed_len(n, k)` readable bytes; `o .. o + n` is writable; `q` passed
    /// `Requant::check_lengths(n)`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn vnni(
        x: *const i8,
        k: usize,
        w: *const i8,
        n: usize,
        q: &Requant,
        o: *mut i8,
    ) {
        let steps = k.div_ceil(BLOCK_K);
        if k > CONVERTED {
            // SAFETY: the caller's guarantee.
            unsafe { blocks::<true>(x.cast(), k, steps, w, n, q, o) };
            return;
        }
        let mut buf = [const { MaybeUninit::<u8>::uninit() }; CONVERTED];
        let b = buf.as_mut_ptr().cast::<u8>();
        let flip = _mm512_set1_epi8(0x80_u8 as i8);
        let mut i = 0;
        while i < k {
            let len = (k - i).min(64);
            let mask = if len == 64 {
                u64::MAX
            } else {
                (1u64 << len) - 1
            };
            // SAFETY: bytes i .. i + len of the row are readable; the mask keeps the load to
            // them (the other lanes are zero). `i` is a multiple of 64 below k ≤ CONVERTED (a
            // multiple of 64), so the 64 bytes at i are inside the buffer.
            unsafe {
                let v = _mm512_maskz_loadu_epi8(mask, x.add(i));
                _mm512_storeu_si512(b.add(i).cast(), _mm512_xor_si512(v, flip));
            }
            i += 64;
        }
        // SAFETY: the buffer's first `k` rounded up to 64 bytes (≥ 4·steps) are written: every
        // step of the row is initialized; the padding lanes meet zero weights.
        unsafe { blocks::<false>(b.cast_const(), steps * BLOCK_K, steps, w, n, q, o) };
    }

    /// The blocks of [`vnni`], over `k` activations at `x`: signed bytes converted per step when
    /// `CONVERT`, else unsigned bytes already, readable up to `4·steps` (then `k = 4·steps`).
    ///
    /// # Safety
    /// As [`vnni`], with the reads of `x` above.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn blocks<const CONVERT: bool>(
        x: *const u8,
        k: usize,
        steps: usize,
        w: *const i8,
        n: usize,
        q: &Requant,
        o: *mut i8,
    ) {
        let full = k / BLOCK_K;
        let flip = _mm512_set1_epi32(if CONVERT { 0x8080_8080_u32 as i32 } else { 0 });
        // The last, partial step, zero-padded: the packed weights are zero past `k`, so the
        // padding bytes add nothing whatever they are.
        let mut last = [0u8; BLOCK_K];
        for (i, b) in last.iter_mut().enumerate().take(k - full * BLOCK_K) {
            // SAFETY: `full · 4 + i < k`.
            *b = unsafe { *x.add(full * BLOCK_K + i) };
        }
        let tail = _mm512_xor_si512(_mm512_set1_epi32(i32::from_le_bytes(last)), flip);
        let step_x = |s: usize| {
            // SAFETY: s < full: the 4 bytes at 4s are inside the row.
            let v =
                _mm512_set1_epi32(unsafe { ptr::read_unaligned(x.add(s * BLOCK_K).cast::<i32>()) });
            if CONVERT {
                _mm512_xor_si512(v, flip)
            } else {
                v
            }
        };
        let mut wb = w;
        let mut c0 = 0;
        while c0 < n {
            let mut acc = [_mm512_setzero_si512(); CHAINS];
            let mut s = 0;
            while s + CHAINS <= full {
                for (u, a) in acc.iter_mut().enumerate() {
                    // SAFETY: step s + u < steps of this block, inside the packed matrix.
                    let wv = unsafe { _mm512_loadu_si512(wb.add((s + u) * STEP).cast()) };
                    *a = _mm512_dpbusd_epi32(*a, step_x(s + u), wv);
                }
                s += CHAINS;
            }
            while s < full {
                // SAFETY: as above.
                let wv = unsafe { _mm512_loadu_si512(wb.add(s * STEP).cast()) };
                acc[0] = _mm512_dpbusd_epi32(acc[0], step_x(s), wv);
                s += 1;
            }
            if steps > full {
                // SAFETY: the last step of this block.
                let wv = unsafe { _mm512_loadu_si512(wb.add(full * STEP).cast()) };
                acc[1] = _mm512_dpbusd_epi32(acc[1], tail, wv);
            }
            let sum = _mm512_add_epi32(
                _mm512_add_epi32(acc[0], acc[1]),
                _mm512_add_epi32(acc[2], acc[3]),
            );
            let count = (n - c0).min(BLOCK_N);
            // SAFETY: outputs c0 .. c0 + count ≤ n, and `q` passed `check_lengths(n)`. The exact
            // (two-step) rounding: the one-step form would first need a scan of every bias and
            // shift (`fast_ok`), for a few instructions per block of 16 outputs.
            let (stage, bias) = unsafe { Stage::new(q, c0, count, false) };
            let bytes = stage.apply(_mm512_add_epi32(sum, bias));
            // SAFETY: outputs c0 .. c0 + count ≤ n of `o`; the mask limits the store.
            unsafe { _mm_mask_storeu_epi8(o.add(c0), ((1u32 << count) - 1) as u16, bytes) };
            // SAFETY: the next block (or one past the matrix's end, not read).
            wb = unsafe { wb.add(steps * STEP) };
            c0 += BLOCK_N;
        }
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
use x86::vnni;

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::super::exact_tests::{act_range, bias, channel_quant, for_each_isa};
    use super::super::{fold_bias, gemm_portable, pack_weights, packed_len, Encoding, MatrixA};
    use super::*;

    /// A one-row case: `k` activations, `n` outputs (up to the widths of the MLPerf Tiny layers).
    fn case() -> impl Strategy<Value = (usize, usize, bool)> {
        (
            prop_oneof![
                2 => 1usize..=40,
                2 => 1usize..=700,
                1 => (1usize..=200).prop_map(|v| 4 * v),
                // Past what the kernel converts up front (`CONVERTED`).
                1 => 2040usize..=2120,
            ],
            prop_oneof![2 => 1usize..=40, 1 => 1usize..=700],
            any::<bool>(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every tier's one-row kernel (those that have one) gives the bytes of the portable
        /// matrix kernel on the same operands.
        #[test]
        fn gemv_matches_portable(
            (k, n, per_tensor) in case(),
            seed in any::<u64>(),
            in_offset in -127i32..=128,
            out_off in -128i32..=127,
            act in act_range(),
            quant in channel_quant(700),
            b in bias(700),
        ) {
            let mut r = seed;
            let mut next = move || { r ^= r << 13; r ^= r >> 7; r ^= r << 17; r };
            let x: Vec<i8> = (0..k).map(|_| next() as i8).collect();
            let w: Vec<i8> = (0..n * k).map(|_| next() as i8).collect();
            let mut packed = vec![0i8; packed_len(n, k).unwrap()];
            pack_weights(&w, n, k, &mut packed).unwrap();
            let (mut signed, mut unsigned) = (vec![0i32; n], vec![0i32; n]);
            fold_bias(&w, n, k, Some(&b[..n]), in_offset, &mut signed, &mut unsigned).unwrap();
            let count = if per_tensor { 1 } else { n };
            let q_of = |bias| Requant {
                bias: Some(bias),
                multipliers: &quant.0[..count],
                shifts: &quant.1[..count],
                output_offset: out_off,
                act_min: act.0,
                act_max: act.1,
            };
            // The oracle: the portable kernel on the row in the signed encoding, zero-padded.
            let steps = k.div_ceil(4);
            let mut row = vec![0u8; steps * 4];
            for (d, &v) in row.iter_mut().zip(&x) {
                *d = v as u8;
            }
            let a = MatrixA { data: &row, first: 0, rows: 1, width: 1, x_stride: 0, y_stride: 0, k_steps: steps, k_offsets: None };
            let mut want = vec![0i8; n];
            gemm_portable(Encoding::Signed, &a, &packed, n, &q_of(&signed), &mut want, n);
            for_each_isa(|isa| {
                let folded = match isa.tier().encoding() {
                    Encoding::Signed => &signed,
                    Encoding::Unsigned => &unsigned,
                };
                let mut got = vec![0x55i8; n + 3];
                if let Some(res) = gemv_checked_quant(isa, &x, &packed, n, &q_of(folded), &mut got) {
                    res.unwrap();
                    assert_eq!(&got[..n], &want[..], "{}", isa.name());
                    assert_eq!(&got[n..], &[0x55; 3], "{}: wrote past the outputs", isa.name());
                }
            });
        }
    }

    /// Operands too short for the shape are refused, never read past.
    #[test]
    fn refuses_short_operands() {
        let (k, n) = (10, 20);
        let x = vec![1i8; k];
        let packed = vec![1i8; packed_len(n, k).unwrap()];
        let bias = vec![0i32; n];
        let q = Requant {
            bias: Some(&bias),
            multipliers: &[1 << 30],
            shifts: &[-1],
            output_offset: 0,
            act_min: -128,
            act_max: 127,
        };
        for_each_isa(|isa| {
            let mut out = vec![0i8; n];
            let Some(ok) = gemv_checked_quant(isa, &x, &packed, n, &q, &mut out) else {
                return;
            };
            assert!(ok.is_ok());
            assert!(gemv_checked_quant(isa, &x, &packed[1..], n, &q, &mut out)
                .unwrap()
                .is_err());
            assert!(gemv_checked_quant(isa, &x, &packed, n, &q, &mut out[1..])
                .unwrap()
                .is_err());
            let short_bias = Requant {
                bias: Some(&bias[1..]),
                ..q
            };
            assert!(
                gemv_checked_quant(isa, &x, &packed, n, &short_bias, &mut out)
                    .unwrap()
                    .is_err()
            );
        });
    }
}
