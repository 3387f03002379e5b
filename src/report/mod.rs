//! Accuracy-vs-precision regression reports. Evaluation follows Cityscapes' official semantics (one
//! confusion matrix accumulated over a whole split, ignore 255, IoU = TP / (TP + FP + FN) per class); each
//! precision is compared with FP32 pixel by pixel, timed, and checked against the gate's thresholds.
//!
//! Stages: [`evaluate`] runs the backends over the split, [`Report::assemble`] turns the matrices into the
//! versioned `report.json` schema, [`gate`] checks it, and [`markdown`] / [`html`] render it.

mod confusion;
pub mod evaluate;
pub mod gate;
pub mod generate;
pub mod html;
pub mod markdown;
mod svg;

pub use confusion::{ClassScores, ConfusionMatrix, IGNORE};
pub use gate::{GateResult, Thresholds, Violation};

use crate::bench::LatencyStats;
use crate::recipe::Precision;
use serde::{Deserialize, Serialize};

/// The schema name and version written into every `report.json`; readers refuse other versions.
pub const SCHEMA: &str = "ocrnet-edge.report";
pub const SCHEMA_VERSION: u32 = 1;

/// `report.json`. All IoUs and accuracies are fractions in [0, 1]; thresholds are in mIoU points (1 point
/// = 0.01).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub schema_version: u32,
    pub tool_version: String,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    /// The recipe or model the report is about.
    pub source: String,
    /// `cpu` or `trt`.
    pub backend: String,
    pub data: DataInfo,
    /// (H, W) the model ran at; `None` when each image ran at its own size (dynamic model).
    pub input_hw: Option<(u32, u32)>,
    pub classes: Vec<String>,
    pub precisions: Vec<PrecisionResult>,
    /// The comparison with `--baseline`, when one was given.
    pub baseline: Option<BaselineComparison>,
    pub gate: GateResult,
    /// Where each lower precision departs from FP32 inside the graph (`--diff`).
    #[serde(default)]
    pub divergence: Vec<Divergence>,
    /// The mIoU-budget search and its sensitivity ranking, when `calibrate --miou-budget` left one in
    /// the artifacts (`mixed_precision.json`).
    #[serde(default)]
    pub mixed_precision: Option<crate::debug::SearchReport>,
}

/// A lower precision's divergence from FP32, tensor by tensor, on the first images of the split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Divergence {
    pub precision: Precision,
    pub images: usize,
    /// Values compared (those both graphs have).
    pub compared: usize,
    /// The relative L2 error at which a value counts as diverged.
    pub threshold: f64,
    /// The first value past the threshold, in graph order.
    pub first: Option<DivergentValue>,
    /// Ranked by the error their own node adds.
    pub worst: Vec<DivergentValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DivergentValue {
    pub value: String,
    pub node: String,
    pub op: String,
    pub module: String,
    /// `None` where the lowered run produced NaN or infinity.
    pub rel_l2: Option<f64>,
    pub cosine: Option<f64>,
}

impl DivergentValue {
    pub fn of(d: &crate::debug::TensorDiff) -> Self {
        let finite = |x: f64| x.is_finite().then_some(x);
        DivergentValue {
            value: d.value.clone(),
            node: d.node.clone(),
            op: d.op.clone(),
            module: d.module.clone(),
            rel_l2: finite(d.rel_l2),
            cosine: finite(d.cosine),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataInfo {
    pub root: String,
    pub split: String,
    /// Images scored.
    pub images: usize,
    pub pixels: u64,
    /// Labelled images in the split, when `report --images` scored fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_images: Option<usize>,
}

impl DataInfo {
    /// "30 images", or "6 of 30 images" for part of the split.
    pub fn count(&self) -> String {
        match self.split_images {
            Some(all) if all != self.images => format!("{} of {all} images", self.images),
            _ => format!("{} images", self.images),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrecisionResult {
    pub precision: Precision,
    /// The graph or engine file that ran.
    pub model: String,
    pub miou: f64,
    pub pixel_accuracy: f64,
    /// Fraction of pixels (ignored ones included) whose class equals FP32's.
    pub agreement_with_fp32: f64,
    pub miou_delta_vs_fp32: f64,
    pub classes: Vec<ClassResult>,
    /// Of the backend that ran this precision, one image at a time after a warm-up.
    pub latency: Option<LatencyStats>,
    /// Rows: ground truth; columns: prediction.
    pub confusion: Vec<Vec<u64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassResult {
    pub name: String,
    /// `None` when the class is in neither the labels nor the predictions.
    pub iou: Option<f64>,
    pub iou_delta_vs_fp32: Option<f64>,
    /// Ground-truth pixels of the class in the split.
    pub label_pixels: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineComparison {
    pub path: String,
    pub entries: Vec<BaselineEntry>,
    /// Precisions measured here that the baseline lacks, and setups that differ (split, images,
    /// input size): the gate repeats them as warnings.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineEntry {
    pub precision: Precision,
    pub miou: f64,
    pub baseline_miou: f64,
    /// `miou - baseline_miou` (negative: worse than the baseline).
    pub delta: f64,
}

/// What a report is made from besides the matrices.
pub struct Meta {
    pub source: String,
    pub backend: String,
    pub data: DataInfo,
    pub input_hw: Option<(u32, u32)>,
    pub class_names: Vec<String>,
}

/// One precision's raw results.
pub struct Measured<'a> {
    pub precision: Precision,
    pub model: String,
    pub matrix: &'a ConfusionMatrix,
    pub agreement_with_fp32: f64,
    pub latency: Option<LatencyStats>,
}

impl Report {
    /// Scores every precision, compares it with the first (FP32), with the baseline when given, and runs
    /// the gate.
    pub fn assemble(
        meta: Meta,
        measured: &[Measured<'_>],
        baseline: Option<(&str, &Report)>,
        thresholds: &Thresholds,
    ) -> Report {
        let scores: Vec<ClassScores> = measured.iter().map(|m| m.matrix.scores()).collect();
        let reference = &scores[0];
        let precisions = measured
            .iter()
            .zip(&scores)
            .map(|(m, s)| {
                let classes = (0..m.matrix.classes)
                    .map(|c| ClassResult {
                        name: meta
                            .class_names
                            .get(c)
                            .cloned()
                            .unwrap_or_else(|| format!("class {c}")),
                        iou: s.iou[c],
                        iou_delta_vs_fp32: s.iou[c].zip(reference.iou[c]).map(|(a, b)| a - b),
                        label_pixels: (0..m.matrix.classes).map(|p| m.matrix.get(c, p)).sum(),
                    })
                    .collect();
                PrecisionResult {
                    precision: m.precision,
                    model: m.model.clone(),
                    miou: s.miou,
                    pixel_accuracy: s.pixel_accuracy,
                    agreement_with_fp32: m.agreement_with_fp32,
                    miou_delta_vs_fp32: s.miou - reference.miou,
                    classes,
                    latency: m.latency,
                    confusion: m.matrix.rows(),
                }
            })
            .collect::<Vec<_>>();
        let baseline = baseline.map(|(path, old)| BaselineComparison {
            path: path.to_string(),
            entries: precisions
                .iter()
                .filter_map(|p| {
                    let b = old.precision(p.precision)?;
                    Some(BaselineEntry {
                        precision: p.precision,
                        miou: p.miou,
                        baseline_miou: b.miou,
                        delta: p.miou - b.miou,
                    })
                })
                .collect(),
            notes: baseline_notes(&meta, &precisions, old),
        });
        let mut report = Report {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            tool_version: crate::VERSION.into(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            source: meta.source,
            backend: meta.backend,
            data: meta.data,
            input_hw: meta.input_hw,
            classes: meta.class_names,
            precisions,
            baseline,
            gate: GateResult::default(),
            divergence: Vec::new(),
            mixed_precision: None,
        };
        report.gate = gate::check(&report, thresholds);
        report
    }

    pub fn precision(&self, p: Precision) -> Option<&PrecisionResult> {
        self.precisions.iter().find(|r| r.precision == p)
    }

    /// The precision with the lowest mIoU (the last one on ties), whose confusion matrix the HTML shows.
    pub fn weakest(&self) -> &PrecisionResult {
        self.precisions
            .iter()
            .rev()
            .min_by(|a, b| a.miou.total_cmp(&b.miou))
            .expect("a report has at least one precision")
    }

    /// Reads a `report.json`, refusing another schema or version.
    pub fn from_json(text: &str, name: &str) -> Result<Report, String> {
        #[derive(Deserialize)]
        struct Head {
            schema: String,
            schema_version: u32,
        }
        let head: Head = serde_json::from_str(text)
            .map_err(|e| format!("{name}: not an ocrnet-edge report: {e}"))?;
        if head.schema != SCHEMA || head.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "{name}: schema {} version {} (this tool reads {SCHEMA} version {SCHEMA_VERSION})",
                head.schema, head.schema_version
            ));
        }
        serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))
    }
}

/// What makes a comparison with the baseline `old` partial or doubtful. The data root is not
/// compared: CI machines mount the same split at different paths.
fn baseline_notes(meta: &Meta, precisions: &[PrecisionResult], old: &Report) -> Vec<String> {
    let mut notes: Vec<String> = precisions
        .iter()
        .filter(|p| old.precision(p.precision).is_none())
        .map(|p| {
            let name = precision_name(p.precision);
            format!("{name}: not compared with the baseline, which has no {name}")
        })
        .collect();
    if old.data.split != meta.data.split {
        notes.push(format!(
            "the baseline was measured on the '{}' split, this report on '{}'",
            old.data.split, meta.data.split
        ));
    }
    if old.data.images != meta.data.images {
        notes.push(format!(
            "the baseline was measured on {} images, this report on {}",
            old.data.images, meta.data.images
        ));
    }
    if old.input_hw != meta.input_hw {
        let size = |hw: Option<(u32, u32)>| {
            hw.map_or("each image's own size".to_string(), |(h, w)| {
                format!("{h}x{w}")
            })
        };
        notes.push(format!(
            "the baseline ran at input {}, this report at {}",
            size(old.input_hw),
            size(meta.input_hw)
        ));
    }
    notes
}

/// How the mean treats classes with no pixels, said where the per-class table is.
pub const MEAN_RULE: &str = "A class with no pixels in the labels and none predicted has no IoU (–) and is left out of that precision's mean, as cityscapesScripts does; a class predicted but absent from the labels counts 0.";

/// A difference as signed points with two decimals; one that rounds to zero prints as `0.00`, not `-0.00`.
pub fn signed_points(delta: f64) -> String {
    let p = delta * 100.0;
    if p.abs() < 0.005 {
        "0.00".into()
    } else {
        format!("{p:+.2}")
    }
}

/// Why CPU latencies say little about the device: the executor simulates FP16 and INT8 in float32.
pub fn latency_note(r: &Report) -> Option<&'static str> {
    (r.backend == "cpu").then_some(
        "Latency: the CPU executor, one image at a time. It simulates FP16 and INT8 numerics in float32, \
         so their times measure the simulation, not the speed of those precisions on a GPU.",
    )
}

/// Precision names as the command line and the reports write them.
pub fn precision_name(p: Precision) -> &'static str {
    p.name()
}
