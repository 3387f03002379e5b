// The runtime half of the bridge: one deserialized engine, one execution context, one CUDA stream, device
// buffers for its I/O tensors (grown on demand), and optionally a CUDA graph of the enqueue, captured per
// input shape and replayed while the shape stays the same.
#pragma once

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "rust/cxx.h"
#include "trtCommon.h"

namespace ocrnet {
namespace trt {

struct IoTensor;
struct Timing;

class EngineRunner {
public:
    EngineRunner(rust::Slice<uint8_t const> plan, bool cudaGraph);
    ~EngineRunner();
    EngineRunner(EngineRunner const&) = delete;
    EngineRunner& operator=(EngineRunner const&) = delete;

    // Every I/O tensor: name, direction, element type, and its shape (-1 for dynamic dims; for inputs the
    // profile's opt shape is in `opt`).
    rust::Vec<IoTensor> io_tensors() const;

    // One inference: sets the input shape, copies `input` (bytes of the input's element type) in, runs, and
    // copies the output tensor `output_name` back into `output`, its shape into `output_shape`.
    void infer(rust::Slice<int64_t const> shape, rust::Slice<uint8_t const> input, rust::Str output_name,
               rust::Vec<uint8_t>& output, rust::Vec<int64_t>& output_shape);

    // trtexec-style timing of `runs` inferences after `warmup`: per run the host latency (H2D + compute + D2H,
    // synchronised) and the GPU compute time (CUDA events around the enqueue).
    Timing benchmark(rust::Slice<int64_t const> shape, rust::Slice<uint8_t const> input, rust::Str output_name,
                     uint32_t runs, uint32_t warmup);

private:
    struct Buffer {
        std::string name;
        bool isInput{false};
        void* device{nullptr};
        size_t bytes{0};
    };

    void prepare(rust::Slice<int64_t const> shape, size_t inputBytes);
    void ensure(Buffer& b, size_t bytes);
    void enqueue();
    size_t tensorBytes(char const* name) const;
    Buffer& buffer(std::string const& name);

    TrtPtr<nvinfer1::IRuntime> mRuntime;
    TrtPtr<nvinfer1::ICudaEngine> mEngine;
    TrtPtr<nvinfer1::IExecutionContext> mContext;
    cudaStream_t mStream{nullptr};
    cudaEvent_t mStart{nullptr};
    cudaEvent_t mStop{nullptr};
    std::vector<Buffer> mBuffers;
    std::string mInput;
    bool mUseGraph{false};
    cudaGraphExec_t mGraph{nullptr};
    std::vector<int64_t> mGraphShape;
};

}  // namespace trt
}  // namespace ocrnet
