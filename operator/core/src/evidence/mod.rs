//! Evidence reports for security-level assessments (等级保护测评): per agency, for each
//! control of its level, what enforces it, the live objects that prove it, and what is
//! missing or failing with what to do — each control line mapped to GB/T 22239-2019 items
//! (docs/evidence.md). Pure: the operator collects the live objects ([`Inputs`]), this
//! module decides ([`build`]), renders ([`html`]) and signs ([`sign`]).

pub mod html;
pub mod sample;
pub mod sign;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agency::{self, Child, Kind, RefusedEgress};
use crate::backup::{self as bk, PolicyId};
use crate::levels::{self, InternetExposure, LevelRules};
use govcloud_api::agency::{AgencyCloud, CloudSpec, PlacementStatus};
use govcloud_api::hosted::ExposureMode;
use govcloud_api::{BackupPolicy, DataCenterCluster, HostedSystem, TenancyRequest, conditions};

/// Schema of the report document.
pub const SCHEMA: &str = "govcloud.io/evidence/v1";
/// Name (on the evidence) of objects on the hub when it is not a registered cluster.
pub const HUB: &str = "hub";

/// One item of GB/T 22239-2019 a control line stands for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StandardItem {
    /// The clause of the agency's level: `8.1` (general requirements, level 3), `8.2` (cloud
    /// extension, level 3); `6.x` level 1, `7.x` level 2, `9.x` level 4.
    pub clause: String,
    /// `安全通用要求` or `云计算安全扩展要求`.
    pub part: String,
    /// Layer, e.g. `安全区域边界`.
    pub layer: String,
    /// Control item, e.g. `访问控制`.
    pub item: String,
}

/// How a control stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// In force, proven by the evidence.
    Met,
    /// Required, but what enforces it is not there (not placed yet, no backup policy, …).
    Missing,
    /// There, but not as the level requires.
    Failing,
    /// Not required at this level (shown for completeness).
    NotRequired,
}

impl Status {
    /// Label in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Met => "Met",
            Status::Missing => "Missing",
            Status::Failing => "Failing",
            Status::NotRequired => "NotRequired",
        }
    }
}

/// A live object proving (part of) a control.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// DataCenterCluster it lives on, or [`HUB`].
    pub cluster: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace, for namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// `metadata.uid`: the object read, not one of the same name created later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The fields that matter, as read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
}

/// Something missing or failing, and what to do.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub action: String,
}

/// One control line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Control {
    /// Stable id, e.g. `NET-ISOLATION` (docs/evidence.md maps each).
    pub id: String,
    /// Title.
    pub title: String,
    /// Title in Chinese.
    pub title_zh: String,
    /// The standard's items this line stands for.
    pub standard: Vec<StandardItem>,
    /// What the level requires here.
    pub requirement: String,
    /// What enforces it on the platform.
    pub enforced_by: String,
    /// How it stands.
    pub status: Status,
    /// The live objects that prove it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// What is missing or failing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// Who the report is about.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgencyInfo {
    /// AgencyCloud name (short name).
    pub name: String,
    /// Official name.
    pub display_name: String,
    /// Unified social credit code.
    pub credit_code: String,
    /// Security level 1–4.
    pub security_level: u8,
    /// `internal` (政务内网) or `external` (政务外网).
    pub zone: String,
    /// `metadata.uid` of the AgencyCloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Count of control lines by status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Lines.
    pub controls: u32,
    /// Met.
    pub met: u32,
    /// Missing.
    pub missing: u32,
    /// Failing.
    pub failing: u32,
    /// Not required at this level.
    pub not_required: u32,
}

/// An evidence report (what is signed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// The agency.
    pub agency: AgencyInfo,
    /// Start of the period (RFC 3339).
    pub period_start: String,
    /// End of the period (RFC 3339).
    pub period_end: String,
    /// When the live objects were read (RFC 3339).
    pub generated_at: String,
    /// Lines by status.
    pub summary: Summary,
    /// One line per control.
    pub controls: Vec<Control>,
    /// What could not be read (the lines it concerns say so too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A BackupLocation as the report sees it (encryption read leniently: the field is the
/// backup gateway's).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Location {
    /// Name.
    pub name: String,
    /// uid.
    pub uid: Option<String>,
    /// Region.
    pub region: String,
    /// Endpoint URL.
    pub endpoint: String,
    /// Network zone (`internal`/`external`), if declared.
    pub zone: Option<String>,
    /// Declared encryption (e.g. `SM4` through the project's gateway), if any.
    pub encryption: Option<String>,
}

/// Why a store does not fit an agency of `zone` and `level` (the backup rules of the
/// level table), or None when it fits.
fn store_problem(loc: &Location, zone: &str, level: u8) -> Option<String> {
    let rules = levels::rules(level);
    // The API type's own spelling (`SM4-GCM`); anything else is no encryption.
    let enc: govcloud_api::backup::StoreEncryption = loc
        .encryption
        .as_deref()
        .and_then(|e| serde_json::from_value(Value::String(e.into())).ok())
        .unwrap_or_default();
    if rules.backup_same_zone && loc.zone.as_deref() != Some(zone) {
        Some(format!(
            "spec.zone is {}, the agency is on the {zone} zone",
            loc.zone.as_deref().unwrap_or("not declared")
        ))
    } else if !rules.backup_encryption.met_by(enc) {
        Some(format!(
            "spec.encryption is {}, level {level} needs {}",
            loc.encryption.as_deref().unwrap_or("not declared"),
            rules.backup_encryption.describe()
        ))
    } else {
        None
    }
}

/// What the operator read for one agency.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The AgencyCloud.
    pub agency: AgencyCloud,
    /// The cluster it is placed on (None when not placed or not found).
    pub cluster: Option<DataCenterCluster>,
    /// The name evidence on the placed cluster carries (the DataCenterCluster's).
    pub member_name: String,
    /// The placed cluster is the hub itself (the hub's objects are the member's).
    pub member_is_hub: bool,
    /// The TenancyRequest it was provisioned from, if any.
    pub request: Option<TenancyRequest>,
    /// Live objects on the placed cluster, as JSON: the agency's namespaces and the objects
    /// labelled `govcloud.io/agency=<name>` in them (NetworkPolicies, ResourceQuotas,
    /// LimitRanges, RoleBindings), and the shared admission policies and bindings.
    pub member: Vec<Value>,
    /// Live objects on the hub (its namespaces and RoleBindings of the agency) when the hub
    /// is not the placed cluster.
    pub hub: Vec<Value>,
    /// HostedSystems of the agency (hub).
    pub systems: Vec<HostedSystem>,
    /// BackupPolicies of the agency (hub).
    pub policies: Vec<BackupPolicy>,
    /// Every BackupLocation.
    pub locations: Vec<Location>,
    /// Velero Backups on the placed cluster carrying the agency's credit code.
    pub backups: Vec<Value>,
    /// Velero Restores on the placed cluster carrying the agency's credit code.
    pub restores: Vec<Value>,
    /// What could not be read.
    pub notes: Vec<String>,
    /// Period start.
    pub period_start: Timestamp,
    /// Period end.
    pub period_end: Timestamp,
    /// When read.
    pub now: Timestamp,
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(x) => Some(x.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Evidence for a live JSON object on `cluster`, with `facts`.
pub fn evidence_of(cluster: &str, v: &Value, facts: &[(&str, String)]) -> Evidence {
    Evidence {
        cluster: cluster.to_string(),
        api_version: s(v, &["apiVersion"]).unwrap_or_default(),
        kind: s(v, &["kind"]).unwrap_or_default(),
        namespace: s(v, &["metadata", "namespace"]),
        name: s(v, &["metadata", "name"]).unwrap_or_default(),
        uid: s(v, &["metadata", "uid"]),
        facts: facts.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

fn with_type_meta<K: Serialize>(o: &K, api_version: &str, kind: &str) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), Value::from(api_version));
        m.insert("kind".into(), Value::from(kind));
    }
    v
}

const GOVCLOUD: &str = "govcloud.io/v1alpha1";

fn item(level: u8, cloud: bool, layer: &str, item: &str) -> StandardItem {
    let clause = u32::from(level.clamp(1, 4)) + 5;
    StandardItem {
        clause: format!("{clause}.{}", if cloud { 2 } else { 1 }),
        part: if cloud {
            "云计算安全扩展要求"
        } else {
            "安全通用要求"
        }
        .into(),
        layer: layer.into(),
        item: item.into(),
    }
}

/// Index of live objects by (kind, namespace, name).
struct Live<'a> {
    by_key: BTreeMap<(String, Option<String>, String), &'a Value>,
}

impl<'a> Live<'a> {
    fn new(objects: &'a [Value]) -> Live<'a> {
        Live {
            by_key: objects
                .iter()
                .map(|o| {
                    (
                        (
                            s(o, &["kind"]).unwrap_or_default(),
                            s(o, &["metadata", "namespace"]),
                            s(o, &["metadata", "name"]).unwrap_or_default(),
                        ),
                        o,
                    )
                })
                .collect(),
        }
    }

    fn get(&self, kind: &str, ns: Option<&str>, name: &str) -> Option<&'a Value> {
        self.by_key
            .get(&(kind.to_string(), ns.map(str::to_string), name.to_string()))
            .copied()
    }

    fn in_namespace(&self, kind: &str, ns: &str) -> Vec<&'a Value> {
        self.by_key
            .iter()
            .filter(|((k, n, _), _)| k == kind && n.as_deref() == Some(ns))
            .map(|(_, v)| *v)
            .collect()
    }
}

/// A line being built.
struct Line {
    c: Control,
}

impl Line {
    fn new(
        id: &str,
        title: &str,
        title_zh: &str,
        standard: Vec<StandardItem>,
        requirement: String,
        enforced_by: &str,
    ) -> Line {
        Line {
            c: Control {
                id: id.into(),
                title: title.into(),
                title_zh: title_zh.into(),
                standard,
                requirement,
                enforced_by: enforced_by.into(),
                status: Status::Met,
                evidence: vec![],
                findings: vec![],
            },
        }
    }

    fn missing(&mut self, problem: String, action: &str) {
        if self.c.status == Status::Met {
            self.c.status = Status::Missing;
        }
        self.c.findings.push(Finding {
            problem,
            action: action.into(),
        });
    }

    fn failing(&mut self, problem: String, action: &str) {
        if matches!(self.c.status, Status::Met | Status::Missing) {
            self.c.status = Status::Failing;
        }
        self.c.findings.push(Finding {
            problem,
            action: action.into(),
        });
    }

    /// The line needs the agency placed: it is not yet.
    fn not_placed(&mut self) {
        self.missing("not placed: no namespaces yet".into(), "see DATA-LOCATION");
    }

    fn not_required(mut self) -> Control {
        if self.c.findings.is_empty() {
            self.c.status = Status::NotRequired;
        }
        self.c
    }

    fn done(self) -> Control {
        self.c
    }

    /// The line as it stands where the level requires it, else not required.
    fn required_if(self, required: bool) -> Control {
        if required { self.done() } else { self.not_required() }
    }
}

/// Checks the expected children of `kinds` against the live objects: each present (a
/// subset of the live body) becomes evidence; each absent or different a finding.
fn check_children(
    line: &mut Line,
    cluster: &str,
    live: &Live,
    expected: &[&Child],
    facts: impl Fn(&Value) -> Vec<(&'static str, String)>,
) {
    for c in expected {
        let kind = c.kind.gvk().2;
        match live.get(kind, c.namespace.as_deref(), &c.name) {
            Some(v) if crate::subset::contains(v, &c.body) => {
                line.c.evidence.push(evidence_of(cluster, v, &facts(v)));
            }
            Some(v) => {
                line.c.evidence.push(evidence_of(cluster, v, &facts(v)));
                line.failing(
                    format!(
                        "{kind} {}{} on {cluster} differs from what the level requires",
                        c.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
                        c.name
                    ),
                    "the operator restores it on its next pass; if this stays, check the AgencyCloud's Isolated condition and the operator's log",
                );
            }
            None => line.missing(
                format!(
                    "{kind} {}{} is not on {cluster}",
                    c.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
                    c.name
                ),
                "wait until the AgencyCloud is Ready; if it is and this stays, check its Isolated condition",
            ),
        }
    }
}

fn json_str(v: Option<&Value>) -> String {
    v.map(|x| match x {
        Value::String(s) => s.clone(),
        other => crate::evidence::sign::canonical_compact(other),
    })
    .unwrap_or_default()
}

fn condition<'a>(
    conds: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conds.iter().find(|c| c.type_ == t)
}

/// Maximum interval between passed restore drills by level (design table: yearly at
/// level 2, quarterly at 3, monthly at 4; GB/T 20988 as reference), in days.
pub fn drill_interval_days(level: u8) -> Option<i64> {
    match level {
        2 => Some(366),
        3 => Some(92),
        4.. => Some(31),
        _ => None,
    }
}

/// An enum as the API writes it.
fn enum_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn ts(v: &Value, path: &[&str]) -> Option<Timestamp> {
    s(v, path)?.parse().ok()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

/// What the control lines of [`build`] read: the inputs, and what is derived from them once.
struct Ctx<'a> {
    i: &'a Inputs,
    spec: &'a CloudSpec,
    name: String,
    level: u8,
    rules: LevelRules,
    member: Live<'a>,
    hub: Live<'a>,
    /// The name evidence on the placed cluster carries.
    mc: &'a str,
    placement: Option<PlacementStatus>,
    /// Placed on a cluster that is registered.
    placed: bool,
    ac_json: Value,
    /// What the agency needs on its placed cluster, and the refused egress rules.
    expected: Vec<Child>,
    refused: Vec<RefusedEgress>,
}

impl<'a> Ctx<'a> {
    fn new(i: &'a Inputs) -> Ctx<'a> {
        let spec = &i.agency.spec.cloud;
        let name = i.agency.metadata.name.clone().unwrap_or_default();
        let placement = i.agency.status.as_ref().and_then(|s| s.placement.clone());
        let (expected, refused) = agency::member_children(&name, spec);
        Ctx {
            i,
            spec,
            level: spec.security_level,
            rules: levels::rules(spec.security_level),
            member: Live::new(&i.member),
            hub: Live::new(&i.hub),
            mc: i.member_name.as_str(),
            placed: placement.is_some() && i.cluster.is_some(),
            placement,
            ac_json: with_type_meta(&i.agency, GOVCLOUD, "AgencyCloud"),
            expected,
            refused,
            name,
        }
    }

    fn of_kind(&self, k: Kind) -> Vec<&Child> {
        self.expected.iter().filter(|c| c.kind == k).collect()
    }
}

/// Builds the report (pure).
pub fn build(i: &Inputs) -> Report {
    let cx = Ctx::new(i);
    let mut controls = vec![
        data_location(&cx),
        net_isolation(&cx),
        net_flows(&cx),
        pod_security(&cx),
        image_registry(&cx),
        exposure(&cx),
        resources(&cx),
        access(&cx),
        tenancy_approval(&cx),
    ];
    // 10-14: backups.
    controls.extend(backup_controls(i, &cx.name, cx.level, &cx.ac_json));
    report(i, cx.name, controls)
}

/// The report of `controls`, with their count by status.
fn report(i: &Inputs, name: String, controls: Vec<Control>) -> Report {
    let spec = &i.agency.spec.cloud;
    let mut summary = Summary {
        controls: controls.len() as u32,
        ..Default::default()
    };
    for c in &controls {
        match c.status {
            Status::Met => summary.met += 1,
            Status::Missing => summary.missing += 1,
            Status::Failing => summary.failing += 1,
            Status::NotRequired => summary.not_required += 1,
        }
    }
    Report {
        schema: SCHEMA.into(),
        agency: AgencyInfo {
            name,
            display_name: spec.agency.display_name.clone(),
            credit_code: spec.agency.credit_code.clone(),
            security_level: spec.security_level,
            zone: spec.zone.as_str().into(),
            uid: i.agency.metadata.uid.clone(),
        },
        period_start: i.period_start.to_string(),
        period_end: i.period_end.to_string(),
        generated_at: i.now.to_string(),
        summary,
        controls,
        notes: i.notes.clone(),
    }
}

/// 1. Where the agency's systems and data are.
fn data_location(cx: &Ctx) -> Control {
    let (spec, level) = (cx.spec, cx.level);
    let mut l = Line::new(
        "DATA-LOCATION",
        "Infrastructure location and certified level of the cluster",
        "基础设施位置与承载平台等级",
        vec![
            item(level, true, "安全物理环境", "基础设施位置"),
            item(level, true, "安全通信网络", "网络架构"),
            item(level, true, "安全计算环境", "数据完整性和保密性"),
        ],
        format!(
            "placed on a national data-center cluster certified for level {} or above, in zone {}{}",
            cx.rules.min_cluster_level,
            spec.zone.as_str(),
            spec.placement
                .region
                .as_ref()
                .map(|r| format!(", region {r}"))
                .unwrap_or_default()
        ),
        "placement (AgencyCloud status.placement, sticky) against DataCenterCluster certification",
    );
    match &cx.placement {
        Some(p) => {
            l.c.evidence.push(evidence_of(
                HUB,
                &cx.ac_json,
                &[
                    ("status.placement.cluster", p.cluster.clone()),
                    ("status.placement.region", p.region.clone()),
                    ("status.placement.zone", p.zone.as_str().into()),
                    ("spec.securityLevel", level.to_string()),
                ],
            ));
            match &cx.i.cluster {
                Some(dcc) => check_cluster(&mut l, cx, &p.cluster, dcc),
                None => l.missing(
                    format!("DataCenterCluster {} is not registered any more", p.cluster),
                    "register the cluster again (its DataCenterCluster) or ask the platform team",
                ),
            }
        }
        None => l.missing(
            "the agency is not placed on a cluster yet".into(),
            "see the AgencyCloud's Placed condition (`kubectl govcloud status`)",
        ),
    }
    l.done()
}

/// DATA-LOCATION: the placed cluster's certified level, zone and region against the agency's.
fn check_cluster(l: &mut Line, cx: &Ctx, cluster: &str, dcc: &DataCenterCluster) {
    let (spec, level) = (cx.spec, cx.level);
    let d = &dcc.spec;
    l.c.evidence.push(evidence_of(
        HUB,
        &with_type_meta(dcc, GOVCLOUD, "DataCenterCluster"),
        &[
            ("spec.region", d.region.clone()),
            ("spec.zone", d.zone.as_str().into()),
            ("spec.maxSecurityLevel", d.max_security_level.to_string()),
            ("spec.ownership", enum_str(&d.ownership)),
        ],
    ));
    if d.max_security_level < cx.rules.min_cluster_level {
        l.failing(
            format!(
                "cluster {} is certified for level {}, below the agency's level {level}",
                cluster, d.max_security_level
            ),
            "move the agency's systems to a cluster certified for its level (a new AgencyCloud), or have the cluster certified",
        );
    }
    if d.zone != spec.zone {
        l.failing(
            format!(
                "cluster {} is on zone {}, the agency on {}",
                cluster,
                d.zone.as_str(),
                spec.zone.as_str()
            ),
            "the agency must be re-provisioned on a cluster of its zone",
        );
    }
    if let Some(r) = &spec.placement.region
        && r != &d.region
    {
        l.failing(
            format!(
                "cluster {} is in region {}, outside the region {r} the spec allows",
                cluster, d.region
            ),
            "re-provision the agency in its region",
        );
    }
}

/// 2. Isolation between tenants: default deny in every namespace.
fn net_isolation(cx: &Ctx) -> Control {
    let level = cx.level;
    let mut l = Line::new(
        "NET-ISOLATION",
        "Isolation from other agencies (default deny)",
        "租户网络隔离（默认拒绝）",
        vec![
            item(level, true, "安全通信网络", "网络架构"),
            item(level, true, "安全区域边界", "访问控制"),
            item(level, false, "安全区域边界", "访问控制"),
        ],
        if cx.rules.deny_undeclared_egress {
            "every namespace denies all ingress and egress not explicitly allowed".into()
        } else {
            "every namespace denies all ingress not explicitly allowed".into()
        },
        "NetworkPolicy govcloud-default-deny in each namespace, written by the operator; agencies cannot change NetworkPolicies",
    );
    let deny: Vec<&Child> = cx
        .of_kind(Kind::NetworkPolicy)
        .into_iter()
        .filter(|c| c.name == "govcloud-default-deny")
        .collect();
    if cx.placed {
        check_children(&mut l, cx.mc, &cx.member, &deny, |v| {
            vec![
                ("spec.podSelector", json_str(v.pointer("/spec/podSelector"))),
                ("spec.policyTypes", json_str(v.pointer("/spec/policyTypes"))),
            ]
        });
    } else {
        l.not_placed();
    }
    l.done()
}

/// 3. Declared flows and egress.
fn net_flows(cx: &Ctx) -> Control {
    let level = cx.level;
    let mut l = Line::new(
        "NET-FLOWS",
        "Allowed flows and egress only as declared",
        "访问控制策略（仅允许声明的流量）",
        vec![
            item(level, true, "安全计算环境", "访问控制"),
            item(level, false, "安全区域边界", "边界防护"),
            item(level, false, "安全区域边界", "访问控制"),
        ],
        format!(
            "traffic within the agency, DNS and the declared egress rules only; internet egress {}",
            match cx.rules.internet_egress {
                levels::InternetEgress::Declared => "as declared",
                levels::InternetEgress::ExplicitExitRule =>
                    "only through rules marked internetExit (the unified internet exit)",
                levels::InternetEgress::Never => "never",
            }
        ),
        "NetworkPolicies govcloud-allow-agency, govcloud-allow-dns and govcloud-egress-<rule> per namespace, and each hosted system's flow policies",
    );
    let flows: Vec<&Child> = cx
        .of_kind(Kind::NetworkPolicy)
        .into_iter()
        .filter(|c| c.name != "govcloud-default-deny")
        .collect();
    if cx.placed {
        check_children(&mut l, cx.mc, &cx.member, &flows, |v| {
            vec![("spec.policyTypes", json_str(v.pointer("/spec/policyTypes")))]
        });
        // The hosted systems' own flow policies.
        for ns in namespaces(cx.i, &cx.name) {
            for v in cx.member.in_namespace("NetworkPolicy", &ns) {
                let lb = labels(v);
                if let Some(sys) = lb.get(govcloud_api::labels::SYSTEM_LABEL) {
                    l.c.evidence.push(evidence_of(cx.mc, v, &[("system", sys.clone())]));
                }
            }
        }
    } else {
        l.not_placed();
    }
    for r in &cx.refused {
        l.failing(
            format!("egress rule {} is refused: {}", r.rule, r.why),
            "remove the rule from spec.egress or change it as the message says",
        );
    }
    l.done()
}

/// 4. Pod Security.
fn pod_security(cx: &Ctx) -> Control {
    let level = cx.level;
    let mut l = Line::new(
        "POD-SECURITY",
        "Pod Security standard enforced",
        "容器安全基线（Pod Security）",
        vec![
            item(level, false, "安全计算环境", "入侵防范"),
            item(level, true, "安全计算环境", "入侵防范"),
        ],
        format!(
            "Pod Security `{}` enforced on every namespace",
            cx.rules.pod_security.as_str()
        ),
        "namespace labels pod-security.kubernetes.io/enforce (the API server's admission), written by the operator",
    );
    if cx.placed {
        let ns: Vec<&Child> = cx.of_kind(Kind::Namespace);
        check_children(&mut l, cx.mc, &cx.member, &ns, |v| {
            vec![(
                "pod-security.kubernetes.io/enforce",
                s(v, &["metadata", "labels", "pod-security.kubernetes.io/enforce"]).unwrap_or_default(),
            )]
        });
    } else {
        l.not_placed();
    }
    l.done()
}

/// 5. Registries.
fn image_registry(cx: &Ctx) -> Control {
    let (spec, level, mc) = (cx.spec, cx.level, cx.mc);
    let mut l = Line::new(
        "IMAGE-REGISTRY",
        "Images only from the agency's allowed registries",
        "镜像来源控制",
        vec![
            item(level, true, "安全计算环境", "镜像和快照保护"),
            item(level, false, "安全计算环境", "恶意代码防范"),
        ],
        format!("images only from: {}", agency::registry_annotation(spec)),
        "ValidatingAdmissionPolicy govcloud-registries and its binding, reading each namespace's govcloud.io/allowed-registries annotation",
    );
    if !cx.placed {
        l.not_placed();
        return l.done();
    }
    let shared = agency::shared_children();
    let reg: Vec<&Child> = shared.iter().filter(|c| c.name == agency::REGISTRY_POLICY).collect();
    check_children(&mut l, mc, &cx.member, &reg, |v| {
        vec![("spec.validationActions", json_str(v.pointer("/spec/validationActions")))]
            .into_iter()
            .filter(|(_, x)| !x.is_empty())
            .collect()
    });
    for ns in namespaces(cx.i, &cx.name) {
        match cx.member.get("Namespace", None, &ns) {
            Some(v) => {
                let ann = s(v, &["metadata", "annotations", agency::REGISTRY_ANNOTATION]).unwrap_or_default();
                if ann != agency::registry_annotation(spec) {
                    l.failing(
                        format!("namespace {ns} allows registries {ann:?}, the spec {:?}", agency::registry_annotation(spec)),
                        "the operator rewrites the annotation on its next pass; if this stays, check the operator's log",
                    );
                }
            }
            None => l.missing(
                format!("namespace {ns} is not on {mc}"),
                "wait until the AgencyCloud is Ready",
            ),
        }
    }
    l.done()
}

/// 6. Exposure.
fn exposure(cx: &Ctx) -> Control {
    let level = cx.level;
    let mut l = Line::new(
        "EXPOSURE",
        "Exposure only through the operator, internet exposure as the level allows",
        "对外暴露控制与审批",
        vec![
            item(level, false, "安全区域边界", "边界防护"),
            item(level, true, "安全区域边界", "访问控制"),
        ],
        match cx.rules.internet_exposure {
            InternetExposure::Allowed => "no Service of type LoadBalancer, NodePort or ExternalName; internet exposure allowed (external zone)".into(),
            InternetExposure::NeedsApproval => "no Service of type LoadBalancer, NodePort or ExternalName; internet exposure only with a recorded platform approval for the host".into(),
            InternetExposure::Never => "no Service of type LoadBalancer, NodePort or ExternalName; never exposed to the internet".into(),
        },
        "ValidatingAdmissionPolicy govcloud-service-exposure; HostedSystem spec.exposure with spec.internetExposureApproval (approved by platform approvers only, checked at admission)",
    );
    if cx.placed {
        let shared = agency::shared_children();
        let svc: Vec<&Child> = shared.iter().filter(|c| c.name == agency::SERVICE_POLICY).collect();
        check_children(&mut l, cx.mc, &cx.member, &svc, |_| vec![]);
    } else {
        l.not_placed();
    }
    for hs in &cx.i.systems {
        system_exposure(&mut l, cx, hs);
    }
    l.done()
}

/// EXPOSURE: one hosted system's exposure, and its approval where the level needs one.
fn system_exposure(l: &mut Line, cx: &Ctx, hs: &HostedSystem) {
    let level = cx.level;
    let Some(x) = &hs.spec.exposure else { return };
    if x.mode == ExposureMode::None {
        return;
    }
    let host = x.host.clone().unwrap_or_default();
    let mut facts = vec![
        ("spec.exposure.mode", enum_str(&x.mode)),
        ("spec.exposure.host", host.clone()),
    ];
    if let Some(a) = &hs.spec.internet_exposure_approval {
        facts.push(("spec.internetExposureApproval.approvedBy", a.approved_by.clone()));
        facts.push(("spec.internetExposureApproval.host", a.host.clone()));
        facts.push(("spec.internetExposureApproval.reason", a.reason.clone()));
    }
    l.c.evidence
        .push(evidence_of(HUB, &with_type_meta(hs, GOVCLOUD, "HostedSystem"), &facts));
    if x.mode != ExposureMode::Internet {
        return;
    }
    let sys = hs.metadata.name.clone().unwrap_or_default();
    match cx.rules.internet_exposure {
        InternetExposure::Never => l.failing(
            format!("system {sys} is exposed to the internet; level {level} never is"),
            "set spec.exposure.mode to GovernmentNetwork or None",
        ),
        InternetExposure::NeedsApproval => match &hs.spec.internet_exposure_approval {
            Some(a) if a.host == host => {}
            Some(a) => l.failing(
                format!(
                    "system {sys}: the approval is for host {}, the exposure uses {host}",
                    a.host
                ),
                "ask a platform approver to approve the host in use (kubectl govcloud approve-exposure)",
            ),
            None => l.failing(
                format!("system {sys} asks for internet exposure without a platform approval"),
                "ask a platform approver to record spec.internetExposureApproval",
            ),
        },
        InternetExposure::Allowed => {}
    }
}

/// 7. Quota and limits.
fn resources(cx: &Ctx) -> Control {
    let mut l = Line::new(
        "RESOURCES",
        "Quota and default limits",
        "资源配额与限制",
        vec![item(cx.level, true, "安全管理中心", "集中管控")],
        "a ResourceQuota and a LimitRange in every namespace, as the spec's quotas".into(),
        "ResourceQuota govcloud-quota and LimitRange govcloud-defaults, written by the operator; agencies cannot change them",
    );
    if cx.placed {
        let q: Vec<&Child> = cx
            .expected
            .iter()
            .filter(|c| matches!(c.kind, Kind::ResourceQuota | Kind::LimitRange))
            .collect();
        check_children(&mut l, cx.mc, &cx.member, &q, |v| {
            let hard = v.pointer("/spec/hard");
            if hard.is_some() {
                vec![("spec.hard", json_str(hard))]
            } else {
                vec![]
            }
        });
    } else {
        l.not_placed();
    }
    l.done()
}

/// 8. Access: owners and viewers.
fn access(cx: &Ctx) -> Control {
    let (spec, level) = (cx.spec, cx.level);
    let subjects = |list: &[govcloud_api::agency::Subject]| {
        list.iter()
            .map(|s| format!("{:?}:{}", s.kind, s.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut l = Line::new(
        "ACCESS",
        "Who may use and see the agency's cloud",
        "访问权限（所有者与查看者）",
        vec![
            item(level, false, "安全计算环境", "访问控制"),
            item(level, true, "安全计算环境", "访问控制"),
        ],
        format!(
            "owners {} and viewers {} only, with the platform's least-privilege roles",
            subjects(&spec.owners),
            if spec.viewers.is_empty() {
                "(none)".into()
            } else {
                subjects(&spec.viewers)
            }
        ),
        "RoleBindings govcloud-owners and govcloud-viewers in each namespace (member and hub), to the operator's ClusterRoles",
    );
    let rb: Vec<&Child> = cx.of_kind(Kind::RoleBinding);
    let facts = |v: &Value| {
        vec![
            ("roleRef.name", s(v, &["roleRef", "name"]).unwrap_or_default()),
            ("subjects", json_str(v.get("subjects"))),
        ]
    };
    if cx.placed {
        check_children(&mut l, cx.mc, &cx.member, &rb, facts);
        if !cx.i.member_is_hub {
            let hub_children = agency::hub_children(&cx.name, spec);
            let hrb: Vec<&Child> = hub_children.iter().filter(|c| c.kind == Kind::RoleBinding).collect();
            check_children(&mut l, HUB, &cx.hub, &hrb, facts);
        }
    } else {
        l.not_placed();
    }
    l.done()
}

/// 9. Tenancy approval.
fn tenancy_approval(cx: &Ctx) -> Control {
    let i = cx.i;
    let mut l = Line::new(
        "TENANCY-APPROVAL",
        "The cloud was approved by a platform approver",
        "上云审批记录",
        vec![item(cx.level, false, "安全管理机构", "授权和审批")],
        "a TenancyRequest approved by a platform approver other than the requester, for the version reviewed".into(),
        "TenancyRequest spec.decision (approver, reason, reviewed generation), admitted only from platform approvers in their own name",
    );
    let label = i
        .agency
        .metadata
        .labels
        .as_ref()
        .and_then(|m| m.get(govcloud_api::labels::REQUEST_LABEL))
        .cloned();
    match (&i.request, label) {
        (Some(tr), _) => check_decision(&mut l, tr),
        (None, Some(lbl)) => l.missing(
            format!("the TenancyRequest {lbl} the cloud was provisioned from is gone"),
            "keep approved TenancyRequests: they are the approval record (restore it from the hub's backup)",
        ),
        (None, None) => l.missing(
            "the AgencyCloud was created directly, not from an approved TenancyRequest: there is no approval record"
                .into(),
            "record the approval: file a TenancyRequest for the cloud as it is and have a platform approver decide it",
        ),
    }
    l.done()
}

/// TENANCY-APPROVAL: the request's decision as evidence, and whether it approves.
fn check_decision(l: &mut Line, tr: &TenancyRequest) {
    let d = tr.spec.decision.as_ref();
    let decided_at = tr
        .status
        .as_ref()
        .and_then(|s| s.decision_observed_time.as_ref())
        .map(|t| t.0.to_string())
        .or_else(|| {
            tr.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, conditions::tenancy::DECIDED))
                .map(|c| c.last_transition_time.0.to_string())
        })
        .unwrap_or_default();
    let mut facts = vec![
        ("spec.requestedBy", tr.spec.requested_by.clone().unwrap_or_default()),
        (
            "spec.decision.action",
            d.map(|d| enum_str(&d.action)).unwrap_or_default(),
        ),
        (
            "spec.decision.decidedBy",
            d.map(|d| d.decided_by.clone()).unwrap_or_default(),
        ),
        ("spec.decision.reason", d.map(|d| d.reason.clone()).unwrap_or_default()),
        ("decidedAt", decided_at),
    ];
    if let Some(g) = d.and_then(|d| d.reviewed_generation) {
        facts.push(("spec.decision.reviewedGeneration", g.to_string()));
    }
    l.c.evidence.push(evidence_of(
        HUB,
        &with_type_meta(tr, GOVCLOUD, "TenancyRequest"),
        &facts,
    ));
    match d {
        Some(d) if d.action == govcloud_api::tenancy::DecisionAction::Approve => {
            if tr.spec.requested_by.as_deref() == Some(d.decided_by.as_str()) {
                l.failing(
                    "the requester approved their own request".into(),
                    "have another platform approver review the cloud",
                );
            }
        }
        _ => l.failing(
            "the request is not approved".into(),
            "the AgencyCloud must come from an approved request",
        ),
    }
}

/// The agency's namespaces: from its status, else the spec.
pub fn namespaces(i: &Inputs, name: &str) -> Vec<String> {
    let _ = name;
    namespaces_of(&i.agency)
}

/// The namespaces of an AgencyCloud: from its status, else its spec. The first is where its
/// EvidenceReports are kept on the hub.
pub fn namespaces_of(ac: &AgencyCloud) -> Vec<String> {
    let from_status: Vec<String> = ac
        .status
        .as_ref()
        .map(|s| s.environments.iter().map(|e| e.namespace.clone()).collect())
        .unwrap_or_default();
    if !from_status.is_empty() {
        return from_status;
    }
    let name = ac.metadata.name.clone().unwrap_or_default();
    ac.spec
        .cloud
        .environments
        .iter()
        .map(|e| agency::namespace_name(&name, &e.name))
        .collect()
}

/// A Velero Backup of one of the agency's policies.
struct BackupSeen<'a> {
    v: &'a Value,
    policy: usize,
    offsite: bool,
    phase: String,
    time: Option<Timestamp>,
    location: String,
}

/// What the backup lines read: the agency's policies, the Velero objects they claim, and
/// the stores.
struct Backups<'a> {
    i: &'a Inputs,
    name: &'a str,
    level: u8,
    rules: LevelRules,
    /// The name evidence on the placed cluster carries.
    mc: &'a str,
    zone: &'a str,
    /// The agency's region, once placed.
    region: Option<String>,
    ac_json: &'a Value,
    /// The identity of each policy, by its index in `i.policies`.
    ids: Vec<PolicyId>,
    /// Stores by the name of their Velero BackupStorageLocations.
    loc_by_velero: BTreeMap<String, &'a Location>,
    backups: Vec<BackupSeen<'a>>,
}

impl<'a> Backups<'a> {
    fn new(i: &'a Inputs, name: &'a str, level: u8, ac_json: &'a Value) -> Backups<'a> {
        let spec = &i.agency.spec.cloud;
        let credit = &spec.agency.credit_code;
        let ids: Vec<PolicyId> = i
            .policies
            .iter()
            .map(|p| {
                PolicyId::new(
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default(),
                    credit,
                )
            })
            .collect();
        let loc_by_velero = i
            .locations
            .iter()
            .flat_map(|l| {
                [
                    (bk::storage_location_name(&l.name), l),
                    (bk::agency_storage_location_name(&l.name, true, name), l),
                ]
            })
            .collect();
        Backups {
            i,
            name,
            level,
            rules: levels::rules(level),
            mc: i.member_name.as_str(),
            zone: spec.zone.as_str(),
            region: i
                .agency
                .status
                .as_ref()
                .and_then(|s| s.placement.as_ref())
                .map(|p| p.region.clone()),
            ac_json,
            backups: backups_seen(i, &ids),
            ids,
            loc_by_velero,
        }
    }

    fn in_period(&self, t: Option<Timestamp>) -> bool {
        t.is_some_and(|t| t >= self.i.period_start && t < self.i.period_end)
    }

    /// The backups of policy `n` (its off-site copies or not) that completed in the period.
    fn completed(&self, n: usize, offsite: bool) -> Vec<&BackupSeen<'a>> {
        self.backups
            .iter()
            .filter(|b| b.policy == n && b.offsite == offsite && b.phase == "Completed" && self.in_period(b.time))
            .collect()
    }
}

/// The Velero Backups that one of the policies (by index in `i.policies`) claims.
fn backups_seen<'a>(i: &'a Inputs, ids: &[PolicyId]) -> Vec<BackupSeen<'a>> {
    let agency_created = i.agency.metadata.creation_timestamp.as_ref().map(|t| t.0);
    i.backups
        .iter()
        .filter_map(|v| {
            let lb = labels(v);
            let included: Vec<String> = v
                .pointer("/spec/includedNamespaces")
                .and_then(|x| serde_json::from_value(x.clone()).ok())
                .unwrap_or_default();
            let started = ts(v, &["status", "startTimestamp"]);
            let (policy, claim) = ids
                .iter()
                .enumerate()
                .find_map(|(n, id)| bk::claim(id, &lb, &included, started, agency_created).map(|c| (n, c)))?;
            Some(BackupSeen {
                v,
                policy,
                offsite: claim.offsite,
                phase: s(v, &["status", "phase"]).unwrap_or_default(),
                time: ts(v, &["status", "completionTimestamp"]).or(started),
                location: s(v, &["spec", "storageLocation"]).unwrap_or_default(),
            })
        })
        .collect()
}

fn bp_json(p: &BackupPolicy) -> Value {
    with_type_meta(p, GOVCLOUD, "BackupPolicy")
}

/// Evidence of a completed backup, with the region of its store when known.
fn backup_evidence(mc: &str, b: &BackupSeen, region: Option<String>) -> Evidence {
    let mut facts = vec![
        ("status.phase", b.phase.clone()),
        (
            "status.completionTimestamp",
            b.time.map(|t| t.to_string()).unwrap_or_default(),
        ),
        ("spec.storageLocation", b.location.clone()),
    ];
    facts.extend(region.map(|r| ("region", r)));
    evidence_of(mc, b.v, &facts)
}

/// Lines 10–14: coverage, stores, RPO, off-site copies and restore drills.
fn backup_controls(i: &Inputs, name: &str, level: u8, ac_json: &Value) -> Vec<Control> {
    let b = Backups::new(i, name, level, ac_json);
    vec![
        backup_coverage(&b),
        backup_stores(&b),
        backup_rpo(&b),
        backup_offsite(&b),
        restore_drills(&b),
    ]
}

/// Coverage: every hosted system under a backup policy.
fn backup_coverage(b: &Backups) -> Control {
    let (i, level, rules) = (b.i, b.level, b.rules);
    let mut l = Line::new(
        "BACKUP-COVERAGE",
        "Every hosted system is backed up",
        "数据备份覆盖",
        vec![
            item(level, false, "安全计算环境", "数据备份恢复"),
            item(level, true, "安全计算环境", "数据备份恢复"),
        ],
        if rules.backup_required {
            "every hosted system covered by a BackupPolicy".into()
        } else {
            "backups are optional at this level".into()
        },
        "BackupPolicies realised as Velero Schedules on the agency's cluster; the AgencyCloud's BackupCompliant condition",
    );
    let cond = i
        .agency
        .status
        .as_ref()
        .and_then(|s| condition(&s.conditions, conditions::agency::BACKUP_COMPLIANT));
    let mut facts = vec![];
    if let Some(c) = cond {
        facts.push(("status.conditions[BackupCompliant].status", c.status.clone()));
        facts.push(("status.conditions[BackupCompliant].reason", c.reason.clone()));
    }
    l.c.evidence.push(evidence_of(HUB, b.ac_json, &facts));
    for p in &i.policies {
        let st = p.status.clone().unwrap_or_default();
        l.c.evidence.push(evidence_of(
            HUB,
            &bp_json(p),
            &[
                ("spec.schedule", p.spec.schedule.clone()),
                ("status.systems", st.systems.join(",")),
            ],
        ));
    }
    let covered: BTreeSet<String> = i
        .policies
        .iter()
        .flat_map(|p| p.status.iter().flat_map(|s| s.systems.iter().cloned()))
        .collect();
    if rules.backup_required {
        for hs in &i.systems {
            let n = hs.metadata.name.clone().unwrap_or_default();
            if !covered.contains(&n) {
                l.missing(
                    format!("hosted system {n} is not covered by any BackupPolicy"),
                    "create a BackupPolicy in its namespace selecting it (kubectl apply -f examples/backup-policy.yaml)",
                );
            }
        }
        if let Some(c) = cond
            && c.status != "True"
            && l.c.findings.is_empty()
        {
            l.failing(
                format!("BackupCompliant is {}: {}", c.status, c.message),
                "do what the condition says",
            );
        }
    }
    l.required_if(rules.backup_required)
}

/// Backup stores: location and encryption.
fn backup_stores(b: &Backups) -> Control {
    let (i, level, rules, zone) = (b.i, b.level, b.rules, b.zone);
    let mut l = Line::new(
        "BACKUP-STORES",
        "Where backups are kept, and their encryption",
        "备份存储位置与加密",
        vec![
            item(level, true, "安全计算环境", "数据备份恢复"),
            item(level, false, "安全计算环境", "数据保密性"),
            item(level, true, "安全计算环境", "数据完整性和保密性"),
        ],
        format!(
            "backups in the agency's region{} on its own network zone ({zone}){}",
            if rules.offsite_required {
                " and an off-site region"
            } else {
                ""
            },
            if rules.backup_encryption == levels::BackupEncryption::Any {
                String::new()
            } else {
                format!(", with {} (GB/T 39786)", rules.backup_encryption.describe())
            }
        ),
        "BackupLocations (one object store per region) registered as Velero BackupStorageLocations; the backup gateway encrypts with SM4",
    );
    let used: BTreeSet<&str> = b.backups.iter().map(|b| b.location.as_str()).collect();
    let mut regions_needed: BTreeSet<String> = b.region.iter().cloned().collect();
    regions_needed.extend(i.policies.iter().filter_map(|p| p.spec.offsite_region.clone()));
    for loc in &i.locations {
        let shared = bk::storage_location_name(&loc.name);
        let own = bk::agency_storage_location_name(&loc.name, true, b.name);
        let in_use = used.contains(shared.as_str()) || used.contains(own.as_str());
        if !(in_use || regions_needed.contains(&loc.region)) {
            continue;
        }
        l.c.evidence.push(location_evidence(loc));
        if in_use && let Some(why) = store_problem(loc, zone, level) {
            l.failing(
                format!("the agency's backups are in store {} (region {}): {why}", loc.name, loc.region),
                "the operator moves new backups to a fitting store; ask the platform team for one (docs/platform-guide.md, Registering BackupLocations)",
            );
        }
    }
    for r in &regions_needed {
        if !i
            .locations
            .iter()
            .any(|x| &x.region == r && store_problem(x, zone, level).is_none())
        {
            l.missing(
                format!(
                    "no BackupLocation in region {r} on the {zone} zone with {}",
                    rules.backup_encryption.describe()
                ),
                "register one (docs/platform-guide.md, Registering BackupLocations)",
            );
        }
    }
    if rules.backup_required && i.policies.is_empty() {
        l.missing(
            "no BackupPolicy: no backups are kept anywhere".into(),
            "create a BackupPolicy (see BACKUP-COVERAGE)",
        );
    }
    l.required_if(rules.backup_required)
}

/// Evidence of a BackupLocation (read leniently, so not from its JSON).
fn location_evidence(loc: &Location) -> Evidence {
    Evidence {
        cluster: HUB.into(),
        api_version: GOVCLOUD.into(),
        kind: "BackupLocation".into(),
        namespace: None,
        name: loc.name.clone(),
        uid: loc.uid.clone(),
        facts: BTreeMap::from([
            ("spec.region".to_string(), loc.region.clone()),
            ("spec.endpoint".to_string(), loc.endpoint.clone()),
            (
                "spec.zone".to_string(),
                loc.zone.clone().unwrap_or_else(|| "none declared".into()),
            ),
            (
                "spec.encryption".to_string(),
                loc.encryption.clone().unwrap_or_else(|| "none declared".into()),
            ),
        ]),
    }
}

/// RPO over the period, with the backup history.
fn backup_rpo(b: &Backups) -> Control {
    let level = b.level;
    let max = b.rules.max_rpo.map(|d| d.as_secs() as i64);
    let mut l = Line::new(
        "BACKUP-RPO",
        "Recovery point objective met over the period",
        "恢复点目标（RPO）达成",
        vec![
            item(level, false, "安全计算环境", "数据备份恢复"),
            item(level, true, "安全计算环境", "数据备份恢复"),
        ],
        match max {
            Some(m) => format!(
                "the newest good backup never older than {} during the period",
                bk::format_rpo(m)
            ),
            None => "backups are optional at this level".into(),
        },
        "Velero backups on the policies' schedules; the operator's RPOMet condition on each BackupPolicy",
    );
    for (n, p) in b.i.policies.iter().enumerate() {
        rpo_evidence(&mut l, b, n, p, max);
        if let Some(m) = max {
            check_rpo(&mut l, b, p, m);
        }
    }
    if max.is_some() && b.i.policies.is_empty() {
        l.missing("no BackupPolicy".into(), "create a BackupPolicy (see BACKUP-COVERAGE)");
    }
    l.required_if(max.is_some())
}

/// BACKUP-RPO: policy `n` with its RPO record, and its good backups of the period.
fn rpo_evidence(l: &mut Line, b: &Backups, n: usize, p: &BackupPolicy, max: Option<i64>) {
    let st = p.status.clone().unwrap_or_default();
    let good = b.completed(n, false);
    let failed = b
        .backups
        .iter()
        .filter(|x| {
            x.policy == n
                && !x.offsite
                && b.in_period(x.time)
                && matches!(x.phase.as_str(), "Failed" | "PartiallyFailed" | "FailedValidation")
        })
        .count();
    let mut facts = vec![
        ("status.rpo", st.rpo.clone().unwrap_or_default()),
        ("backupsCompletedInPeriod", good.len().to_string()),
        ("backupsFailedInPeriod", failed.to_string()),
        (
            "status.lastSuccessfulBackup",
            st.last_successful_backup
                .as_ref()
                .map(|x| {
                    format!(
                        "{} {}",
                        x.name,
                        x.time.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
        ),
    ];
    if let (Some(m), Some(c)) = (max, p.metadata.creation_timestamp.as_ref())
        && let Ok(from) = c.0.checked_add(jiff::SignedDuration::from_secs(m))
    {
        // A new policy has one RPO to take its first backup.
        facts.push(("rpoObligationFrom", from.max(b.i.period_start).to_string()));
    }
    if let Some(c) = condition(&st.conditions, conditions::backup::RPO_MET) {
        facts.push(("status.conditions[RPOMet].status", c.status.clone()));
        facts.push((
            "status.conditions[RPOMet].lastTransitionTime",
            c.last_transition_time.0.to_string(),
        ));
    }
    l.c.evidence.push(evidence_of(HUB, &bp_json(p), &facts));
    for x in &good {
        l.c.evidence.push(backup_evidence(b.mc, x, None));
    }
}

/// BACKUP-RPO: whether policy `p` met its RPO (`max` seconds) over the whole period, by
/// its RPOMet condition.
fn check_rpo(l: &mut Line, b: &Backups, p: &BackupPolicy, max: i64) {
    let (period_start, period_end) = (b.i.period_start, b.i.period_end);
    let st = p.status.clone().unwrap_or_default();
    let pname = p.metadata.name.clone().unwrap_or_default();
    let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match condition(&st.conditions, conditions::backup::RPO_MET) {
        Some(c) if c.status == "True" => {
            let since = c.last_transition_time.0;
            // Met continuously since `since`; before that (in the period, after the
            // policy's first RPO) it was not.
            let grace_end = created.and_then(|c| c.checked_add(jiff::SignedDuration::from_secs(max)).ok());
            let from = grace_end.map_or(period_start, |g| g.max(period_start));
            if since > from && since < period_end {
                l.failing(
                    format!("policy {pname}: the RPO was met only from {since} (the operator's RPOMet condition); it was missed before"),
                    "see the policy's Velero backups around that time; keep the schedule running (kubectl govcloud status)",
                );
            }
        }
        Some(c) => l.failing(
            format!(
                "policy {pname}: RPOMet is {} since {}: {}",
                c.status, c.last_transition_time.0, c.message
            ),
            "do what the condition says; a backup must complete within the RPO",
        ),
        None => l.missing(
            format!("policy {pname} reports no RPO yet"),
            "wait for the operator to report on the policy",
        ),
    }
}

/// Off-site copies.
fn backup_offsite(b: &Backups) -> Control {
    let (level, rules) = (b.level, b.rules);
    let mut l = Line::new(
        "BACKUP-OFFSITE",
        "Off-site copies in another region",
        "异地备份",
        vec![
            item(level, false, "安全计算环境", "数据备份恢复"),
            item(level, true, "安全计算环境", "数据备份恢复"),
        ],
        if rules.offsite_required {
            "a successful copy of every policy's backups in another region".into()
        } else {
            "off-site copies are optional at this level".into()
        },
        "the policy's off-site Velero Schedule to the BackupLocation of spec.offsiteRegion; the OffsiteCompliant condition",
    );
    for (n, p) in b.i.policies.iter().enumerate() {
        policy_offsite(&mut l, b, n, p);
    }
    if rules.offsite_required && b.i.policies.is_empty() {
        l.missing(
            "no BackupPolicy".into(),
            "create a BackupPolicy with spec.offsiteRegion",
        );
    }
    l.required_if(rules.offsite_required)
}

/// BACKUP-OFFSITE: policy `n` with its copies of the period, and whether they are where
/// the level requires.
fn policy_offsite(l: &mut Line, b: &Backups, n: usize, p: &BackupPolicy) {
    let st = p.status.clone().unwrap_or_default();
    let pname = p.metadata.name.clone().unwrap_or_default();
    let off = condition(&st.conditions, conditions::backup::OFFSITE_COMPLIANT);
    let mut facts = vec![
        ("spec.offsiteRegion", p.spec.offsite_region.clone().unwrap_or_default()),
        ("status.copiesInRegions", st.copies_in_regions.join(",")),
    ];
    if let Some(c) = off {
        facts.push(("status.conditions[OffsiteCompliant].status", c.status.clone()));
    }
    l.c.evidence.push(evidence_of(HUB, &bp_json(p), &facts));
    let copies = b.completed(n, true);
    for x in &copies {
        let reg = b
            .loc_by_velero
            .get(&x.location)
            .map(|loc| loc.region.clone())
            .unwrap_or_default();
        l.c.evidence.push(backup_evidence(b.mc, x, Some(reg)));
    }
    if !b.rules.offsite_required {
        return;
    }
    match &p.spec.offsite_region {
        None => l.missing(
            format!("policy {pname} names no spec.offsiteRegion"),
            "set spec.offsiteRegion to another region with a BackupLocation",
        ),
        Some(r) if Some(r) == b.region.as_ref() => l.failing(
            format!("policy {pname}: the off-site region {r} is the agency's own region"),
            "set spec.offsiteRegion to another region",
        ),
        Some(r) => {
            if !st.copies_in_regions.contains(r) && copies.is_empty() {
                l.missing(
                    format!("policy {pname}: no successful copy in {r} yet"),
                    "wait for the off-site schedule, or see OffsiteCompliant",
                );
            }
            if let Some(c) = off
                && c.status != "True"
            {
                l.failing(
                    format!("policy {pname}: OffsiteCompliant is {}: {}", c.status, c.message),
                    "do what the condition says",
                );
            }
        }
    }
}

/// Restore drills.
fn restore_drills(b: &Backups) -> Control {
    let level = b.level;
    let days = drill_interval_days(level);
    let mut l = Line::new(
        "RESTORE-DRILLS",
        "Restore drills passed at the level's interval",
        "恢复演练",
        vec![
            item(level, false, "安全计算环境", "数据备份恢复"),
            item(level, false, "安全运维管理", "备份与恢复管理"),
        ],
        match days {
            Some(d) => {
                format!("a passed restore drill of every policy within the last {d} days (GB/T 20988 as reference)")
            }
            None => "drills are optional at this level".into(),
        },
        "the operator's restore drills (Velero Restore into a scratch namespace, systems checked, evidence recorded in status.lastDrill)",
    );
    for (n, p) in b.i.policies.iter().enumerate() {
        drill_evidence(&mut l, b, n, p);
        if let Some(days) = days {
            check_drill(&mut l, b, p, days);
        }
    }
    if days.is_some() && b.i.policies.is_empty() {
        l.missing(
            "no BackupPolicy, so no drills".into(),
            "create a BackupPolicy with spec.drill",
        );
    }
    l.required_if(days.is_some())
}

/// RESTORE-DRILLS: policy `n` with its last drill, and the drill Restores of the period.
fn drill_evidence(l: &mut Line, b: &Backups, n: usize, p: &BackupPolicy) {
    let st = p.status.clone().unwrap_or_default();
    let id = &b.ids[n];
    let mut facts = vec![(
        "spec.drill.schedule",
        p.spec
            .drill
            .as_ref()
            .and_then(|d| d.schedule.clone())
            .unwrap_or_default(),
    )];
    if let Some(d) = &st.last_drill {
        facts.push(("status.lastDrill.result", d.result.clone()));
        facts.push(("status.lastDrill.restore", d.restore.clone()));
        facts.push(("status.lastDrill.backup", d.backup.clone()));
        facts.push((
            "status.lastDrill.finished",
            d.finished.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        ));
        facts.push(("status.lastDrill.message", d.message.clone()));
    }
    l.c.evidence.push(evidence_of(HUB, &bp_json(p), &facts));
    let hash = bk::policy_hash(&id.namespace, &id.policy);
    for r in &b.i.restores {
        let rname = s(r, &["metadata", "name"]).unwrap_or_default();
        let created = ts(r, &["metadata", "creationTimestamp"]);
        if id.carried_by(&labels(r)) && rname.starts_with(&format!("gc-{hash}-d")) && b.in_period(created) {
            l.c.evidence.push(evidence_of(
                b.mc,
                r,
                &[
                    ("spec.backupName", s(r, &["spec", "backupName"]).unwrap_or_default()),
                    ("status.phase", s(r, &["status", "phase"]).unwrap_or_default()),
                ],
            ));
        }
    }
}

/// RESTORE-DRILLS: whether policy `p` passed a drill within the last `days` of the period.
fn check_drill(l: &mut Line, b: &Backups, p: &BackupPolicy, days: i64) {
    let st = p.status.clone().unwrap_or_default();
    let pname = p.metadata.name.clone().unwrap_or_default();
    let window =
        b.i.period_end
            .checked_sub(jiff::SignedDuration::from_hours(24 * days))
            .unwrap_or(b.i.period_start);
    match &st.last_drill {
        Some(d) if d.result == "Passed" && d.finished.as_ref().is_some_and(|f| f.0 >= window) => {}
        Some(d) if d.result == "Failed" => l.failing(
            format!("policy {pname}: the last drill failed: {}", d.message),
            "fix what the drill found, then drill again (annotate the policy govcloud.io/drill=<new value>)",
        ),
        Some(d) => l.missing(
            format!(
                "policy {pname}: no drill passed in the last {days} days (last: {} {})",
                d.result,
                d.finished.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
            ),
            "schedule drills (spec.drill.schedule) or run one now (annotate the policy govcloud.io/drill=<new value>)",
        ),
        None => l.missing(
            format!("policy {pname}: no restore drill yet"),
            "schedule drills (spec.drill.schedule) or run one now (annotate the policy govcloud.io/drill=<new value>)",
        ),
    }
}

#[cfg(test)]
mod tests;
