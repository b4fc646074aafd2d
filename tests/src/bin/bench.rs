//! Benchmark driver of issue 9 (`hack/bench.sh` builds and runs it).
//!
//! Against the local testbed (`hack/testbed.sh`, three clusters), it registers the clusters
//! as DataCenterClusters, starts the real operator binary under the Helm chart's
//! ServiceAccount, creates a fleet of AgencyClouds (three environments each), HostedSystems
//! (one replica each) and BackupPolicies (on a share of the systems) and measures:
//! time until everything is Ready, API requests per object and APF rejections (from the API
//! servers' audit logs), the operator's peak RSS and CPU time, API writes per minute at
//! steady state, create→Ready latency of new agencies added one by one, a full no-change
//! resync after a restart, and the time to produce a fleet UtilizationReport. Then a bare
//! client under the same identities applies the same child objects directly (the baseline)
//! and the ratio operator ÷ baseline is printed. Everything it creates is labelled
//! `govcloud.io/bench=true` and removed at the end.
//!
//! ```text
//! bench --agencies N --systems M [--backup-share F] [--clusters 3] [--out docs/performance.md]
//!       [--steady-secs S] [--new-agencies K] [--concurrency C] [--parallelism P]
//!       [--timeout-secs T] [--no-baseline]
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::StreamExt as _;
use govcloud_api::{AgencyCloud, BackupPolicy, DataCenterCluster, HostedSystem, UtilizationReport};
use govcloud_core::agency::{self as children, Child, Kind};
use govcloud_core::hosted;
use govcloud_tests::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Api, Client};
use serde_json::{Value, json};

const BENCH_LABEL: &str = "govcloud.io/bench";
const RUN_LABEL: &str = "govcloud.io/bench-run";
const DC_LABEL: &str = "govcloud.io/bench-dc";
const SYSTEM_LABEL: &str = "govcloud.io/bench-system";
const ENVIRONMENTS: [&str; 3] = ["dev", "test", "prod"];
const BASELINE_MANAGER: &str = "govcloud-bench-baseline";

// ---------------------------------------------------------------------------------------
// Arguments

#[derive(Clone, Debug)]
struct Args {
    agencies: usize,
    systems: usize,
    backup_share: f64,
    clusters: usize,
    out: Option<PathBuf>,
    steady_secs: u64,
    new_agencies: usize,
    concurrency: u16,
    parallelism: usize,
    timeout_secs: u64,
    baseline: bool,
    /// Leave the fleet and the baseline's objects in place (no deletion measured): the
    /// baseline runs first, on the empty clusters, and the operator's fleet is created next to
    /// its objects. For the national scale, where deleting 6,000 namespaces twice would take
    /// most of an hour; stop the testbed afterwards.
    keep_fleet: bool,
    /// With `keep_fleet`: also leave the DataCenterClusters, their kubeconfig Secrets and the
    /// operator's kubeconfig, so that an operator can be started against the fleet by hand
    /// afterwards (profiling a restart).
    keep_clusters: bool,
    /// With `keep_fleet`: stop the testbed after the baseline and start it again, empty,
    /// for the operator's phase — each phase on clusters holding nothing else.
    fresh_clusters: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        agencies: 200,
        systems: 500,
        backup_share: 0.2,
        clusters: 3,
        out: None,
        steady_secs: 60,
        new_agencies: 20,
        concurrency: 8,
        parallelism: 16,
        timeout_secs: 1800,
        baseline: true,
        keep_fleet: false,
        keep_clusters: false,
        fresh_clusters: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-baseline" {
            a.baseline = false;
            continue;
        }
        if flag == "--keep-fleet" {
            a.keep_fleet = true;
            continue;
        }
        if flag == "--fresh-clusters" {
            a.keep_fleet = true;
            a.fresh_clusters = true;
            continue;
        }
        if flag == "--keep-clusters" {
            a.keep_fleet = true;
            a.keep_clusters = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!(
                "bench --agencies N --systems M [--backup-share F] [--clusters 3] [--out FILE] [--steady-secs S] \
                 [--new-agencies K] [--concurrency C] [--parallelism P] [--timeout-secs T] [--no-baseline] [--keep-fleet] [--keep-clusters] [--fresh-clusters]"
            );
            std::process::exit(0);
        }
        let v = it.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().with_context(|| format!("{flag} {v}: not a number"));
        match flag.as_str() {
            "--agencies" => a.agencies = num(&v)?,
            "--systems" => a.systems = num(&v)?,
            "--backup-share" => a.backup_share = v.parse().with_context(|| format!("--backup-share {v}"))?,
            "--clusters" => a.clusters = num(&v)?,
            "--out" => a.out = Some(PathBuf::from(v)),
            "--steady-secs" => a.steady_secs = num(&v)? as u64,
            "--new-agencies" => a.new_agencies = num(&v)?,
            "--concurrency" => a.concurrency = num(&v)? as u16,
            "--parallelism" => a.parallelism = num(&v)?.max(1),
            "--timeout-secs" => a.timeout_secs = num(&v)? as u64,
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    anyhow::ensure!(a.agencies >= 1, "--agencies must be at least 1");
    anyhow::ensure!((1..=9).contains(&a.clusters), "--clusters must be 1..9");
    anyhow::ensure!((0.0..=1.0).contains(&a.backup_share), "--backup-share must be in 0..1");
    Ok(a)
}

// ---------------------------------------------------------------------------------------
// Small helpers

fn log(msg: impl AsRef<str>) {
    let t = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
    eprintln!("[bench {t}] {}", msg.as_ref());
}

fn is_true(conds: &[Condition], t: &str) -> bool {
    conds.iter().any(|c| c.type_ == t && c.status == "True")
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn labels(run: &str) -> Value {
    json!({BENCH_LABEL: "true", RUN_LABEL: run})
}

fn run_selector(run: &str) -> ListParams {
    ListParams::default().labels(&format!("{RUN_LABEL}={run}"))
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------------------------------
// Process figures (/proc)

/// Peak resident set size (VmHWM) in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Current resident set size (VmRSS) in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User + system CPU time of the process.
fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces): state is field 3.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let hz: u64 = command_output("getconf", &["CLK_TCK"]).parse().unwrap_or(100);
    Some(Duration::from_millis((utime + stime) * 1000 / hz.max(1)))
}

/// CPU time used so far by each kind of testbed process (kube-apiserver, etcd, kwok, …),
/// summed over the clusters, from the testbed's PID files; the bench process itself as
/// "bench".
fn testbed_cpu(clusters: usize) -> BTreeMap<String, Duration> {
    let mut out: BTreeMap<String, Duration> = BTreeMap::new();
    for n in 1..=clusters {
        let dir = testbed_state().join(format!("dc{n}")).join("pids");
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let Some(comp) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
                continue;
            };
            let pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok());
            if let Some(cpu) = pid.and_then(cpu_time) {
                *out.entry(comp).or_default() += cpu;
            }
        }
    }
    if let Some(cpu) = cpu_time(std::process::id()) {
        out.insert("bench".into(), cpu);
    }
    out
}

/// CPU used per process kind between two `testbed_cpu` snapshots, largest first, as text.
fn cpu_between(
    from: &BTreeMap<String, Duration>,
    to: &BTreeMap<String, Duration>,
    extra: &[(&str, Duration)],
) -> String {
    let mut v: Vec<(String, Duration)> = to
        .iter()
        .map(|(k, t)| (k.clone(), t.saturating_sub(from.get(k).copied().unwrap_or_default())))
        .chain(extra.iter().map(|(k, d)| (k.to_string(), *d)))
        .collect();
    let total: Duration = v.iter().map(|(_, d)| *d).sum();
    v.sort_by_key(|b| std::cmp::Reverse(b.1));
    let parts: Vec<String> = v
        .iter()
        .filter(|(_, d)| !d.is_zero())
        .map(|(k, d)| format!("{k} {:.0}", d.as_secs_f64()))
        .collect();
    format!("{:.0} s ({})", total.as_secs_f64(), parts.join(", "))
}

// ---------------------------------------------------------------------------------------
// Audit logs: requests of one identity between two byte offsets

fn audit_path(cluster: usize) -> PathBuf {
    testbed_state()
        .join(format!("dc{cluster}"))
        .join("logs")
        .join("audit.log")
}

#[derive(Clone, Debug)]
struct AuditMark(Vec<u64>);

fn audit_mark(clusters: usize) -> AuditMark {
    AuditMark(
        (1..=clusters)
            .map(|n| std::fs::metadata(audit_path(n)).map(|m| m.len()).unwrap_or(0))
            .collect(),
    )
}

#[derive(Clone, Debug, Default)]
struct AuditCount {
    requests: u64,
    writes: u64,
    rejected_429: u64,
    /// (verb, resource) → count, writes only.
    writes_by: BTreeMap<String, u64>,
    /// The log was rotated inside the window (figures are a lower bound).
    rotated: bool,
}

impl AuditCount {
    fn add(&mut self, o: &AuditCount) {
        self.requests += o.requests;
        self.writes += o.writes;
        self.rejected_429 += o.rejected_429;
        self.rotated |= o.rotated;
        for (k, v) in &o.writes_by {
            *self.writes_by.entry(k.clone()).or_default() += v;
        }
    }

    fn top_writes(&self, n: usize) -> String {
        let mut v: Vec<_> = self.writes_by.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter()
            .take(n)
            .map(|(k, c)| format!("{k} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Requests of `username` in cluster `n`'s audit log between `from` and `to` (byte offsets).
fn audit_count(n: usize, from: u64, to: u64, username: &str) -> AuditCount {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = AuditCount::default();
    let Ok(mut f) = std::fs::File::open(audit_path(n)) else {
        return out;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let (from, to) = if len < from || to < from {
        out.rotated = true;
        (0, len)
    } else {
        (from, to.min(len))
    };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return out;
    }
    let mut buf = Vec::with_capacity((to - from) as usize);
    if f.take(to - from).read_to_end(&mut buf).is_err() {
        return out;
    }
    let mut seen: HashSet<String> = HashSet::new();
    let needle = format!("\"username\":\"{username}\"");
    for line in buf.split(|b| *b == b'\n') {
        // Cheap filter first: most lines belong to other identities.
        let Ok(text) = std::str::from_utf8(line) else { continue };
        if !text.contains(&needle) {
            continue;
        }
        let Ok(ev) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if ev["user"]["username"] != username {
            continue;
        }
        let id = ev["auditID"].as_str().unwrap_or_default().to_string();
        let code = ev["responseStatus"]["code"].as_i64().unwrap_or(0);
        if code == 429 && ev["stage"] == "ResponseComplete" {
            out.rejected_429 += 1;
        }
        if !seen.insert(id) {
            continue;
        }
        out.requests += 1;
        let verb = ev["verb"].as_str().unwrap_or_default();
        if matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection") {
            out.writes += 1;
            let mut res = ev["objectRef"]["resource"].as_str().unwrap_or_default().to_string();
            if let Some(sub) = ev["objectRef"]["subresource"].as_str() {
                res = format!("{res}/{sub}");
            }
            *out.writes_by.entry(format!("{verb} {res}")).or_default() += 1;
        }
    }
    out
}

/// Requests of the identities that act for the operator (or the baseline): `hub_user` on the
/// hub, `member_user` on the members. Returns (hub, members).
fn audit_window(from: &AuditMark, to: &AuditMark, hub_user: &str, member_user: &str) -> (AuditCount, AuditCount) {
    let hub = audit_count(1, from.0[0], to.0[0], hub_user);
    let mut members = AuditCount::default();
    for i in 1..from.0.len() {
        members.add(&audit_count(i + 1, from.0[i], to.0[i], member_user));
    }
    (hub, members)
}

// ---------------------------------------------------------------------------------------
// The operator process

struct OperatorProcess {
    child: std::process::Child,
    port: u16,
    started: Instant,
}

impl OperatorProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        // Only the process this driver started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn operator_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("BENCH_OPERATOR_BIN") {
        return Ok(PathBuf::from(p));
    }
    for profile in ["release", "debug"] {
        let p = repo_root().join("target").join(profile).join("govcloud-operator");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("no govcloud-operator binary: cargo build --release -p govcloud-operator --bin govcloud-operator")
}

fn operator_args(a: &Args) -> Vec<String> {
    [
        "--concurrency",
        &a.concurrency.to_string(),
        "--probe-interval",
        "30",
        "--daily-reports",
        "0",
        "--monthly-reports",
        "0",
        "--namespace",
        OPERATOR_NAMESPACE,
        "--log-format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn start_operator(a: &Args, run: &str, kubeconfig: &Path, n: u32) -> Result<OperatorProcess> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log_path = testbed_state().join(format!("bench-{run}-operator-{n}.log"));
    let logf = std::fs::File::create(&log_path)?;
    let bin = operator_binary()?;
    let started = Instant::now();
    let child = std::process::Command::new(&bin)
        .arg("run")
        .args(operator_args(a))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        // BENCH_OPERATOR_LOG (e.g. `govcloud=debug`) to see what the operator writes and why.
        .env(
            "RUST_LOG",
            std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let op = OperatorProcess { child, port, started };
    log(format!(
        "operator {} started (pid {}, metrics 127.0.0.1:{port}, log {})",
        bin.display(),
        op.pid(),
        log_path.display()
    ));
    wait_for("operator /readyz", Duration::from_secs(180), || async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
        Ok(r.ok().filter(|r| r.status().is_success()).map(|_| ()))
    })
    .await?;
    Ok(op)
}

/// The operator's reconcile and apply counters (`/metrics?name[]=…`: polled every 250 ms
/// during a resync, the whole exposition — 7 MB at the national scale — would cost the
/// process being measured a quarter of a core).
async fn metrics_text(port: u16) -> Result<String> {
    Ok(reqwest::get(format!(
        "http://127.0.0.1:{port}/metrics?name[]=govcloud_controller_reconciles_total&name[]=govcloud_controller_child_applies_total"
    ))
        .await?
        .text()
        .await?)
}

/// Sum of a metric's samples whose line contains `filter` (e.g. `controller="agencycloud"`).
fn metric(text: &str, name: &str, filter: &str) -> f64 {
    metric_sum(text, name, filter)
}

// ---------------------------------------------------------------------------------------
// Identities

/// A bearer token of a ServiceAccount on cluster `n` (TokenRequest, 3 hours).
async fn member_token(client: &Client, sa: &str) -> Result<String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3 * 3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = sas.create_token_request(sa, &PostParams::default(), &req).await?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| anyhow!("no token for {sa}"))
}

/// The kubeconfig of cluster `n` with its user replaced by a bearer token.
fn kubeconfig_with_token(n: usize, token: &str) -> Result<Kubeconfig> {
    let path = kubeconfig_path(n);
    let mut kc = Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    let yaml = serde_yaml::to_string(&json!({
        "apiVersion": "v1", "kind": "Config",
        "users": [{"name": "token", "user": {"token": token}}]
    }))?;
    kc.auth_infos = Kubeconfig::from_yaml(&yaml)?.auth_infos;
    for ctx in &mut kc.contexts {
        if let Some(c) = ctx.context.as_mut() {
            c.user = Some("token".into());
        }
    }
    Ok(kc)
}

async fn client_from(kc: Kubeconfig) -> Result<Client> {
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

async fn ssa<K>(api: &Api<K>, name: &str, body: &Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply("govcloud-bench").force(), &Patch::Apply(body))
        .await?;
    Ok(())
}

/// On member `n`: ServiceAccount `sa` in govcloud-system bound to cluster-admin (what the
/// member kubeconfig of a production DataCenterCluster carries), so that the member's API
/// server audits the operator's requests there.
async fn member_identity(n: usize, sa: &str, run: &str) -> Result<(Kubeconfig, bool)> {
    let admin = client(n).await?;
    let ns_api: Api<Namespace> = Api::all(admin.clone());
    // A previous run may have just removed the namespace: wait until it is gone.
    for _ in 0..120 {
        match ns_api.get_opt(OPERATOR_NAMESPACE).await? {
            Some(ns) if ns.metadata.deletion_timestamp.is_some() => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => break,
        }
    }
    let existed = ns_api.get_opt(OPERATOR_NAMESPACE).await?.is_some();
    ensure_namespace(&admin, OPERATOR_NAMESPACE).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    ssa(
        &sas,
        sa,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": sa, "namespace": OPERATOR_NAMESPACE, "labels": labels(run)}}),
    )
    .await?;
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    ssa(
        &crbs,
        sa,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": sa, "labels": labels(run)},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": OPERATOR_NAMESPACE}]}),
    )
    .await?;
    let token = member_token(&admin, sa).await?;
    Ok((kubeconfig_with_token(n, &token)?, existed))
}

// ---------------------------------------------------------------------------------------
// The fleet

fn agency_name(run: &str, prefix: char, i: usize) -> String {
    format!("{run}-{prefix}{i:04}")
}

fn cluster_of(i: usize, clusters: usize) -> usize {
    i % clusters + 1
}

fn agency_manifest(run: &str, name: &str, dc: usize) -> Value {
    let mut v = agency_cloud(name, 2, "external", &ENVIRONMENTS.map(|e| (e, "2", "4Gi")), "unused");
    v["metadata"]["labels"] = json!({BENCH_LABEL: "true", RUN_LABEL: run});
    v["spec"]["agency"]["displayName"] = json!(format!("性能测试机关 {name}"));
    v["spec"]["placement"] = json!({"clusterSelector": {RUN_LABEL: run, DC_LABEL: format!("dc{dc}")}});
    v
}

fn system_spec() -> Value {
    json!({"securityLevel": 2, "dataClassification": "general",
           "components": [{"name": "web", "image": "registry.gov.cn/bench/web:1", "replicas": 1,
                           "ports": [{"name": "http", "port": 8080}],
                           "resources": {"cpu": "50m", "memory": "64Mi"}}]})
}

fn system_manifest(run: &str, name: &str) -> Value {
    json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
           "metadata": {"name": name, "labels": {BENCH_LABEL: "true", RUN_LABEL: run, SYSTEM_LABEL: name}},
           "spec": system_spec()})
}

fn policy_manifest(run: &str, system: &str) -> Value {
    json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "BackupPolicy",
           "metadata": {"name": format!("{system}-backup"), "labels": labels(run)},
           "spec": {"schedule": "0 2 * * *", "selector": {"matchLabels": {SYSTEM_LABEL: system}}}})
}

/// (system name, namespace) of system `j`.
fn system_place(run: &str, j: usize, agencies: usize) -> (String, String) {
    let agency = agency_name(run, 'a', j % agencies);
    let env = ENVIRONMENTS[(j / agencies) % ENVIRONMENTS.len()];
    (format!("s{j:05}"), children::namespace_name(&agency, env))
}

/// Creates in a namespace that the operator creates a moment later: retries until it exists.
async fn create_retrying<K>(api: Api<K>, obj: K, deadline: Instant) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    loop {
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) => {
                if Instant::now() > deadline {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct FleetState {
    agencies_ready: usize,
    systems_ready: usize,
    policies_settled: usize,
    policies_ready: usize,
}

/// Watches of the run's AgencyClouds, HostedSystems and BackupPolicies (one list each, then
/// events — re-listing thousands of objects every few seconds would load the hub being
/// measured and give coarse times); the tasks stop when this is dropped.
struct FleetWatch {
    agencies: kube::runtime::reflector::Store<AgencyCloud>,
    systems: kube::runtime::reflector::Store<HostedSystem>,
    policies: kube::runtime::reflector::Store<BackupPolicy>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FleetWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn watch_kind<K>(hub: &Client, run: &str) -> (kube::runtime::reflector::Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    use kube::runtime::{WatchStreamExt as _, reflector, watcher};
    let (reader, writer) = reflector::store();
    let cfg = watcher::Config::default().labels(&format!("{RUN_LABEL}={run}"));
    let stream = reflector(writer, watcher(Api::<K>::all(hub.clone()), cfg).default_backoff());
    let task = tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    (reader, task)
}

impl FleetWatch {
    fn start(hub: &Client, run: &str) -> Self {
        let (agencies, t1) = watch_kind(hub, run);
        let (systems, t2) = watch_kind(hub, run);
        let (policies, t3) = watch_kind(hub, run);
        FleetWatch {
            agencies,
            systems,
            policies,
            tasks: vec![t1, t2, t3],
        }
    }

    async fn state(&self) -> Result<FleetState> {
        self.agencies.wait_until_ready().await?;
        self.systems.wait_until_ready().await?;
        self.policies.wait_until_ready().await?;
        let bps = self.policies.state();
        Ok(FleetState {
            agencies_ready: self
                .agencies
                .state()
                .iter()
                .filter(|a| a.status.as_ref().is_some_and(|s| is_true(&s.conditions, "Ready")))
                .count(),
            systems_ready: self
                .systems
                .state()
                .iter()
                .filter(|h| h.status.as_ref().is_some_and(|s| is_true(&s.conditions, "Available")))
                .count(),
            policies_settled: bps
                .iter()
                .filter(|b| {
                    b.status.as_ref().is_some_and(|s| {
                        s.observed_generation == b.metadata.generation
                            && s.conditions.iter().any(|c| c.type_ == "Ready")
                    })
                })
                .count(),
            policies_ready: bps
                .iter()
                .filter(|b| b.status.as_ref().is_some_and(|s| is_true(&s.conditions, "Ready")))
                .count(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Results

#[derive(Debug, Default)]
struct Results {
    settings: Vec<(String, String)>,
    converge: Option<Duration>,
    agencies_ready_at: Option<Duration>,
    fleet: FleetState,
    objects: usize,
    converge_hub: AuditCount,
    converge_members: AuditCount,
    peak_rss_kib: u64,
    rss_after_kib: u64,
    cpu: Duration,
    child_applies: f64,
    steady_secs: u64,
    steady_hub: AuditCount,
    steady_members: AuditCount,
    latencies: Vec<Duration>,
    report: Option<Duration>,
    report_summary: String,
    resync: Option<Duration>,
    resync_hub: AuditCount,
    resync_members: AuditCount,
    resync_applies: f64,
    resync_peak_rss_kib: u64,
    deletion: Option<Duration>,
    baseline: Option<Duration>,
    baseline_objects: usize,
    baseline_hub: AuditCount,
    baseline_members: AuditCount,
    /// CPU seconds of every process of the testbed while converging / during the baseline.
    converge_cpu_all: String,
    baseline_cpu_all: String,
    notes: Vec<String>,
}

impl Results {
    fn ratio(&self) -> Option<f64> {
        Some(self.converge?.as_secs_f64() / self.baseline?.as_secs_f64())
    }

    fn rows(&self, a: &Args) -> Vec<(String, String, String)> {
        let opt = |d: Option<Duration>| d.map(secs).unwrap_or_else(|| "not measured".into());
        let per_min = |c: &AuditCount| c.writes as f64 * 60.0 / self.steady_secs.max(1) as f64;
        let objects = self.objects.max(1) as f64;
        let p = |q| {
            let mut v = self.latencies.clone();
            v.sort();
            if v.is_empty() {
                "not measured".into()
            } else {
                secs(percentile(&v, q))
            }
        };
        let rejected = self.converge_hub.rejected_429
            + self.converge_members.rejected_429
            + self.steady_hub.rejected_429
            + self.steady_members.rejected_429
            + self.resync_hub.rejected_429
            + self.resync_members.rejected_429
            + self.baseline_hub.rejected_429
            + self.baseline_members.rejected_429;
        vec![
            (
                format!(
                    "time until all Ready ({} agencies, {} systems, {} backup policies)",
                    a.agencies,
                    a.systems,
                    self.fleet_policies(a)
                ),
                opt(self.converge),
                "—".into(),
            ),
            (
                "  of which: all agencies Ready".into(),
                opt(self.agencies_ready_at),
                "—".into(),
            ),
            (
                "baseline: bare client applying the same children".into(),
                opt(self.baseline),
                "—".into(),
            ),
            (
                "ratio operator ÷ baseline".into(),
                self.ratio()
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "not measured".into()),
                "≤ 1.3".into(),
            ),
            (
                "API requests per object, hub (operator ServiceAccount)".into(),
                format!(
                    "{:.1} ({} requests, {} writes: {})",
                    self.converge_hub.requests as f64 / objects,
                    self.converge_hub.requests,
                    self.converge_hub.writes,
                    self.converge_hub.top_writes(6)
                ),
                "—".into(),
            ),
            (
                "API requests per object, members (member ServiceAccount)".into(),
                format!(
                    "{:.1} ({} requests, {} writes: {})",
                    self.converge_members.requests as f64 / objects,
                    self.converge_members.requests,
                    self.converge_members.writes,
                    self.converge_members.top_writes(6)
                ),
                "—".into(),
            ),
            (
                "baseline requests per object (hub + members)".into(),
                format!(
                    "{:.1} ({} requests for {} children; writes: {})",
                    (self.baseline_hub.requests + self.baseline_members.requests) as f64 / objects,
                    self.baseline_hub.requests + self.baseline_members.requests,
                    self.baseline_objects,
                    {
                        let mut all = self.baseline_hub.clone();
                        all.add(&self.baseline_members);
                        all.top_writes(6)
                    }
                ),
                "—".into(),
            ),
            (
                "operator peak RSS (VmHWM), first process".into(),
                format!("{:.1} MiB", self.peak_rss_kib as f64 / 1024.0),
                "≤ 150 MiB".into(),
            ),
            (
                "operator RSS after convergence".into(),
                format!("{:.1} MiB", self.rss_after_kib as f64 / 1024.0),
                "—".into(),
            ),
            (
                "operator peak RSS after a restart (resync only)".into(),
                format!("{:.1} MiB", self.resync_peak_rss_kib as f64 / 1024.0),
                "≤ 150 MiB".into(),
            ),
            ("operator CPU time until all Ready".into(), secs(self.cpu), "—".into()),
            (
                "CPU of all processes until all Ready (operator, testbed, bench)".into(),
                self.converge_cpu_all.clone(),
                "—".into(),
            ),
            (
                "CPU of all processes during the baseline (testbed, bench)".into(),
                self.baseline_cpu_all.clone(),
                "—".into(),
            ),
            (
                "child server-side applies until all Ready (operator metric)".into(),
                format!("{}", self.child_applies),
                "—".into(),
            ),
            (
                format!("API writes per minute at steady state ({} s)", self.steady_secs),
                format!(
                    "{:.1} (hub {}, members {}){}",
                    per_min(&self.steady_hub) + per_min(&self.steady_members),
                    self.steady_hub.writes,
                    self.steady_members.writes,
                    {
                        let mut all = self.steady_hub.clone();
                        all.add(&self.steady_members);
                        let top = all.top_writes(4);
                        if top.is_empty() {
                            String::new()
                        } else {
                            format!(": {top}")
                        }
                    }
                ),
                "0".into(),
            ),
            (
                format!("new agency create→Ready p50 ({} one by one)", self.latencies.len()),
                p(50.0),
                "—".into(),
            ),
            (
                format!("new agency create→Ready p99 ({} one by one)", self.latencies.len()),
                p(99.0),
                "≤ 2 s".into(),
            ),
            (
                "full no-change resync after a restart".into(),
                format!(
                    "{} ({} writes: {}; {} child applies)",
                    opt(self.resync),
                    self.resync_hub.writes + self.resync_members.writes,
                    {
                        let mut all = self.resync_hub.clone();
                        all.add(&self.resync_members);
                        let t = all.top_writes(4);
                        if t.is_empty() { "none".to_string() } else { t }
                    },
                    self.resync_applies
                ),
                "≤ 10 s, 0 writes".into(),
            ),
            (
                "fleet UtilizationReport".into(),
                format!("{} {}", opt(self.report), self.report_summary),
                "≤ 1 s".into(),
            ),
            (
                "requests rejected by APF (HTTP 429 in the audit logs)".into(),
                rejected.to_string(),
                "0".into(),
            ),
            (
                "deleting the fleet (namespaces gone)".into(),
                opt(self.deletion),
                "—".into(),
            ),
        ]
    }

    fn fleet_policies(&self, a: &Args) -> usize {
        ((a.systems as f64) * a.backup_share).round() as usize
    }

    fn table(&self, a: &Args) -> String {
        let mut s = String::from("| measure | result | target |\n|---|---|---|\n");
        for (m, r, t) in self.rows(a) {
            s.push_str(&format!("| {m} | {r} | {t} |\n"));
        }
        s
    }
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let hv = |v: &str| hack_version(v).unwrap_or_else(|_| "unknown".into());
    vec![
        (
            "CPU".into(),
            format!("{model}, {} logical CPUs", command_output("nproc", &[])),
        ),
        ("memory".into(), mem),
        ("kernel".into(), command_output("uname", &["-sr"])),
        ("Kubernetes".into(), hv("K8S_VERSION")),
        ("etcd".into(), hv("ETCD_VERSION")),
        ("KWOK".into(), hv("KWOK_VERSION")),
        ("rustc".into(), command_output("rustc", &["--version"])),
        (
            "operator commit".into(),
            format!(
                "{}{}",
                command_output("git", &["rev-parse", "--short", "HEAD"]),
                if command_output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
                    ""
                } else {
                    " (with local changes)"
                }
            ),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Phases

struct Bench {
    a: Args,
    run: String,
    admin: Client,
    members_admin: Vec<Client>,
    operator_kubeconfig: PathBuf,
    member_sa: String,
    member_kubeconfigs: Vec<Kubeconfig>,
    member_ns_existed: Vec<bool>,
    operator: Option<OperatorProcess>,
    r: Results,
}

const OPERATOR_USER: &str = "system:serviceaccount:govcloud-system:govcloud-operator";

impl Bench {
    fn member_user(&self) -> String {
        format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{}", self.member_sa)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.a.timeout_secs)
    }

    async fn setup(&mut self) -> Result<()> {
        let hub = &self.admin;
        install_crds(hub).await?;
        ensure_namespace(hub, OPERATOR_NAMESPACE).await?;
        // Member identities and kubeconfig Secrets; dc1 is the hub itself (no Secret).
        for n in 2..=self.a.clusters {
            let (kc, existed) = member_identity(n, &self.member_sa, &self.run).await?;
            let secret = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{}-dc{n}", self.run), "namespace": OPERATOR_NAMESPACE, "labels": labels(&self.run)},
                "stringData": {"kubeconfig": serde_yaml::to_string(&kc)?}});
            let secrets: Api<Secret> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
            ssa(&secrets, &format!("{}-dc{n}", self.run), &secret).await?;
            self.member_kubeconfigs.push(kc);
            self.member_ns_existed.push(existed);
        }
        let dccs: Api<DataCenterCluster> = Api::all(hub.clone());
        for n in 1..=self.a.clusters {
            let name = format!("{}-dc{n}", self.run);
            let mut spec = json!({"region": "r1", "zone": "external", "maxSecurityLevel": 3,
                                  "overcommit": {"cpu": 10.0, "memory": 4.0},
                                  "displayName": format!("性能测试 dc{n}")});
            if n > 1 {
                spec["kubeconfigSecret"] = json!({"name": name});
            }
            let dcc: DataCenterCluster = serde_json::from_value(json!({
                "apiVersion": "govcloud.io/v1alpha1", "kind": "DataCenterCluster",
                "metadata": {"name": name, "labels": {BENCH_LABEL: "true", RUN_LABEL: self.run, DC_LABEL: format!("dc{n}")}},
                "spec": spec}))?;
            dccs.create(&PostParams::default(), &dcc).await?;
        }
        for n in 2..=self.a.clusters {
            if require_velero(n).await.is_err() {
                self.r.notes.push(format!(
                    "Velero is not installed on dc{n}: BackupPolicies placed there are reconciled (status written, \
                     counted as settled) but cannot become Ready."
                ));
            }
        }
        self.r.notes.push(
            "No BackupLocation is registered by the benchmark: BackupPolicies settle with Ready=False \
             (no location for the region); they exercise the controller, not Velero."
                .into(),
        );
        Ok(())
    }

    /// Stops the testbed and starts it again with empty clusters (`--fresh-clusters`), then
    /// installs the chart and sets this run up again on them.
    async fn fresh_testbed(&mut self) -> Result<()> {
        let t0 = Instant::now();
        log("--fresh-clusters: stopping the testbed and starting it again with empty clusters");
        let clusters = self.a.clusters.to_string();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let testbed = repo_root().join("hack/testbed.sh");
            for cmd in ["down", "up"] {
                let st = std::process::Command::new("bash")
                    .arg(&testbed)
                    .arg(cmd)
                    .env("TESTBED_CLUSTERS", &clusters)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .with_context(|| format!("running hack/testbed.sh {cmd}"))?;
                anyhow::ensure!(st.success(), "hack/testbed.sh {cmd} failed: {st}");
            }
            let st = std::process::Command::new("bash")
                .arg(repo_root().join("hack/chart.sh"))
                .args(["install", "--set", "rbac.hubIsMember=true"])
                .env("KUBECONFIG", kubeconfig_path(1))
                .stdout(std::process::Stdio::null())
                .status()
                .context("running hack/chart.sh install")?;
            anyhow::ensure!(st.success(), "hack/chart.sh install failed: {st}");
            Ok(())
        })
        .await??;
        self.admin = client(1).await?;
        self.members_admin.clear();
        for n in 2..=self.a.clusters {
            self.members_admin.push(client(n).await?);
        }
        let token = service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await?;
        std::fs::write(
            &self.operator_kubeconfig,
            serde_yaml::to_string(&token_kubeconfig(&token)?)?,
        )?;
        self.member_kubeconfigs.clear();
        self.member_ns_existed.clear();
        // setup() notes what it finds (Velero missing, …): noted once already, for the baseline.
        let notes = self.r.notes.len();
        self.setup().await?;
        self.r.notes.truncate(notes);
        // The operator's phase runs on this testbed: describe its API servers, not the first's.
        let finalizers = finalizers_setting(&self.admin).await;
        if let Some(row) = self.r.settings.iter_mut().find(|(k, _)| k == "finalizers") {
            row.1 = finalizers;
        }
        log(format!("fresh testbed ready in {}", secs(t0.elapsed())));
        Ok(())
    }

    async fn wait_clusters(&self) -> Result<()> {
        let dccs: Api<DataCenterCluster> = Api::all(self.admin.clone());
        let lp = run_selector(&self.run);
        let want = self.a.clusters;
        wait_for("DataCenterClusters Ready", Duration::from_secs(120), || {
            let dccs = dccs.clone();
            let lp = lp.clone();
            async move {
                let l = dccs.list(&lp).await?;
                let ready = l
                    .items
                    .iter()
                    .filter(|d| d.status.as_ref().is_some_and(|s| is_true(&s.conditions, "Ready")))
                    .count();
                Ok((ready == want).then_some(()))
            }
        })
        .await
    }

    async fn create_fleet(&mut self) -> Result<()> {
        let a = self.a.clone();
        let run = self.run.clone();
        let hub = self.admin.clone();
        let deadline = self.deadline();
        let acs: Api<AgencyCloud> = Api::all(hub.clone());
        let n_policies = self.r.fleet_policies(&a);
        log(format!(
            "creating {} agencies, {} systems, {} backup policies (client parallelism {})",
            a.agencies, a.systems, n_policies, a.parallelism
        ));
        let start = Instant::now();
        let agencies = futures::stream::iter(0..a.agencies)
            .map(|i| {
                let acs = acs.clone();
                let name = agency_name(&run, 'a', i);
                let v = agency_manifest(&run, &name, cluster_of(i, a.clusters));
                async move {
                    let ac: AgencyCloud = serde_json::from_value(v)?;
                    acs.create(&PostParams::default(), &ac).await?;
                    Ok::<_, anyhow::Error>(())
                }
            })
            .buffer_unordered(a.parallelism)
            .collect::<Vec<_>>();
        // Systems go into their namespace as soon as the operator has created it, whatever
        // the order in which it provisions the agencies: a watch of the hub's namespaces
        // releases each namespace's systems (creating them in index order would wait on
        // the agency of the next system while others are long ready).
        let mut by_ns: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
        for j in 0..a.systems {
            by_ns.entry(system_place(&run, j, a.agencies).1).or_default().push(j);
        }
        let (tx, rx) = futures::channel::mpsc::unbounded::<usize>();
        let releaser = {
            let hub = hub.clone();
            async move {
                let mut by_ns = by_ns;
                let events = kube::runtime::WatchStreamExt::default_backoff(kube::runtime::watcher(
                    Api::<kube::core::PartialObjectMeta<Namespace>>::all(hub),
                    Default::default(),
                ));
                let mut events = std::pin::pin!(events);
                while !by_ns.is_empty() {
                    let Some(ev) = events.next().await else { break };
                    let names: Vec<String> = match ev {
                        Ok(kube::runtime::watcher::Event::Apply(m) | kube::runtime::watcher::Event::InitApply(m)) => {
                            m.metadata.name.into_iter().collect()
                        }
                        _ => continue,
                    };
                    for n in names {
                        for j in by_ns.remove(&n).unwrap_or_default() {
                            let _ = tx.unbounded_send(j);
                        }
                    }
                }
                drop(tx);
            }
        };
        let creator = rx
            .map(|j| {
                let (name, ns) = system_place(&run, j, a.agencies);
                let hs_api: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
                let bp_api: Api<BackupPolicy> = Api::namespaced(hub.clone(), &ns);
                let with_policy = j < n_policies;
                let run = run.clone();
                async move {
                    let hs: HostedSystem = serde_json::from_value(system_manifest(&run, &name))?;
                    create_retrying(hs_api, hs, deadline).await?;
                    if with_policy {
                        let bp: BackupPolicy = serde_json::from_value(policy_manifest(&run, &name))?;
                        create_retrying(bp_api, bp, deadline).await?;
                    }
                    Ok::<_, anyhow::Error>(())
                }
            })
            .buffer_unordered(a.parallelism)
            .collect::<Vec<_>>();
        let systems = async {
            let ((), created) = tokio::join!(releaser, creator);
            created
        };
        // Progress from watches (see FleetWatch), looked at every 250 ms.
        let poll = Duration::from_millis(250);
        let fleet = FleetWatch::start(&hub, &run);
        let waiting = async {
            let mut last = FleetState::default();
            let mut agencies_at = None;
            let mut logged = Instant::now();
            loop {
                match fleet.state().await {
                    Ok(s) => {
                        if agencies_at.is_none() && s.agencies_ready >= a.agencies {
                            agencies_at = Some(start.elapsed());
                        }
                        if s.agencies_ready >= a.agencies
                            && s.systems_ready >= a.systems
                            && s.policies_settled >= n_policies
                        {
                            return Ok((start.elapsed(), agencies_at, s));
                        }
                        if (s.agencies_ready != last.agencies_ready || s.systems_ready != last.systems_ready)
                            && logged.elapsed() >= Duration::from_secs(2)
                        {
                            logged = Instant::now();
                            log(format!(
                                "{:>6.1} s: agencies Ready {}/{}, systems Available {}/{}, policies settled {}/{}",
                                start.elapsed().as_secs_f64(),
                                s.agencies_ready,
                                a.agencies,
                                s.systems_ready,
                                a.systems,
                                s.policies_settled,
                                n_policies
                            ));
                        }
                        last = s;
                    }
                    Err(e) => log(format!("listing the fleet: {e:#}")),
                }
                if Instant::now() > deadline {
                    bail!(
                        "timed out: agencies Ready {}/{}, systems Available {}/{}, policies settled {}/{}",
                        last.agencies_ready,
                        a.agencies,
                        last.systems_ready,
                        a.systems,
                        last.policies_settled,
                        n_policies
                    );
                }
                tokio::time::sleep(poll).await;
            }
        };
        let (ra, rs, done) = tokio::join!(agencies, systems, waiting);
        for r in ra.into_iter().chain(rs) {
            r?;
        }
        let (total, agencies_at, state) = done?;
        self.r.converge = Some(total);
        self.r.agencies_ready_at = agencies_at;
        self.r.fleet = state;
        self.r.objects = a.agencies + a.systems + n_policies;
        log(format!(
            "all Ready in {} (agencies at {}); policies Ready {}/{}",
            secs(total),
            agencies_at.map(secs).unwrap_or_default(),
            state.policies_ready,
            n_policies
        ));
        Ok(())
    }

    async fn new_agencies(&mut self) -> Result<()> {
        let acs: Api<AgencyCloud> = Api::all(self.admin.clone());
        for k in 0..self.a.new_agencies {
            let i = self.a.agencies + k;
            let name = agency_name(&self.run, 'a', i);
            let ac: AgencyCloud =
                serde_json::from_value(agency_manifest(&self.run, &name, cluster_of(i, self.a.clusters)))?;
            let start = Instant::now();
            acs.create(&PostParams::default(), &ac).await?;
            let latency = wait_for(&format!("agency {name} Ready"), Duration::from_secs(120), || async {
                let ac = acs.get(&name).await?;
                let ready = ac.status.as_ref().is_some_and(|s| is_true(&s.conditions, "Ready"));
                Ok(ready.then(|| start.elapsed()))
            })
            .await?;
            self.r.latencies.push(latency);
            // One by one, with the fleet otherwise quiet.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut v = self.r.latencies.clone();
        v.sort();
        log(format!(
            "{} new agencies: p50 {}, p99 {}",
            v.len(),
            secs(percentile(&v, 50.0)),
            secs(percentile(&v, 99.0))
        ));
        Ok(())
    }

    async fn report(&mut self) -> Result<()> {
        let reports: Api<UtilizationReport> = Api::all(self.admin.clone());
        let name = format!("{}-report", self.run);
        let ur: UtilizationReport = serde_json::from_value(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "UtilizationReport",
            "metadata": {"name": name, "labels": labels(&self.run)}, "spec": {}
        }))?;
        let start = Instant::now();
        reports.create(&PostParams::default(), &ur).await?;
        let st = wait_for("UtilizationReport Completed", Duration::from_secs(120), || async {
            let r = reports.get(&name).await?;
            Ok(r.status.filter(|s| s.phase.as_deref() == Some("Completed")))
        })
        .await?;
        let took = start.elapsed();
        self.r.report = Some(took);
        self.r.report_summary = st
            .summary
            .map(|s| {
                format!(
                    "({} clusters, {} agencies, {} systems)",
                    s.clusters, s.agencies, s.systems
                )
            })
            .unwrap_or_default();
        log(format!("UtilizationReport in {} {}", secs(took), self.r.report_summary));
        let _ = reports.delete(&name, &DeleteParams::default()).await;
        Ok(())
    }

    async fn resync(&mut self) -> Result<()> {
        let Some(op) = self.operator.take() else {
            bail!("no operator running")
        };
        op.stop();
        let total_agencies = (self.a.agencies + self.a.new_agencies) as f64;
        let systems = self.a.systems as f64;
        let policies = self.r.fleet_policies(&self.a) as f64;
        let from = audit_mark(self.a.clusters);
        let op = start_operator(&self.a, &self.run, &self.operator_kubeconfig, 2).await?;
        let start = op.started;
        let port = op.port;
        self.operator = Some(op);
        let took = wait_for("resync: every object reconciled", Duration::from_secs(600), || async {
            let m = metrics_text(port).await?;
            let ag = metric(&m, "govcloud_controller_reconciles_total", "controller=\"agencycloud\"");
            let hs = metric(
                &m,
                "govcloud_controller_reconciles_total",
                "controller=\"hostedsystem\"",
            );
            let bp = metric(
                &m,
                "govcloud_controller_reconciles_total",
                "controller=\"backuppolicy\"",
            );
            // Other fleets on a shared testbed are reconciled too: at least ours.
            Ok((ag >= total_agencies && hs >= systems && bp >= policies).then(|| start.elapsed()))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let to = audit_mark(self.a.clusters);
        let (h, m) = audit_window(&from, &to, OPERATOR_USER, &self.member_user());
        let text = metrics_text(port).await.unwrap_or_default();
        self.r.resync = Some(took);
        self.r.resync_applies = metric(&text, "govcloud_controller_child_applies_total", "");
        self.r.resync_hub = h;
        self.r.resync_members = m;
        if let Some(op) = &self.operator {
            self.r.resync_peak_rss_kib = peak_rss_kib(op.pid()).unwrap_or(0);
        }
        log(format!(
            "resync in {} (process start to every object reconciled): {} writes, {} child applies",
            secs(took),
            self.r.resync_hub.writes + self.r.resync_members.writes,
            self.r.resync_applies
        ));
        Ok(())
    }

    async fn steady(&mut self) -> Result<()> {
        log(format!("steady state for {} s", self.a.steady_secs));
        let from = audit_mark(self.a.clusters);
        tokio::time::sleep(Duration::from_secs(self.a.steady_secs)).await;
        let to = audit_mark(self.a.clusters);
        let (h, m) = audit_window(&from, &to, OPERATOR_USER, &self.member_user());
        self.r.steady_secs = self.a.steady_secs;
        log(format!(
            "steady: hub {} requests ({} writes), members {} requests ({} writes) {}",
            h.requests,
            h.writes,
            m.requests,
            m.writes,
            {
                let mut all = h.clone();
                all.add(&m);
                all.top_writes(6)
            }
        ));
        self.r.steady_hub = h;
        self.r.steady_members = m;
        Ok(())
    }

    /// Deletes the AgencyClouds (the operator removes their children) and waits until their
    /// namespaces are gone on every cluster.
    async fn delete_fleet(&mut self, timeout: Duration) -> Result<Duration> {
        let acs: Api<AgencyCloud> = Api::all(self.admin.clone());
        let start = Instant::now();
        let lp = run_selector(&self.run);
        for ac in acs.list(&lp).await?.items {
            if let Some(name) = ac.metadata.name.as_deref() {
                let _ = acs.delete(name, &DeleteParams::default()).await;
            }
        }
        let prefix = format!("{}-a", self.run);
        let clients: Vec<Client> = std::iter::once(self.admin.clone())
            .chain(self.members_admin.iter().cloned())
            .collect();
        let gone = wait_for("the fleet's namespaces gone", timeout, || {
            let acs = acs.clone();
            let lp = lp.clone();
            let clients = clients.clone();
            let prefix = prefix.clone();
            async move {
                let left_acs = acs.list(&lp).await?.items.len();
                let mut left_ns = 0;
                for c in &clients {
                    left_ns += Api::<Namespace>::all(c.clone())
                        .list_metadata(&ListParams::default())
                        .await?
                        .items
                        .iter()
                        .filter(|n| n.metadata.name.as_deref().is_some_and(|x| x.starts_with(&prefix)))
                        .count();
                }
                Ok((left_acs == 0 && left_ns == 0).then(|| start.elapsed()))
            }
        })
        .await;
        match gone {
            Ok(d) => Ok(d),
            Err(e) => {
                // Release what is left so that nothing stays behind.
                for ac in acs.list(&lp).await.map(|l| l.items).unwrap_or_default() {
                    if let Some(name) = ac.metadata.name.as_deref() {
                        let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
                        let _ = acs.patch(name, &PatchParams::default(), &release).await;
                    }
                }
                delete_namespaces(&clients, &prefix).await;
                Err(e)
            }
        }
    }

    async fn baseline(&mut self) -> Result<()> {
        let a = self.a.clone();
        let run = self.run.clone();
        // Hub: the chart's ServiceAccount; members: the same ServiceAccount as the operator's.
        let token = service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await?;
        let mut targets = vec![token_client(&token).await?];
        for kc in &self.member_kubeconfigs {
            targets.push(client_from(kc.clone()).await?);
        }
        let hub_target = targets[0].clone();
        // The same children the operator applies, under another manager label so that no
        // operator would ever take them for its own.
        let relabel = |mut c: Child| {
            if let Some(l) = c.body["metadata"]["labels"].as_object_mut() {
                l.insert("app.kubernetes.io/managed-by".into(), json!(BASELINE_MANAGER));
                l.insert(BENCH_LABEL.into(), json!("true"));
                l.insert(RUN_LABEL.into(), json!(run));
            }
            c
        };
        let mut agency_jobs: Vec<(Client, Vec<Child>)> = Vec::new();
        // What the operator applies once per cluster (the agency roles, the registry policy
        // and its binding): first, as the operator does before any agency's children. Not
        // relabelled: these are the same objects the operator's phase finds and keeps.
        // The agency roles are installed by the chart and the member manifest, which the
        // operator's identity may not write (as the operator, the baseline leaves them be).
        let shared: Vec<Child> = children::shared_children()
            .into_iter()
            .filter(|c| c.kind != children::Kind::ClusterRole)
            .collect();
        let mut n_children = shared.len() * targets.len();
        let shared_jobs: Vec<(Client, Vec<Child>)> = targets.iter().map(|t| (t.clone(), shared.clone())).collect();
        for i in 0..a.agencies {
            let name = agency_name(&run, 'z', i);
            let dc = cluster_of(i, a.clusters);
            let ac: AgencyCloud = serde_json::from_value(agency_manifest(&run, &name, dc))?;
            let (member, _) = children::member_children(&name, &ac.spec.cloud);
            let member: Vec<Child> = member.into_iter().map(relabel).collect();
            n_children += member.len();
            if dc > 1 {
                let hub: Vec<Child> = children::hub_children(&name, &ac.spec.cloud)
                    .into_iter()
                    .map(relabel)
                    .collect();
                n_children += hub.len();
                agency_jobs.push((hub_target.clone(), hub));
            }
            agency_jobs.push((targets[dc - 1].clone(), member));
        }
        let mut system_jobs: Vec<(Client, Vec<Child>)> = Vec::new();
        let spec: govcloud_api::HostedSystemSpec = serde_json::from_value(system_spec())?;
        for j in 0..a.systems {
            let agency = agency_name(&run, 'z', j % a.agencies);
            let dc = cluster_of(j % a.agencies, a.clusters);
            let env = ENVIRONMENTS[(j / a.agencies) % ENVIRONMENTS.len()];
            let ns = children::namespace_name(&agency, env);
            let name = format!("s{j:05}");
            let mut cs = hosted::children(&agency, 2, &name, &ns, &spec);
            cs.push(hosted::spec_record(&agency, &name, &ns, &spec));
            let cs: Vec<Child> = cs.into_iter().map(relabel).collect();
            n_children += cs.len();
            system_jobs.push((targets[dc - 1].clone(), cs));
        }
        self.r.baseline_objects = n_children;
        let parallel = a.concurrency as usize;
        log(format!(
            "baseline: applying {n_children} children directly ({parallel} agencies and {parallel} systems at once)"
        ));
        let from = audit_mark(a.clusters);
        let tb0 = testbed_cpu(a.clusters);
        let deadline = self.deadline();
        let start = Instant::now();
        let apply_all = |jobs: Vec<(Client, Vec<Child>)>| {
            futures::stream::iter(jobs)
                .map(move |(c, cs)| async move {
                    for ch in cs {
                        apply_child(&c, &ch, deadline).await?;
                    }
                    Ok::<_, anyhow::Error>(())
                })
                .buffer_unordered(parallel)
                .collect::<Vec<_>>()
        };
        let rc = apply_all(shared_jobs).await;
        let (ra, rs) = tokio::join!(apply_all(agency_jobs), apply_all(system_jobs));
        for r in rc.into_iter().chain(ra).chain(rs) {
            r?;
        }
        let applied = start.elapsed();
        // Ready as the operator's systems are: every Deployment available.
        let members: Vec<Client> = std::iter::once(self.admin.clone())
            .chain(self.members_admin.iter().cloned())
            .collect();
        let want = a.systems;
        let lp = run_selector(&run);
        let total = wait_for(
            "baseline Deployments available",
            Duration::from_secs(a.timeout_secs),
            || {
                let members = members.clone();
                let lp = lp.clone();
                async move {
                    let mut ok = 0;
                    for c in &members {
                        ok += Api::<Deployment>::all(c.clone())
                            .list(&lp)
                            .await?
                            .items
                            .iter()
                            .filter(|d| {
                                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                                d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) >= want
                            })
                            .count();
                    }
                    Ok((ok >= want).then(|| start.elapsed()))
                }
            },
        )
        .await?;
        self.r.baseline_cpu_all = cpu_between(&tb0, &testbed_cpu(a.clusters), &[]);
        log(format!("baseline: CPU {}", self.r.baseline_cpu_all));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let to = audit_mark(a.clusters);
        let (h, m) = audit_window(&from, &to, OPERATOR_USER, &self.member_user());
        self.r.baseline = Some(total);
        self.r.baseline_hub = h;
        self.r.baseline_members = m;
        log(format!(
            "baseline: applied in {}, all Deployments available in {}",
            secs(applied),
            secs(total)
        ));
        Ok(())
    }

    async fn cleanup_baseline(&self) {
        let prefix = format!("{}-z", self.run);
        let clients: Vec<Client> = std::iter::once(self.admin.clone())
            .chain(self.members_admin.iter().cloned())
            .collect();
        let lp = run_selector(&self.run);
        for c in &clients {
            for kind in [Kind::PolicyBinding, Kind::Policy] {
                let api = dynamic_api(c, kind, None);
                let _ = api.delete_collection(&DeleteParams::default(), &lp).await;
            }
        }
        delete_namespaces(&clients, &prefix).await;
        let _ = wait_for("baseline namespaces gone", Duration::from_secs(600), || {
            let clients = clients.clone();
            let prefix = prefix.clone();
            async move {
                let mut left = 0;
                for c in &clients {
                    left += Api::<Namespace>::all(c.clone())
                        .list_metadata(&ListParams::default())
                        .await?
                        .items
                        .iter()
                        .filter(|n| n.metadata.name.as_deref().is_some_and(|x| x.starts_with(&prefix)))
                        .count();
                }
                Ok((left == 0).then_some(()))
            }
        })
        .await
        .map_err(|e| log(format!("cleanup: {e:#}")));
    }

    /// Removes everything else the run created (best effort).
    async fn cleanup(&mut self) {
        let hub = self.admin.clone();
        let lp = run_selector(&self.run);
        let dp = DeleteParams::default();
        let _ = Api::<UtilizationReport>::all(hub.clone())
            .delete_collection(&dp, &lp)
            .await;
        let acs: Api<AgencyCloud> = Api::all(hub.clone());
        if !self.a.keep_fleet && !acs.list(&lp).await.map(|l| l.items.is_empty()).unwrap_or(true) {
            if self.operator.is_none() {
                match start_operator(&self.a, &self.run, &self.operator_kubeconfig, 3).await {
                    Ok(op) => self.operator = Some(op),
                    Err(e) => log(format!("cleanup: cannot start the operator: {e:#}")),
                }
            }
            match self.delete_fleet(Duration::from_secs(600)).await {
                Ok(d) => log(format!("cleanup: fleet deleted in {}", secs(d))),
                Err(e) => log(format!("cleanup: {e:#}")),
            }
        }
        if let Some(op) = self.operator.take() {
            log(format!("stopping operator pid {}", op.pid()));
            op.stop();
        }
        if self.a.keep_clusters {
            log(format!(
                "--keep-clusters: the fleet's clusters stay registered; an operator can be started against it with \
                 `target/release/govcloud-operator run --kubeconfig {} --namespace {OPERATOR_NAMESPACE} --listen 127.0.0.1:0`",
                self.operator_kubeconfig.display()
            ));
            return;
        }
        let _ = Api::<DataCenterCluster>::all(hub.clone())
            .delete_collection(&dp, &lp)
            .await;
        let _ = Api::<Secret>::namespaced(hub.clone(), OPERATOR_NAMESPACE)
            .delete_collection(&dp, &lp)
            .await;
        for (i, c) in self.members_admin.iter().enumerate() {
            let _ = Api::<ClusterRoleBinding>::all(c.clone())
                .delete(&self.member_sa, &dp)
                .await;
            let _ = Api::<ServiceAccount>::namespaced(c.clone(), OPERATOR_NAMESPACE)
                .delete(&self.member_sa, &dp)
                .await;
            if self.member_ns_existed.get(i) == Some(&false) {
                let _ = Api::<Namespace>::all(c.clone()).delete(OPERATOR_NAMESPACE, &dp).await;
            }
        }
        let _ = std::fs::remove_file(&self.operator_kubeconfig);
        log("cleanup done");
    }
}

fn dynamic_api(c: &Client, kind: Kind, ns: Option<&str>) -> Api<DynamicObject> {
    let (group, version, k, plural, _) = kind.gvk();
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: kind.api_version(),
        kind: k.into(),
        plural: plural.into(),
    };
    match ns {
        Some(ns) => Api::namespaced_with(c.clone(), ns, &ar),
        None => Api::all_with(c.clone(), &ar),
    }
}

async fn apply_child(c: &Client, ch: &Child, deadline: Instant) -> Result<()> {
    let api = dynamic_api(c, ch.kind, ch.namespace.as_deref());
    let pp = PatchParams::apply(BASELINE_MANAGER).force();
    loop {
        match api.patch(&ch.name, &pp, &Patch::Apply(&ch.body)).await {
            Ok(_) => return Ok(()),
            // A system's namespace may not exist yet (its agency is applied concurrently).
            Err(kube::Error::Api(s)) if s.code == 404 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow!("applying {:?} {}: {e}", ch.kind, ch.name)),
        }
    }
}

async fn delete_namespaces(clients: &[Client], prefix: &str) {
    for c in clients {
        let api: Api<Namespace> = Api::all(c.clone());
        let Ok(list) = api.list_metadata(&ListParams::default()).await else {
            continue;
        };
        for n in list.items {
            if let Some(name) = n.metadata.name.as_deref().filter(|x| x.starts_with(prefix)) {
                let _ = api.delete(name, &DeleteParams::default()).await;
            }
        }
    }
}

/// The "finalizers" settings row: how new objects get their cleanup finalizer on this hub.
async fn finalizers_setting(admin: &Client) -> String {
    match govcloud::controller::tenancy::mutating_policy_version(admin).await {
        Some(v) => format!(
            "added at creation by the operator's MutatingAdmissionPolicy govcloud-finalizers \
             (admissionregistration.k8s.io/{v}, served by the testbed's API servers)"
        ),
        None => "added by the controllers, one write per object (the hub serves no MutatingAdmissionPolicy API)".into(),
    }
}

async fn measure(b: &mut Bench) -> Result<()> {
    b.setup().await?;
    if b.a.keep_fleet && b.a.baseline {
        // The baseline first, on clusters holding nothing of this run; its objects stay (the
        // operator then works on fuller clusters: this order does not flatter it) unless the
        // testbed is started afresh for the operator's phase.
        b.baseline().await?;
        if b.a.fresh_clusters {
            b.fresh_testbed().await?;
        }
    }
    let op = start_operator(&b.a, &b.run, &b.operator_kubeconfig, 1).await?;
    let pid = op.pid();
    b.operator = Some(op);
    b.wait_clusters().await?;
    let cpu0 = cpu_time(pid).unwrap_or_default();
    let port = b.operator.as_ref().map(|o| o.port).unwrap_or_default();
    let applies0 = metric(
        &metrics_text(port).await.unwrap_or_default(),
        "govcloud_controller_child_applies_total",
        "",
    );
    let from = audit_mark(b.a.clusters);
    let tb0 = testbed_cpu(b.a.clusters);
    b.create_fleet().await?;
    let tb1 = testbed_cpu(b.a.clusters);
    let op_cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu0);
    b.r.converge_cpu_all = cpu_between(&tb0, &tb1, &[("operator", op_cpu)]);
    log(format!("converge: CPU {}", b.r.converge_cpu_all));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let to = audit_mark(b.a.clusters);
    let (h, m) = audit_window(&from, &to, OPERATOR_USER, &b.member_user());
    b.r.converge_hub = h;
    b.r.converge_members = m;
    b.r.cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu0);
    b.r.peak_rss_kib = peak_rss_kib(pid).unwrap_or(0);
    b.r.child_applies = metric(
        &metrics_text(port).await.unwrap_or_default(),
        "govcloud_controller_child_applies_total",
        "",
    ) - applies0;
    log(format!(
        "converge: hub {} requests ({} writes), members {} requests ({} writes), peak RSS {:.1} MiB, CPU {}",
        b.r.converge_hub.requests,
        b.r.converge_hub.writes,
        b.r.converge_members.requests,
        b.r.converge_members.writes,
        b.r.peak_rss_kib as f64 / 1024.0,
        secs(b.r.cpu)
    ));
    // Let the last status updates settle before measuring the steady state.
    tokio::time::sleep(Duration::from_secs(5)).await;
    b.steady().await?;
    b.r.rss_after_kib = rss_kib(pid).unwrap_or(0);
    b.new_agencies().await?;
    b.report().await?;
    b.resync().await?;
    if b.a.fresh_clusters {
        b.r.notes.push(
            "--fresh-clusters: the baseline ran first; then the testbed was stopped and started again with \
             empty clusters (same nodes, same settings) for the operator's phase, so each phase ran on clusters \
             holding nothing else; neither fleet was deleted (deletion not measured). Stop the testbed afterwards."
                .into(),
        );
        if let Some(op) = b.operator.take() {
            op.stop();
        }
        return Ok(());
    }
    if b.a.keep_fleet {
        b.r.notes.push(
            "--keep-fleet: the baseline ran first, on clusters holding nothing of this run, and its objects \
             stayed while the operator converged its fleet next to them (an order that does not flatter the \
             operator); neither fleet was deleted (deletion not measured). Stop the testbed afterwards."
                .into(),
        );
        if let Some(op) = b.operator.take() {
            op.stop();
        }
        return Ok(());
    }
    b.r.deletion = Some(b.delete_fleet(Duration::from_secs(b.a.timeout_secs)).await?);
    log(format!(
        "fleet deleted in {}",
        b.r.deletion.map(secs).unwrap_or_default()
    ));
    if let Some(op) = b.operator.take() {
        op.stop();
    }
    if b.a.baseline {
        let res = b.baseline().await;
        b.cleanup_baseline().await;
        res?;
    }
    Ok(())
}

fn write_doc(a: &Args, b: &Bench, machine: &[(String, String)], path: &Path) -> Result<()> {
    let mut s = String::new();
    s.push_str("# Performance\n\n");
    s.push_str(&format!(
        "Generated by `hack/bench.sh` (`tests/src/bin/bench.rs`) on {}: {} agencies (3 environments each), \
         {} hosted systems (one replica each), backup policies on {:.0} % of the systems, {} clusters.\n\n",
        jiff::Zoned::now().strftime("%Y-%m-%d"),
        a.agencies,
        a.systems,
        a.backup_share * 100.0,
        a.clusters
    ));
    s.push_str("## Machine and versions\n\n| | |\n|---|---|\n");
    for (k, v) in machine {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    s.push_str("\n## Settings\n\n| | |\n|---|---|\n");
    for (k, v) in &b.r.settings {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    s.push_str("\n## Results\n\n");
    s.push_str(&b.r.table(a));
    if !b.r.notes.is_empty() {
        s.push_str("\n## Notes\n\n");
        for n in &b.r.notes {
            s.push_str(&format!("- {n}\n"));
        }
    }
    std::fs::write(path, s)?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = parse_args()?;
    // The commit (and whether the tree had local changes) when the driver starts, just after
    // `hack/bench.sh` built the binaries: edits made while a long run goes on are not in them.
    let machine = machine();
    init_crypto();
    ensure_testbed()?;
    for n in 1..=a.clusters {
        anyhow::ensure!(
            kubeconfig_path(n).exists(),
            "testbed cluster dc{n} is missing: start the testbed with TESTBED_CLUSTERS={}",
            a.clusters
        );
    }
    let admin = client(1).await?;
    let mut members_admin = Vec::new();
    for n in 2..=a.clusters {
        members_admin.push(client(n).await?);
    }
    // A short run id: names stay well under the limits (`<run>-a0001-prod`).
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let run = format!("bn{:x}", (t ^ std::process::id() as u64) & 0xfffff);
    log(format!("run {run}: label {BENCH_LABEL}=true, {RUN_LABEL}={run}"));
    let operator_kubeconfig = operator_kubeconfig_file(&format!("bench-{run}")).await?;
    let mut b = Bench {
        a: a.clone(),
        member_sa: format!("govcloud-bench-{run}"),
        run,
        admin,
        members_admin,
        operator_kubeconfig,
        member_kubeconfigs: Vec::new(),
        member_ns_existed: Vec::new(),
        operator: None,
        r: Results::default(),
    };
    let bin = operator_binary()?;
    b.r.settings = vec![
        (
            "operator".into(),
            format!(
                "`{} run {}` (leader election off)",
                bin.strip_prefix(repo_root()).unwrap_or(&bin).display(),
                operator_args(&a).join(" ")
            ),
        ),
        (
            "reconcile concurrency".into(),
            format!("{} per controller (production default 8)", a.concurrency),
        ),
        (
            "client-side rate limits".into(),
            "none (kube-rs client defaults: no QPS limiter; API Priority and Fairness on the servers decides)".into(),
        ),
        (
            "hub identity".into(),
            "the Helm chart's ServiceAccount govcloud-system/govcloud-operator (TokenRequest), not an admin certificate"
                .into(),
        ),
        (
            "member identity".into(),
            format!(
                "ServiceAccount govcloud-system/{} bound to cluster-admin on each member (kubeconfig Secret); dc1 is the hub itself",
                b.member_sa
            ),
        ),
        (
            "fleet".into(),
            format!(
                "{} AgencyClouds (level 2, external zone, dev/test/prod with 2 CPU / 4Gi each) round-robin over {} clusters, \
                 {} HostedSystems (one stateless component, one replica, 50m / 64Mi), {} BackupPolicies; \
                 created by an admin client, {} at once",
                a.agencies,
                a.clusters,
                a.systems,
                b.r.fleet_policies(&a),
                a.parallelism
            ),
        ),
        (
            "baseline".into(),
            format!(
                "the same children (govcloud_core::agency::member_children/hub_children, hosted::children + spec_record) \
                 applied server-side by a bare kube client, {} agencies and {} systems at once, hub as the chart's \
                 ServiceAccount, members as the member ServiceAccount; done when every Deployment is available",
                a.concurrency, a.concurrency
            ),
        ),
        ("steady-state window".into(), format!("{} s", a.steady_secs)),
        (
            "nodes".into(),
            format!(
                "KWOK: {} node(s) per cluster (TESTBED_NODES), {} CPU / {} / {} pods each",
                std::env::var("TESTBED_NODES").unwrap_or_else(|_| "?".into()),
                std::env::var("TESTBED_NODE_CPU").unwrap_or_else(|_| "?".into()),
                std::env::var("TESTBED_NODE_MEMORY").unwrap_or_else(|_| "?".into()),
                std::env::var("TESTBED_NODE_PODS").unwrap_or_else(|_| "?".into()),
            ),
        ),
    ];
    let finalizers = finalizers_setting(&b.admin).await;
    b.r.settings.push(("finalizers".into(), finalizers));
    for (k, v) in &b.r.settings {
        log(format!("setting: {k}: {v}"));
    }
    let outcome = measure(&mut b).await;
    if let Err(e) = &outcome {
        log(format!("benchmark failed: {e:#}"));
    }
    b.cleanup().await;
    b.r.notes.push(
        "API requests are counted in the API servers' audit logs (the testbed audits the ServiceAccounts of \
         govcloud-system): on the hub those of govcloud-operator, on the members those of the member \
         ServiceAccount. On a testbed shared with a running test suite, requests of the suite's in-process \
         operator (same ServiceAccount) would be counted too."
            .into(),
    );
    b.r.notes.push(
        "Resync time runs from starting the new process (cache sync included) until the reconcile counters \
         show every AgencyCloud, HostedSystem and BackupPolicy reconciled once."
            .into(),
    );
    if a.agencies < 2000 || a.systems < 5000 {
        b.r.notes.push(format!(
            "This run is smaller than the national scale (2,000 agencies, 5,000 systems): {} agencies, {} systems. \
             `BENCH_AGENCIES=2000 BENCH_SYSTEMS=5000 hack/bench.sh --out docs/performance.md` runs that scale \
             (it starts a testbed with enough KWOK capacity when none runs).",
            a.agencies, a.systems
        ));
    }
    println!("\n{}", b.r.table(&a));
    for n in &b.r.notes {
        println!("- {n}");
    }
    if outcome.is_ok()
        && let Some(path) = &a.out
    {
        let path = if path.is_absolute() {
            path.clone()
        } else {
            repo_root().join(path)
        };
        write_doc(&a, &b, &machine, &path)?;
        log(format!("wrote {}", path.display()));
    }
    outcome
}
