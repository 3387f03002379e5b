// CPU reference of the two OCR object-context ops: the one definition of their math. The Rust executor runs
// fused graphs through it (via cxx), and the CUDA kernels and TensorRT plugins are tested against it.
//
// Numerically careful on purpose: every softmax subtracts its maximum before exponentiating, and long sums
// (over H*W pixels, over Ck channels) are accumulated in float blocks that are then added up, so the error
// does not grow with the pixel count the way one running float sum over 32768 pixels would.
//
// The entry points that take a range compute one slice of the output, so a caller can split the work
// across threads; the plain-C++ callers (test drivers, plugin harness) pass the whole range.
#pragma once

#include <cstdint>

#include "ocr_params.h"

namespace ocrnet {

// OcrSpatialGather, step 1: weights[n, k, p] = softmax over p in H*W of scale * probs[n, k, p].
// weights has N*K*H*W floats. Rows (n, k) in [row0, row1) are computed, row = n*K + k.
void gatherWeights(const GatherParams& p, const float* probs, float* weights, int64_t row0, int64_t row1);

// OcrSpatialGather, step 2: out[n, c, k] = sum_p weights[n, k, p] * feats[n, c, p] for the (n, c) rows in
// [row0, row1), row = n*C + c. out is [N, C, K, 1].
void gatherContext(const GatherParams& p, const float* weights, const float* feats, float* out, int64_t row0,
                   int64_t row1);

// OcrObjectAttention for the pixels (n, p) in [pix0, pix1), pixel index = n*H*W + p:
// out[n, :, p] = sum_k softmax_k(scale * <query[n, :, p], key[n, :, k]>) * value[n, :, k].
// query and out are [N, Ck, H, W]; key and value are [N, Ck, K, 1].
void attentionPixels(const AttentionParams& p, const float* query, const float* key, const float* value,
                     float* out, int64_t pix0, int64_t pix1);

// Whole-tensor conveniences for single-threaded callers (the CUDA test driver, the plugin harness).
// gatherReference allocates its N*K*H*W weights internally.
void gatherReference(const GatherParams& p, const float* probs, const float* feats, float* out);
void attentionReference(const AttentionParams& p, const float* query, const float* key, const float* value,
                        float* out);

}  // namespace ocrnet
