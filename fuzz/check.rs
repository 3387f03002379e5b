// What must hold for any input of the ONNX loader. `include!`d by fuzz/fuzz_targets/load.rs (the fuzz
// target) and tests/fuzz_corpus.rs (the replay under `cargo test`), so both check exactly the same things.
// Needs the crates `ocrnet_edge` and `bytes`. (Plain comments only: this file is included, not a module.)

/// The folder external data is resolved in: it holds `weights.bin`, 4096 bytes where byte i is i % 251
/// (the seed `external_data.onnx` points into it). Written once per process, atomically, so concurrent
/// fuzz jobs and tests never see it half-written.
fn fuzz_data_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("ocrnet-edge-fuzz-data");
        std::fs::create_dir_all(&dir).expect("creating the fuzz data folder");
        let want: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let file = dir.join("weights.bin");
        if std::fs::read(&file).ok().as_deref() != Some(&want[..]) {
            let tmp = dir.join(format!(".weights.bin.{}.tmp", std::process::id()));
            std::fs::write(&tmp, &want).expect("writing weights.bin");
            std::fs::rename(&tmp, &file).expect("renaming weights.bin");
        }
        dir
    })
}

/// Encodes a model, for comparisons that must not depend on `PartialEq` (a NaN in `float_data` is not
/// equal to itself, yet survives a round trip bit for bit).
fn fuzz_encode(model: &ocrnet_edge::onnx::Model) -> Vec<u8> {
    ocrnet_edge::onnx::save::encode_to_vec(model)
}

/// Loads `data` and, when the loader accepts it, checks the model. Bad input must come back as `Err`; any
/// panic (including overflow checks and the asserts here), abort, huge allocation or hang is a bug.
/// Returns the loader's error, or `Ok(())` when it loaded and every check passed.
pub fn check_load(data: &[u8]) -> Result<(), ocrnet_edge::onnx::Error> {
    use ocrnet_edge::onnx::{self, stats::ModelStats};
    use ocrnet_edge::tensor::Tensor;

    let label = std::path::Path::new("fuzz-input.onnx");
    let (model, _report) = onnx::load_bytes(bytes::Bytes::copy_from_slice(data), label, Some(fuzz_data_dir()))?;

    // Statistics and their text form.
    let stats = ModelStats::of(&model);
    assert_eq!(stats.nodes, model.graph.nodes.len());
    assert_eq!(stats.external_initializers, model.external_tensors().count());
    let _ = stats.to_text();

    // Every initializer and every tensor attribute of the top-level nodes decodes or errors; a decoded one
    // re-encodes to the same bytes.
    let attr_tensors = model.graph.nodes.iter().flat_map(|n| &n.attribute).flat_map(|a| a.t.iter().chain(&a.tensors));
    for t in model.graph.initializers.iter().chain(attr_tensors) {
        if let Ok(tensor) = Tensor::from_proto(t) {
            assert_eq!(tensor.shape.iter().product::<usize>(), tensor.len());
            let proto = tensor.to_proto(t.name());
            let again = Tensor::from_proto(&proto).expect("a tensor we encoded must decode");
            assert_eq!(again.to_proto(t.name()), proto, "tensor '{}' changed in a round trip", t.name());
        }
    }

    // Producer lookup agrees with the graph.
    let index = model.graph.index();
    for (id, node) in model.graph.nodes.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            assert_eq!(index.producer(out), Some(id), "producer of '{out}'");
        }
    }

    // Encode and decode again: the loader accepts its own output, which is canonical (nothing unaccounted)
    // and encodes to the very same bytes (nodes already in order, external data now inline).
    let encoded = fuzz_encode(&model);
    let (again, report) = onnx::load_bytes(bytes::Bytes::from(encoded.clone()), label, None)
        .unwrap_or_else(|e| panic!("the loader rejects a model it wrote: {e}"));
    assert_eq!(report.unaccounted_bytes, 0);
    assert!(fuzz_encode(&again) == encoded, "encode(decode(encode(model))) != encode(model)");
    assert_eq!(again.graph.nodes.len(), model.graph.nodes.len());

    // Dead-code removal keeps a valid graph, is idempotent, and its result still saves and loads.
    let mut pruned = model.clone();
    let before = pruned.graph.nodes.len();
    let removed = pruned.graph.remove_dead();
    assert_eq!(pruned.graph.nodes.len() + removed, before);
    pruned.graph.topo_sort().unwrap_or_else(|e| panic!("remove_dead left a broken graph: {e}"));
    assert_eq!(pruned.graph.remove_dead(), 0, "remove_dead is not idempotent");
    onnx::load_bytes(bytes::Bytes::from(fuzz_encode(&pruned)), label, None)
        .unwrap_or_else(|e| panic!("the loader rejects a pruned model: {e}"));
    Ok(())
}
