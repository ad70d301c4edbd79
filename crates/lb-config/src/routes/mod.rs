//! `[[routes]]`: the conditions a request must meet, the upstream it then goes to, and the
//! header rules applied on the way.
//!
//! Every value is parsed while loading (patterns lowercased, regular expressions compiled,
//! header names and values checked), so a bad one is an error at its line; the
//! router built from these only copies them.
//!
//! The condition types ([`HostList`], [`PathMatch`], [`Methods`], [`HeaderMatch`],
//! [`CookieMatch`], [`QueryMatch`]) and the [`HeaderRules`] live here with their parsing and
//! their allocation-free `matches` methods, so the configuration imports nothing of the
//! router.

use serde::Deserialize;
use toml::Spanned;

mod field;
mod host;
mod method;
mod parse;
mod path;
mod rules;

pub use field::{CookieMatch, HeaderMatch, InvalidCondition, QueryMatch, ValueTest};
pub use host::{request_host, HostList, HostPattern, InvalidHost};
pub use method::{InvalidMethods, Methods};
pub use path::{PathMatch, Pattern, UriPath};
pub use rules::{HeaderRules, InvalidRules};

/// `[[routes]]`: which requests go to which upstream. The routes are tried in order and the
/// first whose every condition matches wins; a route without conditions matches every request.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The name of an `[upstreams.NAME]` table.
    pub upstream: Spanned<String>,
    /// `host = "api.example.com"` or a list; exact names or `*.suffix` wildcards.
    #[serde(default)]
    pub host: Option<HostList>,
    /// `path = "/exact"`: the path equals this.
    #[serde(default)]
    pub path: Option<Spanned<UriPath>>,
    /// `path_prefix = "/api/"`: the path starts with this.
    #[serde(default)]
    pub path_prefix: Option<Spanned<UriPath>>,
    /// `path_regex = "^/v[0-9]+/"`: the expression matches the path.
    #[serde(default)]
    pub path_regex: Option<Spanned<Pattern>>,
    /// `methods = ["GET", "HEAD"]`.
    #[serde(default)]
    pub methods: Option<Methods>,
    /// Request header conditions; all must match.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    /// Cookie conditions; all must match.
    #[serde(default)]
    pub cookies: Vec<CookieMatch>,
    /// Query parameter conditions; all must match.
    #[serde(default)]
    pub query: Vec<QueryMatch>,
    /// Edits to the request sent upstream.
    #[serde(default)]
    pub request_headers: HeaderRules,
    /// Edits to the response sent to the client.
    #[serde(default)]
    pub response_headers: HeaderRules,
}

/// More than one of `path`, `path_prefix` and `path_regex` on one route.
#[derive(Debug, thiserror::Error)]
#[error("set at most one of `path`, `path_prefix` and `path_regex`")]
pub struct PathConflict {
    /// The second key set, and where its value starts in the file.
    pub key: &'static str,
    /// Byte offset of that value.
    pub offset: usize,
}

impl RouteConfig {
    /// A route that sends every request to `upstream`.
    pub fn new(upstream: impl Into<String>) -> Self {
        Self {
            upstream: Spanned::new(0..0, upstream.into()),
            host: None,
            path: None,
            path_prefix: None,
            path_regex: None,
            methods: None,
            headers: Vec::new(),
            cookies: Vec::new(),
            query: Vec::new(),
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
        }
    }

    /// The path condition, from whichever of `path`, `path_prefix` and `path_regex` is set.
    pub fn path_match(&self) -> Result<Option<PathMatch>, PathConflict> {
        let mut found = None;
        let set = [
            (
                "path",
                self.path
                    .as_ref()
                    .map(|p| (p.span().start, PathMatch::Exact(p.get_ref().clone()))),
            ),
            (
                "path_prefix",
                self.path_prefix
                    .as_ref()
                    .map(|p| (p.span().start, PathMatch::Prefix(p.get_ref().clone()))),
            ),
            (
                "path_regex",
                self.path_regex
                    .as_ref()
                    .map(|p| (p.span().start, PathMatch::Regex(p.get_ref().clone()))),
            ),
        ];
        for (key, value) in set {
            let Some((offset, matcher)) = value else {
                continue;
            };
            if found.is_some() {
                return Err(PathConflict { key, offset });
            }
            found = Some(matcher);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
