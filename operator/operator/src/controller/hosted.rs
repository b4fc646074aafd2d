//! HostedSystem controller: run the system's components on its agency's cluster, allow
//! exactly its declared flows, report replicas and problems, keep volumes on deletion.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, ReflectHandle};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{instrument, warn};

use super::Context;
use super::agency::apply_children;
use super::members::{MemberCache, api};
use crate::error::{Error, Result};
use crate::server::PendingCache;
use govcloud_api::NetworkZone;
use govcloud_api::ServiceTemplate;
use govcloud_api::agency::AgencyCloud;
use govcloud_api::catalog::ExpandedTemplate;
use govcloud_api::hosted::{
    ComponentKind, ComponentStatus, ExposureMode, HostedSystem, HostedSystemSpec, HostedSystemStatus,
};
use govcloud_core::agency::{Kind, SYSTEM_LABEL};
use govcloud_core::conditions::{self, Desired};
use govcloud_core::hosted as build;
use govcloud_core::{catalog, hub};

/// Controller name.
pub const CONTROLLER: &str = "hostedsystem";
/// Finalizer that removes the system's objects from the member cluster.
pub const FINALIZER: &str = "govcloud.io/system-cleanup";

const AVAILABLE: &str = "Available";
const PROGRESSING: &str = "Progressing";
const DEGRADED: &str = "Degraded";

/// The agency whose environment namespace this is (from the AgencyCloud cache).
pub(crate) fn agency_of(ctx: &Context, namespace: &str) -> Option<Arc<AgencyCloud>> {
    let store = ctx.agencies.get()?;
    let owns = |a: &AgencyCloud| {
        a.status
            .as_ref()
            .is_some_and(|s| s.environments.iter().any(|e| e.namespace == namespace))
    };
    by_namespace(store, namespace, |a, _| owns(a)).or_else(|| store.state().into_iter().find(|a| owns(a)))
}

/// The agency named by a prefix of `namespace` before a `-` for which `pick(agency, rest)`
/// holds (`rest` is what follows the `-`). An environment's namespace is
/// `<agency>-<environment>`, so a few lookups by name replace a scan of every agency (a
/// scan per hosted system's reconcile was most of the operator's CPU in a resync of 5,000
/// systems).
fn by_namespace(
    store: &kube::runtime::reflector::Store<AgencyCloud>,
    namespace: &str,
    pick: impl Fn(&AgencyCloud, &str) -> bool,
) -> Option<Arc<AgencyCloud>> {
    namespace.match_indices('-').find_map(|(i, _)| {
        store
            .get(&kube::runtime::reflector::ObjectRef::new(&namespace[..i]))
            .filter(|a| pick(a, &namespace[i + 1..]))
    })
}

/// Whether an object in `namespace`, created at `created`, should wait quietly for its
/// agency instead of reporting "no agency": the namespace is an environment of an AgencyCloud
/// (by spec) whose provisioning has not reached this controller's cache yet, and the object
/// is less than [`SETTLE`] old. Objects created the moment their namespace appears would
/// otherwise each write a status that is outdated a second later.
pub(crate) fn settling(ctx: &Context, namespace: &str, created: Option<&Time>) -> bool {
    let young = created.is_some_and(|t| conditions::age(t) < SETTLE);
    young
        && ctx.agencies.get().is_some_and(|s| {
            by_namespace(s, namespace, |a, env| {
                a.spec.cloud.environments.iter().any(|e| e.name == env)
            })
            .is_some()
        })
}

/// See [`settling`].
pub(crate) const SETTLE: Duration = Duration::from_secs(30);

pub(crate) struct Target {
    pub(crate) client: Client,
    pub(crate) cache: Arc<MemberCache>,
    pub(crate) cluster: String,
    pub(crate) zone: NetworkZone,
    pub(crate) agency: Arc<AgencyCloud>,
}

pub(crate) async fn target(ctx: &Context, namespace: &str) -> std::result::Result<Target, (&'static str, String)> {
    ctx.caches_filled().await;
    let agency = agency_of(ctx, namespace).ok_or((
        "NoAgency",
        format!("Namespace {namespace} is not an environment of any provisioned AgencyCloud; create HostedSystems and BackupPolicies in one of your agency's namespaces."),
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

/// How long a rollout may take before the pods of a component short of replicas are listed
/// to say why (Degraded with the scheduler's message).
const POD_CHECK_AFTER: Duration = Duration::from_secs(10);

/// How long a new system's first status may wait for its rollout to finish (see `apply`).
const FIRST_STATUS_QUIET: Duration = Duration::from_secs(5);

fn pp() -> PatchParams {
    PatchParams::apply(&format!("govcloud-operator/{CONTROLLER}")).force()
}

async fn write_status(ctx: &Context, hs: &HostedSystem, status: HostedSystemStatus) -> Result<()> {
    let ns = hs.namespace().unwrap_or_default();
    let key = super::StatusMemo::key(hs);
    let rv = hs.resource_version();
    if hs.status.as_ref() == Some(&status) || ctx.status_memo.written(&key, rv.as_deref(), &status) {
        return Ok(());
    }
    tracing::debug!(changed = ?super::changed_fields(hs.status.as_ref(), &status), "writing status");
    let body = json!({"apiVersion": HostedSystem::api_version(&()), "kind": HostedSystem::kind(&()), "status": status});
    Api::<HostedSystem>::namespaced(ctx.client.clone(), &ns)
        .patch_status(&hs.name_any(), &pp(), &Patch::Apply(&body))
        .await?;
    ctx.status_memo.record(&key, rv.as_deref(), &status);
    Ok(())
}

fn status_with(
    hs: &HostedSystem,
    cluster: Option<String>,
    components: Vec<ComponentStatus>,
    desired: &[Desired<'_>],
    resolved: Option<&Resolved>,
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
        url: resolved.and_then(|r| build::url(&r.spec)),
        template: match resolved {
            Some(r) => r.expanded.clone(),
            None => prev.template,
        },
    }
}

/// The system as it runs: its spec with the catalogue template expanded.
struct Resolved {
    spec: HostedSystemSpec,
    expanded: Option<ExpandedTemplate>,
}

/// Expands `spec.template` (if any) and checks the result; errors name the field to fix.
async fn resolve(ctx: &Context, hs: &HostedSystem) -> std::result::Result<Resolved, Vec<String>> {
    let expansion = match &hs.spec.template {
        None => None,
        Some(r) => {
            let api: Api<ServiceTemplate> = Api::all(ctx.client.clone());
            match api.get_opt(&r.name).await {
                Ok(Some(t)) => Some(catalog::expand(&r.name, &t.spec, r)?),
                Ok(None) => {
                    return Err(vec![format!(
                        "spec.template.name: there is no ServiceTemplate {} (`kubectl get servicetemplates` lists the catalogue)",
                        r.name
                    )]);
                }
                Err(e) => return Err(vec![format!("cannot read ServiceTemplate {}: {e}; retrying", r.name)]),
            }
        }
    };
    let spec = catalog::effective(&hs.spec, expansion.as_ref())?;
    Ok(Resolved {
        spec,
        expanded: expansion.map(|x| x.expanded),
    })
}

fn invalid(hs: &HostedSystem, cluster: Option<String>, problems: &[String]) -> HostedSystemStatus {
    let msg = problems.join("; ");
    status_with(
        hs,
        cluster,
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
        None,
    )
}

async fn apply(hs: Arc<HostedSystem>, ctx: &Context) -> Result<Action> {
    let ns = hs.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = hs.name_any();
    let resolved = match resolve(ctx, &hs).await {
        Ok(r) => r,
        Err(problems) => {
            let cluster = hs.status.as_ref().and_then(|s| s.cluster.clone());
            write_status(ctx, &hs, invalid(&hs, cluster, &problems)).await?;
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };
    let spec = &resolved.spec;
    let t = match target(ctx, &ns).await {
        Ok(t) => t,
        Err(("NoAgency", _)) if settling(ctx, &ns, hs.metadata.creation_timestamp.as_ref()) => {
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
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
                Some(&resolved),
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
        } else if spec.security_level >= 3 || agency_level >= 3 {
            match &spec.internet_exposure_approval {
                None => problems.push("spec.exposure.mode: Internet at level 3 needs a platform approval in spec.internetExposureApproval, recorded by a user allowed to create hostedsystems/approve-exposure (the govcloud-exposure-approver role); ask the platform team, or use GovernmentNetwork".to_string()),
                Some(a) if Some(&a.host) != e.host.as_ref() => problems.push(format!(
                    "spec.internetExposureApproval.host: the approval by {} covers {}, not {}; ask for a new approval",
                    a.approved_by,
                    a.host,
                    e.host.as_deref().unwrap_or("(no host)")
                )),
                Some(_) if !super::tenancy::policy_present(&ctx.client, hub::EXPOSURE_POLICY).await => problems.push(format!(
                    "spec.internetExposureApproval: the admission policy {} is missing from the hub, so nothing proves who approved; the operator reinstalls it at start",
                    hub::EXPOSURE_POLICY
                )),
                Some(_) => {}
            }
        }
    }
    if !problems.is_empty() {
        // Nothing is deleted for a bad spec — except an exposure that is no longer allowed
        // (e.g. an approval that does not cover the host): it is withdrawn.
        if problems
            .iter()
            .any(|p| p.starts_with("spec.exposure") || p.starts_with("spec.internetExposureApproval"))
        {
            withdraw_exposure(ctx, &t, &ns, &name).await?;
        }
        write_status(ctx, &hs, invalid(&hs, Some(t.cluster.clone()), &problems)).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    }

    let agency = t.agency.name_any();
    let mut children = build::children(&agency, agency_level, &name, &ns, spec);
    children.push(build::spec_record(&agency, &name, &ns, &hs.spec));
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
                Some(&resolved),
            );
            write_status(ctx, &hs, status).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        Err(e) => return Err(e),
    }
    prune(&t.client, &t.cache, &ns, &name, &children).await?;
    sync_route(
        ctx,
        &t,
        &ns,
        &name,
        build::http_route(&agency, &name, &ns, spec).as_ref(),
    )
    .await?;

    // Status from the member cache.
    // Pods are not cached: they are listed (to explain why a component is short of replicas)
    // only once a rollout has taken a while; most are scheduled within seconds.
    let rollout_slow = hs
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, PROGRESSING))
        .filter(|c| c.status == conditions::TRUE)
        .is_some_and(|c| conditions::age(&c.last_transition_time) >= POD_CHECK_AFTER);
    let mut comps = Vec::new();
    let mut progressing = Vec::new();
    let mut degraded = Vec::new();
    for c in &spec.components {
        let obj = build::object_name(&name, &c.name);
        let kind = match c.kind {
            ComponentKind::Stateless => Kind::Deployment,
            ComponentKind::Stateful => Kind::StatefulSet,
        };
        let live = t.cache.get(kind, Some(&ns), &obj).map(|l| l.value());
        let st = live
            .as_ref()
            .map(|l| l.get("status").cloned().unwrap_or_default())
            .unwrap_or_default();
        let num = |k: &str| st.get(k).and_then(|v| v.as_i64()).unwrap_or(0) as i32;
        let ready = num("readyReplicas");
        let updated = num("updatedReplicas");
        let observed = st.get("observedGeneration").and_then(|v| v.as_i64());
        let generation = live.as_ref().and_then(|l| l.pointer("/metadata/generation")?.as_i64());
        if ready < c.replicas || updated < c.replicas || observed != generation {
            progressing.push(format!("{}: {ready}/{} ready", c.name, c.replicas));
        }
        if ready < c.replicas
            && rollout_slow
            && let Some(why) = unschedulable(&t.client, &ns, &name, &c.name).await
        {
            degraded.push(format!("{}: pods cannot be scheduled: {why}", c.name));
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
    // A new system's first status waits up to FIRST_STATUS_QUIET for its rollout: most
    // components run within seconds, and the first status then says Available at once
    // instead of Progressing followed a moment later by Available. The rollout's progress
    // on the member triggers the next reconcile; the requeue bounds the wait.
    if hs.status.is_none() && !available && degraded.is_empty() {
        let age = hs
            .metadata
            .creation_timestamp
            .as_ref()
            .map(conditions::age)
            .unwrap_or(FIRST_STATUS_QUIET);
        if age < FIRST_STATUS_QUIET {
            return Ok(Action::requeue(FIRST_STATUS_QUIET - age + Duration::from_millis(100)));
        }
    }
    let status = status_with(&hs, Some(t.cluster.clone()), comps, &conds, Some(&resolved));
    write_status(ctx, &hs, status).await?;
    Ok(Action::requeue(if available {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(15)
    }))
}

/// Why a component's pods are not scheduled (the scheduler's message), if they are not.
async fn unschedulable(client: &Client, ns: &str, system: &str, component: &str) -> Option<String> {
    let lp = kube::api::ListParams::default()
        .labels(&format!(
            "{SYSTEM_LABEL}={system},{}={component}",
            govcloud_core::agency::COMPONENT_LABEL
        ))
        .fields("status.phase=Pending");
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .ok()?;
    pods.items.iter().find_map(|p| {
        p.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
            .map(|c| c.message.clone().unwrap_or_else(|| "unschedulable".into()))
    })
}

/// Deletes objects of the system that are no longer desired (removed components).
async fn prune(
    client: &Client,
    cache: &MemberCache,
    ns: &str,
    system: &str,
    desired: &[govcloud_core::agency::Child],
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
        Kind::ConfigMap,
    ] {
        for live in cache.of_system(kind, system) {
            let key = (kind, live.namespace().map(str::to_string), live.name().to_string());
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

/// The Gateway API route resource (present on clusters with the Gateway API CRDs).
fn route_resource() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

/// Whether `cluster` serves HTTPRoutes (API discovery, remembered for 30 s).
async fn serves_routes(ctx: &Context, t: &Target) -> bool {
    let now = std::time::Instant::now();
    if let Ok(known) = ctx.gateway_api.lock()
        && let Some((at, yes)) = known.get(&t.cluster)
        && now.duration_since(*at) < Duration::from_secs(30)
    {
        return *yes;
    }
    let yes = match t.client.list_api_group_resources("gateway.networking.k8s.io/v1").await {
        Ok(list) => list.resources.iter().any(|r| r.name == "httproutes"),
        Err(_) => false,
    };
    if let Ok(mut known) = ctx.gateway_api.lock() {
        known.insert(t.cluster.clone(), (now, yes));
    }
    yes
}

/// Creates, updates or removes the system's HTTPRoute where the cluster has the Gateway API.
/// Reads first and writes only when the live route differs.
async fn sync_route(
    ctx: &Context,
    t: &Target,
    ns: &str,
    system: &str,
    desired: Option<&serde_json::Value>,
) -> Result<()> {
    if !serves_routes(ctx, t).await {
        return Ok(());
    }
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), ns, &route_resource());
    let live = api.get_opt(system).await?;
    match (desired, live) {
        (Some(d), live) => {
            let same = live
                .and_then(|l| serde_json::to_value(l).ok())
                .is_some_and(|l| govcloud_core::subset::contains(&l, d));
            if !same {
                ctx.metrics.child_applied(CONTROLLER);
                api.patch(system, &pp(), &Patch::Apply(d)).await?;
            }
        }
        (None, Some(l)) if l.labels().get(SYSTEM_LABEL).map(String::as_str) == Some(system) => {
            match api.delete(system, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        (None, _) => {}
    }
    Ok(())
}

/// Removes the system's Ingress and HTTPRoute (its exposure), keeping everything else.
async fn withdraw_exposure(ctx: &Context, t: &Target, ns: &str, system: &str) -> Result<()> {
    if let Some(live) = t.cache.get(Kind::Ingress, Some(ns), system)
        && live.system() == Some(system)
    {
        match api(&t.client, Kind::Ingress, Some(ns))
            .delete(system, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    sync_route(ctx, t, ns, system, None).await
}

async fn cleanup(hs: Arc<HostedSystem>, ctx: &Context) -> Result<Action> {
    let ns = hs.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    ctx.status_memo.forget(&super::StatusMemo::key(&*hs));
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
    sync_route(ctx, &t, &ns, &hs.name_any(), None).await?;
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

/// The hub's shared watches that trigger the HostedSystem controller.
pub struct Streams {
    /// Its own HostedSystems.
    pub own: ReflectHandle<HostedSystem>,
    /// AgencyClouds (systems waiting for their agency).
    pub agencies: ReflectHandle<AgencyCloud>,
}

/// Runs the controller until `shutdown` resolves, triggered by the hub's shared watches.
pub async fn run(
    ctx: Arc<Context>,
    synced: PendingCache,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    Streams { own, agencies }: Streams,
) {
    let reader = own.reader();
    let controller = Controller::for_shared_stream(own, reader);
    let store = controller.store();
    super::signal_when_synced(store.clone(), synced);
    let events = ctx.system_events.lock().ok().and_then(|mut g| g.take());
    // A changed catalogue template rolls out to the systems that follow it.
    let templates =
        crate::lenient::objects::<ServiceTemplate>(ctx.client.clone(), watcher::Config::default(), ctx.lenient.clone());
    let users = store.clone();
    let waiting = ctx.systems_by_ns.clone();
    let mut controller = controller
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency))
        .watches_stream(templates, move |t: ServiceTemplate| {
            let name = t.name_any();
            users
                .state()
                .into_iter()
                .filter(|s| s.spec.template.as_ref().is_some_and(|r| r.name == name))
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        // Systems created before their agency was provisioned go as soon as it is.
        .watches_shared_stream(agencies, move |ac| super::in_agency_namespaces(&waiting, &ac));
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
