//! Scoring a candidate graph on a labelled split: mIoU (the official evaluation: logits upsampled to the
//! label size, argmax, one confusion matrix for the split) and the fraction of pixels whose class equals
//! the FP32 graph's. The split is read and the FP32 class maps computed once; each candidate then only
//! runs its own graph.

use super::DebugError;
use crate::data::cityscapes::{Dataset, DatasetError};
use crate::data::ImageLimits;
use crate::exec::{ExecOptions, Executor};
use crate::onnx::Model;
use crate::report::ConfusionMatrix;
use crate::runtime::postprocess::class_map;
use crate::tensor::Tensor;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// One labelled input.
#[derive(Debug, Clone)]
pub struct EvalSample {
    pub feed: HashMap<String, Tensor>,
    /// trainIds (or class indices), row-major `height × width`; [`crate::report::IGNORE`] is skipped.
    pub labels: Vec<u8>,
    pub height: usize,
    pub width: usize,
}

/// A graph's scores on the split.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Score {
    pub miou: f64,
    pub pixel_accuracy: f64,
    /// Fraction of labelled-size pixels whose class equals FP32's (all pixels, ignored labels too).
    pub agreement: f64,
}

/// The split, with the FP32 graph's class maps.
#[derive(Debug)]
pub struct Evaluator {
    samples: Vec<EvalSample>,
    classes: usize,
    reference: Vec<Vec<u8>>,
    /// The FP32 graph's own scores (agreement 1).
    pub fp32: Score,
    /// The most activation bytes one FP32 run held: what a candidate's run holds too, which sizes how
    /// many candidates are scored at once.
    pub peak_bytes: usize,
}

/// Reads the labelled samples of `split` under `root` at the engine's input size `hw` = (H, W): at most
/// `limit` of them, spread over the cities as calibration picks them (they are all held in memory:
/// Cityscapes' 500 val images at 1024×2048 take 13 GB).
pub fn load_split(
    root: &Path,
    split: &str,
    hw: (u32, u32),
    input_name: &str,
    limit: usize,
) -> Result<Vec<EvalSample>, DatasetError> {
    let mut dataset = Dataset::open(root, Some(split))?;
    dataset.keep_selection(limit);
    let mut out = Vec::new();
    for s in &dataset.samples {
        let loaded = dataset.load(s, Some(hw), ImageLimits::default())?;
        let Some(labels) = loaded.labels else {
            continue;
        };
        out.push(EvalSample {
            feed: HashMap::from([(input_name.to_string(), loaded.input)]),
            height: labels.height as usize,
            width: labels.width as usize,
            labels: labels.data,
        });
    }
    Ok(out)
}

/// Splits `samples` into (search, held out): every `every`-th sample (the last of each run of `every`) is
/// held out, so both parts spread over the split's order (cities). `every` < 2 or fewer than `2 * every`
/// samples: nothing is held out.
pub fn hold_out(samples: Vec<EvalSample>, every: usize) -> (Vec<EvalSample>, Vec<EvalSample>) {
    if every < 2 || samples.len() < 2 * every {
        return (samples, Vec::new());
    }
    let (mut search, mut held) = (Vec::new(), Vec::new());
    for (i, s) in samples.into_iter().enumerate() {
        if i % every == every - 1 {
            held.push(s);
        } else {
            search.push(s);
        }
    }
    (search, held)
}

impl Evaluator {
    /// Runs the FP32 graph over `samples` once.
    pub fn new(
        fp32: &Model,
        samples: Vec<EvalSample>,
        classes: usize,
        threads: usize,
    ) -> Result<Self, DebugError> {
        if samples.is_empty() {
            return Err(DebugError::NoInputs);
        }
        for (index, s) in samples.iter().enumerate() {
            if s.labels.len() != s.height * s.width {
                return Err(DebugError::Labels {
                    index,
                    labels: s.labels.len(),
                    height: s.height,
                    width: s.width,
                });
            }
        }
        let mut e = Evaluator {
            samples,
            classes,
            reference: Vec::new(),
            fp32: Score::default(),
            peak_bytes: 0,
        };
        let exec = executor(fp32, "fp32", threads)?;
        let (maps, matrix, peak) = e.class_maps(&exec, "fp32")?;
        e.peak_bytes = peak;
        let scores = matrix.scores();
        e.fp32 = Score {
            miou: scores.miou,
            pixel_accuracy: scores.pixel_accuracy,
            agreement: 1.0,
        };
        e.reference = maps;
        Ok(e)
    }

    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// Scores `model` (built into an executor with `threads` workers).
    pub fn score(&self, model: &Model, graph: &str, threads: usize) -> Result<Score, DebugError> {
        let exec = executor(model, graph, threads)?;
        self.score_exec(&exec, graph)
    }

    /// Scores a prepared executor.
    pub fn score_exec(&self, exec: &Executor, graph: &str) -> Result<Score, DebugError> {
        let (maps, matrix, _) = self.class_maps(exec, graph)?;
        let (mut same, mut total) = (0u64, 0u64);
        for (m, r) in maps.iter().zip(&self.reference) {
            same += m.iter().zip(r).filter(|(a, b)| a == b).count() as u64;
            total += m.len() as u64;
        }
        let scores = matrix.scores();
        Ok(Score {
            miou: scores.miou,
            pixel_accuracy: scores.pixel_accuracy,
            agreement: same as f64 / total.max(1) as f64,
        })
    }

    fn class_maps(
        &self,
        exec: &Executor,
        graph: &str,
    ) -> Result<(Vec<Vec<u8>>, ConfusionMatrix, usize), DebugError> {
        let main = exec
            .output_names()
            .last()
            .ok_or_else(|| DebugError::Logits {
                graph: graph.into(),
                output: String::new(),
                shape: Vec::new(),
            })?
            .to_string();
        // One buffer pool for the whole split: each image's run reuses the buffers the previous
        // one freed instead of faulting in fresh pages.
        exec.with_reused_buffers(|exec| {
            let mut matrix = ConfusionMatrix::new(self.classes);
            let mut maps = Vec::with_capacity(self.samples.len());
            let mut peak = 0;
            for s in &self.samples {
                let (out, stats) =
                    exec.run_with_stats(s.feed.clone(), &[], None)
                        .map_err(|source| DebugError::Exec {
                            graph: graph.into(),
                            source,
                        })?;
                peak = peak.max(stats.peak_activation_bytes);
                let logits = &out[&main];
                let map =
                    class_map(logits, s.height, s.width).ok_or_else(|| DebugError::Logits {
                        graph: graph.into(),
                        output: main.clone(),
                        shape: logits.shape.clone(),
                    })?;
                matrix.add(&s.labels, &map.classes);
                maps.push(map.classes);
            }
            Ok((maps, matrix, peak))
        })
    }
}

pub(crate) fn executor(model: &Model, graph: &str, threads: usize) -> Result<Executor, DebugError> {
    Executor::new(
        model,
        ExecOptions {
            threads,
            ..Default::default()
        },
    )
    .map_err(|source| DebugError::Exec {
        graph: graph.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u8) -> EvalSample {
        EvalSample {
            feed: HashMap::new(),
            labels: vec![i],
            height: 1,
            width: 1,
        }
    }

    #[test]
    fn every_third_sample_is_held_out_in_order() {
        let (search, held) = hold_out((0..10).map(sample).collect(), 3);
        let ids = |v: &[EvalSample]| v.iter().map(|s| s.labels[0]).collect::<Vec<_>>();
        assert_eq!(ids(&held), vec![2, 5, 8]);
        assert_eq!(ids(&search), vec![0, 1, 3, 4, 6, 7, 9]);
        // Too few to spare any, or no holding out asked for: everything is searched on.
        assert!(hold_out((0..5).map(sample).collect(), 3).1.is_empty());
        assert_eq!(hold_out((0..10).map(sample).collect(), 1).0.len(), 10);
    }
}
