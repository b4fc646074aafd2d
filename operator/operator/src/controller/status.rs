//! What every controller does the same way: its field manager, its status write (one per
//! reconcile, skipped when nothing changed) and its error policy. A controller states the
//! few things that differ by implementing [`Reconciled`] for its kind.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tracing::warn;

use super::context::{Context, FIELD_MANAGER_PREFIX, StatusMemo, changed_fields};
use crate::error::{Error, Result};

/// A kind a controller reconciles.
pub trait Reconciled: Resource<DynamicType = ()> + HasStatus<Status: Serialize + PartialEq + Debug> + Sized {
    /// The controller's name: its field manager is `govcloud-operator/<CONTROLLER>`, and
    /// its metrics carry it as the `controller` label.
    const CONTROLLER: &'static str;
    /// What the log says when a reconcile fails.
    const FAILED: &'static str = "reconcile failed";

    /// How long to wait before retrying after `error`.
    fn retry_after(_error: &Error) -> Duration {
        Duration::from_secs(5)
    }

    /// The API through which `obj`'s status is written.
    fn api(client: Client, obj: &Self) -> Api<Self>;

    /// Whether writing `status` over `self` must carry the resourceVersion it was computed
    /// from, so that the API server refuses it (409) when the object has moved on.
    fn guarded(&self, _status: &Self::Status) -> bool {
        false
    }
}

/// The field manager of `K`'s controller, for every server-side apply it makes.
pub fn field_manager<K: Reconciled>() -> PatchParams {
    PatchParams::apply(&format!("{FIELD_MANAGER_PREFIX}/{}", K::CONTROLLER)).force()
}

/// The error policy of every controller: the failure counted by its category, logged, and
/// the object retried after [`Reconciled::retry_after`].
pub fn error_policy<K: Reconciled>(_obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(K::CONTROLLER, error.metric_label());
    warn!(%error, "{}", K::FAILED);
    Action::requeue(K::retry_after(error))
}

/// Writes `status` to `obj` with server-side apply, unless `obj` has it already or this
/// very status was written from this very version of `obj` (the controller's store lags
/// behind its own writes; see [`StatusMemo`]). See [`Reconciled::guarded`] for the
/// resourceVersion it may carry.
pub async fn write_status<K>(ctx: &Context, obj: &K, status: K::Status) -> Result<()>
where
    K: Reconciled + Clone + Debug + serde::de::DeserializeOwned,
{
    let key = StatusMemo::key(obj);
    let rv = obj.resource_version();
    if obj.status() == Some(&status) || ctx.status_memo.written(&key, rv.as_deref(), &status) {
        return Ok(());
    }
    tracing::debug!(changed = ?changed_fields(obj.status(), &status), "writing status");
    let mut body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    if obj.guarded(&status)
        && let Some(rv) = &rv
    {
        body["metadata"] = json!({"resourceVersion": rv});
    }
    K::api(ctx.client.clone(), obj)
        .patch_status(&obj.name_any(), &field_manager::<K>(), &Patch::Apply(&body))
        .await?;
    ctx.status_memo.record(&key, rv.as_deref(), &status);
    Ok(())
}
