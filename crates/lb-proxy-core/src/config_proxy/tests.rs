//! The metrics cost the request path no allocation: `ConfigProxy`'s `after_attempt` and
//! `logging` hooks (which record them) are measured with a per-thread allocation counter
//! on a proxy built from a real configuration, the access log off.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use http::{Request, Response, StatusCode};

use crate::config::Config;
use crate::config_proxy::ConfigProxy;
use crate::hooks::{Attempt, ConnInfo, Peer, ProxyHttp, Session};
use crate::router::Router;
use crate::stats::Stats;
use crate::upstream::Upstream;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
[upstreams.web]
backends = ["127.0.0.1:9001", "127.0.0.1:9002"]
[[routes]]
upstream = "web"
"#;

#[tokio::test]
async fn recording_a_request_allocates_nothing() {
    let config = Config::from_toml_str(CONFIG, "test.toml").unwrap();
    let upstreams: Vec<Arc<Upstream>> = config
        .upstreams
        .iter()
        .map(|(name, c)| Arc::new(Upstream::new(name, c).unwrap()))
        .collect();
    let router = Router::new(&config.routes, |_| Some(0)).unwrap();
    let stats = Stats::new(1, upstreams.iter().map(|u| u.balancer().backends()));
    let proxy = ConfigProxy::new(upstreams, router, &config.server, stats);
    let backend = proxy.upstreams[0].balancer().backends()[1].clone();
    let conn = ConnInfo {
        peer: "127.0.0.1:50000".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        tls: false,
    };
    let (parts, ()) = Request::get("/x").body(()).unwrap().into_parts();
    let mut session = Session::new(parts, conn);
    let mut ctx = proxy.new_ctx();
    proxy.request_filter(&mut session, &mut ctx).await.unwrap();
    session.begin_attempt();
    let peer = Peer::new(backend.begin_request(), proxy.upstreams[0].client().clone());
    let (mut head, ()) = Response::new(()).into_parts();
    head.status = StatusCode::OK;
    let (mut upstream_req, ()) = Request::get("/x").body(()).unwrap().into_parts();
    proxy.upstream_request_filter(&session, &mut upstream_req, &peer, &mut ctx);

    let control = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!(control.count_total, 1, "the instrument counts");
    let info = allocation_counter::measure(|| {
        proxy.after_attempt(&session, &peer, Attempt::Response(&head), &mut ctx);
        proxy.logging(&session, StatusCode::OK, &mut ctx);
    });
    assert_eq!(info.count_total, 0, "{info:?}");

    let stats = Arc::clone(&proxy.stats);
    assert_eq!(stats.routes[0].requests.get(), [0, 1, 0, 0, 0]);
    let backends = stats.upstreams[0].backends();
    let b = &backends[backend.addr()];
    assert_eq!(b.responses.get(), [0, 1, 0, 0, 0]);
    assert_eq!(b.ttfb.count(), 1);
    assert_eq!(b.connect_errors.load(Relaxed), 0);
}
