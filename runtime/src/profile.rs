//! Timing inferences: the [`Clock`] trait, clocks for each platform, and
//! [`Interpreter::invoke_profiled`], which records every operator's time with no heap.
//!
//! ```
//! use mote_runtime::profile::{Clock, FnSink, OpTiming, TickUnit};
//!
//! /// A clock advancing 10 ticks per read (a real one reads a counter).
//! struct Fake(u64);
//! impl Clock for Fake {
//!     fn now(&mut self) -> u64 { self.0 += 10; self.0 }
//!     fn ticks_per_second(&self) -> u64 { 1_000_000 }
//!     fn unit(&self) -> TickUnit { TickUnit::TimerTicks }
//!     fn name(&self) -> &'static str { "fake" }
//! }
//! # fn run(interp: &mut mote_runtime::Interpreter) -> Result<(), mote_runtime::Error> {
//! // Per-op times into a caller slice (one entry per op) ...
//! let mut times = [OpTiming::default(); 32];
//! let summary = interp.invoke_profiled(&mut Fake(0), &mut times[..])?;
//! // ... or into a callback.
//! let mut slowest = 0;
//! interp.invoke_profiled(&mut Fake(0), &mut FnSink(|t: OpTiming| slowest = slowest.max(t.ticks)))?;
//! # let _ = summary; Ok(()) }
//! ```
//!
//! Clocks ([`Clock`]; each exists only where its hardware does):
//! - `InstantClock` (feature `std`): `std::time::Instant`, nanoseconds.
//! - `DwtClock` and `SysTickClock` (bare-metal Cortex-M): the DWT cycle counter (not on
//!   Armv6-M; reads 0 under QEMU, which `DwtClock::new` detects) and the 24-bit SysTick timer
//!   (under QEMU with `-icount shift=0` its ticks count executed instructions).
//! - `CntvctClock` and `PmuCycleClock` (aarch64): the generic timer's virtual count, and the
//!   PMU cycle counter where the OS lets user space read it (detected; Linux usually does not).
//! - `TscClock` (x86-64): the time-stamp counter, with its frequency calibrated against
//!   `Instant` under `std`.
//!
//! Per-op *estimates* for a target (cycles, µs, µJ from a profile's cost model) are in
//! [`crate::energy`]; they are labelled "estimated", these timings "measured".

use crate::error::Error;
use crate::interpreter::Interpreter;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(all(target_arch = "arm", target_os = "none"))]
mod cortex_m;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "aarch64")]
pub use aarch64::CntvctClock;
#[cfg(all(target_arch = "aarch64", feature = "std", target_os = "linux"))]
pub use aarch64::PmuCycleClock;
#[cfg(all(target_arch = "arm", target_os = "none", target_has_atomic = "32"))]
pub use cortex_m::DwtClock;
#[cfg(all(target_arch = "arm", target_os = "none"))]
pub use cortex_m::SysTickClock;
#[cfg(target_arch = "x86_64")]
pub use x86::TscClock;

/// What one tick of a [`Clock`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickUnit {
    /// Nanoseconds of wall-clock time.
    Nanoseconds,
    /// Core clock cycles (DWT CYCCNT, PMU cycle counter).
    CoreCycles,
    /// Ticks of a fixed-frequency timer (SysTick, CNTVCT, invariant TSC).
    TimerTicks,
}

impl TickUnit {
    /// The unit's name for reports (`"ns"`, `"cycles"`, `"ticks"`).
    pub const fn name(self) -> &'static str {
        match self {
            TickUnit::Nanoseconds => "ns",
            TickUnit::CoreCycles => "cycles",
            TickUnit::TimerTicks => "ticks",
        }
    }
}

/// A monotonic tick counter.
pub trait Clock {
    /// The current count. Never decreases; counters narrower than 64 bits are extended by the
    /// implementation (which then must be read at least once per wrap period — see each clock).
    fn now(&mut self) -> u64;
    /// Ticks per second, or 0 when unknown.
    fn ticks_per_second(&self) -> u64;
    /// What a tick is.
    fn unit(&self) -> TickUnit;
    /// Where the ticks come from, for reports (e.g. `"std::time::Instant"`, `"DWT CYCCNT"`).
    fn name(&self) -> &'static str;
}

/// Converts `ticks` of a clock running at `ticks_per_second` to µs (`None` if the rate is
/// unknown).
pub fn ticks_to_us(ticks: u64, ticks_per_second: u64) -> Option<f64> {
    if ticks_per_second == 0 {
        None
    } else {
        Some(ticks as f64 * 1e6 / ticks_per_second as f64)
    }
}

/// The measured time of one operator in one profiled invocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpTiming {
    /// The operator's index in execution order.
    pub index: u32,
    /// The clock reading just before the operator ran.
    pub start: u64,
    /// Ticks the operator took.
    pub ticks: u64,
}

/// Where [`Interpreter::invoke_profiled`] puts per-op timings.
pub trait ProfileSink {
    /// Called once before the first operator with the number of operators; an error aborts the
    /// invocation before anything runs (a slice sink refuses one too short).
    fn begin(&mut self, op_count: usize) -> Result<(), Error> {
        let _ = op_count;
        Ok(())
    }
    /// Called after each operator, outside its timed interval.
    fn record(&mut self, timing: OpTiming);
}

impl ProfileSink for [OpTiming] {
    fn begin(&mut self, op_count: usize) -> Result<(), Error> {
        if self.len() < op_count {
            return Err(Error::ProfileTooSmall {
                needed: op_count,
                given: self.len(),
            });
        }
        Ok(())
    }

    fn record(&mut self, timing: OpTiming) {
        if let Some(slot) = self.get_mut(timing.index as usize) {
            *slot = timing;
        }
    }
}

impl<const N: usize> ProfileSink for [OpTiming; N] {
    fn begin(&mut self, op_count: usize) -> Result<(), Error> {
        self[..].begin(op_count)
    }

    fn record(&mut self, timing: OpTiming) {
        self[..].record(timing)
    }
}

/// A sink that calls a closure for every operator.
pub struct FnSink<F>(pub F);

impl<F: FnMut(OpTiming)> ProfileSink for FnSink<F> {
    fn record(&mut self, timing: OpTiming) {
        (self.0)(timing)
    }
}

/// The totals of one profiled invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileSummary {
    /// Operators run.
    pub ops: u32,
    /// The clock reading at the start of the invocation (= the first operator's start).
    pub start: u64,
    /// Ticks from the start of the first operator to the end of the last.
    pub total_ticks: u64,
    /// Sum of the operators' ticks; `total_ticks − op_ticks` is the profiler's own overhead
    /// (clock reads, recording) and the interpreter's dispatch between operators.
    pub op_ticks: u64,
    /// The clock's rate (0 when unknown).
    pub ticks_per_second: u64,
    /// The clock's unit.
    pub unit: TickUnit,
}

impl ProfileSummary {
    /// Ticks of the invocation not inside any operator.
    pub fn overhead_ticks(&self) -> u64 {
        self.total_ticks.saturating_sub(self.op_ticks)
    }

    /// The invocation's total in µs, if the clock's rate is known.
    pub fn total_us(&self) -> Option<f64> {
        ticks_to_us(self.total_ticks, self.ticks_per_second)
    }
}

impl Interpreter<'_, '_> {
    /// Runs every operator once, like [`Interpreter::invoke`], timing each with `clock`, and
    /// hands each operator's [`OpTiming`] to `sink` (a `[OpTiming]` slice with one entry per
    /// operator, or a callback through [`FnSink`]). Allocates nothing.
    ///
    /// Each operator's interval spans exactly its [`Interpreter::invoke_op`] call (one clock read
    /// before, one after); recording happens between intervals, so the sum of the operators'
    /// ticks is at most the total, and the difference is the profiler's own cost: one clock read
    /// and one record per operator boundary.
    pub fn invoke_profiled<C, S>(
        &mut self,
        clock: &mut C,
        sink: &mut S,
    ) -> Result<ProfileSummary, Error>
    where
        C: Clock + ?Sized,
        S: ProfileSink + ?Sized,
    {
        let n = self.model().ops().len();
        sink.begin(n)?;
        // The invocation starts when the first operator does (no separate read: it would only
        // add a gap of one clock read to the total).
        let first = clock.now();
        let mut end = first;
        let mut op_ticks = 0u64;
        for i in 0..n {
            let start = if i == 0 { first } else { clock.now() };
            self.invoke_op(i)?;
            end = clock.now();
            let ticks = end.saturating_sub(start);
            op_ticks = op_ticks.saturating_add(ticks);
            sink.record(OpTiming {
                index: i as u32,
                start,
                ticks,
            });
        }
        Ok(ProfileSummary {
            ops: n as u32,
            start: first,
            total_ticks: end.saturating_sub(first),
            op_ticks,
            ticks_per_second: clock.ticks_per_second(),
            unit: clock.unit(),
        })
    }
}

/// `std::time::Instant` as a [`Clock`], in nanoseconds since the clock was made.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug)]
pub struct InstantClock {
    origin: std::time::Instant,
}

#[cfg(feature = "std")]
impl InstantClock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        InstantClock {
            origin: std::time::Instant::now(),
        }
    }
}

#[cfg(feature = "std")]
impl Default for InstantClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for InstantClock {
    fn now(&mut self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    fn ticks_per_second(&self) -> u64 {
        1_000_000_000
    }
    fn unit(&self) -> TickUnit {
        TickUnit::Nanoseconds
    }
    fn name(&self) -> &'static str {
        "std::time::Instant"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_conversion_and_units() {
        assert_eq!(ticks_to_us(120_000_000, 120_000_000), Some(1e6));
        assert_eq!(ticks_to_us(5, 0), None);
        assert_eq!(TickUnit::Nanoseconds.name(), "ns");
        assert_eq!(TickUnit::CoreCycles.name(), "cycles");
        assert_eq!(TickUnit::TimerTicks.name(), "ticks");
    }

    #[test]
    fn slice_sinks_check_their_length_and_store_by_index() {
        let mut short = [OpTiming::default(); 2];
        assert_eq!(
            short.begin(3),
            Err(Error::ProfileTooSmall {
                needed: 3,
                given: 2
            })
        );
        assert_eq!(short[..].begin(2), Ok(()));
        let t = OpTiming {
            index: 1,
            start: 7,
            ticks: 9,
        };
        short.record(t);
        assert_eq!(short[1], t);
        // Out of range is ignored (begin() refuses such a run before it starts).
        short.record(OpTiming { index: 5, ..t });
        assert_eq!(short[0], OpTiming::default());
    }

    #[test]
    fn fn_sinks_see_every_record() {
        let mut sum = 0;
        let mut sink = FnSink(|t: OpTiming| sum += t.ticks);
        assert_eq!(sink.begin(1000), Ok(()));
        sink.record(OpTiming {
            index: 0,
            start: 0,
            ticks: 4,
        });
        sink.record(OpTiming {
            index: 1,
            start: 4,
            ticks: 6,
        });
        assert_eq!(sum, 10);
    }

    #[test]
    fn summary_overhead() {
        let s = ProfileSummary {
            ops: 2,
            start: 100,
            total_ticks: 1000,
            op_ticks: 950,
            ticks_per_second: 1_000_000,
            unit: TickUnit::TimerTicks,
        };
        assert_eq!(s.overhead_ticks(), 50);
        assert_eq!(s.total_us(), Some(1000.0));
        let odd = ProfileSummary {
            op_ticks: 2000,
            ..s
        };
        assert_eq!(odd.overhead_ticks(), 0);
    }

    #[cfg(feature = "std")]
    #[test]
    fn instant_clock_is_monotonic_nanoseconds() {
        let mut c = InstantClock::default();
        let a = c.now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = c.now();
        assert!(b >= a + 1_000_000, "{a} {b}");
        assert_eq!(c.ticks_per_second(), 1_000_000_000);
        assert_eq!(c.unit(), TickUnit::Nanoseconds);
        assert_eq!(c.name(), "std::time::Instant");
    }
}
