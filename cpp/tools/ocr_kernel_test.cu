// GPU test driver: both OCR kernels, FP32 and FP16, on fresh random inputs at several shapes, against the C++
// reference (cpp/ocr/ocr_reference.cpp). Built with nvcc only (scripts/gpu-check.sh); needs no Rust or Python.
// Output buffers are poisoned with NaN first, so an element a kernel fails to write fails the test.
// Exit status: 0 all passed, 1 a failure, 2 no CUDA device.
#include <cstdio>
#include <vector>

#include "../ocr/ocrAttentionKernel.h"
#include "../ocr/ocrGatherKernel.h"
#include "../ocr/ocr_reference.h"
#include "ocr_test_util.h"

namespace {

using namespace ocrtools;

constexpr double kTolF32 = 1e-5;
constexpr double kTolF16 = 2e-3;

int g_passed = 0, g_failed = 0;

void report(const char* op, const char* type, const char* shape, double err, double tol) {
    const bool ok = err <= tol;
    (ok ? g_passed : g_failed)++;
    std::printf("%-5s %-20s %-4s %-34s rel_l2 %.3e (tol %.0e)\n", ok ? "ok" : "FAIL", op, type, shape, err, tol);
}

template <typename T>
std::vector<T> asDevice(const std::vector<float>& v);
template <>
std::vector<float> asDevice<float>(const std::vector<float>& v) { return v; }
template <>
std::vector<__half> asDevice<__half>(const std::vector<float>& v) { return toHalf(v); }

std::vector<float> asHost(const std::vector<float>& v) { return v; }
std::vector<float> asHost(const std::vector<__half>& v) { return toFloat(v); }

template <typename T>
void testGather(const ocrnet::GatherParams& p, uint32_t seed) {
    const bool half = sizeof(T) == 2;
    const size_t hw = static_cast<size_t>(p.h * p.w);
    std::vector<float> probs = randomTensor(p.n * p.k * hw, seed, 4.0f);
    std::vector<float> feats = randomTensor(p.n * p.c * hw, seed + 1, 1.0f);
    if (half) {
        roundToHalf(probs);
        roundToHalf(feats);
    }
    std::vector<float> want(static_cast<size_t>(ocrnet::outputElements(p)));
    ocrnet::gatherReference(p, probs.data(), feats.data(), want.data());

    DeviceBuffer<T> dProbs(probs.size()), dFeats(feats.size()), dOut(want.size());
    dProbs.upload(asDevice<T>(probs));
    dFeats.upload(asDevice<T>(feats));
    dOut.poison();
    const size_t wsBytes = ocrnet::gatherWorkspaceSize(p);
    DeviceBuffer<unsigned char> ws(wsBytes);
    ws.poison();  // the kernels must not rely on zeroed scratch memory
    OCR_CHECK_CUDA(ocrnet::launchGather<T>(p, dProbs.ptr, dFeats.ptr, dOut.ptr, ws.ptr, wsBytes, nullptr));
    OCR_CHECK_CUDA(cudaDeviceSynchronize());
    char shape[96];
    std::snprintf(shape, sizeof shape, "N%ld K%ld C%ld %ldx%ld s%.2f", (long)p.n, (long)p.k, (long)p.c, (long)p.h,
                  (long)p.w, p.scale);
    report("OcrSpatialGather", half ? "f16" : "f32", shape, relL2(asHost(dOut.download()), want),
           half ? kTolF16 : kTolF32);
}

template <typename T>
void testAttention(const ocrnet::AttentionParams& p, uint32_t seed) {
    const bool half = sizeof(T) == 2;
    const size_t hw = static_cast<size_t>(p.h * p.w);
    std::vector<float> query = randomTensor(p.n * p.ck * hw, seed, 1.0f);
    std::vector<float> key = randomTensor(p.n * p.ck * p.k, seed + 1, 1.0f);
    std::vector<float> value = randomTensor(p.n * p.ck * p.k, seed + 2, 1.0f);
    if (half) {
        roundToHalf(query);
        roundToHalf(key);
        roundToHalf(value);
    }
    std::vector<float> want(static_cast<size_t>(ocrnet::outputElements(p)));
    ocrnet::attentionReference(p, query.data(), key.data(), value.data(), want.data());

    DeviceBuffer<T> dQ(query.size()), dK(key.size()), dV(value.size()), dOut(want.size());
    dQ.upload(asDevice<T>(query));
    dK.upload(asDevice<T>(key));
    dV.upload(asDevice<T>(value));
    dOut.poison();
    OCR_CHECK_CUDA(ocrnet::launchAttention<T>(p, dQ.ptr, dK.ptr, dV.ptr, dOut.ptr, nullptr));
    OCR_CHECK_CUDA(cudaDeviceSynchronize());
    char shape[96];
    std::snprintf(shape, sizeof shape, "N%ld Ck%ld K%ld %ldx%ld s%.3f", (long)p.n, (long)p.ck, (long)p.k, (long)p.h,
                  (long)p.w, p.scale);
    report("OcrObjectAttention", half ? "f16" : "f32", shape, relL2(asHost(dOut.download()), want),
           half ? kTolF16 : kTolF32);
}

}  // namespace

int main() {
    if (!haveCudaDevice()) {
        std::printf("ocr_kernel_test: no CUDA device; skipped\n");
        return 2;
    }
    // n, k, c, h, w, scale: odd sizes, K = 19 (HRNet) and every dispatch bound (<=8 ... 64), N > 1, a tail chunk.
    const ocrnet::GatherParams gathers[] = {
        {2, 19, 37, 13, 29, 1.0f}, {1, 1, 5, 1, 1, 1.0f},     {3, 7, 130, 17, 33, 0.7f}, {1, 64, 64, 31, 31, 2.0f},
        {2, 33, 300, 9, 70, -0.5f}, {1, 19, 512, 64, 128, 1.0f}, {2, 47, 129, 40, 41, 1.3f}, {1, 16, 600, 7, 5, 1.0f},
    };
    // n, ck, k, h, w, scale: odd and even H*W (paired loads), Ck not a multiple of the 32-channel slab.
    const ocrnet::AttentionParams attentions[] = {
        {2, 37, 19, 13, 29, 0.1644f}, {1, 256, 19, 64, 128, 0.0625f}, {3, 64, 64, 15, 17, 0.125f},
        {1, 1, 1, 1, 1, 1.0f},        {2, 48, 40, 20, 31, 0.2f},      {1, 130, 8, 33, 33, 0.1f},
        {2, 70, 24, 10, 12, 0.3f},    {1, 33, 13, 1, 777, 0.17f},
    };
    uint32_t seed = 1;
    for (const auto& p : gathers) {
        testGather<float>(p, seed += 10);
        testGather<__half>(p, seed += 10);
    }
    for (const auto& p : attentions) {
        testAttention<float>(p, seed += 10);
        testAttention<__half>(p, seed += 10);
    }
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
