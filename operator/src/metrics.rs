//! Prometheus metrics of the operator (`/metrics`).
//!
//! Names follow `govcloud_<subsystem>_<name>_<unit>`; operator-internal metrics carry no
//! per-object labels. Per-cluster gauges are bounded by the number of registered clusters.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// All metrics, registered once in one registry.
#[derive(Clone)]
pub struct Metrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    /// 1 when a member cluster answers, else 0; labels cluster, region, zone.
    pub cluster_reachable: IntGaugeVec,
    /// Allocatable CPU of a cluster in millicores; labels cluster, region, zone.
    pub cluster_allocatable_cpu: IntGaugeVec,
    /// Allocatable memory of a cluster in bytes; labels cluster, region, zone.
    pub cluster_allocatable_memory: IntGaugeVec,
    /// Hosted systems per agency and migration phase (`none` = not migrating).
    pub agency_systems: IntGaugeVec,
    /// Server-side applies of child objects, per controller.
    applies: IntCounterVec,
    /// Quota of an agency environment, hard and used; labels agency, environment, resource, kind.
    pub agency_quota: prometheus::GaugeVec,
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
        let agency_quota = must(
            prometheus::GaugeVec::new(
                Opts::new(
                    "govcloud_agency_quota",
                    "Quota of an agency environment: kind=hard is the limit, kind=used the current requests (cpu in cores, memory and storage in bytes, pods as a count).",
                ),
                &["agency", "environment", "resource", "kind"],
            ),
            "agency_quota",
        );
        must(
            registry.register(Box::new(agency_quota.clone())),
            "register agency quota",
        );
        let agency_systems = must(
            IntGaugeVec::new(
                Opts::new(
                    "govcloud_agency_hosted_systems",
                    "Hosted systems per agency by migration phase (none = not migrating): planned vs migrated.",
                ),
                &["agency", "migration_phase"],
            ),
            "agency_systems",
        );
        must(
            registry.register(Box::new(agency_systems.clone())),
            "register agency systems",
        );
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
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            cluster_reachable,
            cluster_allocatable_cpu,
            cluster_allocatable_memory,
            agency_quota,
            agency_systems,
            applies,
        }
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
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"))
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
