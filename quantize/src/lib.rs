//! # mote-quantize
//!
//! The mote compiler: imports models into one IR ([`ir::Graph`]), lowers them to runtime
//! operators ([`lower`]), plans the arena ([`plan`]) and writes the `.mote` file ([`mod@write`]).
#![warn(missing_docs)]

pub mod arena_report;
pub mod bench;
pub mod board;
pub mod calibrate;
pub mod compile;
pub mod demo;
pub mod describe;
pub mod emit;
pub mod error;
pub mod fidelity;
#[cfg(feature = "float")]
pub mod fit;
#[cfg(feature = "float")]
pub mod float;
pub mod frontend;
pub mod inspect;
pub mod ir;
pub mod lower;
pub mod npy;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "float")]
pub mod pipeline;
pub mod plan;
pub mod plan_svg;
pub mod ptq;
pub mod schedule;
pub mod tflite;
#[cfg(feature = "float")]
pub mod train;
pub mod write;

pub use error::CompileError;
