//! `ocrnet-edge bench engine ENGINE`: trtexec-style latency and throughput of a TensorRT engine. Each timed
//! run copies the input to the device, enqueues (or replays the CUDA graph), copies the output back and
//! waits: the "Latency" trtexec prints; the GPU compute time (CUDA events around the enqueue) is shown
//! next to it.

use std::path::Path;
use std::process::ExitCode;

#[cfg(not(feature = "tensorrt"))]
pub fn run(
    _engine: &Path,
    _runs: usize,
    _warmup: usize,
    _cuda_graph: bool,
    _json: bool,
) -> anyhow::Result<ExitCode> {
    Err(ocrnet_edge::engine::EngineError::NotBuilt("bench engine").into())
}

#[cfg(feature = "tensorrt")]
pub fn run(
    engine: &Path,
    runs: usize,
    warmup: usize,
    cuda_graph: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use ocrnet_edge::bench::LatencyStats;
    use ocrnet_edge::engine::trt::{Engine, LoadOptions};

    let runs = runs.max(1);
    let e = Engine::load(engine, LoadOptions { cuda_graph })
        .with_context(|| format!("loading {}", engine.display()))?;
    let r = e
        .benchmark(runs, warmup)
        .with_context(|| format!("running {}", engine.display()))?;
    let latency = LatencyStats::of(&r.latency_ms, r.wall_s).context("no valid latency samples")?;
    let compute = LatencyStats::of(&r.gpu_compute_ms, r.wall_s);
    let m = e.manifest();
    if json {
        let report = serde_json::json!({
            "engine": engine.display().to_string(),
            "precision": m.precision,
            "tensorrt": m.platform.tensorrt.to_string(),
            "device": m.platform.device,
            "input_shape": r.input_shape,
            "cuda_graph": r.cuda_graph,
            "warmup": warmup,
            "latency": latency,
            "gpu_compute": compute,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} engine, TensorRT {}, {}, input {:?}, CUDA graph {}",
        engine.display(),
        ocrnet_edge::engine::settings::precision_name(m.precision),
        m.platform.tensorrt,
        m.platform.device,
        r.input_shape,
        if r.cuda_graph { "on" } else { "off" }
    );
    println!("{runs} runs after {warmup} warm-up runs");
    println!("Throughput: {:.2} qps", latency.throughput_per_s);
    let line = |name: &str, s: &LatencyStats| {
        println!(
            "{name}: min = {:.3} ms, max = {:.3} ms, mean = {:.3} ms, median = {:.3} ms, percentile(90%) = {:.3} ms, percentile(99%) = {:.3} ms",
            s.min_ms, s.max_ms, s.mean_ms, s.median_ms, s.p90_ms, s.p99_ms
        )
    };
    line("Latency (H2D + compute + D2H)", &latency);
    if let Some(c) = &compute {
        line("GPU Compute Time", c);
    }
    Ok(ExitCode::SUCCESS)
}
