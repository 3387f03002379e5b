//! What an engine build takes from the recipe: the `engine:` section (workspace cap, optimisation level,
//! timing cache, legacy mode, which precisions), the optimisation profile from `input`, and the list of
//! engines to build with the ONNX graph each one starts from.

use crate::onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
use crate::pipeline::precision::{CALIBRATION_CACHE, FP16_MODEL, INT8_MODEL};
use crate::recipe::{Precision, Recipe, RecipeFile, ShapeRange};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_WORKSPACE_MIB: u64 = 2048;
/// The largest workspace cap a recipe may ask for (64 GiB: the biggest Orin's whole memory).
pub const MAX_WORKSPACE_MIB: u64 = 64 * 1024;
/// TensorRT's builder optimisation levels are 0..=5; 3 is its default.
pub const DEFAULT_OPTIMIZATION_LEVEL: u8 = 3;
pub const MAX_OPTIMIZATION_LEVEL: u8 = 5;
/// The timing cache's file name in the output folder when the recipe names none.
pub const TIMING_CACHE: &str = "timing.cache";

/// The recipe's `engine:` section. Every field has a default, so the section may be left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// Cap of TensorRT's workspace memory pool in MiB. An Orin shares its memory between CPU and GPU; an
    /// 8 GB module runs out on big builds with the default, so lower this when a build fails for memory.
    #[serde(default = "default_workspace")]
    pub workspace_mib: u64,
    /// Builder optimisation level 0..=5: higher searches more tactics (slower builds, maybe faster engines).
    #[serde(default = "default_level")]
    pub optimization_level: u8,
    /// Timing cache file, loaded before and saved after each build (relative to the recipe's folder);
    /// default: `timing.cache` in the output folder.
    #[serde(default)]
    pub timing_cache: Option<PathBuf>,
    /// Build weakly typed engines from the FP32 graph with TensorRT's FP16/INT8 flags, INT8 through a
    /// calibrator serving `calibration.cache` (TensorRT 10.x only: 11 removed both), instead of the
    /// strongly typed FP16 and Q/DQ graphs.
    #[serde(default)]
    pub legacy: bool,
    /// Which engines to build; default: fp32 and every precision in `precisions`.
    #[serde(default)]
    pub precisions: Option<Vec<Precision>>,
}

fn default_workspace() -> u64 {
    DEFAULT_WORKSPACE_MIB
}
fn default_level() -> u8 {
    DEFAULT_OPTIMIZATION_LEVEL
}

impl Default for EngineSpec {
    fn default() -> Self {
        EngineSpec {
            workspace_mib: DEFAULT_WORKSPACE_MIB,
            optimization_level: DEFAULT_OPTIMIZATION_LEVEL,
            timing_cache: None,
            legacy: false,
            precisions: None,
        }
    }
}

/// Checks the `engine:` section against the rest of the recipe; the error names the field.
pub fn validate(file: &RecipeFile) -> Result<(), (&'static str, String)> {
    let e = &file.engine;
    if e.workspace_mib == 0 || e.workspace_mib > MAX_WORKSPACE_MIB {
        return Err((
            "engine.workspace_mib",
            format!(
                "{} is out of range: 1..={MAX_WORKSPACE_MIB} MiB",
                e.workspace_mib
            ),
        ));
    }
    if e.optimization_level > MAX_OPTIMIZATION_LEVEL {
        return Err((
            "engine.optimization_level",
            format!(
                "{} is out of range: TensorRT's levels are 0..={MAX_OPTIMIZATION_LEVEL}",
                e.optimization_level
            ),
        ));
    }
    if let Some(list) = &e.precisions {
        if list.is_empty() {
            return Err((
                "engine.precisions",
                "name at least one of fp32, fp16, int8 (or leave the field out)".into(),
            ));
        }
        for p in list {
            // The FP32 graph is always made; the others only when `precisions` asks for them.
            if *p != Precision::Fp32 && !file.precisions.contains(p) {
                return Err((
                    "engine.precisions",
                    format!(
                        "{} is not in `precisions`, so its graph is not made",
                        precision_name(*p)
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub fn precision_name(p: Precision) -> &'static str {
    p.name()
}

/// How the network's precision is expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Typing {
    /// Precision is in the ONNX graph (FP16 tensors, Q/DQ); TensorRT follows it.
    StronglyTyped,
    /// An FP32 graph with builder flags (and a calibrator for INT8): TensorRT 10.x only.
    LegacyWeak,
}

/// One optimisation profile for the network input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub input: String,
    pub min: Vec<i64>,
    pub opt: Vec<i64>,
    pub max: Vec<i64>,
}

impl Profile {
    pub fn from_range(input: &str, r: &ShapeRange) -> Self {
        Profile {
            input: input.to_string(),
            min: r.min.clone(),
            opt: r.opt.clone(),
            max: r.max.clone(),
        }
    }

    pub fn is_static(&self) -> bool {
        self.min == self.max
    }

    /// Checks the profile against the graph's declaration of the input: it must exist, have the
    /// profile's rank, and each fixed dimension must equal min, opt and max (TensorRT refuses a profile
    /// that disagrees with a static dimension). Symbolic dimensions take any range.
    pub fn check_against(&self, model: &crate::onnx::Model) -> Result<(), String> {
        let Some(v) = model.graph.inputs.iter().find(|v| v.name() == self.input) else {
            let names: Vec<&str> = model.graph.inputs.iter().map(|v| v.name()).collect();
            return Err(format!(
                "the graph has no input '{}' (its inputs: {})",
                self.input,
                names.join(", ")
            ));
        };
        let dims: Option<Vec<Option<i64>>> = match v.r#type.as_ref().and_then(|t| t.value.as_ref())
        {
            Some(type_proto::Value::TensorType(t)) => t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Value::DimValue(n)) if n > 0 => Some(n),
                        _ => None,
                    })
                    .collect()
            }),
            _ => None,
        };
        // An input without a declared shape takes whatever the profile says.
        let Some(dims) = dims else { return Ok(()) };
        if dims.len() != self.opt.len() {
            return Err(format!(
                "input '{}' has rank {} in the graph, the profile {:?} has rank {}",
                self.input,
                dims.len(),
                self.opt,
                self.opt.len()
            ));
        }
        for (i, d) in dims.iter().enumerate() {
            if let Some(fixed) = *d {
                for (what, shape) in [("min", &self.min), ("opt", &self.opt), ("max", &self.max)] {
                    if shape[i] != fixed {
                        return Err(format!(
                            "input '{}' dimension {i} is fixed at {fixed} in the graph, but input.{what} says {} ({:?})",
                            self.input, shape[i], shape
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What changes an engine's content: these settings go into the manifest and the rebuild key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSettings {
    pub precision: Precision,
    pub typing: Typing,
    pub workspace_mib: u64,
    pub optimization_level: u8,
    pub profile: Profile,
}

/// One engine to build.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineJob {
    /// The ONNX graph TensorRT parses.
    pub onnx: PathBuf,
    /// The legacy calibration cache the INT8 calibrator serves (legacy INT8 only).
    pub calibration_cache: Option<PathBuf>,
    /// Calibration data hashed into the manifest: the cache, for either INT8 form (the Q/DQ graph holds
    /// the same scales).
    pub calibration: Option<PathBuf>,
    pub engine: PathBuf,
    pub timing_cache: PathBuf,
    pub settings: BuildSettings,
}

/// The engine file name for a precision: `model.fp16.engine`.
pub fn engine_file(p: Precision) -> String {
    format!("model.{}.engine", precision_name(p))
}

/// The engines a recipe asks for, in the order fp32, fp16, int8. `fp32_graph` is the file name of the
/// FP32 graph `compile` wrote into `out_dir` (the fused one when fusion ran).
pub fn plan(recipe: &Recipe, out_dir: &Path, fp32_graph: &str) -> Vec<EngineJob> {
    let spec = &recipe.file.engine;
    let wanted: Vec<Precision> = match &spec.precisions {
        Some(list) => list.clone(),
        None => {
            let mut v = vec![Precision::Fp32];
            v.extend(recipe.file.precisions.iter().copied());
            v
        }
    };
    let typing = if spec.legacy {
        Typing::LegacyWeak
    } else {
        Typing::StronglyTyped
    };
    let timing_cache = recipe
        .engine_timing_cache
        .clone()
        .unwrap_or_else(|| out_dir.join(TIMING_CACHE));
    let profile = Profile::from_range(&recipe.input_name, &recipe.shapes);
    let cache = out_dir.join(CALIBRATION_CACHE);
    // Only precisions whose graph this run makes (`calibrate` narrows `precisions` to int8 after validation).
    let made = |p: &Precision| *p == Precision::Fp32 || recipe.file.precisions.contains(p);
    [Precision::Fp32, Precision::Fp16, Precision::Int8]
        .into_iter()
        .filter(|p| wanted.contains(p) && made(p))
        .map(|precision| {
            let graph = match (typing, precision) {
                (Typing::StronglyTyped, Precision::Fp16) => FP16_MODEL,
                (Typing::StronglyTyped, Precision::Int8) => INT8_MODEL,
                _ => fp32_graph,
            };
            let int8 = precision == Precision::Int8;
            EngineJob {
                onnx: out_dir.join(graph),
                calibration_cache: (int8 && typing == Typing::LegacyWeak).then(|| cache.clone()),
                calibration: int8.then(|| cache.clone()),
                engine: out_dir.join(engine_file(precision)),
                timing_cache: timing_cache.clone(),
                settings: BuildSettings {
                    precision,
                    typing,
                    workspace_mib: spec.workspace_mib,
                    optimization_level: spec.optimization_level,
                    profile: profile.clone(),
                },
            }
        })
        .collect()
}

/// A hint for a failed build, from the error messages TensorRT logged: when they speak of memory, which
/// recipe limits to lower.
pub fn build_failure_hint(messages: &[String], settings: &BuildSettings) -> Option<String> {
    const MEMORY: &[&str] = &[
        "out of memory",
        "outofmemory",
        "cudaerrormemoryallocation",
        "memory allocation",
        "failed to allocate",
        "insufficient memory",
        "requested amount of gpu memory",
        "cudamalloc",
    ];
    let about_memory = messages.iter().any(|m| {
        let m = m.to_ascii_lowercase();
        MEMORY.iter().any(|k| m.contains(k))
    });
    if !about_memory {
        return None;
    }
    let mut hint = format!(
        "the build ran out of memory: lower engine.workspace_mib in the recipe (now {} MiB)",
        settings.workspace_mib
    );
    if !settings.profile.is_static() {
        hint.push_str(&format!(
            " or the largest input shape input.max (now {:?})",
            settings.profile.max
        ));
    }
    if settings.optimization_level > 0 {
        hint.push_str(&format!(
            ", or engine.optimization_level (now {}) to try fewer tactics",
            settings.optimization_level
        ));
    }
    hint.push_str(
        "; other processes on the device (a desktop, a running daemon) use the same memory",
    );
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(extra: &str) -> Result<Recipe, crate::recipe::RecipeError> {
        Recipe::parse(
            &format!("model: m.onnx\ninput: {{name: input, shape: [1,3,64,128]}}\nprecisions: [fp16, int8]\ncalibration: {{data: cal}}\n{extra}"),
            "r.yaml",
            Path::new("/r"),
        )
    }

    #[test]
    fn engine_section_defaults_and_errors_name_the_field() {
        let r = recipe("").unwrap();
        assert_eq!(r.file.engine, EngineSpec::default());
        assert_eq!(r.engine_timing_cache, None);
        let r = recipe(
            "engine: {workspace_mib: 512, optimization_level: 5, timing_cache: tc/t.cache}\n",
        )
        .unwrap();
        assert_eq!(r.file.engine.workspace_mib, 512);
        assert_eq!(r.engine_timing_cache, Some(PathBuf::from("/r/tc/t.cache")));
        for (extra, field) in [
            ("engine: {workspace_mib: 0}\n", "engine.workspace_mib"),
            (
                "engine: {workspace_mib: 100000000}\n",
                "engine.workspace_mib",
            ),
            (
                "engine: {optimization_level: 6}\n",
                "engine.optimization_level",
            ),
            ("engine: {precisions: []}\n", "engine.precisions"),
            ("engine: {workspace: 1}\n", "workspace"),
        ] {
            let e = recipe(extra).unwrap_err().to_string();
            assert!(e.contains(field), "{extra}: {e}");
        }
        let e = Recipe::parse(
            "model: m.onnx\ninput: {name: input, shape: [1,3,64,128]}\nprecisions: [fp16]\nengine: {precisions: [int8]}\n",
            "r.yaml",
            Path::new("/r"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("engine.precisions") && e.contains("int8"), "{e}");
    }

    #[test]
    fn plan_picks_the_graph_per_precision_and_typing() {
        let r = recipe("").unwrap();
        let out = Path::new("/o");
        let jobs = plan(&r, out, "model.fused.onnx");
        let got: Vec<(Precision, &Path, bool)> = jobs
            .iter()
            .map(|j| {
                (
                    j.settings.precision,
                    j.onnx.as_path(),
                    j.calibration_cache.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Precision::Fp32, Path::new("/o/model.fused.onnx"), false),
                (Precision::Fp16, Path::new("/o/model.fp16.onnx"), false),
                (Precision::Int8, Path::new("/o/model.int8.qdq.onnx"), false),
            ]
        );
        assert_eq!(jobs[2].calibration, Some(out.join("calibration.cache")));
        assert_eq!(jobs[1].engine, out.join("model.fp16.engine"));
        assert_eq!(jobs[0].timing_cache, out.join("timing.cache"));
        assert!(jobs
            .iter()
            .all(|j| j.settings.typing == Typing::StronglyTyped));
        assert_eq!(jobs[0].settings.profile.opt, vec![1, 3, 64, 128]);
        assert!(jobs[0].settings.profile.is_static());

        // Legacy: every engine from the FP32 graph; INT8 serves the calibration cache.
        let r = recipe("engine: {legacy: true, precisions: [int8, fp16]}\n").unwrap();
        let jobs = plan(&r, out, "model.simplified.onnx");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].settings.precision, Precision::Fp16);
        assert!(jobs
            .iter()
            .all(|j| j.onnx == out.join("model.simplified.onnx")
                && j.settings.typing == Typing::LegacyWeak));
        assert_eq!(
            jobs[1].calibration_cache,
            Some(out.join("calibration.cache"))
        );
        assert_eq!(jobs[0].calibration_cache, None);

        // `calibrate` makes only the INT8 graph: no FP16 engine is planned even when asked for.
        let mut r = recipe("engine: {precisions: [fp16, int8]}\n").unwrap();
        r.file.precisions = vec![Precision::Int8];
        let jobs = plan(&r, out, "model.fused.onnx");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].settings.precision, Precision::Int8);
    }

    #[test]
    fn dynamic_profile_comes_from_min_opt_max() {
        let r = Recipe::parse(
            "model: m.onnx\ninput: {name: x, min: [1,3,256,512], opt: [1,3,512,1024], max: [2,3,1024,2048]}\nprecisions: [fp16]\n",
            "r.yaml",
            Path::new("/r"),
        )
        .unwrap();
        let jobs = plan(&r, Path::new("/o"), "m.onnx");
        let p = &jobs[0].settings.profile;
        assert_eq!(p.input, "x");
        assert_eq!(
            (p.min.clone(), p.opt.clone(), p.max.clone()),
            (
                vec![1, 3, 256, 512],
                vec![1, 3, 512, 1024],
                vec![2, 3, 1024, 2048]
            )
        );
        assert!(!p.is_static());
    }

    #[test]
    fn memory_failures_say_which_limit_to_lower() {
        let r = Recipe::parse(
            "model: m.onnx\ninput: {name: x, min: [1,3,256,512], opt: [1,3,512,1024], max: [1,3,1024,2048]}\nprecisions: [fp16]\nengine: {workspace_mib: 4096}\n",
            "r.yaml",
            Path::new("/r"),
        )
        .unwrap();
        let s = &plan(&r, Path::new("/o"), "m.onnx")[0].settings;
        let oom = vec!["[runner.cpp::execute] Error Code 2: OutOfMemory (Requested size was 4294967296 bytes.)".to_string()];
        let h = build_failure_hint(&oom, s).unwrap();
        assert!(
            h.contains("engine.workspace_mib") && h.contains("4096 MiB"),
            "{h}"
        );
        assert!(h.contains("input.max") && h.contains("2048"), "{h}");
        let other = vec!["Error Code 4: API Usage Error (network has no outputs)".to_string()];
        assert_eq!(build_failure_hint(&other, s), None);
    }
}
