//! Backup policy arithmetic: schedules, RPO, GFS retention and the Velero objects.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde_json::{Value, json};

use crate::levels;
use govcloud_api::backup::{BackupLocation, BackupPolicySpec, RestoreRecord, Retention};
use govcloud_api::common::NetworkZone;
use govcloud_api::labels::{CREDIT_CODE_LABEL, MANAGED_BY, POLICY_LABEL, POLICY_NAMESPACE_LABEL, SYSTEM_LABEL};

/// Namespace of Velero on every member cluster.
pub const VELERO_NAMESPACE: &str = "velero";
/// Velero's label naming the Schedule a Backup came from.
pub const SCHEDULE_NAME_LABEL: &str = "velero.io/schedule-name";
/// Velero's label naming the Backup a DeleteBackupRequest is for.
pub const BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
/// Velero's label naming the Restore a PodVolumeRestore is for.
pub const RESTORE_NAME_LABEL: &str = "velero.io/restore-name";
/// The DaemonSet of Velero's node-agent (file-system backups of volumes).
pub const NODE_AGENT: &str = "node-agent";
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

/// The agency a policy backs up, as the checks of its stores see it.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    /// Security level.
    pub level: u8,
    /// Network zone of the agency.
    pub zone: NetworkZone,
    /// Region of the cluster the agency is placed on (its primary copies' region).
    pub region: &'a str,
}

/// The BackupLocation a policy's copies in `region` go to: the first by name of the
/// region's locations that are on the agency's zone and encrypted as its level demands.
/// Err says why none fits, naming each candidate's field (`spec.zone`, `spec.encryption`).
pub fn choose_location<'a>(
    locations: &'a [BackupLocation],
    region: &str,
    owner: Owner<'_>,
) -> Result<&'a BackupLocation, String> {
    let rules = levels::rules(owner.level);
    let mut in_region: Vec<&BackupLocation> = locations.iter().filter(|l| l.spec.region == region).collect();
    if in_region.is_empty() {
        let known: BTreeSet<&str> = locations.iter().map(|l| l.spec.region.as_str()).collect();
        return Err(format!(
            "no BackupLocation is registered for region {region} (known: {}); ask the platform team",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.into_iter().collect::<Vec<_>>().join(", ")
            }
        ));
    }
    in_region.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut why = Vec::new();
    for l in in_region {
        let name = l.metadata.name.as_deref().unwrap_or_default();
        if rules.backup_same_zone && l.spec.zone != owner.zone {
            why.push(format!(
                "BackupLocation {name} has spec.zone {} ({} data never goes to the {} network)",
                l.spec.zone, owner.zone, l.spec.zone
            ));
        } else if !rules.backup_encryption.met_by(l.spec.encryption) {
            why.push(format!(
                "BackupLocation {name} has spec.encryption {} (level {} needs {})",
                l.spec.encryption.as_str(),
                owner.level,
                rules.backup_encryption.describe()
            ));
        } else {
            return Ok(l);
        }
    }
    Err(format!(
        "no BackupLocation in region {region} fits a level {} agency of the {} zone: {}; ask the platform team for a store on the {} zone{}",
        owner.level,
        owner.zone,
        why.join("; "),
        owner.zone,
        if rules
            .backup_encryption
            .met_by(govcloud_api::backup::StoreEncryption::None)
        {
            ""
        } else {
            " with spec.encryption SM4-GCM (the project's encrypting gateway)"
        }
    ))
}

/// What is wrong with a policy given the agency it backs up and the registered backup
/// locations. Returns (effective RPO seconds, problems naming fields).
pub fn validate(
    spec: &BackupPolicySpec,
    owner: Owner<'_>,
    locations: &[BackupLocation],
    now: Timestamp,
) -> (i64, Vec<String>) {
    let level = owner.level;
    let primary_region = owner.region;
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
    if let Err(e) = choose_location(locations, primary_region, owner) {
        problems.push(format!(
            "primary copies (the agency's cluster's region {primary_region}): {e}"
        ));
    }
    match &spec.offsite_region {
        Some(r) if r == primary_region => problems.push(format!(
            "spec.offsiteRegion: {r} is the region of the agency's cluster; an off-site copy must be in another region"
        )),
        Some(r) => {
            if let Err(e) = choose_location(locations, r, owner) {
                problems.push(format!("spec.offsiteRegion: {e}"));
            }
        }
        None => {}
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

/// Who a policy's Velero objects belong to: the BackupPolicy's namespace and name, and the
/// unified social credit code of the agency whose namespace it is. Each is a label value of
/// its own on everything the operator creates in Velero (Schedules, the backups they take,
/// Restores, DeleteBackupRequests), and the operator counts, prunes and restores only the
/// backups that carry all three ([`claim`]). Namespace and name tell policies apart (a
/// namespace is one agency's); the credit code tells an agency from an earlier one that had
/// the same short name, and so the same namespaces. The credit code is part of the
/// AgencyCloud's spec and unique among agency clouds: it comes back with the hub however the
/// hub is rebuilt, where uids and creation times do not.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyId {
    /// Namespace of the BackupPolicy.
    pub namespace: String,
    /// Name of the BackupPolicy.
    pub policy: String,
    /// `spec.agency.creditCode` of the AgencyCloud the namespace belongs to.
    pub credit_code: String,
}

impl PolicyId {
    /// The identity of policy `namespace`/`policy` of the agency with `credit_code`.
    pub fn new(namespace: &str, policy: &str, credit_code: &str) -> PolicyId {
        PolicyId {
            namespace: namespace.to_string(),
            policy: policy.to_string(),
            credit_code: credit_code.to_string(),
        }
    }

    /// The labels on the policy's Velero objects.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (POLICY_NAMESPACE_LABEL.to_string(), self.namespace.clone()),
            (POLICY_LABEL.to_string(), policy_label_value(&self.policy)),
            (CREDIT_CODE_LABEL.to_string(), self.credit_code.clone()),
        ])
    }

    /// A label selector for the policy's Velero objects (for `kubectl -l` and list calls).
    pub fn selector(&self) -> String {
        self.labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether `labels` carry this identity: all three values are the policy's.
    pub fn carried_by(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels().iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Longest name of a policy's Velero Schedule: Velero labels each backup with the name of
/// its Schedule (`velero.io/schedule-name`), and a label value has at most 63 characters.
pub const SCHEDULE_NAME_MAX: usize = 63;

/// Ending of the off-site Schedule's name.
const OFFSITE: &str = ".offsite";

/// Name of the Velero Schedule of a policy: `<namespace>.<policy>`, and
/// `<namespace>.<policy>.offsite` for the off-site copy.
///
/// Different (namespace, policy, off-site) give different names. A namespace has no dot,
/// so the namespace is what precedes the first dot, whole: two namespaces (two agencies)
/// never share a name. A policy whose name has a dot, or is too long for the name to stay
/// a label value (63 characters with `.offsite`), is written as the start of its name and
/// a hash, `<namespace>.<start>.<12 hex digits>` — one more dot than a plain name, so
/// never equal to one; two such policies of one namespace would need the same 48-bit
/// SHA-256 prefix. A namespace too long to keep whole (more than 40 characters; agencies'
/// namespaces have at most 36) gives `<start of namespace>-<16 hex digits>`, without dots.
pub fn schedule_name(namespace: &str, policy: &str, offsite: bool) -> String {
    let tail = if offsite { OFFSITE } else { "" };
    let plain = format!("{namespace}.{policy}");
    if !policy.contains('.') && plain.len() + OFFSITE.len() <= SCHEDULE_NAME_MAX {
        return format!("{plain}{tail}");
    }
    let hash = sha256_hex(&format!("{namespace}/{policy}"), 12);
    let room = SCHEDULE_NAME_MAX.saturating_sub(namespace.len() + OFFSITE.len() + hash.len() + 2);
    let start = policy.replace('.', "-");
    let start = head(&start, room).trim_end_matches('-');
    if !start.is_empty() {
        return format!("{namespace}.{start}.{hash}{tail}");
    }
    let hash = sha256_hex(&format!("{namespace}/{policy}/{offsite}"), 16);
    format!(
        "{}-{hash}",
        head(namespace, SCHEDULE_NAME_MAX - hash.len() - 1).trim_end_matches(['-', '.'])
    )
}

/// The name the operator gave the policy's Velero Schedule before names carried the
/// namespace whole (`<namespace>-<policy>`, shortened with a hash over 48 characters, with
/// `-offsite`). It is ambiguous — `zj` + `bigdata-prod` … and `zj-bigdata` + `prod` … —
/// so it only finds old backups together with their namespace and time ([`claim`]).
pub fn legacy_schedule_name(namespace: &str, policy: &str, offsite: bool) -> String {
    let base = format!("{namespace}-{policy}");
    let base = if base.len() > 48 {
        format!("{}-{:08x}", head(&base, 39).trim_end_matches('-'), fnv(&base))
    } else {
        base
    };
    if offsite { format!("{base}-offsite") } else { base }
}

/// Value of [`POLICY_LABEL`] on the policy's Velero objects: the policy's name, or for a
/// name longer than a label value allows its first 46 characters and a 16-digit hash.
pub fn policy_label_value(policy: &str) -> String {
    if policy.len() <= 63 {
        return policy.to_string();
    }
    format!(
        "{}-{}",
        head(policy, 46).trim_end_matches(['-', '.']),
        sha256_hex(policy, 16)
    )
}

/// A name as Velero writes it into a label value (its `label.GetValidName`): unchanged up
/// to 63 characters, else the first 57 and 6 hex digits of its SHA-256.
pub fn velero_label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    format!("{}{}", head(name, 57), sha256_hex(name, 6))
}

/// Name of the Velero BackupStorageLocation of a BackupLocation (a shared one).
pub fn storage_location_name(location: &str) -> String {
    format!("govcloud-{location}")
}

/// Name of the Velero BackupStorageLocation through which `agency` uses a BackupLocation:
/// `govcloud-<location>` when shared, `govcloud-<location>.<agency>` when `perAgency`.
/// Injective: location names and agency names are DNS labels (no dots; the CRDs' rules),
/// so the dot separates them unambiguously and a shared name has none.
pub fn agency_storage_location_name(location: &str, per_agency: bool, agency: &str) -> String {
    if per_agency {
        format!("govcloud-{location}.{agency}")
    } else {
        storage_location_name(location)
    }
}

fn fnv(s: &str) -> u32 {
    s.bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The first `chars` hex digits of the SHA-256 of `s`.
fn sha256_hex(s: &str, chars: usize) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(chars);
    hex
}

/// The longest start of `s` of at most `max` bytes.
fn head(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Which of a policy's Schedules took a backup that is the policy's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Taken for the off-site copy.
    pub offsite: bool,
    /// Taken under the old names ([`legacy_schedule_name`]), without identity labels.
    pub legacy: bool,
}

/// The selector listing the Velero Backups that may be a policy's: those labelled with the
/// name, or the old name, of one of its Schedules. Whose each one is, [`claim`] decides.
pub fn backup_list_selector(namespace: &str, policy: &str) -> String {
    let names: Vec<String> = [false, true]
        .into_iter()
        .flat_map(|off| {
            [
                schedule_name(namespace, policy, off),
                legacy_schedule_name(namespace, policy, off),
            ]
        })
        .collect();
    format!("{SCHEDULE_NAME_LABEL} in ({})", names.join(","))
}

/// Whether a Velero Backup (its labels, `spec.includedNamespaces` and `status.startTimestamp`)
/// is one of `id`'s, and from which of its Schedules.
///
/// A backup with identity labels is the policy's when all three are the policy's
/// ([`PolicyId::carried_by`]) and it came from one of the policy's Schedules. A backup
/// without them, taken before they existed, is the policy's when it came from a Schedule
/// with one of the policy's old names, as the operator labelled those, backed up exactly
/// the policy's namespace, and started after the agency cloud was created
/// (`agency_created`). The old name alone is shared by other policies of other agencies;
/// with the namespace it is not, but a namespace comes back with an agency of the same
/// short name, and backups of it from before the agency existed are an earlier agency's.
pub fn claim(
    id: &PolicyId,
    labels: &BTreeMap<String, String>,
    included_namespaces: &[String],
    started: Option<Timestamp>,
    agency_created: Option<Timestamp>,
) -> Option<Claim> {
    let schedule = labels.get(SCHEDULE_NAME_LABEL)?;
    let (ns, policy) = (id.namespace.as_str(), id.policy.as_str());
    if labels.contains_key(POLICY_NAMESPACE_LABEL) {
        let offsite = [false, true]
            .into_iter()
            .find(|off| *schedule == schedule_name(ns, policy, *off))?;
        return id.carried_by(labels).then_some(Claim { offsite, legacy: false });
    }
    let offsite = [false, true]
        .into_iter()
        .find(|off| *schedule == legacy_schedule_name(ns, policy, *off))?;
    let labelled = labels.get(POLICY_LABEL) == Some(&legacy_schedule_name(ns, policy, false));
    let of_namespace = included_namespaces == [ns];
    let after = matches!((started, agency_created), (Some(s), Some(c)) if s >= c);
    (labelled && of_namespace && after).then_some(Claim { offsite, legacy: true })
}

/// Whether a Schedule (its labels and template's `includedNamespaces`) is the policy's
/// Schedule under the old name: labelled as the operator labelled those, without identity
/// labels, backing up the policy's namespace. Only then is it removed.
pub fn is_legacy_schedule_of(
    namespace: &str,
    policy: &str,
    labels: &BTreeMap<String, String>,
    included_namespaces: &[String],
) -> bool {
    !labels.contains_key(POLICY_NAMESPACE_LABEL)
        && labels.get(POLICY_LABEL) == Some(&legacy_schedule_name(namespace, policy, false))
        && included_namespaces == [namespace]
}

/// Whether a Schedule under the old name may still be taking backups: a backup under an
/// old name is no older than the newest under the new ones (or there are none). Then the
/// controller looks for the old Schedules to remove them; once the new Schedules have
/// taken a backup after the old ones stopped, it no longer reads them.
pub fn legacy_schedules_may_run(backups: &[(Timestamp, Claim)]) -> bool {
    let newest = |legacy: bool| {
        backups
            .iter()
            .filter(|(_, c)| c.legacy == legacy)
            .map(|(t, _)| *t)
            .max()
    };
    match (newest(true), newest(false)) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(old), Some(new)) => old >= new,
    }
}

/// The drill history after `d` (a new drill, or a running one progressed): newest first, a
/// record of the same Velero Restore replaced in place, at most `keep` (at least 1) kept.
pub fn drill_history(history: &[RestoreRecord], d: &RestoreRecord, keep: u32) -> Vec<RestoreRecord> {
    let mut out = vec![d.clone()];
    out.extend(
        history
            .iter()
            .filter(|h| !(h.restore == d.restore && h.started == d.started))
            .cloned(),
    );
    out.truncate(keep.max(1) as usize);
    out
}

/// The level's drill window in days when no drill passed within it (counted from the
/// policy's creation when none ever passed); None when drills are not required or one
/// passed in time.
pub fn drill_overdue(level: u8, history: &[RestoreRecord], created: Timestamp, now: Timestamp) -> Option<u64> {
    let window = levels::rules(level).drill_window?.as_secs();
    let last_passed = history
        .iter()
        .filter(|d| d.result == "Passed")
        .filter_map(|d| d.started.as_ref().map(|t| t.0))
        .max()
        .unwrap_or(created);
    let age = now.as_second().saturating_sub(last_passed.as_second());
    (age > i64::try_from(window).unwrap_or(i64::MAX)).then_some(window / 86_400)
}

/// What keeps an agency's backups from complying, policy by policy (`namespace/policy: why`):
/// the RPO breached, the off-site copy the level requires missing or stale, the newest
/// drill failed, or no drill passed within the level's window. `policies` are
/// `(namespace/name, conditions)` of the agency's live policies; a new policy with no
/// drill yet complies until its window passes, and a policy not yet reconciled has no
/// conditions and is not judged.
pub fn policy_problems(
    policies: &[(String, Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, conds) in policies {
        let false_with = |t: &str| {
            conds
                .iter()
                .find(|c| c.type_ == t && c.status == "False")
                .map(|c| c.reason.as_str())
        };
        let mut why = Vec::new();
        if false_with("RPOMet").is_some() {
            why.push("RPO breached");
        }
        if false_with("OffsiteCompliant").is_some() {
            why.push("off-site copy missing");
        }
        match false_with("DrillPassed") {
            Some("DrillFailed") => why.push("last drill failed"),
            Some("DrillOverdue") => why.push("drill overdue"),
            _ => {}
        }
        if !why.is_empty() {
            out.push(format!("{name}: {}", why.join(", ")));
        }
    }
    out.sort();
    out
}

/// Whether Velero's file-system backup copies a pod volume: claims, scratch space and
/// generic ephemeral volumes; not Secrets, ConfigMaps, projected or downward API volumes
/// (backed up as objects) nor host paths (which Velero skips).
fn volume_with_contents(v: &Value) -> bool {
    ["persistentVolumeClaim", "emptyDir", "ephemeral", "csi"]
        .iter()
        .any(|k| v.get(*k).is_some())
}

/// The pods (`name on node`) with volumes whose contents a backup would copy, running on a
/// node without a node-agent pod (`agent_nodes`): Velero fails their pod volume backups,
/// and with them the whole backup. Pods not yet scheduled are left out.
pub fn pods_without_node_agent(pods: &[Value], agent_nodes: &BTreeSet<String>) -> Vec<String> {
    pods.iter()
        .filter(|p| {
            p["spec"]["volumes"]
                .as_array()
                .is_some_and(|vs| vs.iter().any(volume_with_contents))
        })
        .filter_map(|p| {
            let node = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())?;
            (!agent_nodes.contains(node))
                .then(|| format!("{} on {node}", p["metadata"]["name"].as_str().unwrap_or("?")))
        })
        .collect()
}

/// What Velero's pod volume backups (or restores) of one backup (restore) say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodVolumes {
    /// Volumes.
    pub volumes: u32,
    /// Of them completed.
    pub completed: u32,
    /// Bytes (the total of each volume, as its progress reports it).
    pub bytes: i64,
    /// `pod/volume: message` of each failed one.
    pub failed: Vec<String>,
}

impl PodVolumes {
    /// Every volume completed or failed.
    pub fn done(&self) -> bool {
        self.completed as usize + self.failed.len() == self.volumes as usize
    }
}

/// Sums PodVolumeBackup or PodVolumeRestore objects (their JSON); malformed ones count as
/// volumes that have not finished.
pub fn pod_volumes(items: &[Value]) -> PodVolumes {
    let mut s = PodVolumes::default();
    for i in items {
        s.volumes = s.volumes.saturating_add(1);
        let st = &i["status"];
        // From the cluster: a negative or huge figure neither wraps nor subtracts.
        s.bytes = s
            .bytes
            .saturating_add(st["progress"]["totalBytes"].as_i64().unwrap_or(0).max(0));
        match st["phase"].as_str() {
            Some("Completed") => s.completed = s.completed.saturating_add(1),
            Some("Failed" | "Canceled") => s.failed.push(format!(
                "{}/{}: {}",
                i["spec"]["pod"]["name"].as_str().unwrap_or("?"),
                i["spec"]["volume"].as_str().unwrap_or("?"),
                st["message"].as_str().unwrap_or("no message")
            )),
            _ => {}
        }
    }
    s
}

fn with_managed_by(id: &PolicyId) -> BTreeMap<String, String> {
    let mut labels = id.labels();
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels
}

/// The Velero Schedule of a policy: its namespace (or only the selected systems' objects),
/// to one location. Volumes are never snapshotted (no CSI snapshots); with `data` their
/// contents are copied file by file by Velero's node-agent (kopia), which needs the pods in
/// the backup (a pod volume backup is taken per pod); without, manifests, Secrets and
/// claims only, and pods are left to their controllers. The Schedule and the backups it
/// takes carry the policy's identity labels.
pub fn velero_schedule(
    name: &str,
    id: &PolicyId,
    spec: &BackupPolicySpec,
    systems: Option<&[String]>,
    location: &str,
    data: bool,
) -> Value {
    // Recreated by their controllers on restore.
    let mut excluded = vec![
        "endpoints",
        "endpointslices.discovery.k8s.io",
        "events",
        "events.events.k8s.io",
    ];
    if !data {
        excluded.splice(0..0, ["pods", "replicasets.apps", "controllerrevisions.apps"]);
    }
    let mut template = json!({
        "includedNamespaces": [id.namespace],
        "storageLocation": location,
        "ttl": VELERO_TTL,
        "snapshotVolumes": false,
        "defaultVolumesToFsBackup": data,
        "includeClusterResources": false,
        "excludedResources": excluded,
        "metadata": {"labels": id.labels()},
    });
    if data {
        // Unset: Velero then takes the cluster-scoped objects the namespace's objects refer
        // to, among them each claim's PersistentVolume. A restore needs it to provision a
        // new volume for the contents (without it the restored claim names the old volume,
        // bound elsewhere or gone, and stays Pending).
        if let Some(t) = template.as_object_mut() {
            t.remove("includeClusterResources");
        }
    }
    if let Some(systems) = systems {
        template["labelSelector"] = json!({"matchExpressions": [
            {"key": SYSTEM_LABEL, "operator": "In", "values": systems}
        ]});
    }
    json!({
        "apiVersion": "velero.io/v1", "kind": "Schedule",
        "metadata": {"name": name, "namespace": VELERO_NAMESPACE, "labels": with_managed_by(id)},
        "spec": {
            "schedule": format!("CRON_TZ={} {}", spec.time_zone, spec.schedule.trim()),
            "useOwnerReferencesInBackup": false,
            "template": template,
        }
    })
}

/// A first backup taken at once when a schedule has none yet (Velero waits for the first
/// scheduled time): the schedule's template, labelled as the schedule's own backups are,
/// and named as Velero names them, `<schedule>-<UTC time as YYYYMMDDhhmmss>`.
pub fn velero_initial_backup(
    schedule: &str,
    id: &PolicyId,
    spec: &BackupPolicySpec,
    systems: Option<&[String]>,
    location: &str,
    data: bool,
    now: Timestamp,
) -> Value {
    let s = velero_schedule(schedule, id, spec, systems, location, data);
    let mut template = s["spec"]["template"].clone();
    if let Some(t) = template.as_object_mut() {
        t.remove("metadata");
    }
    let mut labels = with_managed_by(id);
    labels.insert(SCHEDULE_NAME_LABEL.into(), schedule.into());
    json!({
        "apiVersion": "velero.io/v1", "kind": "Backup",
        "metadata": {"name": format!("{schedule}-{}", now.strftime("%Y%m%d%H%M%S")),
                     "namespace": VELERO_NAMESPACE, "labels": labels},
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

/// Short stable hash of a policy (16 hex digits of the SHA-256 of `<namespace>/<policy>`),
/// for names of its restores and drills' scratch namespaces.
pub fn policy_hash(namespace: &str, policy: &str) -> String {
    sha256_hex(&format!("{namespace}/{policy}"), 16)
}

/// A Velero Restore of `backup`: into `target` (a scratch namespace, for drills) or back
/// into its own namespace (recovery: objects that still exist are left alone).
pub fn velero_restore(name: &str, backup: &str, id: &PolicyId, target: Option<&str>) -> Value {
    let mut spec = json!({
        "backupName": backup,
        "includedNamespaces": [id.namespace],
        "restorePVs": false,
        "existingResourcePolicy": "none",
    });
    if let Some(t) = target {
        spec["namespaceMapping"] = json!({id.namespace.as_str(): t});
    }
    json!({
        "apiVersion": "velero.io/v1", "kind": "Restore",
        "metadata": {"name": name, "namespace": VELERO_NAMESPACE, "labels": with_managed_by(id)},
        "spec": spec,
    })
}

/// Name of the DeleteBackupRequest by which retention prunes `backup`.
pub fn delete_request_name(backup: &str) -> String {
    format!("{backup}-prune")
}

/// The Velero DeleteBackupRequest pruning `backup`, one of `id`'s.
pub fn velero_delete_request(backup: &str, id: &PolicyId) -> Value {
    let mut labels = with_managed_by(id);
    labels.insert(BACKUP_NAME_LABEL.into(), velero_label_value(backup));
    json!({
        "apiVersion": "velero.io/v1", "kind": "DeleteBackupRequest",
        "metadata": {"name": delete_request_name(backup), "namespace": VELERO_NAMESPACE, "labels": labels},
        "spec": {"backupName": backup},
    })
}

/// The Velero BackupStorageLocation `name` for a BackupLocation; `agency` (per-agency
/// locations) confines it to the agency's prefix of the bucket.
pub fn velero_location(
    name: &str,
    spec: &govcloud_api::backup::BackupLocationSpec,
    secret: &str,
    agency: Option<&str>,
) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels.insert("govcloud.io/region".into(), spec.region.clone().into());
    let mut storage = serde_json::Map::new();
    storage.insert("bucket".into(), spec.bucket.clone().into());
    if let Some(a) = agency {
        labels.insert(govcloud_api::labels::AGENCY_LABEL.into(), a.into());
        storage.insert("prefix".into(), a.into());
    }
    json!({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": name, "namespace": VELERO_NAMESPACE, "labels": labels},
        "spec": {
            "provider": "aws",
            "objectStorage": storage,
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

    fn location(name: &str, region: &str, zone: &str, encryption: &str) -> BackupLocation {
        serde_yaml::from_str(&format!(
            "{{apiVersion: govcloud.io/v1alpha1, kind: BackupLocation, metadata: {{name: {name}}}, \
             spec: {{region: {region}, zone: {zone}, encryption: {encryption}, bucket: b-{name}, \
             endpoint: 'http://127.0.0.1:1', credentialsSecret: s}}}}"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An internal-zone store in beijing and guizhou each, both SM4-GCM.
    fn regions() -> Vec<BackupLocation> {
        vec![
            location("beijing", "beijing", "internal", "SM4-GCM"),
            location("guizhou", "guizhou", "internal", "SM4-GCM"),
        ]
    }

    fn owner(level: u8, region: &str) -> Owner<'_> {
        Owner {
            level,
            zone: NetworkZone::Internal,
            region,
        }
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
        let (rpo, p) = validate(&spec("{schedule: '0 * * * *'}"), owner(4, "beijing"), &regions(), now);
        assert_eq!((rpo, p.len()), (3600, 0), "{p:?}");
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', rpo: 1h}"),
            owner(2, "beijing"),
            &regions(),
            now,
        );
        assert!(
            p[0].starts_with("spec.rpo: 1h is shorter than the longest interval between scheduled backups (24h)"),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', rpo: 48h}"),
            owner(3, "beijing"),
            &regions(),
            now,
        );
        assert!(
            p[0].starts_with("spec.rpo: 48h is longer than level 3 allows (24h)"),
            "{p:?}"
        );
        let (_, p) = validate(&spec("{schedule: '61 2 * * *'}"), owner(2, "beijing"), &regions(), now);
        assert!(
            p[0].starts_with("spec.schedule: \"61 2 * * *\" is not a valid cron expression"),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', timeZone: Mars/Olympus}"),
            owner(2, "beijing"),
            &regions(),
            now,
        );
        assert!(
            p[0].starts_with("spec.timeZone: \"Mars/Olympus\" is not a known time zone"),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', offsiteRegion: beijing}"),
            owner(3, "beijing"),
            &regions(),
            now,
        );
        assert!(
            p[0].contains("spec.offsiteRegion: beijing is the region of the agency's cluster"),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', offsiteRegion: lhasa}"),
            owner(3, "beijing"),
            &regions(),
            now,
        );
        assert!(
            p[0].contains(
                "spec.offsiteRegion: no BackupLocation is registered for region lhasa (known: beijing, guizhou); ask the platform team"
            ),
            "{p:?}"
        );
        let (_, p) = validate(
            &spec("{schedule: '0 2 * * *', drill: {schedule: 'x y z a b'}}"),
            owner(2, "beijing"),
            &regions(),
            now,
        );
        assert!(p[0].starts_with("spec.drill.schedule:"), "{p:?}");
        let (_, p) = validate(&spec("{schedule: '0 2 * * *'}"), owner(2, "shanghai"), &regions(), now);
        assert!(
            p[0].contains("no BackupLocation is registered for region shanghai"),
            "{p:?}"
        );
    }

    #[test]
    fn per_agency_locations_get_their_own_name_prefix_and_credentials() {
        let loc = location("beijing", "beijing", "internal", "SM4-GCM");
        assert_eq!(
            agency_storage_location_name("beijing", false, "mof"),
            "govcloud-beijing"
        );
        let name = agency_storage_location_name("beijing", true, "mof");
        assert_eq!(name, "govcloud-beijing.mof");
        let v = velero_location(&name, &loc.spec, "govcloud-beijing.mof-credentials", Some("mof"));
        assert_eq!(v["spec"]["objectStorage"]["prefix"], "mof");
        assert_eq!(v["spec"]["credential"]["name"], "govcloud-beijing.mof-credentials");
        assert_eq!(v["metadata"]["labels"]["govcloud.io/agency"], "mof");
        let shared = velero_location("govcloud-beijing", &loc.spec, "s", None);
        assert!(shared["spec"]["objectStorage"].get("prefix").is_none());
        // Injective: DNS-label location and agency names, one dot between them; a shared
        // name has none, so no (location, agency) pair yields another pair's name.
        let pairs = [("a", "b-c"), ("a-b", "c"), ("a", "bc"), ("ab", "c")];
        let names: std::collections::BTreeSet<String> = pairs
            .iter()
            .flat_map(|(l, a)| {
                [
                    agency_storage_location_name(l, true, a),
                    agency_storage_location_name(l, false, a),
                ]
            })
            .collect();
        assert_eq!(names.len(), pairs.len() + 3, "{names:?}");
    }

    #[test]
    fn stores_follow_zone_and_encryption() {
        let now = ts("2026-11-28T12:00:00Z");
        // The old examples: mof (internal, level 3) copying off-site to an external store.
        let locs = vec![
            location("beijing", "beijing", "internal", "SM4-GCM"),
            location("guizhou", "guizhou", "external", "SM4-GCM"),
        ];
        let mof = spec("{schedule: '0 2 * * *', offsiteRegion: guizhou}");
        let (_, p) = validate(&mof, owner(3, "beijing"), &locs, now);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("spec.offsiteRegion: no BackupLocation in region guizhou fits a level 3 agency of the internal zone: BackupLocation guizhou has spec.zone external"),
            "{p:?}"
        );
        // And the other way round: an external agency never keeps backups on the internal network.
        let ext = Owner {
            level: 2,
            zone: NetworkZone::External,
            region: "beijing",
        };
        let (_, p) = validate(&spec("{schedule: '0 2 * * *'}"), ext, &locs, now);
        assert!(
            p[0].starts_with("primary copies (the agency's cluster's region beijing): no BackupLocation in region beijing fits a level 2 agency of the external zone: BackupLocation beijing has spec.zone internal"),
            "{p:?}"
        );
        // Level 3 refuses a plain store of its own zone; level 2 takes it.
        let plain = vec![location("bj-plain", "beijing", "internal", "None")];
        let err = choose_location(&plain, "beijing", owner(3, "beijing"))
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("BackupLocation bj-plain has spec.encryption None (level 3 needs SM4 encryption at rest)")
                && err.ends_with("with spec.encryption SM4-GCM (the project's encrypting gateway)"),
            "{err}"
        );
        let err = choose_location(&plain, "beijing", owner(4, "beijing"))
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("level 4 needs SM4 encryption with integrity (SM4-GCM)"),
            "{err}"
        );
        assert!(choose_location(&plain, "beijing", owner(2, "beijing")).is_ok());
        // Several stores in a region: the first by name that fits, not merely the first.
        let mixed = vec![
            location("a-external", "beijing", "external", "SM4-GCM"),
            location("b-plain", "beijing", "internal", "None"),
            location("c-sm4", "beijing", "internal", "SM4-GCM"),
            location("d-sm4", "beijing", "internal", "SM4-GCM"),
        ];
        let got = choose_location(&mixed, "beijing", owner(3, "beijing")).map(|l| l.metadata.name.clone());
        assert_eq!(got, Ok(Some("c-sm4".into())));
        let got = choose_location(&mixed, "beijing", owner(2, "beijing")).map(|l| l.metadata.name.clone());
        assert_eq!(got, Ok(Some("b-plain".into())));
        // A location without a zone is refused by the schema (no default): nothing to guess.
        let no_zone: Result<BackupLocation, _> = serde_yaml::from_str(
            "{apiVersion: govcloud.io/v1alpha1, kind: BackupLocation, metadata: {name: x}, \
             spec: {region: beijing, bucket: bbb, endpoint: 'http://x', credentialsSecret: s}}",
        );
        assert!(no_zone.is_err());
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

    /// A valid Kubernetes object name (DNS subdomain) that is also a valid label value.
    fn valid_name(name: &str) -> bool {
        static LABEL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap_or_else(|e| panic!("{e}"))
        });
        name.len() <= SCHEDULE_NAME_MAX && name.split('.').all(|l| LABEL.is_match(l))
    }

    fn valid_label_value(v: &str) -> bool {
        static VALUE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").unwrap_or_else(|e| panic!("{e}"))
        });
        v.len() <= 63 && VALUE.is_match(v)
    }

    #[test]
    fn names_are_readable_and_short() {
        assert_eq!(schedule_name("mof-prod", "daily", false), "mof-prod.daily");
        assert_eq!(schedule_name("mof-prod", "daily", true), "mof-prod.daily.offsite");
        // A dot in the policy's name, or a name too long: start of the name and a hash.
        assert_eq!(
            schedule_name("zj-bigdata-prod", "open.data", false),
            "zj-bigdata-prod.open-data.5fd6181105d8"
        );
        assert_eq!(
            schedule_name("zj-bigdata-prod", "open.data", true),
            "zj-bigdata-prod.open-data.5fd6181105d8.offsite"
        );
        let long = "a".repeat(253);
        for ns in ["mof-prod", "abcdefghijklmnopqrst-abcdefghijklmno", &"n".repeat(63)] {
            for off in [false, true] {
                let n = schedule_name(ns, &long, off);
                assert!(valid_name(&n), "{n}");
                assert!(n.starts_with(ns) || ns.len() > 40, "{n}");
            }
        }
        assert_eq!(policy_label_value("daily"), "daily");
        let v = policy_label_value(&long);
        assert!(valid_label_value(&v) && v.starts_with("aaaa"), "{v}");
        assert_ne!(policy_label_value(&long), policy_label_value(&format!("{long}b")));
        // The old names are still computed, to find the backups taken under them.
        assert_eq!(
            legacy_schedule_name("mof-prod", "daily", true),
            "mof-prod-daily-offsite"
        );
        assert!(legacy_schedule_name(&"a".repeat(60), "policy", true).len() <= 63);
        // Velero's label.GetValidName (first 57 characters and 6 hex digits of the SHA-256).
        assert_eq!(
            velero_label_value("mof-prod.daily-20261101020000"),
            "mof-prod.daily-20261101020000"
        );
        assert_eq!(
            velero_label_value("zj-bigdata-prod.open-data-for-the-provincial-portal.offsite-20261101020000"),
            "zj-bigdata-prod.open-data-for-the-provincial-portal.offsid85292"
        );
    }

    fn id(ns: &str, policy: &str, code: &str) -> PolicyId {
        PolicyId::new(ns, policy, code)
    }

    const ZJ: &str = "11330000MB19876543";
    const ZJ_BIGDATA: &str = "11330000MB0123456X";

    #[test]
    fn the_ambiguous_example_is_told_apart() {
        // Agency `zj`, environment `bigdata`, policy `prod-open-data`; agency `zj-bigdata`,
        // environment `prod`, policy `open-data`.
        let a = id("zj-bigdata", "prod-open-data", ZJ);
        let b = id("zj-bigdata-prod", "open-data", ZJ_BIGDATA);
        for off in [false, true] {
            assert_eq!(
                legacy_schedule_name(&a.namespace, &a.policy, off),
                legacy_schedule_name(&b.namespace, &b.policy, off),
                "the old names collide"
            );
            assert_ne!(
                schedule_name(&a.namespace, &a.policy, off),
                schedule_name(&b.namespace, &b.policy, off)
            );
        }
        assert_eq!(
            schedule_name("zj-bigdata", "prod-open-data", false),
            "zj-bigdata.prod-open-data"
        );
        assert_eq!(
            schedule_name("zj-bigdata-prod", "open-data", false),
            "zj-bigdata-prod.open-data"
        );
        assert_ne!(a.labels(), b.labels());
        assert_eq!(
            b.selector(),
            "govcloud.io/backup-namespace=zj-bigdata-prod,govcloud.io/backup-policy=open-data,govcloud.io/credit-code=11330000MB0123456X"
        );

        // Backups of each, new and old style: each policy claims its own only.
        let t = |s: &str| Some(ts(s));
        let created = t("2026-10-01T00:00:00Z");
        let new_style = |p: &PolicyId, off: bool| {
            let mut l = p.labels();
            l.insert(SCHEDULE_NAME_LABEL.into(), schedule_name(&p.namespace, &p.policy, off));
            l
        };
        let legacy = |p: &PolicyId, off: bool| {
            BTreeMap::from([
                (
                    SCHEDULE_NAME_LABEL.to_string(),
                    legacy_schedule_name(&p.namespace, &p.policy, off),
                ),
                (
                    POLICY_LABEL.to_string(),
                    legacy_schedule_name(&p.namespace, &p.policy, false),
                ),
            ])
        };
        let ns = |p: &PolicyId| vec![p.namespace.clone()];
        let when = t("2026-11-01T02:00:00Z");
        for (me, other) in [(&a, &b), (&b, &a)] {
            for off in [false, true] {
                let mine = Some(Claim {
                    offsite: off,
                    legacy: false,
                });
                let mine_old = Some(Claim {
                    offsite: off,
                    legacy: true,
                });
                assert_eq!(claim(me, &new_style(me, off), &ns(me), when, created), mine);
                assert_eq!(claim(me, &new_style(other, off), &ns(other), when, created), None);
                assert_eq!(claim(me, &legacy(me, off), &ns(me), when, created), mine_old);
                // The same old name, the other agency's namespace: not mine.
                assert_eq!(claim(me, &legacy(other, off), &ns(other), when, created), None);
            }
        }
    }

    #[test]
    fn an_earlier_agency_of_the_same_short_name_is_told_apart() {
        let now = id("zj-prod", "daily", ZJ);
        let earlier = id("zj-prod", "daily", ZJ_BIGDATA);
        let created = Some(ts("2026-10-01T00:00:00Z"));
        let ns = vec!["zj-prod".to_string()];
        let mut labels = earlier.labels();
        labels.insert(SCHEDULE_NAME_LABEL.into(), "zj-prod.daily".into());
        let after = Some(ts("2026-11-01T00:00:00Z"));
        assert_eq!(claim(&now, &labels, &ns, after, created), None, "another credit code");
        assert!(claim(&earlier, &labels, &ns, after, created).is_some());
        // Old-style backups carry no credit code: those from before the agency cloud was
        // created are an earlier agency's, and one without a start time is nobody's.
        let old = BTreeMap::from([
            (SCHEDULE_NAME_LABEL.to_string(), "zj-prod-daily".to_string()),
            (POLICY_LABEL.to_string(), "zj-prod-daily".to_string()),
        ]);
        let before = Some(ts("2026-09-30T23:59:59Z"));
        assert_eq!(claim(&now, &old, &ns, before, created), None);
        assert_eq!(claim(&now, &old, &ns, None, created), None);
        assert_eq!(claim(&now, &old, &ns, after, None), None);
        assert!(claim(&now, &old, &ns, created, created).is_some());
        // Not labelled by the operator, or of more than the namespace: not the policy's.
        let mut unlabelled = old.clone();
        unlabelled.remove(POLICY_LABEL);
        assert_eq!(claim(&now, &unlabelled, &ns, after, created), None);
        let wider = vec!["zj-prod".to_string(), "zj-test".to_string()];
        assert_eq!(claim(&now, &old, &wider, after, created), None);
        // Identity labels on a backup of another schedule: not from the policy's schedules.
        let mut elsewhere = now.labels();
        elsewhere.insert(SCHEDULE_NAME_LABEL.into(), "zj-prod-daily".into());
        assert_eq!(claim(&now, &elsewhere, &ns, after, created), None);
    }

    #[test]
    fn old_schedules_are_recognised_and_looked_for_only_while_they_may_run() {
        let labels = BTreeMap::from([(POLICY_LABEL.to_string(), "zj-bigdata-prod-open-data".to_string())]);
        let ns = |n: &str| vec![n.to_string()];
        assert!(is_legacy_schedule_of(
            "zj-bigdata-prod",
            "open-data",
            &labels,
            &ns("zj-bigdata-prod")
        ));
        assert!(!is_legacy_schedule_of(
            "zj-bigdata",
            "prod-open-data",
            &labels,
            &ns("zj-bigdata-prod")
        ));
        let mut new = labels.clone();
        new.insert(POLICY_NAMESPACE_LABEL.into(), "zj-bigdata-prod".into());
        assert!(!is_legacy_schedule_of(
            "zj-bigdata-prod",
            "open-data",
            &new,
            &ns("zj-bigdata-prod")
        ));

        let c = |legacy| Claim { offsite: false, legacy };
        let t = |s: &str| ts(s);
        assert!(!legacy_schedules_may_run(&[]));
        assert!(!legacy_schedules_may_run(&[(t("2026-11-01T00:00:00Z"), c(false))]));
        assert!(legacy_schedules_may_run(&[(t("2026-11-01T00:00:00Z"), c(true))]));
        assert!(legacy_schedules_may_run(&[
            (t("2026-11-01T00:00:00Z"), c(false)),
            (t("2026-11-02T00:00:00Z"), c(true))
        ]));
        assert!(!legacy_schedules_may_run(&[
            (t("2026-11-02T00:00:00Z"), c(false)),
            (t("2026-11-01T00:00:00Z"), c(true))
        ]));
    }

    /// A small deterministic generator for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        /// A DNS label (`dots` false) or subdomain of `1..=max` characters from a small
        /// alphabet, so that names overlap often.
        fn name(&mut self, max: usize, dots: bool) -> String {
            const A: &[u8] = b"ab0-";
            let len = 1 + self.below(max);
            let mut s: Vec<u8> = (0..len).map(|_| A[self.below(A.len())]).collect();
            if dots {
                let inner = len.saturating_sub(2);
                for c in s.iter_mut().skip(1).take(inner) {
                    if self.below(6) == 0 {
                        *c = b'.';
                    }
                }
            }
            let mut s = String::from_utf8(s).unwrap_or_default();
            // Each label starts and ends with a letter or digit.
            s = s
                .split('.')
                .map(|l| {
                    let l = l.trim_matches('-');
                    if l.is_empty() { "a".to_string() } else { l.to_string() }
                })
                .collect::<Vec<_>>()
                .join(".");
            s
        }
    }

    #[test]
    fn schedule_names_are_injective_over_many_pairs() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut pairs: Vec<(String, String)> = Vec::new();
        // Every way of splitting dashed words between namespace and policy (the old collision).
        for words in [
            vec!["zj", "bigdata", "prod", "open", "data"],
            vec!["a", "b", "c", "offsite"],
            vec!["mof", "prod", "daily", "offsite", "offsite"],
        ] {
            for cut in 1..words.len() {
                pairs.push((words[..cut].join("-"), words[cut..].join("-")));
                pairs.push((words[..cut].join("-"), words[cut..].join(".")));
            }
        }
        // Agency-like namespaces (`<short>-<env>`, up to 36 characters) and random policies:
        // short, dotted, ending in `offsite`, and long enough to be hashed.
        for _ in 0..20_000 {
            let ns = format!(
                "{}-{}",
                rng.name(20, false),
                rng.name(15, false).replace(['-', '0'], "e")
            );
            let policy = match rng.below(5) {
                0 => format!("{}-offsite", rng.name(20, false)),
                1 => format!("{}.offsite", rng.name(20, false)),
                2 => rng.name(253, true),
                _ => rng.name(30, true),
            };
            pairs.push((ns, policy));
        }
        // Namespaces of any length, up to 63 (beyond agencies').
        for _ in 0..5_000 {
            pairs.push((rng.name(63, false), rng.name(80, true)));
        }
        pairs.sort();
        pairs.dedup();
        let mut names: BTreeMap<String, (String, String, bool)> = BTreeMap::new();
        let mut labels: BTreeMap<(String, String), String> = BTreeMap::new();
        for (ns, policy) in &pairs {
            for off in [false, true] {
                let n = schedule_name(ns, policy, off);
                assert!(valid_name(&n), "{ns}/{policy}: {n}");
                if let Some(prev) = names.insert(n.clone(), (ns.clone(), policy.clone(), off)) {
                    panic!("{n} for both {prev:?} and {:?}", (ns, policy, off));
                }
                // Velero's backup names stay valid object names.
                let backup = format!("{n}-20261101020000");
                assert!(backup.len() <= 253 && valid_label_value(&velero_label_value(&backup)));
            }
            let id = PolicyId::new(ns, policy, ZJ);
            for (k, v) in id.labels() {
                assert!(valid_label_value(&v), "{k}={v}");
            }
            let v = policy_label_value(policy);
            if let Some(prev) = labels.insert((ns.clone(), v.clone()), policy.clone()) {
                panic!("policy label {v} in {ns} for both {prev} and {policy}");
            }
        }
        assert!(names.len() > 40_000, "{}", names.len());
        // The same pairs under the old names: this test finds their collisions.
        let old: BTreeSet<String> = pairs
            .iter()
            .map(|(ns, policy)| legacy_schedule_name(ns, policy, false))
            .collect();
        assert!(old.len() < pairs.len(), "{} of {}", old.len(), pairs.len());
    }

    #[test]
    fn velero_objects_carry_the_identity() {
        let s = spec("{schedule: '0 2 * * *'}");
        let me = id("mof-prod", "daily", ZJ);
        let sched = velero_schedule("mof-prod.daily", &me, &s, None, "govcloud-beijing", true);
        let initial = velero_initial_backup(
            "mof-prod.daily",
            &me,
            &s,
            None,
            "govcloud-beijing",
            true,
            ts("2026-11-28T18:00:09Z"),
        );
        let restore = velero_restore("gc-x-r1", "mof-prod.daily-20261128180009", &me, None);
        let dbr = velero_delete_request("mof-prod.daily-20261128180009", &me);
        for (what, labels) in [
            ("schedule", &sched["metadata"]["labels"]),
            ("template", &sched["spec"]["template"]["metadata"]["labels"]),
            ("initial backup", &initial["metadata"]["labels"]),
            ("restore", &restore["metadata"]["labels"]),
            ("delete request", &dbr["metadata"]["labels"]),
        ] {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(labels.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(me.carried_by(&labels), "{what}: {labels:?}");
        }
        assert_eq!(initial["metadata"]["name"], "mof-prod.daily-20261128180009");
        assert_eq!(initial["metadata"]["labels"][SCHEDULE_NAME_LABEL], "mof-prod.daily");
        assert!(initial["spec"].get("metadata").is_none());
        assert_eq!(dbr["metadata"]["name"], "mof-prod.daily-20261128180009-prune");
        assert_eq!(dbr["spec"]["backupName"], "mof-prod.daily-20261128180009");
        assert_eq!(
            backup_list_selector("mof-prod", "daily"),
            "velero.io/schedule-name in (mof-prod.daily,mof-prod-daily,mof-prod.daily.offsite,mof-prod-daily-offsite)"
        );
        assert_eq!(policy_hash("mof-prod", "daily").len(), 16);
        assert_ne!(
            policy_hash("zj-bigdata", "prod-open-data"),
            policy_hash("zj-bigdata-prod", "open-data")
        );
    }

    #[test]
    fn velero_schedule_scopes_to_namespace_and_systems() {
        let s = spec("{schedule: '0 2 * * *'}");
        let v = velero_schedule(
            "n-p",
            &id("mof-prod", "p", ZJ),
            &s,
            Some(&["oa".to_string()]),
            "govcloud-beijing",
            true,
        );
        assert_eq!(v["spec"]["schedule"], "CRON_TZ=Asia/Shanghai 0 2 * * *");
        assert_eq!(v["spec"]["template"]["includedNamespaces"], json!(["mof-prod"]));
        assert_eq!(
            v["spec"]["template"]["labelSelector"]["matchExpressions"][0]["values"],
            json!(["oa"])
        );
        assert_eq!(v["spec"]["template"]["storageLocation"], "govcloud-beijing");
        let all = velero_schedule("n-p", &id("mof-prod", "p", ZJ), &s, None, "govcloud-beijing", false);
        assert!(all["spec"]["template"].get("labelSelector").is_none());
        // Volume contents need the pods in the backup (one pod volume backup per pod);
        // objects only leave pods to their controllers.
        let t = &v["spec"]["template"];
        assert_eq!(t["defaultVolumesToFsBackup"], true);
        assert_eq!(t["snapshotVolumes"], false);
        assert!(
            t.get("includeClusterResources").is_none(),
            "the claims' volumes are needed"
        );
        assert!(
            !t["excludedResources"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("pods")))
        );
        let t = &all["spec"]["template"];
        assert_eq!(t["defaultVolumesToFsBackup"], false);
        assert_eq!(t["includeClusterResources"], false);
        assert!(
            t["excludedResources"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("pods")))
        );
    }

    fn drill(restore: &str, result: &str, started: &str) -> RestoreRecord {
        RestoreRecord {
            restore: restore.into(),
            result: result.into(),
            started: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(started))),
            ..Default::default()
        }
    }

    #[test]
    fn drill_history_keeps_the_newest_first_and_updates_a_running_drill_in_place() {
        let a = drill("r1", "Passed", "2026-01-01T00:00:00Z");
        let b = drill("r2", "Running", "2026-02-01T00:00:00Z");
        let h = drill_history(&[], &a, 3);
        let h = drill_history(&h, &b, 3);
        assert_eq!(h.iter().map(|d| d.restore.as_str()).collect::<Vec<_>>(), ["r2", "r1"]);
        let b2 = RestoreRecord {
            result: "Failed".into(),
            ..b.clone()
        };
        let h = drill_history(&h, &b2, 3);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].result, "Failed");
        let mut h = h;
        for i in 3..9 {
            h = drill_history(&h, &drill(&format!("r{i}"), "Passed", "2026-03-01T00:00:00Z"), 3);
        }
        assert_eq!(
            h.iter().map(|d| d.restore.as_str()).collect::<Vec<_>>(),
            ["r8", "r7", "r6"]
        );
        // A history of 0 still keeps the newest.
        assert_eq!(drill_history(&h, &a, 0).len(), 1);
    }

    #[test]
    fn a_drill_is_overdue_when_no_passed_drill_is_within_the_levels_window() {
        let h = vec![
            drill("r3", "Failed", "2026-06-01T00:00:00Z"),
            drill("r2", "Passed", "2026-01-10T00:00:00Z"),
        ];
        let created = ts("2025-06-01T00:00:00Z");
        // Level 1 demands none.
        assert_eq!(drill_overdue(1, &h, created, ts("2027-06-01T00:00:00Z")), None);
        // Level 3: 183 days from the newest passed drill (the failed one does not count).
        assert_eq!(drill_overdue(3, &h, created, ts("2026-07-01T00:00:00Z")), None);
        assert_eq!(drill_overdue(3, &h, created, ts("2026-07-13T00:00:00Z")), Some(183));
        // Level 4: 92 days.
        assert_eq!(drill_overdue(4, &h, created, ts("2026-04-13T00:00:00Z")), Some(92));
        // Never drilled: the window runs from the policy's creation.
        assert_eq!(
            drill_overdue(2, &[], ts("2026-01-01T00:00:00Z"), ts("2026-06-01T00:00:00Z")),
            None
        );
        assert_eq!(
            drill_overdue(2, &[], ts("2025-01-01T00:00:00Z"), ts("2026-06-01T00:00:00Z")),
            Some(366)
        );
    }

    #[test]
    fn policy_problems_name_the_policy_and_what_fails() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
        let c = |t: &str, st: &str, reason: &str| Condition {
            type_: t.into(),
            status: st.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts("2026-01-01T00:00:00Z")),
            observed_generation: None,
        };
        let ok = vec![
            c("RPOMet", "True", "WithinRPO"),
            c("OffsiteCompliant", "True", "NotRequired"),
            c("DrillPassed", "False", "NoDrillYet"),
        ];
        let bad = vec![
            c("RPOMet", "False", "RPOBreached"),
            c("OffsiteCompliant", "True", "OffsiteCopyCurrent"),
            c("DrillPassed", "False", "DrillOverdue"),
        ];
        let failed = vec![
            c("DrillPassed", "False", "DrillFailed"),
            c("OffsiteCompliant", "False", "OffsiteRequired"),
        ];
        let running = vec![c("DrillPassed", "False", "DrillRunning")];
        let p = policy_problems(&[
            ("a/ok".into(), ok),
            ("b/bad".into(), bad),
            ("a/failed".into(), failed),
            ("c/running".into(), running),
            ("d/new".into(), vec![]),
        ]);
        assert_eq!(
            p,
            [
                "a/failed: off-site copy missing, last drill failed",
                "b/bad: RPO breached, drill overdue"
            ]
        );
    }

    #[test]
    fn pods_on_nodes_without_a_node_agent_are_named_when_they_have_contents() {
        let pod = |name: &str, node: Option<&str>, volumes: Value| {
            let mut p = json!({"metadata": {"name": name}, "spec": {"volumes": volumes}});
            if let Some(n) = node {
                p["spec"]["nodeName"] = json!(n);
            }
            p
        };
        let agents: BTreeSet<String> = ["dc1-real".to_string()].into();
        let pods = vec![
            pod(
                "db-0",
                Some("dc1-real"),
                json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]),
            ),
            pod(
                "db-1",
                Some("kwok-1"),
                json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}}]),
            ),
            pod("cache", Some("kwok-2"), json!([{"name": "tmp", "emptyDir": {}}])),
            pod(
                "web",
                Some("kwok-1"),
                json!([{"name": "token", "projected": {}}, {"name": "cfg", "configMap": {"name": "x"}}]),
            ),
            pod(
                "logs",
                Some("kwok-1"),
                json!([{"name": "h", "hostPath": {"path": "/var/log"}}]),
            ),
            pod(
                "pending",
                None,
                json!([{"name": "data", "persistentVolumeClaim": {"claimName": "p"}}]),
            ),
            pod("bare", Some("kwok-3"), json!(null)),
        ];
        assert_eq!(
            pods_without_node_agent(&pods, &agents),
            ["db-1 on kwok-1", "cache on kwok-2"]
        );
        assert!(pods_without_node_agent(&pods[..1], &agents).is_empty());
    }

    #[test]
    fn pod_volume_summaries_add_up_and_name_what_failed() {
        let items = vec![
            json!({"metadata": {"name": "b-1"}, "spec": {"pod": {"namespace": "n", "name": "db-0"}, "volume": "data"},
                   "status": {"phase": "Completed", "progress": {"totalBytes": 1000, "bytesDone": 1000}}}),
            json!({"metadata": {"name": "b-2"}, "spec": {"pod": {"namespace": "n", "name": "db-1"}, "volume": "data"},
                   "status": {"phase": "Failed", "message": "kopia: unable to read"}}),
            json!({"metadata": {"name": "b-3"}, "spec": {"pod": {"namespace": "n", "name": "db-2"}, "volume": "data"},
                   "status": {"phase": "InProgress", "progress": {"totalBytes": 50, "bytesDone": 10}}}),
        ];
        let s = pod_volumes(&items);
        assert_eq!((s.volumes, s.completed, s.bytes), (3, 1, 1050));
        assert_eq!(s.failed, vec!["db-1/data: kopia: unable to read".to_string()]);
        assert!(!s.done());
        let s = pod_volumes(&items[..1]);
        assert!(s.done() && s.failed.is_empty());
        assert_eq!(pod_volumes(&[json!("garbage"), json!({"status": 7})]).volumes, 2);
    }
}
