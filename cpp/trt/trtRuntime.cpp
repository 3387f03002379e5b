#include "trtRuntime.h"

#include <chrono>
#include <cstring>
#include <stdexcept>

#include "trtBridge.h"
#include "ocrnet-edge/src/engine/ffi.rs.h"

namespace ocrnet {
namespace trt {
namespace {

size_t elementSize(nvinfer1::DataType t) {
    switch (t) {
    case nvinfer1::DataType::kFLOAT:
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kHALF:
    case nvinfer1::DataType::kBF16: return 2;
    case nvinfer1::DataType::kINT8:
    case nvinfer1::DataType::kUINT8:
    case nvinfer1::DataType::kBOOL:
    case nvinfer1::DataType::kFP8: return 1;
    case nvinfer1::DataType::kINT64: return 8;
    default: throw std::runtime_error("an I/O tensor has an element type this runtime does not handle");
    }
}

char const* typeName(nvinfer1::DataType t) {
    switch (t) {
    case nvinfer1::DataType::kFLOAT: return "fp32";
    case nvinfer1::DataType::kHALF: return "fp16";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kUINT8: return "uint8";
    case nvinfer1::DataType::kBOOL: return "bool";
    case nvinfer1::DataType::kBF16: return "bf16";
    default: return "other";
    }
}

rust::Vec<int64_t> dimsVec(nvinfer1::Dims const& d) {
    rust::Vec<int64_t> v;
    for (int32_t i = 0; i < d.nbDims; ++i) {
        v.push_back(d.d[i]);
    }
    return v;
}

}  // namespace

std::unique_ptr<EngineRunner> load_engine(rust::Slice<uint8_t const> plan, bool cuda_graph) {
    return std::make_unique<EngineRunner>(plan, cuda_graph);
}

EngineRunner::EngineRunner(rust::Slice<uint8_t const> plan, bool cudaGraph) : mUseGraph(cudaGraph) {
    registerOcrPlugins();
    mRuntime.reset(nvinfer1::createInferRuntime(logger()));
    if (!mRuntime) {
        throw std::runtime_error("createInferRuntime failed");
    }
    mEngine.reset(mRuntime->deserializeCudaEngine(plan.data(), plan.size()));
    if (!mEngine) {
        throw std::runtime_error(
            "deserializeCudaEngine failed (another TensorRT version or device, or a plugin missing; see the "
            "TensorRT log)");
    }
    mContext.reset(mEngine->createExecutionContext());
    if (!mContext) {
        throw std::runtime_error("createExecutionContext failed (out of device memory?)");
    }
    checkCuda(cudaStreamCreateWithFlags(&mStream, cudaStreamNonBlocking), "cudaStreamCreate");
    checkCuda(cudaEventCreate(&mStart), "cudaEventCreate");
    checkCuda(cudaEventCreate(&mStop), "cudaEventCreate");
    int32_t inputs = 0;
    for (int32_t i = 0; i < mEngine->getNbIOTensors(); ++i) {
        Buffer b;
        b.name = mEngine->getIOTensorName(i);
        b.isInput = mEngine->getTensorIOMode(b.name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
        if (b.isInput) {
            mInput = b.name;
            ++inputs;
        }
        mBuffers.push_back(b);
    }
    if (inputs != 1) {
        throw std::runtime_error("the engine has " + std::to_string(inputs) + " inputs; ocrnet-edge runs one");
    }
}

EngineRunner::~EngineRunner() {
    if (mGraph) cudaGraphExecDestroy(mGraph);
    for (auto& b : mBuffers) {
        if (b.device) cudaFree(b.device);
    }
    if (mStart) cudaEventDestroy(mStart);
    if (mStop) cudaEventDestroy(mStop);
    mContext.reset();
    mEngine.reset();
    mRuntime.reset();
    if (mStream) cudaStreamDestroy(mStream);
}

rust::Vec<IoTensor> EngineRunner::io_tensors() const {
    rust::Vec<IoTensor> out;
    for (auto const& b : mBuffers) {
        IoTensor t;
        t.name = rust::String(b.name);
        t.is_input = b.isInput;
        t.dtype = rust::String(typeName(mEngine->getTensorDataType(b.name.c_str())));
        t.shape = dimsVec(mEngine->getTensorShape(b.name.c_str()));
        if (b.isInput) {
            t.opt = dimsVec(mEngine->getProfileShape(b.name.c_str(), 0, nvinfer1::OptProfileSelector::kOPT));
        }
        out.push_back(std::move(t));
    }
    return out;
}

EngineRunner::Buffer& EngineRunner::buffer(std::string const& name) {
    for (auto& b : mBuffers) {
        if (b.name == name) return b;
    }
    throw std::runtime_error("the engine has no I/O tensor '" + name + "'");
}

size_t EngineRunner::tensorBytes(char const* name) const {
    nvinfer1::Dims d = mContext->getTensorShape(name);
    size_t n = elementSize(mEngine->getTensorDataType(name));
    for (int32_t i = 0; i < d.nbDims; ++i) {
        if (d.d[i] < 0) {
            throw std::runtime_error(std::string("the shape of '") + name + "' is not known after setInputShape");
        }
        n *= static_cast<size_t>(d.d[i]);
    }
    return n;
}

void EngineRunner::ensure(Buffer& b, size_t bytes) {
    if (b.bytes >= bytes && b.device) return;
    if (b.device) checkCuda(cudaFree(b.device), "cudaFree");
    b.device = nullptr;
    b.bytes = 0;
    checkCuda(cudaMalloc(&b.device, bytes == 0 ? 1 : bytes), ("cudaMalloc for '" + b.name + "'").c_str());
    b.bytes = bytes;
    if (!mContext->setTensorAddress(b.name.c_str(), b.device)) {
        throw std::runtime_error("setTensorAddress('" + b.name + "') failed");
    }
    // New addresses invalidate a captured graph.
    if (mGraph) {
        cudaGraphExecDestroy(mGraph);
        mGraph = nullptr;
    }
}

void EngineRunner::prepare(rust::Slice<int64_t const> shape, size_t inputBytes) {
    nvinfer1::Dims d{};
    if (shape.size() > static_cast<size_t>(nvinfer1::Dims::MAX_DIMS)) {
        throw std::runtime_error("input rank too large");
    }
    d.nbDims = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) d.d[i] = shape[i];
    std::vector<int64_t> s(shape.begin(), shape.end());
    if (s != mGraphShape && mGraph) {
        cudaGraphExecDestroy(mGraph);
        mGraph = nullptr;
    }
    if (!mContext->setInputShape(mInput.c_str(), d)) {
        throw std::runtime_error("setInputShape('" + mInput + "') refused the shape (outside the engine's profile?)");
    }
    size_t want = tensorBytes(mInput.c_str());
    if (want != inputBytes) {
        throw std::runtime_error("input '" + mInput + "' needs " + std::to_string(want) + " bytes, got " +
                                 std::to_string(inputBytes));
    }
    for (auto& b : mBuffers) {
        ensure(b, tensorBytes(b.name.c_str()));
    }
    mGraphShape = s;
}

void EngineRunner::enqueue() {
    if (mUseGraph && mGraph) {
        checkCuda(cudaGraphLaunch(mGraph, mStream), "cudaGraphLaunch");
        return;
    }
    if (!mContext->enqueueV3(mStream)) {
        throw std::runtime_error("enqueueV3 failed (see the TensorRT log)");
    }
    if (!mUseGraph) return;
    // Capture after one plain enqueue (TensorRT finishes shape-dependent set-up there), replay from then on.
    checkCuda(cudaStreamSynchronize(mStream), "cudaStreamSynchronize");
    cudaGraph_t graph = nullptr;
    checkCuda(cudaStreamBeginCapture(mStream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    bool enq = mContext->enqueueV3(mStream);
    cudaError_t end = cudaStreamEndCapture(mStream, &graph);
    if (!enq || end != cudaSuccess || graph == nullptr ||
        cudaGraphInstantiate(&mGraph, graph, 0) != cudaSuccess) {
        mGraph = nullptr;
        mUseGraph = false;
        cudaGetLastError();
        logger().log(nvinfer1::ILogger::Severity::kWARNING,
                     "CUDA graph capture of this engine failed; running it with enqueueV3");
    }
    if (graph) cudaGraphDestroy(graph);
}

void EngineRunner::infer(rust::Slice<int64_t const> shape, rust::Slice<uint8_t const> input, rust::Str output_name,
                         rust::Vec<uint8_t>& output, rust::Vec<int64_t>& output_shape) {
    prepare(shape, input.size());
    Buffer& in = buffer(mInput);
    Buffer& out = buffer(std::string(output_name));
    checkCuda(cudaMemcpyAsync(in.device, input.data(), input.size(), cudaMemcpyHostToDevice, mStream), "H2D copy");
    enqueue();
    size_t bytes = tensorBytes(out.name.c_str());
    std::vector<uint8_t> host(bytes);
    checkCuda(cudaMemcpyAsync(host.data(), out.device, bytes, cudaMemcpyDeviceToHost, mStream), "D2H copy");
    checkCuda(cudaStreamSynchronize(mStream), "cudaStreamSynchronize");
    output.clear();
    output.reserve(bytes);
    for (uint8_t v : host) output.push_back(v);
    output_shape = dimsVec(mContext->getTensorShape(out.name.c_str()));
}

Timing EngineRunner::benchmark(rust::Slice<int64_t const> shape, rust::Slice<uint8_t const> input,
                               rust::Str output_name, uint32_t runs, uint32_t warmup) {
    prepare(shape, input.size());
    Buffer& in = buffer(mInput);
    Buffer& out = buffer(std::string(output_name));
    size_t outBytes = tensorBytes(out.name.c_str());
    // Pinned host buffers, as trtexec uses.
    void* hostIn = nullptr;
    void* hostOut = nullptr;
    checkCuda(cudaMallocHost(&hostIn, input.size()), "cudaMallocHost");
    cudaError_t e = cudaMallocHost(&hostOut, outBytes);
    if (e != cudaSuccess) {
        cudaFreeHost(hostIn);
        checkCuda(e, "cudaMallocHost");
    }
    std::memcpy(hostIn, input.data(), input.size());
    Timing t;
    t.cuda_graph = false;
    try {
        auto once = [&](bool record) {
            auto start = std::chrono::steady_clock::now();
            checkCuda(cudaMemcpyAsync(in.device, hostIn, input.size(), cudaMemcpyHostToDevice, mStream), "H2D");
            checkCuda(cudaEventRecord(mStart, mStream), "cudaEventRecord");
            enqueue();
            checkCuda(cudaEventRecord(mStop, mStream), "cudaEventRecord");
            checkCuda(cudaMemcpyAsync(hostOut, out.device, outBytes, cudaMemcpyDeviceToHost, mStream), "D2H");
            checkCuda(cudaStreamSynchronize(mStream), "cudaStreamSynchronize");
            auto end = std::chrono::steady_clock::now();
            if (record) {
                float gpuMs = 0.F;
                checkCuda(cudaEventElapsedTime(&gpuMs, mStart, mStop), "cudaEventElapsedTime");
                t.latency_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
                t.gpu_compute_ms.push_back(gpuMs);
            }
        };
        for (uint32_t i = 0; i < warmup; ++i) once(false);
        auto begin = std::chrono::steady_clock::now();
        for (uint32_t i = 0; i < runs; ++i) once(true);
        t.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
        t.cuda_graph = mUseGraph && mGraph != nullptr;
    } catch (...) {
        cudaFreeHost(hostIn);
        cudaFreeHost(hostOut);
        throw;
    }
    cudaFreeHost(hostIn);
    cudaFreeHost(hostOut);
    return t;
}

}  // namespace trt
}  // namespace ocrnet
