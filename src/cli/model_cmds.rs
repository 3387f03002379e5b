//! `inspect`, `simplify` and `convert`: commands on one model file.

use super::ExternalArgs;
use anyhow::{bail, Context};
use ocrnet_edge::onnx::{self, stats::ModelStats, ExternalPolicy, SaveOptions};
use ocrnet_edge::passes::{self, SimplifyOptions};
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

fn load(path: &Path) -> anyhow::Result<onnx::Model> {
    let (model, report) =
        onnx::load_with_report(path).with_context(|| format!("loading {}", path.display()))?;
    if report.unaccounted_bytes != 0 {
        log::warn!(
            "{}: {} bytes will not survive a save",
            path.display(),
            report.unaccounted_bytes
        );
    }
    Ok(model)
}

pub fn inspect(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let stats = ModelStats::of(&load(path)?);
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", stats.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn simplify(
    path: &Path,
    output: &Path,
    shapes: &[String],
    external: &ExternalArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let opts = SimplifyOptions {
        input_shapes: parse_input_shapes(shapes)?,
        write_value_info: true,
    };
    let mut model = load(path)?;
    let report = passes::simplify(&mut model, &opts)
        .with_context(|| format!("simplifying {}", path.display()))?;
    save(&model, output, external)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} → {} nodes ({} folded, {} identities removed, {} dead); wrote {}",
            path.display(),
            report.nodes_before,
            report.nodes_after,
            report.folded,
            report.removed_identity,
            report.dead_removed,
            output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn fuse(
    path: &Path,
    output: &Path,
    shapes: &[String],
    external: &ExternalArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let opts = SimplifyOptions {
        input_shapes: parse_input_shapes(shapes)?,
        write_value_info: false,
    };
    let t = std::time::Instant::now();
    let lap = |what: &str| log::info!("{what}: {:.3} s", t.elapsed().as_secs_f64());
    let mut model = load(path)?;
    lap("loaded");
    let simplified = passes::simplify(&mut model, &opts)
        .with_context(|| format!("simplifying {}", path.display()))?;
    lap("simplified");
    let fused = passes::ocr::fuse(&mut model)
        .with_context(|| format!("fusing the OCR subgraphs of {}", path.display()))?;
    lap("fused");
    let validation = passes::ocr::validate::validate(&model)
        .with_context(|| format!("validating the fused graph of {}", path.display()))?;
    lap("validated");
    save(&model, output, external)?;
    lap("saved");
    if json {
        let report = serde_json::json!({
            "model": path,
            "output": output,
            "simplify": simplified,
            "fuse": fused,
            "validation": validation,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", passes::ocr::describe(&fused));
    println!(
        "{}: {} → {} → {} nodes (simplify, fuse); wrote {}",
        path.display(),
        simplified.nodes_before,
        fused.nodes_before,
        fused.nodes_after,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn convert(path: &Path, output: &Path, external: &ExternalArgs) -> anyhow::Result<ExitCode> {
    let model = load(path)?;
    save(&model, output, external)?;
    Ok(ExitCode::SUCCESS)
}

fn save(model: &onnx::Model, output: &Path, external: &ExternalArgs) -> anyhow::Result<()> {
    let policy = match (&external.external_data, external.inline) {
        (Some(location), _) => ExternalPolicy::Single {
            location: location.clone(),
            threshold: external.external_threshold,
        },
        (None, true) => ExternalPolicy::Inline,
        (None, false) => ExternalPolicy::Keep,
    };
    onnx::save(
        model,
        output,
        &SaveOptions {
            external: policy,
            durable: !external.no_fsync,
        },
    )
    .with_context(|| format!("saving {}", output.display()))?;
    Ok(())
}

/// `NAME=1,3,512,1024` → (NAME, dims).
fn parse_input_shapes(flags: &[String]) -> anyhow::Result<HashMap<String, Vec<i64>>> {
    let mut shapes = HashMap::new();
    for flag in flags {
        let Some((name, dims)) = flag.split_once('=') else {
            bail!("--input-shape '{flag}': expected NAME=DIM,DIM,...");
        };
        let dims = dims
            .split(',')
            .map(|d| d.trim().parse::<i64>().ok().filter(|&v| v > 0))
            .collect::<Option<Vec<_>>>()
            .with_context(|| {
                format!("--input-shape '{flag}': dimensions must be positive integers")
            })?;
        shapes.insert(name.to_string(), dims);
    }
    Ok(shapes)
}
