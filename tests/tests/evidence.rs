//! Evidence reports (等保测评证据) against the local control plane.
//!
//! A level-3 agency provisioned from an approved TenancyRequest on a member cluster, with a
//! backup policy and stores in two regions. Its report is collected and signed as the
//! operator does it (the operator's own identity on the hub, the member manifest's on the
//! member), and then: every control line names at least one live object, and the test reads
//! each of them itself (same uid, same field values); the guardrails the operator made are
//! `Met`; both forms verify under the platform's public key and one flipped byte fails;
//! the report kept as an EvidenceReport is readable by the agency's owner and viewer and
//! refused (403) to another agency's owner; retention deletes reports past it.

use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use govcloud_api::{AgencyCloud, EvidenceReport, TenancyRequest};
use govcloud_core::evidence::sign::{PemKeyProvider, PublicKey, canonical_compact};
use govcloud_core::evidence::{Status, html};
use govcloud_tests::*;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(120);

/// A TenancyRequest for a level-3 agency, filed by `requester` and approved by `approver`
/// (impersonated, as the admission policy requires). Returns the request's namespace.
async fn approved_agency(hub: &Client, name: &str, group: &str) -> Result<String> {
    let ns = unique("requests");
    let approver = unique("approver");
    let requester = unique("requester");
    ensure_namespace(hub, &ns).await?;
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "requesters", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "govcloud-tenancy-requester"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": requester}]
    }))?;
    Api::<RoleBinding>::namespaced(hub.clone(), &ns)
        .create(&PostParams::default(), &rb)
        .await?;
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("approver-{approver}"), "labels": {"govcloud.io/test": "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "govcloud-tenancy-approver"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": approver}]
    }))?;
    Api::<ClusterRoleBinding>::all(hub.clone())
        .create(&PostParams::default(), &crb)
        .await?;
    let cloud = agency_cloud(
        name,
        3,
        "external",
        &[("prod", "2", "4Gi"), ("test", "1", "2Gi")],
        group,
    )["spec"]
        .clone();
    let tr: TenancyRequest = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "TenancyRequest",
        "metadata": {"name": name},
        "spec": {"cloud": cloud, "justification": "Host the provincial government service portal.", "requestedBy": requester}
    }))?;
    let as_requester: Api<TenancyRequest> = Api::namespaced(impersonating(1, &requester, &[]).await?, &ns);
    as_requester.create(&PostParams::default(), &tr).await?;
    let as_approver: Api<TenancyRequest> = Api::namespaced(impersonating(1, &approver, &[]).await?, &ns);
    let generation = as_approver
        .get(name)
        .await?
        .metadata
        .generation
        .ok_or_else(|| anyhow!("no generation"))?;
    as_approver
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decision": {
                "action": "Approve", "decidedBy": approver, "reason": "符合年度上云计划，已完成等保备案。",
                "reviewedGeneration": generation
            }}})),
        )
        .await?;
    Ok(ns)
}

/// Reads the object an evidence line names, with the test's own admin client.
async fn read(client: &Client, e: &govcloud_core::evidence::Evidence) -> Result<Value> {
    let (group, version) = match e.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", e.api_version.as_str()),
    };
    let (ar, _) = pinned_kind(client, &GroupVersionKind::gvk(group, version, &e.kind)).await?;
    let api: Api<DynamicObject> = match &e.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    Ok(serde_json::to_value(api.get(&e.name).await?)?)
}

/// The value at a dotted field path (`spec.region`), if the fact's name is one.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.contains('[') || path.contains('/') {
        return None;
    }
    let mut cur = v;
    for p in path.split('.') {
        cur = cur.get(p)?;
    }
    Some(cur)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_3_agencys_report_is_backed_by_live_objects_signed_and_readable_only_by_it() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let group = unique("grp");
    let region = unique_short("ev");
    let offsite = format!("{region}-off");
    let dc = create_test_cluster_in(&hub, &group, &region, "external", 3, 2, None).await?;

    // Agency A from an approved request; agency B directly.
    let a = unique_short("eva");
    approved_agency(&hub, &a, &group).await?;
    let b = unique_short("evb");
    let ac: AgencyCloud = serde_json::from_value(agency_cloud(&b, 3, "external", &[("prod", "1", "1Gi")], &group))?;
    Api::<AgencyCloud>::all(hub.clone())
        .create(&PostParams::default(), &ac)
        .await?;
    wait_agency_ready(&hub, &a, T).await?;
    wait_agency_ready(&hub, &b, T).await?;

    // Stores in the agency's region and an off-site one (declarations only: nothing is
    // backed up there, the report shows them); a backup policy of A.
    for (name, reg) in [(region.clone(), region.clone()), (offsite.clone(), offsite.clone())] {
        let bl: govcloud_api::BackupLocation = serde_json::from_value(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "BackupLocation",
            "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}},
            "spec": {"region": reg, "zone": "external", "encryption": "SM4-GCM", "bucket": "backups",
                     "endpoint": "http://127.0.0.1:1", "credentialsSecret": format!("{name}-s3")}
        }))?;
        Api::<govcloud_api::BackupLocation>::all(hub.clone())
            .create(&PostParams::default(), &bl)
            .await?;
    }
    let ns_a = format!("{a}-prod");
    let bp: govcloud_api::BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "daily", "namespace": ns_a},
        "spec": {"schedule": "0 2 * * *", "offsiteRegion": offsite, "drill": {"schedule": "0 3 1 * *"}}
    }))?;
    Api::<govcloud_api::BackupPolicy>::namespaced(hub.clone(), &ns_a)
        .create(&PostParams::default(), &bp)
        .await?;

    // The platform's key, in a Secret of the operator's namespace.
    let (private, public) = PemKeyProvider::generate()?;
    let secret_name = unique("evidence-key");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": secret_name, "namespace": OPERATOR_NAMESPACE, "labels": {"govcloud.io/test": "true"}},
        "stringData": {"private.pem": private}
    }))?;
    Api::<Secret>::namespaced(hub.clone(), OPERATOR_NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await?;

    // Collected, signed and kept as the operator does it, with the operator's identity.
    use govcloud::controller::evidence as ev;
    let op = operator_client().await?;
    let provider = std::sync::Arc::new(ev::key_from_secret(&op, OPERATOR_NAMESPACE, &secret_name).await?);
    let end = k8s_openapi::jiff::Timestamp::now();
    let start = end.checked_sub(k8s_openapi::jiff::SignedDuration::from_hours(24 * 30))?;
    let inputs = ev::collect(&op, OPERATOR_NAMESPACE, &a, start, end).await?;
    ensure!(
        inputs.notes.is_empty(),
        "the operator could not read: {:?}",
        inputs.notes
    );
    let signed = ev::sign(inputs, provider).await?;
    let report = &signed.report;

    // Every control line is backed by objects the test reads itself.
    ensure!(report.controls.len() == 14, "{} lines", report.controls.len());
    let mut read_objects = 0;
    for c in &report.controls {
        ensure!(
            !c.evidence.is_empty(),
            "{} names no live object: {:?}",
            c.id,
            c.findings
        );
        for e in &c.evidence {
            let client = if e.cluster == dc { &member } else { &hub };
            ensure!(
                e.cluster == dc || e.cluster == "hub",
                "{}: unknown cluster {}",
                c.id,
                e.cluster
            );
            let live = read(client, e)
                .await
                .map_err(|err| anyhow!("{}: {} {:?}/{}: {err:#}", c.id, e.kind, e.namespace, e.name))?;
            ensure!(
                live.pointer("/metadata/uid").and_then(Value::as_str) == e.uid.as_deref(),
                "{}: {} {} has another uid",
                c.id,
                e.kind,
                e.name
            );
            for (k, v) in &e.facts {
                if let Some(x) = at(&live, k) {
                    let x = match x {
                        Value::String(s) => s.clone(),
                        other => canonical_compact(other),
                    };
                    ensure!(
                        &x == v,
                        "{}: {} {} {k} is {x:?}, the report says {v:?}",
                        c.id,
                        e.kind,
                        e.name
                    );
                }
            }
            read_objects += 1;
        }
    }
    for id in [
        "DATA-LOCATION",
        "NET-ISOLATION",
        "NET-FLOWS",
        "POD-SECURITY",
        "IMAGE-REGISTRY",
        "EXPOSURE",
        "RESOURCES",
        "ACCESS",
        "TENANCY-APPROVAL",
    ] {
        let c = report
            .controls
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| anyhow!("no {id}"))?;
        ensure!(c.status == Status::Met, "{id} is {:?}: {:?}", c.status, c.findings);
    }
    // No backup has run (no object store here): the report says so instead of claiming
    // copies and drills; the RPO line shows no backup and when the obligation starts.
    let line = |id: &str| {
        report
            .controls
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| anyhow!("no {id}"))
    };
    let rpo = line("BACKUP-RPO")?;
    let facts = &rpo.evidence[0].facts;
    ensure!(
        facts.get("backupsCompletedInPeriod").map(String::as_str) == Some("0")
            && facts.contains_key("rpoObligationFrom"),
        "RPO line: {facts:?}"
    );
    for id in ["BACKUP-OFFSITE", "RESTORE-DRILLS"] {
        let c = line(id)?;
        ensure!(
            c.status == Status::Missing && !c.findings.is_empty(),
            "{id}: {:?}",
            c.status
        );
    }
    println!("{read_objects} evidence objects read back");

    // Integrity: both forms verify; one flipped byte does not.
    let key = PublicKey::from_pem(&public)?;
    ensure!(signed.key_id == key.id());
    html::verify_file(signed.json.as_bytes(), &key).map_err(|e| anyhow!("JSON: {e}"))?;
    html::verify_file(signed.html.as_bytes(), &key).map_err(|e| anyhow!("HTML: {e}"))?;
    for file in [signed.json.as_bytes(), signed.html.as_bytes()] {
        for pos in [0, file.len() / 3, file.len() / 2, file.len() - 2] {
            let mut bad = file.to_vec();
            bad[pos] ^= 0x01;
            ensure!(
                html::verify_file(&bad, &key).is_err(),
                "byte {pos} flipped still verifies"
            );
        }
    }
    ensure!(signed.json.len() <= 200_000 && signed.html.len() <= 200_000);

    // Kept for the agency: its owner and viewer read it; another agency's owner gets 403.
    let (ns, name) = ev::store(&op, &signed, "ondemand-test", "on-demand").await?;
    ensure!(ns == ns_a, "kept in {ns}");
    let own_owner = impersonating(1, &unique("u"), &[&format!("{a}-owners"), "system:authenticated"]).await?;
    let own_viewer = impersonating(1, &unique("u"), &[&format!("{a}-viewers"), "system:authenticated"]).await?;
    let other_owner = impersonating(1, &unique("u"), &[&format!("{b}-owners"), "system:authenticated"]).await?;
    let kept = Api::<EvidenceReport>::namespaced(own_owner.clone(), &ns)
        .get(&name)
        .await?;
    ensure!(
        kept.spec.document == signed.json,
        "the kept document is not the signed one"
    );
    html::verify_file(kept.spec.document.as_bytes(), &key).map_err(|e| anyhow!("kept: {e}"))?;
    Api::<EvidenceReport>::namespaced(own_viewer, &ns).get(&name).await?;
    for r in [
        Api::<EvidenceReport>::namespaced(other_owner.clone(), &ns)
            .get(&name)
            .await
            .map(|_| ()),
        Api::<EvidenceReport>::namespaced(other_owner.clone(), &ns)
            .list(&Default::default())
            .await
            .map(|_| ()),
    ] {
        match r {
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            other => anyhow::bail!("another agency's owner was not refused with 403: {other:?}"),
        }
    }
    // Owners read, never write, their reports.
    let mut forged = kept.clone();
    forged.metadata = kube::api::ObjectMeta {
        name: Some("forged".into()),
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    match Api::<EvidenceReport>::namespaced(own_owner, &ns)
        .create(&PostParams::default(), &forged)
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => anyhow::bail!("an owner could create an EvidenceReport: {other:?}"),
    }

    // Retention: nothing is pruned inside it; a report past it is.
    ev::prune(&op, Duration::from_secs(86_400 * 365), end).await?;
    ensure!(
        Api::<EvidenceReport>::namespaced(hub.clone(), &ns)
            .get_opt(&name)
            .await?
            .is_some(),
        "a report inside its retention was pruned"
    );
    let later = end.checked_add(k8s_openapi::jiff::SignedDuration::from_hours(24 * 400))?;
    let pruned = ev::prune(&op, Duration::from_secs(86_400 * 365), later).await?;
    ensure!(pruned >= 1, "nothing pruned");
    ensure!(
        Api::<EvidenceReport>::namespaced(hub.clone(), &ns)
            .get_opt(&name)
            .await?
            .is_none(),
        "the report past its retention is still there"
    );
    let _ = Api::<Secret>::namespaced(hub.clone(), OPERATOR_NAMESPACE)
        .delete(&secret_name, &Default::default())
        .await;
    Ok(())
}
