//! Small hand-written SVG charts for the HTML report: no script, no external file, so the page renders the
//! same in a browser, a CI artifact viewer or an e-mail client.

use std::fmt::Write;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One coloured series of values in [0, 1]; `None` leaves a gap.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub values: Vec<Option<f64>>,
}

const FONT: &str = "font-family=\"system-ui, sans-serif\" font-size=\"11\"";

/// Vertical bars, one per category and series, values in [0, 1] shown as points (× 100), with a legend.
pub fn grouped_bars(title: &str, categories: &[String], series: &[Series<'_>]) -> String {
    let single = series.len() == 1;
    let bar = if single { 36.0 } else { 9.0 };
    let group = bar * series.len() as f64 + 10.0;
    let (left, top, plot_h, bottom) = (40.0, 34.0, 200.0, 90.0);
    let width = left + group * categories.len() as f64 + 10.0;
    let height = top + plot_h + bottom;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" {FONT} role="img"><title>{t}</title><text x="{left}" y="14" font-size="13" font-weight="600">{t}</text>"#,
        t = esc(title)
    );
    axis(&mut s, left, top, plot_h, width - 10.0);
    for (ci, cat) in categories.iter().enumerate() {
        let gx = left + 5.0 + group * ci as f64;
        for (si, ser) in series.iter().enumerate() {
            let Some(v) = ser.values.get(ci).copied().flatten() else {
                continue;
            };
            let h = v.clamp(0.0, 1.0) * plot_h;
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar}" height="{h:.1}" fill="{}"><title>{} {}: {:.2}</title></rect>"#,
                gx + bar * si as f64,
                top + plot_h - h,
                ser.colour,
                esc(cat),
                esc(ser.name),
                v * 100.0
            );
            if single {
                // One series: print each value above its bar.
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.2}</text>"#,
                    gx + bar / 2.0,
                    top + plot_h - h - 4.0,
                    v * 100.0
                );
            }
        }
        let lx = gx + bar * series.len() as f64 / 2.0;
        let ly = top + plot_h + 8.0;
        let _ = write!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(-50 {lx:.1} {ly:.1})" text-anchor="end">{}</text>"#,
            esc(cat)
        );
    }
    // After the title (about 7 px per character at 13 px).
    legend(&mut s, series, left + 20.0 + 7.0 * title.len() as f64, 14.0);
    s.push_str("</svg>");
    s
}

/// Horizontal grid lines and labels at 0, 25, 50, 75 and 100 points.
fn axis(s: &mut String, left: f64, top: f64, plot_h: f64, right: f64) {
    for i in 0..=4 {
        let y = top + plot_h - plot_h * i as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            left - 4.0,
            y + 4.0,
            i * 25
        );
    }
}

fn legend(s: &mut String, series: &[Series<'_>], x: f64, y: f64) {
    if series.len() < 2 {
        return;
    }
    for (i, ser) in series.iter().enumerate() {
        let lx = x + 80.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 9.0,
            ser.colour,
            lx + 14.0,
            esc(ser.name)
        );
    }
}

/// A confusion matrix as a heat map: each row (ground truth) normalised by its total, so a cell is the
/// fraction of that class's pixels predicted as the column's class. Rows without pixels stay blank.
pub fn heat_map(title: &str, labels: &[String], rows: &[Vec<u64>]) -> String {
    let cell = 20.0;
    let n = rows.len() as f64;
    let (left, top) = (110.0, 120.0);
    let width = left + cell * n + 20.0;
    let height = top + cell * n + 30.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" {FONT} role="img"><title>{t}</title><text x="4" y="14" font-size="13" font-weight="600">{t}</text>"#,
        t = esc(title)
    );
    for (i, name) in labels.iter().enumerate().take(rows.len()) {
        let y = top + cell * i as f64 + cell * 0.7;
        let x = left + cell * i as f64 + cell * 0.6;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{y:.1}" text-anchor="end">{n}</text><text x="{x:.1}" y="{:.1}" transform="rotate(-60 {x:.1} {:.1})">{n}</text>"#,
            left - 4.0,
            top - 4.0,
            top - 4.0,
            n = esc(name)
        );
    }
    for (r, row) in rows.iter().enumerate() {
        let total: u64 = row.iter().sum();
        if total == 0 {
            continue;
        }
        for (c, &v) in row.iter().enumerate() {
            let f = v as f64 / total as f64;
            // White to dark blue; the diagonal in green so that correct predictions read apart.
            let (r0, g0, b0) = if r == c { (0, 110, 50) } else { (20, 50, 160) };
            let mix = |full: u8| (255.0 - (255.0 - full as f64) * f.sqrt()).round() as u8;
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{cell}" height="{cell}" fill="#{:02x}{:02x}{:02x}" stroke="#fff" stroke-width="0.5"><title>{} → {}: {:.1} % of {} px</title></rect>"##,
                left + cell * c as f64,
                top + cell * r as f64,
                mix(r0),
                mix(g0),
                mix(b0),
                esc(labels.get(r).map_or("", |s| s.as_str())),
                esc(labels.get(c).map_or("", |s| s.as_str())),
                f * 100.0,
                total
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{left}" y="{:.1}" fill="#555">rows: ground truth · columns: prediction · shade: fraction of the row</text></svg>"##,
        top + cell * n + 18.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&#39;");
        let svg = grouped_bars(
            "t<",
            &["x&y".to_string()],
            &[Series {
                name: "fp32",
                colour: "#000",
                values: vec![Some(0.5)],
            }],
        );
        assert!(svg.contains("x&amp;y") && svg.contains("t&lt;") && !svg.contains("x&y"));
    }

    #[test]
    fn bar_heights_follow_values_and_gaps_draw_nothing() {
        let svg = grouped_bars(
            "t",
            &["a".to_string(), "b".to_string()],
            &[Series {
                name: "fp32",
                colour: "#123456",
                values: vec![Some(0.25), None],
            }],
        );
        // Plot height 200: a quarter is 50 high; the None draws no bar.
        assert_eq!(svg.matches("fill=\"#123456\"").count(), 1);
        assert!(svg.contains("height=\"50.0\""));
    }

    #[test]
    fn heat_map_normalises_rows() {
        let svg = heat_map("m", &["a".into(), "b".into()], &[vec![3, 1], vec![0, 0]]);
        assert!(svg.contains("a → a: 75.0 % of 4 px"));
        assert!(svg.contains("a → b: 25.0 % of 4 px"));
        // The empty row draws no cells.
        assert!(!svg.contains("b → a"));
    }
}
