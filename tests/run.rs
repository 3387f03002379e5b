//! `run` as a user meets it: golden logits, class maps, and inputs it must not take quietly.

mod common;

use common::*;

#[test]
fn run_writes_logits_matching_onnxruntime_and_a_class_map() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("legacy_static_opset11");
    let case = model.parent().unwrap();
    let logits = dir.path().join("out.npy");
    let map = dir.path().join("map.png");
    let out = ocrnet(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        case.join("input.npy").to_str().unwrap(),
        "--logits",
        logits.to_str().unwrap(),
        "--output",
        map.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = ocrnet_edge::npy::read(&logits).unwrap();
    let want = ocrnet_edge::npy::read(&case.join("out.npy")).unwrap();
    assert_eq!(got.shape, want.shape, "the main output, unchanged in shape");
    assert!(rel_l2(&got, &want) < 1e-5);
    // The class map has the input tensor's size (64x128), each pixel a trainId.
    let img = image::open(&map).unwrap();
    assert_eq!((img.width(), img.height()), (128, 64));

    // A corrupt image is an error naming it.
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = ocrnet(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.png"), "{}", stderr(&out));

    // A tensor of the wrong element type names both types as ONNX spells them.
    let ints = dir.path().join("ints.npy");
    let mut t = ocrnet_edge::npy::read(&case.join("input.npy")).unwrap();
    t.data = ocrnet_edge::tensor::Data::I64(vec![0; t.len()]);
    ocrnet_edge::npy::write(&ints, &t).unwrap();
    let out = ocrnet(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        ints.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("'input'") && err.contains("Int64") && err.contains("declares Float"),
        "{err}"
    );
}

#[test]
fn run_warns_about_nonfinite_logits_and_refuses_absurd_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("legacy_static_opset11");
    let mut t = ocrnet_edge::npy::read(&model.parent().unwrap().join("input.npy")).unwrap();
    let mut values = t.as_f32s();
    values[0] = f32::NAN;
    t.data = ocrnet_edge::tensor::Data::F32(values);
    let nan = dir.path().join("nan.npy");
    ocrnet_edge::npy::write(&nan, &t).unwrap();
    let args = [
        "run",
        model.to_str().unwrap(),
        "--input",
        nan.to_str().unwrap(),
    ];
    let out = ocrnet(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The convolutions spread the one NaN; how far depends on the receptive field, so only "some".
    let n = report["nonfinite_logits"].as_u64().unwrap();
    assert!(n > 0, "{report}");
    assert!(stderr(&out).contains("NaN/inf"), "{}", stderr(&out));

    let out = ocrnet(&[&args[..], &["--threads", "100000"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at most 1024"), "{}", stderr(&out));
}
