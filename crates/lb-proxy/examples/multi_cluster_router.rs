//! Pingora's `MultiClusterRouter` (the upstream-selection chapter, in
//! `../shared/seeds/001_*.txt`) written with `lb-proxy`'s hooks: `/api/` goes to the API
//! cluster, `/static/` to the static cluster, everything else to the web cluster; each
//! cluster is a round-robin `LoadBalancer` with TCP health checks.
//!
//! ```text
//! cargo run -p lb-proxy --example multi_cluster_router
//! curl http://127.0.0.1:8080/api/users
//! ```
//!
//! The TOML equivalent is `examples/seed-multi-cluster.toml`.

use std::sync::Arc;
use std::time::Duration;

use lb_balancer::LoadBalancer;
use lb_health::{CheckParams, TcpHealthCheck};
use lb_proxy::hooks::{LocalResponse, Peer, ProxyHttp, Session};
use lb_proxy::{PeerOptions, Server, TlsOptions, UpstreamClient};
use lb_selection::RoundRobin;

/// A cluster: its balancer and the client that reaches its backends (Pingora's `HttpPeer`
/// options: here plain HTTP, or TLS with an SNI name).
struct Cluster {
    lb: Arc<LoadBalancer<RoundRobin>>,
    client: Arc<UpstreamClient>,
}

struct MultiClusterRouter {
    api: Cluster,
    web: Cluster,
    statics: Cluster,
}

impl ProxyHttp for MultiClusterRouter {
    type Ctx = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        session: &mut Session,
        _: &mut (),
    ) -> Result<Peer, LocalResponse> {
        let path = session.req_header().uri.path();
        let cluster = if path.starts_with("/api/") {
            &self.api
        } else if path.starts_with("/static/") {
            &self.statics
        } else {
            &self.web
        };
        let backend = cluster
            .lb
            .select(b"", 256)
            .ok_or_else(LocalResponse::no_backend)?;
        Ok(Peer::new(backend, cluster.client.clone()))
    }
}

fn build_cluster(backends: &[&str], sni: Option<&str>) -> anyhow::Result<Cluster> {
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(backends)?;
    lb.set_health_check(TcpHealthCheck::new(CheckParams::default()));
    // Without a frequency `run` checks nothing (as in Pingora): check every second.
    lb.health_check_frequency = Some(Duration::from_secs(1));
    let mut options = PeerOptions::default();
    options.tls = sni.map(|name| {
        let mut tls = TlsOptions::default();
        tls.sni = Some(name.to_owned());
        tls
    });
    Ok(Cluster {
        lb: Arc::new(lb),
        client: Arc::new(UpstreamClient::new(options)?),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let router = MultiClusterRouter {
        api: build_cluster(
            &["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"],
            None,
        )?,
        // The web cluster speaks TLS, verified for www.example.com, as in the seed.
        web: build_cluster(
            &["127.0.0.1:8443", "127.0.0.1:8444"],
            Some("www.example.com"),
        )?,
        statics: build_cluster(
            &["127.0.0.1:8091", "127.0.0.1:8092", "127.0.0.1:8093"],
            None,
        )?,
    };
    // One health-check task per cluster, stopped with the server.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();
    for lb in [&router.api.lb, &router.web.lb, &router.statics.lb] {
        let (lb, mut stopped) = (lb.clone(), stopped.clone());
        background.push(tokio::spawn(async move {
            lb.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
        }));
    }
    let server = Server::new(router).bind("0.0.0.0:8080").await?;
    tracing::info!(listen = ?server.local_addrs(), "multi-cluster router running");
    server
        .run(async {
            let _ = lb_proxy::signals::terminated().await;
        })
        .await;
    let _ = stop.send(true);
    for task in background {
        task.await?;
    }
    Ok(())
}
