// The cxx face of cpp/ocr: thin wrappers that turn validation messages into exceptions, which cxx delivers
// to Rust as Err, and pass compute calls straight to the reference. Only this file and bridge.cpp see
// cxx-generated code; kernels never do.
#pragma once

#include <array>
#include <cstdint>

#include "rust/cxx.h"

namespace ocrnet {

struct OcrDims;
struct GatherSizes;
struct AttentionSizes;

// kMaxRegions: the most object regions (K) the plugins, the kernels and the reference take.
int64_t max_regions();

// Output dims [N, C, K, 1] of OcrSpatialGather; throws std::invalid_argument on unusable inputs.
std::array<int64_t, 4> gather_output_dims(const OcrDims& probs, const OcrDims& feats, float scale);

// Output dims [N, Ck, H, W] of OcrObjectAttention; throws std::invalid_argument on unusable inputs.
std::array<int64_t, 4> attention_output_dims(const OcrDims& query, const OcrDims& key, const OcrDims& value,
                                             float scale);

// Slices of the CPU reference (ocr_reference.h); the Rust side has validated sizes and buffer lengths.
void gather_weights(const GatherSizes& s, const float* probs, float* weights, int64_t row0, int64_t row1);
void gather_context(const GatherSizes& s, const float* weights, const float* feats, float* out, int64_t row0,
                    int64_t row1);
void attention_pixels(const AttentionSizes& s, const float* query, const float* key, const float* value,
                      float* out, int64_t pix0, int64_t pix1);

}  // namespace ocrnet
