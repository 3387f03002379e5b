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
#[allow(dead_code)] // the `passes` target uses only check_passes
pub fn check_load(data: &[u8]) -> Result<(), ocrnet_edge::onnx::Error> {
    use ocrnet_edge::onnx::{self, stats::ModelStats};
    use ocrnet_edge::tensor::Tensor;

    let label = std::path::Path::new("fuzz-input.onnx");
    let (model, _report) = onnx::load_bytes(
        bytes::Bytes::copy_from_slice(data),
        label,
        Some(fuzz_data_dir()),
    )?;

    // Statistics and their text form.
    let stats = ModelStats::of(&model);
    assert_eq!(stats.nodes, model.graph.nodes.len());
    assert_eq!(
        stats.external_initializers,
        model.external_tensors().count()
    );
    let _ = stats.to_text();

    // Every initializer and every tensor attribute of the top-level nodes decodes or errors; a decoded one
    // re-encodes to the same bytes.
    let attr_tensors = model
        .graph
        .nodes
        .iter()
        .flat_map(|n| &n.attribute)
        .flat_map(|a| a.t.iter().chain(&a.tensors));
    for t in model.graph.initializers.iter().chain(attr_tensors) {
        if let Ok(tensor) = Tensor::from_proto(t) {
            assert_eq!(tensor.shape.iter().product::<usize>(), tensor.len());
            let proto = tensor.to_proto(t.name());
            let again = Tensor::from_proto(&proto).expect("a tensor we encoded must decode");
            assert_eq!(
                again.to_proto(t.name()),
                proto,
                "tensor '{}' changed in a round trip",
                t.name()
            );
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
    assert!(
        fuzz_encode(&again) == encoded,
        "encode(decode(encode(model))) != encode(model)"
    );
    assert_eq!(again.graph.nodes.len(), model.graph.nodes.len());

    // Dead-code removal keeps a valid graph, is idempotent, and its result still saves and loads.
    let mut pruned = model.clone();
    let before = pruned.graph.nodes.len();
    let removed = pruned.graph.remove_dead();
    assert_eq!(pruned.graph.nodes.len() + removed, before);
    pruned
        .graph
        .topo_sort()
        .unwrap_or_else(|e| panic!("remove_dead left a broken graph: {e}"));
    assert_eq!(
        pruned.graph.remove_dead(),
        0,
        "remove_dead is not idempotent"
    );
    onnx::load_bytes(bytes::Bytes::from(fuzz_encode(&pruned)), label, None)
        .unwrap_or_else(|e| panic!("the loader rejects a pruned model: {e}"));
    Ok(())
}

/// The static shape and ONNX element type a value info declares, when it declares both.
fn fuzz_static_type(v: &ocrnet_edge::onnx::proto::ValueInfoProto) -> Option<(Vec<usize>, i32)> {
    use ocrnet_edge::onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
    let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return None;
    };
    let dims = tt.shape.as_ref()?.dim.iter().map(|d| match d.value {
        Some(Value::DimValue(n)) if (0..=1 << 16).contains(&n) => Some(n as usize),
        _ => None,
    });
    Some((dims.collect::<Option<Vec<_>>>()?, tt.elem_type?))
}

/// Small, fully known inputs for `model` (every graph input f32 with a static shape), when the simplified
/// graph's inferred types show no value over 2^16 elements or of unknown shape: then running it costs
/// little whatever the bytes were.
fn fuzz_feed(
    model: &ocrnet_edge::onnx::Model,
    simplified: &ocrnet_edge::onnx::Model,
) -> Option<Vec<(String, ocrnet_edge::tensor::Tensor)>> {
    let g = &simplified.graph;
    let outputs = g
        .nodes
        .iter()
        .flat_map(|n| &n.output)
        .filter(|o| !o.is_empty())
        .count();
    let small = |v: &ocrnet_edge::onnx::proto::ValueInfoProto| {
        fuzz_static_type(v).is_some_and(|(s, _)| {
            s.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_some_and(|n| n <= 1 << 16)
        })
    };
    if g.value_info.len() + g.outputs.len() < outputs
        || !g.value_info.iter().chain(&g.outputs).all(small)
    {
        return None;
    }
    let initializers: std::collections::HashSet<&str> =
        model.graph.initializers.iter().map(|t| t.name()).collect();
    let mut feed = Vec::new();
    for (i, v) in model
        .graph
        .inputs
        .iter()
        .filter(|v| !initializers.contains(v.name()))
        .enumerate()
    {
        let (shape, elem) = fuzz_static_type(v)?;
        if elem != 1 || shape.iter().product::<usize>() > 1 << 16 {
            return None;
        }
        feed.push((
            v.name().to_string(),
            ocrnet_edge::exec::verify::probe_input(&shape, i as u64 + 1),
        ));
    }
    Some(feed)
}

/// What running `model` on `feed` gives: each graph output's shape and values, NaN equal to NaN.
fn fuzz_run(
    model: &ocrnet_edge::onnx::Model,
    feed: &[(String, ocrnet_edge::tensor::Tensor)],
) -> Option<Vec<(String, String)>> {
    use ocrnet_edge::exec::{ExecOptions, Executor};
    let exec = Executor::new(
        model,
        ExecOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .ok()?;
    let out = exec.run(feed.iter().cloned().collect(), &[], None).ok()?;
    let mut v: Vec<(String, String)> = out
        .into_iter()
        .map(|(k, t)| (k, format!("{:?} {:?}", t.shape, t.data)))
        .collect();
    v.sort();
    Some(v)
}

/// Loads `data` and, when the loader accepts it, runs what `compile` runs on a model before lowering it:
/// simplification (cleanup, constant folding, shape inference into `value_info`), the OCR fusion, and the
/// executor's plan. A graph they cannot handle must come back as `Err`; any panic, abort, huge allocation or
/// hang is a bug. Whatever a pass returns must still save and load, and where the inputs are small and static
/// the simplified graph must compute the very bits the original does. Returns the first stage's error, as text.
#[allow(dead_code)] // the `load` target uses only check_load
pub fn check_passes(data: &[u8]) -> Result<(), String> {
    use ocrnet_edge::exec::{ExecOptions, Executor};
    use ocrnet_edge::onnx;
    use ocrnet_edge::passes::{self, SimplifyOptions};

    let label = std::path::Path::new("fuzz-input.onnx");
    let (mut model, _) = onnx::load_bytes(
        bytes::Bytes::copy_from_slice(data),
        label,
        Some(fuzz_data_dir()),
    )
    .map_err(|e| e.to_string())?;
    let reload = |model: &onnx::Model, after: &str| {
        onnx::load_bytes(bytes::Bytes::from(fuzz_encode(model)), label, None)
            .unwrap_or_else(|e| panic!("the loader rejects the model {after} wrote: {e}"));
    };
    let before = fuzz_encode(&model);
    let original = model.clone();
    let opts = SimplifyOptions {
        write_value_info: true,
        ..Default::default()
    };
    if let Err(e) = passes::simplify(&mut model, &opts) {
        assert!(
            fuzz_encode(&model) == before,
            "simplify failed ({e}) but changed the model"
        );
        return Err(format!("simplify: {e}"));
    }
    reload(&model, "simplify");
    let options = ExecOptions {
        threads: 1,
        ..Default::default()
    };
    let planned = Executor::new(&model, options)
        .map(|_| ())
        .map_err(|e| format!("executor: {e}"));
    // Simplification must not change what the graph computes: where the original runs (on small, known
    // inputs), the simplified graph runs too and gives the same bits. Folding evaluates the same ops the
    // executor runs, so not even rounding may differ.
    if let Some(feed) = fuzz_feed(&original, &model) {
        if let Some(want) = fuzz_run(&original, &feed) {
            let got = fuzz_run(&model, &feed)
                .expect("the original graph runs, the simplified one does not");
            assert!(
                got == want,
                "simplification changed the outputs:\n{want:?}\n{got:?}"
            );
        }
    }
    passes::ocr::fuse(&mut model).map_err(|e| format!("fuse: {e}"))?;
    reload(&model, "fuse");
    planned
}
