//! Fidelity of a quantized model against its float reference: per-layer SQNR, output SQNR and
//! top-1 agreement.
//!
//! The quantized model is run on the mote runtime itself, one operator at a time
//! ([`Int8Runner::run_layers`]), so the numbers describe exactly what runs on the device.
//! SQNR is accumulated over all samples: `10·log10(Σ ref² / Σ (ref − q)²)` in dB.

use serde::Serialize;

use crate::compile::Compiled;
use crate::error::CompileError;
use crate::ir::{DataType, Graph};
use crate::write::AlignedBytes;
use mote_runtime::{Interpreter, Model};

/// Running signal and noise energy of one tensor.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sqnr {
    /// Σ ref².
    pub signal: f64,
    /// Σ (ref − q)².
    pub noise: f64,
}

impl Sqnr {
    /// Adds one sample.
    pub fn add(&mut self, reference: &[f32], q: &[f32]) {
        for (&r, &x) in reference.iter().zip(q) {
            self.signal += f64::from(r) * f64::from(r);
            let d = f64::from(r) - f64::from(x);
            self.noise += d * d;
        }
    }
    /// The SQNR in dB (infinite when there is no noise).
    pub fn db(&self) -> f64 {
        if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        }
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Quantizes float values with `(scale, zero_point)` to int8 as TFLite's QUANTIZE does.
pub fn quantize_i8(v: &[f32], scale: f32, zp: i64) -> Vec<u8> {
    v.iter()
        .map(|&x| (((x / scale).round() + zp as f32).clamp(-128.0, 127.0) as i8) as u8)
        .collect()
}

/// Dequantizes int8 (or int16 / int32 / float32) bytes.
pub fn dequantize(bytes: &[u8], dtype: DataType, scale: f32, zp: i64) -> Vec<f32> {
    match dtype {
        DataType::Int8 => bytes
            .iter()
            .map(|&b| (i64::from(b as i8) - zp) as f32 * scale)
            .collect(),
        DataType::UInt8 => bytes
            .iter()
            .map(|&b| (i64::from(b) - zp) as f32 * scale)
            .collect(),
        DataType::Int16 => bytes
            .chunks_exact(2)
            .map(|b| (i64::from(i16::from_le_bytes([b[0], b[1]])) - zp) as f32 * scale)
            .collect(),
        DataType::Int32 => bytes
            .chunks_exact(4)
            .map(|b| (i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])) - zp) as f32 * scale)
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

/// Runs a compiled quantized graph on the mote runtime with float inputs and float outputs.
pub struct Int8Runner {
    aligned: AlignedBytes,
    arena: AlignedBytes,
    /// Per runtime op: the IR node it computes (matched by output tensor name) with that
    /// node's output dtype, scale and zero point.
    op_node: Vec<Option<(usize, DataType, f32, i64)>>,
    nodes: usize,
    in_quant: Vec<(DataType, f32, i64)>,
    final_quant: Vec<(DataType, f32, i64)>,
}

fn tq(g: &Graph, id: usize) -> (DataType, f32, i64) {
    let t = &g.tensors[id];
    let (s, z) = t.scale_zp().unwrap_or((1.0, 0));
    (t.dtype, s, z)
}

impl Int8Runner {
    /// A runner for `compiled`, the compilation of the quantized `graph`.
    pub fn new(graph: &Graph, compiled: &Compiled) -> Result<Self, CompileError> {
        let aligned = compiled.aligned();
        let model = Model::from_bytes(aligned.as_slice())?;
        let arena = AlignedBytes::zeroed(model.arena_bytes());
        // Output tensor name → IR node, for names that are unique and non-empty.
        let mut by_name: std::collections::HashMap<&str, Option<usize>> = Default::default();
        for (i, n) in graph.nodes.iter().enumerate() {
            let name = graph.tensors[n.outputs[0]].name.as_str();
            if !name.is_empty() {
                by_name
                    .entry(name)
                    .and_modify(|e| *e = None)
                    .or_insert(Some(i));
            }
        }
        let op_node = (0..model.ops().len())
            .map(|i| {
                let (_, outs) = model.op_io(i)?;
                let name = model.tensor_name(*outs.first()? as usize)?;
                let n = (*by_name.get(name)?)?;
                let (dt, s, z) = tq(graph, graph.nodes[n].outputs[0]);
                Some((n, dt, s, z))
            })
            .collect();
        Ok(Int8Runner {
            aligned,
            arena,
            op_node,
            nodes: graph.nodes.len(),
            in_quant: graph.inputs.iter().map(|&i| tq(graph, i)).collect(),
            final_quant: graph.outputs.iter().map(|&i| tq(graph, i)).collect(),
        })
    }

    /// Runs once; returns, per IR node, the dequantized output of the runtime op that computes
    /// it (`None` for nodes without one, e.g. when the compiler fused or renamed it; all `None`
    /// unless `want_layers`), and the dequantized graph outputs.
    #[allow(clippy::type_complexity)]
    pub fn run_layers(
        &mut self,
        inputs: &[Vec<f32>],
        want_layers: bool,
    ) -> Result<(Vec<Option<Vec<f32>>>, Vec<Vec<f32>>), CompileError> {
        let model = Model::from_bytes(self.aligned.as_slice())?;
        {
            let mut it = Interpreter::new(&model, self.arena.as_mut_slice())?;
            for (k, v) in inputs.iter().enumerate() {
                let (dt, s, z) =
                    self.in_quant
                        .get(k)
                        .copied()
                        .unwrap_or((DataType::Float32, 1.0, 0));
                let bytes = match dt {
                    DataType::Int8 => quantize_i8(v, s, z),
                    DataType::Float32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    other => {
                        return Err(CompileError::Malformed {
                            format: "input",
                            what: format!("input {k} of type {other} cannot be fed floats"),
                        })
                    }
                };
                it.set_input_bytes(k, &bytes)?;
            }
        }
        let mut layers = vec![None; self.nodes];
        for i in 0..model.ops().len() {
            {
                let mut it = Interpreter::new(&model, self.arena.as_mut_slice())?;
                it.invoke_op(i)?;
            }
            if !want_layers {
                continue;
            }
            let Some((n, dt, s, z)) = self.op_node.get(i).copied().flatten() else {
                continue;
            };
            let (_, outs) = model.op_io(i).unwrap_or((&[], &[]));
            let Some(&t) = outs.first() else { continue };
            let d = &model.tensors()[t as usize];
            let start = d.offset as usize;
            if let Some(bytes) = self.arena.as_slice().get(start..start + d.bytes as usize) {
                layers[n] = Some(dequantize(bytes, dt, s, z));
            }
        }
        let it = Interpreter::new(&model, self.arena.as_mut_slice())?;
        let mut outs = Vec::new();
        for k in 0..model.output_count() {
            let (dt, s, z) =
                self.final_quant
                    .get(k)
                    .copied()
                    .unwrap_or((DataType::Float32, 1.0, 0));
            outs.push(dequantize(it.output_bytes(k)?, dt, s, z));
        }
        Ok((layers, outs))
    }
}

/// One row of the per-layer table.
#[derive(Debug, Clone, Serialize)]
pub struct LayerFidelity {
    /// Node index.
    pub index: usize,
    /// Operator name.
    pub op: String,
    /// Output tensor name.
    pub tensor: String,
    /// SQNR of the op's output against the float reference, dB.
    pub sqnr_db: f64,
}

/// The fidelity report of a quantized model.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// Held-out samples evaluated.
    pub samples: usize,
    /// Per-layer SQNR (empty when not available).
    pub layers: Vec<LayerFidelity>,
    /// SQNR of output 0, dB.
    pub output_sqnr_db: f64,
    /// Fraction of samples whose output-0 argmax equals the float model's.
    pub top1_agreement: f64,
}

/// Accumulates a [`Report`].
#[derive(Debug, Clone, Default)]
pub struct ReportBuilder {
    layers: Vec<(usize, String, String, Sqnr, bool)>,
    output: Sqnr,
    agree: usize,
    samples: usize,
}

impl ReportBuilder {
    /// Adds one sample: `float_layers[i]` is the float value of node i's output, `q_layers`
    /// the quantized model's (may be empty), and the two outputs.
    pub fn add(
        &mut self,
        graph: &Graph,
        float_layers: &[&[f32]],
        q_layers: &[Option<Vec<f32>>],
        float_out: &[f32],
        q_out: &[f32],
    ) {
        if self.layers.is_empty() && q_layers.iter().any(Option::is_some) {
            self.layers = graph
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    (
                        i,
                        n.op.name().to_string(),
                        graph.tensors[n.outputs[0]].name.clone(),
                        Sqnr::default(),
                        false,
                    )
                })
                .collect();
        }
        for ((_, _, _, s, seen), (f, q)) in self
            .layers
            .iter_mut()
            .zip(float_layers.iter().zip(q_layers))
        {
            if let Some(q) = q {
                s.add(f, q);
                *seen = true;
            }
        }
        self.output.add(float_out, q_out);
        if argmax(float_out) == argmax(q_out) {
            self.agree += 1;
        }
        self.samples += 1;
    }

    /// The report.
    pub fn finish(&self) -> Report {
        Report {
            samples: self.samples,
            layers: self
                .layers
                .iter()
                .filter(|l| l.4)
                .map(|(index, op, tensor, s, _)| LayerFidelity {
                    index: *index,
                    op: op.clone(),
                    tensor: tensor.clone(),
                    sqnr_db: s.db(),
                })
                .collect(),
            output_sqnr_db: self.output.db(),
            top1_agreement: if self.samples == 0 {
                0.0
            } else {
                self.agree as f64 / self.samples as f64
            },
        }
    }
}

/// Renders a report as text.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    if !r.layers.is_empty() {
        s.push_str("  #  op                  SQNR dB  tensor\n");
        for l in &r.layers {
            s.push_str(&format!(
                "{:>3}  {:<18} {:>8.2}  {}\n",
                l.index, l.op, l.sqnr_db, l.tensor
            ));
        }
    }
    s.push_str(&format!(
        "output SQNR {:.2} dB, top-1 agreement {:.2} % ({} held-out samples)\n",
        r.output_sqnr_db,
        100.0 * r.top1_agreement,
        r.samples
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqnr_and_argmax() {
        let mut s = Sqnr::default();
        s.add(&[1.0, -1.0], &[1.0, -1.0]);
        assert!(s.db().is_infinite());
        s.add(&[1.0], &[0.9]);
        assert!((s.db() - 10.0 * (3.0f64 / 0.01).log10()).abs() < 1e-3);
        assert_eq!(argmax(&[0.1, 0.5, 0.5]), 1);
    }

    #[test]
    fn quantize_round_trip() {
        let q = quantize_i8(&[0.0, 1.0, -1.0, 100.0], 0.5, 3);
        assert_eq!(
            q.iter().map(|&b| b as i8).collect::<Vec<_>>(),
            vec![3, 5, 1, 127]
        );
        let d = dequantize(&q, DataType::Int8, 0.5, 3);
        assert_eq!(d, vec![0.0, 1.0, -1.0, 62.0]);
    }
}
