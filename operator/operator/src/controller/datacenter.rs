//! DataCenterCluster controller: probes each member cluster and reports reachability,
//! version and node capacity.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::context::Context;
use super::status::{Reconciled, error_policy, field_manager};
use crate::error::{Error, Result};
use crate::member::MemberError;
use crate::server::PendingCache;
use govcloud_api::conditions as types;
use govcloud_api::datacenter::{DataCenterCluster, DataCenterClusterStatus};
use govcloud_core::cluster::{self, NodeSummary};
use govcloud_core::conditions;

/// Controller name (metrics label, field manager suffix).
pub const CONTROLLER: &str = "datacentercluster";

impl Reconciled for DataCenterCluster {
    const CONTROLLER: &'static str = CONTROLLER;

    fn api(client: Client, _: &Self) -> Api<Self> {
        Api::all(client)
    }
}

/// Result of probing a member.
struct Probe {
    version: String,
    nodes: NodeSummary,
}

async fn probe(client: &Client, timeout: Duration) -> Result<Probe, MemberError> {
    let call = async {
        let version = client.apiserver_version().await.map_err(MemberError::Unreachable)?;
        let nodes: Api<Node> = Api::all(client.clone());
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(MemberError::Unreachable)?;
        Ok(Probe {
            version: version.git_version,
            nodes: cluster::summarize_nodes(&list.items),
        })
    };
    tokio::time::timeout(timeout * 2, call)
        .await
        .map_err(|_| MemberError::Timeout(timeout * 2))?
}

/// Computes the new status from the previous one and the probe outcome. When the probe
/// failed, the last known version and capacity are kept (marked stale by the conditions).
fn desired_status(
    previous: &DataCenterClusterStatus,
    generation: Option<i64>,
    outcome: &Result<Probe, MemberError>,
    now: &Time,
) -> DataCenterClusterStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    let desired = match outcome {
        Ok(p) => {
            status.kubernetes_version = Some(p.version.clone());
            status.node_count = Some(p.nodes.count);
            status.ready_node_count = Some(p.nodes.ready);
            status.capacity = Some(p.nodes.capacity.to_status());
            status.allocatable = Some(p.nodes.allocatable.to_status());
            cluster::reachable_conditions(&p.nodes, &p.version)
        }
        Err(e) => cluster::unreachable_conditions(e.reason(), &e.to_string()),
    };
    status.conditions = conditions::merge(&previous.conditions, &desired, generation, now);
    status
}

/// True when `new` differs from `old` in anything but the probe time. There is no periodic
/// heartbeat: a steady fleet costs no writes (the time of the latest probe is the metric
/// `govcloud_cluster_probe_timestamp_seconds`, like a node's Lease instead of its status).
fn needs_write(old: Option<&DataCenterClusterStatus>, new: &DataCenterClusterStatus) -> bool {
    let Some(old) = old else { return true };
    let mut a = old.clone();
    let mut b = new.clone();
    a.last_probe_time = None;
    b.last_probe_time = None;
    a != b
}

#[instrument(skip_all, fields(cluster = %dcc.name_any()))]
async fn reconcile(dcc: Arc<DataCenterCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let name = dcc.metadata.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    let outcome = match ctx.members.client_for(&dcc).await {
        Ok(client) => probe(&client, ctx.members.timeout()).await,
        Err(e) => Err(e),
    };

    let now = Timestamp::now();
    let previous = dcc.status.clone().unwrap_or_default();
    let mut status = desired_status(&previous, dcc.metadata.generation, &outcome, &Time(now));
    status.last_probe_time = previous.last_probe_time.clone();

    let labels = [name.as_str(), dcc.spec.region.as_str(), dcc.spec.zone.as_str()];
    ctx.metrics
        .cluster_reachable
        .with_label_values(&labels)
        .set(i64::from(outcome.is_ok()));
    ctx.metrics
        .cluster_probe_timestamp
        .with_label_values(&labels)
        .set(now.as_millisecond() as f64 / 1000.0);
    if let Ok(p) = &outcome {
        let clamp = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
        ctx.metrics
            .cluster_allocatable_cpu
            .with_label_values(&labels)
            .set(clamp(p.nodes.allocatable.cpu.0));
        ctx.metrics
            .cluster_allocatable_memory
            .with_label_values(&labels)
            .set(clamp(p.nodes.allocatable.memory.whole()));
    }

    ctx.metrics.cache_objects.reset();
    ctx.metrics.cache_bytes.reset();
    for (cluster, cache) in ctx.caches.all() {
        let cluster = if cluster.is_empty() { "hub" } else { cluster.as_str() };
        for (kind, objects, bytes) in cache.sizes() {
            let kind = kind.gvk().2;
            let clamp = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
            ctx.metrics
                .cache_objects
                .with_label_values(&[cluster, kind])
                .set(clamp(objects));
            ctx.metrics
                .cache_bytes
                .with_label_values(&[cluster, kind])
                .set(clamp(bytes));
        }
    }

    if needs_write(dcc.status.as_ref(), &status) {
        status.last_probe_time = Some(Time(now));
        let api: Api<DataCenterCluster> = Api::all(ctx.client.clone());
        let body = json!({
            "apiVersion": DataCenterCluster::api_version(&()),
            "kind": DataCenterCluster::kind(&()),
            "status": status,
        });
        api.patch_status(&name, &field_manager::<DataCenterCluster>(), &Patch::Apply(&body))
            .await?;
    }

    let was_reachable = conditions::find(&previous.conditions, types::REACHABLE).map(|c| c.status.clone());
    let next = match &outcome {
        Ok(_) => {
            if was_reachable.as_deref() == Some(conditions::FALSE) {
                publish(
                    &ctx,
                    &dcc,
                    EventType::Normal,
                    "MemberReachable",
                    "The member cluster answers again.".into(),
                )
                .await;
                info!("member cluster reachable again");
            }
            if let Ok(mut f) = ctx.probe_failures.lock() {
                f.remove(&name);
            }
            ctx.settings.probe_interval
        }
        Err(e) => {
            if was_reachable.as_deref() != Some(conditions::FALSE) {
                publish(&ctx, &dcc, EventType::Warning, e.reason(), e.to_string()).await;
            }
            warn!(error = %e, "member cluster unreachable");
            ctx.metrics.reconcile_failed(CONTROLLER, e.category());
            let failures = ctx
                .probe_failures
                .lock()
                .map(|mut f| {
                    let n = f.entry(name.clone()).or_insert(0);
                    *n = n.saturating_add(1);
                    *n
                })
                .unwrap_or(1);
            cluster::probe_backoff(failures, ctx.settings.max_probe_backoff)
        }
    };
    Ok(Action::requeue(next))
}

async fn publish(ctx: &Context, dcc: &DataCenterCluster, type_: EventType, reason: &str, note: String) {
    ctx.publish(&dcc.object_ref(&()), type_, reason, "Probe", &note).await;
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, synced: PendingCache, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let (store, stream) = crate::lenient::reflector::<DataCenterCluster>(
        ctx.client.clone(),
        watcher::Config::default(),
        ctx.lenient.clone(),
    );
    let controller = Controller::for_stream(stream, store);
    let store = controller.store();
    super::context::signal_when_synced(store.clone(), synced);
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency))
        .watches_stream(
            crate::lenient::without_errors(
                crate::lenient::watch(secrets, watcher::Config::default())
                    .backoff(crate::lenient::watch_backoff())
                    .touched_objects(),
            ),
            move |secret: Secret| {
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|d| d.spec.kubeconfig_secret.as_ref().is_some_and(|r| r.name == name))
                    .map(|d| ObjectRef::from_obj(&*d))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<DataCenterCluster>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    #[test]
    fn unreachable_keeps_last_known_capacity() {
        let ok = Ok(Probe {
            version: "v1.34.4".into(),
            nodes: NodeSummary {
                count: 3,
                ready: 3,
                ..Default::default()
            },
        });
        let first = desired_status(&Default::default(), Some(1), &ok, &t(10));
        let err: Result<Probe, MemberError> = Err(MemberError::Timeout(Duration::from_secs(5)));
        let second = desired_status(&first, Some(1), &err, &t(20));
        assert_eq!(second.node_count, Some(3));
        assert_eq!(second.kubernetes_version.as_deref(), Some("v1.34.4"));
        assert!(!conditions::is_true(&second.conditions, types::REACHABLE));
        assert!(!conditions::is_true(&second.conditions, types::READY));
    }

    #[test]
    fn unchanged_status_is_not_rewritten() {
        let ok = || {
            Ok(Probe {
                version: "v1.34.4".into(),
                nodes: NodeSummary {
                    count: 1,
                    ready: 1,
                    ..Default::default()
                },
            })
        };
        let mut first = desired_status(&Default::default(), Some(1), &ok(), &t(10));
        first.last_probe_time = Some(t(10));
        let mut second = desired_status(&first, Some(1), &ok(), &t(4000));
        second.last_probe_time = first.last_probe_time.clone();
        // Unchanged, however long ago the last write was: no heartbeat.
        assert!(!needs_write(Some(&first), &second));
        assert!(needs_write(None, &second));
        let err: Result<Probe, MemberError> = Err(MemberError::Timeout(Duration::from_secs(5)));
        let third = desired_status(&first, Some(1), &err, &t(4000));
        assert!(needs_write(Some(&first), &third));
    }
}
