//! The security-level matrix (等级保护, MLPS 2.0, GB/T 22239-2019) as data.
//!
//! One row per level; every controller asks this table instead of comparing levels
//! inline, so the rules are in one place, documented (docs/platform-guide.md) and tested.
//! The CRDs' CEL rules cannot ask it (the API server checks them); a test here fails when
//! they say something else than the table.

use std::time::Duration;

/// Pod Security Standard enforced on an agency's namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodSecurity {
    /// `baseline`.
    Baseline,
    /// `restricted`.
    Restricted,
}

impl PodSecurity {
    /// The label value of `pod-security.kubernetes.io/enforce`.
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurity::Baseline => "baseline",
            PodSecurity::Restricted => "restricted",
        }
    }
}

/// What egress to the internet is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InternetEgress {
    /// Any declared egress rule may reach the internet.
    Declared,
    /// Only egress rules that explicitly name the internet exit (`internetExit: true`).
    ExplicitExitRule,
    /// Never.
    Never,
}

/// Whether hosted systems may be exposed to the internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InternetExposure {
    /// Allowed (external zone only).
    Allowed,
    /// Allowed only with a recorded platform approval.
    NeedsApproval,
    /// Never.
    Never,
}

/// What a level demands of the object stores its backups are kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupEncryption {
    /// Any store.
    Any,
    /// SM4 at rest (GB/T 39786: confidentiality of important data).
    Sm4,
    /// SM4 at rest with integrity (an authenticated mode such as SM4-GCM).
    Sm4WithIntegrity,
}

impl BackupEncryption {
    /// Whether a store with `enc` meets it.
    pub fn met_by(self, enc: govcloud_api::backup::StoreEncryption) -> bool {
        match self {
            BackupEncryption::Any => true,
            BackupEncryption::Sm4 => enc.sm4(),
            BackupEncryption::Sm4WithIntegrity => enc.sm4() && enc.authenticated(),
        }
    }
    /// What it demands, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            BackupEncryption::Any => "any store",
            BackupEncryption::Sm4 => "SM4 encryption at rest",
            BackupEncryption::Sm4WithIntegrity => "SM4 encryption with integrity (SM4-GCM)",
        }
    }
}

/// The rules of one security level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelRules {
    /// The level, 1–4.
    pub level: u8,
    /// Lowest certified level of a cluster that may host it.
    pub min_cluster_level: u8,
    /// Pod Security Standard enforced.
    pub pod_security: PodSecurity,
    /// Egress is denied except to declared destinations (level 2+).
    pub deny_undeclared_egress: bool,
    /// Internet egress.
    pub internet_egress: InternetEgress,
    /// Only the internal network zone (政务内网) may host it.
    pub internal_zone_only: bool,
    /// Needs a dedicated cluster (no other agency on it).
    pub dedicated: bool,
    /// A backup policy is required for every hosted system.
    pub backup_required: bool,
    /// Largest allowed recovery point objective.
    pub max_rpo: Option<Duration>,
    /// An off-site (other region) backup copy is required.
    pub offsite_required: bool,
    /// Backups only in stores of the agency's own network zone.
    pub backup_same_zone: bool,
    /// Encryption the backup stores must have.
    pub backup_encryption: BackupEncryption,
    /// How often a restore drill must pass (the newest passed drill may be no older);
    /// None: drills are not required. Reference: GB/T 20988-2025's disaster recovery
    /// levels, which demand regular recovery exercises from DR level 2 on and more
    /// frequent ones as the level rises (docs/platform-guide.md states the mapping).
    pub drill_window: Option<Duration>,
    /// Internet exposure of hosted systems.
    pub internet_exposure: InternetExposure,
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The default matrix, levels 1 to 4.
pub const MATRIX: [LevelRules; 4] = [
    LevelRules {
        level: 1,
        min_cluster_level: 1,
        pod_security: PodSecurity::Baseline,
        deny_undeclared_egress: false,
        internet_egress: InternetEgress::Declared,
        internal_zone_only: false,
        dedicated: false,
        backup_required: false,
        max_rpo: None,
        offsite_required: false,
        backup_same_zone: true,
        backup_encryption: BackupEncryption::Any,
        drill_window: None,
        internet_exposure: InternetExposure::Allowed,
    },
    LevelRules {
        level: 2,
        min_cluster_level: 2,
        pod_security: PodSecurity::Baseline,
        deny_undeclared_egress: true,
        internet_egress: InternetEgress::Declared,
        internal_zone_only: false,
        dedicated: false,
        backup_required: true,
        max_rpo: Some(Duration::from_secs(24 * 3600)),
        offsite_required: false,
        backup_same_zone: true,
        backup_encryption: BackupEncryption::Any,
        drill_window: Some(DAY.saturating_mul(366)),
        internet_exposure: InternetExposure::Allowed,
    },
    LevelRules {
        level: 3,
        min_cluster_level: 3,
        pod_security: PodSecurity::Restricted,
        deny_undeclared_egress: true,
        internet_egress: InternetEgress::ExplicitExitRule,
        internal_zone_only: false,
        dedicated: false,
        backup_required: true,
        max_rpo: Some(Duration::from_secs(24 * 3600)),
        offsite_required: true,
        backup_same_zone: true,
        backup_encryption: BackupEncryption::Sm4,
        drill_window: Some(DAY.saturating_mul(183)),
        internet_exposure: InternetExposure::NeedsApproval,
    },
    LevelRules {
        level: 4,
        min_cluster_level: 4,
        pod_security: PodSecurity::Restricted,
        deny_undeclared_egress: true,
        internet_egress: InternetEgress::Never,
        internal_zone_only: true,
        dedicated: true,
        backup_required: true,
        max_rpo: Some(HOUR),
        offsite_required: true,
        backup_same_zone: true,
        backup_encryption: BackupEncryption::Sm4WithIntegrity,
        drill_window: Some(DAY.saturating_mul(92)),
        internet_exposure: InternetExposure::Never,
    },
];

/// The rules of a level; levels outside 1–4 are clamped (the schema refuses them earlier).
pub fn rules(level: u8) -> LevelRules {
    MATRIX[usize::from(level.clamp(1, 4)) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_matches_the_design_table() {
        assert_eq!(rules(1).pod_security, PodSecurity::Baseline);
        assert_eq!(rules(2).pod_security, PodSecurity::Baseline);
        assert_eq!(rules(3).pod_security, PodSecurity::Restricted);
        assert_eq!(rules(4).pod_security, PodSecurity::Restricted);
        assert!(!rules(1).backup_required && rules(2).backup_required);
        assert_eq!(rules(2).max_rpo, Some(Duration::from_secs(86_400)));
        assert_eq!(rules(4).max_rpo, Some(Duration::from_secs(3_600)));
        assert!(!rules(2).offsite_required && rules(3).offsite_required && rules(4).offsite_required);
        assert_eq!(rules(3).internet_exposure, InternetExposure::NeedsApproval);
        assert_eq!(rules(4).internet_exposure, InternetExposure::Never);
        assert!(rules(4).internal_zone_only && rules(4).dedicated);
        assert_eq!(rules(4).internet_egress, InternetEgress::Never);
        // Backup storage: the zone rule at every level (the networks are physically
        // separate); SM4 from level 3, with integrity at level 4.
        assert!(MATRIX.iter().all(|r| r.backup_same_zone));
        assert_eq!(rules(2).backup_encryption, BackupEncryption::Any);
        assert_eq!(rules(3).backup_encryption, BackupEncryption::Sm4);
        assert_eq!(rules(4).backup_encryption, BackupEncryption::Sm4WithIntegrity);
        use govcloud_api::backup::StoreEncryption;
        assert!(!rules(3).backup_encryption.met_by(StoreEncryption::None));
        assert!(rules(4).backup_encryption.met_by(StoreEncryption::Sm4Gcm));
        assert!(rules(1).backup_encryption.met_by(StoreEncryption::None));
        // Drills: none required at level 1; yearly, half-yearly, quarterly above.
        let days = |l: u8| rules(l).drill_window.map(|d| d.as_secs() / 86_400);
        assert_eq!(
            (days(1), days(2), days(3), days(4)),
            (None, Some(366), Some(183), Some(92))
        );
    }

    #[test]
    fn cluster_level_requirement_is_monotonic() {
        for w in MATRIX.windows(2) {
            assert!(w[0].min_cluster_level <= w[1].min_cluster_level);
            assert_eq!(w[1].level, w[0].level + 1);
        }
        for l in 1..=4 {
            assert_eq!(rules(l).min_cluster_level, l);
        }
        assert_eq!(rules(0).level, 1);
        assert_eq!(rules(9).level, 4);
    }

    /// The lowest level with `rule`, when every level above has it too (else None).
    fn from_level(rule: impl Fn(&LevelRules) -> bool) -> Option<u8> {
        let first = MATRIX.iter().position(&rule)?;
        MATRIX[first..].iter().all(&rule).then_some(MATRIX[first].level)
    }

    #[test]
    fn the_crds_cel_rules_say_what_the_table_says() {
        let crds: Vec<_> = govcloud_api::all_crds().into_iter().map(|(_, c)| c).collect();
        let text = serde_json::to_string(&crds).unwrap_or_default();
        let internal = from_level(|r| r.internal_zone_only);
        let no_egress = from_level(|r| r.internet_egress == InternetEgress::Never);
        let no_exposure = from_level(|r| r.internet_exposure == InternetExposure::Never);
        for (from, rule) in [
            (internal, "self.securityLevel < {n} || self.zone == 'internal'"),
            (
                no_egress,
                "self.securityLevel < {n} || !has(self.egress) || self.egress.all(e, !e.internetExit)",
            ),
            (
                no_exposure,
                "!has(self.exposure) || self.exposure.mode != 'Internet' || self.securityLevel < {n}",
            ),
            (
                no_exposure,
                "!has(self.internetExposureApproval) || self.securityLevel < {n}",
            ),
        ] {
            let n = from.unwrap_or_else(|| panic!("the table no longer has a level from which on: {rule}"));
            let rule = rule.replace("{n}", &n.to_string());
            assert!(
                text.contains(&rule),
                "no CRD rule `{rule}`: update the rule to the table"
            );
        }
    }
}
