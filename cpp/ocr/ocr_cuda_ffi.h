// extern "C" entry points of the OCR CUDA kernels for the Rust crate (feature `cuda`). Plain C types only, so
// neither side needs the other's headers; cxx-generated code never goes through nvcc.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Sizes as in ocr_params.h. `k` is the region count (<= 64).
typedef struct OcrnetGatherSizes {
    int64_t n, k, c, h, w;
    float scale;
} OcrnetGatherSizes;

typedef struct OcrnetAttentionSizes {
    int64_t n, ck, k, h, w;
    float scale;
} OcrnetAttentionSizes;

// Device scratch bytes ocrnet_cuda_gather_* needs; 0 when the sizes are invalid.
size_t ocrnet_cuda_gather_workspace_size(const OcrnetGatherSizes* s);

// The launchers take device pointers and a cudaStream_t as void*, and return a cudaError_t as int
// (0 = success; 1 = cudaErrorInvalidValue for invalid sizes or null pointers).
int ocrnet_cuda_gather_f32(const OcrnetGatherSizes* s, const float* probs, const float* feats, float* out,
                           void* workspace, size_t workspace_bytes, void* stream);
int ocrnet_cuda_gather_f16(const OcrnetGatherSizes* s, const uint16_t* probs, const uint16_t* feats, uint16_t* out,
                           void* workspace, size_t workspace_bytes, void* stream);
int ocrnet_cuda_attention_f32(const OcrnetAttentionSizes* s, const float* query, const float* key, const float* value,
                              float* out, void* stream);
int ocrnet_cuda_attention_f16(const OcrnetAttentionSizes* s, const uint16_t* query, const uint16_t* key,
                              const uint16_t* value, uint16_t* out, void* stream);
// cudaGetErrorString of a code the launchers returned.
const char* ocrnet_cuda_error_string(int code);

#ifdef __cplusplus
}
#endif
