//! The cxx bridge to `cpp/ocr`. Kept apart from `mod.rs` so the generated glue is all this file holds.

#[cxx::bridge(namespace = "ocrnet")]
pub(crate) mod bridge {
    /// An NCHW shape as the C++ side sees it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct OcrDims {
        n: i64,
        c: i64,
        h: i64,
        w: i64,
    }

    /// `OcrSpatialGather`'s sizes: probs [n, k, h, w], feats [n, c, h, w].
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct GatherSizes {
        n: i64,
        k: i64,
        c: i64,
        h: i64,
        w: i64,
        scale: f32,
    }

    /// `OcrObjectAttention`'s sizes: query [n, ck, h, w], key and value [n, ck, k, 1].
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct AttentionSizes {
        n: i64,
        ck: i64,
        k: i64,
        h: i64,
        w: i64,
        scale: f32,
    }

    unsafe extern "C++" {
        include!("ocrnet-edge/cpp/ocr/bridge.h");

        /// The most object regions (K) the plugins, the kernels and the reference take.
        fn max_regions() -> i64;
        fn gather_output_dims(probs: &OcrDims, feats: &OcrDims, scale: f32) -> Result<[i64; 4]>;
        fn attention_output_dims(
            query: &OcrDims,
            key: &OcrDims,
            value: &OcrDims,
            scale: f32,
        ) -> Result<[i64; 4]>;

        /// Softmax rows `[row0, row1)` of the gather's weights. Safety: sizes validated, `probs` and
        /// `weights` hold n*k*h*w floats.
        unsafe fn gather_weights(
            s: &GatherSizes,
            probs: *const f32,
            weights: *mut f32,
            row0: i64,
            row1: i64,
        );
        /// Output rows `[row0, row1)` (row = n*c + c) of the gather. Safety: sizes validated, buffers
        /// of the sizes the op defines.
        unsafe fn gather_context(
            s: &GatherSizes,
            weights: *const f32,
            feats: *const f32,
            out: *mut f32,
            row0: i64,
            row1: i64,
        );
        /// Output pixels `[pix0, pix1)` (pixel = n*h*w + p) of the attention. Safety: sizes validated,
        /// buffers of the sizes the op defines; callers on other threads write other pixels.
        unsafe fn attention_pixels(
            s: &AttentionSizes,
            query: *const f32,
            key: *const f32,
            value: *const f32,
            out: *mut f32,
            pix0: i64,
            pix1: i64,
        );
    }
}
