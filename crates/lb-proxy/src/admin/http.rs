//! The admin endpoints: routing, bearer-token check and responses.

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::registry::Registry;

use super::accept::Format;
use super::control::Action;
use super::{classic, collect, page, status, AdminState};
use crate::error::ReloadError;

/// The admin service.
pub(crate) struct Admin {
    state: Arc<AdminState>,
    registry: Registry,
}

/// The `Authorization` value every admin endpoint but `/healthz` needs (`Bearer TOKEN`),
/// or none. One per process, read at every request: a reload that changes the token
/// applies to connections already open, on the old listener as on the new.
#[derive(Debug, Default)]
pub(crate) struct Token(ArcSwapOption<Box<[u8]>>);

impl Token {
    /// Requires `token` from now on (`None`: no token).
    pub(crate) fn set(&self, token: Option<&str>) {
        self.0
            .store(token.map(|t| Arc::new(format!("Bearer {t}").into_bytes().into_boxed_slice())));
    }
}

type Resp = Response<Full<Bytes>>;

impl Admin {
    /// The service over `state`, requiring its current token.
    pub(crate) fn new(state: Arc<AdminState>) -> Self {
        Self {
            registry: collect::registry(state.clone()),
            state,
        }
    }

    /// Answers one admin request.
    pub(crate) async fn handle(&self, req: Request<Incoming>) -> Result<Resp, Infallible> {
        let path = req.uri().path();
        if path == "/healthz" {
            return Ok(text(StatusCode::OK, "ok\n"));
        }
        if !self.authorized(&req) {
            let mut resp = text(
                StatusCode::UNAUTHORIZED,
                "401 Unauthorized: bearer token required\n",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"lb-proxy admin\""),
            );
            return Ok(resp);
        }
        let method = req.method();
        let get = method == Method::GET || method == Method::HEAD;
        Ok(match path {
            "/metrics" if get => self.metrics(&req),
            "/status" | "/status.json" | "/status.html" if get => {
                let html = path == "/status.html"
                    || (path == "/status" && wants_html(req.headers().get(header::ACCEPT)));
                let s = status::collect(&self.state);
                if html {
                    body(StatusCode::OK, "text/html; charset=utf-8", page::render(&s))
                } else {
                    match serde_json::to_string_pretty(&s) {
                        Ok(json) => body(StatusCode::OK, "application/json", json),
                        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode status\n"),
                    }
                }
            }
            "/metrics" | "/status" | "/status.json" | "/status.html" => text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: use GET\n",
            ),
            "/reload" if method == Method::POST => self.reload().await,
            "/reload" => text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: use POST\n",
            ),
            p if p.starts_with("/backends/") => {
                if method == Method::POST {
                    self.backend_action(p)
                } else {
                    text(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "405 Method Not Allowed: use POST\n",
                    )
                }
            }
            _ => text(StatusCode::NOT_FOUND, "404 Not Found\n"),
        })
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(expected) = self.state.token.0.load_full() else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map_or(&b""[..], HeaderValue::as_bytes);
        constant_time_eq(given, &expected)
    }

    /// `GET /metrics`: OpenMetrics, or the classic text format when the scraper's
    /// `Accept` prefers it ([`super::accept`]).
    fn metrics(&self, req: &Request<Incoming>) -> Resp {
        let accept = req.headers().get_all(header::ACCEPT);
        let format = Format::negotiate(accept.iter().filter_map(|v| v.to_str().ok()));
        let page = match collect::encode(&self.registry) {
            Ok(page) => page,
            Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
        };
        let page = match format {
            Format::OpenMetrics => page,
            Format::Classic => classic::from_openmetrics(&page),
        };
        let mut resp = body(StatusCode::OK, format.content_type(), page);
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept"));
        resp
    }

    /// `POST /reload`: 200 with what changed, 409 when there is no file to read, 400 when
    /// the new configuration is refused (the running one stays; the body says why).
    async fn reload(&self) -> Resp {
        match self.state.reloader.reload_file().await {
            Ok(done) => {
                let u = &done.upstreams;
                let summary = serde_json::json!({
                    "reloaded": true,
                    "upstreams": {
                        "kept": u.kept,
                        "relisted": u.relisted,
                        "rebuilt": u.rebuilt,
                        "added": u.added,
                        "removed": u.removed,
                    },
                    "listen": done.listening.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "admin": done.admin.map(|a| a.to_string()),
                    "not_applied": done.not_applied,
                });
                match serde_json::to_string_pretty(&summary) {
                    Ok(json) => body(StatusCode::OK, "application/json", json + "\n"),
                    Err(_) => text(StatusCode::OK, "reloaded\n"),
                }
            }
            Err(error) => {
                let status = match error {
                    ReloadError::NoFile => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_REQUEST,
                };
                let mut why =
                    format!("reload refused; the running configuration is unchanged: {error}");
                let mut source = std::error::Error::source(&error);
                while let Some(e) = source {
                    why.push_str(": ");
                    why.push_str(&e.to_string());
                    source = e.source();
                }
                why.push('\n');
                body(status, "text/plain; charset=utf-8", why)
            }
        }
    }

    /// `POST /backends/{upstream}/{addr}/{action}`.
    fn backend_action(&self, path: &str) -> Resp {
        let mut parts = path.trim_start_matches("/backends/").split('/');
        let (Some(upstream), Some(addr), Some(action), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return text(
                StatusCode::NOT_FOUND,
                "404 Not Found: use /backends/{upstream}/{addr}/disable|enable|drain\n",
            );
        };
        let Some(action) = Action::parse(action) else {
            return text(
                StatusCode::NOT_FOUND,
                "404 Not Found: the action is disable, enable or drain\n",
            );
        };
        let addr = percent_decode(addr);
        let proxy = self.state.proxy();
        let Some(u) = proxy.upstreams.iter().find(|u| u.name() == upstream) else {
            return text(StatusCode::NOT_FOUND, "404 Not Found: no such upstream\n");
        };
        let backends = u.balancer().backends();
        let Some(b) = backends
            .iter()
            .find(|b| b.name() == addr || b.addr().to_string() == addr)
        else {
            return text(
                StatusCode::NOT_FOUND,
                "404 Not Found: no such backend in that upstream\n",
            );
        };
        self.state.control.apply(u.name(), b, action);
        let status = status::backend(&self.state, u, b);
        match serde_json::to_string_pretty(&status) {
            Ok(json) => body(StatusCode::OK, "application/json", json),
            Err(_) => text(StatusCode::OK, "done\n"),
        }
    }
}

/// True when the client prefers HTML (a browser's `Accept`).
fn wants_html(accept: Option<&HeaderValue>) -> bool {
    accept
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Compares without an early exit, so the time taken does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, y) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ y;
    }
    diff == 0
}

/// Decodes `%XX` escapes (for IPv6 brackets and colons); leaves invalid escapes as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn body(status: StatusCode, content_type: &'static str, text: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn text(status: StatusCode, text: &'static str) -> Resp {
    body(status, "text/plain; charset=utf-8", text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abcd", b"Bearer abc"));
        assert!(!constant_time_eq(b"", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
    }

    #[test]
    fn escapes_decode() {
        assert_eq!(percent_decode("%5B%3A%3A1%5D%3A80"), "[::1]:80");
        assert_eq!(percent_decode("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
