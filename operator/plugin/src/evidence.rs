//! `kubectl govcloud evidence` and `kubectl govcloud verify`: save an agency's signed
//! evidence report (等保测评证据) and check a report file offline.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};
use govcloud_api::labels::AGENCY_LABEL;
use govcloud_api::{AgencyCloud, EvidenceReport};
use govcloud_core::evidence::{self as ev, html, sign::PublicKey};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::connect::{self, Global};
use crate::errors::{self, Target};

/// Examples shown by `kubectl govcloud evidence --help`.
pub const EVIDENCE_EXAMPLES: &str = "\
Examples:
  # The newest evidence report of zj-bigdata, as the signed JSON file
  kubectl govcloud evidence zj-bigdata --output-file zj-bigdata-evidence.json

  # A given month's report as a page for people (it verifies too)
  kubectl govcloud evidence zj-bigdata --name monthly-2026-10 -o html --output-file zj-2026-10.html

  # List the reports kept for the agency
  kubectl get evidencereports -n zj-bigdata-prod";

/// Examples shown by `kubectl govcloud verify --help`.
pub const VERIFY_EXAMPLES: &str = "\
Examples:
  # Check a report file against the platform's public key (offline; exit status 1 if it fails)
  kubectl govcloud verify --key evidence-public.pem --report zj-bigdata-evidence.json";

/// Forms of a report file.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvidenceFormat {
    /// The signed JSON document.
    Json,
    /// A self-contained page carrying the signed document.
    Html,
}

/// Arguments of `evidence`.
#[derive(clap::Args, Debug)]
pub struct EvidenceArgs {
    /// The agency (AgencyCloud name).
    pub agency: String,
    /// The EvidenceReport's name (`kubectl get evidencereports -n <namespace>`). Default: the
    /// newest.
    #[arg(long)]
    pub name: Option<String>,
    /// Form. Default: from the --output-file extension, else json.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<EvidenceFormat>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The platform's evidence public key (SPKI PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The report file (JSON or HTML).
    #[arg(long, value_name = "FILE")]
    pub report: PathBuf,
}

/// Runs `evidence`.
pub async fn run(g: &Global, args: EvidenceArgs) -> Result<()> {
    let conn = connect::connect(g).await?;
    // The namespace holding the agency's reports: -n, else the AgencyCloud's first one.
    let ns = match &g.namespace {
        Some(ns) => ns.clone(),
        None => {
            let ac = Api::<AgencyCloud>::all(conn.client.clone())
                .get(&args.agency)
                .await
                .map_err(|e| {
                    anyhow!(
                        "{}\nwhat to do: name the agency's first namespace with -n (e.g. -n {}-prod)",
                        errors::explain(e, &Target::cluster("AgencyCloud", "agencyclouds", &args.agency)),
                        args.agency
                    )
                })?;
            ev::namespaces_of(&ac)
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("agency {} has no namespace yet", args.agency))?
        }
    };
    let api: Api<EvidenceReport> = Api::namespaced(conn.client.clone(), &ns);
    let er = match &args.name {
        Some(n) => api
            .get(n)
            .await
            .map_err(|e| errors::explain(e, &Target::namespaced("EvidenceReport", "evidencereports", n, &ns)))?,
        None => api
            .list(&ListParams::default().labels(&format!("{AGENCY_LABEL}={}", args.agency)))
            .await
            .map_err(|e| errors::explain(e, &Target::namespaced("EvidenceReport", "evidencereports", "", &ns)))?
            .items
            .into_iter()
            .max_by(|a, b| (a.spec.period_end.0, a.creation_timestamp().map(|t| t.0)).cmp(&(b.spec.period_end.0, b.creation_timestamp().map(|t| t.0))))
            .ok_or_else(|| anyhow!("no evidence report of {} in namespace {ns} yet (the operator makes one each month; platform engineers make one with `govcloud-operator evidence --store`)", args.agency))?,
    };
    let format = args.output.unwrap_or_else(|| match &args.output_file {
        Some(p) if p.extension().is_some_and(|e| e == "html" || e == "htm") => EvidenceFormat::Html,
        _ => EvidenceFormat::Json,
    });
    let text = match format {
        EvidenceFormat::Json => er.spec.document.clone(),
        EvidenceFormat::Html => {
            let envelope: serde_json::Value = serde_json::from_str(&er.spec.document)
                .with_context(|| format!("EvidenceReport {ns}/{} holds no JSON document", er.name_any()))?;
            html::render(&envelope)?
        }
    };
    match &args.output_file {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote EvidenceReport {ns}/{} to {}", er.name_any(), p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Runs `verify` (offline).
pub fn verify(args: VerifyArgs) -> Result<()> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let key = PublicKey::from_pem(&String::from_utf8_lossy(&read(&args.key)?))?;
    let v = html::verify_file(&read(&args.report)?, &key)
        .map_err(|e| anyhow!("{} does NOT verify: {e}", args.report.display()))?;
    println!("{}", v.summary(&args.report.display().to_string()));
    Ok(())
}
