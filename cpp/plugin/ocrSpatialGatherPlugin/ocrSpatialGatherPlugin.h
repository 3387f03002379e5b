// TensorRT IPluginV3 for OcrSpatialGather: probs [N, K, H, W] + feats [N, C, H, W] -> context [N, C, K, 1].
// Kernels: cpp/ocr/ocrGatherKernel.h. Fields: `scale` (FLOAT32, default 1). See cpp/plugin/README.md.
#pragma once

#include <NvInferRuntime.h>

#include <vector>

#include "../../ocr/ocr_params.h"

namespace ocrnet {
namespace plugin {

class OcrSpatialGatherPlugin : public nvinfer1::IPluginV3,
                               public nvinfer1::IPluginV3OneCore,
                               public nvinfer1::IPluginV3OneBuild,
                               public nvinfer1::IPluginV3OneRuntime {
public:
    // Named input/output indices instead of bare numbers.
    static constexpr int32_t kProbs = 0;
    static constexpr int32_t kFeats = 1;
    static constexpr int32_t kNbInputs = 2;
    static constexpr int32_t kOut = 0;

    explicit OcrSpatialGatherPlugin(float scale) noexcept;
    OcrSpatialGatherPlugin(OcrSpatialGatherPlugin const& other) noexcept;
    ~OcrSpatialGatherPlugin() override = default;

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

class OcrSpatialGatherPluginCreator : public nvinfer1::IPluginCreatorV3One {
public:
    OcrSpatialGatherPluginCreator();
    ~OcrSpatialGatherPluginCreator() override = default;

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

// Sizes from the two input descriptors, or a message naming what is wrong with them (empty on success).
std::string gatherParamsFromDims(nvinfer1::Dims const& probs, nvinfer1::Dims const& feats, float scale,
                                 GatherParams& out);

// The largest sizes the optimization profile admits (DynamicPluginTensorDesc::max of both inputs), validated:
// what configurePlugin checks and getWorkspaceSize sizes the workspace for.
std::string gatherBoundFromProfile(nvinfer1::Dims const& probsMax, nvinfer1::Dims const& featsMax, float scale,
                                   GatherParams& out);

}  // namespace plugin
}  // namespace ocrnet
