//! AgencyCloud controller: place the cloud on a cluster (once, sticky), build its
//! namespaces and guardrails there, repair drift, report quota use, and clean up on
//! deletion without ever losing an agency's workloads or data by accident.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

use super::apply::apply_children;
use super::context::Context;
use super::context::PROBE_EVERY;
use super::lookup::{self, candidate, placement_candidates, request_for};
use super::members::{MemberCache, api};
use super::status::{Reconciled, error_policy, write_status};
use super::streams::AgencyStreams;
use crate::error::{Error, Result};
use crate::server::PendingCache;
use govcloud_api::agency::{
    AgencyCloud, AgencyCloudStatus, DeletionPolicy, EnvironmentStatus, FINALIZER, PlacementStatus,
};
use govcloud_api::conditions as types;
use govcloud_api::conditions::agency::{BACKUP_COMPLIANT, DELETION_BLOCKED, ISOLATED, PLACED, QUOTA_FITS};
use govcloud_api::datacenter::DataCenterCluster;
use govcloud_api::labels::MANAGED_BY;
use govcloud_core::agency::{self as build, Child, Kind};
use govcloud_core::conditions::{self, Desired};
use govcloud_core::credit_code;
use govcloud_core::placement;

/// Controller name.
pub const CONTROLLER: &str = "agencycloud";

/// Deletes cached objects of the agency that are no longer desired (never namespaces).
async fn prune(client: &Client, cache: &MemberCache, agency: &str, desired: &[Child]) -> Result<Vec<String>> {
    if !cache.is_synced() {
        return Ok(vec![]);
    }
    let keep: BTreeSet<_> = desired.iter().map(Child::key).collect();
    let mut pruned = Vec::new();
    for kind in [
        Kind::ResourceQuota,
        Kind::LimitRange,
        Kind::NetworkPolicy,
        Kind::RoleBinding,
        Kind::ConfigMap,
        Kind::PolicyBinding,
        Kind::Policy,
    ] {
        for live in cache.owned_by(kind, agency) {
            // Objects of the agency's hosted systems belong to the HostedSystem controller.
            if live.system().is_some() {
                continue;
            }
            let key = (kind, live.namespace().map(str::to_string), live.name().to_string());
            if keep.contains(&key) {
                continue;
            }
            // Objects of a removed environment go with its namespace, which is kept.
            if let Some(ns) = &key.1
                && ns != build::SYSTEM_NAMESPACE
                && !keep.contains(&(Kind::Namespace, None, ns.clone()))
            {
                continue;
            }
            match api(client, kind, key.1.as_deref())
                .delete(&key.2, &DeleteParams::default())
                .await
            {
                Ok(_) => pruned.push(format!("{}/{}", kind.gvk().2, key.2)),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(pruned)
}

fn quota_maps(cache: &MemberCache, ns: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let Some(q) = cache.get(Kind::ResourceQuota, Some(ns), "govcloud-quota") else {
        return Default::default();
    };
    let q = q.value();
    let read = |path: &str| -> BTreeMap<String, String> {
        q.pointer(path)
            .and_then(|v| v.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    (read("/status/hard"), read("/status/used"))
}

pub(crate) async fn publish(
    ctx: &Context,
    ac: &AgencyCloud,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    ctx.publish(&ac.object_ref(&()), type_, reason, action, &note).await;
}

impl Reconciled for AgencyCloud {
    const CONTROLLER: &'static str = CONTROLLER;

    fn retry_after(error: &Error) -> Duration {
        match error.metric_label() {
            "deletion_blocked" => Duration::from_secs(15),
            _ => Duration::from_secs(5),
        }
    }

    fn api(client: Client, _: &Self) -> Api<Self> {
        Api::all(client)
    }

    /// The placement is decided from the cache. A cache that lags (a restarted operator's
    /// first list can come from the API server's watch cache) must not place a cloud a
    /// second time, nor drop a recorded placement (this apply owns `placement`: leaving it
    /// out removes it). Such writes carry the resourceVersion they were computed from, so
    /// the API server refuses them (409) when the object has moved on; the reconcile is
    /// retried on the fresh object. Found by the fault suite (tests/tests/faults.rs).
    fn guarded(&self, status: &AgencyCloudStatus) -> bool {
        let unplaced = |s: Option<&AgencyCloudStatus>| s.and_then(|s| s.placement.as_ref()).is_none();
        unplaced(self.status.as_ref()) || unplaced(Some(status))
    }
}

/// Usage-only status changes within this time of the previous status write are written
/// together (see `reconcile`).
const USAGE_COALESCE: Duration = Duration::from_secs(3);

/// Whether `new` differs from `old` only in the quota usage of its environments.
fn usage_only(old: Option<&AgencyCloudStatus>, new: &AgencyCloudStatus) -> bool {
    let Some(old) = old else { return false };
    if old == new || old.environments.len() != new.environments.len() {
        return false;
    }
    let mut same = new.clone();
    for (e, o) in same.environments.iter_mut().zip(&old.environments) {
        if e.name != o.name {
            return false;
        }
        e.used = o.used.clone();
    }
    &same == old
}

/// How long a new cloud waits quietly for its registry policy to take effect before the
/// wait is reported in its status (`Isolated=False`, `AdmissionPoliciesPending`).
const PENDING_QUIET: Duration = Duration::from_secs(15);
struct Outcome {
    /// The status to write (`None`: written already, or nothing to write yet).
    status: Option<AgencyCloudStatus>,
    requeue: Duration,
}

fn status_with(
    ac: &AgencyCloud,
    placement: Option<PlacementStatus>,
    envs: Vec<EnvironmentStatus>,
    desired: &[Desired<'_>],
) -> AgencyCloudStatus {
    let prev = ac.status.clone().unwrap_or_default();
    let generation = ac.metadata.generation;
    AgencyCloudStatus {
        conditions: conditions::merge(&prev.conditions, desired, generation, &Time(Timestamp::now())),
        observed_generation: generation,
        placement,
        environments: envs,
    }
}

/// Namespace `name`, if it exists: a list by name (the operator may list and watch
/// namespaces, not get them).
async fn namespace(
    client: &kube::Client,
    name: &str,
) -> std::result::Result<Option<k8s_openapi::api::core::v1::Namespace>, kube::Error> {
    let lp = ListParams::default().fields(&format!("metadata.name={name}"));
    Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .list(&lp)
        .await?
        .items
        .into_iter()
        .next())
}

/// Environment namespaces that already exist on the member without this agency's label
/// (a system namespace, another agency's, anyone's): the operator would otherwise label
/// them and bind the agency's owners there. Read from the cache where the operator labelled
/// them, otherwise from the API server (only before the first apply of an environment).
async fn foreign_namespaces(
    client: &kube::Client,
    cache: &super::members::MemberCache,
    agency: &str,
    children: &[Child],
    cluster: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for c in children.iter().filter(|c| c.kind == Kind::Namespace) {
        let owner = match cache.get(Kind::Namespace, None, &c.name) {
            Some(live) => live.agency().map(str::to_string),
            None => match namespace(client, &c.name).await {
                Ok(Some(ns)) => Some(
                    ns.metadata
                        .labels
                        .and_then(|l| l.get(govcloud_api::labels::AGENCY_LABEL).cloned())
                        .unwrap_or_default(),
                ),
                // Absent (it will be created), or unknown (the apply below meets the error).
                Ok(None) | Err(_) => None,
            },
        };
        if let Some(owner) = owner.filter(|o| o != agency) {
            let holder = if owner.is_empty() {
                "nobody's agency (a namespace of the cluster itself)".to_string()
            } else {
                format!("agency {owner}")
            };
            out.push(format!(
                "spec.environments: namespace {} already exists on cluster {cluster} and belongs to {holder}; choose another environment name (namespaces are <shortName>-<environment>)",
                c.name
            ));
        }
    }
    out
}

/// One reconcile of an existing (not deleting) AgencyCloud.
async fn apply(ac: Arc<AgencyCloud>, ctx: &Context) -> Result<Outcome> {
    let name = ac.name_any();
    let spec = &ac.spec.cloud;
    let prev = ac.status.clone().unwrap_or_default();
    ctx.caches_filled().await;

    // Validate what the schema cannot.
    let mut invalid = Vec::new();
    if let Err(e) = credit_code::validate(&spec.agency.credit_code) {
        invalid.push(format!("spec.agency.creditCode: {e}"));
    }
    if let Some(other) = ctx.agencies.get().and_then(|s| {
        s.find(|o| {
            o.spec.cloud.agency.credit_code == spec.agency.credit_code && o.metadata.name.as_ref() != Some(&name)
        })
    }) {
        invalid.push(format!(
            "spec.agency.creditCode: already used by AgencyCloud {}",
            other.name_any()
        ));
    }
    // A domain belongs to one agency: the first to hold it keeps it (hosts under a domain
    // held twice are refused to both agencies' systems until this is fixed).
    let older = |o: &AgencyCloud| {
        (o.metadata.creation_timestamp.clone().map(|t| t.0), o.name_any())
            < (ac.metadata.creation_timestamp.clone().map(|t| t.0), name.clone())
    };
    for (i, d) in spec.domains.iter().enumerate() {
        if let Some(other) = ctx
            .agencies
            .get()
            .and_then(|s| s.find(|o| o.name_any() != name && older(o) && o.spec.cloud.domains.contains(d)))
        {
            invalid.push(format!(
                "spec.domains[{i}]: {d} is already a domain of AgencyCloud {}; two agencies cannot share a domain: remove it",
                other.name_any()
            ));
        }
    }
    if !invalid.is_empty() {
        let msg = invalid.join("; ");
        let status = status_with(
            &ac,
            prev.placement.clone(),
            prev.environments.clone(),
            &[
                Desired::new(types::READY, false, "InvalidSpec", msg.clone()),
                Desired::new(
                    PLACED,
                    prev.placement.is_some(),
                    if prev.placement.is_some() {
                        "Placed"
                    } else {
                        "InvalidSpec"
                    },
                    "Fix the spec first.",
                ),
            ],
        );
        return Ok(Outcome {
            status: Some(status),
            requeue: Duration::from_secs(300),
        });
    }

    // Place (once) or re-check the placed cluster.
    let req = request_for(&name, &ac);
    let mut quota_fits = Desired::new(QUOTA_FITS, true, "Fits", "The quota fits the placed cluster.");
    let placement = match &prev.placement {
        Some(p) => {
            // A reservation made before the placement reached the cache is no longer needed
            // (never waits: when a placement decision holds the lock, a later reconcile does it).
            if let Ok(mut reservations) = ctx.placements.try_lock() {
                reservations.remove(&name);
            }
            // Only the placed cluster's sum is needed (not every cluster's candidate list,
            // whose per-agency allocations made this quadratic in the fleet).
            let agencies = ctx.agencies.get().map(|s| s.state()).unwrap_or_default();
            let recheck = ctx
                .clusters
                .get(&kube::runtime::reflector::ObjectRef::new(&p.cluster))
                .map(|d| {
                    let (cpu, mem) = ctx.quota_totals.placed_on(&agencies, &p.cluster, &name);
                    placement::recheck(&req, &candidate(&d, cpu, mem, vec![]))
                });
            if let Some(Err(r)) = recheck {
                quota_fits = Desired::new(
                    QUOTA_FITS,
                    false,
                    r.reason,
                    format!(
                        "{}. The existing quota is kept; lower the request or ask the platform team for capacity.",
                        r.message
                    ),
                );
            }
            p.clone()
        }
        None => {
            let mut reservations = ctx.placements.lock().await;
            // Decided already: the deciding reconcile recorded the placement (a failed write
            // drops its reservation) and the cache has not caught up with that write yet.
            // Writing it again would carry a stale resourceVersion and be refused (409), so
            // wait for the write to arrive (it triggers a reconcile of its own).
            if reservations.contains_key(&name) {
                return Ok(Outcome {
                    status: None,
                    requeue: Duration::from_secs(1),
                });
            }
            let decision = placement::decide(&req, &placement_candidates(ctx, &name, &reservations));
            let Some(chosen) = decision.chosen.clone() else {
                let msg = if decision.rejected.is_empty() {
                    "No DataCenterCluster is registered; register one (kubectl get dcc).".to_string()
                } else {
                    format!(
                        "No cluster can take this cloud: {}. Nothing was created.",
                        decision.explain()
                    )
                };
                let was_failing =
                    conditions::find(&prev.conditions, PLACED).is_some_and(|c| c.status == conditions::FALSE);
                if !was_failing {
                    publish(ctx, &ac, EventType::Warning, "PlacementFailed", "Place", msg.clone()).await;
                }
                let status = status_with(
                    &ac,
                    None,
                    vec![],
                    &[
                        Desired::new(PLACED, false, "NoClusterFits", msg),
                        Desired::new(
                            types::READY,
                            false,
                            "NotPlaced",
                            "Waiting for a cluster that fits (see Placed).",
                        ),
                    ],
                );
                return Ok(Outcome {
                    status: Some(status),
                    requeue: Duration::from_secs(60),
                });
            };
            let dcc = ctx.clusters.state().into_iter().find(|d| d.name_any() == chosen);
            let Some(dcc) = dcc else {
                return Err(Error::MissingField("placed cluster vanished from the cache"));
            };
            reservations.insert(name.clone(), (chosen.clone(), req.cpu, req.memory));
            let p = PlacementStatus {
                cluster: chosen.clone(),
                region: dcc.spec.region.clone(),
                zone: dcc.spec.zone,
            };
            // Record the placement before creating anything, so it is sticky even if we crash.
            let status = status_with(
                &ac,
                Some(p.clone()),
                vec![],
                &[
                    Desired::new(
                        PLACED,
                        true,
                        "Placed",
                        format!("Placed on {} in region {} ({} zone).", p.cluster, p.region, p.zone),
                    ),
                    Desired::new(
                        types::READY,
                        false,
                        "Provisioning",
                        "Creating namespaces and guardrails.",
                    ),
                ],
            );
            if let Err(e) = write_status::<AgencyCloud>(ctx, &ac, status).await {
                // Not recorded (e.g. 409: the object moved on): decide again on the fresh object.
                reservations.remove(&name);
                return Err(e);
            }
            drop(reservations);
            publish(
                ctx,
                &ac,
                EventType::Normal,
                "Placed",
                "Place",
                format!("Placed on {} (region {}).", p.cluster, p.region),
            )
            .await;
            info!(cluster = %p.cluster, "placed");
            // The next reconcile (triggered by the status write) builds the children.
            return Ok(Outcome {
                status: None,
                requeue: Duration::from_secs(1),
            });
        }
    };
    // The placed cluster, looked up once for the checks below and the connection.
    let dcc: Option<Arc<DataCenterCluster>> = ctx
        .clusters
        .state()
        .into_iter()
        .find(|d| d.name_any() == placement.cluster);
    // Placement is sticky, but a raised security level must still be allowed on the cluster.
    let level_problem = dcc.as_ref().and_then(|d| {
        let rules = govcloud_core::levels::rules(spec.security_level);
        if d.spec.max_security_level < rules.min_cluster_level {
            Some(format!(
                "cluster {} is certified for level {} but the agency is now level {}",
                placement.cluster, d.spec.max_security_level, spec.security_level
            ))
        } else if rules.internal_zone_only && d.spec.zone != govcloud_api::NetworkZone::Internal {
            Some(format!(
                "level {} needs the internal zone; {} is external",
                spec.security_level, placement.cluster
            ))
        } else {
            None
        }
    });
    // Placement never moves: a spec.placement edited afterwards is reported, not followed.
    let hint_problems = if level_problem.is_none() {
        let labels = dcc.as_ref().and_then(|d| d.metadata.labels.clone()).unwrap_or_default();
        govcloud_core::placement::hint_conflicts(Some(&spec.placement), &placement.cluster, &placement.region, &labels)
    } else {
        Vec::new()
    };
    let placed = match &level_problem {
        None if !hint_problems.is_empty() => Desired::new(
            PLACED,
            false,
            "PlacementSpecNotFollowed",
            format!(
                "{}. The cloud stays on {} (placement never moves: the agency's data is there); to move an agency, migrate it.",
                hint_problems.join("; "),
                placement.cluster
            ),
        ),
        None => Desired::new(
            PLACED,
            true,
            "Placed",
            format!(
                "Placed on {} in region {} ({} zone); the agency's data lives there.",
                placement.cluster, placement.region, placement.zone
            ),
        ),
        Some(problem) => Desired::new(
            PLACED,
            false,
            "LevelNotAllowedOnCluster",
            format!(
                "{problem}. The cloud stays where its data is (placement never moves) with the stricter guardrails of its new level; lower spec.securityLevel, or migrate the agency to a certified cluster."
            ),
        ),
    };

    // Connect to the placed cluster.
    let unreachable = |reason: &'static str, msg: String| {
        status_with(
            &ac,
            Some(placement.clone()),
            prev.environments.clone(),
            &[
                placed.clone(),
                Desired::new(types::READY, false, reason, msg),
                quota_fits.clone(),
            ],
        )
    };
    let Some(dcc) = dcc else {
        let msg = format!(
            "DataCenterCluster {} is not registered any more; nothing was changed or deleted. Register it again.",
            placement.cluster
        );
        return Ok(Outcome {
            status: Some(unreachable("ClusterNotRegistered", msg)),
            requeue: Duration::from_secs(60),
        });
    };
    let reachable = conditions::find(
        dcc.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default(),
        types::REACHABLE,
    );
    if reachable.is_some_and(|c| c.status == conditions::FALSE) {
        let msg = format!(
            "Cluster {} is unreachable ({}); nothing was changed or deleted, retrying.",
            placement.cluster,
            reachable.map(|c| c.message.as_str()).unwrap_or_default()
        );
        return Ok(Outcome {
            status: Some(unreachable("ClusterUnreachable", msg)),
            requeue: Duration::from_secs(30),
        });
    }
    let (client, version) = match ctx.members.versioned_client_for(&dcc).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("Cannot connect to cluster {}: {e}", placement.cluster);
            return Ok(Outcome {
                status: Some(unreachable("ClusterUnreachable", msg)),
                requeue: Duration::from_secs(30),
            });
        }
    };
    let cache = ctx.caches.ensure(&placement.cluster, &version, &client);
    // Compare against the live state rather than re-applying everything (after a restart).
    cache.wait_synced(Duration::from_secs(10)).await;

    // Build and apply.
    let (mut children, refused) = build::member_children(&name, spec);
    // Never adopt a namespace that is not this agency's (`kube` + `system` is kube-system).
    let mut taken = foreign_namespaces(&client, &cache, &name, &children, &placement.cluster).await;
    if dcc.spec.kubeconfig_secret.is_some() {
        // Its namespaces on the hub too (a requests namespace, the hub's own).
        let hub_cache = ctx
            .caches
            .ensure_kinds("", crate::member::HUB_VERSION, &ctx.client, &build::HUB_KINDS);
        hub_cache.wait_synced(Duration::from_secs(10)).await;
        let hub_children = build::hub_children(&name, spec);
        taken.extend(foreign_namespaces(&ctx.client, &hub_cache, &name, &hub_children, "hub").await);
    }
    if !taken.is_empty() {
        return Ok(Outcome {
            status: Some(unreachable("NamespaceTaken", taken.join("; "))),
            requeue: Duration::from_secs(300),
        });
    }
    let desired_all = children.clone();
    let mut all = build::shared_children();
    all.push(build_system_namespace());
    if !quota_fits.status.eq(conditions::TRUE) {
        // Keep existing quotas and do not add environments until the quota fits.
        children.retain(|c| {
            c.kind != Kind::ResourceQuota
                && match (c.kind, &c.namespace) {
                    (Kind::Namespace, None) => cache.get(Kind::Namespace, None, &c.name).is_some(),
                    (_, Some(ns)) if ns != build::SYSTEM_NAMESPACE => cache.get(Kind::Namespace, None, ns).is_some(),
                    _ => true,
                }
        });
    }
    all.extend(children.iter().cloned());
    // Guardrails first, access (RoleBindings) last.
    all.sort_by_key(|c| match c.kind {
        Kind::Namespace => 0,
        Kind::ClusterRole | Kind::Policy => 1,
        Kind::ConfigMap | Kind::PolicyBinding => 2,
        Kind::ResourceQuota | Kind::LimitRange | Kind::NetworkPolicy => 3,
        Kind::RoleBinding => 4,
        Kind::Deployment | Kind::StatefulSet | Kind::Service | Kind::PodDisruptionBudget | Kind::Ingress => 5,
    });
    let cache_was_synced = cache.is_synced();
    // The agency roles: installed by the member manifest, which the operator's identity there
    // may bind but not write (no `escalate`). Written only where missing or different, which
    // such an identity is refused: then the cluster needs the manifest of this version.
    let (roles, all): (Vec<Child>, Vec<Child>) = all.into_iter().partition(|c| c.kind == Kind::ClusterRole);
    // (Not before the cache is synced: a write of roles that are in fact as desired would be
    // refused too.)
    // Everything else is applied all the same (a removed owner loses access at once); the
    // status then says what the cluster needs.
    let mut roles_problem = None;
    let roles_written = if !cache_was_synced || roles_as_desired(&client, &roles).await {
        vec![]
    } else {
        match apply_children(CONTROLLER, &ctx.metrics, &client, Some(&cache), &roles).await {
            Ok(w) => w,
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 403 => {
                roles_problem = Some(roles_refused(&placement.cluster, &s.message));
                vec![]
            }
            // Anything else (unreachable, …) is met again below and reported there.
            Err(_) => vec![],
        }
    };
    let result = async {
        let mut written = roles_written;
        written.extend(apply_children(CONTROLLER, &ctx.metrics, &client, Some(&cache), &all).await?);
        // Prune against the full desired set: objects held back above are kept, not deleted.
        written.extend(prune(&client, &cache, &name, &desired_all).await?);
        Ok::<_, Error>(written)
    }
    .await;
    let mut written = match result {
        Ok(w) => w,
        Err(Error::Kube(e)) if !matches!(e, kube::Error::Api(_)) => {
            let msg = format!(
                "Cluster {} is unreachable ({}); nothing was changed or deleted, retrying.",
                placement.cluster,
                crate::member::describe(&e)
            );
            return Ok(Outcome {
                status: Some(unreachable("ClusterUnreachable", msg)),
                requeue: Duration::from_secs(15),
            });
        }
        Err(e) => {
            let msg = format!("Applying to cluster {} failed: {e}", placement.cluster);
            let status = unreachable("ApplyFailed", msg);
            write_status::<AgencyCloud>(ctx, &ac, status).await?;
            return Err(e);
        }
    };
    // Status.
    let mut envs = Vec::new();
    for env in &spec.environments {
        let ns = build::namespace_name(&name, &env.name);
        let (hard, used) = quota_maps(&cache, &ns);
        envs.push(EnvironmentStatus {
            name: env.name.clone(),
            namespace: ns,
            hard,
            used,
        });
    }
    let rules = govcloud_core::levels::rules(spec.security_level);
    let was_isolated = conditions::is_true(&prev.conditions, ISOLATED);
    let probe_ns = spec.environments.first().map(|e| build::namespace_name(&name, &e.name));
    let mut retry = PROBE_EVERY;
    let probe = match (&probe_ns, was_isolated) {
        (Some(ns), false) => match ctx.registry_probes.not_before(&name) {
            Some(wait) => {
                retry = wait;
                Ok(false)
            }
            None => {
                let r = policies_active(&client, ns).await;
                ctx.registry_probes.probed(&name, r == Ok(true));
                r
            }
        },
        _ => Ok(true),
    };
    if probe != Ok(true) {
        // The API server activates a new policy within a second or two: that wait is not
        // worth a status write (the status says Provisioning since the placement). Only a
        // wait longer than PENDING_QUIET (or a refused probe) is reported.
        let placed_since = conditions::find(&prev.conditions, PLACED)
            .filter(|c| c.status == conditions::TRUE)
            .map(|c| conditions::age(&c.last_transition_time));
        if probe == Ok(false) && placed_since.is_some_and(|d| d < PENDING_QUIET) {
            return Ok(Outcome {
                status: None,
                requeue: retry,
            });
        }
        let (reason, message) = match probe {
            Err(m) => ("Forbidden", m),
            Ok(_) => (
                "AdmissionPoliciesPending",
                "Waiting for the API server to activate the admission policies (image registries, Service exposure)."
                    .to_string(),
            ),
        };
        let status = status_with(
            &ac,
            Some(placement.clone()),
            envs,
            &[
                placed,
                Desired::new(ISOLATED, false, reason, message),
                quota_fits,
                Desired::new(
                    types::READY,
                    false,
                    "Provisioning",
                    "Waiting for guardrails to take effect (see Isolated).",
                ),
            ],
        );
        return Ok(Outcome {
            status: Some(status),
            requeue: retry,
        });
    }
    if dcc.spec.kubeconfig_secret.is_some() {
        // The hub holds the agency's own namespaces (for HostedSystems, BackupPolicies) too,
        // created once the guardrails are in force: what the agency creates there finds a
        // provisioned cloud (no "waiting for the agency" status to write first).
        let hub_cache = ctx
            .caches
            .ensure_kinds("", crate::member::HUB_VERSION, &ctx.client, &build::HUB_KINDS);
        hub_cache.wait_synced(Duration::from_secs(10)).await;
        let mut hub = build::hub_roles();
        hub.extend(build::hub_children(&name, spec));
        written.extend(apply_children(CONTROLLER, &ctx.metrics, &ctx.client, Some(&hub_cache), &hub).await?);
    }
    if let Some(msg) = roles_problem {
        return Ok(Outcome {
            status: Some(unreachable("MemberRolesOutdated", msg)),
            requeue: Duration::from_secs(60),
        });
    }
    let was_ready = conditions::is_true(&prev.conditions, types::READY);
    if was_ready && cache_was_synced && !written.is_empty() {
        publish(
            ctx,
            &ac,
            EventType::Normal,
            "DriftRepaired",
            "Reconcile",
            format!("Restored {}", written.join(", ")),
        )
        .await;
        info!(objects = ?written, "drift repaired");
    }

    let isolated = if refused.is_empty() {
        Desired::new(
            ISOLATED,
            true,
            "GuardrailsApplied",
            format!(
                "Default-deny network policies{}, Pod Security {}, image registries limited to {}.",
                if rules.deny_undeclared_egress {
                    " (ingress and egress)"
                } else {
                    " (ingress)"
                },
                rules.pod_security.as_str(),
                spec.allowed_registries
                    .iter()
                    .map(|r| r.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        Desired::new(
            ISOLATED,
            true,
            "EgressRulesRefused",
            format!(
                "Guardrails applied; these egress rules are not allowed at level {} and were not created: {}",
                spec.security_level,
                refused
                    .iter()
                    .map(|r| format!("{} ({})", r.rule, r.why))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    };
    let ready = Desired::new(
        types::READY,
        level_problem.is_none(),
        if level_problem.is_none() {
            "Provisioned"
        } else {
            "LevelNotAllowedOnCluster"
        },
        match &level_problem {
            None => format!(
                "{} environment(s) ready on {}.",
                spec.environments.len(),
                placement.cluster
            ),
            Some(_) => "The security level is not allowed on the placed cluster (see Placed).".to_string(),
        },
    );
    let namespaces: Vec<String> = envs.iter().map(|e| e.namespace.clone()).collect();
    let backup = backup_compliance(ctx, spec.security_level, &namespaces);
    let status = status_with(
        &ac,
        Some(placement),
        envs,
        &[placed, isolated, quota_fits, ready, backup],
    );
    Ok(Outcome {
        status: Some(status),
        requeue: Duration::from_secs(600),
    })
}

/// `BackupCompliant`: at level 2 and above every hosted system of the agency must be
/// covered by a BackupPolicy of its namespace.
fn backup_compliance(ctx: &Context, level: u8, namespaces: &[String]) -> Desired<'static> {
    if !govcloud_core::backup::backup_required(level) {
        return Desired::new(
            BACKUP_COMPLIANT,
            true,
            "NotRequired",
            format!("Level {level} does not require backups."),
        );
    }
    let (Some(systems), Some(policies)) = (ctx.systems.get(), ctx.policies.get()) else {
        return Desired::unknown(BACKUP_COMPLIANT, "Starting", "Backup coverage is not known yet.");
    };
    // By namespace (the indexes kept with the stores): this runs at every agency reconcile.
    let mut uncovered: Vec<String> = Vec::new();
    for ns in namespaces {
        let covering = ctx.policies_by_ns.objects(policies, ns);
        for s in ctx.systems_by_ns.objects(systems, ns) {
            if s.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let empty = std::collections::BTreeMap::new();
            let labels = s.metadata.labels.as_ref().unwrap_or(&empty);
            let covered = covering.iter().any(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.spec
                        .selector
                        .as_ref()
                        .is_none_or(|sel| govcloud_core::backup::selects(sel, labels))
            });
            if !covered {
                uncovered.push(format!("{ns}/{}", s.name_any()));
            }
        }
    }
    uncovered.sort();
    // The policies themselves: RPO, off-site copy and drills as the level requires.
    let judged: Vec<(String, Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>)> = namespaces
        .iter()
        .flat_map(|ns| ctx.policies_by_ns.objects(policies, ns))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            (
                format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
                p.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
            )
        })
        .collect();
    let problems = govcloud_core::backup::policy_problems(&judged);
    if uncovered.is_empty() && problems.is_empty() {
        Desired::new(
            BACKUP_COMPLIANT,
            true,
            "Compliant",
            format!(
                "Every hosted system is covered by a BackupPolicy whose RPO is met, with the off-site copy and the passed restore drills level {level} requires."
            ),
        )
    } else if uncovered.is_empty() {
        Desired::new(
            BACKUP_COMPLIANT,
            false,
            "PoliciesNotMet",
            format!(
                "Level {level} requires backups within their RPO, with the off-site copy and restore drills the level sets; not met by {}. See each policy's conditions (kubectl describe bp).",
                problems.join("; ")
            ),
        )
    } else {
        Desired::new(
            BACKUP_COMPLIANT,
            false,
            "SystemsWithoutBackup",
            format!(
                "Level {level} requires backups; not covered by any BackupPolicy: {}. Create one in the system's namespace (see examples/backup/).",
                uncovered.join(", ")
            ),
        )
    }
}

/// What an agency's status says when the member refuses to write the agency roles.
/// Whether the agency roles on the cluster grant exactly what `roles` grant, whoever wrote
/// them (the member manifest, Helm): compared as sets of (group, resource, name, verb), so
/// that the order a manifest lists them in does not matter (two reads, a list by name each:
/// a changed role is seen at the next reconcile of any agency of the cluster).
async fn roles_as_desired(client: &Client, roles: &[Child]) -> bool {
    let api: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    for role in roles {
        // (A list by name: the operator's identity may list and watch ClusterRoles, not get them.)
        let lp = ListParams::default().fields(&format!("metadata.name={}", role.name));
        let Some(live) = api.list(&lp).await.ok().and_then(|l| l.items.into_iter().next()) else {
            return false;
        };
        let live_rules = serde_json::to_value(live.rules.unwrap_or_default()).unwrap_or_default();
        if grants(&live_rules) != grants(&role.body["rules"]) {
            return false;
        }
    }
    true
}

/// The (group, resource, resource name, verb) tuples a list of RBAC rules grants.
fn grants(rules: &serde_json::Value) -> BTreeSet<(String, String, String, String)> {
    let strings = |v: &serde_json::Value, k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for r in rules.as_array().into_iter().flatten() {
        let names = strings(r, "resourceNames");
        let names = if names.is_empty() { vec![String::new()] } else { names };
        for g in strings(r, "apiGroups") {
            for res in strings(r, "resources") {
                for n in &names {
                    for v in strings(r, "verbs") {
                        out.insert((g.clone(), res.clone(), n.clone(), v));
                    }
                }
            }
        }
    }
    out
}

fn roles_refused(cluster: &str, refusal: &str) -> String {
    format!(
        "The ClusterRoles {} and {} on cluster {cluster} are missing or differ from what this operator version grants agency staff, and the operator's identity there may not write them ({refusal}). Apply the member manifest of this chart version on that cluster (docs/install.md, \"Member clusters\"); everything else of the agency was applied.",
        build::OWNER_ROLE,
        build::VIEWER_ROLE
    )
}

/// Checks, with a server-side dry run, that the API server already refuses a pod whose
/// image is outside the allowed registries in `namespace` (admission policies are loaded
/// asynchronously after their binding is created).
/// `Err` names a missing permission (the probe is refused by RBAC, not by the policy).
async fn registry_policy_active(client: &Client, namespace: &str) -> std::result::Result<bool, String> {
    let pod: Pod = match serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "govcloud-registry-probe"},
        "spec": {"containers": [{"name": "probe", "image": "registry.invalid/govcloud/probe:0",
            "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}]}
    })) {
        Ok(p) => p,
        Err(_) => return Ok(false),
    };
    let pp = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    match Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&pp, &pod)
        .await
    {
        // Refused by the registry rule itself (not, say, because its parameters are not loaded yet).
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("cannot create resource") => Err(format!(
            "The operator's identity on this cluster may not create pods, which the registry policy check needs (a server-side dry run; nothing is created): {}. Grant it (the chart's member role has it).",
            s.message
        )),
        Err(kube::Error::Api(s)) => Ok(s.message.contains(&format!("'{}'", build::REGISTRY_POLICY))
            && s.message.contains("is not from an allowed registry")),
        _ => Ok(false),
    }
}

/// Both admission policies of agency namespaces are in force in `namespace`: the registry
/// policy and the Service exposure policy (a dry run of a NodePort Service must be refused).
async fn policies_active(client: &Client, namespace: &str) -> std::result::Result<bool, String> {
    if !registry_policy_active(client, namespace).await? {
        return Ok(false);
    }
    let svc: Service = match serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "govcloud-service-probe"},
        "spec": {"type": "NodePort", "ports": [{"port": 80}]}
    })) {
        Ok(s) => s,
        Err(_) => return Ok(false),
    };
    let pp = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    match Api::<Service>::namespaced(client.clone(), namespace)
        .create(&pp, &svc)
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("cannot create resource") => Err(format!(
            "The operator's identity on this cluster may not create Services, which the Service exposure policy check needs (a server-side dry run; nothing is created): {}. Grant it (the chart's member role has it).",
            s.message
        )),
        Err(kube::Error::Api(s)) => Ok(s.message.contains(&format!("'{}'", build::SERVICE_POLICY))),
        _ => Ok(false),
    }
}

fn build_system_namespace() -> Child {
    Child {
        kind: Kind::Namespace,
        namespace: None,
        name: build::SYSTEM_NAMESPACE.into(),
        body: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": build::SYSTEM_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}}),
    }
}

/// How many objects of kind `K` a (limited) metadata list in `ns` returns.
async fn listed<K>(client: &Client, ns: &str, lp: &ListParams) -> Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .list_metadata(lp)
        .await?
        .items
        .len())
}

/// What still lives in the agency's namespaces, as readable strings.
async fn remaining_workloads(client: &Client, namespaces: &[String]) -> Result<Vec<String>> {
    let lp = ListParams::default().limit(1);
    let mut found = Vec::new();
    for ns in namespaces {
        let count = |n: usize, what: &str| {
            if n > 0 { Some(format!("{what} in {ns}")) } else { None }
        };
        let pods = Api::<Pod>::namespaced(client.clone(), ns).list_metadata(&lp).await;
        let pods = match pods {
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            r => r?,
        };
        found.extend(count(pods.items.len(), "pods"));
        found.extend(count(listed::<Deployment>(client, ns, &lp).await?, "Deployments"));
        found.extend(count(listed::<StatefulSet>(client, ns, &lp).await?, "StatefulSets"));
        found.extend(count(listed::<Job>(client, ns, &lp).await?, "Jobs"));
        found.extend(count(
            listed::<PersistentVolumeClaim>(client, ns, &lp).await?,
            "PersistentVolumeClaims",
        ));
    }
    Ok(found)
}

async fn cleanup(ac: Arc<AgencyCloud>, ctx: &Context) -> Result<Action> {
    let name = ac.name_any();
    let Some(placement) = ac.status.as_ref().and_then(|s| s.placement.clone()) else {
        return Ok(Action::await_change());
    };
    let blocked = |reason: &'static str, msg: String| {
        let mut conds = ac.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
        conds.retain(|c| c.type_ != DELETION_BLOCKED && c.type_ != types::READY);
        let keep: Vec<Desired<'_>> = conds
            .iter()
            .map(|c| Desired {
                type_: c.type_.as_str(),
                status: c.status.as_str(),
                reason: c.reason.as_str(),
                message: c.message.clone(),
            })
            .chain([
                Desired::new(DELETION_BLOCKED, true, reason, msg.clone()),
                Desired::new(
                    types::READY,
                    false,
                    "Deleting",
                    "Deletion is waiting (see DeletionBlocked).",
                ),
            ])
            .collect();
        status_with(
            &ac,
            Some(placement.clone()),
            ac.status.as_ref().map(|s| s.environments.clone()).unwrap_or_default(),
            &keep,
        )
    };
    let dcc = ctx
        .clusters
        .state()
        .into_iter()
        .find(|d| d.name_any() == placement.cluster);
    let reachable = dcc.as_ref().is_some_and(|d| {
        !d.status.as_ref().is_some_and(|s| {
            conditions::find(&s.conditions, types::REACHABLE).is_some_and(|c| c.status == conditions::FALSE)
        })
    });
    let client = match &dcc {
        Some(d) if reachable => ctx.members.client_for(d).await.ok(),
        _ => None,
    };
    let Some(client) = client else {
        let msg = format!(
            "Cluster {} is not reachable or not registered; its namespaces are left untouched and deletion retries.",
            placement.cluster
        );
        write_status::<AgencyCloud>(ctx, &ac, blocked("ClusterUnreachable", msg.clone())).await?;
        return Err(Error::DeletionBlocked(msg));
    };
    let namespaces: Vec<String> = ac
        .spec
        .cloud
        .environments
        .iter()
        .map(|e| build::namespace_name(&name, &e.name))
        .collect();
    let policy = ac.spec.cloud.deletion_policy;
    if policy == DeletionPolicy::Protect {
        // Only the agency's own namespaces (not one of the same name it was refused).
        let mut own = Vec::new();
        for ns in &namespaces {
            let live = namespace(&client, ns).await;
            let foreign = matches!(&live, Ok(Some(n)) if n.metadata.labels.as_ref().and_then(|l| l.get(govcloud_api::labels::AGENCY_LABEL)) != Some(&name));
            if !foreign {
                own.push(ns.clone());
            }
        }
        let left = match remaining_workloads(&client, &own).await {
            Ok(l) => l,
            Err(e) => {
                let msg = format!(
                    "Cannot check cluster {} for workloads ({e}); nothing deleted, retrying.",
                    placement.cluster
                );
                write_status::<AgencyCloud>(ctx, &ac, blocked("ClusterUnreachable", msg.clone())).await?;
                return Err(Error::DeletionBlocked(msg));
            }
        };
        if !left.is_empty() {
            let msg = format!(
                "deletionPolicy is Protect and these still exist: {}. Delete them first, or set spec.deletionPolicy: Delete to delete everything.",
                left.join(", ")
            );
            let already = ac
                .status
                .as_ref()
                .is_some_and(|s| conditions::is_true(&s.conditions, DELETION_BLOCKED));
            write_status::<AgencyCloud>(ctx, &ac, blocked("WorkloadsPresent", msg.clone())).await?;
            if !already {
                publish(ctx, &ac, EventType::Warning, "DeletionBlocked", "Delete", msg.clone()).await;
            }
            return Err(Error::DeletionBlocked(msg));
        }
    }
    match delete_children(ctx, &client, dcc.as_deref(), &name, &namespaces, policy).await {
        Ok(()) => {}
        Err(Error::Kube(e)) if !matches!(e, kube::Error::Api(_)) => {
            let msg = format!(
                "Cluster {} is not reachable ({}); its namespaces are left untouched and deletion retries.",
                placement.cluster,
                crate::member::describe(&e)
            );
            write_status::<AgencyCloud>(ctx, &ac, blocked("ClusterUnreachable", msg.clone())).await?;
            return Err(Error::DeletionBlocked(msg));
        }
        Err(e) => return Err(e),
    }
    ctx.placements.lock().await.remove(&name);
    ctx.status_memo.forget(&super::context::StatusMemo::key(&*ac));
    ctx.registry_probes.forget(&ac.name_any());
    ctx.quota_totals.forget(&ac);
    publish(
        ctx,
        &ac,
        EventType::Normal,
        "CleanedUp",
        "Delete",
        format!("deletionPolicy {policy:?}: cleaned up on {}.", placement.cluster),
    )
    .await;
    Ok(Action::await_change())
}

/// Deletes what the agency has on its cluster, as the deletion policy says.
async fn delete_children(
    ctx: &Context,
    client: &Client,
    dcc: Option<&DataCenterCluster>,
    name: &str,
    namespaces: &[String],
    policy: DeletionPolicy,
) -> Result<()> {
    let ignore_missing = |r: Result<(), kube::Error>| match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    };
    let dp = DeleteParams::default();
    // The per-agency registry policy of earlier versions (now one shared policy per cluster).
    let param = format!("{}{name}", build::LEGACY_REGISTRY_POLICY_PREFIX);
    ignore_missing(
        api(client, Kind::PolicyBinding, None)
            .delete(&param, &dp)
            .await
            .map(|_| ()),
    )?;
    ignore_missing(api(client, Kind::Policy, None).delete(&param, &dp).await.map(|_| ()))?;
    // Parameter objects of earlier versions.
    let cms = api(client, Kind::ConfigMap, Some(build::SYSTEM_NAMESPACE));
    ignore_missing(cms.delete(&param, &dp).await.map(|_| ()))?;
    if policy != DeletionPolicy::Retain {
        for ns in namespaces {
            ignore_missing(delete_own_namespace(client, ns, name).await)?;
            if dcc.is_some_and(|d| d.spec.kubeconfig_secret.is_some()) {
                ignore_missing(delete_own_namespace(&ctx.client, ns, name).await)?;
            }
        }
    }
    Ok(())
}

/// Deletes namespace `ns` only if it is the agency's (labelled `govcloud.io/agency=<agency>`),
/// with its uid as precondition: a namespace that merely has the name an environment would
/// get (`kube` + `system`; one the operator refused to adopt) is never deleted.
async fn delete_own_namespace(client: &Client, ns: &str, agency: &str) -> std::result::Result<(), kube::Error> {
    let Some(live) = namespace(client, ns).await? else {
        return Ok(());
    };
    let api = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    let owner = live
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(govcloud_api::labels::AGENCY_LABEL));
    if owner.map(String::as_str) != Some(agency) {
        tracing::warn!(
            namespace = ns,
            ?owner,
            "not deleting a namespace that is not the agency's"
        );
        return Ok(());
    }
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: live.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    api.delete(ns, &dp).await.map(|_| ())
}

#[instrument(skip_all, fields(agency = %ac.name_any()))]
async fn reconcile(ac: Arc<AgencyCloud>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let api: Api<AgencyCloud> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, ac, |event| async {
        match event {
            Finalizer::Apply(ac) => {
                let outcome = apply(ac.clone(), &ctx).await?;
                let Some(status) = outcome.status else {
                    return Ok(Action::requeue(outcome.requeue));
                };
                // Quota usage moves with every pod the agency starts: changes that come in
                // quick succession are written together, at most one usage-only write per
                // USAGE_COALESCE (anything else is written at once).
                if usage_only(ac.status.as_ref(), &status)
                    && let Some(since) = ctx.status_memo.since_last_write(&super::context::StatusMemo::key(&*ac))
                    && since < USAGE_COALESCE
                {
                    return Ok(Action::requeue(USAGE_COALESCE - since));
                }
                write_status::<AgencyCloud>(&ctx, &ac, status).await?;
                Ok(Action::requeue(outcome.requeue))
            }
            Finalizer::Cleanup(ac) => cleanup(ac, &ctx).await,
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
    AgencyStreams {
        own,
        systems,
        policies,
        clusters: cluster_events,
    }: AgencyStreams,
) {
    let reader = own.reader();
    let controller = Controller::for_shared_stream(own, reader);
    let store = controller.store();
    let clusters = ctx.clusters.clone();
    tokio::spawn(async move {
        loop {
            let ready = tokio::time::timeout(Duration::from_millis(500), async {
                store.wait_until_ready().await.is_ok() && clusters.wait_until_ready().await.is_ok()
            })
            .await;
            if let Ok(ok) = ready {
                if ok {
                    synced.synced();
                }
                break;
            }
        }
    });
    let member_events = ctx.member_events.lock().ok().and_then(|mut g| g.take());
    let mut controller =
        controller.with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency));
    if let Some(rx) = member_events {
        controller = controller.reconcile_on(rx.map(|agency| ObjectRef::<AgencyCloud>::new(&agency)));
    }
    // A cluster that becomes Ready (or changes) may now take agencies waiting for placement,
    // and unblocks agencies waiting for it. From the watch of `ctx.clusters`, so that the
    // reconcile reads the cluster as it is after the change.
    let agencies_for_dcc = ctx.agencies.get().cloned();
    // Hosted systems and backup policies change the agency's backup compliance.
    let agency_of_ns = |ctx: Arc<Context>| {
        move |ns: Option<String>| -> Option<ObjectRef<AgencyCloud>> {
            lookup::agency_of(&ctx, &ns?).map(|a| ObjectRef::from_obj(&*a))
        }
    };
    let by_system = agency_of_ns(ctx.clone());
    let by_policy = agency_of_ns(ctx.clone());
    let controller = controller
        .watches_shared_stream(systems, move |hs| by_system(hs.namespace()))
        .watches_shared_stream(policies, move |bp| by_policy(bp.namespace()));
    controller
        .watches_shared_stream(cluster_events, move |dcc: Arc<DataCenterCluster>| {
            let name = dcc.name_any();
            agencies_for_dcc
                .as_ref()
                .map(|s| s.state())
                .unwrap_or_default()
                .into_iter()
                .filter(|a| {
                    a.status
                        .as_ref()
                        .and_then(|s| s.placement.as_ref())
                        .is_none_or(|p| p.cluster == name)
                })
                .map(|a| ObjectRef::from_obj(&*a))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<AgencyCloud>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::usage_only;
    use govcloud_api::agency::{AgencyCloudStatus, EnvironmentStatus};

    #[test]
    fn usage_only_changes_are_told_apart() {
        let env = |used: &str, hard: &str| EnvironmentStatus {
            name: "dev".into(),
            namespace: "a-dev".into(),
            hard: [("requests.cpu".to_string(), hard.to_string())].into(),
            used: [("requests.cpu".to_string(), used.to_string())].into(),
        };
        let st = |e: EnvironmentStatus| AgencyCloudStatus {
            environments: vec![e],
            ..Default::default()
        };
        let old = st(env("0", "2"));
        assert!(usage_only(Some(&old), &st(env("50m", "2"))));
        assert!(!usage_only(Some(&old), &old.clone()), "no change at all");
        assert!(!usage_only(Some(&old), &st(env("50m", "4"))), "the quota changed too");
        assert!(!usage_only(None, &old), "the first status");
        let mut other = st(env("50m", "2"));
        other.observed_generation = Some(2);
        assert!(!usage_only(Some(&old), &other), "another field changed too");
        assert!(
            !usage_only(Some(&old), &AgencyCloudStatus::default()),
            "an environment went away"
        );
    }
}
