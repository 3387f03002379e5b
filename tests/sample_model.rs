//! The trained sample model (models/sample, made by models/train_sample_model.py): the executor must
//! reproduce onnxruntime's outputs on the golden val image within relative L2 1e-5, and the Rust data
//! path (Cityscapes reader + HRNet preprocessing) must feed it nearly the same tensor the training
//! script did.

mod common;

use common::rel_l2;
use ocrnet_edge::data::{Dataset, ImageLimits};
use ocrnet_edge::exec::{ExecOptions, Executor};
use ocrnet_edge::onnx;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The bound the executor issue sets for float32 against onnxruntime.
const REL_L2: f64 = 1e-5;

fn sample_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/sample")
}

#[test]
fn trained_sample_model_matches_onnxruntime() {
    let dir = sample_dir();
    let model = onnx::load(&dir.join("model.onnx")).unwrap();
    let exec = Executor::new(
        &model,
        ExecOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let input = ocrnet_edge::npy::read(&dir.join("input.npy")).unwrap();
    assert_eq!(input.shape, vec![1, 3, 128, 256]);
    let outputs = exec
        .run(HashMap::from([("input".to_string(), input)]), &[], None)
        .unwrap();
    for name in ["aux", "out"] {
        let want = ocrnet_edge::npy::read(&dir.join(format!("{name}.npy"))).unwrap();
        assert_eq!(want.shape, vec![1, 19, 32, 64]);
        let err = rel_l2(&outputs[name], &want);
        eprintln!("sample/{name}: relative L2 {err:.3e}");
        assert!(
            err <= REL_L2,
            "sample/{name}: relative L2 {err:.3e} > {REL_L2:e}"
        );
    }
}

#[test]
fn rust_preprocessing_of_the_golden_image_is_close_to_the_training_scripts() {
    let dir = sample_dir();
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join(case["golden_image"].as_str().unwrap());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/sample");
    let ds = Dataset::cityscapes(&root, "val").unwrap();
    let sample = ds.samples.iter().find(|s| s.image == image).unwrap();
    let loaded = ds
        .load(sample, Some((128, 256)), ImageLimits::default())
        .unwrap();
    let want = ocrnet_edge::npy::read(&dir.join("input.npy")).unwrap();
    // Both resize 256x512 -> 128x256 with a triangle (antialiased bilinear) filter; only rounding to
    // 8 bits in the image crate's resize differs.
    let err = rel_l2(&loaded.input, &want);
    eprintln!("Rust vs Python preprocessing: relative L2 {err:.3e}");
    assert!(
        err < 1e-2,
        "Rust vs Python preprocessing: relative L2 {err:.3e}"
    );
}
