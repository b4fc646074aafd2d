//! govcloud-operator: a Kubernetes operator for a national government data center.
//!
//! Layout follows the "pure core, thin edges" rule: [`core`] holds policy and
//! arithmetic with no Kubernetes client; [`controller`] holds the reconcilers that
//! read from the API, call the core, apply the result and write status.

// kube-derive `printcolumn(...)` attributes repeat `type_ = ...`, which this lint misreads.
#![allow(clippy::duplicated_attributes)]

pub mod api;
pub mod apidoc;
pub mod controller;
pub mod core;
pub mod error;
pub mod leader;
pub mod lenient;
pub mod member;
pub mod metrics;
pub mod runtime;
pub mod server;
