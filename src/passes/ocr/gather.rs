//! Rule `ocr-gather`: HRNet-OCR's SpatialGather_Module as exported, anchored on its Softmax.
//!
//! ```text
//! probs [N,K,H,W] ─ Reshape [N,K,HW] ─ (Mul|Div scalar)* ─ Softmax(last axis) ─┐
//! feats [N,C,H,W] ─ Reshape [N,C,HW] ─ Transpose(0,2,1) ────────────────────── MatMul [N,K,C]
//!   ─ Transpose(0,2,1) [N,C,K] ─ Unsqueeze(3) | Reshape [N,C,K,1]  ==>  OcrSpatialGather(probs, feats)
//! ```
//!
//! The scale may also sit on the 4-D probs before the Reshape. Every intermediate value must be read by the
//! next node of the pattern only; the pattern's two inputs may be read by anyone.

use super::matcher::{same, Check, View};
use super::Match;
use crate::ocr::{OcrKind, OcrNode};
use crate::onnx::graph::{attr, NodeId};
use crate::shape::Dim;

/// Whether the Softmax `id` looks like a gather's at all (its input, past any scale, is a Reshape): only
/// then is a failed check worth reporting as a near miss.
pub(super) fn is_candidate(v: &View, id: NodeId) -> bool {
    let mut scratch = Vec::new();
    let (x, _) = v.unscale(&v.node(id).input[0], &mut scratch);
    v.producer(x, "Reshape", "").is_ok()
}

pub(super) fn match_at(v: &View, softmax: NodeId) -> Check<Match> {
    let mut nodes = vec![softmax];
    v.softmax_last_axis(softmax)?;

    // Upstream: probs -> Reshape -> scale* -> Softmax.
    let (flat, mut scale) = v.unscale(&v.node(softmax).input[0], &mut nodes);
    let reshape_p = v.producer(flat, "Reshape", "the softmax input")?;
    // Read only by the topmost node of the chain: the highest scale node, or the Softmax itself.
    v.only_read_by(flat, nodes[nodes.len() - 1], "the flattened probs")?;
    nodes.push(reshape_p);
    let probs4 = v.flattens_pixels(reshape_p, "the probs")?;
    let (probs, pre) = v.unscale(probs4, &mut nodes);
    if probs != probs4 {
        v.only_read_by(probs4, reshape_p, "the scaled probs")?;
    }
    scale *= pre;

    // Downstream: Softmax -> MatMul(probs, featsᵀ).
    let sm_out = &v.node(softmax).output[0];
    let matmul = v.sole_consumer(sm_out, "MatMul", "the softmax output")?;
    let mm = v.node(matmul);
    if mm.input[0] != *sm_out {
        return Err(format!(
            "MatMul '{}' reads the softmax as its right operand; the gather multiplies it from the left",
            v.label(matmul)
        ));
    }
    nodes.push(matmul);
    let transpose_f = v.producer(&mm.input[1], "Transpose", "the MatMul's right operand")?;
    v.only_read_by(&mm.input[1], matmul, "the transposed feats")?;
    v.swaps_last_two(transpose_f, "the feats")?;
    nodes.push(transpose_f);
    let flat_f = &v.node(transpose_f).input[0];
    let reshape_f = v.producer(flat_f, "Reshape", "the transposed feats")?;
    v.only_read_by(flat_f, transpose_f, "the flattened feats")?;
    let feats = v.flattens_pixels(reshape_f, "the feats")?;
    nodes.push(reshape_f);

    // MatMul -> Transpose -> Unsqueeze(3) (or a Reshape adding the trailing 1).
    let transpose_o = v.sole_consumer(&mm.output[0], "Transpose", "the MatMul output")?;
    v.swaps_last_two(transpose_o, "the context")?;
    nodes.push(transpose_o);
    let ctx = &v.node(transpose_o).output[0];
    let last = v
        .sole_consumer(ctx, "Unsqueeze", "the transposed context")
        .or_else(|e| {
            v.sole_consumer(ctx, "Reshape", "the transposed context")
                .map_err(|_| e)
        })?;
    adds_trailing_one(v, last)?;
    nodes.push(last);

    // The two inputs agree in N, H and W (the rule cannot prove it for unknown dims).
    let (p, f) = (v.shape(probs, "probs")?, v.shape(feats, "feats")?);
    for (i, dim) in [(0, "N"), (2, "H"), (3, "W")] {
        if !same(&p[i], &f[i]) {
            return Err(format!(
                "probs and feats may differ in {dim} ({} vs {})",
                p[i], f[i]
            ));
        }
    }
    Ok(Match {
        op: OcrNode {
            kind: OcrKind::SpatialGather,
            scale,
        },
        inputs: vec![probs.to_string(), feats.to_string()],
        output: v.node(last).output[0].clone(),
        nodes,
        anchor: softmax,
    })
}

/// `[N, C, K]` -> `[N, C, K, 1]`: an Unsqueeze of axis 3 (or -1), or a Reshape to exactly that.
fn adds_trailing_one(v: &View, id: NodeId) -> Check<()> {
    let n = v.node(id);
    let out = v.shape(&n.output[0], "the gather output")?;
    let src = v.shape(&n.input[0], "the transposed context")?;
    let ok = out.len() == 4
        && src.len() == 3
        && same(&out[3], &Dim::Known(1))
        && (0..3).all(|i| same(&out[i], &src[i]));
    if n.op_type() == "Unsqueeze" {
        let axes = match attr(n, "axes") {
            Some(a) => Some(a.ints.clone()),
            None => n
                .input
                .get(1)
                .and_then(|a| v.inf.value(a))
                .and_then(|t| t.as_i64s()),
        };
        if !matches!(axes.as_deref(), Some([3]) | Some([-1])) {
            return Err(format!(
                "Unsqueeze '{}' adds axes {:?}, expected [3]",
                v.label(id),
                axes.unwrap_or_default()
            ));
        }
    }
    if !ok {
        return Err(format!(
            "{} '{}' does not turn [N, C, K] into [N, C, K, 1]",
            n.op_type(),
            v.label(id)
        ));
    }
    Ok(())
}
