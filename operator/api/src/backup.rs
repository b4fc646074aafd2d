//! Backup and disaster recovery (容灾备份): `BackupLocation` (an object store of a region,
//! registered by the platform) and `BackupPolicy` (an agency's policy, realised with Velero).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{NetworkZone, conditions_schema};

/// Finalizer of a BackupPolicy: the operator removes its Velero Schedules first (backups are kept).
pub const FINALIZER: &str = "govcloud.io/backup-cleanup";

/// An S3-compatible object store in one region, registered by the platform. The operator
/// registers it with Velero (a BackupStorageLocation `govcloud-<name>`, with its credentials)
/// on every cluster that backs up there: the clusters of its region for primary copies, and
/// those of other regions for off-site copies.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govcloud.io",
    version = "v1alpha1",
    kind = "BackupLocation",
    doc = "An S3-compatible object store of one region where agencies' backups are kept (registered by the platform; used through Velero).",
    plural = "backuplocations",
    shortname = "bl",
    category = "govcloud",
    derive = "PartialEq",
    validation = kube::core::Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40").message("metadata.name must be a DNS label of at most 40 characters (no dots): it names the Velero BackupStorageLocations govcloud-<name> and govcloud-<name>.<agency>"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "Per-Agency", type_ = "boolean", json_path = ".spec.perAgency"),
    printcolumn(name = "Zone", type_ = "string", json_path = ".spec.zone"),
    printcolumn(name = "Encryption", type_ = "string", json_path = ".spec.encryption"),
    printcolumn(name = "Bucket", type_ = "string", json_path = ".spec.bucket"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpoint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct BackupLocationSpec {
    /// Region the store is in (as in DataCenterCluster `spec.region`).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub region: String,
    /// Network zone the store is on: `internal` (政务内网) or `external` (政务外网). Only
    /// agencies of the same zone keep backups there, at every level: the two networks are
    /// physically separate, and internal-network data never goes to the external one.
    pub zone: NetworkZone,
    /// What protects the objects at rest. `SM4-GCM` when `endpoint` is the project's
    /// encrypting gateway (govcloud-s3-gateway: SM4 in GCM mode under per-agency data keys,
    /// GB/T 39786; authenticated, so it gives integrity too); `None` for a plain store.
    /// Level 3 and 4 agencies only keep backups in `SM4-GCM` stores. The platform team
    /// declares it; the operator cannot look inside the store.
    #[serde(default)]
    pub encryption: StoreEncryption,
    /// Bucket name.
    #[schemars(length(min = 3, max = 63), regex(pattern = r"^[a-z0-9][-.a-z0-9]*[a-z0-9]$"))]
    pub bucket: String,
    /// S3 endpoint URL, e.g. `https://oss-beijing.dc.gov.cn`.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^https?://"))]
    pub endpoint: String,
    /// S3 signing region; default `us-east-1` (what most S3-compatible stores expect).
    #[serde(default = "default_s3_region")]
    #[schemars(length(min = 1, max = 63))]
    pub s3_region: String,
    /// Secret in the operator's namespace with the credentials: an AWS credentials file
    /// (`[default]`, `aws_access_key_id`, `aws_secret_access_key`). Under key `cloud` when
    /// all agencies share them; under one key per agency, named after its AgencyCloud, when
    /// `perAgency` is true.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// Each agency gets its own credentials and its own key prefix `<agency>/` in the
    /// bucket (the encrypting gateway, with one entry per agency, enforces both): the
    /// operator registers a Velero location per agency (`govcloud-<name>.<agency>`, prefix
    /// `<agency>`) with only that agency's key of `credentialsSecret`, so a member cluster
    /// holds only the credentials of the agencies placed on it, and one agency's
    /// credentials reach none of another's backups. Default false: one shared location.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_agency: bool,
}

/// Encryption at rest of a backup store.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum StoreEncryption {
    /// Objects are stored as Velero writes them (plaintext).
    #[default]
    None,
    /// SM4 in Galois/Counter mode through govcloud-s3-gateway: confidentiality and integrity
    /// (an object altered in the store fails to decrypt).
    #[serde(rename = "SM4-GCM")]
    Sm4Gcm,
}

impl StoreEncryption {
    /// The value as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreEncryption::None => "None",
            StoreEncryption::Sm4Gcm => "SM4-GCM",
        }
    }
    /// Objects are encrypted with SM4 (confidentiality, GB/T 39786).
    pub fn sm4(self) -> bool {
        matches!(self, StoreEncryption::Sm4Gcm)
    }
    /// Objects are authenticated (integrity: a changed object does not decrypt).
    pub fn authenticated(self) -> bool {
        matches!(self, StoreEncryption::Sm4Gcm)
    }
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

/// An agency's backup policy for hosted systems of one of its namespaces.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "govcloud.io",
    version = "v1alpha1",
    kind = "BackupPolicy",
    doc = "An agency's backup policy (容灾备份): which hosted systems, schedule, retention (keep-last/daily/weekly/monthly), RPO, off-site region and restore drills; realised with Velero on the agency's cluster.",
    plural = "backuppolicies",
    shortname = "bp",
    category = "govcloud",
    namespaced,
    status = "BackupPolicyStatus",
    derive = "PartialEq",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "RPO", type_ = "string", json_path = ".status.rpo"),
    printcolumn(
        name = "Recovery-Point",
        type_ = "date",
        json_path = ".status.lastSuccessfulBackup.time",
        description = "Age of the newest successful backup"
    ),
    printcolumn(
        name = "RPO-Met",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"RPOMet\")].status"
    ),
    printcolumn(
        name = "Offsite",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"OffsiteCompliant\")].status"
    ),
    printcolumn(
        name = "Drill",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"DrillPassed\")].status"
    ),
    printcolumn(name = "Retained", type_ = "integer", json_path = ".status.retained", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicySpec {
    /// Which HostedSystems of this namespace (by their labels); default: all of them and
    /// everything else in the namespace (Secrets, ConfigMaps). With a selector only the
    /// selected systems' objects are backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// When to back up: a five-field cron expression (minute hour day month weekday), e.g.
    /// `0 2 * * *` for 02:00 every day.
    #[schemars(length(min = 9, max = 100))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^\\\\s*\\\\S+(\\\\s+\\\\S+){4}\\\\s*$')").message("must be a five-field cron expression: minute hour day-of-month month day-of-week, e.g. '0 2 * * *'"))]
    pub schedule: String,
    /// Time zone of the schedule; default `Asia/Shanghai`.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// Which backups to keep. The newest successful backup is never deleted.
    #[serde(default)]
    pub retention: Retention,
    /// Recovery point objective, e.g. `24h` or `30m`: the newest successful backup must never
    /// be older. Default by security level: 24 h (levels 1–3), 1 h (level 4). Must not be
    /// shorter than the interval between scheduled backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,4}(m|h)$"))]
    pub rpo: Option<String>,
    /// Region to keep a second copy in (another region than the agency's cluster);
    /// required at level 3 and above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub offsite_region: Option<String>,
    /// Restore drills: restore the newest successful backup into a scratch namespace, check
    /// the systems come back, record the evidence and clean up. On demand: set the
    /// annotation `govcloud.io/drill` to a new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSpec>,
    /// Whether backups also take the contents of the systems' volumes. `All` (the
    /// default): every volume of the covered systems' pods (persistent volumes and
    /// scratch space alike, not Secrets or ConfigMaps, which are backed up as objects),
    /// copied file by file by Velero's node-agent with kopia into the same locations,
    /// off-site copy included. `None`: objects only (manifests, Secrets, claims), e.g. for
    /// systems whose data is replicated by the application itself. On a cluster without
    /// Velero's node-agent the backups hold objects only and the `VolumeData` condition
    /// says so.
    #[serde(default)]
    pub volume_data: VolumeData,
}

/// Which volumes' contents a policy backs up.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum VolumeData {
    /// Every volume of the covered systems' pods.
    #[default]
    All,
    /// No volume contents: objects only.
    None,
}

impl VolumeData {
    /// The value as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeData::All => "All",
            VolumeData::None => "None",
        }
    }
}

fn default_time_zone() -> String {
    "Asia/Shanghai".into()
}

/// Grandfather-father-son retention.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep the newest N backups (1–1000, default 7).
    #[serde(default = "seven")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep_last: u32,
    /// Also keep the newest backup of each of the last N days (default 7).
    #[serde(default = "seven")]
    #[schemars(range(min = 0, max = 1000))]
    pub daily: u32,
    /// ... of each of the last N weeks (default 4).
    #[serde(default = "four")]
    #[schemars(range(min = 0, max = 520))]
    pub weekly: u32,
    /// ... of each of the last N months (default 6).
    #[serde(default = "six")]
    #[schemars(range(min = 0, max = 120))]
    pub monthly: u32,
}

fn seven() -> u32 {
    7
}
fn four() -> u32 {
    4
}
fn six() -> u32 {
    6
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 7,
            daily: 7,
            weekly: 4,
            monthly: 6,
        }
    }
}

/// Restore drills.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillSpec {
    /// When to drill (cron, in `timeZone`), e.g. `0 3 1 * *` monthly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 100))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^\\\\s*\\\\S+(\\\\s+\\\\S+){4}\\\\s*$')").message("must be a five-field cron expression"))]
    pub schedule: Option<String>,
    /// How many drills `status.drills` keeps (newest first), 1–100; default 10.
    #[serde(default = "ten")]
    #[schemars(range(min = 1, max = 100))]
    pub history: u32,
}

fn ten() -> u32 {
    10
}

/// A Velero backup as the policy sees it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// Velero backup name.
    pub name: String,
    /// Velero phase: `New`, `InProgress`, `Completed`, `PartiallyFailed`, `Failed`, …
    pub phase: String,
    /// When it started (or completed, for successful backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Region of the location it is stored in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Volumes whose contents it holds (Velero pod volume backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<u32>,
    /// Bytes of volume contents it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
}

/// Evidence of a restore drill or a recovery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRecord {
    /// What asked for it: `schedule` or the annotation's value.
    pub trigger: String,
    /// The backup restored.
    pub backup: String,
    /// The Velero Restore.
    pub restore: String,
    /// Where it was restored (a scratch namespace for drills).
    pub namespace: String,
    /// `Running`, `Passed` or `Failed`.
    pub result: String,
    /// What was checked, or what went wrong.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    /// Finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,
    /// Seconds from start to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// Volumes whose contents were restored (Velero pod volume restores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<u32>,
    /// Bytes of volume contents restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
}

/// Observed state of a backup policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    /// `Ready`, `RPOMet`, `OffsiteCompliant`, `DrillPassed`, each with what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The cluster (and its region) the backups are taken on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The RPO in force (from the spec or the level default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<String>,
    /// Systems covered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub systems: Vec<String>,
    /// The newest backup, whatever its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupRecord>,
    /// The newest successful backup: the recovery point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<BackupRecord>,
    /// Backups retained (all locations).
    #[serde(default)]
    pub retained: u32,
    /// Regions holding a successful copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies_in_regions: Vec<String>,
    /// The newest restore drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<RestoreRecord>,
    /// The last drills, newest first (as many as `spec.drill.history`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drills: Vec<RestoreRecord>,
    /// The newest recovery into the system's own namespace (annotation `govcloud.io/restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restore: Option<RestoreRecord>,
}
