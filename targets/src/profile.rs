//! The types a device profile is made of. Every field is plain data so that profiles are `const`
//! items (see `profiles.rs`) and the crate stays `no_std` and allocation-free.

use crate::TargetId;

/// The CPU core of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Core {
    /// Arm Cortex-M0+ (Armv6-M): no DSP extension, no FPU.
    CortexM0Plus,
    /// Arm Cortex-M3 (Armv7-M): no DSP extension, no FPU.
    CortexM3,
    /// Arm Cortex-M4 (Armv7E-M): DSP extension (SIMD32), optional single-precision FPU.
    CortexM4,
    /// Arm Cortex-M7 (Armv7E-M): dual-issue, DSP extension, optional FPU, caches.
    CortexM7,
    /// Arm Cortex-M33 (Armv8-M Mainline): optional DSP extension and FPU.
    CortexM33,
    /// Arm Cortex-M55 (Armv8.1-M): Helium (MVE), DSP extension, FPU.
    CortexM55,
    /// Arm Cortex-A72 (Armv8.0-A): NEON, no dot-product instructions.
    CortexA72,
    /// Arm Cortex-A76 (Armv8.2-A): NEON with dot-product instructions.
    CortexA76,
    /// A generic x86-64 host core.
    X86_64,
}

impl Core {
    /// The core's usual name, e.g. `"Cortex-M4"`.
    pub const fn name(self) -> &'static str {
        match self {
            Core::CortexM0Plus => "Cortex-M0+",
            Core::CortexM3 => "Cortex-M3",
            Core::CortexM4 => "Cortex-M4",
            Core::CortexM7 => "Cortex-M7",
            Core::CortexM33 => "Cortex-M33",
            Core::CortexM55 => "Cortex-M55",
            Core::CortexA72 => "Cortex-A72",
            Core::CortexA76 => "Cortex-A76",
            Core::X86_64 => "x86-64",
        }
    }
}

/// ISA features a kernel may rely on, as a small bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features(u16);

impl Features {
    /// No optional feature.
    pub const NONE: Features = Features(0);
    /// Arm DSP extension: SIMD32 instructions such as `SMLAD` (2 int16 MACs per instruction).
    pub const DSP: Features = Features(1 << 0);
    /// A hardware floating-point unit (at least single precision).
    pub const FPU: Features = Features(1 << 1);
    /// Arm Helium, the M-profile Vector Extension (MVE), integer and float.
    pub const MVE: Features = Features(1 << 2);
    /// Arm Advanced SIMD (NEON).
    pub const NEON: Features = Features(1 << 3);
    /// Arm dot-product instructions (`SDOT`/`UDOT`, Armv8.2-A).
    pub const DOTPROD: Features = Features(1 << 4);
    /// x86 SSE4.1.
    pub const SSE41: Features = Features(1 << 5);
    /// x86 AVX2.
    pub const AVX2: Features = Features(1 << 6);

    /// Every feature with its short name, for reports.
    pub const NAMED: &'static [(Features, &'static str)] = &[
        (Features::DSP, "DSP"),
        (Features::FPU, "FPU"),
        (Features::MVE, "MVE"),
        (Features::NEON, "NEON"),
        (Features::DOTPROD, "DOTPROD"),
        (Features::SSE41, "SSE4.1"),
        (Features::AVX2, "AVX2"),
    ];

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Both sets together.
    pub const fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// Whether every feature in `other` is also in `self`.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }
}

/// How the core supply is derived from the measured supply rail. This decides how a datasheet
/// current figure, given at one voltage, carries over to another supply voltage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regulator {
    /// A linear regulator: the supply *current* does not depend on the supply voltage, so the
    /// power is the datasheet current times the supply voltage.
    Ldo,
    /// A switched-mode step-down converter (internal or external): the supply *power* is taken as
    /// independent of the supply voltage (converter efficiency assumed equal at both voltages,
    /// which is an approximation), so the power is the datasheet current times the datasheet's
    /// own reference voltage.
    Smps,
    /// A whole board powered from its input connector (application processors); the figure is a
    /// board power, not a chip current.
    Board,
}

/// The active power figure of an operating point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActivePower {
    /// Supply current per MHz of core clock, in µA/MHz, as specified at `at_v` volts.
    CurrentPerMhz {
        /// Current per MHz in µA/MHz.
        ua_per_mhz: f64,
        /// The supply voltage the figure is given at, in volts.
        at_v: f64,
    },
    /// Active power at the default clock, in watts (application processors and hosts).
    Watts(f64),
}

/// The default operating point of a target: what energy estimates assume.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperatingPoint {
    /// The measured supply voltage, in volts.
    pub supply_v: f64,
    /// How the core is supplied from that rail.
    pub regulator: Regulator,
    /// Voltage range / regulator / mode, in words (e.g. `"Range 1 boost, LDO"`).
    pub note: &'static str,
    /// The active power figure.
    pub active: ActivePower,
}

impl OperatingPoint {
    /// Active power in µW at `clock_hz`, at the supply. An *estimate* built from the figures the
    /// profile cites: µA/MHz × MHz = µA, × V = µW.
    pub fn active_power_uw(&self, clock_hz: u64) -> f64 {
        match self.active {
            ActivePower::CurrentPerMhz { ua_per_mhz, at_v } => {
                let mhz = clock_hz as f64 / 1e6;
                let volts = match self.regulator {
                    Regulator::Smps => at_v,
                    Regulator::Ldo | Regulator::Board => self.supply_v,
                };
                ua_per_mhz * mhz * volts
            }
            ActivePower::Watts(w) => w * 1e6,
        }
    }

    /// The equivalent supply current per MHz at `supply_v`, in µA/MHz (for reports).
    pub fn supply_ua_per_mhz(&self, clock_hz: u64) -> f64 {
        self.active_power_uw(clock_hz) / (clock_hz as f64 / 1e6) / self.supply_v
    }
}

/// A first-order cycle model for one operator. All figures are *estimates* unless the profile's
/// sources say otherwise; measured cycle counts (DWT, qemu instruction counts) supersede them.
///
/// `cycles = per_op_overhead + macs × cycles_per_mac(kind) + const_bytes × flash_read
///           + arena_bytes_read × sram_read + arena_bytes_written × sram_write`
///
/// The per-MAC figures cover the inner loop including operand re-reads from SRAM or cache; the
/// per-byte figures charge each operator's one-pass traffic (first touch of constants, wait states,
/// output stores). For elementwise and pooling kernels "MAC" means one output element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CycleModel {
    /// Cycles per MAC in a standard convolution.
    pub conv_cycles_per_mac: f64,
    /// Cycles per MAC in a depthwise convolution.
    pub depthwise_cycles_per_mac: f64,
    /// Cycles per MAC in a fully connected layer.
    pub fully_connected_cycles_per_mac: f64,
    /// Cycles per output element of elementwise and pooling kernels.
    pub elementwise_cycles_per_element: f64,
    /// Cycles per byte of constants read from flash (or, on application processors, from DRAM).
    pub flash_read_cycles_per_byte: f64,
    /// Cycles per byte read from the arena (SRAM or cache).
    pub sram_read_cycles_per_byte: f64,
    /// Cycles per byte written to the arena.
    pub sram_write_cycles_per_byte: f64,
    /// Fixed cycles per operator (dispatch, setup, requantization tables).
    pub per_op_overhead_cycles: f64,
}

/// A device profile: the data the compiler and runtime need about a target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetProfile {
    /// Short id used on the command line, e.g. `"stm32l4r5"`.
    pub id: TargetId,
    /// Human-readable name (chip and board).
    pub name: &'static str,
    /// The CPU core.
    pub core: Core,
    /// ISA features available to kernels.
    pub features: Features,
    /// Default core clock, in Hz.
    pub clock_hz: u64,
    /// Non-volatile storage for the model, in bytes: on-chip flash for MCUs. Boards that load the
    /// model into DRAM (Raspberry Pi, hosts) set this equal to `ram_bytes`.
    pub flash_bytes: u64,
    /// RAM available for the arena, in bytes (on-chip SRAM for MCUs, DRAM for boards).
    pub ram_bytes: u64,
    /// The operating point energy estimates assume.
    pub operating_point: OperatingPoint,
    /// The per-operator cycle model.
    pub cycle_model: CycleModel,
    /// Where every number comes from: document titles, sections and tables, with estimates
    /// marked as such.
    pub sources: &'static [&'static str],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_a_bit_set() {
        let f = Features::DSP.union(Features::FPU);
        assert!(f.contains(Features::DSP));
        assert!(f.contains(Features::FPU));
        assert!(f.contains(Features::NONE));
        assert!(!f.contains(Features::MVE));
        assert!(!f.contains(Features::DSP.union(Features::MVE)));
        assert_eq!(f.bits(), 0b11);
        let all = Features::NAMED
            .iter()
            .fold(Features::NONE, |acc, (bit, _)| acc.union(*bit));
        assert_eq!(all.bits(), 0b111_1111);
    }

    #[test]
    fn ldo_current_is_independent_of_supply_voltage() {
        // 100 µA/MHz at 100 MHz = 10 mA; on an LDO at 2 V that is 20 mW whatever the datasheet V.
        let op = OperatingPoint {
            supply_v: 2.0,
            regulator: Regulator::Ldo,
            note: "",
            active: ActivePower::CurrentPerMhz {
                ua_per_mhz: 100.0,
                at_v: 3.3,
            },
        };
        assert!((op.active_power_uw(100_000_000) - 20_000.0).abs() < 1e-6);
        assert!((op.supply_ua_per_mhz(100_000_000) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn smps_power_is_independent_of_supply_voltage() {
        // 10 µA/MHz at 3.3 V and 100 MHz = 3.3 mW; at a 1.8 V supply the current rises instead.
        let op = OperatingPoint {
            supply_v: 1.8,
            regulator: Regulator::Smps,
            note: "",
            active: ActivePower::CurrentPerMhz {
                ua_per_mhz: 10.0,
                at_v: 3.3,
            },
        };
        assert!((op.active_power_uw(100_000_000) - 3_300.0).abs() < 1e-6);
        assert!((op.supply_ua_per_mhz(100_000_000) - 10.0 * 3.3 / 1.8).abs() < 1e-9);
    }

    #[test]
    fn watts_are_taken_as_given() {
        let op = OperatingPoint {
            supply_v: 5.0,
            regulator: Regulator::Board,
            note: "",
            active: ActivePower::Watts(3.0),
        };
        assert!((op.active_power_uw(1_500_000_000) - 3.0e6).abs() < 1e-3);
    }
}
