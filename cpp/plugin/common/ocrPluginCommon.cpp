#include "ocrPluginCommon.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace ocrnet {
namespace plugin {
namespace {

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

}  // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept { gLoggerFinder.store(finder); }

void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept {
    try {
        nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
        // findLogger is not noexcept in the 10.x headers: the try covers it.
        nvinfer1::ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
        if (logger != nullptr) {
            logger->log(severity, message.c_str());
            return;
        }
        std::fprintf(stderr, "[ocrnet plugins] %s\n", message.c_str());
    } catch (...) {
        std::fprintf(stderr, "[ocrnet plugins] (logger failed) %s\n", message.c_str());
    }
}

void logError(std::string const& message) noexcept { log(nvinfer1::ILogger::Severity::kERROR, message); }

void logError(char const* op, char const* message) noexcept {
    try {
        logError(std::string(op) + ": " + message);
    } catch (...) {
        std::fprintf(stderr, "[ocrnet plugins] %s: %s\n", op, message);
    }
}

std::string parseScale(char const* pluginName, nvinfer1::PluginFieldCollection const* fc, float fallback,
                       float& out) noexcept {
    try {
        float scale = fallback;
        if (fc != nullptr) {
            if (fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr)) {
                return std::string(pluginName) + ": malformed field collection";
            }
            for (int32_t i = 0; i < fc->nbFields; ++i) {
                nvinfer1::PluginField const& f = fc->fields[i];
                if (f.name == nullptr) continue;
                if (std::strcmp(f.name, kScaleField) != 0) {
                    log(nvinfer1::ILogger::Severity::kWARNING,
                        std::string(pluginName) + ": ignoring unknown field '" + f.name + "'");
                    continue;
                }
                if (f.type != nvinfer1::PluginFieldType::kFLOAT32 || f.length != 1 || f.data == nullptr) {
                    return std::string(pluginName) + ": field 'scale' must be one FLOAT32 (got type " +
                           std::to_string(static_cast<int>(f.type)) + ", length " + std::to_string(f.length) + ")";
                }
                std::memcpy(&scale, f.data, sizeof scale);
            }
        }
        // The same rule as ocr_params.cpp's validate(): a zero scale flattens the softmax to uniform weights,
        // which no exported model means.
        if (!std::isfinite(scale) || scale == 0.0f) {
            return std::string(pluginName) + ": field 'scale' must be finite and non-zero";
        }
        out = scale;
        return {};
    } catch (...) {
        return std::string("parsing fields failed");
    }
}

bool isSupportedLinear(nvinfer1::PluginTensorDesc const& d) noexcept {
    return d.format == nvinfer1::TensorFormat::kLINEAR &&
           (d.type == nvinfer1::DataType::kFLOAT || d.type == nvinfer1::DataType::kHALF);
}

std::string dimsToString(nvinfer1::Dims const& d) {
    std::string s = "[";
    for (int32_t i = 0; i < d.nbDims; ++i) s += (i ? "," : "") + std::to_string(d.d[i]);
    return s + "]";
}

}  // namespace plugin
}  // namespace ocrnet
