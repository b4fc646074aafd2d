//! The kubectl plugin (`kubectl-govcloud`, built from operator/plugin/) run as a program against the
//! hub: request → refused approval → approval → provisioned cloud, deny, status, report
//! export, and the messages for unknown names and missing permissions. Users are
//! impersonated with the plugin's own `--as`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use govcloud_api::{AgencyCloud, HostedSystem, TenancyRequest, UtilizationReport};
use govcloud_core::utilization::from_csv;
use govcloud_tests::*;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);

/// The plugin binary: `cargo build -p kubectl-govcloud` (a no-op when up to date) into the
/// target directory of this test binary (`target/<profile>/deps/plugin-…` → `target/<profile>`).
fn plugin_bin() -> Result<PathBuf> {
    workspace_binary("kubectl-govcloud", "kubectl-govcloud")
}

/// What one run of the plugin printed.
struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `kubectl-govcloud --kubeconfig <hub> ARGS`.
async fn kgc(args: &[&str]) -> Result<Run> {
    let out = tokio::process::Command::new(plugin_bin()?)
        .arg("--kubeconfig")
        .arg(kubeconfig_path(1))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await?;
    Ok(Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A requests namespace where `requester` and `approver` may file requests, and `approver`
/// holds the approver role.
async fn setup_users(hub: &Client, ns: &str, approver: &str, requester: &str) -> Result<()> {
    ensure_namespace(hub, ns).await?;
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "requesters", "namespace": ns},
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

/// Arguments of a valid `request` for agency `name` placed on cluster `dc`.
fn request_args(name: &str, ns: &str, dc: &str, code: &str) -> Vec<String> {
    [
        "request",
        name,
        "-n",
        ns,
        "--agency-name",
        "测试市数据局",
        "--credit-code",
        code,
        "--admin-level",
        "municipal",
        "--contact-name",
        "张工",
        "--contact-email",
        "ops@example.gov.cn",
        "--level",
        "2",
        "--zone",
        "external",
        "--cluster",
        dc,
        "--environments",
        "prod,test",
        "--cpu",
        "2",
        "--memory",
        "4Gi",
        "--storage",
        "10Gi",
        "--quota",
        "test:cpu=1,memory=2Gi",
        "--owner",
        &format!("Group:{name}-owners"),
        "--registry",
        "registry.gov.cn",
        "--deletion-policy",
        "Delete",
        "--justification",
        "Host the municipal open-data portal and its database.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Whether `text` has a quota line `RESOURCE  [####....]  USED/LIMIT` (a 20-character bar)
/// whose amounts end with `amounts`.
fn bar_line(text: &str, resource: &str, amounts: &str) -> bool {
    text.lines().any(|l| {
        let parts: Vec<&str> = l.split_whitespace().collect();
        parts.len() == 3
            && parts[0] == resource
            && parts[2].ends_with(amounts)
            && parts[1].len() == 22
            && parts[1].starts_with('[')
            && parts[1].ends_with(']')
            && parts[1][1..21].chars().all(|c| c == '#' || c == '.')
    })
}

fn cond(tr: &TenancyRequest, t: &str) -> Option<(String, String)> {
    tr.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn request_approve_status_report_and_deny() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let ns = unique("requests");
    let approver = unique("approver");
    let requester = unique("agency-user");
    setup_users(&hub, &ns, &approver, &requester).await?;
    let group = unique("grp");
    let dc = create_test_cluster(&hub, &group, "external", 3, 2, None).await?;
    let trs: Api<TenancyRequest> = Api::namespaced(hub.clone(), &ns);
    let acs: Api<AgencyCloud> = Api::all(hub.clone());

    // The agency files a request; requestedBy is filled in with the caller's own name.
    let name = unique_short("plg");
    let mut args = request_args(&name, &ns, &dc, &unique_credit_code());
    args.extend(["--as".to_string(), requester.clone()]);
    let run = kgc(&refs(&args)).await?;
    ensure!(
        run.ok
            && run
                .stdout
                .contains(&format!("tenancyrequest.govcloud.io/{name} created")),
        "{run}"
    );
    let tr = trs.get(&name).await?;
    ensure!(
        tr.spec.requested_by.as_deref() == Some(requester.as_str()),
        "{:?}",
        tr.spec
    );
    ensure!(tr.spec.decision.is_none(), "no decision yet");
    let envs: Vec<(String, String)> = tr
        .spec
        .cloud
        .environments
        .iter()
        .map(|e| (e.name.clone(), e.quota.cpu.clone()))
        .collect();
    ensure!(
        envs == vec![("prod".into(), "2".into()), ("test".into(), "1".into())],
        "{envs:?}"
    );
    ensure!(tr.spec.cloud.placement.cluster.as_deref() == Some(dc.as_str()));

    // The plugin approves only what the operator has checked and found Valid.
    let checked = |g: i64| {
        let trs = trs.clone();
        let name = name.clone();
        async move {
            wait_for("request checked and Valid", T, || async {
                let tr = trs.get(&name).await?;
                let st = tr.status.unwrap_or_default();
                Ok((st.observed_generation == Some(g)
                    && st.conditions.iter().any(|c| c.type_ == "Valid" && c.status == "True"))
                .then_some(()))
            })
            .await
        }
    };
    checked(1).await?;
    // A user without the approver role is refused, and told which role is missing.
    let run = kgc(&["approve", &name, "-n", &ns, "--as", &requester, "--generation", "1"]).await?;
    ensure!(!run.ok, "a non-approver approved: {run}");
    ensure!(
        run.stderr.contains("refused by govcloud-tenancy-approval")
            && run.stderr.contains("you need the govcloud-tenancy-approver role"),
        "{run}"
    );
    ensure!(trs.get(&name).await?.spec.decision.is_none(), "refused, so no decision");

    // The requester changes the request after the approver looked at generation 1: approving
    // generation 1 is refused, and the request is shown as it now is.
    Api::<TenancyRequest>::namespaced(impersonating(1, &requester, &[]).await?, &ns)
        .patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"cloud": {"viewers": [{"kind": "Group", "name": "auditors"}]}}})),
        )
        .await?;
    let run = kgc(&["approve", &name, "-n", &ns, "--as", &approver, "--generation", "1"]).await?;
    ensure!(
        !run.ok
            && run.stderr.contains("--generation 1: TenancyRequest")
            && run.stderr.contains("now at generation 2")
            && run.stdout.contains("generation 2")
            && run.stdout.contains("auditors"),
        "{run}"
    );
    // Without --generation and without a terminal to confirm on, nothing is recorded.
    let run = kgc(&["approve", &name, "-n", &ns, "--as", &approver]).await?;
    ensure!(
        !run.ok && run.stderr.contains("--generation: give the generation"),
        "{run}"
    );
    ensure!(trs.get(&name).await?.spec.decision.is_none(), "refused, so no decision");

    // The approver approves what they reviewed: the decision is recorded in the approver's
    // name, for generation 2, and the cloud is provisioned.
    checked(2).await?;
    let run = kgc(&[
        "approve",
        &name,
        "-n",
        &ns,
        "--as",
        &approver,
        "--generation",
        "2",
        "--reason",
        "Fits the annual plan.",
    ])
    .await?;
    ensure!(
        run.ok && run.stdout.contains(&format!("approved by {approver} (generation 2)")),
        "{run}"
    );
    let decision = trs
        .get(&name)
        .await?
        .spec
        .decision
        .ok_or_else(|| anyhow!("no decision"))?;
    ensure!(
        decision.decided_by == approver
            && decision.reason == "Fits the annual plan."
            && decision.reviewed_generation == Some(2),
        "{decision:?}"
    );
    wait_for("AgencyCloud Ready", T, || async {
        let Some(ac) = acs.get_opt(&name).await? else {
            return Ok(None);
        };
        Ok(ac
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            .then_some(()))
    })
    .await?;
    // Deciding again is refused as final.
    let run = kgc(&[
        "deny",
        &name,
        "-n",
        &ns,
        "--as",
        &approver,
        "--reason",
        "Changed my mind.",
    ])
    .await?;
    ensure!(!run.ok && run.stderr.contains("already decided"), "{run}");

    // A hosted system without a backup policy: status lists it and shows BackupCompliant False.
    let prod = format!("{name}-prod");
    let hs: HostedSystem = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
        "metadata": {"name": "portal", "labels": {"govcloud.io/test": "true"}},
        "spec": {"securityLevel": 2, "dataClassification": "important",
                 "components": [{"name": "web", "image": "registry.gov.cn/portal/web:1.0", "replicas": 1,
                                 "ports": [{"name": "http", "port": 8080}], "resources": {"cpu": "100m", "memory": "64Mi"}}]}
    }))?;
    Api::<HostedSystem>::namespaced(hub.clone(), &prod)
        .create(&PostParams::default(), &hs)
        .await?;
    let text = wait_for("status shows the system and BackupCompliant False", T, || async {
        let run = kgc(&["status", &name]).await?;
        ensure!(run.ok, "{run}");
        let compliant = run
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("BackupCompliant") && l.contains("False"));
        let listed = run.stdout.lines().any(|l| l.trim_start().starts_with("portal "));
        Ok((compliant && listed).then_some(run.stdout))
    })
    .await?;
    println!("kubectl govcloud status {name}:\n{text}");
    ensure!(
        text.contains(&format!("Placement:      cluster {dc}, region r1, zone external")),
        "{text}"
    );
    ensure!(text.contains(&format!("prod (namespace {prod})")), "{text}");
    ensure!(
        bar_line(&text, "cpu", "/2") && bar_line(&text, "memory", "/4Gi"),
        "quota bars for prod: {text}"
    );
    ensure!(bar_line(&text, "storage", "0/10Gi"), "{text}");
    ensure!(bar_line(&text, "cpu", "/3"), "total cpu bar: {text}");
    let run = kgc(&["status", &name, "-o", "json"]).await?;
    ensure!(run.ok, "{run}");
    let summary: Value = serde_json::from_str(&run.stdout)?;
    ensure!(
        summary["placement"]["cluster"] == dc.as_str() && summary["ready"] == "True",
        "{summary}"
    );
    ensure!(summary["quota"][0]["environment"] == "prod", "{summary}");
    ensure!(summary["systems"][0]["name"] == "portal", "{summary}");

    // A report on demand, exported as CSV with the operator's exporter: the agency is in it.
    let report = unique("report");
    let ur: UtilizationReport = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "UtilizationReport", "metadata": {"name": report}, "spec": {}
    }))?;
    let reports: Api<UtilizationReport> = Api::all(hub.clone());
    reports.create(&PostParams::default(), &ur).await?;
    let done = wait_for("report Completed", T, || async {
        let r = reports.get(&report).await?;
        Ok(r.status.filter(|s| s.phase.as_deref() == Some("Completed")))
    })
    .await?;
    let file = std::env::temp_dir().join(format!("{report}.csv"));
    let file_arg = file.to_string_lossy().into_owned();
    let run = kgc(&["report", &report, "-o", "csv", "--output-file", &file_arg]).await?;
    ensure!(run.ok && run.stdout.contains("written to"), "{run}");
    let csv = std::fs::read_to_string(&file)?;
    let _ = std::fs::remove_file(&file);
    let rows = from_csv(&csv).map_err(|e| anyhow!(e))?;
    ensure!(
        rows.len() as u32 == done.summary.as_ref().map(|s| s.agencies).unwrap_or_default(),
        "every agency of the report is exported"
    );
    let row = rows
        .iter()
        .find(|r| r.agency == name)
        .ok_or_else(|| anyhow!("agency {name} not in the CSV"))?;
    ensure!(row.cluster == dc && row.quota.cpu == 3.0, "{row:?}");
    let run = kgc(&["report", &report, "-o", "json"]).await?;
    let exported: Value = serde_json::from_str(&run.stdout).map_err(|e| anyhow!("{e}: {run}"))?;
    ensure!(exported["name"] == report.as_str(), "{exported}");

    // Deny: recorded in the approver's name, nothing is created.
    let no = unique_short("plgno");
    let mut args = request_args(&no, &ns, &dc, &unique_credit_code());
    args.extend(["--as".to_string(), requester.clone()]);
    let run = kgc(&refs(&args)).await?;
    ensure!(run.ok, "{run}");
    let run = kgc(&["deny", &no, "-n", &ns, "--as", &approver]).await?;
    ensure!(!run.ok && run.stderr.contains("--reason"), "deny needs a reason: {run}");
    let run = kgc(&[
        "deny",
        &no,
        "-n",
        &ns,
        "--as",
        &approver,
        "--generation",
        "1",
        "--reason",
        "File the MLPS record first.",
    ])
    .await?;
    ensure!(run.ok && run.stdout.contains(&format!("denied by {approver}")), "{run}");
    let tr = wait_for("denied request Decided", T, || async {
        let tr = trs.get(&no).await?;
        Ok(cond(&tr, "Decided").filter(|c| c.0 == "True").map(|_| tr))
    })
    .await?;
    ensure!(
        cond(&tr, "Provisioned") == Some(("False".into(), "Denied".into())),
        "{:?}",
        tr.status
    );
    ensure!(acs.get_opt(&no).await?.is_none(), "a denied request created a cloud");

    // Clean up: requests first (an approved request would bring its cloud back), then the cloud.
    let _ = reports.delete(&report, &DeleteParams::default()).await;
    let _ = Api::<Namespace>::all(hub.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    wait_for("requests gone", T, || async {
        Ok(trs.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    let _ = acs.delete(&name, &DeleteParams::default()).await;
    Ok(())
}

#[tokio::test]
async fn dry_run_prints_the_request_and_local_mistakes_are_named() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let ns = unique("requests");
    ensure_namespace(&hub, &ns).await?;
    let name = unique_short("dry");
    let mut args = request_args(&name, &ns, "dc-any", &unique_credit_code());
    args.extend(["--dry-run".into(), "-o".into(), "yaml".into()]);
    let run = kgc(&refs(&args)).await?;
    ensure!(run.ok, "{run}");
    let tr: TenancyRequest = serde_yaml::from_str(&run.stdout)?;
    ensure!(
        tr.metadata.namespace.as_deref() == Some(ns.as_str()) && tr.spec.cloud.agency.short_name == name,
        "{}",
        run.stdout
    );
    // The admin's own name, as the admission policy demands.
    ensure!(
        tr.spec.requested_by.as_deref().is_some_and(|r| !r.is_empty()),
        "{:?}",
        tr.spec.requested_by
    );
    ensure!(
        Api::<TenancyRequest>::namespaced(hub.clone(), &ns)
            .get_opt(&name)
            .await?
            .is_none(),
        "a dry run created the request"
    );
    // The API server checks it without storing it.
    let mut args = request_args(&name, &ns, "dc-any", &unique_credit_code());
    args.push("--dry-run=server".into());
    let run = kgc(&refs(&args)).await?;
    ensure!(run.ok && run.stdout.contains("server dry run"), "{run}");
    ensure!(
        Api::<TenancyRequest>::namespaced(hub.clone(), &ns)
            .get_opt(&name)
            .await?
            .is_none(),
        "a server dry run created the request"
    );

    // A mistyped credit code and a zero quota are named before anything is sent.
    let mut args = request_args(&name, &ns, "dc-any", "11100000MB0123456Y");
    let cpu = args.iter().position(|a| a == "--cpu").map(|i| i + 1).unwrap_or(0);
    args[cpu] = "0".into();
    let run = kgc(&refs(&args)).await?;
    ensure!(
        !run.ok && run.stderr.contains("--credit-code") && run.stderr.contains("--cpu: must be more than 0"),
        "{run}"
    );
    let _ = Api::<Namespace>::all(hub.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    Ok(())
}

#[tokio::test]
async fn unknown_names_and_missing_permissions_are_explained() -> Result<()> {
    operator()?;
    let nope = unique("nope");
    let run = kgc(&["status", &nope]).await?;
    ensure!(
        run.code == Some(1)
            && run.stderr.contains(&format!(
                "no AgencyCloud named {nope}; list them with `kubectl get agencyclouds`"
            )),
        "{run}"
    );
    let run = kgc(&["approve", &nope, "-n", "default"]).await?;
    ensure!(
        !run.ok
            && run.stderr.contains(&format!(
                "no TenancyRequest named {nope} in namespace default; list them with `kubectl get tenancyrequests -n default`"
            )),
        "{run}"
    );
    let run = kgc(&["report", &nope]).await?;
    ensure!(
        !run.ok
            && run.stderr.contains(&format!(
                "no UtilizationReport named {nope}; list them with `kubectl get utilizationreports`"
            )),
        "{run}"
    );
    // A user with no govcloud permissions is told which permission is missing.
    let nobody = unique("nobody");
    let run = kgc(&["status", &nope, "--as", &nobody]).await?;
    ensure!(
        !run.ok
            && run.stderr.contains(&format!(
                "you ({nobody}) lack the RBAC permission to get agencyclouds.govcloud.io"
            )),
        "{run}"
    );
    let run = kgc(&["approve", &nope, "-n", "default", "--as", &nobody]).await?;
    ensure!(
        !run.ok
            && run
                .stderr
                .contains("get tenancyrequests.govcloud.io in namespace default"),
        "{run}"
    );
    Ok(())
}
