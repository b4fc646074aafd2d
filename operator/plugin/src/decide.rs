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
  # Review the request zj-bigdata in the namespace tenancy-requests, then confirm to approve it
  kubectl govcloud approve zj-bigdata -n tenancy-requests --reason \"符合年度上云计划\"

  # Without a terminal: approve generation 3, the version you reviewed
  # (`kubectl get tr zj-bigdata -n tenancy-requests -o wide` shows the generation)
  kubectl govcloud approve zj-bigdata -n tenancy-requests --generation 3 --reason \"符合年度上云计划\"

  # Follow the cloud the operator creates
  kubectl govcloud status zj-bigdata

The command shows the request (its generation, requester, justification and the whole
spec.cloud) and records the decision for exactly that generation: if the request changed
since, the API server refuses the decision and you review it again. The decision is
recorded in your own name (the API server checks it) and is final. Only platform
approvers (role govcloud-tenancy-approver) may decide, and never on a request they filed
themselves.";

/// Examples shown by `kubectl govcloud deny --help`.
pub const DENY_EXAMPLES: &str = "\
Examples:
  # Deny a request, saying why (the agency sees the reason in the request)
  kubectl govcloud deny zj-bigdata -n tenancy-requests --reason \"请先完成等保备案\"

  # Without a terminal: deny generation 3, the version you reviewed
  kubectl govcloud deny zj-bigdata -n tenancy-requests --generation 3 --reason \"请先完成等保备案\"

As with approve, the request is shown and the decision is bound to the generation
reviewed. The decision is recorded in your own name and is final; the agency files a new
request.";

/// Arguments of `approve`.
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The TenancyRequest's name (`kubectl get tenancyrequests -n NAMESPACE`).
    pub name: String,
    /// Why (recorded in spec.decision.reason). Default: "Approved".
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// The generation of the request you reviewed (`metadata.generation`). Without it the
    /// command shows the request and asks you to confirm (on a terminal only).
    #[arg(long, value_name = "N")]
    pub generation: Option<i64>,
    /// Approve although the operator has not found the request Valid (or not yet checked
    /// this generation). The decision is final either way; the operator provisions the
    /// cloud only once the request is Valid.
    #[arg(long)]
    pub not_valid: bool,
}

/// Arguments of `deny`.
#[derive(clap::Args, Debug)]
pub struct DenyArgs {
    /// The TenancyRequest's name (`kubectl get tenancyrequests -n NAMESPACE`).
    pub name: String,
    /// Why it is denied; the agency reads it (recorded in spec.decision.reason).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// The generation of the request you reviewed (`metadata.generation`). Without it the
    /// command shows the request and asks you to confirm (on a terminal only).
    #[arg(long, value_name = "N")]
    pub generation: Option<i64>,
}

/// The merge patch that records a decision on the reviewed generation.
pub fn decision_patch(action: DecisionAction, by: &str, reason: &str, reviewed_generation: i64) -> serde_json::Value {
    json!({"spec": {"decision": {
        "action": action, "decidedBy": by, "reason": reason, "reviewedGeneration": reviewed_generation
    }}})
}

fn condition<'a>(
    tr: &'a TenancyRequest,
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    tr.status.as_ref()?.conditions.iter().find(|c| c.type_ == t)
}

/// What the approver is shown before deciding: everything the decision applies to.
pub fn review(tr: &TenancyRequest, generation: i64) -> Result<String> {
    let mut out = format!(
        "TenancyRequest {} in namespace {}, generation {generation}\n",
        tr.metadata.name.as_deref().unwrap_or_default(),
        tr.metadata.namespace.as_deref().unwrap_or_default()
    );
    out.push_str(&format!(
        "Requested by:  {}\n",
        tr.spec.requested_by.as_deref().unwrap_or("(not recorded)")
    ));
    let observed = tr.status.as_ref().and_then(|s| s.observed_generation);
    if observed == Some(generation) {
        let checks: Vec<String> = [VALID, PLACEABLE]
            .iter()
            .filter_map(|t| condition(tr, t).map(|c| format!("{t} {} ({})", c.status, c.message)))
            .collect();
        out.push_str(&format!("Checked:       {}\n", checks.join("; ")));
    } else {
        out.push_str(&format!(
            "Checked:       not yet — the operator has not checked generation {generation} (wait a few seconds and run again to see its checks)\n"
        ));
    }
    out.push_str("Justification:\n");
    for line in tr.spec.justification.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("spec.cloud:\n");
    for line in serde_yaml::to_string(&tr.spec.cloud)?.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    Ok(out)
}

/// The generation the decision is for: the one given with `--generation`, which must be
/// the current one, else the current one once the approver confirms (`answer`: their
/// reply, `None` when there is no terminal to ask on).
pub fn reviewed_generation(
    name: &str,
    verb: &str,
    given: Option<i64>,
    current: i64,
    answer: impl FnOnce() -> Option<String>,
) -> Result<i64> {
    match given {
        Some(g) if g == current => Ok(g),
        Some(g) => bail!(
            "--generation {g}: TenancyRequest {name} is now at generation {current}: the requester changed it after you reviewed generation {g}. Nothing was recorded.\nwhat to do: review it again (shown above as it is now) and run again with --generation {current}"
        ),
        None => match answer() {
            Some(a) if matches!(a.trim().to_lowercase().as_str(), "y" | "yes") => Ok(current),
            Some(_) => bail!("not confirmed; nothing was recorded"),
            None => bail!(
                "--generation: give the generation of the request you reviewed (shown above: {current}), e.g. `kubectl govcloud {verb} {name} --generation {current} ...`; without it the command asks for confirmation, which needs a terminal"
            ),
        },
    }
}

/// Whether a request may be approved as it is: the operator must have checked the current
/// generation and found it Valid, unless the approver overrides with `--not-valid`.
pub fn approvable(tr: &TenancyRequest, current: i64, override_not_valid: bool) -> Result<()> {
    if override_not_valid {
        return Ok(());
    }
    let name = tr.metadata.name.as_deref().unwrap_or_default();
    let observed = tr.status.as_ref().and_then(|s| s.observed_generation);
    if observed != Some(current) {
        bail!(
            "TenancyRequest {name}: the operator has not checked generation {current} yet, so nobody knows whether it is Valid. Nothing was recorded.\nwhat to do: wait a few seconds and run again (`kubectl get tr {name} -o wide` shows VALID); --not-valid approves anyway"
        );
    }
    match condition(tr, VALID) {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => bail!(
            "TenancyRequest {name} is not Valid: {} ({}). A decision is final, so approving it would leave an approved request the operator cannot provision. Nothing was recorded.\nwhat to do: deny it with that reason so the agency files a corrected request, or wait for the requester to fix it; --not-valid approves anyway",
            c.message,
            c.reason
        ),
        None => bail!(
            "TenancyRequest {name} has no Valid condition yet. Nothing was recorded.\nwhat to do: wait a few seconds and run again; --not-valid approves anyway"
        ),
    }
}

/// Reads the approver's reply from the terminal, `None` if stdin is not one.
fn ask(question: &str) -> Option<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    stdin.lock().read_line(&mut line).ok()?;
    Some(line)
}

/// Shows the request and records the decision on the generation shown.
pub async fn run(
    g: &Global,
    name: &str,
    action: DecisionAction,
    reason: &str,
    generation: Option<i64>,
    not_valid: bool,
) -> Result<()> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 {
        bail!("--reason: write 1 to 2000 characters");
    }
    if let Some(n) = generation
        && n < 1
    {
        bail!("--generation: must be 1 or more (the request's metadata.generation), got {n}");
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
    let Some(current) = tr.metadata.generation else {
        bail!(
            "TenancyRequest {name} in namespace {ns} has no metadata.generation; the API server always sets one: check that --context points at the hub"
        );
    };
    print!("{}", review(&tr, current)?);
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
    let verb = match action {
        DecisionAction::Approve => "approve",
        DecisionAction::Deny => "deny",
    };
    let reviewed = reviewed_generation(name, verb, generation, current, || {
        ask(&format!(
            "{} TenancyRequest {name} as shown above (generation {current})?",
            match action {
                DecisionAction::Approve => "Approve",
                DecisionAction::Deny => "Deny",
            }
        ))
    })?;
    if action == DecisionAction::Approve {
        approvable(&tr, reviewed, not_valid)?;
    }
    let me = connect::whoami(&conn.client).await?;
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch(name, &pp, &Patch::Merge(decision_patch(action, &me, reason, reviewed)))
        .await
        .map_err(|e| errors::explain(e, &target))?;
    let agency = &tr.spec.cloud.agency.short_name;
    match action {
        DecisionAction::Approve => {
            println!("tenancyrequest.govcloud.io/{name} approved by {me} (generation {reviewed})");
            println!(
                "The operator now creates AgencyCloud {agency}; follow it with `kubectl govcloud status {agency}`."
            );
        }
        DecisionAction::Deny => {
            println!("tenancyrequest.govcloud.io/{name} denied by {me} (generation {reviewed})");
            println!("Nothing is created; the agency sees your reason in the request.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(observed: Option<i64>, valid: Option<(&str, &str)>) -> TenancyRequest {
        let mut v: serde_json::Value = serde_yaml::from_str(include_str!("../../../examples/tenancy/zj-bigdata.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        v["metadata"]["generation"] = json!(2);
        v["status"] = json!({"conditions": []});
        if let Some(o) = observed {
            v["status"]["observedGeneration"] = json!(o);
        }
        if let Some((st, msg)) = valid {
            v["status"]["conditions"] = json!([{"type": "Valid", "status": st, "reason": "R", "message": msg,
                "lastTransitionTime": "2026-12-07T00:00:00Z"}]);
        }
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn approve_refuses_a_request_that_is_not_valid_unless_overridden() {
        let ok = request(Some(2), Some(("True", "ok")));
        assert!(approvable(&ok, 2, false).is_ok());
        let bad = request(
            Some(2),
            Some(("False", "spec.cloud.agency.creditCode: check digit is wrong")),
        );
        let e = approvable(&bad, 2, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("is not Valid: spec.cloud.agency.creditCode: check digit is wrong")
                && e.contains("Nothing was recorded"),
            "{e}"
        );
        assert!(
            !e.contains("approver role") && !e.contains("ask for"),
            "never suggests escalation: {e}"
        );
        assert!(approvable(&bad, 2, true).is_ok());
        // Not yet checked: the Valid of an older generation says nothing about this one.
        let stale = request(Some(1), Some(("True", "ok")));
        let e = approvable(&stale, 2, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("has not checked generation 2 yet"), "{e}");
        let unchecked = request(Some(2), None);
        assert!(approvable(&unchecked, 2, false).is_err());
    }

    #[test]
    fn the_patch_sets_only_the_decision() {
        let p = decision_patch(DecisionAction::Deny, "alice", "no budget", 3);
        assert_eq!(
            p,
            json!({"spec": {"decision": {"action": "Deny", "decidedBy": "alice", "reason": "no budget", "reviewedGeneration": 3}}})
        );
    }

    #[test]
    fn the_decision_is_for_the_generation_reviewed() {
        let no_terminal = || None;
        // --generation must be the current one.
        assert_eq!(
            reviewed_generation("r", "approve", Some(4), 4, no_terminal).ok(),
            Some(4)
        );
        let e = reviewed_generation("r", "approve", Some(3), 4, no_terminal).map_err(|e| e.to_string());
        let e = e.err().unwrap_or_default();
        assert!(e.contains("now at generation 4") && e.contains("--generation 4"), "{e}");
        // Without it: confirmation on a terminal, else a pointer to --generation.
        assert_eq!(
            reviewed_generation("r", "deny", None, 4, || Some("yes\n".into())).ok(),
            Some(4)
        );
        assert!(reviewed_generation("r", "deny", None, 4, || Some("\n".into())).is_err());
        let e = reviewed_generation("r", "deny", None, 4, no_terminal).map_err(|e| e.to_string());
        let e = e.err().unwrap_or_default();
        assert!(
            e.starts_with("--generation") && e.contains("kubectl govcloud deny r --generation 4"),
            "{e}"
        );
    }

    #[test]
    fn the_review_shows_the_whole_cloud_and_the_generation() {
        let tr: TenancyRequest = serde_json::from_value(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "TenancyRequest",
            "metadata": {"name": "mof", "namespace": "reqs", "generation": 3},
            "spec": {"cloud": {
                "agency": {"displayName": "财政部", "shortName": "mof", "creditCode": "11100000MB0123456X",
                           "adminLevel": "central", "contact": {"name": "王"}},
                "securityLevel": 3, "zone": "internal",
                "environments": [{"name": "prod", "quota": {"cpu": "32", "memory": "128Gi"}}],
                "owners": [{"kind": "Group", "name": "mof-ops"}],
                "egress": [{"name": "ldap", "cidr": "10.8.0.0/16"}],
                "allowedRegistries": ["registry.gov.cn"]},
                "justification": "迁移预算管理一体化系统\n第二行", "requestedBy": "liu"},
            "status": {"observedGeneration": 2}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let r = review(&tr, 3).unwrap_or_else(|e| panic!("{e}"));
        for needle in [
            "generation 3",
            "Requested by:  liu",
            "not yet",
            "  第二行",
            "spec.cloud:",
            "mof-ops",
            "10.8.0.0/16",
            "registry.gov.cn",
            "securityLevel: 3",
        ] {
            assert!(r.contains(needle), "{needle}: {r}");
        }
    }
}
