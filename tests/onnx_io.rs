//! ONNX loading and saving: lossless round trips on every fixture, external data in and out, and clear
//! errors (naming the file and the tensor or node) for every kind of bad input.

mod common;

use common::*;
use ocrnet_edge::onnx::proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto};
use ocrnet_edge::onnx::{self, ExternalPolicy, SaveOptions};
use prost::Message;
use std::path::Path;

fn decode(path: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

fn save(model: &onnx::Model, path: &Path, external: ExternalPolicy) -> onnx::SaveReport {
    onnx::save(
        model,
        path,
        &SaveOptions {
            external,
            durable: true,
        },
    )
    .unwrap()
}

#[test]
fn load_save_load_keeps_everything_on_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    for case in FIXTURES {
        let src = fixture(case);
        let (model, report) = onnx::load_with_report(&src).unwrap();
        assert_eq!(
            report.unaccounted_bytes, 0,
            "{case}: the schema missed fields"
        );
        let out = dir.path().join(format!("{case}.onnx"));
        save(&model, &out, ExternalPolicy::Keep);
        // Decoded independently of our loader, the two files hold the same ModelProto: every node,
        // initializer, attribute, value_info, metadata entry and opset import.
        let (a, b) = (decode(&src), decode(&out));
        assert_eq!(a, b, "{case}: round trip changed the model");
        assert_eq!(
            std::fs::metadata(&src).unwrap().len(),
            std::fs::metadata(&out).unwrap().len(),
            "{case}"
        );
        let again = onnx::load(&out).unwrap();
        assert_eq!(again.graph, model.graph, "{case}");
        assert!(
            !model.graph.nodes.is_empty() && !model.graph.initializers.is_empty(),
            "{case}"
        );
    }
}

#[test]
fn tensor_bytes_are_views_into_the_map() {
    // Zero-copy decoding: every raw_data is a slice of one mapped buffer, so the distance between two
    // tensors in memory equals their distance in the file. Copies into fresh allocations would not line up.
    let path = fixture("legacy_static_opset11");
    let file = std::fs::read(&path).unwrap();
    let model = onnx::load(&path).unwrap();
    let mut big: Vec<&bytes::Bytes> = model
        .graph
        .initializers
        .iter()
        .filter_map(|t| t.raw_data.as_ref())
        .filter(|r| r.len() >= 4096)
        .collect();
    assert!(big.len() >= 2);
    big.truncate(8);
    let find = |needle: &[u8]| {
        file.windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    let (base_ptr, base_off) = (big[0].as_ptr() as isize, find(big[0]) as isize);
    for raw in &big[1..] {
        assert_eq!(
            raw.as_ptr() as isize - base_ptr,
            find(raw) as isize - base_off
        );
    }
    // A clone shares the bytes too.
    let clone = model.clone();
    assert_eq!(
        clone.graph.initializers[0]
            .raw_data
            .as_ref()
            .map(|r| r.as_ptr()),
        model.graph.initializers[0]
            .raw_data
            .as_ref()
            .map(|r| r.as_ptr())
    );
}

#[test]
fn external_data_round_trip_reuses_unchanged_files() {
    let dir = tempfile::tempdir().unwrap();
    let original = onnx::load(&fixture("legacy_static_opset13")).unwrap();
    let a = dir.path().join("a/model.onnx");
    let report = save(
        &original,
        &a,
        ExternalPolicy::Single {
            location: "weights.bin".into(),
            threshold: 1024,
        },
    );
    assert_eq!(report.data_files, vec!["weights.bin".to_string()]);
    let data = dir.path().join("a/weights.bin");
    let inline_len = std::fs::metadata(fixture("legacy_static_opset13"))
        .unwrap()
        .len();
    assert!(
        std::fs::metadata(&a).unwrap().len() < inline_len / 10,
        "large tensors moved out of the model"
    );

    // Loaded back, every tensor has the original bytes and the references are remembered.
    let external = onnx::load(&a).unwrap();
    assert!(external.external_tensors().count() > 10);
    for t in &original.graph.initializers {
        let u = external.graph.initializer(t.name()).unwrap();
        assert_eq!(t.raw_data, u.raw_data, "tensor {}", t.name());
    }

    // Saved into the same folder, the data file is reused, not rewritten.
    let mtime = std::fs::metadata(&data).unwrap().modified().unwrap();
    let same = save(
        &external,
        &dir.path().join("a/model2.onnx"),
        ExternalPolicy::Keep,
    );
    assert_eq!(same.reused_data_files, vec!["weights.bin".to_string()]);
    assert_eq!(std::fs::metadata(&data).unwrap().modified().unwrap(), mtime);
    let proto = decode(&dir.path().join("a/model2.onnx"));
    let ext = proto
        .graph
        .unwrap()
        .initializer
        .iter()
        .filter(|t| t.data_location() == DataLocation::External)
        .count();
    assert_eq!(ext, external.external_tensors().count());

    // Saved elsewhere, the file is placed beside the new model and the model still loads.
    let b = dir.path().join("b/model.onnx");
    let moved = save(&external, &b, ExternalPolicy::Keep);
    assert_eq!(moved.data_files, vec!["weights.bin".to_string()]);
    let from_b = onnx::load(&b).unwrap();
    assert_eq!(
        from_b.graph.initializers.len(),
        original.graph.initializers.len()
    );

    // Inline brings everything back into one file equal to the original.
    let c = dir.path().join("c/model.onnx");
    let inline = save(&from_b, &c, ExternalPolicy::Inline);
    assert!(inline.data_files.is_empty());
    assert!(!dir.path().join("c/weights.bin").exists());
    assert_eq!(decode(&c), decode(&fixture("legacy_static_opset13")));
}

#[test]
fn changed_tensor_is_written_inline_not_into_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny_model(2048);
    let path = dir.path().join("m.onnx");
    let model = onnx::Model::new(
        m.clone(),
        onnx::Graph::from_proto(m.graph.take().unwrap()).unwrap(),
    );
    save(
        &model,
        &path,
        ExternalPolicy::Single {
            location: "d.bin".into(),
            threshold: 16,
        },
    );
    let mut loaded = onnx::load(&path).unwrap();
    let w = &mut loaded.graph.initializers[0];
    let mut bytes = w.raw_data.as_ref().unwrap().to_vec();
    bytes[0] ^= 0xff;
    w.raw_data = Some(bytes.clone().into());
    let out = dir.path().join("m2.onnx");
    save(&loaded, &out, ExternalPolicy::Keep);
    let t = decode(&out).graph.unwrap().initializer.remove(0);
    assert_eq!(t.data_location(), DataLocation::Default);
    assert_eq!(t.raw_data.unwrap().to_vec(), bytes);
}

fn load_err(path: &Path) -> String {
    format!("{:#}", anyhow::Error::from(onnx::load(path).unwrap_err()))
}

#[test]
fn bad_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read(fixture("legacy_static_opset11")).unwrap();

    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &src[..src.len() / 2]).unwrap();
    let e = load_err(&truncated);
    assert!(
        e.contains("truncated.onnx") && e.contains("not an ONNX model"),
        "{e}"
    );

    let random = dir.path().join("random.onnx");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&random, noise).unwrap();
    let e = load_err(&random);
    assert!(
        e.contains("random.onnx") && e.contains("not an ONNX model"),
        "{e}"
    );

    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_err(&empty).contains("empty"));

    let missing = dir.path().join("nope.onnx");
    assert!(load_err(&missing).contains("nope.onnx"));

    // A valid protobuf that is not a model: a TensorProto.
    let tensor = dir.path().join("tensor.pb");
    std::fs::write(&tensor, f32_tensor("t", &[2], &[1.0, 2.0]).encode_to_vec()).unwrap();
    let e = load_err(&tensor);
    assert!(
        e.contains("tensor.pb") && e.contains("not an ONNX model"),
        "{e}"
    );
}

#[test]
fn broken_graphs_name_the_node_or_tensor() {
    let dir = tempfile::tempdir().unwrap();

    let mut m = tiny_model(4);
    m.graph.as_mut().unwrap().node[1].input[0] = "ghost".into();
    let e = load_err(&write_proto(dir.path(), "ghost.onnx", &m));
    assert!(
        e.contains("ghost.onnx") && e.contains("relu") && e.contains("'ghost'"),
        "{e}"
    );

    let mut m = tiny_model(4);
    let g = m.graph.as_mut().unwrap();
    g.node[0].input[0] = "y".into(); // add reads relu's output: a cycle
    let e = load_err(&write_proto(dir.path(), "cycle.onnx", &m));
    assert!(
        e.contains("cycle") && e.contains("add") && e.contains("relu"),
        "{e}"
    );

    let mut m = tiny_model(4);
    m.graph.as_mut().unwrap().initializer[0].data_type = Some(999);
    let e = load_err(&write_proto(dir.path(), "dtype.onnx", &m));
    assert!(
        e.contains("'w'") && e.contains("unknown data type 999"),
        "{e}"
    );

    let mut m = tiny_model(4);
    m.graph.as_mut().unwrap().initializer[0].dims = vec![5];
    let e = load_err(&write_proto(dir.path(), "short.onnx", &m));
    assert!(e.contains("'w'") && e.contains("16 bytes"), "{e}");

    let mut m = tiny_model(4);
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.dims = vec![1 << 32, 1 << 32, 2];
    w.raw_data = None;
    let e = load_err(&write_proto(dir.path(), "huge.onnx", &m));
    assert!(e.contains("'w'") && e.contains("more bytes than"), "{e}");

    let mut m = tiny_model(4);
    m.ir_version = Some(2);
    assert!(load_err(&write_proto(dir.path(), "ir2.onnx", &m)).contains("IR version 2"));
}

fn external_model(dir: &Path, entries: &[(&str, &str)]) -> std::path::PathBuf {
    let mut m = tiny_model(4);
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.raw_data = None;
    t.data_location = Some(DataLocation::External as i32);
    t.external_data = entries
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: Some(k.to_string()),
            value: Some(v.to_string()),
        })
        .collect();
    write_proto(dir, "ext.onnx", &m)
}

#[test]
fn bad_external_data_names_the_tensor_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), [0u8; 16]).unwrap();

    let ok = external_model(
        dir.path(),
        &[("location", "w.bin"), ("offset", "0"), ("length", "16")],
    );
    assert!(onnx::load(&ok).is_ok());

    let missing = external_model(dir.path(), &[("location", "gone.bin")]);
    let e = load_err(&missing);
    assert!(
        e.contains("ext.onnx") && e.contains("'w'") && e.contains("gone.bin"),
        "{e}"
    );

    let range = external_model(
        dir.path(),
        &[("location", "w.bin"), ("offset", "8"), ("length", "16")],
    );
    let e = load_err(&range);
    assert!(e.contains("'w'") && e.contains("outside"), "{e}");

    let escape = external_model(dir.path(), &[("location", "../w.bin")]);
    assert!(load_err(&escape).contains("escapes"));

    let wrong_len = external_model(dir.path(), &[("location", "w.bin"), ("offset", "4")]);
    let e = load_err(&wrong_len);
    assert!(e.contains("12 bytes") && e.contains("need 16"), "{e}");
}

#[test]
fn ir_versions_3_to_10_load() {
    let dir = tempfile::tempdir().unwrap();
    for ir in 3..=10 {
        let mut m = tiny_model(4);
        m.ir_version = Some(ir);
        let path = write_proto(dir.path(), &format!("ir{ir}.onnx"), &m);
        let model = onnx::load(&path).unwrap_or_else(|e| panic!("IR {ir}: {e}"));
        assert_eq!(model.proto.ir_version(), ir);
    }
}

#[test]
fn fields_unknown_to_the_schema_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = tiny_model(4).encode_to_vec();
    // Field 99 of ModelProto, varint 1: a field from some future exporter (key 99<<3 = 792 = 0x98 0x06).
    bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
    let path = dir.path().join("future.onnx");
    std::fs::write(&path, bytes).unwrap();
    let (_, report) = onnx::load_with_report(&path).unwrap();
    assert_eq!(report.unaccounted_bytes, 3);
}
