//! HostedSystem controller: run the system's components on its agency's cluster, allow
//! exactly its declared flows, report replicas and problems, keep volumes on deletion.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::instrument;

use super::apply::apply_children;
use super::context::Context;
use super::lookup::{Target, settling, target};
use super::members::{MemberCache, api};
use super::status::{Reconciled, error_policy, field_manager, write_status};
use super::streams::HostedStreams;
use crate::error::{Error, Result};
use crate::server::PendingCache;
use govcloud_api::NetworkZone;
use govcloud_api::ServiceTemplate;
use govcloud_api::conditions::hosted::{AVAILABLE, DEGRADED, PROGRESSING};
use govcloud_api::hosted::ExpandedTemplate;
use govcloud_api::hosted::{
    ComponentKind, ComponentStatus, ExposureMode, FINALIZER, HostedSystem, HostedSystemSpec, HostedSystemStatus,
};
use govcloud_api::labels::{COMPONENT_LABEL, SYSTEM_LABEL};
use govcloud_core::agency::Kind;
use govcloud_core::conditions::{self, Desired};
use govcloud_core::hosted as build;
use govcloud_core::levels::{self, InternetExposure};
use govcloud_core::{catalog, hub};

/// Controller name.
pub const CONTROLLER: &str = "hostedsystem";

impl Reconciled for HostedSystem {
    const CONTROLLER: &'static str = CONTROLLER;

    fn api(client: Client, obj: &Self) -> Api<Self> {
        Api::namespaced(client, &obj.namespace().unwrap_or_default())
    }
}

/// How long a rollout may take before the pods of a component short of replicas are listed
/// to say why (Degraded with the scheduler's message).
const POD_CHECK_AFTER: Duration = Duration::from_secs(10);

/// How long a new system's first status may wait for its rollout to finish (see `apply`).
const FIRST_STATUS_QUIET: Duration = Duration::from_secs(5);
/// A system younger than this that is not Available is looked at every 5 s (then every 15 s).
const YOUNG_ROLLOUT: Duration = Duration::from_secs(120);

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

/// Objects the system needs whose names another system, or the platform, already uses on
/// the member (from the member cache, which holds every object the operator labelled).
fn name_conflicts(cache: &MemberCache, system: &str, children: &[govcloud_core::agency::Child]) -> Vec<String> {
    children
        .iter()
        .filter_map(|c| {
            let live = cache.get(c.kind, c.namespace.as_deref(), &c.name)?;
            if live.system() == Some(system) {
                return None;
            }
            let holder = match live.system() {
                Some(other) => format!("HostedSystem {other}"),
                None => "the platform's guardrails of the namespace".to_string(),
            };
            Some(format!(
                "spec.components: the {} {} this system needs already belongs to {holder}; objects are named <system>-<component>, so rename the component or the system",
                c.kind.gvk().2,
                c.name
            ))
        })
        .collect()
}

/// Why the system may not expose `host`: not the agency's (see [`build::host_problem`]),
/// or already served by another system (or claimed by an older one while neither serves it).
fn host_problem(ctx: &Context, hs: &HostedSystem, agency: &str, host: &str) -> Option<String> {
    let agencies = ctx.agencies.get().map(|s| s.state()).unwrap_or_default();
    let domains: Vec<(String, Vec<String>)> = agencies
        .iter()
        .map(|a| (a.name_any(), a.spec.cloud.domains.iter().map(|d| d.0.clone()).collect()))
        .collect();
    let refs: Vec<(&str, &[String])> = domains.iter().map(|(a, d)| (a.as_str(), d.as_slice())).collect();
    if let Some(p) = build::host_problem(host, agency, &refs) {
        return Some(p);
    }
    // The system serving the host (deployed with it: its status.url names it) keeps it; among
    // systems in the same position the older one does (creation time has second precision,
    // so the name breaks a tie — never against the one already serving).
    let serves = |o: &HostedSystem| {
        o.status
            .as_ref()
            .and_then(|s| s.url.as_deref())
            .is_some_and(|u| u.split_once("://").map(|(_, rest)| rest.trim_end_matches('/')) == Some(host))
    };
    let key = |o: &HostedSystem| {
        (
            !serves(o),
            o.metadata.creation_timestamp.clone().map(|t| t.0),
            o.namespace(),
            o.name_any(),
        )
    };
    let me = key(hs);
    let systems = ctx.systems.get().map(|s| s.state()).unwrap_or_default();
    let holder = systems.iter().filter(|o| o.metadata.uid != hs.metadata.uid).find(|o| {
        let claims = o
            .spec
            .exposure
            .as_ref()
            .is_some_and(|e| e.mode != ExposureMode::None && e.host.as_deref() == Some(host))
            || serves(o);
        claims && key(o) < me
    })?;
    Some(format!(
        "spec.exposure.host: {host} is already exposed by HostedSystem {}/{}; hosts are unique — choose another",
        holder.namespace().unwrap_or_default(),
        holder.name_any()
    ))
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
            write_status::<HostedSystem>(ctx, &hs, invalid(&hs, cluster, &problems)).await?;
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
            write_status::<HostedSystem>(ctx, &hs, status).await?;
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
        } else if [spec.security_level, agency_level]
            .into_iter()
            .any(|l| levels::rules(l).internet_exposure != InternetExposure::Allowed)
        {
            match &spec.internet_exposure_approval {
                None => problems.push("spec.exposure.mode: Internet at level 3 needs a platform approval in spec.internetExposureApproval, recorded by a user allowed to create hostedsystems/approve-exposure (the govcloud-exposure-approver role); ask the platform team, or use GovernmentNetwork".to_string()),
                Some(a) if Some(&a.host) != e.host.as_ref() => problems.push(format!(
                    "spec.internetExposureApproval.host: the approval by {} covers {}, not {}; ask for a new approval",
                    a.approved_by,
                    a.host,
                    e.host.as_deref().unwrap_or("(no host)")
                )),
                Some(_) if !super::lookup::policy_present(&ctx.client, hub::EXPOSURE_POLICY).await => problems.push(format!(
                    "spec.internetExposureApproval: the admission policy {} is missing from the hub, so nothing proves who approved; the operator reinstalls it at start",
                    hub::EXPOSURE_POLICY
                )),
                Some(_) => {}
            }
        }
    }
    // A flow may only narrow the agency's egress, as its level and zone permit.
    let cloud = &t.agency.spec.cloud;
    let (egress, _) =
        govcloud_core::agency::egress_allowed(spec.security_level.max(agency_level), cloud.zone, &cloud.egress);
    problems.extend(build::flow_problems(spec, &egress));
    if let Some(host) = spec
        .exposure
        .as_ref()
        .filter(|e| e.mode != ExposureMode::None)
        .and_then(|e| e.host.as_deref())
    {
        problems.extend(host_problem(ctx, &hs, &t.agency.name_any(), host));
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
        write_status::<HostedSystem>(ctx, &hs, invalid(&hs, Some(t.cluster.clone()), &problems)).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    }

    let agency = t.agency.name_any();
    let mut children = build::children(&agency, agency_level, &name, &ns, spec);
    children.push(build::spec_record(&agency, &name, &ns, &hs.spec));
    // Never write over an object of another system or the platform's guardrails: names are
    // `<system>-<component>`, so `a-b` + `c` and `a` + `b-c` meet; the first keeps it.
    if !t.cache.wait_synced(Duration::from_secs(10)).await {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let taken = name_conflicts(&t.cache, &name, &children);
    if !taken.is_empty() {
        write_status::<HostedSystem>(ctx, &hs, invalid(&hs, Some(t.cluster.clone()), &taken)).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
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
            write_status::<HostedSystem>(ctx, &hs, status).await?;
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
    // Containers that do not run (crash loops, image pulls, OOM kills, failing readiness):
    // the kubelet's reason, with what to do.
    let mut failing = Vec::new();
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
        if ready < c.replicas && rollout_slow {
            match pod_problems(&t.client, &ns, &name, &c.name).await {
                Some(PodProblem::Unschedulable(why)) => {
                    degraded.push(format!("{}: pods cannot be scheduled: {why}", c.name));
                }
                Some(PodProblem::Containers(why)) => {
                    failing.push(format!("{}: {why}", c.name));
                }
                // No pod to explain: a StatefulSet whose pods are refused at creation (quota,
                // LimitRange, admission) says so only in its events. A Deployment's
                // ReplicaSet reports the same as the ReplicaFailure condition read below.
                None if kind == Kind::StatefulSet => {
                    if let Some(why) = failed_create(&t.client, &ns, &obj).await {
                        degraded.push(format!("{}: pods cannot be created: {why}", c.name));
                    }
                }
                None => {}
            }
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
        if !failing.is_empty() {
            let mut all = failing.clone();
            all.extend(degraded.iter().cloned());
            Desired::new(DEGRADED, true, "ContainersFailing", all.join("; "))
        } else if degraded.is_empty() {
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
    if hs.status.is_none() && !available && degraded.is_empty() && failing.is_empty() {
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
    write_status::<HostedSystem>(ctx, &hs, status).await?;
    // Pods are not watched: while a young rollout is short of replicas, look again soon, so
    // that a container that fails (crash loop, image pull) is reported within a minute.
    let young = hs
        .metadata
        .creation_timestamp
        .as_ref()
        .is_some_and(|t| conditions::age(t) < YOUNG_ROLLOUT);
    Ok(Action::requeue(if available {
        Duration::from_secs(600)
    } else if young {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(15)
    }))
}

/// Why a component's pods do not run.
enum PodProblem {
    /// The scheduler's message.
    Unschedulable(String),
    /// The kubelet's reason for a container, with what to do.
    Containers(String),
}

/// Why a component's pods are short (listed only once a rollout has taken a while): a
/// container that fails (crash loop, image pull, OOM kill, failing readiness) first, then
/// a pod the scheduler cannot place.
async fn pod_problems(client: &Client, ns: &str, system: &str, component: &str) -> Option<PodProblem> {
    let lp = kube::api::ListParams::default().labels(&format!("{SYSTEM_LABEL}={system},{COMPONENT_LABEL}={component}"));
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .ok()?;
    let now = jiff::Timestamp::now().as_second();
    if let Some(why) = pods.items.iter().find_map(|p| build::pod_problem(p, now)) {
        return Some(PodProblem::Containers(why));
    }
    pods.items
        .iter()
        .find_map(|p| {
            p.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| {
                    c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
                })
                .map(|c| c.message.clone().unwrap_or_else(|| "unschedulable".into()))
        })
        .map(PodProblem::Unschedulable)
}

/// Why a StatefulSet has no pod: its controller's newest recent `FailedCreate` event.
async fn failed_create(client: &Client, ns: &str, statefulset: &str) -> Option<String> {
    let lp = kube::api::ListParams::default().fields(&format!(
        "involvedObject.kind=StatefulSet,involvedObject.name={statefulset},reason=FailedCreate"
    ));
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .ok()?;
    build::failed_create(&events.items, jiff::Timestamp::now().as_second())
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
                api.patch(system, &field_manager::<HostedSystem>(), &Patch::Apply(d))
                    .await?;
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
    ctx.status_memo.forget(&super::context::StatusMemo::key(&*hs));
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

/// Runs the controller until `shutdown` resolves, triggered by the hub's shared watches.
pub async fn run(
    ctx: Arc<Context>,
    synced: PendingCache,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    HostedStreams { own, agencies }: HostedStreams,
) {
    let reader = own.reader();
    let controller = Controller::for_shared_stream(own, reader);
    let store = controller.store();
    super::context::signal_when_synced(store.clone(), synced);
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
        .watches_shared_stream(agencies, move |ac| super::context::in_agency_namespaces(&waiting, &ac));
    if let Some(rx) = events {
        controller = controller.reconcile_on(rx.filter_map(|key| async move {
            key.split_once('/')
                .map(|(ns, n)| ObjectRef::<HostedSystem>::new(n).within(ns))
        }));
    }
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<HostedSystem>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
