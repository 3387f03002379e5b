//! Build script: ONNX protobuf types (prost, schema compiled by protox so no `protoc` is needed) and the
//! C++ side of the OCR ops, bridged with cxx. CUDA and TensorRT pieces join behind their cargo features.

use std::path::PathBuf;

fn main() {
    onnx_proto();
    ocr_cpp();
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
