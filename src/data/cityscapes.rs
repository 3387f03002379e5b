//! Dataset readers: the official Cityscapes layout and plain image folders, with deterministic selection
//! of N samples spread over cities (groups), and the resize policy for a static-shape engine.
//!
//! Cityscapes layout (`split` is `train`, `val`, ...):
//!
//! ```text
//! ROOT/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png   RGB image
//! ROOT/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png     8-bit labelIds
//! ```
//!
//! An image folder is any folder of `.png`/`.jpg`/`.jpeg` files, searched recursively; each sub-folder is a
//! group (like a city), so `ROOT/leftImg8bit/train` can also be read as images only.
//!
//! Resize policy: the image is resized bilinearly (the triangle filter of [`preprocess`]) to the engine's
//! static input H×W, so the model always sees its own shape. Labels are never resized: they stay at full
//! resolution and evaluation upsamples the logits to the label size, as the official Cityscapes
//! evaluation does. Nearest-resizing the labels instead would change the metric (thin classes such as
//! poles and traffic lights lose pixels or vanish) and make numbers incomparable with published ones.
//!
//! Problems with single files are typed ([`DatasetError`]) and name the file: an image without its label
//! is skipped when the set is opened and kept in [`Dataset::problems`]; a corrupt image or a label of
//! another size is an error when that sample is loaded. A set with no usable image is an error.

use super::image::{decode, load_rgb, preprocess, DataError, ImageLimits};
use crate::tensor::Tensor;
use std::path::{Path, PathBuf};

/// Cityscapes' evaluation classes, in trainId order.
pub const CLASS_NAMES: [&str; 19] = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
];
pub const NUM_CLASSES: usize = CLASS_NAMES.len();
/// The trainId of every pixel that is not evaluated.
pub const IGNORE: u8 = 255;

/// labelId → trainId for every byte value, as cityscapesScripts' `labels.py` defines it; every labelId
/// that is not one of the 19 evaluated classes (unlabeled, ego vehicle, static, ground, parking, guard
/// rail, caravan, license plate, ...) and every value outside 0..=33 maps to [`IGNORE`].
pub const LABEL_TO_TRAIN: [u8; 256] = {
    let pairs: [(usize, u8); 19] = [
        (7, 0),
        (8, 1),
        (11, 2),
        (12, 3),
        (13, 4),
        (17, 5),
        (19, 6),
        (20, 7),
        (21, 8),
        (22, 9),
        (23, 10),
        (24, 11),
        (25, 12),
        (26, 13),
        (27, 14),
        (28, 15),
        (31, 16),
        (32, 17),
        (33, 18),
    ];
    let mut t = [IGNORE; 256];
    let mut i = 0;
    while i < pairs.len() {
        t[pairs[i].0] = pairs[i].1;
        i += 1;
    }
    t
};

const IMAGE_SUFFIX: &str = "_leftImg8bit.png";
const LABEL_SUFFIX: &str = "_gtFine_labelIds.png";
/// Deep enough for any sensible image tree; stops a symlink loop or a pathological tree.
const MAX_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    #[error("{path}: cannot read the folder: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{image}: no label file (expected {label})")]
    MissingLabel { image: PathBuf, label: PathBuf },
    #[error("{label}: the label map is {label_w}x{label_h} but its image {image} is {image_w}x{image_h}")]
    SizeMismatch {
        image: PathBuf,
        label: PathBuf,
        image_w: u32,
        image_h: u32,
        label_w: u32,
        label_h: u32,
    },
    #[error("{path}: not a labelIds map: {reason}")]
    BadLabel { path: PathBuf, reason: String },
    /// Unreadable or corrupt image (the inner error names the file).
    #[error(transparent)]
    Image(#[from] DataError),
    #[error("{root}: no usable image{}", .first.as_ref().map(|p| format!(" (first problem: {p})")).unwrap_or_default())]
    Empty {
        root: PathBuf,
        first: Option<Box<DatasetError>>,
    },
}

/// What a dataset folder holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    Cityscapes { split: String },
    ImageFolder,
}

/// One image (and its label map for Cityscapes), found when the set was opened; nothing read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The city (Cityscapes) or the sub-folder relative to the root (image folders; "" for the root).
    pub group: String,
    pub image: PathBuf,
    pub label: Option<PathBuf>,
}

/// A full-resolution trainId map (row-major, `width * height` bytes; values 0..19 or [`IGNORE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainIds {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// A sample read and preprocessed for an engine.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub image_path: PathBuf,
    /// `[1, 3, H, W]`, HRNet-normalised, at the engine's input size (see the module docs).
    pub input: Tensor,
    /// The original image size (width, height): where the logits go back to for evaluation.
    pub image_size: (u32, u32),
    /// At full resolution, never resized.
    pub labels: Option<TrainIds>,
}

/// A dataset listing: samples sorted by group, then file name.
#[derive(Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    pub samples: Vec<Sample>,
    /// Files found but skipped (images without labels), each naming its file.
    pub problems: Vec<DatasetError>,
}

impl Dataset {
    /// A Cityscapes folder if `root/leftImg8bit` exists (with `split`, default `train`), otherwise a
    /// folder of images.
    pub fn open(root: &Path, split: Option<&str>) -> Result<Dataset, DatasetError> {
        if root.join("leftImg8bit").is_dir() {
            Dataset::cityscapes(root, split.unwrap_or("train"))
        } else {
            Dataset::image_folder(root)
        }
    }

    /// The official layout; images without a label file are skipped and recorded in `problems`. A split
    /// with no `gtFine/{split}` folder at all (Cityscapes' `train_extra`, or a folder of one's own frames)
    /// is read unlabelled: every image, `label: None`. Calibration needs no labels; evaluation refuses
    /// such a split ([`crate::report::evaluate`]).
    pub fn cityscapes(root: &Path, split: &str) -> Result<Dataset, DatasetError> {
        let image_dir = root.join("leftImg8bit").join(split);
        let label_dir = root.join("gtFine").join(split);
        let labelled = label_dir.is_dir();
        let mut samples = Vec::new();
        let mut problems = Vec::new();
        for city_dir in sorted_entries(&image_dir)? {
            if !city_dir.is_dir() {
                continue;
            }
            let city = file_name(&city_dir);
            for image in sorted_entries(&city_dir)? {
                let name = file_name(&image);
                let Some(stem) = name.strip_suffix(IMAGE_SUFFIX) else {
                    continue;
                };
                let label = label_dir.join(&city).join(format!("{stem}{LABEL_SUFFIX}"));
                if !labelled {
                    samples.push(Sample {
                        group: city.clone(),
                        image,
                        label: None,
                    });
                } else if label.is_file() {
                    samples.push(Sample {
                        group: city.clone(),
                        image,
                        label: Some(label),
                    });
                } else {
                    problems.push(DatasetError::MissingLabel { image, label });
                }
            }
        }
        Dataset::finish(
            root,
            Layout::Cityscapes {
                split: split.into(),
            },
            samples,
            problems,
        )
    }

    /// Every PNG/JPEG under `root` (recursively; symlinked folders are not followed), no labels.
    pub fn image_folder(root: &Path) -> Result<Dataset, DatasetError> {
        let mut samples = Vec::new();
        walk_images(root, root, 0, &mut samples)?;
        samples.sort_by(|a, b| (&a.group, &a.image).cmp(&(&b.group, &b.image)));
        Dataset::finish(root, Layout::ImageFolder, samples, Vec::new())
    }

    fn finish(
        root: &Path,
        layout: Layout,
        samples: Vec<Sample>,
        problems: Vec<DatasetError>,
    ) -> Result<Dataset, DatasetError> {
        if samples.is_empty() {
            return Err(DatasetError::Empty {
                root: root.to_path_buf(),
                first: problems.into_iter().next().map(Box::new),
            });
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            layout,
            samples,
            problems,
        })
    }

    /// The groups (cities), sorted.
    pub fn groups(&self) -> Vec<&str> {
        let mut g: Vec<&str> = self.samples.iter().map(|s| s.group.as_str()).collect();
        g.dedup(); // samples are sorted by group
        g
    }

    /// `n` samples spread over the groups: round-robin over the sorted groups, taking each group's files
    /// in sorted order, so the choice depends only on the file names. All samples when `n` exceeds them.
    pub fn select(&self, n: usize) -> Vec<&Sample> {
        self.selection(n)
            .into_iter()
            .map(|i| &self.samples[i])
            .collect()
    }

    /// Keeps the `n` samples [`Dataset::select`] picks (all when `n` exceeds them), in their sorted order.
    pub fn keep_selection(&mut self, n: usize) {
        let mut keep = vec![false; self.samples.len()];
        for i in self.selection(n) {
            keep[i] = true;
        }
        let mut keep = keep.into_iter();
        self.samples.retain(|_| keep.next().unwrap_or(false));
    }

    /// The indices [`Dataset::select`] picks, in the order it picks them.
    fn selection(&self, n: usize) -> Vec<usize> {
        let mut per_group: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        while start < self.samples.len() {
            let group = &self.samples[start].group;
            let len = self.samples[start..]
                .iter()
                .take_while(|s| &s.group == group)
                .count();
            per_group.push(start..start + len);
            start += len;
        }
        let n = n.min(self.samples.len());
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            for it in per_group.iter_mut() {
                if out.len() == n {
                    break;
                }
                if let Some(i) = it.next() {
                    out.push(i);
                }
            }
        }
        out
    }

    /// Reads one sample: the image preprocessed at `input_hw` = (H, W) (the engine's static input; `None`
    /// keeps the image size) and, for Cityscapes, its full-resolution trainId map.
    pub fn load(
        &self,
        sample: &Sample,
        input_hw: Option<(u32, u32)>,
        limits: ImageLimits,
    ) -> Result<Loaded, DatasetError> {
        let img = load_rgb(&sample.image, limits)?;
        let (image_w, image_h) = img.dimensions();
        let labels = match &sample.label {
            Some(path) => {
                let t = load_train_ids(path, limits)?;
                if (t.width, t.height) != (image_w, image_h) {
                    return Err(DatasetError::SizeMismatch {
                        image: sample.image.clone(),
                        label: path.clone(),
                        image_w,
                        image_h,
                        label_w: t.width,
                        label_h: t.height,
                    });
                }
                Some(t)
            }
            None => None,
        };
        Ok(Loaded {
            image_path: sample.image.clone(),
            input: preprocess(&img, input_hw),
            image_size: (image_w, image_h),
            labels,
        })
    }

    /// Selects `n` samples and loads them; samples that fail to load are left out and returned as
    /// problems (no replacement is drawn, so the selection stays the same set of files). An error when
    /// none loads.
    pub fn load_selection(
        &self,
        n: usize,
        input_hw: Option<(u32, u32)>,
        limits: ImageLimits,
    ) -> Result<(Vec<Loaded>, Vec<DatasetError>), DatasetError> {
        let mut loaded = Vec::new();
        let mut problems = Vec::new();
        for s in self.select(n) {
            match self.load(s, input_hw, limits) {
                Ok(l) => loaded.push(l),
                Err(e) => problems.push(e),
            }
        }
        if loaded.is_empty() {
            return Err(DatasetError::Empty {
                root: self.root.clone(),
                first: problems.into_iter().next().map(Box::new),
            });
        }
        Ok((loaded, problems))
    }
}

/// Reads an 8-bit single-channel labelIds PNG and maps it to trainIds through [`LABEL_TO_TRAIN`].
pub fn load_train_ids(path: &Path, limits: ImageLimits) -> Result<TrainIds, DatasetError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::new(path, e))?;
    let img = decode(&bytes, path, limits)?;
    let gray = match img {
        image::DynamicImage::ImageLuma8(gray) => gray,
        other => {
            return Err(DatasetError::BadLabel {
                path: path.to_path_buf(),
                reason: format!(
                "pixels are {:?}; labelIds are 8-bit grayscale (is this a color or instance map?)",
                other.color()
            ),
            })
        }
    };
    let (width, height) = gray.dimensions();
    let data = gray
        .into_raw()
        .into_iter()
        .map(|v| LABEL_TO_TRAIN[v as usize])
        .collect();
    Ok(TrainIds {
        width,
        height,
        data,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let folder = |source| DatasetError::Folder {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(folder)? {
        out.push(entry.map_err(folder)?.path());
    }
    out.sort();
    Ok(out)
}

fn walk_images(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<Sample>,
) -> Result<(), DatasetError> {
    for path in sorted_entries(dir)? {
        // symlink_metadata: a symlinked folder could loop back on itself.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                walk_images(root, &path, depth + 1, out)?;
            }
            continue;
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) && path.is_file() {
            let group = dir
                .strip_prefix(root)
                .map(|g| g.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Sample {
                group,
                image: path,
                label: None,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "cityscapes_tests.rs"]
mod tests;
