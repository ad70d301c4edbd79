//! Route matcher: a fuzzed `[[routes]]` table is loaded as a configuration file, a
//! [`Router`] is built from it as the proxy does, and fuzzed requests are routed.
//!
//! Checks: nothing panics; a configuration error has a location; `route` returns the first
//! route whose `matches` is true (and `None` only when none is); the routed upstream is one
//! of the three defined; header rules apply to any request and response header map.

#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use lb_fuzz::config_check;
use lb_fuzz::request::FuzzRequest;
use lb_fuzz::routes::{self, FuzzRoute, UPSTREAMS};
use lb_proxy::router::Router;
use libfuzzer_sys::fuzz_target;

/// A route table and the requests sent through it.
#[derive(Debug, Arbitrary)]
struct Input {
    routes: Vec<FuzzRoute>,
    requests: Vec<FuzzRequest>,
}

fuzz_target!(|input: Input| {
    let Some(text) = routes::config_text(&input.routes) else {
        return;
    };
    let Some(config) = config_check::check(&text, Path::new("router.toml")) else {
        return;
    };
    let lookup = |name: &str| UPSTREAMS.iter().position(|u| *u == name);
    let router = match Router::new(&config.routes, lookup) {
        Ok(r) => r,
        Err(err) => panic!("a loaded configuration gives no router: {err}"),
    };
    assert_eq!(router.routes().len(), input.routes.len());
    for request in &input.requests {
        let mut parts = request.parts();
        let first = router.routes().iter().position(|r| r.matches(&parts));
        let routed = router.route(&parts);
        assert_eq!(
            routed.map(|r| r.index()),
            first,
            "route() disagrees with the first matching route for {parts:?}"
        );
        if let Some(route) = routed {
            assert!(route.upstream() < UPSTREAMS.len());
            route.request_headers().apply(&mut parts.headers);
            let mut response = parts.headers.clone();
            route.response_headers().apply(&mut response);
        }
    }
});
