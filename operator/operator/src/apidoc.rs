//! The API reference (`docs/api-reference.md`), generated from the CRDs' OpenAPI schemas
//! (which carry the Rust doc comments, validation and CEL rules) by
//! `govcloud-operator api-docs`. A test keeps the committed file in sync.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};

/// Renders the reference for `crds` as Markdown (deterministic: no dates).
pub fn render(crds: &[CustomResourceDefinition]) -> String {
    let mut out = String::new();
    out.push_str("# API reference\n\n");
    out.push_str(
        "Generated from the CRD schemas by `govcloud-operator api-docs --out docs/api-reference.md`; \
         do not edit by hand (`tests/tests/crd_drift.rs` fails when it is out of date). \
         `kubectl explain <kind>.spec` shows the same descriptions.\n\n",
    );
    out.push_str("| Kind | Group/Version | Scope | Short names |\n|---|---|---|---|\n");
    for crd in crds {
        let s = &crd.spec;
        let version = s.versions.first().map(|v| v.name.as_str()).unwrap_or("");
        let _ = writeln!(
            out,
            "| [{kind}](#{anchor}) | {group}/{version} | {scope} | {short} |",
            kind = s.names.kind,
            anchor = s.names.kind.to_lowercase(),
            group = s.group,
            scope = s.scope,
            short = s.names.short_names.as_deref().unwrap_or_default().join(", "),
        );
    }
    out.push('\n');
    for crd in crds {
        render_crd(&mut out, crd);
    }
    out
}

fn render_crd(out: &mut String, crd: &CustomResourceDefinition) {
    let s = &crd.spec;
    let _ = writeln!(out, "## {}\n", s.names.kind);
    for v in &s.versions {
        let _ = writeln!(
            out,
            "`{}/{}`, {}, plural `{}`{}{}.\n",
            s.group,
            v.name,
            s.scope.to_lowercase(),
            s.names.plural,
            s.names
                .short_names
                .as_ref()
                .filter(|n| !n.is_empty())
                .map(|n| format!(", short names `{}`", n.join("`, `")))
                .unwrap_or_default(),
            s.names
                .categories
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| format!(", categories `{}`", c.join("`, `")))
                .unwrap_or_default(),
        );
        let Some(schema) = v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) else {
            continue;
        };
        if let Some(d) = &schema.description {
            let _ = writeln!(out, "{}\n", one_line(d));
        }
        if let Some(cols) = v.additional_printer_columns.as_ref().filter(|c| !c.is_empty()) {
            out.push_str("Columns of `kubectl get`: ");
            let names: Vec<String> = cols
                .iter()
                .map(|c| {
                    if c.priority.unwrap_or(0) > 0 {
                        format!("{} (`-o wide`)", c.name)
                    } else {
                        c.name.clone()
                    }
                })
                .collect();
            let _ = writeln!(out, "{}.\n", names.join(", "));
        }
        for part in ["spec", "status"] {
            let Some(props) = schema.properties.as_ref().and_then(|p| p.get(part)) else {
                continue;
            };
            let _ = writeln!(out, "### {} `{part}`\n", s.names.kind);
            let mut rows = Vec::new();
            walk(part, props, true, &mut rows);
            out.push_str("| Field | Type | Required | Description |\n|---|---|---|---|\n");
            for r in rows {
                let _ = writeln!(out, "| `{}` | {} | {} | {} |", r.path, r.ty, r.required, r.text);
            }
            out.push('\n');
        }
    }
}

/// One row of a field table.
#[derive(Debug, PartialEq)]
pub struct Row {
    /// Dotted path, `[]` for array items.
    pub path: String,
    /// Type with format and enum.
    pub ty: String,
    /// "yes" or "".
    pub required: &'static str,
    /// Description, default, constraints and rules.
    pub text: String,
}

/// Walks `schema` (the field at `path`), pushing a row for it and its descendants.
pub fn walk(path: &str, schema: &JSONSchemaProps, required: bool, rows: &mut Vec<Row>) {
    rows.push(Row {
        path: path.to_string(),
        ty: type_of(schema),
        required: if required { "yes" } else { "" },
        text: describe(schema),
    });
    let req: Vec<&str> = schema
        .required
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect();
    if let Some(props) = &schema.properties {
        for (name, child) in props {
            walk(&format!("{path}.{name}"), child, req.contains(&name.as_str()), rows);
        }
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items
        && (items.properties.is_some() || items.items.is_some())
    {
        walk(&format!("{path}[]"), items, false, rows);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(
        values,
    )) = &schema.additional_properties
        && values.properties.is_some()
    {
        walk(&format!("{path}.<key>"), values, false, rows);
    }
}

fn type_of(s: &JSONSchemaProps) -> String {
    let mut t = match s.type_.as_deref() {
        Some("array") => match &s.items {
            Some(JSONSchemaPropsOrArray::Schema(i)) => format!("[]{}", i.type_.as_deref().unwrap_or("object")),
            _ => "array".into(),
        },
        Some("object") if s.additional_properties.is_some() && s.properties.is_none() => "map".into(),
        Some(t) => t.to_string(),
        None if s.x_kubernetes_int_or_string == Some(true) => "int or string".into(),
        None if s.x_kubernetes_preserve_unknown_fields == Some(true) => "any".into(),
        None if s.any_of.is_some() || s.one_of.is_some() => "one of several".into(),
        None => "object".into(),
    };
    if let Some(f) = &s.format {
        let _ = write!(t, " ({f})");
    }
    t
}

fn describe(s: &JSONSchemaProps) -> String {
    let mut parts = Vec::new();
    if let Some(d) = &s.description {
        parts.push(one_line(d));
    }
    if let Some(e) = &s.enum_ {
        let values: Vec<String> = e.iter().map(|v| format!("`{}`", json_text(&v.0))).collect();
        parts.push(format!("One of {}.", values.join(", ")));
    }
    if let Some(d) = &s.default {
        parts.push(format!("Default `{}`.", json_text(&d.0)));
    }
    let mut limits = Vec::new();
    if let Some(m) = s.minimum {
        limits.push(format!("minimum {m}"));
    }
    if let Some(m) = s.maximum {
        limits.push(format!("maximum {m}"));
    }
    if let Some(m) = s.min_length {
        limits.push(format!("at least {m} characters"));
    }
    if let Some(m) = s.max_length {
        limits.push(format!("at most {m} characters"));
    }
    if let Some(m) = s.min_items {
        limits.push(format!("at least {m} items"));
    }
    if let Some(m) = s.max_items {
        limits.push(format!("at most {m} items"));
    }
    if let Some(p) = &s.pattern {
        limits.push(format!("pattern `{}`", p.replace('|', "\\|")));
    }
    if !limits.is_empty() {
        parts.push(format!("Limits: {}.", limits.join(", ")));
    }
    for rule in s.x_kubernetes_validations.as_deref().unwrap_or_default() {
        let msg = rule.message.as_deref().unwrap_or("");
        parts.push(format!(
            "Rule: `{}`{}",
            rule.rule.replace('|', "\\|"),
            if msg.is_empty() {
                String::new()
            } else {
                format!(" — {}", one_line(msg))
            }
        ));
    }
    parts.join(" ")
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{JSON, ValidationRule};
    use std::collections::BTreeMap;

    fn leaf(ty: &str) -> JSONSchemaProps {
        JSONSchemaProps {
            type_: Some(ty.into()),
            ..Default::default()
        }
    }

    #[test]
    fn walks_nested_objects_arrays_enums_defaults_and_rules() {
        let mut item = leaf("object");
        item.properties = Some(BTreeMap::from([("name".to_string(), leaf("string"))]));
        item.required = Some(vec!["name".into()]);
        let mut list = leaf("array");
        list.items = Some(JSONSchemaPropsOrArray::Schema(Box::new(item)));
        list.max_items = Some(3);
        let mut level = leaf("integer");
        level.minimum = Some(1.0);
        level.maximum = Some(4.0);
        level.default = Some(JSON(serde_json::json!(2)));
        let mut zone = leaf("string");
        zone.enum_ = Some(vec![
            JSON(serde_json::json!("internal")),
            JSON(serde_json::json!("external")),
        ]);
        let mut spec = leaf("object");
        spec.properties = Some(BTreeMap::from([
            ("items".to_string(), list),
            ("level".to_string(), level),
            ("zone".to_string(), zone),
        ]));
        spec.required = Some(vec!["zone".into()]);
        spec.x_kubernetes_validations = Some(vec![ValidationRule {
            rule: "self.level > 2 || self.zone == 'internal'".into(),
            message: Some("level 1-2 | internal only".into()),
            ..Default::default()
        }]);
        let mut rows = Vec::new();
        walk("spec", &spec, true, &mut rows);
        let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec",
                "spec.items",
                "spec.items[]",
                "spec.items[].name",
                "spec.level",
                "spec.zone"
            ]
        );
        assert_eq!(rows[1].ty, "[]object");
        assert!(rows[1].text.contains("at most 3 items"));
        assert_eq!(rows[3].required, "yes");
        assert!(rows[4].text.contains("Default `2`") && rows[4].text.contains("minimum 1"));
        assert_eq!(rows[5].required, "yes");
        assert!(rows[5].text.contains("One of `internal`, `external`"));
        assert!(
            rows[0]
                .text
                .contains("Rule: `self.level > 2 \\|\\| self.zone == 'internal'` — level 1-2 \\| internal only")
        );
    }

    #[test]
    fn renders_every_crd_deterministically() {
        let crds: Vec<CustomResourceDefinition> = govcloud_api::all_crds().into_iter().map(|(_, c)| c).collect();
        let a = render(&crds);
        assert_eq!(a, render(&crds));
        for (_, crd) in govcloud_api::all_crds() {
            assert!(a.contains(&format!("## {}\n", crd.spec.names.kind)));
        }
        assert!(a.contains("`spec.securityLevel`") || a.contains(".securityLevel`"));
    }
}
