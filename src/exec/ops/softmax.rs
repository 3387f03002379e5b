//! Softmax and LogSoftmax, max-subtracted, summed in f64. Before opset 13 the input is coerced to
//! 2-D at `axis` (default 1): one softmax over all of `shape[axis..]`. From 13 it runs along
//! `axis` (default -1) alone.

use super::float::{f32_in, f32_out};
use super::par::{self, SyncPtr, CHUNK};
use super::{norm_axis, Ctx, OpResult};
use crate::tensor::Tensor;

/// Lanes per task when the softmax axis is not the last one.
const LANES: usize = 256;

pub fn softmax(cx: &Ctx, log: bool) -> OpResult<Tensor> {
    let op = if log { "LogSoftmax" } else { "Softmax" };
    let x = cx.input(0)?;
    let (v, prec) = f32_in(x, op)?;
    let legacy = cx.opset < 13;
    let axis = cx.attr_i("axis")?.unwrap_or(if legacy { 1 } else { -1 });
    let a = norm_axis(axis, x.shape.len())?;
    let outer: usize = x.shape[..a].iter().product();
    let (dim, inner) = if legacy {
        (x.shape[a..].iter().product(), 1)
    } else {
        (x.shape[a], x.shape[a + 1..].iter().product::<usize>())
    };
    let mut y = crate::exec::recycle::f32_buffer(v.len());
    if y.is_empty() {
        return Ok(f32_out(x.shape.clone(), y, prec));
    }
    if inner == 1 {
        let rows = (CHUNK / dim).max(1);
        par::chunks_mut(&mut y, rows * dim, |start, out| {
            for (o, xs) in out.chunks_mut(dim).zip(v[start..].chunks(dim)) {
                row(xs, o, log);
            }
        });
    } else {
        let chunks = inner.div_ceil(LANES);
        let yp = SyncPtr::new(&mut y);
        par::for_each(outer * chunks, v.len(), |t| {
            let (o, c) = (t / chunks, t % chunks);
            let lanes = c * LANES..((c + 1) * LANES).min(inner);
            let base = o * dim * inner;
            // SAFETY: task (o, c) alone writes lanes `lanes` of block o, inside `y`.
            unsafe {
                strided(
                    &v[base..base + dim * inner],
                    yp.get().add(base),
                    dim,
                    inner,
                    lanes,
                    log,
                )
            };
        });
    }
    Ok(f32_out(x.shape.clone(), y, prec))
}

/// One contiguous softmax.
fn row(x: &[f32], y: &mut [f32], log: bool) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f64;
    for (o, &v) in y.iter_mut().zip(x) {
        let e = (v - max).exp();
        *o = e;
        sum += e as f64;
    }
    if log {
        let shift = max + sum.ln() as f32;
        for (o, &v) in y.iter_mut().zip(x) {
            *o = v - shift;
        }
    } else {
        let s = sum as f32;
        for o in y.iter_mut() {
            *o /= s;
        }
    }
}

/// Softmaxes along a strided axis: lanes `lanes` of a `[dim][inner]` block.
///
/// # Safety
/// `y` must address `dim · inner` elements of which no one else writes lanes `lanes` meanwhile.
unsafe fn strided(
    x: &[f32],
    y: *mut f32,
    dim: usize,
    inner: usize,
    lanes: std::ops::Range<usize>,
    log: bool,
) {
    let w = lanes.len();
    let at = |d: usize| d * inner + lanes.start;
    let mut max = vec![f32::NEG_INFINITY; w];
    for d in 0..dim {
        for (m, &v) in max.iter_mut().zip(&x[at(d)..at(d) + w]) {
            *m = m.max(v);
        }
    }
    let mut sum = vec![0f64; w];
    for d in 0..dim {
        let out = std::slice::from_raw_parts_mut(y.add(at(d)), w);
        for (((o, &v), m), s) in out.iter_mut().zip(&x[at(d)..]).zip(&max).zip(&mut sum) {
            *o = (v - m).exp();
            *s += *o as f64;
        }
    }
    if log {
        let shift: Vec<f32> = max
            .iter()
            .zip(&sum)
            .map(|(m, s)| m + s.ln() as f32)
            .collect();
        for d in 0..dim {
            let out = std::slice::from_raw_parts_mut(y.add(at(d)), w);
            for ((o, &v), s) in out.iter_mut().zip(&x[at(d)..]).zip(&shift) {
                *o = v - s;
            }
        }
    } else {
        let sum: Vec<f32> = sum.iter().map(|&s| s as f32).collect();
        for d in 0..dim {
            let out = std::slice::from_raw_parts_mut(y.add(at(d)), w);
            for (o, s) in out.iter_mut().zip(&sum) {
                *o /= s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::OpError;

    fn soft(xs: &[f32]) -> Vec<f32> {
        let m = xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let s: f64 = xs.iter().map(|&v| ((v - m) as f64).exp()).sum();
        xs.iter()
            .map(|&v| (((v - m) as f64).exp() / s) as f32)
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn last_axis_and_large_values() {
        let x = f32s(&[2, 3], &[1., 2., 3., 1000., 1000., 1000.]);
        let y = run(&node("Softmax", 1, vec![int("axis", -1)]), &[&x], 13).unwrap();
        let mut want = soft(&[1., 2., 3.]);
        want.extend([1. / 3.; 3]);
        close(&y.as_f32s(), &want);
        // Default axis from 13 is -1.
        assert_eq!(run(&node("Softmax", 1, vec![]), &[&x], 13).unwrap(), y);
    }

    #[test]
    fn axis_one_of_a_4d_map() {
        // [1, 3, 2, 2]: softmax over the 3 channels at each pixel.
        let v: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let x = f32s(&[1, 3, 2, 2], &v);
        let y = run(&node("Softmax", 1, vec![int("axis", 1)]), &[&x], 13)
            .unwrap()
            .as_f32s();
        for p in 0..4 {
            let want = soft(&[v[p], v[4 + p], v[8 + p]]);
            close(&[y[p], y[4 + p], y[8 + p]], &want);
        }
    }

    #[test]
    fn opset_11_coerces_to_2d() {
        // axis 1 of [2, 2, 2] at opset 11: one softmax over the last 4 values of each batch.
        let v = [0., 1., 2., 3., 4., 5., 6., 7.];
        let x = f32s(&[2, 2, 2], &v);
        let y11 = run(&node("Softmax", 1, vec![int("axis", 1)]), &[&x], 11).unwrap();
        let mut want = soft(&v[..4]);
        want.extend(soft(&v[4..]));
        close(&y11.as_f32s(), &want);
        // The same node at 13 runs along axis 1 alone.
        let y13 = run(&node("Softmax", 1, vec![int("axis", 1)]), &[&x], 13).unwrap();
        let want13: Vec<f32> = [soft(&[0., 2.]), soft(&[1., 3.])]
            .iter()
            .flat_map(|p| [p[0], p[1]])
            .collect();
        close(
            &y13.as_f32s()[..4],
            &[want13[0], want13[2], want13[1], want13[3]],
        );
        // Default axis before 13 is 1.
        assert_eq!(run(&node("Softmax", 1, vec![]), &[&x], 11).unwrap(), y11);
    }

    #[test]
    fn log_softmax_and_threads() {
        let n = 3 * 2000;
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
        let x = f32s(&[3, 2000], &v);
        let y = run(&node("LogSoftmax", 1, vec![]), &[&x], 13)
            .unwrap()
            .as_f32s();
        let s = run(&node("Softmax", 1, vec![]), &[&x], 13)
            .unwrap()
            .as_f32s();
        for (a, b) in y.iter().zip(&s) {
            assert!((a - b.ln()).abs() < 1e-4);
        }
        // Axis 0 of [3, 2000]: strided lanes, several tasks.
        let s0 = run(&node("Softmax", 1, vec![int("axis", 0)]), &[&x], 13)
            .unwrap()
            .as_f32s();
        for p in [0, 999, 1999] {
            close(
                &[s0[p], s0[2000 + p], s0[4000 + p]],
                &soft(&[v[p], v[2000 + p], v[4000 + p]]),
            );
        }
    }

    #[test]
    fn refusals() {
        let i = i64s(&[2], &[1, 2]);
        assert!(matches!(
            run(&node("Softmax", 1, vec![]), &[&i], 13),
            Err(OpError::Invalid(_))
        ));
        let x = f32s(&[2], &[1., 2.]);
        assert!(run(&node("Softmax", 1, vec![int("axis", 2)]), &[&x], 13).is_err());
    }
}
