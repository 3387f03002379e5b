//! MatMul (numpy matmul: batched, broadcast batch dimensions, 1-D operands) and Gemm (transA,
//! transB, alpha, beta, C broadcast to the output), on the `gemm` crate. The pool gets the batch
//! and, within each product, slices of the larger of M and N, one single-threaded GEMM each.

use super::blas::{gemm, Float, MatRef};
use super::broadcast::{broadcast_shapes, offsets};
use super::float::{f32_in, f32_out, f32_same, not_float};
use super::par::{self, SyncPtr};
use super::{numel, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

/// The shapes of a MatMul: `batch` products of m×k by k×n, and which A and B matrix each reads.
#[derive(Debug)]
struct Plan {
    m: usize,
    k: usize,
    n: usize,
    a_index: Vec<usize>,
    b_index: Vec<usize>,
    out_shape: Vec<usize>,
}

impl Plan {
    fn new(sa: &[usize], sb: &[usize]) -> OpResult<Self> {
        if sa.is_empty() || sb.is_empty() {
            return Err(OpError::invalid("MatMul takes tensors of rank 1 or more"));
        }
        // A 1-D A is a row [1, K], a 1-D B a column [K, 1]; the unit dimension is dropped after.
        let a2 = if sa.len() == 1 {
            vec![1, sa[0]]
        } else {
            sa.to_vec()
        };
        let b2 = if sb.len() == 1 {
            vec![sb[0], 1]
        } else {
            sb.to_vec()
        };
        let (ra, rb) = (a2.len(), b2.len());
        let (m, k, kb, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 2], b2[rb - 1]);
        if k != kb {
            return Err(OpError::invalid(format!(
                "MatMul shapes {sa:?} and {sb:?} do not fit"
            )));
        }
        let (ba, bb) = (&a2[..ra - 2], &b2[..rb - 2]);
        let mut out_shape = broadcast_shapes(&[ba, bb])?;
        let (a_index, b_index) = (offsets(ba, &out_shape), offsets(bb, &out_shape));
        if sa.len() > 1 {
            out_shape.push(m);
        }
        if sb.len() > 1 {
            out_shape.push(n);
        }
        numel(&out_shape)?;
        Ok(Plan {
            m,
            k,
            n,
            a_index,
            b_index,
            out_shape,
        })
    }

    fn run<T: Float>(&self, a: &[T], b: &[T]) -> Vec<T> {
        let (m, k, n) = (self.m, self.k, self.n);
        let mut y = vec![T::ZERO; self.a_index.len() * m * n];
        let one_b = self.b_index.iter().all(|&i| i == 0);
        let a_whole = self.a_index.iter().enumerate().all(|(i, &j)| i == j);
        if one_b && a_whole {
            // One B for every A matrix, each A read once: a single product of (batch·m) rows.
            let rows = self.a_index.len() * m;
            let lhs = MatRef::new(a.as_ptr(), k, 1);
            let rhs = MatRef::new(b.as_ptr(), n, 1);
            products(1, rows, n, k, &mut y, |_| (lhs, rhs), false, T::ONE);
        } else {
            let (ai, bi) = (&self.a_index, &self.b_index);
            let (ap, bp) = (MatRef::new(a.as_ptr(), k, 1), MatRef::new(b.as_ptr(), n, 1));
            let mats = |t: usize| (ap.at(ai[t] * m, 0), bp.at(bi[t] * k, 0));
            products(ai.len(), m, n, k, &mut y, mats, false, T::ONE);
        }
        y
    }
}

/// `batch` products into `y` (`[batch][m][n]`, row-major): `y[t] (+)= scale · lhs_t · rhs_t`,
/// with `mats(t)` giving `(lhs_t, rhs_t)`, which must address m×k and k×n elements in bounds.
#[allow(clippy::too_many_arguments)]
fn products<T: Float>(
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    y: &mut [T],
    mats: impl Fn(usize) -> (MatRef<T>, MatRef<T>) + Sync,
    accumulate: bool,
    scale: T,
) {
    let work = batch * m * n * k.max(1);
    // Slices of at least 32 rows (or columns), a few per thread when the work is worth it.
    let along_m = m >= n;
    let len = if along_m { m } else { n };
    let want = if par::worth(work) {
        (4 * rayon::current_num_threads()).div_ceil(batch.max(1))
    } else {
        1
    };
    let parts = par::split(len, want.min(len / 32).max(1));
    let yp = SyncPtr::new(y);
    par::for_each(batch * parts.len(), work, |task| {
        let (t, r) = (task / parts.len(), parts[task % parts.len()].clone());
        let (lhs, rhs) = mats(t);
        // SAFETY: `y` holds batch·m·n elements and outlives the tasks; task (t, r) alone writes
        // rows (or columns) r of product t. The caller vouches for lhs and rhs.
        unsafe {
            let dst = yp.get().add(t * m * n);
            if along_m {
                let dst = dst.add(r.start * n);
                gemm(
                    r.len(),
                    n,
                    k,
                    dst,
                    n,
                    1,
                    accumulate,
                    lhs.at(r.start, 0),
                    rhs,
                    scale,
                );
            } else {
                let dst = dst.add(r.start);
                gemm(
                    m,
                    r.len(),
                    k,
                    dst,
                    n,
                    1,
                    accumulate,
                    lhs,
                    rhs.at(0, r.start),
                    scale,
                );
            }
        }
    });
}

/// MatMul.
pub fn matmul(cx: &Ctx) -> OpResult<Tensor> {
    let (a, b) = (cx.input(0)?, cx.input(1)?);
    let plan = Plan::new(&a.shape, &b.shape)?;
    let shape = plan.out_shape.clone();
    match (&a.data, &b.data) {
        (Data::F32(av), Data::F32(bv)) => Ok(Tensor {
            shape,
            data: Data::F32(plan.run(av, bv)),
        }),
        (Data::F64(av), Data::F64(bv)) => Ok(Tensor {
            shape,
            data: Data::F64(plan.run(av, bv)),
        }),
        (Data::F16(_) | Data::BF16(_), _) => {
            let (av, prec) = f32_in(a, "MatMul")?;
            let bv = f32_same(b, prec, "MatMul")?;
            Ok(f32_out(shape, plan.run(&av, &bv), prec))
        }
        _ => Err(refuse("MatMul", a, b)),
    }
}

fn refuse(op: &str, a: &Tensor, b: &Tensor) -> OpError {
    match &a.data {
        Data::F32(_) | Data::F64(_) => OpError::invalid(format!(
            "{op}: inputs must share one element type, got {:?} and {:?}",
            a.dtype(),
            b.dtype()
        )),
        Data::Bool(_) => not_float(op, &a.data),
        // Integer MatMul is valid ONNX, but not computed here.
        _ => OpError::unsupported(format!("{op} on {:?}", a.dtype())),
    }
}

/// Gemm: `Y = alpha · A' · B' + beta · C`, A' and B' transposed per transA/transB, C broadcast
/// to `[M, N]` (ignored when beta is 0, as onnxruntime does).
pub fn gemm_op(cx: &Ctx) -> OpResult<Tensor> {
    let (a, b, c) = (cx.input(0)?, cx.input(1)?, cx.opt_input(2));
    let trans_a = cx.attr_i("transA")?.unwrap_or(0) != 0;
    let trans_b = cx.attr_i("transB")?.unwrap_or(0) != 0;
    let alpha = attr_f(cx, "alpha")?;
    let beta = attr_f(cx, "beta")?;
    if a.shape.len() != 2 || b.shape.len() != 2 {
        return Err(OpError::invalid(format!(
            "Gemm takes matrices, got {:?} and {:?}",
            a.shape, b.shape
        )));
    }
    let (m, k) = if trans_a {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (kb, n) = if trans_b {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if k != kb {
        return Err(OpError::invalid(format!(
            "Gemm shapes {:?} and {:?} do not fit (transA {trans_a}, transB {trans_b})",
            a.shape, b.shape
        )));
    }
    let c = c.filter(|_| beta != 0.0);
    if let Some(c) = c {
        if broadcast_shapes(&[&c.shape, &[m, n]])? != [m, n] {
            return Err(OpError::invalid(format!(
                "C {:?} does not broadcast to [{m}, {n}]",
                c.shape
            )));
        }
    }
    let g = GemmShape {
        m,
        n,
        k,
        trans_a,
        trans_b,
    };
    let shape = vec![m, n];
    match (&a.data, &b.data) {
        (Data::F32(av), Data::F32(bv)) => {
            let cv = c
                .map(|c| f32_same(c, super::float::Prec::F32, "Gemm"))
                .transpose()?;
            let cs = c.map(|c| c.shape.as_slice());
            let y = g.run(av, bv, cv.as_deref().zip(cs), alpha, beta);
            Ok(f32_out(shape, y, super::float::Prec::F32))
        }
        (Data::F64(av), Data::F64(bv)) => {
            let cv = match c.map(|c| &c.data) {
                None => None,
                Some(Data::F64(v)) => Some(v.as_slice()),
                Some(_) => return Err(OpError::invalid("Gemm: C must have A's element type")),
            };
            let cs = c.map(|c| c.shape.as_slice());
            let y = g.run(av, bv, cv.zip(cs), alpha as f64, beta as f64);
            Ok(Tensor {
                shape,
                data: Data::F64(y),
            })
        }
        (Data::F16(_) | Data::BF16(_), _) => {
            let (av, prec) = f32_in(a, "Gemm")?;
            let bv = f32_same(b, prec, "Gemm")?;
            let cv = c.map(|c| f32_same(c, prec, "Gemm")).transpose()?;
            let cs = c.map(|c| c.shape.as_slice());
            let y = g.run(&av, &bv, cv.as_deref().zip(cs), alpha, beta);
            Ok(f32_out(shape, y, prec))
        }
        _ => Err(refuse("Gemm", a, b)),
    }
}

fn attr_f(cx: &Ctx, name: &str) -> OpResult<f32> {
    match cx.attr(name) {
        None => Ok(1.0),
        Some(a) => {
            a.f.ok_or_else(|| OpError::invalid(format!("attribute '{name}' is not a float")))
        }
    }
}

struct GemmShape {
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
}

impl GemmShape {
    fn run<T: Float>(
        &self,
        a: &[T],
        b: &[T],
        c: Option<(&[T], &[usize])>,
        alpha: T,
        beta: T,
    ) -> Vec<T> {
        let (m, n, k) = (self.m, self.n, self.k);
        let mut y = vec![T::ZERO; m * n];
        if let Some((cv, cs)) = c {
            for (o, i) in y.iter_mut().zip(offsets(cs, &[m, n])) {
                *o = beta * cv[i];
            }
        }
        let lhs = if self.trans_a {
            MatRef::new(a.as_ptr(), 1, m)
        } else {
            MatRef::new(a.as_ptr(), k, 1)
        };
        let rhs = if self.trans_b {
            MatRef::new(b.as_ptr(), 1, k)
        } else {
            MatRef::new(b.as_ptr(), n, 1)
        };
        products(1, m, n, k, &mut y, |_| (lhs, rhs), c.is_some(), alpha);
        y
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    /// numpy matmul by the definition.
    fn naive(sa: &[usize], a: &[f32], sb: &[usize], b: &[f32]) -> (Vec<usize>, Vec<f32>) {
        let p = Plan::new(sa, sb).unwrap();
        let (m, k, n) = (p.m, p.k, p.n);
        let mut y = Vec::new();
        for (&ia, &ib) in p.a_index.iter().zip(&p.b_index) {
            for i in 0..m {
                for j in 0..n {
                    let s: f64 = (0..k)
                        .map(|l| {
                            a[ia * m * k + i * k + l] as f64 * b[ib * k * n + l * n + j] as f64
                        })
                        .sum();
                    y.push(s as f32);
                }
            }
        }
        (p.out_shape, y)
    }

    fn check(sa: &[usize], sb: &[usize], want_shape: &[usize]) {
        let a = noise(sa.iter().product(), 7);
        let b = noise(sb.iter().product(), 8);
        let (shape, want) = naive(sa, &a, sb, &b);
        assert_eq!(shape, want_shape);
        let y = run(
            &node("MatMul", 2, vec![]),
            &[&f32s(sa, &a), &f32s(sb, &b)],
            13,
        )
        .unwrap();
        assert_eq!(y.shape, want_shape, "{sa:?} x {sb:?}");
        let err = rel_l2(&y.as_f32s(), &want);
        assert!(err <= 1e-5, "{sa:?} x {sb:?}: rel L2 {err}");
    }

    #[test]
    fn matmul_broadcasts_and_drops_vector_dims() {
        check(&[3, 4], &[4, 5], &[3, 5]);
        check(&[2, 3, 4], &[4, 5], &[2, 3, 5]);
        check(&[4], &[4, 5], &[5]);
        check(&[2, 3, 4], &[4], &[2, 3]);
        check(&[4], &[4], &[]);
        check(&[2, 1, 3, 4], &[5, 4, 6], &[2, 5, 3, 6]);
        check(&[3, 4], &[2, 4, 5], &[2, 3, 5]);
        check(&[1, 3, 4], &[2, 4, 5], &[2, 3, 5]);
        check(&[2, 0, 4], &[4, 5], &[2, 0, 5]);
        check(&[2, 3, 0], &[0, 5], &[2, 3, 5]);
    }

    #[test]
    fn matmul_splits_over_the_pool() {
        // Folded batch (M = 2·300), split along M; a wide one split along N; batched.
        check(&[2, 300, 40], &[40, 20], &[2, 300, 20]);
        check(&[19, 300], &[300, 200], &[19, 200]);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| check(&[3, 70, 50], &[3, 50, 90], &[3, 70, 90]));
    }

    #[test]
    fn matmul_types() {
        let a = Tensor::new(vec![2], Data::F64(vec![1.0, 2.0])).unwrap();
        let y = run(&node("MatMul", 2, vec![]), &[&a, &a], 13).unwrap();
        assert_eq!(y.data, Data::F64(vec![5.0]));
        let i = i64s(&[1, 1], &[2]);
        let e = run(&node("MatMul", 2, vec![]), &[&i, &i], 13).unwrap_err();
        assert!(matches!(e, OpError::Unsupported(_)), "{e}");
        let f = f32s(&[1, 1], &[2.]);
        assert!(run(&node("MatMul", 2, vec![]), &[&f, &i], 13).is_err());
        assert!(run(
            &node("MatMul", 2, vec![]),
            &[&f32s(&[2, 3], &[0.; 6]), &f],
            13
        )
        .is_err());
    }

    #[test]
    fn gemm_transposes_scales_and_broadcasts_c() {
        // A' = [[1, 2], [3, 4]] stored transposed, B' = [[1, 0, 1], [0, 1, 1]].
        let a = f32s(&[2, 2], &[1., 3., 2., 4.]);
        let b = f32s(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let attrs = vec![
            int("transA", 1),
            int("transB", 1),
            float("alpha", 2.0),
            float("beta", 0.5),
        ];
        let n = node("Gemm", 3, attrs.clone());
        // A'B' = [[1, 2, 3], [3, 4, 7]].
        let c = f32s(&[3], &[2., 4., 6.]);
        let y = run(&n, &[&a, &b, &c], 13).unwrap();
        assert_eq!(y, f32s(&[2, 3], &[3., 6., 9., 7., 10., 17.]));
        let c = f32s(&[2, 1], &[10., 20.]);
        let y = run(&n, &[&a, &b, &c], 13).unwrap();
        assert_eq!(y, f32s(&[2, 3], &[7., 9., 11., 16., 18., 24.]));
        let y = run(&node("Gemm", 2, attrs), &[&a, &b], 13).unwrap();
        assert_eq!(y, f32s(&[2, 3], &[2., 4., 6., 6., 8., 14.]));
        // beta 0 ignores C, even NaN.
        let zero = node("Gemm", 3, vec![float("beta", 0.0)]);
        let c = f32s(&[], &[f32::NAN]);
        let y = run(
            &zero,
            &[&f32s(&[1, 2], &[1., 2.]), &f32s(&[2, 1], &[3., 4.]), &c],
            13,
        );
        assert_eq!(y.unwrap(), f32s(&[1, 1], &[11.]));
        let bad_c = f32s(&[3, 3], &[0.; 9]);
        assert!(run(&node("Gemm", 3, vec![]), &[&a, &a, &bad_c], 13).is_err());
    }

    #[test]
    fn gemm_large_matches_matmul() {
        let (m, k, n) = (130, 70, 90);
        let a = noise(m * k, 1);
        let b = noise(k * n, 2);
        let c = noise(n, 3);
        let (_, mut want) = naive(&[m, k], &a, &[k, n], &b);
        for (i, v) in want.iter_mut().enumerate() {
            *v += c[i % n];
        }
        let y = run(
            &node("Gemm", 3, vec![]),
            &[&f32s(&[m, k], &a), &f32s(&[k, n], &b), &f32s(&[n], &c)],
            13,
        )
        .unwrap();
        assert!(rel_l2(&y.as_f32s(), &want) <= 1e-5);
    }
}
