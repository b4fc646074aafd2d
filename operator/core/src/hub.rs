//! Objects the operator keeps on the hub itself: the admission policy that makes tenancy
//! decisions unforgeable and bound to the version of the request the approver reviewed,
//! and keeps each request in its requester's hands; and the user-facing roles around it.

use serde_json::{Value, json};

/// Name of the approval admission policy (and its binding).
pub const APPROVAL_POLICY: &str = "govcloud-tenancy-approval";
/// ClusterRole of platform approvers.
pub const APPROVER_ROLE: &str = "govcloud-tenancy-approver";
/// ClusterRole of agency staff who file requests (bind it in the requests namespace).
pub const REQUESTER_ROLE: &str = "govcloud-tenancy-requester";

/// Name of the admission policy (and binding) guarding internet-exposure approvals.
pub const EXPOSURE_POLICY: &str = "govcloud-exposure-approval";
/// ClusterRole of platform staff who approve internet exposure of level-3 systems.
pub const EXPOSURE_APPROVER_ROLE: &str = "govcloud-exposure-approver";

/// ClusterRole of whoever rebuilds a hub from its backup (`govcloud-operator hub-restore`):
/// may recreate recorded decisions verbatim. The chart installs it (user-roles.yaml, the
/// same rules as [`hub_restorer_role`]); bound only for a rebuild, never aggregated.
pub const HUB_RESTORER_ROLE: &str = "govcloud:hub-restorer";

/// CEL: the request creates an object from a hub backup (it carries the backup's
/// annotation) and the user may restore `resource` (the restorer role's permission).
fn restoring(resource: &str) -> String {
    format!(
        "request.operation == 'CREATE' && has(object.metadata.annotations) && '{}' in object.metadata.annotations && authorizer.group('govcloud.io').resource('{resource}').subresource('restore').namespace(request.namespace).check('create').allowed()",
        govcloud_api::labels::RESTORED_FROM_ANNOTATION
    )
}

/// ClusterRole (and binding) letting every authenticated user read the service catalogue.
pub const CATALOG_READER_ROLE: &str = "govcloud-catalog-reader";

/// The hub objects, as server-side-apply bodies: (kind, name, body).
pub fn hub_objects() -> Vec<(&'static str, &'static str, Value)> {
    let labels = json!({"app.kubernetes.io/managed-by": "govcloud-operator"});
    // The chart's aggregated roles govcloud:platform-admin and govcloud:tenancy-approver
    // pick up the approval roles by these labels.
    let approver_labels = json!({
        "app.kubernetes.io/managed-by": "govcloud-operator",
        "govcloud.io/aggregate-to-platform-admin": "true",
        "govcloud.io/aggregate-to-tenancy-approver": "true"
    });
    let admin_labels = json!({
        "app.kubernetes.io/managed-by": "govcloud-operator",
        "govcloud.io/aggregate-to-platform-admin": "true"
    });
    vec![
        ("ClusterRole", CATALOG_READER_ROLE, catalog_reader(&labels)),
        ("ClusterRoleBinding", CATALOG_READER_ROLE, catalog_binding(&labels)),
        ("ValidatingAdmissionPolicy", EXPOSURE_POLICY, exposure_policy(&labels)),
        (
            "ValidatingAdmissionPolicyBinding",
            EXPOSURE_POLICY,
            policy_binding(EXPOSURE_POLICY, &labels),
        ),
        ("ClusterRole", EXPOSURE_APPROVER_ROLE, exposure_approver(&admin_labels)),
        ("ValidatingAdmissionPolicy", APPROVAL_POLICY, approval_policy(&labels)),
        (
            "ValidatingAdmissionPolicyBinding",
            APPROVAL_POLICY,
            policy_binding(APPROVAL_POLICY, &labels),
        ),
        ("ClusterRole", APPROVER_ROLE, approver_role(&approver_labels)),
        ("ClusterRole", REQUESTER_ROLE, requester_role(&labels)),
    ]
}

/// The binding of the ValidatingAdmissionPolicy `name`: denies what it refuses.
fn policy_binding(name: &str, labels: &Value) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": labels},
        "spec": {"policyName": name, "validationActions": ["Deny"]}
    })
}

/// The approval policy: tenancy decisions only by platform approvers, in their own name,
/// for the generation they reviewed; requests only changed by their requester.
fn approval_policy(labels: &Value) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": APPROVAL_POLICY, "labels": labels},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["govcloud.io"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["tenancyrequests"]}]},
            "variables": approval_variables(),
            "validations": approval_validations()
        }
    })
}

/// The CEL variables of [`approval_policy`].
fn approval_variables() -> Value {
    json!([
        // On DELETE `object` is null: nothing is decided by a deletion.
        {"name": "decided", "expression": "request.operation != 'DELETE' && has(object.spec.decision)"},
        {"name": "changed", "expression": "request.operation == 'DELETE' ? false : (request.operation == 'CREATE' ? variables.decided : (variables.decided != has(oldObject.spec.decision) || (variables.decided && object.spec.decision != oldObject.spec.decision)))"},
        {"name": "approver", "expression": "authorizer.group('govcloud.io').resource('tenancyrequests').subresource('approve').namespace(request.namespace).check('create').allowed()"},
        // The requester recorded at creation (immutable by the schema); '' if none.
        {"name": "requester", "expression": "request.operation == 'CREATE' || !has(oldObject.spec.requestedBy) ? '' : oldObject.spec.requestedBy"},
        {"name": "isRequester", "expression": "variables.requester != '' && request.userInfo.username == variables.requester"},
        // The namespace controller empties a namespace being deleted.
        {"name": "namespaceDeleting", "expression": "request.operation == 'DELETE' && has(namespaceObject.metadata.deletionTimestamp)"},
        // A hub rebuild recreates a request as it was recorded, decision included.
        {"name": "restoring", "expression": restoring("tenancyrequests")}
    ])
}

/// The CEL validations of [`approval_policy`].
fn approval_validations() -> Value {
    json!([
        {
            "expression": "request.operation != 'CREATE' || variables.restoring || (has(object.spec.requestedBy) && object.spec.requestedBy == request.userInfo.username)",
            "messageExpression": "'spec.requestedBy must be set to your own user name (' + request.userInfo.username + ')'",
            "reason": "Invalid"
        },
        {
            "expression": "request.operation == 'CREATE' || variables.isRequester || variables.approver || variables.namespaceDeleting",
            "messageExpression": "variables.requester == '' ? 'spec.requestedBy: tenancy request ' + oldObject.metadata.name + ' records no requester, so only a platform approver may change or delete it; file a new request (kubectl govcloud request)' : 'spec.requestedBy: tenancy request ' + oldObject.metadata.name + ' was filed by ' + variables.requester + '; only they or a platform approver may change or delete it, not ' + request.userInfo.username + '. File your own request (kubectl govcloud request)'",
            "reason": "Forbidden"
        },
        {
            "expression": "request.operation != 'UPDATE' || variables.isRequester || (object.spec.cloud == oldObject.spec.cloud && object.spec.justification == oldObject.spec.justification)",
            "messageExpression": "'spec.cloud: only the requester (' + (variables.requester == '' ? 'none recorded' : variables.requester) + ') may change what tenancy request ' + oldObject.metadata.name + ' asks for (spec.cloud, spec.justification); approvers decide it as filed: deny it with a reason saying what to change'",
            "reason": "Forbidden"
        },
        {
            "expression": "!variables.changed || variables.restoring || variables.approver",
            "messageExpression": "'spec.decision: only platform approvers (allowed to create tenancyrequests/approve) may decide a tenancy request; ' + request.userInfo.username + ' is not one'",
            "reason": "Forbidden"
        },
        {
            "expression": "!variables.changed || variables.restoring || object.spec.decision.decidedBy == request.userInfo.username",
            "messageExpression": "'spec.decision.decidedBy must be your own user name (' + request.userInfo.username + '); decisions cannot be recorded in someone else\\'s name'",
            "reason": "Forbidden"
        },
        {
            "expression": "!variables.changed || variables.restoring || !has(object.spec.requestedBy) || object.spec.requestedBy != request.userInfo.username",
            "message": "spec.decision: approvers cannot decide their own tenancy request; ask another approver",
            "reason": "Forbidden"
        },
        {
            "expression": "!variables.changed || !variables.decided || request.operation != 'UPDATE' || (has(object.spec.decision.reviewedGeneration) && object.spec.decision.reviewedGeneration == oldObject.metadata.generation)",
            "messageExpression": "!has(object.spec.decision.reviewedGeneration) ? 'spec.decision.reviewedGeneration must be set to the metadata.generation of the request you reviewed (now ' + string(oldObject.metadata.generation) + '); if you did set it, the TenancyRequest CRD on the hub is older than the operator: upgrade the CRDs' : 'spec.decision.reviewedGeneration: you reviewed generation ' + string(object.spec.decision.reviewedGeneration) + ' of tenancy request ' + oldObject.metadata.name + ', but it is now at generation ' + string(oldObject.metadata.generation) + ': it changed after your review. Review it again and decide with reviewedGeneration ' + string(oldObject.metadata.generation)",
            "reason": "Invalid"
        }
    ])
}

/// The ClusterRole of platform approvers of tenancy requests.
fn approver_role(labels: &Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": APPROVER_ROLE, "labels": labels},
        "rules": [
            {"apiGroups": ["govcloud.io"], "resources": ["tenancyrequests"], "verbs": ["get", "list", "watch", "update", "patch"]},
            {"apiGroups": ["govcloud.io"], "resources": ["tenancyrequests/approve"], "verbs": ["create"]},
            {"apiGroups": ["govcloud.io"], "resources": ["agencyclouds", "datacenterclusters"], "verbs": ["get", "list", "watch"]}
        ]
    })
}

/// The ClusterRole of agency staff who file tenancy requests.
fn requester_role(labels: &Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": REQUESTER_ROLE, "labels": labels},
        "rules": [
            {"apiGroups": ["govcloud.io"], "resources": ["tenancyrequests"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}
        ]
    })
}

/// The policy guarding internet-exposure approvals: only platform approvers, in their own name.
fn exposure_policy(labels: &Value) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": EXPOSURE_POLICY, "labels": labels},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["govcloud.io"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"], "resources": ["hostedsystems"]}]},
            "variables": [
                {"name": "set", "expression": "has(object.spec.internetExposureApproval)"},
                {"name": "changed", "expression": "request.operation == 'CREATE' ? variables.set : (variables.set != has(oldObject.spec.internetExposureApproval) || (variables.set && object.spec.internetExposureApproval != oldObject.spec.internetExposureApproval))"},
                {"name": "approver", "expression": "authorizer.group('govcloud.io').resource('hostedsystems').subresource('approve-exposure').namespace(object.metadata.namespace).check('create').allowed()"},
                {"name": "restoring", "expression": restoring("hostedsystems")}
            ],
            "validations": [
                {
                    "expression": "!variables.changed || !variables.set || variables.restoring || variables.approver",
                    "messageExpression": "'spec.internetExposureApproval: only platform approvers (allowed to create hostedsystems/approve-exposure) may approve internet exposure; ' + request.userInfo.username + ' is not one'",
                    "reason": "Forbidden"
                },
                {
                    "expression": "!variables.changed || !variables.set || variables.restoring || object.spec.internetExposureApproval.approvedBy == request.userInfo.username",
                    "messageExpression": "'spec.internetExposureApproval.approvedBy must be your own user name (' + request.userInfo.username + ')'",
                    "reason": "Forbidden"
                }
            ]
        }
    })
}

/// The ClusterRole of platform staff who approve internet exposure.
fn exposure_approver(labels: &Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": EXPOSURE_APPROVER_ROLE, "labels": labels},
        "rules": [
            {"apiGroups": ["govcloud.io"], "resources": ["hostedsystems"], "verbs": ["get", "list", "watch", "update", "patch"]},
            {"apiGroups": ["govcloud.io"], "resources": ["hostedsystems/approve-exposure"], "verbs": ["create"]}
        ]
    })
}

/// The hub restorer: writes back every kind of a hub backup, statuses included, with the
/// `restore` permission that lets recorded decisions through the admission policies.
pub fn hub_restorer_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": HUB_RESTORER_ROLE},
        "rules": [
            {"apiGroups": ["govcloud.io"],
             "resources": ["datacenterclusters", "backuplocations", "servicetemplates", "agencyclouds",
                           "tenancyrequests", "hostedsystems", "backuppolicies"],
             "verbs": ["get", "list", "create"]},
            {"apiGroups": ["govcloud.io"],
             "resources": ["datacenterclusters/status", "backuplocations/status", "servicetemplates/status",
                           "agencyclouds/status", "tenancyrequests/status", "hostedsystems/status",
                           "backuppolicies/status"],
             "verbs": ["patch"]},
            {"apiGroups": ["govcloud.io"], "resources": ["tenancyrequests/restore", "hostedsystems/restore"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "create"]}
        ]
    })
}

/// The service catalogue is public inside the platform: every signed-in user may read it.
fn catalog_reader(labels: &Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": CATALOG_READER_ROLE, "labels": labels},
        "rules": [{"apiGroups": ["govcloud.io"], "resources": ["servicetemplates"], "verbs": ["get", "list", "watch"]}]
    })
}

/// The binding of [`catalog_reader`] to every authenticated user.
fn catalog_binding(labels: &Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": CATALOG_READER_ROLE, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CATALOG_READER_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]
    })
}

/// Name of the mutating admission policy (and binding) that gives new AgencyClouds,
/// HostedSystems and BackupPolicies their cleanup finalizer as they are created.
pub const FINALIZER_POLICY: &str = "govcloud-finalizers";

/// The MutatingAdmissionPolicy and its binding (`api_version`: the version of
/// `admissionregistration.k8s.io` that serves them) adding, at creation, the finalizer of
/// each `(resource, finalizer)` pair — what Kubernetes does for its own protected objects
/// (PersistentVolumeClaims get `kubernetes.io/pvc-protection` in admission). An object
/// never exists without its finalizer, and the operator saves one write (and one
/// reconcile) per object; where the policy is missing or fails (failurePolicy Ignore) the
/// controllers add the finalizer themselves, as before.
pub fn finalizer_policy(api_version: &str, finalizers: &[(&str, &str)]) -> Vec<(&'static str, &'static str, Value)> {
    let labels = json!({"app.kubernetes.io/managed-by": "govcloud-operator"});
    let resources: Vec<&str> = finalizers.iter().map(|(r, _)| *r).collect();
    // A CEL map literal; JSON string quoting is valid CEL for these ASCII names.
    let by_resource = finalizers
        .iter()
        .map(|(r, f)| format!("{}: {}", Value::from(*r), Value::from(*f)))
        .collect::<Vec<_>>()
        .join(", ");
    let policy = json!({
        "apiVersion": api_version, "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": FINALIZER_POLICY, "labels": labels},
        "spec": {
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "Never",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["govcloud.io"], "apiVersions": ["*"],
                "operations": ["CREATE"], "resources": resources}]},
            "variables": [
                {"name": "finalizer", "expression": format!("{{{by_resource}}}[request.resource.resource]")}
            ],
            "mutations": [{
                "patchType": "JSONPatch",
                "jsonPatch": {"expression": concat!(
                    "!has(object.metadata.finalizers) ",
                    "? [JSONPatch{op: \"add\", path: \"/metadata/finalizers\", value: [variables.finalizer]}] ",
                    ": variables.finalizer in object.metadata.finalizers ? [] ",
                    ": [JSONPatch{op: \"add\", path: \"/metadata/finalizers/-\", value: variables.finalizer}]"
                )}
            }]
        }
    });
    let binding = json!({
        "apiVersion": api_version, "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": FINALIZER_POLICY, "labels": labels},
        "spec": {"policyName": FINALIZER_POLICY}
    });
    vec![
        ("MutatingAdmissionPolicy", FINALIZER_POLICY, policy),
        ("MutatingAdmissionPolicyBinding", FINALIZER_POLICY, binding),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_use_reasons_the_api_server_accepts() {
        for (kind, name, body) in hub_objects() {
            if kind != "ValidatingAdmissionPolicy" {
                continue;
            }
            for v in body["spec"]["validations"].as_array().into_iter().flatten() {
                let reason = v["reason"].as_str().unwrap_or_default();
                assert!(
                    ["Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"].contains(&reason),
                    "{name}: {reason}"
                );
            }
        }
    }

    #[test]
    fn the_approval_policy_also_guards_updates_and_deletions() {
        let objs = hub_objects();
        let Some((_, _, policy)) = objs
            .iter()
            .find(|(k, n, _)| *k == "ValidatingAdmissionPolicy" && *n == APPROVAL_POLICY)
        else {
            panic!("no approval policy");
        };
        assert_eq!(
            policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"],
            json!(["CREATE", "UPDATE", "DELETE"])
        );
        let text = policy["spec"]["validations"].to_string();
        for needle in [
            "oldObject.metadata.generation",
            "variables.isRequester",
            "namespaceObject",
        ] {
            assert!(
                text.contains(needle) || policy["spec"]["variables"].to_string().contains(needle),
                "{needle}"
            );
        }
    }

    #[test]
    fn finalizer_policy_maps_each_resource_to_its_finalizer() {
        let objs = finalizer_policy(
            "admissionregistration.k8s.io/v1beta1",
            &[
                ("agencyclouds", "govcloud.io/agency-cleanup"),
                ("hostedsystems", "govcloud.io/system-cleanup"),
            ],
        );
        assert_eq!(objs.len(), 2);
        let policy = &objs[0].2;
        assert_eq!(policy["apiVersion"], "admissionregistration.k8s.io/v1beta1");
        assert_eq!(
            policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"],
            json!(["agencyclouds", "hostedsystems"])
        );
        assert_eq!(
            policy["spec"]["variables"][0]["expression"],
            r#"{"agencyclouds": "govcloud.io/agency-cleanup", "hostedsystems": "govcloud.io/system-cleanup"}[request.resource.resource]"#
        );
        // Creation only, and never blocking it: the controllers add a missing finalizer.
        assert_eq!(
            policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"],
            json!(["CREATE"])
        );
        assert_eq!(policy["spec"]["failurePolicy"], "Ignore");
        assert_eq!(objs[1].2["spec"]["policyName"], FINALIZER_POLICY);
    }
}
