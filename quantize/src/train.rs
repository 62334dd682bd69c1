//! The path from burn: a small CNN defined and trained in burn, exported to the IR.
//!
//! [`DigitsNet`] classifies 8 × 8 digits (scikit-learn's digits, `quantize/assets/`):
//! conv 3×3 8 ch (same, ReLU) → conv 3×3 16 ch (same, ReLU) → max-pool 2×2 → conv 3×3 16 ch
//! (valid, ReLU) → global mean → dense 10 → softmax. [`train_digits`] trains it on an
//! autodiff device with Adam; [`DigitsNet::to_graph`] exports the trained weights to a float
//! [`Graph`] (NHWC, TFLite-style operators), which [`crate::pipeline`] quantizes like any
//! imported float model.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{activation, Device, Tensor, TensorData};

use crate::ir::{
    Activation, Conv2dOptions, DataType, Graph, Node, Operator, Padding, Pool2dOptions,
    Tensor as IrTensor,
};

/// The digits CNN.
#[derive(Module, Debug)]
pub struct DigitsNet {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    fc: Linear,
}

impl DigitsNet {
    /// A freshly initialised network on `device`.
    pub fn new(device: &Device) -> Self {
        DigitsNet {
            conv1: Conv2dConfig::new([1, 8], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            conv2: Conv2dConfig::new([8, 16], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            conv3: Conv2dConfig::new([16, 16], [3, 3]).init(device),
            fc: LinearConfig::new(16, 10).init(device),
        }
    }

    /// Logits `[batch, 10]` of images `[batch, 1, 8, 8]` (NCHW).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let h = activation::relu(self.conv1.forward(x));
        let h = activation::relu(self.conv2.forward(h));
        let h = max_pool2d(
            h,
            MaxPoolOptions {
                kernel_size: [2, 2],
                stride: [2, 2],
                padding: [(0, 0), (0, 0)],
                dilation: [1, 1],
                ceil_mode: false,
            },
        );
        let h = activation::relu(self.conv3.forward(h));
        let [b, c, _, _] = h.dims();
        let h = h.mean_dims(&[2, 3]).reshape([b, c]);
        self.fc.forward(h)
    }

    /// Exports the network to a float IR graph with input `[1, 8, 8, 1]` and softmax output
    /// `[1, 10]`.
    pub fn to_graph(&self) -> Graph {
        let mut g = Graph::default();
        let add = |g: &mut Graph, name: &str, shape: Vec<usize>, data: Option<Vec<f32>>| {
            g.tensors.push(IrTensor {
                name: name.into(),
                shape,
                dtype: if name == "axes" {
                    DataType::Int32
                } else {
                    DataType::Float32
                },
                quant: None,
                data: data.map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            });
            g.tensors.len() - 1
        };
        let conv = |c: &Conv2d| -> (Vec<usize>, Vec<f32>, Vec<f32>) {
            let w = c.weight.val();
            let [o, i, kh, kw] = w.dims();
            // OIHW → OHWI
            let v = w
                .permute([0, 2, 3, 1])
                .into_data()
                .try_into_vec::<f32>()
                .unwrap_or_default();
            let b = c
                .bias
                .as_ref()
                .map(|b| {
                    b.val()
                        .into_data()
                        .try_into_vec::<f32>()
                        .unwrap_or_default()
                })
                .unwrap_or_else(|| vec![0.0; o]);
            (vec![o, kh, kw, i], v, b)
        };
        let opts = |padding| Conv2dOptions {
            padding,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            activation: Activation::Relu,
            depth_multiplier: 1,
        };
        let x = add(&mut g, "image", vec![1, 8, 8, 1], None);
        g.inputs.push(x);
        let mut cur = x;
        let layers = [
            (&self.conv1, Padding::Same, vec![1, 8, 8, 8]),
            (&self.conv2, Padding::Same, vec![1, 8, 8, 16]),
        ];
        for (k, (c, pad, out)) in layers.into_iter().enumerate() {
            let (ws, w, b) = conv(c);
            let wi = add(&mut g, &format!("conv{}/w", k + 1), ws.clone(), Some(w));
            let bi = add(&mut g, &format!("conv{}/b", k + 1), vec![ws[0]], Some(b));
            let o = add(&mut g, &format!("conv{}", k + 1), out, None);
            g.nodes.push(Node {
                op: Operator::Conv2d(opts(pad)),
                inputs: vec![Some(cur), Some(wi), Some(bi)],
                outputs: vec![o],
            });
            cur = o;
        }
        let p = add(&mut g, "pool", vec![1, 4, 4, 16], None);
        g.nodes.push(Node {
            op: Operator::MaxPool2d(Pool2dOptions {
                padding: Padding::Valid,
                stride_h: 2,
                stride_w: 2,
                filter_h: 2,
                filter_w: 2,
                activation: Activation::None,
            }),
            inputs: vec![Some(cur)],
            outputs: vec![p],
        });
        let (ws, w, b) = conv(&self.conv3);
        let wi = add(&mut g, "conv3/w", ws.clone(), Some(w));
        let bi = add(&mut g, "conv3/b", vec![ws[0]], Some(b));
        let c3 = add(&mut g, "conv3", vec![1, 2, 2, 16], None);
        g.nodes.push(Node {
            op: Operator::Conv2d(opts(Padding::Valid)),
            inputs: vec![Some(p), Some(wi), Some(bi)],
            outputs: vec![c3],
        });
        let axes = g.tensors.len();
        g.tensors.push(IrTensor {
            name: "axes".into(),
            shape: vec![2],
            dtype: DataType::Int32,
            quant: None,
            data: Some([1i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        let m = add(&mut g, "mean", vec![1, 16], None);
        g.nodes.push(Node {
            op: Operator::Mean { keep_dims: false },
            inputs: vec![Some(c3), Some(axes)],
            outputs: vec![m],
        });
        // Linear weight is [in, out]; FULLY_CONNECTED wants [out, in].
        let lw = self
            .fc
            .weight
            .val()
            .transpose()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let lb = self
            .fc
            .bias
            .as_ref()
            .map(|b| {
                b.val()
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap_or_default()
            })
            .unwrap_or_else(|| vec![0.0; 10]);
        let wi = add(&mut g, "fc/w", vec![10, 16], Some(lw));
        let bi = add(&mut g, "fc/b", vec![10], Some(lb));
        let logits = add(&mut g, "logits", vec![1, 10], None);
        g.nodes.push(Node {
            op: Operator::FullyConnected {
                activation: Activation::None,
                keep_num_dims: false,
            },
            inputs: vec![Some(m), Some(wi), Some(bi)],
            outputs: vec![logits],
        });
        let probs = add(&mut g, "probs", vec![1, 10], None);
        g.nodes.push(Node {
            op: Operator::Softmax { beta: 1.0 },
            inputs: vec![Some(logits)],
            outputs: vec![probs],
        });
        g.outputs.push(probs);
        g
    }
}

/// Images shifted by (dy, dx) pixels, zero filled (8 × 8 each).
fn shift(images: &[f32], dy: isize, dx: isize) -> Vec<f32> {
    let mut out = vec![0f32; images.len()];
    for (src, dst) in images.chunks_exact(64).zip(out.chunks_exact_mut(64)) {
        for y in 0..8isize {
            for x in 0..8isize {
                let (sy, sx) = (y - dy, x - dx);
                if (0..8).contains(&sy) && (0..8).contains(&sx) {
                    dst[(y * 8 + x) as usize] = src[(sy * 8 + sx) as usize];
                }
            }
        }
    }
    out
}

/// Trains [`DigitsNet`] on `images` (N × 64 floats in [0, 1]) and `labels` (0..9), augmented
/// with the four one-pixel shifts, for `epochs` epochs of Adam (batch 32, learning rate 3e-3
/// with cosine decay) on `device` (an autodiff device). Deterministic in `seed` for a given
/// backend.
pub fn train_digits(
    images: &[f32],
    labels: &[u8],
    epochs: usize,
    seed: u64,
    device: &Device,
) -> DigitsNet {
    device.seed(seed);
    let mut x = images.to_vec();
    let mut y = labels.to_vec();
    for (dy, dx) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
        x.extend(shift(images, dy, dx));
        y.extend_from_slice(labels);
    }
    let n = y.len();
    let mut model = DigitsNet::new(device);
    let mut optim = AdamConfig::new().init();
    let batch = 32;
    let steps_per_epoch = n.div_ceil(batch);
    let total = (steps_per_epoch * epochs).max(1);
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut step = 0;
    for _ in 0..epochs {
        // Fisher–Yates with a xorshift generator.
        for i in (1..n).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
        for chunk in order.chunks(batch) {
            let b = chunk.len();
            let mut xb = Vec::with_capacity(b * 64);
            let mut tb = vec![0f32; b * 10];
            for (j, &i) in chunk.iter().enumerate() {
                xb.extend_from_slice(&x[i * 64..(i + 1) * 64]);
                tb[j * 10 + usize::from(y[i])] = 1.0;
            }
            let xt = Tensor::<4>::from_data(TensorData::new(xb, [b, 1, 8, 8]), device);
            let tt = Tensor::<2>::from_data(TensorData::new(tb, [b, 10]), device);
            let logits = model.forward(xt);
            let loss = burn::tensor::loss::cross_entropy_with_logits(logits, tt);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = 3e-3 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            model = optim.step(lr, model, grads);
            step += 1;
        }
    }
    model
}

/// Accuracy of a float or quantized classifier given its predicted classes.
pub fn accuracy(pred: &[usize], labels: &[u8]) -> f64 {
    let ok = pred
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p == usize::from(**l))
        .count();
    ok as f64 / labels.len().max(1) as f64
}
