//! Bad input: a corpus of malformed manifests of every kind, generated from the CRD schemas
//! the operator itself produces (wrong types, values past every minimum, maximum, length
//! and item limit, strings that break each pattern or enum, Unicode, very long strings,
//! missing required fields, invalid names and labels) plus hand-written cross-field
//! violations (credit code check characters, level and zone rules, references inside a
//! system). Each is sent to the hub's API server (server-side dry run, so nothing is stored)
//! and must be refused with a message that names the broken field.
//!
//! Inputs the API server cannot judge (references to objects that do not exist, schedules
//! that never run, a level the agency does not have) are accepted by design: they are
//! created for real and the operator must report them in a condition that says what is
//! wrong, without deleting anything.
//!
//! Figures go to target/reliability/corpus.json for docs/reliability.md.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use govcloud_api::AgencyCloud;
use govcloud_tests::*;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// Valid bases, one per kind, exercising as many optional fields as the kind has.

fn example(path: &str, doc: usize) -> Result<Value> {
    let text = std::fs::read_to_string(repo_root().join("examples").join(path))?;
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(d)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    docs.into_iter()
        .nth(doc)
        .ok_or_else(|| anyhow!("examples/{path} has no document {doc}"))
}

/// (kind, plural, namespaced, base manifest)
type Base = (&'static str, &'static str, bool, Value);

fn bases(ns: &str) -> Result<Vec<Base>> {
    let short = unique_short("cp");
    let mut dcc = example("clusters.yaml", 1)?;
    dcc["metadata"]["name"] = json!(unique("corpus-dc"));
    dcc["spec"]["schedulable"] = json!(false);

    let mut ac = example("agencies/mof-internal-l3.yaml", 0)?;
    ac["metadata"]["name"] = json!(short);
    ac["spec"]["agency"]["shortName"] = json!(short);
    ac["spec"]["agency"]["creditCode"] = json!(unique_credit_code());
    ac["spec"]["environments"][0]["quota"]["gpus"] = json!(1);
    ac["spec"]["placement"]["clusterSelector"] = json!({"govcloud.io/corpus": "none"});
    ac["spec"]["placement"]["cluster"] = json!("corpus-none");
    ac["spec"]["domains"] = json!([test_domain(&short)]);

    let mut tr = example("tenancy/mof.yaml", 0)?;
    let tshort = unique_short("cq");
    tr["metadata"]["name"] = json!(tshort);
    tr["metadata"]["namespace"] = json!(ns);
    tr["spec"]["cloud"]["agency"]["shortName"] = json!(tshort);
    tr["spec"]["cloud"]["agency"]["creditCode"] = json!(unique_credit_code());
    tr["spec"]["cloud"]["domains"] = json!([test_domain(&tshort)]);

    let mut hs = example("systems/zj-open-data-portal.yaml", 0)?;
    hs["metadata"]["name"] = json!(unique("corpus-hs"));
    hs["metadata"]["namespace"] = json!(ns);
    hs["spec"]["components"][0]["health"] = json!({"path": "/healthz", "port": 8080});
    hs["spec"]["exposure"] = json!({"mode": "GovernmentNetwork", "component": "web", "port": 8080, "host": "data.zj.gov.cn", "tlsSecretName": "tls"});
    hs["spec"]["admit"] = json!([{"system": "gateway", "to": "web", "port": 8080}]);
    hs["spec"]["components"][1]["storage"]["class"] = json!("standard");
    hs["spec"]["components"][1]["writableRootFilesystemReason"] = json!("PostgreSQL writes its socket files");

    let mut st = example("catalog/office-oa.yaml", 0)?;
    st["metadata"]["name"] = json!(unique("corpus-st"));

    let mut bl = example("backup/locations.yaml", 0)?;
    bl["metadata"]["name"] = json!(unique("corpus-bl"));
    bl["spec"]["s3Region"] = json!("cn-north-1");

    let mut bp = example("backup/mof-daily.yaml", 0)?;
    bp["metadata"]["name"] = json!(unique("corpus-bp"));
    bp["metadata"]["namespace"] = json!(ns);
    bp["spec"]["selector"] = json!({"matchLabels": {"app.kubernetes.io/part-of": "oa"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]});

    let ur = json!({
        "apiVersion": "govcloud.io/v1alpha1", "kind": "UtilizationReport",
        "metadata": {"name": unique("corpus-ur")},
        "spec": {"periodStart": "2026-10-01T00:00:00Z", "periodEnd": "2026-11-01T00:00:00Z",
                 "prices": {"cpuCoreMonth": 120.0, "memoryGiBMonth": 15.5, "storageGiBMonth": 0.6, "currency": "CNY"}}
    });
    Ok(vec![
        ("DataCenterCluster", "datacenterclusters", false, dcc),
        ("AgencyCloud", "agencyclouds", false, ac),
        ("TenancyRequest", "tenancyrequests", true, tr),
        ("HostedSystem", "hostedsystems", true, hs),
        ("ServiceTemplate", "servicetemplates", false, st),
        ("BackupLocation", "backuplocations", false, bl),
        ("BackupPolicy", "backuppolicies", true, bp),
        ("UtilizationReport", "utilizationreports", false, ur),
    ])
}

// ---------------------------------------------------------------------------------------
// Paths into manifests.

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn at_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.get_mut(k.as_str())?,
            Seg::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

/// Replaces (Some) or removes (None) the value at `path`.
fn with(base: &Value, path: &[Seg], value: Option<Value>) -> Option<Value> {
    let mut v = base.clone();
    let (last, parent) = path.split_last()?;
    let parent = at_mut(&mut v, parent)?;
    match (last, value) {
        (Seg::Key(k), Some(new)) => {
            parent.as_object_mut()?.insert(k.clone(), new);
        }
        (Seg::Key(k), None) => {
            parent.as_object_mut()?.remove(k)?;
        }
        (Seg::Index(i), Some(new)) => *parent.get_mut(*i)? = new,
        (Seg::Index(i), None) => {
            let a = parent.as_array_mut()?;
            (*i < a.len()).then(|| a.remove(*i))?;
        }
    }
    Some(v)
}

// ---------------------------------------------------------------------------------------
// The corpus.

struct Case {
    kind: &'static str,
    what: String,
    body: Value,
    /// The refusal must name one of these (a field path, or a field's name).
    names: Vec<String>,
}

/// A string that breaks a pattern: spaces, an RTL override, CJK and a NUL-free control.
const PATTERN_BREAKER: &str = " 统一\u{202E}BAD value\t";

/// Mutations of one schema node present in the base.
fn mutate(kind: &'static str, base: &Value, schema: &Value, path: &[Seg], value: &Value, out: &mut Vec<Case>) {
    let field = render(path);
    let mut case = |what: String, new: Option<Value>, names: Vec<String>| {
        if let Some(body) = with(base, path, new) {
            out.push(Case {
                kind,
                what: format!("{field}: {what}"),
                body,
                names,
            });
        }
    };
    let here = vec![field.clone()];
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    match ty {
        "string" => {
            case("a number instead of a string".into(), Some(json!(12345)), here.clone());
            if let Some(max) = num("maxLength") {
                let n = max as usize + 1;
                case(
                    format!("{n} CJK characters (max {max})"),
                    Some(json!("统".repeat(n))),
                    here.clone(),
                );
                if max >= 100.0 {
                    case("a 64 KiB string".into(), Some(json!("x".repeat(65_536))), here.clone());
                }
            }
            if num("minLength").is_some_and(|m| m >= 1.0) {
                case("empty".into(), Some(json!("")), here.clone());
            }
            if schema.get("pattern").is_some() {
                case(
                    "breaks the pattern (Unicode, spaces, RTL override)".into(),
                    Some(json!(PATTERN_BREAKER)),
                    here.clone(),
                );
            }
            if schema.get("enum").is_some() {
                case(
                    "not one of the allowed values".into(),
                    Some(json!("Sometimes")),
                    here.clone(),
                );
                if let Some(s) = value.as_str() {
                    case(
                        "allowed value in the wrong case".into(),
                        Some(json!(s.to_uppercase() + "X")),
                        here.clone(),
                    );
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time") {
                case("not a timestamp".into(), Some(json!("yesterday at noon")), here.clone());
                case(
                    "timestamp out of range".into(),
                    Some(json!("2026-13-45T25:61:00Z")),
                    here.clone(),
                );
            }
        }
        "integer" => {
            case("a string instead of an integer".into(), Some(json!("3")), here.clone());
            case("a fraction".into(), Some(json!(1.5)), here.clone());
            if let Some(min) = num("minimum") {
                case(
                    format!("below the minimum {min}"),
                    Some(json!(min as i64 - 1)),
                    here.clone(),
                );
                case("the smallest i64".into(), Some(json!(i64::MIN)), here.clone());
            }
            if let Some(max) = num("maximum") {
                case(
                    format!("above the maximum {max}"),
                    Some(json!(max as i64 + 1)),
                    here.clone(),
                );
                case("u64::MAX".into(), Some(json!(u64::MAX)), here.clone());
            }
        }
        "number" => {
            case("a string instead of a number".into(), Some(json!("1.5x")), here.clone());
            if let Some(min) = num("minimum") {
                case(format!("below the minimum {min}"), Some(json!(min - 0.5)), here.clone());
            }
            if let Some(max) = num("maximum") {
                case(format!("above the maximum {max}"), Some(json!(max + 1.0)), here.clone());
                case("1e300".into(), Some(json!(1e300)), here.clone());
            }
        }
        "boolean" => case("a string instead of a boolean".into(), Some(json!("yes")), here.clone()),
        "array" => {
            case(
                "an object instead of a list".into(),
                Some(json!({"a": 1})),
                here.clone(),
            );
            if let Some(max) = num("maxItems")
                && let Some(first) = value.get(0)
            {
                let n = max as usize + 1;
                case(
                    format!("{n} items (max {max})"),
                    Some(Value::Array(vec![first.clone(); n])),
                    here.clone(),
                );
            }
            if num("minItems").is_some_and(|m| m >= 1.0) {
                case("empty list".into(), Some(json!([])), here.clone());
            }
        }
        "object" => {
            if schema.get("properties").is_some() {
                case(
                    "a string instead of an object".into(),
                    Some(json!("text")),
                    here.clone(),
                );
            }
            for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if let Some(r) = r.as_str() {
                    let mut p = path.to_vec();
                    p.push(Seg::Key(r.to_string()));
                    if let Some(body) = with(base, &p, None) {
                        out.push(Case {
                            kind,
                            what: format!("{field}.{r}: missing (required)"),
                            body,
                            names: vec![render(&p)],
                        });
                    }
                }
            }
            if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object())
                && add.get("type").and_then(Value::as_str) == Some("string")
            {
                let mut p = path.to_vec();
                p.push(Seg::Key("corpus".into()));
                if let Some(body) = with(base, &p, Some(json!(7))) {
                    out.push(Case {
                        kind,
                        what: format!("{field}.corpus: a number in a map of strings"),
                        body,
                        names: vec![render(&p)],
                    });
                }
            }
        }
        _ => {}
    }
}

/// Walks schema and base together; mutates every node the base has.
fn walk(kind: &'static str, base: &Value, schema: &Value, path: Vec<Seg>, out: &mut Vec<Case>) {
    let Some(value) = at_mut(&mut base.clone(), &path).cloned() else {
        return;
    };
    if path.len() > 1 {
        mutate(kind, base, schema, &path, &value, out);
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            let mut p = path.clone();
            p.push(Seg::Key(k.clone()));
            walk(kind, base, s, p, out);
        }
    }
    if let Some(items) = schema.get("items")
        && value.as_array().is_some_and(|a| !a.is_empty())
    {
        let mut p = path.clone();
        p.push(Seg::Index(0));
        walk(kind, base, items, p, out);
    }
}

fn spec_schema(kind: &str) -> Result<Value> {
    let crd = govcloud_api::all_crds()
        .into_iter()
        .map(|(_, c)| c)
        .find(|c| c.spec.names.kind == kind)
        .ok_or_else(|| anyhow!("no CRD for {kind}"))?;
    let v = serde_json::to_value(&crd)?;
    Ok(v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone())
}

/// Invalid metadata, the same for every kind.
fn metadata_cases(kind: &'static str, base: &Value, out: &mut Vec<Case>) {
    let names = [
        ("upper case", "Corpus-Upper".to_string()),
        ("underscore", "corpus_name".to_string()),
        ("leading dash", "-corpus".to_string()),
        ("CJK", "财政部".to_string()),
        ("254 characters", "a".repeat(254)),
        ("double dot", "corpus..x".to_string()),
    ];
    for (what, name) in names {
        let mut v = base.clone();
        v["metadata"]["name"] = json!(name);
        out.push(Case {
            kind,
            what: format!("metadata.name: {what}"),
            body: v,
            names: vec!["metadata.name".into()],
        });
    }
    let mut v = base.clone();
    v["metadata"]["labels"] = json!({"bad key!": "x"});
    out.push(Case {
        kind,
        what: "metadata.labels: invalid key".into(),
        body: v,
        names: vec!["metadata.labels".into()],
    });
    let mut v = base.clone();
    v["metadata"]["labels"] = json!({"govcloud.io/corpus": "v".repeat(64)});
    out.push(Case {
        kind,
        what: "metadata.labels: 64-character value".into(),
        body: v,
        names: vec!["metadata.labels".into()],
    });
}

/// Sets the value at a JSON pointer, adding the last key when it is missing.
fn set(base: &Value, pointer: &str, value: Value) -> Value {
    let mut v = base.clone();
    if let Some(slot) = v.pointer_mut(pointer) {
        *slot = value;
    } else if let Some((parent, key)) = pointer.rsplit_once('/')
        && let Some(obj) = v.pointer_mut(parent).and_then(Value::as_object_mut)
    {
        obj.insert(key.to_string(), value);
    }
    v
}

/// A valid credit code with its check character replaced by a wrong one.
fn mistyped_credit_code() -> String {
    let good = unique_credit_code();
    let (head, last) = good.split_at(17);
    let wrong = if last == "0" { "1" } else { "0" };
    format!("{head}{wrong}")
}

/// Cross-field violations and domain rules the schema walk cannot produce.
fn hand_written(b: &[Base], out: &mut Vec<Case>) {
    let get = |k: &str| b.iter().find(|x| x.0 == k).map(|x| x.3.clone()).unwrap_or_default();
    let ac = get("AgencyCloud");
    let tr = get("TenancyRequest");
    let hs = get("HostedSystem");
    let st = get("ServiceTemplate");
    let ur = get("UtilizationReport");
    let mut push = |kind: &'static str, what: &str, body: Value, names: &[&str]| {
        out.push(Case {
            kind,
            what: what.to_string(),
            body,
            names: names.iter().map(|s| s.to_string()).collect(),
        })
    };
    for (prefix, kind, base) in [("/spec", "AgencyCloud", &ac), ("/spec/cloud", "TenancyRequest", &tr)] {
        let p = |s: &str| format!("{prefix}{s}");
        push(
            kind,
            "creditCode: wrong check character",
            set(base, &p("/agency/creditCode"), json!(mistyped_credit_code())),
            &["creditCode"],
        );
        push(
            kind,
            "creditCode: lower case",
            set(
                base,
                &p("/agency/creditCode"),
                // a valid code with letters (an all-digit one is its own lower case)
                json!("91110000MA0123456P".to_lowercase()),
            ),
            &["creditCode"],
        );
        push(
            kind,
            "creditCode: letters I, O, S, V, Z are never used",
            set(base, &p("/agency/creditCode"), json!("91110000IOSVZ1234X")),
            &["creditCode"],
        );
        push(
            kind,
            "creditCode: full-width digits",
            set(
                base,
                &p("/agency/creditCode"),
                json!("１１１０００００ＭＢ０１２３４５６Ｘ"),
            ),
            &["creditCode"],
        );
        push(
            kind,
            "creditCode: 17 characters",
            set(base, &p("/agency/creditCode"), json!(&unique_credit_code()[..17])),
            &["creditCode"],
        );
        push(
            kind,
            "creditCode: 19 characters",
            set(base, &p("/agency/creditCode"), json!(unique_credit_code() + "0")),
            &["creditCode"],
        );
        push(
            kind,
            "level 4 on the external zone",
            set(
                &set(base, &p("/securityLevel"), json!(4)),
                &p("/zone"),
                json!("external"),
            ),
            &["zone"],
        );
        let mut v = set(base, &p("/egress/0/internetExit"), json!(true));
        v = set(&v, &p("/zone"), json!("internal"));
        push(kind, "internet exit on the internal zone", v, &["egress"]);
        let mut v = set(base, &p("/egress/0/internetExit"), json!(true));
        v = set(&v, &p("/zone"), json!("external"));
        v = set(&v, &p("/securityLevel"), json!(4));
        push(kind, "internet exit at level 4", v, &["egress", "zone"]);
        let envs = base.pointer(&p("/environments")).cloned().unwrap_or_default();
        let mut dup = envs.as_array().cloned().unwrap_or_default();
        if let Some(first) = dup.first().cloned() {
            dup.push(first);
        }
        push(
            kind,
            "duplicate environment names",
            set(base, &p("/environments"), json!(dup)),
            &["environments"],
        );
        push(
            kind,
            "egress CIDR with a /33 prefix",
            set(base, &p("/egress/0/cidr"), json!("10.8.0.0/33")),
            &["cidr"],
        );
        push(
            kind,
            "egress CIDR that is a host name",
            set(base, &p("/egress/0/cidr"), json!("ldap.mof.gov.cn")),
            &["cidr"],
        );
        push(
            kind,
            "quota cpu of zero",
            set(base, &p("/environments/0/quota/cpu"), json!("0")),
            &["quota.cpu"],
        );
        push(
            kind,
            "quota memory of zero",
            set(base, &p("/environments/0/quota/memory"), json!("0Gi")),
            &["quota.memory"],
        );
        push(
            kind,
            "quota cpu overflowing (1e400)",
            set(base, &p("/environments/0/quota/cpu"), json!("1e400")),
            &["quota.cpu"],
        );
        push(
            kind,
            "quota memory with an unknown unit",
            set(base, &p("/environments/0/quota/memory"), json!("10Zi")),
            &["quota.memory"],
        );
        push(
            kind,
            "contact without phone or email",
            set(base, &p("/agency/contact"), json!({"name": "王主任"})),
            &["contact"],
        );
    }
    let mut v = ac.clone();
    v["metadata"]["name"] = json!(unique_short("other"));
    push(
        "AgencyCloud",
        "metadata.name differs from spec.agency.shortName",
        v,
        &["shortName"],
    );

    let comps = |v: &Value| v.pointer("/spec/components").cloned().unwrap_or_default();
    let mut dup = comps(&hs).as_array().cloned().unwrap_or_default();
    if let Some(first) = dup.first().cloned() {
        dup.push(first);
    }
    push(
        "HostedSystem",
        "duplicate component names",
        set(&hs, "/spec/components", json!(dup)),
        &["spec.components"],
    );
    push(
        "HostedSystem",
        "neither components nor a template",
        {
            let mut v = hs.clone();
            if let Some(s) = v["spec"].as_object_mut() {
                s.remove("components");
                s.remove("flows");
                s.remove("exposure");
                s.remove("admit");
            }
            v
        },
        &["spec.components"],
    );
    push(
        "HostedSystem",
        "flow from an unknown component",
        set(&hs, "/spec/flows/0/from", json!("nobody")),
        &["spec.flows"],
    );
    push(
        "HostedSystem",
        "flow to an unknown component",
        set(&hs, "/spec/flows/0/to", json!({"component": "nobody"})),
        &["spec.flows"],
    );
    push(
        "HostedSystem",
        "flow to two destinations",
        set(
            &hs,
            "/spec/flows/0/to",
            json!({"component": "db", "cidr": "10.0.0.0/8"}),
        ),
        &["spec.flows[0].to"],
    );
    push(
        "HostedSystem",
        "flow to nothing",
        set(&hs, "/spec/flows/0/to", json!({})),
        &["spec.flows[0].to"],
    );
    push(
        "HostedSystem",
        "flow to a /40 CIDR",
        set(&hs, "/spec/flows/1/to", json!({"cidr": "10.0.0.0/40"})),
        &["spec.flows[1].to.cidr"],
    );
    push(
        "HostedSystem",
        "admit to an unknown component",
        set(&hs, "/spec/admit/0/to", json!("nobody")),
        &["spec.admit"],
    );
    push(
        "HostedSystem",
        "exposure of an unknown component",
        set(&hs, "/spec/exposure/component", json!("nobody")),
        &["spec.exposure.component"],
    );
    push(
        "HostedSystem",
        "exposure on a port the component does not have",
        set(&hs, "/spec/exposure/port", json!(9999)),
        &["spec.exposure.port"],
    );
    push(
        "HostedSystem",
        "level 4 exposed to the internet",
        set(
            &set(&hs, "/spec/securityLevel", json!(4)),
            "/spec/exposure/mode",
            json!("Internet"),
        ),
        &["spec.exposure.mode"],
    );
    push(
        "HostedSystem",
        "level 4 with an internet exposure approval",
        {
            let mut v = set(&hs, "/spec/securityLevel", json!(4));
            v["spec"]["internetExposureApproval"] =
                json!({"approvedBy": "someone", "host": "data.zj.gov.cn", "reason": "a public portal for everyone"});
            v
        },
        &["spec.internetExposureApproval"],
    );
    push(
        "HostedSystem",
        "storage on a stateless component",
        set(
            &hs,
            "/spec/components/0/storage",
            json!({"size": "1Gi", "mountPath": "/data"}),
        ),
        &["spec.components[0].storage"],
    );
    push(
        "HostedSystem",
        "clashing ports",
        set(
            &hs,
            "/spec/components/0/ports",
            json!([{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
        ),
        &["spec.components[0].ports"],
    );
    push(
        "HostedSystem",
        "env with both value and secretKeyRef",
        set(
            &hs,
            "/spec/components/0/env/0",
            json!({"name": "X", "value": "1", "secretKeyRef": {"name": "s", "key": "k"}}),
        ),
        &["spec.components[0].env[0]"],
    );
    push(
        "HostedSystem",
        "env with neither value nor secretKeyRef",
        set(&hs, "/spec/components/0/env/0", json!({"name": "X"})),
        &["spec.components[0].env[0]"],
    );

    let mut v = st.clone();
    if let Some(vs) = v.pointer_mut("/spec/versions").and_then(Value::as_array_mut)
        && let Some(first) = vs.first().cloned()
    {
        vs.push(first);
    }
    push("ServiceTemplate", "duplicate versions", v, &["spec.versions"]);
    let mut v = st.clone();
    if let Some(ps) = v.pointer_mut("/spec/parameters").and_then(Value::as_array_mut)
        && let Some(first) = ps.first().cloned()
    {
        ps.push(first);
    }
    push("ServiceTemplate", "duplicate parameters", v, &["spec.parameters"]);
    let mut v = st.clone();
    if let Some(cs) = v
        .pointer_mut("/spec/versions/0/components")
        .and_then(Value::as_array_mut)
        && let Some(first) = cs.first().cloned()
    {
        cs.push(first);
    }
    push(
        "ServiceTemplate",
        "duplicate component names in a version",
        v,
        &["spec.versions[0]"],
    );

    push(
        "UtilizationReport",
        "period ends before it starts",
        set(&ur, "/spec/periodEnd", json!("2026-09-01T00:00:00Z")),
        &["periodEnd", "periodStart"],
    );
    push(
        "UtilizationReport",
        "period of zero length",
        set(&ur, "/spec/periodEnd", json!("2026-10-01T00:00:00Z")),
        &["periodEnd", "periodStart"],
    );

    let bp = get("BackupPolicy");
    for (what, s) in [
        ("schedule with four fields", "0 2 * *"),
        ("schedule with six fields", "0 0 2 * * *"),
        ("schedule as words", "every night!"),
    ] {
        push(
            "BackupPolicy",
            what,
            set(&bp, "/spec/schedule", json!(s)),
            &["spec.schedule"],
        );
        push(
            "BackupPolicy",
            &format!("drill {what}"),
            set(&bp, "/spec/drill/schedule", json!(s)),
            &["spec.drill.schedule"],
        );
    }
    for rpo in ["0h", "24", "1d", "100000h", "-1h", "24h "] {
        push(
            "BackupPolicy",
            &format!("rpo {rpo:?}"),
            set(&bp, "/spec/rpo", json!(rpo)),
            &["spec.rpo"],
        );
    }
}

fn corpus(ns: &str) -> Result<(Vec<Case>, Vec<Base>)> {
    let b = bases(ns)?;
    let mut out = Vec::new();
    for (kind, _, _, base) in &b {
        let schema = spec_schema(kind)?;
        walk(kind, base, &schema, vec![Seg::Key("spec".into())], &mut out);
        metadata_cases(kind, base, &mut out);
    }
    hand_written(&b, &mut out);
    Ok((out, b))
}

fn api_for(client: &Client, kind: &str, plural: &str, namespaced: bool, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("govcloud.io", "v1alpha1", kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    if namespaced {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        field_manager: Some("govcloud-corpus".into()),
    }
}

#[test]
fn the_generated_corpus_is_large_and_pure() -> Result<()> {
    // No cluster needed: the corpus itself (its size and that every case differs from its base).
    let (cases, bases) = corpus("corpus-ns")?;
    assert!(cases.len() >= 300, "only {} malformed manifests generated", cases.len());
    println!("{} malformed manifests generated", cases.len());
    for c in &cases {
        let base = bases.iter().find(|b| b.0 == c.kind).map(|b| &b.3);
        assert!(
            base != Some(&c.body),
            "{} {}: the mutation changed nothing",
            c.kind,
            c.what
        );
    }
    for kind in [
        "DataCenterCluster",
        "AgencyCloud",
        "TenancyRequest",
        "HostedSystem",
        "ServiceTemplate",
        "BackupLocation",
        "BackupPolicy",
        "UtilizationReport",
    ] {
        let n = cases.iter().filter(|c| c.kind == kind).count();
        assert!(n >= 15, "{kind}: only {n} cases");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_malformed_manifest_is_refused_naming_its_field() -> Result<()> {
    // With the operator running, the hub's admission policies are installed: refusals by
    // them are part of what is checked.
    operator()?;
    let hub = client(1).await?;
    let ns = unique("corpus");
    ensure_namespace(&hub, &ns).await?;
    let (cases, mut bases) = corpus(&ns)?;
    // A TenancyRequest names its requester, who must be the caller (the approval policy).
    let me = whoami(&hub).await?;
    let mut cases = cases;
    let original = bases
        .iter()
        .find(|b| b.0 == "TenancyRequest")
        .and_then(|b| b.3.pointer("/spec/requestedBy").cloned());
    for c in cases.iter_mut().filter(|c| c.kind == "TenancyRequest") {
        // Only where the case left the base's requester as it was (not the requestedBy cases).
        if original.is_some() && c.body.pointer("/spec/requestedBy") == original.as_ref() {
            c.body["spec"]["requestedBy"] = json!(me);
        }
    }
    for b in bases.iter_mut().filter(|b| b.0 == "TenancyRequest") {
        b.3["spec"]["requestedBy"] = json!(me);
    }

    // The bases themselves are valid (otherwise every refusal below proves nothing).
    for (kind, plural, namespaced, base) in &bases {
        let obj: DynamicObject = serde_json::from_value(base.clone())?;
        api_for(&hub, kind, plural, *namespaced, &ns)
            .create(&dry_run(), &obj)
            .await
            .with_context(|| format!("the valid base {kind} is refused"))?;
    }

    let results = futures::stream::iter(cases.iter().map(|c| {
        let hub = hub.clone();
        let (plural, namespaced) = bases
            .iter()
            .find(|b| b.0 == c.kind)
            .map(|b| (b.1, b.2))
            .unwrap_or(("", false));
        let ns = ns.clone();
        async move {
            let obj: DynamicObject = match serde_json::from_value(c.body.clone()) {
                Ok(o) => o,
                Err(e) => return Err(format!("{} {}: not even an object: {e}", c.kind, c.what)),
            };
            match api_for(&hub, c.kind, plural, namespaced, &ns)
                .create(&dry_run(), &obj)
                .await
            {
                Ok(_) => Err(format!("{} {}: ACCEPTED", c.kind, c.what)),
                Err(kube::Error::Api(s)) => {
                    if c.names.iter().any(|n| s.message.contains(n.as_str())) {
                        Ok(s.code)
                    } else {
                        Err(format!(
                            "{} {}: refused ({}) without naming {:?}: {}",
                            c.kind,
                            c.what,
                            s.code,
                            c.names,
                            s.message.chars().take(400).collect::<String>()
                        ))
                    }
                }
                Err(e) => Err(format!("{} {}: {e}", c.kind, c.what)),
            }
        }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let refused = results.iter().filter(|r| r.is_ok()).count();
    let mut per_kind = serde_json::Map::new();
    for c in &cases {
        let e = per_kind.entry(c.kind.to_string()).or_insert(json!(0));
        *e = json!(e.as_u64().unwrap_or(0) + 1);
    }
    std::fs::write(
        figures_dir().join("corpus.json"),
        serde_json::to_string_pretty(&json!({
            "tried": cases.len(), "refused_naming_field": refused, "failures": failures.len(),
            "per_kind": per_kind,
        }))?,
    )?;
    let _ = hub_delete_namespace(&hub, &ns).await;
    if !failures.is_empty() {
        bail!(
            "{} of {} malformed manifests were not refused naming their field:\n{}",
            failures.len(),
            cases.len(),
            failures.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
    println!("{refused} malformed manifests refused, each naming its field");
    Ok(())
}

/// The caller's user name (SelfSubjectReview).
async fn whoami(c: &Client) -> Result<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review: SelfSubjectReview =
        serde_json::from_value(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))?;
    let answer = Api::<SelfSubjectReview>::all(c.clone())
        .create(&PostParams::default(), &review)
        .await?;
    answer
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .ok_or_else(|| anyhow!("SelfSubjectReview returned no user name"))
}

async fn hub_delete_namespace(hub: &Client, ns: &str) -> Result<()> {
    Api::<k8s_openapi::api::core::v1::Namespace>::all(hub.clone())
        .delete(ns, &Default::default())
        .await?;
    Ok(())
}

use futures::StreamExt as _;

/// The condition of `obj` (DynamicObject status) whose message contains `needle`.
fn condition_saying(obj: &DynamicObject, needle: &str) -> Option<String> {
    obj.data
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| {
            c["message"].as_str().is_some_and(|m| m.contains(needle))
                && (c["status"] == "False" || c["type"] == "Degraded" || c["type"] == "Valid")
        })
        .map(|c| format!("{}={} {}: {}", c["type"], c["status"], c["reason"], c["message"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accepted_bad_references_are_reported_in_conditions() -> Result<()> {
    operator()?;
    let hub = client(1).await?;
    // An agency on dc2 (registered under a test group) to put objects in.
    let group = unique("grp");
    create_test_cluster(&hub, &group, "external", 3, 2, None).await?;
    let a = unique_short("cr");
    let ac: AgencyCloud = serde_json::from_value(agency_cloud(&a, 2, "external", &[("prod", "4", "8Gi")], &group))?;
    Api::<AgencyCloud>::all(hub.clone())
        .create(&PostParams::default(), &ac)
        .await?;
    let ns = format!("{a}-prod");
    let stray = unique("corpus-stray");
    ensure_namespace(&hub, &stray).await?;
    wait_agency_ready(&hub, &a, T).await?;

    let system = |name: &str, spec: Value| {
        json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem",
               "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}}, "spec": spec})
    };
    let web = |image: &str, level: u8| {
        json!({"securityLevel": level, "dataClassification": "general",
               "components": [{"name": "web", "image": image, "resources": {"cpu": "100m", "memory": "64Mi"}}]})
    };
    let policy = |name: &str, spec: Value| {
        json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "BackupPolicy",
               "metadata": {"name": name, "labels": {"govcloud.io/test": "true"}}, "spec": spec})
    };
    let missing_cluster = unique_short("nocl");
    let mut ac_missing: Value = agency_cloud(&missing_cluster, 2, "external", &[("prod", "1", "1Gi")], &group);
    ac_missing["spec"]["placement"] = json!({"cluster": "no-such-cluster"});
    let dcc_name = unique("corpus-dcc");
    // (kind, plural, namespace, body, what the condition must say)
    let cases: Vec<(&str, &str, Option<&str>, Value, &str)> = vec![
        (
            "HostedSystem",
            "hostedsystems",
            Some(stray.as_str()),
            system("stray", web("registry.gov.cn/a:1", 2)),
            "not an environment of any provisioned AgencyCloud",
        ),
        (
            "HostedSystem",
            "hostedsystems",
            Some(ns.as_str()),
            system(
                "no-template",
                json!({"securityLevel": 2, "dataClassification": "general", "template": {"name": "no-such-template"}}),
            ),
            "no-such-template",
        ),
        (
            "HostedSystem",
            "hostedsystems",
            Some(ns.as_str()),
            system("too-high", web("registry.gov.cn/a:1", 3)),
            "level",
        ),
        (
            "HostedSystem",
            "hostedsystems",
            Some(ns.as_str()),
            system("foreign-registry", web("docker.io/library/nginx:1", 2)),
            "registry",
        ),
        (
            "BackupPolicy",
            "backuppolicies",
            Some(stray.as_str()),
            policy("stray", json!({"schedule": "0 2 * * *"})),
            "not an environment of any provisioned AgencyCloud",
        ),
        (
            "BackupPolicy",
            "backuppolicies",
            Some(ns.as_str()),
            policy("bad-minute", json!({"schedule": "61 25 * * *"})),
            "spec.schedule",
        ),
        (
            "BackupPolicy",
            "backuppolicies",
            Some(ns.as_str()),
            policy("never", json!({"schedule": "0 0 31 2 *", "rpo": "72h"})),
            "spec.schedule",
        ),
        (
            "BackupPolicy",
            "backuppolicies",
            Some(ns.as_str()),
            policy(
                "bad-tz",
                json!({"schedule": "0 2 * * *", "timeZone": "Mars/Olympus_Mons"}),
            ),
            "Mars/Olympus_Mons",
        ),
        (
            "BackupPolicy",
            "backuppolicies",
            Some(ns.as_str()),
            policy("long-rpo", json!({"schedule": "0 2 * * *", "rpo": "9999h"})),
            "spec.rpo",
        ),
        (
            "BackupPolicy",
            "backuppolicies",
            Some(ns.as_str()),
            policy("rare", json!({"schedule": "0 2 1 * *", "rpo": "24h"})),
            "spec.rpo",
        ),
        (
            "BackupPolicy",
            "backuppolicies",
            Some(ns.as_str()),
            policy(
                "bad-drill",
                json!({"schedule": "0 2 * * *", "drill": {"schedule": "99 3 1 * *"}}),
            ),
            "spec.drill.schedule",
        ),
        ("AgencyCloud", "agencyclouds", None, ac_missing, "no-such-cluster"),
        (
            "DataCenterCluster",
            "datacenterclusters",
            None,
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "DataCenterCluster",
            "metadata": {"name": dcc_name, "labels": {"govcloud.io/test": "true"}},
            "spec": {"region": "r1", "zone": "external", "maxSecurityLevel": 2, "schedulable": false, "kubeconfigSecret": {"name": "no-such-secret"}}}),
            "no-such-secret",
        ),
    ];
    for (kind, plural, ns, body, _) in &cases {
        let obj: DynamicObject = serde_json::from_value(body.clone())?;
        api_for(&hub, kind, plural, ns.is_some(), ns.unwrap_or_default())
            .create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating {kind} {}", obj.metadata.name.clone().unwrap_or_default()))?;
    }
    let mut failures = Vec::new();
    let mut reported = Vec::new();
    for (kind, plural, ns, body, needle) in &cases {
        let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let api = api_for(&hub, kind, plural, ns.is_some(), ns.unwrap_or_default());
        match wait_for(&format!("{kind} {name} reports {needle:?}"), T, || async {
            let o = api.get(&name).await?;
            Ok(condition_saying(&o, needle))
        })
        .await
        {
            Ok(c) => reported.push(format!("{kind} {name}: {c}")),
            Err(e) => failures.push(format!("{kind} {name}: {e:#}")),
        }
    }
    // Nothing the bad objects point at was deleted: the agency is still Ready, its namespace there.
    let still = Api::<AgencyCloud>::all(hub.clone()).get(&a).await?;
    let ready = still
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    std::fs::write(
        figures_dir().join("corpus-reported.json"),
        serde_json::to_string_pretty(
            &json!({"tried": cases.len(), "reported": reported.len(), "failures": failures.len()}),
        )?,
    )?;
    for r in &reported {
        println!("{r}");
    }
    // Clean up (the agency's Delete policy removes its namespaces).
    let _ = Api::<AgencyCloud>::all(hub.clone())
        .delete(&a, &Default::default())
        .await;
    let _ = Api::<AgencyCloud>::all(hub.clone())
        .delete(&missing_cluster, &Default::default())
        .await;
    let _ = api_for(&hub, "DataCenterCluster", "datacenterclusters", false, "")
        .delete(&dcc_name, &Default::default())
        .await;
    let _ = hub_delete_namespace(&hub, &stray).await;
    if !failures.is_empty() || !ready {
        bail!("not reported: {failures:#?}; agency still ready: {ready}");
    }
    Ok(())
}
