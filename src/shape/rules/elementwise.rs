//! Elementwise ops: the output has the (broadcast) shape of the inputs. Unary math, binary and
//! variadic arithmetic, comparisons, Where, Cast, Clip, Dropout, Q/DQ. Add/Sub/Mul/Div also
//! propagate shape-like contents (`Mul(Gather(Shape(x), 2), 2)`).

use super::super::dim::broadcast_shapes;
use super::{NodeCx, Out, RuleResult, BOOL, FLOAT, INT64};
use crate::onnx::proto::tensor_proto::DataType;
use crate::shape::Dim;

const SAME_TYPE_UNARY: &[&str] = &[
    "Identity",
    "Relu",
    "Sigmoid",
    "Tanh",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Mish",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Erf",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Not",
    "BitwiseNot",
    "Clip",
    "Shrink",
    "ThresholdedRelu",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
    "LRN",
    "MeanVarianceNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "Trilu",
];

const SAME_TYPE_BINARY: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Mod",
    "PRelu",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
];

const VARIADIC: &[&str] = &["Min", "Max", "Sum", "Mean"];

const TO_BOOL: &[&str] = &[
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
];

pub(super) fn rule(cx: &NodeCx, op: &str) -> Option<RuleResult> {
    Some(match op {
        _ if SAME_TYPE_UNARY.contains(&op) => unary(cx, op),
        _ if SAME_TYPE_BINARY.contains(&op) => binary(cx, op, true),
        "Pow" => binary(cx, op, false),
        _ if VARIADIC.contains(&op) => variadic(cx, op),
        _ if TO_BOOL.contains(&op) => compare(cx),
        "IsNaN" | "IsInf" => Ok(vec![Out::of(cx.same_as(0).ty).retype(BOOL)]),
        "Where" => where_(cx),
        "Cast" => cast(cx),
        "CastLike" => Ok(vec![cx.same_as(0).retype(cx.elem(1))]),
        "Dropout" => dropout(cx),
        "QuantizeLinear" => quantize(cx),
        "DequantizeLinear" => dequantize(cx),
        _ => return None,
    })
}

impl Out {
    fn retype(mut self, elem: i32) -> Self {
        self.ty.elem = elem;
        self
    }
}

fn unary(cx: &NodeCx, op: &str) -> RuleResult {
    let out = cx.same_as(0);
    // LayerNormalization's optional Mean/InvStdDev outputs have other shapes; only Y is inferred.
    let data = if op == "Identity" {
        cx.data(0).map(<[Dim]>::to_vec)
    } else {
        None
    };
    Ok(vec![out.with_data(data)])
}

/// The broadcast shape of inputs `ids`, `None` when one of them has no known rank.
fn broadcast(cx: &NodeCx, ids: impl Iterator<Item = usize>) -> Result<Option<Vec<Dim>>, String> {
    let mut shapes = Vec::new();
    for i in ids.filter(|&i| cx.has(i)) {
        match cx.shape(i) {
            Some(s) => shapes.push(s),
            None => return Ok(None),
        }
    }
    broadcast_shapes(&shapes).map(Some)
}

/// Both inputs must agree on their element type (when `same_type`), and on their shapes by
/// broadcasting.
fn check_types(cx: &NodeCx, ids: &[usize]) -> Result<i32, String> {
    let mut elem = 0;
    for &i in ids {
        match (elem, cx.elem(i)) {
            (_, 0) => {}
            (0, e) => elem = e,
            (a, b) if a != b => {
                return Err(format!("inputs have different element types ({a} and {b})"))
            }
            _ => {}
        }
    }
    Ok(elem)
}

fn binary(cx: &NodeCx, op: &str, same_type: bool) -> RuleResult {
    let elem = if same_type {
        check_types(cx, &[0, 1])?
    } else {
        cx.elem(0)
    };
    let shape = broadcast(cx, 0..2)?;
    let data = match (op, cx.data(0), cx.data(1), &shape) {
        ("Add" | "Sub" | "Mul" | "Div", Some(a), Some(b), Some(s)) if s.len() <= 1 => {
            arith(op, a, b)
        }
        _ => None,
    };
    let ty = crate::shape::ValueType { elem, shape };
    Ok(vec![Out::of(ty).with_data(data)])
}

/// Shape arithmetic on contents, elementwise with a length-1 side broadcast.
fn arith(op: &str, a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let n = a.len().max(b.len());
    if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
        return None;
    }
    (0..n)
        .map(|i| {
            let (x, y) = (&a[i.min(a.len() - 1)], &b[i.min(b.len() - 1)]);
            match op {
                "Add" => Some(x.add(y)),
                "Sub" => Some(x.sub(y)),
                "Mul" => Some(x.mul(y)),
                _ => x.div_trunc(y),
            }
        })
        .collect()
}

fn variadic(cx: &NodeCx, _op: &str) -> RuleResult {
    let ids: Vec<usize> = (0..cx.n_inputs()).collect();
    let elem = check_types(cx, &ids)?;
    let shape = broadcast(cx, ids.into_iter())?;
    Ok(vec![Out::of(crate::shape::ValueType { elem, shape })])
}

fn compare(cx: &NodeCx) -> RuleResult {
    check_types(cx, &[0, 1])?;
    let shape = broadcast(cx, 0..2)?;
    Ok(vec![Out::of(crate::shape::ValueType { elem: BOOL, shape })])
}

fn where_(cx: &NodeCx) -> RuleResult {
    if cx.elem(0) != 0 && cx.elem(0) != BOOL {
        return Err("the condition must be bool".into());
    }
    let elem = check_types(cx, &[1, 2])?;
    let shape = broadcast(cx, 0..3)?;
    Ok(vec![Out::of(crate::shape::ValueType { elem, shape })])
}

fn cast(cx: &NodeCx) -> RuleResult {
    let to = cx.attr_i("to")?.ok_or("attribute 'to' is required")?;
    let to = i32::try_from(to).map_err(|_| format!("unknown data type {to}"))?;
    let is_int = |e: i32| e == INT64 || e == DataType::Int32 as i32;
    // Integer to integer keeps shape-like contents (the exporters' Cast(Concat(...), to=int64)).
    let data = (is_int(cx.elem(0)) && is_int(to))
        .then(|| cx.data(0).map(<[Dim]>::to_vec))
        .flatten();
    Ok(vec![cx.same_as(0).retype(to).with_data(data)])
}

/// Dropout: the output as the input; the optional mask is bool of the same shape.
fn dropout(cx: &NodeCx) -> RuleResult {
    let out = cx.same_as(0);
    let mask = Out::of(out.ty.clone()).retype(BOOL);
    Ok(vec![out.with_data(cx.data(0).map(<[Dim]>::to_vec)), mask])
}

/// QuantizeLinear: the zero point's type, else `output_dtype` (opset 21), else uint8.
fn quantize(cx: &NodeCx) -> RuleResult {
    let elem = if cx.has(2) {
        cx.elem(2)
    } else {
        match cx.attr_i("output_dtype")? {
            Some(t) if t != 0 && cx.opset >= 21 => t as i32,
            _ => DataType::Uint8 as i32,
        }
    };
    Ok(vec![cx.same_as(0).retype(elem)])
}

/// DequantizeLinear: float before opset 19, the scale's type since.
fn dequantize(cx: &NodeCx) -> RuleResult {
    let elem = if cx.opset >= 19 { cx.elem(1) } else { FLOAT };
    Ok(vec![cx.same_as(0).retype(elem)])
}
