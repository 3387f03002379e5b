#include "trtCommon.h"

#include <cstdint>

#include "ocrnet-edge/src/engine/ffi.rs.h"
#include "../plugin/common/ocrPluginCommon.h"
#include "../plugin/ocrPluginLibrary.h"

namespace ocrnet {
namespace trt {

void Logger::log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept {
    try {
        std::string text = msg ? msg : "";
        if (severity == Severity::kERROR || severity == Severity::kINTERNAL_ERROR) {
            std::lock_guard<std::mutex> lock(mMutex);
            mErrors.push_back(text);
        }
        trt_log(static_cast<int32_t>(severity), rust::Str(text.data(), text.size()));
    } catch (...) {
        // Logging must never throw into TensorRT.
    }
}

void Logger::startCapture() noexcept {
    std::lock_guard<std::mutex> lock(mMutex);
    mErrors.clear();
}

std::vector<std::string> Logger::takeCaptured() noexcept {
    std::lock_guard<std::mutex> lock(mMutex);
    std::vector<std::string> out;
    out.swap(mErrors);
    return out;
}

Logger& logger() noexcept {
    static Logger instance;
    return instance;
}

namespace {
class Finder : public nvinfer1::ILoggerFinder {
public:
    nvinfer1::ILogger* findLogger() override { return &logger(); }
};
}  // namespace

void registerOcrPlugins() {
    static std::once_flag once;
    static bool ok = false;
    std::call_once(once, [] {
        static Finder finder;
        plugin::setLoggerFinder(&finder);
        int32_t count = 0;
        nvinfer1::IPluginCreatorInterface* const* creators = plugin::ocrCreators(count);
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        if (creators == nullptr || registry == nullptr) {
            return;
        }
        ok = true;
        for (int32_t i = 0; i < count; ++i) {
            if (!registry->registerCreator(*creators[i], plugin::kPluginNamespace)) {
                ok = false;
            }
        }
    });
    if (!ok) {
        throw std::runtime_error(
            "registering the OCR plugin creators (OcrSpatialGather, OcrObjectAttention) with TensorRT failed; "
            "see the TensorRT log above");
    }
}

void checkCuda(cudaError_t e, char const* what) {
    if (e != cudaSuccess) {
        throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                                 ")");
    }
}

int32_t header_version() noexcept {
    return NV_TENSORRT_MAJOR * 10000 + NV_TENSORRT_MINOR * 100 + NV_TENSORRT_PATCH;
}

int32_t library_version() noexcept {
    return getInferLibVersion();
}

bool legacy_available() noexcept {
#if NV_TENSORRT_MAJOR < 11
    return true;
#else
    return false;
#endif
}

DeviceInfo device_info() {
    int device = 0;
    checkCuda(cudaGetDevice(&device), "cudaGetDevice");
    cudaDeviceProp prop{};
    checkCuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    DeviceInfo info;
    info.name = rust::String(prop.name);
    info.major = prop.major;
    info.minor = prop.minor;
    info.total_bytes = static_cast<uint64_t>(prop.totalGlobalMem);
    return info;
}

}  // namespace trt
}  // namespace ocrnet
