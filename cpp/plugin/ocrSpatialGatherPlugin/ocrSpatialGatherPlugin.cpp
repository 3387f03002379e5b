#include "ocrSpatialGatherPlugin.h"

#include <algorithm>
#include <exception>
#include <string>

#include "../../ocr/ocrGatherKernel.h"
#include "../common/ocrPluginCommon.h"

namespace ocrnet {
namespace plugin {
namespace {

constexpr char const* kName = "OcrSpatialGather";
constexpr float kDefaultScale = 1.0f;

}  // namespace

std::string gatherParamsFromDims(nvinfer1::Dims const& probs, nvinfer1::Dims const& feats, float scale,
                                 GatherParams& out) {
    if (probs.nbDims != 4 || feats.nbDims != 4) {
        return std::string(kName) + ": probs and feats must be 4-D NCHW, got " + dimsToString(probs) + " and " +
               dimsToString(feats);
    }
    if (probs.d[0] != feats.d[0] || probs.d[2] != feats.d[2] || probs.d[3] != feats.d[3]) {
        return std::string(kName) + ": probs " + dimsToString(probs) + " and feats " + dimsToString(feats) +
               " differ in N, H or W";
    }
    GatherParams p;
    p.n = probs.d[0];
    p.k = probs.d[1];
    p.c = feats.d[1];
    p.h = probs.d[2];
    p.w = probs.d[3];
    p.scale = scale;
    std::string err = validate(p);
    if (!err.empty()) return err;  // validate() names the op
    out = p;
    return {};
}

std::string gatherBoundFromProfile(nvinfer1::Dims const& probsMax, nvinfer1::Dims const& featsMax, float scale,
                                   GatherParams& out) {
    if (probsMax.nbDims != 4 || featsMax.nbDims != 4) {
        return std::string(kName) + ": probs and feats must be 4-D NCHW, got profile maxima " +
               dimsToString(probsMax) + " and " + dimsToString(featsMax);
    }
    // N, H and W are one value at run time (onShapeChange checks that), but the profile may carry them as
    // separate dimensions with their own maxima: the larger bounds both.
    nvinfer1::Dims probs = probsMax;
    nvinfer1::Dims feats = featsMax;
    for (int32_t i : {0, 2, 3}) probs.d[i] = feats.d[i] = std::max(probsMax.d[i], featsMax.d[i]);
    std::string err = gatherParamsFromDims(probs, feats, scale, out);
    if (!err.empty()) {
        return err + " (at the optimization profile's maximum shapes probs " + dimsToString(probsMax) + ", feats " +
               dimsToString(featsMax) + ")";
    }
    return {};
}

OcrSpatialGatherPlugin::OcrSpatialGatherPlugin(float scale) noexcept : mScale(scale) {}

OcrSpatialGatherPlugin::OcrSpatialGatherPlugin(OcrSpatialGatherPlugin const& other) noexcept
    : nvinfer1::IPluginV3(), nvinfer1::IPluginV3OneCore(), nvinfer1::IPluginV3OneBuild(),
      nvinfer1::IPluginV3OneRuntime(), mScale(other.mScale) {}

nvinfer1::IPluginCapability* OcrSpatialGatherPlugin::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept {
    switch (type) {
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* OcrSpatialGatherPlugin::clone() noexcept {
    try {
        return new OcrSpatialGatherPlugin(*this);
    } catch (std::exception const& e) {
        logError(std::string(kName) + ": clone failed: " + e.what());
    } catch (...) {
        logError(kName, "clone failed");
    }
    return nullptr;
}

char const* OcrSpatialGatherPlugin::getPluginName() const noexcept { return kName; }
char const* OcrSpatialGatherPlugin::getPluginVersion() const noexcept { return kPluginVersion; }
char const* OcrSpatialGatherPlugin::getPluginNamespace() const noexcept { return kPluginNamespace; }

int32_t OcrSpatialGatherPlugin::getNbOutputs() const noexcept { return 1; }

int32_t OcrSpatialGatherPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                                                   nvinfer1::DataType const* inputTypes,
                                                   int32_t nbInputs) const noexcept {
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != kNbInputs) {
        logError(kName, "getOutputDataTypes expects 2 inputs and 1 output");
        return -1;
    }
    // Both inputs share one type (supportsFormatCombination); the context is produced in it.
    outputTypes[kOut] = inputTypes[kFeats];
    return 0;
}

int32_t OcrSpatialGatherPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                                nvinfer1::DimsExprs const*, int32_t, nvinfer1::DimsExprs* outputs,
                                                int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept {
    if (inputs == nullptr || outputs == nullptr || nbInputs != kNbInputs || nbOutputs != 1 ||
        inputs[kProbs].nbDims != 4 || inputs[kFeats].nbDims != 4) {
        logError(kName, "getOutputShapes expects two 4-D inputs and one output");
        return -1;
    }
    // context [N, C, K, 1]: N from probs, C from feats, K from probs.
    nvinfer1::DimsExprs& o = outputs[kOut];
    o.nbDims = 4;
    o.d[0] = inputs[kProbs].d[0];
    o.d[1] = inputs[kFeats].d[1];
    o.d[2] = inputs[kProbs].d[1];
    o.d[3] = exprBuilder.constant(1);
    return o.d[3] != nullptr ? 0 : -1;
}

bool OcrSpatialGatherPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                                       int32_t nbInputs, int32_t nbOutputs) noexcept {
    if (inOut == nullptr || nbInputs != kNbInputs || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs) {
        return false;
    }
    // Linear FP32 or FP16, every tensor in the type of the first.
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    return isSupportedLinear(d) && (pos == 0 || d.type == inOut[0].desc.type);
}

int32_t OcrSpatialGatherPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                                nvinfer1::DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || nbInputs != kNbInputs || nbOutputs != 1) {
            logError(kName, "configurePlugin expects 2 inputs and 1 output");
            return -1;
        }
        // The profile's maximum shapes bound every shape TensorRT will run: a dynamic K beyond 64 or a corrupt
        // extent is refused here, at build time, rather than by every enqueue. Each real shape is checked
        // again in onShapeChange.
        GatherParams bound;
        std::string err = gatherBoundFromProfile(in[kProbs].max, in[kFeats].max, mScale, bound);
        if (!err.empty()) {
            logError(err);
            return -1;
        }
        return 0;
    } catch (...) {
        logError(kName, "configurePlugin failed");
        return -1;
    }
}

size_t OcrSpatialGatherPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                                nvinfer1::DynamicPluginTensorDesc const*, int32_t) const noexcept {
    try {
        if (inputs == nullptr || nbInputs != kNbInputs) {
            logError(kName, "getWorkspaceSize expects 2 inputs");
            return 0;
        }
        // The split-K partials grow with N, C, K and H*W: the profile's maximum bounds every shape it admits.
        GatherParams p;
        std::string err = gatherBoundFromProfile(inputs[kProbs].max, inputs[kFeats].max, mScale, p);
        if (!err.empty()) {
            // configurePlugin refused these shapes already; say why the workspace is empty anyway.
            logError(err);
            return 0;
        }
        return gatherWorkspaceSize(p);
    } catch (...) {
        logError(kName, "getWorkspaceSize failed");
        return 0;
    }
}

int32_t OcrSpatialGatherPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                              nvinfer1::PluginTensorDesc const*, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || nbInputs != kNbInputs || nbOutputs != 1) return -1;
        GatherParams p;
        std::string err = gatherParamsFromDims(in[kProbs].dims, in[kFeats].dims, mScale, p);
        if (!err.empty()) {
            logError(err);
            return -1;
        }
        return 0;
    } catch (...) {
        logError(kName, "onShapeChange failed");
        return -1;
    }
}

int32_t OcrSpatialGatherPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
                                        nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs,
                                        void* const* outputs, void* workspace, cudaStream_t stream) noexcept {
    try {
        if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) return -1;
        GatherParams p;
        std::string err = gatherParamsFromDims(inputDesc[kProbs].dims, inputDesc[kFeats].dims, mScale, p);
        if (!err.empty()) {
            logError(err);
            return -1;
        }
        // TensorRT gave at least getWorkspaceSize(max shapes) bytes, which covers this shape.
        const size_t ws = gatherWorkspaceSize(p);
        cudaError_t status = cudaErrorInvalidValue;
        if (inputDesc[kFeats].type == nvinfer1::DataType::kFLOAT) {
            status = launchGather<float>(p, static_cast<float const*>(inputs[kProbs]),
                                         static_cast<float const*>(inputs[kFeats]), static_cast<float*>(outputs[kOut]),
                                         workspace, ws, stream);
        } else if (inputDesc[kFeats].type == nvinfer1::DataType::kHALF) {
            status = launchGather<__half>(p, static_cast<__half const*>(inputs[kProbs]),
                                          static_cast<__half const*>(inputs[kFeats]),
                                          static_cast<__half*>(outputs[kOut]), workspace, ws, stream);
        }
        if (status != cudaSuccess) {
            logError(std::string(kName) + ": kernel launch failed: " + cudaGetErrorString(status));
            return -1;
        }
        return 0;
    } catch (...) {
        logError(kName, "enqueue failed");
        return -1;
    }
}

nvinfer1::IPluginV3* OcrSpatialGatherPlugin::attachToContext(nvinfer1::IPluginResourceContext*) noexcept {
    // No per-context resources: each execution context gets its own copy.
    return clone();
}

nvinfer1::PluginFieldCollection const* OcrSpatialGatherPlugin::getFieldsToSerialize() noexcept {
    try {
        mFields.clear();
        mFields.emplace_back(kScaleField, &mScale, nvinfer1::PluginFieldType::kFLOAT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
        return &mFieldCollection;
    } catch (...) {
        logError(kName, "getFieldsToSerialize failed");
        return nullptr;
    }
}

OcrSpatialGatherPluginCreator::OcrSpatialGatherPluginCreator() {
    // The one field list: the ONNX parser passes exactly these attributes, createPlugin parses them and
    // getFieldsToSerialize writes them back.
    mFields.emplace_back(kScaleField, nullptr, nvinfer1::PluginFieldType::kFLOAT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* OcrSpatialGatherPluginCreator::getPluginName() const noexcept { return kName; }
char const* OcrSpatialGatherPluginCreator::getPluginVersion() const noexcept { return kPluginVersion; }
char const* OcrSpatialGatherPluginCreator::getPluginNamespace() const noexcept { return kPluginNamespace; }
nvinfer1::PluginFieldCollection const* OcrSpatialGatherPluginCreator::getFieldNames() noexcept {
    return &mFieldCollection;
}

nvinfer1::IPluginV3* OcrSpatialGatherPluginCreator::createPlugin(char const* name,
                                                                 nvinfer1::PluginFieldCollection const* fc,
                                                                 nvinfer1::TensorRTPhase) noexcept {
    try {
        float scale = kDefaultScale;
        std::string err = parseScale(kName, fc, kDefaultScale, scale);
        if (!err.empty()) {
            logError(err + (name != nullptr ? std::string(" (layer ") + name + ")" : std::string()));
            return nullptr;
        }
        return new OcrSpatialGatherPlugin(scale);
    } catch (std::exception const& e) {
        logError(std::string(kName) + ": createPlugin failed: " + e.what());
    } catch (...) {
        logError(kName, "createPlugin failed");
    }
    return nullptr;
}

}  // namespace plugin
}  // namespace ocrnet
