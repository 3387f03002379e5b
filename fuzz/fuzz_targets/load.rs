//! Fuzz target: arbitrary bytes through the ONNX loader, and every loaded model through stats, tensor
//! decoding, dead-code removal and an encode/decode round trip. The checks live in `fuzz/check.rs`, shared
//! with `tests/fuzz_corpus.rs`, which replays the corpus and the regressions under plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check.rs");

fuzz_target!(|data: &[u8]| {
    let _ = check_load(data);
});
