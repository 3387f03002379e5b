//! Prometheus metrics (OpenMetrics text from `GET /metrics`): requests by route and status code, latency
//! histograms per pipeline stage, the queue depth and the number of segment requests in flight.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

/// Where a segment request spends its time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Waiting in the queue for a worker.
    pub queue: Duration,
    /// Decoding the image and HRNet preprocessing.
    pub pre: Duration,
    /// The backend's inference.
    pub infer: Duration,
    /// Upsampling + argmax and encoding the answer.
    pub post: Duration,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    stages: Family<StageLabels, Histogram>,
    request_seconds: Histogram,
    pub(crate) queue_depth: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) ready: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 19))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ocrnet_edge");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status code",
            requests.clone(),
        );
        let stages = Family::<StageLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "stage_seconds",
            "Time a segment request spends in each stage: queue, pre, infer, post",
            stages.clone(),
        );
        let request_seconds = latency_histogram();
        registry.register(
            "segment_request_seconds",
            "Whole segment requests as the server sees them, from routing to response, any status",
            request_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Segment requests waiting for an inference worker",
            queue_depth.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Segment requests being handled (reading, queued, running or answering)",
            in_flight.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 once the model is loaded and warmed up, 0 before and while shutting down",
            ready.clone(),
        );
        Metrics {
            registry,
            requests,
            stages,
            request_seconds,
            queue_depth,
            in_flight,
            ready,
        }
    }

    pub(crate) fn count_request(&self, route: &'static str, code: u16) {
        self.requests
            .get_or_create(&RequestLabels { route, code })
            .inc();
    }

    pub(crate) fn observe_request(&self, d: Duration) {
        self.request_seconds.observe(d.as_secs_f64());
    }

    /// A job's wait in the queue, observed when a worker picks it up, whatever becomes of it.
    pub(crate) fn observe_queue(&self, d: Duration) {
        self.stages
            .get_or_create(&StageLabels { stage: "queue" })
            .observe(d.as_secs_f64());
    }

    /// The stages after the queue, of a request that was answered.
    pub(crate) fn observe_stages(&self, t: &Timings) {
        for (stage, d) in [("pre", t.pre), ("infer", t.infer), ("post", t.post)] {
            self.stages
                .get_or_create(&StageLabels { stage })
                .observe(d.as_secs_f64());
        }
    }

    /// Segment requests in flight right now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// Requests waiting in the queue right now.
    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.get()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts a segment request in flight for as long as it lives (also when its future is dropped).
pub(crate) struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    pub(crate) fn new(g: &'a Gauge) -> Self {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
