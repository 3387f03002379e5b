//! `ocrnet-edge run`: one input through a backend (the CPU executor, or a TensorRT engine), writing the class
//! map and/or the logits.

use anyhow::{bail, Context};
use ocrnet_edge::data::{self, ImageLimits};
use ocrnet_edge::exec::{ExecOptions, Numerics};
use ocrnet_edge::runtime::{self, BackendKind};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub struct RunArgs<'a> {
    pub model: &'a Path,
    pub backend: BackendKind,
    pub input: &'a Path,
    pub output: Option<&'a Path>,
    pub logits: Option<&'a Path>,
    pub threads: usize,
    pub fp16: bool,
    pub json: bool,
}

pub fn run(a: RunArgs<'_>) -> anyhow::Result<ExitCode> {
    if a.fp16 && a.backend != BackendKind::Cpu {
        bail!("--fp16 simulates FP16 on the cpu backend; an engine's precision is fixed when it is built");
    }
    let numerics = if a.fp16 {
        Numerics::Fp16
    } else {
        Numerics::Fp32
    };
    let backend = runtime::open(
        a.backend,
        a.model,
        ExecOptions {
            threads: a.threads,
            numerics,
            ..Default::default()
        },
    )
    .with_context(|| {
        let kind = format!("{:?}", a.backend).to_lowercase();
        format!("opening {} on the {kind} backend", a.model.display())
    })?;

    // A .npy is the ready NCHW tensor; anything else is an image that gets HRNet's preprocessing, resized to
    // the model's input size when that is static. The class map has the size of the image (or tensor).
    let is_npy = a
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let (tensor, (h, w)) = if is_npy {
        let t = ocrnet_edge::npy::read(a.input)?;
        let hw = match t.shape.as_slice() {
            [_, _, h, w] => (*h, *w),
            s => bail!(
                "{}: expected an NCHW tensor, got shape {s:?}",
                a.input.display()
            ),
        };
        (t, hw)
    } else {
        let img = data::load_rgb(a.input, ImageLimits::default())?;
        let (w, h) = img.dimensions();
        (
            data::preprocess(&img, backend.input_hw()),
            (h as usize, w as usize),
        )
    };

    let start = Instant::now();
    let logits = backend
        .infer(tensor)
        .with_context(|| format!("running {}", a.model.display()))?;
    let seconds = start.elapsed().as_secs_f64();
    // A NaN input, or a graph that overflows (an FP16 one), gives logits whose argmax means nothing.
    let nonfinite = logits.as_f32s().iter().filter(|x| !x.is_finite()).count();
    if nonfinite > 0 {
        log::warn!(
            "{}: {nonfinite} of the {} logits are NaN/inf (from {}); the class map's argmax over them means nothing",
            a.model.display(),
            logits.len(),
            a.input.display()
        );
    }

    if let Some(path) = a.logits {
        ocrnet_edge::npy::write(path, &logits)?;
    }
    let mut histogram = vec![0u64; 0];
    if let Some(path) = a.output {
        let map = runtime::class_map(&logits, h, w).with_context(|| {
            format!(
                "the main output of shape {:?} is not [1, classes, H, W] logits",
                logits.shape
            )
        })?;
        runtime::write_class_png(&map, path)
            .with_context(|| format!("writing {}", path.display()))?;
        histogram = vec![0; 256];
        for &c in &map.classes {
            histogram[c as usize] += 1;
        }
        histogram.truncate(histogram.iter().rposition(|&n| n > 0).map_or(0, |i| i + 1));
    }
    if a.json {
        let report = serde_json::json!({
            "model": a.model.display().to_string(),
            "backend": backend.name(),
            "shape": logits.shape,
            "seconds": seconds,
            "class_pixels": histogram,
            "nonfinite_logits": nonfinite,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} → {:?} in {:.3} s ({} backend)",
            a.input.display(),
            logits.shape,
            seconds,
            backend.name()
        );
        for (p, what) in [(a.output, "class map"), (a.logits, "logits")] {
            if let Some(p) = p {
                println!("wrote {what} {}", p.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
