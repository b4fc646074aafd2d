//! A realistic, fully compliant agency as the collector would read it: for unit tests and
//! the benchmark of report generation (hack/bench.sh), never used by the operator itself.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::{Inputs, Location};
use crate::agency::{self, Child};
use crate::backup::{self as bk, PolicyId};
use govcloud_api::labels::{AGENCY_LABEL, REQUEST_LABEL, SYSTEM_LABEL};

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

fn live(c: &Child, uid: &str) -> Value {
    let mut b = c.body.clone();
    b["metadata"]["uid"] = json!(uid);
    b["metadata"]["resourceVersion"] = json!("1");
    b
}

/// Inputs of agency `name` at `level` (external zone; internal at level 4) for the month
/// ending at `end`: two environments, three systems (one exposed to the internet, approved),
/// one backup policy with daily backups and off-site copies, and a passed drill.
pub fn inputs(name: &str, level: u8, end: Timestamp) -> Result<Inputs, String> {
    let start = end
        .checked_sub(SignedDuration::from_hours(24 * 30))
        .map_err(|e| e.to_string())?;
    let created = start
        .checked_sub(SignedDuration::from_hours(24 * 90))
        .map_err(|e| e.to_string())?;
    let zone = if level >= 4 { "internal" } else { "external" };
    let agency = agency_cloud(name, level, zone, created)?;
    let cluster: govcloud_api::DataCenterCluster = parse(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "DataCenterCluster",
        "metadata": {"name": "dc-beijing-1", "uid": "uid-dc-beijing-1"},
        "spec": {"region": "beijing", "zone": zone, "maxSecurityLevel": 4}
    }))?;
    let request = request(name, &agency, created)?;
    let (children, _) = agency::member_children(name, &agency.spec.cloud);
    let mut member: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(n, c)| live(c, &format!("uid-{name}-{n}")))
        .collect();
    for (n, c) in agency::shared_children().iter().enumerate() {
        member.push(live(c, &format!("uid-shared-{n}")));
    }
    let systems = systems(name, level, &mut member)?;
    let ns = format!("{name}-prod");
    let id = PolicyId::new(&ns, "daily", CREDIT_CODE);
    let backups = backups(&ns, &id, start)?;
    let drill_at = end
        .checked_sub(SignedDuration::from_hours(24 * 10))
        .map_err(|e| e.to_string())?;
    let restore = format!("gc-{}-d{}", bk::policy_hash(&ns, "daily"), drill_at.as_second());
    let restores = vec![json!({
        "apiVersion": "velero.io/v1", "kind": "Restore",
        "metadata": {"name": restore, "namespace": bk::VELERO_NAMESPACE, "uid": format!("uid-{restore}"),
                     "labels": id.labels(), "creationTimestamp": drill_at.to_string()},
        "spec": {"backupName": "b"}, "status": {"phase": "Completed"}
    })];
    let policy = policy(name, level, &ns, &restore, created, drill_at, end)?;
    let hub = agency::hub_children(name, &agency.spec.cloud)
        .iter()
        .enumerate()
        .map(|(n, c)| live(c, &format!("uid-hub-{name}-{n}")))
        .collect();
    Ok(Inputs {
        agency,
        cluster: Some(cluster),
        member_name: "dc-beijing-1".into(),
        member_is_hub: false,
        request: Some(request),
        hub,
        member,
        systems,
        policies: vec![policy],
        locations: vec![location("beijing", zone), location("guizhou", zone)],
        backups,
        restores,
        notes: vec![],
        period_start: start,
        period_end: end,
        now: end,
    })
}

/// The sample agency's unified social credit code.
const CREDIT_CODE: &str = "11100000MB0123456X";

/// The AgencyCloud, placed on dc-beijing-1 and Ready since `created`.
fn agency_cloud(name: &str, level: u8, zone: &str, created: Timestamp) -> Result<govcloud_api::AgencyCloud, String> {
    parse(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud",
        "metadata": {"name": name, "uid": format!("uid-ac-{name}"), "creationTimestamp": created.to_string(),
                     "labels": {REQUEST_LABEL: format!("tenancy-requests.{name}")}},
        "spec": {
            "agency": {"displayName": format!("示例机关 {name}"), "shortName": name, "creditCode": CREDIT_CODE,
                       "adminLevel": "provincial", "contact": {"name": "张工", "email": "ops@example.gov.cn"}},
            "securityLevel": level, "zone": zone,
            "environments": [{"name": "prod", "quota": {"cpu": "16", "memory": "64Gi", "storage": "500Gi"}},
                             {"name": "test", "quota": {"cpu": "4", "memory": "16Gi"}}],
            "owners": [{"kind": "Group", "name": format!("{name}-owners")}],
            "viewers": [{"kind": "Group", "name": format!("{name}-auditors")}],
            "egress": [{"name": "ldap", "cidr": "10.1.0.0/16", "ports": [{"port": 636}]}],
            "domains": [format!("{name}.gov.cn")],
            "allowedRegistries": ["registry.gov.cn", format!("harbor.dc.gov.cn/{name}")],
            "placement": {"region": "beijing"}
        },
        "status": {
            "placement": {"cluster": "dc-beijing-1", "region": "beijing", "zone": zone},
            "environments": [{"name": "prod", "namespace": format!("{name}-prod")}, {"name": "test", "namespace": format!("{name}-test")}],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": created.to_string()},
                {"type": "BackupCompliant", "status": "True", "reason": "AllCovered", "message": "", "lastTransitionTime": created.to_string()}
            ]
        }
    }))
}

/// The TenancyRequest the cloud came from, approved by another user.
fn request(
    name: &str,
    agency: &govcloud_api::AgencyCloud,
    created: Timestamp,
) -> Result<govcloud_api::TenancyRequest, String> {
    parse(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "TenancyRequest",
        "metadata": {"name": name, "namespace": "tenancy-requests", "uid": format!("uid-tr-{name}"), "generation": 1},
        "spec": {"cloud": agency.spec.cloud, "justification": "迁移政务服务系统上云，服务全省群众办事。",
                 "requestedBy": format!("{name}-admin"),
                 "decision": {"action": "Approve", "decidedBy": "platform-approver", "reason": "符合年度上云计划", "reviewedGeneration": 1}},
        "status": {"decisionObservedTime": created.to_string(), "agencyCloud": name}
    }))
}

/// Three HostedSystems in the prod namespace, their flow policies added to `member`; the
/// first exposed to the internet below level 4 (approved at level 3).
fn systems(name: &str, level: u8, member: &mut Vec<Value>) -> Result<Vec<govcloud_api::HostedSystem>, String> {
    let mut systems = Vec::new();
    for (n, sys) in ["portal", "office", "survey"].iter().enumerate() {
        let ns = format!("{name}-prod");
        member.push(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("govcloud-{sys}-web"), "namespace": ns, "uid": format!("uid-{name}-np-{sys}"),
                         "labels": {AGENCY_LABEL: name, SYSTEM_LABEL: sys}},
            "spec": {"podSelector": {"matchLabels": {SYSTEM_LABEL: sys}}, "policyTypes": ["Ingress"]}
        }));
        let exposed = n == 0 && level <= 3;
        let mut spec = json!({"securityLevel": level.min(3), "dataClassification": "important",
            "components": [{"name": "web", "image": "registry.gov.cn/web:1", "resources": {"cpu": "1", "memory": "1Gi"}, "ports": [{"name": "http", "port": 8080}]}]});
        if exposed {
            let host = format!("{sys}.{name}.gov.cn");
            spec["exposure"] = json!({"mode": "Internet", "component": "web", "port": 8080, "host": host});
            if level == 3 {
                spec["internetExposureApproval"] =
                    json!({"approvedBy": "platform-approver", "host": host, "reason": "等保测评报告 2026-031 通过"});
            }
        }
        systems.push(parse::<govcloud_api::HostedSystem>(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
            "metadata": {"name": sys, "namespace": ns, "uid": format!("uid-{name}-hs-{sys}")},
            "spec": spec
        }))?);
    }
    Ok(systems)
}

/// A daily backup and its off-site copy, completed at 02:00 each day from `start` on.
fn backups(ns: &str, id: &PolicyId, start: Timestamp) -> Result<Vec<Value>, String> {
    let mut backups = Vec::new();
    for day in 0..31 {
        let t = start
            .checked_add(SignedDuration::from_hours(24 * day + 2))
            .map_err(|e| e.to_string())?;
        for offsite in [false, true] {
            let mut l = id.labels();
            l.insert(bk::SCHEDULE_NAME_LABEL.into(), bk::schedule_name(ns, "daily", offsite));
            let bname = format!("{}-{}", bk::schedule_name(ns, "daily", offsite), t.as_second());
            backups.push(json!({
                "apiVersion": "velero.io/v1", "kind": "Backup",
                "metadata": {"name": bname, "namespace": bk::VELERO_NAMESPACE, "uid": format!("uid-{bname}"), "labels": l},
                "spec": {"includedNamespaces": [ns], "storageLocation": bk::storage_location_name(if offsite { "guizhou" } else { "beijing" })},
                "status": {"phase": "Completed", "startTimestamp": t.to_string(), "completionTimestamp": t.to_string()}
            }));
        }
    }
    Ok(backups)
}

/// The BackupPolicy `daily` in `ns`, compliant: RPO met, copies in guizhou, a passed drill.
fn policy(
    name: &str,
    level: u8,
    ns: &str,
    restore: &str,
    created: Timestamp,
    drill_at: Timestamp,
    end: Timestamp,
) -> Result<govcloud_api::BackupPolicy, String> {
    parse(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "daily", "namespace": ns, "uid": format!("uid-{name}-bp"), "creationTimestamp": created.to_string()},
        "spec": {"schedule": "0 2 * * *", "offsiteRegion": "guizhou", "drill": {"schedule": "0 3 1 * *"}},
        "status": {
            "rpo": if level >= 4 { "1h" } else { "24h" }, "systems": ["office", "portal", "survey"], "retained": 31,
            "copiesInRegions": ["beijing", "guizhou"],
            "lastSuccessfulBackup": {"name": "b", "phase": "Completed", "time": end.to_string(), "region": "beijing"},
            "lastDrill": {"trigger": "schedule", "backup": "b", "restore": restore, "namespace": "drill-x", "result": "Passed",
                          "message": "3 systems came back and ran", "started": drill_at.to_string(), "finished": drill_at.to_string(), "durationSeconds": 95},
            "conditions": [
                {"type": "RPOMet", "status": "True", "reason": "Met", "message": "", "lastTransitionTime": created.to_string()},
                {"type": "OffsiteCompliant", "status": "True", "reason": "CopyPresent", "message": "", "lastTransitionTime": created.to_string()},
                {"type": "DrillPassed", "status": "True", "reason": "Passed", "message": "", "lastTransitionTime": drill_at.to_string()}
            ]
        }
    }))
}

/// The SM4-GCM store of `region` on `zone`.
fn location(region: &str, zone: &str) -> Location {
    Location {
        name: region.into(),
        uid: Some(format!("uid-bl-{region}")),
        region: region.into(),
        endpoint: format!("https://oss-{region}.dc.gov.cn"),
        zone: Some(zone.into()),
        encryption: Some("SM4-GCM".into()),
    }
}
