// A structure-aware generator of small ONNX graphs; fuzz/graphcheck.rs holds the checks each must pass.
// `include!`d by fuzz/fuzz_targets/graphs.rs (bytes from libFuzzer) and tests/fuzz_corpus.rs (bytes from a
// fixed pseudo-random stream, so `cargo test` checks thousands of graphs on stable). Needs the crate
// `ocrnet_edge`. (Plain comments: this file is included.)
//
// The bytes pick an opset, an input shape (some dims symbolic), then up to 14 nodes, each drawn from 55
// ops with inputs taken from earlier values or new constants (initializers or Constant nodes) and
// attributes drawn near the edges (negative axes, clamped slice bounds, 1-sized dims to broadcast). A node
// joins the graph only when the executor's op evaluates it on the probe input, so the graph is valid by
// construction and every value's real contents are known. The checks are then oracles independent of the
// passes under test:
// - the executor's plan (fused Conv+Relu, in-place Add, Concat read by Convs) gives the same bits as the ops
//   evaluated one by one;
// - `simplify` (cleanup, constant folding, shape inference) succeeds and the simplified graph gives the
//   same bits on the same input;
// - every dimension shape inference writes as a number is the real one.

struct GenBytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl GenBytes<'_> {
    // Zeros once the bytes run out: the graph just stops growing interesting.
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        (u16::from_le_bytes([self.byte(), self.byte()]) as usize) % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn coin(&mut self) -> bool {
        self.byte() & 1 == 1
    }
    fn exhausted(&self) -> bool {
        self.at >= self.data.len()
    }
}

const GEN_OPS: &[&str] = &[
    "Relu",
    "Sigmoid",
    "Tanh",
    "Neg",
    "Abs",
    "Floor",
    "Sqrt",
    "Exp",
    "Reciprocal",
    "Identity",
    "Dropout",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Pow",
    "Greater",
    "Equal",
    "Where",
    "Shape",
    "Size",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Reshape",
    "Transpose",
    "Slice",
    "Flatten",
    "Expand",
    "ConstantOfShape",
    "Range",
    "Cast",
    "ReduceMean",
    "ReduceSum",
    "Softmax",
    "LogSoftmax",
    "Gemm",
    "Min",
    "Sum",
    "Mean",
    "ReduceMax",
    "ArgMax",
    "MatMul",
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Resize",
    "Clip",
    "BatchNormalization",
    "Constant",
    "QuantizeLinear",
    "DequantizeLinear",
];

struct GenGraph {
    opset: i64,
    // Every value so far, by name, with its contents under the probe input.
    values: Vec<(String, ocrnet_edge::tensor::Tensor)>,
    nodes: Vec<ocrnet_edge::onnx::proto::NodeProto>,
    initializers: Vec<ocrnet_edge::onnx::proto::TensorProto>,
    // Constants of the node being built: (name, tensor, as a Constant node rather than an initializer).
    pending: Vec<(String, ocrnet_edge::tensor::Tensor, bool)>,
    count: usize,
}

impl GenGraph {
    fn fresh(&mut self, what: &str) -> String {
        self.count += 1;
        format!("{what}{}", self.count)
    }
    fn constant(&mut self, g: &mut GenBytes, t: ocrnet_edge::tensor::Tensor) -> String {
        let name = self.fresh("c");
        let as_node = g.coin();
        self.pending.push((name.clone(), t, as_node));
        name
    }
    fn i64s(&mut self, g: &mut GenBytes, v: Vec<i64>) -> String {
        let t = ocrnet_edge::tensor::Tensor::new(vec![v.len()], ocrnet_edge::tensor::Data::I64(v))
            .expect("sized");
        self.constant(g, t)
    }
    fn f32s(&mut self, g: &mut GenBytes, shape: Vec<usize>) -> String {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|_| (g.byte() as i32 - 128) as f32 / 32.0)
            .collect();
        let t = ocrnet_edge::tensor::Tensor::new(shape, ocrnet_edge::tensor::Data::F32(v))
            .expect("sized");
        self.constant(g, t)
    }
    // An earlier value of element type f32 (or i64 when `ints`), preferring recent ones.
    fn value(&self, g: &mut GenBytes, ints: bool) -> Option<usize> {
        let want = |t: &ocrnet_edge::tensor::Tensor| {
            matches!(
                (&t.data, ints),
                (ocrnet_edge::tensor::Data::F32(_), false)
                    | (ocrnet_edge::tensor::Data::I64(_), true)
            )
        };
        let fits: Vec<usize> = (0..self.values.len())
            .filter(|&i| want(&self.values[i].1))
            .collect();
        if fits.is_empty() {
            return None;
        }
        let back = g.below(fits.len().min(4));
        Some(fits[fits.len() - 1 - back])
    }
    // An earlier f32 value, or an i64 one once in `one_in` draws.
    fn value_either(&self, g: &mut GenBytes, one_in: usize) -> Option<usize> {
        let ints = g.below(one_in) == 0;
        self.value(g, ints)
    }
    fn shape(&self, i: usize) -> Vec<usize> {
        self.values[i].1.shape.clone()
    }
}

fn gen_attr_int(name: &str, v: i64) -> ocrnet_edge::onnx::proto::AttributeProto {
    use ocrnet_edge::onnx::proto::{attribute_proto::AttributeType, AttributeProto};
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(AttributeType::Int as i32),
        ..Default::default()
    }
}

fn gen_attr_ints(name: &str, v: Vec<i64>) -> ocrnet_edge::onnx::proto::AttributeProto {
    use ocrnet_edge::onnx::proto::{attribute_proto::AttributeType, AttributeProto};
    AttributeProto {
        name: Some(name.into()),
        ints: v,
        r#type: Some(AttributeType::Ints as i32),
        ..Default::default()
    }
}

fn gen_attr_str(name: &str, v: &str) -> ocrnet_edge::onnx::proto::AttributeProto {
    use ocrnet_edge::onnx::proto::{attribute_proto::AttributeType, AttributeProto};
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec().into()),
        r#type: Some(AttributeType::String as i32),
        ..Default::default()
    }
}

fn gen_attr_tensor(
    name: &str,
    t: ocrnet_edge::onnx::proto::TensorProto,
) -> ocrnet_edge::onnx::proto::AttributeProto {
    use ocrnet_edge::onnx::proto::{attribute_proto::AttributeType, AttributeProto};
    AttributeProto {
        name: Some(name.into()),
        t: Some(t),
        r#type: Some(AttributeType::Tensor as i32),
        ..Default::default()
    }
}

// An axis of a rank-`r` tensor, negative half the time.
fn gen_axis(g: &mut GenBytes, r: usize) -> i64 {
    let a = g.below(r.max(1)) as i64;
    if g.coin() {
        a - r as i64
    } else {
        a
    }
}

// An axis of a tensor of shape `s` as `gen_axis` draws it, with that axis's size; `None` for a scalar.
fn gen_axis_of(g: &mut GenBytes, s: &[usize]) -> Option<(i64, usize)> {
    if s.is_empty() {
        return None;
    }
    let axis = gen_axis(g, s.len());
    Some((axis, s[axis.rem_euclid(s.len() as i64) as usize]))
}

// One candidate node for `op` (inputs, attributes); `None` when the graph has nothing it could read.
fn gen_node(
    g: &mut GenBytes,
    gg: &mut GenGraph,
    op: &str,
) -> Option<ocrnet_edge::onnx::proto::NodeProto> {
    use ocrnet_edge::tensor::{Data, Tensor};
    let mut attrs = Vec::new();
    let mut inputs: Vec<String> = Vec::new();
    let name_of = |gg: &GenGraph, i: usize| gg.values[i].0.clone();
    match op {
        "Relu" | "Sigmoid" | "Tanh" | "Neg" | "Abs" | "Floor" | "Sqrt" | "Exp" | "Reciprocal"
        | "Identity" | "Dropout" | "Softmax" | "LogSoftmax" | "GlobalAveragePool" => {
            let x = gg.value(g, false)?;
            inputs.push(name_of(gg, x));
            if op.ends_with("Softmax") {
                attrs.push(gen_attr_int("axis", gen_axis(g, gg.shape(x).len())));
            }
        }
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Sum" | "Mean" | "Pow" | "Greater"
        | "Equal" => {
            let ints = !matches!(op, "Pow") && g.below(4) == 0;
            let a = gg.value(g, ints)?;
            inputs.push(name_of(gg, a));
            // Sum, Mean, Max and Min are variadic: one to four inputs, all broadcasting together.
            let count = match op {
                "Max" | "Min" | "Sum" | "Mean" if g.below(3) == 0 => g.pick(&[1, 3, 4]),
                _ => 2,
            };
            for _ in 1..count {
                if g.coin() {
                    let b = gg.value(g, ints)?;
                    inputs.push(name_of(gg, b));
                    continue;
                }
                // A constant the first input broadcasts with: a suffix of its shape, some dims 1.
                let s = gg.shape(a);
                let keep = g.below(s.len() + 1);
                let shape: Vec<usize> = s[s.len() - keep..]
                    .iter()
                    .map(|&d| if g.coin() { d } else { 1 })
                    .collect();
                let c = if ints {
                    let n = shape.iter().product();
                    let v = (0..n).map(|_| g.below(5) as i64 + 1).collect();
                    gg.constant(g, Tensor::new(shape, Data::I64(v)).expect("sized"))
                } else {
                    gg.f32s(g, shape)
                };
                inputs.push(c);
            }
            if inputs.len() > 1 && g.coin() {
                inputs.swap(0, 1);
            }
        }
        "Where" => {
            let a = gg.value(g, false)?;
            let s = gg.shape(a);
            let n = s.iter().product();
            let cond =
                Tensor::new(s, Data::Bool((0..n).map(|_| g.coin()).collect())).expect("sized");
            let c = gg.constant(g, cond);
            let b = gg.value(g, false)?;
            inputs = vec![c, name_of(gg, a), name_of(gg, b)];
        }
        "Shape" | "Size" => {
            let x = gg.value_either(g, 4)?;
            inputs.push(name_of(gg, x));
            if op == "Shape" && gg.opset >= 15 && g.coin() {
                let r = gg.shape(x).len() as i64;
                attrs.push(gen_attr_int(
                    "start",
                    g.below(2 * r as usize + 1) as i64 - r,
                ));
            }
        }
        "Gather" => {
            let x = gg.value_either(g, 2)?;
            let (axis, d) = gen_axis_of(g, &gg.shape(x))?;
            let d = d.max(1) as i64;
            let idx: Vec<i64> = (0..1 + g.below(3))
                .map(|_| g.below(2 * d as usize) as i64 - d)
                .collect();
            let t = if g.coin() {
                Tensor::scalar_i64(idx[0])
            } else {
                Tensor::new(vec![idx.len()], Data::I64(idx)).expect("sized")
            };
            let c = gg.constant(g, t);
            inputs = vec![name_of(gg, x), c];
            attrs.push(gen_attr_int("axis", axis));
        }
        "Unsqueeze" | "Squeeze" => {
            let x = gg.value_either(g, 2)?;
            let s = gg.shape(x);
            let axes: Vec<i64> = if op == "Unsqueeze" {
                vec![gen_axis(g, s.len() + 1)]
            } else {
                s.iter()
                    .enumerate()
                    .filter(|(_, &d)| d == 1)
                    .map(|(i, _)| i as i64)
                    .take(1 + g.below(2))
                    .collect()
            };
            inputs.push(name_of(gg, x));
            if gg.opset >= 13 {
                if !(op == "Squeeze" && axes.is_empty() && g.coin()) {
                    inputs.push(gg.i64s(g, axes));
                }
            } else {
                attrs.push(gen_attr_ints("axes", axes));
            }
        }
        "Concat" => {
            let ints = g.coin();
            let a = gg.value(g, ints)?;
            let s = gg.shape(a);
            if s.is_empty() {
                return None;
            }
            let axis = gen_axis(g, s.len());
            inputs.push(name_of(gg, a));
            let b = gg.value(g, ints)?;
            if gg.shape(b).len() == s.len() && g.coin() {
                inputs.push(name_of(gg, b));
            } else {
                let mut shape = s.clone();
                shape[axis.rem_euclid(s.len() as i64) as usize] = g.below(3);
                let c = if ints {
                    let n = shape.iter().product();
                    gg.constant(
                        g,
                        Tensor::new(shape, Data::I64((0..n).map(|i| i as i64 - 1).collect()))
                            .expect("sized"),
                    )
                } else {
                    gg.f32s(g, shape)
                };
                inputs.push(c);
            }
            attrs.push(gen_attr_int("axis", axis));
        }
        "Reshape" => {
            let x = gg.value(g, false)?;
            let s = gg.shape(x);
            let n: usize = s.iter().product();
            inputs.push(name_of(gg, x));
            if g.below(3) == 0 {
                // A shape computed in the graph (Shape -> Gather -> Concat chains end here).
                let sh = gg.value(g, true)?;
                inputs.push(name_of(gg, sh));
            } else {
                let dims: Vec<i64> = match g.below(4) {
                    0 => vec![n as i64],
                    1 => vec![-1],
                    2 => s.iter().rev().map(|&d| d as i64).collect(),
                    _ => {
                        let mut d: Vec<i64> = s
                            .iter()
                            .map(|&d| if g.coin() { 0 } else { d as i64 })
                            .collect();
                        if !d.is_empty() {
                            let i = g.below(d.len());
                            d[i] = -1;
                        }
                        d
                    }
                };
                inputs.push(gg.i64s(g, dims));
            }
        }
        "Transpose" => {
            let x = gg.value_either(g, 4)?;
            let r = gg.shape(x).len();
            let mut perm: Vec<i64> = (0..r as i64).collect();
            for i in (1..r).rev() {
                perm.swap(i, g.below(i + 1));
            }
            inputs.push(name_of(gg, x));
            attrs.push(gen_attr_ints("perm", perm));
        }
        "Slice" => {
            let x = gg.value_either(g, 4)?;
            let (axis, d) = gen_axis_of(g, &gg.shape(x))?;
            let d = d as i64;
            let bound = |g: &mut GenBytes| match g.below(6) {
                0 => i64::MAX,
                1 => i64::MIN,
                _ => g.below(2 * d as usize + 3) as i64 - d - 1,
            };
            let (start, end) = (bound(g), bound(g));
            let step = g.pick(&[1i64, 1, 2, -1, -2]);
            inputs.push(name_of(gg, x));
            inputs.push(gg.i64s(g, vec![start]));
            inputs.push(gg.i64s(g, vec![end]));
            inputs.push(gg.i64s(g, vec![axis]));
            if step != 1 || g.coin() {
                inputs.push(gg.i64s(g, vec![step]));
            }
        }
        "Flatten" => {
            let x = gg.value(g, false)?;
            let r = gg.shape(x).len();
            inputs.push(name_of(gg, x));
            attrs.push(gen_attr_int("axis", g.below(r + 1) as i64));
        }
        "Expand" => {
            let x = gg.value_either(g, 4)?;
            let s = gg.shape(x);
            let mut dims: Vec<i64> = s
                .iter()
                .map(|&d| {
                    if d == 1 {
                        g.below(4) as i64
                    } else if g.coin() {
                        1
                    } else {
                        d as i64
                    }
                })
                .collect();
            if g.coin() {
                dims.insert(0, 1 + g.below(2) as i64);
            }
            inputs.push(name_of(gg, x));
            inputs.push(gg.i64s(g, dims));
        }
        "ConstantOfShape" => {
            let sh = gg.value(g, true)?;
            if gg.shape(sh).len() != 1 {
                return None;
            }
            inputs.push(name_of(gg, sh));
            if g.coin() {
                let v = Tensor::new(vec![1], Data::F32(vec![(g.byte() as f32 - 100.0) / 8.0]))
                    .expect("sized");
                attrs.push(gen_attr_tensor("value", v.to_proto("value")));
            }
        }
        "Range" => {
            let (start, delta) = (g.below(7) as i64 - 3, g.pick(&[1i64, 2, -1, 3]));
            let limit = g.below(13) as i64 - 6;
            for v in [start, limit, delta] {
                let c = gg.constant(g, Tensor::scalar_i64(v));
                inputs.push(c);
            }
        }
        "Cast" => {
            let x = gg.value_either(g, 2)?;
            inputs.push(name_of(gg, x));
            // FLOAT, INT64, INT32, BOOL, FLOAT16, DOUBLE
            attrs.push(gen_attr_int("to", g.pick(&[1i64, 7, 6, 9, 10, 11])));
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" => {
            let x = gg.value(g, false)?;
            let r = gg.shape(x).len();
            let axes: Vec<i64> = (0..g.below(r.min(2) + 1)).map(|_| gen_axis(g, r)).collect();
            let mut axes = axes;
            axes.sort_by_key(|a| a.rem_euclid(r.max(1) as i64));
            axes.dedup_by_key(|a| a.rem_euclid(r.max(1) as i64));
            inputs.push(name_of(gg, x));
            let as_input = gg.opset >= 18 || (op == "ReduceSum" && gg.opset >= 13);
            if !axes.is_empty() {
                if as_input {
                    inputs.push(gg.i64s(g, axes));
                } else {
                    attrs.push(gen_attr_ints("axes", axes));
                }
            }
            attrs.push(gen_attr_int("keepdims", g.below(2) as i64));
        }
        "ArgMax" => {
            let x = gg.value(g, false)?;
            let r = gg.shape(x).len();
            inputs.push(name_of(gg, x));
            attrs.push(gen_attr_int("axis", gen_axis(g, r)));
            attrs.push(gen_attr_int("keepdims", g.below(2) as i64));
        }
        "MatMul" => {
            let a = gg.value(g, false)?;
            let s = gg.shape(a);
            let k = *s.last()?;
            inputs.push(name_of(gg, a));
            let n = 1 + g.below(4);
            inputs.push(gg.f32s(g, vec![k, n]));
        }
        "Gemm" => {
            let a = gg.value(g, false)?;
            let s = gg.shape(a);
            if s.len() != 2 {
                return None;
            }
            let (trans_a, trans_b) = (g.coin(), g.coin());
            let k = if trans_a { s[0] } else { s[1] };
            let n = 1 + g.below(4);
            inputs.push(name_of(gg, a));
            inputs.push(gg.f32s(g, if trans_b { vec![n, k] } else { vec![k, n] }));
            if g.coin() {
                let c = if g.coin() { vec![n] } else { vec![1, n] };
                inputs.push(gg.f32s(g, c));
            }
            attrs.push(gen_attr_int("transA", trans_a as i64));
            attrs.push(gen_attr_int("transB", trans_b as i64));
        }
        "Conv" | "MaxPool" | "AveragePool" => {
            let x = gg.value(g, false)?;
            let s = gg.shape(x);
            if s.len() != 4 {
                return None;
            }
            let k = 1 + g.below(3) as i64;
            let stride = 1 + g.below(2) as i64;
            let pad = g.below(k as usize) as i64;
            inputs.push(name_of(gg, x));
            attrs.push(gen_attr_ints("kernel_shape", vec![k, k]));
            attrs.push(gen_attr_ints("strides", vec![stride, stride]));
            attrs.push(gen_attr_ints("pads", vec![pad, pad, pad, pad]));
            if op == "Conv" {
                let (c, m) = (s[1], 1 + g.below(4));
                let depthwise = g.below(4) == 0 && c > 0;
                let (m, group) = if depthwise { (c, c) } else { (m, 1) };
                inputs.push(gg.f32s(g, vec![m, c / group, k as usize, k as usize]));
                if g.coin() {
                    inputs.push(gg.f32s(g, vec![m]));
                }
                attrs.push(gen_attr_int("group", group as i64));
            }
        }
        "Resize" => {
            let x = gg.value(g, false)?;
            let s = gg.shape(x);
            if s.len() != 4 || gg.opset < 11 {
                return None;
            }
            inputs.push(name_of(gg, x));
            inputs.push(String::new());
            let f = g.pick(&[2.0f32, 0.5, 1.5]);
            let t = Tensor::new(vec![4], Data::F32(vec![1.0, 1.0, f, f])).expect("sized");
            inputs.push(gg.constant(g, t));
            attrs.push(gen_attr_str("mode", g.pick(&["nearest", "linear"])));
            attrs.push(gen_attr_str(
                "coordinate_transformation_mode",
                g.pick(&[
                    "half_pixel",
                    "align_corners",
                    "asymmetric",
                    "pytorch_half_pixel",
                ]),
            ));
        }
        "Clip" => {
            let x = gg.value(g, false)?;
            inputs.push(name_of(gg, x));
            if gg.opset >= 11 {
                let lo = Tensor::new(vec![], Data::F32(vec![-1.0])).expect("sized");
                let hi =
                    Tensor::new(vec![], Data::F32(vec![g.byte() as f32 / 64.0])).expect("sized");
                let (lo, hi) = (gg.constant(g, lo), gg.constant(g, hi));
                inputs.push(if g.coin() { lo } else { String::new() });
                inputs.push(hi);
            }
        }
        "BatchNormalization" => {
            let x = gg.value(g, false)?;
            let s = gg.shape(x);
            if s.len() < 2 {
                return None;
            }
            let c = s[1];
            inputs.push(name_of(gg, x));
            for _ in 0..3 {
                inputs.push(gg.f32s(g, vec![c]));
            }
            let var = Tensor::new(
                vec![c],
                Data::F32((0..c).map(|_| 0.25 + g.byte() as f32 / 64.0).collect()),
            )
            .expect("sized");
            inputs.push(gg.constant(g, var));
        }
        "Constant" => {
            let shape: Vec<usize> = (0..g.below(3)).map(|_| 1 + g.below(3)).collect();
            let n = shape.iter().product();
            let t = Tensor::new(shape, Data::F32((0..n).map(|i| i as f32 - 1.5).collect()))
                .expect("sized");
            attrs.push(gen_attr_tensor("value", t.to_proto("value")));
        }
        "QuantizeLinear" | "DequantizeLinear" => gen_quant(g, gg, op, &mut inputs, &mut attrs)?,
        other => unreachable!("{other} is in GEN_OPS but has no builder"),
    }
    let output = gg.fresh("v");
    Some(ocrnet_edge::onnx::proto::NodeProto {
        name: Some(format!("{op}_{output}")),
        op_type: Some(op.into()),
        input: inputs,
        output: vec![output],
        attribute: attrs,
        ..Default::default()
    })
}

fn gen_value_info(
    name: &str,
    t: &ocrnet_edge::tensor::Tensor,
    symbolic: &[bool],
) -> ocrnet_edge::onnx::proto::ValueInfoProto {
    use ocrnet_edge::onnx::proto::{
        tensor_shape_proto, type_proto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    let dim = |i: usize, d: usize| tensor_shape_proto::Dimension {
        value: Some(if symbolic.get(i).copied().unwrap_or(false) {
            tensor_shape_proto::dimension::Value::DimParam(format!("d{i}"))
        } else {
            tensor_shape_proto::dimension::Value::DimValue(d as i64)
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(t.dtype() as i32),
                shape: Some(TensorShapeProto {
                    dim: t
                        .shape
                        .iter()
                        .enumerate()
                        .map(|(i, &d)| dim(i, d))
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A generated model, its probe input (name and tensor), and the contents of every value it computes.
pub struct GenModel {
    pub model: ocrnet_edge::onnx::proto::ModelProto,
    pub input: (String, ocrnet_edge::tensor::Tensor),
    pub values: std::collections::HashMap<String, ocrnet_edge::tensor::Tensor>,
}

/// Builds a valid model from `data` (see the top of this file); `None` when no node could be added.
pub fn generate_graph(data: &[u8]) -> Option<GenModel> {
    use ocrnet_edge::onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto};
    let mut g = GenBytes { data, at: 0 };
    let opset = g.pick(&[11i64, 13, 17, 18]);
    let rank = 1 + g.below(4);
    let shape: Vec<usize> = (0..rank).map(|_| 1 + g.below(4)).collect();
    let symbolic: Vec<bool> = (0..rank).map(|_| g.below(4) == 0).collect();
    let x = ocrnet_edge::exec::verify::probe_input(&shape, 7);
    let mut gg = GenGraph {
        opset,
        values: vec![("x".into(), x.clone())],
        nodes: Vec::new(),
        initializers: Vec::new(),
        pending: Vec::new(),
        count: 0,
    };
    let steps = 1 + g.below(14);
    // Most QuantizeLinear nodes are followed by a DequantizeLinear, as in the INT8 graphs.
    let mut next = None;
    for _ in 0..steps {
        if g.exhausted() {
            break;
        }
        let op = next.take().unwrap_or_else(|| g.pick(GEN_OPS));
        gg.pending.clear();
        let Some(node) = gen_node(&mut g, &mut gg, op) else {
            continue;
        };
        let pending = std::mem::take(&mut gg.pending);
        let lookup: std::collections::HashMap<&str, &ocrnet_edge::tensor::Tensor> = gg
            .values
            .iter()
            .map(|(n, t)| (n.as_str(), t))
            .chain(pending.iter().map(|(n, t, _)| (n.as_str(), t)))
            .collect();
        let args: Vec<Option<&ocrnet_edge::tensor::Tensor>> = node
            .input
            .iter()
            .map(|n| {
                if n.is_empty() {
                    None
                } else {
                    lookup.get(n.as_str()).copied()
                }
            })
            .collect();
        let Ok(outs) = ocrnet_edge::exec::ops::eval(&node, &args, opset) else {
            continue;
        };
        if outs.len() != 1 || outs[0].len() > 4096 {
            continue;
        }
        for (name, t, as_node) in pending {
            if as_node {
                gg.nodes.push(ocrnet_edge::onnx::proto::NodeProto {
                    name: Some(format!("Constant_{name}")),
                    op_type: Some("Constant".into()),
                    output: vec![name.clone()],
                    attribute: vec![gen_attr_tensor("value", t.to_proto("value"))],
                    ..Default::default()
                });
            } else {
                gg.initializers.push(t.to_proto(&name));
            }
            gg.values.push((name, t));
        }
        let out = outs.into_iter().next().expect("one output");
        gg.values.push((node.output[0].clone(), out));
        gg.nodes.push(node);
        if op == "QuantizeLinear" && g.below(4) != 0 {
            next = Some("DequantizeLinear");
        }
    }
    let produced: Vec<usize> = (1..gg.values.len())
        .filter(|&i| {
            gg.nodes
                .iter()
                .any(|n| n.op_type() != "Constant" && n.output[0] == gg.values[i].0)
        })
        .collect();
    let mut last = *produced.last()?;
    // Folding never replaces a graph output, so the last value goes through one more exact op (Neg, or a
    // Cast to float for other types) most of the time: then everything before it is an intermediate
    // value that `simplify` may fold, and the check sees what folding made of it.
    if g.below(4) != 0 {
        let (name, t) = &gg.values[last];
        let float = matches!(t.data, ocrnet_edge::tensor::Data::F32(_));
        let node = ocrnet_edge::onnx::proto::NodeProto {
            name: Some(format!("last_{name}")),
            op_type: Some(if float { "Neg" } else { "Cast" }.into()),
            input: vec![name.clone()],
            output: vec![format!("{name}_out")],
            attribute: if float {
                vec![]
            } else {
                vec![gen_attr_int("to", 1)]
            },
            ..Default::default()
        };
        let out = ocrnet_edge::exec::ops::eval(&node, &[Some(t)], opset).ok()?;
        gg.values
            .push((node.output[0].clone(), out.into_iter().next()?));
        gg.nodes.push(node);
        last = gg.values.len() - 1;
    }
    let mut outputs = vec![last];
    if produced.len() > 1 && g.coin() {
        let other = produced[g.below(produced.len() - 1)];
        outputs.insert(0, other);
    }
    let model = ModelProto {
        ir_version: Some(8),
        producer_name: Some("ocrnet-edge-graphgen".into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(GraphProto {
            name: Some("generated".into()),
            node: gg.nodes,
            initializer: gg.initializers,
            input: vec![gen_value_info("x", &x, &symbolic)],
            output: outputs
                .iter()
                .map(|&i| gen_value_info(&gg.values[i].0, &gg.values[i].1, &[]))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Some(GenModel {
        model,
        input: ("x".into(), x),
        values: gg.values.into_iter().collect(),
    })
}

include!("graphquant.rs");
