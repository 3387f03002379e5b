//! Recipes: what to compile, in YAML. Parsed strictly (unknown fields are errors naming the field), then
//! validated into a [`Recipe`] whose paths are resolved against the recipe's own folder.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The recipe compiled into the binary, used when `compile` is given none. Its paths are relative to
/// `models/recipes/` of this source tree.
pub const DEFAULT_RECIPE: &str = include_str!("../models/recipes/default.yaml");
/// The embedded recipe's [`Recipe::source_name`].
const EMBEDDED_SOURCE_NAME: &str = "embedded default recipe";
/// Where the default recipe's relative paths point.
pub const DEFAULT_RECIPE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/recipes");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecipeError {
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: field '{field}': {message}")]
    Field {
        source_name: String,
        field: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A YAML error as the parser renders it (the message, then the offending line with a caret), without its
/// own `error: ` prefix (the caller's message already has one) and with the file's name where the
/// snippet would say `<input>`.
pub(crate) fn yaml_message(e: &serde_saphyr::Error, source_name: &str) -> String {
    let text = e.to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    text.replace("--> <input>:", &format!("--> {source_name}:"))
}

/// Precisions an engine can be built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

impl Precision {
    /// As recipes, file names and the command line write it: `fp32`, `fp16`, `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }
}

/// The recipe as written in YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    /// The ONNX model, relative to the recipe's folder.
    pub model: PathBuf,
    pub input: InputSpec,
    #[serde(default = "default_classes")]
    pub num_classes: u32,
    #[serde(default = "default_precisions")]
    pub precisions: Vec<Precision>,
    #[serde(default)]
    pub calibration: Option<CalibrationSpec>,
    /// Fuse the OCR gather and attention subgraphs into TensorRT plugin nodes (default true).
    #[serde(default = "yes")]
    pub fuse: bool,
    /// Run the unfused and fused graphs on one probe input and refuse a fusion that changes the outputs
    /// by more than relative L2 1e-5 (default true; costs two CPU forward passes).
    #[serde(default = "yes")]
    pub verify: bool,
    /// Where artifacts go, relative to the recipe's folder unless `--out` overrides it.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// The regression gate of `ocrnet-edge report` (limits in mIoU points; flags override them).
    #[serde(default)]
    pub report: Option<crate::report::Thresholds>,
    /// TensorRT engine builds (feature `tensorrt`): workspace cap, optimisation level, timing cache, legacy
    /// mode, which precisions. See [`crate::engine::settings::EngineSpec`].
    #[serde(default)]
    pub engine: crate::engine::settings::EngineSpec,
    /// The accuracy pass of `compile` and `calibrate` (images of the calibration data's `val` split).
    #[serde(default)]
    pub accuracy: AccuracySpec,
}

/// How much of the labelled `val` split `compile` scores every precision on, and the images the
/// `miou_budget` search and `sensitivity` score candidates on (held in memory). Each image costs one CPU
/// forward pass per graph: Cityscapes' 500 val images at 1024×2048 through HRNet-W48's three graphs take
/// hours on a CI machine, which a compile should not cost by default. `ocrnet-edge report` scores the
/// whole split (or `--images`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracySpec {
    /// Images, spread over the cities as calibration picks them (all of them when the split has fewer);
    /// 0 skips the pass.
    #[serde(default = "default_accuracy_images")]
    pub images: u32,
}

impl Default for AccuracySpec {
    fn default() -> Self {
        AccuracySpec {
            images: default_accuracy_images(),
        }
    }
}

/// The network input: its name and either one static shape or a min/opt/max range for dynamic models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    #[serde(default)]
    pub shape: Option<Vec<i64>>,
    #[serde(default)]
    pub min: Option<Vec<i64>>,
    #[serde(default)]
    pub opt: Option<Vec<i64>>,
    #[serde(default)]
    pub max: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSpec {
    /// A Cityscapes-layout folder or a folder of images, relative to the recipe's folder.
    pub data: PathBuf,
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default = "default_images")]
    pub images: u32,
    /// How the images are picked: `spread` (round-robin over the cities, sorted files), the only policy.
    #[serde(default)]
    pub selection: Selection,
    /// How an activation's range is chosen from its histogram.
    #[serde(default)]
    pub method: CalibrationMethod,
    /// The percentile of |x| for `method: percentile`.
    #[serde(default = "default_percentile")]
    pub percentile: f64,
    /// Search for nodes to keep out of INT8 so the Q/DQ graph loses at most this many mIoU points
    /// against FP32 on the data's labelled `val` split (0.5 = 0.005 absolute mIoU).
    #[serde(default)]
    pub miou_budget: Option<f64>,
    /// Node names never quantized (e.g. the list `calibrate --miou-budget` prints).
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    #[default]
    Spread,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationMethod {
    /// TensorRT's EntropyCalibration2 (smallest KL divergence).
    #[default]
    Entropy,
    Percentile,
    Max,
}

fn yes() -> bool {
    true
}
fn default_classes() -> u32 {
    19
}
fn default_precisions() -> Vec<Precision> {
    vec![Precision::Fp16, Precision::Int8]
}
fn default_output_dir() -> PathBuf {
    PathBuf::from("out")
}
fn default_split() -> String {
    "train".into()
}
fn default_percentile() -> f64 {
    99.99
}
fn default_images() -> u32 {
    32
}
fn default_accuracy_images() -> u32 {
    100
}

/// Input shapes for an optimization profile. A static shape has min = opt = max.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShapeRange {
    pub min: Vec<i64>,
    pub opt: Vec<i64>,
    pub max: Vec<i64>,
}

impl ShapeRange {
    pub fn is_static(&self) -> bool {
        self.min == self.max
    }
}

/// A validated recipe with resolved paths.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Where it came from: a path, or "embedded default recipe".
    pub source_name: String,
    /// The YAML text, for hashing into the manifest.
    pub text: String,
    pub file: RecipeFile,
    pub model: PathBuf,
    pub input_name: String,
    pub shapes: ShapeRange,
    pub calibration_data: Option<PathBuf>,
    pub output_dir: PathBuf,
    /// Whether `compile` measures each precision's accuracy on the calibration data's `val` split (true
    /// from a file; `report`, which measures it itself, turns it off).
    pub measure_accuracy: bool,
    /// `engine.timing_cache` resolved against the recipe's folder (`None`: in the output folder).
    pub engine_timing_cache: Option<PathBuf>,
}

impl Recipe {
    /// Reads and validates a recipe file.
    pub fn load(path: &Path) -> Result<Self, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &path.display().to_string(), &base)
    }

    /// The recipe built into the binary.
    pub fn embedded_default() -> Result<Self, RecipeError> {
        Self::parse(
            DEFAULT_RECIPE,
            EMBEDDED_SOURCE_NAME,
            Path::new(DEFAULT_RECIPE_DIR),
        )
    }

    /// The command line that compiles this recipe, for hints in error messages.
    pub fn compile_command(&self) -> String {
        if self.source_name == EMBEDDED_SOURCE_NAME {
            "ocrnet-edge compile".to_string()
        } else {
            format!("ocrnet-edge compile {}", self.source_name)
        }
    }

    /// Parses YAML text; `base` resolves relative paths.
    pub fn parse(text: &str, source_name: &str, base: &Path) -> Result<Self, RecipeError> {
        let file: RecipeFile = serde_saphyr::from_str(text).map_err(|e| RecipeError::Parse {
            source_name: source_name.to_string(),
            message: yaml_message(&e, source_name),
        })?;
        let field = |field: &str, message: String| RecipeError::Field {
            source_name: source_name.to_string(),
            field: field.to_string(),
            message,
        };
        if file.input.name.is_empty() {
            return Err(field("input.name", "must not be empty".into()));
        }
        let shapes = shape_range(&file.input).map_err(|(f, m)| field(f, m))?;
        if file.num_classes == 0 || file.num_classes > 255 {
            return Err(field(
                "num_classes",
                format!(
                    "{} is out of range: class maps are 8-bit, 1..=255",
                    file.num_classes
                ),
            ));
        }
        if file.precisions.is_empty() {
            return Err(field(
                "precisions",
                "name at least one of fp32, fp16, int8".into(),
            ));
        }
        if let Some(c) = &file.calibration {
            if c.images == 0 {
                return Err(field("calibration.images", "must be at least 1".into()));
            }
            if !(c.percentile > 0.0 && c.percentile <= 100.0) {
                return Err(field(
                    "calibration.percentile",
                    format!("{} is out of range: 0 < percentile <= 100", c.percentile),
                ));
            }
            if let Some(b) = c.miou_budget.filter(|b| !(b.is_finite() && *b >= 0.0)) {
                return Err(field(
                    "calibration.miou_budget",
                    format!("{b} is not a number of mIoU points >= 0"),
                ));
            }
            if c.miou_budget.is_some() && file.accuracy.images == 0 {
                return Err(field(
                    "accuracy.images",
                    "0 leaves calibration.miou_budget no val images to search on".into(),
                ));
            }
        }
        if let Some(t) = &file.report {
            t.validate().map_err(|m| {
                let (name, message) = m.split_once(": ").unwrap_or(("", &m));
                field(&format!("report.{name}"), message.to_string())
            })?;
        }
        crate::engine::settings::validate(&file).map_err(|(f, m)| field(f, m))?;
        Ok(Recipe {
            measure_accuracy: file.accuracy.images > 0,
            source_name: source_name.to_string(),
            text: text.to_string(),
            model: clean(base.join(&file.model)),
            input_name: file.input.name.clone(),
            shapes,
            calibration_data: file.calibration.as_ref().map(|c| clean(base.join(&c.data))),
            output_dir: clean(base.join(&file.output_dir)),
            engine_timing_cache: file
                .engine
                .timing_cache
                .as_ref()
                .map(|p| clean(base.join(p))),
            file,
        })
    }
}

/// Resolved paths are cleaned lexically so that messages and manifests read `out/default`, not
/// `models/recipes/../../out/default`.
fn clean(p: PathBuf) -> PathBuf {
    crate::fsutil::lexical_clean(&p)
}

/// Either `shape`, or all of `min`, `opt` and `max`: same rank, positive, min <= opt <= max.
fn shape_range(input: &InputSpec) -> Result<ShapeRange, (&'static str, String)> {
    let range = match (&input.shape, &input.min, &input.opt, &input.max) {
        (Some(s), None, None, None) => ShapeRange {
            min: s.clone(),
            opt: s.clone(),
            max: s.clone(),
        },
        (None, Some(min), Some(opt), Some(max)) => ShapeRange {
            min: min.clone(),
            opt: opt.clone(),
            max: max.clone(),
        },
        (Some(_), _, _, _) => {
            return Err((
                "input.shape",
                "give either shape or min/opt/max, not both".into(),
            ))
        }
        _ => {
            return Err((
                "input",
                "give a static `shape`, or all three of `min`, `opt` and `max`".into(),
            ))
        }
    };
    for (name, dims) in [
        ("input.min", &range.min),
        ("input.opt", &range.opt),
        ("input.max", &range.max),
    ] {
        if dims.len() != 4 {
            return Err((name, format!("{dims:?} must be NCHW (4 dims)")));
        }
        if dims.iter().any(|&d| d <= 0) {
            return Err((name, format!("{dims:?} has a non-positive dimension")));
        }
        if dims[1] != 3 {
            return Err((
                name,
                format!("{dims:?}: HRNet-OCR takes 3 (RGB) input channels"),
            ));
        }
    }
    let ordered = |a: &[i64], b: &[i64]| a.iter().zip(b).all(|(x, y)| x <= y);
    if !ordered(&range.min, &range.opt) || !ordered(&range.opt, &range.max) {
        return Err((
            "input.opt",
            "each dimension must satisfy min <= opt <= max".into(),
        ));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Recipe, RecipeError> {
        Recipe::parse(text, "test.yaml", Path::new("/r"))
    }

    #[test]
    fn embedded_default_is_valid() {
        let r = Recipe::embedded_default().unwrap();
        assert!(r.shapes.is_static());
        assert!(
            r.model.exists(),
            "default model {} is missing",
            r.model.display()
        );
    }

    #[test]
    fn the_compile_hint_names_a_recipe_file_but_not_the_embedded_one() {
        let embedded = Recipe::embedded_default().unwrap();
        assert_eq!(embedded.compile_command(), "ocrnet-edge compile");
        let r = parse("model: m.onnx\ninput: {name: input, shape: [1, 3, 64, 64]}\n").unwrap();
        assert_eq!(r.compile_command(), "ocrnet-edge compile test.yaml");
    }

    #[test]
    fn dynamic_range_and_paths() {
        let r = parse(
            "model: m.onnx\ninput:\n  name: input\n  min: [1,3,256,512]\n  opt: [1,3,512,1024]\n  max: [1,3,1024,2048]\nprecisions: [fp16]\n",
        )
        .unwrap();
        assert_eq!(r.model, Path::new("/r/m.onnx"));
        assert_eq!(r.shapes.opt, vec![1, 3, 512, 1024]);
        assert!(!r.shapes.is_static());
        assert_eq!(r.file.precisions, vec![Precision::Fp16]);
    }

    #[test]
    fn errors_name_the_field() {
        let unknown =
            parse("model: m.onnx\ninput: {name: input, shape: [1,3,64,64]}\nprecision: [fp16]\n");
        assert!(unknown.unwrap_err().to_string().contains("precision"));
        let bad_prec =
            parse("model: m.onnx\ninput: {name: input, shape: [1,3,64,64]}\nprecisions: [fp8]\n");
        assert!(bad_prec.unwrap_err().to_string().contains("fp8"));
        let order = parse(
            "model: m.onnx\ninput: {name: input, min: [1,3,64,64], opt: [1,3,32,64], max: [1,3,128,128]}\n",
        );
        let e = order.unwrap_err().to_string();
        assert!(e.contains("input.opt") && e.contains("min <= opt"), "{e}");
        let rank = parse("model: m.onnx\ninput: {name: input, shape: [3,64,64]}\n");
        assert!(rank.unwrap_err().to_string().contains("input.min"));
        let classes =
            parse("model: m.onnx\ninput: {name: input, shape: [1,3,64,64]}\nnum_classes: 0\n");
        assert!(classes.unwrap_err().to_string().contains("num_classes"));
        let missing = parse("input: {name: input, shape: [1,3,64,64]}\n");
        assert!(missing.unwrap_err().to_string().contains("model"));
    }

    #[test]
    fn accuracy_images_default_to_100_and_0_skips_the_pass() {
        let base = "model: m.onnx\ninput: {name: input, shape: [1,3,64,64]}\n";
        let r = parse(base).unwrap();
        assert_eq!(r.file.accuracy.images, 100);
        assert!(r.measure_accuracy);
        let r = parse(&format!("{base}accuracy: {{images: 0}}\n")).unwrap();
        assert!(!r.measure_accuracy);
        let e = parse(&format!("{base}accuracy: {{image: 5}}\n")).unwrap_err();
        assert!(e.to_string().contains("image"), "{e}");
        let e = parse(&format!("{base}accuracy: {{images: -1}}\n")).unwrap_err();
        assert!(e.to_string().contains("accuracy"), "{e}");
        let e = parse(&format!(
            "{base}calibration: {{data: d, miou_budget: 0.5}}\naccuracy: {{images: 0}}\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("accuracy.images"), "{e}");
    }
}
