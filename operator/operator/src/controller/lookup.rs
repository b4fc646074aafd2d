//! Lookups more than one controller needs, over the hub's caches and the member clients:
//! which agency owns a namespace, where a namespaced object's agency is placed, which
//! clusters can take an agency, whether a hub admission policy is in place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client, ResourceExt};

use super::context::Context;
use super::members::MemberCache;
use govcloud_api::NetworkZone;
use govcloud_api::agency::AgencyCloud;
use govcloud_api::conditions as types;
use govcloud_api::datacenter::DataCenterCluster;
use govcloud_core::agency as build;
use govcloud_core::conditions;
use govcloud_core::placement::{Candidate, Request};
use govcloud_core::quantity::Milli;

/// The agency whose environment namespace this is (from the AgencyCloud cache).
pub(crate) fn agency_of(ctx: &Context, namespace: &str) -> Option<Arc<AgencyCloud>> {
    let store = ctx.agencies.get()?;
    let owns = |a: &AgencyCloud| {
        a.status
            .as_ref()
            .is_some_and(|s| s.environments.iter().any(|e| e.namespace == namespace))
    };
    by_namespace(store, namespace, |a, _| owns(a)).or_else(|| store.state().into_iter().find(|a| owns(a)))
}

/// The agency named by a prefix of `namespace` before a `-` for which `pick(agency, rest)`
/// holds (`rest` is what follows the `-`). An environment's namespace is
/// `<agency>-<environment>`, so a few lookups by name replace a scan of every agency (a
/// scan per hosted system's reconcile was most of the operator's CPU in a resync of 5,000
/// systems).
fn by_namespace(
    store: &kube::runtime::reflector::Store<AgencyCloud>,
    namespace: &str,
    pick: impl Fn(&AgencyCloud, &str) -> bool,
) -> Option<Arc<AgencyCloud>> {
    namespace.match_indices('-').find_map(|(i, _)| {
        store
            .get(&kube::runtime::reflector::ObjectRef::new(&namespace[..i]))
            .filter(|a| pick(a, &namespace[i + 1..]))
    })
}

/// Whether an object in `namespace`, created at `created`, should wait quietly for its
/// agency instead of reporting "no agency": the namespace is an environment of an AgencyCloud
/// (by spec) whose provisioning has not reached this controller's cache yet, and the object
/// is less than [`SETTLE`] old. Objects created the moment their namespace appears would
/// otherwise each write a status that is outdated a second later.
pub(crate) fn settling(ctx: &Context, namespace: &str, created: Option<&Time>) -> bool {
    let young = created.is_some_and(|t| conditions::age(t) < SETTLE);
    young
        && ctx.agencies.get().is_some_and(|s| {
            by_namespace(s, namespace, |a, env| {
                a.spec.cloud.environments.iter().any(|e| e.name == env)
            })
            .is_some()
        })
}

/// See [`settling`].
pub(crate) const SETTLE: Duration = Duration::from_secs(30);

pub(crate) struct Target {
    pub(crate) client: Client,
    pub(crate) cache: Arc<MemberCache>,
    pub(crate) cluster: String,
    pub(crate) zone: NetworkZone,
    pub(crate) agency: Arc<AgencyCloud>,
}

pub(crate) async fn target(ctx: &Context, namespace: &str) -> std::result::Result<Target, (&'static str, String)> {
    ctx.caches_filled().await;
    let agency = agency_of(ctx, namespace).ok_or((
        "NoAgency",
        format!("Namespace {namespace} is not an environment of any provisioned AgencyCloud; create HostedSystems and BackupPolicies in one of your agency's namespaces."),
    ))?;
    let placement = agency
        .status
        .as_ref()
        .and_then(|s| s.placement.clone())
        .ok_or(("NotPlaced", "The agency cloud is not placed yet.".to_string()))?;
    let dcc = ctx
        .clusters
        .state()
        .into_iter()
        .find(|d| d.name_any() == placement.cluster)
        .ok_or((
            "ClusterNotRegistered",
            format!("Cluster {} is not registered.", placement.cluster),
        ))?;
    if dcc.status.as_ref().is_some_and(|s| {
        conditions::find(&s.conditions, types::REACHABLE).is_some_and(|c| c.status == conditions::FALSE)
    }) {
        return Err((
            "ClusterUnreachable",
            format!(
                "Cluster {} is unreachable; nothing was changed or deleted, retrying.",
                placement.cluster
            ),
        ));
    }
    let (client, version) = ctx.members.versioned_client_for(&dcc).await.map_err(|e| {
        (
            "ClusterUnreachable",
            format!("Cannot connect to cluster {}: {e}", placement.cluster),
        )
    })?;
    let cache = ctx.caches.ensure(&placement.cluster, &version, &client);
    cache.wait_synced(Duration::from_secs(10)).await;
    Ok(Target {
        client,
        cache,
        cluster: placement.cluster,
        zone: placement.zone,
        agency,
    })
}

/// Builds placement candidates from the cluster store and the quotas already placed.
pub fn placement_candidates(
    ctx: &Context,
    me: &str,
    reservations: &std::collections::HashMap<String, (String, Milli, Milli)>,
) -> Vec<Candidate> {
    let agencies = ctx.agencies.get().map(|s| s.state()).unwrap_or_default();
    // cluster → (cpu, memory, agencies with levels)
    type Placed = (Milli, Milli, Vec<(String, u8)>);
    let mut placed: BTreeMap<String, Placed> = BTreeMap::new();
    for a in &agencies {
        let name = a.name_any();
        if name == me {
            continue;
        }
        let Some(p) = a.status.as_ref().and_then(|s| s.placement.as_ref()) else {
            continue;
        };
        let (cpu, mem) = ctx.quota_totals.of(a);
        let e = placed.entry(p.cluster.clone()).or_default();
        e.0 += cpu;
        e.1 += mem;
        e.2.push((name, a.spec.cloud.security_level));
    }
    for (agency, (cluster, cpu, mem)) in reservations {
        if agency == me
            || agencies
                .iter()
                .any(|a| a.name_any() == *agency && a.status.as_ref().is_some_and(|s| s.placement.is_some()))
        {
            continue;
        }
        let level = agencies
            .iter()
            .find(|a| a.name_any() == *agency)
            .map(|a| a.spec.cloud.security_level)
            .unwrap_or(1);
        let e = placed.entry(cluster.clone()).or_default();
        e.0 += *cpu;
        e.1 += *mem;
        e.2.push((agency.clone(), level));
    }
    ctx.clusters
        .state()
        .iter()
        .map(|d| {
            let (pc, pm, pa) = placed.remove(&d.name_any()).unwrap_or_default();
            candidate(d, pc, pm, pa)
        })
        .collect()
}

/// A cluster as a placement candidate, with what is placed on it already.
pub(crate) fn candidate(
    d: &DataCenterCluster,
    placed_cpu: Milli,
    placed_memory: Milli,
    agencies: Vec<(String, u8)>,
) -> Candidate {
    let st = d.status.clone().unwrap_or_default();
    let alloc = st.allocatable.unwrap_or_default();
    let q = |v: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        v.and_then(|q| Milli::parse(&q.0).ok()).unwrap_or_default()
    };
    Candidate {
        name: d.name_any(),
        region: d.spec.region.clone(),
        zone: d.spec.zone,
        max_level: d.spec.max_security_level,
        schedulable: d.spec.schedulable,
        ready: conditions::is_true(&st.conditions, types::READY),
        labels: d.labels().clone(),
        allocatable_cpu: q(alloc.cpu),
        allocatable_memory: q(alloc.memory),
        overcommit_cpu: d.spec.overcommit.cpu,
        overcommit_memory: d.spec.overcommit.memory,
        placed_cpu,
        placed_memory,
        agencies,
    }
}

pub(crate) fn request_for(name: &str, ac: &AgencyCloud) -> Request {
    let (cpu, memory) = build::total_quota(&ac.spec.cloud);
    let hints = &ac.spec.cloud.placement;
    Request {
        agency: name.to_string(),
        level: ac.spec.cloud.security_level,
        zone: ac.spec.cloud.zone,
        cpu,
        memory,
        cluster: hints.cluster.clone(),
        region: hints.region.clone(),
        selector: hints.cluster_selector.clone(),
    }
}

/// Whether the approval policy and its binding exist on the hub right now (checked before
/// acting on an approval: without them nothing proves who approved).
pub(crate) async fn policy_present(client: &kube::Client, name: &str) -> bool {
    use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
    let policy = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .get_opt(name)
        .await;
    let binding = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .get_opt(name)
        .await;
    matches!((policy, binding), (Ok(Some(_)), Ok(Some(_))))
}
