//! Reading an image without trusting it, and HRNet's preprocessing: RGB, /255, ImageNet mean/std, NCHW
//! float32.

use crate::tensor::{Data, Tensor};
use image::RgbImage;
use std::path::{Path, PathBuf};

/// ImageNet statistics HRNet was trained with.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct DataError {
    pub path: PathBuf,
    pub reason: String,
}

impl DataError {
    pub fn new(path: &Path, reason: impl ToString) -> Self {
        DataError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Bounds checked against the header before any pixel is decoded.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    /// Large enough for any camera the daemon will meet (Cityscapes is 2048×1024), small enough that a
    /// crafted header cannot make us allocate gigabytes.
    fn default() -> Self {
        ImageLimits {
            max_width: 8192,
            max_height: 8192,
            max_pixels: 8192 * 4096,
        }
    }
}

/// Decodes a PNG or JPEG from bytes into RGB8 (see [`decode`]).
pub fn decode_rgb(bytes: &[u8], label: &Path, limits: ImageLimits) -> Result<RgbImage, DataError> {
    Ok(decode(bytes, label, limits)?.to_rgb8())
}

/// Decodes a PNG or JPEG from bytes, keeping its pixel type (label maps must not go through RGB). The
/// header's dimensions are checked first; decoding runs behind `catch_unwind`, since image decoders have
/// had fuzzer-found panics.
pub fn decode(
    bytes: &[u8],
    label: &Path,
    limits: ImageLimits,
) -> Result<image::DynamicImage, DataError> {
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| DataError::new(label, e))
    };
    let format = reader()?
        .format()
        .ok_or_else(|| DataError::new(label, "not a PNG or JPEG image"))?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(DataError::new(
            label,
            format!("{format:?} images are not supported (PNG or JPEG)"),
        ));
    }
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| DataError::new(label, format!("unreadable image header: {e}")))?;
    if w == 0
        || h == 0
        || w > limits.max_width
        || h > limits.max_height
        || w as u64 * h as u64 > limits.max_pixels
    {
        return Err(DataError::new(
            label,
            format!(
                "image is {w}x{h}; the limit is {}x{} and {} pixels",
                limits.max_width, limits.max_height, limits.max_pixels
            ),
        ));
    }
    let mut r = reader()?;
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_width);
    lim.max_image_height = Some(limits.max_height);
    lim.max_alloc = Some(limits.max_pixels * 8 + (64 << 20));
    r.limits(lim);
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || r.decode()))
        .map_err(|_| {
            DataError::new(
                label,
                "the image decoder failed on this file (corrupt image)",
            )
        })?
        .map_err(|e| DataError::new(label, format!("corrupt image: {e}")))?;
    Ok(decoded)
}

/// Reads an image file into RGB8 (see [`decode_rgb`]).
pub fn load_rgb(path: &Path, limits: ImageLimits) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::new(path, e))?;
    decode_rgb(&bytes, path, limits)
}

/// HRNet preprocessing into a `[1, 3, H, W]` tensor, resizing (bilinear) to `size` = (H, W) when given.
pub fn preprocess(img: &RgbImage, size: Option<(u32, u32)>) -> Tensor {
    let resized;
    let img = match size {
        Some((h, w)) if (w, h) != img.dimensions() => {
            resized = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
            &resized
        }
        _ => img,
    };
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    Tensor {
        shape: vec![1, 3, h as usize, w as usize],
        data: Data::F32(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(img: &RgbImage) -> Vec<u8> {
        let mut buf = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
            .unwrap();
        buf
    }

    #[test]
    fn preprocess_normalises_per_channel() {
        let img = RgbImage::from_pixel(4, 2, image::Rgb([255, 0, 128]));
        let t = preprocess(&img, None);
        assert_eq!(t.shape, vec![1, 3, 2, 4]);
        let v = t.as_f32s();
        assert!((v[0] - (1.0 - MEAN[0]) / STD[0]).abs() < 1e-6);
        assert!((v[8] - (0.0 - MEAN[1]) / STD[1]).abs() < 1e-6);
        assert!((v[16] - (128.0 / 255.0 - MEAN[2]) / STD[2]).abs() < 1e-6);
        assert_eq!(preprocess(&img, Some((8, 16))).shape, vec![1, 3, 8, 16]);
    }

    #[test]
    fn hostile_images_are_refused_before_decoding() {
        let label = Path::new("x.png");
        let good = png_bytes(&RgbImage::new(8, 8));
        assert!(decode_rgb(&good, label, ImageLimits::default()).is_ok());
        let e = decode_rgb(&good[..good.len() / 2], label, ImageLimits::default()).unwrap_err();
        assert!(e.to_string().contains("x.png"));
        assert!(decode_rgb(b"hello", label, ImageLimits::default()).is_err());
        let tiny = ImageLimits {
            max_width: 4,
            max_height: 4,
            max_pixels: 16,
        };
        let e = decode_rgb(&good, label, tiny).unwrap_err().to_string();
        assert!(e.contains("8x8"), "{e}");
        // A PNG header claiming 100000 x 100000: refused from the header alone.
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let e = decode_rgb(&huge, label, ImageLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("100000x100000") || e.contains("header"), "{e}");
    }
}
