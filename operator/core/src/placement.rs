//! Placement of an agency cloud onto a data-center cluster.
//!
//! A cluster is eligible when all of these hold, checked in this order (the first failing
//! rule is the reason reported for that cluster):
//!
//! 1. it matches the placement hints (cluster name, region, label selector);
//! 2. same network zone as the agency;
//! 3. certified level ≥ the agency's level (and level-4 agencies only on the internal zone);
//! 4. `spec.schedulable` is true and the cluster is Ready;
//! 5. dedication: a level-4 agency needs a cluster with no other agency, and a cluster that
//!    hosts a level-4 agency takes no other;
//! 6. capacity: allocatable × overcommit − quotas already placed ≥ requested, for CPU and memory.
//!
//! Among eligible clusters the score is the smaller of the CPU and memory fractions left
//! free after placing (spreads load; in per-mille), highest first; ties go to the
//! lexicographically smallest name, so the result is deterministic.

use super::levels;
use super::quantity::Milli;
use govcloud_api::NetworkZone;

/// What placement needs to know about a cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// DataCenterCluster name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: NetworkZone,
    /// Certified level.
    pub max_level: u8,
    /// `spec.schedulable`.
    pub schedulable: bool,
    /// Ready condition is True.
    pub ready: bool,
    /// Labels of the DataCenterCluster object.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Allocatable CPU.
    pub allocatable_cpu: Milli,
    /// Allocatable memory.
    pub allocatable_memory: Milli,
    /// CPU overcommit ratio.
    pub overcommit_cpu: f64,
    /// Memory overcommit ratio.
    pub overcommit_memory: f64,
    /// Sum of CPU quotas of the agencies already placed here (excluding the one placed now).
    pub placed_cpu: Milli,
    /// Sum of memory quotas already placed here.
    pub placed_memory: Milli,
    /// Agencies already placed here (excluding the one placed now), with their levels.
    pub agencies: Vec<(String, u8)>,
}

/// What the agency asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Agency cloud name.
    pub agency: String,
    /// Security level.
    pub level: u8,
    /// Zone.
    pub zone: NetworkZone,
    /// Total CPU quota over all environments.
    pub cpu: Milli,
    /// Total memory quota over all environments.
    pub memory: Milli,
    /// Hint: only this cluster.
    pub cluster: Option<String>,
    /// Hint: only clusters in this region.
    pub region: Option<String>,
    /// Hint: only clusters carrying all these labels.
    pub selector: std::collections::BTreeMap<String, String>,
}

/// Why a cluster cannot take the agency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Cluster name.
    pub cluster: String,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Plain-language explanation.
    pub message: String,
}

/// The outcome of evaluating every cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The chosen cluster, if any fits.
    pub chosen: Option<String>,
    /// Eligible clusters with their scores, best first.
    pub eligible: Vec<(String, i64)>,
    /// Clusters that cannot take it, by name.
    pub rejected: Vec<Rejection>,
}

impl Decision {
    /// One line per rejected cluster: `name: message`.
    pub fn explain(&self) -> String {
        self.rejected
            .iter()
            .map(|r| format!("{}: {}", r.cluster, r.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn cpu(m: Milli) -> String {
    m.to_cpu_string()
}

fn mem(m: Milli) -> String {
    m.to_bytes_string()
}

/// Evaluates one cluster: `Ok(score)` or the first rule it breaks.
pub fn evaluate(req: &Request, c: &Candidate) -> Result<i64, Rejection> {
    let reject = |reason: &'static str, message: String| Rejection {
        cluster: c.name.clone(),
        reason,
        message,
    };
    if let Some(want) = &req.cluster
        && *want != c.name
    {
        return Err(reject("NotRequested", format!("placement.cluster asks for {want}")));
    }
    if let Some(region) = &req.region
        && *region != c.region
    {
        return Err(reject(
            "RegionMismatch",
            format!("in region {}, placement.region asks for {region}", c.region),
        ));
    }
    if let Some((k, v)) = req.selector.iter().find(|(k, v)| c.labels.get(*k) != Some(*v)) {
        return Err(reject(
            "SelectorMismatch",
            format!("does not carry label {k}={v} from placement.clusterSelector"),
        ));
    }
    if c.zone != req.zone {
        return Err(reject(
            "ZoneMismatch",
            format!("is on the {} zone, the agency is on the {} zone", c.zone, req.zone),
        ));
    }
    let rules = levels::rules(req.level);
    if rules.internal_zone_only && c.zone != NetworkZone::Internal {
        return Err(reject(
            "ZoneMismatch",
            format!("level {} agencies may only be on the internal zone", req.level),
        ));
    }
    if c.max_level < rules.min_cluster_level {
        return Err(reject(
            "LevelTooLow",
            format!(
                "is certified for level {} but the agency is level {}",
                c.max_level, req.level
            ),
        ));
    }
    if !c.schedulable {
        return Err(reject(
            "Unschedulable",
            "is marked schedulable: false (draining)".into(),
        ));
    }
    if !c.ready {
        return Err(reject("NotReady", "is not Ready (see its conditions)".into()));
    }
    let others: Vec<&(String, u8)> = c.agencies.iter().filter(|(a, _)| *a != req.agency).collect();
    if rules.dedicated && !others.is_empty() {
        return Err(reject(
            "NotDedicated",
            format!(
                "already hosts {} other agencies; level {} needs a dedicated cluster",
                others.len(),
                req.level
            ),
        ));
    }
    if let Some((a, l)) = others.iter().find(|(_, l)| levels::rules(*l).dedicated) {
        return Err(reject(
            "DedicatedToOther",
            format!("is dedicated to level-{l} agency {a}"),
        ));
    }
    let cpu_cap = c.allocatable_cpu.scale(c.overcommit_cpu);
    let mem_cap = c.allocatable_memory.scale(c.overcommit_memory);
    let cpu_free = cpu_cap - c.placed_cpu;
    let mem_free = mem_cap - c.placed_memory;
    if req.cpu > cpu_free {
        return Err(reject(
            "InsufficientCPU",
            format!(
                "has {} CPU left to place (allocatable × overcommit − placed quotas), {} requested",
                cpu(cpu_free.max(Milli::ZERO)),
                cpu(req.cpu)
            ),
        ));
    }
    if req.memory > mem_free {
        return Err(reject(
            "InsufficientMemory",
            format!(
                "has {} memory left to place, {} requested",
                mem(mem_free.max(Milli::ZERO)),
                mem(req.memory)
            ),
        ));
    }
    let frac = |free: Milli, req: Milli, cap: Milli| -> i64 {
        if cap.0 <= 0 {
            return 0;
        }
        i64::try_from((free.0 - req.0) * 1000 / cap.0).unwrap_or(0)
    };
    Ok(frac(cpu_free, req.cpu, cpu_cap).min(frac(mem_free, req.memory, mem_cap)))
}

/// Evaluates every cluster and picks the best.
pub fn decide(req: &Request, candidates: &[Candidate]) -> Decision {
    let mut eligible = Vec::new();
    let mut rejected = Vec::new();
    for c in candidates {
        match evaluate(req, c) {
            Ok(score) => eligible.push((c.name.clone(), score)),
            Err(r) => rejected.push(r),
        }
    }
    eligible.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rejected.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    Decision {
        chosen: eligible.first().map(|e| e.0.clone()),
        eligible,
        rejected,
    }
}

/// Re-checks an agency on the cluster it is already placed on (placement is sticky): only
/// capacity matters, since the agency's data is there. Returns the rejection if its
/// (possibly increased) quota does not fit.
pub fn recheck(req: &Request, c: &Candidate) -> Result<(), Rejection> {
    let cpu_free = c.allocatable_cpu.scale(c.overcommit_cpu) - c.placed_cpu;
    let mem_free = c.allocatable_memory.scale(c.overcommit_memory) - c.placed_memory;
    let reject = |reason, message| Rejection {
        cluster: c.name.clone(),
        reason,
        message,
    };
    if req.cpu > cpu_free {
        return Err(reject(
            "InsufficientCPU",
            format!(
                "{} CPU requested but only {} left on {}",
                cpu(req.cpu),
                cpu(cpu_free.max(Milli::ZERO)),
                c.name
            ),
        ));
    }
    if req.memory > mem_free {
        return Err(reject(
            "InsufficientMemory",
            format!(
                "{} memory requested but only {} left on {}",
                mem(req.memory),
                mem(mem_free.max(Milli::ZERO)),
                c.name
            ),
        ));
    }
    Ok(())
}

/// Where a placed cloud disagrees with its own `spec.placement` (edited after placement,
/// which never moves: the agency's data is on the cluster). One message per hint, naming
/// the field and saying what to do; empty when the spec still describes the placement.
pub fn hint_conflicts(
    hints: Option<&govcloud_api::agency::PlacementHints>,
    cluster: &str,
    region: &str,
    cluster_labels: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let Some(h) = hints else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(c) = h.cluster.as_deref().filter(|c| *c != cluster) {
        out.push(format!(
            "spec.placement.cluster is {c} but the cloud is placed on {cluster}; set it back to {cluster}"
        ));
    }
    if let Some(r) = h.region.as_deref().filter(|r| *r != region) {
        out.push(format!(
            "spec.placement.region is {r} but the cloud is placed in region {region} (on {cluster}); set it back to {region}"
        ));
    }
    let missing: Vec<String> = h
        .cluster_selector
        .iter()
        .filter(|(k, v)| cluster_labels.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !missing.is_empty() {
        out.push(format!(
            "spec.placement.clusterSelector asks for {} but {cluster}, where the cloud is placed, does not carry it; remove it or label the cluster",
            missing.join(",")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placed_cloud_reports_hints_it_no_longer_matches() {
        use govcloud_api::agency::PlacementHints;
        let labels: std::collections::BTreeMap<String, String> = [("tier".to_string(), "gold".to_string())].into();
        let same = PlacementHints {
            cluster: Some("bj-1".into()),
            region: Some("beijing".into()),
            cluster_selector: [("tier".to_string(), "gold".to_string())].into(),
        };
        assert!(hint_conflicts(Some(&same), "bj-1", "beijing", &labels).is_empty());
        assert!(hint_conflicts(None, "bj-1", "beijing", &labels).is_empty());
        let moved = PlacementHints {
            cluster: Some("sh-1".into()),
            region: Some("shanghai".into()),
            cluster_selector: [("tier".to_string(), "silver".to_string())].into(),
        };
        let p = hint_conflicts(Some(&moved), "bj-1", "beijing", &labels);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("spec.placement.cluster is sh-1 but the cloud is placed on bj-1"));
        assert!(p[1].starts_with("spec.placement.region is shanghai but the cloud is placed in region beijing"));
        assert!(p[2].starts_with("spec.placement.clusterSelector asks for tier=silver"));
    }

    fn gi(n: i128) -> Milli {
        Milli(n * (1 << 30) * 1000)
    }
    fn cores(n: i128) -> Milli {
        Milli(n * 1000)
    }

    fn cluster(name: &str, zone: NetworkZone, level: u8) -> Candidate {
        Candidate {
            name: name.into(),
            region: "beijing".into(),
            zone,
            max_level: level,
            schedulable: true,
            ready: true,
            labels: Default::default(),
            allocatable_cpu: cores(96),
            allocatable_memory: gi(384),
            overcommit_cpu: 1.0,
            overcommit_memory: 1.0,
            placed_cpu: Milli::ZERO,
            placed_memory: Milli::ZERO,
            agencies: vec![],
        }
    }

    fn request(level: u8, zone: NetworkZone) -> Request {
        Request {
            agency: "mof".into(),
            level,
            zone,
            cpu: cores(8),
            memory: gi(32),
            cluster: None,
            region: None,
            selector: Default::default(),
        }
    }

    use NetworkZone::{External, Internal};

    #[test]
    fn zone_mismatch_is_reported_per_cluster() {
        let d = decide(&request(2, External), &[cluster("a", Internal, 4)]);
        assert_eq!(d.chosen, None);
        assert_eq!(d.rejected[0].reason, "ZoneMismatch");
        assert!(d.explain().contains("a: is on the internal zone"));
    }

    #[test]
    fn level_above_every_cluster() {
        let d = decide(
            &request(3, External),
            &[cluster("a", External, 2), cluster("b", External, 1)],
        );
        assert_eq!(d.chosen, None);
        assert!(d.rejected.iter().all(|r| r.reason == "LevelTooLow"));
    }

    #[test]
    fn exact_fit_is_accepted_and_one_more_is_not() {
        let mut c = cluster("a", External, 3);
        c.placed_cpu = cores(88);
        c.placed_memory = gi(352);
        let d = decide(&request(2, External), std::slice::from_ref(&c));
        assert_eq!(d.chosen.as_deref(), Some("a"));
        assert_eq!(d.eligible[0].1, 0);
        c.placed_cpu = cores(88) + Milli(1);
        let d = decide(&request(2, External), &[c]);
        assert_eq!(d.rejected[0].reason, "InsufficientCPU");
    }

    #[test]
    fn overcommit_extends_capacity() {
        let mut c = cluster("a", External, 3);
        c.placed_cpu = cores(96);
        assert_eq!(decide(&request(2, External), std::slice::from_ref(&c)).chosen, None);
        c.overcommit_cpu = 2.0;
        assert_eq!(decide(&request(2, External), &[c]).chosen.as_deref(), Some("a"));
    }

    #[test]
    fn level_4_needs_a_dedicated_internal_cluster() {
        let mut shared = cluster("shared", Internal, 4);
        shared.agencies = vec![("other".into(), 2)];
        let empty = cluster("empty", Internal, 4);
        let ext = cluster("ext", External, 4);
        let d = decide(&request(4, Internal), &[shared, empty.clone(), ext]);
        assert_eq!(d.chosen.as_deref(), Some("empty"));
        assert!(
            d.rejected
                .iter()
                .any(|r| r.cluster == "shared" && r.reason == "NotDedicated")
        );
        // Once taken, the cluster accepts no other agency.
        let mut taken = empty;
        taken.agencies = vec![("mof".into(), 4)];
        let mut other = request(2, Internal);
        other.agency = "mot".into();
        let d = decide(&other, &[taken.clone()]);
        assert_eq!(d.rejected[0].reason, "DedicatedToOther");
        // The agency itself still fits on its own cluster.
        assert!(evaluate(&request(4, Internal), &taken).is_ok());
    }

    #[test]
    fn score_spreads_and_ties_break_by_name() {
        let mut busy = cluster("a-busy", External, 3);
        busy.placed_cpu = cores(48);
        let idle = cluster("b-idle", External, 3);
        let twin = cluster("c-idle", External, 3);
        let d = decide(&request(2, External), &[twin, busy, idle]);
        assert_eq!(d.chosen.as_deref(), Some("b-idle"));
        assert_eq!(
            d.eligible.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            ["b-idle", "c-idle", "a-busy"]
        );
    }

    #[test]
    fn hints_filter_clusters() {
        let mut a = cluster("a", External, 3);
        a.labels.insert("tier".into(), "gold".into());
        let mut b = cluster("b", External, 3);
        b.region = "guizhou".into();
        let mut req = request(2, External);
        req.region = Some("guizhou".into());
        assert_eq!(decide(&req, &[a.clone(), b.clone()]).chosen.as_deref(), Some("b"));
        req.region = None;
        req.selector.insert("tier".into(), "gold".into());
        assert_eq!(decide(&req, &[a.clone(), b.clone()]).chosen.as_deref(), Some("a"));
        req.selector.clear();
        req.cluster = Some("b".into());
        assert_eq!(decide(&req, &[a, b]).chosen.as_deref(), Some("b"));
    }

    #[test]
    fn unschedulable_and_not_ready_are_skipped() {
        let mut a = cluster("a", External, 3);
        a.schedulable = false;
        let mut b = cluster("b", External, 3);
        b.ready = false;
        let d = decide(&request(2, External), &[a, b]);
        assert_eq!(
            d.rejected.iter().map(|r| r.reason).collect::<Vec<_>>(),
            ["Unschedulable", "NotReady"]
        );
    }

    #[test]
    fn recheck_refuses_growth_that_does_not_fit() {
        let mut c = cluster("a", External, 3);
        c.placed_cpu = cores(90);
        let mut req = request(2, External);
        assert!(recheck(&req, &c).is_err());
        req.cpu = cores(6);
        assert!(recheck(&req, &c).is_ok());
    }
}
