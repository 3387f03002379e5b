//! `ocrnet-edge serve` (the daemon) and `ocrnet-edge bench serve` (its load benchmark).

use anyhow::Context;
use ocrnet_edge::exec::{ExecOptions, Numerics};
use ocrnet_edge::runtime::{self, BackendKind};
use ocrnet_edge::serve::{self, bench, ServeConfig, Service, Settings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Every config field as a flag; a flag wins over the file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// YAML config file (see deploy/README.md); flags override its fields.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// ONNX model (cpu backend) or serialized engine (trt backend).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<String>,
    /// CPU backend threads (0: one per core) [default: 0].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Requests that may wait for a worker; more are answered 503 [default: 4].
    #[arg(long)]
    pub queue_depth: Option<usize>,
    /// Inference threads sharing the model [default: 1].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Largest request body in bytes [default: 16777216].
    #[arg(long = "body-limit", value_name = "BYTES")]
    pub body_limit_bytes: Option<usize>,
    /// Largest image in pixels, checked from its header [default: 16777216].
    #[arg(long)]
    pub max_pixels: Option<u64>,
    /// Per-request timeout in milliseconds [default: 30000].
    #[arg(long = "request-timeout-ms", value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// File holding the bearer token that /v1/segment and /metrics then require (a token is never taken
    /// on the command line, where other users could read it).
    #[arg(long, value_name = "FILE")]
    pub bearer_token_file: Option<PathBuf>,
}

/// Merges the config file and the flags into checked settings.
pub fn settings(args: ServeArgs) -> anyhow::Result<Settings> {
    let (file, source) = match &args.config {
        Some(path) => (
            ServeConfig::load(path)?,
            format!("{} + flags", path.display()),
        ),
        None => (ServeConfig::default(), "flags".to_string()),
    };
    let flags = ServeConfig {
        model: args.model,
        backend: args.backend,
        bind: args.bind,
        threads: args.threads,
        queue_depth: args.queue_depth,
        workers: args.workers,
        body_limit_bytes: args.body_limit_bytes,
        max_pixels: args.max_pixels,
        request_timeout_ms: args.request_timeout_ms,
        bearer_token: None,
        bearer_token_file: args.bearer_token_file,
    };
    Ok(Settings::from_config(file.overridden_by(flags), &source)?)
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let s = settings(args)?;
    let backend = runtime::open(
        s.backend,
        &s.model,
        ExecOptions {
            threads: s.threads,
            numerics: Numerics::Fp32,
            ..Default::default()
        },
    )
    .with_context(|| {
        format!(
            "opening {} on the {} backend",
            s.model.display(),
            kind_name(s.backend)
        )
    })?;
    let backend: Arc<dyn runtime::Backend> = Arc::from(backend);
    if !s.bind.ip().is_loopback() && s.options.bearer_token.is_none() {
        log::warn!(
            "listening on {} (not loopback) without a bearer token: anyone who can reach it can use it",
            s.bind
        );
    }
    let service = Service::new(backend, s.options.clone());
    let rt = serve::http_runtime().context("starting the async runtime")?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(s.bind)
            .await
            .with_context(|| format!("binding {}", s.bind))?;
        let addr = listener.local_addr()?;
        // The model is loaded; the warm-up runs while the server already answers /healthz (and 503 on
        // /readyz). Unless it reports success (an error, or a panic that drops the sender), the daemon
        // shuts down and exits 1.
        let (warmed_tx, warmed_rx) = tokio::sync::oneshot::channel::<bool>();
        let warm = {
            let service = service.clone();
            tokio::task::spawn_blocking(move || {
                let r = service.warm_up();
                let _ = warmed_tx.send(r.is_ok());
                r
            })
        };
        let warm_up_failed = async move {
            if let Ok(true) = warmed_rx.await {
                std::future::pending::<()>().await
            }
        };
        println!(
            "ocrnet-edge serving {} ({} backend) on http://{addr}",
            s.model.display(),
            kind_name(s.backend)
        );
        let shutdown = async move {
            tokio::select! {
                () = serve::shutdown_signal() => {}
                () = warm_up_failed => {}
            }
        };
        service.serve(listener, shutdown).await.context("serving")?;
        warm.await
            .context("the warm-up task panicked")?
            .with_context(|| format!("warming up {}", s.model.display()))?;
        anyhow::Ok(())
    });
    service.close();
    result?;
    println!("ocrnet-edge: shut down cleanly");
    Ok(ExitCode::SUCCESS)
}

/// The backend's name as written on the command line and in configs.
fn kind_name(kind: BackendKind) -> String {
    use clap::ValueEnum;
    kind.to_possible_value()
        .map_or_else(|| format!("{kind:?}"), |v| v.get_name().to_string())
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// ONNX model (cpu backend) or serialized engine (trt backend).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Requests through the daemon, and as many direct calls.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Client threads, each with one request outstanding.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Daemon inference workers (and direct-call threads).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// CPU backend threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Time budget for the whole measurement, in seconds.
    #[arg(long, default_value_t = 60)]
    pub max_seconds: u64,
    /// A PNG/JPEG to send (default: a gradient at the model's input size, or 1024x512).
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let backend = runtime::open(
        a.backend,
        &a.model,
        ExecOptions {
            threads: a.threads,
            numerics: Numerics::Fp32,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening {}", a.model.display()))?;
    let backend: Arc<dyn runtime::Backend> = Arc::from(backend);
    let image = match &a.image {
        Some(p) => ocrnet_edge::data::load_rgb(p, Default::default())?,
        None => {
            let (h, w) = backend.input_hw().unwrap_or((512, 1024));
            bench::gradient(w, h)
        }
    };
    let r = bench::run(
        backend,
        &image,
        &bench::LoadOptions {
            requests: a.requests,
            concurrency: a.concurrency,
            workers: a.workers,
            max_time: Duration::from_secs(a.max_seconds.max(1)),
        },
    )
    .context("running the load benchmark")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} on {}: {}x{} image ({} bytes PNG), {} clients, {} workers, loopback keep-alive",
        a.model.display(),
        r.backend,
        r.width,
        r.height,
        r.request_bytes,
        r.concurrency,
        r.workers
    );
    println!(
        "{:<40} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "", "count", "ok", "req/s", "mean ms", "p50 ms", "p99 ms"
    );
    for s in [&r.direct, &r.daemon] {
        println!(
            "{:<40} {:>7} {:>7} {:>9.1} {:>9.2} {:>9.2} {:>9.2}",
            s.name, s.count, s.ok, s.throughput, s.mean_ms, s.p50_ms, s.p99_ms
        );
    }
    let statuses: Vec<String> = r
        .statuses
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    println!("daemon answers by status: {}", statuses.join(", "));
    println!(
        "daemon overhead: {:+.1}% from throughput (direct req/s ÷ daemon req/s − 1), {:+.1}% from p50 \
         latency (daemon p50 ÷ direct p50 − 1; meaningful when clients = workers); {} alternating rounds",
        r.overhead_pct, r.p50_overhead_pct, r.rounds
    );
    if r.cut_short {
        println!(
            "note: the {} s budget ran out before all requests were made",
            a.max_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
