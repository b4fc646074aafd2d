//! Isolation proven with packets: a matrix of TCP connections between hosted systems of
//! five agencies — levels 1, 2 and 3 on the external zone (dc2's real node), levels 3 and 4
//! on the internal zone (dc1's real node) — each with the outcome the operator's policies
//! must give: pod to pod across agencies and zones, declared and undeclared flows inside an
//! agency, egress to an allow-listed destination and to others, and an exposed component
//! reached from the exposure entry's namespace and from elsewhere.
//!
//! The testbed has no ingress controller and no cluster DNS: the exposure rows connect
//! from a pod in a namespace labelled as the platform's entry (`govcloud.io/ingress`), which
//! is exactly what the policy admits, and DNS is not tried. Egress destinations are the API
//! server forwards on each real node's host address (the only listeners a pod can reach).
//!
//! Every attempt runs inside a pod (`kubectl exec`, through the kubelet): the sample app's
//! `/connect` opens a TCP connection from that pod and says whether it opened. Figures go to
//! target/reliability/packets.json.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use futures::StreamExt;
use govcloud_api::HostedSystem;
use govcloud_tests::*;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(240);
const APP: &str = "registry.gov.cn/govcloud/sample-app:1.0.0";
const REAL_NODE_TOLERATION: &str = "govcloud.io/node-kind";

/// An agency cloud placed on testbed cluster `member` (a DataCenterCluster of its own,
/// `zone`, certified up to `level`), its `prod` namespace pinned to that cluster's real node.
async fn agency(hub: &Client, member: usize, zone: &str, level: u8, egress: Value) -> Result<(String, String)> {
    let group = unique("pk");
    let certified = if zone == "internal" { 4 } else { 3 };
    if member == 1 {
        // The hub itself as a workload cluster: registered without a kubeconfig Secret (with
        // one, the operator would treat it as a remote member and as the hub at once).
        let dcc: govcloud_api::DataCenterCluster = serde_json::from_value(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "DataCenterCluster",
            "metadata": {"name": unique("dc"), "labels": {"govcloud.io/test-group": group, "govcloud.io/test": "true"}},
            "spec": {"region": "r1", "zone": zone, "maxSecurityLevel": certified},
        }))?;
        Api::<govcloud_api::DataCenterCluster>::all(hub.clone())
            .create(&PostParams::default(), &dcc)
            .await?;
    } else {
        create_test_cluster(hub, &group, zone, certified, member, None).await?;
    }
    let a = unique_short(&format!("p{level}"));
    let mut manifest = agency_cloud(&a, level, zone, &[("prod", "2", "2Gi")], &group);
    manifest["spec"]["egress"] = egress;
    let ac: govcloud_api::AgencyCloud = serde_json::from_value(manifest)?;
    Api::<govcloud_api::AgencyCloud>::all(hub.clone())
        .create(&PostParams::default(), &ac)
        .await?;
    wait_agency_ready(hub, &a, T).await?;
    let ns = format!("{a}-prod");
    testbed(&["pin-namespace", &format!("dc{member}"), &ns]).await?;
    Ok((a, ns))
}

fn app(name: &str) -> Value {
    json!({"name": name, "image": APP, "replicas": 1,
           "ports": [{"name": "http", "port": 8080}], "health": {"path": "/healthz", "port": 8080},
           "resources": {"cpu": "30m", "memory": "24Mi"}})
}

async fn deploy(hub: &Client, ns: &str, name: &str, level: u8, spec: Value) -> Result<()> {
    let mut body = json!({"securityLevel": level, "dataClassification": "general"});
    if let (Some(b), Some(s)) = (body.as_object_mut(), spec.as_object()) {
        b.extend(s.clone());
    }
    let hs: HostedSystem = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
        "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}}, "spec": body}))?;
    Api::<HostedSystem>::namespaced(hub.clone(), ns)
        .create(&PostParams::default(), &hs)
        .await?;
    Ok(())
}

async fn wait_available(hub: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), ns);
    wait_for(&format!("{ns}/{name} Available"), T, || async {
        let hs = api.get(name).await?;
        let conds = hs.status.map(|s| s.conditions).unwrap_or_default();
        Ok(conds
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
            .then_some(()))
    })
    .await
}

/// A running pod (name, IP) with these labels in `ns` of cluster `member`, on its real node.
async fn pod_with(member: usize, ns: &str, labels: &str) -> Result<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client(member).await?, ns);
    let list = pods.list(&ListParams::default().labels(labels)).await?;
    for p in list.items {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        if let (true, Some(name), Some(ip)) = (running, p.metadata.name.clone(), ip) {
            ensure!(
                node == format!("dc{member}-real"),
                "pod {ns}/{name} runs on {node}, not on dc{member}-real"
            );
            return Ok((name, ip));
        }
    }
    bail!("no running pod with {labels} in {ns} on dc{member}")
}

async fn component_pod(member: usize, ns: &str, system: &str, component: &str) -> Result<(String, String)> {
    pod_with(
        member,
        ns,
        &format!("govcloud.io/system={system},govcloud.io/component={component}"),
    )
    .await
}

/// Whether a TCP connection from `pod` to `host:port` opens (the sample app's `/connect`,
/// asked on the pod's own loopback). An exec that fails is an error of the test, never
/// "blocked".
async fn connects(member: usize, ns: &str, pod: &str, host: &str, port: u16) -> Result<bool> {
    let kubectl = format!("{}/kubectl", hack_version("K8S_BIN")?);
    let url = format!("http://127.0.0.1:8080/connect?host={host}&port={port}");
    let out = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig_path(member))
        .args(["-n", ns, "exec", pod, "--", "/govcloud-sample-app", "probe", &url])
        .output()
        .await
        .context("running kubectl exec")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "exec in {ns}/{pod} failed: {} {}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if stdout.contains("open") && !stdout.contains("closed") {
        Ok(true)
    } else if stdout.contains("closed") {
        Ok(false)
    } else {
        bail!("unexpected answer from {ns}/{pod}: {stdout}")
    }
}

/// The port of testbed cluster `n`'s API server (also forwarded on each real node's host
/// address).
fn api_port(n: usize) -> Result<u16> {
    let url = server_url(n)?;
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| anyhow!("no port in {url}"))
}

/// A plain pod of the sample app in `ns`, tolerating the real node's taint.
async fn stand_in(member: usize, ns: &str, name: &str) -> Result<()> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": APP, "ports": [{"containerPort": 8080}],
                                 "resources": {"requests": {"cpu": "20m", "memory": "16Mi"}, "limits": {"memory": "24Mi"}}}],
                 "tolerations": [{"key": REAL_NODE_TOLERATION, "operator": "Exists", "effect": "NoSchedule"}],
                 "automountServiceAccountToken": false}
    }))?;
    Api::<Pod>::namespaced(client(member).await?, ns)
        .create(&PostParams::default(), &pod)
        .await?;
    Ok(())
}

/// (what, from (cluster, namespace, pod), to (host, port), expected to open)
type Attempt = (String, (usize, String, String), (String, u16), bool);

struct Row {
    what: String,
    expect_open: bool,
    open: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_matrix_across_agencies_levels_and_zones() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let (p1, p2) = (api_port(1)?, api_port(2)?);
    let ext_host = "10.87.2.1";

    // External zone, dc2: levels 1, 2 (egress to dc2's API forward on its port only), 3.
    let (_, e1) = agency(&hub, 2, "external", 1, json!([])).await?;
    let (_, e2) = agency(
        &hub,
        2,
        "external",
        2,
        json!([{"name": "api", "cidr": format!("{ext_host}/32"), "ports": [{"port": p2}]}]),
    )
    .await?;
    let (_, e3) = agency(&hub, 2, "external", 3, json!([])).await?;
    // Internal zone, dc1: levels 3 and 4.
    let (_, i3) = agency(&hub, 1, "internal", 3, json!([])).await?;
    let (_, i4) = agency(&hub, 1, "internal", 4, json!([])).await?;

    // Each agency: a portal with web and client, the client's flow to web declared; E2's
    // client also declares its egress flow; E2's web is exposed on the government network.
    let flows = json!([{"from": "client", "to": {"component": "web"}, "port": 8080}]);
    for (ns, level) in [(&e1, 1), (&e3, 3), (&i3, 3), (&i4, 4)] {
        deploy(
            &hub,
            ns,
            "portal",
            level,
            json!({"components": [app("web"), app("client")], "flows": flows}),
        )
        .await?;
    }
    deploy(
        &hub,
        &e2,
        "portal",
        2,
        json!({"components": [app("web"), app("client")],
               "flows": [{"from": "client", "to": {"component": "web"}, "port": 8080},
                         {"from": "client", "to": {"cidr": format!("{ext_host}/32")}, "port": p2}],
               "exposure": {"mode": "GovernmentNetwork", "component": "web", "port": 8080}}),
    )
    .await?;
    // The exposure entry's namespace (as the platform's government-network controller's) and
    // a namespace that is nobody's, each with a plain pod on dc2's real node.
    let dc2 = client(2).await?;
    let (entry, stray) = (unique("entry"), unique("stray"));
    for (ns, label) in [(&entry, true), (&stray, false)] {
        let mut n = json!({"metadata": {"name": ns, "labels": {"govcloud.io/test": "true"}}});
        if label {
            n["metadata"]["labels"]["govcloud.io/ingress"] = json!("true");
        }
        Api::<Namespace>::all(dc2.clone())
            .create(&PostParams::default(), &serde_json::from_value(n)?)
            .await?;
        testbed(&["pin-namespace", "dc2", ns]).await?;
        stand_in(2, ns, "pod").await?;
    }
    for ns in [&e1, &e2, &e3, &i3, &i4] {
        wait_available(&hub, ns, "portal").await?;
    }

    let mut pods = std::collections::BTreeMap::new();
    for (member, ns) in [(2, &e1), (2, &e2), (2, &e3), (1, &i3), (1, &i4)] {
        for c in ["web", "client"] {
            pods.insert((ns.clone(), c), (member, component_pod(member, ns, "portal", c).await?));
        }
    }
    let entry_pod = wait_for("entry pod running", T, || async {
        Ok(pod_with(2, &entry, "app=pod").await.ok())
    })
    .await?;
    let stray_pod = wait_for("stray pod running", T, || async {
        Ok(pod_with(2, &stray, "app=pod").await.ok())
    })
    .await?;
    let get = |ns: &String, c: &'static str| -> Result<(usize, String, String)> {
        let (m, (pod, ip)) = pods.get(&(ns.clone(), c)).ok_or_else(|| anyhow!("no pod {ns}/{c}"))?;
        Ok((*m, pod.clone(), ip.clone()))
    };

    // (what, from (cluster, namespace, pod), to (host, port), expected to open)
    let mut attempts: Vec<Attempt> = Vec::new();
    let to_web = |what: &str, from: (usize, String, String), to_ns: &String, open: bool| -> Result<Attempt> {
        let (_, _, ip) = get(to_ns, "web")?;
        Ok((what.to_string(), from, (ip, 8080), open))
    };
    let from = |ns: &String, c: &'static str| -> Result<(usize, String, String)> {
        let (m, pod, _) = get(ns, c)?;
        Ok((m, ns.clone(), pod))
    };
    // Declared flows inside each agency: open.
    for (ns, l) in [
        (&e1, "L1 ext"),
        (&e2, "L2 ext"),
        (&e3, "L3 ext"),
        (&i3, "L3 int"),
        (&i4, "L4 int"),
    ] {
        attempts.push(to_web(
            &format!("{l}: client → own web (declared flow)"),
            from(ns, "client")?,
            ns,
            true,
        )?);
    }
    // Undeclared inside an agency: web → client.
    for (ns, l) in [
        (&e1, "L1 ext"),
        (&e2, "L2 ext"),
        (&e3, "L3 ext"),
        (&i3, "L3 int"),
        (&i4, "L4 int"),
    ] {
        let (_, _, client_ip) = get(ns, "client")?;
        attempts.push((
            format!("{l}: web → own client (undeclared)"),
            from(ns, "web")?,
            (client_ip, 8080),
            false,
        ));
    }
    // Across agencies, same cluster and zone, in both directions and every level pair.
    let external = [(&e1, "L1"), (&e2, "L2"), (&e3, "L3")];
    for (a, la) in external {
        for (b, lb) in external {
            if a != b {
                attempts.push(to_web(
                    &format!("ext {la} client → ext {lb} web (other agency)"),
                    from(a, "client")?,
                    b,
                    false,
                )?);
            }
        }
    }
    attempts.push(to_web(
        "int L3 client → int L4 web (other agency)",
        from(&i3, "client")?,
        &i4,
        false,
    )?);
    attempts.push(to_web(
        "int L4 client → int L3 web (other agency)",
        from(&i4, "client")?,
        &i3,
        false,
    )?);
    // Across zones: no path between the internal and the external cluster.
    attempts.push(to_web(
        "ext L2 client → int L3 web (other zone)",
        from(&e2, "client")?,
        &i3,
        false,
    )?);
    attempts.push(to_web(
        "int L4 client → ext L2 web (other zone)",
        from(&i4, "client")?,
        &e2,
        false,
    )?);
    attempts.push(to_web(
        "ext L1 client → int L4 web (other zone)",
        from(&e1, "client")?,
        &i4,
        false,
    )?);
    attempts.push(to_web(
        "int L3 client → ext L3 web (other zone)",
        from(&i3, "client")?,
        &e3,
        false,
    )?);
    // Egress: E2's allow-listed destination on its port; the same host on another port;
    // agencies without the rule; the internal zone's cluster.
    for (what, ns, component, host, port, open) in [
        (
            "L2 ext client → allow-listed egress (declared flow)",
            &e2,
            "client",
            ext_host,
            p2,
            true,
        ),
        (
            "L2 ext web → allow-listed egress (agency rule applies to every pod at L2+)",
            &e2,
            "web",
            ext_host,
            p2,
            true,
        ),
        (
            "L2 ext client → allow-listed host, another port",
            &e2,
            "client",
            ext_host,
            p1,
            false,
        ),
        (
            "L3 ext client → egress not in its allow-list",
            &e3,
            "client",
            ext_host,
            p2,
            false,
        ),
        (
            "L1 ext client → egress without a declared flow",
            &e1,
            "client",
            ext_host,
            p2,
            false,
        ),
        (
            "L4 int client → its host's API forward (no egress)",
            &i4,
            "client",
            "10.87.1.1",
            p1,
            false,
        ),
    ] {
        attempts.push((what.into(), from(ns, component)?, (host.into(), port), open));
    }
    // Exposure: E2's web port from the entry's namespace (open), its client from there
    // (not exposed), and E2's web from a namespace that is not the entry.
    let (_, _, e2_web) = get(&e2, "web")?;
    let (_, _, e2_client) = get(&e2, "client")?;
    attempts.push((
        "entry namespace → exposed web".into(),
        (2, entry.clone(), entry_pod.0.clone()),
        (e2_web.clone(), 8080),
        true,
    ));
    attempts.push((
        "entry namespace → unexposed client".into(),
        (2, entry.clone(), entry_pod.0.clone()),
        (e2_client, 8080),
        false,
    ));
    attempts.push((
        "other namespace → exposed web".into(),
        (2, stray.clone(), stray_pod.0.clone()),
        (e2_web, 8080),
        false,
    ));

    // Policies need a moment after the pods are ready: an expected-open connection is retried
    // for up to 60 s; an expected-closed one is tried three times and must stay closed.
    // Six at a time (each blocked attempt waits for the connect timeout).
    let rows: Vec<Result<Row>> = futures::stream::iter(attempts.into_iter().map(
        |(what, (member, ns, pod), (host, port), expect_open)| async move {
            let open = if expect_open {
                wait_for(&what, Duration::from_secs(60), || async {
                    Ok(connects(member, &ns, &pod, &host, port).await?.then_some(()))
                })
                .await
                .is_ok()
            } else {
                let mut any = false;
                for _ in 0..3 {
                    any |= connects(member, &ns, &pod, &host, port).await?;
                }
                any
            };
            Ok(Row {
                what,
                expect_open,
                open,
            })
        },
    ))
    .buffer_unordered(6)
    .collect()
    .await;
    let mut rows = rows.into_iter().collect::<Result<Vec<Row>>>()?;
    rows.sort_by(|a, b| a.what.cmp(&b.what));

    let unexpected: Vec<&Row> = rows.iter().filter(|r| r.open != r.expect_open).collect();
    let figures = json!({
        "tried": rows.len(),
        "blocked_as_expected": rows.iter().filter(|r| !r.expect_open && !r.open).count(),
        "allowed_as_expected": rows.iter().filter(|r| r.expect_open && r.open).count(),
        "unexpected": unexpected.iter().map(|r| format!("{}: expected {}, got {}", r.what, open_word(r.expect_open), open_word(r.open))).collect::<Vec<_>>(),
        "rows": rows.iter().map(|r| json!({"what": r.what, "expected": open_word(r.expect_open), "got": open_word(r.open)})).collect::<Vec<_>>(),
    });
    std::fs::write(
        figures_dir().join("packets.json"),
        serde_json::to_string_pretty(&figures)?,
    )?;
    println!("{figures:#}");
    ensure!(
        unexpected.is_empty(),
        "{} unexpected outcomes: {:#}",
        unexpected.len(),
        figures["unexpected"]
    );
    ensure!(rows.len() >= 30, "only {} connections tried", rows.len());
    Ok(())
}

fn open_word(open: bool) -> &'static str {
    if open { "open" } else { "blocked" }
}
