//! API errors turned into messages that say what happened and what to do about it.

use govcloud_core::hub::{APPROVAL_POLICY, APPROVER_ROLE, REQUESTER_ROLE};
use kube::core::Status;

/// The object an API call was about, to explain its errors.
#[derive(Clone, Debug)]
pub struct Target {
    /// Kind, e.g. `AgencyCloud`.
    pub kind: &'static str,
    /// Plural resource name, e.g. `agencyclouds`.
    pub plural: &'static str,
    /// Object name.
    pub name: String,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
}

impl Target {
    /// A cluster-scoped object.
    pub fn cluster(kind: &'static str, plural: &'static str, name: &str) -> Target {
        Target {
            kind,
            plural,
            name: name.to_string(),
            namespace: None,
        }
    }

    /// A namespaced object.
    pub fn namespaced(kind: &'static str, plural: &'static str, name: &str, namespace: &str) -> Target {
        Target {
            kind,
            plural,
            name: name.to_string(),
            namespace: Some(namespace.to_string()),
        }
    }

    fn list_command(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("kubectl get {} -n {ns}", self.plural),
            None => format!("kubectl get {}", self.plural),
        }
    }

    fn place(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(" in namespace {ns}"),
            None => String::new(),
        }
    }
}

/// Explains an error of an API call about `target`.
pub fn explain(err: kube::Error, target: &Target) -> anyhow::Error {
    match err {
        kube::Error::Api(status) => anyhow::anyhow!(describe(&status, target)),
        kube::Error::Auth(e) => anyhow::anyhow!(
            "cannot authenticate to the cluster: {e}\nwhat to do: log in again, or check --kubeconfig and --context"
        ),
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => anyhow::anyhow!(
            "cannot reach the API server: {e}\nwhat to do: check that the cluster is up and that --kubeconfig/--context point at the data center's management (hub) cluster"
        ),
        other => anyhow::Error::new(other).context(format!("{} {}{}", target.kind, target.name, target.place())),
    }
}

/// The message for an API server refusal.
pub fn describe(status: &Status, target: &Target) -> String {
    let msg = status.message.trim();
    if let Some(text) = admission_message(msg) {
        return describe_admission(&text);
    }
    if msg.contains("a decision is final") {
        return format!(
            "{} {}{} was already decided, and a decision is final.\nwhat to do: create a new request if the agency's needs changed",
            target.kind,
            target.name,
            target.place()
        );
    }
    match status.code {
        401 => "the API server did not accept your credentials (401 Unauthorized).\nwhat to do: log in again, or check --kubeconfig and --context".to_string(),
        403 => describe_forbidden(msg, target),
        404 if msg.contains("could not find the requested resource") => format!(
            "the cluster does not know the resource {}.govcloud.io: the govcloud CRDs are not installed there.\nwhat to do: check that --context points at the data center's management (hub) cluster",
            target.plural
        ),
        404 if status.details.as_ref().is_some_and(|d| d.kind == "namespaces") || msg.starts_with("namespaces ") => {
            let ns = status
                .details
                .as_ref()
                .map(|d| d.name.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| target.namespace.clone())
                .unwrap_or_default();
            format!(
                "namespace {ns} does not exist.\nwhat to do: pass the right namespace with -n (tenancy requests usually go to `tenancy-requests`)"
            )
        }
        404 => format!(
            "no {} named {}{}; list them with `{}`",
            target.kind,
            target.name,
            target.place(),
            target.list_command()
        ),
        409 if status.reason == "AlreadyExists" => format!(
            "a {} named {} already exists{}.\nwhat to do: choose another name, or look at it with `kubectl get {} {}{}`",
            target.kind,
            target.name,
            target.place(),
            target.plural,
            target.name,
            target.namespace.as_ref().map(|ns| format!(" -n {ns}")).unwrap_or_default()
        ),
        409 => format!("{msg}\nwhat to do: someone changed the object at the same time; run the command again"),
        422 => format!("the API server refused the {} as invalid: {msg}", target.kind),
        code => format!("the API server refused the request ({code} {}): {msg}", status.reason),
    }
}

/// The text of a ValidatingAdmissionPolicy denial, if `msg` is one.
fn admission_message(msg: &str) -> Option<String> {
    if !msg.contains("ValidatingAdmissionPolicy") {
        return None;
    }
    let text = msg.split_once("denied request: ").map(|(_, t)| t).unwrap_or(msg).trim();
    Some(text.to_string())
}

fn describe_admission(text: &str) -> String {
    let todo = if text.contains("only platform approvers") {
        format!(
            "you need the {APPROVER_ROLE} role to approve or deny tenancy requests. Ask the platform team to bind it to you, e.g. `kubectl create clusterrolebinding {APPROVER_ROLE}-<you> --clusterrole={APPROVER_ROLE} --user=<you>`"
        )
    } else if text.contains("cannot decide their own") {
        "approvers cannot decide a request they filed themselves: ask another platform approver".to_string()
    } else if text.contains("decidedBy must be your own") {
        "a decision is recorded in the name of the user who makes it; run the command as yourself (without a different --as)"
            .to_string()
    } else if text.contains("requestedBy must be set to your own") {
        "give your own user name with --requested-by, or leave it out and the plugin fills it in (`kubectl auth whoami` shows it)"
            .to_string()
    } else if text.contains("it changed after your review") {
        "run the command again: it shows the request as it is now, and your decision then applies to that version"
            .to_string()
    } else if text.contains("was filed by") || text.contains("records no requester") {
        "a request belongs to the user who filed it: change or withdraw your own requests only, and file a new one for anything else (`kubectl govcloud request`)".to_string()
    } else if text.contains("only the requester") {
        "approvers decide a request as it was filed; to ask for changes, deny it with a reason saying what to change"
            .to_string()
    } else {
        "see the message above; the platform guide explains the govcloud admission policies".to_string()
    };
    let policy = if ["spec.decision", "spec.requestedBy", "spec.cloud"]
        .iter()
        .any(|f| text.starts_with(f))
    {
        APPROVAL_POLICY
    } else {
        "a govcloud admission policy"
    };
    format!("refused by {policy}: {text}\nwhat to do: {todo}")
}

/// A parsed RBAC refusal: `User "u" cannot VERB resource "R" in API group "G" in the namespace "N"`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Denied {
    user: String,
    verb: String,
    resource: String,
    group: String,
    namespace: Option<String>,
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let rest = &s[from..];
    let to = rest.find(end)?;
    Some(&rest[..to])
}

fn parse_denied(msg: &str) -> Option<Denied> {
    let user = between(msg, "User \"", "\"")?.to_string();
    let verb = between(msg, "\" cannot ", " ")?.to_string();
    let resource = between(msg, "resource \"", "\"")?.to_string();
    let group = between(msg, "in API group \"", "\"").unwrap_or_default().to_string();
    let namespace = between(msg, "in the namespace \"", "\"").map(str::to_string);
    Some(Denied {
        user,
        verb,
        resource,
        group,
        namespace,
    })
}

fn describe_forbidden(msg: &str, target: &Target) -> String {
    let Some(d) = parse_denied(msg) else {
        return format!(
            "not allowed: {msg}\nwhat to do: ask the platform team for access to {}",
            target.plural
        );
    };
    let full = if d.group.is_empty() {
        d.resource.clone()
    } else {
        format!("{}.{}", d.resource, d.group)
    };
    let scope = match &d.namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "cluster-wide".to_string(),
    };
    let todo = match (d.resource.as_str(), d.verb.as_str()) {
        ("tenancyrequests", "create") => format!(
            "ask the platform team to bind you the role {REQUESTER_ROLE} in namespace {}",
            d.namespace.as_deref().unwrap_or("tenancy-requests")
        ),
        ("tenancyrequests", _) => format!(
            "agency staff need the role {REQUESTER_ROLE} in the requests namespace; platform approvers need {APPROVER_ROLE}. Ask the platform team"
        ),
        ("agencyclouds" | "datacenterclusters", _) => format!(
            "ask the platform team for read access to {} (the role {APPROVER_ROLE} includes it)",
            d.resource
        ),
        ("utilizationreports" | "configmaps", _) => {
            "exporting a report needs `get` on utilizationreports.govcloud.io and on configmaps in the operator's namespace (pass it with --operator-namespace if it is not govcloud-system); ask the platform team".to_string()
        }
        ("selfsubjectreviews", _) => {
            "your user may not ask the API server who it is; ask the platform team to allow `create` on selfsubjectreviews.authentication.k8s.io (Kubernetes allows it to every user by default)".to_string()
        }
        _ => format!("ask the platform team for `{}` on {full} {scope}", d.verb),
    };
    format!(
        "you ({}) lack the RBAC permission to {} {full} {scope}.\nwhat to do: {todo}",
        d.user, d.verb
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Status {
        Status {
            code,
            reason: reason.to_string(),
            message: message.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn not_found_names_the_kind_and_the_list_command() {
        let t = Target::cluster("AgencyCloud", "agencyclouds", "nope");
        let s = status(404, "NotFound", "agencyclouds.govcloud.io \"nope\" not found");
        assert_eq!(
            describe(&s, &t),
            "no AgencyCloud named nope; list them with `kubectl get agencyclouds`"
        );
        let t = Target::namespaced("TenancyRequest", "tenancyrequests", "x", "reqs");
        assert!(describe(&s, &t).contains("`kubectl get tenancyrequests -n reqs`"));
    }

    #[test]
    fn missing_crds_are_told_apart_from_missing_objects() {
        let t = Target::cluster("AgencyCloud", "agencyclouds", "a");
        let s = status(404, "NotFound", "the server could not find the requested resource");
        assert!(describe(&s, &t).contains("CRDs are not installed"));
    }

    #[test]
    fn rbac_refusals_name_the_missing_permission() {
        let t = Target::cluster("AgencyCloud", "agencyclouds", "a");
        let s = status(
            403,
            "Forbidden",
            "agencyclouds.govcloud.io \"a\" is forbidden: User \"bob\" cannot get resource \"agencyclouds\" in API group \"govcloud.io\" at the cluster scope",
        );
        let m = describe(&s, &t);
        assert!(
            m.starts_with("you (bob) lack the RBAC permission to get agencyclouds.govcloud.io cluster-wide."),
            "{m}"
        );
        assert!(m.contains(APPROVER_ROLE), "{m}");
        let t = Target::namespaced("TenancyRequest", "tenancyrequests", "r", "reqs");
        let s = status(
            403,
            "Forbidden",
            "tenancyrequests.govcloud.io is forbidden: User \"eve\" cannot create resource \"tenancyrequests\" in API group \"govcloud.io\" in the namespace \"reqs\"",
        );
        let m = describe(&s, &t);
        assert!(
            m.contains("create tenancyrequests.govcloud.io in namespace reqs"),
            "{m}"
        );
        assert!(m.contains(&format!("{REQUESTER_ROLE} in namespace reqs")), "{m}");
    }

    #[test]
    fn admission_refusals_say_which_role_is_needed() {
        let t = Target::namespaced("TenancyRequest", "tenancyrequests", "r", "reqs");
        let s = status(
            403,
            "Forbidden",
            "tenancyrequests.govcloud.io \"r\" is forbidden: ValidatingAdmissionPolicy 'govcloud-tenancy-approval' with binding 'govcloud-tenancy-approval' denied request: spec.decision: only platform approvers (allowed to create tenancyrequests/approve) may decide a tenancy request; bob is not one",
        );
        let m = describe(&s, &t);
        assert!(
            m.starts_with("refused by govcloud-tenancy-approval: spec.decision: only platform approvers"),
            "{m}"
        );
        assert!(m.contains("you need the govcloud-tenancy-approver role"), "{m}");
        let s = status(
            422,
            "Invalid",
            "tenancyrequests.govcloud.io \"r\" is invalid: ValidatingAdmissionPolicy 'govcloud-tenancy-approval' with binding 'govcloud-tenancy-approval' denied request: spec.requestedBy must be set to your own user name (bob)",
        );
        assert!(describe(&s, &t).contains("--requested-by"));
    }

    #[test]
    fn stale_reviews_and_other_agencies_requests_are_explained() {
        let t = Target::namespaced("TenancyRequest", "tenancyrequests", "r", "reqs");
        let s = status(
            422,
            "Invalid",
            "tenancyrequests.govcloud.io \"r\" is invalid: ValidatingAdmissionPolicy 'govcloud-tenancy-approval' with binding 'govcloud-tenancy-approval' denied request: spec.decision.reviewedGeneration: you reviewed generation 2 of tenancy request r, but it is now at generation 3: it changed after your review. Review it again and decide with reviewedGeneration 3",
        );
        let m = describe(&s, &t);
        assert!(
            m.starts_with("refused by govcloud-tenancy-approval: spec.decision.reviewedGeneration"),
            "{m}"
        );
        assert!(m.contains("run the command again"), "{m}");
        let s = status(
            403,
            "Forbidden",
            "tenancyrequests.govcloud.io \"r\" is forbidden: ValidatingAdmissionPolicy 'govcloud-tenancy-approval' with binding 'govcloud-tenancy-approval' denied request: spec.requestedBy: tenancy request r was filed by alice; only they or a platform approver may change or delete it, not bob. File your own request (kubectl govcloud request)",
        );
        let m = describe(&s, &t);
        assert!(m.contains("belongs to the user who filed it"), "{m}");
    }

    #[test]
    fn final_decisions_are_explained() {
        let t = Target::namespaced("TenancyRequest", "tenancyrequests", "r", "reqs");
        let s = status(
            422,
            "Invalid",
            "TenancyRequest.govcloud.io \"r\" is invalid: spec.decision: Invalid value: \"object\": a decision is final: it cannot be changed or withdrawn; create a new request instead",
        );
        assert!(describe(&s, &t).contains("already decided"));
    }
}
