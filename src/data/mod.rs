//! Input data: images read safely, HRNet preprocessing, and dataset readers (Cityscapes layout, image
//! folders) with deterministic selection for calibration and evaluation.

pub mod cityscapes;
pub mod image;

pub use self::cityscapes::{
    load_train_ids, Dataset, DatasetError, Layout, Loaded, Sample, TrainIds, CLASS_NAMES, IGNORE,
    LABEL_TO_TRAIN, NUM_CLASSES,
};
pub use self::image::{load_rgb, preprocess, DataError, ImageLimits, MEAN, STD};
