//! Fuzz target `region_model`: hands each input to the check in
//! `tests/fuzz_checks/region_model.rs`, the same function `cargo test` runs on the
//! committed corpus (`tests/fuzz_corpus.rs`); the property is stated there.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::region_model::check(data));
