//! Input data: images read safely, HRNet preprocessing. Dataset readers (Cityscapes, image folders) join
//! here with calibration.

pub mod image;

pub use self::image::{load_rgb, preprocess, DataError, ImageLimits, MEAN, STD};
