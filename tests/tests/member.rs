//! The operator's identity on a member cluster (the ServiceAccount of the chart's member
//! manifest, `hack/chart.sh member`), against the real API server of dc2:
//!
//! - a stolen token of it is not cluster-admin: it reads no Secret outside Velero's
//!   namespace, cannot write or escalate ClusterRoles, bind other roles, create
//!   ClusterRoleBindings or admission policies of other names;
//! - the operator still converges an agency with it (every test of the suite registers
//!   members with this identity, and hack/check-rbac.py checks the members' audit logs);
//! - agency roles changed behind its back (a rule added) cannot be repaired with it: the
//!   AgencyCloud says so (`MemberRolesOutdated`, naming the member manifest), and applying the
//!   manifest again brings it back to Ready.
//!
//! One test in its own binary: it changes a role every agency on dc2 uses.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use govcloud_api::AgencyCloud;
use govcloud_tests::*;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Api, Client, Config};
use serde_json::json;

const T: Duration = Duration::from_secs(120);
const MEMBER: usize = 2;

/// A client of dc2 as the operator's identity there.
async fn member_identity() -> Result<Client> {
    init_crypto();
    let kc = Kubeconfig::from_yaml(&kubeconfig_yaml(MEMBER, None)?)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn dry() -> PostParams {
    PostParams {
        dry_run: true,
        field_manager: Some("member-test".into()),
    }
}

/// Refused by authorization: a 403 that says the identity "cannot" do it, or RBAC's
/// escalation check ("attempting to grant RBAC permissions not currently held").
fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>, what: &str, problems: &mut Vec<String>) {
    match r {
        Err(kube::Error::Api(s))
            if s.code == 403 && (s.message.contains("cannot") || s.message.contains("not currently held")) =>
        {
            println!("  {what}: refused: {}", s.message.chars().take(160).collect::<String>());
        }
        other => problems.push(format!("{what}: expected a refusal by RBAC, got {other:?}")),
    }
}

async fn allowed(c: &Client, verb: &str, group: &str, resource: &str, name: &str) -> Result<bool> {
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource, "name": name}}
    }))?;
    let answer = Api::<SelfSubjectAccessReview>::all(c.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn ready_reason(hub: &Client, name: &str) -> Result<Option<(String, String, String)>> {
    let ac = Api::<AgencyCloud>::all(hub.clone()).get(name).await?;
    Ok(ac.status.and_then(|s| {
        s.conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status, c.reason, c.message))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_identity_is_not_cluster_admin_and_still_converges() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let admin = client(MEMBER).await?;
    let op = member_identity().await?;
    let mut problems = Vec::new();

    // What a stolen token of it may not do.
    forbidden(
        Api::<Secret>::namespaced(op.clone(), "kube-system")
            .list(&Default::default())
            .await,
        "list Secrets in kube-system",
        &mut problems,
    );
    forbidden(
        Api::<Secret>::namespaced(op.clone(), OPERATOR_NAMESPACE)
            .list(&Default::default())
            .await,
        "list Secrets in govcloud-system",
        &mut problems,
    );
    let everything: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "govcloud-agency-owner"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    }))?;
    forbidden(
        Api::<ClusterRole>::all(op.clone())
            .patch(
                "govcloud-agency-owner",
                &PatchParams::apply("member-test").dry_run().force(),
                &Patch::Apply(&everything),
            )
            .await,
        "rewrite the owner role to grant everything",
        &mut problems,
    );
    let mut new_role = everything.clone();
    new_role.metadata.name = Some(unique("stolen"));
    forbidden(
        Api::<ClusterRole>::all(op.clone()).create(&dry(), &new_role).await,
        "create a ClusterRole",
        &mut problems,
    );
    for (verb, name) in [
        ("escalate", "govcloud-agency-owner"),
        ("bind", "cluster-admin"),
        ("bind", "admin"),
    ] {
        if allowed(&op, verb, "rbac.authorization.k8s.io", "clusterroles", name).await? {
            problems.push(format!("the member identity may {verb} ClusterRole {name}"));
        }
    }
    let crb: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": unique("stolen")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}]
    }))?;
    let crbs: Api<DynamicObject> = Api::all_with(
        op.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
            "clusterrolebindings",
        ),
    );
    forbidden(
        crbs.create(&dry(), &crb).await,
        "bind cluster-admin cluster-wide",
        &mut problems,
    );
    let rb: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": unique("stolen"), "namespace": "kube-system"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}]
    }))?;
    let rbs: Api<DynamicObject> = Api::namespaced_with(
        op.clone(),
        "kube-system",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
            "rolebindings",
        ),
    );
    forbidden(
        rbs.create(&dry(), &rb).await,
        "bind admin in kube-system",
        &mut problems,
    );
    let vap: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": unique("stolen")},
        "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                 "operations": ["CREATE"], "resources": ["pods"]}]},
                 "validations": [{"expression": "false"}]}
    }))?;
    let vaps: Api<DynamicObject> = Api::all_with(
        op.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy"),
            "validatingadmissionpolicies",
        ),
    );
    forbidden(
        vaps.patch(
            vap.metadata.name.as_deref().unwrap_or("stolen"),
            &PatchParams::apply("member-test").dry_run(),
            &Patch::Apply(&vap),
        )
        .await,
        "create an admission policy of another name",
        &mut problems,
    );

    // The operator converges an agency with it.
    let group = unique("grp");
    create_test_cluster(&hub, &group, "external", 3, MEMBER, None).await?;
    let name = unique_short("mbr");
    let ac: AgencyCloud = serde_json::from_value(agency_cloud(&name, 2, "external", &[("prod", "1", "1Gi")], &group))?;
    Api::<AgencyCloud>::all(hub.clone())
        .create(&PostParams::default(), &ac)
        .await?;
    wait_for(&format!("agency {name} Ready on dc2"), T, || async {
        Ok(ready_reason(&hub, &name).await?.filter(|r| r.0 == "True").map(|_| ()))
    })
    .await?;

    // The owner role changed behind the operator's back: it may not repair it, and says so.
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let tampered = roles
        .get("govcloud-agency-owner")
        .await
        .map_err(|e| anyhow!("the member manifest did not install govcloud-agency-owner: {e}"))?;
    let mut rules = tampered.rules.clone().unwrap_or_default();
    rules.push(serde_json::from_value(
        json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}),
    )?);
    roles
        .patch(
            "govcloud-agency-owner",
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": rules})),
        )
        .await?;
    // A change of the role reconciles one agency of the cluster, not necessarily this one: a
    // change of this one's spec makes it look now (otherwise at its next periodic reconcile).
    Api::<AgencyCloud>::all(hub.clone())
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"viewers": [
                {"kind": "Group", "name": format!("{name}-viewers")},
                {"kind": "Group", "name": format!("{name}-auditors")}
            ]}})),
        )
        .await?;
    let outdated = wait_for(&format!("agency {name} reports the changed role"), T, || async {
        Ok(ready_reason(&hub, &name)
            .await?
            .filter(|r| r.0 == "False" && r.1 == "MemberRolesOutdated"))
    })
    .await;
    // Always put the manifest back, as docs/install.md tells the platform engineer to.
    let reapplied = std::process::Command::new("bash")
        .arg(repo_root().join("hack/chart.sh"))
        .arg("member")
        .arg(kubeconfig_path(MEMBER))
        .output()?;
    if !reapplied.status.success() {
        bail!(
            "hack/chart.sh member failed: {}",
            String::from_utf8_lossy(&reapplied.stderr)
        );
    }
    match outdated {
        Ok((_, _, message)) => {
            println!("  changed role: {message}");
            if !(message.contains("govcloud-agency-owner") && message.contains("member manifest")) {
                problems.push(format!("the message names neither the role nor the fix: {message}"));
            }
        }
        Err(e) => problems.push(format!("a changed owner role was not reported: {e:#}")),
    }
    let back = roles.get("govcloud-agency-owner").await?;
    if back.rules.as_ref().is_some_and(|r| r.len() == rules.len()) {
        problems.push("applying the member manifest did not restore the owner role".into());
    }
    wait_for(&format!("agency {name} Ready again"), T, || async {
        Ok(ready_reason(&hub, &name).await?.filter(|r| r.0 == "True").map(|_| ()))
    })
    .await?;
    let _ = Api::<AgencyCloud>::all(hub.clone())
        .delete(&name, &Default::default())
        .await;
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}
