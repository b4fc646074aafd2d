//! Backup policy arithmetic: schedules, RPO, GFS retention and the Velero objects.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde_json::{Value, json};

use crate::levels;
use govcloud_api::backup::{BackupPolicySpec, Retention};
use govcloud_api::labels::{MANAGED_BY, POLICY_LABEL, SYSTEM_LABEL};

/// Namespace of Velero on every member cluster.
pub const VELERO_NAMESPACE: &str = "velero";
/// Velero's label naming the Schedule a Backup came from.
pub const SCHEDULE_NAME_LABEL: &str = "velero.io/schedule-name";
/// Velero's label naming the Backup a DeleteBackupRequest is for.
pub const BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
/// Backups live until the operator prunes them by retention (Velero's own TTL is ten years).
pub const VELERO_TTL: &str = "87600h0m0s";

/// Parses an RPO like `24h` or `30m` into seconds.
pub fn parse_rpo(s: &str) -> Option<i64> {
    let (n, unit) = if let Some(n) = s.strip_suffix('m') {
        (n, 60)
    } else {
        (s.strip_suffix('h')?, 3600)
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse::<i64>().ok()?.checked_mul(unit).filter(|v| *v > 0)
}

/// Formats seconds as the RPO notation.
pub fn format_rpo(secs: i64) -> String {
    if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}

/// RPO where the level sets no limit (level 1): a daily backup.
const UNLIMITED_LEVEL_RPO: i64 = 24 * 3600;

/// The longest RPO a level allows ([`levels::LevelRules::max_rpo`]); also the default.
pub fn max_rpo(level: u8) -> i64 {
    levels::rules(level)
        .max_rpo
        .map_or(UNLIMITED_LEVEL_RPO, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether a level requires an off-site copy ([`levels::LevelRules::offsite_required`]).
pub fn offsite_required(level: u8) -> bool {
    levels::rules(level).offsite_required
}

/// Whether a level requires every hosted system to be covered by a policy
/// ([`levels::LevelRules::backup_required`]).
pub fn backup_required(level: u8) -> bool {
    levels::rules(level).backup_required
}

/// A parsed schedule in its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Parses `expr` (five fields) in `time_zone`; errors name the field.
    pub fn parse(field: &str, expr: &str, time_zone: &str) -> Result<Schedule, String> {
        if expr.split_whitespace().count() != 5 {
            return Err(format!(
                "{field}: {expr:?} is not a five-field cron expression (minute hour day-of-month month day-of-week)"
            ));
        }
        let cron =
            Cron::from_str(expr).map_err(|e| format!("{field}: {expr:?} is not a valid cron expression: {e}"))?;
        let tz = TimeZone::get(time_zone)
            .map_err(|_| format!("spec.timeZone: {time_zone:?} is not a known time zone (e.g. Asia/Shanghai)"))?;
        Ok(Schedule { cron, tz })
    }

    /// The first run strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let z = t.to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&z, false)
            .ok()
            .map(|z: Zoned| z.timestamp())
    }

    /// The last run at or before `t`.
    pub fn previous_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let z = t.to_zoned(self.tz.clone());
        self.cron
            .find_previous_occurrence(&z, true)
            .ok()
            .map(|z: Zoned| z.timestamp())
    }

    /// The longest gap between consecutive runs over the year after `from` (seconds).
    pub fn max_interval(&self, from: Timestamp) -> Option<i64> {
        let mut prev = self.next_after(from)?;
        let end = from.as_second() + 366 * 86400;
        let mut max = 0;
        for _ in 0..2000 {
            let next = self.next_after(prev)?;
            max = max.max(next.as_second() - prev.as_second());
            if next.as_second() > end {
                break;
            }
            prev = next;
        }
        Some(max)
    }
}

/// [`Schedule::max_interval`] remembered per schedule, time zone and hour: every reconcile
/// of every BackupPolicy validates its schedule, and walking a year of an hourly schedule
/// takes 2,000 cron evaluations (a few percent of the operator's CPU while a fleet
/// converges). Within the hour the year walked starts at the first call's `now`.
fn longest_gap(expr: &str, time_zone: &str, schedule: &Schedule, now: Timestamp) -> Option<i64> {
    type Memo = std::collections::HashMap<(String, String, i64), Option<i64>>;
    static MEMO: std::sync::LazyLock<std::sync::Mutex<Memo>> = std::sync::LazyLock::new(Default::default);
    let key = (
        expr.to_string(),
        time_zone.to_string(),
        now.as_second().div_euclid(3600),
    );
    if let Ok(m) = MEMO.lock()
        && let Some(v) = m.get(&key)
    {
        return *v;
    }
    let v = schedule.max_interval(now);
    if let Ok(mut m) = MEMO.lock() {
        // Old hours are never asked for again; a bound keeps them from piling up.
        if m.len() >= 4096 {
            m.clear();
        }
        m.insert(key, v);
    }
    v
}

/// What is wrong with a policy given the agency's level and the regions that have backup
/// locations. Returns (effective RPO seconds, problems naming fields).
pub fn validate(
    spec: &BackupPolicySpec,
    level: u8,
    primary_region: &str,
    regions_with_locations: &BTreeSet<String>,
    now: Timestamp,
) -> (i64, Vec<String>) {
    let mut problems = Vec::new();
    let max = max_rpo(level);
    let rpo = match &spec.rpo {
        None => max,
        Some(s) => match parse_rpo(s) {
            Some(v) => v,
            None => {
                problems.push(format!("spec.rpo: {s:?} is not a duration such as 24h or 30m"));
                max
            }
        },
    };
    if rpo > max {
        problems.push(format!(
            "spec.rpo: {} is longer than level {level} allows ({}); shorten it",
            format_rpo(rpo),
            format_rpo(max)
        ));
    }
    match Schedule::parse("spec.schedule", &spec.schedule, &spec.time_zone) {
        Err(e) => problems.push(e),
        Ok(s) => match longest_gap(&spec.schedule, &spec.time_zone, &s, now) {
            None => problems.push(format!("spec.schedule: {:?} never runs", spec.schedule)),
            Some(gap) if gap > rpo => problems.push(format!(
                "spec.rpo: {} is shorter than the longest interval between scheduled backups ({}); back up more often or lengthen the RPO",
                format_rpo(rpo),
                format_rpo(gap)
            )),
            Some(_) => {}
        },
    }
    if let Some(d) = spec.drill.as_ref().and_then(|d| d.schedule.as_ref())
        && let Err(e) = Schedule::parse("spec.drill.schedule", d, &spec.time_zone)
    {
        problems.push(e);
    }
    if !regions_with_locations.contains(primary_region) {
        problems.push(format!(
            "no BackupLocation is registered for region {primary_region} (the agency's cluster's region); ask the platform team"
        ));
    }
    match &spec.offsite_region {
        Some(r) if r == primary_region => problems.push(format!(
            "spec.offsiteRegion: {r} is the region of the agency's cluster; an off-site copy must be in another region"
        )),
        Some(r) if !regions_with_locations.contains(r) => problems.push(format!(
            "spec.offsiteRegion: no BackupLocation is registered for region {r} (known: {})",
            regions_with_locations.iter().cloned().collect::<Vec<_>>().join(", ")
        )),
        _ => {}
    }
    (rpo, problems)
}

/// A backup as retention sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Backup {
    /// Velero name.
    pub name: String,
    /// Start (or creation) time.
    pub time: Timestamp,
    /// Velero phase.
    pub phase: String,
}

impl Backup {
    /// A usable recovery point.
    pub fn successful(&self) -> bool {
        self.phase == "Completed"
    }
    /// Still being taken (never pruned).
    pub fn running(&self) -> bool {
        matches!(
            self.phase.as_str(),
            "" | "New" | "InProgress" | "WaitingForPluginOperations" | "Finalizing"
        ) || self.phase.starts_with("WaitingForPluginOperations")
    }
}

/// The backups to keep under GFS retention: the newest `keepLast`, the newest of each of the
/// last `daily` days, `weekly` ISO weeks and `monthly` months (calendar in `tz`), every
/// backup still running, and — always — the newest successful one. Unsuccessful backups
/// are kept only among the newest `keepLast` (for diagnosis).
pub fn retained(backups: &[Backup], r: &Retention, tz: &TimeZone) -> BTreeSet<String> {
    let mut sorted: Vec<&Backup> = backups.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    let mut keep = BTreeSet::new();
    for b in sorted.iter().take(r.keep_last as usize) {
        keep.insert(b.name.clone());
    }
    for b in &sorted {
        if b.running() {
            keep.insert(b.name.clone());
        }
    }
    let good: Vec<&&Backup> = sorted.iter().filter(|b| b.successful()).collect();
    if let Some(newest) = good.first() {
        keep.insert(newest.name.clone());
    }
    let mut bucket = |n: u32, key: &dyn Fn(&jiff::civil::Date) -> (i32, i32)| {
        let mut seen = BTreeMap::new();
        for b in &good {
            if seen.len() >= n as usize {
                break;
            }
            let d = b.time.to_zoned(tz.clone()).date();
            seen.entry(key(&d)).or_insert_with(|| b.name.clone());
        }
        keep.extend(seen.into_values());
    };
    bucket(r.daily, &|d| (i32::from(d.year()), i32::from(d.day_of_year())));
    bucket(r.weekly, &|d| {
        let w = d.iso_week_date();
        (i32::from(w.year()), i32::from(w.week()))
    });
    bucket(r.monthly, &|d| (i32::from(d.year()), i32::from(d.month())));
    keep
}

/// Name of the Velero Schedule of a policy (`<namespace>-<policy>`, shortened with a hash
/// to stay a valid label value), with `-offsite` for the off-site copy.
pub fn schedule_name(namespace: &str, policy: &str, offsite: bool) -> String {
    let base = format!("{namespace}-{policy}");
    let base = if base.len() > 48 {
        format!("{}-{:08x}", base[..39].trim_end_matches('-'), fnv(&base))
    } else {
        base
    };
    if offsite { format!("{base}-offsite") } else { base }
}

/// Value of [`POLICY_LABEL`] on the policy's Velero objects: the primary schedule's name
/// (`<namespace>-<policy>`, shortened with a hash to stay a valid label value).
pub fn policy_label_value(namespace: &str, policy: &str) -> String {
    schedule_name(namespace, policy, false)
}

/// Name of the Velero BackupStorageLocation of a BackupLocation.
pub fn storage_location_name(location: &str) -> String {
    format!("govcloud-{location}")
}

fn fnv(s: &str) -> u32 {
    s.bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The Velero Schedule of a policy: its namespace (or only the selected systems' objects),
/// to one location. Volumes are not snapshotted (no CSI or node agent here): manifests,
/// Secrets and claims are backed up.
pub fn velero_schedule(
    name: &str,
    namespace: &str,
    policy: &str,
    spec: &BackupPolicySpec,
    systems: Option<&[String]>,
    location: &str,
) -> Value {
    let mut template = json!({
        "includedNamespaces": [namespace],
        "storageLocation": location,
        "ttl": VELERO_TTL,
        "snapshotVolumes": false,
        "defaultVolumesToFsBackup": false,
        "includeClusterResources": false,
        // Recreated by their controllers on restore.
        "excludedResources": ["pods", "replicasets.apps", "controllerrevisions.apps", "endpoints",
                              "endpointslices.discovery.k8s.io", "events", "events.events.k8s.io"],
        "metadata": {"labels": {POLICY_LABEL: policy_label_value(namespace, policy)}},
    });
    if let Some(systems) = systems {
        template["labelSelector"] = json!({"matchExpressions": [
            {"key": SYSTEM_LABEL, "operator": "In", "values": systems}
        ]});
    }
    json!({
        "apiVersion": "velero.io/v1", "kind": "Schedule",
        "metadata": {"name": name, "namespace": VELERO_NAMESPACE, "labels": {
            "app.kubernetes.io/managed-by": MANAGED_BY,
            POLICY_LABEL: policy_label_value(namespace, policy),
        }},
        "spec": {
            "schedule": format!("CRON_TZ={} {}", spec.time_zone, spec.schedule.trim()),
            "useOwnerReferencesInBackup": false,
            "template": template,
        }
    })
}

/// A first backup taken at once when a schedule has none yet (Velero waits for the first
/// scheduled time): the schedule's template, labelled as the schedule's own backups are.
pub fn velero_initial_backup(
    schedule: &str,
    namespace: &str,
    policy: &str,
    spec: &BackupPolicySpec,
    systems: Option<&[String]>,
    location: &str,
) -> Value {
    let s = velero_schedule(schedule, namespace, policy, spec, systems, location);
    let mut template = s["spec"]["template"].clone();
    if let Some(t) = template.as_object_mut() {
        t.remove("metadata");
    }
    json!({
        "apiVersion": "velero.io/v1", "kind": "Backup",
        "metadata": {"name": format!("{schedule}-initial"), "namespace": VELERO_NAMESPACE, "labels": {
            "app.kubernetes.io/managed-by": MANAGED_BY,
            POLICY_LABEL: policy_label_value(namespace, policy),
            SCHEDULE_NAME_LABEL: schedule,
        }},
        "spec": template,
    })
}

/// Whether a label selector selects `labels` (matchLabels and matchExpressions with In,
/// NotIn, Exists, DoesNotExist). An unknown operator selects nothing.
pub fn selects(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let ml = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let me = selector.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
    });
    ml && me
}

/// Short stable hash of a policy, for names of its restores and scratch namespaces.
pub fn policy_hash(namespace: &str, policy: &str) -> String {
    format!("{:08x}", fnv(&format!("{namespace}/{policy}")))
}

/// A Velero Restore of `backup`: into `target` (a scratch namespace, for drills) or back
/// into its own namespace (recovery: objects that still exist are left alone).
pub fn velero_restore(name: &str, backup: &str, namespace: &str, target: Option<&str>, policy: &str) -> Value {
    let mut spec = json!({
        "backupName": backup,
        "includedNamespaces": [namespace],
        "restorePVs": false,
        "existingResourcePolicy": "none",
    });
    if let Some(t) = target {
        spec["namespaceMapping"] = json!({namespace: t});
    }
    json!({
        "apiVersion": "velero.io/v1", "kind": "Restore",
        "metadata": {"name": name, "namespace": VELERO_NAMESPACE, "labels": {
            "app.kubernetes.io/managed-by": MANAGED_BY,
            POLICY_LABEL: policy_label_value(namespace, policy),
        }},
        "spec": spec,
    })
}

/// The Velero BackupStorageLocation for a BackupLocation.
pub fn velero_location(name: &str, spec: &govcloud_api::backup::BackupLocationSpec, secret: &str) -> Value {
    json!({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": name, "namespace": VELERO_NAMESPACE, "labels": {
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "govcloud.io/region": spec.region,
        }},
        "spec": {
            "provider": "aws",
            "objectStorage": {"bucket": spec.bucket},
            "config": {"region": spec.s3_region, "s3ForcePathStyle": "true", "s3Url": spec.endpoint},
            "credential": {"name": secret, "key": "cloud"},
            "accessMode": "ReadWrite",
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn spec(yaml: &str) -> BackupPolicySpec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn regions() -> BTreeSet<String> {
        ["beijing".to_string(), "guizhou".to_string()].into()
    }

    #[test]
    fn rpo_notation() {
        assert_eq!(parse_rpo("24h"), Some(86400));
        assert_eq!(parse_rpo("30m"), Some(1800));
        assert_eq!(parse_rpo("3d"), None);
        assert_eq!(parse_rpo(""), None);
        // Found by tests/tests/fuzz.rs: multi-byte units, signs and overflow.
        assert_eq!(parse_rpo("1时"), None);
        assert_eq!(parse_rpo("-5m"), None);
        assert_eq!(parse_rpo("0h"), None);
        assert_eq!(parse_rpo("9223372036854775807h"), None);
        assert_eq!(format_rpo(3600), "1h");
        assert_eq!(format_rpo(90 * 60), "90m");
    }

    #[test]
    fn schedules_in_shanghai_time() {
        let s = Schedule::parse("spec.schedule", "0 2 * * *", "Asia/Shanghai").unwrap_or_else(|e| panic!("{e}"));
        // 02:00 in Shanghai is 18:00 UTC the day before.
        assert_eq!(
            s.next_after(ts("2026-11-28T12:00:00Z")),
            Some(ts("2026-11-28T18:00:00Z"))
        );
        assert_eq!(s.max_interval(ts("2026-11-28T12:00:00Z")), Some(86400));
        let weekly = Schedule::parse("spec.schedule", "0 2 * * 0", "UTC").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(weekly.max_interval(ts("2026-11-28T12:00:00Z")), Some(7 * 86400));
        // Remembered per schedule, zone and hour; another schedule is not confused with it.
        let now = ts("2026-11-28T12:00:00Z");
        assert_eq!(longest_gap("0 2 * * 0", "UTC", &weekly, now), Some(7 * 86400));
        assert_eq!(longest_gap("0 2 * * 0", "UTC", &weekly, now), Some(7 * 86400));
        assert_eq!(longest_gap("0 2 * * *", "Asia/Shanghai", &s, now), Some(86400));
        assert_eq!(
            s.previous_at_or_before(ts("2026-11-28T18:00:00Z")),
            Some(ts("2026-11-28T18:00:00Z"))
        );
    }

    #[test]
    fn validation_names_fields() {
        let now = ts("2026-11-28T12:00:00Z");
        let (rpo, p) = validate(&spec("{schedule: '0 * * * *'}"), 4, "beijing", &regions(), now);
        assert_eq!((rpo, p.len()), (3600, 0), "{p:?}");
        let (_, p) = validate(&spec("{schedule: '0 2 * * *', rpo: 1h}"), 2, "beijing", &regions(), now);
        assert!(
            p[0].starts_with("spec.rpo: 1h is shorter than the longest interval between scheduled backups (24h)"),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', rpo: 48h}"),
            3,
            "beijing",
            &regions(),
            now,
        );
        assert!(
            p[0].starts_with("spec.rpo: 48h is longer than level 3 allows (24h)"),
            "{p:?}"
        );
        let (_, p) = validate(&spec("{schedule: '61 2 * * *'}"), 2, "beijing", &regions(), now);
        assert!(
            p[0].starts_with("spec.schedule: \"61 2 * * *\" is not a valid cron expression"),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', timeZone: Mars/Olympus}"),
            2,
            "beijing",
            &regions(),
            now,
        );
        assert!(
            p[0].starts_with("spec.timeZone: \"Mars/Olympus\" is not a known time zone"),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', offsiteRegion: beijing}"),
            3,
            "beijing",
            &regions(),
            now,
        );
        assert!(
            p[0].contains("spec.offsiteRegion: beijing is the region of the agency's cluster"),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', offsiteRegion: lhasa}"),
            3,
            "beijing",
            &regions(),
            now,
        );
        assert!(
            p[0].contains(
                "spec.offsiteRegion: no BackupLocation is registered for region lhasa (known: beijing, guizhou)"
            ),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', drill: {schedule: 'x y z a b'}}"),
            2,
            "beijing",
            &regions(),
            now,
        );
        assert!(p[0].starts_with("spec.drill.schedule:"), "{p:?}");
        let (_, p) = validate(&spec("{schedule: '0 2 * * *'}"), 2, "shanghai", &regions(), now);
        assert!(
            p[0].contains("no BackupLocation is registered for region shanghai"),
            "{p:?}"
        );
    }

    fn b(name: &str, time: &str, phase: &str) -> Backup {
        Backup {
            name: name.into(),
            time: ts(time),
            phase: phase.into(),
        }
    }

    #[test]
    fn gfs_retention_keeps_the_right_backups() {
        // Daily backups at 02:00 Shanghai (18:00 UTC) for 60 days.
        let start = ts("2026-09-01T18:00:00Z");
        let backups: Vec<Backup> = (0..60)
            .map(|i| Backup {
                name: format!("b{i:02}"),
                time: start + jiff::SignedDuration::from_hours(24 * i),
                phase: "Completed".into(),
            })
            .collect();
        let r = Retention {
            keep_last: 3,
            daily: 5,
            weekly: 2,
            monthly: 3,
        };
        let tz = TimeZone::get("Asia/Shanghai").unwrap_or_else(|e| panic!("{e}"));
        let keep = retained(&backups, &r, &tz);
        // b00 is 2026-09-02 in Shanghai, so b28 is 30 September and b59 Saturday 31 October.
        // Newest five days (b55..b59); weekly: this ISO week (b59) and the newest of the
        // week before, Sunday 25 October (b53); monthly: October (b59) and September (b28).
        for n in ["b59", "b58", "b57", "b56", "b55", "b53", "b28"] {
            assert!(keep.contains(n), "{n} {keep:?}");
        }
        assert_eq!(keep.len(), 7, "{keep:?}");
    }

    #[test]
    fn never_prunes_the_newest_good_backup_or_running_ones() {
        let tz = TimeZone::UTC;
        let r = Retention {
            keep_last: 1,
            daily: 0,
            weekly: 0,
            monthly: 0,
        };
        let backups = vec![
            b("good-old", "2026-11-01T00:00:00Z", "Completed"),
            b("failed-1", "2026-11-02T00:00:00Z", "Failed"),
            b("failed-2", "2026-11-03T00:00:00Z", "PartiallyFailed"),
            b("running", "2026-11-04T00:00:00Z", "InProgress"),
        ];
        let keep = retained(&backups, &r, &tz);
        assert_eq!(
            keep,
            ["good-old".to_string(), "running".to_string()].into(),
            "keep-last 1 is the running one; the newest good one is kept too; failures go"
        );
    }

    #[test]
    fn label_selectors() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let sel: LabelSelector = serde_yaml::from_str(
            "{matchLabels: {tier: gold}, matchExpressions: [{key: app, operator: In, values: [oa, survey]}, {key: legacy, operator: DoesNotExist}]}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(selects(&sel, &l(&[("tier", "gold"), ("app", "oa")])));
        assert!(!selects(&sel, &l(&[("tier", "gold"), ("app", "mail")])));
        assert!(!selects(&sel, &l(&[("tier", "gold"), ("app", "oa"), ("legacy", "1")])));
        assert!(selects(&LabelSelector::default(), &l(&[])));
    }

    #[test]
    fn names_stay_short() {
        assert_eq!(schedule_name("mof-prod", "daily", false), "mof-prod-daily");
        assert_eq!(schedule_name("mof-prod", "daily", true), "mof-prod-daily-offsite");
        let long = schedule_name(&"a".repeat(60), "policy", true);
        assert!(long.len() <= 63, "{long}");
        assert_ne!(
            schedule_name(&"a".repeat(60), "x", false),
            schedule_name(&"a".repeat(60), "y", false)
        );
    }

    #[test]
    fn velero_schedule_scopes_to_namespace_and_systems() {
        let s = spec("{schedule: '0 2 * * *'}");
        let v = velero_schedule(
            "n-p",
            "mof-prod",
            "p",
            &s,
            Some(&["oa".to_string()]),
            "govcloud-beijing",
        );
        assert_eq!(v["spec"]["schedule"], "CRON_TZ=Asia/Shanghai 0 2 * * *");
        assert_eq!(v["spec"]["template"]["includedNamespaces"], json!(["mof-prod"]));
        assert_eq!(
            v["spec"]["template"]["labelSelector"]["matchExpressions"][0]["values"],
            json!(["oa"])
        );
        assert_eq!(v["spec"]["template"]["storageLocation"], "govcloud-beijing");
        let all = velero_schedule("n-p", "mof-prod", "p", &s, None, "govcloud-beijing");
        assert!(all["spec"]["template"].get("labelSelector").is_none());
    }
}
