//! Fast paths of the elementwise ops for what a CNN feeds them: f32 operands of one shape, or one
//! operand broadcast as a block (a per-channel `[1, C, 1, 1]`, a scalar, a trailing row), and the
//! common unary activations. They compute exactly what the general broadcasting path of
//! [`super::arith`] computes (same expressions, same order), in parallel chunks, without an index
//! vector per output element.

use super::broadcast::broadcast_shapes;
use super::numel;
use super::par::{self, CHUNK};
use crate::tensor::{Data, Tensor};

/// How a broadcast operand lines up with the output: element `o` of the output reads element
/// `(o / inner) % size` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    size: usize,
    inner: usize,
}

/// `small`'s layout against `full` when its non-unit dimensions are one contiguous run equal to
/// `full`'s there.
fn block(full: &[usize], small: &[usize]) -> Option<Block> {
    let off = full.len().checked_sub(small.len())?;
    let at: Vec<usize> = (0..small.len())
        .filter(|&i| small[i] != 1)
        .map(|i| i + off)
        .collect();
    let (Some(&i), Some(&j)) = (at.first(), at.last()) else {
        return Some(Block { size: 1, inner: 1 });
    };
    if (i..=j).any(|k| small[k - off] != full[k]) {
        return None;
    }
    Some(Block {
        size: full[i..=j].iter().product(),
        inner: full[j + 1..].iter().product(),
    })
}

/// Add, Sub, Mul or Div of two f32 tensors when their shapes take a fast path.
pub(crate) fn binary_f32(
    op: &str,
    a: &Tensor,
    av: &[f32],
    b: &Tensor,
    bv: &[f32],
) -> Option<Tensor> {
    let shape = broadcast_shapes(&[&a.shape, &b.shape]).ok()?;
    numel(&shape).ok()?;
    let (full, small, flip) = if a.shape == shape {
        (av, (bv, &b.shape), false)
    } else if b.shape == shape {
        (bv, (av, &a.shape), true)
    } else {
        return None;
    };
    let l = block(&shape, small.1)?;
    let out = match (op, flip) {
        ("Add", _) => apply(full, small.0, l, |x, y| x + y),
        ("Mul", _) => apply(full, small.0, l, |x, y| x * y),
        ("Sub", false) => apply(full, small.0, l, |x, y| x - y),
        ("Sub", true) => apply(full, small.0, l, |x, y| y - x),
        ("Div", false) => apply(full, small.0, l, |x, y| x / y),
        ("Div", true) => apply(full, small.0, l, |x, y| y / x),
        _ => return None,
    };
    Some(Tensor {
        shape,
        data: Data::F32(out),
    })
}

/// `f(full[o], small[(o / inner) % size])` for every output `o`.
fn apply(
    full: &[f32],
    small: &[f32],
    l: Block,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Vec<f32> {
    let mut out = crate::exec::recycle::f32_buffer(full.len());
    par::chunks_mut(&mut out, CHUNK, |start, part| {
        let x = &full[start..start + part.len()];
        if l.size == full.len() {
            for ((o, &p), &q) in part.iter_mut().zip(x).zip(&small[start..]) {
                *o = f(p, q);
            }
        } else if l.inner == 1 {
            // A row repeating along the output.
            let mut k = start % l.size;
            for (o, &p) in part.iter_mut().zip(x) {
                *o = f(p, small[k]);
                k += 1;
                if k == l.size {
                    k = 0;
                }
            }
        } else {
            // Runs of `inner` outputs sharing one value.
            let mut i = 0;
            while i < part.len() {
                let at = start + i;
                let run = (l.inner - at % l.inner).min(part.len() - i);
                let q = small[at / l.inner % l.size];
                for (o, &p) in part[i..i + run].iter_mut().zip(&x[i..i + run]) {
                    *o = f(p, q);
                }
                i += run;
            }
        }
    });
    out
}

/// The unary ops on f32 worth a parallel path, with the general path's expressions.
pub(crate) fn unary_f32(op: &str, v: &[f32]) -> Option<Data> {
    let f: fn(f32) -> f32 = match op {
        "Relu" => |x| if x < 0.0 { 0.0 } else { x },
        "Sigmoid" => |x| 1.0 / (1.0 + (-x).exp()),
        "Tanh" => f32::tanh,
        "Exp" => f32::exp,
        "Sqrt" => f32::sqrt,
        "Neg" => |x| -x,
        "Abs" => f32::abs,
        _ => return None,
    };
    Some(Data::F32(par::map(v, f)))
}

/// Relu over `v` in place (the executor's in-place path; same expression as [`unary_f32`]).
pub fn relu_in_place(v: &mut [f32]) {
    par::chunks_mut(v, par::CHUNK, |_, c| {
        for x in c {
            if *x < 0.0 {
                *x = 0.0;
            }
        }
    });
}

/// `acc += y` elementwise, in place, then Relu when `relu` (one pass either way); the slices have the
/// same length.
pub fn add_in_place(acc: &mut [f32], y: &[f32], relu: bool) {
    assert_eq!(acc.len(), y.len(), "add_in_place: lengths differ");
    par::chunks_mut(acc, par::CHUNK, |start, c| {
        let n = c.len();
        for (a, &b) in c.iter_mut().zip(&y[start..start + n]) {
            let v = *a + b;
            *a = if relu && v < 0.0 { 0.0 } else { v };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn block_layouts() {
        let full = [2, 3, 4, 5];
        assert_eq!(
            block(&full, &[1, 3, 1, 1]),
            Some(Block { size: 3, inner: 20 })
        );
        assert_eq!(block(&full, &[3, 1, 1]), Some(Block { size: 3, inner: 20 }));
        assert_eq!(block(&full, &[]), Some(Block { size: 1, inner: 1 }));
        assert_eq!(block(&full, &[5]), Some(Block { size: 5, inner: 1 }));
        assert_eq!(block(&full, &[4, 5]), Some(Block { size: 20, inner: 1 }));
        assert_eq!(
            block(&full, &[2, 3, 4, 5]),
            Some(Block {
                size: 120,
                inner: 1
            })
        );
        // Gaps are not one block.
        assert_eq!(block(&full, &[2, 1, 4, 1]), None);
        assert_eq!(block(&full, &[1, 3, 1, 5]), None);
    }

    /// The fast path against the general one, which [`binary_f32`] declines for these op names.
    fn both(op: &str, sa: &[usize], sb: &[usize]) {
        let a = f32s(sa, &noise(sa.iter().product(), 1));
        let b = f32s(
            sb,
            &noise(sb.iter().product(), 2)
                .iter()
                .map(|v| v + 2.0)
                .collect::<Vec<_>>(),
        );
        let (av, bv) = (a.as_f32s(), b.as_f32s());
        let fast = binary_f32(op, &a, &av, &b, &bv).expect("a fast path");
        // The general path: compute through index vectors.
        let shape = broadcast_shapes(&[sa, sb]).unwrap();
        let ia = super::super::broadcast::offsets(sa, &shape);
        let ib = super::super::broadcast::offsets(sb, &shape);
        let f = |x: f32, y: f32| match op {
            "Add" => x + y,
            "Sub" => x - y,
            "Mul" => x * y,
            _ => x / y,
        };
        let want: Vec<f32> = ia.iter().zip(&ib).map(|(&i, &j)| f(av[i], bv[j])).collect();
        assert_eq!(fast, f32s(&shape, &want), "{op} {sa:?} {sb:?}");
    }

    #[test]
    fn fast_paths_equal_the_general_path() {
        for op in ["Add", "Sub", "Mul", "Div"] {
            // Large enough for several chunks and threads.
            both(op, &[2, 48, 40, 20], &[2, 48, 40, 20]);
            both(op, &[2, 48, 40, 20], &[1, 48, 1, 1]);
            both(op, &[1, 48, 1, 1], &[2, 48, 40, 20]);
            both(op, &[2, 48, 40, 20], &[]);
            both(op, &[], &[3, 7]);
            both(op, &[3, 1000, 7], &[7]);
            both(op, &[3, 1000, 7], &[1000, 1]);
        }
        let a = f32s(&[2, 1], &[1., 2.]);
        let b = f32s(&[1, 2], &[1., 2.]);
        assert!(binary_f32("Add", &a, &a.as_f32s(), &b, &b.as_f32s()).is_none());
    }

    #[test]
    fn through_the_ops() {
        let x = f32s(&[1, 2, 1, 2], &[-1., 2., -3., f32::NAN]);
        let c = f32s(&[1, 2, 1, 1], &[10., 100.]);
        let y = run(&node("Sub", 2, vec![]), &[&c, &x], 13)
            .unwrap()
            .as_f32s();
        assert_eq!(&y[..3], &[11., 8., 103.]);
        assert!(y[3].is_nan());
        let r = run(&node("Relu", 1, vec![]), &[&x], 13).unwrap().as_f32s();
        assert_eq!(&r[..3], &[0., 2., 0.]);
        assert!(r[3].is_nan());
        let s = run(&node("Sigmoid", 1, vec![]), &[&f32s(&[2], &[0., 1.])], 13).unwrap();
        assert_eq!(s.as_f32s(), vec![0.5, 1.0 / (1.0 + (-1f32).exp())]);
    }
}
