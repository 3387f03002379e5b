//! OCR fusion: finds HRNet-OCR's object-context subgraphs (the spatial gather and the object attention) and
//! replaces each with one plugin node (`OcrSpatialGather`, `OcrObjectAttention`, domain `ocrnet`) that
//! TensorRT's parser hands to our IPluginV3 creators and the executor runs through the C++ reference.
//!
//! Every Softmax is a candidate. Each rule ([`gather`], [`attention`]) is anchored on it and checks the
//! structure that matters (the softmax axis, the transposes' permutations, that the reshapes only flatten
//! H·W, the scale a scalar constant), never names. A candidate is rewritten only when every check holds;
//! otherwise the graph is left as it is and the report says which check failed (a near miss).

mod attention;
mod gather;
mod matcher;
pub mod validate;

use crate::ocr::{OcrKind, OcrNode, DOMAIN};
use crate::onnx::error::node_label;
use crate::onnx::graph::{NodeId, Patch};
use crate::onnx::proto::OperatorSetIdProto;
use crate::onnx::{self, Model};
use crate::shape::{self, Dim};
use matcher::View;
use serde::Serialize;
use std::collections::HashSet;

/// Version of the `ocrnet` operator set the fused nodes belong to.
pub const OPSET_VERSION: i64 = 1;

/// A subgraph a rule matched: the nodes it replaces and the node that replaces them.
#[derive(Debug, Clone)]
pub(crate) struct Match {
    pub op: OcrNode,
    pub inputs: Vec<String>,
    pub output: String,
    pub nodes: Vec<NodeId>,
    pub anchor: NodeId,
}

/// One fusion done.
#[derive(Debug, Clone, Serialize)]
pub struct Fused {
    /// `OcrSpatialGather` or `OcrObjectAttention`.
    pub op: String,
    /// The new node's name.
    pub node: String,
    /// The names of the nodes it replaced, in graph order.
    pub replaced: Vec<String>,
    pub inputs: Vec<String>,
    pub output: String,
    pub scale: f32,
}

/// A candidate a rule started on but did not rewrite, and why.
#[derive(Debug, Clone, Serialize)]
pub struct NearMiss {
    /// `ocr-gather` or `ocr-attention`.
    pub rule: String,
    /// The Softmax the rule was anchored on.
    pub anchor: String,
    /// The first check that failed.
    pub reason: String,
}

/// What [`fuse`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FuseReport {
    pub fused: Vec<Fused>,
    pub near_misses: Vec<NearMiss>,
    pub nodes_before: usize,
    pub nodes_after: usize,
}

impl FuseReport {
    /// How many nodes of this op type the pass wrote.
    pub fn count(&self, op: &str) -> usize {
        self.fused.iter().filter(|f| f.op == op).count()
    }
}

/// Fuses every OCR subgraph of `model` whose checks all hold. The model should be simplified first (shape
/// arithmetic folded, shapes inferable); on error it is left unchanged.
pub fn fuse(model: &mut Model) -> Result<FuseReport, onnx::Error> {
    let opset = model.opset().ok_or_else(|| onnx::Error::Graph {
        graph: model.graph.name().to_string(),
        reason: "the model imports no default-domain (ai.onnx) opset".into(),
    })?;
    let mut report = FuseReport {
        nodes_before: model.graph.nodes.len(),
        ..Default::default()
    };
    let inf = shape::infer(&model.graph, opset)?;
    let view = View {
        index: model.graph.index(),
        inf: &inf,
        opset,
    };
    let mut patch = Patch::new("ocr-fusion");
    let mut taken: HashSet<NodeId> = HashSet::new();
    let mut names: HashSet<String> = model
        .graph
        .nodes
        .iter()
        .map(|n| n.name().to_string())
        .collect();
    for (id, node) in model.graph.nodes.iter().enumerate() {
        if node.op_type() != "Softmax" || !matches!(node.domain(), "" | "ai.onnx") {
            continue;
        }
        let rules: [(&str, RuleFns); 2] = [
            ("ocr-gather", (gather::is_candidate, gather::match_at)),
            (
                "ocr-attention",
                (attention::is_candidate, attention::match_at),
            ),
        ];
        let mut candidate = false;
        for (rule, (is_candidate, match_at)) in rules {
            if !is_candidate(&view, id) {
                continue;
            }
            candidate = true;
            let found = match_at(&view, id)
                .and_then(|m| {
                    if m.nodes.iter().any(|n| taken.contains(n)) {
                        Err("overlaps a subgraph another rule already fused".to_string())
                    } else {
                        Ok(m)
                    }
                })
                .and_then(|m| within_plugin_limits(&view, m));
            match found {
                Ok(m) => {
                    taken.extend(m.nodes.iter().copied());
                    report.fused.push(apply(&view, &m, &mut patch, &mut names));
                }
                Err(reason) => report.near_misses.push(NearMiss {
                    rule: rule.to_string(),
                    anchor: node_label(node),
                    reason,
                }),
            }
        }
        // A Softmax whose map multiplies something but which neither rule recognised upstream still
        // looks like an OCR head to a user; say why it was not taken.
        if !candidate {
            if let Some(reason) = unrecognised(&view, id) {
                report.near_misses.push(NearMiss {
                    rule: "ocr".into(),
                    anchor: node_label(node),
                    reason,
                });
            }
        }
    }
    drop(view);
    if report.fused.is_empty() {
        report.nodes_after = report.nodes_before;
        return Ok(report);
    }
    let mut graph = model.graph.clone();
    graph.apply(patch)?;
    // The reshapes' shape inputs (Shape/Gather/Concat chains in dynamic exports) fed only fused nodes.
    graph.remove_dead();
    model.graph = graph;
    if !model
        .proto
        .opset_import
        .iter()
        .any(|o| o.domain() == DOMAIN)
    {
        model.proto.opset_import.push(OperatorSetIdProto {
            domain: Some(DOMAIN.into()),
            version: Some(OPSET_VERSION),
        });
    }
    report.nodes_after = model.graph.nodes.len();
    Ok(report)
}

/// The report as text: each fusion with the nodes it replaced, then each near miss with its reason.
pub fn describe(report: &FuseReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if report.fused.is_empty() {
        s.push_str("no OCR subgraph fused\n");
    }
    for f in &report.fused {
        let _ = writeln!(
            s,
            "fused {} '{}' (scale {}) from {} nodes: {}",
            f.op,
            f.node,
            f.scale,
            f.replaced.len(),
            f.replaced.join(", ")
        );
    }
    for m in &report.near_misses {
        let _ = writeln!(s, "near miss: {} at '{}': {}", m.rule, m.anchor, m.reason);
    }
    s
}

type RuleFns = (
    fn(&View, NodeId) -> bool,
    fn(&View, NodeId) -> matcher::Check<Match>,
);

/// The reason a Softmax feeding a MatMul matched neither rule, or `None` when it does not feed one.
fn unrecognised(view: &View, softmax: NodeId) -> Option<String> {
    let node = view.node(softmax);
    let feeds_matmul = view
        .index
        .consumers(&node.output[0])
        .iter()
        .any(|&c| view.node(c).op_type() == "MatMul");
    if !feeds_matmul {
        return None;
    }
    let from = match view.index.producer(&node.input[0]) {
        Some(p) => format!("{} '{}'", view.node(p).op_type(), view.label(p)),
        None => format!("'{}' (no node)", node.input[0]),
    };
    Some(format!(
        "the softmax input comes from {from}; expected a Reshape (gather) or a MatMul (attention), \
         with only Mul/Div by a scalar constant between"
    ))
}

/// `m` when the plugins can take it: at most [`crate::ocr::max_regions`] object regions. A model with more
/// classes (ADE20K's 150, COCO-Stuff's 171) keeps its OCR subgraphs as the standard ops they are, which
/// TensorRT and the executor run without a plugin, instead of a plugin node no engine build could take. A
/// K that shape inference does not know is left to the plugin's own check at engine build.
fn within_plugin_limits(view: &View, m: Match) -> matcher::Check<Match> {
    let (value, axis) = match m.op.kind {
        OcrKind::SpatialGather => (&m.inputs[0], 1),
        OcrKind::ObjectAttention => (&m.inputs[1], 2),
    };
    let max = crate::ocr::max_regions();
    match view.inf.shape(value).and_then(|s| s.get(axis)) {
        Some(Dim::Known(k)) if *k > max => Err(format!(
            "K = {k} object regions (classes), over the plugins' maximum of {max}; left as standard ops, \
             which TensorRT runs without the plugin"
        )),
        _ => Ok(m),
    }
}

/// Adds one match's edit to the patch and describes it.
fn apply(view: &View, m: &Match, patch: &mut Patch, names: &mut HashSet<String>) -> Fused {
    let mut ids = m.nodes.clone();
    ids.sort_unstable();
    for &id in &ids {
        patch.remove_node(id);
    }
    let name = unique_name(&view.label(m.anchor), m.op.kind.op_type(), names);
    patch.add_node(m.op.to_node(name.clone(), m.inputs.clone(), m.output.clone()));
    Fused {
        op: m.op.kind.op_type().to_string(),
        node: name,
        replaced: ids.iter().map(|&id| view.label(id)).collect(),
        inputs: m.inputs.clone(),
        output: m.output.clone(),
        scale: m.op.scale,
    }
}

/// The anchor's scope with the op type as the last segment (`/ocr_gather_head/Softmax` gives
/// `/ocr_gather_head/OcrSpatialGather`), made unique.
fn unique_name(anchor: &str, op: &str, names: &mut HashSet<String>) -> String {
    let base = match anchor.rsplit_once('/') {
        Some((scope, _)) => format!("{scope}/{op}"),
        None => format!("{anchor}/{op}"),
    };
    let mut name = base.clone();
    let mut i = 1;
    while !names.insert(name.clone()) {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}
