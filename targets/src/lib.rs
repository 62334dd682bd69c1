//! # mote-targets
//!
//! Device profiles (core, clock, memories, energy coefficients) and board support for mote.
//! The profiles arrive with the latency/energy work; this crate is `no_std` so that the runtime
//! may depend on its core.
#![no_std]
#![warn(missing_docs)]

/// A short identifier of a target, as used on the command line (`stm32l4r5`, `x86-64`, ...).
pub type TargetId = &'static str;
