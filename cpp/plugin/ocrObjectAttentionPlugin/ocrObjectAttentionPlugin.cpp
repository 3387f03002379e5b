#include "ocrObjectAttentionPlugin.h"

#include <algorithm>
#include <exception>
#include <string>

#include "../../ocr/ocrAttentionKernel.h"
#include "../common/ocrPluginCommon.h"

namespace ocrnet {
namespace plugin {
namespace {

constexpr char const* kName = "OcrObjectAttention";
constexpr float kDefaultScale = 1.0f;

}  // namespace

std::string attentionParamsFromDims(nvinfer1::Dims const& query, nvinfer1::Dims const& key, nvinfer1::Dims const& value,
                                    float scale, AttentionParams& out) {
    if (query.nbDims != 4 || key.nbDims != 4 || value.nbDims != 4) {
        return std::string(kName) + ": query, key and value must be 4-D, got " + dimsToString(query) + ", " +
               dimsToString(key) + " and " + dimsToString(value);
    }
    for (int32_t i = 0; i < 4; ++i) {
        if (key.d[i] != value.d[i]) {
            return std::string(kName) + ": key " + dimsToString(key) + " and value " + dimsToString(value) + " differ";
        }
    }
    if (key.d[0] != query.d[0] || key.d[1] != query.d[1] || key.d[3] != 1) {
        return std::string(kName) + ": key " + dimsToString(key) + " must be [N, Ck, K, 1] for query " +
               dimsToString(query);
    }
    AttentionParams p;
    p.n = query.d[0];
    p.ck = query.d[1];
    p.k = key.d[2];
    p.h = query.d[2];
    p.w = query.d[3];
    p.scale = scale;
    std::string err = validate(p);
    if (!err.empty()) return err;  // validate() names the op
    out = p;
    return {};
}

std::string attentionBoundFromProfile(nvinfer1::Dims const& queryMax, nvinfer1::Dims const& keyMax,
                                      nvinfer1::Dims const& valueMax, float scale, AttentionParams& out) {
    if (queryMax.nbDims != 4 || keyMax.nbDims != 4 || valueMax.nbDims != 4) {
        return std::string(kName) + ": query, key and value must be 4-D, got profile maxima " +
               dimsToString(queryMax) + ", " + dimsToString(keyMax) + " and " + dimsToString(valueMax);
    }
    // N and Ck (all three inputs) and K (key and value) are one value each at run time (onShapeChange checks
    // that), but the profile may carry them as separate dimensions with their own maxima: the largest bounds all.
    nvinfer1::Dims q = queryMax;
    nvinfer1::Dims k = keyMax;
    for (int32_t i : {0, 1}) q.d[i] = k.d[i] = std::max({queryMax.d[i], keyMax.d[i], valueMax.d[i]});
    k.d[2] = std::max(keyMax.d[2], valueMax.d[2]);
    k.d[3] = std::max(keyMax.d[3], valueMax.d[3]);
    std::string err = attentionParamsFromDims(q, k, k, scale, out);
    if (!err.empty()) {
        return err + " (at the optimization profile's maximum shapes query " + dimsToString(queryMax) + ", key " +
               dimsToString(keyMax) + ", value " + dimsToString(valueMax) + ")";
    }
    return {};
}

OcrObjectAttentionPlugin::OcrObjectAttentionPlugin(float scale) noexcept : mScale(scale) {}

OcrObjectAttentionPlugin::OcrObjectAttentionPlugin(OcrObjectAttentionPlugin const& other) noexcept
    : nvinfer1::IPluginV3(), nvinfer1::IPluginV3OneCore(), nvinfer1::IPluginV3OneBuild(),
      nvinfer1::IPluginV3OneRuntime(), mScale(other.mScale) {}

nvinfer1::IPluginCapability* OcrObjectAttentionPlugin::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept {
    switch (type) {
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* OcrObjectAttentionPlugin::clone() noexcept {
    try {
        return new OcrObjectAttentionPlugin(*this);
    } catch (std::exception const& e) {
        logError(std::string(kName) + ": clone failed: " + e.what());
    } catch (...) {
        logError(kName, "clone failed");
    }
    return nullptr;
}

char const* OcrObjectAttentionPlugin::getPluginName() const noexcept { return kName; }
char const* OcrObjectAttentionPlugin::getPluginVersion() const noexcept { return kPluginVersion; }
char const* OcrObjectAttentionPlugin::getPluginNamespace() const noexcept { return kPluginNamespace; }

int32_t OcrObjectAttentionPlugin::getNbOutputs() const noexcept { return 1; }

int32_t OcrObjectAttentionPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                                                   nvinfer1::DataType const* inputTypes,
                                                   int32_t nbInputs) const noexcept {
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != kNbInputs) {
        logError(kName, "getOutputDataTypes expects 3 inputs and 1 output");
        return -1;
    }
    // All inputs share one type (supportsFormatCombination); the context is produced in it.
    outputTypes[kOut] = inputTypes[kQuery];
    return 0;
}

int32_t OcrObjectAttentionPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                                nvinfer1::DimsExprs const*, int32_t, nvinfer1::DimsExprs* outputs,
                                                int32_t nbOutputs, nvinfer1::IExprBuilder&) noexcept {
    if (inputs == nullptr || outputs == nullptr || nbInputs != kNbInputs || nbOutputs != 1 ||
        inputs[kQuery].nbDims != 4) {
        logError(kName, "getOutputShapes expects a 4-D query and one output");
        return -1;
    }
    // The context has the query's shape [N, Ck, H, W].
    outputs[kOut] = inputs[kQuery];
    return 0;
}

bool OcrObjectAttentionPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                                       int32_t nbInputs, int32_t nbOutputs) noexcept {
    if (inOut == nullptr || nbInputs != kNbInputs || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs) {
        return false;
    }
    // Linear FP32 or FP16, every tensor in the type of the first.
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    return isSupportedLinear(d) && (pos == 0 || d.type == inOut[0].desc.type);
}

int32_t OcrObjectAttentionPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                                nvinfer1::DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || nbInputs != kNbInputs || nbOutputs != 1) {
            logError(kName, "configurePlugin expects 3 inputs and 1 output");
            return -1;
        }
        // The profile's maximum shapes bound every shape TensorRT will run: a dynamic K beyond 64 or a corrupt
        // extent is refused here, at build time, rather than by every enqueue. Each real shape is checked
        // again in onShapeChange.
        AttentionParams bound;
        std::string err =
            attentionBoundFromProfile(in[kQuery].max, in[kKey].max, in[kValue].max, mScale, bound);
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

size_t OcrObjectAttentionPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const*, int32_t,
                                                  nvinfer1::DynamicPluginTensorDesc const*, int32_t) const noexcept {
    return 0;  // one kernel, no scratch memory
}

int32_t OcrObjectAttentionPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                              nvinfer1::PluginTensorDesc const*, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || nbInputs != kNbInputs || nbOutputs != 1) return -1;
        AttentionParams p;
        std::string err = attentionParamsFromDims(in[kQuery].dims, in[kKey].dims, in[kValue].dims, mScale, p);
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

int32_t OcrObjectAttentionPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
                                        nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs,
                                        void* const* outputs, void*, cudaStream_t stream) noexcept {
    try {
        if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) return -1;
        AttentionParams p;
        std::string err = attentionParamsFromDims(inputDesc[kQuery].dims, inputDesc[kKey].dims, inputDesc[kValue].dims,
                                                  mScale, p);
        if (!err.empty()) {
            logError(err);
            return -1;
        }
        cudaError_t status = cudaErrorInvalidValue;
        if (inputDesc[kQuery].type == nvinfer1::DataType::kFLOAT) {
            status = launchAttention<float>(p, static_cast<float const*>(inputs[kQuery]),
                                            static_cast<float const*>(inputs[kKey]),
                                            static_cast<float const*>(inputs[kValue]),
                                            static_cast<float*>(outputs[kOut]), stream);
        } else if (inputDesc[kQuery].type == nvinfer1::DataType::kHALF) {
            status = launchAttention<__half>(p, static_cast<__half const*>(inputs[kQuery]),
                                             static_cast<__half const*>(inputs[kKey]),
                                             static_cast<__half const*>(inputs[kValue]),
                                             static_cast<__half*>(outputs[kOut]), stream);
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

nvinfer1::IPluginV3* OcrObjectAttentionPlugin::attachToContext(nvinfer1::IPluginResourceContext*) noexcept {
    // No per-context resources: each execution context gets its own copy.
    return clone();
}

nvinfer1::PluginFieldCollection const* OcrObjectAttentionPlugin::getFieldsToSerialize() noexcept {
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

OcrObjectAttentionPluginCreator::OcrObjectAttentionPluginCreator() {
    // The one field list: the ONNX parser passes exactly these attributes, createPlugin parses them and
    // getFieldsToSerialize writes them back.
    mFields.emplace_back(kScaleField, nullptr, nvinfer1::PluginFieldType::kFLOAT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* OcrObjectAttentionPluginCreator::getPluginName() const noexcept { return kName; }
char const* OcrObjectAttentionPluginCreator::getPluginVersion() const noexcept { return kPluginVersion; }
char const* OcrObjectAttentionPluginCreator::getPluginNamespace() const noexcept { return kPluginNamespace; }
nvinfer1::PluginFieldCollection const* OcrObjectAttentionPluginCreator::getFieldNames() noexcept {
    return &mFieldCollection;
}

nvinfer1::IPluginV3* OcrObjectAttentionPluginCreator::createPlugin(char const* name,
                                                                 nvinfer1::PluginFieldCollection const* fc,
                                                                 nvinfer1::TensorRTPhase) noexcept {
    try {
        float scale = kDefaultScale;
        std::string err = parseScale(kName, fc, kDefaultScale, scale);
        if (!err.empty()) {
            logError(err + (name != nullptr ? std::string(" (layer ") + name + ")" : std::string()));
            return nullptr;
        }
        return new OcrObjectAttentionPlugin(scale);
    } catch (std::exception const& e) {
        logError(std::string(kName) + ": createPlugin failed: " + e.what());
    } catch (...) {
        logError(kName, "createPlugin failed");
    }
    return nullptr;
}

}  // namespace plugin
}  // namespace ocrnet
