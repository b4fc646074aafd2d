//! `HostedSystem` (系统托管): an agency's system run by the data center on the agency's cluster.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::conditions_schema;

/// Finalizer of a HostedSystem: the operator removes the system's objects from the member cluster first.
pub const FINALIZER: &str = "govcloud.io/system-cleanup";

const HOST_RULE: &str = r"!has(self.exposure) || !has(self.exposure.host) || self.exposure.host.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')";

/// A system hosted for an agency: its components (Deployments or StatefulSets), the flows
/// allowed between them, its exposure, security level, data classification and migration
/// from the agency's old data center. Create it in one of the agency's namespaces on the
/// hub; it runs in the namespace of the same name on the agency's cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govcloud.io",
    version = "v1alpha1",
    kind = "HostedSystem",
    doc = "A system hosted for an agency (系统托管): components, allowed flows, exposure, security level, data classification and migration phase.",
    plural = "hostedsystems",
    shortname = "hs",
    category = "govcloud",
    namespaced,
    status = "HostedSystemStatus",
    derive = "PartialEq",
    validation = kube::core::Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must start with a letter and hold only lowercase letters, digits and dashes: it names Services (<name>-<component>), which must be DNS labels"),
    validation = kube::core::Rule::new("!self.metadata.name.startsWith('govcloud')").message("metadata.name may not start with 'govcloud': the platform's own objects in the namespace (govcloud-default-deny, govcloud-quota, ...) use that prefix"),
    validation = kube::core::Rule::new("!has(self.spec.components) || self.spec.components.all(c, size(self.metadata.name) + 1 + size(c.name) <= (has(c.kind) && c.kind == 'Stateful' ? 52 : 63))").message("metadata.name and spec.components[].name make object names <name>-<component> that must fit 63 characters (52 for Stateful components, whose pods add a suffix); shorten one of them"),
    printcolumn(name = "Level", type_ = "integer", json_path = ".spec.securityLevel"),
    printcolumn(name = "Data", type_ = "string", json_path = ".spec.dataClassification"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.readySummary",
        description = "Ready replicas / desired replicas over all components"
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(name = "Migration", type_ = "string", json_path = ".spec.migration.phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("has(self.template) || (has(self.components) && size(self.components) > 0)").message("give components, or a catalogue template in spec.template").field_path(".components"),
    validation = kube::core::Rule::new("!has(self.components) || self.components.all(c, self.components.exists_one(d, d.name == c.name))").message("component names must be unique").field_path(".components"),
    validation = kube::core::Rule::new("has(self.template) || !has(self.flows) || self.flows.all(f, self.components.exists(c, c.name == f.from))").message("every flow's `from` must name a component of this system").field_path(".flows"),
    validation = kube::core::Rule::new("has(self.template) || !has(self.flows) || self.flows.all(f, !has(f.to.component) || self.components.exists(c, c.name == f.to.component))").message("a flow's `to.component` must name a component of this system").field_path(".flows"),
    validation = kube::core::Rule::new("has(self.template) || !has(self.admit) || self.admit.all(a, self.components.exists(c, c.name == a.to))").message("admit[].to must name a component of this system").field_path(".admit"),
    validation = kube::core::Rule::new("!has(self.exposure) || self.exposure.mode != 'Internet' || self.securityLevel < 4").message("level 4 systems are never exposed to the internet").field_path(".exposure.mode"),
    validation = kube::core::Rule::new("has(self.template) || !has(self.exposure) || self.exposure.mode == 'None' || self.components.exists(c, c.name == self.exposure.component)").message("exposure.component must name a component of this system").field_path(".exposure.component"),
    validation = kube::core::Rule::new("has(self.template) || !has(self.exposure) || self.exposure.mode == 'None' || self.components.exists(c, c.name == self.exposure.component && has(c.ports) && c.ports.exists(p, p.port == self.exposure.port))").message("exposure.port must be one of the exposed component's ports").field_path(".exposure.port"),
    validation = kube::core::Rule::new("!has(self.internetExposureApproval) || self.securityLevel < 4").message("level 4 systems are never exposed to the internet; an approval cannot change that").field_path(".internetExposureApproval"),
    validation = kube::core::Rule::new(HOST_RULE).message("must be a lowercase DNS name such as portal.mof.gov.cn, under one of the agency's domains (no wildcard, no trailing dot, ASCII only: write internationalised names in their xn-- form)").field_path(".exposure.host"),
    validation = kube::core::Rule::new("!has(oldSelf.migration) || has(self.migration)").message("migration cannot be removed once recorded; set phase RolledBack or Decommissioned instead").field_path(".migration"),
)]
pub struct HostedSystemSpec {
    /// Security protection level (等级保护) 1–4; at most the agency's level. Level 3+ runs
    /// with a restricted security context.
    #[schemars(range(min = 1, max = 4))]
    pub security_level: u8,
    /// Data classification: `general` (一般数据), `important` (重要数据) or `core` (核心数据).
    pub data_classification: DataClassification,
    /// A common service from the data center's catalogue (a ServiceTemplate) to run, with
    /// its parameters. Its components come first; `components` adds more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// The components, up to 20 (at least one unless a template is given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub components: Vec<Component>,
    /// Allowed connections. Only these reach the system's pods (besides DNS); everything
    /// else, even from the same agency, is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub flows: Vec<Flow>,
    /// Other systems of the same namespace allowed to connect to this one (they also need a
    /// flow `to: {system: <this one>}`): both sides must agree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub admit: Vec<Admission>,
    /// How the system is reached from outside its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
    /// The platform's approval of internet exposure, required at level 3. Only users allowed
    /// to `create` `hostedsystems/approve-exposure` may set or change it, in their own name
    /// (an admission policy checks); it covers the host it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_exposure_approval: Option<ExposureApproval>,
    /// Migration from the agency's old data center, if the system is being moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
    /// What happens to the data volumes when the system (or a stateful component) is
    /// deleted: `Retain` (default — data is never lost by default) or `Delete`.
    #[serde(default)]
    pub volume_retention: VolumeRetention,
}

/// Another system allowed in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Admission {
    /// The other HostedSystem, in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub system: String,
    /// The component of this system it may reach.
    #[schemars(length(min = 1, max = 30))]
    pub to: String,
    /// TCP port; default every port of that component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// A platform approver's approval of internet exposure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposureApproval {
    /// The approver's user name (checked against the authenticated caller).
    #[schemars(length(min = 1, max = 253))]
    pub approved_by: String,
    /// The host name approved; the approval is void if `spec.exposure.host` differs.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Why, e.g. the security assessment (等保测评) reference.
    #[schemars(length(min = 10, max = 1000))]
    pub reason: String,
}

/// Data classification (数据分类分级).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataClassification {
    /// 一般数据.
    General,
    /// 重要数据.
    Important,
    /// 核心数据.
    Core,
}

/// Volume retention on deletion.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum VolumeRetention {
    /// Keep PersistentVolumeClaims.
    #[default]
    Retain,
    /// Delete them with the system.
    Delete,
}

/// Stateless (Deployment) or stateful (StatefulSet with volumes).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum ComponentKind {
    /// A Deployment.
    #[default]
    Stateless,
    /// A StatefulSet; may have `storage`.
    Stateful,
}

/// One component of a system.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("!has(self.storage) || self.kind == 'Stateful'").message("storage needs kind: Stateful").field_path(".storage"),
    validation = kube::core::Rule::new("!has(self.ports) || self.ports.all(p, self.ports.exists_one(q, q.port == p.port))").message("ports must not clash").field_path(".ports"),
)]
pub struct Component {
    /// Component name: lowercase letters, digits and dashes, e.g. `web` or `db`.
    #[schemars(length(min = 1, max = 30), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// `Stateless` (default) or `Stateful`.
    #[serde(default)]
    pub kind: ComponentKind,
    /// Container image, from one of the agency's allowed registries.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables: a value, or a key of a Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub env: Vec<EnvVar>,
    /// Replicas, 0–100. Default 1. More than 1 gets a PodDisruptionBudget.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// CPU and memory requested per replica (also the memory limit).
    #[serde(default)]
    pub resources: Resources,
    /// Ports the component serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub ports: Vec<ComponentPort>,
    /// HTTP readiness check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// A persistent volume (stateful components only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// At level 3+ the root filesystem is read-only; give a reason here to make it writable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 10, max = 500))]
    pub writable_root_filesystem_reason: Option<String>,
}

fn one() -> i32 {
    1
}

/// An environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.value) != has(self.secretKeyRef)").message("give exactly one of value or secretKeyRef"))]
pub struct EnvVar {
    /// Name.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A key of a Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Requests per replica.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU, e.g. `500m`. Default `100m`. (In a catalogue template also `${parameter}`.)
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?m?|\$\{[A-Za-z][A-Za-z0-9_]*\})$"))]
    pub cpu: String,
    /// Memory, e.g. `512Mi`. Default `128Mi`. (In a catalogue template also `${parameter}`.)
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?|\$\{[A-Za-z][A-Za-z0-9_]*\})$"))]
    pub memory: String,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: "100m".into(),
            memory: "128Mi".into(),
        }
    }
}

/// A served port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentPort {
    /// Port name, e.g. `http`.
    #[schemars(length(min = 1, max = 15), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// HTTP readiness check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Path, e.g. `/healthz`.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/"))]
    pub path: String,
    /// Port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// A persistent volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Size, e.g. `20Gi`. (In a catalogue template also `${parameter}`.)
    #[schemars(regex(pattern = r"^([0-9]+(Mi|Gi|Ti)|\$\{[A-Za-z][A-Za-z0-9_]*\})$"))]
    pub size: String,
    /// StorageClass; default: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub class: Option<String>,
    /// Where it is mounted, e.g. `/var/lib/postgresql/data`.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/"))]
    pub mount_path: String,
}

/// An allowed connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    /// Component the connection starts from.
    #[schemars(length(min = 1, max = 30))]
    pub from: String,
    /// Where it goes.
    pub to: FlowTarget,
    /// TCP port; default every port of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// The destination of a flow: exactly one of a component, another system of the agency,
/// or a network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("(has(self.component) ? 1 : 0) + (has(self.system) ? 1 : 0) + (has(self.cidr) ? 1 : 0) == 1").message("give exactly one of component, system or cidr"))]
pub struct FlowTarget {
    /// A component of this system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30))]
    pub component: Option<String>,
    /// Another HostedSystem in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub system: Option<String>,
    /// A network, e.g. `10.30.0.0/16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 43))]
    #[x_kube(validation = kube::core::Rule::new("isCIDR(self)").message("must be a CIDR such as 10.30.0.0/16"))]
    pub cidr: Option<String>,
}

/// How the system is reached.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// `None`, `GovernmentNetwork` or `Internet` (external zone only; at level 3 only with a
    /// platform approval; never at level 4).
    pub mode: ExposureMode,
    /// The component that serves it.
    #[schemars(length(min = 1, max = 30))]
    pub component: String,
    /// Its port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Host name, e.g. `portal.mof.gov.cn`: a lowercase DNS name under one of the agency's
    /// `domains` (AgencyCloud), used by no other system. No wildcards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub host: Option<String>,
    /// TLS Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub tls_secret_name: Option<String>,
}

/// Exposure mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ExposureMode {
    /// Not reachable from outside the namespace except by declared flows.
    None,
    /// Reachable from the government network.
    GovernmentNetwork,
    /// Reachable from the internet.
    Internet,
}

/// Migration of the system from the agency's old data center.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    /// The old data center, e.g. `财政部机房（三里河）`.
    #[schemars(length(min = 1, max = 256))]
    pub source_data_center: String,
    /// The system's identifier there.
    #[schemars(length(min = 1, max = 256))]
    pub source_system_id: String,
    /// `Planned` → `Syncing` → `CutoverReady` → `CutOver` → `Decommissioned`, or
    /// `RolledBack`. Only forward (or to RolledBack); RolledBack and Decommissioned are final.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf || (oldSelf != 'RolledBack' && oldSelf != 'Decommissioned' && (self == 'RolledBack' || {'Planned': 0, 'Syncing': 1, 'CutoverReady': 2, 'CutOver': 3, 'Decommissioned': 4}[self] > {'Planned': 0, 'Syncing': 1, 'CutoverReady': 2, 'CutOver': 3, 'Decommissioned': 4}[oldSelf]))").message("migration phases only move forward (Planned → Syncing → CutoverReady → CutOver → Decommissioned) or to RolledBack; RolledBack and Decommissioned are final"))]
    #[schemars(schema_with = "phase_schema")]
    pub phase: MigrationPhase,
}

/// The phase as a bounded enum string (a `maxLength` keeps the CEL transition rule cheap).
fn phase_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Planned", "Syncing", "CutoverReady", "CutOver", "Decommissioned", "RolledBack"],
        "maxLength": 16
    })
}

/// Migration phase.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema)]
pub enum MigrationPhase {
    /// Planned.
    Planned,
    /// Data is being synchronised.
    Syncing,
    /// Ready to cut over.
    CutoverReady,
    /// Traffic moved to the national data center.
    CutOver,
    /// The old system is switched off.
    Decommissioned,
    /// The migration was abandoned.
    RolledBack,
}

/// One component's replicas.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Component name.
    pub name: String,
    /// Replicas asked for.
    pub desired: i32,
    /// Replicas ready on the agency's cluster.
    pub ready: i32,
    /// In-cluster address(es), `host:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
}

/// Observed state of a hosted system.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostedSystemStatus {
    /// `Available`, `Progressing`, `Degraded` (with what is wrong).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The cluster the system runs on (the agency's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Per component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    /// Where the system is reached (from `spec.exposure`), e.g. `https://portal.example.gov.cn/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `ready/desired` over all components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_summary: Option<String>,
    /// What `spec.template` expanded into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExpandedTemplate>,
    /// When each migration phase was first seen.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub migration_transitions: BTreeMap<String, Time>,
}

/// A HostedSystem's use of a catalogue template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// The ServiceTemplate's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// A published version to stay on; without it the system follows the newest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub version: Option<String>,
    /// Parameter values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 50))]
    pub parameters: BTreeMap<String, String>,
    /// Replica counts per template component, overriding the template's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "replicas_schema")]
    pub replicas: BTreeMap<String, i32>,
}

/// What a template expanded into, shown in the HostedSystem's status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpandedTemplate {
    /// The template.
    pub name: String,
    /// The version used.
    pub version: String,
    /// The components it contributed, with parameters substituted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "reported_list")]
    pub components: Vec<Component>,
    /// The flows it contributed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "reported_list")]
    pub flows: Vec<Flow>,
}

/// Component name → replicas (0–100).
fn replicas_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 20,
        "additionalProperties": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100}
    })
}

/// A list reported in status: written only by the operator, so it carries no validation
/// rules (they count against the CRD's CEL cost budget).
fn reported_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}
