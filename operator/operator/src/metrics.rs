//! Prometheus metrics of the operator (`/metrics`).
//!
//! Names follow `govcloud_<subsystem>_<name>_<unit>`; operator-internal metrics carry no
//! per-object labels. Per-cluster gauges are bounded by the number of registered clusters.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// All metrics, registered once in one registry.
#[derive(Clone)]
pub struct Metrics {
    /// The registry served on `/metrics` (the operator's own metrics: bounded series).
    pub registry: Registry,
    /// The per-object gauge vectors (per agency, environment or backup policy: tens of
    /// thousands of series at the national scale), rendered one at a time (see `render`).
    per_object: std::sync::Arc<Vec<Box<dyn prometheus::core::Collector>>>,
    /// Length of the last rendering, to size the next one's buffer at once.
    last_len: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    /// 1 when a member cluster answers, else 0; labels cluster, region, zone.
    pub cluster_reachable: IntGaugeVec,
    /// `govcloud_cluster_probe_timestamp_seconds{cluster,region,zone}`: when the cluster was
    /// last probed (reachable or not). The DataCenterCluster status is written only on a change.
    pub cluster_probe_timestamp: prometheus::GaugeVec,
    /// Allocatable CPU of a cluster in millicores; labels cluster, region, zone.
    pub cluster_allocatable_cpu: IntGaugeVec,
    /// Allocatable memory of a cluster in bytes; labels cluster, region, zone.
    pub cluster_allocatable_memory: IntGaugeVec,
    /// Server-side applies of child objects, per controller.
    applies: IntCounterVec,
    /// The AgencyCloud store (set when the AgencyCloud controller starts):
    /// `govcloud_agency_quota{agency,environment,resource,kind}` is written from the agencies'
    /// status at each scrape, not kept as gauges — eight series per environment are
    /// 48,000 at the national scale, which as gauge children took megabytes of label sets.
    pub agencies: std::sync::Arc<std::sync::OnceLock<kube::runtime::reflector::Store<govcloud_api::AgencyCloud>>>,
    /// `govcloud_leader`: 1 while this replica runs the controllers.
    pub leader: prometheus::IntGauge,
    /// `govcloud_unparseable_objects{kind}`: objects the operator cannot read (they do not
    /// fit the current schema); they are left alone and reported with a Warning event.
    pub unparseable: IntGaugeVec,
    /// `govcloud_member_cache_objects{cluster,kind}` and `govcloud_member_cache_bytes{cluster,kind}`:
    /// what the operator holds of each cluster's objects (bytes of owned-field hashes or JSON, and status JSON).
    pub cache_objects: IntGaugeVec,
    /// See `cache_objects`.
    pub cache_bytes: IntGaugeVec,
    /// `govcloud_cluster_resource{cluster,region,zone,resource,kind}`: capacity, allocatable,
    /// allocated (placed quotas) and used (quota usage).
    pub cluster_resource: prometheus::GaugeVec,
    /// The HostedSystem store (set when the shared watches start): with `agencies`,
    /// `govcloud_agency_systems{agency,environment,state}` (total and ready systems) and
    /// `govcloud_agency_hosted_systems{agency,migration_phase}` are written at each scrape
    /// (see [`agency_systems_text`]), not kept as gauges.
    pub systems: std::sync::Arc<std::sync::OnceLock<kube::runtime::reflector::Store<govcloud_api::HostedSystem>>>,
    /// `govcloud_agency_efficiency{agency,environment,resource}`: actual use ÷ requested.
    pub agency_efficiency: prometheus::GaugeVec,
    /// `govcloud_backup_last_success_timestamp_seconds{agency,namespace,policy}`.
    pub backup_last_success: IntGaugeVec,
    /// `govcloud_backup_recovery_point_age_seconds{agency,namespace,policy}`, computed at scrape.
    pub backup_age: IntGaugeVec,
    /// `govcloud_backup_rpo_seconds{agency,namespace,policy}`.
    pub backup_rpo: IntGaugeVec,
    /// `govcloud_backup_rpo_met{agency,namespace,policy}` (1/0).
    pub backup_rpo_met: IntGaugeVec,
    /// `govcloud_backup_offsite_compliant{agency,namespace,policy}` (1/0).
    pub backup_offsite: IntGaugeVec,
    /// `govcloud_backup_retained{agency,namespace,policy}`.
    pub backup_retained: IntGaugeVec,
    /// `govcloud_backup_drill_passed{agency,namespace,policy}` (1 passed, 0 failed).
    pub backup_drill_passed: IntGaugeVec,
    /// `govcloud_backup_drill_timestamp_seconds{agency,namespace,policy}`.
    pub backup_drill_time: IntGaugeVec,
    /// `govcloud_backup_drill_overdue{agency,namespace,policy}` (1 when the level's drill
    /// window passed without a passed drill).
    pub backup_drill_overdue: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn must<T>(r: Result<T, prometheus::Error>, what: &str) -> T {
    match r {
        Ok(v) => v,
        // Metric definitions are static; a failure here is a programming error caught by tests.
        Err(e) => panic!("metric definition {what} is invalid: {e}"),
    }
}

/// Creates an `IntGaugeVec` and registers it.
fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = must(IntGaugeVec::new(Opts::new(name, help), labels), name);
    must(registry.register(Box::new(g.clone())), name);
    g
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = must(
            IntCounterVec::new(
                Opts::new(
                    "govcloud_controller_reconciles_total",
                    "Reconciles run, per controller.",
                ),
                &["controller"],
            ),
            "reconciles",
        );
        let errors = must(
            IntCounterVec::new(
                Opts::new(
                    "govcloud_controller_reconcile_errors_total",
                    "Reconciles that failed, per controller and error category.",
                ),
                &["controller", "category"],
            ),
            "errors",
        );
        let duration = must(
            HistogramVec::new(
                HistogramOpts::new(
                    "govcloud_controller_reconcile_duration_seconds",
                    "Time spent in one reconcile, per controller.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["controller"],
            ),
            "duration",
        );
        let labels = &["cluster", "region", "zone"];
        let cluster_reachable = must(
            IntGaugeVec::new(
                Opts::new(
                    "govcloud_cluster_reachable",
                    "1 when the member cluster's API server answers.",
                ),
                labels,
            ),
            "reachable",
        );
        let cluster_probe_timestamp = must(
            prometheus::GaugeVec::new(
                Opts::new(
                    "govcloud_cluster_probe_timestamp_seconds",
                    "When the operator last probed the member cluster (Unix seconds), reachable or not; alert when it falls behind the probe interval.",
                ),
                labels,
            ),
            "probe timestamp",
        );
        must(
            registry.register(Box::new(cluster_probe_timestamp.clone())),
            "register probe timestamp",
        );
        let cluster_allocatable_cpu = must(
            IntGaugeVec::new(
                Opts::new(
                    "govcloud_cluster_allocatable_cpu_millicores",
                    "Allocatable CPU over all nodes of a cluster.",
                ),
                labels,
            ),
            "cpu",
        );
        let cluster_allocatable_memory = must(
            IntGaugeVec::new(
                Opts::new(
                    "govcloud_cluster_allocatable_memory_bytes",
                    "Allocatable memory over all nodes of a cluster.",
                ),
                labels,
            ),
            "memory",
        );
        let mut per_object: Vec<Box<dyn prometheus::core::Collector>> = Vec::new();
        let applies = must(
            IntCounterVec::new(
                Opts::new(
                    "govcloud_controller_child_applies_total",
                    "Server-side applies of child objects (skipped when the cached live object already matches).",
                ),
                &["controller"],
            ),
            "applies",
        );
        for c in [&reconciles, &errors, &applies] {
            must(registry.register(Box::new(c.clone())), "register counter");
        }
        must(registry.register(Box::new(duration.clone())), "register histogram");
        for g in [
            &cluster_reachable,
            &cluster_allocatable_cpu,
            &cluster_allocatable_memory,
        ] {
            must(registry.register(Box::new(g.clone())), "register gauge");
        }
        let policy_labels = &["agency", "namespace", "policy"];
        let mut gauge = |name: &str, help: &str| {
            let g = must(IntGaugeVec::new(Opts::new(name, help), policy_labels), "backup gauge");
            per_object.push(Box::new(g.clone()));
            g
        };
        let backup_last_success = gauge(
            "govcloud_backup_last_success_timestamp_seconds",
            "Completion time (Unix seconds) of the newest successful backup of a BackupPolicy: the recovery point.",
        );
        let backup_age = gauge(
            "govcloud_backup_recovery_point_age_seconds",
            "Age of the newest successful backup of a BackupPolicy at scrape time.",
        );
        let backup_rpo = gauge(
            "govcloud_backup_rpo_seconds",
            "Recovery point objective in force for a BackupPolicy.",
        );
        let backup_rpo_met = gauge(
            "govcloud_backup_rpo_met",
            "1 when the newest successful backup is within the RPO, else 0.",
        );
        let backup_offsite = gauge(
            "govcloud_backup_offsite_compliant",
            "1 when the off-site copy required by the security level exists (or none is required), else 0.",
        );
        let backup_retained = gauge(
            "govcloud_backup_retained",
            "Backups a BackupPolicy keeps (all locations).",
        );
        let backup_drill_passed = gauge(
            "govcloud_backup_drill_passed",
            "Result of the newest finished restore drill: 1 passed, 0 failed.",
        );
        let backup_drill_time = gauge(
            "govcloud_backup_drill_timestamp_seconds",
            "When the newest finished restore drill ended (Unix seconds).",
        );
        let backup_drill_overdue = gauge(
            "govcloud_backup_drill_overdue",
            "1 when the security level's drill window (366/183/92 days at levels 2/3/4) passed without a passed restore drill, else 0.",
        );
        let cluster_resource = must(
            prometheus::GaugeVec::new(
                Opts::new(
                    "govcloud_cluster_resource",
                    "Per cluster and resource (cpu in cores; memory, storage in bytes; pods): kind=capacity and allocatable from the nodes, allocated = quotas placed on the cluster, used = the agencies' quota usage.",
                ),
                &["cluster", "region", "zone", "resource", "kind"],
            ),
            "cluster_resource",
        );
        must(
            registry.register(Box::new(cluster_resource.clone())),
            "register cluster resource",
        );
        let agency_efficiency = must(
            prometheus::GaugeVec::new(
                Opts::new(
                    "govcloud_agency_efficiency",
                    "Actual use ÷ requested per agency environment (resource=cpu), from the Prometheus named in ConfigMap govcloud-utilization.",
                ),
                &["agency", "environment", "resource"],
            ),
            "agency_efficiency",
        );
        per_object.push(Box::new(agency_efficiency.clone()));
        let leader = must(
            prometheus::IntGauge::new(
                "govcloud_leader",
                "1 while this replica holds the leader lease and runs the controllers, 0 while it waits.",
            ),
            "leader",
        );
        must(registry.register(Box::new(leader.clone())), "register leader");
        let unparseable = int_gauge_vec(
            &registry,
            "govcloud_unparseable_objects",
            "Objects the operator cannot read because they do not fit the current schema (left alone; see their Warning events), by kind.",
            &["kind"],
        );
        let cache_objects = int_gauge_vec(
            &registry,
            "govcloud_member_cache_objects",
            "Objects of each member cluster (and the hub, cluster=\"hub\") the operator keeps in memory, by kind.",
            &["cluster", "kind"],
        );
        let cache_bytes = int_gauge_vec(
            &registry,
            "govcloud_member_cache_bytes",
            "Bytes the operator keeps of each member cluster's objects (a hash or the JSON of the fields it owns, and the status it reads), by kind.",
            &["cluster", "kind"],
        );
        Metrics {
            leader,
            unparseable,
            cache_objects,
            cache_bytes,
            agency_efficiency,
            cluster_resource,
            backup_last_success,
            backup_age,
            backup_rpo,
            backup_rpo_met,
            backup_offsite,
            backup_retained,
            backup_drill_passed,
            backup_drill_time,
            backup_drill_overdue,
            registry,
            per_object: std::sync::Arc::new(per_object),
            last_len: Default::default(),
            reconciles,
            errors,
            duration,
            cluster_reachable,
            cluster_probe_timestamp,
            cluster_allocatable_cpu,
            cluster_allocatable_memory,
            agencies: Default::default(),
            systems: Default::default(),
            applies,
        }
    }

    /// Removes the per-cluster gauges (`govcloud_cluster_reachable`, `…_probe_timestamp_seconds`,
    /// `…_allocatable_*`) of clusters not in `current` (`(cluster, region, zone)`): a
    /// deregistered cluster, or one now in another region or zone, leaves no stale series
    /// (which would keep an alert on it firing until the operator restarts).
    pub fn forget_clusters_except(&self, current: &std::collections::HashSet<(String, String, String)>) {
        fn retain<T: prometheus::core::MetricVecBuilder>(
            vec: &prometheus::core::MetricVec<T>,
            current: &std::collections::HashSet<(String, String, String)>,
        ) {
            use prometheus::core::Collector;
            for family in vec.collect() {
                for m in family.get_metric() {
                    let label = |n: &str| {
                        m.get_label()
                            .iter()
                            .find(|l| l.name() == n)
                            .map(|l| l.value().to_string())
                            .unwrap_or_default()
                    };
                    let key = (label("cluster"), label("region"), label("zone"));
                    if !current.contains(&key) {
                        let _ = vec.remove_label_values(&[&key.0, &key.1, &key.2]);
                    }
                }
            }
        }
        retain(&self.cluster_reachable, current);
        retain(&self.cluster_probe_timestamp, current);
        retain(&self.cluster_allocatable_cpu, current);
        retain(&self.cluster_allocatable_memory, current);
    }

    /// Counts one server-side apply of a child object.
    pub fn child_applied(&self, controller: &'static str) {
        self.applies.with_label_values(&[controller]).inc();
    }

    /// Starts timing a reconcile; the duration is observed when the guard drops.
    pub fn reconcile_started(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.with_label_values(&[controller]),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, controller: &'static str, category: &'static str) {
        self.errors.with_label_values(&[controller, category]).inc();
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        self.render_only(&[])
    }

    /// Renders the families named in `names` (all of them when empty): `/metrics?name[]=…`,
    /// for a poller that needs a counter or two, not the fleet's 75,000 per-object series
    /// (7 MB, about 65 ms of CPU per rendering at the national scale).
    pub fn render_only(&self, names: &[String]) -> String {
        let want = |n: &str| names.is_empty() || names.iter().any(|x| x == n);
        // Recovery-point ages move with the clock: derive them from the timestamps now.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let ages = if want("govcloud_backup_recovery_point_age_seconds") {
            prometheus::core::Collector::collect(&self.backup_last_success)
        } else {
            Vec::new()
        };
        for family in ages {
            for m in family.get_metric() {
                let labels: Vec<&str> = m.get_label().iter().map(|l| l.value()).collect();
                if labels.len() == 3 {
                    let ts = m.get_gauge().get_value() as i64;
                    self.backup_age.with_label_values(&labels).set((now - ts).max(0));
                }
            }
        }
        // The buffer sized for the whole text at once (growing it by doubling held two
        // copies), and the per-object families encoded one vector at a time: gathering
        // everything first held every series as a protobuf message besides the text — about
        // 20 MiB more at each scrape of the national fleet's 75,000 series.
        let encoder = prometheus::TextEncoder::new();
        let last = self.last_len.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = String::with_capacity(last + last / 16);
        let encode = |families: &[prometheus::proto::MetricFamily], out: &mut String| {
            if let Err(e) = encoder.encode_utf8(families, out) {
                out.push_str(&format!("# error encoding metrics: {e}\n"));
            }
        };
        let mut families = self.registry.gather();
        families.retain(|f| want(f.name()));
        encode(&families, &mut out);
        for c in self.per_object.iter() {
            // Not collected at all when not asked for (collecting builds every series).
            if !c.desc().iter().any(|d| want(&d.fq_name)) {
                continue;
            }
            let mut families = c.collect();
            // As the registry's gather: a vector without series is left out.
            families.retain(|f| !f.get_metric().is_empty() && want(f.name()));
            encode(&families, &mut out);
        }
        if let Some(store) = self.agencies.get() {
            let agencies = store.state();
            if want("govcloud_agency_quota") {
                agency_quota_text(agencies.iter().map(|a| &**a), &mut out);
            }
            let (states, phases) = (want("govcloud_agency_systems"), want("govcloud_agency_hosted_systems"));
            if let (Some(systems), true) = (self.systems.get(), states || phases) {
                agency_systems_text(&agencies, &systems.state(), (states, phases), &mut out);
            }
        }
        self.last_len.store(out.len(), std::sync::atomic::Ordering::Relaxed);
        out
    }
}

/// The resources of `govcloud_agency_quota` and their ResourceQuota keys.
const QUOTA_RESOURCES: [(&str, &str); 4] = [
    ("cpu", "requests.cpu"),
    ("memory", "requests.memory"),
    ("storage", "requests.storage"),
    ("pods", "pods"),
];

/// Appends `govcloud_agency_quota` (text exposition format) for the environments in the
/// agencies' status: hard and used per resource, cpu in cores, memory and storage in bytes,
/// pods as a count; 0 for a resource the quota does not name.
fn agency_quota_text<'a>(agencies: impl Iterator<Item = &'a govcloud_api::AgencyCloud>, out: &mut String) {
    use kube::ResourceExt as _;
    use std::fmt::Write as _;
    out.push_str(
        "# HELP govcloud_agency_quota Quota of an agency environment: kind=hard is the limit, kind=used the current requests (cpu in cores, memory and storage in bytes, pods as a count).\n\
         # TYPE govcloud_agency_quota gauge\n",
    );
    for ac in agencies {
        let Some(status) = &ac.status else { continue };
        let name = ac.name_any();
        for env in &status.environments {
            for (res, key) in QUOTA_RESOURCES {
                for (kind, map) in [("hard", &env.hard), ("used", &env.used)] {
                    let v = map
                        .get(key)
                        .and_then(|q| govcloud_core::quantity::Milli::parse(q).ok())
                        .map(|m| m.0 as f64 / 1000.0)
                        .unwrap_or(0.0);
                    let _ = writeln!(
                        out,
                        "govcloud_agency_quota{{agency=\"{}\",environment=\"{}\",resource=\"{res}\",kind=\"{kind}\"}} {v}",
                        esc(&name),
                        esc(&env.name)
                    );
                }
            }
        }
    }
}

/// A label value escaped as the exposition format asks (`\`, `"`, newline).
fn esc(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
    } else {
        v.into()
    }
}

/// The label values of `govcloud_agency_hosted_systems`: `none` (no migration) and every
/// `spec.migration.phase`.
const MIGRATION_PHASES: [&str; 7] = [
    "none",
    "Planned",
    "Syncing",
    "CutoverReady",
    "CutOver",
    "Decommissioned",
    "RolledBack",
];

/// Index in [`MIGRATION_PHASES`] of a system's migration phase.
fn migration_phase(s: &govcloud_api::HostedSystem) -> usize {
    use govcloud_api::hosted::MigrationPhase as P;
    match s.spec.migration.as_ref().map(|m| m.phase) {
        None => 0,
        Some(P::Planned) => 1,
        Some(P::Syncing) => 2,
        Some(P::CutoverReady) => 3,
        Some(P::CutOver) => 4,
        Some(P::Decommissioned) => 5,
        Some(P::RolledBack) => 6,
    }
}

/// Appends `govcloud_agency_systems{agency,environment,state}` (state=total and state=ready,
/// i.e. Available) and `govcloud_agency_hosted_systems{agency,migration_phase}` (systems not
/// being deleted, by migration phase; `none` = not migrating) — those of the two asked for
/// in `(states, with_phases)` — for the environments in the agencies' status, in one pass
/// over the systems. As gauges, refreshed every 10 s, their 26,000 series at the national
/// scale held their label sets twice over and were rebuilt at each refresh.
pub fn agency_systems_text(
    agencies: &[std::sync::Arc<govcloud_api::AgencyCloud>],
    systems: &[std::sync::Arc<govcloud_api::HostedSystem>],
    (states, with_phases): (bool, bool),
    out: &mut String,
) {
    use kube::ResourceExt as _;
    use std::collections::HashMap;
    use std::fmt::Write as _;
    // (total, ready) and, for systems not being deleted, the count per migration phase.
    let mut by_ns: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut phases: HashMap<&str, [i64; MIGRATION_PHASES.len()]> = HashMap::new();
    for s in systems {
        let Some(ns) = s.metadata.namespace.as_deref() else {
            continue;
        };
        let ok = s.status.as_ref().is_some_and(|st| {
            st.conditions
                .iter()
                .any(|c| c.type_ == govcloud_api::conditions::hosted::AVAILABLE && c.status == "True")
        });
        let e = by_ns.entry(ns).or_default();
        e.0 += 1;
        e.1 += i64::from(ok);
        if s.metadata.deletion_timestamp.is_none() {
            phases.entry(ns).or_default()[migration_phase(s)] += 1;
        }
    }
    if states {
        out.push_str(
            "# HELP govcloud_agency_systems Hosted systems per agency environment: state=total and state=ready (Available).\n\
             # TYPE govcloud_agency_systems gauge\n",
        );
        for a in agencies {
            let name = a.name_any();
            for env in a.status.iter().flat_map(|s| s.environments.iter()) {
                let (total, ready) = by_ns.get(env.namespace.as_str()).copied().unwrap_or_default();
                for (state, n) in [("total", total), ("ready", ready)] {
                    let _ = writeln!(
                        out,
                        "govcloud_agency_systems{{agency=\"{}\",environment=\"{}\",state=\"{state}\"}} {n}",
                        esc(&name),
                        esc(&env.name)
                    );
                }
            }
        }
    }
    if !with_phases {
        return;
    }
    out.push_str(
        "# HELP govcloud_agency_hosted_systems Hosted systems per agency by migration phase (none = not migrating): planned vs migrated.\n\
         # TYPE govcloud_agency_hosted_systems gauge\n",
    );
    for a in agencies {
        let name = a.name_any();
        let mut sums = [0i64; MIGRATION_PHASES.len()];
        for env in a.status.iter().flat_map(|s| s.environments.iter()) {
            if let Some(p) = phases.get(env.namespace.as_str()) {
                for (sum, n) in sums.iter_mut().zip(p) {
                    *sum += n;
                }
            }
        }
        for (phase, n) in MIGRATION_PHASES.iter().zip(sums) {
            let _ = writeln!(
                out,
                "govcloud_agency_hosted_systems{{agency=\"{}\",migration_phase=\"{phase}\"}} {n}",
                esc(&name)
            );
        }
    }
}

/// Observes the reconcile duration on drop.
pub struct ReconcileTimer {
    start: Instant,
    histogram: prometheus::Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use govcloud_api::AgencyCloud;
    use govcloud_api::agency::{AgencyCloudStatus, EnvironmentStatus};

    #[test]
    fn gauges_of_clusters_gone_are_removed() {
        let m = super::Metrics::default();
        for (c, zone) in [("dc1", "internal"), ("dc2", "external")] {
            m.cluster_reachable.with_label_values(&[c, "beijing", zone]).set(1);
            m.cluster_probe_timestamp
                .with_label_values(&[c, "beijing", zone])
                .set(1.0);
        }
        // dc2 deregistered, dc1 moved to another zone.
        let current = [("dc1".to_string(), "beijing".to_string(), "external".to_string())].into();
        m.cluster_reachable
            .with_label_values(&["dc1", "beijing", "external"])
            .set(1);
        m.forget_clusters_except(&current);
        let text = m.render();
        assert!(
            text.contains(r#"govcloud_cluster_reachable{cluster="dc1",region="beijing",zone="external"} 1"#),
            "{text}"
        );
        assert!(!text.contains(r#"zone="internal""#), "{text}");
        assert!(!text.contains(r#"cluster="dc2""#), "{text}");
    }

    #[test]
    fn agency_systems_are_written_per_environment_and_phase() {
        use govcloud_api::HostedSystem;
        use std::sync::Arc;
        let mut ac: AgencyCloud = serde_yaml::from_str(include_str!("../../../examples/agencies/mof-internal-l3.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let env = |name: &str, ns: &str| EnvironmentStatus {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        };
        ac.status = Some(AgencyCloudStatus {
            environments: vec![env("prod", "mof-prod"), env("test", "mof-test")],
            ..Default::default()
        });
        let system = |ns: &str, available: bool, migrating: bool| -> Arc<HostedSystem> {
            let mut hs: HostedSystem = serde_yaml::from_str(include_str!("../../../examples/systems/mof-oa.yaml"))
                .unwrap_or_else(|e| panic!("{e}"));
            hs.metadata.namespace = Some(ns.into());
            hs.spec.migration = None;
            if migrating {
                hs.spec.migration = serde_json::from_value(serde_json::json!({
                    "sourceDataCenter": "old", "sourceSystemId": "oa-1", "phase": "Syncing"}))
                .unwrap_or_else(|e| panic!("{e}"));
            }
            if available {
                hs.status = serde_json::from_value(serde_json::json!({"conditions": [{
                    "type": "Available", "status": "True", "reason": "AllReplicasReady", "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
                .unwrap_or_else(|e| panic!("{e}"));
            }
            Arc::new(hs)
        };
        let systems = [
            system("mof-prod", true, false),
            system("mof-prod", false, true),
            system("other-prod", true, false),
        ];
        let mut out = String::new();
        super::agency_systems_text(&[Arc::new(ac.clone())], &systems, (true, true), &mut out);
        let name = kube::ResourceExt::name_any(&ac);
        for want in [
            format!("govcloud_agency_systems{{agency=\"{name}\",environment=\"prod\",state=\"total\"}} 2"),
            format!("govcloud_agency_systems{{agency=\"{name}\",environment=\"prod\",state=\"ready\"}} 1"),
            format!("govcloud_agency_systems{{agency=\"{name}\",environment=\"test\",state=\"total\"}} 0"),
            format!("govcloud_agency_hosted_systems{{agency=\"{name}\",migration_phase=\"none\"}} 1"),
            format!("govcloud_agency_hosted_systems{{agency=\"{name}\",migration_phase=\"Syncing\"}} 1"),
            format!("govcloud_agency_hosted_systems{{agency=\"{name}\",migration_phase=\"CutOver\"}} 0"),
        ] {
            assert!(out.lines().any(|l| l == want), "{want} in\n{out}");
        }
        assert_eq!(out.lines().filter(|l| l.starts_with("# TYPE")).count(), 2, "{out}");
        assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), 4 + 7, "{out}");
    }

    #[test]
    fn agency_quotas_are_written_from_the_status() {
        let mut ac: AgencyCloud = serde_yaml::from_str(include_str!("../../../examples/agencies/mof-internal-l3.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let map = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ac.status = Some(AgencyCloudStatus {
            environments: vec![EnvironmentStatus {
                name: "prod".into(),
                namespace: "mof-prod".into(),
                hard: map(&[("requests.cpu", "4"), ("requests.memory", "8Gi"), ("pods", "50")]),
                used: map(&[("requests.cpu", "1500m")]),
            }],
            ..Default::default()
        });
        let mut unplaced = ac.clone();
        unplaced.status = None;
        let mut out = String::new();
        super::agency_quota_text([&ac, &unplaced].into_iter(), &mut out);
        let name = kube::ResourceExt::name_any(&ac);
        let line = |res: &str, kind: &str, v: &str| {
            format!(
                "govcloud_agency_quota{{agency=\"{name}\",environment=\"prod\",resource=\"{res}\",kind=\"{kind}\"}} {v}"
            )
        };
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("# HELP govcloud_agency_quota "));
        assert_eq!(lines[1], "# TYPE govcloud_agency_quota gauge");
        assert_eq!(lines.len(), 2 + 8, "{out}");
        for want in [
            line("cpu", "hard", "4"),
            line("cpu", "used", "1.5"),
            line("memory", "hard", "8589934592"),
            line("storage", "hard", "0"),
            line("pods", "hard", "50"),
            line("pods", "used", "0"),
        ] {
            assert!(lines.contains(&want.as_str()), "{want} in\n{out}");
        }
    }
}
