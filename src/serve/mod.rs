//! The on-device inference daemon: an HTTP/1.1 server (axum on a small tokio runtime) in front of a
//! bounded queue and inference worker threads that share one [`Backend`].
//!
//! ```text
//! client ─► axum handler: token, content type, body limit, header dimensions ─► try_send ─► queue ─► worker thread(s)
//!              ▲                                                                   │ full: 503     decode, preprocess,
//!              └──────────────────── oneshot reply (or 504 after the timeout) ◄────┘               infer, class map, encode
//! ```
//!
//! [`app`] builds the router (tested in-process), [`Service::serve`] runs it on a listener until a shutdown
//! future resolves, then finishes the accepted requests, and [`spawn`] runs a service on its own thread
//! (tests, `bench serve`). The command line wires [`config`] and [`shutdown_signal`] to these.

pub mod bench;
pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod render;
mod routes;
mod worker;

pub use config::{ServeConfig, Settings};
pub use error::ApiError;
pub use metrics::{Metrics, Timings};
pub use render::Format;

use crate::data::ImageLimits;
use crate::runtime::{self, Backend, BackendError};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Threads of the async runtime: HTTP parsing and routing only, so two are plenty; the cores are left to
/// the inference workers.
pub const HTTP_THREADS: usize = 2;

/// What a running service enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Requests that may wait for a worker; one more is answered 503.
    pub queue_depth: usize,
    /// Inference threads sharing the backend.
    pub workers: usize,
    /// Largest request body, in bytes (413 beyond).
    pub body_limit: usize,
    /// Largest image, in pixels, read from its header before decoding (413 beyond).
    pub max_pixels: u64,
    /// Longest a segment request may take, body upload included (504 beyond).
    pub request_timeout: Duration,
    /// When set, `/v1/*` and `/metrics` need `Authorization: Bearer <token>` (401 otherwise).
    pub bearer_token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue_depth: 4,
            workers: 1,
            body_limit: 16 << 20,
            max_pixels: 4096 * 4096,
            request_timeout: Duration::from_secs(30),
            bearer_token: None,
        }
    }
}

/// The longest image side the daemon takes, whatever `max_pixels` allows. Resizing to the model's
/// input runs the vertical pass first, into a buffer of image width × model height × 16 bytes: a
/// 16777216×1 PNG (49 KB, within any pixel budget) asked for 32 GiB and aborted the process. At
/// this limit that buffer is 256 MiB for a 1024-high input.
pub const MAX_SIDE: u32 = 16384;

impl Options {
    /// The decoder's limits: the pixel budget, and each side within it and [`MAX_SIDE`].
    pub fn image_limits(&self) -> ImageLimits {
        let side = self.max_pixels.min(MAX_SIDE as u64) as u32;
        ImageLimits {
            max_width: side,
            max_height: side,
            max_pixels: self.max_pixels,
        }
    }
}

/// State shared by the handlers.
pub(crate) struct Shared {
    backend: Arc<dyn Backend>,
    options: Options,
    metrics: Arc<Metrics>,
    pool: worker::Pool,
    ready: AtomicBool,
    draining: AtomicBool,
}

/// A backend with its queue, workers and metrics. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl Service {
    /// Starts the workers. The service answers 503 to segment requests until [`Service::warm_up`] succeeds.
    pub fn new(backend: Arc<dyn Backend>, options: Options) -> Service {
        let metrics = Arc::new(Metrics::new());
        let pool = worker::Pool::start(
            backend.clone(),
            metrics.clone(),
            options.workers.max(1),
            options.queue_depth.max(1),
            options.image_limits(),
        );
        Service {
            shared: Arc::new(Shared {
                backend,
                options,
                metrics,
                pool,
                ready: AtomicBool::new(false),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// Runs one inference on a grey image of the model's input size (64×64 for a dynamic model) on the
    /// calling thread, then marks the service ready. Blocking.
    pub fn warm_up(&self) -> Result<Duration, BackendError> {
        let (h, w) = self.shared.backend.input_hw().unwrap_or((64, 64));
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]));
        let start = Instant::now();
        runtime::segment(&*self.shared.backend, &img)?;
        let took = start.elapsed();
        self.shared.ready.store(true, Ordering::SeqCst);
        self.shared.metrics.ready.set(1);
        // A shutdown that began during the warm-up set the gauge to 0 already; it stays 0, as /readyz is.
        if self.shared.draining.load(Ordering::SeqCst) {
            self.shared.metrics.ready.set(0);
        }
        log::info!("warm-up inference ({w}x{h}) took {took:.2?}; ready");
        Ok(took)
    }

    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst) && !self.shared.draining.load(Ordering::SeqCst)
    }

    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Serves `listener` until `shutdown` resolves; then stops accepting connections, lets the accepted
    /// requests finish (at most the request timeout plus 5 s), and returns. Call [`Service::close`]
    /// afterwards to stop the workers.
    ///
    /// The accept loop is ours rather than `axum::serve`'s for one setting: a deadline on reading a
    /// request's headers ([`header_timeout`]), which hyper also applies to a keep-alive connection
    /// waiting for its next request. Without it a client that sends half a request line and stalls
    /// holds its socket for good: enough of them exhaust the file descriptors (systemd's soft limit
    /// is 1024) and even `/healthz` stops answering, and one of them holds a shutdown to its end.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = app(self);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout(&self.shared.options));
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                // One client's connection failing before it was accepted concerns that client only.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors, mostly: the connections we hold will close, so wait and
                    // retry (as axum::serve does) instead of ending the daemon.
                    log::warn!("accepting a connection: {e}; retrying in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            };
            let _ = tcp.set_nodelay(true);
            let conn =
                http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app.clone()));
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    log::debug!("connection from {peer}: {e}");
                }
            });
        }
        drop(listener);
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.metrics.ready.set(0);
        log::info!("shutting down: refusing new connections, finishing accepted requests");
        let grace = self.shared.options.request_timeout + Duration::from_secs(5);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                log::warn!("connections still open {grace:?} after shutdown began; closing them");
            }
        }
        Ok(())
    }

    /// Closes the queue and waits for the workers to finish the jobs they hold.
    pub fn close(&self) {
        self.shared.pool.close();
    }
}

/// Errors of `accept` that concern one connection, not the listener (as axum::serve tells them apart).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// How long a client may take to send a request's headers, and how long a keep-alive connection may
/// sit idle: the request timeout, at most 10 s (headers are a few hundred bytes).
pub fn header_timeout(options: &Options) -> Duration {
    options.request_timeout.min(Duration::from_secs(10))
}

/// The router of a service: `POST /v1/segment`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn app(service: &Service) -> Router {
    routes::router(service.shared.clone())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            log::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                log::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => log::info!("SIGINT received"),
        () = term => log::info!("SIGTERM received"),
    }
}

/// The async runtime the daemon's HTTP side runs on.
pub fn http_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(HTTP_THREADS)
        .thread_name("ocrnet-http")
        .enable_all()
        .build()
}

/// A service running on its own thread (with its own runtime); dropping the handle shuts it down.
pub struct Handle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Binds `addr` (port 0: any free port) and serves `service` on a new thread until the handle is shut
/// down or dropped.
pub fn spawn(service: Service, addr: SocketAddr) -> std::io::Result<Handle> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = http_runtime()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ocrnet-serve".into())
        .spawn(move || {
            let result = rt.block_on(async {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                service
                    .serve(listener, async move {
                        let _ = stopped.await;
                    })
                    .await
            });
            service.close();
            result
        })?;
    Ok(Handle {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl Handle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Begins a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down gracefully and waits until every accepted request is answered and the workers stopped.
    pub fn shutdown(mut self) -> std::io::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.begin_shutdown();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
