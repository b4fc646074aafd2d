//! Desired state of a hosted system on its agency's cluster: pure builders.
//!
//! Per component: a Deployment (stateless) or StatefulSet (stateful, with a volume claim
//! template and a PVC retention policy), a Service for its ports, a PodDisruptionBudget when
//! it has more than one replica, and a NetworkPolicy allowing exactly the declared flows.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::agency::{Child, Kind};
use super::levels::{self, PodSecurity};
use super::net::{Cidr, host_owner, under_domain};
use govcloud_api::agency::{EgressRule, Protocol};
use govcloud_api::hosted::{Component, ComponentKind, ExposureMode, HostedSystemSpec, VolumeRetention};
use govcloud_api::labels::{
    AGENCY_LABEL, COMPONENT_LABEL, INGRESS_NAMESPACE_LABEL, MANAGED_BY, SPEC_RECORD_LABEL, SYSTEM_LABEL,
};

/// IngressClass of the government-network entry (政务网入口), provided by the platform.
pub const GOVERNMENT_INGRESS_CLASS: &str = "govcloud-government";
/// IngressClass of the unified internet exit (统一互联网出口), provided by the platform.
pub const INTERNET_INGRESS_CLASS: &str = "govcloud-internet";

/// The URL a system is reached at, if exposed with a host.
pub fn url(spec: &HostedSystemSpec) -> Option<String> {
    let e = spec.exposure.as_ref().filter(|e| e.mode != ExposureMode::None)?;
    let host = e.host.as_ref()?;
    Some(format!(
        "{}://{host}/",
        if e.tls_secret_name.is_some() { "https" } else { "http" }
    ))
}

/// Name of a component's workload, Service, PDB and NetworkPolicy: `<system>-<component>`.
pub fn object_name(system: &str, component: &str) -> String {
    format!("{system}-{component}")
}

fn labels(agency: &str, system: &str, component: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
        ("app.kubernetes.io/instance".to_string(), system.to_string()),
        (AGENCY_LABEL.to_string(), agency.to_string()),
        (SYSTEM_LABEL.to_string(), system.to_string()),
    ]);
    if let Some(c) = component {
        l.insert(COMPONENT_LABEL.to_string(), c.to_string());
        l.insert("app.kubernetes.io/name".to_string(), c.to_string());
    }
    l
}

fn selector(system: &str, component: &str) -> Value {
    json!({SYSTEM_LABEL: system, COMPONENT_LABEL: component})
}

fn container(level: u8, c: &Component) -> Value {
    let env: Vec<Value> = c
        .env
        .iter()
        .map(|e| match (&e.value, &e.secret_key_ref) {
            (_, Some(r)) => json!({"name": e.name, "valueFrom": {"secretKeyRef": {"name": r.name, "key": r.key}}}),
            (v, None) => json!({"name": e.name, "value": v.clone().unwrap_or_default()}),
        })
        .collect();
    let mut ctr = json!({
        "name": c.name,
        "image": c.image,
        "resources": {"requests": {"cpu": c.resources.cpu, "memory": c.resources.memory},
                      "limits": {"memory": c.resources.memory}},
    });
    if !c.command.is_empty() {
        ctr["command"] = json!(c.command);
    }
    if !c.args.is_empty() {
        ctr["args"] = json!(c.args);
    }
    if !env.is_empty() {
        ctr["env"] = Value::Array(env);
    }
    if !c.ports.is_empty() {
        ctr["ports"] = Value::Array(
            c.ports
                .iter()
                .map(|p| json!({"name": p.name, "containerPort": p.port, "protocol": "TCP"}))
                .collect(),
        );
    }
    if let Some(h) = &c.health {
        ctr["readinessProbe"] = json!({"httpGet": {"path": h.path, "port": h.port}, "periodSeconds": 10});
    }
    if let Some(s) = &c.storage {
        ctr["volumeMounts"] = json!([{"name": "data", "mountPath": s.mount_path}]);
    }
    if restricted(level) {
        ctr["securityContext"] = json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": c.writable_root_filesystem_reason.is_none(),
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
        });
    }
    ctr
}

/// Whether the level enforces the `restricted` Pod Security Standard, whose security
/// context the containers then carry.
fn restricted(level: u8) -> bool {
    levels::rules(level).pod_security == PodSecurity::Restricted
}

fn pod_template(level: u8, agency: &str, system: &str, c: &Component) -> Value {
    let mut spec = json!({"containers": [container(level, c)], "automountServiceAccountToken": false});
    if restricted(level) {
        spec["securityContext"] = json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    }
    json!({"metadata": {"labels": labels(agency, system, Some(&c.name))}, "spec": spec})
}

/// Every object of a system, in `namespace` of the agency's cluster.
/// `agency_level` is the level of the agency's cloud: its namespaces enforce the Pod
/// Security of that level, so pods get the restricted context when either level is 3+.
pub fn children(agency: &str, agency_level: u8, system: &str, namespace: &str, spec: &HostedSystemSpec) -> Vec<Child> {
    let mut out = Vec::new();
    let level = spec.security_level.max(agency_level);
    for c in &spec.components {
        let name = object_name(system, &c.name);
        let l = labels(agency, system, Some(&c.name));
        let template = pod_template(level, agency, system, c);
        match c.kind {
            ComponentKind::Stateless => out.push(Child::new(
                Kind::Deployment,
                Some(namespace),
                &name,
                &l,
                json!({"spec": {
                    "replicas": c.replicas,
                    "selector": {"matchLabels": selector(system, &c.name)},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                    "template": template,
                }}),
            )),
            ComponentKind::Stateful => {
                let mut sts = json!({"spec": {
                    "replicas": c.replicas,
                    "serviceName": name,
                    "selector": {"matchLabels": selector(system, &c.name)},
                    "template": template,
                    "persistentVolumeClaimRetentionPolicy": {
                        "whenDeleted": match spec.volume_retention { VolumeRetention::Retain => "Retain", VolumeRetention::Delete => "Delete" },
                        "whenScaled": "Retain",
                    },
                }});
                if let Some(s) = &c.storage {
                    let mut claim = json!({"metadata": {"name": "data", "labels": l},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": s.size}}}});
                    if let Some(class) = &s.class {
                        claim["spec"]["storageClassName"] = json!(class);
                    }
                    sts["spec"]["volumeClaimTemplates"] = json!([claim]);
                }
                out.push(Child::new(Kind::StatefulSet, Some(namespace), &name, &l, sts));
            }
        }
        if !c.ports.is_empty() {
            let mut svc = json!({"spec": {
                "selector": selector(system, &c.name),
                "ports": c.ports.iter().map(|p| json!({"name": p.name, "port": p.port, "targetPort": p.port, "protocol": "TCP"})).collect::<Vec<_>>(),
            }});
            if c.kind == ComponentKind::Stateful {
                svc["spec"]["clusterIP"] = json!("None");
            }
            out.push(Child::new(Kind::Service, Some(namespace), &name, &l, svc));
        }
        if c.replicas > 1 {
            out.push(Child::new(
                Kind::PodDisruptionBudget,
                Some(namespace),
                &name,
                &l,
                json!({"spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(system, &c.name)}}}),
            ));
        }
        out.push(network_policy(agency, system, namespace, spec, c));
    }
    if let Some(e) = spec.exposure.as_ref().filter(|e| e.mode != ExposureMode::None) {
        let class = if e.mode == ExposureMode::Internet {
            INTERNET_INGRESS_CLASS
        } else {
            GOVERNMENT_INGRESS_CLASS
        };
        let mut rule = json!({"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": object_name(system, &e.component), "port": {"number": e.port}}}}]}});
        if let Some(h) = &e.host {
            rule["host"] = json!(h);
        }
        let mut ing = json!({"spec": {"ingressClassName": class, "rules": [rule]}});
        if let Some(tls) = &e.tls_secret_name {
            ing["spec"]["tls"] = json!([{"secretName": tls, "hosts": e.host.iter().collect::<Vec<_>>()}]);
        }
        out.push(Child::new(
            Kind::Ingress,
            Some(namespace),
            system,
            &labels(agency, system, None),
            ing,
        ));
    }
    out
}

/// Key of the recorded HostedSystem in that ConfigMap.
pub const SPEC_RECORD_KEY: &str = "hostedsystem.yaml";

/// Name of the ConfigMap recording a system's spec.
pub fn spec_record_name(system: &str) -> String {
    format!("govcloud-system-{system}")
}

/// A ConfigMap on the agency's cluster holding the HostedSystem itself (as written, without
/// its internet-exposure approval, which must be given again), so that a backup of the
/// namespace carries what is needed to recreate the system on the hub after a restore.
pub fn spec_record(agency: &str, system: &str, namespace: &str, spec: &HostedSystemSpec) -> Child {
    let mut spec = spec.clone();
    spec.internet_exposure_approval = None;
    let record = json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
        "metadata": {"name": system, "namespace": namespace},
        "spec": spec,
    });
    let yaml = serde_yaml::to_string(&record).unwrap_or_default();
    let mut l = labels(agency, system, None);
    l.insert(SPEC_RECORD_LABEL.to_string(), "true".to_string());
    Child::new(
        Kind::ConfigMap,
        Some(namespace),
        &spec_record_name(system),
        &l,
        json!({"data": {SPEC_RECORD_KEY: yaml}}),
    )
}

/// Namespace of the platform's Gateways (Gateway API), one per entry:
/// `govcloud-government` and `govcloud-internet`, named like the IngressClasses.
pub const GATEWAY_NAMESPACE: &str = "govcloud-gateways";

/// A Gateway API HTTPRoute for the exposure (created besides the Ingress where the cluster
/// serves `gateway.networking.k8s.io/v1`). TLS is terminated by the platform's Gateway
/// listener for the host; the route only names the host and the backend.
pub fn http_route(agency: &str, system: &str, namespace: &str, spec: &HostedSystemSpec) -> Option<Value> {
    let e = spec.exposure.as_ref().filter(|e| e.mode != ExposureMode::None)?;
    let gateway = if e.mode == ExposureMode::Internet {
        INTERNET_INGRESS_CLASS
    } else {
        GOVERNMENT_INGRESS_CLASS
    };
    let mut route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": system, "namespace": namespace, "labels": labels(agency, system, None)},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway, "namespace": GATEWAY_NAMESPACE}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"group": "", "kind": "Service", "name": object_name(system, &e.component), "port": e.port, "weight": 1}],
            }],
        }
    });
    if let Some(h) = &e.host {
        route["spec"]["hostnames"] = json!([h]);
    }
    Some(route)
}

fn network_policy(agency: &str, system: &str, namespace: &str, spec: &HostedSystemSpec, c: &Component) -> Child {
    let peer = |component: &str| json!({"podSelector": {"matchLabels": selector(system, component)}});
    let ports_of = |component: &str, port: Option<i32>| -> Vec<Value> {
        match port {
            Some(p) => vec![json!({"port": p, "protocol": "TCP"})],
            None => spec
                .components
                .iter()
                .find(|x| x.name == component)
                .map(|x| {
                    x.ports
                        .iter()
                        .map(|p| json!({"port": p.port, "protocol": "TCP"}))
                        .collect()
                })
                .unwrap_or_default(),
        }
    };
    let mut ingress = Vec::new();
    for f in spec
        .flows
        .iter()
        .filter(|f| f.to.component.as_deref() == Some(c.name.as_str()))
    {
        let mut rule = json!({"from": [peer(&f.from)]});
        let ports = ports_of(&c.name, f.port);
        if !ports.is_empty() {
            rule["ports"] = Value::Array(ports);
        }
        ingress.push(rule);
    }
    for a in spec.admit.iter().filter(|a| a.to == c.name) {
        let mut rule = json!({"from": [{"podSelector": {"matchLabels": {SYSTEM_LABEL: a.system}}}]});
        let ports = ports_of(&c.name, a.port);
        if !ports.is_empty() {
            rule["ports"] = Value::Array(ports);
        }
        ingress.push(rule);
    }
    if let Some(e) = spec
        .exposure
        .as_ref()
        .filter(|e| e.mode != ExposureMode::None && e.component == c.name)
    {
        ingress.push(json!({
            "from": [{"namespaceSelector": {"matchLabels": {INGRESS_NAMESPACE_LABEL: "true"}}}],
            "ports": [{"port": e.port, "protocol": "TCP"}],
        }));
    }
    // Name resolution is always allowed (the policy below restricts egress).
    let mut egress = vec![json!({
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    })];
    for f in spec.flows.iter().filter(|f| f.from == c.name) {
        let to = if let Some(t) = &f.to.component {
            peer(t)
        } else if let Some(s) = &f.to.system {
            json!({"podSelector": {"matchLabels": {SYSTEM_LABEL: s}}})
        } else if let Some(cidr) = &f.to.cidr {
            json!({"ipBlock": {"cidr": cidr}})
        } else {
            continue;
        };
        let mut rule = json!({"to": [to]});
        let ports = match &f.to.component {
            Some(t) => ports_of(t, f.port),
            None => f
                .port
                .map(|p| vec![json!({"port": p, "protocol": "TCP"})])
                .unwrap_or_default(),
        };
        if !ports.is_empty() {
            rule["ports"] = Value::Array(ports);
        }
        egress.push(rule);
    }
    Child::new(
        Kind::NetworkPolicy,
        Some(namespace),
        &object_name(system, &c.name),
        &labels(agency, system, Some(&c.name)),
        json!({"spec": {
            "podSelector": {"matchLabels": selector(system, &c.name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        }}),
    )
}

/// Flows to networks that the agency's egress allow-list does not cover. `allowed` are the
/// agency's egress rules that its level and zone permit
/// ([`super::agency::egress_allowed`]); a flow's network must lie inside one of them and,
/// when that rule names ports, the flow must name one of those ports. A flow can narrow
/// the agency's egress, never widen it.
pub fn flow_problems(spec: &HostedSystemSpec, allowed: &[&EgressRule]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, f) in spec.flows.iter().enumerate() {
        let Some(cidr) = &f.to.cidr else { continue };
        let Some(net) = Cidr::parse(cidr) else {
            out.push(format!(
                "spec.flows[{i}].to.cidr: {cidr} is not a CIDR such as 10.30.0.0/16"
            ));
            continue;
        };
        let covering: Vec<&&EgressRule> = allowed
            .iter()
            .filter(|r| Cidr::parse(&r.cidr).is_some_and(|rn| rn.contains(&net)))
            .collect();
        let port_ok = |r: &EgressRule| {
            r.ports.is_empty()
                || f.port
                    .is_some_and(|p| r.ports.iter().any(|rp| rp.port == p && rp.protocol == Protocol::TCP))
        };
        if covering.iter().any(|r| port_ok(r)) {
            continue;
        }
        let list = if allowed.is_empty() {
            "the agency has no egress rule its level and zone allow".to_string()
        } else {
            format!(
                "the agency's egress allow-list is {}",
                allowed.iter().map(|r| describe_rule(r)).collect::<Vec<_>>().join(", ")
            )
        };
        if covering.is_empty() {
            out.push(format!(
                "spec.flows[{i}].to.cidr: {cidr} is outside the agency's egress ({list}); a flow may only narrow it — ask the platform team for an egress rule on the AgencyCloud, or remove the flow"
            ));
        } else {
            out.push(format!(
                "spec.flows[{i}].port: {cidr} is reachable only on the ports of {}; set port to one of them",
                covering.iter().map(|r| describe_rule(r)).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    out
}

fn describe_rule(r: &EgressRule) -> String {
    if r.ports.is_empty() {
        format!("{} {}", r.name, r.cidr)
    } else {
        let ports: Vec<String> = r.ports.iter().map(|p| format!("{}/{:?}", p.port, p.protocol)).collect();
        format!("{} {} ports {}", r.name, r.cidr, ports.join(" "))
    }
}

/// Why `agency` may not expose `host`, if it may not: the host must be a lowercase DNS name
/// (no wildcard) that belongs to the agency — under one of its `domains`, with no other
/// agency holding a longer matching domain (see [`crate::net::host_owner`]).
/// `agencies` are every AgencyCloud's name and domains, this one's included.
pub fn host_problem(host: &str, agency: &str, agencies: &[(&str, &[String])]) -> Option<String> {
    let dns = regex::Regex::new(govcloud_api::agency::DNS_NAME_PATTERN).ok()?;
    if host.len() > 253 || !dns.is_match(host) {
        return Some(format!(
            "spec.exposure.host: {host:?} is not a lowercase DNS name such as portal.mof.gov.cn (wildcards are not allowed)"
        ));
    }
    let own: &[String] = agencies
        .iter()
        .find(|(a, _)| *a == agency)
        .map(|(_, d)| *d)
        .unwrap_or(&[]);
    match host_owner(host, agencies) {
        Some(a) if a == agency => None,
        _ if own.is_empty() => Some(format!(
            "spec.exposure.host: agency {agency} has no domains (spec.domains of its AgencyCloud), so it may expose no host; ask the platform team to add the agency's domain, e.g. {agency}.gov.cn"
        )),
        Some(other) => Some(format!(
            "spec.exposure.host: {host} belongs to agency {other} (its domain is the longest match); use a host under {}",
            own.join(" or ")
        )),
        None if own.iter().any(|d| under_domain(host, d)) => Some(format!(
            "spec.exposure.host: {host} is under a domain the platform gave to more than one agency, so nobody may use it; ask the platform team to fix the AgencyClouds' domains"
        )),
        None => Some(format!(
            "spec.exposure.host: {host} is not under the agency's domains ({}); use a host under one of them",
            own.join(", ")
        )),
    }
}

/// Waiting reasons of a container that mean it will not run without a change.
const FAILING_WAITING: [&str; 7] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// How long a running container may stay unready before its failing readiness probe is
/// reported as a problem.
pub const UNREADY_GRACE_SECS: i64 = 60;

/// The message for a crash-looping container (waiting in back-off or briefly running).
fn crash_loop(
    ns: &str,
    pod: &str,
    container: &str,
    last: Option<&k8s_openapi::api::core::v1::ContainerStateTerminated>,
) -> String {
    let why = last
        .map(|t| {
            format!(
                ", last exit: {} (code {})",
                t.reason.as_deref().unwrap_or("Error"),
                t.exit_code
            )
        })
        .unwrap_or_default();
    format!(
        "pod {pod}: CrashLoopBackOff: container {container} keeps exiting{why}; read its logs: kubectl logs -n {ns} {pod} -c {container} --previous"
    )
}

/// What keeps one pod of a component from serving, in the kubelet's words, with what to
/// do about it; `None` when nothing is wrong (yet). `now_secs` is the current Unix time.
pub fn pod_problem(pod: &k8s_openapi::api::core::v1::Pod, now_secs: i64) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let ns = pod.metadata.namespace.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in statuses {
        // Between back-offs a crash-looping container runs for a moment: report it the same
        // way (same message) so that the condition does not flip at every restart.
        let last_failed = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .filter(|t| t.exit_code != 0 && t.reason.as_deref() != Some("OOMKilled"));
        let running = cs.state.as_ref().is_some_and(|s| s.running.is_some());
        if running && !cs.ready && cs.restart_count > 0 && last_failed.is_some() {
            return Some(crash_loop(ns, name, &cs.name, last_failed));
        }
        // Just exited again, not yet restarted.
        let exited = cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .filter(|t| t.exit_code != 0 && t.reason.as_deref() != Some("OOMKilled"));
        if exited.is_some() && cs.restart_count > 0 {
            return Some(crash_loop(ns, name, &cs.name, exited));
        }
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = w.reason.as_deref().filter(|r| FAILING_WAITING.contains(r))
        {
            let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let hint = match reason {
                "CrashLoopBackOff" => return Some(crash_loop(ns, name, &cs.name, last)),
                "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => format!(
                    "image {} cannot be pulled: check that the name and tag exist in the registry",
                    cs.image
                ),
                _ => format!(
                    "container {} cannot be created: {}",
                    cs.name,
                    w.message.as_deref().unwrap_or("see the pod's events")
                ),
            };
            // The kubelet alternates ErrImagePull and ImagePullBackOff: one word for both,
            // so that the condition does not change with every pull attempt.
            let reason = if reason == "ErrImagePull" {
                "ImagePullBackOff"
            } else {
                reason
            };
            return Some(format!("pod {name}: {reason}: {hint}"));
        }
        if !cs.ready
            && let Some(t) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref())
            && t.reason.as_deref() == Some("OOMKilled")
        {
            // No restart count in the message: it would change the condition (and write the
            // status) at every restart.
            return Some(format!(
                "pod {name}: OOMKilled: container {} ran out of memory and was restarted; raise the component's memory",
                cs.name
            ));
        }
        let running_since = cs
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .map(|t| t.0.as_second());
        if !cs.ready
            && let Some(since) = running_since
            && now_secs - since > UNREADY_GRACE_SECS
        {
            // A stable message (no running time): the condition changes only when the
            // problem does, so a failing system's status is not rewritten at every requeue.
            return Some(format!(
                "pod {name}: ReadinessFailing: container {} has run for over {UNREADY_GRACE_SECS} s without passing its readiness probe; check the component's health endpoint",
                cs.name
            ));
        }
    }
    None
}

/// How long a workload controller's `FailedCreate` event explains a missing pod: the
/// controller repeats it for as long as creation fails, with a back-off that grows to about
/// 17 minutes (the controller queue's 1,000 s limit), so an event older than this window is
/// a problem that has gone — and one still failing never drops out between two retries
/// (which would make the condition, and the status, flap).
pub const FAILED_CREATE_WINDOW_SECS: i64 = 1800;

/// Why a workload controller made no pod: the message of its newest `FailedCreate` event
/// (a quota or LimitRange refusal, an admission policy) if it is recent. The events are
/// those of one StatefulSet or ReplicaSet; `now_secs` is the current Unix time.
pub fn failed_create(events: &[k8s_openapi::api::core::v1::Event], now_secs: i64) -> Option<String> {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .filter_map(|e| {
            let at = [
                e.last_timestamp.as_ref().map(|t| t.0.as_second()),
                e.series
                    .as_ref()
                    .and_then(|s| s.last_observed_time.as_ref())
                    .map(|t| t.0.as_second()),
                e.event_time.as_ref().map(|t| t.0.as_second()),
                e.first_timestamp.as_ref().map(|t| t.0.as_second()),
            ]
            .into_iter()
            .flatten()
            .max()?;
            Some((at, e.message.clone()?))
        })
        .filter(|(at, _)| now_secs - at <= FAILED_CREATE_WINDOW_SECS)
        .max_by_key(|(at, _)| *at)
        .map(|(_, message)| message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str, message: &str, last: Option<i64>, series: Option<i64>) -> k8s_openapi::api::core::v1::Event {
        let time = |s: i64| jiff::Timestamp::from_second(s).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        k8s_openapi::api::core::v1::Event {
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_timestamp: last.map(|s| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(time(s))),
            series: series.map(|s| k8s_openapi::api::core::v1::EventSeries {
                count: Some(2),
                last_observed_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(time(s))),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn failed_create_is_the_newest_recent_refusal() {
        let now = 1_800_000_000;
        let quota =
            "create Pod db-0 in StatefulSet db failed error: pods \"db-0\" is forbidden: exceeded quota: compute";
        // The newest FailedCreate wins; other reasons are not refusals.
        let events = [
            event("FailedCreate", "older refusal", Some(now - 300), None),
            event("FailedCreate", quota, Some(now - 20), None),
            event(
                "SuccessfulCreate",
                "create Pod db-0 in StatefulSet db successful",
                Some(now - 5),
                None,
            ),
        ];
        assert_eq!(failed_create(&events, now).as_deref(), Some(quota));
        // A refusal repeated as an event series counts from its last observation.
        let events = [event("FailedCreate", "series", Some(now - 3_600), Some(now - 30))];
        assert_eq!(failed_create(&events, now).as_deref(), Some("series"));
        // Old refusals explain nothing any more; no events, no message.
        let events = [event(
            "FailedCreate",
            quota,
            Some(now - FAILED_CREATE_WINDOW_SECS - 1),
            None,
        )];
        assert_eq!(failed_create(&events, now), None);
        assert_eq!(failed_create(&[], now), None);
        // An event without any time or message is skipped, not a panic.
        let mut bare = event("FailedCreate", quota, None, None);
        bare.message = None;
        assert_eq!(failed_create(&[bare], now), None);
    }

    fn spec(level: u8) -> HostedSystemSpec {
        let yaml = format!(
            r#"
securityLevel: {level}
dataClassification: important
components:
  - name: web
    image: registry.gov.cn/portal/web:1.0
    replicas: 2
    ports: [{{name: http, port: 8080}}]
    env: [{{name: DB_HOST, value: portal-db}}, {{name: DB_PASSWORD, secretKeyRef: {{name: db, key: password}}}}]
  - name: db
    kind: Stateful
    image: registry.gov.cn/postgres:16
    ports: [{{name: pg, port: 5432}}]
    storage: {{size: 20Gi, mountPath: /var/lib/postgresql/data}}
    writableRootFilesystemReason: postgres writes its socket under /var/run
flows:
  - {{from: web, to: {{component: db}}}}
  - {{from: web, to: {{cidr: 10.30.0.0/16}}, port: 443}}
"#
        );
        match serde_yaml::from_str(&yaml) {
            Ok(s) => s,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    fn rules(yaml: &str) -> Vec<EgressRule> {
        match serde_yaml::from_str(yaml) {
            Ok(r) => r,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    fn with_flow(cidr: &str, port: Option<i32>) -> HostedSystemSpec {
        let mut s = spec(3);
        s.flows[1].to.cidr = Some(cidr.to_string());
        s.flows[1].port = port;
        s
    }

    #[test]
    fn flows_may_only_narrow_the_agency_egress() {
        let egress =
            rules("[{name: backbone, cidr: 10.0.0.0/8}, {name: ldap, cidr: 172.16.8.0/24, ports: [{port: 636}]}]");
        let allowed: Vec<&EgressRule> = egress.iter().collect();
        assert!(flow_problems(&with_flow("10.30.0.0/16", Some(443)), &allowed).is_empty());
        assert!(flow_problems(&with_flow("10.30.0.0/16", None), &allowed).is_empty());
        assert!(flow_problems(&with_flow("172.16.8.10/32", Some(636)), &allowed).is_empty());
        // The attack of the security review: everything, past the allow-list.
        let p = flow_problems(&with_flow("0.0.0.0/0", None), &allowed);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("spec.flows[1].to.cidr: 0.0.0.0/0 is outside the agency's egress"),
            "{p:?}"
        );
        assert!(p[0].contains("backbone 10.0.0.0/8"), "{p:?}");
        // Wider than the rule, next to it, another family, host bits that widen the net.
        for cidr in [
            "10.0.0.0/7",
            "11.0.0.0/8",
            "::ffff:10.0.0.0/104",
            "::/0",
            "172.16.8.1/16",
        ] {
            assert_eq!(flow_problems(&with_flow(cidr, None), &allowed).len(), 1, "{cidr}");
        }
        // Inside a rule with ports: the flow must name one of them.
        let p = flow_problems(&with_flow("172.16.8.10/32", Some(22)), &allowed);
        assert!(
            p[0].starts_with("spec.flows[1].port: 172.16.8.10/32 is reachable only on the ports of ldap"),
            "{p:?}"
        );
        assert_eq!(flow_problems(&with_flow("172.16.8.10/32", None), &allowed).len(), 1);
        // No egress at all: any network flow is refused.
        let p = flow_problems(&with_flow("10.30.0.0/16", Some(443)), &[]);
        assert!(
            p[0].contains("the agency has no egress rule its level and zone allow"),
            "{p:?}"
        );
    }

    #[test]
    fn hosts_belong_to_their_agency_only() {
        let mof = vec!["mof.gov.cn".to_string()];
        let zj = vec!["zj.gov.cn".to_string()];
        let agencies = [("mof", mof.as_slice()), ("zj", zj.as_slice()), ("none", &[][..])];
        assert_eq!(host_problem("portal.mof.gov.cn", "mof", &agencies), None);
        // Another agency's host, wildcards, look-alikes, case, trailing dots, Unicode.
        let p = host_problem("portal.mof.gov.cn", "zj", &agencies);
        assert!(
            p.as_deref().is_some_and(|p| p.contains("belongs to agency mof")),
            "{p:?}"
        );
        for host in [
            "*.gov.cn",
            "*.mof.gov.cn",
            "Portal.mof.gov.cn",
            "portal.mof.gov.cn.",
            "pоrtal.mof.gov.cn",
            "mof.gov.cn:443",
            "portal..mof.gov.cn",
            "-a.mof.gov.cn",
            "",
        ] {
            let p = host_problem(host, "mof", &agencies);
            assert!(
                p.as_deref().is_some_and(|p| p.contains("is not a lowercase DNS name")),
                "{host}: {p:?}"
            );
        }
        let p = host_problem("evilmof.gov.cn", "mof", &agencies);
        assert!(
            p.as_deref()
                .is_some_and(|p| p.contains("is not under the agency's domains (mof.gov.cn)")),
            "{p:?}"
        );
        let p = host_problem("a.gov.cn", "none", &agencies);
        assert!(
            p.as_deref().is_some_and(|p| p.contains("agency none has no domains")),
            "{p:?}"
        );
        // A broad domain does not reach into a narrower one of another agency.
        let broad = vec!["gov.cn".to_string()];
        let with_broad = [("mof", mof.as_slice()), ("nat", broad.as_slice())];
        assert_eq!(host_problem("stats.gov.cn", "nat", &with_broad), None);
        assert!(host_problem("portal.mof.gov.cn", "nat", &with_broad).is_some());
        // One domain given twice: neither may use it.
        let twice = [("mof", mof.as_slice()), ("copy", mof.as_slice())];
        let p = host_problem("portal.mof.gov.cn", "mof", &twice);
        assert!(
            p.as_deref().is_some_and(|p| p.contains("more than one agency")),
            "{p:?}"
        );
    }

    fn find<'a>(c: &'a [Child], kind: Kind, name: &str) -> &'a Child {
        match c.iter().find(|x| x.kind == kind && x.name == name) {
            Some(x) => x,
            None => panic!("{kind:?} {name} missing"),
        }
    }

    #[test]
    fn workloads_services_and_budgets() {
        let c = children("mof", 2, "portal", "mof-prod", &spec(2));
        let web = find(&c, Kind::Deployment, "portal-web");
        assert_eq!(web.body["spec"]["replicas"], 2);
        let env = &web.body["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env[1]["valueFrom"]["secretKeyRef"]["key"], "password");
        let db = find(&c, Kind::StatefulSet, "portal-db");
        assert_eq!(
            db.body["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            "20Gi"
        );
        assert_eq!(
            db.body["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
            "Retain"
        );
        assert_eq!(find(&c, Kind::Service, "portal-db").body["spec"]["clusterIP"], "None");
        find(&c, Kind::PodDisruptionBudget, "portal-web");
        assert!(
            !c.iter()
                .any(|x| x.kind == Kind::PodDisruptionBudget && x.name == "portal-db")
        );
        assert!(c.iter().all(|x| x.body["metadata"]["labels"][SYSTEM_LABEL] == "portal"));
    }

    #[test]
    fn flows_become_exact_network_policies() {
        let c = children("mof", 2, "portal", "mof-prod", &spec(2));
        let db = &find(&c, Kind::NetworkPolicy, "portal-db").body["spec"];
        assert_eq!(db["ingress"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            db["ingress"][0]["from"][0]["podSelector"]["matchLabels"][COMPONENT_LABEL],
            "web"
        );
        assert_eq!(db["ingress"][0]["ports"], json!([{"port": 5432, "protocol": "TCP"}]));
        assert_eq!(db["egress"].as_array().map(Vec::len), Some(1), "only DNS");
        assert_eq!(db["egress"][0]["ports"][0]["port"], 53);
        let web = &find(&c, Kind::NetworkPolicy, "portal-web").body["spec"];
        assert_eq!(web["ingress"], json!([]));
        assert_eq!(
            web["egress"][2],
            json!({"to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}], "ports": [{"port": 443, "protocol": "TCP"}]})
        );
    }

    #[test]
    fn flows_between_systems_need_both_sides() {
        let mut s = spec(2);
        s.flows.push(
            serde_yaml::from_str("{from: web, to: {system: payments}, port: 9000}").unwrap_or_else(|e| panic!("{e}")),
        );
        let c = children("mof", 2, "portal", "mof-prod", &s);
        let web = &find(&c, Kind::NetworkPolicy, "portal-web").body["spec"];
        assert_eq!(
            web["egress"][3]["to"][0]["podSelector"]["matchLabels"][SYSTEM_LABEL],
            "payments"
        );
        assert_eq!(web["ingress"], json!([]), "sending does not open the sender");
        // The receiving system admits the portal on its own side.
        let mut r = spec(2);
        r.admit = vec![serde_yaml::from_str("{system: portal, to: web, port: 8080}").unwrap_or_else(|e| panic!("{e}"))];
        let c = children("mof", 2, "payments", "mof-prod", &r);
        let recv = &find(&c, Kind::NetworkPolicy, "payments-web").body["spec"];
        assert_eq!(
            recv["ingress"],
            json!([{"from": [{"podSelector": {"matchLabels": {SYSTEM_LABEL: "portal"}}}], "ports": [{"port": 8080, "protocol": "TCP"}]}])
        );
    }

    #[test]
    fn exposure_becomes_an_ingress_and_an_allowance() {
        let mut s = spec(2);
        s.exposure = serde_yaml::from_str(
            "{mode: GovernmentNetwork, component: web, port: 8080, host: portal.zj.gov.cn, tlsSecretName: portal-tls}",
        )
        .ok();
        let c = children("zj", 2, "portal", "zj-prod", &s);
        let ing = &find(&c, Kind::Ingress, "portal").body["spec"];
        assert_eq!(ing["ingressClassName"], GOVERNMENT_INGRESS_CLASS);
        assert_eq!(ing["rules"][0]["host"], "portal.zj.gov.cn");
        assert_eq!(
            ing["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "portal-web"
        );
        assert_eq!(ing["tls"][0]["secretName"], "portal-tls");
        let web = &find(&c, Kind::NetworkPolicy, "portal-web").body["spec"];
        assert_eq!(
            web["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"][INGRESS_NAMESPACE_LABEL],
            "true"
        );
        assert_eq!(url(&s).as_deref(), Some("https://portal.zj.gov.cn/"));
        let route = http_route("zj", "portal", "zj-prod", &s).unwrap_or_default();
        assert_eq!(route["spec"]["hostnames"], json!(["portal.zj.gov.cn"]));
        assert_eq!(route["spec"]["parentRefs"][0]["name"], GOVERNMENT_INGRESS_CLASS);
        assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["name"], "portal-web");
        assert!(http_route("zj", "portal", "zj-prod", &spec(2)).is_none());
        assert!(
            !children("zj", 2, "portal", "zj-prod", &spec(2))
                .iter()
                .any(|x| x.kind == Kind::Ingress)
        );
    }

    #[test]
    fn level_3_is_restricted_with_reasoned_opt_out() {
        let c = children("mof", 2, "portal", "mof-prod", &spec(3));
        // A level-2 system in a level-3 cloud gets the restricted context too.
        let in_l3 = children("mof", 3, "portal", "mof-prod", &spec(2));
        assert_eq!(
            find(&in_l3, Kind::Deployment, "portal-web").body["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
            true
        );
        let web = &find(&c, Kind::Deployment, "portal-web").body["spec"]["template"]["spec"];
        assert_eq!(web["securityContext"]["runAsNonRoot"], true);
        let sc = &web["containers"][0]["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        let db = &find(&c, Kind::StatefulSet, "portal-db").body["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(db["securityContext"]["readOnlyRootFilesystem"], false);
        let l2 = children("mof", 2, "portal", "mof-prod", &spec(2));
        assert!(
            find(&l2, Kind::Deployment, "portal-web").body["spec"]["template"]["spec"]["containers"][0]
                .get("securityContext")
                .is_none()
        );
    }

    fn pod(status: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(json!({"metadata": {"name": "web-1", "namespace": "a-prod"}, "status": status}))
            .expect("test pod")
    }

    #[test]
    fn pod_problem_names_crash_loops_with_the_last_exit_and_the_logs_command() {
        let p = pod(
            json!({"containerStatuses": [{"name": "web", "image": "registry.gov.cn/x:1", "imageID": "",
            "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
        );
        let m = pod_problem(&p, 0).expect("a problem");
        assert!(m.contains("CrashLoopBackOff"), "{m}");
        assert!(m.contains("code 1"), "{m}");
        assert!(m.contains("kubectl logs -n a-prod web-1 -c web --previous"), "{m}");
    }

    #[test]
    fn pod_problem_names_pull_failures_oom_kills_and_failing_readiness() {
        let pull = pod(
            json!({"containerStatuses": [{"name": "web", "image": "registry.gov.cn/nope:1", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
        );
        let m = pod_problem(&pull, 0).expect("a problem");
        assert!(
            m.contains("ImagePullBackOff") && m.contains("registry.gov.cn/nope:1"),
            "{m}"
        );
        let oom = pod(
            json!({"containerStatuses": [{"name": "db", "image": "i", "imageID": "", "ready": false,
            "restartCount": 2, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}),
        );
        let m = pod_problem(&oom, 0).expect("a problem");
        assert!(m.contains("OOMKilled") && m.contains("memory"), "{m}");
        // Killed once, ready again: not a problem now (it would hide another pod's).
        let mut recovered = oom.clone();
        if let Some(cs) = recovered.status.as_mut().and_then(|s| s.container_statuses.as_mut()) {
            cs[0].ready = true;
        }
        assert_eq!(pod_problem(&recovered, 0), None);
        let started = 1_767_225_600; // 2026-01-01T00:00:00Z
        let unready = pod(
            json!({"containerStatuses": [{"name": "web", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}),
        );
        assert_eq!(
            pod_problem(&unready, started + UNREADY_GRACE_SECS),
            None,
            "within the grace period"
        );
        let m = pod_problem(&unready, started + UNREADY_GRACE_SECS + 1).expect("a problem");
        assert!(m.contains("ReadinessFailing"), "{m}");
        // The same problem later reads the same: no status write per requeue.
        assert_eq!(pod_problem(&unready, started + 3600), Some(m));
    }

    #[test]
    fn pod_problem_reads_the_same_through_a_crash_loop_and_pull_retries() {
        let waiting = pod(
            json!({"containerStatuses": [{"name": "web", "image": "i", "imageID": "", "ready": false,
            "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
        );
        let running = pod(
            json!({"containerStatuses": [{"name": "web", "image": "i", "imageID": "", "ready": false,
            "restartCount": 4, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
        );
        assert_eq!(pod_problem(&waiting, 0), pod_problem(&running, 1_767_225_601));
        let exited = pod(
            json!({"containerStatuses": [{"name": "web", "image": "i", "imageID": "", "ready": false,
            "restartCount": 3, "state": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
        );
        assert_eq!(pod_problem(&exited, 0), pod_problem(&waiting, 0));
        let err = pod(
            json!({"containerStatuses": [{"name": "web", "image": "x:1", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}}]}),
        );
        let back_off = pod(
            json!({"containerStatuses": [{"name": "web", "image": "x:1", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
        );
        assert_eq!(pod_problem(&err, 0), pod_problem(&back_off, 0));
    }

    #[test]
    fn pod_problem_is_none_for_healthy_and_starting_pods() {
        let ok = pod(
            json!({"containerStatuses": [{"name": "web", "image": "i", "imageID": "", "ready": true,
            "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}),
        );
        assert_eq!(pod_problem(&ok, 1_767_225_600 + 3600), None);
        let creating = pod(
            json!({"containerStatuses": [{"name": "web", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(pod_problem(&creating, 0), None);
        assert_eq!(pod_problem(&pod(json!({})), 0), None);
    }
}
