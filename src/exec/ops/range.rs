//! Range: `start, start + delta, ...` while short of `limit`.

use super::elem::{same, Num, Unwrap};
use super::{Ctx, OpError, OpResult};
use crate::tensor::Tensor;

/// Refuses ranges longer than this: a Range node's length is data, and a wrong one must not exhaust
/// memory.
const MAX_LEN: f64 = (1u64 << 32) as f64;

pub fn range(cx: &Ctx) -> OpResult<Tensor> {
    let (start, limit, delta) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    for t in [start, limit, delta] {
        if t.len() != 1 || t.shape.len() > 1 {
            return Err(OpError::invalid(format!(
                "start, limit and delta must be scalars, got shape {:?}",
                t.shape
            )));
        }
    }
    crate::dispatch_num!(&start.data, v => range_typed(v[0], limit, delta, start),
        bool => Err(OpError::invalid("Range does not take bool")))
}

fn range_typed<T: Num + Unwrap>(
    start: T,
    limit: &Tensor,
    delta: &Tensor,
    first: &Tensor,
) -> OpResult<Tensor> {
    let limit = same::<T>(&limit.data, &first.data, "start, limit and delta")?[0];
    let delta = same::<T>(&delta.data, &first.data, "start, limit and delta")?[0];
    if delta == T::default() {
        return Err(OpError::invalid("Range delta must not be 0"));
    }
    // number_of_elements = max(ceil((limit - start) / delta), 0). Floats as onnxruntime computes it
    // (the difference in the element type, the division in f64); integers exactly.
    let n = if T::FLOAT {
        (limit.sub(start).to_f64() / delta.to_f64()).ceil()
    } else {
        let (s, l, d) = (
            start.to_i64() as i128,
            limit.to_i64() as i128,
            delta.to_i64() as i128,
        );
        let span = l - s;
        // Ceiling division for either sign of delta.
        (span / d + i128::from(span % d != 0 && (span < 0) == (d < 0))) as f64
    };
    let n = if n.is_nan() { 0.0 } else { n.max(0.0) };
    if n > MAX_LEN {
        return Err(OpError::unsupported(format!("a Range of {n} elements")));
    }
    let n = n as usize;
    let mut out = Vec::with_capacity(n);
    // Repeated addition in the element type, as onnxruntime fills it (the spec writes
    // `start + i * delta`; for floats the two differ in the last bits, and onnxruntime is this
    // project's numerics oracle).
    let mut x = start;
    for _ in 0..n {
        out.push(x);
        x = x.add(delta);
    }
    Ok(Tensor {
        shape: vec![n],
        data: T::wrap(out),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn r(a: &Tensor, b: &Tensor, c: &Tensor) -> OpResult<Tensor> {
        run(&node("Range", 3, vec![]), &[a, b, c], 13)
    }

    #[test]
    fn integer_ranges() {
        let s = Tensor::scalar_i64;
        assert_eq!(
            r(&s(0), &s(5), &s(2)).unwrap(),
            Tensor::vec_i64(vec![0, 2, 4])
        );
        assert_eq!(
            r(&s(10), &s(4), &s(-3)).unwrap(),
            Tensor::vec_i64(vec![10, 7])
        );
        assert_eq!(r(&s(3), &s(3), &s(1)).unwrap(), Tensor::vec_i64(vec![]));
        assert_eq!(r(&s(5), &s(0), &s(1)).unwrap(), Tensor::vec_i64(vec![]));
        assert!(r(&s(0), &s(5), &s(0)).is_err());
    }

    #[test]
    fn float_ranges_and_type_checks() {
        let f = |v: f32| f32s(&[], &[v]);
        assert_eq!(
            r(&f(1.0), &f(2.0), &f(0.25)).unwrap(),
            f32s(&[4], &[1.0, 1.25, 1.5, 1.75])
        );
        // Accumulated in f32 like onnxruntime: 1.3 + 0.3 rounds to 1.5999999, not 1.6.
        let acc = r(&f(1.0), &f(2.0), &f(0.3)).unwrap().as_f32s();
        assert_eq!(acc, vec![1.0, 1.3, 1.3f32 + 0.3, 1.3f32 + 0.3 + 0.3]);
        assert!(r(&f(0.0), &Tensor::scalar_i64(2), &f(1.0)).is_err());
        assert!(r(&f(0.0), &f(1e12), &f(1e-3)).is_err());
    }
}
