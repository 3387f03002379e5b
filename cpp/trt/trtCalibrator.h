// The legacy INT8 calibrator (TensorRT 10.x only: IInt8EntropyCalibrator2 is deprecated since 10.1 and gone in
// 11). It never sees images: getBatch reports none, and readCalibrationCache serves the cache Rust prepared
// (src/engine/legacy.rs: calibration.cache checked against the graph, header stamped with this TensorRT).
#pragma once

#include <NvInfer.h>

#include <cstdint>
#include <memory>

#include "rust/cxx.h"

namespace ocrnet {
namespace trt {

#if NV_TENSORRT_MAJOR < 11
class CacheCalibrator;
// A calibrator that serves a copy of `cache`.
std::unique_ptr<CacheCalibrator> makeCacheCalibrator(rust::Vec<uint8_t> const& cache);
#else
// No calibrator exists in TensorRT 11; the type is only named by an unused unique_ptr.
class CacheCalibrator {};
#endif

}  // namespace trt
}  // namespace ocrnet

#if NV_TENSORRT_MAJOR < 11
#include <string>

namespace ocrnet {
namespace trt {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
class CacheCalibrator final : public nvinfer1::IInt8EntropyCalibrator2 {
public:
    explicit CacheCalibrator(std::string cache) : mCache(std::move(cache)) {}

    int32_t getBatchSize() const noexcept override { return 1; }

    // No calibration data: TensorRT must take every scale from the cache.
    bool getBatch(void* /*bindings*/[], char const* /*names*/[], int32_t /*nbBindings*/) noexcept override {
        return false;
    }

    void const* readCalibrationCache(std::size_t& length) noexcept override {
        length = mCache.size();
        return mCache.empty() ? nullptr : mCache.data();
    }

    // The cache comes from ocrnet-edge's own calibration; TensorRT's copy of it is not kept.
    void writeCalibrationCache(void const* /*ptr*/, std::size_t /*length*/) noexcept override {}

private:
    std::string mCache;
};
#pragma GCC diagnostic pop

}  // namespace trt
}  // namespace ocrnet
#endif
