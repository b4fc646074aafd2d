//! BackupPolicy against the local control plane with real Velero servers (hack/velero.sh)
//! and real S3-compatible object stores (s3s-fs) started by each test: scheduled backups in
//! the store, restore round-trip, RPO breach and recovery, GFS pruning, off-site copies by
//! level, drills (passing and failing), tenant isolation, bad input, quiet steady state.

use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};
use govcloud_api::{AgencyCloud, BackupPolicy, HostedSystem};
use govcloud_tests::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(120);
/// Scheduled backups run every minute; allow a few.
const T_BACKUP: Duration = Duration::from_secs(240);

struct Setup {
    hub: Client,
    member: Client,
    agency: String,
    ns: String,
    region: String,
    store: Stores,
}

/// The test's own store: plain, or behind the encrypting gateway (per-agency credentials).
enum Stores {
    Plain(ObjectStore),
    Gateway(Gateway),
}

impl Setup {
    /// The object store itself (behind the gateway, if any).
    fn object_store(&self) -> &ObjectStore {
        match &self.store {
            Stores::Plain(s) => s,
            Stores::Gateway(g) => &g.store,
        }
    }

    /// The backups in the store under the agency's prefix (per-agency) or the shared one.
    fn stored_backups(&self) -> Vec<String> {
        match &self.store {
            Stores::Plain(s) => s.stored_backups(),
            Stores::Gateway(g) => g.store.stored_backups_of(&self.agency),
        }
    }
}

/// An agency at `level` on dc2 in a region of its own, a BackupLocation for that region on a
/// store of the test's own (behind the encrypting gateway from level 3, which needs SM4),
/// and a one-component system `portal`.
async fn setup(level: u8) -> Result<Setup> {
    setup_with(level, level >= 3).await
}

/// [`setup`], choosing whether the store is behind the gateway (which also serves a second
/// agency, `<agency>x`, that has nothing on the cluster).
async fn setup_with(level: u8, encrypted: bool) -> Result<Setup> {
    operator()?;
    require_velero(2).await?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let group = unique("grp");
    let region = unique_short("rg");
    create_test_cluster_in(&hub, &group, &region, "external", 4, 2, None).await?;
    let a = unique_short("b");
    let ac: AgencyCloud =
        serde_json::from_value(agency_cloud(&a, level, "external", &[("prod", "8", "16Gi")], &group))?;
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
    let store = if encrypted {
        let gw = Gateway::start(&unique("gw"), &[&a, &format!("{a}x")])?;
        backup_location(&hub, &region, &region, "external", Store::Gateway(&gw)).await?;
        Stores::Gateway(gw)
    } else {
        let st = ObjectStore::start(&unique("store"))?;
        backup_location(&hub, &region, &region, "external", Store::Plain(&st)).await?;
        Stores::Plain(st)
    };
    let ns = format!("{a}-prod");
    let hs: HostedSystem = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
        "metadata": {"name": "portal", "labels": {"tier": "web"}},
        "spec": {"securityLevel": level, "dataClassification": "general",
                 "components": [{"name": "web", "image": "registry.gov.cn/portal:1", "ports": [{"name": "http", "port": 8080}],
                                 "resources": {"cpu": "100m", "memory": "64Mi"}}]}
    }))?;
    let systems: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    systems.create(&PostParams::default(), &hs).await?;
    wait_for("portal Available", T, || async {
        let hs = systems.get("portal").await?;
        Ok(
            condition(&hs.status.map(|s| s.conditions).unwrap_or_default(), "Available")
                .filter(|c| c.0 == "True")
                .map(|_| ()),
        )
    })
    .await?;
    Ok(Setup {
        hub,
        member,
        agency: a,
        ns,
        region,
        store,
    })
}

fn condition(
    conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> Option<(String, String, String)> {
    condition_of(conds, t)
}

/// Waits for policy `name`'s first good backup; its name.
async fn first_backup(api: &Api<BackupPolicy>, name: &str, what: &str) -> Result<String> {
    let bp = wait_bp(api, name, what, T_BACKUP, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_successful_backup.as_ref())
            .is_some()
    })
    .await?;
    Ok(bp
        .status
        .and_then(|s| s.last_successful_backup)
        .map(|b| b.name)
        .unwrap_or_default())
}

/// Asks policy `name` for a restore of `backup` with trigger `trigger`.
async fn request_restore(api: &Api<BackupPolicy>, name: &str, trigger: &str, backup: &str) -> Result<()> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"govcloud.io/restore": trigger, "govcloud.io/restore-backup": backup}}}),
        ),
    )
    .await?;
    Ok(())
}

fn cond(bp: &BackupPolicy, t: &str) -> Option<(String, String, String)> {
    condition(&bp.status.as_ref()?.conditions, t)
}

fn policy(name: &str, spec: Value) -> Result<BackupPolicy> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": name}, "spec": spec
    }))?)
}

async fn wait_bp<F: Fn(&BackupPolicy) -> bool>(
    api: &Api<BackupPolicy>,
    name: &str,
    what: &str,
    timeout: Duration,
    f: F,
) -> Result<BackupPolicy> {
    wait_for(what, timeout, || async {
        let bp = api.get(name).await?;
        Ok(f(&bp).then_some(bp))
    })
    .await
}

fn annotate(key: &str, value: &str) -> Patch<Value> {
    Patch::Merge(json!({"metadata": {"annotations": {key: value}}}))
}

async fn delete_policy(api: &Api<BackupPolicy>, name: &str) -> Result<()> {
    api.delete(name, &DeleteParams::default()).await?;
    wait_for("policy deleted (schedules removed)", T, || async {
        Ok(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

#[tokio::test]
async fn scheduled_backup_drill_and_restore_round_trip() -> Result<()> {
    let s = setup(2).await?;
    let api: Api<BackupPolicy> = Api::namespaced(s.hub.clone(), &s.ns);
    api.create(
        &PostParams::default(),
        &policy("daily", json!({"schedule": "0 2 * * *", "retention": {"keepLast": 3}}))?,
    )
    .await?;
    // Velero runs a new schedule's first backup at once; it completes and lands in the store.
    let bp = wait_bp(&api, "daily", "first backup Completed", T_BACKUP, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_successful_backup.as_ref())
            .is_some()
    })
    .await?;
    let st = bp.status.clone().ok_or_else(|| anyhow!("no status"))?;
    let backup = st.last_successful_backup.map(|b| b.name).unwrap_or_default();
    ensure!(
        cond(&bp, "Ready").is_some_and(|c| c.0 == "True"),
        "{:?}",
        cond(&bp, "Ready")
    );
    ensure!(cond(&bp, "RPOMet").is_some_and(|c| c.0 == "True"));
    ensure!(st.rpo.as_deref() == Some("24h"), "level-2 default RPO: {:?}", st.rpo);
    ensure!(st.copies_in_regions == vec![s.region.clone()]);
    ensure!(st.systems == vec!["portal".to_string()]);
    ensure!(
        s.stored_backups().contains(&backup),
        "backup {backup} in the object store: {:?}",
        s.stored_backups()
    );
    // The agency now counts as covered.
    let ac = Api::<AgencyCloud>::all(s.hub.clone()).get(&s.agency).await?;
    let covered = condition(&ac.status.map(|s| s.conditions).unwrap_or_default(), "BackupCompliant");
    ensure!(covered.as_ref().is_some_and(|c| c.0 == "True"), "{covered:?}");

    // A drill on demand restores into a scratch namespace, checks and cleans up.
    api.patch("daily", &PatchParams::default(), &annotate("govcloud.io/drill", "1"))
        .await?;
    let bp = wait_bp(&api, "daily", "drill finished", T_BACKUP, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_drill.as_ref())
            .is_some_and(|d| d.trigger == "1" && d.result != "Running")
    })
    .await?;
    let drill = bp
        .status
        .as_ref()
        .and_then(|s| s.last_drill.clone())
        .ok_or_else(|| anyhow!("no drill"))?;
    ensure!(drill.result == "Passed", "drill: {drill:?}");
    ensure!(drill.duration_seconds.is_some() && drill.finished.is_some());
    ensure!(drill.message.contains("1/1 pods running"), "{}", drill.message);
    ensure!(cond(&bp, "DrillPassed").is_some_and(|c| c.0 == "True"));
    let scratch = drill.namespace.clone();
    let nss: Api<Namespace> = Api::all(s.member.clone());
    wait_for("scratch namespace removed", T, || async {
        Ok(nss
            .get_opt(&scratch)
            .await?
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some())
            .then_some(()))
    })
    .await?;

    // Recovery: the system is deleted, restored from the backup, and runs again.
    let systems: Api<HostedSystem> = Api::namespaced(s.hub.clone(), &s.ns);
    systems.delete("portal", &DeleteParams::default()).await?;
    let deploys: Api<Deployment> = Api::namespaced(s.member.clone(), &s.ns);
    wait_for("system gone", T, || async {
        Ok(
            (systems.get_opt("portal").await?.is_none() && deploys.get_opt("portal-web").await?.is_none())
                .then_some(()),
        )
    })
    .await?;
    api.patch(
        "daily",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"govcloud.io/restore": "r1", "govcloud.io/restore-backup": backup}}}),
        ),
    )
    .await?;
    let bp = wait_bp(&api, "daily", "restore finished", T_BACKUP, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_restore.as_ref())
            .is_some_and(|r| r.trigger == "r1" && r.result != "Running")
    })
    .await?;
    let r = bp
        .status
        .and_then(|s| s.last_restore)
        .ok_or_else(|| anyhow!("no restore"))?;
    ensure!(r.result == "Passed", "restore: {r:?}");
    ensure!(r.message.contains("recreated on the hub: portal"), "{}", r.message);
    wait_for("restored system Available", T, || async {
        let Some(hs) = systems.get_opt("portal").await? else {
            return Ok(None);
        };
        Ok(
            condition(&hs.status.map(|s| s.conditions).unwrap_or_default(), "Available")
                .filter(|c| c.0 == "True")
                .map(|_| ()),
        )
    })
    .await?;
    ensure!(deploys.get_opt("portal-web").await?.is_some());
    let restored_by = systems
        .get("portal")
        .await?
        .metadata
        .annotations
        .unwrap_or_default()
        .remove("govcloud.io/restored-by");
    ensure!(
        restored_by.as_deref() == Some(r.restore.as_str()),
        "the recreated system names its restore: {restored_by:?}, want {}",
        r.restore
    );

    // Zero writes at steady state: once the status has settled (the recreated system is
    // seen by the policy), forced reconciles with nothing new change nothing.
    let applies = |m: &str| metric(m, "govcloud_controller_child_applies_total", "backuppolicy");
    let (before, m1) = wait_for("policy status settled", T, || async {
        let (_, m_a) = operator_get("/metrics").await?;
        let a = api.get("daily").await?;
        api.patch("daily", &PatchParams::default(), &annotate("test/settle", &unique("s")))
            .await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let b = api.get("daily").await?;
        let (_, m_b) = operator_get("/metrics").await?;
        Ok((a.status == b.status && applies(&m_a) == applies(&m_b)).then_some((b, m_b)))
    })
    .await?;
    for i in 0..4 {
        api.patch(
            "daily",
            &PatchParams::default(),
            &annotate("test/touch", &i.to_string()),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (_, m2) = operator_get("/metrics").await?;
    ensure!(
        applies(&m1) == applies(&m2),
        "applies at steady state: {} → {}",
        applies(&m1),
        applies(&m2)
    );
    ensure!(
        api.get("daily").await?.status == before.status,
        "status rewritten at steady state"
    );
    ensure!(
        m2.contains("govcloud_backup_recovery_point_age_seconds{agency="),
        "age metric"
    );
    delete_policy(&api, "daily").await?;
    Ok(())
}

fn metric(text: &str, name: &str, controller: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("controller=\"{controller}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn retention_prunes_old_backups_and_rpo_tracks_the_store() -> Result<()> {
    let s = setup(2).await?;
    let api: Api<BackupPolicy> = Api::namespaced(s.hub.clone(), &s.ns);
    api.create(
        &PostParams::default(),
        &policy(
            "minutely",
            json!({"schedule": "* * * * *", "rpo": "2m", "retention": {"keepLast": 2, "daily": 0, "weekly": 0, "monthly": 0}}),
        )?,
    )
    .await?;
    let backups: Api<DynamicObject> =
        Api::namespaced_with(s.member.clone(), "velero", &velero_resource("Backup", "backups"));
    let schedule = format!("{}.minutely", s.ns);
    // Backups are taken every minute; the policy keeps two (Velero deletes the others on the
    // operator's DeleteBackupRequests) and never the newest good one.
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::<String>::new());
    wait_for("five backups taken, two kept", Duration::from_secs(480), || async {
        let list = backups
            .list(&kube::api::ListParams::default().labels(&format!("velero.io/schedule-name={schedule}")))
            .await?;
        let names: Vec<String> = list.items.iter().filter_map(|b| b.metadata.name.clone()).collect();
        let completed: Vec<&DynamicObject> = list
            .items
            .iter()
            .filter(|b| b.data["status"]["phase"] == "Completed")
            .collect();
        let mut seen = seen.lock().map_err(|_| anyhow!("lock"))?;
        seen.extend(names.iter().cloned());
        Ok((seen.len() >= 5 && completed.len() <= 2 && names.len() <= 3).then_some(()))
    })
    .await?;
    let bp = wait_bp(&api, "minutely", "status shows two retained", T, |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.retained <= 3 && s.last_successful_backup.is_some())
    })
    .await?;
    let newest_good = bp
        .status
        .and_then(|s| s.last_successful_backup)
        .map(|b| b.name)
        .unwrap_or_default();
    let live = backups
        .list(&kube::api::ListParams::default().labels(&format!("velero.io/schedule-name={schedule}")))
        .await?;
    ensure!(
        live.items
            .iter()
            .any(|b| b.metadata.name.as_deref() == Some(newest_good.as_str())),
        "the newest good backup {newest_good} is kept"
    );
    ensure!(cond(&api.get("minutely").await?, "RPOMet").is_some_and(|c| c.0 == "True"));

    // The object store stops: backups fail, and after the RPO the policy says so.
    s.object_store().stop();
    let bp = wait_bp(&api, "minutely", "RPOMet False", Duration::from_secs(300), |b| {
        cond(b, "RPOMet").is_some_and(|c| c.0 == "False")
    })
    .await?;
    let msg = cond(&bp, "RPOMet").map(|c| c.2).unwrap_or_default();
    ensure!(msg.contains("older than the RPO of 2m"), "{msg}");
    ensure!(
        bp.status
            .as_ref()
            .and_then(|s| s.last_backup.as_ref())
            .is_some_and(|b| b.phase != "Completed"),
        "the failing backups show: {:?}",
        bp.status.as_ref().and_then(|s| s.last_backup.clone())
    );
    let (_, m) = operator_get("/metrics").await?;
    ensure!(
        m.lines()
            .any(|l| l.starts_with("govcloud_backup_rpo_met{") && l.contains(&s.ns) && l.ends_with(" 0")),
        "rpo metric 0"
    );
    // ... and recovers when the store is back.
    s.object_store().resume()?;
    wait_bp(&api, "minutely", "RPOMet True again", Duration::from_secs(300), |b| {
        cond(b, "RPOMet").is_some_and(|c| c.0 == "True")
    })
    .await?;
    delete_policy(&api, "minutely").await?;
    Ok(())
}

#[tokio::test]
async fn offsite_copies_by_level_and_bad_policies() -> Result<()> {
    let s = setup(3).await?;
    let api: Api<BackupPolicy> = Api::namespaced(s.hub.clone(), &s.ns);
    // Level 3 without an off-site region: backups run, but it is not compliant.
    api.create(
        &PostParams::default(),
        &policy("main", json!({"schedule": "0 2 * * *"}))?,
    )
    .await?;
    let bp = wait_bp(&api, "main", "OffsiteCompliant False", T_BACKUP, |b| {
        cond(b, "OffsiteCompliant").is_some_and(|c| c.0 == "False")
    })
    .await?;
    let msg = cond(&bp, "OffsiteCompliant").map(|c| c.2).unwrap_or_default();
    ensure!(
        msg.contains("Security level 3 requires an off-site copy: set spec.offsiteRegion"),
        "{msg}"
    );
    // An off-site region equal to the primary, or unknown: reported naming the field.
    for (region, needle) in [
        (s.region.clone(), "is the region of the agency's cluster"),
        (
            "nowhere".to_string(),
            "no BackupLocation is registered for region nowhere",
        ),
    ] {
        api.patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"offsiteRegion": region}})),
        )
        .await?;
        let bp = wait_bp(&api, "main", "bad offsite reported", T, |b| {
            cond(b, "Ready").is_some_and(|c| c.0 == "False" && c.2.contains(needle))
        })
        .await?;
        let msg = cond(&bp, "Ready").map(|c| c.2).unwrap_or_default();
        ensure!(msg.starts_with("spec.offsiteRegion"), "{msg}");
    }
    // A second region whose only store is plain (level 3 needs SM4) or on the other
    // network zone: refused, naming the store's field.
    let far_region = unique_short("far");
    let plain = ObjectStore::start(&unique("far-plain"))?;
    backup_location(
        &s.hub,
        &format!("{far_region}-a"),
        &far_region,
        "external",
        Store::Plain(&plain),
    )
    .await?;
    let other_zone = Gateway::start(&unique("far-int"), &[&s.agency])?;
    backup_location(
        &s.hub,
        &format!("{far_region}-b"),
        &far_region,
        "internal",
        Store::Gateway(&other_zone),
    )
    .await?;
    api.patch(
        "main",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"offsiteRegion": far_region}})),
    )
    .await?;
    let bp = wait_bp(&api, "main", "unfit off-site stores reported", T, |b| {
        cond(b, "Ready").is_some_and(|c| c.0 == "False" && c.2.contains("fits a level 3 agency"))
    })
    .await?;
    let msg = cond(&bp, "Ready").map(|c| c.2).unwrap_or_default();
    for needle in [
        "spec.offsiteRegion: no BackupLocation in region",
        &format!("BackupLocation {far_region}-a has spec.encryption None (level 3 needs SM4 encryption at rest)"),
        &format!("BackupLocation {far_region}-b has spec.zone internal"),
    ] {
        ensure!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    // An encrypted store of the agency's zone there: the off-site copy is taken in it,
    // under the agency's own prefix.
    let far = Gateway::start(&unique("far"), &[&s.agency])?;
    backup_location(
        &s.hub,
        &format!("{far_region}-c"),
        &far_region,
        "external",
        Store::Gateway(&far),
    )
    .await?;
    let bp = wait_bp(&api, "main", "off-site copy made", T_BACKUP, |b| {
        cond(b, "OffsiteCompliant").is_some_and(|c| c.0 == "True" && c.1 == "OffsiteCopyCurrent")
    })
    .await?;
    let st = bp.status.ok_or_else(|| anyhow!("no status"))?;
    ensure!(
        st.copies_in_regions.contains(&far_region) && st.copies_in_regions.contains(&s.region),
        "{:?}",
        st.copies_in_regions
    );
    ensure!(
        !far.store.stored_backups_of(&s.agency).is_empty(),
        "the off-site store holds a backup under the agency's prefix"
    );
    ensure!(plain.stored_backups().is_empty() && other_zone.store.stored_backups_of(&s.agency).is_empty());

    // An RPO shorter than the schedule's interval, and a selector that matches nothing.
    api.patch(
        "main",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"rpo": "1h"}})),
    )
    .await?;
    let bp = wait_bp(&api, "main", "rpo vs interval", T, |b| {
        cond(b, "Ready").is_some_and(|c| c.2.contains("spec.rpo: 1h is shorter than the longest interval"))
    })
    .await?;
    ensure!(cond(&bp, "Ready").is_some_and(|c| c.0 == "False"));
    api.patch(
        "main",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"rpo": null, "selector": {"matchLabels": {"tier": "nothing"}}}})),
    )
    .await?;
    wait_bp(&api, "main", "empty selector", T, |b| {
        cond(b, "Ready").is_some_and(|c| c.0 == "False" && c.2.contains("spec.selector matches no HostedSystem"))
    })
    .await?;
    // Refused at admission, naming the field.
    for (spec, needle) in [
        (json!({"schedule": "every day"}), "spec.schedule"),
        (
            json!({"schedule": "0 2 * * *", "retention": {"keepLast": 0}}),
            "spec.retention.keepLast",
        ),
        (json!({"schedule": "0 2 * * *", "rpo": "1d"}), "spec.rpo"),
    ] {
        match api
            .create(&PostParams::default(), &policy(&unique("bad"), spec.clone())?)
            .await
        {
            Err(kube::Error::Api(e)) => ensure!(e.message.contains(needle), "{spec}: {}", e.message),
            other => bail!("{spec} accepted: {other:?}"),
        }
    }
    delete_policy(&api, "main").await?;
    Ok(())
}

/// Bytes that must never appear in the store behind the gateway.
const MARKER: &str = "GOVCLOUD-SECRET-MARKER-0c4e1b7d";

/// Issue 25: real Velero through the encrypting gateway. The agency's Secret and ConfigMap
/// carry a marker; the backup lands under the agency's own prefix with no plaintext of it
/// in the store; the member holds only this agency's gateway credentials; the other
/// agency's credentials get 403 on the agency's objects; a drill and a restore decrypt it
/// back (the Secret returns with its marker); with the key-encryption key revoked, the
/// restore fails and the gateway's log says why.
#[tokio::test]
async fn encrypted_per_agency_store_backup_drill_and_restore_through_the_gateway() -> Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let s = setup_with(2, true).await?;
    let Stores::Gateway(gw) = &s.store else {
        bail!("setup_with(.., true) gives a gateway");
    };
    let secrets: Api<Secret> = Api::namespaced(s.member.clone(), &s.ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db-password"}, "stringData": {"password": MARKER}
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;
    let cms: Api<ConfigMap> = Api::namespaced(s.member.clone(), &s.ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"}, "data": {"note": MARKER}
    }))?;
    cms.create(&PostParams::default(), &cm).await?;

    let api: Api<BackupPolicy> = Api::namespaced(s.hub.clone(), &s.ns);
    api.create(
        &PostParams::default(),
        &policy("enc", json!({"schedule": "0 2 * * *"}))?,
    )
    .await?;
    let backup = first_backup(&api, "enc", "first backup through the gateway").await?;
    // Under the agency's prefix, nothing under the shared one, no plaintext anywhere.
    ensure!(
        gw.store.stored_backups_of(&s.agency).contains(&backup),
        "backup {backup} under {}/: {:?}",
        s.agency,
        gw.store.stored_backups_of(&s.agency)
    );
    ensure!(
        gw.store.stored_backups().is_empty(),
        "nothing outside the agency's prefix"
    );
    let hits = files_containing(&gw.store.dir, MARKER.as_bytes());
    ensure!(hits.is_empty(), "plaintext of the marker in the store: {hits:?}");

    // The member holds this agency's credentials only, in a location confined to its prefix.
    let bsl_name = format!("govcloud-{}.{}", s.region, s.agency);
    let bsl = Api::<DynamicObject>::namespaced_with(
        s.member.clone(),
        "velero",
        &velero_resource("BackupStorageLocation", "backupstoragelocations"),
    )
    .get(&bsl_name)
    .await?;
    ensure!(
        bsl.data["spec"]["objectStorage"]["prefix"] == s.agency.as_str(),
        "{:?}",
        bsl.data["spec"]
    );
    let held = Api::<Secret>::namespaced(s.member.clone(), "velero")
        .get(&format!("{bsl_name}-credentials"))
        .await?;
    let data = held.data.unwrap_or_default();
    let cloud = data
        .get("cloud")
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default();
    ensure!(
        data.len() == 1 && cloud == Gateway::credentials(&s.agency),
        "the member's Secret holds exactly this agency's credentials: {:?}",
        data.keys().collect::<Vec<_>>()
    );
    // The other agency of the same gateway reaches none of this agency's objects.
    let other = format!("{}x", s.agency);
    let intruder = govcloud_gateway::upstream::S3Client::new(govcloud_gateway::upstream::Endpoint {
        url: gw.endpoint(),
        region: "us-east-1".into(),
        access_key: Gateway::access_key(&other),
        secret_key: Gateway::secret_key(&other),
    })?;
    let key = format!("{}/backups/{backup}/velero-backup.json", s.agency);
    for (what, status) in [
        (
            "GET",
            intruder
                .get_object("backups", &key, None)
                .await
                .err()
                .and_then(|e| e.status()),
        ),
        (
            "DELETE",
            intruder
                .delete_object("backups", &key)
                .await
                .err()
                .and_then(|e| e.status()),
        ),
    ] {
        ensure!(
            status.map(|s| s.as_u16()) == Some(403),
            "{what} of {key} with the other agency's credentials: {status:?}"
        );
    }

    // A drill and a restore decrypt it back.
    api.patch("enc", &PatchParams::default(), &annotate("govcloud.io/drill", "e1"))
        .await?;
    let bp = wait_bp(&api, "enc", "drill finished", T_BACKUP, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_drill.as_ref())
            .is_some_and(|d| d.trigger == "e1" && d.result != "Running")
    })
    .await?;
    let drill = bp
        .status
        .and_then(|s| s.last_drill)
        .ok_or_else(|| anyhow!("no drill"))?;
    ensure!(drill.result == "Passed", "drill through the gateway: {drill:?}");
    secrets.delete("db-password", &DeleteParams::default()).await?;
    wait_for("Secret gone", T, || async {
        Ok(secrets.get_opt("db-password").await?.is_none().then_some(()))
    })
    .await?;
    request_restore(&api, "enc", "e2", &backup).await?;
    let r = restore_result(&api, "enc", "e2").await?;
    ensure!(r.result == "Passed", "restore through the gateway: {r:?}");
    let back = secrets.get("db-password").await?;
    let password = back
        .data
        .unwrap_or_default()
        .get("password")
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    ensure!(password.as_deref() == Some(MARKER), "restored Secret: {password:?}");

    // The key-encryption key revoked (its Secret emptied of it): the restore fails, and the
    // gateway's log names the missing key.
    let kek = gw.dir.join("kek");
    let saved = gw.dir.join("kek.saved");
    std::fs::rename(&kek, &saved)?;
    std::fs::create_dir_all(&kek)?;
    govcloud_gateway::keys::FileKeyProvider::generate(&kek, "k9", true)?;
    gw.stop();
    gw.resume()?;
    secrets.delete("db-password", &DeleteParams::default()).await?;
    request_restore(&api, "enc", "e3", &backup).await?;
    let r = restore_result(&api, "enc", "e3").await?;
    ensure!(r.result != "Passed", "restore with the KEK revoked: {r:?}");
    let log = std::fs::read_to_string(gw.dir.join("gateway.log")).unwrap_or_default();
    ensure!(
        log.contains("k1") && log.contains("is not held by the key provider"),
        "the gateway's log names the key it lacks:\n{log}"
    );
    ensure!(
        secrets.get_opt("db-password").await?.is_none(),
        "nothing restored without the key"
    );
    // The key back: restorable again (nothing was lost).
    std::fs::remove_dir_all(&kek)?;
    std::fs::rename(&saved, &kek)?;
    gw.stop();
    gw.resume()?;
    request_restore(&api, "enc", "e4", &backup).await?;
    let r = restore_result(&api, "enc", "e4").await?;
    ensure!(r.result == "Passed", "restore with the key back: {r:?}");
    ensure!(secrets.get_opt("db-password").await?.is_some());
    delete_policy(&api, "enc").await?;
    Ok(())
}

#[tokio::test]
async fn drill_of_a_broken_backup_fails_and_tenants_stay_isolated() -> Result<()> {
    let s = setup(2).await?;
    let api: Api<BackupPolicy> = Api::namespaced(s.hub.clone(), &s.ns);
    api.create(&PostParams::default(), &policy("p", json!({"schedule": "0 2 * * *"}))?)
        .await?;
    let backup = first_backup(&api, "p", "first backup").await?;
    // Break the backup in the store: its contents are gone.
    let dir = s.object_store().dir.join("backups").join("backups").join(&backup);
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".tar.gz") {
            std::fs::remove_file(path)?;
        }
    }
    api.patch("p", &PatchParams::default(), &annotate("govcloud.io/drill", "broken"))
        .await?;
    let bp = wait_bp(&api, "p", "drill of the broken backup finished", T_BACKUP, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_drill.as_ref())
            .is_some_and(|d| d.trigger == "broken" && d.result != "Running")
    })
    .await?;
    let d = bp
        .status
        .as_ref()
        .and_then(|s| s.last_drill.clone())
        .ok_or_else(|| anyhow!("no drill"))?;
    ensure!(d.result == "Failed", "{d:?}");
    ensure!(cond(&bp, "DrillPassed").is_some_and(|c| c.0 == "False" && c.1 == "DrillFailed"));

    // Another agency cannot touch this one's backups.
    let other = unique_short("o");
    let group = unique("grp");
    create_test_cluster(&s.hub, &group, "external", 3, 2, None).await?;
    let ac: AgencyCloud = serde_json::from_value(agency_cloud(&other, 2, "external", &[("prod", "2", "4Gi")], &group))?;
    Api::<AgencyCloud>::all(s.hub.clone())
        .create(&PostParams::default(), &ac)
        .await?;
    let outsider = impersonating(1, "someone", &[&format!("{other}-owners")]).await?;
    wait_for("other agency's owners can use their own namespace", T, || async {
        let own: Api<BackupPolicy> = Api::namespaced(outsider.clone(), &format!("{other}-prod"));
        Ok(own.list(&Default::default()).await.ok().map(|_| ()))
    })
    .await?;
    // ... not read or change this agency's policies (hub RBAC),
    let theirs: Api<BackupPolicy> = Api::namespaced(outsider.clone(), &s.ns);
    match theirs.get("p").await {
        Err(kube::Error::Api(e)) => ensure!(e.code == 403, "{e:?}"),
        other => bail!("cross-agency read allowed: {other:?}"),
    }
    match theirs
        .patch("p", &PatchParams::default(), &annotate("govcloud.io/restore", "steal"))
        .await
    {
        Err(kube::Error::Api(e)) => ensure!(e.code == 403, "{e:?}"),
        other => bail!("cross-agency restore request allowed: {other:?}"),
    }
    // ... nor create Velero restores on the member cluster,
    let member_outsider = impersonating(2, "someone", &[&format!("{other}-owners")]).await?;
    let restores: Api<DynamicObject> =
        Api::namespaced_with(member_outsider, "velero", &velero_resource("Restore", "restores"));
    let r: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1", "kind": "Restore", "metadata": {"name": unique("steal")},
        "spec": {"backupName": backup, "namespaceMapping": {s.ns.clone(): format!("{other}-prod")}}
    }))?;
    match restores.create(&PostParams::default(), &r).await {
        Err(kube::Error::Api(e)) => ensure!(e.code == 403, "{e:?}"),
        other => bail!("tenant created a Velero Restore: {other:?}"),
    }
    // ... and a policy restores only its own backups.
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"govcloud.io/restore": "x", "govcloud.io/restore-backup": "someone-elses-backup"}}})),
    )
    .await?;
    let bp = wait_bp(&api, "p", "foreign backup refused", T, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_restore.as_ref())
            .is_some_and(|r| r.trigger == "x")
    })
    .await?;
    let r = bp
        .status
        .and_then(|s| s.last_restore)
        .ok_or_else(|| anyhow!("no restore record"))?;
    ensure!(
        r.result == "Failed" && r.message.contains("is not a successful backup of this policy"),
        "{r:?}"
    );
    delete_policy(&api, "p").await?;
    Api::<AgencyCloud>::all(s.hub.clone())
        .delete(&other, &DeleteParams::default())
        .await?;
    Ok(())
}

/// Velero objects of `kind` in `velero` on a member, as the platform (cluster admin) sees them.
fn velero_objects(member: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(member.clone(), "velero", &velero_resource(kind, plural))
}

fn included_namespaces(spec: &Value) -> Vec<String> {
    spec["includedNamespaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// What a backup of `namespace` to `location` contains when the operator takes it.
fn backup_template(namespace: &str, location: &str) -> Value {
    json!({
        "includedNamespaces": [namespace], "storageLocation": location, "ttl": "87600h0m0s",
        "snapshotVolumes": false, "defaultVolumesToFsBackup": false, "includeClusterResources": false,
    })
}

/// Waits until a policy's restore with `trigger` has a result other than `Running`.
async fn restore_result(
    api: &Api<BackupPolicy>,
    name: &str,
    trigger: &str,
) -> Result<govcloud_api::backup::RestoreRecord> {
    let bp = wait_bp(api, name, &format!("restore {trigger} finished"), T_BACKUP, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_restore.as_ref())
            .is_some_and(|r| r.trigger == trigger && r.result != "Running")
    })
    .await?;
    bp.status
        .and_then(|s| s.last_restore)
        .ok_or_else(|| anyhow!("no restore record"))
}

/// Issue 23: the old Velero names `<namespace>-<policy>` were ambiguous. Agency `<a>` with
/// environment `bigdata` (policy `prod-open-data`) and agency `<a>-bigdata` with environment
/// `prod` (policy `open-data`) both had `<a>-bigdata-prod-open-data`, so one policy's
/// retention pruned, and its restore accepted, the other agency's backups; and a backup of
/// an earlier agency with the same short name counted as the new one's. Here the second
/// policy keeps one backup a minute, while next to it are the first agency's backups (one
/// taken under the old name, as the old operator labelled them) and a backup of an earlier
/// agency of the second one's name (another credit code): none of those is pruned or
/// restorable by the second policy, and the first still restores its own old-name backup.
#[tokio::test]
async fn colliding_old_names_and_reused_short_names_cannot_reach_another_agencys_backups() -> Result<()> {
    operator()?;
    require_velero(2).await?;
    let hub = client(1).await?;
    let member = client(2).await?;
    let group = unique("grp");
    let region = unique_short("rg");
    create_test_cluster_in(&hub, &group, &region, "external", 4, 2, None).await?;
    let store = ObjectStore::start(&unique("store"))?;
    backup_location(&hub, &region, &region, "external", Store::Plain(&store)).await?;
    let location = format!("govcloud-{region}");
    // `<a>-bigdata` must stay a short name (≤ 20 characters).
    let a: String = unique_short("z").chars().take(12).collect();
    let a = a.trim_end_matches('-').to_string();
    let b = format!("{a}-bigdata");
    let agencies: Api<AgencyCloud> = Api::all(hub.clone());
    for (name, env) in [(&a, "bigdata"), (&b, "prod")] {
        let ac: AgencyCloud = serde_json::from_value(agency_cloud(name, 2, "external", &[(env, "4", "8Gi")], &group))?;
        agencies.create(&PostParams::default(), &ac).await?;
    }
    for name in [&a, &b] {
        wait_for(&format!("agency {name} Ready"), T, || async {
            let ac = agencies.get(name).await?;
            Ok(condition(&ac.status.map(|s| s.conditions).unwrap_or_default(), "Ready")
                .filter(|c| c.0 == "True")
                .map(|_| ()))
        })
        .await?;
    }
    let (ns_a, ns_b) = (format!("{a}-bigdata"), format!("{b}-prod"));
    let old = format!("{a}-bigdata-prod-open-data");
    let api_a: Api<BackupPolicy> = Api::namespaced(hub.clone(), &ns_a);
    let api_b: Api<BackupPolicy> = Api::namespaced(hub.clone(), &ns_b);
    api_a
        .create(
            &PostParams::default(),
            &policy("prod-open-data", json!({"schedule": "0 2 * * *"}))?,
        )
        .await?;
    let first_a = wait_bp(&api_a, "prod-open-data", "first agency's first backup", T_BACKUP, |p| {
        p.status
            .as_ref()
            .and_then(|s| s.last_successful_backup.as_ref())
            .is_some()
    })
    .await?
    .status
    .and_then(|s| s.last_successful_backup)
    .map(|r| r.name)
    .ok_or_else(|| anyhow!("no backup"))?;

    // What the old operator left: the first policy's Schedule and a backup under the old
    // name (labelled as it labelled them), and a backup of an earlier agency that had the
    // second one's short name, under the second policy's new Schedule name.
    let backups = velero_objects(&member, "Backup", "backups");
    let schedules = velero_objects(&member, "Schedule", "schedules");
    let legacy_a = format!("{old}-20261101020000");
    let earlier_b = format!("{ns_b}.open-data-20261101020000");
    let old_labels = json!({"app.kubernetes.io/managed-by": "govcloud-operator", "govcloud.io/backup-policy": old});
    let legacy_schedule: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1", "kind": "Schedule",
        "metadata": {"name": old, "namespace": "velero", "labels": old_labels.clone()},
        "spec": {"schedule": "CRON_TZ=Asia/Shanghai 0 2 * * *", "useOwnerReferencesInBackup": false,
                 "template": backup_template(&ns_a, &location)},
    }))?;
    schedules
        .patch(
            &old,
            &PatchParams::apply("backup-test").force(),
            &Patch::Apply(&legacy_schedule),
        )
        .await?;
    let mut legacy_labels = old_labels.clone();
    legacy_labels["velero.io/schedule-name"] = json!(old);
    let other_code = unique_credit_code();
    for (name, labels, ns) in [
        (&legacy_a, legacy_labels, &ns_a),
        (
            &earlier_b,
            json!({"app.kubernetes.io/managed-by": "govcloud-operator", "velero.io/schedule-name": format!("{ns_b}.open-data"),
                   "govcloud.io/backup-namespace": ns_b, "govcloud.io/backup-policy": "open-data",
                   "govcloud.io/credit-code": other_code}),
            &ns_b,
        ),
    ] {
        let o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": {"name": name, "namespace": "velero", "labels": labels},
            "spec": backup_template(ns, &location),
        }))?;
        backups.create(&PostParams::default(), &o).await?;
    }
    for name in [&legacy_a, &earlier_b] {
        wait_for(&format!("backup {name} Completed"), T_BACKUP, || async {
            Ok((backups.get(name).await?.data["status"]["phase"] == "Completed").then_some(()))
        })
        .await?;
    }

    // The second policy: a backup a minute, one kept.
    api_b
        .create(
            &PostParams::default(),
            &policy(
                "open-data",
                json!({"schedule": "* * * * *", "rpo": "2m", "retention": {"keepLast": 1, "daily": 0, "weekly": 0, "monthly": 0}}),
            )?,
        )
        .await?;
    let protected = [first_a.clone(), legacy_a.clone(), earlier_b.clone()];
    let dbrs = velero_objects(&member, "DeleteBackupRequest", "deletebackuprequests");
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::<String>::new());
    let violation = wait_for(
        "the second policy prunes its own backups",
        Duration::from_secs(480),
        || async {
            let list = backups.list(&Default::default()).await?;
            let requests = dbrs.list(&Default::default()).await?;
            for p in &protected {
                let gone = list
                    .items
                    .iter()
                    .find(|o| o.metadata.name.as_deref() == Some(p.as_str()))
                    .is_none_or(|o| o.data["status"]["phase"] == "Deleting");
                let asked = requests
                    .items
                    .iter()
                    .any(|d| d.data["spec"]["backupName"] == p.as_str());
                if gone || asked {
                    return Ok(Some(Some(format!(
                        "backup {p} (not the second policy's) was pruned by its retention"
                    ))));
                }
            }
            let own: Vec<String> = list
                .items
                .iter()
                .filter(|o| included_namespaces(&o.data["spec"]) == [ns_b.clone()])
                .filter_map(|o| o.metadata.name.clone())
                .filter(|n| !protected.contains(n))
                .collect();
            let mut seen = seen.lock().map_err(|_| anyhow!("lock"))?;
            seen.extend(own.iter().cloned());
            let pruned = seen.iter().filter(|n| !own.contains(n)).count();
            Ok((seen.len() >= 3 && pruned >= 1).then_some(None))
        },
    )
    .await?;
    if let Some(v) = violation {
        bail!(v);
    }
    let st = api_b
        .get("open-data")
        .await?
        .status
        .ok_or_else(|| anyhow!("no status"))?;
    let good = st.last_successful_backup.map(|r| r.name).unwrap_or_default();
    ensure!(
        !protected.contains(&good),
        "the second policy's recovery point is another agency's backup {good}"
    );
    // ... nor restore them.
    for (i, foreign) in protected.iter().enumerate() {
        let trigger = format!("steal-{i}");
        api_b
            .patch(
                "open-data",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"govcloud.io/restore": trigger, "govcloud.io/restore-backup": foreign}}})),
            )
            .await?;
        let r = restore_result(&api_b, "open-data", &trigger).await?;
        ensure!(
            r.result == "Failed" && r.message.contains("is not a successful backup of this policy"),
            "the second policy restored {foreign}: {r:?}"
        );
    }
    // The first policy still finds its backup taken under the old name, and restores it.
    api_a
        .patch(
            "prod-open-data",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"govcloud.io/restore": "own", "govcloud.io/restore-backup": legacy_a}}})),
        )
        .await?;
    let r = restore_result(&api_a, "prod-open-data", "own").await?;
    ensure!(r.result == "Passed" && r.backup == legacy_a, "{r:?}");
    // Its old Schedule is removed (its backups stay), and each policy has a Schedule of its
    // own, backing up its own namespace.
    wait_for("the first policy's old Schedule removed", T, || async {
        Ok(schedules.get_opt(&old).await?.is_none().then_some(()))
    })
    .await?;
    for (name, ns) in [
        (format!("{ns_a}.prod-open-data"), &ns_a),
        (format!("{ns_b}.open-data"), &ns_b),
    ] {
        let s = schedules.get(&name).await?;
        ensure!(
            included_namespaces(&s.data["spec"]["template"]) == [ns.clone()],
            "Schedule {name}: {:?}",
            s.data["spec"]["template"]
        );
    }
    for p in &protected {
        ensure!(backups.get_opt(p).await?.is_some(), "backup {p} deleted");
    }
    delete_policy(&api_b, "open-data").await?;
    delete_policy(&api_a, "prod-open-data").await?;
    for name in [&a, &b] {
        agencies.delete(name, &DeleteParams::default()).await?;
    }
    Ok(())
}
