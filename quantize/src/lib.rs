//! # mote-quantize
//!
//! The mote compiler: imports models into one IR ([`ir::Graph`]), lowers them to runtime
//! operators ([`lower`]), plans the arena ([`plan`]) and writes the `.mote` file ([`write`]).
#![warn(missing_docs)]

pub mod error;
pub mod ir;
pub mod lower;

pub use error::CompileError;
