//! `ocrnet-edge compile`.

use super::stages::Stages;
use anyhow::Context;
use ocrnet_edge::pipeline::{self, Progress};
use ocrnet_edge::recipe::Recipe;
use std::path::Path;
use std::process::ExitCode;

struct CompileStages(Stages);

impl Progress for CompileStages {
    fn stage(&self, name: &str) {
        self.0.stage(name);
    }
}

/// `compile`, or with `int8_only` the `calibrate` command: the same pipeline with int8 as the only
/// precision.
pub fn run(
    recipe: Option<&Path>,
    out: Option<&Path>,
    json: bool,
    int8_only: bool,
    force_engines: bool,
    miou_budget: Option<f64>,
) -> anyhow::Result<ExitCode> {
    let mut recipe = match recipe {
        Some(path) => Recipe::load(path)?,
        None => Recipe::embedded_default()?,
    };
    if int8_only {
        recipe.file.precisions = vec![ocrnet_edge::recipe::Precision::Int8];
    }
    if let Some(b) = miou_budget {
        // The command line has checked that `b` is finite and >= 0 (`parse_points`). The val images are
        // checked here, before calibration runs; the recipe checks the same for its own budget.
        anyhow::ensure!(
            recipe.file.accuracy.images > 0,
            "{}: --miou-budget needs val images, and accuracy.images is 0",
            recipe.source_name
        );
        recipe
            .file
            .calibration
            .as_mut()
            .with_context(|| {
                format!(
                    "{}: --miou-budget needs a calibration section",
                    recipe.source_name
                )
            })?
            .miou_budget = Some(b);
    }
    let stages = CompileStages(Stages::start());
    let options = pipeline::CompileOptions { force_engines };
    let result = pipeline::compile_with(&recipe, out, &stages, options);
    stages.0.finish();
    let report = result.with_context(|| format!("compiling {}", recipe.source_name))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let s = &report.simplify;
        println!(
            "simplified {}: {} → {} nodes ({} folded, {} identities removed, {} dead)",
            recipe.model.display(),
            s.nodes_before,
            s.nodes_after,
            s.folded,
            s.removed_identity,
            s.dead_removed
        );
        if let Some(f) = &report.fuse {
            print!("{}", ocrnet_edge::passes::ocr::describe(f));
        }
        if let Some(v) = &report.verify {
            println!(
                "verified the fusion on a probe input {:?}: worst output relative L2 {:.2e} (limit {:e})",
                v.input_shape,
                v.worst(),
                pipeline::FUSION_REL_L2
            );
        }
        if let Some(c) = &report.precision.calibration {
            println!(
                "calibrated on {} images: {} tensors, {:.2} s of forward passes ({:.2}× a plain forward per image, {:.2} s of it histograms)",
                c.images,
                c.tensors,
                c.forward_seconds,
                c.cost_per_image_vs_forward,
                c.collect_seconds
            );
        }
        if let Some(acc) = &report.precision.accuracy {
            println!(
                "accuracy on the '{}' split ({} of its {} images, CPU executor):",
                acc.split, acc.images, acc.split_images
            );
            for p in &acc.precisions {
                println!(
                    "  {:<5} mIoU {:.4} ({:+.4} vs fp32)  pixel accuracy {:.4}  agreement with fp32 {:.4}",
                    format!("{:?}", p.precision).to_lowercase(),
                    p.scores.miou,
                    p.miou_delta_vs_fp32,
                    p.scores.pixel_accuracy,
                    p.agreement_with_fp32
                );
            }
        }
        for e in &report.engines {
            println!(
                "engine {}: {} ({}, {:.1} s)",
                ocrnet_edge::engine::settings::precision_name(e.precision),
                e.engine.display(),
                match e.outcome {
                    ocrnet_edge::engine::Outcome::Built => "built",
                    ocrnet_edge::engine::Outcome::UpToDate => "up to date, not rebuilt",
                },
                e.seconds
            );
        }
        if let Some(m) = &report.precision.mixed_precision {
            print!("{}", ocrnet_edge::debug::search::describe_search(m));
        }
        for a in &report.artifacts {
            println!("wrote {}", report.out_dir.join(a).display());
        }
        println!("wrote {}", report.manifest.display());
    }
    Ok(ExitCode::SUCCESS)
}
