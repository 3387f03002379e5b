//! Constant folding: a node whose outputs shape inference already knows (Shape of a static tensor
//! and the arithmetic on it), or whose inputs are all constant, is evaluated with the executor's
//! kernels and replaced by initializers of the same names. Constant nodes become initializers.
//!
//! Bail-outs, in order: another domain, a non-deterministic op, a subgraph, an output that is a
//! graph output (an output must stay produced by a node), an op the kernels lack, an input that is
//! not constant, an output larger than the size cap (so a `ConstantOfShape` of a huge shape stays a
//! node).

use crate::exec::ops as kernels;
use crate::onnx::error::node_label;
use crate::onnx::proto::NodeProto;
use crate::onnx::{Error, Graph, Patch};
use crate::shape::{self, InferOptions, Inference};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// The largest tensor folding materialises, in elements.
pub const MAX_FOLD_ELEMS: usize = 1 << 20;

/// Ops whose outputs differ from run to run.
const NON_DETERMINISTIC: &[&str] = &[
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
];

#[derive(Debug, Clone)]
pub struct FoldOptions {
    pub opset: i64,
    pub max_elems: usize,
    /// Initializers also listed as graph inputs are constants (IR < 4), not caller-overridable
    /// defaults.
    pub inputs_are_constant: bool,
}

/// What one run folded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Folded {
    /// Nodes evaluated and replaced by initializers.
    pub nodes: usize,
    /// Constant nodes turned into initializers.
    pub constants: usize,
}

impl Folded {
    pub fn total(&self) -> usize {
        self.nodes + self.constants
    }
}

pub fn run(graph: &mut Graph, opts: &FoldOptions) -> Result<Folded, Error> {
    let inf = shape::infer_opts(
        graph,
        &InferOptions {
            opset: opts.opset,
            input_shapes: HashMap::new(),
            inputs_are_constant: opts.inputs_are_constant,
        },
    )?;
    let mut folder = Folder {
        opts,
        inf: &inf,
        overridable: if opts.inputs_are_constant {
            HashSet::new()
        } else {
            graph.inputs.iter().map(|v| v.name()).collect()
        },
        outputs: graph.outputs.iter().map(|v| v.name()).collect(),
        initializers: graph.initializers.iter().map(|t| (t.name(), t)).collect(),
        folded: HashMap::new(),
    };
    let mut patch = Patch::new("fold");
    let mut done = Folded::default();
    for (id, node) in graph.nodes.iter().enumerate() {
        let Some(values) = folder.fold(node) else {
            continue;
        };
        patch.remove_node(id);
        for (name, value) in values {
            patch.add_initializer(value.to_proto(&name));
            folder.folded.insert(name, value);
        }
        if node.op_type() == "Constant" {
            done.constants += 1;
        } else {
            done.nodes += 1;
        }
    }
    if done.total() > 0 {
        graph.apply(patch)?;
    }
    Ok(done)
}

struct Folder<'g> {
    opts: &'g FoldOptions,
    inf: &'g Inference,
    overridable: HashSet<&'g str>,
    outputs: HashSet<&'g str>,
    initializers: HashMap<&'g str, &'g crate::onnx::proto::TensorProto>,
    /// Values folded earlier in this run, beyond what inference kept.
    folded: HashMap<String, Tensor>,
}

impl Folder<'_> {
    /// The node's outputs as constants, or `None` to leave it.
    fn fold(&self, node: &NodeProto) -> Option<Vec<(String, Tensor)>> {
        let op = node.op_type();
        if !matches!(node.domain(), "" | "ai.onnx") || NON_DETERMINISTIC.contains(&op) {
            return None;
        }
        if node
            .attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
        {
            return None;
        }
        let outs: Vec<&String> = node.output.iter().filter(|o| !o.is_empty()).collect();
        if outs.is_empty() || outs.iter().any(|o| self.outputs.contains(o.as_str())) {
            return None;
        }
        // Inference may already know every output: shape arithmetic on static shapes.
        if let Some(known) = outs
            .iter()
            .map(|o| Some(((*o).clone(), self.inf.value(o)?.clone())))
            .collect()
        {
            return Some(known);
        }
        if !kernels::supports(op) {
            return None;
        }
        // A Constant is already materialised: no cap. Anything else must be known small before it
        // is built.
        if op != "Constant" {
            let small = outs.iter().all(|o| {
                self.inf
                    .ty(o)
                    .and_then(shape::ValueType::numel)
                    .is_some_and(|n| n <= self.opts.max_elems)
            });
            if !small {
                return None;
            }
        }
        let decoded: Vec<Option<Tensor>> = node
            .input
            .iter()
            .map(|name| {
                if name.is_empty() {
                    Some(None)
                } else {
                    self.constant(name).map(Some)
                }
            })
            .collect::<Option<_>>()?;
        let inputs: Vec<Option<&Tensor>> = decoded.iter().map(Option::as_ref).collect();
        let values = match kernels::eval(node, &inputs, self.opts.opset) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("fold: leaving {} ({op}): {e}", node_label(node));
                return None;
            }
        };
        if values.len() < node.output.len() {
            return None;
        }
        Some(
            node.output
                .iter()
                .zip(values)
                .filter(|(o, _)| !o.is_empty())
                .map(|(o, v)| (o.clone(), v))
                .collect(),
        )
    }

    /// A constant input's value: known to inference, folded in this run, or a (not overridable)
    /// initializer within the size cap.
    fn constant(&self, name: &str) -> Option<Tensor> {
        if let Some(t) = self.inf.value(name).or_else(|| self.folded.get(name)) {
            return Some(t.clone());
        }
        if self.overridable.contains(name) {
            return None;
        }
        let proto = self.initializers.get(name)?;
        let numel = proto
            .dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?))?;
        if numel > self.opts.max_elems {
            return None;
        }
        Tensor::from_proto(proto).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{AttributeProto, ValueInfoProto};
    use crate::shape::{Dim, ValueType};

    fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
        ValueType::new(1, dims.iter().map(|&d| Dim::Known(d)).collect()).to_value_info(name)
    }

    fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{op}_{output}")),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attrs,
            ..Default::default()
        }
    }

    fn opts() -> FoldOptions {
        FoldOptions {
            opset: 13,
            max_elems: 1000,
            inputs_are_constant: false,
        }
    }

    fn value_attr(t: &Tensor) -> AttributeProto {
        AttributeProto {
            name: Some("value".into()),
            r#type: Some(4),
            t: Some(t.to_proto("")),
            ..Default::default()
        }
    }

    #[test]
    fn shape_chain_of_static_input_folds() {
        let mut g = Graph {
            inputs: vec![vi("x", &[1, 3, 4, 6])],
            outputs: vec![vi("y", &[1, 3, 24])],
            nodes: vec![
                node("Shape", &["x"], "s", vec![]),
                node(
                    "Constant",
                    &[],
                    "idx",
                    vec![value_attr(&Tensor::vec_i64(vec![0, 1]))],
                ),
                node("Gather", &["s", "idx"], "nc", vec![]),
                node(
                    "Constant",
                    &[],
                    "m1",
                    vec![value_attr(&Tensor::vec_i64(vec![-1]))],
                ),
                node(
                    "Concat",
                    &["nc", "m1"],
                    "spec",
                    vec![crate::exec::ops::test_util::int("axis", 0)],
                ),
                node("Reshape", &["x", "spec"], "y", vec![]),
            ],
            ..Default::default()
        };
        let f = run(&mut g, &opts()).unwrap();
        assert_eq!(
            f,
            Folded {
                nodes: 3,
                constants: 2
            }
        );
        assert_eq!(g.nodes.len(), 1);
        let spec = Tensor::from_proto(g.initializer("spec").unwrap()).unwrap();
        assert_eq!(spec, Tensor::vec_i64(vec![1, 3, -1]));
    }

    #[test]
    fn size_cap_and_randomness_stop_folding() {
        let big = Tensor::vec_i64(vec![100, 100]);
        let mut g = Graph {
            inputs: vec![vi("x", &[2])],
            outputs: vec![vi("y", &[100, 100]), vi("r", &[2])],
            nodes: vec![
                node("Constant", &[], "shape", vec![value_attr(&big)]),
                node("ConstantOfShape", &["shape"], "c", vec![]),
                node("Add", &["c", "c"], "y", vec![]),
                node("RandomUniformLike", &["x"], "r", vec![]),
            ],
            ..Default::default()
        };
        let f = run(&mut g, &opts()).unwrap();
        // The Constant becomes an initializer; the 10 000-element ConstantOfShape stays a node.
        assert_eq!(
            f,
            Folded {
                nodes: 0,
                constants: 1
            }
        );
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, vec!["ConstantOfShape", "Add", "RandomUniformLike"]);
    }

    #[test]
    fn overridable_initializers_are_not_constants() {
        let w = Tensor::vec_f32(vec![2], vec![1.0, 2.0]).unwrap();
        let mut g = Graph {
            inputs: vec![vi("x", &[2]), vi("w", &[2])],
            outputs: vec![vi("y", &[2])],
            initializers: vec![w.to_proto("w")],
            nodes: vec![
                node("Neg", &["w"], "nw", vec![]),
                node("Add", &["x", "nw"], "y", vec![]),
            ],
            ..Default::default()
        };
        assert_eq!(run(&mut g, &opts()).unwrap().total(), 0);
        let o = FoldOptions {
            inputs_are_constant: true,
            ..opts()
        };
        assert_eq!(run(&mut g, &o).unwrap().nodes, 1);
        let nw = Tensor::from_proto(g.initializer("nw").unwrap()).unwrap();
        assert_eq!(nw.as_f32s(), vec![-1.0, -2.0]);
    }
}
