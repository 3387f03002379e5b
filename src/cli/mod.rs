//! Command-line flags and the dispatch to each command. Commands print; the library does the work.

mod agree;
mod bench;
mod bench_calib;
mod bench_engine;
mod bench_exec;
mod bench_fuse;
mod compile;
mod debug;
mod model_cmds;
mod report_cmd;
mod run_cmd;
mod serve;
mod stages;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "ocrnet-edge",
    version,
    about = "Compile HRNet-OCR ONNX models for NVIDIA Jetson Orin"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline of a recipe (the embedded default recipe when none is given).
    Compile {
        recipe: Option<PathBuf>,
        /// Output folder (default: the recipe's output_dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Rebuild TensorRT engines even when their inputs and settings are unchanged.
        #[arg(long)]
        force: bool,
    },
    /// Calibrate INT8 on the recipe's images: the pipeline of `compile` with int8 as the only precision
    /// (simplified and fused graphs, Q/DQ INT8 graph, calibration.cache, scales.json, accuracy, manifest).
    Calibrate {
        recipe: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Keep nodes out of INT8 until the Q/DQ graph's mIoU on the labelled `val` split (the recipe's
        /// `accuracy.images` of it, default 100) is at most this
        /// many mIoU POINTS below FP32's (0.5 means 0.005 absolute mIoU); overrides the recipe's
        /// `calibration.miou_budget`. Prints the exclusion list for the recipe's `calibration.exclude`.
        #[arg(long, value_name = "POINTS", value_parser = parse_points, allow_negative_numbers = true)]
        miou_budget: Option<f64>,
    },
    /// Run the FP32 graph and each lowered graph side by side and compare every tensor as it is produced:
    /// the first value over the threshold, the ten worst (node, op, module), FP16 range problems and the
    /// error along the graph.
    Diff {
        #[command(flatten)]
        args: debug::DiffArgs,
    },
    /// Rank quantizable nodes (or HRNet blocks) by how much mIoU and agreement with FP32 they cost in INT8
    /// on the recipe's labelled `val` split (its `accuracy.images` of it, default 100).
    Sensitivity {
        #[command(flatten)]
        args: debug::SensitivityArgs,
    },
    /// Show a model's inputs, outputs, opsets, op histogram and parameters.
    Inspect {
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Fold constants and shape arithmetic, drop Identity/Dropout and dead nodes, infer shapes.
    Simplify {
        model: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Pin a dynamic input, e.g. `input=1,3,512,1024` (repeatable).
        #[arg(long = "input-shape", value_name = "NAME=DIMS")]
        input_shapes: Vec<String>,
        #[command(flatten)]
        external: ExternalArgs,
        #[arg(long)]
        json: bool,
    },
    /// Simplify, then fuse the OCR gather and attention subgraphs into TensorRT plugin nodes; reports what it
    /// fused (node names in, node out) and each near miss with the check that failed.
    Fuse {
        model: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Pin a dynamic input, e.g. `input=1,3,512,1024` (repeatable).
        #[arg(long = "input-shape", value_name = "NAME=DIMS")]
        input_shapes: Vec<String>,
        #[command(flatten)]
        external: ExternalArgs,
        #[arg(long)]
        json: bool,
    },
    /// Load and save a model unchanged (re-encode, move tensors in or out of external data).
    Convert {
        model: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        external: ExternalArgs,
    },
    /// Run one image or .npy tensor through the CPU executor (or, with --backend trt, a TensorRT engine).
    Run {
        model: PathBuf,
        /// cpu: MODEL is an ONNX graph; trt: MODEL is an engine built by `compile` (feature `tensorrt`).
        #[arg(long, value_enum, default_value = "cpu")]
        backend: ocrnet_edge::runtime::BackendKind,
        /// A PNG/JPEG image (HRNet preprocessing applied) or a .npy NCHW float32 tensor (used as is).
        #[arg(long)]
        input: PathBuf,
        /// Write the class map as an indexed PNG (Cityscapes trainId palette).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Write the model's main (last) output as .npy.
        #[arg(long)]
        logits: Option<PathBuf>,
        /// Worker threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Simulate FP16 storage of every tensor and weight.
        #[arg(long)]
        fp16: bool,
        #[arg(long)]
        json: bool,
    },
    /// Accuracy by precision on a labelled split (per-class IoU, mIoU, agreement with FP32, latency) as
    /// report.json, report.md and report.html, with a regression gate (exit code 3 when it fails).
    Report {
        #[command(flatten)]
        args: report_cmd::ReportArgs,
    },
    /// Pixel agreement of MODEL on --backend against REFERENCE on --reference-backend over the images under
    /// --images (e.g. a TensorRT engine against the CPU executor); exits 1 below --min.
    Agree {
        model: PathBuf,
        #[arg(long, value_enum, default_value = "trt")]
        backend: ocrnet_edge::runtime::BackendKind,
        #[arg(long)]
        reference: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        reference_backend: ocrnet_edge::runtime::BackendKind,
        /// A folder of PNG/JPEG images (searched recursively).
        #[arg(long)]
        images: PathBuf,
        /// Use at most this many images, spread over the sub-folders.
        #[arg(long)]
        limit: Option<usize>,
        /// The lowest acceptable agreement (0..=1).
        #[arg(long)]
        min: Option<f64>,
        /// CPU backend threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks, each next to its peer measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The inference daemon: POST /v1/segment, GET /healthz, /readyz, /metrics (see deploy/README.md).
    Serve {
        #[command(flatten)]
        args: serve::ServeArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ExternalArgs {
    /// Write every initializer of at least --external-threshold bytes to this data file beside the output.
    #[arg(long, value_name = "LOCATION", conflicts_with = "inline")]
    pub external_data: Option<String>,
    #[arg(long, default_value_t = 1024)]
    pub external_threshold: usize,
    /// Write every tensor inline, even those loaded from external data.
    #[arg(long)]
    pub inline: bool,
    /// Do not wait for the disk (no fsync): still atomic, but not guaranteed to survive a power loss.
    #[arg(long)]
    pub no_fsync: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The CPU executor's forward time, GFLOP/s and peak RSS next to onnxruntime's (same model, shape, threads).
    Exec {
        model: PathBuf,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Input shape for a dynamic model, e.g. 1,3,512,1024.
        #[arg(long)]
        shape: Option<String>,
        /// Python interpreter with onnxruntime and numpy, for the peer measurement.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long)]
        json: bool,
        /// Also print the executor's time per op type, its slowest nodes and its convolutions by
        /// geometry, with GFLOP/s (in the JSON report too).
        #[arg(long)]
        profile: bool,
    },
    /// Internal: the measured side of `bench exec`.
    #[command(hide = true)]
    ExecWorker {
        model: PathBuf,
        #[arg(long)]
        threads: usize,
        #[arg(long)]
        runs: usize,
        #[arg(long)]
        shape: Option<String>,
        #[arg(long)]
        profile: bool,
    },
    /// Load + save and load + simplify + save of MODEL, next to Python's onnx.load + onnx.save.
    Io {
        model: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Python interpreter with the `onnx` package, for the peer measurement.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long)]
        json: bool,
    },
    /// `fuse` on MODEL (load + simplify + fuse + save) next to the same fusion with onnx-graphsurgeon.
    Fuse {
        model: PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Python interpreter with `onnx` and `onnx_graphsurgeon`, for the peer measurement.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long)]
        json: bool,
    },
    /// The daemon on a loopback port under N requests from C clients, next to direct backend calls.
    Serve {
        #[command(flatten)]
        args: serve::BenchArgs,
    },
    /// INT8 calibration's time per image and peak memory on a recipe's model and images, next to NVIDIA
    /// Model Optimizer's ONNX PTQ on the same file and images (when installed).
    Calib {
        #[command(flatten)]
        args: bench_calib::CalibArgs,
    },
    /// Internal: the measured side of `bench calib`.
    #[command(hide = true)]
    CalibWorker {
        #[command(flatten)]
        args: bench_calib::CalibWorkerArgs,
    },
    /// A TensorRT engine's latency (median, p90, p99) and throughput over N runs after warm-up, as
    /// trtexec reports them (needs a build with feature `tensorrt`).
    Engine {
        engine: PathBuf,
        #[arg(long, default_value_t = 100)]
        runs: usize,
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Replay the inference as a captured CUDA graph (static input shapes only).
        #[arg(long)]
        cuda_graph: bool,
        #[arg(long)]
        json: bool,
    },
}

/// An error and its causes on one line, each cause once. The library's errors already print their
/// source (so that `{}` alone is a whole message), which anyhow's `{:#}` would print again after them:
/// a cause is appended only when the text so far does not already hold it. A cause that starts with
/// the file the context already names (`loading m.onnx` then `m.onnx: not an ONNX model`) drops it.
pub fn error_message(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        let text = match text.split_once(": ") {
            Some((file, rest)) if names_file(file) && message.contains(file) => rest,
            _ => &text,
        };
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(text);
    }
    message
}

/// Whether the head of an error message is a file's path, not a phrase.
fn names_file(head: &str) -> bool {
    !head.contains(' ') && (head.contains('/') || head.contains('.'))
}

pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp(None)
        .parse_default_env()
        .init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Compile {
            recipe,
            out,
            json,
            force,
        } => compile::run(recipe.as_deref(), out.as_deref(), json, false, force, None),
        Command::Calibrate {
            recipe,
            out,
            json,
            miou_budget,
        } => compile::run(
            recipe.as_deref(),
            out.as_deref(),
            json,
            true,
            false,
            miou_budget,
        ),
        Command::Diff { args } => debug::diff(args),
        Command::Sensitivity { args } => debug::sensitivity(args),
        Command::Inspect { model, json } => model_cmds::inspect(&model, json),
        Command::Agree {
            model,
            backend,
            reference,
            reference_backend,
            images,
            limit,
            min,
            threads,
            json,
        } => agree::run(agree::AgreeArgs {
            model: &model,
            backend,
            reference: &reference,
            reference_backend,
            images: &images,
            limit,
            min,
            threads,
            json,
        }),
        Command::Simplify {
            model,
            output,
            input_shapes,
            external,
            json,
        } => model_cmds::simplify(&model, &output, &input_shapes, &external, json),
        Command::Fuse {
            model,
            output,
            input_shapes,
            external,
            json,
        } => model_cmds::fuse(&model, &output, &input_shapes, &external, json),
        Command::Convert {
            model,
            output,
            external,
        } => model_cmds::convert(&model, &output, &external),
        Command::Run {
            model,
            backend,
            input,
            output,
            logits,
            threads,
            fp16,
            json,
        } => run_cmd::run(run_cmd::RunArgs {
            model: &model,
            backend,
            input: &input,
            output: output.as_deref(),
            logits: logits.as_deref(),
            threads,
            fp16,
            json,
        }),
        Command::Bench(BenchCommand::Exec {
            model,
            threads,
            runs,
            shape,
            python,
            json,
            profile,
        }) => bench_exec::bench(
            &model,
            threads,
            runs,
            shape.as_deref(),
            &python,
            json,
            profile,
        ),
        Command::Bench(BenchCommand::ExecWorker {
            model,
            threads,
            runs,
            shape,
            profile,
        }) => bench_exec::worker(&model, threads, runs, shape.as_deref(), profile),
        Command::Bench(BenchCommand::Io {
            model,
            runs,
            python,
            json,
        }) => bench::io(&model, runs, &python, json),
        Command::Bench(BenchCommand::Fuse {
            model,
            runs,
            python,
            json,
        }) => bench_fuse::fuse(&model, runs, &python, json),
        Command::Serve { args } => serve::run(args),
        Command::Report { args } => report_cmd::run(args),
        Command::Bench(BenchCommand::Serve { args }) => serve::bench(args),
        Command::Bench(BenchCommand::Calib { args }) => bench_calib::bench(&args),
        Command::Bench(BenchCommand::CalibWorker { args }) => bench_calib::worker(&args),
        Command::Bench(BenchCommand::Engine {
            engine,
            runs,
            warmup,
            cuda_graph,
            json,
        }) => bench_engine::run(&engine, runs, warmup, cuda_graph, json),
    }
}

/// A number of mIoU points: finite and >= 0 (clap then answers a bad one with exit code 2).
fn parse_points(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a number of mIoU points >= 0")),
    }
}
