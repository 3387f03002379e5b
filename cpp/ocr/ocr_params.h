// Shapes and attributes of the two OCR object-context ops, shared by the CPU reference, the CUDA kernels and
// the TensorRT plugins. Plain C++17 with no dependencies so nvcc, the plugin library and the cxx bridge can
// all include it.
#pragma once

#include <cstdint>
#include <string>

namespace ocrnet {

// Kernels keep one pixel's K region logits in registers; more regions than this is not an HRNet-OCR model.
constexpr int64_t kMaxRegions = 64;

// OcrSpatialGather: probs [N, K, H, W] + feats [N, C, H, W] -> context [N, C, K, 1].
// context[n, c, k] = sum_p softmax_p(scale * probs[n, k, p]) * feats[n, c, p], p over H*W.
struct GatherParams {
    int64_t n = 0;
    int64_t k = 0;
    int64_t c = 0;
    int64_t h = 0;
    int64_t w = 0;
    float scale = 1.0f;
};

// OcrObjectAttention: query [N, Ck, H, W] + key [N, Ck, K, 1] + value [N, Ck, K, 1] -> context [N, Ck, H, W].
// context[n, :, p] = sum_k softmax_k(scale * <query[n, :, p], key[n, :, k]>) * value[n, :, k].
struct AttentionParams {
    int64_t n = 0;
    int64_t ck = 0;
    int64_t k = 0;
    int64_t h = 0;
    int64_t w = 0;
    float scale = 1.0f;
};

// Each returns an empty string when the parameters are usable, else a message naming the offending field.
// Validation never throws, so TensorRT's noexcept entry points can call it directly.
std::string validate(const GatherParams& p);
std::string validate(const AttentionParams& p);

// Element counts of the output tensors (after a successful validate).
int64_t outputElements(const GatherParams& p);
int64_t outputElements(const AttentionParams& p);

}  // namespace ocrnet
