//! The precision stage of `compile` (and all of `calibrate`): calibrate INT8 on the recipe's images through
//! the executor's tensor hook, then lower the graph to a Q/DQ INT8 graph and a strongly typed FP16 graph, and
//! write the legacy calibration cache and the scales as JSON.

use super::{PipelineError, Progress};
use crate::calib::{self, cache, CollectOptions, CollectReport, Method, ScaleTable};
use crate::data::cityscapes::Dataset;
use crate::data::ImageLimits;
use crate::exec::{ExecOptions, Executor};
use crate::manifest::Manifest;
use crate::onnx::{self, Model, SaveOptions};
use crate::passes::{fp16, qdq};
use crate::recipe::{CalibrationMethod, Precision, Recipe};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

pub const FP16_MODEL: &str = "model.fp16.onnx";
pub const INT8_MODEL: &str = "model.int8.qdq.onnx";
pub const CALIBRATION_CACHE: &str = "calibration.cache";
pub const SCALES_JSON: &str = "scales.json";

/// What the precision stage did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrecisionReport {
    pub calibration: Option<CollectReport>,
    pub fp16: Option<fp16::Fp16Report>,
    pub int8: Option<qdq::QdqReport>,
    /// Files written, relative to the output folder.
    pub artifacts: Vec<String>,
}

/// Builds the lower-precision graphs the recipe asks for from `model` (simplified, usually fused) and
/// writes them with the calibration files into `out_dir`.
pub fn lower(
    recipe: &Recipe,
    model: &Model,
    out_dir: &Path,
    progress: &dyn Progress,
    manifest: &mut Manifest,
) -> Result<PrecisionReport, PipelineError> {
    let mut report = PrecisionReport::default();
    let wants = |p| recipe.file.precisions.contains(&p);
    let mut table = None;
    if wants(Precision::Int8) {
        let (t, collected) = calibrate(recipe, model, progress)?;
        manifest.step("calibrate", collected.run_seconds, &collected);
        report.calibration = Some(collected);
        table = Some(t);
    }
    if wants(Precision::Fp16) {
        progress.stage("lowering to FP16");
        let t = Instant::now();
        let mut m = model.clone();
        // Activations the calibration saw beyond FP16's range keep their nodes in FP32.
        let opts = fp16::Fp16Options {
            activation_amax: table
                .as_ref()
                .map(|t| t.tensors.iter().map(|(n, s)| (n.clone(), s.amax)).collect())
                .unwrap_or_default(),
            ..Default::default()
        };
        let r = fp16::run(&mut m, &opts).map_err(|e| lowering("FP16", e))?;
        save(&m, out_dir, FP16_MODEL, &mut report)?;
        manifest.step("fp16", t.elapsed().as_secs_f64(), &r);
        report.fp16 = Some(r);
    }
    if let Some(table) = &table {
        progress.stage("inserting Q/DQ");
        let t = Instant::now();
        let mut m = model.clone();
        let r = qdq::run(&mut m, table, &qdq::QdqOptions::default())
            .map_err(|e| lowering("INT8 (Q/DQ)", e))?;
        save(&m, out_dir, INT8_MODEL, &mut report)?;
        write(
            out_dir,
            CALIBRATION_CACHE,
            cache::write(table, cache::TRT_10_3),
        )?;
        write(out_dir, SCALES_JSON, table.to_json())?;
        report.artifacts.push(CALIBRATION_CACHE.into());
        report.artifacts.push(SCALES_JSON.into());
        manifest.step("int8", t.elapsed().as_secs_f64(), &r);
        report.int8 = Some(r);
    }
    Ok(report)
}

/// Runs the recipe's calibration images through the executor and picks a range for every activation the
/// Q/DQ pass will quantize. Images are read one at a time, so memory does not grow with their number.
pub fn calibrate(
    recipe: &Recipe,
    model: &Model,
    progress: &dyn Progress,
) -> Result<(ScaleTable, CollectReport), PipelineError> {
    let field = |f: &str, m: String| {
        PipelineError::Recipe(crate::recipe::RecipeError::Field {
            source_name: recipe.source_name.clone(),
            field: f.into(),
            message: m,
        })
    };
    let (Some(spec), Some(root)) = (&recipe.file.calibration, &recipe.calibration_data) else {
        return Err(field(
            "calibration",
            "precision int8 needs a calibration section (data, split, images)".into(),
        ));
    };
    let hw = match recipe.shapes.opt.as_slice() {
        [_, _, h, w] => (*h as u32, *w as u32),
        other => return Err(field("input.shape", format!("{other:?} is not NCHW"))),
    };
    progress.stage("calibrating INT8");
    let dataset =
        Dataset::open(root, Some(&spec.split)).map_err(|e| PipelineError::Data(Box::new(e)))?;
    let samples = dataset.select(spec.images as usize);
    let observe = qdq::activations(model, &qdq::QdqOptions::default())
        .map_err(|e| lowering("INT8 (Q/DQ)", e))?;
    let exec =
        Executor::new(model, ExecOptions::default()).map_err(|source| PipelineError::Exec {
            what: "preparing the calibration run".into(),
            source,
        })?;
    let inputs = samples.iter().map(|s| {
        dataset
            .load(s, Some(hw), ImageLimits::default())
            .map(|l| HashMap::from([(recipe.input_name.clone(), l.input)]))
    });
    let opts = CollectOptions {
        observe: Some(observe),
        progress: true,
        expected: Some(samples.len() as u64),
    };
    let collection = calib::collect(&exec, inputs, &opts).map_err(calib_error)?;
    let method = match spec.method {
        CalibrationMethod::Entropy => Method::Entropy,
        CalibrationMethod::Max => Method::Max,
        CalibrationMethod::Percentile => Method::Percentile(spec.percentile),
    };
    Ok((collection.scales(method), collection.report))
}

fn calib_error(e: calib::CalibError) -> PipelineError {
    PipelineError::Calibration(Box::new(e))
}

fn lowering(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> PipelineError {
    PipelineError::Lowering {
        what: what.to_string(),
        source: Box::new(e),
    }
}

fn save(
    model: &Model,
    out_dir: &Path,
    name: &str,
    report: &mut PrecisionReport,
) -> Result<(), PipelineError> {
    onnx::save(model, &out_dir.join(name), &SaveOptions::default()).map_err(|source| {
        PipelineError::Step {
            what: format!("saving {name}"),
            source,
        }
    })?;
    report.artifacts.push(name.to_string());
    Ok(())
}

fn write(out_dir: &Path, name: &str, text: String) -> Result<(), PipelineError> {
    let path = out_dir.join(name);
    crate::fsutil::write_atomic(&path, text.as_bytes())
        .map_err(|source| PipelineError::Io { path, source })
}
