// The plugin library's entry points. TensorRT loads libocrnet_plugins.so (trtexec --dynamicPlugins /
// --staticPlugins, IPluginRegistry::loadLibrary) and calls setLoggerFinder then getCreators; the Rust binary
// (feature `tensorrt`) links the same file and registers the creators itself.
#include <NvInferRuntime.h>

#include <cstdint>

#include "common/ocrPluginCommon.h"
#include "ocrPluginLibrary.h"
#include "ocrObjectAttentionPlugin/ocrObjectAttentionPlugin.h"
#include "ocrSpatialGatherPlugin/ocrSpatialGatherPlugin.h"

namespace ocrnet {
namespace plugin {

// Creators live for the whole process, as TensorRT expects; built on first use so loading the library runs
// no constructors that could fail.
nvinfer1::IPluginCreatorInterface* const* ocrCreators(int32_t& count) noexcept {
    try {
        static OcrSpatialGatherPluginCreator gather;
        static OcrObjectAttentionPluginCreator attention;
        static nvinfer1::IPluginCreatorInterface* const creators[] = {&gather, &attention};
        count = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
        return creators;
    } catch (...) {
        logError("creating the OCR plugin creators failed");
        count = 0;
        return nullptr;
    }
}

}  // namespace plugin
}  // namespace ocrnet

#define OCRNET_EXPORT __attribute__((visibility("default")))

extern "C" OCRNET_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
    ocrnet::plugin::setLoggerFinder(finder);
}

extern "C" OCRNET_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    return ocrnet::plugin::ocrCreators(nbCreators);
}
