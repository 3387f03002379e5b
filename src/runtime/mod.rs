//! What every backend shares: the `Backend` trait, turning logits into a class map, and writing it.

pub mod agreement;
pub mod backend;
pub mod memory;
pub mod postprocess;

pub use backend::{open, segment, Backend, BackendError, BackendKind, CpuBackend};
pub use postprocess::{class_map, write_class_png, ClassMap, CITYSCAPES_PALETTE};
