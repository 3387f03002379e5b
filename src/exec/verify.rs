//! Proof that a graph rewrite kept the numbers: both graphs run on the same deterministic input and every
//! graph output is compared by relative L2. The compile pipeline runs it after fusion.

use super::{ExecError, ExecOptions, Executor};
use crate::onnx::Model;
use crate::tensor::{Data, Tensor};
use serde::Serialize;
use std::collections::HashMap;

/// One output's agreement.
#[derive(Debug, Clone, Serialize)]
pub struct OutputAgreement {
    pub name: String,
    pub rel_l2: f64,
    pub max_abs: f64,
}

/// What [`compare`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub input_shape: Vec<usize>,
    pub outputs: Vec<OutputAgreement>,
}

impl Agreement {
    /// The largest relative L2 error over the outputs.
    pub fn worst(&self) -> f64 {
        self.outputs.iter().map(|o| o.rel_l2).fold(0.0, f64::max)
    }
}

/// A deterministic input in the range HRNet's normalisation produces (about -2..2.6).
pub fn probe_input(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.5 - 2.0
        })
        .collect();
    Tensor::new(shape.to_vec(), Data::F32(v)).expect("sized from the shape")
}

/// Runs `before` and `after` on `input` (fed as graph input `input_name`) and compares every output of
/// `before` with the output of the same name in `after`.
pub fn compare(
    before: &Model,
    after: &Model,
    input_name: &str,
    input: &Tensor,
    options: ExecOptions,
) -> Result<Agreement, ExecError> {
    let feed = || HashMap::from([(input_name.to_string(), input.clone())]);
    let want = Executor::new(before, options)?.run(feed(), &[], None)?;
    let got = Executor::new(after, options)?.run(feed(), &[], None)?;
    let mut outputs = Vec::new();
    for name in before.graph.outputs.iter().map(|v| v.name()) {
        let (Some(w), Some(g)) = (want.get(name), got.get(name)) else {
            return Err(ExecError::UnknownValue(name.to_string()));
        };
        let (w, g) = (w.as_f32s(), g.as_f32s());
        let (mut num, mut den, mut max_abs) = (0f64, 0f64, 0f64);
        for (a, b) in g.iter().zip(&w) {
            let d = (*a as f64 - *b as f64).abs();
            num += d * d;
            den += (*b as f64).powi(2);
            max_abs = max_abs.max(d);
        }
        let rel_l2 = if w.len() != g.len() {
            f64::INFINITY
        } else {
            (num / den.max(f64::MIN_POSITIVE)).sqrt()
        };
        outputs.push(OutputAgreement {
            name: name.to_string(),
            rel_l2,
            max_abs,
        });
    }
    Ok(Agreement {
        input_shape: input.shape.clone(),
        outputs,
    })
}
