//! Accuracy: Cityscapes evaluation semantics (confusion matrix accumulated over a whole split, ignore 255,
//! IoU = TP / (TP + FP + FN) per class) and agreement between precisions. The regression reports of a later
//! stage build on this.

mod confusion;

pub use confusion::{ClassScores, ConfusionMatrix, IGNORE};
