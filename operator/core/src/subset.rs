//! "Does the live object already carry everything we would apply?" — a recursive subset
//! comparison of JSON values, used to skip server-side applies that would change nothing.
//!
//! Objects: every key of `desired` must be present in `live` with a matching value (extra
//! keys in `live`, e.g. defaults the API server adds, are ignored). Arrays: same length
//! and element-wise subset. Scalars: equal.

use serde_json::Value;

/// True when `live` already contains `desired`.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => contains(lv, dv),
            // An absent key equals an empty desired container or null.
            None => is_empty(dv),
        }),
        (Value::Array(l), Value::Array(d)) => l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv)),
        (l, d) => l == d,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_live_fields_are_ignored() {
        let live = json!({"metadata": {"name": "a", "uid": "1", "labels": {"x": "1", "kubernetes.io/metadata.name": "a"}}, "spec": {"p": [{"port": 53, "protocol": "UDP"}]}});
        assert!(contains(
            &live,
            &json!({"metadata": {"labels": {"x": "1"}}, "spec": {"p": [{"port": 53}]}})
        ));
    }

    #[test]
    fn differences_are_found() {
        let live = json!({"spec": {"hard": {"cpu": "4"}, "list": [1, 2]}});
        assert!(!contains(&live, &json!({"spec": {"hard": {"cpu": "8"}}})));
        assert!(!contains(&live, &json!({"spec": {"list": [1]}})));
        assert!(!contains(&live, &json!({"spec": {"missing": "x"}})));
        assert!(contains(&live, &json!({"spec": {"absent": []}})));
    }
}
