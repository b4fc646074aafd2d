//! A reconcile of an unchanged AgencyCloud makes no writes — and no apply requests at all.
//! Alone in its test binary, so that the operator's counters see only this test.

use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use govcloud_api::{AgencyCloud, HostedSystem, ServiceTemplate};
use govcloud_tests::*;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn counter(metrics: &str, name: &str, controller: &str) -> f64 {
    let prefix = format!("{name}{{controller=\"{controller}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn unchanged_agency_reconciles_make_no_requests() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let group = unique("grp");
    create_test_cluster(&hub, &group, "external", 3, 2, None).await?;
    let a = unique_short("q");
    let ac: AgencyCloud = serde_json::from_value(agency_cloud(&a, 2, "external", &[("prod", "2", "2Gi")], &group))?;
    let api: Api<AgencyCloud> = Api::all(hub.clone());
    api.create(&PostParams::default(), &ac).await?;
    wait_agency_ready(&hub, &a, Duration::from_secs(90)).await?;
    // Settle: no applies for 3 s in a row.
    let settled = wait_for("applies to stop", Duration::from_secs(60), || async {
        let (_, m1) = operator_get("/metrics").await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, m2) = operator_get("/metrics").await?;
        let (a1, a2) = (
            counter(&m1, "govcloud_controller_child_applies_total", "agencycloud"),
            counter(&m2, "govcloud_controller_child_applies_total", "agencycloud"),
        );
        Ok((a1 == a2).then_some(m2))
    })
    .await?;
    let before = api.get(&a).await?;
    let applies = counter(&settled, "govcloud_controller_child_applies_total", "agencycloud");
    let reconciles = counter(&settled, "govcloud_controller_reconciles_total", "agencycloud");

    // Five forced reconciles with nothing changed (an unrelated annotation each time).
    for i in 0..5 {
        api.patch(
            &a,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/touch": i.to_string()}}})),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let (_, after) = operator_get("/metrics").await?;
    let reconciled = counter(&after, "govcloud_controller_reconciles_total", "agencycloud") - reconciles;
    ensure!(
        reconciled >= 5.0,
        "the operator should have reconciled at least 5 times, did {reconciled}"
    );
    let extra = counter(&after, "govcloud_controller_child_applies_total", "agencycloud") - applies;
    ensure!(extra == 0.0, "{extra} apply requests for an unchanged agency");
    let now = api.get(&a).await?;
    ensure!(
        now.status == before.status,
        "status rewritten by an unchanged reconcile"
    );

    // The same for a hosted system in the agency's namespace.
    // It comes from a catalogue template, adds a component of its own and is exposed (with an
    // HTTPRoute too, as the cluster serves the Gateway API).
    install_gateway_api(&client(2).await?).await?;
    let tpl_name = unique("quiet-tpl");
    let tpl: ServiceTemplate = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "ServiceTemplate", "metadata": {"name": tpl_name},
        "spec": {"displayName": "t", "description": "t", "category": "other", "parameters": [{"name": "host"}],
                 "versions": [{"version": "1", "components": [{"name": "web", "image": "registry.gov.cn/web:1", "ports": [{"name": "http", "port": 8080}]}],
                               "exposure": {"mode": "GovernmentNetwork", "component": "web", "port": 8080, "host": "${host}"}}]}
    }))?;
    Api::<ServiceTemplate>::all(hub.clone())
        .create(&PostParams::default(), &tpl)
        .await?;
    let hs_api: Api<HostedSystem> = Api::namespaced(hub.clone(), &format!("{a}-prod"));
    let hs: HostedSystem = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem", "metadata": {"name": "svc"},
        "spec": {"securityLevel": 2, "dataClassification": "general",
                 "template": {"name": tpl_name, "parameters": {"host": format!("quiet.{}", test_domain(&a))}},
                 "components": [{"name": "api", "image": "registry.gov.cn/api:1", "replicas": 2, "ports": [{"name": "http", "port": 80}]}]}
    }))?;
    hs_api.create(&PostParams::default(), &hs).await?;
    wait_for("system Available", Duration::from_secs(90), || async {
        let hs = hs_api.get("svc").await?;
        Ok(hs
            .status
            .as_ref()
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True")
            })
            .then_some(()))
    })
    .await?;
    let c = |m: &str, name: &str| counter(m, name, "hostedsystem");
    let settled = wait_for("system applies to stop", Duration::from_secs(60), || async {
        let (_, m1) = operator_get("/metrics").await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, m2) = operator_get("/metrics").await?;
        let n = "govcloud_controller_child_applies_total";
        Ok((c(&m1, n) == c(&m2, n)).then_some(m2))
    })
    .await?;
    let before = hs_api.get("svc").await?;
    for i in 0..5 {
        let touch = Patch::Merge(json!({"metadata": {"annotations": {"test/touch": i.to_string()}}}));
        hs_api.patch("svc", &PatchParams::default(), &touch).await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let (_, after) = operator_get("/metrics").await?;
    let reconciled =
        c(&after, "govcloud_controller_reconciles_total") - c(&settled, "govcloud_controller_reconciles_total");
    ensure!(
        reconciled >= 5.0,
        "the system should have been reconciled at least 5 times, was {reconciled}"
    );
    let extra =
        c(&after, "govcloud_controller_child_applies_total") - c(&settled, "govcloud_controller_child_applies_total");
    ensure!(extra == 0.0, "{extra} apply requests for an unchanged hosted system");
    ensure!(
        hs_api.get("svc").await?.status == before.status,
        "system status rewritten by an unchanged reconcile"
    );
    hs_api.delete("svc", &DeleteParams::default()).await?;
    Api::<ServiceTemplate>::all(hub.clone())
        .delete(&tpl_name, &DeleteParams::default())
        .await?;

    api.delete(&a, &DeleteParams::default())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
