//! Starting the operator: CRD check, HTTP endpoint, controllers, graceful shutdown.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::controller::{self, Context, Settings};
use crate::metrics::Metrics;
use crate::server::{self, Health};

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A CRD is missing or not established.
    #[error(
        "CRD {name} is {state}. Install the CRDs first: `kubectl apply -f crds/` (or `govcloud-operator crd | kubectl apply -f -`, or install the Helm chart)"
    )]
    CrdMissing {
        /// CRD name.
        name: String,
        /// "not installed" or "not established yet".
        state: &'static str,
    },
    /// The API server could not be reached.
    #[error("cannot reach the Kubernetes API server: {0}")]
    Api(#[source] kube::Error),
    /// The HTTP endpoint failed.
    #[error("HTTP endpoint failed: {0}")]
    Http(#[source] std::io::Error),
    /// The hub's shared watches could not be set up (a bug; reported, never panics).
    #[error("cannot set up the shared watches of the hub's custom resources")]
    SharedWatches,
    /// Another replica took the leader lease: this one stopped its controllers.
    #[error("lost the leader lease; stopped (the replica restarts as a candidate)")]
    LeadershipLost,
}

/// Checks that every CRD of the project is installed and Established.
pub async fn check_crds(client: &Client) -> Result<(), StartError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in govcloud_api::all_crds() {
        let name = crd.metadata.name.unwrap_or_default();
        let get = || async { api.get_opt(&name).await };
        let found = get
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_times(6),
            )
            .when(|e| !matches!(e, kube::Error::Api(s) if s.code == 403 || s.code == 401))
            .await
            .map_err(StartError::Api)?;
        let Some(found) = found else {
            return Err(StartError::CrdMissing {
                name,
                state: "not installed",
            });
        };
        let established = found
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        if !established {
            return Err(StartError::CrdMissing {
                name,
                state: "not established yet",
            });
        }
    }
    Ok(())
}

/// Runs the operator until `shutdown` resolves: serves `/metrics`, `/healthz` and `/readyz`
/// on `listener` and runs every controller.
pub async fn run(
    client: Client,
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let metrics = Metrics::new();
    let health = Health::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = std::sync::Arc::new(stop_tx);
    let stop_on_shutdown = stop_tx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        info!("shutdown requested");
        let _ = stop_on_shutdown.send(true);
    });

    let addr = listener.local_addr().map_err(StartError::Http)?;
    let http = tokio::spawn(server::serve(listener, metrics.clone(), health.clone(), stopped()));
    info!(%addr, "serving /metrics, /healthz, /readyz");

    check_crds(&client).await?;
    health.set_crds_established();
    info!("CRDs installed and established");

    // With leader election, only the holder of the lease runs the controllers (and writes).
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(le) = settings.leader_election.clone() {
        tokio::select! {
            _ = le.acquire(&client) => {}
            _ = stopped() => return Ok(()),
        }
        metrics.leader.set(1);
        let (client, lost, stop) = (client.clone(), lost.clone(), stop_tx.clone());
        tokio::spawn(async move {
            le.hold(&client).await;
            lost.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = stop.send(true);
        });
    } else {
        metrics.leader.set(1);
    }

    // A hub-wide cache of DataCenterClusters, used for placement and reachability. Shared:
    // the AgencyCloud and TenancyRequest controllers are triggered by the same watch, after
    // the store has the change (with a watch of its own, an agency reconciled for a cluster
    // that had just become unreachable could read the store before the change and stay
    // Ready).
    let writer: kube::runtime::reflector::store::Writer<govcloud_api::DataCenterCluster> =
        kube::runtime::reflector::store::Writer::new_shared(crate::lenient::SHARED_BUFFER, ());
    let clusters = writer.as_reader();
    let (Some(cluster_events), Some(tenancy_cluster_events)) = (writer.subscribe(), writer.subscribe()) else {
        return Err(StartError::SharedWatches);
    };
    let ctx = Context::new(client, metrics, settings, clusters);
    let reflector = kube::runtime::reflector::reflector(
        writer,
        crate::lenient::events::<govcloud_api::DataCenterCluster>(
            ctx.client.clone(),
            Default::default(),
            ctx.lenient.clone(),
        )
        .backoff(crate::lenient::watch_backoff()),
    )
    .for_each(|_| futures::future::ready(()));
    let reflector = tokio::spawn(reflector);
    match controller::tenancy::install_hub_objects(&ctx.client).await {
        Ok(()) => ctx
            .approval_policy_installed
            .store(true, std::sync::atomic::Ordering::SeqCst),
        Err(e) => error!(
            error = %e,
            "cannot install the tenancy approval policy on the hub; approved TenancyRequests are not provisioned until it is installed"
        ),
    }
    match controller::tenancy::install_finalizer_policy(&ctx.client).await {
        Ok(Some(version)) => info!(
            policy = govcloud_core::hub::FINALIZER_POLICY,
            version, "new AgencyClouds, HostedSystems and BackupPolicies get their finalizer at admission"
        ),
        Ok(None) => info!(
            "the hub serves no MutatingAdmissionPolicy API (Kubernetes 1.34-1.35 without the MutatingAdmissionPolicy feature): the controllers add finalizers themselves, one more write per object"
        ),
        Err(e) => warn!(
            error = %e,
            "cannot install the finalizer admission policy on the hub; the controllers add finalizers themselves, one more write per object"
        ),
    }
    // One watch per kind of AgencyClouds, HostedSystems and BackupPolicies, shared by the
    // controllers that read it.
    let Some((streams, watches)) = controller::HubStreams::start(&ctx, cluster_events) else {
        reflector.abort();
        return Err(StartError::SharedWatches);
    };
    let dcc = controller::datacenter::run(ctx.clone(), health.pending_cache(), stopped());
    let agency = controller::agency::run(ctx.clone(), health.pending_cache(), stopped(), streams.agency);
    let tenancy = controller::tenancy::run(ctx.clone(), health.pending_cache(), stopped(), tenancy_cluster_events);
    let hosted = controller::hosted::run(ctx.clone(), health.pending_cache(), stopped(), streams.hosted);
    let backup = controller::backup::run(ctx.clone(), health.pending_cache(), stopped(), streams.backup);
    let reports = controller::report::run(ctx.clone(), health.pending_cache(), stopped());
    let scheduled_reports = tokio::spawn(controller::report::run_schedule(
        ctx.clone(),
        ctx.settings.daily_reports,
        ctx.settings.monthly_reports,
    ));
    let evidence = ctx
        .settings
        .evidence_retention
        .map(|r| tokio::spawn(controller::evidence::run_schedule(ctx.clone(), r)));
    let gauges = tokio::spawn(controller::utilization::run_metrics(
        ctx.clone(),
        Duration::from_secs(10),
    ));
    info!("controllers started");
    futures::join!(dcc, agency, tenancy, hosted, backup, reports);
    reflector.abort();
    for w in watches {
        w.abort();
    }
    gauges.abort();
    scheduled_reports.abort();
    if let Some(e) = evidence {
        e.abort();
    }
    info!("controllers stopped");
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), http).await {
        error!(error = %e, "HTTP endpoint failed");
    }
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(StartError::LeadershipLost);
    }
    Ok(())
}
