//! The property each fuzz target checks, in one place for two callers.
//!
//! Every `fuzz/fuzz_targets/<target>.rs` includes this directory with
//! `#[path = "../../tests/fuzz_checks/mod.rs"]` and hands each input to
//! `<target>::check`; `tests/fuzz_corpus.rs` includes it as a plain module
//! and runs the same `check` on every file of `fuzz/corpus/<target>/`, so a
//! crash the fuzzer found stays a regression test of `cargo test`, and the
//! check cannot drift between the two. A check panics when the property
//! fails and returns normally otherwise. It uses only the crate's public
//! API (and `tempfile`, `percent-encoding`, `hyper`, which both packages
//! have), so the fuzz package needs nothing from `src/` beyond it.
//!
//! Why here and not in `src/`: the checks are test code (they panic by
//! design, and make temporary directories), and the library should not ship
//! them. Why not in the fuzz package: `cargo test` of the main package
//! cannot depend on it (it depends on libFuzzer, built from C++).
//!
//! [`Bytes`] turns the fuzzer's bytes into decisions for the structured
//! targets (`region_model`, `store_codec`): reads past the end give zeros,
//! so every input is a complete program.

pub mod config_parse;
pub mod gateway_path;
pub mod region_model;
pub mod region_open;
pub mod store_codec;

/// A cursor over fuzz input that never fails: past the end it yields 0.
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, at: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// The next byte as a choice among `n` (n > 0).
    pub fn pick(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }

    /// Up to `n` of the next bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let from = self.at.min(self.data.len());
        let to = self.at.saturating_add(n).min(self.data.len());
        self.at = self.at.saturating_add(n);
        &self.data[from..to]
    }
}
