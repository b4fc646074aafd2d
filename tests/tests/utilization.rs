//! Utilization against the local control plane: live gauges follow quotas and workloads;
//! a UtilizationReport's numbers equal what the clusters show; CSV/JSON/HTML export.

use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use govcloud::controller::report::export;
use govcloud_api::{AgencyCloud, HostedSystem, UtilizationReport};
use govcloud_core::report::Format;
use govcloud_core::utilization::from_csv;
use govcloud_tests::*;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const T: Duration = Duration::from_secs(90);

fn gauge(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The `requests.cpu` in use in a namespace of the member, in cores.
async fn quota_used_cpu(member: &Client, ns: &str) -> Result<f64> {
    let rq = Api::<ResourceQuota>::namespaced(member.clone(), ns)
        .get("govcloud-quota")
        .await?;
    let used = rq
        .status
        .and_then(|s| s.used)
        .and_then(|u| u.get("requests.cpu").map(|q| q.0.clone()))
        .unwrap_or_else(|| "0".into());
    Ok(govcloud_core::quantity::Milli::parse(&used)
        .map(|m| m.0 as f64 / 1000.0)
        .unwrap_or(0.0))
}

#[tokio::test]
async fn gauges_and_reports_equal_what_the_clusters_show() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let group = unique("grp");
    let dc = create_test_cluster(&hub, &group, "external", 3, 2, None).await?;
    let a = unique_short("u");
    let ac: AgencyCloud = serde_json::from_value(agency_cloud(&a, 1, "external", &[("prod", "6", "12Gi")], &group))?;
    let agencies: Api<AgencyCloud> = Api::all(hub.clone());
    agencies.create(&PostParams::default(), &ac).await?;
    wait_agency_ready(&hub, &a, T).await?;
    let ns = format!("{a}-prod");
    let systems: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    let hs: HostedSystem = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem", "metadata": {"name": "svc"},
        "spec": {"securityLevel": 1, "dataClassification": "general",
                 "components": [{"name": "api", "image": "registry.gov.cn/api:1", "replicas": 2,
                                 "resources": {"cpu": "250m", "memory": "64Mi"}}]}
    }))?;
    systems.create(&PostParams::default(), &hs).await?;

    // The gauges: allocated = the quota placed on the cluster; used = the quota in use.
    let cluster_gauge = |m: &str, kind: &str| {
        gauge(
            m,
            "govcloud_cluster_resource",
            &[("cluster", &dc), ("resource", "cpu"), ("kind", kind)],
        )
    };
    wait_for("gauges show 2 × 250m in use", T, || async {
        let (_, m) = operator_get("/metrics").await?;
        let ok = cluster_gauge(&m, "allocated") == Some(6.0)
            && cluster_gauge(&m, "used") == Some(0.5)
            && gauge(&m, "govcloud_agency_systems", &[("agency", &a), ("state", "ready")]) == Some(1.0);
        Ok(ok.then_some(()))
    })
    .await?;
    ensure!(
        quota_used_cpu(&member, &ns).await? == 0.5,
        "the member's ResourceQuota agrees"
    );
    // Scale the workload: the numbers move.
    systems
        .patch(
            "svc",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"components": [{"name": "api", "image": "registry.gov.cn/api:1", "replicas": 4,
                                 "resources": {"cpu": "250m", "memory": "64Mi"}}]}}),
            ),
        )
        .await?;
    wait_for("gauges show 4 × 250m in use", T, || async {
        let (_, m) = operator_get("/metrics").await?;
        Ok((cluster_gauge(&m, "used") == Some(1.0)).then_some(()))
    })
    .await?;
    let (_, m) = operator_get("/metrics").await?;
    ensure!(
        cluster_gauge(&m, "allocatable").is_some_and(|v| v > 0.0),
        "allocatable from the nodes"
    );

    // A report on demand, priced: its rows equal the clusters' numbers.
    let name = unique("report");
    let ur: UtilizationReport = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "UtilizationReport", "metadata": {"name": name},
        "spec": {"periodStart": "2026-11-01T00:00:00Z", "periodEnd": "2026-11-16T00:00:00Z",
                 "prices": {"currency": "CNY", "cpuCoreMonth": 100.0, "memoryGiBMonth": 10.0, "storageGiBMonth": 1.0}}
    }))?;
    let reports: Api<UtilizationReport> = Api::all(hub.clone());
    reports.create(&PostParams::default(), &ur).await?;
    let done = wait_for("report Completed", T, || async {
        let r = reports.get(&name).await?;
        Ok(r.status.clone().filter(|s| s.phase.as_deref() == Some("Completed")))
    })
    .await?;
    let csv = export(&hub, OPERATOR_NAMESPACE, &name, Format::Csv).await?;
    let rows = from_csv(&csv).map_err(|e| anyhow!(e))?;
    let row = rows
        .iter()
        .find(|r| r.agency == a)
        .ok_or_else(|| anyhow!("agency {a} not in the report"))?;
    let member_used = quota_used_cpu(&member, &ns).await?;
    ensure!(
        row.quota.cpu == 6.0 && row.used.cpu == member_used,
        "{row:?} vs member {member_used}"
    );
    ensure!(row.cluster == dc && row.systems == 1, "{row:?}");
    // 6 cores × 100 + 12 GiB × 10 for half a month (15 of 30 days) = 360.
    ensure!(row.cost == Some(360.0), "cost {:?}", row.cost);
    let cluster = done
        .clusters
        .iter()
        .find(|c| c.cluster == dc)
        .ok_or_else(|| anyhow!("cluster row"))?;
    ensure!(
        cluster.allocated.cpu == 6.0 && cluster.used.cpu == member_used,
        "{cluster:?}"
    );
    ensure!(
        done.summary
            .as_ref()
            .is_some_and(|s| s.total_cost.as_deref().is_some_and(|c| c.ends_with(" CNY")))
    );
    // JSON and HTML exports carry the same rows.
    let json: serde_json::Value = serde_json::from_str(&export(&hub, OPERATOR_NAMESPACE, &name, Format::Json).await?)?;
    let json_rows: Vec<govcloud_api::report::AgencyRow> = serde_json::from_value(json["agencies"].clone())?;
    ensure!(json_rows == rows, "JSON and CSV exports agree");
    let html = export(&hub, OPERATOR_NAMESPACE, &name, Format::Html).await?;
    ensure!(
        html.contains("<svg") && html.contains(&a) && !html.contains("<script"),
        "HTML page"
    );
    // A report is a snapshot: its spec cannot change.
    let err = reports
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"periodEnd": "2026-11-20T00:00:00Z"}})),
        )
        .await;
    ensure!(
        matches!(err, Err(kube::Error::Api(ref e)) if e.message.contains("a report is a snapshot")),
        "{err:?}"
    );
    reports.delete(&name, &DeleteParams::default()).await?;
    systems.delete("svc", &DeleteParams::default()).await?;
    Ok(())
}

/// A real Prometheus (Debian's 2.42, from hack/prometheus.sh build) scraping this binary's
/// operator every second, with the chart's alert rules loaded; stopped by PID on drop.
struct Prometheus {
    url: String,
    child: std::process::Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn prometheus_scraping_the_operator(extra: Option<std::net::SocketAddr>) -> Result<Prometheus> {
    let bin = hack_version("PROMETHEUS_BIN")?;
    let target = operator()?.addr;
    let dir = testbed_state().join("test-prometheus").join(unique("p"));
    std::fs::create_dir_all(&dir)?;
    let rules = repo_root().join("charts/govcloud-operator/files/alerts.rules.yaml");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{rules:?}]\nscrape_configs:\n  - job_name: govcloud-operator\n    static_configs: [{{targets: ['{target}']}}]\n{}",
            extra
                .map(|e| format!("  - job_name: usage\n    static_configs: [{{targets: ['{e}']}}]\n"))
                .unwrap_or_default()
        ),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let child = std::process::Command::new(&bin)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| anyhow!("cannot start {bin} (run hack/prometheus.sh build): {e}"))?;
    Ok(Prometheus {
        url: format!("http://127.0.0.1:{port}"),
        child,
    })
}

async fn query(url: &str, promql: &str) -> Result<Vec<serde_json::Value>> {
    let http = reqwest::Client::new();
    let v: serde_json::Value = http
        .get(format!(
            "{url}/api/v1/query?query={}",
            govcloud::controller::utilization::encode_query(promql)
        ))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(v["status"] == "success", "{promql}: {v}");
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn prometheus_scrapes_the_gauges_and_every_dashboard_query_runs() -> Result<()> {
    init_crypto();
    operator()?;
    let hub = client(1).await?;
    let group = unique("grp");
    let dc = create_test_cluster(&hub, &group, "internal", 3, 2, None).await?;
    let a = unique_short("p");
    let ac: AgencyCloud = serde_json::from_value(agency_cloud(&a, 2, "internal", &[("prod", "3", "6Gi")], &group))?;
    let agencies: Api<AgencyCloud> = Api::all(hub.clone());
    agencies.create(&PostParams::default(), &ac).await?;
    // Actual consumption: KWOK runs no cAdvisor, so a small exporter of the test's own
    // reports 0.25 cores used in the agency's namespace; Prometheus scrapes it and the
    // operator asks Prometheus (the real query path), configured by ConfigMap.
    let ns = format!("{a}-prod");
    let exporter = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let exporter_addr = exporter.local_addr()?;
    let body = format!("govcloud_test_cpu_usage_cores{{namespace=\"{ns}\"}} 0.25\n");
    let serve = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = exporter.accept().await {
            let mut buf = [0u8; 2048];
            let _ = sock.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    let prom = prometheus_scraping_the_operator(Some(exporter_addr)).await?;
    let systems: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    let hs: HostedSystem = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem", "metadata": {"name": "app"},
        "spec": {"securityLevel": 2, "dataClassification": "general",
                 "components": [{"name": "api", "image": "registry.gov.cn/api:1", "resources": {"cpu": "500m", "memory": "64Mi"}}]}
    }))?;
    wait_for("agency namespace ready for systems", T, || async {
        Ok(systems.create(&PostParams::default(), &hs).await.ok().map(|_| ()))
    })
    .await?;
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "govcloud-utilization", "namespace": OPERATOR_NAMESPACE},
        "data": {"prometheusURL": prom.url, "cpuUsageQuery": "sum by (namespace) (govcloud_test_cpu_usage_cores)"}
    }))?;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    let _ = cms.delete("govcloud-utilization", &DeleteParams::default()).await;
    cms.create(&PostParams::default(), &cm).await?;
    wait_for(
        "efficiency = 0.25 used ÷ 0.5 requested",
        Duration::from_secs(150),
        || async {
            let (_, m) = operator_get("/metrics").await?;
            Ok((gauge(
                &m,
                "govcloud_agency_efficiency",
                &[("agency", &a), ("environment", "prod"), ("resource", "cpu")],
            ) == Some(0.5))
            .then_some(()))
        },
    )
    .await?;
    cms.delete("govcloud-utilization", &DeleteParams::default()).await?;
    serve.abort();
    // The cluster's allocated CPU reaches Prometheus with its labels.
    let q = format!("govcloud_cluster_resource{{cluster=\"{dc}\",resource=\"cpu\",kind=\"allocated\"}}");
    let series = wait_for("Prometheus has the allocated CPU of the cluster", T, || async {
        let r = query(&prom.url, &q).await.unwrap_or_default();
        Ok(r.into_iter().find(|s| s["value"][1] == "3"))
    })
    .await?;
    ensure!(
        series["metric"]["region"] == "r1" && series["metric"]["zone"] == "internal",
        "{series}"
    );
    let quota = query(
        &prom.url,
        &format!("govcloud_agency_quota{{agency=\"{a}\",environment=\"prod\",resource=\"cpu\",kind=\"hard\"}}"),
    )
    .await?;
    ensure!(quota.first().is_some_and(|s| s["value"][1] == "3"), "{quota:?}");
    // The alert rules are loaded and evaluated by this Prometheus.
    let rules: serde_json::Value = reqwest::get(format!("{}/api/v1/rules", prom.url)).await?.json().await?;
    let names: Vec<String> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect();
    for alert in [
        "GovcloudBackupRPOBreached",
        "GovcloudQuotaNearlyFull",
        "GovcloudClusterCapacityNearlyFull",
        "GovcloudMemberUnreachable",
        "GovcloudReconcileErrors",
    ] {
        ensure!(names.iter().any(|n| n == alert), "{alert} not loaded: {names:?}");
    }
    // Every dashboard panel's query runs on this Prometheus (hack/check-dashboards.py).
    let out = tokio::process::Command::new("python3")
        .arg(repo_root().join("hack/check-dashboards.py"))
        .args(["--prometheus", &prom.url])
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "dashboard check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    agencies.delete(&a, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
async fn scheduled_reports_are_kept_to_the_configured_number() -> Result<()> {
    use govcloud::controller::report::due;
    use govcloud_api::report::SCHEDULE_LABEL;
    init_crypto();
    operator()?; // keeps 2 daily reports (tests/src/lib.rs)
    let hub = client(1).await?;
    let reports: Api<UtilizationReport> = Api::all(hub.clone());
    // Yesterday's report is created by the schedule; two older "daily" reports make three.
    // The test takes up to five minutes: near midnight in Beijing the current report would
    // change under it (a fresh-clone run at 16:01 UTC failed so), so it waits for the new day.
    let label = |t: jiff::Timestamp| due("daily", t).map(|d| d.0);
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(330))
        .map_err(|e| anyhow!("{e}"))?;
    while label(jiff::Timestamp::now()) != label(soon) {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let (current, _, _) = due("daily", jiff::Timestamp::now()).ok_or_else(|| anyhow!("no daily period"))?;
    // The operator re-creates the current report when it is missing.
    let _ = reports.delete(&current, &DeleteParams::default()).await;
    wait_for(
        "the current scheduled report re-created",
        Duration::from_secs(150),
        || async {
            Ok(reports
                .get_opt(&current)
                .await?
                .filter(|r| r.metadata.deletion_timestamp.is_none())
                .map(|_| ()))
        },
    )
    .await?;
    let old = ["daily-2000-01-01", "daily-2000-01-02"];
    for (i, name) in old.iter().enumerate() {
        let _ = reports.delete(name, &DeleteParams::default()).await;
        wait_for("old report gone", Duration::from_secs(30), || async {
            Ok(reports.get_opt(name).await?.is_none().then_some(()))
        })
        .await?;
        let ur: UtilizationReport = serde_json::from_value(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "UtilizationReport",
            "metadata": {"name": name, "labels": {SCHEDULE_LABEL: "daily", "govcloud.io/test": "true"}},
            "spec": {"periodStart": format!("2000-01-0{}T00:00:00Z", i + 1), "periodEnd": format!("2000-01-0{}T00:00:00Z", i + 2)}
        }))?;
        reports.create(&PostParams::default(), &ur).await?;
    }
    // The oldest goes (the schedule runs every minute); the newest two stay.
    wait_for(
        "the oldest scheduled report pruned",
        Duration::from_secs(150),
        || async { Ok(reports.get_opt(old[0]).await?.is_none().then_some(())) },
    )
    .await?;
    ensure!(reports.get_opt(old[1]).await?.is_some(), "{} was pruned too", old[1]);
    ensure!(
        reports.get_opt(&current).await?.is_some(),
        "the current report {current} was pruned"
    );
    let _ = reports.delete(old[1], &DeleteParams::default()).await;
    Ok(())
}
