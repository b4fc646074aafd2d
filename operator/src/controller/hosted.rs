//! HostedSystem controller: run the system's components on its agency's cluster, allow
//! exactly its declared flows, report replicas and problems, keep volumes on deletion.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{instrument, warn};

use super::Context;
use super::agency::apply_children;
use super::members::{MemberCache, api};
use crate::api::NetworkZone;
use crate::api::agency::AgencyCloud;
use crate::api::hosted::{ComponentKind, ComponentStatus, ExposureMode, HostedSystem, HostedSystemStatus};
use crate::core::agency::{Kind, SYSTEM_LABEL};
use crate::core::conditions::{self, Desired};
use crate::core::hosted as build;
use crate::error::{Error, Result};
use crate::server::PendingCache;

/// Controller name.
pub const CONTROLLER: &str = "hostedsystem";
/// Finalizer that removes the system's objects from the member cluster.
pub const FINALIZER: &str = "govcloud.io/system-cleanup";

const AVAILABLE: &str = "Available";
const PROGRESSING: &str = "Progressing";
const DEGRADED: &str = "Degraded";

/// The agency whose environment namespace this is (from the AgencyCloud cache).
fn agency_of(ctx: &Context, namespace: &str) -> Option<Arc<AgencyCloud>> {
    ctx.agencies.get()?.state().into_iter().find(|a| {
        a.status
            .as_ref()
            .is_some_and(|s| s.environments.iter().any(|e| e.namespace == namespace))
    })
}

struct Target {
    client: Client,
    cache: Arc<MemberCache>,
    cluster: String,
    zone: NetworkZone,
    agency: Arc<AgencyCloud>,
}

async fn target(ctx: &Context, namespace: &str) -> std::result::Result<Target, (&'static str, String)> {
    let agency = agency_of(ctx, namespace).ok_or((
        "NoAgency",
        format!("Namespace {namespace} is not an environment of any provisioned AgencyCloud; create hosted systems in your agency's namespaces."),
    ))?;
    let placement = agency
        .status
        .as_ref()
        .and_then(|s| s.placement.clone())
        .ok_or(("NotPlaced", "The agency cloud is not placed yet.".to_string()))?;
    let dcc = ctx
        .clusters
        .state()
        .into_iter()
        .find(|d| d.name_any() == placement.cluster)
        .ok_or((
            "ClusterNotRegistered",
            format!("Cluster {} is not registered.", placement.cluster),
        ))?;
    if dcc
        .status
        .as_ref()
        .is_some_and(|s| conditions::find(&s.conditions, "Reachable").is_some_and(|c| c.status == conditions::FALSE))
    {
        return Err((
            "ClusterUnreachable",
            format!(
                "Cluster {} is unreachable; nothing was changed or deleted, retrying.",
                placement.cluster
            ),
        ));
    }
    let (client, version) = ctx.members.versioned_client_for(&dcc).await.map_err(|e| {
        (
            "ClusterUnreachable",
            format!("Cannot connect to cluster {}: {e}", placement.cluster),
        )
    })?;
    let cache = ctx.caches.ensure(&placement.cluster, &version, &client);
    cache.wait_synced(Duration::from_secs(10)).await;
    Ok(Target {
        client,
        cache,
        cluster: placement.cluster,
        zone: placement.zone,
        agency,
    })
}

fn pp() -> PatchParams {
    PatchParams::apply(&format!("govcloud-operator/{CONTROLLER}")).force()
}

async fn write_status(ctx: &Context, hs: &HostedSystem, status: HostedSystemStatus) -> Result<()> {
    if hs.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let ns = hs.namespace().unwrap_or_default();
    let body = json!({"apiVersion": HostedSystem::api_version(&()), "kind": HostedSystem::kind(&()), "status": status});
    Api::<HostedSystem>::namespaced(ctx.client.clone(), &ns)
        .patch_status(&hs.name_any(), &pp(), &Patch::Apply(&body))
        .await?;
    Ok(())
}

fn status_with(
    hs: &HostedSystem,
    cluster: Option<String>,
    components: Vec<ComponentStatus>,
    desired: &[Desired<'_>],
) -> HostedSystemStatus {
    let prev = hs.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let mut transitions = prev.migration_transitions.clone();
    if let Some(m) = &hs.spec.migration {
        transitions
            .entry(format!("{:?}", m.phase))
            .or_insert_with(|| now.clone());
    }
    let (ready, want) = components.iter().fold((0, 0), |(r, w), c| (r + c.ready, w + c.desired));
    HostedSystemStatus {
        conditions: conditions::merge(&prev.conditions, desired, hs.metadata.generation, &now),
        observed_generation: hs.metadata.generation,
        cluster,
        ready_summary: if components.is_empty() {
            prev.ready_summary
        } else {
            Some(format!("{ready}/{want}"))
        },
        components: if components.is_empty() {
            prev.components
        } else {
            components
        },
        migration_transitions: transitions,
        url: build::url(&hs.spec),
    }
}

async fn apply(hs: Arc<HostedSystem>, ctx: &Context) -> Result<Action> {
    let ns = hs.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = hs.name_any();
    let spec = &hs.spec;
    let t = match target(ctx, &ns).await {
        Ok(t) => t,
        Err((reason, msg)) => {
            let status = status_with(
                &hs,
                None,
                vec![],
                &[
                    Desired::new(AVAILABLE, false, reason, msg.clone()),
                    Desired::new(PROGRESSING, false, reason, "Waiting (see Available)."),
                    Desired::new(DEGRADED, true, reason, msg),
                ],
            );
            write_status(ctx, &hs, status).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    let agency_level = t.agency.spec.cloud.security_level;
    let mut problems = Vec::new();
    if spec.security_level > agency_level {
        problems.push(format!(
            "spec.securityLevel {} is above the agency's level {agency_level}; lower it or raise the agency's level",
            spec.security_level
        ));
    }
    if let Some(e) = &spec.exposure
        && e.mode == ExposureMode::Internet
    {
        if t.zone == NetworkZone::Internal {
            problems.push("spec.exposure.mode: Internet is not possible on the internal zone (政务内网), which has no internet exit".to_string());
        } else if spec.security_level >= 3 {
            problems.push("spec.exposure.mode: Internet at level 3 needs a recorded platform approval, which this version cannot record yet; use GovernmentNetwork".to_string());
        }
    }
    if !problems.is_empty() {
        let msg = problems.join("; ");
        let status = status_with(
            &hs,
            Some(t.cluster.clone()),
            vec![],
            &[
                Desired::new(AVAILABLE, false, "InvalidSpec", "Nothing was deployed (see Degraded)."),
                Desired::new(
                    PROGRESSING,
                    false,
                    "InvalidSpec",
                    "Nothing was deployed (see Degraded).",
                ),
                Desired::new(DEGRADED, true, "InvalidSpec", msg),
            ],
        );
        write_status(ctx, &hs, status).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    }

    let agency = t.agency.name_any();
    let children = build::children(&agency, agency_level, &name, &ns, spec);
    match apply_children(CONTROLLER, &ctx.metrics, &t.client, Some(&t.cache), &children).await {
        Ok(_) => {}
        // The cluster refused an object (registry policy, quota, Pod Security): say which and why.
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 403 || s.code == 422 => {
            let msg = format!(
                "The cluster refused the system: {} (check the image registry, quota and security settings)",
                s.message
            );
            let status = status_with(
                &hs,
                Some(t.cluster.clone()),
                vec![],
                &[
                    Desired::new(AVAILABLE, false, "Refused", "Not deployed (see Degraded)."),
                    Desired::new(PROGRESSING, false, "Refused", "Not deployed (see Degraded)."),
                    Desired::new(DEGRADED, true, "RefusedByCluster", msg),
                ],
            );
            write_status(ctx, &hs, status).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        Err(e) => return Err(e),
    }
    prune(&t.client, &t.cache, &ns, &name, &children).await?;

    // Status from the member cache.
    let mut comps = Vec::new();
    let mut progressing = Vec::new();
    let mut degraded = Vec::new();
    for c in &spec.components {
        let obj = build::object_name(&name, &c.name);
        let kind = match c.kind {
            ComponentKind::Stateless => Kind::Deployment,
            ComponentKind::Stateful => Kind::StatefulSet,
        };
        let live = t.cache.get(kind, Some(&ns), &obj);
        let st = live
            .as_ref()
            .map(|l| l.data.get("status").cloned().unwrap_or_default())
            .unwrap_or_default();
        let num = |k: &str| st.get(k).and_then(|v| v.as_i64()).unwrap_or(0) as i32;
        let ready = num("readyReplicas");
        let updated = num("updatedReplicas");
        let observed = st.get("observedGeneration").and_then(|v| v.as_i64());
        let generation = live.as_ref().and_then(|l| l.metadata.generation);
        if ready < c.replicas || updated < c.replicas || observed != generation {
            progressing.push(format!("{}: {ready}/{} ready", c.name, c.replicas));
        }
        if let Some(conds) = st.get("conditions").and_then(|v| v.as_array()) {
            for cond in conds {
                let failing = cond.get("type").and_then(|t| t.as_str()) == Some("ReplicaFailure")
                    && cond.get("status").and_then(|s| s.as_str()) == Some("True");
                if failing {
                    degraded.push(format!(
                        "{}: {}",
                        c.name,
                        cond.get("message")
                            .and_then(|m| m.as_str())
                            .unwrap_or("replica failure")
                    ));
                }
            }
        }
        let endpoints = c.ports.iter().map(|p| format!("{obj}.{ns}.svc:{}", p.port)).collect();
        comps.push(ComponentStatus {
            name: c.name.clone(),
            desired: c.replicas,
            ready,
            endpoints,
        });
    }
    let available = comps.iter().all(|c| c.ready >= c.desired);
    let conds = [
        if available {
            Desired::new(
                AVAILABLE,
                true,
                "AllReplicasReady",
                format!("All components ready on {}.", t.cluster),
            )
        } else {
            Desired::new(
                AVAILABLE,
                false,
                "ReplicasNotReady",
                format!("Not ready yet: {}", progressing.join(", ")),
            )
        },
        if progressing.is_empty() {
            Desired::new(
                PROGRESSING,
                false,
                "RolloutComplete",
                "Every component runs the current spec.",
            )
        } else {
            Desired::new(PROGRESSING, true, "RollingOut", progressing.join(", "))
        },
        if degraded.is_empty() {
            Desired::new(DEGRADED, false, "NoProblems", "No problems reported by the cluster.")
        } else {
            Desired::new(
                DEGRADED,
                true,
                "ReplicaFailure",
                format!(
                    "{} (check the image registry, quota and security settings)",
                    degraded.join("; ")
                ),
            )
        },
    ];
    let status = status_with(&hs, Some(t.cluster.clone()), comps, &conds);
    write_status(ctx, &hs, status).await?;
    record_migration_metrics(ctx, &agency);
    Ok(Action::requeue(if available {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(15)
    }))
}

/// Sets `govcloud_agency_hosted_systems{agency, migration_phase}` from the system cache.
fn record_migration_metrics(ctx: &Context, agency: &str) {
    let Some(systems) = ctx.systems.get() else { return };
    let namespaces: Vec<String> = agency_cloud_namespaces(ctx, agency);
    let mut counts: std::collections::BTreeMap<&'static str, i64> = [
        "none",
        "Planned",
        "Syncing",
        "CutoverReady",
        "CutOver",
        "Decommissioned",
        "RolledBack",
    ]
    .into_iter()
    .map(|p| (p, 0))
    .collect();
    for s in systems.state() {
        if s.metadata.deletion_timestamp.is_some() || !s.namespace().is_some_and(|n| namespaces.contains(&n)) {
            continue;
        }
        let phase = match s.spec.migration.as_ref().map(|m| m.phase) {
            None => "none",
            Some(p) => match p {
                crate::api::hosted::MigrationPhase::Planned => "Planned",
                crate::api::hosted::MigrationPhase::Syncing => "Syncing",
                crate::api::hosted::MigrationPhase::CutoverReady => "CutoverReady",
                crate::api::hosted::MigrationPhase::CutOver => "CutOver",
                crate::api::hosted::MigrationPhase::Decommissioned => "Decommissioned",
                crate::api::hosted::MigrationPhase::RolledBack => "RolledBack",
            },
        };
        *counts.entry(phase).or_default() += 1;
    }
    for (phase, n) in counts {
        ctx.metrics.agency_systems.with_label_values(&[agency, phase]).set(n);
    }
}

fn agency_cloud_namespaces(ctx: &Context, agency: &str) -> Vec<String> {
    ctx.agencies
        .get()
        .and_then(|s| s.get(&ObjectRef::new(agency)))
        .and_then(|a| a.status.clone())
        .map(|s| s.environments.into_iter().map(|e| e.namespace).collect())
        .unwrap_or_default()
}

/// Deletes objects of the system that are no longer desired (removed components).
async fn prune(
    client: &Client,
    cache: &MemberCache,
    ns: &str,
    system: &str,
    desired: &[crate::core::agency::Child],
) -> Result<()> {
    if !cache.is_synced() {
        return Ok(());
    }
    let keep: BTreeSet<_> = desired.iter().map(|c| c.key()).collect();
    for kind in [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::Service,
        Kind::PodDisruptionBudget,
        Kind::NetworkPolicy,
        Kind::Ingress,
    ] {
        for live in cache.owned_by_label(kind, SYSTEM_LABEL, system) {
            let key = (kind, live.namespace(), live.name_any());
            if key.1.as_deref() != Some(ns) || keep.contains(&key) {
                continue;
            }
            match api(client, kind, Some(ns))
                .delete(&key.2, &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn cleanup(hs: Arc<HostedSystem>, ctx: &Context) -> Result<Action> {
    let ns = hs.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let t = match target(ctx, &ns).await {
        Ok(t) => t,
        // No agency or cluster any more: nothing of ours to remove there.
        Err(("NoAgency", _)) | Err(("NotPlaced", _)) | Err(("ClusterNotRegistered", _)) => {
            return Ok(Action::await_change());
        }
        Err((_, msg)) => return Err(Error::DeletionBlocked(msg)),
    };
    if !t.cache.is_synced() {
        return Err(Error::DeletionBlocked(format!(
            "the cache of cluster {} is not synced yet; retrying",
            t.cluster
        )));
    }
    // Delete what the system owns; StatefulSets keep or delete their volumes as
    // spec.volumeRetention says (persistentVolumeClaimRetentionPolicy).
    prune(&t.client, &t.cache, &ns, &hs.name_any(), &[]).await?;
    Ok(Action::await_change())
}

#[instrument(skip_all, fields(system = %hs.name_any(), namespace = hs.namespace().unwrap_or_default()))]
async fn reconcile(hs: Arc<HostedSystem>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let ns = hs.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<HostedSystem> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, hs, |event| async {
        match event {
            Finalizer::Apply(hs) => apply(hs, &ctx).await,
            Finalizer::Cleanup(hs) => cleanup(hs, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy(_hs: Arc<HostedSystem>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(CONTROLLER, error.metric_label());
    warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, synced: PendingCache, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let api: Api<HostedSystem> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    let _ = ctx.systems.set(store.clone());
    super::signal_when_synced(store.clone(), synced);
    let events = ctx.system_events.lock().ok().and_then(|mut g| g.take());
    let mut controller =
        controller.with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency));
    if let Some(rx) = events {
        controller = controller.reconcile_on(rx.filter_map(|key| async move {
            key.split_once('/')
                .map(|(ns, n)| ObjectRef::<HostedSystem>::new(n).within(ns))
        }));
    }
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
