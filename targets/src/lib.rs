//! # mote-targets
//!
//! Device profiles as data — core, clock, memories, ISA features, the default operating point
//! (supply voltage, regulator, active current or power) and a per-operator cycle model — each
//! with the documents its numbers come from, plus latency and energy *estimates* built on them.
//!
//! ```
//! use mote_targets::{by_id, KernelKind, OpCounts};
//!
//! let l4r5 = by_id("stm32l4r5").unwrap();
//! // 43.4 ms of inference at the profile's operating point, in µJ (an estimate).
//! let e = l4r5.estimate_for_latency_us(43_400.0);
//! assert!(e.energy_uj > 1000.0 && e.energy_uj < 2000.0);
//! // One depthwise convolution from its cost counts.
//! let op = OpCounts {
//!     macs: 50_000,
//!     kind: KernelKind::Depthwise,
//!     const_bytes_read: 600,
//!     arena_bytes_read: 25_000,
//!     arena_bytes_written: 25_000,
//! };
//! assert!(l4r5.estimate_op(&op).cycles > 50_000);
//! ```
//!
//! *Measured* energy comes from an [`EnergyMeter`] ([`meter`]): Linux RAPL (feature `std`) and
//! INA219 / INA226 power monitors over `embedded-hal` 1.0 I2C (feature `ina`, on by default).
//!
//! The crate is `no_std` and allocation-free so that the runtime may depend on it (the runtime
//! turns default features off: it needs the profiles, not the meters).
#![no_std]
#![warn(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod energy;
pub mod meter;
mod profile;
pub mod profiles;

pub use energy::{EnergyEstimate, KernelKind, OpCounts};
pub use meter::{EnergyMeter, MeasuredEnergy};
pub use profile::{
    ActivePower, Core, CycleModel, Features, OperatingPoint, Regulator, TargetProfile,
};
pub use profiles::{by_id, ALL};

/// A short identifier of a target, as used on the command line (`stm32l4r5`, `x86-64`, ...).
pub type TargetId = &'static str;
