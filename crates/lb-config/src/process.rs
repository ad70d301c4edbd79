//! Process settings of `[server]`: the pid file, the error log, its format, and the Unix
//! socket of the graceful binary upgrade. File paths are relative to the configuration file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{paths, ServerConfig};

/// `server.log_format`: how log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines: time, level, target, message and `key=value` fields.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, `span`s), for
    /// log shippers.
    Json,
}

/// Resolves the process settings' paths against the configuration file `origin`.
pub(super) fn resolve(server: &mut ServerConfig, origin: &Path) {
    for path in [
        &mut server.pid_file,
        &mut server.error_log,
        &mut server.upgrade_sock,
    ]
    .into_iter()
    .flatten()
    {
        *path = paths::resolve(origin, path);
    }
}

/// The default of `server.upgrade_timeout`: a minute, room for first discovery answers
/// and certificates.
pub(super) fn default_upgrade_timeout() -> super::PositiveDuration {
    super::PositiveDuration(std::time::Duration::from_secs(60))
}

/// The default of `server.log_format`.
pub(super) fn default_log_format() -> LogFormat {
    LogFormat::Text
}

/// An unset optional path.
pub(super) fn no_path() -> Option<PathBuf> {
    None
}
