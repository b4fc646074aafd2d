//! UtilizationReport controller: computes a report once from the caches (a snapshot; a
//! completed report is never rewritten), keeps the agency table in ConfigMaps, and creates
//! the daily and monthly reports.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{Timestamp, ToSpan};
use kube::api::{DeleteParams, ListParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::context::Context;
use super::status::{Reconciled, error_policy, field_manager};
use crate::error::{Error, Result};
use crate::server::PendingCache;
use govcloud_api::labels::MANAGED_BY;
use govcloud_api::report::{AgencyRow, PriceCatalogue};
use govcloud_api::report::{ReportSummary, SCHEDULE_LABEL, TABLE_KEY, TableRef};
use govcloud_api::{UtilizationReport, UtilizationReportStatus};
use govcloud_core::report::{ExportError, Format};
use govcloud_core::utilization as util;

/// Controller name.
pub const CONTROLLER: &str = "utilizationreport";
/// ConfigMap (operator namespace) holding the default price catalogue, key `prices.yaml`.
pub const PRICE_CONFIGMAP: &str = "govcloud-price-catalogue";
/// Largest table part (bytes of JSON); ConfigMaps hold at most 1 MiB.
const PART_BYTES: usize = 700_000;

impl Reconciled for UtilizationReport {
    const CONTROLLER: &'static str = CONTROLLER;
    const FAILED: &'static str = "report failed";

    fn retry_after(_: &Error) -> Duration {
        Duration::from_secs(10)
    }

    fn api(client: Client, _: &Self) -> Api<Self> {
        Api::all(client)
    }
}

/// Splits rows into parts of at most `limit` bytes of JSON each.
pub fn parts(rows: &[AgencyRow], limit: usize) -> Vec<Vec<AgencyRow>> {
    let mut out: Vec<Vec<AgencyRow>> = vec![];
    let mut cur = vec![];
    let mut size = 2;
    for r in rows {
        let n = serde_json::to_string(r).map(|s| s.len() + 1).unwrap_or(0);
        if !cur.is_empty() && size + n > limit {
            out.push(std::mem::take(&mut cur));
            size = 2;
        }
        size += n;
        cur.push(r.clone());
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.0}%", part / whole * 100.0)
    } else {
        "-".into()
    }
}

async fn prices(ctx: &Context, ur: &UtilizationReport) -> Option<PriceCatalogue> {
    if let Some(p) = &ur.spec.prices {
        return Some(p.clone());
    }
    let cm = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.settings.namespace)
        .get_opt(PRICE_CONFIGMAP)
        .await
        .ok()??;
    let text = cm.data?.get("prices.yaml")?.clone();
    match serde_yaml::from_str(&text) {
        Ok(p) => Some(p),
        Err(e) => {
            warn!(error = %e, "ConfigMap {PRICE_CONFIGMAP} has an unreadable prices.yaml; reports carry no costs");
            None
        }
    }
}

/// Computes the report from the caches: (status, agency table).
pub fn compute(
    ctx: &Context,
    prices: Option<&PriceCatalogue>,
    start: Timestamp,
    end: Timestamp,
) -> (UtilizationReportStatus, Vec<AgencyRow>) {
    let agencies: Vec<_> = ctx
        .agencies
        .get()
        .map(|s| s.state().iter().map(|a| (**a).clone()).collect())
        .unwrap_or_default();
    let systems: Vec<_> = ctx
        .systems
        .get()
        .map(|s| s.state().iter().map(|a| (**a).clone()).collect())
        .unwrap_or_default();
    let clusters: Vec<_> = ctx.clusters.state().iter().map(|d| (**d).clone()).collect();
    let months = (end.as_second() - start.as_second()) as f64 / (30.0 * 86400.0);
    let rows = util::agency_rows(&agencies, &systems, prices, months);
    let cluster_rows = util::cluster_rows(&clusters, &rows);
    let allocatable = util::sum(cluster_rows.iter().map(|c| &c.allocatable));
    let allocated = util::sum(rows.iter().map(|a| &a.quota));
    let used = util::sum(rows.iter().map(|a| &a.used));
    let mut top = rows.clone();
    top.sort_by(|a, b| {
        b.quota
            .cpu
            .total_cmp(&a.quota.cpu)
            .then_with(|| a.agency.cmp(&b.agency))
    });
    top.truncate(20);
    let summary = ReportSummary {
        clusters: cluster_rows.len() as u32,
        agencies: rows.len() as u32,
        allocatable,
        allocated,
        used,
        cpu_allocated_percent: percent(allocated.cpu, allocatable.cpu),
        cpu_used_percent: percent(used.cpu, allocatable.cpu),
        systems: rows.iter().map(|r| r.systems).sum(),
        systems_ready: rows.iter().map(|r| r.systems_ready).sum(),
        backup_non_compliant_agencies: rows.iter().filter(|r| r.backup_compliant == Some(false)).count() as u32,
        total_cost: prices.map(|p| format!("{:.2} {}", rows.iter().filter_map(|r| r.cost).sum::<f64>(), p.currency)),
    };
    let status = UtilizationReportStatus {
        phase: Some("Completed".into()),
        message: None,
        generated_at: Some(Time(Timestamp::now())),
        period_start: Some(Time(start)),
        period_end: Some(Time(end)),
        summary: Some(summary),
        clusters: cluster_rows,
        top_agencies: top,
        tables: vec![],
        currency: prices.map(|p| p.currency.clone()),
    };
    (status, rows)
}

/// Sets each row's CPU efficiency: actual use over the agency's namespaces ÷ requests.
fn add_efficiency(ctx: &Context, rows: &mut [AgencyRow], usage: &std::collections::HashMap<String, f64>) {
    let Some(agencies) = ctx.agencies.get() else { return };
    for r in rows.iter_mut() {
        let Some(a) = agencies.get(&kube::runtime::reflector::ObjectRef::new(&r.agency)) else {
            continue;
        };
        let actual: Option<f64> = a
            .status
            .iter()
            .flat_map(|s| s.environments.iter())
            .filter_map(|e| usage.get(&e.namespace))
            .copied()
            .reduce(|x, y| x + y);
        if let Some(actual) = actual
            && r.used.cpu > 0.0
        {
            r.cpu_efficiency = Some((actual / r.used.cpu * 1000.0).round() / 1000.0);
        }
    }
}

#[instrument(skip_all, fields(report = %ur.name_any()))]
async fn reconcile(ur: Arc<UtilizationReport>, ctx: Arc<Context>) -> Result<Action> {
    // A report is a snapshot: once completed it is never recomputed or rewritten.
    if ur.status.as_ref().is_some_and(|s| s.phase.is_some()) {
        return Ok(Action::await_change());
    }
    // A snapshot taken before the caches are filled would be empty for good: wait for them.
    let synced = async {
        let (Some(a), Some(s)) = (ctx.agencies.get(), ctx.systems.get()) else {
            return false;
        };
        a.wait_until_ready().await.is_ok()
            && s.wait_until_ready().await.is_ok()
            && ctx.clusters.wait_until_ready().await.is_ok()
    };
    if !tokio::time::timeout(Duration::from_secs(5), synced)
        .await
        .unwrap_or(false)
    {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let name = ur.name_any();
    let created = ur
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    let end = ur.spec.period_end.as_ref().map(|t| t.0).unwrap_or(created);
    let start = ur
        .spec
        .period_start
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(|| end.checked_sub(24.hours()).unwrap_or(end));
    let prices = prices(&ctx, &ur).await;
    let (mut status, mut rows) = compute(&ctx, prices.as_ref(), start, end);
    if let Some(usage) = super::utilization::actual_cpu(&ctx).await {
        add_efficiency(&ctx, &mut rows, &usage);
        for r in status.top_agencies.iter_mut() {
            r.cpu_efficiency = rows
                .iter()
                .find(|x| x.agency == r.agency)
                .and_then(|x| x.cpu_efficiency);
        }
    }
    let owner = ur
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    for (i, part) in parts(&rows, PART_BYTES).iter().enumerate() {
        let cm_name = format!("{name}-agencies-{i}");
        let body = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": cm_name, "namespace": ctx.settings.namespace, "ownerReferences": [owner],
                         "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, "govcloud.io/report": name}},
            "data": {TABLE_KEY: serde_json::to_string(part).map_err(|source| Error::Serialize { what: "report table", source })?},
        });
        ctx.metrics.child_applied(CONTROLLER);
        cms.patch(&cm_name, &field_manager::<UtilizationReport>(), &Patch::Apply(&body))
            .await?;
        status.tables.push(TableRef {
            config_map: cm_name,
            rows: part.len() as u32,
        });
    }
    let body = json!({"apiVersion": UtilizationReport::api_version(&()), "kind": UtilizationReport::kind(&()), "status": status});
    Api::<UtilizationReport>::all(ctx.client.clone())
        .patch_status(&name, &field_manager::<UtilizationReport>(), &Patch::Apply(&body))
        .await?;
    info!(agencies = rows.len(), "utilization report generated");
    Ok(Action::await_change())
}

/// The scheduled report due at `now` for `kind` (`daily` or `monthly`), in Beijing time:
/// (name, period start, period end).
pub fn due(kind: &str, now: Timestamp) -> Option<(String, Timestamp, Timestamp)> {
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").ok()?;
    let today = now.to_zoned(tz.clone()).date();
    let (label, start, end) = match kind {
        "daily" => {
            let y = today.yesterday().ok()?;
            (y.to_string(), y, today)
        }
        "monthly" => {
            let first = today.first_of_month();
            let prev = first.yesterday().ok()?.first_of_month();
            (format!("{:04}-{:02}", prev.year(), prev.month()), prev, first)
        }
        _ => return None,
    };
    let at = |d: jiff::civil::Date| d.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
    Some((format!("{kind}-{label}"), at(start)?, at(end)?))
}

/// Creates the daily and monthly reports when due and keeps the newest `keep` of each.
pub async fn run_schedule(ctx: Arc<Context>, keep_daily: usize, keep_monthly: usize) {
    let api: Api<UtilizationReport> = Api::all(ctx.client.clone());
    loop {
        for (kind, keep) in [("daily", keep_daily), ("monthly", keep_monthly)] {
            if keep == 0 {
                continue;
            }
            let Some((name, start, end)) = due(kind, Timestamp::now()) else {
                continue;
            };
            if let Ok(None) = api.get_opt(&name).await {
                let ur: std::result::Result<UtilizationReport, _> = serde_json::from_value(json!({
                    "apiVersion": "govcloud.io/v1alpha1", "kind": "UtilizationReport",
                    "metadata": {"name": name, "labels": {SCHEDULE_LABEL: kind}},
                    "spec": {"periodStart": Time(start), "periodEnd": Time(end)}
                }));
                if let Ok(ur) = ur
                    && let Err(e) = api.create(&PostParams::default(), &ur).await
                {
                    warn!(error = %e, report = %name, "cannot create the scheduled report");
                }
            }
            if let Ok(list) = api
                .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={kind}")))
                .await
            {
                let mut names: Vec<String> = list.items.iter().map(|r| r.name_any()).collect();
                names.sort();
                let excess = names.len().saturating_sub(keep);
                for old in names.into_iter().take(excess) {
                    let _ = api.delete(&old, &DeleteParams::background()).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, synced: PendingCache, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (reader, stream) = crate::lenient::reflector::<UtilizationReport>(
        ctx.client.clone(),
        watcher::Config::default(),
        ctx.lenient.clone(),
    );
    let controller = Controller::for_stream(stream, reader);
    super::context::signal_when_synced(controller.store(), synced);
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<UtilizationReport>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Reads a completed report and its agency table (ConfigMaps in `namespace`) and renders it.
pub async fn export(client: &kube::Client, namespace: &str, name: &str, format: Format) -> anyhow::Result<String> {
    let ur = Api::<UtilizationReport>::all(client.clone())
        .get_opt(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no UtilizationReport {name} (`kubectl get utilizationreports` lists them)"))?;
    let st = ur.status.unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    govcloud_core::report::export(name, namespace, &st, format, async |part: &str| cms.get_opt(part).await)
        .await
        .map_err(|e| match e {
            ExportError::Read(e) => anyhow::Error::from(e),
            other => anyhow::Error::from(other),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_periods_in_beijing_time() {
        let now: Timestamp = "2026-11-28T03:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let (n, s, e) = due("daily", now).unwrap_or_else(|| panic!("daily"));
        assert_eq!(n, "daily-2026-11-27");
        assert_eq!(s.to_string(), "2026-11-26T16:00:00Z");
        assert_eq!(e.to_string(), "2026-11-27T16:00:00Z");
        let (n, s, e) = due("monthly", now).unwrap_or_else(|| panic!("monthly"));
        assert_eq!(n, "monthly-2026-10");
        assert_eq!(s.to_string(), "2026-09-30T16:00:00Z");
        assert_eq!(e.to_string(), "2026-10-31T16:00:00Z");
    }

    #[test]
    fn tables_split_under_the_limit() {
        let row = AgencyRow {
            agency: "a".repeat(50),
            ..Default::default()
        };
        let rows = vec![row; 5000];
        let p = parts(&rows, PART_BYTES);
        assert!(p.len() > 1);
        assert_eq!(p.iter().map(Vec::len).sum::<usize>(), 5000);
        for part in &p {
            assert!(serde_json::to_string(part).map(|s| s.len()).unwrap_or(usize::MAX) <= PART_BYTES);
        }
        assert_eq!(parts(&[], PART_BYTES).len(), 1, "an empty table is one empty part");
    }
}
