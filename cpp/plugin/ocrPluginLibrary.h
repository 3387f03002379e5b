// The plugin library's creators, for a program that links the plugins in and registers them itself
// (cpp/trt/trtCommon.cpp) instead of loading libocrnet_plugins.so through IPluginRegistry::loadLibrary.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>

namespace ocrnet {
namespace plugin {

// The OCR plugin creators (process lifetime); count receives their number. nullptr and 0 on failure.
nvinfer1::IPluginCreatorInterface* const* ocrCreators(int32_t& count) noexcept;

}  // namespace plugin
}  // namespace ocrnet
