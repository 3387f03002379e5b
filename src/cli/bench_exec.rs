//! `ocrnet-edge bench exec`: the CPU executor's forward time next to onnxruntime's on the same model, input
//! shape and thread count, each in a child process of its own (so peak RSS is each one's own), same run.

use anyhow::{bail, Context};
use ocrnet_edge::bench::{measure_output, median};
use ocrnet_edge::exec::profile::Profile;
use ocrnet_edge::exec::{ExecOptions, Executor, NodeTime};
use ocrnet_edge::onnx::{self, stats::human_bytes};
use ocrnet_edge::tensor::Tensor;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

const ORT_WORKER: &str = r#"
import json, sys, time
import numpy as np, onnxruntime as ort
model, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
shape = [int(d) for d in sys.argv[4].split(",")]
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).uniform(-2, 2, size=shape).astype(np.float32)
feed = {sess.get_inputs()[0].name: x}
sess.run(None, feed)
times = []
for _ in range(runs):
    t = time.perf_counter(); sess.run(None, feed); times.append(time.perf_counter() - t)
print(json.dumps({"times": times}))
"#;

/// The model's input shape: its declared static shape, or the one given.
fn input_shape(model: &onnx::Model, given: Option<&str>) -> anyhow::Result<Vec<usize>> {
    if let Some(s) = given {
        return s
            .split(',')
            .map(|d| d.trim().parse::<usize>().ok().filter(|&v| v > 0))
            .collect::<Option<Vec<_>>>()
            .with_context(|| {
                format!("--shape '{s}': expected positive integers like 1,3,512,1024")
            });
    }
    let stats = onnx::stats::ModelStats::of(model);
    let input = stats.inputs.first().context("the model has no input")?;
    let dims: Option<Vec<usize>> = input
        .shape
        .as_ref()
        .and_then(|s| s.iter().map(|d| d.parse().ok()).collect());
    dims.with_context(|| format!("input '{}' has a dynamic shape: pass --shape", input.name))
}

/// Deterministic uniform noise in [-2, 2): the executor's speed does not depend on the values.
fn noise(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let v = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    Tensor::vec_f32(shape.to_vec(), v).expect("length matches shape")
}

/// The hidden worker: load, warm up once, time `runs` forwards, print the times as JSON.
pub fn worker(
    model_path: &Path,
    threads: usize,
    runs: usize,
    shape: Option<&str>,
    profile: bool,
) -> anyhow::Result<ExitCode> {
    let model =
        onnx::load(model_path).with_context(|| format!("loading {}", model_path.display()))?;
    let shape = input_shape(&model, shape)?;
    let exec = Executor::new(
        &model,
        ExecOptions {
            threads,
            profile,
            ..Default::default()
        },
    )?;
    drop(model);
    let name = exec.input_names().next().context("no input")?.to_string();
    let x = noise(&shape);
    exec.run(HashMap::from([(name.clone(), x.clone())]), &[], None)?;
    let mut times = Vec::new();
    let mut last = Default::default();
    for _ in 0..runs {
        let t = Instant::now();
        let (_, stats) =
            exec.run_with_stats(HashMap::from([(name.clone(), x.clone())]), &[], None)?;
        times.push(t.elapsed().as_secs_f64());
        last = stats;
    }
    println!("{}", serde_json::json!({ "times": times, "stats": last }));
    Ok(ExitCode::SUCCESS)
}

pub fn bench(
    model_path: &Path,
    threads: usize,
    runs: usize,
    shape: Option<&str>,
    python: &str,
    json: bool,
    profile: bool,
) -> anyhow::Result<ExitCode> {
    let runs = runs.max(1);
    let mut model =
        onnx::load(model_path).with_context(|| format!("loading {}", model_path.display()))?;
    let dims = input_shape(&model, shape)?;
    let dims_text = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let name = onnx::stats::ModelStats::of(&model).inputs[0].name.clone();
    let pinned = HashMap::from([(name, dims.iter().map(|&d| d as i64).collect())]);
    let shapes = ocrnet_edge::shape::infer_with(&model.graph, model.opset().unwrap_or(1), &pinned)?;
    let flops = ocrnet_edge::exec::flops::count(&model.graph, &shapes) as f64;
    // onnxruntime cannot load the OCR plugin nodes of a fused graph: say so rather than fail.
    let mut plugin_ops: Vec<&str> = model
        .graph
        .nodes
        .iter()
        .filter(|n| n.domain() == ocrnet_edge::ocr::DOMAIN)
        .map(|n| n.op_type())
        .collect();
    plugin_ops.sort_unstable();
    plugin_ops.dedup();
    let no_peer = (!plugin_ops.is_empty()).then(|| {
        format!(
            "the model has {} nodes, which onnxruntime does not know (bench the graph before `fuse`, \
             e.g. model.simplified.onnx, for the comparison)",
            plugin_ops.join(", ")
        )
    });
    // The profile needs only the nodes: the weights (280 MB for W48) are dropped before the
    // workers run instead of being copied along.
    let graph = profile.then(|| ocrnet_edge::onnx::Graph {
        nodes: std::mem::take(&mut model.graph.nodes),
        ..Default::default()
    });
    drop(model);

    let exe = std::env::current_exe()?;
    let parse = |out: &str, who: &str| -> anyhow::Result<f64> {
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).with_context(|| format!("{who} printed {out:?}"))?;
        let times: Vec<f64> = v["times"]
            .as_array()
            .context("no times")?
            .iter()
            .filter_map(|t| t.as_f64())
            .collect();
        if times.is_empty() {
            bail!("{who} reported no times");
        }
        Ok(median(&times))
    };
    let mut worker = Command::new(&exe);
    worker
        .args(["-q", "bench", "exec-worker"])
        .arg(model_path)
        .args([
            "--threads",
            &threads.to_string(),
            "--runs",
            &runs.to_string(),
            "--shape",
            &dims_text,
        ]);
    if profile {
        worker.arg("--profile");
    }
    let (ours_run, ours_out) =
        measure_output(&mut worker).context("running the executor worker")?;
    let ours = parse(&ours_out, "ocrnet-edge")?;
    let node_profile = match &graph {
        Some(graph) => {
            let v: serde_json::Value = serde_json::from_str(ours_out.trim())?;
            let times: Vec<NodeTime> = serde_json::from_value(v["stats"]["nodes"].clone())
                .context("the worker's node times")?;
            Some((
                Profile::new(graph, &shapes, &times),
                v["stats"]["profile"].clone(),
            ))
        }
        None => None,
    };
    if let (Some((p, ops)), false) = (&node_profile, json) {
        print_profile(p, ops);
    }
    let ort_available = || {
        Command::new(python)
            .args(["-c", "import onnxruntime, numpy"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // The peer's median and peak RSS, or why it was not measured.
    let peer = match no_peer {
        Some(why) => Err(why),
        None if !ort_available() => {
            Err(format!("`{python} -c 'import onnxruntime, numpy'` failed"))
        }
        None => {
            let (run, out) = measure_output(
                Command::new(python)
                    .args(["-c", ORT_WORKER])
                    .arg(model_path)
                    .args([&threads.max(1).to_string(), &runs.to_string(), &dims_text]),
            )
            .context("running the onnxruntime worker")?;
            Ok((parse(&out, "onnxruntime")?, run.peak_rss_bytes))
        }
    };

    if json {
        let report = serde_json::json!({
            "model": model_path.display().to_string(),
            "input_shape": dims,
            "threads": threads,
            "runs": runs,
            "conv_kernels": ocrnet_edge::exec::ops::f32_kernels().name(),
            "gflop": flops / 1e9,
            "ocrnet_edge": {"median_seconds": ours, "gflops": flops / 1e9 / ours, "peak_rss_bytes": ours_run.peak_rss_bytes},
            "onnxruntime": peer.as_ref().ok().map(|(s, rss)| serde_json::json!({"median_seconds": s, "gflops": flops / 1e9 / s, "peak_rss_bytes": rss})),
            "onnxruntime_missing": peer.as_ref().err(),
            "profile": node_profile.map(|(p, ops)| serde_json::json!({"ops": ops, "nodes": p.nodes, "layers": p.layers})),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} input [{dims_text}], {} thread(s), median of {runs} runs after one warm-up; {:.1} GFLOP per forward; \
         float32 conv kernels: {} (OCRNET_CONV_KERNELS)",
        model_path.display(),
        threads,
        flops / 1e9,
        ocrnet_edge::exec::ops::f32_kernels().name()
    );
    println!(
        "{:<14} {:>10} {:>9} {:>12}",
        "", "median s", "GFLOP/s", "peak RSS"
    );
    println!(
        "{:<14} {:>10.3} {:>9.1} {:>12}",
        "ocrnet-edge",
        ours,
        flops / 1e9 / ours,
        human_bytes(ours_run.peak_rss_bytes)
    );
    match peer {
        Ok((s, rss)) => {
            println!(
                "{:<14} {:>10.3} {:>9.1} {:>12}",
                "onnxruntime",
                s,
                flops / 1e9 / s,
                human_bytes(rss)
            );
            println!("ocrnet-edge / onnxruntime time: {:.2}x", ours / s);
        }
        Err(why) => println!("onnxruntime not measured: {why}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Nodes and convolution geometries listed by `--profile`.
const PROFILE_ROWS: usize = 15;

/// The last run's time by op type, its slowest nodes and its convolutions grouped by geometry, with
/// GFLOP/s where the node's arithmetic is counted.
fn print_profile(p: &Profile, ops: &serde_json::Value) {
    let rate = |gflop: Option<f64>, s: f64| match gflop {
        Some(g) if s > 0.0 => format!("{:.1}", g / s),
        _ => "-".into(),
    };
    let share = |s: f64| 100.0 * s / p.seconds.max(f64::MIN_POSITIVE);
    println!(
        "{:<22} {:>9} {:>6} {:>6}",
        "op (last run)", "seconds", "share", "nodes"
    );
    for row in ops.as_array().into_iter().flatten() {
        let s = row[1].as_f64().unwrap_or(0.0);
        println!(
            "{:<22} {:>9.3} {:>5.1}% {:>6}",
            row[0].as_str().unwrap_or("?"),
            s,
            share(s),
            row[2].as_u64().unwrap_or(0)
        );
    }
    println!("\nslowest nodes:");
    println!(
        "{:<44} {:<10} {:>8} {:>6} {:>8}  layer",
        "node", "op", "ms", "share", "GFLOP/s"
    );
    for r in p.nodes.iter().take(PROFILE_ROWS) {
        println!(
            "{:<44} {:<10} {:>8.1} {:>5.1}% {:>8}  {}",
            ellipsis(&r.name, 44),
            r.op,
            r.seconds * 1e3,
            share(r.seconds),
            rate(r.gflop, r.seconds),
            r.layer.as_deref().unwrap_or("")
        );
    }
    println!("\nconvolutions by geometry:");
    println!(
        "{:<32} {:>6} {:>8} {:>6} {:>8} {:>8}",
        "layer", "nodes", "ms", "share", "GFLOP", "GFLOP/s"
    );
    for l in p.layers.iter().take(PROFILE_ROWS) {
        println!(
            "{:<32} {:>6} {:>8.1} {:>5.1}% {:>8.2} {:>8}",
            l.layer,
            l.nodes,
            l.seconds * 1e3,
            share(l.seconds),
            l.gflop,
            rate(Some(l.gflop), l.seconds)
        );
    }
    println!();
}

/// `s` cut to at most `n` characters, its end kept (a node name's tail is its most specific part).
fn ellipsis(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len <= n {
        return s.to_string();
    }
    let tail: String = s.chars().skip(len + 1 - n).collect();
    format!("…{tail}")
}
