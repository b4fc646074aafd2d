//! A completed UtilizationReport written out as CSV, JSON or HTML: the checks and the
//! rendering, with the reading of its table ConfigMaps left to the caller (this crate has
//! no Kubernetes client).

use govcloud_api::report::{AgencyRow, TABLE_KEY, UtilizationReportStatus};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

use crate::utilization;

/// Export formats of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One line per agency.
    Csv,
    /// Summary, clusters and agencies.
    Json,
    /// A self-contained page with charts.
    Html,
}

/// Why a report cannot be written out; `E` is the error of reading a table ConfigMap.
#[derive(Debug, thiserror::Error)]
pub enum ExportError<E> {
    /// The report has no result yet.
    #[error("UtilizationReport {name} is not completed yet (phase {phase}); try again in a moment")]
    NotCompleted {
        /// Report name.
        name: String,
        /// Its phase, or `pending`.
        phase: String,
    },
    /// A table ConfigMap is gone.
    #[error("part {part} of report {name} is missing from {namespace}")]
    MissingPart {
        /// ConfigMap name.
        part: String,
        /// Report name.
        name: String,
        /// Namespace of the ConfigMaps.
        namespace: String,
    },
    /// A table ConfigMap holds another number of rows than the report says.
    #[error("part {part} has {found} rows, expected {expected}")]
    RowCount {
        /// ConfigMap name.
        part: String,
        /// Rows found.
        found: usize,
        /// Rows the report lists.
        expected: u32,
    },
    /// A table or the JSON form does not (de)serialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Reading a table ConfigMap failed.
    #[error(transparent)]
    Read(E),
}

/// Renders report `name` from its status and its agency table, read part by part with
/// `read` (the ConfigMap of that name in `namespace`, `None` when it does not exist).
pub async fn export<E>(
    name: &str,
    namespace: &str,
    st: &UtilizationReportStatus,
    format: Format,
    mut read: impl AsyncFnMut(&str) -> Result<Option<ConfigMap>, E>,
) -> Result<String, ExportError<E>> {
    if st.phase.as_deref() != Some("Completed") {
        return Err(ExportError::NotCompleted {
            name: name.to_string(),
            phase: st.phase.as_deref().unwrap_or("pending").to_string(),
        });
    }
    let mut rows: Vec<AgencyRow> = Vec::new();
    for t in &st.tables {
        let cm = read(&t.config_map)
            .await
            .map_err(ExportError::Read)?
            .ok_or_else(|| ExportError::MissingPart {
                part: t.config_map.clone(),
                name: name.to_string(),
                namespace: namespace.to_string(),
            })?;
        let text = cm.data.and_then(|d| d.get(TABLE_KEY).cloned()).unwrap_or_default();
        let part: Vec<AgencyRow> = serde_json::from_str(&text)?;
        if part.len() as u32 != t.rows {
            return Err(ExportError::RowCount {
                part: t.config_map.clone(),
                found: part.len(),
                expected: t.rows,
            });
        }
        rows.extend(part);
    }
    let generated = st.generated_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    Ok(match format {
        Format::Csv => utilization::to_csv(&rows),
        Format::Json => serde_json::to_string_pretty(&json!({
            "name": name, "generatedAt": generated,
            "periodStart": st.period_start, "periodEnd": st.period_end,
            "currency": st.currency, "summary": st.summary, "clusters": st.clusters, "agencies": rows,
        }))?,
        Format::Html => utilization::to_html(
            &format!("Utilization report {name}"),
            &generated,
            &st.clusters,
            &rows,
            st.currency.as_deref(),
        ),
    })
}
