//! Not implemented yet: every op of this family is refused.

use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::Node;

/// Lowers a node of this family (not implemented yet: refused by name and index).
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    Err(ctx.unsupported(node, "not implemented yet"))
}
