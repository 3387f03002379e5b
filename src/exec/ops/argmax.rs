//! ArgMax and ArgMin along `axis` (default 0), int64 indices, `keepdims` (default 1), and from
//! opset 12 `select_last_index` to break ties toward the last occurrence. NaN never wins a
//! comparison.

use super::elem::Elem;
use super::par;
use super::{norm_axis, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

/// Lanes per task when the axis is not the last one.
const LANES: usize = 1024;

pub fn arg(cx: &Ctx, max: bool) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    let rank = x.shape.len();
    let a = norm_axis(cx.attr_i("axis")?.unwrap_or(0), rank)?;
    let keepdims = cx.attr_i("keepdims")?.unwrap_or(1) != 0;
    let last = cx.opset >= 12 && cx.attr_i("select_last_index")?.unwrap_or(0) != 0;
    let dim = x.shape[a];
    let (outer, inner) = (
        x.shape[..a].iter().product::<usize>(),
        x.shape[a + 1..].iter().product::<usize>(),
    );
    let mut shape = x.shape.clone();
    if keepdims {
        shape[a] = 1;
    } else {
        shape.remove(a);
    }
    if dim == 0 && outer * inner > 0 {
        return Err(OpError::invalid(format!(
            "{} over an empty axis",
            if max { "ArgMax" } else { "ArgMin" }
        )));
    }
    let mut out = vec![0i64; outer * inner];
    crate::dispatch_num!(&x.data, v => arg_typed(v, &mut out, dim, inner, max, last),
        bool => return Err(OpError::invalid("ArgMax/ArgMin do not take bool tensors")));
    Ok(Tensor {
        shape,
        data: Data::I64(out),
    })
}

fn arg_typed<T: Elem + Send + Sync>(
    v: &[T],
    out: &mut [i64],
    dim: usize,
    inner: usize,
    max: bool,
    last: bool,
) {
    // Whether `x` replaces the best so far.
    let better = move |x: T, best: T| match (max, last) {
        (true, false) => x > best,
        (true, true) => x >= best,
        (false, false) => x < best,
        (false, true) => x <= best,
    };
    par::lanes_mut(out, inner, LANES, v.len(), |o, lane, part| {
        let at = |d: usize| (o * dim + d) * inner + lane;
        let mut best: Vec<T> = v[at(0)..][..part.len()].to_vec();
        part.fill(0);
        for d in 1..dim {
            for ((b, i), &x) in best.iter_mut().zip(part.iter_mut()).zip(&v[at(d)..]) {
                if better(x, *b) {
                    *b = x;
                    *i = d as i64;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn axis_keepdims_and_ties() {
        let x = f32s(&[2, 3], &[1., 5., 5., 7., 0., 7.]);
        let y = run(&node("ArgMax", 1, vec![int("axis", 1)]), &[&x], 13).unwrap();
        assert_eq!(y, i64s(&[2, 1], &[1, 0]));
        let n = node(
            "ArgMax",
            1,
            vec![
                int("axis", -1),
                int("keepdims", 0),
                int("select_last_index", 1),
            ],
        );
        assert_eq!(run(&n, &[&x], 13).unwrap(), i64s(&[2], &[2, 2]));
        // Before opset 12 select_last_index does not exist.
        assert_eq!(run(&n, &[&x], 11).unwrap(), i64s(&[2], &[1, 0]));
        let y = run(&node("ArgMin", 1, vec![]), &[&x], 13).unwrap();
        assert_eq!(y, i64s(&[1, 3], &[0, 1, 0]));
    }

    #[test]
    fn class_map_of_a_segmentation_output() {
        // [1, 3, 2, 2] logits, argmax over channels per pixel.
        let x = f32s(
            &[1, 3, 2, 2],
            &[0., 9., 1., 1., 5., 0., 1., 2., 1., 1., 3., 0.],
        );
        let n = node("ArgMax", 1, vec![int("axis", 1), int("keepdims", 0)]);
        assert_eq!(run(&n, &[&x], 13).unwrap(), i64s(&[1, 2, 2], &[1, 0, 2, 1]));
        let i = i64s(&[3], &[4, -1, 9]);
        assert_eq!(
            run(&node("ArgMin", 1, vec![]), &[&i], 13).unwrap(),
            i64s(&[1], &[1])
        );
        assert!(run(
            &node("ArgMax", 1, vec![int("axis", 1)]),
            &[&f32s(&[2, 0], &[])],
            13
        )
        .is_err());
    }
}
