//! Comparing one tensor of the FP32 run with the same value of a lowered run, and the FP16 range checks
//! on the FP32 values. Statistics accumulate over several inputs (sums, maxima, counts), so a value's
//! figures are those of all inputs together.

use crate::tensor::{Data, Tensor};
use half::f16;
use serde::Serialize;

/// The largest finite float16.
pub const FP16_MAX: f32 = crate::passes::fp16::FP16_MAX;

/// Accumulated comparison of one value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TensorDiff {
    /// The value's name.
    pub value: String,
    /// The node producing it in the FP32 graph ("" for a graph input), its op type and module.
    pub node: String,
    pub op: String,
    pub module: String,
    /// Position of the value in the FP32 graph's production order.
    pub index: usize,
    pub elements: u64,
    /// ‖lowered − fp32‖₂ / ‖fp32‖₂ (‖·‖ over all inputs; the absolute norm when fp32 is all zeros).
    pub rel_l2: f64,
    pub max_abs: f64,
    /// Cosine similarity (1 when both are zero).
    pub cosine: f64,
    /// The error this value's node added: its relative L2 minus the largest of its inputs' (infinite
    /// where non-finite values start). Ranks the worst values by where error arises, not by where it
    /// has accumulated.
    pub added: f64,
    /// Fraction of the FP32 values beyond ±65504 (they overflow to ±inf in FP16).
    pub fp16_overflow: f64,
    /// Fraction of the FP32 values that are non-zero but flush to zero in FP16.
    pub fp16_underflow: f64,
    /// Largest |x| of the FP32 values.
    pub fp32_amax: f64,
    /// NaN and ±inf counts in the lowered run (and in the FP32 run).
    pub nan: u64,
    pub inf: u64,
    pub fp32_nonfinite: u64,
    /// Shapes differed (or a side was not float): nothing else compared.
    pub mismatch: Option<String>,
    #[serde(skip)]
    acc: Acc,
}

#[derive(Debug, Clone, Default)]
struct Acc {
    err2: f64,
    ref2: f64,
    low2: f64,
    dot: f64,
    overflow: u64,
    underflow: u64,
}

/// Whether a value computes in floating point (the values the debugger compares).
pub fn is_float(t: &Tensor) -> bool {
    matches!(t.data, Data::F32(_) | Data::F16(_))
}

/// The values as float32, moving them when they already are.
pub fn into_f32(t: Tensor) -> (Vec<usize>, Vec<f32>) {
    match t.data {
        Data::F32(v) => (t.shape, v),
        _ => {
            let v = t.as_f32s();
            (t.shape, v)
        }
    }
}

impl TensorDiff {
    pub fn new(value: &str, node: &str, op: &str, index: usize) -> Self {
        TensorDiff {
            value: value.to_string(),
            node: node.to_string(),
            op: op.to_string(),
            module: super::module_of(node),
            index,
            cosine: 1.0,
            ..Default::default()
        }
    }

    /// Adds one input's pair of tensors.
    pub fn add(
        &mut self,
        reference: &[f32],
        ref_shape: &[usize],
        lowered: &[f32],
        low_shape: &[usize],
    ) {
        if ref_shape != low_shape || reference.len() != lowered.len() {
            self.mismatch = Some(format!(
                "shape {ref_shape:?} in FP32, {low_shape:?} lowered"
            ));
            return;
        }
        let a = &mut self.acc;
        for (&r, &l) in reference.iter().zip(lowered) {
            if !r.is_finite() {
                self.fp32_nonfinite += 1;
                continue;
            }
            if l.is_nan() {
                self.nan += 1;
                continue;
            }
            if l.is_infinite() {
                self.inf += 1;
                continue;
            }
            let (r64, l64) = (r as f64, l as f64);
            let e = l64 - r64;
            a.err2 += e * e;
            a.ref2 += r64 * r64;
            a.low2 += l64 * l64;
            a.dot += r64 * l64;
            self.max_abs = self.max_abs.max(e.abs());
            let ar = r.abs();
            self.fp32_amax = self.fp32_amax.max(ar as f64);
            if ar > FP16_MAX {
                a.overflow += 1;
            } else if r != 0.0 && f16::from_f32(r).to_f32() == 0.0 {
                a.underflow += 1;
            }
        }
        self.elements += reference.len() as u64;
        self.finish();
    }

    fn finish(&mut self) {
        let a = &self.acc;
        self.rel_l2 = if a.ref2 > 0.0 {
            (a.err2 / a.ref2).sqrt()
        } else {
            a.err2.sqrt()
        };
        self.cosine = if a.ref2 > 0.0 && a.low2 > 0.0 {
            a.dot / (a.ref2.sqrt() * a.low2.sqrt())
        } else if a.ref2 == 0.0 && a.low2 == 0.0 {
            1.0
        } else {
            0.0
        };
        let n = self.elements.max(1) as f64;
        self.fp16_overflow = a.overflow as f64 / n;
        self.fp16_underflow = a.underflow as f64 / n;
    }

    /// NaN or ±inf in the lowered run where FP32 was finite.
    pub fn nonfinite(&self) -> bool {
        self.nan + self.inf > 0
    }

    /// The error that ranks values: relative L2, infinite when the lowered run lost finiteness.
    pub fn severity(&self) -> f64 {
        if self.nonfinite() || self.mismatch.is_some() || self.rel_l2.is_nan() {
            f64::INFINITY
        } else {
            self.rel_l2
        }
    }
}

/// How far FP16 rounding of a softmax's logits moves its result: the largest total-variation distance
/// (½ Σ|p − q|) over the rows along `axis` between softmax(x) and softmax(fp16(x)), infinite when a
/// logit overflows FP16. Large logits lose their differences in FP16 (its spacing is 32 at 65504, 1 at
/// 2048), so near-ties collapse and the distribution flattens or shifts.
pub fn softmax_fp16_shift(x: &[f32], shape: &[usize], axis: i64) -> f64 {
    let rank = shape.len() as i64;
    let axis = if axis < 0 { axis + rank } else { axis };
    if axis < 0 || axis >= rank || x.is_empty() {
        return 0.0;
    }
    let axis = axis as usize;
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    if n == 0 || inner == 0 {
        return 0.0;
    }
    let mut worst = 0f64;
    let mut p = vec![0f64; n];
    let mut q = vec![0f64; n];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| x[(o * n + k) * inner + i];
            if (0..n).any(|k| at(k).abs() > FP16_MAX) {
                return f64::INFINITY;
            }
            let softmax = |out: &mut [f64], half: bool| {
                let v = |k: usize| {
                    let v = at(k);
                    (if half { f16::from_f32(v).to_f32() } else { v }) as f64
                };
                let m = (0..n).map(v).fold(f64::NEG_INFINITY, f64::max);
                let mut s = 0.0;
                for (k, o) in out.iter_mut().enumerate() {
                    *o = (v(k) - m).exp();
                    s += *o;
                }
                out.iter_mut().for_each(|o| *o /= s);
            };
            softmax(&mut p, false);
            softmax(&mut q, true);
            let tv: f64 = 0.5 * p.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum::<f64>();
            worst = worst.max(tv);
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_tensors_have_no_error() {
        let mut d = TensorDiff::new("v", "n", "Conv", 0);
        let x = [1.0, -2.0, 3.0];
        d.add(&x, &[3], &x, &[3]);
        assert_eq!(d.rel_l2, 0.0);
        assert!((d.cosine - 1.0).abs() < 1e-12);
        assert_eq!(d.max_abs, 0.0);
    }

    #[test]
    fn errors_overflow_and_nonfinite_are_counted() {
        let mut d = TensorDiff::new("v", "n", "Conv", 0);
        // ‖e‖ = 0.5 over ‖r‖ = 5 → 0.1.
        d.add(&[3.0, 4.0], &[2], &[3.0, 4.5], &[2]);
        assert!((d.rel_l2 - 0.1).abs() < 1e-12, "{}", d.rel_l2);
        assert!((d.max_abs - 0.5).abs() < 1e-12);
        d.add(&[70000.0, 1e-9], &[2], &[f32::INFINITY, 0.0], &[2]);
        assert_eq!(d.inf, 1);
        assert_eq!(d.elements, 4);
        assert!((d.fp16_underflow - 0.25).abs() < 1e-12);
        assert!(d.nonfinite());
        assert_eq!(d.severity(), f64::INFINITY);
        let mut m = TensorDiff::new("v", "n", "Conv", 0);
        m.add(&[1.0], &[1], &[1.0, 2.0], &[2]);
        assert!(m.mismatch.is_some());
    }

    #[test]
    fn softmax_shift_flags_large_logits_only() {
        // Logits 0.1 apart stay apart in FP16 near 1; near 3000 the FP16 spacing is 2: they tie.
        let small = [1.0, 1.1, 1.2];
        assert!(softmax_fp16_shift(&small, &[1, 3], -1) < 1e-3);
        let large = [3000.0, 3000.4, 3001.2];
        assert!(softmax_fp16_shift(&large, &[1, 3], -1) > 0.1);
        assert_eq!(softmax_fp16_shift(&[1e5, 0.0], &[2, 1], 0), f64::INFINITY);
    }
}
