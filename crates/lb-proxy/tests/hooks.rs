//! The library hooks (`ProxyHttp`) driven by `lb_proxy::Server`, as an embedding user runs
//! them: every hook is called, in order, over real backends.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lb_balancer::LoadBalancer;
use lb_proxy::hooks::{Attempt, LocalResponse, Peer, ProxyHttp, Retry, Session};
use lb_proxy::{PeerOptions, Server, UpstreamClient};
use lb_selection::RoundRobin;
use lb_testkit::TestBackend;

/// Pingora's `MultiClusterRouter`, plus the other hooks, counting what it sees.
struct Router {
    api: LoadBalancer<RoundRobin>,
    web: LoadBalancer<RoundRobin>,
    client: Arc<UpstreamClient>,
    logged: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Ctx {
    retried_on: Option<StatusCode>,
}

impl ProxyHttp for Router {
    type Ctx = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        _: &mut Ctx,
    ) -> Result<(), LocalResponse> {
        if session.req_header().uri.path().starts_with("/admin") {
            return Err(LocalResponse::new(StatusCode::FORBIDDEN, "no\n"));
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        _: &mut Ctx,
    ) -> Result<Peer, LocalResponse> {
        let lb = if session.req_header().uri.path().starts_with("/api/") {
            &self.api
        } else {
            &self.web
        };
        let backend = lb
            .select_with(b"", 256, |b| !session.has_tried(b))
            .ok_or_else(LocalResponse::no_backend)?;
        Ok(Peer::new(backend, self.client.clone()))
    }

    fn upstream_request_filter(
        &self,
        session: &Session,
        upstream_request: &mut http::request::Parts,
        _: &Peer,
        _: &mut Ctx,
    ) {
        upstream_request
            .headers
            .insert(HOST, HeaderValue::from_static("api.example.com"));
        let attempt = HeaderValue::from(session.attempts());
        upstream_request.headers.insert("x-attempt", attempt);
    }

    fn after_attempt(&self, _: &Session, _: &Peer, attempt: Attempt<'_>, ctx: &mut Ctx) -> Retry {
        match attempt.status() {
            Some(s) if s.is_server_error() && ctx.retried_on.is_none() => {
                ctx.retried_on = Some(s);
                Retry::Yes
            }
            _ => Retry::No,
        }
    }

    fn response_filter(&self, _: &Session, resp: &mut http::response::Parts, ctx: &mut Ctx) {
        if let Some(s) = ctx.retried_on {
            resp.headers
                .insert("x-retried-on", HeaderValue::from(s.as_u16()));
        }
    }

    fn logging(&self, _: &Session, _: StatusCode, _: &mut Ctx) {
        self.logged.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn every_hook_runs_through_the_embedded_server() {
    let api = TestBackend::start_many(2).await;
    let web = TestBackend::start("web").await;
    let logged = Arc::new(AtomicUsize::new(0));
    let router = Router {
        api: LoadBalancer::try_from_iter(api.iter().map(|b| b.addr().to_string())).unwrap(),
        web: LoadBalancer::try_from_iter([web.addr().to_string()]).unwrap(),
        client: Arc::new(UpstreamClient::new(PeerOptions::default()).unwrap()),
        logged: logged.clone(),
    };
    let server = Server::new(router).bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get = |path: &str| {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(Full::default())
            .unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (parts, String::from_utf8_lossy(&body).into_owned())
        }
    };

    // Routing in upstream_peer: two API backends in turn, the web one otherwise.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(get("/api/users").await.1);
    }
    seen.sort();
    assert_eq!(seen, ["b0", "b0", "b1", "b1"]);
    assert_eq!(get("/index.html").await.1, "web");

    // upstream_request_filter rewrote Host and numbered the attempt.
    let headers = web.last_headers().await.unwrap();
    assert_eq!(headers[HOST], "api.example.com");
    assert_eq!(headers["x-attempt"], "1");

    // request_filter answers locally; no backend sees it.
    let (parts, body) = get("/admin").await;
    assert_eq!(
        (parts.status, body.as_str()),
        (StatusCode::FORBIDDEN, "no\n")
    );

    // after_attempt retried a 500 on the other API backend (upstream_peer skipped the tried
    // one), and response_filter marked the response.
    api[0].set_status(500);
    let failed_before = api[0].hits();
    let mut retried = 0;
    for _ in 0..4 {
        let (parts, body) = get("/api/x").await;
        assert_eq!((parts.status, body.as_str()), (StatusCode::OK, "b1"));
        if let Some(v) = parts.headers.get("x-retried-on") {
            assert_eq!(v, "500");
            retried += 1;
        }
    }
    assert!(retried > 0);
    assert_eq!(
        api[0].hits() - failed_before,
        retried,
        "each 500 retried once"
    );

    // logging ran once per request: 4 + 1 + 1 + 4.
    assert_eq!(logged.load(Ordering::SeqCst), 10);
    let _ = stop.send(());
    assert!(running.await.unwrap(), "drained in time");
}

#[tokio::test]
async fn the_embedded_server_logs_every_request() {
    let web = TestBackend::start("web").await;
    let router = Arc::new(AtomicUsize::new(0));
    struct Counting(
        LoadBalancer<RoundRobin>,
        Arc<UpstreamClient>,
        Arc<AtomicUsize>,
    );
    impl ProxyHttp for Counting {
        type Ctx = ();
        fn new_ctx(&self) {}
        async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Peer, LocalResponse> {
            let b = self
                .0
                .select(b"", 8)
                .ok_or_else(LocalResponse::no_backend)?;
            Ok(Peer::new(b, self.1.clone()))
        }
        fn logging(&self, _: &Session, status: StatusCode, _: &mut ()) {
            assert_eq!(status, StatusCode::OK);
            self.2.fetch_add(1, Ordering::SeqCst);
        }
    }
    let hooks = Counting(
        LoadBalancer::try_from_iter([web.addr().to_string()]).unwrap(),
        Arc::new(UpstreamClient::new(PeerOptions::default()).unwrap()),
        router.clone(),
    );
    let server = Server::new(hooks).bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for _ in 0..5 {
        let req = Request::get(format!("http://{addr}/"))
            .body(Full::default())
            .unwrap();
        assert_eq!(client.request(req).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(router.load(Ordering::SeqCst), 5);
    let _ = stop.send(());
    assert!(running.await.unwrap());
}
