//! `ocrnet-edge run --backend trt`: one input through a backend other than the CPU executor (a TensorRT
//! engine), with the same preprocessing and class map as `run`.

use anyhow::{bail, Context};
use ocrnet_edge::data::{self, ImageLimits};
use ocrnet_edge::exec::ExecOptions;
use ocrnet_edge::runtime::{self, BackendKind};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub struct Args<'a> {
    pub model: &'a Path,
    pub backend: BackendKind,
    pub input: &'a Path,
    pub output: Option<&'a Path>,
    pub logits: Option<&'a Path>,
    pub threads: usize,
    pub fp16: bool,
    pub json: bool,
}

pub fn run(a: Args<'_>) -> anyhow::Result<ExitCode> {
    if a.fp16 {
        bail!("--fp16 simulates FP16 on the cpu backend; an engine's precision is fixed when it is built");
    }
    let backend = runtime::open(
        a.backend,
        a.model,
        ExecOptions {
            threads: a.threads,
            ..Default::default()
        },
    )
    .with_context(|| {
        let kind = format!("{:?}", a.backend).to_lowercase();
        format!("opening {} on the {kind} backend", a.model.display())
    })?;
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
    if let Some(path) = a.logits {
        ocrnet_edge::npy::write(path, &logits)?;
    }
    if let Some(path) = a.output {
        let map = runtime::class_map(&logits, h, w).with_context(|| {
            format!(
                "the output of shape {:?} is not [1, classes, H, W] logits",
                logits.shape
            )
        })?;
        runtime::write_class_png(&map, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        let report = serde_json::json!({
            "model": a.model.display().to_string(),
            "backend": backend.name(),
            "shape": logits.shape,
            "seconds": seconds,
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
