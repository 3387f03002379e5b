//! `ocrnet-edge run`: one input through the CPU executor, writing the class map and/or the logits.

use anyhow::{bail, Context};
use ocrnet_edge::data::{self, ImageLimits};
use ocrnet_edge::exec::{ExecOptions, Executor, Numerics};
use ocrnet_edge::onnx;
use ocrnet_edge::runtime;
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub struct RunArgs<'a> {
    pub model: &'a Path,
    pub input: &'a Path,
    pub output: Option<&'a Path>,
    pub logits: Option<&'a Path>,
    pub threads: usize,
    pub fp16: bool,
    pub json: bool,
}

pub fn run(a: RunArgs<'_>) -> anyhow::Result<ExitCode> {
    let model = onnx::load(a.model).with_context(|| format!("loading {}", a.model.display()))?;
    let numerics = if a.fp16 {
        Numerics::Fp16
    } else {
        Numerics::Fp32
    };
    let exec = Executor::new(
        &model,
        ExecOptions {
            threads: a.threads,
            numerics,
            ..Default::default()
        },
    )
    .with_context(|| format!("preparing {}", a.model.display()))?;
    let inputs: Vec<&str> = exec.input_names().collect();
    let [input_name] = inputs.as_slice() else {
        bail!(
            "{}: expected one graph input, the model has {}",
            a.model.display(),
            inputs.len()
        );
    };
    let input_name = input_name.to_string();

    // A .npy is the ready NCHW tensor; anything else is an image that gets HRNet's preprocessing, resized to
    // the model's input size when that is static. The class map has the size of the image (or tensor).
    let is_npy = a
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let (tensor, map_size) = if is_npy {
        let t = ocrnet_edge::npy::read(a.input)?;
        let (h, w) = match t.shape.as_slice() {
            [_, _, h, w] => (*h, *w),
            s => bail!(
                "{}: expected an NCHW tensor, got shape {s:?}",
                a.input.display()
            ),
        };
        (t, (h, w))
    } else {
        let img = data::load_rgb(a.input, ImageLimits::default())?;
        let size = runtime::backend::static_hw(&model, &input_name);
        let (w, h) = img.dimensions();
        (data::preprocess(&img, size), (h as usize, w as usize))
    };

    let start = Instant::now();
    let mut outputs = exec
        .run(HashMap::from([(input_name, tensor)]), &[], None)
        .with_context(|| format!("running {}", a.model.display()))?;
    let seconds = start.elapsed().as_secs_f64();
    let main_name = exec
        .output_names()
        .last()
        .context("the model has no output")?
        .to_string();
    let logits = outputs
        .remove(&main_name)
        .expect("executor returns every graph output");

    if let Some(path) = a.logits {
        ocrnet_edge::npy::write(path, &logits)?;
    }
    let mut histogram = vec![0u64; 0];
    if let Some(path) = a.output {
        let map = runtime::class_map(&logits, map_size.0, map_size.1).with_context(|| {
            format!(
                "output '{main_name}' of shape {:?} is not [1, classes, H, W] logits",
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
            "output": main_name,
            "shape": logits.shape,
            "seconds": seconds,
            "class_pixels": histogram,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} → '{main_name}' {:?} in {:.3} s",
            a.input.display(),
            logits.shape,
            seconds
        );
        for (p, what) in [(a.output, "class map"), (a.logits, "logits")] {
            if let Some(p) = p {
                println!("wrote {what} {}", p.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
