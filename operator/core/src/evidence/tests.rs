use super::sign::{PemKeyProvider, PublicKey, SigningKeyProvider};
use super::*;

fn end() -> Timestamp {
    "2026-11-30T16:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"))
}

fn sample(level: u8) -> Inputs {
    sample::inputs("mof", level, end()).unwrap_or_else(|e| panic!("sample inputs: {e}"))
}

fn line<'a>(r: &'a Report, id: &str) -> &'a Control {
    r.controls
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no line {id}"))
}

fn key() -> PemKeyProvider {
    let (private, _) = PemKeyProvider::generate().unwrap_or_else(|e| panic!("{e}"));
    PemKeyProvider::from_pem(&private, "test").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_compliant_level_3_agency_meets_every_control_with_evidence() {
    let r = build(&sample(3));
    for c in &r.controls {
        assert_eq!(c.status, Status::Met, "{}: {:?}", c.id, c.findings);
        assert!(!c.evidence.is_empty(), "{} has no evidence", c.id);
        assert!(!c.standard.is_empty(), "{} maps to no item", c.id);
        assert!(c.standard.iter().all(|s| s.clause.starts_with("8.")), "{}", c.id);
    }
    assert_eq!(r.summary.met as usize, r.controls.len());
    assert_eq!(r.controls.len(), 14);
    // Every live object named carries its uid.
    assert!(r.controls.iter().flat_map(|c| &c.evidence).all(|e| e.uid.is_some()));
    let rpo = line(&r, "BACKUP-RPO");
    assert!(rpo.evidence.iter().filter(|e| e.kind == "Backup").count() >= 30);
    let off = line(&r, "BACKUP-OFFSITE");
    assert!(
        off.evidence
            .iter()
            .any(|e| e.facts.get("region").map(String::as_str) == Some("guizhou"))
    );
    let appr = line(&r, "TENANCY-APPROVAL");
    assert_eq!(appr.evidence[0].facts["spec.decision.decidedBy"], "platform-approver");
    let exp = line(&r, "EXPOSURE");
    assert!(
        exp.evidence
            .iter()
            .any(|e| e.facts.contains_key("spec.internetExposureApproval.approvedBy"))
    );
}

#[test]
fn what_is_missing_or_failing_says_what_to_do() {
    let mut i = sample(3);
    // An internet exposure without approval, a store without SM4, a failed drill, a
    // default-deny policy gone, the RPO met only since mid-period.
    i.systems[0].spec.internet_exposure_approval = None;
    i.locations[1].encryption = None;
    if let Some(st) = i.policies[0].status.as_mut() {
        if let Some(d) = st.last_drill.as_mut() {
            d.result = "Failed".into();
            d.message = "portal did not come back".into();
        }
        if let Some(c) = st.conditions.iter_mut().find(|c| c.type_ == "RPOMet") {
            c.last_transition_time.0 = "2026-11-15T00:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        }
    }
    i.member
        .retain(|o| !(o["metadata"]["name"] == "govcloud-default-deny" && o["metadata"]["namespace"] == "mof-test"));
    i.request = None;
    let r = build(&i);
    let st = |id: &str| line(&r, id).status;
    assert_eq!(st("EXPOSURE"), Status::Failing);
    assert_eq!(st("BACKUP-STORES"), Status::Failing);
    assert_eq!(st("RESTORE-DRILLS"), Status::Failing);
    assert_eq!(st("BACKUP-RPO"), Status::Failing);
    assert_eq!(st("NET-ISOLATION"), Status::Missing);
    assert_eq!(st("TENANCY-APPROVAL"), Status::Missing);
    assert_eq!(st("POD-SECURITY"), Status::Met);
    for c in r.controls.iter().filter(|c| c.status != Status::Met) {
        assert!(!c.findings.is_empty(), "{}", c.id);
        assert!(c.findings.iter().all(|f| !f.action.is_empty()), "{}", c.id);
    }
    let deny = &line(&r, "NET-ISOLATION").findings[0].problem;
    assert!(deny.contains("mof-test/govcloud-default-deny"), "{deny}");
    assert_eq!(
        r.summary.met + r.summary.missing + r.summary.failing + r.summary.not_required,
        r.summary.controls
    );
}

#[test]
fn a_store_of_the_other_zone_fails_the_backup_stores_line() {
    let mut i = sample(3);
    // The sample agency is on the external zone; its beijing store is moved to the internal one.
    i.locations[0].zone = Some("internal".into());
    let r = build(&i);
    let l = line(&r, "BACKUP-STORES");
    assert_eq!(l.status, Status::Failing);
    let problems: Vec<&str> = l.findings.iter().map(|f| f.problem.as_str()).collect();
    assert!(
        problems.contains(&"the agency's backups are in store beijing (region beijing): spec.zone is internal, the agency is on the external zone"),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"no BackupLocation in region beijing on the external zone with SM4 encryption at rest"),
        "{problems:?}"
    );
    // Level 4 (internal) needs integrity too: SM4-GCM gives it, a plain store does not.
    let mut i = sample(4);
    assert_eq!(line(&build(&i), "BACKUP-STORES").status, Status::Met);
    i.locations[1].encryption = Some("None".into());
    let r = build(&i);
    let l = line(&r, "BACKUP-STORES");
    assert!(
        l.findings.iter().any(|f| f
            .problem
            .contains("spec.encryption is None, level 4 needs SM4 encryption with integrity (SM4-GCM)")),
        "{:?}",
        l.findings
    );
}

#[test]
fn a_changed_guardrail_fails_and_level_1_needs_no_backups() {
    let mut i = sample(3);
    for o in i.member.iter_mut() {
        if o["kind"] == "Namespace" && o["metadata"]["name"] == "mof-prod" {
            o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline".into();
        }
    }
    let r = build(&i);
    assert_eq!(line(&r, "POD-SECURITY").status, Status::Failing);
    let mut l1 = sample(1);
    l1.policies.clear();
    l1.backups.clear();
    let r = build(&l1);
    for id in ["BACKUP-RPO", "BACKUP-OFFSITE", "RESTORE-DRILLS", "BACKUP-COVERAGE"] {
        assert_eq!(line(&r, id).status, Status::NotRequired, "{id}");
    }
    assert!(
        r.controls
            .iter()
            .all(|c| c.standard.iter().all(|s| s.clause.starts_with("6.")))
    );
}

#[test]
fn signed_reports_verify_as_json_and_html() {
    let k = key();
    let public = PublicKey::from_pem(&k.public_key_pem().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let r = build(&sample(3));
    let (json, html) = html::sign_report(&r, &k).unwrap_or_else(|e| panic!("{e}"));
    let v = html::verify_file(json.as_bytes(), &public).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.report["agency"]["name"], "mof");
    html::verify_file(html.as_bytes(), &public).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        json.len() < 200_000 && html.len() < 200_000,
        "{} {}",
        json.len(),
        html.len()
    );
    // Another platform's key refuses it, naming both keys.
    let (_, other) = PemKeyProvider::generate().unwrap_or_else(|e| panic!("{e}"));
    let other = PublicKey::from_pem(&other).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        html::verify_file(json.as_bytes(), &other),
        Err(sign::VerifyError::WrongKey { .. })
    ));
    // Reformatting is refused even though the content is the same.
    let reformatted =
        serde_json::to_string(&serde_json::from_str::<Value>(&json).unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        html::verify_file(reformatted.as_bytes(), &public).err(),
        Some(sign::VerifyError::NotCanonical)
    );
}

/// Flipping any single byte (every bit pattern tried on a sample of positions, every
/// position with one pattern) of either form makes verification fail.
#[test]
fn flipping_any_byte_fails_verification() {
    let k = key();
    let public = PublicKey::from_pem(&k.public_key_pem().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    // A small report (one evidence object per line) keeps the test quick; the layout and
    // every kind of field are the same as in a full one.
    let mut r = build(&sample(3));
    r.controls.truncate(6);
    for c in r.controls.iter_mut() {
        c.evidence.truncate(1);
    }
    r.controls[0].findings.push(Finding {
        problem: "<script>alert('x')</script> & \"quotes\"".into(),
        action: "é 中文".into(),
    });
    let (json, html) = html::sign_report(&r, &k).unwrap_or_else(|e| panic!("{e}"));
    for file in [json.into_bytes(), html.into_bytes()] {
        assert!(html::verify_file(&file, &public).is_ok());
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for pos in 0..file.len() {
            // A pseudo-random non-zero mask per position, and all 255 masks every 997 bytes.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let masks: Vec<u8> = if pos % 997 == 0 {
                (1..=255).collect()
            } else {
                vec![(seed % 255) as u8 + 1]
            };
            for m in masks {
                let mut bad = file.clone();
                bad[pos] ^= m;
                assert!(
                    html::verify_file(&bad, &public).is_err(),
                    "byte {pos} ^ {m:#04x} still verifies"
                );
            }
        }
    }
}
