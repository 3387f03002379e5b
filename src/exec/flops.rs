//! Arithmetic work of a graph, for GFLOP/s figures: multiply-adds of Conv, MatMul and Gemm counted as two
//! operations each (the convention onnxruntime and the papers use); everything else is noise next to them.

use crate::onnx::graph::attr;
use crate::onnx::proto::NodeProto;
use crate::onnx::Graph;
use crate::shape::{Dim, Inference};

/// Floating-point operations of one forward pass, from inferred shapes; nodes whose shapes are not fully
/// known are skipped (the count is then a lower bound).
pub fn count(graph: &Graph, shapes: &Inference) -> u64 {
    graph.nodes.iter().filter_map(|n| of_node(n, shapes)).sum()
}

/// Floating-point operations of one node: `None` for ops that are not counted (everything but Conv,
/// MatMul and Gemm) and for nodes whose shapes are not fully known.
pub fn of_node(n: &NodeProto, shapes: &Inference) -> Option<u64> {
    let dims = |name: &str| -> Option<Vec<u64>> {
        let t = shapes.types.get(name)?;
        t.shape
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Known(v) if *v >= 0 => Some(*v as u64),
                _ => None,
            })
            .collect()
    };
    match n.op_type() {
        "Conv" => {
            let out = dims(n.output.first()?)?;
            let w = dims(n.input.get(1)?)?;
            // Each output element takes Cin/groups × kernel multiply-adds: the weight's dims past the first.
            let per_out: u64 = w.iter().skip(1).product();
            Some(2 * out.iter().product::<u64>() * per_out)
        }
        "MatMul" => {
            let a = dims(n.input.first()?)?;
            let out = dims(n.output.first()?)?;
            let k = if a.len() >= 2 {
                a[a.len() - 1]
            } else {
                *a.first()?
            };
            Some(2 * out.iter().product::<u64>() * k)
        }
        "Gemm" => {
            let a = dims(n.input.first()?)?;
            let out = dims(n.output.first()?)?;
            let trans_a = attr(n, "transA").is_some_and(|a| a.i() != 0);
            let k = if trans_a { a[0] } else { *a.get(1)? };
            Some(2 * out.iter().product::<u64>() * k)
        }
        _ => None,
    }
}
