// Host helpers shared by the GPU test driver, the benchmark and the plugin harness: checked CUDA calls, seeded
// random tensors, FP16 rounding on the host, relative L2 error.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

// Every CUDA call in the tools goes through this: a failure names the call, file and line, then exits.
#define OCR_CHECK_CUDA(call)                                                                            \
    do {                                                                                                \
        const cudaError_t err_ = (call);                                                                \
        if (err_ != cudaSuccess) {                                                                      \
            std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                  \
                         cudaGetErrorString(err_));                                                     \
            std::exit(1);                                                                               \
        }                                                                                               \
    } while (0)

namespace ocrtools {

// Values in [-range, range]; a fixed seed per case keeps failures reproducible.
inline std::vector<float> randomTensor(size_t count, uint32_t seed, float range) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(-range, range);
    std::vector<float> v(count);
    for (float& x : v) x = dist(gen);
    return v;
}

// Rounds through FP16 in place, so the FP16 kernels and the FP32 reference see the same inputs.
inline void roundToHalf(std::vector<float>& v) {
    for (float& x : v) x = __half2float(__float2half_rn(x));
}

inline std::vector<__half> toHalf(const std::vector<float>& v) {
    std::vector<__half> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = __float2half_rn(v[i]);
    return h;
}

inline std::vector<float> toFloat(const std::vector<__half>& h) {
    std::vector<float> v(h.size());
    for (size_t i = 0; i < h.size(); ++i) v[i] = __half2float(h[i]);
    return v;
}

// ||got - want|| / ||want||, in double. NaN (a poisoned element left unwritten) or Inf makes it infinite.
inline double relL2(const std::vector<float>& got, const std::vector<float>& want) {
    if (got.size() != want.size()) return INFINITY;
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        const double d = static_cast<double>(got[i]) - want[i];
        num += d * d;
        den += static_cast<double>(want[i]) * want[i];
    }
    return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Device buffer that frees itself; the tools never leak on their early-exit paths that matter.
template <typename T>
struct DeviceBuffer {
    T* ptr = nullptr;
    size_t count = 0;
    explicit DeviceBuffer(size_t n) : count(n) { OCR_CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&ptr), (n ? n : 1) * sizeof(T))); }
    ~DeviceBuffer() { cudaFree(ptr); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    void upload(const std::vector<T>& v) {
        OCR_CHECK_CUDA(cudaMemcpy(ptr, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    std::vector<T> download() const {
        std::vector<T> v(count);
        OCR_CHECK_CUDA(cudaMemcpy(v.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost));
        return v;
    }
    // 0xFF bytes are NaN in both float and half: any element a kernel forgets to write shows up.
    void poison() { OCR_CHECK_CUDA(cudaMemset(ptr, 0xFF, (count ? count : 1) * sizeof(T))); }
};

inline bool haveCudaDevice() {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

}  // namespace ocrtools
