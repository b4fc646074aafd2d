//! Utilization: the live per-cluster and per-agency gauges, refreshed from the caches.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;

use super::Context;
use crate::core::utilization as util;

/// Recomputes `govcloud_cluster_resource` and `govcloud_agency_systems` from the caches.
pub fn refresh_metrics(ctx: &Context) {
    let (Some(agencies), Some(systems)) = (ctx.agencies.get(), ctx.systems.get()) else {
        return;
    };
    let agencies: Vec<_> = agencies.state().iter().map(|a| (**a).clone()).collect();
    let systems: Vec<_> = systems.state().iter().map(|s| (**s).clone()).collect();
    let clusters: Vec<_> = ctx.clusters.state().iter().map(|d| (**d).clone()).collect();
    let rows = util::agency_rows(&agencies, &systems, None, 0.0);
    ctx.metrics.cluster_resource.reset();
    for c in util::cluster_rows(&clusters, &rows) {
        for (kind, t) in [
            ("capacity", &c.capacity),
            ("allocatable", &c.allocatable),
            ("allocated", &c.allocated),
            ("used", &c.used),
        ] {
            for (resource, v) in t.by_resource() {
                ctx.metrics
                    .cluster_resource
                    .with_label_values(&[&c.cluster, &c.region, &c.zone, resource, kind])
                    .set(v);
            }
        }
    }
    ctx.metrics.agency_systems_state.reset();
    for a in &agencies {
        let name = a.name_any();
        for env in a.status.iter().flat_map(|s| s.environments.iter()) {
            let (mut total, mut ready) = (0, 0);
            for s in systems
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(env.namespace.as_str()))
            {
                total += 1;
                let ok = s.status.as_ref().is_some_and(|st| {
                    st.conditions
                        .iter()
                        .any(|c| c.type_ == "Available" && c.status == "True")
                });
                ready += i64::from(ok);
            }
            let m = &ctx.metrics.agency_systems_state;
            m.with_label_values(&[&name, &env.name, "total"]).set(total);
            m.with_label_values(&[&name, &env.name, "ready"]).set(ready);
        }
    }
}

/// Refreshes the utilization gauges every `every` until the task is dropped.
pub async fn run_metrics(ctx: Arc<Context>, every: Duration) {
    loop {
        refresh_metrics(&ctx);
        tokio::time::sleep(every).await;
    }
}
