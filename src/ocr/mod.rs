//! The two OCR object-context ops (`OcrSpatialGather`, `OcrObjectAttention`) as the rest of the crate sees
//! them. Their parameter rules live once, in C++ (`cpp/ocr/ocr_params.*`), shared with the CUDA kernels and
//! the TensorRT plugins; this module reaches them through cxx so that both sides can never disagree.

mod ffi;

pub use ffi::bridge::OcrDims;

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
}
