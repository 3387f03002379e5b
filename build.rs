//! Build script: ONNX protobuf types (prost, schema compiled by protox so no `protoc` is needed) and the
//! C++ side of the OCR ops, bridged with cxx. CUDA and TensorRT pieces join behind their cargo features.

use std::path::{Path, PathBuf};
use std::process::Command;

/// C++17 with the TensorRT and CUDA headers as system includes (their warnings are not ours). A macro, not
/// a function: the `cc::Build` that cxx_build hands out cannot be named without a `cc` build-dependency.
macro_rules! trt_flags {
    ($build:expr) => {{
        let (include, cuda_include) = trt_includes();
        $build
            .std("c++17")
            .flag("-isystem")
            .flag(&include)
            .flag("-isystem")
            .flag(cuda_include.to_str().expect("UTF-8 CUDA path"))
            .flag_if_supported("-Wall")
            .flag_if_supported("-Wextra");
    }};
}

fn main() {
    onnx_proto();
    ocr_cpp();
    // Static libraries link in the order they are announced, so users come before what they use:
    // TensorRT bridge -> plugins -> CUDA kernels -> CUDA runtime -> TensorRT's shared libraries.
    let tensorrt = std::env::var_os("CARGO_FEATURE_TENSORRT").is_some();
    if tensorrt {
        trt_bridge();
        ocr_plugins();
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        ocr_cuda();
    }
    if tensorrt {
        trt_link();
    }
}

/// Generates `onnx.rs` from the vendored `proto/onnx.proto`. Every `bytes` field becomes `bytes::Bytes`, so
/// decoding from a memory-mapped buffer keeps tensor data as views into the map instead of copies.
fn onnx_proto() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["onnx.proto"], ["proto"]).expect("compiling proto/onnx.proto");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    prost_build::Config::new()
        .bytes(["."])
        .out_dir(&out)
        .compile_fds(fds)
        .expect("generating ONNX protobuf types");
}

/// The OCR ops' shared parameter checks, compiled as plain C++17 and bridged with cxx. Kernels (feature
/// `cuda`) include only `cpp/ocr/ocr_params.h`, never cxx-generated headers.
fn ocr_cpp() {
    for f in [
        "src/ocr/ffi.rs",
        "cpp/ocr/ocr_params.h",
        "cpp/ocr/ocr_params.cpp",
        "cpp/ocr/ocr_reference.h",
        "cpp/ocr/ocr_reference.cpp",
        "cpp/ocr/bridge.h",
        "cpp/ocr/bridge.cpp",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    cxx_build::bridge("src/ocr/ffi.rs")
        .file("cpp/ocr/ocr_params.cpp")
        .file("cpp/ocr/ocr_reference.cpp")
        .file("cpp/ocr/bridge.cpp")
        .std("c++17")
        // The reference is on the executor's path for fused graphs: optimise it even in debug builds.
        .opt_level(3)
        .flag_if_supported("-Wall")
        .flag_if_supported("-Wextra")
        .compile("ocrnet_ocr");
}

/// The nvcc to use: `NVCC`, else `nvcc` on PATH, else `$CUDA_HOME/bin/nvcc` (scripts/install-nvcc.sh installs a
/// pinned one and prints its path).
fn find_nvcc() -> PathBuf {
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    if let Some(p) = std::env::var_os("NVCC") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("nvcc").is_file() {
                return dir.join("nvcc");
            }
        }
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let p = Path::new(&home).join("bin/nvcc");
        if p.is_file() {
            return p;
        }
    }
    panic!("feature `cuda` needs nvcc: set NVCC, put nvcc on PATH or set CUDA_HOME (scripts/install-nvcc.sh installs one)");
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    assert!(status.success(), "{what} failed ({status}): {cmd:?}");
}

/// Feature `cuda`: the kernels and their extern "C" wrappers, compiled by nvcc for sm_87 (Orin) and sm_90 (H100)
/// into `libocrnet_cuda.a`, linked with CUDA's static runtime. Only `cpp/ocr/*.cu` and `ocr_params.cpp` go
/// through nvcc; cxx-generated code never does.
fn ocr_cuda() {
    let nvcc = find_nvcc();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-env-changed=OCR_CUDA_ARCHS");
    let archs = std::env::var("OCR_CUDA_ARCHS").unwrap_or_else(|_| "87 90".to_string());
    let mut objects = Vec::new();
    for src in [
        "ocrGatherKernel.cu",
        "ocrAttentionKernel.cu",
        "ocr_cuda_ffi.cu",
        "ocr_params.cpp",
    ] {
        let path = Path::new("cpp/ocr").join(src);
        println!("cargo:rerun-if-changed={}", path.display());
        let obj = out.join(format!("{src}.o"));
        let mut cmd = Command::new(&nvcc);
        cmd.args(["-std=c++17", "-O3", "-Xcompiler", "-fPIC", "-c"]);
        for a in archs.split_whitespace() {
            cmd.arg("-gencode")
                .arg(format!("arch=compute_{a},code=sm_{a}"));
        }
        // And PTX of the last architecture, which the driver compiles for a GPU newer than all of them.
        if let Some(last) = archs.split_whitespace().last() {
            cmd.arg("-gencode")
                .arg(format!("arch=compute_{last},code=compute_{last}"));
        }
        cmd.arg(&path).arg("-o").arg(&obj);
        run(&mut cmd, &format!("nvcc {src}"));
        objects.push(obj);
    }
    for h in [
        "ocrGatherKernel.h",
        "ocrAttentionKernel.h",
        "ocrCudaCommon.cuh",
        "ocr_cuda_ffi.h",
    ] {
        println!("cargo:rerun-if-changed=cpp/ocr/{h}");
    }
    let lib = out.join("libocrnet_cuda.a");
    let _ = std::fs::remove_file(&lib);
    run(
        Command::new("ar").arg("rcs").arg(&lib).args(&objects),
        "ar libocrnet_cuda.a",
    );
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=ocrnet_cuda");
    // CUDA's runtime, statically: the binary then needs only the driver on the device.
    let root = nvcc
        .parent()
        .and_then(Path::parent)
        .expect("nvcc lives in <cuda>/bin");
    for dir in ["lib64", "lib"] {
        if root.join(dir).join("libcudart_static.a").is_file() {
            println!(
                "cargo:rustc-link-search=native={}",
                root.join(dir).display()
            );
        }
    }
    println!("cargo:rustc-link-lib=static=cudart_static");
    for l in ["dl", "rt", "pthread"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
}

/// Feature `tensorrt`: the IPluginV3 plugin classes and creators of `cpp/plugin`, compiled against the TensorRT
/// headers in `TENSORRT_INCLUDE_DIR` (no TensorRT library: they use interfaces and plain structs). The bridge
/// (`cpp/trt/trtCommon.cpp`) registers the creators with TensorRT's registry before a build or a load.
fn ocr_plugins() {
    // cxx_build hands out its cc::Build (Cargo.toml gets no extra build-dependency); no bridge is passed, so no
    // cxx-generated code is in this library.
    let mut build = cxx_build::bridges(std::iter::empty::<&str>());
    build.cpp(true);
    trt_flags!(build);
    for src in [
        "common/ocrPluginCommon.cpp",
        "ocrSpatialGatherPlugin/ocrSpatialGatherPlugin.cpp",
        "ocrObjectAttentionPlugin/ocrObjectAttentionPlugin.cpp",
        "ocrPluginLibrary.cpp",
    ] {
        build.file(Path::new("cpp/plugin").join(src));
    }
    println!("cargo:rerun-if-changed=cpp/plugin");
    build.compile("ocrnet_plugins");
}

/// `TENSORRT_INCLUDE_DIR` (required with feature `tensorrt`) and the CUDA include folder beside nvcc.
fn trt_includes() -> (String, PathBuf) {
    println!("cargo:rerun-if-env-changed=TENSORRT_INCLUDE_DIR");
    let include = std::env::var("TENSORRT_INCLUDE_DIR").expect(
        "feature `tensorrt` needs TENSORRT_INCLUDE_DIR (the folder holding NvInfer.h and NvOnnxParser.h)",
    );
    let cuda_include = find_nvcc()
        .parent()
        .and_then(Path::parent)
        .expect("nvcc lives in <cuda>/bin")
        .join("include");
    (include, cuda_include)
}

/// Feature `tensorrt`: the builder/runtime shims of `cpp/trt`, bridged with cxx (`src/engine/ffi.rs`).
fn trt_bridge() {
    let mut build = cxx_build::bridge("src/engine/ffi.rs");
    trt_flags!(build);
    for src in [
        "trtCommon.cpp",
        "trtBuilder.cpp",
        "trtCalibrator.cpp",
        "trtRuntime.cpp",
    ] {
        build.file(Path::new("cpp/trt").join(src));
    }
    println!("cargo:rerun-if-changed=src/engine/ffi.rs");
    println!("cargo:rerun-if-changed=cpp/trt");
    build.compile("ocrnet_trt");
}

/// TensorRT's libraries, from `TENSORRT_LIB_DIR` or the linker's default paths (a Jetson has them in
/// /usr/lib/aarch64-linux-gnu).
fn trt_link() {
    println!("cargo:rerun-if-env-changed=TENSORRT_LIB_DIR");
    if let Some(dir) = std::env::var_os("TENSORRT_LIB_DIR") {
        println!(
            "cargo:rustc-link-search=native={}",
            Path::new(&dir).display()
        );
    }
    println!("cargo:rustc-link-lib=dylib=nvinfer");
    println!("cargo:rustc-link-lib=dylib=nvonnxparser");
}
