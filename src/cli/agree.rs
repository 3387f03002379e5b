//! `ocrnet-edge agree`: pixel agreement of a model on one backend against a reference on another, over a
//! folder of images (deploy/jetson-smoke.sh: each TensorRT engine against the CPU executor).

use anyhow::{bail, Context};
use ocrnet_edge::data::ImageLimits;
use ocrnet_edge::exec::ExecOptions;
use ocrnet_edge::runtime::{self, agreement, BackendKind};
use std::path::Path;
use std::process::ExitCode;

pub struct AgreeArgs<'a> {
    pub model: &'a Path,
    pub backend: BackendKind,
    pub reference: &'a Path,
    pub reference_backend: BackendKind,
    pub images: &'a Path,
    pub limit: Option<usize>,
    pub min: Option<f64>,
    pub threads: usize,
    pub json: bool,
}

pub fn run(a: AgreeArgs<'_>) -> anyhow::Result<ExitCode> {
    if let Some(m) = a.min {
        if !(0.0..=1.0).contains(&m) {
            bail!("--min {m} is not a fraction in 0..=1");
        }
    }
    let options = ExecOptions {
        threads: a.threads,
        ..Default::default()
    };
    let open = |kind, path: &Path| {
        runtime::open(kind, path, options).with_context(|| {
            let kind = format!("{kind:?}").to_lowercase();
            format!("opening {} on the {kind} backend", path.display())
        })
    };
    let model = open(a.backend, a.model)?;
    let reference = open(a.reference_backend, a.reference)?;
    let images = agreement::list_images(a.images, a.limit)?;
    let r = agreement::agreement(&*model, &*reference, &images, ImageLimits::default())
        .context("comparing the class maps")?;
    let pass = a.min.is_none_or(|m| r.agreement >= m);
    if a.json {
        let report = serde_json::json!({
            "model": a.model.display().to_string(),
            "backend": model.name(),
            "reference": a.reference.display().to_string(),
            "reference_backend": reference.name(),
            "images": images.len(),
            "agreement": r.agreement,
            "worst_image": r.worst,
            "min": a.min,
            "pass": pass,
            "per_image": r.images,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} ({}) vs {} ({}): {} images, pixel agreement {:.4} (worst image {:.4}){}",
            a.model.display(),
            model.name(),
            a.reference.display(),
            reference.name(),
            images.len(),
            r.agreement,
            r.worst,
            a.min
                .map(|m| format!(", minimum {m}: {}", if pass { "pass" } else { "FAIL" }))
                .unwrap_or_default()
        );
    }
    if !pass {
        eprintln!(
            "error: pixel agreement {:.4} is below --min {}",
            r.agreement,
            a.min.unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
