//! The HTML form of a signed evidence report: a self-contained page for people (no
//! scripts run, no external resources), carrying the signed envelope it was rendered from.
//! The page is a pure function of the envelope, so [`verify_html`] renders it again from
//! the embedded envelope and compares every byte: a page edited anywhere does not verify.

use std::fmt::Write as _;

use serde_json::Value;

use super::sign::{self, PublicKey, Verified, VerifyError};
use super::{Control, Report, Status};

/// Opening of the element holding the signed envelope.
const OPEN: &str = "<script type=\"application/json\" id=\"govcloud-evidence\">";
const CLOSE: &str = "</script>";

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Met => "met",
        Status::Missing => "missing",
        Status::Failing => "failing",
        Status::NotRequired => "na",
    }
}

const STYLE: &str = "body{font-family:system-ui,'PingFang SC','Microsoft YaHei',sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top;text-align:left}\
th{background:#f3f3f3}.met{color:#176b2c}.missing{color:#a15c00}.failing{color:#b00020}.na{color:#666}\
section{border-top:1px solid #ddd;margin-top:1.2em}code{font-size:12px;word-break:break-all}.sig{background:#f8f8f8;padding:.5em}";

/// Renders the page of a signed envelope (as [`sign::sign_value`] returns it).
pub fn render(envelope: &Value) -> Result<String, VerifyError> {
    let report: Report = part(envelope, "report")?;
    let sig: sign::SignatureBlock = part(envelope, "signature")?;
    let mut o = String::with_capacity(64 * 1024);
    header(&mut o, &report, &sig);
    controls_table(&mut o, &report);
    for c in &report.controls {
        control_section(&mut o, c);
    }
    if !report.notes.is_empty() {
        o.push_str("<h2>Not read / 未能读取</h2><ul>");
        for n in &report.notes {
            let _ = write!(o, "<li>{}</li>", esc(n));
        }
        o.push_str("</ul>\n");
    }
    // The signed envelope, for `verify` (`<` escaped so that no string ends the element).
    let _ = write!(
        o,
        "{OPEN}{}{CLOSE}\n</body></html>\n",
        sign::canonical_compact(envelope).replace('<', "\\u003c")
    );
    Ok(o)
}

/// The field `key` of the envelope, read as `T`.
fn part<T: serde::de::DeserializeOwned>(envelope: &Value, key: &str) -> Result<T, VerifyError> {
    envelope
        .get(key)
        .cloned()
        .ok_or_else(|| VerifyError::Malformed(format!("no `{key}`")))
        .and_then(|r| serde_json::from_value(r).map_err(|e| VerifyError::Malformed(format!("{key}: {e}"))))
}

/// The page's head, who the report is about, the count by status and the signature.
fn header(o: &mut String, report: &Report, sig: &sign::SignatureBlock) {
    let a = &report.agency;
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>等保测评证据 Evidence report — {} ({})</title><style>{STYLE}</style></head><body>\n",
        esc(&a.display_name),
        esc(&a.name)
    );
    let _ = write!(
        o,
        "<h1>等级保护测评证据 / Security-level evidence</h1>\n<table><tr><th>机关 Agency</th><td>{} ({})</td></tr><tr><th>统一社会信用代码</th><td>{}</td></tr><tr><th>安全保护等级 Level</th><td>{}</td></tr><tr><th>网络 Zone</th><td>{}</td></tr><tr><th>期间 Period</th><td>{} — {}</td></tr><tr><th>生成 Generated</th><td>{}</td></tr></table>\n",
        esc(&a.display_name),
        esc(&a.name),
        esc(&a.credit_code),
        a.security_level,
        esc(&a.zone),
        esc(&report.period_start),
        esc(&report.period_end),
        esc(&report.generated_at)
    );
    let m = &report.summary;
    let _ = writeln!(
        o,
        "<p>{} controls: <b class=\"met\">{} met</b>, <b class=\"missing\">{} missing</b>, <b class=\"failing\">{} failing</b>, <b class=\"na\">{} not required</b>.</p>",
        m.controls, m.met, m.missing, m.failing, m.not_required
    );
    let _ = writeln!(
        o,
        "<div class=\"sig\">Signed {} (identifier {}), key <code>{}</code>, SM3 of the report <code>{}</code>. Verify offline: <code>govcloud-operator verify --key evidence-public.pem --report FILE</code>.</div>",
        esc(&sig.algorithm),
        esc(&sig.distinguishing_id),
        esc(&sig.key_id),
        esc(&sig.digest)
    );
}

/// The table of every control line, linking to its section.
fn controls_table(o: &mut String, report: &Report) {
    o.push_str("<h2>Controls / 控制项</h2>\n<table><tr><th>ID</th><th>Control</th><th>GB/T 22239-2019</th><th>Status</th></tr>\n");
    for c in &report.controls {
        let items: Vec<String> = c
            .standard
            .iter()
            .map(|s| format!("{} {}/{}/{}", s.clause, s.part, s.layer, s.item))
            .collect();
        let _ = writeln!(
            o,
            "<tr><td><a href=\"#{id}\">{id}</a></td><td>{} / {}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&c.title),
            esc(&c.title_zh),
            esc(&items.join("; ")),
            status_class(c.status),
            c.status.as_str(),
            id = esc(&c.id),
        );
    }
    o.push_str("</table>\n");
}

/// One control line: requirement, standard items, findings and evidence.
fn control_section(o: &mut String, c: &Control) {
    let _ = write!(
        o,
        "<section id=\"{}\"><h3>{} — {} / {} <span class=\"{}\">{}</span></h3>\n<p><b>Requirement:</b> {}<br><b>Enforced by:</b> {}</p>\n",
        esc(&c.id),
        esc(&c.id),
        esc(&c.title),
        esc(&c.title_zh),
        status_class(c.status),
        c.status.as_str(),
        esc(&c.requirement),
        esc(&c.enforced_by)
    );
    o.push_str("<ul>");
    for s in &c.standard {
        let _ = write!(
            o,
            "<li>GB/T 22239-2019 {} {} / {} / {}</li>",
            esc(&s.clause),
            esc(&s.part),
            esc(&s.layer),
            esc(&s.item)
        );
    }
    o.push_str("</ul>\n");
    if !c.findings.is_empty() {
        o.push_str("<table><tr><th>Problem</th><th>What to do</th></tr>");
        for f in &c.findings {
            let _ = write!(o, "<tr><td>{}</td><td>{}</td></tr>", esc(&f.problem), esc(&f.action));
        }
        o.push_str("</table>\n");
    }
    if !c.evidence.is_empty() {
        o.push_str("<table><tr><th>Cluster</th><th>Object</th><th>uid</th><th>Facts</th></tr>");
        for e in &c.evidence {
            let facts: Vec<String> = e
                .facts
                .iter()
                .map(|(k, v)| format!("<code>{}</code>: {}", esc(k), esc(v)))
                .collect();
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{} {}{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&e.cluster),
                esc(&e.kind),
                e.namespace
                    .as_deref()
                    .map(|n| format!("{}/", esc(n)))
                    .unwrap_or_default(),
                esc(&e.name),
                esc(e.uid.as_deref().unwrap_or("")),
                facts.join("<br>")
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str("</section>\n");
}

/// Verifies the HTML form: the embedded envelope verifies under `key` and the page is
/// exactly its rendering.
pub fn verify_html(bytes: &[u8], key: &PublicKey) -> Result<Verified, VerifyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::Malformed("not UTF-8 text".into()))?;
    let start = text
        .rfind(OPEN)
        .ok_or_else(|| VerifyError::Malformed("no signed report inside the page".into()))?
        + OPEN.len();
    let len = text[start..]
        .find(CLOSE)
        .ok_or_else(|| VerifyError::Malformed("the signed report inside the page is cut".into()))?;
    let envelope: Value = serde_json::from_str(&text[start..start + len])
        .map_err(|e| VerifyError::Malformed(format!("the signed report inside the page is not JSON: {e}")))?;
    // The page first (cheap): a page edited outside the envelope fails here.
    if render(&envelope)? != text {
        return Err(VerifyError::NotCanonical);
    }
    sign::verify_envelope(&envelope, key)
}

/// Verifies a report file of either form (HTML when it starts with `<`).
pub fn verify_file(bytes: &[u8], key: &PublicKey) -> Result<Verified, VerifyError> {
    if bytes.first() == Some(&b'<') {
        verify_html(bytes, key)
    } else {
        sign::verify_json(bytes, key)
    }
}

/// The two files of a signed report: (JSON, HTML).
pub fn sign_report(
    report: &Report,
    provider: &dyn sign::SigningKeyProvider,
) -> Result<(String, String), sign::SignError> {
    let envelope = sign::sign_value(&serde_json::to_value(report)?, provider)?;
    let html = render(&envelope).map_err(|e| sign::SignError::Key {
        provider: provider.describe(),
        message: e.to_string(),
    })?;
    Ok((sign::canonical_pretty(&envelope), html))
}
