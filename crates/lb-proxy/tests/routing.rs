//! Routing through the real proxy: a table of requests over host, path, method, header,
//! cookie and query rules, each upstream a different real backend, checked by which backend
//! counted the request; 404 when nothing matches; header rules seen by backend and client.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use bytes::Bytes;
use common::{Harness, Transitions};
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lb_testkit::TestBackend;

/// The upstreams, one backend each (its name is the upstream's, and its answer).
const UPSTREAMS: [&str; 10] = [
    "mobile", "api_v2", "api", "admin", "static", "canary", "beta", "app", "local", "fallback",
];

/// The routes of the seeds: path-based, host-based, host + path + User-Agent combined,
/// canary by cookie and by query parameter, header presence and value, methods.
const ROUTES: &str = r#"
# Host + path + User-Agent: mobile clients of the API.
[[routes]]
upstream = "mobile"
host = ["api.example.com", "*.api.example.com"]
path_prefix = "/v1/"
headers = [{ name = "user-agent", regex = "(?i)mobile|android" }]
request_headers = { set = { "x-client" = "mobile" } }

# Host + versioned path regex.
[[routes]]
upstream = "api_v2"
host = "api.example.com"
path_regex = "^/v[2-9]/"

# Host-based: the rest of the API host and its subdomains.
[[routes]]
upstream = "api"
host = ["api.example.com", "*.api.example.com"]

# Header equals + path, read-only methods.
[[routes]]
upstream = "admin"
path_prefix = "/admin/"
methods = ["GET", "HEAD"]
headers = [{ name = "x-admin-token", value = "s3cret" }]

# Path-based with header rules both ways.
[[routes]]
upstream = "static"
path_prefix = "/static/"
request_headers = { set = { "x-forwarded-prefix" = "/static" }, add = { "x-tag" = "static" }, remove = ["x-drop-me"] }
response_headers = { set = { "cache-control" = "max-age=60" }, add = { "x-served-by" = "static" }, remove = ["x-backend"] }

# Canary by cookie (A/B): users holding canary=always.
[[routes]]
upstream = "canary"
host = "www.example.com"
cookies = [{ name = "canary", value = "always" }]

# Canary by query parameter, escapes decoded.
[[routes]]
upstream = "beta"
host = "www.example.com"
query = [{ name = "variant", value = "b e" }]

# Header presence.
[[routes]]
upstream = "beta"
host = "www.example.com"
headers = [{ name = "x-beta" }]

# The site.
[[routes]]
upstream = "app"
host = "www.example.com"

# A host without a domain (reached over HTTP/2 through its :authority too).
[[routes]]
upstream = "local"
host = "localhost"
path_prefix = "/local/"

# Everything else on /health only: other paths get 404.
[[routes]]
upstream = "fallback"
path = "/health"
"#;

struct Setup {
    h: Harness,
    _events: Transitions,
    backends: Vec<TestBackend>,
}

async fn setup() -> Setup {
    let mut backends = Vec::new();
    let mut toml = String::from("[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"5s\"\n");
    for name in UPSTREAMS {
        let b = TestBackend::start(name).await;
        toml.push_str(&format!(
            "[upstreams.{name}]\nbackends = [\"{}\"]\n",
            b.addr()
        ));
        backends.push(b);
    }
    toml.push_str(ROUTES);
    let (h, _events) = Harness::start(&toml).await;
    Setup {
        h,
        _events,
        backends,
    }
}

impl Setup {
    fn backend(&self, name: &str) -> &TestBackend {
        &self.backends[UPSTREAMS.iter().position(|u| *u == name).unwrap()]
    }

    fn hits(&self) -> Vec<usize> {
        self.backends.iter().map(TestBackend::hits).collect()
    }
}

/// One request of the table: method, host, path and query, extra headers, and the upstream
/// that must get it (`None`: 404 from the proxy, no backend hit).
struct Case {
    method: &'static str,
    host: &'static str,
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Option<&'static str>,
}

const fn case(
    method: &'static str,
    host: &'static str,
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Option<&'static str>,
) -> Case {
    Case {
        method,
        host,
        target,
        headers,
        expect,
    }
}

const ANDROID: &[(&str, &str)] = &[("user-agent", "Mozilla/5.0 (Linux; Android 14)")];
const IPHONE: &[(&str, &str)] = &[("user-agent", "Mozilla/5.0 (iPhone) Mobile/15E148")];
const DESKTOP: &[(&str, &str)] = &[("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")];
const ADMIN: &[(&str, &str)] = &[("x-admin-token", "s3cret")];

// One request per line reads better than rustfmt's one argument per line.
#[rustfmt::skip]
const CASES: &[Case] = &[
    // Host + path + User-Agent.
    case("GET", "api.example.com", "/v1/users", ANDROID, Some("mobile")),
    case("POST", "eu.api.example.com:8443", "/v1/orders", IPHONE, Some("mobile")),
    case("GET", "API.Example.COM", "/v1/users", IPHONE, Some("mobile")),
    case("GET", "api.example.com", "/v1/users", DESKTOP, Some("api")),
    case("GET", "api.example.com", "/v2/users", ANDROID, Some("api_v2")),
    case("GET", "api.example.com", "/v3/users?page=2", &[], Some("api_v2")),
    case("GET", "eu.api.example.com", "/v2/users", &[], Some("api")),
    case("GET", "api.example.com", "/", &[], Some("api")),
    case("GET", "example.com", "/v1/users", ANDROID, None),
    // Header value + methods + path.
    case("GET", "www.example.com", "/admin/users", ADMIN, Some("admin")),
    case("HEAD", "other.test", "/admin/", ADMIN, Some("admin")),
    case("POST", "www.example.com", "/admin/users", ADMIN, Some("app")),
    case("GET", "www.example.com", "/admin/users", &[("x-admin-token", "guess")], Some("app")),
    case("GET", "other.test", "/admin/users", &[], None),
    // Path-based.
    case("GET", "other.test", "/static/app.js", &[], Some("static")),
    case("GET", "www.example.com", "/static/logo.png", &[], Some("static")),
    case("GET", "other.test", "/staticky", &[], None),
    // Cookie canary (A/B): quoted values, several Cookie headers, look-alike names.
    case("GET", "www.example.com", "/", &[("cookie", "session=1; canary=always")], Some("canary")),
    case("GET", "www.example.com", "/", &[("cookie", "session=1"), ("cookie", "canary=\"always\"")], Some("canary")),
    case("GET", "www.example.com", "/", &[("cookie", "canary=never")], Some("app")),
    case("GET", "www.example.com", "/", &[("cookie", "xcanary=always")], Some("app")),
    // Query canary: `+` and `%20` decode to the configured space; names are exact.
    case("GET", "www.example.com", "/?variant=b+e", &[], Some("beta")),
    case("GET", "www.example.com", "/page?x=1&variant=b%20e", &[], Some("beta")),
    case("GET", "www.example.com", "/?variant=a", &[], Some("app")),
    case("GET", "www.example.com", "/?Variant=b+e", &[], Some("app")),
    // Header presence (an empty value is present).
    case("GET", "www.example.com", "/", &[("x-beta", "")], Some("beta")),
    // A bare host name, with its port or a trailing dot.
    case("GET", "localhost:8080", "/local/x", &[], Some("local")),
    case("GET", "localhost.", "/local/x", &[], Some("local")),
    case("GET", "localhost.localdomain", "/local/x", &[], None),
    // Fallback and 404.
    case("GET", "unknown.test", "/health", &[], Some("fallback")),
    case("GET", "unknown.test", "/health/deep", &[], None),
    case("DELETE", "unknown.test", "/", &[], None),
];

#[tokio::test]
async fn each_request_reaches_the_backend_of_the_first_matching_route() {
    let s = setup().await;
    assert!(CASES.len() >= 20);
    for (i, c) in CASES.iter().enumerate() {
        let before = s.hits();
        let mut req = Request::builder()
            .method(Method::from_bytes(c.method.as_bytes()).unwrap())
            .uri(s.h.url(c.target))
            .header("host", c.host);
        for (k, v) in c.headers {
            req = req.header(*k, *v);
        }
        let (status, body) = s.h.send(req.body(Full::default()).unwrap()).await;
        let after = s.hits();
        let what = format!(
            "case {i}: {} {} {} {:?}",
            c.method, c.host, c.target, c.headers
        );
        match c.expect {
            Some(name) => {
                assert_eq!(status, StatusCode::OK, "{what}");
                if c.method != "HEAD" {
                    assert_eq!(body, name, "{what}");
                }
                let target = UPSTREAMS.iter().position(|u| *u == name).unwrap();
                for (j, (b, a)) in before.iter().zip(&after).enumerate() {
                    let want = b + usize::from(j == target);
                    assert_eq!(*a, want, "{what}: backend {} hits", UPSTREAMS[j]);
                }
            }
            None => {
                assert_eq!(
                    (status, body.as_str()),
                    (StatusCode::NOT_FOUND, "404 Not Found: no route matches\n"),
                    "{what}"
                );
                assert_eq!(before, after, "{what}: no backend may see it");
            }
        }
    }
}

#[tokio::test]
async fn header_rules_edit_the_request_upstream_and_the_response_downstream() {
    let s = setup().await;
    let req = Request::post(s.h.url("/static/echo"))
        .header("host", "localhost")
        .header("x-forwarded-prefix", "/client-value")
        .header("x-tag", "client")
        .header("x-drop-me", "secret")
        .body(Full::from("payload"))
        .unwrap();
    let resp = s.h.client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"static");

    let seen = s.backend("static").last_headers().await.unwrap();
    assert_eq!(seen["x-forwarded-prefix"], "/static", "set replaces");
    let tags: Vec<_> = seen.get_all("x-tag").iter().collect();
    assert_eq!(tags, ["client", "static"], "add appends");
    assert!(!seen.contains_key("x-drop-me"), "removed: {seen:?}");
    assert_eq!(
        seen["x-forwarded-for"], "127.0.0.1",
        "the proxy's own rewriting stays"
    );

    assert_eq!(headers["cache-control"], "max-age=60");
    assert_eq!(headers["x-served-by"], "static");
    assert!(
        !headers.contains_key("x-backend"),
        "removed from the response: {headers:?}"
    );

    // Another route's rules do not leak: the mobile route sets only x-client.
    let req = Request::get(s.h.url("/v1/me"))
        .header("host", "api.example.com")
        .header("user-agent", "Android")
        .body(Full::default())
        .unwrap();
    let resp = s.h.client.request(req).await.unwrap();
    assert_eq!(
        resp.headers()["x-backend"],
        "mobile",
        "no response rules here"
    );
    let seen = s.backend("mobile").last_headers().await.unwrap();
    assert_eq!(seen["x-client"], "mobile");
    assert!(!seen.contains_key("x-tag"));
}

#[tokio::test]
async fn http2_requests_route_on_their_authority() {
    let s = setup().await;
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    // Each request carries `:authority` (the URI's host and port) and no Host header.
    let port = s.h.addr().port();
    for (host, expect) in [("localhost", Some("local")), ("127.0.0.1", None)] {
        let before = s.hits();
        let uri = format!("http://{host}:{port}/local/x");
        let resp = h2.get(uri.parse().unwrap()).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        match expect {
            Some(name) => {
                assert_eq!(
                    (status, &body[..]),
                    (StatusCode::OK, name.as_bytes()),
                    "{uri}"
                );
                assert_eq!(s.backend(name).hits(), 1);
            }
            None => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
                assert_eq!(s.hits(), before);
            }
        }
    }
    let seen = s.backend("local").last_headers().await.unwrap();
    assert_eq!(
        seen["host"],
        format!("localhost:{port}"),
        "Host from :authority"
    );

    // A Host header that contradicts :authority is malformed (RFC 9113 section 8.3.1):
    // refused before routing (protect/head.rs), so no route and no backend sees it.
    let req = Request::get(format!("http://localhost:{port}/local/x"))
        .header("host", "elsewhere.test")
        .body(Full::default())
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.backend("local").hits(), 1);
}
