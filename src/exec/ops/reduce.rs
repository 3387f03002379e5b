//! ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd. Axes come from the `axes` attribute
//! before opset 13 (ReduceSum) or 18 (the others) and from the second input after, where an empty
//! list reduces everything unless `noop_with_empty_axes`. Float sums and products accumulate in
//! f64 and round once; integer ones wrap, and an integer mean truncates. Max and Min propagate
//! NaN.

use super::broadcast::offsets;
use super::elem::Elem;
use super::par::{self, CHUNK};
use super::{norm_axis, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

pub fn reduce(cx: &Ctx, op: &str) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    let from_input = cx.opset >= if op == "ReduceSum" { 13 } else { 18 };
    let axes = if from_input {
        cx.ints_input(1)?
    } else {
        cx.attr_ints("axes")?
    };
    let keepdims = cx.attr_i("keepdims")?.unwrap_or(1) != 0;
    let noop = from_input && cx.attr_i("noop_with_empty_axes")?.unwrap_or(0) != 0;
    let rank = x.shape.len();
    let mut reduced = vec![false; rank];
    match axes {
        Some(a) if !a.is_empty() => {
            for &ax in &a {
                let i = norm_axis(ax, rank)?;
                if std::mem::replace(&mut reduced[i], true) {
                    return Err(OpError::invalid(format!("axes {a:?} repeat an axis")));
                }
            }
        }
        _ if noop => return Ok(x.clone()),
        _ => reduced.fill(true),
    }
    let data = reduce_data(op, &x.data, &x.shape, &reduced)?;
    let shape = x
        .shape
        .iter()
        .zip(&reduced)
        .filter_map(|(&d, &r)| match (r, keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    Ok(Tensor { shape, data })
}

/// Reduces `data` of `shape` over the axes flagged in `reduced`, giving the kept elements in
/// order (the keepdims layout and the dropped one are the same data).
pub(crate) fn reduce_data(
    op: &str,
    data: &Data,
    shape: &[usize],
    reduced: &[bool],
) -> OpResult<Data> {
    crate::dispatch_num!(data, v => typed(op, v, shape, reduced),
        bool => Err(OpError::invalid(format!("{op} does not take bool tensors"))))
}

fn typed<T: Elem + Send + Sync>(
    op: &str,
    v: &[T],
    shape: &[usize],
    reduced: &[bool],
) -> OpResult<Data> {
    let mean = op == "ReduceMean";
    let out = match op {
        "ReduceSum" | "ReduceMean" if T::FLOAT => fold(
            v,
            shape,
            reduced,
            0f64,
            |a, x| a + x.to_f64(),
            |a, n| T::from_f64(if mean { a / n as f64 } else { a }),
        ),
        "ReduceSum" | "ReduceMean" => {
            let count: usize = shape
                .iter()
                .zip(reduced)
                .filter(|p| *p.1)
                .map(|p| *p.0)
                .product();
            if mean && count == 0 {
                return Err(OpError::invalid("integer ReduceMean over no elements"));
            }
            fold(
                v,
                shape,
                reduced,
                0i64,
                |a, x| a.wrapping_add(x.to_i64()),
                |a, n| T::from_i64(if mean { a / n as i64 } else { a }),
            )
        }
        "ReduceProd" if T::FLOAT => fold(
            v,
            shape,
            reduced,
            1f64,
            |a, x| a * x.to_f64(),
            |a, _| T::from_f64(a),
        ),
        "ReduceProd" => fold(
            v,
            shape,
            reduced,
            1i64,
            |a, x| a.wrapping_mul(x.to_i64()),
            |a, _| T::from_i64(a),
        ),
        // A NaN sticks once taken.
        "ReduceMax" => fold(
            v,
            shape,
            reduced,
            T::from_f64(f64::NEG_INFINITY),
            |a, x| if is_nan(x) || x > a { x } else { a },
            |a, _| a,
        ),
        "ReduceMin" => fold(
            v,
            shape,
            reduced,
            T::from_f64(f64::INFINITY),
            |a, x| if is_nan(x) || x < a { x } else { a },
            |a, _| a,
        ),
        other => return Err(OpError::unsupported(format!("op {other}"))),
    };
    Ok(T::wrap(out))
}

fn is_nan<T: PartialOrd>(x: T) -> bool {
    x.partial_cmp(&x).is_none()
}

/// Folds the reduced axes: `step` over each output's elements from `init`, then `fin(acc, count)`.
fn fold<T: Elem + Send + Sync, A: Copy + Send + Sync>(
    v: &[T],
    shape: &[usize],
    reduced: &[bool],
    init: A,
    step: impl Fn(A, T) -> A + Sync + Send,
    fin: impl Fn(A, usize) -> T + Sync + Send,
) -> Vec<T> {
    // Merge neighbouring axes of the same kind; unit axes are either.
    let mut groups: Vec<(usize, bool)> = Vec::new();
    for (&d, &r) in shape.iter().zip(reduced) {
        match groups.last_mut() {
            _ if d == 1 => {}
            Some(last) if last.1 == r => last.0 *= d,
            _ => groups.push((d, r)),
        }
    }
    let count: usize = groups.iter().filter(|g| g.1).map(|g| g.0).product();
    let kept: Vec<usize> = shape
        .iter()
        .zip(reduced)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let n_out: usize = kept.iter().product();
    let mut out = vec![T::default(); n_out];
    if groups.iter().filter(|g| g.1).count() > 1 {
        // Interleaved axes: accumulate each input element into its output.
        let mut acc = vec![init; n_out];
        for (&x, o) in v.iter().zip(offsets(&kept, shape)) {
            acc[o] = step(acc[o], x);
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = fin(a, count);
        }
        return out;
    }
    // [outer][count][inner].
    let split = groups.iter().position(|g| g.1).unwrap_or(groups.len());
    let inner: usize = groups[(split + 1).min(groups.len())..]
        .iter()
        .map(|g| g.0)
        .product();
    if inner == 1 {
        let rows = (CHUNK / count.max(1)).max(1);
        par::chunks_mut(&mut out, rows, |start, o| {
            for (i, y) in o.iter_mut().enumerate() {
                let xs = &v[(start + i) * count..][..count];
                *y = fin(xs.iter().fold(init, |a, &x| step(a, x)), count);
            }
        });
    } else {
        par::lanes_mut(&mut out, inner, 1024, v.len(), |o, lane, part| {
            let mut acc = vec![init; part.len()];
            for r in 0..count {
                let xs = &v[(o * count + r) * inner + lane..][..part.len()];
                for (a, &x) in acc.iter_mut().zip(xs) {
                    *a = step(*a, x);
                }
            }
            for (y, a) in part.iter_mut().zip(acc) {
                *y = fin(a, count);
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    /// At opset 12, where every Reduce takes `axes` as an attribute.
    fn red(op: &str, x: &Tensor, attrs: Vec<crate::onnx::proto::AttributeProto>) -> Tensor {
        run(&node(op, 1, attrs), &[x], 12).unwrap()
    }

    #[test]
    fn axes_and_keepdims_as_attributes() {
        let x = f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let y = red("ReduceMean", &x, vec![ints("axes", &[1])]);
        assert_eq!(y, f32s(&[2, 1], &[2., 5.]));
        let y = red(
            "ReduceMax",
            &x,
            vec![ints("axes", &[0]), int("keepdims", 0)],
        );
        assert_eq!(y, f32s(&[3], &[4., 5., 6.]));
        let y = red(
            "ReduceMin",
            &x,
            vec![ints("axes", &[-1]), int("keepdims", 0)],
        );
        assert_eq!(y, f32s(&[2], &[1., 4.]));
        let y = red("ReduceProd", &x, vec![]);
        assert_eq!(y, f32s(&[1, 1], &[720.]));
        assert!(run(
            &node("ReduceMax", 1, vec![ints("axes", &[1, -1])]),
            &[&x],
            13
        )
        .is_err());
    }

    #[test]
    fn axes_as_input_and_noop() {
        let x = f32s(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let axes = i64s(&[2], &[0, 2]);
        // ReduceSum takes axes as input from 13: interleaved axes 0 and 2.
        let y = run(&node("ReduceSum", 2, vec![]), &[&x, &axes], 13).unwrap();
        assert_eq!(y, f32s(&[1, 2, 1], &[14., 22.]));
        let none = i64s(&[0], &[]);
        let all = run(&node("ReduceSum", 2, vec![]), &[&x, &none], 13).unwrap();
        assert_eq!(all, f32s(&[1, 1, 1], &[36.]));
        let noop = node("ReduceSum", 2, vec![int("noop_with_empty_axes", 1)]);
        assert_eq!(run(&noop, &[&x, &none], 13).unwrap(), x);
        // ReduceMean: attribute until 17, input from 18.
        let y = run(&node("ReduceMean", 2, vec![]), &[&x, &i64s(&[1], &[1])], 18).unwrap();
        assert_eq!(y, f32s(&[2, 1, 2], &[2., 3., 6., 7.]));
        let y = run(&node("ReduceMean", 1, vec![ints("axes", &[1])]), &[&x], 17).unwrap();
        assert_eq!(y, f32s(&[2, 1, 2], &[2., 3., 6., 7.]));
    }

    #[test]
    fn integers_nan_and_empty() {
        let i = i64s(&[2, 2], &[1, 2, 3, 4]);
        let y = red(
            "ReduceMean",
            &i,
            vec![ints("axes", &[1]), int("keepdims", 0)],
        );
        assert_eq!(y, i64s(&[2], &[1, 3]));
        let y = red("ReduceMax", &i, vec![int("keepdims", 0)]);
        assert_eq!(y, i64s(&[], &[4]));
        let n = f32s(&[3], &[1., f32::NAN, 3.]);
        assert!(red("ReduceMax", &n, vec![]).as_f32s()[0].is_nan());
        assert!(red("ReduceMin", &n, vec![]).as_f32s()[0].is_nan());
        let e = f32s(&[2, 0], &[]);
        assert_eq!(
            red("ReduceSum", &e, vec![ints("axes", &[1])]).as_f32s(),
            [0., 0.]
        );
        assert_eq!(
            red("ReduceMax", &e, vec![ints("axes", &[1])]).as_f32s(),
            [f32::NEG_INFINITY; 2]
        );
    }

    #[test]
    fn large_means_match_serial_sums() {
        // [2, 5, 3000] over axis 2 (rows) and axis 1 (lanes).
        let v = noise(2 * 5 * 3000, 9);
        let x = f32s(&[2, 5, 3000], &v);
        let rows = red("ReduceMean", &x, vec![ints("axes", &[2])]).as_f32s();
        let lanes = red("ReduceSum", &x, vec![ints("axes", &[1])]).as_f32s();
        for (r, got) in rows.iter().enumerate() {
            let s: f64 = v[r * 3000..(r + 1) * 3000].iter().map(|&x| x as f64).sum();
            assert!((got - (s / 3000.0) as f32).abs() < 1e-6);
        }
        for (o, got) in lanes.iter().enumerate() {
            let (b, p) = (o / 3000, o % 3000);
            let s: f64 = (0..5).map(|c| v[(b * 5 + c) * 3000 + p] as f64).sum();
            assert!((got - s as f32).abs() < 1e-6);
        }
    }
}
