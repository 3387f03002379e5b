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
use crate::recipe::{CalibrationMethod, CalibrationSpec, Precision, Recipe};
use crate::report::evaluate::{evaluate, EvalOptions};
use crate::report::ClassScores;
use crate::runtime::backend::{Backend, CpuBackend};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

pub const FP16_MODEL: &str = "model.fp16.onnx";
pub const INT8_MODEL: &str = "model.int8.qdq.onnx";
pub const CALIBRATION_CACHE: &str = "calibration.cache";
pub const SCALES_JSON: &str = "scales.json";

/// One precision's accuracy on the evaluation split, through the CPU executor.
#[derive(Debug, Clone, Serialize)]
pub struct PrecisionAccuracy {
    pub precision: Precision,
    pub scores: ClassScores,
    /// Fraction of evaluated pixels whose class equals FP32's.
    pub agreement_with_fp32: f64,
    pub miou_delta_vs_fp32: f64,
}

/// Accuracy of every graph built, on the calibration set's `val` split (the recipe's `accuracy.images` of
/// it).
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyReport {
    pub split: String,
    /// Images scored.
    pub images: usize,
    /// Labelled images in the split.
    pub split_images: usize,
    pub precisions: Vec<PrecisionAccuracy>,
}

/// What the precision stage did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrecisionReport {
    pub calibration: Option<CollectReport>,
    /// `None` when the data has no labelled `val` split.
    pub accuracy: Option<AccuracyReport>,
    pub fp16: Option<fp16::Fp16Report>,
    pub int8: Option<qdq::QdqReport>,
    /// The nodes kept out of INT8 to meet the recipe's `calibration.miou_budget`.
    pub mixed_precision: Option<crate::debug::SearchReport>,
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
    let mut fp16_model = None;
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
                .map(ScaleTable::observed_max)
                .unwrap_or_default(),
            ..Default::default()
        };
        let r = fp16::run(&mut m, &opts).map_err(|e| lowering("FP16", e))?;
        save(&m, out_dir, FP16_MODEL, &mut report)?;
        manifest.step("fp16", t.elapsed().as_secs_f64(), &r);
        report.fp16 = Some(r);
        fp16_model = Some(m);
    }
    let mut graphs = vec![(Precision::Fp32, model.clone())];
    graphs.extend(fp16_model.map(|m| (Precision::Fp16, m)));
    if let Some(table) = &table {
        progress.stage("inserting Q/DQ");
        let t = Instant::now();
        // The recipe's exclusions, and the mixed-precision search when it sets an mIoU budget.
        let (qdq_opts, mixed) =
            crate::debug::pipeline::recipe_qdq_options(recipe, model, table, true)
                .map_err(|e| lowering("INT8 (Q/DQ)", e))?;
        if let Some(mixed) = mixed {
            let name = crate::debug::pipeline::MIXED_PRECISION_JSON;
            let json = serde_json::to_string_pretty(&mixed).unwrap_or_default();
            write(out_dir, name, json)?;
            report.artifacts.push(name.into());
            manifest.step("mixed_precision", mixed.seconds, &mixed);
            report.mixed_precision = Some(mixed);
        }
        let mut m = model.clone();
        let r = qdq::run(&mut m, table, &qdq_opts).map_err(|e| lowering("INT8 (Q/DQ)", e))?;
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
        graphs.push((Precision::Int8, m));
    }
    if graphs.len() > 1 && recipe.measure_accuracy {
        let t = Instant::now();
        report.accuracy = accuracy(recipe, &graphs, progress)?;
        if let Some(a) = &report.accuracy {
            manifest.step("accuracy", t.elapsed().as_secs_f64(), a);
        }
    }
    Ok(report)
}

/// Runs every graph over the labelled `val` split of the recipe's calibration data with the report's
/// evaluation (the official one: logits upsampled to the label size, argmax, one confusion matrix for the
/// split) and compares each with FP32 pixel by pixel. `None` when there is no such split.
fn accuracy(
    recipe: &Recipe,
    graphs: &[(Precision, Model)],
    progress: &dyn Progress,
) -> Result<Option<AccuracyReport>, PipelineError> {
    const SPLIT: &str = "val";
    let Some(root) = &recipe.calibration_data else {
        return Ok(None);
    };
    let mut dataset = match Dataset::open(root, Some(SPLIT)) {
        Ok(d) if d.samples.iter().all(|s| s.label.is_some()) && !d.samples.is_empty() => d,
        _ => {
            log::info!(
                "no labelled '{SPLIT}' split under {}: accuracy not measured",
                root.display()
            );
            return Ok(None);
        }
    };
    let split_images = dataset.samples.len();
    dataset.keep_selection(recipe.file.accuracy.images as usize);
    progress.stage("measuring accuracy per precision");
    let backends = graphs
        .iter()
        .map(|(p, m)| {
            let name = Path::new(crate::report::precision_name(*p));
            CpuBackend::from_model(m, name, ExecOptions::default())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PipelineError::Accuracy(e.to_string()))?;
    let refs: Vec<&dyn Backend> = backends.iter().map(|b| b as &dyn Backend).collect();
    let opts = EvalOptions {
        classes: recipe.file.num_classes as usize,
        keep_samples: 0,
        ..Default::default()
    };
    let eval =
        evaluate(&dataset, &refs, &opts).map_err(|e| PipelineError::Accuracy(e.to_string()))?;
    let fp32_miou = eval.matrices[0].scores().miou;
    let precisions = graphs
        .iter()
        .zip(&eval.matrices)
        .enumerate()
        .map(|(i, ((p, _), m))| {
            let scores = m.scores();
            PrecisionAccuracy {
                precision: *p,
                agreement_with_fp32: eval.agreement(i),
                miou_delta_vs_fp32: scores.miou - fp32_miou,
                scores,
            }
        })
        .collect();
    Ok(Some(AccuracyReport {
        split: SPLIT.into(),
        images: eval.images,
        split_images,
        precisions,
    }))
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
    let coverage = coverage(model)?;
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
        observe: Some(coverage.observe.clone()),
        progress: true,
        expected: Some(samples.len() as u64),
    };
    let mut collection = calib::collect(&exec, inputs, &opts).map_err(calib_error)?;
    // Only a Q/DQ value never seen is an error in the making; the cache's extra names are best effort
    // (an integer tensor whose type the graph does not record, say).
    collection
        .report
        .missing
        .retain(|n| coverage.required.contains(n));
    if let Some((name, count)) = collection.report.non_finite.iter().next() {
        // A model that makes NaN or inf from real images is broken for every precision; the scales of
        // those tensors cover the finite values only.
        log::warn!(
            "calibration: {} tensors held NaN or inf (e.g. '{name}': {count} values); their INT8 scales cover the finite values only",
            collection.report.non_finite.len()
        );
    }
    let mut table = collection.scales(method_of(spec));
    coverage.complete(&mut table);
    Ok((table, collection.report))
}

/// What calibration watches: the Q/DQ graph's activations, and the rest of the graph's for the legacy
/// cache, which covers every activation (see `calib::coverage`).
pub fn coverage(model: &Model) -> Result<calib::coverage::Coverage, PipelineError> {
    let quantized = qdq::activations(model, &qdq::QdqOptions::default())
        .map_err(|e| lowering("INT8 (Q/DQ)", e))?;
    Ok(calib::coverage::Coverage::with_required(model, quantized))
}

/// The calibrator a recipe's calibration section asks for.
pub fn method_of(spec: &CalibrationSpec) -> Method {
    match spec.method {
        CalibrationMethod::Entropy => Method::Entropy,
        CalibrationMethod::Max => Method::Max,
        CalibrationMethod::Percentile => Method::Percentile(spec.percentile),
    }
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
    let saved =
        onnx::save(model, &out_dir.join(name), &SaveOptions::default()).map_err(|source| {
            PipelineError::Step {
                what: format!("saving {name}"),
                source,
            }
        })?;
    // The model and the data files it reads (weights unchanged from an external-data export stay there).
    let files = std::iter::once(name).chain(
        saved
            .data_files
            .iter()
            .chain(&saved.reused_data_files)
            .map(String::as_str),
    );
    for f in files {
        if !report.artifacts.iter().any(|a| a == f) {
            report.artifacts.push(f.to_string());
        }
    }
    Ok(())
}

fn write(out_dir: &Path, name: &str, text: String) -> Result<(), PipelineError> {
    let path = out_dir.join(name);
    crate::fsutil::write_atomic(&path, text.as_bytes())
        .map_err(|source| PipelineError::Io { path, source })
}
