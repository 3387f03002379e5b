// Engine builds: the ONNX parser fills a network (strongly typed, or weakly typed with FP16/INT8 flags on
// TensorRT 10.x), one optimisation profile from the recipe's min/opt/max, the workspace cap, the builder
// optimisation level and the timing cache; the plan and the updated timing cache go back to Rust.
#include <NvInfer.h>
#include <NvOnnxParser.h>

#include <cstring>
#include <string>
#include <vector>

#include "trtBridge.h"
#include "trtCalibrator.h"
#include "trtCommon.h"
#include "ocrnet-edge/src/engine/ffi.rs.h"

namespace ocrnet {
namespace trt {
namespace {

nvinfer1::Dims toDims(rust::Vec<int64_t> const& v, char const* what) {
    nvinfer1::Dims d{};
    if (v.size() > static_cast<size_t>(nvinfer1::Dims::MAX_DIMS)) {
        throw std::runtime_error(std::string("input.") + what + " has more dimensions than TensorRT allows");
    }
    d.nbDims = static_cast<int32_t>(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        d.d[i] = v[i];
    }
    return d;
}

rust::Vec<uint8_t> toVec(nvinfer1::IHostMemory const& m) {
    rust::Vec<uint8_t> out;
    out.reserve(m.size());
    auto const* p = static_cast<uint8_t const*>(m.data());
    for (size_t i = 0; i < m.size(); ++i) {
        out.push_back(p[i]);
    }
    return out;
}

BuildOutput failed(std::vector<std::string> errors, std::string const& what) {
    BuildOutput out;
    out.ok = false;
    errors.push_back(what);
    for (auto const& e : errors) {
        out.errors.push_back(rust::String(e));
    }
    return out;
}

}  // namespace

BuildOutput build_engine(BuildRequest const& req) {
    registerOcrPlugins();
    Logger& log = logger();
    log.startCapture();

    TrtPtr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(log));
    if (!builder) {
        return failed(log.takeCaptured(), "createInferBuilder failed");
    }
    nvinfer1::NetworkDefinitionCreationFlags flags = 0;
#if NV_TENSORRT_MAJOR < 11
    // TensorRT 11 networks are always strongly typed (the flag is deprecated and ignored there).
    if (!req.legacy) {
        flags |= 1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
    }
#else
    if (req.legacy) {
        throw std::runtime_error("the legacy weakly typed path needs TensorRT 10.x headers");
    }
#endif
    TrtPtr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(flags));
    if (!network) {
        return failed(log.takeCaptured(), "createNetworkV2 failed");
    }
    TrtPtr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, log));
    if (!parser) {
        return failed(log.takeCaptured(), "createParser failed");
    }
    std::string onnx(req.onnx_path);
    if (!parser->parseFromFile(onnx.c_str(), static_cast<int>(nvinfer1::ILogger::Severity::kWARNING))) {
        std::vector<std::string> errors = log.takeCaptured();
        for (int32_t i = 0; i < parser->getNbErrors(); ++i) {
            nvonnxparser::IParserError const* e = parser->getError(i);
            std::string node = e->nodeName() ? e->nodeName() : "";
            std::string op = e->nodeOperator() ? e->nodeOperator() : "";
            errors.push_back("ONNX parser: node '" + node + "' (" + op + "): " + e->desc());
        }
        return failed(errors, "parsing " + onnx + " failed");
    }

    TrtPtr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
    if (!config) {
        return failed(log.takeCaptured(), "createBuilderConfig failed");
    }
    config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, static_cast<size_t>(req.workspace_bytes));
    config->setBuilderOptimizationLevel(req.optimization_level);

    std::string input(req.input_name);
    nvinfer1::IOptimizationProfile* profile = builder->createOptimizationProfile();
    if (profile == nullptr ||
        !profile->setDimensions(input.c_str(), nvinfer1::OptProfileSelector::kMIN, toDims(req.min, "min")) ||
        !profile->setDimensions(input.c_str(), nvinfer1::OptProfileSelector::kOPT, toDims(req.opt, "opt")) ||
        !profile->setDimensions(input.c_str(), nvinfer1::OptProfileSelector::kMAX, toDims(req.max, "max")) ||
        config->addOptimizationProfile(profile) < 0) {
        return failed(log.takeCaptured(), "the optimization profile for input '" + input + "' was refused");
    }

    // The timing cache: earlier builds' measurements, so tactics are not timed again.
    TrtPtr<nvinfer1::ITimingCache> cache(
        config->createTimingCache(req.timing_cache.empty() ? nullptr : req.timing_cache.data(),
                                  req.timing_cache.size()));
    if (!cache) {
        // A cache from another TensorRT or device is refused: start a fresh one.
        log.log(nvinfer1::ILogger::Severity::kWARNING, "the timing cache was refused; starting a new one");
        cache.reset(config->createTimingCache(nullptr, 0));
    }
    if (cache && !config->setTimingCache(*cache, false)) {
        log.log(nvinfer1::ILogger::Severity::kWARNING, "the timing cache could not be attached");
    }

    std::unique_ptr<CacheCalibrator> calibrator;
    if (req.legacy) {
#if NV_TENSORRT_MAJOR < 11
        if (req.legacy_fp16 || req.legacy_int8) {
            config->setFlag(nvinfer1::BuilderFlag::kFP16);
        }
        if (req.legacy_int8) {
            config->setFlag(nvinfer1::BuilderFlag::kINT8);
            calibrator = makeCacheCalibrator(req.calibration_cache);
            // Deprecated since 10.1 and removed in 11: the one place the legacy path needs it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
            config->setInt8Calibrator(calibrator.get());
            config->setCalibrationProfile(profile);
#pragma GCC diagnostic pop
        }
#endif
    }

    TrtPtr<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
    if (!plan || plan->size() == 0) {
        return failed(log.takeCaptured(), "buildSerializedNetwork failed");
    }
    BuildOutput out;
    out.ok = true;
    out.plan = toVec(*plan);
    if (nvinfer1::ITimingCache const* used = config->getTimingCache()) {
        TrtPtr<nvinfer1::IHostMemory> blob(used->serialize());
        if (blob) {
            out.timing_cache = toVec(*blob);
        }
    }
    log.takeCaptured();
    return out;
}

}  // namespace trt
}  // namespace ocrnet
