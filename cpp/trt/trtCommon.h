// Shared by the cpp/trt shims: the logger that forwards TensorRT's messages to Rust's `log`, plugin
// registration, and error helpers. Host code only.
#pragma once

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace ocrnet {
namespace trt {

// Forwards every message to Rust (`trt_log`, target "tensorrt") with its severity, and keeps the error
// messages of the current build so a failed build can say why.
class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override;
    // Starts collecting kERROR / kINTERNAL_ERROR messages (clears earlier ones).
    void startCapture() noexcept;
    std::vector<std::string> takeCaptured() noexcept;

private:
    std::mutex mMutex;
    std::vector<std::string> mErrors;
};

// The process-wide logger (TensorRT wants it to outlive every object made with it).
Logger& logger() noexcept;

// Registers the OCR plugin creators (cpp/plugin) with TensorRT's registry once per process and points the
// plugins' logging at logger(). Called explicitly: the plugin library's exported getCreators is never looked
// up in this binary, so its linker would otherwise drop the creators.
void registerOcrPlugins();

// Throws std::runtime_error("<what>: <CUDA error string>") unless `e` is cudaSuccess.
void checkCuda(cudaError_t e, char const* what);

// Deletes TensorRT objects (virtual destructors since 10.0).
struct TrtDelete {
    template <typename T>
    void operator()(T* p) const noexcept {
        delete p;
    }
};
template <typename T>
using TrtPtr = std::unique_ptr<T, TrtDelete>;

}  // namespace trt
}  // namespace ocrnet
