//! QuantizeLinear and DequantizeLinear, per tensor (opset 10) and per axis (`axis`, default 1,
//! from 13). Quantizing divides by the scale in f32, rounds half to even, adds the zero point and
//! saturates to the output type (uint8 unless the zero point or, from 21, `output_dtype` says
//! int8, uint16 or int16). Blocked scales (21's `block_size`) and the float8/int4 types are
//! refused.

use super::float::{f32_out, Prec};
use super::par::{self, CHUNK};
use super::{norm_axis, numel, Ctx, OpError, OpResult};
use crate::onnx::proto::tensor_proto::DataType;
use crate::tensor::{Data, Tensor};

/// How scales map onto the input: element `i` uses scale `(i / inner) % dim`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    dim: usize,
    inner: usize,
}

fn layout(
    cx: &Ctx,
    op: &str,
    x: &[usize],
    scale: &Tensor,
    zp: Option<&Tensor>,
) -> OpResult<Layout> {
    if cx.opset >= 21 && cx.attr_i("block_size")?.unwrap_or(0) != 0 {
        return Err(OpError::unsupported(format!("{op} with block_size")));
    }
    if let Some(z) = zp {
        // One value each may come as [] and [1]; per-axis ones must agree exactly.
        if z.shape != scale.shape && (z.len() != 1 || scale.len() != 1) {
            return Err(OpError::invalid(format!(
                "{op}: zero point {:?} and scale {:?} differ in shape",
                z.shape, scale.shape
            )));
        }
    }
    let n = numel(&scale.shape)?;
    match scale.shape.len() {
        0 => Ok(Layout { dim: 1, inner: 1 }),
        1 if n == 1 && cx.opset < 13 => Ok(Layout { dim: 1, inner: 1 }),
        _ if cx.opset < 13 => Err(OpError::invalid(format!(
            "{op}: opset {} takes a scalar scale, got {:?}",
            cx.opset, scale.shape
        ))),
        1 => {
            let a = norm_axis(cx.attr_i("axis")?.unwrap_or(1), x.len())?;
            if x[a] != n && n != 1 {
                return Err(OpError::invalid(format!(
                    "{op}: {n} scales for axis {a} of {x:?}"
                )));
            }
            let inner = if n == 1 {
                1
            } else {
                x[a + 1..].iter().product()
            };
            Ok(Layout { dim: n, inner })
        }
        _ => Err(OpError::unsupported(format!(
            "{op} with scales of shape {:?} (blocked)",
            scale.shape
        ))),
    }
}

/// `f(start, part, s)` over `out` in parallel chunks, each `part` a run of elements from `start`
/// on that share scale index `s`: loops over slices the compiler vectorises, not an index per
/// element.
fn per_scale<T: Send>(out: &mut [T], l: Layout, f: impl Fn(usize, &mut [T], usize) + Sync + Send) {
    par::chunks_mut(out, CHUNK, |start, part| {
        if l.dim == 1 {
            return f(start, part, 0);
        }
        let mut i = 0;
        while i < part.len() {
            let at = start + i;
            let run = (l.inner - at % l.inner).min(part.len() - i);
            f(at, &mut part[i..i + run], at / l.inner % l.dim);
            i += run;
        }
    });
}

/// `v` rounded to the nearest integer, ties to even, for `|v|` up to 2^22 (beyond it, ±2^22: every
/// quantized type saturates long before). `f32::round_ties_even` is a libm call per value on the
/// baseline x86-64 target (no SSE4.1 `roundss`), 5× slower than the whole rest of QuantizeLinear;
/// adding and subtracting 1.5·2^23 rounds in the FPU's default mode, which is ties-to-even, and
/// vectorises on every target.
#[inline(always)]
fn round_half_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: sums in [2^23, 2^24] have a ulp of exactly 1
    const LIMIT: f32 = 4_194_304.0; // 2^22
    (v.clamp(-LIMIT, LIMIT) + MAGIC) - MAGIC
}

/// Scales as f32, and the float type of the dequantized output.
fn scales(t: &Tensor, op: &str) -> OpResult<(Vec<f32>, Prec)> {
    let prec = match t.data {
        Data::F32(_) => Prec::F32,
        Data::F16(_) => Prec::F16,
        Data::BF16(_) => Prec::BF16,
        _ => {
            return Err(OpError::invalid(format!(
                "{op}: scale must be float, is {:?}",
                t.dtype()
            )))
        }
    };
    Ok((t.as_f32s(), prec))
}

/// What QuantizeLinear computes with: its layout, scales and zero points as f32, and the output
/// type's range.
struct Quant {
    l: Layout,
    s: Vec<f32>,
    z: Vec<f32>,
    to: DataType,
    lo: f32,
    hi: f32,
}

impl Quant {
    fn read(cx: &Ctx, x: &Tensor) -> OpResult<Self> {
        let (scale, zp) = (cx.input(1)?, cx.opt_input(2));
        let l = layout(cx, "QuantizeLinear", &x.shape, scale, zp)?;
        if !matches!(
            x.data,
            Data::F32(_) | Data::F16(_) | Data::BF16(_) | Data::I32(_)
        ) {
            return Err(OpError::invalid(format!(
                "QuantizeLinear takes float or int32 input, got {:?}",
                x.dtype()
            )));
        }
        let (s, _) = scales(scale, "QuantizeLinear")?;
        let to = match (zp, cx.attr_i("output_dtype")?) {
            (Some(z), _) => z.dtype(),
            (None, Some(t)) if t != 0 && cx.opset >= 21 => i32::try_from(t)
                .ok()
                .and_then(|t| DataType::try_from(t).ok())
                .ok_or_else(|| OpError::invalid(format!("unknown output_dtype {t}")))?,
            _ => DataType::Uint8,
        };
        let (lo, hi) = match to {
            DataType::Uint8 => (0, 255),
            DataType::Int8 => (-128, 127),
            DataType::Uint16 => (0, 65535),
            DataType::Int16 => (-32768, 32767),
            other => return Err(OpError::unsupported(format!("QuantizeLinear to {other:?}"))),
        };
        let z: Vec<f32> = match zp {
            Some(z) => z.as_f32s(),
            None => vec![0.0; s.len()],
        };
        Ok(Quant {
            l,
            s,
            z,
            to,
            lo: lo as f32,
            hi: hi as f32,
        })
    }

    /// The quantized value of `x` under scale `k`, as an integer-valued f32 in the output type's
    /// range; NaN, which the cast to an integer type makes 0, is 0 here too.
    #[inline(always)]
    fn level(&self, x: f32, k: usize) -> f32 {
        let q = (round_half_even(x / self.s[k]) + self.z[k]).clamp(self.lo, self.hi);
        if q.is_nan() {
            0.0
        } else {
            q
        }
    }
}

pub fn quantize(cx: &Ctx) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    let q = Quant::read(cx, x)?;
    // f32 input (the simulated INT8 graphs' every activation) is read in place, and each output type
    // written directly: no widened copies on the hot path.
    let owned;
    let xv: &[f32] = match &x.data {
        Data::F32(v) => v,
        _ => {
            owned = x.as_f32s();
            &owned
        }
    };
    fn out<T: Copy + Default + Send>(
        xv: &[f32],
        q: &Quant,
        cast: impl Fn(f32) -> T + Sync + Send,
    ) -> Vec<T> {
        let mut out = vec![T::default(); xv.len()];
        per_scale(&mut out, q.l, |start, part, k| {
            let n = part.len();
            for (o, &x) in part.iter_mut().zip(&xv[start..start + n]) {
                *o = cast(q.level(x, k));
            }
        });
        out
    }
    let data = match q.to {
        DataType::Uint8 => Data::U8(out(xv, &q, |v| v as u8)),
        DataType::Int8 => Data::I8(out(xv, &q, |v| v as i8)),
        DataType::Uint16 => Data::U16(out(xv, &q, |v| v as u16)),
        _ => Data::I16(out(xv, &q, |v| v as i16)),
    };
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

/// QuantizeLinear `q` and the DequantizeLinear `dq` that alone reads its output, as one pass:
/// what the executor runs for a simulated INT8 activation, without the integer tensor between.
/// The same numbers as the two ops in turn: the level is integer-valued in f32, so subtracting the
/// zero point and scaling is exact where DequantizeLinear's integer subtraction is. Per-tensor f32
/// scales (activations) take the one pass; anything else runs the two ops.
pub fn quantize_dequantize(q: &Ctx, dq: &Ctx) -> OpResult<Tensor> {
    let x = q.input(0)?;
    let quant = Quant::read(q, x)?;
    let (dscale, dzp) = (dq.input(1)?, dq.opt_input(2));
    // DequantizeLinear's own checks (axis, block_size, zero point shape), as the two ops would make.
    let dl = layout(dq, "DequantizeLinear", &x.shape, dscale, dzp)?;
    let fast = matches!((&x.data, &dscale.data), (Data::F32(_), Data::F32(_)))
        && quant.l.dim == 1
        && dl.dim == 1
        && dzp.is_none_or(|z| z.dtype() == quant.to);
    let xv = match &x.data {
        Data::F32(v) if fast => v,
        _ => return unfused(q, dq),
    };
    let s = dscale.as_f32s()[0];
    let z = dzp.map_or(0.0, |z| z.as_f32s()[0]);
    let mut y = crate::exec::recycle::f32_buffer(xv.len());
    per_scale(&mut y, quant.l, |start, part, k| {
        let n = part.len();
        for (o, &v) in part.iter_mut().zip(&xv[start..start + n]) {
            *o = (quant.level(v, k) - z) * s;
        }
    });
    Ok(Tensor {
        shape: x.shape.clone(),
        data: Data::F32(y),
    })
}

/// `dq` applied to the output of `q`, each op as it stands.
fn unfused(q: &Ctx, dq: &Ctx) -> OpResult<Tensor> {
    let levels = quantize(q)?;
    let mut inputs: Vec<Option<&Tensor>> = dq.inputs.to_vec();
    inputs[0] = Some(&levels);
    dequantize(&Ctx {
        node: dq.node,
        inputs: &inputs,
        opset: dq.opset,
    })
}

pub fn dequantize(cx: &Ctx) -> OpResult<Tensor> {
    let (x, scale, zp) = (cx.input(0)?, cx.input(1)?, cx.opt_input(2));
    let l = layout(cx, "DequantizeLinear", &x.shape, scale, zp)?;
    if !matches!(
        x.data,
        Data::I8(_) | Data::U8(_) | Data::I16(_) | Data::U16(_) | Data::I32(_)
    ) {
        return Err(OpError::invalid(format!(
            "DequantizeLinear takes an integer input, got {:?}",
            x.dtype()
        )));
    }
    if let Some(z) = zp {
        if z.dtype() != x.dtype() {
            return Err(OpError::invalid(format!(
                "DequantizeLinear: zero point {:?} and input {:?} differ in type",
                z.dtype(),
                x.dtype()
            )));
        }
    }
    let (s, prec) = scales(scale, "DequantizeLinear")?;
    let z = match zp {
        Some(z) => z.as_i64s().expect("integer zero point"),
        None => vec![0; s.len()],
    };
    let mut y = crate::exec::recycle::f32_buffer(x.len());
    // 8-bit input (INT8 weights and activations) is read in place; wider types through i64. The
    // difference is exact in i32 for 8- and 16-bit values, and in i64 for i32 ones.
    fn deq<T: Copy + Sync>(
        y: &mut [f32],
        l: Layout,
        v: &[T],
        s: &[f32],
        z: &[i64],
        diff: impl Fn(T, i64) -> f32 + Sync + Send,
    ) {
        per_scale(y, l, |start, part, k| {
            let n = part.len();
            for (o, &q) in part.iter_mut().zip(&v[start..start + n]) {
                *o = diff(q, z[k]) * s[k];
            }
        });
    }
    match &x.data {
        Data::I8(v) => deq(&mut y, l, v, &s, &z, |q, z| (q as i32 - z as i32) as f32),
        Data::U8(v) => deq(&mut y, l, v, &s, &z, |q, z| (q as i32 - z as i32) as f32),
        _ => {
            let xv = x.as_i64s().expect("integer input");
            deq(&mut y, l, &xv, &s, &z, |q, z| (q - z) as f32);
        }
    }
    Ok(f32_out(x.shape.clone(), y, prec))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn q(
        x: &Tensor,
        s: &Tensor,
        z: Option<&Tensor>,
        attrs: Vec<crate::onnx::proto::AttributeProto>,
        opset: i64,
    ) -> OpResult<Tensor> {
        let mut ins = vec![x, s];
        ins.extend(z);
        run(&node("QuantizeLinear", ins.len(), attrs), &ins, opset)
    }

    #[test]
    fn magic_rounding_equals_round_ties_even() {
        let mut v = -5_000_000.0f32;
        let mut checked = 0;
        while v < 5_000_000.0 {
            for x in [v, v + 0.5, v - 0.5, v + 0.25, v + 0.75, -v] {
                let want = x.clamp(-4_194_304.0, 4_194_304.0).round_ties_even();
                assert_eq!(round_half_even(x), want, "{x}");
                checked += 1;
            }
            v += if v.abs() < 100.0 { 0.125 } else { 977.0 };
        }
        assert!(checked > 10_000);
        assert!(round_half_even(f32::NAN).is_nan());
        assert_eq!(round_half_even(f32::INFINITY), 4_194_304.0);
        assert_eq!(round_half_even(-0.4), 0.0);
    }

    #[test]
    fn rounds_half_to_even_and_saturates() {
        let x = f32s(&[8], &[0.5, 1.5, 2.5, -0.5, -1.5, 300., -300., 3.]);
        let s = f32s(&[], &[1.0]);
        let y = q(&x, &s, None, vec![], 10).unwrap();
        assert_eq!(y.data, Data::U8(vec![0, 2, 2, 0, 0, 255, 0, 3]));
        let z = Tensor::new(vec![], Data::I8(vec![-10])).unwrap();
        let y = q(&x, &s, Some(&z), vec![], 13).unwrap();
        assert_eq!(y.data, Data::I8(vec![-10, -8, -8, -10, -12, 127, -128, -7]));
        // Divides in f32 (0.25 / 0.1 etc. are exactly 2.5, 3.5, 4.5 there), then rounds half to
        // even.
        let x = f32s(&[3], &[0.25, 0.35, 0.45]);
        let y = q(&x, &f32s(&[], &[0.1]), None, vec![], 13).unwrap();
        assert_eq!(y.data, Data::U8(vec![2, 4, 4]));
    }

    #[test]
    fn per_axis_scales() {
        // [2, 3, 2] per axis 1: scales 1, 2, 4 and zero points 0, 1, 2.
        let x = f32s(
            &[2, 3, 2],
            &[1., 2., 4., 6., 8., 16., -1., -2., -4., -6., -8., -16.],
        );
        let s = f32s(&[3], &[1., 2., 4.]);
        let z = Tensor::new(vec![3], Data::I8(vec![0, 1, 2])).unwrap();
        let y = q(&x, &s, Some(&z), vec![], 13).unwrap();
        assert_eq!(
            y.data,
            Data::I8(vec![1, 2, 3, 4, 4, 6, -1, -2, -1, -2, 0, -2])
        );
        let back = run(&node("DequantizeLinear", 3, vec![]), &[&y, &s, &z], 13).unwrap();
        assert_eq!(
            back,
            f32s(
                &[2, 3, 2],
                &[1., 2., 4., 6., 8., 16., -1., -2., -4., -6., -8., -16.]
            )
        );
        // axis -1 with two scales.
        let s2 = f32s(&[2], &[1., 10.]);
        let y = q(&x, &s2, None, vec![int("axis", -1)], 13).unwrap();
        assert_eq!(y.data, Data::U8(vec![1, 0, 4, 1, 8, 2, 0, 0, 0, 0, 0, 0]));
        // Per-axis needs opset 13; blocked scales are refused.
        assert!(q(&x, &s, Some(&z), vec![], 10).is_err());
        let blocked = q(
            &x,
            &f32s(&[2, 3, 1], &[1.; 6]),
            None,
            vec![int("block_size", 2)],
            21,
        );
        assert!(matches!(blocked, Err(OpError::Unsupported(_))));
        assert!(q(&x, &f32s(&[2], &[1., 1.]), None, vec![], 13).is_err());
    }

    /// The fused pass and the two ops in turn, bit for bit (NaN as NaN).
    fn fused_equals_unfused(
        x: &Tensor,
        s: &Tensor,
        z: Option<&Tensor>,
        attrs: Vec<crate::onnx::proto::AttributeProto>,
    ) {
        let mut ins = vec![Some(x), Some(s)];
        ins.push(z);
        let (qn, dqn) = (
            node("QuantizeLinear", 3, attrs.clone()),
            node("DequantizeLinear", 3, attrs),
        );
        let fused = super::super::eval_quantize_dequantize(
            &qn,
            &dqn,
            &[Some(x), Some(s), z, Some(s), z],
            13,
        )
        .unwrap()
        .remove(0);
        let levels = super::super::eval(&qn, &ins, 13).unwrap().remove(0);
        let plain = super::super::eval(&dqn, &[Some(&levels), Some(s), z], 13)
            .unwrap()
            .remove(0);
        assert_eq!(fused.shape, plain.shape);
        assert_eq!(fused.dtype(), plain.dtype());
        let (f, p) = (fused.as_f32s(), plain.as_f32s());
        for (i, (a, b)) in f.iter().zip(&p).enumerate() {
            assert!(
                a.to_bits() == b.to_bits(),
                "element {i} of {x:?}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn quantize_dequantize_in_one_pass_equals_the_two_ops() {
        // Several parallel chunks of values around the levels, ties, saturation both ways, ±inf, NaN
        // (which QuantizeLinear's cast makes level 0) and −0.
        let mut v: Vec<f32> = noise(3 * CHUNK + 7, 9).iter().map(|x| x * 300.0).collect();
        v[..8].copy_from_slice(&[
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.05,
            0.15,
            1e30,
            -1e30,
        ]);
        let x = f32s(&[v.len()], &v);
        let s = f32s(&[], &[0.1]);
        fused_equals_unfused(&x, &s, None, vec![]);
        for z in [
            Tensor::new(vec![], Data::I8(vec![-3])).unwrap(),
            Tensor::new(vec![], Data::U8(vec![128])).unwrap(),
            Tensor::new(vec![], Data::I16(vec![7])).unwrap(),
        ] {
            fused_equals_unfused(&x, &s, Some(&z), vec![]);
        }
        // What the one pass does not take runs the two ops: per-axis scales, f16 input.
        let x2 = f32s(&[2, 3, 2], &noise(12, 4));
        let s3 = f32s(&[3], &[0.01, 0.02, 0.04]);
        let z3 = Tensor::new(vec![3], Data::I8(vec![0, 1, -1])).unwrap();
        fused_equals_unfused(&x2, &s3, Some(&z3), vec![int("axis", 1)]);
        let h = Tensor::new(vec![3], Data::F16(vec![half::f16::from_f32(0.26); 3])).unwrap();
        let hs = Tensor::new(vec![], Data::F16(vec![half::f16::from_f32(0.1)])).unwrap();
        fused_equals_unfused(&h, &hs, None, vec![]);
    }

    #[test]
    fn dequantize_types() {
        let x = Tensor::new(vec![3], Data::U8(vec![0, 128, 255])).unwrap();
        let s = f32s(&[], &[0.5]);
        let z = Tensor::new(vec![], Data::U8(vec![128])).unwrap();
        let y = run(&node("DequantizeLinear", 3, vec![]), &[&x, &s, &z], 10).unwrap();
        assert_eq!(y, f32s(&[3], &[-64., 0., 63.5]));
        let i = Tensor::new(vec![2], Data::I32(vec![-4, 6])).unwrap();
        let y = run(&node("DequantizeLinear", 2, vec![]), &[&i, &s], 13).unwrap();
        assert_eq!(y, f32s(&[2], &[-2., 3.]));
        let h = Tensor::new(vec![], Data::F16(vec![half::f16::from_f32(0.25)])).unwrap();
        let y = run(&node("DequantizeLinear", 2, vec![]), &[&x, &h], 19).unwrap();
        assert_eq!(y.dtype(), DataType::Float16);
        assert_eq!(y.as_f32s(), vec![0., 32., 63.75]);
        // A scalar scale with a one-element zero point.
        let z1 = Tensor::new(vec![1], Data::U8(vec![128])).unwrap();
        let y = run(&node("DequantizeLinear", 3, vec![]), &[&x, &s, &z1], 13).unwrap();
        assert_eq!(y, f32s(&[3], &[-64., 0., 63.5]));
        let wrong_z = Tensor::new(vec![], Data::I8(vec![0])).unwrap();
        assert!(run(
            &node("DequantizeLinear", 3, vec![]),
            &[&x, &s, &wrong_z],
            13
        )
        .is_err());
        let f = f32s(&[1], &[1.]);
        assert!(run(&node("DequantizeLinear", 2, vec![]), &[&f, &s], 13).is_err());
        // QuantizeLinear to int16 through output_dtype (opset 21).
        let y = q(
            &f32s(&[2], &[40000., -3.]),
            &s,
            None,
            vec![int("output_dtype", DataType::Int16 as i64)],
            21,
        );
        assert_eq!(y.unwrap().data, Data::I16(vec![32767, -6]));
    }
}
