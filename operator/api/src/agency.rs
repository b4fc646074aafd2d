//! `AgencyCloud` (部门私有云) and the types it shares with `TenancyRequest`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{NetworkZone, conditions_schema};
use crate::credit_code;

/// Finalizer of an AgencyCloud: the operator removes the agency's objects from its member cluster first.
pub const FINALIZER: &str = "govcloud.io/agency-cleanup";

/// CEL rule that recomputes the GB 32100-2015 check character, so the API server itself
/// refuses a mistyped code.
pub fn credit_code_rule() -> kube::core::Rule {
    let a = format!("'{}'", credit_code::ALPHABET);
    let sum = credit_code::WEIGHTS
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{a}.indexOf(self.charAt({i})) * {w}"))
        .collect::<Vec<_>>()
        .join(" + ");
    kube::core::Rule::new(format!(
        "size(self) == 18 && (31 - ({sum}) % 31) % 31 == {a}.indexOf(self.charAt(17))"
    ))
    .message("check character (18th) does not match the first 17 characters (GB 32100-2015); the code is mistyped")
}

/// Lowercase ASCII DNS name of at least two labels, each 1–63 characters; no wildcard.
pub const DNS_NAME_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";

/// A DNS domain of an agency: lowercase ASCII, at least two labels, no wildcard.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Domain(
    #[schemars(
        length(min = 3, max = 253),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    )]
    pub String,
);

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for Domain {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Who the agency is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgencyIdentity {
    /// Official name of the agency, e.g. `财政部` or `浙江省大数据发展管理局`.
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,
    /// Short DNS-safe name, used in namespace names (`<shortName>-<environment>`): 2–20
    /// lowercase letters, digits and dashes, starting with a letter. Must equal the
    /// AgencyCloud's name.
    #[schemars(length(min = 2, max = 20), regex(pattern = r"^[a-z][-a-z0-9]*[a-z0-9]$"))]
    #[x_kube(validation = kube::core::Rule::new("!self.startsWith('kube') && !self.startsWith('govcloud') && !self.startsWith('openshift')").message("may not start with kube, govcloud or openshift: namespaces <shortName>-<environment> with those prefixes belong to the cluster and the platform"))]
    pub short_name: String,
    /// Unified social credit code (统一社会信用代码), 18 characters, with its GB 32100-2015
    /// check character, e.g. `11100000MB0123456X`.
    #[schemars(
        length(min = 18, max = 18),
        regex(pattern = r"^[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}$")
    )]
    #[x_kube(validation = credit_code_rule())]
    pub credit_code: String,
    /// Administrative level: `central`, `provincial`, `municipal` or `county`.
    pub admin_level: AdminLevel,
    /// Who to contact about this cloud.
    pub contact: Contact,
}

/// Administrative level of an agency.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdminLevel {
    /// 中央 — central ministries and commissions.
    Central,
    /// 省级 — provinces, autonomous regions, municipalities directly under the central government.
    Provincial,
    /// 市级 — prefecture-level cities.
    Municipal,
    /// 县级 — counties and districts.
    County,
}

/// A contact person; a phone number or an email address is required.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.phone) || has(self.email)").message("give a phone or an email address"))]
pub struct Contact {
    /// Name of the contact person.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// Phone number: digits, spaces, `+` and `-`, e.g. `010-6855 1234` or `+86 138 0000 0000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 5, max = 32), regex(pattern = r"^\+?[0-9][0-9 \-]{3,30}[0-9]$"))]
    pub phone: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))]
    pub email: Option<String>,
}

/// Resource quota of one environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// CPU requests the environment may reserve, e.g. `16` (cores) or `500m`.
    #[schemars(
        length(max = 32),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
    )]
    #[x_kube(validation = kube::core::Rule::new("quantity(self).isGreaterThan(quantity('0'))").message("must be more than 0"))]
    pub cpu: String,
    /// Memory requests, e.g. `64Gi`.
    #[schemars(
        length(max = 32),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
    )]
    #[x_kube(validation = kube::core::Rule::new("quantity(self).isGreaterThan(quantity('0'))").message("must be more than 0"))]
    pub memory: String,
    /// Persistent storage requests over all volume claims, e.g. `500Gi`. Default `0` (no volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
    )]
    pub storage: Option<String>,
    /// Maximum number of pods. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub pods: Option<i32>,
    /// GPUs (`nvidia.com/gpu` requests). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1024))]
    pub gpus: Option<i32>,
}

/// One environment (e.g. `prod`, `test`): a namespace `<shortName>-<name>` with its quota.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// Environment name: 1–15 lowercase letters and digits, starting with a letter, e.g. `prod`.
    #[schemars(length(min = 1, max = 15), regex(pattern = r"^[a-z][a-z0-9]*$"))]
    pub name: String,
    /// Quota of the environment.
    pub quota: Quota,
}

/// A user or group of the agency.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// `User` or `Group`.
    pub kind: SubjectKind,
    /// User or group name as the API server authenticates it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kind of subject.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum SubjectKind {
    /// A user.
    User,
    /// A group.
    Group,
}

/// An allowed egress destination outside the agency.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// Rule name, used in the NetworkPolicy name: lowercase letters, digits and dashes.
    #[schemars(length(min = 1, max = 30), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Destination network in CIDR notation, e.g. `10.20.0.0/16`.
    #[schemars(length(min = 9, max = 43))]
    #[x_kube(validation = kube::core::Rule::new("isCIDR(self)").message("must be a CIDR such as 10.20.0.0/16"))]
    pub cidr: String,
    /// TCP ports allowed; empty means every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ports: Vec<Port>,
    /// This rule goes to the internet through the unified internet exit. Required at level 3
    /// for internet destinations; never allowed at level 4 or on the internal zone.
    #[serde(default)]
    pub internet_exit: bool,
    /// What the destination is, for auditors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
}

/// A port number.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Port, 1–65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// `TCP` (default) or `UDP`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Transport protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum Protocol {
    /// TCP.
    #[default]
    TCP,
    /// UDP.
    UDP,
}

/// Where the agency cloud may be placed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementHints {
    /// Only this DataCenterCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub cluster: Option<String>,
    /// Only clusters in this region (data residency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub region: Option<String>,
    /// Only clusters whose DataCenterCluster carries all these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cluster_selector: BTreeMap<String, String>,
}

/// What happens to the agency's namespaces when the AgencyCloud is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeletionPolicy {
    /// Deletion waits while any workload (pod, Deployment, StatefulSet, Job) or
    /// PersistentVolumeClaim exists in the agency's namespaces; then the namespaces are deleted.
    #[default]
    Protect,
    /// The namespaces are deleted with everything in them.
    Delete,
    /// The namespaces and everything in them are left on the cluster; only the guardrails
    /// the operator created are removed.
    Retain,
}

/// The desired private cloud of an agency. Shared by `AgencyCloud.spec` and
/// `TenancyRequest.spec.cloud`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("self.securityLevel < 4 || self.zone == 'internal'").message("level 4 agencies must be on the internal zone (政务内网)").field_path(".zone"),
    validation = kube::core::Rule::new("self.zone == 'external' || !has(self.egress) || self.egress.all(e, !e.internetExit)").message("the internal zone (政务内网) has no internet exit: remove internetExit").field_path(".egress"),
    validation = kube::core::Rule::new("self.securityLevel < 4 || !has(self.egress) || self.egress.all(e, !e.internetExit)").message("level 4 agencies may not reach the internet: remove internetExit").field_path(".egress"),
)]
pub struct CloudSpec {
    /// Who the agency is.
    pub agency: AgencyIdentity,
    /// Security protection level (等级保护) 1–4. Decides the clusters it may be placed on,
    /// Pod Security, network rules and backup requirements (see docs/platform-guide.md).
    #[schemars(range(min = 1, max = 4))]
    pub security_level: u8,
    /// Network zone: `internal` (政务内网) or `external` (政务外网). Cannot change once set.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("zone cannot change: the agency's data is on a cluster of this zone"))]
    pub zone: NetworkZone,
    /// Environments, each a namespace with a quota. At least one, at most 8.
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(validation = kube::core::Rule::new("self.all(e, self.exists_one(f, f.name == e.name))").message("environment names must be unique"))]
    pub environments: Vec<Environment>,
    /// Users and groups who run workloads in the agency's namespaces. They cannot change
    /// quotas, network policies or namespace security labels.
    #[schemars(length(min = 1, max = 64))]
    pub owners: Vec<Subject>,
    /// Users and groups with read-only access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub viewers: Vec<Subject>,
    /// Destinations outside the agency that workloads may reach (level 2+ denies all other egress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub egress: Vec<EgressRule>,
    /// DNS domains the agency's systems may be reached at, e.g. `mof.gov.cn`: a
    /// HostedSystem's `exposure.host` must be one of them or a name under one. Reviewed with
    /// the tenancy request. A host belongs to the agency with the longest matching domain,
    /// so a broader domain of one agency (`gov.cn`) never covers a narrower one of another
    /// (`mof.gov.cn`); a domain given to two agencies can be used by neither. Lowercase
    /// ASCII, at least two labels, no wildcard (internationalised names in their `xn--` form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub domains: Vec<Domain>,
    /// Image registries pods may pull from, as prefixes such as `registry.gov.cn` or
    /// `harbor.dc.gov.cn/mof`. Images from anywhere else are refused at admission.
    #[schemars(length(min = 1, max = 32))]
    pub allowed_registries: Vec<Registry>,
    /// Where the cloud may be placed. Placement is sticky: once placed, the cloud never moves.
    #[serde(default)]
    pub placement: PlacementHints,
    /// What deleting the AgencyCloud does to its namespaces: `Protect` (default), `Delete`, `Retain`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// An image registry prefix: a host (with optional port) and optional path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Registry(
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._\-/]*[a-z0-9])?$")
    )]
    pub String,
);

/// An agency's private cloud (部门私有云): isolated namespaces with quotas, network
/// isolation, access for the agency's staff and admission guardrails, on the data-center
/// cluster chosen by placement.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govcloud.io",
    version = "v1alpha1",
    kind = "AgencyCloud",
    doc = "An agency's private cloud (部门私有云): isolated namespaces with quotas, network isolation, access for the agency's staff and admission guardrails, placed on a data-center cluster certified for its security level.",
    plural = "agencyclouds",
    shortname = "ac",
    category = "govcloud",
    status = "AgencyCloudStatus",
    derive = "PartialEq",
    validation = kube::core::Rule::new("self.metadata.name == self.spec.agency.shortName").message("metadata.name must equal spec.agency.shortName"),
    printcolumn(name = "Agency", type_ = "string", json_path = ".spec.agency.displayName"),
    printcolumn(name = "Level", type_ = "integer", json_path = ".spec.securityLevel"),
    printcolumn(name = "Zone", type_ = "string", json_path = ".spec.zone"),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".status.placement.cluster"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AgencyCloudSpec {
    /// The desired cloud.
    #[serde(flatten)]
    pub cloud: CloudSpec,
}

/// Where the agency's cloud (and so its data) is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    /// DataCenterCluster the cloud is placed on. Never changes once set.
    pub cluster: String,
    /// Region of that cluster: where the agency's data lives.
    pub region: String,
    /// Network zone of that cluster.
    pub zone: NetworkZone,
}

/// Quota and usage of one environment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// Environment name.
    pub name: String,
    /// Namespace on the placed cluster (and on the hub).
    pub namespace: String,
    /// Quota limits as enforced by the ResourceQuota.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hard: BTreeMap<String, String>,
    /// Current usage reported by the ResourceQuota.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub used: BTreeMap<String, String>,
}

/// Observed state of an agency cloud.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgencyCloudStatus {
    /// `Ready`, `Placed`, `Isolated`, `QuotaFits` and, while deletion waits, `DeletionBlocked`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the cloud is placed; absent until placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementStatus>,
    /// Per environment: namespace, quota and usage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<EnvironmentStatus>,
}
