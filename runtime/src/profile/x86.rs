//! x86-64: the time-stamp counter (`RDTSC`).
//!
//! On current cores the TSC is *invariant*: it ticks at a constant reference rate whatever the
//! core clock does (CPUID leaf 0x8000_0007, EDX bit 8 says so), so it measures time, not core
//! cycles. Its rate is not architecturally readable everywhere, so under `std` it is calibrated
//! against `std::time::Instant`.
#![allow(unsafe_code)]

use core::arch::x86_64::{__cpuid, _mm_lfence, _rdtsc};

use super::{Clock, TickUnit};

/// The x86-64 time-stamp counter as a [`Clock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscClock {
    hz: u64,
}

impl TscClock {
    /// A TSC clock whose rate is known (from CPUID leaf 0x15, a datasheet, or a calibration).
    pub const fn with_frequency(hz: u64) -> Self {
        TscClock { hz }
    }

    /// Measures the TSC rate against `std::time::Instant` over `window` (10–100 ms is plenty;
    /// the error is about the timer's resolution divided by the window).
    #[cfg(feature = "std")]
    pub fn calibrate(window: std::time::Duration) -> Self {
        let t0 = std::time::Instant::now();
        let c0 = read();
        while t0.elapsed() < window {
            core::hint::spin_loop();
        }
        let c1 = read();
        let secs = t0.elapsed().as_secs_f64();
        let hz = if secs > 0.0 {
            (c1.saturating_sub(c0) as f64 / secs) as u64
        } else {
            0
        };
        TscClock { hz }
    }

    /// Whether the CPU reports an invariant TSC (constant rate across P-, C- and T-states).
    /// Hypervisors sometimes hide the bit although the TSC is stable.
    pub fn invariant() -> bool {
        // SAFETY: CPUID is available on every x86-64 CPU; reading any leaf has no side effects
        // (leaves above the maximum return unspecified data, hence the check first).
        #[allow(unused_unsafe)]
        let (max_ext, edx) = unsafe {
            let max_ext = __cpuid(0x8000_0000).eax;
            let edx = if max_ext >= 0x8000_0007 {
                __cpuid(0x8000_0007).edx
            } else {
                0
            };
            (max_ext, edx)
        };
        max_ext >= 0x8000_0007 && edx & (1 << 8) != 0
    }
}

/// `LFENCE; RDTSC`: the fence keeps the read from being executed before earlier instructions.
fn read() -> u64 {
    // SAFETY: LFENCE (SSE2) and RDTSC are part of the x86-64 baseline; they only read the
    // counter and order loads.
    #[allow(unused_unsafe)]
    unsafe {
        _mm_lfence();
        _rdtsc()
    }
}

impl Clock for TscClock {
    fn now(&mut self) -> u64 {
        read()
    }
    fn ticks_per_second(&self) -> u64 {
        self.hz
    }
    fn unit(&self) -> TickUnit {
        TickUnit::TimerTicks
    }
    fn name(&self) -> &'static str {
        "x86 RDTSC"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsc_advances() {
        let mut c = TscClock::with_frequency(1_000_000_000);
        let a = c.now();
        let mut x = 0u64;
        for i in 0..10_000u64 {
            x = x.wrapping_add(core::hint::black_box(i));
        }
        core::hint::black_box(x);
        let b = c.now();
        assert!(b > a, "{a} {b}");
        assert_eq!(c.ticks_per_second(), 1_000_000_000);
        assert_eq!(c.unit(), TickUnit::TimerTicks);
        assert_eq!(c.name(), "x86 RDTSC");
        // Just exercised; the answer depends on the machine.
        let _ = TscClock::invariant();
    }

    /// The calibrated rate agrees with Instant: 20 ms measured both ways within 10% (loose
    /// bounds: this runs on a noisy shared machine).
    #[cfg(feature = "std")]
    #[test]
    fn calibration_matches_instant() {
        let mut c = TscClock::calibrate(std::time::Duration::from_millis(20));
        assert!(c.ticks_per_second() > 100_000_000, "{:?}", c);
        let t0 = std::time::Instant::now();
        let a = c.now();
        while t0.elapsed() < std::time::Duration::from_millis(20) {
            core::hint::spin_loop();
        }
        let b = c.now();
        let by_instant = t0.elapsed().as_secs_f64() * 1e6;
        let by_tsc = super::super::ticks_to_us(b - a, c.ticks_per_second()).unwrap();
        assert!(
            (by_tsc / by_instant - 1.0).abs() < 0.1,
            "{by_tsc} µs by TSC vs {by_instant} µs by Instant"
        );
    }
}
