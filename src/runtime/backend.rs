//! Backends run a segmentation model on one input: the CPU executor here, TensorRT engines
//! (`engine::trt::TrtBackend`) in a build with feature `tensorrt`. `run` and the daemon pick one by name
//! and use it through this trait.

use crate::data;
use crate::exec::{ExecOptions, Executor};
use crate::onnx::{self, proto::tensor_shape_proto::dimension::Value, proto::type_proto};
use crate::runtime::postprocess::{class_map, ClassMap};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("{path}: {reason}")]
    Model { path: PathBuf, reason: String },
    /// The ONNX file did not load (the error names the file; boxed, it is large).
    #[error(transparent)]
    Load(Box<onnx::Error>),
    #[error("the '{0}' backend is not in this build (rebuild with `--features tensorrt` on a machine with TensorRT)")]
    NotBuilt(&'static str),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the model's output '{name}' of shape {shape:?} is not [1, classes, H, W] logits")]
    NotLogits { name: String, shape: Vec<usize> },
}

/// Which backend to run on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Cpu,
    Trt,
}

pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    /// (H, W) the model takes, when its input size is fixed; images are resized to it.
    fn input_hw(&self) -> Option<(u32, u32)>;
    /// Runs one preprocessed `[1, 3, H, W]` tensor and returns the main output's logits.
    fn infer(&self, input: Tensor) -> Result<Tensor, BackendError>;
    /// Bytes of host memory the last inference held at its peak, where the backend knows (the CPU
    /// executor does): what an evaluation sizes the number of images at once by.
    fn last_peak_bytes(&self) -> Option<usize> {
        None
    }
}

/// Opens a model on the chosen backend.
pub fn open(
    kind: BackendKind,
    model: &Path,
    options: ExecOptions,
) -> Result<Box<dyn Backend>, BackendError> {
    match kind {
        BackendKind::Cpu => Ok(Box::new(CpuBackend::load(model, options)?)),
        BackendKind::Trt => open_trt(model),
    }
}

/// A TensorRT engine (`model` is the serialized engine with its manifest beside it).
#[cfg(feature = "tensorrt")]
fn open_trt(model: &Path) -> Result<Box<dyn Backend>, BackendError> {
    let options = crate::engine::trt::LoadOptions::default();
    Ok(Box::new(crate::engine::trt::TrtBackend::load(
        model, options,
    )?))
}

#[cfg(not(feature = "tensorrt"))]
fn open_trt(_model: &Path) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendError::NotBuilt("trt"))
}

/// The CPU executor as a backend.
pub struct CpuBackend {
    exec: Executor,
    input: String,
    output: String,
    hw: Option<(u32, u32)>,
    /// The last run's peak activation bytes; 0 before the first.
    last_peak: AtomicUsize,
}

impl CpuBackend {
    pub fn load(path: &Path, options: ExecOptions) -> Result<Self, BackendError> {
        let model = onnx::load(path).map_err(|e| BackendError::Load(Box::new(e)))?;
        Self::from_model(&model, path, options)
    }

    /// A backend for a model already in memory; `path` names it in errors.
    pub fn from_model(
        model: &onnx::Model,
        path: &Path,
        options: ExecOptions,
    ) -> Result<Self, BackendError> {
        let err = |reason: String| BackendError::Model {
            path: path.to_path_buf(),
            reason,
        };
        let exec = Executor::new(model, options).map_err(|e| err(e.to_string()))?;
        let inputs: Vec<&str> = exec.input_names().collect();
        let [input] = inputs.as_slice() else {
            return Err(err(format!(
                "expected one graph input, found {}",
                inputs.len()
            )));
        };
        let input = input.to_string();
        let output = exec
            .output_names()
            .last()
            .ok_or_else(|| err("the model has no output".into()))?
            .to_string();
        let hw = static_hw(model, &input);
        Ok(CpuBackend {
            exec,
            input,
            output,
            hw,
            last_peak: AtomicUsize::new(0),
        })
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn input_hw(&self) -> Option<(u32, u32)> {
        self.hw
    }

    fn infer(&self, input: Tensor) -> Result<Tensor, BackendError> {
        let (mut out, stats) = self
            .exec
            .run_with_stats(HashMap::from([(self.input.clone(), input)]), &[], None)
            .map_err(|e| BackendError::Inference(e.to_string()))?;
        self.last_peak
            .store(stats.peak_activation_bytes, Ordering::Relaxed);
        Ok(out
            .remove(&self.output)
            .expect("the executor returns every graph output"))
    }

    fn last_peak_bytes(&self) -> Option<usize> {
        Some(self.last_peak.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }
}

/// Segments one RGB image: HRNet preprocessing at the backend's input size, inference, logits upsampled
/// to the image's own size and argmax.
pub fn segment(backend: &dyn Backend, img: &image::RgbImage) -> Result<ClassMap, BackendError> {
    let (w, h) = img.dimensions();
    let logits = backend.infer(data::preprocess(img, backend.input_hw()))?;
    class_map(&logits, h as usize, w as usize).ok_or(BackendError::NotLogits {
        name: "main output".into(),
        shape: logits.shape.clone(),
    })
}

/// (H, W) of a 4-D graph input whose last two dims are fixed numbers.
pub fn static_hw(model: &onnx::Model, name: &str) -> Option<(u32, u32)> {
    let v = model.graph.inputs.iter().find(|v| v.name() == name)?;
    match value_dims(v)?.as_slice() {
        [_, _, Some(h), Some(w)] => Some((*h as u32, *w as u32)),
        _ => None,
    }
}

/// The dimensions a value's type declares, `None` for a symbolic or unknown one; `None` overall when it
/// declares no tensor shape.
pub fn value_dims(v: &crate::onnx::proto::ValueInfoProto) -> Option<Vec<Option<i64>>> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    Some(
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(v)) if v > 0 => Some(v),
                _ => None,
            })
            .collect(),
    )
}
