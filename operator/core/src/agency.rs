//! Desired state of an agency cloud on its cluster: pure builders, unit-tested without a
//! cluster. Every object has a deterministic name and the labels
//! `app.kubernetes.io/managed-by=govcloud-operator` and `govcloud.io/agency=<name>`, by
//! which the controller finds and prunes orphans.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Value, json};

use super::levels::{self, InternetEgress};
use super::quantity::Milli;
use govcloud_api::NetworkZone;
use govcloud_api::agency::{CloudSpec, EgressRule, Protocol, Quota, Subject, SubjectKind};
use govcloud_api::labels::{AGENCY_LABEL, CREDIT_CODE_LABEL, ENVIRONMENT_LABEL, MANAGED_BY, SYSTEM_LABEL};

/// Owner ClusterRole installed on every member.
pub const OWNER_ROLE: &str = "govcloud-agency-owner";
/// Viewer ClusterRole installed on every member.
pub const VIEWER_ROLE: &str = "govcloud-agency-viewer";
/// Owner role on the hub when the hub is not the agency's cluster: only the agency's
/// govcloud objects (HostedSystems, BackupPolicies) — workloads run on the member.
pub const HUB_OWNER_ROLE: &str = "govcloud-agency-hub-owner";
/// Viewer role on the hub.
pub const HUB_VIEWER_ROLE: &str = "govcloud-agency-hub-viewer";
/// The registry admission policy (and its binding), one per member cluster, shared by every
/// agency there: each agency namespace names its registries in [`REGISTRY_ANNOTATION`].
pub const REGISTRY_POLICY: &str = "govcloud-registries";
/// Annotation of an agency namespace: its allowed registries, comma-separated, written by the
/// operator from `spec.allowedRegistries` (agencies cannot change namespaces).
pub const REGISTRY_ANNOTATION: &str = "govcloud.io/allowed-registries";
/// The Service admission policy (and its binding), one per member cluster: in agency
/// namespaces only in-cluster Services (`ClusterIP`, headless); exposure happens only through
/// the operator (a HostedSystem's `spec.exposure`).
pub const SERVICE_POLICY: &str = "govcloud-service-exposure";
/// Prefix of the per-agency registry policies (and bindings) of earlier versions,
/// `govcloud-registries-<agency>`: pruned.
pub const LEGACY_REGISTRY_POLICY_PREFIX: &str = "govcloud-registries-";
/// Namespace of the operator's own objects on members (registry parameters).
pub const SYSTEM_NAMESPACE: &str = "govcloud-system";

/// Kinds of child objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// v1 Namespace.
    Namespace,
    /// v1 ResourceQuota.
    ResourceQuota,
    /// v1 LimitRange.
    LimitRange,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
    /// rbac.authorization.k8s.io/v1 RoleBinding.
    RoleBinding,
    /// v1 ConfigMap.
    ConfigMap,
    /// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding.
    PolicyBinding,
    /// rbac.authorization.k8s.io/v1 ClusterRole (shared by all agencies).
    ClusterRole,
    /// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (shared).
    Policy,
    /// apps/v1 Deployment (hosted systems).
    Deployment,
    /// apps/v1 StatefulSet (hosted systems).
    StatefulSet,
    /// v1 Service (hosted systems).
    Service,
    /// policy/v1 PodDisruptionBudget (hosted systems).
    PodDisruptionBudget,
    /// networking.k8s.io/v1 Ingress (hosted systems' exposure).
    Ingress,
}

impl Kind {
    /// Whether reconciles read this kind's status from the member caches (replicas of
    /// workloads, usage of quotas); the status of every other kind is not cached.
    pub fn status_is_read(self) -> bool {
        matches!(self, Kind::Deployment | Kind::StatefulSet | Kind::ResourceQuota)
    }

    /// Every kind, in apply order (namespaces first).
    pub const ALL: [Kind; 14] = [
        Kind::Namespace,
        Kind::ClusterRole,
        Kind::Policy,
        Kind::ResourceQuota,
        Kind::LimitRange,
        Kind::NetworkPolicy,
        Kind::RoleBinding,
        Kind::ConfigMap,
        Kind::PolicyBinding,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::Service,
        Kind::PodDisruptionBudget,
        Kind::Ingress,
    ];

    /// (group, version, kind, plural, namespaced)
    pub fn gvk(self) -> (&'static str, &'static str, &'static str, &'static str, bool) {
        match self {
            Kind::Namespace => ("", "v1", "Namespace", "namespaces", false),
            Kind::ResourceQuota => ("", "v1", "ResourceQuota", "resourcequotas", true),
            Kind::LimitRange => ("", "v1", "LimitRange", "limitranges", true),
            Kind::NetworkPolicy => ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true),
            Kind::RoleBinding => ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
            Kind::ConfigMap => ("", "v1", "ConfigMap", "configmaps", true),
            Kind::PolicyBinding => (
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingAdmissionPolicyBinding",
                "validatingadmissionpolicybindings",
                false,
            ),
            Kind::ClusterRole => ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
            Kind::Policy => (
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingAdmissionPolicy",
                "validatingadmissionpolicies",
                false,
            ),
            Kind::Deployment => ("apps", "v1", "Deployment", "deployments", true),
            Kind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets", true),
            Kind::Service => ("", "v1", "Service", "services", true),
            Kind::PodDisruptionBudget => ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true),
            Kind::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses", true),
        }
    }

    /// `apiVersion` string.
    pub fn api_version(self) -> String {
        let (g, v, ..) = self.gvk();
        if g.is_empty() {
            v.to_string()
        } else {
            format!("{g}/{v}")
        }
    }
}

/// One desired object.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// Its kind.
    pub kind: Kind,
    /// Namespace (None for cluster-scoped).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Full body as applied (apiVersion, kind, metadata, spec/data/rules…).
    pub body: Value,
}

impl Child {
    /// Builds a child with metadata (name, namespace, labels) and the rest of its body.
    pub fn new(
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        labels: &BTreeMap<String, String>,
        rest: Value,
    ) -> Child {
        let mut metadata = json!({"name": name, "labels": labels});
        if let Some(ns) = namespace {
            metadata["namespace"] = json!(ns);
        }
        let mut body = json!({"apiVersion": kind.api_version(), "kind": kind.gvk().2, "metadata": metadata});
        if let (Some(b), Value::Object(r)) = (body.as_object_mut(), rest) {
            for (k, v) in r {
                if k == "metadata" {
                    if let (Some(m), Value::Object(extra)) = (b.get_mut("metadata").and_then(|m| m.as_object_mut()), v)
                    {
                        m.extend(extra);
                    }
                } else {
                    b.insert(k, v);
                }
            }
        }
        Child {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            body,
        }
    }

    /// Identity used to find the live object and to prune.
    pub fn key(&self) -> (Kind, Option<String>, String) {
        (self.kind, self.namespace.clone(), self.name.clone())
    }
}

/// The namespace of an environment: `<shortName>-<environment>`.
pub fn namespace_name(agency: &str, environment: &str) -> String {
    format!("{agency}-{environment}")
}

fn base_labels(agency: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
        (AGENCY_LABEL.to_string(), agency.to_string()),
    ])
}

fn shared_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string())])
}

fn subjects(list: &[Subject]) -> Value {
    Value::Array(
        list.iter()
            .map(|s| {
                json!({"kind": match s.kind { SubjectKind::User => "User", SubjectKind::Group => "Group" },
                       "name": s.name, "apiGroup": "rbac.authorization.k8s.io"})
            })
            .collect(),
    )
}

/// Canonical quantity strings as the API server stores them (so unchanged objects compare equal).
pub fn canonical_cpu(q: &str) -> String {
    Milli::parse(q)
        .map(|m| m.to_cpu_string())
        .unwrap_or_else(|_| q.to_string())
}

/// Canonical byte quantity.
pub fn canonical_bytes(q: &str) -> String {
    Milli::parse(q)
        .map(|m| m.to_bytes_string())
        .unwrap_or_else(|_| q.to_string())
}

/// Whether a CIDR lies inside private/internal address space (RFC 1918, RFC 6598 shared,
/// loopback, link-local, IPv6 ULA). Anything else is an internet destination.
pub fn is_private_cidr(cidr: &str) -> bool {
    let Some((addr, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(ip), Ok(len)) = (addr.parse::<IpAddr>(), len.parse::<u8>()) else {
        return false;
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (o[0] == 10 && len >= 8)
                || (o[0] == 172 && (16..32).contains(&o[1]) && len >= 12)
                || (o[0] == 192 && o[1] == 168 && len >= 16)
                || (o[0] == 100 && (64..128).contains(&o[1]) && len >= 10)
                || (o[0] == 127 && len >= 8)
                || (o[0] == 169 && o[1] == 254 && len >= 16)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00 && len >= 7,
    }
}

/// An egress rule that the level does not allow, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedEgress {
    /// Rule name.
    pub rule: String,
    /// Why.
    pub why: String,
}

/// Splits egress rules into those the level and zone allow and those they refuse.
/// The internal zone (政务内网) has no internet exit at any level.
pub fn egress_allowed(level: u8, zone: NetworkZone, rules: &[EgressRule]) -> (Vec<&EgressRule>, Vec<RefusedEgress>) {
    let policy = levels::rules(level);
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for r in rules {
        let internet = !is_private_cidr(&r.cidr);
        if internet && zone == NetworkZone::Internal {
            refused.push(RefusedEgress {
                rule: r.name.clone(),
                why: format!(
                    "{} is an internet destination; the internal zone (政务内网) has no internet exit",
                    r.cidr
                ),
            });
            continue;
        }
        let verdict = match (policy.internet_egress, internet, r.internet_exit) {
            (_, false, _) => Ok(()),
            (InternetEgress::Declared, true, _) => Ok(()),
            (InternetEgress::ExplicitExitRule, true, true) => Ok(()),
            (InternetEgress::ExplicitExitRule, true, false) => Err(format!(
                "{} is an internet destination; at level {level} set internetExit: true to route it through the unified internet exit",
                r.cidr
            )),
            (InternetEgress::Never, true, _) => Err(format!(
                "{} is an internet destination; level {level} never reaches the internet",
                r.cidr
            )),
        };
        match verdict {
            Ok(()) => ok.push(r),
            Err(why) => refused.push(RefusedEgress {
                rule: r.name.clone(),
                why,
            }),
        }
    }
    (ok, refused)
}

/// The cluster-wide objects every member needs once: the owner/viewer ClusterRoles and the
/// registry admission policy.
pub fn shared_children() -> Vec<Child> {
    let labels = shared_labels();
    let workloads = json!([
        {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "secrets", "persistentvolumeclaims"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"]},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"]},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"]},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"]},
        {"apiGroups": ["govcloud.io"], "resources": ["hostedsystems", "backuppolicies"]}
    ]);
    let all = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    let read = ["get", "list", "watch"];
    let mut owner_rules: Vec<Value> = workloads
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r["verbs"] = json!(all);
                    r
                })
                .collect()
        })
        .unwrap_or_default();
    owner_rules.push(json!({"apiGroups": [""], "resources": ["pods/log", "pods/status", "resourcequotas", "limitranges", "events"], "verbs": read}));
    // Ingresses only read: exposure happens only through the operator (a HostedSystem's
    // spec.exposure, with the internet-exposure approval at level 3), never by an Ingress of
    // the agency's own (another class, controller annotations such as configuration snippets).
    owner_rules.push(
        json!({"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies", "ingresses"], "verbs": read}),
    );
    owner_rules.push(json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": read}));
    // Evidence reports are the operator's, signed: the agency reads its own, never writes.
    owner_rules.push(json!({"apiGroups": ["govcloud.io"], "resources": ["evidencereports"], "verbs": read}));
    let mut viewer_rules: Vec<Value> = workloads
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let mut r = r.clone();
                    if r["apiGroups"] == json!([""]) {
                        r["resources"] = json!(["pods", "services", "configmaps", "persistentvolumeclaims"]);
                    }
                    r["verbs"] = json!(read);
                    r
                })
                .collect()
        })
        .unwrap_or_default();
    viewer_rules.push(
        json!({"apiGroups": [""], "resources": ["pods/log", "resourcequotas", "limitranges", "events"], "verbs": read}),
    );
    viewer_rules.push(
        json!({"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies", "ingresses"], "verbs": read}),
    );
    viewer_rules.push(json!({"apiGroups": ["govcloud.io"], "resources": ["evidencereports"], "verbs": read}));

    vec![
        Child::new(
            Kind::ClusterRole,
            None,
            OWNER_ROLE,
            &labels,
            json!({"rules": owner_rules}),
        ),
        Child::new(
            Kind::ClusterRole,
            None,
            VIEWER_ROLE,
            &labels,
            json!({"rules": viewer_rules}),
        ),
        Child::new(Kind::Policy, None, REGISTRY_POLICY, &labels, registry_policy()),
        Child::new(
            Kind::PolicyBinding,
            None,
            REGISTRY_POLICY,
            &labels,
            registry_policy_binding(),
        ),
        Child::new(Kind::Policy, None, SERVICE_POLICY, &labels, service_policy()),
        Child::new(
            Kind::PolicyBinding,
            None,
            SERVICE_POLICY,
            &labels,
            agency_namespaces_binding(SERVICE_POLICY),
        ),
    ]
}

/// The agency roles ([`OWNER_ROLE`], [`VIEWER_ROLE`]) of [`shared_children`]. The member
/// manifest of the chart installs them (`templates/member-rbac.yaml`, checked equal by a
/// test), so that the operator's identity on a member needs only `bind` on them, not
/// `escalate`: it writes them only where they are missing or differ and it may.
pub fn member_roles() -> Vec<Child> {
    shared_children()
        .into_iter()
        .filter(|c| c.kind == Kind::ClusterRole)
        .collect()
}

/// What [`SERVICE_POLICY`] tells an agency: exposure happens only through the operator.
const EXPOSURE_HINT: &str = "exposure happens only through the operator: declare spec.exposure on a HostedSystem (government network or, with the level-3 approval, internet entry)";

/// The Service admission policy shared by every agency on a cluster: no `LoadBalancer`,
/// `NodePort` or `ExternalName` Service (the last one would let a pod reach any name through
/// the cluster's DNS and ingress controllers: server-side request forgery) and no
/// `spec.externalIPs` in agency namespaces. The operator's own Services (ClusterIP, headless)
/// pass; so does a ClusterIP Service of the agency's own workloads.
pub fn service_policy() -> Value {
    json!({"spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["services"]}
        ]},
        "validations": [
            {
                "expression": "!has(object.spec.type) || object.spec.type == 'ClusterIP'",
                "messageExpression": format!("'spec.type: ' + object.spec.type + ' Services are not allowed in agency namespaces; ' + (object.spec.type == 'ExternalName' ? 'an ExternalName Service would forward to any host (server-side request forgery); ' : 'they would open nodes or load balancers to outside networks; ') + 'use type ClusterIP (the default) inside the cluster: {EXPOSURE_HINT}'"),
                "reason": "Forbidden"
            },
            {
                "expression": "!has(object.spec.externalIPs) || size(object.spec.externalIPs) == 0",
                "message": format!("spec.externalIPs is not allowed in agency namespaces (it would take traffic for addresses outside the cluster); remove it: {EXPOSURE_HINT}"),
                "reason": "Forbidden"
            }
        ]
    }})
}

/// A binding of `policy` to every namespace labelled for an agency.
fn agency_namespaces_binding(policy: &str) -> Value {
    json!({"spec": {
        "policyName": policy,
        "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": {"matchExpressions": [{"key": AGENCY_LABEL, "operator": "Exists"}]}}
    }})
}

/// The registry admission policy shared by every agency on a cluster. The allowed registries
/// are not in the policy: each request reads them from its namespace's
/// [`REGISTRY_ANNOTATION`] (`namespaceObject`), so one policy and one binding serve any number
/// of agencies. (A policy per agency made every request on the cluster pay for matching all
/// of them; no parameter objects either: nothing to load after the binding, nothing an agency
/// could edit in its own namespaces.) A namespace without the annotation admits no image.
pub fn registry_policy() -> Value {
    let annotations = "namespaceObject.metadata.annotations";
    json!({"spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]},
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments", "statefulsets", "replicasets", "daemonsets"]},
            {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["jobs", "cronjobs"]}
        ]},
        "variables": [
            {"name": "spec", "expression": "object.kind == 'Pod' ? object.spec : (object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template.spec : object.spec.template.spec)"},
            {"name": "images", "expression": "(has(variables.spec.containers) ? variables.spec.containers.map(c, c.image) : []) + (has(variables.spec.initContainers) ? variables.spec.initContainers.map(c, c.image) : []) + (has(variables.spec.ephemeralContainers) ? variables.spec.ephemeralContainers.map(c, c.image) : [])"},
            {"name": "registries", "expression": format!("has({annotations}) && '{REGISTRY_ANNOTATION}' in {annotations} ? {annotations}['{REGISTRY_ANNOTATION}'].split(',').filter(r, r != '') : []")},
            {"name": "refused", "expression": "variables.images.filter(i, !variables.registries.exists(r, i.startsWith(r + '/')))"}
        ],
        "validations": [{
            "expression": "size(variables.refused) == 0",
            "messageExpression": format!("size(variables.registries) == 0 ? 'namespace ' + namespaceObject.metadata.name + ' names no allowed registries (annotation {REGISTRY_ANNOTATION}, written by govcloud-operator from the AgencyCloud spec.allowedRegistries): no image is admitted until the operator has written it; check the AgencyCloud status' : 'image ' + variables.refused.join(', ') + ' is not from an allowed registry of this agency (' + variables.registries.join(', ') + '); push it to one of those registries or ask the platform team to add the registry to spec.allowedRegistries'"),
            "reason": "Forbidden"
        }]
    }})
}

/// The binding of [`registry_policy`]: every namespace labelled for an agency.
pub fn registry_policy_binding() -> Value {
    agency_namespaces_binding(REGISTRY_POLICY)
}

/// The value of [`REGISTRY_ANNOTATION`]: the registries without trailing slashes, comma-separated.
pub fn registry_annotation(spec: &CloudSpec) -> String {
    spec.allowed_registries
        .iter()
        .map(|r| r.0.trim_end_matches('/'))
        .collect::<Vec<_>>()
        .join(",")
}

/// Everything an agency needs on its placed cluster, and the refused egress rules.
pub fn member_children(name: &str, spec: &CloudSpec) -> (Vec<Child>, Vec<RefusedEgress>) {
    let mut out = Vec::new();
    let (egress, refused) = egress_allowed(spec.security_level, spec.zone, &spec.egress);
    let registries = registry_annotation(spec);
    for env in &spec.environments {
        let ns = namespace_name(name, &env.name);
        let mut labels = base_labels(name);
        labels.insert(ENVIRONMENT_LABEL.into(), env.name.clone());
        out.push(namespace_child(&ns, &labels, spec, &registries));
        out.extend(quota_children(&ns, &labels, &env.quota));
        out.extend(network_children(&ns, &labels, name, spec.security_level, &egress));
        out.extend(access_children(&ns, &labels, spec));
    }
    (out, refused)
}

/// An environment's namespace: identity, level, zone and Pod Security labels, and the
/// allowed registries.
fn namespace_child(ns: &str, labels: &BTreeMap<String, String>, spec: &CloudSpec, registries: &str) -> Child {
    let rules = levels::rules(spec.security_level);
    let mut ns_labels = labels.clone();
    ns_labels.insert(CREDIT_CODE_LABEL.into(), spec.agency.credit_code.clone());
    ns_labels.insert("govcloud.io/security-level".into(), spec.security_level.to_string());
    ns_labels.insert("govcloud.io/zone".into(), spec.zone.as_str().into());
    for mode in ["enforce", "audit", "warn"] {
        ns_labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            rules.pod_security.as_str().into(),
        );
        ns_labels.insert(format!("pod-security.kubernetes.io/{mode}-version"), "latest".into());
    }
    Child::new(
        Kind::Namespace,
        None,
        ns,
        &ns_labels,
        json!({"metadata": {"annotations": {"govcloud.io/display-name": spec.agency.display_name, REGISTRY_ANNOTATION: registries}}}),
    )
}

/// An environment's ResourceQuota (its quota, canonical) and LimitRange (defaults).
fn quota_children(ns: &str, labels: &BTreeMap<String, String>, q: &Quota) -> [Child; 2] {
    let mut hard = BTreeMap::from([
        ("requests.cpu".to_string(), canonical_cpu(&q.cpu)),
        ("requests.memory".to_string(), canonical_bytes(&q.memory)),
        (
            "requests.storage".to_string(),
            canonical_bytes(q.storage.as_deref().unwrap_or("0")),
        ),
        ("pods".to_string(), q.pods.unwrap_or(100).to_string()),
    ]);
    if let Some(g) = q.gpus {
        hard.insert("requests.nvidia.com/gpu".into(), g.to_string());
    }
    [
        Child::new(
            Kind::ResourceQuota,
            Some(ns),
            "govcloud-quota",
            labels,
            json!({"spec": {"hard": hard}}),
        ),
        Child::new(
            Kind::LimitRange,
            Some(ns),
            "govcloud-defaults",
            labels,
            json!({"spec": {"limits": [{"type": "Container",
                "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                "default": {"memory": "1Gi"}}]}}),
        ),
    ]
}

/// Network isolation of an environment: default deny, traffic within the agency, and (where
/// the level denies undeclared egress) DNS and the allowed egress rules.
fn network_children(
    ns: &str,
    labels: &BTreeMap<String, String>,
    name: &str,
    level: u8,
    egress: &[&EgressRule],
) -> Vec<Child> {
    let rules = levels::rules(level);
    let policy = |policy_name: &str, spec: Value| {
        Child::new(
            Kind::NetworkPolicy,
            Some(ns),
            policy_name,
            labels,
            json!({"spec": spec}),
        )
    };
    let mut out = Vec::new();
    let mut types = vec!["Ingress"];
    if rules.deny_undeclared_egress {
        types.push("Egress");
    }
    out.push(policy(
        "govcloud-default-deny",
        json!({"podSelector": {}, "policyTypes": types}),
    ));
    let same_agency = json!([{"namespaceSelector": {"matchLabels": {AGENCY_LABEL: name}}}]);
    // Pods of hosted systems get exactly their declared flows (their own policies), not
    // the agency-wide allowance.
    let not_systems = json!({"matchExpressions": [{"key": SYSTEM_LABEL, "operator": "DoesNotExist"}]});
    let mut allow = json!({"podSelector": not_systems, "policyTypes": ["Ingress"], "ingress": [{"from": same_agency}]});
    if rules.deny_undeclared_egress {
        allow["policyTypes"] = json!(["Ingress", "Egress"]);
        allow["egress"] = json!([{"to": same_agency}]);
    }
    out.push(policy("govcloud-allow-agency", allow));
    if !rules.deny_undeclared_egress {
        return out;
    }
    out.push(policy(
        "govcloud-allow-dns",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}),
    ));
    for r in egress {
        let ports: Vec<Value> = r
            .ports
            .iter()
            .map(|p| json!({"port": p.port, "protocol": match p.protocol { Protocol::TCP => "TCP", Protocol::UDP => "UDP" }}))
            .collect();
        let mut rule = json!({"to": [{"ipBlock": {"cidr": r.cidr}}]});
        if !ports.is_empty() {
            rule["ports"] = Value::Array(ports);
        }
        out.push(policy(
            &format!("govcloud-egress-{}", r.name),
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [rule]}),
        ));
    }
    out
}

/// Access to an environment: its owners, and its viewers if any.
fn access_children(ns: &str, labels: &BTreeMap<String, String>, spec: &CloudSpec) -> Vec<Child> {
    let binding = |name: &str, role: &str, list: &[Subject]| {
        Child::new(
            Kind::RoleBinding,
            Some(ns),
            name,
            labels,
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects(list)}),
        )
    };
    let mut out = vec![binding("govcloud-owners", OWNER_ROLE, &spec.owners)];
    if !spec.viewers.is_empty() {
        out.push(binding("govcloud-viewers", VIEWER_ROLE, &spec.viewers));
    }
    out
}

/// The kinds of `hub_children` and `hub_roles`: all the hub holds for agencies.
pub const HUB_KINDS: [Kind; 3] = [Kind::Namespace, Kind::ClusterRole, Kind::RoleBinding];

/// What the hub needs when it is not itself the member: the namespaces (holding the
/// agency's HostedSystems and BackupPolicies) and the access RoleBindings.
pub fn hub_children(name: &str, spec: &CloudSpec) -> Vec<Child> {
    let (all, _) = member_children(name, spec);
    all.into_iter()
        .filter(|c| matches!(c.kind, Kind::Namespace | Kind::RoleBinding))
        .map(|mut c| {
            if c.kind == Kind::RoleBinding {
                let role = if c.name == "govcloud-owners" {
                    HUB_OWNER_ROLE
                } else {
                    HUB_VIEWER_ROLE
                };
                c.body["roleRef"]["name"] = json!(role);
            }
            c
        })
        .collect()
}

/// The hub roles, used when the hub is not the agency's cluster: only the agency's govcloud
/// objects (HostedSystems, BackupPolicies); workloads run on the member, under its guardrails.
pub fn hub_roles() -> Vec<Child> {
    let labels = shared_labels();
    let govcloud = ["hostedsystems", "backuppolicies"];
    let all = ["get", "list", "watch", "create", "update", "patch", "delete"];
    let read = ["get", "list", "watch"];
    vec![
        Child::new(
            Kind::ClusterRole,
            None,
            HUB_OWNER_ROLE,
            &labels,
            json!({"rules": [
                {"apiGroups": ["govcloud.io"], "resources": govcloud, "verbs": all},
                {"apiGroups": ["govcloud.io"], "resources": ["evidencereports"], "verbs": read},
                {"apiGroups": [""], "resources": ["events"], "verbs": read}
            ]}),
        ),
        Child::new(
            Kind::ClusterRole,
            None,
            HUB_VIEWER_ROLE,
            &labels,
            json!({"rules": [
                {"apiGroups": ["govcloud.io"], "resources": govcloud, "verbs": read},
                {"apiGroups": ["govcloud.io"], "resources": ["evidencereports"], "verbs": read},
                {"apiGroups": [""], "resources": ["events"], "verbs": read}
            ]}),
        ),
    ]
}

/// Sum of the CPU and memory quotas over all environments.
pub fn total_quota(spec: &CloudSpec) -> (Milli, Milli) {
    spec.environments.iter().fold((Milli::ZERO, Milli::ZERO), |(c, m), e| {
        (
            c + Milli::parse(&e.quota.cpu).unwrap_or_default(),
            m + Milli::parse(&e.quota.memory).unwrap_or_default(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(level: u8) -> CloudSpec {
        let yaml = format!(
            r#"
agency: {{displayName: 财政部, shortName: mof, creditCode: 11100000MB0123456X, adminLevel: central, contact: {{name: 张三, phone: "010-68551234"}}}}
securityLevel: {level}
zone: internal
environments:
  - {{name: prod, quota: {{cpu: "16", memory: 64Gi, storage: 1Ti, pods: 200}}}}
  - {{name: test, quota: {{cpu: 4000m, memory: "1.5Gi"}}}}
owners: [{{kind: Group, name: mof-ops}}]
viewers: [{{kind: User, name: auditor}}]
egress:
  - {{name: ldap, cidr: 10.1.0.0/16, ports: [{{port: 636}}]}}
  - {{name: pay, cidr: 203.0.113.0/24, internetExit: true}}
allowedRegistries: [registry.gov.cn, harbor.dc.gov.cn/mof/]
"#
        );
        match serde_yaml::from_str(&yaml) {
            Ok(s) => s,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    fn find<'a>(children: &'a [Child], kind: Kind, ns: Option<&str>, name: &str) -> &'a Child {
        match children
            .iter()
            .find(|c| c.kind == kind && c.namespace.as_deref() == ns && c.name == name)
        {
            Some(c) => c,
            None => panic!("{kind:?} {ns:?}/{name} not built"),
        }
    }

    #[test]
    fn namespaces_carry_identity_and_pod_security() {
        let (c, _) = member_children("mof", &spec(3));
        let ns = find(&c, Kind::Namespace, None, "mof-prod");
        let labels = &ns.body["metadata"]["labels"];
        assert_eq!(labels["govcloud.io/agency"], "mof");
        assert_eq!(labels["govcloud.io/environment"], "prod");
        assert_eq!(labels["govcloud.io/security-level"], "3");
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(ns.body["metadata"]["annotations"]["govcloud.io/display-name"], "财政部");
        let (c, _) = member_children("mof", &spec(2));
        assert_eq!(
            find(&c, Kind::Namespace, None, "mof-test").body["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "baseline"
        );
    }

    #[test]
    fn quota_is_canonical() {
        let (c, _) = member_children("mof", &spec(2));
        let q = &find(&c, Kind::ResourceQuota, Some("mof-test"), "govcloud-quota").body["spec"]["hard"];
        assert_eq!(q["requests.cpu"], "4");
        assert_eq!(q["requests.memory"], "1536Mi");
        assert_eq!(q["requests.storage"], "0");
        assert_eq!(q["pods"], "100");
        let q = &find(&c, Kind::ResourceQuota, Some("mof-prod"), "govcloud-quota").body["spec"]["hard"];
        assert_eq!(q["requests.storage"], "1Ti");
        assert_eq!(q["pods"], "200");
    }

    #[test]
    fn network_policies_follow_the_level() {
        let (l1, _) = member_children("mof", &spec(1));
        assert!(
            !l1.iter()
                .any(|c| c.name.starts_with("govcloud-egress-") || c.name == "govcloud-allow-dns")
        );
        assert_eq!(
            find(&l1, Kind::NetworkPolicy, Some("mof-prod"), "govcloud-default-deny").body["spec"]["policyTypes"],
            json!(["Ingress"])
        );

        let mut external = spec(3);
        external.zone = NetworkZone::External;
        let (l3, refused) = member_children("mof", &external);
        assert!(refused.is_empty());
        assert_eq!(
            find(&l3, Kind::NetworkPolicy, Some("mof-prod"), "govcloud-default-deny").body["spec"]["policyTypes"],
            json!(["Ingress", "Egress"])
        );
        let ldap = find(&l3, Kind::NetworkPolicy, Some("mof-prod"), "govcloud-egress-ldap");
        assert_eq!(
            ldap.body["spec"]["egress"][0]["ports"],
            json!([{"port": 636, "protocol": "TCP"}])
        );
        find(&l3, Kind::NetworkPolicy, Some("mof-prod"), "govcloud-egress-pay");

        let mut l4_ext = spec(4);
        l4_ext.zone = NetworkZone::External;
        let (l4, refused) = member_children("mof", &l4_ext);
        assert!(!l4.iter().any(|c| c.name == "govcloud-egress-pay"));
        assert_eq!(refused.len(), 1);
        assert!(refused[0].why.contains("never reaches the internet"));
    }

    #[test]
    fn level_3_internet_egress_needs_the_exit_flag() {
        let mut s = spec(3);
        s.egress[1].internet_exit = false;
        let (_, refused) = egress_allowed(3, NetworkZone::External, &s.egress);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].why.contains("internetExit: true"));
        let (_, refused) = egress_allowed(2, NetworkZone::External, &s.egress);
        assert!(refused.is_empty());
        // The internal zone has no internet exit at any level.
        let (_, refused) = egress_allowed(1, NetworkZone::Internal, &s.egress);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].why.contains("no internet exit"));
    }

    #[test]
    fn access_and_registries() {
        let (c, _) = member_children("mof", &spec(2));
        let rb = find(&c, Kind::RoleBinding, Some("mof-prod"), "govcloud-owners");
        assert_eq!(rb.body["roleRef"]["name"], OWNER_ROLE);
        assert_eq!(
            rb.body["subjects"][0],
            json!({"kind": "Group", "name": "mof-ops", "apiGroup": "rbac.authorization.k8s.io"})
        );
        find(&c, Kind::RoleBinding, Some("mof-prod"), "govcloud-viewers");
        // On a hub that is not the agency's cluster, owners get no workload rights.
        let hub = hub_children("mof", &spec(2));
        assert!(
            hub.iter()
                .all(|c| matches!(c.kind, Kind::Namespace | Kind::RoleBinding))
        );
        assert_eq!(
            find(&hub, Kind::RoleBinding, Some("mof-prod"), "govcloud-owners").body["roleRef"]["name"],
            HUB_OWNER_ROLE
        );
        assert!(!hub_roles()[0].body.to_string().contains("deployments"));
        // The registries are an annotation of each agency namespace; the policy and its
        // binding are shared by every agency of the cluster.
        let ns = find(&c, Kind::Namespace, None, "mof-prod");
        assert_eq!(
            ns.body["metadata"]["annotations"][REGISTRY_ANNOTATION],
            "registry.gov.cn,harbor.dc.gov.cn/mof"
        );
        assert!(!c.iter().any(|c| matches!(c.kind, Kind::Policy | Kind::PolicyBinding)));
        let shared = shared_children();
        let p = find(&shared, Kind::Policy, None, REGISTRY_POLICY);
        assert!(!p.body.to_string().contains("mof"));
        let b = find(&shared, Kind::PolicyBinding, None, REGISTRY_POLICY);
        assert_eq!(b.body["spec"]["policyName"], REGISTRY_POLICY);
        assert_eq!(
            b.body["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0],
            json!({"key": AGENCY_LABEL, "operator": "Exists"})
        );
        assert!(
            shared
                .iter()
                .all(|c| c.body["metadata"]["labels"].get(AGENCY_LABEL).is_none())
        );
        // Every child is labelled for pruning.
        assert!(c.iter().all(|c| c.body["metadata"]["labels"][AGENCY_LABEL] == "mof"));
    }

    #[test]
    fn owners_cannot_touch_guardrails() {
        let shared = shared_children();
        let owner = &shared[0].body["rules"];
        for rule in owner.as_array().into_iter().flatten() {
            let res = rule["resources"].as_array().cloned().unwrap_or_default();
            let writes = rule["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v != "get" && v != "list" && v != "watch"));
            for guarded in [
                "resourcequotas",
                "limitranges",
                "networkpolicies",
                "namespaces",
                "rolebindings",
                // Exposure happens only through the operator.
                "ingresses",
                "httproutes",
            ] {
                assert!(
                    !(writes && res.iter().any(|r| r == guarded)),
                    "owner can write {guarded}"
                );
            }
        }
    }

    #[test]
    fn services_policy_refuses_exposure_naming_the_field() {
        let shared = shared_children();
        let p = find(&shared, Kind::Policy, None, SERVICE_POLICY);
        let text = p.body.to_string();
        for needle in [
            "spec.type: ",
            "spec.externalIPs",
            "ExternalName",
            "only through the operator",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        let rules = &p.body["spec"]["matchConstraints"]["resourceRules"][0];
        assert_eq!(rules["resources"], json!(["services"]));
        assert_eq!(rules["operations"], json!(["CREATE", "UPDATE"]));
        let b = find(&shared, Kind::PolicyBinding, None, SERVICE_POLICY);
        assert_eq!(b.body["spec"]["policyName"], SERVICE_POLICY);
        assert_eq!(
            b.body["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0],
            json!({"key": AGENCY_LABEL, "operator": "Exists"})
        );
        // The roles the member manifest installs are the shared ClusterRoles.
        let roles: Vec<_> = member_roles().iter().map(|c| c.name.clone()).collect();
        assert_eq!(roles, vec![OWNER_ROLE.to_string(), VIEWER_ROLE.to_string()]);
    }

    #[test]
    fn private_cidrs() {
        for p in [
            "10.0.0.0/8",
            "10.1.2.0/24",
            "172.16.0.0/12",
            "192.168.1.0/24",
            "100.64.0.0/10",
            "fd00::/8",
        ] {
            assert!(is_private_cidr(p), "{p}");
        }
        for p in [
            "0.0.0.0/0",
            "8.8.8.8/32",
            "172.32.0.0/16",
            "10.0.0.0/7",
            "2001:db8::/32",
            "garbage",
        ] {
            assert!(!is_private_cidr(p), "{p}");
        }
    }

    #[test]
    fn totals() {
        let (cpu, mem) = total_quota(&spec(2));
        assert_eq!(cpu.to_cpu_string(), "20");
        assert_eq!(mem.to_bytes_string(), "67072Mi");
    }
}
