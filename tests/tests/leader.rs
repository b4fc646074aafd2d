//! Leader election with two operator processes (the real binary) against the local control
//! plane: only the lease holder reconciles; when it is killed the other takes over.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use govcloud_tests::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

/// An operator process, killed (SIGKILL, by PID) when dropped.
struct Replica {
    child: std::process::Child,
    port: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(identity: &str, kubeconfig: &std::path::Path) -> Result<Replica> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(testbed_state().join(format!("{identity}.log")))?;
    let child = std::process::Command::new(operator_binary())
        .args(["run", "--leader-elect", "--identity", identity])
        .args([
            "--namespace",
            OPERATOR_NAMESPACE,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--daily-reports", "0", "--monthly-reports", "0"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(Replica { child, port })
}

async fn metrics(r: &Replica) -> Option<String> {
    process_metrics(r.port).await
}

fn value(text: &str, name: &str) -> f64 {
    metric_sum(text, name, "")
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() -> Result<()> {
    init_crypto();
    ensure_testbed()?;
    let hub = client(1).await?;
    install_crds(&hub).await?;
    ensure_namespace(&hub, OPERATOR_NAMESPACE).await?;
    // The binary under test (cargo test builds the library, not always the binary).
    let built = tokio::process::Command::new("cargo")
        .args(["build", "--quiet", "--bin", "govcloud-operator"])
        .current_dir(repo_root())
        .status()
        .await?;
    ensure!(built.success(), "cargo build --bin govcloud-operator failed");
    let leases: Api<Lease> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    let holder = || async {
        leases
            .get_opt("govcloud-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    // A lease left by an earlier run is removed (nothing else in the tests elects a
    // leader), so that A creates it as a first replica does.
    let _ = leases.delete("govcloud-operator", &Default::default()).await;
    let a_id = unique("replica-a");
    let b_id = unique("replica-b");
    // Both replicas run as the chart's ServiceAccount, as they do in production.
    let kubeconfig = operator_kubeconfig_file("leader-test").await?;
    let a = start(&a_id, &kubeconfig)?;
    wait_for("A leads", Duration::from_secs(60), || async {
        Ok((holder().await.as_deref() == Some(a_id.as_str())).then_some(()))
    })
    .await?;
    // Something to reconcile: a member cluster.
    create_test_cluster(&hub, &unique("grp"), "external", 3, 2, None).await?;
    let b = start(&b_id, &kubeconfig)?;
    wait_for("B serves metrics", Duration::from_secs(30), || async {
        Ok(metrics(&b).await)
    })
    .await?;
    // While A leads, B waits and reconciles nothing (no conflicting writes).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (ma, mb) = (
        metrics(&a).await.ok_or_else(|| anyhow!("A metrics"))?,
        metrics(&b).await.ok_or_else(|| anyhow!("B metrics"))?,
    );
    ensure!(value(&ma, "govcloud_leader") == 1.0 && value(&mb, "govcloud_leader") == 0.0);
    ensure!(
        value(&ma, "govcloud_controller_reconciles_total") > 0.0,
        "the leader reconciles"
    );
    ensure!(
        value(&mb, "govcloud_controller_reconciles_total") == 0.0
            && value(&mb, "govcloud_controller_child_applies_total") == 0.0,
        "the standby made no reconciles or writes"
    );
    // Kill the leader: B takes over within the lease time.
    let killed = Instant::now();
    drop(a);
    wait_for("B leads", Duration::from_secs(30), || async {
        Ok((holder().await.as_deref() == Some(b_id.as_str())).then_some(()))
    })
    .await?;
    wait_for("B reconciles", Duration::from_secs(30), || async {
        let m = metrics(&b).await.unwrap_or_default();
        Ok((value(&m, "govcloud_controller_reconciles_total") > 0.0).then_some(()))
    })
    .await?;
    let failover = killed.elapsed();
    println!(
        "leader failover: {:.1} s (lease 10 s, renewed every 2 s)",
        failover.as_secs_f64()
    );
    ensure!(failover <= Duration::from_secs(15), "failover took {failover:?}");
    drop(b);
    Ok(())
}
