//! Pingora's `BalancedProxy` (the load-balancing chapter's full example, in
//! `../shared/seeds/000_*.txt`) written with `lb-proxy`'s hooks: round robin over three
//! backends with an HTTP health check every 10 seconds (2 passes to rise, 3 failures to
//! fall, kept-alive check connections), the request path as the selection key, and the
//! `Host` header set for the backends in `upstream_request_filter`. As in the seed, the
//! backends are reached over TLS with the SNI name `api.example.com` (certificates
//! verified against the system roots); `--plain` talks plain HTTP to local test servers.
//!
//! ```text
//! cargo run -p lb-proxy --example balanced_proxy -- api1.example.com:443 api2.example.com:443
//! cargo run -p lb-proxy --example balanced_proxy -- --plain 127.0.0.1:9001 127.0.0.1:9002
//! curl http://127.0.0.1:8080/
//! ```
//!
//! The TOML equivalent is `examples/seed-balanced-proxy.toml`; `docs/seeds.md` maps every
//! seed program to its counterpart.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use lb_balancer::LoadBalancer;
use lb_health::{CheckParams, HttpHealthCheck, TlsConfig};
use lb_proxy::hooks::{LocalResponse, Peer, ProxyHttp, Session};
use lb_proxy::{PeerOptions, Server, TlsOptions, UpstreamClient};
use lb_selection::RoundRobin;

struct BalancedProxy {
    load_balancer: Arc<LoadBalancer<RoundRobin>>,
    client: Arc<UpstreamClient>,
}

impl ProxyHttp for BalancedProxy {
    type Ctx = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        session: &mut Session,
        _: &mut (),
    ) -> Result<Peer, LocalResponse> {
        // The path as the hash key (round robin ignores it; a hashing selector would not).
        let path = session.req_header().uri.path().as_bytes();
        let upstream = self
            .load_balancer
            .select(path, 256)
            .ok_or_else(LocalResponse::no_backend)?;
        tracing::debug!(backend = %upstream.backend(), "selected upstream");
        Ok(Peer::new(upstream, self.client.clone()))
    }

    fn upstream_request_filter(
        &self,
        _: &Session,
        upstream_request: &mut http::request::Parts,
        _: &Peer,
        _: &mut (),
    ) {
        upstream_request
            .headers
            .insert(HOST, HeaderValue::from_static("api.example.com"));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let plain = args.first().is_some_and(|a| a == "--plain");
    if plain {
        args.remove(0);
    }
    let backends = if args.is_empty() {
        vec![
            "api1.example.com:443".into(),
            "api2.example.com:443".into(),
            "api3.example.com:443".into(),
        ]
    } else {
        args
    };

    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(&backends)?;
    let params = CheckParams {
        rise: NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
        fall: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
        ..CheckParams::default()
    };
    let mut options = PeerOptions::default();
    let mut check = HttpHealthCheck::builder(params);
    if !plain {
        let mut tls = TlsOptions::default();
        tls.sni = Some("api.example.com".into());
        options.tls = Some(tls);
        check = check.tls(
            TlsConfig::builder()
                .server_name("api.example.com")
                .build()?,
        );
    }
    let check = check
        .host("api.example.com")
        .path("/health")
        .reuse_connection(true)
        .build()?;
    lb.set_health_check(check);
    lb.health_check_frequency = Some(Duration::from_secs(10));
    let lb = Arc::new(lb);

    // The background health-check service (Pingora's `background_service`).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = {
        let lb = lb.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            lb.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
        })
    };

    let proxy = BalancedProxy {
        load_balancer: lb,
        client: Arc::new(UpstreamClient::new(options)?),
    };
    let server = Server::new(proxy).bind("0.0.0.0:8080").await?;
    tracing::info!(listen = ?server.local_addrs(), "load balancer running");
    server
        .run(async {
            let _ = lb_proxy::signals::terminated().await;
        })
        .await;
    let _ = stop.send(true);
    background.await?;
    Ok(())
}
