//! Static shape and type inference over the graph IR, with data propagation: besides each value's
//! element type and (possibly symbolic) shape, the contents of small integer values — the shape
//! arithmetic of exported models, `Concat(Unsqueeze(Gather(Shape(x), 2)), ...)` — are tracked as
//! [`Dim`]s, and small values whose inputs are all known are computed with the executor's kernels.
//! That is what lets the folder turn a Reshape's or Resize's computed shape into a constant.
//!
//! The rules live in [`rules`], one file per op family. An op without a rule gets unknown outputs
//! (or the types the graph's own `value_info` declares); a node whose inputs contradict its op (a
//! Conv whose channels do not match its weights, a Reshape that cannot fit) is an error naming the
//! node.

mod dim;
mod expr;
mod rules;

pub use dim::{broadcast_shapes, unify, Dim, Product};

use crate::exec::ops as kernels;
use crate::onnx::error::node_label;
use crate::onnx::proto::{
    tensor_shape_proto::{dimension::Value as DimValue, Dimension},
    type_proto, NodeProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::onnx::{Error, Graph};
use crate::tensor::{Data, Tensor};
use std::collections::{HashMap, HashSet};

/// Integer values of rank <= 1 with at most this many elements have their contents tracked.
pub const MAX_DATA_LEN: usize = 64;
/// Values of at most this many elements are computed during inference when all their inputs are
/// known.
pub const MAX_CONST_ELEMS: usize = 4096;

/// A value's element type (ONNX `DataType`, 0 when unknown) and shape (`None` when even the rank is
/// unknown).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValueType {
    pub elem: i32,
    pub shape: Option<Vec<Dim>>,
}

impl ValueType {
    pub fn new(elem: i32, shape: Vec<Dim>) -> Self {
        ValueType {
            elem,
            shape: Some(shape),
        }
    }

    /// The shape as numbers, when every dimension is known.
    pub fn static_shape(&self) -> Option<Vec<usize>> {
        self.shape
            .as_ref()?
            .iter()
            .map(|d| d.known().and_then(|v| usize::try_from(v).ok()))
            .collect()
    }

    /// Element count, when the shape is static.
    pub fn numel(&self) -> Option<usize> {
        self.static_shape()?
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    fn from_tensor(t: &Tensor) -> Self {
        ValueType::new(
            t.dtype() as i32,
            t.shape.iter().map(|&d| Dim::Known(d as i64)).collect(),
        )
    }

    /// Reads a ValueInfo's tensor type: `dim_value` is known, `dim_param` symbolic, neither
    /// unknown.
    pub fn from_value_info(v: &ValueInfoProto) -> Option<Self> {
        let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
            return None;
        };
        let shape = t.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(DimValue::DimValue(v)) if *v >= 0 => Dim::Known(*v),
                    Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::symbolic(p.clone()),
                    _ => Dim::Unknown,
                })
                .collect()
        });
        Some(ValueType {
            elem: t.elem_type(),
            shape,
        })
    }

    /// This type as a ValueInfo named `name`.
    pub fn to_value_info(&self, name: &str) -> ValueInfoProto {
        let shape = self.shape.as_ref().map(|dims| TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| Dimension {
                    value: match d {
                        Dim::Known(v) => Some(DimValue::DimValue(*v)),
                        Dim::Sym(s) => Some(DimValue::DimParam(s.clone())),
                        Dim::Unknown => None,
                    },
                    ..Default::default()
                })
                .collect(),
        });
        ValueInfoProto {
            name: Some(name.to_string()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(self.elem),
                    shape,
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// What inference found out about every value of a graph.
#[derive(Debug, Clone, Default)]
pub struct Inference {
    pub types: HashMap<String, ValueType>,
    /// Contents of small integer values (rank <= 1, at most [`MAX_DATA_LEN`] elements), possibly
    /// symbolic.
    pub data: HashMap<String, Vec<Dim>>,
    /// Small values (at most [`MAX_CONST_ELEMS`] elements) whose contents are fully known:
    /// initializers, constants, and what was computed from them.
    pub consts: HashMap<String, Tensor>,
}

impl Inference {
    pub fn ty(&self, name: &str) -> Option<&ValueType> {
        self.types.get(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[Dim]> {
        self.types.get(name)?.shape.as_deref()
    }

    pub fn static_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.types.get(name)?.static_shape()
    }

    pub fn data(&self, name: &str) -> Option<&[Dim]> {
        self.data.get(name).map(Vec::as_slice)
    }

    pub fn value(&self, name: &str) -> Option<&Tensor> {
        self.consts.get(name)
    }

    /// ValueInfo for every value a node produces, graph outputs excepted, in graph order: what goes
    /// into
    /// `GraphProto.value_info`.
    pub fn to_value_info(&self, graph: &Graph) -> Vec<ValueInfoProto> {
        let outputs: HashSet<&str> = graph.outputs.iter().map(|v| v.name()).collect();
        graph
            .nodes
            .iter()
            .flat_map(|n| n.output.iter())
            .filter(|o| !o.is_empty() && !outputs.contains(o.as_str()))
            .filter_map(|o| {
                let t = self.types.get(o)?;
                (t.elem != 0).then(|| t.to_value_info(o))
            })
            .collect()
    }
}

/// How to seed inference.
#[derive(Debug, Clone, Default)]
pub struct InferOptions {
    /// The default-domain opset version the model imports.
    pub opset: i64,
    /// Pins graph inputs to these shapes (a dynamic model run at one size).
    pub input_shapes: HashMap<String, Vec<i64>>,
    /// Treat initializers that are also listed as graph inputs as constants. ONNX lets a caller
    /// override such an initializer; models with IR version < 4 list every initializer as an input,
    /// and there they are weights all the same.
    pub inputs_are_constant: bool,
}

/// Infers types, shapes and small values for every value of `graph`.
pub fn infer(graph: &Graph, opset: i64) -> Result<Inference, Error> {
    infer_opts(
        graph,
        &InferOptions {
            opset,
            ..Default::default()
        },
    )
}

/// [`infer`], with some graph inputs pinned to static shapes.
pub fn infer_with(
    graph: &Graph,
    opset: i64,
    input_shapes: &HashMap<String, Vec<i64>>,
) -> Result<Inference, Error> {
    infer_opts(
        graph,
        &InferOptions {
            opset,
            input_shapes: input_shapes.clone(),
            inputs_are_constant: false,
        },
    )
}

pub fn infer_opts(graph: &Graph, opts: &InferOptions) -> Result<Inference, Error> {
    let mut inf = Inference::default();
    seed(graph, opts, &mut inf)?;
    // Types the graph already declares: used for ops without a rule, never over what the rules
    // derive.
    let declared: HashMap<&str, ValueType> = graph
        .value_info
        .iter()
        .chain(&graph.outputs)
        .filter_map(|v| Some((v.name(), ValueType::from_value_info(v)?)))
        .collect();
    for node in &graph.nodes {
        infer_node(node, opts.opset, &declared, &mut inf)?;
    }
    for out in &graph.outputs {
        let (Some(decl), Some(got)) = (ValueType::from_value_info(out), inf.types.get(out.name()))
        else {
            continue;
        };
        if let (Some(d), Some(g)) = (&decl.shape, &got.shape) {
            let clash = d.len() != g.len()
                || d.iter()
                    .zip(g)
                    .any(|(a, b)| matches!((a, b), (Dim::Known(x), Dim::Known(y)) if x != y));
            if clash {
                log::warn!(
                    "graph output '{}' is declared {} but computes to {}",
                    out.name(),
                    dim::show(d),
                    dim::show(g)
                );
            }
        }
    }
    Ok(inf)
}

/// Types of graph inputs and initializers, and the values of small initializers.
fn seed(graph: &Graph, opts: &InferOptions, inf: &mut Inference) -> Result<(), Error> {
    let graph_error = |reason: String| Error::Graph {
        graph: graph.name().to_string(),
        reason,
    };
    let input_names: HashSet<&str> = graph.inputs.iter().map(|v| v.name()).collect();
    for name in opts.input_shapes.keys() {
        if !input_names.contains(name.as_str()) {
            return Err(graph_error(format!(
                "a shape is given for '{name}', which is not a graph input"
            )));
        }
    }
    for v in &graph.inputs {
        let mut ty = ValueType::from_value_info(v).unwrap_or_default();
        if let Some(pinned) = opts.input_shapes.get(v.name()) {
            ty.shape = Some(pin(v.name(), ty.shape.as_deref(), pinned).map_err(graph_error)?);
        }
        inf.types.insert(v.name().to_string(), ty);
    }
    for t in &graph.initializers {
        if input_names.contains(t.name()) && !opts.inputs_are_constant {
            continue; // overridable: its type is the input's, its value unknown
        }
        let ty = ValueType::new(
            t.data_type(),
            t.dims.iter().map(|&d| Dim::Known(d)).collect(),
        );
        if ty.numel().is_some_and(|n| n <= MAX_CONST_ELEMS) {
            if let Ok(value) = Tensor::from_proto(t) {
                record_const(inf, t.name(), value);
                continue;
            }
        }
        inf.types.insert(t.name().to_string(), ty);
    }
    Ok(())
}

/// A pinned input shape, checked against what the model declares.
fn pin(name: &str, declared: Option<&[Dim]>, pinned: &[i64]) -> Result<Vec<Dim>, String> {
    if let Some(&d) = pinned.iter().find(|&&d| d < 0) {
        return Err(format!(
            "input '{name}': pinned shape {pinned:?} has a negative dimension {d}"
        ));
    }
    if let Some(decl) = declared {
        let fits = decl.len() == pinned.len()
            && decl
                .iter()
                .zip(pinned)
                .all(|(d, &p)| d.known().is_none_or(|k| k == p));
        if !fits {
            return Err(format!(
                "input '{name}' is declared {} and cannot be pinned to {pinned:?}",
                dim::show(decl)
            ));
        }
    }
    Ok(pinned.iter().map(|&d| Dim::Known(d)).collect())
}

/// Records a fully known value: its type, its contents as data when shape-like, and the value
/// itself.
fn record_const(inf: &mut Inference, name: &str, value: Tensor) {
    inf.types
        .insert(name.to_string(), ValueType::from_tensor(&value));
    if let Some(d) = data_of(&value) {
        inf.data.insert(name.to_string(), d);
    }
    inf.consts.insert(name.to_string(), value);
}

/// The contents of a shape-like tensor (int32/int64, rank <= 1, short) as dims.
fn data_of(t: &Tensor) -> Option<Vec<Dim>> {
    if t.shape.len() > 1 || t.len() > MAX_DATA_LEN || !matches!(t.data, Data::I64(_) | Data::I32(_))
    {
        return None;
    }
    Some(t.as_i64s()?.into_iter().map(Dim::Known).collect())
}

/// Fully known shape-like data as a tensor of the value's type.
fn tensor_of(ty: &ValueType, data: &[Dim]) -> Option<Tensor> {
    let shape = ty.static_shape()?;
    let values: Vec<i64> = data.iter().map(Dim::known).collect::<Option<_>>()?;
    let data = match ty.elem {
        e if e == crate::onnx::proto::tensor_proto::DataType::Int64 as i32 => Data::I64(values),
        e if e == crate::onnx::proto::tensor_proto::DataType::Int32 as i32 => {
            Data::I32(values.iter().map(|&v| v as i32).collect())
        }
        _ => return None,
    };
    Tensor::new(shape, data).ok()
}

fn infer_node(
    node: &NodeProto,
    opset: i64,
    declared: &HashMap<&str, ValueType>,
    inf: &mut Inference,
) -> Result<(), Error> {
    let default_domain = matches!(node.domain(), "" | "ai.onnx");
    let outs = if default_domain || node.domain() == crate::ocr::DOMAIN {
        rules::infer(node, opset, inf).map_err(|reason| Error::node(node, reason))?
    } else {
        Vec::new()
    };
    for (i, name) in node
        .output
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.is_empty())
    {
        let mut out = outs.get(i).cloned().unwrap_or_default();
        if let Some(decl) = declared.get(name.as_str()) {
            out.ty = refine(out.ty, decl);
        }
        if let Some(d) = out.data.take() {
            let fits =
                d.len() <= MAX_DATA_LEN && out.ty.shape.as_ref().is_some_and(|s| s.len() <= 1);
            if fits {
                if let Some(t) = tensor_of(&out.ty, &d) {
                    inf.consts.insert(name.clone(), t);
                }
                inf.data.insert(name.clone(), d);
            }
        }
        inf.types.insert(name.clone(), out.ty);
    }
    if default_domain {
        evaluate(node, opset, inf)?;
    }
    Ok(())
}

/// Fills what the rules left unknown from a declared type; never overrides what they derived.
fn refine(mut got: ValueType, decl: &ValueType) -> ValueType {
    if got.elem == 0 {
        got.elem = decl.elem;
    }
    match (&mut got.shape, &decl.shape) {
        (None, Some(d)) => got.shape = Some(d.clone()),
        (Some(g), Some(d)) if g.len() == d.len() => {
            for (a, b) in g.iter_mut().zip(d) {
                if *a == Dim::Unknown {
                    *a = b.clone();
                }
            }
        }
        _ => {}
    }
    got
}

/// Computes a node's outputs with the executor's kernels when all its inputs are known and its
/// outputs small.
fn evaluate(node: &NodeProto, opset: i64, inf: &mut Inference) -> Result<(), Error> {
    if !kernels::supports(node.op_type()) || node.output.iter().all(|o| inf.consts.contains_key(o))
    {
        return Ok(());
    }
    let small = node.output.iter().filter(|o| !o.is_empty()).all(|o| {
        inf.types
            .get(o)
            .and_then(ValueType::numel)
            .is_some_and(|n| n <= MAX_CONST_ELEMS)
    });
    // Every output must have been sized by its rule first (a Constant's by its attribute), so that
    // nothing large is ever built here.
    if !small {
        return Ok(());
    }
    let mut inputs = Vec::with_capacity(node.input.len());
    for name in &node.input {
        if name.is_empty() {
            inputs.push(None);
        } else {
            match inf.consts.get(name) {
                Some(t) => inputs.push(Some(t)),
                None => return Ok(()),
            }
        }
    }
    let outputs = match kernels::eval(node, &inputs, opset) {
        Ok(o) => o,
        Err(kernels::OpError::Unsupported(why)) => {
            log::debug!(
                "shape inference: not evaluating {}: {why}",
                node_label(node)
            );
            return Ok(());
        }
        Err(kernels::OpError::Invalid(why)) => return Err(Error::node(node, why)),
    };
    for (name, value) in node.output.iter().zip(outputs) {
        if name.is_empty() || value.len() > MAX_CONST_ELEMS {
            continue;
        }
        if let Some(ty) = inf.types.get(name) {
            let got = ValueType::from_tensor(&value);
            if ty.elem != 0 && ty.elem != got.elem
                || ty.shape.as_ref().is_some_and(|s| !fits(s, &got))
            {
                log::warn!(
                    "shape inference: {} computes '{name}' as {:?} {:?}, its rule said {:?}",
                    node_label(node),
                    got.elem,
                    value.shape,
                    ty
                );
            }
        }
        record_const(inf, name, value);
    }
    Ok(())
}

/// Whether a computed type agrees with an inferred shape.
fn fits(shape: &[Dim], got: &ValueType) -> bool {
    let g = got.shape.as_deref().unwrap_or(&[]);
    shape.len() == g.len() && shape.iter().zip(g).all(|(a, b)| !a.is_known() || a == b)
}

#[cfg(test)]
mod tests;
