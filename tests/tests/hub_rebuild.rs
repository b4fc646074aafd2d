//! The hub rebuilt from its backup loses no decision: on the hub (dc1) a requester files two
//! tenancy requests, an approver approves one (the operator provisions its AgencyCloud) and
//! denies the other; `govcloud-operator hub-backup` takes them with their cluster; dc3 plays
//! the new hub (the CRDs, the operator's admission policies and the chart's restorer role).
//! Someone with every right of the restorer but the `restore` permission cannot write the
//! recorded decisions back (they are in another's name); the restorer can, and every
//! decision, every AgencyCloud and their statuses come back as they were.

use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use govcloud_api::{AgencyCloud, TenancyRequest};
use govcloud_tests::*;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(120);

async fn bind(c: &Client, name: &str, role: &str, user: &str, ns: Option<&str>) -> Result<()> {
    let subjects = json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]);
    let role_ref = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role});
    match ns {
        Some(ns) => {
            let rb: RoleBinding = serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": ns}, "roleRef": role_ref, "subjects": subjects}),
            )?;
            Api::<RoleBinding>::namespaced(c.clone(), ns)
                .create(&PostParams::default(), &rb)
                .await?;
        }
        None => {
            let crb: ClusterRoleBinding = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}},
                "roleRef": role_ref, "subjects": subjects}))?;
            Api::<ClusterRoleBinding>::all(c.clone())
                .create(&PostParams::default(), &crb)
                .await?;
        }
    }
    Ok(())
}

/// Server-side applies `body` (any kind) as the test.
async fn apply(c: &Client, group: &str, version: &str, kind: &str, plural: &str, body: &Value) -> Result<()> {
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    };
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::all_with(c.clone(), &ar);
    api.patch(name, &PatchParams::apply("govcloud-test").force(), &Patch::Apply(body))
        .await?;
    Ok(())
}

/// dc3 as a new hub: the CRDs, the operator's hub admission policies and roles, and the
/// chart's restorer role.
async fn new_hub(c: &Client) -> Result<()> {
    install_crds(c).await?;
    for (kind, _, body) in govcloud_core::hub::hub_objects() {
        let (group, plural) = match kind {
            "ValidatingAdmissionPolicy" => ("admissionregistration.k8s.io", "validatingadmissionpolicies"),
            "ValidatingAdmissionPolicyBinding" => ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
            "ClusterRole" => ("rbac.authorization.k8s.io", "clusterroles"),
            "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "clusterrolebindings"),
            other => return Err(anyhow!("unexpected hub object kind {other}")),
        };
        apply(c, group, "v1", kind, plural, &body).await?;
    }
    apply(
        c,
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &govcloud_core::hub::hub_restorer_role(),
    )
    .await
}

#[tokio::test]
async fn the_hub_rebuilt_from_its_backup_loses_no_decision() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let group = unique("hb");
    create_test_cluster(&hub, &group, "external", 3, 2, None).await?;
    let ns = unique("requests");
    ensure_namespace(&hub, &ns).await?;
    let approver = unique("approver");
    let requester = unique("agency-user");
    bind(
        &hub,
        &format!("req-{requester}"),
        "govcloud-tenancy-requester",
        &requester,
        Some(&ns),
    )
    .await?;
    bind(
        &hub,
        &format!("appr-{approver}"),
        "govcloud-tenancy-approver",
        &approver,
        None,
    )
    .await?;
    let as_requester: Api<TenancyRequest> = Api::namespaced(impersonating(1, &requester, &[]).await?, &ns);
    let as_approver: Api<TenancyRequest> = Api::namespaced(impersonating(1, &approver, &[]).await?, &ns);
    let admin: Api<TenancyRequest> = Api::namespaced(hub.clone(), &ns);
    let (yes, no) = (unique_short("hby"), unique_short("hbn"));
    for n in [&yes, &no] {
        as_requester
            .create(&PostParams::default(), &tenancy_request(n, &requester, &group)?)
            .await?;
    }
    for (n, action) in [(&yes, "Approve"), (&no, "Deny")] {
        let g = wait_for("request validated", T, || async {
            let tr = admin.get(n).await?;
            let valid = tr
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Valid"));
            Ok(valid.then_some(tr.metadata.generation).flatten())
        })
        .await?;
        as_approver
            .patch(n, &PatchParams::default(), &tenancy_decision(action, &approver, g))
            .await?;
    }
    let acs: Api<AgencyCloud> = Api::all(hub.clone());
    wait_for("approved request provisioned, denied one decided", T, || async {
        let done = |tr: &TenancyRequest, t: &str| {
            tr.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == t && c.status == "True"))
        };
        Ok((done(&admin.get(&yes).await?, "Provisioned") && done(&admin.get(&no).await?, "Decided")).then_some(()))
    })
    .await?;
    acs.patch(
        &yes,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"govcloud.io/test-group": group}}})),
    )
    .await?;
    wait_agency_ready(&hub, &yes, T).await?;

    // The backup, with the operator's own command.
    let file = figures_dir().join(format!("hub-backup-{group}.json"));
    let out = tokio::process::Command::new(operator_binary())
        .args([
            "hub-backup",
            "--selector",
            &format!("govcloud.io/test-group={group}"),
            "--out",
        ])
        .arg(&file)
        .arg("--kubeconfig")
        .arg(kubeconfig_path(1))
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "hub-backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    let kinds: Vec<&str> = doc["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["kind"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        kinds == ["DataCenterCluster", "AgencyCloud", "TenancyRequest", "TenancyRequest"],
        "backed up: {kinds:?}"
    );

    // dc3 as the new hub.
    let new = client(3).await?;
    new_hub(&new).await?;
    let intruder = unique("intruder");
    let restorer = unique("restorer");
    // The intruder holds every right of the restorer role except `restore`.
    let mut almost = govcloud_core::hub::hub_restorer_role();
    almost["metadata"]["name"] = json!(format!("almost-{intruder}"));
    if let Some(rules) = almost["rules"].as_array_mut() {
        rules.retain(|r| !r["resources"].to_string().contains("/restore"));
    }
    apply(
        &new,
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &almost,
    )
    .await?;
    bind(
        &new,
        &format!("almost-{intruder}"),
        &format!("almost-{intruder}"),
        &intruder,
        None,
    )
    .await?;
    bind(
        &new,
        &format!("restorer-{restorer}"),
        govcloud_core::hub::HUB_RESTORER_ROLE,
        &restorer,
        None,
    )
    .await?;
    let as_intruder = impersonating(3, &intruder, &[]).await?;
    // The admission policies load asynchronously after they are created: wait until a
    // request in someone else's name is refused (a dry run), then try the forgery.
    ensure_namespace(&new, &ns).await?;
    let probe: Api<TenancyRequest> = Api::namespaced(as_intruder.clone(), &ns);
    wait_for("the approval policy in force on the new hub", T, || async {
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        Ok(
            match probe
                .create(&dry, &tenancy_request(&unique_short("probe"), "someone-else", &group)?)
                .await
            {
                Err(kube::Error::Api(e)) if e.message.contains("own user name") => Some(()),
                _ => None,
            },
        )
    })
    .await?;
    let refusal = wait_for("the intruder's restore refused", T, || async {
        match govcloud::rebuild::restore(&as_intruder, &doc, false).await {
            Ok(r) => Err(anyhow!(
                "decisions written back without the restore permission: {:?}",
                r.lines
            )),
            Err(e) if format!("{e:#}").contains("own user name") => Ok(Some(format!("{e:#}"))),
            Err(_) => Ok(None),
        }
    })
    .await?;
    let on_new: Api<TenancyRequest> = Api::namespaced(new.clone(), &ns);
    ensure!(
        on_new.get_opt(&yes).await?.is_none() && on_new.get_opt(&no).await?.is_none(),
        "a forged decision is on the new hub ({refusal})"
    );
    let restored = govcloud::rebuild::restore(&impersonating(3, &restorer, &[]).await?, &doc, false).await?;
    ensure!(restored.lines.len() == 4, "{:?}", restored.lines);

    // Every decision and cloud back, as recorded.
    let mut lost = Vec::new();
    for n in [&yes, &no] {
        let before = admin.get(n).await?;
        let after = on_new.get(n).await?;
        if before.spec.decision != after.spec.decision || before.spec.requested_by != after.spec.requested_by {
            lost.push(format!("decision of {n}"));
        }
        let (b, a) = (before.status.unwrap_or_default(), after.status.unwrap_or_default());
        if b.agency_cloud != a.agency_cloud || b.conditions != a.conditions {
            lost.push(format!("status of {n}"));
        }
        ensure!(
            after
                .metadata
                .annotations
                .unwrap_or_default()
                .get("govcloud.io/restored-from")
                .map(String::as_str)
                == doc["digest"].as_str(),
            "{n} names the backup it came from"
        );
    }
    let (before, after) = (
        acs.get(&yes).await?,
        Api::<AgencyCloud>::all(new.clone()).get(&yes).await?,
    );
    if before.spec != after.spec || before.status.map(|s| s.conditions) != after.status.map(|s| s.conditions) {
        lost.push(format!("AgencyCloud {yes}"));
    }
    ensure!(lost.is_empty(), "lost in the rebuild: {lost:?}");
    let again = govcloud::rebuild::restore(&impersonating(3, &restorer, &[]).await?, &doc, false).await?;
    ensure!(
        again.lines.iter().all(|l| l.2 == "exists"),
        "a second restore writes nothing: {:?}",
        again.lines
    );

    // Clean up the new hub (no operator runs there) and the requests on the hub.
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(new.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    let _ = Api::<AgencyCloud>::all(new.clone())
        .delete(&yes, &DeleteParams::default())
        .await;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(hub.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    wait_for("requests gone from the hub", T, || async {
        Ok(admin.get_opt(&yes).await?.is_none().then_some(()))
    })
    .await?;
    let _ = acs.delete(&yes, &DeleteParams::default()).await;
    Ok(())
}
