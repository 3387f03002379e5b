// Host launcher of OcrObjectAttention's CUDA kernel (no device code here, so g++-built plugin code can include
// it). The math is ocr_reference.h's attentionPixels; the tests hold this to it.
#pragma once

#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "ocr_params.h"

namespace ocrnet {

// out[n, :, p] = sum_k softmax_k(scale * <query[n, :, p], key[n, :, k]>) * value[n, :, k]. T is float or __half
// (accumulation is always float). One launch on `stream`, one pass over the query: each thread keeps its
// pixels' K logits in registers; key and value are staged in shared memory. Needs no workspace.
// Returns the first CUDA error; nothing is launched when it is cudaErrorInvalidValue.
template <typename T>
cudaError_t launchAttention(const AttentionParams& p, const T* query, const T* key, const T* value, T* out,
                            cudaStream_t stream);

}  // namespace ocrnet
