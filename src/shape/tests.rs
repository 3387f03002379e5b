//! Shape inference on small hand-built graphs: every rule family with hand-computed shapes, data
//! propagation through the exporters' shape arithmetic, and the errors that name a node.

use super::*;
use crate::exec::ops::test_util::{int, ints, string, tensor};
use crate::onnx::proto::{AttributeProto, NodeProto};
use crate::tensor::Tensor;

const F32: i32 = 1;
const I64: i32 = 7;
const BOOL: i32 = 9;

/// `"3"` is known, `"?"` unknown, anything else a symbol.
fn dims(spec: &[&str]) -> Vec<Dim> {
    spec.iter()
        .map(|s| match (s.parse::<i64>(), *s) {
            (Ok(v), _) => Dim::Known(v),
            (_, "?") => Dim::Unknown,
            _ => Dim::Sym(s.to_string()),
        })
        .collect()
}

#[derive(Default)]
struct G {
    g: Graph,
    n: usize,
}

impl G {
    fn input(mut self, name: &str, elem: i32, shape: &[&str]) -> Self {
        self.g
            .inputs
            .push(ValueType::new(elem, dims(shape)).to_value_info(name));
        self
    }

    fn init(mut self, name: &str, t: Tensor) -> Self {
        self.g.initializers.push(t.to_proto(name));
        self
    }

    fn node(
        mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> Self {
        self.n += 1;
        self.g.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("n{}_{op}", self.n)),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
        self
    }

    fn infer(&self, opset: i64) -> Result<Inference, Error> {
        infer(&self.g, opset)
    }

    fn shape(&self, opset: i64, value: &str) -> Vec<Dim> {
        let inf = self.infer(opset).unwrap();
        inf.shape(value)
            .unwrap_or_else(|| panic!("no shape for {value}: {:?}", inf.ty(value)))
            .to_vec()
    }
}

fn x(shape: &[&str]) -> G {
    G::default().input("x", F32, shape)
}

fn err(g: &G, opset: i64) -> String {
    g.infer(opset).unwrap_err().to_string()
}

#[test]
fn conv_output_sizes() {
    let w = |shape: &[usize]| {
        Tensor::vec_f32(shape.to_vec(), vec![0.0; shape.iter().product()]).unwrap()
    };
    // 3x3 stride 2 pad 1: 64 -> 32, and a symbolic height becomes floor((h+1)/2).
    let g = x(&["n", "3", "h", "64"]).init("w", w(&[8, 3, 3, 3])).node(
        "Conv",
        &["x", "w"],
        &["y"],
        vec![ints("strides", &[2, 2]), ints("pads", &[1, 1, 1, 1])],
    );
    assert_eq!(g.shape(13, "y"), dims(&["n", "8", "floor((h+1)/2)", "32"]));
    // Dilation 2, no pads: 10 - 2*(3-1) = 6; SAME_UPPER stride 2: ceil(7/2) = 4.
    let g = x(&["1", "3", "10", "7"])
        .init("w", w(&[4, 3, 3, 3]))
        .node(
            "Conv",
            &["x", "w"],
            &["a"],
            vec![ints("dilations", &[2, 2])],
        )
        .node(
            "Conv",
            &["x", "w"],
            &["b"],
            vec![string("auto_pad", "SAME_UPPER"), ints("strides", &[2, 2])],
        );
    assert_eq!(g.shape(13, "a"), dims(&["1", "4", "6", "3"]));
    assert_eq!(g.shape(13, "b"), dims(&["1", "4", "5", "4"]));
    // Grouped (depthwise) conv with a bias.
    let g = x(&["1", "6", "5", "5"])
        .init("w", w(&[6, 1, 1, 1]))
        .init("b", Tensor::vec_f32(vec![6], vec![0.0; 6]).unwrap())
        .node("Conv", &["x", "w", "b"], &["y"], vec![int("group", 6)]);
    assert_eq!(g.shape(13, "y"), dims(&["1", "6", "5", "5"]));
}

#[test]
fn conv_channel_mismatch_names_the_node() {
    let g = x(&["1", "4", "8", "8"])
        .init(
            "w",
            Tensor::vec_f32(vec![8, 3, 1, 1], vec![0.0; 24]).unwrap(),
        )
        .node("Conv", &["x", "w"], &["y"], vec![]);
    let e = err(&g, 13);
    assert!(e.contains("n1_Conv") && e.contains("4 channels"), "{e}");
    let g = x(&["1", "3", "2", "2"])
        .init(
            "w",
            Tensor::vec_f32(vec![1, 3, 3, 3], vec![0.0; 27]).unwrap(),
        )
        .node("Conv", &["x", "w"], &["y"], vec![]);
    assert!(err(&g, 13).contains("does not fit"), "{}", err(&g, 13));
}

#[test]
fn pools() {
    let g = x(&["1", "2", "5", "6"])
        .node(
            "MaxPool",
            &["x"],
            &["a", "ai"],
            vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
        )
        .node(
            "MaxPool",
            &["x"],
            &["b"],
            vec![
                ints("kernel_shape", &[2, 2]),
                ints("strides", &[2, 2]),
                int("ceil_mode", 1),
            ],
        )
        // ceil_mode with pads: the last window would start in the padding, so 4 becomes 3.
        .node(
            "AveragePool",
            &["x"],
            &["c"],
            vec![
                ints("kernel_shape", &[2, 2]),
                ints("strides", &[2, 2]),
                ints("pads", &[1, 1, 1, 1]),
                int("ceil_mode", 1),
            ],
        )
        .node("GlobalAveragePool", &["x"], &["d"], vec![]);
    let inf = g.infer(13).unwrap();
    assert_eq!(inf.shape("a").unwrap(), dims(&["1", "2", "2", "3"]));
    assert_eq!(inf.ty("ai").unwrap().elem, I64);
    assert_eq!(inf.shape("b").unwrap(), dims(&["1", "2", "3", "3"]));
    assert_eq!(inf.shape("c").unwrap(), dims(&["1", "2", "3", "4"]));
    assert_eq!(inf.shape("d").unwrap(), dims(&["1", "2", "1", "1"]));
}

#[test]
fn shape_gather_folds_known_dims_and_keeps_symbols() {
    let g = x(&["batch", "3", "h", "w"])
        .node("Shape", &["x"], &["s"], vec![])
        .init("one", Tensor::scalar_i64(1))
        .init("zero", Tensor::scalar_i64(0))
        .node("Gather", &["s", "one"], &["c"], vec![int("axis", 0)])
        .node("Gather", &["s", "zero"], &["n"], vec![int("axis", 0)])
        .init("two", Tensor::scalar_i64(2))
        .node("Mul", &["n", "two"], &["n2"], vec![])
        .node("Shape", &["x"], &["tail"], vec![int("start", -2)]);
    let inf = g.infer(15).unwrap();
    assert_eq!(inf.data("c").unwrap(), dims(&["3"]));
    assert_eq!(inf.value("c"), Some(&Tensor::scalar_i64(3)));
    assert_eq!(inf.shape("c").unwrap(), &[] as &[Dim]);
    assert_eq!(inf.data("n").unwrap(), dims(&["batch"]));
    assert!(inf.value("n").is_none());
    assert_eq!(inf.data("n2").unwrap(), dims(&["2*batch"]));
    assert_eq!(inf.data("tail").unwrap(), dims(&["h", "w"]));
}

#[test]
fn exporter_resize_sizes_propagate() {
    // Resize(x, sizes = Concat(Slice(Shape(x), 0, 2), Cast(Concat(Unsqueeze(H), Unsqueeze(W)))))
    // with H, W read off another tensor: the legacy exporter's F.interpolate(size=y.shape[2:]).
    let g = x(&["n", "8", "h", "w"])
        .input("y", F32, &["n", "4", "2*h", "2*w"])
        .node("Shape", &["y"], &["sy"], vec![])
        .init("i2", Tensor::scalar_i64(2))
        .init("i3", Tensor::scalar_i64(3))
        .node("Gather", &["sy", "i2"], &["H"], vec![])
        .node("Gather", &["sy", "i3"], &["W"], vec![])
        .init("ax", Tensor::vec_i64(vec![0]))
        .node("Unsqueeze", &["H"], &["uh"], vec![ints("axes", &[0])])
        .node("Unsqueeze", &["W"], &["uw"], vec![ints("axes", &[0])])
        .node("Concat", &["uh", "uw"], &["hw"], vec![int("axis", 0)])
        .node("Cast", &["hw"], &["hw64"], vec![int("to", 7)])
        .node("Shape", &["x"], &["sx"], vec![])
        .init("s0", Tensor::vec_i64(vec![0]))
        .init("s2", Tensor::vec_i64(vec![2]))
        .node("Slice", &["sx", "s0", "s2", "s0"], &["nc"], vec![])
        .node("Concat", &["nc", "hw64"], &["sizes"], vec![int("axis", 0)])
        .node(
            "Resize",
            &["x", "", "", "sizes"],
            &["r"],
            vec![string("mode", "linear")],
        );
    // Opset 11 keeps Unsqueeze's axes as an attribute.
    assert_eq!(g.shape(11, "r"), dims(&["n", "8", "2*h", "2*w"]));
}

#[test]
fn resize_from_scales_per_opset() {
    let scales = Tensor::vec_f32(vec![4], vec![1.0, 1.0, 2.0, 0.5]).unwrap();
    let g = x(&["1", "3", "5", "7"])
        .init("scales", scales)
        .init("empty", Tensor::vec_f32(vec![0], vec![]).unwrap())
        .node("Resize", &["x", "empty", "scales"], &["r"], vec![]);
    assert_eq!(g.shape(13, "r"), dims(&["1", "3", "10", "3"]));
    // Opset 10: (X, scales).
    let g10 = x(&["1", "3", "5", "7"])
        .init(
            "scales",
            Tensor::vec_f32(vec![4], vec![1.0, 1.0, 2.0, 2.0]).unwrap(),
        )
        .node("Resize", &["x", "scales"], &["r"], vec![]);
    assert_eq!(g10.shape(10, "r"), dims(&["1", "3", "10", "14"]));
    // Opset 18 axes + not_larger: one scale, min(8/5, 8/7) = 8/7, for both axes.
    let g18 = x(&["1", "3", "5", "7"])
        .init("sizes", Tensor::vec_i64(vec![8, 8]))
        .node(
            "Resize",
            &["x", "", "", "sizes"],
            &["r"],
            vec![
                ints("axes", &[2, 3]),
                string("keep_aspect_ratio_policy", "not_larger"),
            ],
        );
    assert_eq!(g18.shape(18, "r"), dims(&["1", "3", "6", "8"]));
    let bad = x(&["1", "3", "5", "7"])
        .init("scales", Tensor::vec_f32(vec![2], vec![2.0, 2.0]).unwrap())
        .node("Resize", &["x", "", "scales"], &["r"], vec![]);
    assert!(
        err(&bad, 13).contains("2 values for 4 axes"),
        "{}",
        err(&bad, 13)
    );
}

#[test]
fn reshape_with_zero_minus_one_and_symbols() {
    let g = x(&["batch", "19", "h", "w"])
        .node("Shape", &["x"], &["s"], vec![])
        .init("i0", Tensor::vec_i64(vec![0]))
        .node("Gather", &["s", "i0"], &["n"], vec![])
        .init("rest", Tensor::vec_i64(vec![19, -1]))
        .node("Concat", &["n", "rest"], &["spec"], vec![int("axis", 0)])
        .node("Reshape", &["x", "spec"], &["y"], vec![])
        .init("flat", Tensor::vec_i64(vec![0, 0, -1]))
        .node("Reshape", &["x", "flat"], &["z"], vec![]);
    let inf = g.infer(13).unwrap();
    assert_eq!(inf.shape("y").unwrap(), dims(&["batch", "19", "h*w"]));
    assert_eq!(inf.shape("z").unwrap(), dims(&["batch", "19", "h*w"]));
    // Pinned, the same graph is static.
    let pins = [("x".to_string(), vec![2, 19, 4, 8])].into();
    let inf = infer_with(&g.g, 13, &pins).unwrap();
    assert_eq!(inf.shape("y").unwrap(), dims(&["2", "19", "32"]));
    assert_eq!(inf.value("spec"), Some(&Tensor::vec_i64(vec![2, 19, -1])));
}

#[test]
fn reshape_that_cannot_fit_is_an_error() {
    let g = x(&["2", "3", "4"])
        .init("s", Tensor::vec_i64(vec![5, -1]))
        .node("Reshape", &["x", "s"], &["y"], vec![]);
    let e = err(&g, 13);
    assert!(
        e.contains("n1_Reshape") && e.contains("cannot reshape"),
        "{e}"
    );
    let g = x(&["2", "3", "4"])
        .init("s", Tensor::vec_i64(vec![5, 5]))
        .node("Reshape", &["x", "s"], &["y"], vec![]);
    assert!(err(&g, 13).contains("cannot reshape"));
    // allowzero (opset 14): a 0 is a zero, not a copy.
    let g = x(&["0", "3"]).init("s", Tensor::vec_i64(vec![3, 0])).node(
        "Reshape",
        &["x", "s"],
        &["y"],
        vec![int("allowzero", 1)],
    );
    assert_eq!(g.shape(14, "y"), dims(&["3", "0"]));
}

#[test]
fn unsqueeze_squeeze_axes_by_opset() {
    let g = x(&["3", "1", "n"])
        .init("a", Tensor::vec_i64(vec![0, -1]))
        .node("Unsqueeze", &["x", "a"], &["u"], vec![])
        .init("b", Tensor::vec_i64(vec![1]))
        .node("Squeeze", &["x", "b"], &["s"], vec![]);
    let inf = g.infer(13).unwrap();
    assert_eq!(inf.shape("u").unwrap(), dims(&["1", "3", "1", "n", "1"]));
    assert_eq!(inf.shape("s").unwrap(), dims(&["3", "n"]));
    let g11 = x(&["3", "1", "n"]).node("Unsqueeze", &["x"], &["u"], vec![ints("axes", &[1])]);
    assert_eq!(g11.shape(11, "u"), dims(&["3", "1", "1", "n"]));
    let bad = x(&["3", "1"]).node("Squeeze", &["x"], &["s"], vec![ints("axes", &[0])]);
    assert!(err(&bad, 11).contains("not 1"), "{}", err(&bad, 11));
}

#[test]
fn slices_known_and_symbolic() {
    let g = x(&["n", "10", "h"])
        .init("st", Tensor::vec_i64(vec![0, 2, -3]))
        .init("en", Tensor::vec_i64(vec![i64::MAX, 9, i64::MAX]))
        .init("ax", Tensor::vec_i64(vec![0, 1, 2]))
        .init("sp", Tensor::vec_i64(vec![1, 3, 1]))
        .node("Slice", &["x", "st", "en", "ax", "sp"], &["y"], vec![]);
    // n kept whole; 2..9 step 3 = 3 elements; the last 3 of a symbolic h: unknown.
    assert_eq!(g.shape(13, "y"), dims(&["n", "3", "?"]));
    let g9 = x(&["4", "6"]).node(
        "Slice",
        &["x"],
        &["y"],
        vec![
            ints("starts", &[1]),
            ints("ends", &[-1]),
            ints("axes", &[1]),
        ],
    );
    assert_eq!(g9.shape(9, "y"), dims(&["4", "4"]));
}

#[test]
fn matmul_gemm_and_their_errors() {
    let g = x(&["2", "1", "5", "3"])
        .input("y", F32, &["4", "3", "7"])
        .node("MatMul", &["x", "y"], &["z"], vec![])
        .input("v", F32, &["7"])
        .node("MatMul", &["z", "v"], &["zv"], vec![]);
    let inf = g.infer(13).unwrap();
    assert_eq!(inf.shape("z").unwrap(), dims(&["2", "4", "5", "7"]));
    assert_eq!(inf.shape("zv").unwrap(), dims(&["2", "4", "5"]));
    let bad =
        x(&["2", "3"])
            .input("y", F32, &["4", "5"])
            .node("MatMul", &["x", "y"], &["z"], vec![]);
    assert!(
        err(&bad, 13).contains("inner dimensions"),
        "{}",
        err(&bad, 13)
    );
    let gemm = x(&["n", "16"])
        .input("w", F32, &["10", "16"])
        .input("c", F32, &["10"])
        .node("Gemm", &["x", "w", "c"], &["y"], vec![int("transB", 1)]);
    assert_eq!(gemm.shape(13, "y"), dims(&["n", "10"]));
}

#[test]
fn reductions_and_argmax() {
    let g = x(&["2", "3", "4"])
        .node("ReduceMean", &["x"], &["a"], vec![ints("axes", &[1])])
        .node(
            "ReduceMax",
            &["x"],
            &["b"],
            vec![ints("axes", &[-1]), int("keepdims", 0)],
        )
        .init("ax", Tensor::vec_i64(vec![0, 2]))
        .node("ReduceSum", &["x", "ax"], &["c"], vec![int("keepdims", 0)])
        .node("ReduceSum", &["x"], &["d"], vec![])
        .node(
            "ArgMax",
            &["x"],
            &["e"],
            vec![int("axis", 1), int("keepdims", 0)],
        );
    let inf = g.infer(13).unwrap();
    assert_eq!(inf.shape("a").unwrap(), dims(&["2", "1", "4"]));
    assert_eq!(inf.shape("b").unwrap(), dims(&["2", "3"]));
    assert_eq!(inf.shape("c").unwrap(), dims(&["3"]));
    assert_eq!(inf.shape("d").unwrap(), dims(&["1", "1", "1"]));
    assert_eq!(
        inf.ty("e").unwrap(),
        &ValueType::new(I64, dims(&["2", "4"]))
    );
    // ReduceMean takes axes as an input only from opset 18.
    let g18 = x(&["2", "3", "4"])
        .init("ax", Tensor::vec_i64(vec![1]))
        .node("ReduceMean", &["x", "ax"], &["a"], vec![]);
    assert_eq!(g18.shape(18, "a"), dims(&["2", "1", "4"]));
}

#[test]
fn elementwise_types_and_broadcasting() {
    let g = x(&["n", "1", "4"])
        .input("y", F32, &["3", "1"])
        .node("Add", &["x", "y"], &["a"], vec![])
        .node("Greater", &["x", "y"], &["g"], vec![])
        .node("Where", &["g", "x", "y"], &["w"], vec![])
        .node("Sigmoid", &["x"], &["s"], vec![])
        .node("Clip", &["x", "", ""], &["c"], vec![])
        .init("scale", Tensor::vec_f32(vec![], vec![0.1]).unwrap())
        .init(
            "zp",
            Tensor::new(vec![], crate::tensor::Data::I8(vec![0])).unwrap(),
        )
        .node("QuantizeLinear", &["x", "scale", "zp"], &["q"], vec![])
        .node("DequantizeLinear", &["q", "scale", "zp"], &["dq"], vec![])
        .node("Dropout", &["x"], &["dr", "mask"], vec![])
        .init("shape", Tensor::vec_i64(vec![2, 1, 1]))
        .node("Expand", &["y", "shape"], &["e"], vec![]);
    let inf = g.infer(13).unwrap();
    assert_eq!(inf.shape("a").unwrap(), dims(&["n", "3", "4"]));
    assert_eq!(
        inf.ty("g").unwrap(),
        &ValueType::new(BOOL, dims(&["n", "3", "4"]))
    );
    assert_eq!(
        inf.ty("w").unwrap(),
        &ValueType::new(F32, dims(&["n", "3", "4"]))
    );
    assert_eq!(inf.ty("s").unwrap(), inf.ty("x").unwrap());
    assert_eq!(inf.ty("c").unwrap(), inf.ty("x").unwrap());
    assert_eq!(inf.ty("q").unwrap().elem, 3); // int8, the zero point's type
    assert_eq!(inf.ty("dq").unwrap().elem, F32);
    assert_eq!(inf.ty("mask").unwrap().elem, BOOL);
    assert_eq!(inf.shape("e").unwrap(), dims(&["2", "3", "1"]));
    let bad = x(&["2"])
        .input("y", F32, &["3"])
        .node("Mul", &["x", "y"], &["z"], vec![]);
    assert!(
        err(&bad, 13).contains("do not broadcast"),
        "{}",
        err(&bad, 13)
    );
    let mixed = x(&["2"])
        .input("y", I64, &["2"])
        .node("Sub", &["x", "y"], &["z"], vec![]);
    assert!(
        err(&mixed, 13).contains("element types"),
        "{}",
        err(&mixed, 13)
    );
}

#[test]
fn flatten_concat_transpose_batchnorm() {
    let g = x(&["n", "4", "h", "w"])
        .node("Flatten", &["x"], &["f"], vec![])
        .node("Flatten", &["x"], &["f0"], vec![int("axis", 0)])
        .input("y", F32, &["n", "2", "h", "w"])
        .node("Concat", &["x", "y"], &["c"], vec![int("axis", 1)])
        .node(
            "Transpose",
            &["x"],
            &["t"],
            vec![ints("perm", &[0, 2, 3, 1])],
        )
        .init("p", Tensor::vec_f32(vec![4], vec![1.0; 4]).unwrap())
        .node(
            "BatchNormalization",
            &["x", "p", "p", "p", "p"],
            &["bn"],
            vec![],
        );
    let inf = g.infer(13).unwrap();
    assert_eq!(inf.shape("f").unwrap(), dims(&["n", "4*h*w"]));
    assert_eq!(inf.shape("f0").unwrap(), dims(&["1", "4*h*n*w"]));
    assert_eq!(inf.shape("c").unwrap(), dims(&["n", "6", "h", "w"]));
    assert_eq!(inf.shape("t").unwrap(), dims(&["n", "h", "w", "4"]));
    assert_eq!(inf.shape("bn").unwrap(), dims(&["n", "4", "h", "w"]));
    let bad = x(&["1", "4", "2"]).input("y", F32, &["1", "2", "3"]).node(
        "Concat",
        &["x", "y"],
        &["c"],
        vec![int("axis", 1)],
    );
    assert!(err(&bad, 13).contains("disagree"), "{}", err(&bad, 13));
    let bn = x(&["1", "3", "2", "2"])
        .init("p", Tensor::vec_f32(vec![4], vec![1.0; 4]).unwrap())
        .node(
            "BatchNormalization",
            &["x", "p", "p", "p", "p"],
            &["bn"],
            vec![],
        );
    assert!(
        err(&bn, 13).contains("n1_BatchNormalization"),
        "{}",
        err(&bn, 13)
    );
}

#[test]
fn constants_range_and_constant_of_shape() {
    let big = Tensor::vec_i64(vec![1 << 20, 1 << 10]);
    let g = G::default()
        .node(
            "Constant",
            &[],
            &["c"],
            vec![tensor("value", Tensor::vec_i64(vec![3, 4]).to_proto(""))],
        )
        .node("ConstantOfShape", &["c"], &["z"], vec![])
        .node(
            "Constant",
            &[],
            &["huge"],
            vec![tensor("value", big.to_proto(""))],
        )
        .node("ConstantOfShape", &["huge"], &["hz"], vec![])
        .init("s", Tensor::scalar_i64(0))
        .init("l", Tensor::scalar_i64(10))
        .init("d", Tensor::scalar_i64(3))
        .node("Range", &["s", "l", "d"], &["r"], vec![]);
    let inf = g.infer(13).unwrap();
    assert_eq!(
        inf.ty("z").unwrap(),
        &ValueType::new(F32, dims(&["3", "4"]))
    );
    assert_eq!(inf.value("z").unwrap().len(), 12);
    // Typed, but never materialised: a billion elements.
    assert_eq!(inf.shape("hz").unwrap(), dims(&["1048576", "1024"]));
    assert!(inf.value("hz").is_none());
    assert_eq!(inf.value("r"), Some(&Tensor::vec_i64(vec![0, 3, 6, 9])));
}

#[test]
fn unknown_ops_are_unknown_not_errors() {
    let g = x(&["1", "3"])
        .node("MyCustomOp", &["x"], &["y"], vec![])
        .node("Relu", &["y"], &["z"], vec![]);
    let inf = g.infer(13).unwrap();
    assert_eq!(inf.ty("y"), Some(&ValueType::default()));
    assert_eq!(inf.ty("z").unwrap().shape, None);
    // A declared value_info fills in what no rule knows.
    let mut g = g;
    g.g.value_info
        .push(ValueType::new(F32, dims(&["1", "7"])).to_value_info("y"));
    assert_eq!(g.shape(13, "z"), dims(&["1", "7"]));
}

#[test]
fn pinning_checks_the_declared_shape() {
    let g = x(&["n", "3", "h", "w"]).node("Relu", &["x"], &["y"], vec![]);
    let ok = infer_with(&g.g, 13, &[("x".to_string(), vec![1, 3, 8, 8])].into()).unwrap();
    assert_eq!(ok.shape("y").unwrap(), dims(&["1", "3", "8", "8"]));
    let e = infer_with(&g.g, 13, &[("x".to_string(), vec![1, 4, 8, 8])].into())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be pinned"), "{e}");
    let e = infer_with(&g.g, 13, &[("nope".to_string(), vec![1])].into())
        .unwrap_err()
        .to_string();
    assert!(e.contains("'nope'"), "{e}");
}

#[test]
fn value_info_round_trip() {
    let g =
        x(&["n", "3"])
            .node("Relu", &["x"], &["y"], vec![])
            .node("Shape", &["y"], &["s"], vec![]);
    let inf = g.infer(13).unwrap();
    let vi = inf.to_value_info(&g.g);
    assert_eq!(vi.len(), 2);
    assert_eq!(
        ValueType::from_value_info(&vi[0]).unwrap(),
        ValueType::new(F32, dims(&["n", "3"]))
    );
    assert_eq!(
        ValueType::from_value_info(&vi[1]).unwrap(),
        ValueType::new(I64, dims(&["2"]))
    );
}
