#include "ocrnet-edge/cpp/ocr/bridge.h"

#include <stdexcept>
#include <string>

#include "ocrnet-edge/cpp/ocr/ocr_params.h"
#include "ocrnet-edge/cpp/ocr/ocr_reference.h"
#include "ocrnet-edge/src/ocr/ffi.rs.h"

namespace ocrnet {
namespace {

std::string dimsText(const OcrDims& d) {
    return "[" + std::to_string(d.n) + ", " + std::to_string(d.c) + ", " + std::to_string(d.h) + ", " +
           std::to_string(d.w) + "]";
}

void require(bool ok, const std::string& msg) {
    if (!ok) throw std::invalid_argument(msg);
}

GatherParams params(const GatherSizes& s) {
    GatherParams p;
    p.n = s.n;
    p.k = s.k;
    p.c = s.c;
    p.h = s.h;
    p.w = s.w;
    p.scale = s.scale;
    return p;
}

AttentionParams params(const AttentionSizes& s) {
    AttentionParams p;
    p.n = s.n;
    p.ck = s.ck;
    p.k = s.k;
    p.h = s.h;
    p.w = s.w;
    p.scale = s.scale;
    return p;
}

}  // namespace

int64_t max_regions() { return kMaxRegions; }

std::array<int64_t, 4> gather_output_dims(const OcrDims& probs, const OcrDims& feats, float scale) {
    require(probs.n == feats.n && probs.h == feats.h && probs.w == feats.w,
            "OcrSpatialGather: probs " + dimsText(probs) + " and feats " + dimsText(feats) +
                " must agree in N, H and W");
    GatherParams p;
    p.n = probs.n;
    p.k = probs.c;
    p.c = feats.c;
    p.h = probs.h;
    p.w = probs.w;
    p.scale = scale;
    const std::string msg = validate(p);
    require(msg.empty(), msg);
    return {p.n, p.c, p.k, 1};
}

std::array<int64_t, 4> attention_output_dims(const OcrDims& query, const OcrDims& key, const OcrDims& value,
                                             float scale) {
    require(key.w == 1 && value.w == 1, "OcrObjectAttention: key " + dimsText(key) + " and value " +
                                            dimsText(value) + " must be [N, Ck, K, 1]");
    require(key.n == query.n && value.n == query.n && key.c == query.c && value.c == query.c && key.h == value.h,
            "OcrObjectAttention: query " + dimsText(query) + ", key " + dimsText(key) + " and value " +
                dimsText(value) + " must agree in N, Ck and K");
    AttentionParams p;
    p.n = query.n;
    p.ck = query.c;
    p.k = key.h;
    p.h = query.h;
    p.w = query.w;
    p.scale = scale;
    const std::string msg = validate(p);
    require(msg.empty(), msg);
    return {p.n, p.ck, p.h, p.w};
}

void gather_weights(const GatherSizes& s, const float* probs, float* weights, int64_t row0, int64_t row1) {
    gatherWeights(params(s), probs, weights, row0, row1);
}

void gather_context(const GatherSizes& s, const float* weights, const float* feats, float* out, int64_t row0,
                    int64_t row1) {
    gatherContext(params(s), weights, feats, out, row0, row1);
}

void attention_pixels(const AttentionSizes& s, const float* query, const float* key, const float* value,
                      float* out, int64_t pix0, int64_t pix1) {
    attentionPixels(params(s), query, key, value, out, pix0, pix1);
}

}  // namespace ocrnet
