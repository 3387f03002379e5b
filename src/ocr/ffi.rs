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

    unsafe extern "C++" {
        include!("ocrnet-edge/cpp/ocr/bridge.h");

        fn gather_output_dims(probs: &OcrDims, feats: &OcrDims, scale: f32) -> Result<[i64; 4]>;
        fn attention_output_dims(
            query: &OcrDims,
            key: &OcrDims,
            value: &OcrDims,
            scale: f32,
        ) -> Result<[i64; 4]>;
    }
}
