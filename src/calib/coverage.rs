//! Which activations the legacy calibration cache must hold, and how to fill it without giving up the
//! executor's fused plan.
//!
//! The Q/DQ graph needs scales only for the inputs of the ops it quantizes. TensorRT's weakly typed INT8
//! build reads the cache instead, and wants a scale for every tensor of the network: a tensor without
//! one ("Missing scale and zero-point for tensor ...") sends every layer producing or consuming it back to
//! FP32/FP16, and on HRNet the Conv outputs under each ReLU are most of those layers. So the cache covers
//! every float activation.
//!
//! Watching every value would split the executor's Conv+Relu and Add+Relu pairs (the forward passes took
//! 1.7× a plain forward instead of 0.9× on the sample model). The value under a Relu that is its only
//! reader takes the Relu output's scale instead of its own: quantising it with the positive range and
//! applying the Relu gives what the Relu output's own quantisation gives (whatever the negative side
//! clips to, the Relu makes 0), and TensorRT fuses the pair anyway. The borrowed `max` also lets the FP16
//! lowering's range check keep in float32 the Conv or Add that would overflow, not only the Relu after it.

use super::ScaleTable;
use crate::onnx::Model;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The activations of a graph a legacy INT8 build can quantize: float graph inputs and node outputs
/// (Constant nodes excluded: the ONNX parser makes them weights). Integer shape tensors are listed too
/// when their type is not recorded; the calibrator only matches names, so an extra name costs nothing.
pub fn graph_activations(model: &Model) -> BTreeSet<String> {
    use crate::onnx::proto::{tensor_proto::DataType, type_proto};
    let elem_type = |name: &str| {
        model
            .graph
            .inputs
            .iter()
            .chain(&model.graph.value_info)
            .chain(&model.graph.outputs)
            .find(|v| v.name() == name)
            .and_then(|v| match v.r#type.as_ref()?.value.as_ref()? {
                type_proto::Value::TensorType(t) => Some(t.elem_type()),
                _ => None,
            })
    };
    let is_float = |name: &str| match elem_type(name) {
        None => true,
        Some(t) => [DataType::Float as i32, DataType::Float16 as i32].contains(&t),
    };
    let initializers: BTreeSet<&str> = model.graph.initializers.iter().map(|t| t.name()).collect();
    model
        .graph
        .inputs
        .iter()
        .map(|v| v.name())
        .filter(|n| !initializers.contains(n))
        .chain(
            model
                .graph
                .nodes
                .iter()
                .filter(|n| n.op_type() != "Constant")
                .flat_map(|n| n.output.iter().map(String::as_str)),
        )
        .filter(|n| !n.is_empty() && is_float(n))
        .map(str::to_string)
        .collect()
}

/// The plan for a cache that covers [`graph_activations`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Values that must get a scale of their own (the Q/DQ graph's activations); a subset of `observe`.
    pub required: BTreeSet<String>,
    /// Values to calibrate directly.
    pub observe: BTreeSet<String>,
    /// Value -> the Relu output whose scale it takes (the Relu is its only reader).
    pub borrowed: BTreeMap<String, String>,
}

impl Coverage {
    /// The plan for `compile`: every activation, with `required` (the Q/DQ graph's activations, which
    /// take a Concat group's shared scale) calibrated directly whatever their reader.
    pub fn with_required(model: &Model, required: BTreeSet<String>) -> Self {
        let mut cover = Coverage::of(model);
        cover.observe.extend(required.iter().cloned());
        cover.required = required;
        cover
    }

    /// Every activation, either observed or borrowing the scale of the Relu that alone reads it.
    pub fn of(model: &Model) -> Self {
        let g = &model.graph;
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            for v in n.input.iter().filter(|v| !v.is_empty()) {
                readers.entry(v.as_str()).or_default().push(i);
            }
        }
        let outputs: BTreeSet<&str> = g.outputs.iter().map(|v| v.name()).collect();
        let mut cover = Coverage::default();
        for v in graph_activations(model) {
            let relu = match readers.get(v.as_str()).map(Vec::as_slice) {
                Some(&[r]) if !outputs.contains(v.as_str()) => Some(&g.nodes[r]),
                _ => None,
            }
            .filter(|n| n.op_type() == "Relu")
            .and_then(|n| n.output.first());
            if let Some(out) = relu {
                cover.borrowed.insert(v, out.clone());
            } else {
                cover.observe.insert(v);
            }
        }
        cover
    }

    /// Adds the borrowed scales to a table calibrated on (at least) [`Coverage::observe`]. A value whose
    /// Relu output has no scale (not observed, or never seen as float) is left out.
    pub fn complete(&self, table: &mut ScaleTable) {
        for (v, relu_out) in &self.borrowed {
            if table.tensors.contains_key(v) {
                continue;
            }
            // A Relu reading a Relu-only value is rare, but the chain must end at an observed value.
            let mut source = relu_out;
            for _ in 0..self.borrowed.len() {
                match self.borrowed.get(source) {
                    Some(next) if !table.tensors.contains_key(source) => source = next,
                    _ => break,
                }
            }
            // `max` too: the FP16 range check needs only the positive side, since a negative value
            // that overflows to -inf still comes out of the Relu as 0.
            if let Some(s) = table.get(source) {
                table.tensors.insert(v.clone(), s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::TensorScale;
    use crate::onnx::proto::NodeProto;
    use crate::onnx::Graph;

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{op}_{output}")),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            ..Default::default()
        }
    }

    fn vi(name: &str) -> crate::onnx::proto::ValueInfoProto {
        crate::shape::ValueType::new(1, vec![crate::shape::Dim::Known(2)]).to_value_info(name)
    }

    /// x -> Conv c -> Relu r -> Conv d -> Add a (+ r) -> Relu y (output); r also feeds Resize z -> Relu q
    /// -> Relu w (output); a Constant k is both Convs' weight.
    fn model() -> Model {
        let graph = Graph {
            nodes: vec![
                node("Constant", &[], "k"),
                node("Conv", &["x", "k"], "c"),
                node("Relu", &["c"], "r"),
                node("Conv", &["r", "k"], "d"),
                node("Add", &["d", "r"], "a"),
                node("Relu", &["a"], "y"),
                node("Resize", &["r"], "z"),
                node("Relu", &["z"], "q"),
                node("Relu", &["q"], "w"),
            ],
            inputs: vec![vi("x")],
            outputs: vec![vi("y"), vi("w")],
            ..Default::default()
        };
        Model::new(Default::default(), graph)
    }

    #[test]
    fn values_under_a_sole_relu_borrow_its_scale() {
        let m = model();
        let all = graph_activations(&m);
        let names = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(all, names(&["a", "c", "d", "q", "r", "w", "x", "y", "z"]));
        let cover = Coverage::of(&m);
        // `r` has three readers and `d` feeds an Add: both are calibrated themselves.
        assert_eq!(cover.observe, names(&["d", "r", "w", "x", "y"]));
        let borrowed: Vec<(&str, &str)> = cover
            .borrowed
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(borrowed, [("a", "y"), ("c", "r"), ("q", "w"), ("z", "q")]);

        let mut table = ScaleTable::default();
        for (i, v) in cover.observe.iter().enumerate() {
            table.tensors.insert(
                v.clone(),
                TensorScale {
                    max: Some(100.0),
                    ..TensorScale::new(10.0 + i as f32)
                },
            );
        }
        cover.complete(&mut table);
        assert_eq!(table.tensors.keys().cloned().collect::<BTreeSet<_>>(), all);
        assert_eq!(table.get("c").unwrap().scale, table.get("r").unwrap().scale);
        assert_eq!(table.get("a").unwrap().amax, table.get("y").unwrap().amax);
        // z -> q -> w: the chain ends at the observed w.
        assert_eq!(table.get("z").unwrap().amax, table.get("w").unwrap().amax);
        assert_eq!(table.get("c").unwrap().max, Some(100.0));

        // A scale calibrated for a borrowing value is kept; one whose source was never seen is left out.
        let mut partial = ScaleTable::default();
        partial.insert("c", 3.0);
        partial.insert("w", 5.0);
        cover.complete(&mut partial);
        assert_eq!(partial.get("c").unwrap().amax, 3.0);
        assert!(partial.get("a").is_none());
        assert_eq!(partial.get("z").unwrap().amax, 5.0);
    }
}
