//! TensorRT through the `cpp/trt` bridge (feature `tensorrt`): the builder behind [`EngineBuilder`], engine
//! loading with the manifest checks, inference and timing, and the TensorRT [`Backend`]. Thin on purpose:
//! every decision that can be made without TensorRT is made (and tested) in the rest of `engine`.

use super::ffi::bridge as ffi;
use super::manifest::{check_for_load, Device, EngineManifest, Platform, TrtVersion};
use super::settings::{build_failure_hint, EngineJob, Typing};
use super::{BuildInputs, Built, EngineBuilder, EngineError};
use crate::recipe::Precision;
use crate::runtime::{Backend, BackendError};
use crate::tensor::{Data, Tensor};
use half::f16;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The TensorRT library this process runs and the current CUDA device.
pub fn platform() -> Result<Platform, EngineError> {
    let version = ffi::library_version();
    let d = ffi::device_info().map_err(|e| EngineError::Runtime(e.to_string()))?;
    Ok(Platform::with_release(
        TrtVersion::from_code(version.max(0) as u32),
        Device {
            name: d.name,
            compute_capability: [d.major.max(0) as u32, d.minor.max(0) as u32],
        },
    ))
}

/// Builds engines with the TensorRT builder and ONNX parser.
pub struct TrtBuilder {
    platform: Platform,
}

impl TrtBuilder {
    pub fn new() -> Result<Self, EngineError> {
        let header = TrtVersion::from_code(ffi::header_version().max(0) as u32);
        let platform = platform()?;
        if header.major != platform.tensorrt.major {
            return Err(EngineError::Runtime(format!(
                "this binary was compiled against TensorRT {header} headers but loaded TensorRT {}; rebuild it against the installed TensorRT",
                platform.tensorrt
            )));
        }
        Ok(TrtBuilder { platform })
    }
}

impl EngineBuilder for TrtBuilder {
    fn platform(&self) -> Result<Platform, EngineError> {
        Ok(self.platform.clone())
    }

    fn build(&self, job: &EngineJob, inputs: &BuildInputs) -> Result<Built, EngineError> {
        let s = &job.settings;
        let legacy = s.typing == Typing::LegacyWeak;
        if legacy && !ffi::legacy_available() {
            return Err(EngineError::LegacyUnavailable {
                version: self.platform.tensorrt.to_string(),
            });
        }
        let req = ffi::BuildRequest {
            onnx_path: job.onnx.to_string_lossy().into_owned(),
            input_name: s.profile.input.clone(),
            min: s.profile.min.clone(),
            opt: s.profile.opt.clone(),
            max: s.profile.max.clone(),
            workspace_bytes: s.workspace_mib.saturating_mul(1 << 20),
            optimization_level: i32::from(s.optimization_level),
            legacy,
            legacy_fp16: legacy && s.precision != Precision::Fp32,
            legacy_int8: legacy && s.precision == Precision::Int8,
            timing_cache: inputs.timing_cache.clone(),
            calibration_cache: inputs.calibration_cache.clone().unwrap_or_default(),
        };
        let out = ffi::build_engine(&req).map_err(|e| EngineError::Build {
            onnx: job.onnx.clone(),
            message: e.to_string(),
            hint: None,
        })?;
        if !out.ok {
            return Err(EngineError::Build {
                onnx: job.onnx.clone(),
                message: out.errors.join("\n"),
                hint: build_failure_hint(&out.errors, s),
            });
        }
        Ok(Built {
            plan: out.plan,
            timing_cache: out.timing_cache,
        })
    }
}

/// How an engine is loaded.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Capture the inference as a CUDA graph and replay it (engines with a static input shape only).
    pub cuda_graph: bool,
}

/// A loaded engine: one execution context, one stream, its device buffers.
pub struct Engine {
    path: PathBuf,
    runner: Mutex<cxx::UniquePtr<ffi::EngineRunner>>,
    manifest: EngineManifest,
    input_dtype: String,
    output: String,
    output_dtype: String,
}

/// What [`Engine::benchmark`] measured.
#[derive(Debug, Clone)]
pub struct BenchRun {
    pub input_shape: Vec<i64>,
    pub latency_ms: Vec<f64>,
    pub gpu_compute_ms: Vec<f64>,
    pub wall_s: f64,
    pub cuda_graph: bool,
}

impl Engine {
    /// Checks the manifest beside `path` against this process's TensorRT and device, then deserializes.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Self, EngineError> {
        let running = platform()?;
        let manifest = check_for_load(path, &running)?;
        let plan = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let static_shape = manifest.settings.profile.is_static();
        if options.cuda_graph && !static_shape {
            log::warn!(
                "{}: CUDA graphs are for static input shapes; running with enqueueV3",
                path.display()
            );
        }
        let runner = ffi::load_engine(&plan, options.cuda_graph && static_shape)
            .map_err(|e| EngineError::Runtime(format!("{}: {e}", path.display())))?;
        let tensors = runner.io_tensors();
        let input = tensors
            .iter()
            .find(|t| t.is_input)
            .ok_or_else(|| EngineError::Runtime(format!("{}: no input tensor", path.display())))?;
        let output = manifest.outputs.last().cloned().ok_or_else(|| {
            EngineError::Runtime(format!("{}: the manifest lists no output", path.display()))
        })?;
        let out_t = tensors
            .iter()
            .find(|t| !t.is_input && t.name == output)
            .ok_or_else(|| {
                EngineError::Runtime(format!(
                    "{}: the engine has no output '{output}' named by its manifest",
                    path.display()
                ))
            })?;
        for (what, dtype) in [("input", &input.dtype), ("output", &out_t.dtype)] {
            if dtype != "fp32" && dtype != "fp16" {
                return Err(EngineError::Runtime(format!(
                    "{}: the {what} is {dtype}; fp32 and fp16 are supported",
                    path.display()
                )));
            }
        }
        Ok(Engine {
            path: path.to_path_buf(),
            input_dtype: input.dtype.clone(),
            output_dtype: out_t.dtype.clone(),
            output,
            manifest,
            runner: Mutex::new(runner),
        })
    }

    pub fn manifest(&self) -> &EngineManifest {
        &self.manifest
    }

    /// The profile's opt shape: what `benchmark` runs.
    pub fn opt_shape(&self) -> &[i64] {
        &self.manifest.settings.profile.opt
    }

    /// Runs one `[N, 3, H, W]` float tensor and returns the main output as float32.
    pub fn infer(&self, input: &Tensor) -> Result<Tensor, EngineError> {
        let shape: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
        let bytes = to_bytes(&input.as_f32s(), &self.input_dtype);
        let mut out = Vec::new();
        let mut out_shape = Vec::new();
        {
            let mut r = self.runner.lock().unwrap_or_else(|p| p.into_inner());
            r.pin_mut()
                .infer(&shape, &bytes, &self.output, &mut out, &mut out_shape)
                .map_err(|e| EngineError::Runtime(format!("{}: {e}", self.path.display())))?;
        }
        let values = from_bytes(&out, &self.output_dtype);
        let dims: Vec<usize> = out_shape.iter().map(|&d| d.max(0) as usize).collect();
        Tensor::new(dims, Data::F32(values)).map_err(|e| EngineError::Runtime(e.to_string()))
    }

    /// Times `runs` inferences at the profile's opt shape after `warmup`, on a deterministic input.
    pub fn benchmark(&self, runs: usize, warmup: usize) -> Result<BenchRun, EngineError> {
        let shape = self.opt_shape().to_vec();
        let n: usize = shape.iter().map(|&d| d.max(0) as usize).product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let bytes = to_bytes(&values, &self.input_dtype);
        let mut r = self.runner.lock().unwrap_or_else(|p| p.into_inner());
        let t = r
            .pin_mut()
            .benchmark(
                &shape,
                &bytes,
                &self.output,
                runs.min(u32::MAX as usize) as u32,
                warmup.min(u32::MAX as usize) as u32,
            )
            .map_err(|e| EngineError::Runtime(format!("{}: {e}", self.path.display())))?;
        Ok(BenchRun {
            input_shape: shape,
            latency_ms: t.latency_ms,
            gpu_compute_ms: t.gpu_compute_ms,
            wall_s: t.wall_s,
            cuda_graph: t.cuda_graph,
        })
    }
}

fn to_bytes(values: &[f32], dtype: &str) -> Vec<u8> {
    if dtype == "fp16" {
        values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect()
    } else {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

fn from_bytes(bytes: &[u8], dtype: &str) -> Vec<f32> {
    if dtype == "fp16" {
        bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    } else {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// A TensorRT engine as a [`Backend`]: the same pre/post-processing as the CPU backend (`runtime::segment`).
pub struct TrtBackend {
    engine: Engine,
    hw: Option<(u32, u32)>,
}

impl TrtBackend {
    pub fn load(path: &Path, options: LoadOptions) -> Result<Self, BackendError> {
        let engine = Engine::load(path, options).map_err(|e| BackendError::Model {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let p = &engine.manifest.settings.profile;
        let hw = match (p.is_static(), p.opt.as_slice()) {
            (true, [_, _, h, w]) => Some((*h as u32, *w as u32)),
            _ => None,
        };
        Ok(TrtBackend { engine, hw })
    }
}

impl Backend for TrtBackend {
    fn name(&self) -> &'static str {
        "trt"
    }

    fn input_hw(&self) -> Option<(u32, u32)> {
        self.hw
    }

    fn infer(&self, input: Tensor) -> Result<Tensor, BackendError> {
        self.engine
            .infer(&input)
            .map_err(|e| BackendError::Inference(e.to_string()))
    }
}
