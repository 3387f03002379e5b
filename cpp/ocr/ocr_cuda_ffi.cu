// extern "C" wrappers over the kernel launchers for the Rust crate; see ocr_cuda_ffi.h.
#include "ocr_cuda_ffi.h"

#include "ocrAttentionKernel.h"
#include "ocrGatherKernel.h"

namespace {

ocrnet::GatherParams toParams(const OcrnetGatherSizes& s) {
    ocrnet::GatherParams p;
    p.n = s.n;
    p.k = s.k;
    p.c = s.c;
    p.h = s.h;
    p.w = s.w;
    p.scale = s.scale;
    return p;
}

ocrnet::AttentionParams toParams(const OcrnetAttentionSizes& s) {
    ocrnet::AttentionParams p;
    p.n = s.n;
    p.ck = s.ck;
    p.k = s.k;
    p.h = s.h;
    p.w = s.w;
    p.scale = s.scale;
    return p;
}

// validate() builds a std::string: nothing may throw into Rust, so allocation failure becomes an error code.
template <typename F>
int guarded(F&& f) noexcept {
    try {
        return static_cast<int>(f());
    } catch (...) {
        return static_cast<int>(cudaErrorMemoryAllocation);
    }
}

}  // namespace

extern "C" size_t ocrnet_cuda_gather_workspace_size(const OcrnetGatherSizes* s) {
    try {
        if (s == nullptr) return 0;
        const ocrnet::GatherParams p = toParams(*s);
        return ocrnet::validate(p).empty() ? ocrnet::gatherWorkspaceSize(p) : 0;
    } catch (...) {
        return 0;
    }
}

extern "C" int ocrnet_cuda_gather_f32(const OcrnetGatherSizes* s, const float* probs, const float* feats, float* out,
                                      void* workspace, size_t workspace_bytes, void* stream) {
    return guarded([&] {
        return s == nullptr ? cudaErrorInvalidValue
                            : ocrnet::launchGather<float>(toParams(*s), probs, feats, out, workspace, workspace_bytes,
                                                          static_cast<cudaStream_t>(stream));
    });
}

extern "C" int ocrnet_cuda_gather_f16(const OcrnetGatherSizes* s, const uint16_t* probs, const uint16_t* feats,
                                      uint16_t* out, void* workspace, size_t workspace_bytes, void* stream) {
    return guarded([&] {
        return s == nullptr ? cudaErrorInvalidValue
                            : ocrnet::launchGather<__half>(toParams(*s), reinterpret_cast<const __half*>(probs),
                                                           reinterpret_cast<const __half*>(feats),
                                                           reinterpret_cast<__half*>(out), workspace, workspace_bytes,
                                                           static_cast<cudaStream_t>(stream));
    });
}

extern "C" int ocrnet_cuda_attention_f32(const OcrnetAttentionSizes* s, const float* query, const float* key,
                                         const float* value, float* out, void* stream) {
    return guarded([&] {
        return s == nullptr ? cudaErrorInvalidValue
                            : ocrnet::launchAttention<float>(toParams(*s), query, key, value, out,
                                                             static_cast<cudaStream_t>(stream));
    });
}

extern "C" int ocrnet_cuda_attention_f16(const OcrnetAttentionSizes* s, const uint16_t* query, const uint16_t* key,
                                         const uint16_t* value, uint16_t* out, void* stream) {
    return guarded([&] {
        return s == nullptr ? cudaErrorInvalidValue
                            : ocrnet::launchAttention<__half>(
                                  toParams(*s), reinterpret_cast<const __half*>(query),
                                  reinterpret_cast<const __half*>(key), reinterpret_cast<const __half*>(value),
                                  reinterpret_cast<__half*>(out), static_cast<cudaStream_t>(stream));
    });
}

extern "C" const char* ocrnet_cuda_error_string(int code) {
    return cudaGetErrorString(static_cast<cudaError_t>(code));
}
