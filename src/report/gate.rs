//! The regression gate: thresholds on how much a precision may lose against FP32 (mIoU and each class's
//! IoU) and against a baseline report. Thresholds are in mIoU points (1 point = 0.01 IoU) because that is
//! how segmentation results are quoted.

use super::{precision_name, Report};
use crate::recipe::Precision;
use serde::{Deserialize, Serialize};

/// The limits; an absent one is not checked. Also the recipe's `report:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Largest mIoU drop of any precision against FP32, in points.
    #[serde(default)]
    pub max_miou_drop: Option<f64>,
    /// Largest drop of one class's IoU against FP32, in points.
    #[serde(default)]
    pub max_class_iou_drop: Option<f64>,
    /// Largest mIoU drop of a precision against the same precision in the baseline report, in points.
    #[serde(default)]
    pub max_baseline_drop: Option<f64>,
}

impl Thresholds {
    /// `self`'s limits, with `over`'s where it sets one (flags over the recipe).
    pub fn overridden_by(&self, over: &Thresholds) -> Thresholds {
        Thresholds {
            max_miou_drop: over.max_miou_drop.or(self.max_miou_drop),
            max_class_iou_drop: over.max_class_iou_drop.or(self.max_class_iou_drop),
            max_baseline_drop: over.max_baseline_drop.or(self.max_baseline_drop),
        }
    }

    /// Each set limit must be a finite, non-negative number of points.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("max_miou_drop", self.max_miou_drop),
            ("max_class_iou_drop", self.max_class_iou_drop),
            ("max_baseline_drop", self.max_baseline_drop),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(format!(
                        "{name}: {v} is not a non-negative number of mIoU points"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    MiouVsFp32,
    ClassIouVsFp32,
    MiouVsBaseline,
}

/// One threshold broken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub check: Check,
    pub precision: Precision,
    /// The class, for a per-class check.
    pub class: Option<String>,
    /// How much was lost, in points.
    pub drop_points: f64,
    pub limit_points: f64,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub thresholds: Thresholds,
    /// Worst first.
    pub violations: Vec<Violation>,
    pub passed: bool,
    /// What a set limit could not check (no baseline, a precision the baseline lacks) and baseline
    /// comparisons across different setups: a gate that passed should not be read as more than it is.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl GateResult {
    /// One line for a CI log.
    pub fn summary(&self) -> String {
        match self.violations.as_slice() {
            [] => "gate passed".to_string(),
            [v] => format!("REGRESSION: {}", v.message),
            [v, rest @ ..] => format!(
                "REGRESSION: {} (and {} more threshold{} broken)",
                v.message,
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The limits in words, e.g. "mIoU drop vs fp32 ≤ 1 point, class IoU drop not checked, ...".
pub fn describe_limits(t: &Thresholds, has_baseline: bool) -> String {
    let limit = |x: Option<f64>| x.map_or("not checked".into(), |v| format!("≤ {v} points"));
    let baseline = match t.max_baseline_drop {
        Some(_) if !has_baseline => "not checked (no baseline)".into(),
        x => limit(x),
    };
    format!(
        "mIoU drop vs fp32 {}, class IoU drop vs fp32 {}, mIoU drop vs baseline {baseline}",
        limit(t.max_miou_drop),
        limit(t.max_class_iou_drop),
    )
}

/// Differences in floating point (a drop of 2.0000000000000018 points against a limit of 2) are
/// not regressions: a drop counts once it passes the limit by more than this many points.
const SLACK_POINTS: f64 = 1e-9;

/// Checks `report` (its FP32 entry and its baseline comparison) against `t`.
pub fn check(report: &Report, t: &Thresholds) -> GateResult {
    let mut violations = Vec::new();
    let points = |x: f64| x * 100.0;
    let has_fp32 = report.precision(Precision::Fp32).is_some();
    for p in report
        .precisions
        .iter()
        .filter(|p| has_fp32 && p.precision != Precision::Fp32)
    {
        let name = precision_name(p.precision);
        if let Some(limit) = t.max_miou_drop {
            let drop = -points(p.miou_delta_vs_fp32);
            if drop > limit + SLACK_POINTS {
                violations.push(Violation {
                    check: Check::MiouVsFp32,
                    precision: p.precision,
                    class: None,
                    drop_points: drop,
                    limit_points: limit,
                    message: format!(
                        "{name} mIoU {:.2} is {drop:.2} points below fp32 (limit {limit})",
                        points(p.miou)
                    ),
                });
            }
        }
        if let Some(limit) = t.max_class_iou_drop {
            for c in &p.classes {
                let Some(delta) = c.iou_delta_vs_fp32 else {
                    continue;
                };
                let drop = -points(delta);
                if drop > limit + SLACK_POINTS {
                    violations.push(Violation {
                        check: Check::ClassIouVsFp32,
                        precision: p.precision,
                        class: Some(c.name.clone()),
                        drop_points: drop,
                        limit_points: limit,
                        message: format!(
                            "{name} class '{}' IoU {:.2} is {drop:.2} points below fp32 (limit {limit})",
                            c.name,
                            points(c.iou.unwrap_or(0.0))
                        ),
                    });
                }
            }
        }
    }
    let mut warnings = Vec::new();
    if let Some(b) = &report.baseline {
        warnings.extend(b.notes.iter().cloned());
    } else if t.max_baseline_drop.is_some() {
        warnings.push("mIoU drop vs baseline: not checked, no baseline report was given".into());
    }
    if let (Some(limit), Some(b)) = (t.max_baseline_drop, &report.baseline) {
        for e in &b.entries {
            let drop = -points(e.delta);
            if drop > limit + SLACK_POINTS {
                violations.push(Violation {
                    check: Check::MiouVsBaseline,
                    precision: e.precision,
                    class: None,
                    drop_points: drop,
                    limit_points: limit,
                    message: format!(
                        "{} mIoU {:.2} is {drop:.2} points below the baseline's {:.2} (limit {limit})",
                        precision_name(e.precision),
                        points(e.miou),
                        points(e.baseline_miou)
                    ),
                });
            }
        }
    }
    // Worst first: by how far past its limit each one is.
    violations.sort_by(|a, b| {
        (b.drop_points - b.limit_points).total_cmp(&(a.drop_points - a.limit_points))
    });
    GateResult {
        thresholds: t.clone(),
        passed: violations.is_empty(),
        violations,
        warnings,
    }
}
