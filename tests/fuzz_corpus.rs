//! Replays the fuzz corpus (`fuzz/corpus/load/`) and every input that once crashed the fuzzer
//! (`fuzz/regressions/{load,passes}/`) through the checks of the `load` and `passes` fuzz targets, under
//! plain `cargo test` on stable. The checks are `fuzz/check.rs`, included verbatim, so the two can never
//! drift apart.

include!("../fuzz/check.rs");

use std::path::{Path, PathBuf};

/// Seeds that are complete, valid models: the loader must accept them (and so run every check).
const MUST_LOAD: &[&str] = &[
    "conv_relu_reshape_softmax.onnx",
    "external_data.onnx",
    "constant_node.onnx",
    "if_subgraphs.onnx",
    "typed_fields_ir3_unsorted.onnx",
];

fn files(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(folder);
    if !dir.exists() && folder.starts_with("regressions") {
        return Vec::new(); // no crash found yet
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

/// Runs every file through `check`, collecting panics instead of stopping at the first, and returns how
/// many passed every check.
fn replay<E>(files: &[PathBuf], check: fn(&[u8]) -> Result<(), E>) -> usize {
    let mut failures = Vec::new();
    let mut loaded = 0;
    for path in files {
        let data = std::fs::read(path).unwrap();
        match std::panic::catch_unwind(|| check(&data)) {
            Ok(Ok(())) => loaded += 1,
            Ok(Err(_)) => {}
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {msg}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} input(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    loaded
}

#[test]
fn seed_models_load_and_pass_every_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/load");
    for name in MUST_LOAD {
        let data = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Err(e) = check_load(&data) {
            panic!("seed {name} must load: {e}");
        }
    }
}

#[test]
fn corpus_replays_without_panics() {
    let corpus = files("corpus/load");
    assert!(
        corpus.len() >= MUST_LOAD.len(),
        "the seed corpus is missing"
    );
    let loaded = replay(&corpus, check_load);
    assert!(
        loaded >= MUST_LOAD.len(),
        "only {loaded} of {} corpus inputs loaded",
        corpus.len()
    );
}

#[test]
fn regressions_replay_without_panics() {
    replay(&files("regressions/load"), check_load);
    replay(&files("regressions/passes"), check_passes);
}

/// The `passes` checks on every fixture export (legacy and dynamo, static and dynamic, both heads): each
/// simplifies, fuses, saves and loads, and the executor plans it.
#[test]
fn fixture_models_pass_the_graph_pass_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fixtures");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path().join("model.onnx"))
        .filter(|p| p.is_file())
        .collect();
    models.sort();
    assert!(
        models.len() >= 6,
        "fixtures missing under {}",
        root.display()
    );
    for path in &models {
        let data = std::fs::read(path).unwrap();
        if let Err(e) = check_passes(&data) {
            panic!("{}: {e}", path.display());
        }
    }
}

/// The load corpus through the `passes` checks: most inputs fail to load or to simplify (that is fine),
/// none may panic, and the valid seed models get through.
#[test]
fn corpus_replays_through_the_graph_passes_without_panics() {
    let passed = replay(&files("corpus/load"), check_passes);
    assert!(
        passed >= 3,
        "only {passed} corpus inputs got through the passes"
    );
}

include!("../fuzz/graphgen.rs");
include!("../fuzz/graphcheck.rs");

/// 10,000 graphs from a fixed pseudo-random byte stream through the `graphs` fuzz target's checks.
#[test]
fn generated_graphs_keep_their_bits_through_the_plan_and_simplify() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let (mut graphs, mut nodes, mut pairs, mut variadic) = (0, 0, 0, 0);
    for case in 0..10_000 {
        let data: Vec<u8> = (0..192)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let n = std::panic::catch_unwind(|| check_generated(&data)).unwrap_or_else(|_| {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            panic!("generated case {case} failed (bytes {hex})")
        });
        graphs += usize::from(n > 0);
        nodes += n;
        if let Some(graph) = generate_graph(&data).and_then(|gen| gen.model.graph) {
            pairs += quantize_dequantize_pairs(&graph);
            variadic += graph
                .node
                .iter()
                .filter(|n| {
                    matches!(n.op_type(), "Sum" | "Mean" | "Max" | "Min") && n.input.len() > 2
                })
                .count();
        }
    }
    assert!(
        graphs >= 9000,
        "only {graphs} of 10000 byte strings gave a graph"
    );
    eprintln!(
        "{graphs} graphs, {nodes} nodes, {pairs} QuantizeLinear->DequantizeLinear pairs, {variadic} \
         Sum/Mean/Max/Min of 3-4 inputs"
    );
    assert!(
        pairs >= 200,
        "only {pairs} QuantizeLinear nodes read by one DequantizeLinear alone (the pair the plan fuses)"
    );
    assert!(
        variadic >= 50,
        "only {variadic} Sum/Mean/Max/Min nodes with more than two inputs"
    );
    assert!(
        nodes >= 5 * graphs,
        "graphs average under 5 nodes ({nodes} in {graphs})"
    );
}

/// QuantizeLinear nodes whose output only one DequantizeLinear reads, as its data: what the executor's
/// plan runs as one fused step.
fn quantize_dequantize_pairs(graph: &ocrnet_edge::onnx::proto::GraphProto) -> usize {
    graph
        .node
        .iter()
        .filter(|q| q.op_type() == "QuantizeLinear")
        .filter(|q| {
            let readers: Vec<_> = graph
                .node
                .iter()
                .filter(|n| n.input.contains(&q.output[0]))
                .collect();
            let is_output = graph.output.iter().any(|o| o.name() == q.output[0]);
            !is_output
                && readers.len() == 1
                && readers[0].op_type() == "DequantizeLinear"
                && readers[0].input[0] == q.output[0]
        })
        .count()
}

/// Reruns one failed generated case: `GRAPHGEN_HEX=<bytes from the failure> cargo test --test fuzz_corpus
/// -- --ignored generated_case_from_env --nocapture`.
#[test]
#[ignore = "reproduces a case given in GRAPHGEN_HEX"]
fn generated_case_from_env() {
    let hex = std::env::var("GRAPHGEN_HEX").expect("GRAPHGEN_HEX");
    let data: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let gen = generate_graph(&data).expect("a graph");
    let bytes = bytes::Bytes::from(prost::Message::encode_to_vec(&gen.model));
    let (model, _) =
        ocrnet_edge::onnx::load_bytes(bytes, std::path::Path::new("g.onnx"), None).expect("loads");
    eprintln!("{}", gen_text(&model));
    check_generated(&data);
}
