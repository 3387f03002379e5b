//! Rule `ocr-attention`: HRNet-OCR's ObjectAttentionBlock (and mmseg's SelfAttentionBlock) as exported,
//! anchored on its Softmax.
//!
//! ```text
//! query [N,Ck,H,W] ─ Reshape [N,Ck,HW] ─ Transpose(0,2,1) ─ (scale)* ─┐
//! key   [N,Ck,K,1] ─ Reshape [N,Ck,K] ─────────────────── (scale)* ─ MatMul [N,HW,K] ─ (scale)* ─ Softmax(last)
//! value [N,Ck,K,1] ─ Reshape [N,Ck,K] ─ Transpose(0,2,1) ─────────── MatMul(·, value) [N,HW,Ck]
//!   ─ Transpose(0,2,1) [N,Ck,HW] ─ Reshape [N,Ck,H,W]  ==>  OcrObjectAttention(query, key, value)
//! ```
//!
//! The scale (Mul or Div by a scalar constant) may sit after the first MatMul or on either of its
//! operands; the factors found are multiplied into the node's `scale`.

use super::matcher::{same, Check, View};
use super::Match;
use crate::ocr::{OcrKind, OcrNode};
use crate::onnx::graph::NodeId;
use crate::shape::Dim;

/// Whether the Softmax `id` looks like an attention's at all (its input, past any scale, is a MatMul).
pub(super) fn is_candidate(v: &View, id: NodeId) -> bool {
    let mut scratch = Vec::new();
    let (x, _) = v.unscale(&v.node(id).input[0], &mut scratch);
    v.producer(x, "MatMul", "").is_ok()
}

pub(super) fn match_at(v: &View, softmax: NodeId) -> Check<Match> {
    let mut nodes = vec![softmax];
    v.softmax_last_axis(softmax)?;

    // Upstream: MatMul(queryᵀ, key) -> scale* -> Softmax.
    let (logits, mut scale) = v.unscale(&v.node(softmax).input[0], &mut nodes);
    let sim = v.producer(logits, "MatMul", "the softmax input")?;
    v.only_read_by(logits, nodes[nodes.len() - 1], "the similarity map")?;
    nodes.push(sim);
    let (q_in, k_in) = {
        let n = v.node(sim);
        (n.input[0].as_str(), n.input[1].as_str())
    };

    let (q_t, s) = v.unscale(q_in, &mut nodes);
    scale *= s;
    let transpose_q = v.producer(q_t, "Transpose", "the similarity MatMul's left operand")?;
    v.swaps_last_two(transpose_q, "the query")?;
    v.only_read_by(
        q_t,
        reader(&nodes, sim, q_t != q_in),
        "the transposed query",
    )?;
    nodes.push(transpose_q);
    let q_flat = &v.node(transpose_q).input[0];
    let reshape_q = v.producer(q_flat, "Reshape", "the transposed query")?;
    v.only_read_by(q_flat, transpose_q, "the flattened query")?;
    let query = v.flattens_pixels(reshape_q, "the query")?;
    nodes.push(reshape_q);

    let before_key = nodes.len();
    let (k_flat, s) = v.unscale(k_in, &mut nodes);
    scale *= s;
    let reshape_k = v.producer(k_flat, "Reshape", "the similarity MatMul's right operand")?;
    let key_reader = if nodes.len() > before_key {
        nodes[nodes.len() - 1]
    } else {
        sim
    };
    v.only_read_by(k_flat, key_reader, "the flattened key")?;
    let key = v.flattens_pixels(reshape_k, "the key")?;
    nodes.push(reshape_k);

    // Downstream: Softmax -> MatMul(·, valueᵀ) -> Transpose -> Reshape to the query's shape.
    let sm_out = &v.node(softmax).output[0];
    let ctx_mm = v.sole_consumer(sm_out, "MatMul", "the softmax output")?;
    let mm = v.node(ctx_mm);
    if mm.input[0] != *sm_out {
        return Err(format!(
            "MatMul '{}' reads the attention map as its right operand; expected map × value",
            v.label(ctx_mm)
        ));
    }
    nodes.push(ctx_mm);
    let transpose_v = v.producer(
        &mm.input[1],
        "Transpose",
        "the context MatMul's right operand",
    )?;
    v.only_read_by(&mm.input[1], ctx_mm, "the transposed value")?;
    v.swaps_last_two(transpose_v, "the value")?;
    nodes.push(transpose_v);
    let v_flat = &v.node(transpose_v).input[0];
    let reshape_v = v.producer(v_flat, "Reshape", "the transposed value")?;
    v.only_read_by(v_flat, transpose_v, "the flattened value")?;
    let value = v.flattens_pixels(reshape_v, "the value")?;
    nodes.push(reshape_v);

    let transpose_o = v.sole_consumer(&mm.output[0], "Transpose", "the context MatMul output")?;
    v.swaps_last_two(transpose_o, "the context")?;
    nodes.push(transpose_o);
    let last = v.sole_consumer(
        &v.node(transpose_o).output[0],
        "Reshape",
        "the transposed context",
    )?;
    let q_shape = v.shape(query, "the query")?;
    v.unflattens_to(last, q_shape, "the context")?;
    nodes.push(last);

    // key and value are [N, Ck, K, 1] and agree with the query in N and Ck.
    let (k, val) = (v.shape(key, "the key")?, v.shape(value, "the value")?);
    for (name, s) in [("key", k), ("value", val)] {
        if !same(&s[3], &Dim::Known(1)) {
            return Err(format!(
                "the {name} has shape [{}], expected [N, Ck, K, 1]",
                super::matcher::join(s)
            ));
        }
        if !same(&s[0], &q_shape[0]) || !same(&s[1], &q_shape[1]) {
            return Err(format!(
                "the {name} [{}] and the query [{}] may differ in N or Ck",
                super::matcher::join(s),
                super::matcher::join(q_shape)
            ));
        }
    }
    if !same(&k[2], &val[2]) {
        return Err(format!(
            "key and value may differ in K ({} vs {})",
            k[2], val[2]
        ));
    }
    Ok(Match {
        op: OcrNode {
            kind: OcrKind::ObjectAttention,
            scale,
        },
        inputs: vec![query.to_string(), key.to_string(), value.to_string()],
        output: v.node(last).output[0].clone(),
        nodes,
        anchor: softmax,
    })
}

/// Who reads the transposed query: the topmost scale node peeled off it, or the MatMul itself.
fn reader(nodes: &[NodeId], matmul: NodeId, scaled: bool) -> NodeId {
    if scaled {
        nodes[nodes.len() - 1]
    } else {
        matmul
    }
}
