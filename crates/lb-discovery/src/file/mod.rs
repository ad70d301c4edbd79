//! File discovery: a TOML or JSON file listing backends, reloaded when it changes.
//!
//! The format follows the file's extension (`.toml`, or `.json`), and the shape is the one
//! of `lb-proxy`'s `backends` key (see [`BackendEntry`]):
//!
//! ```toml
//! backends = ["10.0.0.1:8080", { addr = "10.0.0.2:8080", weight = 2, enabled = false }]
//! ```
//!
//! ```json
//! {"backends": ["10.0.0.1:8080", {"addr": "10.0.0.2:8080", "weight": 2, "enabled": false}]}
//! ```
//!
//! Unknown keys, a weight of 0, an address that does not parse or resolve, and two entries
//! with the same address are errors, as they are in the proxy's configuration. An empty
//! list is a valid (empty) answer; a missing `backends` key is not, so a file caught
//! half-written is an error, never an empty upstream.
//!
//! The [`watch`](ServiceDiscovery::watch) stream watches the file's **directory** (inotify
//! on Linux, through notify), not the file: editors and deployment tools save by writing a
//! new file and renaming it over the old one (an atomic `rename(2)`), which replaces the
//! inode a file watch would follow; Kubernetes ConfigMap volumes swap a `..data` symlink in
//! the same directory. Any change in the directory, after a quiet period
//! ([`File::with_debounce`], default 100 ms) so a burst of writes is read once, reloads the
//! file; an unchanged content yields nothing. A file that does not parse yields an error
//! naming the path and the problem (line and column for syntax errors), and the consumer
//! keeps its last good set until the file is fixed.

mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::BackendAddr;
use serde::Deserialize;

use crate::emitter::ErrorCount;
use crate::{BackendEntry, Discovered, DiscoveryError, DiscoveryStream, ServiceDiscovery};

/// The syntax of a backend file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// TOML: `backends = [...]` at the top level.
    Toml,
    /// JSON: `{"backends": [...]}`.
    Json,
}

impl FileFormat {
    /// The format named by `path`'s extension (`toml` or `json`, any case).
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Self::Toml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Why a backend file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The extension is neither `.toml` nor `.json`.
    #[error("{path}: unknown backend file format (expected a .toml or .json file)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("{path}: cannot read the backend file")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or does not have the expected shape.
    #[error("{path}: invalid TOML backend file")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        #[source]
        source: toml::de::Error,
    },
    /// The JSON does not parse or does not have the expected shape.
    #[error("{path}: invalid JSON backend file")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// An entry's address is invalid or does not resolve.
    #[error("{path}: invalid backend `{addr}`")]
    Backend {
        /// The file.
        path: PathBuf,
        /// The entry's address text.
        addr: String,
        /// Why.
        #[source]
        source: lb_core::Error,
    },
    /// Two entries give the same address.
    #[error("{path}: backends `{first}` and `{second}` both have address {addr}")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The shared address.
        addr: BackendAddr,
        /// The first entry's text.
        first: String,
        /// The second entry's text.
        second: String,
    },
    /// The directory could not be watched (it does not exist, or inotify limits).
    #[error("{path}: cannot watch the directory for changes")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// notify's error.
        #[source]
        source: notify::Error,
    },
}

/// The file's expected shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendFile {
    backends: Vec<BackendEntry>,
}

/// Discovery from a backend file; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct File {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    format: FileFormat,
    debounce: Duration,
    label: String,
    errors: ErrorCount,
}

impl File {
    /// Discovery from the file at `path`, in the format its extension names. The file
    /// need not exist yet.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, FileError> {
        let path = path.into();
        let format = FileFormat::from_path(&path)
            .ok_or_else(|| FileError::UnknownFormat { path: path.clone() })?;
        Ok(Self::with_format(path, format))
    }

    /// Discovery from the file at `path` in `format`, whatever its extension.
    pub fn with_format(path: impl Into<PathBuf>, format: FileFormat) -> Self {
        let path = path.into();
        // Absolute, so the directory to watch is known even for `lb.toml`.
        let path = std::path::absolute(&path).unwrap_or(path);
        Self::build(path, format, Duration::from_millis(100))
    }

    /// This source with another quiet period between a change and the reload.
    #[must_use]
    pub fn with_debounce(self, debounce: Duration) -> Self {
        Self::build(self.inner.path.clone(), self.inner.format, debounce)
    }

    fn build(path: PathBuf, format: FileFormat, debounce: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                label: format!("file {}", path.display()),
                path,
                format,
                debounce,
                errors: ErrorCount::default(),
            }),
        }
    }

    /// The file (made absolute).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reads, parses and resolves the file now.
    pub async fn load(&self) -> Result<Discovered, FileError> {
        let path = &self.inner.path;
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| FileError::Read {
                path: path.clone(),
                source,
            })?;
        let entries = parse(path, &text, self.inner.format)?;
        let mut backends = Vec::new();
        let mut disabled = std::collections::HashSet::new();
        let mut seen: HashMap<BackendAddr, String> = HashMap::new();
        for entry in entries {
            let resolved = entry.resolve().await.map_err(|source| FileError::Backend {
                path: path.clone(),
                addr: entry.addr.clone(),
                source,
            })?;
            for b in resolved {
                if let Some(first) = seen.insert(b.addr().clone(), entry.addr.clone()) {
                    return Err(FileError::Duplicate {
                        path: path.clone(),
                        addr: b.addr().clone(),
                        first,
                        second: entry.addr.clone(),
                    });
                }
                if !entry.enabled {
                    disabled.insert(b.addr().clone());
                }
                backends.push(b);
            }
        }
        Ok(Discovered::new(backends.into_iter().collect()).with_disabled(disabled))
    }

    fn error(&self, cause: FileError) -> DiscoveryError {
        DiscoveryError::new(self.inner.label.clone(), cause)
    }
}

/// The entries of a backend file's text.
fn parse(path: &Path, text: &str, format: FileFormat) -> Result<Vec<BackendEntry>, FileError> {
    let file: BackendFile = match format {
        FileFormat::Toml => toml::from_str(text).map_err(|source| FileError::Toml {
            path: path.to_owned(),
            source,
        })?,
        FileFormat::Json => serde_json::from_str(text).map_err(|source| FileError::Json {
            path: path.to_owned(),
            source,
        })?,
    };
    Ok(file.backends)
}

#[async_trait]
impl ServiceDiscovery for File {
    async fn discover(&self) -> Result<Discovered, DiscoveryError> {
        let result = self.load().await;
        self.inner
            .errors
            .track(result.map_err(|cause| self.error(cause)))
    }

    /// Watches the file's directory and reloads on change; see the
    /// [module documentation](self).
    fn watch(&self) -> Option<DiscoveryStream> {
        Some(watch::stream(self.clone()))
    }

    fn error_count(&self) -> u64 {
        self.inner.errors.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(
            FileFormat::from_path(Path::new("a/b.TOML")),
            Some(FileFormat::Toml)
        );
        assert_eq!(
            FileFormat::from_path(Path::new("b.json")),
            Some(FileFormat::Json)
        );
        assert!(matches!(
            File::new("backends.yaml"),
            Err(FileError::UnknownFormat { .. })
        ));
        assert!(File::new("lb.toml").unwrap().path().is_absolute());
    }

    #[test]
    fn both_formats_take_the_same_shape() {
        let p = Path::new("x");
        let toml = parse(
            p,
            r#"backends = ["10.0.0.1:80", { addr = "10.0.0.2:80", weight = 2 }]"#,
            FileFormat::Toml,
        )
        .unwrap();
        let json = parse(
            p,
            r#"{"backends": ["10.0.0.1:80", {"addr": "10.0.0.2:80", "weight": 2}]}"#,
            FileFormat::Json,
        )
        .unwrap();
        assert_eq!(toml, json);
        assert!(
            parse(p, "", FileFormat::Toml).is_err(),
            "no `backends`: not an empty list"
        );
        assert!(parse(p, "backends = []\nother = 1", FileFormat::Toml).is_err());
    }
}
