//! `ServiceTemplate` (服务目录): a platform-defined common service — office/OA, information
//! disclosure, citizen surveys, mail — that agencies instantiate as a HostedSystem.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::hosted::{Component, Exposure, Flow};

/// A common service of the data center's catalogue, kept by the platform team. It holds
/// every published version: a HostedSystem that names no version follows the newest (the
/// last in `versions`) and rolls out when a version is appended; one that names a version
/// stays on it. Parameters are written `${name}` in the components' strings.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govcloud.io",
    version = "v1alpha1",
    kind = "ServiceTemplate",
    doc = "A common service of the data center's catalogue (服务目录: 办公、信息公开、政民互动、调查、邮件) that agencies instantiate as a HostedSystem; versioned, with parameters.",
    plural = "servicetemplates",
    shortname = "stpl",
    category = "govcloud",
    derive = "PartialEq",
    printcolumn(name = "Display-Name", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Category", type_ = "string", json_path = ".spec.category"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("self.versions.all(v, self.versions.exists_one(w, w.version == v.version))").message("version names must be unique").field_path(".versions"),
    validation = kube::core::Rule::new("!has(self.parameters) || self.parameters.all(p, self.parameters.exists_one(q, q.name == p.name))").message("parameter names must be unique").field_path(".parameters"),
    validation = kube::core::Rule::new("!has(oldSelf.versions) || oldSelf.versions.all(o, self.versions.exists(v, v.version == o.version && v == o))").message("published versions cannot be changed or removed (systems may be pinned to them); append a new version instead").field_path(".versions"),
)]
pub struct ServiceTemplateSpec {
    /// Name shown to agencies, e.g. `协同办公系统`.
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,
    /// What the service does and who it is for.
    #[schemars(length(min = 1, max = 2000))]
    pub description: String,
    /// Catalogue category: `office` (办公), `disclosure` (信息公开), `interaction` (政民互动),
    /// `survey` (调查), `mail` (邮件) or `other`.
    pub category: TemplateCategory,
    /// Parameters agencies set in `spec.template.parameters` of their HostedSystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub parameters: Vec<TemplateParameter>,
    /// Published versions, oldest first; the last is the current one. Published versions
    /// are immutable: append a new one to roll out a change.
    #[schemars(length(min = 1, max = 50))]
    pub versions: Vec<TemplateVersion>,
}

/// Catalogue category.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateCategory {
    /// 协同办公.
    Office,
    /// 信息公开.
    Disclosure,
    /// 政民互动.
    Interaction,
    /// 调查征集.
    Survey,
    /// 政务邮件.
    Mail,
    /// Anything else.
    Other,
}

/// A parameter of a template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateParameter {
    /// Name, used as `${name}` in the template.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_]*$"))]
    pub name: String,
    /// What it sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500))]
    pub description: Option<String>,
    /// Value used when the system does not set it; without a default the parameter is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub default: Option<String>,
    /// A regular expression (RE2) the value must match, e.g. `^[0-9]+Gi$`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub pattern: Option<String>,
}

/// One published version of a template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("self.components.all(c, self.components.exists_one(d, d.name == c.name))").message("component names must be unique").field_path(".components"),
)]
pub struct TemplateVersion {
    /// Version, e.g. `1.2.0`.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[0-9A-Za-z][-.0-9A-Za-z]*$"))]
    pub version: String,
    /// The components, as in a HostedSystem; strings may use `${parameter}`.
    #[schemars(length(min = 1, max = 20))]
    pub components: Vec<Component>,
    /// Flows between the components (and out of the system).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub flows: Vec<Flow>,
    /// Default exposure; a system's own `spec.exposure` replaces it. `host` may use parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
}
