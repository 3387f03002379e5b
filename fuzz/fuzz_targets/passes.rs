//! Fuzz target: every model the loader accepts through simplification, the OCR fusion and the executor's
//! plan (`check_passes` in `fuzz/check.rs`, shared with `tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check.rs");

fuzz_target!(|data: &[u8]| {
    let _ = check_passes(data);
});
