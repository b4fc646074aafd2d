//! govcloud-operator: a Kubernetes operator for a national government data center.
//!
//! Layout follows the "pure core, thin edges" rule: the `govcloud-api` crate holds the
//! custom resource types, `govcloud-core` the policy and arithmetic with no Kubernetes
//! client; this crate's [`controller`] holds the reconcilers that read from the API, call
//! the core, apply the result and write status.

pub mod apidoc;
pub mod controller;
pub mod error;
pub mod leader;
pub mod lenient;
pub mod member;
pub mod metrics;
pub mod rebuild;
pub mod runtime;
pub mod server;
