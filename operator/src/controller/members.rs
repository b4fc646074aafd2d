//! Watches of the objects the operator manages on each member cluster.
//!
//! Per member, one reflector per child kind, restricted by label to what the operator
//! created (`app.kubernetes.io/managed-by=govcloud-operator`). The caches let reconciles
//! compare desired with live state without API calls (so a steady state costs nothing),
//! and every change (an edit or deletion by someone else) triggers a reconcile of the
//! owning agency: drift is repaired within seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::debug;

use crate::core::agency::{AGENCY_LABEL, Kind, MANAGED_BY, SYSTEM_LABEL};

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

/// Caches of one member cluster.
pub struct MemberCache {
    /// Client version it was built for (Secret uid/resourceVersion); a new one rebuilds it.
    pub version: String,
    stores: HashMap<Kind, Store<DynamicObject>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
    pub fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        let store = self.stores.get(&kind)?;
        let mut r = reflector::ObjectRef::new_with(name, api_resource(kind));
        if let Some(ns) = namespace {
            r = r.within(ns);
        }
        store.get(&r)
    }

    /// Whether every cache has finished its initial list.
    pub fn is_synced(&self) -> bool {
        // A reflector store only answers `wait_until_ready`; probe it without blocking.
        self.stores
            .values()
            .all(|s| futures::FutureExt::now_or_never(s.wait_until_ready()).is_some_and(|r| r.is_ok()))
    }

    /// Waits up to `timeout` for every cache to finish its initial list.
    pub async fn wait_synced(&self, timeout: std::time::Duration) -> bool {
        let all = futures::future::join_all(self.stores.values().map(|s| s.wait_until_ready()));
        // Readiness wakes one waiter only; poll again in short slices instead of one long wait.
        let deadline = tokio::time::Instant::now() + timeout;
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), all).await;
        while !self.is_synced() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        true
    }

    /// Every cached object of `kind` whose label `key` has `value`.
    pub fn owned_by_label(&self, kind: Kind, key: &str, value: &str) -> Vec<Arc<DynamicObject>> {
        self.stores
            .get(&kind)
            .map(|s| {
                s.state()
                    .into_iter()
                    .filter(|o| o.labels().get(key).map(String::as_str) == Some(value))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every cached object of `kind` labelled for `agency`.
    pub fn owned_by(&self, kind: Kind, agency: &str) -> Vec<Arc<DynamicObject>> {
        self.stores
            .get(&kind)
            .map(|s| {
                s.state()
                    .into_iter()
                    .filter(|o| o.labels().get(AGENCY_LABEL).map(String::as_str) == Some(agency))
                    .collect()
            })
            .unwrap_or_default()
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
    pub fn ensure_kinds(&self, cluster: &str, version: &str, client: &Client, kinds: &[Kind]) -> Arc<MemberCache> {
        let Ok(mut caches) = self.caches.lock() else {
            // A poisoned lock means a panic elsewhere; start an unshared cache rather than fail.
            return Arc::new(start(version, client, self.trigger.clone(), kinds));
        };
        if let Some(c) = caches.get(cluster)
            && c.version == version
        {
            return c.clone();
        }
        let cache = Arc::new(start(version, client, self.trigger.clone(), kinds));
        caches.insert(cluster.to_string(), cache.clone());
        cache
    }

    /// Stops watching a cluster.
    pub fn forget(&self, cluster: &str) {
        if let Ok(mut caches) = self.caches.lock() {
            caches.remove(cluster);
        }
    }
}

fn start(version: &str, client: &Client, trigger: Triggers, kinds: &[Kind]) -> MemberCache {
    let mut stores = HashMap::new();
    let mut tasks = Vec::new();
    let selector = format!("app.kubernetes.io/managed-by={MANAGED_BY}");
    for &kind in kinds {
        let writer = reflector::store::Writer::new(api_resource(kind));
        let reader = writer.as_reader();
        let wc = watcher::Config::default().labels(&selector);
        // managedFields are never read from the caches: dropped to keep them small.
        let objects = watcher(api(client, kind, None), wc).modify(|o| o.managed_fields_mut().clear());
        let stream = reflector::reflector(writer, objects).default_backoff();
        let mut trigger = trigger.clone();
        let namespaces = if kind == Kind::Namespace {
            None
        } else {
            stores.get(&Kind::Namespace).cloned()
        };
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let objects: Vec<DynamicObject> = match event {
                    Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::Delete(o)) => vec![o],
                    Ok(_) => continue,
                    Err(e) => {
                        debug!(?kind, error = %e, "member watch error (retrying with backoff)");
                        continue;
                    }
                };
                for o in objects {
                    if let (Some(system), Some(ns)) = (o.labels().get(SYSTEM_LABEL), o.namespace()) {
                        let _ = trigger.systems.send(format!("{ns}/{system}")).await;
                        continue;
                    }
                    let agency = o.labels().get(AGENCY_LABEL).cloned().or_else(|| {
                        // A shared object (ClusterRole, policy): reconcile any agency on the cluster.
                        namespaces.as_ref().and_then(|s: &Store<DynamicObject>| {
                            s.state().iter().find_map(|n| n.labels().get(AGENCY_LABEL).cloned())
                        })
                    });
                    if let Some(a) = agency {
                        let _ = trigger.agencies.send(a).await;
                    }
                }
            }
        }));
        stores.insert(kind, reader);
    }
    MemberCache {
        version: version.to_string(),
        stores,
        tasks,
    }
}
