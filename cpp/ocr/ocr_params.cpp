#include "ocr_params.h"

#include <cmath>
#include <limits>

namespace ocrnet {
namespace {

// Rejects a non-positive dimension and products that would overflow int64 or exceed TensorRT's int32 element
// indexing of one tensor (kernels index with int64, but a tensor that large is a corrupt shape, not a model).
std::string checkDims(const char* op, std::initializer_list<std::pair<const char*, int64_t>> dims) {
    int64_t product = 1;
    for (const auto& [name, value] : dims) {
        if (value <= 0) {
            return std::string(op) + ": dimension " + name + " must be positive, got " + std::to_string(value);
        }
        if (product > std::numeric_limits<int64_t>::max() / value) {
            return std::string(op) + ": tensor size overflows at dimension " + name;
        }
        product *= value;
    }
    return {};
}

std::string checkScale(const char* op, float scale) {
    if (!std::isfinite(scale) || scale == 0.0f) {
        return std::string(op) + ": attribute scale must be finite and non-zero";
    }
    return {};
}

std::string checkRegions(const char* op, int64_t k) {
    if (k > kMaxRegions) {
        return std::string(op) + ": K = " + std::to_string(k) + " regions exceeds the supported maximum of " +
               std::to_string(kMaxRegions);
    }
    return {};
}

}  // namespace

std::string validate(const GatherParams& p) {
    const char* op = "OcrSpatialGather";
    for (auto msg : {checkDims(op, {{"N", p.n}, {"K", p.k}, {"H", p.h}, {"W", p.w}}),
                     checkDims(op, {{"N", p.n}, {"C", p.c}, {"H", p.h}, {"W", p.w}}), checkRegions(op, p.k),
                     checkScale(op, p.scale)}) {
        if (!msg.empty()) return msg;
    }
    return {};
}

std::string validate(const AttentionParams& p) {
    const char* op = "OcrObjectAttention";
    for (auto msg : {checkDims(op, {{"N", p.n}, {"Ck", p.ck}, {"H", p.h}, {"W", p.w}}),
                     checkDims(op, {{"N", p.n}, {"Ck", p.ck}, {"K", p.k}}), checkRegions(op, p.k),
                     checkScale(op, p.scale)}) {
        if (!msg.empty()) return msg;
    }
    return {};
}

int64_t outputElements(const GatherParams& p) { return p.n * p.c * p.k; }

int64_t outputElements(const AttentionParams& p) { return p.n * p.ck * p.h * p.w; }

}  // namespace ocrnet
