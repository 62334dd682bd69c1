//! Not implemented yet: every op of this family is refused at validation.

use super::{OpCtx, OpMem};
use crate::error::Error;

/// Checks the op; this family is not implemented yet, so it is refused.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    Err(Error::UnsupportedOp {
        op: ctx.index,
        kind: ctx.desc.kind,
    })
}

/// Runs the op (unreachable: validation refuses it).
pub(crate) fn eval(ctx: &OpCtx, _mem: OpMem) -> Result<(), Error> {
    validate(ctx)
}
