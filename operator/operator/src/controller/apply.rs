//! Server-side apply of desired children, skipping those the member cache shows are
//! already as desired.

use kube::Client;
use kube::api::Patch;

use super::members::{MemberCache, api};
use super::status::field_manager;
use crate::error::Result;
use govcloud_api::AgencyCloud;
use govcloud_core::agency::Child;

/// Applies children whose live copy differs; returns the names written.
pub(crate) async fn apply_children(
    controller: &'static str,
    metrics: &crate::metrics::Metrics,
    client: &Client,
    cache: Option<&MemberCache>,
    children: &[Child],
) -> Result<Vec<String>> {
    let synced = cache.is_some_and(|c| c.is_synced());
    let mut written = Vec::new();
    for child in children {
        let desired = without_type(&child.body);
        if synced && cache.is_some_and(|c| c.up_to_date(child.kind, child.namespace.as_deref(), &child.name, &desired))
        {
            continue;
        }
        tracing::debug!(kind = ?child.kind, name = %child.name, synced, "applying child that differs from the cache");
        metrics.child_applied(controller);
        let api = api(client, child.kind, child.namespace.as_deref());
        let returned = api
            .patch(
                &child.name,
                // The AgencyCloud controller's, also for the children of hosted systems
                // (the manager their fields have always been applied with).
                &field_manager::<AgencyCloud>(),
                &Patch::Apply(&child.body),
            )
            .await?;
        if let Some(c) = cache {
            c.applied(child.kind, &desired, returned);
        }
        written.push(format!("{}/{}", child.kind.gvk().2, child.name));
    }
    Ok(written)
}

/// The body without `apiVersion` and `kind`: objects from list responses in the caches
/// carry no type information, so those two fields are left out of the comparison.
fn without_type(body: &serde_json::Value) -> serde_json::Value {
    let mut b = body.clone();
    if let Some(m) = b.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    b
}
