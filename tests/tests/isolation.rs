//! Isolation between agencies, by impersonation against the real API servers.
//!
//! Three agencies on a member cluster. Every agency's owner and viewer (real users in the
//! groups the AgencyClouds name) sends every verb on every resource that matters to every
//! agency's namespaces, on the member (workloads) and on the hub (HostedSystems,
//! BackupPolicies). Writes are server-side dry runs, so nothing changes even where they are
//! allowed. Each answer is classified by who decided it: refused by RBAC ("… cannot …", 403)
//! or let through RBAC (anything else: 200, 404, 409, 422…). The expectation is exact: a
//! tenant reaches its own namespaces as its role says and nothing of any other agency.
//!
//! Then escalation attempts by an agency owner in its own namespaces, the member kubeconfig
//! Secrets (only the operator may read them) and the metrics endpoint (no secrets); and an
//! owner's attempts to expose its workloads past the operator (Ingresses, Services of type
//! LoadBalancer, NodePort or ExternalName, externalIPs).
//!
//! Figures go to target/reliability/isolation.json for docs/reliability.md.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use futures::StreamExt as _;
use govcloud_api::AgencyCloud;
use govcloud_tests::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, WatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::json;

const T: Duration = Duration::from_secs(120);

/// (group, version, kind, plural)
type Res = (&'static str, &'static str, &'static str, &'static str);

const WORKLOADS: [Res; 12] = [
    ("", "v1", "Pod", "pods"),
    ("", "v1", "Service", "services"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
    ("networking.k8s.io", "v1", "Ingress", "ingresses"),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
];
/// The guardrails: readable by the agency, never writable.
const GUARDRAILS: [Res; 4] = [
    ("", "v1", "ResourceQuota", "resourcequotas"),
    ("", "v1", "LimitRange", "limitranges"),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
];
const GOVCLOUD: [Res; 2] = [
    ("govcloud.io", "v1alpha1", "HostedSystem", "hostedsystems"),
    ("govcloud.io", "v1alpha1", "BackupPolicy", "backuppolicies"),
];
const VERBS: [&str; 7] = ["get", "list", "watch", "create", "update", "patch", "delete"];
const READ: [&str; 3] = ["get", "list", "watch"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Owner,
    Viewer,
}

/// What the RBAC of an agency's own namespace lets `role` do (None for another agency's).
fn expected(on_hub: bool, hub_is_member: bool, role: Role, r: &Res, verb: &str) -> bool {
    let read = READ.contains(&verb);
    let govcloud = r.0 == "govcloud.io";
    if on_hub && !hub_is_member {
        // The hub holds only the agency's govcloud objects.
        return govcloud && (read || role == Role::Owner);
    }
    if govcloud {
        return read || role == Role::Owner;
    }
    let guardrail = GUARDRAILS.iter().any(|g| g.3 == r.3);
    match role {
        // Ingresses are read only: exposure happens only through the operator.
        Role::Owner => read || !(guardrail || r.3 == "ingresses"),
        // Viewers read workloads (not Secrets) and the quota, limits and network policies.
        Role::Viewer => read && r.3 != "secrets" && r.3 != "rolebindings",
    }
}

fn api(client: &Client, r: &Res, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(r.0, r.1, r.2);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, r.3))
}

fn dry() -> PostParams {
    PostParams {
        dry_run: true,
        field_manager: Some("isolation".into()),
    }
}

/// Sends `verb` on `r` in `ns`; Ok(true) when RBAC let it through, Ok(false) when RBAC refused.
async fn attempt(client: &Client, r: &Res, ns: &str, verb: &str) -> Result<bool> {
    let a = api(client, r, ns);
    let api_version = if r.0.is_empty() {
        r.1.to_string()
    } else {
        format!("{}/{}", r.0, r.1)
    };
    let body: DynamicObject = serde_json::from_value(json!({
        "apiVersion": api_version, "kind": r.2,
        "metadata": {"name": "probe", "namespace": ns}
    }))?;
    let res: Result<(), kube::Error> = match verb {
        "get" => a.get("probe").await.map(|_| ()),
        "list" => a.list(&Default::default()).await.map(|_| ()),
        "watch" => a.watch(&WatchParams::default().timeout(1), "0").await.map(|_| ()),
        "create" => a.create(&dry(), &body).await.map(|_| ()),
        "update" => a.replace("probe", &dry(), &body).await.map(|_| ()),
        "patch" => {
            let pp = PatchParams {
                dry_run: true,
                ..Default::default()
            };
            a.patch(
                "probe",
                &pp,
                &Patch::Merge(json!({"metadata": {"labels": {"probe": "x"}}})),
            )
            .await
            .map(|_| ())
        }
        "delete" => a
            .delete(
                "probe",
                &DeleteParams {
                    dry_run: true,
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
        other => bail!("unknown verb {other}"),
    };
    match res {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("cannot ") => Ok(false),
        Err(kube::Error::Api(_)) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Whether an attempt was refused by authorization or admission (403, or an admission
/// policy's denial), not merely failed for another reason (a malformed request, say).
fn refused<T>(r: Result<T, kube::Error>, what: &str) -> bool {
    match r {
        Ok(_) => false,
        Err(kube::Error::Api(s)) => {
            let ok = s.code == 403 || s.message.contains("denied request");
            println!(
                "  {what}: {} {}",
                s.code,
                s.message.chars().take(160).collect::<String>()
            );
            ok
        }
        Err(e) => {
            println!("  {what}: {e}");
            false
        }
    }
}

struct Agency {
    name: String,
    namespaces: Vec<String>,
}

async fn ready_agency(hub: &Client, group: &str) -> Result<Agency> {
    let name = unique_short("iso");
    let ac: AgencyCloud = serde_json::from_value(agency_cloud(
        &name,
        2,
        "external",
        &[("prod", "2", "4Gi"), ("test", "1", "2Gi")],
        group,
    ))?;
    Api::<AgencyCloud>::all(hub.clone())
        .create(&PostParams::default(), &ac)
        .await?;
    wait_for(&format!("agency {name} Ready"), T, || async {
        let ac = Api::<AgencyCloud>::all(hub.clone()).get(&name).await?;
        Ok(ac
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            .then_some(()))
    })
    .await?;
    Ok(Agency {
        namespaces: vec![format!("{name}-prod"), format!("{name}-test")],
        name,
    })
}

/// A ConfigMap and a Secret named `probe` in every namespace, so that get/update/patch/
/// delete have a real target.
async fn probes(c: &Client, ns: &str) -> Result<()> {
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "probe"}, "data": {"k": "v"}}))?;
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "probe"}, "stringData": {"password": "probe-secret-value"}}),
    )?;
    let _ = Api::<ConfigMap>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await;
    let _ = Api::<Secret>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &s)
        .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agencies_cannot_reach_each_other_or_escalate() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member_n = 2;
    let member = client(member_n).await?;
    let group = unique("grp");
    create_test_cluster(&hub, &group, "external", 3, member_n, None).await?;
    let mut agencies = Vec::new();
    for _ in 0..3 {
        agencies.push(ready_agency(&hub, &group).await?);
    }
    for a in &agencies {
        for ns in &a.namespaces {
            wait_for(&format!("namespace {ns} on the member"), T, || async {
                Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(member.clone())
                    .get_opt(ns)
                    .await?
                    .map(|_| ()))
            })
            .await?;
            probes(&member, ns).await?;
        }
    }

    // The matrix.
    let mut jobs = Vec::new();
    for actor in &agencies {
        for role in [Role::Owner, Role::Viewer] {
            let group_name = match role {
                Role::Owner => format!("{}-owners", actor.name),
                Role::Viewer => format!("{}-viewers", actor.name),
            };
            let user = format!("{group_name}-member");
            for target in &agencies {
                let own = target.name == actor.name;
                for ns in &target.namespaces {
                    for (on_hub, resources) in [
                        (false, [&WORKLOADS[..], &GUARDRAILS[..], &GOVCLOUD[..]].concat()),
                        (true, [&WORKLOADS[..], &GUARDRAILS[..], &GOVCLOUD[..]].concat()),
                    ] {
                        for r in resources {
                            for verb in VERBS {
                                // govcloud objects live on the hub; the member has no such CRDs.
                                if !on_hub && r.0 == "govcloud.io" {
                                    continue;
                                }
                                let want = own && expected(on_hub, false, role, &r, verb);
                                jobs.push((
                                    user.clone(),
                                    group_name.clone(),
                                    role,
                                    own,
                                    on_hub,
                                    ns.clone(),
                                    r,
                                    verb,
                                    want,
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    let mut clients: BTreeMap<(String, bool), Client> = BTreeMap::new();
    for (user, group_name, _, _, on_hub, ..) in &jobs {
        if let std::collections::btree_map::Entry::Vacant(e) = clients.entry((user.clone(), *on_hub)) {
            let n = if *on_hub { 1 } else { member_n };
            e.insert(impersonating(n, user, &[group_name.as_str(), "system:authenticated"]).await?);
        }
    }
    let results = futures::stream::iter(jobs.iter().map(|j| {
        let c = clients.get(&(j.0.clone(), j.4)).cloned();
        async move {
            let Some(c) = c else {
                return (j, Err(anyhow::anyhow!("no client")));
            };
            (j, attempt(&c, &j.6, &j.5, j.7).await)
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let mut unexpected = Vec::new();
    let (mut cross, mut cross_refused, mut own, mut own_allowed, mut own_refused) = (0, 0, 0, 0, 0);
    for (j, r) in &results {
        let (user, _, role, is_own, on_hub, ns, res, verb, want) = j;
        match r {
            Err(e) => unexpected.push(format!("{user} {verb} {} in {ns} (hub: {on_hub}): {e:#}", res.3)),
            Ok(got) => {
                if *is_own {
                    own += 1;
                    if *got {
                        own_allowed += 1;
                    } else {
                        own_refused += 1;
                    }
                } else {
                    cross += 1;
                    if !got {
                        cross_refused += 1;
                    }
                }
                if got != want {
                    unexpected.push(format!(
                        "{user} ({role:?}) {verb} {} in {ns} on the {}: {} but expected {}",
                        res.3,
                        if *on_hub { "hub" } else { "member" },
                        if *got { "allowed" } else { "refused" },
                        if *want { "allowed" } else { "refused" }
                    ));
                }
            }
        }
    }
    println!(
        "isolation matrix: {} requests; other agencies: {cross} tried, {cross_refused} refused; own: {own} ({own_allowed} allowed, {own_refused} refused as the role says)",
        results.len()
    );

    // Escalation attempts by agency A's owner, in A's own namespace.
    let a = &agencies[0];
    let b = &agencies[1];
    let ns = &a.namespaces[0];
    let owner_group = format!("{}-owners", a.name);
    let owner_user = format!("{owner_group}-member");
    let groups = [owner_group.as_str(), "system:authenticated"];
    let on_member = impersonating(member_n, &owner_user, &groups).await?;
    let on_hub = impersonating(1, &owner_user, &groups).await?;
    let mut escalations: Vec<(String, bool)> = Vec::new();
    let rb = |role_kind: &str, role: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "escalate", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": owner_group}]})
    };
    let rb_res: Res = ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings");
    for (what, body) in [
        (
            "bind cluster-admin in its namespace",
            rb("ClusterRole", "cluster-admin"),
        ),
        ("bind admin in its namespace", rb("ClusterRole", "admin")),
        (
            "bind the owner role to another group",
            rb("ClusterRole", "govcloud-agency-owner"),
        ),
    ] {
        let obj: DynamicObject = serde_json::from_value(body)?;
        let r = refused(api(&on_member, &rb_res, ns).create(&dry(), &obj).await, what);
        escalations.push((what.to_string(), r));
    }
    let crb: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": unique("escalate")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": owner_group}]}))?;
    let crb_api: Api<DynamicObject> = Api::all_with(
        on_member.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
            "clusterrolebindings",
        ),
    );
    escalations.push((
        "create a ClusterRoleBinding to cluster-admin".into(),
        refused(crb_api.create(&dry(), &crb).await, "crb"),
    ));
    let pp = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    for (what, label) in [
        (
            "lower its namespace's security level label",
            json!({"govcloud.io/security-level": "1"}),
        ),
        (
            "switch off Pod Security enforcement",
            json!({"pod-security.kubernetes.io/enforce": "privileged"}),
        ),
        (
            "claim another agency's namespace",
            json!({"govcloud.io/agency": b.name}),
        ),
    ] {
        let r = refused(
            Api::<k8s_openapi::api::core::v1::Namespace>::all(on_member.clone())
                .patch(ns, &pp, &Patch::Merge(json!({"metadata": {"labels": label}})))
                .await,
            what,
        );
        escalations.push((what.to_string(), r));
    }
    for (what, res, name) in [
        (
            "delete the default-deny NetworkPolicy",
            GUARDRAILS[2],
            "govcloud-default-deny",
        ),
        ("delete the ResourceQuota", GUARDRAILS[0], "govcloud-quota"),
        ("delete the LimitRange", GUARDRAILS[1], "govcloud-defaults"),
        ("delete the owners' RoleBinding", GUARDRAILS[3], "govcloud-owners"),
    ] {
        let r = refused(
            api(&on_member, &res, ns)
                .delete(
                    name,
                    &DeleteParams {
                        dry_run: true,
                        ..Default::default()
                    },
                )
                .await,
            what,
        );
        escalations.push((what.to_string(), r));
    }
    let r = refused(
        api(&on_member, &GUARDRAILS[0], ns)
            .patch(
                "govcloud-quota",
                &pp,
                &Patch::Merge(json!({"spec": {"hard": {"requests.cpu": "1000"}}})),
            )
            .await,
        "quota",
    );
    escalations.push(("raise its own quota".into(), r));
    // A privileged pod: refused by Pod Security admission in the namespace.
    let pod: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root", "namespace": ns},
        "spec": {"hostPID": true, "containers": [{"name": "c", "image": "registry.gov.cn/busybox:1",
                 "securityContext": {"privileged": true}}]}}))?;
    escalations.push((
        "run a privileged pod with the host's PID namespace".into(),
        refused(api(&on_member, &WORKLOADS[0], ns).create(&dry(), &pod).await, "pod"),
    ));
    // Impersonating someone else.
    let sar_refused = {
        // Can A's owner impersonate users? (SelfSubjectAccessReview as A's owner.)
        let review: k8s_openapi::api::authorization::v1::SelfSubjectAccessReview = serde_json::from_value(json!({
            "spec": {"resourceAttributes": {"verb": "impersonate", "resource": "users", "name": format!("{}-owners-member", b.name)}}
        }))?;
        let answer = Api::<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview>::all(on_member.clone())
            .create(&PostParams::default(), &review)
            .await?;
        !answer.status.is_some_and(|s| s.allowed)
    };
    escalations.push(("impersonate another agency's owner".into(), sar_refused));
    // On the hub: a HostedSystem or BackupPolicy in another agency's namespace, the tenancy
    // approval of its own request, the operator's Secrets.
    let hs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
        "metadata": {"name": "intruder", "namespace": b.namespaces[0]},
        "spec": {"securityLevel": 2, "dataClassification": "general",
                 "components": [{"name": "web", "image": "registry.gov.cn/a:1"}]}}))?;
    escalations.push((
        "deploy a system into another agency's namespace".into(),
        refused(
            api(&on_hub, &GOVCLOUD[0], &b.namespaces[0]).create(&dry(), &hs).await,
            "hs",
        ),
    ));
    // As a tenancy requester (allowed to create requests in a requests namespace), with a
    // decision approving itself: the hub's approval admission policy refuses it.
    let requests_ns = unique("requests");
    ensure_namespace(&hub, &requests_ns).await?;
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "requesters", "namespace": requests_ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "govcloud-tenancy-requester"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": owner_group}]
    }))?;
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(hub.clone(), &requests_ns)
        .create(&PostParams::default(), &binding)
        .await?;
    let tr: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "TenancyRequest",
        "metadata": {"name": unique_short("self"), "namespace": requests_ns},
        "spec": {"cloud": agency_cloud(&unique_short("self"), 2, "external", &[("prod", "1", "1Gi")], "x")["spec"],
                 "justification": "I would like more quota please.",
                 "decision": {"action": "Approve", "decidedBy": owner_user, "reason": "Approving myself."}}}))?;
    let tr_res: Res = ("govcloud.io", "v1alpha1", "TenancyRequest", "tenancyrequests");
    escalations.push((
        "approve its own tenancy request".into(),
        refused(api(&on_hub, &tr_res, &requests_ns).create(&dry(), &tr).await, "tr"),
    ));
    let secret_res: Res = ("", "v1", "Secret", "secrets");
    let secrets_refused = !attempt(&on_hub, &secret_res, OPERATOR_NAMESPACE, "list").await?
        && !attempt(&on_hub, &secret_res, OPERATOR_NAMESPACE, "get").await?;
    escalations.push(("read the member kubeconfig Secrets".into(), secrets_refused));
    let not_refused: Vec<&String> = escalations.iter().filter(|(_, r)| !r).map(|(w, _)| w).collect();
    for (what, refused) in &escalations {
        println!("escalation: {what}: {}", if *refused { "refused" } else { "ALLOWED" });
    }

    // Who may read the member kubeconfig Secrets: only the operator among every identity the
    // product creates (agency owners and viewers, tenancy requesters and approvers, the
    // chart's user roles, any authenticated user, workloads' ServiceAccounts).
    let mut readers = Vec::new();
    let approver = unique("approver");
    let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": approver, "labels": {"govcloud.io/test": "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "govcloud-tenancy-approver"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": approver}]
    }))?;
    let crbs = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(hub.clone());
    crbs.create(&PostParams::default(), &crb).await?;
    let identities: Vec<(String, Vec<String>)> = vec![
        (format!("{}-owners-member", a.name), vec![format!("{}-owners", a.name)]),
        (
            format!("{}-viewers-member", a.name),
            vec![format!("{}-viewers", a.name)],
        ),
        (approver.clone(), vec![]),
        ("anyone".into(), vec![]),
        (
            format!("system:serviceaccount:{ns}:default"),
            vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")],
        ),
    ];
    for (user, mut gs) in identities {
        gs.push("system:authenticated".into());
        let refs: Vec<&str> = gs.iter().map(String::as_str).collect();
        let c = impersonating(1, &user, &refs).await?;
        for verb in ["get", "list", "watch"] {
            if attempt(&c, &secret_res, OPERATOR_NAMESPACE, verb).await? {
                readers.push(format!("{user} may {verb} secrets in {OPERATOR_NAMESPACE}"));
            }
        }
    }
    let _ = crbs.delete(&approver, &Default::default()).await;
    let operator_sa = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
    let op = impersonating(
        1,
        &operator_sa,
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{OPERATOR_NAMESPACE}"),
            "system:authenticated",
        ],
    )
    .await?;
    let operator_reads = attempt(&op, &secret_res, OPERATOR_NAMESPACE, "get").await?;

    // The metrics endpoint exposes no secret: none of the Secrets' values the operator reads
    // (kubeconfigs with client keys, object-store keys, the probe Secrets) appear in it.
    let (code, metrics) = operator_get("/metrics").await?;
    let mut leaked = Vec::new();
    for s in Api::<Secret>::namespaced(hub.clone(), OPERATOR_NAMESPACE)
        .list(&Default::default())
        .await?
        .items
    {
        for (k, v) in s.data.unwrap_or_default() {
            let text = String::from_utf8_lossy(&v.0).to_string();
            for line in text.lines().map(str::trim).filter(|l| l.len() >= 16) {
                let value = line.rsplit(": ").next().unwrap_or(line);
                if value.len() >= 16 && metrics.contains(value) {
                    leaked.push(format!("{}/{k}", s.metadata.name.clone().unwrap_or_default()));
                }
            }
        }
    }
    for needle in [
        "probe-secret-value",
        S3_SECRET_KEY,
        "BEGIN",
        "PRIVATE KEY",
        "token:",
        "password",
    ] {
        if metrics.contains(needle) {
            leaked.push(needle.to_string());
        }
    }

    std::fs::write(
        figures_dir().join("isolation.json"),
        serde_json::to_string_pretty(&json!({
            "agencies": agencies.len(), "requests": results.len(),
            "cross_agency_tried": cross, "cross_agency_refused": cross_refused,
            "own_tried": own, "own_allowed": own_allowed, "own_refused": own_refused,
            "unexpected": unexpected.len(),
            "escalations_tried": escalations.len(),
            "escalations_refused": escalations.iter().filter(|(_, r)| *r).count(),
            "escalations": escalations.iter().map(|(w, r)| json!({"attempt": w, "refused": r})).collect::<Vec<_>>(),
            "secret_readers_besides_operator": readers.len(),
            "metrics_leaks": leaked.len(),
        }))?,
    )?;
    for a in &agencies {
        let _ = Api::<AgencyCloud>::all(hub.clone())
            .delete(&a.name, &Default::default())
            .await;
    }
    let mut problems = Vec::new();
    if !unexpected.is_empty() {
        problems.push(format!(
            "{} unexpected answers:\n{}",
            unexpected.len(),
            unexpected.join("\n")
        ));
    }
    if cross != cross_refused {
        problems.push(format!(
            "{} cross-agency requests were let through",
            cross - cross_refused
        ));
    }
    if !not_refused.is_empty() {
        problems.push(format!("escalations not refused: {not_refused:?}"));
    }
    if !readers.is_empty() {
        problems.push(format!("others may read the member kubeconfigs: {readers:?}"));
    }
    if !operator_reads {
        problems.push("the operator itself cannot read the kubeconfig Secrets".into());
    }
    if code != 200 || !leaked.is_empty() {
        problems.push(format!("metrics ({code}) leak: {leaked:?}"));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// Exposure happens only through the operator: an agency owner on the member can neither
/// write an Ingress (any class, controller annotations such as configuration snippets) nor
/// create or change a Service into one reachable from outside the cluster (LoadBalancer,
/// NodePort, externalIPs) or one forwarding to any host (ExternalName). In-cluster Services
/// (ClusterIP, headless) stay allowed. The refusals name the field and say what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_cannot_expose_workloads_past_the_operator() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member_n = 2;
    let group = unique("grp");
    create_test_cluster(&hub, &group, "external", 3, member_n, None).await?;
    let a = ready_agency(&hub, &group).await?;
    let ns = &a.namespaces[0];
    let owner_group = format!("{}-owners", a.name);
    let owner = impersonating(
        member_n,
        &format!("{owner_group}-member"),
        &[owner_group.as_str(), "system:authenticated"],
    )
    .await?;
    let mut problems = Vec::new();

    // An Ingress of its own, on the internet class, with a configuration snippet.
    let ingress: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "direct", "namespace": ns,
                     "annotations": {"nginx.ingress.kubernetes.io/configuration-snippet": "proxy_pass http://169.254.169.254/;"}},
        "spec": {"ingressClassName": "govcloud-internet", "rules": [{"host": "direct.example.gov.cn", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    }))?;
    let ing_res: Res = ("networking.k8s.io", "v1", "Ingress", "ingresses");
    match api(&owner, &ing_res, ns).create(&dry(), &ingress).await {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("cannot create resource") => {
            println!("  ingress: refused by RBAC: {}", s.message);
        }
        other => problems.push(format!(
            "an owner's own Ingress: expected a refusal by RBAC, got {other:?}"
        )),
    }

    // Services: each refused by the admission policy, naming the field.
    let svc_res: Res = ("", "v1", "Service", "services");
    let service = |name: &str, spec: serde_json::Value| -> Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec
        }))?)
    };
    let port = json!([{"port": 80, "targetPort": 8080}]);
    for (what, spec, field) in [
        (
            "LoadBalancer",
            json!({"type": "LoadBalancer", "ports": port}),
            "spec.type: LoadBalancer",
        ),
        (
            "NodePort",
            json!({"type": "NodePort", "ports": port}),
            "spec.type: NodePort",
        ),
        (
            "ExternalName (server-side request forgery)",
            json!({"type": "ExternalName", "externalName": "metadata.internal.example"}),
            "spec.type: ExternalName",
        ),
        (
            "externalIPs",
            json!({"type": "ClusterIP", "ports": port, "externalIPs": ["203.0.113.10"]}),
            "spec.externalIPs",
        ),
    ] {
        match api(&owner, &svc_res, ns)
            .create(&dry(), &service("direct", spec)?)
            .await
        {
            Err(kube::Error::Api(s))
                if s.message.contains("govcloud-service-exposure")
                    && s.message.contains(field)
                    && s.message.contains("only through the operator") =>
            {
                println!("  service {what}: {} {}", s.code, s.message);
            }
            other => problems.push(format!(
                "a Service {what}: expected the admission policy's refusal naming {field}, got {other:?}"
            )),
        }
    }
    // In-cluster Services of its own workloads stay allowed; one cannot be turned into a
    // NodePort afterwards either.
    let plain = service("in-cluster", json!({"ports": port, "selector": {"app": "web"}}))?;
    let svcs = api(&owner, &svc_res, ns);
    if let Err(e) = svcs.create(&PostParams::default(), &plain).await {
        problems.push(format!("an owner's ClusterIP Service was refused: {e}"));
    } else {
        let pp = PatchParams {
            dry_run: true,
            ..Default::default()
        };
        match svcs
            .patch("in-cluster", &pp, &Patch::Merge(json!({"spec": {"type": "NodePort"}})))
            .await
        {
            Err(kube::Error::Api(s)) if s.message.contains("spec.type: NodePort") => {
                println!("  service changed to NodePort: {} {}", s.code, s.message);
            }
            other => problems.push(format!(
                "changing a ClusterIP Service to NodePort: expected a refusal, got {other:?}"
            )),
        }
        let headless = service(
            "headless",
            json!({"clusterIP": "None", "ports": port, "selector": {"app": "db"}}),
        )?;
        if let Err(e) = svcs.create(&dry(), &headless).await {
            problems.push(format!("an owner's headless Service was refused: {e}"));
        }
        let _ = svcs.delete("in-cluster", &DeleteParams::default()).await;
    }
    let _ = Api::<AgencyCloud>::all(hub.clone())
        .delete(&a.name, &Default::default())
        .await;
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}
