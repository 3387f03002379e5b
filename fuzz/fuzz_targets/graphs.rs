//! Fuzz target: the bytes drive a generator of small valid ONNX graphs (`fuzz/graphgen.rs`), and each graph
//! must give the same bits op by op, through the executor's plan and after `simplify`, whose inferred
//! shapes must be the real ones. Shared with `tests/fuzz_corpus.rs`, which runs a fixed stream of graphs.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../graphgen.rs");
include!("../graphcheck.rs");

fuzz_target!(|data: &[u8]| {
    check_generated(data);
});
