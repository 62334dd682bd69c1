//! Audio front ends: WAV reading and the MLPerf Tiny keyword-spotting MFCC.
//!
//! [`kws_mfcc`] reproduces the feature pipeline of mlcommons/tiny
//! `benchmark/training/keyword_spotting/get_dataset.py` (feature type `mfcc`): the 1-s clip
//! (16,000 samples at 16 kHz) is divided by its maximum, framed into 49 windows of 480 samples
//! (30 ms) every 320 samples (20 ms), multiplied by a periodic Hann window, transformed with a
//! 512-point FFT (magnitudes of the 257 bins, as `tf.signal.stft(fft_length=None)`), warped to
//! 40 mel bands between 20 Hz and 4 kHz (`tf.signal.linear_to_mel_weight_matrix`, HTK mel
//! scale, DC bin zeroed), `ln(mel + 1e-6)`, and reduced to the first 10 coefficients of
//! `tf.signal.mfccs_from_log_mel_spectrograms` (DCT-II scaled by `1/sqrt(2·40)`). Output:
//! 49 × 10, frame-major, the input of `kws_ref_model`.

use std::f64::consts::PI;

/// Sample rate of the KWS front end.
pub const SAMPLE_RATE: usize = 16_000;
/// Window length in samples (30 ms).
pub const WINDOW: usize = 480;
/// Stride in samples (20 ms).
pub const STRIDE: usize = 320;
/// FFT length.
pub const FFT: usize = 512;
/// Mel bands.
pub const MEL_BANDS: usize = 40;
/// MFCC coefficients kept.
pub const MFCC: usize = 10;
/// Frames per 1-s clip.
pub const FRAMES: usize = 49;

/// Reads a 16-bit PCM WAV file's first channel as floats in [−1, 1), with its sample rate.
pub fn read_wav_pcm16(bytes: &[u8]) -> Result<(Vec<f32>, u32), String> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut pos = 12;
    let (mut channels, mut rate, mut bits) = (0u16, 0u32, 0u16);
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body = bytes
            .get(pos + 8..pos + 8 + len)
            .ok_or_else(|| "truncated chunk".to_string())?;
        if id == b"fmt " && len >= 16 {
            let fmt = u16::from_le_bytes([body[0], body[1]]);
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            bits = u16::from_le_bytes([body[14], body[15]]);
            if fmt != 1 || bits != 16 || channels == 0 {
                return Err(format!(
                    "format {fmt}, {bits} bits, {channels} channels: only 16-bit PCM"
                ));
            }
        } else if id == b"data" {
            if bits != 16 {
                return Err("data chunk before fmt chunk".into());
            }
            let frame = 2 * channels as usize;
            let v = body
                .chunks_exact(frame)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
                .collect();
            return Ok((v, rate));
        }
        pos += 8 + len + (len & 1);
    }
    Err("no data chunk".into())
}

fn hz_to_mel(f: f64) -> f64 {
    1127.0 * (1.0 + f / 700.0).ln()
}

/// The mel weight matrix, `[bins][MEL_BANDS]`, as `tf.signal.linear_to_mel_weight_matrix`.
fn mel_matrix() -> Vec<[f64; MEL_BANDS]> {
    let bins = FFT / 2 + 1;
    let nyquist = SAMPLE_RATE as f64 / 2.0;
    let (lo, hi) = (hz_to_mel(20.0), hz_to_mel(4000.0));
    let edges: Vec<f64> = (0..MEL_BANDS + 2)
        .map(|i| lo + (hi - lo) * i as f64 / (MEL_BANDS + 1) as f64)
        .collect();
    let mut m = vec![[0f64; MEL_BANDS]; bins];
    for (b, row) in m.iter_mut().enumerate().skip(1) {
        let mel = hz_to_mel(nyquist * b as f64 / (bins - 1) as f64);
        for (k, w) in row.iter_mut().enumerate() {
            let (l, c, u) = (edges[k], edges[k + 1], edges[k + 2]);
            let lower = (mel - l) / (c - l);
            let upper = (u - mel) / (u - c);
            *w = lower.min(upper).max(0.0);
        }
    }
    m
}

/// MFCC features (49 × 10, frame-major) of a 1-s clip of 16,000 samples (shorter clips are
/// zero-padded, longer ones truncated).
pub fn kws_mfcc(clip: &[f32]) -> Vec<f32> {
    let mut x = vec![0f64; SAMPLE_RATE];
    for (d, &s) in x.iter_mut().zip(clip) {
        *d = f64::from(s);
    }
    let peak = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if peak > 0.0 {
        for v in &mut x {
            *v /= peak;
        }
    }
    let bins = FFT / 2 + 1;
    let window: Vec<f64> = (0..WINDOW)
        .map(|n| 0.5 - 0.5 * (2.0 * PI * n as f64 / WINDOW as f64).cos())
        .collect();
    // DFT tables for the 257 bins over the 480 non-zero samples of each 512-point frame.
    let mut cos_t = vec![0f64; bins * WINDOW];
    let mut sin_t = vec![0f64; bins * WINDOW];
    for k in 0..bins {
        for n in 0..WINDOW {
            let a = 2.0 * PI * ((k * n) % FFT) as f64 / FFT as f64;
            cos_t[k * WINDOW + n] = a.cos();
            sin_t[k * WINDOW + n] = a.sin();
        }
    }
    let mel = mel_matrix();
    let mut out = Vec::with_capacity(FRAMES * MFCC);
    let mut frame = vec![0f64; WINDOW];
    for f in 0..FRAMES {
        for n in 0..WINDOW {
            frame[n] = x[f * STRIDE + n] * window[n];
        }
        let mut mels = [0f64; MEL_BANDS];
        for k in 0..bins {
            let (mut re, mut im) = (0.0, 0.0);
            let (c, s) = (
                &cos_t[k * WINDOW..(k + 1) * WINDOW],
                &sin_t[k * WINDOW..(k + 1) * WINDOW],
            );
            for n in 0..WINDOW {
                re += frame[n] * c[n];
                im -= frame[n] * s[n];
            }
            let mag = (re * re + im * im).sqrt();
            for (m, w) in mels.iter_mut().zip(&mel[k]) {
                *m += mag * w;
            }
        }
        let logm: Vec<f64> = mels.iter().map(|m| (m + 1e-6).ln()).collect();
        let scale = 1.0 / (2.0 * MEL_BANDS as f64).sqrt();
        for k in 0..MFCC {
            let mut s = 0.0;
            for (n, l) in logm.iter().enumerate() {
                s += l * (PI * k as f64 * (2 * n + 1) as f64 / (2 * MEL_BANDS) as f64).cos();
            }
            out.push((2.0 * s * scale) as f32);
        }
    }
    out
}

/// `audio` sampled at `from` Hz, resampled to `to` Hz (e.g. speech recorded or synthesized at
/// 22.05, 44.1 or 48 kHz, for the front end's [`SAMPLE_RATE`]). Band-limited interpolation: a
/// Hann-windowed sinc with 16 zero crossings on each side, its cutoff at 95 % of the lower
/// Nyquist frequency, so content above the new Nyquist frequency is filtered out rather than
/// folded into the band. Unchanged when the rates are equal (or either is 0).
pub fn resample(audio: &[f32], from: usize, to: usize) -> Vec<f32> {
    if from == to || from == 0 || to == 0 || audio.is_empty() {
        return audio.to_vec();
    }
    const ZEROS: f64 = 16.0;
    let step = from as f64 / to as f64;
    // Cutoff as a fraction of the input rate's Nyquist frequency.
    let cutoff = 0.95 * (to as f64 / from as f64).min(1.0);
    let half = ZEROS / cutoff;
    let len = audio.len() * to / from;
    (0..len)
        .map(|i| {
            let centre = i as f64 * step;
            let lo = (centre - half).ceil().max(0.0) as usize;
            let hi = ((centre + half).floor() as usize).min(audio.len() - 1);
            let mut acc = 0.0;
            for (k, &x) in audio.iter().enumerate().take(hi + 1).skip(lo) {
                let d = k as f64 - centre;
                let t = d * cutoff;
                let sinc = if t.abs() < 1e-12 {
                    1.0
                } else {
                    (PI * t).sin() / (PI * t)
                };
                let window = 0.5 + 0.5 * (PI * d / half).cos();
                acc += f64::from(x) * cutoff * sinc * window;
            }
            acc as f32
        })
        .collect()
}

/// MFCC windows of `audio` (16 kHz): one 1-s clip every `hop` samples.
pub fn kws_windows(audio: &[f32], hop: usize) -> Vec<Vec<f32>> {
    let mut v = Vec::new();
    let mut start = 0;
    while start + SAMPLE_RATE <= audio.len() {
        v.push(kws_mfcc(&audio[start..start + SAMPLE_RATE]));
        start += hop.max(1);
    }
    v
}

/// Random perturbations of calibration audio, for [`augment_audio`]: each copy of the audio
/// gets its own draw of every parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioAugment {
    /// Speed perturbation: the audio is resampled by a factor drawn uniformly from
    /// `[1 − speed, 1 + speed]` (tempo and pitch change together, as Kaldi's speed
    /// perturbation). Off (0) by default: for calibrating the MLPerf Tiny KWS model it lowered
    /// the SQNR on a calibration-side validation split (`tests/fidelity_table.rs`).
    pub speed: f32,
    /// Gain drawn uniformly from `[−gain_db, +gain_db]` dB. The MFCC front end divides each clip
    /// by its peak, so gain alone changes nothing; it changes the level of the speech relative to
    /// the (absolute) noise floor below.
    pub gain_db: f32,
    /// Additive white noise at an RMS level drawn uniformly from this range, in dBFS (a
    /// microphone/ADC noise floor); fills digital silence as a real front end would see it.
    pub noise_dbfs: (f32, f32),
    /// Probability that a copy gets no noise at all (keeps some exact digital silence).
    pub p_clean: f32,
    /// Time shift: each copy drops a random number of leading samples in `[0, shift)`, so its
    /// windows start between those of the original.
    pub shift: usize,
}

impl Default for AudioAugment {
    /// No speed change, ±6 dB gain, noise at −75…−55 dBFS on half of the copies, shifts up to
    /// 100 ms.
    fn default() -> Self {
        AudioAugment {
            speed: 0.0,
            gain_db: 6.0,
            noise_dbfs: (-75.0, -55.0),
            p_clean: 0.5,
            shift: SAMPLE_RATE / 10,
        }
    }
}

/// A small deterministic generator (xorshift64*) for augmentation.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [a, b).
    fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.next()
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.next().max(1e-300);
        let v = self.next();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
}

/// `copies` randomly perturbed versions of `audio` (16 kHz, values in [−1, 1]): speed
/// perturbation, gain, a leading time shift and low-level additive noise as `aug` describes,
/// then clipped to [−1, 1]. Deterministic in `seed`. Use it to give calibration (or
/// distillation) more realistic variety than a few seconds of audio hold; keep the audio it
/// sees disjoint from the audio any held-out check uses.
pub fn augment_audio(audio: &[f32], copies: usize, aug: &AudioAugment, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..copies)
        .map(|_| {
            let speed = rng.range(f64::from(1.0 - aug.speed), f64::from(1.0 + aug.speed));
            let gain =
                10f64.powf(rng.range(-f64::from(aug.gain_db), f64::from(aug.gain_db)) / 20.0);
            let shift = (rng.next() * aug.shift as f64) as usize;
            let noise = if rng.next() < f64::from(aug.p_clean) {
                0.0
            } else {
                10f64.powf(
                    rng.range(f64::from(aug.noise_dbfs.0), f64::from(aug.noise_dbfs.1)) / 20.0,
                )
            };
            // Output sample i reads input position (i + shift) · speed, linearly interpolated.
            let len = ((audio.len() as f64 / speed) as usize).saturating_sub(shift + 1);
            (0..len)
                .map(|i| {
                    let p = (i + shift) as f64 * speed;
                    let k = p as usize;
                    let t = p - k as f64;
                    let a = f64::from(audio.get(k).copied().unwrap_or(0.0));
                    let b = f64::from(audio.get(k + 1).copied().unwrap_or(0.0));
                    let v = gain * (a + t * (b - a)) + noise * rng.normal();
                    v.clamp(-1.0, 1.0) as f32
                })
                .collect()
        })
        .collect()
}

/// MFCC windows every `hop` samples of `audio` and of `copies` augmented versions of it
/// ([`augment_audio`] with `aug` and `seed`): the original windows first.
pub fn kws_windows_augmented(
    audio: &[f32],
    hop: usize,
    copies: usize,
    aug: &AudioAugment,
    seed: u64,
) -> Vec<Vec<f32>> {
    let mut v = kws_windows(audio, hop);
    for a in augment_audio(audio, copies, aug, seed) {
        v.extend(kws_windows(&a, hop));
    }
    v
}

/// Natural-image-like RGB images (`n` × 32 × 32 × 3, values in [0, 255], NHWC), for
/// calibrating and checking image models when no real images are at hand.
///
/// Each image is a random field with the `1/f` amplitude spectrum of natural images (random
/// phases, a DC-free 32 × 32 inverse DFT per channel), channels mixed through a random
/// correlated colour matrix, plus one to three soft-edged random discs (objects with edges),
/// then scaled to a random brightness and contrast and clipped to [0, 255]. Deterministic in
/// `seed`. They are not CIFAR-10 images: class decisions on them are arbitrary, so they measure
/// agreement between two versions of a model, not accuracy.
pub fn natural_images(n: usize, seed: u64) -> Vec<Vec<f32>> {
    const S: usize = 32;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut cos_t = vec![0f64; S * S];
    let mut sin_t = vec![0f64; S * S];
    for k in 0..S {
        for x in 0..S {
            let a = 2.0 * PI * ((k * x) % S) as f64 / S as f64;
            cos_t[k * S + x] = a.cos();
            sin_t[k * S + x] = a.sin();
        }
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut planes = Vec::with_capacity(3);
        for _ in 0..3 {
            // Spectrum coefficients with amplitude 1/f and random phase.
            let mut re = vec![0f64; S * S];
            let mut im = vec![0f64; S * S];
            for u in 0..S {
                for v in 0..S {
                    let fu = u.min(S - u) as f64;
                    let fv = v.min(S - v) as f64;
                    let f = (fu * fu + fv * fv).sqrt();
                    if f == 0.0 {
                        continue;
                    }
                    let ph = 2.0 * PI * rnd();
                    re[u * S + v] = ph.cos() / f;
                    im[u * S + v] = ph.sin() / f;
                }
            }
            // Real part of the inverse DFT, separably: rows then columns.
            let mut tmp_re = vec![0f64; S * S];
            let mut tmp_im = vec![0f64; S * S];
            for u in 0..S {
                for y in 0..S {
                    let (mut a, mut b) = (0.0, 0.0);
                    for v in 0..S {
                        let (c, s) = (cos_t[v * S + y], sin_t[v * S + y]);
                        a += re[u * S + v] * c - im[u * S + v] * s;
                        b += re[u * S + v] * s + im[u * S + v] * c;
                    }
                    tmp_re[u * S + y] = a;
                    tmp_im[u * S + y] = b;
                }
            }
            let mut p = vec![0f64; S * S];
            for x in 0..S {
                for y in 0..S {
                    let mut a = 0.0;
                    for u in 0..S {
                        a += tmp_re[u * S + y] * cos_t[u * S + x]
                            - tmp_im[u * S + y] * sin_t[u * S + x];
                    }
                    p[x * S + y] = a;
                }
            }
            let sd = (p.iter().map(|v| v * v).sum::<f64>() / (S * S) as f64)
                .sqrt()
                .max(1e-9);
            p.iter_mut().for_each(|v| *v /= sd);
            planes.push(p);
        }
        // Correlated colours: mostly luminance, some chroma.
        let mut mix = [[0f64; 3]; 3];
        for (c, row) in mix.iter_mut().enumerate() {
            for (k, m) in row.iter_mut().enumerate() {
                *m = if k == 0 { 0.8 } else { 0.3 * (rnd() - 0.5) }
                    + if c == k && k > 0 { 0.2 } else { 0.0 };
            }
        }
        let mut img = vec![0f64; S * S * 3];
        for i in 0..S * S {
            for c in 0..3 {
                img[i * 3 + c] = (0..3).map(|k| mix[c][k] * planes[k][i]).sum();
            }
        }
        // Objects: soft discs of a random colour.
        let discs = 1 + (rnd() * 3.0) as usize;
        for _ in 0..discs {
            let (cx, cy, r) = (rnd() * S as f64, rnd() * S as f64, 3.0 + rnd() * 10.0);
            let col = [rnd() * 4.0 - 2.0, rnd() * 4.0 - 2.0, rnd() * 4.0 - 2.0];
            for y in 0..S {
                for x in 0..S {
                    let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                    let a = (1.0 / (1.0 + ((d - r) * 1.5).exp())).clamp(0.0, 1.0);
                    for c in 0..3 {
                        let v = &mut img[(y * S + x) * 3 + c];
                        *v = *v * (1.0 - a) + col[c] * a;
                    }
                }
            }
        }
        let (bright, contrast) = (60.0 + 130.0 * rnd(), 25.0 + 40.0 * rnd());
        out.push(
            img.iter()
                .map(|v| (bright + contrast * v).clamp(0.0, 255.0) as f32)
                .collect(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmentation_is_deterministic_and_bounded() {
        let audio: Vec<f32> = (0..32_000)
            .map(|n| 0.9 * (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 16000.0).sin())
            .collect();
        let aug = AudioAugment {
            speed: 0.1,
            ..AudioAugment::default()
        };
        let a = augment_audio(&audio, 6, &aug, 7);
        assert_eq!(a, augment_audio(&audio, 6, &aug, 7));
        assert_ne!(a, augment_audio(&audio, 6, &aug, 8));
        for c in &a {
            // Speed within ±10 % and a shift below 100 ms set the length.
            assert!(c.len() > 32_000 * 10 / 11 - 1600 && c.len() <= 32_000 * 10 / 9);
            assert!(c.iter().all(|v| v.abs() <= 1.0));
        }
        // Nothing perturbed: the copies are the audio itself.
        let none = AudioAugment {
            speed: 0.0,
            gain_db: 0.0,
            noise_dbfs: (-100.0, -100.0),
            p_clean: 1.0,
            shift: 0,
        };
        for c in augment_audio(&audio, 2, &none, 1) {
            assert_eq!(c.len(), audio.len() - 1);
            assert!(c.iter().zip(&audio).all(|(x, y)| (x - y).abs() < 1e-6));
        }
        // The original windows come first, then those of each copy.
        let w = kws_windows_augmented(&audio, 8000, 2, &aug, 3);
        assert_eq!(w[..3], kws_windows(&audio, 8000)[..]);
        assert!(w.len() > 3);
    }

    #[test]
    fn mel_matrix_rows() {
        let m = mel_matrix();
        assert_eq!(m.len(), 257);
        assert!(m[0].iter().all(|&w| w == 0.0));
        // Above 4 kHz (bin 128) every weight is zero.
        assert!(m[129..].iter().all(|r| r.iter().all(|&w| w == 0.0)));
    }

    #[test]
    fn sine_has_energy_in_the_right_band() {
        let clip: Vec<f32> = (0..16000)
            .map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 16000.0).sin())
            .collect();
        let f = kws_mfcc(&clip);
        assert_eq!(f.len(), 490);
        assert!(f.iter().all(|v| v.is_finite()));
    }

    /// A tone at `hz` sampled at `rate`, `secs` long.
    fn tone(hz: f64, rate: usize, secs: f64) -> Vec<f32> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| (0.5 * (2.0 * PI * hz * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    #[test]
    fn resampling_keeps_the_band_and_removes_what_would_fold() {
        // Equal rates: unchanged.
        let a = tone(440.0, 16_000, 0.1);
        assert_eq!(resample(&a, 16_000, 16_000), a);
        for from in [22_050, 44_100, 48_000, 8_000] {
            // A 1-kHz tone comes out as the same tone sampled at 16 kHz (away from the ends).
            let r = resample(&tone(1000.0, from, 0.5), from, 16_000);
            assert_eq!(r.len(), 8_000, "{from}");
            let want = tone(1000.0, 16_000, 0.5);
            let err = r[200..7_800]
                .iter()
                .zip(&want[200..7_800])
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 0.01, "{from} Hz: max error {err}");
        }
        // A 10-kHz tone above the new Nyquist frequency (8 kHz) is filtered out, not folded
        // to 6 kHz as point sampling or linear interpolation would.
        for from in [22_050, 44_100, 48_000] {
            let r = resample(&tone(10_000.0, from, 0.5), from, 16_000);
            let rms = (r[200..7_800].iter().map(|v| v * v).sum::<f32>() / 7_600.0).sqrt();
            assert!(rms < 0.01, "{from} Hz: rms {rms}");
        }
    }
}
