//! Running a model on an emulated board: build the bare-metal firmware (`examples/firmware`) with
//! the model and the inputs embedded, run it under `qemu-system-arm`, and read back the outputs and
//! the cost.
//!
//! Cost is "instructions (qemu)": with `-icount shift=0` every guest instruction advances virtual
//! time by 1 ns, so SysTick counts executed instructions; the firmware calibrates the tick against
//! a loop of known length. Deterministic, identical on every run, and not a time.
//!
//! Needs on the machine: the board's rustup target, `qemu-system-arm`, and the firmware sources
//! (found next to this crate, or at `MOTE_FIRMWARE_DIR`). `.ci/run` installs all of it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An emulated board the firmware runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// Name, as in `--board` and `targets/boards/<name>/memory.x`.
    pub name: &'static str,
    /// The core.
    pub core: &'static str,
    /// The Rust target triple the firmware is built for.
    pub target: &'static str,
    /// `qemu-system-arm -cpu`.
    pub qemu_cpu: &'static str,
    /// `qemu-system-arm -machine`.
    pub qemu_machine: &'static str,
    /// Which kernels the firmware runs there (`arm-mve` also turns on the firmware feature).
    pub kernels: &'static str,
}

/// Every board `mote bench --board` knows.
pub const BOARDS: [Board; 4] = [
    Board {
        name: "mps2-an386",
        core: "Cortex-M4F",
        target: "thumbv7em-none-eabihf",
        qemu_cpu: "cortex-m4",
        qemu_machine: "mps2-an386",
        kernels: "arm-dsp",
    },
    Board {
        name: "mps3-an547",
        core: "Cortex-M55",
        target: "thumbv8m.main-none-eabihf",
        qemu_cpu: "cortex-m55",
        qemu_machine: "mps3-an547",
        kernels: "arm-mve",
    },
    Board {
        name: "lm3s6965evb",
        core: "Cortex-M3",
        target: "thumbv7m-none-eabi",
        qemu_cpu: "cortex-m3",
        qemu_machine: "lm3s6965evb",
        kernels: "reference",
    },
    Board {
        name: "microbit",
        core: "Cortex-M0",
        target: "thumbv6m-none-eabi",
        qemu_cpu: "cortex-m0",
        qemu_machine: "microbit",
        kernels: "reference",
    },
];

/// The board called `name`.
pub fn board(name: &str) -> Option<&'static Board> {
    BOARDS.iter().find(|b| b.name == name)
}

/// What went wrong running on a board.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// No board of that name.
    #[error("unknown board `{0}` (known: mps2-an386, mps3-an547, lm3s6965evb, microbit)")]
    UnknownBoard(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A tool could not be started (not installed?).
    #[error("cannot run `{tool}` ({source}); .ci/run shows how to install it")]
    Tool {
        /// The program.
        tool: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The firmware did not build.
    #[error("building the firmware for {board} failed:\n{log}")]
    Build {
        /// The board.
        board: String,
        /// cargo's output.
        log: String,
    },
    /// qemu ran out of time.
    #[error(
        "{board}: no result within {seconds} s (firmware hung or crashed); output so far:\n{log}"
    )]
    Timeout {
        /// The board.
        board: String,
        /// The limit.
        seconds: u64,
        /// The firmware's output so far.
        log: String,
    },
    /// The firmware reported a failure or printed something unexpected.
    #[error("{board}: the firmware failed (exit {status:?}):\n{log}")]
    Firmware {
        /// The board.
        board: String,
        /// qemu's exit status.
        status: Option<i32>,
        /// The firmware's output.
        log: String,
    },
}

/// Where the firmware is and how long runs may take.
#[derive(Debug, Clone)]
pub struct BoardOptions {
    /// The firmware crate (`examples/firmware`).
    pub firmware_dir: PathBuf,
    /// cargo's target directory for firmware builds.
    pub target_dir: PathBuf,
    /// Limit for one qemu run.
    pub timeout: Duration,
    /// Build the model ahead of time (`mote_runtime::aot`, firmware feature `aot`) instead of
    /// with the interpreter. The `.mote` file must be planned without ops in place or fused.
    pub aot: bool,
}

impl Default for BoardOptions {
    fn default() -> Self {
        let firmware_dir = std::env::var_os("MOTE_FIRMWARE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/firmware"));
        let target_dir = std::env::var_os("MOTE_FIRMWARE_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("mote-firmware-target"));
        BoardOptions {
            firmware_dir,
            target_dir,
            timeout: Duration::from_secs(300),
            aot: false,
        }
    }
}

/// The result of running every input case once on a board.
#[derive(Debug, Clone)]
pub struct BoardRun {
    /// The board.
    pub board: &'static Board,
    /// Every output, back to back, for each case.
    pub outputs: Vec<Vec<u8>>,
    /// Executed instructions of one inference, for each case (qemu `-icount`, SysTick-counted).
    pub instructions: Vec<u64>,
    /// Bytes of flash the firmware occupies (code, read-only data, initialised data, the model;
    /// without the embedded test inputs).
    pub flash_bytes: u64,
    /// Bytes of the embedded model.
    pub model_bytes: u64,
    /// Bytes of the `.text` section (all code: startup, runtime, kernels, reporting).
    pub text_bytes: u64,
    /// Bytes of the static arena (`Model::arena_bytes`).
    pub arena_bytes: u64,
    /// Bytes of RAM the firmware's statics take (`.data` + `.bss`: the arena, the outputs,
    /// runtime state; without the stack).
    pub ram_bytes: u64,
    /// Stack high-water marks measured on the board by painting the free stack: bytes used by
    /// one `Interpreter::invoke`, and by `Model::from_bytes` + `Interpreter::new` (below the
    /// caller's frame; see examples/firmware/src/main.rs).
    pub stack: StackUse,
    /// Per-layer cost of the last case: op kind and instructions, in execution order.
    pub layers: Vec<(String, u64)>,
    /// The firmware's cargo features (`select-ops` and the model's `op-*` / `dtype-*`).
    pub features: Vec<String>,
    /// The firmware ELF.
    pub elf: PathBuf,
}

/// Builds the firmware for `board` with `model` (a `.mote` file) and `inputs` (whole cases, all
/// inputs back to back) embedded; returns the ELF. `features` are extra cargo features.
pub fn build_firmware(
    board: &'static Board,
    model: &Path,
    inputs: &Path,
    features: &[&str],
    opts: &BoardOptions,
) -> Result<PathBuf, BoardError> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&opts.firmware_dir)
        .args(["build", "--release", "--quiet", "--target", board.target])
        .env("MOTE_MODEL", absolute(model)?)
        .env("MOTE_INPUTS", absolute(inputs)?)
        .env("MOTE_BOARD", board.name)
        .env("CARGO_TARGET_DIR", &opts.target_dir)
        // Cargo does not apply `[target.'thumbv8m.main-none-eabihf'] rustflags` from config
        // files (the dotted triple), so the M55's CPU (for Helium and DSP instructions) is set
        // here; the other boards' CPUs come from .cargo/config.toml or need nothing.
        .env(
            "CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS",
            "-C target-cpu=cortex-m55 -C llvm-args=-unroll-runtime=false \
             -C llvm-args=-unroll-allow-partial=false -C llvm-args=-unroll-threshold=100 \
             -C llvm-args=-inline-threshold=200 -C llvm-args=-enable-machine-outliner=always",
        )
        // A firmware build is not part of the calling cargo's build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    // Helium kernels are a firmware feature (they need the M55's `target-cpu`, set above).
    let features: Vec<&str> = features
        .iter()
        .copied()
        .chain((board.kernels == "arm-mve").then_some("arm-mve"))
        .collect();
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let out = cmd.output().map_err(|source| BoardError::Tool {
        tool: "cargo".into(),
        source,
    })?;
    if !out.status.success() {
        return Err(BoardError::Build {
            board: board.name.into(),
            log: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(opts
        .target_dir
        .join(board.target)
        .join("release")
        .join("mote-firmware"))
}

fn absolute(p: &Path) -> Result<PathBuf, BoardError> {
    std::path::absolute(p).map_err(|source| BoardError::Io {
        path: p.to_path_buf(),
        source,
    })
}

/// Runs `elf` on `board` under qemu; returns its standard output (the firmware's report).
pub fn run_qemu(
    board: &'static Board,
    elf: &Path,
    timeout: Duration,
) -> Result<String, BoardError> {
    let mut child = Command::new("qemu-system-arm")
        .args(["-cpu", board.qemu_cpu, "-machine", board.qemu_machine])
        .args(["-nographic", "-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-icount", "shift=0"])
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BoardError::Tool {
            tool: "qemu-system-arm".into(),
            source,
        })?;
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let log = reader.join().unwrap_or_default();
    match status {
        None => Err(BoardError::Timeout {
            board: board.name.into(),
            seconds: timeout.as_secs(),
            log,
        }),
        Some(s) if s.success() && log.lines().any(|l| l == "done") => Ok(log),
        Some(s) => Err(BoardError::Firmware {
            board: board.name.into(),
            status: s.code(),
            log,
        }),
    }
}

/// Builds and runs `model` on `board` with every case of `inputs`, and parses the report.
pub fn run_on_board(
    board: &'static Board,
    model: &Path,
    inputs: &[u8],
    opts: &BoardOptions,
) -> Result<BoardRun, BoardError> {
    let work = opts.target_dir.join("inputs");
    std::fs::create_dir_all(&work).map_err(|source| BoardError::Io {
        path: work.clone(),
        source,
    })?;
    let inputs_path = work.join(format!("{}-{}.bin", board.name, std::process::id()));
    std::fs::write(&inputs_path, inputs).map_err(|source| BoardError::Io {
        path: inputs_path.clone(),
        source,
    })?;
    // Link only the model's operator families and dtypes (runtime/src/ops/select.rs), or, ahead
    // of time, only the kernels its generated code calls.
    let features = if opts.aot {
        vec!["aot".to_string()]
    } else {
        model_features(model)?
    };
    let features: Vec<&str> = features.iter().map(String::as_str).collect();
    let elf = build_firmware(board, model, &inputs_path, &features, opts)?;
    let _ = std::fs::remove_file(&inputs_path);
    let log = run_qemu(board, &elf, opts.timeout)?;
    let report = parse_report(&log).ok_or_else(|| BoardError::Firmware {
        board: board.name.into(),
        status: Some(0),
        log: log.clone(),
    })?;
    let sizes = elf_sizes(&elf)?;
    let model_bytes = if opts.aot {
        aot_const_bytes(model)? as u64
    } else {
        std::fs::metadata(model)
            .map_err(|source| BoardError::Io {
                path: model.to_path_buf(),
                source,
            })?
            .len()
    };
    Ok(BoardRun {
        board,
        outputs: report.outputs,
        instructions: report.instructions,
        layers: report.layers,
        features: features.iter().map(|f| f.to_string()).collect(),
        ram_bytes: sizes.ram,
        flash_bytes: sizes.flash.saturating_sub(inputs.len() as u64),
        model_bytes,
        text_bytes: sizes.text,
        arena_bytes: report.arena,
        stack: report.stack,
        elf,
    })
}

/// Stack bytes measured on the board (high-water marks below the caller's frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StackUse {
    /// Used by one `Interpreter::invoke` (kernels' scratch buffers included).
    pub invoke: u64,
    /// Used by `Model::from_bytes` + `Interpreter::new` (validation).
    pub load: u64,
}

/// The parsed firmware report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Arena bytes the firmware bound.
    pub arena: u64,
    /// Outputs of each case.
    pub outputs: Vec<Vec<u8>>,
    /// Instructions of each case (ticks scaled by the calibration).
    pub instructions: Vec<u64>,
    /// Per-op kind and instructions of the profiled pass over the last case.
    pub layers: Vec<(String, u64)>,
    /// Stack high-water marks.
    pub stack: StackUse,
}

/// Parses the firmware's report (see `examples/firmware/src/main.rs`).
pub fn parse_report(log: &str) -> Option<Report> {
    let field = |line: &str, key: &str| -> Option<String> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key).map(str::to_string))
    };
    let mut arena = None;
    let mut ticks = Vec::new();
    let mut outputs = Vec::new();
    let mut calib = None;
    let mut stack = None;
    let mut op_ticks = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("op ") {
            let kind = rest.split_whitespace().nth(1)?.to_string();
            op_ticks.push((kind, field(line, "ticks=")?.parse::<u64>().ok()?));
            continue;
        }
        if line.starts_with("mote-firmware ") {
            arena = field(line, "arena=")?.parse().ok();
        } else if line.starts_with("case ") {
            ticks.push(field(line, "ticks=")?.parse::<u64>().ok()?);
            outputs.push(hex(&field(line, "out=").unwrap_or_default())?);
        } else if line.starts_with("calib ") {
            let t: u64 = field(line, "ticks=")?.parse().ok()?;
            let n: u64 = field(line, "instructions=")?.parse().ok()?;
            calib = Some((t, n));
        } else if line.starts_with("stack ") {
            stack = Some(StackUse {
                invoke: field(line, "invoke=")?.parse().ok()?,
                load: field(line, "load=")?.parse().ok()?,
            });
        }
    }
    let (ct, cn) = calib?;
    if ct == 0 {
        return None;
    }
    let scale = |t: u64| ((t as u128 * cn as u128 + ct as u128 / 2) / ct as u128) as u64;
    let instructions = ticks.iter().map(|&t| scale(t)).collect();
    let layers = op_ticks.into_iter().map(|(k, t)| (k, scale(t))).collect();
    Some(Report {
        arena: arena?,
        outputs,
        instructions,
        layers,
        stack: stack?,
    })
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Section sizes of a firmware ELF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ElfSizes {
    /// Bytes of `.text`.
    pub text: u64,
    /// Bytes of every allocated section with contents (what is programmed into flash).
    pub flash: u64,
    /// Bytes of `.data` and `.bss` (statics in RAM).
    pub ram: u64,
}

/// Reads the section sizes of a 32-bit little-endian ELF file.
pub fn elf_sizes(path: &Path) -> Result<ElfSizes, BoardError> {
    let bytes = std::fs::read(path).map_err(|source| BoardError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_elf_sizes(&bytes).ok_or_else(|| BoardError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a 32-bit LE ELF"),
    })
}

fn parse_elf_sizes(b: &[u8]) -> Option<ElfSizes> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    if b.get(..4)? != b"\x7fELF" || *b.get(4)? != 1 || *b.get(5)? != 1 {
        return None;
    }
    let shoff = u32_at(0x20)? as usize;
    let shentsize = u16_at(0x2E)? as usize;
    let shnum = u16_at(0x30)? as usize;
    let shstrndx = u16_at(0x32)? as usize;
    let sh = |i: usize| shoff + i * shentsize;
    let strtab = u32_at(sh(shstrndx) + 0x10)? as usize;
    let mut sizes = ElfSizes::default();
    for i in 0..shnum {
        let name_off = u32_at(sh(i))? as usize;
        let kind = u32_at(sh(i) + 4)?;
        let flags = u32_at(sh(i) + 8)?;
        let size = u64::from(u32_at(sh(i) + 0x14)?);
        let name_bytes = b.get(strtab + name_off..)?;
        let end = name_bytes.iter().position(|&c| c == 0)?;
        let name = std::str::from_utf8(&name_bytes[..end]).ok()?;
        const SHT_NOBITS: u32 = 8;
        const SHF_ALLOC: u32 = 2;
        if flags & SHF_ALLOC != 0 && kind != SHT_NOBITS {
            sizes.flash += size;
        }
        if name == ".text" {
            sizes.text = size;
        }
        if name == ".data" || name == ".bss" {
            sizes.ram += size;
        }
    }
    Some(sizes)
}

/// The `.mote` file at `model`, read and validated.
fn read_model(model: &Path) -> Result<crate::write::AlignedBytes, BoardError> {
    let bytes = std::fs::read(model).map_err(|source| BoardError::Io {
        path: model.to_path_buf(),
        source,
    })?;
    Ok(crate::write::AlignedBytes::new(&bytes))
}

fn invalid_model(model: &Path, e: mote_runtime::Error) -> BoardError {
    BoardError::Io {
        path: model.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// The flash bytes of the `.mote` file at `model` compiled ahead of time: its constants and
/// parameters (`mote_runtime::aot::AotSource::const_bytes`).
fn aot_const_bytes(model: &Path) -> Result<usize, BoardError> {
    let aligned = read_model(model)?;
    let m =
        mote_runtime::Model::from_bytes(aligned.as_slice()).map_err(|e| invalid_model(model, e))?;
    mote_runtime::aot::rust_source(&m)
        .map(|s| s.const_bytes)
        .map_err(|e| invalid_model(model, e))
}

/// Why `model` cannot be compiled ahead of time (`e` from `mote_runtime::aot::rust_source`), as
/// a usage error naming the op and what to do instead.
pub fn aot_error(
    model: &mote_runtime::Model,
    e: mote_runtime::Error,
) -> crate::error::CompileError {
    let what = match e {
        mote_runtime::Error::UnsupportedOp { op, .. } => format!(
            "op {op} ({}) is not covered by ahead-of-time code, which runs int8 CONV_2D, \
             DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D, MAX_POOL_2D, ADD, SUB, MUL, \
             RELU, RELU6, LOGISTIC, TANH, PAD, MEAN, CONCATENATION, QUANTIZE (between 8-bit \
             types, or from float32), DEQUANTIZE (to float32), RESHAPE, SQUEEZE and SOFTMAX",
            model.op_kind(op as usize).map_or("?", |k| k.name())
        ),
        e => e.to_string(),
    };
    crate::error::CompileError::Usage(format!(
        "cannot compile the model ahead of time: {what}; run it with the interpreter (without \
         --aot / --emit-aot)"
    ))
}

/// The firmware features that link exactly what the `.mote` file at `model` needs: `select-ops`
/// and its `op-*` / `dtype-*` families (`mote_runtime::ops::select`).
pub fn model_features(model: &Path) -> Result<Vec<String>, BoardError> {
    let aligned = read_model(model)?;
    let m =
        mote_runtime::Model::from_bytes(aligned.as_slice()).map_err(|e| invalid_model(model, e))?;
    Ok(std::iter::once("select-ops")
        .chain(mote_runtime::ops::select::required_features(&m))
        .map(String::from)
        .collect())
}

/// Runs `mote bench MODEL --board NAME`: compiles a `.tflite` (or reads a `.mote`), builds the
/// firmware with it, runs it under qemu and prints the output and the cost.
pub fn bench_board_cmd(
    model: &Path,
    board_name: &str,
    input: Option<&Path>,
    output: Option<&Path>,
    json: bool,
    aot: bool,
) -> Result<(), crate::error::CompileError> {
    use crate::error::CompileError;
    let io = |path: &Path, source| CompileError::Io {
        path: path.display().to_string(),
        source,
    };
    let b = board(board_name).ok_or_else(|| {
        CompileError::Usage(BoardError::UnknownBoard(board_name.into()).to_string())
    })?;
    let bytes = std::fs::read(model).map_err(|e| io(model, e))?;
    let mote = if bytes.starts_with(b"MOTE") {
        crate::write::AlignedBytes::new(&bytes)
    } else {
        let options = if aot {
            crate::compile::CompileOptions::ahead_of_time()
        } else {
            crate::compile::CompileOptions::default()
        };
        crate::compile::compile_tflite_opts(&bytes, options)?.aligned()
    };
    let m = mote_runtime::Model::from_bytes(mote.as_slice())?;
    if aot {
        // Refuse what ahead-of-time code does not cover before building anything.
        mote_runtime::aot::rust_source(&m).map_err(|e| aot_error(&m, e))?;
    }
    let case_bytes: usize = (0..m.input_count())
        .map(|i| m.input(i).map_or(0, |d| d.bytes as usize))
        .sum();
    let inputs = match input {
        Some(p) => std::fs::read(p).map_err(|e| io(p, e))?,
        None => vec![0; case_bytes],
    };
    if case_bytes == 0 || inputs.is_empty() || inputs.len() % case_bytes != 0 {
        return Err(CompileError::Usage(format!(
            "--input holds {} bytes: not a whole number of cases of {case_bytes} bytes (every \
             model input, raw, back to back)",
            inputs.len()
        )));
    }
    let opts = BoardOptions {
        aot,
        ..BoardOptions::default()
    };
    std::fs::create_dir_all(&opts.target_dir).map_err(|e| io(&opts.target_dir, e))?;
    let stem = model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let mote_path = opts
        .target_dir
        .join(format!("{stem}-{}.mote", std::process::id()));
    std::fs::write(&mote_path, mote.as_slice()).map_err(|e| io(&mote_path, e))?;
    let run = run_on_board(b, &mote_path, &inputs, &opts);
    let _ = std::fs::remove_file(&mote_path);
    let run = run.map_err(|e| CompileError::Usage(e.to_string()))?;
    if let Some(p) = output {
        let all: Vec<u8> = run.outputs.concat();
        std::fs::write(p, all).map_err(|e| io(p, e))?;
    }
    let hex = |o: &[u8]| o.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if json {
        let v = serde_json::json!({
            "model": model.display().to_string(),
            "board": b.name,
            "core": b.core,
            "kernels": b.kernels,
            "aot": aot,
            "cases": run.outputs.len(),
            "instructions": run.instructions.first().copied().unwrap_or(0),
            "instructions_per_case": run.instructions,
            "flash_bytes": run.flash_bytes,
            "model_bytes": run.model_bytes,
            "text_bytes": run.text_bytes,
            "ram_bytes": run.ram_bytes,
            "arena_bytes": run.arena_bytes,
            "stack_bytes": run.stack.invoke,
            "load_stack_bytes": run.stack.load,
            "features": run.features,
            "outputs_hex": run.outputs.iter().map(|o| hex(o)).collect::<Vec<_>>(),
            "layers": run.layers.iter().enumerate().map(|(i, (k, n))| serde_json::json!({
                "index": i, "kind": k, "instructions": n,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{} on {} ({}, {} kernels{}, qemu -icount: instructions, deterministic)",
        model.display(),
        b.name,
        b.core,
        b.kernels,
        if aot { ", compiled ahead of time" } else { "" }
    );
    for (i, (n, o)) in run.instructions.iter().zip(&run.outputs).enumerate() {
        println!("case {i}: {n} instructions, output {}", hex(o));
    }
    println!(
        "flash {} bytes (model {}, .text {}), RAM {} bytes (arena {}) + stack {} bytes in \
         invoke ({} to load the model; measured by painting)",
        run.flash_bytes,
        run.model_bytes,
        run.text_bytes,
        run.ram_bytes,
        run.arena_bytes,
        run.stack.invoke,
        run.stack.load
    );
    println!("features: {}", run.features.join(","));
    if !run.layers.is_empty() {
        let total: u64 = run.layers.iter().map(|l| l.1).sum::<u64>().max(1);
        println!("\n  op  kind                   instructions  share");
        for (i, (k, n)) in run.layers.iter().enumerate() {
            let share = *n as f64 * 100.0 / total as f64;
            println!("{i:>4}  {k:<20} {n:>14}  {share:>5.1}%");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report() {
        let log = "mote-firmware arena=16000 input=490 output=12 cases=2\n\
                   case 0 ticks=100 out=ff80\n\
                   case 1 ticks=150 out=0001\n\
                   op 0 CONV_2D ticks=25\n\
                   stack load=504 invoke=6088\n\
                   calib ticks=50 instructions=2000\n\
                   done\n";
        let r = parse_report(log).unwrap();
        assert_eq!(
            r.stack,
            StackUse {
                invoke: 6088,
                load: 504
            }
        );
        // A report without the stack line is incomplete.
        assert!(parse_report(&log.replace("stack load=504 invoke=6088\n", "")).is_none());
        assert_eq!(r.arena, 16000);
        assert_eq!(r.outputs, vec![vec![0xff, 0x80], vec![0x00, 0x01]]);
        assert_eq!(r.instructions, vec![4000, 6000]);
        assert_eq!(r.layers, vec![("CONV_2D".to_string(), 1000)]);
        assert!(parse_report("case 0 ticks=1 out=zz\ncalib ticks=1 instructions=1\n").is_none());
        assert!(parse_report("garbage").is_none());
    }

    #[test]
    fn boards_are_named_uniquely() {
        for b in &BOARDS {
            assert_eq!(board(b.name), Some(b));
        }
        assert!(board("nope").is_none());
    }

    #[test]
    fn refuses_non_elf() {
        assert!(parse_elf_sizes(b"not an elf at all, clearly").is_none());
    }
}
