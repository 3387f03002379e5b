//! Replays the fuzz corpus (`fuzz/corpus/load/`) and every input that once crashed the fuzzer
//! (`fuzz/regressions/load/`) through the checks of the `load` fuzz target, under plain `cargo test` on
//! stable. The checks are `fuzz/check.rs`, included verbatim, so the two can never drift apart.

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

/// Runs every file, collecting panics instead of stopping at the first, and returns how many loaded.
fn replay(files: &[PathBuf]) -> usize {
    let mut failures = Vec::new();
    let mut loaded = 0;
    for path in files {
        let data = std::fs::read(path).unwrap();
        match std::panic::catch_unwind(|| check_load(&data)) {
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
    let loaded = replay(&corpus);
    assert!(
        loaded >= MUST_LOAD.len(),
        "only {loaded} of {} corpus inputs loaded",
        corpus.len()
    );
}

#[test]
fn regressions_replay_without_panics() {
    replay(&files("regressions/load"));
}
