//! Configuration parser on raw text: any bytes (as UTF-8, invalid sequences replaced) are
//! loaded with `Config::from_toml_str`.
//!
//! Checks: nothing panics; an error names the file, a line and a column inside the text
//! (`file:line:col: ...`); a configuration that loads builds its router and upstreams
//! without panicking (see `lb_fuzz::config_check`). Seeds: every file of `examples/`.

#![no_main]

use std::path::Path;

use lb_fuzz::config_check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(config) = config_check::check(&text, Path::new("fuzz.toml")) {
        config_check::build(&config);
    }
});
