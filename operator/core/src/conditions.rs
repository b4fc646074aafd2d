//! metav1 Conditions: set one while keeping `lastTransitionTime` unless the status flips,
//! and compare condition lists without looking at timestamps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Status values.
pub const TRUE: &str = "True";
/// Status values.
pub const FALSE: &str = "False";
/// Status values.
pub const UNKNOWN: &str = "Unknown";

/// A condition to be set, without timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    /// Condition type (CamelCase).
    pub type_: &'a str,
    /// `True`, `False` or `Unknown`.
    pub status: &'a str,
    /// CamelCase reason.
    pub reason: &'a str,
    /// Plain-language message that says what is wrong and what to do.
    pub message: String,
}

impl<'a> Desired<'a> {
    /// A condition with status True/False from a bool.
    pub fn new(type_: &'a str, ok: bool, reason: &'a str, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: if ok { TRUE } else { FALSE },
            reason,
            message: message.into(),
        }
    }
    /// A condition with status Unknown.
    pub fn unknown(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: UNKNOWN,
            reason,
            message: message.into(),
        }
    }
}

/// Builds the new condition list from the previous one: `lastTransitionTime` is kept
/// when the status of a type did not change, and set to `now` when it did or is new.
/// Conditions of types not in `desired` are dropped. The result is sorted by type so that
/// equal states compare equal.
pub fn merge(previous: &[Condition], desired: &[Desired<'_>], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .iter()
        .map(|d| {
            let last = previous
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == d.status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_string(),
                status: d.status.to_string(),
                reason: d.reason.to_string(),
                message: truncate(&d.message, 32 * 1024),
                observed_generation: generation,
                last_transition_time: last,
            }
        })
        .collect();
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// How long ago `t` was (as an absolute duration).
pub fn age(t: &Time) -> std::time::Duration {
    k8s_openapi::jiff::Timestamp::now().duration_since(t.0).unsigned_abs()
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of that type exists and is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// Longest Event note the API server accepts is 1024 bytes; notes are cut to this (plus `…`).
pub const EVENT_NOTE_MAX: usize = 1000;

/// At most `max` bytes of `s`, cut on a character boundary, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    #[test]
    fn keeps_transition_time_when_status_unchanged() {
        let first = merge(&[], &[Desired::new("Ready", true, "Ok", "fine")], Some(1), &t(100));
        let second = merge(
            &first,
            &[Desired::new("Ready", true, "Ok", "still fine")],
            Some(2),
            &t(200),
        );
        assert_eq!(second[0].last_transition_time, t(100));
        assert_eq!(second[0].message, "still fine");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn sets_transition_time_when_status_flips() {
        let first = merge(&[], &[Desired::new("Ready", true, "Ok", "fine")], None, &t(100));
        let second = merge(
            &first,
            &[Desired::new("Ready", false, "Broken", "fix it")],
            None,
            &t(200),
        );
        assert_eq!(second[0].last_transition_time, t(200));
        assert_eq!(second[0].status, FALSE);
    }

    #[test]
    fn sorted_and_dropping_unknown_types() {
        let first = merge(
            &[],
            &[
                Desired::new("Zeta", true, "A", ""),
                Desired::new("Alpha", true, "A", ""),
            ],
            None,
            &t(1),
        );
        assert_eq!(
            first.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Alpha", "Zeta"]
        );
        let second = merge(&first, &[Desired::new("Alpha", true, "A", "")], None, &t(2));
        assert_eq!(second.len(), 1);
    }

    #[test]
    fn truncates_long_messages_on_char_boundary() {
        let long = "数".repeat(20_000);
        let out = merge(&[], &[Desired::new("Ready", false, "X", long)], None, &t(1));
        assert!(out[0].message.len() <= 32 * 1024 + 3);
    }
}
