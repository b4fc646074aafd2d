//! The committed `crds/*.yaml` must equal what the Rust types generate.

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = govcloud_tests::repo_root().join("crds");
    let mut expected_files = Vec::new();
    for (file, crd) in govcloud_api::all_crds() {
        expected_files.push(file.to_string());
        let generated = match govcloud_api::crd_yaml(&crd) {
            Ok(y) => y,
            Err(e) => panic!("cannot render {file}: {e}"),
        };
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == generated,
            "crds/{file} differs from the Rust types; regenerate with `cargo run -p govcloud-operator -- crd --out-dir crds`"
        );
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "crds/ holds files that no Rust type generates (or misses some)"
    );
}

#[test]
fn api_reference_matches_the_rust_types() {
    let crds: Vec<_> = govcloud_api::all_crds().into_iter().map(|(_, c)| c).collect();
    let generated = govcloud::apidoc::render(&crds);
    let path = govcloud_tests::repo_root().join("docs/api-reference.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api-reference.md differs from the CRD schemas; regenerate with `cargo run -p govcloud-operator -- api-docs --out docs/api-reference.md`"
    );
}
