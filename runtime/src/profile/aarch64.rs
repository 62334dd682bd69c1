//! aarch64: the generic timer's virtual count (`CNTVCT_EL0`) and the PMU cycle counter
//! (`PMCCNTR_EL0`).
//!
//! `CNTVCT_EL0` and its rate `CNTFRQ_EL0` are readable from user space on Linux (the kernel sets
//! `CNTKCTL_EL1.EL0VCTEN`); the rate is fixed (54 MHz on Raspberry Pi 4 and 5, 1 GHz on Armv8.6+
//! cores). The PMU cycle counter counts core cycles, but EL0 may read it only when the kernel set
//! `PMUSERENR_EL0.EN` or `.CR`, which Linux does not do by default; reading it otherwise traps
//! (SIGILL). [`PmuCycleClock::detect`] therefore reads it only after checking, and callers fall
//! back to [`CntvctClock`].
#![allow(unsafe_code)]

use core::arch::asm;

use super::{Clock, TickUnit};

fn read_cntfrq() -> u64 {
    let v: u64;
    // SAFETY: CNTFRQ_EL0 is readable at EL0 on every Armv8-A system with the generic timer
    // (architecturally required); reading it has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn read_cntvct() -> u64 {
    let v: u64;
    // SAFETY: as CNTFRQ_EL0; the ISB keeps the read from being performed early. No `nomem`, so
    // the compiler does not move memory accesses across it either.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nostack, preserves_flags)) };
    v
}

/// The generic timer's virtual count as a [`Clock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CntvctClock {
    hz: u64,
}

impl CntvctClock {
    /// A clock at the rate the system reports in `CNTFRQ_EL0`.
    pub fn new() -> Self {
        CntvctClock { hz: read_cntfrq() }
    }
}

impl Default for CntvctClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for CntvctClock {
    fn now(&mut self) -> u64 {
        read_cntvct()
    }
    fn ticks_per_second(&self) -> u64 {
        self.hz
    }
    fn unit(&self) -> TickUnit {
        TickUnit::TimerTicks
    }
    fn name(&self) -> &'static str {
        "aarch64 CNTVCT_EL0"
    }
}

/// The PMU cycle counter (`PMCCNTR_EL0`) as a [`Clock`], where the OS allows user-space reads.
#[cfg(all(feature = "std", target_os = "linux"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmuCycleClock {
    hz: u64,
}

#[cfg(all(feature = "std", target_os = "linux"))]
fn read_pmuserenr() -> u64 {
    let v: u64;
    // SAFETY: only called when the kernel exposes an Armv8 PMU (FEAT_PMUv3), in which case
    // PMUSERENR_EL0 is readable at EL0 (Arm ARM: "at EL0, PMUSERENR is always RO").
    unsafe { asm!("mrs {}, pmuserenr_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

#[cfg(all(feature = "std", target_os = "linux"))]
fn read_pmccntr() -> u64 {
    let v: u64;
    // SAFETY: only called after PMUSERENR_EL0.EN or .CR was seen set, which enables EL0 reads of
    // PMCCNTR_EL0; the read has no side effects.
    unsafe { asm!("isb", "mrs {}, pmccntr_el0", out(reg) v, options(nostack, preserves_flags)) };
    v
}

#[cfg(all(feature = "std", target_os = "linux"))]
impl PmuCycleClock {
    /// The PMU cycle counter, if this process may read it and it is counting: the kernel must
    /// expose an Armv8 PMU (`/sys/bus/event_source/devices/armv8*`), `PMUSERENR_EL0` must enable
    /// EL0 reads of the cycle counter, and the counter must advance. Its rate (the core clock,
    /// which DVFS may change) is calibrated against `std::time::Instant` over 10 ms.
    pub fn detect() -> Option<Self> {
        if !linux_exposes_armv8_pmu() {
            return None;
        }
        // EN (bit 0) enables all EL0 PMU access, CR (bit 2) the cycle counter alone.
        if read_pmuserenr() & 0b101 == 0 {
            return None;
        }
        let t0 = std::time::Instant::now();
        let c0 = read_pmccntr();
        while t0.elapsed() < std::time::Duration::from_millis(10) {
            core::hint::spin_loop();
        }
        let c1 = read_pmccntr();
        let secs = t0.elapsed().as_secs_f64();
        if c1 <= c0 || secs <= 0.0 {
            return None;
        }
        Some(PmuCycleClock {
            hz: ((c1 - c0) as f64 / secs) as u64,
        })
    }
}

#[cfg(all(feature = "std", target_os = "linux"))]
fn linux_exposes_armv8_pmu() -> bool {
    std::fs::read_dir("/sys/bus/event_source/devices")
        .map(|dir| {
            dir.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("armv8"))
        })
        .unwrap_or(false)
}

#[cfg(all(feature = "std", target_os = "linux"))]
impl Clock for PmuCycleClock {
    fn now(&mut self) -> u64 {
        read_pmccntr()
    }
    fn ticks_per_second(&self) -> u64 {
        self.hz
    }
    fn unit(&self) -> TickUnit {
        TickUnit::CoreCycles
    }
    fn name(&self) -> &'static str {
        "aarch64 PMCCNTR_EL0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtual_count_advances_at_its_reported_rate() {
        let mut c = CntvctClock::default();
        assert!(c.ticks_per_second() > 0);
        let a = c.now();
        let mut x = 0u64;
        for i in 0..100_000u64 {
            x = x.wrapping_add(core::hint::black_box(i));
        }
        core::hint::black_box(x);
        let b = c.now();
        assert!(b > a, "{a} {b}");
        assert_eq!(c.unit(), TickUnit::TimerTicks);
        assert_eq!(c.name(), "aarch64 CNTVCT_EL0");
    }

    /// Where the PMU is readable the detected clock advances; elsewhere (most Linux systems,
    /// QEMU user mode) detection declines and nothing traps.
    #[cfg(all(feature = "std", target_os = "linux"))]
    #[test]
    fn pmu_detection_falls_back_cleanly() {
        match PmuCycleClock::detect() {
            Some(mut c) => {
                let a = c.now();
                let b = c.now();
                assert!(b >= a);
                assert!(c.ticks_per_second() > 0);
                assert_eq!(c.unit(), TickUnit::CoreCycles);
                assert_eq!(c.name(), "aarch64 PMCCNTR_EL0");
            }
            None => assert!(CntvctClock::new().ticks_per_second() > 0),
        }
    }
}
