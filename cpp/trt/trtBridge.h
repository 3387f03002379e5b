// The cxx face of cpp/trt: what src/engine/ffi.rs declares. Thin shims over the TensorRT C++ API (builder +
// ONNX parser, runtime + execution context) and the CUDA runtime. Failures are thrown as std::runtime_error,
// which cxx hands to Rust as Err; nothing else crosses the boundary. Compiled only with feature `tensorrt`,
// against TensorRT 10.x or 11.x headers (the legacy weakly typed path only where NV_TENSORRT_MAJOR < 11).
#pragma once

#include <cstdint>
#include <memory>

#include "rust/cxx.h"

namespace ocrnet {
namespace trt {

struct BuildRequest;
struct BuildOutput;
struct DeviceInfo;
struct IoTensor;
struct Timing;
class EngineRunner;

// NV_TENSORRT_VERSION of the headers this was compiled against, and getInferLibVersion() of the library.
int32_t header_version() noexcept;
int32_t library_version() noexcept;
// Whether the legacy weakly typed path (BuilderFlag kFP16/kINT8 + IInt8EntropyCalibrator2) is compiled in.
bool legacy_available() noexcept;

// The current CUDA device's name and compute capability.
DeviceInfo device_info();

// Parses req.onnx_path and builds a serialized engine. A build TensorRT refuses is not thrown: it returns
// ok = false with the error messages TensorRT logged, so the caller can tell which limit to lower.
BuildOutput build_engine(BuildRequest const& req);

// Deserializes a plan with the OCR plugin creators registered and prepares one execution context and stream.
std::unique_ptr<EngineRunner> load_engine(rust::Slice<uint8_t const> plan, bool cuda_graph);

}  // namespace trt
}  // namespace ocrnet

#include "trtRuntime.h"
