// Device helpers shared by the OCR kernels (.cu files only).
#pragma once

#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace ocrnet {
namespace detail {

__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ void storeAs(float* dst, float v) { *dst = v; }
__device__ __forceinline__ void storeAs(__half* dst, float v) { *dst = __float2half_rn(v); }

__device__ __forceinline__ float warpMax(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warpSum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Kernels are instantiated for a compile-time bound KB on the region count K, so per-thread arrays indexed by
// k stay in registers; padded regions (K <= k < KB) carry zero weights. The bounds step by 8 up to 32 (HRNet's
// K = 19 runs with 24, wasting 5 of 24 lanes) and then by 16.
// F is a functor with `template <int KB> cudaError_t operator()() const` (C++17: no templated lambdas).
template <typename F>
cudaError_t dispatchRegions(int64_t k, const F& f) {
    if (k <= 8) return f.template operator()<8>();
    if (k <= 16) return f.template operator()<16>();
    if (k <= 24) return f.template operator()<24>();
    if (k <= 32) return f.template operator()<32>();
    if (k <= 48) return f.template operator()<48>();
    if (k <= 64) return f.template operator()<64>();
    return cudaErrorInvalidValue;
}

}  // namespace detail
}  // namespace ocrnet
