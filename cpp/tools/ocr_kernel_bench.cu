// Benchmark of both OCR kernels at HRNet-OCR's sizes (512x1024 and 1024x2048 inputs: 128x256 and 256x512
// pixels at 1/4 resolution; C 512, Ck 256, K 19), FP32 and FP16: median time over CUDA events, the bytes each
// must move, achieved GB/s and its share of the device's measured device-to-device copy bandwidth (the
// roofline of a memory-bound kernel). scripts/gpu-check.sh runs it, then the unfused PyTorch version
// (ocr_torch_bench.py) when torch imports.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "../ocr/ocrAttentionKernel.h"
#include "../ocr/ocrGatherKernel.h"
#include "ocr_test_util.h"

namespace {

using namespace ocrtools;

constexpr int kWarmup = 5;
constexpr int kRuns = 50;

template <typename F>
float medianMs(F&& launch) {
    cudaEvent_t a, b;
    OCR_CHECK_CUDA(cudaEventCreate(&a));
    OCR_CHECK_CUDA(cudaEventCreate(&b));
    for (int i = 0; i < kWarmup; ++i) launch();
    std::vector<float> ms(kRuns);
    for (int i = 0; i < kRuns; ++i) {
        OCR_CHECK_CUDA(cudaEventRecord(a));
        launch();
        OCR_CHECK_CUDA(cudaEventRecord(b));
        OCR_CHECK_CUDA(cudaEventSynchronize(b));
        OCR_CHECK_CUDA(cudaEventElapsedTime(&ms[i], a, b));
    }
    OCR_CHECK_CUDA(cudaEventDestroy(a));
    OCR_CHECK_CUDA(cudaEventDestroy(b));
    std::sort(ms.begin(), ms.end());
    return ms[kRuns / 2];
}

// Device-to-device copy of 1 GiB: bytes read + bytes written per second, the ceiling for a streaming kernel.
double copyGBs() {
    const size_t bytes = size_t(1) << 30;
    DeviceBuffer<unsigned char> src(bytes), dst(bytes);
    OCR_CHECK_CUDA(cudaMemset(src.ptr, 1, bytes));
    const float ms = medianMs([&] { OCR_CHECK_CUDA(cudaMemcpyAsync(dst.ptr, src.ptr, bytes, cudaMemcpyDeviceToDevice)); });
    return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

void row(const char* op, const char* type, int h, int w, double bytes, float ms, double copy) {
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf("%-18s %-4s %4dx%-4d %9.1f MB %9.1f us %8.1f GB/s %6.1f%% of copy  (roofline %.1f us)\n", op, type,
                h, w, bytes / 1e6, ms * 1e3, gbs, 100.0 * gbs / copy, bytes / (copy * 1e9) * 1e6);
}

template <typename T>
void benchSize(int h, int w, double copy) {
    const char* type = sizeof(T) == 2 ? "f16" : "f32";
    const int64_t hw = int64_t(h) * w;
    {
        const ocrnet::GatherParams p{1, 19, 512, h, w, 1.0f};
        DeviceBuffer<T> probs(p.k * hw), feats(p.c * hw), out(p.c * p.k);
        const size_t wsBytes = ocrnet::gatherWorkspaceSize(p);
        DeviceBuffer<unsigned char> ws(wsBytes);
        OCR_CHECK_CUDA(cudaMemset(probs.ptr, 0, probs.count * sizeof(T)));
        OCR_CHECK_CUDA(cudaMemset(feats.ptr, 0, feats.count * sizeof(T)));
        const float ms = medianMs(
            [&] { OCR_CHECK_CUDA(ocrnet::launchGather<T>(p, probs.ptr, feats.ptr, out.ptr, ws.ptr, wsBytes, nullptr)); });
        // Compulsory traffic: probs and feats read once, the output written; plus the split-K partials, written
        // and read once (counted, since a kernel that needs them pays for them).
        const double bytes = double(p.k + p.c) * hw * sizeof(T) + double(p.c * p.k) * sizeof(T) + 2.0 * wsBytes;
        row("OcrSpatialGather", type, h, w, bytes, ms, copy);
    }
    {
        const ocrnet::AttentionParams p{1, 256, 19, h, w, 0.0625f};
        DeviceBuffer<T> q(p.ck * hw), k(p.ck * p.k), v(p.ck * p.k), out(p.ck * hw);
        OCR_CHECK_CUDA(cudaMemset(q.ptr, 0, q.count * sizeof(T)));
        OCR_CHECK_CUDA(cudaMemset(k.ptr, 0, k.count * sizeof(T)));
        OCR_CHECK_CUDA(cudaMemset(v.ptr, 0, v.count * sizeof(T)));
        const float ms =
            medianMs([&] { OCR_CHECK_CUDA(ocrnet::launchAttention<T>(p, q.ptr, k.ptr, v.ptr, out.ptr, nullptr)); });
        // Query read once, output written once, key and value read once.
        const double bytes = 2.0 * p.ck * hw * sizeof(T) + 2.0 * p.ck * p.k * sizeof(T);
        row("OcrObjectAttention", type, h, w, bytes, ms, copy);
    }
}

}  // namespace

int main() {
    if (!haveCudaDevice()) {
        std::printf("ocr_kernel_bench: no CUDA device; skipped\n");
        return 2;
    }
    cudaDeviceProp prop{};
    OCR_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    const double copy = copyGBs();
    std::printf("device %s (sm_%d%d); measured D2D copy bandwidth %.1f GB/s (read + write); median of %d runs\n",
                prop.name, prop.major, prop.minor, copy, kRuns);
    for (const auto& s : {std::make_pair(128, 256), std::make_pair(256, 512)}) {
        benchSize<float>(s.first, s.second, copy);
        benchSize<__half>(s.first, s.second, copy);
    }
    return 0;
}
