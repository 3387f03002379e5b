//! Graph passes. [`simplify`] is the first stage after loading: pin input shapes, then remove
//! pass-through nodes ([`cleanup`]) and fold constants ([`fold`]) until nothing changes, drop what
//! no output needs, and write the inferred shapes into the graph.

pub mod cleanup;
pub mod fold;
pub mod fp16;
pub mod ocr;
pub mod pin;
pub mod qdq;

use crate::onnx::{self, Graph, Model};
use crate::shape;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Rounds of cleanup + folding before giving up on a fixpoint; each round folds whole chains, so
/// real models settle in two or three.
const MAX_ROUNDS: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct SimplifyOptions {
    /// Pins graph inputs to static shapes (a dynamic export compiled for one size).
    pub input_shapes: HashMap<String, Vec<i64>>,
    /// Write the inferred types of intermediate values into `value_info` (and refine the outputs').
    pub write_value_info: bool,
}

/// What [`simplify`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimplifyReport {
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub initializers_before: usize,
    pub initializers_after: usize,
    /// Identity nodes removed.
    pub removed_identity: usize,
    /// Dropout nodes removed (inference mode, mask unused).
    pub removed_dropout: usize,
    /// Nodes evaluated and replaced by initializers.
    pub folded: usize,
    /// Constant nodes turned into initializers.
    pub constants: usize,
    /// Nodes removed because no graph output needs them.
    pub dead_removed: usize,
    /// Cleanup + folding rounds run.
    pub rounds: usize,
    /// Graph inputs pinned to static shapes.
    pub pinned_inputs: Vec<String>,
    /// ValueInfo entries written.
    pub value_info: usize,
    pub ops_before: BTreeMap<String, usize>,
    pub ops_after: BTreeMap<String, usize>,
}

/// Simplifies a model in place. Graph input and output names never change. On error the model is
/// unchanged: the work happens on a copy of the graph (tensor bytes are shared, not copied).
pub fn simplify(model: &mut Model, opts: &SimplifyOptions) -> Result<SimplifyReport, onnx::Error> {
    let opset = model.opset().ok_or_else(|| onnx::Error::Graph {
        graph: model.graph.name().to_string(),
        reason: "the model imports no default-domain (ai.onnx) opset".into(),
    })?;
    let fold_opts = fold::FoldOptions {
        opset,
        max_elems: fold::MAX_FOLD_ELEMS,
        inputs_are_constant: model.proto.ir_version() < 4,
    };
    let mut work = model.graph.clone();
    let graph = &mut work;
    let mut report = SimplifyReport {
        nodes_before: graph.nodes.len(),
        initializers_before: graph.initializers.len(),
        ops_before: histogram(graph),
        ..Default::default()
    };
    report.pinned_inputs = pin::run(graph, &opts.input_shapes)?;
    loop {
        report.rounds += 1;
        let removed = cleanup::run(graph, opset)?;
        let folded = fold::run(graph, &fold_opts)?;
        report.removed_identity += removed.identity;
        report.removed_dropout += removed.dropout;
        report.folded += folded.nodes;
        report.constants += folded.constants;
        if removed.total() + folded.total() == 0 {
            break;
        }
        if report.rounds == MAX_ROUNDS {
            log::warn!("simplify: no fixpoint after {MAX_ROUNDS} rounds; stopping there");
            break;
        }
    }
    report.dead_removed = graph.remove_dead();
    if opts.write_value_info {
        let inf = shape::infer_opts(
            graph,
            &shape::InferOptions {
                opset,
                input_shapes: HashMap::new(),
                inputs_are_constant: fold_opts.inputs_are_constant,
            },
        )?;
        graph.value_info = inf.to_value_info(graph);
        report.value_info = graph.value_info.len();
        refine_outputs(graph, &inf);
    }
    report.nodes_after = graph.nodes.len();
    report.initializers_after = graph.initializers.len();
    report.ops_after = histogram(graph);
    model.graph = work;
    Ok(report)
}

/// Graph outputs take inferred dims where they declare none or a symbol (a pinned model's outputs
/// become static); a declared number is kept.
fn refine_outputs(graph: &mut Graph, inf: &shape::Inference) {
    for out in &mut graph.outputs {
        let Some(got) = inf.ty(out.name()) else {
            continue;
        };
        let merged = match shape::ValueType::from_value_info(out) {
            None => got.clone(),
            Some(decl) => {
                let shape = match (&decl.shape, &got.shape) {
                    (Some(d), Some(g)) if d.len() == g.len() => Some(
                        d.iter()
                            .zip(g)
                            .map(|(d, g)| {
                                if g.is_known() && !d.is_known() {
                                    g.clone()
                                } else {
                                    d.clone()
                                }
                            })
                            .collect(),
                    ),
                    (None, g) => g.clone(),
                    (d, _) => d.clone(),
                };
                shape::ValueType {
                    elem: if decl.elem != 0 { decl.elem } else { got.elem },
                    shape,
                }
            }
        };
        if merged.elem != 0 {
            let doc = out.doc_string.clone();
            *out = merged.to_value_info(out.name());
            out.doc_string = doc;
        }
    }
}

/// Value names not yet used in a graph, for the values a pass adds: `base`, else `base_1`, `base_2`, ...
pub(crate) struct FreshNames(std::collections::HashSet<String>);

impl FreshNames {
    /// Every value name `g` uses: node inputs and outputs, initializers, graph inputs.
    pub(crate) fn of(g: &Graph) -> Self {
        FreshNames(
            g.nodes
                .iter()
                .flat_map(|n| n.output.iter().chain(n.input.iter()).cloned())
                .chain(g.initializers.iter().map(|t| t.name().to_string()))
                .chain(g.inputs.iter().map(|v| v.name().to_string()))
                .collect(),
        )
    }

    pub(crate) fn fresh(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut k = 1;
        while self.0.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.0.insert(name.clone());
        name
    }
}

/// Node count per op type, domain-qualified outside the default domain.
pub fn histogram(graph: &Graph) -> BTreeMap<String, usize> {
    let mut ops = BTreeMap::new();
    for n in &graph.nodes {
        let key = match n.domain() {
            "" | "ai.onnx" => n.op_type().to_string(),
            d => format!("{d}::{}", n.op_type()),
        };
        *ops.entry(key).or_insert(0) += 1;
    }
    ops
}
