//! Fault suite: the real operator binary (under the chart's ServiceAccount) rolls out a
//! fleet of agencies, hosted systems and backup policies on two member clusters while faults
//! are injected, and afterwards nothing is missing, duplicated or orphaned.
//!
//! Faults, in order (each phase is a wave of new agencies created while the fault happens):
//! 1. SIGKILL of the operator at random points (FAULTS_KILLS, default 20), restarted at once
//!    as a kubelet would;
//! 2. the hub's API server stopped and started again mid-wave;
//! 3. a member cluster's API server stopped for 60 s (FAULTS_OUTAGE_SECS) mid-wave: its
//!    DataCenterCluster must report it, nothing may be deleted;
//! 4. two replicas with leader election, the leader SIGKILLed mid-wave: the standby writes
//!    nothing until it holds the lease;
//! 5. a conflicting writer takes fields of a ResourceQuota by a forced server-side apply: the
//!    operator takes back its own field and leaves the writer's field alone, and then stops;
//! 6. an AgencyCloud the operator cannot parse (written while the schema was looser): reported
//!    (event, metric) without stalling the others, including after a restart (a fresh list).
//!
//! Then everything must converge: every agency Ready, every system Available, every policy
//! Ready; on the members, every object of the fleet exactly once on the agency's own cluster
//! (0 duplicates, 0 orphans) and nothing lost (every agency's namespace, quota and limits,
//! every system's Deployment, every policy's Velero Schedule, and user data written into the
//! agencies' namespaces before the faults).
//!
//! Size: FAULTS_AGENCIES (default 200; every agency has a hosted system, every
//! FAULTS_BACKUP_EVERY-th (default 10) a backup policy). Figures go to
//! target/reliability/faults.json for docs/reliability.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use govcloud_api::labels::{POLICY_LABEL, POLICY_NAMESPACE_LABEL};
use govcloud_api::{AgencyCloud, BackupPolicy, DataCenterCluster, HostedSystem};
use govcloud_tests::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A tiny deterministic PRNG (xorshift) for the kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

// ---------------------------------------------------------------------------------------
// The operator process.

struct Replica {
    child: std::process::Child,
    port: u16,
    identity: String,
}

impl Replica {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn binary() -> PathBuf {
    operator_binary()
}

fn start(identity: &str, kubeconfig: &Path, leader: bool) -> Result<Replica> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(testbed_state().join(format!("faults-{identity}.log")))?;
    let mut cmd = std::process::Command::new(binary());
    cmd.arg("run");
    if leader {
        cmd.args(["--leader-elect", "--identity", identity]);
    }
    let child = cmd
        .args([
            "--namespace",
            OPERATOR_NAMESPACE,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--daily-reports", "0", "--monthly-reports", "0"])
        .env("RUST_LOG", "warn,govcloud=info")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary().display()))?;
    Ok(Replica {
        child,
        port,
        identity: identity.to_string(),
    })
}

async fn metrics(r: &Replica) -> Option<String> {
    process_metrics(r.port).await
}

// ---------------------------------------------------------------------------------------
// The fleet.

struct Fleet {
    run: String,
    group: String,
    /// DataCenterCluster name → testbed cluster number.
    clusters: BTreeMap<String, usize>,
    agencies: Vec<String>,
    /// (namespace, name)
    systems: Vec<(String, String)>,
    policies: Vec<(String, String)>,
    backup_every: usize,
}

impl Fleet {
    fn agency(&self, i: usize) -> String {
        format!("{}-{i}", self.run)
    }
}

async fn create_wave(hub: &Client, fleet: &mut Fleet, from: usize, to: usize) -> Result<()> {
    let acs: Api<AgencyCloud> = Api::all(hub.clone());
    for i in from..to {
        let name = fleet.agency(i);
        let mut v = agency_cloud(&name, 2, "external", &[("prod", "200m", "256Mi")], &fleet.group);
        v["metadata"]["labels"]["govcloud.io/faults"] = json!(fleet.run);
        let ac: AgencyCloud = serde_json::from_value(v)?;
        retry_create(&acs, &ac).await?;
        fleet.agencies.push(name.clone());
        // The agency's objects on the hub go into its namespace there once it exists.
        fleet.systems.push((format!("{name}-prod"), "portal".into()));
        if i % fleet.backup_every == 0 {
            fleet.policies.push((format!("{name}-prod"), "nightly".into()));
        }
    }
    Ok(())
}

/// Creates, retrying while the API server is away (a create that reached it counts).
async fn retry_create<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        match api.create(&PostParams::default(), obj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creates the systems and policies of agencies whose hub namespace exists (they are
/// created by the operator when the agency is placed); returns how many are still waiting.
async fn create_children(hub: &Client, fleet: &Fleet, done: &mut BTreeSet<String>) -> Result<usize> {
    let nss: Api<Namespace> = Api::all(hub.clone());
    let mut waiting = 0;
    for (ns, name) in &fleet.systems {
        let key = format!("hs/{ns}/{name}");
        if done.contains(&key) {
            continue;
        }
        if nss.get_opt(ns).await.ok().flatten().is_none() {
            waiting += 1;
            continue;
        }
        let hs: HostedSystem = serde_json::from_value(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
            "metadata": {"name": name, "labels": {"govcloud.io/test": "true", "tier": "web"}},
            "spec": {"securityLevel": 2, "dataClassification": "general",
                     "components": [{"name": "web", "image": "registry.gov.cn/portal:1", "replicas": 1,
                                     "ports": [{"name": "http", "port": 8080}],
                                     "resources": {"cpu": "10m", "memory": "16Mi"}}]}
        }))?;
        match Api::<HostedSystem>::namespaced(hub.clone(), ns)
            .create(&PostParams::default(), &hs)
            .await
        {
            Ok(_) => {
                done.insert(key);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                done.insert(key);
            }
            Err(_) => waiting += 1,
        }
    }
    for (ns, name) in &fleet.policies {
        let key = format!("bp/{ns}/{name}");
        if done.contains(&key) {
            continue;
        }
        if nss.get_opt(ns).await.ok().flatten().is_none() {
            waiting += 1;
            continue;
        }
        let bp: BackupPolicy = serde_json::from_value(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "BackupPolicy",
            "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}},
            "spec": {"schedule": "0 2 * * *", "rpo": "24h", "selector": {"matchLabels": {"tier": "web"}}}
        }))?;
        match Api::<BackupPolicy>::namespaced(hub.clone(), ns)
            .create(&PostParams::default(), &bp)
            .await
        {
            Ok(_) => {
                done.insert(key);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                done.insert(key);
            }
            Err(_) => waiting += 1,
        }
    }
    Ok(waiting)
}

fn true_condition(conds: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>, t: &str) -> bool {
    conds.is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
}

/// (agencies Ready, systems Available, policies Ready)
async fn converged(hub: &Client, fleet: &Fleet) -> Result<(usize, usize, usize)> {
    let lp = ListParams::default().labels(&format!("govcloud.io/faults={}", fleet.run));
    let acs = Api::<AgencyCloud>::all(hub.clone()).list(&lp).await?;
    let ready = acs
        .items
        .iter()
        .filter(|a| true_condition(a.status.as_ref().map(|s| &s.conditions), "Ready"))
        .count();
    let prefix = format!("{}-", fleet.run);
    let systems = Api::<HostedSystem>::all(hub.clone())
        .list(&ListParams::default().labels("govcloud.io/test=true"))
        .await?
        .items
        .into_iter()
        .filter(|s| s.namespace().is_some_and(|n| n.starts_with(&prefix)))
        .filter(|s| true_condition(s.status.as_ref().map(|s| &s.conditions), "Available"))
        .count();
    let policies = Api::<BackupPolicy>::all(hub.clone())
        .list(&ListParams::default().labels("govcloud.io/test=true"))
        .await?
        .items
        .into_iter()
        .filter(|s| s.namespace().is_some_and(|n| n.starts_with(&prefix)))
        .filter(|s| true_condition(s.status.as_ref().map(|s| &s.conditions), "Ready"))
        .count();
    Ok((ready, systems, policies))
}

/// What has not converged yet (at most 10 objects), with the condition that says why.
async fn unconverged(hub: &Client, fleet: &Fleet) -> Result<Vec<String>> {
    fn why(
        what: String,
        conds: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
        t: &str,
    ) -> Option<String> {
        if true_condition(conds, t) {
            return None;
        }
        let c = conds.and_then(|cs| cs.iter().find(|c| c.type_ == t));
        Some(match c {
            Some(c) => format!("{what} {t}={} {}: {}", c.status, c.reason, c.message),
            None => format!("{what} (no {t} condition)"),
        })
    }
    let prefix = format!("{}-", fleet.run);
    let lp = ListParams::default().labels(&format!("govcloud.io/faults={}", fleet.run));
    let mut out: Vec<String> = Api::<AgencyCloud>::all(hub.clone())
        .list(&lp)
        .await?
        .items
        .iter()
        .filter_map(|a| why(a.name_any(), a.status.as_ref().map(|s| &s.conditions), "Ready"))
        .collect();
    let test = ListParams::default().labels("govcloud.io/test=true");
    for s in Api::<HostedSystem>::all(hub.clone()).list(&test).await?.items {
        if s.namespace().is_some_and(|n| n.starts_with(&prefix)) {
            let what = format!(
                "{}/{} on {}",
                s.namespace().unwrap_or_default(),
                s.name_any(),
                s.status.as_ref().and_then(|s| s.cluster.clone()).unwrap_or_default()
            );
            out.extend(why(what, s.status.as_ref().map(|s| &s.conditions), "Available"));
        }
    }
    for p in Api::<BackupPolicy>::all(hub.clone()).list(&test).await?.items {
        if p.namespace().is_some_and(|n| n.starts_with(&prefix)) {
            let what = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
            out.extend(why(what, p.status.as_ref().map(|s| &s.conditions), "Ready"));
        }
    }
    out.truncate(10);
    Ok(out)
}

/// Waits until the whole fleet converged, creating children as namespaces appear.
async fn converge(hub: &Client, fleet: &Fleet, done: &mut BTreeSet<String>, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut last = (0, 0, 0);
    loop {
        let waiting = create_children(hub, fleet, done).await.unwrap_or(usize::MAX);
        if let Ok(c) = converged(hub, fleet).await {
            last = c;
            if waiting == 0 && c == (fleet.agencies.len(), fleet.systems.len(), fleet.policies.len()) {
                return Ok(start.elapsed());
            }
        }
        if start.elapsed() > timeout {
            let stuck = unconverged(hub, fleet)
                .await
                .unwrap_or_else(|e| vec![format!("(not listed: {e:#})")]);
            bail!(
                "not converged after {timeout:?}: {}/{} agencies Ready, {}/{} systems Available, {}/{} policies Ready; waiting: {}",
                last.0,
                fleet.agencies.len(),
                last.1,
                fleet.systems.len(),
                last.2,
                fleet.policies.len(),
                stuck.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The audit: duplicates, orphans, losses.

#[derive(Default, Debug)]
struct Audit {
    objects: usize,
    duplicates: Vec<String>,
    orphans: Vec<String>,
    lost: Vec<String>,
}

fn dynamic(c: &Client, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::all_with(c.clone(), &ApiResource::from_gvk_with_plural(&gvk, plural))
}

async fn audit(hub: &Client, fleet: &Fleet, canaries: &[(String, String)]) -> Result<Audit> {
    let mut out = Audit::default();
    // Where each agency is placed.
    let mut placed: BTreeMap<String, usize> = BTreeMap::new();
    let acs = Api::<AgencyCloud>::all(hub.clone())
        .list(&ListParams::default().labels(&format!("govcloud.io/faults={}", fleet.run)))
        .await?;
    let present: BTreeSet<String> = acs.items.iter().map(|a| a.name_any()).collect();
    for a in &fleet.agencies {
        if !present.contains(a) {
            out.lost.push(format!("AgencyCloud {a}"));
        }
    }
    for a in &acs.items {
        if let Some(n) = a
            .status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .and_then(|p| fleet.clusters.get(&p.cluster))
        {
            placed.insert(a.name_any(), *n);
        }
    }
    for (ns, name) in &fleet.systems {
        if Api::<HostedSystem>::namespaced(hub.clone(), ns)
            .get_opt(name)
            .await?
            .is_none()
        {
            out.lost.push(format!("HostedSystem {ns}/{name}"));
        }
    }
    for (ns, name) in &fleet.policies {
        if Api::<BackupPolicy>::namespaced(hub.clone(), ns)
            .get_opt(name)
            .await?
            .is_none()
        {
            out.lost.push(format!("BackupPolicy {ns}/{name}"));
        }
    }
    let ours = |labels: &BTreeMap<String, String>| -> Option<String> {
        labels
            .get("govcloud.io/agency")
            .filter(|a| fleet.agencies.contains(a))
            .cloned()
    };
    let kinds: [(&str, &str, &str, &str); 8] = [
        ("", "v1", "Namespace", "namespaces"),
        ("", "v1", "ResourceQuota", "resourcequotas"),
        ("", "v1", "LimitRange", "limitranges"),
        ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
        ("apps", "v1", "Deployment", "deployments"),
        ("", "v1", "Service", "services"),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        ),
    ];
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=govcloud-operator");
    // (kind, namespace, name) → clusters holding it
    let mut seen: BTreeMap<(String, String, String), Vec<usize>> = BTreeMap::new();
    for &member in fleet.clusters.values().collect::<BTreeSet<_>>() {
        let c = client(member).await?;
        for (g, v, k, p) in kinds {
            for o in dynamic(&c, g, v, k, p).list(&lp).await?.items {
                let Some(agency) = ours(o.labels()) else { continue };
                out.objects += 1;
                let key = (k.to_string(), o.namespace().unwrap_or_default(), o.name_any());
                seen.entry(key.clone()).or_default().push(member);
                if placed.get(&agency) != Some(&member) {
                    out.orphans
                        .push(format!("{k} {}/{} of {agency} on dc{member}", key.1, key.2));
                }
            }
        }
        // Velero Schedules of the fleet's policies.
        if let Ok(list) = dynamic(&c, "velero.io", "v1", "Schedule", "schedules").list(&lp).await {
            for o in list.items {
                let (Some(in_ns), Some(v)) = (o.labels().get(POLICY_NAMESPACE_LABEL), o.labels().get(POLICY_LABEL))
                else {
                    continue;
                };
                if let Some((ns, name)) = fleet
                    .policies
                    .iter()
                    .find(|(ns, name)| ns == in_ns && &govcloud_core::backup::policy_label_value(name) == v)
                {
                    out.objects += 1;
                    seen.entry(("Schedule".into(), ns.clone(), name.clone()))
                        .or_default()
                        .push(member);
                }
            }
        }
    }
    for ((k, ns, name), at) in &seen {
        if at.len() > 1 {
            out.duplicates.push(format!("{k} {ns}/{name} on dc{at:?}"));
        }
    }
    let has = |k: &str, ns: &str, name: &str| seen.contains_key(&(k.to_string(), ns.to_string(), name.to_string()));
    for a in &fleet.agencies {
        let ns = format!("{a}-prod");
        if !has("Namespace", "", &ns) {
            out.lost.push(format!("Namespace {ns}"));
        }
        if !has("ResourceQuota", &ns, "govcloud-quota") {
            out.lost.push(format!("ResourceQuota {ns}/govcloud-quota"));
        }
        if !has("LimitRange", &ns, "govcloud-defaults") {
            out.lost.push(format!("LimitRange {ns}/govcloud-defaults"));
        }
    }
    for (ns, name) in &fleet.systems {
        if !seen
            .keys()
            .any(|(k, n, d)| k == "Deployment" && n == ns && d.starts_with(name.as_str()))
        {
            out.lost.push(format!("Deployment of {ns}/{name}"));
        }
    }
    for (ns, name) in &fleet.policies {
        match seen.get(&("Schedule".to_string(), ns.clone(), name.clone())) {
            None => out.lost.push(format!("Velero Schedule of {ns}/{name}")),
            Some(at) if at.len() > 1 => {}
            Some(_) => {}
        }
    }
    // User data written into the agencies' namespaces before the faults.
    for (agency, ns) in canaries {
        let Some(member) = placed.get(agency) else {
            out.lost.push(format!("user data in {ns}: agency not placed"));
            continue;
        };
        let c = client(*member).await?;
        if Api::<ConfigMap>::namespaced(c.clone(), ns)
            .get_opt("user-data")
            .await?
            .is_none()
        {
            out.lost.push(format!("ConfigMap {ns}/user-data"));
        }
        if Api::<Secret>::namespaced(c, ns).get_opt("user-secret").await?.is_none() {
            out.lost.push(format!("Secret {ns}/user-secret"));
        }
    }
    Ok(out)
}

/// Removes the enum of spec.deletionPolicy from a CRD: a schema looser than the Rust type.
async fn loosen_deletion_policy(hub: &Client, name: &str) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(hub.clone());
    let crd = crds.get(name).await?;
    let mut v = serde_json::to_value(&crd)?;
    let props = v
        .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/deletionPolicy")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow!("{name} has no spec.deletionPolicy"))?;
    props.remove("enum");
    let loose: CustomResourceDefinition = serde_json::from_value(v)?;
    crds.replace(name, &PostParams::default(), &loose).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------

struct Row {
    fault: String,
    injected: usize,
    survived: bool,
    detail: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_survives_faults_without_loss() -> Result<()> {
    init_crypto();
    ensure_testbed()?;
    ensure!(
        testbed_clusters() >= 3,
        "the fault suite needs three testbed clusters (TESTBED_CLUSTERS=3)"
    );
    require_velero(2).await?;
    require_velero(3).await?;
    let suite_start = Instant::now();
    let hub = client(1).await?;
    install_crds(&hub).await?;
    ensure_namespace(&hub, OPERATOR_NAMESPACE).await?;
    let built = tokio::process::Command::new("cargo")
        .args(["build", "--quiet", "--bin", "govcloud-operator"])
        .current_dir(repo_root())
        .status()
        .await?;
    ensure!(built.success(), "cargo build --bin govcloud-operator failed");
    let kubeconfig = operator_kubeconfig_file("faults").await?;
    let total = env_usize("FAULTS_AGENCIES", 200).max(20);
    let kills = env_usize("FAULTS_KILLS", 20);
    let outage = Duration::from_secs(env_usize("FAULTS_OUTAGE_SECS", 60) as u64);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64);
    let leases: Api<Lease> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    let _ = leases.delete("govcloud-operator", &Default::default()).await;

    // Two member clusters in one region with a BackupLocation on an object store of our own.
    let run = unique_short("f");
    let group = unique("grp");
    let region = unique_short("rg");
    let mut clusters = BTreeMap::new();
    for member in [2, 3] {
        let name = create_test_cluster_in(&hub, &group, &region, "external", 3, member, None).await?;
        clusters.insert(name, member);
    }
    let store = ObjectStore::start(&unique("faults"))?;
    backup_location(&hub, &region, &region, "external", Store::Plain(&store)).await?;
    let mut fleet = Fleet {
        run: run.clone(),
        group,
        clusters,
        agencies: vec![],
        systems: vec![],
        policies: vec![],
        backup_every: env_usize("FAULTS_BACKUP_EVERY", 10).max(1),
    };
    let mut done = BTreeSet::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut op = start(&format!("{run}-single"), &kubeconfig, false)?;

    // Wave 0 (10 %): converged, then user data is written into its namespaces.
    let first = total / 10;
    create_wave(&hub, &mut fleet, 0, first).await?;
    converge(&hub, &fleet, &mut done, Duration::from_secs(300)).await?;
    let mut canaries = Vec::new();
    for a in fleet.agencies.clone() {
        let ns = format!("{a}-prod");
        let member = {
            let ac = Api::<AgencyCloud>::all(hub.clone()).get(&a).await?;
            let dcc = ac
                .status
                .and_then(|s| s.placement)
                .map(|p| p.cluster)
                .ok_or_else(|| anyhow!("{a} not placed"))?;
            *fleet
                .clusters
                .get(&dcc)
                .ok_or_else(|| anyhow!("{a} on unknown {dcc}"))?
        };
        let c = client(member).await?;
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "user-data"}, "data": {"records": "42"}}))?;
        Api::<ConfigMap>::namespaced(c.clone(), &ns)
            .create(&PostParams::default(), &cm)
            .await?;
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": "user-secret"}, "stringData": {"password": "x"}}))?;
        Api::<Secret>::namespaced(c, &ns)
            .create(&PostParams::default(), &s)
            .await?;
        canaries.push((a, ns));
    }

    // Phase 1: SIGKILLs during a rollout of half the fleet, one kill per slice.
    let kill_wave_end = first + (total - first) / 2;
    let per = ((kill_wave_end - first) / kills.max(1)).max(1);
    let mut kill_points = Vec::new();
    let mut next = first;
    let phase = Instant::now();
    for _ in 0..kills {
        let to = (next + per).min(kill_wave_end);
        if next < to {
            create_wave(&hub, &mut fleet, next, to).await?;
            next = to;
        }
        let _ = create_children(&hub, &fleet, &mut done).await;
        tokio::time::sleep(rng.millis(300, 3000)).await;
        op.kill();
        kill_points.push(format!("{:.1}s", phase.elapsed().as_secs_f64()));
        op = start(&format!("{run}-single"), &kubeconfig, false)?;
    }
    if next < kill_wave_end {
        create_wave(&hub, &mut fleet, next, kill_wave_end).await?;
    }
    let t = converge(&hub, &fleet, &mut done, Duration::from_secs(900)).await?;
    rows.push(Row {
        fault: "operator SIGKILLed at random points during the rollout, restarted at once".into(),
        injected: kills,
        survived: true,
        detail: format!(
            "{} agencies in flight; converged {:.0} s after the last kill",
            kill_wave_end - first,
            t.as_secs_f64()
        ),
    });

    // Phase 2: the hub's API server restarted mid-wave.
    let w = (total - kill_wave_end) / 4;
    let mut from = kill_wave_end;
    create_wave(&hub, &mut fleet, from, from + w).await?;
    from += w;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down = Instant::now();
    testbed(&["stop-cluster", "dc1"]).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    testbed(&["start-cluster", "dc1"]).await?;
    let hub_down = down.elapsed();
    let hub = client(1).await?;
    let op_alive = !op.exited();
    if !op_alive {
        op = start(&format!("{run}-single"), &kubeconfig, false)?;
    }
    let t = converge(&hub, &fleet, &mut done, Duration::from_secs(600)).await?;
    rows.push(Row {
        fault: "hub API server stopped and started mid-wave".into(),
        injected: 1,
        survived: true,
        detail: format!(
            "down {:.0} s; the operator {}; converged {:.0} s after",
            hub_down.as_secs_f64(),
            if op_alive {
                "kept running and reconnected"
            } else {
                "exited and was restarted"
            },
            t.as_secs_f64()
        ),
    });

    // Phase 3: a member stopped for `outage` mid-wave.
    create_wave(&hub, &mut fleet, from, from + w).await?;
    from += w;
    let (dc3_name, _) = fleet
        .clusters
        .iter()
        .find(|(_, n)| **n == 3)
        .map(|(k, v)| (k.clone(), *v))
        .ok_or_else(|| anyhow!("no dc3"))?;
    testbed(&["stop-cluster", "dc3"]).await?;
    let stopped = Instant::now();
    let dccs: Api<DataCenterCluster> = Api::all(hub.clone());
    let reported = wait_for("dc3 reported unreachable", outage, || async {
        let d = dccs.get(&dc3_name).await?;
        Ok(d.status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == "Reachable" && c.status == "False")
            })
            .map(|c| c.message.clone()))
    })
    .await;
    let seen_after = stopped.elapsed();
    if let Some(rest) = outage.checked_sub(stopped.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    testbed(&["start-cluster", "dc3"]).await?;
    let t = converge(&hub, &fleet, &mut done, Duration::from_secs(600)).await?;
    rows.push(Row {
        fault: format!("member cluster stopped for {} s mid-wave", outage.as_secs()),
        injected: 1,
        survived: reported.is_ok(),
        detail: match &reported {
            Ok(msg) => format!(
                "Reachable=False after {:.0} s ({}); converged {:.0} s after the restart",
                seen_after.as_secs_f64(),
                msg.chars().take(80).collect::<String>(),
                t.as_secs_f64()
            ),
            Err(e) => format!("NOT reported: {e:#}"),
        },
    });

    // Phase 4: leader failover mid-wave (two replicas).
    op.kill();
    let _ = leases.delete("govcloud-operator", &Default::default()).await;
    let mut a = start(&format!("{run}-a"), &kubeconfig, true)?;
    let holder = || async {
        leases
            .get_opt("govcloud-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    wait_for("A leads", Duration::from_secs(60), || async {
        Ok((holder().await.as_deref() == Some(a.identity.as_str())).then_some(()))
    })
    .await?;
    let b = start(&format!("{run}-b"), &kubeconfig, true)?;
    wait_for("B serves metrics", Duration::from_secs(30), || async {
        Ok(metrics(&b).await)
    })
    .await?;
    create_wave(&hub, &mut fleet, from, total).await?;
    tokio::time::sleep(rng.millis(500, 3000)).await;
    let standby_writes = metric_sum(
        &metrics(&b).await.unwrap_or_default(),
        "govcloud_controller_child_applies_total",
        "",
    );
    let killed = Instant::now();
    a.kill();
    wait_for("B leads", Duration::from_secs(30), || async {
        Ok((holder().await.as_deref() == Some(b.identity.as_str())).then_some(()))
    })
    .await?;
    let failover = killed.elapsed();
    let t = converge(&hub, &fleet, &mut done, Duration::from_secs(600)).await?;
    rows.push(Row {
        fault: "leader SIGKILLed mid-wave (two replicas, leader election)".into(),
        injected: 1,
        survived: standby_writes == 0.0 && failover <= Duration::from_secs(15),
        detail: format!(
            "standby wrote {} objects before taking over; lease taken over in {:.1} s; converged {:.0} s after",
            standby_writes as u64,
            failover.as_secs_f64(),
            t.as_secs_f64()
        ),
    });
    drop(a);
    let op = b;

    // Phase 5: a conflicting writer on a ResourceQuota the operator owns.
    let victim = fleet.agencies[0].clone();
    let vns = format!("{victim}-prod");
    let member = {
        let ac = Api::<AgencyCloud>::all(hub.clone()).get(&victim).await?;
        let dcc = ac
            .status
            .and_then(|s| s.placement)
            .map(|p| p.cluster)
            .unwrap_or_default();
        *fleet.clusters.get(&dcc).ok_or_else(|| anyhow!("{victim} not placed"))?
    };
    let mc = client(member).await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(mc.clone(), &vns);
    let before = quotas.get("govcloud-quota").await?;
    let cpu_before = before
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .and_then(|h| h.get("requests.cpu"))
        .map(|q| q.0.clone())
        .unwrap_or_default();
    let intruder = PatchParams::apply("intruder").force();
    quotas
        .patch(
            "govcloud-quota",
            &intruder,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {"name": "govcloud-quota", "labels": {"intruder.example/owned": "yes"}},
                "spec": {"hard": {"requests.cpu": "999", "count/configmaps": "77"}}
            })),
        )
        .await?;
    let restored = wait_for(
        "the operator restores requests.cpu",
        Duration::from_secs(60),
        || async {
            let q = quotas.get("govcloud-quota").await?;
            let hard = q.spec.and_then(|s| s.hard).unwrap_or_default();
            Ok((hard.get("requests.cpu").map(|q| q.0.as_str()) == Some(cpu_before.as_str())).then_some(hard))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = quotas.get("govcloud-quota").await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let later = quotas.get("govcloud-quota").await?;
    let kept_theirs = later
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .and_then(|h| h.get("count/configmaps"))
        .is_some_and(|q| q.0 == "77")
        && later.labels().get("intruder.example/owned").is_some_and(|v| v == "yes");
    let quiet = settled.resource_version() == later.resource_version();
    rows.push(Row {
        fault: "conflicting writer takes a managed field (forced server-side apply)".into(),
        injected: 1,
        survived: restored.is_ok() && kept_theirs && quiet,
        detail: format!(
            "requests.cpu {}; the writer's own field and label {}; {}",
            if restored.is_ok() {
                format!("restored to {cpu_before}")
            } else {
                "NOT restored".into()
            },
            if kept_theirs { "left alone" } else { "REMOVED" },
            if quiet {
                "no further writes (no fight)"
            } else {
                "the object kept changing"
            }
        ),
    });

    // Phase 6: an AgencyCloud written while the schema was looser.
    let bad = unique_short("old");
    let crd_name = "agencyclouds.govcloud.io";
    let loosened = loosen_deletion_policy(&hub, crd_name).await;
    let mut v = agency_cloud(&bad, 2, "external", &[("prod", "100m", "128Mi")], &fleet.group);
    v["spec"]["deletionPolicy"] = json!("Archive");
    let created = match loosened {
        Ok(()) => {
            wait_for(
                "the looser schema accepts the old object",
                Duration::from_secs(30),
                || async {
                    let obj: DynamicObject = serde_json::from_value(v.clone())?;
                    match dynamic(&hub, "govcloud.io", "v1alpha1", "AgencyCloud", "agencyclouds")
                        .create(&PostParams::default(), &obj)
                        .await
                    {
                        Ok(_) => Ok(Some(())),
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Some(())),
                        Err(kube::Error::Api(s)) if s.code == 422 => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                },
            )
            .await
        }
        Err(e) => Err(e),
    };
    // The schema tightens again (the operator's own CRD), whatever happened.
    let tightened = async {
        for (_, crd) in govcloud_api::all_crds() {
            if crd.metadata.name.as_deref() == Some(crd_name) {
                apply_crd(&hub, &crd).await?;
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let mut op = op;
    let phase6 = async {
        created?;
        tightened?;
        // The others still reconcile: a new agency becomes Ready, before and after a restart.
        let m = wait_for("the unparseable object is counted", Duration::from_secs(60), || async {
            let m = metrics(&op).await.unwrap_or_default();
            Ok((metric_sum(&m, "govcloud_unparseable_objects", "AgencyCloud") >= 1.0).then_some(()))
        })
        .await;
        let fresh1 = fleet.agencies.len();
        create_wave(&hub, &mut fleet, fresh1, fresh1 + 1).await?;
        let t1 = converge(&hub, &fleet, &mut done, Duration::from_secs(120)).await;
        op.kill();
        let _ = leases.delete("govcloud-operator", &Default::default()).await;
        op = start(&format!("{run}-single"), &kubeconfig, false)?;
        let fresh2 = fleet.agencies.len();
        create_wave(&hub, &mut fleet, fresh2, fresh2 + 1).await?;
        let t2 = converge(&hub, &fleet, &mut done, Duration::from_secs(120)).await;
        let event = Api::<k8s_openapi::api::core::v1::Event>::all(hub.clone())
            .list(&ListParams::default().fields(&format!("involvedObject.name={bad}")))
            .await?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Unparseable"))
            .and_then(|e| e.message);
        let m2 = metrics(&op).await.unwrap_or_default();
        let counted_after_restart = metric_sum(&m2, "govcloud_unparseable_objects", "AgencyCloud") >= 1.0;
        Ok::<_, anyhow::Error>(Row {
            fault: "an AgencyCloud the operator cannot parse (written under a looser schema)".into(),
            injected: 1,
            survived: m.is_ok() && t1.is_ok() && t2.is_ok() && event.is_some() && counted_after_restart,
            detail: format!(
                "metric {}; event {:?}; new agencies Ready while it exists: {} (watch), {} (after a restart: fresh list)",
                if m.is_ok() && counted_after_restart { "counts it" } else { "MISSING" },
                event.as_deref().map(|n| n.chars().take(110).collect::<String>()).unwrap_or_else(|| "MISSING".into()),
                t1.as_ref().map(|d| format!("{:.0} s", d.as_secs_f64())).unwrap_or_else(|e| format!("NO ({e:#})")),
                t2.as_ref().map(|d| format!("{:.0} s", d.as_secs_f64())).unwrap_or_else(|e| format!("NO ({e:#})")),
            ),
        })
    }
    .await;
    // Remove the bad object before anything else can fail (typed lists elsewhere cannot read it).
    let dyn_ac = dynamic(&hub, "govcloud.io", "v1alpha1", "AgencyCloud", "agencyclouds");
    let _ = dyn_ac.delete(&bad, &Default::default()).await;
    let _ = dyn_ac
        .patch(
            &bad,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    rows.push(phase6?);

    // The audit.
    let result = audit(&hub, &fleet, &canaries).await?;
    let faults_total: usize = rows.iter().map(|r| r.injected).sum();
    let survived: usize = rows.iter().filter(|r| r.survived).map(|r| r.injected).sum();
    println!(
        "\nfault suite: {} agencies, {} systems, {} backup policies on 2 members",
        fleet.agencies.len(),
        fleet.systems.len(),
        fleet.policies.len()
    );
    println!("{:<75} {:>8} {:>9}  detail", "fault", "injected", "survived");
    for r in &rows {
        println!(
            "{:<75} {:>8} {:>9}  {}",
            r.fault,
            r.injected,
            if r.survived { "yes" } else { "NO" },
            r.detail
        );
    }
    println!(
        "objects audited on the members: {}; duplicates {}; orphans {}; lost {}; suite {:.0} s",
        result.objects,
        result.duplicates.len(),
        result.orphans.len(),
        result.lost.len(),
        suite_start.elapsed().as_secs_f64()
    );
    std::fs::write(
        figures_dir().join("faults.json"),
        serde_json::to_string_pretty(&json!({
            "agencies": fleet.agencies.len(), "systems": fleet.systems.len(), "policies": fleet.policies.len(),
            "faults_injected": faults_total, "faults_survived": survived,
            "rows": rows.iter().map(|r| json!({"fault": r.fault, "injected": r.injected, "survived": r.survived, "detail": r.detail})).collect::<Vec<_>>(),
            "kill_points": kill_points,
            "objects_audited": result.objects,
            "duplicates": result.duplicates.len(), "orphans": result.orphans.len(), "lost": result.lost.len(),
            "seconds": suite_start.elapsed().as_secs(),
        }))?,
    )?;

    // Clean up while the operator still runs: the fleet's agencies (Delete policy) and the
    // test's location.
    let acs: Api<AgencyCloud> = Api::all(hub.clone());
    for a in &fleet.agencies {
        let _ = acs.delete(a, &Default::default()).await;
    }
    let lp = ListParams::default().labels(&format!("govcloud.io/faults={}", fleet.run));
    let _ = wait_for("the fleet is removed", Duration::from_secs(300), || async {
        Ok(acs.list(&lp).await?.items.is_empty().then_some(()))
    })
    .await;
    drop(op);
    let _ = Api::<govcloud_api::BackupLocation>::all(hub.clone())
        .delete(&region, &Default::default())
        .await;
    let mut problems = Vec::new();
    for r in rows.iter().filter(|r| !r.survived) {
        problems.push(format!("{}: {}", r.fault, r.detail));
    }
    if !result.duplicates.is_empty() {
        problems.push(format!("duplicates: {:?}", result.duplicates));
    }
    if !result.orphans.is_empty() {
        problems.push(format!("orphans: {:?}", result.orphans));
    }
    if !result.lost.is_empty() {
        problems.push(format!("lost: {:?}", result.lost));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}
