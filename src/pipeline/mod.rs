//! The `compile` pipeline: recipe → load → simplify → fuse OCR → verify → save → manifest. Each later stage
//! (calibration, precision lowering, engines) joins here as it lands.

use crate::manifest::{FileEntry, Manifest};
use crate::onnx::{self, SaveOptions};
use crate::passes::{self, SimplifyOptions};
use crate::recipe::{Recipe, RecipeError};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod engines;
pub mod precision;
mod staging;

/// The simplified model's file name in the output folder: standard ONNX, runnable by onnxruntime.
pub const SIMPLIFIED_MODEL: &str = "model.simplified.onnx";
/// The fused model's file name: the FP32 graph for TensorRT, with the OCR plugin nodes.
pub const FUSED_MODEL: &str = "model.fused.onnx";
/// The largest relative L2 change a fusion may make to any output before `compile` refuses it.
///
/// It sits between FP32 noise and a wrong fusion. The fused ops agree with the unfused graph far closer
/// than this on the fixtures (tests/fuse.rs holds them to 1e-5), but an ill-conditioned model amplifies
/// last-bit differences: HRNet-W48 with the exporter's random weights, at 1024×2048 on the probe input
/// (logits up to ±1383), moves by 5.3e-5 fused against unfused, and by 9.1e-5 between this executor's
/// unfused run and onnxruntime's. A structural mistake moves outputs by 1e-2 and more: the attention's
/// scale off by a factor of two moves a fixture's by 1.5e-2 (`tests/fuse.rs`).
pub const FUSION_REL_L2: f64 = 1e-3;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("loading {path}: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: onnx::Error,
    },
    #[error("{what}: {source}")]
    Step {
        what: String,
        #[source]
        source: onnx::Error,
    },
    #[error(
        "{recipe}: field 'input.name': the model has no input '{name}' (its inputs: {available})"
    )]
    NoSuchInput {
        recipe: String,
        name: String,
        available: String,
    },
    #[error("{what}: {source}")]
    Exec {
        what: String,
        #[source]
        source: crate::exec::ExecError,
    },
    #[error("verifying the OCR fusion: output '{output}' changed by relative L2 {rel_l2:.3e} (limit {limit:e}); the fused graph was not written. Set `verify: false` in the recipe to skip this check, or `fuse: false` to skip fusion")]
    FusionChangedOutputs {
        output: String,
        rel_l2: f64,
        limit: f64,
    },
    #[error("calibration data: {0}")]
    Data(Box<crate::data::cityscapes::DatasetError>),
    #[error("calibrating: {0}")]
    Calibration(Box<crate::calib::CalibError>),
    #[error("lowering to {what}: {source}")]
    Lowering {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("measuring accuracy: {0}")]
    Accuracy(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

/// What `compile` did, for the terminal or `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct CompileReport {
    pub out_dir: PathBuf,
    pub manifest: PathBuf,
    pub artifacts: Vec<String>,
    pub simplify: passes::SimplifyReport,
    /// `None` when the recipe turns fusion off.
    pub fuse: Option<passes::ocr::FuseReport>,
    /// The fused graph against the unfused one on a probe input (`None` when not run).
    pub verify: Option<crate::exec::verify::Agreement>,
    pub precision: precision::PrecisionReport,
    /// TensorRT engines built or found up to date (empty in a build without feature `tensorrt`).
    pub engines: Vec<crate::engine::EngineReport>,
}

/// Choices of a `compile` run that are not in the recipe.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// Rebuild TensorRT engines even when their inputs are unchanged.
    pub force_engines: bool,
}

/// Observes pipeline progress (the CLI shows a spinner; tests pass a no-op).
pub trait Progress {
    fn stage(&self, _name: &str) {}
}

impl Progress for () {}

/// Runs the pipeline for `recipe`, writing into `out_dir` (the recipe's `output_dir` unless overridden).
pub fn compile(
    recipe: &Recipe,
    out_dir: Option<&Path>,
    progress: &dyn Progress,
) -> Result<CompileReport, PipelineError> {
    compile_with(recipe, out_dir, progress, CompileOptions::default())
}

/// [`compile`] with options.
pub fn compile_with(
    recipe: &Recipe,
    out_dir: Option<&Path>,
    progress: &dyn Progress,
    options: CompileOptions,
) -> Result<CompileReport, PipelineError> {
    let out_dir = out_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| recipe.output_dir.clone());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PipelineError::Io { path, source }
    };
    let mut manifest = Manifest::new();
    manifest.recipe = Some(FileEntry::of_text(recipe.source_name.clone(), &recipe.text));
    let engine_stage = engines::Stage::start()?;

    progress.stage("loading model");
    let t = Instant::now();
    let mut model = onnx::load(&recipe.model).map_err(|source| PipelineError::Load {
        path: recipe.model.clone(),
        source,
    })?;
    manifest.inputs.push(
        FileEntry::hash(&recipe.model, recipe.model.display().to_string())
            .map_err(io(&recipe.model))?,
    );
    for file in external_files(&model) {
        manifest
            .inputs
            .push(FileEntry::hash(&file, file.display().to_string()).map_err(io(&file))?);
    }
    manifest.step(
        "load",
        t.elapsed().as_secs_f64(),
        onnx::stats::ModelStats::of(&model),
    );

    if !model
        .graph
        .inputs
        .iter()
        .any(|v| v.name() == recipe.input_name)
    {
        return Err(PipelineError::NoSuchInput {
            recipe: recipe.source_name.clone(),
            name: recipe.input_name.clone(),
            available: model
                .graph
                .inputs
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }

    progress.stage("simplifying");
    let t = Instant::now();
    let mut input_shapes = HashMap::new();
    if recipe.shapes.is_static() {
        // A static recipe pins a dynamic export to its size, so every shape computation folds away.
        input_shapes.insert(recipe.input_name.clone(), recipe.shapes.opt.clone());
    }
    let opts = SimplifyOptions {
        input_shapes,
        write_value_info: true,
    };
    let simplify = passes::simplify(&mut model, &opts).map_err(|source| PipelineError::Step {
        what: format!("simplifying {}", recipe.model.display()),
        source,
    })?;
    manifest.step("simplify", t.elapsed().as_secs_f64(), &simplify);
    check_classes(recipe, &model)?;

    let (fused, fuse, verify) = if recipe.file.fuse {
        let (fused, fuse, verify) = fuse_and_verify(recipe, &model, progress, &mut manifest)?;
        (Some(fused), Some(fuse), verify)
    } else {
        (None, None, None)
    };

    progress.stage("writing artifacts");
    // Everything up to the engines is staged and committed together (see `staging`).
    let staging = staging::Staging::open(&out_dir).map_err(io(&out_dir))?;
    let mut artifacts = Vec::new();
    let mut models = vec![(SIMPLIFIED_MODEL, &model, "the simplified model")];
    if let Some(f) = &fused {
        models.push((FUSED_MODEL, f, "the fused model"));
    }
    // The lower-precision graphs start from the graph TensorRT will see: the fused one when fusion ran.
    let precision = precision::lower(
        recipe,
        fused.as_ref().unwrap_or(&model),
        staging.path(),
        progress,
        &mut manifest,
    )?;
    for (name, m, what) in models {
        let saved = onnx::save(m, &staging.path().join(name), &SaveOptions::default()).map_err(
            |source| PipelineError::Step {
                what: format!("saving {what}"),
                source,
            },
        )?;
        artifacts.push(name.to_string());
        for f in saved.data_files.iter().chain(&saved.reused_data_files) {
            if !artifacts.contains(f) {
                artifacts.push(f.clone());
            }
        }
    }
    for f in &precision.artifacts {
        if !artifacts.contains(f) {
            artifacts.push(f.clone());
        }
    }
    staging
        .commit(&artifacts)
        .map_err(|(path, source)| PipelineError::Io { path, source })?;

    // TensorRT engines from the graphs just written (feature `tensorrt`; nothing otherwise).
    let fp32_graph = if fused.is_some() {
        FUSED_MODEL
    } else {
        SIMPLIFIED_MODEL
    };
    let t = Instant::now();
    let engines = engine_stage
        .build(recipe, &out_dir, fp32_graph, options, progress)
        .inspect_err(|_| {
            // The graphs are committed by now; the manifest that would vouch for them with the engines
            // is not written, so the folder does not pass for a complete build.
            log::warn!(
                "{}: the graphs are this run's, the engines are not; no manifest.json was written",
                out_dir.display()
            )
        })?;
    if !engines.is_empty() {
        manifest.step("engines", t.elapsed().as_secs_f64(), &engines);
        artifacts.extend(engines::artifacts(&engines));
    }

    for name in &artifacts {
        let path = out_dir.join(name);
        manifest
            .outputs
            .push(FileEntry::hash(&path, name.clone()).map_err(io(&path))?);
    }
    let manifest_path = manifest.write(&out_dir).map_err(io(&out_dir))?;
    Ok(CompileReport {
        out_dir,
        manifest: manifest_path,
        artifacts,
        simplify,
        fuse,
        verify,
        precision,
        engines,
    })
}

/// Fuses the OCR subgraphs of a copy of `model`, validates the result, and (unless the recipe says not to)
/// proves on a probe input at the recipe's `opt` shape that the outputs did not change.
fn fuse_and_verify(
    recipe: &Recipe,
    model: &onnx::Model,
    progress: &dyn Progress,
    manifest: &mut Manifest,
) -> Result<
    (
        onnx::Model,
        passes::ocr::FuseReport,
        Option<crate::exec::verify::Agreement>,
    ),
    PipelineError,
> {
    progress.stage("fusing OCR subgraphs");
    let t = Instant::now();
    let mut fused = model.clone();
    let step = |what: &str| {
        let what = what.to_string();
        move |source| PipelineError::Step { what, source }
    };
    let report = passes::ocr::fuse(&mut fused).map_err(step("fusing the OCR subgraphs"))?;
    for m in &report.near_misses {
        log::warn!(
            "OCR fusion near miss: {} at '{}': {}",
            m.rule,
            m.anchor,
            m.reason
        );
    }
    let validation =
        passes::ocr::validate::validate(&fused).map_err(step("validating the fused graph"))?;
    manifest.step(
        "fuse",
        t.elapsed().as_secs_f64(),
        serde_json::json!({ "report": &report, "validation": validation }),
    );
    if !recipe.file.verify || report.fused.is_empty() {
        return Ok((fused, report, None));
    }
    progress.stage("verifying the fusion on the CPU");
    let t = Instant::now();
    let shape: Vec<usize> = recipe.shapes.opt.iter().map(|&d| d as usize).collect();
    let agreement = verify_fusion(model, &fused, &recipe.input_name, &shape);
    let measured = match &agreement {
        Ok(a) => serde_json::to_value(a).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    manifest.step("verify", t.elapsed().as_secs_f64(), measured);
    Ok((fused, report, Some(agreement?)))
}

/// Runs `unfused` and `fused` on the probe input of `shape` (fed as `input_name`) and refuses the fusion
/// when any output moved by more than [`FUSION_REL_L2`] (or became NaN).
pub fn verify_fusion(
    unfused: &onnx::Model,
    fused: &onnx::Model,
    input_name: &str,
    shape: &[usize],
) -> Result<crate::exec::verify::Agreement, PipelineError> {
    let input = crate::exec::verify::probe_input(shape, 7);
    let agreement =
        crate::exec::verify::compare(unfused, fused, input_name, &input, Default::default())
            .map_err(|source| PipelineError::Exec {
                what: "running the unfused and fused graphs".into(),
                source,
            })?;
    if let Some(bad) = agreement
        .outputs
        .iter()
        // NaN counts as a failure too.
        .find(|o| o.rel_l2.is_nan() || o.rel_l2 > FUSION_REL_L2)
    {
        return Err(PipelineError::FusionChangedOutputs {
            output: bad.name.clone(),
            rel_l2: bad.rel_l2,
            limit: FUSION_REL_L2,
        });
    }
    Ok(agreement)
}

/// The accuracy pass (and the mixed-precision search) score the model's last output as `num_classes`
/// logits. A recipe that disagrees with a static class count is refused here, in seconds, rather than
/// after calibration.
fn check_classes(recipe: &Recipe, model: &onnx::Model) -> Result<(), PipelineError> {
    if !recipe.measure_accuracy || recipe.calibration_data.is_none() {
        return Ok(());
    }
    let Some(output) = model.graph.outputs.last() else {
        return Ok(());
    };
    let dims = crate::runtime::backend::value_dims(output).unwrap_or_default();
    match dims.get(1) {
        Some(&Some(classes)) if classes != i64::from(recipe.file.num_classes) => {
            Err(PipelineError::Recipe(RecipeError::Field {
                source_name: recipe.source_name.clone(),
                field: "num_classes".into(),
                message: format!(
                    "{}, but the model's output '{}' has {classes} channels (shape {:?}); the accuracy pass scores them as classes",
                    recipe.file.num_classes,
                    output.name(),
                    dims.iter().map(|d| d.unwrap_or(-1)).collect::<Vec<_>>()
                ),
            }))
        }
        _ => Ok(()),
    }
}

/// The external data files a model reads, each once.
fn external_files(model: &onnx::Model) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = model.origins.values().map(|o| o.file.clone()).collect();
    files.sort();
    files.dedup();
    files
}
