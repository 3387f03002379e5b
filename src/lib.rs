//! ocrnet-edge: turns HRNet-OCR segmentation models exported to ONNX into deployable artifacts for NVIDIA
//! Jetson Orin. Each module owns one pipeline stage (see ARCHITECTURE.md in the design notes); the
//! `ocrnet-edge` binary is a thin command line over this library.

pub mod bench;
pub mod calib;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod debug;
pub mod engine;
pub mod exec;
pub mod fsutil;
pub mod manifest;
pub mod npy;
pub mod ocr;
pub mod onnx;
pub mod passes;
pub mod pipeline;
pub mod recipe;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod shape;
pub mod tensor;

/// The tool's version, recorded in every manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
