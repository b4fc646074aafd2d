//! `kubectl govcloud status`: an agency's cloud at a glance.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use govcloud_api::agency::PlacementStatus;
use govcloud_api::conditions;
use govcloud_api::{AgencyCloud, BackupPolicy, HostedSystem};
use govcloud_core::agency::namespace_name;
use govcloud_core::quantity::Milli;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use crate::connect::{self, Global};
use crate::errors::{self, Target};
use crate::format::{self, BAR_WIDTH, Unit};

/// Examples shown by `kubectl govcloud status --help`.
pub const EXAMPLES: &str = "\
Examples:
  # Placement, conditions, quota use, hosted systems, backups and compliance of zj-bigdata
  kubectl govcloud status zj-bigdata

  # The same as JSON, for scripts
  kubectl govcloud status zj-bigdata -o json

  # List the agencies' clouds
  kubectl get agencyclouds";

/// Output of `status`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFormat {
    /// Plain text for people.
    Text,
    /// A JSON summary.
    Json,
}

/// Arguments of `status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The AgencyCloud's name (the agency's short name; `kubectl get agencyclouds` lists them).
    pub agency: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: StatusFormat,
}

/// One condition.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cond {
    /// Type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// What it means and what to do.
    pub message: String,
    /// Seconds since it last changed.
    pub age_seconds: i64,
}

impl Cond {
    fn from(c: &Condition, now: Timestamp) -> Cond {
        Cond {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            age_seconds: format::age_seconds(&c.last_transition_time, now),
        }
    }
}

/// Use of one quota resource.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUse {
    /// `cpu`, `memory`, `storage`, `pods`, `gpu`, …
    pub resource: String,
    /// Used, as the quota reports it (e.g. `7`, `4Gi`).
    pub used: String,
    /// Limit.
    pub hard: String,
    /// used ÷ hard (0 when the limit is 0).
    pub used_fraction: f64,
    #[serde(skip)]
    unit: Unit,
    #[serde(skip)]
    used_m: Milli,
    #[serde(skip)]
    hard_m: Milli,
}

/// Quota of one environment (or the total).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvQuota {
    /// Environment name, or `total`.
    pub environment: String,
    /// Namespace (empty for the total).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Per resource.
    pub resources: Vec<ResourceUse>,
}

/// One hosted system.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SystemRow {
    /// Name.
    pub name: String,
    /// Environment.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// `ready/desired` replicas.
    pub ready: String,
    /// Status of `Available`.
    pub available: String,
    /// Where it is reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One backup policy.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRow {
    /// Name.
    pub name: String,
    /// Environment.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// RPO in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo: Option<String>,
    /// Time of the newest successful backup (the recovery point).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// Its age in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_age_seconds: Option<i64>,
    /// Status of `RPOMet`.
    pub rpo_met: String,
    /// Status of `OffsiteCompliant`.
    pub offsite: String,
    /// Status of `DrillPassed`.
    pub drill: String,
}

/// What `status` shows.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// AgencyCloud name.
    pub name: String,
    /// Agency's official name.
    pub display_name: String,
    /// Unified social credit code.
    pub credit_code: String,
    /// Security level 1–4.
    pub security_level: u8,
    /// Zone the spec asks for.
    pub zone: String,
    /// Where it is placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementStatus>,
    /// Status of `Ready`.
    pub ready: String,
    /// Every condition.
    pub conditions: Vec<Cond>,
    /// Quota use per environment, then the total when there are several.
    pub quota: Vec<EnvQuota>,
    /// Hosted systems.
    pub systems: Vec<SystemRow>,
    /// Backup policies.
    pub backup_policies: Vec<PolicyRow>,
    /// Compliance conditions (`BackupCompliant`).
    pub compliance: Vec<Cond>,
    /// What could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

const COMPLIANCE: &[&str] = &[conditions::agency::BACKUP_COMPLIANT];

fn cond_status(conds: &[Condition], t: &str) -> String {
    conds
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "-".to_string())
}

fn quota_lines(hard: &BTreeMap<String, String>, used: &BTreeMap<String, String>) -> Vec<ResourceUse> {
    let mut keys: Vec<&String> = hard.keys().collect();
    keys.sort_by_key(|k| format::resource_rank(k));
    keys.into_iter()
        .map(|k| {
            let unit = Unit::of(k);
            let hard_m = hard.get(k).and_then(|v| Milli::parse(v).ok()).unwrap_or_default();
            let used_m = used.get(k).and_then(|v| Milli::parse(v).ok()).unwrap_or_default();
            ResourceUse {
                resource: format::resource_label(k),
                used: format::amount(used_m, unit),
                hard: format::amount(hard_m, unit),
                used_fraction: if hard_m > Milli::ZERO {
                    used_m.0 as f64 / hard_m.0 as f64
                } else {
                    0.0
                },
                unit,
                used_m,
                hard_m,
            }
        })
        .collect()
}

fn total(envs: &[EnvQuota]) -> EnvQuota {
    let mut sums: Vec<ResourceUse> = Vec::new();
    for r in envs.iter().flat_map(|e| &e.resources) {
        match sums.iter_mut().find(|s| s.resource == r.resource) {
            Some(s) => {
                s.used_m += r.used_m;
                s.hard_m += r.hard_m;
            }
            None => sums.push(r.clone()),
        }
    }
    for s in &mut sums {
        s.used = format::amount(s.used_m, s.unit);
        s.hard = format::amount(s.hard_m, s.unit);
        s.used_fraction = if s.hard_m > Milli::ZERO {
            s.used_m.0 as f64 / s.hard_m.0 as f64
        } else {
            0.0
        };
    }
    EnvQuota {
        environment: "total".into(),
        namespace: String::new(),
        resources: sums,
    }
}

/// The environments of a cloud: (environment, namespace), from the status, else the spec.
fn environments(ac: &AgencyCloud) -> Vec<(String, String)> {
    let from_status: Vec<(String, String)> = ac
        .status
        .as_ref()
        .map(|s| {
            s.environments
                .iter()
                .map(|e| (e.name.clone(), e.namespace.clone()))
                .collect()
        })
        .unwrap_or_default();
    if !from_status.is_empty() {
        return from_status;
    }
    let name = ac.name_any();
    ac.spec
        .cloud
        .environments
        .iter()
        .map(|e| (e.name.clone(), namespace_name(&name, &e.name)))
        .collect()
}

/// Builds the summary from the objects (pure).
pub fn summarize(
    ac: &AgencyCloud,
    systems: &[(String, HostedSystem)],
    policies: &[(String, BackupPolicy)],
    notes: Vec<String>,
    now: Timestamp,
) -> Summary {
    let st = ac.status.clone().unwrap_or_default();
    let mut quota: Vec<EnvQuota> = st
        .environments
        .iter()
        .map(|e| EnvQuota {
            environment: e.name.clone(),
            namespace: e.namespace.clone(),
            resources: quota_lines(&e.hard, &e.used),
        })
        .collect();
    if quota.len() > 1 {
        let t = total(&quota);
        quota.push(t);
    }
    let systems = systems
        .iter()
        .map(|(env, hs)| {
            let hst = hs.status.clone().unwrap_or_default();
            SystemRow {
                name: hs.name_any(),
                environment: env.clone(),
                namespace: hs.namespace().unwrap_or_default(),
                ready: hst.ready_summary.clone().unwrap_or_else(|| "-".into()),
                available: cond_status(&hst.conditions, conditions::hosted::AVAILABLE),
                url: hst.url.clone(),
            }
        })
        .collect();
    let backup_policies = policies
        .iter()
        .map(|(env, bp)| {
            let bst = bp.status.clone().unwrap_or_default();
            let last = bst.last_successful_backup.as_ref().and_then(|b| b.time.clone());
            PolicyRow {
                name: bp.name_any(),
                environment: env.clone(),
                namespace: bp.namespace().unwrap_or_default(),
                rpo: bst.rpo.clone(),
                last_success: last.as_ref().map(|t| t.0.to_string()),
                last_success_age_seconds: last.as_ref().map(|t| format::age_seconds(t, now)),
                rpo_met: cond_status(&bst.conditions, conditions::backup::RPO_MET),
                offsite: cond_status(&bst.conditions, conditions::backup::OFFSITE_COMPLIANT),
                drill: cond_status(&bst.conditions, conditions::backup::DRILL_PASSED),
            }
        })
        .collect();
    Summary {
        name: ac.name_any(),
        display_name: ac.spec.cloud.agency.display_name.clone(),
        credit_code: ac.spec.cloud.agency.credit_code.clone(),
        security_level: ac.spec.cloud.security_level,
        zone: ac.spec.cloud.zone.to_string(),
        placement: st.placement.clone(),
        ready: cond_status(&st.conditions, conditions::READY),
        conditions: {
            // Ready first, then the rest as the operator reports them.
            let mut c: Vec<Cond> = st.conditions.iter().map(|c| Cond::from(c, now)).collect();
            c.sort_by_key(|c| c.type_ != conditions::READY);
            c
        },
        quota,
        systems,
        backup_policies,
        compliance: st
            .conditions
            .iter()
            .filter(|c| COMPLIANCE.contains(&c.type_.as_str()))
            .map(|c| Cond::from(c, now))
            .collect(),
        notes,
    }
}

fn zone_label(zone: &str) -> &'static str {
    match zone {
        "internal" => "政务内网",
        "external" => "政务外网",
        _ => "",
    }
}

fn cond_rows(conds: &[Cond]) -> Vec<Vec<String>> {
    conds
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                format::age(c.age_seconds),
                c.message.clone(),
            ]
        })
        .collect()
}

/// Renders the summary as text (pure).
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    header_text(&mut out, s);
    conditions_text(&mut out, s);
    quota_text(&mut out, s);
    systems_text(&mut out, s);
    policies_text(&mut out, s);
    out.push_str("\nCompliance:\n");
    if s.compliance.is_empty() {
        out.push_str("  BackupCompliant not reported yet\n");
    } else {
        out.push_str(&conditions_table(&s.compliance));
    }
    if !s.notes.is_empty() {
        out.push_str("\nNot shown:\n");
        for n in &s.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    out
}

/// A table of conditions.
fn conditions_table(conds: &[Cond]) -> String {
    format::table("  ", &["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], &cond_rows(conds))
}

/// Who the cloud is for, its level and zone, and where it is placed (or why not).
fn header_text(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "AgencyCloud {}: {} ({})", s.name, s.display_name, s.credit_code);
    let _ = writeln!(
        out,
        "Security level: {}    Zone: {} ({})    Ready: {}",
        s.security_level,
        s.zone,
        zone_label(&s.zone),
        s.ready
    );
    match &s.placement {
        Some(p) => {
            let _ = writeln!(
                out,
                "Placement:      cluster {}, region {}, zone {}",
                p.cluster, p.region, p.zone
            );
        }
        None => {
            let why = s
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::agency::PLACED)
                .map(|c| format!(": {}", c.message))
                .unwrap_or_default();
            let _ = writeln!(out, "Placement:      not placed yet{why}");
        }
    }
}

/// The conditions other than compliance (shown in their own section).
fn conditions_text(out: &mut String, s: &Summary) {
    out.push_str("\nConditions:\n");
    let general: Vec<Cond> = s
        .conditions
        .iter()
        .filter(|c| !COMPLIANCE.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    if general.is_empty() {
        out.push_str("  none yet (the operator has not reported on this cloud)\n");
    } else {
        out.push_str(&conditions_table(&general));
    }
}

/// Quota use per environment, as bars.
fn quota_text(out: &mut String, s: &Summary) {
    out.push_str("\nQuota (used/limit):\n");
    if s.quota.is_empty() {
        out.push_str("  no quota yet: the namespaces are created once the cloud is placed\n");
    }
    for e in &s.quota {
        if e.namespace.is_empty() {
            let _ = writeln!(out, "  {}", e.environment);
        } else {
            let _ = writeln!(out, "  {} (namespace {})", e.environment, e.namespace);
        }
        let width = e.resources.iter().map(|r| r.resource.len()).max().unwrap_or(0);
        for r in &e.resources {
            let _ = writeln!(
                out,
                "    {:<width$}  {}  {}/{}",
                r.resource,
                format::bar(r.used_fraction, BAR_WIDTH),
                r.used,
                r.hard
            );
        }
    }
}

/// The hosted systems.
fn systems_text(out: &mut String, s: &Summary) {
    out.push_str("\nHosted systems:\n");
    if s.systems.is_empty() {
        out.push_str("  none\n");
        return;
    }
    let rows: Vec<Vec<String>> = s
        .systems
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.environment.clone(),
                h.ready.clone(),
                h.available.clone(),
                h.url.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&format::table(
        "  ",
        &["NAME", "ENVIRONMENT", "READY", "AVAILABLE", "URL"],
        &rows,
    ));
}

/// The backup policies.
fn policies_text(out: &mut String, s: &Summary) {
    out.push_str("\nBackup policies:\n");
    if s.backup_policies.is_empty() {
        out.push_str("  none\n");
        return;
    }
    let rows: Vec<Vec<String>> = s
        .backup_policies
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.environment.clone(),
                b.rpo.clone().unwrap_or_else(|| "-".into()),
                b.last_success_age_seconds
                    .map(|a| format!("{} ago", format::age(a)))
                    .unwrap_or_else(|| "never".into()),
                b.rpo_met.clone(),
                b.offsite.clone(),
                b.drill.clone(),
            ]
        })
        .collect();
    out.push_str(&format::table(
        "  ",
        &[
            "NAME",
            "ENVIRONMENT",
            "RPO",
            "LAST SUCCESS",
            "RPO MET",
            "OFFSITE",
            "DRILL",
        ],
        &rows,
    ));
}

/// Lists `K` in each environment namespace; a refusal or error becomes a note instead of failing.
async fn list_in<K>(client: &Client, envs: &[(String, String)], what: &str, notes: &mut Vec<String>) -> Vec<(String, K)>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut out = Vec::new();
    for (env, ns) in envs {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        match api.list(&ListParams::default()).await {
            Ok(list) => out.extend(list.items.into_iter().map(|i| (env.clone(), i))),
            Err(kube::Error::Api(s))
                if s.code == 404 && s.message.contains("could not find the requested resource") =>
            {
                notes.push(format!("{what}: the resource is not installed on this cluster"));
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(kube::Error::Api(s)) if s.code == 403 => {
                notes.push(format!(
                    "{what} in {ns}: you may not list them (missing RBAC permission `list` on {what}.govcloud.io in namespace {ns})"
                ));
            }
            Err(e) => notes.push(format!("{what} in {ns}: {e}")),
        }
    }
    out.sort_by(|a, b| (&a.0, a.1.meta().name.as_deref()).cmp(&(&b.0, b.1.meta().name.as_deref())));
    out
}

/// Runs `status`.
pub async fn run(g: &Global, args: StatusArgs) -> Result<()> {
    let conn = connect::connect(g).await?;
    let ac = Api::<AgencyCloud>::all(conn.client.clone())
        .get(&args.agency)
        .await
        .map_err(|e| errors::explain(e, &Target::cluster("AgencyCloud", "agencyclouds", &args.agency)))?;
    let envs = environments(&ac);
    let mut notes = Vec::new();
    let systems: Vec<(String, HostedSystem)> = list_in(&conn.client, &envs, "hostedsystems", &mut notes).await;
    let policies: Vec<(String, BackupPolicy)> = list_in(&conn.client, &envs, "backuppolicies", &mut notes).await;
    let summary = summarize(&ac, &systems, &policies, notes, Timestamp::now());
    match args.output {
        StatusFormat::Text => print!("{}", render(&summary)),
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud() -> AgencyCloud {
        let v = serde_json::json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud",
            "metadata": {"name": "zj"},
            "spec": {
                "agency": {"displayName": "浙江省大数据发展管理局", "shortName": "zj", "creditCode": "11330000MB19876543",
                           "adminLevel": "provincial", "contact": {"name": "李工", "email": "a@b.cn"}},
                "securityLevel": 2, "zone": "external",
                "environments": [{"name": "prod", "quota": {"cpu": "20", "memory": "64Gi"}},
                                 {"name": "test", "quota": {"cpu": "4", "memory": "16Gi"}}],
                "owners": [{"kind": "User", "name": "zj-admin"}],
                "allowedRegistries": ["registry.gov.cn"]
            },
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Ready", "message": "All set.", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "BackupCompliant", "status": "False", "reason": "SystemsWithoutBackup", "message": "Create one.", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
                "placement": {"cluster": "dc-hz", "region": "hangzhou", "zone": "external"},
                "environments": [
                    {"name": "prod", "namespace": "zj-prod",
                     "hard": {"requests.cpu": "20", "requests.memory": "64Gi", "requests.storage": "0", "pods": "100"},
                     "used": {"requests.cpu": "7", "requests.memory": "4Gi", "pods": "3"}},
                    {"name": "test", "namespace": "zj-test",
                     "hard": {"requests.cpu": "4", "requests.memory": "16Gi"},
                     "used": {"requests.cpu": "500m"}}
                ]
            }
        });
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn renders_placement_bars_and_compliance() {
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let s = summarize(&cloud(), &[], &[], vec![], now);
        let text = render(&s);
        assert!(
            text.contains("Placement:      cluster dc-hz, region hangzhou, zone external"),
            "{text}"
        );
        assert!(text.contains("    cpu      [#######.............]  7/20\n"), "{text}");
        assert!(
            text.contains("    memory   [#...................]  4Gi/64Gi\n"),
            "{text}"
        );
        assert!(text.contains("    storage  [....................]  0/0\n"), "{text}");
        assert!(
            text.contains("  total\n    cpu      [######..............]  7.5/24\n"),
            "{text}"
        );
        assert!(
            text.contains("BackupCompliant  False   SystemsWithoutBackup  60m  Create one."),
            "{text}"
        );
        let json = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(json["placement"]["region"], "hangzhou");
        assert_eq!(json["quota"][0]["resources"][0]["used"], "7");
        assert_eq!(json["ready"], "True");
    }

    #[test]
    fn lists_systems_and_backup_policies_by_environment() {
        let now: Timestamp = "2026-01-01T05:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let hs: HostedSystem = serde_json::from_value(serde_json::json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
            "metadata": {"name": "portal", "namespace": "zj-prod"},
            "spec": {"securityLevel": 2, "dataClassification": "important",
                     "components": [{"name": "web", "image": "registry.gov.cn/web:1", "resources": {"cpu": "1", "memory": "1Gi"}}]},
            "status": {"readySummary": "2/2", "url": "https://portal.zj.gov.cn/",
                       "conditions": [{"type": "Available", "status": "True", "reason": "AllReady", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let bp: BackupPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "BackupPolicy",
            "metadata": {"name": "nightly", "namespace": "zj-prod"},
            "spec": {"schedule": "0 2 * * *"},
            "status": {"rpo": "24h",
                       "lastSuccessfulBackup": {"name": "b1", "phase": "Completed", "time": "2026-01-01T02:00:00Z"},
                       "conditions": [{"type": "RPOMet", "status": "True", "reason": "Met", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let s = summarize(
            &cloud(),
            &[("prod".into(), hs)],
            &[("prod".into(), bp)],
            vec!["backuppolicies in zj-test: you may not list them".into()],
            now,
        );
        let text = render(&s);
        assert!(
            text.contains("  portal  prod         2/2    True       https://portal.zj.gov.cn/\n"),
            "{text}"
        );
        assert!(
            text.contains("  nightly  prod         24h  3h ago        True     -        -\n"),
            "{text}"
        );
        assert!(text.contains("Not shown:\n  backuppolicies in zj-test"), "{text}");
        // Ready comes first; BackupCompliant is shown under Compliance only.
        let conditions = text.split("Quota").next().unwrap_or_default();
        assert!(conditions.contains("Conditions:\n  TYPE"), "{text}");
        assert!(conditions.contains("\n  Ready "), "{text}");
        assert!(!conditions.contains("BackupCompliant"), "{text}");
        assert_eq!(s.backup_policies[0].last_success_age_seconds, Some(3 * 3600));
    }

    #[test]
    fn an_unplaced_cloud_says_why() {
        let mut ac = cloud();
        ac.status = None;
        let text = render(&summarize(&ac, &[], &[], vec![], Timestamp::now()));
        assert!(text.contains("not placed yet"), "{text}");
        assert!(text.contains("no quota yet"), "{text}");
        assert_eq!(
            environments(&ac),
            vec![("prod".into(), "zj-prod".into()), ("test".into(), "zj-test".into())]
        );
    }
}
