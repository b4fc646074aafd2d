//! `kubectl govcloud approve` and `deny`: record a platform approver's decision.

use anyhow::{Result, bail};
use govcloud_api::TenancyRequest;
use govcloud_api::conditions::tenancy::{PLACEABLE, VALID};
use govcloud_api::tenancy::DecisionAction;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::connect::{self, Global};
use crate::errors::{self, Target};
use crate::output::FIELD_MANAGER;

/// Examples shown by `kubectl govcloud approve --help`.
pub const APPROVE_EXAMPLES: &str = "\
Examples:
  # Approve the request zj-bigdata in the namespace tenancy-requests
  kubectl govcloud approve zj-bigdata -n tenancy-requests --reason \"符合年度上云计划\"

  # Follow the cloud the operator creates
  kubectl govcloud status zj-bigdata

The decision is recorded in your own name (the API server checks it) and is final.
Only platform approvers (role govcloud-tenancy-approver) may decide, and never on a
request they filed themselves.";

/// Examples shown by `kubectl govcloud deny --help`.
pub const DENY_EXAMPLES: &str = "\
Examples:
  # Deny a request, saying why (the agency sees the reason in the request)
  kubectl govcloud deny zj-bigdata -n tenancy-requests --reason \"请先完成等保备案\"

The decision is recorded in your own name and is final; the agency files a new request.";

/// Arguments of `approve`.
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The TenancyRequest's name (`kubectl get tenancyrequests -n NAMESPACE`).
    pub name: String,
    /// Why (recorded in spec.decision.reason). Default: "Approved".
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// Arguments of `deny`.
#[derive(clap::Args, Debug)]
pub struct DenyArgs {
    /// The TenancyRequest's name (`kubectl get tenancyrequests -n NAMESPACE`).
    pub name: String,
    /// Why it is denied; the agency reads it (recorded in spec.decision.reason).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// The merge patch that records a decision.
pub fn decision_patch(action: DecisionAction, by: &str, reason: &str) -> serde_json::Value {
    json!({"spec": {"decision": {"action": action, "decidedBy": by, "reason": reason}}})
}

fn condition<'a>(
    tr: &'a TenancyRequest,
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    tr.status.as_ref()?.conditions.iter().find(|c| c.type_ == t)
}

/// Records the decision.
pub async fn run(g: &Global, name: &str, action: DecisionAction, reason: &str) -> Result<()> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 {
        bail!("--reason: write 1 to 2000 characters");
    }
    let conn = connect::connect(g).await?;
    let ns = conn.namespace.clone();
    let target = Target::namespaced("TenancyRequest", "tenancyrequests", name, &ns);
    let api: Api<TenancyRequest> = Api::namespaced(conn.client.clone(), &ns);
    let tr = api.get(name).await.map_err(|e| errors::explain(e, &target))?;
    if let Some(d) = &tr.spec.decision {
        bail!(
            "TenancyRequest {name} in namespace {ns} was already decided: {:?} by {} ({}).\nA decision is final; the agency files a new request if its needs changed.",
            d.action,
            d.decided_by,
            d.reason
        );
    }
    if action == DecisionAction::Approve {
        for t in [VALID, PLACEABLE] {
            if let Some(c) = condition(&tr, t).filter(|c| c.status == "False") {
                eprintln!(
                    "warning: the request is not {}: {} — the operator provisions it only once this is fixed",
                    t.to_lowercase(),
                    c.message
                );
            }
        }
    }
    let me = connect::whoami(&conn.client).await?;
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch(name, &pp, &Patch::Merge(decision_patch(action, &me, reason)))
        .await
        .map_err(|e| errors::explain(e, &target))?;
    let agency = &tr.spec.cloud.agency.short_name;
    match action {
        DecisionAction::Approve => {
            println!("tenancyrequest.govcloud.io/{name} approved by {me}");
            println!(
                "The operator now creates AgencyCloud {agency}; follow it with `kubectl govcloud status {agency}`."
            );
        }
        DecisionAction::Deny => {
            println!("tenancyrequest.govcloud.io/{name} denied by {me}");
            println!("Nothing is created; the agency sees your reason in the request.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_sets_only_the_decision() {
        let p = decision_patch(DecisionAction::Deny, "alice", "no budget");
        assert_eq!(
            p,
            json!({"spec": {"decision": {"action": "Deny", "decidedBy": "alice", "reason": "no budget"}}})
        );
    }
}
