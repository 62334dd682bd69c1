//! *Estimated* cost of a model on a target: each operator's cost counts (written by the compiler
//! into the `.mote` file, [`Model::costs`]) over a target profile's cycle model and operating
//! point ([`mote_targets::TargetProfile`]). Results are labelled
//! [`EnergyEstimate::LABEL`] ("estimated"); measured energy comes from a
//! [`mote_targets::EnergyMeter`].
//!
//! ```
//! use mote_runtime::energy::kernel_kind;
//! use mote_runtime::targets::{by_id, KernelKind};
//! use mote_runtime::OpKind;
//!
//! assert_eq!(kernel_kind(OpKind::DepthwiseConv2d), KernelKind::Depthwise);
//! let l4r5 = by_id("stm32l4r5").unwrap();
//! # let _ = l4r5;
//! // let total = mote_runtime::energy::estimate_model(&model, l4r5);
//! ```

use mote_targets::{EnergyEstimate, KernelKind, OpCounts, TargetProfile};

use crate::model::Model;
use crate::ops::OpKind;

/// The cycle-model family of an operator kind: convolution, depthwise and fully connected have
/// their own cycles per MAC (the N:M sparse kinds are charged as their dense kind, per stored
/// weight: the profiles have no sparse-kernel figures yet); everything else is charged per
/// element.
pub fn kernel_kind(kind: OpKind) -> KernelKind {
    match kind {
        OpKind::Conv2d | OpKind::SparseConv2d => KernelKind::Conv,
        OpKind::DepthwiseConv2d => KernelKind::Depthwise,
        OpKind::FullyConnected | OpKind::SparseFullyConnected => KernelKind::FullyConnected,
        _ => KernelKind::Elementwise,
    }
}

/// Operator `index`'s cost counts in the form the cycle model takes (`None` if there is no such
/// operator).
pub fn op_counts(model: &Model, index: usize) -> Option<OpCounts> {
    let cost = model.costs().get(index)?;
    let kind = model.op_kind(index)?;
    Some(OpCounts {
        macs: cost.macs,
        kind: kernel_kind(kind),
        const_bytes_read: cost.const_bytes_read as u64,
        arena_bytes_read: cost.arena_bytes_read as u64,
        arena_bytes_written: cost.arena_bytes_written as u64,
    })
}

/// Estimated cycles, latency and energy of operator `index` on `target`.
pub fn estimate_op(model: &Model, index: usize, target: &TargetProfile) -> Option<EnergyEstimate> {
    op_counts(model, index).map(|c| target.estimate_op(&c))
}

/// Estimated cycles, latency and energy of one inference on `target`: the sum over operators.
pub fn estimate_model(model: &Model, target: &TargetProfile) -> EnergyEstimate {
    (0..model.ops().len())
        .filter_map(|i| estimate_op(model, i, target))
        .fold(EnergyEstimate::ZERO, EnergyEstimate::plus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_kinds() {
        assert_eq!(kernel_kind(OpKind::Conv2d), KernelKind::Conv);
        assert_eq!(kernel_kind(OpKind::DepthwiseConv2d), KernelKind::Depthwise);
        assert_eq!(
            kernel_kind(OpKind::FullyConnected),
            KernelKind::FullyConnected
        );
        assert_eq!(kernel_kind(OpKind::SparseConv2d), KernelKind::Conv);
        for k in OpKind::ALL {
            if !matches!(
                k,
                OpKind::Conv2d
                    | OpKind::DepthwiseConv2d
                    | OpKind::FullyConnected
                    | OpKind::SparseConv2d
                    | OpKind::SparseFullyConnected
            ) {
                assert_eq!(kernel_kind(k), KernelKind::Elementwise, "{k:?}");
            }
        }
    }
}
