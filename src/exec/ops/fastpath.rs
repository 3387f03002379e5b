//! Fast paths of the elementwise ops for what a CNN feeds them: f32 operands of one shape, or one
//! operand broadcast as a block (a per-channel `[1, C, 1, 1]`, a scalar, a trailing row), and the
//! common unary activations. They compute exactly what the general broadcasting path of
//! [`super::arith`] computes (same expressions, same order), in parallel chunks, without an index
//! vector per output element.

use super::blas::with_scratch;
use super::broadcast::broadcast_shapes;
use super::float::{widen, Half};
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

/// How two operands line up for a fast path: the output shape, whether `b` is the full-size one,
/// and the other's layout.
fn line_up(a: &Tensor, b: &Tensor) -> Option<(Vec<usize>, bool, Block)> {
    let shape = broadcast_shapes(&[&a.shape, &b.shape]).ok()?;
    numel(&shape).ok()?;
    let (flip, small) = if a.shape == shape {
        (false, &b.shape)
    } else if b.shape == shape {
        (true, &a.shape)
    } else {
        return None;
    };
    let l = block(&shape, small)?;
    Some((shape, flip, l))
}

/// Runs `$body` with `$f` the f32 expression of `$op` (operands swapped when `$flip`), or returns
/// `None` from the enclosing function for an op without a fast path. A macro, not a function
/// pointer, so each expression is inlined into its own vectorised loop.
macro_rules! with_binary {
    ($op:expr, $flip:expr, $f:ident => $body:expr) => {
        match ($op, $flip) {
            ("Add", _) => {
                let $f = |x: f32, y: f32| x + y;
                $body
            }
            ("Mul", _) => {
                let $f = |x: f32, y: f32| x * y;
                $body
            }
            ("Sub", false) => {
                let $f = |x: f32, y: f32| x - y;
                $body
            }
            ("Sub", true) => {
                let $f = |x: f32, y: f32| y - x;
                $body
            }
            ("Div", false) => {
                let $f = |x: f32, y: f32| x / y;
                $body
            }
            ("Div", true) => {
                let $f = |x: f32, y: f32| y / x;
                $body
            }
            _ => return None,
        }
    };
}

/// Add, Sub, Mul or Div of two f32 tensors when their shapes take a fast path.
pub(crate) fn binary_f32(
    op: &str,
    a: &Tensor,
    av: &[f32],
    b: &Tensor,
    bv: &[f32],
) -> Option<Tensor> {
    let (shape, flip, l) = line_up(a, b)?;
    let (full, small) = if flip { (bv, av) } else { (av, bv) };
    let mut out = crate::exec::recycle::f32_buffer(full.len());
    with_binary!(op, flip, f => par::chunks_mut(&mut out, CHUNK, |start, part| {
        apply(&full[start..start + part.len()], start, small, l, part, f)
    }));
    Some(Tensor {
        shape,
        data: Data::F32(out),
    })
}

/// [`binary_f32`] for two f16 or two bf16 tensors: each chunk's operands widened, the same f32
/// expression, rounded back once, which is what the general path computes per element.
pub(crate) fn binary_half<H: Half>(
    op: &str,
    a: &Tensor,
    av: &[H],
    b: &Tensor,
    bv: &[H],
) -> Option<(Vec<usize>, Vec<H>)> {
    let (shape, flip, l) = line_up(a, b)?;
    let (full, small) = if flip { (bv, av) } else { (av, bv) };
    // The broadcast operand is small (a row, a channel vector) unless both are full-size.
    let small_wide = (l.size != full.len()).then(|| widen(small));
    let mut out = H::zeros(full.len());
    with_binary!(op, flip, f => par::chunks_mut(&mut out, CHUNK, |start, part| {
        let n = part.len();
        with_scratch::<f32, _>(3 * n, |buf| {
            let (x, rest) = buf.split_at_mut(n);
            let (y, z) = rest.split_at_mut(n);
            H::to_f32s(&full[start..start + n], x);
            match &small_wide {
                Some(s) => apply(x, start, s, l, z, f),
                None => {
                    H::to_f32s(&small[start..start + n], y);
                    apply(x, 0, y, Block { size: n, inner: 1 }, z, f)
                }
            }
            H::from_f32s(part, z);
        })
    }));
    Some((shape, out))
}

/// `out[j] = f(x[j], small[(o / inner) % size])` for the chunk `x` of outputs `o = start + j`.
#[inline(always)]
fn apply(
    x: &[f32],
    start: usize,
    small: &[f32],
    l: Block,
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32,
) {
    if l.size == 1 {
        let q = small[0];
        for (o, &p) in out.iter_mut().zip(x) {
            *o = f(p, q);
        }
    } else if l.inner == 1 {
        // A row repeating along the output (once, when the operands have one shape): runs of it.
        let mut i = 0;
        while i < out.len() {
            let k = (start + i) % l.size;
            let run = (l.size - k).min(out.len() - i);
            for ((o, &p), &q) in out[i..i + run]
                .iter_mut()
                .zip(&x[i..i + run])
                .zip(&small[k..k + run])
            {
                *o = f(p, q);
            }
            i += run;
        }
    } else {
        // Runs of `inner` outputs sharing one value.
        let mut i = 0;
        while i < out.len() {
            let at = start + i;
            let run = (l.inner - at % l.inner).min(out.len() - i);
            let q = small[at / l.inner % l.size];
            for (o, &p) in out[i..i + run].iter_mut().zip(&x[i..i + run]) {
                *o = f(p, q);
            }
            i += run;
        }
    }
}

/// The unary math computed in f32 for every float type (halves widened, then rounded once), with the
/// general path's expressions.
fn float_fn(op: &str) -> Option<fn(f32) -> f32> {
    Some(match op {
        "Sigmoid" => |x| 1.0 / (1.0 + (-x).exp()),
        "Tanh" => f32::tanh,
        "Exp" => f32::exp,
        "Sqrt" => f32::sqrt,
        "Abs" => f32::abs,
        _ => return None,
    })
}

/// The unary ops on f32 worth a parallel path, with the general path's expressions.
pub(crate) fn unary_f32(op: &str, v: &[f32]) -> Option<Data> {
    let f: fn(f32) -> f32 = match op {
        "Relu" => |x| if x < 0.0 { 0.0 } else { x },
        "Neg" => |x| -x,
        _ => float_fn(op)?,
    };
    Some(Data::F32(par::map(v, f)))
}

/// [`unary_f32`] for f16 and bf16, as the general path computes them: Relu compares in the
/// storage type, the others compute in f32 and round once. Neg stays on the general path, which
/// flips the sign bit without a round trip through f32.
pub(crate) fn unary_half<H: Half>(op: &str, v: &[H]) -> Option<Vec<H>> {
    if op == "Relu" {
        let mut out = v.to_vec();
        relu_in_place_half(&mut out);
        return Some(out);
    }
    let f = float_fn(op)?;
    let mut out = H::zeros(v.len());
    par::chunks_mut(&mut out, CHUNK, |start, part| {
        with_scratch::<f32, _>(part.len(), |x| {
            H::to_f32s(&v[start..start + part.len()], x);
            for e in x.iter_mut() {
                *e = f(*e);
            }
            H::from_f32s(part, x);
        })
    });
    Some(out)
}

/// Relu over f16 or bf16 values in place, compared in the storage type (NaN and −0 kept).
pub(crate) fn relu_in_place_half<H: Half>(v: &mut [H]) {
    par::chunks_mut(v, par::CHUNK, |_, c| relu_bits(c));
}

/// Relu on stored halves by their bits: a negative number (sign set, magnitude neither zero nor
/// past infinity's) becomes +0, while -0 and NaN stay, exactly as `x < 0` decides. Branch-free, so
/// it vectorises where the `PartialOrd` compare went one value at a time.
fn relu_bits<H: Half>(c: &mut [H]) {
    for b in H::bits_mut(c) {
        let mag = *b & 0x7FFF;
        let negative = (*b & 0x8000 != 0) & (mag != 0) & (mag <= H::INF_BITS);
        *b = if negative { 0 } else { *b };
    }
}

/// [`add_in_place`] for f16 or bf16: the sum in f32 rounded once, then Relu in the storage type,
/// exactly as an Add and then a Relu would store it.
pub(crate) fn add_in_place_half<H: Half>(acc: &mut [H], y: &[H], relu: bool) {
    assert_eq!(acc.len(), y.len(), "add_in_place: lengths differ");
    par::chunks_mut(acc, par::CHUNK, |start, c| {
        let n = c.len();
        with_scratch::<f32, _>(2 * n, |buf| {
            let (a, b) = buf.split_at_mut(n);
            H::to_f32s(c, a);
            H::to_f32s(&y[start..start + n], b);
            for (p, &q) in a.iter_mut().zip(b.iter()) {
                *p += q;
            }
            H::from_f32s(c, a);
        });
        if relu {
            relu_bits(c);
        }
    });
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

    /// Output shape, each output's element of `a` and of `b`, and the op's f32 expression.
    type General = (Vec<usize>, Vec<usize>, Vec<usize>, fn(f32, f32) -> f32);

    /// The general path's view of a binary op: the output shape, each output's element of either
    /// operand (through index vectors) and the f32 expression.
    fn general(op: &str, sa: &[usize], sb: &[usize]) -> General {
        let shape = broadcast_shapes(&[sa, sb]).unwrap();
        let ia = super::super::broadcast::offsets(sa, &shape);
        let ib = super::super::broadcast::offsets(sb, &shape);
        let f: fn(f32, f32) -> f32 = match op {
            "Add" => |x, y| x + y,
            "Sub" => |x, y| x - y,
            "Mul" => |x, y| x * y,
            _ => |x, y| x / y,
        };
        (shape, ia, ib, f)
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
        let (shape, ia, ib, f) = general(op, sa, sb);
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

    /// [`binary_half`] against the general path's per-element expression (`Num` for f16/bf16:
    /// widen, compute, round once), bit for bit.
    fn both_half<H: Half + std::fmt::Debug>(
        op: &str,
        sa: &[usize],
        sb: &[usize],
        from: fn(f32) -> H,
        to: fn(H) -> f32,
        wrap: fn(Vec<H>) -> Data,
    ) {
        let av: Vec<H> = noise(sa.iter().product(), 1)
            .into_iter()
            .map(from)
            .collect();
        let bv: Vec<H> = noise(sb.iter().product(), 2)
            .into_iter()
            .map(|v| from(v + 2.0))
            .collect();
        let a = Tensor::new(sa.to_vec(), wrap(av.clone())).unwrap();
        let b = Tensor::new(sb.to_vec(), wrap(bv.clone())).unwrap();
        let (shape, fast) = binary_half(op, &a, &av, &b, &bv).expect("a fast path");
        let (want_shape, ia, ib, f) = general(op, sa, sb);
        let want: Vec<H> = ia
            .iter()
            .zip(&ib)
            .map(|(&i, &j)| from(f(to(av[i]), to(bv[j]))))
            .collect();
        assert_eq!(shape, want_shape);
        assert!(
            fast.iter()
                .zip(&want)
                .all(|(x, y)| to(*x).to_bits() == to(*y).to_bits()),
            "{op} {sa:?} {sb:?}"
        );
    }

    #[test]
    fn half_fast_paths_equal_the_general_path() {
        use half::{bf16, f16};
        for op in ["Add", "Sub", "Mul", "Div"] {
            for (sa, sb) in [
                (&[2, 48, 40, 20][..], &[2, 48, 40, 20][..]),
                (&[2, 48, 40, 20], &[1, 48, 1, 1]),
                (&[1, 48, 1, 1], &[2, 48, 40, 20]),
                (&[2, 48, 40, 20], &[]),
                (&[3, 1000, 7], &[7]),
                (&[3, 1000, 7], &[1000, 1]),
            ] {
                both_half(op, sa, sb, f16::from_f32, f16::to_f32, Data::F16);
            }
            both_half(
                op,
                &[3, 1000, 7],
                &[7],
                bf16::from_f32,
                bf16::to_f32,
                Data::BF16,
            );
        }
    }

    #[test]
    fn half_relu_by_bits_decides_as_the_compare_on_every_bit_pattern() {
        fn check<H: Half + std::fmt::Debug>(from_bits: fn(u16) -> H, to_bits: fn(H) -> u16) {
            let all: Vec<H> = (0..=u16::MAX).map(from_bits).collect();
            let mut got = all.clone();
            relu_in_place_half(&mut got);
            let zero = from_bits(0);
            for (x, g) in all.iter().zip(&got) {
                let want = if *x < zero { zero } else { *x };
                assert_eq!(to_bits(*g), to_bits(want), "{x:?}");
            }
        }
        check(half::f16::from_bits, half::f16::to_bits);
        check(half::bf16::from_bits, half::bf16::to_bits);
    }

    #[test]
    fn half_unary_and_in_place_ops_store_what_the_unfused_ops_store() {
        use half::f16;
        let h = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<f16>>();
        // Long enough for several chunks; −0 + −0 stays −0 through Relu, NaN stays NaN.
        let n = 3 * CHUNK + 11;
        let mut a: Vec<f32> = noise(n, 3).iter().map(|v| v * 4.0).collect();
        let mut b: Vec<f32> = noise(n, 4).iter().map(|v| v * 4.0).collect();
        (a[5], b[5], a[6]) = (-0.0, -0.0, f32::NAN);
        let (ah, bh) = (h(&a), h(&b));
        for relu in [false, true] {
            let mut acc = ah.clone();
            add_in_place_half(&mut acc, &bh, relu);
            for i in 0..n {
                let mut want = f16::from_f32(ah[i].to_f32() + bh[i].to_f32());
                if relu && want < f16::ZERO {
                    want = f16::ZERO;
                }
                assert!(
                    acc[i].to_bits() == want.to_bits() || (acc[i].is_nan() && want.is_nan()),
                    "element {i}, relu {relu}"
                );
            }
        }
        let x = h(&[-1.0, 2.0, -0.0, f32::NAN, 0.5, -3.0]);
        let r = unary_half("Relu", &x).unwrap();
        assert_eq!(r[..3], h(&[0.0, 2.0, -0.0])[..]);
        assert!(r[1].is_sign_positive() && r[2].is_sign_negative() && r[3].is_nan());
        let big = h(&a);
        for op in ["Sigmoid", "Tanh", "Exp", "Abs"] {
            let f: fn(f32) -> f32 = match op {
                "Sigmoid" => |x| 1.0 / (1.0 + (-x).exp()),
                "Tanh" => f32::tanh,
                "Exp" => f32::exp,
                _ => f32::abs,
            };
            let got = unary_half(op, &big).unwrap();
            assert!(
                got.iter()
                    .zip(&big)
                    .all(|(g, x)| g.to_bits() == f16::from_f32(f(x.to_f32())).to_bits()),
                "{op}"
            );
        }
        assert!(unary_half("Neg", &x).is_none());
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
