//! FP16 lowering: rewrites a float32 graph into a strongly typed FP16 one, the form TensorRT 10/11
//! builds without weak-typing flags.
//!
//! Entry point: [`run`]`(&mut model, &opts) -> Fp16Report`.
//!
//! - Float32 initializers read by FP16 nodes become float16 (in place when nobody else reads them as
//!   float32, as a `<name>_fp16` copy otherwise); activations computed by FP16 nodes are float16.
//! - Graph inputs and outputs keep float32: a Cast after each input and before each output (the node
//!   producing an output writes `<name>_fp16`, a Cast writes `<name>`), so callers see the same
//!   interface.
//! - Kept in float32, with Casts around them: Softmax and LogSoftmax (the exponentials and the sum over
//!   H*W lose too much in float16), the plugin nodes (domain "ocrnet"), nodes that read a weight whose
//!   values exceed the float16 range (reported), nodes whose activations exceed it according to
//!   [`Fp16Options::activation_amax`] (e.g. a calibration table), Q/DQ nodes, ops whose output type is
//!   an attribute (Cast, ConstantOfShape, Constant, EyeLike, random), and anything excluded by name or
//!   op type.
//! - Every op's type-`T` inputs agree in type (ONNX type rules); inputs with their own type stay as they
//!   are: Resize's roi and scales, Upsample's scales, integer shapes and indices. The inputs of Cast,
//!   Shape and Size take whatever type the value has. One Cast per (value, type), shared by readers.
//! - Subgraphs (If/Loop/Scan) are refused.

use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto};
use crate::onnx::{self, Graph, Model, Patch};
use crate::shape;
use crate::tensor::{Data, Tensor};
use half::f16;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The largest finite float16.
pub const FP16_MAX: f32 = 65504.0;

/// Ops always kept in float32.
const KEEP_FP32: &[&str] = &[
    "Softmax",
    "LogSoftmax",
    "QuantizeLinear",
    "DequantizeLinear",
    "Cast",
    "CastLike",
    "Constant",
    "ConstantOfShape",
    "EyeLike",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
];

#[derive(Debug, Clone, Default)]
pub struct Fp16Options {
    /// Node names kept in float32.
    pub keep_nodes: BTreeSet<String>,
    /// Op types kept in float32.
    pub keep_op_types: BTreeSet<String>,
    /// Observed |x| maxima by value name (e.g. from a calibration scale table); a node reading or
    /// writing a value beyond [`FP16_MAX`] stays float32.
    pub activation_amax: BTreeMap<String, f32>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Fp16Error {
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error(transparent)]
    Graph(#[from] onnx::Error),
}

/// A node kept in float32, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Kept {
    pub node: String,
    pub op: String,
    pub reason: String,
}

/// What [`run`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fp16Report {
    /// Nodes computing in float16.
    pub fp16_nodes: usize,
    /// Nodes with float values kept in float32.
    pub fp32_nodes: Vec<Kept>,
    /// Cast nodes inserted.
    pub casts: usize,
    /// Initializers converted to float16 (copies included).
    pub converted_initializers: usize,
    /// Weights kept float32 because a value exceeds the float16 range.
    pub overflowing_weights: Vec<String>,
    /// Weights with non-zero values that flush to zero in float16 (still converted).
    pub underflowing_weights: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Prec {
    F32,
    F16,
}

/// How an input of an op relates to the op's float type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// Must have the node's type.
    T,
    /// Any type is accepted: keep the value's own.
    Any,
    /// Its own type, left alone.
    Own,
}

fn role(op: &str, i: usize) -> Role {
    match (op, i) {
        ("Resize", 1..) | ("Upsample", 1..) => Role::Own,
        ("Cast" | "CastLike" | "Shape" | "Size", 0) => Role::Any,
        _ => Role::T,
    }
}

fn label(n: &NodeProto) -> String {
    onnx::error::node_label(n)
}

/// Lowers the model to FP16. On error the model is unchanged.
pub fn run(model: &mut Model, opts: &Fp16Options) -> Result<Fp16Report, Fp16Error> {
    let opset = model.opset().unwrap_or(1);
    let infer_opts = shape::InferOptions {
        opset,
        input_shapes: HashMap::new(),
        inputs_are_constant: model.proto.ir_version() < 4,
    };
    let g = &model.graph;
    let inf = shape::infer_opts(g, &infer_opts)?;
    let idx = g.index();
    let f32v =
        |v: &str| !v.is_empty() && inf.ty(v).is_some_and(|t| t.elem == DataType::Float as i32);
    let mut report = Fp16Report::default();

    // Which initializers fit float16.
    let mut fits: HashMap<&str, bool> = HashMap::new();
    for t in &g.initializers {
        if t.data_type() != DataType::Float as i32 {
            continue;
        }
        let v = Tensor::from_proto(t)?.as_f32s();
        let over = v.iter().any(|x| x.abs() > FP16_MAX);
        if over {
            report.overflowing_weights.push(t.name().to_string());
        } else if v
            .iter()
            .any(|&x| x != 0.0 && f16::from_f32(x).to_f32() == 0.0)
        {
            report.underflowing_weights.push(t.name().to_string());
        }
        fits.insert(t.name(), !over);
    }

    // Each node's precision.
    let mut prec: Vec<Prec> = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let op = n.op_type();
        if n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
        {
            return Err(Fp16Error::Node {
                node: label(n),
                op: op.into(),
                reason: "nodes with subgraphs are not supported by the FP16 pass".into(),
            });
        }
        let has_float = n.input.iter().chain(&n.output).any(|v| f32v(v));
        let reason = if !matches!(n.domain(), "" | "ai.onnx") {
            Some(format!("domain '{}' (plugin): kept in float32", n.domain()))
        } else if KEEP_FP32.contains(&op) {
            Some("op kept in float32".to_string())
        } else if opts.keep_nodes.contains(n.name()) || opts.keep_op_types.contains(op) {
            Some("excluded by option".to_string())
        } else if let Some(w) = n
            .input
            .iter()
            .enumerate()
            .find(|(i, v)| role(op, *i) == Role::T && fits.get(v.as_str()) == Some(&false))
        {
            Some(format!("weight '{}' exceeds the float16 range", w.1))
        } else {
            n.input
                .iter()
                .chain(&n.output)
                .find(|v| {
                    opts.activation_amax
                        .get(v.as_str())
                        .is_some_and(|&a| a > FP16_MAX)
                })
                .map(|v| format!("value '{v}' exceeds the float16 range"))
        };
        match reason {
            Some(r) => {
                if has_float {
                    report.fp32_nodes.push(Kept {
                        node: label(n),
                        op: op.into(),
                        reason: r,
                    });
                }
                prec.push(Prec::F32);
            }
            None => {
                if has_float {
                    report.fp16_nodes += 1;
                }
                prec.push(Prec::F16);
            }
        }
    }

    // The type each float value is produced in.
    let mut native: BTreeMap<String, Prec> = BTreeMap::new();
    for (id, n) in g.nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| f32v(o)) {
            native.insert(o.clone(), prec[id]);
        }
    }

    let mut names = super::FreshNames::of(g);
    let mut fresh = |base: String| names.fresh(base);

    let mut patch = Patch::new("fp16");
    // (value, type) -> the name it has in that type.
    let mut names: HashMap<(String, Prec), String> = HashMap::new();
    // Float16 outputs that are graph outputs: written under a new name and cast back.
    let mut renamed_outputs: HashMap<String, String> = HashMap::new();
    for (v, &p) in &native {
        if p == Prec::F16 && idx.is_graph_output(v) {
            let r = fresh(format!("{v}_fp16"));
            names.insert((v.clone(), Prec::F16), r.clone());
            names.insert((v.clone(), Prec::F32), v.clone());
            patch.add_node(cast_node(
                &fresh(format!("{v}_cast_fp32")),
                &r,
                v,
                DataType::Float,
            ));
            report.casts += 1;
            renamed_outputs.insert(v.clone(), r);
        } else {
            names.insert((v.clone(), p), v.clone());
        }
    }
    for v in g.inputs.iter().map(|v| v.name()) {
        if f32v(v) && idx.initializer(v).is_none() {
            names.insert((v.to_string(), Prec::F32), v.to_string());
        }
    }

    // Requests: which (value, type) each input wants. Initializers are decided after all requests.
    let mut wants: Vec<(usize, usize, String, Prec)> = Vec::new();
    let mut init_wants: HashMap<String, HashSet<Prec>> = HashMap::new();
    for (id, n) in g.nodes.iter().enumerate() {
        for (i, v) in n.input.iter().enumerate() {
            if !f32v(v) {
                continue;
            }
            let want = match role(n.op_type(), i) {
                Role::Own => continue,
                Role::T => prec[id],
                Role::Any => match native.get(v) {
                    Some(&p) => p,
                    None => Prec::F32,
                },
            };
            let is_init =
                idx.initializer(v).is_some() && !names.contains_key(&(v.clone(), Prec::F32));
            if is_init {
                init_wants.entry(v.clone()).or_default().insert(want);
            }
            wants.push((id, i, v.clone(), want));
        }
    }
    for n in &g.nodes {
        for (i, v) in n.input.iter().enumerate() {
            // Own-type and non-float reads of an initializer keep it as it is.
            if idx.initializer(v).is_some() && (!f32v(v) || role(n.op_type(), i) == Role::Own) {
                init_wants.entry(v.clone()).or_default().insert(Prec::F32);
            }
        }
    }
    for out in &g.outputs {
        if idx.initializer(out.name()).is_some() {
            init_wants
                .entry(out.name().to_string())
                .or_default()
                .insert(Prec::F32);
        }
    }
    let mut init_names: Vec<&String> = init_wants.keys().collect();
    init_names.sort();
    for v in init_names {
        let w = &init_wants[v];
        let t = idx.initializer(v).expect("an initializer");
        if w.contains(&Prec::F16) {
            let half = to_f16(&Tensor::from_proto(t)?);
            let name = if w.contains(&Prec::F32) || g.inputs.iter().any(|i| i.name() == v) {
                names.insert((v.clone(), Prec::F32), v.clone());
                fresh(format!("{v}_fp16"))
            } else {
                v.clone()
            };
            patch.add_initializer(half.to_proto(&name));
            names.insert((v.clone(), Prec::F16), name);
            report.converted_initializers += 1;
        } else {
            names.insert((v.clone(), Prec::F32), v.clone());
        }
    }

    // Rewire, adding one Cast per (value, type) that is not available.
    let mut edits: BTreeMap<usize, Vec<(usize, String)>> = BTreeMap::new();
    for (id, i, v, want) in wants {
        let name = match names.get(&(v.clone(), want)) {
            Some(n) => n.clone(),
            None => {
                let other = match want {
                    Prec::F16 => Prec::F32,
                    Prec::F32 => Prec::F16,
                };
                let src = names.get(&(v.clone(), other)).cloned().ok_or_else(|| {
                    let n = &g.nodes[id];
                    Fp16Error::Node {
                        node: label(n),
                        op: n.op_type().into(),
                        reason: format!("input '{v}' has no known producer type"),
                    }
                })?;
                let (suffix, to) = match want {
                    Prec::F16 => ("fp16", DataType::Float16),
                    Prec::F32 => ("fp32", DataType::Float),
                };
                let out = fresh(format!("{v}_to_{suffix}"));
                patch.add_node(cast_node(
                    &fresh(format!("{v}_cast_{suffix}")),
                    &src,
                    &out,
                    to,
                ));
                report.casts += 1;
                names.insert((v.clone(), want), out.clone());
                out
            }
        };
        if name != v {
            edits.entry(id).or_default().push((i, name));
        }
    }
    for (id, n) in g.nodes.iter().enumerate() {
        if n.output.iter().any(|o| renamed_outputs.contains_key(o)) {
            edits.entry(id).or_default();
        }
    }
    for (id, list) in edits {
        let mut n = g.nodes[id].clone();
        for (i, name) in list {
            n.input[i] = name;
        }
        for o in &mut n.output {
            if let Some(r) = renamed_outputs.get(o) {
                *o = r.clone();
            }
        }
        patch.remove_node(id);
        patch.add_node(n);
    }

    let mut graph = model.graph.clone();
    let had_value_info = !graph.value_info.is_empty();
    graph.apply(patch)?;
    graph.remove_dead();
    // Declared float32 types of values that are now float16 would contradict the rules; the rest stay
    // (ops without a shape rule, such as the plugins, depend on them).
    graph
        .value_info
        .retain(|v| native.get(v.name()) != Some(&Prec::F16));
    let after = shape::infer_opts(&graph, &infer_opts)?;
    check_types(&graph, &after)?;
    if had_value_info {
        graph.value_info = after.to_value_info(&graph);
    }
    model.graph = graph;
    Ok(report)
}

/// Every node's type-`T` float inputs share one element type.
pub fn check_types(graph: &Graph, inf: &shape::Inference) -> Result<(), Fp16Error> {
    let floats = [DataType::Float as i32, DataType::Float16 as i32];
    for n in &graph.nodes {
        if !matches!(n.domain(), "" | "ai.onnx") || KEEP_FP32.contains(&n.op_type()) {
            continue;
        }
        let mut seen: Option<(i32, &str)> = None;
        for (i, v) in n.input.iter().enumerate() {
            if v.is_empty() || role(n.op_type(), i) != Role::T {
                continue;
            }
            let Some(t) = inf.ty(v).map(|t| t.elem).filter(|e| floats.contains(e)) else {
                continue;
            };
            match seen {
                Some((e, first)) if e != t => {
                    return Err(Fp16Error::Node {
                        node: label(n),
                        op: n.op_type().into(),
                        reason: format!("inputs '{first}' (type {e}) and '{v}' (type {t}) differ"),
                    })
                }
                None => seen = Some((t, v)),
                _ => {}
            }
        }
    }
    Ok(())
}

fn to_f16(t: &Tensor) -> Tensor {
    Tensor {
        shape: t.shape.clone(),
        data: Data::F16(t.as_f32s().into_iter().map(f16::from_f32).collect()),
    }
}

fn cast_node(name: &str, input: &str, output: &str, to: DataType) -> NodeProto {
    NodeProto {
        name: Some(name.to_string()),
        op_type: Some("Cast".into()),
        input: vec![input.to_string()],
        output: vec![output.to_string()],
        attribute: vec![AttributeProto {
            name: Some("to".into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(to as i64),
            ..Default::default()
        }],
        ..Default::default()
    }
}
