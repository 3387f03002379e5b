//! `compile` over an output folder that already holds a build: what a failed run leaves, and recipe
//! mistakes caught before the long stages.

mod common;

use common::{ocrnet, stderr};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (names relative to it, hidden ones included) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    files
}

/// A Cityscapes-layout root whose train split is the sample's and whose val split is one image that is
/// not a PNG: calibration succeeds, the accuracy pass (the last stage before the engines) fails.
fn data_with_a_corrupt_val_image(dir: &Path) -> PathBuf {
    let sample = root().join("calibration/sample");
    let data = dir.join("data");
    for kind in ["leftImg8bit", "gtFine"] {
        std::fs::create_dir_all(data.join(kind).join("val/frankfurt")).unwrap();
        std::os::unix::fs::symlink(
            sample.join(kind).join("train"),
            data.join(kind).join("train"),
        )
        .unwrap();
    }
    let stem = "frankfurt_000000_000000";
    std::fs::write(
        data.join(format!("leftImg8bit/val/frankfurt/{stem}_leftImg8bit.png")),
        b"\x89PNG\r\n\x1a\n not really",
    )
    .unwrap();
    std::fs::copy(
        sample.join(format!("gtFine/val/frankfurt/{stem}_gtFine_labelIds.png")),
        data.join(format!("gtFine/val/frankfurt/{stem}_gtFine_labelIds.png")),
    )
    .unwrap();
    data
}

/// `compile RECIPE --out OUT`.
fn compile(recipe: &Path, out: &Path) -> Output {
    ocrnet(&[
        "compile",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn recipe(dir: &Path, name: &str, data: &Path, extra: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "model: {:?}\ninput: {{name: input, shape: [1, 3, 128, 256]}}\nverify: false\n\
             calibration: {{data: {:?}, images: 4}}\n{extra}",
            root().join("models/sample/model.onnx"),
            data,
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_compile_that_fails_late_leaves_the_previous_build_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let good = recipe(
        dir.path(),
        "good.yaml",
        &root().join("calibration/sample"),
        "precisions: [fp16]\naccuracy: {images: 2}\n",
    );
    let o = compile(&good, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&out);
    assert!(before.contains_key(Path::new("manifest.json")));
    assert!(before.contains_key(Path::new("model.fp16.onnx")));

    // Adds INT8, so a run that wrote in place would leave a Q/DQ graph, a cache and scales behind.
    let data = data_with_a_corrupt_val_image(dir.path());
    let bad = recipe(
        dir.path(),
        "bad.yaml",
        &data,
        "precisions: [fp16, int8]\naccuracy: {images: 2}\n",
    );
    let o = compile(&bad, &out);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("calibrating INT8"),
        "failed before the long stages: {err}"
    );
    assert!(
        err.contains("measuring accuracy")
            && err.contains("frankfurt_000000_000000_leftImg8bit.png"),
        "{err}"
    );
    let after = snapshot(&out);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no file added or removed, no staging folder left"
    );
    assert!(
        after == before,
        "every file byte for byte as the good run left it"
    );

    // A first run into a new folder that fails leaves no folder.
    let fresh = dir.path().join("fresh");
    let o = compile(&bad, &fresh);
    assert_eq!(o.status.code(), Some(1));
    assert!(!fresh.exists());
}

#[test]
fn a_wrong_class_count_is_refused_before_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "r.yaml",
        &root().join("calibration/sample"),
        "num_classes: 7\n",
    );
    let out = dir.path().join("out");
    let o = compile(&r, &out);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("field 'num_classes': 7") && err.contains("has 19 channels"),
        "{err}"
    );
    assert!(!err.contains("calibrating INT8"), "{err}");
    assert!(!out.exists());

    // Without an accuracy pass nothing scores classes, and the count is not checked.
    let r = recipe(
        dir.path(),
        "r2.yaml",
        &root().join("calibration/sample"),
        "num_classes: 7\nprecisions: [fp16]\naccuracy: {images: 0}\n",
    );
    let o = compile(&r, &out);
    assert!(o.status.success(), "{}", stderr(&o));
}
