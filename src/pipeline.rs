//! The `compile` pipeline: recipe → load → simplify → save → manifest. Today it stops after simplification;
//! each later stage (fusion, calibration, precision lowering, engines) joins here as it lands.

use crate::manifest::{FileEntry, Manifest};
use crate::onnx::{self, SaveOptions};
use crate::passes::{self, SimplifyOptions};
use crate::recipe::{Recipe, RecipeError};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The simplified model's file name in the output folder.
pub const SIMPLIFIED_MODEL: &str = "model.simplified.onnx";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("loading {path}: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: onnx::Error,
    },
    #[error("{what}: {source}")]
    Step {
        what: String,
        #[source]
        source: onnx::Error,
    },
    #[error(
        "{recipe}: field 'input.name': the model has no input '{name}' (its inputs: {available})"
    )]
    NoSuchInput {
        recipe: String,
        name: String,
        available: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What `compile` did, for the terminal or `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct CompileReport {
    pub out_dir: PathBuf,
    pub manifest: PathBuf,
    pub artifacts: Vec<String>,
    pub simplify: passes::SimplifyReport,
}

/// Observes pipeline progress (the CLI shows a spinner; tests pass a no-op).
pub trait Progress {
    fn stage(&self, _name: &str) {}
}

impl Progress for () {}

/// Runs the pipeline for `recipe`, writing into `out_dir` (the recipe's `output_dir` unless overridden).
pub fn compile(
    recipe: &Recipe,
    out_dir: Option<&Path>,
    progress: &dyn Progress,
) -> Result<CompileReport, PipelineError> {
    let out_dir = out_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| recipe.output_dir.clone());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PipelineError::Io { path, source }
    };
    let mut manifest = Manifest::new();
    manifest.recipe = Some(FileEntry::of_text(recipe.source_name.clone(), &recipe.text));

    progress.stage("loading model");
    let t = Instant::now();
    let mut model = onnx::load(&recipe.model).map_err(|source| PipelineError::Load {
        path: recipe.model.clone(),
        source,
    })?;
    manifest.inputs.push(
        FileEntry::hash(&recipe.model, recipe.model.display().to_string())
            .map_err(io(&recipe.model))?,
    );
    for file in external_files(&model) {
        manifest
            .inputs
            .push(FileEntry::hash(&file, file.display().to_string()).map_err(io(&file))?);
    }
    manifest.step(
        "load",
        t.elapsed().as_secs_f64(),
        onnx::stats::ModelStats::of(&model),
    );

    if !model
        .graph
        .inputs
        .iter()
        .any(|v| v.name() == recipe.input_name)
    {
        return Err(PipelineError::NoSuchInput {
            recipe: recipe.source_name.clone(),
            name: recipe.input_name.clone(),
            available: model
                .graph
                .inputs
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }

    progress.stage("simplifying");
    let t = Instant::now();
    let mut input_shapes = HashMap::new();
    if recipe.shapes.is_static() {
        // A static recipe pins a dynamic export to its size, so every shape computation folds away.
        input_shapes.insert(recipe.input_name.clone(), recipe.shapes.opt.clone());
    }
    let opts = SimplifyOptions {
        input_shapes,
        write_value_info: true,
    };
    let simplify = passes::simplify(&mut model, &opts).map_err(|source| PipelineError::Step {
        what: format!("simplifying {}", recipe.model.display()),
        source,
    })?;
    manifest.step("simplify", t.elapsed().as_secs_f64(), &simplify);

    progress.stage("writing artifacts");
    let model_path = out_dir.join(SIMPLIFIED_MODEL);
    let saved = onnx::save(&model, &model_path, &SaveOptions::default()).map_err(|source| {
        PipelineError::Step {
            what: "saving the simplified model".into(),
            source,
        }
    })?;
    let mut artifacts = vec![SIMPLIFIED_MODEL.to_string()];
    artifacts.extend(
        saved
            .data_files
            .iter()
            .chain(&saved.reused_data_files)
            .cloned(),
    );
    for name in &artifacts {
        let path = out_dir.join(name);
        manifest
            .outputs
            .push(FileEntry::hash(&path, name.clone()).map_err(io(&path))?);
    }
    let manifest_path = manifest.write(&out_dir).map_err(io(&out_dir))?;
    Ok(CompileReport {
        out_dir,
        manifest: manifest_path,
        artifacts,
        simplify,
    })
}

/// The external data files a model reads, each once.
fn external_files(model: &onnx::Model) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = model.origins.values().map(|o| o.file.clone()).collect();
    files.sort();
    files.dedup();
    files
}
