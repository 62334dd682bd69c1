//! Bare-metal firmware: runs the embedded `.mote` model on every embedded input case and reports
//! the outputs and the cost over semihosting, then exits with the run's status.
//!
//! The model, its exact arena size and the inputs come from `build.rs` (`MOTE_MODEL`,
//! `MOTE_INPUTS`, `MOTE_BOARD`). The arena is a `static` of exactly `Model::arena_bytes()`.
//! With the feature `aot`, `build.rs` compiles the model ahead of time
//! (`mote_runtime::aot::rust_source`) and the firmware calls the generated `invoke` instead of
//! the interpreter: no model is loaded (`stack load=0`), and the report is the same.
//!
//! Cost: SysTick counts the core clock. Under `qemu-system-arm -icount shift=0` every instruction
//! advances virtual time by 1 ns, so ticks are proportional to executed instructions; the
//! firmware also times a loop of a known instruction count, and the host scales by it
//! (`instructions = ticks × calib_instructions / calib_ticks`). On a real board SysTick counts
//! cycles instead.
//!
//! Stack: the free stack (from `_stack_end`, the end of the statics, up to the stack pointer) is
//! painted with a pattern before loading the model and again before the first inference; the
//! deepest overwritten word after each gives the high-water mark below the caller's frame.
//! `load` is the stack of `Model::from_bytes` + `Interpreter::new`, `invoke` that of
//! `Interpreter::invoke` (with the SysTick reads around it); both include any SysTick exception
//! taken meanwhile (32 bytes).
//!
//! Output protocol, one line each:
//! ```text
//! mote-firmware arena=<bytes> input=<bytes> output=<bytes> cases=<n>
//! case <i> ticks=<t> out=<hex of every output, back to back>
//! op <i> <KIND> ticks=<t>          (one profiled pass over the last case)
//! stack load=<bytes> invoke=<bytes>  (high-water marks, see below)
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

/// Stack high-water marks by painting (see the crate docs).
#[cfg_attr(feature = "baseline", allow(dead_code))]
mod stack {
    extern "C" {
        /// Lowest address the stack may reach: the end of `.bss`/`.uninit`, 4-byte aligned.
        static _stack_end: u32;
    }

    const PAINT: u32 = 0x5EED_C0DE;

    fn end() -> usize {
        // Only the symbol's address is taken, never its (nonexistent) value.
        core::ptr::addr_of!(_stack_end) as usize
    }

    /// The current stack pointer.
    #[inline(always)]
    pub fn pointer() -> usize {
        cortex_m::register::msp::read() as usize
    }

    /// Bytes just below the stack pointer that `paint` leaves alone: the compiler may read the
    /// stack pointer before pushing `paint`'s own frame (shrink-wrapping). Every measured use is
    /// far deeper than this.
    const MARGIN: usize = 256;

    /// Fills the free stack, up to [`MARGIN`] below the stack pointer, with the pattern.
    #[inline(never)]
    pub fn paint() {
        let below = pointer().saturating_sub(MARGIN) & !3;
        let mut at = end();
        while at < below {
            // SAFETY: `[_stack_end, sp - MARGIN)` is RAM the stack has not claimed (it grows
            // down from `sp`; this function's frame is at most a few words), 4-byte aligned; an
            // exception taken meanwhile only uses words below `sp` that are dead once it returns.
            unsafe { core::ptr::write_volatile(at as *mut u32, PAINT) };
            at += 4;
        }
    }

    /// The lowest address written since `paint` (the stack's deepest point).
    pub fn deepest() -> usize {
        let mut at = end();
        // SAFETY: reads within `[_stack_end, sp)`: aligned RAM (see `paint`).
        while at < pointer() && unsafe { core::ptr::read_volatile(at as *const u32) } == PAINT {
            at += 4;
        }
        at
    }
}

fn fail(what: &str) -> ! {
    hprintln!("error: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

#[cfg(not(any(feature = "baseline", feature = "aot")))]
mod run {
    use mote_runtime::{Interpreter, Model};

    /// Runs every case; calls `report(case, ticks, outputs)` after each. Returns the stack
    /// bytes used by loading and by one inference (see `super::stack`).
    pub fn all_cases(
        arena: &mut [u8],
        outputs: &mut [u8],
        mut report: impl FnMut(usize, u64, &[u8]),
    ) -> Result<[usize; 2], &'static str> {
        use super::stack;
        stack::paint();
        let sp = stack::pointer();
        let model = Model::from_bytes(super::generated::model()).map_err(|_| "invalid model")?;
        let mut interp = Interpreter::new(&model, arena).map_err(|_| "arena refused")?;
        let load_stack = sp.saturating_sub(stack::deepest());
        let mut invoke_stack = 0;
        for (case, input) in super::INPUTS.chunks_exact(super::INPUT_BYTES).enumerate() {
            let mut at = 0;
            for i in 0..model.input_count() {
                let dst = interp.input_bytes_mut(i).map_err(|_| "input")?;
                let n = dst.len();
                dst.copy_from_slice(&input[at..at + n]);
                at += n;
            }
            if case == 0 {
                stack::paint();
            }
            let sp = stack::pointer();
            let start = super::ticks();
            interp.invoke().map_err(|_| "invoke failed")?;
            let end = super::ticks();
            if case == 0 {
                invoke_stack = sp.saturating_sub(stack::deepest());
            }
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
        Ok([load_stack, invoke_stack])
    }
}

/// The model compiled ahead of time (`mote_runtime::aot`): the same report, with the generated
/// module's `invoke` and `invoke_op` in place of the interpreter's (and no model to load).
#[cfg(all(feature = "aot", not(feature = "baseline")))]
mod run {
    // (`ARENA_BYTES` and `CONST_BYTES` are for other firmware: here the arena's size comes from
    // model.rs, the same value.)
    #[allow(dead_code)]
    mod model {
        include!(concat!(env!("OUT_DIR"), "/aot.rs"));
    }

    pub fn all_cases(
        arena: &mut [u8],
        outputs: &mut [u8],
        mut report: impl FnMut(usize, u64, &[u8]),
    ) -> Result<[usize; 2], &'static str> {
        use super::stack;
        let mut invoke_stack = 0;
        for (case, input) in super::INPUTS.chunks_exact(super::INPUT_BYTES).enumerate() {
            let mut at = 0;
            for (offset, len) in model::INPUTS {
                let dst = arena.get_mut(offset..offset + len).ok_or("input")?;
                dst.copy_from_slice(input.get(at..at + len).ok_or("input")?);
                at += len;
            }
            if case == 0 {
                stack::paint();
            }
            let sp = stack::pointer();
            let start = super::ticks();
            model::invoke(arena).map_err(|_| "invoke failed")?;
            let end = super::ticks();
            if case == 0 {
                invoke_stack = sp.saturating_sub(stack::deepest());
            }
            let mut at = 0;
            for (offset, len) in model::OUTPUTS {
                let src = arena.get(offset..offset + len).ok_or("output")?;
                outputs[at..at + len].copy_from_slice(src);
                at += len;
            }
            report(case, end - start, outputs);
        }
        for (i, name) in model::OPS.iter().enumerate() {
            let start = super::ticks();
            model::invoke_op(arena, i).map_err(|_| "invoke failed")?;
            let end = super::ticks();
            cortex_m_semihosting::hprintln!("op {} {} ticks={}", i, name, end - start);
        }
        Ok([0, invoke_stack])
    }
}

#[cfg(feature = "baseline")]
mod run {
    /// The same loop without the runtime: copies each input prefix to the outputs.
    pub fn all_cases(
        arena: &mut [u8],
        outputs: &mut [u8],
        mut report: impl FnMut(usize, u64, &[u8]),
    ) -> Result<[usize; 2], &'static str> {
        for (case, input) in super::INPUTS.chunks_exact(super::INPUT_BYTES).enumerate() {
            let n = input.len().min(outputs.len()).min(arena.len());
            arena[..n].copy_from_slice(&input[..n]);
            outputs[..n].copy_from_slice(&arena[..n]);
            let start = super::ticks();
            let end = super::ticks();
            report(case, end - start, outputs);
        }
        Ok([0, 0])
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
    let [load_stack, invoke_stack] = match result {
        Ok(s) => s,
        Err(e) => fail(e),
    };
    hprintln!("stack load={} invoke={}", load_stack, invoke_stack);

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
