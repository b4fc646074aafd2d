//! `govcloud-operator`: run the controllers, print the CRDs, or print the version.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use govcloud::controller::Settings;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::{error, info};

/// jemalloc instead of the system allocator: the operator's memory is many small objects
/// (caches, watch events, list pages) allocated and freed on several threads, which
/// fragments glibc's per-thread arenas; jemalloc, configured below, hands freed pages back
/// to the system soon after (see docs/performance.md for the figures).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (`man jemalloc`, "TUNING"): two arenas (the runtime has two worker
/// threads), dirty pages returned after 100 ms, no lazily-purged middle state.
/// `_RJEM_MALLOC_CONF` in the environment overrides them.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(c"narenas:2,dirty_decay_ms:100,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads at start-up (a plain pointer, as C declares it).
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);
// SAFETY: the pointer is to a 'static, immutable, NUL-terminated literal.
unsafe impl Sync for MallocConf {}

#[derive(Parser)]
#[command(
    name = "govcloud-operator",
    version,
    about = "Kubernetes operator for a national government data center: agency private clouds, hosted systems, backup/DR and utilization."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the controllers against the hub cluster.
    Run(RunArgs),
    /// Print every CRD as YAML (or write them to a directory with --out-dir).
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print the API reference (Markdown, from the CRD schemas), or write it with --out.
    ApiDocs {
        /// Write to this file (e.g. docs/api-reference.md) instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Export a UtilizationReport as CSV, JSON or a self-contained HTML page (to stdout).
    Report(ReportArgs),
    /// Make a signed evidence report (等保测评证据) of one agency now: JSON (stdout or --out)
    /// and HTML (--html); with --store, also keep it as an EvidenceReport for the agency.
    Evidence(EvidenceArgs),
    /// Check a signed evidence report file (JSON or HTML) offline against the platform's
    /// public key. Exit status 0 only when it verifies.
    Verify(VerifyArgs),
    /// Make a new evidence signing key pair: private.pem (for the Secret) and public.pem
    /// (for assessors).
    EvidenceKey {
        /// Directory to write private.pem and public.pem into.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
    /// Back up the hub's decisions and declarations (tenancy requests and their decisions,
    /// agency clouds, clusters, backup locations and policies, hosted systems, catalogue
    /// templates) into one JSON document with a digest. Secrets are not included.
    HubBackup(HubBackupArgs),
    /// Rebuild a hub from a hub backup: recreate every object that is missing, with its
    /// recorded status; existing objects are left as they are. Needs the ClusterRole
    /// govcloud:hub-restorer (docs/restore-runbook.md).
    HubRestore(HubRestoreArgs),
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct HubBackupArgs {
    /// Write the backup here (JSON) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only objects with these labels (a label selector, e.g. `govcloud.io/agency=mof`).
    #[arg(long, short = 'l')]
    selector: Option<String>,
    /// Kubeconfig of the hub cluster. Default: in-cluster config or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, env = "GOVCLOUD_CONTEXT")]
    context: Option<String>,
}

#[derive(clap::Args)]
struct HubRestoreArgs {
    /// The backup file (from hub-backup).
    file: PathBuf,
    /// Only say what would be created.
    #[arg(long)]
    dry_run: bool,
    /// Kubeconfig of the (new) hub cluster. Default: in-cluster config or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, env = "GOVCLOUD_CONTEXT")]
    context: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
    Html,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The UtilizationReport's name (`kubectl get utilizationreports`).
    name: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "csv")]
    format: ExportFormat,
    /// Kubeconfig of the hub cluster. Default: in-cluster config or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, env = "GOVCLOUD_CONTEXT")]
    context: Option<String>,
    /// Namespace of the operator on the hub (holds the report's tables).
    #[arg(long, env = "GOVCLOUD_NAMESPACE", default_value = "govcloud-system")]
    namespace: String,
}

#[derive(clap::Args)]
struct EvidenceArgs {
    /// The AgencyCloud's name.
    #[arg(long)]
    agency: String,
    /// Write the JSON form here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the HTML form here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Start of the period (RFC 3339). Default: 30 days before its end.
    #[arg(long)]
    from: Option<String>,
    /// End of the period (RFC 3339). Default: now.
    #[arg(long)]
    to: Option<String>,
    /// Also keep it as an EvidenceReport in the agency's namespace on the hub.
    #[arg(long)]
    store: bool,
    /// Secret (operator namespace) holding the signing key (`private.pem`).
    #[arg(long, env = "GOVCLOUD_EVIDENCE_KEY_SECRET", default_value = govcloud::controller::evidence::KEY_SECRET)]
    key_secret: String,
    /// Kubeconfig of the hub cluster. Default: in-cluster config or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, env = "GOVCLOUD_CONTEXT")]
    context: Option<String>,
    /// Namespace of the operator on the hub (member kubeconfigs, the signing key).
    #[arg(long, env = "GOVCLOUD_NAMESPACE", default_value = "govcloud-system")]
    namespace: String,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The platform's evidence public key (SPKI PEM, `public.pem`).
    #[arg(long)]
    key: PathBuf,
    /// The report file (JSON or HTML).
    #[arg(long)]
    report: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig of the hub cluster. Default: in-cluster config or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, env = "GOVCLOUD_CONTEXT")]
    context: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "GOVCLOUD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Log format.
    #[arg(long, env = "GOVCLOUD_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Namespace of the operator on the hub; member kubeconfig Secrets live here.
    #[arg(long, env = "GOVCLOUD_NAMESPACE", default_value = "govcloud-system")]
    namespace: String,
    /// Seconds between probes of a healthy member cluster.
    #[arg(long, env = "GOVCLOUD_PROBE_INTERVAL", default_value_t = 30)]
    probe_interval: u64,
    /// Reconciles run at once, per controller.
    #[arg(long, env = "GOVCLOUD_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Daily UtilizationReports to keep (0 makes none).
    #[arg(long, env = "GOVCLOUD_DAILY_REPORTS", default_value_t = 31)]
    daily_reports: usize,
    /// Monthly UtilizationReports to keep (0 makes none).
    #[arg(long, env = "GOVCLOUD_MONTHLY_REPORTS", default_value_t = 24)]
    monthly_reports: usize,
    /// Run the controllers only while holding the Lease `govcloud-operator` in the operator's
    /// namespace (for several replicas).
    #[arg(long, env = "GOVCLOUD_LEADER_ELECT")]
    leader_elect: bool,
    /// This replica's identity in the lease. Default: $POD_NAME, else host name and process id.
    #[arg(long, env = "GOVCLOUD_IDENTITY")]
    identity: Option<String>,
    /// Days an evidence report is kept after its period ends (0 makes no monthly reports).
    #[arg(long, env = "GOVCLOUD_EVIDENCE_RETENTION_DAYS", default_value_t = 1096)]
    evidence_retention_days: u64,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn client(kubeconfig: &Option<PathBuf>, context: &Option<String>) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: context.clone(),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)?;
            Config::from_custom_kubeconfig(kc, &options).await?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(&args.kubeconfig, &args.context).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let settings = Settings {
        namespace: args.namespace.clone(),
        probe_interval: Duration::from_secs(args.probe_interval.max(1)),
        concurrency: args.concurrency.max(1),
        instance: std::env::var("POD_NAME").ok(),
        leader_election: args.leader_elect.then(|| {
            let identity = args
                .identity
                .clone()
                .or_else(|| std::env::var("POD_NAME").ok())
                .unwrap_or_else(|| {
                    format!(
                        "{}-{}",
                        std::env::var("HOSTNAME").unwrap_or_else(|_| "govcloud".into()),
                        std::process::id()
                    )
                });
            govcloud::leader::LeaderElection::new(&args.namespace, &identity)
        }),
        daily_reports: args.daily_reports,
        monthly_reports: args.monthly_reports,
        evidence_retention: (args.evidence_retention_days > 0)
            .then(|| Duration::from_secs(args.evidence_retention_days.saturating_mul(86_400))),
        ..Settings::default()
    };
    info!(version = env!("CARGO_PKG_VERSION"), namespace = %settings.namespace, "starting govcloud-operator");
    govcloud::runtime::run(client, settings, listener, shutdown_signal()).await?;
    info!("stopped");
    Ok(())
}

async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(&args.kubeconfig, &args.context).await?;
    let format = match args.format {
        ExportFormat::Csv => govcloud_core::report::Format::Csv,
        ExportFormat::Json => govcloud_core::report::Format::Json,
        ExportFormat::Html => govcloud_core::report::Format::Html,
    };
    let text = govcloud::controller::report::export(&client, &args.namespace, &args.name, format).await?;
    print!("{text}");
    Ok(())
}

async fn evidence(args: EvidenceArgs) -> anyhow::Result<()> {
    use govcloud::controller::evidence as ev;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(&args.kubeconfig, &args.context).await?;
    let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<Timestamp>> {
        v.as_deref()
            .map(|s| {
                s.parse::<Timestamp>().map_err(|e| {
                    anyhow::anyhow!("--{flag} {s}: not an RFC 3339 time such as 2026-11-01T00:00:00+08:00: {e}")
                })
            })
            .transpose()
    };
    let end = time("to", &args.to)?.unwrap_or_else(Timestamp::now);
    let start = match time("from", &args.from)? {
        Some(s) => s,
        None => end.checked_sub(SignedDuration::from_hours(24 * 30))?,
    };
    anyhow::ensure!(start < end, "--from must be before --to");
    let provider = std::sync::Arc::new(ev::key_from_secret(&client, &args.namespace, &args.key_secret).await?);
    let inputs = ev::collect(&client, &args.namespace, &args.agency, start, end).await?;
    let signed = ev::sign(inputs, provider).await?;
    match &args.out {
        Some(p) => std::fs::write(p, &signed.json).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?,
        None => print!("{}", signed.json),
    }
    if let Some(p) = &args.html {
        std::fs::write(p, &signed.html).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    }
    let s = &signed.report.summary;
    eprintln!(
        "agency {}: {} controls, {} met, {} missing, {} failing; signed with key {}",
        args.agency, s.controls, s.met, s.missing, s.failing, signed.key_id
    );
    if args.store {
        let name = format!("ondemand-{}", end.as_second());
        let (ns, name) = ev::store(&client, &signed, &name, "on-demand").await?;
        eprintln!("kept as EvidenceReport {ns}/{name}");
    }
    Ok(())
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    use govcloud_core::evidence::{html, sign::PublicKey};
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()));
    let key = PublicKey::from_pem(&String::from_utf8_lossy(&read(&args.key)?))?;
    let v = html::verify_file(&read(&args.report)?, &key)
        .map_err(|e| anyhow::anyhow!("{} does NOT verify: {e}", args.report.display()))?;
    println!("{}", v.summary(&args.report.display().to_string()));
    Ok(())
}

fn evidence_key(out_dir: PathBuf) -> anyhow::Result<()> {
    let (private, public) = govcloud_core::evidence::sign::PemKeyProvider::generate()?;
    std::fs::create_dir_all(&out_dir)?;
    let private_path = out_dir.join("private.pem");
    {
        use std::io::Write as _;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&private_path)
            .map_err(|e| anyhow::anyhow!("cannot create {} (it must not exist yet): {e}", private_path.display()))?;
        f.write_all(private.as_bytes())?;
    }
    std::fs::write(out_dir.join("public.pem"), public)?;
    println!(
        "wrote {} (keep it secret: put it in the Secret) and {} (give it to assessors)",
        private_path.display(),
        out_dir.join("public.pem").display()
    );
    Ok(())
}

fn crd(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    for (file, crd) in govcloud_api::all_crds() {
        let yaml = govcloud_api::crd_yaml(&crd)?;
        match &out_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join(file), yaml)?;
            }
            None => print!("{yaml}"),
        }
    }
    Ok(())
}

async fn hub_backup(args: HubBackupArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(&args.kubeconfig, &args.context).await?;
    let doc = govcloud::rebuild::backup(&client, args.selector.as_deref()).await?;
    let text = serde_json::to_string_pretty(&doc)?;
    match args.out {
        Some(p) => {
            std::fs::write(&p, text + "\n").map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
            eprintln!(
                "hub backup: {} objects, digest {}, written to {}",
                doc["items"].as_array().map_or(0, Vec::len),
                doc["digest"].as_str().unwrap_or(""),
                p.display()
            );
        }
        None => println!("{text}"),
    }
    Ok(())
}

async fn hub_restore(args: HubRestoreArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", args.file.display()))?;
    let client = client(&args.kubeconfig, &args.context).await?;
    let done = govcloud::rebuild::restore(&client, &doc, args.dry_run).await?;
    for (kind, id, what) in &done.lines {
        println!("{what:<13} {kind:<18} {id}");
    }
    let created = done.lines.iter().filter(|l| l.2 == "created").count();
    println!(
        "{} objects in the backup: {created} created, {} already there{}",
        done.lines.len(),
        done.lines.iter().filter(|l| l.2 == "exists").count(),
        if args.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("govcloud-operator {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Crd { out_dir } => crd(out_dir),
        Command::ApiDocs { out } => {
            let crds: Vec<_> = govcloud_api::all_crds().into_iter().map(|(_, c)| c).collect();
            let text = govcloud::apidoc::render(&crds);
            match out {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
                }
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        Command::Report(args) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(report(args)),
            Err(e) => Err(e.into()),
        },
        Command::Evidence(args) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(evidence(args)),
            Err(e) => Err(e.into()),
        },
        Command::Verify(args) => verify(args),
        Command::HubBackup(args) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(hub_backup(args)),
            Err(e) => Err(e.into()),
        },
        Command::HubRestore(args) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(hub_restore(args)),
            Err(e) => Err(e.into()),
        },
        Command::EvidenceKey { out_dir } => evidence_key(out_dir),
        Command::Run(args) => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt.block_on(run(args)),
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
