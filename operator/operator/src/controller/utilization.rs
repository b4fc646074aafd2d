//! Utilization: the live per-cluster and per-agency gauges, refreshed from the caches.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;

use super::context::Context;
use govcloud_core::utilization as util;

/// Recomputes `govcloud_cluster_resource` from the caches (`govcloud_agency_systems` and
/// `govcloud_agency_hosted_systems` are written at each scrape: `metrics::agency_systems_text`).
pub fn refresh_metrics(ctx: &Context) {
    let (Some(agencies), Some(systems)) = (ctx.agencies.get(), ctx.systems.get()) else {
        return;
    };
    let agencies = agencies.state();
    let systems = systems.state();
    let clusters: Vec<_> = ctx.clusters.state().iter().map(|d| (**d).clone()).collect();
    ctx.metrics.forget_clusters_except(
        &clusters
            .iter()
            .map(|d| (d.name_any(), d.spec.region.clone(), d.spec.zone.as_str().to_string()))
            .collect(),
    );
    let rows = util::agency_rows(&agencies, &systems, None, 0.0);
    ctx.metrics.cluster_resource.reset();
    for c in util::cluster_rows(&clusters, &rows) {
        for (kind, t) in [
            ("capacity", &c.capacity),
            ("allocatable", &c.allocatable),
            ("allocated", &c.allocated),
            ("used", &c.used),
        ] {
            for (resource, v) in t.by_resource() {
                ctx.metrics
                    .cluster_resource
                    .with_label_values(&[&c.cluster, &c.region, &c.zone, resource, kind])
                    .set(v);
            }
        }
    }
}

/// ConfigMap (operator namespace) that points the operator at a Prometheus holding actual
/// consumption: keys `prometheusURL` and optionally `cpuUsageQuery`.
pub const USAGE_CONFIGMAP: &str = "govcloud-utilization";
/// Actual CPU use per namespace, in cores (cAdvisor's metric, as kubelets export it).
pub const DEFAULT_CPU_QUERY: &str = "sum by (namespace) (rate(container_cpu_usage_seconds_total{container!=\"\"}[5m]))";

/// Percent-encodes a URL query value.
pub fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Queries the configured Prometheus for actual CPU use per namespace (cores). None when no
/// Prometheus is configured or it cannot be asked (logged).
pub async fn actual_cpu(ctx: &Context) -> Option<std::collections::HashMap<String, f64>> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let cm = kube::Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.settings.namespace)
        .get_opt(USAGE_CONFIGMAP)
        .await
        .ok()??;
    let data = cm.data?;
    let url = data.get("prometheusURL")?.trim_end_matches('/').to_string();
    let query = data
        .get("cpuUsageQuery")
        .cloned()
        .unwrap_or_else(|| DEFAULT_CPU_QUERY.to_string());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let encoded = encode_query(&query);
    let answer = async {
        let v: serde_json::Value = http
            .get(format!("{url}/api/v1/query?query={encoded}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<_, reqwest::Error>(v)
    }
    .await;
    let v = match answer {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, %url, "cannot query Prometheus for actual CPU use");
            return None;
        }
    };
    let mut out = std::collections::HashMap::new();
    for r in v["data"]["result"].as_array().into_iter().flatten() {
        let ns = r["metric"]["namespace"].as_str();
        let val = r["value"][1].as_str().and_then(|x| x.parse::<f64>().ok());
        if let (Some(ns), Some(val)) = (ns, val) {
            out.insert(ns.to_string(), val);
        }
    }
    Some(out)
}

/// Sets `govcloud_agency_efficiency{agency,environment,resource="cpu"}`: actual CPU use ÷
/// CPU requested.
pub fn record_efficiency(ctx: &Context, usage: &std::collections::HashMap<String, f64>) {
    let Some(agencies) = ctx.agencies.get() else { return };
    ctx.metrics.agency_efficiency.reset();
    for a in agencies.state() {
        for env in a.status.iter().flat_map(|s| s.environments.iter()) {
            let requested = util::quota_totals(&env.used).cpu;
            if let Some(actual) = usage.get(&env.namespace)
                && requested > 0.0
            {
                ctx.metrics
                    .agency_efficiency
                    .with_label_values(&[&a.name_any(), &env.name, "cpu"])
                    .set(actual / requested);
            }
        }
    }
}

/// Refreshes the utilization gauges every `every` until the task is dropped (actual use
/// from Prometheus every sixth time).
pub async fn run_metrics(ctx: Arc<Context>, every: Duration) {
    let mut n: u64 = 0;
    loop {
        refresh_metrics(&ctx);
        if n.is_multiple_of(6)
            && let Some(usage) = actual_cpu(&ctx).await
        {
            record_efficiency(&ctx, &usage);
        }
        n += 1;
        tokio::time::sleep(every).await;
    }
}
