#include "ocr_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ocrnet {
namespace {

// Pixels per block of the long H*W sums: each block is summed in float, block sums are added in double.
constexpr int64_t kBlock = 512;
// Pixels handled together by the attention: its K x kTile logits stay in a small stack array.
constexpr int64_t kTile = 64;

// Dot product with eight independent float lanes: the compiler can vectorise it without reassociating a
// single running sum, and the lanes keep each partial sum short.
inline float dot(const float* a, const float* b, int64_t n) {
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; ++j) lanes[j] += a[i + j] * b[i + j];
    }
    float tail = 0.0f;
    for (; i < n; ++i) tail += a[i] * b[i];
    return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) +
           tail;
}

}  // namespace

void gatherWeights(const GatherParams& p, const float* probs, float* weights, int64_t row0, int64_t row1) {
    const int64_t hw = p.h * p.w;
    for (int64_t row = row0; row < row1; ++row) {
        const float* x = probs + row * hw;
        float* y = weights + row * hw;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < hw; ++i) m = std::max(m, p.scale * x[i]);
        double total = 0.0;
        for (int64_t b = 0; b < hw; b += kBlock) {
            const int64_t e = std::min(hw, b + kBlock);
            float block = 0.0f;
            for (int64_t i = b; i < e; ++i) {
                y[i] = std::exp(p.scale * x[i] - m);
                block += y[i];
            }
            total += block;
        }
        // The maximum's own term is exp(0) = 1, so total >= 1 and the division is safe.
        const float inv = static_cast<float>(1.0 / total);
        for (int64_t i = 0; i < hw; ++i) y[i] *= inv;
    }
}

void gatherContext(const GatherParams& p, const float* weights, const float* feats, float* out, int64_t row0,
                   int64_t row1) {
    const int64_t hw = p.h * p.w;
    const int64_t rows = row1 - row0;
    if (rows <= 0) return;
    // Blocked over pixels so one block of the K weight rows stays in cache while every feature row of the
    // slice reads it; acc holds the running double sums of the whole slice.
    std::vector<double> acc(static_cast<size_t>(rows * p.k), 0.0);
    for (int64_t b = 0; b < hw; b += kBlock) {
        const int64_t len = std::min(hw, b + kBlock) - b;
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t row = row0 + r;
            const int64_t n = row / p.c;
            const float* f = feats + row * hw + b;
            const float* w = weights + n * p.k * hw + b;
            double* a = acc.data() + r * p.k;
            for (int64_t k = 0; k < p.k; ++k) a[k] += dot(w + k * hw, f, len);
        }
    }
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t k = 0; k < p.k; ++k) out[(row0 + r) * p.k + k] = static_cast<float>(acc[r * p.k + k]);
    }
}

void attentionPixels(const AttentionParams& p, const float* query, const float* key, const float* value,
                     float* out, int64_t pix0, int64_t pix1) {
    const int64_t hw = p.h * p.w;
    float w[kMaxRegions][kTile];
    for (int64_t t0 = pix0; t0 < pix1;) {
        const int64_t n = t0 / hw;
        const int64_t px = t0 % hw;
        // A tile never crosses into the next image of the batch.
        const int64_t len = std::min({kTile, pix1 - t0, hw - px});
        for (int64_t k = 0; k < p.k; ++k) std::fill(w[k], w[k] + len, 0.0f);
        // logits[k][t] = <query[:, t], key[:, k]>, channel by channel so query is read once, contiguously.
        for (int64_t c = 0; c < p.ck; ++c) {
            const float* q = query + (n * p.ck + c) * hw + px;
            const float* kc = key + (n * p.ck + c) * p.k;
            for (int64_t k = 0; k < p.k; ++k) {
                const float kv = kc[k];
                for (int64_t t = 0; t < len; ++t) w[k][t] += q[t] * kv;
            }
        }
        for (int64_t t = 0; t < len; ++t) {
            float m = -std::numeric_limits<float>::infinity();
            for (int64_t k = 0; k < p.k; ++k) m = std::max(m, p.scale * w[k][t]);
            float sum = 0.0f;
            for (int64_t k = 0; k < p.k; ++k) {
                w[k][t] = std::exp(p.scale * w[k][t] - m);
                sum += w[k][t];
            }
            const float inv = 1.0f / sum;
            for (int64_t k = 0; k < p.k; ++k) w[k][t] *= inv;
        }
        for (int64_t c = 0; c < p.ck; ++c) {
            float* o = out + (n * p.ck + c) * hw + px;
            const float* vc = value + (n * p.ck + c) * p.k;
            std::fill(o, o + len, 0.0f);
            for (int64_t k = 0; k < p.k; ++k) {
                const float vv = vc[k];
                for (int64_t t = 0; t < len; ++t) o[t] += w[k][t] * vv;
            }
        }
        t0 += len;
    }
}

void gatherReference(const GatherParams& p, const float* probs, const float* feats, float* out) {
    std::vector<float> weights(static_cast<size_t>(p.n * p.k * p.h * p.w));
    gatherWeights(p, probs, weights.data(), 0, p.n * p.k);
    gatherContext(p, weights.data(), feats, out, 0, p.n * p.c);
}

void attentionReference(const AttentionParams& p, const float* query, const float* key, const float* value,
                        float* out) {
    attentionPixels(p, query, key, value, out, 0, p.n * p.h * p.w);
}

}  // namespace ocrnet
