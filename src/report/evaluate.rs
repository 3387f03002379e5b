//! Runs several backends (one per precision) over a labelled split and accumulates what a report needs:
//! one confusion matrix per backend, pixel agreement with the first backend (FP32), and the class maps of a
//! few sample images for the overlays. Images are evaluated in parallel; each worker folds its images into
//! its own matrices, so memory depends on the number of workers, never on the number of images. The number
//! of workers is sized from memory: the first image runs alone, and the backends' peak on it
//! ([`Backend::last_peak_bytes`]) against the memory available bounds how many run at once
//! ([`crate::runtime::memory::images_at_once`], on plain threads: [`crate::runtime::memory::run_bounded`]).

use super::ConfusionMatrix;
use crate::data::cityscapes::{Dataset, DatasetError, Sample};
use crate::data::ImageLimits;
use crate::runtime::backend::{Backend, BackendError};
use crate::runtime::memory;
use crate::runtime::postprocess::class_map;
use std::collections::HashMap;
use std::path::PathBuf;

/// The longest side of the sample images kept for overlays (larger images are subsampled).
pub const SAMPLE_MAX_SIDE: usize = 512;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] DatasetError),
    #[error("{image}: {backend}: {source}")]
    Backend {
        image: PathBuf,
        backend: String,
        #[source]
        source: BackendError,
    },
    #[error(
        "{image}: the '{backend}' output of shape {shape:?} is not [1, classes, h, w] float logits"
    )]
    NotLogits {
        image: PathBuf,
        backend: String,
        shape: Vec<usize>,
    },
    /// Predictions of a class past the evaluated ones would count nowhere in the confusion matrix and
    /// lift both IoU and pixel accuracy, where cityscapesScripts counts them as misses: refused.
    #[error(
        "{image}: the '{backend}' output has {got} classes (shape {shape:?}); the evaluation has {want} (Cityscapes trainIds)"
    )]
    ClassCount {
        image: PathBuf,
        backend: String,
        shape: Vec<usize>,
        got: usize,
        want: usize,
    },
    #[error("{0}: no labels (evaluation needs a Cityscapes split with gtFine label maps)")]
    NoLabels(PathBuf),
    #[error("the split has no images")]
    Empty,
    #[error("nothing to evaluate: no backend given")]
    NoBackends,
}

/// One sample image and each backend's class map of it, subsampled to at most [`SAMPLE_MAX_SIDE`].
#[derive(Debug, Clone)]
pub struct SampleMaps {
    pub image: PathBuf,
    pub width: usize,
    pub height: usize,
    /// RGB, row-major.
    pub rgb: Vec<u8>,
    pub labels: Vec<u8>,
    /// One per backend, in the order given.
    pub maps: Vec<Vec<u8>>,
}

/// What the run over the split accumulated.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub images: usize,
    /// Label pixels of all images, ignored ones included (agreement with FP32 needs no label).
    pub pixels: u64,
    /// One per backend.
    pub matrices: Vec<ConfusionMatrix>,
    /// Per backend, the pixels whose class equals the first backend's (the first's own count is `pixels`).
    pub agreeing: Vec<u64>,
    pub samples: Vec<SampleMaps>,
}

impl Evaluation {
    /// Fraction of pixels on which backend `i` agrees with the first.
    pub fn agreement(&self, i: usize) -> f64 {
        self.agreeing[i] as f64 / self.pixels.max(1) as f64
    }
}

pub struct EvalOptions<'a> {
    pub classes: usize,
    /// How many images (the first ones of the split) keep their class maps for overlays.
    pub keep_samples: usize,
    pub limits: ImageLimits,
    /// Called once per image evaluated (a progress bar).
    pub on_image: Option<&'a (dyn Fn() + Sync)>,
    /// Images evaluated at once; 0 sizes it from the first image's memory peak and the memory available.
    pub parallel: usize,
}

impl Default for EvalOptions<'_> {
    fn default() -> Self {
        EvalOptions {
            classes: crate::data::cityscapes::CLASS_NAMES.len(),
            keep_samples: 3,
            limits: ImageLimits::default(),
            on_image: None,
            parallel: 0,
        }
    }
}

/// Accumulator of one worker.
struct Partial {
    pixels: u64,
    matrices: Vec<ConfusionMatrix>,
    agreeing: Vec<u64>,
    samples: Vec<(usize, SampleMaps)>,
}

impl Partial {
    fn new(n: usize, classes: usize) -> Self {
        Partial {
            pixels: 0,
            matrices: vec![ConfusionMatrix::new(classes); n],
            agreeing: vec![0; n],
            samples: Vec::new(),
        }
    }

    fn merge(mut self, other: Partial) -> Partial {
        self.pixels += other.pixels;
        for (a, b) in self.matrices.iter_mut().zip(&other.matrices) {
            a.merge(b);
        }
        for (a, b) in self.agreeing.iter_mut().zip(&other.agreeing) {
            *a += b;
        }
        self.samples.extend(other.samples);
        self
    }
}

/// Evaluates every backend on every sample of `dataset`. Each backend gets the image at its own input
/// size (the model's when static, the image's when dynamic); logits go back to the label's size before the
/// argmax, as in the official evaluation.
pub fn evaluate(
    dataset: &Dataset,
    backends: &[&dyn Backend],
    opts: &EvalOptions<'_>,
) -> Result<Evaluation, EvalError> {
    if dataset.samples.is_empty() {
        return Err(EvalError::Empty);
    }
    if backends.is_empty() {
        return Err(EvalError::NoBackends);
    }
    if let Some(s) = dataset.samples.iter().find(|s| s.label.is_none()) {
        return Err(EvalError::NoLabels(s.image.clone()));
    }
    let n = backends.len();
    let one = |index: usize, acc: &mut Partial| -> Result<(), EvalError> {
        evaluate_one(dataset, &dataset.samples[index], index, backends, opts, acc)?;
        if let Some(f) = &opts.on_image {
            f();
        }
        Ok(())
    };
    let threads = rayon::current_num_threads();
    let mut first = Partial::new(n, opts.classes);
    let mut start = 0;
    let parallel = if opts.parallel > 0 {
        opts.parallel
    } else if dataset.samples.len() > 1 && threads > 1 {
        // The first image alone: then the backends know what one image takes.
        one(0, &mut first)?;
        start = 1;
        let per_image = backends.iter().filter_map(|b| b.last_peak_bytes()).max();
        let available = memory::available_bytes();
        let parallel = memory::images_at_once(per_image, available, threads);
        let mb = |b: u64| b >> 20;
        log::info!(
            "evaluating {parallel} image(s) at once: {} MB per inference, {} MB available, {threads} threads",
            per_image.map_or("?".into(), |b| mb(b as u64).to_string()),
            available.map_or("?".into(), |b| mb(b).to_string()),
        );
        parallel
    } else {
        threads
    };
    let rest = memory::run_bounded(
        start..dataset.samples.len(),
        parallel,
        || Partial::new(n, opts.classes),
        one,
    )?
    .into_iter()
    .fold(Partial::new(n, opts.classes), Partial::merge);
    let partial = first.merge(rest);
    let mut samples = partial.samples;
    samples.sort_by_key(|(i, _)| *i);
    let mut agreeing = partial.agreeing;
    agreeing[0] = partial.pixels;
    Ok(Evaluation {
        images: dataset.samples.len(),
        pixels: partial.pixels,
        matrices: partial.matrices,
        agreeing,
        samples: samples.into_iter().map(|(_, s)| s).collect(),
    })
}

fn evaluate_one(
    dataset: &Dataset,
    sample: &Sample,
    index: usize,
    backends: &[&dyn Backend],
    opts: &EvalOptions<'_>,
    acc: &mut Partial,
) -> Result<(), EvalError> {
    // Backends of one model share an input size: preprocess once per distinct size.
    let mut inputs: HashMap<Option<(u32, u32)>, crate::data::cityscapes::Loaded> = HashMap::new();
    let mut maps: Vec<Vec<u8>> = Vec::with_capacity(backends.len());
    let mut labels = None;
    for (i, backend) in backends.iter().enumerate() {
        let hw = backend.input_hw();
        let loaded = match inputs.entry(hw) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(dataset.load(sample, hw, opts.limits)?)
            }
        };
        let l = loaded
            .labels
            .as_ref()
            .ok_or_else(|| EvalError::NoLabels(sample.image.clone()))?;
        let out = backend
            .infer(loaded.input.clone())
            .map_err(|source| EvalError::Backend {
                image: sample.image.clone(),
                backend: backend.name().to_string(),
                source,
            })?;
        let map = class_map(&out, l.height as usize, l.width as usize).ok_or_else(|| {
            EvalError::NotLogits {
                image: sample.image.clone(),
                backend: backend.name().to_string(),
                shape: out.shape.clone(),
            }
        })?;
        let got = out.shape[out.shape.len() - 3];
        if got != opts.classes {
            return Err(EvalError::ClassCount {
                image: sample.image.clone(),
                backend: backend.name().to_string(),
                shape: out.shape.clone(),
                got,
                want: opts.classes,
            });
        }
        acc.matrices[i].add(&l.data, &map.classes);
        if i > 0 {
            acc.agreeing[i] += maps[0]
                .iter()
                .zip(&map.classes)
                .filter(|(a, b)| a == b)
                .count() as u64;
        }
        maps.push(map.classes);
        labels.get_or_insert_with(|| l.clone());
    }
    let labels = labels.expect("at least one backend");
    acc.pixels += labels.data.len() as u64;
    if index < opts.keep_samples {
        let img = crate::data::load_rgb(&sample.image, opts.limits).map_err(DatasetError::from)?;
        acc.samples
            .push((index, subsample(sample, &img, &labels.data, &maps)));
    }
    Ok(())
}

/// Nearest-neighbour subsampling by an integer step, so that classes stay classes.
fn subsample(
    sample: &Sample,
    img: &image::RgbImage,
    labels: &[u8],
    maps: &[Vec<u8>],
) -> SampleMaps {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let step = w.max(h).div_ceil(SAMPLE_MAX_SIDE).max(1);
    let (sw, sh) = (w.div_ceil(step), h.div_ceil(step));
    let pick = |src: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(sw * sh);
        for y in (0..h).step_by(step) {
            for x in (0..w).step_by(step) {
                out.push(src[y * w + x]);
            }
        }
        out
    };
    let raw = img.as_raw();
    let mut rgb = Vec::with_capacity(sw * sh * 3);
    for y in (0..h).step_by(step) {
        for x in (0..w).step_by(step) {
            rgb.extend_from_slice(&raw[(y * w + x) * 3..(y * w + x) * 3 + 3]);
        }
    }
    SampleMaps {
        image: sample.image.clone(),
        width: sw,
        height: sh,
        rgb,
        labels: pick(labels),
        maps: maps.iter().map(|m| pick(m)).collect(),
    }
}
