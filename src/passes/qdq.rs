//! Q/DQ insertion: lowers a float graph to TensorRT's explicit quantization (strongly typed INT8), so
//! that precision lives in the ONNX graph and no calibrator is needed at build time.
//!
//! Entry point: [`run`]`(&mut model, &scales, &opts) -> QdqReport`; [`activations`] lists the values it
//! will need an amax for (so calibration can watch only those).
//!
//! Where pairs go (TensorRT's placement rules: quantize the inputs of the ops that run in INT8 and let the
//! builder fuse the pair into them):
//! - Conv, MatMul, Gemm: every input that computes. Activations get QuantizeLinear -> DequantizeLinear
//!   with one per-tensor scale (amax / 127 from the scale table, int8 zero point 0). Weights are stored
//!   as **int8 initializers read by a DequantizeLinear** (per-channel on the output-channel axis: 0 for
//!   Conv KCRS and a transposed Gemm B, the last axis for MatMul B and a plain Gemm B; range [-127, 127],
//!   scale = per-channel max / 127). We chose int8 + DQ over float + Q/DQ because that is what
//!   TensorRT's and ModelOpt's exports do: the builder folds DQ(int8 constant) straight into the
//!   kernel's weights, the file holds a quarter of the bytes, and the rounding is decided here, once,
//!   where it can be tested, not by the builder. Biases stay float (TensorRT quantizes them itself).
//! - Residual Add (two computed inputs): the input that is not the output of a Conv that the Add can be
//!   fused into (a Conv whose only reader is this Add) gets a pair, so Conv + Add (+ Relu) fuses with an
//!   INT8 residual; with no such Conv both inputs get one.
//! - Concat: every input gets a pair, and all inputs and the output share one scale (the max amax over
//!   them), so TensorRT can concatenate in INT8 without requantizing.
//! - Never a pair on a Conv's output before its ReLU or bias Add: only inputs of the ops above are
//!   quantized, an Add with a constant input (a bias) is left alone, and the Conv feeding a residual Add
//!   stays unquantized.
//! - Kept in higher precision: Softmax (never quantized), every node of the "ocrnet" domain (the plugin
//!   ops), the final classifiers (a Conv/MatMul/Gemm producing a graph output) unless
//!   [`QdqOptions::quantize_classifier`], and nodes excluded by name or op type.
//! - A value read by several quantized inputs gets one shared pair (one shared DQ per weight).
//! - Opset < 13 has no per-axis Q/DQ: weights fall back to one per-tensor scale there (reported).

use crate::calib::{per_channel_amax, scale_of, ScaleTable};
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto};
use crate::onnx::{self, Model, Patch};
use crate::shape;
use crate::tensor::{Data, Tensor};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The domain the OCR fusion pass writes its plugin nodes in.
pub const PLUGIN_DOMAIN: &str = "ocrnet";

#[derive(Debug, Clone, Default)]
pub struct QdqOptions {
    /// Node names never quantized.
    pub exclude_nodes: BTreeSet<String>,
    /// Op types never quantized (e.g. "MatMul" to keep attention in FP16).
    pub exclude_op_types: BTreeSet<String>,
    /// Quantize the Convs that produce graph outputs too.
    pub quantize_classifier: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QdqError {
    #[error("no calibrated scale for tensor '{tensor}' (input of node '{node}')")]
    MissingScale { tensor: String, node: String },
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error("the model's opset {0} has no QuantizeLinear (needs 10 or later)")]
    Opset(i64),
    #[error(transparent)]
    Graph(#[from] onnx::Error),
}

/// A node left unquantized, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Skipped {
    pub node: String,
    pub op: String,
    pub reason: String,
}

/// What [`run`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QdqReport {
    /// "int8 initializer + DequantizeLinear".
    pub weight_format: String,
    /// Per-channel weights (opset >= 13) or one scale per weight tensor.
    pub per_channel_weights: bool,
    /// Nodes with quantized inputs, by op type.
    pub quantized_nodes: BTreeMap<String, usize>,
    /// Activation Q/DQ pairs inserted (one per value, however many readers).
    pub activation_pairs: usize,
    /// Weights stored as int8 + DequantizeLinear.
    pub weights: usize,
    /// Concats whose inputs share one scale.
    pub concat_groups: usize,
    /// Quantizable-looking nodes left in higher precision.
    pub skipped: Vec<Skipped>,
}

/// What one input of a node becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Activation,
    /// A weight initializer, quantized per channel along this axis (`None`: per tensor).
    Weight(Option<usize>),
}

/// The quantization plan: (node, input position, kind), plus the values that must share a scale.
struct Plan {
    inputs: Vec<(usize, usize, Kind)>,
    groups: Vec<Vec<String>>,
    skipped: Vec<Skipped>,
}

fn label(n: &NodeProto) -> String {
    onnx::error::node_label(n)
}

fn plan(model: &Model, opts: &QdqOptions) -> Result<Plan, QdqError> {
    let opset = model.opset().unwrap_or(0);
    if opset < 10 {
        return Err(QdqError::Opset(opset));
    }
    let g = &model.graph;
    let inf = shape::infer_opts(
        g,
        &shape::InferOptions {
            opset,
            input_shapes: HashMap::new(),
            inputs_are_constant: model.proto.ir_version() < 4,
        },
    )?;
    let idx = g.index();
    let is_f32 = |v: &str| inf.ty(v).is_some_and(|t| t.elem == DataType::Float as i32);
    let is_const = |v: &str| idx.initializer(v).is_some() || inf.value(v).is_some();
    let mut p = Plan {
        inputs: Vec::new(),
        groups: Vec::new(),
        skipped: Vec::new(),
    };
    for (id, n) in g.nodes.iter().enumerate() {
        let op = n.op_type();
        let skip = |reason: &str| Skipped {
            node: label(n),
            op: op.to_string(),
            reason: reason.to_string(),
        };
        if n.domain() == PLUGIN_DOMAIN {
            p.skipped.push(skip("plugin op: kept in higher precision"));
            continue;
        }
        if !matches!(n.domain(), "" | "ai.onnx")
            || !matches!(op, "Conv" | "MatMul" | "Gemm" | "Add" | "Concat")
        {
            continue;
        }
        if opts.exclude_nodes.contains(n.name()) || opts.exclude_op_types.contains(op) {
            p.skipped.push(skip("excluded by option"));
            continue;
        }
        let input = |i: usize| n.input.get(i).map(String::as_str).unwrap_or("");
        match op {
            "Conv" | "MatMul" | "Gemm" => {
                if !opts.quantize_classifier && n.output.iter().any(|o| idx.is_graph_output(o)) {
                    p.skipped.push(skip("produces a graph output (classifier)"));
                    continue;
                }
                for i in 0..2 {
                    let v = input(i);
                    if v.is_empty() || !is_f32(v) {
                        continue;
                    }
                    let kind = match idx.initializer(v) {
                        Some(w) => {
                            let rank = w.dims.len();
                            Kind::Weight(match (op, i) {
                                ("Conv", 1) => Some(0),
                                ("MatMul", 1) if rank >= 2 => Some(rank - 1),
                                ("Gemm", 1) => Some(if int_attr(n, "transB") == 1 { 0 } else { 1 }),
                                _ => None,
                            })
                        }
                        None if is_const(v) => continue,
                        None => Kind::Activation,
                    };
                    p.inputs.push((id, i, kind));
                }
            }
            "Add" => {
                let (a, b) = (input(0), input(1));
                if n.input.len() != 2 || !is_f32(a) || !is_f32(b) || is_const(a) || is_const(b) {
                    continue; // a bias add, or not float
                }
                let fusable = |v: &str| {
                    idx.producer(v).is_some_and(|pid| {
                        let pn = idx.node(pid);
                        pn.op_type() == "Conv"
                            && matches!(pn.domain(), "" | "ai.onnx")
                            && idx.consumers(v).len() == 1
                            && !idx.is_graph_output(v)
                    })
                };
                let keep = if a == b {
                    None
                } else if fusable(a) {
                    Some(0)
                } else if fusable(b) {
                    Some(1)
                } else {
                    None
                };
                // x + x: both positions read the one shared pair (the memo in `run`).
                for i in 0..2 {
                    if Some(i) != keep {
                        p.inputs.push((id, i, Kind::Activation));
                    }
                }
            }
            "Concat" => {
                let Some(out) = n.output.first() else {
                    continue;
                };
                if !is_f32(out) {
                    continue;
                }
                if n.input.iter().any(|v| v.is_empty() || is_const(v)) {
                    p.skipped
                        .push(skip("a constant input: left in higher precision"));
                    continue;
                }
                let mut group: Vec<String> = vec![out.clone()];
                for (i, v) in n.input.iter().enumerate() {
                    // A repeated input is rewired at every position, to the one shared pair.
                    p.inputs.push((id, i, Kind::Activation));
                    group.push(v.clone());
                }
                p.groups.push(group);
            }
            _ => {}
        }
    }
    Ok(p)
}

/// The activations [`run`] needs an amax for: every value that gets a Q/DQ pair and every member of a
/// Concat's shared-scale group.
pub fn activations(model: &Model, opts: &QdqOptions) -> Result<BTreeSet<String>, QdqError> {
    let p = plan(model, opts)?;
    let g = &model.graph;
    let mut names: BTreeSet<String> = p
        .inputs
        .iter()
        .filter(|(_, _, k)| *k == Kind::Activation)
        .map(|&(id, i, _)| g.nodes[id].input[i].clone())
        .collect();
    names.extend(p.groups.into_iter().flatten());
    Ok(names)
}

/// Inserts the Q/DQ nodes. On error the model is unchanged.
pub fn run(
    model: &mut Model,
    scales: &ScaleTable,
    opts: &QdqOptions,
) -> Result<QdqReport, QdqError> {
    let opset = model.opset().unwrap_or(0);
    let per_channel = opset >= 13;
    let p = plan(model, opts)?;
    let g = &model.graph;
    let idx = g.index();

    // Shared scales: union of every Concat's inputs and output; a value's scale is its group's largest. The
    // table's own `scale` is used, not one recomputed from amax: a table read from a legacy cache holds
    // scales only, and amax * 127 / 127 need not give the same float back.
    let mut parent: HashMap<String, String> = HashMap::new();
    fn find(parent: &mut HashMap<String, String>, v: &str) -> String {
        let mut r = v.to_string();
        while let Some(up) = parent.get(&r).filter(|u| **u != r) {
            r = up.clone();
        }
        parent.insert(v.to_string(), r.clone());
        r
    }
    for group in &p.groups {
        let root = find(&mut parent, &group[0]);
        for v in &group[1..] {
            let r = find(&mut parent, v);
            if r != root {
                parent.insert(r, root.clone());
            }
        }
    }
    let mut group_scale: HashMap<String, f32> = HashMap::new();
    for group in &p.groups {
        for v in group {
            if let Some(s) = scales.get(v) {
                let r = find(&mut parent, v);
                let e = group_scale.entry(r).or_insert(0.0);
                *e = e.max(s.scale);
            }
        }
    }

    let mut names = super::FreshNames::of(g);
    let mut fresh = |base: String| names.fresh(base);

    let mut patch = Patch::new("qdq");
    let mut report = QdqReport {
        weight_format: "int8 initializer + DequantizeLinear".into(),
        per_channel_weights: per_channel,
        concat_groups: p.groups.len(),
        skipped: p.skipped.clone(),
        ..Default::default()
    };
    let mut dq_of: HashMap<String, String> = HashMap::new();
    let mut rewired: BTreeMap<usize, Vec<(usize, String)>> = BTreeMap::new();
    for &(id, i, kind) in &p.inputs {
        let n = &g.nodes[id];
        let v = n.input[i].clone();
        let key = format!("{v}\u{0}{kind:?}");
        if let Some(dq) = dq_of.get(&key) {
            rewired.entry(id).or_default().push((i, dq.clone()));
            continue;
        }
        let dq = match kind {
            Kind::Activation => {
                let act_scale = match parent.contains_key(&v) {
                    true => group_scale.get(&find(&mut parent, &v)).copied(),
                    false => scales.get(&v).map(|s| s.scale),
                }
                .ok_or_else(|| QdqError::MissingScale {
                    tensor: v.clone(),
                    node: label(n),
                })?;
                let scale = fresh(format!("{v}_scale"));
                let zp = fresh(format!("{v}_zero_point"));
                let q = fresh(format!("{v}_quantized"));
                let dq = fresh(format!("{v}_dequantized"));
                patch.add_initializer(scalar_f32(act_scale).to_proto(&scale));
                patch.add_initializer(
                    Tensor::new(vec![], Data::I8(vec![0]))
                        .unwrap()
                        .to_proto(&zp),
                );
                patch.add_node(qdq_node(
                    "QuantizeLinear",
                    &fresh(format!("{v}_QuantizeLinear")),
                    [&v, &scale, &zp],
                    &q,
                    None,
                ));
                patch.add_node(qdq_node(
                    "DequantizeLinear",
                    &fresh(format!("{v}_DequantizeLinear")),
                    [&q, &scale, &zp],
                    &dq,
                    None,
                ));
                report.activation_pairs += 1;
                dq
            }
            Kind::Weight(axis) => {
                let w = idx
                    .initializer(&v)
                    .expect("planned weights are initializers");
                let t = Tensor::from_proto(w)?;
                let axis = axis.filter(|_| per_channel);
                let (q, s) = quantize_weight(&t, axis).map_err(|reason| QdqError::Node {
                    node: label(n),
                    op: n.op_type().to_string(),
                    reason: format!("weight '{v}': {reason}"),
                })?;
                let qn = fresh(format!("{v}_quantized"));
                let sn = fresh(format!("{v}_scale"));
                let zn = fresh(format!("{v}_zero_point"));
                let dq = fresh(format!("{v}_dequantized"));
                let k = s.len();
                let scale_t = match axis {
                    Some(_) => Tensor::vec_f32(vec![k], s).unwrap(),
                    None => scalar_f32(s[0]),
                };
                let zp_shape = scale_t.shape.clone();
                patch.add_initializer(q.to_proto(&qn));
                patch.add_initializer(scale_t.to_proto(&sn));
                patch.add_initializer(
                    Tensor::new(
                        zp_shape,
                        Data::I8(vec![0; if axis.is_some() { k } else { 1 }]),
                    )
                    .unwrap()
                    .to_proto(&zn),
                );
                patch.add_node(qdq_node(
                    "DequantizeLinear",
                    &fresh(format!("{v}_DequantizeLinear")),
                    [&qn, &sn, &zn],
                    &dq,
                    axis,
                ));
                report.weights += 1;
                dq
            }
        };
        dq_of.insert(key, dq.clone());
        rewired.entry(id).or_default().push((i, dq));
    }
    for (id, edits) in rewired {
        let mut n = g.nodes[id].clone();
        for (i, new) in edits {
            n.input[i] = new;
        }
        *report
            .quantized_nodes
            .entry(n.op_type().to_string())
            .or_default() += 1;
        patch.remove_node(id);
        patch.add_node(n);
    }
    let mut graph = model.graph.clone();
    graph.apply(patch)?;
    graph.remove_dead();
    // The result must still type-check: every Q/DQ's scale and zero point agree with its input.
    shape::infer_opts(
        &graph,
        &shape::InferOptions {
            opset,
            input_shapes: HashMap::new(),
            inputs_are_constant: model.proto.ir_version() < 4,
        },
    )?;
    model.graph = graph;
    Ok(report)
}

fn int_attr(n: &NodeProto, name: &str) -> i64 {
    onnx::graph::attr(n, name).map_or(0, |a| a.i())
}

fn scalar_f32(v: f32) -> Tensor {
    Tensor {
        shape: vec![],
        data: Data::F32(vec![v]),
    }
}

fn qdq_node(
    op: &str,
    name: &str,
    inputs: [&str; 3],
    output: &str,
    axis: Option<usize>,
) -> NodeProto {
    NodeProto {
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        attribute: axis
            .map(|a| AttributeProto {
                name: Some("axis".into()),
                r#type: Some(AttributeType::Int as i32),
                i: Some(a as i64),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// Symmetric int8 weights in [-127, 127]: per channel along `axis`, or one scale for the tensor.
/// Returns the int8 tensor and the scales (amax / 127, floored like activations').
pub fn quantize_weight(w: &Tensor, axis: Option<usize>) -> Result<(Tensor, Vec<f32>), String> {
    let amax = match axis {
        Some(a) => {
            per_channel_amax(w, a).ok_or_else(|| format!("no axis {a} in shape {:?}", w.shape))?
        }
        None => vec![crate::calib::histogram::abs_max(&w.as_f32s())],
    };
    if !matches!(w.data, Data::F32(_)) {
        return Err(format!("element type {:?} is not float32", w.dtype()));
    }
    let scales: Vec<f32> = amax.iter().map(|&a| scale_of(a)).collect();
    let inner: usize = match axis {
        Some(a) => w.shape[a + 1..].iter().product(),
        None => w.len().max(1),
    };
    let k = scales.len();
    let v = w.as_f32s();
    let q: Vec<i8> = v
        .iter()
        .enumerate()
        .map(|(j, &x)| {
            let s = scales[(j / inner.max(1)) % k];
            (x / s).round_ties_even().clamp(-127.0, 127.0) as i8
        })
        .collect();
    Ok((
        Tensor::new(w.shape.clone(), Data::I8(q)).expect("same shape"),
        scales,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_quantize_per_channel_into_127() {
        let w = Tensor::vec_f32(vec![2, 2], vec![1.0, -0.5, 0.02, -0.01]).unwrap();
        let (q, s) = quantize_weight(&w, Some(0)).unwrap();
        assert_eq!(s, vec![1.0 / 127.0, 0.02 / 127.0]);
        // -0.01 / (0.02 / 127) rounds to -63 in float32 (-63.4999...).
        assert_eq!(q.data, Data::I8(vec![127, -64, 127, -63]));
        let (q, s) = quantize_weight(&w, None).unwrap();
        assert_eq!(s, vec![1.0 / 127.0]);
        assert_eq!(q.data, Data::I8(vec![127, -64, 3, -1]));
        // Columns (MatMul B [K, N], axis 1).
        let (_, s) = quantize_weight(&w, Some(1)).unwrap();
        assert_eq!(s, vec![1.0 / 127.0, 0.5 / 127.0]);
    }
}
