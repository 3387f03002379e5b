//! `report.md`: the tables of a report, short enough for a pull-request comment.

use super::{precision_name, Report, MEAN_RULE};
use std::fmt::Write;

/// IoU-like fractions as points with two decimals; `–` for undefined.
fn pts(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{:.2}", v * 100.0))
}

fn signed(x: Option<f64>) -> String {
    x.map_or("–".into(), super::signed_points)
}

fn ms(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.2}"))
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let size = r
        .input_hw
        .map_or("each image at its own size".into(), |(h, w)| {
            format!("input {h}×{w}")
        });
    let _ = writeln!(s, "## Accuracy by precision: {}\n", r.source);
    let _ = writeln!(
        s,
        "{} of `{}` split `{}` ({}), backend `{}`, ocrnet-edge {}. IoU in points (%).\n",
        r.data.count(),
        r.data.root,
        r.data.split,
        size,
        r.backend,
        r.tool_version
    );
    let _ = writeln!(
        s,
        "| precision | mIoU | Δ vs fp32 | pixel acc. | agreement with fp32 | median ms | p90 ms | p99 ms |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in &r.precisions {
        let l = p.latency.as_ref();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} % | {} | {} | {} |",
            precision_name(p.precision),
            pts(Some(p.miou)),
            super::signed_points(p.miou_delta_vs_fp32),
            pts(Some(p.pixel_accuracy)),
            p.agreement_with_fp32 * 100.0,
            ms(l.map(|l| l.median_ms)),
            ms(l.map(|l| l.p90_ms)),
            ms(l.map(|l| l.p99_ms)),
        );
    }
    if let Some(note) = super::latency_note(r) {
        let _ = writeln!(s, "\n{note}");
    }
    if let Some(b) = &r.baseline {
        let _ = writeln!(s, "\n**Against the baseline** `{}`:\n", b.path);
        let _ = writeln!(s, "| precision | mIoU | baseline | Δ |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for e in &b.entries {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                precision_name(e.precision),
                pts(Some(e.miou)),
                pts(Some(e.baseline_miou)),
                super::signed_points(e.delta)
            );
        }
    }
    let _ = writeln!(s, "\n### IoU per class\n\n{MEAN_RULE}\n");
    let mut head = "| class |".to_string();
    let mut rule = "|---|".to_string();
    for (i, p) in r.precisions.iter().enumerate() {
        let name = precision_name(p.precision);
        head += &format!(" {name} |");
        rule += "---:|";
        if i > 0 {
            head += &format!(" Δ {name} |");
            rule += "---:|";
        }
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for (c, class) in r.classes.iter().enumerate() {
        let mut row = format!("| {class} |");
        for (i, p) in r.precisions.iter().enumerate() {
            let cr = &p.classes[c];
            row += &format!(" {} |", pts(cr.iou));
            if i > 0 {
                row += &format!(" {} |", signed(cr.iou_delta_vs_fp32));
            }
        }
        let _ = writeln!(s, "{row}");
    }
    for d in &r.divergence {
        let _ = writeln!(
            s,
            "\n**{} vs fp32, tensor by tensor** ({} values on {} image(s), threshold relative L2 {}): first past it {}\n",
            precision_name(d.precision),
            d.compared,
            d.images,
            d.threshold,
            d.first
                .as_ref()
                .map_or("none".into(), |f| format!("`{}` ({})", f.node, f.op))
        );
        let _ = writeln!(s, "| worst node | op | module | relative L2 |");
        let _ = writeln!(s, "|---|---|---|---:|");
        for w in d.worst.iter().take(5) {
            let _ = writeln!(
                s,
                "| `{}` | {} | `{}` | {} |",
                w.node,
                w.op,
                w.module,
                w.rel_l2.map_or("non-finite".into(), |v| format!("{v:.3e}"))
            );
        }
    }
    if let Some(m) = &r.mixed_precision {
        let _ = writeln!(
            s,
            "\n**Mixed precision:** budget {} points ({}), {} node(s) kept out of INT8: mIoU {} (all INT8 {}); {:.1} % of FLOPs stay INT8.",
            m.budget_points,
            if m.met { "met" } else { "not met" },
            m.exclude.len(),
            pts(Some(m.mixed.miou)),
            pts(Some(m.int8.miou)),
            m.int8_flop_fraction * 100.0
        );
        if let Some(h) = &m.held_out {
            let _ = writeln!(
                s,
                "Checked on {} held-out images the search did not see: FP32 {}, all INT8 {}, mixed {}: budget {}.",
                h.samples,
                pts(Some(h.fp32.miou)),
                pts(Some(h.int8.miou)),
                pts(Some(h.mixed.miou)),
                if h.met { "met" } else { "not met" }
            );
        }
    }
    let _ = writeln!(s, "\n### Gate\n");
    let _ = writeln!(
        s,
        "Limits: {}.\n",
        super::gate::describe_limits(&r.gate.thresholds, r.baseline.is_some())
    );
    if r.gate.passed {
        let _ = writeln!(s, "**Passed.**");
    } else {
        let _ = writeln!(s, "**Failed:**\n");
        for v in &r.gate.violations {
            let _ = writeln!(s, "- {}", v.message);
        }
    }
    if !r.gate.warnings.is_empty() {
        let _ = writeln!(s, "\nWarnings:\n");
        for w in &r.gate.warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
    s
}
