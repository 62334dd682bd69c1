//! Shape changes without data changes: RESHAPE and SQUEEZE.
//!
//! The new shape is the output tensor's shape; the kernel copies bytes (any dtype), or does
//! nothing when the planner placed the output on the input's bytes (these kinds compute in place,
//! see [`super::OpKind::allows_in_place`]). The ops carry no parameters (`params_len` is 0).

use super::{OpCtx, OpMem};
use crate::error::Error;
use crate::format::Storage;

/// RESHAPE / SQUEEZE: copies `input` into `output` (both the same length; extra bytes of the
/// longer one are ignored).
pub fn reshape(input: &[u8], output: &mut [u8]) {
    let n = input.len().min(output.len());
    if let (Some(src), Some(dst)) = (input.get(..n), output.get_mut(..n)) {
        dst.copy_from_slice(src);
    }
}

/// Checks a RESHAPE / SQUEEZE op.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    if !ctx.params.is_empty() {
        return Err(ctx.param_error("params_len"));
    }
    if ctx.input_count() != 1 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let input = ctx.required_input(0)?;
    let output = ctx.output(0)?;
    let dtype = input
        .1
        .dtype()
        .ok_or(ctx.shape_error(input.0, "a known dtype"))?;
    ctx.expect_dtype(output, dtype)?;
    if input.1.bytes != output.1.bytes {
        return Err(ctx.shape_error(output.0, "as many elements as the input"));
    }
    Ok(())
}

/// Runs a RESHAPE / SQUEEZE op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let (_, input) = ctx.required_input(0)?;
    let (_, output) = ctx.output(0)?;
    let in_place = input.storage() == Some(Storage::Arena)
        && input.offset == output.offset
        && input.bytes == output.bytes;
    if in_place {
        // The data already is where the output lives.
        return Ok(());
    }
    reshape(mem.required_input(0)?, mem.output);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_bytes() {
        let mut out = [0u8; 4];
        reshape(&[1, 2, 3, 4], &mut out);
        assert_eq!(out, [1, 2, 3, 4]);
    }
}
