//! `UtilizationReport`: a point-in-time account of how the data center's compute and storage
//! are used (存量资源整合利用), per cluster and per agency, with optional chargeback.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::core::utilization::{AgencyRow, ClusterRow, PriceCatalogue, Totals};

/// A utilization report. Create one on demand (the period only prices the quotas; the
/// numbers are those at generation time); the operator also creates `daily-YYYY-MM-DD` and
/// `monthly-YYYY-MM` reports. The per-agency table is kept in ConfigMaps of the operator's
/// namespace (`status.tables`), so that thousands of agencies fit; `govcloud-operator report
/// NAME -o csv|json|html` writes it out.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govcloud.io",
    version = "v1alpha1",
    kind = "UtilizationReport",
    doc = "A point-in-time utilization report (资源利用报告): per cluster capacity, allocation and use; per agency quota, use, systems, backup compliance and optional cost.",
    plural = "utilizationreports",
    shortname = "ur",
    category = "govcloud",
    status = "UtilizationReportStatus",
    derive = "PartialEq",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Agencies", type_ = "integer", json_path = ".status.summary.agencies"),
    printcolumn(name = "Clusters", type_ = "integer", json_path = ".status.summary.clusters"),
    printcolumn(
        name = "CPU-Allocated",
        type_ = "string",
        json_path = ".status.summary.cpuAllocatedPercent",
        description = "Quotas placed ÷ allocatable CPU"
    ),
    printcolumn(
        name = "CPU-Used",
        type_ = "string",
        json_path = ".status.summary.cpuUsedPercent",
        description = "Requests in use ÷ allocatable CPU"
    ),
    printcolumn(
        name = "Cost",
        type_ = "string",
        json_path = ".status.summary.totalCost",
        priority = 1
    ),
    printcolumn(name = "Generated", type_ = "date", json_path = ".status.generatedAt")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("!has(self.periodStart) || !has(self.periodEnd) || timestamp(self.periodStart) < timestamp(self.periodEnd)").message("periodStart must be before periodEnd").field_path(".periodStart"),
    validation = kube::core::Rule::new("self == oldSelf").message("a report is a snapshot: its spec cannot change; create a new report"),
)]
pub struct UtilizationReportSpec {
    /// Start of the period the report covers (prices the quotas); default a day before
    /// `periodEnd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<Time>,
    /// End of the period; default the report's creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_end: Option<Time>,
    /// Prices for chargeback; default the operator's price catalogue (ConfigMap
    /// `govcloud-price-catalogue` in its namespace), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<PriceCatalogue>,
}

/// Totals over the whole report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportSummary {
    /// Clusters.
    pub clusters: u32,
    /// Agencies.
    pub agencies: u32,
    /// Sum of allocatable resources.
    pub allocatable: Totals,
    /// Sum of placed quotas.
    pub allocated: Totals,
    /// Sum of quota usage.
    pub used: Totals,
    /// Allocated ÷ allocatable CPU, e.g. `42%`.
    pub cpu_allocated_percent: String,
    /// Used ÷ allocatable CPU.
    pub cpu_used_percent: String,
    /// Hosted systems.
    pub systems: u32,
    /// Hosted systems Available.
    pub systems_ready: u32,
    /// Agencies whose BackupCompliant is False.
    pub backup_non_compliant_agencies: u32,
    /// Total cost of the period, e.g. `12345.67 CNY` (with prices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cost: Option<String>,
}

/// A ConfigMap holding part of the agency table.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableRef {
    /// ConfigMap in the operator's namespace (key `agencies.json`).
    pub config_map: String,
    /// Rows in it.
    pub rows: u32,
}

/// The report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UtilizationReportStatus {
    /// `Completed` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// What went wrong, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the numbers were taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<Time>,
    /// The period used for pricing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<Time>,
    /// End of that period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_end: Option<Time>,
    /// Totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ReportSummary>,
    /// Every cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterRow>,
    /// The 20 agencies with the largest CPU quota.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_agencies: Vec<AgencyRow>,
    /// The full agency table, in parts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableRef>,
    /// Currency of the costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}
