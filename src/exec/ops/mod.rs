//! Op kernels on [`Tensor`]s: one file per op family, each evaluating ONNX semantics exactly,
//! including the differences between opsets. Whatever a kernel does not support it refuses with an
//! [`OpError`] rather than guessing, so that a caller (the constant folder) can leave the node
//! alone.

mod argmax;
mod arith;
mod array;
mod blas;
mod broadcast;
mod cast;
mod clip;
mod constant;
mod conv;
mod elem;
mod fastpath;
mod float;
mod matmul;
mod norm;
mod ocr;
mod par;
mod pool;
mod quant;
mod range;
mod reduce;
mod reshape;
mod resize;
mod shape;
mod softmax;
mod transpose;
mod window;

pub use array::{slice_axis, slice_plan, transpose_perm, SliceAxis};
pub use blas::Float;
pub use broadcast::broadcast_shapes;
#[cfg(target_arch = "x86_64")]
pub use conv::avx2;
pub use conv::winograd;
pub use conv::{
    conv2d, conv2d_planes, conv2d_portable, conv2d_with_tile, default_tile, f32_kernels, planes,
    planes_of_parts, ConcatConvError, Conv2d, ConvFloat, F32Kernels,
};
pub use elem::{Elem, Num};
pub use fastpath::{add_in_place, relu_in_place};
pub(crate) use fastpath::{add_in_place_half, relu_in_place_half};
pub use reshape::{flatten_axis, reshape_dims, squeeze_dims, unsqueeze_dims};
pub use shape::shape_range;
pub use window::{Axis, Window};

use crate::onnx::proto::{AttributeProto, NodeProto, TensorProto};
use crate::tensor::Tensor;

/// Why a kernel did not produce outputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// The op, one of its attributes, or an element type is not implemented here; the node is fine.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The node or its inputs break the op's contract (wrong types, shapes that do not fit).
    #[error("{0}")]
    Invalid(String),
}

impl OpError {
    pub fn unsupported(msg: impl Into<String>) -> Self {
        OpError::Unsupported(msg.into())
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        OpError::Invalid(msg.into())
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// Ops that [`eval`] knows, in the default domain.
pub const SUPPORTED: &[&str] = &[
    "Shape",
    "Size",
    "ConstantOfShape", // shape.rs
    "Gather",
    "Concat",
    "Slice",
    "Transpose",
    "Expand", // array.rs
    "Reshape",
    "Unsqueeze",
    "Squeeze",
    "Flatten",
    "Identity", // reshape.rs
    "Cast",
    "CastLike", // cast.rs
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Min",
    "Max",
    "Sum",
    "Mean", // arith.rs: arithmetic
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "Where",
    "Neg",
    "Abs",
    "Floor",
    "Ceil",
    "Round",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Sign",
    "Range",    // range.rs
    "Constant", // constant.rs
    "Conv",     // conv/
    "MatMul",
    "Gemm", // matmul.rs
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool", // pool.rs
    "Resize",
    "Upsample", // resize.rs
    "Softmax",
    "LogSoftmax", // softmax.rs
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd", // reduce.rs
    "ArgMax",
    "ArgMin", // argmax.rs
    "BatchNormalization",
    "Dropout", // norm.rs
    "QuantizeLinear",
    "DequantizeLinear", // quant.rs
    "Clip",             // clip.rs
];

/// Whether [`eval`] implements `op_type` (of the default domain) at all; it may still refuse a node
/// for an attribute or an element type.
pub fn supports(op_type: &str) -> bool {
    SUPPORTED.contains(&op_type)
}

/// Whether [`eval`] implements this node's op in its domain (the default domain's [`SUPPORTED`] ops, and
/// the fused OCR ops of domain `ocrnet`); `Err` says why not.
pub fn check_node(node: &NodeProto) -> Result<(), String> {
    match node.domain() {
        "" | "ai.onnx" if supports(node.op_type()) => Ok(()),
        "" | "ai.onnx" => Err("no kernel for this op".into()),
        crate::ocr::DOMAIN => crate::ocr::OcrNode::parse(node).map(|_| ()),
        d => Err(format!("no kernels for domain '{d}'")),
    }
}

/// Evaluates one node. `inputs` follows `node.input`: `None` where an optional input is absent (an
/// empty name). `opset` is the model's default-domain opset version, which picks the op's
/// semantics.
pub fn eval(node: &NodeProto, inputs: &[Option<&Tensor>], opset: i64) -> OpResult<Vec<Tensor>> {
    let cx = Ctx {
        node,
        inputs,
        opset,
    };
    let one = |t: OpResult<Tensor>| t.map(|t| vec![t]);
    match node.domain() {
        "" | "ai.onnx" => {}
        crate::ocr::DOMAIN => return one(ocr::eval(&cx)),
        d => return Err(OpError::unsupported(format!("domain '{d}'"))),
    }
    match node.op_type() {
        "Shape" => one(shape::shape(&cx)),
        "Size" => one(shape::size(&cx)),
        "ConstantOfShape" => one(shape::constant_of_shape(&cx)),
        "Gather" => one(array::gather(&cx)),
        "Concat" => one(array::concat(&cx)),
        "Slice" => one(array::slice(&cx)),
        "Transpose" => one(array::transpose(&cx)),
        "Expand" => one(array::expand(&cx)),
        "Reshape" => one(reshape::reshape(&cx)),
        "Unsqueeze" => one(reshape::unsqueeze(&cx)),
        "Squeeze" => one(reshape::squeeze(&cx)),
        "Flatten" => one(reshape::flatten(&cx)),
        "Identity" => one(cx.input(0).cloned()),
        "Cast" => one(cast::cast(&cx)),
        "CastLike" => one(cast::cast_like(&cx)),
        "Range" => one(range::range(&cx)),
        "Constant" => one(constant::constant(&cx)),
        "Conv" => one(conv::conv(&cx)),
        "MatMul" => one(matmul::matmul(&cx)),
        "Gemm" => one(matmul::gemm_op(&cx)),
        "MaxPool" => pool::pool(&cx, true),
        "AveragePool" => pool::pool(&cx, false),
        "GlobalAveragePool" => one(pool::global_pool(&cx, false)),
        "GlobalMaxPool" => one(pool::global_pool(&cx, true)),
        "Resize" | "Upsample" => one(resize::resize(&cx)),
        "Softmax" => one(softmax::softmax(&cx, false)),
        "LogSoftmax" => one(softmax::softmax(&cx, true)),
        "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceSum" | "ReduceProd" => {
            one(reduce::reduce(&cx, node.op_type()))
        }
        "ArgMax" => one(argmax::arg(&cx, true)),
        "ArgMin" => one(argmax::arg(&cx, false)),
        "BatchNormalization" => one(norm::batch_norm(&cx)),
        "Dropout" => norm::dropout(&cx),
        "QuantizeLinear" => one(quant::quantize(&cx)),
        "DequantizeLinear" => one(quant::dequantize(&cx)),
        "Clip" => one(clip::clip(&cx)),
        op => arith::eval(&cx, op),
    }
}

/// Conv followed by Relu in one pass: what the executor runs for a Conv whose only reader is a Relu.
/// Same numbers as the two nodes one after the other.
pub fn eval_conv_relu(
    node: &NodeProto,
    inputs: &[Option<&Tensor>],
    opset: i64,
) -> OpResult<Vec<Tensor>> {
    if node.op_type() != "Conv" || !matches!(node.domain(), "" | "ai.onnx") {
        return Err(OpError::invalid("only a Conv can take a fused Relu"));
    }
    let cx = Ctx {
        node,
        inputs,
        opset,
    };
    conv::conv_act(&cx, true).map(|t| vec![t])
}

/// The Conv `conv` (then Relu when `relu`) on the output of the Concat `concat`, which it reads in
/// place when it can (a channel Concat of float NCHW tensors): what the executor runs for a Concat
/// that only Convs read. `inputs` are `concat`'s, then `conv`'s after its first. Same numbers as the
/// two nodes one after the other; an error says which node it is about.
pub fn eval_concat_conv(
    concat: &NodeProto,
    conv: &NodeProto,
    inputs: &[Option<&Tensor>],
    relu: bool,
    opset: i64,
) -> Result<Vec<Tensor>, ConcatConvError> {
    let default = |n: &NodeProto| matches!(n.domain(), "" | "ai.onnx");
    if concat.op_type() != "Concat"
        || conv.op_type() != "Conv"
        || !default(concat)
        || !default(conv)
    {
        return Err(ConcatConvError::Conv(OpError::invalid(
            "only a Conv can read a Concat in place",
        )));
    }
    let nc = concat.input.len().min(inputs.len());
    let conv_inputs: Vec<Option<&Tensor>> = std::iter::once(None)
        .chain(inputs[nc..].iter().copied())
        .collect();
    let concat_cx = Ctx {
        node: concat,
        inputs: &inputs[..nc],
        opset,
    };
    let conv_cx = Ctx {
        node: conv,
        inputs: &conv_inputs,
        opset,
    };
    conv::concat_conv(&concat_cx, &conv_cx, relu).map(|t| vec![t])
}

/// QuantizeLinear `q` and the DequantizeLinear `dq` that alone reads its output, in one pass: what the
/// executor runs for a simulated INT8 activation. `inputs` are `q`'s, then `dq`'s after its first. Same
/// numbers as the two nodes one after the other.
pub fn eval_quantize_dequantize(
    q: &NodeProto,
    dq: &NodeProto,
    inputs: &[Option<&Tensor>],
    opset: i64,
) -> OpResult<Vec<Tensor>> {
    let default = |n: &NodeProto| matches!(n.domain(), "" | "ai.onnx");
    if q.op_type() != "QuantizeLinear"
        || dq.op_type() != "DequantizeLinear"
        || !default(q)
        || !default(dq)
    {
        return Err(OpError::invalid(
            "only a QuantizeLinear can take a fused DequantizeLinear",
        ));
    }
    let nq = q.input.len().min(inputs.len());
    let dq_inputs: Vec<Option<&Tensor>> = std::iter::once(None)
        .chain(inputs[nq..].iter().copied())
        .collect();
    let qcx = Ctx {
        node: q,
        inputs: &inputs[..nq],
        opset,
    };
    let dqcx = Ctx {
        node: dq,
        inputs: &dq_inputs,
        opset,
    };
    quant::quantize_dequantize(&qcx, &dqcx).map(|t| vec![t])
}

/// What a kernel sees of its node.
pub(crate) struct Ctx<'a> {
    pub node: &'a NodeProto,
    pub inputs: &'a [Option<&'a Tensor>],
    pub opset: i64,
}

impl<'a> Ctx<'a> {
    /// A required input.
    pub fn input(&self, i: usize) -> OpResult<&'a Tensor> {
        self.opt_input(i)
            .ok_or_else(|| OpError::invalid(format!("input {i} is required")))
    }

    /// An optional input: absent when past the end or named "".
    pub fn opt_input(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).copied().flatten()
    }

    pub fn attr(&self, name: &str) -> Option<&'a AttributeProto> {
        crate::onnx::graph::attr(self.node, name)
    }

    pub fn attr_i(&self, name: &str) -> OpResult<Option<i64>> {
        attr_i(self.node, name).map_err(OpError::invalid)
    }

    pub fn attr_ints(&self, name: &str) -> OpResult<Option<Vec<i64>>> {
        attr_ints(self.node, name).map_err(OpError::invalid)
    }

    pub fn attr_t(&self, name: &str) -> OpResult<Option<&'a TensorProto>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| OpError::invalid(format!("attribute '{name}' is not a tensor")))
            }
        }
    }

    /// The integers of a 1-D (or 0-D) integer input, for axes, shapes, starts and ends.
    pub fn ints_input(&self, i: usize) -> OpResult<Option<Vec<i64>>> {
        let Some(t) = self.opt_input(i) else {
            return Ok(None);
        };
        if t.shape.len() > 1 {
            return Err(OpError::invalid(format!(
                "input {i} must be 0-D or 1-D, is {:?}",
                t.shape
            )));
        }
        t.as_i64s().map(Some).ok_or_else(|| {
            OpError::invalid(format!("input {i} must be integer, is {:?}", t.dtype()))
        })
    }
}

/// An INT attribute; `Err` with a reason when present with another type.
pub fn attr_i(node: &NodeProto, name: &str) -> Result<Option<i64>, String> {
    match crate::onnx::graph::attr(node, name) {
        None => Ok(None),
        Some(a) => {
            a.i.map(Some)
                .ok_or_else(|| format!("attribute '{name}' is not an int"))
        }
    }
}

/// An INTS attribute (an INT is accepted as a one-element list, as some exporters write it).
pub fn attr_ints(node: &NodeProto, name: &str) -> Result<Option<Vec<i64>>, String> {
    match crate::onnx::graph::attr(node, name) {
        None => Ok(None),
        Some(a) if !a.ints.is_empty() => Ok(Some(a.ints.clone())),
        Some(a) => match a.i {
            Some(i) => Ok(Some(vec![i])),
            // An empty INTS attribute is encoded as no values at all.
            None => Ok(Some(Vec::new())),
        },
    }
}

/// A STRING attribute as UTF-8.
pub fn attr_s(node: &NodeProto, name: &str) -> Result<Option<String>, String> {
    match crate::onnx::graph::attr(node, name) {
        None => Ok(None),
        Some(a) => match &a.s {
            Some(s) => String::from_utf8(s.to_vec())
                .map(Some)
                .map_err(|_| format!("attribute '{name}' is not UTF-8")),
            None => Err(format!("attribute '{name}' is not a string")),
        },
    }
}

/// Resolves a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(OpError::invalid(format!(
            "axis {axis} is out of range for rank {rank}"
        )))
    }
}

/// The most elements one tensor may have: 2^32, 16 GiB as f32, about 45 times the largest activation of
/// HRNet-W48-OCR at 1024x2048. A shape computed from data (ConstantOfShape, Expand, Resize, broadcasting,
/// window pads) can ask for any size; over this it is an error naming the node, where the allocation would
/// otherwise abort the process or panic ("capacity overflow").
pub const MAX_ELEMENTS: usize = 1 << 32;

/// Element count of a shape, refusing overflow and counts over [`MAX_ELEMENTS`].
pub fn numel(shape: &[usize]) -> OpResult<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| OpError::invalid(format!("shape {shape:?} has too many elements")))?;
    if n > MAX_ELEMENTS {
        return Err(OpError::invalid(format!(
            "shape {shape:?} has {n} elements, over the executor's limit of 2^32"
        )));
    }
    Ok(n)
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// A new tensor whose element `i` is `t`'s element `index[i]`: the one primitive every data-moving
/// op (Gather, Slice, Transpose, Expand) reduces to.
pub(crate) fn take(t: &Tensor, shape: Vec<usize>, index: &[usize]) -> Tensor {
    debug_assert_eq!(shape.iter().product::<usize>(), index.len());
    Tensor {
        shape,
        data: crate::map_data!(&t.data, v => index.iter().map(|&i| v[i]).collect()),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::onnx::proto::{AttributeProto, NodeProto, TensorProto};
    use crate::tensor::{Data, Tensor};

    pub fn node(op: &str, n_inputs: usize, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("test_{op}")),
            input: (0..n_inputs).map(|i| format!("in{i}")).collect(),
            output: vec!["out".into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(2),
            i: Some(v),
            ..Default::default()
        }
    }

    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(7),
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(3),
            s: Some(v.as_bytes().to_vec().into()),
            ..Default::default()
        }
    }

    pub fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(1),
            f: Some(v),
            ..Default::default()
        }
    }

    pub fn floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(6),
            floats: v.to_vec(),
            ..Default::default()
        }
    }

    pub fn tensor(name: &str, t: TensorProto) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(4),
            t: Some(t),
            ..Default::default()
        }
    }

    pub fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::new(shape.to_vec(), Data::I64(v.to_vec())).unwrap()
    }

    pub fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), Data::F32(v.to_vec())).unwrap()
    }

    /// Deterministic values in [-1, 1).
    pub fn noise(n: usize, seed: u64) -> Vec<f32> {
        let step = |s: u64| {
            s.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
        };
        let mut s = step(seed);
        (0..n)
            .map(|_| {
                s = step(s);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// ‖got − want‖₂ / ‖want‖₂, in f64.
    pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
        assert_eq!(got.len(), want.len(), "lengths differ");
        let (mut num, mut den) = (0f64, 0f64);
        for (&g, &w) in got.iter().zip(want) {
            num += (g as f64 - w as f64).powi(2);
            den += (w as f64).powi(2);
        }
        (num / den.max(1e-30)).sqrt()
    }

    /// Runs a one-output node on present inputs.
    pub fn run(node: &NodeProto, inputs: &[&Tensor], opset: i64) -> Result<Tensor, super::OpError> {
        let ins: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
        super::eval(node, &ins, opset).map(|mut v| v.remove(0))
    }
}
