//! Float tensors in and out of the f32 kernels: f32 is borrowed as is, f16 and bf16 are widened
//! to f32 and the result rounded back once, and anything else is refused with the op's name.

use super::{OpError, OpResult};
use crate::tensor::{Data, Tensor};
use half::{bf16, f16};
use std::borrow::Cow;

/// The element type a float kernel computes for, and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prec {
    F32,
    F16,
    BF16,
}

/// `t`'s values as f32, for an op that takes f32, f16 or bf16.
pub(crate) fn f32_in<'a>(t: &'a Tensor, op: &str) -> OpResult<(Cow<'a, [f32]>, Prec)> {
    Ok(match &t.data {
        Data::F32(v) => (Cow::Borrowed(v.as_slice()), Prec::F32),
        Data::F16(v) => (
            Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            Prec::F16,
        ),
        Data::BF16(v) => (
            Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            Prec::BF16,
        ),
        other => return Err(not_float(op, other)),
    })
}

/// Another input of the same op, which must have the first input's element type.
pub(crate) fn f32_same<'a>(t: &'a Tensor, prec: Prec, op: &str) -> OpResult<Cow<'a, [f32]>> {
    let (v, p) = f32_in(t, op)?;
    if p != prec {
        return Err(OpError::invalid(format!(
            "{op}: inputs must share one element type, got {prec:?} and {p:?}"
        )));
    }
    Ok(v)
}

/// f32 results as a tensor of `prec`, rounding to nearest even once.
pub(crate) fn f32_out(shape: Vec<usize>, v: Vec<f32>, prec: Prec) -> Tensor {
    let data = match prec {
        Prec::F32 => Data::F32(v),
        Prec::F16 => Data::F16(v.into_iter().map(f16::from_f32).collect()),
        Prec::BF16 => Data::BF16(v.into_iter().map(bf16::from_f32).collect()),
    };
    Tensor { shape, data }
}

/// The refusal for a non-float input: f64 is a type the kernels could compute but do not (an
/// f32 answer would be a wrong one), the rest are not floats at all.
pub(crate) fn not_float(op: &str, d: &Data) -> OpError {
    match d {
        Data::F64(_) => OpError::unsupported(format!("{op} on double tensors")),
        other => OpError::invalid(format!("{op} takes float tensors, got {:?}", other.dtype())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_round_trips_and_double_is_unsupported() {
        let t = Tensor::new(vec![2], Data::F16(vec![f16::from_f32(1.5), f16::ONE])).unwrap();
        let (v, p) = f32_in(&t, "Op").unwrap();
        assert_eq!((v.as_ref(), p), (&[1.5f32, 1.0][..], Prec::F16));
        assert_eq!(f32_out(vec![2], v.into_owned(), p), t);
        let d = Tensor::new(vec![1], Data::F64(vec![1.0])).unwrap();
        assert!(matches!(f32_in(&d, "Op"), Err(OpError::Unsupported(_))));
        let i = Tensor::vec_i64(vec![1]);
        assert!(matches!(f32_in(&i, "Op"), Err(OpError::Invalid(_))));
    }
}
