// The cxx face of cpp/ocr: thin wrappers that turn validation messages into exceptions, which cxx delivers
// to Rust as Err. Only this file and bridge.cpp see cxx-generated code; kernels never do.
#pragma once

#include <array>
#include <cstdint>

#include "rust/cxx.h"

namespace ocrnet {

struct OcrDims;

// Output dims [N, C, K, 1] of OcrSpatialGather; throws std::invalid_argument on unusable inputs.
std::array<int64_t, 4> gather_output_dims(const OcrDims& probs, const OcrDims& feats, float scale);

// Output dims [N, Ck, H, W] of OcrObjectAttention; throws std::invalid_argument on unusable inputs.
std::array<int64_t, 4> attention_output_dims(const OcrDims& query, const OcrDims& key, const OcrDims& value,
                                             float scale);

}  // namespace ocrnet
