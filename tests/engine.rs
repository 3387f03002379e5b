//! Engine builds and loads without TensorRT: a fake builder stands where the TensorRT bridge goes, so the
//! rebuild key, the skip and `--force`, the manifest, the atomic writes, the timing cache round trip, the
//! legacy cache serving and the load-time refusals are all exercised on real graphs.

mod common;

use common::{fixture, ocrnet};
use ocrnet_edge::calib::{cache, ScaleTable};
use ocrnet_edge::engine::manifest::{self, Device, EngineManifest};
use ocrnet_edge::engine::settings::plan;
use ocrnet_edge::engine::{
    build_engine, check_for_load, BuildInputs, Built, EngineBuilder, EngineError, EngineJob,
    Outcome, Platform, TrtVersion,
};
use ocrnet_edge::recipe::{Precision, Recipe};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// Stands in for TensorRT: the "plan" names the job, the timing cache grows by one byte per build, and
/// every call is recorded.
struct Fake {
    platform: Platform,
    calls: RefCell<Vec<(Precision, BuildInputs)>>,
}

impl Fake {
    fn new(trt: u32, device: &str, cc: [u32; 2]) -> Self {
        Fake {
            platform: Platform {
                tensorrt: TrtVersion::from_code(trt),
                device: Device {
                    name: device.into(),
                    compute_capability: cc,
                },
                l4t: Some("36.4.3".into()),
                jetpack: Some("6.2".into()),
            },
            calls: RefCell::new(Vec::new()),
        }
    }

    fn orin() -> Self {
        Fake::new(100300, "Orin", [8, 7])
    }

    fn builds(&self) -> usize {
        self.calls.borrow().len()
    }
}

impl EngineBuilder for Fake {
    fn platform(&self) -> Result<Platform, EngineError> {
        Ok(self.platform.clone())
    }

    fn build(&self, job: &EngineJob, inputs: &BuildInputs) -> Result<Built, EngineError> {
        self.calls
            .borrow_mut()
            .push((job.settings.precision, inputs.clone()));
        let mut timing = inputs.timing_cache.clone();
        timing.push(b'+');
        Ok(Built {
            plan: format!(
                "plan {:?} {} {}",
                job.settings.precision,
                job.settings.workspace_mib,
                self.builds()
            )
            .into_bytes(),
            timing_cache: timing,
        })
    }
}

/// A recipe over the sample model, written into `dir` with the sample model as the FP32 graph of a
/// finished `compile` (the builder is fake, so only the graph file matters).
fn setup(dir: &Path, precisions: &str, engine: &str) -> (Recipe, PathBuf) {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/sample/model.onnx");
    std::fs::copy(&sample, out.join("model.fused.onnx")).unwrap();
    std::fs::copy(&sample, dir.join("model.onnx")).unwrap();
    let text = format!(
        "model: model.onnx\ninput: {{name: input, shape: [1, 3, 128, 256]}}\nprecisions: [{precisions}]\n{engine}"
    );
    (Recipe::parse(&text, "r.yaml", dir).unwrap(), out)
}

fn fp32_job(recipe: &Recipe, out: &Path) -> EngineJob {
    plan(recipe, out, "model.fused.onnx").remove(0)
}

#[test]
fn build_writes_engine_and_manifest_then_skips_until_inputs_change_or_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, out) = setup(dir.path(), "fp16", "engine: {workspace_mib: 1024}\n");
    let job = fp32_job(&recipe, &out);
    assert_eq!(job.settings.precision, Precision::Fp32);
    let fake = Fake::orin();

    let r = build_engine(&job, &fake, false).unwrap();
    assert_eq!(r.outcome, Outcome::Built);
    assert_eq!(r.engine, out.join("model.fp32.engine"));
    let plan_bytes = std::fs::read(&r.engine).unwrap();
    assert_eq!(plan_bytes, b"plan Fp32 1024 1");
    assert_eq!(std::fs::read(out.join("timing.cache")).unwrap(), b"+");
    // No temporary files are left behind.
    let stray: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    let m = EngineManifest::read(&r.manifest).unwrap();
    assert_eq!(r.manifest, out.join("model.fp32.engine.json"));
    assert_eq!(m.schema, manifest::ENGINE_MANIFEST_SCHEMA);
    assert_eq!(m.precision, Precision::Fp32);
    assert_eq!(m.platform.tensorrt.to_string(), "10.3.0");
    assert_eq!(m.platform.device.name, "Orin");
    assert_eq!(m.platform.jetpack.as_deref(), Some("6.2"));
    assert_eq!(m.settings.workspace_mib, 1024);
    assert_eq!(m.outputs, vec!["aux".to_string(), "out".to_string()]);
    assert_eq!(m.settings.profile.opt, vec![1, 3, 128, 256]);
    let (_, graph_hash) = ocrnet_edge::fsutil::hash_file(&out.join("model.fused.onnx")).unwrap();
    assert_eq!(m.inputs.onnx[0].blake3, graph_hash);
    assert_eq!(m.inputs.plugin_library, manifest::plugin_library());
    assert_eq!(m.inputs.calibration, None);
    assert_eq!(m.engine.path, "model.fp32.engine");
    assert_eq!(
        m.engine.blake3,
        ocrnet_edge::fsutil::hash_bytes(&plan_bytes)
    );

    // Same inputs: skipped, nothing rewritten.
    let r = build_engine(&job, &fake, false).unwrap();
    assert_eq!(r.outcome, Outcome::UpToDate);
    assert_eq!(fake.builds(), 1);
    assert_eq!(std::fs::read(&r.engine).unwrap(), plan_bytes);

    // --force: rebuilt, and the timing cache of the first build was handed back.
    let r = build_engine(&job, &fake, true).unwrap();
    assert_eq!(r.outcome, Outcome::Built);
    assert_eq!(fake.builds(), 2);
    assert_eq!(fake.calls.borrow()[1].1.timing_cache, b"+");
    assert_eq!(std::fs::read(out.join("timing.cache")).unwrap(), b"++");

    // A changed setting changes the key.
    let mut changed = job.clone();
    changed.settings.optimization_level = 5;
    assert_eq!(
        build_engine(&changed, &fake, false).unwrap().outcome,
        Outcome::Built
    );
    assert_eq!(fake.builds(), 3);
    assert_eq!(
        build_engine(&changed, &fake, false).unwrap().outcome,
        Outcome::UpToDate
    );

    // A changed graph too (another model of the same input shape).
    std::fs::copy(
        fixture("legacy_static_opset13"),
        out.join("model.fused.onnx"),
    )
    .unwrap();
    let mut small = changed.clone();
    small.settings.profile.min = vec![2, 3, 64, 128];
    small.settings.profile.opt = vec![2, 3, 64, 128];
    small.settings.profile.max = vec![2, 3, 64, 128];
    assert_eq!(
        build_engine(&small, &fake, false).unwrap().outcome,
        Outcome::Built
    );
    assert_eq!(fake.builds(), 4);

    // So does another TensorRT.
    let newer = Fake::new(100700, "Orin", [8, 7]);
    assert_eq!(
        build_engine(&small, &newer, false).unwrap().outcome,
        Outcome::Built
    );

    // An engine whose bytes no longer match its manifest is rebuilt even with the same key.
    std::fs::write(&small.engine, b"damaged").unwrap();
    assert_eq!(
        build_engine(&small, &newer, false).unwrap().outcome,
        Outcome::Built
    );
}

#[test]
fn load_check_refuses_another_tensorrt_another_device_and_changed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, out) = setup(dir.path(), "fp16", "");
    let job = fp32_job(&recipe, &out);
    let fake = Fake::orin();
    let engine = build_engine(&job, &fake, false).unwrap().engine;

    let m = check_for_load(&engine, &fake.platform).unwrap();
    assert_eq!(m.precision, Precision::Fp32);

    let e = check_for_load(&engine, &Fake::new(100700, "Orin", [8, 7]).platform)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.fp32.engine")
            && e.contains("TensorRT 10.3.0")
            && e.contains("TensorRT 10.7.0"),
        "{e}"
    );

    let e = check_for_load(&engine, &Fake::new(100300, "NVIDIA H200", [9, 0]).platform)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Orin (sm_87)") && e.contains("NVIDIA H200 (sm_90)"),
        "{e}"
    );

    // Same compute capability, another device name: still refused (TensorRT tuned for the other one).
    let e = check_for_load(&engine, &Fake::new(100300, "Orin Nano", [8, 7]).platform)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Orin Nano"), "{e}");

    let mut bytes = std::fs::read(&engine).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&engine, &bytes).unwrap();
    let e = check_for_load(&engine, &fake.platform)
        .unwrap_err()
        .to_string();
    assert!(e.contains("replaced or damaged"), "{e}");

    std::fs::remove_file(manifest::manifest_path(&engine)).unwrap();
    let e = check_for_load(&engine, &fake.platform)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no manifest"), "{e}");

    std::fs::write(manifest::manifest_path(&engine), "{\"schema\": 3}").unwrap();
    let e = check_for_load(&engine, &fake.platform)
        .unwrap_err()
        .to_string();
    assert!(e.contains("engine manifest"), "{e}");
}

#[test]
fn legacy_int8_serves_the_compile_cache_and_is_refused_on_tensorrt_11() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, out) = setup(
        dir.path(),
        "fp16, int8",
        "calibration: {data: cal}\nengine: {legacy: true, precisions: [int8]}\n",
    );
    let jobs = plan(&recipe, &out, "model.fused.onnx");
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.onnx, out.join("model.fused.onnx"));

    // A cache with two of the graph's activations, as `compile` writes it.
    let model = ocrnet_edge::onnx::load(&job.onnx).unwrap();
    let acts = ocrnet_edge::engine::legacy::graph_activations(&model);
    assert!(acts.contains("input"), "{acts:?}");
    let mut table = ScaleTable::default();
    table.insert("input", 2.5);
    table.insert(acts.iter().nth(1).unwrap(), 40.0);
    let text = cache::write(&table, cache::TRT_10_3);
    std::fs::write(out.join("calibration.cache"), &text).unwrap();

    let fake = Fake::orin();
    let r = build_engine(job, &fake, false).unwrap();
    assert_eq!(r.outcome, Outcome::Built);
    assert_eq!(r.uncalibrated_tensors, acts.len() - 2);
    let served = fake.calls.borrow()[0].1.calibration_cache.clone().unwrap();
    assert_eq!(String::from_utf8(served).unwrap(), text);
    let m = EngineManifest::read(&r.manifest).unwrap();
    assert_eq!(
        m.inputs.calibration.unwrap().blake3,
        ocrnet_edge::fsutil::hash_bytes(text.as_bytes())
    );

    // A changed cache is a changed input.
    table.insert("input", 3.0);
    std::fs::write(
        out.join("calibration.cache"),
        cache::write(&table, cache::TRT_10_3),
    )
    .unwrap();
    assert_eq!(
        build_engine(job, &fake, false).unwrap().outcome,
        Outcome::Built
    );

    let e = build_engine(job, &Fake::new(110100, "Orin", [8, 7]), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("engine.legacy") && e.contains("11.1.0"), "{e}");

    // Without the cache the legacy INT8 build cannot start, and says which file is missing.
    std::fs::remove_file(out.join("calibration.cache")).unwrap();
    let e = build_engine(job, &fake, true).unwrap_err().to_string();
    assert!(e.contains("calibration.cache"), "{e}");
}

#[test]
fn a_profile_that_disagrees_with_the_graph_is_refused_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, out) = setup(dir.path(), "fp16", "");
    let mut job = fp32_job(&recipe, &out);
    job.settings.profile.max = vec![1, 3, 256, 256];
    let fake = Fake::orin();
    let e = build_engine(&job, &fake, false).unwrap_err().to_string();
    assert!(
        e.contains("dimension 2 is fixed at 128") && e.contains("input.max"),
        "{e}"
    );
    assert_eq!(fake.builds(), 0);

    // A dynamic graph takes a range.
    std::fs::copy(fixture("legacy_dynamic_opset17"), &job.onnx).unwrap();
    job.settings.profile.min = vec![1, 3, 64, 128];
    job.settings.profile.opt = vec![1, 3, 96, 160];
    job.settings.profile.max = vec![2, 3, 128, 256];
    assert_eq!(
        build_engine(&job, &fake, false).unwrap().outcome,
        Outcome::Built
    );

    job.settings.profile.input = "image".into();
    let e = build_engine(&job, &fake, false).unwrap_err().to_string();
    assert!(e.contains("no input 'image'") && e.contains("input"), "{e}");
}

#[cfg(not(feature = "tensorrt"))]
#[test]
fn asking_for_tensorrt_without_it_is_a_clear_error() {
    use ocrnet_edge::runtime::{open, BackendError, BackendKind};
    let err = open(
        BackendKind::Trt,
        Path::new("model.fp16.engine"),
        Default::default(),
    )
    .err()
    .expect("no TensorRT in this build");
    assert!(matches!(err, BackendError::NotBuilt("trt")));
    assert!(err.to_string().contains("--features tensorrt"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ocrnet-edge"))
        .args(["bench", "engine", "model.fp16.engine", "--runs", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bench engine needs a build with TensorRT"),
        "{stderr}"
    );
}

/// `agree` is what the Jetson smoke test gates each engine with; here both sides run on the CPU.
#[test]
fn agree_passes_a_model_against_itself_and_fails_below_min() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sample = root.join("models/sample/model.onnx");
    let images = root.join("calibration/sample/leftImg8bit/val");
    let (s, i) = (sample.to_str().unwrap(), images.to_str().unwrap());
    let out = ocrnet(&[
        "agree",
        s,
        "--backend",
        "cpu",
        "--reference",
        s,
        "--images",
        i,
        "--limit",
        "2",
        "--min",
        "0.999",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"], 2);
    assert_eq!(v["agreement"], 1.0);
    assert_eq!(v["pass"], true);

    // Another network (the 64x128 fixture) disagrees on most pixels: exit 1, and the reason on stderr.
    let other = fixture("legacy_static_opset11");
    let out = ocrnet(&[
        "agree",
        s,
        "--backend",
        "cpu",
        "--reference",
        other.to_str().unwrap(),
        "--images",
        i,
        "--limit",
        "1",
        "--min",
        "0.99",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("below --min 0.99"), "{stderr}");
}

#[cfg(not(feature = "tensorrt"))]
#[test]
fn run_and_agree_on_trt_without_tensorrt_say_what_is_missing() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let image = root.join(
        "calibration/sample/leftImg8bit/val/frankfurt/frankfurt_000000_000057_leftImg8bit.png",
    );
    let out = ocrnet(&[
        "run",
        "--backend",
        "trt",
        "model.fp16.engine",
        "--input",
        image.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'trt' backend is not in this build"),
        "{stderr}"
    );
}
