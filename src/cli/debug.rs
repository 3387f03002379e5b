//! `ocrnet-edge diff` and `ocrnet-edge sensitivity`: the precision debugger (see `ocrnet_edge::debug`).

use anyhow::{bail, Context};
use ocrnet_edge::calib::{self, CollectOptions, Method, ScaleTable};
use ocrnet_edge::data::{self, cityscapes::Dataset, ImageLimits};
use ocrnet_edge::debug::{self, diff::DiffReport, DiffOptions};
use ocrnet_edge::exec::{ExecOptions, Executor};
use ocrnet_edge::onnx::{self, Model};
use ocrnet_edge::passes::{self, fp16, qdq, SimplifyOptions};
use ocrnet_edge::recipe::Recipe;
use ocrnet_edge::tensor::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// An ONNX model, or a recipe (.yaml/.yml) whose model, input size and calibration data are used.
    target: PathBuf,
    /// Lowered graphs to compare with FP32: fp16 (the FP16 pass), int8 (the Q/DQ pass, calibrated).
    #[arg(long, value_delimiter = ',', default_value = "fp16,int8", value_parser = ["fp16", "int8"])]
    precisions: Vec<String>,
    /// A Cityscapes-layout folder or a folder of images: the inputs compared (from --split) and, for
    /// int8, the calibration images (its `train` split when it has one).
    #[arg(long, conflicts_with = "input")]
    data: Option<PathBuf>,
    /// One PNG/JPEG image (HRNet preprocessing) or .npy NCHW tensor to compare on; int8 scales are then
    /// the max of each activation on this input.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Split of a Cityscapes folder the compared images come from.
    #[arg(long, default_value = "val")]
    split: String,
    /// How many images to compare on (spread over the cities).
    #[arg(long, default_value_t = 1)]
    images: usize,
    /// Calibration images for int8 with --data.
    #[arg(long, default_value_t = 8)]
    calibration_images: usize,
    /// Relative L2 error at which a value counts as diverged (default: 0.01 for fp16, 0.1 for int8).
    #[arg(long)]
    threshold: Option<f64>,
    /// Input shape for a model with dynamic dimensions, e.g. 1,3,512,1024.
    #[arg(long)]
    shape: Option<String>,
    /// Worker threads per executor (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also time one plain forward (no hook) of the FP32 graph and of each lowered graph on the first
    /// input, for comparison with the diff's own time.
    #[arg(long)]
    baseline: bool,
    /// Write the error along the graph as an SVG line chart.
    #[arg(long)]
    svg: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SensitivityArgs {
    /// A recipe (default: the embedded one); the images are `accuracy.images` (default 100) of its
    /// calibration data's labelled `val` split.
    recipe: Option<PathBuf>,
    /// One unit per HRNet block (e.g. `stage4.0/branches.2.0`) instead of one per node.
    #[arg(long)]
    by_block: bool,
    /// Skip the second measurement (each unit alone in INT8 in an otherwise unquantized graph).
    #[arg(long)]
    no_alone: bool,
    /// Parallel candidates (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Rows of the table.
    #[arg(long, default_value_t = 20)]
    top: usize,
    #[arg(long)]
    json: bool,
}

fn is_recipe(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml"))
}

/// The model simplified at a static input shape, and its input's name and (H, W).
fn prepare(
    path: &Path,
    input: Option<&str>,
    shape: Option<Vec<i64>>,
) -> anyhow::Result<(Model, String, (u32, u32))> {
    let mut model = onnx::load(path).with_context(|| format!("loading {}", path.display()))?;
    let inits: std::collections::HashSet<&str> =
        model.graph.initializers.iter().map(|t| t.name()).collect();
    let name = match input {
        Some(n) => n.to_string(),
        None => model
            .graph
            .inputs
            .iter()
            .find(|v| !inits.contains(v.name()))
            .map(|v| v.name().to_string())
            .with_context(|| format!("{}: the model has no input", path.display()))?,
    };
    let mut input_shapes = HashMap::new();
    if let Some(s) = &shape {
        input_shapes.insert(name.clone(), s.clone());
    }
    passes::simplify(
        &mut model,
        &SimplifyOptions {
            input_shapes,
            write_value_info: true,
        },
    )
    .with_context(|| format!("simplifying {}", path.display()))?;
    let hw = match shape.as_deref() {
        Some([_, _, h, w]) => (*h as u32, *w as u32),
        _ => ocrnet_edge::runtime::backend::static_hw(&model, &name).with_context(|| {
            format!(
                "{}: input '{name}' has dynamic dimensions: give --shape N,C,H,W",
                path.display()
            )
        })?,
    };
    Ok((model, name, hw))
}

fn parse_shape(s: &str) -> anyhow::Result<Vec<i64>> {
    let dims: Vec<i64> = s
        .split(',')
        .map(|d| d.trim().parse::<i64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--shape {s}: expected N,C,H,W"))?;
    if dims.len() != 4 || dims.iter().any(|&d| d <= 0) {
        bail!("--shape {s}: expected four positive dimensions N,C,H,W");
    }
    Ok(dims)
}

fn load_input(path: &Path, hw: (u32, u32)) -> anyhow::Result<Tensor> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        Ok(ocrnet_edge::npy::read(path).with_context(|| format!("reading {}", path.display()))?)
    } else {
        let img = data::load_rgb(path, ImageLimits::default())
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(data::preprocess(&img, Some(hw)))
    }
}

fn load_images(root: &Path, split: &str, n: usize, hw: (u32, u32)) -> anyhow::Result<Vec<Tensor>> {
    let ds =
        Dataset::open(root, Some(split)).with_context(|| format!("opening {}", root.display()))?;
    ds.select(n)
        .into_iter()
        .map(|s| {
            ds.load(s, Some(hw), ImageLimits::default())
                .map(|l| l.input)
                .with_context(|| format!("reading {}", s.image.display()))
        })
        .collect()
}

fn max_scales(
    model: &Model,
    feeds: &[HashMap<String, Tensor>],
    method: Method,
) -> anyhow::Result<ScaleTable> {
    let exec =
        Executor::new(model, ExecOptions::default()).context("preparing the calibration run")?;
    let observe = qdq::activations(model, &qdq::QdqOptions::default())?;
    let opts = CollectOptions {
        observe: Some(observe),
        progress: true,
        expected: Some(feeds.len() as u64),
    };
    let inputs = feeds
        .iter()
        .map(|f| Ok::<_, std::convert::Infallible>(f.clone()));
    Ok(calib::calibrate(&exec, inputs, method, &opts)?)
}

pub fn diff(a: DiffArgs) -> anyhow::Result<ExitCode> {
    let shape = a.shape.as_deref().map(parse_shape).transpose()?;
    let recipe = if is_recipe(&a.target) {
        Some(Recipe::load(&a.target)?)
    } else {
        None
    };
    let (model, input_name, hw) = match &recipe {
        Some(r) => prepare(
            &r.model,
            Some(&r.input_name),
            shape.or_else(|| r.shapes.is_static().then(|| r.shapes.opt.clone())),
        )?,
        None => prepare(&a.target, None, shape)?,
    };
    let feed = |t: Tensor| HashMap::from([(input_name.clone(), t)]);
    let data_root = a
        .data
        .clone()
        .or_else(|| recipe.as_ref().and_then(|r| r.calibration_data.clone()));
    let compared: Vec<HashMap<String, Tensor>> = match (&a.input, &data_root) {
        (Some(x), _) => vec![feed(load_input(x, hw)?)],
        (None, Some(root)) => load_images(root, &a.split, a.images.max(1), hw)?
            .into_iter()
            .map(feed)
            .collect(),
        (None, None) => {
            bail!("give --data ROOT or --input FILE (or a recipe with calibration data)")
        }
    };
    let wants_int8 = a.precisions.iter().any(|p| p == "int8");
    let table = if !wants_int8 {
        None
    } else if let (Some(r), None, None) = (&recipe, &a.input, &a.data) {
        Some(ocrnet_edge::pipeline::precision::calibrate(r, &model, &())?.0)
    } else if let (None, Some(root)) = (&a.input, &data_root) {
        let split = if root.join("leftImg8bit/train").is_dir() {
            "train"
        } else {
            &a.split
        };
        let calib: Vec<_> = load_images(root, split, a.calibration_images.max(1), hw)?
            .into_iter()
            .map(feed)
            .collect();
        Some(max_scales(&model, &calib, Method::Entropy)?)
    } else {
        Some(max_scales(&model, &compared, Method::Max)?)
    };
    // The two graphs run at once: buffer pools on both sides would add up (see
    // ExecOptions::reuse_buffers).
    let opts = ExecOptions {
        threads: a.threads,
        reuse_buffers: false,
        ..Default::default()
    };
    let reference = Executor::new(&model, opts).context("preparing the FP32 graph")?;
    let opset = model.opset().unwrap_or(1);
    let mut reports: Vec<DiffReport> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut baseline = serde_json::Map::new();
    let forward = |name: &str, e: &Executor| -> anyhow::Result<(String, serde_json::Value)> {
        let t = std::time::Instant::now();
        let (_, stats) = e
            .run_with_stats(compared[0].clone(), &[], None)
            .with_context(|| format!("running the {name} graph"))?;
        let secs = t.elapsed().as_secs_f64();
        Ok((
            format!(
                "baseline: one {name} forward {secs:.2} s, peak activations {:.1} MiB",
                stats.peak_activation_bytes as f64 / 1048576.0
            ),
            serde_json::json!({ "seconds": secs, "peak_activation_bytes": stats.peak_activation_bytes }),
        ))
    };
    if a.baseline {
        let (n, v) = forward("fp32", &reference)?;
        notes.push(n);
        baseline.insert("fp32".into(), v);
    }
    for p in &a.precisions {
        let mut lowered = model.clone();
        match p.as_str() {
            "fp16" => {
                let fo = fp16::Fp16Options {
                    activation_amax: table
                        .as_ref()
                        .map(ocrnet_edge::calib::ScaleTable::observed_max)
                        .unwrap_or_default(),
                    ..Default::default()
                };
                let r = fp16::run(&mut lowered, &fo).context("lowering to FP16")?;
                for w in &r.overflowing_weights {
                    notes.push(format!(
                        "fp16: weight '{w}' exceeds the FP16 range: its readers were kept in FP32"
                    ));
                }
            }
            _ => {
                let t = table.as_ref().expect("calibrated for int8");
                qdq::run(&mut lowered, t, &qdq::QdqOptions::default()).context("inserting Q/DQ")?;
            }
        }
        let low =
            Executor::new(&lowered, opts).with_context(|| format!("preparing the {p} graph"))?;
        if a.baseline {
            let (n, v) = forward(p, &low)?;
            notes.push(n);
            baseline.insert(p.clone(), v);
        }
        let mut o = DiffOptions::for_precision(p);
        if let Some(t) = a.threshold {
            o.threshold = t;
        }
        let inputs = compared
            .iter()
            .map(|f| Ok::<_, std::convert::Infallible>(f.clone()));
        let r = debug::diff(&reference, &low, p, opset, inputs, &o)
            .with_context(|| format!("comparing fp32 with {p}"))?;
        reports.push(r);
    }
    if let Some(path) = &a.svg {
        let refs: Vec<&DiffReport> = reports.iter().collect();
        ocrnet_edge::fsutil::write_atomic(path, debug::error_growth_svg(&refs).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        let v = serde_json::json!({ "reports": reports, "notes": notes, "baseline": baseline });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for n in &notes {
            println!("{n}");
        }
        for r in &reports {
            print!("{}", debug::diff::describe(r));
        }
        if let Some(p) = &a.svg {
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sensitivity(a: SensitivityArgs) -> anyhow::Result<ExitCode> {
    let recipe = match &a.recipe {
        Some(p) => Recipe::load(p)?,
        None => Recipe::embedded_default()?,
    };
    let shape = recipe.shapes.is_static().then(|| recipe.shapes.opt.clone());
    let (model, _, _) = prepare(&recipe.model, Some(&recipe.input_name), shape)?;
    let (table, _) = ocrnet_edge::pipeline::precision::calibrate(&recipe, &model, &())?;
    let eval = debug::pipeline::recipe_evaluator(&recipe, &model)?;
    let opts = debug::SearchOptions {
        by_block: a.by_block,
        threads: a.threads,
        progress: true,
        alone_int8: !a.no_alone,
        qdq: qdq::QdqOptions {
            exclude_nodes: recipe
                .file
                .calibration
                .as_ref()
                .map(|c| c.exclude.iter().cloned().collect())
                .unwrap_or_default(),
            ..Default::default()
        },
    };
    let r = debug::sensitivity(&model, &table, &eval, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", debug::search::describe_sensitivity(&r, a.top));
    }
    Ok(ExitCode::SUCCESS)
}
