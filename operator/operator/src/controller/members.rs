//! Watches of the objects the operator manages on each member cluster.
//!
//! Per member, one watch per child kind, restricted by label to what the operator created
//! (`app.kubernetes.io/managed-by=govcloud-operator`), each object kept compact: only the
//! fields the operator owns, as JSON text ([`Cached`]). The caches let reconciles
//! compare desired with live state without API calls (so a steady state costs nothing),
//! and every change (an edit or deletion by someone else) triggers a reconcile of the
//! owning agency: drift is repaired within seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::debug;

use govcloud_api::labels::{AGENCY_LABEL, MANAGED_BY, SYSTEM_LABEL};
use govcloud_core::agency::Kind;
use govcloud_core::{owned, subset};

/// `ApiResource` of a child kind.
pub fn api_resource(kind: Kind) -> ApiResource {
    let (group, version, k, plural, _) = kind.gvk();
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: kind.api_version(),
        kind: k.into(),
        plural: plural.into(),
    }
}

/// An `Api` for a child kind, namespaced or cluster-wide.
pub fn api(client: &Client, kind: Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = api_resource(kind);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// `(namespace, name)` of a cached object.
type Key = (Option<Box<str>>, Box<str>);

/// One cached member object, compact: its name, namespace and labels the operator routes
/// by; a hash of the fields the operator owns (see [`govcloud_core::owned`]) to compare with
/// the desired state; and, for kinds whose status reconciles read, that status as JSON text.
/// (Keeping the owned fields themselves as JSON took 39 MB at the national scale; a hash
/// takes eight bytes.)
#[derive(Debug)]
pub struct Cached {
    namespace: Option<Box<str>>,
    name: Box<str>,
    agency: Option<Box<str>>,
    system: Option<Box<str>>,
    owned: Owned,
    /// `{"metadata": {"generation": …}, "status": …}` for kinds whose status is read.
    read: Option<Box<str>>,
}

/// What the operator owns of a cached object.
#[derive(Debug, PartialEq)]
enum Owned {
    /// [`owned::content_hash`] of the projection on the operator's field sets.
    Hash(u64),
    /// The projection as JSON, compared with the desired state as a subset (see [`hashed`]);
    /// or, for an object without field sets (not served, or stripped on the way), all of it.
    Json(Box<str>),
}

/// Whether a kind's cache entries keep a hash of the owned fields rather than their JSON.
/// A hash matches only what the operator applied exactly; the JSON is compared as a subset,
/// which also accepts values the API server defaults inside a field the operator owns whole
/// (an atomic list or struct: a ValidatingAdmissionPolicy's `matchConstraints` gains
/// `matchPolicy` and `scope`, a StatefulSet's `volumeClaimTemplates` gain `volumeMode`).
/// The kinds hashed are the many per-agency and per-system objects, whose bodies the
/// operator writes out in full (protocols of ports included), checked by a restart of the
/// benchmark's fleet making no writes; the others are few or not checked that way.
fn hashed(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Namespace
            | Kind::ResourceQuota
            | Kind::LimitRange
            | Kind::NetworkPolicy
            | Kind::RoleBinding
            | Kind::ConfigMap
            | Kind::Deployment
            | Kind::Service
    )
}

impl Cached {
    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespace (`None` for cluster-scoped objects).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Value of the `govcloud.io/agency` label.
    pub fn agency(&self) -> Option<&str> {
        self.agency.as_deref()
    }

    /// Value of the `govcloud.io/system` label.
    pub fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// What reconciles read of the object: `metadata.generation` and the `status` of kinds
    /// whose status is read (workloads, ResourceQuotas; see `Kind::status_is_read`); `{}`
    /// for other kinds.
    pub fn value(&self) -> serde_json::Value {
        self.read
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// Whether the object already carries `desired` (a body without `apiVersion`/`kind`):
    /// the fields the operator owns are exactly those of `desired`.
    pub fn matches(&self, desired: &serde_json::Value) -> bool {
        match &self.owned {
            Owned::Hash(h) => *h == owned::content_hash(desired),
            Owned::Json(json) => serde_json::from_str(json).is_ok_and(|live| subset::contains(&live, desired)),
        }
    }

    /// Bytes held for the object's content (for the cache-size gauge).
    fn content_bytes(&self) -> usize {
        let owned = match &self.owned {
            Owned::Hash(_) => std::mem::size_of::<u64>(),
            Owned::Json(j) => j.len(),
        };
        owned + self.read.as_ref().map_or(0, |r| r.len())
    }

    /// Compacts a live object.
    fn new(kind: Kind, mut o: DynamicObject) -> Cached {
        let labels = o.metadata.labels.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k)).map(|v| Box::from(v.as_str()));
        let (agency, system) = (label(AGENCY_LABEL), label(SYSTEM_LABEL));
        // The union of what the operator's field managers applied (status subresources aside).
        // The field sets are taken out of the object first: they are often as large as the
        // rest of it, and no field set names them.
        let mut fields = serde_json::Map::new();
        let entries = o.metadata.managed_fields.take().unwrap_or_default();
        for e in &entries {
            let ours = e.manager.as_deref().is_some_and(|m| m.starts_with(MANAGER_PREFIX))
                && e.operation.as_deref() == Some("Apply")
                && e.subresource.as_deref().is_none_or(str::is_empty);
            if let (true, Some(f)) = (ours, e.fields_v1.as_ref().and_then(|f| f.0.as_object())) {
                owned::merge_fields(&mut fields, f);
            }
        }
        // The object as JSON: its data moved (not copied), with the metadata (without field
        // sets) beside it; apiVersion and kind are in no field set.
        let mut full = match std::mem::take(&mut o.data) {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        full.insert("metadata".into(), serde_json::to_value(&o.metadata).unwrap_or_default());
        let mut full = serde_json::Value::Object(full);
        let status = if kind.status_is_read() {
            full.get_mut("status").map(serde_json::Value::take).map(|mut st| {
                if matches!(kind, Kind::Deployment | Kind::StatefulSet) {
                    trim_workload_status(&mut st);
                }
                st
            })
        } else {
            None
        };
        let mut projected = if entries.is_empty() || kind == Kind::ClusterRole {
            // No field sets at all: keep the object. The agency roles too: the member
            // manifest installs them (another manager), and they are compared whole, so
            // that a rule added by someone else counts as a difference.
            full
        } else {
            owned::project(&full, &fields).unwrap_or_default()
        };
        // Identity: the desired bodies name the object (the hash leaves it out).
        if let Some(m) = projected.as_object_mut() {
            m.remove("status");
            let meta = m.entry("metadata").or_insert_with(|| serde_json::json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.remove("managedFields");
                meta.insert("name".into(), serde_json::json!(o.metadata.name));
                if let Some(ns) = &o.metadata.namespace {
                    meta.insert("namespace".into(), serde_json::json!(ns));
                }
            }
        }
        let owned = if hashed(kind) && !entries.is_empty() {
            Owned::Hash(owned::content_hash(&projected))
        } else {
            Owned::Json(projected.to_string().into_boxed_str())
        };
        let read = kind.status_is_read().then(|| {
            serde_json::json!({"metadata": {"generation": o.metadata.generation}, "status": status})
                .to_string()
                .into_boxed_str()
        });
        Cached {
            namespace: o.metadata.namespace.as_deref().map(Box::from),
            name: Box::from(o.metadata.name.as_deref().unwrap_or_default()),
            agency,
            system,
            owned,
            read,
        }
    }
}

/// Keeps what the HostedSystem controller reads of a workload's status: replica counts, the
/// observed generation and failing conditions (not their timestamps).
fn trim_workload_status(st: &mut serde_json::Value) {
    let Some(m) = st.as_object_mut() else { return };
    m.retain(|k, _| {
        matches!(
            k.as_str(),
            "readyReplicas"
                | "updatedReplicas"
                | "availableReplicas"
                | "replicas"
                | "observedGeneration"
                | "conditions"
        )
    });
    if let Some(conds) = m.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        conds.retain(|c| {
            c.get("status").and_then(|s| s.as_str()) == Some("True")
                && c.get("type").and_then(|t| t.as_str()) == Some("ReplicaFailure")
        });
        for c in conds.iter_mut() {
            if let Some(c) = c.as_object_mut() {
                c.retain(|k, _| matches!(k.as_str(), "type" | "status" | "reason" | "message"));
            }
        }
    }
}

/// Field managers of the operator (`govcloud-operator/<controller>`).
const MANAGER_PREFIX: &str = "govcloud-operator/";

/// The objects of one kind on one cluster.
#[derive(Default)]
struct KindCache {
    objects: HashMap<Key, Arc<Cached>>,
    /// The objects by `govcloud.io/agency` and by `govcloud.io/system` label: every
    /// reconcile looks up its agency's or system's objects (to prune them), and a scan of
    /// the kind per lookup made a resync of 2,000 agencies and 5,000 systems quadratic.
    by_agency: HashMap<Box<str>, Vec<Arc<Cached>>>,
    by_system: HashMap<Box<str>, Vec<Arc<Cached>>>,
    /// Whether the first list has completed.
    ready: bool,
}

impl KindCache {
    fn insert(&mut self, c: Arc<Cached>) {
        if let Some(old) = self.objects.insert((c.namespace.clone(), c.name.clone()), c.clone()) {
            self.unindex(&old);
        }
        self.index(&c);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.objects.remove(key) {
            self.unindex(&old);
        }
    }

    /// Takes a whole new list.
    fn replace(&mut self, objects: HashMap<Key, Arc<Cached>>) {
        self.objects = objects;
        self.by_agency.clear();
        self.by_system.clear();
        let all: Vec<Arc<Cached>> = self.objects.values().cloned().collect();
        for c in &all {
            self.index(c);
        }
        self.by_agency.shrink_to_fit();
        self.by_system.shrink_to_fit();
    }

    fn index(&mut self, c: &Arc<Cached>) {
        for (index, label) in [(&mut self.by_agency, &c.agency), (&mut self.by_system, &c.system)] {
            if let Some(l) = label {
                index.entry(l.clone()).or_default().push(c.clone());
            }
        }
    }

    fn unindex(&mut self, c: &Arc<Cached>) {
        for (index, label) in [(&mut self.by_agency, &c.agency), (&mut self.by_system, &c.system)] {
            if let Some(l) = label
                && let Some(v) = index.get_mut(l)
            {
                v.retain(|x| !Arc::ptr_eq(x, c));
                if v.is_empty() {
                    index.remove(l);
                }
            }
        }
    }
}

/// Caches of one member cluster.
pub struct MemberCache {
    /// Client version it was built for (Secret uid/resourceVersion); a new one rebuilds it.
    pub version: String,
    stores: HashMap<Kind, Arc<RwLock<KindCache>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Objects whose owned fields, as the API server returned them from the operator's last
    /// apply, do not hash like the body applied (a value the server normalises, say):
    /// (kind, key) → (hash of the body applied, hash of the object it became). Such an object
    /// is up to date while both stay the same, so it is not applied again on every reconcile.
    normalised: Mutex<HashMap<(Kind, Key), (u64, u64)>>,
}

impl Drop for MemberCache {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl MemberCache {
    /// The cached live object, if its kind's cache has synced and holds it.
    /// `None` means "not known to exist" (absent or cache not ready).
    pub fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<Arc<Cached>> {
        let store = self.stores.get(&kind)?.read().ok()?;
        if !store.ready {
            return None;
        }
        store.objects.get(&(namespace.map(Box::from), Box::from(name))).cloned()
    }

    /// Whether the cached object already carries `desired` (a body without `apiVersion` and
    /// `kind`); false when it is not cached (absent, or the cache not synced).
    pub fn up_to_date(&self, kind: Kind, namespace: Option<&str>, name: &str, desired: &serde_json::Value) -> bool {
        let Some(live) = self.get(kind, namespace, name) else {
            return false;
        };
        if live.matches(desired) {
            return true;
        }
        let Owned::Hash(now) = live.owned else { return false };
        let key = (kind, (namespace.map(Box::from), Box::from(name)));
        self.normalised
            .lock()
            .is_ok_and(|m| m.get(&key) == Some(&(owned::content_hash(desired), now)))
    }

    /// Records what an apply of `desired` returned (see `normalised`). Only hashed kinds are
    /// remembered: `up_to_date` compares the others as a subset, which accepts what the
    /// server adds.
    pub fn applied(&self, kind: Kind, desired: &serde_json::Value, returned: DynamicObject) {
        if !hashed(kind) {
            return;
        }
        let live = Cached::new(kind, returned);
        let key = (kind, (live.namespace.clone(), live.name.clone()));
        let wanted = owned::content_hash(desired);
        let Ok(mut m) = self.normalised.lock() else { return };
        match live.owned {
            Owned::Hash(now) if now != wanted => {
                debug!(?kind, name = %live.name, "applied object differs from its body as the API server returns it");
                m.insert(key, (wanted, now));
            }
            _ => {
                m.remove(&key);
            }
        }
    }

    /// Whether every cache has finished its initial list.
    pub fn is_synced(&self) -> bool {
        self.stores.values().all(|s| s.read().is_ok_and(|s| s.ready))
    }

    /// Waits up to `timeout` for every cache to finish its initial list.
    pub async fn wait_synced(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_synced() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        true
    }

    /// Every cached object of `kind` of hosted system `system` (label `govcloud.io/system`).
    pub fn of_system(&self, kind: Kind, system: &str) -> Vec<Arc<Cached>> {
        self.indexed(kind, |k| k.by_system.get(system))
    }

    /// Every cached object of `kind` labelled for `agency`.
    pub fn owned_by(&self, kind: Kind, agency: &str) -> Vec<Arc<Cached>> {
        self.indexed(kind, |k| k.by_agency.get(agency))
    }

    fn indexed(&self, kind: Kind, pick: impl Fn(&KindCache) -> Option<&Vec<Arc<Cached>>>) -> Vec<Arc<Cached>> {
        self.stores
            .get(&kind)
            .and_then(|s| s.read().ok().and_then(|s| pick(&s).cloned()))
            .unwrap_or_default()
    }

    /// Objects cached, per kind (for the cache-size gauge).
    pub fn sizes(&self) -> Vec<(Kind, usize, usize)> {
        self.stores
            .iter()
            .filter_map(|(k, s)| {
                let s = s.read().ok()?;
                Some((*k, s.objects.len(), s.objects.values().map(|o| o.content_bytes()).sum()))
            })
            .collect()
    }
}

/// All member caches, keyed by DataCenterCluster name, sending the name of the agency whose
/// object changed to the AgencyCloud controller.
pub struct MemberCaches {
    caches: Mutex<HashMap<String, Arc<MemberCache>>>,
    trigger: Triggers,
}

/// Where changes of member objects are reported.
#[derive(Clone)]
pub struct Triggers {
    /// Agency names (objects of agency clouds).
    pub agencies: mpsc::Sender<String>,
    /// `namespace/name` of hosted systems (objects labelled `govcloud.io/system`).
    pub systems: mpsc::Sender<String>,
}

impl MemberCaches {
    /// New, empty.
    pub fn new(trigger: Triggers) -> Self {
        MemberCaches {
            caches: Mutex::default(),
            trigger,
        }
    }

    /// The cache of `cluster`, started on first use and rebuilt when `version` changes.
    pub fn ensure(&self, cluster: &str, version: &str, client: &Client) -> Arc<MemberCache> {
        self.ensure_kinds(cluster, version, client, &Kind::ALL)
    }

    /// As `ensure`, watching only `kinds` (the hub's own cache watches what the hub holds
    /// for agencies — namespaces, their RoleBindings and the hub roles — so the operator
    /// needs no cluster-wide read access to workloads, Secrets or ConfigMaps there).
    ///
    /// The hub (version `hub`) is watched once, under `""`, whether it serves as a member
    /// (every kind) or only holds the agencies' namespaces: a cache of the kinds asked for so
    /// far, rebuilt with more kinds when a caller needs them.
    pub fn ensure_kinds(&self, cluster: &str, version: &str, client: &Client, kinds: &[Kind]) -> Arc<MemberCache> {
        let key = if version == crate::member::HUB_VERSION {
            ""
        } else {
            cluster
        };
        let Ok(mut caches) = self.caches.lock() else {
            // A poisoned lock means a panic elsewhere; start an unshared cache rather than fail.
            return Arc::new(start(version, client, self.trigger.clone(), kinds));
        };
        let mut all: Vec<Kind> = kinds.to_vec();
        // Another name for the same cluster (same kubeconfig): share its cache.
        let same = caches.get(key).filter(|c| c.version == version).cloned().or_else(|| {
            caches
                .values()
                .find(|c| c.version == version && kinds.iter().all(|k| c.stores.contains_key(k)))
                .cloned()
        });
        if let Some(c) = same {
            if kinds.iter().all(|k| c.stores.contains_key(k)) {
                caches.insert(key.to_string(), c.clone());
                return c;
            }
            all.extend(c.stores.keys().filter(|k| !kinds.contains(k)));
        }
        // Namespaces first: the other kinds' shared-object triggers look them up.
        all.sort_by_key(|k| *k != Kind::Namespace);
        let cache = Arc::new(start(version, client, self.trigger.clone(), &all));
        caches.insert(key.to_string(), cache.clone());
        cache
    }

    /// Every running cache once, under one of its cluster names (`""` is the hub's own).
    pub fn all(&self) -> Vec<(String, Arc<MemberCache>)> {
        let mut out: Vec<(String, Arc<MemberCache>)> = Vec::new();
        if let Ok(c) = self.caches.lock() {
            let mut names: Vec<_> = c.iter().collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in names {
                if !out.iter().any(|(_, o)| Arc::ptr_eq(o, v)) {
                    out.push((k.clone(), v.clone()));
                }
            }
        }
        out
    }

    /// Stops watching a cluster.
    pub fn forget(&self, cluster: &str) {
        if let Ok(mut caches) = self.caches.lock() {
            caches.remove(cluster);
        }
    }
}

fn start(version: &str, client: &Client, trigger: Triggers, kinds: &[Kind]) -> MemberCache {
    let mut stores: HashMap<Kind, Arc<RwLock<KindCache>>> = HashMap::new();
    let mut tasks = Vec::new();
    let selector = format!("app.kubernetes.io/managed-by={MANAGED_BY}");
    for &kind in kinds {
        let store = Arc::new(RwLock::new(KindCache::default()));
        let wc = watcher::Config::default().labels(&selector);
        let stream = crate::lenient::watch(api(client, kind, None), wc).backoff(crate::lenient::watch_backoff());
        let mut trigger = trigger.clone();
        let namespaces = if kind == Kind::Namespace {
            None
        } else {
            stores.get(&Kind::Namespace).cloned()
        };
        let writer = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // The next list, built while the current one still answers.
            let mut pending: HashMap<Key, Arc<Cached>> = HashMap::new();
            while let Some(event) = stream.next().await {
                let changed = match event {
                    Ok(watcher::Event::Init) => {
                        pending = HashMap::new();
                        continue;
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        let c = Cached::new(kind, o);
                        pending.insert((c.namespace.clone(), c.name.clone()), Arc::new(c));
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => {
                        // A re-list (after a watch broke, e.g. the member's API server was
                        // down) reports what changed meanwhile; the first list does not (every
                        // owner is reconciled at start anyway).
                        let mut changed = Vec::new();
                        if let Ok(mut w) = writer.write() {
                            if w.ready {
                                changed = relisted(&w.objects, &pending);
                            }
                            w.replace(std::mem::take(&mut pending));
                            w.ready = true;
                        }
                        for c in changed {
                            notify(&mut trigger, namespaces.as_ref(), &c).await;
                        }
                        continue;
                    }
                    Ok(watcher::Event::Apply(o)) => {
                        let c = Arc::new(Cached::new(kind, o));
                        if let Ok(mut w) = writer.write() {
                            w.insert(c.clone());
                        }
                        c
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        let c = Arc::new(Cached::new(kind, o));
                        if let Ok(mut w) = writer.write() {
                            w.remove(&(c.namespace.clone(), c.name.clone()));
                        }
                        c
                    }
                    Err(e) => {
                        debug!(?kind, error = %e, "member watch error (retrying with backoff)");
                        continue;
                    }
                };
                notify(&mut trigger, namespaces.as_ref(), &changed).await;
            }
        }));
        stores.insert(kind, store);
    }
    MemberCache {
        version: version.to_string(),
        stores,
        tasks,
        normalised: Mutex::default(),
    }
}

/// What a re-list changed: objects added or different, and objects gone.
fn relisted(old: &HashMap<Key, Arc<Cached>>, new: &HashMap<Key, Arc<Cached>>) -> Vec<Arc<Cached>> {
    let mut changed: Vec<Arc<Cached>> = new
        .iter()
        .filter(|(k, n)| old.get(*k).is_none_or(|o| o.owned != n.owned || o.read != n.read))
        .map(|(_, n)| n.clone())
        .collect();
    changed.extend(
        old.iter()
            .filter(|(k, _)| !new.contains_key(*k))
            .map(|(_, o)| o.clone()),
    );
    changed
}

/// Asks for a reconcile of the owner of a changed object: its hosted system, else its agency,
/// else (a shared object: ClusterRole, policy) any agency on the cluster.
async fn notify(trigger: &mut Triggers, namespaces: Option<&Arc<RwLock<KindCache>>>, changed: &Cached) {
    if let (Some(system), Some(ns)) = (changed.system(), changed.namespace()) {
        let _ = trigger.systems.send(format!("{ns}/{system}")).await;
        return;
    }
    let agency = changed.agency().map(str::to_string).or_else(|| {
        namespaces.and_then(|s| {
            s.read()
                .ok()
                .and_then(|s| s.objects.values().find_map(|n| n.agency().map(str::to_string)))
        })
    });
    if let Some(a) = agency {
        let _ = trigger.agencies.send(a).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> DynamicObject {
        let v = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "s-web", "namespace": "mof-prod", "generation": 3, "uid": "u-1",
                "resourceVersion": "77", "creationTimestamp": "2026-11-29T07:20:36Z",
                "labels": {"govcloud.io/agency": "mof", "govcloud.io/system": "s", "other": "x"},
                "managedFields": [
                    {"manager": "govcloud-operator/agency", "operation": "Apply", "apiVersion": "apps/v1",
                     "fieldsType": "FieldsV1", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:govcloud.io/agency": {}, "f:govcloud.io/system": {}}},
                        "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
                     "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}},
                    {"manager": "kubectl-label", "operation": "Update", "apiVersion": "apps/v1",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:other": {}}}}}
                ]
            },
            "spec": {"replicas": 2, "revisionHistoryLimit": 10, "template": {"spec": {
                "dnsPolicy": "ClusterFirst",
                "containers": [{"name": "web", "image": "i:1", "imagePullPolicy": "IfNotPresent"}]}}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2, "observedGeneration": 3, "collisionCount": 0,
                "conditions": [
                    {"type": "Available", "status": "True", "lastUpdateTime": "t"},
                    {"type": "ReplicaFailure", "status": "True", "message": "quota", "lastUpdateTime": "t"}]}
        });
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_cached_object_holds_what_the_operator_owns_and_reads() {
        let c = Cached::new(Kind::Deployment, deployment());
        assert_eq!(
            (c.namespace(), c.name(), c.agency(), c.system()),
            (Some("mof-prod"), "s-web", Some("mof"), Some("s"))
        );
        assert!(matches!(c.owned, Owned::Hash(_)));
        // What reconciles read: the generation and the trimmed status.
        assert_eq!(
            c.value(),
            json!({
                "metadata": {"generation": 3},
                "status": {"readyReplicas": 1, "updatedReplicas": 2, "observedGeneration": 3,
                    "conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]}
            })
        );
        // What the operator applied matches; fields of other managers and defaults do not count.
        let applied = json!({
            "metadata": {"name": "s-web", "namespace": "mof-prod",
                "labels": {"govcloud.io/agency": "mof", "govcloud.io/system": "s"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "i:1"}]}}}
        });
        assert!(c.matches(&applied));
        for (path, value) in [
            ("/spec/template/spec/containers/0/image", json!("i:2")),
            ("/spec/replicas", json!(3)),
            ("/metadata/labels/govcloud.io~1agency", json!("mot")),
        ] {
            let mut changed = applied.clone();
            if let Some(v) = changed.pointer_mut(path) {
                *v = value;
            }
            assert!(!c.matches(&changed), "{path}");
        }
        // A kind whose status is not read keeps none.
        assert_eq!(Cached::new(Kind::NetworkPolicy, deployment()).value(), json!({}));
    }

    #[test]
    fn kinds_not_hashed_keep_their_owned_fields_compared_as_a_subset() {
        // Server defaults inside a field the operator owns whole still match.
        let mut o = deployment();
        o.metadata.managed_fields = o.metadata.managed_fields.map(|mut m| {
            m.truncate(1);
            m[0].fields_v1 = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                json!({"f:spec": {"f:template": {}}}),
            ));
            m
        });
        let c = Cached::new(Kind::StatefulSet, o);
        assert!(matches!(c.owned, Owned::Json(_)));
        let applied = json!({"metadata": {"name": "s-web", "namespace": "mof-prod"},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "i:1"}]}}}});
        assert!(c.matches(&applied));
        let mut changed = applied.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
        assert!(!c.matches(&changed));
    }

    #[test]
    fn without_field_sets_the_object_is_kept_whole() {
        let mut o = deployment();
        o.metadata.managed_fields = None;
        let c = Cached::new(Kind::Service, o);
        assert!(matches!(c.owned, Owned::Json(_)));
        assert!(c.matches(&json!({"metadata": {"name": "s-web"}, "spec": {"revisionHistoryLimit": 10}})));
        assert!(!c.matches(&json!({"spec": {"revisionHistoryLimit": 5}})));
    }

    #[test]
    fn an_object_the_api_server_normalises_is_applied_once_not_on_every_reconcile() {
        // The API server returned (and the watch then cached) the quantity in canonical form.
        let mut live = deployment();
        live.data["spec"]["replicas"] = json!(2);
        let entry = Arc::new(Cached::new(Kind::Deployment, live.clone()));
        let mut kc = KindCache::default();
        kc.insert(entry);
        kc.ready = true;
        let cache = MemberCache {
            version: "v".into(),
            stores: [(Kind::Deployment, Arc::new(RwLock::new(kc)))].into_iter().collect(),
            tasks: vec![],
            normalised: Mutex::default(),
        };
        let body = |replicas: serde_json::Value| {
            json!({"metadata": {"name": "s-web", "namespace": "mof-prod",
                "labels": {"govcloud.io/agency": "mof", "govcloud.io/system": "s"}},
                "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": "i:1"}]}}}})
        };
        let ns = Some("mof-prod");
        assert!(cache.up_to_date(Kind::Deployment, ns, "s-web", &body(json!(2))));
        // A body the server stores differently ("2" for 2) does not match before it is applied…
        assert!(!cache.up_to_date(Kind::Deployment, ns, "s-web", &body(json!("2"))));
        cache.applied(Kind::Deployment, &body(json!("2")), live.clone());
        // …and does once the operator has seen what applying it gives.
        assert!(cache.up_to_date(Kind::Deployment, ns, "s-web", &body(json!("2"))));
        // Another body, or the object changed by someone else, is applied again.
        assert!(!cache.up_to_date(Kind::Deployment, ns, "s-web", &body(json!("3"))));
        assert!(!cache.up_to_date(Kind::Deployment, ns, "other", &body(json!("2"))));
        // An apply that gives exactly the body forgets the exception.
        cache.applied(Kind::Deployment, &body(json!(2)), live);
        assert!(!cache.up_to_date(Kind::Deployment, ns, "s-web", &body(json!("2"))));
    }

    #[test]
    fn objects_are_found_by_agency_and_system_as_they_come_and_go() {
        let named = |name: &str, agency: &str, system: Option<&str>| {
            let mut o = deployment();
            o.metadata.name = Some(name.into());
            let labels = o.metadata.labels.get_or_insert_with(Default::default);
            labels.insert(AGENCY_LABEL.into(), agency.into());
            match system {
                Some(s) => labels.insert(SYSTEM_LABEL.into(), s.into()),
                None => labels.remove(SYSTEM_LABEL),
            };
            Arc::new(Cached::new(Kind::Deployment, o))
        };
        let names = |v: Option<&Vec<Arc<Cached>>>| {
            let mut n: Vec<String> = v.into_iter().flatten().map(|c| c.name().to_string()).collect();
            n.sort();
            n
        };
        let mut kc = KindCache::default();
        kc.insert(named("a1", "mof", Some("s1")));
        kc.insert(named("a2", "mof", None));
        kc.insert(named("b1", "mot", Some("s2")));
        assert_eq!(names(kc.by_agency.get("mof")), ["a1", "a2"]);
        assert_eq!(names(kc.by_system.get("s1")), ["a1"]);
        // Relabelled: moves between entries; the old one is not kept.
        kc.insert(named("a1", "mot", Some("s2")));
        assert_eq!(names(kc.by_agency.get("mof")), ["a2"]);
        assert_eq!(names(kc.by_agency.get("mot")), ["a1", "b1"]);
        assert!(!kc.by_system.contains_key("s1"));
        kc.remove(&(Some("mof-prod".into()), "a2".into()));
        assert!(!kc.by_agency.contains_key("mof"));
        // A new list replaces everything.
        let list: HashMap<Key, Arc<Cached>> = [named("c1", "mof", Some("s3"))]
            .into_iter()
            .map(|c| ((c.namespace.clone(), c.name.clone()), c))
            .collect();
        kc.replace(list);
        assert_eq!(names(kc.by_agency.get("mof")), ["c1"]);
        assert!(!kc.by_agency.contains_key("mot") && !kc.by_system.contains_key("s2"));
        assert_eq!(names(kc.by_system.get("s3")), ["c1"]);
    }

    #[test]
    fn a_relist_reports_what_changed_while_the_watch_was_down() {
        let entry = |o: DynamicObject| {
            let c = Arc::new(Cached::new(Kind::Deployment, o));
            ((c.namespace.clone(), c.name.clone()), c)
        };
        let same = deployment();
        let mut became_ready = deployment();
        became_ready.metadata.name = Some("s-api".into());
        let mut was_not_ready = became_ready.clone();
        was_not_ready.data["status"]["readyReplicas"] = json!(0);
        let mut gone = deployment();
        gone.metadata.name = Some("s-old".into());
        let mut added = deployment();
        added.metadata.name = Some("s-new".into());
        // Fields the operator neither owns nor reads do not count as a change.
        let mut touched = deployment();
        touched.metadata.resource_version = Some("99".into());
        touched.data["status"]["collisionCount"] = json!(1);
        let old: HashMap<Key, Arc<Cached>> = [entry(same), entry(was_not_ready), entry(gone)].into_iter().collect();
        let new: HashMap<Key, Arc<Cached>> = [entry(touched), entry(became_ready), entry(added)]
            .into_iter()
            .collect();
        let mut names: Vec<String> = relisted(&old, &new).iter().map(|c| c.name().to_string()).collect();
        names.sort();
        assert_eq!(names, ["s-api", "s-new", "s-old"]);
        assert!(relisted(&new, &new).is_empty());
    }
}
