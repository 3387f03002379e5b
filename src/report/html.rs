//! `report.html`: one self-contained page (inline CSS, inline SVG charts, sample images as PNG data URIs)
//! that CI can keep as an artifact and anyone can open without a server.

use super::evaluate::SampleMaps;
use super::svg::{esc, grouped_bars, heat_map, Series};
use super::{precision_name, Report};
use crate::recipe::Precision;
use crate::runtime::CITYSCAPES_PALETTE;
use base64::Engine as _;
use std::fmt::Write;

fn colour(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "#4c78a8",
        Precision::Fp16 => "#f58518",
        Precision::Int8 => "#54a24b",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px}\
table{border-collapse:collapse;font-size:13px;margin:8px 0}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}\
td:first-child,th:first-child{text-align:left}\
.neg{color:#b00020}.pos{color:#176a2c}\
.gate{padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}\
.pass{background:#e6f4ea;color:#176a2c}.fail{background:#fdecea;color:#b00020}\
.samples{display:grid;gap:6px;align-items:start}.samples figure{margin:0}\
.samples img{width:100%;image-rendering:pixelated}.samples figcaption{font-size:12px;color:#555;overflow-wrap:anywhere}\
.meta{color:#555;font-size:13px}td.l{text-align:left}";

/// Renders the page. `samples` hold one class map per precision of `report`, in the same order;
/// `growth_svg` is the debugger's chart of the error along the graph, when `--diff` ran.
pub fn render(report: &Report, samples: &[SampleMaps], growth_svg: Option<&str>) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Accuracy by precision: {}</title><style>{STYLE}</style></head><body>",
        esc(&report.source)
    );
    let _ = write!(
        s,
        "<h1>Accuracy by precision: {}</h1><p class=\"meta\">{} of <code>{}</code>, split <code>{}</code>, {}; backend <code>{}</code>; ocrnet-edge {}. IoU in points (%).</p>",
        esc(&report.source),
        report.data.count(),
        esc(&report.data.root),
        esc(&report.data.split),
        report
            .input_hw
            .map_or("each image at its own size".into(), |(h, w)| format!("input {h}×{w}")),
        esc(&report.backend),
        esc(&report.tool_version)
    );
    gate(&mut s, report);
    summary_table(&mut s, report);
    if let Some(note) = super::latency_note(report) {
        let _ = write!(s, "<p class=\"meta\">{}</p>", esc(note));
    }

    let precisions: Vec<String> = report
        .precisions
        .iter()
        .map(|p| precision_name(p.precision).to_string())
        .collect();
    s.push_str("<h2>mIoU by precision</h2>");
    s.push_str(&grouped_bars(
        "mIoU",
        &precisions,
        &[Series {
            name: "mIoU",
            colour: "#4c78a8",
            values: report.precisions.iter().map(|p| Some(p.miou)).collect(),
        }],
    ));
    let _ = write!(s, "<h2>IoU per class</h2><p>{}</p>", esc(super::MEAN_RULE));
    let series: Vec<Series> = report
        .precisions
        .iter()
        .map(|p| Series {
            name: precision_name(p.precision),
            colour: colour(p.precision),
            values: p.classes.iter().map(|c| c.iou).collect(),
        })
        .collect();
    s.push_str(&grouped_bars(
        "IoU per class and precision",
        &report.classes,
        &series,
    ));
    class_table(&mut s, report);

    let weakest = report.weakest();
    let _ = write!(
        s,
        "<h2>Confusion matrix of the weakest precision ({})</h2>",
        precision_name(weakest.precision)
    );
    s.push_str(&heat_map(
        &format!("{} confusion matrix", precision_name(weakest.precision)),
        &report.classes,
        &weakest.confusion,
    ));
    samples_section(&mut s, report, samples);
    divergence_section(&mut s, report, growth_svg);
    mixed_precision_section(&mut s, report);
    s.push_str("</body></html>\n");
    s
}

fn gate(s: &mut String, r: &Report) {
    let class = if r.gate.passed { "pass" } else { "fail" };
    let text = if r.gate.passed {
        format!(
            "Gate passed ({})",
            super::gate::describe_limits(&r.gate.thresholds, r.baseline.is_some())
        )
    } else {
        format!("Gate failed: {}", r.gate.summary())
    };
    let _ = write!(s, "<div class=\"gate {class}\">{}</div>", esc(&text));
    if r.gate.violations.len() > 1 {
        s.push_str("<ul>");
        for v in &r.gate.violations {
            let _ = write!(s, "<li>{}</li>", esc(&v.message));
        }
        s.push_str("</ul>");
    }
    if !r.gate.warnings.is_empty() {
        s.push_str("<p>Warnings:</p><ul>");
        for w in &r.gate.warnings {
            let _ = write!(s, "<li>{}</li>", esc(w));
        }
        s.push_str("</ul>");
    }
}

fn signed_cell(x: Option<f64>) -> String {
    match x {
        None => "<td>–</td>".into(),
        Some(v) => {
            let class = if v < -0.0005 {
                " class=\"neg\""
            } else if v > 0.0005 {
                " class=\"pos\""
            } else {
                ""
            };
            format!("<td{class}>{}</td>", super::signed_points(v))
        }
    }
}

fn pts(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{:.2}", v * 100.0))
}

fn summary_table(s: &mut String, r: &Report) {
    s.push_str("<table><tr><th>precision</th><th>mIoU</th><th>Δ vs fp32</th><th>pixel acc.</th><th>agreement with fp32</th><th>median ms</th><th>p90 ms</th><th>p99 ms</th><th>model</th></tr>");
    for p in &r.precisions {
        let l = p.latency.as_ref();
        let ms = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.2}"));
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td>{}<td>{}</td><td>{:.2} %</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            precision_name(p.precision),
            pts(Some(p.miou)),
            signed_cell(Some(p.miou_delta_vs_fp32)),
            pts(Some(p.pixel_accuracy)),
            p.agreement_with_fp32 * 100.0,
            ms(l.map(|l| l.median_ms)),
            ms(l.map(|l| l.p90_ms)),
            ms(l.map(|l| l.p99_ms)),
            esc(&p.model)
        );
    }
    s.push_str("</table>");
    if let Some(b) = &r.baseline {
        let _ = write!(
            s,
            "<p>Against the baseline <code>{}</code>:</p><table><tr><th>precision</th><th>mIoU</th><th>baseline</th><th>Δ</th></tr>",
            esc(&b.path)
        );
        for e in &b.entries {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
                precision_name(e.precision),
                pts(Some(e.miou)),
                pts(Some(e.baseline_miou)),
                signed_cell(Some(e.delta))
            );
        }
        s.push_str("</table>");
    }
}

fn class_table(s: &mut String, r: &Report) {
    s.push_str("<table><tr><th>class</th><th>label px</th>");
    for (i, p) in r.precisions.iter().enumerate() {
        let n = precision_name(p.precision);
        let _ = write!(s, "<th>{n}</th>");
        if i > 0 {
            let _ = write!(s, "<th>Δ {n}</th>");
        }
    }
    s.push_str("</tr>");
    for (c, name) in r.classes.iter().enumerate() {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td>",
            esc(name),
            r.precisions[0].classes[c].label_pixels
        );
        for (i, p) in r.precisions.iter().enumerate() {
            let _ = write!(s, "<td>{}</td>", pts(p.classes[c].iou));
            if i > 0 {
                s.push_str(&signed_cell(p.classes[c].iou_delta_vs_fp32));
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
}

/// Each sample: the image, its ground truth, FP32's prediction and the weakest precision's as overlays,
/// and where the two predictions differ.
fn samples_section(s: &mut String, r: &Report, samples: &[SampleMaps]) {
    if samples.is_empty() {
        return;
    }
    let weakest = r.weakest().precision;
    let wi = r
        .precisions
        .iter()
        .position(|p| p.precision == weakest)
        .unwrap_or(0);
    let compare = wi != 0;
    let columns = if compare { 5 } else { 3 };
    let _ = write!(
        s,
        "<h2>Samples</h2><div class=\"samples\" style=\"grid-template-columns:repeat({columns},1fr)\">"
    );
    for sample in samples {
        let name = sample
            .image
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let mut panels = vec![
            (name, sample.rgb.clone()),
            ("ground truth".to_string(), blend(sample, &sample.labels)),
            (
                precision_name(r.precisions[0].precision).to_string(),
                blend(sample, &sample.maps[0]),
            ),
        ];
        if compare {
            let differ = sample.maps[0]
                .iter()
                .zip(&sample.maps[wi])
                .filter(|(a, b)| a != b)
                .count();
            panels.push((
                precision_name(weakest).to_string(),
                blend(sample, &sample.maps[wi]),
            ));
            panels.push((
                format!(
                    "{} vs {}: {:.2} % of pixels differ",
                    precision_name(r.precisions[0].precision),
                    precision_name(weakest),
                    100.0 * differ as f64 / sample.maps[0].len().max(1) as f64
                ),
                difference(sample, &sample.maps[0], &sample.maps[wi]),
            ));
        }
        for (caption, rgb) in panels {
            let _ = write!(
                s,
                "<figure><img alt=\"{c}\" src=\"data:image/png;base64,{}\"><figcaption>{c}</figcaption></figure>",
                base64::engine::general_purpose::STANDARD.encode(png_rgb(sample, &rgb)),
                c = esc(&caption)
            );
        }
    }
    s.push_str("</div>");
}

/// The class colours blended half and half over the image; ignored labels leave the image as is.
fn blend(sample: &SampleMaps, classes: &[u8]) -> Vec<u8> {
    let mut out = sample.rgb.clone();
    for (px, &c) in out.chunks_exact_mut(3).zip(classes) {
        if let Some(colour) = CITYSCAPES_PALETTE.get(c as usize) {
            for ch in 0..3 {
                px[ch] = ((px[ch] as u16 + colour[ch] as u16) / 2) as u8;
            }
        }
    }
    out
}

/// The image darkened to grey, with the pixels where the two maps differ in magenta.
fn difference(sample: &SampleMaps, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = sample.rgb.clone();
    for ((px, x), y) in out.chunks_exact_mut(3).zip(a).zip(b) {
        if x != y {
            px.copy_from_slice(&[255, 0, 255]);
        } else {
            let grey = ((px[0] as u16 + px[1] as u16 + px[2] as u16) / 6) as u8;
            px.copy_from_slice(&[grey, grey, grey]);
        }
    }
    out
}

fn png_rgb(sample: &SampleMaps, rgb: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut enc = png::Encoder::new(&mut buf, sample.width as u32, sample.height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc
        .write_header()
        .expect("an 8-bit RGB PNG header is valid");
    w.write_image_data(rgb)
        .expect("the panel has width * height RGB pixels");
    w.finish().expect("writing a PNG into memory");
    buf
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or("non-finite".into(), f)
}

/// Where each lower precision departs from FP32 inside the graph: the chart, the first value past the
/// threshold and the worst ones, each with its node, op and module.
fn divergence_section(s: &mut String, r: &Report, growth_svg: Option<&str>) {
    if r.divergence.is_empty() {
        return;
    }
    s.push_str("<h2>Where the lower precisions depart from FP32</h2>");
    if let Some(svg) = growth_svg {
        s.push_str(svg);
    }
    for d in &r.divergence {
        let _ = write!(
            s,
            "<p><b>{}</b> on {} image(s), {} values compared; threshold relative L2 {}. First past it: {}</p>",
            precision_name(d.precision),
            d.images,
            d.compared,
            d.threshold,
            d.first.as_ref().map_or("none".into(), |f| format!(
                "<code>{}</code> ({} <code>{}</code>, module <code>{}</code>, relative L2 {})",
                esc(&f.value),
                esc(&f.op),
                esc(&f.node),
                esc(&f.module),
                opt(f.rel_l2, |v| format!("{v:.3e}"))
            ))
        );
        s.push_str("<table><tr><th>worst: node (by the error it adds)</th><th>op</th><th>module</th><th>relative L2</th><th>cosine</th></tr>");
        for w in &d.worst {
            let _ = write!(
                s,
                "<tr><td><code>{}</code></td><td class=\"l\">{}</td><td class=\"l\"><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&w.node),
                esc(&w.op),
                esc(&w.module),
                opt(w.rel_l2, |v| format!("{v:.3e}")),
                opt(w.cosine, |v| format!("{v:.5}"))
            );
        }
        s.push_str("</table>");
    }
}

/// The mIoU-budget search: what it kept out of INT8 and the sensitivity ranking it used.
fn mixed_precision_section(s: &mut String, r: &Report) {
    let Some(m) = &r.mixed_precision else {
        return;
    };
    let _ = write!(
        s,
        "<h2>Mixed precision: nodes kept out of INT8</h2><p>Budget {} mIoU points ({}): FP32 {}, all INT8 {}, mixed {}; {} node(s) kept out, {:.1} % of the FLOPs stay INT8 ({:.1} % with none kept out).</p>",
        m.budget_points,
        if m.met { "met" } else { "not met" },
        pts(Some(m.fp32.miou)),
        pts(Some(m.int8.miou)),
        pts(Some(m.mixed.miou)),
        m.exclude.len(),
        m.int8_flop_fraction * 100.0,
        m.int8_flop_fraction_all * 100.0
    );
    if let Some(h) = &m.held_out {
        let _ = write!(
            s,
            "<p>Checked on {} held-out images the search did not see: FP32 {}, all INT8 {}, mixed {}: budget {}.</p>",
            h.samples,
            pts(Some(h.fp32.miou)),
            pts(Some(h.int8.miou)),
            pts(Some(h.mixed.miou)),
            if h.met { "met" } else { "not met" }
        );
    }
    s.push_str("<table><tr><th>rank</th><th>unit</th><th>op</th><th>module</th><th>mIoU won back kept out</th><th>agreement won back</th><th>kept out</th></tr>");
    for (i, u) in m.sensitivity.units.iter().take(15).enumerate() {
        let kept =
            u.unit.nodes.iter().any(|n| m.exclude.contains(n)) || m.exclude.contains(&u.unit.name);
        let _ = write!(
            s,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td>{}{}<td>{}</td></tr>",
            i + 1,
            esc(&u.unit.name),
            esc(&u.unit.op),
            esc(&u.unit.module),
            signed_cell(Some(u.miou_gain)),
            signed_cell(Some(u.agreement_gain)),
            if kept { "yes" } else { "" }
        );
    }
    s.push_str("</table>");
}
