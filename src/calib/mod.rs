//! Calibration: per-tensor histograms of |x| collected through the executor's hook, turned into amax
//! values (entropy, percentile or max) and a [`ScaleTable`], which the Q/DQ pass
//! ([`crate::passes::qdq`]) consumes and [`cache`] writes out as TensorRT's legacy calibration cache and
//! as deterministic JSON.
//!
//! Entry points:
//! - [`calibrate`]`(&executor, inputs, method, &opts) -> ScaleTable`: one forward pass per input with a
//!   [`Collector`] as the hook, then the method applied to every histogram.
//! - [`collect`] does the passes and returns the [`Collection`] (histograms + timing), from which
//!   [`Collection::scales`] gives a table for any method without running the model again.
//! - [`Collector`] is the hook itself, for callers that drive the executor themselves.
//!
//! Scales follow ARCHITECTURE.md: symmetric, zero point 0, `scale = amax / 127`.

pub mod cache;
pub mod calibrators;
pub mod coverage;
pub mod histogram;

pub use calibrators::{per_channel_amax, Method};
pub use histogram::{Histogram, NUM_BINS};

use crate::exec::{ExecError, Executor};
use crate::tensor::{Data, Tensor};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// The amax below which a tensor counts as all zeros; its scale is taken from this floor so that it
/// stays a positive normal float (TensorRT refuses a zero scale).
pub const MIN_AMAX: f32 = 1e-8;

/// `amax / 127`, with `amax` floored at [`MIN_AMAX`] (and a non-finite amax treated as the floor).
pub fn scale_of(amax: f32) -> f32 {
    let a = if amax.is_finite() && amax > MIN_AMAX {
        amax
    } else {
        MIN_AMAX
    };
    a / 127.0
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibError {
    #[error("calibration input {index}: {source}")]
    Input {
        index: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("calibration input {index}: {source}")]
    Run {
        index: usize,
        #[source]
        source: ExecError,
    },
    #[error("calibration saw no inputs")]
    NoInputs,
    #[error("tensor '{tensor}': {reason}")]
    Tensor { tensor: String, reason: String },
    #[error("scale table: {0}")]
    Format(String),
}

/// One activation's calibrated range.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TensorScale {
    pub amax: f32,
    /// `amax / 127` ([`scale_of`]).
    pub scale: f32,
    /// The largest finite |x| the calibration saw, which entropy and percentile clip below. `None` in a
    /// table read from a legacy cache, which holds scales only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f32>,
}

impl TensorScale {
    pub fn new(amax: f32) -> Self {
        TensorScale {
            amax,
            scale: scale_of(amax),
            max: None,
        }
    }
}

/// Activation name -> amax and scale, with how they were obtained. Sorted by name, so its JSON is the
/// same bytes for the same numbers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScaleTable {
    /// The method's name ([`Method`]'s Display), e.g. "entropy".
    pub method: String,
    /// Forward passes the histograms saw.
    pub images: usize,
    pub tensors: BTreeMap<String, TensorScale>,
}

impl ScaleTable {
    pub fn insert(&mut self, name: impl Into<String>, amax: f32) {
        self.tensors.insert(name.into(), TensorScale::new(amax));
    }

    /// The largest |x| seen of every tensor (its amax where the table does not know it), for the FP16
    /// lowering's range check: a clipped amax would let a tensor that overflows FP16 through.
    pub fn observed_max(&self) -> std::collections::BTreeMap<String, f32> {
        self.tensors
            .iter()
            .map(|(n, s)| (n.clone(), s.max.unwrap_or(s.amax)))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<TensorScale> {
        self.tensors.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Pretty JSON with sorted keys and a final newline: same table, same bytes.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a scale table always serialises");
        s.push('\n');
        s
    }

    pub fn from_json(text: &str) -> Result<Self, CalibError> {
        let t: ScaleTable =
            serde_json::from_str(text).map_err(|e| CalibError::Format(e.to_string()))?;
        for (name, s) in &t.tensors {
            if !(s.amax.is_finite() && s.amax >= 0.0 && s.scale.is_finite() && s.scale > 0.0) {
                return Err(CalibError::Tensor {
                    tensor: name.clone(),
                    reason: format!("amax {} / scale {} is not a usable range", s.amax, s.scale),
                });
            }
        }
        Ok(t)
    }
}

/// The executor hook that accumulates histograms.
#[derive(Debug, Default)]
pub struct Collector {
    /// Only these values, when set; otherwise every float activation (graph inputs included).
    only: Option<BTreeSet<String>>,
    hists: HashMap<String, Histogram>,
    /// Seconds spent inside [`Collector::observe`].
    pub seconds: f64,
}

impl Collector {
    /// Observes every float32/float16 value the executor produces.
    pub fn all() -> Self {
        Self::default()
    }

    /// Observes only the named values.
    pub fn only(names: impl IntoIterator<Item = String>) -> Self {
        Collector {
            only: Some(names.into_iter().collect()),
            ..Default::default()
        }
    }

    /// The hook body: adds the tensor to its histogram if it is watched and float.
    pub fn observe(&mut self, name: &str, t: &Tensor) {
        if self.only.as_ref().is_some_and(|o| !o.contains(name)) {
            return;
        }
        let started = Instant::now();
        match &t.data {
            Data::F32(v) => self.hists.entry(name.to_string()).or_default().add(v),
            Data::F16(_) | Data::BF16(_) => {
                let v = t.as_f32s();
                self.hists.entry(name.to_string()).or_default().add(&v)
            }
            _ => {}
        }
        self.seconds += started.elapsed().as_secs_f64();
    }

    pub fn histograms(&self) -> &HashMap<String, Histogram> {
        &self.hists
    }

    /// Tensors that held NaN or ±inf, with how many such elements (over all inputs). Their scales cover
    /// the finite values only.
    pub fn non_finite(&self) -> BTreeMap<String, u64> {
        self.hists
            .iter()
            .filter(|(_, h)| h.non_finite > 0)
            .map(|(n, h)| (n.clone(), h.non_finite))
            .collect()
    }

    /// Watched names never seen in a float tensor (a name that is not in the graph, or not float).
    pub fn missing(&self) -> Vec<String> {
        match &self.only {
            None => Vec::new(),
            Some(o) => o
                .iter()
                .filter(|n| !self.hists.contains_key(*n))
                .cloned()
                .collect(),
        }
    }

    /// The scale table for `method`, computed over the tensors in parallel.
    pub fn scales(&self, method: Method, images: usize) -> ScaleTable {
        let tensors: BTreeMap<String, TensorScale> = self
            .hists
            .par_iter()
            .map(|(n, h)| {
                let s = TensorScale {
                    max: Some(h.max),
                    ..TensorScale::new(method.amax(h))
                };
                (n.clone(), s)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        ScaleTable {
            method: method.to_string(),
            images,
            tensors,
        }
    }
}

/// How [`collect`] runs.
#[derive(Debug, Clone, Default)]
pub struct CollectOptions {
    /// Values to observe; `None` for every float activation.
    pub observe: Option<BTreeSet<String>>,
    /// A progress bar on stderr (indicatif hides it when stderr is not a terminal).
    pub progress: bool,
    /// The number of inputs, when known, for the progress bar.
    pub expected: Option<u64>,
}

/// What the calibration passes measured.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CollectReport {
    pub images: usize,
    pub tensors: usize,
    /// Wall time of the forward passes, histogram collection included.
    pub run_seconds: f64,
    /// The part of it spent building histograms.
    pub collect_seconds: f64,
    /// The forward passes with the hook (histograms included), image reading and preprocessing excluded.
    pub forward_seconds: f64,
    /// One forward pass of the first image without a hook, timed after the run: the yardstick of the
    /// calibration's cost per image (`forward_seconds / images / plain_forward_seconds`, goal ≤ 1.1).
    pub plain_forward_seconds: f64,
    pub cost_per_image_vs_forward: f64,
    /// Each image's forward pass with the hook, in order (the first also pays the executor's warm-up).
    #[serde(default)]
    pub forward_seconds_each: Vec<f64>,
    /// Histograms widened (re-binned) at least once, and how many widenings in all.
    pub widened_tensors: usize,
    pub widenings: u64,
    /// Watched names never seen (not produced, or not float).
    pub missing: Vec<String>,
    /// Tensors that held NaN or ±inf, and how many such elements ([`Collector::non_finite`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub non_finite: BTreeMap<String, u64>,
}

/// The histograms of a calibration run.
#[derive(Debug)]
pub struct Collection {
    pub collector: Collector,
    pub report: CollectReport,
}

impl Collection {
    pub fn scales(&self, method: Method) -> ScaleTable {
        self.collector.scales(method, self.report.images)
    }
}

/// Runs the executor once per input with a [`Collector`] hook.
pub fn collect<I, E>(
    exec: &Executor,
    inputs: I,
    opts: &CollectOptions,
) -> Result<Collection, CalibError>
where
    I: IntoIterator<Item = Result<HashMap<String, Tensor>, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut collector = match &opts.observe {
        Some(names) => Collector::only(names.iter().cloned()),
        None => Collector::all(),
    };
    let bar = match (opts.progress, opts.expected) {
        (false, _) => indicatif::ProgressBar::hidden(),
        (true, Some(n)) => indicatif::ProgressBar::new(n),
        (true, None) => indicatif::ProgressBar::no_length(),
    };
    bar.set_message("calibrating");
    let started = Instant::now();
    let mut images = 0usize;
    let mut first = None;
    let mut forward_seconds = 0.0;
    let mut forward_seconds_each = Vec::new();
    for (index, item) in inputs.into_iter().enumerate() {
        let feed = item.map_err(|e| CalibError::Input {
            index,
            source: e.into(),
        })?;
        if first.is_none() {
            first = Some(feed.clone());
        }
        let mut hook = |name: &str, t: &Tensor| collector.observe(name, t);
        let t = Instant::now();
        match &opts.observe {
            // Watching only these keeps the executor's fused plan (see `Executor::run_watching`).
            Some(names) => exec
                .run_watching(feed, names.iter().map(String::as_str), &mut hook)
                .map(|_| ()),
            None => exec.run(feed, &[], Some(&mut hook)).map(|_| ()),
        }
        .map_err(|source| CalibError::Run { index, source })?;
        let seconds = t.elapsed().as_secs_f64();
        forward_seconds += seconds;
        forward_seconds_each.push(seconds);
        images += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let run_seconds = started.elapsed().as_secs_f64();
    let Some(first) = first else {
        return Err(CalibError::NoInputs);
    };
    let t = Instant::now();
    exec.run(first, &[], None)
        .map_err(|source| CalibError::Run { index: 0, source })?;
    let plain_forward_seconds = t.elapsed().as_secs_f64();
    let hists = collector.histograms();
    let report = CollectReport {
        images,
        tensors: hists.len(),
        run_seconds,
        collect_seconds: collector.seconds,
        forward_seconds,
        plain_forward_seconds,
        cost_per_image_vs_forward: forward_seconds / images as f64 / plain_forward_seconds,
        forward_seconds_each,
        widened_tensors: hists.values().filter(|h| h.widenings > 0).count(),
        widenings: hists.values().map(|h| h.widenings as u64).sum(),
        missing: collector.missing(),
        non_finite: collector.non_finite(),
    };
    Ok(Collection { collector, report })
}

/// [`collect`], then `method` on every histogram.
pub fn calibrate<I, E>(
    exec: &Executor,
    inputs: I,
    method: Method,
    opts: &CollectOptions,
) -> Result<ScaleTable, CalibError>
where
    I: IntoIterator<Item = Result<HashMap<String, Tensor>, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(collect(exec, inputs, opts)?.scales(method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_amax_over_127_with_a_floor() {
        assert_eq!(scale_of(127.0), 1.0);
        assert_eq!(scale_of(0.0), MIN_AMAX / 127.0);
        assert_eq!(scale_of(f32::NAN), MIN_AMAX / 127.0);
    }

    #[test]
    fn collector_filters_and_ignores_integers() {
        let mut c = Collector::only(["a".to_string(), "z".to_string()]);
        c.observe("a", &Tensor::vec_f32(vec![2], vec![1.0, -3.0]).unwrap());
        c.observe("b", &Tensor::vec_f32(vec![1], vec![5.0]).unwrap());
        c.observe("z", &Tensor::vec_i64(vec![7]));
        assert_eq!(c.histograms().len(), 1);
        assert_eq!(c.missing(), vec!["z".to_string()]);
        assert!(c.non_finite().is_empty());
        c.observe(
            "a",
            &Tensor::vec_f32(vec![3], vec![f32::NAN, 2.0, f32::INFINITY]).unwrap(),
        );
        assert_eq!(c.non_finite(), BTreeMap::from([("a".to_string(), 2)]));
        let t = c.scales(Method::Max, 1);
        assert_eq!(t.get("a").unwrap().amax, 3.0);
        assert_eq!(t.method, "max");
    }

    /// A tensor mostly within ±1 with a few values past FP16's 65504: the percentile clips its amax far
    /// below them, but the FP16 lowering must still see the max, or the tensor would overflow to inf.
    #[test]
    fn observed_max_keeps_what_the_clip_cut_off() {
        let mut xs: Vec<f32> = (0..100_000)
            .map(|i| (i % 200) as f32 / 100.0 - 1.0)
            .collect();
        xs.extend([70_000.0, -69_000.0]);
        let mut c = Collector::all();
        c.observe("x", &Tensor::vec_f32(vec![xs.len()], xs).unwrap());
        let t = c.scales(Method::Percentile(99.9), 1);
        let s = t.get("x").unwrap();
        assert!(s.amax < 100.0, "amax {}", s.amax);
        assert_eq!(s.max, Some(70_000.0));
        assert_eq!(t.observed_max()["x"], 70_000.0);
        // A table from a legacy cache knows scales only: its amax is all there is.
        let mut legacy = ScaleTable::default();
        legacy.insert("y", 3.0);
        assert_eq!(legacy.observed_max()["y"], 3.0);
        // The max goes into scales.json and comes back.
        assert_eq!(ScaleTable::from_json(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn json_is_sorted_and_round_trips() {
        let mut t = ScaleTable {
            method: "entropy".into(),
            images: 2,
            ..Default::default()
        };
        t.insert("zeta", 2.0);
        t.insert("alpha", 0.5);
        let j = t.to_json();
        assert!(j.find("alpha").unwrap() < j.find("zeta").unwrap());
        assert_eq!(ScaleTable::from_json(&j).unwrap(), t);
        assert_eq!(t.clone().to_json(), j);
        let bad = j.replace("0.5", "-0.5");
        assert!(ScaleTable::from_json(&bad)
            .unwrap_err()
            .to_string()
            .contains("alpha"));
    }
}
