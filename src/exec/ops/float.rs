//! Float tensors in and out of the f32 kernels: f32 is borrowed as is, f16 and bf16 are widened
//! to f32 and the result rounded back once, and anything else is refused with the op's name.

use super::par::{self, CHUNK};
use super::{OpError, OpResult};
use crate::tensor::{Data, Tensor};
use half::slice::HalfFloatSliceExt;
use half::vec::HalfBitsVecExt;
use half::{bf16, f16};
use std::borrow::Cow;

/// The element type a float kernel computes for, and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prec {
    F32,
    F16,
    BF16,
}

/// `t`'s values as f32, for an op that takes f32, f16 or bf16.
pub(crate) fn f32_in<'a>(t: &'a Tensor, op: &str) -> OpResult<(Cow<'a, [f32]>, Prec)> {
    Ok(match &t.data {
        Data::F32(v) => (Cow::Borrowed(v.as_slice()), Prec::F32),
        Data::F16(v) => (Cow::Owned(widen(v)), Prec::F16),
        Data::BF16(v) => (Cow::Owned(widen(v)), Prec::BF16),
        other => return Err(not_float(op, other)),
    })
}

/// Another input of the same op, which must have the first input's element type.
pub(crate) fn f32_same<'a>(t: &'a Tensor, prec: Prec, op: &str) -> OpResult<Cow<'a, [f32]>> {
    let (v, p) = f32_in(t, op)?;
    if p != prec {
        return Err(OpError::invalid(format!(
            "{op}: inputs must share one element type, got {prec:?} and {p:?}"
        )));
    }
    Ok(v)
}

/// Hands a widened input back to the run's buffer pool once the kernel is done with it (a borrowed
/// f32 input is left alone): the next op's widening or output takes it instead of fresh pages,
/// which cost an FP16 graph's Convs more than their conversions did.
pub(crate) fn give_back(v: Cow<'_, [f32]>) {
    if let Cow::Owned(v) = v {
        crate::exec::recycle::give(v);
    }
}

/// f32 results as a tensor of `prec`, rounding to nearest even once.
pub(crate) fn f32_out(shape: Vec<usize>, v: Vec<f32>, prec: Prec) -> Tensor {
    let data = match prec {
        Prec::F32 => {
            return Tensor {
                shape,
                data: Data::F32(v),
            }
        }
        Prec::F16 => Data::F16(narrow(&v)),
        Prec::BF16 => Data::BF16(narrow(&v)),
    };
    crate::exec::recycle::give(v);
    Tensor { shape, data }
}

/// The reduced-precision float types, stored as such and computed in f32: conversions of whole
/// slices, which `half` vectorises (F16C's 8-wide instructions where the CPU has them, checked at
/// run time) where a per-element `to_f32` does one value per call.
pub(crate) trait Half: Copy + PartialOrd + Send + Sync + 'static {
    /// The bits of +infinity: a magnitude above them is a NaN.
    const INF_BITS: u16;
    fn bits_mut(v: &mut [Self]) -> &mut [u16];
    /// `n` zeros: fresh zero pages, not a pass of stores before the real one.
    fn zeros(n: usize) -> Vec<Self>;
    fn to_f32s(src: &[Self], dst: &mut [f32]);
    /// Rounds to nearest even, as `from_f32` does.
    fn from_f32s(dst: &mut [Self], src: &[f32]);
}

impl Half for f16 {
    const INF_BITS: u16 = 0x7C00;
    fn bits_mut(v: &mut [Self]) -> &mut [u16] {
        v.reinterpret_cast_mut()
    }
    fn zeros(n: usize) -> Vec<Self> {
        vec![0u16; n].reinterpret_into()
    }
    fn to_f32s(src: &[Self], dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if f16c::available() {
            // SAFETY: F16C and AVX were just checked.
            return unsafe { f16c::widen(src.reinterpret_cast(), dst) };
        }
        src.convert_to_f32_slice(dst)
    }
    fn from_f32s(dst: &mut [Self], src: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if f16c::available() {
            // SAFETY: F16C and AVX were just checked.
            return unsafe { f16c::narrow(src, dst.reinterpret_cast_mut()) };
        }
        dst.convert_from_f32_slice(src)
    }
}

impl Half for bf16 {
    const INF_BITS: u16 = 0x7F80;
    fn bits_mut(v: &mut [Self]) -> &mut [u16] {
        v.reinterpret_cast_mut()
    }
    fn zeros(n: usize) -> Vec<Self> {
        vec![0u16; n].reinterpret_into()
    }
    fn to_f32s(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
    fn from_f32s(dst: &mut [Self], src: &[f32]) {
        dst.convert_from_f32_slice(src)
    }
}

/// f16 <-> f32 a slice at a time with F16C in one loop. `half`'s slice conversion uses the same
/// instructions but calls a non-inlined function per 8 values, about 1 ns a value: on the FP16
/// graph of the sample model that was a third of the forward.
#[cfg(target_arch = "x86_64")]
mod f16c {
    use half::f16;
    use half::slice::HalfFloatSliceExt;
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("f16c") && is_x86_feature_detected!("avx")
    }

    /// # Safety
    /// F16C and AVX must be available.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn widen(src: &[u16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let whole = n - n % 8;
        for i in (0..whole).step_by(8) {
            let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
        let tail: &[f16] = half::slice::HalfBitsSliceExt::reinterpret_cast(&src[whole..n]);
        tail.convert_to_f32_slice(&mut dst[whole..n]);
    }

    /// Rounds to nearest even, as `f16::from_f32` does.
    ///
    /// # Safety
    /// F16C and AVX must be available.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn narrow(src: &[f32], dst: &mut [u16]) {
        let n = src.len().min(dst.len());
        let whole = n - n % 8;
        for i in (0..whole).step_by(8) {
            let v = _mm256_loadu_ps(src.as_ptr().add(i));
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), h);
        }
        let tail: &mut [f16] =
            half::slice::HalfBitsSliceExt::reinterpret_cast_mut(&mut dst[whole..n]);
        tail.convert_from_f32_slice(&src[whole..n]);
    }
}

/// f16 or bf16 values as f32, into a recycled buffer, in parallel chunks: a per-element
/// `to_f32` was most of what an FP16 graph's Conv and Resize cost on top of the f32 kernels.
pub(crate) fn widen<H: Half>(v: &[H]) -> Vec<f32> {
    let mut out = crate::exec::recycle::f32_buffer(v.len());
    par::chunks_mut(&mut out, CHUNK, |start, part| {
        H::to_f32s(&v[start..start + part.len()], part)
    });
    out
}

/// f32 values rounded to f16 or bf16, in parallel chunks.
pub(crate) fn narrow<H: Half>(v: &[f32]) -> Vec<H> {
    let mut out = H::zeros(v.len());
    par::chunks_mut(&mut out, CHUNK, |start, part| {
        H::from_f32s(part, &v[start..start + part.len()])
    });
    out
}

/// The refusal for a non-float input: f64 is a type the kernels could compute but do not (an
/// f32 answer would be a wrong one), the rest are not floats at all.
pub(crate) fn not_float(op: &str, d: &Data) -> OpError {
    match d {
        Data::F64(_) => OpError::unsupported(format!("{op} on double tensors")),
        other => OpError::invalid(format!("{op} takes float tensors, got {:?}", other.dtype())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_round_trips_and_double_is_unsupported() {
        let t = Tensor::new(vec![2], Data::F16(vec![f16::from_f32(1.5), f16::ONE])).unwrap();
        let (v, p) = f32_in(&t, "Op").unwrap();
        assert_eq!((v.as_ref(), p), (&[1.5f32, 1.0][..], Prec::F16));
        assert_eq!(f32_out(vec![2], v.into_owned(), p), t);
        let d = Tensor::new(vec![1], Data::F64(vec![1.0])).unwrap();
        assert!(matches!(f32_in(&d, "Op"), Err(OpError::Unsupported(_))));
        let i = Tensor::vec_i64(vec![1]);
        assert!(matches!(f32_in(&i, "Op"), Err(OpError::Invalid(_))));
    }

    #[test]
    fn chunked_conversions_round_as_the_scalar_ones() {
        // Past several parallel chunks, every f16 bit pattern (NaNs, infinities, subnormals) and
        // f32 values at and between f16's ties, overflowing and underflowing.
        let halves: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        let wide = widen(&halves);
        for (h, w) in halves.iter().zip(&wide) {
            assert_eq!(h.to_f32().to_bits(), w.to_bits(), "{h:?}");
        }
        let floats: Vec<f32> = (0..3 * CHUNK as u32 + 5)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
            .chain([
                65504.0,
                65520.0,
                1e-8,
                -0.0,
                1.0 + 1.0 / 2048.0,
                1.0 + 3.0 / 2048.0,
            ])
            .collect();
        let (h, b): (Vec<f16>, Vec<bf16>) = (narrow(&floats), narrow(&floats));
        for (i, &x) in floats.iter().enumerate() {
            assert_eq!(h[i].to_bits(), f16::from_f32(x).to_bits(), "{x:e}");
            assert_eq!(b[i].to_bits(), bf16::from_f32(x).to_bits(), "{x:e}");
        }
    }
}
