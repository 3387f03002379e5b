// Host launchers of OcrSpatialGather's CUDA kernels (no device code here, so g++-built plugin code can include
// it). The math is ocr_reference.h's gatherWeights + gatherContext; the tests hold these to it.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "ocr_params.h"

namespace ocrnet {

// Bytes of device scratch memory launchGather needs for these sizes (per-chunk partial sums). Callers pass
// params that validate() accepted. Non-decreasing in every size, so the size for a profile's maximum shape
// covers every shape the profile admits.
size_t gatherWorkspaceSize(const GatherParams& p);

// out[n, c, k] = sum_p softmax_p(scale * probs[n, k, p]) * feats[n, c, p]. T is float or __half (accumulation is
// always float). Two launches on `stream`: a split over pixel chunks that writes partial sums with each chunk's
// own softmax maximum, then a combine that rescales the chunks to the global maximum (a single launch would
// need a grid-wide barrier). Returns the first CUDA error; nothing is launched when it is cudaErrorInvalidValue.
template <typename T>
cudaError_t launchGather(const GatherParams& p, const T* probs, const T* feats, T* out, void* workspace,
                         size_t workspaceBytes, cudaStream_t stream);

}  // namespace ocrnet
