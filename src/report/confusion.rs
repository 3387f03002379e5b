//! The confusion matrix of a split and the scores derived from it, as cityscapesScripts computes them: every
//! pixel of every image adds to one matrix (images are not averaged), labels equal to [`IGNORE`] count
//! nowhere, and the mean IoU is over the classes whose IoU is defined: a class in neither the labels nor the
//! predictions has none and is left out, as cityscapesScripts leaves out its NaN.

use serde::Serialize;

/// The label value that is not evaluated (the Cityscapes reader maps every unevaluated labelId to it).
pub use crate::data::cityscapes::IGNORE;

/// Rows: ground truth; columns: prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    pub classes: usize,
    counts: Vec<u64>,
}

/// Per-class and overall scores of a matrix.
#[derive(Debug, Clone, Serialize)]
pub struct ClassScores {
    /// IoU per class; `None` for a class absent from both labels and predictions (its IoU is undefined).
    pub iou: Vec<Option<f64>>,
    /// Mean over the classes whose IoU is defined.
    pub miou: f64,
    pub pixel_accuracy: f64,
    pub pixels: u64,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Adds one image: `labels` and `predicted` are the same size; labels of [`IGNORE`] are skipped, and so
    /// is any value outside the classes (a label id the mapping left unmapped).
    pub fn add(&mut self, labels: &[u8], predicted: &[u8]) {
        assert_eq!(
            labels.len(),
            predicted.len(),
            "label and prediction sizes differ"
        );
        let k = self.classes;
        for (&l, &p) in labels.iter().zip(predicted) {
            let (l, p) = (l as usize, p as usize);
            if l < k && p < k {
                self.counts[l * k + p] += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &ConfusionMatrix) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn get(&self, label: usize, predicted: usize) -> u64 {
        self.counts[label * self.classes + predicted]
    }

    /// The counts as rows (ground truth) of columns (prediction).
    pub fn rows(&self) -> Vec<Vec<u64>> {
        if self.classes == 0 {
            return Vec::new();
        }
        self.counts
            .chunks(self.classes)
            .map(<[u64]>::to_vec)
            .collect()
    }

    pub fn scores(&self) -> ClassScores {
        let k = self.classes;
        let mut iou = Vec::with_capacity(k);
        let (mut correct, mut total) = (0u64, 0u64);
        for c in 0..k {
            let tp = self.get(c, c);
            let fn_: u64 = (0..k).filter(|&p| p != c).map(|p| self.get(c, p)).sum();
            let fp: u64 = (0..k).filter(|&l| l != c).map(|l| self.get(l, c)).sum();
            correct += tp;
            total += tp + fn_;
            let denom = tp + fp + fn_;
            iou.push((denom > 0).then(|| tp as f64 / denom as f64));
        }
        let defined: Vec<f64> = iou.iter().flatten().copied().collect();
        ClassScores {
            miou: if defined.is_empty() {
                0.0
            } else {
                defined.iter().sum::<f64>() / defined.len() as f64
            },
            pixel_accuracy: if total == 0 {
                0.0
            } else {
                correct as f64 / total as f64
            },
            pixels: total,
            iou,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_cityscapes_definition() {
        // 3 classes. Image 1: labels [0,0,1,1,2,255], predictions [0,1,1,1,0,2].
        // Image 2: labels [2,2], predictions [2,2]. Accumulated: TP0=1, TP1=2, TP2=2; the 255 pixel is
        // ignored; FN0=1 (0→1), FN2=1 (2→0); FP0=1, FP1=1.
        let mut m = ConfusionMatrix::new(3);
        m.add(&[0, 0, 1, 1, 2, IGNORE], &[0, 1, 1, 1, 0, 2]);
        m.add(&[2, 2], &[2, 2]);
        let s = m.scores();
        let want = [1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0];
        for (got, want) in s.iou.iter().zip(want) {
            assert!((got.unwrap() - want).abs() < 1e-12, "{:?}", s.iou);
        }
        assert!((s.miou - 5.0 / 9.0).abs() < 1e-12);
        assert_eq!(s.pixels, 7);
        assert!((s.pixel_accuracy - 5.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn a_class_nobody_saw_has_no_iou_and_does_not_count() {
        let mut m = ConfusionMatrix::new(3);
        m.add(&[0, 1], &[0, 1]);
        let s = m.scores();
        assert_eq!(s.iou, vec![Some(1.0), Some(1.0), None]);
        assert_eq!(s.miou, 1.0);
    }
}
