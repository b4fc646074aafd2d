//! The part of a live object the operator owns, from its server-side apply field sets
//! (`metadata.managedFields[].fieldsV1`).
//!
//! The member caches keep only this projection — as a hash ([`content_hash`]) for most
//! kinds — plus the status fields reconciles read: the
//! fields the API server defaulted, the status the controllers write and whatever other
//! managers own are never compared with the desired state, so they need not be held in
//! memory — at the national scale (100,000 cached objects) that is most of the operator's
//! memory. A field someone else changed moves to their field manager and so drops out of
//! the projection: the comparison with the desired object then fails and the operator
//! applies it again, exactly as with the full object.
//!
//! fieldsV1 format (sigs.k8s.io/structured-merge-diff): a tree whose keys are `f:<field>`
//! (a field of a map), `k:<json>` (an item of an associative list, by its key fields),
//! `v:<json>` (an item of a set), `i:<index>` (an item of an atomic-by-index list) and `.`
//! (the node itself); an empty node owns the whole value below it.

use serde_json::{Map, Value};

/// Merges the field set `b` into `a` (the union of several managers' sets).
pub fn merge_fields(a: &mut Map<String, Value>, b: &Map<String, Value>) {
    for (k, v) in b {
        match (a.get_mut(k), v) {
            (Some(Value::Object(am)), Value::Object(bm)) => merge_fields(am, bm),
            (Some(_), _) => {}
            (None, _) => {
                a.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Whether a field-set node owns the whole value below it (no child fields listed).
fn is_leaf(fields: &Map<String, Value>) -> bool {
    fields.keys().all(|k| k == ".")
}

/// The parts of `value` named by `fields`; `None` when none of them is present.
pub fn project(value: &Value, fields: &Map<String, Value>) -> Option<Value> {
    if is_leaf(fields) {
        return Some(value.clone());
    }
    match value {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, sub) in fields {
                let Some(name) = k.strip_prefix("f:") else { continue };
                let Some(v) = m.get(name) else { continue };
                let sub = sub.as_object().cloned().unwrap_or_default();
                if let Some(p) = project(v, &sub) {
                    out.insert(name.to_string(), p);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            // Keep the live order; an item is kept when some key of `fields` names it.
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(sub) = fields.iter().find_map(|(k, sub)| names_item(k, i, item).then_some(sub)) {
                    let sub = sub.as_object().cloned().unwrap_or_default();
                    if let Some(p) = project(item, &sub) {
                        out.push(p);
                    }
                }
            }
            Some(Value::Array(out))
        }
        // A scalar with child fields listed: the sets disagree with the value; keep it.
        other => Some(other.clone()),
    }
}

/// Whether the field-set key `key` names list item `item` at `index`.
fn names_item(key: &str, index: usize, item: &Value) -> bool {
    if let Some(k) = key.strip_prefix("k:") {
        let Ok(Value::Object(want)) = serde_json::from_str::<Value>(k) else {
            return false;
        };
        return want.iter().all(|(f, v)| item.get(f) == Some(v));
    }
    if let Some(v) = key.strip_prefix("v:") {
        return serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item);
    }
    if let Some(i) = key.strip_prefix("i:") {
        return i.parse::<usize>() == Ok(index);
    }
    false
}

/// A hash of `value` as the operator's comparison with the desired state sees it: object
/// keys in sorted order; `null` and `[]` the same as an absent field (the API server drops
/// the empty lists the operator applies); `{}` is a value (a NetworkPolicy peer
/// `{"podSelector": {}}` is not `{"namespaceSelector": {}}`); `metadata.name`,
/// `metadata.namespace` and `metadata.generation` left out (identity, not owned content). Equal for a desired
/// body and the owned projection of the object it was applied as, so a member cache can
/// keep eight bytes per object instead of the projection's JSON.
pub fn content_hash(value: &Value) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash_into(value, &mut h, true);
    h.finish()
}

/// Whether `v` counts as absent (see [`content_hash`]).
fn is_void(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn hash_into(v: &Value, h: &mut impl std::hash::Hasher, top: bool) {
    use std::hash::Hash;
    match v {
        Value::Object(m) => {
            h.write_u8(b'{');
            let mut keys: Vec<&String> = m.keys().filter(|k| !is_void(&m[k.as_str()])).collect();
            keys.sort();
            for k in keys {
                if top && k == "metadata" {
                    h.write_u8(b'm');
                    if let Value::Object(meta) = &m[k.as_str()] {
                        let mut meta = meta.clone();
                        for identity in ["name", "namespace", "generation"] {
                            meta.remove(identity);
                        }
                        hash_into(&Value::Object(meta), h, false);
                    }
                    continue;
                }
                k.hash(h);
                hash_into(&m[k.as_str()], h, false);
            }
            h.write_u8(b'}');
        }
        Value::Array(a) => {
            h.write_u8(b'[');
            h.write_usize(a.len());
            for x in a {
                hash_into(x, h, false);
            }
        }
        Value::String(s) => {
            h.write_u8(b's');
            s.hash(h);
        }
        Value::Number(n) => {
            h.write_u8(b'n');
            n.to_string().hash(h);
        }
        Value::Bool(b) => {
            h.write_u8(b'b');
            b.hash(h);
        }
        Value::Null => h.write_u8(b'0'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn keeps_owned_fields_and_drops_defaults() {
        let live = json!({
            "metadata": {"name": "d", "labels": {"a": "1", "other": "x"}},
            "spec": {
                "replicas": 1,
                "revisionHistoryLimit": 10,
                "template": {"spec": {
                    "dnsPolicy": "ClusterFirst",
                    "containers": [
                        {"name": "app", "image": "i:1", "imagePullPolicy": "IfNotPresent",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                        {"name": "sidecar", "image": "s:1"}
                    ]
                }}
            }
        });
        let f = fields(json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"app\"}": {".": {}, "f:name": {}, "f:image": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}
                }}}
            }
        }));
        let p = project(&live, &f);
        assert_eq!(
            p,
            Some(json!({
                "metadata": {"labels": {"a": "1"}},
                "spec": {"replicas": 1, "template": {"spec": {"containers": [
                    {"name": "app", "image": "i:1", "ports": [{"containerPort": 80}]}
                ]}}}
            }))
        );
    }

    #[test]
    fn leaves_sets_and_indexes() {
        let live = json!({"a": {"x": 1, "y": 2}, "s": ["p", "q"], "l": [5, 6, 7], "n": null});
        let f = fields(json!({"f:a": {}, "f:s": {"v:\"q\"": {}}, "f:l": {"i:2": {}}, "f:n": {}, "f:gone": {}}));
        assert_eq!(
            project(&live, &f),
            Some(json!({"a": {"x": 1, "y": 2}, "s": ["q"], "l": [7], "n": null}))
        );
        // Malformed keys name nothing.
        let f = fields(json!({"f:s": {"k:not json": {}, "v:": {}, "i:x": {}, "z:1": {}}}));
        assert_eq!(project(&live, &f), Some(json!({"s": []})));
    }

    #[test]
    fn a_field_changed_by_someone_else_drops_out_and_the_comparison_fails() {
        use crate::subset::contains;
        let desired = json!({"spec": {"hard": {"cpu": "4", "memory": "8Gi"}}});
        let live = json!({"spec": {"hard": {"cpu": "64", "memory": "8Gi"}}});
        // kubectl edit took spec.hard.cpu: only memory is still ours.
        let ours = fields(json!({"f:spec": {"f:hard": {"f:memory": {}}}}));
        let p = project(&live, &ours).unwrap_or_default();
        assert!(!contains(&p, &desired));
        let all = fields(json!({"f:spec": {"f:hard": {"f:cpu": {}, "f:memory": {}}}}));
        let live_ok = json!({"spec": {"hard": {"cpu": "4", "memory": "8Gi"}}});
        assert!(contains(&project(&live_ok, &all).unwrap_or_default(), &desired));
    }

    #[test]
    fn merging_sets_is_a_union() {
        let mut a = fields(json!({"f:spec": {"f:a": {}}, "f:metadata": {"f:labels": {"f:x": {}}}}));
        merge_fields(&mut a, &fields(json!({"f:spec": {"f:b": {}}, "f:status": {}})));
        assert_eq!(
            Value::Object(a),
            json!({"f:spec": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:x": {}}}, "f:status": {}})
        );
    }

    #[test]
    fn the_content_hash_sees_what_the_comparison_sees() {
        let desired = json!({"metadata": {"name": "q", "namespace": "ns", "labels": {"a": "1"}},
                             "spec": {"hard": {"cpu": "4"}, "scopes": [], "x": null, "podSelector": {}}});
        // As projected from the live object: other key order, identity and generation
        // added, empty lists and nulls dropped by the API server.
        let live = json!({"spec": {"podSelector": {}, "hard": {"cpu": "4"}},
                          "metadata": {"generation": 3, "labels": {"a": "1"}, "name": "q", "namespace": "ns"}});
        assert_eq!(content_hash(&desired), content_hash(&live));
        // An empty selector is a value: which one it is, and whether it is there, counts.
        let peer = |p: serde_json::Value| content_hash(&json!({"spec": {"ingress": [{"from": [p]}]}}));
        assert_ne!(peer(json!({"podSelector": {}})), peer(json!({"namespaceSelector": {}})));
        assert_ne!(peer(json!({"podSelector": {}})), peer(json!({})));
        // Any owned difference counts.
        for changed in [
            json!({"metadata": {"labels": {"a": "2"}}, "spec": {"hard": {"cpu": "4"}}}),
            json!({"metadata": {"labels": {"a": "1", "b": "1"}}, "spec": {"hard": {"cpu": "4"}}}),
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"hard": {"cpu": 4}}}),
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"hard": {"cpu": "4"}, "x": ""}}),
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"hard": [{"cpu": "4"}]}}),
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"hard": {"cpu": "4", "memory": "1Gi"}}}),
        ] {
            assert_ne!(content_hash(&changed), content_hash(&desired), "{changed}");
        }
        // Order within a list matters; a name nested below metadata is content.
        assert_ne!(content_hash(&json!({"l": [1, 2]})), content_hash(&json!({"l": [2, 1]})));
        assert_ne!(
            content_hash(&json!({"spec": {"name": "a"}})),
            content_hash(&json!({"spec": {"name": "b"}}))
        );
    }
}
