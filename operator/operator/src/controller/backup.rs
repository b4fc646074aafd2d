//! BackupPolicy controller: Velero Schedules on the agency's cluster (primary and off-site
//! locations), GFS retention through Velero's DeleteBackupRequests, RPO measured from the
//! backups themselves, restore drills into scratch namespaces and recoveries on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tracing::{info, instrument, warn};

use super::context::Context;
use super::lookup::{Target, target};
use super::status::{Reconciled, error_policy, field_manager, write_status};
use super::streams::BackupStreams;
use crate::error::{Error, Result};
use crate::server::PendingCache;
use govcloud_api::backup::{
    BackupLocation, BackupPolicy, BackupPolicyStatus, BackupRecord, FINALIZER, RestoreRecord, VolumeData,
};
use govcloud_api::conditions::READY;
use govcloud_api::conditions::backup::{DRILL_PASSED, OFFSITE_COMPLIANT, RPO_MET, VOLUME_DATA};
use govcloud_api::hosted::HostedSystem;
use govcloud_api::labels::{MANAGED_BY, RESTORED_BY_ANNOTATION, SPEC_RECORD_LABEL, SYSTEM_LABEL};
use govcloud_core::backup::{self as core, Backup, Schedule};
use govcloud_core::conditions::{self, Desired};
use govcloud_core::hosted::SPEC_RECORD_KEY;

/// Controller name.
pub const CONTROLLER: &str = "backuppolicy";
/// Annotation: a new value runs a restore drill now.
pub const DRILL_ANNOTATION: &str = "govcloud.io/drill";
/// Annotation: a new value restores the newest good backup into the namespace.
pub const RESTORE_ANNOTATION: &str = "govcloud.io/restore";
/// Annotation: restore this backup (one of the policy's) instead of the newest good one.
pub const RESTORE_BACKUP_ANNOTATION: &str = "govcloud.io/restore-backup";

impl Reconciled for BackupPolicy {
    const CONTROLLER: &'static str = CONTROLLER;

    fn retry_after(_: &Error) -> Duration {
        Duration::from_secs(10)
    }

    fn api(client: Client, obj: &Self) -> Api<Self> {
        Api::namespaced(client, &obj.namespace().unwrap_or_default())
    }
}

/// How long restored workloads of a drill may take to run.
const DRILL_DEADLINE: i64 = 180;

fn velero(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "velero.io".into(),
        version: "v1".into(),
        api_version: "velero.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn velero_api(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), core::VELERO_NAMESPACE, &velero(kind, plural))
}

fn object(body: Value) -> Result<DynamicObject> {
    serde_json::from_value(body).map_err(|source| Error::Serialize {
        what: "Velero object",
        source,
    })
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// Applies `body` unless the live object already carries it (a read, then at most one write).
async fn ensure(ctx: &Context, api: &Api<DynamicObject>, name: &str, body: &Value) -> Result<()> {
    let live = api.get_opt(name).await?;
    let same = live
        .and_then(|l| serde_json::to_value(l).ok())
        .is_some_and(|l| govcloud_core::subset::contains(&l, body));
    if !same {
        ctx.metrics.child_applied(CONTROLLER);
        api.patch(name, &field_manager::<BackupPolicy>(), &Patch::Apply(body))
            .await?;
    }
    Ok(())
}

/// Registers a BackupLocation with Velero on the target cluster for the agency of `t`: its
/// credentials Secret (copied from the operator's namespace on the hub: key `cloud`, or the
/// agency's own key of a per-agency location) and a BackupStorageLocation.
async fn ensure_location(ctx: &Context, t: &Target, loc: &BackupLocation) -> std::result::Result<String, String> {
    let agency = t.agency.name_any();
    let name = core::agency_storage_location_name(&loc.name_any(), loc.spec.per_agency, &agency);
    let secret_name = format!("{name}-credentials");
    let key = if loc.spec.per_agency { agency.as_str() } else { "cloud" };
    let hub_secret = Api::<Secret>::namespaced(ctx.client.clone(), &ctx.settings.namespace)
        .get_opt(&loc.spec.credentials_secret)
        .await
        .map_err(|e| format!("cannot read Secret {}: {e}", loc.spec.credentials_secret))?
        .ok_or_else(|| {
            format!(
                "BackupLocation {}: Secret {}/{} is missing; the platform team must create it (key `{key}`)",
                loc.name_any(),
                ctx.settings.namespace,
                loc.spec.credentials_secret
            )
        })?;
    let cloud = hub_secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
        .ok_or_else(|| {
            if loc.spec.per_agency {
                format!(
                    "BackupLocation {} gives each agency its own credentials (spec.perAgency), and Secret {} has no key `{key}` for this agency; the platform team must add the agency's gateway credentials",
                    loc.name_any(),
                    loc.spec.credentials_secret
                )
            } else {
                format!(
                    "BackupLocation {}: Secret {} has no key `cloud`",
                    loc.name_any(),
                    loc.spec.credentials_secret
                )
            }
        })?;
    // Only this agency's credentials reach the member cluster (under Velero's key `cloud`).
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret_name, "namespace": core::VELERO_NAMESPACE,
                     "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
        "data": {"cloud": cloud},
    });
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        t.client.clone(),
        core::VELERO_NAMESPACE,
        &ApiResource::erase::<Secret>(&()),
    );
    let fail = |e: Error| {
        format!(
            "cannot register BackupLocation {} with Velero on {}: {e} (is Velero installed there, namespace {}?)",
            loc.name_any(),
            t.cluster,
            core::VELERO_NAMESPACE
        )
    };
    ensure(ctx, &secrets, &secret_name, &secret).await.map_err(fail)?;
    let bsl = core::velero_location(
        &name,
        &loc.spec,
        &secret_name,
        loc.spec.per_agency.then_some(agency.as_str()),
    );
    ensure(
        ctx,
        &velero_api(&t.client, "BackupStorageLocation", "backupstoragelocations"),
        &name,
        &bsl,
    )
    .await
    .map_err(fail)?;
    Ok(name)
}

fn time_of(v: &Value, key: &str) -> Option<Timestamp> {
    v.get("status")?.get(key)?.as_str()?.parse().ok()
}

fn included_namespaces(spec: &Value) -> Vec<String> {
    spec.get("includedNamespaces")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The policy's backups among those listed, and which of its schedules took each
/// ([`core::claim`]: by identity labels, or for those taken under the old names by name,
/// namespace and time). Nothing else is counted, pruned or restored.
fn claimed<'a>(
    list: &'a [DynamicObject],
    id: &core::PolicyId,
    agency_created: Option<Timestamp>,
) -> Vec<(&'a DynamicObject, core::Claim)> {
    list.iter()
        .filter_map(|b| {
            let claim = core::claim(
                id,
                b.labels(),
                &included_namespaces(&b.data["spec"]),
                time_of(&b.data, "startTimestamp"),
                agency_created,
            )?;
            Some((b, claim))
        })
        .collect()
}

/// A backup of the policy as retention and the status see it.
struct Found {
    backup: Backup,
    /// Region of the location of the schedule that took it.
    region: String,
    completed: Option<Timestamp>,
    claim: core::Claim,
}

/// The policy's backups with the region of the schedule that took each; those of an
/// off-site schedule no longer configured are left out (and kept).
fn found_of(claimed: &[(&DynamicObject, core::Claim)], primary: &str, offsite: Option<&str>) -> Vec<Found> {
    claimed
        .iter()
        .filter_map(|(b, claim)| {
            let region = if claim.offsite { offsite? } else { primary }.to_string();
            let started =
                time_of(&b.data, "startTimestamp").or_else(|| b.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
            let phase = b
                .data
                .get("status")
                .and_then(|s| s.get("phase"))
                .and_then(|p| p.as_str())
                .unwrap_or("New")
                .to_string();
            Some(Found {
                backup: Backup {
                    name: b.name_any(),
                    time: started,
                    phase,
                },
                region,
                completed: time_of(&b.data, "completionTimestamp"),
                claim: *claim,
            })
        })
        .collect()
}

/// Removes the policy's Velero Schedule under its old name if it is there and the
/// policy's ([`core::is_legacy_schedule_of`]: another agency's policy may have had the
/// same old name). Its backups stay.
async fn remove_legacy_schedule(
    ctx: &Context,
    api: &Api<DynamicObject>,
    ns: &str,
    policy: &str,
    offsite: bool,
) -> Result<()> {
    let name = core::legacy_schedule_name(ns, policy, offsite);
    let Some(s) = api.get_opt(&name).await? else {
        return Ok(());
    };
    if !core::is_legacy_schedule_of(
        ns,
        policy,
        s.labels(),
        &included_namespaces(&s.data["spec"]["template"]),
    ) {
        return Ok(());
    }
    info!(schedule = %name, %policy, "removing the policy's Schedule under its old name (its backups stay)");
    ctx.metrics.child_applied(CONTROLLER);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

struct Plan {
    level: u8,
    rpo: i64,
    region: String,
    systems: Vec<String>,
    whole_namespace: bool,
    primary: BackupLocation,
    offsite: Option<BackupLocation>,
}

/// Works out what the policy asks for; Err(problems) names the fields to fix.
async fn plan(ctx: &Context, bp: &BackupPolicy, t: &Target, ns: &str) -> std::result::Result<Plan, Vec<String>> {
    let level = t.agency.spec.cloud.security_level;
    let region = ctx
        .clusters
        .state()
        .into_iter()
        .find(|d| d.name_any() == t.cluster)
        .map(|d| d.spec.region.clone())
        .unwrap_or_default();
    // From the watch's store once it has listed; until then (just started) from the API.
    let cached = ctx
        .locations
        .get()
        .filter(|s| s.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok()))
        .map(|s| s.state().iter().map(|l| (**l).clone()).collect::<Vec<_>>());
    let mut sorted = match cached {
        Some(l) => l,
        None => {
            Api::<BackupLocation>::all(ctx.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(|e| vec![format!("cannot list BackupLocations: {e}; retrying")])?
                .items
        }
    };
    sorted.sort_by_key(|l| l.name_any());
    let owner = core::Owner {
        level,
        zone: t.agency.spec.cloud.zone,
        region: &region,
    };
    let (rpo, mut problems) = core::validate(&bp.spec, owner, &sorted, now());
    let mut systems: Vec<String> = ctx
        .systems
        .get()
        .map(|s| ctx.systems_by_ns.objects(s, ns))
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter(|s| {
            bp.spec
                .selector
                .as_ref()
                .is_none_or(|sel| core::selects(sel, s.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        })
        .map(|s| s.name_any())
        .collect();
    systems.sort();
    if systems.is_empty() && bp.spec.selector.is_some() {
        problems.push(format!(
            "spec.selector matches no HostedSystem in {ns}; check the labels (`kubectl get hostedsystems -n {ns} --show-labels`)"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let primary = core::choose_location(&sorted, &region, owner)
        .cloned()
        .map_err(|e| vec![e])?;
    let offsite = match &bp.spec.offsite_region {
        Some(r) => Some(core::choose_location(&sorted, r, owner).cloned().map_err(|e| vec![e])?),
        None => None,
    };
    Ok(Plan {
        level,
        rpo,
        region,
        systems,
        whole_namespace: bp.spec.selector.is_none(),
        primary,
        offsite,
    })
}

fn record(f: &Found) -> BackupRecord {
    let b = &f.backup;
    BackupRecord {
        name: b.name.clone(),
        phase: b.phase.clone(),
        time: Some(Time(if b.successful() {
            f.completed.unwrap_or(b.time)
        } else {
            b.time
        })),
        region: Some(f.region.clone()),
        volumes: None,
        bytes: None,
    }
}

/// Velero's pod volume backups (or restores) labelled `label=name`, summed.
async fn pod_volumes(t: &Target, plural: &str, label: &str, name: &str) -> Result<core::PodVolumes> {
    let kind = if plural == "podvolumebackups" {
        "PodVolumeBackup"
    } else {
        "PodVolumeRestore"
    };
    let items = velero_api(&t.client, kind, plural)
        .list(&ListParams::default().labels(&format!("{label}={}", core::velero_label_value(name))))
        .await?
        .items;
    Ok(core::pod_volumes(
        &items.into_iter().map(|o| o.data).collect::<Vec<_>>(),
    ))
}

/// The pod volume restores of a restore (drill or recovery), recorded in its record.
async fn restored_volumes(t: &Target, r: &mut RestoreRecord) -> Result<core::PodVolumes> {
    let vols = pod_volumes(t, "podvolumerestores", core::RESTORE_NAME_LABEL, &r.restore).await?;
    r.volumes = Some(vols.volumes);
    r.bytes = Some(vols.bytes);
    Ok(vols)
}

/// A backup's record with the volumes and bytes of its pod volume backups (when the
/// policy takes volume contents).
async fn record_with_volumes(t: &Target, f: &Found, data: bool) -> Result<BackupRecord> {
    let mut r = record(f);
    if data {
        let v = pod_volumes(t, "podvolumebackups", core::BACKUP_NAME_LABEL, &f.backup.name).await?;
        r.volumes = Some(v.volumes);
        r.bytes = Some(v.bytes);
    }
    Ok(r)
}

/// The first `n` of `items`, joined, with how many more there are.
fn head_of(items: &[String], n: usize) -> String {
    let mut s = items.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > n {
        s.push_str(&format!(" and {} more", items.len() - n));
    }
    s
}

/// The covered pods with volume contents on nodes where the node-agent `ds` has no running
/// pod (the node-agent's own pods are found by its selector).
async fn pods_without_agent(ns: &str, systems: Option<&[String]>, t: &Target, ds: &DaemonSet) -> Result<Vec<String>> {
    let selector = ds
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    if selector.is_empty() {
        return Ok(vec![format!(
            "DaemonSet {}/{} has no label selector",
            core::VELERO_NAMESPACE,
            core::NODE_AGENT
        )]);
    }
    let agents: BTreeSet<String> = Api::<Pod>::namespaced(t.client.clone(), core::VELERO_NAMESPACE)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.spec.and_then(|s| s.node_name))
        .collect();
    let pods = Api::<Pod>::namespaced(t.client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let pods: Vec<Value> = pods
        .iter()
        .filter(|p| systems.is_none_or(|s| p.labels().get(SYSTEM_LABEL).is_some_and(|l| s.contains(l))))
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();
    Ok(core::pods_without_node_agent(&pods, &agents))
}

/// Whether the policy's backups take volume contents on the target cluster, and the
/// `VolumeData` condition saying so: wanted by the spec, and Velero's node-agent is
/// installed there (without it a pod volume backup fails and so would the whole backup).
async fn volume_data(
    bp: &BackupPolicy,
    t: &Target,
    ns: &str,
    systems: Option<&[String]>,
) -> Result<(bool, Desired<'static>)> {
    if bp.spec.volume_data == VolumeData::None {
        return Ok((
            false,
            Desired::new(
                VOLUME_DATA,
                true,
                "NotRequested",
                "spec.volumeData is None: backups hold objects only (manifests, Secrets, claims), not the volumes' contents.",
            ),
        ));
    }
    let agent = Api::<DaemonSet>::namespaced(t.client.clone(), core::VELERO_NAMESPACE)
        .get_opt(core::NODE_AGENT)
        .await;
    Ok(match agent {
        Ok(Some(ds)) => match pods_without_agent(ns, systems, t, &ds).await? {
            uncovered if !uncovered.is_empty() => (
                false,
                Desired::new(
                    VOLUME_DATA,
                    false,
                    "NodeAgentMissingOnNodes",
                    format!(
                        "Pods with volumes run where Velero's node-agent does not ({}): backups hold objects only, so that they do not fail. The platform team extends DaemonSet {}/{} to those nodes; or set spec.volumeData: None to say objects are enough.",
                        head_of(&uncovered, 5),
                        core::VELERO_NAMESPACE,
                        core::NODE_AGENT
                    ),
                ),
            ),
            _ => (
                true,
                Desired::new(
                    VOLUME_DATA,
                    true,
                    "VolumesBackedUp",
                    format!(
                        "Backups copy the contents of every volume of the covered systems' pods (Velero's node-agent with kopia on {}).",
                        t.cluster
                    ),
                ),
            ),
        },
        Ok(None) => (
            false,
            Desired::new(
                VOLUME_DATA,
                false,
                "NodeAgentMissing",
                format!(
                    "Velero's node-agent (DaemonSet {}/{}) is not installed on {}: backups hold objects only, a restored system comes back with empty volumes. The platform team installs it (docs/install.md); or set spec.volumeData: None to say objects are enough.",
                    core::VELERO_NAMESPACE,
                    core::NODE_AGENT,
                    t.cluster
                ),
            ),
        ),
        // The operator may not read DaemonSets there: say so, take objects only.
        Err(kube::Error::Api(e)) if e.code == 403 => (
            false,
            Desired::new(
                VOLUME_DATA,
                false,
                "NodeAgentUnknown",
                format!(
                    "The operator may not read DaemonSet {}/{} on {} ({}): backups hold objects only; grant it (the chart's member role does).",
                    core::VELERO_NAMESPACE,
                    core::NODE_AGENT,
                    t.cluster,
                    e.message
                ),
            ),
        ),
        // Anything else is retried: the schedules are not rewritten on a passing error.
        Err(e) => return Err(e.into()),
    })
}

fn labels_for_metrics<'a>(agency: &'a str, ns: &'a str, name: &'a str) -> [&'a str; 3] {
    [agency, ns, name]
}

async fn apply(bp: Arc<BackupPolicy>, ctx: &Context) -> Result<Action> {
    let ns = bp.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = bp.name_any();
    let prev = bp.status.clone().unwrap_or_default();
    let stamp = Time(now());
    let t = match target(ctx, &ns).await {
        Ok(t) => t,
        Err(("NoAgency", _)) if super::lookup::settling(ctx, &ns, bp.metadata.creation_timestamp.as_ref()) => {
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        Err((reason, msg)) => {
            let status = BackupPolicyStatus {
                conditions: conditions::merge(
                    &prev.conditions,
                    &[Desired::new(READY, false, reason, msg)],
                    bp.metadata.generation,
                    &stamp,
                ),
                observed_generation: bp.metadata.generation,
                ..prev.clone()
            };
            write_status::<BackupPolicy>(ctx, &bp, status).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    let agency = t.agency.name_any();
    let plan = match plan(ctx, &bp, &t, &ns).await {
        Ok(p) => p,
        Err(problems) => {
            // Nothing is deleted: existing Schedules and backups stay until the spec is fixed.
            let status = BackupPolicyStatus {
                conditions: conditions::merge(
                    &prev.conditions,
                    &[Desired::new(
                        READY,
                        false,
                        "InvalidSpec",
                        format!(
                            "{} (existing schedules and backups are left as they are)",
                            problems.join("; ")
                        ),
                    )],
                    bp.metadata.generation,
                    &stamp,
                ),
                observed_generation: bp.metadata.generation,
                cluster: Some(t.cluster.clone()),
                ..prev.clone()
            };
            write_status::<BackupPolicy>(ctx, &bp, status).await?;
            return Ok(Action::requeue(Duration::from_secs(120)));
        }
    };

    // Locations and schedules on the agency's cluster.
    let mut location_problems = Vec::new();
    let primary_bsl = match ensure_location(ctx, &t, &plan.primary).await {
        Ok(n) => Some(n),
        Err(e) => {
            location_problems.push(e);
            None
        }
    };
    let offsite_bsl = match &plan.offsite {
        Some(l) => match ensure_location(ctx, &t, l).await {
            Ok(n) => Some((n, l.spec.region.clone())),
            Err(e) => {
                location_problems.push(e);
                None
            }
        },
        None => None,
    };
    let schedules_api = velero_api(&t.client, "Schedule", "schedules");
    let id = core::PolicyId::new(&ns, &name, &t.agency.spec.cloud.agency.credit_code);
    let agency_created = t.agency.metadata.creation_timestamp.as_ref().map(|c| c.0);
    let primary_name = core::schedule_name(&ns, &name, false);
    let offsite_name = core::schedule_name(&ns, &name, true);
    let selection = (!plan.whole_namespace).then_some(plan.systems.as_slice());
    let (data, data_cond) = volume_data(&bp, &t, &ns, selection).await?;
    if let Some(bsl) = &primary_bsl {
        let body = core::velero_schedule(&primary_name, &id, &bp.spec, selection, bsl, data);
        if let Err(e) = ensure(ctx, &schedules_api, &primary_name, &body).await {
            location_problems.push(format!("cannot create the Velero Schedule on {}: {e}", t.cluster));
        }
    }
    match &offsite_bsl {
        Some((bsl, _)) => {
            let body = core::velero_schedule(&offsite_name, &id, &bp.spec, selection, bsl, data);
            if let Err(e) = ensure(ctx, &schedules_api, &offsite_name, &body).await {
                location_problems.push(format!("cannot create the off-site Velero Schedule: {e}"));
            }
        }
        None => {
            if bp.spec.offsite_region.is_none() && schedules_api.get_opt(&offsite_name).await?.is_some() {
                schedules_api.delete(&offsite_name, &DeleteParams::default()).await?;
            }
        }
    }

    // The policy's backups (by their identity labels, or for those taken under the old
    // names by name, namespace and time), retention and the recovery point.
    let listed = velero_api(&t.client, "Backup", "backups")
        .list(&ListParams::default().labels(&core::backup_list_selector(&ns, &name)))
        .await?;
    let claims = claimed(&listed.items, &id, agency_created);
    let offsite_region = offsite_bsl.as_ref().map(|(_, r)| r.as_str());
    let mut found = found_of(&claims, &plan.region, offsite_region);
    // The Schedules under the old names stop once the new ones run (their backups stay).
    let times: Vec<(Timestamp, core::Claim)> = claims
        .iter()
        .filter_map(|(b, c)| Some((time_of(&b.data, "startTimestamp")?, *c)))
        .collect();
    if core::legacy_schedules_may_run(&times) {
        for off in [false, true] {
            remove_legacy_schedule(ctx, &schedules_api, &ns, &name, off).await?;
        }
    }
    // Velero waits for the first scheduled time; take a first recovery point at once.
    let backups_api = velero_api(&t.client, "Backup", "backups");
    for (schedule, offsite, bsl) in [(primary_name.clone(), false, primary_bsl.clone())]
        .into_iter()
        .chain(offsite_bsl.clone().map(|(b, _)| (offsite_name.clone(), true, Some(b))))
    {
        let Some(bsl) = bsl else { continue };
        let mine: Vec<Backup> = found
            .iter()
            .filter(|f| f.claim.offsite == offsite)
            .map(|f| f.backup.clone())
            .collect();
        // Velero refuses backups to a location it has not validated yet: retry those.
        let refused = |b: &Backup| b.phase == "FailedValidation";
        if !mine.is_empty() && mine.iter().all(refused) {
            for b in &mine {
                ctx.metrics.child_applied(CONTROLLER);
                match backups_api.delete(&b.name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            continue;
        }
        let available = velero_api(&t.client, "BackupStorageLocation", "backupstoragelocations")
            .get_opt(&bsl)
            .await?
            .is_some_and(|l| l.data["status"]["phase"] == "Available");
        if mine.is_empty() && available {
            let body = core::velero_initial_backup(&schedule, &id, &bp.spec, selection, &bsl, data, now());
            ctx.metrics.child_applied(CONTROLLER);
            match backups_api.create(&PostParams::default(), &object(body)?).await {
                Ok(b) => {
                    let c = claimed(std::slice::from_ref(&b), &id, agency_created);
                    found.extend(found_of(&c, &plan.region, offsite_region));
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let tz = jiff::tz::TimeZone::get(&bp.spec.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let dbrs = velero_api(&t.client, "DeleteBackupRequest", "deletebackuprequests");
    let mut retained = 0u32;
    for offsite in [false].into_iter().chain(offsite_bsl.is_some().then_some(true)) {
        // Under the new and the old names alike: one schedule's backups.
        let mine: Vec<Backup> = found
            .iter()
            .filter(|f| f.claim.offsite == offsite && f.backup.phase != "Deleting")
            .map(|f| f.backup.clone())
            .collect();
        let keep = core::retained(&mine, &bp.spec.retention, &tz);
        retained += keep.len() as u32;
        for b in mine.iter().filter(|b| !keep.contains(&b.name)) {
            if dbrs.get_opt(&core::delete_request_name(&b.name)).await?.is_none() {
                info!(backup = %b.name, policy = %name, "pruning backup outside the retention set");
                ctx.metrics.child_applied(CONTROLLER);
                match dbrs
                    .create(
                        &PostParams::default(),
                        &object(core::velero_delete_request(&b.name, &id))?,
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let newest = found.iter().max_by_key(|f| (f.backup.time, f.backup.name.clone()));
    let newest_good = |region: Option<&str>| {
        found
            .iter()
            .filter(|f| f.backup.successful() && region.is_none_or(|x| x == f.region))
            .max_by_key(|f| (f.completed.unwrap_or(f.backup.time), f.backup.name.clone()))
    };
    let good = newest_good(Some(&plan.region)).or_else(|| newest_good(None));
    let copies: BTreeSet<String> = found
        .iter()
        .filter(|f| f.backup.successful())
        .map(|f| f.region.clone())
        .collect();
    let n = now();
    let created = bp.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(n);
    let rpo_txt = core::format_rpo(plan.rpo);
    let point = good.map(|f| f.completed.unwrap_or(f.backup.time));
    let within = |p: Option<Timestamp>| match p {
        Some(p) => n.as_second() - p.as_second() <= plan.rpo,
        None => n.as_second() - created.as_second() <= plan.rpo,
    };
    let rpo_cond = match (point, within(point)) {
        (Some(p), true) => Desired::new(
            RPO_MET,
            true,
            "WithinRPO",
            format!("The newest recovery point ({p}) is within the RPO of {rpo_txt}."),
        ),
        (None, true) => Desired::new(
            RPO_MET,
            true,
            "FirstBackupPending",
            format!("No backup yet; the first is due by the schedule, within the RPO of {rpo_txt}."),
        ),
        (p, false) => Desired::new(
            RPO_MET,
            false,
            "RPOBreached",
            format!(
                "The newest successful backup is {}, older than the RPO of {rpo_txt}. Check status.lastBackup (phase and name) and `velero backup describe` on {}; the platform team is alerted (GovcloudBackupRPOBreached).",
                p.map(|p| format!("from {p}")).unwrap_or_else(|| "missing".into()),
                t.cluster
            ),
        ),
    };
    let offsite_cond = match (&bp.spec.offsite_region, core::offsite_required(plan.level)) {
        (None, true) => Desired::new(
            OFFSITE_COMPLIANT,
            false,
            "OffsiteRequired",
            format!(
                "Security level {} requires an off-site copy: set spec.offsiteRegion to another region than {}.",
                plan.level, plan.region
            ),
        ),
        (None, false) => Desired::new(
            OFFSITE_COMPLIANT,
            true,
            "NotRequired",
            format!("Level {} does not require an off-site copy.", plan.level),
        ),
        (Some(r), _) => {
            let p = newest_good(Some(r)).map(|f| f.completed.unwrap_or(f.backup.time));
            if within(p) {
                Desired::new(
                    OFFSITE_COMPLIANT,
                    true,
                    if p.is_some() {
                        "OffsiteCopyCurrent"
                    } else {
                        "FirstBackupPending"
                    },
                    format!("Copies are kept in {} and off-site in {r}.", plan.region),
                )
            } else {
                Desired::new(
                    OFFSITE_COMPLIANT,
                    false,
                    "OffsiteCopyStale",
                    format!(
                        "No successful off-site backup in {r} within the RPO of {rpo_txt}; check the location's object store."
                    ),
                )
            }
        }
    };
    let ready = if location_problems.is_empty() {
        Desired::new(
            READY,
            true,
            "Scheduled",
            format!(
                "Velero backs up {} on {} at `{}` ({}), RPO {rpo_txt}.",
                if plan.whole_namespace {
                    format!("namespace {ns}")
                } else {
                    format!("systems {}", plan.systems.join(", "))
                },
                t.cluster,
                bp.spec.schedule.trim(),
                bp.spec.time_zone
            ),
        )
    } else {
        Desired::new(READY, false, "VeleroError", location_problems.join("; "))
    };

    // Drills and recoveries.
    let mut drill = prev.last_drill.clone();
    let mut restore = prev.last_restore.clone();
    let good_backup = good.map(|f| f.backup.name.clone());
    let mut busy = false;
    if let Some(d) = drill.as_mut().filter(|d| d.result == "Running") {
        busy = true;
        progress_drill(ctx, &t, d, &plan.systems).await?;
    } else if let Some(trigger) = drill_due(&bp, drill.as_ref(), created, n) {
        match &good_backup {
            Some(b) => {
                busy = true;
                drill = Some(start_restore(ctx, &t, &id, b, true, trigger).await?);
            }
            None => {
                drill = Some(RestoreRecord {
                    trigger,
                    result: "Failed".into(),
                    message: "There is no successful backup to drill with yet.".into(),
                    started: Some(Time(n)),
                    finished: Some(Time(n)),
                    duration_seconds: Some(0),
                    ..Default::default()
                });
            }
        }
    }
    if let Some(r) = restore.as_mut().filter(|r| r.result == "Running") {
        busy = true;
        progress_recovery(ctx, &t, r, &ns).await?;
    } else if let Some(trigger) = bp
        .annotations()
        .get(RESTORE_ANNOTATION)
        .filter(|v| restore.as_ref().is_none_or(|r| &r.trigger != *v))
    {
        let wanted = bp.annotations().get(RESTORE_BACKUP_ANNOTATION).cloned();
        let chosen = match &wanted {
            Some(w) if found.iter().any(|f| &f.backup.name == w && f.backup.successful()) => Some(w.clone()),
            Some(w) => {
                restore = Some(RestoreRecord {
                    trigger: trigger.clone(),
                    backup: w.clone(),
                    result: "Failed".into(),
                    message: format!(
                        "Backup {w} is not a successful backup of this policy; pick one of its own (status.lastSuccessfulBackup)."
                    ),
                    started: Some(Time(n)),
                    finished: Some(Time(n)),
                    duration_seconds: Some(0),
                    ..Default::default()
                });
                None
            }
            None => good_backup.clone(),
        };
        if let Some(b) = chosen {
            busy = true;
            restore = Some(start_restore(ctx, &t, &id, &b, false, trigger.clone()).await?);
        } else if restore.as_ref().is_none_or(|r| &r.trigger != trigger) {
            restore = Some(RestoreRecord {
                trigger: trigger.clone(),
                result: "Failed".into(),
                message: "There is no successful backup to restore yet.".into(),
                started: Some(Time(n)),
                finished: Some(Time(n)),
                duration_seconds: Some(0),
                ..Default::default()
            });
        }
    }
    let keep = bp.spec.drill.as_ref().map_or(10, |d| d.history);
    let drills = match &drill {
        Some(d) => core::drill_history(&prev.drills, d, keep),
        None => prev.drills.clone(),
    };
    let overdue = core::drill_overdue(plan.level, &drills, created, n);
    let drill_cond = match &drill {
        Some(d) if d.result != "Running" && overdue.is_some() => Desired::new(
            DRILL_PASSED,
            false,
            "DrillOverdue",
            format!(
                "Security level {} requires a passed restore drill every {} days and none passed within them (the newest drill: {} {}). Set spec.drill.schedule, or annotate the policy {DRILL_ANNOTATION}=<new value> to drill now.",
                plan.level,
                overdue.unwrap_or_default(),
                d.result,
                d.started.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
            ),
        ),
        None if overdue.is_some() => Desired::new(
            DRILL_PASSED,
            false,
            "DrillOverdue",
            format!(
                "Security level {} requires a passed restore drill every {} days and this policy has none yet. Set spec.drill.schedule, or annotate the policy {DRILL_ANNOTATION}=<new value> to drill now.",
                plan.level,
                overdue.unwrap_or_default()
            ),
        ),
        None => Desired::new(
            DRILL_PASSED,
            false,
            "NoDrillYet",
            format!(
                "No restore drill yet: set spec.drill.schedule, or annotate the policy {DRILL_ANNOTATION}=<new value>."
            ),
        ),
        Some(d) if d.result == "Running" => Desired::new(
            DRILL_PASSED,
            false,
            "DrillRunning",
            format!("Drill restoring {} into {}.", d.backup, d.namespace),
        ),
        Some(d) if d.result == "Passed" => Desired::new(DRILL_PASSED, true, "DrillPassed", d.message.clone()),
        Some(d) => Desired::new(
            DRILL_PASSED,
            false,
            "DrillFailed",
            format!(
                "{} — the backups may not be restorable; tell the platform team.",
                d.message
            ),
        ),
    };

    // The newest backup is often the newest good one: its pod volume backups are read once.
    let last_successful_backup = match good {
        Some(f) => Some(record_with_volumes(&t, f, data).await?),
        None => None,
    };
    let last_backup = match newest {
        Some(f) if good.is_some_and(|g| g.backup.name == f.backup.name) => last_successful_backup.clone(),
        Some(f) => Some(record_with_volumes(&t, f, data).await?),
        None => None,
    };
    let status = BackupPolicyStatus {
        conditions: conditions::merge(
            &prev.conditions,
            &[ready, rpo_cond.clone(), offsite_cond.clone(), drill_cond, data_cond],
            bp.metadata.generation,
            &stamp,
        ),
        observed_generation: bp.metadata.generation,
        cluster: Some(t.cluster.clone()),
        rpo: Some(rpo_txt),
        systems: plan.systems.clone(),
        last_backup,
        last_successful_backup,
        retained,
        copies_in_regions: copies.into_iter().collect(),
        last_drill: drill.clone(),
        drills,
        last_restore: restore,
    };
    write_status::<BackupPolicy>(ctx, &bp, status).await?;

    let l = labels_for_metrics(&agency, &ns, &name);
    if let Some(p) = point {
        ctx.metrics.backup_last_success.with_label_values(&l).set(p.as_second());
    }
    ctx.metrics.backup_rpo.with_label_values(&l).set(plan.rpo);
    ctx.metrics
        .backup_rpo_met
        .with_label_values(&l)
        .set(i64::from(rpo_cond.status == conditions::TRUE));
    ctx.metrics
        .backup_offsite
        .with_label_values(&l)
        .set(i64::from(offsite_cond.status == conditions::TRUE));
    ctx.metrics
        .backup_retained
        .with_label_values(&l)
        .set(i64::from(retained));
    ctx.metrics
        .backup_drill_overdue
        .with_label_values(&l)
        .set(i64::from(overdue.is_some()));
    if let Some(d) = drill.as_ref().filter(|d| d.result != "Running") {
        ctx.metrics
            .backup_drill_passed
            .with_label_values(&l)
            .set(i64::from(d.result == "Passed"));
        if let Some(f) = &d.finished {
            ctx.metrics.backup_drill_time.with_label_values(&l).set(f.0.as_second());
        }
    }
    // Velero's objects are not watched: look again soon (reads only when nothing changed).
    Ok(Action::requeue(if busy {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(20)
    }))
}

/// Whether a drill is due: a new value of the drill annotation, or a scheduled time passed
/// since the last drill (and since the policy was created).
fn drill_due(bp: &BackupPolicy, last: Option<&RestoreRecord>, created: Timestamp, n: Timestamp) -> Option<String> {
    if let Some(v) = bp.annotations().get(DRILL_ANNOTATION)
        && last.is_none_or(|d| &d.trigger != v)
    {
        return Some(v.clone());
    }
    let expr = bp.spec.drill.as_ref()?.schedule.as_ref()?;
    let s = Schedule::parse("spec.drill.schedule", expr, &bp.spec.time_zone).ok()?;
    let due = s.previous_at_or_before(n)?;
    let last_start = last.and_then(|d| d.started.as_ref()).map(|t| t.0);
    (due > created && last_start.is_none_or(|l| l < due)).then(|| format!("schedule {due}"))
}

async fn start_restore(
    ctx: &Context,
    t: &Target,
    id: &core::PolicyId,
    backup: &str,
    drill: bool,
    trigger: String,
) -> Result<RestoreRecord> {
    let n = now();
    let hash = core::policy_hash(&id.namespace, &id.policy);
    let restore = format!("gc-{hash}-{}{}", if drill { "d" } else { "r" }, n.as_second());
    let target_ns = if drill {
        format!("drill-{hash}-{}", n.as_second() % 1_000_000)
    } else {
        id.namespace.clone()
    };
    let body = core::velero_restore(&restore, backup, id, drill.then_some(target_ns.as_str()));
    ctx.metrics.child_applied(CONTROLLER);
    velero_api(&t.client, "Restore", "restores")
        .create(&PostParams::default(), &object(body)?)
        .await?;
    info!(%restore, %backup, target = %target_ns, drill, "restore started");
    Ok(RestoreRecord {
        trigger,
        backup: backup.to_string(),
        restore,
        namespace: target_ns,
        result: "Running".into(),
        message: String::new(),
        started: Some(Time(n)),
        finished: None,
        duration_seconds: None,
        volumes: None,
        bytes: None,
    })
}

fn finish(r: &mut RestoreRecord, passed: bool, message: String) {
    let n = now();
    r.result = if passed { "Passed" } else { "Failed" }.into();
    r.message = message;
    r.duration_seconds = r.started.as_ref().map(|s| n.as_second() - s.0.as_second());
    r.finished = Some(Time(n));
}

/// The phase of a Velero Restore and its error/warning counts.
async fn restore_phase(t: &Target, name: &str) -> Result<Option<(String, i64, i64)>> {
    let r = velero_api(&t.client, "Restore", "restores").get_opt(name).await?;
    Ok(r.map(|r| {
        let st = r.data.get("status").cloned().unwrap_or_default();
        (
            st.get("phase").and_then(|p| p.as_str()).unwrap_or("New").to_string(),
            st.get("errors").and_then(|v| v.as_i64()).unwrap_or(0),
            st.get("warnings").and_then(|v| v.as_i64()).unwrap_or(0),
        )
    }))
}

/// Advances a running drill: waits for the restore, checks that every covered system's
/// workloads came back and run, records the evidence and deletes the scratch namespace.
async fn progress_drill(ctx: &Context, t: &Target, d: &mut RestoreRecord, systems: &[String]) -> Result<()> {
    let _ = ctx;
    let elapsed = d
        .started
        .as_ref()
        .map(|s| now().as_second() - s.0.as_second())
        .unwrap_or(0);
    let phase = restore_phase(t, &d.restore).await?;
    let done = match phase.as_ref().map(|(p, e, w)| (p.as_str(), *e, *w)) {
        None => Some((false, format!("Velero Restore {} disappeared.", d.restore))),
        Some(("Completed", _, w)) => {
            let deployments = Api::<Deployment>::namespaced(t.client.clone(), &d.namespace)
                .list(&ListParams::default())
                .await?;
            let sets = Api::<StatefulSet>::namespaced(t.client.clone(), &d.namespace)
                .list(&ListParams::default())
                .await?;
            let records = Api::<ConfigMap>::namespaced(t.client.clone(), &d.namespace)
                .list(&ListParams::default().labels(&format!("{SPEC_RECORD_LABEL}=true")))
                .await?;
            let system_of = |l: &BTreeMap<String, String>| l.get(SYSTEM_LABEL).cloned();
            let mut missing = Vec::new();
            for s in systems {
                let back = deployments
                    .items
                    .iter()
                    .any(|x| system_of(x.labels()).as_ref() == Some(s))
                    || sets.items.iter().any(|x| system_of(x.labels()).as_ref() == Some(s));
                if !back {
                    missing.push(s.clone());
                }
            }
            let (mut want, mut ready) = (0, 0);
            for x in &deployments.items {
                want += x.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                ready += x.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            }
            for x in &sets.items {
                want += x.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                ready += x.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            }
            // The volumes' contents Velero's node-agent put back (none for objects-only backups).
            let vols = restored_volumes(t, d).await?;
            let data = if vols.volumes == 0 {
                "no volume contents in this backup".to_string()
            } else {
                format!("{} volumes, {} bytes of contents restored", vols.completed, vols.bytes)
            };
            if !vols.failed.is_empty() {
                Some((
                    false,
                    format!(
                        "Restore {} could not bring back the contents of {} of {} volumes: {}.",
                        d.restore,
                        vols.failed.len(),
                        vols.volumes,
                        vols.failed.join("; ")
                    ),
                ))
            } else if !missing.is_empty() {
                Some((
                    false,
                    format!(
                        "Restore {} completed but the workloads of {} did not come back.",
                        d.restore,
                        missing.join(", ")
                    ),
                ))
            } else if ready < want && elapsed < DRILL_DEADLINE {
                None
            } else if ready < want {
                Some((
                    false,
                    format!("Restored workloads did not run within {DRILL_DEADLINE}s: {ready}/{want} pods ready."),
                ))
            } else {
                Some((
                    true,
                    format!(
                        "Backup {} restored into {}: {} Deployments and {} StatefulSets ({ready}/{want} pods running), {} system records, {data}, {w} warnings, in {elapsed}s.",
                        d.backup,
                        d.namespace,
                        deployments.items.len(),
                        sets.items.len(),
                        records.items.len()
                    ),
                ))
            }
        }
        Some((p @ ("Failed" | "PartiallyFailed" | "FailedValidation"), e, _)) => Some((
            false,
            format!(
                "Velero Restore {} ended {p} with {e} errors (`velero restore describe {} --details` on the cluster shows them).",
                d.restore, d.restore
            ),
        )),
        Some(_) if elapsed > 600 => Some((
            false,
            format!("Velero Restore {} did not finish in 10 minutes.", d.restore),
        )),
        Some(_) => None,
    };
    if let Some((passed, message)) = done {
        // Clean up the scratch namespace whatever the result.
        match Api::<Namespace>::all(t.client.clone())
            .delete(&d.namespace, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => warn!(error = %e, namespace = %d.namespace, "cannot delete the drill's scratch namespace"),
        }
        finish(d, passed, message);
    }
    Ok(())
}

/// Advances a recovery into the policy's own namespace; when Velero has restored the
/// objects, HostedSystems that no longer exist on the hub are recreated from the restored
/// system records.
async fn progress_recovery(ctx: &Context, t: &Target, r: &mut RestoreRecord, ns: &str) -> Result<()> {
    let elapsed = r
        .started
        .as_ref()
        .map(|s| now().as_second() - s.0.as_second())
        .unwrap_or(0);
    match restore_phase(t, &r.restore)
        .await?
        .as_ref()
        .map(|(p, e, _)| (p.as_str(), *e))
    {
        None => finish(r, false, format!("Velero Restore {} disappeared.", r.restore)),
        Some(("Completed", _)) => {
            let records = Api::<ConfigMap>::namespaced(t.client.clone(), ns)
                .list(&ListParams::default().labels(&format!("{SPEC_RECORD_LABEL}=true")))
                .await?;
            let hub: Api<HostedSystem> = Api::namespaced(ctx.client.clone(), ns);
            let mut recreated = Vec::new();
            for cm in records.items {
                let Some(yaml) = cm.data.as_ref().and_then(|d| d.get(SPEC_RECORD_KEY)) else {
                    continue;
                };
                let mut hs: HostedSystem = match serde_yaml::from_str(yaml) {
                    Ok(h) => h,
                    Err(e) => {
                        warn!(error = %e, configmap = %cm.name_any(), "unreadable system record");
                        continue;
                    }
                };
                if hs.namespace().as_deref() != Some(ns) {
                    continue;
                }
                if let Some(live) = hub.get_opt(&hs.name_any()).await? {
                    // Recreated by this recovery in an earlier pass, whose status write the
                    // policy's store had not caught up with when the new system triggered
                    // this one: still one of the systems this recovery recreated.
                    if live.annotations().get(RESTORED_BY_ANNOTATION) == Some(&r.restore) {
                        recreated.push(hs.name_any());
                    }
                    continue;
                }
                hs.metadata.resource_version = None;
                hs.metadata.uid = None;
                hs.annotations_mut()
                    .insert(RESTORED_BY_ANNOTATION.into(), r.restore.clone());
                ctx.metrics.child_applied(CONTROLLER);
                hub.create(&PostParams::default(), &hs).await?;
                recreated.push(hs.name_any());
            }
            let vols = restored_volumes(t, r).await?;
            let systems = if recreated.is_empty() {
                "none".to_string()
            } else {
                recreated.join(", ")
            };
            if vols.failed.is_empty() {
                finish(
                    r,
                    true,
                    format!(
                        "Backup {} restored into {ns} (objects that still existed were left alone, their volumes too); contents of {} volumes ({} bytes) restored; HostedSystems recreated on the hub: {systems}.",
                        r.backup, vols.completed, vols.bytes
                    ),
                );
            } else {
                finish(
                    r,
                    false,
                    format!(
                        "Backup {} restored into {ns} but the contents of {} of {} volumes could not be restored: {}; HostedSystems recreated on the hub: {systems}.",
                        r.backup,
                        vols.failed.len(),
                        vols.volumes,
                        vols.failed.join("; ")
                    ),
                );
            }
        }
        Some((p @ ("Failed" | "PartiallyFailed" | "FailedValidation"), e)) => finish(
            r,
            false,
            format!("Velero Restore {} ended {p} with {e} errors.", r.restore),
        ),
        Some(_) if elapsed > 600 => finish(
            r,
            false,
            format!("Velero Restore {} did not finish in 10 minutes.", r.restore),
        ),
        Some(_) => {}
    }
    Ok(())
}

async fn cleanup(bp: Arc<BackupPolicy>, ctx: &Context) -> Result<Action> {
    let ns = bp.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    ctx.status_memo.forget(&super::context::StatusMemo::key(&*bp));
    let (client, agency) = match target(ctx, &ns).await {
        Ok(t) => (t.client, t.agency.name_any()),
        // The agency is gone already: stop the schedules on the cluster the status names.
        Err(("NoAgency", _)) | Err(("NotPlaced", _)) | Err(("ClusterNotRegistered", _)) => {
            let dcc = bp
                .status
                .as_ref()
                .and_then(|s| s.cluster.as_ref())
                .and_then(|c| ctx.clusters.state().into_iter().find(|d| &d.name_any() == c));
            let Some(dcc) = dcc else {
                return Ok(Action::await_change());
            };
            match ctx.members.versioned_client_for(&dcc).await {
                Ok((c, _)) => (c, String::new()),
                Err(e) => return Err(Error::DeletionBlocked(format!("cannot reach {}: {e}", dcc.name_any()))),
            }
        }
        Err((_, msg)) => return Err(Error::DeletionBlocked(msg)),
    };
    // Stop taking backups; the backups themselves stay (and can still be restored by the platform).
    let api = velero_api(&client, "Schedule", "schedules");
    for off in [false, true] {
        match api
            .delete(&core::schedule_name(&ns, &bp.name_any(), off), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        remove_legacy_schedule(ctx, &api, &ns, &bp.name_any(), off).await?;
    }
    let policy = bp.name_any();
    let l = labels_for_metrics(&agency, &ns, &policy);
    for g in [
        &ctx.metrics.backup_last_success,
        &ctx.metrics.backup_age,
        &ctx.metrics.backup_rpo,
        &ctx.metrics.backup_rpo_met,
        &ctx.metrics.backup_offsite,
        &ctx.metrics.backup_retained,
        &ctx.metrics.backup_drill_passed,
        &ctx.metrics.backup_drill_time,
        &ctx.metrics.backup_drill_overdue,
    ] {
        let _ = g.remove_label_values(&l);
    }
    Ok(Action::await_change())
}

#[instrument(skip_all, fields(policy = %bp.name_any(), namespace = bp.namespace().unwrap_or_default()))]
async fn reconcile(bp: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let ns = bp.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, bp, |event| async {
        match event {
            Finalizer::Apply(bp) => apply(bp, &ctx).await,
            Finalizer::Cleanup(bp) => cleanup(bp, &ctx).await,
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
    BackupStreams { own, systems, agencies }: BackupStreams,
) {
    let reader = own.reader();
    let controller = Controller::for_shared_stream(own, reader);
    let store = controller.store();
    super::context::signal_when_synced(store.clone(), synced);
    let (location_store, locations) = crate::lenient::reflector::<BackupLocation>(
        ctx.client.clone(),
        watcher::Config::default(),
        ctx.lenient.clone(),
    );
    let _ = ctx.locations.set(location_store);
    let by_ns = ctx.policies_by_ns.clone();
    let all = store.clone();
    let waiting = ctx.policies_by_ns.clone();
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency))
        // A system appearing or changing labels may change what a policy covers.
        .watches_shared_stream(systems, move |hs| {
            hs.namespace()
                .map(|ns| by_ns.refs::<BackupPolicy>(&ns))
                .unwrap_or_default()
        })
        .watches_stream(locations, move |_| {
            all.state()
                .into_iter()
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        // Policies created before their agency was provisioned go as soon as it is.
        .watches_shared_stream(agencies, move |ac| super::context::in_agency_namespaces(&waiting, &ac))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<BackupPolicy>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
