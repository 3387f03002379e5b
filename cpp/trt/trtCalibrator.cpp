#include "trtCalibrator.h"

#include <stdexcept>

namespace ocrnet {
namespace trt {

#if NV_TENSORRT_MAJOR < 11
std::unique_ptr<CacheCalibrator> makeCacheCalibrator(rust::Vec<uint8_t> const& cache) {
    if (cache.empty()) {
        throw std::runtime_error("legacy INT8 build without a calibration cache");
    }
    return std::make_unique<CacheCalibrator>(
        std::string(reinterpret_cast<char const*>(cache.data()), cache.size()));
}
#endif

}  // namespace trt
}  // namespace ocrnet
