//! The fused OCR nodes (`OcrSpatialGather`, `OcrObjectAttention` in domain `ocrnet`), evaluated by the C++
//! reference in `cpp/ocr` so that the executor, the CUDA kernels and the TensorRT plugins share one
//! definition of the math.

use super::{Ctx, OpError, OpResult};
use crate::ocr::{self, OcrDims, OcrKind, OcrNode};
use crate::tensor::{Data, Tensor};

pub(crate) fn eval(cx: &Ctx) -> OpResult<Tensor> {
    let op = OcrNode::parse(cx.node).map_err(OpError::invalid)?;
    let names = op.kind.inputs();
    let mut args = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let t = cx.input(i)?;
        let Data::F32(v) = &t.data else {
            return Err(OpError::unsupported(format!(
                "{name} of type {:?} (the CPU reference computes in float32)",
                t.dtype()
            )));
        };
        let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        let d = OcrDims::from_nchw(&dims).ok_or_else(|| {
            OpError::invalid(format!("{name} must be 4-D NCHW, is {:?}", t.shape))
        })?;
        args.push((v.as_slice(), d));
    }
    let result = match op.kind {
        OcrKind::SpatialGather => {
            ocr::spatial_gather(args[0].0, args[0].1, args[1].0, args[1].1, op.scale)
        }
        OcrKind::ObjectAttention => ocr::object_attention(
            args[0].0, args[0].1, args[1].0, args[1].1, args[2].0, args[2].1, op.scale,
        ),
    };
    let (data, dims) = result.map_err(|e| OpError::invalid(e.to_string()))?;
    Tensor::new(dims.iter().map(|&d| d as usize).collect(), Data::F32(data))
        .map_err(|e| OpError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::ocr::{OcrKind, OcrNode};

    #[test]
    fn gather_runs_through_eval_and_checks_inputs() {
        let node = OcrNode {
            kind: OcrKind::SpatialGather,
            scale: 1.0,
        }
        .to_node("g".into(), vec!["in0".into(), "in1".into()], "out".into());
        // Two regions over 3 pixels: one uniform, one concentrated on pixel 2.
        let probs = f32s(&[1, 2, 1, 3], &[0.0, 0.0, 0.0, -100.0, -100.0, 100.0]);
        let feats = f32s(&[1, 1, 1, 3], &[3.0, 6.0, 9.0]);
        let out = run(&node, &[&probs, &feats], 13).unwrap();
        assert_eq!(out.shape, vec![1, 1, 2, 1]);
        let v = out.as_f32s();
        assert!(
            (v[0] - 6.0).abs() < 1e-6 && (v[1] - 9.0).abs() < 1e-6,
            "{v:?}"
        );

        let flat = f32s(&[2, 3], &[0.0; 6]);
        let err = run(&node, &[&flat, &feats], 13).unwrap_err();
        assert!(err.to_string().contains("probs must be 4-D"), "{err}");
    }
}
