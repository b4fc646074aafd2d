//! Labels and annotations the operator puts on what it creates, declared once: the
//! builders set them, the controllers and caches select by them, and people may too.

/// `app.kubernetes.io/managed-by` value on everything the operator creates.
pub const MANAGED_BY: &str = "govcloud-operator";

/// Label key naming the owning agency.
pub const AGENCY_LABEL: &str = "govcloud.io/agency";

/// Label key naming the hosted system an object belongs to.
pub const SYSTEM_LABEL: &str = "govcloud.io/system";

/// Label key naming the component of a hosted system.
pub const COMPONENT_LABEL: &str = "govcloud.io/component";

/// Label key naming the environment.
pub const ENVIRONMENT_LABEL: &str = "govcloud.io/environment";

/// Label on the operator's Velero objects: the name of the BackupPolicy (the value is
/// `govcloud_core::backup::policy_label_value`). With [`POLICY_NAMESPACE_LABEL`] and
/// [`CREDIT_CODE_LABEL`] it says whose a backup is (`govcloud_core::backup::PolicyId`).
pub const POLICY_LABEL: &str = "govcloud.io/backup-policy";

/// Label on the operator's Velero objects: the namespace of the BackupPolicy.
pub const POLICY_NAMESPACE_LABEL: &str = "govcloud.io/backup-namespace";

/// Label naming the agency's unified social credit code: on its namespaces, and on the
/// Velero objects of its BackupPolicies.
pub const CREDIT_CODE_LABEL: &str = "govcloud.io/credit-code";

/// Label of the ConfigMap recording a system's spec on its cluster.
pub const SPEC_RECORD_LABEL: &str = "govcloud.io/system-spec";

/// Label of the namespaces where the platform's ingress controllers run; exposed components
/// accept traffic from them.
pub const INGRESS_NAMESPACE_LABEL: &str = "govcloud.io/ingress";

/// Label on an AgencyCloud naming the request it came from: `<namespace>.<name>`.
pub const REQUEST_LABEL: &str = "govcloud.io/tenancy-request";

/// Annotation of a HostedSystem recreated on the hub by a recovery: the Velero Restore that
/// brought its record back (also what makes a repeated pass over the same restore report
/// the same systems).
pub const RESTORED_BY_ANNOTATION: &str = "govcloud.io/restored-by";

/// On an object recreated from a hub backup (`govcloud-operator hub-restore`): the backup's
/// digest. With the `restore` permission of the hub restorer role it lets the admission
/// policies accept recorded decisions verbatim (decided by someone else than the writer).
pub const RESTORED_FROM_ANNOTATION: &str = "govcloud.io/restored-from";
