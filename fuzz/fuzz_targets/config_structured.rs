//! Configuration parser, structure-aware: an example configuration from `examples/` with a
//! few fuzzed edits to its TOML tree (values replaced, keys inserted or removed, subtrees
//! copied; words from the documented keys and example values), written back as text and
//! loaded with `Config::from_toml_str` as that example's file.
//!
//! Checks: the same as `config_text` (no panic; errors at `file:line:col`; a loaded
//! configuration builds its router and upstreams), on files that get much further into
//! validation than random text does.

#![no_main]

use lb_fuzz::config_check;
use lb_fuzz::mutate::Mutant;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|mutant: Mutant| {
    let Some((origin, text)) = mutant.render() else {
        return;
    };
    if let Some(config) = config_check::check(&text, origin) {
        config_check::build(&config);
    }
});
