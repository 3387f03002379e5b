// OcrSpatialGather on the GPU: a split-K reduction over the H*W pixels.
//
// The op is a skinny GEMM (C x K outputs, H*W long sums) whose softmax needs each region's maximum over all
// pixels. Kernel 1 gives each block one pixel chunk, one channel tile and one image: it takes the chunk's own
// maximum and exp-sum per region (a flash-decoding style partial softmax), stages exp weights and feature tiles
// in shared memory and accumulates chunk sums in registers. Kernel 2 rescales every chunk to the global maximum
// and adds them up. Bytes moved: probs once from DRAM (re-read per channel tile from L2), feats once, and the
// partials (chunks * C * K floats) written and read once.
//
// Tile staging loads batches of clamped addresses unconditionally and stores them afterwards. Written as
// `if (in range) load; store`, each load was issued right before the store that waited for it (cuobjdump -sass,
// sm_90, 2026-12-03): about one load in flight per warp. Loading whole tiles into registers (or the next tile
// during this one's FMAs) took the kernel to 255 registers with spills; batches of kStageBatch keep it at
// 64-142. cp.async (global to shared without registers, sm_80+) is the next step if the GPU benchmark still
// shows the gather latency-bound.
#include "ocrCudaCommon.cuh"
#include "ocrGatherKernel.h"

namespace ocrnet {
namespace {

using detail::storeAs;
using detail::toFloat;

constexpr int kThreads = 128;        // threads per block of the chunk kernel (4 warps)
constexpr int kTilePixels = 16;      // pixels staged in shared memory per step
constexpr int64_t kMaxChunks = 128;  // bounds the partials to 128 * C * K floats
constexpr int64_t kMinChunkPixels = 256;
constexpr int kStageBatch = 8;  // feature loads per thread issued together when staging a tile
constexpr int kCombineThreads = 256;

// Channels per thread: enough register reuse of each staged weight to keep the loop FMA-bound, few enough
// accumulators (TC * KB <= 64) to stay in registers.
template <int KB>
struct Tile {
    static constexpr int kChannelsPerThread = KB <= 8 ? 4 : (KB <= 24 ? 2 : 1);
    static constexpr int kChannels = kThreads * kChannelsPerThread;
};

struct Plan {
    int64_t chunks;
    int64_t chunkLen;
};

// Chunk count before rounding the chunk length up to whole tiles: an upper bound on Plan::chunks that never
// decreases as H*W grows, so a workspace sized for a profile's largest shape fits every smaller one.
int64_t chunkBound(int64_t hw) {
    const int64_t c = hw / kMinChunkPixels;
    return c < 1 ? 1 : (c > kMaxChunks ? kMaxChunks : c);
}

Plan plan(const GatherParams& p) {
    const int64_t hw = p.h * p.w;
    const int64_t bound = chunkBound(hw);
    int64_t len = (hw + bound - 1) / bound;
    len = (len + kTilePixels - 1) / kTilePixels * kTilePixels;
    return {(hw + len - 1) / len, len};
}

// Workspace: partial sums [N][chunks][C][K], then chunk maxima and exp-sums [N][chunks][K] each.
struct Layout {
    size_t accFloats;
    size_t statFloats;
};

Layout layout(const GatherParams& p, const Plan& pl) {
    const size_t acc = static_cast<size_t>(p.n * pl.chunks * p.c * p.k);
    const size_t stat = static_cast<size_t>(p.n * pl.chunks * p.k);
    return {acc, stat};
}

template <typename T, int KB>
__global__ void __launch_bounds__(kThreads)
    gatherChunkKernel(GatherParams p, int64_t chunkLen, const T* __restrict__ probs, const T* __restrict__ feats,
                      float* __restrict__ partAcc, float* __restrict__ partMax, float* __restrict__ partSum) {
    constexpr int TC = Tile<KB>::kChannelsPerThread;
    constexpr int CT = Tile<KB>::kChannels;
    __shared__ float sMax[KB];
    __shared__ __align__(16) float sW[kTilePixels][KB];
    // +1 column: the transposing store (lanes along pixels) would otherwise hit one bank per row.
    __shared__ float sF[kTilePixels][CT + 1];

    // Staging steps per thread and tile: exact, since KB is a multiple of 8 and kThreads divides 8 * kTilePixels.
    constexpr int kWeightSteps = KB * kTilePixels / kThreads;
    constexpr int kFeatSteps = CT * kTilePixels / kThreads;
    static_assert(KB * kTilePixels % kThreads == 0 && CT * kTilePixels % kThreads == 0, "whole staging steps");
    static_assert(kWeightSteps <= kStageBatch && kFeatSteps % kStageBatch == 0, "whole staging batches");

    const int tid = threadIdx.x;
    const int64_t hw = p.h * p.w;
    const int64_t n = blockIdx.z;
    const int64_t chunk = blockIdx.y;
    const int64_t chunks = gridDim.y;
    const int64_t c0 = static_cast<int64_t>(blockIdx.x) * CT;
    const int64_t begin = chunk * chunkLen;
    const int64_t end = begin + chunkLen < hw ? begin + chunkLen : hw;
    const int K = static_cast<int>(p.k);
    const float scale = p.scale;
    const T* probsN = probs + n * p.k * hw;

    // The chunk's maximum and exp-sum per region, one warp per region row.
    const int warp = tid / 32, lane = tid % 32;
    for (int k = warp; k < KB; k += kThreads / 32) {
        if (k >= K) {
            if (lane == 0) sMax[k] = 0.0f;
            continue;
        }
        const T* row = probsN + k * hw;
        float m = -INFINITY;
        for (int64_t i = begin + lane; i < end; i += 32) m = fmaxf(m, scale * toFloat(row[i]));
        m = detail::warpMax(m);
        float s = 0.0f;
        for (int64_t i = begin + lane; i < end; i += 32) s += expf(scale * toFloat(row[i]) - m);
        s = detail::warpSum(s);
        if (lane == 0) {
            sMax[k] = m;
            if (blockIdx.x == 0) {
                const size_t at = static_cast<size_t>((n * chunks + chunk) * p.k + k);
                partMax[at] = m;
                partSum[at] = s;
            }
        }
    }
    __syncthreads();

    float acc[TC][KB];
#pragma unroll
    for (int j = 0; j < TC; ++j)
#pragma unroll
        for (int k = 0; k < KB; ++k) acc[j][k] = 0.0f;

    for (int64_t t0 = begin; t0 < end; t0 += kTilePixels) {
        // Weights: consecutive threads take consecutive pixels of one region row, so the loads coalesce.
        // Both loops load a batch from clamped addresses, then store it, zeroing what lies out of range (see
        // the header for why not `if (in range) load`).
        {
            float v[kWeightSteps];
#pragma unroll
            for (int j = 0; j < kWeightSteps; ++j) {
                const int i = tid + j * kThreads;
                const int k = i / kTilePixels;
                const int64_t px = t0 + i % kTilePixels;
                v[j] = toFloat(probsN[(k < K ? k : K - 1) * hw + (px < end ? px : end - 1)]);
            }
#pragma unroll
            for (int j = 0; j < kWeightSteps; ++j) {
                const int i = tid + j * kThreads;
                const int k = i / kTilePixels, t = i % kTilePixels;
                sW[t][k] = (k < K && t0 + t < end) ? expf(scale * v[j] - sMax[k]) : 0.0f;
            }
        }
#pragma unroll 1
        for (int j0 = 0; j0 < kFeatSteps; j0 += kStageBatch) {
            float v[kStageBatch];
#pragma unroll
            for (int b = 0; b < kStageBatch; ++b) {
                const int i = tid + (j0 + b) * kThreads;
                const int64_t c = c0 + i / kTilePixels, px = t0 + i % kTilePixels;
                const int64_t cc = c < p.c ? c : p.c - 1, pc = px < end ? px : end - 1;
                v[b] = toFloat(feats[(n * p.c + cc) * hw + pc]);
            }
#pragma unroll
            for (int b = 0; b < kStageBatch; ++b) {
                const int i = tid + (j0 + b) * kThreads;
                const int cl = i / kTilePixels, t = i % kTilePixels;
                sF[t][cl] = (c0 + cl < p.c && t0 + t < end) ? v[b] : 0.0f;
            }
        }
        __syncthreads();
#pragma unroll 4
        for (int t = 0; t < kTilePixels; ++t) {
            float f[TC];
#pragma unroll
            for (int j = 0; j < TC; ++j) f[j] = sF[t][tid + j * kThreads];
#pragma unroll
            for (int k = 0; k < KB; k += 4) {
                // All lanes read the same four weights: one broadcast load for 4 * TC FMAs.
                const float4 w = *reinterpret_cast<const float4*>(&sW[t][k]);
#pragma unroll
                for (int j = 0; j < TC; ++j) {
                    acc[j][k] = fmaf(f[j], w.x, acc[j][k]);
                    acc[j][k + 1] = fmaf(f[j], w.y, acc[j][k + 1]);
                    acc[j][k + 2] = fmaf(f[j], w.z, acc[j][k + 2]);
                    acc[j][k + 3] = fmaf(f[j], w.w, acc[j][k + 3]);
                }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < TC; ++j) {
        const int64_t c = c0 + tid + j * kThreads;
        if (c >= p.c) continue;
        float* dst = partAcc + ((n * chunks + chunk) * p.c + c) * p.k;
#pragma unroll
        for (int k = 0; k < KB; ++k)
            if (k < K) dst[k] = acc[j][k];
    }
}

// One thread per output (n, c, k): out = sum_j e^(m_j - M) acc_j / sum_j e^(m_j - M) s_j.
template <typename T>
__global__ void __launch_bounds__(kCombineThreads)
    gatherCombineKernel(GatherParams p, int64_t chunks, const float* __restrict__ partAcc,
                        const float* __restrict__ partMax, const float* __restrict__ partSum, T* __restrict__ out) {
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t ck = p.c * p.k;
    if (idx >= p.n * ck) return;
    const int64_t n = idx / ck, r = idx % ck, k = r % p.k;
    const float* pm = partMax + n * chunks * p.k + k;
    const float* ps = partSum + n * chunks * p.k + k;
    float m = -INFINITY;
    for (int64_t j = 0; j < chunks; ++j) m = fmaxf(m, pm[j * p.k]);
    float total = 0.0f, acc = 0.0f;
    for (int64_t j = 0; j < chunks; ++j) {
        const float f = expf(pm[j * p.k] - m);
        total = fmaf(f, ps[j * p.k], total);
        acc = fmaf(f, partAcc[(n * chunks + j) * ck + r], acc);
    }
    // The chunk holding the maximum contributes s_j >= 1 with factor 1, so total >= 1.
    storeAs(out + idx, acc / total);
}

template <typename T>
struct LaunchChunks {
    const GatherParams& p;
    const Plan& pl;
    const T* probs;
    const T* feats;
    float* acc;
    float* mx;
    float* sm;
    cudaStream_t stream;

    template <int KB>
    cudaError_t operator()() const {
        const int64_t tiles = (p.c + Tile<KB>::kChannels - 1) / Tile<KB>::kChannels;
        if (tiles > 0x7fffffff || pl.chunks > 65535 || p.n > 65535) return cudaErrorInvalidValue;
        const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(pl.chunks), static_cast<unsigned>(p.n));
        gatherChunkKernel<T, KB><<<grid, kThreads, 0, stream>>>(p, pl.chunkLen, probs, feats, acc, mx, sm);
        return cudaGetLastError();
    }
};

}  // namespace

size_t gatherWorkspaceSize(const GatherParams& p) {
    const Layout l = layout(p, Plan{chunkBound(p.h * p.w), 0});
    return (l.accFloats + 2 * l.statFloats) * sizeof(float);
}

template <typename T>
cudaError_t launchGather(const GatherParams& p, const T* probs, const T* feats, T* out, void* workspace,
                         size_t workspaceBytes, cudaStream_t stream) {
    if (!validate(p).empty() || probs == nullptr || feats == nullptr || out == nullptr || workspace == nullptr ||
        workspaceBytes < gatherWorkspaceSize(p)) {
        return cudaErrorInvalidValue;
    }
    const Plan pl = plan(p);
    const Layout l = layout(p, pl);
    float* acc = static_cast<float*>(workspace);
    float* mx = acc + l.accFloats;
    float* sm = mx + l.statFloats;
    cudaError_t err = detail::dispatchRegions(p.k, LaunchChunks<T>{p, pl, probs, feats, acc, mx, sm, stream});
    if (err != cudaSuccess) return err;
    const int64_t total = p.n * p.c * p.k;
    const int64_t blocks = (total + kCombineThreads - 1) / kCombineThreads;
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
    gatherCombineKernel<T><<<static_cast<unsigned>(blocks), kCombineThreads, 0, stream>>>(p, pl.chunks, acc, mx, sm,
                                                                                          out);
    return cudaGetLastError();
}

template cudaError_t launchGather<float>(const GatherParams&, const float*, const float*, float*, void*, size_t,
                                         cudaStream_t);
template cudaError_t launchGather<__half>(const GatherParams&, const __half*, const __half*, __half*, void*, size_t,
                                          cudaStream_t);

}  // namespace ocrnet
