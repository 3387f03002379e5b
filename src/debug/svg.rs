//! The error along the graph as a standalone SVG line chart (one line per lowered precision, relative L2
//! on a log axis against the position in the FP32 graph), for the HTML report.

use super::diff::DiffReport;
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 40.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
/// Errors are drawn between these (a zero error sits on the floor, non-finite on the ceiling).
const FLOOR: f64 = 1e-7;
const CEIL: f64 = 10.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained `<svg>` element: x is the value's position in the FP32 graph, y its relative L2 error
/// (log scale, 1e-7 to 10), one polyline per report, a dashed line at each report's threshold.
pub fn error_growth_svg(reports: &[&DiffReport]) -> String {
    let max_x = reports
        .iter()
        .flat_map(|r| r.growth.iter().map(|p| p.index))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |i: usize| LEFT + pw * i as f64 / max_x;
    let y = |e: f64| {
        let e = if e.is_finite() {
            e.clamp(FLOOR, CEIL)
        } else {
            CEIL
        };
        let t = (e.log10() - FLOOR.log10()) / (CEIL.log10() - FLOOR.log10());
        TOP + ph * (1.0 - t)
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="11" role="img"><title>Relative L2 error along the graph</title>"#
    );
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for k in -7..=1 {
        let v = 10f64.powi(k);
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">1e{k}</text>"##,
            LEFT + pw,
            LEFT - 4.0,
            yy + 4.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">value index in the FP32 graph (0–{})</text>"#,
        LEFT + pw / 2.0,
        H - 8.0,
        max_x as usize
    );
    let _ = write!(
        s,
        r#"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">relative L2</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    for (k, r) in reports.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points: Vec<String> = r
            .growth
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.index), y(p.rel_l2)))
            .collect();
        let ty = y(r.threshold);
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="{color}" stroke-dasharray="4 3" stroke-opacity="0.6"/>"#,
            LEFT + pw
        );
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}">{}</text>"#,
            LEFT + 8.0 + 80.0 * k as f64,
            TOP - 8.0,
            escape(&r.precision)
        );
    }
    s.push_str("</svg>");
    s
}
