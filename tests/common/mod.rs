//! Shared test helpers: fixture paths and tiny hand-built models.
#![allow(dead_code)]

use ocrnet_edge::onnx::proto::{
    tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::path::PathBuf;

pub const FIXTURES: [&str; 6] = [
    "legacy_static_opset11",
    "legacy_static_opset13",
    "legacy_dynamic_opset17",
    "dynamo_static_opset18",
    "dynamo_dynamic_opset18",
    "legacy_static_mmseg_opset13",
];

pub fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/fixtures")
        .join(case)
        .join("model.onnx")
}

pub fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(
            values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        ),
        ..Default::default()
    }
}

/// y = Relu(x + w), with a 4-element weight: the smallest model with an initializer.
pub fn tiny_model(weight_len: usize) -> ModelProto {
    let w: Vec<f32> = (0..weight_len).map(|i| i as f32 * 0.5 - 1.0).collect();
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("ocrnet-edge-tests".into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            name: Some("tiny".into()),
            node: vec![
                node("add", "Add", &["x", "w"], &["s"]),
                node("relu", "Relu", &["s"], &["y"]),
            ],
            initializer: vec![f32_tensor("w", &[weight_len as i64], &w)],
            input: vec![value("x", &[weight_len as i64])],
            output: vec![value("y", &[weight_len as i64])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Relative L2 error of `got` against `want` (same shape), in f64.
pub fn rel_l2(got: &ocrnet_edge::tensor::Tensor, want: &ocrnet_edge::tensor::Tensor) -> f64 {
    assert_eq!(got.shape, want.shape);
    let (g, w) = (got.as_f32s(), want.as_f32s());
    let num: f64 = g
        .iter()
        .zip(&w)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = w.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den).sqrt()
}

pub fn write_proto(dir: &std::path::Path, name: &str, model: &ModelProto) -> PathBuf {
    use prost::Message;
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

/// Runs the `ocrnet-edge` binary this test build made.
pub fn ocrnet(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ocrnet-edge"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
