// TensorRT IPluginV3 for OcrObjectAttention: query [N, Ck, H, W] + key [N, Ck, K, 1] + value [N, Ck, K, 1] ->
// context [N, Ck, H, W]. Kernel: cpp/ocr/ocrAttentionKernel.h. Fields: `scale` (FLOAT32, default 1; HRNet-OCR
// uses Ck^-0.5). See cpp/plugin/README.md.
#pragma once

#include <NvInferRuntime.h>

#include <vector>

#include "../../ocr/ocr_params.h"

namespace ocrnet {
namespace plugin {

class OcrObjectAttentionPlugin : public nvinfer1::IPluginV3,
                               public nvinfer1::IPluginV3OneCore,
                               public nvinfer1::IPluginV3OneBuild,
                               public nvinfer1::IPluginV3OneRuntime {
public:
    // Named input/output indices instead of bare numbers.
    static constexpr int32_t kQuery = 0;
    static constexpr int32_t kKey = 1;
    static constexpr int32_t kValue = 2;
    static constexpr int32_t kNbInputs = 3;
    static constexpr int32_t kOut = 0;

    explicit OcrObjectAttentionPlugin(float scale) noexcept;
    OcrObjectAttentionPlugin(OcrObjectAttentionPlugin const& other) noexcept;
    ~OcrObjectAttentionPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                               int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                            int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                            nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                          int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    float scale() const noexcept { return mScale; }

private:
    float mScale;
    // getFieldsToSerialize points into this object, so a clone rebuilds its own list.
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class OcrObjectAttentionPluginCreator : public nvinfer1::IPluginCreatorV3One {
public:
    OcrObjectAttentionPluginCreator();
    ~OcrObjectAttentionPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                      nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

// Sizes from the three input descriptors, or a message naming what is wrong with them (empty on success).
std::string attentionParamsFromDims(nvinfer1::Dims const& query, nvinfer1::Dims const& key, nvinfer1::Dims const& value,
                                    float scale, AttentionParams& out);

// The largest sizes the optimization profile admits (DynamicPluginTensorDesc::max of the inputs), validated:
// what configurePlugin checks.
std::string attentionBoundFromProfile(nvinfer1::Dims const& queryMax, nvinfer1::Dims const& keyMax,
                                      nvinfer1::Dims const& valueMax, float scale, AttentionParams& out);

}  // namespace plugin
}  // namespace ocrnet
