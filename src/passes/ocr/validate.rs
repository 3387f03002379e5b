//! Structural validation of a graph that may hold fused OCR nodes: what TensorRT's parser and our plugin
//! creators will need, checked before any engine is built. Every value is produced (in order, once), every
//! node's output types and ranks are inferable, and each plugin node carries the attributes the parser
//! needs, in a domain the model imports.

use crate::ocr::{OcrNode, DOMAIN};
use crate::onnx::error::node_label;
use crate::onnx::{self, Model};
use crate::shape;
use serde::Serialize;

/// What [`validate`] looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Validation {
    pub nodes: usize,
    pub plugin_nodes: usize,
    /// Values whose shape inference gave no rank (allowed only outside plugin nodes; listed for the
    /// report).
    pub unshaped: Vec<String>,
}

/// Checks `model`; `Err` lists every problem found (graph-level problems stop the check early).
pub fn validate(model: &Model) -> Result<Validation, onnx::Error> {
    let fail = |reason: String| onnx::Error::Graph {
        graph: model.graph.name().to_string(),
        reason,
    };
    let mut graph = model.graph.clone();
    graph.topo_sort()?;
    let opset = model
        .opset()
        .ok_or_else(|| fail("the model imports no default-domain opset".into()))?;
    let inf = shape::infer(&graph, opset)?;

    let mut problems = Vec::new();
    let mut report = Validation {
        nodes: graph.nodes.len(),
        ..Default::default()
    };
    let imports_ours = model
        .proto
        .opset_import
        .iter()
        .any(|o| o.domain() == DOMAIN);
    for node in &graph.nodes {
        let label = node_label(node);
        if OcrNode::is_ocr(node) {
            report.plugin_nodes += 1;
            if node.domain() != DOMAIN {
                problems.push(format!(
                    "node '{label}' ({}) is in domain '{}', expected '{DOMAIN}'",
                    node.op_type(),
                    node.domain()
                ));
            }
            if let Err(why) = OcrNode::parse(node) {
                problems.push(format!("node '{label}' ({}): {why}", node.op_type()));
            }
            if !imports_ours {
                problems.push(format!(
                    "node '{label}' uses domain '{DOMAIN}', which the model does not import"
                ));
            }
            for value in node.input.iter().chain(&node.output) {
                if inf.shape(value).map(<[_]>::len) != Some(4) {
                    problems.push(format!(
                        "node '{label}' ({}): the shape of '{value}' cannot be inferred as 4-D",
                        node.op_type()
                    ));
                }
            }
        }
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            match inf.ty(out) {
                Some(t) if t.elem != 0 && t.shape.is_some() => {}
                _ => report.unshaped.push(out.clone()),
            }
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        problems.dedup();
        Err(fail(format!(
            "structural validation failed: {}",
            problems.join("; ")
        )))
    }
}
