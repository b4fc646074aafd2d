//! Evidence reports (等保测评证据): reads the live objects of one agency from the hub and its
//! cluster (as `kubectl govcloud status` does, and more), has the core decide each control
//! line and sign the report, keeps signed reports as EvidenceReports in the agency's own
//! namespace on the hub, makes the monthly ones and prunes those past the retention.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use tracing::{info, warn};

use super::context::Context;
use crate::member::MemberClients;
use govcloud_api::evidence::KIND_LABEL;
use govcloud_api::labels::{AGENCY_LABEL, CREDIT_CODE_LABEL, MANAGED_BY, REQUEST_LABEL};
use govcloud_api::{
    AgencyCloud, BackupPolicy, DataCenterCluster, EvidenceReport, EvidenceReportSpec, HostedSystem, TenancyRequest,
};
use govcloud_core::agency::{REGISTRY_POLICY, SERVICE_POLICY};
use govcloud_core::backup::VELERO_NAMESPACE;
use govcloud_core::evidence::sign::{PemKeyProvider, SigningKeyProvider};
use govcloud_core::evidence::{self as ev, Inputs, Location, Report};

/// Secret (operator namespace on the hub) holding the platform's evidence signing key.
pub const KEY_SECRET: &str = "govcloud-evidence-key";
/// Its key: an SM2 private key in PKCS#8 PEM.
pub const KEY_FIELD: &str = "private.pem";

/// The built-in signing-key provider: the PKCS#8 key in Secret `secret` of `namespace`.
pub async fn key_from_secret(hub: &Client, namespace: &str, secret: &str) -> Result<PemKeyProvider> {
    let s = Api::<Secret>::namespaced(hub.clone(), namespace)
        .get_opt(secret)
        .await
        .with_context(|| format!("reading the evidence signing key, Secret {namespace}/{secret}"))?
        .ok_or_else(|| {
            anyhow!(
                "no Secret {namespace}/{secret}: create the platform's evidence signing key with `govcloud-operator evidence-key --out-dir keys` and `kubectl -n {namespace} create secret generic {secret} --from-file=keys/{KEY_FIELD}` (docs/evidence.md)"
            )
        })?;
    let pem = s
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_FIELD))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .ok_or_else(|| {
            anyhow!("Secret {namespace}/{secret} has no key {KEY_FIELD} (the SM2 private key in PKCS#8 PEM)")
        })?;
    Ok(PemKeyProvider::from_pem(&pem, &format!("Secret {namespace}/{secret}"))?)
}

fn note(notes: &mut Vec<String>, what: &str, e: &kube::Error) {
    notes.push(format!("{what}: {}", crate::member::describe(e)));
}

async fn list<K>(api: Api<K>, lp: &ListParams, what: &str, notes: &mut Vec<String>) -> Vec<Value>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.list(lp).await {
        Ok(l) => l.items.iter().filter_map(|o| serde_json::to_value(o).ok()).collect(),
        Err(kube::Error::Api(s)) if s.code == 404 => vec![],
        Err(e) => {
            note(notes, what, &e);
            vec![]
        }
    }
}

fn dynamic(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// The BackupLocations, with their declared encryption read leniently (`spec.encryption`,
/// a string or an object, as the backup gateway declares it).
async fn locations(hub: &Client, notes: &mut Vec<String>) -> Vec<Location> {
    let api = dynamic(
        hub,
        "govcloud.io",
        "v1alpha1",
        "BackupLocation",
        "backuplocations",
        None,
    );
    let items = list(api, &ListParams::default(), "BackupLocations", notes).await;
    items
        .iter()
        .map(|v| {
            let enc = v.pointer("/spec/encryption").and_then(|e| match e {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(ev::sign::canonical_compact(other)),
            });
            Location {
                name: v
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                uid: v.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string),
                region: v
                    .pointer("/spec/region")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                endpoint: v
                    .pointer("/spec/endpoint")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                zone: v.pointer("/spec/zone").and_then(Value::as_str).map(str::to_string),
                encryption: enc,
            }
        })
        .collect()
}

/// Reads everything the report of `agency` needs, for the period `start`..`end`.
/// What cannot be read becomes a note (and the lines it concerns show it missing).
pub async fn collect(hub: &Client, namespace: &str, agency: &str, start: Timestamp, end: Timestamp) -> Result<Inputs> {
    let ac = Api::<AgencyCloud>::all(hub.clone())
        .get_opt(agency)
        .await
        .with_context(|| format!("reading AgencyCloud {agency}"))?
        .ok_or_else(|| anyhow!("no AgencyCloud {agency} (`kubectl get agencyclouds` lists them)"))?;
    let mut notes = Vec::new();
    let placement = ac.status.as_ref().and_then(|s| s.placement.clone());
    let cluster = match &placement {
        Some(p) => match Api::<DataCenterCluster>::all(hub.clone()).get_opt(&p.cluster).await {
            Ok(c) => c,
            Err(e) => {
                note(&mut notes, &format!("DataCenterCluster {}", p.cluster), &e);
                None
            }
        },
        None => None,
    };
    let member_is_hub = cluster.as_ref().is_some_and(|c| c.spec.kubeconfig_secret.is_none());
    let member_name = cluster
        .as_ref()
        .and_then(|c| c.metadata.name.clone())
        .unwrap_or_else(|| ev::HUB.into());
    let skeleton = Inputs {
        agency: ac.clone(),
        cluster: cluster.clone(),
        member_name: member_name.clone(),
        member_is_hub,
        request: None,
        member: vec![],
        hub: vec![],
        systems: vec![],
        policies: vec![],
        locations: vec![],
        backups: vec![],
        restores: vec![],
        notes: vec![],
        period_start: start,
        period_end: end,
        now: Timestamp::now(),
    };
    let namespaces = ev::namespaces(&skeleton, agency);
    let mut i = skeleton;

    // The hub: the request, the systems and policies, the stores, the hub's own guardrails.
    if let Some(label) = ac.labels().get(REQUEST_LABEL)
        && let Some((ns, name)) = label.split_once('.')
    {
        match Api::<TenancyRequest>::namespaced(hub.clone(), ns).get_opt(name).await {
            Ok(tr) => i.request = tr,
            Err(e) => note(&mut notes, &format!("TenancyRequest {ns}/{name}"), &e),
        }
    }
    for ns in &namespaces {
        let lp = ListParams::default();
        match Api::<HostedSystem>::namespaced(hub.clone(), ns).list(&lp).await {
            Ok(l) => i.systems.extend(l.items),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => note(&mut notes, &format!("HostedSystems in {ns}"), &e),
        }
        match Api::<BackupPolicy>::namespaced(hub.clone(), ns).list(&lp).await {
            Ok(l) => i.policies.extend(l.items),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => note(&mut notes, &format!("BackupPolicies in {ns}"), &e),
        }
    }
    i.locations = locations(hub, &mut notes).await;
    let by_agency = ListParams::default().labels(&format!("{AGENCY_LABEL}={agency}"));
    if !member_is_hub {
        let nss = list(
            Api::<Namespace>::all(hub.clone()),
            &by_agency,
            "hub namespaces",
            &mut notes,
        )
        .await;
        i.hub.extend(nss);
        for ns in &namespaces {
            let rbs = list(
                Api::<RoleBinding>::namespaced(hub.clone(), ns),
                &by_agency,
                &format!("hub RoleBindings in {ns}"),
                &mut notes,
            )
            .await;
            i.hub.extend(rbs);
        }
    }

    // The agency's cluster.
    if let Some(dcc) = &cluster {
        let members = MemberClients::new(hub.clone(), namespace, Duration::from_secs(10));
        match members.client_for(dcc).await {
            Ok(m) => {
                let w = format!("namespaces on {member_name}");
                i.member
                    .extend(list(Api::<Namespace>::all(m.clone()), &by_agency, &w, &mut notes).await);
                for ns in &namespaces {
                    let what = |k: &str| format!("{k} in {ns} on {member_name}");
                    let np = list(
                        Api::<NetworkPolicy>::namespaced(m.clone(), ns),
                        &by_agency,
                        &what("NetworkPolicies"),
                        &mut notes,
                    )
                    .await;
                    let rq = list(
                        Api::<ResourceQuota>::namespaced(m.clone(), ns),
                        &by_agency,
                        &what("ResourceQuotas"),
                        &mut notes,
                    )
                    .await;
                    let lr = list(
                        Api::<LimitRange>::namespaced(m.clone(), ns),
                        &by_agency,
                        &what("LimitRanges"),
                        &mut notes,
                    )
                    .await;
                    let rb = list(
                        Api::<RoleBinding>::namespaced(m.clone(), ns),
                        &by_agency,
                        &what("RoleBindings"),
                        &mut notes,
                    )
                    .await;
                    i.member.extend(np.into_iter().chain(rq).chain(lr).chain(rb));
                }
                // The shared admission policies (listed: the operator's grant on a member).
                let ours = |v: &Value| {
                    let n = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                    n == REGISTRY_POLICY || n == SERVICE_POLICY
                };
                let lp = ListParams::default();
                let w = format!("admission policies on {member_name}");
                let p = list(Api::<ValidatingAdmissionPolicy>::all(m.clone()), &lp, &w, &mut notes).await;
                let b = list(
                    Api::<ValidatingAdmissionPolicyBinding>::all(m.clone()),
                    &lp,
                    &w,
                    &mut notes,
                )
                .await;
                i.member.extend(p.into_iter().chain(b).filter(ours));
                let code =
                    ListParams::default().labels(&format!("{CREDIT_CODE_LABEL}={}", ac.spec.cloud.agency.credit_code));
                let backups = dynamic(&m, "velero.io", "v1", "Backup", "backups", Some(VELERO_NAMESPACE));
                i.backups = list(backups, &code, &format!("Velero Backups on {member_name}"), &mut notes).await;
                let restores = dynamic(&m, "velero.io", "v1", "Restore", "restores", Some(VELERO_NAMESPACE));
                i.restores = list(
                    restores,
                    &code,
                    &format!("Velero Restores on {member_name}"),
                    &mut notes,
                )
                .await;
            }
            Err(e) => notes.push(format!("cluster {member_name}: {e}")),
        }
    }
    i.notes = notes;
    Ok(i)
}

/// A signed report in both forms.
pub struct Signed {
    /// The report.
    pub report: Report,
    /// Its JSON form (what EvidenceReports keep).
    pub json: String,
    /// Its HTML form.
    pub html: String,
    /// Id of the signing key.
    pub key_id: String,
}

/// Builds and signs the report of `inputs` (signing on a blocking thread: a cipher machine
/// or KMS provider may take a round trip).
pub async fn sign(inputs: Inputs, provider: Arc<dyn SigningKeyProvider>) -> Result<Signed> {
    tokio::task::spawn_blocking(move || {
        let report = ev::build(&inputs);
        let (json, html) = ev::html::sign_report(&report, provider.as_ref())?;
        let key_id = ev::sign::PublicKey::from_pem(&provider.public_key_pem()?)?
            .id()
            .to_string();
        Ok(Signed {
            report,
            json,
            html,
            key_id,
        })
    })
    .await
    .map_err(|e| anyhow!("signing task failed: {e}"))?
}

/// Keeps a signed report as EvidenceReport `name` in the agency's first namespace on the
/// hub (`kind`: `monthly` or `on-demand`). Returns (namespace, name).
pub async fn store(hub: &Client, signed: &Signed, name: &str, kind: &str) -> Result<(String, String)> {
    let r = &signed.report;
    let ac = Api::<AgencyCloud>::all(hub.clone()).get(&r.agency.name).await?;
    let ns = ev::namespaces_of(&ac)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("agency {} has no namespace", r.agency.name))?;
    let parse = |s: &str| {
        s.parse::<Timestamp>()
            .map(Time)
            .map_err(|e| anyhow!("report period {s}: {e}"))
    };
    let mut er = EvidenceReport::new(
        name,
        EvidenceReportSpec {
            agency: r.agency.name.clone(),
            security_level: r.agency.security_level,
            period_start: parse(&r.period_start)?,
            period_end: parse(&r.period_end)?,
            met: r.summary.met,
            missing: r.summary.missing,
            failing: r.summary.failing,
            key_id: signed.key_id.clone(),
            document: signed.json.clone(),
        },
    );
    er.metadata.namespace = Some(ns.clone());
    er.metadata.labels = Some(
        [
            ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
            (AGENCY_LABEL.to_string(), r.agency.name.clone()),
            (KIND_LABEL.to_string(), kind.to_string()),
        ]
        .into(),
    );
    Api::<EvidenceReport>::namespaced(hub.clone(), &ns)
        .create(&PostParams::default(), &er)
        .await
        .with_context(|| format!("creating EvidenceReport {ns}/{name}"))?;
    Ok((ns, name.to_string()))
}

/// Deletes EvidenceReports whose period ended more than `retention` before `now`.
/// Returns how many it deleted.
pub async fn prune(hub: &Client, retention: Duration, now: Timestamp) -> Result<usize> {
    let api = Api::<EvidenceReport>::all(hub.clone());
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let cutoff = now
        .checked_sub(SignedDuration::try_from(retention).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN);
    let mut n = 0;
    for er in api.list(&lp).await?.items {
        if er.spec.period_end.0 < cutoff
            && let Some(ns) = er.namespace()
        {
            Api::<EvidenceReport>::namespaced(hub.clone(), &ns)
                .delete(&er.name_any(), &DeleteParams::background())
                .await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Makes last month's report of every placed agency that has none yet (Beijing time, as the
/// monthly utilization report), then prunes past `retention`; every ten minutes.
pub async fn run_schedule(ctx: Arc<Context>, retention: Duration) {
    loop {
        if let Err(e) = schedule_pass(&ctx, retention).await {
            warn!(error = %format!("{e:#}"), "monthly evidence reports");
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
}

async fn schedule_pass(ctx: &Context, retention: Duration) -> Result<()> {
    let now = Timestamp::now();
    let Some((name, start, end)) = super::report::due("monthly", now) else {
        return Ok(());
    };
    let made: std::collections::BTreeSet<(String, String)> = Api::<EvidenceReport>::all(ctx.client.clone())
        .list(&ListParams::default().labels(&format!("{KIND_LABEL}=monthly")))
        .await?
        .items
        .iter()
        .map(|e| (e.spec.agency.clone(), e.name_any()))
        .collect();
    let agencies: Vec<String> = ctx
        .agencies
        .get()
        .map(|s| {
            s.state()
                .iter()
                .filter(|a| {
                    a.status.as_ref().is_some_and(|st| st.placement.is_some())
                        && a.metadata.deletion_timestamp.is_none()
                })
                .map(|a| a.name_any())
                .collect()
        })
        .unwrap_or_default();
    let todo: Vec<String> = agencies
        .into_iter()
        .filter(|a| !made.contains(&(a.clone(), name.clone())))
        .collect();
    if !todo.is_empty() {
        let provider: Arc<dyn SigningKeyProvider> =
            Arc::new(key_from_secret(&ctx.client, &ctx.settings.namespace, KEY_SECRET).await?);
        for a in &todo {
            let inputs = collect(&ctx.client, &ctx.settings.namespace, a, start, end).await?;
            let signed = sign(inputs, provider.clone()).await?;
            store(&ctx.client, &signed, &name, "monthly").await?;
        }
        info!(reports = todo.len(), period = %name, "monthly evidence reports made");
    }
    let pruned = prune(&ctx.client, retention, now).await?;
    if pruned > 0 {
        info!(pruned, "evidence reports past their retention deleted");
    }
    Ok(())
}
