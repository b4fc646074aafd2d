//! DataCenterCluster and operator process, against the local control plane.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use govcloud_api::datacenter::DataCenterCluster;
use govcloud_core::quantity::Milli;
use govcloud_tests::proxy::Proxy;
use govcloud_tests::*;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const READY_TIMEOUT: Duration = Duration::from_secs(90);

fn condition(dcc: &DataCenterCluster, type_: &str) -> Option<(String, String, String)> {
    dcc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn create_dcc(hub: &Client, name: &str, secret: Option<&str>) -> Result<()> {
    let api: Api<DataCenterCluster> = Api::all(hub.clone());
    let mut spec = json!({"region": "test-region", "zone": "external", "maxSecurityLevel": 3});
    if let Some(s) = secret {
        spec["kubeconfigSecret"] = json!({"name": s});
    }
    let obj: DataCenterCluster = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "DataCenterCluster",
        "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}},
        "spec": spec,
    }))?;
    api.create(&PostParams::default(), &obj).await?;
    Ok(())
}

async fn wait_condition(hub: &Client, name: &str, type_: &str, status: &str) -> Result<DataCenterCluster> {
    let api: Api<DataCenterCluster> = Api::all(hub.clone());
    wait_for(&format!("{name} {type_}={status}"), READY_TIMEOUT, || {
        let api = api.clone();
        async move {
            let d = api.get(name).await?;
            Ok(condition(&d, type_).filter(|(s, _, _)| s == status).map(|_| d))
        }
    })
    .await
}

async fn delete_dcc(hub: &Client, name: &str) {
    let api: Api<DataCenterCluster> = Api::all(hub.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn operator_becomes_ready_and_serves_metrics() -> Result<()> {
    operator()?;
    wait_for("/readyz 200", READY_TIMEOUT, || async {
        let (code, _) = operator_get("/readyz").await?;
        Ok((code == 200).then_some(()))
    })
    .await?;
    let (code, _) = operator_get("/healthz").await?;
    assert_eq!(code, 200);
    let (code, body) = operator_get("/metrics").await?;
    assert_eq!(code, 200);
    for metric in [
        "govcloud_controller_reconciles_total",
        "govcloud_controller_reconcile_duration_seconds",
    ] {
        // Counters appear after the first reconcile of any object; create one to be sure.
        if !body.contains(metric) {
            let hub = client(1).await?;
            let name = unique("metrics-hub");
            create_dcc(&hub, &name, None).await?;
            wait_condition(&hub, &name, "Reachable", "True").await?;
            delete_dcc(&hub, &name).await;
            let (_, body) = operator_get("/metrics").await?;
            assert!(body.contains(metric), "{metric} missing from /metrics");
        }
    }
    Ok(())
}

#[tokio::test]
async fn hub_and_member_become_ready_with_kwok_capacity() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let hub_name = unique("hub");
    let member_name = unique("member");
    put_kubeconfig_secret(&hub, &member_name, &kubeconfig_yaml(2, None)?).await?;
    create_dcc(&hub, &hub_name, None).await?;
    create_dcc(&hub, &member_name, Some(&member_name)).await?;

    for (name, n) in [(&hub_name, 1), (&member_name, 2)] {
        let dcc = wait_condition(&hub, name, "Ready", "True").await?;
        let status = dcc.status.ok_or_else(|| anyhow!("no status"))?;
        // Compare with what the cluster's own nodes report.
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client(n).await?);
        let list = nodes.list(&Default::default()).await?;
        let expected_cpu: Milli = list
            .items
            .iter()
            .filter_map(|n| {
                n.status
                    .as_ref()?
                    .allocatable
                    .as_ref()?
                    .get("cpu")
                    .and_then(|q| Milli::parse(&q.0).ok())
            })
            .sum();
        assert_eq!(status.node_count, Some(list.items.len() as i32), "{name} node count");
        assert!(
            list.items.len() >= testbed_nodes(),
            "testbed dc{n} should have at least {} nodes",
            testbed_nodes()
        );
        let cpu = status
            .allocatable
            .and_then(|a| a.cpu)
            .ok_or_else(|| anyhow!("no allocatable cpu"))?;
        assert_eq!(Milli::parse(&cpu.0)?, expected_cpu, "{name} allocatable cpu");
        assert!(
            status
                .kubernetes_version
                .as_deref()
                .is_some_and(|v| v.starts_with("v1.34")),
            "{name} version"
        );
    }
    delete_dcc(&hub, &hub_name).await;
    delete_dcc(&hub, &member_name).await;
    Ok(())
}

#[tokio::test]
async fn unreachable_member_reports_and_recovers() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let upstream = server_url(2)?.trim_start_matches("https://").parse()?;
    let mut proxy = Proxy::start(upstream).await?;
    let name = unique("flaky");
    put_kubeconfig_secret(
        &hub,
        &name,
        &kubeconfig_yaml(2, Some(&format!("https://{}", proxy.addr)))?,
    )
    .await?;
    create_dcc(&hub, &name, Some(&name)).await?;
    wait_condition(&hub, &name, "Ready", "True").await?;

    proxy.stop();
    let down = wait_condition(&hub, &name, "Reachable", "False").await?;
    let (_, reason, message) = condition(&down, "Reachable").ok_or_else(|| anyhow!("no Reachable"))?;
    assert_eq!(reason, "ConnectionRefused", "message: {message}");
    assert!(
        message.contains("cannot connect to the API server"),
        "message should say what is wrong: {message}"
    );
    let ready = condition(&down, "Ready").ok_or_else(|| anyhow!("no Ready"))?;
    assert_eq!(ready.0, "False");
    // Last known capacity is kept while unreachable.
    assert!(down.status.as_ref().and_then(|s| s.node_count).is_some());

    proxy.restart().await?;
    wait_condition(&hub, &name, "Ready", "True").await?;
    delete_dcc(&hub, &name).await;
    Ok(())
}

/// dc3 is reserved for this test: its API server is really stopped and started again.
#[tokio::test]
async fn stopped_member_reports_and_recovers() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let name = unique("dc3");
    put_kubeconfig_secret(&hub, &name, &kubeconfig_yaml(3, None)?).await?;
    create_dcc(&hub, &name, Some(&name)).await?;
    wait_condition(&hub, &name, "Ready", "True").await?;

    testbed(&["stop-cluster", "dc3"]).await?;
    let result = async {
        let down = wait_condition(&hub, &name, "Reachable", "False").await?;
        let (_, reason, message) = condition(&down, "Reachable").ok_or_else(|| anyhow!("no Reachable"))?;
        anyhow::ensure!(reason == "ConnectionRefused", "reason {reason}, message: {message}");
        anyhow::ensure!(message.contains("check that it is running"), "{message}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // Always bring dc3 back, even when the assertions failed.
    testbed(&["start-cluster", "dc3"]).await?;
    result?;
    wait_condition(&hub, &name, "Ready", "True").await?;
    delete_dcc(&hub, &name).await;
    Ok(())
}

#[tokio::test]
async fn misconfigured_members_say_what_is_wrong() -> Result<()> {
    operator()?;
    let hub = client(1).await?;

    // No Secret at all.
    let missing = unique("nosecret");
    create_dcc(&hub, &missing, Some(&missing)).await?;
    let d = wait_condition(&hub, &missing, "Reachable", "False").await?;
    let (_, reason, message) = condition(&d, "Reachable").ok_or_else(|| anyhow!("no Reachable"))?;
    assert_eq!(reason, "KubeconfigSecretNotFound");
    assert!(message.contains("create secret generic"), "{message}");

    // A kubeconfig that is not YAML.
    let garbage = unique("garbage");
    put_kubeconfig_secret(&hub, &garbage, "this: [is not a kubeconfig").await?;
    create_dcc(&hub, &garbage, Some(&garbage)).await?;
    let d = wait_condition(&hub, &garbage, "Reachable", "False").await?;
    assert_eq!(
        condition(&d, "Reachable").map(|c| c.1).as_deref(),
        Some("KubeconfigInvalid")
    );

    // The right address but the wrong CA: dc2's kubeconfig pointed at dc1's API server.
    let wrong_ca = unique("wrongca");
    put_kubeconfig_secret(&hub, &wrong_ca, &kubeconfig_yaml(2, Some(&server_url(1)?))?).await?;
    create_dcc(&hub, &wrong_ca, Some(&wrong_ca)).await?;
    let d = wait_condition(&hub, &wrong_ca, "Reachable", "False").await?;
    let (_, reason, message) = condition(&d, "Reachable").ok_or_else(|| anyhow!("no Reachable"))?;
    assert!(
        reason == "TLSError" || reason == "Unauthorized",
        "reason {reason}: {message}"
    );

    // Fixing the Secret makes it recover without touching the DataCenterCluster.
    put_kubeconfig_secret(&hub, &garbage, &kubeconfig_yaml(2, None)?).await?;
    wait_condition(&hub, &garbage, "Ready", "True").await?;

    for n in [missing, garbage, wrong_ca] {
        delete_dcc(&hub, &n).await;
    }
    Ok(())
}

#[tokio::test]
async fn malformed_clusters_are_refused_naming_the_field() -> Result<()> {
    let hub = client(1).await?;
    install_crds(&hub).await?;
    let ar = kube::core::ApiResource::erase::<DataCenterCluster>(&());
    let api: Api<DynamicObject> = Api::all_with(hub.clone(), &ar);
    let cases = [
        (
            json!({"region": "r", "zone": "external", "maxSecurityLevel": 7}),
            "spec.maxSecurityLevel",
        ),
        (
            json!({"region": "r", "zone": "dmz", "maxSecurityLevel": 2}),
            "spec.zone",
        ),
        (
            json!({"region": "r", "zone": "internal", "maxSecurityLevel": 2, "overcommit": {"cpu": -1}}),
            "spec.overcommit.cpu",
        ),
        (
            json!({"region": "Not A Region", "zone": "internal", "maxSecurityLevel": 2}),
            "spec.region",
        ),
        (
            json!({"region": "r", "zone": "internal", "maxSecurityLevel": "high"}),
            "spec.maxSecurityLevel",
        ),
        (json!({"zone": "internal", "maxSecurityLevel": 2}), "spec.region"),
    ];
    for (spec, field) in cases {
        let name = unique("bad");
        let obj = DynamicObject::new(&name, &ar).data(json!({"spec": spec}));
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                delete_dcc(&hub, &name).await;
                bail!("{spec} was accepted");
            }
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{spec}: {s:?}");
                assert!(
                    s.message.contains(field),
                    "message for {spec} should name {field}: {}",
                    s.message
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[tokio::test]
async fn steady_state_makes_no_writes() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let name = unique("quiet");
    create_dcc(&hub, &name, None).await?;
    let first = wait_condition(&hub, &name, "Ready", "True").await?;
    // Let the operator settle (the first probes may still change the status).
    let api: Api<DataCenterCluster> = Api::all(hub.clone());
    let settled = wait_for("status to stop changing", READY_TIMEOUT, || {
        let api = api.clone();
        let name = name.clone();
        let rv = first.metadata.resource_version.clone();
        async move {
            let a = api.get(&name).await?;
            tokio::time::sleep(Duration::from_secs(4)).await;
            let b = api.get(&name).await?;
            let _ = rv;
            Ok((a.metadata.resource_version == b.metadata.resource_version).then_some(b))
        }
    })
    .await?;
    // The time of this cluster's latest probe, from the operator's metrics.
    let probed = || async {
        let (_, metrics) = operator_get("/metrics").await?;
        let label = format!("cluster=\"{name}\"");
        let value = metrics
            .lines()
            .filter(|l| l.starts_with("govcloud_cluster_probe_timestamp_seconds{") && l.contains(&label))
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        anyhow::Ok(value)
    };
    let before = probed().await?;
    assert!(
        before.is_some(),
        "no govcloud_cluster_probe_timestamp_seconds for {name}"
    );
    // Three probe intervals (3 s each in tests) with the cluster unchanged: no writes.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let later = api.get(&name).await?;
    assert_eq!(
        later.metadata.resource_version, settled.metadata.resource_version,
        "a reconcile of an unchanged cluster wrote to it"
    );
    // And the operator did probe this cluster during that time (the probe time advanced
    // although the status was not written: no heartbeat writes).
    let after = probed().await?;
    assert!(
        after > before,
        "the probe time of {name} did not advance ({before:?} → {after:?}): probes did not run"
    );
    let _ = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(json!({})))
        .await;
    delete_dcc(&hub, &name).await;
    Ok(())
}

#[tokio::test]
async fn missing_crds_are_reported_with_the_fix() -> Result<()> {
    // dc2 is a member: the CRDs live only on the hub, so they are missing there.
    let member = client(2).await?;
    match govcloud::runtime::check_crds(&member).await {
        Err(e @ govcloud::runtime::StartError::CrdMissing { .. }) => {
            let msg = e.to_string();
            anyhow::ensure!(
                msg.contains("is not installed") && msg.contains("kubectl apply -f crds/"),
                "{msg}"
            );
            Ok(())
        }
        other => bail!("expected a missing-CRD error, got {other:?}"),
    }
}
