//! Hosted systems on the testbed's real node (kubelet + containerd, kube-proxy, kube-router's
//! NetworkPolicy firewall): pods that run images pulled from the local registry, readiness
//! from real probes, packets that the operator's NetworkPolicies let through or not, and a
//! crashing image reported as Degraded with the kubelet's reason.
//!
//! The agencies' namespaces are pinned to dc2's real node (`hack/testbed.sh pin-namespace`),
//! so their pods run there and not on the KWOK nodes.

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use govcloud_api::{AgencyCloud, HostedSystem};
use govcloud_tests::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(180);
const APP: &str = "registry.gov.cn/govcloud/sample-app:1.0.0";
const CRASH: &str = "registry.gov.cn/govcloud/crash:1";

/// A ready agency cloud on dc2 whose `prod` namespace runs on dc2's real node.
async fn real_agency(hub: &Client, level: u8) -> Result<(String, String)> {
    let group = unique("grp");
    create_test_cluster(hub, &group, "external", 3, 2, None).await?;
    let a = unique_short("rn");
    let mut manifest = agency_cloud(&a, level, "external", &[("prod", "2", "2Gi")], &group);
    manifest["spec"]["environments"][0]["quota"]["storage"] = json!("10Gi");
    let ac: AgencyCloud = serde_json::from_value(manifest)?;
    let api: Api<AgencyCloud> = Api::all(hub.clone());
    api.create(&PostParams::default(), &ac).await?;
    wait_agency_ready(hub, &a, T).await?;
    let ns = format!("{a}-prod");
    testbed(&["pin-namespace", "dc2", &ns]).await?;
    Ok((a, ns))
}

fn app(name: &str) -> Value {
    json!({"name": name, "image": APP, "replicas": 1,
           "ports": [{"name": "http", "port": 8080}], "health": {"path": "/healthz", "port": 8080},
           "resources": {"cpu": "50m", "memory": "32Mi"}})
}

fn system(name: &str, level: u8, components: Vec<Value>, flows: Value) -> Result<HostedSystem> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
        "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}},
        "spec": {"securityLevel": level, "dataClassification": "general",
                 "components": components, "flows": flows}
    }))?)
}

fn condition(hs: &HostedSystem, t: &str) -> Option<(String, String, String)> {
    condition_of(&hs.status.as_ref()?.conditions, t)
}

async fn wait_available(hub: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), ns);
    wait_for(&format!("{ns}/{name} Available"), T, || async {
        let hs = api.get(name).await?;
        Ok(condition(&hs, "Available")
            .is_some_and(|(s, _, _)| s == "True")
            .then_some(()))
    })
    .await
}

/// The running pod of a component on the real node, and its IP.
async fn pod_of(member: &Client, ns: &str, system: &str, component: &str) -> Result<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(member.clone(), ns);
    let lp = ListParams::default().labels(&format!(
        "govcloud.io/system={system},govcloud.io/component={component}"
    ));
    let list = pods.list(&lp).await?;
    for p in list.items {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        if let (Some(name), Some(ip)) = (p.metadata.name.clone(), ip) {
            ensure!(
                node == "dc2-real",
                "pod {ns}/{name} runs on {node}, not on the real node dc2-real"
            );
            return Ok((name, ip));
        }
    }
    bail!("no running pod of {system}/{component} in {ns}")
}

/// Runs `govcloud-sample-app probe URL` inside `pod` (kubectl exec through the kubelet);
/// true when the HTTP GET succeeded.
async fn probe_from(ns: &str, pod: &str, url: &str) -> Result<bool> {
    let out = kubectl_exec(ns, pod, &["probe", url]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only a connection that did not open counts as blocked (the probe exits 2 and says
    // "connect:"); an HTTP error status means the packets got through, and anything else
    // (the exec failed, the pod is gone) is a failure of the test, never a "blocked".
    match out.status.code() {
        Some(0) => Ok(true),
        Some(2) if stderr.contains("connect:") => Ok(false),
        Some(1) => bail!("{url} answered from {ns}/{pod} with an HTTP error: the connection was not blocked: {stderr}"),
        code => bail!("kubectl exec into {ns}/{pod} failed ({code:?}): {stderr}"),
    }
}

#[tokio::test]
async fn real_pods_serve_http_and_network_policies_hold_packets() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let (_a, ns_a) = real_agency(&hub, 2).await?;
    let (_b, ns_b) = real_agency(&hub, 2).await?;

    // Agency A: a web server and a client that declares its flow to it.
    let sys_a = system(
        "portal",
        2,
        vec![app("web"), app("client")],
        json!([{"from": "client", "to": {"component": "web"}, "port": 8080}]),
    )?;
    Api::<HostedSystem>::namespaced(hub.clone(), &ns_a)
        .create(&PostParams::default(), &sys_a)
        .await?;
    // Agency B: a client of its own, which declares nothing towards A (it cannot).
    let sys_b = system("prober", 2, vec![app("client")], json!([]))?;
    Api::<HostedSystem>::namespaced(hub.clone(), &ns_b)
        .create(&PostParams::default(), &sys_b)
        .await?;
    wait_available(&hub, &ns_a, "portal").await?;
    wait_available(&hub, &ns_b, "prober").await?;

    let (_, web_ip) = pod_of(&member, &ns_a, "portal", "web").await?;
    let (client_a, client_ip) = pod_of(&member, &ns_a, "portal", "client").await?;
    let (client_b, _) = pod_of(&member, &ns_b, "prober", "client").await?;
    let web = format!("http://{web_ip}:8080/healthz");

    // Declared flow: A's client reaches A's web (the policies need a moment after Ready).
    wait_for("A's client reaches A's web", Duration::from_secs(60), || async {
        Ok(probe_from(&ns_a, &client_a, &web).await?.then_some(()))
    })
    .await?;
    // Another agency's pod: refused, however often it tries.
    for _ in 0..3 {
        ensure!(
            !probe_from(&ns_b, &client_b, &web).await?,
            "agency B's pod reached agency A's web server at {web}"
        );
    }
    // Undeclared flow inside A: web → client is not declared.
    let (web_pod, _) = pod_of(&member, &ns_a, "portal", "web").await?;
    ensure!(
        !probe_from(&ns_a, &web_pod, &format!("http://{client_ip}:8080/healthz")).await?,
        "A's web reached A's client although no flow web → client is declared"
    );
    Ok(())
}

#[tokio::test]
async fn crashing_image_is_degraded_with_crash_loop_back_off() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let (_a, ns) = real_agency(&hub, 2).await?;
    let mut crash = app("worker");
    crash["image"] = json!(CRASH);
    if let Some(o) = crash.as_object_mut() {
        o.remove("health");
    }
    let sys = system("batch", 2, vec![crash], json!([]))?;
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    api.create(&PostParams::default(), &sys).await?;
    let start = std::time::Instant::now();
    let (reason, message) = wait_for("Degraded naming CrashLoopBackOff", Duration::from_secs(90), || async {
        let hs = api.get("batch").await?;
        Ok(condition(&hs, "Degraded")
            .filter(|(s, _, m)| s == "True" && m.contains("CrashLoopBackOff"))
            .map(|(_, r, m)| (r, m)))
    })
    .await?;
    let took = start.elapsed();
    record_figure("crash_loop_degraded_seconds", took.as_secs_f64());
    ensure!(
        took <= Duration::from_secs(60),
        "Degraded named CrashLoopBackOff only after {took:?} (target 60 s)"
    );
    ensure!(reason == "ContainersFailing", "reason {reason}: {message}");
    ensure!(
        message.contains("worker") && message.contains("logs"),
        "the message names the component and says what to do: {message}"
    );
    Ok(())
}

/// Appends `name value` to target/reliability/realnode.txt (figures for the docs).
fn record_figure(name: &str, value: f64) {
    let dir = figures_dir();
    let _ = std::fs::create_dir_all(&dir);
    let line = format!("{name} {value:.1}\n");
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("realnode.txt"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

/// Runs `govcloud-sample-app ARGS…` inside `pod` and returns whether it exited 0, and what it
/// printed.
async fn exec_app(ns: &str, pod: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = kubectl_exec(ns, pod, args).await?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// `kubectl exec` of `govcloud-sample-app ARGS…` in `pod` on dc2 (through the kubelet).
async fn kubectl_exec(ns: &str, pod: &str, args: &[&str]) -> Result<std::process::Output> {
    let kubectl = format!("{}/kubectl", hack_version("K8S_BIN")?);
    tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig_path(2))
        .args(["-n", ns, "exec", pod, "--", "/govcloud-sample-app"])
        .args(args)
        .output()
        .await
        .context("running kubectl exec")
}

#[tokio::test]
async fn stateful_component_gets_a_provisioned_volume_that_keeps_its_data() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let (_a, ns) = real_agency(&hub, 2).await?;
    let mut db = app("db");
    db["kind"] = json!("Stateful");
    db["storage"] = json!({"size": "1Gi", "class": "local-path", "mountPath": "/data"});
    let sys = system("records", 2, vec![db], json!([]))?;
    Api::<HostedSystem>::namespaced(hub.clone(), &ns)
        .create(&PostParams::default(), &sys)
        .await?;
    wait_available(&hub, &ns, "records").await?;
    let (pod, _) = pod_of(&member, &ns, "records", "db").await?;
    let marker = format!("档案 {}", unique("marker"));
    let (ok, said) = exec_app(&ns, &pod, &["put", "http://127.0.0.1:8080/data/marker.txt", &marker]).await?;
    ensure!(ok, "writing into the volume failed: {said}");

    // The claim is bound to a volume the provisioner made on the real node's disk.
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(member.clone(), &ns);
    let claim = pvcs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|c| c.metadata.name.as_deref().is_some_and(|n| n.contains("records-db")))
        .context("no claim of records-db")?;
    let pv_name = claim
        .spec
        .and_then(|s| s.volume_name)
        .context("the claim is not bound")?;
    let pv = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(member.clone())
        .get(&pv_name)
        .await?;
    let path = pv
        .spec
        .as_ref()
        .and_then(|s| {
            s.host_path
                .as_ref()
                .map(|h| h.path.clone())
                .or_else(|| s.local.as_ref().map(|l| l.path.clone()))
        })
        .context("the volume has no path on the node")?;
    let on_disk = std::fs::read_to_string(std::path::Path::new(&path).join("marker.txt"))
        .with_context(|| format!("reading marker.txt in {path} on the node"))?;
    ensure!(on_disk == marker, "the node's disk holds {on_disk:?}, not {marker:?}");

    // A new pod of the StatefulSet (same name, new uid) gets the same volume, and the data.
    let pods: Api<Pod> = Api::namespaced(member.clone(), &ns);
    let old_uid = pods.get(&pod).await?.metadata.uid;
    pods.delete(&pod, &Default::default()).await?;
    wait_for("the data back in a new pod", T, || async {
        let Ok((new_pod, _)) = pod_of(&member, &ns, "records", "db").await else {
            return Ok(None);
        };
        let fresh = pods.get(&new_pod).await?;
        let ready = fresh
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| c.iter().all(|c| c.ready));
        if fresh.metadata.uid == old_uid || !ready {
            return Ok(None);
        }
        let (ok, body) = exec_app(&ns, &new_pod, &["probe", "http://127.0.0.1:8080/data/marker.txt"]).await?;
        Ok((ok && body == marker).then_some(()))
    })
    .await
}

#[tokio::test]
async fn image_missing_from_the_registry_is_degraded_with_image_pull_back_off() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let (_a, ns) = real_agency(&hub, 2).await?;
    let mut web = app("web");
    // An allowed registry (registry.gov.cn, the local registry), an image it does not have.
    web["image"] = json!("registry.gov.cn/govcloud/no-such-app:9.9.9");
    let sys = system("missing", 2, vec![web], json!([]))?;
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    api.create(&PostParams::default(), &sys).await?;
    let (reason, message) = wait_for("Degraded naming ImagePullBackOff", Duration::from_secs(90), || async {
        let hs = api.get("missing").await?;
        Ok(condition(&hs, "Degraded")
            .filter(|(s, _, m)| s == "True" && m.contains("ImagePullBackOff"))
            .map(|(_, r, m)| (r, m)))
    })
    .await?;
    ensure!(reason == "ContainersFailing", "reason {reason}: {message}");
    ensure!(
        message.contains("registry.gov.cn/govcloud/no-such-app:9.9.9"),
        "the message names the image: {message}"
    );
    Ok(())
}
