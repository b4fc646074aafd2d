//! TenancyRequest: request → approve → AgencyCloud, deny, and unforgeable decisions, with
//! real users impersonated against the hub's admission policy and RBAC.

use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};
use govcloud_api::{AgencyCloud, TenancyRequest};
use govcloud_tests::*;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

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

/// The request's current generation, as an approver reviewing it sees it.
async fn generation(api: &Api<TenancyRequest>, name: &str) -> Result<i64> {
    api.get(name)
        .await?
        .metadata
        .generation
        .ok_or_else(|| anyhow!("{name} has no metadata.generation"))
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
        .create(&PostParams::default(), &tenancy_request(&yes, &requester, &group)?)
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
    let reviewed = generation(&as_approver, &yes).await?;
    as_approver
        .patch(
            &yes,
            &PatchParams::default(),
            &tenancy_decision("Approve", &approver, reviewed),
        )
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
            .patch(
                &yes,
                &PatchParams::default(),
                &tenancy_decision("Deny", &approver, reviewed + 1),
            )
            .await,
        "decision is final",
    )?;

    // Deny: nothing is created.
    let no = unique_short("no");
    as_requester
        .create(&PostParams::default(), &tenancy_request(&no, &requester, &group)?)
        .await?;
    as_approver
        .patch(
            &no,
            &PatchParams::default(),
            &tenancy_decision("Deny", &approver, generation(&as_approver, &no).await?),
        )
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
            .create(&PostParams::default(), &tenancy_request(&n, "the-minister", "none")?)
            .await,
        "spec.requestedBy must be set to your own user name",
    )?;
    // …cannot create a pre-approved request…
    let mut pre = tenancy_request(&n, &requester, "none")?;
    pre.spec.decision =
        serde_json::from_value(json!({"action": "Approve", "decidedBy": approver, "reason": "self-service"}))?;
    refused(
        as_requester.create(&PostParams::default(), &pre).await,
        "only platform approvers",
    )?;
    // …and cannot approve its own request, even writing the approver's name.
    as_requester
        .create(&PostParams::default(), &tenancy_request(&n, &requester, "none")?)
        .await?;
    let g = generation(&as_requester, &n).await?;
    refused(
        as_requester
            .patch(&n, &PatchParams::default(), &tenancy_decision("Approve", &approver, g))
            .await,
        "only platform approvers",
    )?;
    // The approver cannot record a decision in someone else's name.
    refused(
        as_approver
            .patch(
                &n,
                &PatchParams::default(),
                &tenancy_decision("Approve", "someone-else", g),
            )
            .await,
        "spec.decision.decidedBy must be your own user name",
    )?;
    // An approver cannot decide a request they filed themselves.
    let own = unique_short("own");
    as_approver
        .create(&PostParams::default(), &tenancy_request(&own, &approver, "none")?)
        .await?;
    let g = generation(&as_approver, &own).await?;
    refused(
        as_approver
            .patch(
                &own,
                &PatchParams::default(),
                &tenancy_decision("Approve", &approver, g),
            )
            .await,
        "cannot decide their own",
    )?;
    Ok(())
}

/// Issue 23, hole 5: an approval applies to the request as the approver reviewed it. The
/// requester widens the request between the review and the decision; the decision for the
/// reviewed generation is refused, and the cloud finally created is the one approved.
#[tokio::test]
async fn an_approval_is_bound_to_the_generation_reviewed() -> Result<()> {
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
    let acs: Api<AgencyCloud> = Api::all(hub.clone());

    let name = unique_short("bind");
    as_requester
        .create(&PostParams::default(), &tenancy_request(&name, &requester, &group)?)
        .await?;
    // The approver reviews the request…
    let reviewed = generation(&as_approver, &name).await?;
    // …and before the decision is written the requester widens it: an outside owner, an
    // unvetted registry, internet egress and a lower security level.
    as_requester
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cloud": {
                "securityLevel": 1,
                "owners": [{"kind": "Group", "name": format!("{name}-owners")}, {"kind": "User", "name": "outsider"}],
                "allowedRegistries": ["registry.gov.cn", "docker.io"],
                "egress": [{"name": "anywhere", "cidr": "0.0.0.0/0", "internetExit": true}]
            }}})),
        )
        .await?;
    let current = generation(&admin, &name).await?;
    ensure!(
        current > reviewed,
        "the change bumped the generation: {reviewed} → {current}"
    );
    // The decision for what was reviewed is refused, naming the field and the generation to review.
    refused(
        as_approver
            .patch(
                &name,
                &PatchParams::default(),
                &tenancy_decision("Approve", &approver, reviewed),
            )
            .await,
        &format!("spec.decision.reviewedGeneration: you reviewed generation {reviewed}"),
    )?;
    ensure!(admin.get(&name).await?.spec.decision.is_none(), "refused, so undecided");
    // A decision that does not say what it was for is refused by the schema.
    refused(
        as_approver
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"decision": {"action": "Approve", "decidedBy": approver, "reason": "Looks fine."}}}),
                ),
            )
            .await,
        "reviewedGeneration",
    )?;
    // Nor can an approver rewrite the request into something else before approving it.
    refused(
        as_approver
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"cloud": {"securityLevel": 2}}})),
            )
            .await,
        "spec.cloud: only the requester",
    )?;

    // Reviewed again, the request is approved as it now is, and exactly that is created.
    as_approver
        .patch(
            &name,
            &PatchParams::default(),
            &tenancy_decision("Approve", &approver, current),
        )
        .await?;
    let tr = wait_tr(&admin, &name, "Provisioned", "True").await?;
    let (_, _, decided) = cond(&tr, "Decided").ok_or_else(|| anyhow!("no Decided"))?;
    ensure!(decided.contains(&format!("reviewed generation {current}")), "{decided}");
    let ac = acs.get(&name).await?;
    ensure!(
        ac.spec.cloud == tr.spec.cloud,
        "the cloud created is the one approved: {:?}",
        ac.spec.cloud
    );
    // Once decided, the request cannot change.
    refused(
        as_requester
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"cloud": {"securityLevel": 2}}})),
            )
            .await,
        "cannot change once decided",
    )?;

    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(hub.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    wait_for("requests gone", T, || async {
        Ok(admin.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    let _ = acs.delete(&name, &DeleteParams::default()).await;
    Ok(())
}

/// Issue 23, hole 8: agencies sharing a requests namespace cannot change or delete each
/// other's requests; a namespace being deleted still takes every request in it.
#[tokio::test]
async fn requesters_cannot_change_or_delete_each_others_requests() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let ns = unique("requests");
    let approver = unique("approver");
    let requester = unique("agency-user");
    let other = unique("other-agency");
    setup_users(&hub, &ns, &approver, &requester).await?;
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("requesters-{other}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "govcloud-tenancy-requester"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": other}]
    }))?;
    Api::<RoleBinding>::namespaced(hub.clone(), &ns)
        .create(&PostParams::default(), &rb)
        .await?;
    let as_requester: Api<TenancyRequest> = Api::namespaced(impersonating(1, &requester, &[]).await?, &ns);
    let as_other: Api<TenancyRequest> = Api::namespaced(impersonating(1, &other, &[]).await?, &ns);
    let as_approver: Api<TenancyRequest> = Api::namespaced(impersonating(1, &approver, &[]).await?, &ns);
    let admin: Api<TenancyRequest> = Api::namespaced(hub.clone(), &ns);

    let mine = unique_short("mine");
    as_requester
        .create(&PostParams::default(), &tenancy_request(&mine, &requester, "none")?)
        .await?;
    let filed_by = format!("spec.requestedBy: tenancy request {mine} was filed by {requester}");
    // Another agency's user may read the request (same namespace) but not change it…
    as_other.get(&mine).await?;
    refused(
        as_other
            .patch(
                &mine,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"cloud": {"owners": [{"kind": "User", "name": other}]}}})),
            )
            .await,
        &filed_by,
    )?;
    refused(
        as_other
            .patch(
                &mine,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"withdrawn": "true"}}})),
            )
            .await,
        &filed_by,
    )?;
    // …nor delete it.
    match as_other.delete(&mine, &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) if s.message.contains(&filed_by) => {}
        Err(e) => bail!("unexpected error deleting another agency's request: {e}"),
        Ok(_) => bail!("another agency's user deleted the request"),
    }
    let tr = admin.get(&mine).await?;
    ensure!(
        tr.metadata.deletion_timestamp.is_none() && tr.spec.cloud.owners.iter().all(|o| o.name != other),
        "the request is untouched: {:?}",
        tr.spec.cloud.owners
    );
    // A platform approver may annotate it (not rewrite it: see the test above).
    as_approver
        .patch(
            &mine,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"govcloud.io/review-note": "budget checked"}}})),
        )
        .await?;
    // The requester corrects and withdraws their own request.
    as_requester
        .patch(
            &mine,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"justification": "Host the municipal open-data portal, its database and its API."}}),
            ),
        )
        .await?;
    as_requester.delete(&mine, &DeleteParams::default()).await?;
    wait_for("withdrawn", T, || async {
        Ok(admin.get_opt(&mine).await?.is_none().then_some(()))
    })
    .await?;

    // Deleting the namespace takes every request in it, whoever filed it.
    let theirs = unique_short("theirs");
    as_other
        .create(&PostParams::default(), &tenancy_request(&theirs, &other, "none")?)
        .await?;
    Api::<k8s_openapi::api::core::v1::Namespace>::all(hub.clone())
        .delete(&ns, &DeleteParams::default())
        .await?;
    wait_for("the namespace and its requests gone", T, || async {
        let ns_gone = Api::<k8s_openapi::api::core::v1::Namespace>::all(hub.clone())
            .get_opt(&ns)
            .await?
            .is_none();
        Ok((ns_gone && admin.get_opt(&theirs).await?.is_none()).then_some(()))
    })
    .await?;
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
    let mut tr = tenancy_request(&taken, "admin", &group)?;
    tr.spec.requested_by = None;
    let created = admin.create(&PostParams::default(), &tr).await;
    // The admin identity of the testbed is not "admin": the policy demands requestedBy be the caller.
    refused(created, "spec.requestedBy")?;
    let who = whoami(&hub).await?;
    let mut tr = tenancy_request(&taken, &who, &group)?;
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
    let mut tr = tenancy_request(&far, &who, &group)?;
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
