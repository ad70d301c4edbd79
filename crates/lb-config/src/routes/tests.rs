//! `[[routes]]` loading: every key accepted, every bad value refused at its line with its key.

use super::super::Config;

const HEAD: &str = r#"[server]
listen = ["127.0.0.1:8080"]
[upstreams.web]
backends = ["127.0.0.1:9001"]
[upstreams.api]
backends = ["127.0.0.1:9002"]
"#;

/// Loads `HEAD` followed by `routes` (so route text starts on line 7).
fn load(routes: &str) -> Result<Config, String> {
    Config::from_toml_str(&format!("{HEAD}{routes}"), "lb.toml").map_err(|e| e.to_string())
}

fn err(routes: &str) -> String {
    match load(routes) {
        Ok(_) => panic!("accepted:\n{routes}"),
        Err(e) => e,
    }
}

#[test]
fn every_key_loads() {
    let c = load(
        r#"[[routes]]
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
"#,
    )
    .unwrap();
    assert_eq!(c.routes.len(), 3);
    let r = &c.routes[0];
    assert_eq!(r.host.as_ref().unwrap().0.len(), 2);
    assert_eq!(r.headers.len(), 3);
    assert!(!r.request_headers.is_empty() && !r.response_headers.is_empty());
    // The router built from these routes: lb-router's tests
    // (`a_router_is_built_from_every_key`).
}

#[test]
fn bad_values_name_line_column_and_key() {
    let cases = [
        (
            "[[routes]]\nupstream = \"web\"\npath_regex = \"^/v[0-9+/\"\n",
            "lb.toml:9:14: routes[0].path_regex: invalid regular expression \"^/v[0-9+/\": unclosed character class",
        ),
        (
            "[[routes]]\nupstream = \"web\"\n[[routes]]\nupstream = \"api\"\nhost = \"a.*.com\"\n",
            "lb.toml:11:8: routes[1].host: invalid host pattern `a.*.com`",
        ),
        (
            "[[routes]]\nupstream = \"web\"\nhost = [\"ok.com\", \"bad:80\"]\n",
            "lb.toml:9:8: routes[0].host[1]: invalid host pattern `bad:80`: a host pattern has no port",
        ),
        (
            "[[routes]]\nupstream = \"web\"\npath = \"api\"\n",
            "lb.toml:9:8: routes[0].path: path `api` must start with `/`",
        ),
        (
            "[[routes]]\nupstream = \"web\"\nmethods = [\"get\"]\n",
            "lb.toml:9:11: routes[0].methods: methods are case-sensitive: write `GET`",
        ),
        (
            "[[routes]]\nupstream = \"web\"\nheaders = [{ name = \"x y\" }]\n",
            "lb.toml:9:21: routes[0].headers[0].name: invalid header name `x y`",
        ),
        (
            "[[routes]]\nupstream = \"web\"\nheaders = [{ name = \"x\", regex = \"(\" }]\n",
            "lb.toml:9:34: routes[0].headers[0].regex: invalid regular expression \"(\": unclosed group",
        ),
        (
            "[[routes]]\nupstream = \"web\"\ncookies = [{ name = \"c\", value = \"1\", regex = \"1\" }]\n",
            "lb.toml:9:11: routes[0].cookies[0]: set `value` or `regex`, not both",
        ),
        (
            "[[routes]]\nupstream = \"web\"\nquery = [{ name = \"\" }]\n",
            "lb.toml:9:9: routes[0].query[0]: a query parameter name cannot be empty",
        ),
        (
            "[[routes]]\nupstream = \"web\"\nrequest_headers = { set = { \"x-a\" = \"caf\u{e9}\" } }\n",
            "lb.toml:9:37: routes[0].request_headers.set.x-a: invalid header value",
        ),
        (
            "[[routes]]\nupstream = \"web\"\nresponse_headers = { remove = [\"bad name\"] }\n",
            "lb.toml:9:31: routes[0].response_headers.remove[0]: invalid header name `bad name`",
        ),
        (
            "[[routes]]\nupstream = \"web\"\nrequest_headers = { set = { host = \"a\" }, add = { Host = \"b\" } }\n",
            "lb.toml:9:19: routes[0].request_headers: header `host` is listed more than once",
        ),
        (
            "[[routes]]\nupstream = \"web\"\npath = \"/a\"\npath_prefix = \"/b\"\n",
            "lb.toml:10:15: routes[0].path_prefix: set at most one of `path`, `path_prefix` and `path_regex`",
        ),
        (
            "[[routes]]\nupstream = \"web\"\nhots = \"a.com\"\n",
            "lb.toml:9:1: routes[0].hots: unknown field `hots`",
        ),
    ];
    let mut wrong = Vec::new();
    for (routes, expected) in cases {
        let e = err(routes);
        if !e.starts_with(expected) {
            wrong.push(format!("\n{routes}got:      {e}\nexpected: {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
