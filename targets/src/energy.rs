//! Latency and energy *estimates* from a profile's operating point and cycle model.
//!
//! Units: µA/MHz × MHz = µA; µA × V = µW; µW × s = µJ. Equivalently µW/MHz = pJ per cycle, so
//! energy in µJ = cycles × (µW/MHz) / 10⁶. Everything here is a model: reports must label its
//! results "estimated" (see [`EnergyEstimate::LABEL`]); measured energy comes from a meter.

use crate::profile::TargetProfile;

/// The kernel family of an operator, which selects its cycles-per-MAC figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// Standard 2-D convolution.
    Conv,
    /// Depthwise convolution.
    Depthwise,
    /// Fully connected (matrix-vector / matrix-matrix).
    FullyConnected,
    /// Elementwise and pooling kernels (add, activation, average/max pool, softmax, ...);
    /// `macs` counts output elements.
    Elementwise,
}

/// Per-operator cost counts, as the compiler writes them into a `.mote` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpCounts {
    /// Multiply-accumulates (for [`KernelKind::Elementwise`]: output elements).
    pub macs: u64,
    /// The kernel family.
    pub kind: KernelKind,
    /// Bytes of constants (weights, biases, tables) read from flash.
    pub const_bytes_read: u64,
    /// Bytes read from the arena.
    pub arena_bytes_read: u64,
    /// Bytes written to the arena.
    pub arena_bytes_written: u64,
}

/// An estimated cycle count, latency and energy at a profile's operating point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnergyEstimate {
    /// Cycles at the profile's clock.
    pub cycles: u64,
    /// Latency in µs.
    pub latency_us: f64,
    /// Energy in µJ at the supply.
    pub energy_uj: f64,
}

impl EnergyEstimate {
    /// How results of this type must be labelled in reports.
    pub const LABEL: &'static str = "estimated";

    /// The zero estimate (no work).
    pub const ZERO: EnergyEstimate = EnergyEstimate {
        cycles: 0,
        latency_us: 0.0,
        energy_uj: 0.0,
    };

    /// The sum of two estimates (operators run one after another).
    pub fn plus(self, other: EnergyEstimate) -> EnergyEstimate {
        EnergyEstimate {
            cycles: self.cycles.saturating_add(other.cycles),
            latency_us: self.latency_us + other.latency_us,
            energy_uj: self.energy_uj + other.energy_uj,
        }
    }
}

impl TargetProfile {
    /// Estimated active power at the default operating point, in µW.
    pub fn active_power_uw(&self) -> f64 {
        self.operating_point.active_power_uw(self.clock_hz)
    }

    /// Estimated energy per core clock cycle, in pJ (µW/MHz).
    pub fn energy_per_cycle_pj(&self) -> f64 {
        self.active_power_uw() / self.clock_mhz()
    }

    /// Latency of `cycles` at the default clock, in µs.
    pub fn latency_us(&self, cycles: u64) -> f64 {
        cycles as f64 / self.clock_mhz()
    }

    /// Estimated energy of `cycles` of active execution: cycles × pJ/cycle.
    pub fn estimate_for_cycles(&self, cycles: u64) -> EnergyEstimate {
        EnergyEstimate {
            cycles,
            latency_us: self.latency_us(cycles),
            energy_uj: cycles as f64 * self.energy_per_cycle_pj() / 1e6,
        }
    }

    /// Estimated energy of a measured latency (µs) of active execution: µW × s.
    pub fn estimate_for_latency_us(&self, latency_us: f64) -> EnergyEstimate {
        EnergyEstimate {
            cycles: non_negative_round(latency_us * self.clock_mhz()),
            latency_us,
            energy_uj: self.active_power_uw() * latency_us / 1e6,
        }
    }

    /// Estimated cycles of one operator from its counts, by the profile's cycle model.
    pub fn estimate_cycles(&self, op: &OpCounts) -> u64 {
        let m = &self.cycle_model;
        let per_mac = match op.kind {
            KernelKind::Conv => m.conv_cycles_per_mac,
            KernelKind::Depthwise => m.depthwise_cycles_per_mac,
            KernelKind::FullyConnected => m.fully_connected_cycles_per_mac,
            KernelKind::Elementwise => m.elementwise_cycles_per_element,
        };
        non_negative_round(
            m.per_op_overhead_cycles
                + op.macs as f64 * per_mac
                + op.const_bytes_read as f64 * m.flash_read_cycles_per_byte
                + op.arena_bytes_read as f64 * m.sram_read_cycles_per_byte
                + op.arena_bytes_written as f64 * m.sram_write_cycles_per_byte,
        )
    }

    /// Estimated cycles, latency and energy of one operator.
    pub fn estimate_op(&self, op: &OpCounts) -> EnergyEstimate {
        self.estimate_for_cycles(self.estimate_cycles(op))
    }

    /// Estimated cycles, latency and energy of operators run one after another.
    pub fn estimate_ops(&self, ops: &[OpCounts]) -> EnergyEstimate {
        ops.iter().fold(EnergyEstimate::ZERO, |acc, op| {
            acc.plus(self.estimate_op(op))
        })
    }

    fn clock_mhz(&self) -> f64 {
        self.clock_hz as f64 / 1e6
    }
}

/// Rounds a non-negative finite value to the nearest integer (core has no `f64::round`).
fn non_negative_round(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        (x + 0.5) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ActivePower, OperatingPoint, Regulator};
    use crate::profiles::{by_id, STM32L4R5};
    use std::println;

    /// 1 µA/MHz at 1 V on a 1 MHz clock is 1 µW = 1 pJ/cycle; 10⁶ cycles take 1 s and 1 µJ.
    #[test]
    fn units() {
        let p = TargetProfile {
            clock_hz: 1_000_000,
            operating_point: OperatingPoint {
                supply_v: 1.0,
                regulator: Regulator::Ldo,
                note: "",
                active: ActivePower::CurrentPerMhz {
                    ua_per_mhz: 1.0,
                    at_v: 1.0,
                },
            },
            ..STM32L4R5
        };
        assert!((p.active_power_uw() - 1.0).abs() < 1e-12);
        assert!((p.energy_per_cycle_pj() - 1.0).abs() < 1e-12);
        let e = p.estimate_for_cycles(1_000_000);
        assert!((e.latency_us - 1e6).abs() < 1e-6);
        assert!((e.energy_uj - 1.0).abs() < 1e-12);
        let l = p.estimate_for_latency_us(1e6);
        assert_eq!(l.cycles, 1_000_000);
        assert!((l.energy_uj - 1.0).abs() < 1e-12);
    }

    #[test]
    fn cycles_and_latency_paths_agree() {
        for p in crate::ALL {
            let cycles = 12_345_678;
            let a = p.estimate_for_cycles(cycles);
            let b = p.estimate_for_latency_us(a.latency_us);
            assert_eq!(a.cycles, b.cycles, "{}", p.id);
            assert!(
                (a.energy_uj - b.energy_uj).abs() <= 1e-9 * a.energy_uj,
                "{}",
                p.id
            );
        }
    }

    #[test]
    fn op_estimate_follows_the_cycle_model() {
        let p = &STM32L4R5;
        let m = &p.cycle_model;
        let op = OpCounts {
            macs: 1000,
            kind: KernelKind::Depthwise,
            const_bytes_read: 100,
            arena_bytes_read: 200,
            arena_bytes_written: 300,
        };
        let want = m.per_op_overhead_cycles
            + 1000.0 * m.depthwise_cycles_per_mac
            + 100.0 * m.flash_read_cycles_per_byte
            + 200.0 * m.sram_read_cycles_per_byte
            + 300.0 * m.sram_write_cycles_per_byte;
        assert_eq!(p.estimate_cycles(&op), (want + 0.5) as u64);
        let e = p.estimate_op(&op);
        assert_eq!(e, p.estimate_for_cycles(e.cycles));

        let conv = OpCounts {
            kind: KernelKind::Conv,
            ..op
        };
        let both = p.estimate_ops(&[op, conv]);
        assert_eq!(
            both.cycles,
            p.estimate_cycles(&op) + p.estimate_cycles(&conv)
        );
        assert!((both.energy_uj - e.energy_uj - p.estimate_op(&conv).energy_uj).abs() < 1e-9);
        assert_eq!(p.estimate_ops(&[]), EnergyEstimate::ZERO);
    }

    #[test]
    fn zero_work_costs_only_the_overhead() {
        let op = OpCounts {
            macs: 0,
            kind: KernelKind::Elementwise,
            const_bytes_read: 0,
            arena_bytes_read: 0,
            arena_bytes_written: 0,
        };
        for p in crate::ALL {
            let c = p.estimate_cycles(&op);
            assert_eq!(
                c,
                (p.cycle_model.per_op_overhead_cycles + 0.5) as u64,
                "{}",
                p.id
            );
        }
    }

    /// X-CUBE-AI 10.2 MLPerf Tiny v1.3 results (ANCHORS.md): latency ms and energy µJ as
    /// published. The estimate is measured latency × active power at the profile's operating
    /// point; it must land within ±20% of the published energy.
    const PUBLISHED: [(&str, &str, f64, f64); 12] = [
        ("stm32l4r5", "KWS", 43.4, 1431.0),
        ("stm32l4r5", "VWW", 89.4, 3030.0),
        ("stm32l4r5", "IC", 165.7, 5496.0),
        ("stm32l4r5", "AD", 4.8, 160.0),
        ("stm32u385", "KWS", 48.3, 245.0),
        ("stm32u385", "VWW", 98.7, 519.0),
        ("stm32u385", "IC", 182.4, 966.0),
        ("stm32u385", "AD", 5.4, 31.8),
        ("stm32u575", "KWS", 29.0, 664.0),
        ("stm32u575", "VWW", 59.3, 1372.0),
        ("stm32u575", "IC", 109.5, 2565.0),
        ("stm32u575", "AD", 3.2, 77.0),
    ];

    #[test]
    fn calibration_against_mlperf_tiny_x_cube_ai_10_2() {
        println!(
            "{:<10} {:<4} {:>9} {:>14} {:>14} {:>7}",
            "target", "task", "ms", "estimated µJ", "published µJ", "ratio"
        );
        let mut worst: f64 = 0.0;
        for (id, task, ms, published_uj) in PUBLISHED {
            let p = by_id(id).expect("profile");
            let est = p.estimate_for_latency_us(ms * 1000.0).energy_uj;
            let ratio = est / published_uj;
            println!("{id:<10} {task:<4} {ms:>9.1} {est:>14.1} {published_uj:>14.1} {ratio:>7.3}");
            worst = worst.max((ratio - 1.0).abs());
            assert!(
                (0.8..=1.2).contains(&ratio),
                "{id} {task}: ratio {ratio:.3} outside ±20%"
            );
        }
        println!("worst deviation: {:.1}%", worst * 100.0);
    }

    #[test]
    fn the_calibrated_list_is_the_calibration_table() {
        for id in crate::profiles::CALIBRATED {
            assert!(PUBLISHED.iter().any(|(p, ..)| p == id), "{id}");
        }
        for (id, ..) in PUBLISHED {
            assert!(crate::profiles::CALIBRATED.contains(&id), "{id}");
        }
    }
}
