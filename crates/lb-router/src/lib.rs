//! `lb-router`: request routing for `lb-proxy`: which `[[routes]]` entry, and so which upstream, takes a request, and
//! the header rules that route applies.
//!
//! A [`Router`] is built once from the configured routes. [`Router::route`] tries them in
//! order and returns the first [`Route`] whose every condition matches the request head:
//! host (exact or `*.suffix`, from the URI authority or `Host`), path (exact, prefix or
//! regex), method, headers, cookies and query parameters. It takes no lock and allocates
//! nothing, except to percent-decode a query value longer than 256 bytes that contains
//! escapes, for a `regex` condition.
//!
//! ```
//! use lb_config::Config;
//! use lb_router::Router;
//!
//! let config = Config::from_toml_str(r#"
//!     [server]
//!     listen = ["127.0.0.1:8080"]
//!     [upstreams.api]
//!     backends = ["127.0.0.1:9001"]
//!     [upstreams.web]
//!     backends = ["127.0.0.1:9002"]
//!     [[routes]]
//!     upstream = "api"
//!     host = "*.example.com"
//!     path_prefix = "/api/"
//!     request_headers = { set = { "x-route" = "api" } }
//!     [[routes]]
//!     upstream = "web"
//! "#, "example.toml")?;
//! let names = ["api", "web"];
//! let router = Router::new(&config.routes, |name| names.iter().position(|n| *n == name))?;
//!
//! let (parts, ()) = http::Request::get("/api/users")
//!     .header("host", "eu.example.com:8080")
//!     .body(())?
//!     .into_parts();
//! let route = router.route(&parts).expect("a route matches");
//! assert_eq!((route.index(), route.upstream()), (0, 0));
//!
//! let mut headers = http::HeaderMap::new();
//! route.request_headers().apply(&mut headers);
//! assert_eq!(headers["x-route"], "api");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use lb_config::{
    CookieMatch, HeaderMatch, HeaderRules, HostList, HostPattern, InvalidCondition, InvalidHost,
    InvalidMethods, InvalidRules, Methods, PathMatch, Pattern, QueryMatch, UriPath, ValueTest,
};

use http::request::Parts;

use lb_config::{request_host, RouteConfig};

/// The routes of a proxy, in order.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Box<[Route]>,
    /// Whether any route has a host condition (else the request's host is not looked up).
    by_host: bool,
}

/// One route: its conditions, its upstream and its header rules.
#[derive(Clone, Debug)]
pub struct Route {
    index: usize,
    upstream: usize,
    methods: Option<Methods>,
    host: Option<HostList>,
    path: Option<PathMatch>,
    headers: Box<[HeaderMatch]>,
    cookies: Box<[CookieMatch]>,
    query: Box<[QueryMatch]>,
    request_headers: HeaderRules,
    response_headers: HeaderRules,
}

/// Routes that cannot be built (only possible for a configuration made in code: a loaded
/// file has been checked for both).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// A route names an upstream the lookup does not know.
    #[error("routes[{route}].upstream: upstream `{name}` is not defined")]
    UnknownUpstream {
        /// The route's position.
        route: usize,
        /// The name it gives.
        name: String,
    },
    /// A route sets more than one path condition.
    #[error("routes[{route}].{}: {source}", source.key)]
    Path {
        /// The route's position.
        route: usize,
        /// Which keys.
        source: lb_config::PathConflict,
    },
}

impl Router {
    /// Builds the routes; `upstream(name)` gives the index of the upstream called `name`.
    pub fn new(
        routes: &[RouteConfig],
        upstream: impl Fn(&str) -> Option<usize>,
    ) -> Result<Self, RouterError> {
        let routes = routes
            .iter()
            .enumerate()
            .map(|(index, config)| {
                let name = config.upstream.get_ref();
                let upstream = upstream(name).ok_or_else(|| RouterError::UnknownUpstream {
                    route: index,
                    name: name.clone(),
                })?;
                let path = config.path_match().map_err(|source| RouterError::Path {
                    route: index,
                    source,
                })?;
                Ok(Route {
                    index,
                    upstream,
                    methods: config.methods.clone(),
                    host: config.host.clone(),
                    path,
                    headers: config.headers.clone().into(),
                    cookies: config.cookies.clone().into(),
                    query: config.query.clone().into(),
                    request_headers: config.request_headers.clone(),
                    response_headers: config.response_headers.clone(),
                })
            })
            .collect::<Result<Box<[Route]>, RouterError>>()?;
        let by_host = routes.iter().any(|r| r.host.is_some());
        Ok(Self { routes, by_host })
    }

    /// The first route that matches the request head `parts`, or `None` (the proxy answers
    /// 404).
    #[inline]
    pub fn route(&self, parts: &Parts) -> Option<&Route> {
        let host = if self.by_host {
            request_host(parts)
        } else {
            None
        };
        self.routes
            .iter()
            .find(|r| r.matches_with_host(parts, host))
    }

    /// Every route, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

impl Route {
    /// The route's position in `[[routes]]`, from 0.
    #[inline]
    pub fn index(&self) -> usize {
        self.index
    }

    /// The index of its upstream, as given by the lookup passed to [`Router::new`].
    #[inline]
    pub fn upstream(&self) -> usize {
        self.upstream
    }

    /// Rules for the request sent upstream (`request_headers`).
    #[inline]
    pub fn request_headers(&self) -> &HeaderRules {
        &self.request_headers
    }

    /// Rules for the response sent to the client (`response_headers`).
    #[inline]
    pub fn response_headers(&self) -> &HeaderRules {
        &self.response_headers
    }

    /// True if every condition matches the request head `parts`.
    pub fn matches(&self, parts: &Parts) -> bool {
        self.matches_with_host(parts, request_host(parts))
    }

    /// [`matches`](Self::matches) with the request's host already extracted. The cheap
    /// conditions come first.
    #[inline]
    fn matches_with_host(&self, parts: &Parts, host: Option<&str>) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|m| m.matches(&parts.method))
            && self
                .host
                .as_ref()
                .is_none_or(|h| host.is_some_and(|host| h.matches(host)))
            && self
                .path
                .as_ref()
                .is_none_or(|p| p.matches(parts.uri.path()))
            && self.headers.iter().all(|c| c.matches(&parts.headers))
            && self.cookies.iter().all(|c| c.matches(&parts.headers))
            && self.query.iter().all(|c| c.matches(parts.uri.query()))
    }
}

#[cfg(test)]
mod tests;
