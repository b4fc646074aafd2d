//! `EvidenceReport`: a signed evidence report of one agency for a security-level assessment
//! (等级保护测评), kept in the agency's own namespace on the hub so that the agency reads its
//! own and no other's.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Label of EvidenceReports: `monthly` (made by the operator) or `on-demand`.
pub const KIND_LABEL: &str = "govcloud.io/evidence";

/// A signed evidence report of one agency: for each control of its security level, what
/// enforces it and the live objects that prove it, and what is missing or failing. Written
/// by the operator only (monthly, or on demand with `govcloud-operator evidence --store`);
/// agencies read their own. `spec.document` is the signed file itself: save it with
/// `kubectl govcloud evidence` and check it with `kubectl govcloud verify`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govcloud.io",
    version = "v1alpha1",
    kind = "EvidenceReport",
    doc = "A signed evidence report of one agency for a security-level assessment (等级保护测评): each control of its level, what enforces it, the live objects that prove it, and what is missing or failing. SM2-signed; written by the operator only.",
    plural = "evidencereports",
    shortname = "er",
    category = "govcloud",
    namespaced,
    derive = "PartialEq",
    printcolumn(name = "Agency", type_ = "string", json_path = ".spec.agency"),
    printcolumn(name = "Level", type_ = "integer", json_path = ".spec.securityLevel"),
    printcolumn(name = "Period-End", type_ = "date", json_path = ".spec.periodEnd"),
    printcolumn(name = "Met", type_ = "integer", json_path = ".spec.met"),
    printcolumn(name = "Missing", type_ = "integer", json_path = ".spec.missing"),
    printcolumn(name = "Failing", type_ = "integer", json_path = ".spec.failing"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceReportSpec {
    /// The AgencyCloud the report is about.
    #[schemars(length(min = 1, max = 63))]
    pub agency: String,
    /// Its security level when the report was made.
    #[schemars(range(min = 1, max = 4))]
    pub security_level: u8,
    /// Start of the period covered.
    pub period_start: Time,
    /// End of the period covered.
    pub period_end: Time,
    /// Control lines met.
    pub met: u32,
    /// Control lines missing.
    pub missing: u32,
    /// Control lines failing.
    pub failing: u32,
    /// Id of the platform key that signed it (SM3 of the public key, 16 hex digits).
    #[schemars(length(max = 64))]
    pub key_id: String,
    /// The signed report, exactly as signed (canonical JSON). Save it byte for byte
    /// (`kubectl govcloud evidence <agency>`): any change breaks its signature.
    #[schemars(length(max = 1048576))]
    pub document: String,
}
