//! Catalogue templates: expanding a ServiceTemplate for a HostedSystem, and checking the
//! effective system (template + own components) the way admission checks a plain one.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use govcloud_api::catalog::ServiceTemplateSpec;
use govcloud_api::hosted::{ExpandedTemplate, TemplateRef};
use govcloud_api::hosted::{Exposure, ExposureMode, HostedSystemSpec};

/// A template expanded for one system: what it contributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Expansion {
    /// Shown in the system's status.
    pub expanded: ExpandedTemplate,
    /// The template's default exposure, parameters substituted.
    pub exposure: Option<Exposure>,
}

/// Replaces every `${name}` in every string of `v`; collects names that have no value.
fn substitute(v: &mut Value, values: &BTreeMap<String, String>, unknown: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                match after.find('}') {
                    Some(end) => {
                        let name = &after[..end];
                        match values.get(name) {
                            Some(val) => out.push_str(val),
                            None => {
                                unknown.insert(name.to_string());
                                out.push_str(&rest[start..start + 3 + end]);
                            }
                        }
                        rest = &after[end + 1..];
                    }
                    None => {
                        out.push_str(&rest[start..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, values, unknown)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute(x, values, unknown)),
        _ => {}
    }
}

/// Expands template `name` (spec `tpl`) as `r` asks. Errors name the field to fix.
pub fn expand(name: &str, tpl: &ServiceTemplateSpec, r: &TemplateRef) -> Result<Expansion, Vec<String>> {
    let mut errors = Vec::new();
    let published = || {
        tpl.versions
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let version = match &r.version {
        Some(want) => match tpl.versions.iter().find(|v| &v.version == want) {
            Some(v) => v,
            None => {
                return Err(vec![format!(
                    "spec.template.version: ServiceTemplate {name} has no version {want} (published: {})",
                    published()
                )]);
            }
        },
        None => match tpl.versions.last() {
            Some(v) => v,
            None => return Err(vec![format!("ServiceTemplate {name} has no published version")]),
        },
    };
    let declared: BTreeSet<&str> = tpl.parameters.iter().map(|p| p.name.as_str()).collect();
    for k in r.parameters.keys().filter(|k| !declared.contains(k.as_str())) {
        errors.push(format!(
            "spec.template.parameters.{k}: ServiceTemplate {name} has no such parameter (it has: {})",
            declared.iter().copied().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut values = BTreeMap::new();
    for p in &tpl.parameters {
        let value = match (r.parameters.get(&p.name), &p.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                errors.push(format!(
                    "spec.template.parameters.{} is required by ServiceTemplate {name}{}",
                    p.name,
                    p.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
                ));
                continue;
            }
        };
        if let Some(pattern) = &p.pattern {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(&value) => {}
                Ok(_) => errors.push(format!(
                    "spec.template.parameters.{}: {value:?} does not match {pattern}",
                    p.name
                )),
                Err(e) => errors.push(format!(
                    "ServiceTemplate {name}: parameter {} has an invalid pattern ({e}); tell the platform team",
                    p.name
                )),
            }
        }
        values.insert(p.name.clone(), value);
    }
    let mut body = match serde_json::to_value(version) {
        Ok(b) => b,
        Err(e) => return Err(vec![format!("ServiceTemplate {name}: {e}")]),
    };
    let mut unknown = BTreeSet::new();
    substitute(&mut body, &values, &mut unknown);
    for u in unknown {
        errors.push(format!(
            "ServiceTemplate {name} version {} uses ${{{u}}}, which is not a declared parameter; tell the platform team",
            version.version
        ));
    }
    let mut v: govcloud_api::catalog::TemplateVersion = match serde_json::from_value(body) {
        Ok(v) => v,
        Err(e) => {
            errors.push(format!(
                "ServiceTemplate {name}: parameters made an invalid system: {e}"
            ));
            return Err(errors);
        }
    };
    for (component, n) in &r.replicas {
        match v.components.iter_mut().find(|c| &c.name == component) {
            Some(c) => c.replicas = *n,
            None => errors.push(format!(
                "spec.template.replicas.{component}: ServiceTemplate {name} has no component {component}"
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Expansion {
        expanded: ExpandedTemplate {
            name: name.to_string(),
            version: v.version,
            components: v.components,
            flows: v.flows,
        },
        exposure: v.exposure,
    })
}

/// The system as it runs: template components and flows, then its own; its own exposure
/// replaces the template's. Checks what admission checks for a system without a template.
pub fn effective(spec: &HostedSystemSpec, expansion: Option<&Expansion>) -> Result<HostedSystemSpec, Vec<String>> {
    let mut out = spec.clone();
    out.template = None;
    let mut errors = Vec::new();
    if let Some(x) = expansion {
        let template_names: BTreeSet<&str> = x.expanded.components.iter().map(|c| c.name.as_str()).collect();
        for (i, c) in spec.components.iter().enumerate() {
            if template_names.contains(c.name.as_str()) {
                errors.push(format!(
                    "spec.components[{i}].name: {} is already a component of template {}; pick another name or set its replicas in spec.template.replicas",
                    c.name, x.expanded.name
                ));
            }
        }
        out.components = x.expanded.components.iter().chain(&spec.components).cloned().collect();
        out.flows = x.expanded.flows.iter().chain(&spec.flows).cloned().collect();
        if out.exposure.is_none() {
            out.exposure = x.exposure.clone();
        }
    }
    if out.components.is_empty() {
        errors.push("spec.components: the system has no components".to_string());
    }
    check_quantities(
        &out,
        expansion.map(|x| x.expanded.components.len()).unwrap_or(0),
        &mut errors,
    );
    let names: BTreeSet<&str> = out.components.iter().map(|c| c.name.as_str()).collect();
    let own_flows = out.flows.len() - spec.flows.len();
    for (i, f) in out.flows.iter().enumerate() {
        let field = if i >= own_flows {
            format!("spec.flows[{}]", i - own_flows)
        } else {
            format!("template flow {i}")
        };
        if !names.contains(f.from.as_str()) {
            errors.push(format!("{field}.from: no component named {}", f.from));
        }
        if let Some(t) = &f.to.component
            && !names.contains(t.as_str())
        {
            errors.push(format!("{field}.to.component: no component named {t}"));
        }
    }
    for (i, a) in out.admit.iter().enumerate() {
        if !names.contains(a.to.as_str()) {
            errors.push(format!("spec.admit[{i}].to: no component named {}", a.to));
        }
    }
    if let Some(e) = out.exposure.as_ref().filter(|e| e.mode != ExposureMode::None) {
        match out.components.iter().find(|c| c.name == e.component) {
            None => errors.push(format!("spec.exposure.component: no component named {}", e.component)),
            Some(c) if !c.ports.iter().any(|p| p.port == e.port) => errors.push(format!(
                "spec.exposure.port: component {} does not serve port {}",
                c.name, e.port
            )),
            Some(_) => {}
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Quantities must be plain after expansion (the schema lets `${parameter}` through for
/// templates). The first `from_template` components came from the template.
fn check_quantities(spec: &HostedSystemSpec, from_template: usize, errors: &mut Vec<String>) {
    static CPU: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"^[0-9]+(\.[0-9]+)?m?$").ok());
    static MEMORY: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$").ok());
    static SIZE: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"^[0-9]+(Mi|Gi|Ti)$").ok());
    let ok = |re: &Option<regex::Regex>, v: &str| re.as_ref().is_some_and(|r| r.is_match(v));
    for (i, c) in spec.components.iter().enumerate() {
        let field = if i < from_template {
            format!("template component {}", c.name)
        } else {
            format!("spec.components[{}]", i - from_template)
        };
        if !ok(&CPU, &c.resources.cpu) {
            errors.push(format!(
                "{field}.resources.cpu: {:?} is not a CPU quantity such as 500m",
                c.resources.cpu
            ));
        }
        if !ok(&MEMORY, &c.resources.memory) {
            errors.push(format!(
                "{field}.resources.memory: {:?} is not a memory quantity such as 512Mi",
                c.resources.memory
            ));
        }
        if let Some(s) = &c.storage
            && !ok(&SIZE, &s.size)
        {
            errors.push(format!("{field}.storage.size: {:?} is not a size such as 20Gi", s.size));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> ServiceTemplateSpec {
        let yaml = r#"
displayName: 协同办公系统
description: Office automation
category: office
parameters:
  - {name: domain, description: the agency's host name}
  - {name: storage, default: 20Gi, pattern: "^[0-9]+Gi$"}
versions:
  - version: "1.0"
    components:
      - {name: web, image: "registry.gov.cn/catalog/oa-web:1.0", ports: [{name: http, port: 8080}]}
      - {name: db, kind: Stateful, image: "registry.gov.cn/catalog/postgres:16", ports: [{name: pg, port: 5432}], storage: {size: "${storage}", mountPath: /data}}
    flows: [{from: web, to: {component: db}}]
    exposure: {mode: GovernmentNetwork, component: web, port: 8080, host: "oa.${domain}"}
  - version: "1.1"
    components:
      - {name: web, image: "registry.gov.cn/catalog/oa-web:1.1", replicas: 2, ports: [{name: http, port: 8080}]}
      - {name: db, kind: Stateful, image: "registry.gov.cn/catalog/postgres:16", ports: [{name: pg, port: 5432}], storage: {size: "${storage}", mountPath: /data}}
    flows: [{from: web, to: {component: db}}]
"#;
        match serde_yaml::from_str(yaml) {
            Ok(t) => t,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    fn tref(yaml: &str) -> TemplateRef {
        match serde_yaml::from_str(yaml) {
            Ok(t) => t,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    #[test]
    fn follows_the_newest_version_unless_pinned() {
        let t = template();
        let latest =
            expand("oa", &t, &tref("{name: oa, parameters: {domain: mof.gov.cn}}")).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(latest.expanded.version, "1.1");
        assert_eq!(
            latest.expanded.components[0].image,
            "registry.gov.cn/catalog/oa-web:1.1"
        );
        assert_eq!(
            latest.expanded.components[1].storage.as_ref().map(|s| s.size.as_str()),
            Some("20Gi")
        );
        let pinned = expand(
            "oa",
            &t,
            &tref("{name: oa, version: '1.0', parameters: {domain: mof.gov.cn, storage: 50Gi}}"),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(pinned.expanded.version, "1.0");
        assert_eq!(
            pinned.exposure.as_ref().and_then(|e| e.host.as_deref()),
            Some("oa.mof.gov.cn")
        );
        assert_eq!(
            pinned.expanded.components[1].storage.as_ref().map(|s| s.size.as_str()),
            Some("50Gi")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let t = template();
        let e = expand("oa", &t, &tref("{name: oa, version: '9'}"))
            .err()
            .unwrap_or_default();
        assert!(
            e[0].starts_with("spec.template.version: ServiceTemplate oa has no version 9 (published: 1.0, 1.1)"),
            "{e:?}"
        );
        let e = expand(
            "oa",
            &t,
            &tref("{name: oa, parameters: {storage: 5Ti, colour: red}, replicas: {cache: 2}}"),
        )
        .err()
        .unwrap_or_default();
        let all = e.join("\n");
        assert!(
            all.contains("spec.template.parameters.colour: ServiceTemplate oa has no such parameter"),
            "{all}"
        );
        assert!(
            all.contains("spec.template.parameters.domain is required by ServiceTemplate oa: the agency's host name"),
            "{all}"
        );
        assert!(
            all.contains("spec.template.parameters.storage: \"5Ti\" does not match ^[0-9]+Gi$"),
            "{all}"
        );
        assert!(
            all.contains("spec.template.replicas.cache: ServiceTemplate oa has no component cache"),
            "{all}"
        );
    }

    #[test]
    fn undeclared_placeholders_are_reported() {
        let mut t = template();
        t.versions[1].components[0].image = "registry.gov.cn/${repo}/oa:1".into();
        let e = expand("oa", &t, &tref("{name: oa, parameters: {domain: x}}"))
            .err()
            .unwrap_or_default();
        assert!(
            e.iter()
                .any(|m| m.contains("uses ${repo}, which is not a declared parameter")),
            "{e:?}"
        );
    }

    #[test]
    fn effective_merges_and_checks() {
        let t = template();
        let x = expand(
            "oa",
            &t,
            &tref("{name: oa, parameters: {domain: mof.gov.cn}, replicas: {web: 3}}"),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let spec: HostedSystemSpec = serde_yaml::from_str(
            r#"
securityLevel: 2
dataClassification: general
template: {name: oa}
components: [{name: worker, image: registry.gov.cn/mof/worker:1}]
flows: [{from: worker, to: {component: db}, port: 5432}]
exposure: {mode: GovernmentNetwork, component: web, port: 8080, host: oa.mof.gov.cn}
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let eff = effective(&spec, Some(&x)).unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<_> = eff.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["web", "db", "worker"]);
        assert_eq!(eff.components[0].replicas, 3);
        assert_eq!(eff.flows.len(), 2);
        assert!(eff.template.is_none());

        let mut clash = spec.clone();
        clash.components[0].name = "db".into();
        clash.flows.clear();
        let e = effective(&clash, Some(&x)).err().unwrap_or_default();
        assert!(
            e[0].starts_with("spec.components[0].name: db is already a component of template oa"),
            "{e:?}"
        );

        let mut bad = spec.clone();
        bad.flows[0].to.component = Some("cache".into());
        if let Some(e) = bad.exposure.as_mut() {
            e.port = 9999;
        }
        let e = effective(&bad, Some(&x)).err().unwrap_or_default().join("\n");
        assert!(
            e.contains("spec.flows[0].to.component: no component named cache"),
            "{e}"
        );
        assert!(
            e.contains("spec.exposure.port: component web does not serve port 9999"),
            "{e}"
        );
    }

    #[test]
    fn placeholders_must_be_resolved_to_quantities() {
        let mut spec: HostedSystemSpec = serde_yaml::from_str(
            "{securityLevel: 1, dataClassification: general, components: [{name: a, image: x, resources: {cpu: '${c}', memory: 1Gi}}]}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = effective(&spec, None).err().unwrap_or_default();
        assert_eq!(
            e,
            ["spec.components[0].resources.cpu: \"${c}\" is not a CPU quantity such as 500m"]
        );
        spec.components[0].resources.cpu = "250m".into();
        assert!(effective(&spec, None).is_ok());
    }

    #[test]
    fn substitution_leaves_plain_strings_alone() {
        let mut v = serde_json::json!({"a": "x${p}y${p}", "b": ["$p", "${", "${q"], "c": 3});
        let mut unknown = BTreeSet::new();
        substitute(
            &mut v,
            &BTreeMap::from([("p".to_string(), "1".to_string())]),
            &mut unknown,
        );
        assert_eq!(v, serde_json::json!({"a": "x1y1", "b": ["$p", "${", "${q"], "c": 3}));
        assert!(unknown.is_empty());
    }
}
