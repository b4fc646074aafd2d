//! `kubectl govcloud report`: export a UtilizationReport with the operator's own exporter.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use govcloud_api::UtilizationReport;
use govcloud_core::report::{self as export, ExportError, Format};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use crate::connect::{self, Global};
use crate::errors::{self, Target};

/// Examples shown by `kubectl govcloud report --help`.
pub const EXAMPLES: &str = "\
Examples:
  # Yesterday's report as CSV on the terminal
  kubectl govcloud report daily-2026-11-27

  # A monthly report as a self-contained HTML page
  kubectl govcloud report monthly-2026-10 -o html --output-file monthly-2026-10.html

  # JSON (summary, clusters and every agency) for scripts
  kubectl govcloud report monthly-2026-10 -o json | jq '.summary'

  # List the reports
  kubectl get utilizationreports";

/// Export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// One line per agency.
    Csv,
    /// Summary, clusters and agencies.
    Json,
    /// A self-contained page with charts.
    Html,
}

/// Arguments of `report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The UtilizationReport's name (`kubectl get utilizationreports` lists them).
    pub name: String,
    /// Output format. Default: from the --output-file extension, else csv.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<ReportFormat>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Namespace of the operator on the hub, which holds the reports' agency tables.
    #[arg(
        long,
        env = "GOVCLOUD_NAMESPACE",
        default_value = "govcloud-system",
        value_name = "NAMESPACE"
    )]
    pub operator_namespace: String,
}

/// The format to use: -o, else the file's extension, else CSV.
pub fn choose_format(output: Option<ReportFormat>, file: Option<&Path>) -> ReportFormat {
    output.unwrap_or_else(|| {
        match file
            .and_then(|f| f.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => ReportFormat::Json,
            Some("html" | "htm") => ReportFormat::Html,
            _ => ReportFormat::Csv,
        }
    })
}

/// Runs `report`.
pub async fn run(g: &Global, args: ReportArgs) -> Result<()> {
    let conn = connect::connect(g).await?;
    let target = Target::cluster("UtilizationReport", "utilizationreports", &args.name);
    let ur = Api::<UtilizationReport>::all(conn.client.clone())
        .get(&args.name)
        .await
        .map_err(|e| errors::explain(e, &target))?;
    let format = choose_format(args.output, args.output_file.as_deref());
    let cms: Api<ConfigMap> = Api::namespaced(conn.client.clone(), &args.operator_namespace);
    let text = export::export(
        &args.name,
        &args.operator_namespace,
        &ur.status.unwrap_or_default(),
        match format {
            ReportFormat::Csv => Format::Csv,
            ReportFormat::Json => Format::Json,
            ReportFormat::Html => Format::Html,
        },
        async |part: &str| cms.get_opt(part).await,
    )
    .await
    .map_err(|e| match e {
        ExportError::Read(e) => errors::explain(e, &target),
        other => other.into(),
    })?;
    let mut text = text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match &args.output_file {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "UtilizationReport {} written to {} ({:?}, {} bytes)",
                args.name,
                path.display(),
                format,
                text.len()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_flag_then_the_file() {
        assert_eq!(choose_format(None, None), ReportFormat::Csv);
        assert_eq!(choose_format(None, Some(Path::new("r.HTML"))), ReportFormat::Html);
        assert_eq!(choose_format(None, Some(Path::new("r.json"))), ReportFormat::Json);
        assert_eq!(
            choose_format(Some(ReportFormat::Csv), Some(Path::new("r.json"))),
            ReportFormat::Csv
        );
    }
}
