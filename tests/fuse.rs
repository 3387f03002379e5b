//! OCR fusion on the committed fixtures: both rules fire on every exporter, opset, shape mode and head style,
//! the fused graph passes structural validation, and the executor running it (the fused nodes through the
//! C++ reference) reproduces the unfused graph within relative L2 1e-5 — the bound the fusion issue sets.

mod common;

use common::*;
use ocrnet_edge::exec::{ExecOptions, Executor};
use ocrnet_edge::onnx;
use ocrnet_edge::passes::{self, ocr, SimplifyOptions};
use ocrnet_edge::tensor::Tensor;
use std::collections::HashMap;

const REL_L2: f64 = 1e-5;

fn run(model: &onnx::Model, input: &Tensor) -> HashMap<String, Tensor> {
    let exec = Executor::new(model, ExecOptions::default()).unwrap();
    exec.run(
        HashMap::from([("input".to_string(), input.clone())]),
        &[],
        None,
    )
    .unwrap()
}

/// Loads and simplifies a fixture the way `compile` does: static fixtures as they are; the dynamic one
/// left dynamic, so the rules must see through symbolic shapes.
fn simplified(case: &str) -> onnx::Model {
    let mut model = onnx::load(&fixture(case)).unwrap();
    passes::simplify(&mut model, &SimplifyOptions::default()).unwrap();
    model
}

#[test]
fn every_fixture_fuses_both_subgraphs_and_keeps_the_numbers() {
    for case in FIXTURES {
        let path = fixture(case);
        let input = ocrnet_edge::npy::read(&path.parent().unwrap().join("input.npy")).unwrap();
        let plain = simplified(case);
        let mut fused = plain.clone();
        let report = ocr::fuse(&mut fused).unwrap();
        assert_eq!(report.count("OcrSpatialGather"), 1, "{case}: {report:#?}");
        assert_eq!(report.count("OcrObjectAttention"), 1, "{case}: {report:#?}");
        assert!(
            report.near_misses.is_empty(),
            "{case}: {:#?}",
            report.near_misses
        );
        // The Reshape/Transpose/Unsqueeze plumbing around both ops disappears with them.
        let ops = passes::histogram(&fused.graph);
        for gone in ["Softmax", "MatMul", "Transpose"] {
            assert!(!ops.contains_key(gone), "{case}: {gone} left: {ops:?}");
        }
        let v = ocr::validate::validate(&fused).unwrap();
        assert_eq!(v.plugin_nodes, 2, "{case}");

        let want = run(&plain, &input);
        let got = run(&fused, &input);
        for name in ["aux", "out"] {
            let err = rel_l2(&got[name], &want[name]);
            assert!(
                err <= REL_L2,
                "{case}/{name}: fused vs unfused rel L2 {err:.3e}"
            );
        }
    }
}

#[test]
fn fused_models_survive_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = simplified("legacy_static_opset13");
    ocr::fuse(&mut model).unwrap();
    let path = dir.path().join("fused.onnx");
    onnx::save(&model, &path, &Default::default()).unwrap();
    let back = onnx::load(&path).unwrap();
    assert!(back
        .proto
        .opset_import
        .iter()
        .any(|o| o.domain() == "ocrnet" && o.version() == 1));
    let v = ocr::validate::validate(&back).unwrap();
    assert_eq!(v.plugin_nodes, 2);
}

/// `compile`'s check of a fusion (`pipeline::verify_fusion`, limit `FUSION_REL_L2`) passes a correct
/// fusion with room to spare and refuses one that is subtly wrong: the attention's scale off by a factor
/// of two moves the outputs by far more than the limit, which sits above FP32 noise.
#[test]
fn compile_refuses_a_fusion_with_a_wrong_scale() {
    use ocrnet_edge::pipeline::{verify_fusion, PipelineError, FUSION_REL_L2};
    let plain = simplified("legacy_static_opset13");
    let mut fused = plain.clone();
    ocr::fuse(&mut fused).unwrap();
    let shape = [2, 3, 64, 128];
    let ok = verify_fusion(&plain, &fused, "input", &shape).unwrap();
    assert!(ok.worst() < REL_L2, "{}", ok.worst());

    let node = fused
        .graph
        .nodes
        .iter_mut()
        .find(|n| n.op_type() == "OcrObjectAttention")
        .unwrap();
    let scale = node
        .attribute
        .iter_mut()
        .find(|a| a.name() == "scale")
        .unwrap();
    scale.f = Some(scale.f() * 2.0);
    match verify_fusion(&plain, &fused, "input", &shape) {
        Err(PipelineError::FusionChangedOutputs { rel_l2, limit, .. }) => {
            assert_eq!(limit, FUSION_REL_L2);
            // 1.5e-2 here.
            assert!(rel_l2 > 5.0 * FUSION_REL_L2, "{rel_l2:e}");
        }
        other => panic!("a doubled scale must be refused, got {other:?}"),
    }
}
