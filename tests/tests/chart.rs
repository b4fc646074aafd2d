//! The Helm chart: lint, render, values schema, CRDs identical to crds/, the operator's
//! Deployment hardened, and the user-facing roles working on the local control plane
//! (checked by impersonated SelfSubjectAccessReviews against the installed chart).
//! The least-privilege proof of the operator's own ClusterRole is hack/check-rbac.py,
//! which hack/test.sh runs after the whole suite ran under the chart's ServiceAccount.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, ensure};
use govcloud_tests::*;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde::Deserialize as _;
use serde_json::{Value, json};

/// Runs `hack/chart.sh ARGS`, returning (success, stdout, stderr).
fn chart(args: &[&str]) -> Result<(bool, String, String)> {
    chart_with(args, &[])
}

/// Runs `hack/chart.sh ARGS` with extra environment (CHART_DIR for another chart).
fn chart_with(args: &[&str], env: &[(&str, std::ffi::OsString)]) -> Result<(bool, String, String)> {
    let out = Command::new("bash")
        .arg(repo_root().join("hack/chart.sh"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .context("running hack/chart.sh")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn render(extra: &[&str]) -> Result<Vec<Value>> {
    let mut args = vec!["template"];
    args.extend_from_slice(extra);
    let (ok, out, err) = chart(&args)?;
    ensure!(ok, "helm template failed: {err}");
    documents(&out)
}

/// The YAML documents of a rendered chart.
fn documents(out: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(out) {
        let v = Value::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| anyhow!("the chart renders no {kind} {name}"))
}

#[test]
fn chart_lints_and_refuses_bad_values_naming_the_field() -> Result<()> {
    let (ok, out, err) = chart(&["lint"])?;
    ensure!(ok, "helm lint --strict failed:\n{out}\n{err}");
    for (set, field) in [
        ("concurrency=0", "/concurrency"),
        ("replicaCont=2", "replicaCont"),
        ("image.digest=latest", "/image/digest"),
        ("logFormat=xml", "/logFormat"),
        (
            "networkPolicy.apiServerPorts[0]=70000",
            "/networkPolicy/apiServerPorts/0",
        ),
        (
            "metrics.serviceMonitor.interval=often",
            "/metrics/serviceMonitor/interval",
        ),
    ] {
        let (ok, _, err) = chart(&["template", "--set", set])?;
        ensure!(!ok, "helm template accepted --set {set}");
        ensure!(
            err.contains(field),
            "the refusal of --set {set} does not name {field}: {err}"
        );
    }
    Ok(())
}

#[test]
fn chart_renders_a_hardened_least_privilege_operator() -> Result<()> {
    let docs = render(&[])?;
    let dep = find(&docs, "Deployment", "govcloud-operator")?;
    let pod = &dep["spec"]["template"]["spec"];
    ensure!(
        pod["securityContext"]["runAsNonRoot"] == true,
        "pod must run as non-root"
    );
    ensure!(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
    ensure!(pod["serviceAccountName"] == "govcloud-operator");
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    ensure!(sc["readOnlyRootFilesystem"] == true, "read-only root filesystem");
    ensure!(sc["allowPrivilegeEscalation"] == false);
    ensure!(sc["capabilities"]["drop"] == json!(["ALL"]), "capabilities dropped");
    ensure!(c["livenessProbe"]["httpGet"]["path"] == "/healthz");
    ensure!(c["readinessProbe"]["httpGet"]["path"] == "/readyz");
    ensure!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    let args: Vec<&str> = c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .collect();
    ensure!(
        args.contains(&"--leader-elect"),
        "two replicas need leader election: {args:?}"
    );
    ensure!(args.contains(&"--namespace=govcloud-system"));
    // Single replica without leader election when asked.
    let one = render(&["--set", "replicaCount=1", "--set", "leaderElection.enabled=false"])?;
    let args1 = &find(&one, "Deployment", "govcloud-operator")?["spec"]["template"]["spec"]["containers"][0]["args"];
    ensure!(!args1.to_string().contains("--leader-elect"));

    // Operator's RBAC: bound to its ServiceAccount, no wildcards anywhere.
    for (kind, name) in [("ClusterRole", "govcloud-operator"), ("Role", "govcloud-operator")] {
        let role = find(&docs, kind, name)?;
        for rule in role["rules"].as_array().into_iter().flatten() {
            for key in ["apiGroups", "resources", "verbs", "resourceNames"] {
                let values = rule[key].as_array().cloned().unwrap_or_default();
                ensure!(
                    !values.contains(&json!("*")),
                    "{kind} {name} has a wildcard in {key}: {rule}"
                );
            }
        }
    }
    let crb = find(&docs, "ClusterRoleBinding", "govcloud-operator")?;
    ensure!(crb["subjects"][0]["name"] == "govcloud-operator" && crb["subjects"][0]["namespace"] == "govcloud-system");
    find(&docs, "Service", "govcloud-operator-metrics")?;
    let np = find(&docs, "NetworkPolicy", "govcloud-operator")?;
    ensure!(np["spec"]["policyTypes"] == json!(["Ingress", "Egress"]));
    // Optional parts.
    ensure!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ServiceMonitor" || d["kind"] == "PrometheusRule")
    );
    let with = render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
    ])?;
    find(&with, "ServiceMonitor", "govcloud-operator")?;
    find(&with, "PrometheusRule", "govcloud-operator-alerts")?;
    let without = render(&["--set", "networkPolicy.enabled=false"])?;
    ensure!(!without.iter().any(|d| d["kind"] == "NetworkPolicy"));
    Ok(())
}

/// /metrics names every cluster, agency and namespace: by default only the monitoring
/// namespace may reach the port (issue: it was open to any pod).
#[test]
fn chart_metrics_port_is_closed_to_all_but_monitoring_by_default() -> Result<()> {
    let docs = render(&[])?;
    let np = find(&docs, "NetworkPolicy", "govcloud-operator")?;
    let ingress = np["spec"]["ingress"].as_array().cloned().unwrap_or_default();
    ensure!(ingress.len() == 1, "one ingress rule (the metrics port): {ingress:?}");
    let from = &ingress[0]["from"];
    ensure!(
        *from == json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]),
        "by default only the namespace monitoring may scrape /metrics, got from: {from}"
    );
    // Other scrapers are named in values; an empty list is the explicit choice to open it.
    let other = render(&[
        "--set",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=observability",
    ])?;
    let from = &find(&other, "NetworkPolicy", "govcloud-operator")?["spec"]["ingress"][0]["from"];
    ensure!(
        from[0]["namespaceSelector"]["matchLabels"]["team"] == "observability",
        "{from}"
    );
    Ok(())
}

/// The member manifest: the operator's identity on a member may not read Secrets outside
/// Velero's namespace, holds no `escalate`, writes no ClusterRole, and binds only the two
/// agency roles, which the manifest installs exactly as the operator builds them.
#[test]
fn chart_member_rbac_is_narrow_and_installs_the_agency_roles() -> Result<()> {
    let docs = render(&[
        "--set",
        "rbac.hubIsMember=true",
        "--show-only",
        "templates/member-rbac.yaml",
    ])?;
    let role = find(&docs, "ClusterRole", "govcloud-operator-member")?;
    let mut problems = Vec::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        let list = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let (groups, resources, verbs, names) = (
            list("apiGroups"),
            list("resources"),
            list("verbs"),
            list("resourceNames"),
        );
        for v in [&groups, &resources, &verbs, &names] {
            if v.iter().any(|x| x == "*") {
                problems.push(format!("wildcard: {rule}"));
            }
        }
        if resources.iter().any(|r| r == "secrets") {
            problems.push(format!("Secrets cluster-wide: {rule}"));
        }
        for v in ["escalate", "impersonate"] {
            if verbs.iter().any(|x| x == v) {
                problems.push(format!("{v}: {rule}"));
            }
        }
        let rbac_write = verbs
            .iter()
            .any(|v| !["get", "list", "watch", "bind"].contains(&v.as_str()));
        if resources
            .iter()
            .any(|r| r == "clusterroles" || r == "clusterrolebindings")
            && rbac_write
        {
            problems.push(format!("writes ClusterRoles or ClusterRoleBindings: {rule}"));
        }
        if verbs.iter().any(|v| v == "bind")
            && names
                != [
                    "govcloud-agency-owner".to_string(),
                    "govcloud-agency-viewer".to_string(),
                ]
        {
            problems.push(format!("bind beyond the two agency roles: {rule}"));
        }
    }
    // Secrets only in Velero's namespace (the locations' credentials).
    let named = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == "govcloud-operator-member")
    };
    match (named("Role"), named("RoleBinding")) {
        (Some(role), Some(rb)) => {
            if role["metadata"]["namespace"] != "velero" || rb["metadata"]["namespace"] != "velero" {
                problems.push(format!("the Role for backups is not in namespace velero: {role}"));
            }
            if rb["subjects"][0]["name"] != "govcloud-operator" {
                problems.push(format!("the Role for backups is bound to {}", rb["subjects"]));
            }
        }
        _ => problems.push("no Role (and RoleBinding) govcloud-operator-member in namespace velero".into()),
    }
    let without = render(&[
        "--set",
        "rbac.hubIsMember=true",
        "--set",
        "rbac.memberVeleroNamespace=",
        "--show-only",
        "templates/member-rbac.yaml",
    ])?;
    ensure!(
        !without.iter().any(|d| d["kind"] == "Role"),
        "no Velero Role without its namespace"
    );
    // The agency roles, exactly as the operator builds them (label included: it watches them by it).
    for built in govcloud_core::agency::member_roles() {
        let Ok(rendered) = find(&docs, "ClusterRole", &built.name) else {
            problems.push(format!(
                "the member manifest does not install ClusterRole {}",
                built.name
            ));
            continue;
        };
        if rendered["rules"] != built.body["rules"] {
            problems.push(format!(
                "ClusterRole {} differs from govcloud_core::agency::member_roles(); update templates/member-rbac.yaml:\n rendered {}\n built    {}",
                built.name, rendered["rules"], built.body["rules"]
            ));
        }
        if rendered["metadata"]["labels"] != built.body["metadata"]["labels"] {
            problems.push(format!(
                "ClusterRole {} labels: {}",
                built.name, rendered["metadata"]["labels"]
            ));
        }
    }
    ensure!(problems.is_empty(), "member RBAC:\n{}", problems.join("\n"));
    Ok(())
}

#[test]
fn chart_crds_are_the_generated_ones() -> Result<()> {
    let generated = repo_root().join("crds");
    let chart = repo_root().join("charts/govcloud-operator/crds");
    let mut names: Vec<String> = std::fs::read_dir(&generated)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    let mut in_chart: Vec<String> = std::fs::read_dir(&chart)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    in_chart.sort();
    let fix =
        "run `cargo run -p govcloud-operator -- crd --out-dir crds && cp crds/*.yaml charts/govcloud-operator/crds/`";
    ensure!(
        names == in_chart,
        "chart CRDs {in_chart:?} differ from crds/ {names:?}; {fix}"
    );
    for n in &names {
        let a = std::fs::read(generated.join(n))?;
        let b = std::fs::read(chart.join(n))?;
        ensure!(a == b, "charts/govcloud-operator/crds/{n} differs from crds/{n}; {fix}");
    }
    Ok(())
}

async fn can(
    client: &Client,
    verb: &str,
    resource: &str,
    subresource: Option<&str>,
    namespace: Option<&str>,
) -> Result<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(
                    if matches!(resource, "secrets" | "pods" | "namespaces") {
                        ""
                    } else {
                        "govcloud.io"
                    }
                    .into(),
                ),
                resource: Some(resource.into()),
                subresource: subresource.map(Into::into),
                verb: Some(verb.into()),
                namespace: namespace.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// (who, client, verb, resource, subresource, namespace, expected answer)
type Case<'a> = (
    &'a str,
    &'a Client,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    bool,
);

#[tokio::test]
async fn chart_user_roles_grant_what_they_say() -> Result<()> {
    init_crypto();
    // The operator installs the approval roles the chart's aggregated roles pick up.
    operator()?;
    install_chart()?;
    let hub = client(1).await?;
    let admin_user = unique("platform-admin");
    let approver_user = unique("approver");
    let ns = unique("chart-roles");
    ensure_namespace(&hub, &ns).await?;
    let crbs: Api<ClusterRoleBinding> = Api::all(hub.clone());
    for (user, role) in [
        (&admin_user, "govcloud:platform-admin"),
        (&approver_user, "govcloud:tenancy-approver"),
    ] {
        let crb: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("test-{user}"), "labels": {"govcloud.io/test": "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
        }))?;
        crbs.create(&PostParams::default(), &crb).await?;
    }
    let rbs: Api<RoleBinding> = Api::namespaced(hub.clone(), &ns);
    for (user, role) in [
        ("owner", "govcloud:agency-owner"),
        ("viewer", "govcloud:agency-viewer"),
        ("k8s-view", "view"),
        ("k8s-edit", "edit"),
    ] {
        let rb: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("{ns}-{user}")}]
        }))?;
        rbs.create(&PostParams::default(), &rb).await?;
    }

    let admin = impersonating(1, &admin_user, &[]).await?;
    let approver = impersonating(1, &approver_user, &[]).await?;
    let owner = impersonating(1, &format!("{ns}-owner"), &[]).await?;
    let viewer = impersonating(1, &format!("{ns}-viewer"), &[]).await?;
    let k8s_view = impersonating(1, &format!("{ns}-k8s-view"), &[]).await?;
    let k8s_edit = impersonating(1, &format!("{ns}-k8s-edit"), &[]).await?;
    let n = Some(ns.as_str());
    // (who, verb, resource, subresource, namespace, expected)
    let cases: Vec<Case> = vec![
        (
            "platform admin",
            &admin,
            "create",
            "datacenterclusters",
            None,
            None,
            true,
        ),
        ("platform admin", &admin, "delete", "backuplocations", None, None, true),
        (
            "platform admin",
            &admin,
            "create",
            "tenancyrequests",
            Some("approve"),
            n,
            true,
        ),
        (
            "platform admin",
            &admin,
            "create",
            "hostedsystems",
            Some("approve-exposure"),
            n,
            true,
        ),
        (
            "platform admin",
            &admin,
            "get",
            "secrets",
            None,
            Some("govcloud-system"),
            false,
        ),
        (
            "platform admin",
            &admin,
            "update",
            "agencyclouds",
            Some("status"),
            None,
            false,
        ),
        (
            "tenancy approver",
            &approver,
            "create",
            "tenancyrequests",
            Some("approve"),
            n,
            true,
        ),
        ("tenancy approver", &approver, "patch", "tenancyrequests", None, n, true),
        (
            "tenancy approver",
            &approver,
            "delete",
            "datacenterclusters",
            None,
            None,
            false,
        ),
        (
            "tenancy approver",
            &approver,
            "create",
            "hostedsystems",
            Some("approve-exposure"),
            n,
            false,
        ),
        ("agency owner", &owner, "create", "hostedsystems", None, n, true),
        ("agency owner", &owner, "delete", "backuppolicies", None, n, true),
        (
            "agency owner",
            &owner,
            "create",
            "tenancyrequests",
            Some("approve"),
            n,
            false,
        ),
        (
            "agency owner",
            &owner,
            "create",
            "hostedsystems",
            None,
            Some("default"),
            false,
        ),
        (
            "agency owner",
            &owner,
            "update",
            "hostedsystems",
            Some("status"),
            n,
            false,
        ),
        ("agency viewer", &viewer, "list", "hostedsystems", None, n, true),
        ("agency viewer", &viewer, "create", "hostedsystems", None, n, false),
        ("built-in view", &k8s_view, "list", "backuppolicies", None, n, true),
        ("built-in view", &k8s_view, "create", "backuppolicies", None, n, false),
        ("built-in edit", &k8s_edit, "create", "hostedsystems", None, n, true),
    ];
    // Aggregation is done by the controller-manager: wait until it has filled the roles.
    wait_for("aggregated roles filled", Duration::from_secs(60), || async {
        Ok((can(&admin, "create", "tenancyrequests", Some("approve"), n).await?
            && can(&approver, "create", "tenancyrequests", Some("approve"), n).await?
            && can(&k8s_view, "list", "backuppolicies", None, n).await?
            && can(&k8s_edit, "create", "hostedsystems", None, n).await?)
            .then_some(()))
    })
    .await?;
    let mut wrong = Vec::new();
    for (who, c, verb, resource, sub, ns, expected) in &cases {
        let got = can(c, verb, resource, *sub, *ns).await?;
        if got != *expected {
            wrong.push(format!(
                "{who}: {verb} {resource}{} in {}: expected {expected}, got {got}",
                sub.map(|s| format!("/{s}")).unwrap_or_default(),
                ns.unwrap_or("(cluster)")
            ));
        }
    }
    for user in [&admin_user, &approver_user] {
        let _ = crbs.delete(&format!("test-{user}"), &DeleteParams::default()).await;
    }
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(hub.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    ensure!(wrong.is_empty(), "roles grant the wrong things:\n{}", wrong.join("\n"));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What the best charts have: a disruption budget, spread replicas, overridable security
// contexts, a described and strict values schema, Artifact Hub metadata, the settings
// kube-prometheus-stack users expect, a `helm test`, and NOTES naming only what exists.
// ---------------------------------------------------------------------------------------

fn deployment(docs: &[Value]) -> Result<&Value> {
    find(docs, "Deployment", "govcloud-operator")
}

/// True when every label of `selector` (a matchLabels map) is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels[k] == *v))
}

/// `helm template` that must fail; returns its error output.
fn refused(sets: &[&str]) -> Result<String> {
    let mut args = vec!["template"];
    for s in sets {
        args.extend_from_slice(&["--set", s]);
    }
    let (ok, _, err) = chart(&args)?;
    ensure!(!ok, "helm template accepted --set {sets:?}");
    Ok(err)
}

/// What the Pod Security Standard "restricted" refuses in a pod spec (its checks of
/// host namespaces, privileged, capabilities, hostPath and hostPort, privilege escalation,
/// non-root, seccomp and volume types).
fn restricted_violations(what: &str, pod: &Value) -> Vec<String> {
    let mut v = Vec::new();
    for k in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[k] == true {
            v.push(format!("{what}: {k}"));
        }
    }
    const VOLUMES: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for vol in pod["volumes"].as_array().into_iter().flatten() {
        let ok = vol
            .as_object()
            .is_some_and(|m| m.keys().all(|k| k == "name" || VOLUMES.contains(&k.as_str())));
        if !ok {
            v.push(format!("{what}: volume type not allowed: {vol}"));
        }
    }
    let psc = &pod["securityContext"];
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().into_iter().flatten())
        .collect();
    if containers.is_empty() {
        v.push(format!("{what}: no containers"));
    }
    for c in containers {
        let name = format!("{what}/{}", c["name"].as_str().unwrap_or("?"));
        let sc = &c["securityContext"];
        if sc["privileged"] == true {
            v.push(format!("{name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"] != false {
            v.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let drop = sc["capabilities"]["drop"].as_array().cloned().unwrap_or_default();
        if !drop.contains(&json!("ALL")) {
            v.push(format!("{name}: capabilities do not drop ALL"));
        }
        for add in sc["capabilities"]["add"].as_array().into_iter().flatten() {
            if add != "NET_BIND_SERVICE" {
                v.push(format!("{name}: adds capability {add}"));
            }
        }
        let non_root = if sc["runAsNonRoot"].is_boolean() {
            sc["runAsNonRoot"] == true
        } else {
            psc["runAsNonRoot"] == true
        };
        if !non_root {
            v.push(format!("{name}: runAsNonRoot is not true"));
        }
        if sc["runAsUser"] == 0 || (sc["runAsUser"].is_null() && psc["runAsUser"] == 0) {
            v.push(format!("{name}: runs as UID 0"));
        }
        let seccomp = if sc["seccompProfile"]["type"].is_string() {
            &sc["seccompProfile"]["type"]
        } else {
            &psc["seccompProfile"]["type"]
        };
        if *seccomp != "RuntimeDefault" && *seccomp != "Localhost" {
            v.push(format!(
                "{name}: seccompProfile is {seccomp}, not RuntimeDefault or Localhost"
            ));
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["hostPort"].as_u64().is_some_and(|h| h != 0) {
                v.push(format!("{name}: hostPort {}", p["hostPort"]));
            }
        }
    }
    v
}

/// The PodDisruptionBudget keeps one operator through drains with 2 replicas, and is not
/// rendered for one (it would block every drain of its node).
#[test]
fn chart_pdb_keeps_an_operator_through_voluntary_disruptions() -> Result<()> {
    let docs = render(&[])?;
    let dep = deployment(&docs)?;
    let pdb = find(&docs, "PodDisruptionBudget", "govcloud-operator")?;
    ensure!(pdb["apiVersion"] == "policy/v1", "{}", pdb["apiVersion"]);
    ensure!(pdb["metadata"]["namespace"] == "govcloud-system");
    let spec = &pdb["spec"];
    ensure!(spec["minAvailable"] == 1, "minAvailable: {}", spec["minAvailable"]);
    ensure!(
        spec.get("maxUnavailable").is_none(),
        "both minAvailable and maxUnavailable: {spec}"
    );
    ensure!(
        spec["selector"] == dep["spec"]["selector"],
        "the budget selects {} but the Deployment's pods are {}",
        spec["selector"],
        dep["spec"]["selector"]
    );
    ensure!(selects(
        &spec["selector"]["matchLabels"],
        &dep["spec"]["template"]["metadata"]["labels"]
    ));
    ensure!(
        spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow",
        "a crash-looping pod must not block a drain: {}",
        spec["unhealthyPodEvictionPolicy"]
    );
    for sets in [
        &["replicaCount=1"][..],
        &["replicaCount=0"],
        &["podDisruptionBudget.enabled=false"],
    ] {
        let mut args = Vec::new();
        for s in sets {
            args.extend_from_slice(&["--set", *s]);
        }
        let d = render(&args)?;
        ensure!(
            !d.iter().any(|x| x["kind"] == "PodDisruptionBudget"),
            "a PodDisruptionBudget with --set {sets:?}"
        );
    }
    let max = render(&["--set", "podDisruptionBudget.maxUnavailable=1"])?;
    let spec = &find(&max, "PodDisruptionBudget", "govcloud-operator")?["spec"];
    ensure!(
        spec["maxUnavailable"] == 1 && spec.get("minAvailable").is_none(),
        "maxUnavailable replaces minAvailable: {spec}"
    );
    let pct = render(&[
        "--set",
        "replicaCount=4",
        "--set",
        "podDisruptionBudget.minAvailable=50%",
    ])?;
    let spec = &find(&pct, "PodDisruptionBudget", "govcloud-operator")?["spec"];
    ensure!(spec["minAvailable"] == "50%", "{spec}");
    let err = refused(&["podDisruptionBudget.minAvailable=half"])?;
    ensure!(err.contains("/podDisruptionBudget/minAvailable"), "{err}");
    Ok(())
}

/// The two replicas prefer different nodes (soft: a one-node cluster still runs both);
/// `affinity` replaces that entirely; topology spread constraints get the pods' labels.
#[test]
fn chart_replicas_prefer_different_nodes_unless_told_otherwise() -> Result<()> {
    let docs = render(&[])?;
    let dep = deployment(&docs)?;
    let pod = &dep["spec"]["template"]["spec"];
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    let anti = &pod["affinity"]["podAntiAffinity"];
    ensure!(
        anti.get("requiredDuringSchedulingIgnoredDuringExecution").is_none(),
        "hard anti-affinity would leave the second replica (and a rolling update) pending on a one-node cluster: {anti}"
    );
    let preferred = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(preferred.len() == 1, "one preferred anti-affinity term: {anti}");
    let term = &preferred[0]["podAffinityTerm"];
    ensure!(term["topologyKey"] == "kubernetes.io/hostname", "{term}");
    ensure!(preferred[0]["weight"] == 100, "{}", preferred[0]);
    ensure!(
        term["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"],
        "the term must match the operator's own pods: {term}"
    );
    ensure!(selects(&term["labelSelector"]["matchLabels"], pod_labels));
    ensure!(
        pod.get("topologySpreadConstraints").is_none(),
        "no spread constraints by default: {}",
        pod["topologySpreadConstraints"]
    );

    let node_affinity = json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "govcloud.io/node-kind", "operator": "In", "values": ["real"]}]}]}});
    let own = render(&[
        "--set-json",
        &format!("affinity={}", json!({"nodeAffinity": node_affinity})),
    ])?;
    let aff = &deployment(&own)?["spec"]["template"]["spec"]["affinity"];
    ensure!(
        *aff == json!({"nodeAffinity": node_affinity}),
        "affinity replaces the default entirely: {aff}"
    );
    let none = render(&["--set", "podAntiAffinityPreset=none"])?;
    let pod = &deployment(&none)?["spec"]["template"]["spec"];
    ensure!(pod.get("affinity").is_none(), "{}", pod["affinity"]);
    let err = refused(&["podAntiAffinityPreset=hard"])?;
    ensure!(err.contains("/podAntiAffinityPreset"), "{err}");

    let spread = render(&[
        "--set-json",
        r#"topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"ScheduleAnyway"},{"maxSkew":2,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"team":"platform"}}}]"#,
    ])?;
    let dep = deployment(&spread)?;
    let tsc = &dep["spec"]["template"]["spec"]["topologySpreadConstraints"];
    ensure!(
        tsc[0]
            == json!({"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                       "labelSelector": {"matchLabels": dep["spec"]["selector"]["matchLabels"]}}),
        "a constraint without labelSelector gets the pods' labels: {}",
        tsc[0]
    );
    ensure!(
        tsc[1]["labelSelector"] == json!({"matchLabels": {"team": "platform"}}) && tsc[1]["maxSkew"] == 2,
        "a given labelSelector is kept: {}",
        tsc[1]
    );
    Ok(())
}

/// The security contexts are values whose defaults are the hardened ones; a value changes
/// one field and keeps the others.
#[test]
fn chart_security_contexts_are_values_with_hardened_defaults() -> Result<()> {
    let docs = render(&[])?;
    let pod = &deployment(&docs)?["spec"]["template"]["spec"];
    ensure!(
        pod["securityContext"]
            == json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                       "seccompProfile": {"type": "RuntimeDefault"}}),
        "pod securityContext: {}",
        pod["securityContext"]
    );
    ensure!(
        pod["containers"][0]["securityContext"]
            == json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "privileged": false,
                       "capabilities": {"drop": ["ALL"]}}),
        "container securityContext: {}",
        pod["containers"][0]["securityContext"]
    );
    let v = restricted_violations("operator", pod);
    ensure!(v.is_empty(), "Pod Security restricted:\n{}", v.join("\n"));

    let other = render(&[
        "--set",
        "podSecurityContext.runAsUser=10001",
        "--set",
        "podSecurityContext.fsGroup=10001",
        "--set",
        "securityContext.readOnlyRootFilesystem=false",
    ])?;
    let pod = &deployment(&other)?["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    ensure!(psc["runAsUser"] == 10001 && psc["fsGroup"] == 10001, "{psc}");
    ensure!(
        psc["runAsNonRoot"] == true && psc["seccompProfile"]["type"] == "RuntimeDefault",
        "the other defaults are kept: {psc}"
    );
    let sc = &pod["containers"][0]["securityContext"];
    ensure!(sc["readOnlyRootFilesystem"] == false, "{sc}");
    ensure!(
        sc["capabilities"]["drop"] == json!(["ALL"]) && sc["allowPrivilegeEscalation"] == false,
        "the other defaults are kept: {sc}"
    );
    // And the restricted check can fail: a privileged container is refused by it.
    let weak = render(&["--set", "securityContext.privileged=true"])?;
    let v = restricted_violations("operator", &deployment(&weak)?["spec"]["template"]["spec"]);
    ensure!(v.iter().any(|x| x.contains("privileged")), "{v:?}");
    Ok(())
}

/// Walks a JSON schema: (path, property schema) of every property, in objects and in
/// array items.
fn schema_properties<'a>(schema: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    if let Some(props) = schema["properties"].as_object() {
        for (name, prop) in props {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            out.push((p.clone(), prop));
            schema_properties(prop, &p, out);
        }
    }
    if schema["items"].is_object() {
        schema_properties(&schema["items"], &format!("{path}[]"), out);
    }
}

/// Every value is described in the schema, and every object that lists its properties
/// refuses others, so a typo fails the install with the field's name.
#[test]
fn chart_values_schema_describes_every_value_and_refuses_typos() -> Result<()> {
    let path = repo_root().join("charts/govcloud-operator/values.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut props = Vec::new();
    schema_properties(&schema, "", &mut props);
    ensure!(props.len() > 50, "only {} properties found", props.len());
    let mut problems = Vec::new();
    if schema["additionalProperties"] != false {
        problems.push("the top level does not refuse unknown values".to_string());
    }
    for (p, prop) in &props {
        if prop["description"].as_str().is_none_or(|d| d.trim().is_empty()) {
            problems.push(format!("{p}: no description"));
        }
        for (what, s) in [(p.clone(), *prop), (format!("{p}[]"), &prop["items"])] {
            if s["properties"].is_object() && s["additionalProperties"] != false {
                problems.push(format!("{what}: lists its properties but accepts others (typos pass)"));
            }
        }
    }
    ensure!(problems.is_empty(), "values.schema.json:\n{}", problems.join("\n"));

    for (sets, field, at) in [
        (&["replicaCount=2", "replicaz=3"][..], "'replicaz'", "at ''"),
        (
            &["podDisruptionBudget.minAvailabel=1"],
            "'minAvailabel'",
            "/podDisruptionBudget",
        ),
        (
            &["metrics.serviceMonitor.label.release=x"],
            "'label'",
            "/metrics/serviceMonitor",
        ),
        (&["helmTest.image.repo=x"], "'repo'", "/helmTest/image"),
        (&["resources.limit.cpu=1"], "'limit'", "/resources"),
    ] {
        let err = refused(sets)?;
        ensure!(
            err.contains(field) && err.contains(at),
            "the refusal of --set {sets:?} does not name {field} {at}: {err}"
        );
    }
    Ok(())
}

/// Chart.yaml carries what Artifact Hub shows: license, links, every CRD, the images,
/// operator and prerelease marks; and the Kubernetes floor is enforced.
#[test]
fn chart_metadata_lists_its_crds_images_and_links() -> Result<()> {
    let root = repo_root();
    let dir = root.join("charts/govcloud-operator");
    let meta: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join("Chart.yaml"))?)?;
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join("values.yaml"))?)?;
    let app_version = meta["appVersion"].as_str().context("appVersion")?;
    let version = meta["version"].as_str().context("version")?;
    let mut problems = Vec::new();
    if meta["kubeVersion"] != ">=1.30.0-0" {
        problems.push(format!("kubeVersion {}", meta["kubeVersion"]));
    }
    for k in ["keywords", "sources"] {
        if meta[k].as_array().is_none_or(|a| a.is_empty()) {
            problems.push(format!("no {k}"));
        }
    }
    if meta["home"].as_str().is_none_or(|h| !h.starts_with("https://")) {
        problems.push(format!("home {}", meta["home"]));
    }
    let ann = &meta["annotations"];
    let yaml = |key: &str| -> Result<Value> {
        let text = ann[key].as_str().with_context(|| format!("no annotation {key}"))?;
        serde_yaml::from_str(text).with_context(|| format!("annotation {key} is not YAML"))
    };
    let cargo = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let license = cargo
        .lines()
        .find_map(|l| l.strip_prefix("license = "))
        .map(|l| l.trim_matches('"'))
        .context("no license in Cargo.toml")?;
    if ann["artifacthub.io/license"] != license {
        problems.push(format!(
            "artifacthub.io/license {} is not the project's {license}",
            ann["artifacthub.io/license"]
        ));
    }
    if ann["artifacthub.io/operator"] != "true" {
        problems.push("artifacthub.io/operator is not \"true\"".into());
    }
    let pre = version.starts_with("0.") || version.contains('-');
    if ann["artifacthub.io/prerelease"].as_str() != Some(if pre { "true" } else { "false" }) {
        problems.push(format!(
            "artifacthub.io/prerelease {} for version {version}",
            ann["artifacthub.io/prerelease"]
        ));
    }
    // Links into the repository name files that exist.
    let links = yaml("artifacthub.io/links")?;
    for l in links.as_array().into_iter().flatten() {
        let (Some(name), Some(url)) = (l["name"].as_str(), l["url"].as_str()) else {
            problems.push(format!("link without name or url: {l:?}"));
            continue;
        };
        if let Some((_, file)) = url.split_once("/blob/main/") {
            if !root.join(file).is_file() {
                problems.push(format!("link {name}: {file} does not exist"));
            }
        } else if !url.starts_with("https://") {
            problems.push(format!("link {name}: {url}"));
        }
    }
    if links.as_array().is_none_or(|a| a.is_empty()) {
        problems.push("no artifacthub.io/links".into());
    }
    // Every CRD of crds/, and nothing else.
    let mut want = Vec::new();
    for e in std::fs::read_dir(root.join("crds"))? {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(&p)?)?;
        let names = &crd["spec"]["names"];
        for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
            if v["storage"] == true {
                want.push(format!(
                    "{} {} {}",
                    names["kind"].as_str().unwrap_or(""),
                    v["name"].as_str().unwrap_or(""),
                    names["singular"].as_str().unwrap_or("")
                ));
            }
        }
    }
    want.sort();
    let crds = yaml("artifacthub.io/crds")?;
    let mut listed = Vec::new();
    for c in crds.as_array().into_iter().flatten() {
        listed.push(format!(
            "{} {} {}",
            c["kind"].as_str().unwrap_or(""),
            c["version"].as_str().unwrap_or(""),
            c["name"].as_str().unwrap_or("")
        ));
        for k in ["displayName", "description"] {
            if c[k].as_str().is_none_or(|d| d.trim().is_empty()) {
                problems.push(format!(
                    "artifacthub.io/crds {}: no {k}",
                    c["kind"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    listed.sort();
    if listed != want {
        problems.push(format!(
            "artifacthub.io/crds lists {listed:?}, the chart installs {want:?}"
        ));
    }
    // The images the chart runs, at the chart's appVersion.
    let images = yaml("artifacthub.io/images")?;
    let mut got: Vec<String> = images
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{} {}",
                i["name"].as_str().unwrap_or(""),
                i["image"].as_str().unwrap_or("")
            )
        })
        .collect();
    got.sort();
    let repo = |v: &Value| v["repository"].as_str().unwrap_or("").to_string();
    let mut expected = vec![
        format!("govcloud-operator {}:{app_version}", repo(&values["image"])),
        format!("kubectl-govcloud {}:{app_version}", repo(&values["helmTest"]["image"])),
    ];
    expected.sort();
    if got != expected {
        problems.push(format!("artifacthub.io/images {got:?}, the chart runs {expected:?}"));
    }
    ensure!(problems.is_empty(), "Chart.yaml:\n{}", problems.join("\n"));
    // The Kubernetes floor is enforced at install.
    let (ok, _, err) = chart(&["template", "--kube-version", "1.29.9"])?;
    ensure!(
        !ok && err.contains("kubeVersion"),
        "installable on Kubernetes 1.29: {err}"
    );
    render(&["--kube-version", "1.30.0"])?;
    Ok(())
}

/// The ServiceMonitor and the PrometheusRule take what kube-prometheus-stack users set:
/// selector labels, their namespace, interval, timeout and relabelings.
#[test]
fn chart_service_monitor_takes_kube_prometheus_stack_settings() -> Result<()> {
    let plain = render(&["--set", "metrics.serviceMonitor.enabled=true"])?;
    let svc = find(&plain, "Service", "govcloud-operator-metrics")?;
    let sm = find(&plain, "ServiceMonitor", "govcloud-operator")?;
    ensure!(sm["metadata"]["namespace"] == "govcloud-system");
    ensure!(
        selects(&sm["spec"]["selector"]["matchLabels"], &svc["metadata"]["labels"]),
        "the ServiceMonitor's selector {} does not match the Service's labels {}",
        sm["spec"]["selector"],
        svc["metadata"]["labels"]
    );
    let ep = &sm["spec"]["endpoints"][0];
    ensure!(ep["port"] == svc["spec"]["ports"][0]["name"], "{ep}");
    ensure!(ep["interval"] == "30s" && ep["scrapeTimeout"] == "10s", "{ep}");
    ensure!(
        ep.get("relabelings").is_none() && ep.get("metricRelabelings").is_none(),
        "{ep}"
    );

    let relabel = json!([{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]);
    let drop = json!([{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}]);
    let docs = render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
        "--set",
        "metrics.serviceMonitor.namespace=monitoring",
        "--set",
        "metrics.serviceMonitor.interval=15s",
        "--set",
        "metrics.serviceMonitor.scrapeTimeout=5s",
        "--set-json",
        &format!("metrics.serviceMonitor.relabelings={relabel}"),
        "--set-json",
        &format!("metrics.serviceMonitor.metricRelabelings={drop}"),
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "prometheusRule.namespace=monitoring",
    ])?;
    let sm = find(&docs, "ServiceMonitor", "govcloud-operator")?;
    ensure!(sm["metadata"]["namespace"] == "monitoring", "{}", sm["metadata"]);
    ensure!(sm["metadata"]["labels"]["release"] == "kube-prometheus-stack");
    ensure!(
        sm["spec"]["namespaceSelector"]["matchNames"] == json!(["govcloud-system"]),
        "a ServiceMonitor in another namespace must still look for the Service in the release's: {}",
        sm["spec"]["namespaceSelector"]
    );
    let ep = &sm["spec"]["endpoints"][0];
    ensure!(ep["interval"] == "15s" && ep["scrapeTimeout"] == "5s", "{ep}");
    ensure!(ep["relabelings"] == relabel, "{ep}");
    ensure!(ep["metricRelabelings"] == drop, "{ep}");
    let rule = find(&docs, "PrometheusRule", "govcloud-operator-alerts")?;
    ensure!(rule["metadata"]["namespace"] == "monitoring", "{}", rule["metadata"]);
    ensure!(rule["metadata"]["labels"]["release"] == "kube-prometheus-stack");
    ensure!(rule["spec"]["groups"].as_array().is_some_and(|g| !g.is_empty()));
    Ok(())
}

/// `helm test`: a restricted Pod running the plugin's image of the chart's version, on the
/// operator's nodes, outside the operator's Service, budget and NetworkPolicy.
#[test]
fn chart_helm_test_pod_is_restricted_and_runs_the_plugin_image() -> Result<()> {
    let chart_yaml: Value = serde_yaml::from_str(&std::fs::read_to_string(
        repo_root().join("charts/govcloud-operator/Chart.yaml"),
    )?)?;
    let app_version = chart_yaml["appVersion"].as_str().context("appVersion")?;
    let docs = render(&[])?;
    let pod = find(&docs, "Pod", "govcloud-operator-test")?;
    let ann = &pod["metadata"]["annotations"];
    ensure!(ann["helm.sh/hook"] == "test", "{ann}");
    ensure!(
        ann["helm.sh/hook-delete-policy"]
            .as_str()
            .is_some_and(|p| p.split(',').any(|x| x == "before-hook-creation")),
        "a second `helm test` must replace the pod: {ann}"
    );
    let spec = &pod["spec"];
    ensure!(spec["restartPolicy"] == "Never");
    ensure!(
        spec["automountServiceAccountToken"] == false,
        "the test needs no API token"
    );
    let c = &spec["containers"][0];
    ensure!(
        c["image"] == format!("registry.gov.cn/govcloud/kubectl-govcloud:{app_version}"),
        "{}",
        c["image"]
    );
    ensure!(c["args"] == json!(["--version"]) && c.get("command").is_none(), "{c}");
    let v = restricted_violations("helm test", spec);
    ensure!(v.is_empty(), "Pod Security restricted:\n{}", v.join("\n"));
    let labels = &pod["metadata"]["labels"];
    let svc = find(&docs, "Service", "govcloud-operator-metrics")?;
    let np = find(&docs, "NetworkPolicy", "govcloud-operator")?;
    let pdb = find(&docs, "PodDisruptionBudget", "govcloud-operator")?;
    for (what, selector) in [
        ("the metrics Service", &svc["spec"]["selector"]),
        ("the NetworkPolicy", &np["spec"]["podSelector"]["matchLabels"]),
        ("the PodDisruptionBudget", &pdb["spec"]["selector"]["matchLabels"]),
        ("the Deployment", &deployment(&docs)?["spec"]["selector"]["matchLabels"]),
    ] {
        ensure!(!selects(selector, labels), "{what} selects the test pod ({labels})");
    }
    // Pinned by digest, placed with the operator, and off when asked.
    let digest = format!("sha256:{}", "a".repeat(64));
    let pinned = render(&[
        "--set",
        &format!("helmTest.image.digest={digest}"),
        "--set",
        "nodeSelector.govcloud\\.io/node-kind=real",
        "--set-json",
        r#"tolerations=[{"key":"govcloud.io/node-kind","operator":"Equal","value":"real","effect":"NoSchedule"}]"#,
        "--set-json",
        r#"imagePullSecrets=[{"name":"harbor"}]"#,
    ])?;
    let spec = &find(&pinned, "Pod", "govcloud-operator-test")?["spec"];
    ensure!(
        spec["containers"][0]["image"] == format!("registry.gov.cn/govcloud/kubectl-govcloud@{digest}"),
        "{}",
        spec["containers"][0]["image"]
    );
    ensure!(
        spec["nodeSelector"] == json!({"govcloud.io/node-kind": "real"}),
        "{spec}"
    );
    ensure!(spec["tolerations"][0]["key"] == "govcloud.io/node-kind", "{spec}");
    ensure!(spec["imagePullSecrets"] == json!([{"name": "harbor"}]), "{spec}");
    let off = render(&["--set", "helmTest.enabled=false"])?;
    ensure!(!off.iter().any(|d| d["kind"] == "Pod"));
    Ok(())
}

/// NOTES.txt rendered as `helm install` prints it (through a copy of the chart that turns
/// it into a ConfigMap, so that no cluster is needed).
fn render_notes(extra: &[&str]) -> Result<String> {
    fn copy(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            let target = to.join(e.file_name());
            if e.file_type()?.is_dir() {
                copy(&e.path(), &target)?;
            } else {
                std::fs::copy(e.path(), &target)?;
            }
        }
        Ok(())
    }
    let dir = std::env::temp_dir().join(unique("chart-notes"));
    copy(&repo_root().join("charts/govcloud-operator"), &dir)?;
    std::fs::rename(dir.join("templates/NOTES.txt"), dir.join("notes.txt"))?;
    std::fs::write(
        dir.join("templates/zz-notes.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ tpl (.Files.Get \"notes.txt\") . | toJson }}\n",
    )?;
    let dir_s = dir.to_string_lossy().into_owned();
    let mut args = vec![
        "helm",
        "template",
        "govcloud-operator",
        &dir_s,
        "--namespace",
        "govcloud-system",
        "--show-only",
        "templates/zz-notes.yaml",
    ];
    args.extend_from_slice(extra);
    let result = chart(&args);
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, out, err) = result?;
    ensure!(ok, "rendering NOTES.txt failed: {err}");
    let cm: Value = serde_yaml::from_str(&out)?;
    Ok(cm["data"]["notes"].as_str().context("no notes")?.to_string())
}

/// The words after each occurrence of `prefix` (up to whitespace, closing punctuation cut).
fn after(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            text[i + prefix.len()..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches([',', '.', ')', ':', '"'])
                .to_string()
        })
        .collect()
}

/// Every role, object, Secret, file and command the NOTES name exists: the chart renders
/// it, the operator installs it, or the repository has it (issue: they named roles that
/// did not exist).
#[test]
fn chart_notes_name_only_what_exists() -> Result<()> {
    let root = repo_root();
    let clusters = std::fs::read_to_string(root.join("examples/clusters.yaml"))?;
    let mut secrets_of_clusters = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&clusters) {
        let v = Value::deserialize(doc)?;
        if let Some(n) = v["spec"]["kubeconfigSecret"]["name"].as_str() {
            secrets_of_clusters.push(n.to_string());
        }
    }
    let hub_objects = govcloud_core::hub::hub_objects();
    let operator_roles: Vec<&str> = hub_objects
        .iter()
        .filter(|(kind, _, _)| *kind == "ClusterRole")
        .map(|(_, name, _)| *name)
        .collect();
    let operator_objects: Vec<&str> = hub_objects.iter().map(|(_, name, _)| *name).collect();
    let lease = govcloud::leader::LeaderElection::new("govcloud-system", "x").name;
    let mut problems = Vec::new();
    for sets in [
        &[][..],
        &[
            "--set",
            "userRoles.enabled=false",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
        &[
            "--set",
            "helmTest.enabled=false",
            "--set",
            "networkPolicy.enabled=false",
        ],
    ] {
        let notes = render_notes(sets)?;
        let docs = render(sets)?;
        let has = |kind: &str, name: &str| docs.iter().any(|d| d["kind"] == kind && d["metadata"]["name"] == name);
        let mut p = |m: String| problems.push(format!("{sets:?}: {m}"));
        // Roles: every govcloud:* word is a ClusterRole of this render; every role to
        // bind is one of this render or one the operator installs.
        for w in notes.split_whitespace() {
            let w = w.trim_end_matches([',', '.', ')', ':']);
            if w.starts_with("govcloud:") && !has("ClusterRole", w) {
                p(format!("names ClusterRole {w}, which is not rendered"));
            }
        }
        for r in after(&notes, "--clusterrole=") {
            if !has("ClusterRole", &r) && !operator_roles.contains(&r.as_str()) {
                p(format!(
                    "binds ClusterRole {r}, which neither the chart nor the operator installs"
                ));
            }
        }
        // Every other govcloud-* name is an object of this render, one the operator
        // installs, its Lease, the namespace or the chart.
        for w in notes.split_whitespace().flat_map(|w| w.split(['/', '.'])) {
            let w = w.trim_matches(['(', ',', '.', ')', ':', '"']);
            let known = docs.iter().any(|d| d["metadata"]["name"] == w)
                || operator_objects.contains(&w)
                || [lease.as_str(), "govcloud-system"].contains(&w);
            if w.starts_with("govcloud-") && !known {
                p(format!(
                    "names {w}, which neither the chart, the operator nor the namespace has"
                ));
            }
        }
        for d in after(&notes, "deployment/") {
            if !has("Deployment", &d) {
                p(format!("names deployment/{d}"));
            }
        }
        for l in after(&notes, "get lease ") {
            if l != lease {
                p(format!("names Lease {l}; the operator's is {lease}"));
            }
        }
        for sa in after(&notes, "create serviceaccount ") {
            if !has("ServiceAccount", &sa) {
                p(format!("names ServiceAccount {sa}"));
            }
        }
        for s in after(&notes, "create secret generic ") {
            if !secrets_of_clusters.contains(&s) {
                p(format!(
                    "creates Secret {s}, which examples/clusters.yaml does not name ({secrets_of_clusters:?})"
                ));
            }
        }
        for t in after(&notes, "--show-only ") {
            if !root.join("charts/govcloud-operator").join(&t).is_file() {
                p(format!("names chart file {t}"));
            }
        }
        for f in after(&notes, "-f ")
            .into_iter()
            .chain(after(&notes, "docs/").into_iter().map(|d| format!("docs/{d}")))
        {
            if f != "-" && !root.join(&f).exists() {
                p(format!("names file {f}"));
            }
        }
        for url in after(&notes, "http://") {
            // NAME.NAMESPACE.svc:PORT/metrics
            let (host, rest) = url.split_once(".svc:").unwrap_or((&url, ""));
            let (svc, ns) = host.split_once('.').unwrap_or((host, ""));
            let port = rest.split('/').next().unwrap_or("");
            let ok = docs.iter().any(|d| {
                d["kind"] == "Service"
                    && d["metadata"]["name"] == svc
                    && d["metadata"]["namespace"] == ns
                    && port
                        .parse::<u64>()
                        .is_ok_and(|want| d["spec"]["ports"][0]["port"].as_u64() == Some(want))
            });
            if !ok {
                p(format!("names http://{url}, which no rendered Service serves"));
            }
        }
        for s in after(&notes, "ServiceMonitor ") {
            let name = s.rsplit('/').next().unwrap_or(&s);
            if !has("ServiceMonitor", name) {
                p(format!("names ServiceMonitor {s}"));
            }
        }
        let tests = docs
            .iter()
            .any(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test");
        if notes.contains("helm test") != tests {
            p(format!(
                "mentions `helm test`: {}, renders a test: {tests}",
                notes.contains("helm test")
            ));
        }
        if notes.contains("reachable only from") && !docs.iter().any(|d| d["kind"] == "NetworkPolicy") {
            p("says the metrics port is closed, but renders no NetworkPolicy".into());
        }
    }
    ensure!(problems.is_empty(), "NOTES.txt:\n{}", problems.join("\n"));
    Ok(())
}

/// What the suite and hack/operator-image-e2e.sh install still renders as they need.
#[test]
fn chart_renders_the_suite_and_image_e2e_installs() -> Result<()> {
    let suite = render(&["--set", "rbac.hubIsMember=true"])?;
    find(&suite, "ClusterRole", "govcloud-operator-member")?;
    find(&suite, "Deployment", "govcloud-operator")?;
    let values = std::env::temp_dir().join(format!("{}.yaml", unique("e2e-values")));
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    std::fs::write(
        &values,
        format!(
            r#"image:
  repository: registry.gov.cn/govcloud/govcloud-operator
  digest: "{digest}"
nodeSelector:
  govcloud.io/node-kind: real
tolerations:
- {{key: govcloud.io/node-kind, operator: Equal, value: real, effect: NoSchedule}}
rbac:
  hubIsMember: true
networkPolicy:
  apiServerPorts: [443, 6443, 16443, 26443]
"#
        ),
    )?;
    let values_s = values.to_string_lossy().into_owned();
    let docs = render(&["-f", &values_s]);
    let _ = std::fs::remove_file(&values);
    let docs = docs?;
    let pod = &deployment(&docs)?["spec"]["template"]["spec"];
    ensure!(
        pod["containers"][0]["image"] == format!("registry.gov.cn/govcloud/govcloud-operator@{digest}"),
        "{}",
        pod["containers"][0]["image"]
    );
    ensure!(pod["nodeSelector"] == json!({"govcloud.io/node-kind": "real"}));
    ensure!(pod["tolerations"][0]["value"] == "real");
    // Both replicas go to the one real node: the anti-affinity must stay a preference.
    ensure!(
        pod["affinity"]["podAntiAffinity"]
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .is_none()
    );
    let np = find(&docs, "NetworkPolicy", "govcloud-operator")?;
    let ports: Vec<Value> = np["spec"]["egress"][1]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["port"].clone())
        .collect();
    ensure!(
        ports == vec![json!(443), json!(6443), json!(16443), json!(26443)],
        "{ports:?}"
    );
    find(&docs, "ClusterRole", "govcloud-operator-member")?;
    let pdb = find(&docs, "PodDisruptionBudget", "govcloud-operator")?;
    ensure!(pdb["spec"]["minAvailable"] == 1);
    Ok(())
}

/// Every value of the schema is in the install guide's table, in English and Chinese.
#[test]
fn chart_every_value_is_in_the_install_guides() -> Result<()> {
    let root = repo_root();
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("charts/govcloud-operator/values.schema.json"),
    )?)?;
    let mut props = Vec::new();
    schema_properties(&schema, "", &mut props);
    let mut missing = Vec::new();
    for guide in ["docs/install.md", "docs/install.zh-CN.md"] {
        let text = std::fs::read_to_string(root.join(guide))?;
        for (p, _) in &props {
            if !p.contains("[]") && !text.contains(&format!("`{p}")) {
                missing.push(format!("{guide}: `{p}`"));
            }
        }
    }
    ensure!(missing.is_empty(), "values not documented:\n{}", missing.join("\n"));
    Ok(())
}

// ---- The encrypting S3 gateway's chart (charts/govcloud-s3-gateway) ----

/// Runs `hack/chart.sh ARGS` on the gateway's chart, release `oss-gw` in `govcloud-backup`.
fn gateway_chart(args: &[&str]) -> Result<(bool, String, String)> {
    chart_with(
        args,
        &[
            (
                "CHART_DIR",
                repo_root().join("charts/govcloud-s3-gateway").into_os_string(),
            ),
            ("CHART_RELEASE", "oss-gw".into()),
            ("CHART_NAMESPACE", "govcloud-backup".into()),
        ],
    )
}

fn gateway_render(extra: &[&str]) -> Result<Vec<Value>> {
    let values = repo_root().join("examples/backup/gateway-values.yaml");
    let values = values.to_string_lossy();
    let mut args = vec!["template", "-f", &*values];
    args.extend_from_slice(extra);
    let (ok, out, err) = gateway_chart(&args)?;
    ensure!(ok, "helm template of the gateway chart failed: {err}");
    documents(&out)
}

/// The configuration file the chart gives the gateway, as the gateway itself reads it.
fn gateway_config(docs: &[Value]) -> Result<Result<govcloud_gateway::config::Config, String>> {
    let text = find(docs, "ConfigMap", "oss-gw-govcloud-s3-gateway")?["data"]["config.yaml"]
        .as_str()
        .context("no config.yaml in the ConfigMap")?
        .to_string();
    Ok(govcloud_gateway::config::Config::parse(&text).map_err(|e| e.to_string()))
}

#[test]
fn gateway_chart_renders_a_hardened_gateway_whose_config_the_gateway_accepts() -> Result<()> {
    let values = repo_root().join("examples/backup/gateway-values.yaml");
    let (ok, out, err) = gateway_chart(&["lint", "-f", &values.to_string_lossy()])?;
    ensure!(ok, "helm lint --strict of the gateway chart failed:\n{out}\n{err}");
    let docs = gateway_render(&[])?;
    let name = "oss-gw-govcloud-s3-gateway";

    // The configuration is the example's, and the gateway's own parser takes it.
    let cfg = gateway_config(&docs)?.map_err(|e| anyhow!("the gateway refuses the chart's configuration: {e}"))?;
    ensure!(cfg.agencies.len() == 1 && cfg.agencies[0].name == "mof" && cfg.agencies[0].prefix == "mof/");
    ensure!(cfg.upstream.endpoint == "https://oss-beijing.internal.dc.gov.cn");
    ensure!(cfg.key_dir == std::path::Path::new("/etc/govcloud-gateway/kek"));

    // A hardened pod with no API access: no token, no role of any kind.
    let dep = find(&docs, "Deployment", name)?;
    let pod = &dep["spec"]["template"]["spec"];
    let v = restricted_violations("gateway", pod);
    ensure!(
        v.is_empty(),
        "the gateway's pod breaks the restricted Pod Security level: {v:?}"
    );
    ensure!(pod["automountServiceAccountToken"] == false, "{pod}");
    ensure!(
        !docs
            .iter()
            .any(|d| d["kind"].as_str().is_some_and(|k| k.contains("Role"))),
        "the gateway chart renders RBAC, but the gateway calls no Kubernetes API"
    );
    // The KEK Secret is a whole-directory mount (a subPath would never see a rotation).
    let mounts = pod["containers"][0]["volumeMounts"].as_array().context("mounts")?;
    let kek = mounts.iter().find(|m| m["name"] == "kek").context("no kek mount")?;
    ensure!(
        kek["subPath"].is_null() && kek["mountPath"] == "/etc/govcloud-gateway/kek",
        "{kek}"
    );
    let vols = pod["volumes"].as_array().context("volumes")?;
    let agencies = vols
        .iter()
        .find(|v| v["name"] == "agencies")
        .context("no agencies volume")?;
    ensure!(
        agencies["secret"]["items"] == json!([{"key": "mof", "path": "mof"}]),
        "only the listed agencies' keys are mounted: {agencies}"
    );

    // Only the listed clients and the release's own test pod reach the port; the Service
    // never routes to the test pod.
    let np = find(&docs, "NetworkPolicy", name)?;
    let test = find(&docs, "Pod", &format!("{name}-test"))?;
    let svc = find(&docs, "Service", name)?;
    ensure!(
        !selects(&svc["spec"]["selector"], &test["metadata"]["labels"]),
        "the Service selects the test pod"
    );
    ensure!(selects(
        &svc["spec"]["selector"],
        &dep["spec"]["template"]["metadata"]["labels"]
    ));
    let ingress = np["spec"]["ingress"].as_array().context("ingress")?;
    ensure!(ingress.len() == 2, "{np}");
    ensure!(selects(
        &ingress[0]["from"][0]["podSelector"]["matchLabels"],
        &test["metadata"]["labels"]
    ));
    ensure!(
        ingress[1]["from"]
            == json!([
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "velero"}}},
                {"ipBlock": {"cidr": "10.10.0.0/16"}}
            ])
    );
    let test_pod = &test["spec"];
    let v = restricted_violations("gateway test", test_pod);
    ensure!(v.is_empty(), "{v:?}");
    ensure!(
        test_pod["containers"][0]["args"]
            == json!([
                "--config",
                "/etc/govcloud-gateway/config.yaml",
                "check",
                "--probe",
                "http://$(OSS_GW_GOVCLOUD_S3_GATEWAY_SERVICE_HOST):$(OSS_GW_GOVCLOUD_S3_GATEWAY_SERVICE_PORT)"
            ]),
        "{test_pod}"
    );
    ensure!(
        test_pod["enableServiceLinks"] == true,
        "the probe's address comes from service links"
    );
    // Two replicas keep one through voluntary disruptions.
    ensure!(find(&docs, "PodDisruptionBudget", name)?["spec"]["minAvailable"] == 1);
    // Released together: the same version and appVersion as the operator's chart.
    let meta = |c: &str| -> Result<Value> {
        Ok(serde_yaml::from_str(&std::fs::read_to_string(
            repo_root().join(format!("charts/{c}/Chart.yaml")),
        )?)?)
    };
    let (op, gw) = (meta("govcloud-operator")?, meta("govcloud-s3-gateway")?);
    ensure!(
        op["version"] == gw["version"] && op["appVersion"] == gw["appVersion"],
        "{op} vs {gw}"
    );
    Ok(())
}

#[test]
fn gateway_chart_refuses_missing_and_overlapping_values_naming_the_field() -> Result<()> {
    // Without values: the schema names what is missing.
    let (ok, _, err) = gateway_chart(&["template"])?;
    ensure!(!ok, "the gateway chart rendered without a store or agencies");
    for field in ["upstream", "agencies"] {
        ensure!(err.contains(field), "the refusal does not name {field}: {err}");
    }
    for (set, field) in [
        ("upstream.endpoint=oss.example", "/upstream/endpoint"),
        ("agencies[0].prefix=mof", "/agencies/0/prefix"),
        ("agencies[0].name=MOF_", "/agencies/0/name"),
        ("networkPolicy.form[0].ipBlock.cidr=0.0.0.0/0", "form"),
    ] {
        let values = repo_root().join("examples/backup/gateway-values.yaml");
        let (ok, _, err) = gateway_chart(&["template", "-f", &values.to_string_lossy(), "--set", set])?;
        ensure!(!ok, "the gateway chart accepted --set {set}");
        ensure!(
            err.contains(field),
            "the refusal of --set {set} does not name {field}: {err}"
        );
    }
    // A hostile second agency whose prefix reaches into mof's: Helm cannot see it, the
    // gateway refuses the rendered configuration and names the field (it would not start).
    let docs = gateway_render(&[
        "--set",
        "agencies[1].name=intruder",
        "--set",
        "agencies[1].accessKey=GWINTRUDER",
        "--set",
        "agencies[1].bucket=govcloud-backups",
        "--set",
        "agencies[1].prefix=mof/secrets/",
        "--set",
        "agencies[0].name=mof",
        "--set",
        "agencies[0].accessKey=GWMOF0001",
        "--set",
        "agencies[0].bucket=govcloud-backups",
        "--set",
        "agencies[0].prefix=mof/",
    ])?;
    match gateway_config(&docs)? {
        Ok(_) => anyhow::bail!("the gateway accepted an agency prefix inside another agency's"),
        Err(e) => ensure!(e.contains("agencies[1].prefix") && e.contains("overlaps"), "{e}"),
    }
    Ok(())
}
