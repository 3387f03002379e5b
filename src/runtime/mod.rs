//! What every backend shares: turning logits into a class map, and writing it.

pub mod postprocess;

pub use postprocess::{class_map, write_class_png, CITYSCAPES_PALETTE};
