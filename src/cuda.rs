//! The OCR ops' CUDA kernels (feature `cuda`), compiled by build.rs with nvcc from `cpp/ocr/*.cu` and reached
//! through the plain-C entry points of `cpp/ocr/ocr_cuda_ffi.h`. Only the raw bindings and an error type live
//! here; the TensorRT backend that drives them (device buffers, streams) builds on top.

use std::ffi::{c_char, c_int, c_void, CStr};

/// `OcrSpatialGather`'s sizes, laid out as `OcrnetGatherSizes`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatherSizes {
    pub n: i64,
    pub k: i64,
    pub c: i64,
    pub h: i64,
    pub w: i64,
    pub scale: f32,
}

/// `OcrObjectAttention`'s sizes, laid out as `OcrnetAttentionSizes`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSizes {
    pub n: i64,
    pub ck: i64,
    pub k: i64,
    pub h: i64,
    pub w: i64,
    pub scale: f32,
}

extern "C" {
    /// Device scratch bytes the gather needs; 0 for invalid sizes.
    pub fn ocrnet_cuda_gather_workspace_size(s: *const GatherSizes) -> usize;
    /// Safety: device pointers sized for `s`, a workspace of at least the size above, a valid stream or null.
    pub fn ocrnet_cuda_gather_f32(
        s: *const GatherSizes,
        probs: *const f32,
        feats: *const f32,
        out: *mut f32,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: *mut c_void,
    ) -> c_int;
    /// As `ocrnet_cuda_gather_f32` with IEEE half bit patterns.
    pub fn ocrnet_cuda_gather_f16(
        s: *const GatherSizes,
        probs: *const u16,
        feats: *const u16,
        out: *mut u16,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: *mut c_void,
    ) -> c_int;
    /// Safety: device pointers sized for `s`, a valid stream or null.
    pub fn ocrnet_cuda_attention_f32(
        s: *const AttentionSizes,
        query: *const f32,
        key: *const f32,
        value: *const f32,
        out: *mut f32,
        stream: *mut c_void,
    ) -> c_int;
    /// As `ocrnet_cuda_attention_f32` with IEEE half bit patterns.
    pub fn ocrnet_cuda_attention_f16(
        s: *const AttentionSizes,
        query: *const u16,
        key: *const u16,
        value: *const u16,
        out: *mut u16,
        stream: *mut c_void,
    ) -> c_int;
    fn ocrnet_cuda_error_string(code: c_int) -> *const c_char;
}

/// A CUDA error code returned by a launcher, with CUDA's own description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CUDA error {code}: {message}")]
pub struct CudaError {
    pub code: i32,
    pub message: String,
}

/// Turns a launcher's return code into a `Result`.
pub fn check(code: c_int) -> Result<(), CudaError> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: cudaGetErrorString returns a static NUL-terminated string for any code.
    let message = unsafe { CStr::from_ptr(ocrnet_cuda_error_string(code)) }
        .to_string_lossy()
        .into_owned();
    Err(CudaError { code, message })
}

/// The gather's workspace size in bytes, or `None` when the sizes are invalid.
pub fn gather_workspace_size(s: &GatherSizes) -> Option<usize> {
    // SAFETY: reads the struct only.
    let bytes = unsafe { ocrnet_cuda_gather_workspace_size(s) };
    (bytes > 0).then_some(bytes)
}
