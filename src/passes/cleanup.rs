//! Removes nodes that only pass a value through at inference time: Identity, and Dropout outside
//! training. Their consumers read the input instead; a graph output keeps its name (the producer of
//! the input is renamed to it).

use crate::onnx::graph::{attr, Index};
use crate::onnx::proto::NodeProto;
use crate::onnx::{Error, Graph, Patch};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// What one run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub identity: usize,
    pub dropout: usize,
}

impl Removed {
    pub fn total(&self) -> usize {
        self.identity + self.dropout
    }
}

/// Removes pass-through nodes. Those feeding graph outputs go in a second patch: the rename that
/// keeps an output's name must not race with other consumers being re-routed to the same value.
pub fn run(graph: &mut Graph, opset: i64) -> Result<Removed, Error> {
    let mut removed = Removed::default();
    for to_outputs in [false, true] {
        let (patch, r) = plan(graph, opset, to_outputs);
        if r.total() > 0 {
            graph.apply(patch)?;
            removed.identity += r.identity;
            removed.dropout += r.dropout;
        }
    }
    Ok(removed)
}

fn plan(graph: &Graph, opset: i64, to_outputs: bool) -> (Patch, Removed) {
    let index = graph.index();
    let inputs: HashSet<&str> = graph.inputs.iter().map(|v| v.name()).collect();
    let mut patch = Patch::new(if to_outputs {
        "cleanup-outputs"
    } else {
        "cleanup"
    });
    let mut removed = Removed::default();
    // What each removed node's output now is, so that chains resolve to their root in one patch.
    let mut alias: HashMap<&str, &str> = HashMap::new();
    let mut claimed: HashSet<&str> = HashSet::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        let Some((x, y)) = pass_through(node, opset, &index, graph) else {
            continue;
        };
        if index.is_graph_output(y) != to_outputs {
            continue;
        }
        let root = *alias.get(x).unwrap_or(&x);
        if to_outputs {
            // The root's producer is renamed to the output's name: it needs a producer, and only
            // one output may take it.
            let produced = index.producer(root).is_some() && !inputs.contains(root);
            if !produced || index.is_graph_output(root) || !claimed.insert(root) {
                continue;
            }
        }
        alias.insert(y, root);
        patch.remove_node(id).shunt(y, root);
        match node.op_type() {
            "Identity" => removed.identity += 1,
            _ => removed.dropout += 1,
        }
    }
    (patch, removed)
}

/// `(input, output)` of a node that passes its input through unchanged, or `None`.
fn pass_through<'g>(
    node: &'g NodeProto,
    opset: i64,
    index: &Index,
    graph: &Graph,
) -> Option<(&'g str, &'g str)> {
    if !matches!(node.domain(), "" | "ai.onnx") {
        return None;
    }
    let x = node.input.first().filter(|x| !x.is_empty())?;
    let y = node.output.first().filter(|y| !y.is_empty())?;
    match node.op_type() {
        "Identity" if node.output.len() == 1 => Some((x, y)),
        "Dropout" if dropout_is_identity(node, opset, index, graph) => Some((x, y)),
        _ => None,
    }
}

/// A Dropout is the identity unless it trains (opset < 7: `is_test` unset; from 12: `training_mode`
/// not known false) or someone reads its mask.
fn dropout_is_identity(node: &NodeProto, opset: i64, index: &Index, graph: &Graph) -> bool {
    if let Some(mask) = node.output.get(1).filter(|m| !m.is_empty()) {
        if !index.consumers(mask).is_empty() || index.is_graph_output(mask) {
            return false;
        }
    }
    if opset < 7 && attr(node, "is_test").and_then(|a| a.i) != Some(1) {
        return false;
    }
    if opset >= 12 {
        if let Some(t) = node.input.get(2).filter(|t| !t.is_empty()) {
            let is_input = graph.inputs.iter().any(|v| v.name() == t);
            let value = index
                .initializer(t)
                .filter(|_| !is_input)
                .and_then(|p| Tensor::from_proto(p).ok());
            let off = value
                .and_then(|v| v.as_i64s())
                .is_some_and(|v| v.iter().all(|&b| b == 0));
            if !off {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{TensorProto, ValueInfoProto};
    use crate::tensor::Data;

    fn vi(name: &str) -> ValueInfoProto {
        crate::shape::ValueType::new(1, vec![crate::shape::Dim::Known(2)]).to_value_info(name)
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{op}_{}", outputs[0])),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn graph(nodes: Vec<NodeProto>, outputs: &[&str]) -> Graph {
        Graph {
            nodes,
            inputs: vec![vi("x")],
            outputs: outputs.iter().map(|o| vi(o)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn identity_chains_collapse() {
        let mut g = graph(
            vec![
                node("Relu", &["x"], &["a"]),
                node("Identity", &["a"], &["b"]),
                node("Identity", &["b"], &["c"]),
                node("Relu", &["c"], &["y"]),
            ],
            &["y"],
        );
        let r = run(&mut g, 13).unwrap();
        assert_eq!(r.identity, 2);
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(g.nodes[1].input, vec!["a".to_string()]);
    }

    #[test]
    fn graph_output_names_survive() {
        let mut g = graph(
            vec![
                node("Relu", &["x"], &["a"]),
                node("Identity", &["a"], &["y"]),
                node("Relu", &["a"], &["z"]),
            ],
            &["y", "z"],
        );
        run(&mut g, 13).unwrap();
        assert_eq!(g.nodes.len(), 2);
        // The Relu now produces the output's name, and its other reader follows.
        assert_eq!(g.nodes[0].output, vec!["y".to_string()]);
        assert_eq!(g.nodes[1].input, vec!["y".to_string()]);
        let outs: Vec<&str> = g.outputs.iter().map(|v| v.name()).collect();
        assert_eq!(outs, vec!["y", "z"]);
    }

    #[test]
    fn identities_that_must_stay() {
        // Input straight to output, and one value feeding two outputs.
        let mut g = graph(
            vec![
                node("Identity", &["x"], &["y"]),
                node("Relu", &["x"], &["a"]),
                node("Identity", &["a"], &["o1"]),
                node("Identity", &["a"], &["o2"]),
            ],
            &["y", "o1", "o2"],
        );
        let r = run(&mut g, 13).unwrap();
        assert_eq!(r.identity, 1);
        assert_eq!(g.nodes.len(), 3);
        // Running again changes nothing: a fixpoint.
        assert_eq!(run(&mut g, 13).unwrap().total(), 0);
    }

    #[test]
    fn dropout_in_training_or_with_mask_stays() {
        let on = TensorProto {
            name: Some("train".into()),
            data_type: Some(9),
            dims: vec![],
            raw_data: Some(vec![1u8].into()),
            ..Default::default()
        };
        let off = Tensor::new(vec![], Data::Bool(vec![false]))
            .unwrap()
            .to_proto("eval");
        let mut g = graph(
            vec![
                node("Dropout", &["x", "", "train"], &["a"]),
                node("Dropout", &["a", "", "eval"], &["b"]),
                node("Dropout", &["b"], &["c", "mask"]),
                node("Relu", &["c"], &["y"]),
                node("Dropout", &["y"], &["z", "unused_mask"]),
                node("Not", &["mask"], &["m"]),
            ],
            &["z", "m"],
        );
        g.initializers = vec![on, off];
        let r = run(&mut g, 13).unwrap();
        assert_eq!(r.dropout, 2);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, vec!["Dropout", "Dropout", "Relu", "Not"]);
        // Before opset 7 a Dropout without is_test trains.
        let mut old = graph(vec![node("Dropout", &["x"], &["y"])], &["y"]);
        old.nodes.insert(0, node("Relu", &["x"], &["r"]));
        old.nodes[1].input = vec!["r".into()];
        assert_eq!(run(&mut old, 6).unwrap().total(), 0);
    }
}
