//! `ocrnet-edge report`: accuracy by precision on a labelled split, rendered for CI and for people, with a
//! regression gate.

use super::stages::Stages;
use anyhow::Context;
use indicatif::ProgressStyle;
use ocrnet_edge::recipe::{Precision, Recipe};
use ocrnet_edge::report::generate::{self, ReportProgress, Request, Source};
use ocrnet_edge::report::{precision_name, Thresholds};
use ocrnet_edge::runtime::backend::BackendKind;
use std::path::PathBuf;
use std::process::ExitCode;

/// The exit code of a report whose gate failed (1 is an error, 2 a bad command line).
pub const REGRESSION_EXIT: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The recipe whose graphs to evaluate (the embedded default recipe when neither this nor --model is given).
    #[arg(conflicts_with = "model")]
    pub recipe: Option<PathBuf>,
    /// Evaluate this model instead; its FP16 and INT8 graphs are built on the spot.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Cityscapes-layout data (default: the recipe's calibration data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Score only this many images of the split, spread over its cities (default: all). A baseline
    /// measured on another number of images is compared with a note saying so.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub images: Option<u64>,
    /// Comma-separated, e.g. fp32,fp16,int8 (default: fp32 and the recipe's precisions; fp32 always runs).
    #[arg(long, value_delimiter = ',', value_parser = parse_precision)]
    pub precisions: Option<Vec<Precision>>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// A previous report.json to compare with.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Output folder (default: `report` inside the recipe's output folder, or ./report for --model).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The compile output to read the graphs from; they must be there (default: the recipe's output
    /// folder, compiled first when something is missing).
    #[arg(long, conflicts_with = "model")]
    pub artifacts: Option<PathBuf>,
    /// Fail when a precision's mIoU is more than this many points below FP32's.
    #[arg(long, value_name = "POINTS")]
    pub max_miou_drop: Option<f64>,
    /// Fail when any class's IoU is more than this many points below FP32's.
    #[arg(long, value_name = "POINTS")]
    pub max_class_iou_drop: Option<f64>,
    /// Fail when a precision's mIoU is more than this many points below the baseline's.
    #[arg(long, value_name = "POINTS", requires = "baseline")]
    pub max_baseline_drop: Option<f64>,
    /// Timed inferences per precision for the latency columns (0: do not time).
    #[arg(long, default_value_t = 10)]
    pub latency_runs: usize,
    /// Images shown with overlays in report.html.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
    /// Compare every tensor of each lower precision with FP32 on this many images of the split (the
    /// precision debugger's `diff`) and show where they depart: first value past the threshold, the
    /// worst ones with their node and module, and the error along the graph.
    #[arg(long, value_name = "IMAGES", default_value_t = 0)]
    pub diff: usize,
    /// Print report.json on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    match s.trim() {
        "fp32" => Ok(Precision::Fp32),
        "fp16" => Ok(Precision::Fp16),
        "int8" => Ok(Precision::Int8),
        other => Err(format!("'{other}' is not one of fp32, fp16, int8")),
    }
}

struct Bar(Stages);

impl ReportProgress for Bar {
    fn stage(&self, name: &str) {
        self.0.stage(name);
    }
    fn images(&self, total: u64) {
        let bar = self.0.bar();
        bar.set_length(total);
        bar.set_position(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {bar:30} {pos}/{len} images [{elapsed}, eta {eta}]",
            )
            .expect("static template"),
        );
    }
    fn image_done(&self) {
        self.0.bar().inc(1);
    }
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let flags = Thresholds {
        max_miou_drop: args.max_miou_drop,
        max_class_iou_drop: args.max_class_iou_drop,
        max_baseline_drop: args.max_baseline_drop,
    };
    let (source, data, precisions, thresholds, out) = match &args.model {
        Some(model) => {
            let data = args
                .data
                .clone()
                .context("--model needs --data (a Cityscapes-layout folder with labels)")?;
            let precisions = args.precisions.clone().unwrap_or(vec![
                Precision::Fp32,
                Precision::Fp16,
                Precision::Int8,
            ]);
            let out = args.out.clone().unwrap_or_else(|| PathBuf::from("report"));
            (Source::Model(model.clone()), data, precisions, flags, out)
        }
        None => {
            let recipe = match &args.recipe {
                Some(path) => Recipe::load(path)?,
                None => Recipe::embedded_default()?,
            };
            let data = args
                .data
                .clone()
                .or_else(|| recipe.calibration_data.clone())
                .with_context(|| {
                    format!(
                        "{} has no calibration data: pass --data",
                        recipe.source_name
                    )
                })?;
            let precisions = args.precisions.clone().unwrap_or_else(|| {
                let mut p = vec![Precision::Fp32];
                p.extend(recipe.file.precisions.iter().copied());
                p
            });
            let thresholds = recipe
                .file
                .report
                .clone()
                .unwrap_or_default()
                .overridden_by(&flags);
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| recipe.output_dir.join("report"));
            let source = Source::Recipe {
                recipe: Box::new(recipe),
                artifacts: args.artifacts.clone(),
            };
            (source, data, precisions, thresholds, out)
        }
    };
    let request = Request {
        source,
        data,
        split: args.split.clone(),
        images: args.images.map(|n| n as usize),
        precisions,
        backend: args.backend,
        baseline: args.baseline.clone(),
        thresholds,
        latency_runs: args.latency_runs,
        keep_samples: args.samples,
        diff_images: args.diff,
        out_dir: out,
    };
    let bar = Bar(Stages::start());
    let result = generate::generate(&request, &bar);
    bar.0.finish();
    let outcome = result.context("building the report")?;
    let r = &outcome.report;
    if args.json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!(
            "{} on {} images of '{}' ({} backend):",
            r.source, r.data.images, r.data.split, r.backend
        );
        for p in &r.precisions {
            let latency = p.latency.as_ref().map_or(String::new(), |l| {
                format!("  median {:.2} ms  p99 {:.2} ms", l.median_ms, l.p99_ms)
            });
            println!(
                "  {:<5} mIoU {:6.2} ({})  pixel acc. {:6.2}  agreement with fp32 {:6.2} %{latency}",
                precision_name(p.precision),
                p.miou * 100.0,
                ocrnet_edge::report::signed_points(p.miou_delta_vs_fp32),
                p.pixel_accuracy * 100.0,
                p.agreement_with_fp32 * 100.0,
            );
        }
        for f in &outcome.files {
            println!("wrote {}", f.display());
        }
    }
    // The one line a CI log needs, on stderr so that --json stays parseable.
    for w in &r.gate.warnings {
        eprintln!("report: warning: {w}");
    }
    eprintln!("report: {}", r.gate.summary());
    Ok(if r.gate.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(REGRESSION_EXIT)
    })
}
