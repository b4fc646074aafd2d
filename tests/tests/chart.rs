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
    let out = Command::new("bash")
        .arg(repo_root().join("hack/chart.sh"))
        .args(args)
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
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&out) {
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
            &["metrics.serviceMonitor.label.release=x"],
            "'label'",
            "/metrics/serviceMonitor",
        ),
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
