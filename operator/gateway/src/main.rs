//! govcloud-s3-gateway: `serve` the encrypting S3 gateway, `rotate` data keys under the
//! current key-encryption key, or `check` a configuration (and probe a running gateway).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use govcloud_gateway::keys::{FileKeyProvider, KeyProvider};
use govcloud_gateway::{build, config::Config};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    name = "govcloud-s3-gateway",
    version,
    about = "Encrypting S3 gateway for agency backups (SM4-GCM, per-agency keys and prefixes)"
)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(
        long,
        env = "GOVCLOUD_GATEWAY_CONFIG",
        global = true,
        default_value = "/etc/govcloud-gateway/config.yaml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve S3 on the configured address.
    Serve {
        /// Overrides `listen` from the configuration.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Rewrap every agency's data keys under the key provider's current key-encryption key
    /// (objects are not rewritten). Run it after adding a new KEK and making it current;
    /// remove the old KEK afterwards.
    Rotate {
        /// Also start a new data key per agency for objects written from now on.
        #[arg(long)]
        new_data_key: bool,
        /// Only this agency.
        #[arg(long)]
        agency: Option<String>,
    },
    /// Check the configuration without serving: every secret file readable, prefixes
    /// valid, the current key-encryption key present. With --probe, also check that a
    /// running gateway at URL answers S3 and refuses an unsigned request (the chart's
    /// `helm test`). Talks to no object store.
    Check {
        /// A running gateway's URL, e.g. http://govcloud-s3-gateway:9000.
        #[arg(long)]
        probe: Option<String>,
        /// How long to keep trying the probe while nothing answers (a new pod's network
        /// policy and Service routes take a few seconds to be in place).
        #[arg(long, default_value_t = 60)]
        probe_timeout_seconds: u64,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let cfg = Config::load(&cli.config).with_context(|| format!("configuration {}", cli.config.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve { listen } => rt.block_on(serve(cfg, listen)),
        Command::Rotate { new_data_key, agency } => rt.block_on(rotate(cfg, new_data_key, agency)),
        Command::Check {
            probe,
            probe_timeout_seconds,
        } => rt.block_on(check(cfg, probe, std::time::Duration::from_secs(probe_timeout_seconds))),
    }
}

async fn serve(cfg: Config, listen: Option<String>) -> Result<()> {
    let (_, _, gw) = build(&cfg)?;
    let mut auth = SimpleAuth::new();
    for a in &cfg.agencies {
        let s = govcloud_gateway::config::secret("secretKey", &a.secret_key, &a.secret_key_file)?;
        auth.register(a.access_key.clone(), s.into());
    }
    let service = {
        let mut b = S3ServiceBuilder::new(gw);
        b.set_auth(auth);
        b.build()
    };
    let addr = listen.unwrap_or(cfg.listen.clone());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    info!(address = %listener.local_addr()?, agencies = cfg.agencies.len(), upstream = %cfg.upstream.endpoint, "gateway serving S3");
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(shutdown());
    loop {
        let socket = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => { warn!(error = %e, "accept failed"); continue; }
            },
            _ = stop.as_mut() => break,
        };
        let _ = socket.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(socket), service.clone());
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {},
    }
    info!("gateway stopped");
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

async fn rotate(cfg: Config, new_data_key: bool, only: Option<String>) -> Result<()> {
    let (_, keyring, _) = build(&cfg)?;
    if let Some(o) = &only
        && !cfg.agencies.iter().any(|a| &a.name == o)
    {
        bail!("--agency {o}: no such agency in the configuration");
    }
    let mut failed = 0;
    for a in cfg
        .agencies
        .iter()
        .filter(|a| only.as_ref().is_none_or(|o| o == &a.name))
    {
        match keyring.rotate(&a.bucket, &a.name, new_data_key).await {
            Ok(r) => println!(
                "{}: {} data key(s) rewrapped, {} already under the current key{}",
                a.name,
                r.rewrapped,
                r.already_current,
                r.created.map(|id| format!(", new data key {id}")).unwrap_or_default()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{}: rotation failed: {e}", a.name);
            }
        }
    }
    if failed > 0 {
        bail!("{failed} agency(ies) not rotated; the old key-encryption key must stay until they are");
    }
    Ok(())
}

async fn check(cfg: Config, probe: Option<String>, probe_timeout: std::time::Duration) -> Result<()> {
    // Reads the store's and every agency's secret, as `serve` does.
    build(&cfg)?;
    let keys = FileKeyProvider::new(&cfg.key_dir);
    let kek = keys
        .current()
        .await
        .with_context(|| format!("keyDir {}: the current key-encryption key", cfg.key_dir.display()))?;
    if !keys
        .holds(&kek)
        .await
        .with_context(|| format!("keyDir {}", cfg.key_dir.display()))?
    {
        bail!(
            "keyDir {}: `current` names key-encryption key {kek:?} but there is no kek.{kek} beside it",
            cfg.key_dir.display()
        );
    }
    println!(
        "configuration OK: {} agency(ies), upstream {}, current key-encryption key {kek}",
        cfg.agencies.len(),
        cfg.upstream.endpoint
    );
    if let Some(url) = probe {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let deadline = tokio::time::Instant::now() + probe_timeout;
        let resp = loop {
            match http.get(format!("{}/", url.trim_end_matches('/'))).send().await {
                Ok(r) => break r,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    warn!(error = %e, "no answer from {url} yet; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("--probe {url}: no answer within {} s", probe_timeout.as_secs())));
                }
            }
        };
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status != reqwest::StatusCode::FORBIDDEN || !body.contains("<Error>") {
            bail!("--probe {url}: an unsigned request got {status}, not an S3 403 error: {body}");
        }
        let code = body
            .split("<Code>")
            .nth(1)
            .and_then(|c| c.split("</Code>").next())
            .unwrap_or("?");
        println!("{url} answers S3 and refuses an unsigned request ({status}, {code})");
    }
    Ok(())
}
