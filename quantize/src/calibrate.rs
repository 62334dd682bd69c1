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
}

impl ObserverKind {
    /// Whether a histogram pass is needed.
    pub fn needs_histogram(self) -> bool {
        matches!(self, ObserverKind::Percentile | ObserverKind::Entropy)
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
            _ => Err(format!(
                "unknown observer {s:?} (minmax, moving-average, percentile, entropy)"
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
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            ema: None,
            hist: Vec::new(),
            abs_hist: Vec::new(),
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
            if x != 0.0 {
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
            _ => (self.min, self.max),
        };
        Some(r)
    }
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
    fn parse_names() {
        for k in ["minmax", "moving-average", "percentile", "entropy"] {
            assert_eq!(k.parse::<ObserverKind>().unwrap().to_string(), k);
        }
        assert!("x".parse::<ObserverKind>().is_err());
    }
}
