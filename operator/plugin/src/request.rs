//! `kubectl govcloud request`: file a TenancyRequest.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use govcloud_api::NetworkZone;
use govcloud_api::agency::{
    AdminLevel, AgencyIdentity, CloudSpec, Contact, DeletionPolicy, Domain, Environment, PlacementHints, Quota,
    Registry, Subject, SubjectKind,
};
use govcloud_api::{TenancyRequest, TenancyRequestSpec};
use govcloud_core::quantity::Milli;
use govcloud_core::{credit_code, levels};
use kube::Api;
use kube::api::PostParams;

use crate::connect::{self, Conn, Global};
use crate::errors::{self, Target};
use crate::output::{FIELD_MANAGER, ObjectFormat, print_object};

/// Examples shown by `kubectl govcloud request --help`.
pub const EXAMPLES: &str = "\
Examples:
  # 浙江省大数据发展管理局 asks for a level-2 cloud on the external network, with a prod and a
  # test environment of 16 CPUs, 64Gi memory and 500Gi storage each
  kubectl govcloud request zj-bigdata -n tenancy-requests \\
    --agency-name 浙江省大数据发展管理局 --credit-code 11330000MB19876543 --admin-level provincial \\
    --contact-name 李工 --contact-email yunwei@zj.gov.cn \\
    --level 2 --zone external --region hangzhou \\
    --environments prod,test --cpu 16 --memory 64Gi --storage 500Gi \\
    --quota test:cpu=4,memory=16Gi,storage=0 \\
    --owner User:zj-admin --owner Group:zj-bigdata-dev --registry registry.gov.cn,harbor.dc.gov.cn/zj \\
    --justification \"承载数据共享交换平台和公共数据开放门户（等保二级）\"

  # Print the request as YAML without creating it (edit it, then `kubectl create -f`)
  kubectl govcloud request mof --dry-run -o yaml --agency-name 财政部 --credit-code 11100000MB0123456X \\
    --admin-level central --contact-name 王主任 --contact-phone \"010-6855 1234\" --level 3 --zone internal \\
    --cpu 32 --memory 128Gi --owner Group:mof-ops --registry registry.gov.cn \\
    --justification \"迁移预算管理一体化系统出部机房\"

  # Let the API server check it (schema, admission) without storing it
  kubectl govcloud request mof --dry-run=server ...

After it is created, the operator validates it and previews its placement
(`kubectl get tr NAME -n NAMESPACE`); a platform approver then runs
`kubectl govcloud approve NAME`.";

/// Administrative level (maps to `spec.cloud.agency.adminLevel`).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Level {
    /// 中央: central ministries and commissions.
    Central,
    /// 省级: provinces.
    Provincial,
    /// 市级: cities.
    Municipal,
    /// 县级: counties and districts.
    County,
}

/// Network zone.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Zone {
    /// 政务内网: the classified government internal network, no internet.
    Internal,
    /// 政务外网: the government external network, with the unified internet exit.
    External,
}

/// What deleting the AgencyCloud does to its namespaces.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Deletion {
    /// Wait while workloads or volumes exist, then delete the namespaces (default).
    #[value(name = "Protect")]
    Protect,
    /// Delete the namespaces with everything in them.
    #[value(name = "Delete")]
    Delete,
    /// Leave the namespaces; remove only the guardrails.
    #[value(name = "Retain")]
    Retain,
}

/// `--dry-run` modes, as in kubectl.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DryRun {
    /// Build the request locally and print it; nothing is sent.
    Client,
    /// Send it with dryRun=All: the API server validates and admits it but does not store it.
    Server,
}

/// Arguments of `request`.
#[derive(clap::Args, Debug)]
pub struct RequestArgs {
    /// Name of the TenancyRequest; also the agency's short name (the AgencyCloud's name and
    /// namespace prefix `<name>-<environment>`) unless --short-name is given.
    pub name: String,
    /// Official name of the agency, e.g. 财政部.
    #[arg(long, value_name = "NAME")]
    pub agency_name: String,
    /// Agency short name (2–20 lowercase letters, digits and dashes). Default: NAME.
    #[arg(long, value_name = "NAME")]
    pub short_name: Option<String>,
    /// Unified social credit code (统一社会信用代码), 18 characters with the GB 32100 check character.
    #[arg(long, value_name = "CODE")]
    pub credit_code: String,
    /// Administrative level of the agency.
    #[arg(long, value_enum, ignore_case = true)]
    pub admin_level: Level,
    /// Contact person.
    #[arg(long, value_name = "NAME")]
    pub contact_name: String,
    /// Contact phone (this or --contact-email is required).
    #[arg(long, value_name = "PHONE")]
    pub contact_phone: Option<String>,
    /// Contact email (this or --contact-phone is required).
    #[arg(long, value_name = "EMAIL")]
    pub contact_email: Option<String>,
    /// Security protection level (等级保护) 1–4 of the systems to be hosted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=4))]
    pub level: u8,
    /// Network zone; cannot change later. Level 4 must be internal.
    #[arg(long, value_enum, ignore_case = true)]
    pub zone: Zone,
    /// Only place the cloud on clusters in this region (data residency).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Only place the cloud on this DataCenterCluster.
    #[arg(long, value_name = "CLUSTER")]
    pub cluster: Option<String>,
    /// Environments, one namespace each.
    #[arg(long, value_name = "ENV,...", value_delimiter = ',', default_value = "prod")]
    pub environments: Vec<String>,
    /// CPU quota of each environment, e.g. 16 or 500m.
    #[arg(long, value_name = "QUANTITY")]
    pub cpu: String,
    /// Memory quota of each environment, e.g. 64Gi.
    #[arg(long, value_name = "QUANTITY")]
    pub memory: String,
    /// Persistent storage quota of each environment, e.g. 500Gi. Default: none.
    #[arg(long, value_name = "QUANTITY")]
    pub storage: Option<String>,
    /// Maximum pods of each environment. Default: 100.
    #[arg(long, value_name = "N")]
    pub pods: Option<i32>,
    /// Different quota for one environment: ENV:cpu=4,memory=16Gi,storage=0,pods=50,gpus=1
    /// (keys not given keep the values of --cpu, --memory, ...). Repeatable.
    #[arg(long = "quota", value_name = "ENV:KEY=VALUE,...")]
    pub quotas: Vec<String>,
    /// Owner who runs workloads: `User:NAME`, `Group:NAME` or a bare user name. Repeatable.
    /// Default: you (the authenticated user).
    #[arg(long = "owner", value_name = "KIND:NAME")]
    pub owners: Vec<String>,
    /// Read-only user or group, like --owner. Repeatable.
    #[arg(long = "viewer", value_name = "KIND:NAME")]
    pub viewers: Vec<String>,
    /// Image registries pods may pull from, e.g. registry.gov.cn,harbor.dc.gov.cn/mof.
    #[arg(long = "registry", value_name = "PREFIX,...", value_delimiter = ',', required = true)]
    pub registries: Vec<String>,
    /// DNS domains the agency's systems may be reached at, e.g. mof.gov.cn (hosts must be
    /// under one of them).
    #[arg(long = "domain", value_name = "DOMAIN,...", value_delimiter = ',')]
    pub domains: Vec<String>,
    /// What deleting the AgencyCloud does to its namespaces. Default: Protect.
    #[arg(long, value_enum, ignore_case = true)]
    pub deletion_policy: Option<Deletion>,
    /// Why the agency needs the cloud: systems to be hosted and their users (10–4000 characters).
    #[arg(long, value_name = "TEXT")]
    pub justification: String,
    /// Your user name as the API server knows it (it checks that it is yours). Default: looked
    /// up from the API server (`kubectl auth whoami`).
    #[arg(long, value_name = "USER")]
    pub requested_by: Option<String>,
    /// Do not create it: `client` (default when given without a value) prints it; `server`
    /// lets the API server check it without storing it.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", value_name = "MODE")]
    pub dry_run: Option<DryRun>,
    /// Print the request in this format instead of a one-line summary.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<ObjectFormat>,
}

fn parse_subject(s: &str) -> Result<Subject, String> {
    let s = s.trim();
    let (kind, name) = match s.split_once(':') {
        Some((k, n)) if k.eq_ignore_ascii_case("user") => (SubjectKind::User, n),
        Some((k, n)) if k.eq_ignore_ascii_case("group") => (SubjectKind::Group, n),
        _ => (SubjectKind::User, s),
    };
    if name.is_empty() {
        return Err(format!("{s:?}: give User:NAME, Group:NAME or a user name"));
    }
    Ok(Subject {
        kind,
        name: name.to_string(),
    })
}

fn check_quantity(flag: &str, value: &str, positive: bool, problems: &mut Vec<String>) {
    match Milli::parse(value) {
        Ok(m) if positive && m <= Milli::ZERO => problems.push(format!("{flag}: must be more than 0, got {value}")),
        Ok(m) if m < Milli::ZERO => problems.push(format!("{flag}: must not be negative, got {value}")),
        Ok(_) => {}
        Err(e) => problems.push(format!("{flag}: {e}")),
    }
}

fn valid_dns_name(s: &str, max: usize, dashes: bool) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || (dashes && c == '-');
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars().all(ok_char)
}

fn apply_override(env: &str, spec: &str, q: &mut Quota, problems: &mut Vec<String>) {
    for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            problems.push(format!("--quota {env}: {pair:?} is not KEY=VALUE"));
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        let flag = format!("--quota {env}:{k}");
        match k {
            "cpu" => {
                check_quantity(&flag, v, true, problems);
                q.cpu = v.to_string();
            }
            "memory" => {
                check_quantity(&flag, v, true, problems);
                q.memory = v.to_string();
            }
            "storage" => {
                check_quantity(&flag, v, false, problems);
                q.storage = Some(v.to_string());
            }
            "pods" | "gpus" => match v.parse::<i32>() {
                Ok(n) if n >= 0 => {
                    if k == "pods" {
                        q.pods = Some(n);
                    } else {
                        q.gpus = Some(n);
                    }
                }
                _ => problems.push(format!("{flag}: must be a whole number, got {v}")),
            },
            other => problems.push(format!(
                "--quota {env}: unknown key {other:?} (use cpu, memory, storage, pods, gpus)"
            )),
        }
    }
}

/// Builds the TenancyRequest from the arguments, checking what can be checked locally.
/// `me` is the authenticated user (the default owner and requester), when known.
pub fn build(args: &RequestArgs, namespace: &str, me: Option<&str>) -> Result<TenancyRequest> {
    let mut problems = Vec::new();
    let short_name = args.short_name.clone().unwrap_or_else(|| args.name.clone());
    let justification = args.justification.trim().to_string();
    check_scalars(args, &short_name, &justification, &mut problems);
    let environments = environments(args, &mut problems);
    let mut owners = parse_subjects(&args.owners, "--owner", &mut problems);
    if owners.is_empty() {
        match me {
            Some(me) => owners.push(Subject {
                kind: SubjectKind::User,
                name: me.to_string(),
            }),
            None => problems.push("--owner: give at least one owner (User:NAME or Group:NAME)".to_string()),
        }
    }
    let viewers = parse_subjects(&args.viewers, "--viewer", &mut problems);
    let registries: Vec<Registry> = args
        .registries
        .iter()
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .map(|r| Registry(r.to_string()))
        .collect();
    if registries.is_empty() {
        problems.push("--registry: give at least one image registry, e.g. registry.gov.cn".to_string());
    }
    if !problems.is_empty() {
        bail!(
            "the request is not valid:\n  {}\nSee `kubectl govcloud request --help`.",
            problems.join("\n  ")
        );
    }
    let cloud = cloud_spec(args, short_name, environments, owners, viewers, registries);
    let mut tr = TenancyRequest::new(
        &args.name,
        TenancyRequestSpec {
            cloud,
            justification,
            requested_by: args.requested_by.clone().or_else(|| me.map(str::to_string)),
            decision: None,
        },
    );
    tr.metadata.namespace = Some(namespace.to_string());
    Ok(tr)
}

/// Checks the single-valued arguments: names, credit code, contact, justification, zone
/// and the default quota.
fn check_scalars(args: &RequestArgs, short_name: &str, justification: &str, problems: &mut Vec<String>) {
    if !valid_dns_name(short_name, 20, true) || short_name.len() < 2 {
        problems.push(format!(
            "short name {short_name:?}: use 2–20 lowercase letters, digits and dashes, starting with a letter (pass --short-name if NAME is not one)"
        ));
    }
    if let Err(e) = credit_code::validate(&args.credit_code) {
        problems.push(format!("--credit-code: {e}"));
    }
    if args.contact_phone.is_none() && args.contact_email.is_none() {
        problems.push("--contact-phone or --contact-email: give at least one".to_string());
    }
    let chars = justification.chars().count();
    if !(10..=4000).contains(&chars) {
        problems.push(format!(
            "--justification: write 10 to 4000 characters about the systems to be hosted and their users (got {chars})"
        ));
    }
    if levels::rules(args.level).internal_zone_only && matches!(args.zone, Zone::External) {
        problems.push(format!(
            "--zone: level {} agencies must be on the internal zone (政务内网)",
            args.level
        ));
    }
    check_quantity("--cpu", &args.cpu, true, problems);
    check_quantity("--memory", &args.memory, true, problems);
    if let Some(s) = &args.storage {
        check_quantity("--storage", s, false, problems);
    }
}

/// The environments with the default quota, then the `--quota` overrides applied.
fn environments(args: &RequestArgs, problems: &mut Vec<String>) -> Vec<Environment> {
    let mut environments: Vec<Environment> = Vec::new();
    for e in args.environments.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if !valid_dns_name(e, 15, false) {
            problems.push(format!(
                "--environments: {e:?} must be 1–15 lowercase letters and digits, starting with a letter"
            ));
        }
        if environments.iter().any(|x| x.name == e) {
            problems.push(format!("--environments: {e} is given twice"));
            continue;
        }
        environments.push(Environment {
            name: e.to_string(),
            quota: Quota {
                cpu: args.cpu.clone(),
                memory: args.memory.clone(),
                storage: args.storage.clone(),
                pods: args.pods,
                gpus: None,
            },
        });
    }
    if environments.is_empty() {
        problems.push("--environments: give at least one, e.g. prod".to_string());
    }
    if environments.len() > 8 {
        problems.push("--environments: at most 8".to_string());
    }
    for o in &args.quotas {
        let Some((env, spec)) = o.split_once(':') else {
            problems.push(format!("--quota {o}: write ENV:cpu=4,memory=16Gi"));
            continue;
        };
        match environments.iter_mut().find(|e| e.name == env.trim()) {
            Some(e) => apply_override(env.trim(), spec, &mut e.quota, problems),
            None => problems.push(format!(
                "--quota {o}: environment {env:?} is not in --environments ({})",
                args.environments.join(",")
            )),
        }
    }
    environments
}

/// The subjects of a repeatable `flag` (`--owner`, `--viewer`).
fn parse_subjects(list: &[String], flag: &str, problems: &mut Vec<String>) -> Vec<Subject> {
    let mut out = Vec::new();
    for o in list {
        match parse_subject(o) {
            Ok(s) => out.push(s),
            Err(e) => problems.push(format!("{flag} {e}")),
        }
    }
    out
}

/// The cloud the arguments ask for, with the parts [`build`] checked.
fn cloud_spec(
    args: &RequestArgs,
    short_name: String,
    environments: Vec<Environment>,
    owners: Vec<Subject>,
    viewers: Vec<Subject>,
    registries: Vec<Registry>,
) -> CloudSpec {
    CloudSpec {
        agency: AgencyIdentity {
            display_name: args.agency_name.trim().to_string(),
            short_name,
            credit_code: args.credit_code.trim().to_string(),
            admin_level: match args.admin_level {
                Level::Central => AdminLevel::Central,
                Level::Provincial => AdminLevel::Provincial,
                Level::Municipal => AdminLevel::Municipal,
                Level::County => AdminLevel::County,
            },
            contact: Contact {
                name: args.contact_name.trim().to_string(),
                phone: args.contact_phone.clone(),
                email: args.contact_email.clone(),
            },
        },
        security_level: args.level,
        zone: match args.zone {
            Zone::Internal => NetworkZone::Internal,
            Zone::External => NetworkZone::External,
        },
        environments,
        owners,
        viewers,
        egress: vec![],
        domains: args
            .domains
            .iter()
            .map(|d| d.trim())
            .filter(|d| !d.is_empty())
            .map(|d| Domain(d.to_string()))
            .collect(),
        allowed_registries: registries,
        placement: PlacementHints {
            cluster: args.cluster.clone(),
            region: args.region.clone(),
            cluster_selector: BTreeMap::new(),
        },
        deletion_policy: match args.deletion_policy {
            None | Some(Deletion::Protect) => DeletionPolicy::Protect,
            Some(Deletion::Delete) => DeletionPolicy::Delete,
            Some(Deletion::Retain) => DeletionPolicy::Retain,
        },
    }
}

/// Runs `request`.
pub async fn run(g: &Global, args: RequestArgs) -> Result<()> {
    // A client-side dry run works without a cluster; it only asks who you are if it can.
    let conn = match (args.dry_run, connect::connect(g).await) {
        (_, Ok(c)) => Some(c),
        (Some(DryRun::Client), Err(_)) => None,
        (_, Err(e)) => return Err(e),
    };
    // The API server requires spec.requestedBy to be the caller's own name; look it up.
    let me = match (&conn, &args.requested_by) {
        (Some(c), None) => match connect::whoami(&c.client).await {
            Ok(me) => Some(me),
            Err(e) if args.dry_run == Some(DryRun::Client) => {
                eprintln!(
                    "warning: cannot look up your user name ({e}); requestedBy and the default owner are left out"
                );
                None
            }
            Err(e) => return Err(e),
        },
        _ => None,
    };
    let namespace = match (&conn, &g.namespace) {
        (Some(c), _) => c.namespace.clone(),
        (None, Some(ns)) => ns.clone(),
        (None, None) => "default".to_string(),
    };
    let owner_default = me.as_deref().or(args.requested_by.as_deref());
    let tr = build(&args, &namespace, owner_default)?;
    if args.dry_run == Some(DryRun::Client) {
        return match args.output {
            Some(f) => print_object(&tr, f),
            None => {
                println!("tenancyrequest.govcloud.io/{} created (dry run)", args.name);
                Ok(())
            }
        };
    }
    let conn: Conn = conn.ok_or_else(|| anyhow!("not connected"))?;
    let api: Api<TenancyRequest> = Api::namespaced(conn.client.clone(), &namespace);
    let pp = PostParams {
        dry_run: args.dry_run == Some(DryRun::Server),
        field_manager: Some(FIELD_MANAGER.to_string()),
    };
    let created = api.create(&pp, &tr).await.map_err(|e| {
        errors::explain(
            e,
            &Target::namespaced("TenancyRequest", "tenancyrequests", &args.name, &namespace),
        )
    })?;
    if let Some(f) = args.output {
        return print_object(&created, f);
    }
    if args.dry_run == Some(DryRun::Server) {
        println!("tenancyrequest.govcloud.io/{} created (server dry run)", args.name);
        return Ok(());
    }
    println!(
        "tenancyrequest.govcloud.io/{} created in namespace {namespace}{}",
        args.name,
        created
            .spec
            .requested_by
            .as_ref()
            .map(|r| format!(" (requested by {r})"))
            .unwrap_or_default()
    );
    println!(
        "The operator now validates it and previews its placement: `kubectl get tr {} -n {namespace}`.\nA platform approver then decides: `kubectl govcloud approve {} -n {namespace}`.",
        args.name, args.name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        args: RequestArgs,
    }

    fn parse(extra: &[&str]) -> RequestArgs {
        let mut argv = vec![
            "t",
            "zj",
            "--agency-name",
            "浙江省大数据发展管理局",
            "--credit-code",
            "11330000MB19876543",
            "--admin-level",
            "provincial",
            "--contact-name",
            "李工",
            "--contact-email",
            "yunwei@zj.gov.cn",
            "--level",
            "2",
            "--zone",
            "external",
            "--cpu",
            "16",
            "--memory",
            "64Gi",
            "--registry",
            "registry.gov.cn",
            "--justification",
            "Host the open-data portal for the province.",
        ];
        argv.extend_from_slice(extra);
        match T::try_parse_from(argv) {
            Ok(t) => t.args,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn builds_a_request_with_defaults() {
        let tr =
            build(&parse(&["--environments", "prod,test"]), "reqs", Some("zj-admin")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tr.metadata.namespace.as_deref(), Some("reqs"));
        let c = &tr.spec.cloud;
        assert_eq!(c.agency.short_name, "zj");
        assert_eq!(c.environments.len(), 2);
        assert_eq!(c.environments[1].quota.cpu, "16");
        assert_eq!(c.owners[0].name, "zj-admin");
        assert_eq!(tr.spec.requested_by.as_deref(), Some("zj-admin"));
        assert!(tr.spec.decision.is_none());
    }

    #[test]
    fn quota_overrides_and_subjects() {
        let tr = build(
            &parse(&[
                "--environments",
                "prod,test",
                "--quota",
                "test:cpu=4,memory=16Gi,storage=0",
                "--owner",
                "Group:zj-dev",
                "--owner",
                "system:serviceaccount:a:b",
                "--region",
                "hangzhou",
            ]),
            "reqs",
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = &tr.spec.cloud;
        assert_eq!(c.environments[1].quota.cpu, "4");
        assert_eq!(c.environments[1].quota.storage.as_deref(), Some("0"));
        assert_eq!(c.environments[0].quota.memory, "64Gi");
        assert_eq!(c.owners[0].kind, SubjectKind::Group);
        assert_eq!(c.owners[1].kind, SubjectKind::User);
        assert_eq!(c.owners[1].name, "system:serviceaccount:a:b");
        assert_eq!(c.placement.region.as_deref(), Some("hangzhou"));
        assert!(tr.spec.requested_by.is_none());
    }

    #[test]
    fn local_problems_are_reported_together() {
        let mut a = parse(&["--quota", "dev:cpu=1"]);
        a.cpu = "0".into();
        a.credit_code = "11330000MB19876540".into();
        a.contact_email = None;
        let e = match build(&a, "reqs", None) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        };
        for needle in [
            "--credit-code",
            "--contact-phone",
            "--cpu: must be more than 0",
            "dev",
            "--owner",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
