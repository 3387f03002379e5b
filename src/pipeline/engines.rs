//! The engine stage of `compile`: with feature `tensorrt`, one TensorRT engine per engine precision from the
//! graphs the earlier stages wrote, each with its manifest; without it, nothing (and a note in the log).
//! [`Stage::start`] runs before the rest of the pipeline, so a machine without a usable TensorRT or GPU fails
//! in seconds instead of after calibration.

use super::{CompileOptions, PipelineError, Progress};
use crate::engine::EngineReport;
use crate::recipe::Recipe;
use std::path::Path;

/// The engine stage, opened at the start of `compile`.
pub struct Stage {
    #[cfg(feature = "tensorrt")]
    builder: crate::engine::trt::TrtBuilder,
}

impl Stage {
    /// Opens TensorRT and the CUDA device (feature `tensorrt`); nothing to open otherwise.
    pub fn start() -> Result<Self, PipelineError> {
        Ok(Stage {
            #[cfg(feature = "tensorrt")]
            builder: crate::engine::trt::TrtBuilder::new()?,
        })
    }

    /// Builds (or finds up to date) the recipe's engines in `out_dir`. `fp32_graph` names the FP32 graph there.
    #[cfg(feature = "tensorrt")]
    pub fn build(
        &self,
        recipe: &Recipe,
        out_dir: &Path,
        fp32_graph: &str,
        options: CompileOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<EngineReport>, PipelineError> {
        use crate::engine::{builder, settings};
        let mut reports = Vec::new();
        for job in &settings::plan(recipe, out_dir, fp32_graph) {
            progress.stage(&format!(
                "building the {} engine",
                settings::precision_name(job.settings.precision)
            ));
            log::info!(
                "building {}: {}",
                job.engine.display(),
                builder::describe(&job.settings)
            );
            reports.push(builder::build_engine(
                job,
                &self.builder,
                options.force_engines,
            )?);
        }
        Ok(reports)
    }

    #[cfg(not(feature = "tensorrt"))]
    pub fn build(
        &self,
        _recipe: &Recipe,
        _out_dir: &Path,
        _fp32_graph: &str,
        _options: CompileOptions,
        _progress: &dyn Progress,
    ) -> Result<Vec<EngineReport>, PipelineError> {
        log::info!("TensorRT engines not built: this binary has no TensorRT (feature `tensorrt`)");
        Ok(Vec::new())
    }
}

/// The files the engine stage leaves, relative to the output folder.
pub fn artifacts(reports: &[EngineReport]) -> Vec<String> {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    reports
        .iter()
        .flat_map(|r| [name(&r.engine), name(&r.manifest)])
        .collect()
}
