//! The device profiles, as data. Every number is traceable to an entry in the profile's
//! `sources`; numbers that are estimates, placeholders or recalled (not re-checked against the
//! document) say so there.
//!
//! Three profiles are calibrated against the X-CUBE-AI 10.2 MLPerf Tiny v1.3 energy results (see
//! the calibration test in `energy.rs`): `stm32l4r5`, `stm32u385`, `stm32u575`. The others are
//! not calibrated against any published inference energy.

use crate::profile::{
    ActivePower, Core, CycleModel, Features, OperatingPoint, Regulator, TargetProfile,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * 1024 * 1024;

/// Cortex-M4 with the DSP extension, per-MAC figures FITTED to the X-CUBE-AI 10.2 MLPerf Tiny
/// v1.3 latencies on the STM32L4R5 (120 MHz): ResNet-8 (IC, almost all CONV_2D) fixes the
/// convolution figure, the FC autoencoder (AD, only FULLY_CONNECTED) the fully connected one,
/// and DS-CNN (KWS) then the depthwise one, with mote's own per-op counts of those models and
/// the per-byte, elementwise and overhead terms below held at their ESTIMATED values (flash
/// behind the ART accelerator, SRAM with no wait state). Three figures from three results: the
/// fit reproduces them by construction (test `cycle_model_reproduces_x_cube_ai_latencies` in
/// `quantize/tests/bench.rs`); it is not validated on other models. It describes kernels as
/// fast as X-CUBE-AI's, not mote's own.
const CYCLES_M4_DSP_FITTED: CycleModel = CycleModel {
    conv_cycles_per_mac: 1.58,
    depthwise_cycles_per_mac: 4.85,
    fully_connected_cycles_per_mac: 1.65,
    elementwise_cycles_per_element: 3.0,
    flash_read_cycles_per_byte: 0.5,
    sram_read_cycles_per_byte: 0.25,
    sram_write_cycles_per_byte: 0.25,
    per_op_overhead_cycles: 300.0,
};

/// Cortex-M33 with the DSP extension, FITTED the same way to the X-CUBE-AI 10.2 MLPerf Tiny v1.3
/// latencies on the STM32U385 (96 MHz) and STM32U575 (160 MHz), whose cycle counts per inference
/// agree within 1.2% (the mean of the two is fitted).
const CYCLES_M33_DSP_FITTED: CycleModel = CycleModel {
    conv_cycles_per_mac: 1.39,
    depthwise_cycles_per_mac: 4.42,
    fully_connected_cycles_per_mac: 1.42,
    ..CYCLES_M4_DSP_FITTED
};

// ---- STM32L4R5 -------------------------------------------------------------------------------

/// DS12023 front-page "Run mode (LDO mode)" figure, µA/MHz (recalled; see sources).
const L4R5_LDO_HEADLINE_UA_PER_MHZ: f64 = 110.0;
/// DS12023 front-page "Run mode (@ 3.3 V SMPS mode)" figure, µA/MHz (recalled; see sources).
const L4R5_SMPS_HEADLINE_UA_PER_MHZ: f64 = 43.0;
/// Core current at 120 MHz (Range 1 boost) under X-CUBE-AI inference, µA/MHz: 47 735.611 µW
/// median window at 1.8 V on the LDO-only NUCLEO-L4R5ZI (MLPerf Tiny v0.7, KWS). On an LDO the
/// supply current is the core current.
const L4R5_CORE_UA_PER_MHZ_120MHZ: f64 = 47_735.611 / 1.8 / 120.0;

/// STMicroelectronics STM32L4R5ZI on NUCLEO-L4R5ZI-P, the MLPerf Tiny reference chip, at the
/// operating point of the X-CUBE-AI 10.2 MLPerf Tiny v1.3 entry (3 V, external SMPS).
pub const STM32L4R5: TargetProfile = TargetProfile {
    id: "stm32l4r5",
    name: "STM32L4R5ZI (NUCLEO-L4R5ZI-P)",
    core: Core::CortexM4,
    features: Features::DSP.union(Features::FPU),
    clock_hz: 120_000_000,
    flash_bytes: 2 * MIB,
    ram_bytes: 640 * KIB,
    operating_point: OperatingPoint {
        supply_v: 3.0,
        regulator: Regulator::Smps,
        note: "Range 1 boost, 120 MHz, core from the board's external SMPS, VDD = 3.0 V",
        // The SMPS headline scaled by (measured core current at 120 MHz / LDO headline): the
        // headline pair fixes the SMPS conversion, the measurement fixes the current at 120 MHz.
        active: ActivePower::CurrentPerMhz {
            ua_per_mhz: L4R5_SMPS_HEADLINE_UA_PER_MHZ
                * (L4R5_CORE_UA_PER_MHZ_120MHZ / L4R5_LDO_HEADLINE_UA_PER_MHZ),
            at_v: 3.3,
        },
    },
    cycle_model: CYCLES_M4_DSP_FITTED,
    sources: &[
        "STM32L4R5xx/L4R7xx/L4R9xx datasheet DS12023: Cortex-M4 with FPU and DSP up to 120 MHz \
         (Range 1 boost), 2 Mbytes flash, 640 Kbytes SRAM",
        "DS12023 front-page feature list: 110 µA/MHz Run mode (LDO mode), 43 µA/MHz Run mode \
         (@ 3.3 V SMPS mode). Recalled, not re-checked against the PDF in this session. These are \
         headline figures at the device's most efficient point, not the 120 MHz Range 1 boost row \
         of the Run-mode tables, which was not available here",
        "Core current at 120 MHz: MLPerf Tiny v0.7, STMicroelectronics closed division, \
         NUCLEO-L4R5ZI (no SMPS, LDO only, 'Operating at 1.8V / Dual Bank Mode', X-CUBE-AI 7.1), \
         KWS energy results: 47.736 mW median window at 1.8 V = 26.5 mA = 221 µA/MHz. MEASURED, \
         on an earlier software version and the LDO board; about 2x the LDO headline",
        "SMPS conversion, ESTIMATE: supply power per unit of core current = 43 µA/MHz x 3.3 V / \
         110 µA/MHz = 1.29 V (from the DS12023 headline pair, assumed to hold at 120 MHz); \
         221 µA/MHz x 1.29 V = 285 µW/MHz = 0.285 nJ/cycle, i.e. 95 µA/MHz at 3.0 V",
        "Operating point: MLPerf Tiny v1.3, STMicroelectronics closed division, system \
         NUCLEO_L4R5ZI-P: 'Operating at 3 V with external SMPS / Single Bank Mode Activated', \
         120 MHz, X-CUBE-AI v10.2",
        "Gap without the measured current: the LDO headline alone (110 µA/MHz at 3.0 V) gives \
         1.17-1.20x the published v1.3 energies, the SMPS headline alone 0.50-0.52x; an LDO at \
         3.0 V with the measured 221 µA/MHz would be about 2.4x",
        "Cycle model: per-MAC figures FITTED to the X-CUBE-AI 10.2 MLPerf Tiny v1.3 latencies \
         on this board (IC 165.7 ms, AD 4.8 ms, KWS 43.4 ms; see CYCLES_M4_DSP_FITTED), i.e. \
         kernels as fast as X-CUBE-AI's; per-byte and elementwise terms ESTIMATED",
    ],
};

// ---- STM32U385 -------------------------------------------------------------------------------

/// STMicroelectronics STM32U385RG on NUCLEO-U385RG-Q at the operating point of the X-CUBE-AI
/// 10.2 MLPerf Tiny v1.3 entry (1.8 V, SMPS).
pub const STM32U385: TargetProfile = TargetProfile {
    id: "stm32u385",
    name: "STM32U385RG (NUCLEO-U385RG-Q)",
    core: Core::CortexM33,
    features: Features::DSP.union(Features::FPU),
    clock_hz: 96_000_000,
    flash_bytes: MIB,
    ram_bytes: 256 * KIB,
    operating_point: OperatingPoint {
        supply_v: 1.8,
        regulator: Regulator::Smps,
        note: "Range 1, 96 MHz, internal SMPS, VDD = 1.8 V",
        active: ActivePower::CurrentPerMhz {
            ua_per_mhz: 16.0,
            at_v: 3.3,
        },
    },
    cycle_model: CYCLES_M33_DSP_FITTED,
    sources: &[
        "STM32U385xx datasheet, front-page feature list: 16 µA/MHz Run mode @ 3.3 V / 96 MHz \
         (CoreMark, SMPS step-down converter mode); also 13 µA/MHz @ 48 MHz and 9.5 µA/MHz \
         while(1). As reproduced in Zephyr's nucleo_u385rg_q board documentation",
        "STM32U385RG: Cortex-M33 with TrustZone, FPU and DSP up to 96 MHz, 1 Mbyte flash, \
         256 Kbytes SRAM (same feature list)",
        "Operating point: MLPerf Tiny v1.3, STMicroelectronics closed division, system \
         NUCLEO_U385RG_Q: 'Operating at 1.8V / SMPS', 96 MHz, X-CUBE-AI v10.2",
        "SMPS at 1.8 V, ESTIMATE: the supply power at 1.8 V is taken equal to the datasheet's at \
         3.3 V (16 µA/MHz x 3.3 V = 52.8 µW/MHz = 29.3 µA/MHz at 1.8 V); converter efficiency at \
         1.8 V is not modelled. No extra term added",
        "Cycle model: per-MAC figures FITTED to the X-CUBE-AI 10.2 MLPerf Tiny v1.3 latencies \
         on the STM32U385 and STM32U575 (see CYCLES_M33_DSP_FITTED), i.e. kernels as fast as \
         X-CUBE-AI's; per-byte and elementwise terms ESTIMATED",
    ],
};

// ---- STM32U575 -------------------------------------------------------------------------------

/// STMicroelectronics STM32U575ZI on NUCLEO-U575ZI-Q at the operating point of the X-CUBE-AI
/// 10.2 MLPerf Tiny v1.3 entry (1.8 V, SMPS).
pub const STM32U575: TargetProfile = TargetProfile {
    id: "stm32u575",
    name: "STM32U575ZI (NUCLEO-U575ZI-Q)",
    core: Core::CortexM33,
    features: Features::DSP.union(Features::FPU),
    clock_hz: 160_000_000,
    flash_bytes: 2 * MIB,
    ram_bytes: 786 * KIB,
    operating_point: OperatingPoint {
        supply_v: 1.8,
        regulator: Regulator::Smps,
        note: "Range 1, 160 MHz, internal SMPS (the 'Q' variant), VDD = 1.8 V",
        // 7.15 mA at 160 MHz, VDD = 3.0 V, on the SMPS.
        active: ActivePower::CurrentPerMhz {
            ua_per_mhz: 7_150.0 / 160.0,
            at_v: 3.0,
        },
    },
    cycle_model: CYCLES_M33_DSP_FITTED,
    sources: &[
        "STM32U575xx datasheet DS13737 Rev 8, Table 39 (Run mode on SMPS, code from flash, \
         VDD = 3.0 V, Range 1): 7.15 mA typ at 160 MHz = 44.7 µA/MHz; Table 37 (Run mode on \
         LDO): 13.5 mA at 160 MHz. Values as transcribed, with their table numbers, in a public \
         third-party design note; not re-checked against the PDF in this session",
        "DS13737 front page '19.5 µA/MHz' is while(1) at 24 MHz in Range 4 (SMPS asynchronous), \
         per the same note (Table 42); it does not apply at 160 MHz",
        "STM32U575ZI: Cortex-M33 with TrustZone, FPU and DSP up to 160 MHz, 2 Mbytes flash, \
         786 Kbytes SRAM (ECC off)",
        "Operating point: MLPerf Tiny v1.3, STMicroelectronics closed division, system \
         NUCLEO_U575ZI_Q: 'Operating at 1.8V / SMPS', 160 MHz, X-CUBE-AI v10.2; its CubeMX \
         project sets PWR.PowerMode = PWR_SMPS_SUPPLY. SMPS chosen for that reason",
        "SMPS at 1.8 V, ESTIMATE: supply power at 1.8 V taken equal to the datasheet's at 3.0 V \
         (7.15 mA x 3.0 V = 21.45 mW); converter efficiency at 1.8 V is not modelled. The \
         published energy would also fit the LDO at 1.8 V (13.5 mA x 1.8 V = 24.3 mW, ratio \
         1.01-1.06) but not the LDO at 3.0 V (ratio 1.7). No extra term added",
        "Cycle model: per-MAC figures FITTED to the X-CUBE-AI 10.2 MLPerf Tiny v1.3 latencies \
         on the STM32U385 and STM32U575 (see CYCLES_M33_DSP_FITTED), i.e. kernels as fast as \
         X-CUBE-AI's; per-byte and elementwise terms ESTIMATED",
    ],
};

// ---- Other MCUs (not calibrated) --------------------------------------------------------------

/// STMicroelectronics STM32F746 (e.g. NUCLEO-F746ZG, STM32F746G-DISCO).
pub const STM32F746: TargetProfile = TargetProfile {
    id: "stm32f746",
    name: "STM32F746ZG",
    core: Core::CortexM7,
    features: Features::DSP.union(Features::FPU),
    clock_hz: 216_000_000,
    flash_bytes: MIB,
    ram_bytes: 320 * KIB,
    operating_point: OperatingPoint {
        supply_v: 3.3,
        regulator: Regulator::Ldo,
        note: "Scale 1 with over-drive, 216 MHz, internal LDO, VDD = 3.3 V",
        active: ActivePower::CurrentPerMhz {
            ua_per_mhz: 470.0,
            at_v: 3.3,
        },
    },
    cycle_model: CycleModel {
        conv_cycles_per_mac: 0.6,
        depthwise_cycles_per_mac: 1.2,
        fully_connected_cycles_per_mac: 0.9,
        elementwise_cycles_per_element: 1.5,
        flash_read_cycles_per_byte: 0.25,
        sram_read_cycles_per_byte: 0.125,
        sram_write_cycles_per_byte: 0.125,
        per_op_overhead_cycles: 300.0,
    },
    sources: &[
        "STM32F745xx/STM32F746xx datasheet DS10916: Cortex-M7 with single-precision FPU and DSP \
         up to 216 MHz (over-drive), 1 Mbyte flash, 320 Kbytes SRAM including 64 Kbytes DTCM",
        "Run current ~470 µA/MHz at 3.3 V (about 100 mA at 216 MHz, code from flash with ART and \
         cache, peripherals off): ESTIMATE from recalled DS10916 Run-mode figures, not re-checked \
         in this session; not calibrated against any published inference energy",
        "Cycle model: ESTIMATE (dual-issue M7, 64-bit AXI, L1 caches); not measured",
    ],
};

/// Nordic Semiconductor nRF52840 (e.g. nRF52840 DK), radio off.
pub const NRF52840: TargetProfile = TargetProfile {
    id: "nrf52840",
    name: "nRF52840",
    core: Core::CortexM4,
    features: Features::DSP.union(Features::FPU),
    clock_hz: 64_000_000,
    flash_bytes: MIB,
    ram_bytes: 256 * KIB,
    operating_point: OperatingPoint {
        supply_v: 3.0,
        regulator: Regulator::Smps,
        note: "64 MHz, DC/DC regulator enabled, VDD = 3.0 V, radio off",
        active: ActivePower::CurrentPerMhz {
            ua_per_mhz: 3_300.0 / 64.0,
            at_v: 3.0,
        },
    },
    cycle_model: CYCLES_M4_DSP_FITTED,
    sources: &[
        "nRF52840 Product Specification: Cortex-M4 with FPU at 64 MHz, 1 MB flash, 256 KB RAM",
        "nRF52840 Product Specification, CPU current: 3.3 mA running CoreMark from flash with \
         cache enabled, DC/DC at 3 V (51.6 µA/MHz). Recalled, not re-checked in this session; \
         not calibrated against any published inference energy",
        "Cycle model: the STM32L4R5's (FITTED to X-CUBE-AI latencies there), assumed to carry \
         over to this Cortex-M4 (flash at 64 MHz with cache); not measured on an nRF52840",
    ],
};

/// Raspberry Pi RP2040 (e.g. Raspberry Pi Pico), one core busy.
pub const RP2040: TargetProfile = TargetProfile {
    id: "rp2040",
    name: "RP2040 (Raspberry Pi Pico)",
    core: Core::CortexM0Plus,
    features: Features::NONE,
    clock_hz: 133_000_000,
    flash_bytes: 2 * MIB,
    ram_bytes: 264 * KIB,
    operating_point: OperatingPoint {
        supply_v: 3.3,
        regulator: Regulator::Ldo,
        note: "133 MHz, on-chip core LDO (DVDD 1.1 V) from IOVDD = 3.3 V, one core busy",
        active: ActivePower::CurrentPerMhz { ua_per_mhz: 150.0, at_v: 3.3 },
    },
    cycle_model: CycleModel {
        conv_cycles_per_mac: 4.0,
        depthwise_cycles_per_mac: 5.0,
        fully_connected_cycles_per_mac: 4.0,
        elementwise_cycles_per_element: 6.0,
        flash_read_cycles_per_byte: 2.0,
        sram_read_cycles_per_byte: 0.5,
        sram_write_cycles_per_byte: 0.5,
        per_op_overhead_cycles: 400.0,
    },
    sources: &[
        "RP2040 Datasheet: dual Cortex-M0+ up to 133 MHz, 264 KB on-chip SRAM, no on-chip flash \
         (external QSPI flash, 2 MB on Raspberry Pi Pico, executed in place through a 16 KB cache)",
        "Active power ~150 µA/MHz at 3.3 V: ESTIMATE, order of magnitude only; the datasheet gives \
         whole-chip figures for example workloads, not a per-MHz Run-mode table; not calibrated",
        "Cycle model: ESTIMATE (no DSP extension: 32x32 multiply per MAC plus loads; XIP flash \
         misses are expensive); not measured",
    ],
};

/// Arm Corstone-300 (SSE-300) with Cortex-M55, as run under QEMU `mps3-an547` or the Arm FVP.
pub const CORSTONE300: TargetProfile = TargetProfile {
    id: "corstone300",
    name: "Arm Corstone-300 (Cortex-M55, MPS3 AN547 / FVP)",
    core: Core::CortexM55,
    features: Features::DSP.union(Features::FPU).union(Features::MVE),
    clock_hz: 32_000_000,
    flash_bytes: 8 * MIB,
    ram_bytes: 2 * MIB + 512 * KIB,
    operating_point: OperatingPoint {
        supply_v: 1.8,
        regulator: Regulator::Smps,
        note: "a model (FPGA image / FVP), not a chip: placeholder operating point",
        active: ActivePower::CurrentPerMhz {
            ua_per_mhz: 30.0,
            at_v: 1.8,
        },
    },
    cycle_model: CycleModel {
        conv_cycles_per_mac: 0.25,
        depthwise_cycles_per_mac: 0.5,
        fully_connected_cycles_per_mac: 0.35,
        elementwise_cycles_per_element: 0.5,
        flash_read_cycles_per_byte: 0.25,
        sram_read_cycles_per_byte: 0.0625,
        sram_write_cycles_per_byte: 0.0625,
        per_op_overhead_cycles: 300.0,
    },
    sources: &[
        "Arm Corstone-300 reference design (SSE-300) with Cortex-M55: Helium (MVE) integer and \
         float, DSP extension, FPU",
        "Clock 32 MHz and memory (512 KiB ITCM, 512 KiB DTCM, 2 MiB SRAM, 8 MiB QSPI flash): \
         Arm MPS3 application note AN547 memory map as recalled, also what QEMU's mps3-an547 \
         models; verify before relying on them",
        "Active power: PLACEHOLDER (30 µA/MHz at 1.8 V through an SMPS), order of magnitude for \
         a Cortex-M55 microcontroller; no silicon datasheet behind it",
        "Cycle model: ESTIMATE (Helium: 2-beat M55, several int8 MACs per cycle); not measured",
    ],
};

// ---- Application processors and host (not calibrated) ----------------------------------------

/// Raspberry Pi 4 Model B (BCM2711, Cortex-A72).
pub const RPI4: TargetProfile = TargetProfile {
    id: "rpi4",
    name: "Raspberry Pi 4 Model B (BCM2711)",
    core: Core::CortexA72,
    features: Features::NEON.union(Features::FPU),
    clock_hz: 1_500_000_000,
    flash_bytes: 4 * GIB,
    ram_bytes: 4 * GIB,
    operating_point: OperatingPoint {
        supply_v: 5.0,
        regulator: Regulator::Board,
        note: "whole board from the 5 V USB-C input, 1.5 GHz",
        active: ActivePower::Watts(3.0),
    },
    cycle_model: CycleModel {
        conv_cycles_per_mac: 0.08,
        depthwise_cycles_per_mac: 0.2,
        fully_connected_cycles_per_mac: 0.1,
        elementwise_cycles_per_element: 0.1,
        flash_read_cycles_per_byte: 0.05,
        sram_read_cycles_per_byte: 0.03,
        sram_write_cycles_per_byte: 0.03,
        per_op_overhead_cycles: 2000.0,
    },
    sources: &[
        "Raspberry Pi 4 Model B product brief: BCM2711, 4x Cortex-A72 (Armv8.0-A, NEON, no dot \
         product) at 1.5 GHz (1.8 GHz on later boards), 1/2/4/8 GB LPDDR4; 4 GB assumed, model \
         held in DRAM",
        "Active power 3.0 W: Raspberry Pi documentation, power supply table, typical bare-board \
         active current 600 mA at 5 V (recalled). A whole-board ESTIMATE of inference power, \
         not an SoC figure; use an EnergyMeter for measured energy",
        "Cycle model: ESTIMATE (NEON int8 widening multiply-accumulate); not measured",
    ],
};

/// Raspberry Pi 5 (BCM2712, Cortex-A76).
pub const RPI5: TargetProfile = TargetProfile {
    id: "rpi5",
    name: "Raspberry Pi 5 (BCM2712)",
    core: Core::CortexA76,
    features: Features::NEON.union(Features::FPU).union(Features::DOTPROD),
    clock_hz: 2_400_000_000,
    flash_bytes: 4 * GIB,
    ram_bytes: 4 * GIB,
    operating_point: OperatingPoint {
        supply_v: 5.0,
        regulator: Regulator::Board,
        note: "whole board from the 5 V USB-C input, 2.4 GHz",
        active: ActivePower::Watts(4.0),
    },
    cycle_model: CycleModel {
        conv_cycles_per_mac: 0.03,
        depthwise_cycles_per_mac: 0.1,
        fully_connected_cycles_per_mac: 0.05,
        elementwise_cycles_per_element: 0.05,
        flash_read_cycles_per_byte: 0.03,
        sram_read_cycles_per_byte: 0.02,
        sram_write_cycles_per_byte: 0.02,
        per_op_overhead_cycles: 2000.0,
    },
    sources: &[
        "Raspberry Pi 5 product brief: BCM2712, 4x Cortex-A76 (Armv8.2-A, NEON with dot \
         product) at 2.4 GHz, 2/4/8/16 GB LPDDR4X; 4 GB assumed, model held in DRAM",
        "Active power 4.0 W: Raspberry Pi documentation, power supply table, typical bare-board \
         active current 800 mA at 5 V (recalled). A whole-board ESTIMATE, not an SoC figure",
        "Cycle model: ESTIMATE (SDOT: 4 int8 MACs per lane); not measured",
    ],
};

/// A generic x86-64 host (the build machine).
pub const X86_64: TargetProfile = TargetProfile {
    id: "x86-64",
    name: "x86-64 host",
    core: Core::X86_64,
    features: Features::FPU.union(Features::SSE41).union(Features::AVX2),
    clock_hz: 3_000_000_000,
    flash_bytes: 16 * GIB,
    ram_bytes: 16 * GIB,
    operating_point: OperatingPoint {
        supply_v: 12.0,
        regulator: Regulator::Board,
        note: "one busy core; placeholder",
        active: ActivePower::Watts(15.0),
    },
    cycle_model: CycleModel {
        conv_cycles_per_mac: 0.03,
        depthwise_cycles_per_mac: 0.1,
        fully_connected_cycles_per_mac: 0.05,
        elementwise_cycles_per_element: 0.05,
        flash_read_cycles_per_byte: 0.02,
        sram_read_cycles_per_byte: 0.02,
        sram_write_cycles_per_byte: 0.02,
        per_op_overhead_cycles: 1000.0,
    },
    sources: &[
        "Generic x86-64 with SSE4.1 and AVX2; clock 3.0 GHz and 16 GiB RAM are PLACEHOLDERS for \
         whatever host runs the compiler",
        "Active power 15 W for one busy core including its share of the package: PLACEHOLDER \
         estimate; measure with Linux RAPL (powercap) through an EnergyMeter",
        "Cycle model: ESTIMATE (AVX2 int8 multiply-add); not measured",
    ],
};

/// Ids of the profiles whose energy estimate is calibrated against published measurements (the
/// X-CUBE-AI 10.2 MLPerf Tiny v1.3 results; the test is in `energy.rs`).
pub const CALIBRATED: &[crate::TargetId] = &["stm32l4r5", "stm32u385", "stm32u575"];

/// Every profile, in a fixed order.
pub const ALL: &[TargetProfile] = &[
    STM32L4R5,
    STM32U385,
    STM32U575,
    STM32F746,
    NRF52840,
    RP2040,
    CORSTONE300,
    RPI4,
    RPI5,
    X86_64,
];

/// The profile with this short id (`"stm32l4r5"`, `"x86-64"`, ...), if any.
pub fn by_id(id: &str) -> Option<&'static TargetProfile> {
    ALL.iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_ten_required_and_unique() {
        let want = [
            "stm32l4r5",
            "stm32u385",
            "stm32u575",
            "stm32f746",
            "nrf52840",
            "rp2040",
            "corstone300",
            "rpi4",
            "rpi5",
            "x86-64",
        ];
        assert_eq!(ALL.len(), want.len());
        for id in want {
            assert_eq!(by_id(id).map(|p| p.id), Some(id));
        }
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.id, b.id);
            }
        }
        assert!(by_id("stm32").is_none());
        assert!(by_id("").is_none());
    }

    #[test]
    fn every_profile_is_sourced_and_sane() {
        for p in ALL {
            assert!(!p.sources.is_empty(), "{} has no sources", p.id);
            assert!(p.sources.iter().all(|s| !s.is_empty()));
            assert!(p.clock_hz > 0 && p.flash_bytes > 0 && p.ram_bytes > 0);
            assert!(p.operating_point.supply_v > 0.0);
            let power = p.operating_point.active_power_uw(p.clock_hz);
            assert!(power > 0.0 && power.is_finite(), "{}: {power}", p.id);
        }
    }

    #[test]
    fn isa_features_match_the_cores() {
        assert!(STM32L4R5
            .features
            .contains(Features::DSP.union(Features::FPU)));
        assert!(CORSTONE300.features.contains(Features::MVE));
        assert!(!RPI4.features.contains(Features::DOTPROD));
        assert!(RPI5
            .features
            .contains(Features::DOTPROD.union(Features::NEON)));
        assert!(X86_64
            .features
            .contains(Features::AVX2.union(Features::SSE41)));
        assert_eq!(RP2040.features, Features::NONE);
    }

    #[test]
    fn l4r5_operating_point_is_about_0_28_nj_per_cycle() {
        // ANCHORS: the X-CUBE-AI KWS figures imply ~0.27 nJ/cycle at 3 V.
        let pj_per_cycle = STM32L4R5
            .operating_point
            .active_power_uw(STM32L4R5.clock_hz)
            / (STM32L4R5.clock_hz as f64 / 1e6);
        assert!((pj_per_cycle - 285.1).abs() < 0.5, "{pj_per_cycle}");
        let ua = STM32L4R5
            .operating_point
            .supply_ua_per_mhz(STM32L4R5.clock_hz);
        assert!((ua - 95.0).abs() < 0.1, "{ua}");
    }
}
