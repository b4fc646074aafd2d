//! The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

/// Shared health state: ready once the CRDs are established and every registered
/// cache has synced.
#[derive(Clone, Default)]
pub struct Health {
    crds: Arc<AtomicBool>,
    pending: Arc<AtomicUsize>,
}

/// One cache that must sync before the operator reports ready.
pub struct PendingCache(Arc<AtomicUsize>);

impl PendingCache {
    /// Marks the cache synced.
    pub fn synced(self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Health {
    /// Records that the CRDs are installed and established.
    pub fn set_crds_established(&self) {
        self.crds.store(true, Ordering::SeqCst);
    }
    /// Registers a cache that must sync before ready.
    pub fn pending_cache(&self) -> PendingCache {
        self.pending.fetch_add(1, Ordering::SeqCst);
        PendingCache(self.pending.clone())
    }
    /// Whether the operator is ready.
    pub fn is_ready(&self) -> bool {
        self.crds.load(Ordering::SeqCst) && self.pending.load(Ordering::SeqCst) == 0
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
}

/// Serves the endpoints on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn metrics_handler(
    State(state): State<AppState>,
    uri: axum::http::Uri,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render_only(&requested_names(uri.query())),
    )
}

/// The metric families named by `name[]` (or `name`) in a query string: `/metrics` renders
/// only those. Names are `[a-zA-Z_:][a-zA-Z0-9_:]*`, so nothing needs decoding but the
/// brackets.
fn requested_names(query: Option<&str>) -> Vec<String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            matches!(key, "name[]" | "name%5B%5D" | "name%5b%5d" | "name")
                .then(|| value.to_string())
                .filter(|v| !v.is_empty())
        })
        .collect()
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for CRDs and caches\n",
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_names_are_read_from_the_query() {
        let names = super::requested_names(Some(
            "name[]=govcloud_controller_reconciles_total&name%5B%5D=govcloud_leader&other=1&name[]=",
        ));
        assert_eq!(names, ["govcloud_controller_reconciles_total", "govcloud_leader"]);
        assert!(super::requested_names(None).is_empty());
        let m = crate::metrics::Metrics::new();
        m.leader.set(1);
        let _timer = m.reconcile_started("agencycloud");
        let only = m.render_only(&names);
        assert!(only.contains("govcloud_leader 1"), "{only}");
        assert!(
            only.contains("govcloud_controller_reconciles_total{controller=\"agencycloud\"} 1"),
            "{only}"
        );
        assert!(
            !only.contains("govcloud_controller_reconcile_duration_seconds"),
            "{only}"
        );
        assert!(m.render().contains("govcloud_controller_reconcile_duration_seconds"));
    }
}
