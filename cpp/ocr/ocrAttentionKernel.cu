// OcrObjectAttention on the GPU: one pass over the query, one write of the output.
//
// Each thread owns PPT adjacent pixels of one image. Pass 1 walks the channels, reading the query once
// (coalesced: lanes along pixels) and accumulating the pixel's K logits in registers against key rows staged in
// shared memory; the softmax runs in registers; pass 2 walks the channels again, staging value rows and writing
// each output element once. key/value are tiny (Ck * K) and staged per block in slabs of kSlab channels, so any
// Ck fits in a fixed 8 KiB of shared memory. The channel order of both sums is the reference's, so FP32 results
// match it to rounding.
#include "ocrAttentionKernel.h"
#include "ocrCudaCommon.cuh"

namespace ocrnet {
namespace {

using detail::storeAs;
using detail::toFloat;

constexpr int kThreads = 256;
constexpr int kSlab = 32;  // key/value channels staged per step
// Query rows each thread loads before using the first: the loads in flight per SM are what a memory-bound
// pass runs at. At 2 blocks of 256 threads per SM (128 registers), the compiler's own unrolling issued two
// 8-byte loads per thread (cuobjdump -sass, sm_90), 8 KiB per SM, where an H100's HBM needs roughly 20-30 KiB
// (bandwidth x latency / SMs). With eight rows, six loads go out before the first FMA waits (24 KiB per SM,
// same SASS). It divides kSlab.
constexpr int kRowsAhead = 8;
static_assert(kSlab % kRowsAhead == 0, "a slab is whole groups of rows");

// Two pixels per thread give two independent FMA chains per staged weight and let FP16 load/store half2;
// past 32 regions the 2 x KB logits would spill, so one pixel.
template <int KB>
struct PixelsPerThread {
    static constexpr int value = KB <= 32 ? 2 : 1;
};

// Loads/stores PPT adjacent pixels; Vec means they are aligned and in range, so one float2/half2 access.
template <typename T, int PPT, bool Vec>
struct Pixels;

template <typename T, int PPT>
struct Pixels<T, PPT, false> {
    __device__ static void load(const T* row, int64_t px, int64_t hw, float (&v)[PPT]) {
#pragma unroll
        for (int i = 0; i < PPT; ++i) v[i] = px + i < hw ? toFloat(row[px + i]) : 0.0f;
    }
    __device__ static void store(T* row, int64_t px, int64_t hw, const float (&v)[PPT]) {
#pragma unroll
        for (int i = 0; i < PPT; ++i)
            if (px + i < hw) storeAs(row + px + i, v[i]);
    }
};

template <>
struct Pixels<float, 2, true> {
    __device__ static void load(const float* row, int64_t px, int64_t, float (&v)[2]) {
        const float2 x = *reinterpret_cast<const float2*>(row + px);
        v[0] = x.x;
        v[1] = x.y;
    }
    __device__ static void store(float* row, int64_t px, int64_t, const float (&v)[2]) {
        *reinterpret_cast<float2*>(row + px) = make_float2(v[0], v[1]);
    }
};

template <>
struct Pixels<__half, 2, true> {
    __device__ static void load(const __half* row, int64_t px, int64_t, float (&v)[2]) {
        const float2 x = __half22float2(*reinterpret_cast<const __half2*>(row + px));
        v[0] = x.x;
        v[1] = x.y;
    }
    __device__ static void store(__half* row, int64_t px, int64_t, const float (&v)[2]) {
        *reinterpret_cast<__half2*>(row + px) = __floats2half2_rn(v[0], v[1]);
    }
};

// Stages rows [c0, c0 + kSlab) of a [Ck, K] matrix as [kSlab][KB] floats, zero-padded.
template <typename T, int KB>
__device__ void stageSlab(float (&s)[kSlab][KB], const T* m, int64_t c0, int64_t ck, int k) {
    for (int i = threadIdx.x; i < kSlab * KB; i += kThreads) {
        const int r = i / KB, j = i % KB;
        s[r][j] = (c0 + r < ck && j < k) ? toFloat(m[(c0 + r) * k + j]) : 0.0f;
    }
}

template <typename T, int KB, bool Vec>
__global__ void __launch_bounds__(kThreads)
    attentionKernel(AttentionParams p, const T* __restrict__ query, const T* __restrict__ key,
                    const T* __restrict__ value, T* __restrict__ out) {
    constexpr int PPT = PixelsPerThread<KB>::value;
    using Px = Pixels<T, PPT, Vec && PPT == 2>;  // one pixel per thread has nothing to pair
    __shared__ __align__(16) float sKV[kSlab][KB];

    const int64_t hw = p.h * p.w;
    const int64_t n = blockIdx.y;
    const int64_t px = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * PPT;
    const int K = static_cast<int>(p.k);
    const T* q = query + n * p.ck * hw;
    const T* keyN = key + n * p.ck * p.k;
    const T* valN = value + n * p.ck * p.k;
    T* o = out + n * p.ck * hw;
    // Threads past the image's end still help stage the slabs; they only skip loads and stores.
    const bool active = px < hw;

    float logit[PPT][KB];
#pragma unroll
    for (int i = 0; i < PPT; ++i)
#pragma unroll
        for (int k = 0; k < KB; ++k) logit[i][k] = 0.0f;

    for (int64_t c0 = 0; c0 < p.ck; c0 += kSlab) {
        __syncthreads();
        stageSlab<T, KB>(sKV, keyN, c0, p.ck, K);
        __syncthreads();
        if (!active) continue;
        const int rows = p.ck - c0 < kSlab ? static_cast<int>(p.ck - c0) : kSlab;
        for (int r0 = 0; r0 < rows; r0 += kRowsAhead) {
            // The group's loads first, then its FMAs (see kRowsAhead).
            float x[kRowsAhead][PPT];
#pragma unroll
            for (int u = 0; u < kRowsAhead; ++u) {
                if (r0 + u < rows) {
                    Px::load(q + (c0 + r0 + u) * hw, px, hw, x[u]);
                } else {
#pragma unroll
                    for (int i = 0; i < PPT; ++i) x[u][i] = 0.0f;  // the slab's padding rows are 0 too
                }
            }
#pragma unroll
            for (int u = 0; u < kRowsAhead; ++u) {
#pragma unroll
                for (int k = 0; k < KB; k += 4) {
                    const float4 kv = *reinterpret_cast<const float4*>(&sKV[r0 + u][k]);  // broadcast
#pragma unroll
                    for (int i = 0; i < PPT; ++i) {
                        logit[i][k] = fmaf(x[u][i], kv.x, logit[i][k]);
                        logit[i][k + 1] = fmaf(x[u][i], kv.y, logit[i][k + 1]);
                        logit[i][k + 2] = fmaf(x[u][i], kv.z, logit[i][k + 2]);
                        logit[i][k + 3] = fmaf(x[u][i], kv.w, logit[i][k + 3]);
                    }
                }
            }
        }
    }

    // Softmax over the K real regions; padded ones get weight 0 (their value rows are 0 as well).
#pragma unroll
    for (int i = 0; i < PPT; ++i) {
        float m = -INFINITY;
#pragma unroll
        for (int k = 0; k < KB; ++k)
            if (k < K) m = fmaxf(m, p.scale * logit[i][k]);
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < KB; ++k) {
            const float e = k < K ? expf(p.scale * logit[i][k] - m) : 0.0f;
            logit[i][k] = e;
            sum += e;
        }
        const float inv = 1.0f / sum;
#pragma unroll
        for (int k = 0; k < KB; ++k) logit[i][k] *= inv;
    }

    for (int64_t c0 = 0; c0 < p.ck; c0 += kSlab) {
        __syncthreads();
        stageSlab<T, KB>(sKV, valN, c0, p.ck, K);
        __syncthreads();
        if (!active) continue;
        const int rows = p.ck - c0 < kSlab ? static_cast<int>(p.ck - c0) : kSlab;
        for (int r = 0; r < rows; ++r) {
            float y[PPT];
#pragma unroll
            for (int i = 0; i < PPT; ++i) y[i] = 0.0f;
#pragma unroll
            for (int k = 0; k < KB; k += 4) {
                const float4 vv = *reinterpret_cast<const float4*>(&sKV[r][k]);
#pragma unroll
                for (int i = 0; i < PPT; ++i) {
                    y[i] = fmaf(logit[i][k], vv.x, y[i]);
                    y[i] = fmaf(logit[i][k + 1], vv.y, y[i]);
                    y[i] = fmaf(logit[i][k + 2], vv.z, y[i]);
                    y[i] = fmaf(logit[i][k + 3], vv.w, y[i]);
                }
            }
            Px::store(o + (c0 + r) * hw, px, hw, y);
        }
    }
}

template <typename T>
struct Launch {
    const AttentionParams& p;
    const T* query;
    const T* key;
    const T* value;
    T* out;
    cudaStream_t stream;

    template <int KB>
    cudaError_t operator()() const {
        constexpr int PPT = PixelsPerThread<KB>::value;
        const int64_t hw = p.h * p.w;
        const int64_t blocks = (hw + kThreads * PPT - 1) / (kThreads * PPT);
        if (blocks > 0x7fffffff || p.n > 65535) return cudaErrorInvalidValue;
        const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(p.n));
        // Paired accesses need every row start aligned to the pair: an even H*W and aligned base pointers.
        const uintptr_t align = PPT * sizeof(T);
        const bool vec = PPT == 2 && hw % 2 == 0 && reinterpret_cast<uintptr_t>(query) % align == 0 &&
                         reinterpret_cast<uintptr_t>(out) % align == 0;
        if (vec) {
            attentionKernel<T, KB, true><<<grid, kThreads, 0, stream>>>(p, query, key, value, out);
        } else {
            attentionKernel<T, KB, false><<<grid, kThreads, 0, stream>>>(p, query, key, value, out);
        }
        return cudaGetLastError();
    }
};

}  // namespace

template <typename T>
cudaError_t launchAttention(const AttentionParams& p, const T* query, const T* key, const T* value, T* out,
                            cudaStream_t stream) {
    if (!validate(p).empty() || query == nullptr || key == nullptr || value == nullptr || out == nullptr) {
        return cudaErrorInvalidValue;
    }
    return detail::dispatchRegions(p.k, Launch<T>{p, query, key, value, out, stream});
}

template cudaError_t launchAttention<float>(const AttentionParams&, const float*, const float*, const float*,
                                            float*, cudaStream_t);
template cudaError_t launchAttention<__half>(const AttentionParams&, const __half*, const __half*, const __half*,
                                             __half*, cudaStream_t);

}  // namespace ocrnet
