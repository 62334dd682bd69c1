//! NCHW (ONNX) ↔ NHWC (mote IR) layout helpers.
//!
//! Rule of the importer: every rank-4 activation is stored NHWC in the IR; activations of
//! other ranks keep their ONNX layout. Constants are permuted where an operator consumes them.

/// NCHW axis → NHWC axis.
pub const NCHW_TO_NHWC_AXIS: [usize; 4] = [0, 3, 1, 2];
/// Permutation taking an NCHW array to NHWC (`out dim k = in dim PERM[k]`); the same
/// permutation takes OIHW filters to OHWI.
pub const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

/// `[n, c, h, w]` → `[n, h, w, c]`.
pub fn nhwc_shape(nchw: &[usize]) -> Vec<usize> {
    TO_NHWC.iter().map(|&p| nchw[p]).collect()
}

/// `[n, h, w, c]` → `[n, c, h, w]`.
pub fn nchw_shape(nhwc: &[usize]) -> Vec<usize> {
    vec![nhwc[0], nhwc[3], nhwc[1], nhwc[2]]
}

/// Transposes a row-major array of `esize`-byte elements: output dimension `k` is input
/// dimension `perm[k]`. Returns the data and the new dimensions.
pub fn permute(data: &[u8], esize: usize, dims: &[usize], perm: &[usize]) -> (Vec<u8>, Vec<usize>) {
    let r = dims.len();
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    // Input strides (in elements).
    let mut stride = vec![1usize; r];
    for d in (0..r.saturating_sub(1)).rev() {
        stride[d] = stride[d + 1] * dims[d + 1];
    }
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n * esize);
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        let src: usize = (0..r).map(|k| idx[k] * stride[perm[k]]).sum();
        out.extend_from_slice(&data[src * esize..(src + 1) * esize]);
        for k in (0..r).rev() {
            idx[k] += 1;
            if idx[k] < out_dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    (out, out_dims)
}

/// The position of old axis `axis` after `perm`.
pub fn moved_axis(perm: &[usize], axis: usize) -> usize {
    perm.iter().position(|&p| p == axis).unwrap_or(axis)
}

/// Broadcast of two shapes (numpy rules), `None` if incompatible.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for k in 0..r {
        let x = if k + a.len() >= r {
            a[k + a.len() - r]
        } else {
            1
        };
        let y = if k + b.len() >= r {
            b[k + b.len() - r]
        } else {
            1
        };
        out[k] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_nchw_to_nhwc() {
        // [1, 2, 1, 3]: c0 = 0 1 2, c1 = 3 4 5.
        let data: Vec<u8> = (0..6).collect();
        let (out, dims) = permute(&data, 1, &[1, 2, 1, 3], &TO_NHWC);
        assert_eq!(dims, vec![1, 1, 3, 2]);
        assert_eq!(out, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast(&[1, 4, 4, 3], &[3]), Some(vec![1, 4, 4, 3]));
        assert_eq!(broadcast(&[2, 1], &[1, 5]), Some(vec![2, 5]));
        assert_eq!(broadcast(&[2], &[3]), None);
    }
}
