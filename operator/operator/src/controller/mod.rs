//! Reconcilers. Each reads from the API (dereference), calls the pure core (validate,
//! build), applies with server-side apply and writes one status patch when it changed.

pub mod agency;
pub mod apply;
pub mod backup;
pub mod context;
pub mod datacenter;
pub mod evidence;
pub mod hosted;
pub mod lookup;
pub mod members;
pub mod report;
pub mod status;
pub mod streams;
pub mod tenancy;
pub mod utilization;

pub use context::{Context, FIELD_MANAGER_PREFIX, Settings};
pub use streams::HubStreams;
