//! TenancyRequest controller: validate, preview placement, and on an approver's decision
//! create the AgencyCloud (or nothing, on denial).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

use super::context::Context;
use super::lookup::policy_present;
use super::status::{Reconciled, error_policy, field_manager, write_status};
use crate::error::{Error, Result};
use crate::server::PendingCache;
use govcloud_api::agency::AgencyCloud;
use govcloud_api::conditions::READY;
use govcloud_api::conditions::tenancy::{DECIDED, PLACEABLE, PROVISIONED, VALID};
use govcloud_api::labels::{MANAGED_BY, REQUEST_LABEL};
use govcloud_api::tenancy::{ClusterRejection, DecisionAction, PlacementPreview, TenancyRequest, TenancyRequestStatus};
use govcloud_core::agency as build;
use govcloud_core::conditions::{self, Desired};
use govcloud_core::placement::{self, Request};
use govcloud_core::{credit_code, hub};

/// Controller name.
pub const CONTROLLER: &str = "tenancyrequest";

impl Reconciled for TenancyRequest {
    const CONTROLLER: &'static str = CONTROLLER;

    fn api(client: Client, obj: &Self) -> Api<Self> {
        Api::namespaced(client, &obj.namespace().unwrap_or_default())
    }
}

fn label_value(tr: &TenancyRequest) -> String {
    format!("{}.{}", tr.namespace().unwrap_or_default(), tr.name_any())
}

/// Checks that need other objects: uniqueness of the short name and the credit code.
fn validate(tr: &TenancyRequest, ctx: &Context) -> Vec<String> {
    let spec = &tr.spec.cloud;
    let mine = label_value(tr);
    let mut problems = Vec::new();
    if let Err(e) = credit_code::validate(&spec.agency.credit_code) {
        problems.push(format!("spec.cloud.agency.creditCode: {e}"));
    }
    let agencies = ctx.agencies.get().map(|s| s.state()).unwrap_or_default();
    for a in agencies.iter().filter(|a| a.labels().get(REQUEST_LABEL) != Some(&mine)) {
        if a.name_any() == spec.agency.short_name {
            problems.push(format!(
                "spec.cloud.agency.shortName: {} is already taken by another agency cloud; choose another short name",
                spec.agency.short_name
            ));
        }
        if a.spec.cloud.agency.credit_code == spec.agency.credit_code {
            problems.push(format!(
                "spec.cloud.agency.creditCode: this agency already has a private cloud ({}); request changes to it instead",
                a.name_any()
            ));
        }
    }
    problems
}

/// Why an approval must not be acted on because the request is not the one the approver
/// reviewed, or `None` if it is. The decision records the generation reviewed
/// (`spec.decision.reviewedGeneration`); the write that recorded it is the only change
/// allowed since, so the request must be at exactly that generation plus one. The
/// admission policy refuses any other decision, and the schema freezes the request once
/// decided; this is the operator's own check of the same, for decisions recorded without
/// the policy in force.
fn review_mismatch(tr: &TenancyRequest) -> Option<String> {
    let d = tr.spec.decision.as_ref()?;
    let now = tr.metadata.generation;
    match d.reviewed_generation {
        None => Some(
            "Approved, but spec.decision.reviewedGeneration is missing: the decision does not say which version of the request was reviewed, so nothing is created. A decision is final: file a new request and have it approved with `kubectl govcloud approve` (which records the generation reviewed)."
                .to_string(),
        ),
        Some(g) if now != Some(g + 1) => Some(format!(
            "Approved after reviewing generation {g} (spec.decision.reviewedGeneration), but the request is at generation {}: it changed after the review, so nothing is created. A decision is final: file a new request and have it reviewed again.",
            now.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into())
        )),
        Some(_) => None,
    }
}

#[instrument(skip_all, fields(request = %tr.name_any(), namespace = tr.namespace().unwrap_or_default()))]
async fn reconcile(tr: Arc<TenancyRequest>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    tr.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let prev = tr.status.clone().unwrap_or_default();
    let spec = &tr.spec.cloud;
    let agency_name = spec.agency.short_name.clone();
    let existing = ctx
        .agencies
        .get()
        .and_then(|s| s.get(&ObjectRef::new(&agency_name)))
        .filter(|a| a.labels().get(REQUEST_LABEL) == Some(&label_value(&tr)));

    let problems = if existing.is_some() {
        vec![]
    } else {
        validate(&tr, &ctx)
    };
    let valid = if problems.is_empty() {
        Desired::new(
            VALID,
            true,
            "Valid",
            "Identity, credit code and names are valid and unique.",
        )
    } else {
        Desired::new(VALID, false, "Invalid", problems.join("; "))
    };

    // Placement preview (until provisioned).
    let mut preview = prev.placement_preview.clone();
    let placeable = if existing.is_some() {
        Desired::new(
            PLACEABLE,
            true,
            "Provisioned",
            "The AgencyCloud exists; see its placement.",
        )
    } else {
        let (cpu, memory) = build::total_quota(spec);
        let req = Request {
            agency: agency_name.clone(),
            level: spec.security_level,
            zone: spec.zone,
            cpu,
            memory,
            cluster: spec.placement.cluster.clone(),
            region: spec.placement.region.clone(),
            selector: spec.placement.cluster_selector.clone(),
        };
        let reservations = ctx.placements.lock().await.clone();
        let decision = placement::decide(
            &req,
            &super::lookup::placement_candidates(&ctx, &agency_name, &reservations),
        );
        preview = Some(PlacementPreview {
            cluster: decision.chosen.clone(),
            rejected: decision
                .rejected
                .iter()
                .map(|r| ClusterRejection {
                    cluster: r.cluster.clone(),
                    reason: r.reason.into(),
                    message: r.message.clone(),
                })
                .collect(),
        });
        match &decision.chosen {
            Some(c) => Desired::new(
                PLACEABLE,
                true,
                "ClusterAvailable",
                format!("Would be placed on {c} now."),
            ),
            None => Desired::new(
                PLACEABLE,
                false,
                "NoClusterFits",
                if decision.rejected.is_empty() {
                    "No DataCenterCluster is registered.".to_string()
                } else {
                    format!("No cluster can take it now: {}", decision.explain())
                },
            ),
        }
    };

    let mismatch = review_mismatch(&tr);
    let mut decision_time = prev.decision_observed_time.clone();
    let mut agency_cloud = prev.agency_cloud.clone();
    let (decided, provisioned) = match &tr.spec.decision {
        None => (
            Desired::new(
                DECIDED,
                false,
                "AwaitingDecision",
                "Waiting for a platform approver to approve or deny (spec.decision).",
            ),
            Desired::new(
                PROVISIONED,
                false,
                "AwaitingDecision",
                "Nothing is created until the request is approved.",
            ),
        ),
        Some(d) => {
            if decision_time.is_none() {
                decision_time = Some(Time(Timestamp::now()));
            }
            let decided = Desired::new(
                DECIDED,
                true,
                match d.action {
                    DecisionAction::Approve => "Approved",
                    DecisionAction::Deny => "Denied",
                },
                format!(
                    "{:?} by {}{}: {}",
                    d.action,
                    d.decided_by,
                    d.reviewed_generation
                        .map(|g| format!(" (reviewed generation {g})"))
                        .unwrap_or_default(),
                    d.reason
                ),
            );
            let provisioned = match d.action {
                DecisionAction::Deny => Desired::new(
                    PROVISIONED,
                    false,
                    "Denied",
                    format!("Denied by {}: {}. Nothing was created.", d.decided_by, d.reason),
                ),
                DecisionAction::Approve if existing.is_some() => {
                    agency_cloud = Some(agency_name.clone());
                    let ready = existing
                        .as_ref()
                        .and_then(|a| a.status.as_ref())
                        .map(|s| conditions::is_true(&s.conditions, READY))
                        .unwrap_or(false);
                    Desired::new(
                        PROVISIONED,
                        true,
                        "AgencyCloudCreated",
                        format!(
                            "AgencyCloud {agency_name} created{}.",
                            if ready {
                                " and Ready"
                            } else {
                                "; it is being provisioned (kubectl get ac)"
                            }
                        ),
                    )
                }
                DecisionAction::Approve
                    if !ctx.approval_policy_installed.load(std::sync::atomic::Ordering::SeqCst)
                        || !policy_present(&ctx.client, hub::APPROVAL_POLICY).await =>
                {
                    Desired::new(
                        PROVISIONED,
                        false,
                        "ApprovalPolicyMissing",
                        format!(
                            "Approved, but the admission policy {} that proves who approved is not installed on the hub; nothing is created until it is (see the operator log).",
                            hub::APPROVAL_POLICY
                        ),
                    )
                }
                DecisionAction::Approve if mismatch.is_some() => Desired::new(
                    PROVISIONED,
                    false,
                    "NotReviewedAsIs",
                    mismatch.clone().unwrap_or_default(),
                ),
                DecisionAction::Approve if !problems.is_empty() => Desired::new(
                    PROVISIONED,
                    false,
                    "Invalid",
                    format!("Approved, but the request is invalid: {}", problems.join("; ")),
                ),
                DecisionAction::Approve => {
                    let ac: AgencyCloud = serde_json::from_value(json!({
                        "apiVersion": AgencyCloud::api_version(&()), "kind": AgencyCloud::kind(&()),
                        "metadata": {
                            "name": agency_name,
                            "labels": {REQUEST_LABEL: label_value(&tr), "app.kubernetes.io/managed-by": MANAGED_BY},
                            "annotations": {
                                "govcloud.io/approved-by": d.decided_by,
                                "govcloud.io/approval-reason": d.reason,
                                "govcloud.io/requested-by": tr.spec.requested_by.clone().unwrap_or_default(),
                            }
                        },
                        "spec": spec,
                    }))
                    .map_err(|source| Error::Serialize {
                        what: "AgencyCloud",
                        source,
                    })?;
                    Api::<AgencyCloud>::all(ctx.client.clone())
                        .patch(&agency_name, &field_manager::<TenancyRequest>(), &Patch::Apply(&ac))
                        .await?;
                    info!(agency = %agency_name, "approved request provisioned");
                    publish(
                        &ctx,
                        &tr,
                        EventType::Normal,
                        "Provisioned",
                        format!("Created AgencyCloud {agency_name}."),
                    )
                    .await;
                    agency_cloud = Some(agency_name.clone());
                    Desired::new(
                        PROVISIONED,
                        true,
                        "AgencyCloudCreated",
                        format!("AgencyCloud {agency_name} created; it is being provisioned (kubectl get ac)."),
                    )
                }
            };
            (decided, provisioned)
        }
    };

    let generation = tr.metadata.generation;
    let status = TenancyRequestStatus {
        conditions: conditions::merge(
            &prev.conditions,
            &[valid, placeable, decided, provisioned],
            generation,
            &Time(Timestamp::now()),
        ),
        observed_generation: generation,
        placement_preview: preview,
        agency_cloud,
        decision_observed_time: decision_time,
    };
    write_status::<TenancyRequest>(&ctx, &tr, status).await?;
    // Undecided requests refresh their placement preview now and then.
    Ok(Action::requeue(if tr.spec.decision.is_none() {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(600)
    }))
}

async fn publish(ctx: &Context, tr: &TenancyRequest, type_: EventType, reason: &str, note: String) {
    ctx.publish(&tr.object_ref(&()), type_, reason, "Provision", &note)
        .await;
}

/// Applies the hub admission policy and roles (idempotent, at startup).
pub async fn install_hub_objects(client: &kube::Client) -> Result<()> {
    for (kind, name, body) in hub::hub_objects() {
        apply_hub_object(client, "v1", kind, name, &body).await?;
    }
    Ok(())
}

/// The kinds of hub object the operator installs at startup: kind → (API group, plural).
const HUB_KINDS: [(&str, &str, &str); 6] = [
    ("ClusterRole", "rbac.authorization.k8s.io", "clusterroles"),
    ("ClusterRoleBinding", "rbac.authorization.k8s.io", "clusterrolebindings"),
    (
        "ValidatingAdmissionPolicy",
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    ),
    (
        "ValidatingAdmissionPolicyBinding",
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
    ),
    (
        "MutatingAdmissionPolicy",
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicies",
    ),
    (
        "MutatingAdmissionPolicyBinding",
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
    ),
];

/// The version of `admissionregistration.k8s.io` that serves MutatingAdmissionPolicies on
/// the hub (v1 from Kubernetes 1.36; v1beta1 in 1.34–1.35 where the feature is switched
/// on), or `None`. Also used by the benchmark and the tests to tell which path is in force.
pub async fn mutating_policy_version(client: &kube::Client) -> Option<&'static str> {
    for version in ["v1", "v1beta1"] {
        if let Ok(list) = client
            .list_api_group_resources(&format!("admissionregistration.k8s.io/{version}"))
            .await
            && list.resources.iter().any(|r| r.name == "mutatingadmissionpolicies")
        {
            return Some(version);
        }
    }
    None
}

/// Installs [`hub::finalizer_policy`] where the hub serves MutatingAdmissionPolicies
/// (idempotent, at startup). Returns the API version used, `None` where the hub has no
/// such API (the controllers then add every finalizer themselves).
pub async fn install_finalizer_policy(client: &kube::Client) -> Result<Option<&'static str>> {
    let Some(version) = mutating_policy_version(client).await else {
        return Ok(None);
    };
    let finalizers = [
        ("agencyclouds", govcloud_api::agency::FINALIZER),
        ("hostedsystems", govcloud_api::hosted::FINALIZER),
        ("backuppolicies", govcloud_api::backup::FINALIZER),
    ];
    let api_version = format!("admissionregistration.k8s.io/{version}");
    for (kind, name, body) in hub::finalizer_policy(&api_version, &finalizers) {
        apply_hub_object(client, version, kind, name, &body).await?;
    }
    Ok(Some(version))
}

/// The API group and plural of a kind in [`HUB_KINDS`].
fn hub_kind(kind: &str) -> Option<(&'static str, &'static str)> {
    HUB_KINDS.iter().find(|(k, _, _)| *k == kind).map(|&(_, g, p)| (g, p))
}

/// Applies one hub object server-side unless the live object already holds it.
async fn apply_hub_object(
    client: &kube::Client,
    version: &str,
    kind: &str,
    name: &str,
    body: &serde_json::Value,
) -> Result<()> {
    use kube::api::{ApiResource, DynamicObject};
    // A kind missing from the table is a bug caught by the unit test below; never a panic.
    let Some((group, plural)) = hub_kind(kind) else {
        return Err(crate::error::Error::MissingField(
            "HUB_KINDS entry of a hub object's kind",
        ));
    };
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    // Unchanged since the last start: no write (a restart of an unchanged operator is quiet).
    let mut expected = body.clone();
    if let Some(m) = expected.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    if let Ok(Some(live)) = api.get_opt(name).await
        && let Ok(live) = serde_json::to_value(&live)
        && govcloud_core::subset::contains(&live, &expected)
    {
        return Ok(());
    }
    api.patch(
        name,
        &PatchParams::apply("govcloud-operator/hub").force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// Runs the controller until `shutdown` resolves.
/// `clusters`: the trigger stream of the shared DataCenterCluster watch of `ctx.clusters`.
pub async fn run(
    ctx: Arc<Context>,
    synced: PendingCache,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    clusters: kube::runtime::reflector::ReflectHandle<govcloud_api::DataCenterCluster>,
) {
    let (reader, stream) = crate::lenient::reflector::<TenancyRequest>(
        ctx.client.clone(),
        watcher::Config::default(),
        ctx.lenient.clone(),
    );
    let controller = Controller::for_stream(stream, reader);
    let store = controller.store();
    super::context::signal_when_synced(store.clone(), synced);
    let acs = crate::lenient::objects::<AgencyCloud>(
        ctx.client.clone(),
        watcher::Config::default().labels(REQUEST_LABEL),
        ctx.lenient.clone(),
    );
    let requests = controller.store();
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency))
        .watches_stream(acs, |ac: AgencyCloud| {
            ac.labels()
                .get(REQUEST_LABEL)
                .and_then(|v| v.split_once('.'))
                .map(|(ns, n)| ObjectRef::new(n).within(ns))
        })
        // A cluster that appears or changes may change the placement preview of undecided
        // requests (from the watch of `ctx.clusters`: the preview reads the cluster as changed).
        .watches_shared_stream(clusters, move |_| {
            requests
                .state()
                .into_iter()
                .filter(|t| t.spec.decision.is_none())
                .map(|t| ObjectRef::from_obj(&*t))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<TenancyRequest>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hub_object_kind_has_its_group_and_plural() {
        let policy = hub::finalizer_policy("admissionregistration.k8s.io/v1", &[("agencyclouds", "x")]);
        for (kind, name, body) in hub::hub_objects().into_iter().chain(policy) {
            let Some((group, plural)) = hub_kind(kind) else {
                panic!("{kind} {name} is missing from HUB_KINDS");
            };
            let api_version = body["apiVersion"].as_str().unwrap_or_default();
            assert!(
                api_version.starts_with(&format!("{group}/")),
                "{kind}: {api_version} vs {group}"
            );
            assert!(
                plural.ends_with('s') && plural == plural.to_lowercase(),
                "{kind}: {plural}"
            );
        }
        assert_eq!(hub_kind("Pod"), None);
    }

    fn decided(generation: i64, reviewed: Option<i64>) -> TenancyRequest {
        let mut d = json!({"action": "Approve", "decidedBy": "wang", "reason": "ok"});
        if let Some(g) = reviewed {
            d["reviewedGeneration"] = json!(g);
        }
        let cloud = json!({
            "agency": {"displayName": "财政部", "shortName": "mof", "creditCode": "11100000MB0123456X",
                       "adminLevel": "central", "contact": {"name": "王"}},
            "securityLevel": 2, "zone": "internal",
            "environments": [{"name": "prod", "quota": {"cpu": "1", "memory": "1Gi"}}],
            "owners": [{"kind": "Group", "name": "mof"}], "allowedRegistries": ["registry.gov.cn"]
        });
        serde_json::from_value(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "TenancyRequest",
            "metadata": {"name": "mof", "namespace": "requests", "generation": generation},
            "spec": {"cloud": cloud, "justification": "迁移预算管理一体化系统", "requestedBy": "liu", "decision": d}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_approval_counts_only_for_the_generation_reviewed() {
        // Reviewed at 3, the decision written at 4: nothing else changed.
        assert_eq!(review_mismatch(&decided(4, Some(3))), None);
        // The request changed after the review (or the decision came with a change).
        let m = review_mismatch(&decided(5, Some(3))).unwrap_or_default();
        assert!(
            m.contains("generation 3") && m.contains("generation 5") && m.contains("spec.decision.reviewedGeneration"),
            "{m}"
        );
        assert!(review_mismatch(&decided(3, Some(3))).is_some());
        // A decision that does not say what was reviewed.
        let m = review_mismatch(&decided(2, None)).unwrap_or_default();
        assert!(m.contains("spec.decision.reviewedGeneration is missing"), "{m}");
    }
}
