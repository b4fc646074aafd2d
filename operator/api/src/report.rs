//! `UtilizationReport`: a point-in-time account of how the data center's compute and storage
//! are used (存量资源整合利用), per cluster and per agency, with optional chargeback.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

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

/// Key of the agency rows (JSON) in a table ConfigMap.
pub const TABLE_KEY: &str = "agencies.json";
/// Label on scheduled reports: `daily` or `monthly`.
pub const SCHEDULE_LABEL: &str = "govcloud.io/report-schedule";

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

/// CPU (cores), memory and storage (bytes) and pods.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// CPU cores.
    pub cpu: f64,
    /// Memory bytes.
    pub memory: f64,
    /// Storage bytes.
    pub storage: f64,
    /// Pods.
    pub pods: f64,
}

impl Totals {
    /// The four resources with their metric names.
    pub fn by_resource(&self) -> [(&'static str, f64); 4] {
        [
            ("cpu", self.cpu),
            ("memory", self.memory),
            ("storage", self.storage),
            ("pods", self.pods),
        ]
    }
}

/// Prices per month, for chargeback (CNY or any currency; stated by the platform).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceCatalogue {
    /// Currency code, e.g. `CNY`.
    #[serde(default = "cny")]
    pub currency: String,
    /// Per vCPU of quota per month.
    pub cpu_core_month: f64,
    /// Per GiB of memory quota per month.
    #[serde(rename = "memoryGiBMonth")]
    pub memory_gib_month: f64,
    /// Per GiB of storage quota per month.
    #[serde(rename = "storageGiBMonth")]
    pub storage_gib_month: f64,
}

fn cny() -> String {
    "CNY".into()
}

/// One cluster's row.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRow {
    /// DataCenterCluster name.
    pub cluster: String,
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Whether its API server answers.
    pub reachable: bool,
    /// Sum of node capacity.
    pub capacity: Totals,
    /// Sum of node allocatable.
    pub allocatable: Totals,
    /// Sum of the quotas placed on it.
    pub allocated: Totals,
    /// Sum of the quota usage of the agencies placed on it.
    pub used: Totals,
    /// Agencies placed on it.
    pub agencies: u32,
}

/// One agency's row.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgencyRow {
    /// AgencyCloud name.
    pub agency: String,
    /// Display name.
    pub display_name: String,
    /// Security level.
    pub level: u8,
    /// Placed cluster, region and zone.
    pub cluster: String,
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Quota (sum over environments).
    pub quota: Totals,
    /// Requests in use (sum over environments).
    pub used: Totals,
    /// Actual CPU use ÷ requested CPU, when a Prometheus with usage data is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_efficiency: Option<f64>,
    /// Hosted systems.
    pub systems: u32,
    /// Hosted systems Available.
    pub systems_ready: u32,
    /// `BackupCompliant` of the agency cloud (None when not reported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_compliant: Option<bool>,
    /// Cost of the quota over the report's period (with a price catalogue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}
