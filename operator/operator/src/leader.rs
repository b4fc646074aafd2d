//! Leader election on a `coordination.k8s.io/v1` Lease: with several replicas only the
//! holder runs the controllers (and so writes); a replica that loses the lease stops.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tracing::{info, warn};

/// Where the lease is and who we are.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease (the operator's).
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (pod name, or host and process id).
    pub identity: String,
    /// A holder that has not renewed for this long has lost the lease.
    pub lease_duration: Duration,
    /// How often the holder renews (and candidates retry).
    pub retry_period: Duration,
}

impl LeaderElection {
    /// Defaults: lease `govcloud-operator`, 10 s lease, renewed every 2 s.
    pub fn new(namespace: &str, identity: &str) -> Self {
        LeaderElection {
            namespace: namespace.to_string(),
            name: "govcloud-operator".into(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn api(&self, client: &Client) -> Api<Lease> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    /// One attempt to take or renew the lease: true when we hold it afterwards. Writes use
    /// the read resourceVersion, so two candidates cannot both win.
    pub async fn try_acquire(&self, client: &Client) -> Result<bool, kube::Error> {
        let api = self.api(client);
        let now = Timestamp::now();
        let secs = i32::try_from(self.lease_duration.as_secs()).unwrap_or(15);
        match api.get_opt(&self.name).await? {
            None => {
                let mut lease = Lease::default();
                lease.metadata.name = Some(self.name.clone());
                lease.metadata.namespace = Some(self.namespace.clone());
                lease.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                });
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let duration = i64::from(spec.lease_duration_seconds.unwrap_or(secs));
                let expired = spec
                    .renew_time
                    .as_ref()
                    .is_none_or(|r| r.0.as_second() + duration < now.as_second());
                let mine = holder == self.identity;
                if !(mine || holder.is_empty() || expired) {
                    return Ok(false);
                }
                let mut next = spec;
                if !mine {
                    next.acquire_time = Some(MicroTime(now));
                    next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
                    next.holder_identity = Some(self.identity.clone());
                }
                next.renew_time = Some(MicroTime(now));
                next.lease_duration_seconds = Some(secs);
                lease.spec = Some(next);
                match api.replace(&lease.name_any(), &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self, client: &Client) {
        info!(identity = %self.identity, lease = %self.name, "waiting to become the leader");
        loop {
            match self.try_acquire(client).await {
                Ok(true) => {
                    info!(identity = %self.identity, "became the leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot read or take the leader lease; retrying"),
            }
            tokio::time::sleep(self.retry_period).await;
        }
    }

    /// Renews the lease until it is lost (someone else holds it, or renewals failed for a
    /// whole lease duration); then returns.
    pub async fn hold(&self, client: &Client) {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry_period).await;
            match self.try_acquire(client).await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => {
                    warn!(identity = %self.identity, "another replica holds the lease now");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "cannot renew the leader lease");
                    // Stop before the lease can expire and another replica take over.
                    if last_ok.elapsed() + self.retry_period >= self.lease_duration {
                        return;
                    }
                }
            }
        }
    }
}
