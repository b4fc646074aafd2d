//! Pure logic of the DataCenterCluster controller: node totals, conditions, probe backoff.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::conditions::Desired;
use super::quantity::Milli;
use govcloud_api::conditions as types;
use govcloud_api::datacenter::ResourceTotals;

/// Condition reasons of DataCenterCluster.
pub mod reasons {
    /// The API server answered.
    pub const API_SERVER_ANSWERED: &str = "APIServerAnswered";
    /// Reachable with at least one Ready node.
    pub const NODES_READY: &str = "NodesReady";
    /// Reachable but no node is Ready.
    pub const NO_READY_NODES: &str = "NoReadyNodes";
    /// Not reachable (the Reachable reason says why).
    pub const UNREACHABLE: &str = "Unreachable";
}

/// CPU, memory and pods summed over nodes, as exact integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// CPU in millicores.
    pub cpu: Milli,
    /// Memory in millibytes.
    pub memory: Milli,
    /// Pods in milli-pods.
    pub pods: Milli,
}

impl Totals {
    /// The status representation.
    pub fn to_status(self) -> ResourceTotals {
        ResourceTotals {
            cpu: Some(Quantity(self.cpu.to_cpu_string())),
            memory: Some(Quantity(self.memory.to_bytes_string())),
            pods: Some(Quantity(self.pods.to_count_string())),
        }
    }

    fn add_list(&mut self, list: Option<&BTreeMap<String, Quantity>>) {
        let get = |k: &str| {
            list.and_then(|l| l.get(k))
                .and_then(|q| Milli::parse(&q.0).ok())
                .unwrap_or_default()
        };
        self.cpu += get("cpu");
        self.memory += get("memory");
        self.pods += get("pods");
    }
}

/// What the nodes of a cluster add up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSummary {
    /// All nodes.
    pub count: i32,
    /// Nodes whose Ready condition is True.
    pub ready: i32,
    /// Sum of capacity.
    pub capacity: Totals,
    /// Sum of allocatable, over Ready and schedulable nodes only.
    pub allocatable: Totals,
}

/// Sums node capacity; allocatable counts only Ready, schedulable nodes (what placement can use).
/// Quantities a node reports in a form that cannot be parsed count as zero.
pub fn summarize_nodes(nodes: &[Node]) -> NodeSummary {
    let mut s = NodeSummary::default();
    for node in nodes {
        s.count += 1;
        let status = node.status.as_ref();
        let ready = status
            .and_then(|st| st.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let cordoned = node.spec.as_ref().and_then(|sp| sp.unschedulable).unwrap_or(false);
        s.capacity.add_list(status.and_then(|st| st.capacity.as_ref()));
        if ready {
            s.ready += 1;
            if !cordoned {
                s.allocatable.add_list(status.and_then(|st| st.allocatable.as_ref()));
            }
        }
    }
    s
}

/// Conditions for a cluster that answered.
pub fn reachable_conditions(summary: &NodeSummary, version: &str) -> Vec<Desired<'static>> {
    let reachable = Desired::new(
        types::REACHABLE,
        true,
        reasons::API_SERVER_ANSWERED,
        format!("API server answered (Kubernetes {version})."),
    );
    let ready = if summary.ready > 0 {
        Desired::new(
            types::READY,
            true,
            reasons::NODES_READY,
            format!("{}/{} nodes are Ready.", summary.ready, summary.count),
        )
    } else {
        Desired::new(
            types::READY,
            false,
            reasons::NO_READY_NODES,
            format!(
                "None of the {} nodes is Ready; agency clouds cannot be placed here until nodes join and become Ready.",
                summary.count
            ),
        )
    };
    vec![reachable, ready]
}

/// Conditions for a cluster that did not answer.
pub fn unreachable_conditions(reason: &'static str, message: &str) -> Vec<Desired<'static>> {
    vec![
        Desired::new(types::REACHABLE, false, reason, message.to_string()),
        Desired::new(
            types::READY,
            false,
            reasons::UNREACHABLE,
            "The cluster is not reachable (see the Reachable condition). Nothing placed on it is changed or deleted; the operator keeps retrying.",
        ),
    ]
}

/// Delay before the next probe after `failures` consecutive failed probes:
/// 2 s doubling up to `max`.
pub fn probe_backoff(failures: u32, max: Duration) -> Duration {
    let secs = 2u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_secs(secs).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(yaml: &str) -> Node {
        match serde_yaml::from_str(yaml) {
            Ok(n) => n,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    const READY: &str = r#"
metadata: {name: a}
status:
  capacity: {cpu: "32", memory: 128Gi, pods: "110"}
  allocatable: {cpu: 31500m, memory: 127Gi, pods: "110"}
  conditions: [{type: Ready, status: "True"}]
"#;
    const NOT_READY: &str = r#"
metadata: {name: b}
status:
  capacity: {cpu: "32", memory: 128Gi, pods: "110"}
  allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
  conditions: [{type: Ready, status: "False"}]
"#;
    const CORDONED: &str = r#"
metadata: {name: c}
spec: {unschedulable: true}
status:
  capacity: {cpu: "8", memory: 16Gi, pods: "10"}
  allocatable: {cpu: "8", memory: 16Gi, pods: "10"}
  conditions: [{type: Ready, status: "True"}]
"#;

    #[test]
    fn sums_capacity_and_ready_allocatable() {
        let s = summarize_nodes(&[node(READY), node(READY), node(NOT_READY), node(CORDONED)]);
        assert_eq!((s.count, s.ready), (4, 3));
        let cap = s.capacity.to_status();
        assert_eq!(cap.cpu, Some(Quantity("104".into())));
        assert_eq!(cap.memory, Some(Quantity("400Gi".into())));
        let alloc = s.allocatable.to_status();
        assert_eq!(alloc.cpu, Some(Quantity("63".into())));
        assert_eq!(alloc.memory, Some(Quantity("254Gi".into())));
        assert_eq!(alloc.pods, Some(Quantity("220".into())));
    }

    #[test]
    fn bad_quantities_count_as_zero() {
        let s = summarize_nodes(&[node("metadata: {name: x}\nstatus: {capacity: {cpu: lots}}")]);
        assert_eq!(s.capacity.cpu, Milli::ZERO);
        assert_eq!(s.ready, 0);
    }

    #[test]
    fn no_ready_nodes_is_not_ready() {
        let s = summarize_nodes(&[node(NOT_READY)]);
        let c = reachable_conditions(&s, "v1.34.4");
        assert_eq!(c[1].status, "False");
        assert_eq!(c[1].reason, reasons::NO_READY_NODES);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let max = Duration::from_secs(30);
        assert_eq!(probe_backoff(1, max), Duration::from_secs(2));
        assert_eq!(probe_backoff(2, max), Duration::from_secs(4));
        assert_eq!(probe_backoff(4, max), Duration::from_secs(16));
        assert_eq!(probe_backoff(10, max), max);
        assert_eq!(probe_backoff(u32::MAX, max), max);
    }
}
