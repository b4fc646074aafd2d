//! `DataCenterCluster`: a Kubernetes cluster of the data center that can host agency clouds.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{NetworkZone, conditions_schema};

/// A member cluster of the national government data center.
///
/// Register every cluster that may host agency private clouds. A cluster without
/// `kubeconfigSecret` is the management cluster the operator itself runs in (the hub).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govcloud.io",
    version = "v1alpha1",
    kind = "DataCenterCluster",
    doc = "A Kubernetes cluster of the national government data center that can host agency private clouds: its region, network zone, certified security level and capacity.",
    plural = "datacenterclusters",
    shortname = "dcc",
    category = "govcloud",
    status = "DataCenterClusterStatus",
    derive = "PartialEq",
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "Zone", type_ = "string", json_path = ".spec.zone"),
    printcolumn(
        name = "Level",
        type_ = "integer",
        json_path = ".spec.maxSecurityLevel",
        description = "Highest security protection level (等级保护) the cluster is certified for"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodeCount"),
    printcolumn(
        name = "CPU",
        type_ = "string",
        json_path = ".status.allocatable.cpu",
        description = "Allocatable CPU over all nodes"
    ),
    printcolumn(
        name = "Memory",
        type_ = "string",
        json_path = ".status.allocatable.memory",
        description = "Allocatable memory over all nodes"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.kubernetesVersion",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DataCenterClusterSpec {
    /// Region (data center site) the cluster is in, e.g. `beijing` or `guizhou`. Data of the
    /// agencies placed here stays in this region; off-site backups go to another region.
    /// Lowercase letters, digits and dashes.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub region: String,

    /// Network zone: `internal` (政务内网, classified, no internet) or `external`
    /// (政务外网, non-classified, with the unified internet exit).
    pub zone: NetworkZone,

    /// Highest security protection level (等级保护, MLPS 2.0, 1–4) this cluster is certified
    /// for. An agency or system above this level is never placed here.
    #[schemars(range(min = 1, max = 4))]
    pub max_security_level: u8,

    /// Who runs the cluster: `national` (the national data center) or `partner`
    /// (a partner data center operating under the national one).
    #[serde(default)]
    pub ownership: Ownership,

    /// Whether new agency clouds may be placed here. Set to false to drain a cluster:
    /// agencies already placed stay (placement is sticky).
    #[serde(default = "default_true")]
    pub schedulable: bool,

    /// Overcommit ratios applied to allocatable capacity when placing agency quotas.
    #[serde(default)]
    pub overcommit: Overcommit,

    /// Secret in the operator's namespace holding a kubeconfig for this cluster.
    /// Leave empty for the management cluster the operator runs in (the hub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret: Option<KubeconfigSecretRef>,

    /// Human-readable name shown in reports, e.g. `国家政务云北京节点`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Who operates a cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Operated by the national data center.
    #[default]
    National,
    /// Operated by a partner data center.
    Partner,
}

/// CPU and memory overcommit ratios (1 = no overcommit).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overcommit {
    /// Ratio of placeable CPU quota to allocatable CPU, from 1 (none) to 10.
    #[serde(default = "one")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub cpu: f64,
    /// Ratio of placeable memory quota to allocatable memory, from 1 (none) to 4.
    #[serde(default = "one")]
    #[schemars(range(min = 1.0, max = 4.0))]
    pub memory: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for Overcommit {
    fn default() -> Self {
        Overcommit { cpu: 1.0, memory: 1.0 }
    }
}

/// Reference to a kubeconfig stored in a Secret of the operator's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeconfigSecretRef {
    /// Name of the Secret (in the operator's namespace, normally `govcloud-system`).
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// Key in the Secret whose value is the kubeconfig. Defaults to `kubeconfig`.
    #[serde(default = "default_kubeconfig_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_kubeconfig_key() -> String {
    "kubeconfig".to_string()
}

/// Observed state of a member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataCenterClusterStatus {
    /// `Reachable` (the API server answers with valid credentials) and `Ready`
    /// (reachable, has ready nodes and may take placements).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kubernetes version reported by the cluster's API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// Number of nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<i32>,
    /// Number of Ready nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_node_count: Option<i32>,
    /// Sum of node capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<ResourceTotals>,
    /// Sum of node allocatable resources (capacity minus system reservations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocatable: Option<ResourceTotals>,
    /// When a probe last found the cluster's state changed (this status is written only on a
    /// change, so a steady fleet costs no writes). The time of the latest probe, changed or
    /// not, is the metric govcloud_cluster_probe_timestamp_seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
}

/// CPU, memory and pod totals.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTotals {
    /// CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Quantity>,
}
