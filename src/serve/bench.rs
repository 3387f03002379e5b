//! `bench serve`: the daemon under load next to the backend called directly, in one process and one run.
//! The daemon listens on an ephemeral loopback port; N requests are fired from C client threads over
//! keep-alive connections; the same image is segmented N times by direct `runtime::segment` calls on as
//! many threads as the daemon has workers. Both sides run in alternating rounds so that drift (clocks,
//! thermals, caches) hits them alike. Bounded by the request count and by a time budget.

use crate::runtime::{self, Backend, BackendError};
use crate::serve::client::Client;
use crate::serve::{spawn, Options, Service};
use image::RgbImage;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this many alternating rounds of (direct, daemon), each of at least `MIN_ROUND` requests.
const MAX_ROUNDS: usize = 20;
const MIN_ROUND: usize = 10;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Requests (and direct calls) in total, split over the rounds.
    pub requests: usize,
    /// Client threads, each with one keep-alive connection and one request outstanding.
    pub concurrency: usize,
    /// Daemon workers; the direct side uses as many threads.
    pub workers: usize,
    /// Time budget for the whole measurement; each phase stops issuing work when its share is spent.
    pub max_time: Duration,
}

/// One side's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    /// Requests or calls made.
    pub count: usize,
    /// Those answered 200 (direct calls: those that succeeded).
    pub ok: usize,
    pub seconds: f64,
    /// Successful requests per second.
    pub throughput: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub width: u32,
    pub height: u32,
    pub request_bytes: usize,
    pub concurrency: usize,
    pub workers: usize,
    pub direct: Series,
    pub daemon: Series,
    /// Daemon answers by status code (0: the request failed at the socket).
    pub statuses: BTreeMap<u16, usize>,
    /// How much longer a request takes through the daemon than a direct call, from throughput:
    /// (direct req/s ÷ daemon req/s − 1) × 100.
    pub overhead_pct: f64,
    /// The same from median latencies, (daemon p50 ÷ direct p50 − 1) × 100: less sensitive to outliers
    /// from other processes, and meaningful when concurrency equals workers (no queueing).
    pub p50_overhead_pct: f64,
    /// Alternating (direct, daemon) rounds the requests were split into.
    pub rounds: usize,
    /// The time budget ran out before every request was made.
    pub cut_short: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding the test image: {0}")]
    Image(#[from] image::ImageError),
}

/// A smooth RGB gradient, the default test image.
pub fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            ((x + y) * 255 / (width + height).max(1)) as u8,
        ])
    })
}

pub fn run(
    backend: Arc<dyn Backend>,
    image: &RgbImage,
    o: &LoadOptions,
) -> Result<BenchReport, BenchError> {
    let requests = o.requests.max(1);
    let concurrency = o.concurrency.max(1);
    let workers = o.workers.max(1);
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;

    for _ in 0..2 {
        runtime::segment(&*backend, image)?;
    }
    let service = Service::new(
        backend.clone(),
        Options {
            queue_depth: concurrency,
            workers,
            body_limit: (png.len() * 2).max(1 << 20),
            max_pixels: (image.width() as u64 * image.height() as u64).max(1 << 20),
            request_timeout: o.max_time + Duration::from_secs(60),
            bearer_token: None,
        },
    );
    service.warm_up()?;
    let handle = spawn(service, SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = handle.local_addr();

    let rounds = (requests / MIN_ROUND).clamp(1, MAX_ROUNDS);
    let phase_budget = o.max_time / (2 * rounds) as u32;
    let mut direct = Samples::default();
    let mut daemon = Samples::default();
    let mut cut_short = false;
    for round in 0..rounds {
        let n = requests / rounds + usize::from(round < requests % rounds);
        cut_short |= direct_phase(&*backend, image, n, workers, phase_budget, &mut direct) < n;
        cut_short |= daemon_phase(addr, &png, n, concurrency, phase_budget, &mut daemon)? < n;
    }
    handle.shutdown()?;

    let direct = direct.summary(&format!("direct segment() x{workers} threads"));
    let daemon_series =
        daemon.summary(&format!("daemon, {concurrency} clients, {workers} workers"));
    Ok(BenchReport {
        backend: backend.name().to_string(),
        width: image.width(),
        height: image.height(),
        request_bytes: png.len(),
        concurrency,
        workers,
        overhead_pct: (direct.throughput / daemon_series.throughput - 1.0) * 100.0,
        p50_overhead_pct: (daemon_series.p50_ms / direct.p50_ms - 1.0) * 100.0,
        rounds,
        direct,
        daemon: daemon_series,
        statuses: daemon.statuses,
        cut_short,
    })
}

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    count: usize,
    wall: Duration,
    statuses: BTreeMap<u16, usize>,
}

impl Samples {
    fn summary(&self, name: &str) -> Series {
        let mut l = self.latencies.clone();
        l.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let pct = |p: f64| {
            if l.is_empty() {
                f64::NAN
            } else {
                ms(l[((l.len() - 1) as f64 * p).round() as usize])
            }
        };
        let seconds = self.wall.as_secs_f64();
        Series {
            name: name.to_string(),
            count: self.count,
            ok: l.len(),
            seconds,
            throughput: l.len() as f64 / seconds,
            mean_ms: l.iter().map(|d| ms(*d)).sum::<f64>() / l.len().max(1) as f64,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
        }
    }
}

/// `n` direct calls on `threads` threads; returns how many were made.
fn direct_phase(
    backend: &dyn Backend,
    image: &RgbImage,
    n: usize,
    threads: usize,
    budget: Duration,
    out: &mut Samples,
) -> usize {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(n));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut mine = Vec::new();
                while start.elapsed() < budget && next.fetch_add(1, Ordering::SeqCst) < n {
                    let t = Instant::now();
                    if runtime::segment(backend, image).is_ok() {
                        mine.push(t.elapsed());
                    }
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    out.wall += start.elapsed();
    let made = next.load(Ordering::SeqCst).min(n);
    out.count += made;
    out.latencies.extend(latencies.into_inner().unwrap());
    made
}

/// `n` requests from `clients` keep-alive connections; returns how many were made.
fn daemon_phase(
    addr: SocketAddr,
    png: &[u8],
    n: usize,
    clients: usize,
    budget: Duration,
    out: &mut Samples,
) -> std::io::Result<usize> {
    let timeout = budget + Duration::from_secs(60);
    let mut conns = (0..clients)
        .map(|_| Client::connect(addr, timeout))
        .collect::<std::io::Result<Vec<_>>>()?;
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(n));
    let start = Instant::now();
    std::thread::scope(|s| {
        for conn in conns.iter_mut() {
            s.spawn(|| {
                let mut mine = Vec::new();
                while start.elapsed() < budget && next.fetch_add(1, Ordering::SeqCst) < n {
                    if conn.is_closed() {
                        match Client::connect(addr, timeout) {
                            Ok(c) => *conn = c,
                            Err(_) => {
                                mine.push((0, Duration::ZERO));
                                continue;
                            }
                        }
                    }
                    let t = Instant::now();
                    let status = conn
                        .request("POST", "/v1/segment", &[("Content-Type", "image/png")], png)
                        .map_or(0, |r| r.status);
                    mine.push((status, t.elapsed()));
                    if status == 0 {
                        // Broken connection: a fresh one for the next request.
                        if let Ok(c) = Client::connect(addr, timeout) {
                            *conn = c;
                        }
                    }
                }
                results.lock().unwrap().extend(mine);
            });
        }
    });
    out.wall += start.elapsed();
    let made = next.load(Ordering::SeqCst).min(n);
    out.count += made;
    for (status, latency) in results.into_inner().unwrap() {
        *out.statuses.entry(status).or_default() += 1;
        if status == 200 {
            out.latencies.push(latency);
        }
    }
    Ok(made)
}
