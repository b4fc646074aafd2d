//! Utilization (存量资源整合利用): per-cluster capacity, allocation and use, per-agency quota,
//! use, systems, backup compliance and cost; and the report's CSV, JSON and HTML forms.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::quantity::Milli;
use govcloud_api::conditions;
use govcloud_api::report::{AgencyRow, ClusterRow, PriceCatalogue, Totals};
use govcloud_api::{AgencyCloud, DataCenterCluster, HostedSystem};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn add(t: &mut Totals, o: &Totals) {
    t.cpu += o.cpu;
    t.memory += o.memory;
    t.storage += o.storage;
    t.pods += o.pods;
}

fn q(v: Option<&String>) -> f64 {
    v.and_then(|s| Milli::parse(s).ok())
        .map(|m| m.0 as f64 / 1000.0)
        .unwrap_or(0.0)
}

/// Totals of a ResourceQuota's `hard` or `used` map.
pub fn quota_totals(m: &BTreeMap<String, String>) -> Totals {
    Totals {
        cpu: q(m.get("requests.cpu")),
        memory: q(m.get("requests.memory")),
        storage: q(m.get("requests.storage")),
        pods: q(m.get("pods")),
    }
}

/// Cost of holding `quota` for `months` at `prices`.
pub fn cost(prices: &PriceCatalogue, quota: &Totals, months: f64) -> f64 {
    let c = quota.cpu * prices.cpu_core_month
        + quota.memory / GIB * prices.memory_gib_month
        + quota.storage / GIB * prices.storage_gib_month;
    (c * months * 100.0).round() / 100.0
}

fn is_true(conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], t: &str) -> Option<bool> {
    conds.iter().find(|c| c.type_ == t).map(|c| c.status == "True")
}

/// Rows per agency, sorted by name. `months` prices the period.
pub fn agency_rows(
    agencies: &[impl std::borrow::Borrow<AgencyCloud>],
    systems: &[impl std::borrow::Borrow<HostedSystem>],
    prices: Option<&PriceCatalogue>,
    months: f64,
) -> Vec<AgencyRow> {
    let mut by_ns: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for s in systems {
        let s = s.borrow();
        let Some(ns) = s.metadata.namespace.as_deref() else {
            continue;
        };
        let ready = s
            .status
            .as_ref()
            .and_then(|st| is_true(&st.conditions, conditions::hosted::AVAILABLE))
            .unwrap_or(false);
        let e = by_ns.entry(ns).or_default();
        e.0 += 1;
        e.1 += u32::from(ready);
    }
    let mut rows: Vec<AgencyRow> = agencies
        .iter()
        .map(|a| {
            let a = a.borrow();
            let st = a.status.clone().unwrap_or_default();
            let (mut quota, mut used) = (Totals::default(), Totals::default());
            let (mut n, mut ready) = (0, 0);
            for e in &st.environments {
                add(&mut quota, &quota_totals(&e.hard));
                add(&mut used, &quota_totals(&e.used));
                if let Some((t, r)) = by_ns.get(e.namespace.as_str()) {
                    n += t;
                    ready += r;
                }
            }
            let placement = st.placement.clone();
            AgencyRow {
                agency: a.metadata.name.clone().unwrap_or_default(),
                display_name: a.spec.cloud.agency.display_name.clone(),
                level: a.spec.cloud.security_level,
                cluster: placement.as_ref().map(|p| p.cluster.clone()).unwrap_or_default(),
                region: placement.as_ref().map(|p| p.region.clone()).unwrap_or_default(),
                zone: placement
                    .as_ref()
                    .map(|p| p.zone.as_str().to_string())
                    .unwrap_or_default(),
                quota,
                used,
                cpu_efficiency: None,
                systems: n,
                systems_ready: ready,
                backup_compliant: is_true(&st.conditions, conditions::agency::BACKUP_COMPLIANT),
                cost: prices.map(|p| cost(p, &quota, months)),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.agency.cmp(&b.agency));
    rows
}

fn totals(t: Option<&govcloud_api::datacenter::ResourceTotals>) -> Totals {
    let Some(t) = t else { return Totals::default() };
    let v = |q: &Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.as_ref()
            .and_then(|q| Milli::parse(&q.0).ok())
            .map(|m| m.0 as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    Totals {
        cpu: v(&t.cpu),
        memory: v(&t.memory),
        storage: 0.0,
        pods: v(&t.pods),
    }
}

/// Rows per cluster, from the clusters and the agency rows placed on them.
pub fn cluster_rows(clusters: &[DataCenterCluster], agencies: &[AgencyRow]) -> Vec<ClusterRow> {
    let mut rows: Vec<ClusterRow> = clusters
        .iter()
        .map(|d| {
            let name = d.metadata.name.clone().unwrap_or_default();
            let st = d.status.clone().unwrap_or_default();
            let mut row = ClusterRow {
                cluster: name.clone(),
                region: d.spec.region.clone(),
                zone: d.spec.zone.as_str().to_string(),
                reachable: is_true(&st.conditions, conditions::REACHABLE).unwrap_or(false),
                capacity: totals(st.capacity.as_ref()),
                allocatable: totals(st.allocatable.as_ref()),
                ..Default::default()
            };
            for a in agencies.iter().filter(|a| a.cluster == name) {
                add(&mut row.allocated, &a.quota);
                add(&mut row.used, &a.used);
                row.agencies += 1;
            }
            row
        })
        .collect();
    rows.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    rows
}

/// Sums over rows.
pub fn sum<'a>(it: impl Iterator<Item = &'a Totals>) -> Totals {
    let mut t = Totals::default();
    for x in it {
        add(&mut t, x);
    }
    t
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV header of agency rows.
pub const CSV_HEADER: &str = "agency,display_name,level,cluster,region,zone,quota_cpu_cores,quota_memory_bytes,quota_storage_bytes,quota_pods,used_cpu_cores,used_memory_bytes,used_storage_bytes,used_pods,cpu_efficiency,systems,systems_ready,backup_compliant,cost";

/// Agency rows as CSV (a header line, then one line per agency).
pub fn to_csv(rows: &[AgencyRow]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&r.agency),
            csv_field(&r.display_name),
            r.level,
            csv_field(&r.cluster),
            csv_field(&r.region),
            csv_field(&r.zone),
            r.quota.cpu,
            r.quota.memory,
            r.quota.storage,
            r.quota.pods,
            r.used.cpu,
            r.used.memory,
            r.used.storage,
            r.used.pods,
            opt(r.cpu_efficiency),
            r.systems,
            r.systems_ready,
            r.backup_compliant.map(|b| b.to_string()).unwrap_or_default(),
            opt(r.cost),
        );
    }
    out
}

/// Parses CSV written by [`to_csv`] back into rows (the export round-trip).
pub fn from_csv(text: &str) -> Result<Vec<AgencyRow>, String> {
    let mut records = records(text).into_iter();
    if records.next().map(|h| h.join(",")).as_deref() != Some(CSV_HEADER) {
        return Err("not a govcloud utilization CSV (header differs)".into());
    }
    let mut rows = Vec::new();
    for (i, f) in records.enumerate() {
        if f.len() != 19 {
            return Err(format!("line {}: {} fields, expected 19", i + 2, f.len()));
        }
        let num = |k: usize| {
            f[k].parse::<f64>()
                .map_err(|e| format!("line {} field {}: {e}", i + 2, k + 1))
        };
        let opt = |k: usize| if f[k].is_empty() { Ok(None) } else { num(k).map(Some) };
        rows.push(AgencyRow {
            agency: f[0].clone(),
            display_name: f[1].clone(),
            level: f[2].parse().map_err(|e| format!("line {}: level: {e}", i + 2))?,
            cluster: f[3].clone(),
            region: f[4].clone(),
            zone: f[5].clone(),
            quota: Totals {
                cpu: num(6)?,
                memory: num(7)?,
                storage: num(8)?,
                pods: num(9)?,
            },
            used: Totals {
                cpu: num(10)?,
                memory: num(11)?,
                storage: num(12)?,
                pods: num(13)?,
            },
            cpu_efficiency: opt(14)?,
            systems: num(15)? as u32,
            systems_ready: num(16)? as u32,
            backup_compliant: match f[17].as_str() {
                "" => None,
                v => Some(v == "true"),
            },
            cost: opt(18)?,
        });
    }
    Ok(rows)
}

/// CSV records (RFC 4180): quoted fields may hold commas, quotes and line breaks.
fn records(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut record = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => record.push(std::mem::take(&mut cur)),
            ('\r', false) if chars.peek() == Some(&'\n') => {}
            ('\n', false) => {
                record.push(std::mem::take(&mut cur));
                out.push(std::mem::take(&mut record));
            }
            (c, _) => cur.push(c),
        }
    }
    if !cur.is_empty() || !record.is_empty() {
        record.push(cur);
        out.push(record);
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn gib(b: f64) -> String {
    format!("{:.1} GiB", b / GIB)
}

/// Horizontal bars (inline SVG): each item a label and up to three values on one scale.
fn bars(title: &str, items: &[(String, [f64; 3])], legend: [&str; 3], fmt: &dyn Fn(f64) -> String) -> String {
    let colours = ["#c9d6ea", "#3b73b9", "#d9534f"];
    let max = items
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let row_h = 34;
    let h = 40 + items.len() * row_h;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg role=\"img\" width=\"760\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\" font-size=\"12\">",
        esc(title)
    );
    for (i, l) in legend.iter().enumerate() {
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"14\">{}</text>",
            200 + i * 150,
            colours[i],
            216 + i * 150,
            esc(l)
        );
    }
    for (i, (label, vals)) in items.iter().enumerate() {
        let y = 30 + i * row_h;
        let _ = write!(svg, "<text x=\"0\" y=\"{}\">{}</text>", y + 16, esc(label));
        for (k, v) in vals.iter().enumerate() {
            let w = (v / max * 440.0).max(0.0);
            let _ = write!(
                svg,
                "<rect x=\"190\" y=\"{}\" width=\"{w:.1}\" height=\"9\" fill=\"{}\"><title>{}: {}</title></rect>",
                y + k * 10,
                colours[k],
                esc(legend[k]),
                esc(&fmt(*v))
            );
        }
        let _ = write!(svg, "<text x=\"640\" y=\"{}\">{}</text>", y + 16, esc(&fmt(vals[1])));
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A self-contained HTML page (no scripts, no external resources) with charts and tables.
pub fn to_html(
    title: &str,
    generated: &str,
    clusters: &[ClusterRow],
    agencies: &[AgencyRow],
    currency: Option<&str>,
) -> String {
    let mut h = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}figcaption{{font-weight:bold;margin:1em 0 .3em}}.bad{{color:#d9534f}}</style></head><body><h1>{t}</h1><p>资源利用报告 · generated {g}</p>",
        t = esc(title),
        g = esc(generated)
    );
    summary_html(&mut h, clusters, agencies);
    charts_html(&mut h, clusters, agencies);
    clusters_html(&mut h, clusters);
    agencies_html(&mut h, agencies, currency);
    h.push_str("</body></html>\n");
    h
}

/// The opening line: counts, and CPU allocated and requested against allocatable.
fn summary_html(h: &mut String, clusters: &[ClusterRow], agencies: &[AgencyRow]) {
    let alloc = sum(clusters.iter().map(|c| &c.allocatable));
    let placed = sum(clusters.iter().map(|c| &c.allocated));
    let used = sum(clusters.iter().map(|c| &c.used));
    let percent = |part: f64| {
        if alloc.cpu > 0.0 { part / alloc.cpu * 100.0 } else { 0.0 }
    };
    let _ = write!(
        h,
        "<p><b>{}</b> clusters, <b>{}</b> agencies. CPU: {:.1} cores allocatable, {:.1} allocated to agencies ({:.0}%), {:.1} requested ({:.0}%).</p>",
        clusters.len(),
        agencies.len(),
        alloc.cpu,
        placed.cpu,
        percent(placed.cpu),
        used.cpu,
        percent(used.cpu),
    );
}

/// Charts of CPU and memory by cluster, and of the top agencies by CPU quota.
fn charts_html(h: &mut String, clusters: &[ClusterRow], agencies: &[AgencyRow]) {
    let legend = ["allocatable", "allocated (quotas)", "used (requests)"];
    let by_cluster = |of: fn(&Totals) -> f64| -> Vec<(String, [f64; 3])> {
        clusters
            .iter()
            .map(|c| {
                (
                    format!("{} ({})", c.cluster, c.region),
                    [of(&c.allocatable), of(&c.allocated), of(&c.used)],
                )
            })
            .collect()
    };
    h.push_str(&bars("CPU by cluster (cores)", &by_cluster(|t| t.cpu), legend, &|v| {
        format!("{v:.1}")
    }));
    h.push_str(&bars("Memory by cluster", &by_cluster(|t| t.memory), legend, &gib));
    let mut top: Vec<&AgencyRow> = agencies.iter().collect();
    top.sort_by(|a, b| b.quota.cpu.total_cmp(&a.quota.cpu));
    let top: Vec<(String, [f64; 3])> = top
        .iter()
        .take(20)
        .map(|a| (a.display_name.clone(), [0.0, a.quota.cpu, a.used.cpu]))
        .collect();
    h.push_str(&bars(
        "Top agencies by CPU quota (cores)",
        &top,
        ["", "quota", "used (requests)"],
        &|v| format!("{v:.1}"),
    ));
}

/// The table of clusters.
fn clusters_html(h: &mut String, clusters: &[ClusterRow]) {
    h.push_str("<h2>Clusters</h2><table><tr><th>cluster</th><th>region</th><th>zone</th><th>reachable</th><th>agencies</th><th>CPU allocatable</th><th>CPU allocated</th><th>CPU used</th><th>memory allocatable</th><th>memory allocated</th><th>memory used</th></tr>");
    for c in clusters {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.cluster),
            esc(&c.region),
            esc(&c.zone),
            if c.reachable { "" } else { " class=\"bad\"" },
            if c.reachable { "yes" } else { "NO" },
            c.agencies,
            c.allocatable.cpu,
            c.allocated.cpu,
            c.used.cpu,
            gib(c.allocatable.memory),
            gib(c.allocated.memory),
            gib(c.used.memory)
        );
    }
    h.push_str("</table>");
}

/// The table of agencies, with their cost when priced.
fn agencies_html(h: &mut String, agencies: &[AgencyRow], currency: Option<&str>) {
    h.push_str("<h2>Agencies</h2><table><tr><th>agency</th><th>level</th><th>cluster</th><th>CPU quota</th><th>CPU used</th><th>memory quota</th><th>memory used</th><th>storage quota</th><th>systems ready</th><th>backup compliant</th>");
    if let Some(cur) = currency {
        let _ = write!(h, "<th>cost ({})</th>", esc(cur));
    }
    h.push_str("</tr>");
    for a in agencies {
        let _ = write!(
            h,
            "<tr><td>{} ({})</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td{}>{}</td>",
            esc(&a.display_name),
            esc(&a.agency),
            a.level,
            esc(&a.cluster),
            a.quota.cpu,
            a.used.cpu,
            gib(a.quota.memory),
            gib(a.used.memory),
            gib(a.quota.storage),
            a.systems_ready,
            a.systems,
            if a.backup_compliant == Some(false) {
                " class=\"bad\""
            } else {
                ""
            },
            match a.backup_compliant {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "—",
            }
        );
        if currency.is_some() {
            let _ = write!(h, "<td>{:.2}</td>", a.cost.unwrap_or(0.0));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, cpu: f64) -> AgencyRow {
        AgencyRow {
            agency: name.into(),
            display_name: format!("机关, \"{name}\""),
            level: 2,
            cluster: "dc1".into(),
            region: "beijing".into(),
            zone: "internal".into(),
            quota: Totals {
                cpu,
                memory: 64.0 * GIB,
                storage: 100.0 * GIB,
                pods: 100.0,
            },
            used: Totals {
                cpu: cpu / 2.0,
                memory: 8.0 * GIB,
                storage: 0.0,
                pods: 3.0,
            },
            cpu_efficiency: None,
            systems: 2,
            systems_ready: 1,
            backup_compliant: Some(false),
            cost: Some(12.5),
        }
    }

    #[test]
    fn csv_round_trip_with_quotes_and_commas() {
        let rows = vec![row("mof", 16.0), row("zj", 0.5)];
        let csv = to_csv(&rows);
        assert!(csv.starts_with(CSV_HEADER));
        assert!(csv.contains("\"机关, \"\"mof\"\"\""), "{csv}");
        assert_eq!(from_csv(&csv), Ok(rows));
        assert!(from_csv("x,y\n").is_err());
    }

    #[test]
    fn csv_round_trip_with_line_breaks_in_a_display_name() {
        // Found by tests/tests/fuzz.rs: spec.agency.displayName may hold a line break.
        let mut r = row("mof", 1.0);
        r.display_name = "财政部\n信息中心\r\n".into();
        let rows = vec![r, row("zj", 2.0)];
        assert_eq!(from_csv(&to_csv(&rows)), Ok(rows));
    }

    #[test]
    fn quota_totals_and_prices() {
        let m: BTreeMap<String, String> = [
            ("requests.cpu", "1500m"),
            ("requests.memory", "2Gi"),
            ("requests.storage", "10Gi"),
            ("pods", "7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let t = quota_totals(&m);
        assert_eq!((t.cpu, t.memory, t.pods), (1.5, 2.0 * GIB, 7.0));
        let p = PriceCatalogue {
            currency: "CNY".into(),
            cpu_core_month: 100.0,
            memory_gib_month: 10.0,
            storage_gib_month: 0.5,
        };
        // 1.5 × 100 + 2 × 10 + 10 × 0.5 = 175 per month; half a month = 87.5.
        assert_eq!(cost(&p, &t, 0.5), 87.5);
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let clusters = vec![ClusterRow {
            cluster: "dc<1>".into(),
            region: "beijing".into(),
            zone: "internal".into(),
            reachable: true,
            allocatable: Totals {
                cpu: 64.0,
                memory: 256.0 * GIB,
                storage: 0.0,
                pods: 330.0,
            },
            allocated: Totals {
                cpu: 16.5,
                ..Default::default()
            },
            ..Default::default()
        }];
        let html = to_html(
            "Report",
            "2026-11-28T00:00:00Z",
            &clusters,
            &[row("mof", 16.0)],
            Some("CNY"),
        );
        assert!(html.contains("<svg") && html.contains("dc&lt;1&gt;"));
        assert!(!html.contains("<script") && !html.contains("http://") || html.contains("http://www.w3.org/2000/svg"));
        assert!(html.contains("cost (CNY)") && html.contains("12.50"));
    }
}
