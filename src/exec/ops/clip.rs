//! Clip: bounds from the float attributes `min`/`max` before opset 11 (defaulting to the lowest and
//! largest f32), from optional scalar inputs of the input's type after (defaulting to none).
//! Computed as `min(max(x, lo), hi)`, so NaN passes through and `lo > hi` gives `hi`.

use super::elem::{same, Elem, Unwrap};
use super::par;
use super::{Ctx, OpError, OpResult};
use crate::tensor::Tensor;

pub fn clip(cx: &Ctx) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    let data = crate::dispatch_num!(&x.data, v => Elem::wrap(clip_typed(cx, v, &x.data)?),
        bool => return Err(OpError::invalid("Clip does not take bool tensors")));
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

fn clip_typed<T: Elem + Unwrap + Send + Sync>(
    cx: &Ctx,
    v: &[T],
    data: &crate::tensor::Data,
) -> OpResult<Vec<T>> {
    let (lo, hi) = if cx.opset < 11 {
        if !T::FLOAT {
            return Err(OpError::invalid("Clip before opset 11 takes float tensors"));
        }
        let f = |name: &str, default: f32| -> OpResult<T> {
            let v = match cx.attr(name) {
                None => default,
                Some(a) => a.f.ok_or_else(|| {
                    OpError::invalid(format!("attribute '{name}' is not a float"))
                })?,
            };
            Ok(T::from_f64(v as f64))
        };
        (Some(f("min", f32::MIN)?), Some(f("max", f32::MAX)?))
    } else {
        let bound = |i: usize, name: &str| -> OpResult<Option<T>> {
            let Some(t) = cx.opt_input(i) else {
                return Ok(None);
            };
            let b = same::<T>(&t.data, data, "Clip's input and bounds")?;
            match b.as_slice() {
                [b] => Ok(Some(*b)),
                _ => Err(OpError::invalid(format!(
                    "{name} must be a scalar, is {:?}",
                    t.shape
                ))),
            }
        };
        (bound(1, "min")?, bound(2, "max")?)
    };
    Ok(par::map(v, |x| {
        let y = match lo {
            Some(lo) if x < lo => lo,
            _ => x,
        };
        match hi {
            Some(hi) if hi < y => hi,
            _ => y,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn bounds_as_inputs_from_11() {
        let x = f32s(&[5], &[-2., -0.5, 0.5, 2., f32::NAN]);
        let lo = f32s(&[], &[-1.]);
        let hi = f32s(&[], &[1.]);
        let y = run(&node("Clip", 3, vec![]), &[&x, &lo, &hi], 13)
            .unwrap()
            .as_f32s();
        assert_eq!(&y[..4], &[-1., -0.5, 0.5, 1.]);
        assert!(y[4].is_nan());
        // Max only: input 1 absent.
        let mut n = node("Clip", 3, vec![]);
        n.input[1].clear();
        let y = super::super::eval(&n, &[Some(&x), None, Some(&hi)], 13).unwrap();
        assert_eq!(&y[0].as_f32s()[..4], &[-2., -0.5, 0.5, 1.]);
        // ReLU6 on integers (opset 12), and lo > hi gives hi.
        let i = i64s(&[3], &[-3, 4, 9]);
        let y = run(
            &node("Clip", 3, vec![]),
            &[&i, &i64s(&[], &[0]), &i64s(&[], &[6])],
            13,
        );
        assert_eq!(y.unwrap(), i64s(&[3], &[0, 4, 6]));
        let y = run(
            &node("Clip", 3, vec![]),
            &[&i, &i64s(&[], &[5]), &i64s(&[], &[1])],
            13,
        );
        assert_eq!(y.unwrap(), i64s(&[3], &[1, 1, 1]));
        assert!(run(&node("Clip", 2, vec![]), &[&x, &i64s(&[], &[0])], 13).is_err());
        assert!(run(&node("Clip", 2, vec![]), &[&x, &f32s(&[2], &[0., 1.])], 13).is_err());
    }

    #[test]
    fn bounds_as_attributes_before_11() {
        let x = f32s(&[3], &[-7., 3., 7.]);
        let n = node("Clip", 1, vec![float("min", 0.), float("max", 6.)]);
        assert_eq!(run(&n, &[&x], 6).unwrap(), f32s(&[3], &[0., 3., 6.]));
        let open = node("Clip", 1, vec![float("min", 0.)]);
        let big = f32s(&[2], &[f32::INFINITY, -1.]);
        assert_eq!(run(&open, &[&big], 6).unwrap(), f32s(&[2], &[f32::MAX, 0.]));
    }
}
