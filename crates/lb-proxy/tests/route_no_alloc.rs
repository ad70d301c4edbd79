//! `Router::route` allocates nothing on the common path: host (header and URI authority),
//! path, method, header, cookie and query conditions, matching and not matching, through a
//! table where requests walk past many routes, including escaped query values for `value`
//! and `regex` conditions. The one documented exception, a `regex` on an escaped query value
//! longer than 256 bytes, is measured too.
//!
//! The counter (`allocation-counter`) is per thread, so tests running in parallel do not
//! disturb each other; the measurement first proves the instrument counts.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use http::request::Parts;
use lb_proxy::config::Config;
use lb_proxy::router::Router;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
[upstreams.a]
backends = ["127.0.0.1:9001"]
[upstreams.b]
backends = ["127.0.0.1:9002"]

[[routes]]
upstream = "a"
host = ["api.example.com", "*.api.example.com"]
path_prefix = "/v1/"
headers = [{ name = "user-agent", regex = "Mobile" }]

[[routes]]
upstream = "a"
path_regex = "^/v[0-9]+/"
methods = ["GET", "HEAD"]

[[routes]]
upstream = "b"
cookies = [{ name = "canary", value = "always" }, { name = "session", regex = "^[a-f0-9]+$" }]

[[routes]]
upstream = "b"
query = [{ name = "variant", value = "b e" }, { name = "user", regex = "^[a-z]+$" }]

[[routes]]
upstream = "a"
headers = [{ name = "x-canary", value = "1" }, { name = "x-debug" }]

[[routes]]
upstream = "b"
path = "/health"
"#;

fn router() -> Router {
    let config = Config::from_toml_str(CONFIG, "t.toml").unwrap();
    Router::new(&config.routes, |n| Some(usize::from(n == "b"))).unwrap()
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

#[test]
fn routing_allocates_nothing_on_the_common_path() {
    let r = router();
    let requests = [
        (
            req(
                "GET",
                "/v1/x",
                &[
                    ("host", "eu.api.example.com:443"),
                    ("user-agent", "a Mobile b"),
                ],
            ),
            Some(0),
        ),
        (
            req(
                "GET",
                "https://api.example.com/v1/x",
                &[("user-agent", "Mobile")],
            ),
            Some(0),
        ),
        (req("GET", "/v2/x", &[("host", "www.example.com")]), Some(1)),
        (
            req(
                "POST",
                "/",
                &[
                    ("cookie", "a=1; canary=always"),
                    ("cookie", "session=\"beef\""),
                ],
            ),
            Some(2),
        ),
        (req("POST", "/?x=1&variant=b+e&user=al%69ce", &[]), Some(3)),
        (
            req("POST", "/", &[("x-canary", "1"), ("x-debug", "")]),
            Some(4),
        ),
        (
            req("POST", "/health?probe", &[("cookie", "canary=never")]),
            Some(5),
        ),
        (
            req(
                "POST",
                "/nothing?variant=a",
                &[("cookie", "session=zz"), ("x-canary", "0")],
            ),
            None,
        ),
    ];
    for (parts, expected) in &requests {
        assert_eq!(
            r.route(parts).map(|route| route.index()),
            *expected,
            "{parts:?}"
        );
    }
    let control = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!(control.count_total, 1);
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            for (parts, _) in &requests {
                std::hint::black_box(r.route(std::hint::black_box(parts)));
            }
        }
    });
    assert_eq!(info.count_total, 0, "routing allocated: {info:?}");
}

#[test]
fn only_a_regex_on_a_long_escaped_query_value_allocates() {
    let r = router();
    let long = format!("/?variant=b%20e&user={}", "%61".repeat(100));
    let escaped = req("POST", &long, &[]);
    assert_eq!(r.route(&escaped).map(|route| route.index()), Some(3));
    let info = allocation_counter::measure(|| {
        std::hint::black_box(r.route(&escaped));
    });
    assert_eq!(info.count_total, 1, "{info:?}");
}
