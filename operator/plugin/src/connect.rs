//! Connecting to the hub like kubectl does: kubeconfig, context, namespace, impersonation.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::errors::{self, Target};

/// Options every command accepts, as kubectl does.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Path to the kubeconfig file. Default: $KUBECONFIG, else ~/.kube/config, else the
    /// in-cluster service account.
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use. Default: the current context.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of tenancy requests. Default: the namespace of the kubeconfig context.
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// User to impersonate for the operation (like `kubectl --as`).
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// Group to impersonate for the operation; repeat for several (like `kubectl --as-group`).
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_groups: Vec<String>,
}

/// A client and the namespace commands work in.
pub struct Conn {
    /// The client.
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

/// Connects with the global options.
pub async fn connect(g: &Global) -> Result<Conn> {
    let options = KubeConfigOptions {
        context: g.context.clone(),
        ..Default::default()
    };
    let mut config = match (&g.kubeconfig, &g.context) {
        (Some(path), _) => {
            let kc =
                Kubeconfig::read_from(path).with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("cannot use kubeconfig {}", path.display()))?
        }
        (None, Some(ctx)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("cannot use context {ctx} of the kubeconfig ($KUBECONFIG or ~/.kube/config)"))?,
        (None, None) => Config::infer()
            .await
            .map_err(|e| anyhow!("no kubeconfig found ({e}); pass --kubeconfig or set KUBECONFIG"))?,
    };
    if g.as_user.is_none() && !g.as_groups.is_empty() {
        return Err(anyhow!("--as-group needs --as (the user to impersonate)"));
    }
    if let Some(user) = &g.as_user {
        config.auth_info.impersonate = Some(user.clone());
        config.auth_info.impersonate_groups = (!g.as_groups.is_empty()).then(|| g.as_groups.clone());
    }
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(60));
    let namespace = g.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("cannot create a Kubernetes client")?;
    Ok(Conn { client, namespace })
}

/// The caller's user name as the API server authenticates it (a SelfSubjectReview).
pub async fn whoami(client: &Client) -> Result<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = SelfSubjectReview::default();
    let out = api.create(&PostParams::default(), &review).await.map_err(|e| {
        errors::explain(
            e,
            &Target::cluster("SelfSubjectReview", "selfsubjectreviews", "(your identity)"),
        )
    })?;
    out.status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| anyhow!("the API server did not say who you are (SelfSubjectReview without a user name)"))
}
