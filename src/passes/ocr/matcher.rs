//! What the OCR fusion rules check, one small function per check. Each returns `Err(reason)` naming the
//! node and what was expected, which becomes the near-miss line of the candidate it stopped.

use crate::onnx::error::node_label;
use crate::onnx::graph::{attr, Index, NodeId};
use crate::onnx::proto::NodeProto;
use crate::shape::{Dim, Inference, Product};

pub(super) type Check<T> = Result<T, String>;

/// The graph, its lookup index and its inferred shapes: everything a rule looks at.
pub(super) struct View<'g> {
    pub index: Index<'g>,
    pub inf: &'g Inference,
    pub opset: i64,
}

impl<'g> View<'g> {
    pub fn node(&self, id: NodeId) -> &'g NodeProto {
        self.index.node(id)
    }

    pub fn label(&self, id: NodeId) -> String {
        node_label(self.node(id))
    }

    /// The node producing `value`, which must be a default-domain `op`.
    pub fn producer(&self, value: &str, op: &str, role: &str) -> Check<NodeId> {
        let id = self
            .index
            .producer(value)
            .ok_or_else(|| format!("{role} '{value}' is not produced by a node (expected {op})"))?;
        let n = self.node(id);
        if n.op_type() != op || !matches!(n.domain(), "" | "ai.onnx") {
            return Err(format!(
                "{role} comes from {} '{}', expected {op}",
                n.op_type(),
                node_label(n)
            ));
        }
        Ok(id)
    }

    /// The one node reading `value`, which must be a default-domain `op`. A value read elsewhere too (or a
    /// graph output) must survive the fusion, so the pattern cannot swallow its producer.
    pub fn sole_consumer(&self, value: &str, op: &str, role: &str) -> Check<NodeId> {
        if self.index.is_graph_output(value) {
            return Err(format!("{role} '{value}' is a graph output"));
        }
        match self.index.consumers(value) {
            [id] => {
                let n = self.node(*id);
                if n.op_type() != op || !matches!(n.domain(), "" | "ai.onnx") {
                    return Err(format!(
                        "{role} goes to {} '{}', expected {op}",
                        n.op_type(),
                        node_label(n)
                    ));
                }
                Ok(*id)
            }
            [] => Err(format!("{role} '{value}' is not read by any node")),
            many => Err(format!(
                "{role} '{value}' is read by {} nodes ({}), expected only a {op}",
                many.len(),
                many.iter()
                    .map(|&i| self.label(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Only `reader` reads `value` (and it is not a graph output): the value may disappear with the fusion.
    pub fn only_read_by(&self, value: &str, reader: NodeId, role: &str) -> Check<()> {
        if self.index.is_graph_output(value) {
            return Err(format!("{role} '{value}' is a graph output"));
        }
        match self.index.consumers(value) {
            [id] if *id == reader => Ok(()),
            others => Err(format!(
                "{role} '{value}' is also read by {}",
                others
                    .iter()
                    .filter(|&&i| i != reader)
                    .map(|&i| self.label(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    pub fn shape(&self, value: &str, role: &str) -> Check<&'g [Dim]> {
        self.inf
            .shape(value)
            .ok_or_else(|| format!("the shape of {role} '{value}' is not known"))
    }

    /// A Transpose swapping the last two axes of a rank-3 tensor: perm [0, 2, 1].
    pub fn swaps_last_two(&self, id: NodeId, role: &str) -> Check<()> {
        let perm = attr(self.node(id), "perm").map(|a| a.ints.clone());
        match perm.as_deref() {
            Some([0, 2, 1]) => Ok(()),
            other => Err(format!(
                "{role} Transpose '{}' has perm {:?}, expected [0, 2, 1]",
                self.label(id),
                other.unwrap_or(&[])
            )),
        }
    }

    /// A Softmax over the last axis of a rank-3 tensor (axis written 2 or -1; before opset 13 the axis
    /// flattens the dims from it on, which for the last axis is the same thing).
    pub fn softmax_last_axis(&self, id: NodeId) -> Check<()> {
        let n = self.node(id);
        let input = &n.input[0];
        let rank = self.shape(input, "the softmax input")?.len();
        if rank != 3 {
            return Err(format!(
                "Softmax '{}' input has rank {rank}, expected 3",
                self.label(id)
            ));
        }
        let default = if self.opset < 13 { 1 } else { -1 };
        let axis = crate::exec::ops::attr_i(n, "axis")?.unwrap_or(default);
        if axis != 2 && axis != -1 {
            return Err(format!(
                "Softmax '{}' runs over axis {axis}, expected the last (2 or -1)",
                self.label(id)
            ));
        }
        Ok(())
    }

    /// A Reshape of a rank-4 `[N, C, H, W]` tensor into `[N, C, H*W]`: it flattens the pixels and nothing
    /// else. Returns the reshaped (4-D) input.
    pub fn flattens_pixels(&self, id: NodeId, role: &str) -> Check<&'g str> {
        let n = self.node(id);
        let (input, output) = (n.input[0].as_str(), n.output[0].as_str());
        let fail = |why: String| format!("{role} Reshape '{}' {why}", self.label(id));
        let src = self.shape(input, role)?;
        let dst = self.shape(output, role)?;
        if src.len() != 4 || dst.len() != 3 {
            return Err(fail(format!(
                "maps rank {} to rank {}, expected [N, C, H, W] to [N, C, H*W]",
                src.len(),
                dst.len()
            )));
        }
        if !same(&src[0], &dst[0]) || !same(&src[1], &dst[1]) {
            return Err(fail(format!(
                "changes the leading dims ({}, {} to {}, {}); only H*W may be flattened",
                src[0], src[1], dst[0], dst[1]
            )));
        }
        let pixels = Product::of(&src[2..]).map(|p| p.to_dim());
        if !pixels.is_some_and(|p| same(&p, &dst[2])) {
            return Err(fail(format!(
                "gives {} as the last dim, expected H*W = {}*{}",
                dst[2], src[2], src[3]
            )));
        }
        Ok(input)
    }

    /// A Reshape of a rank-3 tensor into exactly `shape` (4-D): the inverse of [`View::flattens_pixels`].
    pub fn unflattens_to(&self, id: NodeId, shape: &[Dim], role: &str) -> Check<()> {
        let out = self.shape(&self.node(id).output[0], role)?;
        if out.len() != shape.len() || !out.iter().zip(shape).all(|(a, b)| same(a, b)) {
            return Err(format!(
                "{role} Reshape '{}' gives [{}], expected the query's shape [{}]",
                self.label(id),
                join(out),
                join(shape)
            ));
        }
        Ok(())
    }

    /// If `value` comes from a Mul or Div by a scalar constant that only this pattern reads, returns the
    /// value before it, the factor, and the node; otherwise `None`.
    pub fn scaled(&self, value: &str) -> Option<(&'g str, f32, NodeId)> {
        let id = self.index.producer(value)?;
        let n = self.node(id);
        if !matches!(n.domain(), "" | "ai.onnx")
            || !matches!(n.op_type(), "Mul" | "Div")
            || n.input.len() != 2
            || self.index.consumers(value).len() != 1
            || self.index.is_graph_output(value)
        {
            return None;
        }
        let scalar = |name: &str| {
            let t = self.inf.value(name)?;
            (t.len() == 1).then(|| t.as_f32s().first().copied())?
        };
        let factor = match (n.op_type(), scalar(&n.input[0]), scalar(&n.input[1])) {
            ("Mul", Some(c), None) => (n.input[1].as_str(), c),
            ("Mul", None, Some(c)) => (n.input[0].as_str(), c),
            ("Div", None, Some(c)) if c != 0.0 => (n.input[0].as_str(), 1.0 / c),
            _ => return None,
        };
        // The scalar must not change the shape: broadcasting a [1, 1, 1, 1] constant onto a rank-3 value
        // would add an axis.
        if self.inf.shape(value)?.len() != self.inf.shape(factor.0)?.len() {
            return None;
        }
        Some((factor.0, factor.1, id))
    }

    /// Strips any chain of scalar Mul/Div nodes above `value`, multiplying their factors.
    pub fn unscale(&self, mut value: &'g str, nodes: &mut Vec<NodeId>) -> (&'g str, f32) {
        let mut scale = 1.0f32;
        while let Some((inner, f, id)) = self.scaled(value) {
            scale *= f;
            nodes.push(id);
            value = inner;
        }
        (value, scale)
    }
}

/// Two dims that are provably equal: the same number or the same symbol.
pub(super) fn same(a: &Dim, b: &Dim) -> bool {
    !matches!(a, Dim::Unknown) && a == b
}

pub(super) fn join(d: &[Dim]) -> String {
    d.iter().map(Dim::to_string).collect::<Vec<_>>().join(", ")
}
