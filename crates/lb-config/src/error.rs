//! Configuration errors that point at the file, line, column and key.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid: syntax, an unknown key, a bad value or a dangling reference.
    #[error("{}", Located(self))]
    Invalid {
        /// The file (or other origin) of the text.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// The dotted key path (`upstreams.web.health_check.interval`); empty for syntax errors.
        key: String,
        /// What is wrong.
        message: String,
    },
}

struct Located<'a>(&'a ConfigError);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ConfigError::Invalid {
            path,
            line,
            column,
            key,
            message,
        } = self.0
        {
            write!(f, "{}:{line}:{column}: ", path.display())?;
            if !key.is_empty() {
                write!(f, "{key}: ")?;
            }
            f.write_str(message)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// An error at byte `offset` of `text`.
    pub(crate) fn at(
        origin: &Path,
        text: &str,
        offset: usize,
        key: String,
        message: String,
    ) -> Self {
        let (line, column) = line_col(text, offset);
        Self::Invalid {
            path: origin.to_owned(),
            line,
            column,
            key,
            message,
        }
    }

    pub(crate) fn from_toml(
        origin: &Path,
        text: &str,
        err: serde_path_to_error::Error<toml::de::Error>,
    ) -> Self {
        // `toml::Spanned` wraps values in a private struct; its field is not a user key.
        let key: String = err
            .path()
            .to_string()
            .split('.')
            .filter(|seg| !seg.starts_with("$__serde_spanned_private"))
            .collect::<Vec<_>>()
            .join(".");
        let key = if key == "." { String::new() } else { key };
        let inner = err.into_inner();
        let offset = inner.span().map_or(0, |s| s.start);
        Self::at(origin, text, offset, key, inner.message().trim().to_owned())
    }

    /// The line of the error, for [`ConfigError::Invalid`].
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => Some(*line),
            Self::Read { .. } => None,
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
