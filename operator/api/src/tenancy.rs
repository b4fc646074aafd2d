//! `TenancyRequest`: an agency asks for a private cloud; a platform approver decides.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::agency::CloudSpec;
use super::common::conditions_schema;

/// An agency's request for a private cloud (部门私有云). The operator validates it and
/// previews its placement; a platform approver approves or denies it by setting
/// `spec.decision` (an admission policy checks that `decidedBy` is the approver's own
/// authenticated name, that the approver holds the approval permission and that
/// `reviewedGeneration` is the request's current generation); on approval the operator
/// creates the AgencyCloud. Only the requester (or a platform approver) may change or
/// delete a request, and only the requester may change what it asks for.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govcloud.io",
    version = "v1alpha1",
    kind = "TenancyRequest",
    doc = "An agency's request for a private cloud (部门私有云): validated and placement-previewed by the operator, approved or denied by a platform approver, then provisioned as an AgencyCloud.",
    plural = "tenancyrequests",
    shortname = "tr",
    category = "govcloud",
    namespaced,
    status = "TenancyRequestStatus",
    derive = "PartialEq",
    printcolumn(name = "Agency", type_ = "string", json_path = ".spec.cloud.agency.displayName"),
    printcolumn(name = "Level", type_ = "integer", json_path = ".spec.cloud.securityLevel"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(
        name = "Would-Place-On",
        type_ = "string",
        json_path = ".status.placementPreview.cluster"
    ),
    printcolumn(
        name = "Generation",
        type_ = "integer",
        json_path = ".metadata.generation",
        priority = 1
    ),
    printcolumn(name = "Decision", type_ = "string", json_path = ".spec.decision.action"),
    printcolumn(
        name = "Decided-By",
        type_ = "string",
        json_path = ".spec.decision.decidedBy",
        priority = 1
    ),
    printcolumn(
        name = "Provisioned",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Provisioned\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("!has(oldSelf.decision) || (has(self.decision) && self.decision == oldSelf.decision)").message("a decision is final: it cannot be changed or withdrawn; create a new request instead").field_path(".decision"),
    validation = kube::core::Rule::new("!has(self.decision) || (self.cloud == oldSelf.cloud && self.justification == oldSelf.justification)").message("the request cannot change once decided, nor in the write that records the decision (a decision applies to the request as the approver reviewed it); create a new request instead").field_path(".cloud"),
    validation = kube::core::Rule::new("has(oldSelf.decision) || !has(self.decision) || has(self.decision.reviewedGeneration)").message("required on a new decision: set it to the metadata.generation of the request you reviewed (kubectl govcloud approve and deny fill it in)").field_path(".decision.reviewedGeneration"),
    validation = kube::core::Rule::new("has(self.requestedBy) == has(oldSelf.requestedBy) && (!has(self.requestedBy) || self.requestedBy == oldSelf.requestedBy)").message("requestedBy cannot change").field_path(".requestedBy"),
)]
pub struct TenancyRequestSpec {
    /// The private cloud requested (same fields as an AgencyCloud's spec).
    pub cloud: CloudSpec,
    /// Why the agency needs it: the systems to be hosted and their users.
    #[schemars(length(min = 10, max = 4000))]
    pub justification: String,
    /// The requester's user name, exactly as the API server authenticates them. Required
    /// at creation and checked to be the caller's own name; it never changes. Only this
    /// user may change `cloud` and `justification`; only this user or a platform approver
    /// may update or delete the request; approvers cannot decide their own requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub requested_by: Option<String>,
    /// The platform approver's decision. Only users allowed to `create`
    /// `tenancyrequests/approve` may set it, and `decidedBy` must be their own user name.
    /// Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// An approver's decision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// `Approve` or `Deny`.
    pub action: DecisionAction,
    /// The approver's user name, exactly as the API server authenticates them (checked at admission).
    #[schemars(length(min = 1, max = 253))]
    pub decided_by: String,
    /// Why.
    #[schemars(length(min = 1, max = 2000))]
    pub reason: String,
    /// The `metadata.generation` of the request the approver reviewed. Required on every
    /// new decision; the API server refuses the decision unless it is the request's
    /// current generation (the request has not changed since it was reviewed), and the
    /// operator provisions an approved request only if nothing but the decision changed
    /// after that generation. Optional in the schema only so that decisions recorded
    /// before it existed still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub reviewed_generation: Option<i64>,
}

/// Approve or deny.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum DecisionAction {
    /// Provision the cloud.
    Approve,
    /// Refuse it; nothing is created.
    Deny,
}

/// Which cluster would take the request, or why each cannot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementPreview {
    /// The cluster placement would choose now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Clusters that cannot take it, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<ClusterRejection>,
}

/// One cluster that cannot take the cloud.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRejection {
    /// DataCenterCluster name.
    pub cluster: String,
    /// CamelCase reason, e.g. `ZoneMismatch`, `LevelTooLow`, `InsufficientCPU`.
    pub reason: String,
    /// Explanation.
    pub message: String,
}

/// Observed state of a tenancy request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenancyRequestStatus {
    /// `Valid` (identity, code, uniqueness, quotas, level/zone), `Placeable` (a cluster
    /// would take it), `Decided`, `Provisioned`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Placement preview, refreshed until a decision is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_preview: Option<PlacementPreview>,
    /// The AgencyCloud created on approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_cloud: Option<String>,
    /// When the operator first saw the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_observed_time: Option<Time>,
}
