//! sessiond: web sessions in shared memory.
//!
//! # Layout
//! | module | concept |
//! | --- | --- |
//! | [`region`] | the mmap'd session file of one context: layout, robust stripe locks, ids, expiry, repair, migration |
//! | [`store`] | the data directory: exclusive lock, `Version` file, opening every context's region |
//! | [`clock`] | wall-clock milliseconds |
//!
//! The crate is Linux-only: robust process-shared mutexes, `prctl` and the
//! region's little-endian layout are part of its contract.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(target_os = "linux", target_endian = "little")))]
compile_error!(
    "sessiond supports little-endian Linux only (robust pthread mutexes, prctl, little-endian region files)"
);

pub mod clock;
pub mod region;
pub mod store;
