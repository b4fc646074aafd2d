//! Pure policy and arithmetic: no Kubernetes client, unit-tested without a cluster.

pub mod agency;
pub mod backup;
pub mod catalog;
pub mod cluster;
pub mod conditions;
pub mod credit_code;
pub mod evidence;
pub mod hosted;
pub mod hub;
pub mod levels;
pub mod net;
pub mod owned;
pub mod placement;
pub mod quantity;
pub mod rebuild;
pub mod report;
pub mod subset;
pub mod utilization;
