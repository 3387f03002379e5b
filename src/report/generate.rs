//! `ocrnet-edge report`: find (or build) the graph of each precision, evaluate them all on a labelled split,
//! time them, assemble and gate the report, and write `report.json`, `report.md` and `report.html`.

use super::evaluate::{self, EvalError, EvalOptions};
use super::{html, markdown, DataInfo, Measured, Meta, Report, Thresholds};
use crate::bench::LatencyStats;
use crate::data::cityscapes::{Dataset, DatasetError, CLASS_NAMES};
use crate::data::ImageLimits;
use crate::exec::ExecOptions;
use crate::pipeline::{self, precision, PipelineError};
use crate::recipe::{Precision, Recipe, RecipeError};
use crate::runtime::backend::{self, Backend, BackendError, BackendKind};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";
pub const REPORT_HTML: &str = "report.html";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("{path}: not found ({hint})")]
    MissingArtifact { path: PathBuf, hint: String },
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("building the graphs to report on: {0}")]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    Data(#[from] DatasetError),
    #[error("evaluating: {0}")]
    Eval(#[from] EvalError),
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("{model}: {reason}")]
    Model { model: PathBuf, reason: String },
    #[error("baseline {0}")]
    Baseline(String),
    #[error("thresholds: {0}")]
    Thresholds(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the report is about.
pub enum Source {
    /// A recipe's compile artifacts: from `artifacts` when given (they must be there), else from the
    /// recipe's output folder, where `compile` runs first if any is missing.
    Recipe {
        recipe: Box<Recipe>,
        artifacts: Option<PathBuf>,
    },
    /// Any model: its FP16 and INT8 graphs are built on the spot, calibrating on the data's `train` split
    /// (or the evaluated split when there is no `train`).
    Model(PathBuf),
}

pub struct Request {
    pub source: Source,
    pub data: PathBuf,
    pub split: String,
    /// Score only this many images of the split, spread over its cities as calibration picks them (`None`:
    /// all of them).
    pub images: Option<usize>,
    /// FP32 always runs first, as the reference, whether listed or not.
    pub precisions: Vec<Precision>,
    pub backend: BackendKind,
    pub baseline: Option<PathBuf>,
    pub thresholds: Thresholds,
    /// Timed inferences per precision, after two untimed ones; 0 skips timing.
    pub latency_runs: usize,
    pub keep_samples: usize,
    /// Run the precision debugger's `diff` of each lower precision against FP32 on this many images of
    /// the split (0: not at all) and add where they depart to the report.
    pub diff_images: usize,
    pub out_dir: PathBuf,
}

/// Observes progress; must be callable from the evaluation's worker threads.
pub trait ReportProgress: Sync {
    fn stage(&self, _name: &str) {}
    fn images(&self, _total: u64) {}
    fn image_done(&self) {}
}

impl ReportProgress for () {}

/// Adapts a report progress to the compile pipeline's.
struct Stages<'a>(&'a dyn ReportProgress);

impl pipeline::Progress for Stages<'_> {
    fn stage(&self, name: &str) {
        self.0.stage(name);
    }
}

pub struct Outcome {
    pub report: Report,
    /// `report.json`, `report.md`, `report.html`.
    pub files: Vec<PathBuf>,
}

/// Builds, writes and returns the report (whether or not its gate passed: the caller decides the exit).
pub fn generate(req: &Request, progress: &dyn ReportProgress) -> Result<Outcome, ReportError> {
    req.thresholds.validate().map_err(ReportError::Thresholds)?;
    let baseline = match &req.baseline {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
                path: path.clone(),
                source,
            })?;
            let name = path.display().to_string();
            let old = Report::from_json(&text, &name).map_err(ReportError::Baseline)?;
            // Per-precision mIoU over other classes is another quantity, not a regression.
            if old.classes != CLASS_NAMES {
                return Err(ReportError::Baseline(format!(
                    "{name}: its {} classes ({}) are not this report's {} Cityscapes classes",
                    old.classes.len(),
                    old.classes.join(", "),
                    CLASS_NAMES.len()
                )));
            }
            Some((name, old))
        }
        None => None,
    };
    let mut dataset = Dataset::open(&req.data, Some(&req.split))?;
    let split_images = dataset.samples.len();
    if let Some(n) = req.images {
        dataset.keep_selection(n);
    }
    let mut precisions = vec![Precision::Fp32];
    precisions.extend(req.precisions.iter().filter(|p| **p != Precision::Fp32));

    let Models {
        name: source_name,
        files: models,
        pin,
    } = models(req, &dataset, &precisions, progress)?;
    let mixed_precision = match &req.source {
        Source::Recipe { recipe, artifacts } => {
            let dir = artifacts
                .clone()
                .unwrap_or_else(|| recipe.output_dir.clone());
            read_search(&dir.join(crate::debug::pipeline::MIXED_PRECISION_JSON))?
        }
        Source::Model(_) => None,
    };
    progress.stage("loading the graphs");
    let backends = models
        .iter()
        .map(|m| {
            let b = open(req.backend, m)?;
            Ok(match pin {
                // A dynamic model runs at the size its lower precisions were built for, so that the
                // report compares precisions and not resolutions.
                Some(hw) if b.input_hw().is_none() => Box::new(Pinned { inner: b, hw }),
                _ => b,
            })
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    let refs: Vec<&dyn Backend> = backends.iter().map(|b| b.as_ref()).collect();

    progress.stage("evaluating");
    progress.images(dataset.samples.len() as u64);
    let tick = || progress.image_done();
    let eval = evaluate::evaluate(
        &dataset,
        &refs,
        &EvalOptions {
            classes: CLASS_NAMES.len(),
            keep_samples: req.keep_samples,
            limits: ImageLimits::default(),
            on_image: Some(&tick),
            parallel: 0,
        },
    )?;

    let mut latencies = Vec::new();
    if req.latency_runs > 0 {
        progress.stage("timing each precision");
        let first = &dataset.samples[0];
        for b in &refs {
            let loaded = dataset.load(first, b.input_hw(), ImageLimits::default())?;
            latencies.push(Some(time(*b, &loaded.input, req.latency_runs)?));
        }
    } else {
        latencies = vec![None; refs.len()];
    }

    let measured: Vec<Measured> = precisions
        .iter()
        .enumerate()
        .map(|(i, p)| Measured {
            precision: *p,
            model: models[i]
                .file_name()
                .map_or(models[i].display().to_string(), |n| {
                    n.to_string_lossy().into_owned()
                }),
            matrix: &eval.matrices[i],
            agreement_with_fp32: eval.agreement(i),
            latency: latencies[i],
        })
        .collect();
    let meta = Meta {
        source: source_name,
        backend: refs[0].name().to_string(),
        data: DataInfo {
            root: req.data.display().to_string(),
            split: req.split.clone(),
            images: eval.images,
            pixels: eval.pixels,
            split_images: (split_images != eval.images).then_some(split_images),
        },
        input_hw: refs[0].input_hw(),
        class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
    };
    // The evaluation's executors go before the debugger's pair is loaded: with all five alive, `report
    // --diff 1` of HRNet-W48 at 1024×2048 peaked at 5.1 GB of RSS, 3.8 GB without.
    drop(refs);
    drop(backends);
    let mut report = Report::assemble(
        meta,
        &measured,
        baseline.as_ref().map(|(n, r)| (n.as_str(), r)),
        &req.thresholds,
    );
    report.mixed_precision = mixed_precision;
    let mut growth_svg = None;
    if req.diff_images > 0 && precisions.len() > 1 {
        let graphs = match (&req.source, req.backend) {
            // The engines' ONNX graphs sit beside them.
            (Source::Recipe { recipe, artifacts }, BackendKind::Trt) => artifact_files(
                recipe.file.fuse,
                &artifacts
                    .clone()
                    .unwrap_or_else(|| recipe.output_dir.clone()),
                &precisions,
            ),
            _ => models.clone(),
        };
        let diffs = divergence(req, &dataset, &precisions, &graphs, progress)?;
        let refs: Vec<&crate::debug::DiffReport> = diffs.iter().collect();
        growth_svg = Some(crate::debug::error_growth_svg(&refs));
        report.divergence = precisions[1..]
            .iter()
            .zip(&diffs)
            .map(|(p, d)| super::Divergence {
                precision: *p,
                images: d.inputs,
                compared: d.compared,
                threshold: d.threshold,
                first: d.first.as_ref().map(super::DivergentValue::of),
                worst: d.worst.iter().map(super::DivergentValue::of).collect(),
            })
            .collect();
    }

    progress.stage("writing the report");
    let json = serde_json::to_string_pretty(&report).expect("a report serialises");
    let files = [
        (REPORT_JSON, json + "\n"),
        (REPORT_MD, markdown::render(&report)),
        (
            REPORT_HTML,
            html::render(&report, &eval.samples, growth_svg.as_deref()),
        ),
    ];
    std::fs::create_dir_all(&req.out_dir).map_err(|source| ReportError::Io {
        path: req.out_dir.clone(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, text) in files {
        let path = req.out_dir.join(name);
        crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(Outcome {
        report,
        files: written,
    })
}

/// The search `calibrate --miou-budget` left in the artifacts, if any.
fn read_search(path: &Path) -> Result<Option<crate::debug::SearchReport>, ReportError> {
    if !path.is_file() {
        return Ok(None);
    }
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// The debugger's `diff` of each lower precision's graph against FP32's on the split's first images.
fn divergence(
    req: &Request,
    dataset: &Dataset,
    precisions: &[Precision],
    graphs: &[PathBuf],
    progress: &dyn ReportProgress,
) -> Result<Vec<crate::debug::DiffReport>, ReportError> {
    use crate::debug::{diff, DiffOptions};
    use crate::exec::Executor;
    progress.stage("comparing every tensor with FP32");
    let load = |path: &Path| -> Result<(crate::onnx::Model, Executor), ReportError> {
        let model_error = |reason: String| ReportError::Model {
            model: path.to_path_buf(),
            reason,
        };
        let m = crate::onnx::load(path).map_err(|e| model_error(e.to_string()))?;
        // The two graphs run at once: buffer pools on both sides would add up (see
        // ExecOptions::reuse_buffers).
        let opts = ExecOptions {
            reuse_buffers: false,
            ..Default::default()
        };
        let e = Executor::new(&m, opts).map_err(|e| model_error(e.to_string()))?;
        Ok((m, e))
    };
    let (fp32, reference) = load(&graphs[0])?;
    let input = reference
        .input_names()
        .next()
        .map(str::to_string)
        .ok_or_else(|| ReportError::Model {
            model: graphs[0].clone(),
            reason: "no graph input".into(),
        })?;
    let hw = backend::static_hw(&fp32, &input);
    let opset = fp32.opset().unwrap_or(1);
    let mut out = Vec::new();
    for (p, path) in precisions.iter().zip(graphs).skip(1) {
        let (_, lowered) = load(path)?;
        let inputs = dataset.samples.iter().take(req.diff_images).map(|s| {
            dataset
                .load(s, hw, ImageLimits::default())
                .map(|l| std::collections::HashMap::from([(input.clone(), l.input)]))
        });
        let name = super::precision_name(*p);
        let r = diff(
            &reference,
            &lowered,
            name,
            opset,
            inputs,
            &DiffOptions::for_precision(name),
        )
        .map_err(|e| ReportError::Model {
            model: path.clone(),
            reason: format!("comparing with FP32: {e}"),
        })?;
        out.push(r);
    }
    Ok(out)
}

fn open(kind: BackendKind, model: &Path) -> Result<Box<dyn Backend>, ReportError> {
    Ok(backend::open(kind, model, ExecOptions::default())?)
}

/// A dynamic-size model fed at one fixed size: every image is resized to `hw`, as for a static model.
struct Pinned {
    inner: Box<dyn Backend>,
    hw: (u32, u32),
}

impl Backend for Pinned {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn input_hw(&self) -> Option<(u32, u32)> {
        Some(self.hw)
    }
    fn infer(&self, input: crate::tensor::Tensor) -> Result<crate::tensor::Tensor, BackendError> {
        self.inner.infer(input)
    }
    fn last_peak_bytes(&self) -> Option<usize> {
        self.inner.last_peak_bytes()
    }
}

/// Two untimed inferences, then `runs` timed ones, one at a time.
fn time(
    b: &dyn Backend,
    input: &crate::tensor::Tensor,
    runs: usize,
) -> Result<LatencyStats, ReportError> {
    for _ in 0..2 {
        b.infer(input.clone())?;
    }
    let mut samples = Vec::with_capacity(runs);
    let wall = Instant::now();
    for _ in 0..runs {
        let x = input.clone();
        let t = Instant::now();
        b.infer(x)?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // Infer calls take well over a nanosecond, so the wall time is positive and the stats defined.
    Ok(LatencyStats::of(&samples, wall.elapsed().as_secs_f64()).expect("runs > 0"))
}

/// What a report runs.
struct Models {
    /// The name the report goes by.
    name: String,
    /// The model file of each precision, in `precisions`' order.
    files: Vec<PathBuf>,
    /// The input size a dynamic FP32 model must run at to match graphs built for one size (`--model`
    /// with lower precisions).
    pin: Option<(u32, u32)>,
}

fn models(
    req: &Request,
    dataset: &Dataset,
    precisions: &[Precision],
    progress: &dyn ReportProgress,
) -> Result<Models, ReportError> {
    match &req.source {
        Source::Recipe { recipe, artifacts } if req.backend == BackendKind::Trt => {
            // Engines are built by `compile` in a TensorRT build; a report does not build them.
            if !crate::engine::AVAILABLE {
                return Err(BackendError::NotBuilt("trt").into());
            }
            let dir = artifacts.clone().unwrap_or_else(|| recipe.output_dir.clone());
            let files: Vec<PathBuf> = precisions
                .iter()
                .map(|p| dir.join(crate::engine::settings::engine_file(*p)))
                .collect();
            if let Some(missing) = files.iter().find(|f| !f.is_file()) {
                return Err(ReportError::MissingArtifact {
                    path: missing.clone(),
                    hint: format!(
                        "build the engines with `{}` in a TensorRT build (feature `tensorrt`)",
                        recipe.compile_command()
                    ),
                });
            }
            Ok(Models {
                name: recipe.source_name.clone(),
                files,
                pin: None,
            })
        }
        Source::Model(path) if req.backend == BackendKind::Trt && precisions.len() > 1 => {
            Err(ReportError::Model {
                model: path.clone(),
                reason: "--backend trt runs a recipe's engines: pass the recipe (and --artifacts) instead of --model, or --precisions fp32 with an engine file as --model".into(),
            })
        }
        Source::Recipe { recipe, artifacts } => {
            let dir = artifacts
                .clone()
                .unwrap_or_else(|| recipe.output_dir.clone());
            let files = artifact_files(recipe.file.fuse, &dir, precisions);
            if let Some(missing) = files.iter().find(|f| !f.is_file()) {
                if artifacts.is_some() {
                    return Err(ReportError::MissingArtifact {
                        path: missing.clone(),
                        hint: format!(
                            "run `{}` with these precisions first",
                            recipe.compile_command()
                        ),
                    });
                }
                let mut r = (**recipe).clone();
                r.file.precisions = lower_precisions(precisions);
                r.measure_accuracy = false;
                pipeline::compile(&r, Some(&dir), &Stages(progress))?;
            }
            Ok(Models {
                name: recipe.source_name.clone(),
                files,
                pin: None,
            })
        }
        Source::Model(path) => {
            let dir = req.out_dir.join("graphs");
            if precisions.len() == 1 {
                return Ok(Models {
                    name: path.display().to_string(),
                    files: vec![path.clone()],
                    pin: None,
                });
            }
            let (recipe, hw) = model_recipe(path, dataset, &req.data, &req.split, precisions, &dir)?;
            pipeline::compile(&recipe, Some(&dir), &Stages(progress))?;
            let mut files = artifact_files(true, &dir, precisions);
            // FP32 runs the model as given, not our rewrite of it.
            files[0] = path.clone();
            Ok(Models {
                name: path.display().to_string(),
                files,
                pin: Some(hw),
            })
        }
    }
}

fn lower_precisions(precisions: &[Precision]) -> Vec<Precision> {
    let lower: Vec<Precision> = precisions
        .iter()
        .copied()
        .filter(|p| *p != Precision::Fp32)
        .collect();
    if lower.is_empty() {
        vec![Precision::Fp32]
    } else {
        lower
    }
}

/// Where `compile` puts each precision's graph.
pub fn artifact_files(fused: bool, dir: &Path, precisions: &[Precision]) -> Vec<PathBuf> {
    precisions
        .iter()
        .map(|p| {
            dir.join(match p {
                Precision::Fp32 if fused => pipeline::FUSED_MODEL,
                Precision::Fp32 => pipeline::SIMPLIFIED_MODEL,
                Precision::Fp16 => precision::FP16_MODEL,
                Precision::Int8 => precision::INT8_MODEL,
            })
        })
        .collect()
}

/// A recipe for a bare model: its own input (static size, or the first image's size when dynamic), the
/// requested lower precisions, and calibration on the data; and that input size.
fn model_recipe(
    path: &Path,
    dataset: &Dataset,
    data: &Path,
    split: &str,
    precisions: &[Precision],
    out: &Path,
) -> Result<(Recipe, (u32, u32)), ReportError> {
    let model_error = |reason: String| ReportError::Model {
        model: path.to_path_buf(),
        reason,
    };
    let model = crate::onnx::load(path).map_err(|e| model_error(e.to_string()))?;
    let inputs: Vec<String> = model
        .graph
        .inputs
        .iter()
        .map(|v| v.name().to_string())
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(model_error(format!(
            "expected one graph input, found {}",
            inputs.len()
        )));
    };
    let (h, w) = match backend::static_hw(&model, input) {
        Some(hw) => hw,
        None => {
            let first = &dataset.samples[0];
            let img = crate::data::load_rgb(&first.image, ImageLimits::default())
                .map_err(|e| ReportError::Data(e.into()))?;
            (img.height(), img.width())
        }
    };
    let shape = vec![1, 3, h as i64, w as i64];
    let calib_split = if Dataset::open(data, Some("train")).is_ok_and(|d| !d.samples.is_empty()) {
        "train"
    } else {
        split
    };
    let yaml = format!(
        "# built by `ocrnet-edge report --model` for {model}\n\
         model: {model:?}\n\
         input: {{ name: {input:?}, shape: {shape:?} }}\n\
         precisions: [{precisions}]\n\
         calibration: {{ data: {data:?}, split: {calib_split:?}, images: 32 }}\n\
         output_dir: {out:?}\n",
        model = path.display().to_string(),
        precisions = lower_precisions(precisions)
            .iter()
            .map(|p| super::precision_name(*p))
            .collect::<Vec<_>>()
            .join(", "),
        data = data.display().to_string(),
        out = out.display().to_string(),
    );
    let mut recipe = Recipe::parse(
        &yaml,
        &format!("{} (report --model)", path.display()),
        Path::new(""),
    )?;
    recipe.measure_accuracy = false;
    Ok((recipe, (h, w)))
}
