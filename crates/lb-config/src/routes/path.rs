//! Path conditions (`path`, `path_prefix`, `path_regex`) and the compiled regular
//! expressions every `regex` condition uses.
//!
//! Paths are matched as the client sent them: not percent-decoded, not normalised, without
//! the query.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A path given in the configuration: starts with `/`, has no query, fragment or spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriPath(Box<str>);

/// A regular expression compiled at load time (the `regex` crate's syntax, searched
/// anywhere in the value unless anchored with `^` and `$`), applied to bytes.
#[derive(Clone, Debug)]
pub struct Pattern(regex::bytes::Regex);

/// How a route matches the request path.
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// `path`: the whole path equals this.
    Exact(UriPath),
    /// `path_prefix`: the path starts with this (bytes; `/api` also matches `/apis`).
    Prefix(UriPath),
    /// `path_regex`: the expression matches the path.
    Regex(Pattern),
}

impl UriPath {
    /// Checks `text` as a configured path.
    pub fn new(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("path `{text}` must start with `/`"));
        }
        if text.contains(['?', '#']) {
            return Err(format!(
                "path `{text}` has a query or fragment: paths are matched without the query \
                 (use `query` conditions for parameters)"
            ));
        }
        if text
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "path `{text:?}` contains spaces or control characters"
            ));
        }
        Ok(Self(text.into()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for UriPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(de::Error::custom)
    }
}

impl Pattern {
    /// Compiles `source`.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        regex::bytes::Regex::new(source).map(Self)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// True if the expression matches somewhere in `value`.
    #[inline]
    pub fn is_match(&self, value: &[u8]) -> bool {
        self.0.is_match(value)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(|e| {
            // The syntax error's own text spans several lines (the expression, a caret, then
            // `error: ...`); a configuration error is one line.
            let full = e.to_string();
            let reason = full
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(&full);
            de::Error::custom(format!("invalid regular expression {text:?}: {reason}"))
        })
    }
}

impl PathMatch {
    /// True if `path` (the request path, without query) matches.
    #[inline]
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p.as_str(),
            Self::Prefix(p) => path.starts_with(p.as_str()),
            Self::Regex(r) => r.is_match(path.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> UriPath {
        UriPath::new(s).unwrap()
    }

    #[test]
    fn each_kind_matches_the_raw_path() {
        assert!(PathMatch::Exact(path("/health")).matches("/health"));
        assert!(!PathMatch::Exact(path("/health")).matches("/health/"));
        assert!(
            !PathMatch::Exact(path("/health")).matches("/Health"),
            "case-sensitive"
        );
        let api = PathMatch::Prefix(path("/api/"));
        assert!(api.matches("/api/") && api.matches("/api/users/1"));
        assert!(
            !api.matches("/api") && !api.matches("/%61pi/"),
            "raw, not decoded"
        );
        let v = PathMatch::Regex(Pattern::new("^/v[0-9]+/").unwrap());
        assert!(v.matches("/v2/items") && v.matches("/v10/"));
        assert!(!v.matches("/x/v2/") && !v.matches("/v/"));
        assert!(PathMatch::Regex(Pattern::new("items").unwrap()).matches("/v1/items/3"));
    }

    #[test]
    fn bad_paths_and_expressions_are_refused() {
        for bad in ["", "api/", "/a?b=1", "/a#top", "/a b", "/a\tb"] {
            assert!(UriPath::new(bad).is_err(), "{bad:?}");
        }
        let e = toml::from_str::<std::collections::BTreeMap<String, Pattern>>(r#"r = "^/v[0-9+/""#)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(r#"invalid regular expression "^/v[0-9+/": unclosed character class"#),
            "{e}"
        );
        assert_eq!(Pattern::new("^/a$").unwrap().to_string(), "^/a$");
    }
}
