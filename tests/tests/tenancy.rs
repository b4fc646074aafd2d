//! TenancyRequest: request → approve → AgencyCloud, deny, and unforgeable decisions, with
//! real users impersonated against the hub's admission policy and RBAC.

use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};
use govcloud_api::{AgencyCloud, TenancyRequest};
use govcloud_tests::*;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);

async fn setup_users(hub: &Client, ns: &str, approver: &str, requester: &str) -> Result<()> {
    ensure_namespace(hub, ns).await?;
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("requesters-{requester}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "govcloud-tenancy-requester"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": requester},
                     {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": approver}]
    }))?;
    Api::<RoleBinding>::namespaced(hub.clone(), ns)
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
    Ok(())
}

fn request(name: &str, requested_by: &str, group: &str) -> Result<TenancyRequest> {
    let cloud = agency_cloud(name, 2, "external", &[("prod", "2", "4Gi")], group)["spec"].clone();
    Ok(serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "TenancyRequest",
        "metadata": {"name": name},
        "spec": {"cloud": cloud, "justification": "Host the municipal open-data portal and its database.", "requestedBy": requested_by}
    }))?)
}

fn decision(action: &str, by: &str) -> Patch<Value> {
    Patch::Merge(
        json!({"spec": {"decision": {"action": action, "decidedBy": by, "reason": "Checked against the annual plan."}}}),
    )
}

fn cond(tr: &TenancyRequest, t: &str) -> Option<(String, String, String)> {
    tr.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_tr(api: &Api<TenancyRequest>, name: &str, t: &str, status: &str) -> Result<TenancyRequest> {
    wait_for(&format!("TenancyRequest {name} {t}={status}"), T, || async {
        let tr = api.get(name).await?;
        Ok(cond(&tr, t).filter(|c| c.0 == status).map(|_| tr))
    })
    .await
}

fn refused(r: Result<TenancyRequest, kube::Error>, needle: &str) -> Result<()> {
    match r {
        Err(kube::Error::Api(s)) => {
            ensure!(
                s.message.contains(needle),
                "refusal should mention {needle:?}: {}",
                s.message
            );
            Ok(())
        }
        Err(e) => bail!("unexpected error: {e}"),
        Ok(_) => bail!("accepted, but should have been refused ({needle})"),
    }
}

async fn register_member(hub: &Client, group: &str) -> Result<()> {
    create_test_cluster(hub, group, "external", 3, 2, None).await?;
    Ok(())
}

#[tokio::test]
async fn approved_request_is_provisioned_and_denied_one_is_not() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let ns = unique("requests");
    let approver = unique("approver");
    let requester = unique("agency-user");
    setup_users(&hub, &ns, &approver, &requester).await?;
    let group = unique("grp");
    register_member(&hub, &group).await?;

    let as_requester: Api<TenancyRequest> = Api::namespaced(impersonating(1, &requester, &[]).await?, &ns);
    let as_approver: Api<TenancyRequest> = Api::namespaced(impersonating(1, &approver, &[]).await?, &ns);
    let admin: Api<TenancyRequest> = Api::namespaced(hub.clone(), &ns);

    // Request: validated, with a placement preview.
    let yes = unique_short("yes");
    as_requester
        .create(&PostParams::default(), &request(&yes, &requester, &group)?)
        .await?;
    let tr = wait_tr(&admin, &yes, "Placeable", "True").await?;
    ensure!(cond(&tr, "Valid").map(|c| c.0) == Some("True".into()), "valid");
    ensure!(
        tr.status
            .as_ref()
            .and_then(|s| s.placement_preview.as_ref())
            .and_then(|p| p.cluster.clone())
            .is_some(),
        "preview names a cluster"
    );
    ensure!(
        Api::<AgencyCloud>::all(hub.clone()).get_opt(&yes).await?.is_none(),
        "nothing before approval"
    );

    // Approve as the approver, in the approver's own name.
    as_approver
        .patch(&yes, &PatchParams::default(), &decision("Approve", &approver))
        .await?;
    let tr = wait_tr(&admin, &yes, "Provisioned", "True").await?;
    ensure!(tr.status.as_ref().and_then(|s| s.agency_cloud.clone()) == Some(yes.clone()));
    let acs: Api<AgencyCloud> = Api::all(hub.clone());
    let ac = wait_for("AgencyCloud Ready", T, || async {
        let ac = acs.get(&yes).await?;
        Ok(ac
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            .then_some(ac))
    })
    .await?;
    let ann = ac.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        ann.get("govcloud.io/approved-by") == Some(&approver),
        "approver recorded: {ann:?}"
    );
    // A decision is final.
    refused(
        as_approver
            .patch(&yes, &PatchParams::default(), &decision("Deny", &approver))
            .await,
        "decision is final",
    )?;

    // Deny: nothing is created.
    let no = unique_short("no");
    as_requester
        .create(&PostParams::default(), &request(&no, &requester, &group)?)
        .await?;
    as_approver
        .patch(&no, &PatchParams::default(), &decision("Deny", &approver))
        .await?;
    let tr = wait_tr(&admin, &no, "Decided", "True").await?;
    let (s, reason, _) = cond(&tr, "Provisioned").ok_or_else(|| anyhow!("no Provisioned"))?;
    ensure!(s == "False" && reason == "Denied", "{s} {reason}");
    ensure!(
        acs.get_opt(&no).await?.is_none(),
        "denied request created an AgencyCloud"
    );

    // Requests go first (an approved request would otherwise bring its cloud back).
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(hub.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    wait_for("requests gone", T, || async {
        Ok(admin.get_opt(&yes).await?.is_none().then_some(()))
    })
    .await?;
    let _ = acs.delete(&yes, &DeleteParams::default()).await;
    Ok(())
}

#[tokio::test]
async fn decisions_cannot_be_forged_or_self_approved() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let ns = unique("requests");
    let approver = unique("approver");
    let requester = unique("agency-user");
    setup_users(&hub, &ns, &approver, &requester).await?;
    let as_requester: Api<TenancyRequest> = Api::namespaced(impersonating(1, &requester, &[]).await?, &ns);
    let as_approver: Api<TenancyRequest> = Api::namespaced(impersonating(1, &approver, &[]).await?, &ns);

    // The requester cannot pretend to be someone else…
    let n = unique_short("f");
    refused(
        as_requester
            .create(&PostParams::default(), &request(&n, "the-minister", "none")?)
            .await,
        "spec.requestedBy must be set to your own user name",
    )?;
    // …cannot create a pre-approved request…
    let mut pre = request(&n, &requester, "none")?;
    pre.spec.decision =
        serde_json::from_value(json!({"action": "Approve", "decidedBy": approver, "reason": "self-service"}))?;
    refused(
        as_requester.create(&PostParams::default(), &pre).await,
        "only platform approvers",
    )?;
    // …and cannot approve its own request, even writing the approver's name.
    as_requester
        .create(&PostParams::default(), &request(&n, &requester, "none")?)
        .await?;
    refused(
        as_requester
            .patch(&n, &PatchParams::default(), &decision("Approve", &approver))
            .await,
        "only platform approvers",
    )?;
    // The approver cannot record a decision in someone else's name.
    refused(
        as_approver
            .patch(&n, &PatchParams::default(), &decision("Approve", "someone-else"))
            .await,
        "spec.decision.decidedBy must be your own user name",
    )?;
    // An approver cannot decide a request they filed themselves.
    let own = unique_short("own");
    as_approver
        .create(&PostParams::default(), &request(&own, &approver, "none")?)
        .await?;
    refused(
        as_approver
            .patch(&own, &PatchParams::default(), &decision("Approve", &approver))
            .await,
        "cannot decide their own",
    )?;
    Ok(())
}

#[tokio::test]
async fn invalid_requests_say_which_field_is_wrong() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let ns = unique("requests");
    ensure_namespace(&hub, &ns).await?;
    let admin: Api<TenancyRequest> = Api::namespaced(hub.clone(), &ns);
    let group = unique("grp");
    register_member(&hub, &group).await?;
    // An existing agency takes the short name and credit code.
    let taken = unique_short("t");
    let body = agency_cloud(&taken, 2, "external", &[("prod", "1", "1Gi")], &group);
    let code = body["spec"]["agency"]["creditCode"].clone();
    Api::<AgencyCloud>::all(hub.clone())
        .create(&PostParams::default(), &serde_json::from_value(body)?)
        .await?;
    let mut tr = request(&taken, "admin", &group)?;
    tr.spec.requested_by = None;
    let created = admin.create(&PostParams::default(), &tr).await;
    // The admin identity of the testbed is not "admin": the policy demands requestedBy be the caller.
    refused(created, "spec.requestedBy")?;
    let who = whoami(&hub).await?;
    let mut tr = request(&taken, &who, &group)?;
    tr.spec.cloud.agency.credit_code = code.as_str().unwrap_or_default().to_string();
    admin.create(&PostParams::default(), &tr).await?;
    let tr = wait_tr(&admin, &taken, "Valid", "False").await?;
    let msg = cond(&tr, "Valid").map(|c| c.2).unwrap_or_default();
    ensure!(
        msg.contains("spec.cloud.agency.shortName") && msg.contains("spec.cloud.agency.creditCode"),
        "{msg}"
    );

    // A request nothing can take: level 3 on a zone with no cluster in its group.
    let far = unique_short("far");
    let mut tr = request(&far, &who, &group)?;
    tr.spec.cloud.zone = govcloud_api::NetworkZone::Internal;
    admin.create(&PostParams::default(), &tr).await?;
    let tr = wait_tr(&admin, &far, "Placeable", "False").await?;
    let rejected = tr
        .status
        .and_then(|s| s.placement_preview)
        .map(|p| p.rejected)
        .unwrap_or_default();
    ensure!(rejected.iter().any(|r| r.reason == "ZoneMismatch"), "{rejected:?}");
    let _ = Api::<AgencyCloud>::all(hub.clone())
        .delete(&taken, &DeleteParams::default())
        .await;
    Ok(())
}

/// The user name the testbed's admin certificate authenticates as.
async fn whoami(client: &Client) -> Result<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review: SelfSubjectReview =
        serde_json::from_value(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))?;
    let out = api.create(&PostParams::default(), &review).await?;
    out.status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .ok_or_else(|| anyhow!("no user name"))
}
