//! `mote bench` and `mote targets`: what an inference costs.
//!
//! `mote bench MODEL` *measures* latency on the host (median, min and max over N profiled runs
//! after a warm-up, with a per-layer breakdown: time, share, MACs, achieved GMAC/s, kernel) and,
//! with `--target PROFILE`, *estimates* cycles, latency and energy per inference and per layer on
//! that target from the profile's cycle model and operating point (`mote-targets`). With
//! `--meter rapl` it also *measures* the host package energy. Every figure says which it is.
//!
//! Latency comes from a [`LatencySource`]: [`HostSource`] runs the model in this process;
//! a board runner (QEMU instruction counts, a real board's cycle counter) plugs in beside it.
//!
//! `mote targets [ID]` lists the profiles, or shows one with its cycle model and sources.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use mote_runtime::energy;
use mote_runtime::format::DType;
use mote_runtime::profile::{ticks_to_us, Clock, InstantClock, OpTiming};
use mote_runtime::{Interpreter, Model};
use mote_targets::meter::rapl::Rapl;
use mote_targets::{EnergyEstimate, EnergyMeter, Features, TargetProfile};

use crate::compile::{compile_tflite_opts, CompileOptions, WeightLayout};
use crate::error::CompileError;
use crate::inspect::group;
use crate::write::AlignedBytes;

// ---- command line -------------------------------------------------------------------------------

/// Arguments of `mote bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// A .mote or .tflite model.
    pub model: PathBuf,
    /// Profiled runs to report on (after the warm-up).
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// Unreported runs first (caches, branch predictors, CPU frequency).
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Also estimate cycles, latency and energy on this target profile (see `mote targets`).
    #[arg(long, value_name = "PROFILE")]
    pub target: Option<String>,
    /// Host clock: auto (the cheapest accurate one here: an invariant TSC on x86-64, the PMU
    /// cycle counter or else the generic timer on aarch64, else Instant), instant
    /// (std::time::Instant), tsc (x86-64 RDTSC, calibrated), cntvct (aarch64 generic timer),
    /// pmu (aarch64 cycle counter, where the OS allows).
    #[arg(long, default_value = "auto")]
    pub clock: String,
    /// Measure host energy too: rapl (Linux powercap, package domain; usually needs root).
    #[arg(long, value_name = "METER")]
    pub meter: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print the per-layer table as CSV instead of text.
    #[arg(long)]
    pub csv: bool,
    /// Also write a per-layer bar chart (SVG) to this file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Run on an emulated board instead of the host: builds the bare-metal firmware with the
    /// model, runs it under qemu-system-arm and reports instructions (qemu -icount), flash and
    /// RAM: mps2-an386 (Cortex-M4F), mps3-an547 (M55), lm3s6965evb (M3), microbit (M0).
    #[arg(long, value_name = "BOARD", conflicts_with_all = ["target", "meter", "csv", "plot"])]
    pub board: Option<String>,
    /// With --board: raw input bytes, one or more cases of every model input back to back
    /// (default: one all-zeros case).
    #[arg(long, value_name = "IN", requires = "board")]
    pub input: Option<PathBuf>,
    /// With --board: write the outputs of every case, raw, back to back, to this file.
    #[arg(long, value_name = "OUT", requires = "board")]
    pub output: Option<PathBuf>,
    /// With --board: run the model compiled ahead of time (`mote_runtime::aot`: its ops as
    /// direct kernel calls, no interpreter in flash; a .tflite is planned without ops in place,
    /// so the arena is larger).
    #[arg(long, requires = "board")]
    pub aot: bool,
}

/// Arguments of `mote targets`.
#[derive(Args, Debug, Clone)]
pub struct TargetsArgs {
    /// Show this profile in full (cycle model, operating point, sources).
    pub id: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn usage(what: impl Into<String>) -> CompileError {
    CompileError::Usage(what.into())
}

/// The profile with this id, or an error listing the ids there are.
pub fn target_by_id(id: &str) -> Result<&'static TargetProfile, CompileError> {
    mote_targets::by_id(id).ok_or_else(|| {
        let ids: Vec<&str> = mote_targets::ALL.iter().map(|p| p.id).collect();
        usage(format!(
            "unknown target profile {id:?}; known: {}",
            ids.join(", ")
        ))
    })
}

/// Runs `mote bench`.
pub fn bench_cmd(args: &BenchArgs) -> Result<(), CompileError> {
    if let Some(board) = &args.board {
        return crate::board::bench_board_cmd(
            &args.model,
            board,
            args.input.as_deref(),
            args.output.as_deref(),
            args.json,
            args.aot,
        );
    }
    let target = args.target.as_deref().map(target_by_id).transpose()?;
    let clock = ClockChoice::parse(&args.clock)?;
    let meter = args.meter.as_deref().map(MeterChoice::parse).transpose()?;
    let mote = load_mote(&args.model)?;
    let mut source = HostSource { clock, meter };
    let name = args.model.file_name().map_or_else(
        || args.model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let report = bench(
        &name,
        mote.as_slice(),
        &mut source,
        args.runs,
        args.warmup,
        target,
    )?;
    if let Some(path) = &args.plot {
        std::fs::write(path, render_svg(&report)).map_err(|source| CompileError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if args.csv {
        print!("{}", render_csv(&report));
    } else {
        print!("{}", render_text(&report));
        if let Some(path) = &args.plot {
            println!("\nplot written to {}", path.display());
        }
    }
    Ok(())
}

/// Runs `mote targets`.
pub fn targets_cmd(args: &TargetsArgs) -> Result<(), CompileError> {
    let profiles: Vec<&TargetProfile> = match &args.id {
        Some(id) => vec![target_by_id(id)?],
        None => mote_targets::ALL.iter().collect(),
    };
    if args.json {
        let list: Vec<serde_json::Value> = profiles.iter().map(|p| target_json(p)).collect();
        let v = if args.id.is_some() {
            list.into_iter().next().unwrap_or_default()
        } else {
            serde_json::Value::Array(list)
        };
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else if let [p] = profiles[..] {
        if args.id.is_some() {
            print!("{}", render_target_detail(p));
            return Ok(());
        }
        print!("{}", render_targets(&profiles));
    } else {
        print!("{}", render_targets(&profiles));
    }
    Ok(())
}

/// Reads a `.mote` file into aligned memory, compiling a `.tflite` on the fly with the
/// host-SIMD weight layout (this command measures the host).
pub fn load_mote(path: &Path) -> Result<AlignedBytes, CompileError> {
    let bytes = std::fs::read(path).map_err(|source| CompileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if bytes.starts_with(b"MOTE") {
        Ok(AlignedBytes::new(&bytes))
    } else {
        let options = CompileOptions::with_layout(WeightLayout::HostSimd);
        Ok(compile_tflite_opts(&bytes, options)?.aligned())
    }
}

// ---- clocks and meters on the host --------------------------------------------------------------

/// Which host clock times the runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockChoice {
    /// `std::time::Instant` (nanoseconds).
    Instant,
    /// x86-64 `RDTSC`, rate calibrated against `Instant`.
    Tsc,
    /// aarch64 `CNTVCT_EL0`.
    Cntvct,
    /// aarch64 `PMCCNTR_EL0`, where readable.
    Pmu,
    /// The best available: PMU, else CNTVCT on aarch64; an invariant TSC on x86-64; else Instant.
    Auto,
}

impl ClockChoice {
    /// Parses a `--clock` value.
    pub fn parse(s: &str) -> Result<ClockChoice, CompileError> {
        Ok(match s {
            "instant" => ClockChoice::Instant,
            "tsc" => ClockChoice::Tsc,
            "cntvct" => ClockChoice::Cntvct,
            "pmu" => ClockChoice::Pmu,
            "auto" => ClockChoice::Auto,
            other => {
                return Err(usage(format!(
                    "unknown clock {other:?}; choose instant, tsc, cntvct, pmu or auto"
                )))
            }
        })
    }

    /// Makes the clock, or says why it is not available on this machine.
    pub fn make(self) -> Result<Box<dyn Clock>, CompileError> {
        let unavailable =
            |what: &str| usage(format!("clock {what} is not available on this machine"));
        match self {
            ClockChoice::Instant => Ok(Box::new(InstantClock::new())),
            #[cfg(target_arch = "x86_64")]
            ClockChoice::Tsc => Ok(Box::new(mote_runtime::profile::TscClock::calibrate(
                std::time::Duration::from_millis(50),
            ))),
            #[cfg(target_arch = "aarch64")]
            ClockChoice::Cntvct => Ok(Box::new(mote_runtime::profile::CntvctClock::new())),
            #[cfg(all(target_arch = "aarch64", target_os = "linux"))]
            ClockChoice::Pmu => mote_runtime::profile::PmuCycleClock::detect()
                .map(|c| Box::new(c) as Box<dyn Clock>)
                .ok_or_else(|| {
                    usage(
                        "the PMU cycle counter is not readable from user space here \
                         (PMUSERENR_EL0 does not enable it); use --clock cntvct",
                    )
                }),
            ClockChoice::Auto => Ok(auto_clock()),
            #[allow(unreachable_patterns)]
            ClockChoice::Tsc => Err(unavailable("tsc (x86-64 only)")),
            #[allow(unreachable_patterns)]
            ClockChoice::Cntvct | ClockChoice::Pmu => Err(unavailable("cntvct/pmu (aarch64 only)")),
        }
    }
}

fn auto_clock() -> Box<dyn Clock> {
    #[cfg(target_arch = "x86_64")]
    if mote_runtime::profile::TscClock::invariant() {
        return Box::new(mote_runtime::profile::TscClock::calibrate(
            std::time::Duration::from_millis(50),
        ));
    }
    #[cfg(all(target_arch = "aarch64", target_os = "linux"))]
    if let Some(c) = mote_runtime::profile::PmuCycleClock::detect() {
        return Box::new(c);
    }
    #[cfg(target_arch = "aarch64")]
    return Box::new(mote_runtime::profile::CntvctClock::new());
    #[allow(unreachable_code)]
    Box::new(InstantClock::new())
}

/// Which energy meter measures the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeterChoice {
    /// Linux RAPL powercap, package domain.
    Rapl,
}

impl MeterChoice {
    /// Parses a `--meter` value.
    pub fn parse(s: &str) -> Result<MeterChoice, CompileError> {
        match s {
            "rapl" => Ok(MeterChoice::Rapl),
            other => Err(usage(format!(
                "unknown meter {other:?}; on the host: rapl (INA219/INA226 drivers are in \
                 mote_targets::meter::ina, for a board's own I2C bus)"
            ))),
        }
    }
}

// ---- measurement --------------------------------------------------------------------------------

/// The unit of measured values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureUnit {
    /// Microseconds of wall-clock time (host).
    Microseconds,
    /// Executed instructions (an emulator's instruction count: not time).
    Instructions,
}

impl MeasureUnit {
    /// Short unit name for tables.
    pub fn short(self) -> &'static str {
        match self {
            MeasureUnit::Microseconds => "µs",
            MeasureUnit::Instructions => "instr",
        }
    }
}

/// Energy measured by a meter over the benchmark's runs.
#[derive(Clone, Debug, Serialize)]
pub struct MeasuredEnergyInfo {
    /// The meter and what it covers.
    pub meter: String,
    /// Energy per inference (window energy / runs), in µJ.
    pub per_inference_uj: f64,
    /// Mean power over the window, in mW.
    pub mean_power_mw: f64,
    /// Length of the window, in ms.
    pub window_ms: f64,
}

/// What a [`LatencySource`] measured: per-run totals, and per-op values per run, in `unit`.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Where it ran (e.g. `"host x86_64 (this process)"`).
    pub source: String,
    /// The clock or counter (e.g. `"std::time::Instant"`).
    pub clock: String,
    /// Unit of every value below.
    pub unit: MeasureUnit,
    /// Warm-up runs not reported.
    pub warmup: usize,
    /// Total of each run (start of the first op to the end of the last).
    pub totals: Vec<f64>,
    /// Sum of the per-op values of each run.
    pub op_sums: Vec<f64>,
    /// `per_op[op][run]`.
    pub per_op: Vec<Vec<f64>>,
    /// Measured energy, if a meter was asked for.
    pub energy: Option<MeasuredEnergyInfo>,
}

/// Something that runs a model and measures it.
pub trait LatencySource {
    /// Runs `mote` (aligned `.mote` bytes) `warmup` times unmeasured, then `runs` times measured.
    fn measure(
        &mut self,
        mote: &[u8],
        runs: usize,
        warmup: usize,
    ) -> Result<Measurement, CompileError>;
}

/// Runs the model in this process with [`Interpreter::invoke_profiled`].
#[derive(Clone, Copy, Debug)]
pub struct HostSource {
    /// The clock.
    pub clock: ClockChoice,
    /// An energy meter, if any.
    pub meter: Option<MeterChoice>,
}

/// Fills the model's inputs with fixed pseudo-random values (integers: any byte; floats: [−1, 1)).
fn fill_inputs(model: &Model, interp: &mut Interpreter) -> Result<(), CompileError> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..model.input_count() {
        let is_float = model.input(i).and_then(|d| d.dtype()) == Some(DType::Float32);
        let bytes = interp.input_bytes_mut(i)?;
        if is_float {
            for c in bytes.chunks_exact_mut(4) {
                let v = (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
                c.copy_from_slice(&v.to_le_bytes());
            }
        } else {
            for b in bytes.iter_mut() {
                *b = (next() >> 56) as u8;
            }
        }
    }
    Ok(())
}

impl LatencySource for HostSource {
    fn measure(
        &mut self,
        mote: &[u8],
        runs: usize,
        warmup: usize,
    ) -> Result<Measurement, CompileError> {
        let model = Model::from_bytes(mote)?;
        let mut arena = AlignedBytes::zeroed(model.arena_bytes());
        let mut interp = Interpreter::new(&model, arena.as_mut_slice())?;
        fill_inputs(&model, &mut interp)?;
        // The arena plan may reuse an input's bytes once it is dead, so every run starts from a
        // copy (outside the timed interval).
        let inputs: Vec<Vec<u8>> = (0..model.input_count())
            .map(|i| interp.input_bytes_mut(i).map(|b| b.to_vec()))
            .collect::<Result<_, _>>()?;
        let refill = |interp: &mut Interpreter| -> Result<(), CompileError> {
            for (i, bytes) in inputs.iter().enumerate() {
                interp.set_input_bytes(i, bytes)?;
            }
            Ok(())
        };
        let mut clock = self.clock.make()?;
        let hz = clock.ticks_per_second();
        let to_us = |ticks: u64| ticks_to_us(ticks, hz).unwrap_or(f64::NAN);
        let n = model.ops().len();
        let mut timings = vec![OpTiming::default(); n];
        for _ in 0..warmup {
            refill(&mut interp)?;
            interp.invoke_profiled(clock.as_mut(), &mut timings[..])?;
        }
        let mut meter = match self.meter {
            Some(MeterChoice::Rapl) => Some(Rapl::package().map_err(|e| usage(e.to_string()))?),
            None => None,
        };
        let mut wall = InstantClock::new();
        if let Some(m) = meter.as_mut() {
            m.start(wall.now()).map_err(|e| usage(e.to_string()))?;
        }
        let mut totals = Vec::with_capacity(runs);
        let mut op_sums = Vec::with_capacity(runs);
        let mut per_op = vec![Vec::with_capacity(runs); n];
        // Each run is two inferences: a profiled one for the per-layer figures, and a plain one,
        // timed as a whole, for the per-inference latency (without the profiler's clock reads
        // between ops, which cost a few percent on small models).
        for _ in 0..runs {
            refill(&mut interp)?;
            let s = interp.invoke_profiled(clock.as_mut(), &mut timings[..])?;
            for (t, v) in timings.iter().zip(per_op.iter_mut()) {
                v.push(to_us(t.ticks));
            }
            refill(&mut interp)?;
            let start = clock.now();
            interp.invoke()?;
            let total = to_us(clock.now().saturating_sub(start));
            totals.push(total);
            // The share of the profiled inference its ops account for, of the plain one.
            let share = if s.total_ticks > 0 {
                s.op_ticks as f64 / s.total_ticks as f64
            } else {
                1.0
            };
            op_sums.push(share * total);
            if let Some(m) = meter.as_mut() {
                m.sample(wall.now()).map_err(|e| usage(e.to_string()))?;
            }
        }
        let energy = match meter.as_mut() {
            Some(m) => {
                let e = m.stop(wall.now()).map_err(|e| usage(e.to_string()))?;
                Some(MeasuredEnergyInfo {
                    meter: format!("Linux RAPL {} ({})", m.name(), m.measures()),
                    // Two inferences per run (see above).
                    per_inference_uj: e.energy_uj / (2 * runs.max(1)) as f64,
                    mean_power_mw: e.mean_power_uw() / 1e3,
                    window_ms: e.duration_ns as f64 / 1e6,
                })
            }
            None => None,
        };
        Ok(Measurement {
            source: format!("host {} (this process)", std::env::consts::ARCH),
            clock: clock_label(clock.as_ref()),
            unit: MeasureUnit::Microseconds,
            warmup,
            totals,
            op_sums,
            per_op,
            energy,
        })
    }
}

fn clock_label(clock: &dyn Clock) -> String {
    let hz = clock.ticks_per_second();
    if clock.name() == "std::time::Instant" {
        clock.name().to_string()
    } else {
        format!("{} at {:.1} MHz", clock.name(), hz as f64 / 1e6)
    }
}

// ---- the report ---------------------------------------------------------------------------------

/// Median, min, max.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// Median, min and max of `values` (zeros when empty).
pub fn stats(values: &[f64]) -> Stats {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return Stats {
            median: 0.0,
            min: 0.0,
            max: 0.0,
        };
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    };
    Stats {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

/// The target a report's estimates are for.
#[derive(Clone, Debug, Serialize)]
pub struct TargetInfo {
    /// Short id.
    pub id: &'static str,
    /// Chip and board.
    pub name: &'static str,
    /// Core.
    pub core: &'static str,
    /// Core clock, Hz.
    pub clock_hz: u64,
    /// Supply voltage of the operating point, V.
    pub supply_v: f64,
    /// The operating point in words.
    pub operating_point: &'static str,
    /// Active power at the operating point, mW (estimated).
    pub active_power_mw: f64,
    /// Energy per cycle, pJ (estimated).
    pub energy_per_cycle_pj: f64,
    /// Whether the profile's energy is calibrated against published measurements.
    pub calibrated: bool,
}

impl TargetInfo {
    fn of(p: &'static TargetProfile) -> TargetInfo {
        TargetInfo {
            id: p.id,
            name: p.name,
            core: p.core.name(),
            clock_hz: p.clock_hz,
            supply_v: p.operating_point.supply_v,
            operating_point: p.operating_point.note,
            active_power_mw: p.active_power_uw() / 1e3,
            energy_per_cycle_pj: p.energy_per_cycle_pj(),
            calibrated: mote_targets::profiles::CALIBRATED.contains(&p.id),
        }
    }
}

/// One operator's row.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    /// Position in execution order.
    pub index: usize,
    /// Operator kind (TFLite name).
    pub op: &'static str,
    /// The kernel implementation it ran with on this build and CPU.
    pub kernel: &'static str,
    /// MACs (for elementwise and pooling ops: elements).
    pub macs: u64,
    /// Measured median over the runs, in the report's `measured_unit`.
    pub measured: f64,
    /// `measured` in µs, when the unit is time.
    pub measured_us: Option<f64>,
    /// Share of the sum of the layers' medians (0..1), measured.
    pub measured_share: f64,
    /// MACs / measured time, in GMAC/s (when the unit is time and the op has MACs).
    pub gmacs_per_s: Option<f64>,
    /// Estimated cycles on the target.
    pub estimated_cycles: Option<u64>,
    /// Estimated latency on the target, µs.
    pub estimated_latency_us: Option<f64>,
    /// Estimated energy on the target, µJ.
    pub estimated_energy_uj: Option<f64>,
    /// Share of the target estimate (0..1).
    pub estimated_share: Option<f64>,
}

/// The whole `mote bench` report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The model file.
    pub model: String,
    /// Operators.
    pub ops: usize,
    /// MACs per inference.
    pub macs: u64,
    /// `.mote` size (flash).
    pub flash_bytes: usize,
    /// Arena size (RAM).
    pub arena_bytes: usize,
    /// What was measured, where and how, in words.
    pub measured_on: String,
    /// The clock or counter.
    pub clock: String,
    /// Unit of the measured figures.
    pub measured_unit: MeasureUnit,
    /// Reported runs.
    pub runs: usize,
    /// Warm-up runs.
    pub warmup: usize,
    /// Measured per-inference figures, in `measured_unit`.
    pub measured: Stats,
    /// Measured median latency per inference, µs (when the unit is time).
    pub median_us: Option<f64>,
    /// Fastest inference, µs.
    pub min_us: Option<f64>,
    /// Slowest inference, µs.
    pub max_us: Option<f64>,
    /// Median over runs of (sum of per-op values / total) — how much of each inference the
    /// per-layer figures account for.
    pub layers_cover: f64,
    /// Measured energy per inference, if a meter was used.
    pub measured_energy: Option<MeasuredEnergyInfo>,
    /// The target profile id the estimates are for.
    pub target: Option<&'static str>,
    /// The target profile in brief.
    pub target_profile: Option<TargetInfo>,
    /// How the estimates were made, in words.
    pub estimate_basis: Option<String>,
    /// Estimated cycles per inference on the target.
    pub estimated_cycles: Option<u64>,
    /// Estimated latency per inference on the target, µs.
    pub estimated_latency_us: Option<f64>,
    /// Estimated energy per inference on the target, µJ.
    pub estimated_energy_uj: Option<f64>,
    /// Per-layer rows.
    pub layers: Vec<LayerReport>,
}

/// Measures `mote` with `source` and, for `target`, estimates it; `name` labels the report.
pub fn bench(
    name: &str,
    mote: &[u8],
    source: &mut dyn LatencySource,
    runs: usize,
    warmup: usize,
    target: Option<&'static TargetProfile>,
) -> Result<BenchReport, CompileError> {
    if runs == 0 {
        return Err(usage("--runs must be at least 1"));
    }
    let model = Model::from_bytes(mote)?;
    let m = source.measure(mote, runs, warmup)?;
    let is_time = m.unit == MeasureUnit::Microseconds;
    let total = stats(&m.totals);
    let cover: Vec<f64> = m
        .op_sums
        .iter()
        .zip(&m.totals)
        .map(|(s, t)| if *t > 0.0 { s / t } else { 1.0 })
        .collect();
    let layer_medians: Vec<f64> = m.per_op.iter().map(|v| stats(v).median).collect();
    let layer_sum: f64 = layer_medians.iter().sum();
    let estimates: Vec<Option<EnergyEstimate>> = (0..model.ops().len())
        .map(|i| target.and_then(|t| energy::estimate_op(&model, i, t)))
        .collect();
    let est_total = target.map(|t| energy::estimate_model(&model, t));
    let layers = (0..model.ops().len())
        .map(|i| {
            let macs = model.costs().get(i).map_or(0, |c| c.macs);
            let measured = layer_medians.get(i).copied().unwrap_or(0.0);
            let est = estimates[i];
            LayerReport {
                index: i,
                op: model.op_kind(i).map_or("?", |k| k.name()),
                kernel: mote_runtime::ops::kernel_name(&model, i),
                macs,
                measured,
                measured_us: is_time.then_some(measured),
                measured_share: if layer_sum > 0.0 {
                    measured / layer_sum
                } else {
                    0.0
                },
                gmacs_per_s: (is_time && macs > 0 && measured > 0.0)
                    .then(|| macs as f64 / (measured * 1e3)),
                estimated_cycles: est.map(|e| e.cycles),
                estimated_latency_us: est.map(|e| e.latency_us),
                estimated_energy_uj: est.map(|e| e.energy_uj),
                estimated_share: est.zip(est_total).map(|(e, t)| {
                    if t.cycles > 0 {
                        e.cycles as f64 / t.cycles as f64
                    } else {
                        0.0
                    }
                }),
            }
        })
        .collect();
    Ok(BenchReport {
        model: name.to_string(),
        ops: model.ops().len(),
        macs: model.costs().iter().map(|c| c.macs).sum(),
        flash_bytes: model.file_bytes(),
        arena_bytes: model.arena_bytes(),
        measured_on: m.source,
        clock: m.clock,
        measured_unit: m.unit,
        runs,
        warmup: m.warmup,
        measured: total,
        median_us: is_time.then_some(total.median),
        min_us: is_time.then_some(total.min),
        max_us: is_time.then_some(total.max),
        layers_cover: stats(&cover).median,
        measured_energy: m.energy,
        target: target.map(|t| t.id),
        target_profile: target.map(TargetInfo::of),
        estimate_basis: target.map(|t| {
            format!(
                "estimated from the model's per-op counts (MACs, bytes from flash and SRAM) with \
                 the {} profile's cycle model (see `mote targets {}` for where its figures come \
                 from), at {:.0} MHz; energy = cycles x {:.1} pJ/cycle at its operating point \
                 ({:.2} V: {})",
                t.id,
                t.id,
                t.clock_hz as f64 / 1e6,
                t.energy_per_cycle_pj(),
                t.operating_point.supply_v,
                t.operating_point.note
            )
        }),
        estimated_cycles: est_total.map(|e| e.cycles),
        estimated_latency_us: est_total.map(|e| e.latency_us),
        estimated_energy_uj: est_total.map(|e| e.energy_uj),
        layers,
    })
}

// ---- rendering ----------------------------------------------------------------------------------

/// A µs figure at a sensible precision: `812 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
pub fn fmt_us(us: f64) -> String {
    if !us.is_finite() {
        "?".into()
    } else if us < 1.0 {
        format!("{:.0} ns", us * 1e3)
    } else if us < 1e3 {
        format!("{:.1} µs", us)
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A µJ figure at a sensible precision: `850 nJ`, `12.3 µJ`, `1.43 mJ`.
pub fn fmt_uj(uj: f64) -> String {
    if !uj.is_finite() {
        "?".into()
    } else if uj < 1.0 {
        format!("{:.0} nJ", uj * 1e3)
    } else if uj < 1e3 {
        format!("{:.1} µJ", uj)
    } else if uj < 1e6 {
        format!("{:.2} mJ", uj / 1e3)
    } else {
        format!("{:.2} J", uj / 1e6)
    }
}

fn fmt_measured(r: &BenchReport, v: f64) -> String {
    match r.measured_unit {
        MeasureUnit::Microseconds => fmt_us(v),
        MeasureUnit::Instructions => format!("{} instr", group(v.round() as u64)),
    }
}

/// Renders the report for a person.
pub fn render_text(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} ops, {} MACs per inference, flash {} bytes, arena {} bytes",
        r.model,
        r.ops,
        group(r.macs),
        group(r.flash_bytes as u64),
        group(r.arena_bytes as u64)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "MEASURED on {}, clock {}, {} runs after {} warm-up",
        r.measured_on, r.clock, r.runs, r.warmup
    );
    let _ = writeln!(
        s,
        "  per inference      median {}   min {}   max {}",
        fmt_measured(r, r.measured.median),
        fmt_measured(r, r.measured.min),
        fmt_measured(r, r.measured.max)
    );
    let _ = writeln!(
        s,
        "  per-layer figures  cover {:.1}% of each inference (the rest: the profiler's own clock reads between ops)",
        r.layers_cover * 100.0
    );
    match &r.measured_energy {
        Some(e) => {
            let _ = writeln!(
                s,
                "  energy             {} per inference, mean {:.1} mW over {:.0} ms — {}",
                fmt_uj(e.per_inference_uj),
                e.mean_power_mw,
                e.window_ms,
                e.meter
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  energy             not measured (--meter rapl on a Linux host with RAPL)"
            );
        }
    }
    if let (Some(t), Some(cycles), Some(lat), Some(en)) = (
        &r.target_profile,
        r.estimated_cycles,
        r.estimated_latency_us,
        r.estimated_energy_uj,
    ) {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "ESTIMATED for {} — {}, {} @ {:.0} MHz",
            t.id,
            t.name,
            t.core,
            t.clock_hz as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "  per inference      {} cycles, {}, {}",
            group(cycles),
            fmt_us(lat),
            fmt_uj(en)
        );
        let _ = writeln!(
            s,
            "  operating point    {:.2} V, {:.1} mW active = {:.1} pJ/cycle ({}); {}",
            t.supply_v,
            t.active_power_mw,
            t.energy_per_cycle_pj,
            t.operating_point,
            if t.calibrated {
                "energy calibrated against MLPerf Tiny results"
            } else {
                "not calibrated against measurements"
            }
        );
        let _ = writeln!(
            s,
            "  basis              the profile's cycle model over each op's counts: an estimate, \
             not a measurement (`mote targets {}` says where its figures come from)",
            t.id
        );
    }
    let _ = writeln!(s);
    let est = r.target.is_some();
    let u = r.measured_unit.short();
    let mut header: Vec<String> = vec![
        "#".into(),
        "op".into(),
        "kernel".into(),
        "MACs".into(),
        format!("measured {u}"),
        "share".into(),
        "GMAC/s".into(),
    ];
    if est {
        header.extend([
            "est. cycles".into(),
            "est. µs".into(),
            "est. µJ".into(),
            "est. share".into(),
        ]);
    }
    let mut rows: Vec<Vec<String>> = vec![header];
    for l in &r.layers {
        let mut row = vec![
            l.index.to_string(),
            l.op.to_string(),
            l.kernel.to_string(),
            group(l.macs),
            match r.measured_unit {
                MeasureUnit::Microseconds => format!("{:.2}", l.measured),
                MeasureUnit::Instructions => group(l.measured.round() as u64),
            },
            format!("{:.1}%", l.measured_share * 100.0),
            l.gmacs_per_s.map_or("-".into(), |g| format!("{g:.2}")),
        ];
        if est {
            row.extend([
                l.estimated_cycles.map_or("-".into(), group),
                l.estimated_latency_us
                    .map_or("-".into(), |v| format!("{v:.1}")),
                l.estimated_energy_uj
                    .map_or("-".into(), |v| format!("{v:.2}")),
                l.estimated_share
                    .map_or("-".into(), |v| format!("{:.1}%", v * 100.0)),
            ]);
        }
        rows.push(row);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (k, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            let left = c == 1 || c == 2;
            if c > 0 {
                line.push_str(if est && c == 7 { "  | " } else { "  " });
            }
            if left {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        let _ = writeln!(s, "{}", line.trim_end());
        if k == 0 {
            let _ = writeln!(s, "{}", "-".repeat(line.trim_end().chars().count()));
        }
    }
    let _ = writeln!(
        s,
        "\nmeasured: median per layer over the runs on this host; MACs of elementwise and pooling ops count elements{}",
        if est {
            "\nest.: the target profile's cycle model over each op's counts — an estimate, see `mote targets <id>` for its sources"
        } else {
            ""
        }
    );
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The per-layer table as CSV: one header line, one row per layer. Column names say what is
/// measured and what is estimated; `measured_by` and `target` say how and for which profile.
pub fn render_csv(r: &BenchReport) -> String {
    let mut s = String::from(
        "index,op,kernel,macs,measured_unit,measured,measured_share,gmacs_per_s,measured_by,\
         target,estimated_cycles,estimated_latency_us,estimated_energy_uj\n",
    );
    let by = format!(
        "{} / {} / median of {} runs",
        r.measured_on, r.clock, r.runs
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for l in &r.layers {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            l.index,
            l.op,
            csv_field(l.kernel),
            l.macs,
            r.measured_unit.short(),
            l.measured,
            l.measured_share,
            opt(l.gmacs_per_s),
            csv_field(&by),
            r.target.unwrap_or(""),
            l.estimated_cycles.map_or(String::new(), |c| c.to_string()),
            opt(l.estimated_latency_us),
            opt(l.estimated_energy_uj),
        );
    }
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Colour of an op family in the chart.
fn op_colour(op: &str) -> (&'static str, &'static str) {
    match op {
        "CONV_2D" => ("#3b6fb6", "convolution"),
        "DEPTHWISE_CONV_2D" => ("#2a9d8f", "depthwise conv"),
        "FULLY_CONNECTED" => ("#e07a2f", "fully connected"),
        "AVERAGE_POOL_2D" | "MAX_POOL_2D" | "MEAN" => ("#8e6cbf", "pooling / mean"),
        "ADD" | "SUB" | "MUL" => ("#c94f6d", "elementwise arithmetic"),
        _ => ("#8d99a6", "other (activation, softmax, reshape, ...)"),
    }
}

/// A per-layer horizontal bar chart: the measured time of each layer, and, with a target, the
/// estimated energy (and latency) of each layer on it, side by side.
pub fn render_svg(r: &BenchReport) -> String {
    let est = r.target.is_some();
    let width = 1100.0;
    let label_w = 230.0;
    let row_h = 22.0;
    let top = 108.0;
    let gap = 40.0;
    let right_pad = 20.0;
    let panels = if est { 2.0 } else { 1.0 };
    let panel_w = (width - label_w - right_pad - gap * (panels - 1.0)) / panels;
    // Space reserved right of the longest bar for its label (the measured one names the kernel).
    let text_room = [185.0, 125.0];
    let n = r.layers.len() as f64;
    let legend_top = top + n * row_h + 50.0;
    let mut kinds: Vec<(&str, &str)> = Vec::new();
    for l in &r.layers {
        let c = op_colour(l.op);
        if !kinds.contains(&c) {
            kinds.push(c);
        }
    }
    let legend_rows = kinds.len().div_ceil(3) as f64;
    let height = legend_top + legend_rows * 20.0 + 56.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="30" font-size="20" font-weight="bold" fill="#222">{} — cost per layer</text>"##,
        xml_escape(&r.model)
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="52" font-size="13" fill="#444">{} ops, {} MACs. Measured on {} ({}): median {} per inference over {} runs.</text>"##,
        r.ops,
        group(r.macs),
        xml_escape(&r.measured_on),
        xml_escape(&r.clock),
        xml_escape(&fmt_measured(r, r.measured.median)),
        r.runs
    );
    if let (Some(t), Some(lat), Some(en)) = (
        &r.target_profile,
        r.estimated_latency_us,
        r.estimated_energy_uj,
    ) {
        let _ = writeln!(
            s,
            r##"<text x="20" y="70" font-size="13" fill="#444">Estimated for {} ({} @ {:.0} MHz, {:.2} V): {} and {} per inference, from the profile's cycle model — not measured.</text>"##,
            xml_escape(t.id),
            xml_escape(t.core),
            t.clock_hz as f64 / 1e6,
            t.supply_v,
            xml_escape(&fmt_us(lat)),
            xml_escape(&fmt_uj(en))
        );
    }
    // Panel titles (short enough for a panel's width).
    let px = |k: f64| label_w + k * (panel_w + gap);
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" font-size="14" font-weight="bold" fill="#222">Measured: {} per layer (median)</text>"##,
        px(0.0),
        top - 12.0,
        match r.measured_unit {
            MeasureUnit::Microseconds => "host time",
            MeasureUnit::Instructions => "instructions",
        }
    );
    if est {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="14" font-weight="bold" fill="#222">Estimated: energy per layer on {} (time)</text>"##,
            px(1.0),
            top - 12.0,
            xml_escape(r.target.unwrap_or(""))
        );
    }
    let max_measured = r.layers.iter().map(|l| l.measured).fold(0.0, f64::max);
    let max_energy = r
        .layers
        .iter()
        .filter_map(|l| l.estimated_energy_uj)
        .fold(0.0, f64::max);
    for (k, l) in r.layers.iter().enumerate() {
        let y = top + k as f64 * row_h;
        if k % 2 == 0 {
            let _ = writeln!(
                s,
                r##"<rect x="10" y="{y}" width="{}" height="{row_h}" fill="#f4f6f8"/>"##,
                width - 20.0
            );
        }
        let (colour, _) = op_colour(l.op);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="end" fill="#222">{}  {}</text>"##,
            label_w - 12.0,
            y + 15.0,
            l.index,
            xml_escape(l.op)
        );
        let bar = |value: f64, max: f64, panel: usize| {
            if max > 0.0 {
                (value / max * (panel_w - text_room[panel])).max(1.0)
            } else {
                1.0
            }
        };
        let w = bar(l.measured, max_measured, 0);
        let _ = writeln!(
            s,
            r##"<rect x="{}" y="{}" width="{w:.1}" height="{}" fill="{colour}"/>"##,
            px(0.0),
            y + 4.0,
            row_h - 8.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" font-size="11" fill="#333">{} · {:.1}% <tspan fill="#888">{}</tspan></text>"##,
            px(0.0) + w + 6.0,
            y + 15.0,
            xml_escape(&fmt_measured(r, l.measured)),
            l.measured_share * 100.0,
            xml_escape(l.kernel)
        );
        if let (Some(e), Some(lat)) = (l.estimated_energy_uj, l.estimated_latency_us) {
            let w = bar(e, max_energy, 1);
            let _ = writeln!(
                s,
                r##"<rect x="{}" y="{}" width="{w:.1}" height="{}" fill="{colour}" fill-opacity="0.75"/>"##,
                px(1.0),
                y + 4.0,
                row_h - 8.0
            );
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{}" font-size="11" fill="#333">{} ({})</text>"##,
                px(1.0) + w + 6.0,
                y + 15.0,
                xml_escape(&fmt_uj(e)),
                xml_escape(&fmt_us(lat))
            );
        }
    }
    // Totals under each panel.
    let total_y = top + n * row_h + 16.0;
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{total_y}" font-size="12" font-weight="bold" fill="#222">total {} per inference (median of {} runs)</text>"##,
        px(0.0),
        xml_escape(&fmt_measured(r, r.measured.median)),
        r.runs
    );
    if let (Some(lat), Some(en)) = (r.estimated_latency_us, r.estimated_energy_uj) {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{total_y}" font-size="12" font-weight="bold" fill="#222">total {} ({}) per inference, estimated</text>"##,
            px(1.0),
            xml_escape(&fmt_uj(en)),
            xml_escape(&fmt_us(lat))
        );
    }
    // Axis lines at the bars' origin.
    for k in 0..panels as usize {
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#555" stroke-width="1"/>"##,
            top,
            top + n * row_h,
            x = px(k as f64)
        );
    }
    // Legend.
    for (k, (colour, label)) in kinds.iter().enumerate() {
        let x = 20.0 + (k % 3) as f64 * 340.0;
        let y = legend_top + (k / 3) as f64 * 20.0;
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{}" width="14" height="12" fill="{colour}"/><text x="{}" y="{}" font-size="12" fill="#333">{}</text>"##,
            y - 10.0,
            x + 20.0,
            y,
            xml_escape(label)
        );
    }
    let foot = legend_top + legend_rows * 20.0 + 18.0;
    let _ = writeln!(
        s,
        r##"<text x="20" y="{foot}" font-size="11" fill="#666">Measured: per-layer medians of profiled runs ({}). Estimated: {}.</text>"##,
        xml_escape(&r.clock),
        match &r.target_profile {
            Some(t) => format!(
                "cycles from the {} profile's cycle model, energy = cycles x {:.1} pJ/cycle (see `mote targets {}`)",
                xml_escape(t.id),
                t.energy_per_cycle_pj,
                xml_escape(t.id)
            ),
            None => "nothing (no --target)".into(),
        }
    );
    s.push_str("</svg>\n");
    s
}

// ---- mote targets -------------------------------------------------------------------------------

fn feature_names(f: Features) -> String {
    let names: Vec<&str> = Features::NAMED
        .iter()
        .filter(|(bit, _)| f.contains(*bit))
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(" ")
    }
}

fn bytes_label(b: u64) -> String {
    const KIB: u64 = 1024;
    if b >= KIB * KIB * KIB && b % (KIB * KIB * KIB) == 0 {
        format!("{} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB && b % (KIB * KIB) == 0 {
        format!("{} MiB", b / (KIB * KIB))
    } else if b >= KIB && b % KIB == 0 {
        format!("{} KiB", b / KIB)
    } else {
        format!("{b} B")
    }
}

fn regulator_name(p: &TargetProfile) -> &'static str {
    match p.operating_point.regulator {
        mote_targets::Regulator::Ldo => "LDO",
        mote_targets::Regulator::Smps => "SMPS",
        mote_targets::Regulator::Board => "board supply",
    }
}

fn target_json(p: &TargetProfile) -> serde_json::Value {
    let m = &p.cycle_model;
    serde_json::json!({
        "id": p.id,
        "name": p.name,
        "core": p.core.name(),
        "features": feature_names(p.features),
        "clock_hz": p.clock_hz,
        "flash_bytes": p.flash_bytes,
        "ram_bytes": p.ram_bytes,
        "operating_point": {
            "supply_v": p.operating_point.supply_v,
            "regulator": regulator_name(p),
            "note": p.operating_point.note,
            "active_power_mw_estimated": p.active_power_uw() / 1e3,
            "supply_ua_per_mhz_estimated": p.operating_point.supply_ua_per_mhz(p.clock_hz),
            "energy_per_cycle_pj_estimated": p.energy_per_cycle_pj(),
        },
        "calibrated": mote_targets::profiles::CALIBRATED.contains(&p.id),
        "cycle_model": {
            "conv_cycles_per_mac": m.conv_cycles_per_mac,
            "depthwise_cycles_per_mac": m.depthwise_cycles_per_mac,
            "fully_connected_cycles_per_mac": m.fully_connected_cycles_per_mac,
            "elementwise_cycles_per_element": m.elementwise_cycles_per_element,
            "flash_read_cycles_per_byte": m.flash_read_cycles_per_byte,
            "sram_read_cycles_per_byte": m.sram_read_cycles_per_byte,
            "sram_write_cycles_per_byte": m.sram_write_cycles_per_byte,
            "per_op_overhead_cycles": m.per_op_overhead_cycles,
        },
        "sources": p.sources,
    })
}

/// The profiles as a table.
pub fn render_targets(profiles: &[&TargetProfile]) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "id".into(),
        "core".into(),
        "ISA features".into(),
        "clock".into(),
        "flash".into(),
        "RAM".into(),
        "operating point (energy estimates assume it)".into(),
        "calibrated".into(),
    ]];
    for p in profiles {
        let mhz = p.clock_hz as f64 / 1e6;
        let clock = if mhz >= 1000.0 {
            format!("{:.1} GHz", mhz / 1e3)
        } else {
            format!("{mhz:.0} MHz")
        };
        let power = match p.operating_point.active {
            mote_targets::ActivePower::CurrentPerMhz { .. } => format!(
                "{:.1} V {}, {:.1} µA/MHz = {:.1} mW, {:.0} pJ/cycle",
                p.operating_point.supply_v,
                regulator_name(p),
                p.operating_point.supply_ua_per_mhz(p.clock_hz),
                p.active_power_uw() / 1e3,
                p.energy_per_cycle_pj()
            ),
            mote_targets::ActivePower::Watts(w) => format!(
                "{:.1} V {}, {w:.1} W, {:.1} pJ/cycle",
                p.operating_point.supply_v,
                regulator_name(p),
                p.energy_per_cycle_pj()
            ),
        };
        rows.push([
            p.id.into(),
            p.core.name().into(),
            feature_names(p.features),
            clock,
            bytes_label(p.flash_bytes),
            bytes_label(p.ram_bytes),
            power,
            if mote_targets::profiles::CALIBRATED.contains(&p.id) {
                "yes (MLPerf Tiny)".into()
            } else {
                "no".into()
            },
        ]);
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for (k, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.push_str(&" ".repeat(widths[c] - cell.chars().count()));
        }
        let _ = writeln!(s, "{}", line.trim_end());
        if k == 0 {
            let _ = writeln!(s, "{}", "-".repeat(line.trim_end().chars().count()));
        }
    }
    let _ = writeln!(
        s,
        "\nPower figures are estimates from each profile's sources (`mote targets <id>` shows them)."
    );
    s
}

/// One profile in full.
pub fn render_target_detail(p: &TargetProfile) -> String {
    let m = &p.cycle_model;
    let mut s = String::new();
    let _ = writeln!(s, "{} — {}", p.id, p.name);
    let _ = writeln!(
        s,
        "core        {} ({}) @ {:.0} MHz",
        p.core.name(),
        feature_names(p.features),
        p.clock_hz as f64 / 1e6
    );
    let _ = writeln!(
        s,
        "memory      flash {}, RAM {}",
        bytes_label(p.flash_bytes),
        bytes_label(p.ram_bytes)
    );
    let _ = writeln!(
        s,
        "operating   {:.2} V, {}: {}",
        p.operating_point.supply_v,
        regulator_name(p),
        p.operating_point.note
    );
    let _ = writeln!(
        s,
        "power       {:.2} mW active = {:.1} µA/MHz at the supply = {:.1} pJ/cycle (estimated)",
        p.active_power_uw() / 1e3,
        p.operating_point.supply_ua_per_mhz(p.clock_hz),
        p.energy_per_cycle_pj()
    );
    let _ = writeln!(
        s,
        "calibrated  {}",
        if mote_targets::profiles::CALIBRATED.contains(&p.id) {
            "yes: energy within ±20% of the X-CUBE-AI 10.2 MLPerf Tiny results at their latencies"
        } else {
            "no"
        }
    );
    let _ = writeln!(s, "cycle model (estimates)");
    for (name, v) in [
        ("conv, cycles/MAC", m.conv_cycles_per_mac),
        ("depthwise, cycles/MAC", m.depthwise_cycles_per_mac),
        (
            "fully connected, cycles/MAC",
            m.fully_connected_cycles_per_mac,
        ),
        (
            "elementwise, cycles/element",
            m.elementwise_cycles_per_element,
        ),
        ("flash read, cycles/byte", m.flash_read_cycles_per_byte),
        ("SRAM read, cycles/byte", m.sram_read_cycles_per_byte),
        ("SRAM write, cycles/byte", m.sram_write_cycles_per_byte),
        ("per-op overhead, cycles", m.per_op_overhead_cycles),
    ] {
        let _ = writeln!(s, "  {name:<30} {v}");
    }
    let _ = writeln!(s, "sources");
    for src in p.sources {
        let _ = writeln!(s, "  - {src}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_odd_even_and_empty() {
        assert_eq!(
            stats(&[3.0, 1.0, 2.0]),
            Stats {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(stats(&[]).median, 0.0);
        assert_eq!(stats(&[f64::NAN, 5.0]).median, 5.0);
    }

    #[test]
    fn units_print_at_sensible_precision() {
        assert_eq!(fmt_us(0.5), "500 ns");
        assert_eq!(fmt_us(12.34), "12.3 µs");
        assert_eq!(fmt_us(4_560.0), "4.56 ms");
        assert_eq!(fmt_us(1.5e6), "1.50 s");
        assert_eq!(fmt_us(f64::NAN), "?");
        assert_eq!(fmt_uj(0.85), "850 nJ");
        assert_eq!(fmt_uj(12.34), "12.3 µJ");
        assert_eq!(fmt_uj(1431.0), "1.43 mJ");
        assert_eq!(fmt_uj(2.0e6), "2.00 J");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("q\"x"), "\"q\"\"x\"");
        assert_eq!(xml_escape("a<b&\"c\">"), "a&lt;b&amp;&quot;c&quot;&gt;");
        assert_eq!(bytes_label(640 * 1024), "640 KiB");
        assert_eq!(bytes_label(2 * 1024 * 1024), "2 MiB");
        assert_eq!(bytes_label(4 << 30), "4 GiB");
        assert_eq!(bytes_label(1000), "1000 B");
    }

    #[test]
    fn choices_parse_or_explain() {
        assert_eq!(ClockChoice::parse("instant").unwrap(), ClockChoice::Instant);
        assert_eq!(ClockChoice::parse("auto").unwrap(), ClockChoice::Auto);
        assert!(ClockChoice::parse("sundial")
            .unwrap_err()
            .to_string()
            .contains("instant"));
        assert_eq!(MeterChoice::parse("rapl").unwrap(), MeterChoice::Rapl);
        assert!(MeterChoice::parse("ina219")
            .unwrap_err()
            .to_string()
            .contains("ina"));
        assert!(target_by_id("stm32")
            .unwrap_err()
            .to_string()
            .contains("stm32l4r5"));
        // Every clock choice either works here or says it is unavailable.
        for c in ["instant", "tsc", "cntvct", "pmu", "auto"] {
            match ClockChoice::parse(c).unwrap().make() {
                Ok(mut clock) => {
                    let a = clock.now();
                    assert!(clock.now() >= a);
                }
                Err(e) => assert!(e.to_string().contains("not"), "{e}"),
            }
        }
    }

    #[test]
    fn targets_render_every_profile() {
        let all: Vec<&TargetProfile> = mote_targets::ALL.iter().collect();
        let text = render_targets(&all);
        for p in &all {
            assert!(text.contains(p.id), "{}", p.id);
            let detail = render_target_detail(p);
            assert!(detail.contains("sources") && detail.contains(p.name));
            let j = target_json(p);
            assert_eq!(j["id"], p.id);
            assert!(
                j["operating_point"]["energy_per_cycle_pj_estimated"]
                    .as_f64()
                    .unwrap()
                    > 0.0
            );
        }
        assert!(text.contains("Cortex-M4") && text.contains("120 MHz") && text.contains("640 KiB"));
    }
}
