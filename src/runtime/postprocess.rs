//! Logits to class map as the official HRNet evaluation does it: upsample the 1/4-resolution logits
//! bilinearly (align_corners = false) to the image size, then argmax over classes. Both happen in one pass
//! per output pixel, so the full-resolution logits (19 × 1024 × 2048 floats) are never materialised.

use crate::tensor::Tensor;
use std::path::Path;

/// Cityscapes colours of trainIds 0..=18 (cityscapesScripts' labels.py).
pub const CITYSCAPES_PALETTE: [[u8; 3]; 19] = [
    [128, 64, 128],
    [244, 35, 232],
    [70, 70, 70],
    [102, 102, 156],
    [190, 153, 153],
    [153, 153, 153],
    [250, 170, 30],
    [220, 220, 0],
    [107, 142, 35],
    [152, 251, 152],
    [70, 130, 180],
    [220, 20, 60],
    [255, 0, 0],
    [0, 0, 142],
    [0, 0, 70],
    [0, 60, 100],
    [0, 80, 100],
    [0, 0, 230],
    [119, 11, 32],
];

/// A class map: one class index per pixel, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassMap {
    pub width: usize,
    pub height: usize,
    pub classes: Vec<u8>,
}

/// Upsamples logits `[1, K, h, w]` (or `[K, h, w]`) to `height × width` with half-pixel bilinear
/// sampling and takes the argmax as numpy/torch do: the first maximum on ties, and the first NaN
/// where there is one (an FP16 overflow in one class must not hide behind the others). Returns
/// `None` unless the logits are float with 1 ≤ K ≤ 255 classes.
pub fn class_map(logits: &Tensor, height: usize, width: usize) -> Option<ClassMap> {
    let (k, h, w) = match logits.shape.as_slice() {
        [1, k, h, w] | [k, h, w] => (*k, *h, *w),
        _ => return None,
    };
    if k == 0 || k > 255 || h == 0 || w == 0 {
        return None;
    }
    let v = logits.as_f32s();
    let plane = h * w;
    // Per output column/row: the two source indices and the weight of the second (align_corners=false).
    let taps = |out: usize, src: usize| -> Vec<(usize, usize, f32)> {
        let scale = src as f32 / out as f32;
        (0..out)
            .map(|o| {
                let x = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let x0 = (x.floor() as usize).min(src - 1);
                let f = x - x0 as f32;
                // A tap of weight 0 is not read: 0 · NaN would carry a neighbour's NaN over.
                let x1 = if f > 0.0 { (x0 + 1).min(src - 1) } else { x0 };
                (x0, x1, f)
            })
            .collect()
    };
    let (xs, ys) = (taps(width, w), taps(height, h));
    let mut classes = vec![0u8; width * height];
    for (oy, row) in classes.chunks_mut(width).enumerate() {
        let (y0, y1, fy) = ys[oy];
        for (ox, out) in row.iter_mut().enumerate() {
            let (x0, x1, fx) = xs[ox];
            let mut best = f32::NEG_INFINITY;
            let mut arg = 0;
            for c in 0..k {
                let p = &v[c * plane..(c + 1) * plane];
                let top = p[y0 * w + x0] * (1.0 - fx) + p[y0 * w + x1] * fx;
                let bottom = p[y1 * w + x0] * (1.0 - fx) + p[y1 * w + x1] * fx;
                let val = top * (1.0 - fy) + bottom * fy;
                if val.is_nan() {
                    arg = c;
                    break;
                }
                if val > best {
                    best = val;
                    arg = c;
                }
            }
            *out = arg as u8;
        }
    }
    Some(ClassMap {
        width,
        height,
        classes,
    })
}

/// Writes a class map as an indexed PNG: pixel values are the class indices (trainIds), the palette
/// gives them their Cityscapes colours. Written atomically.
pub fn write_class_png(map: &ClassMap, path: &Path) -> std::io::Result<()> {
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, map.width as u32, map.height as u32);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        let mut palette: Vec<u8> = CITYSCAPES_PALETTE.iter().flatten().copied().collect();
        palette.resize(256 * 3, 0);
        enc.set_palette(palette);
        let mut w = enc.write_header().map_err(std::io::Error::other)?;
        w.write_image_data(&map.classes)
            .map_err(std::io::Error::other)?;
    }
    crate::fsutil::write_atomic(path, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_plain_argmax() {
        // Two classes on a 1x3 image: class 1 wins in the middle only.
        let t = Tensor::vec_f32(vec![1, 2, 1, 3], vec![1.0, 0.0, 1.0, 0.0, 2.0, 0.0]).unwrap();
        let m = class_map(&t, 1, 3).unwrap();
        assert_eq!(m.classes, vec![0, 1, 0]);
    }

    #[test]
    fn nan_wins_the_argmax_as_in_torch() {
        // Three classes on a 1x3 image: class 1 is NaN on the left pixel, class 2 on the right one
        // (after a larger class 0); torch.argmax of F.interpolate to the same size gives [1, 0, 2]:
        // a NaN neither loses to larger logits nor leaks into its neighbours.
        let nan = f32::NAN;
        let t = Tensor::vec_f32(
            vec![1, 3, 1, 3],
            vec![0.0, 1.0, 9.0, nan, 0.0, 0.0, 5.0, 0.0, nan],
        )
        .unwrap();
        assert_eq!(class_map(&t, 1, 3).unwrap().classes, vec![1, 0, 2]);
        // Upsampled 2x (torch: class 1 at [0.0, 0.25, 0.75, nan, nan, nan], class 0 at 0.5): the NaN
        // reaches exactly the outputs whose taps of non-zero weight read it.
        let t = Tensor::vec_f32(vec![1, 2, 1, 3], vec![0.5, 0.5, 0.5, 0.0, 1.0, nan]).unwrap();
        assert_eq!(class_map(&t, 1, 6).unwrap().classes, vec![0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn upsampling_interpolates_between_sources() {
        // Class 1's logit rises left to right, class 0's is constant 0.5: at 4x the resolution the
        // boundary falls where the bilinear ramp (half-pixel centres) crosses 0.5.
        let t = Tensor::vec_f32(vec![1, 2, 1, 2], vec![0.5, 0.5, 0.0, 1.0]).unwrap();
        let m = class_map(&t, 1, 8).unwrap();
        // Source x for output o: (o + 0.5) / 4 - 0.5, clamped; ramp value = that x; > 0.5 from o = 4.
        assert_eq!(m.classes, vec![0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn png_holds_class_indices_and_palette() {
        let dir = tempfile::tempdir().unwrap();
        let map = ClassMap {
            width: 3,
            height: 1,
            classes: vec![0, 13, 18],
        };
        let p = dir.path().join("m.png");
        write_class_png(&map, &p).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let palette = reader.info().palette.clone().unwrap();
        assert_eq!(&palette[13 * 3..13 * 3 + 3], &[0, 0, 142]);
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..3], &[0, 13, 18]);
    }
}
