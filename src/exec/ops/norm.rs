//! The training-time layers in inference mode: BatchNormalization with running statistics, and
//! Dropout as the identity.

use super::float::{f32_in, f32_out, f32_same};
use super::par::{self, CHUNK};
use super::{Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

/// BatchNormalization: `Y = (X − mean) / sqrt(var + epsilon) · scale + B` per channel (axis 1),
/// computed as onnxruntime does, `X · a + b` with `a = scale / sqrt(var + epsilon)` and
/// `b = B − mean · a`. Training mode and the pre-9 per-activation form are refused.
pub fn batch_norm(cx: &Ctx) -> OpResult<Tensor> {
    if cx.opset >= 14 && cx.attr_i("training_mode")?.unwrap_or(0) != 0 {
        return Err(OpError::unsupported("BatchNormalization in training mode"));
    }
    if cx.opset < 9 && cx.attr_i("spatial")?.unwrap_or(1) == 0 {
        return Err(OpError::unsupported("BatchNormalization with spatial=0"));
    }
    if cx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(OpError::unsupported(
            "BatchNormalization's running statistics outputs",
        ));
    }
    let x = cx.input(0)?;
    let (xv, prec) = f32_in(x, "BatchNormalization")?;
    if x.shape.len() < 2 {
        return Err(OpError::invalid(format!(
            "BatchNormalization takes [N, C, ...], got {:?}",
            x.shape
        )));
    }
    let c = x.shape[1];
    let mut params = Vec::with_capacity(4);
    for (i, name) in ["scale", "B", "mean", "var"].iter().enumerate() {
        let t = cx.input(i + 1)?;
        if t.shape != [c] {
            return Err(OpError::invalid(format!(
                "{name} {:?} should be [{c}]",
                t.shape
            )));
        }
        // The statistics may be f32 while X is f16 (opset 15's T1/T2).
        let v = match f32_same(t, prec, "BatchNormalization") {
            Ok(v) => v,
            Err(_) => f32_in(t, "BatchNormalization")?.0,
        };
        params.push(v);
    }
    let eps = match cx.attr("epsilon") {
        None => 1e-5,
        Some(a) => {
            a.f.ok_or_else(|| OpError::invalid("attribute 'epsilon' is not a float"))?
        }
    };
    let a: Vec<f32> = (0..c)
        .map(|i| params[0][i] / (params[3][i] + eps).sqrt())
        .collect();
    let b: Vec<f32> = (0..c).map(|i| params[1][i] - params[2][i] * a[i]).collect();
    let plane = x.shape[2..].iter().product::<usize>().max(1);
    let mut y = crate::exec::recycle::f32_buffer(xv.len());
    // Chunks of whole planes, each plane one channel.
    par::chunks_mut(&mut y, plane * (CHUNK / plane).max(1), |start, out| {
        for (j, out) in out.chunks_mut(plane).enumerate() {
            let at = start + j * plane;
            let ch = at / plane % c;
            for (o, &v) in out.iter_mut().zip(&xv[at..]) {
                *o = v * a[ch] + b[ch];
            }
        }
    });
    Ok(f32_out(x.shape.clone(), y, prec))
}

/// Dropout at inference: the input, and a mask of all ones when asked for (bool from opset 10, the
/// input's type before). Training (`is_test` unset before 7, `training_mode` true from 12) is
/// refused.
pub fn dropout(cx: &Ctx) -> OpResult<Vec<Tensor>> {
    let x = cx.input(0)?;
    if cx.opset < 7 && cx.attr_i("is_test")?.unwrap_or(0) == 0 {
        return Err(OpError::unsupported("Dropout in training mode (is_test=0)"));
    }
    if cx.opset >= 12 {
        if let Some(t) = cx.opt_input(2) {
            let on = t
                .as_i64s()
                .ok_or_else(|| OpError::invalid("training_mode must be bool"))?;
            if on.iter().any(|&v| v != 0) {
                return Err(OpError::unsupported("Dropout in training mode"));
            }
        }
    }
    let mut out = vec![x.clone()];
    // The mask whenever the node has a second output, named or not, so that callers get one
    // value per output.
    if cx.node.output.len() > 1 {
        let n = x.len();
        let data = if cx.opset >= 10 {
            Data::Bool(vec![true; n])
        } else {
            let ones = Tensor {
                shape: vec![n],
                data: Data::F32(vec![1.0; n]),
            };
            super::cast::convert(&ones.data, x.dtype())?
        };
        out.push(Tensor {
            shape: x.shape.clone(),
            data,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn batch_norm_per_channel() {
        let x = f32s(&[1, 2, 2], &[1., 2., 3., 4.]);
        let scale = f32s(&[2], &[2., 1.]);
        let b = f32s(&[2], &[0., 1.]);
        let mean = f32s(&[2], &[1., 3.]);
        let var = f32s(&[2], &[4., 0.25]);
        let n = node("BatchNormalization", 5, vec![float("epsilon", 0.0)]);
        let y = run(&n, &[&x, &scale, &b, &mean, &var], 15).unwrap();
        // Channel 0: (x - 1) / 2 * 2; channel 1: (x - 3) / 0.5 + 1.
        assert_eq!(y, f32s(&[1, 2, 2], &[0., 1., 1., 3.]));
        let x2 = f32s(&[2, 2], &[1., 3., 3., 4.]);
        let y = run(&n, &[&x2, &scale, &b, &mean, &var], 15).unwrap();
        assert_eq!(y, f32s(&[2, 2], &[0., 1., 2., 3.]));
        let mut train = node("BatchNormalization", 5, vec![int("training_mode", 1)]);
        assert!(matches!(
            run(&train, &[&x, &scale, &b, &mean, &var], 15),
            Err(OpError::Unsupported(_))
        ));
        train.attribute.clear();
        train.output.push("running_mean".into());
        assert!(run(&train, &[&x, &scale, &b, &mean, &var], 9).is_err());
        let short = f32s(&[1], &[1.]);
        assert!(run(&n, &[&x, &short, &b, &mean, &var], 15).is_err());
    }

    #[test]
    fn dropout_is_identity_with_a_mask() {
        let x = f32s(&[2], &[1., 2.]);
        let mut n = node("Dropout", 1, vec![float("ratio", 0.5)]);
        n.output.push("mask".into());
        let out = eval(&n, &[Some(&x)], 13).unwrap();
        assert_eq!(out[0], x);
        assert_eq!(out[1].data, Data::Bool(vec![true, true]));
        let old = eval(&n, &[Some(&x)], 7).unwrap();
        assert_eq!(old[1], f32s(&[2], &[1., 1.]));
        let t = Tensor::new(vec![], Data::Bool(vec![true])).unwrap();
        let n3 = node("Dropout", 3, vec![]);
        let r = f32s(&[], &[0.5]);
        assert!(eval(&n3, &[Some(&x), Some(&r), Some(&t)], 13).is_err());
        assert!(eval(&node("Dropout", 1, vec![]), &[Some(&x)], 6).is_err());
    }

    fn eval(
        n: &crate::onnx::proto::NodeProto,
        ins: &[Option<&Tensor>],
        opset: i64,
    ) -> OpResult<Vec<Tensor>> {
        super::super::eval(n, ins, opset)
    }
}
