//! Logging: `tracing` events as text or JSON lines, to stderr or appended to a file
//! (`server.error_log`, `--error-log`). The level comes from `RUST_LOG` (default `info`).

use std::fs::OpenOptions;
use std::io::{self, IsTerminal};
use std::path::Path;
use std::sync::Arc;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// The error log file cannot be opened for appending.
    #[error("cannot open the error log {path}: {source}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A global subscriber was already installed.
    #[error("logging is already set up")]
    AlreadySet,
}

/// Installs the global subscriber: `format` lines to `file` (created if missing, appended
/// to) or else to stderr (coloured only on a terminal).
pub fn init(format: LogFormat, file: Option<&Path>) -> Result<(), LoggingError> {
    let (writer, ansi) = match file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::Open {
                    path: path.to_owned(),
                    source,
                })?;
            (BoxMakeWriter::new(Arc::new(file)), false)
        }
        None => (BoxMakeWriter::new(io::stderr), io::stderr().is_terminal()),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        _ => builder.with_ansi(ansi).try_init(),
    };
    result.map_err(|_| LoggingError::AlreadySet)
}
