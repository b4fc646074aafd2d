//! Volume data through Velero's file-system backup on dc1's real node (hack/velero.sh: the
//! node-agent DaemonSet, kopia, the region's object store on the host's 127.0.0.1): a pod
//! writes 1,000 files of random content into a local-path volume, a Backup with
//! `defaultVolumesToFsBackup` takes them, the namespace is deleted, a Restore brings it back,
//! and every file's sha256 on the new volume equals the original's. The writer only writes
//! into an empty volume (random content again would differ), so equal checksums can only
//! come from the restore.
//!
//! Also hostile: an ordinary pod on that node reaches the API server forward on the host
//! side of the node's link (the probe works) but not the object store ports there — only
//! the node's own network namespace (the node-agent and its data-path pods) has them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use govcloud_tests::*;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const T: Duration = Duration::from_secs(300);
const FILES: usize = 1000;
const BUSYBOX: &str = "registry.gov.cn/govcloud/busybox:1.35";
const APP: &str = "registry.gov.cn/govcloud/sample-app:1.0.0";
/// dc1's home region (hack/velero.sh) and its object store's port.
const BSL: &str = "region-beijing";
const STORE_PORT: u16 = 17000;

fn phase(o: &DynamicObject) -> String {
    o.data
        .pointer("/status/phase")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

async fn create_workload(c: &Client, ns: &str) -> Result<()> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), ns);
    pvcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "200Mi"}}}
        }))?,
    )
    .await?;
    // Random content per file (the kernel's uuid), written only into an empty volume.
    let script = format!(
        "if [ ! -e /data/.written ]; then i=0; while [ $i -lt {FILES} ]; do \
         echo \"file $i $(cat /proc/sys/kernel/random/uuid)\" > /data/f$i; i=$((i+1)); done; \
         : > /data/.written; fi; exec sleep 1000000"
    );
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "writer", "labels": {"app": "writer"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "writer", "image": BUSYBOX, "command": ["/bin/sh", "-c", script],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}
        }))?,
    )
    .await?;
    // The prober of the hostile check (no volume).
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "prober"},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "app", "image": APP, "ports": [{"containerPort": 8080}]}]}
        }))?,
    )
    .await?;
    Ok(())
}

/// The directory on the node of the volume bound to claim `data` in `ns` (a `local`
/// PersistentVolume of local-path), once the writer has finished.
async fn volume_dir(c: &Client, ns: &str) -> Result<PathBuf> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(c.clone());
    wait_for(&format!("{ns}/data bound and written"), T, || async {
        let Some(pv) = pvcs
            .get_opt("data")
            .await?
            .and_then(|p| p.spec.and_then(|s| s.volume_name))
            .filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let pv = pvs.get(&pv).await?;
        let spec = pv.spec.context("PersistentVolume without spec")?;
        ensure!(
            spec.host_path.is_none(),
            "local-path provisioned a hostPath volume (Velero skips those): the StorageClass lacks defaultVolumeType: local"
        );
        let dir = PathBuf::from(spec.local.map(|l| l.path).context("the volume is not a local volume")?);
        Ok(dir.join(".written").exists().then_some(dir))
    })
    .await
}

/// sha256 of f0..f999 in `dir` (coreutils' sha256sum on the host).
fn checksums(dir: &Path) -> Result<BTreeMap<String, String>> {
    let names: Vec<String> = (0..FILES).map(|i| format!("f{i}")).collect();
    let out = std::process::Command::new("sha256sum")
        .current_dir(dir)
        .args(&names)
        .output()
        .context("running sha256sum")?;
    ensure!(
        out.status.success(),
        "sha256sum in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sums = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (sum, name) = line
            .split_once("  ")
            .ok_or_else(|| anyhow!("sha256sum said {line:?}"))?;
        sums.insert(name.to_string(), sum.to_string());
    }
    Ok(sums)
}

/// Waits for a Velero object's terminal phase; Ok only for Completed.
async fn wait_completed(api: &Api<DynamicObject>, name: &str) -> Result<()> {
    let last = wait_for(&format!("{} {name} finished", api.resource_url()), T, || async {
        let o = api.get(name).await?;
        let p = phase(&o);
        Ok(matches!(
            p.as_str(),
            "Completed" | "Failed" | "PartiallyFailed" | "FailedValidation"
        )
        .then_some(o))
    })
    .await?;
    ensure!(
        phase(&last) == "Completed",
        "{name} ended {}: {}",
        phase(&last),
        serde_json::to_string(&last.data["status"]).unwrap_or_default()
    );
    Ok(())
}

/// The PodVolumeBackups/-Restores labelled `label`: all Completed with bytes done; their count.
async fn volume_items(c: &Client, kind: &str, plural: &str, label: &str) -> Result<usize> {
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), "velero", &velero_resource(kind, plural));
    let items = api.list(&ListParams::default().labels(label)).await?.items;
    ensure!(!items.is_empty(), "no {kind} labelled {label}");
    for i in &items {
        let bytes = i
            .data
            .pointer("/status/progress/bytesDone")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        let name = i.metadata.name.clone().unwrap_or_default();
        ensure!(
            phase(i) == "Completed" && bytes > 0,
            "{kind} {name}: phase {} bytesDone {bytes}: {}",
            phase(i),
            serde_json::to_string(&i.data["status"]).unwrap_or_default()
        );
    }
    Ok(items.len())
}

async fn wait_pod_running(c: &Client, ns: &str, name: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    wait_for(&format!("{ns}/{name} Running on dc1-real"), T, || async {
        let Some(p) = pods.get_opt(name).await? else {
            return Ok(None);
        };
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if running {
            ensure!(node == "dc1-real", "{ns}/{name} runs on {node}, not on dc1-real");
        }
        Ok(running.then_some(()))
    })
    .await
}

/// Whether a TCP connection from `pod` to `host:port` opens (the sample app's probe, as in
/// packets.rs). An exec that fails is an error of the test, never "blocked".
async fn connects(ns: &str, pod: &str, host: &str, port: u16) -> Result<bool> {
    let kubectl = format!("{}/kubectl", hack_version("K8S_BIN")?);
    let url = format!("http://127.0.0.1:8080/connect?host={host}&port={port}");
    let out = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig_path(1))
        .args(["-n", ns, "exec", pod, "--", "/govcloud-sample-app", "probe", &url])
        .output()
        .await
        .context("running kubectl exec")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "exec in {ns}/{pod} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.contains("closed") {
        Ok(false)
    } else if stdout.contains("open") {
        Ok(true)
    } else {
        bail!("unexpected answer from {ns}/{pod}: {stdout}")
    }
}

#[tokio::test]
async fn file_system_backup_restores_every_file_of_a_volume_on_the_real_node() -> Result<()> {
    ensure_testbed()?;
    require_velero(1).await?;
    let c = client(1).await?;
    wait_node_agent(1, "dc1-real").await?;
    let ns = unique("fsb");
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"govcloud.io/test": "true"}}}))?,
    )
    .await?;
    testbed(&["pin-namespace", "dc1", &ns]).await?;
    create_workload(&c, &ns).await?;
    let t = Instant::now();
    let dir = volume_dir(&c, &ns).await?;
    wait_pod_running(&c, &ns, "writer").await?;
    let before = checksums(&dir)?;
    ensure!(before.len() == FILES, "{} checksums, not {FILES}", before.len());
    let distinct: std::collections::BTreeSet<&String> = before.values().collect();
    ensure!(distinct.len() == FILES, "only {} distinct contents", distinct.len());
    eprintln!("{FILES} files written in {:?} ({})", t.elapsed(), dir.display());

    // Hostile: an ordinary pod on the node reaches the API server forward (the probe works)
    // but not the host's store ports at the same address.
    wait_pod_running(&c, &ns, "prober").await?;
    let api = server_url(1)?;
    let api_port: u16 = api
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| anyhow!("no port in {api}"))?;
    ensure!(
        connects(&ns, "prober", "10.87.1.1", api_port).await?,
        "the probe cannot reach the API server forward 10.87.1.1:{api_port}: it proves nothing"
    );
    for port in [STORE_PORT, HOST_STORE_PORTS.0, HOST_STORE_PORTS.1] {
        ensure!(
            !connects(&ns, "prober", "10.87.1.1", port).await?,
            "an ordinary pod on dc1-real reached the host's 127.0.0.1:{port} through 10.87.1.1"
        );
    }

    let backups: Api<DynamicObject> = Api::namespaced_with(c.clone(), "velero", &velero_resource("Backup", "backups"));
    let name = unique("fsb-backup");
    let t = Instant::now();
    backups
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "velero.io/v1", "kind": "Backup",
                "metadata": {"name": name, "namespace": "velero"},
                "spec": {"includedNamespaces": [ns], "defaultVolumesToFsBackup": true,
                         "snapshotVolumes": false, "storageLocation": BSL, "ttl": "2h"}
            }))?,
        )
        .await?;
    wait_completed(&backups, &name).await?;
    let pvbs = volume_items(
        &c,
        "PodVolumeBackup",
        "podvolumebackups",
        &format!("velero.io/backup-name={name}"),
    )
    .await?;
    eprintln!(
        "backup {name}: Completed in {:?}, {pvbs} PodVolumeBackup(s)",
        t.elapsed()
    );

    let t = Instant::now();
    nss.delete(&ns, &DeleteParams::default()).await?;
    wait_for(&format!("namespace {ns} gone"), T, || async {
        Ok(nss.get_opt(&ns).await?.is_none().then_some(()))
    })
    .await?;
    ensure!(
        !dir.exists(),
        "the volume's directory {} outlived its claim",
        dir.display()
    );
    eprintln!("namespace deleted in {:?}", t.elapsed());

    let restores: Api<DynamicObject> =
        Api::namespaced_with(c.clone(), "velero", &velero_resource("Restore", "restores"));
    let rname = unique("fsb-restore");
    let t = Instant::now();
    restores
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "velero.io/v1", "kind": "Restore",
                "metadata": {"name": rname, "namespace": "velero"},
                "spec": {"backupName": name}
            }))?,
        )
        .await?;
    wait_completed(&restores, &rname).await?;
    let pvrs = volume_items(
        &c,
        "PodVolumeRestore",
        "podvolumerestores",
        &format!("velero.io/restore-name={rname}"),
    )
    .await?;
    eprintln!(
        "restore {rname}: Completed in {:?}, {pvrs} PodVolumeRestore(s)",
        t.elapsed()
    );

    let restored = volume_dir(&c, &ns).await?;
    ensure!(
        restored != dir,
        "the restored claim is bound to the old volume directory"
    );
    wait_pod_running(&c, &ns, "writer").await?;
    let after = checksums(&restored)?;
    let differ: Vec<&String> = before.keys().filter(|k| after.get(*k) != before.get(*k)).collect();
    ensure!(
        differ.is_empty(),
        "{} of {FILES} files differ after the restore, e.g. {:?}",
        differ.len(),
        differ.iter().take(5).collect::<Vec<_>>()
    );
    eprintln!("all {FILES} checksums equal after the restore ({})", restored.display());
    nss.delete(&ns, &DeleteParams::default()).await?;
    Ok(())
}
