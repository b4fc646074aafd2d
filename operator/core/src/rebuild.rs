//! The hub's own state, backed up and rebuilt (`govcloud-operator hub-backup` and
//! `hub-restore`): every decision and declaration the platform keeps on the hub — tenancy
//! requests with their decisions, agency clouds, clusters, backup locations and policies,
//! hosted systems with their exposure approvals, catalogue templates — as one document with
//! a digest, and the order and form in which a rebuild writes them back.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use govcloud_api::labels::RESTORED_FROM_ANNOTATION;

/// The document's kind.
pub const BUNDLE_KIND: &str = "HubBackup";
/// The API group and version of every kind in it.
pub const API_VERSION: &str = "govcloud.io/v1alpha1";

/// The kinds a hub backup holds, in the order a rebuild creates them (what an object refers
/// to comes first): (kind, plural, namespaced). Reports and evidence are derived and are
/// made again; Secrets (member kubeconfigs, store credentials) come from the platform's
/// own secret store, never from this document.
pub const KINDS: [(&str, &str, bool); 7] = [
    ("DataCenterCluster", "datacenterclusters", false),
    ("BackupLocation", "backuplocations", false),
    ("ServiceTemplate", "servicetemplates", false),
    ("AgencyCloud", "agencyclouds", false),
    ("TenancyRequest", "tenancyrequests", true),
    ("HostedSystem", "hostedsystems", true),
    ("BackupPolicy", "backuppolicies", true),
];

/// An object as the backup keeps it: identity, labels, annotations, spec and status;
/// nothing the API server assigns (uid, resourceVersion, managed fields, timestamps) and no
/// finalizers (the operator adds its own).
pub fn keep(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut meta = Map::new();
    for k in ["name", "namespace", "labels", "annotations"] {
        if let Some(v) = m.get(k).filter(|v| !v.is_null()) {
            meta.insert(k.into(), v.clone());
        }
    }
    let mut out = json!({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta});
    for k in ["spec", "status"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            out[k] = v.clone();
        }
    }
    out
}

/// The SHA-256 (hex) of the items, each in its canonical JSON (serde_json sorts no keys, so
/// the items are re-serialised through `BTreeMap`s first).
pub fn digest(items: &[Value]) -> String {
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, canonical(v))).collect();
                serde_json::to_value(sorted).unwrap_or(Value::Null)
            }
            Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for i in items {
        h.update(canonical(i).to_string().as_bytes());
        h.update(b"\n");
    }
    h.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The backup document of `items` (already [`keep`]-ed), taken at `taken` (RFC 3339).
pub fn bundle(items: Vec<Value>, taken: &str) -> Value {
    json!({"apiVersion": API_VERSION, "kind": BUNDLE_KIND, "taken": taken,
           "digest": digest(&items), "items": items})
}

/// What is wrong with a backup document: its kind, an item of a kind it should not hold, or
/// a digest that does not match its items (changed after it was taken).
pub fn check(doc: &Value) -> Result<Vec<Value>, String> {
    if doc["kind"] != BUNDLE_KIND {
        return Err(format!(
            "not a hub backup (kind {} instead of {BUNDLE_KIND})",
            doc["kind"]
        ));
    }
    let items = doc["items"].as_array().cloned().unwrap_or_default();
    for i in &items {
        let kind = i["kind"].as_str().unwrap_or("");
        if i["apiVersion"] != API_VERSION || !KINDS.iter().any(|(k, _, _)| *k == kind) {
            return Err(format!(
                "item {} {} is not a kind a hub backup holds",
                i["apiVersion"], i["kind"]
            ));
        }
        if i["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            return Err(format!("an item of kind {kind} has no name"));
        }
    }
    let d = digest(&items);
    if doc["digest"] != d.as_str() {
        return Err(format!(
            "the digest {} does not match the items ({d}): the file was changed after it was taken",
            doc["digest"]
        ));
    }
    Ok(items)
}

/// The items in the order a rebuild creates them ([`KINDS`]), each as the body to create
/// (with the annotation naming the backup) and the status to write after.
pub fn restore_plan(items: &[Value], digest: &str) -> Vec<(Value, Option<Value>)> {
    let mut out = Vec::new();
    for (kind, _, _) in KINDS {
        for i in items.iter().filter(|i| i["kind"] == kind) {
            let mut body = keep(i);
            let status = body.as_object_mut().and_then(|o| o.remove("status"));
            let ann = body["metadata"]
                .as_object_mut()
                .map(|m| m.entry("annotations").or_insert_with(|| json!({})));
            if let Some(Value::Object(a)) = ann {
                a.insert(RESTORED_FROM_ANNOTATION.into(), json!(digest));
            }
            out.push((body, status));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: &str, name: &str, ns: Option<&str>) -> Value {
        let mut v = json!({"apiVersion": API_VERSION, "kind": kind,
            "metadata": {"name": name, "uid": "u-1", "resourceVersion": "42", "managedFields": [{}],
                         "finalizers": ["govcloud.io/x"], "labels": {"a": "b"}},
            "spec": {"x": 1}, "status": {"conditions": []}});
        if let Some(n) = ns {
            v["metadata"]["namespace"] = json!(n);
        }
        v
    }

    #[test]
    fn a_backup_keeps_decisions_and_drops_what_the_server_assigns() {
        let k = keep(&item("TenancyRequest", "r1", Some("tenancy-requests")));
        assert_eq!(
            k["metadata"],
            json!({"name": "r1", "namespace": "tenancy-requests", "labels": {"a": "b"}})
        );
        assert_eq!(k["spec"], json!({"x": 1}));
        assert!(k.get("status").is_some());
    }

    #[test]
    fn a_changed_backup_is_refused_and_a_good_one_restores_in_dependency_order() {
        let items: Vec<Value> = [
            item("HostedSystem", "portal", Some("mof-prod")),
            item("TenancyRequest", "mof", Some("tenancy-requests")),
            item("AgencyCloud", "mof", None),
            item("DataCenterCluster", "bj", None),
        ]
        .iter()
        .map(keep)
        .collect();
        let doc = bundle(items, "2026-12-07T00:00:00Z");
        let got = check(&doc).unwrap_or_else(|e| panic!("{e}"));
        let plan = restore_plan(&got, doc["digest"].as_str().unwrap_or(""));
        let kinds: Vec<&str> = plan.iter().map(|(b, _)| b["kind"].as_str().unwrap_or("")).collect();
        assert_eq!(
            kinds,
            ["DataCenterCluster", "AgencyCloud", "TenancyRequest", "HostedSystem"]
        );
        for (b, st) in &plan {
            assert!(b.get("status").is_none());
            assert!(st.is_some());
            assert_eq!(b["metadata"]["annotations"][RESTORED_FROM_ANNOTATION], doc["digest"]);
        }
        // One changed byte of a decision: refused.
        let mut bad = doc.clone();
        bad["items"][1]["spec"]["x"] = json!(2);
        assert!(check(&bad).is_err_and(|e| e.contains("changed after it was taken")));
        // A kind it does not hold (a Secret smuggled in): refused.
        let mut smuggled = doc.clone();
        if let Some(a) = smuggled["items"].as_array_mut() {
            a.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}));
        }
        smuggled["digest"] = json!(digest(smuggled["items"].as_array().map(Vec::as_slice).unwrap_or(&[])));
        assert!(check(&smuggled).is_err_and(|e| e.contains("not a kind")));
        assert!(check(&json!({"kind": "List"})).is_err());
        // The digest does not depend on key order.
        let a = json!({"b": 1, "a": {"d": 2, "c": 3}});
        let b: Value = serde_json::from_str(r#"{"a": {"c": 3, "d": 2}, "b": 1}"#).unwrap_or_default();
        assert_eq!(digest(&[a]), digest(&[b]));
    }
}
