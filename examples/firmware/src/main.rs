//! Bare-metal firmware: runs the embedded `.mote` model on every embedded input case and reports
//! the outputs and the cost over semihosting, then exits with the run's status.
//!
//! The model, its exact arena size and the inputs come from `build.rs` (`MOTE_MODEL`,
//! `MOTE_INPUTS`, `MOTE_BOARD`). The arena is a `static` of exactly `Model::arena_bytes()`.
//!
//! Cost: SysTick counts the core clock. Under `qemu-system-arm -icount shift=0` every instruction
//! advances virtual time by 1 ns, so ticks are proportional to executed instructions; the
//! firmware also times a loop of a known instruction count, and the host scales by it
//! (`instructions = ticks × calib_instructions / calib_ticks`). On a real board SysTick counts
//! cycles instead.
//!
//! Output protocol, one line each:
//! ```text
//! mote-firmware arena=<bytes> input=<bytes> output=<bytes> cases=<n>
//! case <i> ticks=<t> out=<hex of every output, back to back>
//! op <i> <KIND> ticks=<t>          (one profiled pass over the last case)
//! calib ticks=<t> instructions=<n>
//! done
//! ```
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hio, hprint, hprintln};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}
use generated::{ARENA_BYTES, INPUTS, INPUT_BYTES, OUTPUT_BYTES};

/// SysTick wraps (every 2^24 ticks) seen so far.
static WRAPS: AtomicU32 = AtomicU32::new(0);

const RELOAD: u32 = 0x00FF_FFFF;

#[exception]
fn SysTick() {
    // Only this handler writes WRAPS (load + store: thumbv6m has no atomic read-modify-write).
    WRAPS.store(WRAPS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Ticks since the counter started, robust against a wrap between the two reads.
fn ticks() -> u64 {
    loop {
        let before = WRAPS.load(Ordering::Relaxed);
        let current = SYST::get_current();
        if WRAPS.load(Ordering::Relaxed) == before {
            return (u64::from(before) << 24) | u64::from(RELOAD - current);
        }
    }
}

/// Runs `n` iterations of a two-instruction loop (`subs`, `bne`): 2·n instructions.
#[inline(never)]
fn calibration_loop(n: u32) {
    // SAFETY: touches only the scratch register it declares; no memory, no stack.
    unsafe {
        core::arch::asm!(
            "2:",
            "subs {n}, #1",
            "bne 2b",
            n = inout(reg) n => _,
            options(nomem, nostack),
        );
    }
}

/// Writes `bytes` as lowercase hex to the host's stdout, without allocation.
fn write_hex(out: &mut hio::HostStream, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 128];
    for chunk in bytes.chunks(64) {
        for (k, b) in chunk.iter().enumerate() {
            buf[2 * k] = DIGITS[usize::from(b >> 4)];
            buf[2 * k + 1] = DIGITS[usize::from(b & 15)];
        }
        out.write_all(&buf[..2 * chunk.len()]).ok();
    }
}

fn fail(what: &str) -> ! {
    hprintln!("error: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

#[cfg(not(feature = "baseline"))]
mod run {
    use mote_runtime::{Interpreter, Model};

    /// Runs every case; calls `report(case, ticks, outputs)` after each.
    pub fn all_cases(
        arena: &mut [u8],
        outputs: &mut [u8],
        mut report: impl FnMut(usize, u64, &[u8]),
    ) -> Result<(), &'static str> {
        let model = Model::from_bytes(super::generated::model()).map_err(|_| "invalid model")?;
        let mut interp = Interpreter::new(&model, arena).map_err(|_| "arena refused")?;
        for (case, input) in super::INPUTS.chunks_exact(super::INPUT_BYTES).enumerate() {
            let mut at = 0;
            for i in 0..model.input_count() {
                let dst = interp.input_bytes_mut(i).map_err(|_| "input")?;
                let n = dst.len();
                dst.copy_from_slice(&input[at..at + n]);
                at += n;
            }
            let start = super::ticks();
            interp.invoke().map_err(|_| "invoke failed")?;
            let end = super::ticks();
            let mut at = 0;
            for i in 0..model.output_count() {
                let src = interp.output_bytes(i).map_err(|_| "output")?;
                outputs[at..at + src.len()].copy_from_slice(src);
                at += src.len();
            }
            report(case, end - start, outputs);
        }
        // One more pass over the last case, op by op, for the per-operator profile.
        for i in 0..model.ops().len() {
            let start = super::ticks();
            interp.invoke_op(i).map_err(|_| "invoke failed")?;
            let end = super::ticks();
            let name = model.op_kind(i).map_or("?", |k| k.name());
            cortex_m_semihosting::hprintln!("op {} {} ticks={}", i, name, end - start);
        }
        Ok(())
    }
}

#[cfg(feature = "baseline")]
mod run {
    /// The same loop without the runtime: copies each input prefix to the outputs.
    pub fn all_cases(
        arena: &mut [u8],
        outputs: &mut [u8],
        mut report: impl FnMut(usize, u64, &[u8]),
    ) -> Result<(), &'static str> {
        for (case, input) in super::INPUTS.chunks_exact(super::INPUT_BYTES).enumerate() {
            let n = input.len().min(outputs.len()).min(arena.len());
            arena[..n].copy_from_slice(&input[..n]);
            outputs[..n].copy_from_slice(&arena[..n]);
            let start = super::ticks();
            let end = super::ticks();
            report(case, end - start, outputs);
        }
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    // cortex-m-rt turns these into `&'static mut` references, taken once.
    static mut ARENA: mote_runtime::Arena<ARENA_BYTES> = mote_runtime::Arena::new();
    static mut OUTPUTS: [u8; OUTPUT_BYTES] = [0; OUTPUT_BYTES];

    let Some(peripherals) = cortex_m::Peripherals::take() else {
        fail("peripherals taken twice");
    };
    let mut syst = peripherals.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();

    let Ok(mut out) = hio::hstdout() else {
        fail("no semihosting stdout");
    };
    hprintln!(
        "mote-firmware arena={} input={} output={} cases={}",
        ARENA_BYTES,
        INPUT_BYTES,
        OUTPUT_BYTES,
        INPUTS.len() / INPUT_BYTES
    );
    let result = run::all_cases(&mut ARENA.0, OUTPUTS, |case, t, outputs| {
        hprint!("case {} ticks={} out=", case, t);
        write_hex(&mut out, outputs);
        out.write_all(b"\n").ok();
    });
    if let Err(e) = result {
        fail(e);
    }

    const CALIB_ITERATIONS: u32 = 1 << 20;
    let start = ticks();
    calibration_loop(CALIB_ITERATIONS);
    let end = ticks();
    hprintln!(
        "calib ticks={} instructions={}",
        end - start,
        2 * u64::from(CALIB_ITERATIONS)
    );
    hprintln!("done");
    debug::exit(debug::EXIT_SUCCESS);
    loop {}
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("error: hard fault at pc={:#010x}", frame.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("error: panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}
