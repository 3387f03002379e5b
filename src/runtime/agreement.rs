//! How often two backends give each pixel the same class, over a folder of images: a TensorRT engine against
//! the CPU executor (the hardware smoke test), or two graphs on the CPU. Both sides use the same pre- and
//! post-processing (`segment`), so only the networks' numerics differ.

use super::backend::{segment, Backend, BackendError};
use crate::data::{self, ImageLimits};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct ImageAgreement {
    pub image: PathBuf,
    pub pixels: u64,
    pub agreement: f64,
}

/// Agreement over all images: pixels with the same class ÷ all pixels.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub images: Vec<ImageAgreement>,
    pub pixels: u64,
    pub agreeing: u64,
    pub agreement: f64,
    /// The lowest per-image agreement.
    pub worst: f64,
}

/// Segments every image with both backends and counts the pixels whose classes match.
pub fn agreement(
    a: &dyn Backend,
    b: &dyn Backend,
    images: &[PathBuf],
    limits: ImageLimits,
) -> Result<Agreement, BackendError> {
    if images.is_empty() {
        return Err(BackendError::Inference("no images to compare on".into()));
    }
    let mut per_image = Vec::with_capacity(images.len());
    let (mut pixels, mut agreeing) = (0u64, 0u64);
    for path in images {
        let img = data::load_rgb(path, limits).map_err(|e| BackendError::Model {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let (ma, mb) = (segment(a, &img)?, segment(b, &img)?);
        let same = ma
            .classes
            .iter()
            .zip(&mb.classes)
            .filter(|(x, y)| x == y)
            .count() as u64;
        let n = ma.classes.len() as u64;
        pixels += n;
        agreeing += same;
        per_image.push(ImageAgreement {
            image: path.clone(),
            pixels: n,
            agreement: same as f64 / n.max(1) as f64,
        });
    }
    Ok(Agreement {
        worst: per_image
            .iter()
            .map(|i| i.agreement)
            .fold(f64::INFINITY, f64::min),
        images: per_image,
        agreement: agreeing as f64 / pixels.max(1) as f64,
        pixels,
        agreeing,
    })
}

/// Every PNG/JPEG under `root`, sorted (at most `limit` of them, spread over the sub-folders).
pub fn list_images(root: &Path, limit: Option<usize>) -> Result<Vec<PathBuf>, BackendError> {
    let ds =
        crate::data::cityscapes::Dataset::image_folder(root).map_err(|e| BackendError::Model {
            path: root.to_path_buf(),
            reason: e.to_string(),
        })?;
    let picked = match limit {
        Some(n) => ds.select(n),
        None => ds.samples.iter().collect(),
    };
    Ok(picked.into_iter().map(|s| s.image.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    /// Logits that make class 1 win left of column `edge` (in the model's 1/1 grid), class 0 elsewhere.
    struct Split {
        edge: usize,
    }

    impl Backend for Split {
        fn name(&self) -> &'static str {
            "split"
        }
        fn input_hw(&self) -> Option<(u32, u32)> {
            Some((2, 4))
        }
        fn infer(&self, _input: Tensor) -> Result<Tensor, BackendError> {
            let mut v = vec![0.0f32; 2 * 2 * 4];
            for y in 0..2 {
                for x in 0..4 {
                    v[(x < self.edge) as usize * 8 + y * 4 + x] = 1.0;
                }
            }
            Ok(Tensor::vec_f32(vec![1, 2, 2, 4], v).unwrap())
        }
    }

    #[test]
    fn counts_matching_pixels_over_all_images() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.png", "sub/b.png"] {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::RgbImage::new(4, 2).save(&p).unwrap();
        }
        let images = list_images(dir.path(), None).unwrap();
        assert_eq!(images.len(), 2);
        let same = agreement(
            &Split { edge: 2 },
            &Split { edge: 2 },
            &images,
            ImageLimits::default(),
        )
        .unwrap();
        assert_eq!((same.pixels, same.agreeing, same.agreement), (16, 16, 1.0));
        // One of four columns differs.
        let r = agreement(
            &Split { edge: 2 },
            &Split { edge: 3 },
            &images,
            ImageLimits::default(),
        )
        .unwrap();
        assert_eq!(r.agreeing, 12);
        assert_eq!(r.agreement, 0.75);
        assert_eq!(r.worst, 0.75);
        assert!(agreement(
            &Split { edge: 2 },
            &Split { edge: 2 },
            &[],
            ImageLimits::default()
        )
        .is_err());
    }
}
