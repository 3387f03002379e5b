//! Shapes of the fused OCR nodes (domain `ocrnet`): the same contract as the C++ `validate`, written over
//! symbolic dims so dynamic models infer too. When every dim is a number the C++ check itself runs, so
//! the two sides cannot disagree on what is valid.

use super::{NodeCx, Out, RuleResult, FLOAT, FLOAT16};
use crate::ocr::{self, OcrDims, OcrKind, OcrNode};
use crate::shape::dim::show;
use crate::shape::{unify, Dim};

pub(crate) fn rule(cx: &NodeCx) -> RuleResult {
    let op = OcrNode::parse(cx.node)?;
    let names = op.kind.inputs();
    let mut shapes: Vec<&[Dim]> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let elem = cx.elem(i);
        if elem != 0 && elem != FLOAT && elem != FLOAT16 {
            return Err(format!(
                "{name} must be float32 or float16, has element type {elem}"
            ));
        }
        match cx.shape(i) {
            Some(s) if s.len() == 4 => shapes.push(s),
            Some(s) => return Err(format!("{name} must be 4-D NCHW, is {}", show(s))),
            None => return Ok(vec![Out::elem(cx.elem(0))]),
        }
    }
    let elem = cx.elem(0);
    let agree = |what: &str, a: &Dim, b: &Dim| {
        unify(a, b).map_err(|e| format!("{} of {what}: {e}", op.kind.op_type()))
    };
    let out = match op.kind {
        OcrKind::SpatialGather => {
            let (p, f) = (shapes[0], shapes[1]);
            let n = agree("N of probs and feats", &p[0], &f[0])?;
            agree("H of probs and feats", &p[2], &f[2])?;
            agree("W of probs and feats", &p[3], &f[3])?;
            vec![n, f[1].clone(), p[1].clone(), Dim::Known(1)]
        }
        OcrKind::ObjectAttention => {
            let (q, k, v) = (shapes[0], shapes[1], shapes[2]);
            let n = agree("N of query and key", &q[0], &k[0])?;
            agree("N of query and value", &q[0], &v[0])?;
            let ck = agree("Ck of query and key", &q[1], &k[1])?;
            agree("Ck of query and value", &q[1], &v[1])?;
            agree("K of key and value", &k[2], &v[2])?;
            agree("the last dim of key", &k[3], &Dim::Known(1))?;
            agree("the last dim of value", &v[3], &Dim::Known(1))?;
            vec![n, ck, q[2].clone(), q[3].clone()]
        }
    };
    if let Some(known) = all_known(&shapes) {
        let d = |i: usize| OcrDims::from_nchw(&known[i]).expect("4-D checked above");
        match op.kind {
            OcrKind::SpatialGather => ocr::gather_output_dims(d(0), d(1), op.scale),
            OcrKind::ObjectAttention => ocr::attention_output_dims(d(0), d(1), d(2), op.scale),
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(vec![Out::new(elem, out)])
}

fn all_known(shapes: &[&[Dim]]) -> Option<Vec<Vec<i64>>> {
    shapes
        .iter()
        .map(|s| s.iter().map(Dim::known).collect())
        .collect()
}
