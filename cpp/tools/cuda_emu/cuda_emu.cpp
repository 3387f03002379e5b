// The CPU emulation's runtime: grid execution, barriers, warp shuffles, and the few CUDA runtime calls the
// tools make, on host memory. See cuda_emu.h for the model and its limits.
#include "cuda_emu.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cuda_emu {
namespace {

constexpr int kWarp = 32;
// Far longer than any legitimate wait (hundreds of threads on two cores), short enough for CI to report.
constexpr std::chrono::seconds kDeadlock(120);

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "cuda_emu: %s\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

// A reusable barrier whose party can shrink: a thread that returns from the kernel drops out, so the
// others' later barriers wait only for threads still running.
class Barrier {
public:
    explicit Barrier(int parties) : mParties(parties) {}

    void arriveAndWait(const char* what) {
        std::unique_lock<std::mutex> lock(mMutex);
        const uint64_t generation = mGeneration;
        if (++mArrived == mParties) {
            release();
            return;
        }
        if (!mCv.wait_for(lock, kDeadlock, [&] { return mGeneration != generation; })) die(what);
    }

    void drop() {
        std::lock_guard<std::mutex> lock(mMutex);
        --mParties;
        if (mArrived > 0 && mArrived == mParties) release();
    }

private:
    void release() {
        mArrived = 0;
        ++mGeneration;
        mCv.notify_all();
    }

    std::mutex mMutex;
    std::condition_variable mCv;
    int mParties;
    int mArrived = 0;
    uint64_t mGeneration = 0;
};

struct Warp {
    explicit Warp(int lanes) : lanes(lanes), barrier(lanes) {}
    int lanes;
    Barrier barrier;
    float slots[kWarp] = {};
};

struct Block {
    Block(const char* kernel, uint3 id, int threads) : kernel(kernel), id(id), barrier(threads) {
        for (int first = 0; first < threads; first += kWarp)
            warps.push_back(std::make_unique<Warp>(threads - first < kWarp ? threads - first : kWarp));
    }
    std::string where() const {
        return std::string(kernel) + " block (" + std::to_string(id.x) + "," + std::to_string(id.y) + "," +
               std::to_string(id.z) + ")";
    }
    const char* kernel;
    uint3 id;
    Barrier barrier;
    std::vector<std::unique_ptr<Warp>> warps;
};

struct Current {
    ThreadIds ids;
    Block* block = nullptr;
    int linear = 0;
};

thread_local Current tCurrent;
cudaError_t gLastError = cudaSuccess;

Current& current() {
    if (tCurrent.block == nullptr) die("device code called outside an emulated kernel launch");
    return tCurrent;
}

void setError(cudaError_t e) {
    if (gLastError == cudaSuccess) gLastError = e;
}

}  // namespace

const ThreadIds& ids() { return current().ids; }

void syncThreads() {
    Current& c = current();
    const std::string what = "__syncthreads not reached by every live thread of " + c.block->where();
    c.block->barrier.arriveAndWait(what.c_str());
}

float shflXor(unsigned mask, float v, int laneMask) {
    Current& c = current();
    Warp& w = *c.block->warps[c.linear / kWarp];
    const int lane = c.linear % kWarp;
    if (mask != 0xffffffffu || w.lanes != kWarp || laneMask < 0 || laneMask >= kWarp)
        die("__shfl_xor_sync needs a full mask and a full warp in " + c.block->where());
    const std::string what = "__shfl_xor_sync not reached by every lane of a warp in " + c.block->where();
    w.slots[lane] = v;
    w.barrier.arriveAndWait(what.c_str());
    const float other = w.slots[lane ^ laneMask];
    // Nobody may overwrite a slot before every lane has read it.
    w.barrier.arriveAndWait(what.c_str());
    return other;
}

void runGrid(const char* kernel, const Config& c, const std::function<void()>& body) {
    const uint64_t threads = uint64_t{c.block.x} * c.block.y * c.block.z;
    if (threads == 0 || threads > 1024 || c.block.z > 64 || c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 ||
        c.grid.y > 65535 || c.grid.z > 65535) {
        setError(cudaErrorInvalidConfiguration);
        return;
    }
    // The kernels keep their shared memory in statics (`__shared__`), so only dynamic shared memory would
    // need room here, and none of them asks for it.
    if (c.sharedBytes != 0) {
        setError(cudaErrorInvalidValue);
        return;
    }
    const int n = static_cast<int>(threads);
    for (unsigned z = 0; z < c.grid.z; ++z)
        for (unsigned y = 0; y < c.grid.y; ++y)
            for (unsigned x = 0; x < c.grid.x; ++x) {
                Block block(kernel, uint3{x, y, z}, n);
                std::vector<std::thread> pool;
                pool.reserve(n);
                for (int t = 0; t < n; ++t) {
                    pool.emplace_back([&, t] {
                        const unsigned tx = t % c.block.x, ty = t / c.block.x % c.block.y,
                                       tz = t / (c.block.x * c.block.y);
                        tCurrent = Current{ThreadIds{uint3{tx, ty, tz}, uint3{x, y, z}, c.block, c.grid}, &block, t};
                        body();
                        block.warps[t / kWarp]->barrier.drop();
                        block.barrier.drop();
                        tCurrent = Current{};
                    });
                }
                for (std::thread& t : pool) t.join();
            }
}

}  // namespace cuda_emu

// The runtime calls of the tools, on host memory. Declared by cuda_runtime_api.h.
extern "C" {

cudaError_t CUDARTAPI cudaGetLastError(void) {
    const cudaError_t e = cuda_emu::gLastError;
    cuda_emu::gLastError = cudaSuccess;
    return e;
}

cudaError_t CUDARTAPI cudaPeekAtLastError(void) { return cuda_emu::gLastError; }

const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error (cuda_emu)";
    case cudaErrorInvalidValue: return "invalid argument (cuda_emu)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (cuda_emu)";
    case cudaErrorMemoryAllocation: return "out of memory (cuda_emu)";
    default: return "error (cuda_emu)";
    }
}

cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
    if (count == nullptr) return cudaErrorInvalidValue;
    *count = 1;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t CUDARTAPI cudaMalloc(void** ptr, size_t size) {
    if (ptr == nullptr) return cudaErrorInvalidValue;
    // 256-byte aligned, as cudaMalloc's pointers are (the kernels' paired loads test alignment), and exactly
    // `size` bytes long, where cudaMalloc rounds up: under AddressSanitizer (scripts/check-cuda-emu.sh with
    // OCR_EMU_SANITIZE=address) a read past the requested end is reported, as compute-sanitizer's memcheck
    // would, instead of landing in padding.
    *ptr = nullptr;
    if (posix_memalign(ptr, 256, size == 0 ? 1 : size) != 0) *ptr = nullptr;
    return *ptr != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t CUDARTAPI cudaFree(void* ptr) {
    std::free(ptr);
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemcpy(void* dst, const void* src, size_t count, enum cudaMemcpyKind) {
    if (count != 0 && (dst == nullptr || src == nullptr)) return cudaErrorInvalidValue;
    if (count != 0) std::memmove(dst, src, count);
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemset(void* dst, int value, size_t count) {
    if (count != 0 && dst == nullptr) return cudaErrorInvalidValue;
    if (count != 0) std::memset(dst, value, count);
    return cudaSuccess;
}

}  // extern "C"
