//! What every reconcile shares: the settings, one `Context` built once, and the memos
//! that keep steady-state reconciles from writing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use govcloud_api::{AgencyCloud, DataCenterCluster};
use govcloud_core::quantity::Milli;

use super::members::{self, MemberCaches};
use crate::member::MemberClients;
use crate::metrics::Metrics;

/// Field manager used for every server-side apply of the operator.
pub const FIELD_MANAGER_PREFIX: &str = "govcloud-operator";

/// Settings of the running operator.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the operator on the hub (holds member kubeconfig Secrets).
    pub namespace: String,
    /// Interval between probes of a healthy member cluster.
    pub probe_interval: Duration,
    /// Longest delay between probes of an unreachable member cluster.
    pub max_probe_backoff: Duration,
    /// Timeout of one member API call.
    pub member_timeout: Duration,
    /// Reconciles run at once, per controller.
    pub concurrency: u16,
    /// Name of this replica (the pod name), shown on Events.
    pub instance: Option<String>,
    /// Daily UtilizationReports kept (0: none are made).
    pub daily_reports: usize,
    /// Monthly UtilizationReports kept (0: none are made).
    pub monthly_reports: usize,
    /// Leader election (several replicas); None runs the controllers at once.
    pub leader_election: Option<crate::leader::LeaderElection>,
    /// Monthly evidence reports, kept this long after their period ends; None makes none
    /// (the default here; the binary makes them unless told otherwise).
    pub evidence_retention: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: "govcloud-system".into(),
            probe_interval: Duration::from_secs(30),
            max_probe_backoff: Duration::from_secs(30),
            member_timeout: Duration::from_secs(5),
            concurrency: 8,
            instance: None,
            daily_reports: 31,
            monthly_reports: 24,
            leader_election: None,
            evidence_retention: None,
        }
    }
}

/// Everything a reconcile needs, built once.
pub struct Context {
    /// Hub client.
    pub client: Client,
    /// Publishes Events on the hub.
    pub recorder: Recorder,
    /// Where objects that do not parse are reported (see [`crate::lenient`]).
    pub lenient: crate::lenient::Reporter,
    /// Metrics.
    pub metrics: Metrics,
    /// Member cluster clients.
    pub members: MemberClients,
    /// Settings.
    pub settings: Settings,
    /// Consecutive failed probes per cluster (for backoff).
    pub probe_failures: Mutex<HashMap<String, u32>>,
    /// Caches of managed objects on each member cluster.
    pub caches: MemberCaches,
    /// Agency names whose member objects changed (consumed by the AgencyCloud controller).
    pub member_events: Mutex<Option<mpsc::Receiver<String>>>,
    /// `namespace/name` of hosted systems whose member objects changed.
    pub system_events: Mutex<Option<mpsc::Receiver<String>>>,
    /// All DataCenterClusters (hub reflector).
    pub clusters: Store<DataCenterCluster>,
    /// All HostedSystems (the hub's shared watch), set by [`HubStreams::start`]; the same
    /// cell as `metrics.systems`.
    pub systems: Arc<std::sync::OnceLock<Store<govcloud_api::HostedSystem>>>,
    /// BackupLocations (the backup controller's store of them, set when it starts).
    pub locations: std::sync::OnceLock<Store<govcloud_api::backup::BackupLocation>>,
    /// All BackupPolicies (the hub's shared watch), set by [`HubStreams::start`].
    pub policies: std::sync::OnceLock<Store<govcloud_api::BackupPolicy>>,
    /// All AgencyClouds (the hub's shared watch), set by [`HubStreams::start`]; the same cell
    /// as `metrics.agencies`.
    pub agencies: Arc<std::sync::OnceLock<Store<AgencyCloud>>>,
    /// HostedSystem names per namespace (kept with `systems`).
    pub systems_by_ns: crate::lenient::NsIndex,
    /// BackupPolicy names per namespace (kept with `policies`).
    pub policies_by_ns: crate::lenient::NsIndex,
    /// Whether the hub's tenancy approval admission policy was installed (decisions are
    /// acted on only when the API server enforces who may make them).
    pub approval_policy_installed: std::sync::atomic::AtomicBool,
    /// Serialises placement decisions; holds decisions not yet visible in `agencies`:
    /// agency → (cluster, cpu, memory).
    pub placements: tokio::sync::Mutex<HashMap<String, (String, Milli, Milli)>>,
    /// Per member cluster: whether it serves Gateway API HTTPRoutes, and when that was checked.
    pub gateway_api: std::sync::Mutex<HashMap<String, (std::time::Instant, bool)>>,
    /// The status last written per object (see [`StatusMemo`]).
    pub status_memo: StatusMemo,
    /// Set once every hub store the controllers read across kinds has its first list.
    pub filled: std::sync::atomic::AtomicBool,
    /// When each new cloud's registry policy may be probed next.
    pub registry_probes: RegistryProbes,
    /// Each agency's total CPU and memory quota (see [`QuotaTotals`]).
    pub quota_totals: QuotaTotals,
}

/// Each AgencyCloud's total CPU and memory quota, by uid and generation: placement sums
/// them over every agency on a cluster at each reconcile of an agency, and parsing every
/// agency's quantities each time made a resync of 2,000 agencies quadratic.
#[derive(Default)]
pub struct QuotaTotals(Mutex<HashMap<String, QuotaTotal>>);

/// An agency's generation and its total CPU and memory quota then.
type QuotaTotal = (Option<i64>, Milli, Milli);

impl QuotaTotals {
    /// The total quota of `ac` (`core::agency::total_quota` of its spec).
    pub fn of(&self, ac: &AgencyCloud) -> (Milli, Milli) {
        // A poisoned lock still holds valid totals (nothing here panics midway).
        total(
            &mut self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            ac,
        )
    }

    /// Sum of the total quotas of the agencies in `agencies` placed on `cluster`, `except`
    /// one (by name): what a placed agency's quota is rechecked against at each of its
    /// reconciles. One lock and no allocation per agency — this runs over every agency for
    /// every agency reconcile.
    pub fn placed_on(&self, agencies: &[Arc<AgencyCloud>], cluster: &str, except: &str) -> (Milli, Milli) {
        // A poisoned lock still holds valid totals (nothing here panics midway).
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut sum = (Milli::ZERO, Milli::ZERO);
        for a in agencies {
            if a.metadata.name.as_deref() == Some(except)
                || a.status
                    .as_ref()
                    .and_then(|s| s.placement.as_ref())
                    .is_none_or(|p| p.cluster != cluster)
            {
                continue;
            }
            let (cpu, mem) = total(&mut m, a);
            sum.0 += cpu;
            sum.1 += mem;
        }
        sum
    }

    /// Forgets a deleted agency.
    pub fn forget(&self, ac: &AgencyCloud) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(ac.metadata.uid.as_deref().unwrap_or_default());
        }
    }
}

/// The total quota of `ac` from `m` (by uid, for its generation), computed and kept there
/// when missing or outdated.
fn total(m: &mut HashMap<String, QuotaTotal>, ac: &AgencyCloud) -> (Milli, Milli) {
    let (uid, generation) = (ac.metadata.uid.as_deref().unwrap_or_default(), ac.metadata.generation);
    match m.get(uid) {
        Some((g, cpu, mem)) if *g == generation => (*cpu, *mem),
        _ => {
            let (cpu, mem) = govcloud_core::agency::total_quota(&ac.spec.cloud);
            m.insert(uid.to_string(), (generation, cpu, mem));
            (cpu, mem)
        }
    }
}

/// What the operator last wrote to each object's status: the resourceVersion of the object it
/// was computed from, a hash of the status, and when. The controllers' stores lag behind
/// their own writes (more so under load), so a reconcile that runs before the store has
/// seen a write would compute the same status from the same old object and write it again;
/// the memo recognises that case (same resourceVersion, same status but for the conditions'
/// transition times) and skips the write.
/// Anything else — the object moved on, the status differs — is written as before.
#[derive(Default)]
pub struct StatusMemo(Mutex<HashMap<String, (String, u64, std::time::Instant)>>);

impl StatusMemo {
    /// The memo key of an object: `<Kind>/<namespace>/<name>`, or `<Kind>/<name>` for a
    /// cluster-scoped one.
    pub fn key<K: kube::Resource<DynamicType = ()>>(o: &K) -> String {
        let name = o.meta().name.as_deref().unwrap_or_default();
        match o.meta().namespace.as_deref() {
            Some(ns) => format!("{}/{ns}/{name}", K::kind(&())),
            None => format!("{}/{name}", K::kind(&())),
        }
    }

    /// Hash of the status without its condition transition times: two reconciles computing a
    /// status from the same old object set "now" a second apart, which is the same status.
    fn hash<T: serde::Serialize>(status: &T) -> u64 {
        fn strip(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    m.remove("lastTransitionTime");
                    m.values_mut().for_each(strip);
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                _ => {}
            }
        }
        use std::hash::{Hash, Hasher};
        let mut v = serde_json::to_value(status).unwrap_or_default();
        strip(&mut v);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        v.to_string().hash(&mut h);
        h.finish()
    }

    /// Whether `status` was already written for `key` from the object at `rv`.
    pub fn written<T: serde::Serialize>(&self, key: &str, rv: Option<&str>, status: &T) -> bool {
        let Some(rv) = rv else { return false };
        self.0
            .lock()
            .is_ok_and(|m| m.get(key).is_some_and(|(r, h, _)| r == rv && *h == Self::hash(status)))
    }

    /// Records a successful write of `status` for `key`, computed from the object at `rv`.
    pub fn record<T: serde::Serialize>(&self, key: &str, rv: Option<&str>, status: &T) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(
                key.to_string(),
                (
                    rv.unwrap_or_default().to_string(),
                    Self::hash(status),
                    std::time::Instant::now(),
                ),
            );
        }
    }

    /// How long ago the last status write for `key` was made by this process.
    pub fn since_last_write(&self, key: &str) -> Option<std::time::Duration> {
        self.0.lock().ok()?.get(key).map(|(_, _, at)| at.elapsed())
    }

    /// Forgets `key` (the object is gone).
    pub fn forget(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(key);
        }
    }
}

impl Context {
    /// Waits (up to 10 s) until the hub stores that a reconcile reads besides its own object —
    /// DataCenterClusters, AgencyClouds, HostedSystems, BackupPolicies — have their first
    /// list (or 10 s have passed). Right after a start an empty store would be taken for the truth: a cluster
    /// "not registered", an agency "missing", backups "complete" — each a status written
    /// and then written back. Free once they are filled.
    pub async fn caches_filled(&self) {
        use std::sync::atomic::Ordering;
        if self.filled.load(Ordering::Relaxed) {
            return;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let ready = |s: Option<bool>| s.unwrap_or(false);
            let now = |f: Option<std::result::Result<(), kube::runtime::reflector::store::WriterDropped>>| {
                f.is_some_and(|r| r.is_ok())
            };
            use futures::FutureExt;
            let all = now(self.clusters.wait_until_ready().now_or_never())
                && ready(self.agencies.get().map(|s| now(s.wait_until_ready().now_or_never())))
                && ready(self.systems.get().map(|s| now(s.wait_until_ready().now_or_never())))
                && ready(self.policies.get().map(|s| now(s.wait_until_ready().now_or_never())));
            // After the deadline, go on without them for good: a store that cannot list
            // (its watch refused) must not cost every later reconcile 10 s.
            if all || tokio::time::Instant::now() >= deadline {
                self.filled.store(true, Ordering::Relaxed);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Publishes an Event about `object`, its note cut to what the API server accepts; a
    /// failure to publish is logged, never returned (events are advisory).
    pub async fn publish(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        type_: kube::runtime::events::EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let event = kube::runtime::events::Event {
            type_,
            reason: reason.into(),
            note: Some(govcloud_core::conditions::truncate(
                note,
                govcloud_core::conditions::EVENT_NOTE_MAX,
            )),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Builds the context.
    pub fn new(client: Client, metrics: Metrics, settings: Settings, clusters: Store<DataCenterCluster>) -> Arc<Self> {
        let reporter = Reporter {
            controller: FIELD_MANAGER_PREFIX.into(),
            instance: settings.instance.clone(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let lenient = crate::lenient::Reporter::new(metrics.unparseable.clone(), recorder.clone());
        let members = MemberClients::new(client.clone(), settings.namespace.clone(), settings.member_timeout);
        let (tx, rx) = mpsc::channel(4096);
        let (system_tx, system_rx) = mpsc::channel(4096);
        // The metrics render per-agency families from the same stores.
        let (agencies, systems) = (metrics.agencies.clone(), metrics.systems.clone());
        Arc::new(Context {
            client,
            recorder,
            lenient,
            metrics,
            members,
            settings,
            probe_failures: Mutex::default(),
            caches: MemberCaches::new(members::Triggers {
                agencies: tx,
                systems: system_tx,
            }),
            member_events: Mutex::new(Some(rx)),
            system_events: Mutex::new(Some(system_rx)),
            clusters,
            agencies,
            systems,
            policies: std::sync::OnceLock::new(),
            systems_by_ns: crate::lenient::NsIndex::default(),
            policies_by_ns: crate::lenient::NsIndex::default(),
            locations: std::sync::OnceLock::new(),
            placements: tokio::sync::Mutex::default(),
            gateway_api: std::sync::Mutex::default(),
            status_memo: StatusMemo::default(),
            filled: std::sync::atomic::AtomicBool::new(false),
            registry_probes: RegistryProbes::default(),
            quota_totals: QuotaTotals::default(),
            approval_policy_installed: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// What a status write changes, for the debug log: the top-level fields that differ, and
/// for `conditions` the types whose entries differ (`conditions[Ready]`).
pub fn changed_fields<T: serde::Serialize>(old: Option<&T>, new: &T) -> Vec<String> {
    let old = old.and_then(|o| serde_json::to_value(o).ok()).unwrap_or_default();
    let new = serde_json::to_value(new).unwrap_or_default();
    let empty = serde_json::Map::new();
    let (o, n) = (old.as_object().unwrap_or(&empty), new.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        let (a, b) = (o.get(k), n.get(k));
        if a == b {
            continue;
        }
        if k == "conditions"
            && let (Some(serde_json::Value::Array(a)), Some(serde_json::Value::Array(b))) = (a, b)
        {
            for c in b {
                let t = c.get("type").and_then(|t| t.as_str()).unwrap_or("?");
                let before = a.iter().find(|x| x.get("type") == c.get("type"));
                if before != Some(c) {
                    let what: Vec<&str> = [
                        "status",
                        "reason",
                        "message",
                        "lastTransitionTime",
                        "observedGeneration",
                    ]
                    .into_iter()
                    .filter(|f| before.and_then(|x| x.get(*f)) != c.get(*f))
                    .collect();
                    out.push(format!("conditions[{t}].{}", what.join("+")));
                }
            }
            continue;
        }
        out.push(k.clone());
    }
    out
}

/// The namespaces an AgencyCloud has provisioned (its environments), from its status.
pub fn provisioned_namespaces(ac: &AgencyCloud) -> Vec<String> {
    ac.status
        .as_ref()
        .map(|s| s.environments.iter().map(|e| e.namespace.clone()).collect())
        .unwrap_or_default()
}

/// The objects in `index` (a kind's names per namespace) in the namespaces `ac` has
/// provisioned: what waits for an agency to be placed and provisioned is reconciled as soon
/// as it is, not at its next retry.
pub fn in_agency_namespaces<K>(
    index: &crate::lenient::NsIndex,
    ac: &AgencyCloud,
) -> Vec<kube::runtime::reflector::ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    provisioned_namespaces(ac)
        .iter()
        .flat_map(|ns| index.refs::<K>(ns))
        .collect()
}

/// Marks `synced` once `store` has finished its initial list. The store's readiness signal
/// wakes only one waiter (the controller itself also waits on it), so it is polled in short
/// slices instead of awaited once.
pub fn signal_when_synced<K>(store: kube::runtime::reflector::Store<K>, synced: crate::server::PendingCache)
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    tokio::spawn(async move {
        loop {
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await {
                if r.is_ok() {
                    synced.synced();
                }
                break;
            }
        }
    });
}

/// A pending registry policy is probed at most this often per agency, however many
/// reconciles the agency's new objects trigger meanwhile (the API server loads a new
/// binding asynchronously, within a second or so when it is not busy).
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// When each agency's registry policy may be probed next (agencies whose policy is pending).
#[derive(Default)]
pub struct RegistryProbes(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl RegistryProbes {
    /// `None` if `agency`'s policy may be probed now, else how long to wait.
    pub fn not_before(&self, agency: &str) -> Option<Duration> {
        let now = std::time::Instant::now();
        let m = self.0.lock().ok()?;
        m.get(agency)
            .and_then(|due| due.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Records a probe: an active policy needs no more; a pending one waits [`PROBE_EVERY`].
    pub fn probed(&self, agency: &str, active: bool) {
        if let Ok(mut m) = self.0.lock() {
            if active {
                m.remove(agency);
            } else {
                m.insert(agency.to_string(), std::time::Instant::now() + PROBE_EVERY);
            }
        }
    }

    /// Forgets `agency` (deleted).
    pub fn forget(&self, agency: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(agency);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PROBE_EVERY, QuotaTotals, RegistryProbes, StatusMemo};
    use govcloud_api::AgencyCloud;
    use govcloud_core::quantity::Milli;
    use serde_json::json;
    use std::sync::Arc;

    fn agency(name: &str, generation: i64, cpu: &str, cluster: Option<&str>) -> Arc<AgencyCloud> {
        let ac = json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": generation},
            "spec": {
                "agency": {"displayName": "x", "shortName": name, "creditCode": "11100000MB0123456X",
                    "adminLevel": "central", "contact": {"name": "x", "phone": "010-68551234"}},
                "securityLevel": 2, "zone": "internal",
                "environments": [{"name": "prod", "quota": {"cpu": cpu, "memory": "1Gi"}}],
                "owners": [{"kind": "Group", "name": "ops"}],
                "allowedRegistries": ["registry.gov.cn"]
            },
            "status": cluster.map(|c| json!({"placement": {"cluster": c, "region": "r", "zone": "internal"}}))
        });
        match serde_json::from_value(ac) {
            Ok(a) => Arc::new(a),
            Err(e) => panic!("fixture: {e}"),
        }
    }

    #[test]
    fn placed_quota_sums_one_cluster_without_the_agency_itself() {
        let totals = QuotaTotals::default();
        let fleet = vec![
            agency("a", 1, "2", Some("dc1")),
            agency("b", 1, "3", Some("dc1")),
            agency("c", 1, "5", Some("dc2")),
            agency("d", 1, "7", None),
        ];
        let cores = |n: i128| Milli(n * 1000);
        assert_eq!(totals.placed_on(&fleet, "dc1", "x").0, cores(5));
        assert_eq!(totals.placed_on(&fleet, "dc1", "a").0, cores(3), "a itself left out");
        assert_eq!(totals.placed_on(&fleet, "dc2", "a").0, cores(5));
        assert_eq!(totals.placed_on(&fleet, "dc3", "a").0, cores(0));
        assert_eq!(totals.placed_on(&fleet, "dc1", "x").1, Milli(2 * (1 << 30) * 1000));
        // Totals are kept by uid and generation: a new generation is summed anew.
        let grown = vec![agency("a", 2, "4", Some("dc1")), fleet[1].clone()];
        assert_eq!(totals.placed_on(&grown, "dc1", "x").0, cores(7));
    }

    #[test]
    fn memo_keys_name_kind_namespace_and_name() {
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        cm.metadata.name = Some("a".into());
        assert_eq!(StatusMemo::key(&cm), "ConfigMap/a");
        cm.metadata.namespace = Some("ns".into());
        assert_eq!(StatusMemo::key(&cm), "ConfigMap/ns/a");
    }

    #[test]
    fn the_memo_knows_a_status_written_from_the_same_object() {
        let memo = StatusMemo::default();
        let at = |t: &str, ok: &str| json!({"conditions": [{"type": "Ready", "status": ok, "lastTransitionTime": t}]});
        assert!(!memo.written("k", Some("1"), &at("2026-11-29T10:00:00Z", "True")));
        memo.record("k", Some("1"), &at("2026-11-29T10:00:00Z", "True"));
        // Same object, computed again a second later: already written.
        assert!(memo.written("k", Some("1"), &at("2026-11-29T10:00:01Z", "True")));
        // A different status, or the object moved on: not written.
        assert!(!memo.written("k", Some("1"), &at("2026-11-29T10:00:01Z", "False")));
        assert!(!memo.written("k", Some("2"), &at("2026-11-29T10:00:00Z", "True")));
        assert!(!memo.written("other", Some("1"), &at("2026-11-29T10:00:00Z", "True")));
        assert!(!memo.written("k", None, &at("2026-11-29T10:00:00Z", "True")));
        memo.forget("k");
        assert!(!memo.written("k", Some("1"), &at("2026-11-29T10:00:00Z", "True")));
    }

    #[test]
    fn registry_probes_wait_between_tries() {
        let p = RegistryProbes::default();
        // Unknown agency: probe now.
        assert_eq!(p.not_before("a"), None);
        // A pending probe waits PROBE_EVERY, also in the next reconciles; others are not
        // held back; an active one frees the agency.
        p.probed("a", false);
        assert!(
            p.not_before("a")
                .is_some_and(|d| d <= PROBE_EVERY && d > PROBE_EVERY / 2)
        );
        assert_eq!(p.not_before("b"), None);
        p.probed("b", false);
        p.probed("b", true);
        assert_eq!(p.not_before("b"), None);
        p.probed("a", false);
        p.forget("a");
        assert_eq!(p.not_before("a"), None);
    }
}
