//! Building one engine around whatever does the TensorRT work ([`EngineBuilder`]: the TensorRT bridge with
//! feature `tensorrt`, a fake in tests): hash the inputs, skip the build when an engine with the same key
//! is already there, serve the legacy calibration cache, load and save the timing cache, and write the
//! engine and its manifest atomically.

use super::legacy;
use super::manifest::{
    build_key, manifest_path, plugin_library, EngineInputs, EngineManifest, Platform, ToolInfo,
    ENGINE_MANIFEST_SCHEMA,
};
use super::settings::{BuildSettings, EngineJob, Typing};
use super::EngineError;
use crate::fsutil;
use crate::manifest::FileEntry;
use crate::recipe::Precision;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a builder gets besides the job.
#[derive(Debug, Clone, Default)]
pub struct BuildInputs {
    /// The timing cache's bytes from earlier builds (empty: none yet).
    pub timing_cache: Vec<u8>,
    /// The legacy calibration cache to serve (legacy INT8 only).
    pub calibration_cache: Option<Vec<u8>>,
}

/// A built engine.
#[derive(Debug, Clone, Default)]
pub struct Built {
    /// The serialized engine (plan).
    pub plan: Vec<u8>,
    /// The timing cache after the build (empty: leave the file alone).
    pub timing_cache: Vec<u8>,
}

/// The TensorRT side of a build.
pub trait EngineBuilder {
    /// The TensorRT library and the device builds run on.
    fn platform(&self) -> Result<Platform, EngineError>;
    /// Parses `job.onnx` and builds a serialized engine with `job.settings`.
    fn build(&self, job: &EngineJob, inputs: &BuildInputs) -> Result<Built, EngineError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Built,
    /// An engine with the same build key was there already.
    UpToDate,
}

/// What happened to one engine.
#[derive(Debug, Clone, Serialize)]
pub struct EngineReport {
    pub precision: Precision,
    pub outcome: Outcome,
    pub engine: PathBuf,
    pub manifest: PathBuf,
    pub bytes: u64,
    pub seconds: f64,
    /// Legacy INT8: graph activations the cache had no scale for.
    pub uncalibrated_tensors: usize,
}

/// Builds `job` unless an engine with the same build key is already there (`force` builds anyway).
pub fn build_engine(
    job: &EngineJob,
    builder: &dyn EngineBuilder,
    force: bool,
) -> Result<EngineReport, EngineError> {
    let t = Instant::now();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EngineError::Io { path, source }
    };
    let platform = builder.platform()?;
    if job.settings.typing == Typing::LegacyWeak && platform.tensorrt.major >= 11 {
        return Err(EngineError::LegacyUnavailable {
            version: platform.tensorrt.to_string(),
        });
    }
    let model = crate::onnx::load(&job.onnx).map_err(|e| EngineError::Graph {
        path: job.onnx.clone(),
        reason: e.to_string(),
    })?;
    job.settings
        .profile
        .check_against(&model)
        .map_err(|reason| EngineError::Graph {
            path: job.onnx.clone(),
            reason,
        })?;
    let inputs = hash_inputs(job, &model)?;
    let outputs: Vec<String> = model
        .graph
        .outputs
        .iter()
        .map(|v| v.name().to_string())
        .collect();
    let key = build_key(&platform, &job.settings, &inputs);
    let mpath = manifest_path(&job.engine);

    if !force {
        if let Some(m) = up_to_date(&job.engine, &mpath, &key) {
            return Ok(EngineReport {
                precision: job.settings.precision,
                outcome: Outcome::UpToDate,
                engine: job.engine.clone(),
                manifest: mpath,
                bytes: m.engine.bytes,
                seconds: t.elapsed().as_secs_f64(),
                uncalibrated_tensors: 0,
            });
        }
    }

    let mut uncalibrated = 0;
    let calibration_cache = match &job.calibration_cache {
        Some(path) => {
            let served =
                legacy::serve(path, platform.tensorrt, &legacy::graph_activations(&model))?;
            if !served.missing.is_empty() {
                log::warn!(
                    "{}: {} of the graph's activations have no scale (e.g. '{}'); TensorRT keeps them out of INT8",
                    path.display(),
                    served.missing.len(),
                    served.missing[0]
                );
            }
            uncalibrated = served.missing.len();
            Some(served.bytes)
        }
        None => None,
    };
    drop(model);
    let timing_cache = match std::fs::read(&job.timing_cache) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&job.timing_cache)(e)),
    };
    let built = builder.build(
        job,
        &BuildInputs {
            timing_cache,
            calibration_cache,
        },
    )?;
    if built.plan.is_empty() {
        return Err(EngineError::Build {
            onnx: job.onnx.clone(),
            message: "TensorRT returned an empty engine".into(),
            hint: None,
        });
    }
    // The engine first, then the manifest naming its hash: a reader that sees a new engine with an old
    // manifest refuses it (hash mismatch) instead of running something unknown.
    fsutil::write_atomic(&job.engine, &built.plan).map_err(io(&job.engine))?;
    if !built.timing_cache.is_empty() {
        fsutil::write_atomic(&job.timing_cache, &built.timing_cache)
            .map_err(io(&job.timing_cache))?;
    }
    let name = job
        .engine
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest = EngineManifest {
        schema: ENGINE_MANIFEST_SCHEMA.into(),
        tool: ToolInfo {
            name: "ocrnet-edge".into(),
            version: crate::VERSION.into(),
        },
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        precision: job.settings.precision,
        platform,
        settings: job.settings.clone(),
        outputs,
        inputs,
        timing_cache: Some(job.timing_cache.display().to_string()),
        build_key: key,
        engine: FileEntry {
            path: name,
            bytes: built.plan.len() as u64,
            blake3: fsutil::hash_bytes(&built.plan),
        },
    };
    manifest.write(&mpath)?;
    Ok(EngineReport {
        precision: job.settings.precision,
        outcome: Outcome::Built,
        engine: job.engine.clone(),
        manifest: mpath,
        bytes: built.plan.len() as u64,
        seconds: t.elapsed().as_secs_f64(),
        uncalibrated_tensors: uncalibrated,
    })
}

/// The manifest beside `engine` when it has `key` and the engine's bytes are the ones it names.
fn up_to_date(engine: &Path, mpath: &Path, key: &str) -> Option<EngineManifest> {
    let m = EngineManifest::read(mpath).ok()?;
    if m.build_key != key {
        log::info!(
            "{}: inputs or settings changed, rebuilding",
            engine.display()
        );
        return None;
    }
    let (bytes, hash) = fsutil::hash_file(engine).ok()?;
    (bytes == m.engine.bytes && hash == m.engine.blake3).then_some(m)
}

/// Hashes the graph (with its external data files), the calibration data and the plugin library.
fn hash_inputs(job: &EngineJob, model: &crate::onnx::Model) -> Result<EngineInputs, EngineError> {
    let entry = |path: &Path| {
        FileEntry::hash(path, path.display().to_string()).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut onnx = vec![entry(&job.onnx)?];
    let mut data: Vec<PathBuf> = model.origins.values().map(|o| o.file.clone()).collect();
    data.sort();
    data.dedup();
    for f in &data {
        onnx.push(entry(f)?);
    }
    // Legacy INT8 needs the cache; a Q/DQ graph carries its scales, and the cache is recorded when present.
    let calibration = match &job.calibration {
        Some(p) if job.calibration_cache.is_some() || p.exists() => Some(entry(p)?),
        _ => None,
    };
    Ok(EngineInputs {
        onnx,
        calibration,
        plugin_library: plugin_library(),
    })
}

/// Builds every job in order, stopping at the first failure.
pub fn build_all(
    jobs: &[EngineJob],
    builder: &dyn EngineBuilder,
    force: bool,
) -> Result<Vec<EngineReport>, EngineError> {
    jobs.iter()
        .map(|j| build_engine(j, builder, force))
        .collect()
}

/// Settings in a line, for logs: "fp16 strongly-typed, workspace 2048 MiB, level 3, input [1, 3, 512, 1024]".
pub fn describe(s: &BuildSettings) -> String {
    let typing = match s.typing {
        Typing::StronglyTyped => "strongly typed",
        Typing::LegacyWeak => "legacy weakly typed",
    };
    let shape = if s.profile.is_static() {
        format!("{:?}", s.profile.opt)
    } else {
        format!(
            "{:?}..{:?} (opt {:?})",
            s.profile.min, s.profile.max, s.profile.opt
        )
    };
    format!(
        "{} {typing}, workspace {} MiB, optimization level {}, input '{}' {shape}",
        super::settings::precision_name(s.precision),
        s.workspace_mib,
        s.optimization_level,
        s.profile.input
    )
}
