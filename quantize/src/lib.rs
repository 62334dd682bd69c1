//! # mote-quantize
//!
//! The mote compiler: imports models into one IR ([`ir::Graph`]), lowers them to runtime
//! operators ([`lower`]), plans the arena ([`plan`]) and writes the `.mote` file ([`write`]).
#![warn(missing_docs)]

pub mod compile;
pub mod demo;
pub mod describe;
pub mod error;
pub mod inspect;
pub mod ir;
pub mod lower;
pub mod npy;
pub mod plan;
pub mod tflite;
pub mod write;

pub use error::CompileError;
