//! HostedSystem against the local control plane: lifecycle with a volume, exact flows,
//! registry refusal surfaced, level rules, bad manifests refused.

use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};
use govcloud::api::{AgencyCloud, HostedSystem};
use govcloud_tests::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);

/// A DataCenterCluster on dc2 and a ready agency cloud with one environment; returns
/// (agency, namespace).
async fn agency(hub: &Client) -> Result<(String, String)> {
    let group = unique("grp");
    create_test_cluster(hub, &group, "external", 3, 2, None).await?;
    let a = unique_short("h");
    let ac: AgencyCloud = serde_json::from_value(agency_cloud(&a, 2, "external", &[("prod", "8", "16Gi")], &group))?;
    let mut ac = ac;
    ac.spec.cloud.environments[0].quota.storage = Some("100Gi".into());
    let api: Api<AgencyCloud> = Api::all(hub.clone());
    api.create(&PostParams::default(), &ac).await?;
    wait_for("agency Ready", T, || async {
        let ac = api.get(&a).await?;
        Ok(ac
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            .then_some(()))
    })
    .await?;
    Ok((a.clone(), format!("{a}-prod")))
}

fn system(name: &str, body: Value) -> Result<HostedSystem> {
    let mut v =
        json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem", "metadata": {"name": name}, "spec": body});
    v["metadata"]["labels"] = json!({"govcloud.io/test": "true"});
    Ok(serde_json::from_value(v)?)
}

fn portal(web_replicas: i32, class: &str) -> Value {
    json!({
        "securityLevel": 2, "dataClassification": "important",
        "components": [
            {"name": "web", "image": "registry.gov.cn/portal/web:1.0", "replicas": web_replicas,
             "ports": [{"name": "http", "port": 8080}], "resources": {"cpu": "100m", "memory": "64Mi"}},
            {"name": "db", "kind": "Stateful", "image": "registry.gov.cn/postgres:16",
             "ports": [{"name": "pg", "port": 5432}], "resources": {"cpu": "100m", "memory": "64Mi"},
             "storage": {"size": "1Gi", "class": class, "mountPath": "/var/lib/postgresql/data"}}
        ],
        "flows": [{"from": "web", "to": {"component": "db"}}],
        "migration": {"sourceDataCenter": "旧机房", "sourceSystemId": "PORTAL-01", "phase": "Planned"}
    })
}

/// KWOK has no volume provisioner: a StorageClass without one and a matching volume let a
/// claim bind, so that the stateful pod can be scheduled.
async fn volume_for_test(member: &Client) -> Result<String> {
    let class = unique("local");
    let sc: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(json!({
        "metadata": {"name": class}, "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"
    }))?;
    Api::<k8s_openapi::api::storage::v1::StorageClass>::all(member.clone())
        .create(&PostParams::default(), &sc)
        .await?;
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": class},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": format!("/tmp/{class}")}}
    }))?;
    Api::<PersistentVolume>::all(member.clone())
        .create(&PostParams::default(), &pv)
        .await?;
    Ok(class)
}

fn cond(hs: &HostedSystem, t: &str) -> Option<(String, String, String)> {
    hs.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_hs<F: Fn(&HostedSystem) -> bool>(
    api: &Api<HostedSystem>,
    name: &str,
    what: &str,
    f: F,
) -> Result<HostedSystem> {
    wait_for(what, T, || async {
        let hs = api.get(name).await?;
        Ok(f(&hs).then_some(hs))
    })
    .await
}

#[tokio::test]
async fn two_component_system_lifecycle_keeps_its_volume() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let (agency_name, ns) = agency(&hub).await?;
    let class = volume_for_test(&member).await?;
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    api.create(&PostParams::default(), &system("portal", portal(2, &class))?)
        .await?;
    let hs = wait_hs(&api, "portal", "portal Available", |h| {
        cond(h, "Available").is_some_and(|c| c.0 == "True")
    })
    .await?;
    let st = hs.status.clone().ok_or_else(|| anyhow!("no status"))?;
    ensure!(st.ready_summary.as_deref() == Some("3/3"), "{:?}", st.ready_summary);
    ensure!(
        st.components
            .iter()
            .any(|c| c.endpoints.contains(&format!("portal-db.{ns}.svc:5432"))),
        "endpoints: {:?}",
        st.components
    );
    ensure!(
        st.migration_transitions.contains_key("Planned"),
        "migration transition recorded"
    );
    let pdb = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(member.clone(), &ns)
        .get_opt("portal-web")
        .await?;
    ensure!(pdb.is_some(), "PDB for 2 replicas");

    // Exactly the declared flows: db accepts only web, on its port.
    let np = Api::<NetworkPolicy>::namespaced(member.clone(), &ns)
        .get("portal-db")
        .await?;
    let ingress = np.spec.and_then(|s| s.ingress).unwrap_or_default();
    ensure!(ingress.len() == 1, "one ingress rule: {ingress:?}");
    let from = serde_json::to_value(&ingress[0])?;
    ensure!(
        from["from"][0]["podSelector"]["matchLabels"]["govcloud.io/component"] == "web",
        "{from}"
    );
    ensure!(from["ports"][0]["port"] == 5432, "{from}");

    // The agency's own reconcile leaves the system's objects alone (it used to prune them).
    let nps: Api<NetworkPolicy> = Api::namespaced(member.clone(), &ns);
    let uid = nps.get("portal-db").await?.metadata.uid;
    let acs: Api<AgencyCloud> = Api::all(hub.clone());
    for i in 0..3 {
        let touch = Patch::Merge(json!({"metadata": {"annotations": {"test/touch": i.to_string()}}}));
        acs.patch(&agency_name, &PatchParams::default(), &touch).await?;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        nps.get("portal-db").await?.metadata.uid == uid,
        "the agency reconcile deleted (and the system re-created) a policy"
    );

    // Scale, and move the migration forward (a backward step is refused).
    let mut spec = portal(3, &class);
    spec["migration"]["phase"] = json!("Syncing");
    api.patch("portal", &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
        .await?;
    wait_hs(&api, "portal", "4/4 ready", |h| {
        h.status.as_ref().and_then(|s| s.ready_summary.as_deref()) == Some("4/4")
    })
    .await?;
    let back = Patch::Merge(
        json!({"spec": {"migration": {"sourceDataCenter": "旧机房", "sourceSystemId": "PORTAL-01", "phase": "Planned"}}}),
    );
    match api.patch("portal", &PatchParams::default(), &back).await {
        Err(kube::Error::Api(s)) => ensure!(
            s.message.contains("migration phases only move forward"),
            "{}",
            s.message
        ),
        other => bail!("backward migration step accepted: {other:?}"),
    }

    // Migration progress per agency is a metric: one system, now Syncing.
    let (_, metrics) = operator_get("/metrics").await?;
    let line = format!("govcloud_agency_hosted_systems{{agency=\"{agency_name}\",migration_phase=\"Syncing\"}} 1");
    ensure!(metrics.contains(&line), "missing {line}");

    // Remove the web component: its Deployment, Service, PDB and policy are pruned.
    let mut only_db = portal(1, &class);
    only_db["components"] = json!([only_db["components"][1].clone()]);
    only_db["flows"] = json!([]);
    only_db["migration"]["phase"] = json!("Syncing");
    api.patch(
        "portal",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": only_db})),
    )
    .await?;
    let deploys: Api<Deployment> = Api::namespaced(member.clone(), &ns);
    wait_for("web pruned", T, || async {
        Ok(deploys.get_opt("portal-web").await?.is_none().then_some(()))
    })
    .await?;

    // Delete: the StatefulSet goes, its volume claim stays (volumeRetention: Retain).
    api.delete("portal", &DeleteParams::default()).await?;
    let sts: Api<StatefulSet> = Api::namespaced(member.clone(), &ns);
    wait_for("StatefulSet deleted", T, || async {
        Ok(sts.get_opt("portal-db").await?.is_none().then_some(()))
    })
    .await?;
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(member.clone(), &ns)
        .list(&Default::default())
        .await?;
    ensure!(
        pvcs.items
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("data-portal-db-0")),
        "PVC kept: {:?}",
        pvcs.items.iter().map(|p| p.metadata.name.clone()).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn problems_are_reported_in_conditions() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let (_, ns) = agency(&hub).await?;
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    // An image outside the agency's registries: the cluster refuses the pods.
    let body = json!({"securityLevel": 2, "dataClassification": "general",
        "components": [{"name": "app", "image": "docker.io/library/nginx:latest"}]});
    api.create(&PostParams::default(), &system("outsider", body)?).await?;
    let hs = wait_hs(&api, "outsider", "Degraded", |h| {
        cond(h, "Degraded").is_some_and(|c| c.0 == "True")
    })
    .await?;
    let msg = cond(&hs, "Degraded").map(|c| c.2).unwrap_or_default();
    ensure!(msg.contains("not from an allowed registry"), "{msg}");
    // A level above the agency's (level 2): nothing deployed, the field named.
    let body = json!({"securityLevel": 3, "dataClassification": "core",
        "components": [{"name": "app", "image": "registry.gov.cn/app:1"}]});
    api.create(&PostParams::default(), &system("toohigh", body)?).await?;
    let hs = wait_hs(&api, "toohigh", "Degraded", |h| {
        cond(h, "Degraded").is_some_and(|c| c.0 == "True")
    })
    .await?;
    let msg = cond(&hs, "Degraded").map(|c| c.2).unwrap_or_default();
    ensure!(
        msg.contains("spec.securityLevel 3 is above the agency's level 2"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_systems_are_refused_naming_the_field() -> Result<()> {
    let hub = client(1).await?;
    install_crds(&hub).await?;
    ensure_namespace(&hub, "hs-validation").await?;
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), "hs-validation");
    let comp = |name: &str| json!({"name": name, "image": "registry.gov.cn/x:1"});
    let cases = [
        (
            json!({"securityLevel": 2, "dataClassification": "general", "components": [comp("a"), comp("a")]}),
            "component names must be unique",
        ),
        (
            json!({"securityLevel": 2, "dataClassification": "general", "components": [{"name": "a", "image": ""}]}),
            "spec.components[0].image",
        ),
        (
            json!({"securityLevel": 2, "dataClassification": "general", "components": [{"name": "a", "image": "i", "storage": {"size": "1Gi", "mountPath": "/d"}}]}),
            "storage needs kind: Stateful",
        ),
        (
            json!({"securityLevel": 2, "dataClassification": "general", "components": [{"name": "a", "image": "i", "ports": [{"name": "x", "port": 80}, {"name": "y", "port": 80}]}]}),
            "ports must not clash",
        ),
        (
            json!({"securityLevel": 2, "dataClassification": "general", "components": [comp("a")], "flows": [{"from": "a", "to": {"component": "ghost"}}]}),
            "to.component` must name a component",
        ),
        (
            json!({"securityLevel": 4, "dataClassification": "core", "components": [comp("a")], "exposure": {"mode": "Internet", "component": "a", "port": 443}}),
            "never exposed to the internet",
        ),
        (
            json!({"securityLevel": 2, "dataClassification": "secret", "components": [comp("a")]}),
            "spec.dataClassification",
        ),
        (
            json!({"securityLevel": 2, "dataClassification": "general", "components": [comp("a")],
                   "exposure": {"mode": "GovernmentNetwork", "component": "a", "port": 8443}}),
            "exposure.port must be one of the exposed component's ports",
        ),
    ];
    for (i, (spec, needle)) in cases.into_iter().enumerate() {
        let hs: HostedSystem = match serde_json::from_value(
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem", "metadata": {"name": format!("bad-{i}")}, "spec": spec.clone()}),
        ) {
            Ok(h) => h,
            Err(_) => {
                // Not representable in the Rust type: send it raw.
                let ar = kube::core::ApiResource::erase::<HostedSystem>(&());
                let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(hub.clone(), "hs-validation", &ar);
                let obj = kube::api::DynamicObject::new(&format!("bad-{i}"), &ar).data(json!({"spec": spec}));
                match raw.create(&PostParams::default(), &obj).await {
                    Err(kube::Error::Api(s)) => {
                        ensure!(s.message.contains(needle), "{needle}: {}", s.message);
                        continue;
                    }
                    other => bail!("accepted: {other:?}"),
                }
            }
        };
        match api.create(&PostParams::default(), &hs).await {
            Err(kube::Error::Api(s)) => ensure!(s.message.contains(needle), "{needle}: {}", s.message),
            Ok(_) => bail!("accepted: {spec}"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[tokio::test]
async fn exposure_on_the_government_network_creates_an_ingress() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let (_, ns) = agency(&hub).await?;
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    let body = json!({"securityLevel": 2, "dataClassification": "general",
        "components": [{"name": "web", "image": "registry.gov.cn/web:1", "ports": [{"name": "http", "port": 8080}]}],
        "exposure": {"mode": "GovernmentNetwork", "component": "web", "port": 8080, "host": "survey.example.gov.cn", "tlsSecretName": "survey-tls"}});
    api.create(&PostParams::default(), &system("survey", body)?).await?;
    let hs = wait_hs(&api, "survey", "survey Available", |h| {
        cond(h, "Available").is_some_and(|c| c.0 == "True")
    })
    .await?;
    ensure!(
        hs.status.and_then(|s| s.url).as_deref() == Some("https://survey.example.gov.cn/"),
        "url in status"
    );
    let ing = Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(member.clone(), &ns)
        .get("survey")
        .await?;
    let spec = ing.spec.ok_or_else(|| anyhow!("no spec"))?;
    ensure!(
        spec.ingress_class_name.as_deref() == Some("govcloud-government"),
        "{:?}",
        spec.ingress_class_name
    );
    ensure!(
        spec.tls
            .unwrap_or_default()
            .first()
            .and_then(|t| t.secret_name.clone())
            .as_deref()
            == Some("survey-tls")
    );
    // Drift: someone deletes the component's network policy and scales the Deployment; both are restored.
    let nps: Api<NetworkPolicy> = Api::namespaced(member.clone(), &ns);
    nps.delete("survey-web", &DeleteParams::default()).await?;
    let deploys: Api<Deployment> = Api::namespaced(member.clone(), &ns);
    deploys
        .patch(
            "survey-web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    wait_for("policy restored", T, || async {
        Ok(nps.get_opt("survey-web").await?.map(|_| ()))
    })
    .await?;
    wait_for("replicas restored", T, || async {
        let d = deploys.get("survey-web").await?;
        Ok((d.spec.and_then(|s| s.replicas) == Some(1)).then_some(()))
    })
    .await?;
    // Taking the exposure away removes the Ingress.
    api.patch(
        "survey",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"exposure": null}})),
    )
    .await?;
    let ings: Api<k8s_openapi::api::networking::v1::Ingress> = Api::namespaced(member.clone(), &ns);
    wait_for("Ingress pruned", T, || async {
        Ok(ings.get_opt("survey").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}
