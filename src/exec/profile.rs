//! A profiled run's node times joined with each node's arithmetic: which layers are slow, and how
//! fast each kind of convolution runs. The per-op totals of [`super::RunStats::profile`] say that
//! Conv is 90% of a forward; this says which Conv, and at how many GFLOP/s, which is what kernel
//! work is steered by (`ocrnet-edge bench exec --profile`).

use std::collections::HashMap;

use super::engine::NodeTime;
use super::flops;
use crate::onnx::graph::attr;
use crate::onnx::proto::NodeProto;
use crate::onnx::Graph;
use crate::shape::{Dim, Inference};

/// One node of a profiled run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeRow {
    pub name: String,
    pub op: String,
    pub seconds: f64,
    /// Its floating-point operations, for Conv, MatMul and Gemm with known shapes.
    pub gflop: Option<f64>,
    /// A Conv's geometry, e.g. `3x3 720->512 @128x256`: the key of [`Profile::layers`].
    pub layer: Option<String>,
}

/// All convolutions of one geometry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerRow {
    pub layer: String,
    pub nodes: usize,
    pub seconds: f64,
    pub gflop: f64,
}

/// A profiled run, slowest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    pub seconds: f64,
    pub nodes: Vec<NodeRow>,
    pub layers: Vec<LayerRow>,
}

impl Profile {
    /// Joins `times` (one profiled run) with `graph`'s nodes by their first output; a time whose
    /// node the graph does not have keeps no FLOP count.
    pub fn new(graph: &Graph, shapes: &Inference, times: &[NodeTime]) -> Self {
        let by_output: HashMap<&str, &NodeProto> = graph
            .nodes
            .iter()
            .filter_map(|n| Some((n.output.first()?.as_str(), n)))
            .collect();
        let mut nodes: Vec<NodeRow> = times
            .iter()
            .map(|t| {
                let node = by_output.get(t.output.as_str());
                NodeRow {
                    name: t.name.clone(),
                    op: t.op.clone(),
                    seconds: t.seconds,
                    gflop: node
                        .and_then(|n| flops::of_node(n, shapes))
                        .map(|f| f as f64 / 1e9),
                    layer: node.and_then(|n| conv_layer(n, shapes)),
                }
            })
            .collect();
        let mut layers: HashMap<&str, LayerRow> = HashMap::new();
        for row in &nodes {
            let (Some(layer), Some(gflop)) = (&row.layer, row.gflop) else {
                continue;
            };
            let e = layers.entry(layer).or_insert_with(|| LayerRow {
                layer: layer.clone(),
                nodes: 0,
                seconds: 0.0,
                gflop: 0.0,
            });
            e.nodes += 1;
            e.seconds += row.seconds;
            e.gflop += gflop;
        }
        let mut layers: Vec<LayerRow> = layers.into_values().collect();
        layers.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.layer.cmp(&b.layer)));
        let seconds = nodes.iter().map(|r| r.seconds).sum();
        nodes.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Profile {
            seconds,
            nodes,
            layers,
        }
    }
}

/// A Conv's geometry as `KHxKW CIN->COUT @OHxOW`, with ` s2`, ` d2` and ` g4` for strides,
/// dilations and groups other than 1; `None` for other ops and unknown shapes.
pub fn conv_layer(n: &NodeProto, shapes: &Inference) -> Option<String> {
    if n.op_type() != "Conv" {
        return None;
    }
    let dims = |name: &str| -> Option<Vec<i64>> {
        shapes
            .types
            .get(name)?
            .shape
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Known(v) => Some(*v),
                _ => None,
            })
            .collect()
    };
    let (w, y) = (dims(n.input.get(1)?)?, dims(n.output.first()?)?);
    let (&[cout, cin_g, kh, kw], &[_, _, oh, ow]) = (w.as_slice(), y.as_slice()) else {
        return None;
    };
    let group = attr(n, "group").map_or(1, |a| a.i());
    let mut s = format!("{kh}x{kw} {}->{cout} @{oh}x{ow}", cin_g * group);
    for (key, tag) in [("strides", "s"), ("dilations", "d")] {
        if let Some(v) = attr(n, key).map(|a| a.ints.clone()) {
            if v.iter().any(|&x| x != 1) {
                let v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                s += &format!(" {tag}{}", v.join(","));
            }
        }
    }
    if group != 1 {
        s += &format!(" g{group}");
    }
    Some(s)
}
