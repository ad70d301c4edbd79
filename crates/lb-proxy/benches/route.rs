//! `Router::route` over a 20-route table: `cargo bench -p lb-proxy --bench route`.
//!
//! The table mixes every condition kind (hosts with wildcards, path prefix / exact /
//! regex, methods, header, cookie and query conditions), the way a real site's routes do.
//! Three requests are timed:
//!
//! - `route/first`: matches route 0 (host + path prefix + User-Agent regex).
//! - `route/middle`: matches route 10 (a cookie canary), after failing routes 0–9.
//! - `route/none`: matches nothing (the proxy answers 404) after trying all 20.
//!
//! Each request is a realistic browser head (a dozen headers, two cookies, a query).
//! Not part of `cargo xtask ci` (CI only compiles it).
// `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::fmt::Write;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::request::Parts;
use lb_proxy::config::Config;
use lb_proxy::router::Router;

/// 20 routes over 4 upstreams; route 10 is the cookie canary the `middle` request hits.
fn table() -> String {
    let mut t = String::from("[server]\nlisten = [\"127.0.0.1:0\"]\n");
    for u in 0..4 {
        writeln!(
            t,
            "[upstreams.u{u}]\nbackends = [\"127.0.0.1:{}\"]",
            9000 + u
        )
        .unwrap();
    }
    let routes = [
        r#"host = ["api.example.com", "*.api.example.com"]
path_prefix = "/v1/"
headers = [{ name = "user-agent", regex = "Mobile|Android" }]"#,
        r#"host = "api.example.com"
path_regex = "^/v[2-9]/""#,
        r#"host = ["api.example.com", "*.api.example.com"]"#,
        r#"path_prefix = "/admin/"
methods = ["GET", "HEAD"]
headers = [{ name = "x-admin-token", value = "s3cret" }]"#,
        r#"host = "static.example.com""#,
        r#"path_prefix = "/static/""#,
        r#"path = "/favicon.ico""#,
        r#"host = "*.internal.example.com"
headers = [{ name = "x-debug" }]"#,
        r#"path_regex = "^/(login|logout|signup)$"
methods = ["POST"]"#,
        r#"host = "www.example.com"
query = [{ name = "variant", value = "b" }]"#,
        r#"host = "www.example.com"
cookies = [{ name = "canary", value = "always" }]"#,
        r#"host = "www.example.com"
headers = [{ name = "x-beta", value = "1" }]"#,
        r#"host = "shop.example.com"
path_prefix = "/cart/""#,
        r#"host = "shop.example.com"
path_prefix = "/checkout/"
methods = ["POST"]"#,
        r#"host = ["blog.example.com", "news.example.com"]"#,
        r#"path_prefix = "/ws/"
headers = [{ name = "upgrade", regex = "(?i)^websocket$" }]"#,
        r#"host = "*.cdn.example.com""#,
        r#"path = "/health""#,
        r#"path_prefix = "/graphql"
methods = ["POST"]"#,
        r#"host = "legacy.example.com""#,
    ];
    assert_eq!(routes.len(), 20);
    for (i, r) in routes.iter().enumerate() {
        writeln!(t, "[[routes]]\nupstream = \"u{}\"\n{r}", i % 4).unwrap();
    }
    t
}

fn request(host: &str, target: &str, cookie: &str, user_agent: &str) -> Parts {
    http::Request::get(target)
        .header("host", host)
        .header("user-agent", user_agent)
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("accept-language", "en-GB,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br")
        .header("referer", "https://www.example.com/")
        .header("cookie", cookie)
        .header("sec-fetch-dest", "document")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-site", "same-origin")
        .header("upgrade-insecure-requests", "1")
        .header("x-request-id", "5b7c1e0e-8f0a-4d4e-9b5f-1c2d3e4f5a6b")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn bench(c: &mut Criterion) {
    let config = Config::from_toml_str(&table(), "bench.toml").unwrap();
    let router = Router::new(&config.routes, |n| n[1..].parse().ok()).unwrap();
    let ua = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile";
    let desktop = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let cases = [
        (
            "first",
            request(
                "eu.api.example.com:443",
                "/v1/users/42?fields=name",
                "session=9f2c; theme=dark",
                ua,
            ),
            Some(0),
        ),
        (
            "middle",
            request(
                "www.example.com",
                "/products?page=2&sort=price",
                "session=9f2c; canary=always",
                desktop,
            ),
            Some(10),
        ),
        (
            "none",
            request(
                "unknown.example.org",
                "/products?page=2&sort=price",
                "session=9f2c; theme=dark",
                desktop,
            ),
            None,
        ),
    ];
    let mut group = c.benchmark_group("route");
    for (name, parts, expected) in &cases {
        assert_eq!(router.route(parts).map(|r| r.index()), *expected, "{name}");
        group.bench_function(*name, |b| {
            b.iter(|| black_box(router.route(black_box(parts))).map(|r| r.upstream()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
