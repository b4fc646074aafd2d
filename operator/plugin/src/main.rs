//! `kubectl-govcloud`: the kubectl plugin of govcloud-operator (`kubectl govcloud ...`).
//!
//! Agencies file tenancy requests, platform approvers approve or deny them, and everyone
//! sees an agency's cloud at a glance and exports utilization reports. The API types
//! (`govcloud-api`) and the report exporter (`govcloud-core`) are the operator's own, so
//! the plugin never drifts from it.

mod connect;
mod decide;
mod errors;
mod evidence;
mod format;
mod output;
mod report;
mod request;
mod status;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use govcloud_api::tenancy::DecisionAction;

const ABOUT: &str = "Work with the government data center's agency private clouds (govcloud.io).";

const LONG_ABOUT: &str = "\
Work with the government data center's agency private clouds (govcloud.io): file a
tenancy request, approve or deny it, see an agency's cloud at a glance, and export
utilization reports. Talks to the data center's management (hub) cluster like kubectl:
--kubeconfig, --context, -n and --as work as there.";

const EXAMPLES: &str = "\
Examples:
  # An agency files a request (see `kubectl govcloud request --help` for every option)
  kubectl govcloud request zj-bigdata -n tenancy-requests --agency-name 浙江省大数据发展管理局 ...

  # A platform approver reviews it and approves it, or denies it with a reason
  kubectl govcloud approve zj-bigdata -n tenancy-requests --reason \"符合年度上云计划\"
  kubectl govcloud deny zj-bigdata -n tenancy-requests --reason \"请先完成等保备案\"

  # The agency's cloud at a glance: placement, quota use, systems, backups, compliance
  kubectl govcloud status zj-bigdata

  # Export a utilization report
  kubectl govcloud report monthly-2026-10 -o html --output-file monthly-2026-10.html

  # Save the agency's signed evidence report and check it offline
  kubectl govcloud evidence zj-bigdata --output-file zj-evidence.json
  kubectl govcloud verify --key evidence-public.pem --report zj-evidence.json";

#[derive(Parser)]
#[command(
    name = "kubectl-govcloud",
    bin_name = "kubectl govcloud",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    global: connect::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// File a TenancyRequest: an agency asks for a private cloud.
    #[command(after_help = request::EXAMPLES)]
    Request(Box<request::RequestArgs>),
    /// Approve a TenancyRequest (platform approvers); the operator then creates the AgencyCloud.
    #[command(after_help = decide::APPROVE_EXAMPLES)]
    Approve(decide::ApproveArgs),
    /// Deny a TenancyRequest (platform approvers), with the reason the agency will read.
    #[command(after_help = decide::DENY_EXAMPLES)]
    Deny(decide::DenyArgs),
    /// An agency's cloud at a glance: placement, conditions, quota use, hosted systems,
    /// backup policies and compliance.
    #[command(after_help = status::EXAMPLES)]
    Status(status::StatusArgs),
    /// Export a UtilizationReport as CSV, JSON or a self-contained HTML page.
    #[command(after_help = report::EXAMPLES)]
    Report(report::ReportArgs),
    /// Save an agency's signed evidence report (等保测评证据) as JSON or HTML.
    #[command(after_help = evidence::EVIDENCE_EXAMPLES)]
    Evidence(evidence::EvidenceArgs),
    /// Check a signed evidence report file offline against the platform's public key.
    #[command(after_help = evidence::VERIFY_EXAMPLES)]
    Verify(evidence::VerifyArgs),
}

async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Request(args) => request::run(g, *args).await,
        Command::Approve(a) => {
            let reason = a.reason.unwrap_or_else(|| "Approved".to_string());
            decide::run(g, &a.name, DecisionAction::Approve, &reason, a.generation, a.not_valid).await
        }
        Command::Deny(a) => decide::run(g, &a.name, DecisionAction::Deny, &a.reason, a.generation, false).await,
        Command::Status(a) => status::run(g, a).await,
        Command::Report(a) => report::run(g, a).await,
        Command::Evidence(a) => evidence::run(g, a).await,
        Command::Verify(a) => evidence::verify(a),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kubectl-govcloud",
            "approve",
            "r",
            "-n",
            "reqs",
            "--as",
            "bob",
            "--as-group",
            "g1",
        ]);
        let cli = cli.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.global.namespace.as_deref(), Some("reqs"));
        assert_eq!(cli.global.as_user.as_deref(), Some("bob"));
        assert_eq!(cli.global.as_groups, vec!["g1".to_string()]);
    }
}
