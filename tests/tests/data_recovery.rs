//! Disaster recovery that brings the data back, on a real node (dc1-real): a stateful
//! HostedSystem writes 1,000 files of known content and one of random bytes on a local
//! volume; its BackupPolicy's backups copy the volume's contents (Velero's node-agent with
//! kopia, through the encrypting SM4 gateway into the test's own object store, which then
//! holds no plaintext of them); a drill restores them into a scratch namespace
//! and reports the volume it restored; the system is then deleted with its volume, recovered
//! from the backup, and every file is compared, byte for byte and by SHA-256, with what was
//! written. The time from the recovery request to the system Available with its data is
//! left in target/reliability/ (RTO on this machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use govcloud_api::{AgencyCloud, BackupPolicy, DataCenterCluster, HostedSystem};
use govcloud_tests::*;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(240);
const FILES: usize = 1000;
const BIG: usize = 4 << 20;
const BUSYBOX: &str = "registry.gov.cn/govcloud/busybox:1.35";

/// The writer: on an empty volume, `FILES` small files with the seed in them and one file of
/// random bytes, then a marker; on a volume that has them (a restored one), nothing.
fn writer_script() -> String {
    format!(
        "if [ ! -f /data/.written ]; then i=0; while [ $i -lt {FILES} ]; do echo \"govcloud $i $SEED\" > /data/f$i; i=$((i+1)); done; \
         head -c {BIG} /dev/urandom > /data/random.bin; touch /data/.written; fi; \
         trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"
    )
}

/// Every regular file under `dir` (relative path → content).
fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if e.file_type()?.is_file() {
                let rel = p.strip_prefix(dir)?.to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p)?);
            }
        }
    }
    Ok(out)
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// The host directory of the volume bound to claim `ns/claim` on `member` (a local-path
/// volume of the real node: `local.path` or `hostPath.path`).
async fn volume_dir(member: &Client, ns: &str, claim: &str) -> Result<PathBuf> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(member.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(member.clone());
    wait_for(&format!("claim {ns}/{claim} bound"), T, || async {
        let Some(pvc) = pvcs.get_opt(claim).await? else {
            return Ok(None);
        };
        let Some(pv) = pvc.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let Some(pv) = pvs.get_opt(&pv).await? else {
            return Ok(None);
        };
        let spec = pv.spec.unwrap_or_default();
        let path = spec
            .local
            .map(|l| l.path)
            .or(spec.host_path.map(|h| h.path))
            .ok_or_else(|| anyhow!("volume of {claim} is neither local nor hostPath"))?;
        Ok(Some(PathBuf::from(path)))
    })
    .await
}

async fn wait_available(systems: &Api<HostedSystem>, name: &str) -> Result<()> {
    wait_for(&format!("{name} Available"), T, || async {
        let Some(hs) = systems.get_opt(name).await? else {
            return Ok(None);
        };
        Ok(
            condition_of(&hs.status.map(|s| s.conditions).unwrap_or_default(), "Available")
                .filter(|c| c.0 == "True")
                .map(|_| ()),
        )
    })
    .await
}

/// The files of the volume once the writer finished.
async fn written_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    wait_for("the writer finished", T, || async {
        dir.join(".written").exists().then(|| read_tree(dir)).transpose()
    })
    .await
}

#[tokio::test]
async fn volume_contents_come_back_file_for_file_after_the_system_and_its_volume_are_gone() -> Result<()> {
    operator()?;
    require_velero(1).await?;
    wait_node_agent(1, "dc1-real").await?;
    let hub = client(1).await?;
    let member = hub.clone();
    let group = unique("vd");
    let region = unique_short("vr");
    // The hub itself as the workload cluster (its real node dc1-real), in a region of its own.
    let dcc: DataCenterCluster = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "DataCenterCluster",
        "metadata": {"name": unique("dc"), "labels": {"govcloud.io/test-group": group, "govcloud.io/test": "true"}},
        "spec": {"region": region, "zone": "external", "maxSecurityLevel": 3},
    }))?;
    Api::<DataCenterCluster>::all(hub.clone())
        .create(&PostParams::default(), &dcc)
        .await?;
    let a = unique_short("vd");
    let mut manifest = agency_cloud(&a, 2, "external", &[("prod", "2", "2Gi")], &group);
    manifest["spec"]["environments"][0]["quota"]["storage"] = json!("5Gi");
    let ac: AgencyCloud = serde_json::from_value(manifest)?;
    Api::<AgencyCloud>::all(hub.clone())
        .create(&PostParams::default(), &ac)
        .await?;
    wait_agency_ready(&hub, &a, T).await?;
    let ns = format!("{a}-prod");
    testbed(&["pin-namespace", "dc1", &ns]).await?;
    // The encrypting gateway in front of the store (SM4-GCM, the agency's own credentials
    // and prefix): the volume's contents go through it like the objects do.
    let gw = Gateway::start(&unique("vgw"), &[&a])?;
    backup_location(&hub, &region, &region, "external", Store::Gateway(&gw)).await?;

    // The system: one stateful component writing its files on a local volume.
    let seed = unique("seed");
    let hs: HostedSystem = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
        "metadata": {"name": "ledger", "labels": {"govcloud.io/test": "true"}},
        "spec": {"securityLevel": 2, "dataClassification": "general", "volumeRetention": "Delete",
                 "components": [{"name": "db", "kind": "Stateful", "image": BUSYBOX,
                                 "command": ["sh", "-c", writer_script()],
                                 "env": [{"name": "SEED", "value": seed}],
                                 "resources": {"cpu": "50m", "memory": "32Mi"},
                                 "storage": {"size": "1Gi", "class": "local-path", "mountPath": "/data"}}]}
    }))?;
    let systems: Api<HostedSystem> = Api::namespaced(hub.clone(), &ns);
    systems.create(&PostParams::default(), &hs).await?;
    wait_available(&systems, "ledger").await?;
    let claim = "data-ledger-db-0";
    let dir = volume_dir(&member, &ns, claim).await?;
    let written = written_files(&dir).await?;
    ensure!(
        written.len() == FILES + 2,
        "{} files written in {}",
        written.len(),
        dir.display()
    );
    ensure!(
        written
            .get("f7")
            .is_some_and(|c| c == format!("govcloud 7 {seed}\n").as_bytes())
    );
    ensure!(written.get("random.bin").is_some_and(|c| c.len() == BIG));
    let sums: BTreeMap<&String, String> = written.iter().map(|(k, v)| (k, sha256(v))).collect();
    let random = written.get("random.bin").cloned().unwrap_or_default();

    // Backups take the volume's contents.
    let api: Api<BackupPolicy> = Api::namespaced(hub.clone(), &ns);
    let bp: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 2 * * *", "drill": {"history": 3}}
    }))?;
    api.create(&PostParams::default(), &bp).await?;
    let bp = wait_for("a backup with the volume's contents", T, || async {
        let bp = api.get("nightly").await?;
        let good = bp.status.as_ref().and_then(|s| s.last_successful_backup.as_ref());
        Ok(good.is_some_and(|b| b.volumes.is_some()).then_some(bp))
    })
    .await?;
    let st = bp.status.clone().ok_or_else(|| anyhow!("no status"))?;
    let data = condition_of(&st.conditions, "VolumeData");
    ensure!(
        data.as_ref().is_some_and(|c| c.0 == "True" && c.1 == "VolumesBackedUp"),
        "{data:?}"
    );
    let good = st.last_successful_backup.ok_or_else(|| anyhow!("no backup"))?;
    ensure!(good.volumes == Some(1), "volumes of {}: {:?}", good.name, good.volumes);
    ensure!(
        good.bytes.is_some_and(|b| b >= BIG as i64),
        "bytes of {}: {:?}",
        good.name,
        good.bytes
    );

    // Only ciphertext in the store: not the seed the small files hold, nor any 64-byte
    // stretch of the random file.
    for needle in [seed.as_bytes(), &random[BIG / 2..BIG / 2 + 64]] {
        let found = files_containing(&gw.store.dir, needle);
        ensure!(found.is_empty(), "plaintext in the store: {found:?}");
    }
    ensure!(
        !gw.store.stored_backups_of(&a).is_empty(),
        "the backups are under the agency's prefix: {:?}",
        gw.store.stored_backups_of(&a)
    );

    // A drill restores the contents into a scratch namespace and says so.
    api.patch(
        "nightly",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"govcloud.io/drill": "d1"}}})),
    )
    .await?;
    let bp = wait_for("drill finished", T, || async {
        let bp = api.get("nightly").await?;
        let done = bp
            .status
            .as_ref()
            .and_then(|s| s.last_drill.as_ref())
            .is_some_and(|d| d.trigger == "d1" && d.result != "Running");
        Ok(done.then_some(bp))
    })
    .await?;
    let st = bp.status.ok_or_else(|| anyhow!("no status"))?;
    let drill = st.last_drill.ok_or_else(|| anyhow!("no drill"))?;
    ensure!(drill.result == "Passed", "drill: {drill:?}");
    ensure!(drill.volumes == Some(1), "drill volumes: {drill:?}");
    ensure!(drill.message.contains("1 volumes"), "{}", drill.message);
    ensure!(
        st.drills.first().map(|d| &d.restore) == Some(&drill.restore),
        "history: {:?}",
        st.drills
    );

    // The system and its volume are lost.
    systems.delete("ledger", &DeleteParams::default()).await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(member.clone(), &ns);
    wait_for("system and claim gone", T, || async {
        Ok((systems.get_opt("ledger").await?.is_none() && pvcs.get_opt(claim).await?.is_none()).then_some(()))
    })
    .await?;
    wait_for("volume directory removed", T, || async {
        Ok((!dir.exists()).then_some(()))
    })
    .await?;

    // Recovery from the backup: the system comes back with every file.
    let asked = Instant::now();
    api.patch(
        "nightly",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"govcloud.io/restore": "r1", "govcloud.io/restore-backup": good.name}}}),
        ),
    )
    .await?;
    let restored = wait_for("recovery finished", T, || async {
        let bp = api.get("nightly").await?;
        let r = bp.status.and_then(|s| s.last_restore);
        Ok(r.filter(|r| r.trigger == "r1" && r.result != "Running"))
    })
    .await?;
    ensure!(restored.result == "Passed", "recovery: {restored:?}");
    ensure!(restored.volumes == Some(1), "recovery volumes: {restored:?}");
    wait_available(&systems, "ledger").await?;
    let rto = asked.elapsed();
    let dir = volume_dir(&member, &ns, claim).await?;
    let mut back = written_files(&dir).await?;
    // Velero's restore leaves a marker for its restore-wait init container in `.velero/`.
    let markers: Vec<String> = back.keys().filter(|k| k.starts_with(".velero/")).cloned().collect();
    ensure!(markers.len() <= 1, "Velero's markers: {markers:?}");
    for m in markers {
        back.remove(&m);
    }
    let mut differing = Vec::new();
    for (name, sum) in &sums {
        match back.get(*name) {
            Some(c) if sha256(c) == *sum && Some(c) == written.get(*name) => {}
            Some(_) => differing.push(format!("{name} (changed)")),
            None => differing.push(format!("{name} (missing)")),
        }
    }
    ensure!(
        differing.is_empty() && back.len() == written.len(),
        "{} of {} files differ after recovery (first: {:?}); {} files back",
        differing.len(),
        written.len(),
        differing.first(),
        back.len()
    );
    let figure = json!({"files": written.len(), "bytes": written.values().map(Vec::len).sum::<usize>(),
                        "rto_seconds": rto.as_secs_f64(), "backup_bytes": good.bytes});
    let _ = std::fs::write(figures_dir().join("volume-data-recovery.json"), figure.to_string());
    println!(
        "recovery of {} files ({} bytes) from {}: Available with its data {:.1}s after the request",
        written.len(),
        figure["bytes"],
        good.name,
        rto.as_secs_f64()
    );
    Ok(())
}
