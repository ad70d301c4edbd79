//! Shared pieces of the libFuzzer targets in `fuzz_targets/`: structured inputs (requests,
//! backend sets, route tables, edits to a valid configuration) built with `arbitrary`, and
//! the checks every configuration outcome must pass.
//!
//! Each target is a thin `fuzz_target!` over one of these modules; `cargo xtask fuzz` runs
//! them (see `docs/reliability.md`, "Fuzzing").

pub mod backends;
pub mod config_check;
pub mod mutate;
pub mod request;
pub mod routes;
pub mod words;
