//! Bare-metal Cortex-M: the DWT cycle counter and the SysTick timer (through the `cortex-m`
//! crate, no `unsafe` here).
//!
//! - DWT `CYCCNT` counts core cycles; 32 bits, so [`DwtClock`] extends it and must be read at
//!   least once per 2³² cycles (36 s at 120 MHz). Armv6-M (Cortex-M0/M0+) has no cycle counter;
//!   QEMU implements the register but it reads 0, which [`DwtClock::new`] detects.
//! - SysTick is a 24-bit down-counter on the core clock or an external reference. [`SysTickClock`]
//!   runs it free (reload 2²⁴ − 1, no interrupt) and counts wraps by polling, so it must be read
//!   at least once per 2²⁴ ticks (140 ms at 120 MHz; 0.67 s of virtual time on the 25 MHz core
//!   clock QEMU gives its MPS2 boards). Under QEMU with `-icount shift=0` (1 ns per instruction)
//!   its ticks count executed instructions: 40 per tick at 25 MHz.

use cortex_m::peripheral::{syst::SystClkSource, SYST};
#[cfg(target_has_atomic = "32")]
use cortex_m::peripheral::{DCB, DWT};

use super::{Clock, TickUnit};

/// The DWT cycle counter as a [`Clock`] (Armv7-M and Armv8-M; not Armv6-M).
#[cfg(target_has_atomic = "32")]
#[derive(Debug)]
pub struct DwtClock {
    core_hz: u32,
    high: u64,
    last: u32,
}

// `target_has_atomic = "32"` separates Armv7-M/Armv8-M (LDREX/STREX, and a DWT cycle counter)
// from Armv6-M, which has neither.
#[cfg(target_has_atomic = "32")]
impl DwtClock {
    /// Enables tracing and the cycle counter (unlocking the DWT first, which the Cortex-M7 in
    /// some STM32 parts needs). Returns `None` when the core has no cycle counter or it does not
    /// advance (QEMU): use [`SysTickClock`] then. `core_hz` is the core clock.
    pub fn new(dcb: &mut DCB, dwt: &mut DWT, core_hz: u32) -> Option<Self> {
        if !DWT::has_cycle_counter() {
            return None;
        }
        dcb.enable_trace();
        DWT::unlock();
        dwt.enable_cycle_counter();
        let a = DWT::cycle_count();
        for _ in 0..16 {
            cortex_m::asm::nop();
        }
        let b = DWT::cycle_count();
        if a == b {
            return None;
        }
        Some(DwtClock {
            core_hz,
            high: 0,
            last: b,
        })
    }
}

#[cfg(target_has_atomic = "32")]
impl Clock for DwtClock {
    fn now(&mut self) -> u64 {
        let c = DWT::cycle_count();
        if c < self.last {
            self.high = self.high.wrapping_add(1 << 32);
        }
        self.last = c;
        self.high | c as u64
    }
    fn ticks_per_second(&self) -> u64 {
        self.core_hz as u64
    }
    fn unit(&self) -> TickUnit {
        TickUnit::CoreCycles
    }
    fn name(&self) -> &'static str {
        "Cortex-M DWT CYCCNT"
    }
}

/// SysTick's reload: the full 24-bit range.
const RELOAD: u32 = 0x00FF_FFFF;

/// The SysTick timer, free-running, as a [`Clock`].
pub struct SysTickClock {
    syst: SYST,
    source: SystClkSource,
    source_hz: u32,
    periods: u64,
    last_up: u32,
}

impl SysTickClock {
    /// Takes SysTick over: clock `source` (the core clock, or the external reference), reload
    /// 2²⁴ − 1, counter cleared and enabled, interrupt left as it was (normally off). `source_hz`
    /// is the rate of that clock (the core clock is 25 MHz on QEMU's MPS2 boards: checked under
    /// `-icount shift=0`, one tick of `SystClkSource::Core` is 40 instructions).
    pub fn new(mut syst: SYST, source: SystClkSource, source_hz: u32) -> Self {
        syst.disable_counter();
        syst.set_clock_source(source);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_counter();
        SysTickClock {
            syst,
            source,
            source_hz,
            periods: 0,
            last_up: 0,
        }
    }

    /// The clock source it runs from.
    pub fn source(&self) -> SystClkSource {
        self.source
    }

    /// Stops the counter and gives SysTick back.
    pub fn free(mut self) -> SYST {
        self.syst.disable_counter();
        self.syst
    }
}

impl Clock for SysTickClock {
    fn now(&mut self) -> u64 {
        // Counting down from RELOAD: elapsed ticks in this period are RELOAD − current.
        let up = RELOAD - (SYST::get_current() & RELOAD);
        if up < self.last_up {
            self.periods = self.periods.wrapping_add(1);
        }
        self.last_up = up;
        self.periods * (RELOAD as u64 + 1) + up as u64
    }
    fn ticks_per_second(&self) -> u64 {
        self.source_hz as u64
    }
    fn unit(&self) -> TickUnit {
        match self.source {
            SystClkSource::Core => TickUnit::CoreCycles,
            SystClkSource::External => TickUnit::TimerTicks,
        }
    }
    fn name(&self) -> &'static str {
        "Cortex-M SysTick"
    }
}
