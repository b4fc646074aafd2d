//! Types shared by several govcloud resources.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// API group of every govcloud resource.
pub const GROUP: &str = "govcloud.io";
/// API version of every govcloud resource.
pub const VERSION: &str = "v1alpha1";

/// The government network zone a cluster or agency belongs to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkZone {
    /// 政务内网 — the classified government internal network. No internet.
    Internal,
    /// 政务外网 — the non-classified government external network, with the unified internet exit.
    External,
}

impl NetworkZone {
    /// The value as written in manifests and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkZone::Internal => "internal",
            NetworkZone::External => "external",
        }
    }
}

impl std::fmt::Display for NetworkZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Schema for `status.conditions`: a list of metav1 Conditions keyed by `type`,
/// so that server-side apply merges conditions by type.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "description": "Current state of the object, one entry per condition type (Ready and the specific conditions of this kind). Each has a status, a CamelCase reason, a human message saying what to do, and the time it last changed.",
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"]
    })
}
