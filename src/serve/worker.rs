//! The inference workers: plain OS threads (never the async runtime's) behind a bounded queue. A request
//! that finds the queue full is refused at once (503); one whose client gave up (timeout, disconnect)
//! before a worker reached it is skipped. Each job runs the whole pipeline: decode, preprocess, infer,
//! upsample + argmax, encode, timing each stage.

use crate::data::{self, ImageLimits};
use crate::runtime::{self, Backend};
use crate::serve::error::ApiError;
use crate::serve::metrics::{Metrics, Timings};
use crate::serve::render::{self, Answer, Format};
use bytes::Bytes;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

pub(crate) struct Job {
    pub body: Bytes,
    pub format: Format,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<Answer, ApiError>>,
}

pub(crate) struct Pool {
    tx: Mutex<Option<SyncSender<Job>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    depth: usize,
    metrics: Arc<Metrics>,
}

impl Pool {
    pub fn start(
        backend: Arc<dyn Backend>,
        metrics: Arc<Metrics>,
        workers: usize,
        depth: usize,
        limits: ImageLimits,
    ) -> Pool {
        let (tx, rx) = sync_channel::<Job>(depth);
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..workers)
            .map(|i| {
                let (rx, backend, metrics) = (rx.clone(), backend.clone(), metrics.clone());
                std::thread::Builder::new()
                    .name(format!("ocrnet-infer-{i}"))
                    .spawn(move || work(&rx, &*backend, &metrics, limits))
                    .expect("spawning an inference thread")
            })
            .collect();
        Pool {
            tx: Mutex::new(Some(tx)),
            handles: Mutex::new(handles),
            depth,
            metrics,
        }
    }

    /// Queues a job, or refuses it at once when the queue is full or closed.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(ApiError::ShuttingDown)?;
        // Counted before sending so that a fast worker never takes the gauge below zero.
        self.metrics.queue_depth.inc();
        tx.try_send(job).map_err(|e| {
            self.metrics.queue_depth.dec();
            match e {
                TrySendError::Full(_) => ApiError::QueueFull { depth: self.depth },
                TrySendError::Disconnected(_) => ApiError::ShuttingDown,
            }
        })
    }

    /// Stops taking jobs, lets the workers finish the queued ones, and waits for them.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends the threads once they finish what they hold; not joined here, so that
        // dropping a server never blocks on an inference.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn work(rx: &Mutex<Receiver<Job>>, backend: &dyn Backend, metrics: &Metrics, limits: ImageLimits) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        metrics.queue_depth.dec();
        // Every job's wait counts, including those whose client gave up meanwhile: those waits are
        // the ones an operator sizing the queue most needs to see.
        let started = Instant::now();
        let waited = started - job.enqueued;
        metrics.observe_queue(waited);
        if job.reply.is_closed() {
            log::debug!("skipping a request whose client is gone");
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            process(backend, &job.body, job.format, limits)
        }))
        .unwrap_or_else(|_| Err(ApiError::Internal("the inference pipeline panicked".into())));
        let result = result.map(|mut answer| {
            answer.timings.queue = waited;
            metrics.observe_stages(&answer.timings);
            answer
        });
        let _ = job.reply.send(result);
    }
}

/// Decode → preprocess → infer → class map → answer, the same steps as `runtime::segment`.
pub(crate) fn process(
    backend: &dyn Backend,
    body: &[u8],
    format: Format,
    limits: ImageLimits,
) -> Result<Answer, ApiError> {
    let t0 = Instant::now();
    let img = data::image::decode_rgb(body, Path::new("request body"), limits)
        .map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    let input = data::preprocess(&img, backend.input_hw());
    let t1 = Instant::now();
    let logits = backend
        .infer(input)
        .map_err(|e| ApiError::Internal(format!("{} backend: {e}", backend.name())))?;
    let t2 = Instant::now();
    let (w, h) = img.dimensions();
    let map = runtime::class_map(&logits, h as usize, w as usize).ok_or_else(|| {
        ApiError::Internal(format!(
            "the model's output of shape {:?} is not [1, classes, H, W] logits",
            logits.shape
        ))
    })?;
    let payload = render::payload(format, &map, &img);
    let t3 = Instant::now();
    Ok(Answer {
        width: map.width,
        height: map.height,
        payload,
        timings: Timings {
            queue: Default::default(),
            pre: t1 - t0,
            infer: t2 - t1,
            post: t3 - t2,
        },
    })
}
