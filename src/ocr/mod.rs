//! The two OCR object-context ops (`OcrSpatialGather`, `OcrObjectAttention`) as the rest of the crate sees
//! them. Their parameter rules live once, in C++ (`cpp/ocr/ocr_params.*`), shared with the CUDA kernels and
//! the TensorRT plugins; this module reaches them through cxx so that both sides can never disagree.

mod ffi;
mod node;

pub use ffi::bridge::OcrDims;
use ffi::bridge::{AttentionSizes, GatherSizes};
pub use node::{Field, OcrKind, OcrNode, FIELDS};
use rayon::prelude::*;

/// The ONNX domain of the fused nodes. TensorRT's parser ignores it (it looks plugins up by op type), but a
/// domain of our own keeps `onnx.checker` and onnxruntime from mistaking the nodes for standard ops.
pub const DOMAIN: &str = "ocrnet";
/// The op types, version and namespace the TensorRT plugin creators register under.
pub const GATHER_OP: &str = "OcrSpatialGather";
pub const ATTENTION_OP: &str = "OcrObjectAttention";
pub const PLUGIN_VERSION: &str = "1";
pub const PLUGIN_NAMESPACE: &str = "ocrnet";

/// Work items (output rows or pixel tiles) per parallel task: enough to amortise the FFI call and keep
/// the C++ loops' blocking effective.
const GATHER_ROWS_PER_TASK: usize = 16;
const ATTENTION_PIXELS_PER_TASK: usize = 1024;

/// An OCR op rejected its input shapes or attributes; the message names the op and the offending field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OcrShapeError(String);

impl OcrDims {
    /// Builds dims from an NCHW slice; `None` unless it has exactly four entries.
    pub fn from_nchw(dims: &[i64]) -> Option<Self> {
        match *dims {
            [n, c, h, w] => Some(OcrDims { n, c, h, w }),
            _ => None,
        }
    }
}

/// The most object regions (K, the segmentation classes) the plugins, their CUDA kernels and the C++
/// reference take: `kMaxRegions` in `cpp/ocr/ocr_params.h`, read from there.
pub fn max_regions() -> i64 {
    ffi::bridge::max_regions()
}

/// Output shape `[N, C, K, 1]` of `OcrSpatialGather(probs [N,K,H,W], feats [N,C,H,W])`.
pub fn gather_output_dims(
    probs: OcrDims,
    feats: OcrDims,
    scale: f32,
) -> Result<[i64; 4], OcrShapeError> {
    ffi::bridge::gather_output_dims(&probs, &feats, scale)
        .map_err(|e| OcrShapeError(e.what().to_string()))
}

/// Output shape `[N, Ck, H, W]` of `OcrObjectAttention(query, key [N,Ck,K,1], value [N,Ck,K,1])`.
pub fn attention_output_dims(
    query: OcrDims,
    key: OcrDims,
    value: OcrDims,
    scale: f32,
) -> Result<[i64; 4], OcrShapeError> {
    ffi::bridge::attention_output_dims(&query, &key, &value, scale)
        .map_err(|e| OcrShapeError(e.what().to_string()))
}

/// `OcrSpatialGather` on float32 NCHW data, computed by the C++ reference with output rows spread over the
/// current rayon pool. Returns the output `[N, C, K, 1]` and its dims.
pub fn spatial_gather(
    probs: &[f32],
    probs_dims: OcrDims,
    feats: &[f32],
    feats_dims: OcrDims,
    scale: f32,
) -> Result<(Vec<f32>, [i64; 4]), OcrShapeError> {
    let dims = gather_output_dims(probs_dims, feats_dims, scale)?;
    check_len("probs", probs.len(), &probs_dims)?;
    check_len("feats", feats.len(), &feats_dims)?;
    let s = GatherSizes {
        n: probs_dims.n,
        k: probs_dims.c,
        c: feats_dims.c,
        h: probs_dims.h,
        w: probs_dims.w,
        scale,
    };
    let mut weights = vec![0f32; probs.len()];
    let weight_rows = (s.n * s.k) as usize;
    let w_ptr = SendPtr(weights.as_mut_ptr());
    (0..weight_rows).into_par_iter().for_each(|r| {
        // SAFETY: sizes validated above; each task writes its own row of `weights`.
        unsafe {
            ffi::bridge::gather_weights(&s, probs.as_ptr(), w_ptr.get(), r as i64, r as i64 + 1)
        }
    });
    let rows = (s.n * s.c) as usize;
    let mut out = vec![0f32; rows * s.k as usize];
    let o_ptr = SendPtr(out.as_mut_ptr());
    let tasks = rows.div_ceil(GATHER_ROWS_PER_TASK);
    (0..tasks).into_par_iter().for_each(|t| {
        let r0 = t * GATHER_ROWS_PER_TASK;
        let r1 = (r0 + GATHER_ROWS_PER_TASK).min(rows);
        // SAFETY: sizes validated above; each task writes the output rows [r0, r1) only.
        unsafe {
            ffi::bridge::gather_context(
                &s,
                weights.as_ptr(),
                feats.as_ptr(),
                o_ptr.get(),
                r0 as i64,
                r1 as i64,
            )
        }
    });
    Ok((out, dims))
}

/// `OcrObjectAttention` on float32 NCHW data, computed by the C++ reference with pixel tiles spread over the
/// current rayon pool. Returns the output `[N, Ck, H, W]` and its dims.
pub fn object_attention(
    query: &[f32],
    query_dims: OcrDims,
    key: &[f32],
    key_dims: OcrDims,
    value: &[f32],
    value_dims: OcrDims,
    scale: f32,
) -> Result<(Vec<f32>, [i64; 4]), OcrShapeError> {
    let dims = attention_output_dims(query_dims, key_dims, value_dims, scale)?;
    check_len("query", query.len(), &query_dims)?;
    check_len("key", key.len(), &key_dims)?;
    check_len("value", value.len(), &value_dims)?;
    let s = AttentionSizes {
        n: query_dims.n,
        ck: query_dims.c,
        k: key_dims.h,
        h: query_dims.h,
        w: query_dims.w,
        scale,
    };
    // attention_pixels writes every output element before reading it, so a recycled buffer's old
    // contents do no harm; inside a run this saves the fresh pages of a 34 MB output (W48 at 512x1024).
    let mut out = crate::exec::recycle::f32_buffer(query.len());
    let pixels = (s.n * s.h * s.w) as usize;
    let o_ptr = SendPtr(out.as_mut_ptr());
    let tasks = pixels.div_ceil(ATTENTION_PIXELS_PER_TASK);
    (0..tasks).into_par_iter().for_each(|t| {
        let p0 = t * ATTENTION_PIXELS_PER_TASK;
        let p1 = (p0 + ATTENTION_PIXELS_PER_TASK).min(pixels);
        // SAFETY: sizes validated above; each task writes the pixels [p0, p1) of every channel only.
        unsafe {
            ffi::bridge::attention_pixels(
                &s,
                query.as_ptr(),
                key.as_ptr(),
                value.as_ptr(),
                o_ptr.get(),
                p0 as i64,
                p1 as i64,
            )
        }
    });
    Ok((out, dims))
}

fn check_len(what: &str, len: usize, d: &OcrDims) -> Result<(), OcrShapeError> {
    let want = [d.n, d.c, d.h, d.w]
        .iter()
        .try_fold(1i64, |a, &x| a.checked_mul(x));
    if want != Some(len as i64) {
        return Err(OcrShapeError(format!(
            "{what} holds {len} values, its dims [{}, {}, {}, {}] need {}",
            d.n,
            d.c,
            d.h,
            d.w,
            want.map_or("more than i64 can count".to_string(), |w| w.to_string())
        )));
    }
    Ok(())
}

/// A raw output pointer shared by tasks that write disjoint parts of one buffer, which outlives them.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: see the users: every task writes elements no other task writes, and all join before the
// buffer is used again.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: i64, c: i64, h: i64, w: i64) -> OcrDims {
        OcrDims { n, c, h, w }
    }

    #[test]
    fn gather_shape_follows_hrnet_ocr() {
        // The W48 head at 512x1024: 19 regions, 512 feature channels, 128x256 pixels.
        let out = gather_output_dims(d(1, 19, 128, 256), d(1, 512, 128, 256), 1.0).unwrap();
        assert_eq!(out, [1, 512, 19, 1]);
    }

    #[test]
    fn gather_rejects_mismatched_pixels_through_cxx() {
        let err = gather_output_dims(d(1, 19, 128, 256), d(1, 512, 64, 256), 1.0).unwrap_err();
        assert!(
            err.to_string().contains("must agree in N, H and W"),
            "{err}"
        );
    }

    #[test]
    fn attention_checks_regions_and_scale() {
        let q = d(2, 256, 16, 32);
        assert_eq!(
            attention_output_dims(q, d(2, 256, 19, 1), d(2, 256, 19, 1), 0.0625).unwrap(),
            [2, 256, 16, 32]
        );
        let too_many = attention_output_dims(q, d(2, 256, 65, 1), d(2, 256, 65, 1), 0.0625);
        assert!(too_many.unwrap_err().to_string().contains("exceeds"));
        let bad_scale = attention_output_dims(q, d(2, 256, 19, 1), d(2, 256, 19, 1), f32::NAN);
        assert!(bad_scale.unwrap_err().to_string().contains("scale"));
        let zero = attention_output_dims(d(2, 0, 16, 32), d(2, 0, 19, 1), d(2, 0, 19, 1), 1.0);
        assert!(zero
            .unwrap_err()
            .to_string()
            .contains("Ck must be positive"));
    }

    /// A deterministic pseudo-random fill in [-amp, amp).
    fn noise(n: usize, seed: u64, amp: f32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
            })
            .collect()
    }

    fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
        let num: f64 = got
            .iter()
            .zip(want)
            .map(|(&g, &w)| (g as f64 - w).powi(2))
            .sum();
        let den: f64 = want.iter().map(|w| w * w).sum();
        (num / den).sqrt()
    }

    /// The gather written the naive way, in f64, straight from the op's definition.
    fn naive_gather(
        probs: &[f32],
        feats: &[f32],
        n: usize,
        k: usize,
        c: usize,
        hw: usize,
        scale: f64,
    ) -> Vec<f64> {
        let mut out = vec![0f64; n * c * k];
        for b in 0..n {
            for r in 0..k {
                let row = &probs[(b * k + r) * hw..][..hw];
                let m = row
                    .iter()
                    .map(|&x| scale * x as f64)
                    .fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = row.iter().map(|&x| (scale * x as f64 - m).exp()).collect();
                let s: f64 = e.iter().sum();
                for ch in 0..c {
                    let f = &feats[(b * c + ch) * hw..][..hw];
                    out[(b * c + ch) * k + r] =
                        e.iter().zip(f).map(|(w, &x)| w / s * x as f64).sum();
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn naive_attention(
        q: &[f32],
        key: &[f32],
        v: &[f32],
        n: usize,
        ck: usize,
        k: usize,
        hw: usize,
        scale: f64,
    ) -> Vec<f64> {
        let mut out = vec![0f64; n * ck * hw];
        for b in 0..n {
            for p in 0..hw {
                let logits: Vec<f64> = (0..k)
                    .map(|r| {
                        scale
                            * (0..ck)
                                .map(|c| {
                                    q[(b * ck + c) * hw + p] as f64
                                        * key[(b * ck + c) * k + r] as f64
                                })
                                .sum::<f64>()
                    })
                    .collect();
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                let s: f64 = e.iter().sum();
                for c in 0..ck {
                    out[(b * ck + c) * hw + p] = (0..k)
                        .map(|r| e[r] / s * v[(b * ck + c) * k + r] as f64)
                        .sum();
                }
            }
        }
        out
    }

    #[test]
    fn cpp_gather_matches_the_definition() {
        // Odd sizes, a batch of 2, more pixels than one 512-pixel block, large logits (softmax must
        // subtract its maximum), a negative scale.
        for &(n, k, c, h, w, scale, amp) in &[
            (2usize, 19usize, 13usize, 23usize, 37usize, 1.0f32, 30.0f32),
            (1, 3, 5, 1, 1, 1.0, 1.0),
            (1, 7, 4, 9, 5, -0.5, 80.0),
        ] {
            let hw = h * w;
            let probs = noise(n * k * hw, 1, amp);
            let feats = noise(n * c * hw, 2, 1.0);
            let (out, dims) = spatial_gather(
                &probs,
                d(n as i64, k as i64, h as i64, w as i64),
                &feats,
                d(n as i64, c as i64, h as i64, w as i64),
                scale,
            )
            .unwrap();
            assert_eq!(dims, [n as i64, c as i64, k as i64, 1]);
            let want = naive_gather(&probs, &feats, n, k, c, hw, scale as f64);
            let err = rel_l2(&out, &want);
            assert!(err < 1e-6, "gather {n}x{k}x{c}x{h}x{w}: rel L2 {err}");
        }
    }

    #[test]
    fn cpp_attention_matches_the_definition() {
        // Pixel counts that are not multiples of the 64-pixel tile, tiles that would straddle images of
        // the batch, K = 19 and K = 64 (the maximum).
        for &(n, ck, k, h, w, scale) in &[
            (2usize, 16usize, 19usize, 7usize, 11usize, 0.25f32),
            (3, 5, 64, 5, 13, 0.7),
            (1, 1, 1, 1, 1, 1.0),
        ] {
            let hw = h * w;
            let q = noise(n * ck * hw, 3, 4.0);
            let key = noise(n * ck * k, 4, 4.0);
            let v = noise(n * ck * k, 5, 1.0);
            let kd = d(n as i64, ck as i64, k as i64, 1);
            let (out, dims) = object_attention(
                &q,
                d(n as i64, ck as i64, h as i64, w as i64),
                &key,
                kd,
                &v,
                kd,
                scale,
            )
            .unwrap();
            assert_eq!(dims, [n as i64, ck as i64, h as i64, w as i64]);
            let want = naive_attention(&q, &key, &v, n, ck, k, hw, scale as f64);
            let err = rel_l2(&out, &want);
            assert!(err < 1e-6, "attention {n}x{ck}x{k}x{h}x{w}: rel L2 {err}");
        }
    }

    #[test]
    fn attention_overwrites_a_recycled_output_buffer() {
        // Large enough for the executor's buffer pool, which hands back old contents: NaN here.
        let (ck, k, h, w) = (16usize, 19usize, 64usize, 80usize);
        let q = noise(ck * h * w, 6, 4.0);
        let key = noise(ck * k, 7, 4.0);
        let v = noise(ck * k, 8, 1.0);
        let kd = d(1, ck as i64, k as i64, 1);
        let qd = d(1, ck as i64, h as i64, w as i64);
        let fresh = object_attention(&q, qd, &key, kd, &v, kd, 0.25).unwrap().0;
        let _scope = crate::exec::recycle::Scope::enter();
        let stale = vec![f32::NAN; q.len()];
        let at = stale.as_ptr();
        crate::exec::recycle::give(stale);
        let reused = object_attention(&q, qd, &key, kd, &v, kd, 0.25).unwrap().0;
        assert_eq!(reused.as_ptr(), at, "the pooled buffer was not reused");
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(bits(&reused) == bits(&fresh));
    }

    #[test]
    fn compute_refuses_buffers_that_do_not_match_their_dims() {
        let err =
            spatial_gather(&[0.0; 5], d(1, 1, 2, 3), &[0.0; 6], d(1, 1, 2, 3), 1.0).unwrap_err();
        assert!(err.to_string().contains("probs holds 5 values"), "{err}");
        let kd = d(1, 2, 3, 1);
        let err = object_attention(&[0.0; 8], d(1, 2, 2, 2), &[0.0; 6], kd, &[0.0; 5], kd, 1.0)
            .unwrap_err();
        assert!(err.to_string().contains("value holds 5 values"), "{err}");
    }
}
