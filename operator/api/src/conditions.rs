//! Condition types of the govcloud resources (`status.conditions[].type`), declared once:
//! the controllers set them, the core and the kubectl plugin read them.

/// The object is fully reconciled and serving its purpose (every kind).
pub const READY: &str = "Ready";
/// The member cluster's API server answers with valid credentials (DataCenterCluster).
pub const REACHABLE: &str = "Reachable";

/// Conditions of an AgencyCloud.
pub mod agency {
    /// Placed on a cluster.
    pub const PLACED: &str = "Placed";
    /// Isolation guardrails are in place.
    pub const ISOLATED: &str = "Isolated";
    /// The quota fits the placed cluster.
    pub const QUOTA_FITS: &str = "QuotaFits";
    /// Deletion is waiting.
    pub const DELETION_BLOCKED: &str = "DeletionBlocked";
    /// Every hosted system is covered by a backup policy (where the level requires it).
    pub const BACKUP_COMPLIANT: &str = "BackupCompliant";
}

/// Conditions of a TenancyRequest.
pub mod tenancy {
    /// Identity, code and uniqueness checks passed.
    pub const VALID: &str = "Valid";
    /// A cluster would take the cloud now.
    pub const PLACEABLE: &str = "Placeable";
    /// An approver decided.
    pub const DECIDED: &str = "Decided";
    /// The AgencyCloud exists.
    pub const PROVISIONED: &str = "Provisioned";
}

/// Conditions of a HostedSystem.
pub mod hosted {
    /// Every component has its replicas ready.
    pub const AVAILABLE: &str = "Available";
    /// A rollout is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Something keeps the system from running as declared.
    pub const DEGRADED: &str = "Degraded";
}

/// Conditions of a BackupPolicy.
pub mod backup {
    /// The newest good backup is within the recovery point objective.
    pub const RPO_MET: &str = "RPOMet";
    /// An off-site copy exists where the level requires one.
    pub const OFFSITE_COMPLIANT: &str = "OffsiteCompliant";
    /// The last restore drill passed, within the window the security level sets.
    pub const DRILL_PASSED: &str = "DrillPassed";
    /// The backups hold the volumes' contents (or the policy asks for none).
    pub const VOLUME_DATA: &str = "VolumeData";
}
