//! The router as a whole: order, all-conditions-must-match, and build errors.

use super::*;
use lb_config::Config;

const UPSTREAMS: [&str; 4] = ["api", "mobile", "canary", "web"];

fn router(routes: &str) -> Router {
    let mut text = String::from("[server]\nlisten = [\"127.0.0.1:0\"]\n");
    for (i, u) in UPSTREAMS.iter().enumerate() {
        text.push_str(&format!(
            "[upstreams.{u}]\nbackends = [\"127.0.0.1:{}\"]\n",
            9000 + i
        ));
    }
    text.push_str(routes);
    let config = Config::from_toml_str(&text, "t.toml").unwrap();
    Router::new(&config.routes, |n| UPSTREAMS.iter().position(|u| *u == n)).unwrap()
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// The index of the route taken, or `None`.
fn taken(r: &Router, parts: &Parts) -> Option<usize> {
    r.route(parts).map(Route::index)
}

#[test]
fn the_first_route_whose_every_condition_matches_wins() {
    let r = router(
        r#"
[[routes]]
upstream = "mobile"
host = ["shop.example.com", "*.shop.example.com"]
path_prefix = "/api/"
headers = [{ name = "user-agent", regex = "Mobile|Android" }]

[[routes]]
upstream = "api"
host = "shop.example.com"
path_regex = "^/api/v[0-9]+/"
methods = ["GET", "HEAD"]

[[routes]]
upstream = "canary"
cookies = [{ name = "canary", value = "1" }]
query = [{ name = "debug" }]

[[routes]]
upstream = "web"
path = "/"
"#,
    );
    let mobile = [("host", "shop.example.com"), ("user-agent", "x Mobile y")];
    let desktop = [("host", "shop.example.com"), ("user-agent", "Firefox")];
    assert_eq!(taken(&r, &req("GET", "/api/v1/x", &mobile)), Some(0));
    assert_eq!(
        taken(
            &r,
            &req(
                "POST",
                "/api/v1/x",
                &[
                    ("host", "m.shop.example.com:443"),
                    ("user-agent", "Android")
                ]
            )
        ),
        Some(0)
    );
    assert_eq!(taken(&r, &req("GET", "/api/v1/x", &desktop)), Some(1));
    assert_eq!(taken(&r, &req("HEAD", "/api/v2/x", &desktop)), Some(1));
    assert_eq!(
        taken(&r, &req("POST", "/api/v1/x", &desktop)),
        None,
        "method"
    );
    assert_eq!(taken(&r, &req("GET", "/api/x", &desktop)), None, "regex");
    assert_eq!(
        taken(
            &r,
            &req("GET", "/api/v1/x", &[("host", "other.example.com")])
        ),
        None,
        "host"
    );
    let canary = [("cookie", "a=1; canary=1")];
    assert_eq!(taken(&r, &req("GET", "/p?debug", &canary)), Some(2));
    assert_eq!(taken(&r, &req("GET", "/p", &canary)), None, "query missing");
    assert_eq!(
        taken(&r, &req("GET", "/?debug=", &[("cookie", "canary=0")])),
        Some(3)
    );
    assert_eq!(taken(&r, &req("GET", "/", &[])), Some(3));
    assert_eq!(
        taken(&r, &req("GET", "/?x=1", &[])),
        Some(3),
        "path ignores the query"
    );
    assert_eq!(taken(&r, &req("GET", "/x", &[])), None);
    let route = r.route(&req("GET", "/", &[])).unwrap();
    assert_eq!(route.upstream(), 3);
    assert_eq!(r.routes().len(), 4);
}

#[test]
fn http2_requests_route_on_their_authority() {
    let r = router("[[routes]]\nupstream = \"api\"\nhost = \"API.example.com\"\n");
    // An HTTP/2 request carries `:authority` in the URI and no Host header.
    let mut parts = req("GET", "https://api.example.com:8443/x", &[]);
    parts.version = http::Version::HTTP_2;
    assert_eq!(taken(&r, &parts), Some(0));
    assert_eq!(taken(&r, &req("GET", "/x", &[])), None, "no host at all");
}

#[test]
fn a_route_without_conditions_matches_everything() {
    let r = router("[[routes]]\nupstream = \"web\"\n[[routes]]\nupstream = \"api\"\n");
    assert_eq!(taken(&r, &req("DELETE", "/any?thing", &[])), Some(0));
    assert!(r.routes()[1].matches(&req("GET", "/", &[])));
}

#[test]
fn header_rules_are_exposed_per_route() {
    let r = router(
        r#"
[[routes]]
upstream = "web"
request_headers = { set = { "x-a" = "1" }, remove = ["x-b"] }
response_headers = { add = { "x-served-by" = "web" } }
"#,
    );
    let route = r.route(&req("GET", "/", &[])).unwrap();
    let mut h = http::HeaderMap::new();
    h.insert("x-b", http::HeaderValue::from_static("gone"));
    route.request_headers().apply(&mut h);
    assert_eq!(h.len(), 1);
    assert_eq!(h["x-a"], "1");
    let mut h = http::HeaderMap::new();
    route.response_headers().apply(&mut h);
    assert_eq!(h["x-served-by"], "web");
}

#[test]
fn configurations_made_in_code_are_checked_too() {
    let routes = [RouteConfig::new("web"), RouteConfig::new("nope")];
    let e = Router::new(&routes, |n| (n == "web").then_some(0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "routes[1].upstream: upstream `nope` is not defined"
    );

    let mut two_paths = RouteConfig::new("web");
    two_paths.path = Some(toml::Spanned::new(0..0, UriPath::new("/a").unwrap()));
    two_paths.path_regex = Some(toml::Spanned::new(0..0, Pattern::new("^/b").unwrap()));
    let e = Router::new(&[two_paths], |_| Some(0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "routes[0].path_regex: set at most one of `path`, `path_prefix` and `path_regex`"
    );
}

#[test]
fn a_router_is_built_from_every_key() {
    // The routes of lb-config's `routes::tests::every_key_loads`.
    let text = r#"[server]
listen = ["127.0.0.1:8080"]
[upstreams.web]
backends = ["127.0.0.1:9001"]
[upstreams.api]
backends = ["127.0.0.1:9002"]
[[routes]]
upstream = "api"
host = ["api.example.com", "*.api.example.com"]
path_regex = "^/v[0-9]+/"
methods = ["GET", "HEAD"]
headers = [{ name = "user-agent", regex = "Mobile" }, { name = "x-canary", value = "1" }, { name = "x-debug" }]
cookies = [{ name = "canary", value = "always" }]
query = [{ name = "variant", regex = "^[ab]$" }]
request_headers = { set = { "x-a" = "1" }, add = { "x-b" = "2" }, remove = ["x-c"] }
response_headers = { set = { "cache-control" = "no-store" } }

[[routes]]
upstream = "web"
path_prefix = "/"

[[routes]]
upstream = "web"
path = "/exact"
"#;
    let c = Config::from_toml_str(text, "lb.toml").unwrap();
    let router = Router::new(&c.routes, |n| Some(usize::from(n == "web"))).unwrap();
    assert_eq!(router.routes()[1].upstream(), 1);
}
