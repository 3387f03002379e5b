//! Shape rules, one file per op family. A rule reads its node's input types, data and constants
//! through [`NodeCx`] and returns its outputs' types (and, for shape arithmetic, their contents);
//! `Err` means the node contradicts its op. Ops without a rule return no outputs, which leaves them
//! unknown.

mod array;
mod elementwise;
mod nn;
mod ocr;
mod resize;

use super::{Dim, Inference, ValueType};
use crate::exec::ops as kernels;
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::NodeProto;
use crate::tensor::Tensor;

/// One output of a rule.
#[derive(Debug, Clone, Default)]
pub(crate) struct Out {
    pub ty: ValueType,
    /// The value's contents, for shape-like integer values.
    pub data: Option<Vec<Dim>>,
}

impl Out {
    pub fn new(elem: i32, shape: Vec<Dim>) -> Self {
        Out {
            ty: ValueType::new(elem, shape),
            data: None,
        }
    }

    /// Known element type, unknown shape.
    pub fn elem(elem: i32) -> Self {
        Out {
            ty: ValueType { elem, shape: None },
            data: None,
        }
    }

    pub fn of(ty: ValueType) -> Self {
        Out { ty, data: None }
    }

    pub fn with_data(mut self, data: Option<Vec<Dim>>) -> Self {
        self.data = data;
        self
    }
}

pub(crate) type RuleResult = Result<Vec<Out>, String>;

pub(crate) const INT64: i32 = DataType::Int64 as i32;
pub(crate) const BOOL: i32 = DataType::Bool as i32;
pub(crate) const FLOAT: i32 = DataType::Float as i32;
pub(crate) const FLOAT16: i32 = DataType::Float16 as i32;

/// Runs the rule for `node`'s op.
pub(crate) fn infer(node: &NodeProto, opset: i64, inf: &Inference) -> RuleResult {
    let cx = NodeCx { node, opset, inf };
    if node.domain() == crate::ocr::DOMAIN {
        return ocr::rule(&cx);
    }
    let op = node.op_type();
    if let Some(r) = elementwise::rule(&cx, op) {
        return r;
    }
    if let Some(r) = array::rule(&cx, op) {
        return r;
    }
    if let Some(r) = nn::rule(&cx, op) {
        return r;
    }
    match op {
        "Resize" | "Upsample" => resize::resize(&cx),
        _ => Ok(Vec::new()),
    }
}

/// What a rule sees of its node.
pub(crate) struct NodeCx<'a> {
    pub node: &'a NodeProto,
    pub opset: i64,
    inf: &'a Inference,
}

impl<'a> NodeCx<'a> {
    /// The name of input `i`, when present.
    fn name(&self, i: usize) -> Option<&'a str> {
        self.node
            .input
            .get(i)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }

    pub fn has(&self, i: usize) -> bool {
        self.name(i).is_some()
    }

    /// Number of inputs, trailing absent ones included.
    pub fn n_inputs(&self) -> usize {
        self.node.input.len()
    }

    pub fn ty(&self, i: usize) -> Option<&'a ValueType> {
        self.inf.types.get(self.name(i)?)
    }

    /// Element type of input `i` (0 when unknown).
    pub fn elem(&self, i: usize) -> i32 {
        self.ty(i).map_or(0, |t| t.elem)
    }

    pub fn shape(&self, i: usize) -> Option<&'a [Dim]> {
        self.ty(i)?.shape.as_deref()
    }

    pub fn rank(&self, i: usize) -> Option<usize> {
        self.shape(i).map(<[Dim]>::len)
    }

    /// Contents of a shape-like input.
    pub fn data(&self, i: usize) -> Option<&'a [Dim]> {
        self.inf.data.get(self.name(i)?).map(Vec::as_slice)
    }

    /// A fully known input.
    pub fn konst(&self, i: usize) -> Option<&'a Tensor> {
        self.inf.consts.get(self.name(i)?)
    }

    /// The integers of an input known in full (axes, pads, starts).
    pub fn ints(&self, i: usize) -> Option<Vec<i64>> {
        if let Some(d) = self.data(i) {
            return d.iter().map(Dim::known).collect();
        }
        self.konst(i)?.as_i64s()
    }

    /// The values of a known float input (scales).
    pub fn floats(&self, i: usize) -> Option<Vec<f32>> {
        let t = self.konst(i)?;
        is_float(t).then(|| t.as_f32s())
    }

    pub fn attr_i(&self, name: &str) -> Result<Option<i64>, String> {
        kernels::attr_i(self.node, name)
    }

    pub fn attr_ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        kernels::attr_ints(self.node, name)
    }

    pub fn attr_s(&self, name: &str) -> Result<Option<String>, String> {
        kernels::attr_s(self.node, name)
    }

    /// Same as input `i`: element type and shape.
    pub fn same_as(&self, i: usize) -> Out {
        Out::of(self.ty(i).cloned().unwrap_or_default())
    }
}

/// Resolves a possibly negative axis against `rank`.
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize, String> {
    kernels::norm_axis(a, rank).map_err(|e| e.to_string())
}

fn is_float(t: &Tensor) -> bool {
    matches!(
        t.dtype(),
        DataType::Float | DataType::Double | DataType::Float16 | DataType::Bfloat16
    )
}
