//! Calibration: activation ranges from representative inputs.
//!
//! An [`Observer`] sees every value of one tensor over all calibration runs and proposes the
//! real range `[lo, hi]` to quantize it with. Ranges are per tensor.
//!
//! - [`ObserverKind::MinMax`]: the smallest and largest value seen.
//! - [`ObserverKind::MovingAverage`]: the moving average (factor 0.01, as TensorFlow's
//!   `MovingAverageQuantize`) of each run's min and max.
//! - [`ObserverKind::Percentile`]: the 0.01 % and 99.99 % percentiles (a 4096-bin histogram
//!   over the min/max range).
//! - [`ObserverKind::Entropy`]: the clipping threshold minimising the KL divergence between the
//!   histogram of non-zero `|x|` and its 128-level quantization (256 levels for one-sided
//!   tensors; the TensorRT calibration algorithm), then `[max(min, −T), min(max, T)]`.
//! - [`ObserverKind::Mse`]: the range `[lo, hi]` (bin edges of the histogram, containing 0)
//!   minimising the expected squared error of 8-bit quantization: rounding error `Δ²/12` per
//!   value inside the range (`Δ = (hi − lo)/255`) plus the squared distance to the range of each
//!   value clipped. Exact zeros are not counted (0 is always exactly representable).
//!
//! Histogram observers need the range first, so calibration makes two passes over the data:
//! [`Calibrator::observe_range`] for every sample, then [`Calibrator::observe_hist`] for every
//! sample.

use std::fmt;
use std::str::FromStr;

/// Histogram bins of the percentile and entropy observers.
pub const BINS: usize = 4096;

/// The observer kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObserverKind {
    /// Global min/max.
    MinMax,
    /// Moving average of per-run min/max.
    MovingAverage,
    /// 0.01 % / 99.99 % percentiles.
    Percentile,
    /// KL-divergence (entropy) threshold.
    Entropy,
    /// Range minimising the expected 8-bit quantization MSE.
    Mse,
}

impl ObserverKind {
    /// Whether a histogram pass is needed.
    pub fn needs_histogram(self) -> bool {
        matches!(
            self,
            ObserverKind::Percentile | ObserverKind::Entropy | ObserverKind::Mse
        )
    }
}

impl FromStr for ObserverKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(ObserverKind::MinMax),
            "moving-average" | "ema" => Ok(ObserverKind::MovingAverage),
            "percentile" => Ok(ObserverKind::Percentile),
            "entropy" | "kl" => Ok(ObserverKind::Entropy),
            "mse" => Ok(ObserverKind::Mse),
            _ => Err(format!(
                "unknown observer {s:?} (minmax, moving-average, percentile, entropy, mse)"
            )),
        }
    }
}

impl fmt::Display for ObserverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObserverKind::MinMax => "minmax",
            ObserverKind::MovingAverage => "moving-average",
            ObserverKind::Percentile => "percentile",
            ObserverKind::Entropy => "entropy",
            ObserverKind::Mse => "mse",
        })
    }
}

/// The statistics of one tensor.
#[derive(Debug, Clone)]
pub struct Observer {
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
    ema: Option<(f32, f32)>,
    /// Histogram over `[min, max]` (percentile) — filled in the second pass.
    hist: Vec<u64>,
    /// Histogram of `|x|` over `[0, max(|min|, |max|)]` (entropy).
    abs_hist: Vec<u64>,
    /// Exact zeros seen in the second pass (they are in `hist` too).
    zeros: u64,
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            ema: None,
            hist: Vec::new(),
            abs_hist: Vec::new(),
            zeros: 0,
        }
    }
}

impl Observer {
    /// First pass: one run's values.
    pub fn observe_range(&mut self, v: &[f32]) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &x in v.iter().filter(|x| x.is_finite()) {
            lo = lo.min(x);
            hi = hi.max(x);
        }
        if lo > hi {
            return;
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        self.ema = Some(match self.ema {
            None => (lo, hi),
            Some((a, b)) => (a + 0.01 * (lo - a), b + 0.01 * (hi - b)),
        });
    }

    /// Second pass: one run's values into the histograms.
    pub fn observe_hist(&mut self, v: &[f32]) {
        if self.min.partial_cmp(&self.max).is_none_or(|o| o.is_gt()) {
            return;
        }
        if self.hist.is_empty() {
            self.hist = vec![0; BINS];
            self.abs_hist = vec![0; BINS];
        }
        let width = (self.max - self.min).max(f32::MIN_POSITIVE);
        let amax = self.min.abs().max(self.max.abs()).max(f32::MIN_POSITIVE);
        for &x in v.iter().filter(|x| x.is_finite()) {
            let b = (((x - self.min) / width) * BINS as f32) as usize;
            self.hist[b.min(BINS - 1)] += 1;
            // Exact zeros (ReLU outputs, padding) are skipped, as pytorch-quantization's
            // `skip_zeros`: they would dominate the distribution and make heavy clipping look
            // free.
            if x == 0.0 {
                self.zeros += 1;
            } else {
                let a = ((x.abs() / amax) * BINS as f32) as usize;
                self.abs_hist[a.min(BINS - 1)] += 1;
            }
        }
    }

    /// The range to quantize with, or `None` when nothing was seen.
    pub fn range(&self, kind: ObserverKind) -> Option<(f32, f32)> {
        if self.min.partial_cmp(&self.max).is_none_or(|o| o.is_gt()) {
            return None;
        }
        let r = match kind {
            ObserverKind::MinMax => (self.min, self.max),
            ObserverKind::MovingAverage => self.ema.unwrap_or((self.min, self.max)),
            ObserverKind::Percentile if !self.hist.is_empty() => {
                let width = self.max - self.min;
                let lo = percentile_bin(&self.hist, 0.0001) as f32 / BINS as f32;
                let hi = (percentile_bin(&self.hist, 0.9999) + 1) as f32 / BINS as f32;
                (self.min + lo * width, self.min + hi * width)
            }
            ObserverKind::Entropy if !self.abs_hist.is_empty() => {
                let amax = self.min.abs().max(self.max.abs());
                // One-sided tensors get all 256 levels of the asymmetric int8 range.
                let levels = if self.min >= 0.0 || self.max <= 0.0 {
                    256
                } else {
                    128
                };
                let t = kl_threshold(&self.abs_hist, levels) as f32 / BINS as f32 * amax;
                (self.min.max(-t), self.max.min(t))
            }
            ObserverKind::Mse if !self.hist.is_empty() => {
                let mut h = self.hist.clone();
                if self.zeros > 0 {
                    let width = (self.max - self.min).max(f32::MIN_POSITIVE);
                    let b = ((-self.min / width) * BINS as f32) as usize;
                    let b = b.min(BINS - 1);
                    h[b] = h[b].saturating_sub(self.zeros);
                }
                mse_range(&h, self.min, self.max)
            }
            _ => (self.min, self.max),
        };
        Some(r)
    }
}

/// Levels of the 8-bit grid [`mse_range`] optimises for.
const LEVELS: f64 = 255.0;

/// The range `[lo, hi]` (edges of `hist`, a histogram over `[min, max]`, every 16th edge
/// tried, widened to contain 0) with the smallest expected squared error of quantizing the
/// histogram's values to 256 levels over it: `Δ²/12` per value inside (`Δ = (hi − lo)/255`),
/// plus the squared distance to the nearest end per value outside (values at bin centres).
pub fn mse_range(hist: &[u64], min: f32, max: f32) -> (f32, f32) {
    let n = hist.len();
    let (min64, max64) = (f64::from(min), f64::from(max));
    let width = (max64 - min64) / n as f64;
    if n == 0 || width <= 0.0 {
        return (min, max);
    }
    // Prefix sums of count, count·x, count·x² (x = bin centre).
    let mut p0 = vec![0f64; n + 1];
    let mut p1 = vec![0f64; n + 1];
    let mut p2 = vec![0f64; n + 1];
    for (i, &c) in hist.iter().enumerate() {
        let c = c as f64;
        let x = min64 + (i as f64 + 0.5) * width;
        p0[i + 1] = p0[i] + c;
        p1[i + 1] = p1[i] + c * x;
        p2[i + 1] = p2[i] + c * x * x;
    }
    if p0[n] == 0.0 {
        return (min, max);
    }
    // Σ c·(x − t)² over bins [a, b).
    let sq = |a: usize, b: usize, t: f64| {
        let (s0, s1, s2) = (p0[b] - p0[a], p1[b] - p1[a], p2[b] - p2[a]);
        (s2 - 2.0 * t * s1 + t * t * s0).max(0.0)
    };
    let step = (n / 256).max(1);
    let edges: Vec<usize> = (0..=n).step_by(step).chain(std::iter::once(n)).collect();
    let mut best = (f64::INFINITY, min64, max64);
    for (ia, &a) in edges.iter().enumerate() {
        for &b in &edges[ia + 1..] {
            let lo = (min64 + a as f64 * width).min(0.0);
            let hi = (min64 + b as f64 * width).max(0.0);
            if hi <= lo {
                continue;
            }
            let delta = (hi - lo) / LEVELS;
            let inside = p0[b] - p0[a];
            let cost = inside * delta * delta / 12.0 + sq(0, a, lo) + sq(b, n, hi);
            if cost < best.0 {
                best = (cost, lo, hi);
            }
        }
    }
    (best.1 as f32, best.2 as f32)
}

/// The bin holding quantile `q` of a histogram.
fn percentile_bin(hist: &[u64], q: f64) -> usize {
    let total: u64 = hist.iter().sum();
    let target = (q * total as f64).ceil() as u64;
    let mut acc = 0;
    for (i, &c) in hist.iter().enumerate() {
        acc += c;
        if acc >= target.max(1) {
            return i;
        }
    }
    hist.len() - 1
}

/// The number of leading bins of `hist` whose clipped, `levels`-level quantization has the
/// smallest KL divergence from the clipped distribution.
pub fn kl_threshold(hist: &[u64], levels: usize) -> usize {
    let n = hist.len();
    let total: u64 = hist.iter().sum();
    if total == 0 || n <= levels {
        return n;
    }
    let mut best = (f64::INFINITY, n);
    let step = (n / 256).max(1);
    let mut i = levels;
    while i <= n {
        // Reference: first i bins, outliers added to the last one.
        let mut p: Vec<f64> = hist[..i].iter().map(|&c| c as f64).collect();
        let outliers: u64 = hist[i..].iter().sum();
        p[i - 1] += outliers as f64;
        // Candidate: merge the i bins into `levels` groups, spread back over non-empty bins.
        let mut q = vec![0f64; i];
        for l in 0..levels {
            let a = l * i / levels;
            let b = ((l + 1) * i / levels).max(a + 1);
            let sum: f64 = hist[a..b].iter().map(|&c| c as f64).sum();
            let nz = hist[a..b].iter().filter(|&&c| c > 0).count();
            if nz > 0 {
                for j in a..b {
                    if hist[j] > 0 {
                        q[j] = sum / nz as f64;
                    }
                }
            }
        }
        let ps: f64 = p.iter().sum();
        let qs: f64 = q.iter().sum();
        let mut kl = 0.0;
        for j in 0..i {
            if p[j] > 0.0 {
                let pj = p[j] / ps;
                let qj = if q[j] > 0.0 { q[j] / qs } else { 1e-12 };
                kl += pj * (pj / qj).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
        i += step;
    }
    best.1
}

/// Observers for every tensor of a graph.
#[derive(Debug, Clone)]
pub struct Calibrator {
    /// One observer per tensor id (constants are never observed).
    pub observers: Vec<Observer>,
    /// Runs seen in the first pass.
    pub runs: usize,
}

impl Calibrator {
    /// Observers for `tensors` tensors.
    pub fn new(tensors: usize) -> Self {
        Calibrator {
            observers: vec![Observer::default(); tensors],
            runs: 0,
        }
    }

    /// First pass: every tensor value of one run (`None` entries are skipped).
    pub fn observe_range(&mut self, values: &[Option<Vec<f32>>], skip: &[bool]) {
        self.runs += 1;
        for (i, v) in values.iter().enumerate() {
            if let (Some(v), false) = (v, skip.get(i).copied().unwrap_or(true)) {
                self.observers[i].observe_range(v);
            }
        }
    }

    /// Second pass: histograms.
    pub fn observe_hist(&mut self, values: &[Option<Vec<f32>>], skip: &[bool]) {
        for (i, v) in values.iter().enumerate() {
            if let (Some(v), false) = (v, skip.get(i).copied().unwrap_or(true)) {
                self.observers[i].observe_hist(v);
            }
        }
    }

    /// The range of every tensor under `kind`.
    pub fn ranges(&self, kind: ObserverKind) -> Vec<Option<(f32, f32)>> {
        self.observers.iter().map(|o| o.range(kind)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_and_percentile() {
        let mut o = Observer::default();
        let mut v: Vec<f32> = (0..100_000).map(|i| (i as f32) / 100_000.0).collect();
        v.push(1000.0); // one outlier
        o.observe_range(&v);
        o.observe_hist(&v);
        assert_eq!(o.range(ObserverKind::MinMax), Some((0.0, 1000.0)));
        let (lo, hi) = o.range(ObserverKind::Percentile).unwrap();
        assert!(lo >= 0.0 && hi < 2.0, "{lo} {hi}");
    }

    #[test]
    fn entropy_clips_a_long_tail() {
        let mut o = Observer::default();
        // Gaussian-like bulk plus rare large values.
        let mut v = Vec::new();
        let mut s = 1u64;
        for _ in 0..50_000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5;
            v.push(u * u * u * 8.0);
        }
        v.push(40.0);
        o.observe_range(&v);
        o.observe_hist(&v);
        let (_, hi) = o.range(ObserverKind::Entropy).unwrap();
        assert!(hi < 40.0 && hi > 0.1, "{hi}");
    }

    #[test]
    fn mse_clips_exponential_tails_but_not_uniform_data() {
        // A Laplace distribution (exponential tails, scale 1, |x| up to ln(2·10⁵) ≈ 12.2): the
        // MSE-optimal 8-bit clip is about 9.9 (Banner et al., "ACIQ", 2019).
        let mut o = Observer::default();
        let n = 100_000;
        let mut v: Vec<f32> = (0..n)
            .map(|i| {
                let x = -(((i / 2) as f64 + 0.5) / (n / 2) as f64).ln() as f32;
                if i % 2 == 0 {
                    x
                } else {
                    -x
                }
            })
            .collect();
        o.observe_range(&v);
        o.observe_hist(&v);
        let (lo, hi) = o.range(ObserverKind::Mse).unwrap();
        assert!(
            lo > -11.0 && lo < -8.0 && hi < 11.0 && hi > 8.0,
            "{lo} {hi}"
        );
        // Uniform data: (nearly) the full range.
        v = (0..100_000).map(|i| (i as f32) / 100_000.0 - 0.5).collect();
        let mut o = Observer::default();
        o.observe_range(&v);
        o.observe_hist(&v);
        let (lo, hi) = o.range(ObserverKind::Mse).unwrap();
        assert!(lo <= -0.49 && hi >= 0.49, "{lo} {hi}");
    }

    #[test]
    fn parse_names() {
        for k in ["minmax", "moving-average", "percentile", "entropy", "mse"] {
            assert_eq!(k.parse::<ObserverKind>().unwrap().to_string(), k);
        }
        assert!("x".parse::<ObserverKind>().is_err());
    }
}
