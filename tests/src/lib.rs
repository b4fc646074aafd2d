//! Harness for the integration tests: the shared local control plane (started by
//! `hack/testbed.sh`), one in-process operator shared by every test of a binary,
//! unique names per test, and polling helpers with deadlines (never fixed sleeps).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

pub mod proxy;

/// Namespace of the operator on the hub in tests.
pub const OPERATOR_NAMESPACE: &str = "govcloud-system";

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// State directory of the testbed (kubeconfigs per cluster).
pub fn testbed_state() -> PathBuf {
    if let Ok(s) = std::env::var("TESTBED_STATE") {
        return PathBuf::from(s);
    }
    let cache = std::env::var("GOVCLOUD_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/govcloud")
    });
    cache.join("testbed")
}

/// Kubeconfig path of testbed cluster `n` (1 = hub).
pub fn kubeconfig_path(n: usize) -> PathBuf {
    if n == 1
        && let Ok(p) = std::env::var("GOVCLOUD_HUB_KUBECONFIG")
    {
        return PathBuf::from(p);
    }
    if n == 2
        && let Ok(p) = std::env::var("GOVCLOUD_MEMBER_KUBECONFIG")
    {
        return PathBuf::from(p);
    }
    testbed_state().join(format!("dc{n}")).join("kubeconfig")
}

static TESTBED: OnceLock<Result<(), String>> = OnceLock::new();

/// Makes sure the local control plane runs: starts it with `hack/testbed.sh up` when
/// its kubeconfigs are missing (the script is idempotent and reuses a running one).
pub fn ensure_testbed() -> Result<()> {
    TESTBED
        .get_or_init(|| {
            if (1..=testbed_clusters()).all(|n| kubeconfig_path(n).exists()) {
                return Ok(());
            }
            let status = Command::new("bash")
                .arg(repo_root().join("hack/testbed.sh"))
                .arg("up")
                .env("TESTBED_CLUSTERS", testbed_clusters().to_string())
                .status()
                .map_err(|e| format!("cannot run hack/testbed.sh: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("hack/testbed.sh up failed: {status}"))
            }
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// The rustls crypto provider used by the clients of the tests.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for testbed cluster `n`, created on the calling runtime.
pub async fn client(n: usize) -> Result<Client> {
    ensure_testbed()?;
    init_crypto();
    let path = kubeconfig_path(n);
    let kc = Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// A client for cluster `n` that impersonates `user` in `groups`.
pub async fn impersonating(n: usize, user: &str, groups: &[&str]) -> Result<Client> {
    ensure_testbed()?;
    init_crypto();
    let kc = Kubeconfig::read_from(kubeconfig_path(n))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Ok(Client::try_from(config)?)
}

/// A name unique to this test run: `prefix-<pid hex>-<counter>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: Mutex<u32> = Mutex::new(0);
    let n = COUNTER.lock().map(|mut c| {
        *c += 1;
        *c
    });
    let n = n.unwrap_or(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}{:x}-{n}", std::process::id() % 4096, nanos % 4096)
}

/// Polls `check` every 250 ms until it returns `Ok(Some(v))` or the deadline passes.
/// The last error or "still None" is reported on timeout.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("condition not met yet");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Installs the project's CRDs on cluster `client` (server-side apply) and waits until
/// they are Established.
pub async fn install_crds(client: &Client) -> Result<()> {
    for (_, crd) in govcloud_api::all_crds() {
        apply_crd(client, &crd).await?;
    }
    Ok(())
}

/// Applies a CRD (server-side) and waits until it is Established.
pub async fn apply_crd(client: &Client, crd: &CustomResourceDefinition) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::apply("govcloud-tests").force(), &Patch::Apply(crd))
        .await?;
    wait_for(&format!("CRD {name} Established"), Duration::from_secs(30), || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let crd = api.get(&name).await?;
            let ok = crd
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            Ok(ok.then_some(()))
        }
    })
    .await?;
    Ok(())
}

/// Version of the Gateway API whose standard CRDs the tests install (from the Go module proxy).
pub const GATEWAY_API_VERSION: &str = "v1.4.1";

/// Installs the Gateway API's standard Gateway, GatewayClass and HTTPRoute CRDs on a cluster:
/// `go mod download` fetches `sigs.k8s.io/gateway-api` into the module cache (outside the
/// repository) and the CRDs are applied from there.
pub async fn install_gateway_api(client: &Client) -> Result<()> {
    let out = std::process::Command::new("go")
        .args([
            "mod",
            "download",
            "-json",
            &format!("sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}"),
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "go mod download sigs.k8s.io/gateway-api failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let dir = info["Dir"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("go mod download printed no Dir"))?;
    for kind in ["gatewayclasses", "gateways", "httproutes"] {
        let path = format!("{dir}/config/crd/standard/gateway.networking.k8s.io_{kind}.yaml");
        let text = std::fs::read_to_string(&path)?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text)?;
        apply_crd(client, &crd).await?;
    }
    Ok(())
}

/// Creates a namespace if it does not exist.
pub async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Stores `kubeconfig_yaml` in Secret `name` of the operator namespace on the hub.
pub async fn put_kubeconfig_secret(hub: &Client, name: &str, kubeconfig_yaml: &str) -> Result<()> {
    ensure_namespace(hub, OPERATOR_NAMESPACE).await?;
    let api: Api<Secret> = Api::namespaced(hub.clone(), OPERATOR_NAMESPACE);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}},
        "stringData": {"kubeconfig": kubeconfig_yaml},
    }))?;
    Api::patch(
        &api,
        name,
        &PatchParams::apply("govcloud-tests").force(),
        &Patch::Apply(&secret),
    )
    .await?;
    Ok(())
}

/// The kubeconfig the operator gets for testbed cluster `n`, as YAML, with its server URL
/// optionally replaced. For a member (n ≥ 2) it authenticates as the operator's identity
/// there (the ServiceAccount of the member manifest, see [`member_token`]), as in production,
/// so that the suite proves the member manifest's grants are enough: the member's audit log
/// then holds the operator's requests for hack/check-rbac.py. `GOVCLOUD_TEST_MEMBER_ADMIN=1`
/// gives the admin certificate instead (for debugging only). The hub's is its admin kubeconfig.
pub fn kubeconfig_yaml(n: usize, server: Option<&str>) -> Result<String> {
    let text = std::fs::read_to_string(kubeconfig_path(n))?;
    let mut value: serde_yaml::Value = serde_yaml::from_str(&text)?;
    if let Some(server) = server
        && let Some(clusters) = value.get_mut("clusters").and_then(|c| c.as_sequence_mut())
    {
        for c in clusters {
            if let Some(cluster) = c.get_mut("cluster").and_then(|c| c.as_mapping_mut()) {
                cluster.insert("server".into(), server.into());
            }
        }
    }
    if n >= 2 && !std::env::var("GOVCLOUD_TEST_MEMBER_ADMIN").is_ok_and(|v| v == "1") {
        let token = member_token(n)?;
        let user: serde_yaml::Value = serde_yaml::to_value(serde_json::json!(
            [{"name": OPERATOR_SERVICE_ACCOUNT, "user": {"token": token}}]
        ))?;
        if let Some(m) = value.as_mapping_mut() {
            m.insert("users".into(), user);
        }
        if let Some(contexts) = value.get_mut("contexts").and_then(|c| c.as_sequence_mut()) {
            for c in contexts {
                if let Some(ctx) = c.get_mut("context").and_then(|c| c.as_mapping_mut()) {
                    ctx.insert("user".into(), OPERATOR_SERVICE_ACCOUNT.into());
                }
            }
        }
    }
    Ok(serde_yaml::to_string(&value)?)
}

static MEMBER_TOKENS: Mutex<std::collections::BTreeMap<usize, String>> = Mutex::new(std::collections::BTreeMap::new());

/// A token (24 h) of the operator's identity on testbed member `n`: the ServiceAccount
/// govcloud-system/govcloud-operator bound to the chart's member manifest, prepared once per
/// test binary by `hack/chart.sh member` (what docs/install.md tells a platform engineer to do
/// on a member).
pub fn member_token(n: usize) -> Result<String> {
    let mut tokens = MEMBER_TOKENS
        .lock()
        .map_err(|_| anyhow!("member token cache poisoned"))?;
    if let Some(t) = tokens.get(&n) {
        return Ok(t.clone());
    }
    let out = Command::new("bash")
        .arg(repo_root().join("hack/chart.sh"))
        .arg("member")
        .arg(kubeconfig_path(n))
        .output()
        .map_err(|e| anyhow!("cannot run hack/chart.sh member: {e}"))?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || token.is_empty() {
        bail!(
            "hack/chart.sh member (dc{n}) failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tokens.insert(n, token.clone());
    Ok(token)
}

/// The API server URL of testbed cluster `n`.
pub fn server_url(n: usize) -> Result<String> {
    let kc = Kubeconfig::read_from(kubeconfig_path(n))?;
    kc.clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .ok_or_else(|| anyhow!("no server in kubeconfig of dc{n}"))
}

/// Clusters the tests need: dc1 (hub), dc2 (member), dc3 (a member that fault tests stop
/// and restart, so that no other test is disturbed).
pub fn testbed_clusters() -> usize {
    std::env::var("TESTBED_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(3)
}

/// Runs `hack/testbed.sh <args>` and fails with its output when it fails.
pub async fn testbed(args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new("bash")
        .arg(repo_root().join("hack/testbed.sh"))
        .args(args)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "hack/testbed.sh {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Number of KWOK nodes per cluster the testbed was started with.
pub fn testbed_nodes() -> usize {
    std::env::var("TESTBED_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// A running in-process operator shared by every test of one test binary.
pub struct Operator {
    /// Address of /metrics, /healthz and /readyz.
    pub addr: std::net::SocketAddr,
}

static OPERATOR: OnceLock<Result<Operator, String>> = OnceLock::new();

/// Starts the operator once per test binary (on its own thread and runtime, so that it
/// outlives each test's runtime), after installing the CRDs on the hub.
pub fn operator() -> Result<&'static Operator> {
    OPERATOR
        .get_or_init(|| start_operator().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("operator failed to start: {e}"))
}

fn start_operator() -> Result<Operator> {
    ensure_testbed()?;
    let (tx, rx) = std::sync::mpsc::channel::<Result<std::net::SocketAddr, String>>();
    std::thread::Builder::new().name("operator".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,govcloud=info")),
                )
                .with_test_writer()
                .try_init();
            let setup = async {
                let admin = client(1).await?;
                install_crds(&admin).await?;
                remove_leftovers(&admin).await;
                ensure_namespace(&admin, OPERATOR_NAMESPACE).await?;
                let hub = operator_client().await?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                Ok::<_, anyhow::Error>((hub, listener, addr))
            };
            match setup.await {
                Ok((hub, listener, addr)) => {
                    let _ = tx.send(Ok(addr));
                    let settings = govcloud::controller::Settings {
                        namespace: OPERATOR_NAMESPACE.into(),
                        probe_interval: Duration::from_secs(3),
                        max_probe_backoff: Duration::from_secs(4),
                        member_timeout: Duration::from_secs(3),
                        // Few scheduled reports, so that the tests see retention at work.
                        daily_reports: 2,
                        monthly_reports: 2,
                        ..Default::default()
                    };
                    if let Err(e) = govcloud::runtime::run(hub, settings, listener, std::future::pending()).await {
                        eprintln!("operator stopped: {e}");
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:#}")));
                }
            }
        });
    })?;
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .map_err(|e| anyhow!("operator did not start: {e}"))?
        .map_err(|e| anyhow!(e))?;
    // Wait until /readyz says ready: CRDs established, hub policies installed, caches synced.
    let start = Instant::now();
    while !readyz_ok(addr) {
        if start.elapsed() > Duration::from_secs(120) {
            bail!("operator at {addr} did not become ready within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Operator { addr })
}

/// Name of the chart's ServiceAccount (release `govcloud-operator`).
pub const OPERATOR_SERVICE_ACCOUNT: &str = "govcloud-operator";

static CHART: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs (or upgrades) the Helm chart into the hub once per test binary with
/// `hack/chart.sh install` (Helm built from its Go module, cached).
pub fn install_chart() -> Result<()> {
    ensure_testbed()?;
    CHART
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo_root().join("hack/chart.sh"))
                .arg("install")
                // The suite also registers the hub as a workload cluster (no kubeconfigSecret).
                .args(["--set", "rbac.hubIsMember=true"])
                .env("KUBECONFIG", kubeconfig_path(1))
                .output()
                .map_err(|e| format!("cannot run hack/chart.sh: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "hack/chart.sh install failed: {}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// A bearer token of `service_account` in `namespace` on the hub (TokenRequest, 1 hour).
pub async fn service_account_token(namespace: &str, service_account: &str) -> Result<String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let admin = client(1).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(admin, namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = sas
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for {namespace}/{service_account}"))?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| anyhow!("TokenRequest for {namespace}/{service_account} returned no token"))
}

/// A client for the hub that authenticates with `token` instead of the admin certificate.
pub async fn token_client(token: &str) -> Result<Client> {
    init_crypto();
    let config = Config::from_custom_kubeconfig(token_kubeconfig(token)?, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Writes a kubeconfig for the hub that authenticates with the chart ServiceAccount's
/// token (for operator processes started by the tests); returns its path.
pub async fn operator_kubeconfig_file(name: &str) -> Result<PathBuf> {
    install_chart()?;
    let token = service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await?;
    let kc = token_kubeconfig(&token)?;
    let path = testbed_state().join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kc)?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(path)
}

/// The hub's kubeconfig with its user replaced by a bearer token.
pub fn token_kubeconfig(token: &str) -> Result<Kubeconfig> {
    let path = kubeconfig_path(1);
    let mut kc = Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    let yaml = serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "users": [{"name": "token", "user": {"token": token}}]
    }))?;
    let user = Kubeconfig::from_yaml(&yaml)?;
    kc.auth_infos = user.auth_infos;
    for ctx in &mut kc.contexts {
        if let Some(c) = ctx.context.as_mut() {
            c.user = Some("token".into());
        }
    }
    Ok(kc)
}

/// The identity the in-process operator runs under: the chart's ServiceAccount (the
/// chart is installed first; a TokenRequest gives its token), so that every scenario
/// proves the chart's RBAC is enough. `GOVCLOUD_TEST_OPERATOR_ADMIN=1` runs it with the
/// admin certificate instead (for debugging only).
pub async fn operator_client() -> Result<Client> {
    if std::env::var("GOVCLOUD_TEST_OPERATOR_ADMIN").is_ok_and(|v| v == "1") {
        return client(1).await;
    }
    install_chart()?;
    let token = service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await?;
    token_client(&token).await
}

fn readyz_ok(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

/// GETs a path of the operator's HTTP endpoint, returning status code and body.
pub async fn operator_get(path: &str) -> Result<(u16, String)> {
    let op = operator()?;
    let resp = reqwest::get(format!("http://{}{}", op.addr, path)).await?;
    let code = resp.status().as_u16();
    Ok((code, resp.text().await?))
}

/// A unique, valid unified social credit code (check character computed per GB 32100-2015).
///
/// Consecutive numbers from a base drawn once per process (from its pid and start time): no
/// two calls of one process collide, and two processes collide only if their bases fall
/// within as many codes of each other as they make. (A base that moved with the clock on
/// every call, as before, let a benchmark's 200 agencies share a code now and then.)
pub fn unique_credit_code() -> String {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        (std::process::id() as u64).wrapping_mul(1_000_003).wrapping_add(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        )
    });
    let seed = base.wrapping_add(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let digits = format!("{:09}", seed % 1_000_000_000);
    let prefix = format!("11100000{digits}");
    match govcloud_core::credit_code::check_char(&prefix) {
        Ok(c) => format!("{prefix}{c}"),
        Err(_) => format!("{prefix}0"),
    }
}

/// A TenancyRequest for an agency cloud as [`agency_cloud`] makes it (level 2, external,
/// one environment), requested by `requested_by`, labelled with the test group (so that a
/// test can select its own requests, as `hub-backup --selector` does).
pub fn tenancy_request(name: &str, requested_by: &str, group: &str) -> Result<govcloud_api::TenancyRequest> {
    let cloud = agency_cloud(name, 2, "external", &[("prod", "2", "4Gi")], group)["spec"].clone();
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "TenancyRequest",
        "metadata": {"name": name, "labels": {"govcloud.io/test-group": group, "govcloud.io/test": "true"}},
        "spec": {"cloud": cloud, "justification": "Host the municipal open-data portal and its database.", "requestedBy": requested_by}
    }))?)
}

/// A decision on a TenancyRequest as it is at `generation` (the one the approver reviewed).
pub fn tenancy_decision(action: &str, by: &str, generation: i64) -> Patch<serde_json::Value> {
    Patch::Merge(serde_json::json!({"spec": {"decision": {
        "action": action, "decidedBy": by, "reason": "Checked against the annual plan.",
        "reviewedGeneration": generation
    }}}))
}

/// An AgencyCloud manifest (JSON) for tests: `quota` per environment as (cpu, memory).
pub fn agency_cloud(
    name: &str,
    level: u8,
    zone: &str,
    envs: &[(&str, &str, &str)],
    selector: &str,
) -> serde_json::Value {
    let environments: Vec<serde_json::Value> = envs
        .iter()
        .map(|(n, cpu, mem)| serde_json::json!({"name": n, "quota": {"cpu": cpu, "memory": mem}}))
        .collect();
    serde_json::json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud",
        "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}},
        "spec": {
            "agency": {"displayName": format!("测试机关 {name}"), "shortName": name, "creditCode": unique_credit_code(),
                       "adminLevel": "municipal", "contact": {"name": "测试", "email": "ops@example.gov.cn"}},
            "securityLevel": level, "zone": zone, "environments": environments,
            "owners": [{"kind": "Group", "name": format!("{name}-owners")}],
            "viewers": [{"kind": "Group", "name": format!("{name}-viewers")}],
            "allowedRegistries": ["registry.gov.cn"],
            "domains": [test_domain(name)],
            "placement": {"clusterSelector": {"govcloud.io/test-group": selector}},
            "deletionPolicy": "Delete"
        }
    })
}

/// The operator binary built with this test binary (`cargo test --workspace` builds it into
/// the same profile directory: `<target>/<profile>/deps/<test>` → `<target>/<profile>`),
/// wherever the target directory is (`CARGO_TARGET_DIR`; `hack/test.sh` keeps it outside
/// the repository so that a fresh clone reuses the build).
pub fn operator_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(|deps| deps.parent())
                .map(|p| p.join("govcloud-operator"))
        })
        .filter(|p| p.exists())
        .unwrap_or_else(|| repo_root().join("target/debug/govcloud-operator"))
}

/// A binary of the workspace: `cargo build -p PACKAGE` (a no-op when up to date) into the
/// target directory of this test binary (`<target>/<profile>/deps/<test>` →
/// `<target>/<profile>/BIN`), once per test binary and package.
pub fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, std::result::Result<PathBuf, String>>>> =
        OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| anyhow!("a build of {package} panicked"))?;
    let result = built
        .entry(package.to_string())
        .or_insert_with(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .ok_or_else(|| format!("unexpected test binary path {}", exe.display()))?
                .to_path_buf();
            let target_dir = profile_dir
                .parent()
                .ok_or_else(|| format!("unexpected profile directory {}", profile_dir.display()))?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-q", "-p", package, "--target-dir"])
                .arg(target_dir)
                .current_dir(repo_root());
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd
                .status()
                .map_err(|e| format!("cannot run cargo build -p {package}: {e}"))?;
            if !status.success() {
                return Err(format!("cargo build -p {package} failed: {status}"));
            }
            let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
            if path.exists() {
                Ok(path)
            } else {
                Err(format!("{} was not built", path.display()))
            }
        })
        .clone();
    result.map_err(|e| anyhow!(e))
}

/// (status, reason, message) of condition `type_` in `conditions`, if present.
pub fn condition_of(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until AgencyCloud `name` is `Ready`.
pub async fn wait_agency_ready(hub: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<govcloud_api::AgencyCloud> = Api::all(hub.clone());
    wait_for(&format!("agency {name} Ready"), timeout, || async {
        let ac = api.get(name).await?;
        Ok(ac
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            .then_some(()))
    })
    .await
}

/// The DNS domain test agency `agency` is given (hosts of its systems are under it).
pub fn test_domain(agency: &str) -> String {
    format!("{agency}.example.gov.cn")
}

/// A short unique DNS name (≤ 20 characters, starting with a letter) for agencies.
pub fn unique_short(prefix: &str) -> String {
    let full = unique(prefix);
    let mut s: String = full.chars().take(20).collect();
    while s.ends_with('-') {
        s.pop();
    }
    s
}

/// Deletes test objects left by earlier runs (labelled `govcloud.io/test=true`), so that a
/// failed run does not slow down the next one. Runs before any test of this binary uses
/// the operator.
async fn remove_leftovers(hub: &Client) {
    use govcloud_api::{AgencyCloud, DataCenterCluster};
    let lp = kube::api::ListParams::default().labels("govcloud.io/test=true");
    let dp = kube::api::DeleteParams::default();
    let acs: Api<AgencyCloud> = Api::all(hub.clone());
    // Test clouds: labelled by the tests, or provisioned from requests in test namespaces.
    let from_requests = acs
        .list(&kube::api::ListParams::default().labels("govcloud.io/tenancy-request"))
        .await;
    let from_requests = from_requests
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| {
            a.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("govcloud.io/tenancy-request"))
                .is_some_and(|v| v.starts_with("requests-"))
        });
    let labelled = acs.list(&lp).await.map(|l| l.items).unwrap_or_default();
    {
        for a in labelled.into_iter().chain(from_requests).filter(|a| stale(&a.metadata)) {
            let name = a.metadata.name.clone().unwrap_or_default();
            let _ = acs.delete(&name, &dp).await;
            // Leftovers may sit on clusters that no longer exist: release them.
            let release = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
            let _ = acs.patch(&name, &PatchParams::default(), &release).await;
        }
    }
    let dccs: Api<DataCenterCluster> = Api::all(hub.clone());
    for d in dccs.list(&lp).await.map(|l| l.items).unwrap_or_default() {
        if stale(&d.metadata)
            && let Some(name) = d.metadata.name.as_deref()
        {
            let _ = dccs.delete(name, &dp).await;
        }
    }
    let locations: Api<govcloud_api::BackupLocation> = Api::all(hub.clone());
    for l in locations.list(&lp).await.map(|l| l.items).unwrap_or_default() {
        if stale(&l.metadata)
            && let Some(name) = l.metadata.name.as_deref()
        {
            let _ = locations.delete(name, &dp).await;
        }
    }
}

/// Left by an earlier run: older than any test binary runs (15 minutes), so that a test
/// binary started while another runs (two developers, an editor's test runner) does not
/// delete the other's objects.
fn stale(meta: &kube::api::ObjectMeta) -> bool {
    meta.creation_timestamp.as_ref().is_none_or(|t| {
        let age = jiff::Timestamp::now().duration_since(t.0);
        age > jiff::SignedDuration::from_secs(15 * 60)
    })
}

/// Registers testbed cluster `member` as a DataCenterCluster (through a kubeconfig Secret,
/// optionally pointed at `server`) labelled with the test `group`, without waiting for it.
pub async fn create_test_cluster(
    hub: &Client,
    group: &str,
    zone: &str,
    level: u8,
    member: usize,
    server: Option<&str>,
) -> Result<String> {
    create_test_cluster_in(hub, group, "r1", zone, level, member, server).await
}

/// As `create_test_cluster`, in a given region.
pub async fn create_test_cluster_in(
    hub: &Client,
    group: &str,
    region: &str,
    zone: &str,
    level: u8,
    member: usize,
    server: Option<&str>,
) -> Result<String> {
    use govcloud_api::DataCenterCluster;
    let name = unique("dc");
    put_kubeconfig_secret(hub, &name, &kubeconfig_yaml(member, server)?).await?;
    let dcc: DataCenterCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "DataCenterCluster",
        "metadata": {"name": name, "labels": {"govcloud.io/test-group": group, "govcloud.io/test": "true"}},
        "spec": {"region": region, "zone": zone, "maxSecurityLevel": level, "kubeconfigSecret": {"name": name}}
    }))?;
    Api::<DataCenterCluster>::all(hub.clone())
        .create(&PostParams::default(), &dcc)
        .await?;
    Ok(name)
}

/// A value of `hack/versions.sh` (e.g. `S3S_FS_BIN`).
pub fn hack_version(var: &str) -> Result<String> {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source hack/versions.sh && printf %s \"${var}\""))
        .current_dir(repo_root())
        .output()?;
    let v = String::from_utf8(out.stdout)?;
    anyhow::ensure!(!v.is_empty(), "hack/versions.sh does not set {var}");
    Ok(v)
}

/// Access key of the tests' object stores.
pub const S3_ACCESS_KEY: &str = "govcloud-test";
/// Secret key of the tests' object stores.
pub const S3_SECRET_KEY: &str = "govcloud-test-secret";

/// First and last port of the host's 127.0.0.1 that the testbed's real nodes reach as their
/// own 127.0.0.1 (`TESTBED_HOST_PORTS` of hack/realnode.sh): Velero's node-agent there reads
/// the same BackupStorageLocation URLs as the Velero servers on the host. 17000 and 17001
/// are hack/velero.sh's region stores.
pub const HOST_STORE_PORTS: (u16, u16) = (17002, 17099);

/// A free port on 127.0.0.1 in [`HOST_STORE_PORTS`] for a test's store or gateway, never one
/// this process handed out before (a stopped store is resumed on its port). Starts at an
/// offset of the process id, so that two test processes seldom try the same ports.
pub fn host_store_port() -> Result<u16> {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let (first, last) = HOST_STORE_PORTS;
    let span = u32::from(last - first) + 1;
    let mut given = GIVEN.lock().map_err(|_| anyhow!("host store port registry poisoned"))?;
    let start = std::process::id() % span;
    for i in 0..span {
        let Ok(port) = u16::try_from(u32::from(first) + (start + i) % span) else {
            continue;
        };
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    bail!(
        "no free port on 127.0.0.1 in {first}..={last} for a test's object store (stop what listens there, \
         or fewer stores at once)"
    )
}

/// A test's own S3-compatible object store (s3s-fs, built by hack/build-velero.sh) on
/// 127.0.0.1 (a port in [`HOST_STORE_PORTS`]), with one bucket `backups`. It can be stopped and started again on the same
/// port and data; it is stopped by PID when dropped.
pub struct ObjectStore {
    /// Port it listens on.
    pub port: u16,
    /// Its data directory (a bucket is a directory, an object a file).
    pub dir: PathBuf,
    child: std::sync::Mutex<Option<std::process::Child>>,
}

impl ObjectStore {
    /// Starts a store named `name`: its data under the testbed state directory when a
    /// testbed is up (removed with it), else under the system's temporary directory — a
    /// test without a testbed (tests/tests/gateway.rs) must not create the testbed's
    /// directory, which `hack/testbed.sh up` then refuses as not its own.
    pub fn start(name: &str) -> Result<ObjectStore> {
        let state = testbed_state();
        let base = if state.join(".govcloud-testbed").exists() {
            state
        } else {
            std::env::temp_dir().join("govcloud-tests")
        };
        let dir = base.join("test-stores").join(name);
        std::fs::create_dir_all(dir.join("backups"))?;
        let port = host_store_port()?;
        let store = ObjectStore {
            port,
            dir,
            child: std::sync::Mutex::new(None),
        };
        store.resume()?;
        Ok(store)
    }

    /// The S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An AWS credentials file for it (the `cloud` key Velero reads).
    pub fn credentials() -> String {
        format!("[default]\naws_access_key_id={S3_ACCESS_KEY}\naws_secret_access_key={S3_SECRET_KEY}\n")
    }

    /// Starts (again) the server process and waits until it accepts connections.
    pub fn resume(&self) -> Result<()> {
        let bin = format!("{}/bin/s3s-fs", hack_version("S3S_FS_BIN")?);
        let log = std::fs::File::create(self.dir.with_extension("log"))?;
        let child = std::process::Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&self.dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow!("cannot start {bin} (run hack/build-velero.sh): {e}"))?;
        if let Ok(mut g) = self.child.lock() {
            *g = Some(child);
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("object store on port {} did not start", self.port)
    }

    /// Stops the server process (by its PID); the data stays.
    pub fn stop(&self) {
        if let Ok(mut g) = self.child.lock()
            && let Some(mut c) = g.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Names of the backups stored (directories under `backups/backups/`).
    pub fn stored_backups(&self) -> Vec<String> {
        self.stored_backups_of("")
    }

    /// Names of the backups stored under a Velero prefix (`backups/<prefix>/backups/`; a
    /// per-agency location's prefix is the agency).
    pub fn stored_backups_of(&self, prefix: &str) -> Vec<String> {
        std::fs::read_dir(self.dir.join("backups").join(prefix).join("backups"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        self.stop();
        // A store outside a testbed leaves nothing behind (inside one, `down` removes it):
        // its data, its log and the files of a gateway in front of it.
        if self.dir.starts_with(std::env::temp_dir().join("govcloud-tests")) {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_dir_all(self.dir.with_extension("gateway"));
            let _ = std::fs::remove_file(self.dir.with_extension("log"));
        }
    }
}

/// Fails with a hint unless Velero runs against testbed cluster `n` (hack/velero.sh up).
pub async fn require_velero(n: usize) -> Result<()> {
    let c = client(n).await?;
    let ns: Api<Namespace> = Api::all(c.clone());
    let crds: Api<CustomResourceDefinition> = Api::all(c);
    if ns.get_opt("velero").await?.is_none() || crds.get_opt("schedules.velero.io").await?.is_none() {
        bail!("Velero is not installed on dc{n}: run `bash hack/velero.sh up` (hack/test.sh does)");
    }
    Ok(())
}

/// Where tests leave the figures of docs/reliability.md (hack/reliability-report.py reads them).
pub fn figures_dir() -> PathBuf {
    let dir = repo_root().join("target").join("reliability");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A BackupLocation as a test registers it: a plain store shared by all agencies, or an
/// encrypting gateway with each agency's own credentials and prefix.
pub enum Store<'a> {
    /// An object store directly: `encryption: None`, shared credentials (key `cloud`).
    Plain(&'a ObjectStore),
    /// govcloud-s3-gateway in front of a store: `encryption: SM4-GCM`, `perAgency: true`.
    Gateway(&'a Gateway),
}

/// Registers a BackupLocation `name` in `region` on the `zone` network on `store`, with its
/// credentials Secret `<name>-s3` in the operator's namespace.
pub async fn backup_location(hub: &Client, name: &str, region: &str, zone: &str, store: Store<'_>) -> Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    let (endpoint, creds, encryption, per_agency) = match store {
        Store::Plain(s) => (
            s.endpoint(),
            std::collections::BTreeMap::from([("cloud".to_string(), ObjectStore::credentials())]),
            "None",
            false,
        ),
        Store::Gateway(g) => (
            g.endpoint(),
            g.agencies
                .iter()
                .map(|a| (a.clone(), Gateway::credentials(a)))
                .collect(),
            "SM4-GCM",
            true,
        ),
    };
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{name}-s3"), "namespace": OPERATOR_NAMESPACE},
        "stringData": creds
    }))?;
    Api::<Secret>::namespaced(hub.clone(), OPERATOR_NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await?;
    let bl: govcloud_api::BackupLocation = serde_json::from_value(serde_json::json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "BackupLocation",
        "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}},
        "spec": {"region": region, "zone": zone, "encryption": encryption, "perAgency": per_agency,
                 "bucket": "backups", "endpoint": endpoint, "credentialsSecret": format!("{name}-s3")}
    }))?;
    Api::<govcloud_api::BackupLocation>::all(hub.clone())
        .create(&PostParams::default(), &bl)
        .await?;
    Ok(())
}

/// The encrypting S3 gateway (`govcloud-s3-gateway`) in front of an [`ObjectStore`] of its
/// own, on a 127.0.0.1 port in [`HOST_STORE_PORTS`], stopped by PID. Agency `x` has access key
/// [`Gateway::access_key`], secret `x-secret` and prefix `x/` of bucket `backups`.
pub struct Gateway {
    /// The store behind it.
    pub store: ObjectStore,
    /// Its directory: the KEK Secret (`kek/`), agency secrets, config, log.
    pub dir: PathBuf,
    /// Its configuration file.
    pub config: PathBuf,
    /// Port it listens on.
    pub port: u16,
    /// The agencies it serves.
    pub agencies: Vec<String>,
    child: Mutex<Option<std::process::Child>>,
}

impl Gateway {
    /// The gateway binary: `cargo build -p govcloud-gateway` (a no-op when up to date).
    pub fn binary() -> Result<PathBuf> {
        workspace_binary("govcloud-gateway", "govcloud-s3-gateway")
    }

    /// Access key of `agency`: its name upper-cased without dashes.
    pub fn access_key(agency: &str) -> String {
        agency.to_uppercase().replace('-', "")
    }

    /// Secret key of `agency`.
    pub fn secret_key(agency: &str) -> String {
        format!("{agency}-secret")
    }

    /// An AWS credentials file of `agency` for the gateway (what Velero reads).
    pub fn credentials(agency: &str) -> String {
        format!(
            "[default]\naws_access_key_id={}\naws_secret_access_key={}\n",
            Gateway::access_key(agency),
            Gateway::secret_key(agency)
        )
    }

    /// Starts a store and a gateway named `name` serving `agencies`.
    pub fn start(name: &str, agencies: &[&str]) -> Result<Gateway> {
        let store = ObjectStore::start(name)?;
        let dir = store.dir.with_extension("gateway");
        let _ = std::fs::remove_dir_all(&dir);
        govcloud_gateway::keys::FileKeyProvider::generate(&dir.join("kek"), "k1", true)?;
        let port = host_store_port()?;
        let mut entries = String::new();
        for a in agencies {
            let file = dir.join(format!("secret-{a}"));
            std::fs::write(&file, format!("{}\n", Gateway::secret_key(a)))?;
            entries.push_str(&format!(
                "- {{name: {a}, accessKey: {}, secretKeyFile: {}, bucket: backups, prefix: {a}/}}\n",
                Gateway::access_key(a),
                file.display()
            ));
        }
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\n\
                 upstream:\n  endpoint: {}\n  accessKey: {S3_ACCESS_KEY}\n  secretKey: {S3_SECRET_KEY}\n\
                 keyDir: {}\nkeyCacheSeconds: 0\nagencies:\n{entries}",
                store.endpoint(),
                dir.join("kek").display(),
            ),
        )?;
        let gw = Gateway {
            store,
            dir,
            config,
            port,
            agencies: agencies.iter().map(|a| a.to_string()).collect(),
            child: Mutex::new(None),
        };
        gw.resume()?;
        Ok(gw)
    }

    /// The S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (again) the gateway process and waits until it accepts connections.
    pub fn resume(&self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("gateway.log"))?;
        let child = Command::new(Gateway::binary()?)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        if let Ok(mut g) = self.child.lock() {
            *g = Some(child);
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "gateway on port {} did not start; see {}",
            self.port,
            self.dir.join("gateway.log").display()
        )
    }

    /// Stops the gateway process (by its PID); the store keeps running.
    pub fn stop(&self) {
        if let Ok(mut g) = self.child.lock()
            && let Some(mut c) = g.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `govcloud-s3-gateway --config CONFIG rotate ARGS`; its output.
    pub fn rotate(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(Gateway::binary()?)
            .arg("--config")
            .arg(&self.config)
            .arg("rotate")
            .args(args)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        anyhow::ensure!(out.status.success(), "rotate failed: {text}");
        Ok(text)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Files under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                hits.push(p);
            }
        }
    }
    hits
}

/// The /metrics text of an operator process listening on 127.0.0.1:`port`.
pub async fn process_metrics(port: u16) -> Option<String> {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The sum of the samples of metric `name` whose line contains `filter` ("" for all).
pub fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        // An empty f64 sum is -0.0.
        + 0.0
}

/// Waits (up to three minutes) for a Running pod of Velero's node-agent on `node` of
/// testbed cluster `n` (hack/velero.sh starts the DaemonSet; its pods start once
/// hack/images.sh has pushed the images).
pub async fn wait_node_agent(n: usize, node: &str) -> Result<()> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client(n).await?, "velero");
    wait_for(
        &format!("a Running node-agent pod on {node} (bash hack/velero.sh status; it needs hack/images.sh --push)"),
        Duration::from_secs(180),
        || async {
            let list = pods
                .list(&kube::api::ListParams::default().labels("role=node-agent"))
                .await?;
            Ok(list
                .items
                .iter()
                .any(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
                .then_some(()))
        },
    )
    .await
}

/// A Velero kind (`velero.io/v1`) for the dynamic API.
pub fn velero_resource(kind: &str, plural: &str) -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "velero.io".into(),
        version: "v1".into(),
        api_version: "velero.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}
