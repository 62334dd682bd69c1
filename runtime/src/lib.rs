//! # mote-runtime
//!
//! Runs `.mote` models — compiled by the `mote` tool from TFLite models — on microcontrollers and
//! edge boards, with these promises:
//!
//! - **No heap.** `#![no_std]`, no `alloc`. All activations and scratch live in one caller-owned
//!   arena whose exact size the compiler computed ([`Model::arena_bytes`]).
//! - **Zero-copy from flash.** Weights and parameters are read where they are stored.
//! - **Validated once.** [`Model::from_bytes`] checks every offset, shape and parameter, so a
//!   corrupted or hostile file gives an [`Error`], never a panic, and `invoke` runs no further checks.
//! - **Bit-exact int8.** Kernels follow the TFLite quantization spec, so results equal TensorFlow
//!   Lite Micro's reference kernels byte for byte.
//!
//! ```ignore
//! use mote_runtime::{Arena, Interpreter, Model};
//!
//! static mut ARENA: Arena<{ MODEL_ARENA_BYTES }> = Arena::new();
//! let model = Model::from_bytes(mote_runtime::include_model!("kws.mote"))?;
//! let mut interp = Interpreter::new(&model, unsafe { &mut ARENA.0 })?;
//! interp.input_mut::<i8>(0)?.copy_from_slice(&features);
//! interp.invoke()?;
//! let scores: &[i8] = interp.output(0)?;
//! ```
#![no_std]
#![warn(missing_docs)]
// Only modules that must (clock registers, SIMD intrinsics) allow `unsafe`, each block with a
// `// SAFETY:` comment.
#![deny(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub mod aot;
#[cfg(feature = "capi")]
pub mod capi;
pub mod crc32;
pub mod energy;
pub mod error;
pub mod fixed_point;
pub mod format;
pub mod interpreter;
pub mod model;
pub mod ops;
pub mod profile;
pub mod quant;
pub mod simd;

pub use error::{Error, Location};
pub use format::DType;
pub use interpreter::{AlignedModel, Arena, Element, Interpreter};
pub use model::Model;
/// Device profiles and their cost models (the `mote-targets` crate), for on-device estimates.
pub use mote_targets as targets;
pub use ops::OpKind;
pub use profile::{Clock, OpTiming, ProfileSink, ProfileSummary};
