//! The hub's shared watches of AgencyClouds, HostedSystems and BackupPolicies, and the
//! trigger streams each controller takes from them.

use govcloud_api::backup::BackupPolicy;
use govcloud_api::{AgencyCloud, HostedSystem};
use kube::runtime::reflector::ReflectHandle;

use super::context::Context;

/// The trigger streams of the hub's shared watches of AgencyClouds, HostedSystems and
/// BackupPolicies (see [`crate::lenient::shared`]), one per controller that reads each kind.
pub struct HubStreams {
    /// For the AgencyCloud controller.
    pub agency: AgencyStreams,
    /// For the HostedSystem controller.
    pub hosted: HostedStreams,
    /// For the BackupPolicy controller.
    pub backup: BackupStreams,
}

impl HubStreams {
    /// Starts the three shared watches, sets the stores (and namespace indexes) in `ctx`,
    /// and returns the streams with the tasks that drive the watches (abort them at shutdown).
    /// `clusters` is the trigger stream of the shared DataCenterCluster watch whose store is
    /// `ctx.clusters`.
    pub fn start(
        ctx: &Context,
        clusters: ReflectHandle<govcloud_api::DataCenterCluster>,
    ) -> Option<(HubStreams, Vec<tokio::task::JoinHandle<()>>)> {
        use crate::lenient::shared;
        let config = kube::runtime::watcher::Config::default;
        let (agencies, mut a, a_drive) =
            shared::<AgencyCloud>(ctx.client.clone(), config(), ctx.lenient.clone(), 3, None);
        let (systems, mut h, h_drive) = shared::<govcloud_api::HostedSystem>(
            ctx.client.clone(),
            config(),
            ctx.lenient.clone(),
            3,
            Some(ctx.systems_by_ns.clone()),
        );
        let (policies, mut p, p_drive) = shared::<govcloud_api::BackupPolicy>(
            ctx.client.clone(),
            config(),
            ctx.lenient.clone(),
            2,
            Some(ctx.policies_by_ns.clone()),
        );
        let _ = ctx.agencies.set(agencies);
        let _ = ctx.systems.set(systems);
        let _ = ctx.policies.set(policies);
        let streams = HubStreams {
            agency: AgencyStreams {
                own: a.pop()?,
                systems: h.pop()?,
                policies: p.pop()?,
                clusters,
            },
            hosted: HostedStreams {
                own: h.pop()?,
                agencies: a.pop()?,
            },
            backup: BackupStreams {
                own: p.pop()?,
                systems: h.pop()?,
                agencies: a.pop()?,
            },
        };
        let tasks = vec![tokio::spawn(a_drive), tokio::spawn(h_drive), tokio::spawn(p_drive)];
        Some((streams, tasks))
    }
}

/// The hub's shared watches that trigger the AgencyCloud controller.
pub struct AgencyStreams {
    /// Its own AgencyClouds.
    pub own: ReflectHandle<AgencyCloud>,
    /// HostedSystems (backup compliance).
    pub systems: ReflectHandle<govcloud_api::HostedSystem>,
    /// BackupPolicies (backup compliance).
    pub policies: ReflectHandle<govcloud_api::BackupPolicy>,
    /// DataCenterClusters (placement, reachability), from the watch of `ctx.clusters`.
    pub clusters: ReflectHandle<govcloud_api::DataCenterCluster>,
}

/// The hub's shared watches that trigger the HostedSystem controller.
pub struct HostedStreams {
    /// Its own HostedSystems.
    pub own: ReflectHandle<HostedSystem>,
    /// AgencyClouds (systems waiting for their agency).
    pub agencies: ReflectHandle<AgencyCloud>,
}

/// The hub's shared watches that trigger the BackupPolicy controller.
pub struct BackupStreams {
    /// Its own BackupPolicies.
    pub own: ReflectHandle<BackupPolicy>,
    /// HostedSystems (what a policy covers).
    pub systems: ReflectHandle<HostedSystem>,
    /// AgencyClouds (policies waiting for their agency).
    pub agencies: ReflectHandle<govcloud_api::AgencyCloud>,
}
