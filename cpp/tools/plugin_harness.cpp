// Plugin harness: loads libocrnet_plugins.so with dlopen and checks it the way TensorRT will use it, without
// the TensorRT library (the plugin classes use only interfaces and plain structs).
//
// Host checks (any machine): getCreators gives both creators with the exact name/version/namespace the ONNX
// node must carry; each plugin is created from a field collection, its fields round-trip through
// getFieldsToSerialize into a second instance; bad fields are refused without throwing; supportsFormatCombination,
// getOutputDataTypes and getOutputShapes (through a small fake IExprBuilder) give the expected answers.
// GPU checks (when a CUDA device is present): the plugin's own enqueue on device buffers, FP32 and FP16, against
// the C++ reference. Without a device they are reported as skipped. Built against the CPU emulation of CUDA
// (cpp/tools/cuda_emu, with a library whose kernels are emulated too) the enqueue checks run on the CPU.
//
//   plugin_harness path/to/libocrnet_plugins.so        exit 0 all passed, 1 a failure
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "../ocr/ocr_reference.h"
#include "ocr_test_util.h"

namespace {

using namespace nvinfer1;
using namespace ocrtools;

int g_passed = 0, g_failed = 0;

void check(bool ok, std::string const& what) {
    (ok ? g_passed : g_failed)++;
    std::printf("%-5s %s\n", ok ? "ok" : "FAIL", what.c_str());
}

// Counts the library's log messages, so the harness can tell that setLoggerFinder is honoured.
class CountingLogger : public ILogger {
public:
    int errors = 0;
    std::string last;  // the last error
    void log(Severity severity, AsciiChar const* msg) noexcept override {
        if (severity <= Severity::kERROR) {
            ++errors;
            try {
                last = msg;
            } catch (...) {
            }
        }
        std::printf("      [plugin log %d] %s\n", static_cast<int>(severity), msg);
    }
};

class Finder : public ILoggerFinder {
public:
    explicit Finder(ILogger* l) : mLogger(l) {}
    ILogger* findLogger() override { return mLogger; }

private:
    ILogger* mLogger;
};

// A minimal IExprBuilder: constants only (all our plugins ask for), plus operations folded on constants.
class FakeExpr : public IDimensionExpr {
    struct Impl : apiv::VDimensionExpr {
        int64_t value = 0;
        bool isConstant() const override { return true; }
        int64_t getConstantValue() const override { return value; }
        bool isSizeTensor() const override { return false; }
    } mSelf;

public:
    explicit FakeExpr(int64_t v) {
        mSelf.value = v;
        mImpl = &mSelf;
    }
    ~FakeExpr() noexcept override = default;
};

class FakeBuilder : public IExprBuilder {
    struct Impl : apiv::VExprBuilder {
        std::deque<FakeExpr> exprs;
        IDimensionExpr const* constant(int64_t v) override { return &exprs.emplace_back(v); }
        IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a,
                                        IDimensionExpr const& b) override {
            const int64_t x = a.getConstantValue(), y = b.getConstantValue();
            switch (op) {
                case DimensionOperation::kSUM: return constant(x + y);
                case DimensionOperation::kPROD: return constant(x * y);
                case DimensionOperation::kMAX: return constant(x > y ? x : y);
                case DimensionOperation::kMIN: return constant(x < y ? x : y);
                case DimensionOperation::kSUB: return constant(x - y);
                default: return nullptr;
            }
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
            return nullptr;
        }
    } mSelf;

public:
    FakeBuilder() { mImpl = &mSelf; }
    ~FakeBuilder() noexcept override = default;
};

DimsExprs exprsOf(FakeBuilder& b, std::vector<int64_t> const& d) {
    DimsExprs e{};
    e.nbDims = static_cast<int32_t>(d.size());
    for (size_t i = 0; i < d.size(); ++i) e.d[i] = b.constant(d[i]);
    return e;
}

Dims dimsOf(std::vector<int64_t> const& d) {
    Dims r{};
    r.nbDims = static_cast<int32_t>(d.size());
    for (size_t i = 0; i < d.size(); ++i) r.d[i] = d[i];
    return r;
}

DynamicPluginTensorDesc dyn(std::vector<int64_t> const& d, DataType t, TensorFormat f = TensorFormat::kLINEAR) {
    DynamicPluginTensorDesc x{};
    x.desc.dims = dimsOf(d);
    x.desc.type = t;
    x.desc.format = f;
    x.desc.scale = 1.0f;
    x.min = x.opt = x.max = x.desc.dims;
    return x;
}

struct OpCase {
    char const* name;
    std::vector<std::vector<int64_t>> inputs;
    std::vector<int64_t> output;
};

float serializedScale(IPluginV3* plugin) {
    auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fc = rt != nullptr ? rt->getFieldsToSerialize() : nullptr;
    if (fc == nullptr) return NAN;
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        PluginField const& f = fc->fields[i];
        if (std::strcmp(f.name, "scale") == 0 && f.type == PluginFieldType::kFLOAT32 && f.length == 1) {
            float v;
            std::memcpy(&v, f.data, sizeof v);
            return v;
        }
    }
    return NAN;
}

// Where an op's inputs carry K: gather's probs [N, K, H, W] (dimension 1), attention's key and value
// [N, Ck, K, 1] (dimension 2).
std::vector<std::pair<size_t, int32_t>> regionDims(OpCase const& op) {
    if (std::strcmp(op.name, "OcrSpatialGather") == 0) return {{0, 1}};
    return {{1, 2}, {2, 2}};
}

// As TensorRT describes a dynamic-shape build: N, K and (where an input has them) H and W unknown (-1) in
// desc, the profile's maximum larger than the shape that will run. Channels stay static, as in the models.
void makeDynamic(OpCase const& op, std::vector<DynamicPluginTensorDesc>& in) {
    std::vector<std::pair<size_t, int32_t>> dims = regionDims(op);
    for (size_t i = 0; i < in.size(); ++i) {
        dims.push_back({i, 0});
        if (in[i].desc.dims.d[3] != 1) {  // not a [N, Ck, K, 1] key or value
            dims.push_back({i, 2});
            dims.push_back({i, 3});
        }
    }
    for (auto [i, d] : dims) {
        in[i].max.d[d] = in[i].desc.dims.d[d] + (d == 0 ? 1 : 5);
        in[i].desc.dims.d[d] = -1;
    }
}

// The plugin's own enqueue on device buffers against the C++ reference. With `dynamic`, configurePlugin and
// getWorkspaceSize see a dynamic profile whose maximum exceeds the shape enqueued.
template <typename T>
void enqueueCheck(IPluginV3* plugin, OpCase const& op, DataType type, bool dynamic) {
    const bool half = type == DataType::kHALF;
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    const float scale = serializedScale(plugin);
    std::vector<std::vector<float>> host;
    std::vector<PluginTensorDesc> in;
    std::vector<DynamicPluginTensorDesc> dynIn;
    uint32_t seed = half ? 500 : 400;
    for (auto const& d : op.inputs) {
        size_t count = 1;
        for (int64_t x : d) count *= static_cast<size_t>(x);
        host.push_back(randomTensor(count, seed++, 2.0f));
        if (half) roundToHalf(host.back());
        dynIn.push_back(dyn(d, type));
        in.push_back(dynIn.back().desc);
    }
    DynamicPluginTensorDesc dynOut = dyn(op.output, type);
    PluginTensorDesc out = dynOut.desc;
    size_t outCount = 1;
    for (int64_t x : op.output) outCount *= static_cast<size_t>(x);
    std::vector<float> want(outCount);
    if (std::strcmp(op.name, "OcrSpatialGather") == 0) {
        auto const& p = op.inputs[0];
        ocrnet::GatherParams g{p[0], p[1], op.inputs[1][1], p[2], p[3], scale};
        ocrnet::gatherReference(g, host[0].data(), host[1].data(), want.data());
    } else {
        auto const& q = op.inputs[0];
        ocrnet::AttentionParams a{q[0], q[1], op.inputs[1][2], q[2], q[3], scale};
        ocrnet::attentionReference(a, host[0].data(), host[1].data(), host[2].data(), want.data());
    }
    const int32_t nbIn = static_cast<int32_t>(in.size());
    if (dynamic) makeDynamic(op, dynIn);
    bool ok = build->configurePlugin(dynIn.data(), nbIn, &dynOut, 1) == 0 && rt->onShapeChange(in.data(), nbIn, &out, 1) == 0;
    const size_t wsBytes = build->getWorkspaceSize(dynIn.data(), nbIn, &dynOut, 1);
    const bool gather = std::strcmp(op.name, "OcrSpatialGather") == 0;
    if (gather) ok = ok && wsBytes > 0;
    DeviceBuffer<unsigned char> ws(wsBytes);
    ws.poison();
    std::vector<DeviceBuffer<T>*> bufs;
    std::vector<void const*> inPtrs;
    for (auto const& h : host) {
        bufs.push_back(new DeviceBuffer<T>(h.size()));
        if constexpr (sizeof(T) == 2) bufs.back()->upload(toHalf(h)); else bufs.back()->upload(h);
        inPtrs.push_back(bufs.back()->ptr);
    }
    DeviceBuffer<T> dOut(outCount);
    dOut.poison();
    void* outPtrs[] = {dOut.ptr};
    ok = ok && rt->enqueue(in.data(), &out, inPtrs.data(), outPtrs, ws.ptr, nullptr) == 0;
    OCR_CHECK_CUDA(cudaDeviceSynchronize());
    std::vector<float> got;
    if constexpr (sizeof(T) == 2) got = toFloat(dOut.download()); else got = dOut.download();
    const double err = relL2(got, want);
    const double tol = half ? 2e-3 : 1e-5;
    for (auto* b : bufs) delete b;
    char msg[160];
    std::snprintf(msg, sizeof msg, "%s enqueue %s%s vs C++ reference: rel_l2 %.3e (tol %.0e)", op.name,
                  half ? "f16" : "f32", dynamic ? " (dynamic profile, workspace from its maximum)" : "", err, tol);
    check(ok && err <= tol, msg);
}

void checkCreator(IPluginCreatorV3One* creator, OpCase const& op, CountingLogger& logger) {
    const std::string name = op.name;
    check(std::strcmp(creator->getPluginVersion(), "1") == 0 && std::strcmp(creator->getPluginNamespace(), "ocrnet") == 0,
          name + ": creator version \"1\", namespace \"ocrnet\"");
    PluginFieldCollection const* names = creator->getFieldNames();
    check(names != nullptr && names->nbFields == 1 && std::strcmp(names->fields[0].name, "scale") == 0 &&
              names->fields[0].type == PluginFieldType::kFLOAT32,
          name + ": field list is exactly {scale: FLOAT32}");

    const float scale = 0.37f;
    PluginField f("scale", &scale, PluginFieldType::kFLOAT32, 1);
    PluginFieldCollection fc{1, &f};
    IPluginV3* plugin = creator->createPlugin("layer", &fc, TensorRTPhase::kBUILD);
    check(plugin != nullptr, name + ": createPlugin from {scale: 0.37}");
    if (plugin == nullptr) return;
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    check(core != nullptr && name == core->getPluginName() && std::strcmp(core->getPluginVersion(), "1") == 0 &&
              std::strcmp(core->getPluginNamespace(), "ocrnet") == 0,
          name + ": plugin reports the same name/version/namespace");

    // Round trip: the serialized fields make a second instance that serializes the same.
    auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    IPluginV3* second = rt != nullptr ? creator->createPlugin("layer", rt->getFieldsToSerialize(), TensorRTPhase::kRUNTIME)
                                      : nullptr;
    check(second != nullptr && serializedScale(plugin) == scale && serializedScale(second) == scale,
          name + ": fields round-trip through getFieldsToSerialize");
    IPluginV3* attached = rt != nullptr ? rt->attachToContext(nullptr) : nullptr;
    check(attached != nullptr && attached != plugin && serializedScale(attached) == scale,
          name + ": attachToContext gives a separate clone");
    delete attached;

    PluginFieldCollection empty{0, nullptr};
    IPluginV3* byDefault = creator->createPlugin("layer", &empty, TensorRTPhase::kBUILD);
    check(byDefault != nullptr && serializedScale(byDefault) == 1.0f, name + ": scale defaults to 1");
    delete byDefault;
    const int32_t wrong = 3;
    PluginField bad("scale", &wrong, PluginFieldType::kINT32, 1);
    PluginFieldCollection badFc{1, &bad};
    const int errorsBefore = logger.errors;
    IPluginV3* refused = creator->createPlugin("layer", &badFc, TensorRTPhase::kBUILD);
    check(refused == nullptr && logger.errors > errorsBefore,
          name + ": INT32 scale refused, error logged through setLoggerFinder's logger");
    delete refused;

    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    const int32_t nbIn = static_cast<int32_t>(op.inputs.size());
    check(build != nullptr && build->getNbOutputs() == 1, name + ": one output");
    if (build == nullptr) return;
    for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
        std::vector<DataType> types(nbIn, t);
        DataType outType = DataType::kINT8;
        check(build->getOutputDataTypes(&outType, 1, types.data(), nbIn) == 0 && outType == t,
              name + ": getOutputDataTypes keeps " + (t == DataType::kFLOAT ? "FLOAT" : "HALF"));
    }
    auto combo = [&](DataType first, DataType rest, TensorFormat fmt) {
        std::vector<DynamicPluginTensorDesc> io;
        for (auto const& d : op.inputs) io.push_back(dyn(d, io.empty() ? first : rest, fmt));
        io.push_back(dyn(op.output, rest, fmt));
        bool all = true;
        for (int32_t pos = 0; pos < nbIn + 1; ++pos) all = all && build->supportsFormatCombination(pos, io.data(), nbIn, 1);
        return all;
    };
    check(combo(DataType::kFLOAT, DataType::kFLOAT, TensorFormat::kLINEAR), name + ": accepts linear FP32");
    check(combo(DataType::kHALF, DataType::kHALF, TensorFormat::kLINEAR), name + ": accepts linear FP16");
    check(!combo(DataType::kFLOAT, DataType::kHALF, TensorFormat::kLINEAR), name + ": refuses mixed FP32/FP16");
    check(!combo(DataType::kINT8, DataType::kINT8, TensorFormat::kLINEAR), name + ": refuses INT8");
    check(!combo(DataType::kHALF, DataType::kHALF, TensorFormat::kCHW2), name + ": refuses CHW2");

    FakeBuilder eb;
    std::vector<DimsExprs> inExprs;
    for (auto const& d : op.inputs) inExprs.push_back(exprsOf(eb, d));
    DimsExprs outExprs{};
    bool shapeOk = build->getOutputShapes(inExprs.data(), nbIn, nullptr, 0, &outExprs, 1, eb) == 0 &&
                   outExprs.nbDims == static_cast<int32_t>(op.output.size());
    for (int32_t i = 0; shapeOk && i < outExprs.nbDims; ++i) {
        shapeOk = outExprs.d[i] != nullptr && outExprs.d[i]->getConstantValue() == op.output[i];
    }
    check(shapeOk, name + ": getOutputShapes (fake IExprBuilder)");

    // A profile admitting K up to 80 is refused at configure time, naming K and the profile; up to 64 is not.
    for (int64_t maxK : {int64_t{80}, int64_t{64}}) {
        std::vector<DynamicPluginTensorDesc> io;
        for (auto const& d : op.inputs) io.push_back(dyn(d, DataType::kFLOAT));
        for (auto [input, dim] : regionDims(op)) {
            io[input].desc.dims.d[dim] = -1;
            io[input].max.d[dim] = maxK;
        }
        DynamicPluginTensorDesc o = dyn(op.output, DataType::kFLOAT);
        const int before = logger.errors;
        const int32_t rc = build->configurePlugin(io.data(), nbIn, &o, 1);
        if (maxK > 64) {
            check(rc != 0 && logger.errors > before &&
                      logger.last.find("K = 80") != std::string::npos &&
                      logger.last.find("profile") != std::string::npos,
                  name + ": configurePlugin refuses a profile with K up to 80 (" + logger.last + ")");
        } else {
            check(rc == 0 && logger.errors == before, name + ": configurePlugin accepts a profile with K up to 64");
        }
    }

    if (haveCudaDevice()) {
        for (bool dynamic : {false, true}) {
            enqueueCheck<float>(plugin, op, DataType::kFLOAT, dynamic);
            enqueueCheck<__half>(plugin, op, DataType::kHALF, dynamic);
        }
    } else {
        std::printf("skip  %s: enqueue (no CUDA device)\n", op.name);
    }
    delete second;
    delete plugin;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s path/to/libocrnet_plugins.so\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        std::fprintf(stderr, "dlopen %s: %s\n", argv[1], dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto setFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    check(getCreators != nullptr && setFinder != nullptr, "library exports getCreators and setLoggerFinder");
    if (getCreators == nullptr || setFinder == nullptr) return 1;
    CountingLogger logger;
    Finder finder(&logger);
    setFinder(&finder);

    int32_t count = 0;
    IPluginCreatorInterface* const* creators = getCreators(count);
    check(creators != nullptr && count == 2, "getCreators gives 2 creators");
    // Odd sizes, K = 19, N = 2.
    const OpCase cases[] = {
        {"OcrSpatialGather", {{2, 19, 13, 29}, {2, 37, 13, 29}}, {2, 37, 19, 1}},
        {"OcrObjectAttention", {{2, 37, 13, 29}, {2, 37, 19, 1}, {2, 37, 19, 1}}, {2, 37, 13, 29}},
    };
    for (OpCase const& op : cases) {
        IPluginCreatorV3One* found = nullptr;
        for (int32_t i = 0; creators != nullptr && i < count; ++i) {
            // TensorRT tells creator kinds apart by interface info, then casts; so does the harness.
            InterfaceInfo info = creators[i]->getInterfaceInfo();
            if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") != 0) continue;
            auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
            if (std::strcmp(c->getPluginName(), op.name) == 0) found = c;
        }
        check(found != nullptr, std::string("creator ") + op.name + " (IPluginCreatorV3One)");
        if (found != nullptr) checkCreator(found, op, logger);
    }
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
