//! Small text helpers: quantities, bars, ages and aligned tables.

use govcloud_core::quantity::Milli;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Width of a quota bar, between the brackets.
pub const BAR_WIDTH: usize = 20;

/// `[#######.............]` for `fraction` (clamped to 0..=1).
pub fn bar(fraction: f64, width: usize) -> String {
    let f = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = ((f * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// How a resource's amounts are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// CPU cores: `7`, `0.25`.
    Cores,
    /// Bytes with a binary suffix: `4Gi`, `1.5Ti`.
    Bytes,
    /// A count: `30`.
    Count,
}

impl Unit {
    /// The unit of a ResourceQuota key.
    pub fn of(resource: &str) -> Unit {
        match resource {
            "requests.cpu" | "limits.cpu" | "cpu" => Unit::Cores,
            r if r.contains("memory") || r.contains("storage") => Unit::Bytes,
            _ => Unit::Count,
        }
    }
}

fn trim_decimals(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// An amount in milli-units, for people.
pub fn amount(m: Milli, unit: Unit) -> String {
    let v = m.0 as f64 / 1000.0;
    match unit {
        Unit::Cores => trim_decimals(v, 2),
        Unit::Count => trim_decimals(v, 0),
        Unit::Bytes => {
            let mut value = v;
            let mut suffix = "";
            for s in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
                if value.abs() < 1024.0 {
                    break;
                }
                value /= 1024.0;
                suffix = s;
            }
            format!("{}{suffix}", trim_decimals(value, 1))
        }
    }
}

/// The label of a ResourceQuota key: `requests.cpu` → `cpu`, `requests.nvidia.com/gpu` → `gpu`.
pub fn resource_label(key: &str) -> String {
    let k = key.strip_prefix("requests.").unwrap_or(key);
    match k {
        "nvidia.com/gpu" => "gpu".to_string(),
        other => other.to_string(),
    }
}

/// Order of quota lines: cpu, memory, storage, pods, gpu, then the rest by name.
pub fn resource_rank(key: &str) -> (usize, String) {
    let rank = match key {
        "requests.cpu" => 0,
        "requests.memory" => 1,
        "requests.storage" => 2,
        "pods" => 3,
        "requests.nvidia.com/gpu" => 4,
        _ => 5,
    };
    (rank, key.to_string())
}

/// Seconds since `t` (0 for times in the future).
pub fn age_seconds(t: &Time, now: Timestamp) -> i64 {
    (now.as_second() - t.0.as_second()).max(0)
}

/// An age like kubectl prints it: `45s`, `12m`, `5h`, `3d`.
pub fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Columns aligned with two spaces, each line indented by `indent`; the last column is not padded.
pub fn table(indent: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(indent);
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i].saturating_sub(c.chars().count()) + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(bar(0.35, 20), "[#######.............]");
        assert_eq!(bar(0.0, 4), "[....]");
        assert_eq!(bar(1.7, 4), "[####]");
        assert_eq!(bar(f64::NAN, 4), "[....]");
    }

    #[test]
    fn amounts_read_like_quantities() {
        let p = |s: &str| Milli::parse(s).unwrap_or_default();
        assert_eq!(amount(p("7"), Unit::Cores), "7");
        assert_eq!(amount(p("250m"), Unit::Cores), "0.25");
        assert_eq!(amount(p("64Gi"), Unit::Bytes), "64Gi");
        assert_eq!(amount(p("1536Mi"), Unit::Bytes), "1.5Gi");
        assert_eq!(amount(p("0"), Unit::Bytes), "0");
        assert_eq!(amount(p("100"), Unit::Count), "100");
        assert_eq!(Unit::of("requests.memory"), Unit::Bytes);
        assert_eq!(resource_label("requests.nvidia.com/gpu"), "gpu");
    }

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(5 * 3600), "5h");
        assert_eq!(age(3 * 86400), "3d");
    }

    #[test]
    fn tables_align() {
        let t = table(
            "  ",
            &["NAME", "READY"],
            &[vec!["a".into(), "1/1".into()], vec!["long-name".into(), "0/2".into()]],
        );
        assert_eq!(t, "  NAME       READY\n  a          1/1\n  long-name  0/2\n");
    }
}
