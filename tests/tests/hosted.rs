//! HostedSystem against the local control plane: lifecycle with a volume, exact flows,
//! registry refusal surfaced, level rules, bad manifests refused.

use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};
use govcloud_api::{AgencyCloud, HostedSystem, ServiceTemplate};
use govcloud_tests::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);

/// A DataCenterCluster on dc2 and a ready agency cloud with one environment; returns
/// (agency, namespace).
async fn agency(hub: &Client) -> Result<(String, String)> {
    agency_at(hub, 2).await
}

/// As `agency`, at a given security level.
async fn agency_at(hub: &Client, level: u8) -> Result<(String, String)> {
    let group = unique("grp");
    create_test_cluster(hub, &group, "external", 3, 2, None).await?;
    let a = unique_short("h");
    let ac: AgencyCloud =
        serde_json::from_value(agency_cloud(&a, level, "external", &[("prod", "8", "16Gi")], &group))?;
    let mut ac = ac;
    ac.spec.cloud.environments[0].quota.storage = Some("100Gi".into());
    let api: Api<AgencyCloud> = Api::all(hub.clone());
    api.create(&PostParams::default(), &ac).await?;
    wait_agency_ready(hub, &a, T).await?;
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

    // Migration progress per agency is a metric (refreshed every 10 s): one system, now Syncing.
    let line = format!("govcloud_agency_hosted_systems{{agency=\"{agency_name}\",migration_phase=\"Syncing\"}} 1");
    wait_for(&format!("metric {line}"), Duration::from_secs(30), || async {
        let (_, metrics) = operator_get("/metrics").await?;
        Ok(metrics.contains(&line).then_some(()))
    })
    .await?;

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
    // A volume of a class the cluster does not have: the pod stays unscheduled, and the
    // scheduler's reason is reported.
    let body = json!({"securityLevel": 2, "dataClassification": "general",
        "components": [{"name": "db", "kind": "Stateful", "image": "registry.gov.cn/db:1",
                        "resources": {"cpu": "100m", "memory": "64Mi"},
                        "storage": {"size": "1Gi", "class": "no-such-class", "mountPath": "/data"}}]});
    api.create(&PostParams::default(), &system("stuck", body)?).await?;
    let hs = wait_hs(&api, "stuck", "unschedulable reported", |h| {
        cond(h, "Degraded").is_some_and(|c| c.0 == "True" && c.2.contains("pods cannot be scheduled"))
    })
    .await?;
    let msg = cond(&hs, "Degraded").map(|c| c.2).unwrap_or_default();
    ensure!(msg.contains("PersistentVolumeClaim"), "the scheduler's reason: {msg}");
    // A stateful component bigger than the environment's quota (8 CPUs requested at most):
    // the StatefulSet's pods are refused at creation, which only its events say; Degraded
    // names the component and the quota.
    let body = json!({"securityLevel": 2, "dataClassification": "general",
        "components": [{"name": "huge", "kind": "Stateful", "image": "registry.gov.cn/db:1",
                        "resources": {"cpu": "20", "memory": "64Mi"}}]});
    api.create(&PostParams::default(), &system("overquota", body)?).await?;
    let hs = wait_hs(&api, "overquota", "quota refusal reported", |h| {
        cond(h, "Degraded").is_some_and(|c| c.0 == "True" && c.2.contains("pods cannot be created"))
    })
    .await?;
    let msg = cond(&hs, "Degraded").map(|c| c.2).unwrap_or_default();
    ensure!(
        msg.contains("huge: pods cannot be created") && msg.contains("exceeded quota") && msg.contains("requests.cpu"),
        "the refusal at creation: {msg}"
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
        (
            json!({"securityLevel": 2, "dataClassification": "general"}),
            "give components, or a catalogue template in spec.template",
        ),
        (
            json!({"securityLevel": 2, "dataClassification": "general", "template": {"name": "office-oa", "replicas": {"web": 500}}}),
            "spec.template.replicas.web",
        ),
        (
            json!({"securityLevel": 4, "dataClassification": "core", "components": [comp("a")],
                   "internetExposureApproval": {"approvedBy": "x", "host": "h", "reason": "because of reasons"}}),
            "an approval cannot change that",
        ),
        (
            json!({"securityLevel": 2, "dataClassification": "general", "components": [comp("a")], "admit": [{"system": "b", "to": "ghost"}]}),
            "admit[].to must name a component",
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
    // Where the cluster serves the Gateway API, an HTTPRoute is made besides the Ingress.
    install_gateway_api(&member).await?;
    let (a, ns) = agency(&hub).await?;
    let host = format!("survey.{}", test_domain(&a));
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    let body = json!({"securityLevel": 2, "dataClassification": "general",
        "components": [{"name": "web", "image": "registry.gov.cn/web:1", "ports": [{"name": "http", "port": 8080}]}],
        "exposure": {"mode": "GovernmentNetwork", "component": "web", "port": 8080, "host": host, "tlsSecretName": "survey-tls"}});
    api.create(&PostParams::default(), &system("survey", body)?).await?;
    let hs = wait_hs(&api, "survey", "survey Available", |h| {
        cond(h, "Available").is_some_and(|c| c.0 == "True")
    })
    .await?;
    ensure!(
        hs.status.and_then(|s| s.url) == Some(format!("https://{host}/")),
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
    let routes: Api<DynamicObject> = Api::namespaced_with(member.clone(), &ns, &http_routes());
    let route = wait_for("HTTPRoute created", T, || async { Ok(routes.get_opt("survey").await?) }).await?;
    ensure!(route.data["spec"]["hostnames"] == json!([host]), "{:?}", route.data);
    ensure!(route.data["spec"]["parentRefs"][0]["name"] == "govcloud-government");
    ensure!(route.data["spec"]["rules"][0]["backendRefs"][0]["name"] == "survey-web");
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
    wait_for("HTTPRoute pruned", T, || async {
        Ok(routes.get_opt("survey").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

fn http_routes() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

/// Lets `user` edit HostedSystems in `ns` (as an agency's staff would).
async fn grant(hub: &Client, ns: &str, user: &str, cluster_role: &str) -> Result<()> {
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": unique("rb"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))?;
    Api::<RoleBinding>::namespaced(hub.clone(), ns)
        .create(&PostParams::default(), &rb)
        .await?;
    Ok(())
}

#[tokio::test]
async fn internet_exposure_at_level_3_needs_an_unforgeable_approval() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let (a, ns) = agency_at(&hub, 3).await?;
    let xxgk = format!("xxgk.{}", test_domain(&a));
    let other = format!("other.{}", test_domain(&a));
    // Agency staff may edit their systems (the test gives them a role with that right).
    let editor_role = unique("hs-editor");
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": editor_role},
        "rules": [{"apiGroups": ["govcloud.io"], "resources": ["hostedsystems"], "verbs": ["get", "create", "update", "patch"]}]
    }))?;
    Api::<ClusterRole>::all(hub.clone())
        .create(&PostParams::default(), &role)
        .await?;
    let staff = unique("staff");
    let approver = unique("approver");
    grant(&hub, &ns, &staff, &editor_role).await?;
    grant(&hub, &ns, &approver, "govcloud-exposure-approver").await?;
    let as_staff: Api<HostedSystem> = Api::namespaced(impersonating(1, &staff, &[]).await?, &ns);
    let as_approver: Api<HostedSystem> = Api::namespaced(impersonating(1, &approver, &[]).await?, &ns);
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);

    let body = json!({"securityLevel": 3, "dataClassification": "general",
        "components": [{"name": "web", "image": "registry.gov.cn/web:1", "ports": [{"name": "http", "port": 8080}],
                        "resources": {"cpu": "100m", "memory": "64Mi"}}],
        "exposure": {"mode": "Internet", "component": "web", "port": 8080, "host": xxgk}});
    as_staff.create(&PostParams::default(), &system("xxgk", body)?).await?;
    let hs = wait_hs(&api, "xxgk", "refused without approval", |h| {
        cond(h, "Degraded").is_some_and(|c| c.1 == "InvalidSpec")
    })
    .await?;
    let msg = cond(&hs, "Degraded").map(|c| c.2).unwrap_or_default();
    ensure!(
        msg.contains("needs a platform approval in spec.internetExposureApproval"),
        "{msg}"
    );

    // Staff cannot approve their own exposure, even naming someone else.
    let approve = |by: &str| {
        Patch::Merge(json!({"spec": {"internetExposureApproval": {
            "approvedBy": by, "host": xxgk, "reason": "等保测评报告 ZJ-2026-118 通过"}}}))
    };
    let err = wait_for("the exposure policy refuses staff", T, || async {
        match as_staff
            .patch("xxgk", &PatchParams::default(), &approve(&approver))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422 => Ok(Some(s.message)),
            Err(e) => Err(e.into()),
            // The policy is loaded asynchronously after the operator installs it; undo and retry.
            Ok(_) => {
                api.patch(
                    "xxgk",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"internetExposureApproval": null}})),
                )
                .await?;
                Ok(None)
            }
        }
    })
    .await?;
    ensure!(err.contains("only platform approvers"), "{err}");
    // An approver cannot record the approval in someone else's name.
    let err = match as_approver
        .patch("xxgk", &PatchParams::default(), &approve("someone.else"))
        .await
    {
        Err(kube::Error::Api(s)) => s.message,
        other => bail!("approval in another's name accepted: {other:?}"),
    };
    ensure!(err.contains("approvedBy must be your own user name"), "{err}");
    // In their own name it is accepted, and the system is exposed through the internet exit.
    as_approver
        .patch("xxgk", &PatchParams::default(), &approve(&approver))
        .await?;
    wait_hs(&api, "xxgk", "exposed after approval", |h| {
        cond(h, "Available").is_some_and(|c| c.0 == "True")
    })
    .await?;
    let ing = Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(member.clone(), &ns)
        .get("xxgk")
        .await?;
    ensure!(ing.spec.and_then(|s| s.ingress_class_name).as_deref() == Some("govcloud-internet"));
    // The approval covers its host only: another host is refused again.
    as_staff
        .patch(
            "xxgk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"exposure": {"host": other}}})),
        )
        .await?;
    let hs = wait_hs(&api, "xxgk", "host change voids approval", |h| {
        cond(h, "Degraded").is_some_and(|c| c.1 == "InvalidSpec")
    })
    .await?;
    let msg = cond(&hs, "Degraded").map(|c| c.2).unwrap_or_default();
    ensure!(msg.contains(&format!("covers {xxgk}, not {other}")), "{msg}");
    // ... and the internet exposure is withdrawn until a new approval covers the new host.
    let ings: Api<k8s_openapi::api::networking::v1::Ingress> = Api::namespaced(member.clone(), &ns);
    wait_for("unapproved exposure withdrawn", T, || async {
        Ok(ings.get_opt("xxgk").await?.is_none().then_some(()))
    })
    .await?;
    ensure!(
        Api::<Deployment>::namespaced(member.clone(), &ns)
            .get_opt("xxgk-web")
            .await?
            .is_some(),
        "the workload itself stays"
    );
    Api::<ClusterRole>::all(hub.clone())
        .delete(&editor_role, &DeleteParams::default())
        .await?;
    Ok(())
}

fn template(name: &str, versions: &[&str]) -> Result<ServiceTemplate> {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            json!({"version": v, "components": [
                {"name": "web", "image": format!("registry.gov.cn/catalog/survey-web:{v}"), "replicas": 1,
                 "ports": [{"name": "http", "port": 8080}], "resources": {"cpu": "50m", "memory": "32Mi"}},
                {"name": "cache", "image": "registry.gov.cn/catalog/redis:7", "resources": {"cpu": "${cacheCpu}", "memory": "32Mi"},
                 "ports": [{"name": "redis", "port": 6379}]}],
              "flows": [{"from": "web", "to": {"component": "cache"}}],
              "exposure": {"mode": "GovernmentNetwork", "component": "web", "port": 8080, "host": "${host}"}})
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "ServiceTemplate", "metadata": {"name": name},
        "spec": {"displayName": "调查", "description": "test survey", "category": "survey",
                 "parameters": [{"name": "host"}, {"name": "cacheCpu", "default": "50m", "pattern": "^[0-9]+m$"}],
                 "versions": versions}
    }))?)
}

#[tokio::test]
async fn catalog_template_instantiated_pinned_and_rolled_out() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let (a, ns) = agency(&hub).await?;
    let name = unique("survey");
    let templates: Api<ServiceTemplate> = Api::all(hub.clone());
    templates
        .create(&PostParams::default(), &template(&name, &["1.0"])?)
        .await?;
    let api: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    let follows = json!({"securityLevel": 2, "dataClassification": "general",
        "template": {"name": name, "parameters": {"host": format!("survey.{}", test_domain(&a))}, "replicas": {"web": 2}}});
    let pinned = json!({"securityLevel": 2, "dataClassification": "general",
        "template": {"name": name, "version": "1.0", "parameters": {"host": format!("pinned.{}", test_domain(&a)), "cacheCpu": "80m"}}});
    api.create(&PostParams::default(), &system("follows", follows)?).await?;
    api.create(&PostParams::default(), &system("pinned", pinned)?).await?;
    for s in ["follows", "pinned"] {
        let hs = wait_hs(&api, s, "template system Available", |h| {
            cond(h, "Available").is_some_and(|c| c.0 == "True")
        })
        .await?;
        let t = hs
            .status
            .and_then(|s| s.template)
            .ok_or_else(|| anyhow!("no expanded template in status"))?;
        ensure!(t.version == "1.0" && t.components.len() == 2, "{t:?}");
    }
    let deploys: Api<Deployment> = Api::namespaced(member.clone(), &ns);
    let image = |d: Deployment| {
        d.spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.containers.first().and_then(|c| c.image.clone()))
            .unwrap_or_default()
    };
    let web = deploys.get("follows-web").await?;
    ensure!(
        web.spec.as_ref().and_then(|s| s.replicas) == Some(2),
        "replicas override"
    );
    ensure!(image(web).ends_with(":1.0"));
    let cache = deploys.get("pinned-cache").await?;
    let cpu = cache
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().and_then(|c| c.resources.clone()))
        .and_then(|r| r.requests)
        .and_then(|r| r.get("cpu").map(|q| q.0.clone()));
    ensure!(cpu.as_deref() == Some("80m"), "parameter substituted: {cpu:?}");
    let hs = api.get("pinned").await?;
    ensure!(hs.status.and_then(|s| s.url) == Some(format!("http://pinned.{}/", test_domain(&a))));

    // A published version cannot be edited: the API server refuses, naming the field.
    let mut edited = templates.get(&name).await?;
    edited.spec.versions[0].components[0].image = "registry.gov.cn/catalog/evil:1".into();
    match templates.replace(&name, &PostParams::default(), &edited).await {
        Err(kube::Error::Api(s)) => ensure!(
            s.message.contains("published versions cannot be changed"),
            "{}",
            s.message
        ),
        other => bail!("editing a published version was accepted: {other:?}"),
    }
    // Appending a version rolls out to the follower only.
    let next = template(&name, &["1.0", "1.1"])?;
    templates
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"versions": next.spec.versions}})),
        )
        .await?;
    wait_for("follower rolled out to 1.1", T, || async {
        let d = deploys.get("follows-web").await?;
        Ok(image(d).ends_with(":1.1").then_some(()))
    })
    .await?;
    wait_hs(&api, "follows", "status shows 1.1", |h| {
        h.status
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| t.version == "1.1")
    })
    .await?;
    ensure!(
        image(deploys.get("pinned-web").await?).ends_with(":1.0"),
        "pinned stays on 1.0"
    );

    // Bad parameters are reported naming the field; nothing else changes.
    api.patch(
        "pinned",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"parameters": {"cacheCpu": "lots", "colour": "red"}}}})),
    )
    .await?;
    let hs = wait_hs(&api, "pinned", "bad parameters reported", |h| {
        cond(h, "Degraded").is_some_and(|c| c.1 == "InvalidSpec")
    })
    .await?;
    let msg = cond(&hs, "Degraded").map(|c| c.2).unwrap_or_default();
    ensure!(msg.contains("spec.template.parameters.colour"), "{msg}");
    ensure!(
        msg.contains("spec.template.parameters.cacheCpu: \"lots\" does not match"),
        "{msg}"
    );
    ensure!(
        deploys.get_opt("pinned-web").await?.is_some(),
        "a bad spec deletes nothing"
    );
    for s in ["follows", "pinned"] {
        api.delete(s, &DeleteParams::default()).await?;
    }
    wait_for("systems gone", T, || async {
        Ok((api.get_opt("follows").await?.is_none() && api.get_opt("pinned").await?.is_none()).then_some(()))
    })
    .await?;
    templates.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}
