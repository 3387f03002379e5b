// A CPU emulation of the small part of CUDA the OCR kernels use, so their device code runs (slowly, but
// exactly as written) on a machine without a GPU: CI and any laptop. It is a test tool, not a backend.
//
// How it works. scripts/check-cuda-emu.sh compiles the kernel sources with g++ and this header
// force-included (-include), after rewriting each `kernel<<<grid, block, shmem, stream>>>(args)` into
// `cuda_emu::launch("kernel", cuda_emu::config(grid, block, shmem, stream), kernel, args)`.
// - Each block runs on its own: one OS thread per CUDA thread, so every thread has its own registers
//   (locals) and the kernels' loops run unchanged. Blocks run one after another, which is a legal CUDA
//   schedule, so `__shared__` can be a function-local `static` shared by the block's threads.
// - `__syncthreads()` is a barrier over the block's live threads (a thread that returned no longer counts,
//   as on sm_70+); `__shfl_xor_sync` exchanges through a per-warp slot array between two warp barriers, and
//   insists on a full mask and a full warp, as the kernels' reductions assume.
// - A barrier that is not reached by every live thread within a generous timeout (divergent
//   `__syncthreads`, a warp shuffle some lanes skip) stops the process with the kernel's name and block.
// - Launch configurations are checked the way the driver checks them (block ≤ 1024 threads, grid y/z ≤
//   65535, no empty dimension): a bad one sets the error cudaGetLastError returns, and nothing runs.
// - The runtime calls the tools make (cudaMalloc, cudaMemcpy, cudaMemset, ...) are plain host memory
//   (cuda_emu.cpp): "device" pointers are host pointers.
//
// What it cannot show: timing, memory coalescing, bank conflicts. Those need the GPU run (scripts/gpu-check.sh).
// A race the OS scheduler happens not to expose is ThreadSanitizer's to find: every barrier here is a mutex and a
// condition variable, which it understands (scripts/check-cuda-emu.sh with OCR_EMU_SANITIZE=thread).
#pragma once

#include <math.h>  // nvcc makes expf, fmaf, fmaxf, INFINITY visible to device code without an include

#include <cstddef>
#include <cstdint>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

// Under a host compiler cuda_runtime.h maps these to GCC attributes it does not know; here device code is
// plain host code.
#undef __global__
#undef __device__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace cuda_emu {

// What a running emulated thread sees as threadIdx, blockIdx, blockDim and gridDim.
struct ThreadIds {
    uint3 thread;
    uint3 block;
    dim3 blockDim;
    dim3 gridDim;
};

const ThreadIds& ids();
void syncThreads();
float shflXor(unsigned mask, float v, int laneMask);

struct Config {
    dim3 grid;
    dim3 block;
    size_t sharedBytes;
    cudaStream_t stream;
};

inline Config config(dim3 grid, dim3 block, size_t sharedBytes = 0, cudaStream_t stream = nullptr) {
    return {grid, block, sharedBytes, stream};
}

// Runs `body` once per thread of every block of `c`, as described above; a bad configuration is recorded
// for cudaGetLastError and runs nothing.
void runGrid(const char* kernel, const Config& c, const std::function<void()>& body);

// `kernel<<<c>>>(args...)`: kernel parameters are passed by value, so each thread gets its own copies.
template <typename... P, typename... A>
void launch(const char* name, const Config& c, void (*kernel)(P...), A&&... args) {
    const std::tuple<std::decay_t<P>...> params(static_cast<P>(std::forward<A>(args))...);
    runGrid(name, c, [&] {
        std::tuple<std::decay_t<P>...> mine = params;
        std::apply(kernel, mine);
    });
}

}  // namespace cuda_emu

#define threadIdx (::cuda_emu::ids().thread)
#define blockIdx (::cuda_emu::ids().block)
#define blockDim (::cuda_emu::ids().blockDim)
#define gridDim (::cuda_emu::ids().gridDim)
#define __syncthreads() ::cuda_emu::syncThreads()
#define __shfl_xor_sync(mask, v, laneMask) ::cuda_emu::shflXor((mask), (v), (laneMask))
