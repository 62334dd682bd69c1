//! Human-readable parameters of each op kind, for `mote inspect`.

use std::fmt::Debug;
use std::mem::size_of;

use bytemuck::Pod;
use mote_runtime::ops::{
    activation::{Relu6Params, ReluParams, SigmoidParams},
    arith::ArithParams,
    concat::ConcatParams,
    conv::ConvParams,
    depthwise::DepthwiseParams,
    fully_connected::FullyConnectedParams,
    pad::PadParams,
    pool::PoolParams,
    quantize::QuantizeParams,
    reduce::MeanParams,
    softmax::SoftmaxParams,
};
use mote_runtime::OpKind;

/// Fields that locate data rather than describe the op; left out of the summary.
fn is_plumbing(field: &str) -> bool {
    field.ends_with("_offset") && field != "input_offset" && field != "output_offset"
        || field.starts_with("reserved")
        || field.starts_with("_")
}

/// `name=value` pairs of a parameter struct's `Debug` form.
fn pairs<T: Pod + Debug>(bytes: &[u8]) -> String {
    let Ok(p) = bytemuck::try_from_bytes::<T>(bytes) else {
        return format!("{} param bytes", bytes.len());
    };
    let text = format!("{p:?}");
    let Some(body) = text
        .split_once('{')
        .and_then(|(_, rest)| rest.rsplit_once('}'))
        .map(|(body, _)| body)
    else {
        return text;
    };
    // Split on top-level commas only (arrays contain commas too).
    let mut fields = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in body.char_indices() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            ',' if depth == 0 => {
                fields.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(&body[start..]);
    fields
        .iter()
        .filter_map(|f| f.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| !is_plumbing(k))
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `name=value` text of the float32 kernels' parameters (`ops::float`, `ops::float_pointwise`),
/// recognized by their length (which differs from the integer structs' of the same kind).
fn float_params(kind: OpKind, bytes: &[u8]) -> Option<String> {
    use mote_runtime::ops::float::{FloatConvParams, FloatFcParams};
    use mote_runtime::ops::float_pointwise::{FloatArithParams, FloatSoftmaxParams};
    let is = |n: usize| bytes.len() == n;
    Some(match kind {
        OpKind::Conv2d | OpKind::DepthwiseConv2d if is(size_of::<FloatConvParams>()) => {
            pairs::<FloatConvParams>(bytes)
        }
        OpKind::FullyConnected if is(size_of::<FloatFcParams>()) => pairs::<FloatFcParams>(bytes),
        OpKind::Add | OpKind::Sub | OpKind::Mul if is(size_of::<FloatArithParams>()) => {
            pairs::<FloatArithParams>(bytes)
        }
        OpKind::Softmax if is(size_of::<FloatSoftmaxParams>()) => {
            pairs::<FloatSoftmaxParams>(bytes)
        }
        OpKind::Logistic | OpKind::Tanh | OpKind::Relu | OpKind::Relu6 if bytes.is_empty() => {
            String::new()
        }
        _ => return None,
    })
}

/// `name=value` text for the parameter bytes of an op of `kind`.
pub fn params(kind: OpKind, bytes: &[u8]) -> String {
    if let Some(text) = float_params(kind, bytes) {
        return text;
    }
    match kind {
        OpKind::Conv2d => pairs::<ConvParams>(bytes),
        OpKind::DepthwiseConv2d => pairs::<DepthwiseParams>(bytes),
        OpKind::FullyConnected => pairs::<FullyConnectedParams>(bytes),
        OpKind::AveragePool2d | OpKind::MaxPool2d => pairs::<PoolParams>(bytes),
        OpKind::Add | OpKind::Sub | OpKind::Mul => pairs::<ArithParams>(bytes),
        OpKind::Reshape | OpKind::Squeeze => String::new(),
        OpKind::Softmax => pairs::<SoftmaxParams>(bytes),
        OpKind::Logistic | OpKind::Tanh => pairs::<SigmoidParams>(bytes),
        OpKind::Relu => pairs::<ReluParams>(bytes),
        OpKind::Relu6 => pairs::<Relu6Params>(bytes),
        OpKind::Quantize | OpKind::Dequantize => pairs::<QuantizeParams>(bytes),
        OpKind::Concatenation => pairs::<ConcatParams>(bytes),
        OpKind::Pad => pairs::<PadParams>(bytes),
        OpKind::Mean => pairs::<MeanParams>(bytes),
        OpKind::SparseConv2d | OpKind::SparseFullyConnected => {
            pairs::<mote_runtime::ops::sparse::SparseParams>(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_params_read_as_pairs() {
        let p = ConvParams {
            stride_h: 2,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_h: 0,
            pad_w: 1,
            input_offset: 128,
            output_offset: -3,
            act_min: -128,
            act_max: 127,
            multipliers_offset: 0,
            shifts_offset: 64,
            channel_count: 8,
            layout: 0,
            packed_offset: 0,
            folded_bias_offset: 0,
        };
        let s = params(OpKind::Conv2d, bytemuck::bytes_of(&p));
        assert!(s.starts_with("stride_h=2 stride_w=1"), "{s}");
        assert!(s.contains("input_offset=128"), "{s}");
        assert!(
            !s.contains("multipliers_offset") && !s.contains("reserved"),
            "{s}"
        );
        assert_eq!(params(OpKind::Conv2d, &[1, 2, 3]), "3 param bytes");
    }
}
