//! One generation of the TOML-driven proxy: the upstreams, routes and counters built from
//! one configuration, keeping what the previous generation can hand over.
//!
//! Building ([`prepare`]) is fallible and changes nothing that requests use; applying
//! ([`Prepared::commit`]) cannot fail. Per upstream, compared by name with the previous
//! generation:
//!
//! - its table is the same as written: the upstream is kept whole (balancer, health
//!   checks, passive ejection, connection pool, queue, counters);
//! - only its `backends` list changed: the upstream is kept and gets the new list; backends
//!   that stay keep their state, new ones start as configured, removed ones leave selection
//!   (requests in flight to them finish);
//! - anything else changed: the upstream is built again, and backends at the same address
//!   carry their state over (health verdict, in-flight count, operator holds, slow start,
//!   ejection); health-check counters start again from that verdict;
//! - new upstreams start as at start-up; removed ones stop their background work once the
//!   new generation is in place.
//!
//! Route counters carry over by position when the route still sends to the same upstream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lb_discovery::Discovered;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::access_log::{AccessLog, Names};
use crate::changes::UpstreamChanges;
use crate::config::{Config, UpstreamConfig};
use crate::config_proxy::ConfigProxy;
use crate::discovery;
use crate::error::StartError;
use crate::router::Router;
use crate::stats::{ProcessCounters, RouteStats, Stats, UpstreamStats};
use crate::upstream::Upstream;

/// How long building an upstream fed by discovery waits for its first answer.
const FIRST_DISCOVERY: Duration = Duration::from_secs(5);

/// A running upstream and what keeps it current.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) upstream: Arc<Upstream>,
    stats: Arc<UpstreamStats>,
    /// Its table as written (`None`: made in code, never taken as unchanged).
    written: Option<toml::Value>,
    task: Task,
}

/// The upstream's background task: discovery, health checks and its backend counters.
#[derive(Debug)]
struct Task {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// What happens to one upstream of the new configuration.
#[derive(Debug)]
enum Plan {
    /// Kept whole.
    Keep,
    /// Kept, with this new list.
    Relist(Discovered),
    /// Built again (or for the first time).
    Build,
}

/// An applied generation (see [`Prepared::commit`]).
#[derive(Debug)]
pub(crate) struct Committed {
    /// The running upstreams, by name.
    pub(crate) slots: BTreeMap<String, Slot>,
    /// What happened to each.
    pub(crate) changes: UpstreamChanges,
    /// The generation's proxy, to make current.
    pub(crate) proxy: Arc<ConfigProxy>,
    /// Upstreams replaced or removed: to stop once `proxy` is current.
    pub(crate) retired: Vec<Slot>,
}

/// A generation built and ready to apply.
pub(crate) struct Prepared {
    plans: Vec<(String, Option<toml::Value>, Plan)>,
    proxy: ConfigProxy,
}

impl Slot {
    /// Stops the background task and waits for it (it returns promptly).
    pub(crate) async fn stop(self) {
        let _ = self.task.stop.send(true);
        let _ = self.task.handle.await;
    }
}

impl Task {
    fn spawn(upstream: Arc<Upstream>, stats: Arc<UpstreamStats>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let span = tracing::info_span!("upstream", name = upstream.name());
        let set = upstream.balancer().watch_backends();
        let follow = stats.follow(set, stopped.clone());
        let handle = tokio::spawn(
            async move {
                let mut stopped = stopped;
                let run = upstream.balancer().run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                });
                tokio::join!(run, follow);
            }
            .instrument(span),
        );
        Self { stop, handle }
    }
}

/// Builds the generation `config` describes next to `previous` (the running upstreams;
/// empty at start-up) and `before` (the running generation, for its counters). Contacts
/// discovery sources of upstreams it builds, but changes nothing requests use.
pub(crate) async fn prepare(
    config: &Config,
    previous: &BTreeMap<String, Slot>,
    before: Option<&ConfigProxy>,
    process: &Arc<ProcessCounters>,
) -> Result<Prepared, StartError> {
    let mut plans = Vec::with_capacity(config.upstreams.len());
    let mut upstreams = Vec::with_capacity(config.upstreams.len());
    let mut upstream_stats = Vec::with_capacity(config.upstreams.len());
    for (name, cfg) in &config.upstreams {
        let written = config.written.upstream(name).cloned();
        let prev = previous.get(name);
        let (plan, upstream) = match prev {
            Some(p) if p.written.is_some() && p.written == written => {
                (Plan::Keep, p.upstream.clone())
            }
            Some(p) if only_backends_differ(p, written.as_ref(), cfg) => (
                Plan::Relist(discovery::listed(&cfg.backends)),
                p.upstream.clone(),
            ),
            _ => (Plan::Build, Arc::new(build(name, cfg, prev).await?)),
        };
        let stats = prev.map_or_else(
            || Arc::new(UpstreamStats::new(&upstream.balancer().backends())),
            |p| p.stats.clone(),
        );
        upstreams.push(upstream);
        upstream_stats.push(stats);
        plans.push((name.clone(), written, plan));
    }
    let index: BTreeMap<&str, usize> = config
        .upstreams
        .keys()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let router = Router::new(&config.routes, |name| index.get(name).copied())?;
    let routes = router
        .routes()
        .iter()
        .map(|r| {
            let name = upstreams[r.upstream()].name();
            before
                .and_then(|b| route_stats(b, r.index(), name))
                .unwrap_or_default()
        })
        .collect();
    let stats = Stats {
        routes,
        unrouted: before.map_or_else(Arc::default, |b| b.stats.unrouted.clone()),
        upstreams: upstream_stats.into(),
        process: process.clone(),
    };
    let proxy = ConfigProxy::new(upstreams, router, &config.server, stats);
    let access_log = match &config.access_log {
        Some(c) => Some(
            AccessLog::start(
                c,
                Names::new(
                    proxy.router.routes().len(),
                    proxy.upstreams.iter().map(|u| u.name()),
                ),
                proxy.stats.clone(),
            )
            .await?,
        ),
        None => None,
    };
    Ok(Prepared {
        plans,
        proxy: proxy.with_access_log(access_log),
    })
}

/// The upstream `name` built from `cfg`, carrying the backend states of `prev`; an upstream
/// fed by discovery gets its first answer (bounded), or `prev`'s backends without one.
async fn build(
    name: &str,
    cfg: &UpstreamConfig,
    prev: Option<&Slot>,
) -> Result<Upstream, StartError> {
    let before = prev.map(|p| p.upstream.balancer().backends());
    let upstream = Upstream::replacing(name, cfg, before.as_ref())?;
    if upstream.is_static() {
        return Ok(upstream);
    }
    match tokio::time::timeout(FIRST_DISCOVERY, upstream.balancer().update()).await {
        Ok(Ok(change)) => {
            tracing::info!(upstream = name, backends = change.added.len(), "discovered");
        }
        Ok(Err(error)) => tracing::warn!(
            upstream = name,
            error = &error as &dyn std::error::Error,
            "first discovery failed; serving the previous backends, if any, until it succeeds"
        ),
        Err(_) => tracing::warn!(
            upstream = name,
            timeout = ?FIRST_DISCOVERY,
            "first discovery is slow; serving the previous backends, if any, until it succeeds"
        ),
    }
    if let Some(before) = before.filter(|_| upstream.balancer().backends().is_empty()) {
        upstream.balancer().set_discovered(Discovered::new(before));
    }
    Ok(upstream)
}

/// True when the upstream's table differs from `prev`'s only in its `backends` list, and
/// both list their backends (no discovery source).
fn only_backends_differ(prev: &Slot, written: Option<&toml::Value>, cfg: &UpstreamConfig) -> bool {
    let (Some(old), Some(new)) = (prev.written.as_ref(), written) else {
        return false;
    };
    let without = |v: &toml::Value| {
        v.as_table().map(|t| {
            let mut t = t.clone();
            t.remove("backends");
            t
        })
    };
    cfg.discovery.is_none() && prev.upstream.is_static() && without(old) == without(new)
}

/// The counters of route `index` of `before`, when it sent to upstream `upstream` too.
fn route_stats(before: &ConfigProxy, index: usize, upstream: &str) -> Option<Arc<RouteStats>> {
    let route = before.router.routes().get(index)?;
    (before.upstreams.get(route.upstream())?.name() == upstream)
        .then(|| before.stats.routes.get(index).cloned())
        .flatten()
}

impl Prepared {
    /// The upstreams this generation built (new or rebuilt), whose health checks start at
    /// [`commit`](Self::commit): subscribe to their monitors before it to miss nothing.
    pub(crate) fn built(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.plans
            .iter()
            .zip(&self.proxy.upstreams)
            .filter(|((_, _, plan), _)| matches!(plan, Plan::Build))
            .map(|(_, upstream)| upstream)
    }

    /// Applies the generation: installs new lists and starts the background work of
    /// built upstreams. Returns the new slots, what changed, the proxy to make current
    /// and the upstreams it replaced or removed, to [`Slot::stop`] once it is current.
    pub(crate) fn commit(self, mut previous: BTreeMap<String, Slot>) -> Committed {
        let mut changes = UpstreamChanges::default();
        let mut slots = BTreeMap::new();
        let mut retired = Vec::new();
        for (i, (name, written, plan)) in self.plans.into_iter().enumerate() {
            let stats = self.proxy.stats.upstreams[i].clone();
            let slot = match (plan, previous.remove(&name)) {
                (Plan::Keep, Some(prev)) => {
                    changes.kept.push(name.clone());
                    prev
                }
                (Plan::Relist(found), Some(mut prev)) => {
                    prev.upstream.relist(found);
                    prev.written = written;
                    changes.relisted.push(name.clone());
                    prev
                }
                (_, prev) => {
                    let upstream = self.proxy.upstreams[i].clone();
                    if let Some(prev) = prev {
                        retired.push(prev);
                        changes.rebuilt.push(name.clone());
                    } else {
                        changes.added.push(name.clone());
                    }
                    Slot {
                        task: Task::spawn(upstream.clone(), stats.clone()),
                        upstream,
                        stats,
                        written,
                    }
                }
            };
            slots.insert(name, slot);
        }
        changes.removed = previous.keys().cloned().collect();
        retired.extend(previous.into_values());
        Committed {
            slots,
            changes,
            proxy: Arc::new(self.proxy),
            retired,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn slots(text: &str) -> (Config, BTreeMap<String, Slot>) {
        let config = Config::from_toml_str(text, "lb.toml").unwrap();
        (config, BTreeMap::new())
    }

    const BASE: &str = r#"
        [server]
        listen = ["127.0.0.1:0"]
        [upstreams.web]
        backends = ["127.0.0.1:1", "127.0.0.1:2"]
        [upstreams.api]
        backends = ["127.0.0.1:3"]
        health_check = { kind = "tcp", interval = "1h" }
        [[routes]]
        upstream = "web"
    "#;

    async fn start(text: &str) -> (BTreeMap<String, Slot>, Arc<ConfigProxy>) {
        let (config, previous) = slots(text);
        let prepared = prepare(&config, &previous, None, &Arc::default())
            .await
            .unwrap();
        let c = prepared.commit(previous);
        assert_eq!(c.changes.added, ["api", "web"]);
        (c.slots, c.proxy)
    }

    #[tokio::test]
    async fn each_upstream_is_kept_relisted_rebuilt_added_or_removed_by_what_changed() {
        let (slots, before) = start(BASE).await;
        let web = slots["web"].upstream.clone();
        let api = slots["api"].upstream.clone();
        let one = web.balancer().backends().iter().next().unwrap().clone();
        one.state().set_health(lb_core::Health::Unhealthy);
        let three = api.balancer().backends().iter().next().unwrap().clone();
        three.state().set_health(lb_core::Health::Healthy);
        let next = BASE
            .replace(r#""127.0.0.1:2""#, r#""127.0.0.1:4""#)
            .replace(r#"interval = "1h""#, r#"interval = "2h""#)
            + "[upstreams.new]\nbackends = [\"127.0.0.1:5\"]\n";
        let config = Config::from_toml_str(&next, "lb.toml").unwrap();
        let prepared = prepare(&config, &slots, Some(&before), &Arc::default())
            .await
            .unwrap();
        let c = prepared.commit(slots);
        let (slots, changes, current) = (c.slots, c.changes, c.proxy);
        for slot in c.retired {
            slot.stop().await;
        }
        assert_eq!(changes.relisted, ["web"]);
        assert_eq!(changes.rebuilt, ["api"]);
        assert_eq!(changes.added, ["new"]);
        assert!(changes.kept.is_empty() && changes.removed.is_empty());
        // Relisted: the same upstream, with the new list; the unchanged backend kept its
        // (unhealthy) state.
        assert!(Arc::ptr_eq(&slots["web"].upstream, &web));
        let names: Vec<_> = web
            .balancer()
            .backends()
            .iter()
            .map(|b| b.name().to_owned())
            .collect();
        assert_eq!(names, ["127.0.0.1:1", "127.0.0.1:4"]);
        let kept = web.balancer().backends().iter().next().unwrap().clone();
        assert_eq!(kept.state().health(), lb_core::Health::Unhealthy);
        // Rebuilt: a new upstream whose backend shares the old state.
        assert!(!Arc::ptr_eq(&slots["api"].upstream, &api));
        let carried = slots["api"]
            .upstream
            .balancer()
            .backends()
            .iter()
            .next()
            .unwrap()
            .clone();
        assert!(Arc::ptr_eq(carried.shared_state(), three.shared_state()));
        // The same text again keeps everything, and removing an upstream stops it.
        let config = Config::from_toml_str(
            &BASE.replace(r#""127.0.0.1:2""#, r#""127.0.0.1:4""#),
            "lb.toml",
        )
        .unwrap();
        let prepared = prepare(&config, &slots, Some(&current), &Arc::default())
            .await
            .unwrap();
        let changes = prepared.commit(slots).changes;
        assert_eq!(changes.kept, ["web"]);
        assert_eq!(changes.rebuilt, ["api"]);
        assert_eq!(changes.removed, ["new"]);
    }
}
