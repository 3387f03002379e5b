//! The spellings of the OCR subgraphs that the fixtures do not cover — scale as Div, scale before the
//! MatMul or before the Reshape, softmax axis 2 or -1, Reshape instead of Unsqueeze — built by hand and
//! fused, each checked against the unfused graph within relative L2 1e-5; and near misses, which must
//! leave the graph untouched and name the check that failed.

mod common;

use common::{f32_tensor, node, rel_l2, value};
use ocrnet_edge::exec::{ExecOptions, Executor};
use ocrnet_edge::onnx::graph::Graph;
use ocrnet_edge::onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto,
};
use ocrnet_edge::onnx::Model;
use ocrnet_edge::passes::ocr::{self, FuseReport};
use ocrnet_edge::tensor::{Data, Tensor};
use std::collections::HashMap;

const REL_L2: f64 = 1e-5;
const N: i64 = 2;
const K: i64 = 5;
const C: i64 = 6;
const H: i64 = 3;
const W: i64 = 7;

/// A small graph under construction: nodes, constant initializers, and a counter for value names.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    next: usize,
}

impl Builder {
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.next += 1;
        let out = format!("v{}", self.next);
        let mut n = node(&format!("/head/{op}_{}", self.next), op, inputs, &[&out]);
        n.attribute = attrs;
        self.nodes.push(n);
        out
    }

    fn ints(&mut self, vals: &[i64]) -> String {
        self.next += 1;
        let name = format!("c{}", self.next);
        self.inits.push(TensorProto {
            name: Some(name.clone()),
            dims: vec![vals.len() as i64],
            data_type: Some(DataType::Int64 as i32),
            int64_data: vals.to_vec(),
            ..Default::default()
        });
        name
    }

    fn scalar(&mut self, v: f32) -> String {
        self.next += 1;
        let name = format!("s{}", self.next);
        self.inits.push(f32_tensor(&name, &[], &[v]));
        name
    }

    fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints(shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![ints_attr("perm", perm)])
    }

    fn softmax(&mut self, x: &str, axis: i64) -> String {
        self.op("Softmax", &[x], vec![int_attr("axis", axis)])
    }

    /// Wraps the graph into an opset-13 model whose output is `out` with `out_dims`.
    fn model(self, inputs: &[(&str, &[i64])], outputs: &[(&str, &[i64])]) -> Model {
        let g = GraphProto {
            name: Some("variant".into()),
            node: self.nodes,
            initializer: self.inits,
            input: inputs.iter().map(|(n, d)| value(n, d)).collect(),
            output: outputs.iter().map(|(n, d)| value(n, d)).collect(),
            ..Default::default()
        };
        let proto = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            ..Default::default()
        };
        Model::new(proto, Graph::from_proto(g).unwrap())
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// How a gather is spelled.
#[derive(Clone, Copy, Default)]
struct GatherStyle {
    /// Mul by this after the Reshape (None: no scale node).
    mul_after: Option<f32>,
    /// Div by this on the 4-D probs, before the Reshape.
    div_before: Option<f32>,
    softmax_axis: i64,
    /// Reshape to [N, C, K, 1] instead of Unsqueeze.
    reshape_out: bool,
    /// A second reader of the flattened probs (a near miss).
    leak_flat_probs: bool,
}

fn gather_model(s: GatherStyle) -> Model {
    gather_model_with(s, K)
}

/// [`gather_model`] with `k` object regions.
fn gather_model_with(s: GatherStyle, k: i64) -> Model {
    let mut b = Builder::default();
    let mut probs = "probs".to_string();
    if let Some(d) = s.div_before {
        let c = b.scalar(d);
        probs = b.op("Div", &[&probs, &c], vec![]);
    }
    let mut p = b.reshape(&probs, &[N, k, -1]);
    let flat = p.clone();
    if let Some(m) = s.mul_after {
        let c = b.scalar(m);
        p = b.op("Mul", &[&c, &p], vec![]);
    }
    let sm = b.softmax(&p, s.softmax_axis);
    let f = b.reshape("feats", &[N, C, -1]);
    let ft = b.transpose(&f, &[0, 2, 1]);
    let mm = b.op("MatMul", &[&sm, &ft], vec![]);
    let t = b.transpose(&mm, &[0, 2, 1]);
    let out = if s.reshape_out {
        b.reshape(&t, &[N, C, k, 1])
    } else {
        let axes = b.ints(&[3]);
        b.op("Unsqueeze", &[&t, &axes], vec![])
    };
    let mut outputs: Vec<(String, Vec<i64>)> = vec![(out, vec![N, C, k, 1])];
    if s.leak_flat_probs {
        let leak = b.op("Relu", &[&flat], vec![]);
        outputs.push((leak, vec![N, k, H * W]));
    }
    let outs: Vec<(&str, &[i64])> = outputs
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    b.model(&[("probs", &[N, k, H, W]), ("feats", &[N, C, H, W])], &outs)
}

/// How an attention is spelled.
#[derive(Clone, Copy)]
enum Scale {
    MulAfter(f32),
    DivAfter(f32),
    OnQuery(f32),
    OnKey(f32),
}

#[derive(Clone, Copy)]
struct AttentionStyle {
    scale: Scale,
    softmax_axis: i64,
    /// Reshape the context to [N, Ck, W, H] (a near miss: not the query's shape).
    wrong_out: bool,
}

const CK: i64 = 4;

fn attention_model(s: AttentionStyle) -> Model {
    attention_model_with(s, K)
}

/// [`attention_model`] with `regions` object regions.
fn attention_model_with(s: AttentionStyle, regions: i64) -> Model {
    let mut b = Builder::default();
    let q = b.reshape("query", &[N, CK, -1]);
    let mut qt = b.transpose(&q, &[0, 2, 1]);
    let mut k = b.reshape("key", &[N, CK, -1]);
    if let Scale::OnQuery(f) = s.scale {
        let c = b.scalar(f);
        qt = b.op("Mul", &[&qt, &c], vec![]);
    }
    if let Scale::OnKey(f) = s.scale {
        let c = b.scalar(f);
        k = b.op("Mul", &[&k, &c], vec![]);
    }
    let mut sim = b.op("MatMul", &[&qt, &k], vec![]);
    match s.scale {
        Scale::MulAfter(f) => {
            let c = b.scalar(f);
            sim = b.op("Mul", &[&c, &sim], vec![]);
        }
        Scale::DivAfter(d) => {
            let c = b.scalar(d);
            sim = b.op("Div", &[&sim, &c], vec![]);
        }
        _ => {}
    }
    let sm = b.softmax(&sim, s.softmax_axis);
    let v = b.reshape("value", &[N, CK, -1]);
    let vt = b.transpose(&v, &[0, 2, 1]);
    let ctx = b.op("MatMul", &[&sm, &vt], vec![]);
    let ct = b.transpose(&ctx, &[0, 2, 1]);
    let dims = if s.wrong_out {
        [N, CK, W, H]
    } else {
        [N, CK, H, W]
    };
    let out = b.reshape(&ct, &dims);
    b.model(
        &[
            ("query", &[N, CK, H, W]),
            ("key", &[N, CK, regions, 1]),
            ("value", &[N, CK, regions, 1]),
        ],
        &[(&out, &dims)],
    )
}

fn noise(shape: &[i64], seed: u64) -> Tensor {
    let n: i64 = shape.iter().product();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .map(|v| v * 3.0)
        .collect();
    Tensor::new(shape.iter().map(|&d| d as usize).collect(), Data::F32(v)).unwrap()
}

fn run(model: &Model, inputs: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    Executor::new(model, ExecOptions::default())
        .unwrap()
        .run(inputs.clone(), &[], None)
        .unwrap()
}

/// Fuses `model`, checks one node of `op` with `scale` replaced the pattern, and compares the outputs.
fn fuses_and_matches(
    mut model: Model,
    inputs: HashMap<String, Tensor>,
    op: &str,
    scale: f32,
) -> FuseReport {
    let want = run(&model, &inputs);
    let report = ocr::fuse(&mut model).unwrap();
    assert_eq!(report.count(op), 1, "{report:#?}");
    assert!(report.near_misses.is_empty(), "{report:#?}");
    assert!((report.fused[0].scale - scale).abs() < 1e-7, "{report:#?}");
    assert_eq!(model.graph.nodes.len(), 1, "only the plugin node is left");
    ocr::validate::validate(&model).unwrap();
    let got = run(&model, &inputs);
    for (name, w) in &want {
        let err = rel_l2(&got[name], w);
        assert!(err <= REL_L2, "{name}: rel L2 {err:.3e}");
    }
    report
}

/// Fusing must change nothing and report one near miss whose reason contains `why`.
fn near_miss(mut model: Model, why: &str) {
    let before = model.graph.clone();
    let report = ocr::fuse(&mut model).unwrap();
    assert!(report.fused.is_empty(), "{report:#?}");
    assert_eq!(
        model.graph, before,
        "a near miss must leave the graph untouched"
    );
    assert_eq!(report.near_misses.len(), 1, "{report:#?}");
    let reason = &report.near_misses[0].reason;
    assert!(reason.contains(why), "expected '{why}' in: {reason}");
}

fn gather_inputs() -> HashMap<String, Tensor> {
    HashMap::from([
        ("probs".to_string(), noise(&[N, K, H, W], 1)),
        ("feats".to_string(), noise(&[N, C, H, W], 2)),
    ])
}

fn attention_inputs() -> HashMap<String, Tensor> {
    HashMap::from([
        ("query".to_string(), noise(&[N, CK, H, W], 3)),
        ("key".to_string(), noise(&[N, CK, K, 1], 4)),
        ("value".to_string(), noise(&[N, CK, K, 1], 5)),
    ])
}

#[test]
fn gather_spellings_fuse() {
    let plain = GatherStyle {
        softmax_axis: 2,
        ..Default::default()
    };
    fuses_and_matches(
        gather_model(plain),
        gather_inputs(),
        "OcrSpatialGather",
        1.0,
    );
    let scaled = GatherStyle {
        mul_after: Some(2.0),
        softmax_axis: -1,
        ..plain
    };
    fuses_and_matches(
        gather_model(scaled),
        gather_inputs(),
        "OcrSpatialGather",
        2.0,
    );
    let before = GatherStyle {
        div_before: Some(0.5),
        mul_after: Some(0.25),
        reshape_out: true,
        ..plain
    };
    fuses_and_matches(
        gather_model(before),
        gather_inputs(),
        "OcrSpatialGather",
        0.5,
    );
}

#[test]
fn attention_spellings_fuse() {
    let style = |scale, softmax_axis| AttentionStyle {
        scale,
        softmax_axis,
        wrong_out: false,
    };
    for (s, want) in [
        (style(Scale::MulAfter(0.5), -1), 0.5),
        (style(Scale::DivAfter(2.0), 2), 0.5),
        (style(Scale::OnQuery(0.25), -1), 0.25),
        (style(Scale::OnKey(3.0), 2), 3.0),
    ] {
        fuses_and_matches(
            attention_model(s),
            attention_inputs(),
            "OcrObjectAttention",
            want,
        );
    }
}

#[test]
fn gather_near_misses_name_the_failed_check() {
    let plain = GatherStyle {
        softmax_axis: 2,
        ..Default::default()
    };
    near_miss(
        gather_model(GatherStyle {
            softmax_axis: 1,
            ..plain
        }),
        "runs over axis 1, expected the last",
    );
    near_miss(
        gather_model(GatherStyle {
            leak_flat_probs: true,
            ..plain
        }),
        "is also read by /head/Relu",
    );
}

#[test]
fn attention_near_misses_name_the_failed_check() {
    near_miss(
        attention_model(AttentionStyle {
            scale: Scale::MulAfter(0.5),
            softmax_axis: -1,
            wrong_out: true,
        }),
        "expected the query's shape",
    );
    near_miss(
        attention_model(AttentionStyle {
            scale: Scale::MulAfter(0.5),
            softmax_axis: 1,
            wrong_out: false,
        }),
        "runs over axis 1",
    );
}

/// More classes than the plugins take (ADE20K has 150): both subgraphs stay standard ops, and the near miss
/// names K and the limit, which comes from the C++ side.
#[test]
fn more_regions_than_the_plugins_take_stay_unfused() {
    let max = ocrnet_edge::ocr::max_regions();
    assert_eq!(max, 64, "cpp/ocr/ocr_params.h kMaxRegions");
    let gather = GatherStyle {
        softmax_axis: 2,
        ..Default::default()
    };
    let attention = AttentionStyle {
        scale: Scale::MulAfter(0.5),
        softmax_axis: -1,
        wrong_out: false,
    };
    let why = format!(
        "K = {} object regions (classes), over the plugins' maximum of 64",
        max + 1
    );
    near_miss(gather_model_with(gather, max + 1), &why);
    near_miss(attention_model_with(attention, max + 1), &why);
    // At the limit itself both still fuse.
    for mut model in [
        gather_model_with(gather, max),
        attention_model_with(attention, max),
    ] {
        let report = ocr::fuse(&mut model).unwrap();
        assert_eq!(report.fused.len(), 1, "{report:#?}");
    }
}
