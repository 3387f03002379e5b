//! TensorRT engines: build settings from the recipe, the optimisation profile, the manifest beside each
//! engine with the checks a load makes, the skip of unchanged rebuilds, and the legacy calibration cache.
//! All of that is plain Rust, tested without TensorRT. The TensorRT work itself goes through the cxx bridge
//! to `cpp/trt` ([`trt`], feature `tensorrt`): parse + build, deserialize + run.
//!
//! (ARCHITECTURE.md sketches this as `src/trt/`; it is `engine/` because most of it is not TensorRT code and
//! builds in every configuration.)

pub mod builder;
#[cfg(feature = "tensorrt")]
mod ffi;
pub mod legacy;
pub mod manifest;
pub mod settings;
#[cfg(feature = "tensorrt")]
pub mod trt;

pub use builder::{
    build_all, build_engine, BuildInputs, Built, EngineBuilder, EngineReport, Outcome,
};
pub use manifest::{check_for_load, EngineManifest, Platform, TrtVersion};
pub use settings::{BuildSettings, EngineJob, EngineSpec, Profile, Typing};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Graph { path: PathBuf, reason: String },
    #[error("engine manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("refusing to load {engine}: {reason}")]
    Incompatible { engine: PathBuf, reason: String },
    #[error("legacy calibration cache {path}: {reason}")]
    LegacyCache { path: PathBuf, reason: String },
    #[error("recipe field 'engine.legacy': the weakly typed FP16/INT8 path needs TensorRT 10.x, this build has TensorRT {version} (11 removed the precision flags and the INT8 calibrator); set `legacy: false` to build the strongly typed graphs")]
    LegacyUnavailable { version: String },
    #[error("building an engine from {onnx}: {message}{}", hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Build {
        onnx: PathBuf,
        message: String,
        hint: Option<String>,
    },
    #[error("TensorRT runtime: {0}")]
    Runtime(String),
    #[error("{0} needs a build with TensorRT (`cargo build --release --features tensorrt` with TENSORRT_INCLUDE_DIR and TENSORRT_LIB_DIR set, on a machine with TensorRT)")]
    NotBuilt(&'static str),
}

/// Whether this binary can build and run engines.
pub const AVAILABLE: bool = cfg!(feature = "tensorrt");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_errors_carry_the_hint_on_their_own_line() {
        let e = EngineError::Build {
            onnx: PathBuf::from("out/model.fp16.onnx"),
            message: "Error Code 2: OutOfMemory".into(),
            hint: Some("lower engine.workspace_mib".into()),
        };
        assert_eq!(
            e.to_string(),
            "building an engine from out/model.fp16.onnx: Error Code 2: OutOfMemory\nhint: lower engine.workspace_mib"
        );
        let e = EngineError::Build {
            onnx: PathBuf::from("m.onnx"),
            message: "parse failed".into(),
            hint: None,
        };
        assert_eq!(
            e.to_string(),
            "building an engine from m.onnx: parse failed"
        );
    }
}
