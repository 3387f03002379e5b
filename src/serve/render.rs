//! The three answers to a segment request: the indexed class-map PNG, a colour overlay on the input, and
//! per-class pixel fractions as JSON.

use crate::runtime::{ClassMap, CITYSCAPES_PALETTE};
use crate::serve::error::ApiError;
use crate::serve::metrics::Timings;
use image::RgbImage;

/// Cityscapes trainId names, in order (one list for the whole crate).
pub use crate::data::cityscapes::CLASS_NAMES;

/// What `?format=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Indexed PNG of trainIds with the Cityscapes palette (the default).
    Png,
    /// The palette blended over the input image, RGB PNG.
    Overlay,
    /// Per-class pixel fractions, the image size and the stage timings.
    Json,
}

impl Format {
    /// Reads `format` from a query string; any other parameter is refused, so that a typo
    /// (`?fromat=json`) is an error rather than a silent PNG.
    pub fn from_query(query: Option<&str>) -> Result<Format, ApiError> {
        let mut format = Format::Png;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key != "format" {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter '{}' (only `format` is accepted)",
                    truncate(key)
                )));
            }
            format = match value {
                "png" => Format::Png,
                "overlay" => Format::Overlay,
                "json" => Format::Json,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "format '{}' is not one of png, overlay, json",
                        truncate(other)
                    )))
                }
            };
        }
        Ok(format)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A worker's result, before it becomes an HTTP response.
#[derive(Debug)]
pub struct Answer {
    pub width: usize,
    pub height: usize,
    pub payload: Payload,
    pub timings: Timings,
}

#[derive(Debug)]
pub enum Payload {
    /// A PNG body (class map or overlay).
    Png(Vec<u8>),
    /// Pixel count per class index, for the JSON answer.
    Counts(Vec<u64>),
}

/// The post-inference part of the pipeline for one format.
pub fn payload(format: Format, map: &ClassMap, image: &RgbImage) -> Payload {
    match format {
        Format::Png => Payload::Png(class_png(map)),
        Format::Overlay => Payload::Png(overlay_png(map, image)),
        Format::Json => {
            let mut counts = vec![0u64; 256];
            for &c in &map.classes {
                counts[c as usize] += 1;
            }
            let used = counts.iter().rposition(|&n| n > 0).map_or(0, |i| i + 1);
            counts.truncate(used.max(CLASS_NAMES.len()));
            Payload::Counts(counts)
        }
    }
}

/// The palette colour blended half and half over each pixel; classes without a colour leave it as is.
pub fn overlay(map: &ClassMap, image: &RgbImage) -> RgbImage {
    let mut out = image.clone();
    for (px, &c) in out.pixels_mut().zip(&map.classes) {
        if let Some(colour) = CITYSCAPES_PALETTE.get(c as usize) {
            for ch in 0..3 {
                px[ch] = ((px[ch] as u16 + colour[ch] as u16) / 2) as u8;
            }
        }
    }
    out
}

/// The class map as `run` writes it (same pixels and palette), compressed for speed rather than size:
/// the answer crosses a local link once, and default compression would cost as much as the rest of the
/// daemon's overhead together.
pub fn class_png(map: &ClassMap) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut enc = png::Encoder::new(&mut buf, map.width as u32, map.height as u32);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut palette: Vec<u8> = CITYSCAPES_PALETTE.iter().flatten().copied().collect();
    palette.resize(256 * 3, 0);
    enc.set_palette(palette);
    let mut w = enc
        .write_header()
        .expect("an indexed 8-bit PNG header is valid");
    w.write_image_data(&map.classes)
        .expect("the class map has width * height pixels");
    w.finish().expect("writing a PNG into memory");
    buf
}

fn overlay_png(map: &ClassMap, image: &RgbImage) -> Vec<u8> {
    let img = overlay(map, image);
    let mut buf = Vec::new();
    let mut enc = png::Encoder::new(&mut buf, img.width(), img.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc
        .write_header()
        .expect("an RGB 8-bit PNG header is valid");
    w.write_image_data(img.as_raw())
        .expect("the overlay has width * height RGB pixels");
    w.finish().expect("writing a PNG into memory");
    buf
}

/// The JSON answer: image size, per-class pixels and fractions, stage timings in milliseconds.
pub fn json_body(
    (width, height): (usize, usize),
    counts: &[u64],
    t: &Timings,
    backend: &str,
) -> serde_json::Value {
    let total = (width * height).max(1) as f64;
    let classes: Vec<serde_json::Value> = counts
        .iter()
        .enumerate()
        .map(|(id, &pixels)| {
            serde_json::json!({
                "id": id,
                "name": CLASS_NAMES.get(id).copied().unwrap_or(""),
                "pixels": pixels,
                "fraction": pixels as f64 / total,
            })
        })
        .collect();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    serde_json::json!({
        "width": width,
        "height": height,
        "backend": backend,
        "classes": classes,
        "timings_ms": {
            "queue": ms(t.queue),
            "pre": ms(t.pre),
            "infer": ms(t.infer),
            "post": ms(t.post),
        },
    })
}

/// `Server-Timing` header value for the stage timings (shown by browsers' developer tools).
pub fn server_timing(t: &Timings) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    format!(
        "queue;dur={:.3}, pre;dur={:.3}, infer;dur={:.3}, post;dur={:.3}",
        ms(t.queue),
        ms(t.pre),
        ms(t.infer),
        ms(t.post)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(Format::from_query(None).unwrap(), Format::Png);
        assert_eq!(Format::from_query(Some("")).unwrap(), Format::Png);
        assert_eq!(
            Format::from_query(Some("format=json")).unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::from_query(Some("format=overlay")).unwrap(),
            Format::Overlay
        );
        assert!(Format::from_query(Some("format=gif")).is_err());
        assert!(Format::from_query(Some("fromat=json")).is_err());
    }

    #[test]
    fn overlay_blends_the_palette() {
        let map = ClassMap {
            width: 2,
            height: 1,
            classes: vec![0, 200],
        };
        let img = RgbImage::from_pixel(2, 1, image::Rgb([0, 0, 0]));
        let o = overlay(&map, &img);
        assert_eq!(o.get_pixel(0, 0).0, [64, 32, 64]);
        assert_eq!(o.get_pixel(1, 0).0, [0, 0, 0]);
    }
}
