//! What every configuration text must give: a [`Config`] that the rest of the proxy can
//! build from, or an error that points at `origin:line:column`. Never a panic.

use std::path::Path;
use std::sync::OnceLock;

use lb_proxy::config::{Config, ConfigError};
use lb_proxy::router::Router;
use tokio::runtime::Runtime;

/// Parses `text` as the file `origin`; returns the configuration if it loaded.
///
/// An error must be [`ConfigError::Invalid`] naming `origin`, with a 1-based line and a
/// column inside the text, and its message must start with `origin:line:column: `.
pub fn check(text: &str, origin: &Path) -> Option<Config> {
    match Config::from_toml_str(text, origin) {
        Ok(config) => Some(config),
        Err(err) => {
            located(&err, text, origin);
            None
        }
    }
}

/// Builds what the proxy builds from a loaded configuration.
///
/// It must give a [`Router`] (the loader promises every route names a defined upstream and
/// sets at most one path condition), and [`lb_proxy::check`] (every upstream's discovery
/// source, selector and client, as `lb-proxy -t`) may fail with an error but not panic.
pub fn build(config: &Config) {
    let names: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
    if let Err(err) = Router::new(&config.routes, |n| names.iter().position(|x| *x == n)) {
        panic!("a loaded configuration gives no router: {err}");
    }
    // Upstream construction needs a runtime (the balancer's channels); nothing is contacted.
    let _guard = runtime().enter();
    let _ = lb_proxy::check(config);
}

/// The checks of an error.
fn located(err: &ConfigError, text: &str, origin: &Path) {
    let ConfigError::Invalid {
        path, line, column, ..
    } = err
    else {
        panic!("an error without a location: {err:?}");
    };
    assert_eq!(path, origin, "the error names another file: {err}");
    let lines = text.split('\n').count();
    assert!(
        (1..=lines).contains(line),
        "line {line} outside 1..={lines}: {err}"
    );
    let width = text
        .split('\n')
        .nth(line - 1)
        .map_or(0, |l| l.chars().count());
    assert!(
        (1..=width + 1).contains(column),
        "column {column} outside 1..={}: {err}",
        width + 1
    );
    let prefix = format!("{}:{line}:{column}: ", origin.display());
    let shown = err.to_string();
    assert!(
        shown.starts_with(&prefix),
        "`{shown}` does not start with `{prefix}`"
    );
}

/// One current-thread runtime for the whole fuzzing process.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}
