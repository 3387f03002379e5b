// Shared by the OCR TensorRT plugins: the name/version/namespace triple, logging through the logger TensorRT
// hands the library (setLoggerFinder), the `scale` field, and tensor-description helpers. Host code only; the
// plugin classes use TensorRT interfaces and plain structs, so nothing here needs the TensorRT library.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>

namespace ocrnet {
namespace plugin {

constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "ocrnet";
constexpr char const* kScaleField = "scale";

// Logs through the logger found by setLoggerFinder, else to stderr. Never throws.
void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;
void logError(std::string const& message) noexcept;
// "<op>: <message>", the string built inside the function: for noexcept entry points that would otherwise
// build it where a std::bad_alloc would terminate the process.
void logError(char const* op, char const* message) noexcept;

// Remembered by the exported setLoggerFinder (ocrPluginLibrary.cpp).
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

// Reads the `scale` field from a field collection: absent keeps `fallback`, a wrong type or length or a
// non-finite value is an error (message returned, `out` untouched). Fields the op does not know are logged and
// ignored: the ONNX parser only passes the names getFieldNames lists, so they come from other callers.
std::string parseScale(char const* pluginName, nvinfer1::PluginFieldCollection const* fc, float fallback,
                       float& out) noexcept;

// True for the formats both ops run: linear (NCHW) FP32 or FP16.
bool isSupportedLinear(nvinfer1::PluginTensorDesc const& d) noexcept;

// "[1,19,64,128]" for messages.
std::string dimsToString(nvinfer1::Dims const& d);

}  // namespace plugin
}  // namespace ocrnet
