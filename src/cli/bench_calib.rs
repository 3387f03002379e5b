//! `ocrnet-edge bench calib`: INT8 calibration's cost per image and peak memory next to NVIDIA TensorRT Model
//! Optimizer's ONNX PTQ (onnxruntime on the CPU), same run, same model file, same preprocessed images.
//!
//! The parent simplifies the recipe's model once (both sides get that file: Model Optimizer cannot run our
//! fused OCR ops, and the simplified graph is what compile calibrates before fusion), reads the recipe's
//! calibration images at its input size into one `[N, 3, H, W]` .npy, then runs each side in a child process
//! of its own, so each peak RSS is that side's alone and image decoding is counted by neither.

use anyhow::{bail, Context};
use clap::Args;
use ocrnet_edge::bench::{measure_output, median};
use ocrnet_edge::calib::{self, CollectOptions, CollectReport, Method};
use ocrnet_edge::data::cityscapes::Dataset;
use ocrnet_edge::data::ImageLimits;
use ocrnet_edge::exec::{ExecOptions, Executor};
use ocrnet_edge::onnx::{self, stats::human_bytes, SaveOptions};
use ocrnet_edge::passes::{self, SimplifyOptions};
use ocrnet_edge::recipe::Recipe;
use ocrnet_edge::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

const MODELOPT_PTQ: &str = include_str!("../../models/bench/modelopt_ptq.py");

#[derive(Debug, Args)]
pub struct CalibArgs {
    /// Recipe whose model, input shape and calibration section are used (default: the embedded one).
    pub recipe: Option<PathBuf>,
    /// Calibration images (default: the recipe's `calibration.images`).
    #[arg(long)]
    pub images: Option<usize>,
    /// Executor threads (0: one per core; onnxruntime uses every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Python interpreter with `nvidia-modelopt[onnx]`, for the peer measurement.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Keep the inputs and results here: the simplified model, inputs.npy, our scales.json, Model
    /// Optimizer's Q/DQ model and log (to compare the two calibrations tensor by tensor).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Internal: the measured side of `bench calib`.
#[derive(Debug, Args)]
pub struct CalibWorkerArgs {
    pub model: PathBuf,
    /// `[N, 3, H, W]` float32 .npy.
    #[arg(long)]
    pub inputs: PathBuf,
    #[arg(long)]
    pub input_name: String,
    /// A calibrator as printed: entropy, max, percentile(P).
    #[arg(long)]
    pub method: String,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Also write the scale table here.
    #[arg(long)]
    pub scales: Option<PathBuf>,
}

/// What the worker prints.
#[derive(Debug, Serialize, Deserialize)]
struct WorkerOutput {
    /// Histogram collection (forward passes with the hook), then the calibrator on every histogram;
    /// not the plain forward `collect` times after them.
    seconds: f64,
    scales_seconds: f64,
    tensors: usize,
    collect: CollectReport,
    /// A plain forward of each image after the calibration (the yardstick, one per hooked forward, so
    /// the two medians compare like with like on a machine whose speed drifts).
    plain_seconds_each: Vec<f64>,
    /// Median hooked forward over median plain forward.
    cost_vs_forward_median: f64,
}

/// One side's figures.
#[derive(Debug, Serialize)]
struct Side {
    name: String,
    images: usize,
    seconds: f64,
    seconds_per_image: f64,
    peak_rss_bytes: u64,
}

pub fn worker(a: &CalibWorkerArgs) -> anyhow::Result<ExitCode> {
    let model = onnx::load(&a.model).with_context(|| format!("loading {}", a.model.display()))?;
    let method: Method = a.method.parse().map_err(anyhow::Error::msg)?;
    let batch = ocrnet_edge::npy::read(&a.inputs)
        .with_context(|| format!("reading {}", a.inputs.display()))?;
    let shape = batch.shape.clone();
    let Some(&n) = shape.first().filter(|&&n| n > 0) else {
        bail!(
            "{}: expected [N, 3, H, W] with N >= 1, got {shape:?}",
            a.inputs.display()
        );
    };
    let per_image: Vec<usize> = std::iter::once(1)
        .chain(shape[1..].iter().copied())
        .collect();
    let values = batch.as_f32s();
    let size = values.len() / n;
    // What `compile` watches: more than Model Optimizer's quantized tensors, for the legacy cache.
    let coverage = ocrnet_edge::pipeline::precision::coverage(&model)?;
    let exec = Executor::new(
        &model,
        ExecOptions {
            threads: a.threads,
            ..Default::default()
        },
    )?;
    drop(model);
    let feed = |image: &[f32]| {
        Tensor::vec_f32(per_image.clone(), image.to_vec())
            .map(|t| HashMap::from([(a.input_name.clone(), t)]))
    };
    let inputs = values.chunks_exact(size).map(feed);
    let opts = CollectOptions {
        observe: Some(coverage.observe.clone()),
        progress: false,
        expected: Some(n as u64),
    };
    let start = Instant::now();
    let collection = calib::collect(&exec, inputs, &opts)?;
    let t = Instant::now();
    let mut table = collection.scales(method);
    coverage.complete(&mut table);
    let scales_seconds = t.elapsed().as_secs_f64();
    // `collect` ends with one plain forward, its own yardstick; Model Optimizer runs nothing like it, so
    // it is not part of the time compared.
    let seconds = start.elapsed().as_secs_f64() - collection.report.plain_forward_seconds;
    if let Some(path) = &a.scales {
        ocrnet_edge::fsutil::write_atomic(path, table.to_json().as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut plain_seconds_each = Vec::new();
    for image in values.chunks_exact(size) {
        let feed = feed(image)?;
        let t = Instant::now();
        exec.run(feed, &[], None)?;
        plain_seconds_each.push(t.elapsed().as_secs_f64());
    }
    let report = collection.report;
    let out = WorkerOutput {
        seconds,
        scales_seconds,
        tensors: table.len(),
        cost_vs_forward_median: median(&report.forward_seconds_each) / median(&plain_seconds_each),
        collect: report,
        plain_seconds_each,
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub fn bench(a: &CalibArgs) -> anyhow::Result<ExitCode> {
    let recipe = match &a.recipe {
        Some(path) => Recipe::load(path)?,
        None => Recipe::embedded_default()?,
    };
    let (Some(spec), Some(root)) = (&recipe.file.calibration, &recipe.calibration_data) else {
        bail!(
            "{}: field 'calibration': bench calib needs a calibration section (data, split, images)",
            recipe.source_name
        );
    };
    if !recipe.shapes.is_static() {
        bail!(
            "{}: field 'input.shape': bench calib needs a static input shape",
            recipe.source_name
        );
    }
    let hw = match recipe.shapes.opt.as_slice() {
        [1, 3, h, w] => (*h as u32, *w as u32),
        other => bail!(
            "{}: field 'input.shape': {other:?} is not [1, 3, H, W]",
            recipe.source_name
        ),
    };
    let method = ocrnet_edge::pipeline::precision::method_of(spec);
    let wanted = a.images.unwrap_or(spec.images as usize).max(1);
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let dir = match &a.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => scratch.path().to_path_buf(),
    };

    // The same file for both sides: the recipe's model, simplified at the recipe's shape.
    let mut model =
        onnx::load(&recipe.model).with_context(|| format!("loading {}", recipe.model.display()))?;
    let opts = SimplifyOptions {
        input_shapes: HashMap::from([(recipe.input_name.clone(), recipe.shapes.opt.clone())]),
        write_value_info: false,
    };
    passes::simplify(&mut model, &opts)
        .with_context(|| format!("simplifying {}", recipe.model.display()))?;
    let model_path = dir.join("model.onnx");
    onnx::save(&model, &model_path, &SaveOptions::default())?;
    drop(model);

    let dataset = Dataset::open(root, Some(&spec.split))
        .with_context(|| format!("opening {}", root.display()))?;
    let (loaded, problems) = dataset.load_selection(wanted, Some(hw), ImageLimits::default())?;
    for p in &problems {
        log::warn!("left out: {p}");
    }
    let images = loaded.len();
    let mut values = Vec::new();
    for l in &loaded {
        values.extend(l.input.as_f32s());
    }
    drop(loaded);
    let batch = Tensor::vec_f32(vec![images, 3, hw.0 as usize, hw.1 as usize], values)?;
    let inputs_path = dir.join("inputs.npy");
    ocrnet_edge::npy::write(&inputs_path, &batch)?;
    drop(batch);

    let mut worker = Command::new(std::env::current_exe()?);
    worker
        .args(["-q", "bench", "calib-worker"])
        .arg(&model_path)
        .arg("--inputs")
        .arg(&inputs_path)
        .args(["--input-name", &recipe.input_name])
        .args(["--method", &method.to_string()])
        .args(["--threads", &a.threads.to_string()])
        .arg("--scales")
        .arg(dir.join("scales.json"));
    let (run, out) = measure_output(&mut worker).context("running the calibration worker")?;
    let ours: WorkerOutput = serde_json::from_str(out.trim())
        .with_context(|| format!("the calibration worker printed {out:?}"))?;
    let ours_side = Side {
        name: format!("ocrnet-edge ({method})"),
        images,
        seconds: ours.seconds,
        seconds_per_image: ours.seconds / images as f64,
        peak_rss_bytes: run.peak_rss_bytes,
    };

    let peer = modelopt(a, &method, &model_path, &inputs_path, &dir)?;
    report(a, &recipe, hw, &ours, &ours_side, peer.as_ref())
}

/// Model Optimizer's PTQ on the same file and images, or why it was not measured.
fn modelopt(
    a: &CalibArgs,
    method: &Method,
    model: &Path,
    inputs: &Path,
    scratch: &Path,
) -> anyhow::Result<Result<Side, String>> {
    let name = match method {
        Method::Entropy => "entropy",
        Method::Max => "max",
        Method::Percentile(_) => {
            return Ok(Err(
                "Model Optimizer's ONNX PTQ has no percentile calibrator".into(),
            ))
        }
    };
    let available = Command::new(&a.python)
        .args(["-c", "import modelopt.onnx.quantization, onnxruntime"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        return Ok(Err(format!(
            "`{} -c 'import modelopt.onnx.quantization'` failed (pip install 'nvidia-modelopt[onnx]')",
            a.python
        )));
    }
    // It rewrites its input file in place (opset and shape updates), so it gets a copy of its own.
    let own = scratch.join("modelopt.input.onnx");
    std::fs::copy(model, &own).with_context(|| format!("copying {}", model.display()))?;
    // Its progress bars and warnings go to a log, not over our table.
    let log_path = scratch.join("modelopt.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(&a.python);
    cmd.args(["-c", MODELOPT_PTQ])
        .arg(&own)
        .arg(inputs)
        .arg(scratch.join("modelopt.int8.onnx"))
        .arg(name)
        .stderr(log);
    let (run, out) = match measure_output(&mut cmd) {
        Ok(r) => r,
        Err(e) => {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            bail!(
                "Model Optimizer's PTQ failed: {e}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };
    #[derive(Deserialize)]
    struct Printed {
        seconds: f64,
        images: usize,
    }
    let p: Printed = serde_json::from_str(out.lines().last().unwrap_or("").trim())
        .with_context(|| format!("Model Optimizer's script printed {out:?}"))?;
    Ok(Ok(Side {
        name: format!("Model Optimizer ONNX PTQ ({name}, onnxruntime CPU)"),
        images: p.images,
        seconds: p.seconds,
        seconds_per_image: p.seconds / p.images.max(1) as f64,
        peak_rss_bytes: run.peak_rss_bytes,
    }))
}

fn report(
    a: &CalibArgs,
    recipe: &Recipe,
    hw: (u32, u32),
    ours: &WorkerOutput,
    ours_side: &Side,
    peer: Result<&Side, &String>,
) -> anyhow::Result<ExitCode> {
    let c = &ours.collect;
    if a.json {
        let v = serde_json::json!({
            "recipe": recipe.source_name,
            "model": recipe.model.display().to_string(),
            "input_hw": [hw.0, hw.1],
            "ocrnet_edge": ours_side,
            "ocrnet_edge_detail": ours,
            "cost_per_image_vs_forward": ours.cost_vs_forward_median,
            "model_optimizer": peer.ok(),
            "model_optimizer_missing": peer.err(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} at {}x{}, {} image(s); each side in its own process, image decoding excluded",
        recipe.model.display(),
        hw.1,
        hw.0,
        ours_side.images
    );
    println!(
        "{:<52} {:>9} {:>10} {:>11}",
        "", "total s", "s / image", "peak RSS"
    );
    for s in std::iter::once(ours_side).chain(peer.ok()) {
        println!(
            "{:<52} {:>9.2} {:>10.2} {:>11}",
            s.name,
            s.seconds,
            s.seconds_per_image,
            human_bytes(s.peak_rss_bytes)
        );
    }
    println!(
        "ocrnet-edge: {} tensors observed; forward with histograms {:.2} s/image against a plain forward {:.2} s (medians over the images): {:.2}x (goal <= 1.1x); histograms {:.2} s, calibrator {:.2} s",
        ours.tensors,
        median(&c.forward_seconds_each),
        median(&ours.plain_seconds_each),
        ours.cost_vs_forward_median,
        c.collect_seconds,
        ours.scales_seconds
    );
    match peer {
        Ok(p) => println!(
            "Model Optimizer / ocrnet-edge: {:.1}x the time per image, {:.1}x the peak memory",
            p.seconds_per_image / ours_side.seconds_per_image,
            p.peak_rss_bytes as f64 / ours_side.peak_rss_bytes.max(1) as f64
        ),
        Err(why) => println!("Model Optimizer not measured: {why}"),
    }
    Ok(ExitCode::SUCCESS)
}
